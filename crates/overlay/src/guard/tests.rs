use futures::{AsyncReadExt, AsyncWriteExt};
use tokio::io::AsyncWriteExt as _;

use super::tap::Tap;
use super::*;

fn addr(s: &str) -> Multiaddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A guard with the given caps, and a source of connection IDs in admission order.
struct Harness {
    g: Behaviour,
    next: usize,
    local: Multiaddr,
    now: Instant,
}

impl Harness {
    fn new(per_ip: usize, total: usize, reserved: usize) -> Self {
        let limits = Limits {
            per_ip,
            total,
            reserved,
        };
        Self {
            g: Behaviour::new(limits, Handoff::default(), &mut Default::default()),
            next: 0,
            local: addr("/ip4/127.0.0.1/tcp/4001"),
            now: Instant::now(),
        }
    }

    /// A TCP connection from `ip` (a fresh port each time), with the slot the transport
    /// leaves for it.
    fn connect(&mut self, ip: &str) -> (ConnectionId, Result<(), Refused>) {
        self.next += 1;
        let id = ConnectionId::new_unchecked(self.next);
        let remote = addr(&format!("/ip4/{ip}/tcp/{}", 10_000 + self.next));
        let local = self.local.clone();
        self.g.handoff.put(&local, &remote, Arc::default());
        (id, self.g.admit(id, &local, &remote, self.now))
    }

    fn admitted(&mut self, ip: &str) -> ConnectionId {
        let (id, r) = self.connect(ip);
        assert_eq!(r, Ok(()), "{ip}");
        id
    }

    fn slot(&self, id: ConnectionId) -> Arc<Slot> {
        self.g.pending[&id].slot.clone().unwrap_or_default()
    }
}

#[test]
fn one_source_cannot_take_more_than_its_share() {
    let mut h = Harness::new(2, 8, 2);
    h.admitted("127.0.0.2");
    h.admitted("127.0.0.2");
    assert_eq!(h.connect("127.0.0.2").1, Err(Refused::PerSource));
    assert_eq!(h.connect("127.0.0.3").1, Ok(()));
    // IPv6 sources are counted by /64; relayed connections are not the guard's.
    assert_eq!(
        source(&addr("/ip6/2001:db8:1:2:aaaa::1/tcp/1")),
        source(&addr("/ip6/2001:db8:1:2:bbbb::7/tcp/1"))
    );
    assert_eq!(
        source(&addr(
            "/ip4/10.0.0.1/tcp/1/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo/p2p-circuit"
        )),
        None
    );
}

#[test]
fn a_new_handshake_evicts_the_oldest_silent_one() {
    let mut h = Harness::new(8, 8, 2);
    // Six unknown sources fill the open share (8 - 2 reserved).
    let ids: Vec<_> = (2..8).map(|i| h.admitted(&format!("10.0.0.{i}"))).collect();
    // The oldest two have spoken; the third is the oldest silent one.
    h.slot(ids[0]).hear();
    h.slot(ids[1]).hear();
    let third = h.slot(ids[2]);
    let newcomer = h.admitted("10.0.1.1");
    assert!(third.is_cut(), "the oldest silent handshake was not cut");
    assert!(!h.g.pending.contains_key(&ids[2]));
    assert!(h.g.pending.contains_key(&ids[0]) && h.g.pending.contains_key(&newcomer));
    assert_eq!(h.g.unknown, 6);
    // Once every one has spoken, a new one is refused: nobody is cut for it.
    for id in h.g.pending.keys().copied().collect::<Vec<_>>() {
        h.slot(id).hear();
    }
    assert_eq!(h.connect("10.0.1.2").1, Err(Refused::Full));
    assert_eq!(h.g.pending.len(), 6);
}

#[test]
fn sources_cut_for_silence_before_go_first() {
    let mut h = Harness::new(8, 4, 0);
    // A flood from four addresses: each is cut for silence once, by the next four.
    for i in 1..=8 {
        h.admitted(&format!("10.0.0.{}", (i - 1) % 4 + 1));
    }
    // A new peer, then the flood comes back from the same addresses: the new peer
    // stays, silent and now the oldest, while the flood's handshakes replace each other.
    let newcomer = h.admitted("192.168.1.7");
    let slot = h.slot(newcomer);
    for i in 0..20 {
        h.admitted(&format!("10.0.0.{}", i % 4 + 1));
    }
    assert!(
        !slot.is_cut(),
        "a new peer went before the flood's repeat sources"
    );
    // With no repeat source left to cut, the oldest silent one goes, whoever it is.
    let fresh = (0..3).map(|i| h.admitted(&format!("10.2.0.{i}"))).count();
    assert_eq!(fresh, 3);
    h.admitted("10.3.0.1");
    assert!(slot.is_cut());
}

#[test]
fn known_sources_keep_their_share() {
    let mut h = Harness::new(8, 8, 2);
    h.g.note_known(&addr("/ip4/192.168.1.7/tcp/4001"));
    // Unknown sources take their whole share (8 - 2 reserved); all but the first speak.
    let unknown: Vec<_> = (2..8).map(|i| h.admitted(&format!("10.0.0.{i}"))).collect();
    for id in &unknown[1..] {
        h.slot(*id).hear();
    }
    let silent_unknown = h.slot(unknown[0]);
    // A known peer's source gets the reserve, evicting nobody.
    let k1 = h.admitted("192.168.1.7");
    let k2 = h.admitted("192.168.1.7");
    h.slot(k2).hear();
    assert!(!silent_unknown.is_cut());
    assert_eq!(h.g.pending.len(), 8);
    // A new unknown source evicts the silent unknown handshake, never a known one...
    let n1 = h.admitted("10.0.1.1");
    assert!(silent_unknown.is_cut());
    h.slot(n1).hear();
    assert_eq!(h.connect("10.0.1.2").1, Err(Refused::Full));
    assert!(!h.slot(k1).is_cut());
    // ...while a known source, with every slot taken, may evict a silent known one.
    let silent_known = h.slot(k1);
    h.admitted("192.168.1.7");
    assert!(silent_known.is_cut());
    assert_eq!(h.g.pending.len(), 8);
}

#[test]
fn the_deadline_shrinks_as_slots_fill_with_peers_that_spoke() {
    let mut h = Harness::new(100, 100, 0);
    assert_eq!(h.g.deadline(), CALM_DEADLINE);
    // Silent handshakes do not count: any new one would take their place.
    let silent: Vec<_> = (0..40)
        .map(|i| h.admitted(&format!("10.1.0.{}", i + 1)))
        .collect();
    let spoke = |h: &mut Harness, n: usize, from: usize| {
        for i in from..from + n {
            let id = h.admitted(&format!("10.0.0.{}", i + 1));
            h.slot(id).hear();
        }
    };
    spoke(&mut h, 50, 0);
    assert_eq!(h.g.deadline(), CALM_DEADLINE, "half full is calm");
    for id in &silent[..12] {
        h.slot(*id).hear();
    }
    let between = h.g.deadline();
    assert!(
        between < CALM_DEADLINE && between > PRESSED_DEADLINE,
        "{between:?}"
    );
    for id in &silent[12..25] {
        h.slot(*id).hear();
    }
    assert_eq!(h.g.deadline(), PRESSED_DEADLINE, "three quarters full");
    // Past the short deadline, the oldest go until the slots are calm enough that the
    // rest are within theirs.
    let first = h.slot(silent[0]);
    h.g.expire(h.now + PRESSED_DEADLINE);
    assert!(first.is_cut());
    assert!(
        h.g.pending.len() < 90 && h.g.pending.len() > 50,
        "{}",
        h.g.pending.len()
    );
    h.g.expire(h.now + CALM_DEADLINE);
    assert!(h.g.pending.is_empty());
    assert_eq!(h.g.unknown, 0);
    assert!(h.g.per_ip.is_empty());
}

#[test]
fn a_known_peers_handshake_keeps_the_calm_deadline() {
    let mut h = Harness::new(8, 8, 2);
    h.g.note_known(&addr("/ip4/192.168.1.7/tcp/4001"));
    let k = h.admitted("192.168.1.7");
    h.slot(k).hear();
    for i in 2..8 {
        let id = h.admitted(&format!("10.0.0.{i}"));
        h.slot(id).hear();
    }
    assert_eq!(h.g.deadline(), PRESSED_DEADLINE);
    h.g.expire(h.now + PRESSED_DEADLINE * 2);
    assert!(h.g.pending.contains_key(&k));
    assert!(
        h.g.pending.len() < 7,
        "strangers past the short deadline stay"
    );
    h.g.expire(h.now + CALM_DEADLINE);
    assert!(h.g.pending.is_empty());
}

#[test]
fn a_finished_or_failed_handshake_frees_its_slot() {
    let mut h = Harness::new(8, 8, 0);
    let (id, r) = h.connect("10.0.0.2");
    assert_eq!(r, Ok(()));
    assert_eq!(h.g.handoff.len(), 0, "the guard took the slot");
    let slot = h.slot(id);
    h.g.done(id);
    assert!(h.g.pending.is_empty() && h.g.per_ip.is_empty());
    assert!(!slot.is_cut());
    // A QUIC handshake is counted, but not cut: QUIC's own timeout ends it.
    h.next += 1;
    let quic = ConnectionId::new_unchecked(h.next);
    let local = h.local.clone();
    let r =
        h.g.admit(quic, &local, &addr("/ip4/10.0.0.3/udp/9/quic-v1"), h.now);
    assert_eq!(r, Ok(()));
    h.g.expire(h.now + CALM_DEADLINE * 2);
    assert!(h.g.pending.contains_key(&quic));
}

/// A loopback connection: the client end, and the server end in a tap the guard follows.
async fn tapped() -> (tokio::net::TcpStream, Tap, Arc<Slot>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    let (tap, slot) = Tap::followed(accepted.unwrap().0);
    (client.unwrap(), tap, slot)
}

#[tokio::test]
async fn the_tap_sees_bytes_before_the_handshake_reads_them_and_fails_once_cut() {
    let (mut client, mut tap, slot) = tapped().await;
    assert!(!slot.heard(), "nothing sent yet");
    client.write_all(b"hello").await.unwrap();
    // Waiting in the socket (nothing read yet) counts: the peer has spoken.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !slot.heard() {
        assert!(tokio::time::Instant::now() < deadline, "bytes never seen");
        tokio::task::yield_now().await;
    }
    let mut buf = [0u8; 5];
    tap.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    slot.cut();
    let e = tap.read(&mut buf).await.err();
    assert_eq!(
        e.map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionAborted)
    );
    assert!(tap.write_all(b"x").await.is_err());
}

#[tokio::test]
async fn a_cut_wakes_a_handshake_waiting_to_read_and_a_settled_tap_passes_through() {
    let (client, mut tap, slot) = tapped().await;
    let waiting = tokio::spawn(async move {
        let mut buf = [0u8; 1];
        tap.read(&mut buf).await.map_err(|e| e.kind())
    });
    tokio::task::yield_now().await;
    slot.cut();
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
    assert!(
        matches!(r, Ok(Ok(Err(std::io::ErrorKind::ConnectionAborted)))),
        "{r:?}"
    );
    drop(client);
    // A peer that hangs up without a word is silent too.
    let (client, mut tap, slot) = tapped().await;
    drop(client);
    assert!(!slot.heard());
    // Once settled, the tap lets go: a later cut is not its business.
    slot.settle();
    let mut buf = [0u8; 1];
    assert_eq!(tap.read(&mut buf).await.ok(), Some(0));
    slot.cut();
    assert_eq!(tap.read(&mut buf).await.ok(), Some(0));
}
