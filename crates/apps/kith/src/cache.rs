//! `kith pin`, `kith unpin` and `kith cache status`.

use anyhow::Result;
use kith_api as api;

use crate::out::print_json;
use crate::units::human;
use crate::vault::when;
use kith_api::Client;

fn line(e: &api::CacheEntry) -> String {
    let why = match (&e.region, &e.source, e.demand) {
        (Some(r), Some(s), Some(d)) => format!("prefetched for {r}: {d} peer(s) there asked {s}"),
        _ => "pinned by you".to_owned(),
    };
    format!(
        "{}  {}  {}  {}{}  served {} (last {})  {}",
        e.id,
        e.name.as_deref().unwrap_or("-"),
        human(e.bytes),
        e.state,
        if e.pinned { ", pinned" } else { "" },
        e.served,
        when(e.last_served_ms / 1000),
        why
    )
}

pub async fn pin(c: &Client, id: &str, pin: bool, json: bool) -> Result<()> {
    let e: api::CacheEntry = if pin {
        let req = api::PinRequest { id: id.to_owned() };
        c.pin(&req).await?
    } else {
        c.unpin(id).await?
    };
    if json {
        print_json(&e);
    } else if pin {
        println!("pinned {} ({}): kept on this node", e.id, e.state);
    } else {
        println!(
            "unpinned {}: it may be evicted when the cache is full",
            e.id
        );
    }
    Ok(())
}

pub async fn status(c: &Client, json: bool) -> Result<()> {
    let s = c.cache().await?;
    if json {
        print_json(&s);
        return Ok(());
    }
    println!(
        "cache {} of {} used ({} pinned)  regions: {}",
        human(s.used),
        human(s.capacity),
        human(s.pinned_bytes),
        if s.regions.is_empty() {
            "none known".to_owned()
        } else {
            s.regions.join(", ")
        }
    );
    if s.entries.is_empty() {
        println!(
            "nothing cached (start with --cache SIZE to cache for readers near you; kith pin ID keeps content here)"
        );
    }
    for e in &s.entries {
        println!("  {}", line(e));
    }
    for d in &s.demand {
        println!(
            "  asked of me: {} by {} peer(s) of {}",
            d.id, d.peers, d.region
        );
    }
    for h in &s.hints {
        println!(
            "  hint: {} for {} ({} peer(s)) -> {} : {}",
            h.id,
            h.region,
            h.demand,
            h.node.as_deref().unwrap_or("no cache node"),
            h.answer
        );
    }
    Ok(())
}
