//! One group as this device holds it: the operations of its log, the state folded from
//! them, and the keys sealed to this device. Operations are taken in only once verified
//! and once their parents are here; the log is kept in `GROUP_ID.json`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use kith_core::seal::SealKey;

use crate::keys::Keyring;
use kith_core::person::PersonId;

pub use crate::op::MAX_OPS;
use crate::op::{Body, Hash, Op, OpError, group_id, hex_hash};
use crate::protocol::{self, Heads, MAX_HEADS};
use crate::state::{State, order};

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    /// The genesis' hash: its first half names the group (the ID), all of it is known
    /// only to those who hold the log (the topic is derived from it).
    pub genesis: Hash,
    pub ops: HashMap<Hash, Op>,
    pub state: State,
    pub keys: Keyring,
}

/// What taking in a batch of operations did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Intake {
    pub added: usize,
    pub known: usize,
    /// Operations refused, and why.
    pub refused: Vec<Rejected>,
}

/// Why an operation was not taken into a log (before the fold: see
/// [`crate::Denied`] for those the fold skips).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    #[error("{}: not an operation of this group", hex_hash(.0))]
    NotOfGroup(Hash),
    #[error("{}: {}", hex_hash(.0), .1)]
    Unverified(Hash, #[source] OpError),
    #[error("{}: out of order (a parent is unknown)", hex_hash(.0))]
    OutOfOrder(Hash),
    /// Not taken, though known to none of the above: already in the log, or the log is
    /// full.
    #[error("{}: not taken (in the log already, or the log is full)", hex_hash(.0))]
    NotTaken(Hash),
}

/// Why a saved log could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] serde_json::Error),
    #[error("no genesis")]
    NoGenesis,
}

pub fn path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

impl Group {
    /// A group from its genesis.
    pub fn new(genesis: Op, me: &str, seal: &SealKey) -> Self {
        let h = genesis.hash();
        let mut g = Self {
            id: group_id(&h),
            genesis: h,
            ops: HashMap::from([(h, genesis)]),
            state: State::default(),
            keys: Keyring::default(),
        };
        g.refold(me, seal);
        g
    }

    /// Loads a log saved by [`Group::save`] (blocking). Its operations were verified when
    /// they were taken in.
    pub fn load(file: &Path, me: &str, seal: &SealKey) -> Result<Self, LoadError> {
        let bytes = std::fs::read(file)?;
        let ops: Vec<Op> = serde_json::from_slice(&bytes)?;
        let genesis = ops
            .iter()
            .find(|o| o.is_genesis())
            .cloned()
            .ok_or(LoadError::NoGenesis)?;
        let mut g = Self::new(genesis, me, seal);
        g.ops.extend(ops.into_iter().map(|o| (o.hash(), o)));
        g.refold(me, seal);
        Ok(g)
    }

    /// Saves the log (blocking), atomically.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let ops: Vec<&Op> = order(&self.ops)
            .iter()
            .filter_map(|h| self.ops.get(h))
            .collect();
        let bytes = serde_json::to_vec(&ops)?;
        kith_core::sync::write_atomic(&path(dir, &self.id), &bytes)
    }

    fn refold(&mut self, me: &str, seal: &SealKey) {
        self.state = State::fold(&self.ops);
        for h in &self.state.applied {
            if let Some(op) = self.ops.get(h) {
                self.keys.take(&self.id, op, me, seal);
            }
        }
    }

    /// The gossip topic of the group: derived from the whole genesis hash, so that only
    /// those who hold the log (not everyone who saw the group's ID) can find it.
    pub fn topic(&self) -> String {
        protocol::topic(&self.genesis)
    }

    /// What a member gossips after writing to the log: its heads. (Members that lack
    /// them sync; carrying the operations in the gossip was measured to cost more bytes
    /// and time, as every member then receives them from each of its mesh peers.)
    pub fn announcement(&self) -> Vec<u8> {
        let h = Heads {
            group: self.id.clone(),
            heads: self.heads().iter().take(MAX_HEADS).map(hex_hash).collect(),
        };
        serde_json::to_vec(&h).unwrap_or_default()
    }

    /// The log's heads: operations nothing else names as a parent.
    pub fn heads(&self) -> Vec<Hash> {
        let named: HashSet<Hash> = self.ops.values().flat_map(|o| o.parent_hashes()).collect();
        let mut h: Vec<Hash> = self
            .ops
            .keys()
            .filter(|h| !named.contains(*h))
            .copied()
            .collect();
        h.sort();
        h
    }

    /// Takes in operations, in any order: each verified, placed once its parents are here.
    pub fn take(&mut self, ops: Vec<Op>, me: &str, seal: &SealKey) -> Intake {
        let mut intake = Intake::default();
        let mut pending: Vec<(Hash, Op)> = Vec::new();
        for op in ops {
            let h = op.hash();
            if self.ops.contains_key(&h) {
                intake.known += 1;
            } else if op.is_genesis() || op.group != self.id {
                intake.refused.push(Rejected::NotOfGroup(h));
            } else if let Err(e) = op.verify() {
                intake.refused.push(Rejected::Unverified(h, e));
            } else {
                pending.push((h, op));
            }
        }
        loop {
            let before = pending.len();
            pending.retain(|(h, op)| {
                let placed = op.parent_hashes().iter().all(|p| self.ops.contains_key(p));
                if placed && self.ops.len() < MAX_OPS {
                    self.ops.insert(*h, op.clone());
                    intake.added += 1;
                }
                !placed
            });
            if pending.len() == before {
                break;
            }
        }
        for (h, _) in pending {
            intake.refused.push(Rejected::OutOfOrder(h));
        }
        if intake.added > 0 {
            self.refold(me, seal);
        }
        intake
    }

    /// The operations a peer that holds `have` lacks, parents first.
    pub fn missing_for(&self, have: &HashSet<Hash>) -> Vec<Op> {
        order(&self.ops)
            .into_iter()
            .filter(|h| !have.contains(h))
            .filter_map(|h| self.ops.get(&h).cloned())
            .collect()
    }

    /// The applied operation that put `device` (of `person`, when known) out of the
    /// group: its person removed, or the device revoked.
    pub fn removal_of(&self, device: &str, person: Option<&PersonId>) -> Option<Hash> {
        self.state.applied.iter().copied().find(|h| {
            self.ops.get(h).is_some_and(|op| match &op.body {
                Body::Remove { person: p } => Some(p) == person || self.had_device(p, device),
                Body::Revoke { revocation } => revocation.device == device,
                _ => false,
            })
        })
    }

    /// What a peer holding `have` lacks of `last` and its ancestors, parents first: a
    /// removed member learns of its removal and of nothing that came after it.
    pub fn missing_up_to(&self, last: Hash, have: &HashSet<Hash>) -> Vec<Op> {
        let mut upto: HashSet<Hash> = HashSet::new();
        let mut stack = vec![last];
        while let Some(h) = stack.pop() {
            if !upto.insert(h) {
                continue;
            }
            if let Some(op) = self.ops.get(&h) {
                stack.extend(op.parent_hashes());
            }
        }
        order(&self.ops)
            .into_iter()
            .filter(|h| upto.contains(h) && !have.contains(h))
            .filter_map(|h| self.ops.get(&h).cloned())
            .collect()
    }

    /// Whether the log ever gave `person` the device `device`.
    fn had_device(&self, person: &PersonId, device: &str) -> bool {
        self.ops.values().any(|op| match &op.body {
            Body::Create { devices, .. } => devices
                .iter()
                .any(|c| c.person == *person && c.device == device),
            Body::Add {
                person: p, devices, ..
            } => p == person && devices.iter().any(|c| c.device == device),
            Body::AddDevice { cert } => cert.person == *person && cert.device == device,
            _ => false,
        })
    }
}
