//! Client-side trace stats, as Datadog's tracers compute them (reference: the system-tests'
//! `test_library_tracestats.py`, libdatadog's stats concentrator): hits, top-level hits,
//! errors, total duration and the ok/error latency distributions (DDSketch, Datadog's own
//! `libdd-ddsketch`) per aggregation key, in 10 s buckets aligned on span end time, sent to the
//! Agent's `/v0.6/stats` once a bucket has closed, and all at shutdown.
//!
//! The exporter feeds every span of every chunk here before anything is dropped, so the Agent's
//! APM metrics count every request even when it never receives the P0 traces.
//!
//! Eligible spans: top-level (no local parent, or a parent of another service), measured
//! (`_dd.measured`), or of kind server, client, producer or consumer. The key: service,
//! operation name, resource, type, HTTP status code, synthetics, span kind, peer tags (client,
//! producer and consumer spans, the tags the Agent lists), trace root, HTTP method and
//! endpoint.

use crate::spans::{
    kind_name, DEFAULT_OPERATION, OPERATION_NAME, RESOURCE_NAME, SERVICE_NAME, SPAN_TYPE,
};
use libdd_ddsketch::DDSketch;
use opentelemetry::trace::{SpanId, Status};
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// The bucket width.
#[cfg(test)]
pub const BUCKET: std::time::Duration = std::time::Duration::from_secs(10);
const BUCKET_NS: u64 = 10_000_000_000;

/// At most this many keys per bucket; more spans go to one overflow entry (as the suite's
/// cardinality cases expect of Datadog's tracers).
const MAX_KEYS_PER_BUCKET: usize = 2048;

/// What stands for a value past a cardinality limit, as Datadog's tracers write it.
const BLOCKED: &str = "tracer_blocked_value";

/// One aggregation key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    service: String,
    name: String,
    resource: String,
    span_type: String,
    http_status: u32,
    synthetics: bool,
    span_kind: &'static str,
    peer_tags: Vec<String>,
    /// 1: the trace's root, 2: not.
    is_trace_root: u8,
    http_method: String,
    http_endpoint: String,
}

/// A key as a span gives it, borrowed: looked up without building the owned [`Key`] (the
/// common case: the key was seen before in the bucket).
#[derive(Debug)]
struct KeyRef<'a> {
    service: &'a str,
    name: &'a str,
    resource: Cow<'a, str>,
    span_type: Cow<'a, str>,
    http_status: u32,
    synthetics: bool,
    span_kind: &'static str,
    /// `(key, value)`, written `key:value` in the owned key.
    peer_tags: Vec<(&'a str, Cow<'a, str>)>,
    is_trace_root: u8,
    http_method: Cow<'a, str>,
    http_endpoint: Cow<'a, str>,
}

impl KeyRef<'_> {
    /// A cheap hash of the fields ([`Fx`]); the buckets' maps compare the whole key anyway.
    fn hash(&self) -> u64 {
        let mut h = Fx::default();
        let mut eat = |bytes: &[u8]| {
            h.write(bytes);
            // A separator, so that ("ab", "c") and ("a", "bc") differ.
            h.add(0xff);
        };
        eat(self.service.as_bytes());
        eat(self.name.as_bytes());
        eat(self.resource.as_bytes());
        eat(self.span_type.as_bytes());
        eat(&self.http_status.to_le_bytes());
        eat(&[u8::from(self.synthetics), self.is_trace_root]);
        eat(self.span_kind.as_bytes());
        for (key, value) in &self.peer_tags {
            eat(key.as_bytes());
            eat(value.as_bytes());
        }
        eat(self.http_method.as_bytes());
        eat(self.http_endpoint.as_bytes());
        h.finish()
    }

    fn matches(&self, key: &Key) -> bool {
        self.service == key.service
            && self.name == key.name
            && *self.resource == key.resource
            && *self.span_type == key.span_type
            && self.http_status == key.http_status
            && self.synthetics == key.synthetics
            && self.span_kind == key.span_kind
            && self.peer_tags.len() == key.peer_tags.len()
            && self
                .peer_tags
                .iter()
                .zip(&key.peer_tags)
                .all(|((k, v), tag)| is_peer_tag(tag, k, v))
            && self.is_trace_root == key.is_trace_root
            && *self.http_method == key.http_method
            && *self.http_endpoint == key.http_endpoint
    }

    fn to_key(&self) -> Key {
        Key {
            service: self.service.to_string(),
            name: self.name.to_string(),
            resource: self.resource.to_string(),
            span_type: self.span_type.to_string(),
            http_status: self.http_status,
            synthetics: self.synthetics,
            span_kind: self.span_kind,
            peer_tags: self
                .peer_tags
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect(),
            is_trace_root: self.is_trace_root,
            http_method: self.http_method.to_string(),
            http_endpoint: self.http_endpoint.to_string(),
        }
    }
}

/// Whether `tag` is `key:value`.
fn is_peer_tag(tag: &str, key: &str, value: &str) -> bool {
    tag.len() == key.len() + 1 + value.len()
        && tag.starts_with(key)
        && tag.as_bytes()[key.len()] == b':'
        && tag.ends_with(value)
}

#[derive(Debug, Default)]
struct Group {
    hits: u64,
    top_level_hits: u64,
    errors: u64,
    duration: u64,
    ok: DDSketch,
    error: DDSketch,
}

/// A word-at-a-time hash (rustc's "Fx" hash), for the aggregation keys and the buckets' maps:
/// their keys are short strings and hashes already, and SipHash, or a byte-at-a-time hash,
/// costs more than the rest of a span's stats.
#[derive(Debug, Clone, Copy, Default)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.add(u64::from_le_bytes(w));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }
    /// A key's hash is already one: kept as it is.
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type FxBuild = std::hash::BuildHasherDefault<Fx>;

/// One bucket's groups, by the hash of their key.
#[derive(Debug, Default)]
struct Groups {
    by_hash: HashMap<u64, Vec<(Key, Group)>, FxBuild>,
    len: usize,
    /// The distinct resources seen, for the resource cardinality limit.
    resources: std::collections::HashSet<String, FxBuild>,
}

impl Groups {
    /// The group of `key`, made when new; past the cardinality bound a new key goes to one
    /// overflow group of its service and operation.
    fn group(&mut self, mut key: KeyRef<'_>, limits: Limits) -> &mut Group {
        if !self.resources.contains(key.resource.as_ref()) {
            if self.resources.len() >= limits.resources {
                key.resource = Cow::Borrowed(BLOCKED);
            } else {
                self.resources.insert(key.resource.to_string());
            }
        }
        let hash = key.hash();
        let known = self
            .by_hash
            .get(&hash)
            .and_then(|entries| entries.iter().position(|(k, _)| key.matches(k)));
        if let Some(i) = known {
            return &mut self.by_hash.get_mut(&hash).expect("just found")[i].1;
        }
        if self.len >= limits.keys {
            let overflow = KeyRef {
                service: key.service,
                name: key.name,
                resource: Cow::Borrowed(BLOCKED),
                span_type: Cow::Borrowed(""),
                http_status: 0,
                synthetics: false,
                span_kind: "",
                peer_tags: Vec::new(),
                is_trace_root: 2,
                http_method: Cow::Borrowed(""),
                http_endpoint: Cow::Borrowed(""),
            };
            let overflow_hash = overflow.hash();
            let entries = self.by_hash.entry(overflow_hash).or_default();
            let i = match entries.iter().position(|(k, _)| overflow.matches(k)) {
                Some(i) => i,
                None => {
                    entries.push((overflow.to_key(), Group::default()));
                    entries.len() - 1
                }
            };
            return &mut entries[i].1;
        }
        self.len += 1;
        let entries = self.by_hash.entry(hash).or_default();
        entries.push((key.to_key(), Group::default()));
        let last = entries.len() - 1;
        &mut entries[last].1
    }
}

/// Cardinality limits per bucket (`DD_TRACE_STATS_CARDINALITY_LIMIT`,
/// `DD_TRACE_STATS_RESOURCE_CARDINALITY_LIMIT`): past them, new keys and resources are counted
/// under `tracer_blocked_value`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Distinct aggregation keys.
    pub keys: usize,
    /// Distinct resources.
    pub resources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            keys: MAX_KEYS_PER_BUCKET,
            resources: MAX_KEYS_PER_BUCKET,
        }
    }
}

/// The stats of closed (or, at shutdown, all) buckets: what one `/v0.6/stats` payload carries.
#[derive(Debug, Default)]
pub struct Concentrator {
    buckets: BTreeMap<u64, Groups>,
    limits: Limits,
    /// The tags the Agent aggregates client spans on (`peer_tags` of its `/info`).
    peer_tag_keys: Vec<String>,
    /// Bit `n` set when a peer tag key is `n` bytes long (63: longer): most attributes of a
    /// span are told apart from the peer tags by their length alone.
    peer_tag_lengths: u64,
}

fn length_bit(key: &str) -> u64 {
    1 << key.len().min(63)
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What the stats read of one span, found in one pass over its attributes (the first value of
/// each key, as a lookup by key finds it; the tags read as text only when they are strings).
#[derive(Debug, Default)]
struct Fields<'a> {
    /// `service.name` (a string).
    service: Option<&'a str>,
    /// `_dd.origin` (a string).
    origin: Option<&'a str>,
    /// `span.kind` (a string).
    kind_tag: Option<&'a str>,
    /// `operation.name` (a string).
    operation: Option<&'a str>,
    partial: bool,
    measured: bool,
    resource: Option<&'a Value>,
    span_type: Option<&'a Value>,
    http_status: Option<&'a Value>,
    http_method: Option<&'a Value>,
    http_route: Option<&'a Value>,
    http_endpoint: Option<&'a Value>,
}

impl<'a> Fields<'a> {
    fn of(span: &'a SpanData) -> Self {
        let mut f = Fields::default();
        let mut measured: Option<&Value> = None;
        for kv in &span.attributes {
            let value = &kv.value;
            let string = match value {
                Value::String(s) => Some(s.as_str()),
                _ => None,
            };
            let first_str = |slot: &mut Option<&'a str>| {
                if slot.is_none() {
                    *slot = string;
                }
            };
            let first = |slot: &mut Option<&'a Value>| {
                slot.get_or_insert(value);
            };
            match kv.key.as_str() {
                SERVICE_NAME => first_str(&mut f.service),
                "_dd.origin" => first_str(&mut f.origin),
                "span.kind" => first_str(&mut f.kind_tag),
                OPERATION_NAME => first_str(&mut f.operation),
                "_dd.partial_version" => f.partial = true,
                "_dd.measured" => first(&mut measured),
                RESOURCE_NAME => first(&mut f.resource),
                SPAN_TYPE => first(&mut f.span_type),
                "http.status_code" => first(&mut f.http_status),
                "http.method" => first(&mut f.http_method),
                "http.route" => first(&mut f.http_route),
                "http.endpoint" => first(&mut f.http_endpoint),
                _ => {}
            }
        }
        f.measured = measured.is_some_and(|v| match v {
            Value::I64(n) => *n == 1,
            Value::F64(f) => *f == 1.0,
            Value::Bool(b) => *b,
            Value::String(s) => s.as_str() == "1",
            _ => false,
        });
        f
    }

    /// The span's kind: its `span.kind` tag when set (a span made through a Datadog-style API
    /// says it that way), else its OpenTelemetry kind.
    fn kind(&self, span: &SpanData) -> &'static str {
        if let Some(kind) = self.kind_tag {
            for name in ["server", "client", "producer", "consumer", "internal"] {
                if kind.eq_ignore_ascii_case(name) {
                    return name;
                }
            }
        }
        kind_name(&span.span_kind)
    }
}

/// What the stats need of one chunk beyond its spans.
#[derive(Debug, Clone, Copy)]
pub struct ChunkFacts<'a> {
    /// The process's service (spans without `service.name` belong to it).
    pub service: &'a str,
    /// The chunk's origin (`synthetics…` marks synthetics requests).
    pub origin: Option<&'a str>,
}

impl Concentrator {
    /// Stats bounded by `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Sets the peer tags the Agent aggregates on.
    pub fn set_peer_tags(&mut self, keys: Vec<String>) {
        self.peer_tag_lengths = keys.iter().fold(0, |bits, k| bits | length_bit(k));
        self.peer_tag_keys = keys;
    }

    /// Counts the eligible spans of one chunk.
    pub fn add_chunk(&mut self, spans: &[SpanData], facts: ChunkFacts<'_>) {
        // What the stats read of each span, in one pass over its attributes.
        let fields: Vec<Fields<'_>> = spans.iter().map(Fields::of).collect();
        // The service of a span of the chunk by id, to tell top-level spans (parent of another
        // service) from their children; chunks are small, a map only pays for large ones.
        let map: Option<HashMap<SpanId, Option<&str>>> = (spans.len() > 16).then(|| {
            spans
                .iter()
                .zip(&fields)
                .map(|(s, f)| (s.span_context.span_id(), f.service))
                .collect()
        });
        let service_by_id = |id: SpanId| -> Option<Option<&str>> {
            match &map {
                Some(map) => map.get(&id).copied(),
                None => spans
                    .iter()
                    .position(|s| s.span_context.span_id() == id)
                    .map(|i| fields[i].service),
            }
        };
        let chunk_synthetics = facts.origin.is_some_and(|o| o.starts_with("synthetics"));
        for (span, fields) in spans.iter().zip(&fields) {
            // Partial snapshots of a span still open are not counted (the span will be).
            if fields.partial {
                continue;
            }
            let synthetics =
                chunk_synthetics || fields.origin.is_some_and(|o| o.starts_with("synthetics"));
            let own = fields.service;
            let local_parent =
                span.parent_span_id != SpanId::INVALID && !span.parent_span_is_remote;
            let top_level = !local_parent
                || service_by_id(span.parent_span_id).is_none_or(|parent| parent != own);
            let kind = fields.kind(span);
            let kind_eligible = matches!(kind, "server" | "client" | "producer" | "consumer");
            if !(top_level || fields.measured || kind_eligible) {
                continue;
            }
            let service = own.unwrap_or(facts.service);
            self.add_span(span, fields, service, top_level, synthetics, kind);
        }
    }

    fn add_span(
        &mut self,
        span: &SpanData,
        fields: &Fields<'_>,
        service: &str,
        top_level: bool,
        synthetics: bool,
        span_kind: &'static str,
    ) {
        let end = nanos(span.end_time);
        let duration = end.saturating_sub(nanos(span.start_time));
        let http_status = fields
            .http_status
            .and_then(|v| match v {
                Value::I64(n) => u32::try_from(*n).ok(),
                other => other.as_str().parse().ok(),
            })
            .unwrap_or(0);
        let peer_tags = if matches!(span_kind, "client" | "producer" | "consumer")
            && !self.peer_tag_keys.is_empty()
        {
            self.peer_tags_of(span)
        } else {
            Vec::new()
        };
        fn text(v: Option<&Value>) -> Option<Cow<'_, str>> {
            v.map(Value::as_str)
        }
        let key = KeyRef {
            service,
            name: fields.operation.unwrap_or(DEFAULT_OPERATION),
            resource: text(fields.resource).unwrap_or(Cow::Borrowed(span.name.as_ref())),
            span_type: text(fields.span_type).unwrap_or_default(),
            http_status,
            synthetics,
            span_kind,
            peer_tags,
            is_trace_root: if span.parent_span_id == SpanId::INVALID {
                1
            } else {
                2
            },
            http_method: text(fields.http_method).unwrap_or_default(),
            http_endpoint: text(fields.http_route.or(fields.http_endpoint)).unwrap_or_default(),
        };
        let group = self
            .buckets
            .entry(end - end % BUCKET_NS)
            .or_default()
            .group(key, self.limits);
        group.hits += 1;
        group.duration += duration;
        if top_level {
            group.top_level_hits += 1;
        }
        // A sketch refuses only negative or non-finite points: a duration is neither.
        if matches!(span.status, Status::Error { .. }) {
            group.errors += 1;
            let _ = group.error.add(duration as f64);
        } else {
            let _ = group.ok.add(duration as f64);
        }
    }

    /// The span's peer tags, in the order of the Agent's list: one pass over its attributes.
    fn peer_tags_of<'a>(&self, span: &'a SpanData) -> Vec<(&'a str, Cow<'a, str>)> {
        let mut found: Vec<(usize, &'a str, Cow<'a, str>)> = Vec::new();
        for kv in &span.attributes {
            let key = kv.key.as_str();
            if self.peer_tag_lengths & length_bit(key) == 0 {
                continue;
            }
            if let Some(i) = self.peer_tag_keys.iter().position(|k| k == key) {
                // The first value of a key, as a lookup by key would find it.
                if !found.iter().any(|(j, _, _)| *j == i) {
                    found.push((i, key, kv.value.as_str()));
                }
            }
        }
        found.sort_unstable_by_key(|(i, _, _)| *i);
        found.into_iter().map(|(_, k, v)| (k, v)).collect()
    }

    /// Whether no span waits.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Takes the buckets closed at `now` (all with `force`, at shutdown and on flush).
    pub fn take(&mut self, now: SystemTime, force: bool) -> Vec<Bucket> {
        let open_from = nanos(now) - nanos(now) % BUCKET_NS;
        let closed: Vec<u64> = self
            .buckets
            .keys()
            .copied()
            .filter(|start| force || *start < open_from)
            .collect();
        closed
            .into_iter()
            .filter_map(|start| {
                self.buckets.remove(&start).map(|groups| Bucket {
                    start,
                    groups: groups.by_hash.into_values().flatten().collect(),
                })
            })
            .collect()
    }
}

/// One closed bucket.
#[derive(Debug)]
pub struct Bucket {
    start: u64,
    groups: Vec<(Key, Group)>,
}

/// The payload's header fields.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    /// The host's name, when reported (`DD_TRACE_REPORT_HOSTNAME` with `DD_HOSTNAME`), else empty.
    pub hostname: &'a str,
    /// `DD_ENV` (empty when unset).
    pub env: &'a str,
    /// `DD_VERSION`.
    pub version: &'a str,
    /// `DD_SERVICE`.
    pub service: &'a str,
    /// The process's runtime id.
    pub runtime_id: &'a str,
    /// The payload's number, from 1.
    pub sequence: u64,
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_str(out, s);
}

fn write_uint(out: &mut Vec<u8>, key: &str, value: u64) {
    write_str(out, key);
    let _ = rmp::encode::write_uint(out, value);
}

fn write_field(out: &mut Vec<u8>, key: &str, value: &str) {
    write_str(out, key);
    write_str(out, value);
}

/// The msgpack body of `PUT /v0.6/stats` for `buckets`.
pub fn encode(header: &Header<'_>, buckets: Vec<Bucket>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let _ = rmp::encode::write_map_len(&mut out, 9);
    write_field(&mut out, "Hostname", header.hostname);
    write_field(&mut out, "Env", header.env);
    write_field(&mut out, "Version", header.version);
    write_field(&mut out, "Lang", "rust");
    write_field(&mut out, "TracerVersion", env!("CARGO_PKG_VERSION"));
    write_field(&mut out, "RuntimeID", header.runtime_id);
    write_uint(&mut out, "Sequence", header.sequence);
    write_field(&mut out, "Service", header.service);
    write_str(&mut out, "Stats");
    let _ = rmp::encode::write_array_len(&mut out, buckets.len() as u32);
    for bucket in buckets {
        let _ = rmp::encode::write_map_len(&mut out, 3);
        write_uint(&mut out, "Start", bucket.start);
        write_uint(&mut out, "Duration", BUCKET_NS);
        write_str(&mut out, "Stats");
        let _ = rmp::encode::write_array_len(&mut out, bucket.groups.len() as u32);
        for (key, group) in bucket.groups {
            let _ = rmp::encode::write_map_len(&mut out, 18);
            write_field(&mut out, "Service", &key.service);
            write_field(&mut out, "Name", &key.name);
            write_field(&mut out, "Resource", &key.resource);
            write_field(&mut out, "Type", &key.span_type);
            write_uint(&mut out, "HTTPStatusCode", u64::from(key.http_status));
            write_str(&mut out, "Synthetics");
            let _ = rmp::encode::write_bool(&mut out, key.synthetics);
            write_uint(&mut out, "Hits", group.hits);
            write_uint(&mut out, "TopLevelHits", group.top_level_hits);
            write_uint(&mut out, "Errors", group.errors);
            write_uint(&mut out, "Duration", group.duration);
            for (name, sketch) in [("OkSummary", group.ok), ("ErrorSummary", group.error)] {
                write_str(&mut out, name);
                let bytes = sketch.encode_to_vec();
                let _ = rmp::encode::write_bin(&mut out, &bytes);
            }
            write_field(&mut out, "SpanKind", key.span_kind);
            write_str(&mut out, "PeerTags");
            let _ = rmp::encode::write_array_len(&mut out, key.peer_tags.len() as u32);
            for tag in &key.peer_tags {
                write_str(&mut out, tag);
            }
            write_uint(&mut out, "IsTraceRoot", u64::from(key.is_trace_root));
            write_field(&mut out, "HTTPMethod", &key.http_method);
            write_field(&mut out, "HTTPEndpoint", &key.http_endpoint);
            write_field(&mut out, "GRPCStatusCode", "");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanKind, TraceFlags, TraceId, TraceState};
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::time::Duration;

    pub(crate) fn span(
        id: u64,
        parent: u64,
        name: &str,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
        error: bool,
        end: SystemTime,
    ) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: false,
            span_kind: kind,
            name: Cow::Owned(name.to_string()),
            start_time: end - Duration::from_millis(5),
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if error {
                Status::error("boom")
            } else {
                Status::Unset
            },
            instrumentation_scope: Default::default(),
        }
    }

    fn facts() -> ChunkFacts<'static> {
        ChunkFacts {
            service: "web",
            origin: None,
        }
    }

    #[test]
    fn top_level_measured_and_kinds_are_counted_others_not() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_005);
        let mut c = Concentrator::default();
        let spans = vec![
            span(1, 0, "GET /users", SpanKind::Server, vec![], false, now),
            // Same service as its parent, internal: not eligible.
            span(2, 1, "work", SpanKind::Internal, vec![], false, now),
            // Measured.
            span(
                3,
                1,
                "op",
                SpanKind::Internal,
                vec![KeyValue::new("_dd.measured", 1i64)],
                false,
                now,
            ),
            // Another service: top-level.
            span(
                4,
                1,
                "SELECT 1",
                SpanKind::Internal,
                vec![KeyValue::new(SERVICE_NAME, "postgres")],
                true,
                now,
            ),
        ];
        c.add_chunk(&spans, facts());
        let buckets = c.take(now, true);
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].start, 1_700_000_000 * 1_000_000_000);
        let mut groups: Vec<(String, u64, u64, u64)> = buckets[0]
            .groups
            .iter()
            .map(|(k, g)| (k.resource.clone(), g.hits, g.top_level_hits, g.errors))
            .collect();
        groups.sort();
        assert_eq!(
            groups,
            vec![
                ("GET /users".to_string(), 1, 1, 0),
                ("SELECT 1".to_string(), 1, 1, 1),
                ("op".to_string(), 1, 0, 0),
            ]
        );
        assert!(c.is_empty());
    }

    #[test]
    fn open_buckets_wait_and_the_payload_decodes() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_005);
        let mut c = Concentrator::default();
        let attrs = vec![
            KeyValue::new("http.status_code", "200"),
            KeyValue::new("http.method", "GET"),
            KeyValue::new("http.route", "/users/{id}"),
            KeyValue::new(SPAN_TYPE, "web"),
        ];
        c.add_chunk(
            &[span(
                1,
                0,
                "GET /users/{id}",
                SpanKind::Server,
                attrs,
                false,
                now,
            )],
            facts(),
        );
        assert!(c.take(now, false).is_empty(), "the bucket is still open");
        let later = now + BUCKET;
        let buckets = c.take(later, false);
        let header = Header {
            hostname: "",
            env: "prod",
            version: "1.0",
            service: "web",
            runtime_id: "r",
            sequence: 1,
        };
        let body = encode(&header, buckets);
        let value = rmpv::decode::read_value(&mut body.as_slice()).unwrap();
        let text = value.to_string();
        for part in [
            "\"Env\": \"prod\"",
            "\"HTTPStatusCode\": 200",
            "\"HTTPMethod\": \"GET\"",
            "\"HTTPEndpoint\": \"/users/{id}\"",
            "\"Type\": \"web\"",
            "\"Hits\": 1",
            "\"IsTraceRoot\": 1",
        ] {
            assert!(text.contains(part), "{part} missing in {text}");
        }
        let ok = value["Stats"][0]["Stats"][0]["OkSummary"]
            .as_slice()
            .unwrap();
        let sketch = DDSketch::from_encoded(ok).unwrap();
        assert_eq!(sketch.count(), 1.0);
    }

    #[test]
    fn peer_tags_follow_the_agents_order_and_group_client_spans() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_005);
        let mut c = Concentrator::default();
        c.set_peer_tags(vec![
            "db.instance".to_string(),
            "out.host".to_string(),
            "peer.service".to_string(),
        ]);
        let client = |id: u64, host: &str| {
            span(
                id,
                1,
                "SELECT 1",
                SpanKind::Client,
                vec![
                    // Not a peer tag, of the same length as one (`out.host`).
                    KeyValue::new("db.user1", "u"),
                    KeyValue::new("peer.service", "postgres"),
                    KeyValue::new("out.host", host.to_string()),
                    KeyValue::new("db.instance", "notes"),
                    // A second value of a key counts as no more than the first.
                    KeyValue::new("out.host", "ignored"),
                ],
                false,
                now,
            )
        };
        let spans = vec![
            span(1, 0, "GET /notes", SpanKind::Server, vec![], false, now),
            client(2, "db1"),
            client(3, "db1"),
            client(4, "db2"),
        ];
        c.add_chunk(&spans, facts());
        let buckets = c.take(now, true);
        let mut groups: Vec<(Vec<String>, u64)> = buckets[0]
            .groups
            .iter()
            .filter(|(k, _)| k.span_kind == "client")
            .map(|(k, g)| (k.peer_tags.clone(), g.hits))
            .collect();
        groups.sort();
        let tags = |host: &str| {
            vec![
                "db.instance:notes".to_string(),
                format!("out.host:{host}"),
                "peer.service:postgres".to_string(),
            ]
        };
        assert_eq!(groups, vec![(tags("db1"), 2), (tags("db2"), 1)]);
    }
}
