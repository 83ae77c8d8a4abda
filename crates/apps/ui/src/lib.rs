//! kith's web UI: plain HTML, CSS and JavaScript modules (no build step, nothing fetched
//! from outside the node), embedded in the binary at build time.
//!
//! The shell (`index.html`, `app.js`) loads every module under `pages/`: a service adds its
//! page by adding one file there, which exports `{ title, order, render }`.

/// Every asset, by path under `assets/`.
static ASSETS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// An embedded file and its media type.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub bytes: &'static [u8],
    pub mime: &'static str,
}

fn mime(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The asset at `path` (e.g. `app.js`, `pages/files.js`).
pub fn get(path: &str) -> Option<Asset> {
    ASSETS.iter().find(|(p, _)| *p == path).map(|(p, b)| Asset {
        bytes: b,
        mime: mime(p),
    })
}

/// The page modules, in file order (the shell sorts them by their `order`).
pub fn pages() -> Vec<&'static str> {
    ASSETS
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| p.starts_with("pages/") && p.ends_with(".js"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_and_every_page_are_embedded() {
        assert!(get("index.html").is_some_and(|a| a.mime.starts_with("text/html")));
        assert!(get("app.js").is_some_and(|a| a.mime.starts_with("text/javascript")));
        assert!(get("../Cargo.toml").is_none());
        let pages = pages();
        for p in [
            "overview",
            "peers",
            "files",
            "transfers",
            "search",
            "names",
            "groups",
        ] {
            assert!(pages.contains(&format!("pages/{p}.js").as_str()), "{p}");
        }
        for p in pages {
            let text = get(p).map(|a| String::from_utf8_lossy(a.bytes).into_owned());
            let text = text.unwrap_or_default();
            assert!(text.contains("export default"), "{p} exports no page");
            // Pages build the DOM with text nodes; raw HTML from data is never parsed.
            assert!(!text.contains("innerHTML"), "{p} uses innerHTML");
        }
    }
}
