//! The index kept in the vault: sealed with the index key, erasure-coded like any
//! segment, and pointed to by the signed root record, so another device with the same
//! key finds and opens it; `refresh` takes it in.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kith_core::person::from_hex;
use kith_core::seal;

use crate::codec::{self, SEGMENT};
use crate::index::{Index, IndexError, IndexRef};
use crate::put::{self, Sealed};
use crate::release::{self, Op};
use crate::root::KeyError;
use crate::state::Inner;
use crate::{Error, get, now_ms, place, root};

/// Time to collect answers for the root record.
const LOOKUP: Duration = Duration::from_secs(10);
/// The shape of the index's own segments: k = n / 3, n at most this.
const INDEX_N: usize = 6;
/// Times a segment of the index is sealed and placed again after holders refused it.
const PLACE_TRIES: usize = 3;

/// Stores bytes in the vault as segments of their own (k = n/3, n at most
/// [`INDEX_N`], and at least 2), on the holders that have room for them; a segment a
/// holder refuses is sealed again for those left.
pub(crate) async fn store_blob(op: &Op, bytes: &[u8]) -> Result<IndexRef, Error> {
    let inner = op.inner();
    let cands = std::sync::Mutex::new(place::candidates(&inner.finder(), INDEX_N).await?);
    let mut iref = IndexRef {
        size: bytes.len() as u64,
        segments: Vec::new(),
    };
    for piece in bytes.chunks(SEGMENT) {
        let mut tries = 0;
        let seg = loop {
            let (k, n) = shape(&cands, piece.len())?;
            let plain = piece.to_vec();
            let sealed = inner
                .tasks()
                .blocking(move || Sealed::new(plain, Vec::new(), k, n))
                .await??;
            match put::upload(op, &cands, &sealed, k, n).await {
                Ok(g) => break g,
                // The holders that refused have no room left in `cands`: again, without them.
                Err(e) if tries < PLACE_TRIES => {
                    tracing::info!(error = %e, "vault index segment placed again");
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        iref.segments.push(seg);
    }
    Ok(iref)
}

/// The k-of-n of an index segment of `len` bytes: n the holders with room for a share
/// of it (at most [`INDEX_N`]), k = n/3.
fn shape(cands: &place::Cands, len: usize) -> Result<(u8, u8), Error> {
    let mut n = kith_core::sync::lock(cands)?.len().min(INDEX_N);
    loop {
        if n < 2 {
            return Err(Error::TooFewHolders { have: n, n: 2 });
        }
        let k = (n / 3).max(1);
        let roomy = place::roomy(cands, codec::share_len(len, k as u8) as u64)?;
        if roomy >= n {
            return Ok((k as u8, n as u8));
        }
        n = roomy;
    }
}

/// Reads back what [`store_blob`] stored.
pub(crate) async fn fetch_blob(inner: &Arc<Inner>, iref: &IndexRef) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::with_capacity(iref.size.min(1 << 30) as usize);
    for g in &iref.segments {
        bytes.extend(get::segment(inner, u64::MAX, g).await?);
    }
    bytes.truncate(iref.size as usize);
    Ok(bytes)
}

/// Stores the index in the vault and points the root record at it; the previous copy's
/// shares are released.
pub(crate) async fn publish(inner: &Arc<Inner>) -> Result<(), Error> {
    let _changing = inner.changing().await;
    let op = Op::begin(inner)?;
    let (old, new) = match store_and_point(&op).await {
        Ok(r) => r,
        Err(e) => {
            let (released, left) = op.abandon().await;
            tracing::debug!(released, left, "the index's copy was not stored");
            inner.catalog().set_unpublished(inner.tasks(), true).await;
            return Err(e);
        }
    };
    if let Err(e) = op.commit(&new).await {
        tracing::warn!(error = %e, "cannot record the index's copy as stored");
    }
    inner.catalog().set_unpublished(inner.tasks(), false).await;
    if let Some(old) = old {
        let stale: Vec<(String, String)> = old
            .shares()
            .into_iter()
            .filter(|s| !new.contains(s))
            .collect();
        release::release_later(inner, stale).await;
    }
    inner.emit(crate::Event::IndexPublished);
    tracing::debug!("vault index published");
    Ok(())
}

/// Stores the index's copy, points the root record and `root.json` at it; returns the
/// copy it replaces and the new copy's shares.
async fn store_and_point(op: &Op) -> Result<(Option<IndexRef>, HashSet<(String, String)>), Error> {
    let inner = op.inner();
    let bytes = serde_json::to_vec(&*inner.index()?).map_err(IndexError::encode("the index"))?;
    let iref = store_blob(op, &bytes).await?;
    let json = serde_json::to_vec(&iref).map_err(IndexError::encode("the index's location"))?;
    let record_key = inner.signer().record_key();
    let sealed = seal::with_key(inner.index_key(), &record_key, &json);
    let record = inner.signer().record(now_ms(), &sealed)?;
    inner.overlay().put_record(record_key, record).await?;
    let old = inner.catalog().replace_root(inner.tasks(), json).await?;
    Ok((old, iref.shares()))
}

/// Publishes the index, or notes that it must be (the upkeep loop tries again); true
/// when it was.
pub(crate) async fn publish_or_defer(inner: &Arc<Inner>) -> bool {
    match publish(inner).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "the vault index's copy was not stored; trying again later");
            false
        }
    }
}

/// Finds this owner's index in the vault and merges it into the local one; true when
/// anything was new.
pub(crate) async fn refresh(inner: &Arc<Inner>) -> Result<bool, Error> {
    let key = inner.signer().record_key();
    let mut rx = inner.overlay().get_record(key.clone()).await?;
    let until = tokio::time::Instant::now() + LOOKUP;
    let mut best: Option<root::RootRecord> = None;
    while let Ok(Some(v)) = tokio::time::timeout_at(until, rx.recv()).await {
        if let Ok(r) = root::check(&key, &v)
            && best.as_ref().is_none_or(|b| b.seq < r.seq)
        {
            best = Some(r);
        }
    }
    let r = best.ok_or_else(|| Error::NoRoot(inner.signer().id().to_string()))?;
    let sealed = from_hex(&r.sealed).ok_or(KeyError::Malformed)?;
    let json =
        seal::open_with_key(inner.index_key(), &key, &sealed).map_err(|_| KeyError::WrongKey)?;
    let iref: IndexRef =
        serde_json::from_slice(&json).map_err(IndexError::decode("the index's location"))?;
    let bytes = fetch_blob(inner, &iref).await?;
    let other: Index =
        serde_json::from_slice(&bytes).map_err(IndexError::decode("the index's copy"))?;
    let changed = inner.index()?.merge(other);
    inner.save().await?;
    if changed {
        inner.emit(crate::Event::IndexTakenIn);
    }
    tracing::info!(changed, "vault index taken in");
    Ok(changed)
}
