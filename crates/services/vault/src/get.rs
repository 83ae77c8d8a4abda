//! Restoring: each chunk from its segment, each segment from any `k` of its shares (the
//! reachable, unspoiled ones first), every share checked against its name and every
//! chunk against its hash before a byte is written.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kith_core::person::from_hex;
use tokio::io::AsyncWriteExt;

use crate::index::{Index, IndexError, Kind, Object, Segment};
use crate::state::Inner;
use crate::{Error, GetReport, Shortfall, client, codec};

/// Decoded segments kept while restoring (8 MiB each): a chunk needed again later (a
/// file stored twice in one object) is found here or, past it, fetched again.
const CACHE: usize = 4;
/// Segments fetched ahead of the one being written.
const AHEAD: usize = 3;

/// Fetches any `k` good shares of a segment (index, bytes); shares that came back wrong
/// are marked for repair and struck against their holders.
pub(crate) async fn shares_of(
    inner: &Inner,
    seg_id: u64,
    seg: &Segment,
    skip: Option<usize>,
) -> Result<Vec<(usize, Vec<u8>)>, Error> {
    let connected: std::collections::HashSet<String> = inner
        .overlay()
        .connected_peers()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.peer.to_string())
        .collect();
    let mut order: Vec<usize> = (0..seg.shares.len()).filter(|i| Some(*i) != skip).collect();
    order.sort_by_key(|&i| {
        let s = &seg.shares[i];
        let away = inner.directory().is_away(&s.holder);
        (
            s.bad,
            away,
            !connected.contains(&s.holder),
            s.missing_since.is_some(),
            i,
        )
    });
    let k = usize::from(seg.k);
    let mut next = order.into_iter();
    let mut running = FuturesUnordered::new();
    let fetch = |i: usize| {
        let s = seg.shares[i].clone();
        let o = inner.overlay().clone();
        async move {
            let r = match s.holder.parse() {
                Ok(p) => client::fetch(&o, p, &s.name).await,
                Err(_) => Err(client::Failure::Unreachable(client::Cause::BadHolder)),
            };
            (i, r)
        }
    };
    for i in next.by_ref().take(k) {
        running.push(fetch(i));
    }
    let mut got = Vec::with_capacity(k);
    let mut failures = Vec::new();
    while let Some((i, r)) = running.next().await {
        match r {
            Ok(b) => got.push((i, b)),
            Err(f) => {
                if f.is_fault() {
                    inner.strike(seg_id, i)?;
                } else {
                    inner.directory().away(&seg.shares[i].holder);
                }
                failures.push((seg.shares[i].holder.clone(), f));
                if let Some(j) = next.next() {
                    running.push(fetch(j));
                }
            }
        }
        if got.len() == k {
            return Ok(got);
        }
    }
    Err(Error::Unavailable(Shortfall {
        got: got.len(),
        shares: seg.shares.len(),
        k: seg.k,
        failures,
    }))
}

/// A segment's plain bytes.
pub(crate) async fn segment(inner: &Inner, seg_id: u64, seg: &Segment) -> Result<Vec<u8>, Error> {
    let shares = shares_of(inner, seg_id, seg, None).await?;
    let key: [u8; 32] = from_hex(&seg.key)
        .and_then(|k| k.try_into().ok())
        .ok_or(IndexError::SegmentKey)?;
    let (plain, k, n) = (seg.plain as usize, seg.k, seg.n);
    Ok(inner
        .tasks()
        .blocking(move || codec::open(&key, plain, k, n, shares))
        .await??)
}

/// Where a file of the object goes under `out`; paths that would leave it are refused.
fn target(out: &Path, o: &Object, rel: &str) -> Result<PathBuf, Error> {
    if o.kind == Kind::File {
        return Ok(out.to_path_buf());
    }
    let p = Path::new(rel);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(IndexError::PathLeaves(rel.to_owned()).into());
    }
    Ok(out.join(p))
}

/// The segments an object's chunks need, in the order they are first needed.
fn segment_order(ix: &Index, o: &Object) -> Result<Vec<(u64, Segment)>, Error> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for c in o.files.iter().flat_map(|f| &f.chunks) {
        let loc = ix
            .chunks
            .get(c)
            .ok_or_else(|| IndexError::NoSegment(c.clone()))?;
        if seen.insert(loc.seg) {
            let seg = ix
                .segments
                .get(&loc.seg)
                .cloned()
                .ok_or(IndexError::SegmentMissing(loc.seg))?;
            out.push((loc.seg, seg));
        }
    }
    Ok(out)
}

pub(crate) async fn get(inner: &Arc<Inner>, o: &Object, out: &Path) -> Result<GetReport, Error> {
    // Segments are fetched a few ahead, in the order the files need them.
    let order = segment_order(&*inner.index()?, o)?;
    let mut incoming = futures::stream::iter(order)
        .map(|(id, seg)| async move { segment(inner, id, &seg).await.map(|d| (id, Arc::new(d))) })
        .buffered(AHEAD);
    let mut cache: Vec<(u64, Arc<Vec<u8>>)> = Vec::new();
    let mut yielded = std::collections::HashSet::new();
    let mut bytes = 0u64;
    for f in &o.files {
        let path = target(out, o, &f.path)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent, e))?;
        }
        let tmp = path.with_extension("kith-part");
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| Error::io(&tmp, e))?;
        for c in &f.chunks {
            let loc = inner
                .index()?
                .chunks
                .get(c)
                .copied()
                .ok_or_else(|| IndexError::NoSegment(c.clone()))?;
            let data = loop {
                if let Some((_, d)) = cache.iter().find(|(s, _)| *s == loc.seg) {
                    break d.clone();
                }
                let (id, d) = if yielded.contains(&loc.seg) {
                    // Needed again after it left the cache: fetched again.
                    let seg = inner.index()?.segments.get(&loc.seg).cloned();
                    let seg = seg.ok_or(IndexError::SegmentMissing(loc.seg))?;
                    (loc.seg, Arc::new(segment(inner, loc.seg, &seg).await?))
                } else {
                    incoming
                        .next()
                        .await
                        .ok_or(IndexError::SegmentMissing(loc.seg))??
                };
                yielded.insert(id);
                if cache.len() == CACHE {
                    cache.remove(0);
                }
                cache.push((id, d));
            };
            let (a, b) = (loc.offset as usize, loc.offset as usize + loc.len as usize);
            let piece = data
                .get(a..b)
                .filter(|p| blake3::hash(p).to_hex().as_str() == c)
                .ok_or_else(|| IndexError::ChunkMismatch(c.clone()))?;
            file.write_all(piece)
                .await
                .map_err(|e| Error::io(&tmp, e))?;
            bytes += piece.len() as u64;
        }
        file.sync_all().await.map_err(|e| Error::io(&tmp, e))?;
        drop(file);
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| Error::io(&path, e))?;
    }
    Ok(GetReport {
        id: o.id.clone(),
        name: o.name.clone(),
        files: o.files.len(),
        bytes,
        group: o.group.clone(),
    })
}
