//! One function per command that talks to the running node.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kith_api as api;
use kith_node::Home;
use serde::Serialize;

use crate::out::print_json;
use crate::units;
use futures::StreamExt;
use kith_api::Client;

/// What `kith init --json` prints.
#[derive(Serialize)]
struct Initialised<'a> {
    peer_id: String,
    home: &'a Path,
    created: bool,
}

/// What `kith id --json` prints.
#[derive(Serialize)]
struct Id {
    peer_id: String,
}

/// A search or resolve timeout in seconds, as milliseconds.
pub fn secs_to_ms(s: f64) -> Result<u64> {
    if !s.is_finite() || s <= 0.0 || s > 3600.0 {
        bail!("--timeout must be more than 0 and at most 3600 seconds (fractions allowed: 0.5)");
    }
    Ok((s * 1000.0) as u64)
}

fn check_id(id: &str) -> Result<()> {
    id.parse::<kith_core::ContentId>()
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// A path as the node (which may run elsewhere on this machine) needs it: absolute.
pub fn absolute(p: &Path) -> Result<String> {
    let abs = std::path::absolute(p).with_context(|| format!("{}", p.display()))?;
    Ok(abs.to_string_lossy().into_owned())
}

/// A path the user gave, made absolute; it must exist.
fn existing(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
    if !abs.exists() {
        bail!("{}: no such file or folder", path.display());
    }
    Ok(abs)
}

pub fn init(home: &Home, json: bool) -> Result<()> {
    let created = home.init()?;
    let peer = home.keypair()?.public().to_peer_id();
    if json {
        print_json(&Initialised {
            peer_id: peer.to_string(),
            home: home.dir(),
            created,
        });
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

pub async fn id(c: &Client, json: bool) -> Result<()> {
    let s = c.status().await?;
    if json {
        print_json(&Id { peer_id: s.peer_id });
    } else {
        println!("{}", s.peer_id);
    }
    Ok(())
}

pub async fn status(c: &Client, json: bool) -> Result<()> {
    let s = c.status().await?;
    if json {
        print_json(&s);
        return Ok(());
    }
    println!("running   kith {}", s.version);
    println!("peer id   {}", s.peer_id);
    println!("api       {}", c.base());
    let serving = if s.relay_server {
        " (serving as a relay)"
    } else {
        ""
    };
    println!("reach     {}{serving}", s.reachability);
    println!("dht       {}", s.dht);
    for a in &s.listen_addrs {
        println!("listen    {a}");
    }
    for a in &s.external_addrs {
        println!("external  {a}");
    }
    for a in &s.dialable {
        println!("dial      {a}");
    }
    for r in &s.relays {
        println!("relay     {} ({})", r.addr, r.state);
    }
    for c in &s.connections {
        println!(
            "conn      {}  {} {}  {}",
            c.peer_id, c.path, c.transport, c.addr
        );
    }
    println!(
        "peers     {} connected, {} in routing table",
        s.peers, s.routing_table_peers
    );
    println!("shares    {} (announcing {})", s.shares, s.providing);
    let w = &s.word_index;
    println!(
        "words     {} published{}; keeping {} records for others ({})",
        w.published,
        if w.unplaced > 0 {
            format!(" ({} not placed yet)", w.unplaced)
        } else {
            String::new()
        },
        w.records,
        crate::units::human(w.bytes as u64)
    );
    println!("downloads {} running", s.downloads);
    Ok(())
}

pub async fn connect(c: &Client, addr: &str, json: bool) -> Result<()> {
    let req = api::ConnectRequest {
        addr: addr.to_owned(),
    };
    let conns = c.connect(&req).await?;
    if json {
        print_json(&conns);
    } else {
        println!("connected ({} connection(s) open)", conns.len());
    }
    Ok(())
}

pub async fn peers(c: &Client, json: bool) -> Result<()> {
    let list = c.peers().await?;
    if json {
        print_json(&list);
        return Ok(());
    }
    if list.is_empty() {
        println!("no peers connected");
    }
    for x in list {
        println!("{}  {}  {}  {}", x.peer_id, x.path, x.transport, x.addr);
    }
    Ok(())
}

pub async fn share(
    c: &Client,
    path: &Path,
    group: Option<String>,
    public: bool,
    ticket: bool,
    json: bool,
) -> Result<()> {
    let abs = existing(path)?;
    let asked_group = group.is_some();
    let req = api::ShareRequest {
        path: abs.display().to_string(),
        group,
        public,
    };
    let s = c.share(&req).await?;
    match &s.group {
        Some(g) if !asked_group => eprintln!(
            "shared with group {g} only: it came to this node in that group (--public shares it with everyone)"
        ),
        None if public => {
            eprintln!("shared publicly: anyone can search for it and fetch it from here")
        }
        _ => {}
    }
    let ticket = if ticket {
        let t = c.ticket(&s.id).await?;
        Some(t.ticket)
    } else {
        None
    };
    if json {
        let mut v = serde_json::to_value(&s)?;
        if let (Some(t), Some(o)) = (&ticket, v.as_object_mut()) {
            o.insert("ticket".into(), t.clone().into());
        }
        print_json(&v);
    } else {
        println!("{}", s.id);
        if let Some(t) = ticket {
            println!("{t}");
            eprintln!("give the ticket to anyone: kith get TICKET fetches it from here first");
        }
    }
    Ok(())
}

pub async fn ls(c: &Client, json: bool) -> Result<()> {
    let list = c.shares().await?;
    if json {
        print_json(&list);
        return Ok(());
    }
    if list.is_empty() {
        println!("nothing shared yet (kith share PATH)");
    }
    for s in list {
        let group = s
            .group
            .as_deref()
            .map(|g| format!("  [group {g}]"))
            .unwrap_or_default();
        println!("{}  {:>10}  {}{group}", s.id, units::human(s.size), s.path);
    }
    Ok(())
}

pub async fn unshare(c: &Client, id: &str, json: bool) -> Result<()> {
    check_id(id)?;
    let s = c.unshare(id).await?;
    if json {
        print_json(&s);
    } else {
        println!("unshared {id} ({})", s.path);
    }
    Ok(())
}

pub async fn publish(c: &Client, name: &str, path: &Path, public: bool, json: bool) -> Result<()> {
    let abs = existing(path)?;
    let req = api::PublishRequest {
        name: name.to_owned(),
        path: abs.display().to_string(),
        public,
    };
    let r = c.publish(&req).await?;
    if json {
        print_json(&r);
    } else {
        println!("published {} revision {} -> {}", r.name, r.revision, r.id);
    }
    Ok(())
}

pub async fn resolve(c: &Client, name: &str, timeout: f64, json: bool) -> Result<()> {
    let req = api::ResolveRequest {
        name: name.to_owned(),
        timeout_ms: Some(secs_to_ms(timeout)?),
    };
    let r = c.resolve(&req).await?;
    if json {
        print_json(&r);
    } else {
        println!("{} revision {} -> {}", r.name, r.revision, r.id);
    }
    Ok(())
}

/// `PEER_ID/name`: what `kith get` treats as a name rather than a content ID.
fn looks_like_name(s: &str) -> bool {
    s.split_once('/')
        .is_some_and(|(p, n)| p.parse::<kith_overlay::PeerId>().is_ok() && !n.is_empty())
}

pub async fn get(
    c: &Client,
    id: &str,
    output: Option<&Path>,
    timeout: Option<u64>,
    json: bool,
) -> Result<()> {
    if id.trim().starts_with(kith_core::ticket::PREFIX) {
        kith_core::ticket::Ticket::decode(id)?;
    } else if !looks_like_name(id) {
        check_id(id)?;
    }
    let mut req = api::DownloadRequest {
        id: id.to_owned(),
        timeout,
        ..Default::default()
    };
    match output {
        Some(o) => req.output = Some(std::path::absolute(o)?.display().to_string()),
        None => req.dir = Some(std::env::current_dir()?.display().to_string()),
    }
    crate::progress::follow(c, &req, json).await
}

pub async fn search(
    c: &Client,
    query: &[String],
    via: Option<String>,
    group: Option<String>,
    timeout: f64,
    limit: usize,
    json: bool,
) -> Result<()> {
    let req = api::SearchRequest {
        q: query.join(" "),
        via,
        timeout_ms: Some(secs_to_ms(timeout)?),
        limit: Some(limit),
        group,
    };
    let mut all: Vec<api::SearchResult> = Vec::new();
    let tty = crate::is_tty();
    let mut lines = c.search(&req).await?;
    while let Some(r) = lines.next().await {
        let r = r?;
        if json {
            print_json(&r);
        } else if tty && !all.iter().any(|x| x.id == r.id) {
            println!("  found {}  ({})", r.path, units::human(r.size));
        }
        match all.iter_mut().find(|x| x.id == r.id) {
            Some(x) => *x = r,
            None => all.push(r),
        }
    }
    if !json {
        print_results(&mut all);
    }
    Ok(())
}

/// The ranked list of results.
fn print_results(all: &mut [api::SearchResult]) {
    api::sort_results(all);
    if all.is_empty() {
        println!("no results");
    }
    for r in all.iter() {
        let named = match (&r.name_key, r.revision) {
            (Some(k), Some(rev)) => {
                let old = if r.outdated == Some(true) {
                    ", outdated"
                } else {
                    ""
                };
                format!("  [{k} rev {rev}{old}]")
            }
            _ => String::new(),
        };
        let n = r.providers.len();
        println!(
            "{}  {:>10}  {n} peer{}  {}{named}",
            r.id,
            units::human(r.size),
            if n == 1 { "" } else { "s" },
            r.path
        );
    }
}
