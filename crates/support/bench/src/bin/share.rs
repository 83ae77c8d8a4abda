//! `kith share` indexing of a big file (FastCDC + BLAKE3 per chunk + metadata commit)
//! against raw BLAKE3 hashing of the same file, sendme's import and mktorrent's hashing
//! (each run `ROUNDS` times, medians; tools not installed are skipped).
//!
//! `target/release/share [MiB] [ROUNDS]`

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kith_bench::peers::{Sendme, tool};
use kith_bench::{Daemon, MIB, make_file, mbps, scratch, size_arg};
use kith_core::store::Store;

fn median(v: &[Duration]) -> Duration {
    kith_bench::median(v).unwrap_or_default()
}

/// BLAKE3 over the whole file, one thread, 1 MiB reads (like `b3sum --no-mmap`).
fn raw_blake3(f: &Path) -> Result<(Duration, String)> {
    let start = Instant::now();
    let mut h = blake3::Hasher::new();
    let mut r = std::fs::File::open(f)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok((start.elapsed(), h.finalize().to_hex()[..16].to_owned()))
}

/// mktorrent with 1 MiB pieces (SHA-1 of every piece), or `None` when not installed.
fn mktorrent(f: &Path, out: &Path) -> Result<Option<Duration>> {
    let Some(program) = tool("mktorrent") else {
        return Ok(None);
    };
    let _ = std::fs::remove_file(out);
    let start = Instant::now();
    let st = Command::new(program)
        .args(["-l", "20", "-a", "http://127.0.0.1:1/announce", "-o"])
        .arg(out)
        .arg(f)
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("mktorrent failed: {st}");
    }
    Ok(Some(start.elapsed()))
}

fn main() -> Result<()> {
    kith_bench::check_args("share [MIB] [ROUNDS]   (default 1024 3)");
    let size = size_arg(1024);
    let rounds = kith_bench::rounds_arg(3);
    let dir = scratch()?;
    let f = dir.path().join("big.bin");
    make_file(&f, size, 3)?;
    println!(
        "file: {} MiB on tmpfs, {rounds} rounds, medians",
        size / MIB
    );

    let (mut raw, mut chunking, mut kith) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sendme, mut torrent, mut cli) = (Vec::new(), Vec::new(), Vec::new());
    // `kith share` through a running daemon, as a user runs it; each round shares a fresh
    // copy (a file already shared and unchanged is not read again).
    let daemon = Daemon::start(
        &dir.path().join("node"),
        &["--listen", "/ip4/127.0.0.1/tcp/0"],
    )?;
    let (mut digest, mut chunks, mut id) = (String::new(), 0, String::new());
    for round in 0..rounds {
        let (t, d) = raw_blake3(&f)?;
        raw.push(t);
        digest = d;

        let start = Instant::now();
        chunks = kith_core::chunker::chunk_file(&f)?.len();
        chunking.push(start.elapsed());

        // A fresh store every round: the file is new to it each time.
        let store = Store::open(&dir.path().join(format!("meta-{round}.redb")))?;
        let start = Instant::now();
        id = kith_share::indexer::share_path(&store, &f)?.id.to_string();
        kith.push(start.elapsed());

        let copy = dir.path().join(format!("copy-{round}.bin"));
        std::fs::copy(&f, &copy)?;
        let start = Instant::now();
        let (ok, _, err) = daemon.kith(&["share", copy.to_str().unwrap_or_default()])?;
        cli.push(start.elapsed());
        if !ok {
            bail!("kith share failed: {err}");
        }

        if let Some(s) = Sendme::send(&f, dir.path())? {
            sendme.push(s.import);
        }
        if let Some(t) = mktorrent(&f, &dir.path().join("big.torrent"))? {
            torrent.push(t);
        }
    }

    let line = |name: &str, t: Duration, note: &str| {
        println!(
            "{name:<22} {:>9.2} {:>10.0}   {note}",
            t.as_secs_f64(),
            mbps(size, t)
        );
    };
    println!("{:<22} {:>9} {:>10}", "", "seconds", "MB/s");
    line("raw BLAKE3", median(&raw), &format!("({digest})"));
    line(
        "  chunking alone",
        median(&chunking),
        &format!("({chunks} chunks)"),
    );
    line("kith share (indexer)", median(&kith), &format!("({id})"));
    line("kith share (CLI)", median(&cli), "(through the daemon)");
    if sendme.is_empty() {
        println!("sendme import          not measured: not installed, or no network namespace");
    } else {
        line("sendme import", median(&sendme), "(until its ticket)");
    }
    if torrent.is_empty() {
        println!("mktorrent              not measured: not installed");
    } else {
        line("mktorrent", median(&torrent), "(1 MiB pieces)");
    }
    let k = median(&kith).as_secs_f64();
    println!(
        "ratio kith/raw: {:.2}x (target >= 0.8x)",
        median(&raw).as_secs_f64() / k
    );
    if !sendme.is_empty() {
        for (what, t) in [("indexer", k), ("CLI", median(&cli).as_secs_f64())] {
            println!(
                "kith share ({what}) speed / sendme import: {:.2}x (target >= 1x)",
                median(&sendme).as_secs_f64() / t
            );
        }
    }
    Ok(())
}
