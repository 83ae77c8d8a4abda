//! The web UI, served by the node on the API's address: the embedded assets of `kith-ui`,
//! the login by link, and the security headers every response gets.
//!
//! Login: `kith ui` asks the API (with the token) for a one-time code and prints a link
//! `/login?code=…`. Opening it sets the API token as an `HttpOnly`, `SameSite=Strict`
//! cookie and redirects to `/`; the code then is spent, so the link left in the browser's
//! history logs nobody in. The API takes the cookie as it takes the bearer token. Wrong
//! codes and tokens are limited per client address and in total (`api::guesses`).

use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::Node;
use crate::api::guesses::Client;

/// The cookie that carries the token after login.
pub(crate) const COOKIE: &str = "kith_token";
/// How long a login link works.
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(120);
/// Login links outstanding at once (the oldest goes first).
const MAX_CODES: usize = 8;

/// Outstanding login codes.
#[derive(Default)]
pub(crate) struct Logins {
    codes: std::sync::Mutex<Vec<(String, Instant)>>,
}

impl Logins {
    /// A new one-time code.
    pub(crate) fn mint(&self) -> String {
        let bytes: [u8; 16] = rand::random();
        let code: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut codes = kith_core::sync::recover(&self.codes);
        codes.retain(|(_, t)| t.elapsed() < CODE_LIFETIME);
        if codes.len() >= MAX_CODES {
            codes.remove(0);
        }
        codes.push((code.clone(), Instant::now()));
        code
    }

    /// Spends `code`: true once, if it was minted less than [`CODE_LIFETIME`] ago.
    pub(crate) fn redeem(&self, code: &str) -> bool {
        let mut codes = kith_core::sync::recover(&self.codes);
        codes.retain(|(_, t)| t.elapsed() < CODE_LIFETIME);
        let found = codes.iter().position(|(c, _)| same(c, code));
        found.map(|i| codes.remove(i)).is_some()
    }
}

/// Compares without an early exit.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token in a `Cookie` header, if any.
pub(crate) fn cookie_token(cookies: &str) -> Option<&str> {
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The policy for the UI's pages: only the node's own scripts, styles and connections;
/// nothing inline, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Security headers on every response the node's HTTP server gives.
pub(crate) async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: with no referrer at all, Chromium sends
    // `Origin: null` on the page's own form posts (log out), which the Origin check refuses.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

fn asset(path: &str) -> Response {
    match kith_ui::get(path) {
        Some(a) => ([(header::CONTENT_TYPE, a.mime)], a.bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "no such page").into_response(),
    }
}

async fn index() -> Response {
    asset("index.html")
}

async fn file(Path(path): Path<String>) -> Response {
    asset(&path)
}

async fn pages() -> Json<Vec<&'static str>> {
    Json(kith_ui::pages())
}

#[derive(serde::Deserialize)]
struct Code {
    code: String,
}

/// Spends a login code. Wrong codes count against the client's address (and the total):
/// while it has guessed wrong too often, no code is checked (429, `Retry-After`), so the
/// right one works again once that has passed.
async fn login(State(node): State<Node>, client: Client, Query(q): Query<Code>) -> Response {
    if let Some(limited) = node.inner.guesses.limited(client) {
        return limited.page();
    }
    if !node.inner.logins.redeem(&q.code) {
        node.inner.guesses.failed(client);
        return (
            StatusCode::FORBIDDEN,
            "This login link was used already or has expired: run `kith ui` for a new one.\n",
        )
            .into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000",
        node.inner.token
    );
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout() -> Response {
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("kith_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    resp
}

/// The UI's routes (the assets need no token: they hold no data).
pub(crate) fn routes() -> Router<Node> {
    Router::new()
        .route("/", get(index))
        .route("/ui/pages.json", get(pages))
        .route("/ui/{*path}", get(file))
        .route("/login", get(login))
        .route("/logout", post(logout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_once() {
        let l = Logins::default();
        let c = l.mint();
        assert_eq!(c.len(), 32);
        assert!(!l.redeem("nope"));
        assert!(l.redeem(&c));
        assert!(!l.redeem(&c), "spent");
        let codes: Vec<String> = (0..MAX_CODES + 1).map(|_| l.mint()).collect();
        assert!(
            !l.redeem(&codes[0]),
            "the oldest went when too many were out"
        );
        assert!(l.redeem(&codes[MAX_CODES]));
    }

    #[test]
    fn the_token_is_found_among_cookies() {
        assert_eq!(cookie_token("a=1; kith_token=abc; b=2"), Some("abc"));
        assert_eq!(cookie_token("kith_token=x"), Some("x"));
        assert_eq!(cookie_token("kith_tokens=x; other=kith_token"), None);
        assert_eq!(cookie_token(""), None);
    }
}
