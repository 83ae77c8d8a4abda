//! The volunteer side: preferences (kept in `compute/volunteer.json`), what runs now, what
//! was done, results held until their master takes them (`compute/held.json`), and how
//! each master scores this node. The loop itself is in `work`.

mod work;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::protocol::{Outcome, Standing};
use crate::spec::MAX_MEMORY;

pub(crate) use work::start;

/// Results held for masters that could not be reached.
pub const MAX_HELD: usize = 256;
/// Held results older than this are dropped (seconds).
pub const HOLD_FOR: u64 = 7 * 86_400;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Prefs {
    pub on: bool,
    /// Units run at once.
    pub cpus: u8,
    /// Pause while the machine is busy with other work.
    pub when_idle: bool,
    /// Memory one unit may use, in bytes.
    pub max_memory: u64,
    /// Only this group's jobs.
    pub group: Option<String>,
}

impl Default for Prefs {
    fn default() -> Self {
        Self {
            on: false,
            cpus: 1,
            when_idle: false,
            max_memory: 512 << 20,
            group: None,
        }
    }
}

impl Prefs {
    pub fn check(&self) -> Result<(), Error> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.cpus == 0 || usize::from(self.cpus) > cores.max(64) {
            return Err(Error::Prefs(format!(
                "--cpus must be 1 to {}",
                cores.max(64)
            )));
        }
        if self.max_memory < 1 << 20 || self.max_memory > MAX_MEMORY {
            return Err(Error::Prefs(
                "--max-memory must be between 1Mi and 4Gi".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningUnit {
    pub job: String,
    pub unit: String,
    pub master: String,
    pub seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterStanding {
    pub master: String,
    #[serde(flatten)]
    pub standing: Standing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolunteerStatus {
    pub on: bool,
    pub prefs: Prefs,
    /// Why work is paused, when it is.
    pub paused: Option<String>,
    pub running: Vec<RunningUnit>,
    /// Units run to a result.
    pub completed: u64,
    /// Units that faulted in the sandbox.
    pub failed: u64,
    /// Results waiting for their master.
    pub held: usize,
    /// The lowest reputation any master gave this node, where known.
    pub reputation: Option<f64>,
    pub masters: Vec<MasterStanding>,
}

/// A result kept until its master takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub master: String,
    pub job: String,
    pub unit: String,
    pub outcome: Outcome,
    pub output: Vec<u8>,
    pub since: u64,
}

pub(crate) struct Volunteering {
    pub prefs: Prefs,
    pub paused: Option<String>,
    running: HashMap<(String, String), (String, Instant)>,
    pub completed: u64,
    pub failed: u64,
    pub held: Vec<Held>,
    standings: HashMap<String, Standing>,
    dir: PathBuf,
}

impl Volunteering {
    /// Preferences and held results from `dir` (blocking); defaults where unreadable.
    pub fn load(dir: &Path) -> Self {
        let read = |name: &str| std::fs::read(dir.join(name)).ok();
        let prefs: Prefs = read("volunteer.json")
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let held = read("held.json")
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            prefs,
            paused: None,
            running: HashMap::new(),
            completed: 0,
            failed: 0,
            held,
            standings: HashMap::new(),
            dir: dir.to_owned(),
        }
    }

    pub fn held_file(&self) -> PathBuf {
        self.dir.join("held.json")
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn begin(&mut self, job: &str, unit: &str, master: &str) -> bool {
        let k = (job.to_owned(), unit.to_owned());
        if self.running.contains_key(&k) {
            return false;
        }
        self.running.insert(k, (master.to_owned(), Instant::now()));
        true
    }

    pub fn end(&mut self, job: &str, unit: &str) {
        self.running.remove(&(job.to_owned(), unit.to_owned()));
    }

    pub fn scored(&mut self, master: &str, s: Standing) {
        if self.standings.len() < 4096 || self.standings.contains_key(master) {
            self.standings.insert(master.to_owned(), s);
        }
    }

    pub fn status(&self) -> VolunteerStatus {
        let mut running: Vec<RunningUnit> = self
            .running
            .iter()
            .map(|((job, unit), (master, t))| RunningUnit {
                job: job.clone(),
                unit: unit.clone(),
                master: master.clone(),
                seconds: t.elapsed().as_secs(),
            })
            .collect();
        running.sort_by(|a, b| (&a.job, &a.unit).cmp(&(&b.job, &b.unit)));
        let mut masters: Vec<MasterStanding> = self
            .standings
            .iter()
            .map(|(m, s)| MasterStanding {
                master: m.clone(),
                standing: *s,
            })
            .collect();
        masters.sort_by(|a, b| a.master.cmp(&b.master));
        let reputation = masters
            .iter()
            .filter(|m| m.standing.agreed + m.standing.faults > 0)
            .map(|m| m.standing.reputation)
            .reduce(f64::min);
        VolunteerStatus {
            on: self.prefs.on,
            prefs: self.prefs.clone(),
            paused: self.paused.clone(),
            running,
            completed: self.completed,
            failed: self.failed,
            held: self.held.len(),
            reputation,
            masters,
        }
    }
}
