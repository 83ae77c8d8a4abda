//! Removal of one member from groups of N members, in process: N nodes (a real overlay,
//! people and groups service each) on loopback, connected as a tree, all members of one
//! group. An admin removes one member; the figure is the time until every other member
//! has applied the removal (p50, p99, max) and the bytes the nodes sent per member while
//! it spread. Baselines from the same run and mesh: the admin's own `remove` call (the
//! removal op's signing, its HPKE key wraps, the save), and a bare gossip message of
//! the same mesh reaching every member.
//!
//! With `--model`, no network: the work one removal costs at N members, measured
//! directly — the admin's signing and key wraps, the operation's size, and one member's
//! intake of it (verify, fold the log, unwrap its key) — beside one key wrap and one
//! signature check as the unit costs. For sizes a 2-core machine cannot run as N nodes.
//!
//! Usage: group_removal [--model] [N…]   (default 10 100)

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kith_core::person::DeviceCert;
use kith_core::store::now_secs;
use kith_core::tasks::{Fatal, Tasks};
use kith_groups::op::{Body, Op, group_id};
use kith_groups::{Groups, keys};
use kith_overlay::{Keypair, Overlay, RecordValidator, Rejected};
use kith_people::People;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[path = "group_removal/model.rs"]
mod model;

const GROUP_PREFIX: &str = "/bench/flood/";
/// How long every member may take to apply the removal.
const APPLY_LIMIT: Duration = Duration::from_secs(300);

struct Node {
    overlay: Overlay,
    groups: Groups,
    registry: Registry,
    person: String,
    flood: mpsc::Receiver<kith_overlay::GossipMessage>,
}

struct AcceptAll;

impl RecordValidator for AcceptAll {
    fn validate(&self, _: &[u8], _: &[u8], _: Option<&[u8]>) -> Result<(), Rejected> {
        Ok(())
    }
}

/// A person and device for each node, made as `kith init` makes them.
pub(crate) fn identities(dir: &std::path::Path, n: usize) -> Result<Vec<(Keypair, DeviceCert)>> {
    (0..n)
        .map(|i| {
            let device = Keypair::generate_ed25519();
            let people = dir.join(i.to_string()).join("people");
            kith_people::init(&people, &device)?;
            let book: serde_json::Value =
                serde_json::from_slice(&std::fs::read(people.join("person.json"))?)?;
            let cert: DeviceCert = serde_json::from_value(book["devices"][0].clone())?;
            Ok((device, cert))
        })
        .collect()
}

/// The group's log as the admin (node 0) would have built it: created, every other
/// person added, one key for all devices; and the group's ID.
pub(crate) fn build_log(ids: &[(Keypair, DeviceCert)]) -> Result<(String, Vec<Op>)> {
    let (admin, cert0) = ids.first().context("no nodes")?;
    let sign = |group: &str, parents: Vec<[u8; 32]>, body, key| {
        Op::sign(
            admin,
            cert0.clone(),
            group.into(),
            parents,
            body,
            key,
            now_secs(),
        )
    };
    let create = Body::Create {
        name: "bench".into(),
        devices: vec![cert0.clone()],
        history: false,
    };
    let genesis = sign("", Vec::new(), create, None)?;
    let gid = group_id(&genesis.hash());
    let mut prev = genesis.hash();
    let mut ops = vec![genesis];
    for (_, cert) in &ids[1..] {
        let body = Body::Add {
            person: cert.person,
            devices: vec![cert.clone()],
            admin: false,
            invite: None,
        };
        let op = sign(&gid, vec![prev], body, None)?;
        prev = op.hash();
        ops.push(op);
    }
    let certs: Vec<&DeviceCert> = ids.iter().map(|(_, c)| c).collect();
    let (update, _) = keys::new_epoch(&gid, &certs);
    ops.push(sign(&gid, vec![prev], Body::Rotate, Some(update))?);
    Ok((gid, ops))
}

/// [`build_log`], written into every node's groups dir.
fn write_log(dir: &std::path::Path, ids: &[(Keypair, DeviceCert)]) -> Result<String> {
    let (gid, ops) = build_log(ids)?;
    let json = serde_json::to_vec(&ops)?;
    for i in 0..ids.len() {
        let g = dir.join(i.to_string()).join("groups");
        std::fs::create_dir_all(&g)?;
        std::fs::write(g.join(format!("{gid}.json")), &json)?;
    }
    Ok(gid)
}

async fn start_node(
    dir: &std::path::Path,
    i: usize,
    device: &Keypair,
    bootstrap: Option<kith_overlay::Multiaddr>,
    stop: &CancellationToken,
) -> Result<Node> {
    let mut cfg = kith_overlay::Config::new(device.clone());
    cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    cfg.bootstrap = bootstrap.into_iter().collect();
    // Each loopback connection costs two descriptors of this one process: a cap keeps
    // large runs within the open-file limit, but a node at its cap refuses the children
    // that join through it (a 16 cap left 74 of 100 nodes outside the mesh).
    cfg.max_connections = max_connections();
    cfg.handshakes = kith_overlay::HandshakeLimits {
        per_ip: 4096,
        total: 4096,
        reserved: 0,
    };
    let mut registry = Registry::default();
    let (overlay, _actor) = Overlay::start(cfg, &mut registry, stop.clone()).await?;
    let tasks = |name| Tasks::new(name, stop.clone(), Fatal::default());
    let home = dir.join(i.to_string());
    let people = People::start(
        kith_people::Config {
            dir: home.join("people"),
        },
        overlay.clone(),
        device.clone(),
        &mut registry,
        tasks("people"),
    )
    .await?;
    let groups = Groups::start(
        kith_groups::Config {
            dir: home.join("groups"),
        },
        overlay.clone(),
        people.clone(),
        device.clone(),
        &mut registry,
        tasks("groups"),
    )
    .await?;
    let flood = overlay.gossip(GROUP_PREFIX, Arc::new(AcceptAll)).await?;
    overlay.subscribe(format!("{GROUP_PREFIX}x")).await?;
    Ok(Node {
        overlay,
        groups,
        registry,
        person: people.person()?.to_string(),
        flood,
    })
}

/// Connections per node: 4096, or what `KITH_BENCH_MAX_CONNECTIONS` says.
fn max_connections() -> u32 {
    std::env::var("KITH_BENCH_MAX_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096)
}

/// Bytes a node sent so far (libp2p's bandwidth counters).
fn sent(n: &Node) -> u64 {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &n.registry).is_err() {
        return 0;
    }
    text.lines()
        .filter(|l| l.starts_with("libp2p_bandwidth") && l.to_lowercase().contains("outbound"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Starts `n` nodes as a tree (node i joins through node (i-1)/4).
async fn network(dir: &std::path::Path, n: usize, stop: &CancellationToken) -> Result<Vec<Node>> {
    let ids = identities(dir, n)?;
    let gid = write_log(dir, &ids)?;
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    for (i, (device, _)) in ids.iter().enumerate() {
        let boot = match i {
            0 => None,
            _ => {
                let parent = &nodes[(i - 1) / 4];
                let a = parent.overlay.listen_addrs().await?;
                let a = a.first().context("no listen address")?.clone();
                Some(format!("{a}/p2p/{}", parent.overlay.peer_id()).parse()?)
            }
        };
        nodes.push(start_node(dir, i, device, boot, stop).await?);
    }
    for nd in &nodes {
        if nd.groups.list()?.first().map(|s| s.members) != Some(n) {
            bail!("a node did not load the group {gid}");
        }
    }
    Ok(nodes)
}

/// Publishes gossip messages from node 0 until every node received one; the time each
/// node took to receive the first message of the last round it needed. (Also makes sure
/// the mesh carries messages at all.)
async fn flood(nodes: &mut [Node]) -> Result<Vec<Duration>> {
    let topic = format!("{GROUP_PREFIX}x");
    let deadline = Instant::now() + APPLY_LIMIT;
    let mut times = Vec::new();
    let mut pending: Vec<usize> = (1..nodes.len()).collect();
    let mut round = 0u32;
    while !pending.is_empty() && Instant::now() < deadline {
        round += 1;
        let sent_at = Instant::now();
        let (tx, mut rx) = mpsc::channel(nodes.len());
        for &i in &pending {
            let mut r = std::mem::replace(&mut nodes[i].flood, mpsc::channel(1).1);
            let tx = tx.clone();
            tokio::spawn(async move {
                let got = tokio::time::timeout(Duration::from_secs(3), r.recv()).await;
                let at = matches!(got, Ok(Some(_))).then(|| sent_at.elapsed());
                let _ = tx.send((i, at, r)).await;
            });
        }
        drop(tx);
        nodes[0]
            .overlay
            .publish(topic.clone(), format!("ping {round}").into_bytes())
            .await?;
        let mut still = Vec::new();
        while let Some((i, at, r)) = rx.recv().await {
            nodes[i].flood = r;
            match at {
                Some(t) => times.push(t),
                None => still.push(i),
            }
        }
        pending = still;
    }
    if !pending.is_empty() {
        bail!("{} nodes never received a gossip message", pending.len());
    }
    Ok(times)
}

struct Figures {
    apply: Vec<Duration>,
    remove_call: Duration,
    bytes_per_member: u64,
    admin_bytes: u64,
    /// What the nodes send per member in the same time with nothing happening (DHT,
    /// identify and gossip upkeep), measured just before.
    idle_per_member: u64,
}

/// Bytes all nodes send in `d` with nothing happening in the group.
async fn idle_bytes(nodes: &[Node], d: Duration) -> u64 {
    let before: u64 = nodes.iter().map(sent).sum();
    tokio::time::sleep(d).await;
    nodes.iter().map(sent).sum::<u64>() - before
}

/// The admin removes the last node's person; the time each other member applies it.
async fn removal(nodes: &[Node]) -> Result<Figures> {
    let n = nodes.len();
    let gid = nodes[0]
        .groups
        .list()?
        .first()
        .context("no group")?
        .group
        .clone();
    let gone = nodes[n - 1].person.clone();
    let idle = idle_bytes(nodes, Duration::from_secs(3)).await;
    let before: Vec<u64> = nodes.iter().map(sent).collect();
    let (tx, mut rx) = mpsc::channel(n);
    let t0 = Instant::now();
    for nd in &nodes[1..n - 1] {
        let (g, mut ev, tx) = (nd.groups.clone(), nd.groups.events(), tx.clone());
        tokio::spawn(async move {
            let deadline = t0 + APPLY_LIMIT;
            loop {
                if g.list().ok().and_then(|l| l.first().map(|s| s.members)) == Some(n - 1) {
                    let _ = tx.send(Some(t0.elapsed())).await;
                    return;
                }
                if tokio::time::timeout_at(deadline.into(), ev.recv())
                    .await
                    .is_err()
                {
                    let _ = tx.send(None).await;
                    return;
                }
            }
        });
    }
    drop(tx);
    nodes[0].groups.remove(&gid, &gone).await?;
    let remove_call = t0.elapsed();
    let mut apply = vec![remove_call];
    while let Some(t) = rx.recv().await {
        apply.push(t.context("a member did not apply the removal in time")?);
    }
    // Let the last answers drain before the bytes are read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let window = t0.elapsed();
    let after: Vec<u64> = nodes.iter().map(sent).collect();
    let total: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    let members = n as u64 - 1;
    let idle_in_window = (idle as f64 * window.as_secs_f64() / 3.0) as u64;
    Ok(Figures {
        apply,
        remove_call,
        bytes_per_member: total / members,
        admin_bytes: after[0] - before[0],
        idle_per_member: idle_in_window / members,
    })
}

async fn run(n: usize) -> Result<()> {
    let dir = kith_bench::scratch()?;
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let t = Instant::now();
    let mut nodes = network(dir.path(), n, &stop).await?;
    let mut base = flood(&mut nodes).await?;
    eprintln!(
        "{n} nodes up and meshed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The bare gossip baseline, once the mesh is settled.
    for nd in nodes.iter_mut() {
        while nd.flood.try_recv().is_ok() {}
    }
    base = match flood(&mut nodes).await {
        Ok(b) => b,
        Err(_) => base,
    };
    base.sort();
    let f = removal(&nodes).await?;
    let mut apply = f.apply;
    apply.sort();
    println!(
        "group removal, {n} members (in process, loopback, tree of degree 4, at most {} connections per node)\n  \
         kith: every member applied it  p50 {}  p99 {}  max {}\n  \
         bytes sent per member {}, of which upkeep {} (same time, idle)  (admin sent {})\n  \
         baseline, same run: admin's remove() call {}; a bare gossip message reached all  p50 {}  p99 {}",
        max_connections(),
        ms(percentile(&apply, 0.5)),
        ms(percentile(&apply, 0.99)),
        ms(apply.last().copied().unwrap_or_default()),
        f.bytes_per_member,
        f.idle_per_member,
        f.admin_bytes,
        ms(f.remove_call),
        ms(percentile(&base, 0.5)),
        ms(percentile(&base, 0.99)),
    );
    stop.cancel();
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let modelled = args.iter().any(|a| a == "--model");
    let sizes: Vec<usize> = args
        .iter()
        .filter(|a| *a != "--model")
        .map(|a| a.parse().context("sizes are numbers of members"))
        .collect::<Result<_>>()?;
    let sizes = if sizes.is_empty() {
        vec![10, 100]
    } else {
        sizes
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for n in sizes {
        if n < 3 {
            bail!("a group of at least 3 members");
        }
        if modelled {
            model::run(n)?;
        } else {
            rt.block_on(run(n))?;
        }
    }
    Ok(())
}
