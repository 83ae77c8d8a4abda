//! The node's device key: Ed25519, created once, kept in the data dir with 0600 permissions.

use std::io::Write;
use std::path::Path;

pub use libp2p_identity::{Keypair, PeerId};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("no identity in {0}: run `kith init` first")]
    Missing(String),
}

/// Creates a new key at `path`; fails if one already exists.
pub fn create(path: &Path) -> Result<Keypair, IdentityError> {
    let key = Keypair::generate_ed25519();
    let bytes = key
        .to_protobuf_encoding()
        .map_err(|e| IdentityError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let werr = |source| IdentityError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(werr)?;
    f.write_all(&bytes).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    Ok(key)
}

/// Loads the key at `path`.
pub fn load(path: &Path) -> Result<Keypair, IdentityError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IdentityError::Missing(
                path.parent().unwrap_or(path).display().to_string(),
            ));
        }
        Err(source) => {
            return Err(IdentityError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Corrupt {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_gives_same_peer_and_private_file() {
        let dir = std::env::temp_dir().join(format!("kith-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("key");
        let a = create(&path).map(|k| k.public().to_peer_id());
        let b = load(&path).map(|k| k.public().to_peer_id());
        assert_eq!(a.ok(), b.ok());
        assert!(create(&path).is_err(), "must not overwrite a key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600));
        }
        std::fs::write(&path, b"garbage").unwrap_or_default();
        assert!(matches!(load(&path), Err(IdentityError::Corrupt { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
