//! A job's state at its master: every unit, the replicas handed out, the results in, and
//! the rules that decide when a unit is validated. Pure logic: no I/O.
//!
//! A unit is issued until its results in hand plus those still running could make a
//! quorum: `running + largest agreeing group < needed`. Each replica goes to a different
//! volunteer key (a person where people are known, else a peer). A unit is validated when
//! `needed` distinct keys agree (byte-equal output, or the job's validator says so);
//! the replicas that disagree are faults of their volunteers. `needed` is the job's
//! quorum, or 1 for a unit first issued to a trusted volunteer (adaptive replication; a
//! random share are spot-checked at full quorum, and at most a share of a job's units go
//! out alone).
//!
//! A unit validated by one trusted volunteer's result is validated *on trust*
//! (`on_trust` names its key): its volunteer gains no standing from it, and it stays on
//! trust until a second person's result agrees (it is then verified), a second result
//! disagrees (it is open again at full quorum, both results count and a third decides),
//! the owner accepts trust ([`Job::accept_trust`]), or its volunteer is caught
//! disagreeing with a quorum: [`Job::revoke`] then sets that result aside (`revoked`: in
//! no quorum, scored when the unit is validated again) and the unit goes out again at
//! full quorum.

use serde::{Deserialize, Serialize};

use crate::protocol::Blob;
use crate::sandbox::Fault;
use crate::spec::Limits;

/// Where a job stands: `running`, `done` or `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Cancelled,
}

impl JobState {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReplicaState {
    Running,
    Done {
        hash: String,
    },
    Faulted {
        fault: Fault,
    },
    Expired,
    /// A result that validated its unit on trust, set aside because its volunteer was
    /// caught disagreeing with a quorum: it counts in no quorum, and is scored against
    /// the result the unit is validated with again.
    Revoked {
        hash: String,
    },
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
    /// The key whose result alone validated the unit (adaptive replication), until a
    /// second result confirms it or the owner accepts trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_trust: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub name: String,
    pub created: u64,
    pub group: Option<String>,
    pub quorum: u8,
    /// Whether units may go to a trusted volunteer alone (`trust = false` in JOB.toml:
    /// every unit at full quorum).
    #[serde(default = "yes")]
    pub trust: bool,
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

fn yes() -> bool {
    true
}

/// What taking a result decided.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Keys whose results a quorum of distinct keys agreed on, now.
    pub agreed: Vec<String>,
    /// The keys of that quorum: each agreed key agreed with the others.
    pub quorum: Vec<String>,
    /// Keys whose results disagreed with it.
    pub disagreed: Vec<String>,
    /// The key whose result alone validated the unit now, on trust (no standing).
    pub on_trust: Option<String>,
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
    /// Validated units whose result is one trusted volunteer's alone (included in
    /// `validated`).
    #[serde(default)]
    pub on_trust: u64,
}

/// What status shows of a job: the job without its units, its counts, and the first
/// [`LISTED`] units validated on trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub job: Job,
    pub counts: Counts,
    pub on_trust: Vec<String>,
}

/// Units on trust named in a [`Summary`] (the count has them all): enough to look at
/// some, small enough for a status line of every job.
pub const LISTED: usize = 100;

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

    /// Whether no replica runs or has a result: the next one decides how many results
    /// the unit needs.
    pub fn fresh(&self) -> bool {
        self.replicas.iter().all(|r| {
            matches!(
                r.state,
                ReplicaState::Expired | ReplicaState::Faulted { .. }
            )
        })
    }

    /// Validates the unit if `needed` distinct keys agree. Two keys or more verify each
    /// other; one key alone (a unit given to a trusted volunteer alone) validates it on
    /// trust; results set aside before are scored against it.
    fn validate(&mut self, quorum: u8, same: &mut dyn FnMut(&str, &str) -> bool) -> Verdict {
        let groups = self.groups(same);
        let mut v = Verdict::default();
        let Some((hash, keys)) = groups
            .iter()
            .find(|(_, keys)| keys.len() >= usize::from(self.needed))
        else {
            return v;
        };
        self.canonical = Some(hash.clone());
        if keys.len() < 2 {
            // One result: on trust when the owner asked for more (with a quorum of 1 the
            // owner asked for no check, and nobody is verified).
            if self.needed < quorum {
                self.on_trust = keys.first().cloned();
                v.on_trust = self.on_trust.clone();
            }
            return v;
        }
        v.quorum = keys.clone();
        v.agreed = keys.clone();
        let others = groups.iter().filter(|(h, _)| h != hash);
        for k in others.flat_map(|(_, k)| k) {
            if !keys.contains(k) && !v.disagreed.contains(k) {
                v.disagreed.push(k.clone());
            }
        }
        for r in &self.replicas {
            let ReplicaState::Revoked { hash: h } = &r.state else {
                continue;
            };
            if keys.contains(&r.key) || v.agreed.contains(&r.key) || v.disagreed.contains(&r.key) {
                continue;
            }
            match h == hash || same(h, hash) {
                true => v.agreed.push(r.key.clone()),
                false => v.disagreed.push(r.key.clone()),
            }
        }
        v
    }

    /// A result from `key` after the unit was closed. Against a result on trust it
    /// confirms it, or opens the unit again at full quorum (both results count, a third
    /// decides); against a verified result it is scored.
    fn late(
        &mut self,
        key: &str,
        state: &ReplicaState,
        quorum: u8,
        same: &mut dyn FnMut(&str, &str) -> bool,
    ) -> Verdict {
        let mut v = Verdict::default();
        let (Some(c), ReplicaState::Done { hash }) = (self.canonical.clone(), state) else {
            return v;
        };
        let agree = c == *hash || same(&c, hash);
        match self.on_trust.clone() {
            Some(t) if t == key => {}
            Some(t) => {
                self.on_trust = None;
                if agree {
                    v.quorum = vec![t, key.to_owned()];
                    v.agreed = v.quorum.clone();
                } else {
                    tracing::info!(unit = %self.name, "a second result disagrees with one accepted on trust; the unit is open again");
                    self.canonical = None;
                    self.needed = quorum;
                }
            }
            None => {
                let mut with: Vec<String> = Vec::new();
                for r in self.replicas.iter().filter(|r| r.key != key) {
                    if let ReplicaState::Done { hash: h } = &r.state
                        && (*h == c || same(&c, h))
                        && !with.contains(&r.key)
                    {
                        with.push(r.key.clone());
                    }
                }
                if agree && !with.is_empty() {
                    v.agreed = vec![key.to_owned()];
                    with.push(key.to_owned());
                    v.quorum = with;
                } else if !agree && with.len() >= 2 {
                    v.disagreed = vec![key.to_owned()];
                }
            }
        }
        v
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
            trust: self.trust,
            limits: self.limits,
            module: self.module.clone(),
            validator: self.validator.clone(),
            state: self.state,
            units: Vec::new(),
            cursor: 0,
        }
    }

    /// What status shows.
    pub fn status(&self, now: u64) -> Summary {
        Summary {
            job: self.summary(),
            counts: self.counts(now),
            on_trust: self
                .units
                .iter()
                .filter(|u| u.on_trust.is_some())
                .take(LISTED)
                .map(|u| u.name.clone())
                .collect(),
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
        if !u.open() {
            let v = u.late(&key, &state, quorum, same);
            if u.open() {
                self.cursor = 0;
            }
            return Ok(v);
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
            return Ok(Verdict {
                failed: true,
                ..Verdict::default()
            });
        }
        Ok(u.validate(quorum, same))
    }

    /// Sets aside every result of `key` that validates a unit on trust (its volunteer
    /// was caught disagreeing with a quorum): those units go out again at full quorum,
    /// and a finished job runs again. How many units it opened.
    pub fn revoke(&mut self, key: &str) -> usize {
        let quorum = self.quorum;
        let mut n = 0;
        for u in self.units.iter_mut() {
            if u.on_trust.as_deref() != Some(key) {
                continue;
            }
            u.on_trust = None;
            u.canonical = None;
            u.needed = quorum;
            for r in u.replicas.iter_mut().filter(|r| r.key == key) {
                if let ReplicaState::Done { hash } = &r.state {
                    r.state = ReplicaState::Revoked { hash: hash.clone() };
                }
            }
            n += 1;
        }
        if n > 0 {
            self.cursor = 0;
            if self.state == JobState::Done {
                self.state = JobState::Running;
            }
        }
        n
    }

    /// The owner accepts the results on trust as they are: they count as validated for
    /// good, and a later fault of their volunteers no longer opens them. How many.
    pub fn accept_trust(&mut self) -> usize {
        let mut n = 0;
        for u in self.units.iter_mut().filter(|u| u.on_trust.is_some()) {
            u.on_trust = None;
            n += 1;
        }
        n
    }

    /// The keys whose results validate units on trust.
    pub fn trusted_keys(&self) -> impl Iterator<Item = &str> {
        self.units.iter().filter_map(|u| u.on_trust.as_deref())
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
            if u.on_trust.is_some() {
                c.on_trust += 1;
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
