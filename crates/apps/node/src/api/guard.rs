//! The API's guards: the bearer token, and the Host and Origin checks every route gets.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::guesses::{Client, Limited};
use crate::Node;

pub(crate) async fn token(
    State(node): State<Node>,
    client: Client,
    req: Request,
    next: Next,
) -> Response {
    match authorised(&node, req.headers(), client) {
        Ok(true) => next.run(req).await,
        Ok(false) => ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token (see api.token in the data dir)".into(),
        )
        .into_response(),
        Err(limited) => limited.into_response(),
    }
}

/// Whether the request carries the token: as a bearer token, or as the cookie the web UI
/// got at login. A wrong one is a guess, counted against `client`; while it or everyone
/// guessed wrong too often, a wrong token is answered 429 (`Err`); the right one works.
pub(crate) fn authorised(
    node: &Node,
    headers: &HeaderMap,
    client: Client,
) -> Result<bool, Limited> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(crate::ui::cookie_token);
    let Some(given) = bearer.or(cookie) else {
        return Ok(false);
    };
    // The right token always works: a UI tab left open with an old cookie must not lock
    // the owner's CLI out of its own node (the token is too long to guess anyway).
    if node.token_matches(given) {
        return Ok(true);
    }
    let guesses = &node.inner.guesses;
    if let Some(limited) = guesses.limited(client) {
        return Err(limited);
    }
    guesses.failed(client);
    Ok(false)
}

/// Errors axum answers itself (a body too large, malformed JSON, an unknown field, a
/// wrong method) become one JSON line like every other error of the API.
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    // The UI's own pages (`/`, `/login`, assets) answer people, in plain text.
    let path = req.uri().path();
    let api = path.starts_with("/api/") || path.starts_with("/content/");
    let resp = next.run(req).await;
    if !api {
        return resp;
    }
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    if !(resp.status().is_client_error() && plain) {
        return resp;
    }
    let status = resp.status();
    let text = axum::body::to_bytes(resp.into_body(), 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().replace('\n', " "))
        .unwrap_or_default();
    let line = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_lowercase()
    } else {
        text
    };
    ApiError(status, line).into_response()
}

/// Splits `host[:port]` (IPv6 in brackets).
fn split_host(h: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = h.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return match after {
            "" => Some((ip, None)),
            p => Some((ip, Some(p.strip_prefix(':')?))),
        };
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port))),
        _ => Some((h, None)),
    }
}

/// Whether `host` (a Host header, or the authority of an Origin) names this node: an IP
/// address or `localhost`, on the API's port. A DNS name is refused: that is how a web
/// page would reach the API through DNS rebinding.
fn is_own(host: &str, port: u16) -> bool {
    let Some((name, p)) = split_host(host) else {
        return false;
    };
    let name_ok =
        name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok();
    let port_ok = match p {
        Some(p) => p.parse::<u16>().is_ok_and(|p| p == port),
        None => port == 80,
    };
    name_ok && port_ok
}

fn check(headers: &HeaderMap, port: u16) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "no Host header".into()))?;
    if !is_own(host, port) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "this API answers only requests for its own address (IP or localhost); another Host is refused".into(),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let same = origin
            .strip_prefix("http://")
            .is_some_and(|authority| authority.eq_ignore_ascii_case(host));
        if !same {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                "requests from another site (Origin) are refused".into(),
            ));
        }
    }
    Ok(())
}

pub(crate) async fn host_and_origin(
    State(node): State<Node>,
    req: Request,
    next: Next,
) -> Response {
    match check(req.headers(), node.api_addr().port()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = v.parse() {
                h.insert(*k, v);
            }
        }
        h
    }

    #[test]
    fn only_its_own_host_and_origin_pass() {
        let ok = |p: &[(&'static str, &str)]| check(&headers(p), 4100).is_ok();
        assert!(ok(&[("host", "127.0.0.1:4100")]));
        assert!(ok(&[("host", "localhost:4100")]));
        assert!(ok(&[("host", "[::1]:4100")]));
        assert!(ok(&[
            ("host", "127.0.0.1:4100"),
            ("origin", "http://127.0.0.1:4100")
        ]));
        assert!(!ok(&[]), "no Host");
        assert!(!ok(&[("host", "evil.example:4100")]), "DNS rebinding");
        assert!(!ok(&[("host", "127.0.0.1:4101")]), "another port");
        assert!(!ok(&[("host", "127.0.0.1")]), "port 80 is not ours");
        assert!(!ok(&[
            ("host", "127.0.0.1:4100"),
            ("origin", "http://evil.example")
        ]));
        assert!(!ok(&[("host", "127.0.0.1:4100"), ("origin", "null")]));
        assert!(!ok(&[
            ("host", "127.0.0.1:4100"),
            ("origin", "https://127.0.0.1:4100")
        ]));
    }
}
