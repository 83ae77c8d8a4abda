//! Reachability, relays, hole punching and rendezvous, on loopback in one process.
//! (The NAT test network in `scripts/testnet.sh` covers real NATs; see `tests/testnet.rs`.)

use std::time::Duration;

use kith_api::Status;
use kith_testkit::{Result, TestNode, bounded, eventually, metric};

const LIMIT: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(30);

/// A relay serves only once it knows an address it is reachable at (on the Internet
/// AutoNAT confirms one; here the operator announces it, as `kith up --announce` does).
async fn announce(n: &TestNode) -> Result<()> {
    let s = n.node.overlay().status().await?;
    let a = s.listen_addrs.first().ok_or("no listen address")?;
    n.node.overlay().add_external_address(a.parse()?).await?;
    Ok(())
}

/// Whether status `s` shows a reservation held on `relay`.
fn reserved_on(s: &Status, relay: &str) -> bool {
    s.relays
        .iter()
        .any(|r| r.peer_id == relay && r.state == "reserved")
}

/// A broker is a relay and a rendezvous point: a peer that is not publicly reachable
/// reserves a slot on it, a second peer that knows only the broker finds the first through
/// rendezvous, reaches it through the relay, and the two upgrade to a direct connection by
/// hole punching (DCUtR); status shows each step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_rendezvous_and_hole_punch() -> Result<()> {
    bounded(LIMIT, async {
        let broker = TestNode::start(|o| {
            o.config.serve_broker = true;
            o.search.serve_broker = true;
        })
        .await?;
        let b_addr = broker.addr().await?;
        announce(&broker).await?;
        let b_id = broker.peer_id();
        let with_broker = |o: &mut kith_node::Options| {
            o.config.broker = Some(b_addr.clone());
            // On loopback AutoNAT cannot say "private"; a relay the user names is used
            // while reachability is unknown.
            o.config.relays = vec![b_addr.clone()];
        };
        let a = TestNode::start(with_broker).await?;
        let c = TestNode::start(with_broker).await?;
        for n in [&a, &c] {
            eventually(WAIT, "a relay reservation on the broker", || async {
                let s = n.client().status().await.ok()?;
                reserved_on(&s, &b_id).then_some(())
            })
            .await?;
        }
        let s = a.client().status().await?;
        assert_eq!(s.reachability, "unknown", "{s:?}");
        assert_eq!(
            s.dht, "server",
            "unknown reachability keeps serving the DHT: {s:?}"
        );
        let circuit = s.relays.first().map(|r| r.addr.clone()).unwrap_or_default();
        assert!(circuit.contains("/p2p-circuit/p2p/"), "{circuit}");
        let s = broker.client().status().await?;
        assert!(s.relay_server, "{s:?}");
        // Rendezvous: a and c find each other through the broker only, and end up with a
        // direct connection (relayed first, then hole punched; on loopback it succeeds).
        let c_id = c.peer_id();
        let direct = eventually(WAIT, "a direct connection a -> c", || async {
            let s = a.client().status().await.ok()?;
            let to_c: Vec<_> = s.connections.iter().filter(|x| x.peer_id == c_id).collect();
            (!to_c.is_empty() && to_c.iter().all(|x| x.path == "direct")).then_some(())
        })
        .await;
        direct?;
        // Both registered at the broker's rendezvous point and found each other there.
        for n in [&a, &c] {
            eventually(WAIT, "a peer found through rendezvous", || async {
                let m = n.metrics().await.ok()?;
                (metric(&m, "kith_rendezvous_discovered_total") >= 1).then_some(())
            })
            .await?;
        }
        for n in [a, c, broker] {
            n.stop().await;
        }
        Ok(())
    })
    .await
}

/// The relay is not an open proxy: a circuit to a peer without a reservation is refused,
/// reservations beyond the limit are refused, and both are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_refuses_open_proxy_use() -> Result<()> {
    bounded(LIMIT, async {
        let relay = TestNode::start(|o| {
            o.config.relay = Some(true);
            o.config.relay_max_reservations = 1;
        })
        .await?;
        let r_addr = relay.addr().await?;
        announce(&relay).await?;
        let r_id = relay.peer_id();
        let t = TestNode::start(|o| o.config.relays = vec![r_addr.clone()]).await?;
        eventually(WAIT, "t's reservation", || async {
            let s = t.client().status().await.ok()?;
            reserved_on(&s, &r_id).then_some(())
        })
        .await?;
        // A second peer wants a reservation too: over the limit of one.
        let u = TestNode::start(|o| o.config.relays = vec![r_addr.clone()]).await?;
        eventually(WAIT, "the relay refusing a reservation", || async {
            let m = relay.metrics().await.ok()?;
            (metric(&m, "kith_relay_reservations_denied_total") >= 1).then_some(())
        })
        .await?;
        // An attacker asks the relay for a circuit to a peer that holds no reservation (a
        // plain node: the relay would be an open proxy to it).
        let x = TestNode::start(|_| {}).await?;
        let plain = TestNode::start(|_| {}).await?;
        let target: kith_overlay::Multiaddr =
            format!("{r_addr}/p2p-circuit/p2p/{}", plain.peer_id()).parse()?;
        let r = x.node.overlay().dial(target).await;
        assert!(
            r.is_err(),
            "circuit to a peer without reservation must fail"
        );
        eventually(WAIT, "the relay refusing the circuit", || async {
            let m = relay.metrics().await.ok()?;
            (metric(&m, "kith_relay_circuits_denied_total") >= 1).then_some(())
        })
        .await?;
        // A circuit to the peer that holds a reservation works.
        let ok: kith_overlay::Multiaddr =
            format!("{r_addr}/p2p-circuit/p2p/{}", t.peer_id()).parse()?;
        x.node.overlay().dial(ok).await?;
        for n in [t, u, x, plain, relay] {
            n.stop().await;
        }
        Ok(())
    })
    .await
}
