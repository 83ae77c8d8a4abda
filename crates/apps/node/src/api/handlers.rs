//! The API's handlers: each parses its request, calls the [`Node`] facade and answers with
//! a type of the API contract. Streams (`/downloads`, `/search`) are JSON lines.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use kith_api as api;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;
use crate::Node;
use crate::facade::{content_id, wait_ms};

type ApiResult<T> = Result<Json<T>, ApiError>;

/// This module's routes, each declared by its handler's `#[utoipa::path]`; handlers of
/// one path go in one `routes!`.
pub(super) fn routes() -> OpenApiRouter<Node> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(peers, connect))
        .routes(routes!(list_shares, add_share))
        .routes(routes!(remove_share))
        .routes(routes!(list_downloads, start_download))
        .routes(routes!(change_download, cancel_download))
        .routes(routes!(search))
        .routes(routes!(list_names, publish_name))
        .routes(routes!(resolve_name))
}

/// A streamed response of JSON lines.
fn ndjson<T: serde::Serialize>(items: impl futures::Stream<Item = T> + Send + 'static) -> Response {
    let lines = items.map(|v| {
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::io::Error>(line)
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

pub(crate) async fn metrics(State(node): State<Node>) -> Result<Response, ApiError> {
    let text = node.metrics()?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[utoipa::path(get, path = "/status", security(("token" = [])),
    responses((status = 200, body = api::Status), (status = 401, body = api::ErrorBody)))]
pub(crate) async fn status(State(node): State<Node>) -> ApiResult<api::Status> {
    Ok(Json(node.status().await?))
}

#[utoipa::path(get, path = "/peers", security(("token" = [])),
    responses((status = 200, body = Vec<api::Connection>)))]
pub(crate) async fn peers(State(node): State<Node>) -> ApiResult<Vec<api::Connection>> {
    Ok(Json(node.peers().await?))
}

/// Dials a peer now; answers once connected (or with why not).
#[utoipa::path(post, path = "/peers", security(("token" = [])), request_body = api::ConnectRequest,
    responses((status = 200, description = "Connected; the open connections", body = Vec<api::Connection>),
        (status = 400, description = "Not a multiaddr with /p2p/PEER_ID", body = api::ErrorBody),
        (status = 503, description = "The dial failed", body = api::ErrorBody)))]
pub(crate) async fn connect(
    State(node): State<Node>,
    Json(req): Json<api::ConnectRequest>,
) -> ApiResult<Vec<api::Connection>> {
    node.connect(&req.addr).await?;
    Ok(Json(node.peers().await?))
}

#[utoipa::path(get, path = "/shares", security(("token" = [])),
    responses((status = 200, description = "What this node shares, newest first", body = Vec<api::Share>)))]
pub(crate) async fn list_shares(State(node): State<Node>) -> ApiResult<Vec<api::Share>> {
    Ok(Json(node.shares().await?))
}

#[utoipa::path(post, path = "/shares", security(("token" = [])), request_body = api::ShareRequest,
    responses((status = 200, body = api::Share), (status = 400, body = api::ErrorBody),
        (status = 404, description = "No such path", body = api::ErrorBody)))]
pub(crate) async fn add_share(
    State(node): State<Node>,
    Json(req): Json<api::ShareRequest>,
) -> ApiResult<api::Share> {
    Ok(Json(
        node.share_path(&req.path, req.group.as_deref(), req.public)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/shares/{id}", security(("token" = [])),
    params(("id" = String, Path, description = "Content ID of a share")),
    responses((status = 200, body = api::Share), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn remove_share(
    State(node): State<Node>,
    Path(id): Path<String>,
) -> ApiResult<api::Share> {
    Ok(Json(node.unshare(&id).await?))
}

#[utoipa::path(get, path = "/downloads", security(("token" = [])),
    responses((status = 200, description = "Downloads running", body = Vec<api::Progress>)))]
pub(crate) async fn list_downloads(State(node): State<Node>) -> ApiResult<Vec<api::Progress>> {
    Ok(Json(node.share_service().downloads().await?))
}

/// Pauses or resumes a download.
#[utoipa::path(patch, path = "/downloads/{id}", security(("token" = [])),
    params(("id" = String, Path, description = "The content ID")),
    request_body = api::DownloadChange,
    responses((status = 200, body = api::Progress), (status = 400, body = api::ErrorBody),
        (status = 404, description = "No such download running or paused", body = api::ErrorBody)))]
pub(crate) async fn change_download(
    State(node): State<Node>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(req): Json<api::DownloadChange>,
) -> ApiResult<api::Progress> {
    Ok(Json(node.change_download(&id, &req).await?))
}

/// Cancels a running or paused download and removes what it had written.
#[utoipa::path(delete, path = "/downloads/{id}", security(("token" = [])),
    params(("id" = String, Path, description = "The content ID")),
    responses((status = 200, body = api::ErrorBody, description = "Cancelled (the body says so)"),
        (status = 404, description = "No such download running or paused", body = api::ErrorBody)))]
pub(crate) async fn cancel_download(
    State(node): State<Node>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<api::ErrorBody> {
    node.share_service().cancel(content_id(&id)?).await?;
    Ok(Json(api::ErrorBody {
        error: format!("cancelled {id}"),
    }))
}

/// Starts (or joins) a download and streams its progress until it ends.
#[utoipa::path(post, path = "/downloads", security(("token" = [])), request_body = api::DownloadRequest,
    responses((status = 200, description = "Progress lines; the last says `done` or `failed`",
        content_type = "application/x-ndjson", body = api::Progress),
        (status = 400, body = api::ErrorBody), (status = 429, body = api::ErrorBody)))]
pub(crate) async fn start_download(
    State(node): State<Node>,
    Json(req): Json<api::DownloadRequest>,
) -> Result<Response, ApiError> {
    let rx = node.get(&req).await?;
    let lines = futures::stream::unfold((rx, false), |(mut rx, ended)| async move {
        if ended {
            return None;
        }
        // At most a few lines a second; always the final one.
        let r = tokio::time::timeout(Duration::from_millis(250), rx.changed()).await;
        let closed = matches!(r, Ok(Err(_)));
        let p = rx.borrow_and_update().clone();
        let done = p.finished() || closed;
        Some((p, (rx, done)))
    });
    Ok(ndjson(lines))
}

/// Searches and streams results as peers answer.
#[utoipa::path(post, path = "/search", security(("token" = [])), request_body = api::SearchRequest,
    responses((status = 200, description = "Result lines; a result comes again when more peers answer for it",
        content_type = "application/x-ndjson", body = api::SearchResult),
        (status = 400, body = api::ErrorBody)))]
pub(crate) async fn search(
    State(node): State<Node>,
    Json(req): Json<api::SearchRequest>,
) -> Result<Response, ApiError> {
    Ok(ndjson(node.search(&req)?))
}

#[utoipa::path(get, path = "/names", security(("token" = [])),
    responses((status = 200, description = "Names this node knows", body = Vec<api::Name>)))]
pub(crate) async fn list_names(State(node): State<Node>) -> ApiResult<Vec<api::Name>> {
    Ok(Json(node.names_known()?))
}

/// Shares `path` and publishes it as the next revision of `name`.
#[utoipa::path(post, path = "/names", security(("token" = [])), request_body = api::PublishRequest,
    responses((status = 200, body = api::Name), (status = 400, body = api::ErrorBody)))]
pub(crate) async fn publish_name(
    State(node): State<Node>,
    Json(req): Json<api::PublishRequest>,
) -> ApiResult<api::Name> {
    Ok(Json(node.publish(&req.name, &req.path, req.public).await?))
}

#[utoipa::path(post, path = "/names/resolve", security(("token" = [])), request_body = api::ResolveRequest,
    responses((status = 200, body = api::Name), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn resolve_name(
    State(node): State<Node>,
    Json(req): Json<api::ResolveRequest>,
) -> ApiResult<api::Name> {
    Ok(Json(
        node.resolve(&req.name, wait_ms(req.timeout_ms)).await?,
    ))
}
