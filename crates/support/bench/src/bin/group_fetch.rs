//! A member fetches a file shared with a group, beside a file of the same size shared
//! publicly, between the same two `kith` daemons on loopback (files and data dirs on
//! tmpfs). The two fetches alternate (which goes first alternates too), five rounds; the
//! figure is the median time of each and the group's overhead.
//!
//! `cargo build --release -p kith -p kith-bench && target/release/group_fetch [MiB]`

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kith_bench::{Daemon, MIB, make_file, mbps, same_file, scratch, size_arg};

const ROUNDS: usize = 5;

fn text(v: &serde_json::Value, key: &str) -> Result<String> {
    Ok(v[key]
        .as_str()
        .context(format!("no {key} in {v}"))?
        .to_owned())
}

/// B fetches `id` into `out`; the time it took (the file is checked, then removed).
fn fetch(b: &Daemon, id: &str, src: &Path, out: &Path, size: u64) -> Result<Duration> {
    let start = Instant::now();
    let r = b.json(&["get", "--json", id, "-o", out.to_str().unwrap_or_default()])?;
    let t = start.elapsed();
    let fetched = r["fetched_bytes"].as_u64() == Some(size);
    if r["bytes"].as_u64() != Some(size) || !fetched || !same_file(src, out)? {
        bail!("fetch of {id} incomplete: {r}");
    }
    std::fs::remove_file(out)?;
    Ok(t)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() -> Result<()> {
    kith_bench::check_args("group_fetch [MIB]   (default 256)");
    let size = size_arg(256);
    let dir = scratch()?;
    let (public, group) = (dir.path().join("public.bin"), dir.path().join("group.bin"));
    make_file(&public, size, 1)?;
    make_file(&group, size, 2)?;
    let listen = ["--listen", "/ip4/127.0.0.1/tcp/0"];
    let a = Daemon::start(&dir.path().join("a"), &listen)?;
    let b_args = [listen[0], listen[1], "--bootstrap", &a.addr()?];
    let b = Daemon::start(&dir.path().join("b"), &b_args)?;
    let g = text(&a.json(&["group", "create", "--json", "bench"])?, "group")?;
    let token = text(&a.json(&["group", "invite", "--json", &g])?, "token")?;
    b.json(&["group", "join", "--json", &token])?;
    let path = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    let pid = text(&a.json(&["share", "--json", &path(&public)])?, "id")?;
    let gid = text(
        &a.json(&["share", "--json", "--group", &g, &path(&group)])?,
        "id",
    )?;
    let (mut pt, mut gt) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let out = dir.path().join(format!("out-{round}.bin"));
        // Each round fetches both again: the downloaded copies are unshared first.
        if round % 2 == 0 {
            pt.push(fetch(&b, &pid, &public, &out, size)?);
            gt.push(fetch(&b, &gid, &group, &out, size)?);
        } else {
            gt.push(fetch(&b, &gid, &group, &out, size)?);
            pt.push(fetch(&b, &pid, &public, &out, size)?);
        }
        for id in [&pid, &gid] {
            b.kith(&["unshare", id])?;
        }
    }
    let (p, gm) = (median(pt), median(gt));
    println!(
        "fetch of {} MiB between two daemons on loopback (tmpfs), median of {ROUNDS}",
        size / MIB
    );
    println!(
        "  public (baseline, same run): {:>6.2} s  {:>6.0} MB/s",
        p.as_secs_f64(),
        mbps(size, p)
    );
    println!(
        "  group member (kith):         {:>6.2} s  {:>6.0} MB/s",
        gm.as_secs_f64(),
        mbps(size, gm)
    );
    println!(
        "  group overhead: {:+.1} %  (target < 5 %)",
        (gm.as_secs_f64() / p.as_secs_f64() - 1.0) * 100.0
    );
    Ok(())
}
