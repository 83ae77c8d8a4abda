//! The web UI in a real browser: two `kith` processes on loopback, driven through their UIs
//! by `tests/browser/ui.mjs` (playwright-core and Debian's Chromium). Screenshots of every
//! page land in `target/ui-screenshots/`.
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci` in `tests/browser` (`.ci/run` installs
//! them). Without them the test says so and passes, unless `KITH_REQUIRE_BROWSER` is set
//! (as in CI), when it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use kith_testkit::Result;
use kith_testkit::testnet::wait_child;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Why the browser test cannot run here, if it cannot.
fn missing() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "no Chromium at {chromium} (apt-get install chromium)"
        ));
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        return Some("no playwright-core (npm ci in crates/apps/kith/tests/browser)".into());
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("no node".into());
    }
    None
}

/// Kills the node the browser script restarted, whatever happened.
struct PidFile(PathBuf);

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn login(home: &Path) -> Result<String> {
    let o = ok(home, &["ui", "--no-open"])?;
    Ok(o["url"].as_str().ok_or("no url")?.to_owned())
}

fn base(home: &Path) -> Result<String> {
    Ok(format!(
        "http://{}",
        std::fs::read_to_string(home.join("api.addr"))?.trim()
    ))
}

fn random_file(path: &Path, len: usize, seed: u8) -> Result<Vec<u8>> {
    let data = noise(len, u64::from(seed));
    std::fs::write(path, &data)?;
    Ok(data)
}

#[test]
fn the_web_ui_in_a_real_browser() -> Result<()> {
    if let Some(why) = missing() {
        if std::env::var_os("KITH_REQUIRE_BROWSER").is_some() {
            return Err(format!("the browser test cannot run: {why}").into());
        }
        eprintln!("SKIPPED the browser test: {why}");
        return Ok(());
    }
    let t = tmp()?;
    let (ha, hb) = (t.path().join("a"), t.path().join("b"));
    let a = up(&ha, &[])?;
    let a_addr = addr_of(&ha)?;
    let _b = up(&hb, &["--bootstrap", &a_addr])?;

    let dir = t.path().join("kithreport-folder");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("kithreport-2026.bin");
    let data = random_file(&file, 6_000_000, 1)?;
    let xss = t.path().join("<img src=x onerror=alert(1)>");
    std::fs::write(&xss, "a file whose name is markup")?;
    let family = t.path().join("family-notes.txt");
    std::fs::write(&family, "shared with the group only")?;
    let big = t.path().join("big.bin");
    random_file(&big, 64_000_000, 2)?;
    let big_id = stdout(&kith(&ha, &["share", big.to_str().ok_or("path")?])?)
        .trim()
        .to_owned();

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../target/ui-screenshots");
    std::fs::create_dir_all(&shots)?;
    let pidfile = PidFile(t.path().join("a-restarted.pid"));
    let a_peer = ok(&ha, &["id"])?["peer_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let a_args = serde_json::to_string(&[
        "--home",
        ha.to_str().ok_or("path")?,
        "up",
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ])?;
    let vars: Vec<(&str, String)> = vec![
        ("KITH", KITH.into()),
        ("A_BASE", base(&ha)?),
        ("B_BASE", base(&hb)?),
        ("A_LOGIN", login(&ha)?),
        ("B_LOGIN", login(&hb)?),
        ("A_PID", a.0.id().to_string()),
        ("A_ARGS", a_args),
        ("A_PEER", a_peer),
        ("A_PIDFILE", pidfile.0.display().to_string()),
        ("SHARE_DIR", dir.display().to_string()),
        ("SHARE_NAME", "kithreport-folder".into()),
        ("QUERY", "kithreport".into()),
        ("FILE_NAME", "kithreport-2026.bin".into()),
        ("XSS_FILE", xss.display().to_string()),
        ("BIG_ID", big_id),
        ("GROUP_FILE", family.display().to_string()),
        ("BIG_NAME", "big.bin".into()),
        ("SHOTS", shots.display().to_string()),
    ];
    let child = Command::new("node")
        .arg("ui.mjs")
        .current_dir(browser_dir())
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = wait_child(child, Duration::from_secs(300))?;
    let (so, se) = (stdout(&out), stderr(&out));
    eprintln!("{so}{se}");
    assert!(out.status.success() && so.contains("ALL OK"), "{so}{se}");

    // The fetched file is whole, in the data dir's downloads folder.
    let got = std::fs::read(hb.join("downloads/kithreport-folder/kithreport-2026.bin"))
        .or_else(|_| std::fs::read(hb.join("downloads/kithreport-2026.bin")))?;
    assert!(got == data, "the fetched file differs");
    let pngs = std::fs::read_dir(&shots)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".png"))
        .count();
    assert!(
        pngs >= 22,
        "screenshots of every page of both nodes: {pngs}"
    );
    Ok(())
}
