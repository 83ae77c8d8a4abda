//! `kith vault …`, `kith backup` and `kith restore`.

use std::path::Path;

use anyhow::{Result, bail};
use kith_api as api;

use crate::args::VaultCmd;
use crate::commands::absolute;
use crate::out::print_json;
use crate::units::human;
use kith_api::Client;

pub(crate) fn when(secs: u64) -> String {
    if secs == 0 {
        return "never".into();
    }
    let now = kith_core::store::now_secs();
    match now.saturating_sub(secs) {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s => format!("{}h ago", s / 3600),
    }
}

fn line(o: &api::VaultObject) -> String {
    format!(
        "{}  {:<6} {}  {}  {} file(s)  health {}/{}  (k={})  audited {}  repairs {}",
        o.id,
        o.kind,
        o.name,
        human(o.size),
        o.files,
        o.reachable,
        o.n,
        o.k,
        when(o.last_audit),
        o.repairs
    )
}

fn stored(s: &api::VaultStored, json: bool) {
    if json {
        print_json(s);
    } else {
        println!("{}", s.id);
        eprintln!(
            "stored {} ({}, {} new) as {} of {} shares on {} holders; restore with: kith vault get {} -o PATH",
            s.name,
            human(s.size),
            human(s.new_bytes),
            s.k,
            s.n,
            s.holders,
            s.id
        );
        if !s.index_published {
            eprintln!(
                "the vault's copy of the index could not be stored yet (this node keeps trying): until it is, another device cannot find this object"
            );
        }
    }
}

fn got(g: &api::VaultGot, out: &Path, json: bool) {
    if json {
        print_json(g);
    } else {
        println!(
            "restored {} ({} file(s), {}) to {}",
            g.name,
            g.files,
            human(g.bytes),
            out.display()
        );
    }
}

pub async fn vault(c: &Client, cmd: VaultCmd, json: bool) -> Result<()> {
    match cmd {
        VaultCmd::Put {
            path,
            name,
            k,
            n,
            group,
        } => {
            if !path.exists() {
                bail!("{}: no such file or folder", path.display());
            }
            let req = api::VaultPut {
                path: absolute(&path)?,
                name,
                k,
                n,
                group,
            };
            let s = c.vault_put(&req).await?;
            stored(&s, json);
        }
        VaultCmd::Get { what, output } => {
            let req = api::VaultGet {
                out: absolute(&output)?,
                ..Default::default()
            };
            let g = c.vault_get(&what, &req).await?;
            got(&g, &output, json);
        }
        VaultCmd::Ls => {
            let all = c.vault().await?;
            if json {
                print_json(&all);
            } else if all.is_empty() {
                println!("nothing in the vault (store something with: kith vault put PATH)");
            } else {
                all.iter().for_each(|o| println!("{}", line(o)));
            }
        }
        VaultCmd::Status { what: Some(w) } => {
            let o = c.vault_object(&w).await?;
            if json {
                print_json(&o);
            } else {
                println!("{}", line(&o));
            }
        }
        VaultCmd::Status { what: None } => {
            let s = c.vault_status().await?;
            if json {
                print_json(&s);
            } else {
                println!(
                    "offered {}  held for others {}  stored {} in {} object(s)  repairs {}  last audit {}",
                    human(s.offered),
                    human(s.held),
                    human(s.stored),
                    s.objects,
                    s.repairs,
                    when(s.last_audit)
                );
                for p in &s.peers {
                    println!(
                        "  {}  holds for me {}  I hold for it {}  audits passed {}  faults {}",
                        p.peer,
                        human(p.holds_for_me),
                        human(p.i_hold_for_it),
                        p.audits_passed,
                        p.faults
                    );
                }
            }
        }
        VaultCmd::Rm { what } => {
            let r = c.vault_remove(&what).await?;
            if json {
                print_json(&r);
            } else {
                println!("removed {} ({} share(s) released)", r.id, r.released);
            }
        }
    }
    Ok(())
}

pub async fn backup(
    c: &Client,
    dir: &Path,
    every: Option<u64>,
    (k, n): (Option<u8>, Option<u8>),
    json: bool,
) -> Result<()> {
    if !dir.is_dir() {
        bail!("{}: not a folder", dir.display());
    }
    let req = api::BackupRequest {
        dir: absolute(dir)?,
        every,
        k,
        n,
    };
    let s = c.backup(&req).await?;
    if json {
        print_json(&s);
    } else {
        println!("{}", s.id);
        eprintln!(
            "backed up {} ({} file(s), {}): {} moved{}",
            s.name,
            s.files,
            human(s.size),
            human(s.new_bytes),
            every.map_or(String::new(), |e| format!(
                "; again every {e}s while the node runs"
            ))
        );
    }
    Ok(())
}

/// `--at`: Unix seconds (fractions allowed) or a time ago, as Unix milliseconds.
fn parse_at(at: &str) -> Result<u64> {
    if let Ok(secs) = at.trim().parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok((secs * 1000.0) as u64);
    }
    let ago = kith_core::units::parse_duration(at).map_err(|e| {
        anyhow::anyhow!("--at {e}; give Unix seconds (e.g. 1764650000.5) or a time ago (10m)")
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Ok(now.saturating_sub(ago * 1000))
}

pub async fn restore(
    c: &Client,
    source: Option<String>,
    at: Option<&str>,
    output: &Path,
    json: bool,
) -> Result<()> {
    let req = api::VaultGet {
        out: absolute(output)?,
        source: source.map(|s| absolute(Path::new(&s))).transpose()?,
        at_ms: at.map(parse_at).transpose()?,
    };
    let g = c.restore(&req).await?;
    got(&g, output, json);
    Ok(())
}
