//! Hostile prefetch requests, in process: a peer that asks a cache node to fetch for a
//! region it is not in, content that cannot fit, a chunk instead of a file, a region name
//! too long, or junk frames, gets a refusal (or nothing) and no entry; past its request
//! rate it gets `busy`; the node keeps answering. A request that understates the size
//! moves only the root manifest; a folder whose manifest understates it is stopped; what
//! an asker makes the node fetch, and what the node fetches from a provider, is budgeted
//! in bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::AsyncWriteExt;
use kith_api::CacheEntry;
use kith_cache::protocol::{MAX_FRAME, MAX_REGION, PROTOCOL, Request, Response};
use kith_core::manifest::{Chunk, DirManifest, Entry, EntryKind, FileManifest, Manifest};
use kith_core::{ContentId, frame};
use kith_overlay::inbound::{Incoming, Limits};
use kith_share::protocol::{self as share_wire, Status};
use kith_testkit::{RawPeer, Result, TestNode, bounded, data, eventually, metric};

const LIMIT: Duration = Duration::from_secs(60);

async fn ask(peer: &RawPeer, node: kith_overlay::PeerId, req: &Request) -> Result<Response> {
    let mut s = peer.overlay.open_stream(node, PROTOCOL).await?;
    frame::write(&mut s, req).await?;
    frame::read::<_, Response>(&mut s, MAX_FRAME)
        .await?
        .ok_or_else(|| "no answer".into())
}

fn prefetch(id: ContentId, bytes: u64, region: &str) -> Request {
    Request::Prefetch {
        id,
        bytes,
        region: region.to_owned(),
        demand: 3,
    }
}

fn refused(r: &Response, want: &str) -> bool {
    matches!(r, Response::Refused { reason } if reason.contains(want))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_prefetch_requests_are_refused_and_leave_nothing() -> Result<()> {
    bounded(LIMIT, async {
        let c = TestNode::start(|o| o.cache.capacity = 4 << 20).await?;
        let x = RawPeer::start(&[c.addr().await?]).await?;
        let node: kith_overlay::PeerId = c.peer_id().parse()?;
        let status = c.client().cache().await?;
        let own = status.regions.first().ok_or("no region")?.clone();
        assert_eq!(own, "127.0.0.0/24", "{status:?}");
        let id = ContentId::manifest(b"not anywhere");

        let r = ask(&x, node, &prefetch(id, 10, "10.9.9.0/24")).await?;
        assert!(refused(&r, "not in 10.9.9.0/24"), "{r:?}");
        let r = ask(&x, node, &prefetch(id, 1 << 40, &own)).await?;
        assert!(refused(&r, "do not fit"), "{r:?}");
        let r = ask(&x, node, &prefetch(ContentId::raw(b"a chunk"), 10, &own)).await?;
        assert!(refused(&r, "not a file or folder"), "{r:?}");
        let long = "x".repeat(MAX_REGION + 1);
        let r = ask(&x, node, &prefetch(id, 10, &long)).await?;
        assert!(refused(&r, "region name"), "{r:?}");

        // Junk: a frame over the limit, then bytes that are no JSON; no answer either way.
        for junk in [
            (MAX_FRAME as u32 + 1).to_be_bytes().to_vec(),
            [&5u32.to_be_bytes()[..], b"{{{{{"].concat(),
        ] {
            let mut s = x.overlay.open_stream(node, PROTOCOL).await?;
            s.write_all(&junk).await?;
            s.flush().await?;
            let got = frame::read::<_, Response>(&mut s, MAX_FRAME).await;
            assert!(!matches!(got, Ok(Some(_))), "{got:?}");
        }

        // Past the budget (30 a minute, refusals included): busy.
        let mut answers = Vec::new();
        for _ in 0..30 {
            answers.push(ask(&x, node, &prefetch(id, 10, "10.9.9.0/24")).await?);
        }
        assert_eq!(answers.last(), Some(&Response::Busy), "{answers:?}");
        assert!(matches!(answers.first(), Some(Response::Refused { .. })));

        let status = c.client().cache().await?;
        assert_eq!(status.entries.len(), 0, "{status:?}");
        assert_eq!(status.used, 0, "{status:?}");
        Ok(())
    })
    .await
}

/// The region a cache node says it is in.
async fn region_of(c: &TestNode) -> Result<String> {
    let status = c.client().cache().await?;
    Ok(status.regions.first().ok_or("no region")?.clone())
}

fn sent(metrics: &str) -> u64 {
    metric(metrics, "kith_share_sent_bytes")
}

/// The cache entries a node lists, once `check` holds for them.
async fn entries_when(
    c: &TestNode,
    what: &str,
    check: impl Fn(&[CacheEntry]) -> bool,
) -> Result<Vec<CacheEntry>> {
    eventually(Duration::from_secs(30), what, || async {
        let es = c.client().cache().await.ok()?.entries;
        check(&es).then_some(es)
    })
    .await
}

/// The amplification: a request of a few dozen bytes names public content eight
/// times the cache's size with `"bytes":1000`. The cache reads the real size from the root
/// manifest and refuses; eight such requests move eight manifests and nothing else (they
/// moved the whole content each before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_that_understates_the_size_moves_only_the_manifest() -> Result<()> {
    bounded(LIMIT, async {
        let p = TestNode::start(|_| {}).await?;
        let file = p.dir.path().join("talk.mp4");
        std::fs::write(&file, data(8 << 20, 60))?;
        let id = p.share(&file).await?;
        let cid: ContentId = id.parse()?;
        let manifest_len = p
            .node
            .share_service()
            .read_root(cid, Duration::from_secs(1))
            .await?
            .manifest
            .encode()
            .len() as u64;
        let p_addr = p.addr().await?;
        let c = TestNode::start(|o| {
            o.cache.capacity = 1 << 20;
            o.config.bootstrap = vec![p_addr.clone()];
        })
        .await?;
        let x = RawPeer::start(&[c.addr().await?]).await?;
        let node: kith_overlay::PeerId = c.peer_id().parse()?;
        let own = region_of(&c).await?;
        let before = sent(&p.metrics().await?);
        for _ in 0..8 {
            let r = ask(&x, node, &prefetch(cid, 1000, &own)).await?;
            assert!(
                refused(&r, &format!("{} bytes do not fit", 8 << 20)),
                "{r:?}"
            );
        }
        let moved = sent(&p.metrics().await?) - before;
        assert!(
            moved <= 8 * manifest_len,
            "the provider sent {moved} bytes; eight manifests are {}",
            8 * manifest_len
        );
        let status = c.client().cache().await?;
        assert!(status.entries.is_empty(), "{status:?}");
        assert!(c.client().downloads().await?.is_empty());
        Ok(())
    })
    .await
}

/// A provider that serves the blocks it is given (manifests and chunks) on the share
/// protocol, and counts the bytes of chunks it sends.
fn serve_blocks(peer: &RawPeer, blocks: HashMap<ContentId, Vec<u8>>) -> Result<Arc<AtomicU64>> {
    let limits = Limits {
        per_peer: 16,
        total: 64,
    };
    let mut inbound = peer.overlay.accept(
        share_wire::PROTOCOL,
        limits,
        Arc::new(|_| vec![Status::Busy as u8]),
    )?;
    let (blocks, chunk_bytes) = (Arc::new(blocks), Arc::new(AtomicU64::new(0)));
    let counter = chunk_bytes.clone();
    tokio::spawn(async move {
        while let Some(Incoming {
            mut stream, permit, ..
        }) = inbound.next().await
        {
            let (blocks, chunk_bytes) = (blocks.clone(), chunk_bytes.clone());
            tokio::spawn(async move {
                let _ = share_wire::write_status(&mut stream, Status::Ok).await;
                while let Ok(Some(id)) = share_wire::read_request(&mut stream).await {
                    let Some(body) = blocks.get(&id) else {
                        let _ = share_wire::write_status(&mut stream, Status::NotFound).await;
                        continue;
                    };
                    if id.kind() == kith_core::id::Kind::Raw {
                        chunk_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    }
                    let _ = share_wire::write_ok_header(&mut stream, body.len()).await;
                    if stream.write_all(body).await.is_err() {
                        break;
                    }
                }
                drop(permit);
            });
        }
    });
    Ok(counter)
}

/// A folder whose root manifest says its one file is 1,000 bytes, when the file is 8 MiB:
/// the prefetch is taken at 1,000 bytes, and its fill is stopped as soon as it grows past
/// them (when its download has planned the file, before the chunks move; a request or two
/// may be out by then); what it wrote is removed and no entry is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_grows_past_the_size_read_is_stopped() -> Result<()> {
    bounded(LIMIT, async {
        let c = TestNode::start(|o| o.cache.capacity = 1 << 20).await?;
        let node: kith_overlay::PeerId = c.peer_id().parse()?;
        let own = region_of(&c).await?;
        let bytes = data(8 << 20, 61);
        let mut blocks = HashMap::new();
        let mut chunks = Vec::new();
        for r in kith_core::chunker::chunk_reader(bytes.as_slice())? {
            let body = bytes
                .get(r.offset as usize..(r.offset + u64::from(r.len)) as usize)
                .ok_or("chunk")?;
            blocks.insert(ContentId::raw(body), body.to_vec());
            chunks.push(Chunk {
                hash: r.hash,
                size: r.len,
            });
        }
        let file = Manifest::File(FileManifest {
            name: "big.bin".into(),
            size: bytes.len() as u64,
            chunks,
        });
        let root = Manifest::Dir(DirManifest {
            name: "small".into(),
            entries: vec![Entry {
                name: "big.bin".into(),
                kind: EntryKind::File,
                id: file.id(),
                size: 1000,
                mtime: None,
                exec: false,
            }],
        });
        blocks.insert(file.id(), file.encode());
        blocks.insert(root.id(), root.encode());
        let x = RawPeer::start(&[c.addr().await?]).await?;
        let served = serve_blocks(&x, blocks)?;
        let r = ask(&x, node, &prefetch(root.id(), 1000, &own)).await?;
        assert_eq!(r, Response::Accepted, "1,000 bytes fit");
        entries_when(&c, "the fill stopped and forgotten", |es| es.is_empty()).await?;
        eventually(Duration::from_secs(10), "the download gone", || async {
            let d = c.client().downloads().await.ok()?;
            d.is_empty().then_some(())
        })
        .await?;
        let served = served.load(Ordering::Relaxed);
        assert!(
            served < 4 << 20,
            "the provider sent {served} bytes of chunks"
        );
        let data_dir = c
            .dir
            .path()
            .join("cache")
            .join("data")
            .join(root.id().to_string());
        assert!(!data_dir.exists(), "what it wrote is removed");
        Ok(())
    })
    .await
}

/// Budgets are bytes per hour (the cache's size by default): an asker that made the node
/// fetch 600 KiB of its 1 MiB cannot have it fetch 600 KiB more, and another asker cannot
/// have it fetch them from the provider that sent the first 600 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn askers_and_providers_have_byte_budgets() -> Result<()> {
    bounded(LIMIT, async {
        let p = TestNode::start(|_| {}).await?;
        let mut ids = Vec::new();
        for (i, name) in ["a.bin", "b.bin"].iter().enumerate() {
            let f = p.dir.path().join(name);
            std::fs::write(&f, data(600 << 10, 70 + i as u64))?;
            ids.push(p.share(&f).await?.parse::<ContentId>()?);
        }
        let (a, b) = (ids[0], ids[1]);
        let p_addr = p.addr().await?;
        let c = TestNode::start(|o| {
            o.cache.capacity = 1 << 20;
            o.config.bootstrap = vec![p_addr.clone()];
        })
        .await?;
        let c_addr = c.addr().await?;
        let (x, y) = (
            RawPeer::start(std::slice::from_ref(&c_addr)).await?,
            RawPeer::start(std::slice::from_ref(&c_addr)).await?,
        );
        let node: kith_overlay::PeerId = c.peer_id().parse()?;
        let own = region_of(&c).await?;
        let size = 600u64 << 10;
        assert_eq!(
            ask(&x, node, &prefetch(a, size, &own)).await?,
            Response::Accepted
        );
        entries_when(&c, "a cached", |es| {
            es.iter()
                .any(|e| e.id == a.to_string() && e.state == kith_api::CacheState::Ready)
        })
        .await?;
        let before = sent(&p.metrics().await?);
        let r = ask(&x, node, &prefetch(b, size, &own)).await?;
        assert!(refused(&r, "this peer may have this node fetch"), "{r:?}");
        let r = ask(&y, node, &prefetch(b, size, &own)).await?;
        assert!(
            refused(&r, &format!("{} may send this node", p.peer_id())),
            "{r:?}"
        );
        let moved = sent(&p.metrics().await?) - before;
        assert!(moved < 64 << 10, "the provider sent {moved} bytes more");
        let status = c.client().cache().await?;
        assert_eq!(status.entries.len(), 1, "{status:?}");
        Ok(())
    })
    .await
}
