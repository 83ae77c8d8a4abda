//! One-source transfer between two `kith` daemons on loopback, beside a plain TCP copy and
//! a TLS copy of the same file, plus the daemons' peak memory.
//!
//! `cargo build --release -p kith -p kith-bench && target/release/transfer [MiB]`

use std::time::Instant;

use anyhow::{Result, bail};
use kith_bench::{Daemon, MIB, make_file, mbps, same_file, scratch, size_arg, tcp_copy, tls_copy};

fn main() -> Result<()> {
    kith_bench::check_args("transfer [MIB]   (default 1024)");
    let size = size_arg(1024);
    let dir = scratch()?;
    let src = dir.path().join("src.bin");
    make_file(&src, size, 1)?;
    println!(
        "file: {} MiB on tmpfs ({})",
        size / MIB,
        dir.path().display()
    );

    let tcp = tcp_copy(&src, &dir.path().join("tcp.bin"))?;
    std::fs::remove_file(dir.path().join("tcp.bin"))?;
    let tls = tls_copy(&src, &dir.path().join("tls.bin"))?;
    std::fs::remove_file(dir.path().join("tls.bin"))?;

    let mut rows = Vec::new();
    for (name, listen) in [
        ("kith/tcp", "/ip4/127.0.0.1/tcp/0"),
        ("kith/quic", "/ip4/127.0.0.1/udp/0/quic-v1"),
    ] {
        let a = Daemon::start(
            &dir.path().join(format!("{name}-a").replace('/', "-")),
            &["--listen", listen],
        )?;
        let b = Daemon::start(
            &dir.path().join(format!("{name}-b").replace('/', "-")),
            &["--listen", listen, "--bootstrap", &a.addr()?],
        )?;
        let id = a.json(&["share", "--json", src.to_str().unwrap_or_default()])?["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let out = dir.path().join(format!("{}.bin", name.replace('/', "-")));
        // Memory and CPU of the transfer itself (sharing 1 GiB came before).
        let idle = (a.peak_rss_mib(), b.peak_rss_mib());
        a.reset_peak()?;
        b.reset_peak()?;
        let cpu0 = (a.cpu_secs(), b.cpu_secs());
        let start = Instant::now();
        let r = b.json(&["get", "--json", &id, "-o", out.to_str().unwrap_or_default()])?;
        let t = start.elapsed();
        if r["bytes"].as_u64() != Some(size) || !same_file(&src, &out)? {
            bail!("{name}: transfer incomplete: {r}");
        }
        let cpu = (a.cpu_secs() - cpu0.0, b.cpu_secs() - cpu0.1);
        rows.push((name, t, a.peak_rss_mib(), b.peak_rss_mib(), cpu, idle));
        std::fs::remove_file(&out)?;
    }

    println!(
        "{:<12} {:>9} {:>10} {:>10}",
        "copy", "seconds", "MB/s", "vs TLS"
    );
    let tls_rate = mbps(size, tls);
    println!(
        "{:<12} {:>9.2} {:>10.0} {:>9.2}x",
        "plain TCP",
        tcp.as_secs_f64(),
        mbps(size, tcp),
        mbps(size, tcp) / tls_rate
    );
    println!(
        "{:<12} {:>9.2} {:>10.0} {:>9.2}x",
        "TLS (rustls)",
        tls.as_secs_f64(),
        tls_rate,
        1.0
    );
    for (name, t, ..) in &rows {
        println!(
            "{:<12} {:>9.2} {:>10.0} {:>9.2}x",
            name,
            t.as_secs_f64(),
            mbps(size, *t),
            mbps(size, *t) / tls_rate
        );
    }
    println!();
    println!(
        "daemons during the transfer: peak memory (VmHWM from the transfer's start; before it:"
    );
    println!("the peak so far, sharing included) and CPU seconds");
    for (name, _, a, b, (ca, cb), (ia, ib)) in &rows {
        println!(
            "{name:<12} provider {a:>6.1} MiB ({ia:.1}) {ca:>5.2} s   downloader {b:>6.1} MiB ({ib:.1}) {cb:>5.2} s"
        );
    }
    Ok(())
}
