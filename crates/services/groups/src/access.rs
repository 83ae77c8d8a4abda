//! The groups as scopes of content (`kith_core::scope::Scopes`): who may fetch a group's
//! content, where it is announced, and the seal of what is sent about it.

use std::sync::Arc;

use kith_core::scope::Scopes;
use kith_overlay::PeerId;

use crate::inner::Inner;
use crate::keys;

pub(crate) struct Access {
    inner: Arc<Inner>,
}

impl Access {
    pub fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// The current epoch's ID and key of `scope`, if this device holds it.
    fn current(&self, scope: &str) -> Option<(String, [u8; 32])> {
        let groups = self.inner.groups().ok()?;
        let g = groups.get(scope)?;
        let epoch = g.state.current_epoch()?.id.clone();
        let key = *g.keys.get(&epoch)?;
        Some((epoch, key))
    }
}

impl Scopes for Access {
    fn may_fetch(&self, peer: &PeerId, scope: &str) -> bool {
        self.inner
            .groups()
            .ok()
            .and_then(|g| {
                g.get(scope)
                    .map(|g| g.state.member_of(&peer.to_string()).is_some())
            })
            .unwrap_or(false)
    }

    fn locator(&self, scope: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.current(scope).map(|(_, k)| keys::locator(&k, key))
    }

    fn locators(&self, key: &[u8]) -> Vec<(String, Vec<u8>)> {
        let ids: Vec<String> = self
            .inner
            .groups()
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| self.locator(&id, key).map(|l| (id, l)))
            .collect()
    }

    fn members(&self, scope: &str) -> Vec<PeerId> {
        let Ok(groups) = self.inner.groups() else {
            return Vec::new();
        };
        groups
            .get(scope)
            .map(|g| {
                g.state
                    .devices()
                    .into_iter()
                    .filter(|d| *d != self.inner.me)
                    .filter_map(|d| d.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn seal(&self, scope: &str, plaintext: &[u8]) -> Option<Vec<u8>> {
        let (epoch, _) = self.current(scope)?;
        let groups = self.inner.groups().ok()?;
        groups.get(scope)?.keys.seal(scope, &epoch, plaintext)
    }

    fn open(&self, scope: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let groups = self.inner.groups().ok()?;
        groups.get(scope)?.keys.open(scope, sealed)
    }
}
