//! The one change made to `opentelemetry-datadog`'s bytes, in a single streaming pass.
//!
//! The crate encodes the v0.5 payload `[strings, [[span, …], …]]`, each span a 12-element array
//! `[service, name, resource, trace_id, span_id, parent_id, start, duration, error, meta,
//! metrics, type]` whose strings are indexes into `strings`. It writes every attribute as a
//! string tag and two metrics of its own on every span (`_sampling_priority_v1: 1`,
//! `_dd.measured`). [`rewrite`] copies the payload once, span by span, and on the way:
//! - drops the tags that only steer the crate's mapping ([`CONTROL_KEYS`]);
//! - drops the crate's two metrics (`_dd.measured` stays when it is 1) and writes the metrics the
//!   [`BatchPlan`] holds for the span: its numeric attributes, taken out before encoding so that
//!   numbers stay numbers, and on chunk roots the chunk metrics (the sampling priority);
//! - drops `version` from spans of another service (those with `_dd.base_service`: `postgres`,
//!   `reqwest`, `notes_helper`), as ddtrace writes `version` only on the service's own spans;
//! - appends the plan's metric names to the string table.
//!
//! Anything else it meets (another layout, a span the plan does not know) is an error: the
//! caller drops the payload rather than send wrong priorities or stray tags.

/// Span attributes that steer the mapping (operation, service, resource, type) and are not sent
/// as tags; `service` is the crate's copy of the span's own service (noise).
pub const CONTROL_KEYS: &[&str] = &[
    crate::spans::OPERATION_NAME,
    crate::spans::SERVICE_NAME,
    crate::spans::RESOURCE_NAME,
    "span.type",
    "service",
];
/// The crate's own metrics, replaced by the plan's.
const CRATE_PRIORITY: &str = "_sampling_priority_v1";
const CRATE_MEASURED: &str = "_dd.measured";

/// Why a payload could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The bytes are not the v0.5 layout this pass knows.
    #[error("unexpected payload layout: {0}")]
    Layout(&'static str),
    /// The msgpack itself is broken (the decoder's or encoder's error is the source).
    #[error("malformed msgpack")]
    Msgpack(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A span that the plan for this batch does not know.
    #[error("span {0} is not in the export plan")]
    UnknownSpan(u64),
}

fn mp<E: std::error::Error + Send + Sync + 'static>(e: E) -> PayloadError {
    PayloadError::Msgpack(Box::new(e))
}

/// What the exporter decided per span of a batch, before the crate encoded it.
#[derive(Debug, Default)]
pub struct BatchPlan {
    /// Whether the batch's spans went through the client-side stats (the payload's headers say
    /// so).
    pub computed_stats: bool,
    /// Metric names, appended to the payload's string table in this order.
    names: Vec<String>,
    /// Per span (sorted by span id once [`BatchPlan::seal`]ed): its metrics, as
    /// (index into `names`, value).
    spans: Vec<(u64, Vec<(u32, f64)>)>,
    sealed: bool,
}

impl BatchPlan {
    /// The index of metric name `name` among the appended strings (added when new).
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i as u32;
        }
        self.names.push(name.to_string());
        (self.names.len() - 1) as u32
    }

    /// Registers span `span_id` with its metrics, as ([`BatchPlan::intern`]ed name, value).
    pub fn add_span(&mut self, span_id: u64, metrics: Vec<(u32, f64)>) {
        self.spans.push((span_id, metrics));
        self.sealed = false;
    }

    /// Spans in the plan.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    fn seal(&mut self) {
        if !self.sealed {
            self.spans.sort_unstable_by_key(|(id, _)| *id);
            self.sealed = true;
        }
    }

    fn metrics_of(&self, span_id: u64) -> Option<&[(u32, f64)]> {
        self.spans
            .binary_search_by_key(&span_id, |(id, _)| *id)
            .ok()
            .map(|i| self.spans[i].1.as_slice())
    }
}

/// What a dictionary string is to the pass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Plain,
    Control,
    Priority,
    Measured,
    /// `version`: kept on the process's own spans only.
    Version,
    /// `_dd.base_service`: the span belongs to another service.
    BaseService,
}

/// Rewrites `payload` into `out` following `plan` (see the module docs). Returns the number of
/// spans.
pub fn rewrite(
    payload: &[u8],
    plan: &mut BatchPlan,
    out: &mut Vec<u8>,
) -> Result<usize, PayloadError> {
    plan.seal();
    let mut input = payload;
    let rd = &mut input;
    out.clear();
    out.reserve(payload.len() + 64);

    if rmp::decode::read_array_len(rd).map_err(mp)? != 2 {
        return Err(PayloadError::Layout("the root is not [strings, traces]"));
    }
    write_array_len(out, 2)?;
    // The string table, copied as it is, classified, then the plan's names appended.
    let count = rmp::decode::read_array_len(rd).map_err(mp)?;
    let mut classes = Vec::with_capacity(count as usize);
    write_array_len(out, count + plan.names.len() as u32)?;
    let strings_start = payload.len() - rd.len();
    for _ in 0..count {
        let len = rmp::decode::read_str_len(rd).map_err(mp)? as usize;
        if rd.len() < len {
            return Err(PayloadError::Layout("a string runs past the end"));
        }
        let (bytes, rest) = rd.split_at(len);
        *rd = rest;
        let text = std::str::from_utf8(bytes).map_err(mp)?;
        classes.push(if CONTROL_KEYS.contains(&text) {
            Class::Control
        } else if text == CRATE_PRIORITY {
            Class::Priority
        } else if text == CRATE_MEASURED {
            Class::Measured
        } else if text == "version" {
            Class::Version
        } else if text == "_dd.base_service" {
            Class::BaseService
        } else {
            Class::Plain
        });
    }
    // The strings themselves go through as they are, in one copy.
    out.extend_from_slice(&payload[strings_start..payload.len() - rd.len()]);
    for name in &plan.names {
        rmp::encode::write_str(out, name).map_err(mp)?;
    }
    let class = |index: u32| -> Result<Class, PayloadError> {
        classes
            .get(index as usize)
            .copied()
            .ok_or_else(|| PayloadError::Layout("a string index past the table"))
    };

    let traces = rmp::decode::read_array_len(rd).map_err(mp)?;
    write_array_len(out, traces)?;
    let mut spans_seen = 0;
    let mut meta: Vec<(u32, u32)> = Vec::with_capacity(32);
    let mut metrics: Vec<(u32, f64)> = Vec::with_capacity(8);
    for _ in 0..traces {
        let spans = rmp::decode::read_array_len(rd).map_err(mp)?;
        write_array_len(out, spans)?;
        for _ in 0..spans {
            spans_seen += 1;
            if rmp::decode::read_array_len(rd).map_err(mp)? != 12 {
                return Err(PayloadError::Layout("a span is not a 12-element array"));
            }
            write_array_len(out, 12)?;
            // Service, name, resource, the three ids, start, duration, error: checked, then
            // copied through as they are.
            let fields_start = payload.len() - rd.len();
            for _ in 0..3 {
                let s: u32 = rmp::decode::read_int(rd).map_err(mp)?;
                class(s)?;
            }
            let _trace_id: u64 = rmp::decode::read_int(rd).map_err(mp)?;
            let span_id: u64 = rmp::decode::read_int(rd).map_err(mp)?;
            let _parent_id: u64 = rmp::decode::read_int(rd).map_err(mp)?;
            let _start: i64 = rmp::decode::read_int(rd).map_err(mp)?;
            let _duration: i64 = rmp::decode::read_int(rd).map_err(mp)?;
            let _error: i32 = rmp::decode::read_int(rd).map_err(mp)?;
            out.extend_from_slice(&payload[fields_start..payload.len() - rd.len()]);

            let planned = plan
                .metrics_of(span_id)
                .ok_or_else(|| PayloadError::UnknownSpan(span_id))?;

            meta.clear();
            let mut other_service = false;
            let mut version = None;
            let entries = rmp::decode::read_map_len(rd).map_err(mp)?;
            for _ in 0..entries {
                let k: u32 = rmp::decode::read_int(rd).map_err(mp)?;
                let v: u32 = rmp::decode::read_int(rd).map_err(mp)?;
                class(v)?;
                match class(k)? {
                    Class::Plain => meta.push((k, v)),
                    Class::BaseService => {
                        other_service = true;
                        meta.push((k, v));
                    }
                    Class::Version => {
                        version = Some(k);
                        meta.push((k, v));
                    }
                    Class::Control => {}
                    Class::Priority | Class::Measured => {
                        return Err(PayloadError::Layout("a crate metric written as a tag"))
                    }
                }
            }
            if let (true, Some(version)) = (other_service, version) {
                meta.retain(|(k, _)| *k != version);
            }
            write_map_len(out, meta.len() as u32)?;
            for (k, v) in &meta {
                rmp::encode::write_uint(out, u64::from(*k)).map_err(mp)?;
                rmp::encode::write_uint(out, u64::from(*v)).map_err(mp)?;
            }

            metrics.clear();
            let entries = rmp::decode::read_map_len(rd).map_err(mp)?;
            for _ in 0..entries {
                let k: u32 = rmp::decode::read_int(rd).map_err(mp)?;
                let v = rmp::decode::read_f64(rd).map_err(mp)?;
                match class(k)? {
                    Class::Priority => {}
                    Class::Measured if v == 0.0 => {}
                    _ => metrics.push((k, v)),
                }
            }
            let added = count;
            write_map_len(out, (metrics.len() + planned.len()) as u32)?;
            for (k, v) in &metrics {
                rmp::encode::write_uint(out, u64::from(*k)).map_err(mp)?;
                rmp::encode::write_f64(out, *v).map_err(mp)?;
            }
            for (k, v) in planned {
                rmp::encode::write_uint(out, u64::from(added + k)).map_err(mp)?;
                rmp::encode::write_f64(out, *v).map_err(mp)?;
            }

            let span_type: u32 = rmp::decode::read_int(rd).map_err(mp)?;
            class(span_type)?;
            rmp::encode::write_uint(out, u64::from(span_type)).map_err(mp)?;
        }
    }
    if !rd.is_empty() {
        return Err(PayloadError::Layout("bytes after the traces"));
    }
    if spans_seen != plan.len() {
        return Err(PayloadError::Layout(
            "not every planned span was in the payload",
        ));
    }
    Ok(spans_seen)
}

fn write_array_len(out: &mut Vec<u8>, len: u32) -> Result<(), PayloadError> {
    rmp::encode::write_array_len(out, len)
        .map(|_| ())
        .map_err(mp)
}

fn write_map_len(out: &mut Vec<u8>, len: u32) -> Result<(), PayloadError> {
    rmp::encode::write_map_len(out, len).map(|_| ()).map_err(mp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_foreign_layouts_are_errors_not_panics() {
        let mut plan = BatchPlan::default();
        let mut out = Vec::new();
        assert!(rewrite(b"\x01\x02", &mut plan, &mut out).is_err());
        assert!(rewrite(&[], &mut plan, &mut out).is_err());
        // [strings, traces] with a span of 3 elements.
        let mut bad = Vec::new();
        rmp::encode::write_array_len(&mut bad, 2).unwrap();
        rmp::encode::write_array_len(&mut bad, 1).unwrap();
        rmp::encode::write_str(&mut bad, "").unwrap();
        rmp::encode::write_array_len(&mut bad, 1).unwrap();
        rmp::encode::write_array_len(&mut bad, 1).unwrap();
        rmp::encode::write_array_len(&mut bad, 3).unwrap();
        assert!(matches!(
            rewrite(&bad, &mut plan, &mut out),
            Err(PayloadError::Layout(_))
        ));
    }
}
