//! Handlers of `/person`, `/devices` and `/groups`.

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
        .routes(routes!(person))
        .routes(routes!(link_device))
        .routes(routes!(join_device))
        .routes(routes!(remove_device))
        .routes(routes!(list_groups, create_group))
        .routes(routes!(join_group))
        .routes(routes!(invite))
        .routes(routes!(members))
        .routes(routes!(remove_member))
        .routes(routes!(leave_group))
}

#[utoipa::path(get, path = "/person", security(("token" = [])),
    responses((status = 200, description = "Who this device acts for, and the person's devices", body = api::Person)))]
pub(crate) async fn person(State(node): State<Node>) -> ApiResult<api::Person> {
    Ok(Json(node.person()?))
}

/// A one-time code (10 minutes, single use) that links another device to this person.
#[utoipa::path(post, path = "/devices/link", security(("token" = [])),
    responses((status = 200, body = api::LinkCode),
        (status = 400, description = "This device does not hold the person key", body = api::ErrorBody)))]
pub(crate) async fn link_device(State(node): State<Node>) -> ApiResult<api::LinkCode> {
    Ok(Json(node.link_device().await?))
}

/// Makes this device a device of the person whose device gave the code.
#[utoipa::path(post, path = "/devices/join", security(("token" = [])), request_body = api::JoinDevice,
    responses((status = 200, body = api::Person), (status = 400, body = api::ErrorBody)))]
pub(crate) async fn join_device(
    State(node): State<Node>,
    Json(req): Json<api::JoinDevice>,
) -> ApiResult<api::Person> {
    Ok(Json(node.join_device(&req.code).await?))
}

/// Revokes a device of this person; every group the person is in stops trusting it.
#[utoipa::path(delete, path = "/devices/{id}", security(("token" = [])),
    params(("id" = String, Path, description = "The device's peer ID")),
    responses((status = 200, body = api::DeviceRemoved), (status = 400, body = api::ErrorBody)))]
pub(crate) async fn remove_device(
    State(node): State<Node>,
    Path(id): Path<String>,
) -> ApiResult<api::DeviceRemoved> {
    Ok(Json(node.remove_device(&id).await?))
}

#[utoipa::path(get, path = "/groups", security(("token" = [])),
    responses((status = 200, description = "The groups this device is in", body = Vec<api::Group>)))]
pub(crate) async fn list_groups(State(node): State<Node>) -> ApiResult<Vec<api::Group>> {
    Ok(Json(node.groups()?))
}

/// Creates a group; the caller's person is its first admin.
#[utoipa::path(post, path = "/groups", security(("token" = [])), request_body = api::CreateGroup,
    responses((status = 200, body = api::Group), (status = 400, body = api::ErrorBody)))]
pub(crate) async fn create_group(
    State(node): State<Node>,
    Json(req): Json<api::CreateGroup>,
) -> ApiResult<api::Group> {
    Ok(Json(node.create_group(&req).await?))
}

/// A signed invite token (admins only).
#[utoipa::path(post, path = "/groups/{group}/invites", security(("token" = [])),
    params(("group" = String, Path, description = "Group ID or name")),
    request_body = api::InviteRequest,
    responses((status = 200, body = api::Invite), (status = 403, body = api::ErrorBody),
        (status = 404, body = api::ErrorBody)))]
pub(crate) async fn invite(
    State(node): State<Node>,
    Path(group): Path<String>,
    Json(req): Json<api::InviteRequest>,
) -> ApiResult<api::Invite> {
    Ok(Json(node.invite(&group, &req).await?))
}

/// Joins a group with an invite token, through the device that signed it.
#[utoipa::path(post, path = "/groups/join", security(("token" = [])), request_body = api::JoinGroup,
    responses((status = 200, body = api::Group),
        (status = 400, description = "Expired, used up, forged or not valid", body = api::ErrorBody)))]
pub(crate) async fn join_group(
    State(node): State<Node>,
    Json(req): Json<api::JoinGroup>,
) -> ApiResult<api::Group> {
    Ok(Json(node.join_group(&req.token).await?))
}

#[utoipa::path(get, path = "/groups/{group}/members", security(("token" = [])),
    params(("group" = String, Path, description = "Group ID or name")),
    responses((status = 200, body = Vec<api::Member>), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn members(
    State(node): State<Node>,
    Path(group): Path<String>,
) -> ApiResult<Vec<api::Member>> {
    Ok(Json(node.members(&group)?))
}

/// Removes a person from a group (admins only); the group's key changes.
#[utoipa::path(delete, path = "/groups/{group}/members/{person}", security(("token" = [])),
    params(("group" = String, Path, description = "Group ID or name"),
        ("person" = String, Path, description = "Person ID")),
    responses((status = 200, body = api::Group), (status = 403, body = api::ErrorBody),
        (status = 404, body = api::ErrorBody)))]
pub(crate) async fn remove_member(
    State(node): State<Node>,
    Path((group, person)): Path<(String, String)>,
) -> ApiResult<api::Group> {
    Ok(Json(node.remove_member(&group, &person).await?))
}

/// Leaves a group; answers with the group as it was.
#[utoipa::path(post, path = "/groups/{group}/leave", security(("token" = [])),
    params(("group" = String, Path, description = "Group ID or name")),
    responses((status = 200, body = api::Group), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn leave_group(
    State(node): State<Node>,
    Path(group): Path<String>,
) -> ApiResult<api::Group> {
    Ok(Json(node.leave_group(&group).await?))
}
