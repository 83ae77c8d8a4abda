//! Group content stays in its group on a member's node, whatever the member does with it:
//! a cache fill, a second and third download, a copy found by the rescan, folders shared
//! again that hold it, a name published from it or updated over it, a rebuild after a
//! damaged store, and the member's removal. After each, an outsider connected to the
//! member searches for it and asks for it, and finds and fetches nothing; the member's
//! share records of it all name the group. Only an explicit `--public` makes it public.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kith_api::{
    ConnectRequest, CreateGroup, InviteRequest, JoinGroup, Progress, PublishRequest, Share,
    ShareRequest,
};
use kith_testkit::{Result, TestNode, bounded, eventually};

const LIMIT: Duration = Duration::from_secs(300);
/// The word only the group's file holds.
const WORD: &str = "zanzibarplans";

/// Shares `path` from `n`: with `group`, or publicly on purpose when `public`.
async fn share(n: &TestNode, path: &Path, group: Option<&str>, public: bool) -> Result<Share> {
    let req = ShareRequest {
        path: path.display().to_string(),
        group: group.map(str::to_owned),
        public,
    };
    Ok(n.client().share(&req).await?)
}

/// Creates a group on `n`; its ID.
async fn create_group(n: &TestNode, name: &str) -> Result<String> {
    let req = CreateGroup {
        name: name.to_owned(),
        history: false,
    };
    Ok(n.client().create_group(&req).await?.group)
}

/// `from` dials `to`.
async fn connect(from: &TestNode, to: &TestNode) -> Result<()> {
    let addr = to.addr().await?;
    from.client().connect(&ConnectRequest { addr }).await?;
    Ok(())
}

/// A member of a new group "fam" of `a`'s (its options tweaked by `tweak`), and an
/// outsider connected to it that gives up a fetch after 3 s; and the group.
async fn member_and_outsider(
    a: &TestNode,
    tweak: impl FnOnce(&mut kith_node::Options) + Send + 'static,
) -> Result<(TestNode, TestNode, String)> {
    let boot = a.addr().await?;
    let b = boot.clone();
    let m = TestNode::start(move |o| {
        o.config.bootstrap = vec![b];
        tweak(o);
    })
    .await?;
    let o = TestNode::start(move |o| {
        o.config.bootstrap = vec![boot];
        o.share.patience = Duration::from_secs(3);
    })
    .await?;
    connect(&o, &m).await?;
    let group = create_group(a, "fam").await?;
    let invite = InviteRequest {
        uses: Some(1),
        ..Default::default()
    };
    let token = a.client().invite(&group, &invite).await?.token;
    m.client().join_group(&JoinGroup { token }).await?;
    Ok((m, o, group))
}

struct World {
    a: TestNode,
    m: TestNode,
    o: TestNode,
    group: String,
    /// The group's folder, as a shared it.
    id: String,
    tmp: tempfile::TempDir,
}

impl World {
    async fn start() -> Result<Self> {
        let a = TestNode::start(|_| {}).await?;
        let (m, o, group) = member_and_outsider(&a, |o| o.cache.capacity = 64 << 20).await?;
        let tmp = tempfile::tempdir_in(kith_testkit::scratch())?;
        let dir = tmp.path().join("plans");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("SECRET_plans.txt"),
            format!("{WORD}: the family's plans\n"),
        )?;
        std::fs::write(dir.join("budget.txt"), "the family's budget\n")?;
        let id = share(&a, &dir, Some(&group), false).await?.id;
        Ok(Self {
            a,
            m,
            o,
            group,
            id,
            tmp,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The member's shares: (content ID, group) each.
    async fn member_shares(&self) -> Result<Vec<(String, Option<String>)>> {
        let list = self.m.client().shares().await?;
        Ok(list.into_iter().map(|s| (s.id, s.group)).collect())
    }

    /// Every share of the member names the group, and it shares `ids` among them;
    /// then the outsider finds and fetches none of them.
    async fn nothing_leaks(&self, step: &str, ids: &[&str]) -> Result<()> {
        let shares = self.member_shares().await?;
        let public: Vec<_> = shares.iter().filter(|(_, g)| g.is_none()).collect();
        assert!(public.is_empty(), "{step}: public shares {public:?}");
        for (id, g) in &shares {
            assert_eq!(g.as_deref(), Some(self.group.as_str()), "{step}: {id}");
        }
        let shared: BTreeSet<&str> = shares.iter().map(|(id, _)| id.as_str()).collect();
        for id in ids {
            assert!(shared.contains(id), "{step}: {id} not shared: {shares:?}");
        }
        self.outsider_finds_nothing(step, ids).await
    }

    async fn outsider_finds_nothing(&self, step: &str, ids: &[&str]) -> Result<()> {
        let found = self.o.search(WORD, "network", 1500).await?;
        assert!(found.is_empty(), "{step}: the outsider found {found:?}");
        for id in ids {
            let out = self.path(&format!("outsider-{}", &id[id.len() - 8..]));
            let got = self.o.get(id, &out).await;
            let failed = match &got {
                Err(_) => true,
                Ok(p) => p.state != kith_api::ProgressState::Done,
            };
            assert!(failed, "{step}: the outsider fetched {id}: {got:?}");
            assert!(!out.exists(), "{step}: {} left behind", out.display());
        }
        Ok(())
    }

    /// The member fetches `id` to `out`; its final progress.
    async fn member_gets(&self, id: &str, out: &Path) -> Result<Progress> {
        let p = self.m.get(id, out).await?;
        assert_eq!(p.state, kith_api::ProgressState::Done, "{p:?}");
        Ok(p)
    }

    /// The member shares `path` (with `group`; publicly on purpose when `public`).
    async fn share(&self, path: &Path, group: Option<&str>, public: bool) -> Result<Share> {
        share(&self.m, path, group, public).await
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_content_never_becomes_public_on_a_members_node() -> Result<()> {
    bounded(LIMIT, async {
        let w = World::start().await?;
        let id = w.id.clone();

        // A cache fill (a pin) fetches it from the group's members.
        let pin = kith_api::PinRequest { id: id.clone() };
        let pinned = w.m.client().pin(&pin).await?;
        assert_eq!(pinned.id, id);
        eventually(Duration::from_secs(60), "the cache fill", || async {
            let c = w.m.client().cache().await.ok()?;
            let e = c.entries.into_iter().find(|e| e.id == id)?;
            (e.state == kith_api::CacheState::Ready).then_some(())
        })
        .await?;
        w.nothing_leaks("cache fill", &[&id]).await?;

        // A second and a third download (everything is here already).
        for out in ["x1", "x2", "x3"] {
            w.member_gets(&id, &w.path(out)).await?;
        }
        w.nothing_leaks("second and third download", &[&id]).await?;

        rescan_and_copies(&w).await?;
        names(&w).await?;
        rebuild(w).await
    })
    .await
}

/// An edited copy is re-shared by the rescan, other copies with it; copies made by hand
/// and shared again; a folder that mixes group content with other content.
async fn rescan_and_copies(w: &World) -> Result<()> {
    let secret = w.path("x2").join("SECRET_plans.txt");
    let mut t = std::fs::read_to_string(&secret)?;
    t.push_str("an edit by the member\n");
    std::fs::write(&secret, t)?;
    let re = w.m.node.share_service().rescan().await?;
    assert!(!re.is_empty(), "the rescan saw no change");
    for r in &re {
        assert_eq!(r.scope.as_deref(), Some(w.group.as_str()), "{r:?}");
    }
    w.nothing_leaks("rescan", &[&w.id]).await?;

    // A copy of one file under another name, and a copy of the whole folder.
    let single = w.path("copy-of-plans.txt");
    std::fs::copy(w.path("x1").join("SECRET_plans.txt"), &single)?;
    let s = w.share(&single, None, false).await?;
    assert_eq!(s.group.as_ref(), Some(&w.group), "{s:?}");
    let whole = w.path("whole-copy");
    copy_tree(&w.path("x1"), &whole)?;
    let s = w.share(&whole, None, false).await?;
    assert_eq!(s.group.as_ref(), Some(&w.group), "{s:?}");

    // A folder of the member's own that holds a copy: refused until the member chooses.
    let mixed = w.path("mine");
    std::fs::create_dir_all(&mixed)?;
    std::fs::write(mixed.join("own.txt"), "the member's own notes\n")?;
    std::fs::copy(single.clone(), mixed.join("plans.txt"))?;
    let e = w
        .share(&mixed, None, false)
        .await
        .err()
        .ok_or("mixed folder shared")?;
    assert!(e.to_string().contains("holds content of group"), "{e}");
    let other = create_group(&w.m, "other").await?;
    let e = w
        .share(&mixed, Some(&other), false)
        .await
        .err()
        .ok_or("shared with another group")?;
    assert!(e.to_string().contains("would show it"), "{e}");
    let s = w.share(&mixed, Some(&w.group), false).await?;
    assert_eq!(s.group.as_ref(), Some(&w.group));
    w.m.client().leave_group(&other).await?;
    let ids = [s.id.clone(), w.id.clone()];
    w.nothing_leaks("copies", &[&ids[0], &ids[1]]).await
}

/// A name is public: publishing group content is refused. A file of the group updated in
/// place from someone's name stays in the group.
async fn names(w: &World) -> Result<()> {
    let notes = PublishRequest {
        name: "notes".into(),
        path: w.path("copy-of-plans.txt").display().to_string(),
        public: false,
    };
    let e =
        w.m.client()
            .publish(&notes)
            .await
            .err()
            .ok_or("group content published")?;
    assert!(e.to_string().contains("came to this node in group"), "{e}");

    // a shares one file with the group, and publishes a name.
    let report = w.path("report.txt");
    std::fs::write(&report, format!("{WORD} report, first draft\n"))?;
    let rid = share(&w.a, &report, Some(&w.group), false).await?.id;
    let mine = w.path("m-report.txt");
    w.member_gets(&rid, &mine).await?;
    let public = w.path("public-report.txt");
    std::fs::write(&public, "a public report\n")?;
    let report = PublishRequest {
        name: "report".into(),
        path: public.display().to_string(),
        public: false,
    };
    w.a.client().publish(&report).await?;
    let name = format!("{}/report", w.a.peer_id());
    let last = w.m.get(&name, &mine).await?;
    assert_eq!(last.state, kith_api::ProgressState::Done, "{last:?}");
    assert_eq!(std::fs::read_to_string(&mine)?, "a public report\n");
    w.nothing_leaks("a name updated in place", &[&w.id]).await
}

/// The member's store is damaged and set aside: its shares come back under the IDs they
/// had, in the group. Then the member is removed: its copies stay the group's, announced
/// to nobody. An explicit `--public` is the one way out.
async fn rebuild(w: World) -> Result<()> {
    let before: BTreeSet<(String, Option<String>)> = w.member_shares().await?.into_iter().collect();
    let World {
        a,
        m,
        o,
        group,
        id,
        tmp,
    } = w;
    let dir = m.stop_keeping_data().await;
    let db = dir.path().join("meta.redb");
    let mut bytes = std::fs::read(&db)?;
    for b in bytes.iter_mut().skip(4096) {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes)?;
    let boot = a.addr().await?;
    let m = TestNode::start_in(dir, |o| o.config.bootstrap = vec![boot]).await?;
    connect(&o, &m).await?;
    let w = World {
        a,
        m,
        o,
        group,
        id,
        tmp,
    };
    let after = eventually(
        Duration::from_secs(60),
        "the shares to come back",
        || async {
            let now: BTreeSet<_> = w.member_shares().await.ok()?.into_iter().collect();
            (now.len() >= before.len()).then_some(now)
        },
    )
    .await?;
    assert_eq!(
        after, before,
        "shares come back under their IDs, in the group"
    );
    w.nothing_leaks("rebuild", &[&w.id]).await?;

    let person = w.m.client().person().await?.person;
    w.a.client().remove_member(&w.group, &person).await?;
    eventually(Duration::from_secs(60), "the member to leave", || async {
        let g = w.m.client().groups().await.ok()?;
        g.is_empty().then_some(())
    })
    .await?;
    let shares = w.member_shares().await?;
    assert!(
        shares
            .iter()
            .all(|(_, g)| g.as_deref() == Some(w.group.as_str()))
    );
    w.outsider_finds_nothing("removed", &[&w.id]).await?;
    let again = w.share(&w.path("whole-copy"), None, false).await;
    let e = again.err().ok_or("a removed member shared group content")?;
    assert!(e.to_string().contains("no longer in"), "{e}");

    // On purpose: public, and the outsider can now find it and fetch it.
    let s = w.share(&w.path("whole-copy"), None, true).await?;
    assert!(s.group.is_none() && s.public_on_purpose, "{s:?}");
    let member = w.m.peer_id();
    let found = eventually(Duration::from_secs(30), "the outsider's search", || async {
        let r = w.o.search(WORD, "network", 1500).await.ok()?;
        r.into_iter().find(|r| r.providers.contains(&member))
    })
    .await?;
    let got = w.o.get(&found.id, &w.path("outsider-public")).await?;
    assert_eq!(got.state, kith_api::ProgressState::Done, "{got:?}");
    Ok(())
}

/// While a member's first download of the group's content runs, the member serves none
/// of what has arrived to an outsider who asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_download_in_progress_serves_no_outsider() -> Result<()> {
    const SIZE: usize = 6_000_000;
    bounded(LIMIT, async {
        let a = TestNode::start(|o| o.share.upload_limit = 2_000_000).await?;
        let (m, o, group) = member_and_outsider(&a, |_| {}).await?;
        let file = a.dir.path().join("film.bin");
        std::fs::write(&file, kith_testkit::data(SIZE, 5))?;
        let id = share(&a, &file, Some(&group), false).await?.id;
        let out = m.dir.path().join("film.bin");
        let outsider = async {
            eventually(
                Duration::from_secs(30),
                "part of it at the member",
                || async {
                    let v = m.client().downloads().await.ok()?;
                    (v.first()?.done_bytes > 0).then_some(())
                },
            )
            .await?;
            o.get(&id, &o.dir.path().join("film.bin")).await
        };
        let (member, outsider) = tokio::join!(m.get(&id, &out), outsider);
        assert_eq!(member?.state, kith_api::ProgressState::Done);
        let p = outsider?;
        assert_eq!(p.state, kith_api::ProgressState::Failed, "{p:?}");
        assert_eq!(p.fetched_bytes, 0, "{p:?}");
        assert!(p.name.is_none(), "the outsider got the manifest: {p:?}");
        Ok(())
    })
    .await
}

/// The group's content fetched into a folder the member shares publicly: the outsider
/// gets the folder as it was, without it, and after the rescan finds none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_content_fetched_into_a_public_folder_stays_out_of_it() -> Result<()> {
    bounded(LIMIT, async {
        let w = World::start().await?;
        let public = w.path("public");
        std::fs::create_dir_all(&public)?;
        std::fs::write(public.join("own.txt"), "the member's own notes\n")?;
        let before = w.share(&public, None, false).await?.id;
        w.member_gets(&w.id, &public.join("plans")).await?;
        let public_of_member = || async {
            Ok::<_, kith_testkit::Error>(
                w.member_shares()
                    .await?
                    .into_iter()
                    .filter(|(_, g)| g.is_none())
                    .map(|(id, _)| id)
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(public_of_member().await?, std::slice::from_ref(&before));
        w.outsider_finds_nothing("fetched into a public folder", &[&w.id])
            .await?;
        let out = w.path("outsider-public");
        let got = w.o.get(&before, &out).await?;
        assert_eq!(got.state, kith_api::ProgressState::Done, "{got:?}");
        assert!(out.join("own.txt").exists() && !out.join("plans").exists());

        // The rescan sees the new folder in it, and no public share holds the group's
        // content afterwards: the mixed folder is not shared again as it is.
        w.m.node.share_service().rescan().await?;
        w.outsider_finds_nothing("rescan of the public folder", &[&w.id])
            .await?;
        for id in public_of_member().await? {
            assert_ne!(id, before, "the rescan saw no change");
            let out = w.path(&format!("outsider-{id}"));
            let got = w.o.get(&id, &out).await?;
            assert!(!out.join("plans").exists(), "{got:?}");
        }
        Ok(())
    })
    .await
}
