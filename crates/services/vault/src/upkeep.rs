//! Upkeep, in the background: audits of every share ([`crate::audit`]), repair of
//! shares that failed or whose holder has been gone past the grace period (rebuilt from
//! `k` others, placed on a new holder, at a bounded rate), scheduled backups, the index
//! kept in the vault, and releases of shares the index does not point to
//! ([`crate::ledger`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kith_core::store::now_secs;
use kith_overlay::PeerId;

use crate::index::IndexError;
use crate::release::{self, Op};
use crate::state::Inner;
use crate::tree;
use crate::{Error, Refused, audit, codec, get, place, publish, put};

/// How often holders are looked up in the DHT.
const LOOKUP_EVERY: Duration = Duration::from_secs(300);
/// Segments repaired at once.
const REPAIRS_AT_ONCE: usize = 3;
/// Repairs in one round (the rest wait for the next).
const REPAIRS_PER_ROUND: usize = 1024;

pub(crate) fn start(inner: &Arc<Inner>) {
    let i = inner.clone();
    inner.tasks().spawn(async move {
        if i.index().is_ok_and(|ix| ix.objects.is_empty())
            && let Err(e) = publish::refresh(&i).await
        {
            tracing::debug!(error = %e, "no vault index found yet");
        }
        let mut looked = tokio::time::Instant::now();
        place::discover(&i.finder()).await;
        // What operations of the last run left placed is released first.
        let (released, left) = release::sweep(&i).await;
        if released + left > 0 {
            tracing::info!(released, left, "shares of unfinished operations released");
        }
        let tick = i.config().audit_every.min(release::SWEEP_EVERY);
        let mut last_round = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = i.tasks().shutdown().cancelled() => break,
                () = tokio::time::sleep(tick) => {}
            }
            if looked.elapsed() >= LOOKUP_EVERY {
                looked = tokio::time::Instant::now();
                place::discover(&i.finder()).await;
            }
            if !i.ledger().is_empty().unwrap_or(true) {
                release::sweep(&i).await;
            }
            if i.catalog().unpublished() {
                publish::publish_or_defer(&i).await;
            }
            if last_round.elapsed() >= i.config().audit_every {
                last_round = tokio::time::Instant::now();
                if let Err(e) = round(&i).await {
                    tracing::info!(error = %e, "vault upkeep round failed");
                }
            }
        }
    });
}

async fn round(inner: &Arc<Inner>) -> Result<(), Error> {
    audit::audit(inner).await?;
    let repaired = repair(inner).await?;
    crate::backups::due(inner).await?;
    if repaired > 0 {
        publish::publish_or_defer(inner).await;
    }
    Ok(())
}

/// Repairs the shares that need it; returns how many were placed anew.
pub(crate) async fn repair(inner: &Arc<Inner>) -> Result<usize, Error> {
    let grace = inner.config().grace.as_secs();
    let now = now_secs();
    let todo: Vec<(u64, usize)> = inner
        .index()?
        .segments
        .iter()
        .flat_map(|(id, g)| {
            g.shares
                .iter()
                .enumerate()
                .filter(|(_, s)| s.bad || s.missing_since.is_some_and(|t| now >= t + grace))
                .map(|(i, _)| (*id, i))
        })
        .take(REPAIRS_PER_ROUND)
        .collect();
    if todo.is_empty() {
        return Ok(0);
    }
    let _changing = inner.changing().await;
    let cands = std::sync::Mutex::new(place::candidates(&inner.finder(), 1).await?);
    let op = Op::begin(inner)?;
    // Shares of one segment are repaired one after another (each must land on a holder
    // the others do not use); distinct segments at once.
    let mut by_segment: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (seg, i) in todo {
        by_segment.entry(seg).or_default().push(i);
    }
    let (cands, o) = (&cands, &op);
    let mut runs = futures::stream::iter(by_segment)
        .map(|(seg_id, shares)| async move {
            let (mut done, mut bytes) = (0usize, 0u64);
            for i in shares {
                match repair_one(o, cands, seg_id, i).await {
                    Ok(b) => {
                        done += 1;
                        bytes += b;
                    }
                    Err(e) => tracing::info!(seg = seg_id, share = i, error = %e, "repair failed"),
                }
            }
            (done, bytes)
        })
        .buffer_unordered(REPAIRS_AT_ONCE);
    let mut done = 0;
    let rate = inner.config().repair_rate.max(1);
    while let Some((d, bytes)) = runs.next().await {
        done += d;
        tokio::time::sleep(Duration::from_secs_f64(bytes as f64 / rate as f64)).await;
    }
    drop(runs);
    inner.save().await?;
    if let Err(e) = op.commit(&inner.catalog().referenced()?).await {
        tracing::warn!(error = %e, "cannot record the repairs as done");
    }
    Ok(done)
}

async fn repair_one(op: &Op, cands: &place::Cands, seg_id: u64, i: usize) -> Result<u64, Error> {
    let inner = op.inner();
    let seg = inner
        .index()?
        .segments
        .get(&seg_id)
        .cloned()
        .ok_or(IndexError::ShareGone {
            seg: seg_id,
            share: i,
        })?;
    let old = seg.shares.get(i).cloned().ok_or(IndexError::ShareGone {
        seg: seg_id,
        share: i,
    })?;
    let mut exclude: HashSet<PeerId> = seg
        .shares
        .iter()
        .filter_map(|s| s.holder.parse().ok())
        .collect();
    // Nothing is fetched unless some holder has room for the rebuilt share.
    if !kith_core::sync::lock(cands)?
        .iter()
        .any(|c| c.free >= old.size && !exclude.contains(&c.peer))
    {
        return Err(Error::Placement(Refused::default()));
    }
    let shares = get::shares_of(inner, seg_id, &seg, Some(i)).await?;
    let (k, n) = (seg.k, seg.n);
    let all = inner
        .tasks()
        .blocking(move || codec::rebuild(k, n, shares))
        .await??;
    let bytes = all.into_iter().nth(i).ok_or(IndexError::ShareGone {
        seg: seg_id,
        share: i,
    })?;
    if tree::name(&bytes) != old.name {
        return Err(IndexError::RebuiltMismatch.into());
    }
    let holder = put::store_share(
        op,
        cands,
        &mut exclude,
        (&old.name, &bytes),
        Refused::default(),
    )
    .await?;
    {
        let mut ix = inner.index()?;
        ix.repairs += 1;
        if let Some(g) = ix.segments.get_mut(&seg_id) {
            g.repairs += 1;
            if let Some(s) = g.shares.get_mut(i) {
                s.holder = holder.to_string();
                s.bad = false;
                s.missing_since = None;
                s.last_audit = now_secs();
            }
        }
    }
    inner.metrics().repairs.inc();
    inner.emit(crate::Event::Repaired {
        seg: seg_id,
        share: i,
        from: old.holder.clone(),
        to: holder.to_string(),
    });
    tracing::info!(seg = seg_id, share = i, from = %old.holder, to = %holder, "share repaired");
    // The old holder, if it is still there, may let go of its copy.
    release::release_later(inner, vec![(old.holder, old.name)]).await;
    Ok(bytes.len() as u64)
}
