//! NAT traversal on the test network (`scripts/testnet.sh`; needs root):
//!
//! 1. hole-punch success over N tries per NAT kind (home 1 ↔ home 2: both NATs allow it;
//!    home 1 ↔ home 3: symmetric NAT), each try with fresh identities and fresh ports;
//!    with the time to the first byte (a 64 KiB fetch from a fresh start);
//! 2. throughput direct (after the hole punch) vs relayed (across the symmetric NAT);
//! 3. QUIC vs TCP throughput with 2% loss each way and 50 ms of extra round trip.
//!
//! Baseline, measured in the same run over the same links: plain TCP (no kith, no NAT
//! traversal) from home 1 to the relay host, this program sending to itself.
//!
//! Usage: nat [--tries N] [--size MB] [--lossy-size MB] [--reps N]   (`--tries 0` skips part 1)
//! Build first: cargo build --release -p kith -p kith-bench

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use kith_bench::{MIB, kith_bin, make_file};
use kith_testkit::testnet::{RELAY_IP, Testnet, available, broker_args, connections_to};
use serde_json::Value;

fn ok<T>(r: kith_testkit::Result<T>) -> Result<T> {
    r.map_err(|e| anyhow!("{e}"))
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Starts a home node `name` on host `h`, listening on `listen`, registered with `broker`.
fn start_home(net: &Testnet, h: &str, name: &str, broker: &str, listen: &str) -> Result<()> {
    ok(net.start(
        h,
        name,
        &[
            "up",
            "--no-mdns",
            "--autonat-private-ips",
            "--listen",
            listen,
            "--broker",
            broker,
        ],
    ))?;
    ok(net.wait_status(
        h,
        name,
        "a relay reservation",
        Duration::from_secs(90),
        |s| {
            s["relays"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x["state"] == "reserved"))
        },
    ))?;
    Ok(())
}

fn share(net: &Testnet, h: &str, name: &str, path: &Path) -> Result<String> {
    let o = ok(net.kith(
        h,
        name,
        &["share", &path.display().to_string()],
        Duration::from_secs(120),
    ))?;
    if !o.status.success() {
        bail!("share: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// Fetches `id`; returns the seconds it took and the final JSON line.
fn fetch(net: &Testnet, h: &str, name: &str, id: &str, out: &Path) -> Result<(f64, Value)> {
    let t = Instant::now();
    let o = ok(net.kith(
        h,
        name,
        &[
            "--json",
            "get",
            id,
            "-o",
            &out.display().to_string(),
            "--timeout",
            "60",
        ],
        Duration::from_secs(300),
    ))?;
    let secs = t.elapsed().as_secs_f64();
    if !o.status.success() {
        bail!("get: {}", String::from_utf8_lossy(&o.stderr));
    }
    let line = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    Ok((secs, serde_json::from_str(&line)?))
}

/// The path of the connections from `name` to `peer` once settled: `direct` as soon as one
/// is, else `relayed` after `patience`.
fn path_to(net: &Testnet, h: &str, name: &str, peer: &str, patience: Duration) -> String {
    let r = net.wait_status(h, name, "a direct connection", patience, |s| {
        let c = connections_to(s, peer);
        !c.is_empty() && c.iter().all(|c| c["path"] == "direct")
    });
    match r {
        Ok(_) => "direct".into(),
        Err(_) => "relayed".into(),
    }
}

/// Starts the broker; returns its TCP and QUIC addresses.
fn start_broker(net: &Testnet) -> Result<(String, String)> {
    ok(net.start("relay", "broker", &strs(&broker_args())))?;
    let id = ok(net.peer_id("relay", "broker"))?;
    Ok((
        format!("/ip4/{RELAY_IP}/tcp/4001/p2p/{id}"),
        format!("/ip4/{RELAY_IP}/udp/4001/quic-v1/p2p/{id}"),
    ))
}

/// Hidden mode `--tcp-sink PORT`: accepts one connection, reads to its end, answers one
/// byte. Prints "ready" once listening.
fn tcp_sink(port: u16) -> Result<()> {
    let l = std::net::TcpListener::bind(("0.0.0.0", port))?;
    println!("ready");
    std::io::stdout().flush()?;
    let (mut c, _) = l.accept()?;
    let mut buf = vec![0u8; 1 << 20];
    while c.read(&mut buf)? > 0 {}
    c.write_all(b"k")?;
    Ok(())
}

/// Hidden mode `--tcp-send ADDR BYTES`: sends BYTES, waits for the sink's answer and
/// prints the seconds it took.
fn tcp_send(addr: &str, bytes: u64) -> Result<()> {
    let t = Instant::now();
    let mut c = std::net::TcpStream::connect(addr)?;
    let buf = vec![0x5au8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        c.write_all(buf.get(..n).unwrap_or_default())?;
        left -= n as u64;
    }
    c.shutdown(std::net::Shutdown::Write)?;
    let mut ack = [0u8; 1];
    c.read_exact(&mut ack)?;
    println!("{}", t.elapsed().as_secs_f64());
    Ok(())
}

/// Plain TCP from home 1 to the relay host: `bytes` in seconds.
fn tcp_baseline(net: &Testnet, bytes: u64, port: u16) -> Result<f64> {
    let me = std::env::current_exe()?;
    let mut sink = net
        .exec("relay", &me, &["--tcp-sink", &port.to_string()])
        .spawn()?;
    let mut ready = String::new();
    BufReader::new(
        sink.stdout
            .take()
            .ok_or_else(|| anyhow!("no sink stdout"))?,
    )
    .read_line(&mut ready)?;
    if ready.trim() != "ready" {
        bail!("TCP sink did not start");
    }
    let out = net
        .exec(
            "h1",
            &me,
            &[
                "--tcp-send",
                &format!("{RELAY_IP}:{port}"),
                &bytes.to_string(),
            ],
        )
        .output()?;
    let _ = sink.kill();
    let _ = sink.wait();
    if !out.status.success() {
        bail!("TCP baseline: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The sink and sender the baseline runs in the namespaces, and `--help`; `Ok(true)` when
/// one of them ran and the program is done.
fn special_modes(args: &[String]) -> Result<bool> {
    match args.get(1).map(String::as_str) {
        Some("--tcp-sink") => {
            tcp_sink(args.get(2).and_then(|p| p.parse().ok()).unwrap_or(5001))?;
            return Ok(true);
        }
        Some("--tcp-send") => {
            let addr = args.get(2).map(String::as_str).unwrap_or_default();
            let bytes = args.get(3).and_then(|b| b.parse().ok()).unwrap_or(0);
            tcp_send(addr, bytes)?;
            return Ok(true);
        }
        Some("-h" | "--help") => {
            println!(
                "usage: nat [--tries N] [--size MB] [--lossy-size MB] [--reps N]\n\
                 NAT benchmarks on the test network (root). Defaults: 20 tries, 32 MB, 4 MB, 3 reps;\n\
                 --tries 0 skips the hole-punch part."
            );
            return Ok(true);
        }
        Some(a)
            if a.starts_with('-')
                && !["--tries", "--size", "--lossy-size", "--reps"].contains(&a) =>
        {
            bail!("unknown option {a} (see --help)");
        }
        _ => {}
    }
    Ok(false)
}

/// 1. Hole punching: how often a direct connection comes up, and the time to first byte.
fn holepunch(net: &Testnet, broker: &str, tries: u64) -> Result<()> {
    println!(
        "\n1. hole punching, {tries} tries per NAT kind (fresh identities and ports each try)"
    );
    println!(
        "   {:<22} {:>9} {:>14} {:>14}",
        "pair", "direct", "TTFB p50", "TTFB p90"
    );
    let mut direct_ttfb = Vec::new();
    let mut relayed_ttfb = Vec::new();
    for (label, other) in [("cone <-> cone", "h2"), ("cone <-> symmetric", "h3")] {
        let mut direct = 0;
        let mut failed = 0;
        let mut ttfb = Vec::new();
        for t in 0..tries {
            let port = 4100 + t;
            let listen = format!("/ip4/0.0.0.0/tcp/{port},/ip4/0.0.0.0/udp/{port}/quic-v1");
            let (a, b) = (format!("a-{other}-{t}"), format!("b-{other}-{t}"));
            start_home(net, other, &b, broker, &listen)?;
            start_home(net, "h1", &a, broker, &listen)?;
            // New content each try, as a fresh share would be (no stale providers).
            let small = net.dir.path().join(format!("small-{other}-{t}.bin"));
            make_file(&small, 64 * 1024, 1000 + t)?;
            let id = share(net, other, &b, &small)?;
            let b_id = ok(net.peer_id(other, &b))?;
            match fetch(net, "h1", &a, &id, &net.dir.path().join(format!("{a}.bin"))) {
                Ok((secs, _)) => ttfb.push(secs * 1000.0),
                Err(e) => {
                    failed += 1;
                    eprintln!("   try {t} ({label}): fetch failed: {e}");
                    eprintln!(
                        "{}",
                        net.log(&a)
                            .lines()
                            .rev()
                            .take(15)
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                }
            }
            if path_to(net, "h1", &a, &b_id, Duration::from_secs(10)) == "direct" {
                direct += 1;
            }
            net.stop(&a);
            net.stop(&b);
        }
        let mut sorted = ttfb.clone();
        sorted.sort_by(|x, y| x.total_cmp(y));
        let p90 = sorted
            .get((sorted.len() * 9 / 10).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN);
        println!(
            "   {:<22} {:>5}/{:<3} {:>11.0} ms {:>11.0} ms   (fetches failed: {failed})",
            label,
            direct,
            tries,
            median(&mut ttfb.clone()),
            p90
        );
        if other == "h2" {
            direct_ttfb = ttfb;
        } else {
            relayed_ttfb = ttfb;
        }
    }
    println!(
        "   TTFB relayed / direct (p50): {:.2}x",
        median(&mut relayed_ttfb) / median(&mut direct_ttfb)
    );
    Ok(())
}

/// 2. Throughput of a fetch, direct vs relayed, beside plain TCP to the relay.
fn throughput(net: &Testnet, broker: &str, size: u64, reps: u64) -> Result<()> {
    println!(
        "\n2. throughput of a {} MB fetch, direct vs relayed (median of {reps}, new content each)",
        size / 1_000_000
    );
    let listen = "/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1";
    for h in ["h1", "h2", "h3"] {
        start_home(net, h, h, broker, listen)?;
    }
    let h1_id = ok(net.peer_id("h1", "h1"))?;
    let h3_id = ok(net.peer_id("h3", "h3"))?;
    let (mut d_secs, mut r_secs, mut base_secs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut d_path, mut r_path) = (String::new(), String::new());
    for rep in 0..reps {
        let f1 = net.dir.path().join(format!("f1-{rep}.bin"));
        let f3 = net.dir.path().join(format!("f3-{rep}.bin"));
        make_file(&f1, size, 11 + rep)?;
        make_file(&f3, size, 13 + rep)?;
        let id1 = share(net, "h1", "h1", &f1)?;
        let id3 = share(net, "h3", "h3", &f3)?;
        let out1 = net.dir.path().join(format!("o1-{rep}.bin"));
        let out3 = net.dir.path().join(format!("o3-{rep}.bin"));
        d_secs.push(fetch(net, "h2", "h2", &id1, &out1)?.0);
        d_path = path_to(net, "h2", "h2", &h1_id, Duration::from_secs(5));
        r_secs.push(fetch(net, "h1", "h1", &id3, &out3)?.0);
        r_path = path_to(net, "h1", "h1", &h3_id, Duration::from_secs(1));
        base_secs.push(tcp_baseline(net, size, 5001)?);
        for f in [&f1, &f3, &out1, &out3] {
            let _ = std::fs::remove_file(f);
        }
    }
    let mbs = |s: f64| size as f64 / s / MIB as f64;
    let (d, r, b) = (
        median(&mut d_secs),
        median(&mut r_secs),
        median(&mut base_secs),
    );
    println!(
        "   {:<34} {:>8.1} MiB/s  (time includes lookup and dial; path {d_path})",
        "kith home 2 <- home 1 (direct)",
        mbs(d)
    );
    println!(
        "   {:<34} {:>8.1} MiB/s  (path {r_path})",
        "kith home 1 <- home 3 (relayed)",
        mbs(r)
    );
    println!(
        "   {:<34} {:>8.1} MiB/s",
        "baseline: plain TCP home 1 -> relay",
        mbs(b)
    );
    println!(
        "   relayed / direct: {:.2}x; direct / baseline: {:.2}x",
        d / r,
        b / d
    );
    Ok(())
}

/// 3. A lossy, delayed WAN: kith over TCP and over QUIC, beside plain TCP.
fn lossy_wan(kith: &std::path::Path, lossy_size: u64, reps: u64) -> Result<()> {
    // 3. Lossy, delayed WAN on home 1.
    println!(
        "\n3. {} MB fetch home 2 <- home 1, whose WAN link has 2% loss each way and +50 ms round trip",
        lossy_size / 1_000_000
    );
    let net = ok(Testnet::up(kith, &["--delay", "25", "--loss", "2"]))?;
    let (broker_tcp, broker_quic) = start_broker(&net)?;
    let f = net.dir.path().join("lossy.bin");
    make_file(&f, lossy_size, 21)?;
    let mut results = Vec::new();
    // Each transport on its own, also to the broker: the address a NAT maps for it is
    // learnt on that transport, and the hole punch uses it.
    for (label, listen, broker) in [
        ("TCP", "/ip4/0.0.0.0/tcp/4201", &broker_tcp),
        ("QUIC", "/ip4/0.0.0.0/udp/4201/quic-v1", &broker_quic),
    ] {
        let mut secs = Vec::new();
        let mut paths = Vec::new();
        for rep in 0..reps {
            let (a, b) = (format!("{label}a{rep}"), format!("{label}b{rep}"));
            start_home(&net, "h1", &a, broker, listen)?;
            start_home(&net, "h2", &b, broker, listen)?;
            let id = share(&net, "h1", &a, &f)?;
            let a_id = ok(net.peer_id("h1", &a))?;
            let (s, _) = fetch(
                &net,
                "h2",
                &b,
                &id,
                &net.dir.path().join(format!("{b}.bin")),
            )?;
            paths.push(path_to(&net, "h2", &b, &a_id, Duration::from_secs(5)));
            secs.push(s);
            net.stop(&a);
            net.stop(&b);
        }
        let m = median(&mut secs.clone());
        println!(
            "   kith {:<5} {:>8.2} MiB/s  (median of {:?} s; paths {:?})",
            label,
            lossy_size as f64 / m / MIB as f64,
            secs.iter()
                .map(|s| (s * 100.0).round() / 100.0)
                .collect::<Vec<_>>(),
            paths
        );
        results.push(m);
    }
    let mut base = Vec::new();
    for _ in 0..reps {
        base.push(tcp_baseline(&net, lossy_size, 5002)?);
    }
    let b = median(&mut base);
    println!(
        "   baseline: plain TCP home 1 -> relay {:>8.2} MiB/s  (same lossy link)",
        lossy_size as f64 / b / MIB as f64
    );
    if let [tcp, quic] = results[..] {
        println!("   QUIC / TCP: {:.2}x", tcp / quic);
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if special_modes(&args)? {
        return Ok(());
    }
    if let Err(why) = available() {
        bail!("the test network cannot be built here: {why}");
    }
    let kith = kith_bin()?;
    let tries = arg("--tries", 20);
    let size = arg("--size", 32) * 1_000_000;
    let lossy_size = arg("--lossy-size", 4) * 1_000_000;
    let reps = arg("--reps", 3);
    println!("kith NAT benchmarks (network namespaces; data dirs on tmpfs)");

    // 1 and 2: plain WAN.
    let net = ok(Testnet::up(&kith, &[]))?;
    let (broker, _) = start_broker(&net)?;
    if tries > 0 {
        holepunch(&net, &broker, tries)?;
    }
    throughput(&net, &broker, size, reps)?;
    drop(net);
    lossy_wan(&kith, lossy_size, reps)
}
