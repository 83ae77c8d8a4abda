//! `kith share` indexing of a big file (FastCDC + BLAKE3 per chunk + metadata commit)
//! against raw BLAKE3 hashing of the same file (target: at least 0.8x its speed).
//!
//! `target/release/share [MiB]`

use std::io::Read;
use std::time::Instant;

use anyhow::Result;
use kith_bench::{MIB, make_file, mbps, scratch, size_arg};
use kith_core::store::Store;

fn main() -> Result<()> {
    kith_bench::check_args("share [MIB]   (default 1024)");
    let size = size_arg(1024);
    let dir = scratch()?;
    let f = dir.path().join("big.bin");
    make_file(&f, size, 3)?;
    println!("file: {} MiB on tmpfs", size / MIB);

    // Baseline: BLAKE3 over the whole file, one thread, 1 MiB reads (like `b3sum --no-mmap`).
    let start = Instant::now();
    let mut h = blake3::Hasher::new();
    let mut r = std::fs::File::open(&f)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    let digest = h.finalize();
    let raw = start.elapsed();

    let start = Instant::now();
    let chunks = kith_core::chunker::chunk_file(&f)?;
    let chunking = start.elapsed();

    let store = Store::open(&dir.path().join("meta.redb"))?;
    let start = Instant::now();
    let rec = kith_share::indexer::share_path(&store, &f, None)?;
    let kith = start.elapsed();

    println!("{:<22} {:>9} {:>10}", "", "seconds", "MB/s");
    println!(
        "{:<22} {:>9.2} {:>10.0}   ({})",
        "raw BLAKE3",
        raw.as_secs_f64(),
        mbps(size, raw),
        &digest.to_hex()[..16]
    );
    println!(
        "{:<22} {:>9.2} {:>10.0}   ({} chunks)",
        "  chunking alone",
        chunking.as_secs_f64(),
        mbps(size, chunking),
        chunks.len()
    );
    println!(
        "{:<22} {:>9.2} {:>10.0}   ({})",
        "kith share",
        kith.as_secs_f64(),
        mbps(size, kith),
        rec.id
    );
    println!(
        "ratio kith/raw: {:.2}x (target >= 0.8x)",
        raw.as_secs_f64() / kith.as_secs_f64()
    );
    Ok(())
}
