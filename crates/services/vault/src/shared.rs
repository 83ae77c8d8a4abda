//! Objects stored for a group (`vault put --group`): the object's part of the index (its
//! files, segments and chunk map) is stored in the vault as a blob, and a DHT record
//! under `/kith/vault/shared/<id>` points to it, sealed with the group's key and marked
//! with a locator only members can compute. A member who asks for the ID takes the
//! object into its own index and restores it as its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kith_core::person::{from_hex, public_key_of, to_hex};
use kith_overlay::{PeerId, RecordValidator, Rejected};
use serde::{Deserialize, Serialize};

use crate::index::IndexRef;
use crate::index::{ChunkLoc, IndexError, Object, Segment};
use crate::protocol::SHARED_PREFIX;
use crate::publish;
use crate::release::Op;
use crate::state::Inner;
use crate::{Error, now_ms};

/// Time to collect answers for the record.
const LOOKUP: Duration = Duration::from_secs(10);
/// Largest record (a DHT packet is 64 KiB).
const MAX_RECORD: usize = 48 << 10;

/// An object's part of the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Descriptor {
    object: Object,
    segments: BTreeMap<u64, Segment>,
    chunks: HashMap<String, ChunkLoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedRecord {
    /// The device or person that stored the object (its key signs the record).
    owner: String,
    seq: u64,
    /// The group's locator of the object's ID (hex).
    locator: String,
    /// Where the descriptor is, sealed with the group's key (hex).
    sealed: String,
    sig: String,
}

fn record_key(id: &str) -> Vec<u8> {
    format!("{SHARED_PREFIX}{id}").into_bytes()
}

fn signed(key: &[u8], r: &SharedRecord) -> Vec<u8> {
    let mut b = key.to_vec();
    b.extend_from_slice(r.owner.as_bytes());
    b.extend_from_slice(&r.seq.to_be_bytes());
    b.extend_from_slice(r.locator.as_bytes());
    b.extend_from_slice(r.sealed.as_bytes());
    b
}

fn check(key: &[u8], value: &[u8]) -> Result<SharedRecord, Rejected> {
    let bad = |w: &str| Rejected(format!("vault shared: {w}"));
    if value.len() > MAX_RECORD {
        return Err(bad("too large"));
    }
    let r: SharedRecord = serde_json::from_slice(value).map_err(|e| bad(&e.to_string()))?;
    let owner: PeerId = r.owner.parse().map_err(|_| bad("owner is not a peer ID"))?;
    let public = public_key_of(&owner).ok_or_else(|| bad("the owner ID carries no key"))?;
    let sig = from_hex(&r.sig).ok_or_else(|| bad("signature is not hex"))?;
    if !public.verify(&signed(key, &r), &sig) {
        return Err(bad("bad signature"));
    }
    Ok(r)
}

struct Validator;

impl RecordValidator for Validator {
    fn validate(&self, key: &[u8], value: &[u8], existing: Option<&[u8]>) -> Result<(), Rejected> {
        let r = check(key, value)?;
        if let Some(old) = existing.and_then(|e| check(key, e).ok()) {
            if old.owner != r.owner {
                return Err(Rejected("vault shared: another owner's object".into()));
            }
            if old.seq > r.seq {
                return Err(Rejected("vault shared: older than the one stored".into()));
            }
        }
        Ok(())
    }
}

pub(crate) fn validator() -> Arc<dyn RecordValidator> {
    Arc::new(Validator)
}

/// Lets `group`'s members restore object `id`.
pub(crate) async fn publish(inner: &Arc<Inner>, id: &str, group: &str) -> Result<(), Error> {
    let desc = {
        let ix = inner.index()?;
        let object = ix
            .objects
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(id.to_owned()))?;
        let segs = ix.segments_of(&object);
        let chunks = object
            .files
            .iter()
            .flat_map(|f| &f.chunks)
            .filter_map(|c| ix.chunks.get(c).map(|l| (c.clone(), *l)))
            .collect();
        let segments = segs
            .iter()
            .filter_map(|s| ix.segments.get(s).map(|g| (*s, g.clone())))
            .collect();
        Descriptor {
            object,
            segments,
            chunks,
        }
    };
    let bytes = serde_json::to_vec(&desc).map_err(IndexError::encode("the object's descriptor"))?;
    let op = Op::begin(inner)?;
    match point(&op, id, group, &bytes).await {
        Ok(kept) => op.commit(&kept).await,
        Err(e) => {
            op.abandon().await;
            Err(e)
        }
    }
}

/// Stores an object's descriptor and puts the record that points `group` to it.
/// Returns the descriptor's shares.
async fn point(
    op: &Op,
    id: &str,
    group: &str,
    bytes: &[u8],
) -> Result<std::collections::HashSet<(String, String)>, Error> {
    let inner = op.inner();
    let blob = publish::store_blob(op, bytes).await?;
    let json =
        serde_json::to_vec(&blob).map_err(IndexError::encode("the descriptor's location"))?;
    let not_member = || Error::NotMember(group.to_owned());
    let sealed = inner.scopes().seal(group, &json).ok_or_else(not_member)?;
    let locator = inner
        .scopes()
        .locator(group, id.as_bytes())
        .ok_or_else(not_member)?;
    let key = record_key(id);
    let mut r = SharedRecord {
        owner: inner.signer().id().to_string(),
        seq: now_ms(),
        locator: to_hex(&locator),
        sealed: to_hex(&sealed),
        sig: String::new(),
    };
    r.sig = to_hex(&inner.signer().sign(&signed(&key, &r))?);
    let value = serde_json::to_vec(&r).map_err(IndexError::encode("the group's record"))?;
    inner.overlay().put_record(key, value).await?;
    Ok(blob.shares())
}

/// Takes object `id` into this node's index if one of its groups may restore it.
pub(crate) async fn take(inner: &Arc<Inner>, id: &str) -> Result<(), Error> {
    let key = record_key(id);
    let mut rx = inner.overlay().get_record(key.clone()).await?;
    let until = tokio::time::Instant::now() + LOOKUP;
    let mut best: Option<SharedRecord> = None;
    while let Ok(Some(v)) = tokio::time::timeout_at(until, rx.recv()).await {
        if let Ok(r) = check(&key, &v)
            && best.as_ref().is_none_or(|b| b.seq < r.seq)
        {
            best = Some(r);
        }
    }
    let missing = || Error::NotFound(id.to_owned());
    let r = best.ok_or_else(missing)?;
    let group = inner
        .scopes()
        .locators(id.as_bytes())
        .into_iter()
        .find(|(_, l)| to_hex(l) == r.locator)
        .map(|(g, _)| g)
        .ok_or_else(missing)?;
    let sealed = from_hex(&r.sealed).ok_or_else(missing)?;
    let json = inner.scopes().open(&group, &sealed).ok_or_else(missing)?;
    let blob: IndexRef =
        serde_json::from_slice(&json).map_err(IndexError::decode("the descriptor's location"))?;
    let bytes = publish::fetch_blob(inner, &blob).await?;
    let d: Descriptor =
        serde_json::from_slice(&bytes).map_err(IndexError::decode("the object's descriptor"))?;
    if d.object.id != id {
        return Err(IndexError::OtherObject.into());
    }
    {
        let mut ix = inner.index()?;
        for (s, g) in d.segments {
            ix.segments.entry(s).or_insert(g);
        }
        for (c, l) in d.chunks {
            ix.chunks.entry(c).or_insert(l);
        }
        ix.objects.insert(d.object.id.clone(), d.object);
    }
    inner.save().await?;
    inner.emit(crate::Event::TookIn {
        id: id.to_owned(),
        group: group.clone(),
    });
    tracing::info!(%id, %group, "took in an object a group may restore");
    Ok(())
}
