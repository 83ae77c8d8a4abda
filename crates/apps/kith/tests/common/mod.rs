//! What the tests that drive real `kith` processes share.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kith_testkit::testnet::wait_child;
use kith_testkit::{Result, scratch};
use serde_json::Value;

pub const KITH: &str = env!("CARGO_BIN_EXE_kith");

/// The `kith` binary the helpers below run: this build's, or `KITH_TEST_BIN` (e.g. a
/// release build, for the hundred-node test).
pub fn bin() -> String {
    std::env::var("KITH_TEST_BIN").unwrap_or_else(|_| KITH.to_owned())
}

/// Kills the process when dropped, so a failing test leaves nothing running.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn kith(home: &Path, args: &[&str]) -> Result<Output> {
    let child = Command::new(bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    wait_child(child, Duration::from_secs(60))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A number field of a JSON object (0 when absent).
pub fn num(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

pub fn json_of(o: &Output) -> Result<Value> {
    let line = stdout(o).lines().last().unwrap_or_default().to_owned();
    serde_json::from_str(&line)
        .map_err(|e| format!("not JSON ({e}): {line:?}; stderr: {}", stderr(o)).into())
}

/// Starts `kith up` and waits until `kith status` answers.
pub fn up(home: &Path, extra: &[&str]) -> Result<Proc> {
    run_node(home, "up", extra)
}

/// Starts `kith CMD` (`up` or `broker`) and waits until `kith status` answers.
pub fn run_node(home: &Path, cmd: &str, extra: &[&str]) -> Result<Proc> {
    run_node_env(home, cmd, extra, &[])
}

/// [`run_node`] with environment variables set for the node.
pub fn run_node_env(home: &Path, cmd: &str, extra: &[&str], env: &[(&str, &str)]) -> Result<Proc> {
    start_node(home, cmd, "/ip4/127.0.0.1/tcp/0", extra, env)
}

/// Starts `kith up` listening on `listen` only (e.g. QUIC on another loopback address, so
/// that peers see this node in another subnet).
pub fn up_at(home: &Path, listen: &str, extra: &[&str]) -> Result<Proc> {
    start_node(home, "up", listen, extra, &[])
}

fn start_node(
    home: &Path,
    cmd: &str,
    listen: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Proc> {
    let log = std::fs::File::create(home.with_extension("log"))?;
    let child = Command::new(bin())
        .envs(env.iter().copied())
        .arg("--home")
        .arg(home)
        .args([cmd, "--no-mdns", "--listen", listen])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let mut p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = p.0.try_wait()? {
            let log = std::fs::read_to_string(home.with_extension("log")).unwrap_or_default();
            return Err(format!("kith up exited with {st}: {log}").into());
        }
        if kith(home, &["status"])?.status.success() {
            return Ok(p);
        }
        if Instant::now() >= deadline {
            return Err("node did not become ready".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn addr_of(home: &Path) -> Result<String> {
    let s = json_of(&kith(home, &["status", "--json"])?)?;
    let a = s["listen_addrs"][0].as_str().ok_or("no listen addr")?;
    Ok(format!(
        "{a}/p2p/{}",
        s["peer_id"].as_str().unwrap_or_default()
    ))
}

/// Progress of the running downloads, straight from the node's API.
pub fn downloads(home: &Path) -> Option<Value> {
    serde_json::from_str(&node_get(home, "/api/v1/downloads")?).ok()
}

/// The node's OpenMetrics text.
pub fn metrics(home: &Path) -> Option<String> {
    node_get(home, "/metrics")
}

/// A GET of the node's HTTP API, with its token; the body.
fn node_get(home: &Path, path: &str) -> Option<String> {
    let addr = std::fs::read_to_string(home.join("api.addr")).ok()?;
    let token = std::fs::read_to_string(home.join("api.token")).ok()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{}{path}", addr.trim()))
            .bearer_auth(token.trim())
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    })
}

pub fn tmp() -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("kith-cli-")
        .tempdir_in(scratch())?)
}

/// How long anything a test waits for may take.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Runs a command with `--json` that must succeed; its JSON.
pub fn ok(home: &Path, args: &[&str]) -> Result<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let o = kith(home, &all)?;
    if !o.status.success() {
        return Err(format!("kith {args:?} failed: {}", stderr(&o)).into());
    }
    json_of(&o)
}

/// Runs a command that must fail; its error line.
pub fn fails(home: &Path, args: &[&str]) -> Result<String> {
    let o = kith(home, args)?;
    if o.status.success() {
        return Err(format!("kith {args:?} succeeded: {}", stdout(&o)).into());
    }
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    match lines.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => Err(format!("kith {args:?}: not one clear error line: {err:?}").into()),
    }
}

/// Polls `check` until it gives a value, for at most `LIMIT`.
pub fn until<T>(what: &str, check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    until_within(LIMIT, what, check)
}

/// Polls `check` until it gives a value, for at most `limit`.
pub fn until_within<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `len` bytes that do not compress, different for each seed (xorshift).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes().first().copied().unwrap_or_default()
        })
        .collect()
}
