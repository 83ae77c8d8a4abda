//! The local HTTP API, `/api/v1`, guarded by the token in the data dir; thin handlers over
//! the [`Node`] facade, typed by `kith-api`. `openapi.json` is generated from those types;
//! `/metrics` serves OpenMetrics text.
//!
//! Every route, the documents included, accepts only requests whose `Host` is this node
//! (an IP address or `localhost`, on the API's port) and refuses any `Origin` but its own:
//! a web page cannot read the API by rebinding a DNS name to 127.0.0.1, nor make a
//! browser send it requests (DNS rebinding, CSRF). Wrong tokens and login codes are
//! limited per client address and in total (`guesses`).

mod cache;
mod compute;
mod content;
mod guard;
pub(crate) mod guesses;
mod handlers;
mod openapi;
mod people;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ui;
pub(crate) mod ui;
mod vault;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::{Node, NodeError};

/// An API error: a status and one line saying what is wrong.
pub(crate) struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(kith_api::ErrorBody { error: self.1 })).into_response()
    }
}

fn share_status(e: &kith_share::Error) -> StatusCode {
    use kith_share::Error as E;
    match e {
        E::NotShared(_) | E::NotDownloading(_) | E::NotHere(_) | E::NoSuchPath(_) => {
            StatusCode::NOT_FOUND
        }
        E::Index(_) | E::NotAManifest(_) | E::NotInScope(_) | E::NotPaused(_) | E::IsAFolder(_) => {
            StatusCode::BAD_REQUEST
        }
        E::TooManyDownloads => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn search_status(e: &kith_search::Error) -> StatusCode {
    use kith_search::Error as E;
    match e {
        E::BadQuery(_) | E::NoBroker | E::NotMember(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn people_status(e: &kith_people::Error) -> StatusCode {
    use kith_people::Error as E;
    match e {
        E::Refused(_)
        | E::PeerRefused { .. }
        | E::Timeout { .. }
        | E::NoPersonKey(_)
        | E::BadCode(_)
        | E::Cert(_) => StatusCode::BAD_REQUEST,
        E::Overlay(_) | E::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn groups_status(e: &kith_groups::Error) -> StatusCode {
    use kith_groups::Error as E;
    match e {
        E::Refused(kith_groups::Denied::NotAdmin) => StatusCode::FORBIDDEN,
        E::Refused(_)
        | E::PeerRefused { .. }
        | E::Timeout { .. }
        | E::Ambiguous(_)
        | E::BadName
        | E::TooManyGroups
        | E::AlreadyIn { .. }
        | E::NotInGroup { .. }
        | E::BadPerson(_)
        | E::NoGenesis { .. }
        | E::OtherGroup { .. }
        | E::NotAdded { .. }
        | E::Rejected(_)
        | E::Invite(_)
        | E::Op(_) => StatusCode::BAD_REQUEST,
        E::NoSuchGroup(_) => StatusCode::NOT_FOUND,
        E::People(p) => people_status(p),
        E::Overlay(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn compute_status(e: &kith_compute::Error) -> StatusCode {
    use kith_compute::Error as E;
    match e {
        E::Spec(_) | E::Prefs(_) | E::NotMember(_) | E::TooManyJobs(_) => StatusCode::BAD_REQUEST,
        E::NoJob(_) => StatusCode::NOT_FOUND,
        E::Share(s) => share_status(s),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn vault_status(e: &kith_vault::Error) -> StatusCode {
    use kith_vault::Error as E;
    match e {
        E::Input(_)
        | E::TooFewHolders { .. }
        | E::NoSpace { .. }
        | E::Codec(_)
        | E::NotMember(_) => StatusCode::BAD_REQUEST,
        E::Key(_) => StatusCode::FORBIDDEN,
        E::NotFound(_) | E::NoRoot(_) => StatusCode::NOT_FOUND,
        E::Unavailable(_) | E::Placement(_) | E::Overlay(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn cache_status(e: &kith_cache::Error) -> StatusCode {
    use kith_cache::Error as E;
    match e {
        E::Own(_) | E::NotAManifest(_) => StatusCode::BAD_REQUEST,
        E::NotCached(_) => StatusCode::NOT_FOUND,
        E::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn names_status(e: &kith_names::Error) -> StatusCode {
    use kith_names::Error as E;
    match e {
        E::BadName(_) | E::Refused(_) => StatusCode::BAD_REQUEST,
        E::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let code = match &e {
            NodeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            NodeError::NotFound(_) => StatusCode::NOT_FOUND,
            NodeError::Share(e) => share_status(e),
            NodeError::Search(e) => search_status(e),
            NodeError::Names(e) => names_status(e),
            NodeError::People(e) => people_status(e),
            NodeError::Groups(e) => groups_status(e),
            NodeError::Compute(e) => compute_status(e),
            NodeError::Vault(e) => vault_status(e),
            NodeError::Cache(e) => cache_status(e),
            NodeError::Overlay(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, kith_core::error::one_line(&e))
    }
}

/// A service's error, for handlers that call the service's handle straight: its status
/// comes from the one mapping above, through `NodeError`.
macro_rules! from_service_error {
    ($($e:ty),*) => {$(
        impl From<$e> for ApiError {
            fn from(e: $e) -> Self {
                NodeError::from(e).into()
            }
        }
    )*};
}

from_service_error!(kith_share::Error, kith_vault::Error);

/// Largest request body (every request is a small JSON document; a search query's own
/// limit, 1 KiB, is checked with its reason).
const BODY_LIMIT: usize = 2 << 20;

/// The `/api/v1` routes: each module's, tagged with its name in the document.
fn v1() -> OpenApiRouter<Node> {
    [
        ("handlers", handlers::routes()),
        ("people", people::routes()),
        ("compute", compute::routes()),
        ("vault", vault::routes()),
        ("cache", cache::routes()),
        ("ui", ui::routes()),
    ]
    .into_iter()
    .fold(
        OpenApiRouter::with_openapi(openapi::base()),
        |v1, (tag, r)| v1.merge(tagged(tag, r)),
    )
}

/// Tags every operation of `r` with `tag`.
fn tagged(tag: &str, mut r: OpenApiRouter<Node>) -> OpenApiRouter<Node> {
    for item in r.get_openapi_mut().paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            op.tags.get_or_insert_with(Vec::new).push(tag.to_owned());
        }
    }
    r
}

/// The API's routes over `node`.
pub(crate) fn router(node: Node) -> Router {
    let (v1, doc) = v1().split_for_parts();
    let v1 = v1.route_layer(middleware::from_fn_with_state(node.clone(), guard::token));
    let doc = Bytes::from(doc.to_pretty_json().unwrap_or_default());
    let openapi = get(move || {
        let doc = doc.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], doc) }
    });
    Router::new()
        .nest("/api/v1", v1)
        .route("/api/v1/openapi.json", openapi)
        .route("/metrics", get(handlers::metrics))
        .route("/content/{id}", get(content::file))
        .route("/content/{id}/{*path}", get(content::file_in))
        .merge(crate::ui::routes())
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            node.clone(),
            guard::host_and_origin,
        ))
        .layer(middleware::from_fn(guard::json_errors))
        .layer(middleware::from_fn(crate::ui::headers))
        .with_state(node)
}

/// Binds the API's address. When it asks for any port (`:0`), the port of last time is
/// tried first, so the web UI stays at the same address across restarts.
pub(crate) async fn bind(
    addr: &str,
    last_port: Option<u16>,
) -> Result<tokio::net::TcpListener, NodeError> {
    if let (Some(host), Some(port)) = (addr.strip_suffix(":0"), last_port.filter(|p| *p != 0))
        && let Ok(l) = tokio::net::TcpListener::bind(format!("{host}:{port}")).await
    {
        return Ok(l);
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| NodeError::Api {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })
}

/// Serves the API until `shutdown`.
pub(crate) fn serve(
    node: Node,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let app = router(node).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "API server stopped");
        }
    })
}
