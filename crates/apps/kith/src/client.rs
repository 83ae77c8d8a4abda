//! The CLI's client for the node's local HTTP API.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use kith_node::Home;
use serde_json::Value;

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
            let v: Value = resp.json().await.unwrap_or_default();
            bail!(
                "{}",
                v["error"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| status.to_string())
            );
        }
        Ok(resp)
    }

    /// A JSON request. Reads are bounded in time; a POST is not (sharing a big folder
    /// takes as long as reading it).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        match body {
            Some(b) => req = req.json(b),
            None => req = req.timeout(Duration::from_secs(30)),
        }
        Ok(self.send(req).await?.json().await?)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub async fn stream(&self, path: &str, body: &Value) -> Result<reqwest::Response> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }
}

/// Runs `kith get`: follows the download's progress lines; exits 0 only when the content
/// is verified and written.
pub async fn get(c: &Client, body: &Value, json: bool) -> Result<()> {
    let resp = c.stream("/downloads", body).await?;
    let mut lines = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut last = Value::Null;
    let bar = if !json && crate::is_tty() {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let mut last_plain = std::time::Instant::now();
    while let Some(chunk) = lines.next().await {
        let chunk = chunk.map_err(|e| anyhow!("lost the node while downloading: {e}"))?;
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if let Some(n) = v["notice"].as_str()
                && last["notice"].as_str() != Some(n)
                && !json
            {
                match &bar {
                    Some(b) => b.println(format!("note: {n}")),
                    None => eprintln!("note: {n}"),
                }
            }
            let total = v["total_bytes"].as_u64().unwrap_or(0);
            let done = v["done_bytes"].as_u64().unwrap_or(0);
            if let Some(b) = &bar {
                b.set_length(total);
                b.set_position(done);
                b.set_message(format!(
                    "{} {}",
                    v["state"].as_str().unwrap_or(""),
                    v["name"].as_str().unwrap_or("")
                ));
            } else if !json && last_plain.elapsed() >= Duration::from_secs(1) {
                last_plain = std::time::Instant::now();
                println!(
                    "{} {} / {} bytes",
                    v["state"].as_str().unwrap_or(""),
                    done,
                    total
                );
            }
            last = v;
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match last["state"].as_str() {
        Some("done") => {
            let out = serde_json::json!({
                "id": last["id"],
                "output": last["output"],
                "bytes": last["total_bytes"],
                "fetched_bytes": last["fetched_bytes"],
                "providers": last["providers"],
                "relayed": last["relayed"],
            });
            if json {
                println!("{}", serde_json::to_string(&out).unwrap_or_default());
            } else {
                let n = last["providers"].as_array().map(Vec::len).unwrap_or(0);
                println!(
                    "saved {} ({} bytes, {} fetched from {n} provider{})",
                    last["output"].as_str().unwrap_or_default(),
                    last["total_bytes"],
                    last["fetched_bytes"],
                    if n == 1 { "" } else { "s" }
                );
            }
            Ok(())
        }
        Some("failed") => bail!("{}", last["error"].as_str().unwrap_or("download failed")),
        _ => bail!("the node stopped reporting before the download ended"),
    }
}

/// Runs `kith search`: prints results as they stream in. With `--json`, every line is one
/// result object (a result comes again when more peers answer for it or it turns out to be
/// outdated); otherwise new results as they come, then the ranked list.
pub async fn search(c: &Client, body: &Value, json: bool) -> Result<()> {
    let resp = c.stream("/search", body).await?;
    let mut lines = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut all: Vec<kith_search::SearchResult> = Vec::new();
    while let Some(chunk) = lines.next().await {
        let chunk = chunk.map_err(|e| anyhow!("lost the node while searching: {e}"))?;
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Ok(r) = serde_json::from_slice::<kith_search::SearchResult>(&line) else {
                continue;
            };
            if json {
                print!("{}", String::from_utf8_lossy(&line));
            } else if !all.iter().any(|x| x.id == r.id) && crate::is_tty() {
                println!("  found {}  ({})", r.path, crate::units::human(r.size));
            }
            match all.iter_mut().find(|x| x.id == r.id) {
                Some(x) => *x = r,
                None => all.push(r),
            }
        }
    }
    if json {
        return Ok(());
    }
    kith_search::sort_results(&mut all);
    if all.is_empty() {
        println!("no results");
    }
    for r in &all {
        let named = match (&r.name_key, r.revision) {
            (Some(k), Some(rev)) => format!(
                "  [{k} rev {rev}{}]",
                if r.outdated == Some(true) {
                    ", outdated"
                } else {
                    ""
                }
            ),
            _ => String::new(),
        };
        println!(
            "{}  {:>10}  {} peer{}  {}{named}",
            r.id,
            crate::units::human(r.size),
            r.providers.len(),
            if r.providers.len() == 1 { "" } else { "s" },
            r.path
        );
    }
    Ok(())
}
