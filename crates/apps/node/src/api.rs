//! The local HTTP API, `/api/v1`, guarded by the token in the data dir. `openapi.json`
//! describes it; `/metrics` serves OpenMetrics text.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State as AxState};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use kith_core::ContentId;
use kith_search::{SearchError, Via};
use kith_share::{Output, ShareError};
use serde::Deserialize;
use serde_json::json;

use crate::State;

const OPENAPI: &str = include_str!("openapi.json");

pub(crate) fn router(state: Arc<State>) -> Router {
    let v1 = Router::new()
        .route("/status", get(status))
        .route("/peers", get(peers))
        .route("/shares", get(list_shares).post(add_share))
        .route("/shares/{id}", delete(remove_share))
        .route("/downloads", get(list_downloads).post(start_download))
        .route("/search", axum::routing::post(search))
        .route("/names", get(list_names).post(publish_name))
        .route("/names/resolve", axum::routing::post(resolve_name))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .nest("/api/v1", v1)
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// An API error: a status and one line saying what is wrong.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<ShareError> for ApiError {
    fn from(e: ShareError) -> Self {
        let code = match &e {
            ShareError::NotShared(_) => StatusCode::NOT_FOUND,
            ShareError::Index(_) | ShareError::NotAManifest(_) => StatusCode::BAD_REQUEST,
            ShareError::TooManyDownloads => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        let code = match &e {
            SearchError::BadQuery(_) | SearchError::BadName(_) | SearchError::NoBroker => {
                StatusCode::BAD_REQUEST
            }
            SearchError::NameNotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

fn bad(msg: impl ToString) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.to_string())
}

/// An absolute path that exists.
fn existing_path(s: &str) -> Result<PathBuf, ApiError> {
    let path = PathBuf::from(s);
    if !path.is_absolute() {
        return Err(bad("path must be absolute"));
    }
    if !path.exists() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{s}: no such file or folder"),
        ));
    }
    Ok(path)
}

/// A client-given wait in milliseconds (default 5 s), kept within 0.1 s..2 min.
fn wait_ms(ms: Option<u64>) -> Duration {
    Duration::from_millis(ms.unwrap_or(5000).clamp(100, 120_000))
}

/// A streamed response of JSON lines.
fn ndjson(
    lines: impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static,
) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

fn parse_id(s: &str) -> Result<ContentId, ApiError> {
    s.parse().map_err(|e: kith_core::IdError| bad(e))
}

async fn auth(AxState(state): AxState<Arc<State>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|g| {
        // Compare without an early exit.
        g.len() == state.token.len()
            && g.bytes()
                .zip(state.token.bytes())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0
    });
    if !ok {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token (see api.token in the data dir)".into(),
        )
        .into_response();
    }
    next.run(req).await
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn metrics(AxState(state): AxState<Arc<State>>) -> Result<Response, ApiError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.registry)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn status(AxState(state): AxState<Arc<State>>) -> Result<Json<serde_json::Value>, ApiError> {
    let s = state
        .overlay
        .status()
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let shares = state.share.list().await?.len();
    let mut v = serde_json::to_value(&s).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        o.insert("shares".into(), json!(shares));
        o.insert("downloads".into(), json!(state.share.downloads().len()));
        o.insert(
            "peers".into(),
            json!(
                s.connections
                    .iter()
                    .map(|c| &c.peer_id)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
            ),
        );
    }
    Ok(Json(v))
}

async fn peers(AxState(state): AxState<Arc<State>>) -> Result<Json<serde_json::Value>, ApiError> {
    let s = state
        .overlay
        .status()
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(json!(s.connections)))
}

async fn list_shares(
    AxState(state): AxState<Arc<State>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(json!(state.share.list().await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareReq {
    path: String,
}

async fn add_share(
    AxState(state): AxState<Arc<State>>,
    Json(req): Json<ShareReq>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let path = existing_path(&req.path)?;
    Ok(Json(json!(state.share.share(path).await?)))
}

async fn remove_share(
    AxState(state): AxState<Arc<State>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(json!(state.share.unshare(id).await?)))
}

async fn list_downloads(AxState(state): AxState<Arc<State>>) -> Json<serde_json::Value> {
    Json(json!(state.share.downloads()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DownloadReq {
    id: String,
    /// Exact output path (absolute).
    output: Option<String>,
    /// Folder to put the content in under its own name (absolute).
    dir: Option<String>,
    /// Seconds to wait for a provider before giving up.
    timeout: Option<u64>,
}

/// Starts (or joins) a download and streams its progress as JSON lines until it ends.
async fn start_download(
    AxState(state): AxState<Arc<State>>,
    Json(req): Json<DownloadReq>,
) -> Result<Response, ApiError> {
    let id = parse_id(&req.id)?;
    let output = match (req.output, req.dir) {
        (Some(o), _) => {
            let p = PathBuf::from(o);
            if !p.is_absolute() {
                return Err(bad("output must be absolute"));
            }
            if p.is_dir() {
                Output::Under(p)
            } else {
                Output::Exact(p)
            }
        }
        (None, Some(d)) => {
            let p = PathBuf::from(d);
            if !p.is_absolute() {
                return Err(bad("dir must be absolute"));
            }
            Output::Under(p)
        }
        (None, None) => return Err(bad("give output or dir")),
    };
    let patience = req.timeout.map(|s| Duration::from_secs(s.clamp(1, 86_400)));
    let rx = state.share.get(id, output, patience).await?;
    let stream = futures::stream::unfold((rx, false), |(mut rx, ended)| async move {
        if ended {
            return None;
        }
        // At most a few lines a second; always the final one.
        let r = tokio::time::timeout(Duration::from_millis(250), rx.changed()).await;
        let closed = matches!(r, Ok(Err(_)));
        let p = rx.borrow_and_update().clone();
        let done = p.finished() || closed;
        let mut line = serde_json::to_vec(&p).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::io::Error>(line), (rx, done)))
    });
    Ok(ndjson(stream))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchReq {
    q: String,
    /// `broker`, `network`, `both` or `flood`; default: `both` with a broker, else `network`.
    via: Option<String>,
    timeout_ms: Option<u64>,
    limit: Option<usize>,
}

/// Searches and streams results as JSON lines as peers answer. A result is sent again
/// when more peers answer for it or it turns out to be outdated.
async fn search(
    AxState(state): AxState<Arc<State>>,
    Json(req): Json<SearchReq>,
) -> Result<Response, ApiError> {
    let via: Via = match req.via.as_deref() {
        Some(v) => v.parse()?,
        None if state.has_broker => Via::Both,
        None => Via::Network,
    };
    let timeout = wait_ms(req.timeout_ms);
    let rx = state
        .search
        .search(&req.q, via, timeout, req.limit.unwrap_or(100))?;
    let share = state.share.clone();
    let stream = futures::stream::unfold((rx, share), |(mut rx, share)| async move {
        let r = rx.recv().await?;
        // Downloads of a result ask the peers that answered first.
        if let Ok(id) = r.id.parse::<ContentId>() {
            share.hint(
                id,
                r.providers.iter().filter_map(|p| p.parse().ok()).collect(),
            );
        }
        let mut line = serde_json::to_vec(&r).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::io::Error>(line), (rx, share)))
    });
    Ok(ndjson(stream))
}

fn name_json(r: &kith_search::names::NameRecord) -> serde_json::Value {
    json!({
        "name": r.full_name(),
        "owner": r.owner,
        "revision": r.revision,
        "id": r.id,
        "time": r.time,
    })
}

async fn list_names(AxState(state): AxState<Arc<State>>) -> Json<serde_json::Value> {
    Json(json!(
        state
            .search
            .names()
            .iter()
            .map(name_json)
            .collect::<Vec<_>>()
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishReq {
    name: String,
    path: String,
}

/// Shares `path` and publishes it as the next revision of `name`.
async fn publish_name(
    AxState(state): AxState<Arc<State>>,
    Json(req): Json<PublishReq>,
) -> Result<Json<serde_json::Value>, ApiError> {
    kith_search::names::check_name(&req.name).map_err(bad)?;
    let path = existing_path(&req.path)?;
    let rec = state.share.share(path).await?;
    let r = state.search.publish(&req.name, rec.id).await?;
    Ok(Json(name_json(&r)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveReq {
    name: String,
    timeout_ms: Option<u64>,
}

async fn resolve_name(
    AxState(state): AxState<Arc<State>>,
    Json(req): Json<ResolveReq>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let timeout = wait_ms(req.timeout_ms);
    let r = state.search.resolve(&req.name, timeout).await?;
    Ok(Json(name_json(&r)))
}
