//! The vault through real `kith` processes on loopback: an owner stores a file 3-of-6 on
//! holders that lend space; audits catch a spoiled share and a dropped one, a holder that
//! vanishes is replaced after the grace period, a second device restores from the person
//! key alone, three holders gone still leave the file whole; backups move only what
//! changed and restore each version. A holder on a full tmpfs is placed around (this
//! one needs root to mount it, and says SKIPPED without); the shares of a put cut short
//! by a crash of its owner are released when the owner starts again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kith_testkit::{Result, data};
use serde_json::Value;

mod common;
use common::*;

/// Audits every second, holders replaced after 3 s gone (tests only; hours by default).
const FAST: [&str; 4] = ["--vault-audit-every", "1s", "--vault-grace", "3s"];

/// The shares of a stored file (not of the small index) a holder keeps.
fn held(home: &Path) -> Vec<PathBuf> {
    all_held(home)
        .into_iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 500_000))
        .collect()
}

/// Every share a holder keeps (file paths).
fn all_held(home: &Path) -> Vec<PathBuf> {
    let dir = home.join("vault").join("held");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().map(|f| f.to_string_lossy().into_owned());
                    n.is_some_and(|n| n.len() == 64 && !n.contains('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Starts `count` holders lending `offer`, each joined through the first.
fn holders(root: &Path, count: usize, offer: &str) -> Result<(Vec<PathBuf>, Vec<Option<Proc>>)> {
    let mut homes = Vec::new();
    let mut procs = Vec::new();
    let mut first = None::<String>;
    for i in 0..count {
        let h = root.join(format!("holder{i}"));
        let mut args = vec!["--offer", offer];
        let boot;
        if let Some(b) = &first {
            boot = b.clone();
            args.extend(["--bootstrap", &boot]);
        }
        procs.push(Some(up(&h, &args)?));
        if first.is_none() {
            first = Some(addr_of(&h)?);
        }
        homes.push(h);
    }
    Ok((homes, procs))
}

fn all_addrs(homes: &[PathBuf]) -> Result<String> {
    Ok(homes
        .iter()
        .map(|h| addr_of(h))
        .collect::<Result<Vec<_>>>()?
        .join(","))
}

/// Waits until `home` is connected to every node in `homes` (a put needs its holders).
fn until_connected(home: &Path, homes: &[PathBuf]) -> Result<()> {
    let ids = homes
        .iter()
        .map(|h| {
            Ok(ok(h, &["id"])?["peer_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned())
        })
        .collect::<Result<Vec<String>>>()?;
    until("connections to every holder", || {
        let v = ok(home, &["peers"])?;
        let have: Vec<&str> = v
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["peer_id"].as_str()).collect())
            .unwrap_or_default();
        Ok(ids.iter().all(|i| have.contains(&i.as_str())).then_some(()))
    })
}

fn status(owner: &Path, id: &str) -> Result<Value> {
    ok(owner, &["vault", "status", id])
}

/// Waits until the object is whole again (n of n shares pass audits) with at least
/// `repairs` repairs done.
fn until_repaired(owner: &Path, id: &str, repairs: u64) -> Result<Value> {
    let mut last = Value::Null;
    until_within(Duration::from_secs(90), "repair", || {
        let s = status(owner, id)?;
        last = s.clone();
        Ok((num(&s, "repairs") >= repairs && s["reachable"] == s["n"]).then_some(s))
    })
    .map_err(|e| format!("{e}: {last}").into())
}

fn get_equal(home: &Path, id: &str, out: &Path, want: &[u8]) -> Result<()> {
    let g = ok(home, &["vault", "get", id, "-o", &out.to_string_lossy()])?;
    assert_eq!(num(&g, "bytes"), want.len() as u64, "{g}");
    assert!(std::fs::read(out)? == want, "restored bytes differ");
    Ok(())
}

/// A new device given the owner's person key restores object `id`; its node is returned
/// (it runs until dropped).
fn second_device_restores(
    dir: &Path,
    owner: &Path,
    live: &[PathBuf],
    id: &str,
    bytes: &[u8],
) -> Result<Proc> {
    let second = dir.join("second");
    let key = owner.join("people").join("person.key");
    let k = key.to_string_lossy().into_owned();
    ok(&second, &["init", "--person-key", &k])?;
    let boot = all_addrs(live)?;
    let node = up(&second, &["--bootstrap", &boot])?;
    until_connected(&second, live)?;
    let out = dir.join("second.raw");
    until("the second device restores", || {
        let o = kith(&second, &["vault", "get", id, "-o", &out.to_string_lossy()])?;
        Ok(o.status.success().then_some(()))
    })?;
    assert!(std::fs::read(&out)? == bytes);
    Ok(node)
}

#[test]
fn a_file_survives_spoiled_dropped_and_vanished_holders() -> Result<()> {
    let dir = tmp()?;
    // Six holders for the six shares, and three to take the place of the spoiled, the
    // dropped and the vanished one.
    let (homes, mut procs) = holders(dir.path(), 9, "32M")?;
    let owner = dir.path().join("owner");
    let boot = all_addrs(&homes)?;
    let mut args = vec!["--bootstrap", &boot];
    args.extend(FAST);
    let _o = up(&owner, &args)?;
    until_connected(&owner, &homes)?;

    let bytes = data(3_000_000, 7);
    let file = dir.path().join("photo.raw");
    std::fs::write(&file, &bytes)?;
    let f = file.to_string_lossy().into_owned();
    let put = ok(&owner, &["vault", "put", &f, "--k", "3", "--n", "6"])?;
    let id = put["id"].as_str().ok_or("no id")?.to_owned();
    assert_eq!(
        (num(&put, "k"), num(&put, "n"), num(&put, "holders")),
        (3, 6, 6),
        "{put}"
    );
    get_equal(&owner, &id, &dir.path().join("back.raw"), &bytes)?;

    // Holders keep ciphertext only; a non-owner reads nothing.
    let sample = &bytes[1_000_000..1_000_064];
    let shares: Vec<PathBuf> = homes.iter().flat_map(|h| all_held(h)).collect();
    assert!(shares.len() >= 6, "shares on disk: {shares:?}");
    for s in &shares {
        let b = std::fs::read(s)?;
        assert!(
            !b.windows(64).any(|w| w == sample),
            "plaintext in {}",
            s.display()
        );
    }
    let err = fails(&homes[0], &["vault", "get", &id, "-o", "/tmp/never"])?;
    assert!(
        err.contains("not in the vault") || err.contains("no vault index"),
        "{err}"
    );

    // A share spoiled on a holder's disk: the audit finds it, repair rebuilds it elsewhere.
    let victim = homes
        .iter()
        .find(|h| !held(h).is_empty())
        .ok_or("no holder")?;
    let spoiled = held(victim)[0].clone();
    let len = std::fs::metadata(&spoiled)?.len() as usize;
    std::fs::write(&spoiled, vec![0u8; len])?;
    until_repaired(&owner, &id, 1)?;
    // A share dropped while the holder still claims it: caught the same way.
    let claimer = homes
        .iter()
        .find(|h| *h != victim && !held(h).is_empty())
        .ok_or("no second holder")?;
    std::fs::remove_file(&held(claimer)[0])?;
    until_repaired(&owner, &id, 2)?;
    let overview = ok(&owner, &["vault", "status"])?;
    let faults: u64 = overview["peers"]
        .as_array()
        .map(|p| p.iter().map(|x| num(x, "faults")).sum())
        .unwrap_or(0);
    assert!(faults >= 2, "{overview}");

    // A holder that vanishes is replaced after the grace period.
    let gone = homes
        .iter()
        .position(|h| h != victim && h != claimer && !held(h).is_empty())
        .ok_or("no third holder")?;
    procs[gone] = None;
    until_repaired(&owner, &id, 3)?;
    get_equal(&owner, &id, &dir.path().join("again.raw"), &bytes)?;

    // A second device of the owner restores from the person key alone.
    let live: Vec<PathBuf> = homes
        .iter()
        .enumerate()
        .filter(|(i, _)| procs[*i].is_some())
        .map(|(_, h)| h.clone())
        .collect();
    let _second = second_device_restores(dir.path(), &owner, &live, &id, &bytes)?;

    // Any three holders of its shares gone: the file still restores.
    let mut killed = 0;
    for (i, h) in homes.iter().enumerate() {
        if killed < 3 && procs[i].is_some() && !held(h).is_empty() {
            procs[i] = None;
            killed += 1;
        }
    }
    assert_eq!(killed, 3);
    get_equal(&owner, &id, &dir.path().join("last.raw"), &bytes)?;
    Ok(())
}

#[test]
fn quotas_and_bad_input_get_one_clear_line() -> Result<()> {
    let dir = tmp()?;
    let (homes, _procs) = holders(dir.path(), 4, "8M")?;
    let owner = dir.path().join("owner");
    let boot = all_addrs(&homes)?;
    let _o = up(&owner, &["--bootstrap", &boot])?;
    until_connected(&owner, &homes)?;
    let big = dir.path().join("big.bin");
    std::fs::write(&big, data(6_000_000, 3))?;
    let b = big.to_string_lossy().into_owned();
    // Each holder gives a stranger an eighth of 8M: 4 MiB in all, less than 6 MB × 4/2.
    let err = fails(&owner, &["vault", "put", &b, "--k", "2", "--n", "4"])?;
    assert!(err.contains("not enough space offered"), "{err}");
    let err = fails(&owner, &["vault", "put", &b, "--k", "2", "--n", "9"])?;
    assert!(err.contains("only 4 holders"), "{err}");
    let err = fails(&owner, &["vault", "put", &b, "--k", "4", "--n", "3"])?;
    assert!(err.contains("1 ≤ k < n"), "{err}");
    let err = fails(&owner, &["vault", "get", "nosuch", "-o", "/tmp/x"])?;
    assert!(err.contains("not in the vault"), "{err}");
    assert!(
        ok(&owner, &["vault", "ls"])?
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    // Nothing was left on the holders by the refused puts.
    assert!(homes.iter().all(|h| all_held(h).is_empty()));
    Ok(())
}

/// Milliseconds since the Unix epoch, as `--at` takes it (Unix seconds with a fraction).
fn now_at() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:.3}", d.as_secs_f64())
}

fn read_tree(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            std::fs::read(e.path())?,
        ));
    }
    Ok(out)
}

#[test]
fn backups_move_only_changed_chunks_and_restore_each_version() -> Result<()> {
    let dir = tmp()?;
    let (homes, _procs) = holders(dir.path(), 4, "64M")?;
    let owner = dir.path().join("owner");
    let boot = all_addrs(&homes)?;
    let _o = up(&owner, &["--bootstrap", &boot])?;
    until_connected(&owner, &homes)?;
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs)?;
    for i in 0..4u64 {
        std::fs::write(docs.join(format!("f{i}.bin")), data(1_500_000, 20 + i))?;
    }
    let d = docs.to_string_lossy().into_owned();
    let first = ok(&owner, &["backup", &d, "--k", "2", "--n", "4"])?;
    assert_eq!(num(&first, "new_bytes"), 6_000_000, "{first}");
    let v1 = read_tree(&docs)?;
    let at1 = now_at();

    // A small change: 100 bytes in one file, one small new file.
    let mut f2 = std::fs::read(docs.join("f2.bin"))?;
    f2[700_000..700_100].fill(0xee);
    std::fs::write(docs.join("f2.bin"), &f2)?;
    std::fs::write(docs.join("notes.txt"), b"remember the milk")?;
    let second = ok(&owner, &["backup", &d, "--k", "2", "--n", "4"])?;
    let moved = num(&second, "new_bytes");
    assert!(
        moved > 0 && moved < 1_200_000,
        "moved {moved} bytes: {second}"
    );
    let v2 = read_tree(&docs)?;

    let r1 = dir.path().join("r1");
    ok(
        &owner,
        &["restore", "--at", &at1, "-o", &r1.to_string_lossy()],
    )?;
    assert!(read_tree(&r1)? == v1, "the first version");
    let r2 = dir.path().join("r2");
    let g = ok(&owner, &["restore", &d, "-o", &r2.to_string_lossy()])?;
    assert_eq!(num(&g, "files"), 5, "{g}");
    assert!(read_tree(&r2)? == v2, "the newest version");
    let err = fails(&owner, &["restore", "--at", "1000", "-o", "/tmp/x"])?;
    assert!(err.contains("no backup"), "{err}");
    Ok(())
}

/// A tmpfs mounted for a test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> std::result::Result<Self, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).trim().to_owned());
        }
        Ok(Self(at.to_owned()))
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> Result<PathBuf> {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path)?;
        let block = vec![0u8; 1 << 20];
        while f.write_all(&block).is_ok() {}
        Ok(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The case on a real disk: a holder whose tmpfs is full. A 14-byte put and a
/// 20 MB one are stored (and the index) on the holders that have room, and say so; one
/// that needs the full holder is refused before anything is sent; once the disk has
/// room again, the holder takes shares again.
#[test]
fn a_holder_on_a_full_disk_is_placed_around() -> Result<()> {
    let dir = tmp()?;
    let fs = match Tmpfs::mount(&dir.path().join("small-disk"), "80m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a tmpfs here (it needs root): {why}");
            return Ok(());
        }
    };
    let full = fs.0.join("holder");
    let _f = up(&full, &["--offer", "1G"])?;
    let boot = addr_of(&full)?;
    let mut homes = vec![full.clone()];
    let mut procs = Vec::new();
    for i in 0..2 {
        let h = dir.path().join(format!("holder{i}"));
        procs.push(up(&h, &["--offer", "256M", "--bootstrap", &boot])?);
        homes.push(h);
    }
    let owner = dir.path().join("owner");
    let all = all_addrs(&homes)?;
    let mut args = vec!["--bootstrap", all.as_str()];
    args.extend(FAST);
    let _o = up(&owner, &args)?;
    until_connected(&owner, &homes)?;
    let filler = fs.fill()?;

    let note = dir.path().join("note.txt");
    std::fs::write(&note, b"fourteen bytes")?;
    let n = note.to_string_lossy().into_owned();
    let put = ok(&owner, &["vault", "put", &n, "--k", "1", "--n", "2"])?;
    assert_eq!(num(&put, "holders"), 2, "{put}");
    assert_eq!(put["index_published"], true, "{put}");
    let big = dir.path().join("big.bin");
    std::fs::write(&big, data(20_000_000, 5))?;
    let b = big.to_string_lossy().into_owned();
    let put = ok(&owner, &["vault", "put", &b, "--k", "1", "--n", "2"])?;
    assert_eq!(put["index_published"], true, "{put}");
    let id = put["id"].as_str().ok_or("no id")?.to_owned();
    assert!(all_held(&full).is_empty(), "the full holder took a share");
    get_equal(
        &owner,
        &id,
        &dir.path().join("back.bin"),
        &data(20_000_000, 5),
    )?;

    // Three holders needed, two have room: refused before anything is sent.
    let before: Vec<usize> = homes.iter().map(|h| all_held(h).len()).collect();
    let err = fails(
        &owner,
        &[
            "vault", "put", &n, "--name", "three", "--k", "1", "--n", "3",
        ],
    )?;
    assert!(err.contains("only 2 holders"), "{err}");
    let after: Vec<usize> = homes.iter().map(|h| all_held(h).len()).collect();
    assert_eq!(before, after, "a refused put left shares behind");

    // Room again: the holder lends it again.
    std::fs::remove_file(&filler)?;
    let put = until("the holder offers room again", || {
        let o = kith(
            &owner,
            &["--json", "vault", "put", &n, "--k", "1", "--n", "3"],
        )?;
        o.status.success().then(|| json_of(&o)).transpose()
    })?;
    assert_eq!(num(&put, "holders"), 3, "{put}");
    assert!(!all_held(&full).is_empty());
    drop(procs);
    Ok(())
}

/// The owner crashes in the middle of a put: the shares it had placed stay on holders
/// until it starts again, and then they are released.
#[test]
fn shares_of_a_put_cut_short_by_a_crash_are_released_at_the_next_start() -> Result<()> {
    let dir = tmp()?;
    let (homes, _procs) = holders(dir.path(), 3, "1G")?;
    let owner = dir.path().join("owner");
    let boot = all_addrs(&homes)?;
    let o = up(&owner, &["--bootstrap", &boot])?;
    until_connected(&owner, &homes)?;
    let big = dir.path().join("big.bin");
    std::fs::write(&big, data(150_000_000, 8))?;
    let cli = std::process::Command::new(bin())
        .arg("--home")
        .arg(&owner)
        .args([
            "vault",
            "put",
            &big.to_string_lossy(),
            "--k",
            "2",
            "--n",
            "3",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let cli = Proc(cli);
    let placed = || homes.iter().map(|h| all_held(h).len()).sum::<usize>();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while placed() == 0 {
        assert!(std::time::Instant::now() < deadline, "no share was placed");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(o); // SIGKILL: no chance to clean up.
    drop(cli);
    assert!(placed() > 0);
    let _o = up(&owner, &["--bootstrap", &boot])?;
    let ls = ok(&owner, &["vault", "ls"])?;
    assert!(
        ls.as_array().is_some_and(Vec::is_empty),
        "the put finished before the owner was stopped: {ls}"
    );
    until_within(Duration::from_secs(90), "the shares released", || {
        Ok((placed() == 0).then_some(()))
    })?;
    Ok(())
}
