//! Cycle sharing through real `kith` processes: a master and volunteers on loopback run
//! the signal-search example (built from `examples/compute` with clang to WASI) to
//! validated results equal to a native run of the same C code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kith_testkit::{Result, TestNode};
use serde_json::Value;

mod common;
use common::*;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../examples/compute");

/// Runs a build step; a missing tool says what to install.
fn run(cmd: &mut Command) -> Result<()> {
    let o = cmd
        .output()
        .map_err(|e| format!("{cmd:?}: {e} (install clang lld wasi-libc libclang-rt-dev-wasm32 python3, as .ci/run does)"))?;
    if !o.status.success() {
        return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    Ok(())
}

/// A job folder: the signal search built to WASI and natively, `units` blocks of samples
/// and a JOB.toml with `limits` appended.
fn seti_job(dir: &Path, units: u32, samples: u32, quorum: u8, limits: &str) -> Result<PathBuf> {
    let job = dir.join("seti");
    std::fs::create_dir_all(&job)?;
    let src = Path::new(EXAMPLES).join("seti");
    let c = src.join("seti.c");
    run(Command::new("clang")
        .args(["--target=wasm32-wasi", "-O2", "-o"])
        .arg(job.join("seti.wasm"))
        .arg(&c)
        .arg("-lm"))?;
    run(Command::new("clang")
        .args(["-O2", "-o"])
        .arg(job.join("seti.native"))
        .arg(&c)
        .arg("-lm"))?;
    run(Command::new("python3")
        .arg(src.join("make_units.py"))
        .arg(job.join("units"))
        .args([units.to_string(), samples.to_string()]))?;
    let toml = format!(
        "name = \"seti\"\nwasm = \"seti.wasm\"\ninputs = \"units\"\nquorum = {quorum}\n[limits]\n{limits}"
    );
    std::fs::write(job.join("JOB.toml"), toml)?;
    Ok(job)
}

/// What the native build of the same C code writes for each unit.
fn native(job: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut units: Vec<_> =
        std::fs::read_dir(job.join("units"))?.collect::<std::io::Result<_>>()?;
    units.sort_by_key(|e| e.file_name());
    for e in units {
        let o = Command::new(job.join("seti.native"))
            .stdin(std::fs::File::open(e.path())?)
            .output()?;
        out.push((e.file_name().to_string_lossy().into_owned(), o.stdout));
    }
    Ok(out)
}

fn job_status(master: &Path, job: &str) -> Result<Value> {
    ok(master, &["job", "status", job])
}

/// Waits for the job to be done, every unit validated.
fn until_done(master: &Path, job: &str, limit: Duration) -> Result<Value> {
    let mut last = Value::Null;
    until_within(limit, "the job to finish", || {
        let s = job_status(master, job)?;
        last = s.clone();
        Ok((s["state"] == "done").then_some(s))
    })
    .map_err(|e| format!("{e}: {last}").into())
}

/// Writes the job's results and checks them against the native run.
fn results_match(master: &Path, job: &str, job_dir: &Path, out: &Path) -> Result<()> {
    let r = ok(
        master,
        &["job", "results", job, "-o", &out.to_string_lossy()],
    )?;
    assert_eq!(num(&r, "missing"), 0, "{r}");
    for (unit, want) in native(job_dir)? {
        let got = std::fs::read(out.join(&unit))?;
        assert_eq!(got, want, "unit {unit} differs from the native run");
    }
    // Every injected signal was found.
    let truth = std::fs::read_to_string(job_dir.join("truth.txt"))?;
    for line in truth.lines().filter(|l| !l.is_empty()) {
        let (unit, bin) = line.split_once(' ').ok_or("bad truth line")?;
        let found = std::fs::read_to_string(out.join(unit))?;
        assert!(
            found.contains(&format!("signal {bin} ")),
            "{unit}: {bin} not found in {found:?}"
        );
    }
    Ok(())
}

fn volunteer(home: &Path, extra: &[&str]) -> Result<Value> {
    let mut args = vec!["volunteer", "on"];
    args.extend_from_slice(extra);
    ok(home, &args)
}

#[test]
fn volunteers_validate_a_job_through_a_lost_volunteer_and_a_master_restart() -> Result<()> {
    let dir = tmp()?;
    let d = dir.path();
    let job_dir = seti_job(d, 12, 65536, 2, "time = \"20s\"\ndeadline = \"20s\"\n")?;
    let homes: Vec<PathBuf> = ["m", "v1", "v2", "v3"].iter().map(|n| d.join(n)).collect();
    let mut m = up(&homes[0], &[])?;
    let boot = addr_of(&homes[0])?;
    let mut procs = Vec::new();
    for h in &homes[1..] {
        procs.push(up(h, &["--bootstrap", &boot])?);
    }
    // Bad input first: one clear error line each, nothing submitted.
    std::fs::write(d.join("junk.wasm"), b"not a module")?;
    let junk = d.join("junk.wasm").to_string_lossy().into_owned();
    let units = job_dir.join("units").to_string_lossy().into_owned();
    let e = fails(
        &homes[0],
        &["job", "submit", "--wasm", &junk, "--inputs", &units],
    )?;
    assert!(e.contains("not valid WebAssembly"), "{e}");
    std::fs::write(
        d.join("BAD.toml"),
        "wasm = \"seti/seti.wasm\"\nquorum = 99\n",
    )?;
    let e = fails(
        &homes[0],
        &["job", "submit", &d.join("BAD.toml").to_string_lossy()],
    )?;
    assert!(e.contains("inputs"), "{e}");
    assert_eq!(
        ok(&homes[0], &["job", "status"])?.as_array().map(Vec::len),
        Some(0)
    );

    for h in &homes[1..] {
        let v = volunteer(h, &[])?;
        assert_eq!(v["on"], true);
    }
    let spec = job_dir.join("JOB.toml").to_string_lossy().into_owned();
    let submitted = ok(&homes[0], &["job", "submit", &spec])?;
    let job = submitted["job"].as_str().ok_or("no job ID")?.to_owned();
    assert_eq!(num(&submitted, "units"), 12);

    // v3 is lost while it runs a unit: that unit goes to another volunteer.
    until("v3 to run a unit", || {
        let v = ok(&homes[3], &["volunteer", "status"])?;
        Ok((v["running"].as_array().map(Vec::len) > Some(0)).then_some(()))
    })?;
    drop(procs.pop());
    // The master restarts mid-job and resumes it.
    until("some validated units", || {
        let s = job_status(&homes[0], &job)?;
        Ok((num(&s, "validated") >= 2).then_some(()))
    })?;
    drop(m);
    let v1 = addr_of(&homes[1])?;
    m = up(&homes[0], &["--bootstrap", &v1])?;
    let s = until_done(&homes[0], &job, Duration::from_secs(150))?;
    assert_eq!(
        (num(&s, "units"), num(&s, "validated"), num(&s, "failed")),
        (12, 12, 0),
        "{s}"
    );
    results_match(&homes[0], &job, &job_dir, &d.join("out"))?;
    let v = ok(&homes[1], &["volunteer", "status"])?;
    assert!(num(&v, "completed") > 0, "{v}");
    assert_eq!(v["reputation"].as_f64(), Some(1.0), "{v}");
    drop(m);
    Ok(())
}

#[test]
fn cheaters_are_outvoted_and_stop_getting_work() -> Result<()> {
    let dir = tmp()?;
    let d = dir.path();
    let job_dir = seti_job(d, 100, 4096, 2, "")?;
    let master = d.join("m");
    let _m = up(&master, &[])?;
    let boot = addr_of(&master)?;
    // Two cheaters that corrupt every result they return: nodes of the test harness in
    // this process (the `kith` binary has no such mode), then eight honest `kith` nodes.
    let rt = tokio::runtime::Runtime::new()?;
    let mut harness = Vec::new();
    let mut persons = Vec::new();
    for _ in 0..2 {
        let b = boot.clone();
        let c = rt.block_on(TestNode::start(move |o| {
            o.config.bootstrap = vec![b];
            o.compute.cheat = true;
        }))?;
        let on = kith_api::VolunteerRequest {
            cpus: 1,
            when_idle: false,
            max_memory: None,
            group: None,
        };
        rt.block_on(c.node.volunteer_on(&on))?;
        persons.push(c.node.person()?.person);
        harness.push(c);
    }
    let mut procs = Vec::new();
    for i in 2..10 {
        let h = d.join(format!("v{i}"));
        procs.push(up(&h, &["--bootstrap", &boot])?);
        volunteer(&h, &[])?;
        let p = ok(&h, &["person"])?["person"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        persons.push(p);
    }
    let spec = job_dir.join("JOB.toml").to_string_lossy().into_owned();
    let job = ok(&master, &["job", "submit", &spec])?["job"]
        .as_str()
        .ok_or("no job ID")?
        .to_owned();
    let s = until_done(&master, &job, Duration::from_secs(150))?;
    assert_eq!(num(&s, "validated"), 100, "{s}");
    results_match(&master, &job, &job_dir, &d.join("out"))?;
    // The master's view (its standing file, saved every few seconds): every cheater's
    // results disagreed and its reputation fell, a cheater with three faults or more gets
    // no more work, and no honest volunteer has a fault.
    let file = master.join("compute").join("standing.json");
    let by = until("the cheaters' faults in the master's standing", || {
        let s: Value = match std::fs::read(&file) {
            Ok(b) => serde_json::from_slice(&b)?,
            Err(_) => return Ok(None),
        };
        let by = s["by_key"].clone();
        let cheaters_seen = persons[..2]
            .iter()
            .all(|p| num(&by[p.as_str()], "faults") > 0);
        Ok(cheaters_seen.then_some(by))
    })?;
    for (i, p) in persons.iter().enumerate() {
        let st = &by[p.as_str()];
        if i < 2 {
            assert!(
                st["reputation"].as_f64().is_some_and(|r| r < 0.5),
                "cheater {i}: {st}"
            );
            assert_eq!(
                st["dropped"] == true,
                num(st, "faults") >= 3,
                "cheater {i}: {st}"
            );
        } else {
            assert_eq!(num(st, "faults"), 0, "honest {i}: {st}");
        }
    }
    // Cheaters stop getting work: dropped after three faults, or, when their low
    // reputation kept them from reaching three (on a loaded machine the honest ones can
    // take nearly every unit), left with a small share of the work.
    let dropped = persons[..2]
        .iter()
        .filter(|p| by[p.as_str()]["dropped"] == true)
        .count();
    let units = |p: &String| num(&by[p.as_str()], "agreed") + num(&by[p.as_str()], "faults");
    let cheaters: u64 = persons[..2].iter().map(units).sum();
    let all: u64 = persons.iter().map(units).sum();
    assert!(
        dropped > 0 || cheaters * 10 <= all,
        "cheaters kept getting work ({cheaters} of {all} units, none dropped): {by}"
    );
    drop(procs);
    for c in harness {
        rt.block_on(c.stop());
    }
    Ok(())
}

#[test]
fn two_devices_of_one_person_never_make_a_quorum() -> Result<()> {
    let dir = tmp()?;
    let d = dir.path();
    let job_dir = seti_job(d, 3, 4096, 2, "")?;
    let (master, a1, a2, b) = (d.join("m"), d.join("a1"), d.join("a2"), d.join("b"));
    let _m = up(&master, &[])?;
    let boot = addr_of(&master)?;
    let _a1 = up(&a1, &["--bootstrap", &boot])?;
    let _a2 = up(&a2, &["--bootstrap", &boot])?;
    let code = ok(&a1, &["device", "link"])?["code"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    ok(&a2, &["device", "join", &code])?;
    volunteer(&a1, &[])?;
    volunteer(&a2, &[])?;
    let spec = job_dir.join("JOB.toml").to_string_lossy().into_owned();
    let job = ok(&master, &["job", "submit", &spec])?["job"]
        .as_str()
        .ok_or("no job ID")?
        .to_owned();
    // Each unit gets one result from the person, and can get no second one from it.
    let s = until("a result for every unit", || {
        let s = job_status(&master, &job)?;
        Ok((num(&s, "done") == 3 && num(&s, "running") == 0).then_some(s))
    })?;
    assert_eq!(
        num(&s, "validated"),
        0,
        "one person validated its own result: {s}"
    );
    // A second person makes the quorum.
    let _b = up(&b, &["--bootstrap", &boot])?;
    volunteer(&b, &[])?;
    let s = until_done(&master, &job, Duration::from_secs(60))?;
    assert_eq!(num(&s, "validated"), 3, "{s}");
    Ok(())
}

/// Hostile modules, as text: each runs until a limit of the sandbox stops it.
const HOSTILE: [(&str, &str); 4] = [
    ("forever", r#"(func (export "_start") (loop (br 0)))"#),
    (
        "memory",
        r#"(func (export "_start")
            (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable)"#,
    ),
    (
        "output",
        r#"(func (export "_start")
            (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 60000))
            (loop (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br 0)))"#,
    ),
    ("trap", r#"(func (export "_start") unreachable)"#),
];

#[test]
fn hostile_modules_fail_their_units_and_volunteers_keep_working() -> Result<()> {
    let dir = tmp()?;
    let d = dir.path();
    let master = d.join("m");
    let _m = up(&master, &[])?;
    let boot = addr_of(&master)?;
    let vs: Vec<PathBuf> = ["v1", "v2"].iter().map(|n| d.join(n)).collect();
    let mut procs = Vec::new();
    for h in &vs {
        procs.push(up(h, &["--bootstrap", &boot])?);
        volunteer(h, &["--max-memory", "64Mi"])?;
    }
    std::fs::create_dir_all(d.join("in"))?;
    for u in ["a", "b"] {
        std::fs::write(d.join("in").join(u), u)?;
    }
    for (name, body) in HOSTILE {
        let text = format!(
            r#"(module
              (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
              (memory (export "memory") 1) {body})"#
        );
        let job_dir = d.join(name);
        std::fs::create_dir_all(&job_dir)?;
        std::fs::write(job_dir.join("m.wasm"), wat::parse_str(&text)?)?;
        let toml = "wasm = \"m.wasm\"\ninputs = \"../in\"\nquorum = 1\n[limits]\nfuel = 50_000_000\nmemory = \"8Mi\"\noutput = \"64Ki\"\ntime = \"10s\"\ndeadline = \"30s\"\n";
        std::fs::write(job_dir.join("JOB.toml"), toml)?;
        let spec = job_dir.join("JOB.toml").to_string_lossy().into_owned();
        let job = ok(&master, &["job", "submit", &spec])?["job"]
            .as_str()
            .ok_or("no job ID")?
            .to_owned();
        let s = until_done(&master, &job, Duration::from_secs(60))?;
        assert_eq!(
            (num(&s, "failed"), num(&s, "validated")),
            (2, 0),
            "{name}: {s}"
        );
    }
    for h in &vs {
        let v = ok(h, &["volunteer", "status"])?;
        assert!(num(&v, "failed") >= 2, "{v}");
        assert_eq!(v["on"], true);
    }
    // Both still run real work (within the memory they offer).
    let job_dir = seti_job(d, 2, 4096, 2, "memory = \"32Mi\"\n")?;
    let spec = job_dir.join("JOB.toml").to_string_lossy().into_owned();
    let job = ok(&master, &["job", "submit", &spec])?["job"]
        .as_str()
        .ok_or("no job ID")?
        .to_owned();
    until_done(&master, &job, Duration::from_secs(60))?;
    results_match(&master, &job, &job_dir, &d.join("out"))?;
    drop(procs);
    Ok(())
}
