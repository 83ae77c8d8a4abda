//! Four seeders each capped by `--upload-limit` against one: the download should use all
//! four (target: at least 3.5x the one-seeder speed).
//!
//! `target/release/swarm [MiB] [limit bytes/s]`

use std::time::Instant;

use anyhow::{Result, bail};
use kith_bench::{Daemon, MIB, make_file, mbps, scratch, size_arg};

fn main() -> Result<()> {
    kith_bench::check_args("swarm [MIB [BYTES_PER_SEC_PER_SEEDER]]   (defaults 200 20000000)");
    let size = size_arg(200);
    let limit: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000_000);
    let dir = scratch()?;
    let mut seeders = Vec::new();
    let mut id = String::new();
    for i in 0..4 {
        let home = dir.path().join(format!("seed{i}"));
        let boot: Vec<String> = match seeders.first() {
            Some(s) => vec!["--bootstrap".into(), Daemon::addr(s)?],
            None => vec![],
        };
        let mut args = vec!["--listen", "/ip4/127.0.0.1/tcp/0"];
        let lim = limit.to_string();
        args.extend(["--upload-limit", lim.as_str()]);
        args.extend(boot.iter().map(String::as_str));
        let d = Daemon::start(&home, &args)?;
        // Same name and bytes on every seeder, so the same content ID.
        let f = dir.path().join(format!("copy{i}")).join("data.bin");
        std::fs::create_dir_all(dir.path().join(format!("copy{i}")))?;
        make_file(&f, size, 7)?;
        id = d.json(&["share", "--json", f.to_str().unwrap_or_default()])?["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        seeders.push(d);
    }
    let addrs: Vec<String> = seeders.iter().map(Daemon::addr).collect::<Result<_>>()?;
    println!(
        "file: {} MiB on tmpfs; each seeder capped at {} MB/s",
        size / MIB,
        limit as f64 / 1e6
    );

    let mut results = Vec::new();
    for n in [1usize, 4] {
        let mut args = vec!["--listen".to_owned(), "/ip4/127.0.0.1/tcp/0".to_owned()];
        for a in addrs.iter().take(n) {
            args.push("--bootstrap".into());
            args.push(a.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // The one-seeder run only knows seeder 0, and the others stop sharing meanwhile.
        if n == 1 {
            for s in seeders.iter().skip(1) {
                let (ok, _, err) = s.kith(&["unshare", &id])?;
                if !ok {
                    bail!("unshare failed: {err}");
                }
            }
        } else {
            for (i, s) in seeders.iter().enumerate().skip(1) {
                let f = dir.path().join(format!("copy{i}")).join("data.bin");
                let again = s.json(&["share", "--json", f.to_str().unwrap_or_default()])?;
                if again["id"].as_str() != Some(id.as_str()) {
                    bail!("seeders disagree on the ID: {again}");
                }
            }
        }
        let d = Daemon::start(&dir.path().join(format!("down{n}")), &args)?;
        let out = dir.path().join(format!("out{n}.bin"));
        let start = Instant::now();
        let r = d.json(&["get", "--json", &id, "-o", out.to_str().unwrap_or_default()])?;
        let t = start.elapsed();
        if r["bytes"].as_u64() != Some(size) {
            bail!("incomplete: {r}");
        }
        let used = r["providers"].as_array().map(Vec::len).unwrap_or(0);
        results.push((n, t, used));
        std::fs::remove_file(&out)?;
    }
    let base = results.first().map(|r| mbps(size, r.1)).unwrap_or(1.0);
    println!(
        "{:<10} {:>9} {:>10} {:>10} {:>8}",
        "seeders", "seconds", "MB/s", "providers", "speedup"
    );
    for (n, t, used) in results {
        println!(
            "{n:<10} {:>9.2} {:>10.1} {used:>10} {:>7.2}x",
            t.as_secs_f64(),
            mbps(size, t),
            mbps(size, t) / base
        );
    }
    Ok(())
}
