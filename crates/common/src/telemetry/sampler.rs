//! Sampling and trace ids as Datadog's tracers do them.
//!
//! - A decision that arrives with the request (a sampling priority in Datadog headers or in the
//!   W3C `tracestate`/flags) is honoured and passed on.
//! - Otherwise `DD_TRACE_SAMPLE_RATE` decides (priority 2 keep / -1 drop, "user" decisions, as in
//!   Datadog's tracers); without it every trace is kept (priority 1, "auto keep").
//! - Every span is recorded and sent with its priority, dropped decisions included: the Agent
//!   computes its statistics from all traces, then drops those with priority 0 or -1.
//! - New trace ids are 128 bits, the upper half starting with the Unix time in seconds, which is
//!   the layout Datadog's tracers use.

use super::propagation::DdState;
use opentelemetry::trace::{Link, SpanId, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SamplingDecision, SamplingResult, ShouldSample,
};
use std::time::{SystemTime, UNIX_EPOCH};

/// The Datadog sampling rules.
#[derive(Debug, Clone)]
pub struct DatadogSampler {
    /// `DD_TRACE_SAMPLE_RATE`, when set.
    rate: Option<f64>,
}

impl DatadogSampler {
    pub fn new(rate: Option<f64>) -> Self {
        Self { rate }
    }

    /// The priority for a trace that starts here (or arrives without a decision).
    fn local_priority(&self, trace_id: TraceId) -> i32 {
        match self.rate {
            None => 1,
            Some(rate) => {
                // Deterministic on the low 64 bits of the trace id, like Datadog's samplers.
                let low = u128::from_be_bytes(trace_id.to_bytes()) as u64;
                let hashed = low.wrapping_mul(1_111_111_111_111_111_111);
                let threshold = (rate * u64::MAX as f64) as u64;
                if rate >= 1.0 || hashed <= threshold {
                    2
                } else {
                    -1
                }
            }
        }
    }
}

/// Every span is recorded and exported, whatever the priority: as with Datadog's tracers, the
/// Agent computes its statistics from all traces and then drops those whose priority is 0 or
/// -1. The priority (and the decision maker, `_dd.p.dm`) travels in the `dd` tracestate.
fn result(
    priority: i32,
    state: &TraceState,
    mut dd: DdState,
    maker: Option<&str>,
) -> SamplingResult {
    dd.priority = Some(priority);
    if let Some(maker) = maker {
        if dd.tag("dm").is_none() {
            dd.set_tag("dm", maker);
        }
    }
    SamplingResult {
        decision: SamplingDecision::RecordAndSample,
        attributes: Vec::new(),
        trace_state: dd.write_into(state, None),
    }
}

impl DatadogSampler {
    /// A decision made here: the priority and its mechanism (`-0` default, `-3` sampling rule).
    fn decide(&self, trace_id: TraceId) -> (i32, &'static str) {
        let priority = self.local_priority(trace_id);
        (priority, if self.rate.is_some() { "-3" } else { "-0" })
    }
}

impl ShouldSample for DatadogSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        if let Some(cx) = parent_context.filter(|cx| cx.has_active_span()) {
            let span = cx.span();
            let parent = span.span_context();
            if parent.is_valid() && !parent.is_remote() {
                // Decided where the trace entered this process: a child inherits it unparsed.
                return SamplingResult {
                    decision: SamplingDecision::RecordAndSample,
                    attributes: Vec::new(),
                    trace_state: parent.trace_state().clone(),
                };
            }
            if parent.is_valid() {
                let state = parent.trace_state();
                let dd = DdState::from_trace_state(state);
                return match dd.priority {
                    Some(p) => result(p, state, dd, None),
                    // A caller that left the decision to us (Datadog headers without priority).
                    None if parent.is_remote() && parent.is_sampled() => {
                        let (p, maker) = self.decide(trace_id);
                        result(p, state, dd, Some(maker))
                    }
                    None => result(i32::from(parent.is_sampled()), state, dd, None),
                };
            }
        }
        let (priority, maker) = self.decide(trace_id);
        result(
            priority,
            &TraceState::default(),
            DdState::default(),
            Some(maker),
        )
    }
}

/// 128-bit trace ids whose upper 32 bits are the Unix time in seconds.
#[derive(Debug, Default)]
pub struct DatadogIdGenerator {
    random: RandomIdGenerator,
}

impl IdGenerator for DatadogIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0) as u32;
        let random = u128::from_be_bytes(self.random.new_trace_id().to_bytes()) as u64;
        let random = if random == 0 { 1 } else { random };
        TraceId::from((u128::from(secs) << 96) | u128::from(random))
    }

    fn new_span_id(&self) -> SpanId {
        self.random.new_span_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, TraceFlags};

    fn remote(state: &str, sampled: bool) -> Context {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let state: TraceState = state.parse().unwrap_or_default();
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(9u64),
            flags,
            true,
            state,
        ))
    }

    fn decide(s: &DatadogSampler, cx: Option<&Context>) -> SamplingResult {
        s.should_sample(
            cx,
            TraceId::from(12345u128),
            "x",
            &SpanKind::Server,
            &[],
            &[],
        )
    }

    #[test]
    fn incoming_priority_is_honoured() {
        let s = DatadogSampler::new(Some(0.0));
        let r = decide(&s, Some(&remote("dd=s:2", true)));
        assert_eq!(r.decision, SamplingDecision::RecordAndSample);
        assert_eq!(r.trace_state.get("dd"), Some("s:2"));
        // A dropped trace is still recorded and sent, with its priority, for the Agent's stats.
        let r = decide(&DatadogSampler::new(None), Some(&remote("dd=s:0", false)));
        assert_eq!(r.decision, SamplingDecision::RecordAndSample);
        assert_eq!(r.trace_state.get("dd"), Some("s:0"));
    }

    #[test]
    fn no_incoming_priority_falls_back_to_the_rate() {
        let keep_all = DatadogSampler::new(None);
        let r = decide(&keep_all, Some(&remote("", true)));
        assert_eq!(r.decision, SamplingDecision::RecordAndSample);
        assert_eq!(r.trace_state.get("dd"), Some("s:1;t.dm:-0"));
        let r = decide(&DatadogSampler::new(Some(0.0)), None);
        assert_eq!(r.trace_state.get("dd"), Some("s:-1;t.dm:-3"));
        let r = decide(&DatadogSampler::new(Some(1.0)), None);
        assert_eq!(r.trace_state.get("dd"), Some("s:2;t.dm:-3"));
    }

    #[test]
    fn trace_ids_start_with_the_time() {
        let id = DatadogIdGenerator::default().new_trace_id();
        let secs = (u128::from_be_bytes(id.to_bytes()) >> 96) as u64;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(secs) < 5);
        assert_eq!((u128::from_be_bytes(id.to_bytes()) >> 64) as u32, 0);
    }
}
