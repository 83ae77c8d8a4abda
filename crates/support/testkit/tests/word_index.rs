//! The distributed word index on loopback, in one process: every holder of a word is
//! found through the index alone, two-word queries narrow to the right holder, removed
//! shares leave the index, and the nodes keep what they store within bounds.

use std::collections::HashSet;
use std::time::Duration;

use kith_testkit::{Result, TestNode, bounded, eventually};

const LIMIT: Duration = Duration::from_secs(200);
const NODES: usize = 16;

/// Other peers that hold a result of `q`, found through the word index only.
async fn holders(node: &TestNode, q: &str) -> Result<HashSet<String>> {
    let r = node.search(q, "index", 4000).await?;
    let me = node.peer_id();
    Ok(r.into_iter()
        .flat_map(|r| r.providers)
        .filter(|p| *p != me)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_holder_is_found_through_the_word_index() -> Result<()> {
    bounded(LIMIT, async {
        // A line: each node joins through the one before.
        let mut nodes: Vec<TestNode> = Vec::with_capacity(NODES);
        for _ in 0..NODES {
            let boot = match nodes.last() {
                Some(prev) => vec![prev.addr().await?],
                None => Vec::new(),
            };
            nodes.push(TestNode::start(move |o| o.config.bootstrap = boot).await?);
        }
        // Node i shares "river <unique word>.txt"; every third also "delta song.ogg".
        let mut ids = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let dir = n.dir.path().join("music");
            std::fs::create_dir_all(&dir)?;
            std::fs::write(
                dir.join(format!("river word{i}x.txt")),
                format!("river {i}"),
            )?;
            if i % 3 == 0 {
                std::fs::write(dir.join("delta song.ogg"), format!("song {i}"))?;
            }
            ids.push(n.share(&dir).await?);
        }
        // Every node placed every word once the network formed.
        for n in &nodes {
            eventually(Duration::from_secs(90), "words placed", || async {
                let w = n.client().status().await.ok()?.word_index;
                (w.published >= 3 && w.unplaced == 0).then_some(())
            })
            .await?;
        }
        let asker = &nodes[1];
        let everyone: HashSet<String> = nodes
            .iter()
            .filter(|n| n.peer_id() != asker.peer_id())
            .map(TestNode::peer_id)
            .collect();
        eventually(Duration::from_secs(60), "all holders of river", || async {
            (holders(asker, "river").await.ok()? == everyone).then_some(())
        })
        .await?;
        // Two words: only the node whose name has both.
        let seven = holders(asker, "river word7x").await?;
        assert_eq!(seven, HashSet::from([nodes[7].peer_id()]));
        let delta: HashSet<String> = (0..NODES)
            .filter(|i| i % 3 == 0 && *i != 1)
            .map(|i| nodes[i].peer_id())
            .collect();
        assert_eq!(holders(asker, "delta song").await?, delta);
        // Nothing indexed for a word nobody has.
        assert!(holders(asker, "nowhere").await?.is_empty());
        // Records are kept three times each. Words per node: river, wordNx, txt and the
        // folder's name (music), and delta, song, ogg on every third node.
        let mut kept = 0;
        for n in &nodes {
            kept += n.client().status().await?.word_index.records as u64;
        }
        let published: u64 = NODES as u64 * 4 + (NODES as u64).div_ceil(3) * 3;
        assert!(
            kept >= published * 2 && kept <= published * 3,
            "{kept} of {published}"
        );
        // A share removed leaves the index.
        let seven_id = ids[7].clone();
        nodes[7].node.unshare(&seven_id).await?;
        eventually(
            Duration::from_secs(60),
            "removed from the index",
            || async {
                holders(asker, "word7x")
                    .await
                    .ok()?
                    .is_empty()
                    .then_some(())
            },
        )
        .await?;
        for n in nodes {
            n.stop().await;
        }
        Ok(())
    })
    .await
}
