//! The read-only HTTP gateway: `GET /content/ID[/path]` serves a file this node shares or
//! has fetched (also while it downloads), with range requests, so a media player can play
//! it as it arrives. `kith cat` reads through it.
//!
//! With the token (or the UI's cookie) any content here is served. Without it, only public
//! content, and only when the API listens on a loopback address; group content and any
//! other address need the token. Nothing is served by path on this machine: only content
//! IDs, whose bytes are verified as they are read. Responses are sandboxed (CSP) and never
//! HTML, so a shared page cannot run script on the UI's origin.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kith_share::{FileView, Span};

use super::ApiError;
use super::guard::authorised;
use super::guesses::Client;
use crate::Node;

/// How long a read waits for a chunk that a running download has not fetched yet.
const CHUNK_WAIT: Duration = Duration::from_secs(60);
const CHUNK_POLL: Duration = Duration::from_millis(200);

/// A byte range of a file of `size` bytes: `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub start: u64,
    pub end: u64,
}

/// Parses a `Range` header (one range; several are answered with the whole file).
/// `Err` means it cannot be satisfied (416).
pub(crate) fn parse_range(h: &str, size: u64) -> Result<Option<Range>, ()> {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        Range {
            start: size.saturating_sub(n),
            end: size,
        }
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(size)
        };
        Range { start, end }
    };
    if r.start >= size || r.start >= r.end {
        return Err(());
    }
    Ok(Some(r))
}

/// A media type from the name: media players and viewers need it; HTML and anything
/// unknown is served as plain text or bytes.
fn media_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("mp4" | "m4v") => "video/mp4",
        Some("webm") => "video/webm",
        Some("mkv") => "video/x-matroska",
        Some("mp3") => "audio/mpeg",
        Some("ogg" | "oga") => "audio/ogg",
        Some("flac") => "audio/flac",
        Some("wav") => "audio/wav",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("pdf") => "application/pdf",
        Some("txt" | "md" | "html" | "htm" | "csv" | "log" | "json" | "rs" | "c" | "py") => {
            "text/plain; charset=utf-8"
        }
        _ => "application/octet-stream",
    }
}

/// The bytes of `spans`, read (and verified) chunk by chunk; a chunk a running download
/// has not fetched yet is waited for.
fn body(node: Node, id: kith_core::ContentId, spans: Vec<Span>) -> Body {
    let stream = futures::stream::unfold(
        (node, spans.into_iter()),
        move |(node, mut spans)| async move {
            let span = spans.next()?;
            let share = &node.inner.share;
            let mut waited = Duration::ZERO;
            let bytes = loop {
                match share.chunk(span.hash).await {
                    Ok(Some(b)) => break Ok(b),
                    Ok(None) if share.is_downloading(&id) && waited < CHUNK_WAIT => {
                        tokio::time::sleep(CHUNK_POLL).await;
                        waited += CHUNK_POLL;
                    }
                    Ok(None) => break Err(std::io::Error::other("a chunk is not here")),
                    Err(e) => break Err(std::io::Error::other(e.to_string())),
                }
            };
            let item = bytes.and_then(|b| {
                b.get(span.skip..span.skip + span.take)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| std::io::Error::other("chunk shorter than its manifest says"))
            });
            Some((item, (node, spans)))
        },
    );
    Body::from_stream(stream)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

async fn serve(
    node: Node,
    headers: HeaderMap,
    client: Client,
    id: &str,
    path: &str,
) -> Result<Response, ApiError> {
    let id = crate::facade::content_id(id)?;
    let open = node.api_addr().ip().is_loopback() && !node.inner.share.is_private(&id);
    if !open {
        match authorised(&node, &headers, client) {
            Ok(true) => {}
            Ok(false) => {
                return Err(ApiError(
                    StatusCode::UNAUTHORIZED,
                    "this content needs the API token".into(),
                ));
            }
            Err(limited) => return Ok(limited.into_response()),
        }
    }
    let view: FileView = node
        .inner
        .share
        .file_view(id, path)
        .await
        .map_err(|e| ApiError::from(crate::NodeError::Share(e)))?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|h| parse_range(h, view.size))
        .transpose()
        .map_err(|()| {
            ApiError(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the file has {} bytes", view.size),
            )
        })?
        .flatten();
    let (status, r) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r),
        None => (
            StatusCode::OK,
            Range {
                start: 0,
                end: view.size,
            },
        ),
    };
    let spans = view.spans(r.start, r.end);
    let mut resp = (status, body(node, id, spans)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(media_type(&view.name)));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(r.end - r.start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let cr = format!("bytes {}-{}/{}", r.start, r.end - 1, view.size);
        h.insert(header::CONTENT_RANGE, header_value(&cr));
    }
    let safe: String = view
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    h.insert(
        header::CONTENT_DISPOSITION,
        header_value(&format!("inline; filename=\"{safe}\"")),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(resp)
}

pub(crate) async fn file(
    State(node): State<Node>,
    headers: HeaderMap,
    client: Client,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    serve(node, headers, client, &id, "").await
}

pub(crate) async fn file_in(
    State(node): State<Node>,
    headers: HeaderMap,
    client: Client,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    serve(node, headers, client, &id, &path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_browsers_and_players_send_them() {
        let r = |h: &str| parse_range(h, 100);
        assert_eq!(r("bytes=0-9"), Ok(Some(Range { start: 0, end: 10 })));
        assert_eq!(
            r("bytes=90-"),
            Ok(Some(Range {
                start: 90,
                end: 100
            }))
        );
        assert_eq!(
            r("bytes=-10"),
            Ok(Some(Range {
                start: 90,
                end: 100
            }))
        );
        assert_eq!(r("bytes=-1000"), Ok(Some(Range { start: 0, end: 100 })));
        assert_eq!(
            r("bytes=50-1000"),
            Ok(Some(Range {
                start: 50,
                end: 100
            }))
        );
        assert_eq!(r("bytes=0-1,5-6"), Ok(None), "several: the whole file");
        assert_eq!(r("items=0-1"), Ok(None));
        assert_eq!(r("bytes=100-"), Err(()));
        assert_eq!(r("bytes=9-3"), Err(()));
        assert_eq!(r("bytes=-0"), Err(()));
        assert_eq!(r("bytes=x-1"), Err(()));
        assert_eq!(
            r("bytes=18446744073709551615-18446744073709551615"),
            Err(())
        );
        assert_eq!(parse_range("bytes=0-", 0), Err(()));
    }

    #[test]
    fn pages_are_never_served_as_html() {
        assert_eq!(media_type("x.html"), "text/plain; charset=utf-8");
        assert_eq!(media_type("clip.MP4"), "video/mp4");
        assert_eq!(media_type("noext"), "application/octet-stream");
        assert_eq!(media_type("x.svg"), "application/octet-stream");
    }
}
