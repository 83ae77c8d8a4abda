//! A job's state at its master: every unit, the replicas handed out, the results in, and
//! the rules that decide when a unit is validated. Pure logic: no I/O.
//!
//! A unit is issued until its results in hand plus those still running could make a
//! quorum: `running + largest agreeing group < needed`. Each replica goes to a different
//! volunteer key (a person where people are known, else a peer). A unit is validated when
//! `needed` distinct keys agree (byte-equal output, or the job's validator says so);
//! the replicas that disagree are faults of their volunteers. `needed` is the job's
//! quorum, or 1 for a unit first issued to a volunteer with a long record of agreeing
//! (adaptive replication; a random share are spot-checked at full quorum).

use serde::{Deserialize, Serialize};

use crate::protocol::Blob;
use crate::sandbox::Fault;
use crate::spec::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReplicaState {
    Running,
    Done { hash: String },
    Faulted { fault: Fault },
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// The volunteer's peer ID.
    pub volunteer: String,
    /// Whose result it counts as: the volunteer's person, or its peer ID.
    pub key: String,
    pub issued: u64,
    pub deadline: u64,
    #[serde(flatten)]
    pub state: ReplicaState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    pub name: String,
    pub input: Blob,
    /// Agreeing results it takes.
    pub needed: u8,
    pub replicas: Vec<Replica>,
    /// The validated output's hash.
    pub canonical: Option<String>,
    /// Why it failed, when every try faulted.
    pub failed: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub name: String,
    pub created: u64,
    pub group: Option<String>,
    pub quorum: u8,
    pub limits: Limits,
    pub module: Blob,
    pub validator: Option<Blob>,
    pub state: JobState,
    pub units: Vec<UnitState>,
    /// Every unit before this one is closed (a hint for handing out units).
    #[serde(skip)]
    pub cursor: usize,
}

/// A result or fault the master will not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no job {0}")]
    NoJob(String),
    #[error("unit {0} was not given to this volunteer")]
    NotIssued(String),
    #[error("the job is {0:?}")]
    Closed(JobState),
}

/// What taking a result decided.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Keys whose results agreed with the quorum (the unit was validated now).
    pub agreed: Vec<String>,
    /// Keys whose results disagreed with it.
    pub disagreed: Vec<String>,
    /// The unit failed now.
    pub failed: bool,
}

/// Counts for status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub units: u64,
    /// Units with a result in hand (validated or waiting for the quorum).
    pub done: u64,
    pub validated: u64,
    /// Replicas out on volunteers.
    pub running: u64,
    pub failed: u64,
}

impl UnitState {
    pub fn open(&self) -> bool {
        self.canonical.is_none() && self.failed.is_none()
    }

    fn running(&self, now: u64) -> usize {
        self.replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Running && r.deadline >= now)
            .count()
    }

    /// Results in hand, grouped by agreement: (hash, keys) for each group.
    fn groups(&self, same: &mut dyn FnMut(&str, &str) -> bool) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in &self.replicas {
            let ReplicaState::Done { hash } = &r.state else {
                continue;
            };
            match groups.iter_mut().find(|(h, _)| h == hash || same(h, hash)) {
                Some((_, keys)) => {
                    if !keys.contains(&r.key) {
                        keys.push(r.key.clone());
                    }
                }
                None => groups.push((hash.clone(), vec![r.key.clone()])),
            }
        }
        groups
    }

    /// Whether another replica should go out now.
    pub fn wants(&self, now: u64) -> bool {
        if !self.open() {
            return false;
        }
        let largest = self
            .groups(&mut |a, b| a == b)
            .iter()
            .map(|(_, k)| k.len())
            .max()
            .unwrap_or(0);
        self.running(now) + largest < usize::from(self.needed)
    }

    /// Whether `key` holds or gave a replica of this unit (one that expired without a
    /// result does not count: it may try again).
    pub fn had(&self, key: &str) -> bool {
        self.replicas
            .iter()
            .any(|r| r.key == key && r.state != ReplicaState::Expired)
    }

    fn faults(&self) -> usize {
        self.replicas
            .iter()
            .filter(|r| matches!(r.state, ReplicaState::Faulted { .. }))
            .count()
    }
}

impl Job {
    /// The job without its units.
    pub fn summary(&self) -> Job {
        Job {
            id: self.id.clone(),
            name: self.name.clone(),
            created: self.created,
            group: self.group.clone(),
            quorum: self.quorum,
            limits: self.limits,
            module: self.module.clone(),
            validator: self.validator.clone(),
            state: self.state,
            units: Vec::new(),
            cursor: 0,
        }
    }

    /// A unit by name (units are kept sorted by name).
    pub fn unit(&self, name: &str) -> Option<&UnitState> {
        let i = self
            .units
            .binary_search_by(|u| u.name.as_str().cmp(name))
            .ok()?;
        self.units.get(i)
    }

    pub fn unit_mut(&mut self, name: &str) -> Option<&mut UnitState> {
        let i = self
            .units
            .binary_search_by(|u| u.name.as_str().cmp(name))
            .ok()?;
        self.units.get_mut(i)
    }

    /// Replicas past their deadline become expired: their units go out again.
    pub fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        for u in &mut self.units {
            for r in &mut u.replicas {
                if r.state == ReplicaState::Running && r.deadline < now {
                    r.state = ReplicaState::Expired;
                    n += 1;
                }
            }
        }
        n
    }

    /// Takes a volunteer's result or fault for `unit`. `same` says whether two outputs
    /// (by hash) agree, for jobs with a validator.
    pub fn take(
        &mut self,
        unit: &str,
        volunteer: &str,
        state: ReplicaState,
        same: &mut dyn FnMut(&str, &str) -> bool,
    ) -> Result<Verdict, Refusal> {
        if self.state != JobState::Running {
            return Err(Refusal::Closed(self.state));
        }
        let quorum = self.quorum;
        let u = self
            .unit_mut(unit)
            .ok_or_else(|| Refusal::NotIssued(unit.into()))?;
        // Its latest replica of the unit that has no result yet (a late one is welcome
        // while the unit is open).
        let r = u
            .replicas
            .iter_mut()
            .rev()
            .find(|r| {
                r.volunteer == volunteer
                    && matches!(r.state, ReplicaState::Running | ReplicaState::Expired)
            })
            .ok_or_else(|| Refusal::NotIssued(unit.into()))?;
        r.state = state.clone();
        let key = r.key.clone();
        let mut verdict = Verdict::default();
        if !u.open() {
            // Late, after the quorum: scored against the canonical result.
            if let (Some(c), ReplicaState::Done { hash }) = (&u.canonical, &state) {
                match c == hash || same(c, hash) {
                    true => verdict.agreed.push(key),
                    false => verdict.disagreed.push(key),
                }
            }
            return Ok(verdict);
        }
        if u.faults() > usize::from(quorum).max(1) {
            let last = u.replicas.iter().rev().find_map(|r| match &r.state {
                ReplicaState::Faulted { fault } => Some(fault.to_string()),
                _ => None,
            });
            u.failed = Some(format!(
                "{} runs faulted; the last: {}",
                u.faults(),
                last.unwrap_or_default()
            ));
            verdict.failed = true;
            return Ok(verdict);
        }
        let groups = u.groups(same);
        if let Some((hash, keys)) = groups
            .iter()
            .find(|(_, keys)| keys.len() >= usize::from(u.needed))
        {
            u.canonical = Some(hash.clone());
            verdict.agreed = keys.clone();
            verdict.disagreed = groups
                .iter()
                .filter(|(h, _)| h != hash)
                .flat_map(|(_, k)| k.iter().cloned())
                .filter(|k| !keys.contains(k))
                .collect();
        }
        Ok(verdict)
    }

    pub fn counts(&self, now: u64) -> Counts {
        let mut c = Counts {
            units: self.units.len() as u64,
            ..Counts::default()
        };
        for u in &self.units {
            if u.canonical.is_some() {
                c.validated += 1;
            }
            if u.failed.is_some() {
                c.failed += 1;
            }
            if u.canonical.is_some()
                || u.replicas
                    .iter()
                    .any(|r| matches!(r.state, ReplicaState::Done { .. }))
            {
                c.done += 1;
            }
            c.running += u.running(now) as u64;
        }
        c
    }

    /// Whether every unit is validated or failed.
    pub fn finished(&self) -> bool {
        self.units.iter().all(|u| !u.open())
    }
}

#[cfg(test)]
mod tests;
