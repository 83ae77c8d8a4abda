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
    let (_, c) = again.counts(&id).unwrap();
    assert_eq!((c.validated, c.running), (1, 1), "{c:?}");
    let e = again.take("c", &id, "u1", done("y"), &mut |x, y| x == y);
    assert!(e.is_err(), "a unit never given to c");
    again
        .take("a", &id, "u1", done("y"), &mut |x, y| x == y)
        .unwrap();
    again.flush().unwrap();
    let third = Master::load(&d.path().join("compute")).unwrap();
    let (j, c) = third.counts(&id).unwrap();
    assert_eq!((c.validated, c.done), (1, 2), "{j:?} {c:?}");
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
fn a_trusted_volunteer_gets_units_alone_with_spot_checks() {
    let d = tempfile::tempdir().unwrap();
    let m = Master::load(&d.path().join("compute")).unwrap();
    let job = m.create(&spec(d.path(), 60)).unwrap();
    let id = job.id.clone();
    m.add(job).unwrap();
    for _ in 0..standing::TRUSTED_STREAK {
        recover(&m.standings).agreed("t");
    }
    let yes = |_: &str| true;
    let mut given = Vec::new();
    while given.len() < 60 {
        let h = m.work(&asker("t", &yes), 32, 1 << 30, None);
        assert!(!h.units.is_empty());
        given.extend(h.units.into_iter().map(|u| u.name));
    }
    let needed: Vec<(String, u8)> = {
        let jobs = recover(&m.jobs);
        jobs[&id]
            .units
            .iter()
            .map(|u| (u.name.clone(), u.needed))
            .collect()
    };
    let solo = needed.iter().filter(|(_, n)| *n == 1).count();
    assert!(
        solo > 20 && solo < 60,
        "{solo} of 60 alone: spot checks keep some at quorum"
    );
    // A unit given alone is validated by its one result.
    let (name, _) = needed.iter().find(|(_, n)| *n == 1).unwrap();
    let done = ReplicaState::Done { hash: "x".into() };
    let (v, _, _) = m.take("t", &id, name, done, &mut |a, b| a == b).unwrap();
    assert_eq!(v.agreed, ["t"]);
}
