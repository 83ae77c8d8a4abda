//! kith people service: a person (one key) and the devices that act for it.
//!
//! - [`People`]: the handle: who am I, link a device (`link`/`join`), remove one, which
//!   person a connected peer belongs to.
//! - [`Config`], [`Error`], [`Event`], [`Me`]; [`init`] makes the person at `kith init`.
//! - [`protocol`]: `/kith/person/1.0.0` (certificates exchanged when devices connect) and
//!   `/kith/link/1.0.0` (linking a device with a one-time code).
//! - `server`, `client`: the two sides of both; `book`: the person on disk.
//!
//! The person key stays on the device where the person was made; other devices get a
//! certificate from it when they are linked, and only it can link or revoke devices.

mod book;
mod client;
mod codes;
mod error;
pub mod protocol;
mod server;
mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kith_core::person::{DeviceCert, PersonId, Revocation};
use kith_core::store::now_secs;
use kith_core::tasks::Tasks;
use kith_overlay::{Keypair, Overlay, PeerId};
use serde::Serialize;
use tokio::sync::broadcast;

pub use book::init;
pub use error::{Error, Refusal};
pub use protocol::LinkCode;
use state::Inner;

/// How long a link code may be used.
pub const LINK_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Config {
    /// Where `person.json` and `person.key` live.
    pub dir: PathBuf,
}

/// Something the people service learned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connected peer proved which person it acts for.
    Identified { peer: PeerId, person: PersonId },
    /// A device was linked to this person.
    DeviceAdded(DeviceCert),
    /// This person revoked one of its devices (groups apply it).
    DeviceRevoked(Revocation),
    /// This device now acts for another person (it was linked).
    PersonChanged(PersonId),
}

/// One device of this person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub device: String,
    /// Seconds since the Unix epoch the certificate was issued.
    pub issued: u64,
    /// This device.
    pub this: bool,
    pub revoked: bool,
}

/// Who this device acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Me {
    pub person: PersonId,
    pub devices: Vec<Device>,
    /// Whether this device holds the person key (can link and revoke devices).
    pub holds_person_key: bool,
}

/// The people service handle. Cheap to clone.
#[derive(Clone)]
pub struct People {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for People {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("People").finish_non_exhaustive()
    }
}

impl People {
    /// Loads the person (made by [`init`] if there is none), serves both protocols and
    /// exchanges certificates with every peer that connects.
    pub async fn start(
        config: Config,
        overlay: Overlay,
        device: Keypair,
        registry: &mut prometheus_client::registry::Registry,
        tasks: Tasks,
    ) -> Result<Self, Error> {
        let inner = Inner::open(config, overlay, device, registry, tasks).await?;
        server::start(&inner)?;
        let i = inner.clone();
        inner
            .tasks()
            .spawn(async move { client::greet_peers(&i).await });
        Ok(Self { inner })
    }

    /// This device's person and devices.
    pub fn me(&self) -> Result<Me, Error> {
        let b = self.inner.book()?;
        let this = self.inner.overlay().peer_id().to_string();
        let devices = b
            .devices
            .iter()
            .map(|c| Device {
                device: c.device.clone(),
                issued: c.issued,
                this: c.device == this,
                revoked: b.revoked.iter().any(|r| r.device == c.device),
            })
            .collect();
        Ok(Me {
            person: b.person,
            devices,
            holds_person_key: self.inner.person_key()?.is_some(),
        })
    }

    /// The person key, if this device holds it.
    pub fn person_key(&self) -> Result<Option<Keypair>, Error> {
        self.inner.person_key()
    }

    pub fn person(&self) -> Result<PersonId, Error> {
        Ok(self.inner.book()?.person)
    }

    /// This device's certificate.
    pub fn cert(&self) -> Result<DeviceCert, Error> {
        self.inner.my_cert()
    }

    /// Certificates of this person's devices that are not revoked.
    pub fn devices(&self) -> Result<Vec<DeviceCert>, Error> {
        let b = self.inner.book()?;
        Ok(b.devices
            .iter()
            .filter(|c| !b.revoked.iter().any(|r| r.device == c.device))
            .cloned()
            .collect())
    }

    /// The person a connected peer proved it acts for.
    pub fn person_of(&self, peer: &PeerId) -> Option<PersonId> {
        self.inner.person_of(peer)
    }

    /// Connected peers that proved which person they act for.
    pub fn identified(&self) -> Vec<(PeerId, PersonId)> {
        self.inner.identified()
    }

    /// A one-time code that links another device to this person (this device must hold
    /// the person key). Valid for [`LINK_TTL`], once.
    pub async fn link(&self) -> Result<LinkCode, Error> {
        self.inner.new_link_code().await
    }

    /// Makes this device a device of the person whose device gave `code`. Only a device
    /// whose own person has no other device can be linked.
    pub async fn join(&self, code: &str) -> Result<Me, Error> {
        let code: LinkCode = code.parse()?;
        client::join(&self.inner, &code).await?;
        self.me()
    }

    /// Revokes one of this person's devices (this device must hold the person key).
    pub async fn remove_device(&self, device: &str) -> Result<Revocation, Error> {
        let id: PeerId = device
            .parse()
            .map_err(|_| Refusal::NotADeviceId(device.to_owned()))?;
        let key = self
            .inner
            .person_key()?
            .ok_or_else(|| Error::NoPersonKey(self.inner.key_holder()))?;
        if id == self.inner.overlay().peer_id() {
            return Err(Refusal::RevokeSelf.into());
        }
        if !self.inner.book()?.trusts(&id) {
            return Err(Refusal::NotMyDevice(id).into());
        }
        let r = Revocation::sign(&key, &id, now_secs())?;
        self.inner.revoke(r.clone()).await?;
        let _ = self.inner.overlay().disconnect(id).await;
        Ok(r)
    }

    /// Applies a revocation learned elsewhere (from a group): a device of this person
    /// stops being trusted.
    pub async fn apply_revocation(&self, r: Revocation) -> Result<bool, Error> {
        r.verify()?;
        if r.person != self.person()? {
            return Ok(false);
        }
        self.inner.revoke(r).await
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events()
    }

    /// Waits for the service's tasks after shutdown was signalled.
    pub async fn stopped(&self) {
        self.inner.tasks().stopped().await;
    }
}
