//! Providers that lie, stall or vanish: a download's timeout is a deadline, providers that
//! break the protocol are shunned by every download, and a bug in a service stops the node.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::AsyncWriteExt;
use kith_core::ContentId;
use kith_overlay::Stream;
use kith_overlay::inbound::{Incoming, Limits};
use kith_share::protocol::{self, Status};
use kith_testkit::{RawPeer, Result, TestNode, bounded, data, eventually, metric};

const LIMIT: Duration = Duration::from_secs(150);

/// A provider that goes away for good in the middle of a download, while its provider
/// record stays in the DHT (found again every few seconds): the download fails once its
/// timeout has passed without progress, saying what it tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_a_deadline_though_a_dead_provider_keeps_turning_up() -> Result<()> {
    const SIZE: usize = 12_000_000;
    bounded(LIMIT, async {
        let c = TestNode::start(|_| {}).await?;
        let c_addr = c.addr().await?;
        let a = TestNode::start(|o| {
            o.config.bootstrap = vec![c_addr.clone()];
            o.share.upload_limit = 2_000_000;
        })
        .await?;
        let b = TestNode::start(|o| o.config.bootstrap = vec![c_addr.clone()]).await?;
        let a_peer = a.peer_id();
        let file = a.dir.path().join("gone.bin");
        std::fs::write(&file, data(SIZE, 5))?;
        let id = a.share(&file).await?;
        let out = b.dir.path().join("gone.bin");
        let req = kith_api::DownloadRequest {
            id: id.clone(),
            output: Some(out.display().to_string()),
            timeout: Some(20),
            ..Default::default()
        };
        let follow = b.follow(&req);
        let cut = async {
            eventually(Duration::from_secs(30), "a quarter downloaded", || async {
                let v = b.client().downloads().await.ok()?;
                (v.first()?.done_bytes >= SIZE as u64 / 4).then_some(())
            })
            .await?;
            a.stop().await;
            Ok::<_, kith_testkit::Error>(Instant::now())
        };
        let (last, stopped) = tokio::join!(follow, cut);
        let (last, stopped) = (last?, stopped?);
        let took = stopped.elapsed();
        assert_eq!(last.state, kith_api::ProgressState::Failed, "{last:?}");
        let error = last.error.as_deref().unwrap_or_default();
        assert!(error.contains("nothing arrived within 20s"), "{error}");
        assert!(
            error.contains(&a_peer),
            "the provider tried is named: {error}"
        );
        assert!(
            took < Duration::from_secs(45),
            "failed {took:?} after the provider left"
        );
        b.stop().await;
        c.stop().await;
        Ok(())
    })
    .await
}

/// How a lying provider answers chunk requests.
#[derive(Clone, Copy, Debug)]
enum Lie {
    /// Claims a body of 4 GiB.
    HugeBody,
    /// Sends the right chunk, then 1 MiB more.
    Oversend,
    /// Sends half of the body and ends the stream (the connection stays up).
    Truncate,
    /// Answers the first request, then nothing more.
    Stall,
}

/// The chunks of a file, by ID.
fn chunks_of(bytes: &[u8]) -> Result<HashMap<ContentId, Vec<u8>>> {
    let refs = kith_core::chunker::chunk_reader(bytes)?;
    Ok(refs
        .iter()
        .filter_map(|c| {
            let b = bytes.get(c.offset as usize..(c.offset + u64::from(c.len)) as usize)?;
            Some((ContentId::raw(b), b.to_vec()))
        })
        .collect())
}

/// Serves one stream of the share protocol the way `lie` says.
async fn lie_on(
    mut s: Stream,
    lie: Lie,
    chunks: &HashMap<ContentId, Vec<u8>>,
    asked: &AtomicUsize,
) {
    let _ = protocol::write_status(&mut s, Status::Ok).await;
    let mut answered = 0;
    while let Ok(Some(id)) = protocol::read_request(&mut s).await {
        asked.fetch_add(1, Ordering::Relaxed);
        let Some(body) = chunks.get(&id) else {
            let _ = protocol::write_status(&mut s, Status::NotFound).await;
            continue;
        };
        let sent = match (lie, answered) {
            (Lie::HugeBody, _) => protocol::write_ok_header(&mut s, u32::MAX as usize).await,
            (Lie::Oversend, _) => {
                let _ = protocol::write_ok_header(&mut s, body.len()).await;
                let _ = s.write_all(body).await;
                s.write_all(&vec![0x5a; 1 << 20]).await.map_err(Into::into)
            }
            (Lie::Truncate, _) => {
                let _ = protocol::write_ok_header(&mut s, body.len()).await;
                let _ = s.write_all(&body[..body.len() / 2]).await;
                let _ = s.close().await;
                return;
            }
            (Lie::Stall, 0) => {
                let _ = protocol::write_ok_header(&mut s, body.len()).await;
                s.write_all(body).await.map_err(Into::into)
            }
            (Lie::Stall, _) => {
                // Silent, the stream open, until the asker gives up.
                tokio::time::sleep(Duration::from_secs(120)).await;
                return;
            }
        };
        answered += 1;
        if sent.is_err() {
            return;
        }
    }
}

/// A liar: a bare peer that answers every share stream with `lie`; counts the requests.
async fn liar(lie: Lie, file: &[u8], bootstrap: &str) -> Result<(RawPeer, Arc<AtomicUsize>)> {
    let peer = RawPeer::start(&[bootstrap.to_owned()]).await?;
    let limits = Limits {
        per_peer: 16,
        total: 64,
    };
    let mut inbound = peer.overlay.accept(
        protocol::PROTOCOL,
        limits,
        Arc::new(|_| vec![Status::Busy as u8]),
    )?;
    let chunks = Arc::new(chunks_of(file)?);
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        while let Some(Incoming { stream, permit, .. }) = inbound.next().await {
            let (chunks, asked) = (chunks.clone(), asked.clone());
            tokio::spawn(async move {
                lie_on(stream, lie, &chunks, &asked).await;
                drop(permit);
            });
        }
    });
    Ok((peer, counter))
}

/// Liars that break the framing (a 4 GiB body, more than they should send, a body cut
/// short, a stall) are shunned, and the download completes from the honest provider; a
/// liar shunned by one download is not asked again by the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liars_are_shunned_by_every_download() -> Result<()> {
    bounded(LIMIT, async {
        let h = TestNode::start(|o| o.share.upload_limit = 8_000_000).await?;
        let h_addr = h.addr().await?;
        let b = TestNode::start(|o| {
            o.config.bootstrap = vec![h_addr.clone()];
            o.share.stall_timeout = Duration::from_secs(2);
        })
        .await?;
        let b_addr = b.addr().await?;
        let mut shunned = Vec::new();
        for (i, lie) in [Lie::HugeBody, Lie::Oversend, Lie::Truncate, Lie::Stall]
            .into_iter()
            .enumerate()
        {
            let bytes = data(4_000_000, 40 + i as u64);
            let file = h.dir.path().join(format!("f{i}.bin"));
            std::fs::write(&file, &bytes)?;
            let id = h.share(&file).await?;
            let (l, asked) = liar(lie, &bytes, &b_addr).await?;
            let l_id = l.overlay.peer_id().to_string();
            eventually(Duration::from_secs(10), "the liar connected", || async {
                let peers = b.client().peers().await.ok()?;
                peers.iter().any(|p| p.peer_id == l_id).then_some(())
            })
            .await?;
            let before = metric(&b.metrics().await?, "kith_share_provider_violations_total");
            let out = b.dir.path().join(format!("f{i}.bin"));
            let started = Instant::now();
            let p = b.get(&id, &out).await?;
            assert_eq!(p.state, kith_api::ProgressState::Done, "{lie:?}: {p:?}");
            assert_eq!(std::fs::read(&out)?, bytes, "{lie:?}");
            if !matches!(lie, Lie::Stall) {
                // (A staller did send one good chunk before it stalled.)
                assert!(!p.providers.contains(&l_id), "{lie:?}: {p:?}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{lie:?} held the download up"
            );
            let after = metric(&b.metrics().await?, "kith_share_provider_violations_total");
            // Breaking the framing is a violation every time; a stall or a truncation
            // counts only if the download still needed the liar when it happened (under
            // load the honest provider may finish first, or the cut look like a leaving peer).
            if matches!(lie, Lie::HugeBody | Lie::Oversend) {
                assert!(after > before, "{lie:?}: no violation counted");
            }
            let n = asked.load(Ordering::Relaxed);
            assert!(n < 40, "{lie:?}: the liar was asked {n} times");
            shunned.push((l, asked));
        }
        new_downloads_skip_the_shunned(&h, &b, &shunned).await?;
        h.stop().await;
        b.stop().await;
        Ok(())
    })
    .await
}

/// A new download does not ask the liars shunned at once (they are still connected). A
/// truncation is a strike only while the connection looks up (a provider going away cuts
/// responses short too), so under load the truncating liar may be tried again: never by
/// more than one download's bounded retries.
async fn new_downloads_skip_the_shunned(
    h: &TestNode,
    b: &TestNode,
    shunned: &[(RawPeer, Arc<AtomicUsize>)],
) -> Result<()> {
    let snapshot = |shunned: &[(RawPeer, Arc<AtomicUsize>)]| -> Vec<usize> {
        shunned
            .iter()
            .map(|(_, a)| a.load(Ordering::Relaxed))
            .collect()
    };
    for round in 0..2u64 {
        let asked_before = snapshot(shunned);
        let bytes = data(2_000_000, 77 + round);
        let file = h.dir.path().join(format!("last{round}.bin"));
        std::fs::write(&file, &bytes)?;
        let id = h.share(&file).await?;
        let p = b
            .get(&id, &b.dir.path().join(format!("last{round}.bin")))
            .await?;
        assert_eq!(p.state, kith_api::ProgressState::Done, "{p:?}");
        assert!(
            !p.providers
                .contains(&shunned[2].0.overlay.peer_id().to_string()),
            "{p:?}"
        );
        let after = snapshot(shunned);
        for ((a, b4), lie) in after
            .iter()
            .zip(&asked_before)
            .zip(["huge", "oversend", "truncate"])
        {
            if lie == "truncate" {
                assert!(
                    a - b4 < 40,
                    "the truncate liar was asked {} times (download {round})",
                    a - b4
                );
            } else {
                assert_eq!(a, b4, "the {lie} liar was asked again (download {round})");
            }
        }
    }
    Ok(())
}

/// A bug in a service (a panic in one of its tasks) stops the node with the error, instead
/// of leaving it half alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_service_stops_the_node() -> Result<()> {
    bounded(LIMIT, async {
        let a = TestNode::start(|o| o.share.panic_on_share = true).await?;
        let f = a.dir.path().join("x.txt");
        std::fs::write(&f, b"x")?;
        assert!(a.share(&f).await.is_err());
        let what = tokio::time::timeout(Duration::from_secs(10), a.node.fatal()).await?;
        assert!(what.contains("internal error in share"), "{what}");
        assert!(what.contains("test hook"), "{what}");
        a.stop().await;
        Ok(())
    })
    .await
}
