//! In-process test harness: start several kith nodes on loopback in one test, drive them
//! through their real HTTP API, and wait on events with bounded timeouts (never fixed
//! sleeps).

pub mod testnet;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kith_node::Config;
use kith_node::{Home, Node, Options};
use serde_json::Value;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// A node running in this process, with its own temporary data dir.
pub struct TestNode {
    pub node: Node,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    token: String,
}

/// The peers listed as providers of a search result.
pub fn providers(r: &Value) -> Vec<String> {
    r["providers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Node options for tests: loopback only, no mDNS, short waits.
pub fn options(home: &Path) -> Options {
    let config = Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        mdns: false,
        api: "127.0.0.1:0".into(),
        ..Config::default()
    };
    let mut o = Options::new(Home::new(home), config);
    o.share.patience = Duration::from_secs(20);
    o
}

impl TestNode {
    /// Starts a node; `tweak` adjusts its options (bootstrap peers, limits…).
    pub async fn start(tweak: impl FnOnce(&mut Options)) -> Result<Self> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::Builder::new()
            .prefix("kith-test-")
            .tempdir_in(scratch())?;
        Self::start_in(dir, tweak).await
    }

    /// This node's dialable address, with `/p2p/PEER`.
    pub async fn addr(&self) -> Result<String> {
        let s = self.node.overlay().status().await?;
        let a = s.listen_addrs.first().ok_or("node has no listen address")?;
        Ok(format!("{a}/p2p/{}", s.peer_id))
    }

    pub fn peer_id(&self) -> String {
        self.node.overlay().peer_id().to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/api/v1{path}", self.node.api_addr())
    }

    /// GET an API path; errors carry the API's error line.
    pub async fn api_get(&self, path: &str) -> Result<Value> {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await?;
        json_or_error(r).await
    }

    pub async fn api_post(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        json_or_error(r).await
    }

    pub async fn api_delete(&self, path: &str) -> Result<Value> {
        let r = self
            .http
            .delete(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await?;
        json_or_error(r).await
    }

    /// POSTs to an API path that answers JSON lines; returns every line once the answer
    /// ends.
    pub async fn api_post_lines(&self, path: &str, body: &Value) -> Result<Vec<Value>> {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(json_or_error(r)
                .await
                .err()
                .unwrap_or_else(|| "request failed".into()));
        }
        let text = r.text().await?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(Into::into))
            .collect()
    }

    /// Shares `path` and returns its content ID.
    pub async fn share(&self, path: &Path) -> Result<String> {
        let v = self
            .api_post("/shares", &serde_json::json!({ "path": path }))
            .await?;
        Ok(v["id"].as_str().ok_or("no id")?.to_owned())
    }

    /// Fetches `id` to `out` through the API and returns the last progress object.
    pub async fn get(&self, id: &str, out: &Path) -> Result<Value> {
        let lines = self
            .api_post_lines(
                "/downloads",
                &serde_json::json!({ "id": id, "output": out }),
            )
            .await?;
        Ok(lines.last().ok_or("no progress")?.clone())
    }

    /// The node's OpenMetrics text.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self
            .http
            .get(format!("http://{}/metrics", self.node.api_addr()))
            .send()
            .await?
            .text()
            .await?)
    }

    /// Runs a search through the API and returns the final state of each result (a result
    /// may be streamed several times as more peers answer).
    pub async fn search(&self, q: &str, via: &str, timeout_ms: u64) -> Result<Vec<Value>> {
        let body = serde_json::json!({ "q": q, "via": via, "timeout_ms": timeout_ms });
        let lines = self.api_post_lines("/search", &body).await?;
        let mut out: Vec<Value> = Vec::new();
        for v in lines {
            match out.iter_mut().find(|x| x["id"] == v["id"]) {
                Some(x) => *x = v,
                None => out.push(v),
            }
        }
        Ok(out)
    }

    pub async fn stop(self) {
        self.node.shutdown().await;
    }

    /// Stops the node and starts it again on the same data dir.
    pub async fn restart(self, tweak: impl FnOnce(&mut Options)) -> Result<Self> {
        Self::start_in(self.stop_keeping_data().await, tweak).await
    }

    /// Stops the node and hands back its data dir, for [`TestNode::start_in`].
    pub async fn stop_keeping_data(self) -> tempfile::TempDir {
        self.node.shutdown().await;
        self.dir
    }

    /// Starts a node on an existing data dir (same identity, shares and downloads).
    pub async fn start_in(
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut Options),
    ) -> Result<Self> {
        let mut o = options(dir.path());
        tweak(&mut o);
        let node = Node::start(o).await?;
        let token = node.home().token()?;
        Ok(Self {
            node,
            dir,
            http: reqwest::Client::new(),
            token,
        })
    }
}

async fn json_or_error(r: reqwest::Response) -> Result<Value> {
    let ok = r.status().is_success();
    let v: Value = r.json().await?;
    if ok {
        Ok(v)
    } else {
        Err(v["error"]
            .as_str()
            .unwrap_or("request failed")
            .to_owned()
            .into())
    }
}

/// A bare overlay on loopback, with no services: a peer that speaks only what a test
/// makes it speak (a liar, an attacker). Stops when dropped.
pub struct RawPeer {
    pub overlay: kith_overlay::Overlay,
    stop: tokio_util::sync::CancellationToken,
}

impl RawPeer {
    pub async fn start(bootstrap: &[String]) -> Result<Self> {
        Self::with_key(kith_overlay::Keypair::generate_ed25519(), bootstrap).await
    }

    /// A raw peer with a given device key (e.g. one a certificate names).
    pub async fn with_key(key: kith_overlay::Keypair, bootstrap: &[String]) -> Result<Self> {
        let mut c = kith_overlay::Config::new(key);
        c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
        c.bootstrap = bootstrap
            .iter()
            .map(|a| kith_overlay::parse_addr(a))
            .collect::<std::result::Result<_, _>>()?;
        let stop = tokio_util::sync::CancellationToken::new();
        let mut registry = prometheus_client::registry::Registry::default();
        let (overlay, _task) = kith_overlay::Overlay::start(c, &mut registry, stop.clone()).await?;
        Ok(Self { overlay, stop })
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Where tests put files: tmpfs when there is one (fast, spares the disk).
pub fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// Deterministic pseudo-random bytes.
/// The value of counter `name` in OpenMetrics `text` (0 when absent).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Polls `check` until it returns `Some`, or fails after `limit`. For conditions that have
/// no event to wait on (state in another node); each poll is a real check.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("timed out after {limit:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a test body with an overall time limit.
pub async fn bounded<T>(limit: Duration, f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| format!("test exceeded {limit:?}"))?
}

/// Compares two trees byte for byte.
pub fn same_tree(a: &Path, b: &Path) -> Result<()> {
    let ma = std::fs::metadata(a)?;
    if ma.is_file() {
        if std::fs::read(a)? != std::fs::read(b)? {
            return Err(format!("{} and {} differ", a.display(), b.display()).into());
        }
        return Ok(());
    }
    let names = |p: &Path| -> Result<Vec<_>> {
        let mut v: Vec<_> = std::fs::read_dir(p)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        v.sort();
        Ok(v)
    };
    let (na, nb) = (names(a)?, names(b)?);
    if na != nb {
        return Err(format!("{} and {} list different entries", a.display(), b.display()).into());
    }
    for n in na {
        same_tree(&a.join(&n), &b.join(&n))?;
    }
    Ok(())
}
