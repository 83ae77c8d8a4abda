//! Finding holders and placing shares: holders provide [`HOLDERS_KEY`] in the DHT and
//! answer `offer`; shares of a segment go to distinct holders, people other than the
//! owner first, distinct people before a second device of the same one, and distinct
//! networks (regions: a subnet, or the relay a holder is behind) before a second holder
//! in one; a holder with a fault on record gets no more.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use futures::StreamExt;
use kith_overlay::{Overlay, PeerId, Region};
use kith_people::People;

use kith_core::sync::{Poisoned, lock};

use crate::catalog::Catalog;
use crate::directory::Directory;
use crate::protocol::HOLDERS_KEY;
use crate::{Error, client};

/// Holders asked for their offer at once.
const MAX_CANDIDATES: usize = 64;
/// Time to look for holders in the DHT.
const FIND_TIME: Duration = Duration::from_secs(3);

/// Candidates shared by uploads running at once; locked only to pick. The room left on
/// each goes with the picks made, so a poisoned lock is an error ([`lock`]).
pub(crate) type Cands = std::sync::Mutex<Vec<Candidate>>;

#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub peer: PeerId,
    pub person: Option<String>,
    /// The network it is in, as this node sees it.
    pub region: Option<Region>,
    /// Bytes this owner may still store there.
    pub free: u64,
}

/// What finding holders takes: the network, the holders known, the index (for the
/// holders with a fault on record), and who is whose device.
pub(crate) struct Finder<'a> {
    pub overlay: &'a Overlay,
    pub directory: &'a Directory,
    pub catalog: &'a Catalog,
    pub people: &'a People,
}

impl Finder<'_> {
    fn person_of(&self, peer: &PeerId) -> Option<String> {
        self.people.person_of(peer).map(|p| p.to_string())
    }
}

/// Looks holders up in the DHT and remembers them (the upkeep loop does it every few
/// minutes, so a put need not wait for the lookup).
pub(crate) async fn discover(f: &Finder<'_>) -> Vec<PeerId> {
    let mut found = Vec::new();
    if let Ok(mut rx) = f.overlay.find_providers(HOLDERS_KEY.to_vec()).await {
        let until = tokio::time::Instant::now() + FIND_TIME;
        while found.len() < 4 * MAX_CANDIDATES {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(p)) => found.push(p),
                _ => break,
            }
        }
    }
    f.directory.remember(&found);
    found
}

/// Holders that offer this owner room now, most room first; the DHT is asked again when
/// fewer than `want` are known.
pub(crate) async fn candidates(f: &Finder<'_>, want: usize) -> Result<Vec<Candidate>, Error> {
    let mut peers: Vec<PeerId> = f
        .overlay
        .connected_peers()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.peer)
        .collect();
    peers.extend(f.directory.known());
    let mut out = offers(f, peers.clone()).await?;
    if out.len() < want {
        let more: Vec<PeerId> = discover(f)
            .await
            .into_iter()
            .filter(|p| !peers.contains(p))
            .collect();
        out.extend(offers(f, more).await?);
    }
    out.sort_by(|a, b| b.free.cmp(&a.free).then(a.peer.cmp(&b.peer)));
    Ok(out)
}

/// Asks these peers what they offer; those with room for this owner.
async fn offers(f: &Finder<'_>, mut peers: Vec<PeerId>) -> Result<Vec<Candidate>, Error> {
    let me = f.overlay.peer_id();
    let faulty: HashSet<String> = f
        .catalog
        .index()?
        .holders
        .iter()
        .filter(|(_, r)| r.faults > 0)
        .map(|(h, _)| h.clone())
        .collect();
    let mut seen = HashSet::new();
    peers.retain(|p| *p != me && !faulty.contains(&p.to_string()) && seen.insert(*p));
    peers.truncate(MAX_CANDIDATES);
    let answered: Vec<Candidate> = futures::stream::iter(peers)
        .map(|peer| async move {
            let offer = client::offer(f.overlay, peer).await.ok()?;
            let region = f
                .overlay
                .peer_info(peer)
                .await
                .ok()
                .flatten()
                .and_then(|i| i.region);
            (offer.free_for_you > 0).then(|| Candidate {
                peer,
                person: f.person_of(&peer),
                region,
                free: offer.free_for_you,
            })
        })
        .buffer_unordered(16)
        .filter_map(|c| async move { c })
        .collect()
        .await;
    f.directory
        .remember(&answered.iter().map(|c| c.peer).collect::<Vec<_>>());
    Ok(answered)
}

/// A holder refused a share, or did not answer: the operation places nothing more on
/// it (whatever room it said it had).
pub(crate) fn refused(cands: &Cands, peer: PeerId) -> Result<(), Poisoned> {
    for c in lock(cands)?.iter_mut().filter(|c| c.peer == peer) {
        c.free = 0;
    }
    Ok(())
}

/// How many candidates have room for a share of `size` bytes.
pub(crate) fn roomy(cands: &Cands, size: u64) -> Result<usize, Poisoned> {
    Ok(lock(cands)?.iter().filter(|c| c.free >= size).count())
}

/// Picks `n` distinct holders with room for `size` bytes each, not in `exclude`; takes
/// the room from them. Other people in networks not used yet first, then other people,
/// then distinct people, then anyone.
pub(crate) fn pick(
    cands: &mut [Candidate],
    n: usize,
    size: u64,
    exclude: &HashSet<PeerId>,
    me: Option<&str>,
) -> Vec<PeerId> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|&a, &b| cands[b].free.cmp(&cands[a].free));
    let mut picked: Vec<usize> = Vec::new();
    let mut people: BTreeSet<String> = BTreeSet::new();
    let mut regions: HashSet<Region> = HashSet::new();
    let fits = |c: &Candidate| c.free >= size && !exclude.contains(&c.peer);
    for pass in 0..4 {
        for &i in &order {
            if picked.len() == n {
                break;
            }
            let c = &cands[i];
            if picked.contains(&i) || !fits(c) {
                continue;
            }
            let other = c.person.as_deref() != me || me.is_none();
            let new_person = c.person.as_ref().is_none_or(|p| !people.contains(p));
            let new_region = c.region.is_none_or(|r| !regions.contains(&r));
            let ok = match pass {
                0 => other && new_person && new_region,
                1 => other && new_person,
                2 => new_person,
                _ => true,
            };
            if ok {
                picked.push(i);
                if let Some(p) = &c.person {
                    people.insert(p.clone());
                }
                if let Some(r) = c.region {
                    regions.insert(r);
                }
            }
        }
    }
    picked
        .into_iter()
        .map(|i| {
            cands[i].free -= size;
            cands[i].peer
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(person: &str, free: u64) -> Candidate {
        Candidate {
            peer: PeerId::random(),
            person: Some(person.into()),
            region: None,
            free,
        }
    }

    fn lan(n: u8) -> Option<Region> {
        Some(Region::of_ip(std::net::IpAddr::V4(
            std::net::Ipv4Addr::new(10, 0, n, 1),
        )))
    }

    #[test]
    fn distinct_networks_before_a_second_holder_in_one() {
        let mut c = vec![cand("a", 100), cand("b", 90), cand("c", 80), cand("d", 70)];
        c[0].region = lan(1);
        c[1].region = lan(1);
        c[2].region = lan(2);
        c[3].region = lan(3);
        let got = pick(&mut c, 3, 10, &HashSet::new(), Some("me"));
        assert_eq!(
            got,
            vec![c[0].peer, c[2].peer, c[3].peer],
            "b shares a's network"
        );
        let more = pick(&mut c, 4, 10, &HashSet::new(), Some("me"));
        assert_eq!(more.len(), 4, "then the same network again");
    }

    #[test]
    fn distinct_people_first_and_never_over_the_room() {
        let mut c = vec![
            cand("me", 100),
            cand("a", 90),
            cand("a", 80),
            cand("b", 10),
            cand("c", 50),
        ];
        let got = pick(&mut c, 3, 20, &HashSet::new(), Some("me"));
        let want: Vec<PeerId> = vec![c[1].peer, c[4].peer, c[0].peer];
        assert_eq!(got.len(), 3);
        assert!(want.iter().all(|p| got.contains(p)), "a, c, then me");
        assert_eq!(c[1].free, 70);
        let none = pick(&mut c, 2, 1_000, &HashSet::new(), None);
        assert!(none.is_empty());
    }
}
