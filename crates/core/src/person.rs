//! People and their devices. A person has an Ed25519 key of its own, apart from the keys
//! of its devices (a device's key is its node's peer key). The person key signs a
//! certificate for each device, and a revocation when a device is lost. Whoever holds a
//! valid, unrevoked certificate of a device acts for its person; nothing else can.
//!
//! A person ID is written like a peer ID: the identity multihash of the person's public
//! key, so the ID itself carries the key that checks its signatures.

use std::fmt;
use std::str::FromStr;

use libp2p_identity::{Keypair, PeerId, PublicKey};
use serde::{Deserialize, Serialize};

/// Domain separation for certificate and revocation signatures (format version 1).
const CERT_CONTEXT: &str = "kith-device-cert-v1";
const REVOKE_CONTEXT: &str = "kith-device-revocation-v1";
/// Longest certificate or revocation accepted, encoded.
pub const MAX_CERT_BYTES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("forged: the signature is not the person's")]
    Forged,
    #[error("the certificate is for device {claimed}, not for {actual}")]
    WrongDevice { claimed: String, actual: String },
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// A person: the public key that signs its devices.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonId(PeerId);

impl PersonId {
    pub fn of(key: &PublicKey) -> Self {
        Self(key.to_peer_id())
    }

    /// The public key the ID carries (Ed25519 IDs embed it).
    pub fn public_key(&self) -> Option<PublicKey> {
        public_key_of(&self.0)
    }
}

impl fmt::Display for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonId({})", self.0)
    }
}

impl FromStr for PersonId {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, CertError> {
        let id: PeerId = s.parse().map_err(|_| {
            CertError::Malformed(format!(
                "{:?} is not a person ID",
                s.chars().take(64).collect::<String>()
            ))
        })?;
        let p = Self(id);
        p.public_key()
            .ok_or_else(|| CertError::Malformed("a person ID must carry an Ed25519 key".into()))?;
        Ok(p)
    }
}

impl Serialize for PersonId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for PersonId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The public key inside an Ed25519 peer ID (identity multihash).
pub fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    let mh = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    PublicKey::try_decode_protobuf(mh.digest()).ok()
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 4096 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn peer(s: &str) -> Result<PeerId, CertError> {
    s.parse()
        .map_err(|_| CertError::Malformed("bad device ID".into()))
}

fn check_sig(person: &PersonId, bytes: &[u8], sig: &str) -> Result<(), CertError> {
    let key = person
        .public_key()
        .ok_or_else(|| CertError::Malformed("person key".into()))?;
    let sig = from_hex(sig).ok_or_else(|| CertError::Malformed("signature is not hex".into()))?;
    if key.verify(bytes, &sig) {
        Ok(())
    } else {
        Err(CertError::Forged)
    }
}

/// A device's certificate: the person key vouches that `device` acts for `person`, and
/// that `seal` is the device's X25519 public key for what the person's groups seal to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCert {
    pub person: PersonId,
    /// The device's peer ID.
    pub device: String,
    /// X25519 public key (hex) that keys are sealed to for this device.
    pub seal: String,
    /// Seconds since the Unix epoch.
    pub issued: u64,
    /// The person's Ed25519 signature (hex).
    pub sig: String,
}

impl DeviceCert {
    fn signing_bytes(&self) -> Vec<u8> {
        format!(
            "{CERT_CONTEXT}\n{}\n{}\n{}\n{}",
            self.person, self.device, self.seal, self.issued
        )
        .into_bytes()
    }

    /// A certificate for `device`, signed by `person_key`.
    pub fn sign(
        person_key: &Keypair,
        device: &PeerId,
        seal: &[u8; 32],
        issued: u64,
    ) -> Result<Self, CertError> {
        let mut c = Self {
            person: PersonId::of(&person_key.public()),
            device: device.to_string(),
            seal: to_hex(seal),
            issued,
            sig: String::new(),
        };
        let sig = person_key
            .sign(&c.signing_bytes())
            .map_err(|e| CertError::Sign(e.to_string()))?;
        c.sig = to_hex(&sig);
        Ok(c)
    }

    /// Checks the signature and the fields.
    pub fn verify(&self) -> Result<(), CertError> {
        self.device_id()?;
        self.seal_key()?;
        check_sig(&self.person, &self.signing_bytes(), &self.sig)
    }

    /// Checks the certificate and that it is for `peer` (the peer an authenticated
    /// connection came from): a device cannot claim another device's certificate.
    pub fn verify_for(&self, peer: &PeerId) -> Result<(), CertError> {
        self.verify()?;
        if self.device_id()? != *peer {
            return Err(CertError::WrongDevice {
                claimed: self.device.clone(),
                actual: peer.to_string(),
            });
        }
        Ok(())
    }

    pub fn device_id(&self) -> Result<PeerId, CertError> {
        peer(&self.device)
    }

    /// The device's X25519 key.
    pub fn seal_key(&self) -> Result<[u8; 32], CertError> {
        from_hex(&self.seal)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| CertError::Malformed("seal key must be 32 bytes of hex".into()))
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<Self, CertError> {
        if b.len() > MAX_CERT_BYTES {
            return Err(CertError::Malformed("too large".into()));
        }
        serde_json::from_slice(b).map_err(|e| CertError::Malformed(e.to_string()))
    }
}

/// A person's word that one of its devices no longer acts for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    pub person: PersonId,
    pub device: String,
    pub time: u64,
    pub sig: String,
}

impl Revocation {
    fn signing_bytes(&self) -> Vec<u8> {
        format!(
            "{REVOKE_CONTEXT}\n{}\n{}\n{}",
            self.person, self.device, self.time
        )
        .into_bytes()
    }

    pub fn sign(person_key: &Keypair, device: &PeerId, time: u64) -> Result<Self, CertError> {
        let mut r = Self {
            person: PersonId::of(&person_key.public()),
            device: device.to_string(),
            time,
            sig: String::new(),
        };
        let sig = person_key
            .sign(&r.signing_bytes())
            .map_err(|e| CertError::Sign(e.to_string()))?;
        r.sig = to_hex(&sig);
        Ok(r)
    }

    pub fn verify(&self) -> Result<(), CertError> {
        peer(&self.device)?;
        check_sig(&self.person, &self.signing_bytes(), &self.sig)
    }

    pub fn device_id(&self) -> Result<PeerId, CertError> {
        peer(&self.device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_bind_a_device_to_its_person_and_nothing_else() -> Result<(), CertError> {
        let person = Keypair::generate_ed25519();
        let device = Keypair::generate_ed25519().public().to_peer_id();
        let c = DeviceCert::sign(&person, &device, &[7; 32], 100)?;
        c.verify_for(&device)?;
        assert_eq!(c.person, PersonId::of(&person.public()));
        assert_eq!(c.seal_key()?, [7; 32]);
        // Another device presenting it.
        let other = Keypair::generate_ed25519().public().to_peer_id();
        assert!(matches!(
            c.verify_for(&other),
            Err(CertError::WrongDevice { .. })
        ));
        // A device that signs a claim to the person with its own key.
        let liar = Keypair::generate_ed25519();
        let mut forged = DeviceCert::sign(&liar, &other, &[1; 32], 100)?;
        forged.person = c.person;
        assert_eq!(forged.verify_for(&other), Err(CertError::Forged));
        // Tampering with the seal key.
        let mut swapped = c.clone();
        swapped.seal = to_hex(&[9; 32]);
        assert_eq!(swapped.verify(), Err(CertError::Forged));
        // Revocations are the person's alone.
        let r = Revocation::sign(&person, &device, 5)?;
        r.verify()?;
        let mut fake = Revocation::sign(&liar, &device, 5)?;
        fake.person = c.person;
        assert_eq!(fake.verify(), Err(CertError::Forged));
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_certificates_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)) {
            if let Ok(c) = DeviceCert::decode(&bytes) {
                proptest::prop_assert!(c.verify().is_err());
            }
        }
    }
}
