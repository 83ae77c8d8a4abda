use super::*;
use crate::spec::Limits;

fn spec(dir: &Path, units: usize) -> JobSpec {
    std::fs::write(dir.join("m.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for i in 0..units {
        std::fs::write(inputs.join(format!("u{i}")), format!("input {i}")).unwrap();
    }
    JobSpec::new(
        "t".into(),
        dir.join("m.wasm"),
        &inputs,
        2,
        None,
        None,
        Limits::default(),
    )
    .unwrap()
}

/// Gives `key` a record that earns trust: agreements with three other people.
fn trust(m: &Master, key: &str) {
    let mut st = recover(&m.standings);
    let others = ["p1", "p2", "p3"].iter().cycle();
    for p in others.take(standing::TRUSTED_STREAK as usize) {
        st.agreed(key, &[p]);
    }
    assert!(st.trusted(key));
}

fn done(h: &str) -> ReplicaState {
    ReplicaState::Done { hash: h.into() }
}

fn eq(a: &str, b: &str) -> bool {
    a == b
}

/// Each unit of a job by name, with the results it needs.
fn needed(m: &Master, id: &str) -> Vec<(String, u8)> {
    let jobs = recover(&m.jobs);
    jobs[id]
        .units
        .iter()
        .map(|u| (u.name.clone(), u.needed))
        .collect()
}

fn asker<'a>(peer: &'a str, may: &'a dyn Fn(&str) -> bool) -> Asker<'a> {
    Asker {
        peer,
        key: peer,
        may,
    }
}

#[test]
fn a_master_that_dies_between_saves_keeps_what_it_handed_out_and_took() {
    let d = tempfile::tempdir().unwrap();
    let m = Master::load(&d.path().join("compute")).unwrap();
    let job = m.create(&spec(d.path(), 2)).unwrap();
    let id = job.id.clone();
    m.add(job).unwrap();
    let yes = |_: &str| true;
    let a = m.work(&asker("a", &yes), 4, 1 << 30, None);
    let b = m.work(&asker("b", &yes), 1, 1 << 30, None);
    assert_eq!((a.units.len(), b.units.len()), (2, 1));
    assert_eq!(a.inline.len(), 2, "small inputs travel inline");
    let done = |h: &str| ReplicaState::Done { hash: h.into() };
    m.take("a", &id, "u0", done("x"), &mut |x, y| x == y)
        .unwrap();
    m.take("b", &id, "u0", done("x"), &mut |x, y| x == y)
        .unwrap();
    // No flush: the process "dies" here.
    let again = Master::load(&d.path().join("compute")).unwrap();
    let c = again.status(&id).unwrap().counts;
    assert_eq!((c.validated, c.running), (1, 1), "{c:?}");
    let e = again.take("c", &id, "u1", done("y"), &mut |x, y| x == y);
    assert!(e.is_err(), "a unit never given to c");
    again
        .take("a", &id, "u1", done("y"), &mut |x, y| x == y)
        .unwrap();
    again.flush().unwrap();
    let third = Master::load(&d.path().join("compute")).unwrap();
    let c = third.status(&id).unwrap().counts;
    assert_eq!((c.validated, c.done), (1, 2), "{c:?}");
}

#[test]
fn a_dropped_volunteer_gets_no_work_and_memory_limits_are_kept() {
    let d = tempfile::tempdir().unwrap();
    let m = Master::load(&d.path().join("compute")).unwrap();
    m.add(m.create(&spec(d.path(), 3)).unwrap()).unwrap();
    let yes = |_: &str| true;
    let small = m.work(&asker("a", &yes), 4, 1 << 20, None);
    assert!(small.units.is_empty());
    assert!(small.reason.contains("memory"), "{}", small.reason);
    for _ in 0..standing::MAX_FAULTS {
        recover(&m.standings).disagreed("c");
    }
    let h = m.work(&asker("c", &yes), 4, 1 << 30, None);
    assert!(h.units.is_empty() && h.standing.dropped, "{}", h.reason);
}

#[test]
fn a_trusted_volunteer_gets_units_alone_with_spot_checks_up_to_a_share() {
    let d = tempfile::tempdir().unwrap();
    let m = Master::load(&d.path().join("compute")).unwrap();
    let job = m.create(&spec(d.path(), 60)).unwrap();
    let id = job.id.clone();
    m.add(job).unwrap();
    trust(&m, "t");
    let yes = |_: &str| true;
    let mut given = Vec::new();
    while given.len() < 60 {
        let h = m.work(&asker("t", &yes), 32, 1 << 30, None);
        assert!(!h.units.is_empty());
        given.extend(h.units.into_iter().map(|u| u.name));
    }
    let needed = needed(&m, &id);
    let solo = needed.iter().filter(|(_, n)| *n == 1).count();
    let cap = 60 * TRUST_SHARE / 100;
    assert!(
        solo > 20 && solo <= cap,
        "{solo} of 60 alone: at most {cap}, and spot checks keep some at quorum"
    );
    // A unit given alone is validated by its one result, on trust: no standing for it.
    let (name, _) = needed.iter().find(|(_, n)| *n == 1).unwrap();
    let before = recover(&m.standings).get("t");
    let (v, after, _) = m.take("t", &id, name, done("x"), &mut eq).unwrap();
    assert!(v.agreed.is_empty(), "{v:?}");
    assert_eq!(v.on_trust.as_deref(), Some("t"));
    assert_eq!(after, before, "a result nobody checked scores nothing");
    let s = m.status(&id).unwrap();
    assert_eq!((s.counts.validated, s.counts.on_trust), (1, 1));
    assert_eq!(s.on_trust, std::slice::from_ref(name));
    // The owner accepts it.
    assert_eq!(m.accept_trust(&id).unwrap(), 1);
    assert_eq!(m.status(&id).unwrap().counts.on_trust, 0);
}

#[test]
fn a_job_without_trust_and_a_unit_gone_stale_go_at_full_quorum() {
    let d = tempfile::tempdir().unwrap();
    let m = Master::load(&d.path().join("compute")).unwrap();
    let mut s = spec(d.path(), 20);
    s.trust = false;
    let job = m.create(&s).unwrap();
    let strict = job.id.clone();
    m.add(job).unwrap();
    trust(&m, "t");
    let yes = |_: &str| true;
    m.work(&asker("t", &yes), 32, 1 << 30, None);
    assert!(needed(&m, &strict).iter().all(|(_, n)| *n == 2));
    // A unit given alone whose replica expired goes to the next volunteer at full quorum.
    let job = m.create(&spec(d.path(), 4)).unwrap();
    let id = job.id.clone();
    m.add(job).unwrap();
    m.work(&asker("t", &yes), 4, 1 << 30, None);
    let alone: Vec<String> = needed(&m, &id)
        .into_iter()
        .filter(|(_, n)| *n == 1)
        .map(|(u, _)| u)
        .collect();
    for j in recover(&m.jobs).values_mut() {
        j.expire(u64::MAX);
    }
    m.work(&asker("u", &yes), 32, 1 << 30, None);
    for (u, n) in needed(&m, &id) {
        assert_eq!(n, 2, "{u} (given alone before: {})", alone.contains(&u));
    }
}

#[test]
fn a_fault_reopens_what_its_volunteer_had_on_trust_in_every_job() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("compute");
    let m = Master::load(&dir).unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let job = m.create(&spec(d.path(), 10)).unwrap();
        ids.push(job.id.clone());
        m.add(job).unwrap();
    }
    let (a, b) = (ids[0].clone(), ids[1].clone());
    trust(&m, "t");
    let yes = |_: &str| true;
    let h = m.work(&asker("t", &yes), 32, 1 << 30, None);
    assert_eq!(h.units.len(), 20);
    // t returns wrong bytes in job a, right ones in job b.
    for u in &h.units {
        let out = if u.job == a { "bad" } else { "x" };
        m.take("t", &u.job, &u.name, done(out), &mut eq).unwrap();
    }
    // Job b finishes: its units at quorum get a second, agreeing result.
    for u in m.work(&asker("h1", &yes), 32, 1 << 30, None).units {
        let out = if u.job == a { "good" } else { "x" };
        m.take("h1", &u.job, &u.name, done(out), &mut eq).unwrap();
    }
    assert_eq!(m.status(&b).unwrap().job.state, JobState::Done);
    let on_trust_a = m.status(&a).unwrap().counts.on_trust;
    assert!(on_trust_a >= 1 && m.status(&b).unwrap().counts.on_trust >= 1);
    // A third person settles job a's units at quorum: t disagreed.
    let mut faulted = false;
    for u in m.work(&asker("h2", &yes), 32, 1 << 30, None).units {
        let (v, _, _) = m
            .take("h2", &u.job, &u.name, done("good"), &mut eq)
            .unwrap();
        faulted |= v.disagreed == ["t"];
    }
    assert!(faulted);
    for id in [&a, &b] {
        let s = m.status(id).unwrap();
        assert_eq!(s.counts.on_trust, 0, "{s:?}");
        assert_eq!(s.job.state, JobState::Running, "{s:?}");
    }
    let reopened = |m: &Master| m.status(&a).unwrap().counts.validated;
    assert_eq!(reopened(&m), 10 - on_trust_a);
    // t gets none of them again; the others redo them.
    assert!(
        m.work(&asker("t", &yes), 32, 1 << 30, None)
            .units
            .is_empty()
    );
    let again = m.work(&asker("h2", &yes), 32, 1 << 30, None).units;
    assert!(again.len() as u64 >= on_trust_a, "{}", again.len());
    // A master that dies now keeps the results set aside.
    let m2 = Master::load(&dir).unwrap();
    assert_eq!(m2.status(&a).unwrap().counts.on_trust, 0);
    assert_eq!(reopened(&m2), 10 - on_trust_a);
    assert_eq!(m2.status(&b).unwrap().job.state, JobState::Running);
}

#[test]
fn a_result_alone_from_a_volunteer_that_lost_trust_meanwhile_is_set_aside() {
    let d = tempfile::tempdir().unwrap();
    let m = Master::load(&d.path().join("compute")).unwrap();
    let job = m.create(&spec(d.path(), 10)).unwrap();
    let id = job.id.clone();
    m.add(job).unwrap();
    trust(&m, "t");
    let yes = |_: &str| true;
    m.work(&asker("t", &yes), 32, 1 << 30, None);
    let (alone, _) = needed(&m, &id).into_iter().find(|(_, n)| *n == 1).unwrap();
    // Its fault elsewhere comes in first.
    recover(&m.standings).disagreed("t");
    let (v, _, _) = m.take("t", &id, &alone, done("x"), &mut eq).unwrap();
    assert_eq!(v.on_trust.as_deref(), Some("t"));
    let s = m.status(&id).unwrap();
    assert_eq!((s.counts.validated, s.counts.on_trust), (0, 0), "{s:?}");
    let u = m.work(&asker("h", &yes), 32, 1 << 30, None).units;
    assert!(u.iter().any(|u| u.name == alone), "it goes out again");
}
