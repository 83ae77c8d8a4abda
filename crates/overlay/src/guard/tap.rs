//! The guard's hand on inbound TCP connections during their handshake.
//!
//! [`Tcp`] is libp2p's TCP transport with every socket wrapped in a [`Tap`]. For an
//! inbound socket it makes a [`Slot`] the moment the connection is accepted and leaves it
//! in the [`Handoff`] under the connection's two addresses, where the guard takes it when
//! the swarm asks it to admit the connection (in the same poll). Through the slot the
//! guard can tell whether the peer has sent anything (bytes read by the handshake, or
//! waiting in the socket's receive queue: a peer whose bytes the busy handshake task has
//! not read yet is not silent), and cut the connection: the handshake task is woken and
//! its next read or write fails. Outbound sockets get no slot.

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};

use futures::future::{BoxFuture, Ready};
use futures::task::AtomicWaker;
use futures::{AsyncRead, AsyncWrite, FutureExt, TryFutureExt};
use libp2p::Multiaddr;
use libp2p::core::transport::{DialOpts, ListenerId, Transport, TransportError, TransportEvent};
use libp2p::tcp;
use tokio::net::TcpStream;

/// The peer has sent at least one byte.
const HEARD: u8 = 1;
/// The guard cut the connection: the handshake must fail.
const CUT: u8 = 2;
/// The handshake is over: the tap lets go of the slot.
const SETTLED: u8 = 4;

/// What the guard and the tap of one inbound connection share.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    state: AtomicU8,
    reader: AtomicWaker,
    writer: AtomicWaker,
    /// The socket, to look into its receive queue (gone once the handshake task drops it).
    socket: Weak<TcpStream>,
}

impl Slot {
    fn new(socket: Weak<TcpStream>) -> Self {
        Self {
            socket,
            ..Self::default()
        }
    }

    /// Whether the handshake has read anything from the peer yet.
    pub fn has_read(&self) -> bool {
        self.state.load(Ordering::Acquire) & HEARD != 0
    }

    /// Whether the peer has sent anything yet: read by the handshake, or waiting to be.
    pub fn heard(&self) -> bool {
        if self.has_read() {
            return true;
        }
        let waiting = self.socket.upgrade().is_some_and(|s| {
            let mut byte = [MaybeUninit::<u8>::uninit()];
            // Non-blocking (tokio's sockets are): an empty queue is `WouldBlock`, a peer
            // that closed without a word is `Ok(0)`.
            matches!(socket2::SockRef::from(&*s).peek(&mut byte), Ok(n) if n > 0)
        });
        if waiting {
            self.state.fetch_or(HEARD, Ordering::AcqRel);
        }
        waiting
    }

    /// Ends the handshake: the task driving it is woken and its next read or write fails.
    pub fn cut(&self) {
        self.state.fetch_or(CUT, Ordering::AcqRel);
        self.reader.wake();
        self.writer.wake();
    }

    /// The handshake is over: the tap stops checking.
    pub fn settle(&self) {
        self.state.fetch_or(SETTLED, Ordering::AcqRel);
    }

    #[cfg(test)]
    pub fn hear(&self) {
        self.state.fetch_or(HEARD, Ordering::AcqRel);
    }

    #[cfg(test)]
    pub fn is_cut(&self) -> bool {
        self.state.load(Ordering::Acquire) & CUT != 0
    }
}

/// A connection's local and remote addresses.
type Ends = (Multiaddr, Multiaddr);

/// Slots of accepted connections, from the transport to the guard.
#[derive(Debug, Clone, Default)]
pub(crate) struct Handoff(Arc<Mutex<HashMap<Ends, Arc<Slot>>>>);

impl Handoff {
    pub(super) fn put(&self, local: &Multiaddr, remote: &Multiaddr, slot: Arc<Slot>) {
        kith_core::sync::recover(&self.0).insert((local.clone(), remote.clone()), slot);
    }

    /// The slot of the connection the swarm is admitting (`None` if it is not TCP).
    pub fn take(&self, local: &Multiaddr, remote: &Multiaddr) -> Option<Arc<Slot>> {
        kith_core::sync::recover(&self.0).remove(&(local.clone(), remote.clone()))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        kith_core::sync::recover(&self.0).len()
    }
}

/// libp2p's TCP transport (tokio), tapped.
pub(crate) struct Tcp {
    inner: tcp::tokio::Transport,
    handoff: Handoff,
}

impl Tcp {
    pub fn new(config: tcp::Config, handoff: Handoff) -> Self {
        Self {
            inner: tcp::tokio::Transport::new(config),
            handoff,
        }
    }
}

impl Transport for Tcp {
    type Output = Tap;
    type Error = io::Error;
    type ListenerUpgrade = Ready<Result<Tap, io::Error>>;
    type Dial = BoxFuture<'static, Result<Tap, io::Error>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let dial = self.inner.dial(addr, opts)?;
        Ok(dial.map_ok(|s| Tap::plain(s.0)).boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let event = ready!(Pin::new(&mut self.inner).poll(cx));
        Poll::Ready(match event {
            TransportEvent::Incoming {
                listener_id,
                upgrade,
                local_addr,
                send_back_addr,
            } => {
                let tap = upgrade.into_inner().map(|s| {
                    let (tap, slot) = Tap::followed(s.0);
                    self.handoff.put(&local_addr, &send_back_addr, slot);
                    tap
                });
                TransportEvent::Incoming {
                    listener_id,
                    upgrade: futures::future::ready(tap),
                    local_addr,
                    send_back_addr,
                }
            }
            other => other
                .map_upgrade(|u| futures::future::ready(u.into_inner().map(|s| Tap::plain(s.0)))),
        })
    }
}

/// A TCP socket; during an inbound handshake the guard follows it, then it only passes
/// reads and writes through.
#[derive(Debug)]
pub struct Tap {
    io: Arc<TcpStream>,
    slot: Option<Arc<Slot>>,
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "handshake cut by the inbound guard",
    )
}

impl Tap {
    /// A socket the guard does not follow (outbound).
    fn plain(socket: TcpStream) -> Self {
        Self {
            io: Arc::new(socket),
            slot: None,
        }
    }

    /// An inbound socket, and the slot the guard follows it by.
    pub(crate) fn followed(socket: TcpStream) -> (Self, Arc<Slot>) {
        let io = Arc::new(socket);
        let slot = Arc::new(Slot::new(Arc::downgrade(&io)));
        let tap = Self {
            io,
            slot: Some(slot.clone()),
        };
        (tap, slot)
    }

    /// `Err` once the guard has cut the connection; otherwise registers the waker the
    /// guard wakes when it does.
    fn check(&mut self, cx: &Context<'_>, write: bool) -> io::Result<()> {
        let Some(slot) = &self.slot else {
            return Ok(());
        };
        let state = slot.state.load(Ordering::Acquire);
        if state & CUT != 0 {
            return Err(cut_error());
        }
        if state & SETTLED != 0 {
            self.slot = None;
            return Ok(());
        }
        let waker = if write { &slot.writer } else { &slot.reader };
        waker.register(cx.waker());
        // Cut between the load and the registration: seen now.
        if slot.state.load(Ordering::Acquire) & CUT != 0 {
            return Err(cut_error());
        }
        Ok(())
    }

    /// Reads with `read` once the socket is readable (tokio's readiness, as its own
    /// `poll_read` does), noting the first bytes for the guard.
    fn poll_read_with(
        &mut self,
        cx: &mut Context<'_>,
        mut read: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        self.check(cx, false)?;
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            match read(&self.io) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => {
                    if let (Some(slot), Ok(1..)) = (&self.slot, &r) {
                        slot.state.fetch_or(HEARD, Ordering::AcqRel);
                    }
                    return Poll::Ready(r);
                }
            }
        }
    }

    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        self.check(cx, true)?;
        loop {
            ready!(self.io.poll_write_ready(cx))?;
            match write(&self.io) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl AsyncRead for Tap {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_read_with(cx, |s| s.try_read(buf))
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_read_with(cx, |s| s.try_read_vectored(bufs))
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(cx, |s| s.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |s| s.try_write_vectored(bufs))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // TCP keeps no buffer of its own in user space.
        self.get_mut().check(cx, true)?;
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // As tokio's `poll_shutdown`: no more writes from this side.
        Poll::Ready(socket2::SockRef::from(&*self.io).shutdown(std::net::Shutdown::Write))
    }
}
