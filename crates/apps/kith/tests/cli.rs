//! Drives real `kith` processes through the CLI, as a user would.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kith_testkit::testnet::wait_child;
use kith_testkit::{Result, data};
use serde_json::Value;

mod common;
use common::*;

#[test]
fn share_get_and_resume_after_kill_through_the_cli() -> Result<()> {
    let t = tmp()?;
    let (ha, hb) = (t.path().join("a"), t.path().join("b"));
    let _a = up(&ha, &["--upload-limit", "6M"])?;
    let a_addr = addr_of(&ha)?;
    let mut b = up(&hb, &["--bootstrap", &a_addr])?;

    let file = t.path().join("movie.bin");
    let bytes = data(24_000_000, 11);
    std::fs::write(&file, &bytes)?;
    let shared = json_of(&kith(
        &ha,
        &["share", "--json", file.to_str().ok_or("path")?],
    )?)?;
    let id = shared["id"].as_str().ok_or("no id")?.to_owned();
    let ls = stdout(&kith(&ha, &["ls"])?);
    assert!(ls.contains(&id), "{ls}");

    // Start the download, then kill the downloading node once part of it is verified.
    let out = t.path().join("movie-copy.bin");
    let out_s = out.to_str().ok_or("path")?;
    let get = Command::new(KITH)
        .args([
            "--home",
            hb.to_str().ok_or("path")?,
            "get",
            "--json",
            &id,
            "-o",
            out_s,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = downloads(&hb)
            .and_then(|d| d[0]["done_bytes"].as_u64())
            .unwrap_or(0);
        if done >= 6_000_000 {
            break;
        }
        if Instant::now() >= deadline {
            return Err("download made no progress".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    b.0.kill()?; // SIGKILL: no clean shutdown
    b.0.wait()?;
    let interrupted = wait_child(get, Duration::from_secs(30))?;
    assert!(
        !interrupted.status.success(),
        "get must fail when its node dies"
    );
    assert_eq!(
        stderr(&interrupted).lines().count(),
        1,
        "{}",
        stderr(&interrupted)
    );

    // Restart: the download resumes by itself; `get` joins it.
    let _b = up(&hb, &["--bootstrap", &a_addr])?;
    let done = kith(&hb, &["get", "--json", &id, "-o", out_s])?;
    assert!(done.status.success(), "{}", stderr(&done));
    let v = json_of(&done)?;
    assert_eq!(v["bytes"], 24_000_000);
    let fetched = v["fetched_bytes"].as_u64().unwrap_or(u64::MAX);
    assert!(
        fetched < 20_000_000,
        "verified chunks were fetched again: {v}"
    );
    assert_eq!(
        v["providers"].as_array().map(Vec::len),
        if fetched > 0 { Some(1) } else { Some(0) }
    );
    assert_eq!(std::fs::read(&out)?, bytes);
    Ok(())
}

#[test]
fn bad_input_gets_one_clear_error_line() -> Result<()> {
    let t = tmp()?;
    let home = t.path().join("n");
    let check = |o: Output, want: &str| -> Result<()> {
        let err = stderr(&o);
        assert!(!o.status.success(), "expected failure: {err}");
        assert!(err.contains(want), "{want:?} not in {err:?}");
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
        assert!(!err.contains("panicked"));
        Ok(())
    };
    check(kith(&home, &["status"])?, "not running")?;
    let node = up(&home, &[])?;
    check(kith(&home, &["get", "not-an-id"])?, "not a content ID")?;
    check(kith(&home, &["share", "/no/such/path"])?, "no such file")?;
    let unknown = "bagaaihranfnr5h2zpp6u25s3pp4ch7ilyebgrcmkqabjcacoqv3m6t5zbkga";
    check(kith(&home, &["unshare", unknown])?, "is not shared")?;
    let nojob = ["job", "accept-trust", "0000000000000000"];
    check(kith(&home, &nojob)?, "no job 0000000000000000")?;
    check(
        kith(
            &home,
            &[
                "get",
                unknown,
                "--timeout",
                "1",
                "-o",
                t.path().join("x").to_str().ok_or("p")?,
            ],
        )?,
        "no provider",
    )?;
    // Port in use: listen where the running node already listens.
    let s = json_of(&kith(&home, &["status", "--json"])?)?;
    let taken = s["listen_addrs"][0].as_str().ok_or("no addr")?.to_owned();
    let other = t.path().join("other");
    let busy = Command::new(KITH)
        .args([
            "--home",
            other.to_str().ok_or("p")?,
            "up",
            "--no-mdns",
            "--listen",
            &taken,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let o = wait_child(busy, Duration::from_secs(30))?;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot listen"), "{}", stderr(&o));
    drop(node);
    Ok(())
}

/// Overwrites every page but the first of a database with garbage, as a failing disk would.
fn damage(db: &Path) -> Result<Vec<u8>> {
    let mut bytes = std::fs::read(db)?;
    for b in bytes.iter_mut().skip(4096) {
        *b = 0x5a;
    }
    std::fs::write(db, &bytes)?;
    Ok(bytes)
}

/// A damaged store: the node says so in one line, sets the file aside untouched, and
/// shares the same folder again under the same ID; the identity stays.
#[test]
fn a_damaged_store_is_set_aside_and_shares_come_back() -> Result<()> {
    let t = tmp()?;
    let home = t.path().join("n");
    let tree = t.path().join("tree");
    std::fs::create_dir_all(tree.join("sub"))?;
    std::fs::write(tree.join("a.bin"), data(300_000, 1))?;
    std::fs::write(tree.join("sub/b.txt"), b"hello")?;
    let node = up(&home, &[])?;
    let id = json_of(&kith(
        &home,
        &["share", "--json", tree.to_str().ok_or("p")?],
    )?)?["id"]
        .clone();
    let peer = stdout(&kith(&home, &["id"])?);
    drop(node);
    let damaged = damage(&home.join("meta.redb"))?;
    let node = up(&home, &[])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ls = json_of(&kith(&home, &["ls", "--json"])?)?;
        if ls
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s["id"] == id))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the share did not come back: {ls}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(stdout(&kith(&home, &["id"])?), peer, "the identity stays");
    drop(node);
    let aside: Vec<_> = std::fs::read_dir(&home)?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("meta.redb.damaged-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file is set aside");
    let kept = std::fs::read(aside[0].path())?;
    assert!(kept == damaged, "the damaged file is kept as it was");
    let log = std::fs::read_to_string(home.with_extension("log"))?;
    let said: Vec<&str> = log.lines().filter(|l| l.contains("damaged")).collect();
    assert_eq!(said.len(), 1, "said once, in one line: {log}");
    assert!(!log.contains("panicked"), "{log}");
    Ok(())
}

/// A broker and two peers as separate processes: search through the broker and without
/// it, publish two revisions of a name, resolve it and fetch it by name.
#[test]
fn search_publish_and_resolve_through_the_cli() -> Result<()> {
    let t = tmp()?;
    let (hb, ha, hc) = (t.path().join("b"), t.path().join("a"), t.path().join("c"));
    let _broker = run_node(&hb, "broker", &["--broker-ttl", "5"])?;
    let b_addr = addr_of(&hb)?;
    let _a = up(&ha, &["--bootstrap", &b_addr, "--broker", &b_addr])?;
    let _c = up(&hc, &["--bootstrap", &b_addr, "--broker", &b_addr])?;
    let doc = t.path().join("meeting-notes.txt");
    std::fs::write(&doc, "minutes of the kith planning meeting")?;
    let o = kith(
        &ha,
        &["publish", "--json", "notes", doc.to_str().ok_or("path")?],
    )?;
    assert!(o.status.success(), "{}", stderr(&o));
    let r1 = json_of(&o)?;
    assert_eq!(r1["revision"], 1);
    let name = r1["name"].as_str().ok_or("no name")?.to_owned();
    assert!(name.ends_with("/notes"), "{name}");

    // Found through the broker and without it; each line is one result object.
    for via in ["broker", "network"] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = kith(
                &hc,
                &[
                    "search",
                    "--json",
                    "--via",
                    via,
                    "--timeout",
                    "2",
                    "meeting",
                ],
            )?;
            assert!(o.status.success(), "{}", stderr(&o));
            let lines: Vec<Value> = stdout(&o)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if let Some(r) = lines.iter().find(|r| r["id"] == r1["id"]) {
                assert_eq!(r["name"], "meeting-notes.txt");
                assert_eq!(r["name_key"], name.as_str());
                assert_eq!(r["revision"], 1);
                assert!(r["providers"].as_array().is_some_and(|p| !p.is_empty()));
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!("not found via {via}: {}", stdout(&o)).into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // A new revision; C resolves and fetches the newest by name.
    std::fs::write(&doc, "minutes, revised")?;
    let o = kith(
        &ha,
        &["publish", "--json", "notes", doc.to_str().ok_or("path")?],
    )?;
    let r2 = json_of(&o)?;
    assert_eq!(r2["revision"], 2);
    let o = kith(&hc, &["resolve", "--json", &name])?;
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json_of(&o)?;
    assert_eq!(
        (r["revision"].clone(), r["id"].clone()),
        (r2["revision"].clone(), r2["id"].clone())
    );
    let out = t.path().join("got.txt");
    let o = kith(
        &hc,
        &["get", "--json", &name, "-o", out.to_str().ok_or("path")?],
    )?;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out)?, "minutes, revised");

    // Bad input: one line each, non-zero exit.
    let long = "x".repeat(5000);
    for (args, want) in [
        (vec!["search", "--via", "nowhere", "x"], "--via must be"),
        (vec!["search", long.as_str()], "at most 1024"),
        (
            vec!["publish", "bad name", doc.to_str().ok_or("path")?],
            "bad name",
        ),
        (vec!["resolve", "not-a-peer/notes"], "not a peer ID"),
    ] {
        let o = kith(&hc, &args)?;
        assert!(!o.status.success(), "{args:?} succeeded");
        let e = stderr(&o);
        assert!(
            e.contains(want) && e.trim().lines().count() == 1,
            "{args:?}: {e}"
        );
    }
    Ok(())
}
