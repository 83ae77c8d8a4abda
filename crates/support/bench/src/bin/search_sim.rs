//! Network search at 200, 1000 and 10,000 simulated nodes: kith's distributed word index,
//! and the keyword routing it replaces, beside Gnutella-style flooding, on the same
//! network and the same queries.
//!
//! The model (one process, no sockets):
//! - every node opens 4 links to random others (average degree 8), as Gnutella peers keep a
//!   handful of neighbours; one-way link latency is uniform in 10..60 ms per pair;
//! - every node shares 20 files whose names are 3 words drawn (Zipf, s = 1) from a
//!   2,000-word vocabulary; a query is 1 or 2 words of some existing file name, and a node
//!   matches when one of its names holds every word (kith's `Query::matches_name`);
//! - flooding: TTL 4, each node forwards to all its neighbours but the sender; duplicates
//!   are dropped on arrival but the message was still sent; answers travel back on the path;
//! - keyword routing (kith): every node announced the words of its names as provider
//!   records at the k = 20 nodes closest to the word's key; a query looks up each of its
//!   words with an iterative Kademlia lookup (alpha = 3, k = 20, 64-bit XOR space, routing
//!   tables of up to k nodes per bucket), at most 64 providers per key as kith's store
//!   keeps; it asks at most 64 providers directly: those holding every word as soon as
//!   the lookups show them, then the rest, those holding more of the words first.
//!
//! - word index (kith): each holder's record for a word (its names holding it) at 3 of the
//!   word's K closest nodes, ranked for the holder by rendezvous hashing, at most 2048
//!   holders per node and word; a query, for each word in parallel, is its own lookup:
//!   it goes to the K closest nodes the asker knows, all at once, each answering with the
//!   holders whose names match the whole query and the closer nodes it knows, until the
//!   K closest seen have all answered.
//!
//! Prints recall (matching nodes reached / all matching nodes), the same for rare queries
//! (at most 10 matching nodes), messages per query (for keyword routing: the DHT lookup
//! RPCs plus the direct asks; announcing is paid once per word when sharing, not per query),
//! and latency to the last matching answer, for both schemes.
//!
//! `target/release/search_sim [queries per size]`

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use kith_bench::{Rng, word};
use kith_search::query::Query;

const LINKS_PER_NODE: usize = 4;
const FILES_PER_NODE: usize = 20;
const VOCABULARY: usize = 2000;
const TTL: u32 = 4;
const K: usize = 20;
const ALPHA: usize = 3;
const MAX_PROVIDERS: usize = 256;
const MAX_ASKED: usize = 64;
/// Word index: how many of a word's closest nodes keep each holder's entry.
const REPLICAS: usize = 3;
/// Word index: most holders one node keeps for one word.
const CAP_PER_WORD: usize = 2048;
/// Queries with at most this many matching nodes count as rare.
const RARE: usize = 10;

struct Net {
    ids: Vec<u64>,
    links: Vec<Vec<usize>>,
    files: Vec<Vec<String>>,
    tables: Vec<Vec<Vec<usize>>>,
    /// word -> nodes storing its provider records, and the providers.
    providers: HashMap<String, (Vec<usize>, Vec<usize>)>,
    /// word -> the nodes its index is spread over, and the holders each keeps.
    index: HashMap<String, (Vec<usize>, Vec<Vec<usize>>)>,
    seed: u64,
}

impl Net {
    fn build(n: usize, rng: &mut Rng) -> Self {
        // Zipf(1) over the vocabulary.
        let weights: Vec<f64> = (1..=VOCABULARY).map(|r| 1.0 / r as f64).collect();
        let total: f64 = weights.iter().sum();
        let mut cdf = Vec::with_capacity(VOCABULARY);
        let mut acc = 0.0;
        for w in &weights {
            acc += w / total;
            cdf.push(acc);
        }
        let pick = |rng: &mut Rng| {
            let u = rng.unit();
            cdf.partition_point(|c| *c < u).min(VOCABULARY - 1)
        };
        let ids: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
        let mut links = vec![Vec::new(); n];
        for a in 0..n {
            for _ in 0..LINKS_PER_NODE {
                let b = rng.below(n);
                if b != a && !links[a].contains(&b) {
                    links[a].push(b);
                    links[b].push(a);
                }
            }
        }
        let files: Vec<Vec<String>> = (0..n)
            .map(|_| {
                (0..FILES_PER_NODE)
                    .map(|_| {
                        let w: Vec<String> = (0..3).map(|_| word(pick(rng))).collect();
                        format!("{}.txt", w.join(" "))
                    })
                    .collect()
            })
            .collect();
        // Routing tables: up to K random nodes per bucket.
        let mut tables = vec![vec![Vec::new(); 65]; n];
        for a in 0..n {
            let mut order: Vec<usize> = (0..n).filter(|b| *b != a).collect();
            for i in (1..order.len()).rev() {
                let j = rng.below(i + 1);
                order.swap(i, j);
            }
            for b in order {
                let bucket = (ids[a] ^ ids[b]).leading_zeros() as usize;
                if tables[a][bucket].len() < K {
                    tables[a][bucket].push(b);
                }
            }
        }
        let mut net = Self {
            ids,
            links,
            files,
            tables,
            providers: HashMap::new(),
            index: HashMap::new(),
            seed: rng.next_u64(),
        };
        // Announcements: each word's providers, stored at the K closest nodes to its key.
        let mut holders: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (node, names) in net.files.iter().enumerate() {
            let mut words: HashSet<String> = HashSet::new();
            for name in names {
                words.extend(kith_search::query::tokens(name).filter(|t| t.len() >= 2));
            }
            for w in words {
                holders.entry(w).or_default().push(node);
            }
        }
        for (w, mut h) in holders {
            let key = key_of(&w);
            let closest = net.true_closest(key);
            net.index
                .insert(w.clone(), spread(&net.ids, &closest, &h, key));
            h.truncate(MAX_PROVIDERS);
            net.providers.insert(w, (closest, h));
        }
        net
    }

    fn latency(&self, a: usize, b: usize) -> f64 {
        let (x, y) = (a.min(b) as u64, a.max(b) as u64);
        let mut r = Rng(self.seed ^ x.wrapping_mul(0x1000_0001) ^ y.rotate_left(32));
        10.0 + 50.0 * r.unit()
    }

    fn true_closest(&self, key: u64) -> Vec<usize> {
        let mut all: Vec<usize> = (0..self.ids.len()).collect();
        all.sort_by_key(|n| self.ids[*n] ^ key);
        all.truncate(K);
        all
    }

    fn closest_known(&self, node: usize, key: u64) -> Vec<usize> {
        let mut all: Vec<usize> = self.tables[node].iter().flatten().copied().collect();
        all.push(node);
        all.sort_by_key(|n| self.ids[*n] ^ key);
        all.truncate(K);
        all
    }

    /// Iterative Kademlia lookup (alpha at a time); returns (messages, time the first node
    /// in `stores` answered, time the lookup ended).
    fn lookup(&self, origin: usize, key: u64, stores: &[usize]) -> (usize, Option<f64>, f64) {
        let (messages, asked, end) = self.lookup_asking(origin, key, ALPHA);
        let hit = asked
            .iter()
            .find(|(n, _)| stores.contains(n))
            .map(|(_, t)| *t);
        (messages, hit, end)
    }

    /// Iterative lookup whose every request is also the query (each node answers with
    /// what it keeps and the closer nodes it knows), asking up to `alpha` nodes at once;
    /// returns (messages, the nodes asked in order with when each answered, when the
    /// lookup ended).
    fn lookup_asking(
        &self,
        origin: usize,
        key: u64,
        alpha: usize,
    ) -> (usize, Vec<(usize, f64)>, f64) {
        let mut short = self.closest_known(origin, key);
        let mut asked: Vec<(usize, f64)> = vec![(origin, 0.0)];
        let mut answered: HashSet<usize> = HashSet::from([origin]);
        let (mut messages, mut latency) = (0, 0.0);
        loop {
            let round: Vec<usize> = short
                .iter()
                .filter(|n| !answered.contains(n))
                .take(alpha)
                .copied()
                .collect();
            if round.is_empty() {
                break;
            }
            let mut rtt: f64 = 0.0;
            for &n in &round {
                messages += 1;
                let r = 2.0 * self.latency(origin, n);
                rtt = rtt.max(r);
                answered.insert(n);
                asked.push((n, latency + r));
                for m in self.closest_known(n, key) {
                    if !short.contains(&m) {
                        short.push(m);
                    }
                }
            }
            short.sort_by_key(|n| self.ids[*n] ^ key);
            short.truncate(K);
            latency += rtt;
        }
        (messages, asked, latency)
    }

    fn matches(&self, node: usize, q: &Query) -> bool {
        self.files[node].iter().any(|f| q.matches_name(f, ""))
    }
}

/// Where a word's index entries live: each holder's entry goes to the `REPLICAS` nodes of
/// the word's `K` closest that rank highest for that holder (rendezvous hashing), passing
/// over nodes that already keep `CAP_PER_WORD` holders of the word.
fn spread(
    ids: &[u64],
    closest: &[usize],
    holders: &[usize],
    key: u64,
) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut kept = vec![Vec::new(); closest.len()];
    for &h in holders {
        let mut order: Vec<usize> = (0..closest.len()).collect();
        order.sort_by_key(|&i| {
            let mut r = Rng(ids[closest[i]] ^ ids[h].rotate_left(17) ^ key);
            r.next_u64()
        });
        let mut placed = 0;
        for i in order {
            if placed == REPLICAS {
                break;
            }
            if kept[i].len() < CAP_PER_WORD {
                kept[i].push(h);
                placed += 1;
            }
        }
    }
    (closest.to_vec(), kept)
}

fn key_of(word: &str) -> u64 {
    let h = blake3::hash(format!("/kith/kw/{word}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_be_bytes(b)
}

#[derive(Default)]
struct Tally {
    rare: Vec<f64>,
    recall: Vec<f64>,
    messages: Vec<f64>,
    latency: Vec<f64>,
}

impl Tally {
    fn row(&mut self, nodes: usize, scheme: &str) {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let pct = |v: &mut Vec<f64>, p: f64| {
            v.sort_by(f64::total_cmp);
            v.get(((v.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "{nodes:>6}  {scheme:<16} {:>7.1}%  {:>11.1}%  {:>10.1}  {:>9.0}  {:>9.0}",
            100.0 * mean(&self.recall),
            100.0 * mean(&self.rare),
            mean(&self.messages),
            pct(&mut self.latency, 0.5),
            pct(&mut self.latency, 0.95),
        );
    }
}

fn flood(net: &Net, origin: usize, q: &Query, want: &HashSet<usize>) -> (f64, f64, f64) {
    // BFS by hops; arrival time along the first path a node is reached by.
    let mut seen: HashMap<usize, f64> = HashMap::from([(origin, 0.0)]);
    let mut queue = VecDeque::from([(origin, usize::MAX, 0u32, 0.0f64)]);
    let mut messages = 0usize;
    let mut last: f64 = 0.0;
    let mut found = 0usize;
    while let Some((node, from, hops, t)) = queue.pop_front() {
        if node != origin && net.matches(node, q) && want.contains(&node) {
            found += 1;
            last = last.max(2.0 * t);
        }
        if hops >= TTL {
            continue;
        }
        for &nb in &net.links[node] {
            if nb == from {
                continue;
            }
            messages += 1;
            let arrive = t + net.latency(node, nb);
            if let std::collections::hash_map::Entry::Vacant(e) = seen.entry(nb) {
                e.insert(arrive);
                queue.push_back((nb, node, hops + 1, arrive));
            }
        }
    }
    let recall = found as f64 / want.len().max(1) as f64;
    (recall, messages as f64, last)
}

/// kith's keyword routing: one lookup per word (in parallel). A peer that holds every word
/// is asked as soon as the lookups have shown it; when all lookups end, the rest, those
/// holding more of the words first; at most `MAX_ASKED` peers in all.
fn routed(net: &Net, origin: usize, q: &Query, want: &HashSet<usize>) -> (f64, f64, f64) {
    let words: Vec<String> = q.keywords().into_iter().take(4).collect();
    let mut messages = 0usize;
    let mut done: f64 = 0.0;
    // provider -> (words held, time the last of them became known)
    let mut held: HashMap<usize, (usize, f64)> = HashMap::new();
    for w in &words {
        let Some((stored_at, provs)) = net.providers.get(w) else {
            continue;
        };
        let (m, hit, end) = net.lookup(origin, key_of(w), stored_at);
        messages += m;
        done = done.max(end);
        if let Some(t) = hit {
            for p in provs {
                let e = held.entry(*p).or_insert((0, 0.0));
                e.0 += 1;
                e.1 = e.1.max(t);
            }
        }
    }
    held.remove(&origin);
    // Asked at: when known for every word, or else when all lookups ended.
    let mut order: Vec<(f64, usize, usize)> = held
        .into_iter()
        .map(|(p, (n, t))| (if n == words.len() { t } else { done }, n, p))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    order.truncate(MAX_ASKED);
    let (mut found, mut last) = (0usize, 0.0f64);
    for (t, _, p) in order {
        messages += 1;
        if want.contains(&p) {
            found += 1;
            last = last.max(t + 2.0 * net.latency(origin, p));
        }
    }
    let recall = found as f64 / want.len().max(1) as f64;
    (recall, messages as f64, last)
}

/// kith's word index: for each query word (in parallel) a lookup of the word's key in
/// which every request is the query itself, `K` at a time; each of the word's nodes
/// answers with the holders whose names match every word of the query (it keeps their
/// names), and the closer nodes it knows.
fn indexed(net: &Net, origin: usize, q: &Query, want: &HashSet<usize>) -> (f64, f64, f64) {
    let words: Vec<String> = q.keywords().into_iter().take(4).collect();
    let mut messages = 0usize;
    // holder -> when the first answer naming it arrived
    let mut learned: HashMap<usize, f64> = HashMap::new();
    for w in &words {
        let Some((nodes, kept)) = net.index.get(w) else {
            continue;
        };
        let (m, asked, _) = net.lookup_asking(origin, key_of(w), K);
        let answered: HashMap<usize, f64> = asked.into_iter().collect();
        messages += m;
        for (node, holders) in nodes.iter().zip(kept) {
            let Some(t) = answered.get(node) else {
                continue;
            };
            for h in holders {
                if want.contains(h) {
                    let e = learned.entry(*h).or_insert(*t);
                    *e = e.min(*t);
                }
            }
        }
    }
    let last = learned.values().fold(0.0f64, |a, b| a.max(*b));
    let recall = learned.len() as f64 / want.len().max(1) as f64;
    (recall, messages as f64, last)
}

fn main() -> anyhow::Result<()> {
    kith_bench::check_args("search_sim [QUERIES_PER_SIZE [SIZES]]   (default 300 200,1000,10000)");
    let queries: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    println!(
        "network search, simulated: {queries} queries per size; links/node {LINKS_PER_NODE}, \
         files/node {FILES_PER_NODE}, vocabulary {VOCABULARY} (Zipf), flooding TTL {TTL}"
    );
    println!(
        "{:>6}  {:<16} {:>8}  {:>12}  {:>10}  {:>9}  {:>9}",
        "nodes", "scheme", "recall", "rare recall", "msgs/query", "p50 ms", "p95 ms"
    );
    let sizes: Vec<usize> = std::env::args()
        .nth(2)
        .map(|a| a.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![200, 1000, 10_000]);
    for n in sizes {
        let mut rng = Rng(42 + n as u64);
        let net = Net::build(n, &mut rng);
        let (mut f, mut k, mut x) = (Tally::default(), Tally::default(), Tally::default());
        for _ in 0..queries {
            let origin = rng.below(n);
            let holder = rng.below(n);
            let name = &net.files[holder][rng.below(FILES_PER_NODE)];
            let words: Vec<String> = kith_search::query::tokens(name)
                .filter(|t| t != "txt")
                .collect();
            let take = 1 + rng.below(2);
            let start = rng.below(words.len().saturating_sub(take - 1).max(1));
            let text = words
                .iter()
                .skip(start)
                .take(take)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
            let q = Query::parse(&text)?;
            let want: HashSet<usize> = (0..n)
                .filter(|m| *m != origin && net.matches(*m, &q))
                .collect();
            if want.is_empty() {
                continue;
            }
            let rare = want.len() <= RARE;
            let (r, m, l) = flood(&net, origin, &q, &want);
            if rare {
                f.rare.push(r);
            }
            f.recall.push(r);
            f.messages.push(m);
            f.latency.push(l);
            let (r, m, l) = routed(&net, origin, &q, &want);
            if rare {
                k.rare.push(r);
            }
            k.recall.push(r);
            k.messages.push(m);
            k.latency.push(l);
            let (r, m, l) = indexed(&net, origin, &q, &want);
            if rare {
                x.rare.push(r);
            }
            x.recall.push(r);
            x.messages.push(m);
            x.latency.push(l);
        }
        f.row(n, "flooding (TTL 4)");
        k.row(n, "keyword providers");
        x.row(n, "kith word index");
    }
    Ok(())
}
