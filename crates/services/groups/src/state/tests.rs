//! The fold: membership, admins, keys, and convergence of concurrent operations.

use kith_core::person::{DeviceCert, PersonId, Revocation};
use kith_core::seal::SealKey;
use kith_overlay::Keypair;

use crate::denied::Denied;
use crate::keys;
use crate::log::Group;
use crate::log::Rejected;
use crate::op::{Body, Op};

type R = Result<(), Box<dyn std::error::Error>>;

/// A person with one device.
struct P {
    key: Keypair,
    device: Keypair,
    cert: DeviceCert,
}

impl P {
    fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let key = Keypair::generate_ed25519();
        let device = Keypair::generate_ed25519();
        let seal = SealKey::of_device(&device)?;
        let cert = DeviceCert::sign(&key, &device.public().to_peer_id(), &seal.public(), 1)?;
        Ok(Self { key, device, cert })
    }

    fn person(&self) -> PersonId {
        self.cert.person
    }

    fn seal(&self) -> Result<SealKey, Box<dyn std::error::Error>> {
        Ok(SealKey::of_device(&self.device)?)
    }

    /// An operation of this person's device on top of `g`'s heads.
    fn op(
        &self,
        g: &Group,
        body: Body,
        key: Option<crate::op::KeyUpdate>,
    ) -> Result<Op, Box<dyn std::error::Error>> {
        Ok(Op::sign(
            &self.device,
            self.cert.clone(),
            g.id.clone(),
            g.heads(),
            body,
            key,
            1,
        )?)
    }

    /// A group this person creates, keyed for its device.
    fn create(&self) -> Result<Group, Box<dyn std::error::Error>> {
        let body = Body::Create {
            name: "team".into(),
            devices: vec![self.cert.clone()],
            history: false,
        };
        let genesis = Op::sign(
            &self.device,
            self.cert.clone(),
            String::new(),
            vec![],
            body,
            None,
            1,
        )?;
        let mut g = Group::new(genesis, &self.cert.device, &self.seal()?);
        let key = keys::new_epoch(&g.id, &[&self.cert]).0;
        let op = self.op(&g, Body::Rotate, Some(key))?;
        g.take(vec![op], &self.cert.device, &self.seal()?);
        Ok(g)
    }
}

fn add(
    by: &P,
    g: &mut Group,
    who: &P,
    admin: bool,
    everyone: &[&DeviceCert],
) -> Result<Op, Box<dyn std::error::Error>> {
    let key = keys::new_epoch(&g.id, everyone).0;
    let op = by.op(
        g,
        Body::Add {
            person: who.person(),
            devices: vec![who.cert.clone()],
            admin,
            invite: None,
        },
        Some(key),
    )?;
    let i = g.take(vec![op.clone()], &by.cert.device, &by.seal()?);
    assert_eq!(i.added, 1, "{:?}", i.refused);
    Ok(op)
}

/// The same operations, taken in by another device.
fn replica(g: &Group, who: &P) -> Result<Group, Box<dyn std::error::Error>> {
    let all = g.missing_for(&Default::default());
    let genesis = all
        .iter()
        .find(|o| o.is_genesis())
        .cloned()
        .ok_or("no genesis")?;
    let mut r = Group::new(genesis, &who.cert.device, &who.seal()?);
    r.take(all, &who.cert.device, &who.seal()?);
    Ok(r)
}

#[test]
fn a_removed_member_gets_no_key_sealed_after_the_removal() -> R {
    let (a, b) = (P::new()?, P::new()?);
    let mut g = a.create()?;
    add(&a, &mut g, &b, false, &[&a.cert, &b.cert])?;
    let epoch_with_b = g.state.current_epoch().ok_or("epoch")?.id.clone();
    assert_eq!(g.state.members.len(), 2);
    let key = keys::new_epoch(&g.id, &[&a.cert]).0;
    let rm = a.op(&g, Body::Remove { person: b.person() }, Some(key))?;
    g.take(vec![rm], &a.cert.device, &a.seal()?);
    assert_eq!(g.state.members.len(), 1);
    assert!(!g.state.needs_rotation());
    let after = g.state.current_epoch().ok_or("epoch")?.id.clone();
    let rb = replica(&g, &b)?;
    assert!(
        rb.keys.get(&epoch_with_b).is_some(),
        "b held the key while a member"
    );
    assert!(
        rb.keys.get(&after).is_none(),
        "b gets nothing sealed after its removal"
    );
    assert!(rb.state.member_of(&b.cert.device).is_none());
    let ra = replica(&g, &a)?;
    assert!(ra.keys.get(&after).is_some());
    Ok(())
}

#[test]
fn only_admins_add_and_remove_and_removed_devices_cannot_act() -> R {
    let (a, b, c) = (P::new()?, P::new()?, P::new()?);
    let mut g = a.create()?;
    add(&a, &mut g, &b, false, &[&a.cert, &b.cert])?;
    // B is no admin: its add is skipped, the same everywhere.
    let key = keys::new_epoch(&g.id, &[&a.cert, &b.cert, &c.cert]).0;
    let op = b.op(
        &g,
        Body::Add {
            person: c.person(),
            devices: vec![c.cert.clone()],
            admin: false,
            invite: None,
        },
        Some(key),
    )?;
    let h = op.hash();
    g.take(vec![op], &a.cert.device, &a.seal()?);
    assert!(
        g.state
            .skipped
            .iter()
            .any(|(s, why)| *s == h && *why == Denied::NotAdmin)
    );
    assert!(!g.state.members.contains_key(&c.person()));
    // B's person revokes its device: what that device signs afterwards is skipped.
    let r = Revocation::sign(&b.key, &b.device.public().to_peer_id(), 2)?;
    let key = keys::new_epoch(&g.id, &[&a.cert]).0;
    let op = a.op(&g, Body::Revoke { revocation: r }, Some(key))?;
    g.take(vec![op], &a.cert.device, &a.seal()?);
    let late = b.op(&g, Body::Leave, None)?;
    let h = late.hash();
    g.take(vec![late], &a.cert.device, &a.seal()?);
    assert!(
        g.state
            .skipped
            .iter()
            .any(|(s, why)| *s == h && *why == Denied::NotCurrentDevice)
    );
    Ok(())
}

#[test]
fn forged_out_of_order_and_replayed_operations_are_refused() -> R {
    let (a, m) = (P::new()?, P::new()?);
    let mut g = a.create()?;
    let mut forged = a.op(&g, Body::Rotate, None)?;
    forged.time = 99;
    let i = g.take(vec![forged], &a.cert.device, &a.seal()?);
    assert!(
        i.refused
            .iter()
            .any(|r| matches!(r, Rejected::Unverified(_, crate::op::OpError::Forged(_)))),
        "{:?}",
        i.refused
    );
    // Signed by a device that carries someone else's certificate.
    let mut stolen = m.op(&g, Body::Rotate, None)?;
    stolen.author = a.cert.clone();
    let i = g.take(vec![stolen], &a.cert.device, &a.seal()?);
    assert_eq!(i.added, 0);
    let orphan = Op::sign(
        &a.device,
        a.cert.clone(),
        g.id.clone(),
        vec![[7; 32]],
        Body::Rotate,
        None,
        1,
    )?;
    let i = g.take(vec![orphan], &a.cert.device, &a.seal()?);
    assert!(
        i.refused
            .iter()
            .any(|r| matches!(r, Rejected::OutOfOrder(_))),
        "{:?}",
        i.refused
    );
    let again = g.missing_for(&Default::default());
    let i = g.take(again, &a.cert.device, &a.seal()?);
    assert_eq!(
        (i.added, i.refused.len()),
        (0, 0),
        "replays are known, not refused"
    );
    Ok(())
}

#[test]
fn two_admins_acting_across_a_partition_converge_and_the_key_is_renewed() -> R {
    let (a, c, b, d) = (P::new()?, P::new()?, P::new()?, P::new()?);
    let mut ga = a.create()?;
    add(&a, &mut ga, &c, true, &[&a.cert, &c.cert])?;
    add(&a, &mut ga, &b, false, &[&a.cert, &c.cert, &b.cert])?;
    let mut gc = replica(&ga, &c)?;
    // Partition: A removes B; C adds D (sealing its key to B too, as C still sees B).
    let key = keys::new_epoch(&ga.id, &[&a.cert, &c.cert]).0;
    let rm = a.op(&ga, Body::Remove { person: b.person() }, Some(key))?;
    ga.take(vec![rm.clone()], &a.cert.device, &a.seal()?);
    add(
        &c,
        &mut gc,
        &d,
        false,
        &[&a.cert, &c.cert, &b.cert, &d.cert],
    )?;
    // Heal: each takes the other's operations, in whatever order they arrive.
    let from_c = gc.missing_for(&ga.ops.keys().copied().collect());
    let from_a = ga.missing_for(&gc.ops.keys().copied().collect());
    ga.take(
        from_c.into_iter().rev().collect(),
        &a.cert.device,
        &a.seal()?,
    );
    gc.take(from_a, &c.cert.device, &c.seal()?);
    assert_eq!(ga.state.members, gc.state.members);
    assert_eq!(ga.state.applied, gc.state.applied);
    assert!(!ga.state.members.contains_key(&b.person()));
    assert!(ga.state.members.contains_key(&d.person()));
    // Whatever the order, B may hold the current key: the group needs a new one.
    if ga.state.needs_rotation() {
        let key = keys::new_epoch(&ga.id, &ga.state.member_certs().iter().collect::<Vec<_>>()).0;
        let op = a.op(&ga, Body::Rotate, Some(key))?;
        ga.take(vec![op], &a.cert.device, &a.seal()?);
    }
    assert!(!ga.state.needs_rotation());
    let rb = replica(&ga, &b)?;
    let now = ga.state.current_epoch().ok_or("epoch")?.id.clone();
    assert!(rb.keys.get(&now).is_none());
    Ok(())
}

#[test]
fn a_single_use_invite_admits_one_person_even_when_two_admins_take_it() -> R {
    let (a, c, x, y) = (P::new()?, P::new()?, P::new()?, P::new()?);
    let mut ga = a.create()?;
    add(&a, &mut ga, &c, true, &[&a.cert, &c.cert])?;
    let inv = crate::invite::Invite::sign(
        &a.device,
        a.cert.clone(),
        &ga.id,
        "team",
        u64::MAX,
        1,
        false,
        vec![],
    )?;
    let mut gc = replica(&ga, &c)?;
    let with = |who: &P| Body::Add {
        person: who.person(),
        devices: vec![who.cert.clone()],
        admin: false,
        invite: Some(Box::new(inv.clone())),
    };
    let ox = a.op(&ga, with(&x), None)?;
    ga.take(vec![ox], &a.cert.device, &a.seal()?);
    let oy = c.op(&gc, with(&y), None)?;
    gc.take(vec![oy], &c.cert.device, &c.seal()?);
    let from_c = gc.missing_for(&ga.ops.keys().copied().collect());
    ga.take(from_c, &a.cert.device, &a.seal()?);
    let joined = [x.person(), y.person()]
        .iter()
        .filter(|p| ga.state.members.contains_key(p))
        .count();
    assert_eq!(joined, 1);
    assert_eq!(
        ga.state
            .skipped
            .iter()
            .map(|(_, why)| why)
            .collect::<Vec<_>>(),
        [&Denied::InviteSpent],
        "the second use of the invite is skipped, for that reason"
    );
    Ok(())
}
