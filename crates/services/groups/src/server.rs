//! The serving side of `/kith/group/1.0.0`: syncs for members, the group list for the
//! person's own devices, and joins with an invite.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kith_core::frame;
use kith_core::person::DeviceCert;
use kith_core::store::now_secs;
use kith_overlay::inbound::Limits;
use kith_overlay::{PeerId, Stream};

use crate::inner::Inner;
use crate::invite::Invite;
use crate::op::{Body, parse_hash};
use crate::protocol::{self, MAX_FRAME, Request, Response};
use crate::{Denied, Error, client, keys};

/// Inbound streams: per peer, and in total.
const LIMITS: Limits = Limits {
    per_peer: 4,
    total: 64,
};
/// Longest time for one request, from open to the last answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn busy(_: kith_overlay::inbound::Refusal) -> Vec<u8> {
    frame::encode(&Response::Refused {
        reason: "busy".into(),
    })
    .unwrap_or_default()
}

pub(crate) fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    let inbound = inner
        .overlay
        .accept(protocol::PROTOCOL, LIMITS, Arc::new(busy))?;
    let i = inner.clone();
    inbound.serve(
        &inner.tasks,
        "group request",
        REQUEST_TIMEOUT,
        move |peer, stream| {
            let inner = i.clone();
            async move { handle(&inner, peer, stream).await }
        },
    );
    Ok(())
}

async fn refuse(inner: &Inner, s: &mut Stream, peer: &PeerId, reason: String) -> Result<(), Error> {
    inner.refuse("group request", &format!("{peer}: {reason}"));
    frame::write(s, &Response::Refused { reason }).await?;
    Ok(())
}

async fn handle(inner: &Arc<Inner>, peer: PeerId, mut s: Stream) -> Result<(), Error> {
    let Some(req) = frame::read::<_, Request>(&mut s, MAX_FRAME).await? else {
        return Ok(());
    };
    let answer = match req {
        Request::Sync { group, have, want } => {
            await_wanted(inner, &group, &want).await;
            sync(inner, &peer, &group, &have)
        }
        Request::Groups => groups_of(inner, &peer),
        Request::Notify => notified(inner, &peer),
        Request::Join {
            group,
            invite,
            devices,
        } => join(inner, &peer, &group, &invite, devices).await,
    };
    match answer {
        Ok(Answer::Ops(ops)) => {
            let parts = protocol::batches(ops);
            let n = parts.len();
            for (k, ops) in parts.into_iter().enumerate() {
                frame::write(
                    &mut s,
                    &Response::Ops {
                        ops,
                        more: k + 1 < n,
                    },
                )
                .await?;
            }
            Ok(())
        }
        Ok(Answer::Groups(groups)) => Ok(frame::write(&mut s, &Response::Groups { groups }).await?),
        Err(e) => refuse(inner, &mut s, &peer, e.to_string()).await,
    }
}

enum Answer {
    Ops(Vec<crate::op::Op>),
    Groups(Vec<String>),
}

/// Whether `peer` may read the group: a current device of a member, or a device that
/// proved (by its certificate) it acts for a member person and is not revoked.
fn may_read(inner: &Inner, g: &crate::log::Group, peer: &PeerId) -> bool {
    let device = peer.to_string();
    if g.state.member_of(&device).is_some() {
        return true;
    }
    inner
        .people
        .person_of(peer)
        .is_some_and(|p| g.state.members.contains_key(&p) && !g.state.revoked.contains(&device))
}

/// Longest a member waits for heads an asker wants before it answers with what it has.
const WANT_WAIT: Duration = Duration::from_secs(3);

/// Waits (bounded) until this device's log of `group` holds every head in `want`.
async fn await_wanted(inner: &Inner, group: &str, want: &[String]) {
    let want: Vec<_> = want
        .iter()
        .take(protocol::MAX_HEADS)
        .filter_map(|h| parse_hash(h))
        .collect();
    if want.is_empty() {
        return;
    }
    let mut events = inner.events.subscribe();
    let has_all = || {
        inner
            .groups()
            .map(|g| {
                g.get(group)
                    .is_none_or(|g| want.iter().all(|h| g.ops.contains_key(h)))
            })
            .unwrap_or(true)
    };
    let wait = async {
        while !has_all() {
            if events
                .recv()
                .await
                .is_err_and(|e| matches!(e, tokio::sync::broadcast::error::RecvError::Closed))
            {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(WANT_WAIT, wait).await;
}

fn sync(inner: &Arc<Inner>, peer: &PeerId, group: &str, have: &[String]) -> Result<Answer, Error> {
    if have.len() > protocol::MAX_HAVE {
        return Err(Denied::TooManyHashes.into());
    }
    let have: HashSet<_> = have.iter().filter_map(|h| parse_hash(h)).collect();
    let groups = inner.groups()?;
    let not_member = || Error::Refused(Denied::NotMember);
    // A group this device left (or was put out of) a moment ago is still served to its
    // members; a group it is in again is served from its current log.
    let Some(g) = groups.get(group) else {
        let parting = kith_core::sync::recover(&inner.parting);
        return parting
            .get(group)
            .filter(|(g, at)| at.elapsed() < client::PART_GRACE && may_read(inner, g, peer))
            .map(|(g, _)| Answer::Ops(g.missing_for(&have)))
            .ok_or_else(not_member);
    };
    // A group this device is not in and one the peer may not read look the same.
    if may_read(inner, g, peer) {
        // The asker holds operations this device lacks (a member that just left, or
        // changed something whose announcement was lost): take them from it too.
        if have.iter().any(|h| !g.ops.contains_key(h)) {
            client::spawn_sync(inner, group.to_owned(), *peer);
        }
        return Ok(Answer::Ops(g.missing_for(&have)));
    }
    // A device that was put out learns that, and nothing after it.
    let person = inner.people.person_of(peer);
    let removal = g
        .removal_of(&peer.to_string(), person.as_ref())
        .ok_or_else(not_member)?;
    Ok(Answer::Ops(g.missing_up_to(removal, &have)))
}

/// Another device of this person says its groups changed: learn them from it.
fn notified(inner: &Arc<Inner>, peer: &PeerId) -> Result<Answer, Error> {
    if inner.people.person_of(peer) != Some(inner.people.person()?) {
        return Err(Denied::NotThisPerson.into());
    }
    let (i, peer) = (inner.clone(), *peer);
    inner.tasks.spawn(async move {
        if let Err(e) = client::learn_groups(&i, peer).await {
            tracing::debug!(%peer, error = %e, "cannot learn this person's groups");
        }
    });
    Ok(Answer::Groups(Vec::new()))
}

/// The groups this person is in, for another device of the same person.
fn groups_of(inner: &Inner, peer: &PeerId) -> Result<Answer, Error> {
    let mine = inner.people.person()?;
    if inner.people.person_of(peer) != Some(mine) {
        return Err(Denied::NotThisPerson.into());
    }
    Ok(Answer::Groups(
        inner
            .groups()?
            .iter()
            .filter(|(_, g)| g.state.members.contains_key(&mine))
            .map(|(id, _)| id.clone())
            .collect(),
    ))
}

/// Checks an invite presented by `peer` for `group` (its form, signature, group, admin,
/// expiry and uses) and the devices it joins with.
fn check_join(
    g: &crate::log::Group,
    peer: &PeerId,
    group: &str,
    inv: &Invite,
    devices: &[DeviceCert],
) -> Result<kith_core::person::PersonId, Error> {
    inv.verify()?;
    if inv.group != group || g.id != group {
        return Err(Denied::InviteForAnotherGroup.into());
    }
    let inviter = g.state.member_of(&inv.inviter.device);
    if !inviter.is_some_and(|p| g.state.is_admin(&p)) {
        return Err(Denied::InviterNotAdmin.into());
    }
    if now_secs() > inv.expires {
        return Err(Denied::InviteExpired.into());
    }
    let used = g.state.invites.get(&inv.id).copied().unwrap_or(0);
    if used >= inv.uses {
        return Err(Denied::InviteUsed {
            used,
            uses: inv.uses,
        }
        .into());
    }
    let person = devices
        .first()
        .map(|c| c.person)
        .ok_or(Denied::JoiningCerts)?;
    let me = peer.to_string();
    let ok = devices
        .iter()
        .all(|c| c.person == person && c.verify().is_ok())
        && devices.iter().any(|c| c.device == me)
        && devices.len() <= crate::op::MAX_DEVICES;
    if !ok {
        return Err(Denied::JoiningCerts.into());
    }
    if g.state.members.contains_key(&person) {
        return Err(Denied::AlreadyMember.into());
    }
    Ok(person)
}

/// A join with an invite: checked, then the person is added (a new key for everyone, or
/// the current one for the newcomer when the group shares its history).
async fn join(
    inner: &Arc<Inner>,
    peer: &PeerId,
    group: &str,
    token: &str,
    devices: Vec<DeviceCert>,
) -> Result<Answer, Error> {
    let inv = Invite::from_token(token)?;
    let ops = {
        let mut groups = inner.groups()?;
        let g = groups.get_mut(group).ok_or(Denied::InviteForAnotherGroup)?;
        let person = check_join(g, peer, group, &inv, &devices)?;
        let key = if g.state.history {
            let epoch = g
                .state
                .current_epoch()
                .map(|e| e.id.clone())
                .unwrap_or_default();
            let k = g.keys.get(&epoch).copied().ok_or(Denied::LacksKey)?;
            keys::grant(&g.id, &epoch, &k, &devices.iter().collect::<Vec<_>>())
        } else {
            let mut all = Inner::member_certs(g);
            all.extend(devices.iter().cloned());
            Inner::new_epoch(g, &all)
        };
        let body = Body::Add {
            person,
            devices,
            admin: inv.admin,
            invite: Some(Box::new(inv)),
        };
        let op = inner.sign(g, body, Some(key))?;
        inner.append(g, op)?;
        tracing::info!(group = %g.id, %person, "a person joined with an invite");
        g.missing_for(&HashSet::new())
    };
    inner.changed(group, true).await;
    Ok(Answer::Ops(ops))
}
