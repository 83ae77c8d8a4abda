//! The vault's events, in process: a put is told as `Stored` with the object's ID, and a
//! remove as `Removed`, to whoever subscribed before.

use std::time::Duration;

use kith_api as api;
use kith_testkit::{Result, TestNode, bounded, data, eventually};
use kith_vault::Event;
use tokio::sync::broadcast;

const LIMIT: Duration = Duration::from_secs(120);

/// The next event `pick` keeps, within a few seconds.
async fn next<T>(
    rx: &mut broadcast::Receiver<Event>,
    pick: impl Fn(&Event) -> Option<T>,
) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Some(t) = pick(&e) {
                        return Ok(t);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_and_a_remove_are_told_as_events() -> Result<()> {
    bounded(LIMIT, async {
        let mut holders = Vec::new();
        let mut addrs: Vec<String> = Vec::new();
        for _ in 0..3 {
            let first = addrs.first().cloned();
            let h = TestNode::start(move |o| {
                o.vault.offer = 64 << 20;
                o.config.bootstrap = first.into_iter().collect();
            })
            .await?;
            addrs.push(h.addr().await?);
            holders.push(h);
        }
        let owner = TestNode::start(|o| o.config.bootstrap = addrs.clone()).await?;
        eventually(Duration::from_secs(30), "the holders connected", || async {
            let peers = owner.client().peers().await.ok()?;
            (peers.len() >= 3).then_some(())
        })
        .await?;
        let mut events = owner.node.vault_service().events();
        let file = owner.dir.path().join("doc.bin");
        std::fs::write(&file, data(200_000, 3))?;
        let req = api::VaultPut {
            path: file.to_string_lossy().into_owned(),
            name: Some("doc".into()),
            k: Some(1),
            n: Some(2),
            group: None,
        };
        let put = owner.node.vault_put(&req).await?;
        let stored = next(&mut events, |e| match e {
            Event::Stored { id, name } => Some((id.clone(), name.clone())),
            _ => None,
        })
        .await?;
        assert_eq!(stored, (put.id.clone(), "doc".to_owned()));
        owner.node.vault_remove(&put.id).await?;
        let removed = next(&mut events, |e| match e {
            Event::Removed { id, .. } => Some(id.clone()),
            _ => None,
        })
        .await?;
        assert_eq!(removed, put.id);
        drop(holders);
        Ok(())
    })
    .await
}
