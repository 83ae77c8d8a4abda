//! The data directory: `key` (0600), `people/person.key` (0600, the person key, on the
//! device that made the person), `config.toml`, `meta.redb`, `api.token` (0600) and,
//! while the node runs, `api.addr`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kith_core::identity::{self, IdentityError, Keypair};
use kith_core::store::{Store, StoreError};

use crate::config::{Config, ConfigError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    #[error("cannot use data dir {path}: {reason}")]
    Io { path: String, reason: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("another kith node is already running with data dir {0}")]
    InUse(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Person(#[from] kith_people::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    dir: PathBuf,
}

fn io(path: &Path, e: impl ToString) -> HomeError {
    HomeError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| io(path, e))?;
    f.write_all(bytes).map_err(|e| io(path, e))?;
    f.sync_all().map_err(|e| io(path, e))
}

impl Home {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("key")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    fn token_path(&self) -> PathBuf {
        self.dir.join("api.token")
    }

    fn addr_path(&self) -> PathBuf {
        self.dir.join("api.addr")
    }

    pub fn is_initialised(&self) -> bool {
        self.key_path().exists()
    }

    /// Creates the data dir, key, default config and API token where missing. Returns
    /// true when something was created.
    /// Makes this new device a device of the person whose key is in `file` (a copy of
    /// `people/person.key` from the device where the person was made): with it, the
    /// vault's index opens here too. Refused once this device has a person.
    pub fn adopt_person_key(&self, file: &Path) -> Result<(), HomeError> {
        let people = self.service_dir("people");
        if people.join("person.json").exists() {
            return Err(HomeError::Io {
                path: self.dir.display().to_string(),
                reason: "this device already acts for a person; use a new data dir".into(),
            });
        }
        identity::load(file)?;
        let bytes = std::fs::read(file).map_err(|e| io(file, e))?;
        std::fs::create_dir_all(&people).map_err(|e| io(&people, e))?;
        write_private(&people.join("person.key"), &bytes)
    }

    pub fn init(&self) -> Result<bool, HomeError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let mut created = false;
        if !self.key_path().exists() {
            identity::create(&self.key_path())?;
            created = true;
        }
        // The person this device acts for: a key of its own, apart from the device key.
        let device = self.keypair()?;
        created |= kith_people::init(&self.service_dir("people"), &device)?;
        if !self.config_path().exists() {
            let text = Config::commented();
            std::fs::write(self.config_path(), text).map_err(|e| io(&self.config_path(), e))?;
            created = true;
        }
        if !self.token_path().exists() {
            let token: [u8; 32] = rand::random();
            let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
            write_private(&self.token_path(), hex.as_bytes())?;
            created = true;
        }
        Ok(created)
    }

    pub fn keypair(&self) -> Result<Keypair, HomeError> {
        Ok(identity::load(&self.key_path())?)
    }

    pub fn config(&self) -> Result<Config, HomeError> {
        Ok(Config::load(&self.config_path())?)
    }

    pub fn token(&self) -> Result<String, HomeError> {
        std::fs::read_to_string(self.token_path())
            .map(|s| s.trim().to_owned())
            .map_err(|e| io(&self.token_path(), e))
    }

    /// Opens the store. A damaged one is moved aside (the path it went to is returned) and
    /// a new one created: services rebuild what they can.
    pub fn open_store(&self) -> Result<(Store, Option<PathBuf>), HomeError> {
        let path = self.dir.join("meta.redb");
        match Store::open_or_recover(&path) {
            Ok(s) => Ok(s),
            Err(StoreError::InUse { .. }) => Err(HomeError::InUse(self.dir.display().to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a name book kept by an earlier version under `search/` to `names/`.
    pub(crate) fn migrate_names_book(&self) {
        let old = self.service_dir("search").join("names.json");
        let new_dir = self.service_dir("names");
        let new = new_dir.join("names.json");
        if old.exists() && !new.exists() {
            let moved =
                std::fs::create_dir_all(&new_dir).and_then(|()| std::fs::rename(&old, &new));
            if let Err(e) = moved {
                tracing::warn!(error = %e, "cannot move the name book to names/");
            }
        }
    }

    /// Where service `name` keeps its own files.
    pub fn service_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Address of the running node's API, if it wrote one.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        std::fs::read_to_string(self.addr_path())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub(crate) fn write_api_addr(&self, addr: SocketAddr) -> Result<(), HomeError> {
        let _ = std::fs::write(self.dir.join("api.port"), addr.port().to_string());
        std::fs::write(self.addr_path(), addr.to_string()).map_err(|e| io(&self.addr_path(), e))
    }

    /// The port the API had last time (kept after the node stops, so the web UI's address
    /// stays the same across restarts when the config asks for any port).
    pub(crate) fn last_api_port(&self) -> Option<u16> {
        std::fs::read_to_string(self.dir.join("api.port"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub(crate) fn remove_api_addr(&self) {
        let _ = std::fs::remove_file(self.addr_path());
    }
}
