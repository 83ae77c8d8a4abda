//! Multi-node search, broker and name tests on loopback, in one process.

use std::time::{Duration, Instant};

use kith_api::{PublishRequest, ResolveRequest};
use kith_node::Options;
use kith_testkit::{Result, TestNode, bounded, data, eventually, metric};

const LIMIT: Duration = Duration::from_secs(150);

/// Publishes `path` as the next revision of `name`.
fn publish_req(name: &str, path: &std::path::Path) -> PublishRequest {
    PublishRequest {
        name: name.to_owned(),
        path: path.display().to_string(),
        public: false,
    }
}

/// Resolves `name`, asking the DHT for a second.
fn resolve_req(name: &str) -> ResolveRequest {
    ResolveRequest {
        name: name.to_owned(),
        timeout_ms: Some(1000),
    }
}

/// Starts `n` nodes in a line: each joins through the one before it.
async fn line(n: usize, tweak: impl Fn(&mut Options) + Clone) -> Result<Vec<TestNode>> {
    let mut nodes: Vec<TestNode> = Vec::with_capacity(n);
    for _ in 0..n {
        let boot = match nodes.last() {
            Some(prev) => vec![prev.addr().await?],
            None => Vec::new(),
        };
        let t = tweak.clone();
        nodes.push(
            TestNode::start(move |o| {
                o.config.bootstrap = boot;
                t(o);
            })
            .await?,
        );
    }
    Ok(nodes)
}

async fn stop_all(nodes: Vec<TestNode>) {
    for n in nodes {
        n.stop().await;
    }
}

/// Twenty nodes: the second finds what the last shares with no broker (keyword routing
/// through the DHT) and through the broker (the first node), fetches it, and gets sane
/// answers to a 1-character and a 1 MB query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_find_content_at_the_far_side_with_and_without_a_broker() -> Result<()> {
    bounded(LIMIT, async {
        let broker = TestNode::start(|o| {
            o.config.serve_broker = true;
            o.search.serve_broker = true;
        })
        .await?;
        let b_addr = broker.addr().await?;
        let mut nodes = line(19, move |o| o.config.broker = Some(b_addr.clone())).await?;
        nodes.insert(0, broker);
        let (first, last) = (&nodes[1], &nodes[19]);
        let dir = last.dir.path().join("maps");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("buried treasure.txt"), b"x marks the spot")?;
        std::fs::write(dir.join("other.bin"), data(10_000, 1))?;
        last.share(&dir).await?;
        let hit = eventually(Duration::from_secs(60), "far content found", || async {
            let r = first.search("treasure", "network", 3000).await.ok()?;
            r.into_iter()
                .find(|x| x.name == "buried treasure.txt" && x.providers.contains(&last.peer_id()))
        })
        .await?;
        assert_eq!(hit.path, "maps/buried treasure.txt");
        assert_eq!(hit.size, 16);
        // The same through the broker.
        let via_broker = eventually(Duration::from_secs(30), "found via the broker", || async {
            let r = first.search("treasure", "broker", 3000).await.ok()?;
            r.into_iter()
                .find(|x| x.providers.contains(&last.peer_id()))
        })
        .await?;
        assert_eq!(via_broker.id, hit.id);
        // The result can be fetched (the peers that answered are asked first).
        let out = first.dir.path().join("t.txt");
        let p = first.get(&hit.id, &out).await?;
        assert_eq!(p.state, kith_api::ProgressState::Done, "{p:?}");
        assert_eq!(std::fs::read(&out)?, b"x marks the spot");
        // Text inside files is searched too (the query floods: no routable name word).
        // `first` now has a copy of its own (named t.txt): results merge by content ID,
        // so wait for the far node's answer among the providers.
        eventually(
            Duration::from_secs(30),
            "text found at the far side",
            || async {
                let r = first
                    .search("\"marks the spot\"", "network", 3000)
                    .await
                    .ok()?;
                r.into_iter()
                    .find(|x| x.id == hit.id && x.providers.contains(&last.peer_id()))
            },
        )
        .await?;
        // One character: an answer, not an error.
        first.search("x", "network", 1000).await?;
        // One megabyte: refused with a clear reason.
        let err = first
            .search(&"a".repeat(1 << 20), "network", 1000)
            .await
            .err()
            .ok_or("1 MB query accepted")?
            .to_string();
        assert!(err.contains("at most 1024"), "{err:?}");
        stop_all(nodes).await;
        Ok(())
    })
    .await
}

/// Flooding reaches two hops and answers each query once however many paths it takes;
/// a query flood is rate limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_reaches_two_hops_once_and_floods_are_limited() -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    bounded(LIMIT, async {
        let nodes = line(3, |o| o.search.query_burst = 10.0).await?;
        let (a, c) = (&nodes[0], &nodes[2]);
        // A second path from A to C, besides the one through B.
        a.node.overlay().dial(c.addr().await?.parse()?).await?;
        let f = c.dir.path().join("two hops.txt");
        std::fs::write(&f, b"far")?;
        c.share(&f).await?;
        let sent = AtomicU64::new(0);
        let r = eventually(
            Duration::from_secs(30),
            "flooded query answered",
            || async {
                sent.fetch_add(1, Ordering::SeqCst);
                let r = a.search("hops", "flood", 3000).await.ok()?;
                r.into_iter().find(|x| x.providers.contains(&c.peer_id()))
            },
        )
        .await?;
        assert_eq!(r.name, "two hops.txt");
        // Each query reached C twice (from A and through B) and was answered once.
        let served = metric(&c.metrics().await?, "kith_search_queries_served_total");
        let sent = sent.load(Ordering::SeqCst);
        assert!(
            served >= 1 && served <= sent,
            "C answered {served} of {sent} queries"
        );
        // A burst of queries from A: C refuses the excess, then answers again later.
        for i in 0..40 {
            let _ = a.search(&format!("burst{i}"), "flood", 200).await;
        }
        let refused = metric(&c.metrics().await?, "kith_search_queries_refused_total")
            + metric(
                &nodes[1].metrics().await?,
                "kith_search_queries_refused_total",
            );
        assert!(refused > 0, "no query of the flood was refused");
        stop_all(nodes).await;
        Ok(())
    })
    .await
}

/// A broker answers with the peers online now, forgets a peer within its TTL after it goes
/// away, and after a restart learns everything again from the peers within one TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_lists_online_peers_forgets_offline_ones_and_survives_a_restart() -> Result<()> {
    bounded(LIMIT, async {
        let ttl = 3;
        let broker = TestNode::start(|o| {
            o.config.serve_broker = true;
            o.search.serve_broker = true;
            o.search.broker_ttl = Duration::from_secs(ttl);
        })
        .await?;
        let b_addr = broker.addr().await?;
        let peer = |o: &mut Options| {
            o.config.bootstrap = vec![b_addr.clone()];
            o.config.broker = Some(b_addr.clone());
        };
        let a = TestNode::start(peer).await?;
        let c = TestNode::start(peer).await?;
        let d = TestNode::start(peer).await?;
        let fa = a.dir.path().join("holiday photos.zip");
        std::fs::write(&fa, data(5000, 2))?;
        a.share(&fa).await?;
        let fc = c.dir.path().join("holiday video.mp4");
        std::fs::write(&fc, data(7000, 3))?;
        c.share(&fc).await?;
        let both = eventually(
            Duration::from_secs(20),
            "both items at the broker",
            || async {
                let r = d.search("holiday", "broker", 2000).await.ok()?;
                (r.len() == 2).then_some(r)
            },
        )
        .await?;
        let names: Vec<&str> = both.iter().map(|r| r.name.as_str()).collect();
        assert!(names.contains(&"holiday photos.zip") && names.contains(&"holiday video.mp4"));
        // The broker is also each peer's bootstrap peer: one connection to it, not two.
        for n in [&a, &c, &d] {
            let s = n.node.overlay().status().await?;
            let to_broker: Vec<_> = s
                .connections
                .iter()
                .filter(|x| x.peer_id == broker.peer_id())
                .collect();
            assert_eq!(to_broker.len(), 1, "{to_broker:?}");
        }
        // A goes offline: its entry is gone within its TTL (plus one expiry round).
        let a_id = a.peer_id();
        let gone_at = Instant::now();
        a.stop().await;
        eventually(
            Duration::from_secs(3 * ttl),
            "offline peer dropped",
            || async {
                let r = d.search("holiday", "broker", 2000).await.ok()?;
                (!r.iter().any(|x| x.providers.contains(&a_id))).then_some(())
            },
        )
        .await?;
        assert!(gone_at.elapsed() < Duration::from_secs(2 * ttl + 2));
        // The broker restarts on the same address and knows nothing; C registers again.
        let port = b_addr
            .split('/')
            .nth(4)
            .ok_or("no port in broker address")?
            .to_owned();
        let broker = broker
            .restart(|o| {
                o.config.listen = vec![format!("/ip4/127.0.0.1/tcp/{port}")];
                o.config.serve_broker = true;
                o.search.serve_broker = true;
                o.search.broker_ttl = Duration::from_secs(ttl);
            })
            .await?;
        let back = Instant::now();
        eventually(
            Duration::from_secs(4 * ttl),
            "re-registered after restart",
            || async {
                let r = d.search("video", "broker", 2000).await.ok()?;
                r.iter()
                    .any(|x| x.providers.contains(&c.peer_id()))
                    .then_some(())
            },
        )
        .await?;
        assert!(
            back.elapsed() < Duration::from_secs(3 * ttl),
            "took {:?}",
            back.elapsed()
        );
        for n in [broker, c, d] {
            n.stop().await;
        }
        Ok(())
    })
    .await
}

/// A publishes revisions of a name; B, subscribed, hears of a new one in under 2 s; search
/// results mark the older copy outdated; a new revision of a big file moves only the
/// changed chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_reach_subscribers_fast_and_move_only_changed_chunks() -> Result<()> {
    bounded(LIMIT, async {
        let a = TestNode::start(|_| {}).await?;
        let a_addr = a.addr().await?;
        let b = TestNode::start(|o| o.config.bootstrap = vec![a_addr.clone()]).await?;
        let v1 = a.dir.path().join("report-v1.bin");
        let mut bytes = data(8_000_000, 4);
        std::fs::write(&v1, &bytes)?;
        let r1 = a.client().publish(&publish_req("report", &v1)).await?;
        assert_eq!(r1.revision, 1);
        let full = r1.name.clone();
        let got = eventually(Duration::from_secs(20), "B resolves the name", || async {
            b.client().resolve(&resolve_req(&full)).await.ok()
        })
        .await?;
        assert_eq!(got.id, r1.id);
        let out1 = b.dir.path().join("report.bin");
        let p = b.get(&got.id, &out1).await?;
        assert_eq!(p.state, kith_api::ProgressState::Done, "{p:?}");

        // Revision 2: 1 MiB changed in the middle.
        let mut updates = b.node.names_service().events();
        for (i, x) in bytes[3_500_000..3_500_000 + (1 << 20)]
            .iter_mut()
            .enumerate()
        {
            *x = x.wrapping_add(1 + (i % 7) as u8);
        }
        let v2 = a.dir.path().join("report-v2.bin");
        std::fs::write(&v2, &bytes)?;
        let sent = Instant::now();
        let r2 = a.client().publish(&publish_req("report", &v2)).await?;
        assert_eq!(r2.revision, 2);
        let rec = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(kith_names::Event::Revision(r)) = updates.recv().await
                    && r.revision == 2
                {
                    return r;
                }
            }
        })
        .await?;
        let took = sent.elapsed();
        assert!(took < Duration::from_secs(2), "new revision took {took:?}");
        assert_eq!(rec.id, r2.id);

        // B fetches revision 2: only the changed chunks come over the network.
        let out2 = b.dir.path().join("report-2.bin");
        let p = b.get(&r2.id, &out2).await?;
        assert_eq!(p.state, kith_api::ProgressState::Done, "{p:?}");
        assert_eq!(std::fs::read(&out2)?, bytes);
        let fetched = p.fetched_bytes;
        assert!(
            fetched < 3 << 20,
            "fetched {fetched} bytes for a 1 MiB edit"
        );

        // Searching finds both revisions; the old one is marked outdated.
        let r = eventually(Duration::from_secs(20), "both revisions found", || async {
            let r = b.search("report", "network", 2000).await.ok()?;
            (r.iter()
                .filter(|x| x.name_key.as_ref() == Some(&full))
                .count()
                >= 2)
                .then_some(r)
        })
        .await?;
        for x in r.iter().filter(|x| x.name_key.as_ref() == Some(&full)) {
            let outdated = x.revision == Some(1);
            assert_eq!(x.outdated, Some(outdated), "{x:?}");
        }
        a.stop().await;
        b.stop().await;
        Ok(())
    })
    .await
}

/// Forged records and rolled-back revisions are refused, in the DHT and by gossip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_rolled_back_records_are_rejected() -> Result<()> {
    use kith_names::protocol::{NameRecord, name_key};
    bounded(LIMIT, async {
        let a = TestNode::start(|_| {}).await?;
        let a_addr = a.addr().await?;
        let b = TestNode::start(|o| o.config.bootstrap = vec![a_addr.clone()]).await?;
        let m = TestNode::start(|o| o.config.bootstrap = vec![a_addr.clone()]).await?;
        m.node.overlay().dial(b.addr().await?.parse()?).await?;
        let f1 = a.dir.path().join("doc.txt");
        std::fs::write(&f1, b"one")?;
        a.client().publish(&publish_req("doc", &f1)).await?;
        let rev1: NameRecord = a
            .node
            .names_service()
            .names()?
            .into_iter()
            .next()
            .ok_or("no record")?;
        let f2 = a.dir.path().join("doc2.txt");
        std::fs::write(&f2, b"two")?;
        let r2 = a.client().publish(&publish_req("doc", &f2)).await?;
        let full = r2.name.clone();
        let resolve = || async { b.client().resolve(&resolve_req(&full)).await };
        eventually(Duration::from_secs(20), "B resolves revision 2", || async {
            (resolve().await.ok()?.revision == 2).then_some(())
        })
        .await?;
        let owner: kith_overlay::PeerId = a.peer_id().parse()?;
        let key = name_key(&owner, "doc");
        m.node.overlay().subscribe(key.clone()).await?;
        let rejected = |t: &str| metric(t, "kith_records_rejected_total");
        let rolled = |t: &str| metric(t, "kith_names_records_rejected_total");

        // M forges revision 9 of A's name: signed with M's key, A as owner.
        let mkey = kith_overlay::Keypair::generate_ed25519();
        let id: kith_core::ContentId = rev1.id.parse()?;
        let mut forged = NameRecord::sign(&mkey, "doc", 9, &id, 1)?;
        forged.owner = a.peer_id();
        let before = rejected(&b.metrics().await?);
        eventually(Duration::from_secs(20), "B refuses the forgery", || async {
            let _ = m.node.overlay().publish(key.clone(), forged.encode()).await;
            (rejected(&b.metrics().await.ok()?) > before).then_some(())
        })
        .await?;
        // M replays A's genuine revision 1: a rollback, refused by B's name book.
        let before = rolled(&b.metrics().await?);
        eventually(
            Duration::from_secs(20),
            "B refuses the rollback",
            || async {
                let _ = m.node.overlay().publish(key.clone(), rev1.encode()).await;
                (rolled(&b.metrics().await.ok()?) > before).then_some(())
            },
        )
        .await?;
        // In the DHT: A and B hold revision 2 and refuse both. (A put may reach only one
        // of them while the routing tables settle: put again until both were refused.)
        let before = rejected(&a.metrics().await?) + rejected(&b.metrics().await?);
        eventually(Duration::from_secs(20), "DHT puts refused", || async {
            for rec in [rev1.encode(), forged.encode()] {
                let _ = m
                    .node
                    .overlay()
                    .put_record(key.clone().into_bytes(), rec)
                    .await;
            }
            let after = rejected(&a.metrics().await.ok()?) + rejected(&b.metrics().await.ok()?);
            (after >= before + 2).then_some(())
        })
        .await?;
        // B still resolves revision 2.
        let r = resolve().await?;
        assert_eq!(r.revision, 2, "{r:?}");
        assert_eq!(r.id, r2.id);
        for n in [a, b, m] {
            n.stop().await;
        }
        Ok(())
    })
    .await
}

/// A broker that lies (answers with an item that does not match the query) is not
/// believed: the asker drops that answer and keeps the honest one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_broker_is_not_believed() -> Result<()> {
    use kith_search::protocol::{self as wire, BrokerRequest, BrokerResponse, Entry, WireHit};
    bounded(LIMIT, async {
        let liar = TestNode::start(|_| {}).await?;
        let l_addr = liar.addr().await?;
        let limits = kith_overlay::inbound::Limits {
            per_peer: 4,
            total: 16,
        };
        let mut incoming = liar.node.overlay().accept(
            wire::BROKER_PROTOCOL,
            limits,
            std::sync::Arc::new(|_| Vec::new()),
        )?;
        let me = liar.peer_id();
        let entry = |name: &str| Entry {
            id: kith_core::ContentId::manifest(name.as_bytes()).to_string(),
            name: name.into(),
            path: name.into(),
            size: 1,
            kind: "file".into(),
            name_key: None,
            revision: None,
        };
        let (honest, fake) = (entry("holiday.jpg"), entry("invoice.exe"));
        let hits: Vec<WireHit> = [honest.clone(), fake.clone()]
            .into_iter()
            .map(|e| WireHit {
                entry: e,
                peer: me.clone(),
                addrs: Vec::new(),
                score: 1.0,
            })
            .collect();
        let server = tokio::spawn(async move {
            while let Some(kith_overlay::inbound::Incoming { mut stream, .. }) =
                incoming.next().await
            {
                let s = &mut stream;
                let Ok(Some(req)) =
                    wire::read_frame::<_, BrokerRequest>(s, wire::MAX_BROKER_FRAME).await
                else {
                    continue;
                };
                let resp = match req {
                    BrokerRequest::Search { .. } => BrokerResponse::Hits { hits: hits.clone() },
                    _ => BrokerResponse::Ok {
                        known: true,
                        ttl_secs: 60,
                    },
                };
                let _ = wire::write_frame(s, &resp).await;
            }
        });
        let d = TestNode::start(|o| {
            o.config.bootstrap = vec![l_addr.clone()];
            o.config.broker = Some(l_addr.clone());
        })
        .await?;
        let r = d.search("holiday", "broker", 2000).await?;
        let ids: Vec<&str> = r.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids, [honest.id.as_str()], "{r:?}");
        assert!(!ids.contains(&fake.id.as_str()));
        server.abort();
        liar.stop().await;
        d.stop().await;
        Ok(())
    })
    .await
}
