//! `kith service install|uninstall`: the node as a systemd user service.

use std::path::PathBuf;

use anyhow::{Context, Result};
use kith_node::Home;

use crate::args::ServiceCmd;
use crate::out::print_json;

/// Where systemd looks for user units.
fn unit_path() -> Result<PathBuf> {
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(config.join("systemd").join("user").join("kith.service"))
}

/// Quotes a path for an `ExecStart=` line.
fn quoted(p: &std::path::Path) -> String {
    format!(
        "\"{}\"",
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

fn unit(exe: &std::path::Path, home: &std::path::Path) -> String {
    format!(
        "[Unit]\n\
         Description=kith peer-to-peer node\n\
         Documentation=man:kith(1)\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={} --home {} up\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        quoted(exe),
        quoted(home)
    )
}

pub fn run(home: &Home, cmd: &ServiceCmd, json: bool) -> Result<()> {
    let path = unit_path()?;
    match cmd {
        ServiceCmd::Install => {
            let exe = std::env::current_exe().context("cannot find this program's path")?;
            let data = std::path::absolute(home.dir())?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(&path, unit(&exe, &data))
                .with_context(|| format!("cannot write {}", path.display()))?;
            if json {
                print_json(&serde_json::json!({ "unit": path, "installed": true }));
            } else {
                println!("wrote {}", path.display());
                println!("start it now and at every login: systemctl --user enable --now kith");
                println!("(to keep it running while you are logged out: loginctl enable-linger)");
            }
        }
        ServiceCmd::Uninstall => {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    anyhow::bail!("{} is not installed", path.display())
                }
                Err(e) => return Err(e).context(format!("cannot remove {}", path.display())),
            }
            if json {
                print_json(&serde_json::json!({ "unit": path, "installed": false }));
            } else {
                println!(
                    "removed {} (systemctl --user daemon-reload to forget it)",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_this_binary_on_this_data_dir() {
        let u = unit(
            std::path::Path::new("/opt/kith bin/kith"),
            std::path::Path::new("/home/a/.local/share/kith"),
        );
        assert!(
            u.contains("ExecStart=\"/opt/kith bin/kith\" --home \"/home/a/.local/share/kith\" up")
        );
        assert!(u.contains("WantedBy=default.target"));
        assert!(u.contains("Restart=on-failure"));
    }
}
