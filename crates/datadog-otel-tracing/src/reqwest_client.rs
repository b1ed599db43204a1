//! The reqwest-middleware integration: [`ClientSpanBackend`], the client span of outgoing calls
//! for `reqwest-tracing`'s `TracingMiddleware`, which also injects the trace context (with the
//! global propagator that [`crate::Pipeline::install`] sets).
//!
//! ```
//! use datadog_otel_tracing::reqwest_client::{traced_client, PeerService};
//! use datadog_otel_tracing::{Config, HttpTracing};
//!
//! # async fn call() -> Result<(), reqwest_middleware::Error> {
//! let http = HttpTracing::from_config(&Config::new("shop"));
//! let client = traced_client(reqwest::Client::new(), &http).build();
//! let answer = client
//!     .get("http://127.0.0.1:9090/stock")
//!     .with_extension(PeerService("stock"))
//!     .send()
//!     .await?;
//! # Ok(()) }
//! ```

use crate::error_chain;
use crate::spans::record_error;
use crate::web::HttpTracing;
use reqwest_middleware::{ClientBuilder, Extension};
use reqwest_tracing::TracingMiddleware;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A reqwest-middleware client builder whose calls get a [`ClientSpanBackend`] span, with the
/// redaction and header tags of `http` (add more middleware, then `build()`).
pub fn traced_client(client: reqwest::Client, http: &HttpTracing) -> ClientBuilder {
    ClientBuilder::new(client)
        .with_init(Extension(http.clone()))
        .with(TracingMiddleware::<ClientSpanBackend>::new())
}

/// The service an outgoing call goes to, for the client span's `peer.service`
/// (attach it with `RequestBuilder::with_extension`).
#[derive(Debug, Clone, Copy)]
pub struct PeerService(pub &'static str);

/// Client span for outgoing calls through `reqwest-tracing`, shaped like Datadog's: operation
/// `reqwest.request`, service `reqwest`, resource `<METHOD> <path>`, type `http`, with
/// `http.url`, `http.status_code`, `out.host`, `peer.service`, and `error.*` when the call fails
/// or answers 5xx.
pub struct ClientSpanBackend;

impl reqwest_tracing::ReqwestOtelSpanBackend for ClientSpanBackend {
    fn on_request_start(req: &reqwest::Request, ext: &mut http::Extensions) -> Span {
        let url = req.url();
        let method = req.method().as_str();
        let peer = ext.get::<PeerService>().map(|p| p.0);
        let http = ext
            .get::<HttpTracing>()
            .unwrap_or_else(|| HttpTracing::defaults());
        let span = tracing::info_span!(
            "http.client.request",
            otel.name = format!("{method} {}", url.path()).as_str(),
            otel.kind = "client",
            otel.status_code = Empty,
            operation.name = "reqwest.request",
            service.name = "reqwest",
            span.type = "http",
            component = "reqwest",
            http.method = method,
            http.url = http.redact_url(url.as_str()).as_ref(),
            http.status_code = Empty,
            out.host = url.host_str().unwrap_or(""),
            // An i64: a Datadog metric (tracing-opentelemetry writes u64 as text).
            network.destination.port = url.port_or_known_default().map(i64::from),
            peer.service = peer,
            // Measured, as ddtrace's HTTP client spans: the Agent computes their stats.
            _dd.measured = 1i64,
            error.type = Empty,
            error.message = Empty,
        );
        let header_tags = http.header_tags();
        if !header_tags.is_empty() {
            for (tag, value) in header_tags.tags(req.headers(), false) {
                span.set_attribute(tag, value);
            }
        }
        span
    }

    fn on_request_end(
        span: &Span,
        outcome: &reqwest_middleware::Result<reqwest::Response>,
        ext: &mut http::Extensions,
    ) {
        match outcome {
            Ok(response) => {
                let status = response.status();
                span.record("http.status_code", status.as_str());
                let header_tags = ext
                    .get::<HttpTracing>()
                    .unwrap_or_else(|| HttpTracing::defaults())
                    .header_tags();
                if !header_tags.is_empty() {
                    for (tag, value) in header_tags.tags(response.headers(), true) {
                        span.set_attribute(tag, value);
                    }
                }
                if status.is_server_error() {
                    let message = format!("{} answered {status}", response.url());
                    record_error(span, "http.server_error", &message);
                }
            }
            Err(error) => {
                let kind = match error {
                    reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => {
                        "reqwest::Error(timeout)"
                    }
                    reqwest_middleware::Error::Reqwest(e) if e.is_connect() => {
                        "reqwest::Error(connect)"
                    }
                    reqwest_middleware::Error::Reqwest(_) => "reqwest::Error",
                    reqwest_middleware::Error::Middleware(_) => "reqwest_middleware::Error",
                };
                record_error(span, kind, &error_chain(error));
            }
        }
    }
}
