//! A segment sealed for holders: encrypted with a key of its own (AES-256-GCM, which the
//! CPU runs in hardware; the key is random and seals one segment, so the nonce is fixed), then
//! cut into `k` shares and `n − k` Reed–Solomon recovery shares, any `k` of which give it
//! back.

use std::cell::RefCell;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// Plain bytes per segment: chunks are packed into segments of at most this size.
pub const SEGMENT: usize = 8 << 20;
/// The most shares a segment is cut into.
pub const MAX_N: u8 = 32;
const TAG: usize = 16;
/// Shares are a multiple of this many bytes (Reed–Solomon works on pairs of bytes;
/// 64 keeps its SIMD paths aligned).
const ALIGN: usize = 64;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("k and n must satisfy 1 ≤ k < n ≤ {MAX_N} (got k={k}, n={n})")]
    Shape { k: u8, n: u8 },
    #[error("need {k} good shares of this segment, have {have}")]
    TooFewShares { k: u8, have: usize },
    #[error("the shares do not decode: {0}")]
    Decode(#[from] reed_solomon_simd::Error),
    #[error("the shares do not decode: they differ in size")]
    UnequalShares,
    #[error("the segment does not open with its key (wrong key, or damaged shares)")]
    Open,
}

fn cipher(key: &[u8; 32]) -> Result<LessSafeKey, CodecError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| CodecError::Open)
}

/// The nonce: each key seals exactly one segment.
fn nonce() -> Nonce {
    Nonce::assume_unique_for_key([0u8; 12])
}

/// Checks a k-of-n shape.
pub fn check_shape(k: u8, n: u8) -> Result<(), CodecError> {
    if k == 0 || k >= n || n > MAX_N {
        return Err(CodecError::Shape { k, n });
    }
    Ok(())
}

/// Bytes in each share of a segment of `plain` bytes cut `k` ways.
pub fn share_len(plain: usize, k: u8) -> usize {
    (plain + TAG)
        .div_ceil(usize::from(k).max(1))
        .next_multiple_of(ALIGN)
}

thread_local! {
    /// One encoder and decoder per thread, reused: a new one allocates and zeroes a work
    /// area many times a shard's size, which costs more than the coding itself.
    static ENCODER: RefCell<Option<ReedSolomonEncoder>> = const { RefCell::new(None) };
    static DECODER: RefCell<Option<ReedSolomonDecoder>> = const { RefCell::new(None) };
}

/// The `n − k` recovery shares of `k` original shards of equal length.
pub fn recovery<'a>(
    k: u8,
    n: u8,
    originals: impl Iterator<Item = &'a [u8]>,
    shard: usize,
) -> Result<Vec<Vec<u8>>, CodecError> {
    let (k, r) = (usize::from(k), usize::from(n - k));
    ENCODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let enc = match slot.as_mut() {
            Some(e) => {
                e.reset(k, r, shard)?;
                e
            }
            None => slot.insert(ReedSolomonEncoder::new(k, r, shard)?),
        };
        for o in originals {
            enc.add_original_shard(o)?;
        }
        let result = enc.encode()?;
        Ok(result.recovery_iter().map(<[u8]>::to_vec).collect())
    })
}

/// Restores the missing originals from what is known (index, bytes), originals and
/// recovery shares indexed from 0 each.
fn restore(
    k: usize,
    r: usize,
    shard: usize,
    known: &[(usize, &[u8])],
    rec: &[(usize, &[u8])],
) -> Result<Vec<(usize, Vec<u8>)>, CodecError> {
    DECODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dec = match slot.as_mut() {
            Some(d) => {
                d.reset(k, r, shard)?;
                d
            }
            None => slot.insert(ReedSolomonDecoder::new(k, r, shard)?),
        };
        for (i, s) in known {
            dec.add_original_shard(*i, s)?;
        }
        for (i, s) in rec {
            dec.add_recovery_shard(*i, s)?;
        }
        let result = dec.decode()?;
        Ok(result
            .restored_original_iter()
            .map(|(i, b)| (i, b.to_vec()))
            .collect())
    })
}

/// A segment's `n` shares: the `k` originals are slices of one buffer (the ciphertext),
/// the recovery shares follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shares {
    originals: Vec<u8>,
    shard: usize,
    recovery: Vec<Vec<u8>>,
}

impl Shares {
    pub fn len(&self) -> usize {
        self.originals.len().checked_div(self.shard).unwrap_or(0) + self.recovery.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes in each share.
    pub fn share_len(&self) -> usize {
        self.shard
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let k = self.originals.len().checked_div(self.shard).unwrap_or(0);
        if i < k {
            self.originals.get(i * self.shard..(i + 1) * self.shard)
        } else {
            self.recovery.get(i - k).map(Vec::as_slice)
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// Encrypts `plain` with `key` and cuts it into `n` shares.
pub fn seal_shares(key: &[u8; 32], plain: Vec<u8>, k: u8, n: u8) -> Result<Shares, CodecError> {
    check_shape(k, n)?;
    let len = plain.len();
    let shard = share_len(len, k);
    let mut buf = plain;
    buf.reserve_exact(shard * usize::from(k) - len);
    let tag = cipher(key)?
        .seal_in_place_separate_tag(nonce(), Aad::empty(), &mut buf)
        .map_err(|_| CodecError::Open)?;
    buf.extend_from_slice(tag.as_ref());
    buf.resize(shard * usize::from(k), 0);
    let recovery = recovery(k, n, buf.chunks(shard), shard)?;
    Ok(Shares {
        originals: buf,
        shard,
        recovery,
    })
}

/// The `k` original shares from any `k` shares (index, bytes) of a segment.
fn originals(k: u8, n: u8, shares: Vec<(usize, Vec<u8>)>) -> Result<Vec<Vec<u8>>, CodecError> {
    check_shape(k, n)?;
    let k = usize::from(k);
    let mut orig: Vec<Option<Vec<u8>>> = vec![None; k];
    let mut recovery = Vec::new();
    let have = shares.len();
    for (i, s) in shares {
        match orig.get_mut(i) {
            Some(slot) => *slot = Some(s),
            None if i < usize::from(n) => recovery.push((i - k, s)),
            None => {}
        }
    }
    if orig.iter().all(Option::is_some) {
        return Ok(orig.into_iter().flatten().collect());
    }
    if have < k {
        return Err(CodecError::TooFewShares { k: k as u8, have });
    }
    let known: Vec<(usize, &[u8])> = orig
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().map(|s| (i, s.as_slice())))
        .collect();
    let rec: Vec<(usize, &[u8])> = recovery.iter().map(|(i, s)| (*i, s.as_slice())).collect();
    let shard = known.first().or(rec.first()).map_or(0, |(_, s)| s.len());
    if known.iter().chain(&rec).any(|(_, s)| s.len() != shard) {
        return Err(CodecError::UnequalShares);
    }
    let mut restored: std::collections::HashMap<usize, Vec<u8>> =
        restore(k, usize::from(n) - k, shard, &known, &rec)?
            .into_iter()
            .collect();
    orig.into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.or_else(|| restored.remove(&i))
                .ok_or(CodecError::TooFewShares { k: k as u8, have })
        })
        .collect()
}

/// Decodes and decrypts a segment of `plain` bytes from any `k` of its shares.
pub fn open(
    key: &[u8; 32],
    plain: usize,
    k: u8,
    n: u8,
    shares: Vec<(usize, Vec<u8>)>,
) -> Result<Vec<u8>, CodecError> {
    let orig = originals(k, n, shares)?;
    let mut buf = Vec::with_capacity(orig.iter().map(Vec::len).sum());
    for s in &orig {
        buf.extend_from_slice(s);
    }
    if buf.len() < plain + TAG {
        return Err(CodecError::Open);
    }
    buf.truncate(plain + TAG);
    let opened = cipher(key)?
        .open_in_place(nonce(), Aad::empty(), &mut buf)
        .map_err(|_| CodecError::Open)?
        .len();
    buf.truncate(opened);
    Ok(buf)
}

/// All `n` shares of a segment again, from any `k` of them (repair).
pub fn rebuild(k: u8, n: u8, shares: Vec<(usize, Vec<u8>)>) -> Result<Vec<Vec<u8>>, CodecError> {
    let mut orig = originals(k, n, shares)?;
    let shard = orig.first().map_or(0, Vec::len);
    let recovery = recovery(k, n, orig.iter().map(Vec::as_slice), shard)?;
    orig.extend(recovery);
    Ok(orig)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shares as owned buffers.
    fn seal(key: &[u8; 32], plain: Vec<u8>, k: u8, n: u8) -> Result<Vec<Vec<u8>>, CodecError> {
        Ok(seal_shares(key, plain, k, n)?
            .iter()
            .map(<[u8]>::to_vec)
            .collect())
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    #[test]
    fn any_k_shares_open_the_segment() -> Result<(), CodecError> {
        let key = [7u8; 32];
        let plain = bytes(100_003);
        let shares = seal(&key, plain.clone(), 3, 6)?;
        assert_eq!(shares.len(), 6);
        for pick in [[0, 1, 2], [3, 4, 5], [0, 4, 5], [1, 2, 5]] {
            let some = pick.iter().map(|&i| (i, shares[i].clone())).collect();
            assert_eq!(open(&key, plain.len(), 3, 6, some)?, plain);
        }
        let two = vec![(0, shares[0].clone()), (5, shares[5].clone())];
        assert!(matches!(
            open(&key, plain.len(), 3, 6, two),
            Err(CodecError::TooFewShares { .. })
        ));
        Ok(())
    }

    #[test]
    fn shares_are_ciphertext_and_the_wrong_key_fails() -> Result<(), CodecError> {
        let plain = b"a very secret line of text, repeated. ".repeat(100);
        let shares = seal(&[1u8; 32], plain.clone(), 2, 4)?;
        let needle = &plain[..20];
        assert!(shares.iter().all(|s| !s.windows(20).any(|w| w == needle)));
        let some = vec![(0, shares[0].clone()), (1, shares[1].clone())];
        assert!(matches!(
            open(&[2u8; 32], plain.len(), 2, 4, some),
            Err(CodecError::Open)
        ));
        Ok(())
    }

    #[test]
    fn rebuilt_shares_equal_the_lost_ones() -> Result<(), CodecError> {
        let shares = seal(&[3u8; 32], bytes(50_000), 3, 7)?;
        let some = vec![
            (1, shares[1].clone()),
            (4, shares[4].clone()),
            (6, shares[6].clone()),
        ];
        assert_eq!(rebuild(3, 7, some)?, shares);
        Ok(())
    }

    #[test]
    fn bad_shapes_are_refused() {
        for (k, n) in [(0, 3), (3, 3), (4, 3), (1, 33)] {
            assert!(check_shape(k, n).is_err(), "{k}/{n}");
        }
    }
}
