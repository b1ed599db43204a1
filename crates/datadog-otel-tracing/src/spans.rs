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
//! Spans made with the OpenTelemetry API (the pipeline's tracer,
//! [`TracingGuard::tracer`](crate::TracingGuard::tracer)) get the semantics Datadog's tracers
//! give them, at export:
//! - without [`OPERATION_NAME`], the operation name comes from OpenTelemetry's semantic
//!   conventions and the span kind: `http.server.request` for a server span with
//!   `http.request.method`, `redis.query` for a client span with `db.system = "Redis"`,
//!   `kafka.receive`, `grpc.client.request`, …, else `server.request` / `client.request`, else
//!   the kind (`internal`, `producer`, `consumer`);
//! - [`OPERATION_NAME`], [`SERVICE_NAME`], [`RESOURCE_NAME`] and [`SPAN_TYPE`] of any value type
//!   set the span's fields, and `analytics.event` (a boolean, or `true`/`false`/`1`/`0`/`t`/`f`
//!   in Go's spellings) the metric `_dd1.sr.eausr`; none of them is sent as a tag;
//! - `http.response.status_code` is sent as `http.status_code`, which is always text;
//! - array attributes are flattened: `key.0`, `key.1`, … (numbers as metrics);
//! - events are sent in the `events` tag as JSON (`name`, `time_unix_nano`, `attributes`);
//! - a span whose status is an error takes `error.message`, `error.type` and `error.stack` from
//!   its `exception` events ([`record_exception`] records one), else `error.message` from the
//!   status description;
//! - an attribute set twice keeps its last value.
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
/// Operation name of an internal span that sets none and has no semantic-convention attributes
/// to derive one from (see the module docs).
pub const DEFAULT_OPERATION: &str = "internal";
/// Marks a span as failed the way Datadog shows it: `error=1`, `error.type`, `error.message`.
/// The span must have declared these fields (`otel.status_code`, `error.type`,
/// `error.message` as `Empty`).
pub fn record_error(span: &tracing::Span, kind: &str, message: &str) {
    span.record("otel.status_code", "error");
    span.record("error.type", kind);
    span.record("error.message", message);
}

/// Records `error` on an OpenTelemetry span as an `exception` event, named the way
/// OpenTelemetry's semantic conventions name it: `exception.type` (the Rust type of `error`,
/// `std::any::type_name`), `exception.message` ([`crate::error_chain`]), `exception.stacktrace`
/// (a backtrace of this call, when `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` enables them),
/// then `attributes`, which replace those of the same key.
///
/// As in OpenTelemetry, recording an exception does not fail the span; set its status to an
/// error as well, and the export writes the last exception's message, type and stack as the
/// span's `error.message`, `error.type` and `error.stack`. (Spans of `tracing` use
/// [`record_error`].)
///
/// ```
/// use datadog_otel_tracing::spans::record_exception;
/// use opentelemetry::trace::{Span as _, Status, Tracer as _};
/// use opentelemetry::KeyValue;
///
/// # let tracer = opentelemetry::trace::noop::NoopTracer::new();
/// let mut span = tracer.start("charge");
/// let error = std::io::Error::other("card declined");
/// record_exception(&mut span, &error, vec![KeyValue::new("payment.id", "p-17")]);
/// span.set_status(Status::error("payment failed"));
/// span.end();
/// ```
pub fn record_exception<S, E>(span: &mut S, error: &E, attributes: Vec<opentelemetry::KeyValue>)
where
    S: opentelemetry::trace::Span + ?Sized,
    E: std::error::Error + ?Sized,
{
    use opentelemetry::KeyValue;
    if !span.is_recording() {
        return;
    }
    let mut event = vec![
        KeyValue::new("exception.type", std::any::type_name::<E>()),
        KeyValue::new("exception.message", crate::error_chain(&error)),
    ];
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        event.push(KeyValue::new("exception.stacktrace", backtrace.to_string()));
    }
    event.retain(|kv| !attributes.iter().any(|a| a.key == kv.key));
    event.extend(attributes);
    span.add_event("exception", event);
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
