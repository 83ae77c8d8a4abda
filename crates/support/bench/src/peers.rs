//! Other tools measured beside kith in the same run: aria2 (BitTorrent, with a torrent
//! made by mktorrent and a tracker served here on loopback) and sendme. A tool that is
//! not installed is skipped with a note, so the benchmarks still run without them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The path of `name` on `$PATH` (or in `~/.cargo/bin`), if installed.
pub fn tool(name: &str) -> Option<PathBuf> {
    let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(cargo_bin)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Peak resident memory (VmHWM) of process `pid` so far, in MiB; 0 when it is gone.
pub fn peak_rss_mib(pid: u32) -> f64 {
    crate::proc_status_mib(&pid.to_string(), "VmHWM")
}

/// A copy by another tool: how long, and the peak memory of its sending and receiving
/// processes.
pub struct ToolCopy {
    pub time: Duration,
    pub sender_mib: f64,
    pub receiver_mib: f64,
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on loopback right now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts connections on `addr`.
fn wait_listening(addr: SocketAddr, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not start listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits for `child` to exit (at most `limit`), noting its peak memory while it runs.
fn wait_peak(child: &mut Child, limit: Duration, what: &str) -> Result<f64> {
    let deadline = Instant::now() + limit;
    let mut peak: f64 = 0.0;
    loop {
        peak = peak.max(peak_rss_mib(child.id()));
        if let Some(st) = child.try_wait()? {
            if !st.success() {
                bail!("{what} failed: {st}");
            }
            return Ok(peak);
        }
        if Instant::now() > deadline {
            bail!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A BitTorrent tracker on loopback that answers every announce with one peer, the seeder.
/// It serves until the process ends (one thread, at most `MAX_ANNOUNCES` answers).
fn tracker(seeder_port: u16) -> Result<u16> {
    const MAX_ANNOUNCES: usize = 1000;
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for s in l.incoming().take(MAX_ANNOUNCES) {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(buf.get(..n).unwrap_or_default()),
                }
            }
            // Compact peer list: 4 bytes of address, 2 of port.
            let mut body = b"d8:intervali60e5:peers6:".to_vec();
            body.extend_from_slice(&[127, 0, 0, 1]);
            body.extend_from_slice(&seeder_port.to_be_bytes());
            body.push(b'e');
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    Ok(port)
}

/// aria2's options shared by the seeder and the downloader: no DHT, no local discovery, no
/// peer exchange (the tracker here is the only source of peers), quiet.
const ARIA2_COMMON: &[&str] = &[
    "--enable-dht=false",
    "--enable-dht6=false",
    "--bt-enable-lpd=false",
    "--enable-peer-exchange=false",
    "--disable-ipv6=true",
    "--console-log-level=warn",
    "--summary-interval=0",
    "--quiet=true",
];

/// BitTorrent copy of `src` with aria2: mktorrent makes the torrent (1 MiB pieces), one
/// aria2 seeds `src` in place, another downloads it into `out_dir`. The time runs from the
/// downloader's start to its exit (it stops seeding at once). `None` when aria2c or
/// mktorrent is not installed.
pub fn aria2_copy(src: &Path, work: &Path, out_dir: &Path) -> Result<Option<ToolCopy>> {
    let (Some(aria2), Some(mktorrent)) = (tool("aria2c"), tool("mktorrent")) else {
        return Ok(None);
    };
    let seeder_port = free_port()?;
    let tracker_port = tracker(seeder_port)?;
    let torrent = work.join("bench.torrent");
    let _ = std::fs::remove_file(&torrent);
    let made = Command::new(mktorrent)
        .args(["-l", "20", "-a"])
        .arg(format!("http://127.0.0.1:{tracker_port}/announce"))
        .arg("-o")
        .arg(&torrent)
        .arg(src)
        .stdout(Stdio::null())
        .status()?;
    if !made.success() {
        bail!("mktorrent failed: {made}");
    }
    let src_dir = src.parent().context("source has no folder")?;
    let seeder = Killed(
        Command::new(&aria2)
            .args(ARIA2_COMMON)
            .args([
                "--seed-ratio=0.0",
                "--bt-seed-unverified=true",
                &format!("--listen-port={seeder_port}"),
            ])
            .arg("-d")
            .arg(src_dir)
            .arg(&torrent)
            .stdout(Stdio::null())
            .spawn()?,
    );
    wait_listening(([127, 0, 0, 1], seeder_port).into(), "the aria2 seeder")?;
    std::fs::create_dir_all(out_dir)?;
    let start = Instant::now();
    let mut downloader = Command::new(&aria2)
        .args(ARIA2_COMMON)
        .args([
            "--seed-time=0",
            "--file-allocation=none",
            &format!("--listen-port={}", free_port()?),
        ])
        .arg("-d")
        .arg(out_dir)
        .arg(&torrent)
        .stdout(Stdio::null())
        .spawn()?;
    let receiver_mib = wait_peak(
        &mut downloader,
        Duration::from_secs(600),
        "the aria2 download",
    )?;
    let time = start.elapsed();
    let sender_mib = peak_rss_mib(seeder.0.id());
    Ok(Some(ToolCopy {
        time,
        sender_mib,
        receiver_mib,
    }))
}

/// A network namespace of this process with only loopback up, removed on drop: sendme
/// (iroh) looks for relays and publishes its address on the Internet unless it cannot,
/// and benchmarks send nothing beyond this machine.
pub struct Netns(String);

impl Netns {
    /// `None` when namespaces cannot be made here (no `ip`, not root).
    pub fn new() -> Option<Self> {
        let name = format!("kith-bench-{}", std::process::id());
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok(&["netns", "add", &name]) {
            return None;
        }
        let ns = Self(name);
        ok(&["-n", &ns.0, "link", "set", "lo", "up"]).then_some(ns)
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// sendme serving a file (in its own namespace): how long its import took, and the ticket.
pub struct Sendme {
    sender: Killed,
    ticket: String,
    pub import: Duration,
    program: PathBuf,
    // Dropped last: the processes in it go first.
    ns: Netns,
}

const SENDME_COMMON: &[&str] = &["--relay", "disabled", "--no-progress"];

impl Sendme {
    /// Starts `sendme send src` in `work` and waits for its ticket (the import is done when
    /// the ticket is printed). `None` when sendme is not installed or no namespace can be
    /// made.
    pub fn send(src: &Path, work: &Path) -> Result<Option<Self>> {
        let (Some(program), Some(ns)) = (tool("sendme"), Netns::new()) else {
            return Ok(None);
        };
        let start = Instant::now();
        let mut child = ns
            .command(&program)
            .arg("send")
            .args(SENDME_COMMON)
            .args([
                "--ticket-type",
                "addresses",
                "--magic-ipv4-addr",
                "127.0.0.1:0",
            ])
            .arg(src)
            .current_dir(work)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("sendme: no stdout")?;
        let sender = Killed(child);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let mut out = std::io::BufReader::new(stdout);
            let mut line = String::new();
            // Read to the end: sendme must not find its output closed while it serves.
            while std::io::BufRead::read_line(&mut out, &mut line).is_ok_and(|n| n > 0) {
                if let Some(t) = line.split_whitespace().find(|w| w.starts_with("blob")) {
                    let _ = tx.try_send(t.to_owned());
                }
                line.clear();
            }
        });
        let ticket = rx
            .recv_timeout(Duration::from_secs(600))
            .context("sendme send printed no ticket")?;
        Ok(Some(Self {
            sender,
            ticket,
            import: start.elapsed(),
            program,
            ns,
        }))
    }

    /// Fetches the file into `out_dir` with `sendme receive`.
    pub fn receive(&self, out_dir: &Path) -> Result<ToolCopy> {
        std::fs::create_dir_all(out_dir)?;
        let start = Instant::now();
        let mut child = self
            .ns
            .command(&self.program)
            .arg("receive")
            .args(SENDME_COMMON)
            .arg(&self.ticket)
            .current_dir(out_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let receiver_mib = wait_peak(&mut child, Duration::from_secs(600), "sendme receive")?;
        Ok(ToolCopy {
            time: start.elapsed(),
            sender_mib: peak_rss_mib(self.sender.0.id()),
            receiver_mib,
        })
    }
}
