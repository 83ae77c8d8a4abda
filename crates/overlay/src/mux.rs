//! The stream multiplexer on TCP (and relayed) connections: Yamux (`/yamux/1.0.0`, the
//! same protocol every libp2p peer speaks), set up for bulk transfers.
//!
//! Why not libp2p's Yamux upgrade as it is: it exposes only the stream limit, and Yamux's
//! default frame size (16 KiB) turns every 16 KiB of a transfer into two writes on the
//! secure channel (the 12-byte frame header, then the body), each its own TLS record and
//! system call. Here frames carry up to [`FRAME`] bytes, and a header goes out in the same
//! write as the body after it ([`Coalesce`]), so a 64 KiB frame is one system call of five
//! TLS records. Peers with the default frame size interoperate: frame sizes are the
//! sender's choice, bounded by the receiver's window.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use futures::future::{self, Ready};
use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};

/// Yamux's protocol ID.
pub const PROTOCOL: &str = "/yamux/1.0.0";
/// Largest frame body this node sends.
pub const FRAME: usize = 64 * 1024;
/// Streams one connection may have open at once. Yamux lets one stream's window grow up to
/// what the connection's budget (1 GiB) has left beyond 256 KiB for each stream the
/// connection may have; allowing 4,032 streams leaves 16 MiB of growth for the whole
/// connection, which is what bounds the memory a fast transfer takes (at 256 KiB per
/// stream, a stream already outruns loopback). Protocols keep their own, much lower,
/// stream limits.
pub const MAX_STREAMS: usize = 4032;
/// Inbound streams kept while nobody takes them; more are dropped (Yamux's own backlog of
/// unacknowledged streams is the same, so well-behaved peers never reach it).
const MAX_BUFFERED_INBOUND: usize = 256;

/// The multiplexer upgrade.
#[derive(Debug, Clone)]
pub struct Mux(yamux::Config);

/// kith's Yamux configuration (see the module's notes).
pub fn muxer() -> Mux {
    let mut c = yamux::Config::default();
    c.set_max_num_streams(MAX_STREAMS);
    c.set_split_send_size(FRAME);
    Mux(c)
}

impl UpgradeInfo for Mux {
    type Info = &'static str;
    type InfoIter = std::iter::Once<&'static str>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once(PROTOCOL)
    }
}

impl<C> InboundConnectionUpgrade<C> for Mux
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<Coalesce<C>>;
    type Error = io::Error;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(Muxer::new(io, self.0, yamux::Mode::Server)))
    }
}

impl<C> OutboundConnectionUpgrade<C> for Mux
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<Coalesce<C>>;
    type Error = io::Error;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(Muxer::new(io, self.0, yamux::Mode::Client)))
    }
}

/// A Yamux connection.
pub struct Muxer<C> {
    connection: yamux::Connection<C>,
    /// Inbound streams that arrived while the connection was driven by [`StreamMuxer::poll`]
    /// and not yet taken by [`StreamMuxer::poll_inbound`].
    inbound: VecDeque<yamux::Stream>,
    inbound_waker: Option<Waker>,
}

impl<C> Muxer<Coalesce<C>>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    fn new(io: C, config: yamux::Config, mode: yamux::Mode) -> Self {
        Self {
            connection: yamux::Connection::new(Coalesce::new(io), config, mode),
            inbound: VecDeque::new(),
            inbound_waker: None,
        }
    }
}

/// The multiplexer's error.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct MuxError(#[from] yamux::ConnectionError);

impl From<MuxError> for io::Error {
    fn from(e: MuxError) -> Self {
        match e.0 {
            yamux::ConnectionError::Io(e) => e,
            e => io::Error::other(e),
        }
    }
}

impl<C> Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    fn next_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Result<yamux::Stream, MuxError>> {
        match ready!(self.connection.poll_next_inbound(cx)) {
            Some(r) => Poll::Ready(r.map_err(MuxError)),
            None => Poll::Ready(Err(MuxError(yamux::ConnectionError::Closed))),
        }
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
{
    type Substream = yamux::Stream;
    type Error = MuxError;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        if let Some(s) = self.inbound.pop_front() {
            return Poll::Ready(Ok(s));
        }
        if let Poll::Ready(r) = self.next_inbound(cx) {
            return Poll::Ready(r);
        }
        self.inbound_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.connection.poll_new_outbound(cx).map_err(MuxError)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.connection.poll_close(cx).map_err(MuxError)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        let stream = ready!(this.next_inbound(cx))?;
        if this.inbound.len() >= MAX_BUFFERED_INBOUND {
            tracing::debug!(%stream, "inbound stream dropped: too many not taken");
        } else {
            this.inbound.push_back(stream);
            if let Some(w) = this.inbound_waker.take() {
                w.wake();
            }
        }
        // Come back at once: driving the connection is what moves every stream.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Writes of at most this many bytes are held back and sent with the next larger write
/// (or at the next flush): Yamux writes a frame's 12-byte header and its body separately.
const SMALL: usize = 64;
/// Most bytes held back.
const HELD: usize = 1024;

/// Holds small writes back until the next larger write or flush, and sends them together
/// with it in one vectored write.
pub struct Coalesce<S> {
    inner: S,
    held: Vec<u8>,
}

impl<S> Coalesce<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            held: Vec::with_capacity(HELD),
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out everything held back.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n.min(self.held.len()));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if buf.len() <= SMALL && this.held.len() + buf.len() <= HELD {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        if this.held.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        loop {
            let bufs = [IoSlice::new(&this.held), IoSlice::new(buf)];
            let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let held = this.held.len();
            if n > held {
                this.held.clear();
                return Poll::Ready(Ok(n - held));
            }
            this.held.drain(..n);
            if this.held.is_empty() {
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_release(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_release(cx))?;
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests;
