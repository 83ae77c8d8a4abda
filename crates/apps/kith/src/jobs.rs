//! `kith job …` and `kith volunteer …`.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use kith_api as api;

use crate::args::{JobCmd, VolunteerCmd};
use crate::commands::absolute;
use crate::out::print_json;
use crate::units::human;
use kith_api::Client;

fn line(j: &api::Job) -> String {
    let group = j
        .group
        .as_deref()
        .map(|g| format!("  group {g}"))
        .unwrap_or_default();
    let trust = match (j.on_trust, j.trust) {
        (0, true) => String::new(),
        (0, false) => "  no trust".into(),
        (n, _) => format!("  ({n} on trust)"),
    };
    format!(
        "{}  {:<10} {}  units {}  done {}  validated {}{trust}  running {}  failed {}  quorum {}{group}",
        j.job, j.state, j.name, j.units, j.done, j.validated, j.running, j.failed, j.quorum
    )
}

pub async fn job(c: &Client, cmd: JobCmd, json: bool) -> Result<()> {
    match cmd {
        JobCmd::Submit {
            spec,
            wasm,
            inputs,
            quorum,
            group,
            no_trust,
        } => {
            let req = api::SubmitJob {
                spec: spec.as_deref().map(absolute).transpose()?,
                wasm: wasm.as_deref().map(absolute).transpose()?,
                inputs: inputs.as_deref().map(absolute).transpose()?,
                quorum,
                group,
                name: None,
                trust: no_trust.then_some(false),
            };
            let j = c.submit_job(&req).await?;
            if json {
                print_json(&j);
            } else {
                println!("{}", j.job);
                eprintln!(
                    "job {} submitted: {} units, quorum {}; follow it with: kith job status {}",
                    j.name, j.units, j.quorum, j.job
                );
            }
        }
        JobCmd::Status { job: None, .. } => {
            let jobs = c.jobs().await?;
            if json {
                print_json(&jobs);
            } else if jobs.is_empty() {
                println!("no jobs (submit one with: kith job submit JOB.toml)");
            } else {
                jobs.iter().for_each(|j| println!("{}", line(j)));
            }
        }
        JobCmd::Status {
            job: Some(id),
            once,
            wait,
        } => {
            if wait && (json || !std::io::stdout().is_terminal()) {
                let j = wait_done(c, &id).await?;
                if json {
                    print_json(&j);
                } else {
                    println!("{}", line(&j));
                }
            } else if json || once || !std::io::stdout().is_terminal() {
                let j = c.job(&id).await?;
                if json {
                    print_json(&j);
                } else {
                    println!("{}", line(&j));
                }
            } else {
                follow(c, &id).await?;
            }
        }
        JobCmd::Results { job, output } => {
            let req = api::ResultsRequest {
                dir: absolute(&output)?,
            };
            let r = c.job_results(&job, &req).await?;
            if json {
                print_json(&r);
            } else {
                println!("{} results written to {}", r.units.len(), r.dir);
                if r.missing > 0 {
                    eprintln!("{} units are not validated yet (or failed)", r.missing);
                }
            }
        }
        JobCmd::Cancel { job } => {
            let j = c.cancel_job(&job).await?;
            if json {
                print_json(&j);
            } else {
                println!("{}", line(&j));
            }
        }
        JobCmd::AcceptTrust { job } => {
            let j = c.accept_trust(&job).await?;
            if json {
                print_json(&j);
            } else {
                println!("{}", line(&j));
            }
        }
    }
    Ok(())
}

/// Polls the job until it is no longer running.
async fn wait_done(c: &Client, id: &str) -> Result<api::Job> {
    loop {
        let j = c.job(id).await?;
        if j.state != api::JobState::Running {
            return Ok(j);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A live bar of validated units until the job ends (Ctrl-C leaves it running).
async fn follow(c: &Client, id: &str) -> Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} validated  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        let j = c.job(id).await?;
        bar.set_length(j.units);
        bar.set_position(j.validated);
        bar.set_message(format!(
            "done {}  running {}  failed {}  ({})",
            j.done, j.running, j.failed, j.state
        ));
        if j.state != api::JobState::Running {
            bar.finish();
            println!("{}", line(&j));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn volunteer(c: &Client, cmd: VolunteerCmd, json: bool) -> Result<()> {
    let s: api::VolunteerStatus = match cmd {
        VolunteerCmd::On {
            cpus,
            when_idle,
            max_memory,
            group,
        } => {
            let req = api::VolunteerRequest {
                cpus,
                when_idle,
                max_memory,
                group,
            };
            c.volunteer_on(&req).await?
        }
        VolunteerCmd::Off => c.volunteer_off().await?,
        VolunteerCmd::Status => c.volunteer_status().await?,
    };
    if json {
        print_json(&s);
        return Ok(());
    }
    let state = match (&s.paused, s.on) {
        (_, false) => "off".to_string(),
        (Some(why), true) => format!("paused: {why}"),
        (None, true) => "on".to_string(),
    };
    let group = s
        .group
        .as_deref()
        .map(|g| format!(", group {g} only"))
        .unwrap_or_default();
    println!(
        "volunteering {state} ({} cpu{}, up to {} per unit{}{group})",
        s.cpus,
        if s.cpus == 1 { "" } else { "s" },
        human(s.max_memory),
        if s.when_idle { ", when idle" } else { "" },
    );
    println!(
        "completed {}  failed {}  held for masters {}",
        s.completed, s.failed, s.held
    );
    for r in &s.running {
        println!(
            "  running {} of job {} for {} ({} s)",
            r.unit, r.job, r.master, r.seconds
        );
    }
    for m in &s.masters {
        let dropped = if m.dropped { "  dropped" } else { "" };
        println!(
            "  master {}: agreed {}  faults {}  reputation {:.2}{dropped}",
            m.master, m.agreed, m.faults, m.reputation
        );
    }
    Ok(())
}
