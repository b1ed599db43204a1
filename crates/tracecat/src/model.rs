//! Spans and traces in the Datadog Agent's JSON form, as the test agent returns them.
//!
//! Input is read leniently, since it may be a hand-made or trimmed dump: a list of traces (each a
//! list of spans, what `GET /test/traces` answers), a flat list of spans, or one span object.
//! Spans are grouped by their (64-bit) `trace_id`, so the chunks that two processes send
//! separately come together as one trace; a span seen twice is kept once.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// One span: the fields of the Agent's trace API that tracecat shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub resource: String,
    pub trace_id: u64,
    pub span_id: u64,
    /// 0 for a root span.
    pub parent_id: u64,
    /// Nanoseconds since the Unix epoch.
    pub start: i64,
    /// Nanoseconds.
    pub duration: i64,
    pub error: bool,
    pub span_type: String,
    pub meta: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
}

impl Span {
    /// Where the span ends, in nanoseconds since the epoch.
    pub fn end(&self) -> i64 {
        self.start.saturating_add(self.duration.max(0))
    }

    /// The error message of an error span (`error.message`, else `error.msg`, else `error.type`).
    pub fn error_message(&self) -> Option<&str> {
        ["error.message", "error.msg", "error.type"]
            .iter()
            .find_map(|k| self.meta.get(*k))
            .map(String::as_str)
            .filter(|m| !m.is_empty())
    }

    /// Reads one span of the Agent's JSON form. `trace_id` and `span_id` are required; anything
    /// else missing takes an empty value.
    pub fn from_json(value: &Value) -> Result<Span> {
        let obj = match value.as_object() {
            Some(obj) => obj,
            None => bail!("a span must be a JSON object, found {}", kind(value)),
        };
        let text = |key: &str| {
            obj.get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let id = |key: &str| -> Result<u64> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(0),
                Some(v) => as_u64(v).with_context(|| format!("`{key}` is not an id: {v}")),
            }
        };
        let nanos = |key: &str| -> i64 {
            match obj.get(key) {
                Some(v) => v
                    .as_i64()
                    .or_else(|| v.as_f64().map(|f| f as i64))
                    .unwrap_or(0),
                None => 0,
            }
        };
        let trace_id = id("trace_id")?;
        let span_id = id("span_id")?;
        if trace_id == 0 || span_id == 0 {
            bail!("a span needs a non-zero `trace_id` and `span_id`");
        }
        let error = match obj.get("error") {
            Some(Value::Bool(b)) => *b,
            Some(v) => v.as_f64().is_some_and(|n| n != 0.0),
            None => false,
        };
        let meta = obj
            .get("meta")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let metrics = obj
            .get("metrics")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_f64().map(|f| (k.clone(), f)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Span {
            service: text("service"),
            name: text("name"),
            resource: text("resource"),
            trace_id,
            span_id,
            parent_id: id("parent_id")?,
            start: nanos("start"),
            duration: nanos("duration"),
            error,
            span_type: text("type"),
            meta,
            metrics,
        })
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An id: a JSON integer, or a decimal string (some tools write 64-bit ids as strings).
fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// All the spans of one trace, in no particular order.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// The lower 64 bits of the trace id: what the Agent's API carries as `trace_id`, and what
    /// Datadog shows as the trace id.
    pub trace_id: u64,
    /// The upper 64 bits (`_dd.p.tid`), when a span carries them.
    pub trace_id_high: Option<u64>,
    pub spans: Vec<Span>,
}

impl Trace {
    /// The whole 128-bit id as 32 hex digits, when the upper half is known.
    pub fn trace_id_128(&self) -> Option<String> {
        self.trace_id_high
            .map(|high| format!("{high:016x}{:016x}", self.trace_id))
    }

    /// Where the trace starts: its earliest span's start.
    pub fn start(&self) -> i64 {
        self.spans.iter().map(|s| s.start).min().unwrap_or(0)
    }

    /// Where the trace ends: its latest span's end.
    pub fn end(&self) -> i64 {
        self.spans.iter().map(Span::end).max().unwrap_or(0)
    }

    /// From the first start to the last end, in nanoseconds.
    pub fn duration(&self) -> i64 {
        self.end().saturating_sub(self.start())
    }

    /// The spans whose parent is not in the trace (normally one: the root), earliest first.
    pub fn roots(&self) -> Vec<&Span> {
        let ids: HashSet<u64> = self.spans.iter().map(|s| s.span_id).collect();
        let mut roots: Vec<&Span> = self
            .spans
            .iter()
            .filter(|s| s.parent_id == 0 || !ids.contains(&s.parent_id))
            .collect();
        roots.sort_by_key(|s| (s.start, s.span_id));
        roots
    }

    /// When the trace "happened", for `--last`: the start of its root span (`parent_id` 0), or
    /// of its earliest span when the root has not arrived.
    pub fn root_start(&self) -> i64 {
        self.spans
            .iter()
            .filter(|s| s.parent_id == 0)
            .map(|s| s.start)
            .min()
            .unwrap_or_else(|| self.start())
    }

    /// The services of the trace, in the order they first appear (by span start).
    pub fn services(&self) -> Vec<&str> {
        let mut spans: Vec<&Span> = self.spans.iter().collect();
        spans.sort_by_key(|s| (s.start, s.span_id));
        let mut seen = Vec::new();
        for span in spans {
            if !seen.contains(&span.service.as_str()) {
                seen.push(span.service.as_str());
            }
        }
        seen
    }

    pub fn error_count(&self) -> usize {
        self.spans.iter().filter(|s| s.error).count()
    }
}

/// Reads spans from any of the accepted JSON shapes (see the module docs) and groups them into
/// traces, ordered by start.
pub fn traces_from_json(value: &Value) -> Result<Vec<Trace>> {
    let mut spans = Vec::new();
    collect_spans(value, &mut spans, 0)?;
    Ok(group(spans))
}

fn collect_spans(value: &Value, out: &mut Vec<Span>, depth: usize) -> Result<()> {
    match value {
        Value::Array(items) if depth < 2 => {
            for (i, item) in items.iter().enumerate() {
                collect_spans(item, out, depth + 1).with_context(|| format!("item {i}"))?;
            }
            Ok(())
        }
        Value::Object(_) => {
            out.push(Span::from_json(value)?);
            Ok(())
        }
        other => bail!(
            "expected a list of traces (lists of spans), a list of spans or a span; found {}",
            kind(other)
        ),
    }
}

/// Groups spans by trace id (dropping repeated span ids), ordered by trace start.
pub fn group(spans: Vec<Span>) -> Vec<Trace> {
    let mut by_id: BTreeMap<u64, Trace> = BTreeMap::new();
    let mut seen: HashSet<(u64, u64)> = HashSet::with_capacity(spans.len());
    for span in spans {
        let trace = by_id.entry(span.trace_id).or_insert_with(|| Trace {
            trace_id: span.trace_id,
            trace_id_high: None,
            spans: Vec::new(),
        });
        if !seen.insert((span.trace_id, span.span_id)) {
            continue;
        }
        if trace.trace_id_high.is_none() {
            trace.trace_id_high = span
                .meta
                .get("_dd.p.tid")
                .and_then(|tid| u64::from_str_radix(tid, 16).ok());
        }
        trace.spans.push(span);
    }
    let mut traces: Vec<Trace> = by_id.into_values().collect();
    traces.sort_by_key(|t| (t.start(), t.trace_id));
    traces
}

/// Which trace to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The trace whose root started last.
    Last,
    /// The trace with this id (see [`parse_trace_id`]).
    Id(TraceId),
}

/// A trace id as a user gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceId {
    /// The lower 64 bits, as Datadog shows them (decimal) and logs carry them (`dd.trace_id`).
    Low(u64),
    /// A whole 128-bit id (32 hex digits, as in W3C `traceparent`).
    Full { high: u64, low: u64 },
}

/// Parses a trace id: decimal digits are the 64-bit id Datadog shows; `0x…` or 16 hex digits is
/// the same in hex; 32 hex digits is the full 128-bit id.
pub fn parse_trace_id(text: &str) -> Result<TraceId> {
    let t = text.trim();
    let bad = || {
        format!(
            "`{text}` is not a trace id: give the decimal id Datadog shows (e.g. 1234567890123456789), \
             0x plus hex, or the 32 hex digits of a 128-bit id"
        )
    };
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return parse_hex(hex).with_context(bad);
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map(TraceId::Low).with_context(bad);
    }
    if t.len() == 16 || t.len() == 32 {
        return parse_hex(t).with_context(bad);
    }
    bail!(bad())
}

fn parse_hex(hex: &str) -> Result<TraceId> {
    if hex.is_empty() || hex.len() > 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("not 1 to 32 hex digits");
    }
    let value = u128::from_str_radix(hex, 16)?;
    let low = value as u64;
    let high = (value >> 64) as u64;
    Ok(if hex.len() > 16 {
        TraceId::Full { high, low }
    } else {
        TraceId::Low(low)
    })
}

impl TraceId {
    pub fn matches(&self, trace: &Trace) -> bool {
        match *self {
            TraceId::Low(low) => trace.trace_id == low,
            TraceId::Full { high, low } => {
                trace.trace_id == low && trace.trace_id_high.is_none_or(|h| h == high)
            }
        }
    }
}

/// Narrows the traces to choose from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only traces with a span of this service.
    pub service: Option<String>,
    /// Only traces whose root span's resource contains this text (e.g. `POST /notes`).
    pub resource: Option<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.service.is_none() && self.resource.is_none()
    }

    pub fn matches(&self, trace: &Trace) -> bool {
        let service_ok = self
            .service
            .as_deref()
            .is_none_or(|want| trace.spans.iter().any(|s| s.service == want));
        let resource_ok = self.resource.as_deref().is_none_or(|want| {
            trace
                .roots()
                .first()
                .is_some_and(|root| root.resource.contains(want))
        });
        service_ok && resource_ok
    }

    /// The traces that match, in their order.
    pub fn apply(&self, traces: Vec<Trace>) -> Vec<Trace> {
        traces.into_iter().filter(|t| self.matches(t)).collect()
    }

    /// `--service notes --resource 'POST /notes'`, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.service {
            parts.push(format!("--service {s:?}"));
        }
        if let Some(r) = &self.resource {
            parts.push(format!("--resource {r:?}"));
        }
        parts.join(" ")
    }
}

/// Picks one trace; the error says what was there instead.
pub fn select<'a>(traces: &'a [Trace], selector: &Selector) -> Result<&'a Trace> {
    match selector {
        Selector::Last => traces
            .iter()
            .max_by_key(|t| (t.root_start(), t.start(), t.trace_id))
            .context("there are no traces"),
        Selector::Id(id) => match traces.iter().find(|t| id.matches(t)) {
            Some(trace) => Ok(trace),
            None => {
                let known: Vec<String> = traces.iter().map(|t| t.trace_id.to_string()).collect();
                if known.is_empty() {
                    bail!("there are no traces");
                }
                let mut shown = known.iter().rev().take(10).cloned().collect::<Vec<_>>();
                shown.reverse();
                bail!(
                    "no trace has id {}; there are {} trace(s){}: {}",
                    describe(id),
                    known.len(),
                    if known.len() > 10 {
                        ", the last 10"
                    } else {
                        ""
                    },
                    shown.join(", ")
                )
            }
        },
    }
}

fn describe(id: &TraceId) -> String {
    match *id {
        TraceId::Low(low) => low.to_string(),
        TraceId::Full { high, low } => format!("{high:016x}{low:016x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn span(trace: u64, id: u64, parent: u64, start: i64, duration: i64) -> Value {
        json!({"service": "s", "name": "n", "resource": "r", "trace_id": trace, "span_id": id,
               "parent_id": parent, "start": start, "duration": duration, "error": 0,
               "meta": {}, "metrics": {}})
    }

    #[test]
    fn reads_every_shape_and_merges_chunks() {
        let nested = json!([[span(1, 10, 0, 100, 50)], [span(1, 11, 10, 110, 20)]]);
        let flat = json!([span(1, 10, 0, 100, 50), span(1, 11, 10, 110, 20)]);
        for input in [nested, flat] {
            let traces = traces_from_json(&input).expect("valid input");
            assert_eq!(traces.len(), 1);
            assert_eq!(traces[0].spans.len(), 2);
            assert_eq!(traces[0].duration(), 50);
            assert_eq!(traces[0].roots().len(), 1);
        }
        let one = traces_from_json(&span(7, 1, 0, 0, 1)).expect("one span");
        assert_eq!(one[0].trace_id, 7);
        assert!(traces_from_json(&json!([])).expect("empty").is_empty());
    }

    #[test]
    fn repeated_spans_are_kept_once() {
        let input = json!([[span(1, 10, 0, 100, 50)], [span(1, 10, 0, 100, 50)]]);
        assert_eq!(traces_from_json(&input).expect("valid")[0].spans.len(), 1);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for input in [
            json!("x"),
            json!([1]),
            json!([[{"span_id": 1}]]),
            json!([{"trace_id": "abc", "span_id": 1}]),
            json!([{"trace_id": -1, "span_id": 1}]),
            json!([[[{"trace_id": 1, "span_id": 1}]]]),
        ] {
            assert!(traces_from_json(&input).is_err(), "{input}");
        }
    }

    #[test]
    fn error_flag_and_odd_values() {
        let mut s = span(1, 2, 0, 5, 1);
        s["error"] = json!(1);
        s["meta"] = json!({"error.message": "boom", "n": 3});
        s["metrics"] = json!({"x": 1.5, "bad": "y"});
        let span = Span::from_json(&s).expect("valid");
        assert!(span.error);
        assert_eq!(span.error_message(), Some("boom"));
        assert_eq!(span.meta["n"], "3");
        assert_eq!(span.metrics.len(), 1);
    }

    #[test]
    fn filters() {
        let mut a = span(1, 10, 0, 0, 5);
        a["resource"] = json!("POST /notes");
        a["service"] = json!("notes");
        let mut b = span(1, 11, 10, 1, 2);
        b["service"] = json!("calendar");
        let mut c = span(2, 20, 0, 9, 1);
        c["resource"] = json!("GET /health");
        let traces = traces_from_json(&json!([a, b, c])).expect("valid");
        let by = |service: Option<&str>, resource: Option<&str>| {
            let f = Filter {
                service: service.map(str::to_owned),
                resource: resource.map(str::to_owned),
            };
            f.apply(traces.clone())
                .iter()
                .map(|t| t.trace_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(by(None, None), vec![1, 2]);
        assert_eq!(by(Some("calendar"), None), vec![1]);
        assert_eq!(by(None, Some("POST /notes")), vec![1]);
        assert_eq!(by(None, Some("/health")), vec![2]);
        assert_eq!(by(Some("calendar"), Some("/health")), Vec::<u64>::new());
    }

    #[test]
    fn trace_ids() {
        assert_eq!(parse_trace_id("42").expect("dec"), TraceId::Low(42));
        assert_eq!(parse_trace_id("0x2a").expect("hex"), TraceId::Low(42));
        assert_eq!(
            parse_trace_id("000000000000002a").expect("hex16"),
            TraceId::Low(42)
        );
        assert_eq!(
            parse_trace_id("0000000000000001000000000000002a").expect("hex32"),
            TraceId::Full { high: 1, low: 42 }
        );
        for bad in ["", "x", "-1", "18446744073709551616", "0x", "12ab"] {
            assert!(parse_trace_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selects_the_last_trace_by_root_start() {
        // Trace 2 starts earlier overall only through a stray early child; its root is later.
        let input = json!([
            span(1, 10, 0, 1000, 10),
            span(2, 20, 0, 2000, 10),
            span(2, 21, 99, 500, 10),
        ]);
        let traces = traces_from_json(&input).expect("valid");
        assert_eq!(select(&traces, &Selector::Last).expect("last").trace_id, 2);
        let by_id = select(&traces, &Selector::Id(TraceId::Low(1))).expect("by id");
        assert_eq!(by_id.trace_id, 1);
        let missing = select(&traces, &Selector::Id(TraceId::Low(3)))
            .expect_err("no such trace")
            .to_string();
        assert!(missing.contains("there are 2 trace(s)"), "{missing}");
        assert!(select(&[], &Selector::Last).is_err());
    }
}
