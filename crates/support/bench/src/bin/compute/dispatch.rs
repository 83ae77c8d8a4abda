//! One master and in-process volunteers: the dispatch and validation rate on trivial
//! units, and the signal search's speed-up with more volunteers.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use kith_api as api;
use kith_compute::sandbox::Sandbox;
use kith_compute::spec::Limits;
use kith_testkit::TestNode;

use super::{build, median, ms, seti_units};

/// Echoes its unit (at most 64 bytes) back.
const ECHO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 64))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 4) (i32.load (i32.const 8)))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// How long a job may take here.
const LIMIT: Duration = Duration::from_secs(900);

struct Swarm {
    master: TestNode,
    volunteers: Vec<TestNode>,
}

async fn swarm(n: u32, cpus: u8) -> Result<Swarm> {
    let master = TestNode::start(|_| {}).await.map_err(|e| anyhow!("{e}"))?;
    let boot = master.addr().await.map_err(|e| anyhow!("{e}"))?;
    let mut volunteers = Vec::new();
    for _ in 0..n {
        let b = boot.clone();
        let v = TestNode::start(move |o| o.config.bootstrap = vec![b])
            .await
            .map_err(|e| anyhow!("{e}"))?;
        v.node
            .volunteer_on(&api::VolunteerRequest {
                cpus,
                when_idle: false,
                max_memory: None,
                group: None,
            })
            .await?;
        volunteers.push(v);
    }
    Ok(Swarm { master, volunteers })
}

impl Swarm {
    /// Submits a job and waits until it is done; the time from submission.
    async fn run(&self, wasm: &Path, inputs: &Path, quorum: u8) -> Result<(Duration, api::Job)> {
        let t = Instant::now();
        let job = self
            .master
            .node
            .submit_job(&api::SubmitJob {
                wasm: Some(wasm.to_string_lossy().into_owned()),
                inputs: Some(inputs.to_string_lossy().into_owned()),
                quorum: Some(quorum),
                ..api::SubmitJob::default()
            })
            .await?;
        loop {
            let j = self.master.node.job(&job.job)?;
            if j.state != api::JobState::Running {
                if j.validated != j.units {
                    bail!(
                        "job ended with {} of {} units validated",
                        j.validated,
                        j.units
                    );
                }
                return Ok((t.elapsed(), j));
            }
            if t.elapsed() > LIMIT {
                bail!("job not done in {LIMIT:?}: {j:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        for v in self.volunteers {
            v.stop().await;
        }
        self.master.stop().await;
    }
}

/// Units per second the sandbox alone runs the unit, on every core.
fn sandbox_rate(wasm: &[u8], input: &[u8], units: u32) -> Result<f64> {
    let sb = Arc::new(Sandbox::new()?);
    let limits = Limits::default();
    sb.run(wasm, &[], input, &limits)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = units / cores as u32;
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..cores {
            let sb = sb.clone();
            s.spawn(move || {
                for _ in 0..per {
                    let _ = sb.run(wasm, &[], input, &limits);
                }
            });
        }
    });
    Ok(f64::from(per * cores as u32) / t.elapsed().as_secs_f64())
}

pub async fn dispatch(units: u32, volunteers: u32) -> Result<f64> {
    let dir = kith_bench::scratch()?;
    let d = dir.path();
    let wasm = d.join("echo.wasm");
    std::fs::write(&wasm, wat::parse_str(ECHO)?)?;
    let inputs = d.join("units");
    std::fs::create_dir_all(&inputs)?;
    for i in 0..units {
        std::fs::write(inputs.join(format!("u{i:06}")), format!("unit {i}"))?;
    }
    let s = swarm(volunteers, 16).await?;
    let (took, job) = s.run(&wasm, &inputs, 2).await?;
    s.stop().await;
    let rate = f64::from(units) / took.as_secs_f64();
    let module = std::fs::read(&wasm)?;
    // The sandbox runs blocking, off the async threads (as the service runs it).
    let ceiling =
        tokio::task::spawn_blocking(move || sandbox_rate(&module, b"unit 1", 4000)).await??;
    println!(
        "dispatch and validation, {units} trivial units at quorum 2, {volunteers} in-process volunteers (16 slots each), one master, all on this machine's cores\n  \
         kith: {rate:.0} units validated/s ({} replicas returned in {:.2} s)\n  \
         baseline, same run: the sandbox alone runs {ceiling:.0} units/s on all cores (two replicas per validated unit: {:.0} validated/s at most)",
        job.units * 2,
        took.as_secs_f64(),
        ceiling / 2.0
    );
    Ok(rate)
}

pub async fn speedup(units: u32, dispatch_rate: Option<f64>) -> Result<()> {
    let dir = kith_bench::scratch()?;
    let d = dir.path();
    let (wasm, native) = build(d, "seti")?;
    let inputs = seti_units(d, units, 65536)?;
    // The native code running every unit one after another.
    let mut serial = Duration::ZERO;
    let mut per_unit = Vec::new();
    for e in std::fs::read_dir(&inputs)? {
        let input = std::fs::read(e?.path())?;
        let t = Instant::now();
        let mut child = std::process::Command::new(&native)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        if let Some(mut i) = child.stdin.take() {
            std::io::Write::write_all(&mut i, &input)?;
        }
        child.wait()?;
        serial += t.elapsed();
        per_unit.push(t.elapsed());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "speed-up, signal search, {units} units of 64Ki samples, quorum 1, this machine: {cores} cores\n  \
         baseline, same run: native, one unit after another {:.2} s ({} per unit)",
        serial.as_secs_f64(),
        ms(median(per_unit.clone()))
    );
    // A one-unit job first, so every volunteer has found the master before the clock.
    let warm = d.join("warm");
    std::fs::create_dir_all(&warm)?;
    std::fs::copy(inputs.join("u00"), warm.join("u00"))?;
    let mut one = None;
    for n in [1u32, 2, 4, 8] {
        let s = swarm(n, 1).await?;
        for _ in 0..n {
            s.run(&wasm, &warm, 1).await?;
        }
        let (took, _) = s.run(&wasm, &inputs, 1).await?;
        s.stop().await;
        let base = *one.get_or_insert(took);
        println!(
            "  kith, {n} volunteer{}: {:.2} s  speed-up {:.2}x  ({:.2}x the native serial run)",
            if n == 1 { "" } else { "s" },
            took.as_secs_f64(),
            base.as_secs_f64() / took.as_secs_f64(),
            serial.as_secs_f64() / took.as_secs_f64()
        );
    }
    // Past the cores: with a core per volunteer, N volunteers finish U units of t seconds
    // in max(U t / N, U / D), D the master's dispatch rate: a speed-up of min(N, t D).
    let t = one.unwrap_or_default().as_secs_f64() / f64::from(units);
    if let Some(rate) = dispatch_rate {
        for n in [8.0, 100.0, 2000.0] {
            println!(
                "  modelled, {n:.0} volunteers with a core each: speed-up {:.0}x (unit {:.0} ms here, master dispatch {rate:.0} units/s from the dispatch run)",
                f64::min(n, t * rate),
                t * 1000.0
            );
        }
    }
    Ok(())
}
