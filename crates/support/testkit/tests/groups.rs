//! Attacks on people and groups, in process: a man in the middle with someone else's
//! certificate, forged, replayed and out-of-order log entries from a member, an invite
//! for another group, a removed member's old certificate, a device of a removed person,
//! and a flood of junk on a group's topic. Each is refused (and counted), nothing stored
//! is lost, and the node keeps serving.

use std::sync::Arc;
use std::time::Duration;

use kith_api::{CreateGroup, InviteRequest, JoinGroup};
use kith_core::frame;
use kith_core::person::DeviceCert;
use kith_core::seal::SealKey;
use kith_core::store::now_secs;
use kith_groups::op::{Body, Op, hex_hash};
use kith_groups::protocol::{self as gp, Heads, Request, Response};
use kith_overlay::inbound::{Incoming, Limits};
use kith_overlay::{Keypair, PeerId};
use kith_people::protocol::{Hello, PERSON_PROTOCOL};
use kith_testkit::{RawPeer, Result, TestNode, bounded, metric};

const LIMIT: Duration = Duration::from_secs(120);

/// A peer that speaks the group protocols by hand, with a real person key and device
/// certificate (so it can be a member, then a removed one).
struct Mallory {
    raw: RawPeer,
    device: Keypair,
    person: Keypair,
    cert: DeviceCert,
    /// The topics of the groups it joined (derived from their genesis).
    topics: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Mallory {
    async fn start(bootstrap: &str) -> Result<Self> {
        Self::of_person(Keypair::generate_ed25519(), bootstrap).await
    }

    async fn of_person(person: Keypair, bootstrap: &str) -> Result<Self> {
        let device = Keypair::generate_ed25519();
        let id = device.public().to_peer_id();
        let seal = SealKey::of_device(&device)?.public();
        let cert = DeviceCert::sign(&person, &id, &seal, now_secs())?;
        let raw = RawPeer::with_key(device.clone(), &[bootstrap.to_owned()]).await?;
        Ok(Self {
            raw,
            device,
            person,
            cert,
            topics: Default::default(),
        })
    }

    fn topic(&self, group: &str) -> Result<String> {
        let t = self.topics.lock().map_err(|_| "poisoned")?;
        Ok(t.get(group).ok_or("not joined")?.clone())
    }

    fn id(&self) -> PeerId {
        self.raw.overlay.peer_id()
    }

    fn person_id(&self) -> String {
        self.cert.person.to_string()
    }

    /// Sends one request on `/kith/group/1.0.0`; every answer frame.
    async fn ask(&self, to: PeerId, req: &Request) -> Result<Vec<Response>> {
        let mut s = self.raw.overlay.open_stream(to, gp::PROTOCOL).await?;
        frame::write(&mut s, req).await?;
        let mut out = Vec::new();
        while let Some(r) = frame::read::<_, Response>(&mut s, gp::MAX_FRAME).await? {
            let last = !matches!(r, Response::Ops { more: true, .. });
            out.push(r);
            if last {
                break;
            }
        }
        Ok(out)
    }

    /// Sends a hello with `cert`; whether the peer answered with its own.
    async fn hello(&self, to: PeerId, cert: DeviceCert) -> Result<bool> {
        let mut s = self.raw.overlay.open_stream(to, PERSON_PROTOCOL).await?;
        let h = Hello {
            cert,
            revoked: Vec::new(),
        };
        frame::write(&mut s, &h).await?;
        let answer = frame::read::<_, Hello>(&mut s, 64 * 1024).await;
        Ok(matches!(answer, Ok(Some(_))))
    }

    /// Answers every sync request with `ops`.
    fn serve(&self, ops: Vec<Op>) -> Result<()> {
        let limits = Limits {
            per_peer: 8,
            total: 64,
        };
        let mut inbound =
            self.raw
                .overlay
                .accept(gp::PROTOCOL, limits, Arc::new(|_| Vec::new()))?;
        tokio::spawn(async move {
            while let Some(Incoming { mut stream, .. }) = inbound.next().await {
                let ops = ops.clone();
                tokio::spawn(async move {
                    let _ = frame::read::<_, Request>(&mut stream, gp::MAX_FRAME).await;
                    let answer = Response::Ops { ops, more: false };
                    let _ = frame::write(&mut stream, &answer).await;
                });
            }
        });
        Ok(())
    }

    /// Announces heads on a group's topic.
    async fn announce(&self, group: &str, heads: Vec<String>) -> Result<()> {
        let h = Heads {
            group: group.to_owned(),
            heads,
        };
        let data = serde_json::to_vec(&h)?;
        Ok(self.raw.overlay.publish(self.topic(group)?, data).await?)
    }

    fn sign(&self, group: &str, parents: Vec<[u8; 32]>, body: Body) -> Result<Op> {
        let c = self.cert.clone();
        Ok(Op::sign(
            &self.device,
            c,
            group.into(),
            parents,
            body,
            None,
            now_secs(),
        )?)
    }
}

async fn metrics_of(n: &TestNode) -> Result<String> {
    n.metrics().await
}

/// Polls `check` until true, bounded.
async fn until(what: &str, mut check: impl AsyncFnMut() -> Result<bool>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await? {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn invite(a: &TestNode, group: &str, uses: u32) -> Result<String> {
    let req = InviteRequest {
        uses: Some(uses),
        ..Default::default()
    };
    Ok(a.client().invite(group, &req).await?.token)
}

async fn create_group(a: &TestNode, name: &str) -> Result<String> {
    let req = CreateGroup {
        name: name.to_owned(),
        history: false,
    };
    Ok(a.client().create_group(&req).await?.group)
}

async fn join(n: &TestNode, token: String) -> Result<()> {
    n.client().join_group(&JoinGroup { token }).await?;
    Ok(())
}

async fn members(n: &TestNode, group: &str) -> Result<Vec<String>> {
    let v = n.client().members(group).await?;
    let mut out: Vec<String> = v.into_iter().map(|m| m.person).collect();
    out.sort();
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_is_not_the_devices_own_is_refused() -> Result<()> {
    bounded(LIMIT, async {
        let a = TestNode::start(|_| {}).await?;
        let b = TestNode::start(|_| {}).await?;
        let m = Mallory::start(&a.addr().await?).await?;
        let a_id: PeerId = a.peer_id().parse()?;
        // Replaying b's certificate from another device: it names b, not m.
        let b_cert = b.node.people_service().cert()?;
        assert!(!m.hello(a_id, b_cert.clone()).await?);
        // Claiming a's person with a certificate the person key did not sign.
        let mut forged = m.cert.clone();
        forged.person = a.node.people_service().person()?;
        assert!(!m.hello(a_id, forged).await?);
        assert!(metric(&metrics_of(&a).await?, "kith_people_refused") >= 2);
        assert_eq!(a.node.people_service().person_of(&m.id()), None);
        // Its own certificate is fine, and a keeps serving.
        assert!(m.hello(a_id, m.cert.clone()).await?);
        assert_eq!(
            a.node.people_service().person_of(&m.id()),
            Some(m.cert.person)
        );
        a.client().person().await?;
        Ok(())
    })
    .await
}

/// a makes a group; b and mallory join it (mallory by hand). Returns the group.
async fn group_with_mallory(a: &TestNode, b: &TestNode, m: &Mallory) -> Result<String> {
    let g = create_group(a, "club").await?;
    let req = Request::Join {
        group: g.clone(),
        invite: invite(a, &g, 1).await?,
        devices: vec![m.cert.clone()],
    };
    let answer = m.ask(a.peer_id().parse()?, &req).await?;
    let Some(Response::Ops { ops, .. }) = answer.first() else {
        return Err(format!("join refused: {answer:?}").into());
    };
    let genesis = ops.iter().find(|o| o.is_genesis()).ok_or("no genesis")?;
    m.topics
        .lock()
        .map_err(|_| "poisoned")?
        .insert(g.clone(), gp::topic(&genesis.hash()));
    join(b, invite(a, &g, 1).await?).await?;
    Ok(g)
}

/// Forged, replayed and out-of-order operations from a member are refused one by one.
async fn bad_operations(a: &TestNode, m: &Mallory, g: &str) -> Result<()> {
    let before = members(a, g).await?;
    let mut forged = m.sign(g, Vec::new(), Body::Leave)?;
    forged.body = Body::Promote {
        person: m.cert.person,
    };
    let genesis = m.sign(
        "",
        Vec::new(),
        Body::Create {
            name: "mine".into(),
            devices: vec![m.cert.clone()],
            history: false,
        },
    )?;
    let other = kith_groups::op::group_id(&genesis.hash());
    let replayed = m.sign(&other, vec![genesis.hash()], Body::Leave)?;
    let unknown_parent = m.sign(g, vec![[7u8; 32]], Body::Leave)?;
    m.serve(vec![forged, genesis, replayed, unknown_parent])?;
    m.raw.overlay.subscribe(m.topic(g)?).await?;
    let refused = || async {
        Ok::<_, kith_testkit::Error>(metric(&metrics_of(a).await?, "kith_groups_refused"))
    };
    let start = refused().await?;
    until("the bad operations to be refused", async || {
        let _ = m.announce(g, vec![hex_hash(&[9u8; 32])]).await;
        Ok(refused().await? >= start + 4)
    })
    .await?;
    assert_eq!(members(a, g).await?, before, "nothing taken in");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_attacks_are_refused_and_nothing_is_lost() -> Result<()> {
    bounded(LIMIT, async {
        let a = TestNode::start(|_| {}).await?;
        let addr = a.addr().await?;
        let b = TestNode::start(|o| o.config.bootstrap = vec![addr.clone()]).await?;
        let m = Mallory::start(&addr).await?;
        let a_id: PeerId = a.peer_id().parse()?;
        let g = group_with_mallory(&a, &b, &m).await?;
        assert_eq!(members(&a, &g).await?.len(), 3);
        bad_operations(&a, &m, &g).await?;
        // An invite for another group.
        let g2 = create_group(&a, "other").await?;
        let wrong = Request::Join {
            group: g.clone(),
            invite: invite(&a, &g2, 1).await?,
            devices: vec![m.cert.clone()],
        };
        let answer = m.ask(a_id, &wrong).await?;
        assert!(
            matches!(answer.as_slice(), [Response::Refused { reason }] if reason.contains("another group")),
            "{answer:?}"
        );
        after_removal(&a, &b, &m, &g).await?;
        junk_flood(&a, &b, &m, &g).await
    })
    .await
}

/// Mallory is removed: its old certificate, and a new device of its person, learn
/// nothing that came after; their announcements are refused.
async fn after_removal(a: &TestNode, b: &TestNode, m: &Mallory, g: &str) -> Result<()> {
    let a_id: PeerId = a.peer_id().parse()?;
    a.node.groups_service().remove(g, &m.person_id()).await?;
    let b_person = b.node.people_service().person()?.to_string();
    b.client().leave_group(g).await?;
    until("b's leaving to reach a", async || {
        Ok(!members(a, g).await?.contains(&b_person))
    })
    .await?;
    let sync = Request::Sync {
        group: g.to_owned(),
        have: Vec::new(),
        want: Vec::new(),
    };
    let m2 = Mallory::of_person(m.person.clone(), &a.addr().await?).await?;
    assert!(
        m2.hello(a_id, m2.cert.clone()).await?,
        "a valid certificate"
    );
    // It knows what its person knew.
    m2.topics
        .lock()
        .map_err(|_| "poisoned")?
        .insert(g.to_owned(), m.topic(g)?);
    for who in [m, &m2] {
        let ops: Vec<Op> = who
            .ask(a_id, &sync)
            .await?
            .into_iter()
            .flat_map(|r| match r {
                Response::Ops { ops, .. } => ops,
                _ => Vec::new(),
            })
            .collect();
        let leaves = ops.iter().filter(|o| matches!(o.body, Body::Leave)).count();
        assert_eq!(
            leaves, 0,
            "a removed person learns nothing after its removal"
        );
        assert!(ops.iter().any(|o| matches!(o.body, Body::Remove { .. })));
    }
    let rejected = metric(&metrics_of(a).await?, "kith_records_rejected");
    m2.raw.overlay.subscribe(m.topic(g)?).await?;
    until(
        "a removed person's announcements to be refused",
        async || {
            let _ = m2.announce(g, vec![hex_hash(&[1u8; 32])]).await;
            Ok(metric(&metrics_of(a).await?, "kith_records_rejected") > rejected)
        },
    )
    .await
}

/// 10,000 junk messages on the group's topic: refused, and the group works on.
async fn junk_flood(a: &TestNode, b: &TestNode, m: &Mallory, g: &str) -> Result<()> {
    let before = members(a, g).await?;
    let rejected = metric(&metrics_of(a).await?, "kith_records_rejected");
    for i in 0..10_000u32 {
        let junk = format!("{{\"junk\":{i}}}").into_bytes();
        let _ = m.raw.overlay.publish(m.topic(g)?, junk).await;
    }
    until("the junk to be refused", async || {
        Ok(metric(&metrics_of(a).await?, "kith_records_rejected") > rejected)
    })
    .await?;
    // Still serving, nothing lost: a invites b back and b rejoins.
    assert_eq!(members(a, g).await?, before);
    join(b, invite(a, g, 1).await?).await?;
    assert_eq!(members(a, g).await?.len(), before.len() + 1);
    Ok(())
}
