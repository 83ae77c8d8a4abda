//! The work one removal costs at N members, without the network.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kith_core::person::DeviceCert;
use kith_core::seal::{self, SealKey};
use kith_core::store::now_secs;
use kith_groups::keys::{self, Keyring};
use kith_groups::op::{Body, Hash, Op};
use kith_groups::state::State;

use super::{build_log, identities, ms};

/// Measures one removal at `n` members and prints it.
pub fn run(n: usize) -> Result<()> {
    let dir = kith_bench::scratch()?;
    let ids = identities(dir.path(), n)?;
    let (gid, ops) = build_log(&ids)?;
    let (admin, cert0) = ids.first().context("no members")?;
    let gone = &ids.last().context("no members")?.1;
    let last = ops.last().context("empty log")?.hash();

    // The admin: a new key wrapped to every remaining device, the op signed.
    let t = Instant::now();
    let remaining: Vec<&DeviceCert> = ids[..n - 1].iter().map(|(_, c)| c).collect();
    let (update, _) = keys::new_epoch(&gid, &remaining);
    let epoch = update.epoch.clone();
    let body = Body::Remove {
        person: gone.person,
    };
    let remove = Op::sign(
        admin,
        cert0.clone(),
        gid.clone(),
        vec![last],
        body,
        Some(update),
        now_secs(),
    )?;
    let admin_time = t.elapsed();
    let size = remove.encode().len();

    // One member: verify, fold the whole log again, take its keys (as a member does).
    let (device, _) = ids.get(1).context("no second member")?;
    let me = device.public().to_peer_id().to_string();
    let sealer = SealKey::of_device(device)?;
    let mut log: HashMap<Hash, Op> = ops.iter().map(|o| (o.hash(), o.clone())).collect();
    let t = Instant::now();
    remove.verify()?;
    log.insert(remove.hash(), remove.clone());
    let state = State::fold(&log);
    let mut ring = Keyring::default();
    for h in &state.applied {
        if let Some(op) = log.get(h) {
            ring.take(&gid, op, &me, &sealer);
        }
    }
    let member_time = t.elapsed();
    if state.members.len() != n - 1 || ring.get(&epoch).is_none() {
        bail!("the member did not apply the removal");
    }

    let (wrap, check) = unit_costs(&remaining, &remove)?;
    println!(
        "group removal, {n} members (modelled: the work without the network)\n  \
         admin signs it and wraps the new key {} times: {}; the operation is {size} bytes ({} per member)\n  \
         one member takes it in (verify, fold the {}-operation log, unwrap): {}\n  \
         unit costs, same run: one key wrap {:.0} µs; one signature check {:.0} µs",
        n - 1,
        ms(admin_time),
        size / (n - 1),
        log.len(),
        ms(member_time),
        micros(wrap),
        micros(check),
    );
    Ok(())
}

/// One HPKE wrap to a device, and one operation's signature check (medians of 100).
fn unit_costs(devices: &[&DeviceCert], op: &Op) -> Result<(Duration, Duration)> {
    let cert = devices.first().context("no device")?;
    let public = cert.seal_key()?;
    let mut wraps = Vec::new();
    let mut checks = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        seal::to_device(&public, b"bench", &[7u8; 32])?;
        wraps.push(t.elapsed());
        let t = Instant::now();
        op.verify()?;
        checks.push(t.elapsed());
    }
    wraps.sort();
    checks.sort();
    Ok((wraps[50], checks[50]))
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
