//! A holder that runs out of room, in process: its disk full (writes fail with "no space
//! left", through the vault's test hook, so no root is needed) or its quota too small.
//! A refusal moves the share, or the index, to another holder at once; a put reports
//! exactly what was stored; shares of a put that did not finish are released. (The same
//! on a real, full tmpfs: `crates/apps/kith/tests/vault.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kith_api as api;
use kith_core::frame;
use kith_overlay::Stream;
use kith_overlay::inbound::{Incoming, Limits};
use kith_testkit::{RawPeer, Result, TestNode, bounded, data, eventually, metric};
use kith_vault::protocol::{MAX_FRAME, MAX_SHARE, Offer, PROTOCOL, Request, Response, read_blob};

const LIMIT: Duration = Duration::from_secs(180);

/// Starts a holder lending `offer` bytes, joined through `boot`; `full_after`: its disk
/// fills after that many bytes of shares.
async fn holder(offer: u64, full_after: Option<u64>, boot: &[String]) -> Result<TestNode> {
    let boot = boot.to_vec();
    TestNode::start(move |o| {
        o.vault.offer = offer;
        o.vault.fail_writes_after = full_after;
        o.config.bootstrap = boot;
    })
    .await
}

async fn owner_of(holders: &[&TestNode]) -> Result<TestNode> {
    let mut addrs = Vec::new();
    for h in holders {
        addrs.push(h.addr().await?);
    }
    let owner = TestNode::start(|o| o.config.bootstrap = addrs).await?;
    eventually(
        Duration::from_secs(30),
        "connections to the holders",
        || async {
            let peers = owner.client().peers().await.ok()?;
            (peers.len() >= holders.len()).then_some(())
        },
    )
    .await?;
    Ok(owner)
}

fn put_req(path: &std::path::Path, k: u8, n: u8) -> api::VaultPut {
    api::VaultPut {
        path: path.to_string_lossy().into_owned(),
        name: None,
        k: Some(k),
        n: Some(n),
        group: None,
    }
}

fn held(node: &TestNode) -> u64 {
    node.node.vault_service().overview().map_or(0, |o| o.held)
}

/// The case: a holder whose disk is full, another whose quota is too small for
/// the index. A 14-byte put is stored, and so is the index, on the holders that take
/// them; the report says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_holder_does_not_break_a_put_nor_the_index() -> Result<()> {
    bounded(LIMIT, async {
        // The full one offers the most, so it is asked first.
        let full = holder(1 << 30, Some(0), &[]).await?;
        let boot = vec![full.addr().await?];
        // 4 KiB lent: a stranger may use 512 bytes, less than the index's share.
        let tiny = holder(4 << 10, None, &boot).await?;
        let a = holder(64 << 20, None, &boot).await?;
        let b = holder(64 << 20, None, &boot).await?;
        let owner = owner_of(&[&full, &tiny, &a, &b]).await?;
        let file = owner.dir.path().join("note.txt");
        std::fs::write(&file, b"fourteen bytes")?;
        let put = owner.node.vault_put(&put_req(&file, 1, 2)).await?;
        assert_eq!((put.holders, put.size), (2, 14), "{put:?}");
        assert!(put.index_published, "{put:?}");
        let o = owner.node.vault_service().status(&put.id)?;
        assert_eq!((o.reachable, o.n), (2, 2));
        assert_eq!(held(&full), 0, "the full holder kept nothing");
        // Once refused for want of space, it is not asked again: it offers nothing.
        let more = owner.dir.path().join("more.bin");
        std::fs::write(&more, data(300_000, 3))?;
        let refused = || async {
            let m = full.metrics().await?;
            Ok::<_, kith_testkit::Error>(metric(&m, "kith_vault_refused_shares_total"))
        };
        let before = refused().await?;
        assert!(before >= 1, "the full holder never refused a share");
        let put2 = owner.node.vault_put(&put_req(&more, 1, 2)).await?;
        assert!(put2.index_published && put2.holders == 2, "{put2:?}");
        assert_eq!(held(&full), 0);
        assert_eq!(refused().await?, before, "the full holder was asked again");
        // A new device of the owner would find both: the index's copy is in the vault.
        let out = owner.dir.path().join("back.txt");
        let get = api::VaultGet {
            out: out.to_string_lossy().into_owned(),
            ..Default::default()
        };
        owner.node.vault_get(&put.id, &get).await?;
        assert_eq!(std::fs::read(&out)?, b"fourteen bytes");
        // The same bytes asked 1-of-3 are not left 1-of-2: stored again, as asked.
        let put3 = owner.node.vault_put(&put_req(&file, 1, 3)).await?;
        assert_eq!((put3.holders, put3.new_bytes), (3, 14), "{put3:?}");
        let o = owner.node.vault_service().status(&put3.id)?;
        assert_eq!((o.reachable, o.n), (3, 3));
        Ok(())
    })
    .await
}

/// A holder's disk fills in the middle of a 60 MB put that has nowhere else to go: the
/// put fails at once (it used to hang), says that nothing was stored, and the shares it
/// had placed are gone from every holder (and the room they took is lent again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cut_short_by_a_full_disk_fails_at_once_and_leaves_nothing() -> Result<()> {
    bounded(LIMIT, async {
        let full = holder(1 << 30, Some(6 << 20), &[]).await?;
        let boot = vec![full.addr().await?];
        let a = holder(256 << 20, None, &boot).await?;
        let b = holder(256 << 20, None, &boot).await?;
        let owner = owner_of(&[&full, &a, &b]).await?;
        let file = owner.dir.path().join("big.bin");
        std::fs::write(&file, data(60_000_000, 9))?;
        let started = std::time::Instant::now();
        let err = owner
            .node
            .vault_put(&put_req(&file, 2, 3))
            .await
            .err()
            .ok_or("the put succeeded on two holders")?
            .to_string();
        assert!(
            err.contains("disk is full") && err.contains("nothing was stored"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "{err}");
        for (who, h) in [("full", &full), ("a", &a), ("b", &b)] {
            assert_eq!(held(h), 0, "{who} kept shares of a put that failed: {err}");
        }
        assert!(owner.node.vault_service().list()?.is_empty());
        let small = owner.dir.path().join("small.bin");
        std::fs::write(&small, data(3_000_000, 10))?;
        let put = owner.node.vault_put(&put_req(&small, 1, 2)).await?;
        assert!(put.index_published && put.holders == 2, "{put:?}");
        Ok(())
    })
    .await
}

/// A holder that takes a store and never answers it; counts the stores and deletes.
async fn stall(mut s: Stream, stores: &AtomicUsize, deletes: &AtomicUsize) {
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
        Request::Store { size, .. } => {
            if read_blob(&mut s, size, MAX_SHARE).await.is_ok() {
                stores.fetch_add(1, Ordering::Relaxed);
                std::future::pending::<()>().await;
            }
            return;
        }
        Request::Delete { .. } => {
            deletes.fetch_add(1, Ordering::Relaxed);
            Response::Deleted
        }
        _ => Response::NotFound,
    };
    let _ = frame::write(&mut s, &resp).await;
}

struct Staller {
    peer: RawPeer,
    stores: Arc<AtomicUsize>,
    deletes: Arc<AtomicUsize>,
}

async fn staller(boot: &str) -> Result<Staller> {
    let peer = RawPeer::start(&[boot.to_owned()]).await?;
    let limits = Limits {
        per_peer: 16,
        total: 64,
    };
    let mut inbound = peer
        .overlay
        .accept(PROTOCOL, limits, Arc::new(|_| Vec::new()))?;
    let (stores, deletes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s, d) = (stores.clone(), deletes.clone());
    tokio::spawn(async move {
        while let Some(Incoming { stream, permit, .. }) = inbound.next().await {
            let (s, d) = (s.clone(), d.clone());
            tokio::spawn(async move {
                stall(stream, &s, &d).await;
                drop(permit);
            });
        }
    });
    Ok(Staller {
        peer,
        stores,
        deletes,
    })
}

/// A put whose caller goes away while a holder sits on a share: what it placed is
/// released, on the holder that answered and on the one that did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_whose_caller_goes_away_releases_what_it_placed() -> Result<()> {
    bounded(LIMIT, async {
        let a = holder(64 << 20, None, &[]).await?;
        let owner = owner_of(&[&a]).await?;
        let st = staller(&owner.addr().await?).await?;
        let st_id = st.peer.overlay.peer_id().to_string();
        eventually(Duration::from_secs(20), "the staller connected", || async {
            let peers = owner.client().peers().await.ok()?;
            peers.iter().any(|p| p.peer_id == st_id).then_some(())
        })
        .await?;
        let file = owner.dir.path().join("doc.bin");
        std::fs::write(&file, data(1_000_000, 4))?;
        let node = owner.node.clone();
        let req = put_req(&file, 1, 2);
        let put = tokio::spawn(async move { node.vault_put(&req).await });
        eventually(Duration::from_secs(30), "both shares sent", || async {
            (held(&a) > 0 && st.stores.load(Ordering::Relaxed) > 0).then_some(())
        })
        .await?;
        put.abort();
        let _ = put.await;
        eventually(Duration::from_secs(30), "the shares released", || async {
            (held(&a) == 0 && st.deletes.load(Ordering::Relaxed) > 0).then_some(())
        })
        .await?;
        assert!(owner.node.vault_service().list()?.is_empty());
        Ok(())
    })
    .await
}
