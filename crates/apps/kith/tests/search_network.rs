//! Network search at a hundred real `kith` processes on loopback: a random bootstrap
//! graph, Zipf-named files, two-word queries through the word index; recall must reach
//! 95 %. Ignored by default: a hundred debug-build daemons keep two cores busy on their
//! own. Run it with a release binary:
//!
//! ```sh
//! cargo build --release -p kith
//! KITH_TEST_BIN=target/release/kith cargo test -p kith --test search_network -- --ignored
//! ```

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use kith_testkit::Result;
use serde_json::Value;

const NODES: usize = 100;
const FILES_PER_NODE: usize = 10;
const VOCABULARY: usize = 300;
const QUERIES: usize = 40;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Zipf (s = 1) over `0..n`.
    fn zipf(&mut self, cdf: &[f64]) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        cdf.partition_point(|c| *c < u).min(cdf.len() - 1)
    }
}

fn word(i: usize) -> String {
    const SYL: [&str; 8] = ["ka", "lo", "mi", "ren", "sa", "tu", "vo", "xe"];
    format!("{}{}{}", SYL[i % 8], SYL[(i / 8) % 8], SYL[(i / 64) % 8]) + &format!("{}", i / 512)
}

/// The other peers holding a result of `q`, as `node` finds them through the word index.
fn found(home: &std::path::Path, q: &str) -> Result<HashSet<String>> {
    let o = kith(
        home,
        &[
            "search",
            "--json",
            "--via",
            "index",
            "--timeout",
            "8",
            "--limit",
            "500",
            q,
        ],
    )?;
    if !o.status.success() {
        return Err(format!("search failed: {}", stderr(&o)).into());
    }
    let mut last: HashMap<String, Value> = HashMap::new();
    for l in stdout(&o).lines() {
        if let Ok(v) = serde_json::from_str::<Value>(l) {
            last.insert(v["id"].as_str().unwrap_or_default().to_owned(), v);
        }
    }
    Ok(last
        .values()
        .flat_map(|r| r["providers"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect())
}

/// Each node's file names: three words drawn Zipf(1) from the vocabulary, distinct
/// within a name and within a node.
fn zipf_names(rng: &mut Rng) -> Vec<Vec<Vec<String>>> {
    let weights: Vec<f64> = (1..=VOCABULARY).map(|r| 1.0 / r as f64).collect();
    let total: f64 = weights.iter().sum();
    let cdf: Vec<f64> = weights
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w / total;
            Some(*acc)
        })
        .collect();
    let mut names: Vec<Vec<Vec<String>>> = Vec::new();
    for _ in 0..NODES {
        let mut mine: Vec<Vec<String>> = Vec::new();
        while mine.len() < FILES_PER_NODE {
            let mut w: Vec<String> = Vec::new();
            while w.len() < 3 {
                let x = word(rng.zipf(&cdf));
                if !w.contains(&x) {
                    w.push(x);
                }
            }
            if !mine.contains(&w) {
                mine.push(w);
            }
        }
        names.push(mine);
    }
    names
}

#[test]
#[ignore = "a hundred processes: run with --ignored and KITH_TEST_BIN (see the top)"]
fn a_hundred_nodes_find_what_they_share_through_the_word_index() -> Result<()> {
    let dir = tmp()?;
    let mut rng = Rng(7);
    let names = zipf_names(&mut rng);
    // Start the nodes: each bootstraps through a random one already up.
    let mut homes: Vec<PathBuf> = Vec::new();
    let mut procs: Vec<Proc> = Vec::new();
    let mut addrs: Vec<String> = Vec::new();
    let mut peers: Vec<String> = Vec::new();
    for (i, mine) in names.iter().enumerate() {
        let home = dir.path().join(format!("n{i}"));
        let extra: Vec<String> = if addrs.is_empty() {
            Vec::new()
        } else {
            vec!["--bootstrap".into(), addrs[rng.below(addrs.len())].clone()]
        };
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        procs.push(up(&home, &extra)?);
        addrs.push(addr_of(&home)?);
        peers.push(
            ok(&home, &["status"])?["peer_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        let files = home.with_extension("files");
        std::fs::create_dir_all(&files)?;
        for (j, n) in mine.iter().enumerate() {
            std::fs::write(
                files.join(format!("{}.dat", n.join(" "))),
                format!("{i} {j}"),
            )?;
        }
        ok(&home, &["share", files.to_str().unwrap_or_default()])?;
        homes.push(home);
    }
    // Every node placed its words.
    for h in &homes {
        until_within(Duration::from_secs(300), "words placed", || {
            let s = ok(h, &["status"])?;
            let w = &s["word_index"];
            Ok((num(w, "published") > 0 && num(w, "unplaced") == 0).then_some(()))
        })?;
    }
    // Two-word queries taken from names that exist, asked from random nodes.
    let mut queries: Vec<(usize, String, HashSet<String>)> = Vec::new();
    for _ in 0..QUERIES {
        let asker = rng.below(NODES);
        let holder = rng.below(NODES);
        let name = &names[holder][rng.below(FILES_PER_NODE)];
        let (a, b) = (rng.below(3), rng.below(2));
        let pair = [
            name[a].clone(),
            name.iter()
                .filter(|w| **w != name[a])
                .nth(b)
                .cloned()
                .unwrap_or_default(),
        ];
        let truth: HashSet<String> = (0..NODES)
            .filter(|n| *n != asker)
            .filter(|n| names[*n].iter().any(|f| pair.iter().all(|w| f.contains(w))))
            .map(|n| peers[n].clone())
            .collect();
        queries.push((asker, pair.join(" "), truth));
    }
    // Recall over all queries; asked again while the index settles (records are placed
    // again as the network forms), for at most five minutes.
    let recall = until_within(Duration::from_secs(300), "recall of 95 %", || {
        let mut sum = 0.0;
        for (asker, q, truth) in &queries {
            let got = found(&homes[*asker], q)?;
            sum += truth.intersection(&got).count() as f64 / truth.len().max(1) as f64;
        }
        let recall = sum / queries.len() as f64;
        eprintln!("recall {:.1} %", 100.0 * recall);
        Ok((recall >= 0.95).then_some(recall))
    })?;
    eprintln!(
        "{NODES} nodes, {QUERIES} two-word queries: recall {:.1} %",
        100.0 * recall
    );
    drop(procs);
    Ok(())
}
