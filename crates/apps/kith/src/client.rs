//! The CLI's client for the node's local HTTP API, typed by the API contract (`kith-api`).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use kith_node::Home;
use serde::Serialize;
use serde::de::DeserializeOwned;

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

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// Finds the running node of `home`.
    pub fn connect(home: &Home) -> Result<Self> {
        let Some(addr) = home.api_addr() else {
            bail!(
                "the kith node is not running for {} (start it with `kith up`)",
                home.dir().display()
            );
        };
        let token = home.token().context("cannot read the API token")?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot build HTTP client")?;
        Ok(Self {
            base: format!("http://{addr}/api/v1"),
            token,
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "the kith node is not running (no answer at {}; start it with `kith up`)",
                    self.base
                )
            } else {
                anyhow!("talking to the node: {e}")
            }
        })?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body: Option<kith_api::ErrorBody> = resp.json().await.ok();
            bail!(
                "{}",
                body.map(|b| b.error).unwrap_or_else(|| status.to_string())
            );
        }
        Ok(resp)
    }

    /// A GET outside `/api/v1` (the gateway), answered as it streams: not bounded in time.
    pub async fn raw_get(&self, path: &str) -> Result<reqwest::Response> {
        let root = self.base.trim_end_matches("/api/v1");
        self.send(self.http.get(format!("{root}{path}"))).await
    }

    /// A read, bounded in time.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let req = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        Ok(self.send(req).await?.json().await?)
    }

    /// A write; not bounded in time (sharing a big folder takes as long as reading it).
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        Ok(self.send(req).await?.json().await?)
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.write(reqwest::Method::PUT, path, body).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.write(reqwest::Method::PATCH, path, body).await
    }

    async fn write<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(body)
            .timeout(Duration::from_secs(30));
        Ok(self.send(req).await?.json().await?)
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let req = self
            .http
            .delete(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        Ok(self.send(req).await?.json().await?)
    }

    /// A request whose answer is JSON lines; `each` gets every line as it arrives.
    pub async fn stream<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        mut each: impl FnMut(T),
    ) -> Result<()> {
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        let mut bytes = self.send(req).await?.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(|e| anyhow!("lost the node: {e}"))?;
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if let Ok(v) = serde_json::from_slice::<T>(&line) {
                    each(v);
                }
            }
        }
        Ok(())
    }
}
