//! The vault, beside baselines from the same run:
//!
//! - `encode`: a file through the put path's sealing (ChaCha20-Poly1305, Reed–Solomon
//!   k=3 n=10, the shares' hash trees), on one thread and on every core, vs raw
//!   Reed–Solomon encoding of the same segments and `kith share`'s indexing (chunking and
//!   hashing) of the same file.
//! - `network`: `vault put` to 10 in-process holders on loopback vs a one-source transfer
//!   (`kith get` between two in-process nodes) of the same file; then a restore with n−k
//!   holders gone, the repair of one lost holder's shares, and the storage overhead
//!   (bytes on holders / bytes stored) vs 3× replication.
//!
//! Usage: vault [encode] [network] [MIB]   (default: both, 1024 MiB; files on tmpfs)

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use kith_api as api;
use kith_bench::{MIB, make_file, mbps, same_file, scratch};
use kith_testkit::TestNode;
use kith_vault::codec::{self, SEGMENT};
use kith_vault::tree;

const K: u8 = 3;
const N: u8 = 10;

fn segments(f: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(f)?;
    Ok(bytes.chunks(SEGMENT).map(<[u8]>::to_vec).collect())
}

/// Seals segments as a put does (encrypt, erasure-code, name every share) on `threads`.
fn seal_all(segs: &[Vec<u8>], threads: usize) -> Result<Duration> {
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let per = segs.len().div_ceil(threads);
        let hs: Vec<_> = segs
            .chunks(per.max(1))
            .map(|part| {
                s.spawn(move || -> Result<()> {
                    for seg in part {
                        let shares = codec::seal_shares(&[7u8; 32], seg.clone(), K, N)?;
                        for sh in shares.iter() {
                            std::hint::black_box(tree::name(sh));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join()
                .map_err(|_| anyhow!("a sealing thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(start.elapsed())
}

fn encode(f: &Path, size: u64) -> Result<()> {
    let segs = segments(f)?;
    // The library at its best: one encoder, reused, fed slices of the segment.
    let start = Instant::now();
    let mut enc: Option<reed_solomon_simd::ReedSolomonEncoder> = None;
    for seg in &segs {
        let shard = codec::share_len(seg.len(), K);
        let (k, r) = (usize::from(K), usize::from(N - K));
        let e = match enc.as_mut() {
            Some(e) => {
                e.reset(k, r, shard)?;
                e
            }
            None => enc.insert(reed_solomon_simd::ReedSolomonEncoder::new(k, r, shard)?),
        };
        let mut last = seg
            .chunks(shard)
            .last()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        last.resize(shard, 0);
        let full = seg.len() / shard;
        for o in seg.chunks_exact(shard).take(full) {
            e.add_original_shard(o)?;
        }
        for _ in full..k {
            e.add_original_shard(&last)?;
            last.fill(0);
        }
        std::hint::black_box(e.encode()?.recovery(0).map(<[u8]>::len));
    }
    let rs = start.elapsed();
    let start = Instant::now();
    for seg in &segs {
        std::hint::black_box(blake3::hash(seg));
    }
    let b3 = start.elapsed();
    let start = Instant::now();
    let chunks = kith_core::chunker::chunk_file(f)?;
    let index = start.elapsed();
    std::hint::black_box(chunks);
    let one = seal_all(&segs, 1)?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let all = seal_all(&segs, cores)?;
    println!(
        "encode: {} MiB, k={K} n={N}, segments of {} MiB",
        size / MIB,
        SEGMENT as u64 / MIB
    );
    println!("{:<44} {:>8} {:>9}", "", "seconds", "MB/s in");
    for (name, t) in [
        ("raw Reed-Solomon encode (baseline)", rs),
        ("BLAKE3 of the input (baseline)", b3),
        ("kith share indexing: chunk + hash (baseline)", index),
        ("vault seal: encrypt + RS + share trees, 1 thread", one),
    ] {
        println!("{name:<44} {:>8.2} {:>9.0}", t.as_secs_f64(), mbps(size, t));
    }
    println!(
        "{:<44} {:>8.2} {:>9.0}",
        format!("vault seal, {cores} threads"),
        all.as_secs_f64(),
        mbps(size, all)
    );
    Ok(())
}

fn held_bytes(nodes: &[TestNode]) -> u64 {
    nodes
        .iter()
        .map(|n| n.node.vault_service().overview().map_or(0, |o| o.held))
        .sum()
}

fn fail(e: kith_testkit::Error) -> anyhow::Error {
    anyhow!("{e}")
}

/// One source, one reader: `kith get` between two in-process nodes.
async fn one_source(dir: &Path, f: &Path) -> Result<Duration> {
    let a = TestNode::start(|_| {}).await.map_err(fail)?;
    let a_addr = a.addr().await.map_err(fail)?;
    let b = TestNode::start(|o| o.config.bootstrap = vec![a_addr.clone()])
        .await
        .map_err(fail)?;
    let id = a.share(f).await.map_err(fail)?;
    let out = dir.join("one-source.bin");
    let start = Instant::now();
    let p = b.get(&id, &out).await.map_err(fail)?;
    let t = start.elapsed();
    if p.state != kith_api::ProgressState::Done || !same_file(f, &out)? {
        bail!("one-source transfer incomplete: {p:?}");
    }
    std::fs::remove_file(&out)?;
    a.stop().await;
    b.stop().await;
    Ok(t)
}

/// `count` holders lending 8 GiB each, joined through the first; their addresses.
async fn holders(count: usize) -> Result<(Vec<TestNode>, Vec<String>)> {
    let first = TestNode::start(|o| o.vault.offer = 64 << 30)
        .await
        .map_err(fail)?;
    let boot = first.addr().await.map_err(fail)?;
    let mut all = vec![first];
    for _ in 1..count {
        let b = boot.clone();
        let h = TestNode::start(move |o| {
            o.vault.offer = 64 << 30;
            o.config.bootstrap = vec![b];
        })
        .await
        .map_err(fail)?;
        all.push(h);
    }
    let mut addrs = Vec::new();
    for h in &all {
        addrs.push(h.addr().await.map_err(fail)?);
    }
    Ok((all, addrs))
}

/// Waits until the object is n/n again; the time it took.
async fn until_whole(owner: &TestNode, id: &str, repairs: u64) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let o = owner.node.vault_service().status(id)?;
        if o.repairs >= repairs && o.reachable == o.n {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(1800) {
            bail!("no repair after 30 minutes: {o:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn network(dir: &Path, f: &Path, size: u64) -> Result<()> {
    let one = one_source(dir, f).await?;
    // One holder more than n, so every segment has a holder to move a lost share to.
    let (mut holders, boots) = holders(usize::from(N) + 1).await?;
    let owner = TestNode::start(|o| {
        o.config.bootstrap = boots;
        o.vault.audit_every = Duration::from_secs(1);
        o.vault.grace = Duration::from_secs(1);
        o.vault.repair_rate = u64::MAX / 2;
    })
    .await
    .map_err(fail)?;
    let put = api::VaultPut {
        path: f.to_string_lossy().into_owned(),
        name: None,
        k: Some(K),
        n: Some(N),
        group: None,
    };
    let start = Instant::now();
    let stored = owner.node.vault_put(&put).await?;
    let put_t = start.elapsed();
    let held = held_bytes(&holders);

    // One holder lost: its shares rebuilt from k others and placed on the spare.
    let lost = holders.pop().ok_or_else(|| anyhow!("no holders"))?;
    let lost_bytes = lost.node.vault_service().overview()?.held;
    lost.stop().await;
    let repair_t = until_whole(&owner, &stored.id, 1).await?;

    // n−k holders gone: restore from the k left.
    for _ in 0..(N - K) {
        if let Some(h) = holders.pop() {
            h.stop().await;
        }
    }
    let out = dir.join("restored.bin");
    let get = api::VaultGet {
        out: out.to_string_lossy().into_owned(),
        ..Default::default()
    };
    let start = Instant::now();
    let got = owner.node.vault_get(&stored.id, &get).await?;
    let restore_t = start.elapsed();
    if got.bytes != size || !same_file(f, &out)? {
        bail!("restore incomplete: {got:?}");
    }
    std::fs::remove_file(&out)?;
    println!(
        "network: {} MiB, k={K} n={N}, {} holders in process on loopback, tmpfs",
        size / MIB,
        usize::from(N) + 1
    );
    println!("{:<44} {:>8} {:>9}", "", "seconds", "MB/s");
    for (name, t) in [
        ("one-source transfer, kith get (baseline)", one),
        ("vault put to 10 holders", put_t),
        ("vault get with n-k = 7 holders gone", restore_t),
    ] {
        println!("{name:<44} {:>8.2} {:>9.0}", t.as_secs_f64(), mbps(size, t));
    }
    println!(
        "put vs one-source transfer: {:.2}x (a put sends n/k = {:.2}x the bytes: {} MiB of shares)",
        one.as_secs_f64() / put_t.as_secs_f64(),
        f64::from(N) / f64::from(K),
        stored.uploaded / MIB
    );
    println!(
        "repair after losing one holder ({} MiB of shares): {:.2} s to n/n (audits every 1 s, grace 1 s, no rate limit)",
        lost_bytes / MIB,
        repair_t.as_secs_f64()
    );
    println!(
        "storage overhead: {:.2} bytes on holders per byte stored (k={K} n={N}, ideal n/k {:.2}; 3x replication: 3.00, surviving 2 losses where k={K} n={N} survives {})",
        held as f64 / size as f64,
        f64::from(N) / f64::from(K),
        N - K
    );
    owner.stop().await;
    for h in holders {
        h.stop().await;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size = args
        .iter()
        .find_map(|a| a.parse::<u64>().ok())
        .unwrap_or(1024)
        * MIB;
    let all = !args.iter().any(|a| a == "encode" || a == "network");
    let dir = scratch()?;
    let f = dir.path().join("big.bin");
    make_file(&f, size, 5)?;
    if all || args.iter().any(|a| a == "encode") {
        encode(&f, size)?;
    }
    if all || args.iter().any(|a| a == "network") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(network(dir.path(), &f, size))?;
    }
    Ok(())
}
