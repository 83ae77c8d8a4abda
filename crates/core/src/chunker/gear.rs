//! FastCDC 2020's cut, four bytes per step.
//!
//! The same cut points as the `fastcdc` crate's `v2020` chunker (its gear tables, masks and
//! normalisation level 1; a test compares the two on many inputs), computed with fewer
//! dependent operations per byte. The crate rolls the gear hash two bytes at a time, each
//! step a shift and two additions that wait on one another; here the table lookups of four
//! bytes are summed apart from the hash, so one step is a shift and an addition on the
//! hash for four bytes, and the four positions are tested together.

use fastcdc::v2020::{MASKS, get_gear_with_seed, logarithm2};

pub(super) struct Cutter {
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    mask_s: u64,
    mask_l: u64,
    mask_s_ls: u64,
    mask_l_ls: u64,
    min: usize,
    avg: usize,
    max: usize,
}

/// Normalisation level 1, the `fastcdc` crate's default.
const NORMALIZATION: u32 = 1;

impl Cutter {
    pub(super) fn new(min: u32, avg: u32, max: u32) -> Self {
        let bits = logarithm2(avg) as usize;
        let n = NORMALIZATION as usize;
        let mask_s = MASKS.get(bits + n).copied().unwrap_or(0);
        let mask_l = MASKS.get(bits.saturating_sub(n)).copied().unwrap_or(0);
        let (gear, gear_ls) = get_gear_with_seed(0);
        Self {
            gear,
            gear_ls,
            mask_s,
            mask_l,
            mask_s_ls: mask_s << 1,
            mask_l_ls: mask_l << 1,
            min: min as usize,
            avg: avg as usize,
            max: max as usize,
        }
    }

    /// The length of the chunk at the start of `src` (0 only when `src` is empty).
    pub(super) fn cut(&self, src: &[u8]) -> usize {
        let mut remaining = src.len();
        if remaining <= self.min {
            return remaining;
        }
        let mut center = self.avg;
        if remaining > self.max {
            remaining = self.max;
        } else if remaining < center {
            center = remaining;
        }
        // Positions are taken in pairs from an even start, as the crate does.
        let mut pos = self.min / 2 * 2;
        let mut hash = 0u64;
        let phases = [
            (center / 2 * 2, self.mask_s, self.mask_s_ls),
            (remaining / 2 * 2, self.mask_l, self.mask_l_ls),
        ];
        for (end, mask, mask_ls) in phases {
            if let Some(cut) = self.scan(src, &mut pos, end, &mut hash, mask, mask_ls) {
                return cut;
            }
        }
        remaining
    }

    /// Rolls the hash over `src[pos..end]` (an even number of bytes); at an even position
    /// the shifted hash is tested with `mask_ls`, at an odd one the hash with `mask`. A
    /// position that passes is where the chunk ends (it is the chunk's length).
    #[inline(always)]
    fn scan(
        &self,
        src: &[u8],
        pos: &mut usize,
        end: usize,
        hash: &mut u64,
        mask: u64,
        mask_ls: u64,
    ) -> Option<usize> {
        let (g, gl) = (&*self.gear, &*self.gear_ls);
        let bytes = src.get(*pos..end).unwrap_or_default();
        let mut quads = bytes.chunks_exact(4);
        for q in &mut quads {
            let &[b0, b1, b2, b3] = q else { break };
            let h = *hash;
            // The crate's steps: a1 = (h << 2) + gl[b0]; h1 = a1 + g[b1];
            // a2 = (h1 << 2) + gl[b2]; h2 = a2 + g[b3]. With t = gl[b0] + g[b1]:
            let t = gl[usize::from(b0)].wrapping_add(g[usize::from(b1)]);
            let a1 = (h << 2).wrapping_add(gl[usize::from(b0)]);
            let h1 = (h << 2).wrapping_add(t);
            let a2 = (h << 4)
                .wrapping_add(t << 2)
                .wrapping_add(gl[usize::from(b2)]);
            let h2 = a2.wrapping_add(g[usize::from(b3)]);
            let hit =
                (a1 & mask_ls == 0) | (h1 & mask == 0) | (a2 & mask_ls == 0) | (h2 & mask == 0);
            if hit {
                let first = [a1 & mask_ls, h1 & mask, a2 & mask_ls, h2 & mask]
                    .iter()
                    .position(|v| *v == 0)
                    .unwrap_or(0);
                return Some(*pos + first);
            }
            *hash = h2;
            *pos += 4;
        }
        if let &[b0, b1] = quads.remainder() {
            let a = (*hash << 2).wrapping_add(gl[usize::from(b0)]);
            if a & mask_ls == 0 {
                return Some(*pos);
            }
            let h = a.wrapping_add(g[usize::from(b1)]);
            if h & mask == 0 {
                return Some(*pos + 1);
            }
            *hash = h;
            *pos += 2;
        }
        None
    }

    /// Every chunk of `buf`, as `(offset, length)`.
    pub(super) fn chunks<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = (usize, usize)> + 'a {
        let mut offset = 0;
        std::iter::from_fn(move || {
            let len = self.cut(buf.get(offset..).unwrap_or_default());
            (len > 0).then(|| {
                let c = (offset, len);
                offset += len;
                c
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::tests::data as noise;
    use proptest::prelude::*;

    fn crate_chunks(buf: &[u8], min: u32, avg: u32, max: u32) -> Vec<(usize, usize)> {
        fastcdc::v2020::FastCDC::new(buf, min, avg, max)
            .map(|c| (c.offset, c.length))
            .collect()
    }

    #[test]
    fn same_cut_points_as_the_fastcdc_crate_on_kiths_sizes() {
        let c = Cutter::new(
            crate::chunker::MIN_CHUNK,
            crate::chunker::AVG_CHUNK,
            crate::chunker::MAX_CHUNK,
        );
        for (len, seed) in [(0, 1), (1, 1), (65_536, 2), (65_537, 3), (9_000_000, 4)] {
            let d = noise(len, seed);
            let ours: Vec<_> = c.chunks(&d).collect();
            assert_eq!(
                ours,
                crate_chunks(
                    &d,
                    crate::chunker::MIN_CHUNK,
                    crate::chunker::AVG_CHUNK,
                    crate::chunker::MAX_CHUNK
                ),
                "len {len}"
            );
        }
        // No cut point anywhere: every chunk is the largest.
        let zeros = vec![0u8; 3_500_001];
        assert_eq!(
            c.chunks(&zeros).collect::<Vec<_>>(),
            crate_chunks(
                &zeros,
                crate::chunker::MIN_CHUNK,
                crate::chunker::AVG_CHUNK,
                crate::chunker::MAX_CHUNK
            )
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Small chunk sizes give many cut points per input, at every position parity and
        /// in both phases; low-entropy bytes make the tests pass at unusual places.
        #[test]
        fn same_cut_points_as_the_fastcdc_crate(
            len in 0usize..400_000,
            seed in any::<u64>(),
            alphabet in 1u8..=255,
            avg_bits in 10u32..=14,
        ) {
            let d: Vec<u8> = noise(len, seed).iter().map(|b| b % alphabet).collect();
            let avg = 1u32 << avg_bits;
            let (min, max) = (avg / 4, avg * 4);
            let ours: Vec<_> = Cutter::new(min, avg, max).chunks(&d).collect();
            prop_assert_eq!(ours, crate_chunks(&d, min, avg, max));
        }
    }
}
