//! Cycle sharing: the types of `/jobs` and `/volunteer`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use kith_compute::JobState;

/// `POST /jobs`: a job from a `JOB.toml` (`spec`), or from its parts (`wasm` and `inputs`).
/// Paths are on the node's machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm: Option<String>,
    /// A folder: one work unit per file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `false`: no unit goes to a trusted volunteer alone, every one at full quorum
    /// (overrides `trust` in the JOB.toml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<bool>,
}

/// A job and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub job: String,
    pub name: String,
    pub state: JobState,
    pub quorum: u8,
    /// Whether units may go to a volunteer this node trusts alone (adaptive
    /// replication); `false` when the job forbids it.
    pub trust: bool,
    pub group: Option<String>,
    pub created: u64,
    pub units: u64,
    /// Units with a result in hand.
    pub done: u64,
    /// Units whose result a quorum agreed on, or that are accepted on trust.
    pub validated: u64,
    /// Of `validated`, units whose result is one trusted volunteer's alone, not yet
    /// confirmed by a second person nor accepted by the owner (`POST
    /// /jobs/{job}/accept-trust`).
    pub on_trust: u64,
    /// The first 100 of those units, by name.
    pub on_trust_units: Vec<String>,
    /// Copies of units out on volunteers now.
    pub running: u64,
    pub failed: u64,
}

/// `POST /jobs/{job}/results`: where to write the validated outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultsRequest {
    pub dir: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResultsWritten {
    pub dir: String,
    /// The units written, one file each named after its input.
    pub units: Vec<String>,
    /// Units not validated yet (or failed), not written.
    pub missing: u64,
}

/// `PUT /volunteer`: donate cycles with these limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolunteerRequest {
    #[serde(default = "one")]
    pub cpus: u8,
    #[serde(default)]
    pub when_idle: bool,
    /// Bytes one unit may use (default 512 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<u64>,
    /// Only this group's jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

fn one() -> u8 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunningUnit {
    pub job: String,
    pub unit: String,
    pub master: String,
    pub seconds: u64,
}

/// How one master scores this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MasterStanding {
    pub master: String,
    pub agreed: u64,
    pub faults: u64,
    pub reputation: f64,
    pub dropped: bool,
}

/// `GET /volunteer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolunteerStatus {
    pub on: bool,
    pub cpus: u8,
    pub when_idle: bool,
    pub max_memory: u64,
    pub group: Option<String>,
    /// Why work is paused, when it is.
    pub paused: Option<String>,
    pub running: Vec<RunningUnit>,
    /// Units run to a result since the node started.
    pub completed: u64,
    /// Units that faulted in the sandbox.
    pub failed: u64,
    /// Results held for masters that could not be reached.
    pub held: u64,
    /// The lowest reputation a master gave this node, where known (0 to 1).
    pub reputation: Option<f64>,
    pub masters: Vec<MasterStanding>,
}
