//! The handlers, over a node running on loopback: well-formed requests through the typed
//! client the CLI uses (`kith_api::Client`, on the node's API socket), so an API change
//! breaks these tests at compile time; requests that are malformed or hostile on purpose
//! (no token, a wrong `Host` or `Origin`, a `via` no client can send), and the checks of
//! the served JSON against the OpenAPI document, go without a socket through [`Client`]
//! (`oneshot` on the router).

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use kith_api as api;

use crate::{Config, Home, Node, Options};

pub(super) type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub(super) async fn node(dir: &std::path::Path) -> Result<Node, crate::NodeError> {
    let config = Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        mdns: false,
        api: "127.0.0.1:0".into(),
        ..Config::default()
    };
    Node::start(Options::new(Home::new(dir), config)).await
}

/// The typed client (the one the CLI uses) of `node`, on its API socket.
pub(super) fn api(node: &Node) -> Result<kith_api::Client, kith_api::client::Error> {
    kith_api::Client::new(node.api_addr(), node.inner.token.clone())
}

/// Raw requests on the router, without a socket: for what no typed client sends.
pub(super) struct Client {
    pub app: Router,
    pub host: String,
    pub token: String,
}

impl Client {
    pub(super) fn new(node: &Node) -> Self {
        Self {
            app: super::router(node.clone()),
            host: node.api_addr().to_string(),
            token: node.inner.token.clone(),
        }
    }

    pub(super) async fn send(
        &self,
        req: Request<Body>,
    ) -> Result<(StatusCode, Value), Box<dyn std::error::Error + Send + Sync>> {
        let resp = self.app.clone().oneshot(req).await?;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await?;
        let v = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, v))
    }

    pub(super) fn req(&self, method: &str, path: &str, body: Option<Value>) -> Request<Body> {
        let b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json");
        let body = body.map_or_else(Body::empty, |v| Body::from(v.to_string()));
        b.body(body).unwrap_or_default()
    }

    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), Box<dyn std::error::Error + Send + Sync>> {
        self.send(self.req(method, path, body)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_host_and_origin_are_checked_on_every_route() -> TestResult {
    let dir = tempfile::tempdir()?;
    let n = node(dir.path()).await?;
    let c = Client::new(&n);
    let status = api(&n)?.status().await?;
    assert_eq!(status.peer_id, n.overlay().peer_id().to_string());
    let no_token = Request::get("/api/v1/status")
        .header("host", &c.host)
        .body(Body::empty())?;
    assert_eq!(c.send(no_token).await?.0, StatusCode::UNAUTHORIZED);
    for path in ["/api/v1/status", "/metrics", "/api/v1/openapi.json"] {
        let mut rebound = c.req("GET", path, None);
        rebound
            .headers_mut()
            .insert("host", "attacker.example:80".parse()?);
        assert_eq!(c.send(rebound).await?.0, StatusCode::FORBIDDEN, "{path}");
        let mut cross = c.req("GET", path, None);
        cross
            .headers_mut()
            .insert("origin", "http://attacker.example".parse()?);
        assert_eq!(c.send(cross).await?.0, StatusCode::FORBIDDEN, "{path}");
    }
    let m = api(&n)?.metrics().await?;
    assert!(m.contains("kith_inbound_handshakes_pending"));
    n.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_downloads_search_and_names_answer_with_clear_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let n = node(dir.path()).await?;
    let c = Client::new(&n);
    let a = api(&n)?;
    let share = |path: &std::path::Path| api::ShareRequest {
        path: path.display().to_string(),
        group: None,
        public: false,
    };
    let e = a.share(&share("rel/x".as_ref())).await.err();
    assert_eq!(
        e.as_ref().map(|e| (e.status(), e.to_string())),
        Some((
            Some(StatusCode::BAD_REQUEST),
            "path must be absolute".to_owned()
        ))
    );
    let missing = dir.path().join("missing");
    let e = a.share(&share(&missing)).await.err();
    assert_eq!(e.and_then(|e| e.status()), Some(StatusCode::NOT_FOUND));
    let f = dir.path().join("a.txt");
    std::fs::write(&f, b"hello")?;
    let mut indexed = n.search_service().events();
    let shared = a.share(&share(&f)).await?;
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), indexed.recv()).await??;
    assert_eq!(e, kith_search::Event::CatalogueChanged { entries: 1 });
    let id = shared.id;
    let list = a.shares().await?;
    assert_eq!(list.first().map(|s| s.id.as_str()), Some(id.as_str()));
    let e = a.unshare("nope").await.err();
    assert_eq!(e.and_then(|e| e.status()), Some(StatusCode::BAD_REQUEST));
    let download = |id: &str| api::DownloadRequest {
        id: id.to_owned(),
        dir: Some("/tmp".into()),
        ..Default::default()
    };
    let bad = a.download(&download("nope")).await.err();
    let bad = bad.ok_or("a download of nope started")?;
    assert_eq!(bad.status(), Some(StatusCode::BAD_REQUEST), "{bad}");
    let chunk = kith_core::ContentId::raw(b"x").to_string();
    let e = a.download(&download(&chunk)).await.err();
    assert_eq!(e.and_then(|e| e.status()), Some(StatusCode::BAD_REQUEST));
    let (s, _) = c
        .call(
            "POST",
            "/api/v1/search",
            Some(json!({"q": "x", "via": "carrier pigeon"})),
        )
        .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let q = api::SearchRequest {
        q: "!!".into(),
        ..Default::default()
    };
    let e = a.search(&q).await.err();
    assert_eq!(e.and_then(|e| e.status()), Some(StatusCode::BAD_REQUEST));
    let publish = |name: &str| api::PublishRequest {
        name: name.to_owned(),
        path: f.display().to_string(),
        public: false,
    };
    let e = a.publish(&publish("no spaces")).await.err();
    assert_eq!(e.and_then(|e| e.status()), Some(StatusCode::BAD_REQUEST));
    let rec = a.publish(&publish("doc")).await?;
    assert_eq!(rec.revision, 1);
    let other = api::ResolveRequest {
        name: "other".into(),
        timeout_ms: Some(100),
    };
    let e = a.resolve(&other).await.err();
    assert_eq!(e.and_then(|e| e.status()), Some(StatusCode::NOT_FOUND));
    assert_eq!(a.unshare(&id).await?.id, id);
    let e = a.unshare(&id).await.err();
    assert_eq!(e.and_then(|e| e.status()), Some(StatusCode::NOT_FOUND));
    n.shutdown().await;
    Ok(())
}

/// Every field the node sends is in the generated document, so it cannot drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_what_is_served() -> TestResult {
    let dir = tempfile::tempdir()?;
    let n = node(dir.path()).await?;
    let c = Client::new(&n);
    let (_, doc) = c.call("GET", "/api/v1/openapi.json", None).await?;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
    for (path, method) in [
        ("/status", "get"),
        ("/peers", "get"),
        ("/shares", "get"),
        ("/shares", "post"),
        ("/shares/{id}", "delete"),
        ("/downloads", "get"),
        ("/downloads", "post"),
        ("/search", "post"),
        ("/names", "get"),
        ("/names", "post"),
        ("/names/resolve", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} not documented"
        );
    }
    let (_, status) = c.call("GET", "/api/v1/status", None).await?;
    let props = &doc["components"]["schemas"]["Status"]["properties"];
    for key in status.as_object().into_iter().flatten().map(|(k, _)| k) {
        assert!(
            props[key].is_object(),
            "Status.{key} is served but not documented"
        );
    }
    n.shutdown().await;
    Ok(())
}

/// `(module (memory (export "memory") 1) (func (export "_start")))`: a WASI command that
/// does nothing.
const NOTHING: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // types: () -> ()
    0x03, 0x02, 0x01, 0x00, // functions: one of type 0
    0x05, 0x03, 0x01, 0x00, 0x01, // memories: one, at least 1 page
    0x07, 0x13, 0x02, 0x06, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00, 0x06, b'_', b's', b't',
    b'a', b'r', b't', 0x00, 0x00, // exports: memory, _start
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: an empty body
];

/// A job says whether it allows trust and which units rest on trust; its owner accepts
/// them; both are in the OpenAPI document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_report_trust_and_their_owner_accepts_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let n = node(dir.path()).await?;
    let c = Client::new(&n);
    let a = api(&n)?;
    let e = a.accept_trust("0000000000000000").await.err();
    assert_eq!(e.and_then(|e| e.status()), Some(StatusCode::NOT_FOUND));
    let (wasm, inputs) = (dir.path().join("m.wasm"), dir.path().join("in"));
    std::fs::write(&wasm, NOTHING)?;
    std::fs::create_dir(&inputs)?;
    std::fs::write(inputs.join("u0"), b"u0")?;
    let req = api::SubmitJob {
        wasm: Some(wasm.display().to_string()),
        inputs: Some(inputs.display().to_string()),
        trust: Some(false),
        ..Default::default()
    };
    let job = a.submit_job(&req).await?;
    assert!(!job.trust, "{job:?}");
    assert_eq!((job.on_trust, job.on_trust_units.len()), (0, 0));
    let j = a.accept_trust(&job.job).await?;
    assert_eq!(j.on_trust, 0, "{j:?}");
    let (_, doc) = c.call("GET", "/api/v1/openapi.json", None).await?;
    assert!(doc["paths"]["/jobs/{job}/accept-trust"]["post"].is_object());
    let props = &doc["components"]["schemas"]["Job"]["properties"];
    // The job as the node sends it (the same type, serialized the same way).
    let job = serde_json::to_value(&job)?;
    for key in job.as_object().into_iter().flatten().map(|(k, _)| k) {
        assert!(
            props[key].is_object(),
            "Job.{key} is served but not documented"
        );
    }
    n.shutdown().await;
    Ok(())
}
