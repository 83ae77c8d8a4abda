//! The volunteer loop: find masters (the DHT key of public jobs, and each group's
//! locator), ask one for as many units as there are free slots, run each in the sandbox,
//! return the result; hold results a master could not take and try again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_core::frame;
use kith_core::id::ContentId;
use kith_core::store::now_secs;
use kith_core::sync::{recover, write_atomic};
use kith_overlay::PeerId;
use kith_share::{Output, State};

use super::{HOLD_FOR, Held, MAX_HELD, Prefs};
use crate::Error;
use crate::protocol::{
    self, Blob, INLINE_MAX, JOBS_KEY, MAX_FRAME, Outcome, PROTOCOL, Request, Response, Unit,
    read_blob, write_blob,
};
use crate::spec::{MAX_INPUT, MAX_MODULE};
use crate::state::Inner;

/// How long one exchange with a master may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);
/// How often masters are looked up again (sooner while none is known).
const REDISCOVER: Duration = Duration::from_secs(30);
const REDISCOVER_NONE: Duration = Duration::from_secs(3);
/// How often held results are offered again.
const RETRY_HELD: Duration = Duration::from_secs(5);
/// Masters asked per lookup.
const MAX_MASTERS: usize = 32;
/// How long a module or large input may take to fetch.
const FETCH_PATIENCE: Duration = Duration::from_secs(60);

pub(crate) fn start(inner: &Arc<Inner>) {
    let i = inner.clone();
    inner.tasks.spawn(async move { run(i).await });
}

async fn run(inner: Arc<Inner>) {
    let mut masters: Vec<PeerId> = Vec::new();
    let mut found: Option<Instant> = None;
    let mut not_before: HashMap<PeerId, Instant> = HashMap::new();
    let mut held_tried = Instant::now();
    loop {
        tokio::select! {
            () = inner.tasks.shutdown().cancelled() => break,
            () = inner.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        if held_tried.elapsed() >= RETRY_HELD {
            held_tried = Instant::now();
            offer_held(&inner).await;
        }
        let prefs = inner.prefs();
        let running = recover(&inner.volunteering).running();
        let paused = match (prefs.on, prefs.when_idle) {
            (false, _) => None,
            (true, true) => busy(running),
            (true, false) => None,
        };
        recover(&inner.volunteering).paused = paused.clone();
        if !prefs.on || paused.is_some() {
            continue;
        }
        let free = usize::from(prefs.cpus).saturating_sub(running);
        if free == 0 {
            continue;
        }
        let again = if masters.is_empty() {
            REDISCOVER_NONE
        } else {
            REDISCOVER
        };
        if found.is_none_or(|t| t.elapsed() >= again) {
            masters = discover(&inner, &prefs).await;
            found = Some(Instant::now());
        }
        let now = Instant::now();
        for m in masters.clone() {
            if not_before.get(&m).is_some_and(|t| *t > now) {
                continue;
            }
            match ask(&inner, m, free, &prefs).await {
                Ok(Answer::Units(units)) => {
                    for (unit, input) in units {
                        spawn_unit(&inner, m, unit, input);
                    }
                    break;
                }
                Ok(Answer::NoWork(secs)) => {
                    not_before.insert(m, now + Duration::from_secs(secs.clamp(1, 600)));
                }
                Err(e) => {
                    tracing::debug!(master = %m, error = %e, "cannot ask for work");
                    not_before.insert(m, now + Duration::from_secs(10));
                }
            }
        }
        not_before.retain(|_, t| *t > now);
    }
}

/// Why the machine counts as busy now, if it does: its load (beyond this node's own
/// units) above half its cores.
fn busy(running: usize) -> Option<String> {
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let others = load - running as f64;
    (others > cores / 2.0).then(|| format!("the machine is busy (load {load:.2} on {cores} cores)"))
}

/// Masters with open jobs this node may run: public ones (unless only a group's are
/// wanted) and those of its groups.
async fn discover(inner: &Arc<Inner>, prefs: &Prefs) -> Vec<PeerId> {
    let mut keys: Vec<Vec<u8>> = match &prefs.group {
        Some(g) => inner.scopes.locator(g, JOBS_KEY).into_iter().collect(),
        None => {
            let mut k = vec![JOBS_KEY.to_vec()];
            k.extend(inner.scopes.locators(JOBS_KEY).into_iter().map(|(_, l)| l));
            k
        }
    };
    keys.truncate(16);
    let me = inner.overlay.peer_id();
    let mut out = Vec::new();
    for key in keys {
        let Ok(mut rx) = inner.overlay.find_providers(key).await else {
            continue;
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while let Ok(Some(p)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if p != me && !out.contains(&p) && out.len() < MAX_MASTERS {
                out.push(p);
            }
        }
    }
    tracing::debug!(masters = out.len(), "masters with open jobs");
    out
}

enum Answer {
    Units(Vec<(Unit, Option<Vec<u8>>)>),
    NoWork(u64),
}

async fn ask(
    inner: &Arc<Inner>,
    master: PeerId,
    free: usize,
    prefs: &Prefs,
) -> Result<Answer, Error> {
    let exchange = async {
        let mut s = inner.overlay.open_stream(master, PROTOCOL).await?;
        let req = Request::Work {
            slots: u8::try_from(free).unwrap_or(protocol::MAX_SLOTS),
            memory: prefs.max_memory,
            group: prefs.group.clone(),
        };
        frame::write(&mut s, &req).await?;
        let resp = frame::read::<_, Response>(&mut s, MAX_FRAME)
            .await?
            .ok_or_else(|| Error::Io("the master closed the stream".into()))?;
        match resp {
            Response::Units { units, standing } => {
                recover(&inner.volunteering).scored(&master.to_string(), standing);
                let mut out = Vec::with_capacity(units.len());
                for u in units.into_iter().take(free) {
                    let input = match u.input.content {
                        Some(_) => None,
                        None => {
                            let b = read_blob(&mut s, INLINE_MAX).await?;
                            if protocol::hash(&b) != u.input.hash {
                                return Err(Error::Io(
                                    "an inline input does not match its hash".into(),
                                ));
                            }
                            Some(b)
                        }
                    };
                    out.push((u, input));
                }
                Ok(Answer::Units(out))
            }
            Response::NoWork {
                retry_after,
                reason,
                standing,
            } => {
                recover(&inner.volunteering).scored(&master.to_string(), standing);
                tracing::debug!(%master, %reason, "no work");
                Ok(Answer::NoWork(retry_after))
            }
            Response::Busy => Ok(Answer::NoWork(2)),
            other => Err(Error::Io(format!("unexpected answer {other:?}"))),
        }
    };
    tokio::time::timeout(ASK_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(Error::Io("the master did not answer in time".into())))
}

fn spawn_unit(inner: &Arc<Inner>, master: PeerId, unit: Unit, input: Option<Vec<u8>>) {
    let m = master.to_string();
    if !recover(&inner.volunteering).begin(&unit.job, &unit.name, &m) {
        return;
    }
    let i = inner.clone();
    inner.tasks.spawn(async move {
        let outcome = run_unit(&i, master, &unit, input).await;
        let (job, name) = (unit.job.clone(), unit.name.clone());
        match outcome {
            Ok((outcome, output)) => {
                {
                    let mut v = recover(&i.volunteering);
                    match outcome {
                        Outcome::Done { .. } => v.completed += 1,
                        Outcome::Failed { .. } => v.failed += 1,
                    }
                }
                let held = Held {
                    master: m,
                    job: job.clone(),
                    unit: name.clone(),
                    outcome,
                    output,
                    since: now_secs(),
                };
                if let Err(e) = report(&i, &held).await {
                    tracing::info!(%master, job = %job, unit = %name, error = %e, "master unreachable; result held");
                    hold(&i, held).await;
                }
            }
            Err(e) => tracing::warn!(%master, job = %job, unit = %name, error = %e, "unit not run"),
        }
        recover(&i.volunteering).end(&job, &name);
        i.wake.notify_one();
    });
}

/// Fetches what the unit needs and runs it; the outcome and its output.
async fn run_unit(
    inner: &Arc<Inner>,
    master: PeerId,
    unit: &Unit,
    input: Option<Vec<u8>>,
) -> Result<(Outcome, Vec<u8>), Error> {
    let prefs = inner.prefs();
    if unit.limits.memory > prefs.max_memory {
        return Err(Error::Prefs(format!(
            "refused: the unit wants {} bytes of memory, over the {} offered",
            unit.limits.memory, prefs.max_memory
        )));
    }
    let dir = inner.config.dir.join("cache");
    let module = fetch(inner, &unit.module, master, &dir, MAX_MODULE).await?;
    let input = match input {
        Some(b) => b,
        None => fetch(inner, &unit.input, master, &dir, MAX_INPUT).await?,
    };
    let sandbox = inner.sandbox()?;
    let (limits, name) = (unit.limits, unit.name.clone());
    let ran = inner
        .tasks
        .blocking(move || sandbox.run(&module, &[&name], &input, &limits))
        .await?;
    Ok(match ran {
        Ok(out) => {
            let mut bytes = out.stdout;
            if inner.config.cheat {
                // Each cheat differs, so cheaters do not agree with one another either.
                bytes.extend_from_slice(&rand::random::<[u8; 8]>());
            }
            tracing::debug!(job = %unit.job, unit = %unit.name, fuel = out.fuel, ms = out.took.as_millis() as u64, "unit done");
            let o = Outcome::Done {
                hash: protocol::hash(&bytes),
                size: bytes.len() as u64,
            };
            (o, bytes)
        }
        Err(fault) => {
            tracing::info!(job = %unit.job, unit = %unit.name, %fault, "unit faulted");
            (Outcome::Failed { fault }, Vec::new())
        }
    })
}

/// Content by its content ID, from the store (fetched through share from the master and
/// whoever else has it), checked against its BLAKE3 hash; kept in `dir` by hash.
async fn fetch(
    inner: &Arc<Inner>,
    blob: &Blob,
    master: PeerId,
    dir: &Path,
    max: u64,
) -> Result<Vec<u8>, Error> {
    if blob.size > max || blob.hash.len() != 64 || !blob.hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(Error::Io(format!(
            "refused: content of {} bytes or a bad hash",
            blob.size
        )));
    }
    let path = dir.join(&blob.hash);
    let _one = inner.fetching.lock().await;
    if let Ok(b) = tokio::fs::read(&path).await
        && protocol::hash(&b) == blob.hash
    {
        return Ok(b);
    }
    let content = blob
        .content
        .as_deref()
        .ok_or_else(|| Error::Io("no content ID for content that is not inline".into()))?;
    let id: ContentId = content
        .parse()
        .map_err(|_| Error::Io(format!("bad content ID {content}")))?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!("{}.part", blob.hash));
    inner.share.hint(id, vec![master]);
    let mut rx = inner
        .share
        .get(id, Output::Exact(tmp.clone()), Some(FETCH_PATIENCE))
        .await?;
    loop {
        let p = rx.borrow_and_update().clone();
        if p.finished() {
            if p.state != State::Done {
                return Err(Error::Io(p.error.unwrap_or_else(|| "fetch failed".into())));
            }
            break;
        }
        if rx.changed().await.is_err() {
            break;
        }
    }
    let b = tokio::fs::read(&tmp)
        .await
        .map_err(|e| Error::io(&tmp, e))?;
    if protocol::hash(&b) != blob.hash {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(Error::Io("fetched content does not match its hash".into()));
    }
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|e| Error::io(&path, e))?;
    Ok(b)
}

/// Gives a result to its master. Refused results are not retried (the reason is logged).
async fn report(inner: &Arc<Inner>, h: &Held) -> Result<(), Error> {
    let master: PeerId = h
        .master
        .parse()
        .map_err(|_| Error::Io(format!("bad master {}", h.master)))?;
    let exchange = async {
        let mut s = inner.overlay.open_stream(master, PROTOCOL).await?;
        let req = Request::Result {
            job: h.job.clone(),
            unit: h.unit.clone(),
            outcome: h.outcome.clone(),
        };
        frame::write(&mut s, &req).await?;
        if matches!(h.outcome, Outcome::Done { .. }) {
            write_blob(&mut s, &h.output).await?;
        }
        let resp = frame::read::<_, Response>(&mut s, MAX_FRAME)
            .await?
            .ok_or_else(|| Error::Io("the master closed the stream".into()))?;
        match resp {
            Response::Accepted { standing } => {
                recover(&inner.volunteering).scored(&h.master, standing);
                Ok(())
            }
            Response::Refused { reason } => {
                tracing::info!(master = %h.master, job = %h.job, unit = %h.unit, %reason, "result refused by its master");
                Ok(())
            }
            Response::Busy => Err(Error::Io("the master is busy".into())),
            other => Err(Error::Io(format!("unexpected answer {other:?}"))),
        }
    };
    tokio::time::timeout(ASK_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(Error::Io("the master did not answer in time".into())))
}

async fn hold(inner: &Arc<Inner>, h: Held) {
    {
        let mut v = recover(&inner.volunteering);
        if v.held.len() >= MAX_HELD {
            v.held.remove(0);
        }
        v.held.push(h);
    }
    save_held(inner).await;
}

async fn save_held(inner: &Arc<Inner>) {
    let (file, bytes) = {
        let v = recover(&inner.volunteering);
        (
            v.held_file(),
            serde_json::to_vec(&v.held).unwrap_or_default(),
        )
    };
    let r = inner
        .tasks
        .blocking(move || write_atomic(&file, &bytes))
        .await;
    if !matches!(r, Ok(Ok(()))) {
        tracing::warn!("cannot save held results");
    }
}

/// Offers held results to their masters again; drops those too old.
async fn offer_held(inner: &Arc<Inner>) {
    let held: Vec<Held> = std::mem::take(&mut recover(&inner.volunteering).held);
    if held.is_empty() {
        return;
    }
    let mut keep = Vec::new();
    for h in held {
        if now_secs().saturating_sub(h.since) > HOLD_FOR {
            continue;
        }
        if report(inner, &h).await.is_err() {
            keep.push(h);
        }
    }
    recover(&inner.volunteering).held.extend(keep);
    save_held(inner).await;
}
