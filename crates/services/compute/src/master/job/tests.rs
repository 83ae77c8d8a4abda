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
