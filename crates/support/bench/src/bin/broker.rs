//! A broker holding 1,000,000 catalogue entries (10,000 peers x 100 files): query latency
//! p50/p99 (target p99 < 50 ms) and memory, beside a linear scan of the same entries with
//! the same matching rule, measured in the same run.
//!
//! `target/release/broker [peers] [files per peer] [queries]`

use std::time::{Duration, Instant};

use anyhow::Result;
use kith_bench::{Rng, word};
use kith_search::broker::Directory;
use kith_search::protocol::Entry;
use kith_search::query::Query;

const VOCAB: usize = 50_000;

/// The catalogue of peer `p` (deterministic, so the baseline can rebuild it).
fn entries_of(p: usize, files: usize) -> Vec<Entry> {
    let mut rng = Rng(p as u64 * 7919 + 1);
    (0..files)
        .map(|f| {
            let name = format!(
                "{} {} {}.{}",
                word(zipf(&mut rng, VOCAB)),
                word(zipf(&mut rng, VOCAB)),
                word(zipf(&mut rng, VOCAB)),
                ["mp3", "pdf", "txt", "jpg"][f % 4]
            );
            let id = kith_core::ContentId::manifest(format!("{p}/{f}/{name}").as_bytes());
            Entry {
                id: id.to_string(),
                path: format!("music/{name}"),
                name,
                size: rng.next_u64() % (50 << 20),
                kind: "file".into(),
                name_key: None,
                revision: None,
            }
        })
        .collect()
}

/// Zipf-like rank in 0..n (s = 1), by inverse transform of the harmonic CDF.
fn zipf(rng: &mut Rng, n: usize) -> usize {
    let h = (n as f64).ln() + 0.5772;
    ((rng.unit() * h).exp() - 1.0).clamp(0.0, (n - 1) as f64) as usize
}

fn rss_mib() -> f64 {
    kith_bench::proc_status_mib("self", "VmRSS")
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn main() -> Result<()> {
    kith_bench::check_args("broker [PEERS [FILES_PER_PEER [QUERIES]]]   (defaults 10000 100 1000)");
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let (peers, files, queries) = (arg(1, 10_000), arg(2, 100), arg(3, 1000));
    let mut rng = Rng(7);
    let rss0 = rss_mib();
    let dir = Directory::new(Duration::from_secs(3600))?;
    let started = Instant::now();
    for p in 0..peers {
        let peer = kith_overlay::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let entries = entries_of(p, files);
        dir.register(peer, &entries, vec!["/ip4/127.0.0.1/tcp/4001".into()])?;
        if p % 1000 == 999 {
            dir.commit()?;
        }
    }
    dir.commit()?;
    let load = started.elapsed();
    let rss_dir = rss_mib();
    println!(
        "broker: {} peers x {} files = {} entries, registered and indexed in {:.1} s",
        peers,
        files,
        dir.entries(),
        load.as_secs_f64()
    );

    // Queries: one or two words, drawn with the same skew as the names.
    let qs: Vec<Query> = (0..queries)
        .map(|i| {
            let text = if i % 3 == 0 {
                format!(
                    "{} {}",
                    word(zipf(&mut rng, VOCAB)),
                    word(zipf(&mut rng, VOCAB))
                )
            } else {
                word(zipf(&mut rng, VOCAB))
            };
            Query::parse(&text)
        })
        .collect::<Result<_, _>>()?;
    let mut lat = Vec::with_capacity(qs.len());
    let mut hits = 0usize;
    for q in &qs {
        let t = Instant::now();
        let r = dir.search(q, 100)?;
        lat.push(t.elapsed());
        hits += r.len();
    }
    // Baseline: scan every entry with the same matching rule (a tenth of the queries).
    let all: Vec<Entry> = (0..peers).flat_map(|p| entries_of(p, files)).collect();
    let mut base = Vec::new();
    let mut base_hits = 0usize;
    for q in qs.iter().step_by(10) {
        let t = Instant::now();
        let n = all
            .iter()
            .filter(|e| q.matches_name(&e.name, &e.path))
            .take(100)
            .count();
        base.push(t.elapsed());
        base_hits += n;
    }
    println!(
        "{:<22} {:>9} {:>9} {:>12}",
        "query latency", "p50 ms", "p99 ms", "results/q"
    );
    println!(
        "{:<22} {:>9.2} {:>9.2} {:>12.1}",
        "kith broker (tantivy)",
        pct(&mut lat.clone(), 0.5),
        pct(&mut lat, 0.99),
        hits as f64 / qs.len() as f64
    );
    println!(
        "{:<22} {:>9.2} {:>9.2} {:>12.1}",
        "linear scan",
        pct(&mut base.clone(), 0.5),
        pct(&mut base, 0.99),
        base_hits as f64 / base.len().max(1) as f64
    );
    println!(
        "memory: directory {:.0} MiB (process RSS {:.0} MiB; the baseline's entry list {:.0} MiB more)",
        rss_dir - rss0,
        rss_mib(),
        (rss_mib() - rss_dir).max(0.0)
    );
    Ok(())
}
