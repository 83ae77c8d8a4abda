//! Inbound streams of service protocols, and the one limit type every service serves behind.
//!
//! Services register a protocol with [`crate::Overlay::accept`] and get an [`Inbound`]: the
//! streams peers open, each with a [`Permit`] that counts against a per-peer and a global
//! cap ([`Limits`]). A stream over a cap, or one that arrives while the service's queue is
//! full, gets the protocol's own "busy" answer ([`Busy`]) and is closed; when even the
//! refusals are too many, it is reset. A stream is never dropped silently.
//!
//! (libp2p-stream's acceptor has a queue of one and drops what does not fit, so bursts of
//! streams vanished without an answer; kith keeps libp2p-stream for opening streams and
//! accepts its own through the small [`Behaviour`] here.)

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::AsyncWriteExt;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{DeniedUpgrade, InboundUpgrade, UpgradeInfo};
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{PeerId, Stream, StreamProtocol};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{Semaphore, mpsc};

/// Streams of one protocol waiting for its service to take them.
const QUEUE: usize = 64;
/// Refusals being written at once (across protocols); past it, refused streams are reset.
const MAX_REFUSALS: usize = 64;
/// Longest time to write a refusal.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a stream is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer has as many streams open as it may.
    PeerLimit,
    /// The service is at its global cap, or its queue is full.
    Busy,
}

/// The bytes a protocol answers a refused stream with (its "busy" status), then closes.
pub type Busy = Arc<dyn Fn(Refusal) -> Vec<u8> + Send + Sync>;

/// Caps on a service's inbound streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Streams one peer may have open at once.
    pub per_peer: usize,
    /// Streams open at once in total.
    pub total: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    protocol: String,
    reason: &'static str,
}

struct Route {
    tx: mpsc::Sender<(PeerId, Stream)>,
    busy: Busy,
}

/// What the behaviour and the services share: routes and the refusal budget.
pub(crate) struct Shared {
    routes: Mutex<HashMap<StreamProtocol, Route>>,
    refusals: Arc<Semaphore>,
    refused: Family<RefusedLabels, Counter>,
}

impl Shared {
    pub(crate) fn new(registry: &mut prometheus_client::registry::Registry) -> Arc<Self> {
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "kith_inbound_streams_refused",
            "Inbound streams refused (answered busy, or reset when even that was too much)",
            refused.clone(),
        );
        Arc::new(Self {
            routes: Mutex::default(),
            refusals: Arc::new(Semaphore::new(MAX_REFUSALS)),
            refused,
        })
    }

    fn protocols(&self) -> Vec<StreamProtocol> {
        kith_core::sync::recover(&self.routes)
            .iter()
            .filter(|(_, route)| !route.tx.is_closed())
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Hands a negotiated stream to its service, or refuses it.
    fn deliver(&self, peer: PeerId, stream: Stream, protocol: StreamProtocol) {
        let mut routes = kith_core::sync::recover(&self.routes);
        let Some(route) = routes.get(&protocol) else {
            return;
        };
        match route.tx.try_send((peer, stream)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full((_, stream))) => {
                let bytes = (route.busy)(Refusal::Busy);
                drop(routes);
                self.refuse(&protocol, stream, bytes, Refusal::Busy);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                routes.remove(&protocol);
            }
        }
    }

    /// Writes `bytes` on `stream` and closes it, within the refusal budget; past the
    /// budget the stream is reset.
    fn refuse(&self, protocol: &StreamProtocol, mut stream: Stream, bytes: Vec<u8>, why: Refusal) {
        let reason = match why {
            Refusal::PeerLimit => "peer-limit",
            Refusal::Busy => "busy",
        };
        let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
            self.refused
                .get_or_create(&RefusedLabels {
                    protocol: protocol.to_string(),
                    reason: "reset",
                })
                .inc();
            // Dropping a stream that was not closed resets it.
            return;
        };
        self.refused
            .get_or_create(&RefusedLabels {
                protocol: protocol.to_string(),
                reason,
            })
            .inc();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
                stream.write_all(&bytes).await?;
                stream.close().await
            })
            .await;
            drop(permit);
        });
    }

    pub(crate) fn register(
        self: &Arc<Self>,
        protocol: StreamProtocol,
        limits: Limits,
        busy: Busy,
    ) -> Result<Inbound, crate::OverlayError> {
        let mut routes = kith_core::sync::recover(&self.routes);
        if routes.get(&protocol).is_some_and(|r| !r.tx.is_closed()) {
            return Err(crate::OverlayError::AlreadyAccepted(protocol.to_string()));
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        routes.insert(
            protocol.clone(),
            Route {
                tx,
                busy: busy.clone(),
            },
        );
        Ok(Inbound {
            protocol,
            rx,
            limits,
            busy,
            counts: Arc::default(),
            shared: self.clone(),
        })
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<PeerId, usize>,
}

/// The inbound streams of one protocol, within its limits.
pub struct Inbound {
    protocol: StreamProtocol,
    rx: mpsc::Receiver<(PeerId, Stream)>,
    limits: Limits,
    busy: Busy,
    counts: Arc<Mutex<Counts>>,
    shared: Arc<Shared>,
}

/// A stream within the limits; the slot is freed when the permit is dropped.
pub struct Incoming {
    pub peer: PeerId,
    pub stream: Stream,
    pub permit: Permit,
}

/// Holds one slot of a peer and of the total.
pub struct Permit {
    peer: PeerId,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = kith_core::sync::recover(&self.counts);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_peer.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_peer.remove(&self.peer);
            }
        }
    }
}

impl Inbound {
    /// The next stream within the limits; streams over them are answered busy meanwhile.
    /// `None` once the overlay has stopped.
    pub async fn next(&mut self) -> Option<Incoming> {
        loop {
            let (peer, stream) = self.rx.recv().await?;
            match self.admit(peer) {
                Ok(permit) => {
                    return Some(Incoming {
                        peer,
                        stream,
                        permit,
                    });
                }
                Err(why) => {
                    tracing::debug!(%peer, protocol = %self.protocol, ?why, "refusing an inbound stream");
                    self.refuse(stream, why);
                }
            }
        }
    }

    /// [`Inbound::next`], or `None` once `stop` is cancelled.
    pub async fn next_until(
        &mut self,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Option<Incoming> {
        tokio::select! {
            () = stop.cancelled() => None,
            n = self.next() => n,
        }
    }

    fn admit(&self, peer: PeerId) -> Result<Permit, Refusal> {
        let mut c = kith_core::sync::recover(&self.counts);
        let mine = c.per_peer.get(&peer).copied().unwrap_or(0);
        if mine >= self.limits.per_peer {
            return Err(Refusal::PeerLimit);
        }
        if c.total >= self.limits.total {
            return Err(Refusal::Busy);
        }
        c.total += 1;
        *c.per_peer.entry(peer).or_default() += 1;
        Ok(Permit {
            peer,
            counts: self.counts.clone(),
        })
    }

    /// Refuses a stream with the protocol's busy answer (for refusals a service decides
    /// itself, such as a rate limit).
    pub fn refuse(&self, stream: Stream, why: Refusal) {
        self.refuse_with(stream, (self.busy)(why), why);
    }

    /// Refuses a stream with these bytes.
    pub fn refuse_with(&self, stream: Stream, bytes: Vec<u8>, why: Refusal) {
        self.shared.refuse(&self.protocol, stream, bytes, why);
    }

    /// A handle that refuses streams of this protocol from inside a handler given to
    /// [`Inbound::serve`] (a service's own per-peer policy, such as a query rate).
    pub fn refuser(&self) -> Refuser {
        Refuser {
            protocol: self.protocol.clone(),
            shared: self.shared.clone(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Serves every stream within the limits until `tasks` shut down: each on a task of
    /// its own, within `timeout`, holding its slot until done. Failures and timeouts are
    /// logged (debug) as `what` ("cache request failed").
    pub fn serve<F, Fut, E>(
        self,
        tasks: &kith_core::tasks::Tasks,
        what: &'static str,
        timeout: std::time::Duration,
        handle: F,
    ) where
        F: Fn(PeerId, Stream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.serve_within(tasks, what, Some(timeout), handle);
    }

    /// [`Inbound::serve`] for streams that carry many requests, each timed by the
    /// handler itself (a download over one stream may last hours): a stream ends when
    /// its handler returns or the tasks shut down.
    pub fn serve_long<F, Fut, E>(
        self,
        tasks: &kith_core::tasks::Tasks,
        what: &'static str,
        handle: F,
    ) where
        F: Fn(PeerId, Stream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.serve_within(tasks, what, None, handle);
    }

    fn serve_within<F, Fut, E>(
        mut self,
        tasks: &kith_core::tasks::Tasks,
        what: &'static str,
        timeout: Option<std::time::Duration>,
        handle: F,
    ) where
        F: Fn(PeerId, Stream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let t = tasks.clone();
        tasks.spawn(async move {
            while let Some(Incoming {
                peer,
                stream,
                permit,
            }) = self.next_until(t.shutdown()).await
            {
                let work = handle(peer, stream);
                let stop = t.shutdown().clone();
                t.spawn(async move {
                    let timed = async {
                        match timeout {
                            Some(d) => tokio::time::timeout(d, work).await.ok(),
                            None => Some(work.await),
                        }
                    };
                    tokio::select! {
                        () = stop.cancelled() => {}
                        r = timed => match r {
                            Some(Err(e)) => tracing::debug!(%peer, error = %e, "{what} failed"),
                            None => tracing::debug!(%peer, "{what} timed out"),
                            Some(Ok(())) => {}
                        },
                    }
                    drop(permit);
                });
            }
        });
    }
}

/// Refuses streams of one protocol within the overlay's refusal budget, as
/// [`Inbound::refuse_with`] does. Cheap to clone.
#[derive(Clone)]
pub struct Refuser {
    protocol: StreamProtocol,
    shared: Arc<Shared>,
}

impl Refuser {
    /// Writes `bytes` on `stream` and closes it (or resets it past the budget).
    pub fn refuse_with(&self, stream: Stream, bytes: Vec<u8>, why: Refusal) {
        self.shared.refuse(&self.protocol, stream, bytes, why);
    }
}

/// The upgrade that accepts any registered protocol as is.
pub struct Upgrade(Vec<StreamProtocol>);

impl UpgradeInfo for Upgrade {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: Stream, info: StreamProtocol) -> Self::Future {
        ready(Ok((socket, info)))
    }
}

/// Accepts the registered protocols on every connection.
pub struct Behaviour {
    shared: Arc<Shared>,
}

impl Behaviour {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

pub struct Handler {
    peer: PeerId,
    shared: Arc<Shared>,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Upgrade> {
        SubstreamProtocol::new(Upgrade(self.shared.protocols()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, (), Infallible>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        libp2p::core::util::unreachable(event)
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Upgrade, DeniedUpgrade>) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: (stream, protocol),
            ..
        }) = event
        {
            self.shared.deliver(self.peer, stream, protocol);
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler {
            peer,
            shared: self.shared.clone(),
        })
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler {
            peer,
            shared: self.shared.clone(),
        })
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
