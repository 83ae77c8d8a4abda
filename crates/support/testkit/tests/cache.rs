//! Hostile prefetch requests, in process: a peer that asks a cache node to fetch for a
//! region it is not in, content that cannot fit, a chunk instead of a file, a region name
//! too long, or junk frames, gets a refusal (or nothing) and no entry; past its budget it
//! gets `busy`; the node keeps answering.

use std::time::Duration;

use futures::AsyncWriteExt;
use kith_cache::protocol::{MAX_FRAME, MAX_REGION, PROTOCOL, Request, Response};
use kith_core::{ContentId, frame};
use kith_testkit::{RawPeer, Result, TestNode, bounded};

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
        let status = c.api_get("/cache").await?;
        let own = status["regions"][0].as_str().ok_or("no region")?.to_owned();
        assert_eq!(own, "127.0.0.0/24", "{status}");
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

        let status = c.api_get("/cache").await?;
        assert_eq!(
            status["entries"].as_array().map(Vec::len),
            Some(0),
            "{status}"
        );
        assert_eq!(status["used"], 0, "{status}");
        Ok(())
    })
    .await
}
