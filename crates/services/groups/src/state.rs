//! A group's state, folded from its log. The log is a graph (concurrent operations have
//! the same parents); the fold visits it in one total order every member computes the same
//! way (parents first, ties broken by operation hash), and checks each operation against
//! the state before it. An operation that is not allowed at its place is skipped, the same
//! way everywhere, so every member that holds the same operations agrees on the members,
//! the admins and the keys.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kith_core::person::{DeviceCert, PersonId};

use crate::denied::Denied;
use crate::op::{Body, Hash, KeyUpdate, Op};

/// A member: a person, whether it is an admin, and its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub admin: bool,
    pub devices: BTreeMap<String, DeviceCert>,
}

/// A group key's epoch, and the devices it was sealed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch {
    pub id: String,
    pub recipients: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    pub id: String,
    pub name: String,
    pub history: bool,
    pub members: BTreeMap<PersonId, Member>,
    pub revoked: BTreeSet<String>,
    /// Epochs in order; the last is current.
    pub epochs: Vec<Epoch>,
    /// Uses of each invite.
    pub invites: BTreeMap<String, u32>,
    /// Operations applied, in order.
    pub applied: Vec<Hash>,
    /// Operations skipped, and why.
    pub skipped: Vec<(Hash, Denied)>,
}

/// The log's operations in the order every member folds them: each after its parents,
/// ties by hash.
pub fn order(ops: &HashMap<Hash, Op>) -> Vec<Hash> {
    let mut waiting: HashMap<Hash, usize> = HashMap::new();
    let mut children: HashMap<Hash, Vec<Hash>> = HashMap::new();
    let mut ready: BTreeSet<Hash> = BTreeSet::new();
    for (h, op) in ops {
        let parents: Vec<Hash> = op
            .parent_hashes()
            .into_iter()
            .filter(|p| ops.contains_key(p))
            .collect();
        if parents.is_empty() {
            ready.insert(*h);
        } else {
            waiting.insert(*h, parents.len());
            for p in parents {
                children.entry(p).or_default().push(*h);
            }
        }
    }
    let mut out = Vec::with_capacity(ops.len());
    while let Some(h) = ready.pop_first() {
        out.push(h);
        for c in children.remove(&h).unwrap_or_default() {
            if let Some(n) = waiting.get_mut(&c) {
                *n -= 1;
                if *n == 0 {
                    waiting.remove(&c);
                    ready.insert(c);
                }
            }
        }
    }
    out
}

impl State {
    /// Folds a log (whose operations were each verified when they were taken in).
    pub fn fold(ops: &HashMap<Hash, Op>) -> Self {
        let mut s = Self::default();
        for h in order(ops) {
            if let Some(op) = ops.get(&h) {
                match s.apply(&h, op) {
                    Ok(()) => s.applied.push(h),
                    Err(why) => s.skipped.push((h, why)),
                }
            }
        }
        s
    }

    /// The member person a current, unrevoked device acts for.
    pub fn member_of(&self, device: &str) -> Option<PersonId> {
        if self.revoked.contains(device) {
            return None;
        }
        self.members
            .iter()
            .find(|(_, m)| m.devices.contains_key(device))
            .map(|(p, _)| *p)
    }

    pub fn is_admin(&self, person: &PersonId) -> bool {
        self.members.get(person).is_some_and(|m| m.admin)
    }

    /// Every current device of the members (certificates).
    pub fn member_certs(&self) -> Vec<DeviceCert> {
        self.members
            .values()
            .flat_map(|m| m.devices.values().cloned())
            .collect()
    }

    /// Every current device of every member.
    pub fn devices(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.devices.keys().cloned())
            .collect()
    }

    pub fn current_epoch(&self) -> Option<&Epoch> {
        self.epochs.last()
    }

    /// Whether the current key must be replaced: a device that is no member's holds it,
    /// or a member's device lacks it.
    pub fn needs_rotation(&self) -> bool {
        match self.current_epoch() {
            Some(e) => e.recipients != self.devices(),
            None => !self.members.is_empty(),
        }
    }

    fn apply(&mut self, h: &Hash, op: &Op) -> Result<(), Denied> {
        let author = op.author.person;
        let device = op.author.device.clone();
        if op.is_genesis() {
            if !self.applied.is_empty() {
                return Err(Denied::SecondGenesis);
            }
        } else if self.member_of(&device) != Some(author) {
            return Err(Denied::NotCurrentDevice);
        }
        match &op.body {
            Body::Create {
                name,
                devices,
                history,
            } => self.create(h, op, name, devices, *history)?,
            Body::Add {
                person,
                devices,
                admin,
                invite,
            } => {
                self.need_admin(&author)?;
                if self.members.contains_key(person) {
                    return Err(Denied::AlreadyMember);
                }
                if let Some(inv) = invite {
                    let used = self.invites.entry(inv.id.clone()).or_default();
                    if inv.group != self.id || *used >= inv.uses {
                        return Err(Denied::InviteSpent);
                    }
                    *used += 1;
                }
                let devices = self.certs_of(person, devices)?;
                self.members.insert(
                    *person,
                    Member {
                        admin: *admin,
                        devices,
                    },
                );
            }
            Body::AddDevice { cert } => {
                if cert.person != author
                    || cert.verify().is_err()
                    || self.revoked.contains(&cert.device)
                {
                    return Err(Denied::NotAuthorsDevice);
                }
                if let Some(m) = self.members.get_mut(&author) {
                    m.devices.insert(cert.device.clone(), cert.clone());
                }
            }
            Body::Remove { person } => {
                self.need_admin(&author)?;
                self.members.remove(person).ok_or(Denied::NotMember)?;
            }
            Body::Promote { person } => {
                self.need_admin(&author)?;
                self.members.get_mut(person).ok_or(Denied::NotMember)?.admin = true;
            }
            Body::Leave => {
                let admins = self.members.values().filter(|m| m.admin).count();
                if self.is_admin(&author) && admins == 1 && self.members.len() > 1 {
                    return Err(Denied::LastAdmin);
                }
                self.members.remove(&author);
            }
            Body::Revoke { revocation } => {
                if revocation.verify().is_err() {
                    return Err(Denied::ForgedRevocation);
                }
                let m = self
                    .members
                    .get_mut(&revocation.person)
                    .ok_or(Denied::NotMembersDevice)?;
                m.devices.remove(&revocation.device);
                self.revoked.insert(revocation.device.clone());
            }
            Body::Rotate => {}
        }
        if let Some(k) = &op.key {
            self.take_key(op, k)?;
        }
        Ok(())
    }

    fn create(
        &mut self,
        h: &Hash,
        op: &Op,
        name: &str,
        devices: &[DeviceCert],
        history: bool,
    ) -> Result<(), Denied> {
        self.id = crate::op::group_id(h);
        self.name = name.to_owned();
        self.history = history;
        let author = op.author.person;
        let mut devices = self.certs_of(&author, devices)?;
        devices.insert(op.author.device.clone(), op.author.clone());
        self.members.insert(
            author,
            Member {
                admin: true,
                devices,
            },
        );
        Ok(())
    }

    /// Whether `person` is an admin, as a refusal when it is not.
    pub fn need_admin(&self, person: &PersonId) -> Result<(), Denied> {
        if self.is_admin(person) {
            Ok(())
        } else {
            Err(Denied::NotAdmin)
        }
    }

    /// Valid, unrevoked certificates of `person`.
    fn certs_of(
        &self,
        person: &PersonId,
        certs: &[DeviceCert],
    ) -> Result<BTreeMap<String, DeviceCert>, Denied> {
        let mut out = BTreeMap::new();
        for c in certs {
            if c.person != *person || c.verify().is_err() {
                return Err(Denied::BadCerts);
            }
            if !self.revoked.contains(&c.device) {
                out.insert(c.device.clone(), c.clone());
            }
        }
        if out.is_empty() {
            return Err(Denied::NoDevice);
        }
        Ok(out)
    }

    fn take_key(&mut self, op: &Op, k: &KeyUpdate) -> Result<(), Denied> {
        let to: BTreeSet<String> = k.wraps.iter().map(|w| w.device.clone()).collect();
        if k.new_epoch {
            if matches!(
                op.body,
                Body::Leave | Body::Promote { .. } | Body::AddDevice { .. }
            ) {
                return Err(Denied::CannotStartEpoch);
            }
            if self.epochs.iter().any(|e| e.id == k.epoch) {
                return Err(Denied::EpochReused);
            }
            self.epochs.push(Epoch {
                id: k.epoch.clone(),
                recipients: to,
            });
        } else if let Some(e) = self.epochs.iter_mut().find(|e| e.id == k.epoch) {
            e.recipients.extend(to);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
