//! The reqwest-middleware integration: [`ClientSpanBackend`], the client span of outgoing calls
//! for `reqwest-tracing`'s `TracingMiddleware`, and [`traced_client`], which also injects the
//! trace context (with the global propagator that [`crate::Pipeline::install`] sets) in a step
//! of its own inside the client span, instead of reqwest-tracing's (which parses every header
//! name, and panics on a value that is not a valid header value).
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
use opentelemetry::propagation::Injector;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest_middleware::{ClientBuilder, Extension, Middleware, Next};
use reqwest_tracing::{DisableOtelPropagation, TracingMiddleware};
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A reqwest-middleware client builder whose calls get a [`ClientSpanBackend`] span, with the
/// redaction and header tags of `http` (add more middleware, then `build()`).
pub fn traced_client(client: reqwest::Client, http: &HttpTracing) -> ClientBuilder {
    ClientBuilder::new(client)
        .with_init(Extension(http.clone()))
        // The trace headers are written by `InjectContext`, inside the client span.
        .with_init(Extension(DisableOtelPropagation))
        .with(TracingMiddleware::<ClientSpanBackend>::new())
        .with(InjectContext)
}

/// Writes the trace context of the current span (the client span: this step runs inside
/// `TracingMiddleware`'s) into the outgoing request through the global propagator.
struct InjectContext;

#[async_trait::async_trait]
impl Middleware for InjectContext {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let cx = Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&cx, &mut HeaderInjector(req.headers_mut()));
        });
        next.run(req, extensions).await
    }
}

/// The trace-context headers as `HeaderName`s (see [`crate::propagation::HEADERS`]).
static CONTEXT_HEADERS: [HeaderName; 13] = crate::propagation::context_header_names!(HeaderName);

/// A request's headers as the propagator's carrier: the trace-context headers by their static
/// names; a value that is no valid header value is left out.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(value) = HeaderValue::from_str(&value) else {
            return;
        };
        let name = match crate::propagation::header_index(key).and_then(|i| CONTEXT_HEADERS.get(i))
        {
            Some(name) => name.clone(),
            None => match HeaderName::from_bytes(key.as_bytes()) {
                Ok(name) => name,
                Err(_) => return,
            },
        };
        self.0.insert(name, value);
    }
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

#[cfg(test)]
mod injector_tests {
    use super::*;

    /// The carrier writes the trace-context headers and any other, and leaves out a value that
    /// no header can carry instead of failing the call.
    #[test]
    fn the_carrier_writes_valid_headers_and_leaves_out_invalid_values() {
        let mut headers = HeaderMap::new();
        let mut carrier = HeaderInjector(&mut headers);
        carrier.set(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        );
        carrier.set("x-datadog-tags", "_dd.p.dm=-0".into());
        carrier.set("x-vendor", "v".into());
        carrier.set("baggage", "a=\nb".into());
        carrier.set("bad name", "v".into());
        assert_eq!(headers.len(), 3, "{headers:?}");
        assert_eq!(headers["x-datadog-tags"], "_dd.p.dm=-0");
        assert_eq!(headers["x-vendor"], "v");
        assert!(headers.get("baggage").is_none());
    }
}
