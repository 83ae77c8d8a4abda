//! What a device knows of its person, in the service's folder: `person.json` (the person
//! ID, the certificates of its devices, its revocations) and, on the device where the
//! person was created, `person.key` (0600), the person's Ed25519 key.

use std::path::{Path, PathBuf};

use kith_core::identity::{self, Keypair};
use kith_core::person::{DeviceCert, PersonId, Revocation};
use kith_core::seal::SealKey;
use kith_core::store::now_secs;
use kith_overlay::PeerId;
use serde::{Deserialize, Serialize};

use crate::protocol::MAX_DEVICES;
use crate::{Error, Refusal};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Book {
    pub person: PersonId,
    /// Certificates of the person's devices, this one included.
    pub devices: Vec<DeviceCert>,
    pub revoked: Vec<Revocation>,
}

fn json_path(dir: &Path) -> PathBuf {
    dir.join("person.json")
}

pub(crate) fn key_path(dir: &Path) -> PathBuf {
    dir.join("person.key")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

impl Book {
    /// Whether `device` is a device of the person that is not revoked.
    pub fn trusts(&self, device: &PeerId) -> bool {
        let id = device.to_string();
        self.devices.iter().any(|c| c.device == id) && !self.is_revoked(device)
    }

    pub fn is_revoked(&self, device: &PeerId) -> bool {
        let id = device.to_string();
        self.revoked.iter().any(|r| r.device == id)
    }

    /// Adds a certificate of one of the person's devices (replacing an older one).
    pub fn add(&mut self, cert: DeviceCert) -> Result<(), Error> {
        if cert.person != self.person {
            return Err(Refusal::AnotherPerson.into());
        }
        self.devices.retain(|c| c.device != cert.device);
        if self.devices.len() >= MAX_DEVICES {
            return Err(Refusal::TooManyDevices.into());
        }
        self.devices.push(cert);
        Ok(())
    }

    /// Saves the book (blocking), atomically.
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let path = json_path(dir);
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| Error::Decode {
            path: path.clone(),
            source,
        })?;
        kith_core::sync::write_atomic(&path, &bytes).map_err(io(&path))
    }

    /// Loads the book (blocking).
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let path = json_path(dir);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode { path, source })
    }
}

/// Makes a person for this device if it has none yet: a person key (0600) and a
/// certificate for the device. Returns true when it made one. Blocking.
pub fn init(dir: &Path, device: &Keypair) -> Result<bool, Error> {
    if json_path(dir).exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key_file = key_path(dir);
    let person_key = match identity::load(&key_file) {
        Ok(k) => k,
        Err(_) => identity::create(&key_file)?,
    };
    let seal = SealKey::of_device(device)?;
    let me = device.public().to_peer_id();
    let cert = DeviceCert::sign(&person_key, &me, &seal.public(), now_secs())?;
    let book = Book {
        person: cert.person,
        devices: vec![cert],
        revoked: Vec::new(),
    };
    book.save(dir)?;
    Ok(true)
}

/// The person key, if this device holds it. Blocking.
pub(crate) fn person_key(dir: &Path) -> Option<Keypair> {
    identity::load(&key_path(dir)).ok()
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_corrupt_book_is_a_decode_error_that_keeps_its_cause() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io(Path::new("tmp"), e))?;
        std::fs::write(json_path(dir.path()), b"{not json").map_err(io(dir.path()))?;
        let e = Book::load(dir.path()).err();
        assert!(
            matches!(&e, Some(Error::Decode { path, .. }) if *path == json_path(dir.path())),
            "{e:?}"
        );
        let cause = e.as_ref().and_then(|e| e.source());
        assert!(cause.is_some_and(|c| c.is::<serde_json::Error>()), "{e:?}");
        let missing = Book::load(&dir.path().join("nowhere")).err();
        let cause = missing.as_ref().and_then(|e| e.source());
        assert!(
            cause.is_some_and(|c| c.is::<std::io::Error>()),
            "{missing:?}"
        );
        Ok(())
    }
}
