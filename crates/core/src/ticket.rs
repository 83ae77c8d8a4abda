//! Tickets: one copy-paste string with a content ID and addresses of a node that has it,
//! `kith` followed by the lowercase base32 (no padding) of `{"id":…,"addrs":[…]}`. A
//! download of a ticket dials those addresses first and still asks the DHT and others.

use serde::{Deserialize, Serialize};

use crate::ContentId;

/// The prefix of every ticket.
pub const PREFIX: &str = "kith";
/// The longest ticket accepted.
pub const MAX_LEN: usize = 4096;
/// Addresses kept in a ticket.
pub const MAX_ADDRS: usize = 16;
/// The longest address kept.
pub const MAX_ADDR: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    pub id: ContentId,
    /// Multiaddrs ending in `/p2p/PEER_ID`.
    pub addrs: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TicketError {
    #[error("not a ticket (a ticket starts with {PREFIX:?})")]
    NotATicket,
    #[error("ticket of {0} characters is over the {MAX_LEN}-character limit")]
    TooLong(usize),
    #[error("damaged ticket: {0}")]
    Damaged(String),
}

impl Ticket {
    /// A ticket for `id` at `addrs` (the first [`MAX_ADDRS`] of those short enough).
    pub fn new(id: ContentId, addrs: impl IntoIterator<Item = String>) -> Self {
        let addrs = addrs
            .into_iter()
            .filter(|a| a.len() <= MAX_ADDR)
            .take(MAX_ADDRS)
            .collect();
        Self { id, addrs }
    }

    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let b32 = data_encoding::BASE32_NOPAD.encode(&json).to_lowercase();
        format!("{PREFIX}{b32}")
    }

    pub fn decode(s: &str) -> Result<Self, TicketError> {
        let s = s.trim();
        if s.len() > MAX_LEN {
            return Err(TicketError::TooLong(s.len()));
        }
        let body = s.strip_prefix(PREFIX).ok_or(TicketError::NotATicket)?;
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_uppercase().as_bytes())
            .map_err(|e| TicketError::Damaged(e.to_string()))?;
        let t: Ticket =
            serde_json::from_slice(&bytes).map_err(|e| TicketError::Damaged(e.to_string()))?;
        if t.addrs.len() > MAX_ADDRS || t.addrs.iter().any(|a| a.len() > MAX_ADDR) {
            return Err(TicketError::Damaged(
                "too many or too long addresses".into(),
            ));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_one() {
        let id = ContentId::manifest(b"x");
        let t = Ticket::new(id, ["/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWabc".to_owned()]);
        let s = t.encode();
        assert!(s.starts_with(PREFIX) && s.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(Ticket::decode(&s), Ok(t));
        assert_eq!(
            Ticket::decode(&id.to_string()),
            Err(TicketError::NotATicket)
        );
        assert!(matches!(
            Ticket::decode("kith!!!"),
            Err(TicketError::Damaged(_))
        ));
        assert!(matches!(
            Ticket::decode("kithmzxw6"),
            Err(TicketError::Damaged(_))
        ));
        let long = format!("{PREFIX}{}", "a".repeat(MAX_LEN));
        assert!(matches!(
            Ticket::decode(&long),
            Err(TicketError::TooLong(_))
        ));
        let many = Ticket::new(id, (0..40).map(|i| format!("/ip4/10.0.0.{i}/tcp/1")));
        assert_eq!(many.addrs.len(), MAX_ADDRS);
    }
}
