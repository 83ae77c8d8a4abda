//! `kith ui` (a login link to the web UI) and `kith cat` (a file's bytes to stdout).

use anyhow::{Result, anyhow};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use kith_api::Client;

/// Prints a one-time login link and opens it in a browser where there is one.
pub async fn open(c: &Client, no_open: bool, json: bool) -> Result<()> {
    let link = c.login_link().await?;
    if json {
        println!("{}", serde_json::to_string(&link)?);
        return Ok(());
    }
    println!("{}", link.url);
    eprintln!(
        "Open this link to log in to the web UI (it works once, within {} s; run `kith ui` again for another).",
        link.expires_secs
    );
    let graphical =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !no_open && graphical {
        let opened = std::process::Command::new("xdg-open")
            .arg(&link.url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if opened.is_err() {
            eprintln!("(no browser could be opened: copy the link into one)");
        }
    }
    Ok(())
}

/// Streams a file to stdout. A closed pipe (`kith cat ID | head`) ends it quietly.
pub async fn cat(c: &Client, id: &str) -> Result<()> {
    let mut body = c.content(id).await?;
    let mut out = tokio::io::stdout();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        match out.write_all(&chunk).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(anyhow!("cannot write to stdout: {e}")),
        }
    }
    match out.flush().await {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}
