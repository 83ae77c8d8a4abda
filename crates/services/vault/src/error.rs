//! The vault's errors: each keeps what caused it (the I/O error and its path, the decode
//! error, each holder's failure), and reads as one line a user can act on.

use std::fmt;
use std::path::PathBuf;

use kith_core::chunker::ChunkError;
use kith_core::sync::Poisoned;
use kith_core::tasks::TaskError;
use kith_overlay::{OverlayError, PeerId};

use crate::client::Failure;
use crate::codec::CodecError;
use crate::index::IndexError;
use crate::root::KeyError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("vault index: {0}")]
    Index(#[from] IndexError),
    #[error("vault key: {0}")]
    Key(#[from] KeyError),
    #[error("not in the vault: {0}")]
    NotFound(String),
    #[error(
        "only {have} holders offer space to this node; k-of-n with n={n} needs {n} (lower --n, or add holders with `kith up --offer SIZE`)"
    )]
    TooFewHolders { have: usize, n: u8 },
    #[error(
        "not enough space offered: this needs {need} bytes on holders, they offer this node {have}"
    )]
    NoSpace { need: u64, have: u64 },
    #[error("not a member of group {0}")]
    NotMember(String),
    #[error("no holder took a share: {0}")]
    Placement(Refused),
    #[error("{cause}; nothing was stored{}", released_note(*released, *left))]
    NotStored {
        #[source]
        cause: Box<Error>,
        /// Shares already placed that their holders dropped.
        released: usize,
        /// Shares already placed whose holders did not answer yet (asked again later).
        left: usize,
    },
    #[error("cannot restore: {0}")]
    Unavailable(Shortfall),
    #[error("no vault index found for {0} (nothing stored yet, or its holders are away)")]
    NoRoot(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error(transparent)]
    Frame(#[from] kith_core::frame::FrameError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
}

fn released_note(released: usize, left: usize) -> String {
    match (released, left) {
        (0, 0) => String::new(),
        (r, 0) => format!(" (the {r} share(s) already placed were released)"),
        (r, l) => format!(
            " (of the shares already placed, {r} were released, {l} will be when their holders answer)"
        ),
    }
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What the user asked for cannot be done with what they gave.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    #[error("more than {0} files")]
    TooManyFiles(usize),
    #[error(transparent)]
    Unreadable(#[from] ChunkError),
    #[error("{} changed while it was being stored", .0.display())]
    Changed(PathBuf),
    #[error("{} is not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error("backups of several folders: name one of {}", .0.join(", "))]
    SeveralBackups(Vec<String>),
}

/// Why no holder took a share: each holder tried and its failure, in the order tried.
#[derive(Debug, Default)]
pub struct Refused {
    pub tried: Vec<(PeerId, Failure)>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (peer, why) in &self.tried {
            write!(f, "{peer}: {why}; ")?;
        }
        f.write_str("no other holder has room for it")
    }
}

/// Too few shares of a segment came back to open it: each holder that failed, and why.
#[derive(Debug)]
pub struct Shortfall {
    pub got: usize,
    pub shares: usize,
    pub k: u8,
    pub failures: Vec<(String, Failure)>,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} shares of a segment answered (need {})",
            self.got, self.shares, self.k
        )?;
        let mut sep = ": ";
        for (holder, why) in &self.failures {
            write!(f, "{sep}{holder}: {why}")?;
            sep = "; ";
        }
        Ok(())
    }
}
