//! What the groups service's tasks share: the groups this device is in, and how this
//! device adds operations to their logs.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kith_core::person::DeviceCert;
use kith_core::seal::SealKey;
use kith_core::store::now_secs;
use kith_core::tasks::Tasks;
use kith_overlay::{Keypair, Overlay, PeerId};
use kith_people::People;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::broadcast;

use crate::keys;
use crate::log::{Group, Intake, Rejected};
use crate::op::{Body, KeyUpdate, Op};
use crate::{Error, Event};

/// Peers whose last sync time is remembered (to rate-limit syncs they trigger).
const MAX_SYNC_TIMES: usize = 4096;

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub overlay: Overlay,
    pub people: People,
    pub device: Keypair,
    pub seal: SealKey,
    /// This device's ID.
    pub me: String,
    groups: Mutex<BTreeMap<String, Group>>,
    /// Groups this device left lately, kept a while so members can still take its
    /// leaving from it.
    pub parting: Mutex<HashMap<String, (Group, Instant)>>,
    /// Per group and peer: when the next sync may start, and whether one waits for it.
    pub synced: Mutex<HashMap<(String, PeerId), (Instant, bool)>>,
    pub events: broadcast::Sender<Event>,
    pub refused: Counter,
    pub tasks: Tasks,
}

impl Inner {
    pub fn new(
        dir: PathBuf,
        overlay: Overlay,
        people: People,
        device: Keypair,
        groups: BTreeMap<String, Group>,
        registry: &mut prometheus_client::registry::Registry,
        tasks: Tasks,
    ) -> Result<Arc<Self>, Error> {
        let refused = Counter::default();
        registry.register(
            "kith_groups_refused",
            "Group operations, announcements, invites and requests refused",
            refused.clone(),
        );
        Ok(Arc::new(Self {
            dir,
            me: overlay.peer_id().to_string(),
            overlay,
            people,
            seal: SealKey::of_device(&device)?,
            device,
            groups: Mutex::new(groups),
            synced: Mutex::default(),
            parting: Mutex::default(),
            events: broadcast::channel(256).0,
            refused,
            tasks,
        }))
    }

    pub fn groups(&self) -> Result<MutexGuard<'_, BTreeMap<String, Group>>, Error> {
        Ok(kith_core::sync::lock(&self.groups)?)
    }

    /// A group this device is in, by ID or name.
    pub fn resolve(&self, name: &str) -> Result<String, Error> {
        let groups = self.groups()?;
        if groups.contains_key(name) {
            return Ok(name.to_owned());
        }
        let named: Vec<&String> = groups
            .iter()
            .filter(|(_, g)| g.state.name == name)
            .map(|(id, _)| id)
            .collect();
        match named.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NoSuchGroup(name.to_owned())),
            _ => Err(Error::Ambiguous(name.to_owned())),
        }
    }

    pub fn refuse(&self, what: &str, why: &str) {
        self.refused.inc();
        tracing::warn!(what, reason = why, "refused");
    }

    /// Logs what an intake refused.
    pub fn report(&self, group: &str, intake: &Intake) {
        for r in &intake.refused {
            self.refuse("group operation", &format!("{group}: {r}"));
        }
    }

    /// Every current device of the group's members (certificates).
    pub fn member_certs(g: &Group) -> Vec<DeviceCert> {
        g.state
            .members
            .values()
            .flat_map(|m| m.devices.values().cloned())
            .collect()
    }

    /// Signs an operation of this device on top of the group's heads.
    pub fn sign(&self, g: &Group, body: Body, key: Option<KeyUpdate>) -> Result<Op, Error> {
        let cert = self.people.cert()?;
        Ok(Op::sign(
            &self.device,
            cert,
            g.id.clone(),
            g.heads(),
            body,
            key,
            now_secs(),
        )?)
    }

    /// Adds an operation of this device to a group; refused (with the fold's reason)
    /// when the log would skip it.
    pub fn append(&self, g: &mut Group, op: Op) -> Result<(), Error> {
        let h = op.hash();
        let intake = g.take(vec![op], &self.me, &self.seal);
        if intake.added == 0 {
            let first = intake.refused.into_iter().next();
            return Err(first.unwrap_or(Rejected::NotTaken(h)).into());
        }
        if let Some((_, why)) = g.state.skipped.iter().find(|(s, _)| *s == h) {
            return Err(why.clone().into());
        }
        Ok(())
    }

    /// A new epoch key for the group's current devices (after `body` is applied, as the
    /// caller computes them).
    pub fn new_epoch(g: &Group, devices: &[DeviceCert]) -> KeyUpdate {
        let refs: Vec<&DeviceCert> = devices.iter().collect();
        keys::new_epoch(&g.id, &refs).0
    }

    /// Saves a group (blocking), announces its new heads to the members (this device
    /// wrote to its log) and tells this node's services what changed.
    pub async fn changed(self: &Arc<Self>, id: &str, key_changed: bool) {
        self.changed_as(id, key_changed, true).await;
    }

    /// Like [`Inner::changed`], for operations taken from other members: not announced
    /// again (their author did; repeating it from every member would cost each change
    /// a message per member to every member).
    pub async fn took(self: &Arc<Self>, id: &str, key_changed: bool) {
        self.changed_as(id, key_changed, false).await;
    }

    async fn changed_as(self: &Arc<Self>, id: &str, key_changed: bool, announce: bool) {
        let (dir, snapshot) = match self.groups() {
            Ok(g) => (self.dir.clone(), g.get(id).cloned()),
            Err(_) => return,
        };
        if let Some(g) = snapshot {
            let news = announce.then(|| (g.topic(), g.announcement()));
            match self.tasks.blocking(move || g.save(&dir)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(group = %id, error = %e, "cannot save the group log"),
                Err(_) => return,
            }
            if let Some((topic, data)) = news {
                let _ = self.overlay.publish(topic, data).await;
            }
        }
        let _ = self.events.send(Event::Changed {
            group: id.to_owned(),
        });
        if key_changed {
            let _ = self.events.send(Event::KeyChanged {
                group: id.to_owned(),
            });
        }
    }

    /// When a sync of `group` with `peer` may start: now, after a wait (syncs with one
    /// peer are at least `gap` apart; one that comes too soon is put off, not dropped),
    /// or `None` when one is put off already.
    pub fn sync_slot(&self, group: &str, peer: PeerId, gap: Duration) -> Option<Duration> {
        let mut m = kith_core::sync::recover(&self.synced);
        let now = Instant::now();
        if m.len() >= MAX_SYNC_TIMES {
            m.retain(|_, (next, waiting)| *waiting || *next > now);
        }
        let slot = m.entry((group.to_owned(), peer)).or_insert((now, false));
        if now >= slot.0 {
            *slot = (now + gap, false);
            return Some(Duration::ZERO);
        }
        if slot.1 {
            return None;
        }
        let wait = slot.0 - now;
        *slot = (slot.0 + gap, true);
        Some(wait)
    }

    /// A sync that was put off starts now: later news gets a slot of its own.
    pub fn sync_starts(&self, group: &str, peer: PeerId) {
        if let Some(slot) =
            kith_core::sync::recover(&self.synced).get_mut(&(group.to_owned(), peer))
        {
            slot.1 = false;
        }
    }
}
