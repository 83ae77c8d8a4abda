//! One-source transfer between two `kith` daemons on loopback, beside a plain TCP copy, a
//! TLS copy, an aria2 (BitTorrent) copy and a sendme copy of the same file, plus the peak
//! memory and CPU of each side. Every round runs every copy once (kith's daemons stay up throughout), and
//! the medians over `ROUNDS` rounds are shown (this machine's speed drifts between runs).
//!
//! `cargo build --release -p kith -p kith-bench && target/release/transfer [MiB] [ROUNDS]`

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kith_bench::peers::{Sendme, ToolCopy, aria2_copy};
use kith_bench::{
    Daemon, MIB, make_file, mbps, median, same_file, scratch, size_arg, tcp_copy, tls_copy,
};

/// A kith transport's results over all rounds.
struct KithRun {
    name: &'static str,
    times: Vec<Duration>,
    /// CPU seconds per round: provider, downloader.
    cpu: Vec<(f64, f64)>,
    /// Peak memory over all rounds, and before the first (sharing included).
    peak: (f64, f64),
    before: (f64, f64),
}

/// Two daemons sharing the file over one transport, kept up for every round.
struct KithPair {
    a: Daemon,
    b: Daemon,
    id: String,
    run: KithRun,
}

impl KithPair {
    fn start(name: &'static str, listen: &str, src: &Path) -> Result<Self> {
        let dir = src.parent().unwrap_or(Path::new("."));
        let home = |side: &str| dir.join(format!("{name}-{side}").replace('/', "-"));
        let a = Daemon::start(&home("a"), &["--listen", listen])?;
        let b = Daemon::start(&home("b"), &["--listen", listen, "--bootstrap", &a.addr()?])?;
        let id = a.json(&["share", "--json", src.to_str().unwrap_or_default()])?["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // Memory and CPU of the transfers themselves (sharing 1 GiB came before).
        let before = (a.peak_rss_mib(), b.peak_rss_mib());
        a.reset_peak()?;
        b.reset_peak()?;
        let run = KithRun {
            name,
            times: Vec::new(),
            cpu: Vec::new(),
            peak: (0.0, 0.0),
            before,
        };
        Ok(Self { a, b, id, run })
    }

    /// One transfer of `src` from a to b, checked byte for byte.
    fn round(&mut self, src: &Path, round: usize) -> Result<()> {
        let (a, b, name) = (&self.a, &self.b, self.run.name);
        let dir = src.parent().unwrap_or(Path::new("."));
        let out = dir.join(format!("{}-{round}.bin", name.replace('/', "-")));
        let cpu0 = (a.cpu_secs(), b.cpu_secs());
        let start = Instant::now();
        let r = b.json(&[
            "get",
            "--json",
            &self.id,
            "-o",
            out.to_str().unwrap_or_default(),
        ])?;
        self.run.times.push(start.elapsed());
        if r["bytes"].as_u64() != Some(std::fs::metadata(src)?.len()) || !same_file(src, &out)? {
            bail!("{name}: transfer incomplete: {r}");
        }
        self.run
            .cpu
            .push((a.cpu_secs() - cpu0.0, b.cpu_secs() - cpu0.1));
        std::fs::remove_file(&out)?;
        Ok(())
    }

    fn finish(mut self) -> KithRun {
        self.run.peak = (self.a.peak_rss_mib(), self.b.peak_rss_mib());
        self.run
    }
}

fn row(name: &str, size: u64, t: Duration, tls_rate: f64) {
    println!(
        "{:<12} {:>9.2} {:>10.0} {:>9.2}x",
        name,
        t.as_secs_f64(),
        mbps(size, t),
        mbps(size, t) / tls_rate
    );
}

fn main() -> Result<()> {
    kith_bench::check_args("transfer [MIB] [ROUNDS]   (default 1024 3)");
    let size = size_arg(1024);
    let rounds = kith_bench::rounds_arg(3);
    let dir = scratch()?;
    let src = dir.path().join("src.bin");
    make_file(&src, size, 1)?;
    println!(
        "file: {} MiB on tmpfs ({}), {rounds} rounds, medians",
        size / MIB,
        dir.path().display()
    );

    // Both pairs of daemons are up for the whole run, and each round runs every copy
    // once, so kith and the baselines see the same drift of this machine's speed.
    let mut pairs = [
        KithPair::start("kith/tcp", "/ip4/127.0.0.1/tcp/0", &src)?,
        KithPair::start("kith/quic", "/ip4/127.0.0.1/udp/0/quic-v1", &src)?,
    ];
    let base = baselines(&src, dir.path(), rounds, &mut pairs)?;
    let runs = pairs.map(KithPair::finish);

    print_speeds(size, &base, &runs);
    print_memory(&base, &runs);
    Ok(())
}

/// Prints each copy's median time and speed, and kith's speed against the other tools.
fn print_speeds(size: u64, base: &Baselines, runs: &[KithRun]) {
    let Baselines {
        tcp,
        tls,
        aria2,
        sendme,
    } = base;
    let tls_t = median(tls).unwrap_or_default();
    let tls_rate = mbps(size, tls_t);
    println!(
        "{:<12} {:>9} {:>10} {:>10}",
        "copy", "seconds", "MB/s", "vs TLS"
    );
    row("plain TCP", size, median(tcp).unwrap_or_default(), tls_rate);
    row("TLS (rustls)", size, tls_t, tls_rate);
    let aria2_t = median(&aria2.iter().map(|c| c.time).collect::<Vec<_>>());
    match aria2_t {
        Some(t) => row("aria2 (BT)", size, t, tls_rate),
        None => println!("aria2 (BT)   not measured: aria2c or mktorrent is not installed"),
    }
    let sendme_t = median(&sendme.iter().map(|c| c.time).collect::<Vec<_>>());
    match sendme_t {
        Some(t) => row("sendme", size, t, tls_rate),
        None => println!("sendme       not measured: not installed, or no network namespace"),
    }
    for r in runs {
        row(r.name, size, median(&r.times).unwrap_or_default(), tls_rate);
    }
    for (tool, t) in [("aria2", aria2_t), ("sendme", sendme_t)] {
        for r in runs.iter().filter(|_| t.is_some()) {
            let k = median(&r.times).unwrap_or_default();
            let other = t.unwrap_or_default();
            println!(
                "{} speed / {tool}: {:.2}x",
                r.name,
                other.as_secs_f64() / k.as_secs_f64()
            );
        }
    }
}

/// Prints the peak memory and CPU of each side.
fn print_memory(base: &Baselines, runs: &[KithRun]) {
    println!();
    println!("peak memory over the rounds (VmHWM from the first transfer's start; before it:");
    println!("the peak so far, sharing included) and median CPU seconds per transfer");
    for r in runs {
        let ca = median(&r.cpu.iter().map(|c| c.0).collect::<Vec<_>>()).unwrap_or(0.0);
        let cb = median(&r.cpu.iter().map(|c| c.1).collect::<Vec<_>>()).unwrap_or(0.0);
        println!(
            "{:<12} provider {:>6.1} MiB ({:.1}) {ca:>5.2} s   downloader {:>6.1} MiB ({:.1}) {cb:>5.2} s",
            r.name, r.peak.0, r.before.0, r.peak.1, r.before.1
        );
    }
    for (tool, copies) in [("aria2 (BT)", &base.aria2), ("sendme", &base.sendme)] {
        if copies.is_empty() {
            continue;
        }
        let sender = copies.iter().map(|c| c.sender_mib).fold(0.0, f64::max);
        let receiver = copies.iter().map(|c| c.receiver_mib).fold(0.0, f64::max);
        println!(
            "{tool:<12} sender   {sender:>6.1} MiB               downloader {receiver:>6.1} MiB"
        );
    }
}

/// The copies kith is measured against, every round.
struct Baselines {
    tcp: Vec<Duration>,
    tls: Vec<Duration>,
    aria2: Vec<ToolCopy>,
    sendme: Vec<ToolCopy>,
}

/// Runs every round: the baselines, then each kith pair's transfer.
fn baselines(src: &Path, dir: &Path, rounds: usize, pairs: &mut [KithPair]) -> Result<Baselines> {
    let mut b = Baselines {
        tcp: Vec::new(),
        tls: Vec::new(),
        aria2: Vec::new(),
        sendme: Vec::new(),
    };
    let aria2_dir = dir.join("aria2");
    let sendme_dir = dir.join("sendme");
    for round in 0..rounds {
        b.tcp.push(tcp_copy(src, &dir.join("tcp.bin"))?);
        std::fs::remove_file(dir.join("tcp.bin"))?;
        b.tls.push(tls_copy(src, &dir.join("tls.bin"))?);
        std::fs::remove_file(dir.join("tls.bin"))?;
        if let Some(c) = aria2_copy(src, dir, &aria2_dir)? {
            if !same_file(src, &aria2_dir.join("src.bin"))? {
                bail!("aria2: the copy differs from the source");
            }
            b.aria2.push(c);
        }
        let _ = std::fs::remove_dir_all(&aria2_dir);
        if let Some(sender) = Sendme::send(src, dir)? {
            let c = sender.receive(&sendme_dir)?;
            if !same_file(src, &sendme_dir.join("src.bin"))? {
                bail!("sendme: the copy differs from the source");
            }
            b.sendme.push(c);
        }
        let _ = std::fs::remove_dir_all(&sendme_dir);
        for p in pairs.iter_mut() {
            p.round(src, round)?;
        }
    }
    Ok(b)
}
