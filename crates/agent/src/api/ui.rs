//! The web console's static files at `/ui/`, embedded in the binary at build time (`include_dir`): the Vite
//! build in `web/dist`, or, when a developer built without it, a placeholder page that says how to build it
//! (see `build.rs`; the test suite always builds the real one).
//!
//! The files are public (they hold no data; every data route needs a token or a session). Every answer
//! carries a strict Content-Security-Policy and forbids framing; paths that name no file get `index.html`
//! (the SPA routes on the client).

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use include_dir::{Dir, include_dir};

static ASSETS: Dir<'static> = include_dir!("$PORIN_UI_DIR");

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn file(path: &str) -> Response {
    let (path, f) = match ASSETS.get_file(path) {
        Some(f) if !path.is_empty() => (path, f),
        // Client-side routes, and `/ui/` itself: the app.
        _ => match ASSETS.get_file("index.html") {
            Some(f) => ("index.html", f),
            None => return (StatusCode::NOT_FOUND, "the console was built without index.html\n").into_response(),
        },
    };
    let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-store" };
    let mut r = (StatusCode::OK, f.contents()).into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(HeaderName::from_static("content-security-policy"), HeaderValue::from_static(CSP));
    h.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    h.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
    h.insert(HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer"));
    r
}

/// `GET /ui/{*path}`.
pub async fn asset(Path(path): Path<String>) -> Response {
    file(path.trim_start_matches('/'))
}

/// `GET /ui/`.
pub async fn index() -> Response {
    file("")
}

/// `GET /ui` → `/ui/` (relative asset URLs need the slash).
pub async fn redirect() -> Redirect {
    Redirect::permanent("/ui/")
}

