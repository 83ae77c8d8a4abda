//! Hostile holders, in process: one that sends back wrong bytes is caught when the owner
//! reads, its share rebuilt elsewhere, and it gets no more shares; one that spoils a
//! single leaf of each share is caught within the audits the rotation promises; junk
//! sent to a holder gets it nowhere and honest owners are still served. And the time of
//! an object's last audit moves with audits while a share waits for a repair.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use kith_api as api;
use kith_core::frame;
use kith_overlay::Stream;
use kith_overlay::inbound::{Incoming, Limits};
use kith_testkit::{RawPeer, Result, TestNode, bounded, data, eventually};
use kith_vault::protocol::{
    MAX_FRAME, MAX_SHARE, Offer, PROTOCOL, Request, Response, read_blob, write_blob,
};

const LIMIT: Duration = Duration::from_secs(120);

/// Answers one request as a holder that keeps what it is given but sends it back with
/// one byte changed; counts the shares it took.
async fn lie(mut s: Stream, kept: &std::sync::Mutex<Vec<(String, Vec<u8>)>>, stored: &AtomicUsize) {
    let Ok(Some(req)) = frame::read::<_, Request>(&mut s, MAX_FRAME).await else {
        return;
    };
    let resp = match req {
        Request::Offer => Response::Offer(Offer {
            offered: 1 << 40,
            used: 0,
            yours: 0,
            free_for_you: 1 << 40,
        }),
        Request::Store { share, size } => match read_blob(&mut s, size, MAX_SHARE).await {
            Ok(b) => {
                stored.fetch_add(1, Ordering::Relaxed);
                kith_core::sync::recover(kept).push((share, b));
                Response::Stored
            }
            Err(_) => return,
        },
        Request::Fetch { share } => {
            let found = kith_core::sync::recover(kept)
                .iter()
                .find(|(n, _)| *n == share)
                .map(|(_, b)| b.clone());
            if let Some(mut b) = found {
                if let Some(x) = b.first_mut() {
                    *x ^= 0xff;
                }
                let _ = frame::write(
                    &mut s,
                    &Response::Share {
                        size: b.len() as u64,
                    },
                )
                .await;
                let _ = write_blob(&mut s, &b).await;
                return;
            }
            Response::NotFound
        }
        _ => Response::NotFound,
    };
    let _ = frame::write(&mut s, &resp).await;
}

type Kept = Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

async fn liar(bootstrap: &str) -> Result<(RawPeer, Arc<AtomicUsize>)> {
    let peer = RawPeer::start(&[bootstrap.to_owned()]).await?;
    let limits = Limits {
        per_peer: 16,
        total: 64,
    };
    let mut inbound = peer
        .overlay
        .accept(PROTOCOL, limits, Arc::new(|_| Vec::new()))?;
    let stored = Arc::new(AtomicUsize::new(0));
    let kept: Kept = Arc::default();
    let counter = stored.clone();
    tokio::spawn(async move {
        while let Some(Incoming { stream, permit, .. }) = inbound.next().await {
            let (kept, stored) = (kept.clone(), stored.clone());
            tokio::spawn(async move {
                lie(stream, &kept, &stored).await;
                drop(permit);
            });
        }
    });
    Ok((peer, counter))
}

async fn holders(count: usize) -> Result<(Vec<TestNode>, Vec<String>)> {
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..count {
        let first = addrs.first().cloned();
        let h = TestNode::start(move |o| {
            o.vault.offer = 64 << 20;
            o.config.bootstrap = first.into_iter().collect();
        })
        .await?;
        addrs.push(h.addr().await?);
        nodes.push(h);
    }
    Ok((nodes, addrs))
}

/// Waits until `node` is connected to at least `count` peers (a put needs its holders).
async fn until_connected(node: &TestNode, count: usize) -> Result<()> {
    eventually(
        Duration::from_secs(30),
        "connections to the holders",
        || async {
            let peers = node.client().peers().await.ok()?;
            (peers.len() >= count).then_some(())
        },
    )
    .await
}

fn put_req(path: &std::path::Path) -> api::VaultPut {
    api::VaultPut {
        path: path.to_string_lossy().into_owned(),
        name: None,
        k: Some(2),
        n: Some(4),
        group: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_sending_wrong_bytes_is_caught_repaired_around_and_dropped() -> Result<()> {
    bounded(LIMIT, async {
        let (hs, addrs) = holders(4).await?;
        let owner = TestNode::start(|o| {
            o.config.bootstrap = addrs.clone();
            o.vault.audit_every = Duration::from_secs(1);
        })
        .await?;
        until_connected(&owner, 4).await?;
        let (l, stored) = liar(&owner.addr().await?).await?;
        let l_id = l.overlay.peer_id().to_string();
        eventually(Duration::from_secs(20), "the liar connected", || async {
            let peers = owner.client().peers().await.ok()?;
            peers.iter().any(|p| p.peer_id == l_id).then_some(())
        })
        .await?;
        let bytes = data(1_000_000, 11);
        let file = owner.dir.path().join("doc.bin");
        std::fs::write(&file, &bytes)?;
        let put = owner.node.vault_put(&put_req(&file)).await?;
        // It offered the most room, so it got a share (and so did the index).
        assert!(stored.load(Ordering::Relaxed) >= 1);
        let out = owner.dir.path().join("back.bin");
        let req = api::VaultGet {
            out: out.to_string_lossy().into_owned(),
            ..Default::default()
        };
        // Whether or not its share was among the first read, the restore is whole.
        let got = owner.node.vault_get(&put.id, &req).await?;
        assert_eq!(got.bytes, bytes.len() as u64);
        assert!(std::fs::read(&out)? == bytes);
        // Audits catch it (its proofs fail), the share is rebuilt on another holder.
        eventually(
            Duration::from_secs(60),
            "repair around the liar",
            || async {
                let o = owner.node.vault_service().status(&put.id).ok()?;
                (o.repairs >= 1 && o.reachable == o.n).then_some(())
            },
        )
        .await?;
        let liar_faults = owner
            .node
            .vault_service()
            .overview()?
            .peers
            .iter()
            .find(|p| p.peer == l_id)
            .map_or(0, |p| p.faults);
        assert!(liar_faults >= 1, "the liar has no fault on record");
        // It gets no more shares.
        let before = stored.load(Ordering::Relaxed);
        let second = owner.dir.path().join("more.bin");
        std::fs::write(&second, data(500_000, 12))?;
        owner.node.vault_put(&put_req(&second)).await?;
        assert_eq!(stored.load(Ordering::Relaxed), before);
        drop(hs);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_gets_a_holder_nowhere() -> Result<()> {
    bounded(LIMIT, async {
        let (hs, addrs) = holders(3).await?;
        let attacker = RawPeer::start(&addrs).await?;
        let target: kith_overlay::PeerId = hs[0].peer_id().parse()?;
        let junk: Vec<Vec<u8>> = vec![
            vec![0xff, 0xff, 0xff, 0xff],
            b"\x00\x00\x00\x05hello".to_vec(),
            frame::encode(&Request::Store {
                share: "zz".into(),
                size: u64::MAX,
            })?,
            [
                frame::encode(&Request::Store {
                    share: kith_vault::tree::name(b"x"),
                    size: 1,
                })?,
                vec![0, 0, 0, 9, 1, 2, 3],
            ]
            .concat(),
            frame::encode(&Request::Audit {
                share: "00".repeat(32),
                leaves: (0..10_000).collect(),
            })?,
        ];
        for j in junk {
            let mut s = attacker.overlay.open_stream(target, PROTOCOL).await?;
            s.write_all(&j).await?;
            let _ = s.close().await;
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        }
        // Nothing was kept, and an honest owner is served.
        assert_eq!(hs[0].node.vault_service().overview()?.held, 0);
        let owner = TestNode::start(|o| o.config.bootstrap = addrs.clone()).await?;
        until_connected(&owner, 3).await?;
        let f = owner.dir.path().join("a.bin");
        std::fs::write(&f, data(300_000, 5))?;
        let mut req = put_req(&f);
        req.n = Some(3);
        let put = owner.node.vault_put(&req).await?;
        assert_eq!(put.holders, 3);
        Ok(())
    })
    .await
}

/// `vault put --group`: a member of the group (another person) restores the object from
/// its ID; someone outside the group finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_restores_what_the_group_may_read() -> Result<()> {
    bounded(LIMIT, async {
        let (_hs, addrs) = holders(4).await?;
        let owner = TestNode::start(|o| o.config.bootstrap = addrs.clone()).await?;
        let member = TestNode::start(|o| o.config.bootstrap = addrs.clone()).await?;
        let outsider = TestNode::start(|o| {
            o.config.bootstrap = addrs.clone();
            o.share.patience = Duration::from_secs(3);
        })
        .await?;
        until_connected(&owner, 4).await?;
        let family = api::CreateGroup {
            name: "family".into(),
            history: false,
        };
        let gid = owner.client().create_group(&family).await?.group;
        let once = api::InviteRequest {
            uses: Some(1),
            ..Default::default()
        };
        let token = owner.client().invite(&gid, &once).await?.token;
        member
            .client()
            .join_group(&api::JoinGroup { token })
            .await?;
        let bytes = data(700_000, 21);
        let file = owner.dir.path().join("recipes.bin");
        std::fs::write(&file, &bytes)?;
        let mut req = put_req(&file);
        req.group = Some("family".into());
        let put = owner.node.vault_put(&req).await?;
        let out = member.dir.path().join("recipes.bin");
        let get = api::VaultGet {
            out: out.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let got = eventually(Duration::from_secs(30), "the member restores", || async {
            member.node.vault_get(&put.id, &get).await.ok()
        })
        .await?;
        assert_eq!(got.bytes, bytes.len() as u64);
        assert!(std::fs::read(&out)? == bytes);
        let out2 = outsider.dir.path().join("x.bin");
        let get2 = api::VaultGet {
            out: out2.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let err = outsider.node.vault_get(&put.id, &get2).await;
        assert!(err.is_err() && !out2.exists(), "an outsider restored it");
        // What was restored is the group's: shared again without a flag, it stays in the
        // group, and the outsider cannot fetch it from the member.
        let again = api::ShareRequest {
            path: out.display().to_string(),
            group: None,
            public: false,
        };
        let shared = member.client().share(&again).await?;
        assert_eq!(shared.group.as_deref(), Some(gid.as_str()), "{shared:?}");
        let addr = member.addr().await?;
        outsider
            .client()
            .connect(&api::ConnectRequest { addr })
            .await?;
        let id = &shared.id;
        let fetched = outsider.get(id, &outsider.dir.path().join("y.bin")).await;
        assert!(
            fetched.is_err()
                || fetched
                    .as_ref()
                    .is_ok_and(|p| p.state != kith_api::ProgressState::Done),
            "the outsider fetched it: {fetched:?}"
        );
        Ok(())
    })
    .await
}

/// A holder that keeps shares as given, and once `spoil` is set answers audits as if one
/// leaf of each had rotted on its disk (its leaf hashes still right); counts, per share,
/// the audits asked since.
#[derive(Default)]
struct Rotting {
    kept: std::sync::Mutex<Vec<(String, Vec<u8>)>>,
    spoil: std::sync::atomic::AtomicBool,
    audits: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl Rotting {
    /// The leaf that rots in a share: one of its own, far from the first.
    fn rotten(name: &str, size: u64) -> usize {
        let count = kith_vault::tree::leaf_count(size);
        (usize::from(name.as_bytes()[0]) * 7 + count / 2) % count
    }

    fn prove(&self, share: &str) -> Option<Response> {
        let kept = kith_core::sync::recover(&self.kept);
        let (_, b) = kept.iter().find(|(n, _)| n == share)?;
        let hashes = kith_vault::tree::leaves(b)
            .iter()
            .map(kith_vault::tree::hex)
            .collect();
        Some(Response::Proof {
            size: b.len() as u64,
            hashes,
        })
    }

    fn leaves(&self, share: &str, leaves: &[u32]) -> Vec<u8> {
        let kept = kith_core::sync::recover(&self.kept);
        let Some((_, b)) = kept.iter().find(|(n, _)| n == share) else {
            return Vec::new();
        };
        let size = b.len() as u64;
        let spoiled = self.spoil.load(Ordering::Relaxed);
        let mut out = Vec::new();
        for &i in leaves {
            if let Some(r) = kith_vault::tree::leaf_range(size, i as usize) {
                let at = out.len();
                out.extend_from_slice(&b[r]);
                if spoiled && i as usize == Self::rotten(share, size) {
                    out[at] ^= 0x55;
                }
            }
        }
        out
    }

    async fn answer(&self, mut s: Stream) {
        let Ok(Some(req)) = frame::read::<_, Request>(&mut s, MAX_FRAME).await else {
            return;
        };
        let resp = match req {
            Request::Offer => Response::Offer(Offer {
                offered: 1 << 40,
                used: 0,
                yours: 0,
                free_for_you: 1 << 40,
            }),
            Request::Store { share, size } => match read_blob(&mut s, size, MAX_SHARE).await {
                Ok(b) => {
                    kith_core::sync::recover(&self.kept).push((share, b));
                    Response::Stored
                }
                Err(_) => return,
            },
            Request::Audit { share, leaves } => {
                if self.spoil.load(Ordering::Relaxed) {
                    *kith_core::sync::recover(&self.audits)
                        .entry(share.clone())
                        .or_insert(0) += 1;
                }
                match self.prove(&share) {
                    Some(p) => {
                        let _ = frame::write(&mut s, &p).await;
                        let _ = write_blob(&mut s, &self.leaves(&share, &leaves)).await;
                        return;
                    }
                    None => Response::NotFound,
                }
            }
            _ => Response::NotFound,
        };
        let _ = frame::write(&mut s, &resp).await;
    }
}

async fn rotting(bootstrap: &str) -> Result<(RawPeer, Arc<Rotting>)> {
    let peer = RawPeer::start(&[bootstrap.to_owned()]).await?;
    let limits = Limits {
        per_peer: 16,
        total: 64,
    };
    let mut inbound = peer
        .overlay
        .accept(PROTOCOL, limits, Arc::new(|_| Vec::new()))?;
    let state = Arc::new(Rotting::default());
    let st = state.clone();
    tokio::spawn(async move {
        while let Some(Incoming { stream, permit, .. }) = inbound.next().await {
            let st = st.clone();
            tokio::spawn(async move {
                st.answer(stream).await;
                drop(permit);
            });
        }
    });
    Ok((peer, state))
}

/// Each of eight shares of 16 leaves has one leaf spoiled: every one is caught within
/// ⌈16 / 2⌉ = 8 audits (two leaves a time asked in rotation). Sampling two leaves at
/// random catches all eight in that many audits only 3 times in 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_spoiled_leaf_is_caught_within_the_rotation() -> Result<()> {
    bounded(LIMIT, async {
        let (_hs, addrs) = holders(1).await?;
        let owner = TestNode::start(|o| {
            o.config.bootstrap = addrs.clone();
            o.vault.audit_every = Duration::from_millis(300);
        })
        .await?;
        until_connected(&owner, 1).await?;
        let (r, rot) = rotting(&owner.addr().await?).await?;
        let r_id = r.overlay.peer_id().to_string();
        until_connected(&owner, 2).await?;
        // Eight objects, a share of each (1 MB: 16 leaves) on the rotting holder.
        const OBJECTS: usize = 8;
        for i in 0..OBJECTS {
            let f = owner.dir.path().join(format!("{i}.bin"));
            std::fs::write(&f, data(1_000_000, 100 + i as u64))?;
            let mut req = put_req(&f);
            (req.k, req.n) = (Some(1), Some(2));
            owner.node.vault_put(&req).await?;
        }
        let big = kith_core::sync::recover(&rot.kept)
            .iter()
            .filter(|(_, b)| kith_vault::tree::leaf_count(b.len() as u64) == 16)
            .count();
        assert_eq!(big, OBJECTS, "the rotting holder holds a share of each");
        rot.spoil.store(true, Ordering::Relaxed);
        let faults = || {
            owner.node.vault_service().overview().map_or(0, |o| {
                o.peers
                    .iter()
                    .find(|p| p.peer == r_id)
                    .map_or(0, |p| p.faults)
            })
        };
        eventually(
            Duration::from_secs(90),
            "every spoiled share caught",
            || async { (faults() >= OBJECTS as u64).then_some(()) },
        )
        .await?;
        let audits = kith_core::sync::recover(&rot.audits).clone();
        let worst = audits.values().copied().max().unwrap_or(0);
        assert!(
            worst <= 8,
            "a spoiled leaf went unseen for {worst} audits: {audits:?}"
        );
        Ok(())
    })
    .await
}

/// A share found spoiled that cannot be repaired (no holder left to take it): the
/// object's audit time still moves with the audits of its other shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_times_move_while_a_share_waits_for_repair() -> Result<()> {
    bounded(LIMIT, async {
        let (hs, addrs) = holders(2).await?;
        let owner = TestNode::start(|o| {
            o.config.bootstrap = addrs.clone();
            o.vault.audit_every = Duration::from_secs(1);
        })
        .await?;
        until_connected(&owner, 2).await?;
        let f = owner.dir.path().join("doc.bin");
        std::fs::write(&f, data(300_000, 31))?;
        let mut req = put_req(&f);
        (req.k, req.n) = (Some(1), Some(2));
        let put = owner.node.vault_put(&req).await?;
        // Spoil the object's share on the first holder (the index's share is smaller).
        let dir = hs[0].dir.path().join("vault").join("held");
        let share = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                let name = p.file_name().map(|f| f.to_string_lossy().into_owned());
                name.is_some_and(|n| n.len() == 64)
                    && std::fs::metadata(p).is_ok_and(|m| m.len() > 200_000)
            })
            .ok_or("no share on the first holder")?;
        let len = std::fs::metadata(&share)?.len() as usize;
        std::fs::write(&share, vec![0u8; len])?;
        eventually(
            Duration::from_secs(30),
            "the spoiled share found",
            || async {
                let o = owner.node.vault_service().status(&put.id).ok()?;
                (o.reachable == 1).then_some(())
            },
        )
        .await?;
        let found = kith_core::store::now_secs();
        let o = eventually(Duration::from_secs(30), "a later audit", || async {
            let o = owner.node.vault_service().status(&put.id).ok()?;
            (o.last_audit >= found + 2).then_some(o)
        })
        .await?;
        assert_eq!((o.reachable, o.repairs), (1, 0), "{o:?}");
        Ok(())
    })
    .await
}
