//! The index kept in the vault: sealed with the index key, erasure-coded like any
//! segment, and pointed to by the signed root record, so another device with the same
//! key finds and opens it; `refresh` takes it in.

use std::sync::Arc;
use std::time::Duration;

use kith_core::person::from_hex;
use kith_core::seal;
use serde::{Deserialize, Serialize};

use crate::codec::SEGMENT;
use crate::index::{Index, Segment};
use crate::put::{self, Sealed};
use crate::state::Inner;
use crate::{Error, get, now_ms, place, root, upkeep};

/// Time to collect answers for the root record.
const LOOKUP: Duration = Duration::from_secs(10);
/// The shape of the index's own segments: k = n / 3, n at most this.
const INDEX_N: usize = 6;

/// Where a blob stored in the vault is: its size and segments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct IndexRef {
    size: u64,
    segments: Vec<Segment>,
}

/// Stores bytes in the vault as segments of their own (k = n/3, n at most
/// [`INDEX_N`]).
pub(crate) async fn store_blob(inner: &Arc<Inner>, bytes: &[u8]) -> Result<IndexRef, Error> {
    let cands = place::candidates(inner, INDEX_N).await;
    if cands.len() < 2 {
        return Err(Error::TooFewHolders {
            have: cands.len(),
            n: 2,
        });
    }
    let n = cands.len().min(INDEX_N) as u8;
    let k = (n / 3).max(1);
    let cands = std::sync::Mutex::new(cands);
    let mut iref = IndexRef {
        size: bytes.len() as u64,
        segments: Vec::new(),
    };
    for piece in bytes.chunks(SEGMENT) {
        let plain = piece.to_vec();
        let sealed = inner
            .tasks
            .blocking(move || Sealed::new(plain, Vec::new(), k, n))
            .await??;
        iref.segments
            .push(put::upload(inner, &cands, &sealed, k, n).await?);
    }
    Ok(iref)
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

fn root_file(inner: &Inner) -> std::path::PathBuf {
    inner.config.dir.join("root.json")
}

/// Stores the index in the vault and points the root record at it; the previous copy's
/// shares are released.
pub(crate) async fn publish(inner: &Arc<Inner>) -> Result<(), Error> {
    let _changing = inner.changing.lock().await;
    let bytes = serde_json::to_vec(&*inner.index()).map_err(|e| Error::Index(e.to_string()))?;
    let iref = store_blob(inner, &bytes).await?;
    let json = serde_json::to_vec(&iref).map_err(|e| Error::Index(e.to_string()))?;
    let record_key = inner.signer.record_key();
    let sealed = seal::with_key(&inner.index_key, &record_key, &json);
    let record = inner.signer.record(now_ms(), &sealed).map_err(Error::Key)?;
    inner.overlay.put_record(record_key, record).await?;
    let (path, j) = (root_file(inner), json.clone());
    let old: Option<IndexRef> = inner
        .tasks
        .blocking(move || {
            let old = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let _ = kith_core::sync::write_atomic(&path, &j);
            old
        })
        .await?;
    if let Some(old) = old {
        upkeep::release(inner, old.segments).await;
    }
    tracing::debug!(bytes = iref.size, "vault index published");
    Ok(())
}

/// Finds this owner's index in the vault and merges it into the local one; true when
/// anything was new.
pub(crate) async fn refresh(inner: &Arc<Inner>) -> Result<bool, Error> {
    let key = inner.signer.record_key();
    let mut rx = inner.overlay.get_record(key.clone()).await?;
    let until = tokio::time::Instant::now() + LOOKUP;
    let mut best: Option<root::RootRecord> = None;
    while let Ok(Some(v)) = tokio::time::timeout_at(until, rx.recv()).await {
        if let Ok(r) = root::check(&key, &v)
            && best.as_ref().is_none_or(|b| b.seq < r.seq)
        {
            best = Some(r);
        }
    }
    let r = best.ok_or_else(|| Error::NoRoot(inner.signer.id().to_string()))?;
    let sealed = from_hex(&r.sealed).ok_or_else(|| Error::Key("malformed root".into()))?;
    let json = seal::open_with_key(&inner.index_key, &key, &sealed)
        .map_err(|_| Error::Key("the vault index does not open with this device's key".into()))?;
    let iref: IndexRef = serde_json::from_slice(&json).map_err(|e| Error::Index(e.to_string()))?;
    let bytes = fetch_blob(inner, &iref).await?;
    let other: Index = serde_json::from_slice(&bytes).map_err(|e| Error::Index(e.to_string()))?;
    let changed = inner.index().merge(other);
    inner.save().await?;
    tracing::info!(changed, "vault index taken in");
    Ok(changed)
}
