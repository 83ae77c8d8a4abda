//! Storing files and folders: walk, chunk (content-defined, so an edit moves only the
//! chunks it touches), skip chunks the vault already has, pack the rest into segments,
//! seal each (encrypt, erasure-code) on a blocking thread while the one before it is
//! uploaded to its holders.

use std::collections::HashSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kith_core::chunker::{self, ChunkRef};
use kith_core::person::to_hex;
use kith_core::store::now_secs;
use kith_overlay::PeerId;
use tokio::sync::mpsc;

use crate::codec::{self, SEGMENT};
use crate::index::{ChunkLoc, FileEntry, Index, Kind, Object, Segment, ShareLoc};
use crate::place::{self, Candidate, Cands};
use crate::release::Op;
use crate::state::Inner;
use crate::{Error, InputError, PutReport, Refused, client, now_ms, tree};

/// Most files in one object.
const MAX_FILES: usize = 100_000;
/// Segments uploaded at once.
const UPLOADS: usize = 3;
/// Holders tried for one share before the put fails.
const TRIES: usize = 3;

/// A file to store: its path in the object, where it is, and its chunks.
struct Planned {
    path: String,
    abs: PathBuf,
    chunks: Vec<ChunkRef>,
}

/// A segment sealed and ready to upload.
pub(crate) struct Sealed {
    pub key: [u8; 32],
    pub plain: u64,
    pub shares: codec::Shares,
    /// Each share's name.
    pub names: Vec<String>,
    pub chunks: Vec<(String, ChunkLoc)>,
}

impl Sealed {
    /// Encrypts, erasure-codes and names a segment. Blocking.
    pub fn new(
        plain: Vec<u8>,
        chunks: Vec<(String, ChunkLoc)>,
        k: u8,
        n: u8,
    ) -> Result<Self, Error> {
        let key: [u8; 32] = rand::random();
        let len = plain.len() as u64;
        let shares = codec::seal_shares(&key, plain, k, n)?;
        let names = shares.iter().map(tree::name).collect();
        Ok(Self {
            key,
            plain: len,
            shares,
            names,
            chunks,
        })
    }
}

/// Threads sealing segments while the next is read.
fn sealers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4)
}

type Plain = (Vec<u8>, Vec<(String, ChunkLoc)>);

/// The files under `root` (or `root` itself), with paths relative to it. Blocking.
fn walk(root: &Path) -> Result<(Kind, Vec<(String, PathBuf)>), Error> {
    let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if meta.is_file() {
        return Ok((Kind::File, vec![(String::new(), root.to_path_buf())]));
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for e in rd {
            let e = e.map_err(|e| Error::io(&dir, e))?;
            let (p, t) = (
                e.path(),
                e.file_type().map_err(|x| Error::io(&e.path(), x))?,
            );
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                let rel = p
                    .strip_prefix(root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, p));
                if out.len() > MAX_FILES {
                    return Err(InputError::TooManyFiles(MAX_FILES).into());
                }
            }
        }
    }
    out.sort();
    Ok((Kind::Folder, out))
}

/// Chunks every file; returns them and the bytes of chunks the vault lacks. Blocking.
fn plan(
    files: Vec<(String, PathBuf)>,
    known: &HashSet<String>,
) -> Result<(Vec<Planned>, u64, u64), Error> {
    let mut out = Vec::with_capacity(files.len());
    let (mut size, mut new) = (0u64, 0u64);
    let mut seen = HashSet::new();
    for (path, abs) in files {
        let chunks = chunker::chunk_file(&abs).map_err(InputError::from)?;
        for c in &chunks {
            size += u64::from(c.len);
            let h = to_hex(&c.hash);
            if !known.contains(&h) && seen.insert(h) {
                new += u64::from(c.len);
            }
        }
        out.push(Planned { path, abs, chunks });
    }
    Ok((out, size, new))
}

/// Packs the chunks the vault lacks into segments, sealed on [`sealers`] threads; sends
/// them on `tx`. Stops when `tx`'s receiver is gone (the upload failed): the sealers
/// own the only receiver of the segments read, so when the last of them stops, the
/// reader's next send fails and it stops too. Blocking.
fn pack(
    files: &[Planned],
    known: &HashSet<String>,
    k: u8,
    n: u8,
    tx: &mpsc::Sender<Result<Sealed, Error>>,
) -> Result<(), Error> {
    let (plain_tx, plain_rx) = std::sync::mpsc::sync_channel::<Plain>(1);
    let plain_rx = Arc::new(std::sync::Mutex::new(plain_rx));
    std::thread::scope(|s| {
        for _ in 0..sealers() {
            let rx = plain_rx.clone();
            s.spawn(move || {
                while !tx.is_closed() {
                    // A receiver: any state is valid, so a poisoned lock is taken back.
                    let next = kith_core::sync::recover(&rx).recv();
                    let Ok((buf, locs)) = next else { break };
                    if tx.blocking_send(Sealed::new(buf, locs, k, n)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(plain_rx);
        let r = read_chunks(files, known, &plain_tx);
        drop(plain_tx);
        r
    })
}

/// Reads the chunks the vault lacks into segments of at most [`SEGMENT`] bytes.
fn read_chunks(
    files: &[Planned],
    known: &HashSet<String>,
    out: &std::sync::mpsc::SyncSender<Plain>,
) -> Result<(), Error> {
    let mut packed: HashSet<String> = HashSet::new();
    let mut buf: Vec<u8> = Vec::with_capacity(SEGMENT);
    let mut locs: Vec<(String, ChunkLoc)> = Vec::new();
    for f in files {
        let file = std::fs::File::open(&f.abs).map_err(|e| Error::io(&f.abs, e))?;
        for c in &f.chunks {
            let h = to_hex(&c.hash);
            if known.contains(&h) || !packed.insert(h.clone()) {
                continue;
            }
            if buf.len() + c.len as usize > SEGMENT {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(SEGMENT));
                if out.send((full, std::mem::take(&mut locs))).is_err() {
                    return Ok(());
                }
            }
            let at = buf.len();
            buf.resize(at + c.len as usize, 0);
            let slot = buf.get_mut(at..).unwrap_or_default();
            file.read_exact_at(slot, c.offset)
                .map_err(|e| Error::io(&f.abs, e))?;
            if blake3::hash(slot).as_bytes() != &c.hash {
                return Err(InputError::Changed(f.abs.clone()).into());
            }
            locs.push((
                h,
                ChunkLoc {
                    seg: 0,
                    offset: at as u32,
                    len: c.len,
                },
            ));
        }
    }
    if !buf.is_empty() {
        let _ = out.send((buf, locs));
    }
    Ok(())
}

/// Stores one share on a holder from `cands` not in `exclude`, trying others if it
/// refuses (a holder that refused or did not answer gets nothing more from this
/// operation). Returns the holder; the error says why each holder tried did not take
/// it, after what `why` already says.
pub(crate) async fn store_share(
    op: &Op,
    cands: &Cands,
    exclude: &mut HashSet<PeerId>,
    (name, bytes): (&str, &[u8]),
    mut why: Refused,
) -> Result<PeerId, Error> {
    let inner = op.inner();
    let me = inner.person_of(&inner.overlay().peer_id());
    for _ in 0..TRIES {
        let picked = place::pick(
            &mut kith_core::sync::lock(cands)?,
            1,
            bytes.len() as u64,
            exclude,
            me.as_deref(),
        );
        let Some(peer) = picked.into_iter().next() else {
            break;
        };
        exclude.insert(peer);
        op.placing(&[(peer, name)]).await?;
        match client::store(inner.overlay(), peer, name, bytes).await {
            Ok(()) => {
                inner.metrics().uploaded.inc_by(bytes.len() as u64);
                return Ok(peer);
            }
            Err(f) => {
                tracing::info!(%peer, failure = %f, "holder did not take a share");
                place::refused(cands, peer)?;
                why.tried.push((peer, f));
            }
        }
    }
    Err(Error::Placement(why))
}

/// Uploads a sealed segment's shares, each to a distinct holder; a share a holder
/// refuses goes to another at once.
pub(crate) async fn upload(
    op: &Op,
    cands: &Cands,
    s: &Sealed,
    k: u8,
    n: u8,
) -> Result<Segment, Error> {
    let inner = op.inner();
    let size = s.shares.share_len() as u64;
    let me = inner.person_of(&inner.overlay().peer_id());
    let first = place::pick(
        &mut kith_core::sync::lock(cands)?,
        usize::from(n),
        size,
        &HashSet::new(),
        me.as_deref(),
    );
    if first.len() < usize::from(n) {
        return Err(Error::TooFewHolders {
            have: first.len(),
            n,
        });
    }
    let names = &s.names;
    let planned: Vec<(PeerId, &str)> = first
        .iter()
        .zip(names)
        .map(|(p, nm)| (*p, nm.as_str()))
        .collect();
    op.placing(&planned).await?;
    let tries = first
        .iter()
        .zip(s.shares.iter())
        .zip(names)
        .map(|((p, b), nm)| {
            let o = inner.overlay().clone();
            async move { (*p, client::store(&o, *p, nm, b).await) }
        });
    let results = futures::future::join_all(tries).await;
    let mut exclude: HashSet<PeerId> = first.iter().copied().collect();
    for (peer, r) in &results {
        if let Err(f) = r {
            tracing::info!(%peer, failure = %f, "holder did not take a share");
            place::refused(cands, *peer)?;
        }
    }
    let mut shares = Vec::with_capacity(s.shares.len());
    for ((peer, r), (name, bytes)) in results.into_iter().zip(names.iter().zip(s.shares.iter())) {
        let holder = match r {
            Ok(()) => {
                inner.metrics().uploaded.inc_by(bytes.len() as u64);
                peer
            }
            Err(f) => {
                let why = Refused {
                    tried: vec![(peer, f)],
                };
                store_share(op, cands, &mut exclude, (name, bytes), why).await?
            }
        };
        shares.push(ShareLoc {
            name: name.clone(),
            holder: holder.to_string(),
            size,
            last_audit: now_secs(),
            missing_since: None,
            bad: false,
            rotation: 0,
            cursor: 0,
        });
    }
    Ok(Segment {
        key: to_hex(&s.key),
        plain: s.plain,
        k,
        n,
        shares,
        repairs: 0,
    })
}

/// Segments uploaded so far, and the error that stopped the uploads, if one did.
type Uploaded = (Vec<(Segment, Vec<(String, ChunkLoc)>)>, Option<Error>);

/// Uploads the sealed segments as they come, up to [`UPLOADS`] at once. On an error it
/// stops, and drops `rx` as it returns, so the sealers stop too.
async fn upload_all(
    op: &Op,
    cands: &Cands,
    mut rx: mpsc::Receiver<Result<Sealed, Error>>,
    k: u8,
    n: u8,
) -> Uploaded {
    let mut done: Vec<(Segment, Vec<(String, ChunkLoc)>)> = Vec::new();
    let mut running = FuturesUnordered::new();
    let mut open = true;
    loop {
        // Up to UPLOADS segments move at once, so one slow holder does not idle the rest.
        if open && running.len() < UPLOADS {
            tokio::select! {
                sealed = rx.recv() => match sealed {
                    Some(Ok(s)) => {
                        running.push(async move {
                            upload(op, cands, &s, k, n).await.map(|g| (g, s.chunks))
                        });
                    }
                    Some(Err(e)) => return (done, Some(e)),
                    None => open = false,
                },
                Some(r) = running.next(), if !running.is_empty() => match r {
                    Ok(p) => done.push(p),
                    Err(e) => return (done, Some(e)),
                },
            }
            continue;
        }
        match running.next().await {
            Some(Ok(p)) => done.push(p),
            Some(Err(e)) => return (done, Some(e)),
            None => return (done, None),
        }
    }
}

/// Checks that the holders found have room for `new` bytes cut k-of-n.
fn check_room(cands: &[Candidate], new: u64, k: u8, n: u8) -> Result<(), Error> {
    let segments = new.div_ceil(SEGMENT as u64).max(1);
    let per_share = codec::share_len(SEGMENT.min(new as usize), k) as u64;
    let need = codec::share_len(new as usize, k) as u64 * u64::from(n) + segments * 64;
    let have: u64 = cands.iter().map(|c| c.free).sum();
    let roomy = cands.iter().filter(|c| c.free >= per_share).count();
    if cands.len() < usize::from(n) {
        return Err(Error::TooFewHolders {
            have: cands.len(),
            n,
        });
    }
    if have < need || roomy < usize::from(n) {
        return Err(Error::NoSpace { need, have });
    }
    Ok(())
}

/// Records the uploaded segments, their chunks and the object in the index.
/// Returns the segments no chunk lives in any more (their chunks were stored again in
/// a stronger shape): the caller releases them.
fn commit(
    ix: &mut Index,
    uploaded: Vec<(Segment, Vec<(String, ChunkLoc)>)>,
    object: Object,
) -> Vec<Segment> {
    for (seg, chunks) in uploaded {
        let sid = loop {
            let s: u64 = rand::random();
            if !ix.segments.contains_key(&s) {
                break s;
            }
        };
        ix.segments.insert(sid, seg);
        for (h, mut loc) in chunks {
            loc.seg = sid;
            ix.chunks.insert(h, loc);
        }
    }
    ix.objects.insert(object.id.clone(), object);
    let live: HashSet<u64> = ix.chunks.values().map(|l| l.seg).collect();
    let dead: Vec<u64> = ix
        .segments
        .keys()
        .filter(|s| !live.contains(s))
        .copied()
        .collect();
    dead.iter().filter_map(|s| ix.segments.remove(s)).collect()
}

/// The chunks already in the vault that a put of this shape may use: those in segments
/// that survive at least as many lost shares (n − k) as it asks for. Others are stored
/// again, in its shape.
fn reusable(ix: &Index, k: u8, n: u8) -> HashSet<String> {
    ix.chunks
        .iter()
        .filter(|(_, l)| {
            ix.segments
                .get(&l.seg)
                .is_some_and(|g| g.n.saturating_sub(g.k) >= n - k)
        })
        .map(|(c, _)| c.clone())
        .collect()
}

/// A put failed: nothing in the index points to the shares it placed, so they are
/// released; the error says so.
async fn abandon(op: Op, e: Error) -> Error {
    let (released, left) = op.abandon().await;
    if released + left == 0 {
        e
    } else {
        Error::NotStored {
            cause: Box::new(e),
            released,
            left,
        }
    }
}

/// Distinct holders of every segment the object needs, new or already in the vault.
fn holders_of(ix: &Index, object: &Object) -> usize {
    ix.segments_of(object)
        .iter()
        .filter_map(|s| ix.segments.get(s))
        .flat_map(|g| g.shares.iter().map(|x| x.holder.as_str()))
        .collect::<HashSet<&str>>()
        .len()
}

pub(crate) async fn put(
    inner: &Arc<Inner>,
    path: PathBuf,
    name: String,
    kind_override: Option<Kind>,
    group: Option<String>,
    k: u8,
    n: u8,
) -> Result<PutReport, Error> {
    codec::check_shape(k, n)?;
    let _changing = inner.changing().await;
    let known = Arc::new(reusable(&*inner.index()?, k, n));
    let (kn, p) = (known.clone(), path.clone());
    let started = std::time::Instant::now();
    let (kind, files, size, new) = inner
        .tasks()
        .blocking(move || -> Result<_, Error> {
            let (kind, files) = walk(&p)?;
            let (files, size, new) = plan(files, &kn)?;
            Ok((kind, files, size, new))
        })
        .await??;
    let cands = place::candidates(&inner.finder(), usize::from(n)).await?;
    check_room(&cands, new, k, n)?;
    let planned = started.elapsed();
    let cands: Cands = std::sync::Mutex::new(cands);
    let entries: Vec<FileEntry> = files
        .iter()
        .map(|f| FileEntry {
            path: f.path.clone(),
            size: f.chunks.iter().map(|c| u64::from(c.len)).sum(),
            chunks: f.chunks.iter().map(|c| to_hex(&c.hash)).collect(),
        })
        .collect();
    let (tx, rx) = mpsc::channel(1);
    let kn = known.clone();
    let producer = inner.tasks().blocking(move || {
        if let Err(e) = pack(&files, &kn, k, n, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let op = Op::begin(inner)?;
    let consumer = upload_all(&op, &cands, rx, k, n);
    let (produced, (uploaded, failed)) = tokio::join!(producer, consumer);
    if let Some(e) = failed.or(produced.err().map(Error::from)) {
        return Err(abandon(op, e).await);
    }
    let sent: u64 = uploaded
        .iter()
        .flat_map(|(s, _)| s.shares.iter().map(|x| x.size))
        .sum();
    let id = to_hex(&rand::random::<[u8; 8]>());
    let object = Object {
        id: id.clone(),
        name,
        kind: kind_override.unwrap_or(kind),
        created: now_secs(),
        created_ms: now_ms(),
        group,
        size,
        k,
        n,
        files: entries,
    };
    let (weaker, holders) = {
        let mut ix = inner.index()?;
        let weaker = commit(&mut ix, uploaded, object.clone());
        (weaker, holders_of(&ix, &object))
    };
    inner.save().await?;
    if let Err(e) = op.commit(&inner.catalog().referenced()?).await {
        // The index points to the shares: a later sweep forgets them.
        tracing::warn!(error = %e, "cannot record the put as done");
    }
    let weaker = crate::index::shares_of(&weaker).into_iter().collect();
    crate::release::release_later(inner, weaker).await;
    inner.emit(crate::Event::Stored {
        id: id.clone(),
        name: object.name.clone(),
    });
    tracing::info!(
        %id, size, new, sent,
        planned_ms = planned.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "stored in the vault"
    );
    Ok(PutReport {
        id,
        name: object.name,
        k,
        n,
        holders,
        size,
        new_bytes: new,
        uploaded: sent,
        files: object.files.len(),
        index_published: false,
    })
}
