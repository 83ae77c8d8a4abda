use super::*;

fn blob(h: &str) -> Blob {
    Blob {
        hash: h.into(),
        size: 1,
        content: None,
    }
}

fn job(quorum: u8, units: usize) -> Job {
    Job {
        id: "j".into(),
        name: "t".into(),
        created: 0,
        group: None,
        quorum,
        trust: true,
        limits: Limits::default(),
        module: blob("m"),
        validator: None,
        state: JobState::Running,
        units: (0..units)
            .map(|i| UnitState {
                name: format!("u{i}"),
                input: blob("i"),
                needed: quorum,
                replicas: Vec::new(),
                canonical: None,
                failed: None,
                on_trust: None,
            })
            .collect(),
        cursor: 0,
    }
}

fn issue(j: &mut Job, unit: usize, v: &str, deadline: u64) {
    j.units[unit].replicas.push(Replica {
        volunteer: v.into(),
        key: v.into(),
        issued: 0,
        deadline,
        state: ReplicaState::Running,
    });
}

fn done(h: &str) -> ReplicaState {
    ReplicaState::Done { hash: h.into() }
}

fn eq(a: &str, b: &str) -> bool {
    a == b
}

#[test]
fn a_quorum_of_agreeing_results_validates_and_the_odd_one_is_a_fault() {
    let mut j = job(2, 1);
    assert!(j.units[0].wants(10));
    issue(&mut j, 0, "a", 100);
    issue(&mut j, 0, "b", 100);
    assert!(!j.units[0].wants(10), "two running can make the quorum");
    let v = j.take("u0", "a", done("x"), &mut eq).unwrap();
    assert_eq!(v, Verdict::default());
    let v = j.take("u0", "b", done("y"), &mut eq).unwrap();
    assert!(v.agreed.is_empty());
    assert!(
        j.units[0].wants(10),
        "no agreement: a third opinion is needed"
    );
    issue(&mut j, 0, "c", 100);
    let v = j.take("u0", "c", done("x"), &mut eq).unwrap();
    assert_eq!(v.agreed, ["a", "c"]);
    assert_eq!(v.disagreed, ["b"]);
    assert_eq!(j.units[0].canonical.as_deref(), Some("x"));
    assert!(j.finished());
    assert_eq!(j.counts(10).validated, 1);
}

#[test]
fn results_for_units_not_given_are_refused() {
    let mut j = job(2, 2);
    issue(&mut j, 0, "a", 100);
    let e = j.take("u1", "a", done("x"), &mut eq).unwrap_err();
    assert_eq!(e, Refusal::NotIssued("u1".into()));
    let e = j.take("u0", "b", done("x"), &mut eq).unwrap_err();
    assert_eq!(e, Refusal::NotIssued("u0".into()));
    assert!(j.take("nope", "a", done("x"), &mut eq).is_err());
    j.take("u0", "a", done("x"), &mut eq).unwrap();
    let e = j.take("u0", "a", done("x"), &mut eq).unwrap_err();
    assert_eq!(e, Refusal::NotIssued("u0".into()), "one result per replica");
}

#[test]
fn expired_units_go_out_again_and_late_results_still_count() {
    let mut j = job(2, 1);
    issue(&mut j, 0, "a", 5);
    issue(&mut j, 0, "b", 50);
    assert!(!j.units[0].wants(4));
    assert!(j.units[0].wants(6), "a's replica is past its deadline");
    assert_eq!(j.expire(6), 1);
    issue(&mut j, 0, "c", 50);
    j.take("u0", "b", done("x"), &mut eq).unwrap();
    let v = j.take("u0", "a", done("x"), &mut eq).unwrap();
    assert_eq!(v.agreed, ["a", "b"], "a's late result made the quorum");
    let v = j.take("u0", "c", done("z"), &mut eq).unwrap();
    assert_eq!(
        v.disagreed,
        ["c"],
        "a result after the quorum is still scored"
    );
}

#[test]
fn a_unit_fails_after_repeated_faults() {
    let mut j = job(1, 1);
    issue(&mut j, 0, "a", 100);
    let fault = ReplicaState::Faulted {
        fault: Fault::OutOfFuel,
    };
    assert!(!j.take("u0", "a", fault.clone(), &mut eq).unwrap().failed);
    issue(&mut j, 0, "b", 100);
    assert!(j.take("u0", "b", fault, &mut eq).unwrap().failed);
    assert!(j.units[0].failed.as_deref().unwrap_or("").contains("fuel"));
    assert_eq!(j.counts(0).failed, 1);
}

#[test]
fn a_validator_can_call_different_bytes_the_same() {
    let mut j = job(2, 1);
    issue(&mut j, 0, "a", 100);
    issue(&mut j, 0, "b", 100);
    let mut close = |a: &str, b: &str| a.len() == b.len();
    j.take("u0", "a", done("x1"), &mut close).unwrap();
    let v = j.take("u0", "b", done("x2"), &mut close).unwrap();
    assert_eq!(v.agreed, ["a", "b"]);
}

#[test]
fn a_result_alone_is_on_trust_until_a_second_person_confirms_it() {
    let mut j = job(2, 2);
    j.units[0].needed = 1;
    issue(&mut j, 0, "t", 100);
    let v = j.take("u0", "t", done("x"), &mut eq).unwrap();
    assert!(v.agreed.is_empty(), "a result alone verifies nobody: {v:?}");
    assert_eq!(v.on_trust.as_deref(), Some("t"));
    let c = j.counts(10);
    assert_eq!((c.validated, c.on_trust), (1, 1));
    assert_eq!(j.status(10).on_trust, ["u0"]);
    // A second person's late result that agrees: verified, both credited.
    issue(&mut j, 0, "b", 100);
    let v = j.take("u0", "b", done("x"), &mut eq).unwrap();
    assert_eq!(v.agreed, ["t", "b"]);
    assert_eq!(v.quorum, ["t", "b"]);
    assert_eq!(j.counts(10).on_trust, 0);
    // One that disagrees: open again at full quorum, both results count, a third decides.
    j.units[1].needed = 1;
    issue(&mut j, 1, "t", 100);
    j.take("u1", "t", done("x"), &mut eq).unwrap();
    issue(&mut j, 1, "b", 100);
    let v = j.take("u1", "b", done("y"), &mut eq).unwrap();
    assert_eq!(v, Verdict::default(), "nobody is right yet");
    assert!(j.units[1].open() && j.units[1].wants(10));
    assert_eq!(j.units[1].needed, 2);
    issue(&mut j, 1, "c", 100);
    let v = j.take("u1", "c", done("y"), &mut eq).unwrap();
    assert_eq!(
        (v.agreed, v.disagreed),
        (vec!["b".into(), "c".into()], vec!["t".into()])
    );
}

#[test]
fn a_fault_sets_aside_the_results_on_trust_and_their_units_go_out_again() {
    let mut j = job(2, 3);
    for u in 0..2 {
        j.units[u].needed = 1;
        issue(&mut j, u, "t", 100);
        j.take(&format!("u{u}"), "t", done("bad"), &mut eq).unwrap();
    }
    issue(&mut j, 2, "t", 100);
    issue(&mut j, 2, "a", 100);
    j.take("u2", "t", done("x"), &mut eq).unwrap();
    j.take("u2", "a", done("x"), &mut eq).unwrap();
    assert!(j.finished());
    j.state = JobState::Done;
    assert_eq!(j.revoke("a"), 0, "a has nothing on trust");
    assert_eq!(j.revoke("t"), 2);
    assert_eq!(j.state, JobState::Running, "a finished job runs again");
    let c = j.counts(10);
    assert_eq!((c.validated, c.on_trust), (1, 0), "{c:?}");
    let u0 = &j.units[0];
    assert!(u0.open() && u0.wants(10) && u0.had("t") && !u0.fresh());
    assert_eq!(u0.needed, 2, "at full quorum");
    // The result set aside counts in no quorum, and is scored once others validate.
    issue(&mut j, 0, "a", 100);
    let v = j.take("u0", "a", done("good"), &mut eq).unwrap();
    assert_eq!(v, Verdict::default(), "one result in hand");
    issue(&mut j, 0, "b", 100);
    let v = j.take("u0", "b", done("good"), &mut eq).unwrap();
    assert_eq!(v.agreed, ["a", "b"]);
    assert_eq!(v.disagreed, ["t"]);
    // A result set aside that was right is credited.
    issue(&mut j, 1, "a", 100);
    issue(&mut j, 1, "b", 100);
    j.take("u1", "a", done("bad"), &mut eq).unwrap();
    let v = j.take("u1", "b", done("bad"), &mut eq).unwrap();
    assert_eq!(v.agreed, ["a", "b", "t"]);
    assert!(v.disagreed.is_empty());
}

#[test]
fn the_owner_can_accept_results_on_trust() {
    let mut j = job(2, 1);
    j.units[0].needed = 1;
    issue(&mut j, 0, "t", 100);
    j.take("u0", "t", done("x"), &mut eq).unwrap();
    assert_eq!(j.accept_trust(), 1);
    assert_eq!(j.counts(10).on_trust, 0);
    assert_eq!(j.revoke("t"), 0, "accepted results are final");
    assert_eq!(j.units[0].canonical.as_deref(), Some("x"));
}

#[test]
fn with_a_quorum_of_one_nobody_is_verified_or_on_trust() {
    let mut j = job(1, 1);
    issue(&mut j, 0, "a", 100);
    let v = j.take("u0", "a", done("x"), &mut eq).unwrap();
    assert_eq!(v, Verdict::default());
    assert_eq!((j.counts(0).validated, j.counts(0).on_trust), (1, 0));
}
