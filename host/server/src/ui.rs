//! The explorer: a web page under `/ui/`, made of the static files in `ui/`, which
//! the build compiles into the binary (`build.rs`). No build step, no network.
//!
//! - `index.html` answers every path under `/ui/` that is not an asset, so a link to
//!   any view (`/ui/aggregates/user/42?revision=3`) opens cold. It is never cached
//!   for long (`no-cache`): it names the assets of this build.
//! - Every other file is served at `/ui/assets/{bundle}/{path}`, where `{bundle}` is
//!   a hash of all the files: the index's `{{assets}}` is that folder. A new build
//!   has a new folder, so assets are cached for a year (`immutable`), and modules
//!   import each other by relative paths.
//! - Every answer carries a strict `Content-Security-Policy`: scripts, styles and
//!   connections from this origin only, no inline script or style, no frames. What
//!   an event or a reducer says can never run as code, even if the page slipped.
//! - `/` and `/ui` redirect to `/ui/`.
//!
//! The page reads through the API under `/v1` like any client: with tokens, it
//! signs in once (`POST /v1/session`) and reads with the session cookie.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::problem::Problem;

mod files {
    include!(concat!(env!("OUT_DIR"), "/ui_files.rs"));
}

/// The policy on every page and asset. `connect-src 'self'` covers `fetch` and
/// `EventSource` to the API; `img-src data:` allows icons drawn inline.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What the build put in.
struct Bundle {
    /// `index.html` with its `{{assets}}` filled in (`None`: the build had none).
    index: Option<String>,
    /// The assets' folder, `/ui/assets/{hash}`.
    base: String,
    /// Every other file by its path under `ui/`.
    assets: HashMap<&'static str, &'static [u8]>,
}

static BUNDLE: LazyLock<Bundle> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    for (path, bytes) in files::FILES {
        hash.update((path.len() as u64).to_le_bytes());
        hash.update(path.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    let base = format!("/ui/assets/{}", &hex::encode(hash.finalize())[..16]);
    let mut index = None;
    let mut assets = HashMap::new();
    for &(path, bytes) in files::FILES {
        if path == "index.html" {
            index = Some(String::from_utf8_lossy(bytes).replace("{{assets}}", &base));
        } else {
            assets.insert(path, bytes);
        }
    }
    Bundle {
        index,
        base,
        assets,
    }
});

/// The explorer's routes (none of them in the API's document: they are a page, not
/// the API).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/assets/{bundle}/{*path}", get(asset))
        .route("/ui/{*view}", get(index))
}

/// Headers every answer of the page carries.
fn secure(mut response: Response, cache: &'static str) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

async fn index() -> Response {
    match &BUNDLE.index {
        Some(html) => secure(
            (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html.clone(),
            )
                .into_response(),
            "no-cache",
        ),
        None => Problem::not_found("this build has no explorer page (host/server/ui/index.html)")
            .into_response(),
    }
}

async fn asset(Path((bundle, path)): Path<(String, String)>) -> Response {
    let found = (format!("/ui/assets/{bundle}") == BUNDLE.base)
        .then(|| BUNDLE.assets.get(path.as_str()))
        .flatten();
    match found {
        Some(bytes) => secure(
            ([(header::CONTENT_TYPE, content_type(&path))], *bytes).into_response(),
            "public, max-age=31536000, immutable",
        ),
        // Another build's asset (a page loaded before an upgrade) or no such file.
        None => secure(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such asset in this build: reload the page\n",
            )
                .into_response(),
            "no-store",
        ),
    }
}

/// The media type of an asset, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_names_this_builds_assets_and_nothing_inline() {
        let index = BUNDLE
            .index
            .as_deref()
            .expect("ui/index.html is in the build");
        assert!(!index.contains("{{assets}}"));
        assert!(index.contains(&BUNDLE.base));
        // The policy would block an inline script or style: the page must not need one.
        let lower = index.to_ascii_lowercase();
        for (at, _) in lower.match_indices("<script") {
            let tag = &lower[at..at + lower[at..].find('>').expect("a closed tag")];
            assert!(
                tag.contains(" src="),
                "an inline script in index.html: {tag}"
            );
        }
        assert!(!lower.contains(" style="), "an inline style in index.html");
        assert!(
            !lower.contains("<style"),
            "an inline style sheet in index.html"
        );
    }

    #[test]
    fn every_asset_has_a_media_type() {
        for path in BUNDLE.assets.keys() {
            assert_ne!(
                content_type(path),
                "application/octet-stream",
                "ui/{path}: add its extension to content_type"
            );
        }
    }
}
