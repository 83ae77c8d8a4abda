//! Shared helpers for the benchmark programs in `src/bin/`: data files on tmpfs, real
//! `kith` processes, peak-memory readings, and the plain-TCP and TLS baselines.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod peers;

pub const MIB: u64 = 1024 * 1024;

/// Scratch space on tmpfs, so the disk (≈240 MB/s here) does not set the figures.
pub fn scratch() -> Result<tempfile::TempDir> {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    Ok(tempfile::Builder::new()
        .prefix("kith-bench-")
        .tempdir_in(base)?)
}

/// Writes `len` pseudo-random bytes to `path`.
pub fn make_file(path: &Path, len: u64, seed: u64) -> Result<()> {
    let mut f = std::io::BufWriter::with_capacity(4 << 20, std::fs::File::create(path)?);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(buf.get(..n).unwrap_or_default())?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

pub fn same_file(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = std::io::BufReader::new(std::fs::File::open(a)?);
    let mut fb = std::io::BufReader::new(std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = fa.read(&mut ba)?;
        let mut nb = 0;
        while nb < na {
            let k = fb.read(&mut bb[nb..na])?;
            if k == 0 {
                return Ok(false);
            }
            nb += k;
        }
        if na == 0 {
            return Ok(fb.read(&mut bb)? == 0);
        }
        if ba[..na] != bb[..na] {
            return Ok(false);
        }
    }
}

pub fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Path of the `kith` binary: `$KITH_BIN`, else next to this program.
pub fn kith_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("KITH_BIN") {
        return Ok(p.into());
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name("kith");
    if !p.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p kith) or set KITH_BIN",
            p.display()
        );
    }
    Ok(p)
}

/// A `kith up` process, killed on drop.
pub struct Daemon {
    pub home: PathBuf,
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn start(home: &Path, args: &[&str]) -> Result<Self> {
        let log = std::fs::File::create(home.with_extension("log"))?;
        let child = Command::new(kith_bin()?)
            .arg("--home")
            .arg(home)
            .args(["up", "--no-mdns"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let d = Self {
            home: home.to_owned(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.kith(&["status"])?.0 {
            if Instant::now() > deadline {
                bail!("node at {} did not start", home.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    /// Runs a kith command against this node; (success, stdout, stderr).
    pub fn kith(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let o = Command::new(kith_bin()?)
            .arg("--home")
            .arg(&self.home)
            .args(args)
            .output()?;
        Ok((
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into(),
            String::from_utf8_lossy(&o.stderr).into(),
        ))
    }

    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let (ok, out, err) = self.kith(args)?;
        if !ok {
            bail!("kith {args:?} failed: {err}");
        }
        let line = out.lines().last().unwrap_or_default();
        serde_json::from_str(line).with_context(|| format!("parsing {line:?}"))
    }

    pub fn addr(&self) -> Result<String> {
        let s = self.json(&["status", "--json"])?;
        Ok(format!(
            "{}/p2p/{}",
            s["listen_addrs"][0].as_str().unwrap_or_default(),
            s["peer_id"].as_str().unwrap_or_default()
        ))
    }

    /// Peak resident memory of the daemon so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        peers::peak_rss_mib(self.child.id())
    }

    /// Starts the peak (VmHWM) over from the current resident size, so the next reading
    /// covers only what happens from now on.
    pub fn reset_peak(&self) -> Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")?;
        Ok(())
    }

    /// CPU time the daemon used so far (user + system), in seconds.
    pub fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime is the 12th.
        let rest = stat.rsplit(')').next().unwrap_or_default();
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
        ticks / 100.0
    }
}

fn copy_stream<R: Read, W: Write>(mut r: R, mut w: W) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        w.write_all(buf.get(..k).unwrap_or_default())?;
        n += k as u64;
    }
    w.flush()?;
    Ok(n)
}

/// Baseline: copy `src` to `dst` over one plain loopback TCP connection.
pub fn tcp_copy(src: &Path, dst: &Path) -> Result<Duration> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let src = src.to_owned();
    let start = Instant::now();
    let server = std::thread::spawn(move || -> Result<u64> {
        let (s, _) = l.accept()?;
        copy_stream(std::fs::File::open(&src)?, s)
    });
    let c = TcpStream::connect(addr)?;
    copy_stream(c, std::fs::File::create(dst)?)?;
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))??;
    Ok(start.elapsed())
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Baseline: copy `src` to `dst` over one loopback TLS 1.3 connection (rustls, AES-GCM).
pub fn tls_copy(src: &Path, dst: &Path) -> Result<Duration> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let cert_der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let server_cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert_der], key)?,
    );
    let client_cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    );
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let src = src.to_owned();
    let start = Instant::now();
    let server = std::thread::spawn(move || -> Result<u64> {
        let (s, _) = l.accept()?;
        let conn = rustls::ServerConnection::new(server_cfg)?;
        let mut tls = rustls::StreamOwned::new(conn, s);
        let n = copy_stream(std::fs::File::open(&src)?, &mut tls)?;
        tls.conn.send_close_notify();
        tls.flush()?;
        Ok(n)
    });
    let s = TcpStream::connect(addr)?;
    let conn = rustls::ClientConnection::new(client_cfg, "localhost".try_into()?)?;
    let tls = rustls::StreamOwned::new(conn, s);
    copy_stream(tls, std::fs::File::create(dst)?)?;
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))??;
    Ok(start.elapsed())
}

/// For programs that take only numbers as arguments: prints `usage` and exits on `-h` or
/// `--help`, and exits with an error line on anything that is not a number, rather than
/// starting a long benchmark with defaults.
pub fn check_args(usage: &str) {
    for a in std::env::args().skip(1) {
        if a == "-h" || a == "--help" {
            println!("usage: {usage}");
            std::process::exit(0);
        }
        if a.split(',').any(|x| x.parse::<u64>().is_err()) {
            eprintln!("error: {a:?} is not a number\nusage: {usage}");
            std::process::exit(2);
        }
    }
}

/// Rounds from the second argument, or `default` (at least one).
pub fn rounds_arg(default: usize) -> usize {
    std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
        .max(1)
}

/// The median of `v` (the upper one of an even count); `None` when empty.
pub fn median<T: Copy + PartialOrd>(v: &[T]) -> Option<T> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len() / 2).copied()
}

/// A size field (`VmRSS`, `VmHWM`, ...) of `/proc/PID/status` in MiB, for `pid` a number
/// or `self`; 0 when the process is gone.
pub fn proc_status_mib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Size from the first argument in MiB, or `default_mib`.
pub fn size_arg(default_mib: u64) -> u64 {
    std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default_mib)
        * MIB
}

/// A small deterministic generator (SplitMix64), so simulated data is the same every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The `i`-th word of a made-up vocabulary (pronounceable, distinct).
pub fn word(i: usize) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ren", "sa", "tu", "vo", "xe", "bra", "dil", "fen", "gor", "hu", "jin",
        "nal", "pe",
    ];
    let mut s = String::new();
    let mut x = i + 17;
    for _ in 0..3 {
        s.push_str(SYL[x % 16]);
        x /= 16;
    }
    format!("{s}{}", i % 7)
}
