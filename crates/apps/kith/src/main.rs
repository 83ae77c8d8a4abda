//! `kith`: the command-line front end. `init` and `up` work on the data dir directly; every
//! other command talks to the running node through its local HTTP API.

mod client;
mod units;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use kith_node::{Home, Node, Options};
use serde_json::Value;

use crate::client::Client;

#[derive(Parser, Debug)]
#[command(
    name = "kith",
    version,
    about = "kith: a peer-to-peer computing platform. Share and fetch content by ID, with no server anywhere."
)]
struct Cli {
    /// Data directory (key, config, database). Default: the platform data dir.
    #[arg(long, global = true, env = "KITH_HOME")]
    home: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Debug, Default)]
struct UpArgs {
    /// Multiaddr to listen on (repeatable), e.g. /ip4/0.0.0.0/tcp/4001.
    #[arg(long, env = "KITH_LISTEN", value_delimiter = ',')]
    listen: Vec<String>,
    /// Multiaddr of a peer to join through (repeatable), e.g. /ip4/1.2.3.4/tcp/4001/p2p/12D3…
    #[arg(long, env = "KITH_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// Address of the local HTTP API (default 127.0.0.1 on a free port).
    #[arg(long, env = "KITH_API")]
    api: Option<String>,
    /// Do not look for peers on the local network.
    #[arg(long)]
    no_mdns: bool,
    /// Upload cap, bytes per second (suffixes k, M, G, Ki, Mi, Gi).
    #[arg(long, env = "KITH_UPLOAD_LIMIT", value_parser = units::parse_rate)]
    upload_limit: Option<u64>,
    /// Download cap, bytes per second.
    #[arg(long, env = "KITH_DOWNLOAD_LIMIT", value_parser = units::parse_rate)]
    download_limit: Option<u64>,
    /// Register this node's catalogue with a broker (multiaddr ending in /p2p/PEER_ID).
    #[arg(long, env = "KITH_BROKER")]
    broker: Option<String>,
    /// Seconds a broker keeps the entries of a peer it no longer hears from (broker only).
    #[arg(long, env = "KITH_BROKER_TTL")]
    broker_ttl: Option<u64>,
    /// Serve as a circuit relay for peers behind NATs (a broker does by default).
    #[arg(long, conflicts_with = "no_relay")]
    relay: bool,
    /// Do not serve as a relay (not even as a broker).
    #[arg(long)]
    no_relay: bool,
    /// Relay to reserve a slot on while not publicly reachable (repeatable; multiaddr
    /// ending in /p2p/PEER_ID). The broker is used as one too.
    #[arg(long = "use-relay", env = "KITH_RELAYS", value_delimiter = ',')]
    use_relay: Vec<String>,
    /// Relay limit: bytes per circuit (suffixes k, M, G, Ki, Mi, Gi).
    #[arg(long, value_parser = units::parse_rate)]
    relay_circuit_bytes: Option<u64>,
    /// Relay limit: seconds per circuit.
    #[arg(long)]
    relay_circuit_secs: Option<u64>,
    /// Let AutoNAT test private and loopback addresses too (LANs and test networks).
    #[arg(long)]
    autonat_private_ips: bool,
    /// Address this node is reachable at, announced as is (repeatable; e.g. a relay's
    /// public address). Others are learned through AutoNAT.
    #[arg(long, env = "KITH_ANNOUNCE", value_delimiter = ',')]
    announce: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create the identity and config in the data dir.
    Init,
    /// Run the node in the foreground (Ctrl-C stops it).
    Up(UpArgs),
    /// Run a broker: a node that also keeps a directory of registered peers' catalogues.
    Broker(UpArgs),
    /// Show this node's peer ID.
    Id,
    /// Show whether the node is running, its addresses and connections.
    Status,
    /// List connected peers.
    Peers,
    /// Share a file or folder (in place, nothing is copied); prints its content ID.
    Share { path: PathBuf },
    /// List what this node shares.
    Ls,
    /// Search across peers; results stream in as peers answer.
    Search {
        /// Words (all must match), "quoted phrases", prefix*.
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
        /// broker, network, both or flood (default: both with a broker, else network).
        #[arg(long)]
        via: Option<String>,
        /// Seconds to wait for answers (default 5).
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
        /// Most results.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Publish PATH as the next revision of NAME (signed by this node's key).
    Publish { name: String, path: PathBuf },
    /// Show the newest revision of NAME (PEER_ID/name, or a name of this node).
    Resolve {
        name: String,
        /// Seconds to ask the DHT (default 5).
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Fetch content by ID (or the newest revision of a name) from whoever has it.
    Get {
        /// Content ID, or a name (PEER_ID/name).
        id: String,
        /// Where to write it (default: ./NAME).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Seconds to wait for a provider before giving up (default 60); also how long a
        /// download stays paused when every provider has gone, before it fails.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Stop sharing content.
    Unshare { id: String },
}

fn home(cli: &Cli) -> Result<Home> {
    if let Some(h) = &cli.home {
        return Ok(Home::new(h));
    }
    let dirs = directories::ProjectDirs::from("", "", "kith")
        .context("cannot find a data dir; pass --home or set KITH_HOME")?;
    Ok(Home::new(dirs.data_dir()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

async fn run(cli: Cli) -> Result<()> {
    let home = home(&cli)?;
    match &cli.command {
        Cmd::Init => {
            let created = home.init()?;
            let peer = home.keypair()?.public().to_peer_id();
            if cli.json {
                print_json(
                    &serde_json::json!({ "peer_id": peer.to_string(), "home": home.dir(), "created": created }),
                );
            } else if created {
                println!("initialised {} (peer {peer})", home.dir().display());
            } else {
                println!(
                    "already initialised: {} (peer {peer})",
                    home.dir().display()
                );
            }
            Ok(())
        }
        Cmd::Up(args) => up(home, args, false).await,
        Cmd::Broker(args) => up(home, args, true).await,
        Cmd::Search {
            query,
            via,
            timeout,
            limit,
        } => {
            let c = Client::connect(&home)?;
            let mut body = serde_json::json!({
                "q": query.join(" "),
                "timeout_ms": secs_to_ms(*timeout)?,
                "limit": limit,
            });
            if let Some(v) = via {
                body["via"] = serde_json::json!(v);
            }
            client::search(&c, &body, cli.json).await
        }
        Cmd::Publish { name, path } => {
            let abs = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
            if !abs.exists() {
                bail!("{}: no such file or folder", path.display());
            }
            let c = Client::connect(&home)?;
            let r = c
                .post("/names", &serde_json::json!({ "name": name, "path": abs }))
                .await?;
            if cli.json {
                print_json(&r);
            } else {
                println!(
                    "published {} revision {} -> {}",
                    r["name"].as_str().unwrap_or_default(),
                    r["revision"],
                    r["id"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        Cmd::Resolve { name, timeout } => {
            let c = Client::connect(&home)?;
            let r = resolve(&c, name, *timeout).await?;
            if cli.json {
                print_json(&r);
            } else {
                println!(
                    "{} revision {} -> {}",
                    r["name"].as_str().unwrap_or_default(),
                    r["revision"],
                    r["id"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        Cmd::Id => {
            let c = Client::connect(&home)?;
            let s = c.get("/status").await?;
            if cli.json {
                print_json(&serde_json::json!({ "peer_id": s["peer_id"] }));
            } else {
                println!("{}", s["peer_id"].as_str().unwrap_or_default());
            }
            Ok(())
        }
        Cmd::Status => {
            let c = Client::connect(&home)?;
            let s = c.get("/status").await?;
            if cli.json {
                print_json(&s);
            } else {
                println!("running   kith {}", s["version"].as_str().unwrap_or("?"));
                println!("peer id   {}", s["peer_id"].as_str().unwrap_or_default());
                println!("api       {}", c.base());
                println!(
                    "reach     {}{}",
                    s["reachability"].as_str().unwrap_or("unknown"),
                    if s["relay_server"] == true {
                        " (serving as a relay)"
                    } else {
                        ""
                    }
                );
                println!("dht       {}", s["dht"].as_str().unwrap_or("unknown"));
                for a in s["listen_addrs"].as_array().into_iter().flatten() {
                    println!("listen    {}", a.as_str().unwrap_or_default());
                }
                for a in s["external_addrs"].as_array().into_iter().flatten() {
                    println!("external  {}", a.as_str().unwrap_or_default());
                }
                for r in s["relays"].as_array().into_iter().flatten() {
                    println!(
                        "relay     {} ({})",
                        r["addr"].as_str().unwrap_or_default(),
                        r["state"].as_str().unwrap_or_default()
                    );
                }
                for c in s["connections"].as_array().into_iter().flatten() {
                    println!(
                        "conn      {}  {} {}  {}",
                        c["peer_id"].as_str().unwrap_or_default(),
                        c["path"].as_str().unwrap_or_default(),
                        c["transport"].as_str().unwrap_or_default(),
                        c["addr"].as_str().unwrap_or_default()
                    );
                }
                println!(
                    "peers     {} connected, {} in routing table",
                    s["peers"], s["routing_table_peers"]
                );
                println!("shares    {} (announcing {})", s["shares"], s["providing"]);
                println!("downloads {} running", s["downloads"]);
            }
            Ok(())
        }
        Cmd::Peers => {
            let c = Client::connect(&home)?;
            let p = c.get("/peers").await?;
            if cli.json {
                print_json(&p);
            } else {
                let list = p.as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("no peers connected");
                }
                for x in list {
                    println!(
                        "{}  {}  {}  {}",
                        x["peer_id"].as_str().unwrap_or_default(),
                        x["path"].as_str().unwrap_or_default(),
                        x["transport"].as_str().unwrap_or_default(),
                        x["addr"].as_str().unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        Cmd::Share { path } => {
            let abs = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
            if !abs.exists() {
                bail!("{}: no such file or folder", path.display());
            }
            let c = Client::connect(&home)?;
            let s = c
                .post("/shares", &serde_json::json!({ "path": abs }))
                .await?;
            if cli.json {
                print_json(&s);
            } else {
                println!("{}", s["id"].as_str().unwrap_or_default());
            }
            Ok(())
        }
        Cmd::Ls => {
            let c = Client::connect(&home)?;
            let list = c.get("/shares").await?;
            if cli.json {
                print_json(&list);
            } else {
                let list = list.as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("nothing shared yet (kith share PATH)");
                }
                for s in list {
                    println!(
                        "{}  {:>10}  {}",
                        s["id"].as_str().unwrap_or_default(),
                        units::human(s["size"].as_u64().unwrap_or(0)),
                        s["path"].as_str().unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        Cmd::Unshare { id } => {
            check_id(id)?;
            let c = Client::connect(&home)?;
            let s = c.delete(&format!("/shares/{id}")).await?;
            if cli.json {
                print_json(&s);
            } else {
                println!(
                    "unshared {} ({})",
                    id,
                    s["path"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        Cmd::Get {
            id,
            output,
            timeout,
        } => {
            let c = Client::connect(&home)?;
            // Not a content ID: a name, fetched at its newest revision.
            let id = &if check_id(id).is_ok() {
                id.clone()
            } else if looks_like_name(id) {
                let r = resolve(&c, id, 5.0).await?;
                r["id"].as_str().unwrap_or_default().to_owned()
            } else {
                check_id(id)?;
                id.clone()
            };
            let mut body = match output {
                Some(o) => serde_json::json!({ "id": id, "output": std::path::absolute(o)? }),
                None => serde_json::json!({ "id": id, "dir": std::env::current_dir()? }),
            };
            if let Some(t) = timeout {
                body["timeout"] = serde_json::json!(t);
            }
            client::get(&c, &body, cli.json).await
        }
    }
}

fn secs_to_ms(s: f64) -> Result<u64> {
    if !s.is_finite() || s <= 0.0 || s > 3600.0 {
        bail!("--timeout must be more than 0 and at most 3600 seconds (fractions allowed: 0.5)");
    }
    Ok((s * 1000.0) as u64)
}

/// `PEER_ID/name`: what `kith get` treats as a name rather than a content ID.
fn looks_like_name(s: &str) -> bool {
    s.split_once('/')
        .is_some_and(|(p, n)| p.parse::<kith_overlay::PeerId>().is_ok() && !n.is_empty())
}

async fn resolve(c: &Client, name: &str, timeout: f64) -> Result<Value> {
    c.post(
        "/names/resolve",
        &serde_json::json!({ "name": name, "timeout_ms": secs_to_ms(timeout)? }),
    )
    .await
}

fn check_id(id: &str) -> Result<()> {
    id.parse::<kith_core::ContentId>()
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn up(home: Home, args: &UpArgs, broker: bool) -> Result<()> {
    init_tracing();
    home.init()?;
    let mut config = home.config()?;
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
    if broker {
        config.serve_broker = true;
    }
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
    if args.autonat_private_ips {
        config.autonat_private_ips = true;
    }
    config.announce.extend(args.announce.iter().cloned());
    let node = Node::start(Options::new(home, config)).await?;
    let stop = node.shutdown_token();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => { r?; tracing::info!("Ctrl-C: stopping"); }
        _ = term.recv() => tracing::info!("terminated: stopping"),
        () = stop.cancelled() => {}
    }
    node.shutdown().await;
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,libp2p_mdns=warn,libp2p_swarm=warn,libp2p_kad=error",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub(crate) fn is_tty() -> bool {
    std::io::stdout().is_terminal()
}
