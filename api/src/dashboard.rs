//! The Sở's dashboard at `/`: one static page, its script and a vendored Chart.js, all
//! compiled into the binary (the registry's machines are offline: no CDN). The page reads
//! the same `/v1` reports as any reporter, with the token the user gives it, and polls them.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");
/// Chart.js 4.6.1 (MIT, `assets/vendor/chart.js-LICENSE.md`), the UMD build from its npm
/// package, unmodified.
const CHART_JS: &str = include_str!("../assets/vendor/chart.umd.min.js");

/// Scripts and styles only from this origin; the page talks only to this server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX, "no-cache") }))
        .route("/dashboard.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT, "no-cache") }))
        .route("/dashboard.css", get(|| async { asset("text/css; charset=utf-8", STYLE, "no-cache") }))
        .route(
            "/vendor/chart.umd.min.js",
            // Versioned by the binary; a day of caching spares the 200 kB on every visit.
            get(|| async { asset("text/javascript; charset=utf-8", CHART_JS, "public, max-age=86400") }),
        )
}

fn asset(content_type: &'static str, body: &'static str, cache: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}
