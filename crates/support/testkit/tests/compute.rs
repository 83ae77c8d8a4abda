//! A master facing a peer that speaks `/kith/compute/1.0.0` badly: asks for work without
//! being a known person, returns results for units it was not given, claims outputs over
//! the limit, sends junk. Each is refused with its reason, and the job goes on to
//! validated results with honest volunteers.

use std::time::Duration;

use futures::AsyncWriteExt;
use kith_api as api;
use kith_compute::protocol::{Outcome, PROTOCOL, Request, Response, write_blob};
use kith_core::frame;
use kith_overlay::PeerId;
use kith_testkit::{RawPeer, Result, TestNode, bounded, eventually};

const LIMIT: Duration = Duration::from_secs(90);

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

async fn ask(p: &RawPeer, to: PeerId, req: &Request, blob: Option<&[u8]>) -> Result<Response> {
    let mut s = p.overlay.open_stream(to, PROTOCOL).await?;
    frame::write(&mut s, req).await?;
    if let Some(b) = blob {
        write_blob(&mut s, b).await?;
    }
    Ok(frame::read::<_, Response>(&mut s, 1 << 20)
        .await?
        .ok_or("no answer")?)
}

fn refused(r: &Response) -> String {
    match r {
        Response::Refused { reason } => reason.clone(),
        Response::NoWork { reason, .. } => reason.clone(),
        other => format!("not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_refuses_bad_volunteers_and_finishes_with_good_ones() -> Result<()> {
    bounded(LIMIT, async {
        let master = TestNode::start(|_| {}).await?;
        let dir = master.dir.path().join("job");
        std::fs::create_dir_all(dir.join("in"))?;
        std::fs::write(dir.join("echo.wasm"), wat::parse_str(ECHO)?)?;
        for u in ["u0", "u1", "u2"] {
            std::fs::write(dir.join("in").join(u), u)?;
        }
        let job = master
            .node
            .submit_job(&api::SubmitJob {
                wasm: Some(dir.join("echo.wasm").to_string_lossy().into_owned()),
                inputs: Some(dir.join("in").to_string_lossy().into_owned()),
                quorum: Some(2),
                ..api::SubmitJob::default()
            })
            .await?;
        let to: PeerId = master.peer_id().parse()?;
        let liar = RawPeer::start(&[master.addr().await?]).await?;

        let work = Request::Work {
            slots: 4,
            memory: 1 << 30,
            group: None,
        };
        let r = ask(&liar, to, &work, None).await?;
        assert!(refused(&r).contains("person"), "{r:?}");

        let out = b"u0".to_vec();
        let result = Request::Result {
            job: job.job.clone(),
            unit: "u0".into(),
            outcome: Outcome::Done {
                hash: kith_compute::protocol::hash(&out),
                size: 2,
            },
        };
        let r = ask(&liar, to, &result, Some(&out)).await?;
        assert!(refused(&r).contains("not given"), "{r:?}");

        let nojob = Request::Result {
            job: "0000000000000000".into(),
            unit: "u0".into(),
            outcome: Outcome::Done {
                hash: "00".into(),
                size: 1 << 40,
            },
        };
        let r = ask(&liar, to, &nojob, None).await?;
        assert!(refused(&r).contains("no job"), "{r:?}");

        // Junk: the master closes the stream and keeps serving.
        let mut s = liar.overlay.open_stream(to, PROTOCOL).await?;
        s.write_all(&[0xff; 64]).await?;
        s.close().await?;
        assert_eq!(master.node.job(&job.job)?.done, 0);

        // Two honest volunteers finish the job.
        let boot = master.addr().await?;
        let mut vs = Vec::new();
        for _ in 0..2 {
            let b = boot.clone();
            let v = TestNode::start(move |o| o.config.bootstrap = vec![b]).await?;
            v.node
                .volunteer_on(&api::VolunteerRequest {
                    cpus: 1,
                    when_idle: false,
                    max_memory: None,
                    group: None,
                })
                .await?;
            vs.push(v);
        }
        let j = eventually(Duration::from_secs(60), "the job to finish", || async {
            let j = master.node.job(&job.job).ok()?;
            (j.state == kith_api::JobState::Done).then_some(j)
        })
        .await?;
        assert_eq!((j.validated, j.failed), (3, 0), "{j:?}");
        let out = master.dir.path().join("out");
        let w = master
            .node
            .job_results(&job.job, &out.to_string_lossy())
            .await?;
        assert_eq!(w.units, ["u0", "u1", "u2"]);
        assert_eq!(std::fs::read(out.join("u1"))?, b"u1");
        for v in vs {
            v.stop().await;
        }
        master.stop().await;
        Ok(())
    })
    .await
}

/// A job's validator decides what agrees: with one that accepts any two outputs, a
/// volunteer whose bytes differ (a test hook corrupts them) still makes the quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_decides_what_agrees() -> Result<()> {
    bounded(LIMIT, async {
        let master = TestNode::start(|_| {}).await?;
        let dir = master.dir.path().join("job");
        std::fs::create_dir_all(dir.join("in"))?;
        std::fs::write(dir.join("echo.wasm"), wat::parse_str(ECHO)?)?;
        let accept = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;
        std::fs::write(dir.join("any.wasm"), wat::parse_str(accept)?)?;
        std::fs::write(dir.join("in").join("u0"), "u0")?;
        let toml = "wasm = \"echo.wasm\"\ninputs = \"in\"\nquorum = 2\nvalidator = \"any.wasm\"\n";
        std::fs::write(dir.join("JOB.toml"), toml)?;
        let spec = dir.join("JOB.toml").to_string_lossy().into_owned();
        let job = master
            .node
            .submit_job(&api::SubmitJob {
                spec: Some(spec),
                ..api::SubmitJob::default()
            })
            .await?;
        let boot = master.addr().await?;
        let mut vs = Vec::new();
        for cheat in [false, true] {
            let b = boot.clone();
            let v = TestNode::start(move |o| {
                o.config.bootstrap = vec![b];
                o.compute.cheat = cheat;
            })
            .await?;
            let on = api::VolunteerRequest {
                cpus: 1,
                when_idle: false,
                max_memory: None,
                group: None,
            };
            v.node.volunteer_on(&on).await?;
            vs.push(v);
        }
        let j = eventually(Duration::from_secs(60), "the job to finish", || async {
            let j = master.node.job(&job.job).ok()?;
            (j.state == kith_api::JobState::Done).then_some(j)
        })
        .await?;
        assert_eq!(j.validated, 1, "{j:?}");
        for v in vs {
            v.stop().await;
        }
        master.stop().await;
        Ok(())
    })
    .await
}

/// Reverses its unit (up to 64 bytes); [`reverse`] is the same computation built natively.
const REVERSE: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $n i32) (local $i i32)
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 64))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $n (i32.load (i32.const 8)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (i32.add (i32.const 200) (local.get $i))
        (i32.load8_u (i32.sub (i32.add (i32.const 99) (local.get $n)) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.store (i32.const 16) (i32.const 200))
    (i32.store (i32.const 20) (local.get $n))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))"#;

fn reverse(b: &[u8]) -> Vec<u8> {
    b.iter().rev().copied().collect()
}

/// Submits a quorum-2 job of `units` units of [`REVERSE`] named `name`.
async fn submit_reverse(master: &TestNode, name: &str, units: usize) -> Result<api::Job> {
    let dir = master.dir.path().join(name);
    std::fs::create_dir_all(dir.join("in"))?;
    std::fs::write(dir.join("reverse.wasm"), wat::parse_str(REVERSE)?)?;
    for i in 0..units {
        let input = format!("unit {i} of job {name}");
        std::fs::write(dir.join("in").join(format!("u{i:02}")), input)?;
    }
    let toml = "wasm = \"reverse.wasm\"\ninputs = \"in\"\nquorum = 2\n";
    std::fs::write(dir.join("JOB.toml"), toml)?;
    let spec = dir.join("JOB.toml").to_string_lossy().into_owned();
    Ok(master
        .node
        .submit_job(&api::SubmitJob {
            spec: Some(spec),
            ..api::SubmitJob::default()
        })
        .await?)
}

async fn until_done(master: &TestNode, job: &str) -> Result<api::Job> {
    eventually(Duration::from_secs(60), "the job to finish", || async {
        let j = master.node.job(job).ok()?;
        (j.state == kith_api::JobState::Done).then_some(j)
    })
    .await
}

async fn volunteer(v: &TestNode, cpus: u8) -> Result<()> {
    let on = api::VolunteerRequest {
        cpus,
        when_idle: false,
        max_memory: None,
        group: None,
    };
    v.node.volunteer_on(&on).await?;
    Ok(())
}

/// Adaptive replication against a volunteer that earned trust and then cheats: it agrees
/// 16 times with three other people in turn, then runs every unit of a quorum-2 job of
/// 10 units alone, corrupting each result. The units left at full quorum catch it; every
/// result it had accepted on trust is set aside and the unit redone, so all 10 end
/// byte-equal to the native computation, and the cheater is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_volunteer_that_cheats_has_its_results_redone() -> Result<()> {
    bounded(Duration::from_secs(240), async {
        let master = TestNode::start(|_| {}).await?;
        let boot = master.addr().await?;
        let tweak = |cheat: bool| {
            let b = boot.clone();
            move |o: &mut kith_node::Options| {
                o.config.bootstrap = vec![b];
                o.compute.cheat = cheat;
            }
        };
        let mut cheater = TestNode::start(tweak(false)).await?;
        volunteer(&cheater, 10).await?;
        let mut honest = Vec::new();
        for _ in 0..3 {
            honest.push(TestNode::start(tweak(false)).await?);
        }
        // 16 agreements, with each of three other people in turn (the cheater takes
        // every unit of a job as it appears, the other one runs each too).
        for (i, (h, units)) in honest.iter().zip([6, 5, 5]).enumerate() {
            volunteer(h, 1).await?;
            let job = submit_reverse(&master, &format!("warm{i}"), units).await?;
            let j = until_done(&master, &job.job).await?;
            assert_eq!((j.validated, j.failed), (units as u64, 0), "{j:?}");
            h.node.volunteer_off().await?;
        }
        // From now on it corrupts every result; it runs the whole job before anyone else.
        cheater = cheater.restart(tweak(true)).await?;
        let job = submit_reverse(&master, "target", 10).await?;
        let j = eventually(
            Duration::from_secs(60),
            "the cheater's 10 results",
            || async {
                let j = master.node.job(&job.job).ok()?;
                (j.done == 10 && j.running == 0).then_some(j)
            },
        )
        .await?;
        assert!(
            j.validated < 10,
            "some units wait for a second person: {j:?}"
        );
        // Those validated rest on its word alone, and status says so.
        assert!(j.on_trust >= 1 && j.on_trust == j.validated, "{j:?}");
        assert_eq!(j.on_trust_units.len() as u64, j.on_trust, "{j:?}");
        for h in &honest {
            volunteer(h, 1).await?;
        }
        let j = until_done(&master, &job.job).await?;
        assert_eq!((j.validated, j.failed, j.on_trust), (10, 0, 0), "{j:?}");
        let out = master.dir.path().join("target-out");
        let w = master
            .node
            .job_results(&job.job, &out.to_string_lossy())
            .await?;
        assert_eq!((w.units.len(), w.missing), (10, 0), "{w:?}");
        for unit in &w.units {
            let input = std::fs::read(master.dir.path().join("target/in").join(unit))?;
            let got = std::fs::read(out.join(unit))?;
            assert_eq!(
                got,
                reverse(&input),
                "unit {unit}: a wrong result was accepted"
            );
        }
        let me = master.peer_id();
        eventually(
            Duration::from_secs(30),
            "the cheater to be dropped",
            || async {
                let s = cheater.node.volunteer_status();
                s.masters
                    .iter()
                    .any(|m| m.master == me && m.dropped)
                    .then_some(())
            },
        )
        .await?;
        cheater.stop().await;
        for h in honest {
            h.stop().await;
        }
        master.stop().await;
        Ok(())
    })
    .await
}
