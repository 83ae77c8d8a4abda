//! `kith downloads`, `kith pause`, `kith resume` and `kith cancel`.

use anyhow::Result;
use kith_api as api;

use crate::out::print_json;
use crate::units::human;
use kith_api::Client;

fn line(p: &api::Progress) -> String {
    let pct = if p.total_bytes > 0 {
        format!("{:.0}%", p.done_bytes as f64 * 100.0 / p.total_bytes as f64)
    } else {
        "-".to_owned()
    };
    let why = match (p.state.as_str(), &p.notice) {
        ("waiting", _) => "  (every provider has gone; waiting for one)".to_owned(),
        ("finding", _) => "  (looking for providers)".to_owned(),
        (_, Some(n)) => format!("  ({n})"),
        _ => String::new(),
    };
    format!(
        "{}  {}  {:<11} {:>4}  {} of {}  {}/s  {} provider(s){}",
        p.id,
        p.name.as_deref().or(p.output.as_deref()).unwrap_or("-"),
        p.state,
        pct,
        human(p.done_bytes),
        human(p.total_bytes),
        human(p.rate),
        p.providers.len(),
        why
    )
}

pub async fn list(c: &Client, json: bool) -> Result<()> {
    let all = c.downloads().await?;
    if json {
        print_json(&all);
    } else if all.is_empty() {
        println!("no downloads running or paused");
    } else {
        all.iter().for_each(|p| println!("{}", line(p)));
    }
    Ok(())
}

pub async fn change(c: &Client, id: &str, state: &str, json: bool) -> Result<()> {
    let req = api::DownloadChange {
        state: state.to_owned(),
    };
    let p = c.change_download(id, &req).await?;
    if json {
        print_json(&p);
    } else if state == "paused" {
        println!("paused {} (resume with: kith resume {})", p.id, p.id);
    } else {
        println!("resumed {} (watch with: kith downloads)", p.id);
    }
    Ok(())
}

pub async fn cancel(c: &Client, id: &str, json: bool) -> Result<()> {
    let r = c.cancel_download(id).await?;
    if json {
        print_json(&serde_json::json!({ "id": id, "cancelled": true }));
    } else {
        println!("{}; what it had written is removed", r.error);
    }
    Ok(())
}
