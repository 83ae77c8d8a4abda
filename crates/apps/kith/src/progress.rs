//! `kith get`: follows a download's progress lines (a bar on a terminal, plain lines
//! otherwise) and exits 0 only when the content is verified and written.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kith_api as api;

use crate::out::print_json;
use futures::StreamExt;
use kith_api::Client;

/// What `kith get --json` prints last, once the content is verified and written.
#[derive(serde::Serialize)]
struct Saved<'a> {
    id: &'a str,
    output: Option<&'a str>,
    bytes: u64,
    fetched_bytes: u64,
    providers: &'a [String],
    relayed: &'a [String],
}

fn bar() -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(0);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b
}

/// Shows one progress line.
struct View {
    bar: Option<indicatif::ProgressBar>,
    json: bool,
    last_plain: Instant,
    last: Option<api::Progress>,
}

impl View {
    fn show(&mut self, p: api::Progress) {
        let notice_is_new = p.notice.is_some()
            && self.last.as_ref().and_then(|l| l.notice.as_ref()) != p.notice.as_ref();
        if let (Some(n), true, false) = (&p.notice, notice_is_new, self.json) {
            match &self.bar {
                Some(b) => b.println(format!("note: {n}")),
                None => eprintln!("note: {n}"),
            }
        }
        if let Some(b) = &self.bar {
            b.set_length(p.total_bytes);
            b.set_position(p.done_bytes);
            b.set_message(format!("{} {}", p.state, p.name.as_deref().unwrap_or("")));
        } else if !self.json && self.last_plain.elapsed() >= Duration::from_secs(1) {
            self.last_plain = Instant::now();
            println!("{} {} / {} bytes", p.state, p.done_bytes, p.total_bytes);
        }
        self.last = Some(p);
    }
}

pub async fn follow(c: &Client, req: &api::DownloadRequest, json: bool) -> Result<()> {
    let mut view = View {
        bar: (!json && crate::is_tty()).then(bar),
        json,
        last_plain: Instant::now(),
        last: None,
    };
    let followed = tokio::select! {
        f = async {
            let mut lines = c.download(req).await?;
            while let Some(p) = lines.next().await {
                view.show(p?);
            }
            Ok::<_, kith_api::client::Error>(())
        } => Some(f),
        _ = tokio::signal::ctrl_c() => None,
    };
    if let Some(b) = &view.bar {
        b.finish_and_clear();
    }
    let Some(followed) = followed else {
        let id = view
            .last
            .as_ref()
            .map_or(req.id.clone(), |p| p.id.to_string());
        bail!(
            "stopped watching; the download goes on in the node (kith downloads to see it, kith pause {id} or kith cancel {id} to stop it)"
        );
    };
    followed?;
    let Some(last) = view.last else {
        bail!("the node stopped reporting before the download ended");
    };
    match last.state.as_str() {
        "done" => {
            if json {
                print_json(&Saved {
                    id: &last.id.to_string(),
                    output: last.output.as_deref(),
                    bytes: last.total_bytes,
                    fetched_bytes: last.fetched_bytes,
                    providers: &last.providers,
                    relayed: &last.relayed,
                });
            } else {
                let n = last.providers.len();
                println!(
                    "saved {} ({} bytes, {} fetched from {n} provider{})",
                    last.output.as_deref().unwrap_or_default(),
                    last.total_bytes,
                    last.fetched_bytes,
                    if n == 1 { "" } else { "s" }
                );
            }
            Ok(())
        }
        "failed" => bail!("{}", last.error.as_deref().unwrap_or("download failed")),
        "paused" => bail!("the download was paused (kith resume {} goes on)", last.id),
        "cancelled" => bail!("the download was cancelled"),
        _ => bail!("the node stopped reporting before the download ended"),
    }
}
