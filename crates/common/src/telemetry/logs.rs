//! One JSON object per log line, with Datadog's correlation fields at the root:
//! `dd.trace_id` and `dd.span_id` (decimal, the low 64 bits, as Datadog's log correlation
//! expects), `dd.service`, `dd.env` and `dd.version`.

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as JSON lines carrying Datadog's correlation fields.
#[derive(Debug, Clone)]
pub struct DatadogJsonFormat {
    /// `dd.service`, `dd.env`, `dd.version`, written on every line.
    service_fields: Map<String, Value>,
}

impl DatadogJsonFormat {
    pub fn new(service: &str, env: Option<&str>, version: Option<&str>) -> Self {
        let mut service_fields = Map::new();
        service_fields.insert("dd.service".into(), Value::from(service));
        if let Some(env) = env {
            service_fields.insert("dd.env".into(), Value::from(env));
        }
        if let Some(version) = version {
            service_fields.insert("dd.version".into(), Value::from(version));
        }
        Self { service_fields }
    }
}

/// Formats no span fields: a log line holds its event's fields and the trace ids only, so the
/// fields of every span need not be formatted (and stored) on the hot path.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSpanFields;

impl<'writer> FormatFields<'writer> for NoSpanFields {
    fn format_fields<R: RecordFields>(&self, _writer: Writer<'writer>, _fields: R) -> fmt::Result {
        Ok(())
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), Value::from(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
}

impl<S, N> FormatEvent<S, N> for DatadogJsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("target".into(), Value::from(meta.target()));
        event.record(&mut JsonVisitor(&mut line));
        // With context activation on, the current OpenTelemetry context is the entered span's.
        let cx = opentelemetry::Context::current();
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            let trace_low = u128::from_be_bytes(sc.trace_id().to_bytes()) as u64;
            let span_id = u64::from_be_bytes(sc.span_id().to_bytes());
            line.insert("dd.trace_id".into(), Value::from(trace_low.to_string()));
            line.insert("dd.span_id".into(), Value::from(span_id.to_string()));
        }
        for (k, v) in &self.service_fields {
            line.insert(k.clone(), v.clone());
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}
