//! kith groups service: private groups of people ("virtual private webs").
//!
//! - [`Groups`]: the handle: create, invite, join, list, members, remove, leave; and the
//!   [`kith_core::scope::Scopes`] the share and search services ask about group content.
//! - [`Config`], [`Error`], [`Event`], [`Summary`], [`MemberInfo`].
//! - [`op`]: the signed operations of a group's log; [`state`]: the fold every member
//!   computes the same way; [`invite`]: invite tokens; [`keys`]: group keys per epoch.
//! - [`protocol`]: `/kith/group/1.0.0` and the gossip announcements; `server`, `client`:
//!   its two sides; `log`: one group's log on disk; `inner`: the shared state.
//!
//! Membership is a log of operations signed by the devices of members (admins for
//! adding, removing and promoting), linked by hash, replicated by gossip and by a sync
//! when two members connect. Every removal of a member or device starts a new group key
//! sealed to the remaining devices only (HPKE), so what is sealed afterwards is out of
//! the removed one's reach.

mod access;
mod client;
mod denied;
mod error;
mod inner;
pub mod invite;
pub mod keys;
mod log;
pub mod op;
pub mod protocol;
mod server;
pub mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kith_core::person::PersonId;
use kith_core::scope::Scopes;
use kith_core::store::now_secs;
use kith_core::tasks::Tasks;
use kith_overlay::{Keypair, Overlay};
use kith_people::People;
use serde::Serialize;
use tokio::sync::broadcast;

pub use denied::Denied;
pub use error::{Error, MAX_GROUPS};
use inner::Inner;
pub use invite::Invite;
pub use log::Rejected;
use op::Body;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the groups' logs live.
    pub dir: PathBuf,
}

/// Something that happened to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Its log changed (members, devices, admins).
    Changed { group: String },
    /// Its key changed: group content is announced under new locators.
    KeyChanged { group: String },
    /// This device is no longer in it (left, removed, revoked).
    Left { group: String },
}

/// A group, as `kith group ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub group: String,
    pub name: String,
    pub members: usize,
    /// Whether this device's person is an admin.
    pub admin: bool,
}

/// A member, as `kith group members` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberInfo {
    pub person: PersonId,
    pub devices: Vec<String>,
    pub admin: bool,
    /// Whether one of its devices is connected to this one (or is this one).
    pub online: bool,
}

/// The groups service handle. Cheap to clone.
#[derive(Clone)]
pub struct Groups {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups").finish_non_exhaustive()
    }
}

fn summary(g: &log::Group, me: &Option<PersonId>) -> Summary {
    Summary {
        group: g.id.clone(),
        name: g.state.name.clone(),
        members: g.state.members.len(),
        admin: me.is_some_and(|p| g.state.is_admin(&p)),
    }
}

impl Groups {
    /// Loads the groups' logs, serves `/kith/group/1.0.0`, follows their topics, and
    /// applies this person's device changes to every group it is in.
    pub async fn start(
        config: Config,
        overlay: Overlay,
        people: People,
        device: Keypair,
        registry: &mut prometheus_client::registry::Registry,
        tasks: Tasks,
    ) -> Result<Self, Error> {
        let me = overlay.peer_id().to_string();
        let (dir, d) = (config.dir.clone(), device.clone());
        let groups = tasks.blocking(move || load_all(&dir, &me, &d)).await??;
        let inner = Inner::new(config.dir, overlay, people, device, groups, registry, tasks)?;
        server::start(&inner)?;
        client::start(&inner).await?;
        Ok(Self { inner })
    }

    /// What the share and search services ask about group content.
    pub fn scopes(&self) -> Arc<dyn Scopes> {
        Arc::new(access::Access::new(self.inner.clone()))
    }

    /// A group by name or ID.
    pub fn resolve(&self, group: &str) -> Result<String, Error> {
        self.inner.resolve(group)
    }

    /// Creates a group; this device's person is its first admin. With `history`, people
    /// who join can read what was sealed before they joined.
    pub async fn create(&self, name: &str, history: bool) -> Result<Summary, Error> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > op::MAX_NAME {
            return Err(Error::BadName);
        }
        let i = &self.inner;
        let cert = i.people.cert()?;
        let devices = i.people.devices()?;
        let body = Body::Create {
            name: name.to_owned(),
            devices: devices.clone(),
            history,
        };
        let genesis = op::Op::sign(
            &i.device,
            cert,
            String::new(),
            Vec::new(),
            body,
            None,
            now_secs(),
        )?;
        // The first key comes right after the genesis: it is sealed under the group's ID,
        // which is the genesis' hash.
        let mut g = log::Group::new(genesis, &i.me, &i.seal);
        let (id, topic) = (g.id.clone(), g.topic());
        let update = Inner::new_epoch(&g, &devices);
        let rotate = i.sign(&g, Body::Rotate, Some(update))?;
        i.append(&mut g, rotate)?;
        let s = summary(&g, &i.people.person().ok());
        {
            let mut groups = i.groups()?;
            if groups.len() >= MAX_GROUPS {
                return Err(Error::TooManyGroups);
            }
            groups.insert(id.clone(), g);
        }
        self.inner.overlay.subscribe(topic).await?;
        self.inner.changed(&id, true).await;
        client::notify_devices(&self.inner);
        tracing::info!(group = %id, name, "group created");
        Ok(s)
    }

    /// A signed invite token (this device's person must be an admin).
    pub async fn invite(
        &self,
        group: &str,
        valid: Duration,
        uses: u32,
        admin: bool,
    ) -> Result<Invite, Error> {
        let id = self.resolve(group)?;
        let me = self.inner.people.person()?;
        let name = {
            let groups = self.inner.groups()?;
            let g = groups
                .get(&id)
                .ok_or_else(|| Error::NoSuchGroup(id.clone()))?;
            g.state.need_admin(&me)?;
            g.state.name.clone()
        };
        let addrs: Vec<String> = self
            .inner
            .overlay
            .listen_addrs()
            .await?
            .into_iter()
            .filter(|a| !a.to_string().contains("/0.0.0.0/"))
            .map(|a| format!("{a}/p2p/{}", self.inner.me))
            .collect();
        let expires = now_secs().saturating_add(valid.as_secs());
        Ok(Invite::sign(
            &self.inner.device,
            self.inner.people.cert()?,
            &id,
            &name,
            expires,
            uses.max(1),
            admin,
            addrs,
        )?)
    }

    /// Joins the group of an invite token, through the device that signed it.
    pub async fn join(&self, token: &str) -> Result<Summary, Error> {
        let id = client::join(&self.inner, token).await?;
        client::notify_devices(&self.inner);
        let groups = self.inner.groups()?;
        let g = groups
            .get(&id)
            .ok_or_else(|| Error::NoSuchGroup(id.clone()))?;
        Ok(summary(g, &self.inner.people.person().ok()))
    }

    /// The groups this device is in.
    pub fn list(&self) -> Result<Vec<Summary>, Error> {
        let me = self.inner.people.person().ok();
        Ok(self
            .inner
            .groups()?
            .values()
            .map(|g| summary(g, &me))
            .collect())
    }

    /// A group's members, their devices, who is an admin and who is online.
    pub fn members(&self, group: &str) -> Result<Vec<MemberInfo>, Error> {
        let id = self.resolve(group)?;
        let online: std::collections::HashSet<PersonId> = self
            .inner
            .people
            .identified()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let me = self.inner.people.person().ok();
        let groups = self.inner.groups()?;
        let g = groups
            .get(&id)
            .ok_or_else(|| Error::NoSuchGroup(id.clone()))?;
        Ok(g.state
            .members
            .iter()
            .map(|(p, m)| MemberInfo {
                person: *p,
                devices: m.devices.keys().cloned().collect(),
                admin: m.admin,
                online: online.contains(p) || me == Some(*p),
            })
            .collect())
    }

    /// Removes a person from a group (an admin only); the group key changes.
    pub async fn remove(&self, group: &str, person: &str) -> Result<Summary, Error> {
        let id = self.resolve(group)?;
        let person: PersonId = person.parse().map_err(Error::BadPerson)?;
        let s = {
            let mut groups = self.inner.groups()?;
            let g = groups
                .get_mut(&id)
                .ok_or_else(|| Error::NoSuchGroup(id.clone()))?;
            g.state.need_admin(&self.inner.people.person()?)?;
            if !g.state.members.contains_key(&person) {
                return Err(Error::NotInGroup {
                    person,
                    group: g.state.name.clone(),
                });
            }
            let rest: Vec<_> = g
                .state
                .members
                .iter()
                .filter(|(p, _)| **p != person)
                .flat_map(|(_, m)| m.devices.values().cloned())
                .collect();
            let key = Inner::new_epoch(g, &rest);
            let op = self.inner.sign(g, Body::Remove { person }, Some(key))?;
            self.inner.append(g, op)?;
            summary(g, &self.inner.people.person().ok())
        };
        self.inner.changed(&id, true).await;
        tracing::info!(group = %id, %person, "member removed; the group key changed");
        Ok(s)
    }

    /// Leaves a group.
    pub async fn leave(&self, group: &str) -> Result<(), Error> {
        let id = self.resolve(group)?;
        {
            let mut groups = self.inner.groups()?;
            let g = groups
                .get_mut(&id)
                .ok_or_else(|| Error::NoSuchGroup(id.clone()))?;
            let op = self.inner.sign(g, Body::Leave, None)?;
            self.inner.append(g, op)?;
        }
        self.inner.changed(&id, false).await;
        // The leave goes to the members online directly too, while this device is still
        // subscribed: one lost announcement must not leave them waiting for
        // anti-entropy.
        client::tell_members(&self.inner, &id).await;
        client::forget(&self.inner, &id, true).await;
        Ok(())
    }

    /// Whether this device's person has no group (a device can be linked to another
    /// person only then).
    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.inner.groups()?.is_empty())
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Waits for the service's tasks after shutdown was signalled.
    pub async fn stopped(&self) {
        self.inner.tasks.stopped().await;
    }
}

/// Loads every group log in `dir` (blocking).
fn load_all(
    dir: &std::path::Path,
    me: &str,
    device: &Keypair,
) -> Result<BTreeMap<String, log::Group>, Error> {
    let io = |source| Error::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let seal = kith_core::seal::SealKey::of_device(device)?;
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)?.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match log::Group::load(&path, me, &seal) {
            Ok(g) if g.state.member_of(me).is_some() => {
                out.insert(g.id.clone(), g);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a group log; skipped")
            }
        }
    }
    Ok(out)
}
