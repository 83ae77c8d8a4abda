//! The client side of `/kith/share/1.0.0`: opening a stream to a provider and reading its
//! answers, checked, timed and verified. Every way a request can fail is sorted into what
//! it says about the provider ([`Failure`]).

use std::time::Duration;

use futures::AsyncReadExt;
use kith_core::ContentId;
use kith_overlay::{Overlay, PeerEvent, PeerId, Stream};
use tokio::sync::broadcast::error::RecvError;

use crate::protocol::{self, Status, WireError};
use crate::rate::RateLimit;
use crate::strikes::Offence;

/// Bytes read per step of a response when no download limit applies.
const READ_STEP: usize = 256 * 1024;
/// Longest wait for the server to take a new stream.
const GREETING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a cut-short response waits to learn whether the connection went with it.
const CLOSING_GRACE: Duration = Duration::from_millis(500);

/// Why a request to a provider did not give verified bytes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The provider could not be reached, or is busy: worth trying again later.
    #[error("unreachable: {0}")]
    Unreachable(#[source] Unreachable),
    /// The provider does not have it.
    #[error("does not have it")]
    NotFound,
    /// The stream broke (a reset, a closed connection): not known to be the provider's
    /// fault.
    #[error("stream lost: {0}")]
    Lost(#[source] Lost),
    /// The provider broke the protocol or lied.
    #[error("{0}")]
    Offence(Offence),
}

/// Why a provider could not be reached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unreachable {
    #[error("busy")]
    Busy,
    #[error("no greeting")]
    NoGreeting,
    #[error(transparent)]
    Open(#[from] kith_overlay::OverlayError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why a stream to a provider broke.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Lost {
    #[error("peer answered {0:?}")]
    Answered(Status),
    #[error("the provider went away")]
    Gone,
    #[error("connection upgraded")]
    Moved,
    #[error("no such chunk")]
    NoChunk,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
}

fn violation(what: impl Into<String>) -> Failure {
    Failure::Offence(Offence::Violation(what.into()))
}

/// An error while reading a response's header.
fn header_failure(e: WireError) -> Failure {
    match e {
        WireError::Status(Status::NotFound) => Failure::NotFound,
        WireError::Status(Status::Busy) => Failure::Unreachable(Unreachable::Busy),
        WireError::Status(s) => Failure::Lost(Lost::Answered(s)),
        WireError::TooLarge { len, max } => {
            violation(format!("a body of {len} bytes, over the {max}-byte limit"))
        }
        WireError::Protocol(what) => violation(what),
        e @ WireError::BadId(_) => violation(e.to_string()),
        WireError::Io(e) => Failure::Lost(Lost::Io(e)),
    }
}

/// The requesting side of `/kith/share/1.0.0`: opens streams to providers and reads
/// their answers within the stall timeout and the download rate limit.
pub(crate) struct Client {
    overlay: Overlay,
    /// The download rate limit (changed at run time).
    limit: RateLimit,
    /// A response that makes no progress for this long fails.
    stall: Duration,
}

impl Client {
    pub fn new(overlay: Overlay, limit: RateLimit, stall: Duration) -> Self {
        Self {
            overlay,
            limit,
            stall,
        }
    }

    /// The download rate limit.
    pub fn limit(&self) -> &RateLimit {
        &self.limit
    }

    /// Opens a stream and waits for the server to take it.
    pub async fn open(&self, peer: PeerId) -> Result<Stream, Failure> {
        let mut s = self
            .overlay
            .open_stream(peer, protocol::PROTOCOL)
            .await
            .map_err(|e| Failure::Unreachable(e.into()))?;
        match tokio::time::timeout(GREETING_TIMEOUT, protocol::read_greeting(&mut s)).await {
            Ok(Ok(())) => Ok(s),
            Ok(Err(WireError::Status(Status::Busy))) => {
                Err(Failure::Unreachable(Unreachable::Busy))
            }
            Ok(Err(WireError::Io(e))) => Err(Failure::Unreachable(e.into())),
            Ok(Err(e)) => Err(violation(format!("greeting: {e}"))),
            Err(_) => Err(Failure::Unreachable(Unreachable::NoGreeting)),
        }
    }

    /// Reads the response to a request for `id` and returns its bytes once they match `id`.
    /// A response that makes no progress for `Config::stall_timeout` fails (a provider that went
    /// away without closing the connection, or stalls on purpose); a slow but moving one
    /// does not.
    /// Whether `peer` is still connected a moment after one of its streams ended: a provider
    /// that shuts down ends its streams and then its connection.
    async fn still_connected(&self, peer: PeerId) -> bool {
        let mut events = self.overlay.peer_events();
        if !matches!(self.overlay.peer_info(peer).await, Ok(Some(_))) {
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

    pub async fn read_response(
        &self,
        peer: PeerId,
        stream: &mut Stream,
        id: &ContentId,
    ) -> Result<Vec<u8>, Failure> {
        let mut buf = Vec::new();
        let len = self.read_response_into(peer, stream, id, &mut buf).await?;
        buf.truncate(len);
        Ok(buf)
    }

    /// [`read_response`] into `buf`, which grows to fit and is never shrunk (so a reused
    /// buffer is not zeroed again); returns the length of the verified body at its start.
    pub async fn read_response_into(
        &self,
        peer: PeerId,
        stream: &mut Stream,
        id: &ContentId,
        buf: &mut Vec<u8>,
    ) -> Result<usize, Failure> {
        let max = protocol::max_body(id.kind());
        let len = tokio::time::timeout(self.stall, protocol::read_response_header(stream, max))
            .await
            .map_err(|_| Failure::Offence(Offence::Stall))?
            .map_err(header_failure)?;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let body = buf.get_mut(..len).unwrap_or_default();
        // Small slices when a download limit paces them; otherwise few, large reads.
        let step = if self.limit.is_limited() {
            crate::rate::SLICE
        } else {
            READ_STEP
        };
        for slice in body.chunks_mut(step) {
            self.limit.acquire(slice.len()).await;
            match tokio::time::timeout(self.stall, stream.read_exact(slice)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(if self.still_connected(peer).await {
                        Failure::Offence(Offence::Truncated)
                    } else {
                        Failure::Lost(Lost::Gone)
                    });
                }
                Ok(Err(e)) => return Err(Failure::Lost(e.into())),
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
    pub async fn request(
        &self,
        peer: PeerId,
        stream: &mut Stream,
        id: &ContentId,
    ) -> Result<Vec<u8>, Failure> {
        send_request(stream, id).await?;
        self.read_response(peer, stream, id).await
    }
}

pub(crate) async fn send_request(s: &mut Stream, id: &ContentId) -> Result<(), Failure> {
    protocol::write_request(s, id)
        .await
        .map_err(|e| Failure::Lost(e.into()))
}
