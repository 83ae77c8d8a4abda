//! Update of a named 1 GiB file after a 1 MiB edit in its middle: bytes that cross the
//! network for the new revision (target < 5 MiB), beside the first revision's full fetch
//! measured in the same run. Two `kith up` daemons on loopback, files on tmpfs.
//!
//! `target/release/revision [MiB]`

use std::io::{Seek, SeekFrom, Write};
use std::time::Instant;

use anyhow::{Result, bail};
use kith_bench::{Daemon, MIB, make_file, same_file, scratch, size_arg};

fn main() -> Result<()> {
    kith_bench::check_args("revision [MIB]   (default 1024)");
    let size = size_arg(1024);
    let dir = scratch()?;
    let listen = ["--listen", "/ip4/127.0.0.1/tcp/0"];
    let a = Daemon::start(&dir.path().join("a"), &listen)?;
    let a_addr = a.addr()?;
    let mut args = listen.to_vec();
    args.extend(["--bootstrap", a_addr.as_str()]);
    let b = Daemon::start(&dir.path().join("b"), &args)?;

    let v1 = dir.path().join("v1").join("big.bin");
    std::fs::create_dir_all(v1.parent().unwrap_or(dir.path()))?;
    make_file(&v1, size, 11)?;
    let p1 = a.json(&["publish", "--json", "big", v1.to_str().unwrap_or_default()])?;
    let name = p1["name"].as_str().unwrap_or_default().to_owned();
    println!("file: {} MiB on tmpfs; name {name}", size / MIB);

    let out1 = dir.path().join("out1.bin");
    let t = Instant::now();
    let g1 = b.json(&[
        "get",
        "--json",
        &name,
        "-o",
        out1.to_str().unwrap_or_default(),
    ])?;
    let t1 = t.elapsed();

    // Revision 2: the same file with 1 MiB in the middle overwritten.
    let v2 = dir.path().join("v2").join("big.bin");
    std::fs::create_dir_all(v2.parent().unwrap_or(dir.path()))?;
    std::fs::copy(&v1, &v2)?;
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&v2)?;
        f.seek(SeekFrom::Start(size / 2))?;
        let patch: Vec<u8> = (0..MIB).map(|i| (i * 31 + 7) as u8).collect();
        f.write_all(&patch)?;
    }
    let p2 = a.json(&["publish", "--json", "big", v2.to_str().unwrap_or_default()])?;
    if p2["revision"] != 2 {
        bail!("unexpected revision: {p2}");
    }
    let out2 = dir.path().join("out2.bin");
    let t = Instant::now();
    let g2 = b.json(&[
        "get",
        "--json",
        &name,
        "-o",
        out2.to_str().unwrap_or_default(),
    ])?;
    let t2 = t.elapsed();
    if !same_file(&v2, &out2)? {
        bail!("revision 2 arrived with different bytes");
    }
    let f1 = g1["fetched_bytes"].as_u64().unwrap_or(0);
    let f2 = g2["fetched_bytes"].as_u64().unwrap_or(0);
    println!("{:<34} {:>14} {:>10}", "fetch", "network bytes", "seconds");
    println!(
        "{:<34} {:>10.1} MiB {:>10.2}",
        "revision 1 (full copy, baseline)",
        f1 as f64 / MIB as f64,
        t1.as_secs_f64()
    );
    println!(
        "{:<34} {:>10.2} MiB {:>10.2}",
        "revision 2 after a 1 MiB edit",
        f2 as f64 / MIB as f64,
        t2.as_secs_f64()
    );
    println!(
        "target < 5 MiB: {}",
        if f2 < 5 * MIB { "met" } else { "MISSED" }
    );
    Ok(())
}
