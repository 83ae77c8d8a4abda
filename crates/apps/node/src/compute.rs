//! The facade over cycle sharing: what `kith job` and `kith volunteer` do.

use std::path::PathBuf;

use kith_api as api;
use kith_compute::spec::JobSpec;
use kith_compute::{JobStatus, Prefs};

use crate::{Node, NodeError};

fn job(s: JobStatus) -> api::Job {
    api::Job {
        job: s.job,
        name: s.name,
        state: s.state,
        quorum: s.quorum,
        trust: s.trust,
        group: s.group,
        created: s.created,
        units: s.counts.units,
        done: s.counts.done,
        validated: s.counts.validated,
        on_trust: s.counts.on_trust,
        on_trust_units: s.on_trust_units,
        running: s.counts.running,
        failed: s.counts.failed,
    }
}

fn volunteer(s: kith_compute::VolunteerStatus) -> api::VolunteerStatus {
    api::VolunteerStatus {
        on: s.on,
        cpus: s.prefs.cpus,
        when_idle: s.prefs.when_idle,
        max_memory: s.prefs.max_memory,
        group: s.prefs.group,
        paused: s.paused,
        running: s
            .running
            .into_iter()
            .map(|r| api::RunningUnit {
                job: r.job,
                unit: r.unit,
                master: r.master,
                seconds: r.seconds,
            })
            .collect(),
        completed: s.completed,
        failed: s.failed,
        held: s.held as u64,
        reputation: s.reputation,
        masters: s
            .masters
            .into_iter()
            .map(|m| api::MasterStanding {
                master: m.master,
                agreed: m.standing.agreed,
                faults: m.standing.faults,
                reputation: m.standing.reputation,
                dropped: m.standing.dropped,
            })
            .collect(),
    }
}

impl Node {
    /// Submits a job from a `JOB.toml` or from its module and inputs folder.
    pub async fn submit_job(&self, req: &api::SubmitJob) -> Result<api::Job, NodeError> {
        let group = self.group_id(req.group.as_deref())?;
        let (spec, req2) = (req.spec.clone(), req.clone());
        let mut spec =
            tokio::task::spawn_blocking(move || match (spec, &req2.wasm, &req2.inputs) {
                (Some(file), None, None) => JobSpec::load(&PathBuf::from(file)),
                (None, Some(wasm), Some(inputs)) => JobSpec::from_module(
                    req2.name.clone(),
                    PathBuf::from(wasm),
                    &PathBuf::from(inputs),
                    req2.quorum,
                ),
                _ => Err(kith_compute::spec::SpecError::Invalid(
                    "give a JOB.toml, or a module (--wasm) and an inputs folder (--inputs)".into(),
                )),
            })
            .await
            .map_err(|e| NodeError::BadRequest(e.to_string()))?
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        if let Some(q) = req.quorum {
            spec.quorum = q;
        }
        if let Some(t) = req.trust {
            spec.trust = t;
        }
        if group.is_some() {
            spec.group = group;
        } else if let Some(g) = spec.group.take() {
            spec.group = self.group_id(Some(&g))?;
        }
        Ok(job(self.inner.compute.submit(spec).await?))
    }

    pub fn jobs(&self) -> Vec<api::Job> {
        self.inner.compute.jobs().into_iter().map(job).collect()
    }

    pub fn job(&self, id: &str) -> Result<api::Job, NodeError> {
        Ok(job(self.inner.compute.job(id.trim())?))
    }

    pub async fn job_results(&self, id: &str, dir: &str) -> Result<api::ResultsWritten, NodeError> {
        let status = self.inner.compute.job(id.trim())?;
        let units = self
            .inner
            .compute
            .results(id.trim(), PathBuf::from(dir))
            .await?;
        Ok(api::ResultsWritten {
            dir: dir.to_owned(),
            missing: status.counts.units - units.len() as u64,
            units,
        })
    }

    pub async fn cancel_job(&self, id: &str) -> Result<api::Job, NodeError> {
        Ok(job(self.inner.compute.cancel(id.trim()).await?))
    }

    /// Accepts the job's results on trust as final.
    pub async fn accept_trust(&self, id: &str) -> Result<api::Job, NodeError> {
        Ok(job(self.inner.compute.accept_trust(id.trim()).await?))
    }

    pub async fn volunteer_on(
        &self,
        req: &api::VolunteerRequest,
    ) -> Result<api::VolunteerStatus, NodeError> {
        let prefs = Prefs {
            on: true,
            cpus: req.cpus,
            when_idle: req.when_idle,
            max_memory: req.max_memory.unwrap_or(Prefs::default().max_memory),
            group: self.group_id(req.group.as_deref())?,
        };
        Ok(volunteer(self.inner.compute.volunteer(prefs).await?))
    }

    pub async fn volunteer_off(&self) -> Result<api::VolunteerStatus, NodeError> {
        Ok(volunteer(self.inner.compute.volunteer_off().await?))
    }

    pub fn volunteer_status(&self) -> api::VolunteerStatus {
        volunteer(self.inner.compute.volunteer_status())
    }
}
