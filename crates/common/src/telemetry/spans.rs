//! The span conventions of this project, shaped like Datadog's integrations: the server span
//! of each request ([`ServerSpanBuilder`]), the client span of outgoing calls
//! ([`ClientSpanBackend`]), and [`record_error`] for failed spans. Database spans follow the same
//! fields (see `notes::db`). The export path (`datadog.rs`) reads these fields:
//! `otel.name` (the resource), `operation.name`, `service.name` (only when not the process's
//! own), `span.type`, `error.type` / `error.message`; numeric fields must be `i64`/`f64` to
//! become Datadog metrics (`tracing-opentelemetry` writes `u64` as text).

use super::{header_tags, propagation, redact};
use crate::error::error_chain;
use crate::http::Routing;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use opentelemetry::propagation::Extractor;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::field::Empty;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Span attribute holding the Datadog operation name (`postgres.query`, `actix_web.request`, …).
pub const OPERATION_NAME: &str = "operation.name";
/// Span attribute holding a service other than the process's own (`postgres`, `notes_helper`).
pub const SERVICE_NAME: &str = "service.name";
/// Span attribute overriding the resource (the OpenTelemetry span name); it may be recorded
/// after the span started (`tracing-opentelemetry` cannot rename a started span), but sampling
/// rules on `resource` see only what the span starts with.
pub const RESOURCE_NAME: &str = "resource.name";
/// Operation name of spans that do not set one.
pub const DEFAULT_OPERATION: &str = "internal";
/// Marks a span as failed the way Datadog shows it: `error=1`, `error.type`, `error.message`.
/// The span must have declared these fields (`otel.status_code`, `error.type`,
/// `error.message` as `Empty`).
pub fn record_error(span: &tracing::Span, kind: &str, message: &str) {
    span.record("otel.status_code", "error");
    span.record("error.type", kind);
    span.record("error.message", message);
}

/// What an error type tells the server span about itself.
pub trait TracedError: actix_web::ResponseError + 'static {
    /// A short type name for the span's `error.type` (`DatabaseUnavailable`, …).
    fn error_type(&self) -> &'static str;
}

/// For a service whose handlers cannot fail (calendar): `ServerSpanBuilder<Infallible>`.
impl TracedError for std::convert::Infallible {
    fn error_type(&self) -> &'static str {
        match *self {}
    }
}

/// The path of the health check (`GET /health`), which the container health checks and
/// orchestrators' probes call every few seconds. Its requests are not traced unless
/// `TRACE_HEALTH_CHECKS=true`: one trace every 5 s per service would bury the traces a learner
/// sends (with a real Agent, `DD_APM_IGNORE_RESOURCES="GET /health"` drops them there instead).
pub const HEALTH_PATH: &str = "/health";

/// Whether [`HEALTH_PATH`] requests get a server span: one setting per process, set by
/// [`crate::server::Server::bind`] from `TRACE_HEALTH_CHECKS` (the span builder is a type, so
/// it has no instance to carry it).
static TRACE_HEALTH_CHECKS: AtomicBool = AtomicBool::new(false);

/// Sets whether health-check requests are traced (see [`HEALTH_PATH`]).
pub fn set_trace_health_checks(on: bool) {
    TRACE_HEALTH_CHECKS.store(on, Ordering::Relaxed);
}

/// Builds the per-request server span the way Datadog's tracers shape it: operation
/// `actix_web.request`, resource `<METHOD> <route>` (`GET 404` / `PATCH 405` when no route
/// matched the path / the method; then no `http.route` either), type
/// `web`, the usual `http.*` tags, and `error.*` on a 5xx. Errors of type `E` give their
/// [`TracedError::error_type`] and their `Display` (the internal detail, never sent to clients).
/// Health checks get no span (see [`HEALTH_PATH`]).
///
/// The resource is final when the span starts, which is when the trace's sampling decision is
/// made: the route comes from the pattern actix-web matched, and `405` from the methods the
/// service registered for it through [`crate::http::Routes`] ([`Routing`]), so a sampling rule
/// on `PATCH 405` applies to that request and one on `PATCH /notes` does not.
pub struct ServerSpanBuilder<E>(PhantomData<E>);

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

// Fields are given as `&str` where possible: `%value` would format each one through `Debug`
// into a fresh string on every request.
impl<E: TracedError> RootSpanBuilder for ServerSpanBuilder<E> {
    fn on_request_start(request: &ServiceRequest) -> Span {
        if request.path() == HEALTH_PATH && !TRACE_HEALTH_CHECKS.load(Ordering::Relaxed) {
            // A disabled span: nothing is exported, and the handler's own spans (if it made
            // any) would start traces of their own, so health handlers make none.
            return Span::none();
        }
        let routing = Routing::of(request.request());
        let resource = routing.resource(request.method());
        let method = request.method().as_str();
        let info = request.connection_info();
        let (scheme, host) = (info.scheme(), info.host());
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let url = [scheme, "://", host, target].concat();
        let user_agent = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        // A root in `tracing` too: without a trace-context header the span is a trace's root,
        // whatever span happens to be current (its parent, if any, is set below).
        let span = tracing::info_span!(
            parent: None,
            "http.request",
            otel.name = resource.as_str(),
            otel.kind = "server",
            otel.status_code = Empty,
            operation.name = "actix_web.request",
            // Set only for a 405, for Datadog's SDK (`datadog-sdk`), whose resource comes
            // from `http.route` otherwise; the project's path reads `otel.name`, the same.
            resource.name = matches!(routing, Routing::MethodNotRouted(_)).then_some(resource.as_str()),
            span.type = "web",
            component = "actix-web",
            http.method = method,
            http.route = Empty,
            http.url = redact::redact_url(&url).as_ref(),
            http.useragent = user_agent,
            http.status_code = Empty,
            error.type = Empty,
            error.message = Empty,
        );
        let header_tags = header_tags::installed();
        if !header_tags.is_empty() {
            let headers = request.headers();
            for (tag, value) in header_tags.tags_with(false, |name| joined(headers, name)) {
                span.set_attribute(tag, value);
            }
        }
        // Most requests carry no trace context: then there is nothing to extract, and the span
        // stays a root without a pass through every configured style.
        let headers = request.headers();
        if propagation::carries_context(headers.keys().map(|name| name.as_str())) {
            let parent = opentelemetry::global::get_text_map_propagator(|p| {
                p.extract(&HeaderExtractor(headers))
            });
            // A context without a valid remote span leaves the span a root (a bad header starts
            // a new trace, it never fails the request).
            let _ = span.set_parent(parent);
        }
        span
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let (status, error) = match outcome {
            Ok(response) => (response.status(), response.response().error()),
            Err(error) => (error.as_response_error().status_code(), Some(error)),
        };
        span.record("http.status_code", status.as_u16().to_string());
        if let Ok(response) = outcome {
            let header_tags = header_tags::installed();
            if !header_tags.is_empty() {
                let headers = response.headers();
                for (tag, value) in header_tags.tags_with(true, |name| joined(headers, name)) {
                    span.set_attribute(tag, value);
                }
            }
            // The resource was set at the start (`Routing`); a 405 or 404 has no route.
            if let Routing::Routed(route) = Routing::of(response.request()) {
                span.record("http.route", route);
            }
        }
        if status.is_server_error() {
            match error {
                Some(error) => {
                    let kind = error
                        .as_error::<E>()
                        .map(TracedError::error_type)
                        .unwrap_or("actix_web::Error");
                    record_error(&span, kind, &error.to_string());
                }
                None => record_error(&span, "http.server_error", &format!("status {status}")),
            }
        }
    }
}

/// A header's values joined with `,` (`None` when absent), for [`header_tags`].
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
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
            http.url = redact::redact_url(url.as_str()).as_ref(),
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
        let header_tags = header_tags::installed();
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
        _ext: &mut http::Extensions,
    ) {
        match outcome {
            Ok(response) => {
                let status = response.status();
                span.record("http.status_code", status.as_u16().to_string());
                let header_tags = header_tags::installed();
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
