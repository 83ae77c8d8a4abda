//! People, devices and private groups through real `kith` processes: three people, four
//! devices (one person with two linked devices), as users would run them.

use std::path::{Path, PathBuf};

use kith_testkit::Result;
use serde_json::Value;

mod common;
use common::*;

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

/// The group IDs `home` is in.
fn groups_of(home: &Path) -> Result<Vec<String>> {
    let list = ok(home, &["group", "ls"])?;
    Ok(list
        .as_array()
        .map(|a| a.iter().map(|g| text(g, "group")).collect())
        .unwrap_or_default())
}

/// A group's members as `(person, sorted devices, admin)`, sorted.
fn members(home: &Path, group: &str) -> Result<Vec<(String, Vec<String>, bool)>> {
    let list = ok(home, &["group", "members", group])?;
    let mut out: Vec<_> = list
        .as_array()
        .ok_or("members is not a list")?
        .iter()
        .map(|m| {
            let mut devices: Vec<String> = m["devices"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            devices.sort();
            (text(m, "person"), devices, m["admin"] == Value::Bool(true))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The IDs a group search on `home` finds.
fn search_group(home: &Path, group: &str, q: &str) -> Result<Vec<String>> {
    let o = kith(
        home,
        &["--json", "search", "--group", group, "--timeout", "2", q],
    )?;
    if !o.status.success() {
        return Err(format!("group search failed: {}", stderr(&o)).into());
    }
    Ok(ids_in(&o))
}

/// The IDs a public search on `home` finds.
fn search_public(home: &Path, q: &str) -> Result<Vec<String>> {
    let o = kith(home, &["--json", "search", "--timeout", "2", q])?;
    Ok(ids_in(&o))
}

fn ids_in(o: &std::process::Output) -> Vec<String> {
    stdout(o)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| text(&v, "id"))
        .collect()
}

/// Fetches `id` into `out`; `Ok(true)` when it arrived.
fn fetch(home: &Path, id: &str, out: &Path, timeout: &str) -> Result<bool> {
    let out = out.display().to_string();
    let o = kith(home, &["get", id, "-o", &out, "--timeout", timeout])?;
    Ok(o.status.success())
}

/// A file to share, with a word only it holds.
fn file(dir: &Path, name: &str, word: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, format!("notes about {word} for the group\n"))?;
    Ok(p)
}

struct World {
    t: tempfile::TempDir,
    a: PathBuf,
    b1: PathBuf,
    b2: PathBuf,
    c: PathBuf,
    procs: Vec<(PathBuf, Proc)>,
    bootstrap: String,
}

impl World {
    fn start() -> Result<Self> {
        let t = tmp()?;
        let home = |n: &str| t.path().join(n);
        let (a, b1, b2, c) = (home("a"), home("b1"), home("b2"), home("c"));
        let pa = up(&a, &[])?;
        let bootstrap = addr_of(&a)?;
        let mut procs = vec![(a.clone(), pa)];
        for h in [&b1, &b2, &c] {
            procs.push((h.clone(), up(h, &["--bootstrap", &bootstrap])?));
        }
        Ok(Self {
            t,
            a,
            b1,
            b2,
            c,
            procs,
            bootstrap,
        })
    }

    /// Stops `home`'s node and starts it again with `extra` flags.
    fn restart(&mut self, home: &Path, extra: &[&str]) -> Result<()> {
        self.procs.retain(|(h, _)| h != home);
        self.procs.push((home.to_owned(), up(home, extra)?));
        Ok(())
    }

    fn dir(&self) -> &Path {
        self.t.path()
    }
}

/// b2 becomes a device of b1's person; the person key stays on b1.
fn link_devices(w: &World) -> Result<String> {
    let me = ok(&w.a, &["person"])?;
    assert_eq!(me["devices"].as_array().map(Vec::len), Some(1));
    let code = text(&ok(&w.b1, &["device", "link"])?, "code");
    assert!(code.starts_with("kith-link:"), "{code}");
    let joined = ok(&w.b2, &["device", "join", &code])?;
    let b = ok(&w.b1, &["person"])?;
    assert_eq!(text(&joined, "person"), text(&b, "person"));
    let again = fails(&w.c, &["device", "join", &code])?;
    assert!(
        again.contains("refused") || again.contains("used"),
        "{again}"
    );
    until("b1 to list both devices", || {
        let b = ok(&w.b1, &["person"])?;
        Ok((b["devices"].as_array().map(Vec::len) == Some(2)).then_some(()))
    })?;
    Ok(text(&b, "person"))
}

#[test]
fn people_devices_and_private_groups() -> Result<()> {
    let mut w = World::start()?;
    let person_b = link_devices(&w)?;
    let person_c = text(&ok(&w.c, &["person"])?, "person");
    let created = ok(&w.a, &["group", "create", "friends"])?;
    let (g, name) = (text(&created, "group"), text(&created, "name"));
    assert!(g.starts_with("grp-") && name == "friends");
    let token = text(&ok(&w.a, &["group", "invite", &g, "--admin"])?, "token");
    ok(&w.b1, &["group", "join", &token])?;
    // b2 is b1's person's device: it learns the group and acts as the member.
    until("b2 to be in the group", || {
        Ok(groups_of(&w.b2)?.contains(&g).then_some(()))
    })?;
    let f1 = file(w.dir(), "plan.txt", "zanzibar")?;
    let id1 = text(
        &ok(&w.a, &["share", "--group", &g, &f1.display().to_string()])?,
        "id",
    );
    until("b2 to find the group file", || {
        Ok(search_group(&w.b2, &g, "zanzibar")?
            .contains(&id1)
            .then_some(()))
    })?;
    assert!(fetch(&w.b2, &id1, &w.dir().join("b2-plan.txt"), "30")?);
    assert!(fetch(&w.b1, &id1, &w.dir().join("b1-plan.txt"), "30")?);
    outsider_sees_nothing(&w, &g, &id1)?;
    // c joins: a member fetches group content like any other.
    let token = text(&ok(&w.a, &["group", "invite", &g])?, "token");
    ok(&w.c, &["group", "join", &token])?;
    let used = fails(&w.c, &["group", "join", &token])?;
    assert!(used.contains("already"), "{used}");
    let f2 = file(w.dir(), "second.txt", "quixotic")?;
    let id2 = text(
        &ok(&w.a, &["share", "--group", &g, &f2.display().to_string()])?,
        "id",
    );
    until("c to find the group file", || {
        Ok(search_group(&w.c, &g, "quixotic")?
            .contains(&id2)
            .then_some(()))
    })?;
    partition_and_heal(&mut w, &g, &person_b, &person_c)?;
    after_removals(&w, &g, &id2)
}

/// A non-member: nothing listed, nothing found, and a fetch fails exactly as for content
/// that does not exist.
fn outsider_sees_nothing(w: &World, g: &str, id: &str) -> Result<()> {
    assert!(groups_of(&w.c)?.is_empty());
    assert!(search_public(&w.c, "zanzibar")?.is_empty());
    let not_in = fails(&w.c, &["search", "--group", g, "zanzibar"])?;
    assert!(not_in.contains("no group"), "{not_in}");
    let real = fails(&w.c, &["get", id, "-o", "/dev/null/x", "--timeout", "3"])?;
    let none = "bagaaihrafbdlcyh5kpacudozmmlzymqj2s46ohsgoqqqtntrfk7mcslaaaaa";
    let fake = fails(&w.c, &["get", none, "-o", "/dev/null/x", "--timeout", "3"])?;
    for e in [&real, &fake] {
        assert!(
            e.contains("does not have it") || e.contains("nothing arrived"),
            "{e}"
        );
        assert!(!e.contains("member") && !e.contains("refused"), "{e}");
    }
    Ok(())
}

/// b1 is cut off; meanwhile b1 (an admin) revokes its device b2 and a removes c. Once b1
/// is back, every member holds the same member list.
fn partition_and_heal(w: &mut World, g: &str, person_b: &str, person_c: &str) -> Result<()> {
    let b1 = w.b1.clone();
    w.restart(&b1, &[])?;
    let b2_id = text(&ok(&w.b2, &["id"])?, "peer_id");
    ok(&w.b1, &["device", "remove", &b2_id])?;
    ok(&w.a, &["group", "remove", g, person_c])?;
    let bootstrap = w.bootstrap.clone();
    w.restart(&b1, &["--bootstrap", &bootstrap])?;
    let a_dev = text(&ok(&w.a, &["id"])?, "peer_id");
    let b1_dev = text(&ok(&w.b1, &["id"])?, "peer_id");
    let person_a = text(&ok(&w.a, &["person"])?, "person");
    let mut want = vec![
        (person_a, vec![a_dev], true),
        (person_b.to_owned(), vec![b1_dev], true),
    ];
    want.sort();
    let agreed = until("a and b1 to agree on the members", || {
        let (ma, mb) = (members(&w.a, g)?, members(&w.b1, g)?);
        Ok((ma == want && mb == want).then_some(()))
    });
    if agreed.is_err() {
        for h in [&w.a, &w.b1] {
            let log = std::fs::read_to_string(h.with_extension("log")).unwrap_or_default();
            let groups: Vec<&str> = log.lines().filter(|l| l.contains("group")).collect();
            eprintln!("{}:\n{}", h.display(), groups.join("\n"));
        }
        eprintln!("a: {:?}\nb1: {:?}", members(&w.a, g), members(&w.b1, g));
    }
    agreed
}

/// The removed person and the revoked device lose access; the person's other device
/// keeps it.
fn after_removals(w: &World, g: &str, id2: &str) -> Result<()> {
    until("c to lose the old file", || {
        Ok((!fetch(&w.c, id2, &w.dir().join("c-second.txt"), "3")?).then_some(()))
    })?;
    until("c to leave the group", || {
        Ok(groups_of(&w.c)?.is_empty().then_some(()))
    })?;
    let f3 = file(w.dir(), "third.txt", "xylophone")?;
    let id3 = text(
        &ok(&w.a, &["share", "--group", g, &f3.display().to_string()])?,
        "id",
    );
    until("b1 to find the new file", || {
        Ok(search_group(&w.b1, g, "xylophone")?
            .contains(&id3)
            .then_some(()))
    })?;
    assert!(fetch(&w.b1, &id3, &w.dir().join("b1-third.txt"), "30")?);
    assert!(search_public(&w.c, "xylophone")?.is_empty());
    assert!(!fetch(&w.c, &id3, &w.dir().join("c-third.txt"), "3")?);
    assert!(!fetch(&w.b2, &id3, &w.dir().join("b2-third.txt"), "3")?);
    Ok(())
}

#[test]
fn bad_invites_get_one_clear_error_line() -> Result<()> {
    let t = tmp()?;
    let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    let _pa = up(&a, &[])?;
    let _pb = up(&b, &["--bootstrap", &addr_of(&a)?])?;
    let _pc = up(&c, &["--bootstrap", &addr_of(&a)?])?;
    let g = text(&ok(&a, &["group", "create", "club"])?, "group");
    let short = ok(&a, &["group", "invite", &g, "--expires", "1s"])?;
    let expires = short["expires"].as_u64().ok_or("no expiry")?;
    until("the invite's expiry", || {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        Ok((now.as_secs() > expires).then_some(()))
    })?;
    let e = fails(&b, &["group", "join", &text(&short, "token")])?;
    assert!(e.contains("expired"), "{e}");
    let token = text(&ok(&a, &["group", "invite", &g])?, "token");
    let mut forged = token.clone();
    let last = forged
        .pop()
        .map_or('x', |c| if c == 'a' { 'b' } else { 'a' });
    forged.push(last);
    let e = fails(&b, &["group", "join", &forged])?;
    assert!(e.contains("invite"), "{e}");
    let e = fails(&b, &["group", "join", "kith-invite:nonsense"])?;
    assert!(e.contains("invite"), "{e}");
    let e = fails(&b, &["group", "invite", &g])?;
    assert!(e.contains("no group"), "{e}");
    let e = fails(&a, &["group", "invite", &g, "--expires", "1y"])?;
    assert!(e.contains("unknown unit"), "{e}");
    let e = fails(&b, &["share", "--group", &g, &a.display().to_string()])?;
    assert!(e.contains("no group"), "{e}");
    // The first use works; the invite is then used up.
    ok(&b, &["group", "join", &token])?;
    let e = fails(&c, &["group", "join", &token])?;
    assert!(e.contains("used"), "{e}");
    let e = fails(&a, &["group", "remove", &g, "nobody"])?;
    assert!(e.starts_with("error: "), "{e}");
    Ok(())
}

/// The sequence through real processes: a member fetches a group's folder twice;
/// it stays the group's (`kith ls` names the group), and an outsider connected to the
/// member neither finds nor fetches it. A failed fetch leaves nothing under its name.
#[test]
fn a_second_get_keeps_group_content_in_the_group() -> Result<()> {
    let t = tmp()?;
    let (a, m, o) = (t.path().join("a"), t.path().join("m"), t.path().join("o"));
    let _pa = up(&a, &[])?;
    let boot = addr_of(&a)?;
    let _pm = up(&m, &["--bootstrap", &boot])?;
    let _po = up(&o, &["--bootstrap", &boot])?;
    ok(&o, &["connect", &addr_of(&m)?])?;
    ok(&a, &["group", "create", "fam"])?;
    let token = text(&ok(&a, &["group", "invite", "fam"])?, "token");
    ok(&m, &["group", "join", &token])?;
    let dir = t.path().join("DIR");
    std::fs::create_dir_all(&dir)?;
    file(&dir, "SECRET_plans.txt", "plans")?;
    let id = text(
        &ok(&a, &["share", "--group", "fam", &dir.display().to_string()])?,
        "id",
    );
    for out in ["x1", "x2"] {
        assert!(fetch(&m, &id, &t.path().join(out), "30")?);
        let ls = ok(&m, &["ls"])?;
        let recs: Vec<&Value> = ls
            .as_array()
            .ok_or("ls is not a list")?
            .iter()
            .filter(|s| s["id"] == id.as_str())
            .collect();
        assert!(!recs.is_empty(), "{ls}");
        for r in recs {
            assert!(text(r, "group").starts_with("grp-"), "after {out}: {ls}");
        }
    }
    assert!(search_public(&o, "plans")?.is_empty());
    let out = t.path().join("o-copy");
    assert!(!fetch(&o, &id, &out, "3")?);
    assert!(!out.exists(), "a failed fetch left {}", out.display());
    // The member's copy shared again without a flag stays in the group.
    let again = kith(&m, &["share", &t.path().join("x1").display().to_string()])?;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("shared with group"),
        "{}",
        stderr(&again)
    );
    assert!(search_public(&o, "plans")?.is_empty());
    Ok(())
}
