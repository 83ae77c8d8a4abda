//! Cycle sharing, three figures beside baselines from the same run:
//!
//! - `kernels`: the signal search (FFT) and Mandelbrot kernels as work units in kith's
//!   sandbox vs the same C code built natively (`examples/compute`, built here with clang).
//! - `dispatch [UNITS] [VOLUNTEERS]`: units validated per second by one master with many
//!   in-process volunteers running trivial units at quorum 2, beside the sandbox's own
//!   rate for the same unit (the ceiling the machine's cores set).
//! - `speedup [UNITS]`: the signal-search job with 1, 2, 4 and 8 in-process volunteers
//!   (quorum 1, one unit at a time each) vs the native code running the units one after
//!   another; and the speed-up modelled past this machine's cores from the measured unit
//!   time and dispatch rate.
//!
//! Usage: compute [kernels] [dispatch [UNITS] [VOLUNTEERS]] [speedup [UNITS]]   (default: all)

#[path = "compute/dispatch.rs"]
mod dispatch;
#[path = "compute/kernels.rs"]
mod kernels;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../examples/compute");

/// Builds an example kernel to WASI and natively in `dir`: (wasm, native).
pub(crate) fn build(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let (sub, file) = match name {
        "seti" => ("seti", "seti"),
        _ => ("mandelbrot", "mandel"),
    };
    let c = Path::new(EXAMPLES).join(sub).join(format!("{file}.c"));
    let wasm = dir.join(format!("{file}.wasm"));
    let native = dir.join(format!("{file}.native"));
    let run = |args: &[&str], out: &Path| -> Result<()> {
        let o = Command::new("clang")
            .args(args)
            .arg("-o")
            .arg(out)
            .arg(&c)
            .arg("-lm")
            .output()
            .context("clang (apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)")?;
        if !o.status.success() {
            bail!("clang: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(())
    };
    run(&["--target=wasm32-wasi", "-O2"], &wasm)?;
    run(&["-O2"], &native)?;
    Ok((wasm, native))
}

/// Signal-search units: `units` blocks of `samples` samples in `dir/units`.
pub(crate) fn seti_units(dir: &Path, units: u32, samples: u32) -> Result<PathBuf> {
    let out = dir.join("units");
    let o = Command::new("python3")
        .arg(Path::new(EXAMPLES).join("seti/make_units.py"))
        .arg(&out)
        .args([units.to_string(), samples.to_string()])
        .output()
        .context("python3")?;
    if !o.status.success() {
        bail!("make_units.py: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(out)
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = args.is_empty();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let num = |after: &str, i: usize, default: u32| -> u32 {
        args.iter()
            .position(|a| a == after)
            .and_then(|p| args.get(p + 1 + i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    if all || args.iter().any(|a| a == "kernels") {
        kernels::run()?;
    }
    let mut rate = None;
    if all || args.iter().any(|a| a == "dispatch") {
        let (units, volunteers) = (num("dispatch", 0, 20_000), num("dispatch", 1, 8));
        rate = Some(rt.block_on(dispatch::dispatch(units, volunteers))?);
    }
    if all || args.iter().any(|a| a == "speedup") {
        rt.block_on(dispatch::speedup(num("speedup", 0, 48), rate))?;
    }
    Ok(())
}
