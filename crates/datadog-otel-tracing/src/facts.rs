//! The Datadog facts of a trace chunk, computed once per chunk at export and carried typed.
//!
//! Inside the process these facts travel with the span context (the `dd` member of the W3C
//! `tracestate`, see [`crate::propagation::DdState`]), because that is the only state
//! OpenTelemetry hands from a parent span to its children and to the propagator. The exporter
//! reads them once per chunk, from the chunk's local root, into [`TraceFacts`]; everything after
//! that (the chunk-level tags on the root, the priority metric) works from this typed form.
//!
//! To carry a new chunk-level fact (say an agent or rule sampling rate), add a field here, fill
//! it in [`TraceFacts::of`], and write it in [`TraceFacts::chunk_tags`] (a string tag) or
//! [`TraceFacts::chunk_metrics`] (a numeric metric); both are written on the chunk root only.

use crate::propagation::DdState;
use opentelemetry::trace::SpanContext;
use opentelemetry::{Key, KeyValue};

/// Sampling priority, as Datadog's tracers and Agent define it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplingPriority(pub i32);

impl SamplingPriority {
    /// `-1`: dropped by a user decision (rule, manual).
    pub const USER_REJECT: Self = Self(-1);
    /// `0`: dropped by the default or agent-rate sampler.
    pub const AUTO_REJECT: Self = Self(0);
    /// `1`: kept by the default or agent-rate sampler.
    pub const AUTO_KEEP: Self = Self(1);
    /// `2`: kept by a user decision.
    pub const USER_KEEP: Self = Self(2);

    /// Whether the Agent keeps the trace (after computing its statistics from every trace).
    pub fn is_keep(self) -> bool {
        self.0 > 0
    }
}

/// The chunk-level facts of one trace chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFacts {
    /// The sampling priority (metric `_sampling_priority_v1` on the chunk root).
    pub priority: SamplingPriority,
    /// Where the trace started (`synthetics`, `rum`, …): `_dd.origin`, on every span of the chunk,
    /// as the Agent reads it from any span.
    pub origin: Option<String>,
    /// Propagated trace tags without their `_dd.p.` prefix, the decision maker (`dm`) among them.
    pub propagated: Vec<(String, String)>,
    /// The upper 64 bits of the 128-bit trace id (`_dd.p.tid`; zero: a 64-bit id, no tag).
    pub trace_id_high: u64,
    /// The last Datadog parent of an extracted W3C context (`_dd.parent_id`).
    pub parent_id: Option<String>,
    /// Extracted baggage members tagged as `baggage.<key>` (`DD_TRACE_BAGGAGE_TAG_KEYS`).
    pub baggage_tags: Vec<(String, String)>,
    /// Continued from Datadog headers without a parent: the chunk root's stand-in parent
    /// ([`crate::propagation::NO_PARENT`]) is written as none.
    pub no_parent: bool,
}

/// Tag naming the language of the tracer, on each chunk root.
pub const LANGUAGE: (&str, &str) = ("language", "rust");

impl TraceFacts {
    /// Reads the facts of the trace `context` belongs to (one parse of its `dd` tracestate).
    /// A context without a priority counts as kept when sampled, dropped otherwise.
    pub fn of(context: &SpanContext) -> Self {
        let dd = DdState::from_trace_state(context.trace_state());
        let priority = dd.priority_or(context.is_sampled());
        let id = u128::from_be_bytes(context.trace_id().to_bytes());
        Self {
            priority: SamplingPriority(priority),
            origin: dd.origin,
            propagated: dd.tags,
            trace_id_high: (id >> 64) as u64,
            parent_id: dd.parent_id,
            baggage_tags: dd.baggage_tags,
            no_parent: dd.no_parent,
        }
    }

    /// A keep or drop by hand: its priority, decision maker `-4` (manual).
    pub fn decide_manually(&mut self, priority: SamplingPriority) {
        self.priority = priority;
        match self.propagated.iter_mut().find(|(k, _)| k == "dm") {
            Some((_, dm)) => *dm = "-4".to_string(),
            None => self.propagated.push(("dm".to_string(), "-4".to_string())),
        }
    }

    /// The string tags written once, on the chunk root: `_dd.p.*` (with `_dd.p.tid` when the
    /// trace id has 128 bits), `_dd.parent_id` (after a W3C extraction that carried it),
    /// `baggage.<key>` (extracted baggage, `DD_TRACE_BAGGAGE_TAG_KEYS`) and `language`.
    pub fn chunk_tags(&self) -> Vec<KeyValue> {
        let mut tags = Vec::with_capacity(self.propagated.len() + 2);
        for (name, value) in &self.propagated {
            // The decision maker is on nearly every trace: its key needs no allocation.
            let key = match name.as_str() {
                "dm" => Key::from_static_str("_dd.p.dm"),
                other => Key::from(format!("_dd.p.{other}")),
            };
            tags.push(KeyValue::new(key, value.clone()));
        }
        if self.trace_id_high != 0 {
            tags.push(KeyValue::new(
                "_dd.p.tid",
                format!("{:016x}", self.trace_id_high),
            ));
        }
        if let Some(parent) = &self.parent_id {
            tags.push(KeyValue::new("_dd.parent_id", parent.clone()));
        }
        for (key, value) in &self.baggage_tags {
            tags.push(KeyValue::new(format!("baggage.{key}"), value.clone()));
        }
        tags.push(KeyValue::new(LANGUAGE.0, LANGUAGE.1));
        tags
    }

    /// The numeric metrics written once, on the chunk root: the sampling priority.
    pub fn chunk_metrics(&self) -> Vec<(&'static str, f64)> {
        vec![("_sampling_priority_v1", f64::from(self.priority.0))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    #[test]
    fn facts_come_from_the_context_once_and_typed() {
        let state: TraceState = "dd=s:2;o:rum;t.dm:-4".parse().unwrap();
        let context = SpanContext::new(
            TraceId::from(0x6b058a5d_00000000_493c264c_32613b9e_u128),
            SpanId::from(5u64),
            TraceFlags::SAMPLED,
            false,
            state,
        );
        let facts = TraceFacts::of(&context);
        assert_eq!(facts.priority, SamplingPriority::USER_KEEP);
        assert_eq!(facts.origin.as_deref(), Some("rum"));
        assert_eq!(facts.trace_id_high, 0x6b058a5d_00000000);
        let tags: Vec<(String, String)> = facts
            .chunk_tags()
            .into_iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        assert_eq!(
            tags,
            vec![
                ("_dd.p.dm".to_string(), "-4".to_string()),
                ("_dd.p.tid".to_string(), "6b058a5d00000000".to_string()),
                ("language".to_string(), "rust".to_string()),
            ]
        );
        assert_eq!(facts.chunk_metrics(), vec![("_sampling_priority_v1", 2.0)]);
    }

    #[test]
    fn the_last_datadog_parent_goes_on_the_chunk_root() {
        let state: TraceState = "dd=s:1;p:XX!X".parse().unwrap();
        let context = SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(5u64),
            TraceFlags::SAMPLED,
            false,
            state,
        );
        let facts = TraceFacts::of(&context);
        assert_eq!(facts.parent_id.as_deref(), Some("XX!X"));
        assert!(facts
            .chunk_tags()
            .iter()
            .any(|kv| kv.key.as_str() == "_dd.parent_id" && kv.value.as_str() == "XX!X"));
    }

    #[test]
    fn no_priority_follows_the_sampled_flag() {
        let unsampled = SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(5u64),
            TraceFlags::default(),
            true,
            TraceState::default(),
        );
        let facts = TraceFacts::of(&unsampled);
        assert_eq!(facts.priority, SamplingPriority::AUTO_REJECT);
        assert!(!facts.priority.is_keep());
        assert_eq!(facts.trace_id_high, 0);
        assert_eq!(facts.chunk_tags().len(), 1, "language only");
    }
}
