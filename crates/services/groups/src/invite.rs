//! Invites: capability tokens an admin's device signs, with an expiry and a use count, and
//! the addresses of the admin's device to join through. `kith-invite:` then base58 of JSON.

use kith_core::person::{DeviceCert, from_hex, public_key_of, to_hex};
use kith_overlay::Keypair;
use serde::{Deserialize, Serialize};

/// Prefix of an invite token.
const TOKEN_PREFIX: &str = "kith-invite:";
/// Longest token accepted.
pub const MAX_TOKEN: usize = 8192;
/// Most addresses in an invite.
const MAX_ADDRS: usize = 8;
/// Domain separation of invite signatures.
const INVITE_CONTEXT: &[u8] = b"kith-group-invite-v1\n";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    #[error("not an invite token: {0}")]
    Malformed(String),
    #[error("a forged invite: {0}")]
    Forged(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    pub group: String,
    /// The group's name, for the joiner's information.
    pub name: String,
    /// The admin device that signed it.
    pub inviter: DeviceCert,
    /// Random ID (hex), counted in the log against `uses`.
    pub id: String,
    /// Seconds since the Unix epoch after which it is refused.
    pub expires: u64,
    pub uses: u32,
    /// Whether who joins with it becomes an admin.
    pub admin: bool,
    /// Where the inviting device listens (multiaddrs with /p2p/).
    pub addrs: Vec<String>,
    pub sig: String,
}

impl Invite {
    fn signing_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.sig.clear();
        let mut out = INVITE_CONTEXT.to_vec();
        out.extend_from_slice(&serde_json::to_vec(&unsigned).unwrap_or_default());
        out
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        device: &Keypair,
        inviter: DeviceCert,
        group: &str,
        name: &str,
        expires: u64,
        uses: u32,
        admin: bool,
        addrs: Vec<String>,
    ) -> Result<Self, InviteError> {
        let id: [u8; 16] = rand::random();
        let mut inv = Self {
            group: group.to_owned(),
            name: name.to_owned(),
            inviter,
            id: to_hex(&id),
            expires,
            uses,
            admin,
            addrs: addrs.into_iter().take(MAX_ADDRS).collect(),
            sig: String::new(),
        };
        let sig = device
            .sign(&inv.signing_bytes())
            .map_err(|e| InviteError::Forged(e.to_string()))?;
        inv.sig = to_hex(&sig);
        Ok(inv)
    }

    /// Checks the inviter's certificate and signature (not whether the inviter is an
    /// admin, nor the expiry: that needs the log and a clock).
    pub fn verify(&self) -> Result<(), InviteError> {
        if self.addrs.len() > MAX_ADDRS || self.uses == 0 {
            return Err(InviteError::Malformed("bad addresses or use count".into()));
        }
        self.inviter
            .verify()
            .map_err(|e| InviteError::Forged(format!("inviter certificate: {e}")))?;
        let device = self
            .inviter
            .device_id()
            .map_err(|e| InviteError::Malformed(e.to_string()))?;
        let key = public_key_of(&device).ok_or_else(|| InviteError::Malformed("key".into()))?;
        let sig = from_hex(&self.sig).ok_or_else(|| InviteError::Malformed("signature".into()))?;
        if !key.verify(&self.signing_bytes(), &sig) {
            return Err(InviteError::Forged("bad signature".into()));
        }
        Ok(())
    }

    pub fn token(&self) -> String {
        format!(
            "{TOKEN_PREFIX}{}",
            bs58::encode(serde_json::to_vec(self).unwrap_or_default()).into_string()
        )
    }

    pub fn from_token(s: &str) -> Result<Self, InviteError> {
        let s = s.trim();
        if s.len() > MAX_TOKEN {
            return Err(InviteError::Malformed("too long".into()));
        }
        let b58 = s.strip_prefix(TOKEN_PREFIX).ok_or_else(|| {
            InviteError::Malformed(format!("it does not start with {TOKEN_PREFIX}"))
        })?;
        let bytes = bs58::decode(b58)
            .into_vec()
            .map_err(|e| InviteError::Malformed(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| InviteError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_core::person::DeviceCert;
    use proptest::prelude::*;

    #[test]
    fn tokens_round_trip_and_tampering_is_caught() -> Result<(), InviteError> {
        let person = Keypair::generate_ed25519();
        let device = Keypair::generate_ed25519();
        let cert = DeviceCert::sign(&person, &device.public().to_peer_id(), &[1; 32], 1)
            .map_err(|e| InviteError::Malformed(e.to_string()))?;
        let inv = Invite::sign(&device, cert, "grp-1", "team", 100, 1, false, vec![])?;
        let back = Invite::from_token(&inv.token())?;
        back.verify()?;
        assert_eq!(back, inv);
        let mut other = back.clone();
        other.group = "grp-2".into();
        assert!(matches!(other.verify(), Err(InviteError::Forged(_))));
        let mut more = back;
        more.uses = 100;
        assert!(more.verify().is_err());
        assert!(Invite::from_token("kith-invite:0OIl").is_err());
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_tokens_are_refused(s in ".{0,300}") {
            if let Ok(i) = Invite::from_token(&s) {
                prop_assert!(i.verify().is_err());
            }
        }
    }
}
