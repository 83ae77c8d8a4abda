//! Finding the running node of a data dir; the client itself, one typed method per
//! operation, is `kith_api::Client`.

use anyhow::{Context, Result, bail};
use kith_api::Client;
use kith_node::Home;

/// A client of the running node of `home`.
pub fn connect(home: &Home) -> Result<Client> {
    let Some(addr) = home.api_addr() else {
        bail!(
            "the kith node is not running for {} (start it with `kith up`)",
            home.dir().display()
        );
    };
    let token = home.token().context("cannot read the API token")?;
    Ok(Client::new(addr, token)?)
}
