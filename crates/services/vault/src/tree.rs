//! A share's hash tree: BLAKE3 of each 64 KiB leaf, and the share's name, BLAKE3 over the
//! share's length and its leaf hashes. An audit asks a holder for a few random leaves and
//! all the leaf hashes: the hashes must give the name, the leaves their hashes, so a holder
//! that kept only hashes, or nothing, is caught without a whole download.

pub const LEAF: usize = 64 << 10;
const DOMAIN: &[u8] = b"kith vault share v1";

pub type Hash = [u8; 32];

/// The hashes of a share's leaves.
pub fn leaves(share: &[u8]) -> Vec<Hash> {
    share
        .chunks(LEAF)
        .map(|l| *blake3::hash(l).as_bytes())
        .collect()
}

/// The name of a share of `size` bytes with these leaf hashes.
pub fn root(size: u64, leaves: &[Hash]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(&size.to_le_bytes());
    for l in leaves {
        h.update(l);
    }
    *h.finalize().as_bytes()
}

/// The name of a share, as hex.
pub fn name(share: &[u8]) -> String {
    hex(&root(share.len() as u64, &leaves(share)))
}

pub fn hex(h: &Hash) -> String {
    kith_core::person::to_hex(h)
}

pub fn parse(s: &str) -> Option<Hash> {
    kith_core::person::from_hex(s)?.try_into().ok()
}

/// How many leaves a share of `size` bytes has.
pub fn leaf_count(size: u64) -> usize {
    (size as usize).div_ceil(LEAF)
}

/// The byte range of leaf `i` in a share of `size` bytes.
pub fn leaf_range(size: u64, i: usize) -> Option<std::ops::Range<usize>> {
    let start = i.checked_mul(LEAF)?;
    let size = usize::try_from(size).ok()?;
    (start < size).then(|| start..(start + LEAF).min(size))
}

/// Checks an audit's answer: the leaf hashes give `name`, and `data` is the asked leaves,
/// in order, each matching its hash.
pub fn check_proof(name: &Hash, size: u64, hashes: &[Hash], asked: &[u32], data: &[u8]) -> bool {
    if hashes.len() != leaf_count(size) || root(size, hashes) != *name {
        return false;
    }
    let mut at = 0usize;
    for &i in asked {
        let Some(r) = leaf_range(size, i as usize) else {
            return false;
        };
        let Some(leaf) = data.get(at..at + r.len()) else {
            return false;
        };
        match hashes.get(i as usize) {
            Some(h) if blake3::hash(leaf).as_bytes() == h => {}
            _ => return false,
        }
        at += r.len();
    }
    at == data.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_hold_for_the_share_and_fail_for_changed_bytes() {
        let share: Vec<u8> = (0..(3 * LEAF + 100)).map(|i| (i * 7) as u8).collect();
        let hs = leaves(&share);
        let name = root(share.len() as u64, &hs);
        let size = share.len() as u64;
        let asked = [3u32, 1];
        let mut data = Vec::new();
        for &i in &asked {
            let r = leaf_range(size, i as usize).unwrap_or_default();
            data.extend_from_slice(&share[r]);
        }
        assert!(check_proof(&name, size, &hs, &asked, &data));
        let mut bad = data.clone();
        bad[5] ^= 1;
        assert!(!check_proof(&name, size, &hs, &asked, &bad));
        let mut forged = hs.clone();
        forged[0][0] ^= 1;
        assert!(!check_proof(&name, size, &forged, &asked, &data));
        assert!(!check_proof(&name, size, &hs, &[9], &[]));
        assert_eq!(leaf_count(size), 4);
    }
}
