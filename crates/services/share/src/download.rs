//! One download: find providers, fetch and verify manifests, then fetch chunks from every
//! provider at once. Each provider gets a few streams that pull chunks from one shared queue,
//! so faster providers take more of the work. Every chunk is verified before it is written;
//! a provider that sends wrong bytes is dropped and the chunk goes back in the queue.
//! Verified chunks are recorded in the store as they land, so a download that is stopped
//! (Ctrl-C, crash) resumes without fetching them again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use kith_core::ContentId;
use kith_core::id::{Hash, Kind};
use kith_core::manifest::{EntryKind, MAX_DEPTH, Manifest};
use kith_core::store::{
    DownloadRecord, DownloadState, FileRecord, Location, Op, ShareKind, ShareRecord, now_secs,
};
use kith_overlay::PeerId;
use kith_overlay::Stream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::protocol::{self, Status, WireError};
use crate::{Inner, Progress};

/// First gap before the DHT is asked again for providers; it doubles up to [`REFIND_MAX`].
const REFIND: Duration = Duration::from_secs(2);
/// Longest gap between two provider lookups while a download runs.
const REFIND_MAX: Duration = Duration::from_secs(15);
/// Longest time a response may make no progress at all (one [`READ_STEP`] in this time
/// is about 13 KiB/s: slower than that, a stream counts as stalled).
const STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes read per step of a response when no download limit applies.
const READ_STEP: usize = 256 * 1024;
/// Longest wait to open a stream (includes dialling).
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// Verified chunks recorded per store transaction.
const COMMIT_EVERY: usize = 64;
/// Requests a worker keeps outstanding on its stream.
const PIPELINE: usize = 4;
/// Consecutive failures after which a worker gives up on its provider.
const MAX_FAILURES: u32 = 3;

/// Where to put a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Exactly this path (the file, or the folder that gets the tree).
    Exact(PathBuf),
    /// Under this folder, named as the content is named.
    Under(PathBuf),
}

#[derive(Debug, thiserror::Error)]
enum DownloadError {
    #[error("no provider of {0} found within {1:?}")]
    NoProviders(ContentId, Duration),
    #[error("{0} already exists (choose another output path or remove it)")]
    Exists(String),
    #[error("cannot write {0}: {1}")]
    Write(String, String),
    #[error("{0}")]
    Invalid(String),
    #[error("store: {0}")]
    Store(#[from] kith_core::store::StoreError),
    #[error("stopped")]
    Stopped,
}

/// One unique chunk to fetch, and every place it goes.
#[derive(Debug)]
struct ChunkTask {
    hash: Hash,
    len: u32,
    targets: Vec<(Arc<str>, u64)>,
}

impl ChunkTask {
    /// Store writes recording that this chunk now lives at each of its targets.
    fn locations(&self) -> impl Iterator<Item = Op> + '_ {
        self.targets.iter().map(|(p, off)| {
            Op::AddLocation(
                self.hash,
                Location {
                    path: p.to_string(),
                    offset: *off,
                    len: self.len,
                },
            )
        })
    }
}

struct Plan {
    root: PathBuf,
    files: Vec<(PathBuf, u64, ContentId)>,
    dirs: Vec<PathBuf>,
    tasks: Vec<ChunkTask>,
    total: u64,
}

pub(crate) async fn run(
    inner: Arc<Inner>,
    id: ContentId,
    output: Output,
    patience: Duration,
    tx: watch::Sender<Progress>,
) {
    inner.metrics.downloads_active.inc();
    let span = tracing::info_span!("download", %id);
    let _e = span.enter();
    drop(_e);
    let result = {
        let inner = inner.clone();
        let tx = tx.clone();
        tracing::Instrument::instrument(
            async move { download(&inner, id, output, patience, &tx).await },
            span,
        )
        .await
    };
    inner.metrics.downloads_active.dec();
    match result {
        Ok(()) => {
            inner.metrics.downloads_done.inc();
            tx.send_modify(|p| p.state = "done");
        }
        Err(DownloadError::Stopped) => {
            tracing::info!(%id, "download paused by shutdown; it resumes on restart");
            tx.send_modify(|p| {
                p.state = "failed";
                p.error =
                    Some("the node is shutting down; the download resumes when it restarts".into());
            });
        }
        Err(e) => {
            tracing::warn!(%id, error = %e, "download failed");
            if let Ok(Some(mut rec)) = inner.store.download(&id) {
                rec.state = DownloadState::Failed(e.to_string());
                let _ = inner.store.apply(vec![Op::PutDownload(rec)]);
            }
            tx.send_modify(|p| {
                p.state = "failed";
                p.error = Some(e.to_string());
            });
        }
    }
}

/// Feeds peers that may have `id` into `tx`: connected peers first, then the DHT, again
/// every [`REFIND`] until the download ends; and every peer as it connects (a provider
/// that went away may come back on its own, e.g. through a relay).
fn spawn_finder(
    inner: &Arc<Inner>,
    id: ContentId,
    tx: mpsc::Sender<PeerId>,
) -> tokio::task::AbortHandle {
    let inner = inner.clone();
    tokio::spawn(async move {
        // Subscribed before the connected peers are read, so none is missed in between.
        let mut connected = inner.overlay.connected();
        for p in inner.hinted(&id) {
            if tx.send(p).await.is_err() {
                return;
            }
        }
        if let Ok(status) = inner.overlay.status().await {
            for c in status.connections {
                if let Ok(p) = c.peer_id.parse::<PeerId>()
                    && tx.send(p).await.is_err()
                {
                    return;
                }
            }
        }
        let mut gap = REFIND;
        loop {
            if let Ok(mut rx) = inner.overlay.find_providers(id.dht_key()).await {
                while let Some(p) = rx.recv().await {
                    if tx.send(p).await.is_err() {
                        return;
                    }
                }
            }
            let wait = tokio::time::sleep(gap);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = inner.shutdown.cancelled() => return,
                    () = &mut wait => break,
                    Ok(p) = connected.recv() => {
                        if tx.send(p).await.is_err() {
                            return;
                        }
                    }
                }
            }
            gap = (gap * 2).min(REFIND_MAX);
        }
    })
    .abort_handle()
}

/// While a peer has a direct connection and a relayed one that is closing (just upgraded),
/// waits (up to [`UPGRADE_WAIT`]) for the relayed one to go, so a new stream cannot land on
/// it: a closing connection waits for its streams, and a stream on it would hang.
async fn await_upgrade(inner: &Inner, peer: PeerId) {
    let me = peer.to_string();
    let deadline = tokio::time::Instant::now() + UPGRADE_WAIT;
    loop {
        let Ok(status) = inner.overlay.status().await else {
            return;
        };
        let paths: Vec<&str> = status
            .connections
            .iter()
            .filter(|c| c.peer_id == me)
            .map(|c| c.path)
            .collect();
        let both = paths.contains(&"direct") && paths.contains(&"relayed");
        if !both || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Longest wait for a closing relayed connection to go (see [`await_upgrade`]).
const UPGRADE_WAIT: Duration = Duration::from_secs(3);

/// Opens a stream and waits for the server to take it.
async fn open(inner: &Inner, peer: PeerId) -> Result<Stream, WireError> {
    await_upgrade(inner, peer).await;
    let mut control = inner.overlay.streams();
    let fut = async {
        let mut s = control
            .open_stream(peer, protocol::PROTOCOL)
            .await
            .map_err(|e| WireError::Protocol(e.to_string()))?;
        protocol::read_greeting(&mut s).await?;
        Ok(s)
    };
    tokio::time::timeout(OPEN_TIMEOUT, fut)
        .await
        .map_err(|_| WireError::Protocol("timed out opening stream".into()))?
}

/// Reads the response to a request for `id` and returns its bytes if they match `id`.
/// A response that makes no progress for [`STALL_TIMEOUT`] fails (a provider that went
/// away without closing the connection); a slow but moving one does not.
async fn read_response(
    inner: &Inner,
    stream: &mut Stream,
    id: &ContentId,
) -> Result<Result<Vec<u8>, ()>, WireError> {
    let stalled = || WireError::Protocol("provider stopped sending".into());
    let len = tokio::time::timeout(
        STALL_TIMEOUT,
        protocol::read_response_header(stream, protocol::max_body(id.kind())),
    )
    .await
    .map_err(|_| stalled())??;
    let mut buf = vec![0u8; len];
    // Small slices when a download limit paces them; otherwise few, large reads.
    let step = if inner.download_limit.is_limited() {
        crate::limit::SLICE
    } else {
        READ_STEP
    };
    for slice in buf.chunks_mut(step) {
        inner.download_limit.acquire(slice.len()).await;
        tokio::time::timeout(STALL_TIMEOUT, stream.read_exact(slice))
            .await
            .map_err(|_| stalled())??;
    }
    if id.verify(&buf) {
        Ok(Ok(buf))
    } else {
        Ok(Err(()))
    }
}

/// Requests one block on `stream` and returns its bytes if they match `id`.
async fn request(
    inner: &Inner,
    stream: &mut Stream,
    id: &ContentId,
) -> Result<Result<Vec<u8>, ()>, WireError> {
    protocol::write_request(stream, id).await?;
    read_response(inner, stream, id).await
}

/// Manifest requests in flight at once: stale providers (gone peers whose records are
/// still in the DHT) must not make a download wait for their dial timeouts one by one.
const MANIFEST_PARALLEL: usize = 8;

/// A provider that could not be reached is tried again this much later (times the tries
/// so far), at most [`MANIFEST_REDIALS`] times.
const MANIFEST_REDIAL: Duration = Duration::from_millis(300);
const MANIFEST_REDIALS: u32 = 3;

/// Fetches a manifest from the given peers (or the store): asks up to
/// [`MANIFEST_PARALLEL`] peers at once, as they are found; the first good answer wins.
async fn fetch_manifest(
    inner: &Inner,
    id: &ContentId,
    peers: &mut Vec<PeerId>,
    found: &mut mpsc::Receiver<PeerId>,
    providers: &mut HashSet<PeerId>,
    patience: Duration,
) -> Result<Manifest, DownloadError> {
    use futures::StreamExt as _;
    if let Ok(Some(bytes)) = inner.store.block(id) {
        return Manifest::decode(&bytes).map_err(|e| DownloadError::Invalid(e.to_string()));
    }
    let deadline = tokio::time::Instant::now() + patience;
    let mut tried: HashSet<PeerId> = HashSet::new();
    let mut in_flight: HashSet<PeerId> = HashSet::new();
    let mut attempts = futures::stream::FuturesUnordered::new();
    let mut finder_open = true;
    // A peer whose relayed connection is being upgraded: its attempt is dropped and made
    // again (on the direct connection).
    let mut upgrades = inner.overlay.upgrades();
    let mut moving: HashMap<PeerId, CancellationToken> = HashMap::new();
    // Peers that could not be reached, and how often: a provider found while another dial
    // to it (with addresses that turn out stale) is failing is reached on a later try.
    let mut unreachable: HashMap<PeerId, u32> = HashMap::new();
    loop {
        while attempts.len() < MANIFEST_PARALLEL {
            let Some(peer) = peers
                .iter()
                .copied()
                .find(|p| !tried.contains(p) && !inner.is_banned(p))
            else {
                break;
            };
            tried.insert(peer);
            in_flight.insert(peer);
            let moved = CancellationToken::new();
            moving.insert(peer, moved.clone());
            let wait = MANIFEST_REDIAL * unreachable.get(&peer).copied().unwrap_or(0);
            attempts.push(async move {
                let attempt = async {
                    tokio::time::sleep(wait).await;
                    let mut s = open(inner, peer)
                        .await
                        .map_err(|e| (e, true))?;
                    let r = request(inner, &mut s, id).await;
                    let _ = s.close().await;
                    r.map_err(|e| (e, false))
                };
                let r = tokio::select! {
                    r = attempt => r,
                    () = moved.cancelled() => Err((WireError::Protocol("connection upgraded".into()), false)),
                };
                (peer, r)
            });
        }
        if attempts.is_empty() && !finder_open {
            // Nobody left to ask and nobody more to come but what the deadline allows.
            tokio::select! {
                () = inner.shutdown.cancelled() => return Err(DownloadError::Stopped),
                () = tokio::time::sleep_until(deadline) => return Err(DownloadError::NoProviders(*id, patience)),
            }
        }
        tokio::select! {
            () = inner.shutdown.cancelled() => return Err(DownloadError::Stopped),
            () = tokio::time::sleep_until(deadline), if attempts.is_empty() => {
                return Err(DownloadError::NoProviders(*id, patience));
            }
            got = found.recv(), if finder_open => match got {
                Some(p) => {
                    if !peers.contains(&p) {
                        peers.push(p);
                    }
                    // Found again: worth another try once its last one is over.
                    if !in_flight.contains(&p) {
                        tried.remove(&p);
                    }
                }
                None => finder_open = false,
            },
            Ok(p) = upgrades.recv() => {
                if let Some(t) = moving.get(&p) {
                    t.cancel();
                }
            }
            Some((peer, result)) = attempts.next(), if !attempts.is_empty() => {
                in_flight.remove(&peer);
                if moving.remove(&peer).is_some_and(|t| t.is_cancelled()) {
                    tried.remove(&peer);
                    continue;
                }
                match result {
                    Ok(Ok(bytes)) => {
                        let m = Manifest::decode(&bytes).map_err(|e| {
                            DownloadError::Invalid(format!("{id} is not a valid manifest: {e}"))
                        })?;
                        inner.store.apply(vec![Op::PutBlock(*id, bytes)])?;
                        providers.insert(peer);
                        return Ok(m);
                    }
                    Ok(Err(())) => {
                        tracing::warn!(%peer, %id, "peer sent a manifest that does not match its ID; dropping it");
                        inner.metrics.bad_chunks.inc();
                        inner.ban(peer);
                        let _ = inner.overlay.disconnect(peer).await;
                    }
                    Err((e, unreached)) => {
                        tracing::debug!(%peer, %id, error = %e, "peer cannot give manifest");
                        let n = unreachable.entry(peer).or_insert(0);
                        if unreached && *n < MANIFEST_REDIALS {
                            *n += 1;
                            tried.remove(&peer);
                        }
                    }
                }
            }
        }
    }
}

fn resolve_output(output: &Output, name: &str) -> PathBuf {
    match output {
        Output::Exact(p) => p.clone(),
        Output::Under(dir) => dir.join(name),
    }
}

async fn download(
    inner: &Arc<Inner>,
    id: ContentId,
    output: Output,
    patience: Duration,
    tx: &watch::Sender<Progress>,
) -> Result<(), DownloadError> {
    let (found_tx, mut found) = mpsc::channel(64);
    let finder = spawn_finder(inner, id, found_tx);
    let _finder = AbortOnDrop(finder);
    let mut peers: Vec<PeerId> = Vec::new();
    let mut providers: HashSet<PeerId> = HashSet::new();

    let root = fetch_manifest(inner, &id, &mut peers, &mut found, &mut providers, patience).await?;
    let out = resolve_output(&output, root.name());
    let out_str = out.display().to_string();
    let existing = inner.store.download(&id)?;
    let resuming = existing.as_ref().is_some_and(|r| r.output == out_str);
    if !resuming && std::fs::symlink_metadata(&out).is_ok() {
        return Err(DownloadError::Exists(out_str));
    }
    if !resuming {
        inner.store.apply(vec![Op::PutDownload(DownloadRecord {
            id,
            output: out_str.clone(),
            state: DownloadState::Running,
            added: now_secs(),
        })])?;
    } else if let Some(mut rec) = existing {
        rec.state = DownloadState::Running;
        inner.store.apply(vec![Op::PutDownload(rec)])?;
    }
    tx.send_modify(|p| {
        p.name = Some(root.name().to_owned());
        p.output = Some(out_str.clone());
        p.total_bytes = root.size();
        p.state = "downloading";
    });

    // Walk the tree, fetching sub-manifests, and plan every chunk.
    let mut plan = Plan {
        root: out.clone(),
        files: Vec::new(),
        dirs: Vec::new(),
        tasks: Vec::new(),
        total: 0,
    };
    let mut index: HashMap<Hash, usize> = HashMap::new();
    let mut stack = vec![(root, out.clone(), id, 0usize)];
    while let Some((m, path, mid, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(DownloadError::Invalid("folders nested too deep".into()));
        }
        match m {
            Manifest::File(f) => {
                let key: Arc<str> = Arc::from(path.display().to_string());
                let mut offset = 0u64;
                for c in &f.chunks {
                    let i = *index.entry(c.hash).or_insert_with(|| {
                        plan.tasks.push(ChunkTask {
                            hash: c.hash,
                            len: c.size,
                            targets: Vec::new(),
                        });
                        plan.tasks.len() - 1
                    });
                    if let Some(t) = plan.tasks.get_mut(i) {
                        t.targets.push((key.clone(), offset));
                    }
                    offset += u64::from(c.size);
                }
                plan.total += f.size;
                plan.files.push((path, f.size, mid));
            }
            Manifest::Dir(d) => {
                plan.dirs.push(path.clone());
                for e in d.entries {
                    let sub = fetch_manifest(
                        inner,
                        &e.id,
                        &mut peers,
                        &mut found,
                        &mut providers,
                        patience,
                    )
                    .await?;
                    let ok = matches!(
                        (&sub, e.kind),
                        (Manifest::File(_), EntryKind::File) | (Manifest::Dir(_), EntryKind::Dir)
                    );
                    if !ok {
                        return Err(DownloadError::Invalid(format!(
                            "entry {:?} has the wrong type",
                            e.name
                        )));
                    }
                    stack.push((sub, path.join(&e.name), e.id, depth + 1));
                }
            }
        }
    }

    // Create the files at full size (keeping what a previous run wrote) and find the
    // chunks that are already here: verified in the output (resume) or elsewhere locally.
    let chunks_total = plan.tasks.len() as u64;
    tx.send_modify(|p| {
        p.chunks_total = chunks_total;
        p.total_bytes = plan.total;
    });
    let plan = Arc::new(plan);
    let (have, reused_ops) = {
        let plan = plan.clone();
        let store = inner.store.clone();
        tokio::task::spawn_blocking(move || prepare(&store, &plan, resuming))
            .await
            .map_err(|_| DownloadError::Stopped)??
    };
    inner.store.apply(reused_ops)?;
    let have_bytes: u64 = have
        .iter()
        .filter_map(|&i| plan.tasks.get(i))
        .map(|t| u64::from(t.len) * t.targets.len() as u64)
        .sum();
    tx.send_modify(|p| {
        p.chunks_done = have.len() as u64;
        p.done_bytes = have_bytes;
    });
    let queue: VecDeque<usize> = (0..plan.tasks.len())
        .filter(|i| !have.contains(i))
        .collect();
    tracing::info!(
        chunks = plan.tasks.len(),
        local = have.len(),
        to_fetch = queue.len(),
        "download planned"
    );

    if !queue.is_empty() {
        fetch_chunks(
            inner,
            patience,
            &plan,
            queue,
            &mut peers,
            &mut found,
            &mut providers,
            tx,
        )
        .await?;
    }

    finish(inner, id, &plan, &out_str).await?;
    tx.send_modify(|p| {
        p.providers = providers.iter().map(|p| p.to_string()).collect();
        p.providers.sort();
    });
    tracing::info!(
        bytes = plan.total,
        providers = providers.len(),
        "download complete"
    );
    Ok(())
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Creates the output tree and returns the chunks already in place, plus store writes for
/// chunks copied from elsewhere on this machine.
fn prepare(
    store: &kith_core::store::Store,
    plan: &Plan,
    resuming: bool,
) -> Result<(HashSet<usize>, Vec<Op>), DownloadError> {
    let werr =
        |p: &Path, e: std::io::Error| DownloadError::Write(p.display().to_string(), e.to_string());
    for d in &plan.dirs {
        std::fs::create_dir_all(d).map_err(|e| werr(d, e))?;
    }
    for (path, size, _) in &plan.files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| werr(parent, e))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| werr(path, e))?;
        f.set_len(*size).map_err(|e| werr(path, e))?;
    }
    let mut have = HashSet::new();
    let mut ops = Vec::new();
    for (i, t) in plan.tasks.iter().enumerate() {
        // Resuming: whatever a previous run wrote and verified is still in the output,
        // recorded or not (a crash can come between the write and its record).
        let in_place = resuming
            && t.targets
                .iter()
                .all(|(p, off)| read_verified(p, *off, t.len, &t.hash));
        if in_place {
            ops.extend(t.locations());
            have.insert(i);
            continue;
        }
        if let Some(bytes) = store.read_chunk(&t.hash)? {
            write_targets(&t.targets, &bytes)?;
            ops.extend(t.locations());
            have.insert(i);
        }
    }
    Ok((have, ops))
}

fn read_verified(path: &str, offset: u64, len: u32, hash: &Hash) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset).is_ok() && blake3::hash(&buf).as_bytes() == hash
}

fn write_targets(targets: &[(Arc<str>, u64)], bytes: &[u8]) -> Result<(), DownloadError> {
    for (p, off) in targets {
        let f = OpenOptions::new()
            .write(true)
            .open(&**p)
            .map_err(|e| DownloadError::Write(p.to_string(), e.to_string()))?;
        f.write_all_at(bytes, *off)
            .map_err(|e| DownloadError::Write(p.to_string(), e.to_string()))?;
    }
    Ok(())
}

/// The chunks still to fetch, shared by every worker of a download.
#[derive(Default)]
struct Work {
    /// Chunks this download needs from the network.
    total: usize,
    queue: VecDeque<usize>,
    /// Chunks being fetched, and by how many workers.
    inflight: HashMap<usize, u8>,
    done: HashSet<usize>,
}

impl Work {
    /// Next chunk to fetch. When the queue is empty, a chunk that only one (maybe slow)
    /// provider is fetching is handed out again (endgame), so one stalled provider cannot
    /// hold up the end of a download.
    fn take(&mut self) -> Option<usize> {
        let i = match self.queue.pop_front() {
            Some(i) => i,
            None => {
                *self
                    .inflight
                    .iter()
                    .find(|(i, n)| **n == 1 && !self.done.contains(*i))?
                    .0
            }
        };
        *self.inflight.entry(i).or_default() += 1;
        Some(i)
    }

    /// A fetch of `i` ended without landing it.
    fn give_back(&mut self, i: usize) {
        let left = self.inflight.get_mut(&i).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == Some(0) {
            self.inflight.remove(&i);
            if !self.done.contains(&i) {
                self.queue.push_front(i);
            }
        }
    }

    /// `i` landed; returns false when another worker landed it first.
    fn land(&mut self, i: usize) -> bool {
        if let Some(n) = self.inflight.get_mut(&i) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.inflight.remove(&i);
            }
        }
        self.done.insert(i)
    }

    fn has_work(&self) -> bool {
        !self.queue.is_empty()
    }

    fn finished(&self) -> bool {
        self.done.len() >= self.total
    }
}

enum WorkerExit {
    /// Queue empty.
    Idle,
    /// The peer does not have the content.
    NotProvider,
    /// The peer sent bytes that do not match their ID.
    Bad,
    /// The peer kept failing (gone, timed out).
    Failed(String),
    /// Writing to disk failed: the download cannot go on.
    Fatal(String),
    /// The connection to the peer is being upgraded; start again on a new stream.
    Moved,
}

impl WorkerExit {
    fn name(&self) -> &'static str {
        match self {
            WorkerExit::Idle => "idle",
            WorkerExit::NotProvider => "not-provider",
            WorkerExit::Bad => "bad",
            WorkerExit::Failed(_) => "failed",
            WorkerExit::Fatal(_) => "fatal",
            WorkerExit::Moved => "moved",
        }
    }
}

struct Landed {
    index: usize,
    peer: PeerId,
}

/// Gives every chunk requested on a lost stream back to the queue, and wakes idle workers.
fn give_back_all(work: &Mutex<Work>, wake: &tokio::sync::Notify, pending: &mut VecDeque<usize>) {
    if pending.is_empty() {
        return;
    }
    if let Ok(mut w) = work.lock() {
        for i in pending.drain(..) {
            w.give_back(i);
        }
    }
    wake.notify_waiters();
}

/// Why a worker stops early: its provider was dropped, or its connection is moving.
struct Stop {
    dropped: CancellationToken,
    moved: CancellationToken,
}

/// One stream to one provider. Keeps up to [`PIPELINE`] requests outstanding so the
/// provider always has the next chunk to send; answers come back in order.
async fn worker(
    inner: Arc<Inner>,
    peer: PeerId,
    plan: Arc<Plan>,
    work: Arc<Mutex<Work>>,
    wake: Arc<tokio::sync::Notify>,
    landed: mpsc::Sender<Landed>,
    stop: Stop,
) -> (PeerId, WorkerExit) {
    let Stop { dropped, moved } = stop;
    let mut pending: VecDeque<usize> = VecDeque::new();
    // A provider dropped for misbehaving takes its other streams with it at once, so the
    // chunks they were waiting for go back to the queue instead of waiting for a timeout.
    let exit = tokio::select! {
        e = fetch_loop(&inner, peer, &plan, &work, &wake, &landed, &mut pending) => e,
        () = dropped.cancelled() => WorkerExit::Bad,
        // The peer's relayed connection is being replaced by a direct one: this stream
        // may be on it, so the worker starts over on a new stream.
        () = moved.cancelled() => WorkerExit::Moved,
    };
    give_back_all(&work, &wake, &mut pending);
    (peer, exit)
}

async fn fetch_loop(
    inner: &Arc<Inner>,
    peer: PeerId,
    plan: &Plan,
    work: &Mutex<Work>,
    wake: &tokio::sync::Notify,
    landed: &mpsc::Sender<Landed>,
    pending: &mut VecDeque<usize>,
) -> WorkerExit {
    let mut stream: Option<Stream> = None;
    let mut failures = 0u32;
    let cid = |i: usize| plan.tasks.get(i).map(|t| ContentId::new(Kind::Raw, t.hash));
    let exit = loop {
        if inner.is_banned(&peer) {
            break WorkerExit::Bad;
        }
        let s = match stream.as_mut() {
            Some(s) => s,
            None => match open(inner, peer).await {
                Ok(s) => stream.insert(s),
                Err(e) => {
                    failures += 1;
                    if failures >= MAX_FAILURES {
                        break WorkerExit::Failed(e.to_string());
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
                    continue;
                }
            },
        };
        // Keep the pipeline full.
        let mut write_err = None;
        while pending.len() < PIPELINE {
            let Some(i) = work.lock().ok().and_then(|mut w| w.take()) else {
                break;
            };
            pending.push_back(i);
            let Some(id) = cid(i) else { continue };
            tracing::trace!(%peer, chunk = i, stream = format!("{:p}", s), "requesting");
            if let Err(e) = protocol::write_request(s, &id).await {
                write_err = Some(e);
                break;
            }
        }
        let result = match (write_err, pending.front().copied()) {
            (Some(e), _) => Err(e),
            (None, None) => {
                // Nothing to ask for now: wait until chunks are given back or all landed,
                // keeping the stream for the rest of the download.
                if work.lock().map(|w| w.finished()).unwrap_or(true) {
                    break WorkerExit::Idle;
                }
                let _ = tokio::time::timeout(Duration::from_millis(250), wake.notified()).await;
                continue;
            }
            (None, Some(i)) => match cid(i) {
                Some(id) if tracing::enabled!(tracing::Level::TRACE) => {
                    tracing::trace!(%peer, chunk = i, pending = pending.len(), stream = format!("{:p}", s), "awaiting response");
                    read_response(inner, s, &id).await.map(|r| (i, r))
                }
                Some(id) => read_response(inner, s, &id).await.map(|r| (i, r)),
                None => Err(WireError::Protocol("no such chunk".into())),
            },
        };
        match result {
            Ok((i, Ok(bytes))) => {
                pending.pop_front();
                failures = 0;
                inner.metrics.chunks_fetched.inc();
                inner.metrics.bytes_received.inc_by(bytes.len() as u64);
                let targets = plan
                    .tasks
                    .get(i)
                    .map(|t| t.targets.clone())
                    .unwrap_or_default();
                let w = tokio::task::spawn_blocking(move || write_targets(&targets, &bytes)).await;
                let failed = match w {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(e) = failed {
                    if let Ok(mut w) = work.lock() {
                        w.give_back(i);
                    }
                    wake.notify_waiters();
                    break WorkerExit::Fatal(e);
                }
                let (first, finished) = work
                    .lock()
                    .map(|mut w| (w.land(i), w.finished()))
                    .unwrap_or((false, true));
                if finished {
                    wake.notify_waiters();
                }
                if first && landed.send(Landed { index: i, peer }).await.is_err() {
                    break WorkerExit::Idle;
                }
            }
            Ok((_, Err(()))) => {
                inner.metrics.bad_chunks.inc();
                break WorkerExit::Bad;
            }
            Err(WireError::Status(Status::NotFound)) => break WorkerExit::NotProvider,
            Err(e) => {
                give_back_all(work, wake, pending);
                stream = None;
                failures += 1;
                if failures >= MAX_FAILURES {
                    break WorkerExit::Failed(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
            }
        }
    };
    if let Some(mut s) = stream {
        let _ = s.close().await;
    }
    exit
}

/// When every connection to `peer` goes through a relay, says so and what the relay allows.
async fn relay_notice(inner: &Arc<Inner>, peer: PeerId) -> Option<String> {
    let status = inner.overlay.status().await.ok()?;
    let me = peer.to_string();
    let conns: Vec<_> = status
        .connections
        .iter()
        .filter(|c| c.peer_id == me)
        .collect();
    if conns.is_empty() || conns.iter().any(|c| c.path == "direct") {
        return None;
    }
    let c = conns.first()?;
    let mut limits = Vec::new();
    if let Some(b) = c.limit_bytes {
        limits.push(format!("{} MiB", b >> 20));
    }
    if let Some(s) = c.limit_secs {
        limits.push(format!("{s} s"));
    }
    Some(format!(
        "{peer} is reachable only through relay {} (hole punching failed, e.g. a symmetric NAT); the transfer is relayed{}",
        c.relay.as_deref().unwrap_or("?"),
        if limits.is_empty() {
            String::new()
        } else {
            format!(" and capped at {} per circuit", limits.join(" / "))
        }
    ))
}

#[allow(clippy::too_many_arguments)]
async fn fetch_chunks(
    inner: &Arc<Inner>,
    patience: Duration,
    plan: &Arc<Plan>,
    queue: VecDeque<usize>,
    peers: &mut Vec<PeerId>,
    found: &mut mpsc::Receiver<PeerId>,
    providers: &mut HashSet<PeerId>,
    tx: &watch::Sender<Progress>,
) -> Result<(), DownloadError> {
    let mut remaining = queue.len();
    let work = Arc::new(Mutex::new(Work {
        total: queue.len(),
        queue,
        ..Work::default()
    }));
    let wake = Arc::new(tokio::sync::Notify::new());
    let (landed_tx, mut landed) = mpsc::channel::<Landed>(64);
    let mut workers: JoinSet<(PeerId, WorkerExit)> = JoinSet::new();
    let mut active: HashMap<PeerId, usize> = HashMap::new();
    // Peers worth (re)trying; a peer found again by the finder gets another chance.
    let mut live: HashSet<PeerId> = peers
        .iter()
        .copied()
        .filter(|p| !inner.is_banned(p))
        .collect();
    let mut pending_ops: Vec<Op> = Vec::new();
    let mut commit_tick = tokio::time::interval(Duration::from_millis(500));
    let per_peer = inner.config.streams_per_provider.max(1);
    let mut waiting_since: Option<tokio::time::Instant> = None;
    let mut last_failure = String::new();
    // Providers whose path (direct or relayed) was looked at.
    let mut relay_checked: HashSet<PeerId> = HashSet::new();

    let mut dropped: HashMap<PeerId, CancellationToken> = HashMap::new();
    let mut moved: HashMap<PeerId, CancellationToken> = HashMap::new();
    let mut upgrades = inner.overlay.upgrades();
    let spawn_for = |peer: PeerId,
                     workers: &mut JoinSet<_>,
                     active: &mut HashMap<PeerId, usize>,
                     dropped: &mut HashMap<PeerId, CancellationToken>,
                     moved: &mut HashMap<PeerId, CancellationToken>| {
        let n = active.entry(peer).or_default();
        let token = dropped.entry(peer).or_default().clone();
        let move_token = moved.entry(peer).or_default().clone();
        while *n < per_peer {
            *n += 1;
            workers.spawn(worker(
                inner.clone(),
                peer,
                plan.clone(),
                work.clone(),
                wake.clone(),
                landed_tx.clone(),
                Stop {
                    dropped: token.clone(),
                    moved: move_token.clone(),
                },
            ));
        }
    };
    for p in live.clone() {
        spawn_for(p, &mut workers, &mut active, &mut dropped, &mut moved);
    }

    while remaining > 0 {
        if workers.is_empty() {
            let since = *waiting_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= patience {
                return Err(DownloadError::Invalid(format!(
                    "no provider could send the remaining {remaining} chunks within {:?}{}",
                    patience,
                    if last_failure.is_empty() {
                        String::new()
                    } else {
                        format!(" (last error: {last_failure})")
                    }
                )));
            }
            tx.send_if_modified(|p| std::mem::replace(&mut p.state, "waiting") != "waiting");
        }
        let deadline = waiting_since.map(|s| s + patience);
        tokio::select! {
            () = inner.shutdown.cancelled() => {
                let _ = inner.store.apply(std::mem::take(&mut pending_ops));
                return Err(DownloadError::Stopped);
            }
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {}
            Some(peer) = found.recv() => {
                if !inner.is_banned(&peer) {
                    if !peers.contains(&peer) { peers.push(peer); }
                    live.insert(peer);
                    spawn_for(peer, &mut workers, &mut active, &mut dropped, &mut moved);
                    if waiting_since.take().is_some() {
                        tx.send_modify(|p| p.state = "downloading");
                    }
                }
            }
            Ok(p) = upgrades.recv() => {
                if let Some(t) = moved.remove(&p) {
                    tracing::debug!(peer = %p, "connection upgraded to direct; moving streams");
                    t.cancel();
                }
            }
            Some(l) = landed.recv() => {
                remaining -= 1;
                let new_provider = providers.insert(l.peer);
                if let Some(t) = plan.tasks.get(l.index) {
                    pending_ops.extend(t.locations());
                    let bytes = u64::from(t.len) * t.targets.len() as u64;
                    tx.send_modify(|p| {
                        p.chunks_done += 1;
                        p.done_bytes += bytes;
                        p.fetched_bytes += u64::from(t.len);
                        if new_provider { p.providers.push(l.peer.to_string()); }
                    });
                    if relay_checked.insert(l.peer) && let Some(notice) = relay_notice(inner, l.peer).await {
                        tracing::info!(peer = %l.peer, %notice, "provider reachable only through a relay");
                        tx.send_modify(|p| {
                            p.relayed.push(l.peer.to_string());
                            p.notice = Some(notice);
                        });
                    }
                }
                if pending_ops.len() >= COMMIT_EVERY {
                    commit(inner, &mut pending_ops).await?;
                }
            }
            Some(joined) = workers.join_next() => {
                let Ok((peer, exit)) = joined else { continue };
                tracing::debug!(%peer, exit = exit.name(), "worker ended");
                if let Some(n) = active.get_mut(&peer) {
                    *n = n.saturating_sub(1);
                }
                match exit {
                    WorkerExit::Idle | WorkerExit::Moved => {}
                    WorkerExit::NotProvider => { live.remove(&peer); }
                    WorkerExit::Failed(e) => {
                        tracing::debug!(%peer, error = %e, "provider failing; waiting for it to be found again");
                        last_failure = e;
                        live.remove(&peer);
                    }
                    WorkerExit::Bad => {
                        if live.remove(&peer) {
                            tracing::warn!(%peer, "provider sent a chunk that does not match its ID; dropping it");
                        }
                        inner.ban(peer);
                        if let Some(t) = dropped.remove(&peer) {
                            t.cancel();
                        }
                        providers.remove(&peer);
                        tx.send_modify(|p| p.providers.retain(|x| *x != peer.to_string()));
                        let _ = inner.overlay.disconnect(peer).await;
                    }
                    WorkerExit::Fatal(e) => return Err(DownloadError::Write(plan.root.display().to_string(), e)),
                }
                // Chunks given back by failed workers need someone to fetch them.
                let queued = work.lock().map(|w| w.has_work()).unwrap_or(false);
                if queued {
                    for p in live.clone() {
                        spawn_for(p, &mut workers, &mut active, &mut dropped, &mut moved);
                    }
                }
            }
            _ = commit_tick.tick() => commit(inner, &mut pending_ops).await?,
        }
    }
    workers.abort_all();
    commit(inner, &mut pending_ops).await
}

async fn commit(inner: &Inner, ops: &mut Vec<Op>) -> Result<(), DownloadError> {
    if ops.is_empty() {
        return Ok(());
    }
    let batch = std::mem::take(ops);
    let store = inner.store.clone();
    tokio::task::spawn_blocking(move || store.apply(batch))
        .await
        .map_err(|_| DownloadError::Stopped)??;
    Ok(())
}

/// Flushes the files, records the result as a share (this node now provides it) and
/// announces it.
async fn finish(
    inner: &Arc<Inner>,
    id: ContentId,
    plan: &Arc<Plan>,
    out: &str,
) -> Result<(), DownloadError> {
    let plan2 = plan.clone();
    let records = tokio::task::spawn_blocking(
        move || -> Result<Vec<(String, FileRecord)>, DownloadError> {
            let mut recs = Vec::new();
            for (path, size, mid) in &plan2.files {
                let f = std::fs::File::open(path)
                    .map_err(|e| DownloadError::Write(path.display().to_string(), e.to_string()))?;
                f.sync_all()
                    .map_err(|e| DownloadError::Write(path.display().to_string(), e.to_string()))?;
                let meta = f
                    .metadata()
                    .map_err(|e| DownloadError::Write(path.display().to_string(), e.to_string()))?;
                let mtime_ns = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                recs.push((
                    path.display().to_string(),
                    FileRecord {
                        size: *size,
                        mtime_ns,
                        manifest: *mid,
                        share: id,
                    },
                ));
            }
            Ok(recs)
        },
    )
    .await
    .map_err(|_| DownloadError::Stopped)??;
    let name = plan
        .root
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("download")
        .to_owned();
    let is_dir = !plan.dirs.is_empty();
    let mut ops: Vec<Op> = records
        .into_iter()
        .map(|(p, r)| Op::PutFile(p, r))
        .collect();
    ops.push(Op::PutShare(ShareRecord {
        id,
        path: out.to_owned(),
        name,
        kind: if is_dir {
            ShareKind::Dir
        } else {
            ShareKind::File
        },
        size: plan.total,
        files: plan.files.len() as u64,
        added: now_secs(),
    }));
    ops.push(Op::PutDownload(DownloadRecord {
        id,
        output: out.to_owned(),
        state: DownloadState::Done,
        added: now_secs(),
    }));
    inner.store.apply(ops)?;
    inner.changed();
    let _ = inner.overlay.start_providing(id.dht_key()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Work;

    #[test]
    fn endgame_hands_out_a_stalled_chunk_once_more_and_lands_it_once() {
        let mut w = Work {
            queue: [0, 1].into_iter().collect(),
            ..Work::default()
        };
        assert_eq!(w.take(), Some(0));
        assert_eq!(w.take(), Some(1));
        // Queue empty: chunk 0 or 1 goes out a second time, then nothing more.
        let again = w.take();
        assert!(matches!(again, Some(0 | 1)));
        let other = w.take();
        assert!(matches!(other, Some(0 | 1)) && other != again);
        assert_eq!(w.take(), None);
        assert!(w.land(0));
        assert!(!w.land(0), "a chunk lands once");
        // A failed fetch of a chunk nobody else holds goes back in the queue.
        w.give_back(1);
        w.give_back(1);
        assert!(w.has_work());
        assert_eq!(w.take(), Some(1));
    }
}
