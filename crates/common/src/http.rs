//! What both actix-web services need around their handlers: content negotiation, plain
//! bodies, the 404/405 answers, and route registration ([`resource`], [`Routes`] from
//! `datadog_otel_tracing::actix`, which records the methods each path routes so that the
//! server span's resource is known before any handler runs).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
pub use datadog_otel_tracing::actix::{Resource, Routes};

/// The representation a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The tutorial's plain bodies (`text/plain; charset=utf-8`).
    Plain,
    /// JSON, for clients sending `Accept: application/json`.
    Json,
}

impl Format {
    /// JSON when the `Accept` header names `application/json` (with a non-zero quality).
    pub fn of(request: &HttpRequest) -> Self {
        let accepts_json = request
            .headers()
            .get_all(header::ACCEPT)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or("");
                let zero_q = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/json") && !zero_q
            });
        if accepts_json {
            Format::Json
        } else {
            Format::Plain
        }
    }

    /// A response with a text body, or `{"<json_key>": text}` for JSON clients.
    pub fn text(
        self,
        status: actix_web::http::StatusCode,
        json_key: &str,
        text: &str,
    ) -> HttpResponse {
        match self {
            Format::Plain => HttpResponse::build(status)
                .content_type("text/plain; charset=utf-8")
                .body(text.to_string()),
            Format::Json => HttpResponse::build(status).json(serde_json::json!({ json_key: text })),
        }
    }
}

/// A plain-text response (`text/plain; charset=utf-8`).
pub fn plain(status: actix_web::http::StatusCode, body: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(body.into())
}

/// 404 for unknown paths.
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    Format::of(&request).text(actix_web::http::StatusCode::NOT_FOUND, "error", "Not Found")
}

/// A path whose routes are added with `.get(…)`, `.post(…)`, …, answering other methods with
/// [`method_not_allowed`]; register it through [`Routes`], so that the server span's resource
/// is known before any handler runs.
pub fn resource(path: &str) -> Resource {
    datadog_otel_tracing::actix::resource(path).method_not_allowed(method_not_allowed)
}

/// 405 for a known path with another method.
pub async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    Format::of(&request).text(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "error",
        "Method Not Allowed",
    )
}
