//! The example kernels in the sandbox vs natively.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kith_compute::sandbox::Sandbox;
use kith_compute::spec::Limits;

use super::{build, median, ms, seti_units};

const ROUNDS: usize = 5;

/// The native binary's wall time on `input` (stdin), and its output.
fn native(bin: &Path, input: &[u8]) -> Result<(Duration, Vec<u8>)> {
    let t = Instant::now();
    let mut child = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    let o = child.wait_with_output()?;
    let took = t.elapsed();
    if !o.status.success() {
        bail!("{} failed", bin.display());
    }
    Ok((took, o.stdout))
}

fn compare(
    sb: &Sandbox,
    name: &str,
    wasm: &Path,
    bin: &Path,
    input: &[u8],
    canonical_nans: bool,
) -> Result<()> {
    let module = std::fs::read(wasm)?;
    let limits = Limits {
        fuel: u64::MAX / 4,
        memory: 256 << 20,
        output: 16 << 20,
        time: 600,
        deadline: 600,
        canonical_nans,
    };
    // Compiled once, as on a volunteer; every run instantiates afresh.
    let first = sb.run(&module, &[], input, &limits)?;
    let (mut boxed, mut nat) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let out = sb.run(&module, &[], input, &limits)?;
        boxed.push(t.elapsed());
        let (d, native_out) = native(bin, input)?;
        nat.push(d);
        if out.stdout != native_out {
            bail!("{name}: the sandbox and native outputs differ");
        }
    }
    let (b, n) = (median(boxed), median(nat));
    let floats = if canonical_nans {
        "canonical"
    } else {
        "native"
    };
    println!(
        "  {name:<11} floats {floats:<9}  sandbox {:>9}  native {:>9}  sandbox speed {:.2}x native  ({} fuel)",
        ms(b),
        ms(n),
        n.as_secs_f64() / b.as_secs_f64(),
        first.fuel
    );
    Ok(())
}

pub fn run() -> Result<()> {
    let dir = kith_bench::scratch()?;
    let d = dir.path();
    let (seti_wasm, seti_native) = build(d, "seti")?;
    let (mandel_wasm, mandel_native) = build(d, "mandel")?;
    let units = seti_units(d, 1, 65536)?;
    let block = std::fs::read(units.join("u00"))?;
    let tile = b"-2.5 1.3125 0.0068359375 512 384 2000\n";
    let sb = Sandbox::new()?;
    println!(
        "kernels, one unit each, median of {ROUNDS} (native: the same C, clang -O2, process wall time incl. exec; sandbox: module compiled once, instantiated per run)"
    );
    for canonical in [true, false] {
        compare(&sb, "fft 64Ki", &seti_wasm, &seti_native, &block, canonical)?;
        compare(
            &sb,
            "mandelbrot",
            &mandel_wasm,
            &mandel_native,
            tile,
            canonical,
        )?;
    }
    Ok(())
}
