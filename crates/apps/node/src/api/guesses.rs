//! Failed guesses of a secret (a login code, the API token), limited per client address
//! and in total. Each is a leaky bucket (as Signal's rate limiters are), kept as the
//! time it will be empty (GCRA): a wrong guess adds [`Rate::every`] to it, and it drains
//! in real time. While a bucket holds [`Rate::burst`] failures, every login code from
//! that address (the total: from anywhere) is answered 429 with `Retry-After` and is not
//! checked, a right one neither, so a guesser learns nothing while limited; someone who
//! mistyped is let in again once the bucket has drained by one failure. A wrong API
//! token is answered 429 too, but the right token always works: a UI tab left open with
//! an old cookie must not lock the owner's CLI out of its own node.
//!
//! Requests that present no secret are not guesses and are never limited here.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A leaky bucket's size and how fast it drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// Failures in a row before guesses are refused.
    pub burst: u32,
    /// One failure drains in this long.
    pub every: Duration,
}

/// One client address: 10 wrong guesses at once, then one per 6 s (10 a minute). Someone
/// who mistyped a few times is never held; a script is held to 14,400 guesses a day,
/// against codes of 128 bits and a token of more.
pub(crate) const PER_CLIENT: Rate = Rate {
    burst: 10,
    every: Duration::from_secs(6),
};
/// Every address together (a guesser with many addresses, when the API listens on a
/// network): 100 at once, then one a second.
pub(crate) const TOTAL: Rate = Rate {
    burst: 100,
    every: Duration::from_secs(1),
};
/// Client addresses remembered; past it, buckets that have drained are forgotten, and a
/// new address that still finds no room counts in the total only.
const MAX_CLIENTS: usize = 1024;

impl Rate {
    /// How long until a guess is checked again, when the bucket that is empty at `empty`
    /// is full at `now`.
    fn wait(&self, empty: Instant, now: Instant) -> Option<Duration> {
        let slack = self.every * self.burst.saturating_sub(1);
        let ahead = empty.saturating_duration_since(now);
        (ahead > slack).then(|| ahead - slack)
    }

    /// When the bucket that is empty at `empty` is empty after one more failure at `now`.
    fn fail(&self, empty: Instant, now: Instant) -> Instant {
        empty.max(now) + self.every
    }
}

/// The address a request came from: IPv4 as it is, IPv6 by its /64 (one host holds a
/// whole /64). `None` when the server was not told (the router called directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Client(Option<IpAddr>);

impl Client {
    pub(crate) fn of(addr: Option<SocketAddr>) -> Self {
        Client(addr.map(|a| match a.ip() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
            v4 => v4,
        }))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(Client::of(addr))
    }
}

/// The buckets: one per client address, and the total.
#[derive(Default)]
pub(crate) struct Guesses {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    clients: HashMap<Client, Instant>,
    total: Option<Instant>,
}

impl Guesses {
    /// How long `client` must wait before its next guess is checked; `None`: check it.
    pub(crate) fn limited(&self, client: Client) -> Option<Limited> {
        self.limited_at(client, Instant::now())
    }

    /// Counts a wrong guess from `client`.
    pub(crate) fn failed(&self, client: Client) {
        self.failed_at(client, Instant::now());
    }

    fn limited_at(&self, client: Client, now: Instant) -> Option<Limited> {
        let s = kith_core::sync::recover(&self.state);
        let mine = s
            .clients
            .get(&client)
            .and_then(|e| PER_CLIENT.wait(*e, now));
        let all = s.total.and_then(|e| TOTAL.wait(e, now));
        mine.max(all).map(Limited)
    }

    fn failed_at(&self, client: Client, now: Instant) {
        let mut s = kith_core::sync::recover(&self.state);
        s.total = Some(TOTAL.fail(s.total.unwrap_or(now), now));
        if !s.clients.contains_key(&client) && s.clients.len() >= MAX_CLIENTS {
            s.clients.retain(|_, empty| *empty > now);
            if s.clients.len() >= MAX_CLIENTS {
                tracing::warn!(
                    ?client,
                    "too many addresses guessing; counted in the total only"
                );
                return;
            }
        }
        let e = s.clients.entry(client).or_insert(now);
        *e = PER_CLIENT.fail(*e, now);
        tracing::info!(?client, "wrong login code or API token");
    }
}

/// A guess refused unchecked: 429 with `Retry-After` (whole seconds, rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limited(pub Duration);

impl Limited {
    fn secs(&self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }

    fn message(&self) -> String {
        format!(
            "too many wrong login codes or API tokens from this address; try again in {} s",
            self.secs()
        )
    }

    fn with_retry_after(&self, mut resp: Response) -> Response {
        *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(self.secs()));
        resp
    }

    /// The answer for a person at the login link: plain text.
    pub(crate) fn page(&self) -> Response {
        self.with_retry_after(format!("{}.\n", self.message()).into_response())
    }
}

/// The answer for the API: one JSON line, like its other errors.
impl IntoResponse for Limited {
    fn into_response(self) -> Response {
        let body = Json(kith_api::ErrorBody {
            error: self.message(),
        });
        self.with_retry_after(body.into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(n: u8) -> Client {
        Client::of(Some(SocketAddr::from(([10, 0, 0, n], 1234))))
    }

    #[test]
    fn a_client_is_held_after_its_burst_and_let_in_as_it_drains() {
        let g = Guesses::default();
        let t = Instant::now();
        for _ in 0..PER_CLIENT.burst {
            assert_eq!(g.limited_at(client(1), t), None);
            g.failed_at(client(1), t);
        }
        assert_eq!(g.limited_at(client(1), t), Some(Limited(PER_CLIENT.every)));
        assert_eq!(
            g.limited_at(client(2), t),
            None,
            "another address is not held"
        );
        let later = t + PER_CLIENT.every;
        assert_eq!(g.limited_at(client(1), later), None, "one guess again");
        g.failed_at(client(1), later);
        assert_eq!(
            g.limited_at(client(1), later),
            Some(Limited(PER_CLIENT.every))
        );
        let drained = later + PER_CLIENT.every * PER_CLIENT.burst;
        assert_eq!(g.limited_at(client(1), drained), None);
    }

    #[test]
    fn many_addresses_are_held_by_the_total() {
        let g = Guesses::default();
        let t = Instant::now();
        for i in 0..TOTAL.burst {
            // Each address stays under its own limit.
            g.failed_at(client((i % 20) as u8), t);
        }
        let held = g.limited_at(client(99), t);
        assert_eq!(held, Some(Limited(TOTAL.every)), "a new address too");
        assert_eq!(g.limited_at(client(99), t + TOTAL.every), None);
    }

    #[test]
    fn the_map_of_addresses_stays_bounded() {
        let g = Guesses::default();
        let t = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            g.failed_at(Client::of(Some(SocketAddr::from((ip, 1)))), t);
        }
        assert_eq!(
            kith_core::sync::recover(&g.state).clients.len(),
            MAX_CLIENTS
        );
        // Once they have drained they are forgotten for new ones.
        let later = t + PER_CLIENT.every * 2;
        g.failed_at(
            Client::of(Some(SocketAddr::from(([10, 9, 9, 9], 1)))),
            later,
        );
        assert_eq!(kith_core::sync::recover(&g.state).clients.len(), 1);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: SocketAddr = "[2001:db8:1:2::1]:5"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let b: SocketAddr = "[2001:db8:1:2:ffff::9]:6"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let c: SocketAddr = "[2001:db8:1:3::1]:5"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Client::of(Some(a)), Client::of(Some(b)));
        assert_ne!(Client::of(Some(a)), Client::of(Some(c)));
        assert_eq!(Limited(Duration::from_millis(5001)).secs(), 6);
        assert_eq!(Limited(Duration::from_secs(6)).secs(), 6);
    }
}
