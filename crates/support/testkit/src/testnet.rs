//! Drives real `kith` processes on the NAT test network built by `scripts/testnet.sh`
//! (network namespaces: a public relay, three homes behind NATs, a WAN link).
//!
//! [`Testnet::up`] builds the network under a unique prefix; dropping the [`Testnet`] kills
//! every process in it and removes the namespaces, also when a test fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Result;

/// The relay's (broker's) address on the public segment.
pub const RELAY_IP: &str = "10.200.0.2";
/// Public (WAN) address of each home's NAT.
pub const NAT_IP: [&str; 3] = ["10.201.0.2", "10.202.0.2", "10.203.0.2"];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/testnet.sh")
}

/// `Ok` when this machine can build the test network, else why not.
pub fn available() -> std::result::Result<(), String> {
    let out = Command::new("bash")
        .arg(script())
        .arg("check")
        .output()
        .map_err(|e| format!("cannot run testnet.sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

pub struct Testnet {
    prefix: String,
    kith: PathBuf,
    /// Data dirs of the nodes (on tmpfs when there is one).
    pub dir: tempfile::TempDir,
    procs: Mutex<HashMap<String, Child>>,
}

/// Waits (bounded) for a child process to exit and returns its output; kills it and says
/// what it wrote to stderr when it takes longer than `limit`.
pub fn wait_child(mut child: Child, limit: Duration) -> Result<Output> {
    // Read both pipes while waiting: a child that writes more than a pipe holds would
    // otherwise block for ever.
    fn drain<R: std::io::Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut b);
            }
            b
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            return Err(format!(
                "command did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&stderr)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

impl Testnet {
    /// Builds the network. `opts` go to `testnet.sh up` (e.g. `--delay 25 --loss 2`).
    pub fn up(kith: &Path, opts: &[&str]) -> Result<Self> {
        let prefix = format!("kt{}{}", std::process::id() % 100_000, rand_suffix());
        let out = Command::new("bash")
            .arg(script())
            .args(["up", &prefix])
            .args(opts)
            .output()?;
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let net = Self {
            prefix,
            kith: kith.to_owned(),
            dir: tempfile::Builder::new()
                .prefix("kith-testnet-")
                .tempdir_in(base)?,
            procs: Mutex::new(HashMap::new()),
        };
        if !out.status.success() {
            return Err(format!(
                "testnet.sh up failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(net)
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    pub fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a command inside namespace `host` (e.g. `ip link set wan down` on `nat1`).
    pub fn sh(&self, host: &str, args: &[&str]) -> Result<()> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "{args:?} in {host}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(())
    }

    fn command(&self, host: &str, name: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)])
            .arg(&self.kith)
            .arg("--home")
            .arg(self.home(name))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Starts `kith ARGS` (e.g. `up …` or `broker …`) as node `name` on `host`, and waits
    /// until its API answers.
    pub fn start(&self, host: &str, name: &str, args: &[&str]) -> Result<()> {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log")))?;
        let child = self
            .command(host, name, args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        if let Ok(mut p) = self.procs.lock()
            && let Some(mut old) = p.insert(name.to_owned(), child)
        {
            let _ = old.kill();
            let _ = old.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.status(host, name).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{name} did not start; log:\n{}", self.log(name)).into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops node `name` (SIGKILL: as abrupt as a crash or a pulled plug).
    pub fn stop(&self, name: &str) {
        if let Ok(mut p) = self.procs.lock()
            && let Some(mut c) = p.remove(name)
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Runs a `kith` CLI command for node `name` on `host`.
    pub fn kith(&self, host: &str, name: &str, args: &[&str], limit: Duration) -> Result<Output> {
        let child = self
            .command(host, name, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        wait_child(child, limit)
    }

    /// `PROGRAM ARGS` to be run inside namespace `host` (stdout piped), for tools other
    /// than `kith` (e.g. a plain-TCP baseline in a benchmark).
    pub fn exec(&self, host: &str, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)])
            .arg(program)
            .args(args)
            .stdout(Stdio::piped());
        c
    }

    /// Spawns a `kith` CLI command with piped output (for following a download).
    pub fn spawn(&self, host: &str, name: &str, args: &[&str]) -> Result<Child> {
        Ok(self
            .command(host, name, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?)
    }

    /// `kith status --json` of node `name`.
    pub fn status(&self, host: &str, name: &str) -> Result<Value> {
        let out = self.kith(host, name, &["--json", "status"], Duration::from_secs(10))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Waits until `check` accepts node `name`'s status.
    pub fn wait_status(
        &self,
        host: &str,
        name: &str,
        what: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + limit;
        let mut last = Value::Null;
        loop {
            if let Ok(s) = self.status(host, name) {
                if check(&s) {
                    return Ok(s);
                }
                last = s;
            }
            if Instant::now() >= deadline {
                return Err(
                    format!("timed out waiting for {name}: {what}; last status: {last}").into(),
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The peer ID of node `name`.
    pub fn peer_id(&self, host: &str, name: &str) -> Result<String> {
        Ok(self.status(host, name)?["peer_id"]
            .as_str()
            .ok_or("no peer id")?
            .to_owned())
    }
}

fn rand_suffix() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t % 1000
}

impl Drop for Testnet {
    fn drop(&mut self) {
        if let Ok(mut p) = self.procs.lock() {
            for (_, mut c) in p.drain() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", &self.prefix])
            .output();
        // For a post-mortem: KITH_TESTNET_KEEP=DIR keeps the nodes' logs in DIR/PREFIX.
        if let Some(keep) = std::env::var_os("KITH_TESTNET_KEEP") {
            let to = Path::new(&keep).join(&self.prefix);
            if std::fs::create_dir_all(&to).is_ok()
                && let Ok(entries) = std::fs::read_dir(self.dir.path())
            {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "log") {
                        let _ = std::fs::copy(&p, to.join(e.file_name()));
                    }
                }
            }
        }
    }
}

/// The connections in status `s` to `peer`.
pub fn connections_to<'a>(s: &'a Value, peer: &str) -> Vec<&'a Value> {
    s["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["peer_id"] == peer)
        .collect()
}

/// Standard `kith up` flags for a node on the test network.
pub fn node_args<'a>(broker: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "up",
        "--no-mdns",
        "--autonat-private-ips",
        "--listen",
        "/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1",
        "--broker",
        broker,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

/// `kith broker` flags for the relay host.
pub fn broker_args() -> Vec<String> {
    [
        "broker",
        "--no-mdns",
        "--autonat-private-ips",
        "--listen",
        "/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1",
        "--announce",
        &format!("/ip4/{RELAY_IP}/tcp/4001,/ip4/{RELAY_IP}/udp/4001/quic-v1"),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}
