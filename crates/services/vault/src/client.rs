//! The owner's side of `/kith/vault/1.0.0`: one request per stream, every step timed, every
//! share and proof checked against the share's name.

use std::time::Duration;

use futures::AsyncWriteExt;
use kith_core::frame;
use kith_core::frame::FrameError;
use kith_overlay::{Overlay, OverlayError, PeerId, Stream};

use crate::protocol::{
    MAX_AUDIT, MAX_FRAME, MAX_LEAVES, MAX_SHARE, Offer, PROTOCOL, Request, Response, read_blob,
    write_blob,
};
use crate::tree;

/// Time to open a stream and get a short answer.
const SHORT: Duration = Duration::from_secs(10);
/// Time to move a share (at least ~0.5 MB/s for the largest).
const LONG: Duration = Duration::from_secs(60);

/// How a request to a holder failed, and what it says about the holder.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("unreachable: {0}")]
    Unreachable(#[source] Cause),
    #[error("it does not have the share")]
    NotFound,
    /// The holder's own reason, as it sent it (or "busy").
    #[error("it refused: {0}")]
    Refused(String),
    #[error("it sent bytes that do not match the share")]
    Wrong,
    #[error("the exchange failed: {0}")]
    Lost(#[source] Cause),
}

/// What went wrong below a [`Failure`]: the stream, its frames, or the clock.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error("timed out")]
    TimedOut,
    #[error("no answer")]
    NoAnswer,
    #[error("the holder's ID is not a peer ID")]
    BadHolder,
    #[error("unexpected answer {0:?}")]
    Unexpected(Box<Response>),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl Failure {
    /// The holder lost or spoiled what it was given (a fault against it).
    pub fn is_fault(&self) -> bool {
        matches!(self, Failure::NotFound | Failure::Wrong)
    }
}

fn lost(e: impl Into<Cause>) -> Failure {
    Failure::Lost(e.into())
}

fn unexpected(r: Response) -> Failure {
    Failure::Lost(Cause::Unexpected(Box::new(r)))
}

async fn open(overlay: &Overlay, peer: PeerId) -> Result<Stream, Failure> {
    tokio::time::timeout(SHORT, overlay.open_stream(peer, PROTOCOL))
        .await
        .map_err(|_| Failure::Unreachable(Cause::TimedOut))?
        .map_err(|e| Failure::Unreachable(e.into()))
}

async fn answer(s: &mut Stream) -> Result<Response, Failure> {
    match frame::read::<_, Response>(s, MAX_FRAME)
        .await
        .map_err(lost)?
    {
        Some(Response::Refused { reason }) => Err(Failure::Refused(reason)),
        Some(Response::Busy) => Err(Failure::Refused("busy".into())),
        Some(Response::NotFound) => Err(Failure::NotFound),
        Some(r) => Ok(r),
        None => Err(lost(Cause::NoAnswer)),
    }
}

async fn ask(
    overlay: &Overlay,
    peer: PeerId,
    req: &Request,
) -> Result<(Stream, Response), Failure> {
    let mut s = open(overlay, peer).await?;
    let r = tokio::time::timeout(SHORT, async {
        frame::write(&mut s, req).await.map_err(lost)?;
        answer(&mut s).await
    })
    .await
    .map_err(|_| lost(Cause::TimedOut))??;
    Ok((s, r))
}

pub async fn offer(overlay: &Overlay, peer: PeerId) -> Result<Offer, Failure> {
    match ask(overlay, peer, &Request::Offer).await? {
        (_, Response::Offer(o)) => Ok(o),
        (_, r) => Err(unexpected(r)),
    }
}

pub async fn store(
    overlay: &Overlay,
    peer: PeerId,
    name: &str,
    bytes: &[u8],
) -> Result<(), Failure> {
    let mut s = open(overlay, peer).await?;
    let req = Request::Store {
        share: name.to_owned(),
        size: bytes.len() as u64,
    };
    tokio::time::timeout(LONG, async {
        frame::write(&mut s, &req).await.map_err(lost)?;
        // A holder that refuses answers before reading the share; its answer says why.
        let sent = write_blob(&mut s, bytes).await;
        match answer(&mut s).await {
            Ok(Response::Stored) => Ok(()),
            Ok(r) => Err(unexpected(r)),
            Err(f) => {
                drop(sent);
                Err(f)
            }
        }
    })
    .await
    .map_err(|_| lost(Cause::TimedOut))?
}

/// Fetches a share and checks it against its name.
pub async fn fetch(overlay: &Overlay, peer: PeerId, name: &str) -> Result<Vec<u8>, Failure> {
    let mut s = open(overlay, peer).await?;
    let req = Request::Fetch {
        share: name.to_owned(),
    };
    let bytes = tokio::time::timeout(LONG, async {
        frame::write(&mut s, &req).await.map_err(lost)?;
        match answer(&mut s).await? {
            Response::Share { size } => read_blob(&mut s, size, MAX_SHARE).await.map_err(lost),
            r => Err(unexpected(r)),
        }
    })
    .await
    .map_err(|_| lost(Cause::TimedOut))??;
    let _ = s.close().await;
    if tree::name(&bytes) == name {
        Ok(bytes)
    } else {
        Err(Failure::Wrong)
    }
}

/// Audits a share of `size` bytes: asks for `leaves` and checks the proof.
pub async fn audit(
    overlay: &Overlay,
    peer: PeerId,
    name: &str,
    size: u64,
    leaves: Vec<u32>,
) -> Result<(), Failure> {
    let root = tree::parse(name).ok_or(Failure::Wrong)?;
    let asked: Vec<u32> = leaves.into_iter().take(MAX_AUDIT).collect();
    let req = Request::Audit {
        share: name.to_owned(),
        leaves: asked.clone(),
    };
    let (mut s, r) = ask(overlay, peer, &req).await?;
    let Response::Proof { size: got, hashes } = r else {
        return Err(unexpected(r));
    };
    if got != size || hashes.len() > MAX_LEAVES {
        return Err(Failure::Wrong);
    }
    let want: u64 = asked
        .iter()
        .filter_map(|&i| tree::leaf_range(size, i as usize))
        .map(|r| r.len() as u64)
        .sum();
    let data = tokio::time::timeout(SHORT, read_blob(&mut s, want, MAX_SHARE))
        .await
        .map_err(|_| lost(Cause::TimedOut))?
        .map_err(|_| Failure::Wrong)?;
    let hashes: Option<Vec<tree::Hash>> = hashes.iter().map(|h| tree::parse(h)).collect();
    match hashes {
        Some(h) if tree::check_proof(&root, size, &h, &asked, &data) => Ok(()),
        _ => Err(Failure::Wrong),
    }
}

pub async fn delete(overlay: &Overlay, peer: PeerId, name: &str) -> Result<(), Failure> {
    let req = Request::Delete {
        share: name.to_owned(),
    };
    match ask(overlay, peer, &req).await? {
        (_, Response::Deleted) => Ok(()),
        (_, r) => Err(unexpected(r)),
    }
}
