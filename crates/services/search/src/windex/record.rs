//! A holder's signed record for one word: its public names that contain the word.

use kith_core::person::{from_hex, public_key_of, to_hex};
use kith_overlay::{Keypair, PeerId};
use serde::{Deserialize, Serialize};

use crate::protocol::Entry;
use crate::query::{self, Query};

/// Most names in one record (a holder with more names holding the word indexes these).
pub const MAX_ENTRIES: usize = 64;
/// Longest word indexed.
pub const MAX_WORD_BYTES: usize = 64;
/// How long a record lives after it was signed.
pub const TTL_SECS: u64 = 2 * 3600;
/// Clock difference tolerated between holder and storage node.
const SKEW_SECS: u64 = 600;
const CONTEXT: &str = "kith word index record 1";

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("malformed record: {0}")]
    Malformed(&'static str),
    #[error("malformed record: {0}")]
    Entry(#[source] crate::protocol::WireError),
    #[error("record expired")]
    Expired,
    #[error("record of {0} is not signed by it")]
    Forged(String),
    #[error("cannot sign: {0}")]
    Sign(#[source] libp2p_identity::SigningError),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordRecord {
    pub word: String,
    /// Peer ID of the node that holds the files.
    pub holder: String,
    /// Milliseconds since the epoch when signed: a newer record replaces an older one;
    /// one without entries removes the holder from the word.
    pub seq: u64,
    /// Seconds since the epoch after which nobody keeps it.
    pub expires: u64,
    pub entries: Vec<Entry>,
    /// The holder's signature (hex).
    pub sig: String,
}

impl WordRecord {
    fn signing_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&(
            CONTEXT,
            &self.word,
            &self.holder,
            self.seq,
            self.expires,
            &self.entries,
        ))
        .unwrap_or_default()
    }

    pub fn sign(
        key: &Keypair,
        word: &str,
        entries: Vec<Entry>,
        seq: u64,
        now_secs: u64,
    ) -> Result<Self, RecordError> {
        let mut r = Self {
            word: word.to_owned(),
            holder: key.public().to_peer_id().to_string(),
            seq,
            expires: now_secs + TTL_SECS,
            entries,
            sig: String::new(),
        };
        let sig = key.sign(&r.signing_bytes()).map_err(RecordError::Sign)?;
        r.sig = to_hex(&sig);
        Ok(r)
    }

    /// Checks bounds, that every name holds the word, the lifetime and the holder's
    /// signature; returns the holder.
    pub fn verify(&self, now_secs: u64) -> Result<PeerId, RecordError> {
        let bad = |m: &'static str| Err(RecordError::Malformed(m));
        if self.word.is_empty() || self.word.len() > MAX_WORD_BYTES {
            return bad("bad word");
        }
        if self.entries.len() > MAX_ENTRIES {
            return bad("too many entries");
        }
        if self.expires <= now_secs {
            return Err(RecordError::Expired);
        }
        if self.expires > now_secs + TTL_SECS + SKEW_SECS {
            return bad("lives too long");
        }
        for e in &self.entries {
            e.check().map_err(RecordError::Entry)?;
            if !query::tokens(&e.name).any(|t| t == self.word) {
                return bad("an entry's name does not hold the word");
            }
        }
        let holder: PeerId = self
            .holder
            .parse()
            .map_err(|_| RecordError::Malformed("holder is not a peer ID"))?;
        let key = public_key_of(&holder)
            .ok_or(RecordError::Malformed("holder key is not an Ed25519 key"))?;
        let sig = from_hex(&self.sig).ok_or(RecordError::Malformed("signature is not hex"))?;
        if !key.verify(&self.signing_bytes(), &sig) {
            return Err(RecordError::Forged(self.holder.clone()));
        }
        Ok(holder)
    }

    /// The record's entries whose names match `q`.
    pub fn matching<'a>(&'a self, q: &'a Query) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| q.matches_name(&e.name, &e.path))
    }

    /// The size the record takes in memory and on the wire (about).
    pub fn weight(&self) -> usize {
        128 + self.word.len()
            + self.sig.len()
            + self.entries.iter().map(Entry::wire_len).sum::<usize>()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(name: &str) -> Entry {
        Entry {
            id: kith_core::ContentId::manifest(name.as_bytes()).to_string(),
            name: name.into(),
            path: name.into(),
            size: 1,
            kind: "file".into(),
            name_key: None,
            revision: None,
        }
    }

    #[test]
    fn signed_records_verify_and_tampering_does_not() -> Result<(), RecordError> {
        let key = Keypair::generate_ed25519();
        let r = WordRecord::sign(&key, "river", vec![entry("river song.ogg")], 1, 1000)?;
        assert_eq!(r.verify(1000)?, key.public().to_peer_id());
        let mut other = r.clone();
        other.entries.push(entry("river dance.ogg"));
        assert!(matches!(other.verify(1000), Err(RecordError::Forged(_))));
        let mut claimed = r.clone();
        claimed.holder = kith_overlay::PeerId::random().to_string();
        assert!(claimed.verify(1000).is_err());
        assert!(matches!(
            r.verify(1000 + TTL_SECS),
            Err(RecordError::Expired)
        ));
        Ok(())
    }

    #[test]
    fn a_name_without_the_word_is_refused() -> Result<(), RecordError> {
        let key = Keypair::generate_ed25519();
        let r = WordRecord::sign(&key, "river", vec![entry("lake.ogg")], 1, 1000)?;
        assert!(matches!(r.verify(1000), Err(RecordError::Malformed(_))));
        Ok(())
    }
}
