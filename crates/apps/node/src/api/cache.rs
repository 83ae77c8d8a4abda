//! Handlers of `/cache`.

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
        .routes(routes!(status))
        .routes(routes!(pin))
        .routes(routes!(unpin))
}

#[utoipa::path(get, path = "/cache", security(("token" = [])),
    responses((status = 200, description = "What this node caches for others and why", body = api::CacheStatus)))]
pub(crate) async fn status(State(node): State<Node>) -> ApiResult<api::CacheStatus> {
    Ok(Json(node.cache_status().await?))
}

/// Keeps content on this node: pinned if cached, else fetched into the cache, pinned.
#[utoipa::path(post, path = "/cache/pins", security(("token" = [])), request_body = api::PinRequest,
    responses((status = 200, body = api::CacheEntry),
        (status = 400, description = "A bad ID, or the node's own share", body = api::ErrorBody)))]
pub(crate) async fn pin(
    State(node): State<Node>,
    Json(req): Json<api::PinRequest>,
) -> ApiResult<api::CacheEntry> {
    Ok(Json(node.pin(&req.id).await?))
}

/// Lets pinned content be evicted again.
#[utoipa::path(delete, path = "/cache/pins/{id}", security(("token" = [])),
    params(("id" = String, Path, description = "The content ID")),
    responses((status = 200, body = api::CacheEntry), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn unpin(
    State(node): State<Node>,
    Path(id): Path<String>,
) -> ApiResult<api::CacheEntry> {
    Ok(Json(node.unpin(&id).await?))
}
