//! What the OpenAPI document says beside its routes: the API's description, its server
//! prefix and the token scheme. The paths, and the schemas they use, come from each
//! handler's `#[utoipa::path]` as the router registers it (`super::v1`).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct Token;

impl Modify for Token {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kith node API",
        version = "1.0.0",
        description = "Local HTTP API of a kith node. Bound to 127.0.0.1; every route except this document and /metrics needs `Authorization: Bearer <token>` (or the web UI's `kith_token` cookie, set by a login link), with the token from `api.token` in the node's data dir. `GET /content/ID[/path]` (outside /api/v1) serves a file's bytes with range requests; without the token only public content, and only on a loopback address. Requests must name the node itself in `Host` (an IP address or localhost) and carry no `Origin` of another site. Wrong tokens are limited per client address (10 at once, then one per 6 s) and in total (100, then one a second): while limited, requests that carry a token get 429 with `Retry-After`, unchecked. Errors are `{\"error\": \"one line\"}`."
    ),
    servers((url = "/api/v1")),
    modifiers(&Token)
)]
struct ApiDoc;

/// The document without its paths, for the router to fill in.
pub(super) fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use tower::ServiceExt;

    use super::super::tests::{Client, TestResult, node};

    /// How the router answers a method on a path.
    #[derive(Debug, PartialEq)]
    enum Answer {
        /// A handler ran (whatever it said of the request).
        Served,
        /// The path has no such method (405).
        NoMethod,
        /// No route has the path (the router's own 404, with no body).
        NoRoute,
    }

    async fn probe(
        c: &Client,
        method: &str,
        uri: &str,
    ) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
        let req = c.req(method, uri, None);
        let resp =
            tokio::time::timeout(Duration::from_secs(30), c.app.clone().oneshot(req)).await??;
        Ok(match resp.status() {
            StatusCode::METHOD_NOT_ALLOWED => Answer::NoMethod,
            StatusCode::NOT_FOUND => {
                let body = tokio::time::timeout(
                    Duration::from_secs(5),
                    axum::body::to_bytes(resp.into_body(), 1 << 16),
                )
                .await??;
                if body.is_empty() {
                    Answer::NoRoute
                } else {
                    Answer::Served
                }
            }
            _ => Answer::Served,
        })
    }

    /// The router serves each method the document gives a path, and no other: both come
    /// from the handlers' declarations, so neither can have a route the other lacks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_router_serves_exactly_the_documented_routes() -> TestResult {
        let dir = tempfile::tempdir()?;
        let n = node(dir.path()).await?;
        let c = Client::new(&n);
        assert_eq!(
            probe(&c, "GET", "/api/v1/no/such/route").await?,
            Answer::NoRoute
        );
        let (_, doc) = c.call("GET", "/api/v1/openapi.json", None).await?;
        let paths = doc["paths"]
            .as_object()
            .ok_or("the document has no paths")?;
        assert!(paths.len() > 30, "{} paths", paths.len());
        for (path, item) in paths {
            let uri = format!("/api/v1{}", fill(path));
            for method in ["get", "put", "post", "delete", "patch"] {
                let documented = item[method].is_object();
                let answer = probe(&c, &method.to_uppercase(), &uri).await?;
                let expected = if documented {
                    Answer::Served
                } else {
                    Answer::NoMethod
                };
                assert_eq!(answer, expected, "{method} {path}");
            }
        }
        n.shutdown().await;
        Ok(())
    }

    /// `path` with each `{param}` replaced by a value of the usual shape.
    fn fill(path: &str) -> String {
        path.split('/')
            .map(|s| {
                if s.starts_with('{') {
                    "0000000000000000"
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}
