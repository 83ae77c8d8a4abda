//! Backups: a folder stored as a `backup` object named after the folder; each run moves
//! only the chunks the vault lacks. Plans (`--every`) run from the upkeep loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kith_core::store::now_secs;

use crate::index::{Index, Kind, Object, Plan};
use crate::state::Inner;
use crate::{Error, InputError, PutReport, codec, publish, put};

/// The name a folder is backed up under: its absolute path.
pub(crate) fn source_of(dir: &Path) -> Result<String, Error> {
    let abs = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    Ok(abs.to_string_lossy().into_owned())
}

pub(crate) async fn backup(
    inner: &Arc<Inner>,
    dir: PathBuf,
    every: Option<u64>,
    k: u8,
    n: u8,
) -> Result<PutReport, Error> {
    let source = source_of(&dir)?;
    if !std::fs::metadata(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .is_dir()
    {
        return Err(InputError::NotAFolder(dir).into());
    }
    let mut report = put::put(inner, dir, source.clone(), Some(Kind::Backup), None, k, n).await?;
    if let Some(every) = every {
        inner.index()?.plans.insert(
            source.clone(),
            Plan {
                dir: source,
                every,
                last: now_secs(),
                k,
                n,
            },
        );
        inner.save().await?;
    }
    report.index_published = publish::publish_or_defer(inner).await;
    Ok(report)
}

/// The backup of `source` (or of the only folder backed up) as it was at `at`
/// (milliseconds since the Unix epoch).
pub(crate) fn pick(ix: &Index, source: Option<&str>, at: Option<u64>) -> Result<Object, Error> {
    let backups: Vec<&Object> = ix
        .objects
        .values()
        .filter(|o| o.kind == Kind::Backup)
        .collect();
    let mut sources: Vec<&str> = backups.iter().map(|o| o.name.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    let source = match (source, sources.as_slice()) {
        (Some(s), _) => {
            let abs = source_of(Path::new(s)).unwrap_or_else(|_| s.to_owned());
            sources
                .iter()
                .find(|x| **x == s || **x == abs)
                .map(|x| (*x).to_owned())
                .ok_or_else(|| Error::NotFound(format!("no backup of {s}")))?
        }
        (None, [one]) => (*one).to_owned(),
        (None, []) => return Err(Error::NotFound("no backups in the vault".into())),
        (None, many) => {
            let many = many.iter().map(|s| (*s).to_owned()).collect();
            return Err(InputError::SeveralBackups(many).into());
        }
    };
    let at = at.unwrap_or(u64::MAX);
    backups
        .into_iter()
        .filter(|o| o.name == source && o.created_ms <= at)
        .max_by_key(|o| (o.created_ms, o.id.clone()))
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("no backup of {source} at or before that time")))
}

/// Runs the plans that are due.
pub(crate) async fn due(inner: &Arc<Inner>) -> Result<(), Error> {
    let now = now_secs();
    let plans: Vec<Plan> = inner
        .index()?
        .plans
        .values()
        .filter(|p| now >= p.last + p.every)
        .cloned()
        .collect();
    for p in plans {
        let (k, n) = match codec::check_shape(p.k, p.n) {
            Ok(()) => (p.k, p.n),
            Err(_) => (inner.config().k, inner.config().n),
        };
        match backup(inner, PathBuf::from(&p.dir), Some(p.every), k, n).await {
            Ok(r) => tracing::info!(dir = %p.dir, moved = r.uploaded, "backup done"),
            Err(e) => tracing::warn!(dir = %p.dir, error = %e, "backup failed"),
        }
    }
    Ok(())
}
