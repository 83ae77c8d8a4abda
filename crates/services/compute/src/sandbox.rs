//! The sandbox: a work unit runs as a WASI preview 1 command in wasmtime, with its input on
//! stdin and its result on stdout, and nothing else: no files, no network, no environment,
//! a clock stopped at the epoch and randomness from a fixed seed. Fuel counts instructions
//! (deterministic, so an honest volunteer stops where every other one does); a wall-clock
//! guard (epoch interruption) backs it up; memory, tables and output are capped. Floating
//! point NaNs are canonicalised and relaxed SIMD is deterministic or off, threads are off:
//! two honest volunteers produce the same bytes. Compiled modules are kept by content
//! hash, so a volunteer compiles a job's module once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, Linker, Module, ResourceLimiter, Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

use crate::spec::{Limits, MAX_MODULE};

/// How often the wall-clock guard ticks.
const TICK: Duration = Duration::from_millis(10);
/// Compiled modules kept.
const CACHE: usize = 16;
/// What a unit may write to stderr (kept for the volunteer's log).
const STDERR: usize = 4096;

/// Why a unit produced no result. Every kind leaves the volunteer working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "fault", content = "detail", rename_all = "snake_case")]
pub enum Fault {
    #[error("the module is not valid WebAssembly for this sandbox: {0}")]
    Invalid(String),
    #[error("ran out of fuel (the job's instruction limit)")]
    OutOfFuel,
    #[error("ran past its time limit")]
    TimedOut,
    #[error("wanted more memory than the limit")]
    Memory,
    #[error("wrote more output than the limit")]
    OutputTooLarge,
    #[error("exited with status {0}")]
    Exit(i32),
    #[error("trapped: {0}")]
    Trap(String),
}

/// What the unit's store holds.
struct Unit {
    wasi: WasiP1Ctx,
    guard: Guard,
}

/// Caps memory and tables, and remembers that a cap was hit.
struct Guard {
    memory: usize,
    hit: bool,
}

impl ResourceLimiter for Guard {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}

/// A fixed clock: 1970 as far as the unit can tell.
struct Stopped;

impl wasmtime_wasi::HostWallClock for Stopped {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for Stopped {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// An engine and its linker: one with NaNs canonicalised, one without.
struct Runtime {
    engine: Engine,
    linker: Linker<Unit>,
}

impl Runtime {
    fn new(canonical_nans: bool) -> Result<Self, Fault> {
        let mut c = Config::new();
        c.consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(canonical_nans)
            .relaxed_simd_deterministic(true)
            .wasm_relaxed_simd(false)
            .max_wasm_stack(1 << 20);
        // Threads are off: wasmtime is built without its `threads` feature.
        let engine = Engine::new(&c).map_err(|e| Fault::Invalid(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        p1::add_to_linker_sync(&mut linker, |u: &mut Unit| &mut u.wasi)
            .map_err(|e| Fault::Invalid(e.to_string()))?;
        Ok(Self { engine, linker })
    }
}

/// The runtimes, the compiled modules, and the wall-clock guard's ticker.
pub struct Sandbox {
    /// Canonical NaNs, native NaNs.
    runtimes: [Runtime; 2],
    modules: Mutex<HashMap<(bool, String), Module>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Sandbox {
    pub fn new() -> Result<Self, Fault> {
        let runtimes = [Runtime::new(true)?, Runtime::new(false)?];
        let stop = Arc::new(AtomicBool::new(false));
        let engines: Vec<Engine> = runtimes.iter().map(|r| r.engine.clone()).collect();
        let s = stop.clone();
        std::thread::Builder::new()
            .name("kith-sandbox-clock".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engines.iter().for_each(Engine::increment_epoch);
                }
            })
            .map_err(|e| Fault::Invalid(format!("cannot start the sandbox clock: {e}")))?;
        Ok(Self {
            runtimes,
            modules: Mutex::new(HashMap::new()),
            stop,
        })
    }

    fn runtime(&self, canonical_nans: bool) -> &Runtime {
        let [canonical, native] = &self.runtimes;
        if canonical_nans { canonical } else { native }
    }

    /// Compiles `wasm` (or finds it compiled) and checks that it imports nothing but
    /// WASI preview 1 and exports `_start`. Blocking.
    pub fn prepare(&self, wasm: &[u8], canonical_nans: bool) -> Result<(String, Module), Fault> {
        let hash = blake3::hash(wasm).to_hex().to_string();
        let key = (canonical_nans, hash.clone());
        if let Ok(m) = self.modules.lock()
            && let Some(module) = m.get(&key)
        {
            return Ok((hash, module.clone()));
        }
        if wasm.len() as u64 > MAX_MODULE {
            return Err(Fault::Invalid(format!("over {MAX_MODULE} bytes")));
        }
        let engine = &self.runtime(canonical_nans).engine;
        let module = Module::new(engine, wasm).map_err(|e| Fault::Invalid(one_line(&e)))?;
        for import in module.imports() {
            if import.module() != "wasi_snapshot_preview1" {
                return Err(Fault::Invalid(format!(
                    "imports {}::{}, and only wasi_snapshot_preview1 is offered",
                    import.module(),
                    import.name()
                )));
            }
        }
        if module.get_export("_start").is_none() {
            return Err(Fault::Invalid(
                "no _start (build it as a WASI command)".into(),
            ));
        }
        if let Ok(mut m) = self.modules.lock() {
            if m.len() >= CACHE {
                m.clear();
            }
            m.insert(key, module.clone());
        }
        Ok((hash, module))
    }

    /// Runs `wasm` on `input` within `limits` (blocking); its stdout, or why not.
    pub fn run(
        &self,
        wasm: &[u8],
        args: &[&str],
        input: &[u8],
        limits: &Limits,
    ) -> Result<Output, Fault> {
        let (_, module) = self.prepare(wasm, limits.canonical_nans)?;
        let rt = self.runtime(limits.canonical_nans);
        let output_cap = usize::try_from(limits.output).unwrap_or(usize::MAX);
        let stdout = MemoryOutputPipe::new(output_cap.saturating_add(1));
        let stderr = MemoryOutputPipe::new(STDERR);
        let mut argv = vec!["unit"];
        argv.extend_from_slice(args);
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(input.to_vec()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&argv)
            .wall_clock(Stopped)
            .monotonic_clock(Stopped)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![7, 1, 3, 9]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![5, 2, 8, 4]))
            .insecure_random_seed(0)
            .build_p1();
        let guard = Guard {
            memory: usize::try_from(limits.memory).unwrap_or(usize::MAX),
            hit: false,
        };
        let mut store = Store::new(&rt.engine, Unit { wasi, guard });
        store.limiter(|u| &mut u.guard);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| Fault::Invalid(one_line(&e)))?;
        let ticks = limits.time().as_millis() / TICK.as_millis();
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX).max(1));
        let started = Instant::now();
        let result = rt
            .linker
            .instantiate(&mut store, &module)
            .and_then(|i| i.get_typed_func::<(), ()>(&mut store, "_start"))
            .and_then(|f| f.call(&mut store, ()));
        let fuel = limits.fuel - store.get_fuel().unwrap_or(0);
        let out = stdout.contents();
        if out.len() > output_cap {
            return Err(Fault::OutputTooLarge);
        }
        let exit = match result {
            Ok(()) => 0,
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(x) => x.0,
                None => return Err(classify(&e, store.data().guard.hit)),
            },
        };
        if exit != 0 {
            return Err(if store.data().guard.hit {
                Fault::Memory
            } else {
                Fault::Exit(exit)
            });
        }
        Ok(Output {
            stdout: out.to_vec(),
            stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
            fuel,
            took: started.elapsed(),
        })
    }
}

/// A unit's result.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// Fuel used.
    pub fuel: u64,
    pub took: Duration,
}

fn classify(e: &wasmtime::Error, memory_hit: bool) -> Fault {
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Fault::OutOfFuel,
        Some(Trap::Interrupt) => Fault::TimedOut,
        _ if memory_hit => Fault::Memory,
        _ => {
            let text = one_line(e);
            if text.contains("write beyond capacity") {
                Fault::OutputTooLarge
            } else if text.contains("memory") && text.contains("limit") {
                Fault::Memory
            } else {
                Fault::Trap(text)
            }
        }
    }
}

/// An error and its causes on one line, bounded.
fn one_line(e: &wasmtime::Error) -> String {
    let mut s: String = format!("{e:#}").replace('\n', " ");
    s.truncate(300);
    s
}

#[cfg(test)]
mod tests;
