//! The master's side of `/kith/compute/1.0.0`: hands out units and takes results, behind
//! the overlay's inbound limits, one request per stream, every read timed.

use std::sync::Arc;
use std::time::Duration;

use kith_core::frame;
use kith_overlay::inbound::Limits;
use kith_overlay::{PeerId, Stream};

use crate::Error;
use crate::master::job::ReplicaState;
use crate::master::{Asker, Handout};
use crate::protocol::{
    self, MAX_FRAME, MAX_SLOTS, Outcome, Request, Response, Standing, read_blob, write_blob,
};
use crate::state::Inner;

const LIMITS: Limits = Limits {
    per_peer: 8,
    total: 512,
};
/// Time for a request, its output included.
const TIMEOUT: Duration = Duration::from_secs(120);
/// When to ask again after "no work".
const RETRY_AFTER: u64 = 1;

fn busy(_: kith_overlay::inbound::Refusal) -> Vec<u8> {
    frame::encode(&Response::Busy).unwrap_or_default()
}

pub(crate) fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    let inbound = inner
        .overlay
        .accept(protocol::PROTOCOL, LIMITS, Arc::new(busy))?;
    let i = inner.clone();
    inbound.serve(
        &inner.tasks,
        "compute request",
        TIMEOUT,
        move |peer, stream| {
            let inner = i.clone();
            async move { serve(&inner, peer, stream).await }
        },
    );
    Ok(())
}

async fn serve(inner: &Arc<Inner>, peer: PeerId, mut s: Stream) -> Result<(), Error> {
    let Some(req) = frame::read::<_, Request>(&mut s, MAX_FRAME).await? else {
        return Ok(());
    };
    match req {
        Request::Work {
            slots,
            memory,
            group,
        } => work(inner, peer, &mut s, slots.min(MAX_SLOTS), memory, group).await,
        Request::Result { job, unit, outcome } => {
            let resp = result(inner, peer, &mut s, &job, &unit, outcome).await?;
            frame::write(&mut s, &resp).await?;
            Ok(())
        }
    }
}

async fn work(
    inner: &Arc<Inner>,
    peer: PeerId,
    s: &mut Stream,
    slots: u8,
    memory: u64,
    group: Option<String>,
) -> Result<(), Error> {
    if inner.people.person_of(&peer).is_none() {
        let resp = Response::NoWork {
            retry_after: 1,
            reason: "this master does not know your person yet".into(),
            standing: Standing::default(),
        };
        frame::write(s, &resp).await?;
        return Ok(());
    }
    let key = inner.key_of(&peer);
    let (i, p) = (inner.clone(), peer.to_string());
    let handout: Handout = inner
        .tasks
        .blocking(move || {
            let scopes = i.scopes.clone();
            let may = move |g: &str| scopes.may_fetch(&peer, g);
            let who = Asker {
                peer: &p,
                key: &key,
                may: &may,
            };
            i.master.work(&who, slots, memory, group.as_deref())
        })
        .await?;
    if handout.units.is_empty() {
        let resp = Response::NoWork {
            retry_after: RETRY_AFTER,
            reason: handout.reason,
            standing: handout.standing,
        };
        frame::write(s, &resp).await?;
        return Ok(());
    }
    let paths = handout.inline.clone();
    let blobs = inner
        .tasks
        .blocking(move || {
            paths
                .iter()
                .map(|p| std::fs::read(p).map_err(|e| Error::io(p, e)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await??;
    tracing::debug!(%peer, units = handout.units.len(), "units handed out");
    frame::write(
        s,
        &Response::Units {
            units: handout.units,
            standing: handout.standing,
        },
    )
    .await?;
    for b in blobs {
        write_blob(s, &b).await?;
    }
    Ok(())
}

async fn result(
    inner: &Arc<Inner>,
    peer: PeerId,
    s: &mut Stream,
    job: &str,
    unit: &str,
    outcome: Outcome,
) -> Result<Response, Error> {
    let p = peer.to_string();
    let refused = |reason: String| {
        tracing::info!(%peer, job, unit, %reason, "result refused");
        Ok(Response::Refused { reason })
    };
    let max = match inner.master.expects(&p, job, unit) {
        Ok(m) => m,
        Err(e) => return refused(e.to_string()),
    };
    let state = match outcome {
        Outcome::Failed { fault } => ReplicaState::Faulted { fault },
        Outcome::Done { hash, size } => {
            if size > max {
                return refused(format!("{size} bytes of output, over the job's {max}"));
            }
            let out = read_blob(s, max).await?;
            if protocol::hash(&out) != hash || out.len() as u64 != size {
                return refused("the output does not match its hash".into());
            }
            let file = inner.master.result_path(job, &hash);
            inner
                .tasks
                .blocking(move || std::fs::write(&file, &out).map_err(|e| Error::io(&file, e)))
                .await??;
            ReplicaState::Done { hash }
        }
    };
    let (i, job, unit) = (inner.clone(), job.to_owned(), unit.to_owned());
    let taken = inner
        .tasks
        .blocking(move || {
            let validator = i.master.validator(&job);
            let mut same = |a: &str, b: &str| match &validator {
                Some(_) => validate(&i, &job, a, b),
                None => a == b,
            };
            i.master.take(&p, &job, &unit, state, &mut same)
        })
        .await?;
    match taken {
        Ok((verdict, standing, key)) => {
            if !verdict.disagreed.is_empty() {
                tracing::info!(volunteers = ?verdict.disagreed, "results disagreed with the quorum");
            }
            tracing::debug!(%peer, %key, "result taken");
            inner.announce().await;
            Ok(Response::Accepted { standing })
        }
        Err(e) => refused(e.to_string()),
    }
}

/// Runs the job's validator on two outputs: exit 0 means they agree. Blocking.
fn validate(inner: &Inner, job: &str, a: &str, b: &str) -> bool {
    let run = || -> Result<bool, Error> {
        let dir = inner.config.dir.join("jobs").join(job);
        let wasm = std::fs::read(dir.join("validator.wasm")).map_err(|e| Error::io(&dir, e))?;
        let (x, y) = (
            inner.master.output(job, a).unwrap_or_default(),
            inner.master.output(job, b).unwrap_or_default(),
        );
        let mut input = (x.len() as u64).to_le_bytes().to_vec();
        input.extend_from_slice(&x);
        input.extend_from_slice(&y);
        let limits = crate::spec::Limits::default();
        Ok(inner
            .sandbox()?
            .run(&wasm, &["validate"], &input, &limits)
            .is_ok())
    };
    run().unwrap_or_else(|e| {
        tracing::warn!(job, error = %e, "the job's validator failed; outputs count as different");
        false
    })
}
