//! In-process test harness: start several kith nodes on loopback in one test, drive them
//! through their real HTTP API with the typed client (`kith_api::Client`, the one the
//! `kith` command uses: an API change breaks the tests at compile time), and wait on
//! events with bounded timeouts (never fixed sleeps).

pub mod testnet;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use kith_api as api;
use kith_api::Client;
use kith_node::Config;
use kith_node::{Home, Node, Options};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// A node running in this process, with its own temporary data dir.
pub struct TestNode {
    pub node: Node,
    pub dir: tempfile::TempDir,
    client: Client,
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

    /// The typed API client of this node (the one the `kith` command uses).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Shares `path` and returns its content ID.
    pub async fn share(&self, path: &Path) -> Result<String> {
        let req = api::ShareRequest {
            path: path.display().to_string(),
            group: None,
            public: false,
        };
        Ok(self.client.share(&req).await?.id)
    }

    /// Fetches `id` (a content ID or a name) to `out` through the API and returns the last
    /// progress line.
    pub async fn get(&self, id: &str, out: &Path) -> Result<api::Progress> {
        let req = api::DownloadRequest {
            id: id.to_owned(),
            output: Some(out.display().to_string()),
            ..Default::default()
        };
        self.follow(&req).await
    }

    /// Starts or follows a download and returns its last progress line, once the answer
    /// ends.
    pub async fn follow(&self, req: &api::DownloadRequest) -> Result<api::Progress> {
        let mut lines = self.client.download(req).await?;
        let mut last = None;
        while let Some(p) = lines.next().await {
            last = Some(p?);
        }
        Ok(last.ok_or("no progress")?)
    }

    /// The node's OpenMetrics text.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self.client.metrics().await?)
    }

    /// Runs a search through the API and returns the final state of each result (a result
    /// may be streamed several times as more peers answer).
    pub async fn search(
        &self,
        q: &str,
        via: &str,
        timeout_ms: u64,
    ) -> Result<Vec<api::SearchResult>> {
        let req = api::SearchRequest {
            q: q.to_owned(),
            via: Some(via.to_owned()),
            timeout_ms: Some(timeout_ms),
            ..Default::default()
        };
        let mut lines = self.client.search(&req).await?;
        let mut out: Vec<api::SearchResult> = Vec::new();
        while let Some(r) = lines.next().await {
            let r = r?;
            match out.iter_mut().find(|x| x.id == r.id) {
                Some(x) => *x = r,
                None => out.push(r),
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
        let client = Client::new(node.api_addr(), node.home().token()?)?;
        Ok(Self { node, dir, client })
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
