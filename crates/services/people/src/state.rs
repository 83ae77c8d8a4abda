//! What the people service's tasks share: the person on disk, who connected peers are,
//! and the link codes handed out.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use kith_core::sync::lock;
use std::time::Instant;

use kith_core::person::{DeviceCert, PersonId, Revocation};
use kith_core::seal::SealKey;
use kith_core::store::now_secs;
use kith_core::tasks::Tasks;
use kith_overlay::{Keypair, Multiaddr, Overlay, PeerId};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::broadcast;

use crate::book::{self, Book};
use crate::codes::{Codes, MAX_CODES};
use crate::protocol::{Hello, LinkCode, MAX_REVOCATIONS};
use crate::{Config, Error, Event, Refusal};

/// Connected peers whose person is remembered.
const MAX_PEERS: usize = 4096;
/// Revocations of other people's devices remembered.
const MAX_REVOKED_OTHERS: usize = 4096;

pub(crate) struct Inner {
    config: Config,
    overlay: Overlay,
    device: Keypair,
    book: Mutex<Book>,
    person_key: Mutex<Option<Keypair>>,
    peers: Mutex<HashMap<PeerId, PersonId>>,
    revoked_others: Mutex<HashSet<String>>,
    codes: Mutex<Codes>,
    events: broadcast::Sender<Event>,
    refused: Counter,
    tasks: Tasks,
}

impl Inner {
    pub async fn open(
        config: Config,
        overlay: Overlay,
        device: Keypair,
        registry: &mut prometheus_client::registry::Registry,
        tasks: Tasks,
    ) -> Result<Arc<Self>, Error> {
        let (dir, d) = (config.dir.clone(), device.clone());
        let (book, key) = tasks
            .blocking(move || -> Result<_, Error> {
                book::init(&dir, &d)?;
                Ok((Book::load(&dir)?, book::person_key(&dir)))
            })
            .await??;
        let refused = Counter::default();
        registry.register(
            "kith_people_refused",
            "Device certificates, revocations and link attempts refused",
            refused.clone(),
        );
        Ok(Arc::new(Self {
            config,
            overlay,
            device,
            book: Mutex::new(book),
            person_key: Mutex::new(key),
            peers: Mutex::default(),
            revoked_others: Mutex::default(),
            codes: Mutex::default(),
            events: broadcast::channel(64).0,
            refused,
            tasks,
        }))
    }

    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Counts and logs a refusal of `peer`'s request.
    pub fn refused(&self, peer: &PeerId, why: &Error) {
        self.refused.inc();
        tracing::warn!(%peer, error = %why, "link refused");
    }

    pub fn book(&self) -> Result<MutexGuard<'_, Book>, Error> {
        Ok(lock(&self.book)?)
    }

    pub fn person_key(&self) -> Result<Option<Keypair>, Error> {
        Ok(lock(&self.person_key)?.clone())
    }

    /// The device the person was made on (the first certificate), for messages.
    pub fn key_holder(&self) -> String {
        self.book()
            .ok()
            .and_then(|b| b.devices.first().map(|c| c.device.clone()))
            .unwrap_or_default()
    }

    pub fn my_cert(&self) -> Result<DeviceCert, Error> {
        let me = self.overlay.peer_id().to_string();
        self.book()?
            .devices
            .iter()
            .find(|c| c.device == me)
            .cloned()
            .ok_or(Error::Refused(Refusal::NoCertificate))
    }

    pub fn hello(&self) -> Result<Hello, Error> {
        let revoked = self
            .book()?
            .revoked
            .iter()
            .rev()
            .take(MAX_REVOCATIONS)
            .cloned()
            .collect();
        Ok(Hello {
            cert: self.my_cert()?,
            revoked,
        })
    }

    pub fn person_of(&self, peer: &PeerId) -> Option<PersonId> {
        kith_core::sync::recover(&self.peers).get(peer).copied()
    }

    pub fn identified(&self) -> Vec<(PeerId, PersonId)> {
        kith_core::sync::recover(&self.peers)
            .iter()
            .map(|(p, q)| (*p, *q))
            .collect()
    }

    pub fn forget(&self, peer: &PeerId) {
        kith_core::sync::recover(&self.peers).remove(peer);
    }

    fn refuse(&self, peer: &PeerId, why: Refusal) -> Error {
        self.refused.inc();
        tracing::warn!(%peer, reason = %why, "refused a device certificate");
        Error::Refused(why)
    }

    /// Checks a hello from `peer` (the peer the connection authenticated) and remembers
    /// its person; learns revocations and the person's other devices on the way.
    pub async fn accept_hello(&self, peer: PeerId, hello: Hello) -> Result<PersonId, Error> {
        if let Err(e) = hello.cert.verify_for(&peer) {
            return Err(self.refuse(&peer, Refusal::BadCert(e)));
        }
        let person = hello.cert.person;
        for r in hello.revoked.into_iter().take(MAX_REVOCATIONS) {
            if r.person == person && r.verify().is_ok() {
                self.note_revocation(r).await?;
            }
        }
        if self.is_revoked(&peer)? {
            return Err(self.refuse(&peer, Refusal::Revoked));
        }
        let mine = self.book()?.person == person;
        if mine {
            let changed = {
                let mut b = self.book()?;
                let known = b.devices.contains(&hello.cert);
                if !known {
                    b.add(hello.cert.clone())?;
                }
                (!known).then(|| b.clone())
            };
            if let Some(b) = changed {
                self.save(b).await?;
            }
        }
        let mut peers = kith_core::sync::recover(&self.peers);
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            peers.clear();
        }
        peers.insert(peer, person);
        drop(peers);
        let _ = self.events.send(Event::Identified { peer, person });
        Ok(person)
    }

    pub fn is_revoked(&self, device: &PeerId) -> Result<bool, Error> {
        Ok(self.book()?.is_revoked(device)
            || kith_core::sync::recover(&self.revoked_others).contains(&device.to_string()))
    }

    /// Remembers a (verified) revocation; one of this person's is saved and announced.
    async fn note_revocation(&self, r: Revocation) -> Result<bool, Error> {
        if r.person == self.book()?.person {
            return self.revoke(r).await;
        }
        let mut others = kith_core::sync::recover(&self.revoked_others);
        if others.len() < MAX_REVOKED_OTHERS {
            others.insert(r.device.clone());
        }
        Ok(false)
    }

    /// Applies a revocation of one of this person's devices; `Ok(true)` if it is new.
    pub async fn revoke(&self, r: Revocation) -> Result<bool, Error> {
        let book = {
            let mut b = self.book()?;
            if b.revoked.iter().any(|x| x.device == r.device) {
                return Ok(false);
            }
            b.revoked.push(r.clone());
            b.clone()
        };
        self.save(book).await?;
        if let Ok(d) = r.device_id() {
            self.forget(&d);
        }
        tracing::info!(device = %r.device, "device revoked");
        let _ = self.events.send(Event::DeviceRevoked(r));
        Ok(true)
    }

    /// Writes the book on the blocking pool.
    pub async fn save(&self, book: Book) -> Result<(), Error> {
        let dir = self.config.dir.clone();
        self.tasks.blocking(move || book.save(&dir)).await?
    }

    /// A new link code (this device must hold the person key).
    pub async fn new_link_code(&self) -> Result<LinkCode, Error> {
        if self.person_key()?.is_none() {
            return Err(Error::NoPersonKey(self.key_holder()));
        }
        let addr = self
            .overlay
            .listen_addrs()
            .await?
            .into_iter()
            .find(|a| !a.to_string().contains("/0.0.0.0/"))
            .ok_or(Error::Refused(Refusal::NoAddress))?;
        let me = self.overlay.peer_id();
        let addr: Multiaddr = addr.with(kith_overlay::multiaddr::Protocol::P2p(me));
        let secret: [u8; 32] = rand::random();
        if !lock(&self.codes)?.add(secret, Instant::now()) {
            return Err(Refusal::TooManyCodes(MAX_CODES).into());
        }
        Ok(LinkCode { secret, addr })
    }

    /// Takes the code `proof` was made with, once: `false` if none matches or it expired.
    pub fn take_code(&self, proof: &blake3::Hash, device: &PeerId) -> Result<bool, Error> {
        Ok(lock(&self.codes)?.take(proof, device, Instant::now()))
    }

    /// Issues a certificate for a new device of this person and remembers it.
    pub async fn issue(&self, device: &PeerId, seal: &[u8; 32]) -> Result<DeviceCert, Error> {
        let key = self
            .person_key()?
            .ok_or_else(|| Error::NoPersonKey(self.key_holder()))?;
        let cert = DeviceCert::sign(&key, device, seal, now_secs())?;
        let book = {
            let mut b = self.book()?;
            b.add(cert.clone())?;
            b.clone()
        };
        self.save(book).await?;
        let _ = self.events.send(Event::DeviceAdded(cert.clone()));
        Ok(cert)
    }

    /// Becomes a device of another person; this device's own person key (its person has
    /// no other device) is set aside.
    pub async fn become_device_of(&self, book: Book) -> Result<(), Error> {
        let person = book.person;
        let dir = self.config.dir.clone();
        let b = book.clone();
        self.tasks
            .blocking(move || -> Result<(), Error> {
                let key = book::key_path(&dir);
                if key.exists() {
                    let aside = dir.join(format!("person.key.replaced-{}", now_secs()));
                    std::fs::rename(&key, &aside).map_err(|e| Error::io(&key, e))?;
                }
                b.save(&dir)
            })
            .await??;
        *lock(&self.person_key)? = None;
        *self.book()? = book;
        let _ = self.events.send(Event::PersonChanged(person));
        Ok(())
    }

    pub fn seal_public(&self) -> Result<[u8; 32], Error> {
        Ok(SealKey::of_device(&self.device)?.public())
    }
}
