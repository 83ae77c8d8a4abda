//! The client side of `/kith/share/1.0.0`: opening a stream to a provider and reading its
//! answers, checked, timed and verified. Every way a request can fail is sorted into what
//! it says about the provider ([`Failure`]).

use std::time::Duration;

use futures::AsyncReadExt;
use kith_core::ContentId;
use kith_overlay::{PeerEvent, PeerId, Stream};
use tokio::sync::broadcast::error::RecvError;

use crate::protocol::{self, Status, WireError};
use crate::state::Inner;
use crate::strikes::Offence;

/// Bytes read per step of a response when no download limit applies.
const READ_STEP: usize = 256 * 1024;
/// Longest wait for the server to take a new stream.
const GREETING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a cut-short response waits to learn whether the connection went with it.
const CLOSING_GRACE: Duration = Duration::from_millis(500);

/// Why a request to a provider did not give verified bytes.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The provider could not be reached, or is busy: worth trying again later.
    Unreachable(String),
    /// The provider does not have it.
    NotFound,
    /// The stream broke (a reset, a closed connection): not known to be the provider's
    /// fault.
    Lost(String),
    /// The provider broke the protocol or lied.
    Offence(Offence),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(why) => write!(f, "unreachable: {why}"),
            Failure::NotFound => f.write_str("does not have it"),
            Failure::Lost(why) => write!(f, "stream lost: {why}"),
            Failure::Offence(o) => o.fmt(f),
        }
    }
}

fn violation(what: impl Into<String>) -> Failure {
    Failure::Offence(Offence::Violation(what.into()))
}

/// An error while reading a response's header.
fn header_failure(e: WireError) -> Failure {
    match e {
        WireError::Status(Status::NotFound) => Failure::NotFound,
        WireError::Status(Status::Busy) => Failure::Unreachable("busy".into()),
        WireError::Status(s) => Failure::Lost(format!("peer answered {s:?}")),
        WireError::TooLarge { len, max } => {
            violation(format!("a body of {len} bytes, over the {max}-byte limit"))
        }
        WireError::Protocol(what) => violation(what),
        WireError::Io(e) => Failure::Lost(e.to_string()),
    }
}

/// Opens a stream and waits for the server to take it.
pub(crate) async fn open(inner: &Inner, peer: PeerId) -> Result<Stream, Failure> {
    let mut s = inner
        .overlay
        .open_stream(peer, protocol::PROTOCOL)
        .await
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    match tokio::time::timeout(GREETING_TIMEOUT, protocol::read_greeting(&mut s)).await {
        Ok(Ok(())) => Ok(s),
        Ok(Err(WireError::Status(Status::Busy))) => Err(Failure::Unreachable("busy".into())),
        Ok(Err(WireError::Io(e))) => Err(Failure::Unreachable(e.to_string())),
        Ok(Err(e)) => Err(violation(format!("greeting: {e}"))),
        Err(_) => Err(Failure::Unreachable("no greeting".into())),
    }
}

pub(crate) async fn send_request(s: &mut Stream, id: &ContentId) -> Result<(), Failure> {
    protocol::write_request(s, id)
        .await
        .map_err(|e| Failure::Lost(e.to_string()))
}

/// Reads the response to a request for `id` and returns its bytes once they match `id`.
/// A response that makes no progress for `Config::stall_timeout` fails (a provider that went
/// away without closing the connection, or stalls on purpose); a slow but moving one
/// does not.
/// Whether `peer` is still connected a moment after one of its streams ended: a provider
/// that shuts down ends its streams and then its connection.
async fn still_connected(inner: &Inner, peer: PeerId) -> bool {
    let mut events = inner.overlay.peer_events();
    if !matches!(inner.overlay.peer_info(peer).await, Ok(Some(_))) {
        return false;
    }
    let closed = async {
        loop {
            match events.recv().await {
                Ok(PeerEvent::Closed { peer: p }) if p == peer => return true,
                Err(RecvError::Closed) => return false,
                _ => {}
            }
        }
    };
    !tokio::time::timeout(CLOSING_GRACE, closed)
        .await
        .unwrap_or(false)
}

pub(crate) async fn read_response(
    inner: &Inner,
    peer: PeerId,
    stream: &mut Stream,
    id: &ContentId,
) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    let len = read_response_into(inner, peer, stream, id, &mut buf).await?;
    buf.truncate(len);
    Ok(buf)
}

/// [`read_response`] into `buf`, which grows to fit and is never shrunk (so a reused
/// buffer is not zeroed again); returns the length of the verified body at its start.
pub(crate) async fn read_response_into(
    inner: &Inner,
    peer: PeerId,
    stream: &mut Stream,
    id: &ContentId,
    buf: &mut Vec<u8>,
) -> Result<usize, Failure> {
    let max = protocol::max_body(id.kind());
    let len = tokio::time::timeout(
        inner.config.stall_timeout,
        protocol::read_response_header(stream, max),
    )
    .await
    .map_err(|_| Failure::Offence(Offence::Stall))?
    .map_err(header_failure)?;
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let body = buf.get_mut(..len).unwrap_or_default();
    // Small slices when a download limit paces them; otherwise few, large reads.
    let step = if inner.download_limit.is_limited() {
        crate::rate::SLICE
    } else {
        READ_STEP
    };
    for slice in body.chunks_mut(step) {
        inner.download_limit.acquire(slice.len()).await;
        match tokio::time::timeout(inner.config.stall_timeout, stream.read_exact(slice)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(if still_connected(inner, peer).await {
                    Failure::Offence(Offence::Truncated)
                } else {
                    Failure::Lost("the provider went away".into())
                });
            }
            Ok(Err(e)) => return Err(Failure::Lost(e.to_string())),
            Err(_) => return Err(Failure::Offence(Offence::Stall)),
        }
    }
    if id.verify(body) {
        Ok(len)
    } else {
        Err(Failure::Offence(Offence::WrongBytes))
    }
}

/// Requests one block on `stream` and returns its bytes once they match `id`.
pub(crate) async fn request(
    inner: &Inner,
    peer: PeerId,
    stream: &mut Stream,
    id: &ContentId,
) -> Result<Vec<u8>, Failure> {
    send_request(stream, id).await?;
    read_response(inner, peer, stream, id).await
}
