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

use kith_core::tasks::Tasks;
use kith_overlay::{Multiaddr, Overlay};

pub use directory::{Directory, MAX_ENTRIES_PER_PEER, MAX_PEERS};

use crate::Error;
use crate::catalog::Catalog;

/// Serves `directory` as a broker when there is one, and keeps this node registered with
/// the broker at `broker` when there is one.
pub(crate) fn start(
    overlay: &Overlay,
    catalog: &Arc<Catalog>,
    tasks: &Tasks,
    directory: Option<Arc<Directory>>,
    broker: Option<Multiaddr>,
) -> Result<(), Error> {
    if let Some(dir) = directory {
        server::start(overlay, tasks, dir)?;
    }
    if let Some(addr) = broker {
        let run = client::run(overlay.clone(), catalog.clone(), tasks.clone(), addr);
        tasks.spawn(run);
    }
    Ok(())
}
