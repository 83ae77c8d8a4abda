//! Content that is not public: a scope (a private group) decides who may fetch it, where it
//! is announced, and seals what is sent about it. Services that hold content (share,
//! search) ask a [`Scopes`]; the service that keeps the groups implements it. Content
//! with no scope is public.

use libp2p_identity::PeerId;

/// What a node knows of the scopes it belongs to.
pub trait Scopes: Send + Sync + 'static {
    /// Whether `peer` (an authenticated device) may fetch content of `scope` now.
    fn may_fetch(&self, peer: &PeerId, scope: &str) -> bool;

    /// The DHT key content `key` of `scope` is announced under: only members can compute
    /// it, so outsiders learn neither what a scope holds nor who holds it. `None` when
    /// this node is not in `scope`.
    fn locator(&self, scope: &str, key: &[u8]) -> Option<Vec<u8>>;

    /// The locators of `key` in every scope this node belongs to, for lookups.
    fn locators(&self, key: &[u8]) -> Vec<(String, Vec<u8>)>;

    /// Devices of the scope's current members other than this node.
    fn members(&self, scope: &str) -> Vec<PeerId>;

    /// Seals `plaintext` for the members of `scope` (`None` when not a member).
    fn seal(&self, scope: &str, plaintext: &[u8]) -> Option<Vec<u8>>;

    /// Opens what a member sealed for `scope` (`None` when it cannot be opened).
    fn open(&self, scope: &str, sealed: &[u8]) -> Option<Vec<u8>>;

    /// Whether this node belongs to `scope`.
    fn belongs(&self, scope: &str) -> bool {
        self.locator(scope, b"").is_some()
    }
}

/// A node in no scope: everything is public.
#[derive(Debug, Default, Clone, Copy)]
pub struct Public;

impl Scopes for Public {
    fn may_fetch(&self, _: &PeerId, _: &str) -> bool {
        false
    }
    fn locator(&self, _: &str, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn locators(&self, _: &[u8]) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }
    fn members(&self, _: &str) -> Vec<PeerId> {
        Vec::new()
    }
    fn seal(&self, _: &str, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn open(&self, _: &str, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
}
