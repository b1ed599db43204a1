//! Trace context propagation the way Datadog's tracers do it: Datadog headers and W3C Trace
//! Context, both injected on every outgoing call, either one continued on the way in.
//!
//! `opentelemetry-datadog`'s own propagator only speaks the three basic `x-datadog-*` headers with
//! 64-bit ids. This one also carries the upper 64 bits of the trace id in `x-datadog-tags`
//! (`_dd.p.tid`), the origin, and the sampling priority in both header styles, so a trace that
//! enters from (or leaves to) another Datadog tracer keeps its full 128-bit id.
//!
//! Which headers are read and written is configurable ([`crate::styles`]): `datadog`,
//! `tracecontext`, `baggage` (the default, in that order), `b3multi`, `b3`, or `none`.
//! Extraction tries the styles in order and the first context found wins; W3C `baggage` is
//! read and passed on independently of it, within Datadog's bounds ([`crate::baggage`]).
//!
//! Inside the process the Datadog-specific state lives in the span's W3C `tracestate` under the
//! `dd` key (`s:<priority>;o:<origin>`), which is also what goes out in the `tracestate` header.

use crate::b3::{self, B3Context};
use crate::baggage::{self, Baggage};
use crate::styles::{PropagationStyles, Style};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use std::str::FromStr;

const DD_TRACE_ID: &str = "x-datadog-trace-id";
const DD_PARENT_ID: &str = "x-datadog-parent-id";
const DD_PRIORITY: &str = "x-datadog-sampling-priority";
const DD_ORIGIN: &str = "x-datadog-origin";
const DD_TAGS: &str = "x-datadog-tags";
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Longest `x-datadog-tags` value read or written, as in Datadog's tracers.
const MAX_TAGS_LEN: usize = 512;
/// Longest `tracestate` read (W3C allows 32 members of up to 256 characters each, plus commas).
const MAX_TRACESTATE_LEN: usize = 8192;

/// Datadog's propagator: by default Datadog headers, then W3C Trace Context, then baggage.
#[derive(Debug, Default, Clone)]
pub struct DatadogW3cPropagator {
    /// The styles read and written.
    styles: PropagationStyles,
}

impl DatadogW3cPropagator {
    #[cfg(any(test, feature = "fuzzing"))]
    /// The default styles (`datadog,tracecontext,baggage`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Chosen styles (`DD_TRACE_PROPAGATION_STYLE*`).
    pub fn with_styles(styles: PropagationStyles) -> Self {
        Self { styles }
    }
}

/// The Datadog part of a span's `tracestate`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DdState {
    /// Sampling priority (`-1` user reject, `0` auto reject, `1` auto keep, `2` user keep).
    pub priority: Option<i32>,
    /// Where the trace started (`synthetics`, `rum`, …), carried as Datadog's tracers do.
    pub origin: Option<String>,
    /// Propagated trace tags (`_dd.p.<name>`, without the prefix), e.g. `dm` (the sampling
    /// decision maker). The trace id's upper half (`tid`) is not kept here: it is in the id.
    pub tags: Vec<(String, String)>,
}

/// Propagated tag names and values kept: short, and free of every separator in use.
fn valid_tag(name: &str, value: &str) -> bool {
    let ok = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
    };
    ok(name, 32) && ok(value, 64) && name != "tid"
}

/// The trace flags of a sampled (or not) context.
pub(crate) fn sampled_flags(sampled: bool) -> TraceFlags {
    if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    }
}

impl DdState {
    /// The priority, or for a context without one: 1 when `sampled`, else 0.
    pub(crate) fn priority_or(&self, sampled: bool) -> i32 {
        self.priority.unwrap_or(i32::from(sampled))
    }

    /// Reads the `dd` member of a trace state.
    pub fn from_trace_state(state: &TraceState) -> Self {
        let mut out = DdState::default();
        if let Some(value) = state.get("dd") {
            for part in value.split(';') {
                if let Some(p) = part.strip_prefix("s:") {
                    out.priority = p.parse().ok();
                } else if let Some(o) = part.strip_prefix("o:") {
                    if !o.is_empty() {
                        out.origin = Some(o.to_string());
                    }
                } else if let Some((name, value)) =
                    part.strip_prefix("t.").and_then(|t| t.split_once(':'))
                {
                    out.set_tag(name, value);
                }
            }
        }
        out
    }

    /// A propagated tag's value.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets a propagated tag (ignored when its name or value is not safe to carry).
    pub fn set_tag(&mut self, name: &str, value: &str) {
        if !valid_tag(name, value) || (name == "dm" && !is_valid_decision_maker(value)) {
            return;
        }
        if let Some(entry) = self.tags.iter_mut().find(|(k, _)| k == name) {
            entry.1 = value.to_string();
        } else if self.tags.len() < 16 {
            self.tags.push((name.to_string(), value.to_string()));
        }
    }

    /// Writes this state (and the parent span id, as W3C's `dd` member expects) into a trace
    /// state, keeping the other vendors' members.
    pub fn write_into(&self, state: &TraceState, parent: Option<SpanId>) -> TraceState {
        use std::fmt::Write as _;
        // One string, written in place (`s:1;p:…;o:…;t.dm:-0`).
        let mut value = String::with_capacity(48);
        let sep = |value: &mut String| {
            if !value.is_empty() {
                value.push(';');
            }
        };
        if let Some(p) = self.priority {
            sep(&mut value);
            let _ = write!(value, "s:{p}");
        }
        if let Some(parent) = parent {
            sep(&mut value);
            let _ = write!(value, "p:{parent}");
        }
        if let Some(origin) = &self.origin {
            sep(&mut value);
            value.push_str("o:");
            value.push_str(origin);
        }
        for (name, tag) in &self.tags {
            sep(&mut value);
            value.push_str("t.");
            value.push_str(name);
            value.push(':');
            value.push_str(tag);
        }
        if value.is_empty() {
            return state.delete("dd").unwrap_or_else(|_| state.clone());
        }
        state.insert("dd", value).unwrap_or_else(|_| state.clone())
    }
}

/// Upper and lower 64 bits of a 128-bit trace id.
fn split_trace_id(id: TraceId) -> (u64, u64) {
    let v = u128::from_be_bytes(id.to_bytes());
    ((v >> 64) as u64, v as u64)
}

/// A sampling decision maker as Datadog's tracers accept one: `-0` to `-255` (`-4`, manual).
/// Anything else arriving in `_dd.p.dm` (`t.dm`) is dropped, not propagated.
fn is_valid_decision_maker(value: &str) -> bool {
    value
        .strip_prefix('-')
        .filter(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
        .filter(|n| *n == "0" || !n.starts_with('0'))
        .and_then(|n| n.parse::<u16>().ok())
        .is_some_and(|n| n <= 255)
}

fn is_valid_origin(origin: &str) -> bool {
    !origin.is_empty()
        && origin.len() <= 64
        && origin
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b';' | b'=' | b'~'))
}

/// `x-datadog-tags`: the upper half of the trace id (`_dd.p.tid`) and the other `_dd.p.*`
/// tags. Ignored whole when longer than Datadog's tracers accept.
fn parse_tags(header: &str, dd: &mut DdState) -> Option<u64> {
    if header.len() > MAX_TAGS_LEN {
        return None;
    }
    let mut tid = None;
    for kv in header.split(',') {
        let Some((key, value)) = kv.split_once('=') else {
            continue;
        };
        let Some(name) = key.trim().strip_prefix("_dd.p.") else {
            continue;
        };
        let value = value.trim();
        if name == "tid" {
            let hex = value.len() == 16 && value.bytes().all(|b| b.is_ascii_hexdigit());
            tid = hex
                .then(|| u64::from_str_radix(value, 16).ok())
                .flatten()
                .filter(|t| *t != 0);
        } else {
            dd.set_tag(name, value);
        }
    }
    tid
}

/// A W3C `tracestate` header, or none when it is oversized or has more than 32 members.
fn parse_tracestate(extractor: &dyn Extractor) -> Option<TraceState> {
    let header = extractor.get(TRACESTATE)?;
    if header.len() > MAX_TRACESTATE_LEN || header.split(',').count() > 32 {
        return None;
    }
    TraceState::from_str(header).ok()
}

fn extract_datadog(extractor: &dyn Extractor) -> Option<SpanContext> {
    let trace_low: u64 = extractor.get(DD_TRACE_ID)?.trim().parse().ok()?;
    let parent: u64 = extractor.get(DD_PARENT_ID)?.trim().parse().ok()?;
    if trace_low == 0 || parent == 0 {
        return None;
    }
    let mut dd = DdState::default();
    let high = extractor
        .get(DD_TAGS)
        .and_then(|tags| parse_tags(tags, &mut dd))
        .unwrap_or(0);
    let trace_id = TraceId::from((u128::from(high) << 64) | u128::from(trace_low));
    let priority: Option<i32> = extractor
        .get(DD_PRIORITY)
        .and_then(|p| p.trim().parse().ok());
    let origin = extractor
        .get(DD_ORIGIN)
        .map(str::trim)
        .filter(|o| is_valid_origin(o))
        .map(str::to_string);
    // No priority means the caller left the decision to us: keep the trace sampled here and let
    // the sampler decide (a missing priority must not drop the request's trace).
    let sampled = priority.is_none_or(|p| p > 0);
    let flags = sampled_flags(sampled);
    dd.priority = priority;
    dd.origin = origin;
    // Datadog's tracers send W3C headers too: keep the other vendors' tracestate members when
    // the traceparent speaks of the same trace.
    let same_trace = extract_w3c(extractor).is_some_and(|w3c| w3c.trace_id() == trace_id);
    let others = same_trace
        .then(|| parse_tracestate(extractor))
        .flatten()
        .and_then(|state| state.delete("dd").ok())
        .unwrap_or_default();
    let state = dd.write_into(&others, None);
    Some(SpanContext::new(
        trace_id,
        SpanId::from(parent),
        flags,
        true,
        state,
    ))
}

fn extract_w3c(extractor: &dyn Extractor) -> Option<SpanContext> {
    let header = extractor.get(TRACEPARENT)?.trim();
    let parts: Vec<&str> = header.split('-').collect();
    if parts.len() < 4 {
        return None;
    }
    let (version, trace, span, flags) = (parts[0], parts[1], parts[2], parts[3]);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(version, 2)
        || version.eq_ignore_ascii_case("ff")
        || !hex(trace, 32)
        || !hex(span, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.len() != 4 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sampled = flags & 1 == 1;
    let state = parse_tracestate(extractor).unwrap_or_default();
    let mut dd = DdState::from_trace_state(&state);
    // The W3C flag is authoritative; the dd priority refines it, as in Datadog's tracers.
    dd.priority = match dd.priority {
        Some(p) if (p > 0) == sampled => Some(p),
        _ => Some(i32::from(sampled)),
    };
    let state = dd.write_into(&state, None);
    let flags = sampled_flags(sampled);
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// A B3 context as a span context: the priority, when given, in the `dd` trace state.
fn from_b3(b3: B3Context) -> SpanContext {
    let dd = DdState {
        priority: b3.priority,
        ..DdState::default()
    };
    let sampled = b3.priority.is_none_or(|p| p > 0);
    let flags = sampled_flags(sampled);
    SpanContext::new(
        TraceId::from(b3.trace_id),
        SpanId::from(b3.span_id),
        flags,
        true,
        dd.write_into(&TraceState::default(), None),
    )
}

fn extract_style(style: Style, extractor: &dyn Extractor) -> Option<SpanContext> {
    match style {
        Style::Datadog => extract_datadog(extractor),
        Style::TraceContext => extract_w3c(extractor),
        Style::B3Multi => B3Context::extract_multi(|k| extractor.get(k)).map(from_b3),
        Style::B3 => extractor
            .get(b3::SINGLE)
            .and_then(B3Context::extract_single)
            .map(from_b3),
        Style::Baggage => None,
    }
}

impl DatadogW3cPropagator {
    fn inject_datadog(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        let (high, low) = split_trace_id(sc.trace_id());
        let dd = DdState::from_trace_state(sc.trace_state());
        // The priority decides; spans are recorded either way (the Agent drops, after stats).
        let priority = dd.priority_or(sc.is_sampled());
        let span_id = u64::from_be_bytes(sc.span_id().to_bytes());

        injector.set(DD_TRACE_ID, low.to_string());
        injector.set(DD_PARENT_ID, span_id.to_string());
        injector.set(DD_PRIORITY, priority.to_string());
        if let Some(origin) = &dd.origin {
            injector.set(DD_ORIGIN, origin.clone());
        }
        let mut tags: Vec<String> = dd
            .tags
            .iter()
            .map(|(k, v)| format!("_dd.p.{k}={v}"))
            .collect();
        if high != 0 {
            tags.push(format!("_dd.p.tid={high:016x}"));
        }
        if !tags.is_empty() {
            injector.set(DD_TAGS, tags.join(","));
        }
    }

    fn inject_w3c(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        let (high, _) = split_trace_id(sc.trace_id());
        let dd = DdState::from_trace_state(sc.trace_state());
        let priority = dd.priority_or(sc.is_sampled());
        let flags = if priority > 0 { "01" } else { "00" };
        injector.set(
            TRACEPARENT,
            format!("00-{}-{}-{flags}", sc.trace_id(), sc.span_id()),
        );
        let mut out = DdState {
            priority: Some(priority),
            ..dd
        };
        if high != 0 {
            // Carried in the tracestate member too, as Datadog's tracers do (not kept in tags).
            out.tags.push(("tid".into(), format!("{high:016x}")));
        }
        let state = out.write_into(sc.trace_state(), Some(sc.span_id()));
        injector.set(TRACESTATE, state.header());
    }

    fn inject_b3(&self, cx: &Context, injector: &mut dyn Injector, single: bool) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        let dd = DdState::from_trace_state(sc.trace_state());
        let b3 = B3Context {
            trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            priority: Some(dd.priority_or(sc.is_sampled())),
        };
        if single {
            injector.set(b3::SINGLE, b3.single_header());
        } else {
            b3.inject_multi(|k, v| injector.set(k, v));
        }
    }
}

impl TextMapPropagator for DatadogW3cPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        for style in &self.styles.inject {
            match style {
                Style::Datadog => self.inject_datadog(cx, injector),
                Style::TraceContext => self.inject_w3c(cx, injector),
                Style::B3Multi => self.inject_b3(cx, injector, false),
                Style::B3 => self.inject_b3(cx, injector, true),
                Style::Baggage => {
                    if let Some(header) = cx.get::<Baggage>().and_then(Baggage::header) {
                        injector.set(baggage::HEADER, header);
                    }
                }
            }
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let found = self
            .styles
            .extract
            .iter()
            .find_map(|style| extract_style(*style, extractor));
        let mut cx = match found {
            Some(sc) => cx.with_remote_span_context(sc),
            None => cx.clone(),
        };
        if self.styles.extract.contains(&Style::Baggage) {
            let items = extractor.get(baggage::HEADER).map(Baggage::parse);
            if let Some(items) = items.filter(|b| !b.is_empty()) {
                cx = cx.with_value(items);
            }
        }
        cx
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        static FIELDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let fields = FIELDS.get_or_init(|| HEADERS.map(String::from).to_vec());
        opentelemetry::propagation::text_map_propagator::FieldIter::new(fields)
    }
}

/// Every header any propagation style reads (Datadog, W3C trace context, B3 single and multi,
/// baggage), whichever styles are configured.
pub const HEADERS: [&str; 13] = [
    DD_TRACE_ID,
    DD_PARENT_ID,
    DD_PRIORITY,
    DD_ORIGIN,
    DD_TAGS,
    TRACEPARENT,
    TRACESTATE,
    b3::TRACE_ID,
    b3::SPAN_ID,
    b3::SAMPLED,
    b3::FLAGS,
    b3::SINGLE,
    baggage::HEADER,
];

#[cfg_attr(not(any(feature = "actix", feature = "reqwest")), allow(dead_code))]
/// Whether a carrier with these (lowercase) header names holds any of [`HEADERS`]: without
/// one, extraction by any style (this project's or Datadog's SDK) finds nothing, and the server
/// span can skip it. One pass over the names a request has (usually a handful), rather than a
/// lookup of each of the 13 names.
pub fn carries_context<'a>(mut names: impl Iterator<Item = &'a str>) -> bool {
    names.any(|name| HEADERS.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A carrier that answers every header with `value` and remembers what was asked.
    struct Recording {
        value: Option<&'static str>,
        asked: std::cell::RefCell<Vec<String>>,
    }

    impl Extractor for Recording {
        fn get(&self, key: &str) -> Option<&str> {
            self.asked.borrow_mut().push(key.to_string());
            self.value
        }
        fn keys(&self) -> Vec<&str> {
            Vec::new()
        }
    }

    #[test]
    fn headers_hold_every_header_any_style_reads_or_writes() {
        let every = vec![
            Style::Datadog,
            Style::TraceContext,
            Style::Baggage,
            Style::B3Multi,
            Style::B3,
        ];
        let propagator = DatadogW3cPropagator::with_styles(PropagationStyles {
            extract: every.clone(),
            inject: every,
        });
        let mut seen = Vec::new();
        for value in [
            None,
            Some("1"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ] {
            let carrier = Recording {
                value,
                asked: Default::default(),
            };
            let cx = propagator.extract(&carrier);
            seen.extend(carrier.asked.take());
            let mut written: HashMap<String, String> = HashMap::new();
            propagator.inject_context(&cx, &mut written);
            seen.extend(written.into_keys());
        }
        assert!(seen.len() > 5, "{seen:?}");
        for name in &seen {
            assert!(
                HEADERS.contains(&name.as_str()),
                "{name} is missing from HEADERS"
            );
        }
        // What the server span checks before it extracts.
        assert!(carries_context(["host", "traceparent"].into_iter()));
        assert!(carries_context(["b3"].into_iter()));
        assert!(carries_context(["baggage"].into_iter()));
        assert!(!carries_context(
            ["host", "user-agent", "accept"].into_iter()
        ));
        assert!(!carries_context(std::iter::empty()));
    }

    fn extract(headers: &[(&str, &str)]) -> Option<SpanContext> {
        let map: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cx = DatadogW3cPropagator::new().extract(&map);
        let span = cx.span();
        let sc = span.span_context().clone();
        sc.is_valid().then_some(sc)
    }

    fn inject(sc: SpanContext) -> HashMap<String, String> {
        let cx = Context::new().with_remote_span_context(sc);
        let mut map = HashMap::new();
        DatadogW3cPropagator::new().inject_context(&cx, &mut map);
        map
    }

    #[test]
    fn datadog_headers_with_tid_give_a_128_bit_id_and_round_trip() {
        let sc = extract(&[
            ("x-datadog-trace-id", "5277134972075981726"),
            ("x-datadog-parent-id", "16511978227091699246"),
            ("x-datadog-sampling-priority", "2"),
            ("x-datadog-tags", "_dd.p.dm=-0,_dd.p.tid=6b058a5d00000000"),
            ("x-datadog-origin", "synthetics"),
        ])
        .expect("valid context");
        assert_eq!(
            sc.trace_id().to_string(),
            "6b058a5d00000000493c264c32613b9e"
        );
        assert_eq!(sc.span_id().to_string(), "e52654b69cc8f62e");
        assert!(sc.is_sampled());
        let dd = DdState::from_trace_state(sc.trace_state());
        assert_eq!(dd.priority, Some(2));
        assert_eq!(dd.origin.as_deref(), Some("synthetics"));

        let out = inject(sc);
        assert_eq!(out["x-datadog-trace-id"], "5277134972075981726");
        assert_eq!(out["x-datadog-parent-id"], "16511978227091699246");
        assert_eq!(out["x-datadog-sampling-priority"], "2");
        assert_eq!(out["x-datadog-origin"], "synthetics");
        assert_eq!(
            out["x-datadog-tags"],
            "_dd.p.dm=-0,_dd.p.tid=6b058a5d00000000"
        );
        assert_eq!(
            out["traceparent"],
            "00-6b058a5d00000000493c264c32613b9e-e52654b69cc8f62e-01"
        );
        assert_eq!(
            out["tracestate"],
            "dd=s:2;p:e52654b69cc8f62e;o:synthetics;t.dm:-0;t.tid:6b058a5d00000000"
        );
    }

    #[test]
    fn w3c_traceparent_is_continued_with_all_128_bits() {
        let sc = extract(&[
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "dd=s:1;o:rum,congo=t61rcWkgMzE"),
        ])
        .expect("valid context");
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(
            u64::from_be_bytes(sc.span_id().to_bytes()),
            13235353014750950193
        );
        assert_eq!(
            DdState::from_trace_state(sc.trace_state())
                .origin
                .as_deref(),
            Some("rum")
        );
        let out = inject(sc);
        assert_eq!(out["x-datadog-tags"], "_dd.p.tid=0af7651916cd43dd");
        assert!(
            out["tracestate"].contains("congo=t61rcWkgMzE"),
            "{}",
            out["tracestate"]
        );
    }

    #[test]
    fn missing_priority_is_still_sampled_and_dropped_priority_is_not() {
        let sc = extract(&[("x-datadog-trace-id", "1"), ("x-datadog-parent-id", "2")]).unwrap();
        assert!(sc.is_sampled());
        assert_eq!(DdState::from_trace_state(sc.trace_state()).priority, None);
        let sc = extract(&[
            ("x-datadog-trace-id", "1"),
            ("x-datadog-parent-id", "2"),
            ("x-datadog-sampling-priority", "-1"),
        ])
        .unwrap();
        assert!(!sc.is_sampled());
    }

    #[test]
    fn garbage_headers_start_a_new_trace() {
        for headers in [
            vec![("x-datadog-trace-id", "abc"), ("x-datadog-parent-id", "1")],
            vec![("x-datadog-trace-id", "0"), ("x-datadog-parent-id", "1")],
            vec![
                ("x-datadog-trace-id", "99999999999999999999999"),
                ("x-datadog-parent-id", "1"),
            ],
            vec![(
                "traceparent",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            )],
            vec![(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            )],
            vec![(
                "traceparent",
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )],
            vec![("traceparent", "garbage")],
            vec![(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
            )],
        ] {
            assert!(extract(&headers).is_none(), "{headers:?}");
        }
    }

    #[test]
    fn oversized_or_malformed_tags_keep_the_low_bits_only() {
        let huge = format!("_dd.p.tid=6b058a5d00000000,{}", "x=y,".repeat(200));
        let sc = extract(&[
            ("x-datadog-trace-id", "42"),
            ("x-datadog-parent-id", "7"),
            ("x-datadog-tags", &huge),
        ])
        .unwrap();
        assert_eq!(u128::from_be_bytes(sc.trace_id().to_bytes()), 42);
        let sc = extract(&[
            ("x-datadog-trace-id", "42"),
            ("x-datadog-parent-id", "7"),
            ("x-datadog-tags", "_dd.p.tid=zz"),
        ])
        .unwrap();
        assert_eq!(u128::from_be_bytes(sc.trace_id().to_bytes()), 42);
    }

    #[test]
    fn only_datadogs_decision_makers_are_kept() {
        for (dm, kept) in [
            ("-0", true),
            ("-4", true),
            ("-255", true),
            ("-256", false),
            ("4", false),
            ("-", false),
            ("-04", false),
            ("-x", false),
            ("-1000", false),
        ] {
            let tags = format!("_dd.p.dm={dm}");
            let sc = extract(&[
                ("x-datadog-trace-id", "42"),
                ("x-datadog-parent-id", "7"),
                ("x-datadog-sampling-priority", "1"),
                ("x-datadog-tags", &tags),
            ])
            .unwrap();
            let got = DdState::from_trace_state(sc.trace_state());
            assert_eq!(got.tag("dm"), kept.then_some(dm), "x-datadog-tags {dm}");
            let state = format!("dd=s:1;t.dm:{dm}");
            let sc = extract(&[
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
                ("tracestate", &state),
            ])
            .unwrap();
            let got = DdState::from_trace_state(sc.trace_state());
            assert_eq!(got.tag("dm"), kept.then_some(dm), "tracestate {dm}");
        }
    }

    /// The extracted context, valid or not.
    fn extract_any(headers: &[(&str, &str)]) -> SpanContext {
        extract(headers).unwrap_or_else(SpanContext::empty_context)
    }

    #[test]
    fn other_vendors_tracestate_survives_when_datadog_headers_win() {
        let sc = extract_any(&[
            ("x-datadog-trace-id", "9532127138774266268"),
            ("x-datadog-parent-id", "13235353014750950193"),
            ("x-datadog-sampling-priority", "1"),
            ("x-datadog-tags", "_dd.p.tid=0af7651916cd43dd,_dd.p.dm=-4"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "dd=s:1;t.dm:-4,congo=t61rcWkgMzE"),
        ]);
        assert_eq!(sc.trace_state().get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(
            DdState::from_trace_state(sc.trace_state()).tag("dm"),
            Some("-4")
        );
    }

    #[test]
    fn dropped_priority_travels_with_an_unsampled_flag() {
        let sc = extract_any(&[
            ("x-datadog-trace-id", "5"),
            ("x-datadog-parent-id", "6"),
            ("x-datadog-sampling-priority", "-1"),
        ]);
        // Recorded in-process (as the sampler does), the priority still decides what is sent.
        let recorded = SpanContext::new(
            sc.trace_id(),
            sc.span_id(),
            TraceFlags::SAMPLED,
            false,
            sc.trace_state().clone(),
        );
        let cx = Context::new().with_remote_span_context(recorded);
        let mut out = HashMap::new();
        DatadogW3cPropagator::new().inject_context(&cx, &mut out);
        assert_eq!(out["x-datadog-sampling-priority"], "-1");
        assert!(
            out["traceparent"].ends_with("-00"),
            "{}",
            out["traceparent"]
        );
    }

    #[test]
    fn a_tracestate_of_more_than_32_members_is_ignored() {
        let many: Vec<String> = (0..40).map(|i| format!("v{i}=x")).collect();
        let sc = extract_any(&[
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", &many.join(",")),
        ]);
        assert!(sc.is_valid());
        assert_eq!(sc.trace_state().get("v1"), None);
    }

    fn styled(extract: &str, inject: &str) -> DatadogW3cPropagator {
        DatadogW3cPropagator::with_styles(PropagationStyles {
            extract: crate::styles::parse(extract).unwrap(),
            inject: crate::styles::parse(inject).unwrap(),
        })
    }

    #[test]
    fn styles_choose_the_headers_in_and_out() {
        let p = styled("b3multi,tracecontext,baggage", "b3,baggage");
        let headers: HashMap<String, String> = [
            ("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c"),
            ("x-b3-spanid", "b7ad6b7169203331"),
            ("x-b3-sampled", "0"),
            (
                "traceparent",
                "00-11111111111111111111111111111111-2222222222222222-01",
            ),
            ("baggage", "user.id=7"),
            ("x-datadog-trace-id", "5"),
            ("x-datadog-parent-id", "6"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cx = p.extract(&headers);
        let span = cx.span();
        let sc = span.span_context();
        // b3multi comes first: it wins over traceparent; datadog is not read at all.
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(
            DdState::from_trace_state(sc.trace_state()).priority,
            Some(0)
        );
        assert!(!sc.is_sampled());
        assert_eq!(
            cx.get::<Baggage>().and_then(|b| b.get("user.id")),
            Some("7")
        );
        let mut out: HashMap<String, String> = HashMap::new();
        p.inject_context(&cx, &mut out);
        assert_eq!(
            out.get("b3").map(String::as_str),
            Some("0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0")
        );
        assert_eq!(out.get("baggage").map(String::as_str), Some("user.id=7"));
        assert_eq!(out.len(), 2, "{out:?}");
    }

    #[test]
    fn none_reads_and_writes_nothing() {
        let p = styled("none", "none");
        let headers: HashMap<String, String> = [
            ("x-datadog-trace-id", "5"),
            ("x-datadog-parent-id", "6"),
            ("baggage", "a=1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cx = p.extract(&headers);
        assert!(!cx.span().span_context().is_valid());
        assert!(cx.get::<Baggage>().is_none());
        let sc = extract(&[("x-datadog-trace-id", "5"), ("x-datadog-parent-id", "6")]).unwrap();
        let mut out: HashMap<String, String> = HashMap::new();
        p.inject_context(&Context::new().with_remote_span_context(sc), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
