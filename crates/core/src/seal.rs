//! Sealing, with reviewed constructions only:
//!
//! - to one device: HPKE (RFC 9180), base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//!   ChaCha20-Poly1305 (the `hpke` crate). A device's X25519 key pair is derived with
//!   HPKE's own `DeriveKeyPair` from a BLAKE3 `derive_key` of its Ed25519 secret, so a
//!   device has one secret on disk.
//! - with a shared key (a group's epoch key): ChaCha20-Poly1305 with a random 96-bit
//!   nonce (the `chacha20poly1305` crate).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use libp2p_identity::Keypair;

type HpkeAead = hpke::aead::ChaCha20Poly1305;
type HpkeKdf = hpke::kdf::HkdfSha256;

/// Context of the derivation of a device's seal key from its Ed25519 secret.
const SEAL_KEY_CONTEXT: &str = "kith 2026 device seal key v1";
/// Nonce length of ChaCha20-Poly1305.
const NONCE: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("this device has no Ed25519 key to derive a seal key from")]
    NoKey,
    #[error("malformed key or sealed message")]
    Malformed,
    #[error("cannot be opened with this key")]
    Open,
}

/// A device's X25519 key pair for what is sealed to it.
pub struct SealKey {
    secret: <X25519HkdfSha256 as Kem>::PrivateKey,
    public: <X25519HkdfSha256 as Kem>::PublicKey,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey").finish_non_exhaustive()
    }
}

impl SealKey {
    /// The seal key of the device whose node key is `device`.
    pub fn of_device(device: &Keypair) -> Result<Self, SealError> {
        let ed = device
            .clone()
            .try_into_ed25519()
            .map_err(|_| SealError::NoKey)?;
        let ikm = blake3::derive_key(SEAL_KEY_CONTEXT, ed.secret().as_ref());
        let (secret, public) = X25519HkdfSha256::derive_keypair(&ikm);
        Ok(Self { secret, public })
    }

    pub fn public(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.public.to_bytes());
        out
    }

    /// Opens what was sealed to this device with `info` (which says what it is for).
    pub fn open(&self, sealed: &ToDevice, info: &[u8]) -> Result<Vec<u8>, SealError> {
        let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(&sealed.enc)
            .map_err(|_| SealError::Malformed)?;
        hpke::single_shot_open::<HpkeAead, HpkeKdf, X25519HkdfSha256>(
            &OpModeR::Base,
            &self.secret,
            &enc,
            info,
            &sealed.ct,
            &[],
        )
        .map_err(|_| SealError::Open)
    }
}

/// Something sealed to one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToDevice {
    /// The HPKE encapsulated key.
    pub enc: Vec<u8>,
    pub ct: Vec<u8>,
}

/// Seals `plaintext` to the device whose seal public key is `public`.
pub fn to_device(public: &[u8; 32], info: &[u8], plaintext: &[u8]) -> Result<ToDevice, SealError> {
    let pk = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(public)
        .map_err(|_| SealError::Malformed)?;
    let (enc, ct) = hpke::single_shot_seal::<HpkeAead, HpkeKdf, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        &[],
        &mut rand::rng(),
    )
    .map_err(|_| SealError::Malformed)?;
    Ok(ToDevice {
        enc: enc.to_bytes().to_vec(),
        ct,
    })
}

/// Seals `plaintext` with a shared 32-byte key; `aad` is bound to it (not hidden).
pub fn with_key(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE] = rand::random();
    let cipher = ChaCha20Poly1305::new(key.into());
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Opens what [`with_key`] sealed.
pub fn open_with_key(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let (nonce, ct) = sealed.split_at_checked(NONCE).ok_or(SealError::Malformed)?;
    let cipher = ChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_opens_what_is_sealed_to_it_and_nothing_else() -> Result<(), SealError> {
        let a = SealKey::of_device(&Keypair::generate_ed25519())?;
        let b = SealKey::of_device(&Keypair::generate_ed25519())?;
        let s = to_device(&a.public(), b"group g epoch 1", b"secret")?;
        assert_eq!(a.open(&s, b"group g epoch 1")?, b"secret");
        assert_eq!(b.open(&s, b"group g epoch 1"), Err(SealError::Open));
        assert_eq!(a.open(&s, b"another context"), Err(SealError::Open));
        // The same device key gives the same seal key.
        let k = Keypair::generate_ed25519();
        assert_eq!(
            SealKey::of_device(&k)?.public(),
            SealKey::of_device(&k)?.public()
        );
        let key = [3u8; 32];
        let sealed = with_key(&key, b"aad", b"catalogue");
        assert_eq!(open_with_key(&key, b"aad", &sealed)?, b"catalogue");
        assert_eq!(
            open_with_key(&[4; 32], b"aad", &sealed),
            Err(SealError::Open)
        );
        assert_eq!(open_with_key(&key, b"other", &sealed), Err(SealError::Open));
        assert_eq!(
            open_with_key(&key, b"aad", b"short"),
            Err(SealError::Malformed)
        );
        Ok(())
    }
}
