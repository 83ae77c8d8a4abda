//! `kith`: the command-line front end. `init` and `up` work on the data dir directly; every
//! other command talks to the running node through its local HTTP API.
//!
//! - `args`: the commands and flags; `commands`: one function per command; `up`: running
//!   the node; `progress`: following a download; `out`: printing `--json`; `client`: finding the node (the typed API client is `kith_api::Client`).

mod args;
mod cache;
mod client;
mod commands;
mod groups;
mod jobs;
mod out;
mod progress;
mod service;
mod transfers;
mod ui;
mod units;
mod up;
mod vault;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use kith_node::Home;

use crate::args::{CacheCmd, Cli, Cmd};
use kith_api::Client;

fn home(cli: &Cli) -> Result<Home> {
    if let Some(h) = &cli.home {
        return Ok(Home::new(h));
    }
    let dirs = directories::ProjectDirs::from("", "", "kith")
        .context("cannot find a data dir; pass --home or set KITH_HOME")?;
    Ok(Home::new(dirs.data_dir()))
}

/// Panics that kith catches and reports itself (a damaged database makes its library
/// panic) are not printed twice; any other panic is printed as one line.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        if !kith_core::tasks::panic_is_handled() {
            eprintln!("error: internal error: {info}");
        }
    }));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Cmd::Up(_)) {
        few_malloc_arenas();
    }
    quiet_panics();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// glibc's malloc gives threads their own arenas (up to eight per core) and memory freed
/// into one is not reused by another, so a daemon that moves chunks between its network
/// and disk threads kept ~10 MiB more than it used during a 1 GiB transfer. Two arenas
/// keep the daemon close to what it uses. glibc reads the setting only when a process
/// starts, so `kith up` runs itself again with it (same process ID, same arguments),
/// unless `MALLOC_ARENA_MAX` is set already; if that fails it goes on as it is.
fn few_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MALLOC_ARENA_MAX";
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || std::env::var_os(VAR).is_some() {
        return;
    }
    if let Ok(me) = std::env::current_exe() {
        // Returns only when the program cannot be run again.
        let _ = std::process::Command::new(me)
            .args(std::env::args_os().skip(1))
            .env(VAR, "2")
            .exec();
    }
}

fn one_line(e: &anyhow::Error) -> String {
    kith_core::error::one_line(e.as_ref())
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: writing straight to a closed pipe would panic.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "kith", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
            return Ok(());
        }
        Cmd::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            return Ok(());
        }
        _ => {}
    }
    let home = home(&cli)?;
    let json = cli.json;
    match cli.command {
        Cmd::Service(s) => service::run(&home, &s, json),
        Cmd::Init { person_key } => {
            if let Some(k) = person_key {
                home.adopt_person_key(&k)?;
            }
            commands::init(&home, json)
        }
        Cmd::Up(args) => up::run(home, &args, false).await,
        Cmd::Broker(args) => up::run(home, &args, true).await,
        cmd => {
            let c = client::connect(&home)?;
            talk(&c, cmd, json).await
        }
    }
}

/// The commands that talk to the running node.
async fn talk(c: &Client, cmd: Cmd, json: bool) -> Result<()> {
    match cmd {
        Cmd::Ui { no_open } => ui::open(c, no_open, json).await,
        Cmd::Cat { id } => ui::cat(c, &id).await,
        Cmd::Id => commands::id(c, json).await,
        Cmd::Status => commands::status(c, json).await,
        Cmd::Peers => commands::peers(c, json).await,
        Cmd::Share {
            path,
            group,
            public,
            ticket,
        } => commands::share(c, &path, group, public, ticket, json).await,
        Cmd::Ls => commands::ls(c, json).await,
        Cmd::Unshare { id } => commands::unshare(c, &id, json).await,
        Cmd::Search {
            query,
            via,
            timeout,
            limit,
            group,
        } => commands::search(c, &query, via, group, timeout, limit, json).await,
        Cmd::Publish { name, path, public } => {
            commands::publish(c, &name, &path, public, json).await
        }
        Cmd::Resolve { name, timeout } => commands::resolve(c, &name, timeout, json).await,
        Cmd::Get {
            id,
            output,
            timeout,
        } => commands::get(c, &id, output.as_deref(), timeout, json).await,
        Cmd::Person => groups::person(c, json).await,
        Cmd::Device(d) => groups::device(c, d, json).await,
        Cmd::Group(g) => groups::group(c, g, json).await,
        Cmd::Job(j) => jobs::job(c, j, json).await,
        Cmd::Volunteer(v) => jobs::volunteer(c, v, json).await,
        Cmd::Vault(v) => vault::vault(c, v, json).await,
        Cmd::Connect { addr } => commands::connect(c, &addr, json).await,
        Cmd::Downloads => transfers::list(c, json).await,
        Cmd::Pause { id } => transfers::change(c, &id, "paused", json).await,
        Cmd::Resume { id } => transfers::change(c, &id, "running", json).await,
        Cmd::Cancel { id } => transfers::cancel(c, &id, json).await,
        Cmd::Pin { id } => cache::pin(c, &id, true, json).await,
        Cmd::Unpin { id } => cache::pin(c, &id, false, json).await,
        Cmd::Cache(CacheCmd::Status) => cache::status(c, json).await,
        Cmd::Backup { dir, every, k, n } => vault::backup(c, &dir, every, (k, n), json).await,
        Cmd::Restore { source, at, output } => {
            vault::restore(c, source, at.as_deref(), &output, json).await
        }
        Cmd::Init { .. }
        | Cmd::Up(_)
        | Cmd::Broker(_)
        | Cmd::Completions { .. }
        | Cmd::Service(_)
        | Cmd::Man => Ok(()),
    }
}

pub(crate) fn is_tty() -> bool {
    std::io::stdout().is_terminal()
}
