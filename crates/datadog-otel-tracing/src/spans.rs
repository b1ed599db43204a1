//! The span fields the export reads, shaped like Datadog's integrations; the server span of
//! each request (`actix::ServerSpanBuilder`) and the client span of outgoing calls
//! (`reqwest_client::ClientSpanBackend`) follow them, and so should a span of your own:
//!
//! - `otel.name`: the resource (`GET /orders`, the SQL text);
//! - `operation.name` ([`OPERATION_NAME`]): the Datadog operation (`postgres.query`);
//! - `service.name` ([`SERVICE_NAME`]): only when not the process's own (`postgres`);
//! - `span.type`: `web`, `http`, `sql`, …;
//! - `error.type` / `error.message` with `otel.status_code = "error"`: see [`record_error`].
//!
//! Numeric fields must be `i64` or `f64` to become Datadog metrics (`tracing-opentelemetry`
//! writes `u64` as text).
//!
//! ```
//! use datadog_otel_tracing::spans::record_error;
//! use tracing::field::Empty;
//! let span = tracing::info_span!(
//!     "db.query",
//!     otel.name = "SELECT 1",
//!     operation.name = "postgres.query",
//!     service.name = "postgres",
//!     span.type = "sql",
//!     otel.status_code = Empty,
//!     error.type = Empty,
//!     error.message = Empty,
//! );
//! record_error(&span, "DatabaseUnavailable", "connection refused");
//! ```

/// Span attribute holding the Datadog operation name (`postgres.query`, `actix_web.request`, …).
pub const OPERATION_NAME: &str = "operation.name";
/// Span attribute holding a service other than the process's own (`postgres`, `notes_helper`).
pub const SERVICE_NAME: &str = "service.name";
/// Span attribute overriding the resource (the OpenTelemetry span name); it may be recorded
/// after the span started (`tracing-opentelemetry` cannot rename a started span), but sampling
/// rules on `resource` see only what the span starts with.
pub const RESOURCE_NAME: &str = "resource.name";
/// Span attribute holding the Datadog span type (`web`, `http`, `sql`, `custom`).
pub const SPAN_TYPE: &str = "span.type";
/// Set (to anything) on any span of a trace to keep it: priority 2, decision maker `-4`, as
/// Datadog's `manual.keep` tag does. Applied to the chunk when it is sent.
pub const MANUAL_KEEP: &str = "manual.keep";
/// Set on any span of a trace to drop it: priority -1, decision maker `-4` (wins over a keep).
pub const MANUAL_DROP: &str = "manual.drop";
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

/// A string attribute of a finished span, borrowed (the fields above are strings).
pub(crate) fn str_attr<'a>(
    span: &'a opentelemetry_sdk::trace::SpanData,
    key: &str,
) -> Option<&'a str> {
    span.attributes.iter().find_map(|kv| match &kv.value {
        opentelemetry::Value::String(s) if kv.key.as_str() == key => Some(s.as_str()),
        _ => None,
    })
}

/// A span kind as Datadog's `span.kind` tag writes it.
pub(crate) fn kind_name(kind: &opentelemetry::trace::SpanKind) -> &'static str {
    use opentelemetry::trace::SpanKind;
    match kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}
