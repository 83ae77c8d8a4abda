//! Hostile holders, in process: one that sends back wrong bytes is caught when the owner
//! reads, its share rebuilt elsewhere, and it gets no more shares; junk sent to a holder
//! gets it nowhere and honest owners are still served.

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
use serde_json::json;

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
            let peers = node.api_get("/peers").await.ok()?;
            (peers.as_array()?.len() >= count).then_some(())
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
            let peers = owner.api_get("/peers").await.ok()?;
            peers
                .as_array()?
                .iter()
                .any(|p| p["peer_id"] == l_id.as_str())
                .then_some(())
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
                let o = owner.node.vault_object(&put.id).ok()?;
                (o.repairs >= 1 && o.reachable == o.n).then_some(())
            },
        )
        .await?;
        let liar_faults = owner
            .node
            .vault_overview()
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
        assert_eq!(hs[0].node.vault_overview().held, 0);
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
        let g = owner
            .api_post("/groups", &json!({ "name": "family" }))
            .await?;
        let gid = g["group"].as_str().unwrap_or_default().to_owned();
        let inv = owner
            .api_post(&format!("/groups/{gid}/invites"), &json!({ "uses": 1 }))
            .await?;
        member
            .api_post("/groups/join", &json!({ "token": inv["token"] }))
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
        let shared = member.api_post("/shares", &json!({ "path": out })).await?;
        assert_eq!(shared["group"].as_str(), Some(gid.as_str()), "{shared}");
        outsider
            .api_post("/peers", &json!({ "addr": member.addr().await? }))
            .await?;
        let id = shared["id"].as_str().unwrap_or_default();
        let fetched = outsider.get(id, &outsider.dir.path().join("y.bin")).await;
        assert!(
            fetched.is_err() || fetched.as_ref().is_ok_and(|p| p["state"] != "done"),
            "the outsider fetched it: {fetched:?}"
        );
        Ok(())
    })
    .await
}
