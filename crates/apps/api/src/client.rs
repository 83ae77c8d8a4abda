//! A typed client for the node's API (feature `client`): one method per operation, so the
//! method and path of each are written once, here, and every caller (the `kith` command,
//! the in-process tests) gets the contract's types back instead of untyped JSON.
//!
//! Reads, `PUT`, `PATCH` and `DELETE` are bounded in time ([`TIMEOUT`]); `POST`s are not
//! (sharing a big folder takes as long as reading it). The streaming operations
//! ([`Client::download`], [`Client::search`]) answer JSON lines, each decoded as it
//! arrives; a line longer than [`MAX_LINE`] ends the stream with an error.

use std::fmt::Display;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use reqwest::StatusCode;

use crate::{
    BackupRequest, CacheEntry, CacheStatus, ConnectRequest, Connection, CreateGroup, DeviceRemoved,
    DownloadChange, DownloadRequest, ErrorBody, Group, Invite, InviteRequest, Job, JoinDevice,
    JoinGroup, LinkCode, LogLine, LoginLink, Member, Name, Person, PinRequest, Progress,
    PublishRequest, ResolveRequest, ResultsRequest, ResultsWritten, SearchRequest, SearchResult,
    Settings, SettingsChange, Share, ShareRequest, Status, SubmitJob, TicketBody, Transfer,
    VaultGet, VaultGot, VaultObject, VaultOverview, VaultPut, VaultRemoved, VaultStored,
    VolunteerRequest, VolunteerStatus,
};

/// How long a bounded request may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting may take (the node is on this machine: it answers at once or not
/// at all).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest JSON line a stream may send: a progress line or a search result is well under
/// a kilobyte; a megabyte means the answer is not what it should be.
pub const MAX_LINE: usize = 1 << 20;

/// Why a request to the node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot build the HTTP client")]
    Build(#[source] reqwest::Error),
    #[error("the kith node is not running (no answer at {base}; start it with `kith up`)")]
    NotRunning {
        base: String,
        /// The refused connection (kept, not printed: the line says all a user needs).
        cause: reqwest::Error,
    },
    #[error("talking to the node")]
    Http(#[source] reqwest::Error),
    /// The node answered with an error: its status and its one line.
    #[error("{message}")]
    Api { status: StatusCode, message: String },
    #[error("the node's answer to {method} {path} is not what the API says")]
    Decode {
        method: reqwest::Method,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("lost the node")]
    Lost(#[source] reqwest::Error),
    #[error("the read stopped")]
    ReadStopped(#[source] reqwest::Error),
    #[error("a line of the node's answer is longer than {MAX_LINE} bytes")]
    LineTooLong,
}

impl Error {
    /// The status the node answered with, when it answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stream of JSON lines, each decoded as it arrives.
pub type Lines<T> = BoxStream<'static, Result<T>>;

/// `s` as one URL path segment: every byte but unreserved ones percent-encoded.
pub fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The gateway path of `ID[/path/in/folder]`, each part one segment.
pub fn content_path(id: &str) -> String {
    let mut out = String::from("/content");
    for p in id.trim().split('/').filter(|p| !p.is_empty()) {
        out.push('/');
        out.push_str(&segment(p));
    }
    out
}

/// An empty JSON object: the body of the `POST`s that take none.
#[derive(Serialize)]
struct Empty {}

/// A client of one node's API.
#[derive(Debug, Clone)]
pub struct Client {
    /// `http://ADDR`.
    root: String,
    /// `http://ADDR/api/v1`.
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the node whose API listens on `addr` (`HOST:PORT`), with its token.
    pub fn new(addr: impl Display, token: impl Into<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(Error::Build)?;
        let root = format!("http://{addr}");
        Ok(Self {
            base: format!("{root}/api/v1"),
            root,
            token: token.into(),
            http,
        })
    }

    /// The API's base URL, `http://ADDR/api/v1`.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            if e.is_connect() {
                Error::NotRunning {
                    base: self.base.clone(),
                    cause: e,
                }
            } else {
                Error::Http(e)
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: Option<ErrorBody> = resp.json().await.ok();
        Err(Error::Api {
            status,
            message: body.map_or_else(|| status.to_string(), |b| b.error),
        })
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        if method != reqwest::Method::POST {
            req = req.timeout(TIMEOUT);
        }
        let bytes = self.send(req).await?.bytes().await.map_err(Error::Lost)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            method,
            path: path.to_owned(),
            source,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<Empty, T>(reqwest::Method::GET, path, None)
            .await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<Empty, T>(reqwest::Method::DELETE, path, None)
            .await
    }

    /// A `POST` whose answer is JSON lines.
    async fn lines<B: Serialize + ?Sized, T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Lines<T>> {
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        Ok(json_lines(self.send(req).await?))
    }

    /// A text document outside `/api/v1` (bounded in time).
    async fn text(&self, url: String) -> Result<String> {
        let req = self.http.get(url).timeout(TIMEOUT);
        self.send(req).await?.text().await.map_err(Error::Lost)
    }
}

/// The lines of `resp` as they arrive. A line that is not a `T` is skipped (a newer node
/// may send more); a line past [`MAX_LINE`] or a broken connection ends the stream with an
/// error.
fn json_lines<T: DeserializeOwned + Send + 'static>(resp: reqwest::Response) -> Lines<T> {
    struct State {
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        buf: Vec<u8>,
        ended: bool,
    }
    let state = State {
        body: resp.bytes_stream().boxed(),
        buf: Vec::new(),
        ended: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(pos) = s.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = s.buf.drain(..=pos).collect();
                if let Ok(v) = serde_json::from_slice::<T>(&line) {
                    return Some((Ok(v), s));
                }
                continue;
            }
            if s.ended {
                let rest = std::mem::take(&mut s.buf);
                let last = serde_json::from_slice::<T>(&rest).ok()?;
                return Some((Ok(last), s));
            }
            if s.buf.len() > MAX_LINE {
                s.buf.clear();
                s.ended = true;
                return Some((Err(Error::LineTooLong), s));
            }
            match s.body.next().await {
                Some(Ok(chunk)) => s.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    s.buf.clear();
                    s.ended = true;
                    return Some((Err(Error::Lost(e)), s));
                }
                None => s.ended = true,
            }
        }
    })
    .boxed()
}

/// The operations, one method each, named for what they do.
impl Client {
    /// `GET /status`.
    pub async fn status(&self) -> Result<Status> {
        self.get("/status").await
    }

    /// `GET /peers`: the open connections.
    pub async fn peers(&self) -> Result<Vec<Connection>> {
        self.get("/peers").await
    }

    /// `POST /peers`: dials a peer; the open connections.
    pub async fn connect(&self, req: &ConnectRequest) -> Result<Vec<Connection>> {
        self.post("/peers", req).await
    }

    /// `GET /shares`.
    pub async fn shares(&self) -> Result<Vec<Share>> {
        self.get("/shares").await
    }

    /// `POST /shares`.
    pub async fn share(&self, req: &ShareRequest) -> Result<Share> {
        self.post("/shares", req).await
    }

    /// `DELETE /shares/{id}`.
    pub async fn unshare(&self, id: &str) -> Result<Share> {
        self.delete(&format!("/shares/{}", segment(id))).await
    }

    /// `GET /shares/{id}/ticket`.
    pub async fn ticket(&self, id: &str) -> Result<TicketBody> {
        self.get(&format!("/shares/{}/ticket", segment(id))).await
    }

    /// `GET /downloads`: downloads running or paused.
    pub async fn downloads(&self) -> Result<Vec<Progress>> {
        self.get("/downloads").await
    }

    /// `POST /downloads`: starts (or follows) a download; its progress as it goes.
    pub async fn download(&self, req: &DownloadRequest) -> Result<Lines<Progress>> {
        self.lines("/downloads", req).await
    }

    /// `PATCH /downloads/{id}`: pauses or resumes a download.
    pub async fn change_download(&self, id: &str, req: &DownloadChange) -> Result<Progress> {
        let path = format!("/downloads/{}", segment(id));
        self.call(reqwest::Method::PATCH, &path, Some(req)).await
    }

    /// `DELETE /downloads/{id}`: cancels a download (the answer says so in one line).
    pub async fn cancel_download(&self, id: &str) -> Result<ErrorBody> {
        self.delete(&format!("/downloads/{}", segment(id))).await
    }

    /// `GET /downloads/history`: downloads that ended, newest first.
    pub async fn history(&self) -> Result<Vec<Transfer>> {
        self.get("/downloads/history").await
    }

    /// `POST /search`: results as they come (one may come again, with more providers).
    pub async fn search(&self, req: &SearchRequest) -> Result<Lines<SearchResult>> {
        self.lines("/search", req).await
    }

    /// `GET /names`: names this node knows.
    pub async fn names(&self) -> Result<Vec<Name>> {
        self.get("/names").await
    }

    /// `POST /names`: publishes the next revision of a name.
    pub async fn publish(&self, req: &PublishRequest) -> Result<Name> {
        self.post("/names", req).await
    }

    /// `POST /names/resolve`: the newest revision of a name.
    pub async fn resolve(&self, req: &ResolveRequest) -> Result<Name> {
        self.post("/names/resolve", req).await
    }

    /// `GET /person`.
    pub async fn person(&self) -> Result<Person> {
        self.get("/person").await
    }

    /// `POST /devices/link`: a one-time code for another device.
    pub async fn link_device(&self) -> Result<LinkCode> {
        self.post("/devices/link", &Empty {}).await
    }

    /// `POST /devices/join`.
    pub async fn join_device(&self, req: &JoinDevice) -> Result<Person> {
        self.post("/devices/join", req).await
    }

    /// `DELETE /devices/{id}`.
    pub async fn remove_device(&self, device: &str) -> Result<DeviceRemoved> {
        self.delete(&format!("/devices/{}", segment(device))).await
    }

    /// `GET /groups`.
    pub async fn groups(&self) -> Result<Vec<Group>> {
        self.get("/groups").await
    }

    /// `POST /groups`.
    pub async fn create_group(&self, req: &CreateGroup) -> Result<Group> {
        self.post("/groups", req).await
    }

    /// `POST /groups/join`.
    pub async fn join_group(&self, req: &JoinGroup) -> Result<Group> {
        self.post("/groups/join", req).await
    }

    /// `POST /groups/{group}/invites`.
    pub async fn invite(&self, group: &str, req: &InviteRequest) -> Result<Invite> {
        self.post(&format!("/groups/{}/invites", segment(group)), req)
            .await
    }

    /// `GET /groups/{group}/members`.
    pub async fn members(&self, group: &str) -> Result<Vec<Member>> {
        self.get(&format!("/groups/{}/members", segment(group)))
            .await
    }

    /// `DELETE /groups/{group}/members/{person}`.
    pub async fn remove_member(&self, group: &str, person: &str) -> Result<Group> {
        let path = format!("/groups/{}/members/{}", segment(group), segment(person));
        self.delete(&path).await
    }

    /// `POST /groups/{group}/leave`.
    pub async fn leave_group(&self, group: &str) -> Result<Group> {
        self.post(&format!("/groups/{}/leave", segment(group)), &Empty {})
            .await
    }
}

/// Cycle sharing, the vault, the cache, the web UI's operations and the documents.
impl Client {
    /// `GET /jobs`: jobs this node submitted.
    pub async fn jobs(&self) -> Result<Vec<Job>> {
        self.get("/jobs").await
    }

    /// `POST /jobs`.
    pub async fn submit_job(&self, req: &SubmitJob) -> Result<Job> {
        self.post("/jobs", req).await
    }

    /// `GET /jobs/{job}`.
    pub async fn job(&self, job: &str) -> Result<Job> {
        self.get(&format!("/jobs/{}", segment(job))).await
    }

    /// `DELETE /jobs/{job}`: cancels a job.
    pub async fn cancel_job(&self, job: &str) -> Result<Job> {
        self.delete(&format!("/jobs/{}", segment(job))).await
    }

    /// `POST /jobs/{job}/results`: writes the validated results to a folder.
    pub async fn job_results(&self, job: &str, req: &ResultsRequest) -> Result<ResultsWritten> {
        self.post(&format!("/jobs/{}/results", segment(job)), req)
            .await
    }

    /// `POST /jobs/{job}/accept-trust`.
    pub async fn accept_trust(&self, job: &str) -> Result<Job> {
        let path = format!("/jobs/{}/accept-trust", segment(job));
        self.post(&path, &Empty {}).await
    }

    /// `GET /volunteer`.
    pub async fn volunteer_status(&self) -> Result<VolunteerStatus> {
        self.get("/volunteer").await
    }

    /// `PUT /volunteer`: volunteers (or changes the limits).
    pub async fn volunteer_on(&self, req: &VolunteerRequest) -> Result<VolunteerStatus> {
        self.put("/volunteer", req).await
    }

    /// `DELETE /volunteer`.
    pub async fn volunteer_off(&self) -> Result<VolunteerStatus> {
        self.delete("/volunteer").await
    }

    /// `GET /vault`: what this node stored in the vault.
    pub async fn vault(&self) -> Result<Vec<VaultObject>> {
        self.get("/vault").await
    }

    /// `POST /vault`.
    pub async fn vault_put(&self, req: &VaultPut) -> Result<VaultStored> {
        self.post("/vault", req).await
    }

    /// `GET /vault/status`.
    pub async fn vault_status(&self) -> Result<VaultOverview> {
        self.get("/vault/status").await
    }

    /// `GET /vault/{id}`.
    pub async fn vault_object(&self, id: &str) -> Result<VaultObject> {
        self.get(&format!("/vault/{}", segment(id))).await
    }

    /// `DELETE /vault/{id}`.
    pub async fn vault_remove(&self, id: &str) -> Result<VaultRemoved> {
        self.delete(&format!("/vault/{}", segment(id))).await
    }

    /// `POST /vault/{id}/get`.
    pub async fn vault_get(&self, id: &str, req: &VaultGet) -> Result<VaultGot> {
        self.post(&format!("/vault/{}/get", segment(id)), req).await
    }

    /// `POST /backups`.
    pub async fn backup(&self, req: &BackupRequest) -> Result<VaultStored> {
        self.post("/backups", req).await
    }

    /// `POST /backups/restore`.
    pub async fn restore(&self, req: &VaultGet) -> Result<VaultGot> {
        self.post("/backups/restore", req).await
    }

    /// `GET /cache`.
    pub async fn cache(&self) -> Result<CacheStatus> {
        self.get("/cache").await
    }

    /// `POST /cache/pins`.
    pub async fn pin(&self, req: &PinRequest) -> Result<CacheEntry> {
        self.post("/cache/pins", req).await
    }

    /// `DELETE /cache/pins/{id}`.
    pub async fn unpin(&self, id: &str) -> Result<CacheEntry> {
        self.delete(&format!("/cache/pins/{}", segment(id))).await
    }

    /// `POST /ui/login`: a one-time login link for the web UI.
    pub async fn login_link(&self) -> Result<LoginLink> {
        self.post("/ui/login", &Empty {}).await
    }

    /// `GET /settings`.
    pub async fn settings(&self) -> Result<Settings> {
        self.get("/settings").await
    }

    /// `PUT /settings`.
    pub async fn change_settings(&self, req: &SettingsChange) -> Result<Settings> {
        self.put("/settings", req).await
    }

    /// `GET /logs`: the node's recent log lines, oldest first.
    pub async fn logs(&self) -> Result<Vec<LogLine>> {
        self.get("/logs").await
    }

    /// `GET /api/v1/openapi.json`, as text.
    pub async fn openapi(&self) -> Result<String> {
        self.text(format!("{}/openapi.json", self.base)).await
    }

    /// `GET /metrics`: OpenMetrics text.
    pub async fn metrics(&self) -> Result<String> {
        self.text(format!("{}/metrics", self.root)).await
    }

    /// `GET /content/ID[/path]`: a file's bytes as they come (not bounded in time: the
    /// file may still be downloading).
    pub async fn content(&self, id: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        let req = self.http.get(format!("{}{}", self.root, content_path(id)));
        let body = self.send(req).await?.bytes_stream();
        Ok(body.map(|c| c.map_err(Error::ReadStopped)).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Line {
        n: u32,
    }

    /// An answer whose body arrives in `chunks`.
    fn answer(chunks: Vec<Vec<u8>>) -> reqwest::Response {
        let body = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from(c))),
        );
        reqwest::Response::from(http::Response::new(reqwest::Body::wrap_stream(body)))
    }

    fn lines(chunks: Vec<Vec<u8>>) -> Vec<Result<Line>> {
        futures::executor::block_on(json_lines::<Line>(answer(chunks)).collect())
    }

    #[test]
    fn lines_are_decoded_across_chunks_and_lines_of_another_shape_skipped() {
        let got = lines(vec![
            b"{\"n\":1}\n{\"n\"".to_vec(),
            b":2}\nnot json\n{\"other\":true}\n{\"n\":3}".to_vec(),
        ]);
        let got: Vec<u32> = got
            .into_iter()
            .filter_map(|l| l.ok().map(|l| l.n))
            .collect();
        assert_eq!(got, [1, 2, 3], "the last line needs no newline");
    }

    #[test]
    fn a_line_past_the_limit_ends_the_stream_with_an_error() {
        let got = lines(vec![
            b"{\"n\":1}\n".to_vec(),
            vec![b' '; MAX_LINE / 2],
            vec![b' '; MAX_LINE / 2 + 1],
            b"{\"n\":2}\n".to_vec(),
        ]);
        assert!(
            matches!(got.as_slice(), [Ok(Line { n: 1 }), Err(Error::LineTooLong)]),
            "{got:?}"
        );
    }

    #[test]
    fn paths_inside_a_folder_are_encoded_per_segment() {
        assert_eq!(content_path("bafk"), "/content/bafk");
        assert_eq!(content_path("bafk/a b/c.txt"), "/content/bafk/a%20b/c.txt");
        assert_eq!(content_path("bafk//x/"), "/content/bafk/x");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
    }
}
