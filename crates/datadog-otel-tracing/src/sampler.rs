//! Sampling and trace ids as Datadog's tracers do them.
//!
//! The decision for a trace is made once, on its first span in this process (the local root),
//! when `tracing-opentelemetry` starts it: on the server span, that is after actix-web matched
//! the route (the resource, `GET /notes`, is known) and before the handler makes any outgoing
//! call, so the decision travels with the trace. In order:
//! 1. a decision that arrives with the request (Datadog, W3C or B3 headers) is kept;
//! 2. the first matching sampling rule ([`crate::rules`], `DD_TRACE_SAMPLE_RATE` last):
//!    priority 2 kept / -1 dropped, `_dd.p.dm=-3`, `_dd.rule_psr`; a kept trace also goes
//!    through the rate limit ([`crate::rate_limiter`]): beyond it -1, and `_dd.limit_psr`;
//! 3. the Agent's rate for this service and env ([`crate::agent_rates`]): 1 kept / 0 dropped,
//!    `_dd.p.dm=-1`, `_dd.agent_psr`;
//! 4. before the Agent answered: priority 1, `_dd.p.dm=-0`.
//!
//! Every span is recorded and sent with its priority, dropped decisions included: the Agent
//! computes its statistics from all traces, then drops those with priority 0 or -1. The local
//! root also gets `runtime-id` (one per process) and `process_id`, as ddtrace writes them.
//! New trace ids are 128 bits, the upper half starting with the Unix time in seconds, which is
//! the layout Datadog's tracers use.

use crate::agent_rates::{self, AgentRateTable};
use crate::facts::SamplingPriority;
use crate::propagation::DdState;
use crate::rate_limiter::RateLimiter;
use crate::rules::{sampled_by_rate, RootFacts, SamplingRules};
use crate::spans::{OPERATION_NAME, RESOURCE_NAME, SERVICE_NAME};
use opentelemetry::trace::{Link, SpanId, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SamplingDecision, SamplingResult, ShouldSample,
};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Chunk-root tag: the rate of the sampling rule that decided.
pub const RULE_PSR: &str = "_dd.rule_psr";
/// Chunk-root tag: the rate limiter's effective rate, when it was consulted.
pub const LIMIT_PSR: &str = "_dd.limit_psr";
/// Chunk-root tag: the Agent's rate that decided.
pub const AGENT_PSR: &str = "_dd.agent_psr";

/// What the sampler needs to know about the process.
#[derive(Debug, Clone, Default)]
pub struct SamplerSettings {
    /// `DD_SERVICE`.
    pub service: String,
    /// `DD_ENV`.
    pub env: Option<String>,
    /// `DD_VERSION`.
    pub version: Option<String>,
    /// `DD_TAGS`, visible to tag rules.
    pub tags: Vec<(String, String)>,
    /// The rules, `DD_TRACE_SAMPLE_RATE` last.
    pub rules: SamplingRules,
    /// `DD_TRACE_RATE_LIMIT`.
    pub rate_limit: f64,
}

/// The Datadog sampler.
#[derive(Debug, Clone)]
pub struct DatadogSampler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: SamplerSettings,
    /// `service:<DD_SERVICE>,env:<DD_ENV>`.
    agent_key: String,
    agent: Arc<AgentRateTable>,
    limiter: RateLimiter,
}

/// A decision made here.
#[derive(Debug, Clone, PartialEq)]
struct Decision {
    priority: i32,
    /// `_dd.p.dm`.
    maker: &'static str,
    /// `_dd.p.ksr`: the rate applied (a rule's or the Agent's), as Datadog writes it.
    ksr: Option<String>,
    /// Tags for the local root (`_dd.rule_psr`, …).
    tags: Vec<KeyValue>,
}

/// One id per process, as Datadog's `runtime-id`: a random UUID (version 4) in hex.
pub(crate) fn runtime_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut v = u128::from_be_bytes(RandomIdGenerator::default().new_trace_id().to_bytes());
        v = (v & !(0xf000 << 64)) | (0x4000 << 64); // version 4
        v = (v & !(0xc000 << 48)) | (0x8000 << 48); // RFC 4122 variant
        let h = format!("{v:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    })
}

fn string_value(value: &Value) -> String {
    value.as_str().into_owned()
}

impl DatadogSampler {
    /// A sampler reading the Agent's rates from `agent`.
    pub fn new(settings: SamplerSettings, agent: Arc<AgentRateTable>) -> Self {
        let agent_key = agent_rates::key(&settings.service, settings.env.as_deref());
        let limiter = RateLimiter::new(settings.rate_limit);
        Self {
            inner: Arc::new(Inner {
                settings,
                agent_key,
                agent,
                limiter,
            }),
        }
    }

    /// The decision for a trace whose local root is this span.
    fn decide(
        &self,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
    ) -> Decision {
        let inner = &self.inner;
        let settings = &inner.settings;
        let id = u128::from_be_bytes(trace_id.to_bytes());
        if !settings.rules.is_empty() {
            let attr = |key: &str| {
                attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == key)
                    .map(|kv| string_value(&kv.value))
            };
            let tag = |key: &str| -> Option<String> {
                attr(key).or_else(|| match key {
                    "env" => settings.env.clone(),
                    "version" => settings.version.clone(),
                    _ => settings
                        .tags
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.clone()),
                })
            };
            let service = attr(SERVICE_NAME).unwrap_or_else(|| settings.service.clone());
            // Without an explicit one, the name the export will give the span (from its
            // semantic-convention attributes at start and its kind).
            let operation = attr(OPERATION_NAME)
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| crate::mapping::operation_name(kind, attributes));
            let resource = attr(RESOURCE_NAME).unwrap_or_else(|| name.to_string());
            let facts = RootFacts {
                service: &service,
                name: &operation,
                resource: &resource,
                tag: &tag,
            };
            if let Some(rule) = settings.rules.find(&facts) {
                let mut tags = vec![KeyValue::new(RULE_PSR, rule.sample_rate)];
                let mut priority = if sampled_by_rate(id, rule.sample_rate) {
                    SamplingPriority::USER_KEEP
                } else {
                    SamplingPriority::USER_REJECT
                };
                if priority.is_keep() {
                    let verdict = inner.limiter.allow();
                    tags.push(KeyValue::new(LIMIT_PSR, verdict.effective_rate));
                    if !verdict.allowed {
                        priority = SamplingPriority::USER_REJECT;
                    }
                }
                return Decision {
                    priority: priority.0,
                    maker: "-3",
                    ksr: Some(knuth_rate(rule.sample_rate)),
                    tags,
                };
            }
        }
        match inner.agent.rate_for(&inner.agent_key) {
            Some(rate) => Decision {
                priority: match sampled_by_rate(id, rate) {
                    true => SamplingPriority::AUTO_KEEP.0,
                    false => SamplingPriority::AUTO_REJECT.0,
                },
                maker: "-1",
                ksr: Some(knuth_rate(rate)),
                tags: vec![KeyValue::new(AGENT_PSR, rate)],
            },
            None => Decision {
                priority: SamplingPriority::AUTO_KEEP.0,
                maker: "-0",
                ksr: None,
                tags: Vec::new(),
            },
        }
    }
}

/// A sampling rate as `_dd.p.ksr` carries it: at most six decimals, trailing zeros (and a
/// trailing point) removed: `1`, `0.5`, `0.000001`, `0` for anything below half a millionth.
fn knuth_rate(rate: f64) -> String {
    // Rates repeat (a rule's, the Agent's): the last one is formatted once per thread (the
    // formatting costs more than the rest of the decision).
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != rate.to_bits() {
            *last = (rate.to_bits(), format_knuth_rate(rate));
        }
        last.1.clone()
    })
}

fn format_knuth_rate(rate: f64) -> String {
    let text = format!("{:.6}", rate.clamp(0.0, 1.0));
    let text = text.trim_end_matches('0').trim_end_matches('.');
    match text {
        "" => "0".to_string(),
        t => t.to_string(),
    }
}

/// The tags of a local root: `runtime-id` (one per process) and `process_id`, as ddtrace
/// writes them.
fn push_root_tags(attributes: &mut Vec<KeyValue>) {
    attributes.push(KeyValue::new("runtime-id", runtime_id()));
    attributes.push(KeyValue::new("process_id", i64::from(std::process::id())));
}

/// Every span is recorded and exported, whatever the priority: as with Datadog's tracers, the
/// Agent computes its statistics from all traces and then drops those whose priority is 0 or
/// -1. The priority (and the decision maker, `_dd.p.dm`) travels in the `dd` tracestate.
fn result(
    priority: i32,
    state: &TraceState,
    mut dd: DdState,
    decided: Option<(&str, Option<String>)>,
    mut attributes: Vec<KeyValue>,
    local_root: bool,
) -> SamplingResult {
    dd.priority = Some(priority);
    if let Some((maker, ksr)) = decided {
        if dd.tag("dm").is_none() {
            dd.set_tag("dm", maker);
        }
        // An upstream rate is propagated unchanged.
        if let (Some(ksr), None) = (ksr, dd.tag("ksr")) {
            dd.set_tag("ksr", &ksr);
        }
    }
    if local_root {
        push_root_tags(&mut attributes);
    }
    SamplingResult {
        decision: SamplingDecision::RecordAndSample,
        attributes,
        trace_state: dd.write_into(state),
    }
}

impl ShouldSample for DatadogSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
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
                let remote = parent.is_remote();
                // A decision that came with the context (the usual case: a caller traced by
                // Datadog's rules) is kept, and its state as it came: the propagator wrote it.
                if DdState::priority_and_origin(state).0.is_some() {
                    let mut attributes = Vec::new();
                    if remote {
                        push_root_tags(&mut attributes);
                    }
                    return SamplingResult {
                        decision: SamplingDecision::RecordAndSample,
                        attributes,
                        trace_state: state.clone(),
                    };
                }
                // No priority came with the context.
                let dd = DdState::from_trace_state(state);
                return if remote && parent.is_sampled() {
                    // A caller that left the decision to us (Datadog headers without priority).
                    let d = self.decide(trace_id, name, span_kind, attributes);
                    result(d.priority, state, dd, Some((d.maker, d.ksr)), d.tags, true)
                } else {
                    result(
                        dd.priority_or(parent.is_sampled()),
                        state,
                        dd,
                        None,
                        Vec::new(),
                        remote,
                    )
                };
            }
        }
        // A new trace: its state depends only on the decision, and decisions repeat.
        let mut d = self.decide(trace_id, name, span_kind, attributes);
        push_root_tags(&mut d.tags);
        SamplingResult {
            decision: SamplingDecision::RecordAndSample,
            attributes: d.tags,
            trace_state: root_state(d.priority, d.maker, d.ksr.as_deref()),
        }
    }
}

/// The trace state of a new trace decided here (as [`result`] writes it from an empty state),
/// made once per decision and thread: building it costs more than the rest of the decision.
fn root_state(priority: i32, maker: &'static str, ksr: Option<&str>) -> TraceState {
    type Made = (i32, &'static str, Option<String>, TraceState);
    thread_local! {
        static MADE: std::cell::RefCell<Vec<Made>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let make = || {
        let decided = Some((maker, ksr.map(str::to_string)));
        let empty = TraceState::default();
        result(
            priority,
            &empty,
            DdState::default(),
            decided,
            Vec::new(),
            false,
        )
        .trace_state
    };
    MADE.try_with(|made| {
        let mut made = made.borrow_mut();
        let known = made
            .iter()
            .find(|(p, m, k, _)| *p == priority && *m == maker && k.as_deref() == ksr);
        if let Some((.., state)) = known {
            return state.clone();
        }
        let state = make();
        // A few decisions at a time (kept and dropped, a rule's rate and the Agent's).
        if made.len() >= 8 {
            made.remove(0);
        }
        made.push((priority, maker, ksr.map(str::to_string), state.clone()));
        state
    })
    .unwrap_or_else(|_| make())
}

/// Trace ids as Datadog's tracers make them: 128 bits whose upper 32 are the Unix time in
/// seconds (`DD_TRACE_128_BIT_TRACEID_GENERATION_ENABLED`, the default), else 64 random bits.
#[derive(Debug)]
pub struct DatadogIdGenerator {
    random: RandomIdGenerator,
    full_128: bool,
}

impl Default for DatadogIdGenerator {
    fn default() -> Self {
        Self::new(true)
    }
}

impl DatadogIdGenerator {
    /// 128-bit trace ids when `full_128`, else 64-bit ones.
    pub fn new(full_128: bool) -> Self {
        Self {
            random: RandomIdGenerator::default(),
            full_128,
        }
    }
}

impl IdGenerator for DatadogIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0) as u32;
        let random = u128::from_be_bytes(self.random.new_trace_id().to_bytes()) as u64;
        let random = if random == 0 { 1 } else { random };
        if !self.full_128 {
            return TraceId::from(u128::from(random));
        }
        TraceId::from((u128::from(secs) << 96) | u128::from(random))
    }

    fn new_span_id(&self) -> SpanId {
        self.random.new_span_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knuth_rates_are_written_as_datadog_writes_them() {
        for (rate, text) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (0.000001, "0.000001"),
            (0.0000001, "0"),
            (0.00000051, "0.000001"),
            (0.0, "0"),
            (0.1, "0.1"),
        ] {
            assert_eq!(knuth_rate(rate), text, "{rate}");
        }
    }
    use opentelemetry::trace::{SpanContext, TraceFlags};

    /// A new trace's state, made once per decision, is the one the decision writes.
    #[test]
    fn a_new_traces_state_is_the_decisions_own() {
        let decisions = [
            (1, "-1", Some("0.01")),
            (0, "-1", Some("0.01")),
            (2, "-3", Some("1")),
            (-1, "-3", Some("0.5")),
            (1, "-0", None),
        ];
        for _ in 0..2 {
            for (priority, maker, ksr) in decisions {
                let written = result(
                    priority,
                    &TraceState::default(),
                    DdState::default(),
                    Some((maker, ksr.map(str::to_string))),
                    Vec::new(),
                    true,
                );
                assert_eq!(
                    root_state(priority, maker, ksr).header(),
                    written.trace_state.header(),
                    "{priority} {maker} {ksr:?}"
                );
            }
        }
    }

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

    fn sampler(rules: Option<&str>, rate: Option<f64>, limit: f64) -> DatadogSampler {
        let settings = SamplerSettings {
            service: "notes".into(),
            env: Some("dev".into()),
            rules: SamplingRules::parse(rules, rate).unwrap(),
            rate_limit: limit,
            ..Default::default()
        };
        DatadogSampler::new(settings, Arc::new(AgentRateTable::new()))
    }

    fn decide_on(s: &DatadogSampler, cx: Option<&Context>, name: &str) -> SamplingResult {
        s.should_sample(
            cx,
            TraceId::from(12345u128),
            name,
            &SpanKind::Server,
            &[KeyValue::new("http.method", "GET")],
            &[],
        )
    }

    fn decide(s: &DatadogSampler, cx: Option<&Context>) -> SamplingResult {
        decide_on(s, cx, "GET /notes")
    }

    fn attr(r: &SamplingResult, key: &str) -> Option<String> {
        r.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    #[test]
    fn incoming_priority_is_honoured() {
        let s = sampler(None, Some(0.0), 100.0);
        let r = decide(&s, Some(&remote("dd=s:2", true)));
        assert_eq!(r.decision, SamplingDecision::RecordAndSample);
        assert_eq!(r.trace_state.get("dd"), Some("s:2"));
        assert_eq!(attr(&r, RULE_PSR), None);
        // A dropped trace is still recorded and sent, with its priority, for the Agent's stats.
        let r = decide(&sampler(None, None, 100.0), Some(&remote("dd=s:0", false)));
        assert_eq!(r.decision, SamplingDecision::RecordAndSample);
        assert_eq!(r.trace_state.get("dd"), Some("s:0"));
    }

    #[test]
    fn no_incoming_priority_falls_back_to_the_rate() {
        let keep_all = sampler(None, None, 100.0);
        let r = decide(&keep_all, Some(&remote("", true)));
        assert_eq!(r.decision, SamplingDecision::RecordAndSample);
        assert_eq!(r.trace_state.get("dd"), Some("s:1;t.dm:-0"));
        let r = decide(&sampler(None, Some(0.0), 100.0), None);
        assert_eq!(r.trace_state.get("dd"), Some("s:-1;t.dm:-3;t.ksr:0"));
        assert_eq!(attr(&r, RULE_PSR).as_deref(), Some("0"));
        let r = decide(&sampler(None, Some(1.0), 100.0), None);
        assert_eq!(r.trace_state.get("dd"), Some("s:2;t.dm:-3;t.ksr:1"));
        assert_eq!(attr(&r, LIMIT_PSR).as_deref(), Some("1"));
        assert!(attr(&r, "runtime-id").is_some());
        assert!(attr(&r, "process_id").is_some());
    }

    #[test]
    fn rules_see_the_resource_and_the_limit_caps_them() {
        let s = sampler(
            Some(r#"[{"resource":"GET /notes","sample_rate":1},{"sample_rate":0}]"#),
            None,
            2.0,
        );
        let dd = |r: SamplingResult| r.trace_state.get("dd").map(str::to_string);
        assert_eq!(
            dd(decide_on(&s, None, "GET /health")).as_deref(),
            Some("s:-1;t.dm:-3;t.ksr:0")
        );
        assert_eq!(dd(decide(&s, None)).as_deref(), Some("s:2;t.dm:-3;t.ksr:1"));
        assert_eq!(dd(decide(&s, None)).as_deref(), Some("s:2;t.dm:-3;t.ksr:1"));
        let limited = decide(&s, None);
        // The rule's rate (1) was applied; the limit dropped the trace.
        assert_eq!(limited.trace_state.get("dd"), Some("s:-1;t.dm:-3;t.ksr:1"));
        let psr: f64 = attr(&limited, LIMIT_PSR).unwrap().parse().unwrap();
        assert!((psr - 2.0 / 3.0).abs() < 1e-9, "{psr}");
    }

    #[test]
    fn the_agent_rates_decide_without_rules() {
        let table = Arc::new(AgentRateTable::new());
        let settings = SamplerSettings {
            service: "notes".into(),
            env: Some("dev".into()),
            rate_limit: 100.0,
            ..Default::default()
        };
        let s = DatadogSampler::new(settings, table.clone());
        assert_eq!(decide(&s, None).trace_state.get("dd"), Some("s:1;t.dm:-0"));
        table
            .update(br#"{"rate_by_service":{"service:notes,env:dev":0,"service:,env:":1}}"#)
            .unwrap();
        let r = decide(&s, None);
        assert_eq!(r.trace_state.get("dd"), Some("s:0;t.dm:-1;t.ksr:0"));
        assert_eq!(attr(&r, AGENT_PSR).as_deref(), Some("0"));
        table
            .update(br#"{"rate_by_service":{"service:,env:":1}}"#)
            .unwrap();
        assert_eq!(
            decide(&s, None).trace_state.get("dd"),
            Some("s:1;t.dm:-1;t.ksr:1")
        );
    }

    #[test]
    fn runtime_ids_are_uuids_and_stable() {
        let id = runtime_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_eq!(id, runtime_id());
    }

    #[test]
    fn trace_ids_start_with_the_time() {
        let short = u128::from_be_bytes(DatadogIdGenerator::new(false).new_trace_id().to_bytes());
        assert!(short != 0 && short <= u128::from(u64::MAX), "{short:x}");
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
