//! The web UI's routes and the gateway: login by link, the cookie, wrong codes and tokens
//! limited, security headers, settings, oversized and unknown requests, ranges. The
//! operations a client sends go through the typed client (`api`); what only a browser
//! or an attacker sends (login links, cookies, wrong tokens from many addresses, bodies
//! too big or not JSON, unknown fields and routes, ranges) goes without a socket
//! (`oneshot` on the router, [`Client`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use kith_api::SettingsChange;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::tests::{Client, TestResult, api, node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_link_sets_the_cookie_once_and_the_cookie_opens_the_api() -> TestResult {
    let dir = tempfile::tempdir()?;
    let n = node(dir.path()).await?;
    let c = Client::new(&n);
    let link = api(&n)?.login_link().await?;
    let url = link.url.as_str();
    let path = url.split_once(&c.host).map(|(_, p)| p).unwrap_or_default();
    assert!(path.starts_with("/login?code="), "{url}");
    let open = |p: &str| {
        Request::get(p)
            .header("host", &c.host)
            .body(Body::empty())
            .unwrap_or_default()
    };
    let resp = c.app.clone().oneshot(open(path)).await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let again = c.app.clone().oneshot(open(path)).await?;
    assert_eq!(again.status(), StatusCode::FORBIDDEN, "a link works once");

    let pair = cookie.split(';').next().unwrap_or_default().to_owned();
    let with = |cookie: &str| {
        Request::get("/api/v1/status")
            .header("host", &c.host)
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap_or_default()
    };
    assert_eq!(c.send(with(&pair)).await?.0, StatusCode::OK);
    assert_eq!(
        c.send(with("kith_token=wrong")).await?.0,
        StatusCode::UNAUTHORIZED
    );
    // The page itself holds no data and needs no login; it gets a strict policy.
    let page = c.app.clone().oneshot(open("/")).await?;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let js = c.app.clone().oneshot(open("/ui/pages/files.js")).await?;
    assert_eq!(js.status(), StatusCode::OK);
    let nothing = c.app.clone().oneshot(open("/ui/../api.token")).await?;
    assert_eq!(nothing.status(), StatusCode::NOT_FOUND);
    n.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_oversized_posts_and_unknown_routes_get_one_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let n = node(dir.path()).await?;
    let c = Client::new(&n);
    let config = n.home().config_path();
    let before = std::fs::read_to_string(&config)?;
    let a = api(&n)?;
    let change = SettingsChange {
        upload_limit: Some("10M".into()),
        broker: Some("not an address".into()),
        ..Default::default()
    };
    let e = a.change_settings(&change).await.err();
    let e = e.ok_or("a bad broker was taken")?;
    assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST));
    assert!(e.to_string().starts_with("broker:"), "{e}");
    assert_eq!(std::fs::read_to_string(&config)?, before, "nothing saved");
    let change = SettingsChange {
        upload_limit: Some("10M".into()),
        ..Default::default()
    };
    assert_eq!(a.change_settings(&change).await?.upload_limit, 10_000_000);
    assert_eq!(n.share_service().limits().0, 10_000_000, "applied at once");
    let (s, _) = c
        .call("PUT", "/api/v1/settings", Some(json!({"bogus": 1})))
        .await?;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let mut big = c.req("PUT", "/api/v1/settings", None);
    *big.body_mut() = Body::from(vec![b' '; 10 << 20]);
    let (s, v) = c.send(big).await?;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "one JSON line: {v}"
    );
    let mut junk = c.req("PUT", "/api/v1/settings", None);
    *junk.body_mut() = Body::from("{not json");
    let (s, v) = c.send(junk).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().is_some(), "one JSON line: {v}");
    assert_eq!(
        c.call("GET", "/api/v1/nowhere", None).await?.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.call("GET", "/nowhere", None).await?.0,
        StatusCode::NOT_FOUND
    );
    n.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_ranges_of_content_here_and_nothing_else() -> TestResult {
    let dir = tempfile::tempdir()?;
    let n = node(dir.path()).await?;
    let c = Client::new(&n);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let f = dir.path().join("clip.mp4");
    std::fs::write(&f, &data)?;
    let share = kith_api::ShareRequest {
        path: f.display().to_string(),
        group: None,
        public: false,
    };
    let id = api(&n)?.share(&share).await?.id;
    let get = |range: Option<&str>, token: bool| {
        let mut b = Request::get(format!("/content/{id}")).header("host", &c.host);
        if let Some(r) = range {
            b = b.header("range", r);
        }
        if token {
            b = b.header("authorization", format!("Bearer {}", c.token));
        }
        b.body(Body::empty()).unwrap_or_default()
    };
    let resp = c
        .app
        .clone()
        .oneshot(get(Some("bytes=1000000-1000009"), false))
        .await?;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let h = resp.headers();
    assert_eq!(h[header::CONTENT_TYPE], "video/mp4");
    assert_eq!(h[header::CONTENT_RANGE], "bytes 1000000-1000009/3000000");
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await?;
    assert_eq!(body.as_ref(), &data[1_000_000..1_000_010]);
    let whole = c.app.clone().oneshot(get(None, true)).await?;
    assert_eq!(whole.status(), StatusCode::OK);
    let body = axum::body::to_bytes(whole.into_body(), 1 << 23).await?;
    assert!(body.as_ref() == data.as_slice(), "the whole file");
    let (s, v): (StatusCode, Value) = c.send(get(Some("bytes=5000000-"), true)).await?;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE, "{v}");
    let absent = kith_core::ContentId::manifest(b"not here");
    let other = c.call("GET", &format!("/content/{absent}"), None).await?;
    assert_eq!(other.0, StatusCode::NOT_FOUND, "{:?}", other.1);
    n.shutdown().await;
    Ok(())
}

/// A request from `ip` (as the server's connection info would say).
fn from(req: Request<Body>, ip: [u8; 4]) -> Request<Body> {
    let mut req = req;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
    req
}

fn retry_after(resp: &axum::response::Response) -> u64 {
    resp.headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Wrong login codes and API tokens are guesses, limited per client address: 3,000 wrong
/// codes get 429 after the first ten, quickly, with `Retry-After`; while held, even the
/// right code is not checked (nor spent); another address is not held; the right token
/// always works; once the wait is over the right code logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_login_codes_and_tokens_are_limited_and_the_right_code_works_after() -> TestResult {
    let dir = tempfile::tempdir()?;
    let n = node(dir.path()).await?;
    let c = Client::new(&n);
    let link = api(&n)?.login_link().await?;
    let url = link.url.as_str();
    let right = url.split_once(&c.host).map(|(_, p)| p).unwrap_or_default();
    assert!(right.starts_with("/login?code="), "{url}");
    let open = |p: &str| {
        Request::get(p)
            .header("host", &c.host)
            .body(Body::empty())
            .unwrap_or_default()
    };
    let guesser = [10, 0, 0, 7];
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut wait = 0;
    for i in 0..3_000u32 {
        let resp = c
            .app
            .clone()
            .oneshot(from(open(&format!("/login?code={i:032x}")), guesser))
            .await?;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            wait = retry_after(&resp);
        }
        statuses.push(resp.status());
    }
    let forbidden = statuses
        .iter()
        .filter(|s| **s == StatusCode::FORBIDDEN)
        .count();
    assert_eq!(forbidden, 10, "ten wrong codes are checked");
    assert!(
        statuses[10..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "the rest are refused unchecked"
    );
    assert!((1..=6).contains(&wait), "Retry-After: {wait}");
    assert!(started.elapsed() < Duration::from_secs(10), "quickly");
    let held = c.app.clone().oneshot(from(open(right), guesser)).await?;
    assert_eq!(held.status(), StatusCode::TOO_MANY_REQUESTS, "not checked");

    // Wrong tokens are the same kind of guess, counted by address: another one is not
    // held by the first, and is told in one JSON line once it is.
    let other = [10, 0, 0, 8];
    let mut last = (StatusCode::OK, Value::Null);
    for _ in 0..11 {
        let mut req = c.req("GET", "/api/v1/status", None);
        req.headers_mut()
            .insert(header::AUTHORIZATION, "Bearer wrong".parse()?);
        last = c.send(from(req, other)).await?;
    }
    assert_eq!(last.0, StatusCode::TOO_MANY_REQUESTS, "{:?}", last.1);
    assert!(
        last.1["error"]
            .as_str()
            .is_some_and(|e| e.contains("try again in")),
        "{:?}",
        last.1
    );
    let fine = c.send(from(c.req("GET", "/api/v1/status", None), [10, 0, 0, 9]));
    assert_eq!(fine.await?.0, StatusCode::OK, "a third address is not held");
    // The right token from the held address still works (a stale tab must not lock
    // the owner's CLI out).
    let own = c.send(from(c.req("GET", "/api/v1/status", None), other));
    assert_eq!(
        own.await?.0,
        StatusCode::OK,
        "the right token is never held"
    );

    // Once the wait is over, the right code (unspent) logs in.
    let deadline = Instant::now() + Duration::from_secs(wait + 5);
    let resp = loop {
        let resp = c.app.clone().oneshot(from(open(right), guesser)).await?;
        if resp.status() != StatusCode::TOO_MANY_REQUESTS || Instant::now() > deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(resp.headers().contains_key(header::SET_COOKIE));
    n.shutdown().await;
    Ok(())
}
