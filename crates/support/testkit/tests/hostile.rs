//! A hostile network: idle sockets, bursts of streams, oversized broker frames, hellos
//! past their limit, and a stock libp2p client looking for kith's providers.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use kith_core::frame;
use kith_overlay::inbound::{Incoming, Limits};
use kith_overlay::{PeerId, StreamProtocol};
use kith_people::protocol::{HelloAnswer, MAX_FRAME as PERSON_FRAME, PERSON_PROTOCOL};
use kith_search::protocol::{self as wire, BrokerResponse};
use kith_testkit::{RawPeer, Result, TestNode, bounded, data, eventually, metric};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(120);

fn tcp_port(addr: &str) -> Result<u16> {
    Ok(addr.split('/').nth(4).ok_or("no port")?.parse()?)
}

/// Sockets that connect and never start a handshake cannot lock real peers out: one
/// address holds only a few handshake slots, and a handshake has a deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_cannot_lock_out_real_peers() -> Result<()> {
    bounded(LIMIT, async {
        let n = TestNode::start(|_| {}).await?;
        let n_addr = n.addr().await?;
        let port = tcp_port(&n_addr)?;
        // 100 silent sockets from another loopback address.
        let mut idle = Vec::new();
        for _ in 0..100 {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind("127.0.0.2:0".parse()?)?;
            idle.push(s.connect(([127, 0, 0, 1], port).into()).await?);
        }
        let m = TestNode::start(|_| {}).await?;
        tokio::time::timeout(
            Duration::from_secs(10),
            m.node.overlay().dial(n_addr.parse()?),
        )
        .await
        .map_err(|_| "dial timed out")??;
        let text = n.metrics().await?;
        assert!(
            metric(&text, "kith_inbound_handshakes_refused_total") > 0,
            "{text}"
        );
        drop(idle);
        m.stop().await;
        n.stop().await;
        Ok(())
    })
    .await
}

/// Sockets from `n` loopback addresses (127.0.1.1 and up: not 127.0.0.1, which real
/// peers dial from) that connect, send `hello` (nothing when empty) and then hold the
/// connection, each opened again at once when the node drops it. They run on a thread of
/// their own, as an attacker runs on a machine of its own. Stops when dropped.
struct Flood {
    /// Connections the node has dropped so far.
    dropped: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Flood {
    fn start(port: u16, n: usize, hello: &'static [u8]) -> Result<Self> {
        let dropped = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (d, s) = (dropped.clone(), stop.clone());
        std::thread::spawn(move || {
            rt.block_on(async move {
                let mut set = tokio::task::JoinSet::new();
                for i in 0..n {
                    let from = Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
                    set.spawn(hold(from, port, hello, d.clone(), s.clone()));
                }
                while set.join_next().await.is_some() {}
            })
        });
        Ok(Self { dropped, stop })
    }

    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A runtime of its own, for peers that stand for other machines: what they send does not
/// wait behind the node's work. Shut down without blocking when dropped.
struct Elsewhere(Option<tokio::runtime::Runtime>);

impl Elsewhere {
    fn new() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        Ok(Self(Some(rt)))
    }

    /// Starts a raw peer there with `key`.
    async fn peer(&self, key: kith_overlay::Keypair) -> Result<RawPeer> {
        let rt = self.0.as_ref().ok_or("runtime gone")?;
        rt.spawn(RawPeer::with_key(key, &[])).await?
    }
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// One attacker's socket from `from`, opened again each time the node drops it.
async fn hold(
    from: Ipv4Addr,
    port: u16,
    hello: &'static [u8],
    dropped: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let held = async {
            let s = tokio::net::TcpSocket::new_v4()?;
            // The real peers' dials bind their listening port on every address (port
            // reuse): let them share it with these.
            s.set_reuseaddr(true)?;
            s.bind((from, 0).into())?;
            let mut c = s.connect(([127, 0, 0, 1], port).into()).await?;
            tokio::io::AsyncWriteExt::write_all(&mut c, hello).await?;
            // Hold it until the node drops it.
            let mut buf = [0u8; 256];
            while tokio::io::AsyncReadExt::read(&mut c, &mut buf).await? > 0 {}
            std::io::Result::Ok(())
        };
        let r = tokio::select! {
            () = stop.cancelled() => return,
            r = held => r,
        };
        dropped.fetch_add(1, Ordering::Relaxed);
        if r.is_err() {
            // Refused, or no port free: a moment before trying again.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Silent sockets from 300 addresses, each reopened when the node drops it, cannot lock
/// new peers out: a new handshake takes the place of the oldest one that has sent
/// nothing, and each of 8 peers that dial once gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_from_many_addresses_cannot_lock_out_real_peers() -> Result<()> {
    bounded(LIMIT, async {
        let n = TestNode::start(|_| {}).await?;
        let n_addr = n.addr().await?;
        let port = tcp_port(&n_addr)?;
        let flood = Flood::start(port, 300, b"")?;
        // Until the slots are taken and the flood has been turned away 300 times.
        eventually(
            Duration::from_secs(30),
            "the flood to fill the slots",
            || async {
                let text = n.metrics().await.ok()?;
                (metric(&text, "kith_inbound_handshakes_pending") >= 96 && flood.dropped() >= 300)
                    .then_some(())
            },
        )
        .await?;
        let others = Elsewhere::new()?;
        let mut failed = Vec::new();
        for i in 0..8 {
            let m = others
                .peer(kith_overlay::Keypair::generate_ed25519())
                .await?;
            let t = std::time::Instant::now();
            let dial = m.overlay.dial(n_addr.parse()?);
            match tokio::time::timeout(Duration::from_secs(10), dial).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed.push(format!("peer {i}: {e} after {:?}", t.elapsed())),
                Err(_) => failed.push(format!("peer {i}: timed out")),
            }
            // Gone before the next one dials, so that each has its runtime to itself.
            drop(m);
        }
        let text = n.metrics().await?;
        drop(flood);
        assert!(
            failed.is_empty(),
            "{} of 8 real peers kept out: {failed:#?}\n{text}",
            failed.len()
        );
        // The flood held its slots throughout.
        assert!(
            metric(&text, "kith_inbound_handshakes_pending") >= 90,
            "{text}"
        );
        n.stop().await;
        Ok(())
    })
    .await
}

/// The first byte of multistream-select's header: a flood that sends it and waits holds
/// slots no new handshake may take.
const TALK: &[u8] = &[0x13];

/// Sockets from 300 addresses that each send a byte and wait, reopened when the node drops
/// them, cannot keep out a peer the node knows: its address keeps a reserved share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_peers_keep_their_share_against_a_flood_that_speaks() -> Result<()> {
    bounded(LIMIT, async {
        let n = TestNode::start(|_| {}).await?;
        let n_addr = n.addr().await?;
        let others = Elsewhere::new()?;
        // A peer the node comes to know (it joins the routing table), then leaves.
        let key = kith_overlay::Keypair::generate_ed25519();
        let k_id = key.public().to_peer_id();
        let k = others.peer(key.clone()).await?;
        k.overlay.dial(n_addr.parse()?).await?;
        let o = n.node.overlay();
        eventually(
            Duration::from_secs(30),
            "the peer in the routing table",
            || async {
                let known = o
                    .closest_known(k_id.to_bytes(), PeerId::random())
                    .await
                    .ok()?;
                known.iter().any(|(p, _)| *p == k_id).then_some(())
            },
        )
        .await?;
        drop(k);
        eventually(Duration::from_secs(30), "the peer gone", || async {
            let peers = o.connected_peers().await.ok()?;
            (!peers.iter().any(|p| p.peer == k_id)).then_some(())
        })
        .await?;
        let flood = Flood::start(tcp_port(&n_addr)?, 300, TALK)?;
        eventually(
            Duration::from_secs(30),
            "the flood to fill the slots",
            || async {
                let text = n.metrics().await.ok()?;
                (metric(&text, "kith_inbound_handshakes_pending") >= 96 && flood.dropped() >= 300)
                    .then_some(())
            },
        )
        .await?;
        // Back, from the same address, while the flood holds every slot strangers may take.
        let k = others.peer(key).await?;
        let back =
            tokio::time::timeout(Duration::from_secs(10), k.overlay.dial(n_addr.parse()?)).await;
        let text = n.metrics().await?;
        drop(flood);
        assert!(matches!(back, Ok(Ok(()))), "{back:?}\n{text}");
        assert!(
            metric(&text, "kith_inbound_handshakes_refused_total") > 0,
            "{text}"
        );
        n.stop().await;
        Ok(())
    })
    .await
}

const TEST_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith-test/hold/1.0.0");

/// Opens a stream and reads what the server says before it closes: its answer, or an
/// error for a reset. `None` if it says nothing within a second (still queued, or silent).
async fn answer(a: &RawPeer, to: PeerId) -> Result<Option<std::io::Result<Vec<u8>>>> {
    let mut s = a.overlay.open_stream(to, TEST_PROTOCOL).await?;
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut got)).await;
    Ok(r.ok().map(|r| r.map(|_| got)))
}

/// A burst of streams beyond what a service takes: every stream it cannot queue gets the
/// protocol's busy answer at once, and every stream over its per-peer cap too; none
/// vanishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_stream_gets_a_busy_answer() -> Result<()> {
    bounded(LIMIT, async {
        let server = RawPeer::start(&[]).await?;
        let addr = format!(
            "{}/p2p/{}",
            server
                .overlay
                .listen_addrs()
                .await?
                .first()
                .ok_or("no addr")?,
            server.overlay.peer_id()
        );
        let limits = Limits {
            per_peer: 4,
            total: 64,
        };
        let mut inbound =
            server
                .overlay
                .accept(TEST_PROTOCOL, limits, Arc::new(|_| b"busy".to_vec()))?;
        let client = RawPeer::start(&[addr]).await?;
        let to = server.overlay.peer_id();
        // The service takes nothing yet: its queue fills, then streams are refused.
        let opened: Vec<_> = futures::future::join_all((0..80).map(|_| answer(&client, to))).await;
        let mut busy = 0;
        for o in opened {
            match o? {
                Some(Ok(b)) => {
                    assert_eq!(b, b"busy");
                    busy += 1;
                }
                Some(Err(e)) => return Err(format!("a stream was reset: {e}").into()),
                None => {}
            }
        }
        assert_eq!(
            busy,
            80 - 64,
            "the queue holds 64 streams; the rest are told busy"
        );
        // The service takes them now: 4 within the per-peer cap, the rest are told busy.
        let mut taken = Vec::new();
        while let Ok(Some(Incoming { stream, permit, .. })) =
            tokio::time::timeout(Duration::from_millis(500), inbound.next()).await
        {
            taken.push((stream, permit));
        }
        assert_eq!(taken.len(), 4);
        Ok(())
    })
    .await
}

/// The broker reads no frame over its limit, answers streams over its caps with its busy
/// answer, and keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_refuses_big_frames_and_answers_busy_past_its_caps() -> Result<()> {
    bounded(LIMIT, async {
        let b = TestNode::start(|o| {
            o.config.serve_broker = true;
            o.search.serve_broker = true;
        })
        .await?;
        let b_addr = b.addr().await?;
        let to: PeerId = b.peer_id().parse()?;
        let a = RawPeer::start(&[b_addr]).await?;
        // A frame that says 4 MiB: refused before any of it is read.
        let mut s = a.overlay.open_stream(to, wire::BROKER_PROTOCOL).await?;
        s.write_all(&(4u32 << 20).to_be_bytes()).await?;
        s.write_all(&[b'{'; 1024]).await?;
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(r.is_ok(), "the broker waited for a 4 MiB body");
        // Ten streams that announce a body and never send it: the first four are held,
        // the other six are told at once that the peer has too many in flight.
        let mut held = Vec::new();
        for _ in 0..10 {
            let mut s = a.overlay.open_stream(to, wire::BROKER_PROTOCOL).await?;
            s.write_all(&(512u32 << 10).to_be_bytes()).await?;
            s.flush().await?;
            held.push(s);
        }
        let mut busy = 0;
        for s in held.iter_mut() {
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                wire::read_frame::<_, BrokerResponse>(s, wire::MAX_ANSWER_FRAME),
            )
            .await;
            if let Ok(Ok(Some(BrokerResponse::Error { reason }))) = r {
                assert!(reason.contains("too many"), "{reason}");
                busy += 1;
            }
        }
        assert_eq!(busy, 6);
        let text = b.metrics().await?;
        assert!(metric(&text, "kith_inbound_streams_refused_total{protocol=\"/kith/broker/1.0.0\",reason=\"peer-limit\"}") >= 6, "{text}");
        drop(held);
        // Still serving.
        let r = b.search("anything", "broker", 1000).await;
        assert!(r.is_ok(), "{r:?}");
        b.stop().await;
        Ok(())
    })
    .await
}

/// `/kith/person` streams over the per-peer limit are told busy at once, like every other
/// protocol's: not closed with nothing said, nor held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_streams_past_the_limit_are_told_busy_at_once() -> Result<()> {
    bounded(LIMIT, async {
        let n = TestNode::start(|_| {}).await?;
        let to: PeerId = n.peer_id().parse()?;
        let x = RawPeer::start(&[n.addr().await?]).await?;
        // Hellos that announce a frame and never send it: the first four take the peer's
        // four slots (held until the node's read times out), the rest are over the limit.
        let mut streams = Vec::new();
        for _ in 0..6 {
            let mut s = x.overlay.open_stream(to, PERSON_PROTOCOL).await?;
            s.write_all(&100u32.to_be_bytes()).await?;
            s.flush().await?;
            streams.push(s);
        }
        let started = tokio::time::Instant::now();
        for s in streams.iter_mut().skip(4) {
            let answer = tokio::time::timeout(
                Duration::from_secs(5),
                frame::read::<_, HelloAnswer>(s, PERSON_FRAME),
            )
            .await;
            assert!(
                matches!(&answer, Ok(Ok(Some(HelloAnswer::Refused { refused }))) if refused == "busy"),
                "a stream over the limit got {answer:?}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "busy took {:?}",
            started.elapsed()
        );
        let text = n.metrics().await?;
        let refused = "kith_inbound_streams_refused_total{protocol=\"/kith/person/1.0.0\",reason=\"peer-limit\"}";
        assert!(metric(&text, refused) >= 2, "{text}");
        drop(streams);
        n.stop().await;
        Ok(())
    })
    .await
}

/// A stock libp2p Kademlia client (rust-libp2p's own, on kith's protocol name) finds
/// kith's providers of a CID under the CID's multihash, as IPFS and js-libp2p look them up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_kademlia_client_finds_kith_providers() -> Result<()> {
    use libp2p::{kad, noise, tcp, yamux};
    bounded(LIMIT, async {
        let n = TestNode::start(|_| {}).await?;
        let f = n.dir.path().join("doc.bin");
        std::fs::write(&f, data(100_000, 9))?;
        let id = n.share(&f).await?;
        let key = cid::Cid::try_from(id.as_str())?.hash().to_bytes();
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(|key| {
                let me = key.public().to_peer_id();
                let cfg = kad::Config::new(StreamProtocol::new("/kith/kad/1.0.0"));
                kad::Behaviour::with_config(me, kad::store::MemoryStore::new(me), cfg)
            })?
            .build();
        let n_peer: PeerId = n.peer_id().parse()?;
        let n_addr: libp2p::Multiaddr = n.addr().await?.parse()?;
        swarm.behaviour_mut().add_address(&n_peer, n_addr);
        swarm
            .behaviour_mut()
            .get_providers(kad::RecordKey::new(&key));
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let libp2p::swarm::SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                    result:
                        kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                            providers,
                            ..
                        })),
                    ..
                }) = swarm.select_next_some().await
                    && providers.contains(&n_peer)
                {
                    return;
                }
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "the provider was not found under the multihash"
        );
        n.stop().await;
        Ok(())
    })
    .await
}
