//! Group keys. Each epoch has a random 32-byte key, sealed to every member device with
//! HPKE (`kith_core::seal`); a device keeps the keys of the epochs it was given. From the
//! current key come the seal of what the group sends (ChaCha20-Poly1305) and the locator
//! under which group content is announced in the DHT (keyed BLAKE3), so only members can
//! compute where it is.

use std::collections::BTreeMap;

use kith_core::person::{DeviceCert, from_hex, to_hex};
use kith_core::seal::{self, SealKey, ToDevice};

use crate::op::{KeyUpdate, Op, Wrap};

/// Context of what a key is sealed for.
fn wrap_info(group: &str, epoch: &str) -> Vec<u8> {
    format!("kith-group-key-v1\n{group}\n{epoch}").into_bytes()
}

fn seal_aad(group: &str, epoch: &str) -> Vec<u8> {
    format!("kith-group-seal-v1\n{group}\n{epoch}").into_bytes()
}

/// Context of the derivation of a locator key from an epoch key.
const LOCATOR_CONTEXT: &str = "kith 2026 group content locator v1";
/// DHT key prefix of group content.
pub const LOCATOR_PREFIX: &str = "/kith/g/";

/// A new epoch's key, sealed to `devices`.
pub fn new_epoch(group: &str, devices: &[&DeviceCert]) -> (KeyUpdate, [u8; 32]) {
    let key: [u8; 32] = rand::random();
    let id: [u8; 16] = rand::random();
    let epoch = to_hex(&id);
    let wraps = wrap(group, &epoch, &key, devices);
    (
        KeyUpdate {
            epoch,
            new_epoch: true,
            wraps,
        },
        key,
    )
}

/// The key of `epoch`, sealed to more devices.
pub fn grant(group: &str, epoch: &str, key: &[u8; 32], devices: &[&DeviceCert]) -> KeyUpdate {
    KeyUpdate {
        epoch: epoch.to_owned(),
        new_epoch: false,
        wraps: wrap(group, epoch, key, devices),
    }
}

fn wrap(group: &str, epoch: &str, key: &[u8; 32], devices: &[&DeviceCert]) -> Vec<Wrap> {
    let info = wrap_info(group, epoch);
    devices
        .iter()
        .filter_map(|c| {
            let public = c.seal_key().ok()?;
            let s = seal::to_device(&public, &info, key).ok()?;
            Some(Wrap {
                device: c.device.clone(),
                enc: to_hex(&s.enc),
                ct: to_hex(&s.ct),
            })
        })
        .collect()
}

/// The keys this device holds, by epoch.
#[derive(Default, Clone)]
pub struct Keyring {
    keys: BTreeMap<String, [u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("epochs", &self.keys.len())
            .finish()
    }
}

impl Keyring {
    /// Takes the keys `op` seals to `device` (this device, with `mine`).
    pub fn take(&mut self, group: &str, op: &Op, device: &str, mine: &SealKey) {
        let Some(k) = &op.key else { return };
        let Some(w) = k.wraps.iter().find(|w| w.device == device) else {
            return;
        };
        let (Some(enc), Some(ct)) = (from_hex(&w.enc), from_hex(&w.ct)) else {
            return;
        };
        match mine.open(&ToDevice { enc, ct }, &wrap_info(group, &k.epoch)) {
            Ok(key) => {
                if let Ok(key) = <[u8; 32]>::try_from(key.as_slice()) {
                    self.keys.insert(k.epoch.clone(), key);
                }
            }
            Err(e) => {
                tracing::warn!(%group, epoch = %k.epoch, error = %e, "cannot open a group key sealed to this device")
            }
        }
    }

    pub fn get(&self, epoch: &str) -> Option<&[u8; 32]> {
        self.keys.get(epoch)
    }

    /// Seals `plaintext` with the key of `epoch`: the epoch ID, then the sealed bytes.
    pub fn seal(&self, group: &str, epoch: &str, plaintext: &[u8]) -> Option<Vec<u8>> {
        let key = self.keys.get(epoch)?;
        let mut out = from_hex(epoch)?;
        out.extend(seal::with_key(key, &seal_aad(group, epoch), plaintext));
        Some(out)
    }

    /// Opens what [`Keyring::seal`] made, with whichever epoch it names.
    pub fn open(&self, group: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let (id, rest) = sealed.split_at_checked(16)?;
        let epoch = to_hex(id);
        let key = self.keys.get(&epoch)?;
        seal::open_with_key(key, &seal_aad(group, &epoch), rest).ok()
    }
}

/// The DHT key under which content `key` of a group is announced, from the epoch key.
pub fn locator(epoch_key: &[u8; 32], key: &[u8]) -> Vec<u8> {
    let loc = blake3::derive_key(LOCATOR_CONTEXT, epoch_key);
    let h = blake3::keyed_hash(&loc, key);
    let mut out = LOCATOR_PREFIX.as_bytes().to_vec();
    out.extend_from_slice(h.to_hex().as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_core::person::DeviceCert;
    use kith_overlay::Keypair;

    #[test]
    fn only_the_devices_a_key_is_sealed_to_can_use_it() -> Result<(), Box<dyn std::error::Error>> {
        let person = Keypair::generate_ed25519();
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let cert = |k: &Keypair| -> Result<DeviceCert, Box<dyn std::error::Error>> {
            let seal = SealKey::of_device(k)?;
            Ok(DeviceCert::sign(
                &person,
                &k.public().to_peer_id(),
                &seal.public(),
                1,
            )?)
        };
        let (ca, cb) = (cert(&a)?, cert(&b)?);
        let (update, key) = new_epoch("grp-x", &[&ca]);
        let op = Op::sign(
            &a,
            ca.clone(),
            "grp-x".into(),
            vec![[0; 32]],
            crate::op::Body::Rotate,
            Some(update.clone()),
            1,
        )?;
        let mut ring_a = Keyring::default();
        ring_a.take("grp-x", &op, &ca.device, &SealKey::of_device(&a)?);
        assert_eq!(ring_a.get(&update.epoch), Some(&key));
        let mut ring_b = Keyring::default();
        ring_b.take("grp-x", &op, &cb.device, &SealKey::of_device(&b)?);
        assert_eq!(ring_b.get(&update.epoch), None, "not sealed to b");
        let sealed = ring_a
            .seal("grp-x", &update.epoch, b"answers")
            .ok_or("seal")?;
        assert_eq!(
            ring_a.open("grp-x", &sealed).as_deref(),
            Some(&b"answers"[..])
        );
        assert_eq!(ring_b.open("grp-x", &sealed), None);
        assert_eq!(ring_a.open("grp-y", &sealed), None, "bound to the group");
        assert_ne!(locator(&key, b"cid"), locator(&[0; 32], b"cid"));
        Ok(())
    }
}
