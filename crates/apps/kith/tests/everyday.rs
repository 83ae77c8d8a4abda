//! Everyday use through real `kith` processes. Transfers the user controls: a download
//! (slowed by a download cap) is listed with its progress and rate, paused (it stays
//! paused and keeps its verified chunks), resumed to a byte-equal file without fetching
//! again what it had; another is cancelled and what it wrote is gone; Ctrl-C on `kith get`
//! leaves the download running in the node and says how to stop it. `kith status` gives
//! dialable addresses and `kith connect` dials one; logs are plain text off a terminal;
//! completions and the man page come from the CLI definition; `config.toml` shows every
//! default and a bad value names its key. Bad requests get one line. The daemon limits
//! glibc to two malloc arenas unless the user chose a number.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use kith_testkit::testnet::wait_child;
use kith_testkit::{Result, data};
use serde_json::Value;

mod common;
use common::*;

/// `kith get ID -o OUT --json` on `home`, left running.
fn start_get(home: &Path, id: &str, out: &Path) -> Result<Child> {
    Ok(Command::new(KITH)
        .arg("--home")
        .arg(home)
        .args(["get", "--json", id, "-o"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// The download of `id` on `home`, once `check` holds for it.
fn download_when(
    home: &Path,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Result<Value> {
    until(what, || {
        let all = ok(home, &["downloads"])?;
        let d = all
            .as_array()
            .and_then(|a| a.iter().find(|d| d["id"] == id).cloned());
        Ok(d.filter(|d| check(d)))
    })
}

fn share(home: &Path, file: &Path, bytes: &[u8]) -> Result<String> {
    std::fs::write(file, bytes)?;
    let v = ok(home, &["share", file.to_str().ok_or("path")?])?;
    Ok(v["id"].as_str().ok_or("no id")?.to_owned())
}

#[test]
fn downloads_are_listed_paused_resumed_and_cancelled() -> Result<()> {
    let t = tmp()?;
    let root = t.path();
    let (ha, hb) = (root.join("a"), root.join("b"));
    let _a = up(&ha, &[])?;
    let boot = addr_of(&ha)?;
    // 4 MB/s: a 16 MB file takes about four seconds.
    let _b = up(&hb, &["--bootstrap", &boot, "--download-limit", "4M"])?;
    let bytes = data(16_000_000, 5);
    let id = share(&ha, &root.join("big.bin"), &bytes)?;
    let out = root.join("big.out");

    let get = start_get(&hb, &id, &out)?;
    let d = download_when(&hb, &id, "progress and a rate", |d| {
        d["done_bytes"].as_u64() > Some(2_000_000) && d["rate"].as_u64() > Some(0)
    })?;
    assert_eq!(d["state"], "downloading", "{d}");
    assert_eq!(d["providers"].as_array().map(Vec::len), Some(1), "{d}");
    let listed = stdout(&kith(&hb, &["downloads"])?);
    assert!(
        listed.contains(&id) && listed.contains("downloading"),
        "{listed}"
    );

    // Paused: `get` ends saying so; the download stays paused with what it had.
    let p = ok(&hb, &["pause", &id])?;
    assert_eq!(p["state"], "paused", "{p}");
    let ended = wait_child(get, LIMIT)?;
    assert!(!ended.status.success());
    assert!(stderr(&ended).contains("paused"), "{}", stderr(&ended));
    let paused = download_when(&hb, &id, "paused", |d| d["state"] == "paused")?;
    assert_eq!(paused["rate"], 0, "{paused}");
    let had = paused["done_bytes"].as_u64().unwrap_or(0);
    assert!(had > 0 && had < bytes.len() as u64, "{paused}");
    let again = fails(&hb, &["pause", &id])?;
    assert!(again.contains("no download"), "{again}");

    // Resumed: it finishes into the same file, and what it had is not fetched again.
    let r = ok(&hb, &["resume", &id])?;
    assert_ne!(r["state"], "paused", "{r}");
    let not_paused = fails(&hb, &["resume", &id])?;
    assert!(not_paused.contains("not paused"), "{not_paused}");
    let done = ok(&hb, &["get", &id, "-o", out.to_str().ok_or("path")?])?;
    assert_eq!(std::fs::read(&out)?, bytes);
    let fetched = done["fetched_bytes"].as_u64().unwrap_or(u64::MAX);
    assert!(
        fetched < bytes.len() as u64,
        "verified chunks fetched again: {done}"
    );

    // Ctrl-C on `get`: the download goes on in the node.
    let id2 = share(&ha, &root.join("second.bin"), &data(16_000_000, 6))?;
    let out2 = root.join("second.out");
    let get2 = start_get(&hb, &id2, &out2)?;
    download_when(&hb, &id2, "second download", |d| {
        d["done_bytes"].as_u64() > Some(0)
    })?;
    let sig = Command::new("kill")
        .args(["-INT", &get2.id().to_string()])
        .status()?;
    assert!(sig.success());
    let ended = wait_child(get2, LIMIT)?;
    let err = stderr(&ended);
    assert!(
        err.contains("goes on in the node") && err.contains(&format!("kith cancel {id2}")),
        "{err}"
    );
    download_when(&hb, &id2, "still running", |d| d["state"] == "downloading")?;

    // Cancelled: gone from the list, and its file removed.
    let c = ok(&hb, &["cancel", &id2])?;
    assert_eq!(c["cancelled"], true, "{c}");
    until("cancelled download gone", || {
        let all = ok(&hb, &["downloads"])?;
        Ok(all
            .as_array()
            .is_some_and(|a| a.iter().all(|d| d["id"] != id2.as_str()))
            .then_some(()))
    })?;
    assert!(!out2.exists(), "a cancelled download's file is removed");
    let gone = fails(&hb, &["cancel", &id2])?;
    assert!(gone.contains("no download"), "{gone}");
    let bad = fails(&hb, &["pause", "not-an-id"])?;
    assert!(bad.contains("bad content ID"), "{bad}");
    Ok(())
}

#[test]
fn status_gives_dialable_addresses_and_connect_dials_one_at_runtime() -> Result<()> {
    let t = tmp()?;
    let (ha, hb) = (t.path().join("a"), t.path().join("b"));
    let _a = up(&ha, &[])?;
    let s = ok(&ha, &["status"])?;
    let a_id = s["peer_id"].as_str().ok_or("no peer id")?.to_owned();
    // A bootstrap peer at an address where nobody listens: a warning with the error.
    let nowhere = format!("/ip4/127.0.0.1/tcp/1/p2p/{a_id}");
    let _b = up(&hb, &["--bootstrap", &nowhere])?;
    until("the bootstrap warning", || {
        let log = std::fs::read_to_string(hb.with_extension("log"))?;
        Ok(log
            .lines()
            .any(|l| l.contains("WARN") && l.contains("cannot reach bootstrap peer"))
            .then_some(()))
    })?;
    let dial = s["dialable"][0]
        .as_str()
        .ok_or("no dialable address")?
        .to_owned();
    assert!(dial.ends_with(&format!("/p2p/{a_id}")), "{s}");
    let human = stdout(&kith(&ha, &["status"])?);
    assert!(human.contains(&format!("dial      {dial}")), "{human}");

    // B knows nobody until it is told where A really is.
    assert_eq!(ok(&hb, &["peers"])?.as_array().map(Vec::len), Some(0));
    let conns = ok(&hb, &["connect", &dial])?;
    assert!(
        conns
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["peer_id"] == a_id.as_str())),
        "{conns}"
    );
    let bad = fails(&hb, &["connect", "/ip4/127.0.0.1/tcp/1"])?;
    assert!(bad.contains("names no peer"), "{bad}");
    let junk = fails(&hb, &["connect", "not an address"])?;
    assert!(junk.contains("bad address"), "{junk}");

    // The node's log (stderr, not a terminal) is plain text and says where to dial it.
    let log = std::fs::read_to_string(ha.with_extension("log"))?;
    assert!(!log.contains('\u{1b}'), "colour codes in a log file");
    assert!(log.contains("others can dial this node at"), "{log}");
    Ok(())
}

#[test]
fn completions_and_the_man_page_come_from_the_cli_definition() -> Result<()> {
    let t = tmp()?;
    let home = t.path().join("none");
    for shell in ["bash", "zsh", "fish"] {
        let o = kith(&home, &["completions", shell])?;
        assert!(o.status.success(), "{}", stderr(&o));
        let script = stdout(&o);
        for cmd in ["downloads", "pause", "cancel", "connect", "vault", "pin"] {
            assert!(script.contains(cmd), "{shell} completions lack {cmd}");
        }
    }
    let man = kith(&home, &["man"])?;
    assert!(man.status.success());
    let page = stdout(&man);
    assert!(
        page.starts_with(".ie") && page.contains(".TH kith 1"),
        "{page}"
    );
    assert!(page.contains("downloads"), "{page}");
    let bad = kith(&home, &["completions", "nosh"])?;
    assert!(!bad.status.success());
    assert!(!home.exists(), "no data dir is made for these");
    Ok(())
}

#[test]
fn the_config_file_shows_every_default_and_a_bad_value_names_its_key() -> Result<()> {
    let t = tmp()?;
    let home = t.path().join("n");
    let o = kith(&home, &["init"])?;
    assert!(o.status.success(), "{}", stderr(&o));
    let path = home.join("config.toml");
    let text = std::fs::read_to_string(&path)?;
    for line in [
        "# upload_limit = 0",
        "# mdns = true",
        "# cache = 0",
        "# relay = true",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    std::fs::write(
        &path,
        format!("{text}\nmdns = false\nupload_limit = \"fast\"\n"),
    )?;
    let o = kith(
        &home,
        &["up", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"],
    )?;
    assert!(!o.status.success());
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("upload_limit") && l.contains("fast")),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_folder_download_run_again_after_a_crash_continues_into_its_path() -> Result<()> {
    let t = tmp()?;
    let root = t.path();
    let (ha, hb) = (root.join("a"), root.join("b"));
    let _a = up(&ha, &[])?;
    let boot = addr_of(&ha)?;
    let slow = ["--bootstrap", boot.as_str(), "--download-limit", "4M"];
    let mut b = up(&hb, &slow)?;
    let src = root.join("album");
    std::fs::create_dir_all(src.join("disc2"))?;
    for (i, name) in ["one.bin", "two.bin", "disc2/three.bin"].iter().enumerate() {
        std::fs::write(src.join(name), data(5_000_000, 70 + i as u64))?;
    }
    let v = ok(&ha, &["share", src.to_str().ok_or("path")?])?;
    let id = v["id"].as_str().ok_or("no id")?.to_owned();
    let out = root.join("copy");
    let get = start_get(&hb, &id, &out)?;
    download_when(&hb, &id, "part of the folder", |d| {
        d["done_bytes"].as_u64() > Some(2_000_000)
    })?;
    b.0.kill()?; // SIGKILL: no clean shutdown
    b.0.wait()?;
    let _ = wait_child(get, LIMIT)?;
    // What arrived waits beside the output, hidden; nothing is under its name yet.
    assert!(
        root.join(".copy.kith-part").is_dir(),
        "the partial folder is there"
    );
    assert!(!out.exists(), "a partial folder under the output's name");

    let _b = up(&hb, &slow)?;
    let done = ok(&hb, &["get", &id, "-o", out.to_str().ok_or("path")?])?;
    assert_eq!(done["output"], out.to_str().ok_or("path")?, "{done}");
    kith_testkit::same_tree(&src, &out)?;
    assert!(!out.join("album").exists(), "a second copy nested inside");
    assert!(
        !root.join(".copy.kith-part").exists(),
        "the staging folder is left"
    );
    // Another folder that is there already is refused, with one line.
    let other = root.join("other");
    std::fs::create_dir_all(&other)?;
    let err = fails(&hb, &["get", &id, "-o", other.to_str().ok_or("path")?])?;
    assert!(err.contains("already exists"), "{err}");
    Ok(())
}

#[test]
fn service_install_writes_a_user_unit_for_this_binary_and_data_dir() -> Result<()> {
    let t = tmp()?;
    let (home, xdg) = (t.path().join("n"), t.path().join("config"));
    let run = |args: &[&str]| -> Result<std::process::Output> {
        let child = Command::new(KITH)
            .env("XDG_CONFIG_HOME", &xdg)
            .arg("--home")
            .arg(&home)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        wait_child(child, LIMIT)
    };
    let o = run(&["service", "install"])?;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("systemctl --user enable --now kith"),
        "{}",
        stdout(&o)
    );
    let unit = std::fs::read_to_string(xdg.join("systemd/user/kith.service"))?;
    let exec = format!("ExecStart=\"{KITH}\" --home \"{}\" up", home.display());
    assert!(unit.contains(&exec), "{unit}");
    let o = run(&["service", "uninstall"])?;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!xdg.join("systemd/user/kith.service").exists());
    let o = run(&["service", "uninstall"])?;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not installed"), "{}", stderr(&o));
    Ok(())
}

#[test]
fn a_ticket_carries_the_addresses_to_a_node_that_knows_nobody() -> Result<()> {
    let t = tmp()?;
    let (ha, hb) = (t.path().join("a"), t.path().join("b"));
    let _a = up(&ha, &[])?;
    let _b = up(&hb, &[])?; // no bootstrap: B knows no peer at all
    let bytes = data(3_000_000, 9);
    let file = t.path().join("slides.pdf");
    std::fs::write(&file, &bytes)?;
    let v = ok(&ha, &["share", "--ticket", file.to_str().ok_or("path")?])?;
    let ticket = v["ticket"].as_str().ok_or("no ticket")?.to_owned();
    assert!(ticket.starts_with("kith"), "{v}");
    let out = t.path().join("got.pdf");
    let got = ok(&hb, &["get", &ticket, "-o", out.to_str().ok_or("path")?])?;
    assert_eq!(got["id"], v["id"], "{got}");
    assert_eq!(std::fs::read(&out)?, bytes);
    let bad = fails(&hb, &["get", "kithnotaticket", "-o", "/tmp/x"])?;
    assert!(bad.contains("damaged ticket"), "{bad}");
    Ok(())
}

#[test]
fn a_get_that_finds_nothing_says_what_it_looked_at() -> Result<()> {
    let t = tmp()?;
    let (ha, hb) = (t.path().join("a"), t.path().join("b"));
    let _a = up(&ha, &[])?;
    let _b = up(&hb, &["--bootstrap", &addr_of(&ha)?])?;
    let none = "bagaaihrafbdlcyh5kpacudozmmlzymqj2s46ohsgoqqqtntrfk7mcslaaaaa";
    let out = t.path().join("none");
    let o = kith(
        &hb,
        &[
            "get",
            none,
            "-o",
            out.to_str().ok_or("path")?,
            "--timeout",
            "7",
        ],
    )?;
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "note: still looking for {none}: 1 connected peer asked"
        )),
        "{err}"
    );
    let last = err
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect::<Vec<_>>();
    assert_eq!(last.len(), 1, "{err}");
    assert!(last.iter().all(|l| l.contains("does not have it")), "{err}");
    Ok(())
}

/// The first search right after a share finds it, by a word of its text too, and a
/// `prefix*` of a word of its text finds it as the whole word does. `kith cat` writes a
/// shared file's bytes (and a file inside a shared folder), and refuses a folder.
#[test]
fn a_share_is_found_at_once_and_cat_writes_its_bytes() -> Result<()> {
    let t = tmp()?;
    let home = t.path().join("a");
    let _a = up(&home, &[])?;
    let dir = t.path().join("minutes");
    std::fs::create_dir_all(&dir)?;
    let notes = dir.join("notes.txt");
    std::fs::write(
        &notes,
        "the committee discussed zanzibarian logistics at length",
    )?;
    let id = ok(&home, &["share", dir.to_str().ok_or("path")?])?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for q in ["zanzibarian", "zanzib*", "logist*", "minutes"] {
        let o = kith(&home, &["search", "--json", "--timeout", "1", q])?;
        let found = stdout(&o)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|r| r["name"] == "notes.txt" || r["id"] == id.as_str());
        assert!(found, "{q}: {}{}", stdout(&o), stderr(&o));
    }
    let o = kith(&home, &["cat", &format!("{id}/notes.txt")])?;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, std::fs::read(&notes)?);
    let err = fails(&home, &["cat", &id])?;
    assert!(err.contains("is a folder"), "{err}");
    Ok(())
}

/// A fetched folder keeps each file's modification time and executable bit; the same
/// bytes keep one ID whatever their time.
#[test]
fn fetched_files_keep_their_time_and_executable_bit() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let t = tmp()?;
    let (ha, hb) = (t.path().join("a"), t.path().join("b"));
    let _a = up(&ha, &[])?;
    let _b = up(&hb, &["--bootstrap", &addr_of(&ha)?])?;
    let dir = t.path().join("tools");
    std::fs::create_dir_all(&dir)?;
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    for (name, mode) in [("run.sh", 0o755), ("notes.txt", 0o644)] {
        let p = dir.join(name);
        std::fs::write(&p, format!("contents of {name}"))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        std::fs::File::options()
            .write(true)
            .open(&p)?
            .set_modified(old)?;
    }
    let id = ok(&ha, &["share", dir.to_str().ok_or("path")?])?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let out = t.path().join("fetched");
    ok(&hb, &["get", &id, "-o", out.to_str().ok_or("path")?])?;
    for (name, exec) in [("run.sh", true), ("notes.txt", false)] {
        let m = std::fs::metadata(out.join(name))?;
        assert_eq!(m.modified()?, old, "{name}: modification time");
        assert_eq!(
            m.permissions().mode() & 0o111 != 0,
            exec,
            "{name}: exec bit"
        );
    }
    // B provides the folder under the same ID (its copy indexes to the same manifest).
    let listed = ok(&hb, &["ls"])?;
    let ids: Vec<&str> = listed
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert!(ids.contains(&id.as_str()), "{listed}");
    Ok(())
}

/// The `MALLOC_ARENA_MAX` a running process was started with, from `/proc`.
fn arena_setting(pid: u32) -> Result<Option<String>> {
    let env = std::fs::read(format!("/proc/{pid}/environ"))?;
    Ok(env
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("MALLOC_ARENA_MAX="))
        .map(str::to_owned))
}

#[test]
fn the_daemon_limits_malloc_arenas_unless_the_user_set_them() -> Result<()> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return Ok(());
    }
    let dir = tmp()?;
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // It runs itself again with the setting: same process, and it serves.
        let node = up(&dir.path().join("a"), &[])?;
        assert_eq!(arena_setting(node.0.id())?.as_deref(), Some("2"));
        ok(&dir.path().join("a"), &["status"])?;
    }
    let node = run_node_env(
        &dir.path().join("b"),
        "up",
        &[],
        &[("MALLOC_ARENA_MAX", "4")],
    )?;
    assert_eq!(arena_setting(node.0.id())?.as_deref(), Some("4"));
    Ok(())
}
