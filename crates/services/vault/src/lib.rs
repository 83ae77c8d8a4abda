//! kith vault service: encrypted, erasure-coded, self-repairing storage on peers' spare
//! disks, and backups into it.
//!
//! - [`Vault`]: the handle: put, get, ls, status, rm; backup and restore; what this
//!   node offers and holds.
//! - [`Config`], [`Error`] (and [`InputError`], [`IndexError`], [`KeyError`], each
//!   holder's [`Failure`]), [`Event`], the reports ([`PutReport`], [`GetReport`],
//!   [`ObjectStatus`], [`VaultStatus`]).
//! - [`protocol`]: `/kith/vault/1.0.0`. [`codec`]: encrypt and erasure-code a segment.
//!   [`tree`]: a share's hash tree and audit proofs. [`root`]: the signed root record.
//! - `state`: `Inner` wires the owners of the vault's state, each with a narrow API:
//!   `catalog` (the index, `index.json`, where its copy in the vault is), `ledger`
//!   (shares placed that the index does not point to: placing, or to release),
//!   `holder` (shares kept for others, quotas, fairness), `directory` (holders known,
//!   holders away). `index`: the index's data.
//! - `place`: finding holders. `put`, `get`, `backups`: storing and restoring.
//!   `release`: operations that place shares, and releasing what they leave.
//!   `audit`: audits, every leaf in turn. `upkeep`: repair, and the loop that runs it
//!   all. `publish`: the index kept in the vault. `shared`: objects a group's members
//!   may restore.
//!   `server`, `client`: the two sides of the protocol.

mod audit;
mod backups;
mod catalog;
mod client;
pub mod codec;
mod directory;
mod error;
mod get;
mod holder;
mod index;
mod ledger;
mod metrics;
mod place;
pub mod protocol;
mod publish;
mod put;
mod release;
pub mod root;
mod server;
mod shared;
mod state;
pub mod tree;
mod upkeep;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kith_core::scope::Scopes;
use kith_core::tasks::Tasks;
use kith_overlay::{Keypair, Overlay};
use kith_people::People;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

pub use client::{Cause, Failure};
pub use error::{Error, InputError, Refused, Shortfall};
pub use index::{IndexError, Kind};
pub use root::KeyError;
use state::Inner;

pub(crate) use kith_core::store::now_ms;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the vault keeps its index and the shares it holds for others.
    pub dir: PathBuf,
    /// Bytes of this disk lent to others (0: none).
    pub offer: u64,
    /// How often every share is audited.
    pub audit_every: Duration,
    /// How long a holder may be unreachable before its shares are rebuilt elsewhere.
    pub grace: Duration,
    /// Repair bytes per second, at most.
    pub repair_rate: u64,
    /// The default k-of-n.
    pub k: u8,
    pub n: u8,
    /// Test hook: this holder's writes fail with "no space left on device" once the
    /// shares it holds and the one being written would pass this many bytes (a disk that
    /// fills behind its back).
    #[doc(hidden)]
    pub fail_writes_after: Option<u64>,
}

impl Config {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            offer: 0,
            audit_every: Duration::from_secs(3600),
            grace: Duration::from_secs(24 * 3600),
            repair_rate: 20_000_000,
            k: 3,
            n: 10,
            fail_writes_after: None,
        }
    }
}

/// What a put or a backup stored (`VaultStored` in the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = VaultStored)]
pub struct PutReport {
    pub id: String,
    pub name: String,
    pub k: u8,
    pub n: u8,
    /// Distinct holders of its shares.
    pub holders: usize,
    /// Plain bytes stored.
    pub size: u64,
    /// Plain bytes the vault did not have yet (what a backup moved).
    pub new_bytes: u64,
    /// Share bytes sent to holders.
    pub uploaded: u64,
    pub files: usize,
    /// The vault's copy of the index (what another device restores from) includes it;
    /// when false, the node stores that copy as soon as holders take it.
    pub index_published: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetReport {
    pub id: String,
    pub name: String,
    pub files: usize,
    pub bytes: u64,
    /// The group whose members may restore it, if any: what was restored is that
    /// group's content.
    pub group: Option<String>,
}

/// An object in the vault and its health (`VaultObject` in the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = VaultObject)]
pub struct ObjectStatus {
    pub id: String,
    pub name: String,
    pub kind: Kind,
    pub created: u64,
    pub size: u64,
    pub files: usize,
    pub k: u8,
    pub n: u8,
    /// Shares that passed their last audit, in the object's weakest segment (of `n`).
    pub reachable: u8,
    pub segments: usize,
    /// When the object's shares were last audited (seconds since the Unix epoch).
    pub last_audit: u64,
    /// Shares of this object rebuilt and placed anew.
    pub repairs: u64,
}

/// One peer's account: what it holds for this node and what this node holds for it
/// (`VaultPeer` in the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = VaultPeer)]
pub struct PeerAccount {
    pub peer: String,
    /// Bytes of this node's shares the peer holds.
    pub holds_for_me: u64,
    /// Bytes this node holds for the peer.
    pub i_hold_for_it: u64,
    pub audits_passed: u64,
    /// Shares it lost or spoiled (a peer with a fault gets no more).
    pub faults: u64,
}

/// What this node offers, holds and stored (`VaultOverview` in the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = VaultOverview)]
pub struct VaultStatus {
    pub offered: u64,
    pub held: u64,
    pub objects: usize,
    pub stored: u64,
    pub repairs: u64,
    pub last_audit: u64,
    pub peers: Vec<PeerAccount>,
}

/// Something the vault did, for whoever reacts (the node, the web UI's live page).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An object was stored (a put, a backup).
    Stored { id: String, name: String },
    /// An object was removed; `released` of its shares were dropped by their holders.
    Removed { id: String, released: usize },
    /// A share was rebuilt and placed on another holder.
    Repaired {
        seg: u64,
        share: usize,
        from: String,
        to: String,
    },
    /// A holder lost or spoiled a share: it is repaired, and the holder gets no more.
    HolderFault {
        holder: String,
        seg: u64,
        share: usize,
    },
    /// The index's copy in the vault (what another device restores from) was stored.
    IndexPublished,
    /// Another device's changes to the index were taken in.
    IndexTakenIn,
    /// An object a group may restore was taken into this node's index.
    TookIn { id: String, group: String },
}

#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

impl Vault {
    /// Loads the index and the held shares, serves holders' requests, offers space when
    /// `config.offer` > 0, and starts upkeep. `signer` is the person key where this
    /// device holds it (else the device key): it opens the vault's index.
    pub async fn start(
        config: Config,
        overlay: Overlay,
        people: People,
        scopes: Arc<dyn Scopes>,
        signer: Keypair,
        registry: &mut Registry,
        tasks: Tasks,
    ) -> Result<Self, Error> {
        codec::check_shape(config.k, config.n)?;
        overlay
            .register_records(protocol::ROOT_PREFIX, root::validator())
            .await?;
        overlay
            .register_records(protocol::SHARED_PREFIX, shared::validator())
            .await?;
        let signer = root::Signer::new(signer);
        let offer = config.offer;
        let inner = Inner::open(config, overlay, people, scopes, signer, registry, tasks).await?;
        server::start(inner.overlay(), inner.side())?;
        if offer > 0 {
            inner
                .overlay()
                .start_providing(protocol::HOLDERS_KEY.to_vec())
                .await?;
        }
        upkeep::start(&inner);
        Ok(Self { inner })
    }

    /// Stores a file or folder; `k`, `n` default to the config's. With `group`, members
    /// of that group may restore it too.
    pub async fn put(
        &self,
        path: PathBuf,
        name: Option<String>,
        group: Option<String>,
        k: Option<u8>,
        n: Option<u8>,
    ) -> Result<PutReport, Error> {
        if let Some(g) = &group
            && !self.inner.scopes().belongs(g)
        {
            return Err(Error::NotMember(g.clone()));
        }
        let name = match name {
            Some(n) => n,
            None => path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
        };
        let (k, n) = (
            k.unwrap_or(self.inner.config().k),
            n.unwrap_or(self.inner.config().n),
        );
        let mut r = put::put(&self.inner, path, name, None, group.clone(), k, n).await?;
        // The object is stored: a copy of the index that holders would not take is
        // stored later, and the report says so.
        r.index_published = publish::publish_or_defer(&self.inner).await;
        if let Some(g) = group {
            shared::publish(&self.inner, &r.id, &g).await?;
        }
        Ok(r)
    }

    /// Restores an object (by ID, or the newest with that name) to `out`.
    pub async fn get(&self, what: &str, out: PathBuf) -> Result<GetReport, Error> {
        let o = match self.find(what)? {
            Some(o) => o,
            None => {
                let _ = publish::refresh(&self.inner).await;
                match self.find(what)? {
                    Some(o) => o,
                    None => {
                        shared::take(&self.inner, what).await?;
                        self.find(what)?
                            .ok_or_else(|| Error::NotFound(what.to_owned()))?
                    }
                }
            }
        };
        get::get(&self.inner, &o, &out).await
    }

    fn find(&self, what: &str) -> Result<Option<index::Object>, Error> {
        Ok(self.inner.index()?.find(what).cloned())
    }

    pub fn list(&self) -> Result<Vec<ObjectStatus>, Error> {
        let ix = self.inner.index()?;
        Ok(ix.objects.values().map(|o| status_of(&ix, o)).collect())
    }

    /// Events from now on.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.events()
    }

    pub fn status(&self, what: &str) -> Result<ObjectStatus, Error> {
        let ix = self.inner.index()?;
        let o = ix
            .find(what)
            .ok_or_else(|| Error::NotFound(what.to_owned()))?;
        Ok(status_of(&ix, o))
    }

    /// What this node offers, holds, stored, and each peer's account.
    pub fn overview(&self) -> Result<VaultStatus, Error> {
        let held_for = self.inner.holder().by_owner();
        let ix = self.inner.index()?;
        let stored_at = ix.stored_at();
        let mut peers: std::collections::BTreeSet<&String> = held_for.keys().collect();
        peers.extend(stored_at.keys());
        peers.extend(ix.holders.keys());
        let peers = peers
            .into_iter()
            .map(|p| {
                let rec = ix.holders.get(p).cloned().unwrap_or_default();
                PeerAccount {
                    peer: p.clone(),
                    holds_for_me: stored_at.get(p).copied().unwrap_or(0),
                    i_hold_for_it: held_for.get(p).copied().unwrap_or(0),
                    audits_passed: rec.passed,
                    faults: rec.faults,
                }
            })
            .collect();
        Ok(VaultStatus {
            offered: self.inner.holder().offered(),
            held: held_for.values().sum(),
            objects: ix.objects.len(),
            stored: ix.objects.values().map(|o| o.size).sum(),
            repairs: ix.repairs,
            last_audit: ix.last_audit,
            peers,
        })
    }

    /// Removes an object; segments no other object needs are released on their holders.
    /// Returns how many shares were released.
    pub async fn remove(&self, what: &str) -> Result<usize, Error> {
        let _changing = self.inner.changing().await;
        let id = self
            .find(what)?
            .map(|o| o.id)
            .ok_or_else(|| Error::NotFound(what.to_owned()))?;
        let dead = self.inner.index()?.remove(&id);
        self.inner.save().await?;
        drop(_changing);
        let dead: Vec<index::Segment> = dead.into_iter().map(|(_, g)| g).collect();
        let released = release::release(
            &self.inner,
            crate::index::shares_of(&dead).into_iter().collect(),
        )
        .await;
        self.inner.emit(Event::Removed {
            id: id.clone(),
            released,
        });
        publish::publish_or_defer(&self.inner).await;
        Ok(released)
    }

    /// Backs a folder up (only chunks the vault lacks move); with `every` (seconds),
    /// again on that schedule.
    pub async fn backup(
        &self,
        dir: PathBuf,
        every: Option<u64>,
        k: Option<u8>,
        n: Option<u8>,
    ) -> Result<PutReport, Error> {
        let (k, n) = (
            k.unwrap_or(self.inner.config().k),
            n.unwrap_or(self.inner.config().n),
        );
        backups::backup(&self.inner, dir, every, k, n).await
    }

    /// Restores a backed-up folder as it was at `at` (milliseconds since the Unix epoch;
    /// default: the newest) into `out`.
    pub async fn restore(
        &self,
        source: Option<&str>,
        at: Option<u64>,
        out: PathBuf,
    ) -> Result<GetReport, Error> {
        let picked = backups::pick(&*self.inner.index()?, source, at);
        let o = match picked {
            Ok(o) => o,
            Err(_) => {
                let _ = publish::refresh(&self.inner).await;
                backups::pick(&*self.inner.index()?, source, at)?
            }
        };
        get::get(&self.inner, &o, &out).await
    }

    /// Takes in the index kept in the vault (another device's changes).
    pub async fn refresh(&self) -> Result<bool, Error> {
        publish::refresh(&self.inner).await
    }

    /// Audits every share now and repairs what needs it (as the upkeep loop does).
    pub async fn upkeep(&self) -> Result<usize, Error> {
        audit::audit(&self.inner).await?;
        let n = upkeep::repair(&self.inner).await?;
        if n > 0 {
            publish::publish(&self.inner).await?;
        }
        Ok(n)
    }

    pub async fn stopped(&self) {
        self.inner.tasks().stopped().await;
    }
}

fn status_of(ix: &index::Index, o: &index::Object) -> ObjectStatus {
    let segs = ix.segments_of(o);
    let mut reachable = o.n;
    let mut last_audit = u64::MAX;
    let mut repairs = 0u64;
    for s in segs.iter().filter_map(|s| ix.segments.get(s)) {
        let ok = s
            .shares
            .iter()
            .filter(|x| !x.bad && x.missing_since.is_none())
            .count();
        reachable = reachable.min(ok as u8);
        repairs += u64::from(s.repairs);
        // A share found bad is not audited again (it waits for repair): the object's
        // audit time is that of the shares audits still ask.
        for x in s.shares.iter().filter(|x| !x.bad) {
            last_audit = last_audit.min(x.last_audit);
        }
    }
    ObjectStatus {
        id: o.id.clone(),
        name: o.name.clone(),
        kind: o.kind,
        created: o.created,
        size: o.size,
        files: o.files.len(),
        k: o.k,
        n: o.n,
        reachable: if segs.is_empty() { o.n } else { reachable },
        segments: segs.len(),
        last_audit: if last_audit == u64::MAX {
            0
        } else {
            last_audit
        },
        repairs,
    }
}
