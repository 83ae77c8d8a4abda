//! kith compute service: cycle sharing. A node submits a job (a WebAssembly module and
//! its work units); volunteers pull units, run them sandboxed and return results; the
//! master accepts a result once a quorum of distinct volunteers agrees on it.
//!
//! - [`Compute`]: the handle: submit, status, results, cancel; volunteer on, off, status.
//! - [`Config`], [`Error`].
//! - [`spec`]: `JOB.toml`, checked. [`sandbox`]: wasmtime with fuel, a time guard,
//!   memory and output caps, stdin and stdout only, deterministic settings.
//! - [`protocol`]: `/kith/compute/1.0.0`. [`master`]: jobs, validation, standing.
//! - `server`: the master answering volunteers. `volunteer`: discovering masters,
//!   pulling units, running them, returning (and holding) results.

pub mod master;
pub mod protocol;
pub mod sandbox;
mod server;
pub mod spec;
mod state;
mod volunteer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kith_core::scope::Scopes;
use kith_core::tasks::{TaskError, Tasks};
use kith_overlay::{Overlay, OverlayError};
use kith_people::People;
use kith_share::Share;
use serde::{Deserialize, Serialize};

pub use master::job::JobState;
use master::job::{Counts, Summary};
use protocol::INLINE_MAX;
use spec::JobSpec;
use state::Inner;
pub use volunteer::{Prefs, RunningUnit, VolunteerStatus};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error("{0}")]
    Io(String),
    #[error("no job {0} on this node")]
    NoJob(String),
    #[error("this node keeps at most {0} jobs; remove finished ones first")]
    TooManyJobs(usize),
    #[error("not a member of group {0}")]
    NotMember(String),
    #[error("{0}")]
    Prefs(String),
    #[error(transparent)]
    Sandbox(#[from] sandbox::Fault),
    #[error(transparent)]
    Share(#[from] kith_share::Error),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error(transparent)]
    Frame(#[from] kith_core::frame::FrameError),
    #[error(transparent)]
    Task(#[from] TaskError),
}

impl Error {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        Self::Io(format!("{}: {e}", path.display()))
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the service keeps jobs, results and preferences.
    pub dir: PathBuf,
    /// Test hook: this volunteer corrupts every result it returns.
    #[doc(hidden)]
    pub cheat: bool,
}

impl Config {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, cheat: false }
    }
}

/// A job as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub job: String,
    pub name: String,
    pub state: JobState,
    pub quorum: u8,
    /// Whether units may go to a trusted volunteer alone.
    pub trust: bool,
    pub group: Option<String>,
    pub created: u64,
    #[serde(flatten)]
    pub counts: Counts,
    /// Units validated on trust (`counts.on_trust`), the first
    /// [`master::job::LISTED`] by name.
    pub on_trust_units: Vec<String>,
}

impl JobStatus {
    fn of(s: Summary) -> Self {
        let job = s.job;
        Self {
            job: job.id,
            name: job.name,
            state: job.state,
            quorum: job.quorum,
            trust: job.trust,
            group: job.group,
            created: job.created,
            counts: s.counts,
            on_trust_units: s.on_trust,
        }
    }
}

#[derive(Clone)]
pub struct Compute {
    inner: Arc<Inner>,
}

impl Compute {
    /// Loads the jobs and preferences, serves volunteers, and volunteers if it was on.
    pub async fn start(
        config: Config,
        overlay: Overlay,
        share: Share,
        people: People,
        scopes: Arc<dyn Scopes>,
        tasks: Tasks,
    ) -> Result<Self, Error> {
        let inner = Inner::open(config, overlay, share, people, scopes, tasks).await?;
        server::start(&inner)?;
        volunteer::start(&inner);
        inner.announce().await;
        Ok(Self { inner })
    }

    /// Submits a job: its files are copied in, its module and large inputs shared, and
    /// it is announced to volunteers.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobStatus, Error> {
        if let Some(g) = &spec.group
            && !self.inner.scopes.belongs(g)
        {
            return Err(Error::NotMember(g.clone()));
        }
        // A module this sandbox would refuse is refused now, with the reason.
        let sandbox = self.inner.sandbox()?;
        let modules: Vec<PathBuf> = std::iter::once(spec.wasm.clone())
            .chain(spec.validator.clone())
            .collect();
        self.inner
            .tasks
            .blocking(move || -> Result<(), Error> {
                for m in modules {
                    let bytes = std::fs::read(&m).map_err(|e| Error::io(&m, e))?;
                    sandbox.prepare(&bytes, true)?;
                }
                Ok(())
            })
            .await??;
        let master = self.inner.master.clone();
        let mut job = self
            .inner
            .tasks
            .blocking(move || master.create(&spec))
            .await??;
        for (unit, path) in self.inner.master.content_files(&job) {
            let rec = self
                .inner
                .share
                .share(path, job.group.clone().into())
                .await?;
            let content = Some(rec.id.to_string());
            match job.units.iter_mut().find(|u| u.name == unit) {
                Some(u) if u.input.size > INLINE_MAX => u.input.content = content,
                _ => job.module.content = content,
            }
        }
        let status = JobStatus::of(job.status(0));
        let master = self.inner.master.clone();
        self.inner.tasks.blocking(move || master.add(job)).await??;
        self.inner.announce().await;
        tracing::info!(job = %status.job, name = %status.name, units = status.counts.units, "job submitted");
        Ok(status)
    }

    pub fn jobs(&self) -> Vec<JobStatus> {
        self.inner
            .master
            .jobs()
            .into_iter()
            .map(JobStatus::of)
            .collect()
    }

    pub fn job(&self, id: &str) -> Result<JobStatus, Error> {
        let s = self
            .inner
            .master
            .status(id)
            .ok_or_else(|| Error::NoJob(id.into()))?;
        Ok(JobStatus::of(s))
    }

    /// The owner accepts the job's results on trust as they are: they are no longer
    /// reported as on trust, and a later fault of their volunteer no longer sends their
    /// units out again.
    pub async fn accept_trust(&self, id: &str) -> Result<JobStatus, Error> {
        self.inner.master.accept_trust(id)?;
        self.inner.save().await;
        self.job(id)
    }

    /// Writes the validated outputs, one file per unit named after its input.
    pub async fn results(&self, id: &str, out: PathBuf) -> Result<Vec<String>, Error> {
        let (master, id) = (self.inner.master.clone(), id.to_owned());
        self.inner
            .tasks
            .blocking(move || master.results(&id, &out))
            .await?
    }

    pub async fn cancel(&self, id: &str) -> Result<JobStatus, Error> {
        self.inner.master.cancel(id)?;
        self.inner.save().await;
        self.inner.announce().await;
        self.job(id)
    }

    /// Turns volunteering on with these preferences (kept across restarts).
    pub async fn volunteer(&self, prefs: Prefs) -> Result<VolunteerStatus, Error> {
        if let Some(g) = &prefs.group
            && !self.inner.scopes.belongs(g)
        {
            return Err(Error::NotMember(g.clone()));
        }
        self.inner.set_prefs(prefs).await?;
        Ok(self.volunteer_status())
    }

    /// Turns volunteering off; units running now finish and are returned.
    pub async fn volunteer_off(&self) -> Result<VolunteerStatus, Error> {
        let mut p = self.inner.prefs();
        p.on = false;
        self.inner.set_prefs(p).await?;
        Ok(self.volunteer_status())
    }

    pub fn volunteer_status(&self) -> VolunteerStatus {
        self.inner.volunteer_status()
    }

    pub async fn stopped(&self) {
        self.inner.tasks.stopped().await;
        self.inner.save().await;
    }
}
