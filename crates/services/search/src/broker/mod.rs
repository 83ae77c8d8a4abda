//! Broker mode (a directory, as in Napster) over `/kith/broker/1.0.0`.
//!
//! Peers register their catalogue, push changes as they happen and send heartbeats; the
//! broker answers keyword searches with the peers that hold each item and are online now.
//! Entries are filed under the peer ID the connection authenticated (Noise, the peer's own
//! key), so only a peer can register or remove its own. The broker never stores or serves
//! content, and nobody trusts it for content: everything fetched is verified by ID, and
//! results that do not match the query are dropped by the asker.
//!
//! - [`Directory`]: who shares what, and who is online.
//! - `server`: the broker's side of the protocol.
//! - `client`: registering with a broker, and asking it.

pub(crate) mod client;
mod directory;
mod server;

use std::sync::Arc;

pub use directory::{Directory, MAX_ENTRIES_PER_PEER, MAX_PEERS};

use crate::Error;
use crate::state::Inner;

/// Serves as a broker when configured to, and keeps this node registered with its broker.
pub(crate) fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    if let Some(dir) = inner.directory.clone() {
        server::start(inner, dir)?;
    }
    if let Some(addr) = inner.config.broker.clone() {
        inner.tasks.spawn(client::run(inner.clone(), addr));
    }
    Ok(())
}
