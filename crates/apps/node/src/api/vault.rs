//! Handlers of `/vault` and `/backups`.

use axum::Json;
use axum::extract::{Path, State};
use kith_api as api;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;
use crate::Node;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// This module's routes, each declared by its handler's `#[utoipa::path]`; handlers of
/// one path go in one `routes!`.
pub(super) fn routes() -> OpenApiRouter<Node> {
    OpenApiRouter::new()
        .routes(routes!(list, put))
        .routes(routes!(overview))
        .routes(routes!(object, remove))
        .routes(routes!(get))
        .routes(routes!(backup))
        .routes(routes!(restore))
}

#[utoipa::path(get, path = "/vault", security(("token" = [])),
    responses((status = 200, description = "What this node stored in the vault", body = Vec<api::VaultObject>)))]
pub(crate) async fn list(State(node): State<Node>) -> ApiResult<Vec<api::VaultObject>> {
    Ok(Json(node.vault_service().list()?))
}

/// Stores a file or folder on peers: encrypted here, erasure-coded k-of-n, one share per
/// holder.
#[utoipa::path(post, path = "/vault", security(("token" = [])), request_body = api::VaultPut,
    responses((status = 200, body = api::VaultStored),
        (status = 400, description = "A bad path or k-of-n, too few holders, too little space", body = api::ErrorBody)))]
pub(crate) async fn put(
    State(node): State<Node>,
    Json(req): Json<api::VaultPut>,
) -> ApiResult<api::VaultStored> {
    Ok(Json(node.vault_put(&req).await?))
}

#[utoipa::path(get, path = "/vault/status", security(("token" = [])),
    responses((status = 200, description = "Space offered and held, and each peer's account", body = api::VaultOverview)))]
pub(crate) async fn overview(State(node): State<Node>) -> ApiResult<api::VaultOverview> {
    Ok(Json(node.vault_service().overview()?))
}

#[utoipa::path(get, path = "/vault/{id}", security(("token" = [])),
    params(("id" = String, Path, description = "The object's ID or name")),
    responses((status = 200, body = api::VaultObject), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn object(
    State(node): State<Node>,
    Path(id): Path<String>,
) -> ApiResult<api::VaultObject> {
    Ok(Json(node.vault_service().status(id.trim())?))
}

/// Removes an object and releases the space its shares took on every holder.
#[utoipa::path(delete, path = "/vault/{id}", security(("token" = [])),
    params(("id" = String, Path, description = "The object's ID or name")),
    responses((status = 200, body = api::VaultRemoved), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn remove(
    State(node): State<Node>,
    Path(id): Path<String>,
) -> ApiResult<api::VaultRemoved> {
    Ok(Json(node.vault_remove(&id).await?))
}

/// Restores an object from any k of its n holders.
#[utoipa::path(post, path = "/vault/{id}/get", security(("token" = [])),
    params(("id" = String, Path, description = "The object's ID or name")),
    request_body = api::VaultGet,
    responses((status = 200, body = api::VaultGot), (status = 404, body = api::ErrorBody),
        (status = 503, description = "Fewer than k shares answered", body = api::ErrorBody)))]
pub(crate) async fn get(
    State(node): State<Node>,
    Path(id): Path<String>,
    Json(req): Json<api::VaultGet>,
) -> ApiResult<api::VaultGot> {
    Ok(Json(node.vault_get(&id, &req).await?))
}

/// Backs a folder up into the vault: only chunks the vault lacks move.
#[utoipa::path(post, path = "/backups", security(("token" = [])), request_body = api::BackupRequest,
    responses((status = 200, body = api::VaultStored), (status = 400, body = api::ErrorBody)))]
pub(crate) async fn backup(
    State(node): State<Node>,
    Json(req): Json<api::BackupRequest>,
) -> ApiResult<api::VaultStored> {
    Ok(Json(node.backup(&req).await?))
}

/// Restores a backed-up folder as it was at a time.
#[utoipa::path(post, path = "/backups/restore", security(("token" = [])), request_body = api::VaultGet,
    responses((status = 200, body = api::VaultGot), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn restore(
    State(node): State<Node>,
    Json(req): Json<api::VaultGet>,
) -> ApiResult<api::VaultGot> {
    Ok(Json(node.restore(&req).await?))
}
