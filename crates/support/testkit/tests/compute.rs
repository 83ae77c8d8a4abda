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
            (j.state == "done").then_some(j)
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
            (j.state == "done").then_some(j)
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
