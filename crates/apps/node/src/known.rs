//! The peers this node knows beyond the overlay's routing table, told to the overlay: the
//! devices of its groups' members and its person's other devices. Where they connect from
//! keeps a share of the slots for inbound handshakes, so a flood of strangers cannot keep
//! a group's members out (`Overlay::set_known_peers`).

use std::collections::BTreeSet;

use kith_core::tasks::Tasks;
use kith_groups::Groups;
use kith_overlay::{Overlay, PeerId};
use kith_people::People;
use tokio::sync::broadcast::error::RecvError;

/// The devices of every member of every group this device is in, and of its own person.
fn known_devices(groups: &Groups, people: &People) -> Vec<PeerId> {
    let mut out = BTreeSet::new();
    for g in groups.list().unwrap_or_default() {
        for m in groups.members(&g.group).unwrap_or_default() {
            out.extend(m.devices.iter().filter_map(|d| d.parse::<PeerId>().ok()));
        }
    }
    for c in people.devices().unwrap_or_default() {
        out.extend(c.device.parse::<PeerId>().ok());
    }
    out.into_iter().collect()
}

/// Tells the overlay the known devices now, and again whenever a group or this person's
/// devices change.
pub(crate) fn tell_overlay(overlay: &Overlay, people: &People, groups: &Groups, tasks: Tasks) {
    let mut group_events = groups.events();
    let mut people_events = people.events();
    let (overlay, people, groups) = (overlay.clone(), people.clone(), groups.clone());
    let stop = tasks.shutdown().clone();
    tasks.spawn(async move {
        loop {
            if overlay
                .set_known_peers(known_devices(&groups, &people))
                .await
                .is_err()
            {
                return;
            }
            // Until something changes that may change the list.
            loop {
                let changed = tokio::select! {
                    () = stop.cancelled() => return,
                    e = group_events.recv() => match e {
                        Ok(_) | Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => return,
                    },
                    e = people_events.recv() => match e {
                        Ok(kith_people::Event::Identified { .. }) => false,
                        Ok(_) | Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => return,
                    },
                };
                if changed {
                    break;
                }
            }
        }
    });
}
