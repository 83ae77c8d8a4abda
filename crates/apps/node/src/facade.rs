//! The node as one facade over its services: everything the API and the CLI can do, and the
//! policy that spans services, callable from a Rust program directly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kith_api as api;
use kith_core::ContentId;
use kith_overlay::PeerId;
use kith_search::Via;
use kith_share::{Audience, Output};
use tokio::sync::{mpsc, watch};

use crate::convert;
use crate::{Node, NodeError};

/// How long a name is looked up before a download by name starts.
const RESOLVE_FOR_GET: Duration = Duration::from_secs(5);
/// Default wait for search answers and name lookups.
const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// What `get` fetches: content by ID, or the newest revision of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Id(ContentId),
    /// `PEER_ID/name`.
    Name(String),
    /// A content ID and addresses of a node that has it.
    Ticket(kith_core::ticket::Ticket),
}

impl std::str::FromStr for Target {
    type Err = NodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(id) = s.parse::<ContentId>() {
            return Ok(Target::Id(id));
        }
        if s.trim().starts_with(kith_core::ticket::PREFIX) {
            return kith_core::ticket::Ticket::decode(s)
                .map(Target::Ticket)
                .map_err(|e| NodeError::BadRequest(e.to_string()));
        }
        let named = s
            .split_once('/')
            .is_some_and(|(p, n)| p.parse::<PeerId>().is_ok() && !n.is_empty());
        if named {
            return Ok(Target::Name(s.to_owned()));
        }
        s.parse::<ContentId>()
            .map(Target::Id)
            .map_err(|e| NodeError::BadRequest(e.to_string()))
    }
}

/// A content ID as a user typed it.
pub(crate) fn content_id(id: &str) -> Result<ContentId, NodeError> {
    id.trim()
        .parse()
        .map_err(|e| NodeError::BadRequest(format!("bad content ID {id:?}: {e}")))
}

/// An absolute path that exists.
pub fn existing_path(s: &str) -> Result<PathBuf, NodeError> {
    let path = PathBuf::from(s);
    if !path.is_absolute() {
        return Err(NodeError::BadRequest("path must be absolute".into()));
    }
    if !path.exists() {
        return Err(NodeError::NotFound(format!("{s}: no such file or folder")));
    }
    Ok(path)
}

/// A client-given wait in milliseconds (default 5 s), kept within 0.1 s..2 min.
pub fn wait_ms(ms: Option<u64>) -> Duration {
    ms.map_or(DEFAULT_WAIT, Duration::from_millis)
        .clamp(Duration::from_millis(100), Duration::from_secs(120))
}

pub(crate) fn absolute(p: &str, what: &str) -> Result<PathBuf, NodeError> {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(NodeError::BadRequest(format!("{what} must be absolute")))
    }
}

impl Node {
    /// Is the node healthy, and how is it connected.
    pub async fn status(&self) -> Result<api::Status, NodeError> {
        let s = self.inner.overlay.status().await?;
        let shares = self.inner.share.list().await?.len();
        let downloads = self.inner.share.downloads().await?.len();
        let words = self.inner.search.word_index().await;
        Ok(convert::status(s, shares, downloads, words))
    }

    /// Dials a peer at a multiaddr ending in `/p2p/PEER_ID`.
    pub async fn connect(&self, addr: &str) -> Result<(), NodeError> {
        let a = kith_overlay::parse_addr(addr.trim())
            .map_err(|e| NodeError::BadRequest(format!("bad address {addr:?}: {e}")))?;
        if kith_overlay::peer_of(&a).is_none() {
            return Err(NodeError::BadRequest(format!(
                "{addr} names no peer: end it with /p2p/PEER_ID"
            )));
        }
        Ok(self.inner.overlay.dial(a).await?)
    }

    /// Open connections.
    pub async fn peers(&self) -> Result<Vec<api::Connection>, NodeError> {
        let s = self.inner.overlay.status().await?;
        Ok(s.connections.into_iter().map(convert::connection).collect())
    }

    pub async fn shares(&self) -> Result<Vec<api::Share>, NodeError> {
        let list = self.inner.share.list().await?;
        Ok(list.iter().map(convert::share).collect())
    }

    /// Shares an absolute path in place: publicly, or with one group (ID or name).
    /// Content that came to this node in a group stays in it unless `public` says
    /// otherwise.
    pub async fn share_path(
        &self,
        path: &str,
        group: Option<&str>,
        public: bool,
    ) -> Result<api::Share, NodeError> {
        let audience = match (self.group_id(group)?, public) {
            (Some(_), true) => {
                return Err(NodeError::BadRequest(
                    "a share is either public or for a group, not both".into(),
                ));
            }
            (Some(g), false) => Audience::Group(g),
            (None, true) => Audience::Public,
            (None, false) => Audience::Inherit,
        };
        let path = existing_path(path)?;
        let rec = self.inner.share.share(path, audience).await?;
        self.searchable().await;
        Ok(convert::share(&rec))
    }

    /// Brings the local search index up to date now (it also follows share events, a
    /// moment later): a search right after a share or a publish finds it.
    async fn searchable(&self) {
        if let Err(e) = self.inner.search.refresh().await {
            tracing::warn!(error = %e, "cannot update the search index");
        }
    }

    pub async fn unshare(&self, id: &str) -> Result<api::Share, NodeError> {
        let id = id
            .parse::<ContentId>()
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        Ok(convert::share(&self.inner.share.unshare(id).await?))
    }

    /// Pauses (`paused`) or resumes (`running`) a download; its progress after.
    pub async fn change_download(
        &self,
        id: &str,
        change: &api::DownloadChange,
    ) -> Result<api::Progress, NodeError> {
        let id = content_id(id)?;
        match change.state.as_str() {
            "paused" => self.inner.share.pause(id).await?,
            "running" => {
                self.inner.share.resume(id).await?;
            }
            other => {
                return Err(NodeError::BadRequest(format!(
                    "state must be paused or running, not {other:?}"
                )));
            }
        }
        self.download(id).await
    }

    async fn download(&self, id: ContentId) -> Result<api::Progress, NodeError> {
        self.inner
            .share
            .downloads()
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| NodeError::NotFound(format!("no download of {id}")))
    }

    /// Starts (or joins) a download of an ID or of a name's newest revision.
    pub async fn get(
        &self,
        req: &api::DownloadRequest,
    ) -> Result<watch::Receiver<kith_share::Progress>, NodeError> {
        let target = req.id.parse::<Target>()?;
        let by_name = matches!(target, Target::Name(_));
        let id = match target {
            Target::Id(id) => id,
            Target::Name(name) => {
                let r = self.inner.names.resolve(&name, RESOLVE_FOR_GET).await?;
                r.content_id().map_err(kith_names::Error::from)?
            }
            Target::Ticket(t) => {
                self.learn_ticket(&t).await;
                t.id
            }
        };
        let output = match (&req.output, &req.dir) {
            // The path to create: never a folder to put it in, so a download that is run
            // again after a crash continues into it rather than nesting a second copy.
            // A name fetched over a file that exists: its newest revision replaces it
            // (only the chunks that changed move).
            (Some(o), _) if by_name && Path::new(o).is_file() => {
                Output::Replace(absolute(o, "output")?)
            }
            (Some(o), _) => Output::Exact(absolute(o, "output")?),
            (None, Some(d)) => Output::Under(absolute(d, "dir")?),
            // The web UI's one-click fetch: into the data dir's downloads folder.
            (None, None) => Output::Under(self.home().dir().join("downloads")),
        };
        let patience = req.timeout.map(|s| Duration::from_secs(s.clamp(1, 86_400)));
        Ok(self.inner.share.get(id, output, patience).await?)
    }

    /// The ticket's addresses become known and its peers are asked first.
    async fn learn_ticket(&self, t: &kith_core::ticket::Ticket) {
        let mut peers = Vec::new();
        for a in &t.addrs {
            let Ok(addr) = kith_overlay::parse_addr(a) else {
                continue;
            };
            if let Some(peer) = kith_overlay::peer_of(&addr) {
                let _ = self.inner.overlay.add_address(peer, addr).await;
                if !peers.contains(&peer) {
                    peers.push(peer);
                }
            }
        }
        self.inner.share.hint(t.id, peers);
    }

    /// Searches; results stream in as peers answer. The peers that answer for a result
    /// are remembered as its providers, so a download of it asks them first.
    pub fn search(
        &self,
        req: &api::SearchRequest,
    ) -> Result<impl futures::Stream<Item = api::SearchResult> + Send + 'static, NodeError> {
        let via: Via = match req.via.as_deref() {
            Some(v) => v.parse()?,
            None if self.inner.search.has_broker() => Via::Both,
            None => Via::Network,
        };
        let group = self.group_id(req.group.as_deref())?;
        let rx = self.inner.search.search(
            &req.q,
            via,
            group.as_deref(),
            wait_ms(req.timeout_ms),
            req.limit.unwrap_or(100),
        )?;
        let share = self.inner.share.clone();
        Ok(futures::stream::unfold(
            (rx, share),
            |(mut rx, share): (mpsc::Receiver<kith_search::SearchResult>, _)| async move {
                let r = rx.recv().await?;
                if let Ok(id) = r.id.parse::<ContentId>() {
                    let peers = r.providers.iter().filter_map(|p| p.parse().ok()).collect();
                    share.hint(id, peers);
                }
                Some((r, (rx, share)))
            },
        ))
    }

    /// Shares `path` publicly and publishes it as the next revision of `name`. A name is
    /// public: content that came to this node in a group is refused unless `public`.
    pub async fn publish(
        &self,
        name: &str,
        path: &str,
        public: bool,
    ) -> Result<api::Name, NodeError> {
        kith_names::check_name(name).map_err(kith_names::Error::from)?;
        let path = existing_path(path)?;
        let audience = if public {
            Audience::Public
        } else {
            Audience::PublicOnly
        };
        let rec = self.inner.share.share(path, audience).await?;
        let r = self.inner.names.publish(name, rec.id).await?;
        self.searchable().await;
        Ok(convert::name(&r))
    }

    /// The newest revision of `PEER_ID/name` (or a name of this node).
    pub async fn resolve(&self, name: &str, wait: Duration) -> Result<api::Name, NodeError> {
        Ok(convert::name(&self.inner.names.resolve(name, wait).await?))
    }

    /// Names this node knows (its own and those it follows).
    pub fn names_known(&self) -> Result<Vec<api::Name>, NodeError> {
        Ok(self
            .inner
            .names
            .names()?
            .iter()
            .map(convert::name)
            .collect())
    }

    /// The node's metrics as OpenMetrics text.
    pub fn metrics(&self) -> Result<String, NodeError> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        Ok(text)
    }

    /// Whether `token` is this node's API token (compared without an early exit).
    pub fn token_matches(&self, token: &str) -> bool {
        crate::ui::same(token, &self.inner.token)
    }

    /// The data dir's path (for messages).
    pub fn dir(&self) -> &Path {
        self.inner.home.dir()
    }
}
