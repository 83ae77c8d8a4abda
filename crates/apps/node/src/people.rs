//! The facade over people, devices and groups: what `kith person`, `kith device` and
//! `kith group` do, and the glue between groups and share (group content is announced
//! again under new locators when a group's key changes).

use std::time::Duration;

use kith_api as api;
use kith_core::tasks::Tasks;
use kith_groups::Groups;
use kith_share::Share;
use tokio::sync::broadcast::error::RecvError;

use crate::{Node, NodeError};

/// Default life of an invite.
const INVITE_DEFAULT: Duration = Duration::from_secs(24 * 3600);
/// Longest life of an invite.
const INVITE_MAX: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most uses of one invite.
const INVITE_MAX_USES: u32 = 1000;

/// Re-announces group content whenever a group's key changes or this device leaves a
/// group (its content is then announced nowhere).
pub(crate) fn announce_on_key_change(groups: &Groups, share: &Share, tasks: Tasks) {
    let mut events = groups.events();
    let share = share.clone();
    let stop = tasks.shutdown().clone();
    tasks.spawn(async move {
        loop {
            let ev = tokio::select! {
                () = stop.cancelled() => return,
                ev = events.recv() => ev,
            };
            match ev {
                Ok(kith_groups::Event::KeyChanged { .. } | kith_groups::Event::Left { .. })
                | Err(RecvError::Lagged(_)) => share.announce_all().await,
                Ok(_) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
}

fn summary(s: kith_groups::Summary) -> api::Group {
    api::Group {
        group: s.group,
        name: s.name,
        members: s.members,
        admin: s.admin,
    }
}

fn person(me: kith_people::Me) -> api::Person {
    api::Person {
        person: me.person.to_string(),
        devices: me
            .devices
            .into_iter()
            .map(|d| api::Device {
                device: d.device,
                issued: d.issued,
                this: d.this,
                revoked: d.revoked,
            })
            .collect(),
        holds_person_key: me.holds_person_key,
    }
}

impl Node {
    /// This device's person and devices.
    pub fn person(&self) -> Result<api::Person, NodeError> {
        Ok(person(self.inner.people.me()?))
    }

    /// A one-time code that links another device to this person.
    pub async fn link_device(&self) -> Result<api::LinkCode, NodeError> {
        let code = self.inner.people.link().await?;
        Ok(api::LinkCode {
            code: code.to_string(),
            expires_in: kith_people::LINK_TTL.as_secs(),
        })
    }

    /// Makes this device a device of the person whose device gave `code`. Refused when
    /// this device's person is in a group already (it would leave them behind).
    pub async fn join_device(&self, code: &str) -> Result<api::Person, NodeError> {
        if !self.inner.groups.is_empty()? {
            return Err(NodeError::BadRequest(
                "this device's person is in groups already; link a device that is new to kith"
                    .into(),
            ));
        }
        Ok(person(self.inner.people.join(code.trim()).await?))
    }

    /// Revokes one of this person's devices; every group the person is in applies it.
    pub async fn remove_device(&self, device: &str) -> Result<api::DeviceRemoved, NodeError> {
        let r = self.inner.people.remove_device(device.trim()).await?;
        self.revoked_in_groups(&r.device).await;
        Ok(api::DeviceRemoved {
            person: r.person.to_string(),
            device: r.device,
        })
    }

    /// Waits (at most 5 s) until every group this device is in has applied the
    /// revocation of `device` (the groups service signs it as the people service tells
    /// it), so that a node stopped right after `kith device remove` does not lose it.
    async fn revoked_in_groups(&self, device: &str) {
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut changes = self.inner.groups.events();
        loop {
            let pending = self
                .inner
                .groups
                .list()
                .unwrap_or_default()
                .iter()
                .any(|g| {
                    self.inner
                        .groups
                        .members(&g.group)
                        .unwrap_or_default()
                        .iter()
                        .any(|m| m.devices.iter().any(|d| d == device))
                });
            if !pending {
                return;
            }
            match tokio::time::timeout_at(until, changes.recv()).await {
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => return,
                Err(_) => {
                    tracing::warn!(%device, "not every group applied the revocation yet");
                    return;
                }
            }
        }
    }

    /// The groups this device is in.
    pub fn groups(&self) -> Result<Vec<api::Group>, NodeError> {
        Ok(self.inner.groups.list()?.into_iter().map(summary).collect())
    }

    pub async fn create_group(&self, req: &api::CreateGroup) -> Result<api::Group, NodeError> {
        Ok(summary(
            self.inner.groups.create(&req.name, req.history).await?,
        ))
    }

    /// A signed invite token for `group` (an ID or a name).
    pub async fn invite(
        &self,
        group: &str,
        req: &api::InviteRequest,
    ) -> Result<api::Invite, NodeError> {
        let valid = req
            .expires_in
            .map_or(INVITE_DEFAULT, Duration::from_secs)
            .min(INVITE_MAX);
        if valid.is_zero() {
            return Err(NodeError::BadRequest(
                "an invite must be valid for 1 s or more".into(),
            ));
        }
        let uses = req.uses.unwrap_or(1);
        if !(1..=INVITE_MAX_USES).contains(&uses) {
            return Err(NodeError::BadRequest(format!(
                "an invite has 1 to {INVITE_MAX_USES} uses"
            )));
        }
        let inv = self
            .inner
            .groups
            .invite(group, valid, uses, req.admin)
            .await?;
        Ok(api::Invite {
            token: inv.token(),
            group: inv.group,
            name: inv.name,
            expires: inv.expires,
            uses: inv.uses,
            admin: inv.admin,
        })
    }

    pub async fn join_group(&self, token: &str) -> Result<api::Group, NodeError> {
        Ok(summary(self.inner.groups.join(token.trim()).await?))
    }

    pub fn members(&self, group: &str) -> Result<Vec<api::Member>, NodeError> {
        Ok(self
            .inner
            .groups
            .members(group)?
            .into_iter()
            .map(|m| api::Member {
                person: m.person.to_string(),
                devices: m.devices,
                admin: m.admin,
                online: m.online,
            })
            .collect())
    }

    /// Removes a person from a group (admins only); the group's key changes.
    pub async fn remove_member(&self, group: &str, person: &str) -> Result<api::Group, NodeError> {
        Ok(summary(
            self.inner.groups.remove(group, person.trim()).await?,
        ))
    }

    /// Leaves a group; returns it as it was.
    pub async fn leave_group(&self, group: &str) -> Result<api::Group, NodeError> {
        let id = self.inner.groups.resolve(group)?;
        let was = self
            .groups()?
            .into_iter()
            .find(|g| g.group == id)
            .ok_or_else(|| NodeError::NotFound(format!("no group {group:?}")))?;
        self.inner.groups.leave(&id).await?;
        Ok(was)
    }

    /// The ID of a group given by ID or name (for `--group`).
    pub(crate) fn group_id(&self, group: Option<&str>) -> Result<Option<String>, NodeError> {
        group
            .map(|g| self.inner.groups.resolve(g.trim()))
            .transpose()
            .map_err(NodeError::from)
    }
}
