//! The asking side: syncing logs with members (when their announcements show something
//! new, when they connect, and now and then), joining with an invite, applying this
//! person's device changes to its groups, and re-keying a group a removal left stale.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kith_core::frame;
use kith_overlay::{PeerId, RecordValidator, Rejected};
use kith_people::Event as PeopleEvent;
use rand::seq::IndexedRandom;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::inner::Inner;
use crate::invite::Invite;
use crate::log::Group;
use crate::op::{Body, hex_hash, parse_hash};
use crate::protocol::{self, Heads, MAX_FRAME, Request, Response};
use crate::{Denied, Error, Event, keys};

/// Longest sync or join exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest gap between two syncs of a group that one peer's announcements trigger.
const SYNC_GAP: Duration = Duration::from_secs(2);
/// How often each group is synced with one member online, whatever was announced.
const ANTI_ENTROPY: Duration = Duration::from_secs(30);
/// Most frames in one answer.
const MAX_ANSWER_FRAMES: usize = 1024;

/// Checks announcements on the groups' topics before they are taken or passed on: a
/// known group, and a signer that is one of its members' devices.
struct Validator {
    inner: std::sync::Weak<Inner>,
}

impl RecordValidator for Validator {
    fn validate(&self, _: &[u8], _: &[u8], _: Option<&[u8]>) -> Result<(), Rejected> {
        Err(Rejected("groups keep no DHT records".into()))
    }

    fn validate_gossip(
        &self,
        topic: &str,
        data: &[u8],
        source: Option<&PeerId>,
    ) -> Result<(), Rejected> {
        let inner = self
            .inner
            .upgrade()
            .ok_or_else(|| Rejected("stopped".into()))?;
        let heads: Heads =
            serde_json::from_slice(data).map_err(|e| Rejected(format!("malformed: {e}")))?;
        let source = source
            .ok_or_else(|| Rejected("unsigned".into()))?
            .to_string();
        let groups = inner.groups().map_err(|e| Rejected(e.to_string()))?;
        let g = groups
            .get(&heads.group)
            .ok_or_else(|| Rejected("not a group of this device".into()))?;
        if g.topic() != topic || heads.heads.len() > protocol::MAX_HEADS {
            return Err(Rejected(
                "announcement for another topic, or too many heads".into(),
            ));
        }
        if g.state.member_of(&source).is_none() {
            return Err(Rejected("the announcer is no member's device".into()));
        }
        Ok(())
    }
}

pub(crate) async fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    let validator = Arc::new(Validator {
        inner: Arc::downgrade(inner),
    });
    let mut gossip = inner
        .overlay
        .gossip(protocol::TOPIC_PREFIX, validator)
        .await?;
    let topics: Vec<String> = inner.groups()?.values().map(Group::topic).collect();
    for t in topics {
        inner.overlay.subscribe(t).await?;
    }
    let i = inner.clone();
    inner.tasks.spawn(async move {
        while let Some(m) = tokio::select! {
            () = i.tasks.shutdown().cancelled() => None,
            m = gossip.recv() => m,
        } {
            let (Ok(h), Some(from)) = (serde_json::from_slice::<Heads>(&m.data), m.source) else {
                continue;
            };
            if unknown_heads(&i, &h) {
                take_news(&i, h, m.via, from);
            }
        }
    });
    // Subscribed before the peers identified so far are read, so none is missed.
    let events = inner.people.events();
    let i = inner.clone();
    inner.tasks.spawn(async move {
        for (peer, person) in i.people.identified() {
            on_identified(&i, peer, person).await;
        }
        follow_people(&i, events).await
    });
    let i = inner.clone();
    inner.tasks.spawn(async move { anti_entropy(&i).await });
    Ok(())
}

/// Whether `h` names operations this device lacks.
fn unknown_heads(inner: &Inner, h: &Heads) -> bool {
    inner
        .groups()
        .map(|g| {
            g.get(&h.group).is_some_and(|g| {
                h.heads
                    .iter()
                    .filter_map(|x| parse_hash(x))
                    .any(|x| !g.ops.contains_key(&x))
            })
        })
        .unwrap_or(false)
}

/// Takes the operations an announcement names: from the neighbour that passed it on
/// first (so the announcer does not serve every member), then from the announcer if the
/// neighbour did not have them yet.
fn take_news(inner: &Arc<Inner>, h: Heads, via: PeerId, source: PeerId) {
    if via == source || inner.sync_slot(&h.group, via, SYNC_GAP) != Some(Duration::ZERO) {
        spawn_sync(inner, h.group, source);
        return;
    }
    let i = inner.clone();
    inner.tasks.spawn(async move {
        let want = h.heads.clone();
        let ask = sync_wanting(&i, &h.group, via, want);
        if let Ok(Err(e)) = tokio::time::timeout(EXCHANGE_TIMEOUT, ask).await {
            tracing::debug!(group = %h.group, peer = %via, error = %e, "group sync failed");
        }
        if unknown_heads(&i, &h) {
            spawn_sync(&i, h.group, source);
        }
    });
}

/// Syncs `group` with `peer` as soon as the peer's sync slot allows (at most one sync
/// with a peer every `SYNC_GAP`; news in between is taken by one sync after it).
pub(crate) fn spawn_sync(inner: &Arc<Inner>, group: String, peer: PeerId) {
    let Some(wait) = inner.sync_slot(&group, peer, SYNC_GAP) else {
        return;
    };
    let i = inner.clone();
    inner.tasks.spawn(async move {
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            i.sync_starts(&group, peer);
        }
        match tokio::time::timeout(EXCHANGE_TIMEOUT, sync(&i, &group, peer)).await {
            Ok(Err(e)) => tracing::debug!(%group, %peer, error = %e, "group sync failed"),
            Err(_) => tracing::debug!(%group, %peer, "group sync timed out"),
            Ok(Ok(())) => {}
        }
    });
}

/// Most member devices a change is pushed to directly.
const MAX_TOLD: usize = 64;
/// Longest the push of a change waits for the members.
const TELL_TIMEOUT: Duration = Duration::from_secs(5);

/// Syncs `group` with every member device online (at most [`MAX_TOLD`], all at once,
/// for at most [`TELL_TIMEOUT`]): each sees in the request that this device holds
/// operations it lacks and takes them back, so a change (a leave, before this device
/// stops listening) reaches the members online even when its announcement is lost.
pub(crate) async fn tell_members(inner: &Arc<Inner>, group: &str) {
    let members: HashSet<kith_core::person::PersonId> = inner
        .groups()
        .ok()
        .and_then(|g| {
            g.get(group)
                .map(|g| g.state.members.keys().cloned().collect())
        })
        .unwrap_or_default();
    let asks = inner
        .people
        .identified()
        .into_iter()
        .filter(|(_, p)| members.contains(p))
        .take(MAX_TOLD)
        .map(|(peer, _)| tokio::time::timeout(TELL_TIMEOUT, sync(inner, group, peer)));
    futures::future::join_all(asks).await;
}

/// Sends a request and reads the answer's frames.
async fn ask(inner: &Inner, peer: PeerId, req: &Request) -> Result<Vec<Response>, Error> {
    let mut s = inner.overlay.open_stream(peer, protocol::PROTOCOL).await?;
    frame::write(&mut s, req).await?;
    let mut out = Vec::new();
    while let Some(r) = frame::read::<_, Response>(&mut s, MAX_FRAME).await? {
        let more = matches!(r, Response::Ops { more: true, .. });
        out.push(r);
        if !more || out.len() >= MAX_ANSWER_FRAMES {
            break;
        }
    }
    Ok(out)
}

fn ops_of(peer: PeerId, answers: Vec<Response>) -> Result<Vec<crate::op::Op>, Error> {
    let mut ops = Vec::new();
    for a in answers {
        match a {
            Response::Ops { ops: o, .. } => ops.extend(o),
            Response::Refused { reason } => return Err(Error::PeerRefused { peer, reason }),
            Response::Groups { .. } => {}
        }
    }
    Ok(ops)
}

/// Takes what `peer` holds of `group` that this device lacks.
pub(crate) async fn sync(inner: &Arc<Inner>, group: &str, peer: PeerId) -> Result<(), Error> {
    sync_wanting(inner, group, peer, Vec::new()).await
}

/// Takes what `peer` holds of `group`, asking it to wait a moment for the heads `want`
/// if it lacks them yet.
async fn sync_wanting(
    inner: &Arc<Inner>,
    group: &str,
    peer: PeerId,
    want: Vec<String>,
) -> Result<(), Error> {
    let have: Vec<String> = inner
        .groups()?
        .get(group)
        .map(|g| g.ops.keys().map(hex_hash).collect())
        .ok_or_else(|| Error::NoSuchGroup(group.to_owned()))?;
    let req = Request::Sync {
        group: group.to_owned(),
        have,
        want,
    };
    let ops = ops_of(peer, ask(inner, peer, &req).await?)?;
    take_ops(inner, group, ops, peer).await
}

/// Takes operations of `group` that `peer` sent (each is verified, and placed once its
/// parents are here) and acts on what changed.
async fn take_ops(
    inner: &Arc<Inner>,
    group: &str,
    ops: Vec<crate::op::Op>,
    peer: PeerId,
) -> Result<(), Error> {
    if ops.is_empty() {
        return Ok(());
    }
    let (added, epoch_before, epoch_after) = {
        let mut groups = inner.groups()?;
        let g = groups
            .get_mut(group)
            .ok_or_else(|| Error::NoSuchGroup(group.to_owned()))?;
        let before = g.state.current_epoch().map(|e| e.id.clone());
        let intake = g.take(ops, &inner.me, &inner.seal);
        inner.report(group, &intake);
        (
            intake.added,
            before,
            g.state.current_epoch().map(|e| e.id.clone()),
        )
    };
    if added > 0 {
        tracing::info!(%group, %peer, added, "group log synced");
        after_change(inner, group, epoch_before != epoch_after).await;
    }
    Ok(())
}

/// After the log changed: save and announce; leave if this device is out; re-key if a
/// removal left the key with a device that is out (an admin's device does it).
async fn after_change(inner: &Arc<Inner>, group: &str, key_changed: bool) {
    let (member, heal) = match inner.groups() {
        Ok(g) => match g.get(group) {
            Some(g) => {
                let me_in = g.state.member_of(&inner.me);
                let admin = me_in.is_some_and(|p| g.state.is_admin(&p));
                (me_in.is_some(), admin && g.state.needs_rotation())
            }
            None => return,
        },
        Err(_) => return,
    };
    if !member {
        tracing::info!(%group, "this device is no longer in the group");
        // Still served to the members for a while: this device's last operations (its
        // own leave, taken in while it was telling the members) may be nowhere else yet.
        forget(inner, group, true).await;
        return;
    }
    inner.took(group, key_changed).await;
    if heal {
        // Let other admins' answers arrive first; whoever is first re-keys.
        tokio::time::sleep(Duration::from_millis(u64::from(
            rand::random::<u16>() % 1500,
        )))
        .await;
        if let Err(e) = rotate(inner, group).await {
            tracing::debug!(%group, error = %e, "re-key failed");
        }
    }
}

/// A new key for the group's current devices, if it still needs one.
pub(crate) async fn rotate(inner: &Arc<Inner>, group: &str) -> Result<(), Error> {
    {
        let mut groups = inner.groups()?;
        let g = groups
            .get_mut(group)
            .ok_or_else(|| Error::NoSuchGroup(group.to_owned()))?;
        if !g.state.needs_rotation() {
            return Ok(());
        }
        let key = Inner::new_epoch(g, &Inner::member_certs(g));
        let op = inner.sign(g, Body::Rotate, Some(key))?;
        inner.append(g, op)?;
    }
    tracing::info!(%group, "group key renewed");
    inner.changed(group, true).await;
    Ok(())
}

/// How long a group this device left is still served to members that sync.
pub(crate) const PART_GRACE: Duration = Duration::from_secs(120);

/// Drops a group this device is no longer in. With `part`, its log is still served to
/// members for [`PART_GRACE`] (they take this device's leaving from it).
pub(crate) async fn forget(inner: &Arc<Inner>, group: &str, part: bool) {
    // The parting copy is in place before the group is gone (both under the groups
    // lock), so a member's sync in between is never refused.
    let topic = {
        let Ok(mut groups) = inner.groups() else {
            return;
        };
        let Some(g) = groups.remove(group) else {
            return;
        };
        let topic = g.topic();
        if part {
            let mut parting = kith_core::sync::recover(&inner.parting);
            parting.retain(|_, (_, at)| at.elapsed() < PART_GRACE);
            parting.insert(group.to_owned(), (g, std::time::Instant::now()));
        }
        topic
    };
    let _ = inner.overlay.unsubscribe(topic).await;
    let file = crate::log::path(&inner.dir, group);
    let _ = inner
        .tasks
        .blocking(move || std::fs::remove_file(file))
        .await;
    let _ = inner.events.send(Event::Left {
        group: group.to_owned(),
    });
}

/// Joins with an invite token through the device that signed it.
pub(crate) async fn join(inner: &Arc<Inner>, token: &str) -> Result<String, Error> {
    let inv = Invite::from_token(token)?;
    inv.verify()?;
    if kith_core::store::now_secs() > inv.expires {
        return Err(Denied::InviteExpired.into());
    }
    if inner.groups()?.contains_key(&inv.group) {
        return Err(Error::AlreadyIn {
            name: inv.name,
            group: inv.group,
        });
    }
    let inviter = inv.inviter.device_id().map_err(Error::BadPerson)?;
    for a in &inv.addrs {
        if let Ok(addr) = a.parse() {
            let _ = inner.overlay.dial(addr).await;
        }
    }
    let req = Request::Join {
        group: inv.group.clone(),
        invite: token.to_owned(),
        devices: inner.people.devices()?,
    };
    let ops = tokio::time::timeout(EXCHANGE_TIMEOUT, ask(inner, inviter, &req))
        .await
        .map_err(|_| Error::Timeout { peer: inviter })??;
    let ops = ops_of(inviter, ops)?;
    let genesis = ops
        .iter()
        .find(|o| o.is_genesis())
        .cloned()
        .ok_or(Error::NoGenesis { peer: inviter })?;
    genesis.verify()?;
    let mut g = Group::new(genesis, &inner.me, &inner.seal);
    if g.id != inv.group {
        return Err(Error::OtherGroup { peer: inviter });
    }
    let intake = g.take(ops, &inner.me, &inner.seal);
    inner.report(&g.id, &intake);
    if g.state.member_of(&inner.me).is_none() {
        return Err(Error::NotAdded { peer: inviter });
    }
    let (id, topic) = (g.id.clone(), g.topic());
    inner.groups()?.insert(id.clone(), g);
    inner.overlay.subscribe(topic).await?;
    inner.changed(&id, true).await;
    tracing::info!(group = %id, name = %inv.name, "joined the group");
    Ok(id)
}

/// Reacts to what the people service learns: syncs with members as they connect, learns
/// this person's groups from its other devices, and puts this person's new and revoked
/// devices into every group it is in.
async fn follow_people(inner: &Arc<Inner>, mut events: broadcast::Receiver<PeopleEvent>) {
    loop {
        let e = tokio::select! {
            () = inner.tasks.shutdown().cancelled() => return,
            e = events.recv() => e,
        };
        match e {
            Ok(PeopleEvent::Identified { peer, person }) => {
                on_identified(inner, peer, person).await
            }
            Ok(PeopleEvent::DeviceAdded(cert)) => {
                each_group(inner, |g, i| {
                    let epoch = g
                        .state
                        .current_epoch()
                        .map(|e| e.id.clone())
                        .unwrap_or_default();
                    let key = g.keys.get(&epoch).copied();
                    let grant = key.map(|k| keys::grant(&g.id, &epoch, &k, &[&cert]));
                    i.sign(g, Body::AddDevice { cert: cert.clone() }, grant)
                })
                .await
            }
            Ok(PeopleEvent::DeviceRevoked(r)) => {
                each_group(inner, |g, i| {
                    let rest: Vec<_> = Inner::member_certs(g)
                        .into_iter()
                        .filter(|c| c.device != r.device)
                        .collect();
                    let key = Inner::new_epoch(g, &rest);
                    i.sign(
                        g,
                        Body::Revoke {
                            revocation: r.clone(),
                        },
                        Some(key),
                    )
                })
                .await
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// Appends an operation `make` builds to every group this person is in.
async fn each_group(
    inner: &Arc<Inner>,
    make: impl Fn(&mut Group, &Inner) -> Result<crate::op::Op, Error>,
) {
    let Ok(me) = inner.people.person() else {
        return;
    };
    let ids: Vec<String> = inner
        .groups()
        .map(|g| {
            g.iter()
                .filter(|(_, g)| g.state.members.contains_key(&me))
                .map(|(id, _)| id.clone())
                .collect()
        })
        .unwrap_or_default();
    for id in ids {
        let r = inner.groups().and_then(|mut groups| {
            let g = groups
                .get_mut(&id)
                .ok_or_else(|| Error::NoSuchGroup(id.clone()))?;
            let op = make(g, inner)?;
            inner.append(g, op)
        });
        match r {
            Ok(()) => inner.changed(&id, true).await,
            Err(e) => {
                tracing::warn!(group = %id, error = %e, "cannot apply a device change to the group")
            }
        }
    }
}

async fn on_identified(inner: &Arc<Inner>, peer: PeerId, person: kith_core::person::PersonId) {
    let shared: Vec<String> = inner
        .groups()
        .map(|g| {
            g.iter()
                .filter(|(_, g)| g.state.members.contains_key(&person))
                .map(|(id, _)| id.clone())
                .collect()
        })
        .unwrap_or_default();
    for id in shared {
        spawn_sync(inner, id, peer);
    }
    if inner.people.person().ok() == Some(person) {
        let i = inner.clone();
        inner.tasks.spawn(async move {
            if let Err(e) = learn_groups(&i, peer).await {
                tracing::debug!(%peer, error = %e, "cannot learn this person's groups");
            }
        });
    }
}

/// Tells this person's other connected devices that its groups changed (they then ask
/// which groups these are).
pub(crate) fn notify_devices(inner: &Arc<Inner>) {
    let Ok(me) = inner.people.person() else {
        return;
    };
    let this = inner.overlay.peer_id();
    for (peer, person) in inner.people.identified() {
        if person != me || peer == this {
            continue;
        }
        let i = inner.clone();
        inner.tasks.spawn(async move {
            let ask = ask(&i, peer, &Request::Notify);
            match tokio::time::timeout(EXCHANGE_TIMEOUT, ask).await {
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "cannot tell a device of this person")
                }
                Err(_) => tracing::debug!(%peer, "telling a device of this person timed out"),
                Ok(Ok(_)) => {}
            }
        });
    }
}

/// Asks another device of this person which groups it is in, and joins their logs.
pub(crate) async fn learn_groups(inner: &Arc<Inner>, peer: PeerId) -> Result<(), Error> {
    let answers = ask(inner, peer, &Request::Groups).await?;
    let known: HashSet<String> = inner.groups()?.keys().cloned().collect();
    for a in answers {
        let Response::Groups { groups } = a else {
            continue;
        };
        for id in groups
            .into_iter()
            .filter(|g| !known.contains(g))
            .take(crate::MAX_GROUPS)
        {
            let req = Request::Sync {
                group: id.clone(),
                have: Vec::new(),
                want: Vec::new(),
            };
            let ops = ops_of(peer, ask(inner, peer, &req).await?)?;
            let Some(genesis) = ops.iter().find(|o| o.is_genesis()).cloned() else {
                continue;
            };
            if genesis.verify().is_err() {
                continue;
            }
            let mut g = Group::new(genesis, &inner.me, &inner.seal);
            if g.id != id {
                continue;
            }
            let intake = g.take(ops, &inner.me, &inner.seal);
            inner.report(&id, &intake);
            if g.state.member_of(&inner.me).is_none() {
                continue;
            }
            let topic = g.topic();
            inner.groups()?.insert(id.clone(), g);
            inner.overlay.subscribe(topic).await?;
            inner.changed(&id, true).await;
            tracing::info!(group = %id, "joined a group of this person's");
        }
    }
    Ok(())
}

/// Now and then, syncs each group with one of its members online: what gossip missed
/// (a member offline for a week) comes in.
async fn anti_entropy(inner: &Arc<Inner>) {
    let mut tick = tokio::time::interval(ANTI_ENTROPY);
    loop {
        tokio::select! {
            () = inner.tasks.shutdown().cancelled() => return,
            _ = tick.tick() => {}
        }
        let online: Vec<(PeerId, kith_core::person::PersonId)> = inner.people.identified();
        let plan: Vec<(String, PeerId)> = inner
            .groups()
            .map(|g| {
                g.iter()
                    .filter_map(|(id, g)| {
                        let peers: Vec<PeerId> = online
                            .iter()
                            .filter(|(_, p)| g.state.members.contains_key(p))
                            .map(|(d, _)| *d)
                            .collect();
                        peers.choose(&mut rand::rng()).map(|p| (id.clone(), *p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (id, peer) in plan {
            spawn_sync(inner, id, peer);
        }
    }
}
