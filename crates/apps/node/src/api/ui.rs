//! The routes the web UI uses beyond the others: the login link, the live event stream,
//! the download history, the settings and the log.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use kith_api as api;
use tokio::sync::{broadcast, mpsc};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;
use crate::Node;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// This module's routes, each declared by its handler's `#[utoipa::path]`; handlers of
/// one path go in one `routes!`.
pub(super) fn routes() -> OpenApiRouter<Node> {
    OpenApiRouter::new()
        .routes(routes!(login_link))
        .routes(routes!(history))
        .routes(routes!(ticket))
        .routes(routes!(settings, change_settings))
        .routes(routes!(logs))
        .routes(routes!(events))
}

/// Event streams open at once (browser tabs); more are refused.
pub(crate) const MAX_STREAMS: usize = 16;

/// A link that logs a browser in once (`kith ui` prints it).
#[utoipa::path(post, path = "/ui/login", security(("token" = [])),
    responses((status = 200, body = api::LoginLink)))]
pub(crate) async fn login_link(State(node): State<Node>) -> Json<api::LoginLink> {
    Json(node.login_link())
}

#[utoipa::path(get, path = "/downloads/history", security(("token" = [])),
    responses((status = 200, description = "Downloads that ended, newest first", body = Vec<api::Transfer>)))]
pub(crate) async fn history(State(node): State<Node>) -> ApiResult<Vec<api::Transfer>> {
    Ok(Json(node.history().await?))
}

#[utoipa::path(get, path = "/shares/{id}/ticket", security(("token" = [])),
    params(("id" = String, Path, description = "Content ID")),
    responses((status = 200, body = api::TicketBody), (status = 400, body = api::ErrorBody)))]
pub(crate) async fn ticket(
    State(node): State<Node>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<api::TicketBody> {
    Ok(Json(node.ticket(&id).await?))
}

#[utoipa::path(get, path = "/settings", security(("token" = [])),
    responses((status = 200, body = api::Settings)))]
pub(crate) async fn settings(State(node): State<Node>) -> ApiResult<api::Settings> {
    Ok(Json(node.settings().await?))
}

/// Changes settings: saved in `config.toml`; rate limits apply at once, relay and broker
/// at the next start.
#[utoipa::path(put, path = "/settings", security(("token" = [])), request_body = api::SettingsChange,
    responses((status = 200, body = api::Settings), (status = 400, body = api::ErrorBody)))]
pub(crate) async fn change_settings(
    State(node): State<Node>,
    Json(c): Json<api::SettingsChange>,
) -> ApiResult<api::Settings> {
    Ok(Json(node.change_settings(&c).await?))
}

#[utoipa::path(get, path = "/logs", security(("token" = [])),
    responses((status = 200, description = "The node's recent log lines, oldest first", body = Vec<api::LogLine>)))]
pub(crate) async fn logs() -> Json<Vec<api::LogLine>> {
    Json(crate::logs::book().recent())
}

fn event<T: serde::Serialize>(name: &str, v: &T) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(v).unwrap_or_default())
}

/// Feeds one event stream until its reader goes or the node stops: `tick` once a second,
/// `shares` when the shares change, `transfer` when a download ends, `log` per log line.
async fn feed(node: Node, tx: mpsc::Sender<Event>) {
    let mut share_events = node.inner.share.events();
    let mut log = crate::logs::book().follow();
    let stop = node.shutdown_token();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut prev = node.sample();
    let mut shares = node.inner.share.list().await.map_or(0, |l| l.len());
    loop {
        let ev = tokio::select! {
            () = stop.cancelled() => return,
            () = tx.closed() => return,
            _ = every.tick() => {
                let Ok((t, now)) = node.tick(&prev, shares).await else { continue };
                prev = now;
                event("tick", &t)
            }
            e = share_events.recv() => match e {
                Ok(kith_share::Event::SharesChanged) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    shares = node.inner.share.list().await.map_or(shares, |l| l.len());
                    event("shares", &shares)
                }
                Ok(kith_share::Event::DownloadDone { id }) => event("transfer", &id.to_string()),
                Ok(kith_share::Event::DownloadFailed { id, .. }) => event("transfer", &id.to_string()),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            l = log.recv() => match l {
                Ok(line) => event("log", &line),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

/// Live events for the UI (server-sent events); the browser reconnects by itself.
#[utoipa::path(get, path = "/events", security(("token" = [])),
    responses((status = 200, description = "Server-sent events: `tick` (a Tick, once a second), `shares` (their count, when they change), `transfer` (a content ID, when a download ends), `log` (a LogLine)",
        content_type = "text/event-stream", body = api::Tick),
        (status = 503, description = "Too many event streams open", body = api::ErrorBody)))]
pub(crate) async fn events(State(node): State<Node>) -> Response {
    let Ok(permit) = node.inner.streams.clone().try_acquire_owned() else {
        return ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many event streams open (at most {MAX_STREAMS}): close a tab"),
        )
        .into_response();
    };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        feed(node, tx).await;
        drop(permit);
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
