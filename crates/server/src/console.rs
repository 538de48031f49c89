//! The web console: the single-page app built from `console/` into
//! `console/dist` (committed, see `docs/console.md`), embedded in the
//! binary and served at `/console/`.
//!
//! The console is a client of the public API like any script: this module
//! only hands out its files. It must never serve anything that is not in
//! the build output, never put a key or any user data into a page, and
//! never loosen the Content-Security-Policy below: every console answer
//! carries it, so a plugin name or an execution's output that somehow
//! reached the DOM as markup still could not run script or send data
//! anywhere but this server.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The build output, embedded at compile time (also in debug builds, so
/// tests serve exactly what a release serves).
#[derive(rust_embed::Embed)]
#[folder = "../../console/dist"]
struct Assets;

/// Where the console lives.
pub const BASE: &str = "/console/";

/// The policy of every console answer: scripts, styles and everything else
/// from this origin only; no inline script or style, no `eval`; the API
/// (and the SSE stream) on this origin only; not framable; no `<base>`,
/// no form posts; images also from `data:`/`blob:` URLs the app makes
/// itself (artifact previews).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'; object-src 'none'";

/// Files whose names carry a hash of their content (Vite's `assets/`):
/// cached for a year, never revalidated. Everything else (`index.html`)
/// is revalidated on every load, so a new binary's console is seen at once.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// The console's routes: `/console/…`, and `/` leading there.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to(BASE) }))
        .route("/console", get(|| async { Redirect::to(BASE) }))
        .route(
            "/console/",
            get(|headers: HeaderMap| async move { file("index.html", &headers) }),
        )
        .route("/console/{*path}", get(asset))
}

async fn asset(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().strip_prefix(BASE).unwrap_or_default();
    if Assets::get(path).is_some() {
        return file(path, &headers);
    }
    // A missing build file is a 404; any other path is one of the app's
    // own pages (`/console/plugins/vendor.x.y/…`), which the app routes.
    if path.starts_with("assets/") {
        return with_policy(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such console file\n",
            )
                .into_response(),
        );
    }
    file("index.html", &headers)
}

/// One embedded file, with its type, cache policy, ETag and, when the
/// client takes it, gzip.
fn file(path: &str, headers: &HeaderMap) -> Response {
    let Some(found) = Assets::get(path) else {
        // The build output lacks index.html: a broken build, not a request error.
        return with_policy(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "the console was not built into this binary (see docs/console.md)\n",
            )
                .into_response(),
        );
    };
    let etag = format!(
        "\"{}\"",
        found
            .metadata
            .sha256_hash()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let cache = if path.starts_with("assets/") {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else if let Some(packed) = (accepts_gzip(headers) && compressible(path))
        .then(|| gzipped(path, &found.data))
        .flatten()
    {
        let mut r = packed.to_vec().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        found.data.into_owned().into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    with_policy(response)
}

/// The security headers every console answer carries.
fn with_policy(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn compressible(path: &str) -> bool {
    matches!(
        path.rsplit_once('.').map(|(_, ext)| ext),
        Some("html" | "js" | "mjs" | "css" | "json" | "map" | "svg" | "txt")
    )
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.replace(' ', "") == "q=0" || p.replace(' ', "") == "q=0.0");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Each file compressed once per process, on first request (`None`: send
/// it as it is).
fn gzipped(path: &str, data: &[u8]) -> Option<Arc<[u8]>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<[u8]>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(path).cloned()) {
        return Some(hit);
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).ok()?;
    let packed: Arc<[u8]> = enc.finish().ok()?.into();
    if let Ok(mut c) = cache.lock() {
        c.insert(path.to_owned(), packed.clone());
    }
    Some(packed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        router::<()>()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    fn header<'a>(r: &'a Response, name: &str) -> &'a str {
        r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The hashed script the index page loads (whatever this build named it).
    fn entry_script() -> String {
        Assets::iter()
            .find(|p| p.starts_with("assets/index-") && p.ends_with(".js"))
            .expect("the build has an entry script")
            .into_owned()
    }

    #[tokio::test]
    async fn pages_carry_the_strict_policy_and_are_revalidated() {
        for path in [
            "/console/",
            "/console/plugins/vendor.greeting.say_hello/versions/1.0.0",
        ] {
            let r = get(path, &[]).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
            assert_eq!(header(&r, "cache-control"), "no-cache");
            let csp = header(&r, "content-security-policy");
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(csp.contains("connect-src 'self';"), "{csp}");
            assert!(!csp.contains("unsafe"), "no unsafe-inline or unsafe-eval: {csp}");
            assert_eq!(header(&r, "x-content-type-options"), "nosniff");
            assert_eq!(header(&r, "x-frame-options"), "DENY");
        }
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_typed_and_gzipped_on_request() {
        let path = format!("/console/{}", entry_script());
        let plain = get(&path, &[]).await;
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(header(&plain, "content-type"), "text/javascript; charset=utf-8");
        assert_eq!(header(&plain, "cache-control"), IMMUTABLE);
        assert_eq!(header(&plain, "content-encoding"), "");
        let etag = header(&plain, "etag").to_owned();
        let plain_len = axum::body::to_bytes(plain.into_body(), usize::MAX)
            .await
            .expect("body")
            .len();

        let gz = get(&path, &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(header(&gz, "content-encoding"), "gzip");
        assert_eq!(header(&gz, "vary"), "accept-encoding");
        let gz_len = axum::body::to_bytes(gz.into_body(), usize::MAX)
            .await
            .expect("body")
            .len();
        assert!(gz_len < plain_len / 2, "{gz_len} of {plain_len}");

        let again = get(&path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn a_missing_asset_is_a_404_and_the_root_leads_to_the_console() {
        let r = get("/console/assets/missing-0000.js", &[]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(header(&r, "content-security-policy").contains("default-src 'none'"));
        for path in ["/", "/console"] {
            let r = get(path, &[]).await;
            assert!(r.status().is_redirection(), "{path}");
            assert_eq!(header(&r, "location"), BASE);
        }
    }

    #[test]
    fn gzip_is_taken_only_when_offered() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.8"),
        );
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0, br"));
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn content_types_name_the_charset_of_text() {
        assert_eq!(
            content_type("assets/index-abc.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x.unknown"), "application/octet-stream");
    }
}
