//! What the compute service's tasks share.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kith_core::scope::Scopes;
use kith_core::sync::{recover, write_atomic};
use kith_core::tasks::Tasks;
use kith_overlay::{Overlay, PeerId};
use kith_people::People;
use kith_share::Share;
use tokio::sync::Notify;

use crate::master::Master;
use crate::protocol::JOBS_KEY;
use crate::sandbox::Sandbox;
use crate::volunteer::{Prefs, VolunteerStatus, Volunteering};
use crate::{Config, Error};

/// How often changed jobs are saved (between saves, each job's journal keeps every
/// change, so nothing is lost in between).
const SAVE_EVERY: Duration = Duration::from_secs(10);
/// How often replicas past their deadline are expired.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Inner {
    pub config: Config,
    pub overlay: Overlay,
    pub share: Share,
    pub people: People,
    pub scopes: Arc<dyn Scopes>,
    pub master: Arc<Master>,
    pub volunteering: Mutex<Volunteering>,
    /// Wakes the volunteer loop (preferences changed, a slot freed).
    pub wake: Notify,
    sandbox: OnceLock<Arc<Sandbox>>,
    /// One fetch of content at a time, so units that need the same module wait for one
    /// download instead of racing it.
    pub fetching: tokio::sync::Mutex<()>,
    /// Keys provided in the DHT now.
    provided: Mutex<Vec<Vec<u8>>>,
    pub tasks: Tasks,
}

impl Inner {
    pub async fn open(
        config: Config,
        overlay: Overlay,
        share: Share,
        people: People,
        scopes: Arc<dyn Scopes>,
        tasks: Tasks,
    ) -> Result<Arc<Self>, Error> {
        let dir = config.dir.clone();
        let (master, volunteering) = tasks
            .blocking(move || -> Result<_, Error> {
                Ok((Master::load(&dir)?, Volunteering::load(&dir)))
            })
            .await??;
        let inner = Arc::new(Self {
            config,
            overlay,
            share,
            people,
            scopes,
            master: Arc::new(master),
            volunteering: Mutex::new(volunteering),
            wake: Notify::new(),
            sandbox: OnceLock::new(),
            fetching: tokio::sync::Mutex::new(()),
            provided: Mutex::new(Vec::new()),
            tasks,
        });
        let i = inner.clone();
        inner.tasks.spawn(async move {
            let mut saved = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = i.tasks.shutdown().cancelled() => break,
                    () = tokio::time::sleep(EXPIRE_EVERY) => {}
                }
                i.master.expire();
                if saved.elapsed() >= SAVE_EVERY {
                    saved = tokio::time::Instant::now();
                    i.save().await;
                }
            }
        });
        Ok(inner)
    }

    /// The sandbox, made on first use (the engine and its clock thread).
    pub fn sandbox(&self) -> Result<Arc<Sandbox>, Error> {
        if let Some(s) = self.sandbox.get() {
            return Ok(s.clone());
        }
        let s = Arc::new(Sandbox::new()?);
        Ok(self.sandbox.get_or_init(|| s).clone())
    }

    /// Saves what changed.
    pub async fn save(&self) {
        let m = self.master.clone();
        let r = tokio::task::spawn_blocking(move || m.flush()).await;
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "cannot save the compute jobs");
        }
    }

    /// The key a peer's results count under: its person where known, else the peer.
    pub fn key_of(&self, peer: &PeerId) -> String {
        self.people
            .person_of(peer)
            .map_or_else(|| peer.to_string(), |p| p.to_string())
    }

    /// Provides the DHT keys of the open jobs (public, and each group's locator), and
    /// stops providing those with no open job.
    pub async fn announce(&self) {
        let (public, groups) = self.master.open_scopes();
        let mut want: Vec<Vec<u8>> = groups
            .iter()
            .filter_map(|g| self.scopes.locator(g, JOBS_KEY))
            .collect();
        if public {
            want.push(JOBS_KEY.to_vec());
        }
        let had = std::mem::replace(&mut *recover(&self.provided), want.clone());
        for k in had.iter().filter(|k| !want.contains(k)) {
            let _ = self.overlay.stop_providing(k.clone()).await;
        }
        for k in want.into_iter().filter(|k| !had.contains(k)) {
            if let Err(e) = self.overlay.start_providing(k).await {
                tracing::warn!(error = %e, "cannot announce open jobs");
            }
        }
    }

    pub fn prefs(&self) -> Prefs {
        recover(&self.volunteering).prefs.clone()
    }

    pub async fn set_prefs(&self, prefs: Prefs) -> Result<(), Error> {
        prefs.check()?;
        let file = self.config.dir.join("volunteer.json");
        let bytes = serde_json::to_vec_pretty(&prefs).map_err(|e| Error::Io(e.to_string()))?;
        self.tasks
            .blocking(move || write_atomic(&file, &bytes).map_err(|e| Error::io(&file, e)))
            .await??;
        recover(&self.volunteering).prefs = prefs;
        self.wake.notify_one();
        Ok(())
    }

    pub fn volunteer_status(&self) -> VolunteerStatus {
        recover(&self.volunteering).status()
    }
}
