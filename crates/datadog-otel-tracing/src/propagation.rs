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
#[cfg(test)]
use crate::baggage::BaggageTagKeys;
use crate::baggage::{self, Baggage};
use crate::styles::{ExtractBehavior, PropagationStyles, Style};
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Link, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};

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
///
/// In-process it is kept under the `dd` key in a lossless form of its own (values
/// percent-escaped, see [`escape`]), since origins and tag values may hold `,`, `;` or `=`,
/// which a `tracestate` value cannot; the `tracestate` header gets W3C's form ([`Self::w3c_value`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DdState {
    /// Sampling priority (`-1` user reject, `0` auto reject, `1` auto keep, `2` user keep).
    pub priority: Option<i32>,
    /// Where the trace started (`synthetics`, `rum`, …), carried as Datadog's tracers do.
    pub origin: Option<String>,
    /// Propagated trace tags (`_dd.p.<name>`, without the prefix), e.g. `dm` (the sampling
    /// decision maker). The trace id's upper half (`tid`) is not kept here: it is in the id.
    pub tags: Vec<(String, String)>,
    /// The last Datadog parent (`_dd.parent_id` on the local root): the `p:` of an extracted
    /// W3C `tracestate`, or the Datadog parent when the W3C parent replaced it.
    pub(crate) parent_id: Option<String>,
    /// Extracted baggage members to tag on the local root span (`baggage.<key>`,
    /// `DD_TRACE_BAGGAGE_TAG_KEYS`); in-process only, never sent in a header.
    pub(crate) baggage_tags: Vec<(String, String)>,
    /// The trace was continued from Datadog headers without a parent (`x-datadog-parent-id`
    /// 0 or absent, as synthetics requests send): the remote parent is [`NO_PARENT`], which
    /// the exporter writes as no parent at all.
    pub(crate) no_parent: bool,
}

/// The stand-in parent of a trace continued without one (OpenTelemetry continues a trace only
/// from a valid parent); the exporter turns it back into parent 0 ([`DdState::no_parent`]).
pub(crate) const NO_PARENT: SpanId = SpanId::from_bytes([0xff; 8]);

/// Propagated tag names and values kept, as Datadog's tracers validate `x-datadog-tags`:
/// names of printable ASCII without space, `,` and `=`; values of printable ASCII (space
/// included) without `,`.
fn valid_tag(name: &str, value: &str) -> bool {
    !name.is_empty()
        && !value.is_empty()
        && name != "tid"
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'='))
        && value.bytes().all(|b| matches!(b, 0x20..=0x7e) && b != b',')
}

/// The trace flags of a sampled (or not) context.
pub(crate) fn sampled_flags(sampled: bool) -> TraceFlags {
    if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    }
}

/// In-process escaping of a `dd` member field: `%XX` for `%`, the separators (`,;=:~`) and any
/// byte outside printable ASCII, so that every origin and tag survives the trip unchanged.
fn escape(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    for b in s.bytes() {
        if b.is_ascii_graphic() && !matches!(b, b'%' | b',' | b';' | b'=' | b':' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The inverse of [`escape`].
fn unescape(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// W3C form of an origin or tag value in the `dd` member, as Datadog's tracers write it:
/// characters outside printable ASCII and `,`, `;`, `~` become `_`, then `=` becomes `~`.
fn w3c_value_chars(out: &mut String, s: &str) {
    for c in s.chars() {
        out.push(match c {
            '=' => '~',
            ',' | ';' | '~' => '_',
            ' '..='~' => c,
            _ => '_',
        });
    }
}

/// W3C form of a tag name in the `dd` member: outside printable ASCII, `,` and `=` become `_`.
fn w3c_key_chars(out: &mut String, s: &str) {
    for c in s.chars() {
        out.push(match c {
            ',' | '=' => '_',
            '!'..='~' => c,
            _ => '_',
        });
    }
}

/// Longest `tracestate` member value (W3C).
const MAX_MEMBER_LEN: usize = 256;

impl DdState {
    /// The priority, or for a context without one: 1 when `sampled`, else 0.
    pub(crate) fn priority_or(&self, sampled: bool) -> i32 {
        self.priority.unwrap_or(i32::from(sampled))
    }

    /// The priority and origin of a span's trace state, without reading the rest: what the
    /// stats and the local drop of a finished chunk need (most chunks are dropped).
    pub(crate) fn priority_and_origin(state: &TraceState) -> (Option<i32>, Option<String>) {
        let (mut priority, mut origin) = (None, None);
        if let Some(value) = state.get("dd") {
            for part in value.split(';') {
                if let Some(p) = part.strip_prefix("s:") {
                    priority = p.parse().ok();
                } else if let Some(o) = part.strip_prefix("o:") {
                    if !o.is_empty() {
                        origin = Some(unescape(o));
                    }
                }
            }
        }
        (priority, origin)
    }

    /// Reads the `dd` member of a span's trace state (the in-process form).
    pub fn from_trace_state(state: &TraceState) -> Self {
        let mut out = DdState::default();
        if let Some(value) = state.get("dd") {
            for part in value.split(';') {
                if let Some(p) = part.strip_prefix("s:") {
                    out.priority = p.parse().ok();
                } else if let Some(o) = part.strip_prefix("o:") {
                    if !o.is_empty() {
                        out.origin = Some(unescape(o));
                    }
                } else if let Some(p) = part.strip_prefix("p:") {
                    out.parent_id = Some(unescape(p));
                } else if part == "n:1" {
                    out.no_parent = true;
                } else if let Some((name, value)) =
                    part.strip_prefix("t.").and_then(|t| t.split_once(':'))
                {
                    out.set_tag(&unescape(name), &unescape(value));
                } else if let Some((key, value)) =
                    part.strip_prefix("b.").and_then(|b| b.split_once(':'))
                {
                    out.baggage_tags.push((unescape(key), unescape(value)));
                }
            }
        }
        out
    }

    /// Reads the `dd` member of an incoming W3C `tracestate` header (`~` stands for `=` in
    /// origins and tag values), with its `p:` (the last Datadog parent) as written.
    fn from_w3c(value: &str) -> Self {
        let mut out = DdState::default();
        for part in value.split(';') {
            if let Some(p) = part.strip_prefix("s:") {
                out.priority = p.parse().ok();
            } else if let Some(o) = part.strip_prefix("o:") {
                if !o.is_empty() {
                    out.origin = Some(o.replace('~', "="));
                }
            } else if let Some(p) = part.strip_prefix("p:") {
                out.parent_id = Some(p.to_string());
            } else if let Some((name, value)) =
                part.strip_prefix("t.").and_then(|t| t.split_once(':'))
            {
                out.set_tag(name, &value.replace('~', "="));
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

    /// Removes a propagated tag.
    pub(crate) fn remove_tag(&mut self, name: &str) {
        self.tags.retain(|(k, _)| k != name);
    }

    /// Writes this state into a span's trace state (the in-process form), keeping the other
    /// vendors' members. Fields that do not fit in one member (256 characters) are left out,
    /// baggage tags first.
    pub fn write_into(&self, state: &TraceState) -> TraceState {
        use std::fmt::Write as _;
        // One string, written in place (`s:1;o:…;t.dm:-0`).
        let mut value = String::with_capacity(48);
        if let Some(p) = self.priority {
            let _ = write!(value, "s:{p}");
        }
        let field = |value: &mut String, prefix: &str, name: Option<&str>, s: &str| {
            let start = value.len();
            if !value.is_empty() {
                value.push(';');
            }
            value.push_str(prefix);
            if let Some(name) = name {
                escape(value, name);
                value.push(':');
            }
            escape(value, s);
            if value.len() > MAX_MEMBER_LEN {
                value.truncate(start);
            }
        };
        if let Some(origin) = &self.origin {
            field(&mut value, "o:", None, origin);
        }
        if self.no_parent {
            field(&mut value, "n:", None, "1");
        }
        if let Some(parent) = &self.parent_id {
            field(&mut value, "p:", None, parent);
        }
        for (name, tag) in &self.tags {
            field(&mut value, "t.", Some(name), tag);
        }
        // Last: the first left out when the member is full.
        for (key, tag) in &self.baggage_tags {
            field(&mut value, "b.", Some(key), tag);
        }
        if value.is_empty() {
            return state.delete("dd").unwrap_or_else(|_| state.clone());
        }
        state.insert("dd", value).unwrap_or_else(|_| state.clone())
    }

    /// Writes the `dd` member's value of an outgoing `tracestate` header into `out`, as Datadog's
    /// tracers write it (`s:1;p:<parent>;o:…;t.dm:-0;t.tid:…`), within W3C's 256 characters
    /// (tags that do not fit are left out).
    fn write_w3c_value(&self, out: &mut String, priority: i32, parent: SpanId, tid: Option<u64>) {
        use std::fmt::Write as _;
        let begin = out.len();
        let _ = write!(out, "s:{priority};p:{parent}");
        // A part that would make the value too long is left out.
        let fits = |out: &mut String, start: usize| {
            if out.len() - begin > MAX_MEMBER_LEN {
                out.truncate(start);
            }
        };
        if let Some(origin) = &self.origin {
            let start = out.len();
            out.push_str(";o:");
            w3c_value_chars(out, origin);
            fits(out, start);
        }
        for (name, tag) in &self.tags {
            let start = out.len();
            out.push_str(";t.");
            w3c_key_chars(out, name);
            out.push(':');
            w3c_value_chars(out, tag);
            fits(out, start);
        }
        if let Some(high) = tid {
            let start = out.len();
            let _ = write!(out, ";t.tid:{high:016x}");
            fits(out, start);
        }
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

/// An origin as Datadog's tracers take it from `x-datadog-origin`: any printable ASCII
/// (`,`, `;` and `=` included: the `tracestate` form replaces them).
fn is_valid_origin(origin: &str) -> bool {
    !origin.is_empty() && origin.len() <= 256 && origin.bytes().all(|b| matches!(b, 0x20..=0x7e))
}

/// `x-datadog-tags`: the upper half of the trace id (`_dd.p.tid`) and the other `_dd.p.*`
/// tags (values may hold `=`: split at the first). Ignored whole when longer than Datadog's
/// tracers accept.
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

/// Most members a `tracestate` carries (W3C): the rest are dropped from the end.
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The W3C `tracestate`: every `tracestate` header joined with `,` (W3C allows it to be
/// split), members trimmed of optional white space (spaces and tabs), empty ones skipped, the
/// first 32 kept. None when oversized or when a member is malformed.
fn parse_tracestate(extractor: &dyn Extractor) -> Option<TraceState> {
    let headers = extractor.get_all(TRACESTATE)?;
    let mut len = 0;
    let mut members = Vec::new();
    for header in headers {
        len += header.len() + 1;
        if len > MAX_TRACESTATE_LEN {
            return None;
        }
        for member in header.split(',').map(|m| m.trim_matches([' ', '\t'])) {
            if member.is_empty() {
                continue;
            }
            let (key, value) = member.split_once('=')?;
            if !members.iter().any(|(k, _)| *k == key) {
                members.push((key, value));
            }
        }
    }
    members.truncate(MAX_TRACESTATE_MEMBERS);
    TraceState::from_key_value(members).ok()
}

/// A context from Datadog headers.
fn extract_datadog(extractor: &dyn Extractor) -> Option<SpanContext> {
    let trace_low: u64 = extractor.get(DD_TRACE_ID)?.trim().parse().ok()?;
    // A missing or zero parent continues the trace without a parent, as Datadog's tracers do
    // (synthetics requests send `x-datadog-parent-id: 0`); an unreadable one continues nothing.
    let parent: u64 = match extractor.get(DD_PARENT_ID) {
        Some(parent) => parent.trim().parse().ok()?,
        None => 0,
    };
    if trace_low == 0 {
        return None;
    }
    let mut dd = DdState {
        no_parent: parent == 0,
        ..DdState::default()
    };
    let parent = if parent == 0 {
        NO_PARENT
    } else {
        SpanId::from(parent)
    };
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
    let state = dd.write_into(&TraceState::default());
    Some(SpanContext::new(trace_id, parent, flags, true, state))
}

/// The `traceparent` header: trace id, parent id, sampled flag.
fn parse_traceparent(extractor: &dyn Extractor) -> Option<(TraceId, SpanId, bool)> {
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
    Some((trace_id, span_id, flags & 1 == 1))
}

/// The W3C context: its Datadog state read from the W3C form of the `dd` member, the other
/// members kept as they came.
fn extract_w3c(extractor: &dyn Extractor) -> Option<SpanContext> {
    let (trace_id, span_id, sampled) = parse_traceparent(extractor)?;
    let state = parse_tracestate(extractor).unwrap_or_default();
    let mut dd = state.get("dd").map(DdState::from_w3c).unwrap_or_default();
    // The W3C flag is authoritative; the dd priority refines it, as in Datadog's tracers. When
    // the flag overrides it, the decision maker is reset: default (`-0`) for a keep, none for a
    // drop. A keep by the flag alone (no dd priority) is the default decision maker's too.
    dd.priority = match dd.priority {
        Some(p) if (p > 0) == sampled => Some(p),
        Some(_) => {
            if sampled {
                dd.set_tag("dm", "-0");
            } else {
                dd.remove_tag("dm");
            }
            Some(i32::from(sampled))
        }
        None => {
            if sampled && dd.tag("dm").is_none() {
                dd.set_tag("dm", "-0");
            }
            Some(i32::from(sampled))
        }
    };
    let state = dd.write_into(&state);
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
        dd.write_into(&TraceState::default()),
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

/// What the styles found in a carrier, resolved as Datadog's tracers do.
struct Resolved {
    /// The context continued.
    context: SpanContext,
    /// The style that found it.
    style: Style,
    /// Contexts of other traces found by later styles: `terminated_context` links.
    terminated: Vec<Link>,
}

/// The context extracted with the styles in order, as Datadog's tracers resolve it: the first
/// style that yields one wins. Unless `extract_first`, the later styles are read too: a
/// context of another trace becomes a `terminated_context` span link, and a W3C context of
/// the same trace lends its other vendors' `tracestate` members, and its parent when it differs
/// (the primary's parent, or the `tracestate`'s `p:`, becomes `_dd.parent_id`).
fn resolve(styles: &PropagationStyles, extractor: &dyn Extractor) -> Option<Resolved> {
    let (index, style, primary) = styles
        .extract
        .iter()
        .enumerate()
        .find_map(|(i, style)| extract_style(*style, extractor).map(|sc| (i, *style, sc)))?;
    let mut resolved = Resolved {
        context: primary,
        style,
        terminated: Vec::new(),
    };
    if styles.extract_first {
        return Some(resolved);
    }
    for later in styles.extract.iter().skip(index + 1) {
        if *later == Style::TraceContext && w3c_adds_nothing(&resolved.context, extractor) {
            continue;
        }
        let Some(other) = extract_style(*later, extractor) else {
            continue;
        };
        if other.trace_id() != resolved.context.trace_id() {
            resolved
                .terminated
                .push(extraction_link(&other, *later, TERMINATED_CONTEXT));
        } else if *later == Style::TraceContext {
            resolved.context = merge_w3c(&resolved.context, &other);
        }
    }
    Some(resolved)
}

/// Whether the W3C headers hold the primary context itself (same trace, same parent) and no
/// other vendor's `tracestate` member: then they add nothing to it (see [`merge_w3c`]), and
/// are not read any further. The usual case: a caller that sends both styles.
fn w3c_adds_nothing(primary: &SpanContext, extractor: &dyn Extractor) -> bool {
    let Some((trace_id, span_id, _)) = parse_traceparent(extractor) else {
        return false;
    };
    if trace_id != primary.trace_id() || span_id != primary.span_id() {
        return false;
    }
    extractor.get_all(TRACESTATE).is_none_or(|headers| {
        headers
            .iter()
            .flat_map(|h| h.split(','))
            .map(|m| m.trim_matches([' ', '\t']))
            .all(|m| m.is_empty() || m.starts_with("dd="))
    })
}

/// The primary context with what a W3C context of the same trace adds: its other vendors'
/// `tracestate` members, and its parent when it differs (the primary's parent, or the
/// `tracestate`'s `p:`, becomes `_dd.parent_id`).
fn merge_w3c(primary: &SpanContext, w3c: &SpanContext) -> SpanContext {
    let mut dd = DdState::from_trace_state(primary.trace_state());
    let mut parent = primary.span_id();
    if w3c.span_id() != parent {
        let last = DdState::from_trace_state(w3c.trace_state()).parent_id;
        let datadog = if dd.no_parent {
            SpanId::INVALID
        } else {
            parent
        };
        dd.parent_id = Some(last.unwrap_or_else(|| datadog.to_string()));
        dd.no_parent = false;
        parent = w3c.span_id();
    }
    let others = w3c
        .trace_state()
        .delete("dd")
        .unwrap_or_else(|_| w3c.trace_state().clone());
    SpanContext::new(
        primary.trace_id(),
        parent,
        primary.trace_flags(),
        true,
        dd.write_into(&others),
    )
}

/// The `reason` of the span link to a context that lost to another trace's.
const TERMINATED_CONTEXT: &str = "terminated_context";
/// The `reason` of the span link from a restarted trace to the extracted context.
const PROPAGATION_BEHAVIOR_EXTRACT: &str = "propagation_behavior_extract";

/// A span link to an extracted context, as Datadog's tracers make one: attributes `reason` and
/// `context_headers` (the style that found it), sampled when its priority keeps it, and the
/// context's `tracestate` only when it came from W3C headers (none otherwise).
fn extraction_link(sc: &SpanContext, style: Style, reason: &'static str) -> Link {
    let dd = DdState::from_trace_state(sc.trace_state());
    let keep = dd.priority_or(sc.is_sampled()) > 0;
    let state = match style {
        Style::TraceContext => sc.trace_state().clone(),
        _ => TraceState::default(),
    };
    // A trace continued without a parent (Datadog headers with parent 0) links to no span.
    let span_id = match sc.span_id() {
        NO_PARENT if dd.no_parent => SpanId::INVALID,
        id => id,
    };
    let linked = SpanContext::new(sc.trace_id(), span_id, sampled_flags(keep), true, state);
    Link::new(
        linked,
        vec![
            KeyValue::new("reason", reason),
            KeyValue::new("context_headers", style.name()),
        ],
        0,
    )
}

/// The span links an extraction gives the local root span started on its context: the
/// `terminated_context` links of contexts of other traces, or (`restart`) the link to the
/// extracted context. Carried as a value of the extracted [`Context`] and added to the span by
/// [`crate::links::add_extracted_links`] when it starts.
#[derive(Debug, Clone)]
pub(crate) struct ExtractedLinks {
    /// The remote parent they go with (trace and span id); `None` for a restarted trace.
    parent: Option<(TraceId, SpanId)>,
    /// The links.
    pub(crate) links: Vec<Link>,
}

impl ExtractedLinks {
    /// Whether a span started on `cx` is the local root they belong to: its parent is the
    /// extracted remote one, or, for a restarted trace, it has none. Its descendants, whose
    /// contexts hold the value too (with a local parent), are not.
    pub(crate) fn belong_to(&self, cx: &Context) -> bool {
        match self.parent {
            None => !cx.has_active_span(),
            Some((trace_id, span_id)) => {
                let span = cx.span();
                let sc = span.span_context();
                sc.is_remote() && sc.trace_id() == trace_id && sc.span_id() == span_id
            }
        }
    }
}

/// Whether `cx`, as an extraction returned it, holds anything extracted: a remote parent to
/// continue, baggage, or the span links of a restarted trace
/// (`DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT=restart`). A span started on a context holding
/// none of them is a new trace that keeps nothing of the carrier.
pub fn has_extracted(cx: &Context) -> bool {
    cx.span().span_context().is_valid()
        || cx.get::<Baggage>().is_some()
        || cx.get::<ExtractedLinks>().is_some()
        || !cx.baggage().is_empty()
}

impl DatadogW3cPropagator {
    fn inject_datadog(&self, sc: &SpanContext, dd: &DdState, injector: &mut dyn Injector) {
        use std::fmt::Write as _;
        let (high, low) = split_trace_id(sc.trace_id());
        // The priority decides; spans are recorded either way (the Agent drops, after stats).
        let priority = dd.priority_or(sc.is_sampled());
        // The stand-in parent of a trace continued without one is no span: none is sent.
        let span_id = match sc.span_id() {
            NO_PARENT if dd.no_parent => 0,
            id => u64::from_be_bytes(id.to_bytes()),
        };

        injector.set(DD_TRACE_ID, low.to_string());
        injector.set(DD_PARENT_ID, span_id.to_string());
        injector.set(DD_PRIORITY, priority.to_string());
        if let Some(origin) = &dd.origin {
            injector.set(DD_ORIGIN, origin.clone());
        }
        // `_dd.p.<name>=<value>,…`, then the trace id's upper half.
        let mut tags = String::new();
        for (k, v) in &dd.tags {
            let comma = if tags.is_empty() { "" } else { "," };
            let _ = write!(tags, "{comma}_dd.p.{k}={v}");
        }
        if high != 0 {
            let comma = if tags.is_empty() { "" } else { "," };
            let _ = write!(tags, "{comma}_dd.p.tid={high:016x}");
        }
        // Longer than Datadog's tracers accept: left out, as they do.
        if !tags.is_empty() && tags.len() <= MAX_TAGS_LEN {
            injector.set(DD_TAGS, tags);
        }
    }

    fn inject_w3c(&self, sc: &SpanContext, dd: &DdState, injector: &mut dyn Injector) {
        let priority = dd.priority_or(sc.is_sampled());
        let flags = if priority > 0 { "01" } else { "00" };
        injector.set(
            TRACEPARENT,
            format!("00-{}-{}-{flags}", sc.trace_id(), sc.span_id()),
        );
        injector.set(TRACESTATE, w3c_tracestate_of(sc, dd));
    }

    fn inject_b3(&self, sc: &SpanContext, dd: &DdState, injector: &mut dyn Injector, single: bool) {
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

/// The W3C `tracestate` of `sc` as Datadog's tracers write it: the `dd` member first
/// (priority, `p:` the span itself, origin, propagated tags, the trace id's upper half as
/// `t.tid`), then the other vendors' members as they came, 32 members at most.
pub(crate) fn w3c_tracestate(sc: &SpanContext) -> String {
    w3c_tracestate_of(sc, &DdState::from_trace_state(sc.trace_state()))
}

/// [`w3c_tracestate`] with `sc`'s `dd` member read already.
fn w3c_tracestate_of(sc: &SpanContext, dd: &DdState) -> String {
    let (high, _) = split_trace_id(sc.trace_id());
    let priority = dd.priority_or(sc.is_sampled());
    // The trace id's upper half is carried in the member too, as Datadog's tracers do.
    let mut header = String::with_capacity(96);
    header.push_str("dd=");
    dd.write_w3c_value(
        &mut header,
        priority,
        sc.span_id(),
        (high != 0).then_some(high),
    );
    let others = sc.trace_state().header();
    for member in others
        .split(',')
        .filter(|m| !m.is_empty() && !m.starts_with("dd="))
        .take(MAX_TRACESTATE_MEMBERS - 1)
    {
        header.push(',');
        header.push_str(member);
    }
    header
}

impl TextMapPropagator for DatadogW3cPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        // The trace's Datadog state, read once for every style.
        let dd = sc
            .is_valid()
            .then(|| DdState::from_trace_state(sc.trace_state()));
        for style in &self.styles.inject {
            match (style, &dd) {
                (Style::Datadog, Some(dd)) => self.inject_datadog(sc, dd, injector),
                (Style::TraceContext, Some(dd)) => self.inject_w3c(sc, dd, injector),
                (Style::B3Multi, Some(dd)) => self.inject_b3(sc, dd, injector, false),
                (Style::B3, Some(dd)) => self.inject_b3(sc, dd, injector, true),
                (Style::Baggage, _) => {
                    if let Some(header) = cx.get::<Baggage>().and_then(Baggage::header) {
                        injector.set(baggage::HEADER, header);
                    }
                }
                // No valid span: no trace context to send.
                _ => {}
            }
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        // `ignore`: nothing at all, baggage included.
        if self.styles.behavior == ExtractBehavior::Ignore {
            return cx.clone();
        }
        let resolved = resolve(&self.styles, extractor);
        let baggage = self
            .styles
            .extract
            .contains(&Style::Baggage)
            .then(|| extractor.get(baggage::HEADER).map(Baggage::parse))
            .flatten()
            .filter(|b| !b.is_empty());
        // `restart`: a new trace, linked to the context it would have continued.
        let (mut found, links) = match resolved {
            None => (None, Vec::new()),
            Some(r) if self.styles.behavior == ExtractBehavior::Restart => (
                None,
                vec![extraction_link(
                    &r.context,
                    r.style,
                    PROPAGATION_BEHAVIOR_EXTRACT,
                )],
            ),
            Some(r) => (Some(r.context), r.terminated),
        };
        // The members to tag travel with the context to the local root span (the exporter
        // writes them as `baggage.<key>`, see `TraceFacts::chunk_tags`).
        if let (Some(sc), Some(items)) = (&found, &baggage) {
            let mut dd = DdState::from_trace_state(sc.trace_state());
            dd.baggage_tags = self
                .styles
                .baggage_tag_keys
                .select(items)
                .cloned()
                .collect();
            if !dd.baggage_tags.is_empty() {
                found = Some(SpanContext::new(
                    sc.trace_id(),
                    sc.span_id(),
                    sc.trace_flags(),
                    true,
                    dd.write_into(sc.trace_state()),
                ));
            }
        }
        let parent = found.as_ref().map(|sc| (sc.trace_id(), sc.span_id()));
        let mut cx = match found {
            Some(sc) => cx.with_remote_span_context(sc),
            None => cx.clone(),
        };
        if !links.is_empty() {
            cx = cx.with_value(ExtractedLinks { parent, links });
        }
        if let Some(items) = baggage {
            cx = cx.with_value(items);
        }
        cx
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        static FIELDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let fields = FIELDS.get_or_init(|| HEADERS.map(String::from).to_vec());
        opentelemetry::propagation::text_map_propagator::FieldIter::new(fields)
    }
}

/// [`HEADERS`] as an array of `$name::from_static(…)` (each HTTP crate has its own `HeaderName`
/// type: actix-web's and reqwest's), for lookups and inserts without parsing the names.
#[cfg_attr(not(any(feature = "actix", feature = "reqwest")), allow(unused_macros))]
macro_rules! context_header_names {
    ($name:ty) => {
        $crate::propagation::context_header_names!(@ $name; 0 1 2 3 4 5 6 7 8 9 10 11 12)
    };
    (@ $name:ty; $($i:literal)*) => {
        [$(<$name>::from_static($crate::propagation::HEADERS[$i]),)*]
    };
}
#[cfg_attr(
    not(any(feature = "actix", feature = "reqwest")),
    allow(unused_imports)
)]
pub(crate) use context_header_names;

/// The position of `key` in [`HEADERS`], when it is one of them.
#[cfg_attr(not(any(feature = "actix", feature = "reqwest")), allow(dead_code))]
pub(crate) fn header_index(key: &str) -> Option<usize> {
    HEADERS.iter().position(|h| *h == key)
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
            ..PropagationStyles::default()
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

    /// W3C headers written from the same context as the Datadog ones add nothing to it; a
    /// W3C parent of its own is taken, the Datadog one kept as `_dd.parent_id`.
    #[test]
    fn w3c_headers_of_the_same_context_add_nothing() {
        let datadog = [
            ("x-datadog-trace-id", "9532127138774266268"),
            ("x-datadog-parent-id", "13235353014750950193"),
            ("x-datadog-sampling-priority", "1"),
            ("x-datadog-tags", "_dd.p.tid=0af7651916cd43dd,_dd.p.dm=-4"),
        ];
        let alone = extract_any(&datadog);
        let with_w3c = |parent: &str| {
            let traceparent = format!("00-0af7651916cd43dd8448eb211c80319c-{parent}-01");
            let mut headers = datadog.to_vec();
            headers.push(("traceparent", &traceparent));
            headers.push(("tracestate", "dd=s:1;p:b7ad6b7169203331;t.dm:-4"));
            extract_any(&headers)
        };
        assert_eq!(with_w3c("b7ad6b7169203331"), alone);
        let other = with_w3c("00f067aa0ba902b7");
        assert_eq!(other.trace_id(), alone.trace_id());
        assert_eq!(
            other.span_id(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert_eq!(
            DdState::from_trace_state(other.trace_state())
                .parent_id
                .as_deref(),
            Some("b7ad6b7169203331")
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

    /// Headers as a list, repeated names allowed (as the suite sends them).
    struct Pairs<'a>(&'a [(&'a str, &'a str)]);

    impl Extractor for Pairs<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| *k).collect()
        }
        fn get_all(&self, key: &str) -> Option<Vec<&str>> {
            let all: Vec<&str> = self
                .0
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .collect();
            (!all.is_empty()).then_some(all)
        }
    }

    /// Extracts with `propagator`, then injects the context back with it.
    fn round_trip(
        propagator: &DatadogW3cPropagator,
        headers: &[(&str, &str)],
    ) -> (SpanContext, HashMap<String, String>) {
        let cx = propagator.extract(&Pairs(headers));
        let sc = cx.span().span_context().clone();
        let mut out = HashMap::new();
        propagator.inject_context(&cx, &mut out);
        (sc, out)
    }

    fn dd_items(out: &HashMap<String, String>) -> Vec<String> {
        let state = &out["tracestate"];
        let dd = state
            .split(',')
            .find_map(|m| m.strip_prefix("dd="))
            .expect("a dd member");
        dd.split(';').map(str::to_string).collect()
    }

    const TRACEPARENT_01: &str = "00-12345678901234567890123456789012-1234567890123456-01";
    const TRACEPARENT_00: &str = "00-12345678901234567890123456789012-1234567890123456-00";

    /// test_headers_tracestate_dd.py: keeps 32 or fewer list members, evicts the 33rd.
    #[test]
    fn a_tracestate_keeps_32_members_dd_first() {
        let p = DatadogW3cPropagator::new();
        let others: Vec<String> = (1..32).map(|i| format!("key{i}=value{i}")).collect();
        let others = others.join(",");
        for state in [
            format!("{others},dd=s:-1"),
            format!("dd=s:-1,{others}"),
            others.clone(),
        ] {
            let (_, out) = round_trip(
                &p,
                &[("traceparent", TRACEPARENT_01), ("tracestate", &state)],
            );
            let ts = &out["tracestate"];
            assert!(ts.starts_with("dd="), "{ts}");
            assert!(ts.contains("key31=value31"), "{ts}");
            assert_eq!(ts.split(',').count(), 32, "{ts}");
        }
        let (_, out) = round_trip(
            &p,
            &[
                ("traceparent", TRACEPARENT_01),
                ("tracestate", &format!("{others},key32=value32")),
            ],
        );
        let ts = &out["tracestate"];
        assert_eq!(ts.split(',').count(), 32, "{ts}");
        assert!(!ts.contains("key32=value32"), "{ts}");
        // More than 32 incoming: the first 32 are kept, not the whole header dropped.
        let many: Vec<String> = (0..40).map(|i| format!("v{i}=x")).collect();
        let (sc, _) = round_trip(
            &p,
            &[
                ("traceparent", TRACEPARENT_01),
                ("tracestate", &many.join(",")),
            ],
        );
        assert_eq!(sc.trace_state().get("v0"), Some("x"));
        assert_eq!(sc.trace_state().get("v31"), Some("x"));
        assert_eq!(sc.trace_state().get("v32"), None);
    }

    /// test_headers_tracecontext.py: repeated tracestate headers, and optional white space.
    #[test]
    fn repeated_tracestate_headers_are_joined_and_white_space_trimmed() {
        let p = DatadogW3cPropagator::new();
        let (sc, _) = round_trip(
            &p,
            &[
                ("traceparent", TRACEPARENT_00),
                ("tracestate", "foo=1"),
                ("tracestate", "bar=2,dd=s:-1"),
            ],
        );
        assert_eq!(sc.trace_state().get("foo"), Some("1"));
        assert_eq!(sc.trace_state().get("bar"), Some("2"));
        assert_eq!(
            DdState::from_trace_state(sc.trace_state()).priority,
            Some(-1)
        );
        let (sc, _) = round_trip(
            &p,
            &[
                ("traceparent", TRACEPARENT_00),
                ("tracestate", "foo=1 \t , bar=2,\tbaz=3"),
            ],
        );
        assert_eq!(sc.trace_state().get("foo"), Some("1"));
        assert_eq!(sc.trace_state().get("bar"), Some("2"));
        assert_eq!(sc.trace_state().get("baz"), Some("3"));
    }

    /// test_headers_tracestate_dd.py::test_headers_tracestate_dd_propagate_origin.
    #[test]
    fn an_origin_with_separators_is_kept_and_replaced_in_tracestate() {
        let p = DatadogW3cPropagator::new();
        let (_, out) = round_trip(
            &p,
            &[
                ("x-datadog-trace-id", "7890123456789012"),
                ("x-datadog-parent-id", "1234567890123456"),
                ("x-datadog-origin", "synthetics~;=web,z"),
            ],
        );
        assert_eq!(out["x-datadog-origin"], "synthetics~;=web,z");
        assert!(
            dd_items(&out).contains(&"o:synthetics__~web_z".to_string()),
            "{out:?}"
        );
        // `~` in the tracestate form stands for `=`.
        let (_, out) = round_trip(
            &p,
            &[
                ("traceparent", TRACEPARENT_01),
                ("tracestate", "foo=1,dd=s:-1;o:a~b"),
            ],
        );
        assert_eq!(out["x-datadog-origin"], "a=b");
        assert!(dd_items(&out).contains(&"o:a~b".to_string()), "{out:?}");
        let (_, out) = round_trip(
            &p,
            &[
                ("traceparent", TRACEPARENT_01),
                ("tracestate", "foo=1,dd=s:-1;o:tracing2.0"),
            ],
        );
        assert_eq!(out["x-datadog-origin"], "tracing2.0");
    }

    /// test_headers_tracestate_dd.py::test_headers_tracestate_dd_propagate_propagatedtags.
    #[test]
    fn tag_values_with_equals_signs_travel_both_ways() {
        let p = DatadogW3cPropagator::new();
        let tags = "_dd.p.dm=-4,_dd.p.usr.id=baz64==,_dd.p.url=http://localhost";
        let (_, out) = round_trip(
            &p,
            &[
                ("x-datadog-trace-id", "7890123456789012"),
                ("x-datadog-parent-id", "1234567890123456"),
                ("x-datadog-tags", tags),
                ("x-datadog-sampling-priority", "1"),
            ],
        );
        assert_eq!(out["x-datadog-tags"], tags);
        let items = dd_items(&out);
        for item in ["t.dm:-4", "t.usr.id:baz64~~", "t.url:http://localhost"] {
            assert!(items.contains(&item.to_string()), "{item} in {items:?}");
        }
    }

    /// test_headers_tracestate_dd.py: `t.*` members become `x-datadog-tags`, and the decision
    /// maker is kept or reset as the W3C sampled flag agrees with `s:` or overrides it.
    #[test]
    fn tracestate_tags_become_datadog_tags_and_an_override_resets_the_decision_maker() {
        let p = DatadogW3cPropagator::new();
        for (traceparent, state, priority, dm) in [
            (
                TRACEPARENT_01,
                "foo=1,dd=s:0;t.dm:-0;t.usr.id:baz64~~",
                "1",
                Some("-0"),
            ),
            (
                TRACEPARENT_00,
                "foo=1,dd=s:1;t.dm:-0;t.usr.id:baz64~~;t.url:http://localhost",
                "0",
                None,
            ),
            (
                TRACEPARENT_01,
                "foo=1,dd=s:-1;t.dm:-4;t.usr.id:baz64~~",
                "1",
                Some("-0"),
            ),
            (
                TRACEPARENT_00,
                "foo=1,dd=s:2;t.dm:-4;t.usr.id:baz64~~;t.url:http://localhost",
                "0",
                None,
            ),
            (
                TRACEPARENT_01,
                "foo=1,dd=s:2;t.dm:-4;t.usr.id:baz64~~",
                "2",
                Some("-4"),
            ),
        ] {
            let (_, out) = round_trip(&p, &[("traceparent", traceparent), ("tracestate", state)]);
            assert_eq!(out["x-datadog-sampling-priority"], priority, "{state}");
            let tags: Vec<&str> = out["x-datadog-tags"].split(',').collect();
            assert!(tags.contains(&"_dd.p.usr.id=baz64=="), "{tags:?}");
            let items = dd_items(&out);
            assert!(items.contains(&"t.usr.id:baz64~~".to_string()), "{items:?}");
            match dm {
                Some(dm) => {
                    assert!(
                        tags.contains(&format!("_dd.p.dm={dm}").as_str()),
                        "{tags:?}"
                    );
                    assert!(items.contains(&format!("t.dm:{dm}")), "{items:?}");
                }
                None => {
                    assert!(!tags.iter().any(|t| t.starts_with("_dd.p.dm")), "{tags:?}");
                    assert!(!items.iter().any(|t| t.starts_with("t.dm:")), "{items:?}");
                }
            }
        }
    }

    /// test_headers_tracecontext.py::test_tracestate_w3c_p_extract_datadog_w3c and
    /// test_tracestate_w3c_p_phase_3_extract_first.
    #[test]
    fn a_differing_w3c_parent_wins_and_the_datadog_one_becomes_the_last_parent() {
        let p = styled("datadog,tracecontext", "datadog,tracecontext");
        // Headers, the parent continued, the last Datadog parent.
        type Case<'a> = (&'a [(&'a str, &'a str)], u64, Option<&'a str>);
        let cases: [Case<'_>; 5] = [
            (
                &[
                    (
                        "traceparent",
                        "00-11111111111111110000000000000001-000000003ade68b1-01",
                    ),
                    ("tracestate", "dd=s:2;p:000000003ade68b1,foo=1"),
                    ("x-datadog-trace-id", "1"),
                    ("x-datadog-tags", "_dd.p.tid=1111111111111111"),
                    ("x-datadog-parent-id", "987654321"),
                ],
                987654321,
                None,
            ),
            (
                &[
                    (
                        "traceparent",
                        "00-11111111111111110000000000000002-000000003ade68b1-01",
                    ),
                    ("tracestate", "dd=s:2;p:000000000000000a,foo=1"),
                    ("x-datadog-parent-id", "10"),
                    ("x-datadog-trace-id", "2"),
                    ("x-datadog-tags", "_dd.p.tid=2222222222222222"),
                ],
                10,
                None,
            ),
            (
                &[
                    (
                        "traceparent",
                        "00-11111111111111110000000000000003-000000003ade68b1-01",
                    ),
                    ("tracestate", "dd=s:2;p:000000000000000a,foo=1"),
                    ("x-datadog-trace-id", "3"),
                    ("x-datadog-tags", "_dd.p.tid=1111111111111111"),
                    ("x-datadog-parent-id", "10"),
                ],
                987654321,
                Some("000000000000000a"),
            ),
            (
                &[
                    (
                        "traceparent",
                        "00-00000000000000000000000000000004-000000003ade68b1-01",
                    ),
                    ("tracestate", "dd=s:2,foo=1"),
                    ("x-datadog-trace-id", "4"),
                    ("x-datadog-parent-id", "10"),
                ],
                987654321,
                Some("000000000000000a"),
            ),
            (
                &[
                    (
                        "traceparent",
                        "00-00000000000000000000000000000005-000000003ade68b1-01",
                    ),
                    ("tracestate", "dd=s:2;p:8fffffffffffffff,foo=1"),
                    ("x-datadog-parent-id", "10"),
                    ("x-datadog-trace-id", "5"),
                ],
                987654321,
                Some("8fffffffffffffff"),
            ),
        ];
        for (headers, parent, last) in cases {
            let (sc, _) = round_trip(&p, headers);
            assert_eq!(
                u64::from_be_bytes(sc.span_id().to_bytes()),
                parent,
                "{headers:?}"
            );
            let facts = crate::facts::TraceFacts::of(&sc);
            assert_eq!(facts.parent_id.as_deref(), last, "{headers:?}");
        }
        // DD_TRACE_PROPAGATION_EXTRACT_FIRST: the Datadog context as it is.
        let first = DatadogW3cPropagator::with_styles(PropagationStyles {
            extract_first: true,
            ..crate::styles::PropagationStyles::default()
        });
        let (sc, _) = round_trip(
            &first,
            &[
                (
                    "traceparent",
                    "00-11111111111111110000000000000001-000000000000000f-01",
                ),
                ("tracestate", "dd=s:2;p:0123456789abcdef,foo=1"),
                ("x-datadog-trace-id", "1"),
                ("x-datadog-parent-id", "987654320"),
                ("x-datadog-tags", "_dd.p.tid=1111111111111111"),
            ],
        );
        assert_eq!(u64::from_be_bytes(sc.span_id().to_bytes()), 987654320);
        assert_eq!(DdState::from_trace_state(sc.trace_state()).parent_id, None);
        assert_eq!(sc.trace_state().get("foo"), None);
    }

    /// test_headers_tracecontext.py::test_tracestate_w3c_p_extract (and _and_inject).
    #[test]
    fn the_tracestate_p_becomes_the_last_parent_and_p_goes_out_as_the_span() {
        let p = DatadogW3cPropagator::new();
        for (state, last) in [
            (
                "key1=value1,dd=s:2;o:rum;p:0123456789abcdef;t.dm:-4;t.usr.id:12345~",
                "0123456789abcdef",
            ),
            ("key1=value1,dd=s:2;t.dm:-4;p:XX!X", "XX!X"),
        ] {
            let (sc, out) = round_trip(
                &p,
                &[("traceparent", TRACEPARENT_01), ("tracestate", state)],
            );
            let facts = crate::facts::TraceFacts::of(&sc);
            assert_eq!(facts.parent_id.as_deref(), Some(last));
            assert!(
                dd_items(&out).contains(&"p:1234567890123456".to_string()),
                "{out:?}"
            );
        }
    }

    /// test_headers_baggage.py::Test_Headers_Baggage_Span_Tags: extracted baggage members as
    /// `baggage.<key>` tags of the local root (through the trace facts), never in a header.
    #[test]
    fn baggage_members_become_root_span_tags() {
        let tags_of = |keys: BaggageTagKeys, baggage: &str| {
            let p = DatadogW3cPropagator::with_styles(PropagationStyles {
                baggage_tag_keys: keys,
                ..PropagationStyles::default()
            });
            let (sc, out) = round_trip(
                &p,
                &[
                    ("x-datadog-trace-id", "123456789"),
                    ("x-datadog-parent-id", "987654321"),
                    ("baggage", baggage),
                ],
            );
            assert!(!out["tracestate"].contains("doggo"), "{out:?}");
            assert!(!out.contains_key("x-datadog-tags"), "{out:?}");
            let tags: Vec<(String, String)> = crate::facts::TraceFacts::of(&sc)
                .chunk_tags()
                .into_iter()
                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                .filter(|(k, _)| k.starts_with("baggage."))
                .collect();
            tags
        };
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            tags_of(
                BaggageTagKeys::default(),
                "user.id=doggo,session.id=mysession,foo=bar"
            ),
            vec![
                pair("baggage.user.id", "doggo"),
                pair("baggage.session.id", "mysession")
            ]
        );
        assert_eq!(
            tags_of(
                BaggageTagKeys::parse("session.id,foo"),
                "user.id=doggo,session.id=fakesession,foo=bar"
            ),
            vec![
                pair("baggage.session.id", "fakesession"),
                pair("baggage.foo", "bar")
            ]
        );
        assert_eq!(
            tags_of(BaggageTagKeys::All, "user.id=doggo,serverNode=DF%2028").len(),
            2
        );
        assert!(tags_of(
            BaggageTagKeys::parse("session.id,foo"),
            "user.id=,session.id=mysession,account.id=abcd"
        )
        .is_empty());
        assert!(tags_of(BaggageTagKeys::parse(""), "user.id=doggo").is_empty());
    }

    /// test_trace_sampling.py::test_distributed_headers_synthetics_sampling_decision: parent
    /// 0 continues the trace id, with no parent, keeping priority and origin.
    #[test]
    fn a_zero_parent_continues_the_trace_without_a_parent() {
        let p = DatadogW3cPropagator::new();
        let (sc, out) = round_trip(
            &p,
            &[
                ("x-datadog-trace-id", "123456789"),
                ("x-datadog-parent-id", "0"),
                ("x-datadog-sampling-priority", "1"),
                ("x-datadog-origin", "synthetics;=web,z"),
            ],
        );
        assert!(sc.is_valid() && sc.is_remote());
        assert_eq!(u128::from_be_bytes(sc.trace_id().to_bytes()), 123456789);
        assert_eq!(sc.span_id(), NO_PARENT);
        let facts = crate::facts::TraceFacts::of(&sc);
        assert!(facts.no_parent);
        assert_eq!(facts.priority.0, 1);
        assert_eq!(facts.origin.as_deref(), Some("synthetics;=web,z"));
        assert_eq!(out["x-datadog-parent-id"], "0");
        // Still nothing without a trace id, or with an unreadable parent.
        assert!(extract(&[("x-datadog-trace-id", "0"), ("x-datadog-parent-id", "0")]).is_none());
        assert!(extract(&[("x-datadog-trace-id", "5"), ("x-datadog-parent-id", "x")]).is_none());
        // A later W3C context of the same trace gives the parent; the last Datadog one is 0.
        let (sc, _) = round_trip(
            &p,
            &[
                ("x-datadog-trace-id", "4"),
                ("x-datadog-parent-id", "0"),
                (
                    "traceparent",
                    "00-00000000000000000000000000000004-000000003ade68b1-01",
                ),
            ],
        );
        assert_eq!(u64::from_be_bytes(sc.span_id().to_bytes()), 987654321);
        let facts = crate::facts::TraceFacts::of(&sc);
        assert!(!facts.no_parent);
        assert_eq!(facts.parent_id.as_deref(), Some("0000000000000000"));
    }

    fn styled(extract: &str, inject: &str) -> DatadogW3cPropagator {
        DatadogW3cPropagator::with_styles(PropagationStyles {
            extract: crate::styles::parse(extract).unwrap(),
            inject: crate::styles::parse(inject).unwrap(),
            ..PropagationStyles::default()
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

    /// test_extract_behavior.py's headers: one trace in Datadog and W3C headers, and baggage.
    const SAME_TRACE: [(&str, &str); 7] = [
        ("x-datadog-trace-id", "1"),
        ("x-datadog-parent-id", "1"),
        ("x-datadog-sampling-priority", "2"),
        ("x-datadog-tags", "_dd.p.tid=1111111111111111,_dd.p.dm=-4"),
        (
            "traceparent",
            "00-11111111111111110000000000000001-0000000000000001-01",
        ),
        ("tracestate", "dd=s:2;t.dm:-4,foo=1"),
        ("baggage", "key1=value1"),
    ];

    /// Datadog headers of trace 2 and W3C headers of another trace.
    const TWO_TRACES: [(&str, &str); 5] = [
        ("x-datadog-trace-id", "2"),
        ("x-datadog-parent-id", "2"),
        ("x-datadog-sampling-priority", "2"),
        ("x-datadog-tags", "_dd.p.tid=1111111111111111,_dd.p.dm=-4"),
        (
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-01",
        ),
    ];

    fn behaving(behavior: ExtractBehavior, extract_first: bool) -> DatadogW3cPropagator {
        DatadogW3cPropagator::with_styles(PropagationStyles {
            behavior,
            extract_first,
            ..PropagationStyles::default()
        })
    }

    /// The extracted links as (trace id, span id, flags, tracestate header, attributes).
    type LinkView = (String, String, u8, String, Vec<(String, String)>);

    fn links_of(cx: &Context) -> Vec<LinkView> {
        cx.get::<ExtractedLinks>()
            .map(|e| {
                e.links
                    .iter()
                    .map(|l| {
                        let sc = &l.span_context;
                        (
                            sc.trace_id().to_string(),
                            sc.span_id().to_string(),
                            sc.trace_flags().to_u8(),
                            sc.trace_state().header(),
                            l.attributes
                                .iter()
                                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                                .collect(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn attrs(reason: &str, style: &str) -> Vec<(String, String)> {
        vec![
            ("reason".to_string(), reason.to_string()),
            ("context_headers".to_string(), style.to_string()),
        ]
    }

    /// test_extract_behavior.py::Test_ExtractBehavior_Restart: a new trace (no parent), one
    /// link to the context that would have been continued, the baggage kept.
    #[test]
    fn restart_links_to_the_extracted_context_and_keeps_the_baggage() {
        let cx = behaving(ExtractBehavior::Restart, false).extract(&Pairs(&SAME_TRACE));
        assert!(!cx.has_active_span());
        assert!(has_extracted(&cx));
        assert_eq!(
            links_of(&cx),
            vec![(
                "11111111111111110000000000000001".to_string(),
                "0000000000000001".to_string(),
                1,
                String::new(),
                attrs("propagation_behavior_extract", "datadog"),
            )]
        );
        let extracted = cx.get::<ExtractedLinks>().expect("links");
        assert!(extracted.belong_to(&cx));
        // A span under the restarted root has a parent: the links are not its.
        let child = cx.with_remote_span_context(SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(8u64),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ));
        assert!(!extracted.belong_to(&child));
        assert_eq!(
            cx.get::<Baggage>().and_then(|b| b.get("key1")),
            Some("value1")
        );
        let mut out: HashMap<String, String> = HashMap::new();
        behaving(ExtractBehavior::Restart, false).inject_context(&cx, &mut out);
        assert_eq!(
            out.get("baggage").map(String::as_str),
            Some("key1=value1"),
            "{out:?}"
        );
        assert!(!out.contains_key("x-datadog-trace-id"), "{out:?}");

        // A W3C parent of the same trace overrides the Datadog one, in the link too; with
        // DD_TRACE_PROPAGATION_EXTRACT_FIRST the Datadog one stays.
        let overriding = [
            ("x-datadog-trace-id", "1"),
            ("x-datadog-parent-id", "1"),
            ("x-datadog-sampling-priority", "2"),
            ("x-datadog-tags", "_dd.p.tid=1111111111111111"),
            (
                "traceparent",
                "00-11111111111111110000000000000001-1234567890123456-01",
            ),
        ];
        for (extract_first, span) in [(false, "1234567890123456"), (true, "0000000000000001")] {
            let cx = behaving(ExtractBehavior::Restart, extract_first).extract(&Pairs(&overriding));
            let links = links_of(&cx);
            assert_eq!(links.len(), 1);
            assert_eq!(links[0].1, span, "extract_first {extract_first}");
        }
        // A restart from W3C headers keeps their tracestate in the link.
        let w3c = [
            (
                "traceparent",
                "00-12345678901234567890123456789012-1234567890123456-00",
            ),
            ("tracestate", "dd=s:-1,foo=1"),
        ];
        let links = links_of(&behaving(ExtractBehavior::Restart, false).extract(&Pairs(&w3c)));
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].2, 0);
        assert_eq!(links[0].3, "dd=s:-1,foo=1");
        assert_eq!(
            links[0].4,
            attrs("propagation_behavior_extract", "tracecontext")
        );
    }

    /// Test_ExtractBehavior_Ignore: no context, no baggage, no link.
    #[test]
    fn ignore_extracts_nothing_at_all() {
        let cx = behaving(ExtractBehavior::Ignore, false).extract(&Pairs(&SAME_TRACE));
        assert!(!cx.has_active_span());
        assert!(cx.get::<Baggage>().is_none());
        assert!(links_of(&cx).is_empty());
        assert!(!has_extracted(&cx));
        let mut out: HashMap<String, String> = HashMap::new();
        behaving(ExtractBehavior::Ignore, false).inject_context(&cx, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    /// Test_ExtractBehavior_Default::test_multiple_tracecontexts: the Datadog context is
    /// continued, the W3C context of another trace is a `terminated_context` link (with its
    /// tracestate); with DD_TRACE_PROPAGATION_EXTRACT_FIRST there is none.
    #[test]
    fn continue_links_the_contexts_of_other_traces() {
        let cx = behaving(ExtractBehavior::Continue, false).extract(&Pairs(&TWO_TRACES));
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(
            sc.trace_id().to_string(),
            "11111111111111110000000000000002"
        );
        assert_eq!(sc.span_id().to_string(), "0000000000000002");
        assert_eq!(
            links_of(&cx),
            vec![(
                "12345678901234567890123456789012".to_string(),
                "1234567890123456".to_string(),
                1,
                // A sampled traceparent without a dd priority: priority 1, decision maker -0.
                "dd=s:1;t.dm:-0".to_string(),
                attrs("terminated_context", "tracecontext"),
            )]
        );
        let extracted = cx.get::<ExtractedLinks>().expect("links");
        assert!(extracted.belong_to(&cx));
        // The local root's children see the local root as their parent: not theirs.
        let child = cx.with_remote_span_context(SpanContext::new(
            sc.trace_id(),
            SpanId::from(99u64),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ));
        assert!(!extracted.belong_to(&child));

        let cx = behaving(ExtractBehavior::Continue, true).extract(&Pairs(&TWO_TRACES));
        assert!(links_of(&cx).is_empty());
        // One trace in both styles: no link.
        let cx = behaving(ExtractBehavior::Continue, false).extract(&Pairs(&SAME_TRACE));
        assert!(links_of(&cx).is_empty());
        assert!(has_extracted(&cx));

        // Any later style: a b3 context of another trace after a W3C one.
        let styled = DatadogW3cPropagator::with_styles(PropagationStyles {
            extract: crate::styles::parse("tracecontext,b3multi").unwrap(),
            ..PropagationStyles::default()
        });
        let cx = styled.extract(&Pairs(&[
            (
                "traceparent",
                "00-12345678901234567890123456789012-1234567890123456-01",
            ),
            ("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c"),
            ("x-b3-spanid", "b7ad6b7169203331"),
            ("x-b3-sampled", "0"),
        ]));
        assert_eq!(
            links_of(&cx),
            vec![(
                "0af7651916cd43dd8448eb211c80319c".to_string(),
                "b7ad6b7169203331".to_string(),
                0,
                String::new(),
                attrs("terminated_context", "b3multi"),
            )]
        );
    }

    /// A restart from Datadog headers without a parent (synthetics) links to the trace, span 0.
    #[test]
    fn a_restart_from_a_context_without_parent_links_to_span_zero() {
        let cx = behaving(ExtractBehavior::Restart, false).extract(&Pairs(&[
            ("x-datadog-trace-id", "123"),
            ("x-datadog-parent-id", "0"),
            ("x-datadog-sampling-priority", "1"),
        ]));
        let links = links_of(&cx);
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].0, "0000000000000000000000000000007b");
        assert_eq!(links[0].1, "0000000000000000");
        let tag = crate::links::span_links_tag(&cx.get::<ExtractedLinks>().expect("links").links)
            .expect("kept");
        assert!(
            tag.value
                .as_str()
                .contains(r#""span_id":"0000000000000000""#),
            "{tag:?}"
        );
    }

    #[test]
    fn baggage_alone_is_extracted_without_a_parent() {
        let cx = DatadogW3cPropagator::new().extract(&Pairs(&[("baggage", "a=1")]));
        assert!(!cx.has_active_span());
        assert!(has_extracted(&cx));
        assert!(!has_extracted(
            &DatadogW3cPropagator::new().extract(&Pairs(&[("x", "y")]))
        ));
    }
}
