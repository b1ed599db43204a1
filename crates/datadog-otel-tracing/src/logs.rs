//! One JSON object per log line, with Datadog's correlation fields at the root:
//! `dd.trace_id` and `dd.span_id` (decimal, the low 64 bits, as Datadog's log correlation
//! expects), `dd.service`, `dd.env` and `dd.version`.
//!
//! [`JsonLogLayer`] is the log layer: it writes each line straight into a per-thread buffer,
//! escaped as it goes (no map of the fields, no string per field), then to the writer in one
//! call. The trace ids come from the event's span through `tracing-opentelemetry`
//! ([`tracing_opentelemetry::get_otel_context`]), looked up only when a line is written: the
//! OpenTelemetry context is not attached on every enter of every span (context activation is
//! off, see [`crate::Pipeline::build`]), which costs more than all the log lines together.

use chrono::{DateTime, Datelike, Timelike, Utc};
use opentelemetry::trace::TraceContextExt;
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::OnceLock;
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Keys this formatter writes itself; an event field of the same name is written as
/// `field.<name>` so that no key appears twice in a line.
const RESERVED: [&str; 8] = [
    "timestamp",
    "level",
    "target",
    "dd.trace_id",
    "dd.span_id",
    "dd.service",
    "dd.env",
    "dd.version",
];

/// Formats events as JSON lines carrying Datadog's correlation fields.
#[derive(Debug, Clone)]
pub struct DatadogJsonFormat {
    /// `,"dd.service":…,"dd.env":…,"dd.version":…`, escaped once at start-up and written at the
    /// end of every line.
    service_fields: String,
}

impl DatadogJsonFormat {
    /// Lines that carry `dd.service`, and `dd.env` and `dd.version` when given.
    pub fn new(service: &str, env: Option<&str>, version: Option<&str>) -> Self {
        let mut service_fields = String::new();
        let fields = [
            ("dd.service", Some(service)),
            ("dd.env", env),
            ("dd.version", version),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                // Writing into a String cannot fail.
                let _ = write!(service_fields, ",\"{key}\":");
                let _ = write_json_str(&mut service_fields, value);
            }
        }
        Self { service_fields }
    }
}

/// Writes what it is given as the inside of a JSON string (RFC 8259 escapes).
struct Escaped<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

/// Writes `value` as a JSON string, quotes included.
fn write_json_str<W: fmt::Write + ?Sized>(out: &mut W, value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(value)?;
    out.write_char('"')
}

/// Writes `now` as RFC 3339 with microseconds (`2026-12-03T10:52:49.123456Z`), field by field:
/// a `chrono` format string would be parsed again on every line.
fn write_timestamp<W: fmt::Write + ?Sized>(out: &mut W, now: DateTime<Utc>) -> fmt::Result {
    let (date, time) = (now.date_naive(), now.time());
    // A leap second shows as second 60, as RFC 3339 allows.
    let micros = now.timestamp_subsec_micros();
    let (second, micros) = (time.second() + micros / 1_000_000, micros % 1_000_000);
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{second:02}.{micros:06}Z",
        date.year(),
        date.month(),
        date.day(),
        time.hour(),
        time.minute(),
    )
}

/// Writes an event's fields as `,"name":value` pairs.
struct JsonVisitor<'a> {
    out: &'a mut String,
    /// The first write error; `Visit` methods cannot return one.
    result: fmt::Result,
}

impl JsonVisitor<'_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        let name = field.name();
        let prefix = if RESERVED.contains(&name) {
            "field."
        } else {
            ""
        };
        write!(self.out, ",\"{prefix}")?;
        Escaped(&mut *self.out).write_str(name)?;
        self.out.write_str("\":")
    }

    fn field(&mut self, field: &Field, value: impl FnOnce(&mut String) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.out));
        }
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| write_json_str(out, value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        self.field(field, |out| match value.is_finite() {
            true => write!(out, "{value}"),
            false => out.write_str("null"),
        });
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| write!(out, "{value}"));
    }
}

impl DatadogJsonFormat {
    /// Writes the line of `event` into `out`, newline included; `ids` are the trace and span
    /// ids of the span it happened in (both the low 64 bits), when it is traced.
    fn write_line(
        &self,
        out: &mut String,
        event: &Event<'_>,
        ids: Option<(u64, u64)>,
    ) -> fmt::Result {
        let meta = event.metadata();
        out.write_str("{\"timestamp\":\"")?;
        write_timestamp(out, Utc::now())?;
        write!(
            out,
            "\",\"level\":\"{}\",\"target\":",
            meta.level().as_str()
        )?;
        write_json_str(out, meta.target())?;
        let mut visitor = JsonVisitor {
            out: &mut *out,
            result: Ok(()),
        };
        event.record(&mut visitor);
        visitor.result?;
        if let Some((trace_low, span_id)) = ids {
            write!(
                out,
                ",\"dd.trace_id\":\"{trace_low}\",\"dd.span_id\":\"{span_id}\""
            )?;
        }
        out.write_str(&self.service_fields)?;
        out.write_str("}\n")
    }
}

/// The log layer: one [`DatadogJsonFormat`] line per event, to the writer `W` (stdout in the
/// services).
pub struct JsonLogLayer<W> {
    /// How a line looks.
    format: DatadogJsonFormat,
    /// Where lines go; one `write_all` per line.
    make_writer: W,
    /// Whether lines carry trace ids ([`JsonLogLayer::with_trace_ids`]): with tracing off there
    /// is no OpenTelemetry layer to ask, and no line should pay for the asking.
    carry_ids: bool,
    /// The subscriber this layer is part of, to ask the OpenTelemetry layer for the context of
    /// the event's span (set only with trace ids on).
    dispatch: OnceLock<WeakDispatch>,
}

impl<W> JsonLogLayer<W> {
    /// A layer writing `format`'s lines to `make_writer` (`std::io::stdout`, say); add
    /// [`JsonLogLayer::with_trace_ids`] in a subscriber that traces.
    pub fn new(format: DatadogJsonFormat, make_writer: W) -> Self {
        Self {
            format,
            make_writer,
            carry_ids: false,
            dispatch: OnceLock::new(),
        }
    }

    /// Lines written inside a traced span carry its ids (for a subscriber with the
    /// `tracing-opentelemetry` layer).
    pub fn with_trace_ids(self) -> Self {
        Self {
            carry_ids: true,
            ..self
        }
    }

    /// The trace and span ids of the innermost traced span around `event`: its explicit parent
    /// or the current span, else the nearest ancestor the OpenTelemetry layer traces. The span
    /// tree is read from the subscriber itself, not through this layer's filter: a span that
    /// `RUST_LOG` leaves out (or a library's debug span that only the logs see) may sit between
    /// the event and the traced span.
    fn trace_ids<S>(&self, event: &Event<'_>) -> Option<(u64, u64)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let dispatch = self.dispatch.get()?.upgrade()?;
        let start = match event.parent() {
            Some(parent) => parent.clone(),
            None if event.is_contextual() => dispatch.current_span().id()?.clone(),
            None => return None,
        };
        let spans = dispatch.downcast_ref::<S>()?;
        let found = spans.span(&start)?.scope().find_map(|span| {
            // Starting a span that has not started yet runs the sampler and the span
            // processors: a line they log meanwhile is written without ids (see `on_event`).
            let _lookup = Lookup::enter();
            tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
        })?;
        let span = found.span();
        let sc = span.span_context();
        sc.is_valid().then(|| {
            let trace_low = u128::from_be_bytes(sc.trace_id().to_bytes()) as u64;
            (trace_low, u64::from_be_bytes(sc.span_id().to_bytes()))
        })
    }
}

thread_local! {
    /// Set while this thread looks up a span's ids; a line logged meanwhile (by code that the
    /// lookup runs) must not look up again: it would wait for the lock the lookup holds.
    static IN_LOOKUP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The line being written, reused from line to line.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    /// The ids [`in_span_context`] gives the lines logged inside it.
    static GIVEN_IDS: std::cell::Cell<Option<(u64, u64)>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the log lines it writes (on this thread) correlated with `context`: they carry
/// its `dd.trace_id` and `dd.span_id` instead of those of the current `tracing` span. For spans
/// driven through the OpenTelemetry API ([`crate::TracingGuard::tracer`]), which are not
/// `tracing` spans. Nothing changes when the pipeline's trace ids are off (tracing off) or the
/// context is invalid.
///
/// ```
/// use opentelemetry::trace::{Span as _, Tracer as _};
///
/// fn checkout(tracer: &opentelemetry_sdk::trace::SdkTracer) {
///     let span = tracer.start("checkout");
///     datadog_otel_tracing::logs::in_span_context(span.span_context(), || {
///         tracing::info!("paid"); // carries the span's dd.trace_id and dd.span_id
///     });
/// }
/// ```
pub fn in_span_context<R>(context: &opentelemetry::trace::SpanContext, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<(u64, u64)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = GIVEN_IDS.try_with(|ids| ids.set(self.0));
        }
    }
    let ids = context.is_valid().then(|| {
        let trace_low = u128::from_be_bytes(context.trace_id().to_bytes()) as u64;
        (trace_low, u64::from_be_bytes(context.span_id().to_bytes()))
    });
    let _restore = Restore(GIVEN_IDS.with(|given| given.replace(ids)));
    f()
}

/// Marks this thread as looking up span ids until dropped.
struct Lookup;

impl Lookup {
    fn enter() -> Self {
        let _ = IN_LOOKUP.try_with(|flag| flag.set(true));
        Lookup
    }

    fn active() -> bool {
        IN_LOOKUP.try_with(|flag| flag.get()).unwrap_or(true)
    }
}

impl Drop for Lookup {
    fn drop(&mut self) {
        let _ = IN_LOOKUP.try_with(|flag| flag.set(false));
    }
}

impl<S, W> Layer<S> for JsonLogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        if self.carry_ids {
            let _ = self.dispatch.set(subscriber.downgrade());
        }
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let given = if self.carry_ids {
            GIVEN_IDS.try_with(std::cell::Cell::get).ok().flatten()
        } else {
            None
        };
        let ids = if given.is_some() || Lookup::active() {
            given
        } else {
            self.trace_ids::<S>(event)
        };
        let write = |line: &mut String| {
            line.clear();
            if self.format.write_line(line, event, ids).is_ok() {
                // A log line that cannot be written is lost; there is nowhere to report it.
                let _ = self
                    .make_writer
                    .make_writer_for(event.metadata())
                    .write_all(line.as_bytes());
            }
        };
        // A line logged while formatting one (from a `Debug` impl), or while the thread ends,
        // gets a buffer of its own.
        let reused = LINE.try_with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                write(&mut line);
                true
            }
            Err(_) => false,
        });
        if !matches!(reused, Ok(true)) {
            write(&mut String::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects what the layer writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        /// The lines written so far, each parsed as JSON.
        fn lines(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
                .collect()
        }
    }

    /// The lines a subscriber with this layer alone writes while `f` runs, parsed.
    fn lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let sink = Sink::default();
        let writer = sink.clone();
        let layer = JsonLogLayer::new(
            DatadogJsonFormat::new("notes", Some("Dev \"x\""), None),
            move || writer.clone(),
        );
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f);
        sink.lines()
    }

    #[test]
    fn each_line_is_one_json_object_with_escaped_fields() {
        let lines = lines(|| {
            tracing::info!(
                n = 3i64,
                big = u64::MAX,
                ratio = f64::NAN,
                ok = true,
                path = "a\"b\\c\nd\u{1}",
                debug = ?"quoted",
                level = "mine",
                "said {}", "hi\t"
            );
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["field.level"], "mine");
        assert_eq!(line["message"], "said hi\t");
        assert_eq!(line["n"], 3);
        assert_eq!(line["big"], u64::MAX);
        assert!(line["ratio"].is_null());
        assert_eq!(line["ok"], true);
        assert_eq!(line["path"], "a\"b\\c\nd\u{1}");
        assert_eq!(line["debug"], "\"quoted\"");
        assert_eq!(line["dd.service"], "notes");
        assert_eq!(line["dd.env"], "Dev \"x\"");
        assert!(line.get("dd.version").is_none());
        assert!(line.get("dd.trace_id").is_none(), "no span, no trace id");
        let ts = line["timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert!(ts.ends_with('Z') && ts.len() == 27, "{ts}");
    }

    /// A subscriber with the log layer (trace ids on) and `tracing-opentelemetry` over a
    /// provider of its own (context activation off, as the pipeline has it): the provider,
    /// what the layer writes, the subscriber.
    fn traced_logs() -> (
        opentelemetry_sdk::trace::SdkTracerProvider,
        Sink,
        impl tracing::Subscriber + Send + Sync,
    ) {
        use opentelemetry::trace::TracerProvider as _;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_context_activation(false);
        let sink = Sink::default();
        let writer = sink.clone();
        let layer = JsonLogLayer::new(DatadogJsonFormat::new("notes", None, None), move || {
            writer.clone()
        })
        .with_trace_ids();
        let subscriber = tracing_subscriber::registry().with(layer).with(otel);
        (provider, sink, subscriber)
    }

    #[test]
    fn lines_in_a_traced_span_carry_its_ids_without_context_activation() {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let (_provider, sink, subscriber) = traced_logs();
        let expected = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("outer");
            let _entered = span.enter();
            tracing::info!("inside");
            let sc = span.context().span().span_context().clone();
            let trace_low = u128::from_be_bytes(sc.trace_id().to_bytes()) as u64;
            let span_id = u64::from_be_bytes(sc.span_id().to_bytes());
            (trace_low.to_string(), span_id.to_string())
        });
        let lines = sink.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["dd.trace_id"], expected.0.as_str());
        assert_eq!(lines[0]["dd.span_id"], expected.1.as_str());
    }

    /// Lines inside `in_span_context` carry the given span's ids, even inside a `tracing`
    /// span; after it, the `tracing` span's again.
    #[test]
    fn lines_inside_in_span_context_carry_that_spans_ids() {
        use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
        let (provider, sink, subscriber) = traced_logs();
        let api_span = provider.tracer("api").start("checkout");
        let sc = api_span.span_context().clone();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("outer");
            let _entered = span.enter();
            in_span_context(&sc, || tracing::info!("given"));
            tracing::info!("after");
        });
        let lines = sink.lines();
        assert_eq!(lines.len(), 2);
        let trace_low = (u128::from_be_bytes(sc.trace_id().to_bytes()) as u64).to_string();
        let span_id = u64::from_be_bytes(sc.span_id().to_bytes()).to_string();
        assert_eq!(lines[0]["dd.trace_id"], trace_low.as_str());
        assert_eq!(lines[0]["dd.span_id"], span_id.as_str());
        assert_ne!(lines[1]["dd.span_id"], span_id.as_str(), "{}", lines[1]);
        assert!(lines[1]["dd.span_id"].is_string(), "{}", lines[1]);
    }

    #[test]
    fn ids_come_from_the_nearest_traced_span_whatever_the_log_filter() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        use tracing_subscriber::filter::{EnvFilter, LevelFilter};
        use tracing_subscriber::Layer as _;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_context_activation(false)
            .with_filter(LevelFilter::INFO);
        let sink = Sink::default();
        let writer = sink.clone();
        // The logs see warnings, and debug spans of `lib` that the traces do not see.
        let logs = JsonLogLayer::new(DatadogJsonFormat::new("notes", None, None), move || {
            writer.clone()
        })
        .with_trace_ids()
        .with_filter(EnvFilter::new("warn,lib=debug"));
        let subscriber = tracing_subscriber::registry().with(logs).with(otel);
        let expected = tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request");
            let _in_request = request.enter();
            // An info span the log filter leaves out, then a debug span the traces leave out.
            tracing::warn!("in the request");
            let inner = tracing::debug_span!(target: "lib", "inner");
            let _in_inner = inner.enter();
            tracing::warn!("in a span only the logs see");
            let sc = request.context().span().span_context().clone();
            u128::from_be_bytes(sc.trace_id().to_bytes()) as u64
        });
        let lines = sink.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            assert_eq!(line["dd.trace_id"], expected.to_string().as_str(), "{line}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let at = |s: &str| {
            let t = chrono::DateTime::parse_from_rfc3339(s).unwrap();
            let mut out = String::new();
            write_timestamp(&mut out, t.with_timezone(&Utc)).unwrap();
            out
        };
        assert_eq!(
            at("2026-12-03T09:05:07.000042Z"),
            "2026-12-03T09:05:07.000042Z"
        );
        assert_eq!(
            at("0999-01-01T00:00:00.999999Z"),
            "0999-01-01T00:00:00.999999Z"
        );
        // chrono keeps a leap second as 1_000_000+ µs of second 59.
        assert_eq!(at("2016-12-31T23:59:60.5Z"), "2016-12-31T23:59:60.500000Z");
    }
}
