//! Edge caching through real `kith` processes. Loopback addresses stand for networks: the
//! source is in 127.0.2.0/24, far from a LAN in 127.0.1.0/24 with a cache node and two
//! readers (every node listens on QUIC at its own address, so peers see where it is).
//! The first reader's download makes the source ask the LAN's cache node to fetch the
//! content ahead; the second reader then fetches it from the cache, not the source.
//! Pins keep content; a node's own share cannot be pinned; bad IDs get one error line.

use std::path::Path;

use kith_testkit::{Result, data, metric};
use serde_json::Value;

mod common;
use common::*;

fn quic(ip: &str) -> String {
    format!("/ip4/{ip}/udp/0/quic-v1")
}

fn peer_id(home: &Path) -> Result<String> {
    Ok(ok(home, &["id"])?["peer_id"]
        .as_str()
        .ok_or("no peer id")?
        .to_owned())
}

/// The cache entry for `id` on `home`, once `check` holds for it.
fn entry_when(home: &Path, id: &str, check: impl Fn(&Value) -> bool) -> Result<Value> {
    until(&format!("a cache entry for {id}"), || {
        let s = ok(home, &["cache", "status"])?;
        let found = s["entries"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["id"] == id).cloned());
        Ok(found.filter(|e| check(e)))
    })
}

#[test]
fn a_second_reader_on_the_lan_fetches_from_the_cache_not_the_distant_source() -> Result<()> {
    let t = tmp()?;
    let root = t.path();
    let (hs, hc, h1, h2) = (
        root.join("source"),
        root.join("cache"),
        root.join("reader1"),
        root.join("reader2"),
    );
    // One reader's download is demand enough in this test (3 by default).
    let _s = up_at(&hs, &quic("127.0.2.1"), &["--cache-demand", "1"])?;
    let boot = addr_of(&hs)?;
    let _c = up_at(
        &hc,
        &quic("127.0.1.10"),
        &["--cache", "64M", "--bootstrap", &boot],
    )?;
    let file = root.join("talk.mp4");
    let bytes = data(6 << 20, 31);
    std::fs::write(&file, &bytes)?;
    let shared = ok(&hs, &["share", file.to_str().ok_or("path")?])?;
    let id = shared["id"].as_str().ok_or("no id")?.to_owned();
    let (source, cache) = (peer_id(&hs)?, peer_id(&hc)?);

    // The first reader fetches it from the source (nothing else has it yet).
    let r1 = up_at(&h1, &quic("127.0.1.2"), &["--bootstrap", &boot])?;
    let out1 = root.join("one.mp4");
    let got1 = ok(&h1, &["get", &id, "-o", out1.to_str().ok_or("path")?])?;
    assert_eq!(got1["providers"], serde_json::json!([source]), "{got1}");

    // The source saw its LAN ask and asked the LAN's cache node, which fetched it ahead.
    let e = entry_when(&hc, &id, |e| e["state"] == "ready")?;
    assert_eq!(e["why"], "prefetch", "{e}");
    assert_eq!(e["region"], "127.0.1.0/24", "{e}");
    assert_eq!(e["source"], source.as_str(), "{e}");
    assert_eq!(e["bytes"], bytes.len() as u64, "{e}");
    assert!(!e["pinned"].as_bool().unwrap_or(true), "{e}");
    let s = ok(&hs, &["cache", "status"])?;
    let hint = &s["hints"][0];
    assert_eq!(hint["node"], cache.as_str(), "{s}");
    assert_eq!(hint["region"], "127.0.1.0/24", "{s}");
    assert_eq!(hint["answer"], "accepted", "{s}");
    let c = ok(&hc, &["cache", "status"])?;
    assert!(
        c["regions"]
            .as_array()
            .is_some_and(|r| r.contains(&"127.0.1.0/24".into())),
        "{c}"
    );
    assert_eq!(c["used"], bytes.len() as u64, "{c}");

    // The first reader leaves; the second, on the same LAN, gets it from the cache: the
    // distant source sends it at most the manifest (a few hundred bytes).
    drop(r1);
    let _r2 = up_at(&h2, &quic("127.0.1.3"), &["--bootstrap", &boot])?;
    let sent = |h: &Path| metric(&metrics(h).unwrap_or_default(), "kith_share_sent_bytes");
    let (source_before, cache_before) = (sent(&hs), sent(&hc));
    let out2 = root.join("two.mp4");
    let got2 = ok(&h2, &["get", &id, "-o", out2.to_str().ok_or("path")?])?;
    assert_eq!(std::fs::read(&out2)?, bytes);
    let from_source = sent(&hs).saturating_sub(source_before);
    let from_cache = sent(&hc).saturating_sub(cache_before);
    assert!(
        from_source < 64 << 10,
        "the source sent {from_source} bytes: {got2}"
    );
    assert!(
        from_cache >= bytes.len() as u64,
        "the cache sent {from_cache} bytes: {got2}"
    );
    let providers = got2["providers"].as_array().cloned().unwrap_or_default();
    assert!(providers.contains(&cache.as_str().into()), "{got2}");
    let served = entry_when(&hc, &id, |e| e["served"].as_u64().unwrap_or(0) >= 1)?;
    assert!(served["last_served_ms"].as_u64() >= e["last_served_ms"].as_u64());

    // Pins: the cached copy is pinned in place; the reader's own copy cannot be pinned.
    let pinned = ok(&hc, &["pin", &id])?;
    assert_eq!(pinned["pinned"], true, "{pinned}");
    let own = fails(&h2, &["pin", &id])?;
    assert!(own.contains("own share"), "{own}");
    let bad = fails(&hc, &["pin", "not-an-id"])?;
    assert!(bad.contains("bad content ID"), "{bad}");
    let none = fails(&hs, &["unpin", &id])?;
    assert!(none.contains("not in the cache"), "{none}");
    Ok(())
}

#[test]
fn pins_are_kept_beyond_the_cache_size_and_unpinned_content_is_evicted() -> Result<()> {
    let t = tmp()?;
    let root = t.path();
    let (hs, hk) = (root.join("source"), root.join("keeper"));
    let _s = up(&hs, &[])?;
    let boot = addr_of(&hs)?;
    // A cache of 1 MiB: two 2 MiB pins are kept beyond it.
    let _k = up(&hk, &["--cache", "1M", "--bootstrap", &boot])?;
    let mut ids = Vec::new();
    for (i, name) in ["a.bin", "b.bin"].iter().enumerate() {
        let f = root.join(name);
        std::fs::write(&f, data(2 << 20, 40 + i as u64))?;
        let v = ok(&hs, &["share", f.to_str().ok_or("path")?])?;
        ids.push(v["id"].as_str().ok_or("no id")?.to_owned());
    }
    for id in &ids {
        let p = ok(&hk, &["pin", id])?;
        assert_eq!(p["pinned"], true, "{p}");
        entry_when(&hk, id, |e| e["state"] == "ready" && e["why"] == "pinned")?;
    }
    let s = ok(&hk, &["cache", "status"])?;
    assert_eq!(s["pinned_bytes"], 4u64 << 20, "{s}");
    assert_eq!(s["entries"].as_array().map(Vec::len), Some(2), "{s}");
    // Kept and provided: the source drops its copy and a third node still gets it.
    let (first, second) = (ids.first().ok_or("no id")?, ids.get(1).ok_or("no id")?);
    ok(&hs, &["unshare", first])?;
    let hr = root.join("reader");
    let _r = up(&hr, &["--bootstrap", &boot])?;
    let out = root.join("a.out");
    let got = ok(&hr, &["get", first, "-o", out.to_str().ok_or("path")?])?;
    assert_eq!(
        got["providers"],
        serde_json::json!([peer_id(&hk)?]),
        "{got}"
    );
    // Unpinned, content over the cache's size is evicted (files and all); the pin stays.
    ok(&hk, &["unpin", second])?;
    let s = ok(&hk, &["cache", "status"])?;
    let left: Vec<&Value> = s["entries"]
        .as_array()
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    assert_eq!(left.len(), 1, "{s}");
    assert_eq!(
        left.first().map(|e| &e["id"]),
        Some(&Value::from(first.as_str())),
        "{s}"
    );
    assert!(!hk.join("cache").join("data").join(second).exists());
    assert!(hk.join("cache").join("data").join(first).exists());
    Ok(())
}
