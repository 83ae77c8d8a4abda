//! Wire formats of `/kith/person/1.0.0` and `/kith/link/1.0.0` (see
//! `docs/protocols/people.md`), in kith's JSON frames (`kith_core::frame`).
//!
//! - `/kith/person/1.0.0`: when two devices connect, the one with the smaller peer ID
//!   opens a stream and sends a [`Hello`]; the other checks it and answers with its own
//!   ([`HelloAnswer`]), or says it is busy (too many streams) and closes.
//!   A hello's certificate must be for the peer the connection authenticated (Noise), so a
//!   device cannot claim a person whose key it lacks, nor another device's certificate.
//! - `/kith/link/1.0.0`: a new device proves it knows a link code's secret
//!   ([`LinkRequest`]) and gets a certificate from the person's key ([`LinkResponse`]).

use kith_core::person::{DeviceCert, Revocation, from_hex, to_hex};
use kith_overlay::{Multiaddr, PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};

pub const PERSON_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/person/1.0.0");
pub const LINK_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/link/1.0.0");

/// Largest frame on either protocol.
pub const MAX_FRAME: usize = 64 * 1024;
/// Most revocations sent in one hello or link answer.
pub const MAX_REVOCATIONS: usize = 64;
/// Most devices of one person.
pub const MAX_DEVICES: usize = 32;
/// Prefix of a link code.
const CODE_PREFIX: &str = "kith-link:";
/// Domain separation of a link proof.
const PROOF_CONTEXT: &str = "kith-link-proof-v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub cert: DeviceCert,
    /// Devices the person revoked (so peers stop trusting them).
    #[serde(default)]
    pub revoked: Vec<Revocation>,
}

/// What a device answers to a hello: its own, or why there is none. A stream over the
/// inbound limits gets `{"refused":"busy"}` at once, never silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HelloAnswer {
    Hello(Hello),
    Refused { refused: String },
}

impl HelloAnswer {
    /// The answer to a stream over the inbound limits.
    pub fn busy() -> Self {
        HelloAnswer::Refused {
            refused: BUSY.into(),
        }
    }
}

/// The reason a device gives when it takes no more streams for now (on either protocol).
pub const BUSY: &str = "busy";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Keyed BLAKE3 of the joining device's peer ID under the code's secret (hex).
    pub proof: String,
    /// The joining device's seal public key (hex), to be put in its certificate.
    pub seal: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum LinkResponse {
    Linked {
        /// The new device's certificate.
        cert: DeviceCert,
        /// Every device of the person, the new one included.
        devices: Vec<DeviceCert>,
        revoked: Vec<Revocation>,
    },
    Refused {
        reason: String,
    },
}

/// The proof that the device `device` knows `secret`.
pub fn proof(secret: &[u8; 32], device: &PeerId) -> blake3::Hash {
    blake3::keyed_hash(secret, format!("{PROOF_CONTEXT}\n{device}").as_bytes())
}

/// A one-time code that links a new device to a person: where the person's device is,
/// and a secret. `kith-link:SECRET_HEX@MULTIADDR/p2p/PEER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCode {
    pub secret: [u8; 32],
    pub addr: Multiaddr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a link code: {0}")]
pub struct BadCode(String);

impl std::fmt::Display for LinkCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{CODE_PREFIX}{}@{}", to_hex(&self.secret), self.addr)
    }
}

impl std::str::FromStr for LinkCode {
    type Err = BadCode;

    fn from_str(s: &str) -> Result<Self, BadCode> {
        let rest = s
            .trim()
            .strip_prefix(CODE_PREFIX)
            .ok_or_else(|| BadCode(format!("it does not start with {CODE_PREFIX}")))?;
        let (secret, addr) = rest
            .split_once('@')
            .ok_or_else(|| BadCode("no address".into()))?;
        let secret: [u8; 32] = from_hex(secret)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| BadCode("the secret must be 64 hex digits".into()))?;
        let addr: Multiaddr = addr
            .parse()
            .map_err(|e| BadCode(format!("bad address: {e}")))?;
        if kith_overlay::peer_of(&addr).is_none() {
            return Err(BadCode("the address has no /p2p/PEER_ID".into()));
        }
        Ok(Self { secret, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_core::frame::read_all;
    use proptest::prelude::*;

    #[test]
    fn codes_round_trip_and_bad_ones_say_why() -> Result<(), BadCode> {
        let peer = PeerId::random();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")
            .parse()
            .map_err(|_| BadCode("addr".into()))?;
        let code = LinkCode {
            secret: [5; 32],
            addr,
        };
        assert_eq!(code.to_string().parse::<LinkCode>()?, code);
        for bad in [
            "",
            "kith-link:zz@/ip4/1.2.3.4/tcp/1",
            "kith-link:00@x",
            "hello",
        ] {
            assert!(bad.parse::<LinkCode>().is_err(), "{bad}");
        }
        let no_peer = format!("kith-link:{}@/ip4/1.2.3.4/tcp/1", "00".repeat(32));
        assert!(no_peer.parse::<LinkCode>().is_err());
        // A proof is bound to the device.
        assert_ne!(proof(&[1; 32], &peer), proof(&[1; 32], &PeerId::random()));
        Ok(())
    }

    #[test]
    fn a_busy_answer_is_not_a_hello() {
        let busy = kith_core::frame::encode(&HelloAnswer::busy()).unwrap_or_default();
        assert_eq!(busy.get(4..), Some(&br#"{"refused":"busy"}"#[..]));
        let back = read_all::<HelloAnswer>(busy, MAX_FRAME);
        assert!(matches!(back.first(), Some(Ok(a)) if *a == HelloAnswer::busy()));
    }

    proptest! {
        #[test]
        fn arbitrary_frames_are_decoded_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = read_all::<Hello>(bytes.clone(), MAX_FRAME);
            let _ = read_all::<HelloAnswer>(bytes.clone(), MAX_FRAME);
            let _ = read_all::<LinkRequest>(bytes.clone(), MAX_FRAME);
            let _ = read_all::<LinkResponse>(bytes, MAX_FRAME);
        }

        #[test]
        fn arbitrary_codes_parse_or_fail(s in ".{0,200}") {
            let _ = s.parse::<LinkCode>();
        }
    }
}
