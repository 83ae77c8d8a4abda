//! A job as its owner writes it (`JOB.toml`), checked and loaded.
//!
//! ```toml
//! name = "fft"                # shown in status (default: the file's name)
//! wasm = "fft.wasm"           # the module, relative to this file
//! inputs = "units"            # a folder: one work unit per file, named after it
//! quorum = 2                  # distinct volunteers that must agree (1..=8)
//! group = "GROUP"             # optional: only that group's members volunteer
//! validator = "same.wasm"     # optional: decides whether two results agree
//! floats = "canonical"        # or "native": faster floats, NaN bits may differ by CPU
//! trust = true                # false: never a unit to a trusted volunteer alone
//!
//! [limits]                    # per work unit
//! fuel = 20_000_000_000       # instructions, about (deterministic: the same everywhere)
//! memory = "256Mi"
//! output = "1Mi"
//! time = "10m"                # wall clock on the volunteer (a guard; fuel decides)
//! deadline = "30m"            # then the unit is issued to someone else
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use kith_core::units::{parse_duration, parse_rate};
use serde::{Deserialize, Serialize};

/// The largest module kith runs.
pub const MAX_MODULE: u64 = 64 << 20;
/// The largest work unit input.
pub const MAX_INPUT: u64 = 64 << 20;
/// Work units per job.
pub const MAX_UNITS: usize = 100_000;
/// Memory per unit.
pub const MAX_MEMORY: u64 = 4 << 30;
/// Output per unit.
pub const MAX_OUTPUT: u64 = 64 << 20;
pub const MAX_QUORUM: u8 = 8;
/// The size of `JOB.toml` itself.
const MAX_SPEC: u64 = 64 << 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("JOB.toml: {0}")]
    Invalid(String),
}

/// What each work unit may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub fuel: u64,
    pub memory: u64,
    pub output: u64,
    /// Seconds of wall clock on the volunteer.
    pub time: u64,
    /// Seconds before an issued unit is issued again.
    pub deadline: u64,
    /// Floating-point NaNs canonicalised, so outputs are the same bytes on every CPU
    /// (`floats = "canonical"`, the default). `floats = "native"` runs float-heavy code
    /// up to 3x faster; volunteers on different CPU architectures may then disagree on
    /// outputs that carry NaN bits, which the quorum catches as disagreement.
    #[serde(default = "yes")]
    pub canonical_nans: bool,
}

fn yes() -> bool {
    true
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 50_000_000_000,
            memory: 256 << 20,
            output: 1 << 20,
            time: 600,
            deadline: 1800,
            canonical_nans: true,
        }
    }
}

impl Limits {
    pub fn time(&self) -> Duration {
        Duration::from_secs(self.time)
    }

    fn check(&self) -> Result<(), SpecError> {
        let bad = |what: &str| Err(SpecError::Invalid(what.into()));
        if self.fuel == 0 {
            return bad("limits.fuel must be above 0");
        }
        if self.memory < 64 << 10 || self.memory > MAX_MEMORY {
            return bad("limits.memory must be between 64Ki and 4Gi");
        }
        if self.output == 0 || self.output > MAX_OUTPUT {
            return bad("limits.output must be between 1 byte and 64Mi");
        }
        if self.time == 0 || self.deadline < self.time {
            return bad("limits.deadline must be at least limits.time, and both above 0");
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Option<String>,
    wasm: String,
    inputs: String,
    quorum: Option<u8>,
    group: Option<String>,
    validator: Option<String>,
    floats: Option<String>,
    trust: Option<bool>,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: Option<u64>,
    memory: Option<String>,
    output: Option<String>,
    time: Option<String>,
    deadline: Option<String>,
}

/// A checked job, its files still on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub name: String,
    pub wasm: PathBuf,
    /// Work units: name and file, sorted by name.
    pub inputs: Vec<(String, PathBuf)>,
    pub quorum: u8,
    pub group: Option<String>,
    pub validator: Option<PathBuf>,
    pub limits: Limits,
    /// Whether a unit may go to a volunteer the master trusts alone (adaptive
    /// replication); `false`: every unit at full quorum.
    pub trust: bool,
}

impl JobSpec {
    /// Reads and checks `JOB.toml` (blocking).
    pub fn load(file: &Path) -> Result<Self, SpecError> {
        let text = read_small(file)?;
        let raw: Raw = toml::from_str(&text)
            .map_err(|e| SpecError::Invalid(e.message().to_string() + &line_of(&text, e.span())))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let name = raw.name.unwrap_or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "job".into())
        });
        let mut limits = Limits::default();
        let l = &raw.limits;
        let size = |v: &Option<String>, d: u64, what: &str| -> Result<u64, SpecError> {
            v.as_deref().map_or(Ok(d), |s| {
                parse_rate(s).map_err(|e| SpecError::Invalid(format!("limits.{what}: {e}")))
            })
        };
        let secs = |v: &Option<String>, d: u64, what: &str| -> Result<u64, SpecError> {
            v.as_deref().map_or(Ok(d), |s| {
                parse_duration(s).map_err(|e| SpecError::Invalid(format!("limits.{what}: {e}")))
            })
        };
        limits.fuel = l.fuel.unwrap_or(limits.fuel);
        limits.memory = size(&l.memory, limits.memory, "memory")?;
        limits.output = size(&l.output, limits.output, "output")?;
        limits.time = secs(&l.time, limits.time, "time")?;
        limits.deadline = secs(&l.deadline, limits.deadline.max(limits.time), "deadline")?;
        limits.canonical_nans = match raw.floats.as_deref() {
            None | Some("canonical") => true,
            Some("native") => false,
            Some(other) => {
                return Err(SpecError::Invalid(format!(
                    "floats must be \"canonical\" or \"native\", not {other:?}"
                )));
            }
        };
        let mut spec = Self::new(
            name,
            base.join(&raw.wasm),
            &base.join(&raw.inputs),
            raw.quorum.unwrap_or(2),
            raw.group,
            raw.validator.map(|v| base.join(v)),
            limits,
        )?;
        spec.trust = raw.trust.unwrap_or(true);
        Ok(spec)
    }

    /// A job from a module and its inputs folder (`kith job submit --wasm --inputs`),
    /// with the defaults: named after the module's file, a quorum of 2, default limits
    /// (blocking: it reads the folder).
    pub fn from_module(
        name: Option<String>,
        wasm: PathBuf,
        inputs: &Path,
        quorum: Option<u8>,
    ) -> Result<Self, SpecError> {
        let name = name.unwrap_or_else(|| {
            wasm.file_stem()
                .map_or_else(|| "job".into(), |s| s.to_string_lossy().into_owned())
        });
        Self::new(
            name,
            wasm,
            inputs,
            quorum.unwrap_or(2),
            None,
            None,
            Limits::default(),
        )
    }

    /// A job from its parts (as `kith job submit --wasm --inputs` gives them), checked.
    pub fn new(
        name: String,
        wasm: PathBuf,
        inputs: &Path,
        quorum: u8,
        group: Option<String>,
        validator: Option<PathBuf>,
        limits: Limits,
    ) -> Result<Self, SpecError> {
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(SpecError::Invalid(
                "name must be 1 to 200 printable characters".into(),
            ));
        }
        if quorum == 0 || quorum > MAX_QUORUM {
            return Err(SpecError::Invalid(format!(
                "quorum must be 1 to {MAX_QUORUM}"
            )));
        }
        limits.check()?;
        file_size(&wasm, MAX_MODULE)?;
        if let Some(v) = &validator {
            file_size(v, MAX_MODULE)?;
        }
        Ok(Self {
            name,
            wasm,
            inputs: units(inputs)?,
            quorum,
            group,
            validator,
            limits,
            trust: true,
        })
    }
}

/// The files of an inputs folder, sorted by name; each a unit.
fn units(dir: &Path) -> Result<Vec<(String, PathBuf)>, SpecError> {
    let err = |reason: String| SpecError::File {
        path: dir.display().to_string(),
        reason,
    };
    let rd = std::fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| err(e.to_string()))?;
        let path = entry.path();
        if !entry.file_type().map_err(|e| err(e.to_string()))?.is_file() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            return Err(err(format!("{}: file names must be UTF-8", path.display())));
        };
        if name.starts_with('.') {
            continue;
        }
        if out.len() >= MAX_UNITS {
            return Err(err(format!("more than {MAX_UNITS} work units")));
        }
        file_size(&path, MAX_INPUT)?;
        out.push((name, path));
    }
    if out.is_empty() {
        return Err(err("no work units (one file per unit)".into()));
    }
    out.sort();
    Ok(out)
}

fn file_size(path: &Path, max: u64) -> Result<u64, SpecError> {
    let err = |reason: String| SpecError::File {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a file".into()));
    }
    if meta.len() > max {
        return Err(err(format!(
            "{} bytes, over the {max}-byte limit",
            meta.len()
        )));
    }
    Ok(meta.len())
}

fn read_small(file: &Path) -> Result<String, SpecError> {
    file_size(file, MAX_SPEC)?;
    std::fs::read_to_string(file).map_err(|e| SpecError::File {
        path: file.display().to_string(),
        reason: e.to_string(),
    })
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| {
        let line = text.get(..s.start).map_or(0, |t| t.lines().count().max(1));
        format!(" (line {line})")
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &Path, toml: &str) -> Result<JobSpec, SpecError> {
        let f = dir.join("JOB.toml");
        std::fs::write(&f, toml).map_err(|e| SpecError::Invalid(e.to_string()))?;
        JobSpec::load(&f)
    }

    #[test]
    fn loads_a_job_and_its_units() -> Result<(), Box<dyn std::error::Error>> {
        let d = tempfile::tempdir()?;
        std::fs::write(d.path().join("a.wasm"), b"\0asm")?;
        std::fs::create_dir(d.path().join("in"))?;
        for u in ["u2", "u1", ".hidden"] {
            std::fs::write(d.path().join("in").join(u), u)?;
        }
        let j = job(
            d.path(),
            "wasm = \"a.wasm\"\ninputs = \"in\"\nquorum = 3\n[limits]\nmemory = \"64Mi\"\ntime = \"1m\"\n",
        )?;
        assert_eq!(j.name, "JOB");
        assert_eq!(j.quorum, 3);
        assert!(j.trust, "trust is allowed unless the job says otherwise");
        assert_eq!(j.limits.memory, 64 << 20);
        assert_eq!(j.limits.time, 60);
        let names: Vec<_> = j.inputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["u1", "u2"]);
        let j = job(
            d.path(),
            "wasm = \"a.wasm\"\ninputs = \"in\"\ntrust = false\n",
        )?;
        assert!(!j.trust);
        Ok(())
    }

    #[test]
    fn refuses_bad_jobs_with_a_reason() -> Result<(), Box<dyn std::error::Error>> {
        let d = tempfile::tempdir()?;
        std::fs::write(d.path().join("a.wasm"), b"\0asm")?;
        std::fs::create_dir(d.path().join("in"))?;
        std::fs::create_dir(d.path().join("empty"))?;
        std::fs::write(d.path().join("in").join("u1"), "x")?;
        let cases = [
            ("wasm = 3", "invalid type"),
            (
                "wasm = \"a.wasm\"\ninputs = \"in\"\ncolour = 1",
                "unknown field",
            ),
            ("wasm = \"a.wasm\"\ninputs = \"in\"\nquorum = 0", "quorum"),
            (
                "wasm = \"a.wasm\"\ninputs = \"in\"\ntrust = \"no\"",
                "invalid type",
            ),
            ("wasm = \"nope.wasm\"\ninputs = \"in\"", "nope.wasm"),
            ("wasm = \"a.wasm\"\ninputs = \"empty\"", "no work units"),
            (
                "wasm = \"a.wasm\"\ninputs = \"in\"\n[limits]\nmemory = \"9Gi\"",
                "memory",
            ),
            (
                "wasm = \"a.wasm\"\ninputs = \"in\"\n[limits]\ntime = \"1x\"",
                "limits.time",
            ),
        ];
        for (toml, reason) in cases {
            let e = job(d.path(), toml).err().ok_or("accepted")?.to_string();
            assert!(e.contains(reason), "{toml:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        Ok(())
    }
}
