//! What this node keeps of the word index for others: records by word and holder, in
//! memory, bounded per word, per holder and in total.

use std::collections::HashMap;
use std::sync::Mutex;

use kith_core::sync::{Poisoned, lock};
use kith_overlay::PeerId;

use super::record::WordRecord;
use crate::query::Query;

/// Most holders one node keeps for one word.
pub const MAX_HOLDERS_PER_WORD: usize = 2048;
/// Most words one node keeps for one holder.
pub const MAX_WORDS_PER_HOLDER: usize = 1024;
/// Most bytes of records one node keeps.
pub const MAX_BYTES: usize = 24 << 20;

/// What became of a record put here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Stored,
    Removed,
    /// An older record than the one kept.
    Stale,
    /// No room: the holder should place it elsewhere.
    Full,
}

#[derive(Default)]
pub struct Store {
    words: HashMap<String, HashMap<PeerId, WordRecord>>,
    per_holder: HashMap<PeerId, usize>,
    bytes: usize,
}

impl Store {
    pub fn put(&mut self, r: WordRecord, holder: PeerId, now_secs: u64) -> Put {
        if self.bytes + r.weight() > MAX_BYTES {
            self.sweep(now_secs);
        }
        let old = self.words.get(&r.word).and_then(|h| h.get(&holder));
        if old.is_some_and(|o| o.seq >= r.seq) {
            return Put::Stale;
        }
        let old_weight = old.map(WordRecord::weight);
        if r.entries.is_empty() {
            self.remove(&r.word, &holder);
            return Put::Removed;
        }
        let holders = self.words.get(&r.word).map_or(0, HashMap::len);
        let words_of = self.per_holder.get(&holder).copied().unwrap_or(0);
        let is_new = old_weight.is_none();
        if is_new && (holders >= MAX_HOLDERS_PER_WORD || words_of >= MAX_WORDS_PER_HOLDER) {
            return Put::Full;
        }
        if self.bytes - old_weight.unwrap_or(0) + r.weight() > MAX_BYTES {
            return Put::Full;
        }
        self.bytes = self.bytes - old_weight.unwrap_or(0) + r.weight();
        if is_new {
            *self.per_holder.entry(holder).or_default() += 1;
        }
        self.words
            .entry(r.word.clone())
            .or_default()
            .insert(holder, r);
        Put::Stored
    }

    fn remove(&mut self, word: &str, holder: &PeerId) {
        let Some(h) = self.words.get_mut(word) else {
            return;
        };
        if let Some(old) = h.remove(holder) {
            self.bytes -= old.weight();
            if let Some(n) = self.per_holder.get_mut(holder) {
                *n -= 1;
                if *n == 0 {
                    self.per_holder.remove(holder);
                }
            }
        }
        if h.is_empty() {
            self.words.remove(word);
        }
    }

    /// Drops expired records.
    pub fn sweep(&mut self, now_secs: u64) {
        let expired: Vec<(String, PeerId)> = self
            .words
            .iter()
            .flat_map(|(w, h)| {
                h.iter()
                    .filter(|(_, r)| r.expires <= now_secs)
                    .map(move |(p, _)| (w.clone(), *p))
            })
            .collect();
        for (w, p) in expired {
            self.remove(&w, &p);
        }
    }

    /// Records of `word` with a name matching `q`, until they hold `limit` matches.
    pub fn query(&self, word: &str, q: &Query, limit: usize, now_secs: u64) -> Vec<WordRecord> {
        let mut out = Vec::new();
        let mut matches = 0;
        for r in self.words.get(word).into_iter().flat_map(HashMap::values) {
            if matches >= limit {
                break;
            }
            if r.expires <= now_secs {
                continue;
            }
            let n = r.matching(q).count();
            if n > 0 {
                matches += n;
                out.push(r.clone());
            }
        }
        out
    }

    /// Records kept, and their bytes.
    pub fn size(&self) -> (usize, usize) {
        (self.per_holder.values().sum(), self.bytes)
    }
}

/// The [`Store`] behind its lock, shared by the server (puts and queries from peers), the
/// publisher (this node's own records when it is one of a word's nodes) and the client
/// (its own part of a lookup). The store's counts must match its records, so a poisoned
/// lock is an error ([`lock`]), never taken back.
#[derive(Default)]
pub(crate) struct Held(Mutex<Store>);

impl Held {
    pub fn put(&self, r: WordRecord, holder: PeerId, now_secs: u64) -> Result<Put, Poisoned> {
        Ok(lock(&self.0)?.put(r, holder, now_secs))
    }

    pub fn sweep(&self, now_secs: u64) -> Result<(), Poisoned> {
        lock(&self.0)?.sweep(now_secs);
        Ok(())
    }

    pub fn query(
        &self,
        word: &str,
        q: &Query,
        limit: usize,
        now_secs: u64,
    ) -> Result<Vec<WordRecord>, Poisoned> {
        Ok(lock(&self.0)?.query(word, q, limit, now_secs))
    }

    pub fn size(&self) -> Result<(usize, usize), Poisoned> {
        Ok(lock(&self.0)?.size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::windex::record::tests::entry;
    use kith_overlay::Keypair;

    fn rec(key: &Keypair, word: &str, names: &[&str], seq: u64) -> (WordRecord, PeerId) {
        let r = WordRecord::sign(
            key,
            word,
            names.iter().map(|n| entry(n)).collect(),
            seq,
            100,
        );
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        (r, key.public().to_peer_id())
    }

    #[test]
    fn a_poisoned_store_is_an_error_not_read() {
        let held = std::sync::Arc::new(Held::default());
        let h = held.clone();
        let _ = std::thread::spawn(move || {
            let _g = h.0.lock();
            panic!("poison it");
        })
        .join();
        assert!(held.size().is_err());
        let q = Query::parse("river").unwrap_or_else(|e| panic!("{e}"));
        assert!(held.query("river", &q, 10, 100).is_err());
    }

    #[test]
    fn newer_records_replace_older_and_empty_ones_remove() -> Result<(), crate::Error> {
        let mut s = Store::default();
        let k = Keypair::generate_ed25519();
        let (r1, h) = rec(&k, "river", &["river song.ogg"], 1);
        assert_eq!(s.put(r1.clone(), h, 100), Put::Stored);
        assert_eq!(s.put(r1, h, 100), Put::Stale);
        let (r2, _) = rec(&k, "river", &["river song.ogg", "river dance.ogg"], 2);
        assert_eq!(s.put(r2, h, 100), Put::Stored);
        let q = Query::parse("river dance")?;
        assert_eq!(s.query("river", &q, 10, 100).len(), 1);
        assert!(
            s.query("river", &Query::parse("river lake")?, 10, 100)
                .is_empty()
        );
        let (gone, _) = rec(&k, "river", &[], 3);
        assert_eq!(s.put(gone, h, 100), Put::Removed);
        assert_eq!(s.size(), (0, 0));
        Ok(())
    }

    #[test]
    fn a_word_holds_a_bounded_number_of_holders_and_records_expire() -> Result<(), crate::Error> {
        let mut s = Store::default();
        for _ in 0..MAX_HOLDERS_PER_WORD {
            let (r, h) = rec(&Keypair::generate_ed25519(), "river", &["river.ogg"], 1);
            assert_eq!(s.put(r, h, 100), Put::Stored);
        }
        let (r, h) = rec(&Keypair::generate_ed25519(), "river", &["river.ogg"], 1);
        assert_eq!(s.put(r, h, 100), Put::Full);
        let q = Query::parse("river")?;
        assert_eq!(s.query("river", &q, 10, 100).len(), 10);
        s.sweep(100 + super::super::record::TTL_SECS);
        assert_eq!(s.size(), (0, 0));
        Ok(())
    }
}
