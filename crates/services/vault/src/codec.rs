//! A segment sealed for holders: encrypted with a key of its own (ChaCha20-Poly1305), then
//! cut into `k` shares and `n − k` Reed–Solomon recovery shares, any `k` of which give it
//! back.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};

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
    Decode(String),
    #[error("the segment does not open with its key (wrong key, or damaged shares)")]
    Open,
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

/// Encrypts `plain` with `key` and cuts it into `n` shares.
pub fn seal(key: &[u8; 32], plain: Vec<u8>, k: u8, n: u8) -> Result<Vec<Vec<u8>>, CodecError> {
    check_shape(k, n)?;
    let len = plain.len();
    let shard = share_len(len, k);
    let mut buf = plain;
    buf.reserve_exact(shard * usize::from(k) - len);
    let cipher = ChaCha20Poly1305::new(key.into());
    let tag = cipher
        .encrypt_in_place_detached(&Nonce::default(), &[], &mut buf)
        .map_err(|_| CodecError::Open)?;
    buf.extend_from_slice(&tag);
    buf.resize(shard * usize::from(k), 0);
    let recovery = reed_solomon_simd::encode(usize::from(k), usize::from(n - k), buf.chunks(shard))
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    let mut shares: Vec<Vec<u8>> = buf.chunks(shard).map(<[u8]>::to_vec).collect();
    shares.extend(recovery);
    Ok(shares)
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
    let known = orig
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().map(|s| (i, s.as_slice())));
    let rec = recovery.iter().map(|(i, s)| (*i, s.as_slice()));
    let mut restored = reed_solomon_simd::decode(k, usize::from(n) - k, known, rec)
        .map_err(|e| CodecError::Decode(e.to_string()))?;
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
    let tag = Tag::clone_from_slice(buf.split_off(plain).as_slice());
    let cipher = ChaCha20Poly1305::new(key.into());
    cipher
        .decrypt_in_place_detached(&Nonce::default(), &[], &mut buf, &tag)
        .map_err(|_| CodecError::Open)?;
    Ok(buf)
}

/// All `n` shares of a segment again, from any `k` of them (repair).
pub fn rebuild(k: u8, n: u8, shares: Vec<(usize, Vec<u8>)>) -> Result<Vec<Vec<u8>>, CodecError> {
    let mut orig = originals(k, n, shares)?;
    let recovery = reed_solomon_simd::encode(usize::from(k), usize::from(n - k), &orig)
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    orig.extend(recovery);
    Ok(orig)
}

#[cfg(test)]
mod tests {
    use super::*;

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
