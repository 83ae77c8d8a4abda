//! The master side: the jobs this node submitted, on disk under `compute/jobs/<id>/`
//! (`job.json`, `module.wasm`, `validator.wasm`, `inputs/<unit>`, `results/<hash>`), and
//! the volunteers' standing (`compute/standing.json`). Jobs are saved when they change
//! (at most once a second, and at shutdown), so a restarted master resumes them.

pub mod job;
mod journal;
pub mod standing;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kith_core::store::now_secs;
use kith_core::sync::{recover, write_atomic};

use crate::Error;
use crate::protocol::{Blob, INLINE_MAX, Standing, Unit, hash};
use crate::spec::JobSpec;
use job::{Job, JobState, Refusal, Replica, ReplicaState, Summary, UnitState, Verdict};
use journal::Entry;
use standing::{SPOT_CHECK, Standings};

/// Units one volunteer may hold at once, across jobs.
pub const MAX_OUTSTANDING: usize = 64;
/// Jobs a master keeps.
pub const MAX_JOBS: usize = 256;
/// At most this share of a job's units (in percent) go to a trusted volunteer alone: the
/// rest always go at full quorum, so a trusted volunteer that cheats on every unit it
/// gets meets a quorum within the job.
pub const TRUST_SHARE: usize = 50;

pub struct Master {
    dir: PathBuf,
    jobs: Mutex<BTreeMap<String, Job>>,
    standings: Mutex<Standings>,
    dirty: Mutex<HashSet<String>>,
    /// Units handed to each volunteer and maybe still running: (job, unit).
    given: Mutex<HashMap<String, Vec<(String, String)>>>,
    /// Keys whose results may validate units on trust (a fault of theirs is looked for
    /// in every job; others' faults open nothing).
    on_trust: Mutex<HashSet<String>>,
}

/// Units chosen for a volunteer, and where each inline input is.
pub struct Handout {
    pub units: Vec<Unit>,
    pub inline: Vec<PathBuf>,
    pub standing: Standing,
    /// Why there is nothing, when there is nothing.
    pub reason: String,
}

/// Who is asking: its peer ID, the key its results count under, and whether it may see
/// a job of a group.
pub struct Asker<'a> {
    pub peer: &'a str,
    pub key: &'a str,
    pub may: &'a dyn Fn(&str) -> bool,
}

impl Master {
    /// Loads the jobs and standings under `dir` (blocking). A job file that cannot be
    /// read is set aside and logged; the others load.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let jobs_dir = dir.join("jobs");
        std::fs::create_dir_all(&jobs_dir).map_err(|e| Error::io(&jobs_dir, e))?;
        let mut jobs = BTreeMap::new();
        for entry in std::fs::read_dir(&jobs_dir).map_err(|e| Error::io(&jobs_dir, e))? {
            let Ok(entry) = entry else { continue };
            let file = entry.path().join("job.json");
            match std::fs::read(&file).map(|b| serde_json::from_slice::<Job>(&b)) {
                Ok(Ok(mut job)) => {
                    let replayed = journal::replay(&mut job, &entry.path());
                    if replayed > 0 {
                        tracing::info!(job = %job.id, entries = replayed, "job journal replayed");
                    }
                    if job.state == JobState::Running && job.finished() {
                        job.state = JobState::Done;
                    }
                    jobs.insert(job.id.clone(), job);
                }
                Ok(Err(e)) => {
                    tracing::warn!(file = %file.display(), error = %e, "unreadable job left alone")
                }
                Err(_) => {}
            }
        }
        let standings = std::fs::read(dir.join("standing.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let on_trust = jobs
            .values()
            .flat_map(|j: &Job| j.trusted_keys().map(str::to_owned))
            .collect();
        Ok(Self {
            dir: dir.to_owned(),
            jobs: Mutex::new(jobs),
            standings: Mutex::new(standings),
            dirty: Mutex::new(HashSet::new()),
            given: Mutex::new(HashMap::new()),
            on_trust: Mutex::new(on_trust),
        })
    }

    fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.join("jobs").join(id)
    }

    /// Copies a checked job's files in and makes its state (blocking). Content IDs of
    /// the module and of large inputs are filled in by the caller once shared.
    pub fn create(&self, spec: &JobSpec) -> Result<Job, Error> {
        if recover(&self.jobs).len() >= MAX_JOBS {
            return Err(Error::TooManyJobs(MAX_JOBS));
        }
        let module = std::fs::read(&spec.wasm).map_err(|e| Error::io(&spec.wasm, e))?;
        let created = now_secs();
        let salt: u64 = rand::random();
        let id = hash(format!("{}{created}{salt}", hash(&module)).as_bytes())[..16].to_string();
        let dir = self.job_dir(&id);
        let inputs = dir.join("inputs");
        std::fs::create_dir_all(&inputs).map_err(|e| Error::io(&inputs, e))?;
        std::fs::create_dir_all(dir.join("results")).map_err(|e| Error::io(&dir, e))?;
        let put = |name: &str, bytes: &[u8]| -> Result<Blob, Error> {
            let p = dir.join(name);
            std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
            Ok(Blob {
                hash: hash(bytes),
                size: bytes.len() as u64,
                content: None,
            })
        };
        let module = put("module.wasm", &module)?;
        let validator = match &spec.validator {
            Some(v) => Some(put(
                "validator.wasm",
                &std::fs::read(v).map_err(|e| Error::io(v, e))?,
            )?),
            None => None,
        };
        let mut units = Vec::with_capacity(spec.inputs.len());
        for (name, path) in &spec.inputs {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            units.push(UnitState {
                input: put(&format!("inputs/{name}"), &bytes)?,
                name: name.clone(),
                needed: spec.quorum,
                replicas: Vec::new(),
                canonical: None,
                failed: None,
                on_trust: None,
            });
        }
        Ok(Job {
            id,
            name: spec.name.clone(),
            created,
            group: spec.group.clone(),
            quorum: spec.quorum,
            trust: spec.trust,
            limits: spec.limits,
            module,
            validator,
            state: JobState::Running,
            units,
            cursor: 0,
        })
    }

    /// Files of a job that travel as content: the module, and inputs over the inline
    /// size. (unit name or "" for the module, path)
    pub fn content_files(&self, job: &Job) -> Vec<(String, PathBuf)> {
        let dir = self.job_dir(&job.id);
        let mut v = vec![(String::new(), dir.join("module.wasm"))];
        v.extend(
            job.units
                .iter()
                .filter(|u| u.input.size > INLINE_MAX)
                .map(|u| (u.name.clone(), dir.join("inputs").join(&u.name))),
        );
        v
    }

    /// Adds a job and saves it (blocking).
    pub fn add(&self, job: Job) -> Result<(), Error> {
        self.save(&job)?;
        recover(&self.jobs).insert(job.id.clone(), job);
        Ok(())
    }

    fn save(&self, job: &Job) -> Result<(), Error> {
        let file = self.job_dir(&job.id).join("job.json");
        let bytes = serde_json::to_vec(job).map_err(|e| Error::Io(e.to_string()))?;
        write_atomic(&file, &bytes).map_err(|e| Error::io(&file, e))
    }

    /// Saves the jobs that changed and the standings (blocking).
    pub fn flush(&self) -> Result<(), Error> {
        let ids: Vec<String> = recover(&self.dirty).drain().collect();
        for id in ids {
            let dir = self.job_dir(&id);
            let job = {
                let jobs = recover(&self.jobs);
                let job = jobs.get(&id).cloned();
                // The journal so far goes with this snapshot.
                journal::begin_save(&dir).map_err(|e| Error::io(&dir, e))?;
                job
            };
            if let Some(job) = job {
                self.save(&job)?;
                journal::saved(&dir);
            }
        }
        let s =
            serde_json::to_vec(&*recover(&self.standings)).map_err(|e| Error::Io(e.to_string()))?;
        let f = self.dir.join("standing.json");
        write_atomic(&f, &s).map_err(|e| Error::io(&f, e))
    }

    fn touch(&self, id: &str) {
        recover(&self.dirty).insert(id.to_owned());
    }

    /// Whether any job is open, and the groups of open jobs.
    pub fn open_scopes(&self) -> (bool, Vec<String>) {
        let jobs = recover(&self.jobs);
        let open = jobs.values().filter(|j| j.state == JobState::Running);
        let mut public = false;
        let mut groups = Vec::new();
        for j in open {
            match &j.group {
                Some(g) if !groups.contains(g) => groups.push(g.clone()),
                Some(_) => {}
                None => public = true,
            }
        }
        (public, groups)
    }

    /// Chooses up to `slots` units for a volunteer.
    pub fn work(&self, who: &Asker<'_>, slots: u8, memory: u64, group: Option<&str>) -> Handout {
        let now = now_secs();
        let standing = recover(&self.standings).get(who.key);
        let trusted = recover(&self.standings).trusted(who.key);
        let mut out = Handout {
            units: Vec::new(),
            inline: Vec::new(),
            standing,
            reason: String::new(),
        };
        if standing.dropped {
            out.reason = "your results disagreed with the quorum too often".into();
            return out;
        }
        let mut jobs = recover(&self.jobs);
        let mut given = recover(&self.given);
        if given.len() > 10_000 {
            given.retain(|_, v| !v.is_empty());
        }
        let mine = given.entry(who.peer.to_owned()).or_default();
        // Units this volunteer still runs (forgetting those it returned or that expired).
        mine.retain(|(job, unit)| {
            jobs.get(job).and_then(|j| j.unit(unit)).is_some_and(|u| {
                u.replicas.iter().any(|r| {
                    r.volunteer == who.peer && r.state == ReplicaState::Running && r.deadline >= now
                })
            })
        });
        let held = mine.len();
        let room = usize::from(slots).min(MAX_OUTSTANDING.saturating_sub(held));
        let mut reason = "no open work units".to_string();
        for job in jobs.values_mut() {
            if out.units.len() >= room || job.state != JobState::Running {
                continue;
            }
            if job.group.as_deref() != group && group.is_some()
                || job.group.as_deref().is_some_and(|g| !(who.may)(g))
            {
                continue;
            }
            if job.limits.memory > memory {
                reason = format!("the open jobs need more memory than the {memory} bytes offered");
                continue;
            }
            let n = self.issue(job, who, room, trusted, &mut out);
            let new = out.units.iter().rev().take(n);
            mine.extend(new.map(|u| (u.job.clone(), u.name.clone())));
        }
        if room == 0 {
            reason = format!("you hold {held} units already");
        }
        out.reason = reason;
        out
    }

    /// Hands `who` units of `job` until `out` holds `room`; how many it added. Journals
    /// them and marks the job changed.
    fn issue(
        &self,
        job: &mut Job,
        who: &Asker<'_>,
        room: usize,
        trusted: bool,
        out: &mut Handout,
    ) -> usize {
        let now = now_secs();
        let dir = self.job_dir(&job.id);
        let mut issued = Vec::new();
        // Units before the cursor are all closed.
        while job.units.get(job.cursor).is_some_and(|u| !u.open()) {
            job.cursor += 1;
        }
        let (quorum, trust) = (job.quorum, job.trust && trusted && job.quorum > 1);
        let cap = job.units.len() * TRUST_SHARE / 100;
        let mut alone = match trust {
            true => job.units.iter().filter(|u| u.needed < quorum).count(),
            false => cap,
        };
        for u in job.units.iter_mut().skip(job.cursor) {
            if out.units.len() >= room {
                break;
            }
            if !u.wants(now) || u.had(who.key) {
                continue;
            }
            // The first replica out decides: alone (on trust) or at full quorum, whatever
            // an earlier replica that expired was given as.
            if u.fresh() {
                u.needed = quorum;
                if alone < cap && rand::random::<f64>() >= SPOT_CHECK {
                    u.needed = 1;
                    alone += 1;
                }
            }
            let deadline = now + job.limits.deadline;
            let replica = Replica {
                volunteer: who.peer.to_owned(),
                key: who.key.to_owned(),
                issued: now,
                deadline,
                state: ReplicaState::Running,
            };
            issued.push(Entry::Issued {
                unit: u.name.clone(),
                needed: u.needed,
                replica: replica.clone(),
            });
            u.replicas.push(replica);
            if u.input.content.is_none() {
                out.inline.push(dir.join("inputs").join(&u.name));
            }
            out.units.push(Unit {
                job: job.id.clone(),
                name: u.name.clone(),
                module: job.module.clone(),
                input: u.input.clone(),
                limits: job.limits,
                deadline,
            });
        }
        if !issued.is_empty() {
            if let Err(e) = journal::append(&dir, &issued) {
                tracing::warn!(job = %job.id, error = %e, "cannot journal units handed out");
            }
            recover(&self.dirty).insert(job.id.clone());
        }
        issued.len()
    }

    /// The output limit of a unit given to `peer`, before its output is read.
    pub fn expects(&self, peer: &str, job: &str, unit: &str) -> Result<u64, Refusal> {
        let jobs = recover(&self.jobs);
        let j = jobs.get(job).ok_or_else(|| Refusal::NoJob(job.into()))?;
        if j.state != JobState::Running {
            return Err(Refusal::Closed(j.state));
        }
        let given = j
            .unit(unit)
            .is_some_and(|u| u.replicas.iter().any(|r| r.volunteer == peer));
        if !given {
            return Err(Refusal::NotIssued(unit.into()));
        }
        Ok(j.limits.output)
    }

    /// Where a job's output of `hash` is kept.
    pub fn result_path(&self, job: &str, hash: &str) -> PathBuf {
        self.job_dir(job).join("results").join(hash)
    }

    /// Takes a result (its output already saved) or a fault; updates standings.
    pub fn take(
        &self,
        peer: &str,
        job: &str,
        unit: &str,
        state: ReplicaState,
        same: &mut dyn FnMut(&str, &str) -> bool,
    ) -> Result<(Verdict, Standing, String), Refusal> {
        let mut jobs = recover(&self.jobs);
        let j = jobs
            .get_mut(job)
            .ok_or_else(|| Refusal::NoJob(job.into()))?;
        let verdict = j.take(unit, peer, state.clone(), same)?;
        let entry = Entry::Taken {
            unit: unit.to_owned(),
            volunteer: peer.to_owned(),
            state,
        };
        if let Err(e) = journal::append(&self.job_dir(job), &[entry]) {
            tracing::warn!(job, error = %e, "cannot journal a result taken");
        }
        if let Some(k) = &verdict.on_trust {
            self.keep_on_trust(j, k);
        }
        let key = j
            .unit(unit)
            .and_then(|u| u.replicas.iter().rev().find(|r| r.volunteer == peer))
            .map(|r| r.key.clone())
            .unwrap_or_default();
        if j.state == JobState::Running && j.finished() {
            j.state = JobState::Done;
            tracing::info!(job = %j.id, name = %j.name, "job finished");
        }
        let id = j.id.clone();
        drop(jobs);
        self.touch(&id);
        let standing = {
            let mut st = recover(&self.standings);
            for k in &verdict.agreed {
                let with: Vec<&str> = verdict.quorum.iter().map(String::as_str).collect();
                st.agreed(k, &with);
            }
            for k in &verdict.disagreed {
                st.disagreed(k);
            }
            st.get(&key)
        };
        for k in &verdict.disagreed {
            self.revoke(k);
        }
        Ok((verdict, standing, key))
    }

    /// A result of `key` validated a unit of `job` on trust (the jobs locked, so that a
    /// fault of `key` taken meanwhile finds it): kept while `key` is still trusted, set
    /// aside at once if it lost trust (a fault) since the unit went out to it.
    fn keep_on_trust(&self, job: &mut Job, key: &str) {
        if recover(&self.standings).trusted(key) {
            recover(&self.on_trust).insert(key.to_owned());
            return;
        }
        let n = job.revoke(key);
        tracing::info!(job = %job.id, volunteer = %key, units = n, "a result on trust from a volunteer that lost trust since is set aside");
        let entry = Entry::Revoked {
            key: key.to_owned(),
        };
        if let Err(e) = journal::append(&self.job_dir(&job.id), &[entry]) {
            tracing::warn!(job = %job.id, error = %e, "cannot journal results set aside");
        }
    }

    /// `key` disagreed with a quorum: every result of its that validates a unit on trust
    /// alone is set aside, in every job, and those units go out again at full quorum
    /// (journaled, so a restart keeps it).
    fn revoke(&self, key: &str) {
        if !recover(&self.on_trust).remove(key) {
            return;
        }
        let mut jobs = recover(&self.jobs);
        let mut changed = Vec::new();
        for j in jobs.values_mut() {
            let n = j.revoke(key);
            if n == 0 {
                continue;
            }
            tracing::warn!(job = %j.id, volunteer = %key, units = n, "a volunteer disagreed with a quorum: its results accepted on trust are set aside and their units go out again");
            let entry = Entry::Revoked {
                key: key.to_owned(),
            };
            if let Err(e) = journal::append(&self.job_dir(&j.id), &[entry]) {
                tracing::warn!(job = %j.id, error = %e, "cannot journal results set aside");
            }
            changed.push(j.id.clone());
        }
        drop(jobs);
        for id in changed {
            self.touch(&id);
        }
    }

    /// The owner accepts the job's results on trust as final; how many there were.
    pub fn accept_trust(&self, id: &str) -> Result<usize, Error> {
        let mut jobs = recover(&self.jobs);
        let j = jobs.get_mut(id).ok_or_else(|| Error::NoJob(id.into()))?;
        let n = j.accept_trust();
        drop(jobs);
        if n > 0 {
            tracing::info!(
                job = id,
                units = n,
                "results on trust accepted by the owner"
            );
            self.touch(id);
        }
        Ok(n)
    }

    /// Replicas past their deadline, in every job, become expired.
    pub fn expire(&self) {
        let now = now_secs();
        let mut jobs = recover(&self.jobs);
        let mut changed = Vec::new();
        for j in jobs.values_mut().filter(|j| j.state == JobState::Running) {
            if j.expire(now) > 0 {
                changed.push(j.id.clone());
            }
        }
        drop(jobs);
        for id in changed {
            self.touch(&id);
        }
    }

    pub fn job(&self, id: &str) -> Option<Job> {
        recover(&self.jobs).get(id).cloned()
    }

    /// Every job without its units (status shows counts, not every replica).
    pub fn jobs(&self) -> Vec<Summary> {
        let now = now_secs();
        recover(&self.jobs)
            .values()
            .map(|j| j.status(now))
            .collect()
    }

    pub fn status(&self, id: &str) -> Option<Summary> {
        recover(&self.jobs).get(id).map(|j| j.status(now_secs()))
    }

    /// The job's validator, if it has one.
    pub fn validator(&self, id: &str) -> Option<Blob> {
        recover(&self.jobs)
            .get(id)
            .and_then(|j| j.validator.clone())
    }

    pub fn cancel(&self, id: &str) -> Result<(), Error> {
        let mut jobs = recover(&self.jobs);
        let j = jobs.get_mut(id).ok_or_else(|| Error::NoJob(id.into()))?;
        if j.state == JobState::Running {
            j.state = JobState::Cancelled;
        }
        drop(jobs);
        self.touch(id);
        Ok(())
    }

    /// Writes each validated output to `out/<unit>` (blocking); the units written.
    pub fn results(&self, id: &str, out: &Path) -> Result<Vec<String>, Error> {
        let job = self.job(id).ok_or_else(|| Error::NoJob(id.into()))?;
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let mut written = Vec::new();
        for u in &job.units {
            let Some(h) = &u.canonical else { continue };
            let from = self.result_path(id, h);
            let to = out.join(&u.name);
            std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
            written.push(u.name.clone());
        }
        Ok(written)
    }

    /// The bytes of a stored output (blocking).
    pub fn output(&self, job: &str, hash: &str) -> Option<Vec<u8>> {
        std::fs::read(self.result_path(job, hash)).ok()
    }
}

#[cfg(test)]
mod tests;
