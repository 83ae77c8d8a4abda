//! Gossip: each service registers the topic prefix it owns, with its validator, and gets
//! its own receiver. Messages on topics nobody registered are refused, and refused
//! messages are not passed on to other peers.

use std::sync::Arc;

use libp2p::{Swarm, gossipsub};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::behaviour::Behaviour;
use crate::{GossipMessage, RecordValidator};

/// Gossip messages queued for one service before new ones are dropped.
const QUEUE: usize = 256;
/// Most topic prefixes registered.
const MAX_ROUTES: usize = 64;

struct Route {
    prefix: String,
    validator: Arc<dyn RecordValidator>,
    tx: mpsc::Sender<GossipMessage>,
}

pub(crate) struct Gossip {
    routes: Vec<Route>,
    rejected: Counter,
}

impl Gossip {
    pub fn new(rejected: Counter) -> Self {
        Self {
            routes: Vec::new(),
            rejected,
        }
    }

    /// Registers `prefix` (replacing an earlier registration of the same prefix).
    pub fn route(
        &mut self,
        prefix: String,
        validator: Arc<dyn RecordValidator>,
    ) -> mpsc::Receiver<GossipMessage> {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.routes
            .retain(|r| r.prefix != prefix && !r.tx.is_closed());
        if self.routes.len() < MAX_ROUTES {
            self.routes.push(Route {
                prefix,
                validator,
                tx,
            });
        } else {
            tracing::warn!(%prefix, "too many gossip prefixes; not routed");
        }
        rx
    }

    /// The route with the longest prefix of `topic`.
    fn route_of(&self, topic: &str) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| topic.starts_with(&r.prefix))
            .max_by_key(|r| r.prefix.len())
    }

    pub fn subscribe(&self, swarm: &mut Swarm<Behaviour>, topic: String) {
        let t = gossipsub::IdentTopic::new(topic);
        if let Err(e) = swarm.behaviour_mut().gossipsub.subscribe(&t) {
            tracing::warn!(error = ?e, "cannot subscribe");
        }
    }

    pub fn unsubscribe(&self, swarm: &mut Swarm<Behaviour>, topic: String) {
        let t = gossipsub::IdentTopic::new(topic);
        swarm.behaviour_mut().gossipsub.unsubscribe(&t);
    }

    pub fn publish(&self, swarm: &mut Swarm<Behaviour>, topic: String, data: Vec<u8>) {
        let t = gossipsub::IdentTopic::new(topic);
        match swarm.behaviour_mut().gossipsub.publish(t, data) {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => tracing::debug!(error = ?e, "gossip publish failed"),
        }
    }

    pub fn on_event(&mut self, swarm: &mut Swarm<Behaviour>, e: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = e
        else {
            return;
        };
        let topic = message.topic.as_str().to_owned();
        let route = self.route_of(&topic);
        let verdict = match route {
            Some(r) => r
                .validator
                .validate_gossip(&topic, &message.data, message.source.as_ref())
                .map_err(|e| e.0),
            None => Err("no service takes this topic".to_owned()),
        };
        let acceptance = match &verdict {
            Ok(()) => gossipsub::MessageAcceptance::Accept,
            Err(reason) => {
                self.rejected.inc();
                tracing::warn!(peer = %propagation_source, %topic, %reason, "rejected a gossip message");
                gossipsub::MessageAcceptance::Reject
            }
        };
        swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
        if let (Ok(()), Some(r)) = (verdict, route) {
            let msg = GossipMessage {
                topic,
                data: message.data,
                source: message.source,
                via: propagation_source,
            };
            if r.tx.try_send(msg).is_err() {
                tracing::warn!(prefix = %r.prefix, "gossip queue full; dropping a message");
            }
        }
    }
}
