//! Audits: on every round, each share the index points to (but those already found bad)
//! is asked for a few of its leaves and all its leaf hashes, which must give its name.
//!
//! Which leaves: [`ROTATE`] taken in turn along an order of the share's own (a random
//! offset and stride, kept in the owner's index and never sent), so that any
//! ⌈N / [`ROTATE`]⌉ audits of a share of N leaves in a row ask every one of its leaves;
//! and one more at random, so the holder cannot tell all that comes next. A rotation
//! moves on only when an audit passed, so an audit that did not happen skips nothing.

use std::sync::Arc;

use futures::StreamExt;
use kith_core::store::now_secs;
use kith_overlay::PeerId;

use crate::index::Index;
use crate::state::Inner;
use crate::{Error, client, tree};

/// Audits in flight at once.
const AUDITS: usize = 8;
/// Leaves asked in turn in one audit (one more is asked at random): a 4 MB share (64
/// leaves) has every leaf asked within 32 audits, 32 hours at the default hourly
/// audit, for 192 KiB a share an hour.
pub(crate) const ROTATE: u32 = 2;

/// One share to audit.
struct Todo {
    seg: u64,
    i: usize,
    holder: String,
    name: String,
    size: u64,
    rotation: u64,
    cursor: u32,
}

/// The leaves asked in turn in audit `cursor` of a share of `count` leaves whose order
/// is `rotation`: positions `ROTATE × (cursor mod ⌈count/ROTATE⌉)` onwards of the order
/// leaf(p) = (offset + p × stride) mod count, where the stride is prime to `count`, so
/// the positions of ⌈count/ROTATE⌉ audits in a row are every position once.
pub(crate) fn leaves_to_ask(count: u32, rotation: u64, cursor: u32) -> Vec<u32> {
    if count == 0 {
        return Vec::new();
    }
    let c = u64::from(count);
    let offset = (rotation >> 32) % c;
    let stride = u64::from(stride(count, rotation));
    let per = count.div_ceil(ROTATE);
    let first = (cursor % per) * ROTATE;
    (first..(first + ROTATE).min(count))
        .map(|p| ((offset + u64::from(p) * stride) % c) as u32)
        .collect()
}

/// A stride prime to `count`, picked by `rotation`.
fn stride(count: u32, rotation: u64) -> u32 {
    let mut s = (rotation % u64::from(count)) as u32;
    for _ in 0..count {
        s = s % count + 1;
        if gcd(s, count) == 1 {
            return s;
        }
    }
    1
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// What one audit asks: the leaves in turn and one at random, in order.
fn asked(t: &Todo) -> Vec<u32> {
    let count = tree::leaf_count(t.size).max(1) as u32;
    let mut leaves = leaves_to_ask(count, t.rotation, t.cursor);
    leaves.push(rand::random_range(0..count));
    leaves.sort_unstable();
    leaves.dedup();
    leaves
}

/// The shares to audit now; a share audited for the first time gets its order.
fn todo(ix: &mut Index) -> Vec<Todo> {
    let mut out = Vec::new();
    for (id, g) in ix.segments.iter_mut() {
        for (i, s) in g.shares.iter_mut().enumerate().filter(|(_, s)| !s.bad) {
            while s.rotation == 0 {
                s.rotation = rand::random();
            }
            out.push(Todo {
                seg: *id,
                i,
                holder: s.holder.clone(),
                name: s.name.clone(),
                size: s.size,
                rotation: s.rotation,
                cursor: s.cursor,
            });
        }
    }
    out
}

/// Audits every share once.
pub(crate) async fn audit(inner: &Arc<Inner>) -> Result<(), Error> {
    let todo = todo(&mut *inner.index()?);
    if todo.is_empty() {
        return Ok(());
    }
    let results: Vec<_> = futures::stream::iter(todo)
        .map(|t| async move {
            let r = match t.holder.parse::<PeerId>() {
                Ok(p) => client::audit(inner.overlay(), p, &t.name, t.size, asked(&t)).await,
                Err(_) => Err(client::Failure::Unreachable(client::Cause::BadHolder)),
            };
            (t, r)
        })
        .buffer_unordered(AUDITS)
        .collect()
        .await;
    let now = now_secs();
    for (t, r) in results {
        inner.metrics().audits.inc();
        let fault = matches!(&r, Err(f) if f.is_fault());
        {
            let mut ix = inner.index()?;
            let Some(s) = ix
                .segments
                .get_mut(&t.seg)
                .and_then(|g| g.shares.get_mut(t.i))
                .filter(|s| s.holder == t.holder && s.name == t.name)
            else {
                // Repaired or removed meanwhile.
                continue;
            };
            s.last_audit = now;
            match &r {
                Ok(()) => {
                    s.missing_since = None;
                    s.cursor = s.cursor.wrapping_add(1);
                }
                Err(_) if fault => {}
                Err(_) => {
                    s.missing_since.get_or_insert(now);
                }
            }
            if r.is_ok() {
                ix.holders.entry(t.holder.clone()).or_default().passed += 1;
            }
        }
        if fault {
            inner.strike(t.seg, t.i)?;
        }
    }
    inner.index()?.last_audit = now;
    inner.save().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_is_asked_within_ceil_n_over_rotate_audits_in_a_row() {
        for count in 1..=crate::protocol::MAX_LEAVES as u32 {
            for rotation in [1u64, 7, 0xdead_beef_cafe_f00d, u64::MAX] {
                let per = count.div_ceil(ROTATE);
                // Any window of `per` audits in a row, starting anywhere.
                for start in [0u32, 1, per - 1, 3 * per + 1] {
                    let mut seen = vec![false; count as usize];
                    for cursor in start..start + per {
                        let asked = leaves_to_ask(count, rotation, cursor);
                        assert!(asked.len() <= ROTATE as usize);
                        for l in asked {
                            seen[l as usize] = true;
                        }
                    }
                    assert!(
                        seen.iter().all(|s| *s),
                        "{count} leaves, rotation {rotation:x}, from audit {start}"
                    );
                }
            }
        }
    }

    #[test]
    fn orders_differ_between_shares() {
        let a: Vec<u32> = (0..8)
            .flat_map(|c| leaves_to_ask(64, 11 << 32 | 5, c))
            .collect();
        let b: Vec<u32> = (0..8)
            .flat_map(|c| leaves_to_ask(64, 40 << 32 | 9, c))
            .collect();
        assert_ne!(a, b);
        assert_ne!(a, (0..16).collect::<Vec<u32>>(), "not simply in turn");
    }
}
