//! `kith up` and `kith broker`: run the node in the foreground until Ctrl-C, SIGTERM or a
//! fatal error in a service (then the node stops and the command fails).

use anyhow::{Result, bail};
use kith_node::{Config, Home, Node, Options};

use crate::args::UpArgs;

/// The config file, overridden by environment variables and flags (clap reads both).
fn merge(mut config: Config, args: &UpArgs, broker: bool) -> Config {
    if !args.listen.is_empty() {
        config.listen = args.listen.clone();
    }
    config.bootstrap.extend(args.bootstrap.iter().cloned());
    if let Some(a) = &args.api {
        config.api = a.clone();
    }
    if args.no_mdns {
        config.mdns = false;
    }
    if let Some(l) = args.upload_limit {
        config.upload_limit = l;
    }
    if let Some(l) = args.download_limit {
        config.download_limit = l;
    }
    if let Some(b) = &args.broker {
        config.broker = Some(b.clone());
    }
    if let Some(t) = args.broker_ttl {
        config.broker_ttl_secs = t.max(1);
    }
    config.serve_broker |= broker;
    if args.relay {
        config.relay = Some(true);
    }
    if args.no_relay {
        config.relay = Some(false);
    }
    config.relays.extend(args.use_relay.iter().cloned());
    if let Some(b) = args.relay_circuit_bytes {
        config.relay_circuit_bytes = b.max(1);
    }
    if let Some(s) = args.relay_circuit_secs {
        config.relay_circuit_secs = s.max(1);
    }
    config.autonat_private_ips |= args.autonat_private_ips;
    config.announce.extend(args.announce.iter().cloned());
    if let Some(o) = args.offer {
        config.offer = o;
    }
    if let Some(s) = args.vault_audit_every {
        config.vault_audit_secs = s;
    }
    if let Some(s) = args.vault_grace {
        config.vault_grace_secs = s;
    }
    if let Some(c) = args.cache {
        config.cache = c;
    }
    if let Some(d) = args.cache_demand {
        config.cache_demand = d.max(1);
    }
    config
}

pub async fn run(home: Home, args: &UpArgs, broker: bool) -> Result<()> {
    init_tracing();
    home.init()?;
    let config = merge(home.config()?, args, broker);
    let node = Node::start(Options::new(home, config)).await?;
    log_dialable(&node);
    let stop = node.shutdown_token();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let fatal = tokio::select! {
        r = tokio::signal::ctrl_c() => { r?; tracing::info!("Ctrl-C: stopping"); None }
        _ = term.recv() => { tracing::info!("terminated: stopping"); None }
        () = stop.cancelled() => None,
        what = node.fatal() => Some(what),
    };
    node.shutdown().await;
    match fatal {
        Some(what) => bail!("{what}; the node stopped"),
        None => Ok(()),
    }
}

/// Logs, once, the addresses others can dial this node at (as soon as it listens).
fn log_dialable(node: &Node) {
    let n = node.clone();
    tokio::spawn(async move {
        for _ in 0..50 {
            if let Ok(s) = n.status().await
                && !s.dialable.is_empty()
            {
                for a in &s.dialable {
                    tracing::info!(addr = %a, "others can dial this node at");
                }
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,libp2p_mdns=warn,libp2p_swarm=warn,libp2p_kad=error",
        )
    });
    // Colours only for a terminal: a log file or a journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Lines go to stderr, and to the web UI's logs page.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi),
        )
        .with(kith_node::logs::layer())
        .try_init();
}
