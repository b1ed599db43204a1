//! OpenTelemetry spans with Datadog's semantics: what Datadog's tracers do to a span made
//! through the OpenTelemetry API (and the Agent to an OTLP span), applied by [`apply`] to every
//! finished span before its chunk is counted in the stats and encoded, so that the stats, the
//! sampler's view and the payload agree:
//!
//! - a span that starts before 1970 starts at the epoch (the encoder cannot write it);
//! - an attribute set more than once keeps its last value (the SDK keeps every
//!   `set_attribute`, and the Agent would keep whichever the payload lists last);
//! - the reserved attributes `operation.name`, `service.name`, `resource.name` and `span.type`
//!   set the span's fields, whatever their value type (written as text), and are not sent as
//!   tags;
//! - without `operation.name`, the operation name comes from OpenTelemetry's semantic
//!   conventions and the span kind ([`operation_name`]: `http.server.request`,
//!   `postgresql.query`, `kafka.receive`, …, down to the kind itself: `internal`, `producer`);
//! - `analytics.event` becomes the metric `_dd1.sr.eausr`, 1 or 0 (a boolean, or text that Go's
//!   `strconv.ParseBool` accepts, as Datadog's tracers read it; anything else is dropped);
//! - `http.response.status_code` is sent as `http.status_code`, and `http.status_code` always as
//!   text (Datadog reads it as a tag);
//! - arrays are flattened into `key.0`, `key.1`, …: numbers become metrics, strings and
//!   booleans tags;
//! - span events go in the `events` tag, as JSON: `[{"name", "time_unix_nano", "attributes"}]`,
//!   except on the spans of `tracing` (instrumentation scope [`TRACING_SCOPE`]), whose events
//!   are their log lines, sent as logs with the span's ids already (repeating them in every span
//!   would double them, and their `error` fields would overwrite the span's error tags);
//! - a failed span (status error) takes `error.message`, `error.type` and `error.stack` from the
//!   `exception.message`, `exception.type` and `exception.stacktrace` of its `exception` events
//!   (the last one wins), unless all three are set on the span already.

use crate::spans::{OPERATION_NAME, RESOURCE_NAME, SERVICE_NAME, SPAN_TYPE};
use opentelemetry::trace::{Event, SpanKind, Status};
use opentelemetry::{Array, Key, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

/// The instrumentation scope of the spans the `tracing` layer makes.
pub(crate) const TRACING_SCOPE: &str = "datadog-otel-tracing/tracing";
/// The attribute that marks a span for App Analytics (Datadog's legacy trace search).
pub(crate) const ANALYTICS_EVENT: &str = "analytics.event";
/// The metric `analytics.event` becomes.
pub(crate) const ANALYTICS_METRIC: &str = "_dd1.sr.eausr";
/// The tag holding the span's events as JSON.
pub(crate) const EVENTS: &str = "events";
/// The status code tag Datadog reads.
const HTTP_STATUS_CODE: &str = "http.status_code";
/// OpenTelemetry's name for it (semantic conventions 1.21 and later).
const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// The Datadog error tags and the `exception` event attributes they come from.
const ERROR_FROM_EXCEPTION: [(&str, &str); 3] = [
    ("exception.message", "error.message"),
    ("exception.type", "error.type"),
    ("exception.stacktrace", "error.stack"),
];

/// Maps `span` in place (see the module docs).
pub(crate) fn apply(span: &mut SpanData) {
    // A start before 1970 (a timestamp given through the OpenTelemetry API) would panic in
    // `opentelemetry-datadog`'s encoder: it starts at the epoch instead, its end no earlier.
    if span.start_time < UNIX_EPOCH {
        span.start_time = UNIX_EPOCH;
        span.end_time = span.end_time.max(UNIX_EPOCH);
    }
    keep_last_values(&mut span.attributes);
    if span.attributes.iter().any(needs_rewrite) {
        rewrite_attributes(&mut span.attributes);
    }
    let explicit = |kv: &KeyValue| kv.key.as_str() == OPERATION_NAME && kv.value.as_str() != "";
    if !span.attributes.iter().any(explicit) {
        // An empty one counts as none.
        span.attributes
            .retain(|kv| kv.key.as_str() != OPERATION_NAME);
        let name = operation_name(&span.span_kind, &span.attributes);
        span.attributes.push(KeyValue::new(OPERATION_NAME, name));
    }
    if !span.events.is_empty() && span.instrumentation_scope.name() != TRACING_SCOPE {
        let events = events_json(&span.events);
        span.attributes.retain(|kv| kv.key.as_str() != EVENTS);
        span.attributes.push(KeyValue::new(EVENTS, events));
        if matches!(span.status, Status::Error { .. }) {
            error_from_exceptions(&mut span.attributes, &span.events);
        }
    }
}

/// Removes every value of an attribute but its last, keeping the order of those left.
fn keep_last_values(attributes: &mut Vec<KeyValue>) {
    let n = attributes.len();
    // The common case, no key twice, is told without allocating for spans of usual size.
    let repeated = if n <= 32 {
        (1..n).any(|i| {
            let key = attributes[i].key.as_str();
            attributes[..i].iter().any(|kv| kv.key.as_str() == key)
        })
    } else {
        true
    };
    if !repeated {
        return;
    }
    let mut keep = vec![true; n];
    let mut seen = std::collections::HashSet::with_capacity(n);
    for (i, kv) in attributes.iter().enumerate().rev() {
        keep[i] = seen.insert(kv.key.as_str());
    }
    if keep.iter().all(|k| *k) {
        return;
    }
    let mut i = 0;
    attributes.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

fn is_reserved(key: &str) -> bool {
    matches!(
        key,
        OPERATION_NAME | SERVICE_NAME | RESOURCE_NAME | SPAN_TYPE
    )
}

/// Whether an attribute is not sent as it is.
fn needs_rewrite(kv: &KeyValue) -> bool {
    let key = kv.key.as_str();
    match &kv.value {
        Value::Array(_) => true,
        Value::String(_) => matches!(key, ANALYTICS_EVENT | HTTP_RESPONSE_STATUS_CODE),
        _ => {
            is_reserved(key)
                || matches!(
                    key,
                    ANALYTICS_EVENT | HTTP_RESPONSE_STATUS_CODE | HTTP_STATUS_CODE
                )
        }
    }
}

fn rewrite_attributes(attributes: &mut Vec<KeyValue>) {
    let has_status_code = attributes
        .iter()
        .any(|kv| kv.key.as_str() == HTTP_STATUS_CODE);
    let before = std::mem::take(attributes);
    attributes.reserve(before.len() + 4);
    for kv in before {
        let key = kv.key.as_str();
        if is_reserved(key) || key == HTTP_STATUS_CODE {
            let text = text_of(&kv.value);
            attributes.push(KeyValue::new(kv.key, text));
        } else if key == ANALYTICS_EVENT {
            if let Some(on) = parse_bool(&kv.value) {
                attributes.push(KeyValue::new(ANALYTICS_METRIC, if on { 1.0 } else { 0.0 }));
            }
        } else if key == HTTP_RESPONSE_STATUS_CODE {
            // The older name, when the span has both, is the one Datadog's tracers keep.
            if !has_status_code {
                attributes.push(KeyValue::new(HTTP_STATUS_CODE, text_of(&kv.value)));
            }
        } else if let Value::Array(array) = kv.value {
            flatten(kv.key, array, attributes);
        } else {
            attributes.push(kv);
        }
    }
}

/// A value as the text Datadog shows (`200`, `true`, `4.2`, strings as they are).
fn text_of(value: &Value) -> opentelemetry::StringValue {
    match value {
        Value::String(s) => s.clone(),
        other => other.as_str().into_owned().into(),
    }
}

/// Go's `strconv.ParseBool`, the reading Datadog's tracers give `analytics.event`.
fn parse_bool(value: &Value) -> Option<bool> {
    if let Value::Bool(b) = value {
        return Some(*b);
    }
    match value.as_str().as_ref() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `key.0`, `key.1`, … for each element of `array`, typed as the elements are.
fn flatten(key: Key, array: Array, out: &mut Vec<KeyValue>) {
    let name = |i: usize| format!("{}.{i}", key.as_str());
    match array {
        Array::Bool(items) => out.extend(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| KeyValue::new(name(i), v)),
        ),
        Array::I64(items) => out.extend(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| KeyValue::new(name(i), v)),
        ),
        Array::F64(items) => out.extend(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| KeyValue::new(name(i), v)),
        ),
        Array::String(items) => out.extend(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| KeyValue::new(name(i), v)),
        ),
        // A kind of array this version does not know: sent as its text.
        other => out.push(KeyValue::new(key, other.to_string())),
    }
}

/// The Datadog operation name of a span without `operation.name`, from OpenTelemetry's
/// semantic conventions and the span kind, by the rules Datadog's tracers and Agent share
/// (the Agent's "operation name v2"). The first rule that applies gives the name:
///
/// | attributes | kind | name |
/// |---|---|---|
/// | `http.request.method` or `http.method` | server / client | `http.server.request` / `http.client.request` |
/// | `db.system` (or `db.system.name`) | client | `<db.system>.query` |
/// | `messaging.system` and `messaging.operation` (or `.type`) | not internal | `<system>.<operation>` |
/// | `rpc.system` = `aws-api` | client | `aws.<rpc.service>.request`, or `aws.client.request` |
/// | `rpc.system` | client / server | `<rpc.system>.client.request` / `.server.request` |
/// | `faas.invoked_provider` and `faas.invoked_name` | client | `<provider>.<name>.invoke` |
/// | `faas.trigger` | server | `<trigger>.invoke` |
/// | `graphql.operation.type` | any | `graphql.server.request` |
/// | `network.protocol.name` | server / client | `<protocol>.server.request` / `.client.request` |
/// | none of these | server / client | `server.request` / `client.request` |
/// | none of these | other | the kind: `internal`, `producer`, `consumer` |
///
/// Names built from attribute values are lowercased.
pub(crate) fn operation_name(kind: &SpanKind, attributes: &[KeyValue]) -> String {
    let get = |key: &str| -> Option<Cow<'_, str>> {
        attributes
            .iter()
            .rev()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str())
            .filter(|v| !v.is_empty())
    };
    let first = |keys: &[&str]| keys.iter().find_map(|k| get(k));
    let (client, server) = (
        matches!(kind, SpanKind::Client),
        matches!(kind, SpanKind::Server),
    );

    if first(&["http.request.method", "http.method"]).is_some() {
        if client {
            return "http.client.request".into();
        }
        if server {
            return "http.server.request".into();
        }
    }
    if client {
        if let Some(db) = first(&["db.system", "db.system.name"]) {
            return format!("{db}.query").to_lowercase();
        }
    }
    if !matches!(kind, SpanKind::Internal) {
        let operation = first(&["messaging.operation", "messaging.operation.type"]);
        if let (Some(system), Some(operation)) = (get("messaging.system"), operation) {
            return format!("{system}.{operation}").to_lowercase();
        }
    }
    if let Some(rpc) = get("rpc.system") {
        if client && rpc == "aws-api" {
            return match get("rpc.service") {
                Some(service) => format!("aws.{service}.request").to_lowercase(),
                None => "aws.client.request".into(),
            };
        }
        if client {
            return format!("{rpc}.client.request").to_lowercase();
        }
        if server {
            return format!("{rpc}.server.request").to_lowercase();
        }
    }
    if client {
        if let (Some(provider), Some(name)) =
            (get("faas.invoked_provider"), get("faas.invoked_name"))
        {
            return format!("{provider}.{name}.invoke").to_lowercase();
        }
    }
    if server {
        if let Some(trigger) = get("faas.trigger") {
            return format!("{trigger}.invoke").to_lowercase();
        }
    }
    if get("graphql.operation.type").is_some() {
        return "graphql.server.request".into();
    }
    if client || server {
        let side = if server { "server" } else { "client" };
        return match get("network.protocol.name") {
            Some(protocol) => format!("{protocol}.{side}.request").to_lowercase(),
            None => format!("{side}.request"),
        };
    }
    crate::spans::kind_name(kind).to_string()
}

fn nanos_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// An attribute value as JSON: typed scalars, arrays as arrays.
fn json_value(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    let number = |f: f64| serde_json::Number::from_f64(f).map_or(J::Null, J::Number);
    match value {
        Value::Bool(b) => J::Bool(*b),
        Value::I64(n) => J::from(*n),
        Value::F64(f) => number(*f),
        Value::String(s) => J::from(s.as_str()),
        Value::Array(Array::Bool(items)) => items.iter().map(|b| J::Bool(*b)).collect(),
        Value::Array(Array::I64(items)) => items.iter().map(|n| J::from(*n)).collect(),
        Value::Array(Array::F64(items)) => items.iter().map(|f| number(*f)).collect(),
        Value::Array(Array::String(items)) => items.iter().map(|s| J::from(s.as_str())).collect(),
        other => J::from(other.as_str().into_owned()),
    }
}

/// The `events` tag: each event's name, time in nanoseconds since the epoch and, when it has
/// any, attributes (an attribute given twice keeps its last value).
fn events_json(events: &[Event]) -> String {
    let list: Vec<serde_json::Value> = events
        .iter()
        .map(|event| {
            let mut object = serde_json::Map::new();
            object.insert("name".into(), event.name.as_ref().into());
            object.insert(
                "time_unix_nano".into(),
                nanos_since_epoch(event.timestamp).into(),
            );
            if !event.attributes.is_empty() {
                let attributes: serde_json::Map<String, serde_json::Value> = event
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.as_str().to_string(), json_value(&kv.value)))
                    .collect();
                object.insert("attributes".into(), attributes.into());
            }
            serde_json::Value::Object(object)
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

/// The error tags of a failed span from its `exception` events (see the module docs).
fn error_from_exceptions(attributes: &mut Vec<KeyValue>, events: &[Event]) {
    let set =
        |attributes: &Vec<KeyValue>, key: &str| attributes.iter().any(|kv| kv.key.as_str() == key);
    if ERROR_FROM_EXCEPTION
        .iter()
        .all(|(_, tag)| set(attributes, tag))
    {
        return;
    }
    for event in events
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case("exception"))
    {
        for (from, tag) in ERROR_FROM_EXCEPTION {
            let Some(value) = event
                .attributes
                .iter()
                .rev()
                .find(|kv| kv.key.as_str() == from)
            else {
                continue;
            };
            attributes.retain(|kv| kv.key.as_str() != tag);
            attributes.push(KeyValue::new(tag, text_of(&value.value)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::trace::SpanEvents;
    use std::time::Duration;

    fn span(kind: SpanKind, attributes: Vec<KeyValue>) -> SpanData {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1u128),
                SpanId::from(1u64),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: kind,
            name: "otel_span_name".into(),
            start_time: start,
            end_time: start + Duration::from_millis(1),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    /// The span's attributes as sorted `key=value` lines (values in their Debug form, so that
    /// types show: `I64(1)`, `String(Owned("x"))` …).
    fn attrs(span: &SpanData) -> Vec<String> {
        let mut out: Vec<String> = span
            .attributes
            .iter()
            .map(|kv| format!("{}={:?}", kv.key.as_str(), kv.value))
            .collect();
        out.sort();
        out
    }

    fn value<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn text(span: &SpanData, key: &str) -> Option<String> {
        value(span, key).map(|v| match v {
            Value::String(s) => s.as_str().to_string(),
            other => panic!("{key} is not a string: {other:?}"),
        })
    }

    /// The suite's cases (test_otel_span_methods.py, test_otel_span_operation_name) and a few
    /// more of the rules.
    #[test]
    fn operation_names_follow_the_semantic_conventions_and_the_kind() {
        use SpanKind::*;
        type Case = (&'static str, SpanKind, Vec<(&'static str, &'static str)>);
        let cases: Vec<Case> = vec![
            (
                "http.server.request",
                Server,
                vec![("http.request.method", "GET")],
            ),
            (
                "http.client.request",
                Client,
                vec![("http.request.method", "GET")],
            ),
            ("http.client.request", Client, vec![("http.method", "GET")]),
            ("redis.query", Client, vec![("db.system", "Redis")]),
            (
                "postgresql.query",
                Client,
                vec![("db.system.name", "PostgreSQL")],
            ),
            (
                "kafka.receive",
                Client,
                vec![
                    ("messaging.system", "Kafka"),
                    ("messaging.operation", "Receive"),
                ],
            ),
            (
                "kafka.receive",
                Server,
                vec![
                    ("messaging.system", "Kafka"),
                    ("messaging.operation", "Receive"),
                ],
            ),
            (
                "kafka.receive",
                Producer,
                vec![
                    ("messaging.system", "Kafka"),
                    ("messaging.operation", "Receive"),
                ],
            ),
            (
                "kafka.receive",
                Consumer,
                vec![
                    ("messaging.system", "Kafka"),
                    ("messaging.operation", "Receive"),
                ],
            ),
            (
                "rabbitmq.publish",
                Producer,
                vec![
                    ("messaging.system", "RabbitMQ"),
                    ("messaging.operation.type", "publish"),
                ],
            ),
            (
                "aws.s3.request",
                Client,
                vec![("rpc.system", "aws-api"), ("rpc.service", "S3")],
            ),
            (
                "aws.client.request",
                Client,
                vec![("rpc.system", "aws-api")],
            ),
            ("grpc.client.request", Client, vec![("rpc.system", "GRPC")]),
            ("grpc.server.request", Server, vec![("rpc.system", "GRPC")]),
            (
                "aws.my-function.invoke",
                Client,
                vec![
                    ("faas.invoked_provider", "aws"),
                    ("faas.invoked_name", "My-Function"),
                ],
            ),
            (
                "datasource.invoke",
                Server,
                vec![("faas.trigger", "Datasource")],
            ),
            (
                "graphql.server.request",
                Server,
                vec![("graphql.operation.type", "query")],
            ),
            (
                "graphql.server.request",
                Internal,
                vec![("graphql.operation.type", "query")],
            ),
            (
                "amqp.server.request",
                Server,
                vec![("network.protocol.name", "Amqp")],
            ),
            (
                "amqp.client.request",
                Client,
                vec![("network.protocol.name", "Amqp")],
            ),
            ("server.request", Server, vec![]),
            ("client.request", Client, vec![]),
            ("internal", Internal, vec![]),
            ("consumer", Consumer, vec![]),
            ("producer", Producer, vec![]),
            // Rules that need a kind do not apply without it.
            (
                "internal",
                Internal,
                vec![("http.request.method", "GET"), ("db.system", "redis")],
            ),
            (
                "internal",
                Internal,
                vec![
                    ("messaging.system", "Kafka"),
                    ("messaging.operation", "Receive"),
                ],
            ),
            ("server.request", Server, vec![("db.system", "redis")]),
            // An empty value counts as none.
            ("client.request", Client, vec![("db.system", "")]),
        ];
        for (expected, kind, pairs) in cases {
            let attributes: Vec<KeyValue> =
                pairs.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect();
            assert_eq!(
                operation_name(&kind, &attributes),
                expected,
                "{kind:?} {pairs:?}"
            );
        }
    }

    #[test]
    fn an_explicit_operation_name_wins_and_an_empty_one_does_not() {
        let mut s = span(
            SpanKind::Server,
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new(OPERATION_NAME, "actix_web.request"),
            ],
        );
        apply(&mut s);
        assert_eq!(
            text(&s, OPERATION_NAME).as_deref(),
            Some("actix_web.request")
        );

        let mut s = span(
            SpanKind::Server,
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new(OPERATION_NAME, ""),
            ],
        );
        apply(&mut s);
        assert_eq!(
            text(&s, OPERATION_NAME).as_deref(),
            Some("http.server.request")
        );
        let names = s
            .attributes
            .iter()
            .filter(|kv| kv.key.as_str() == OPERATION_NAME)
            .count();
        assert_eq!(names, 1);
    }

    /// As the suite's test_otel_span_reserved_attributes_overrides sets them, and of other types.
    #[test]
    fn reserved_attributes_become_text_and_analytics_event_a_metric() {
        let mut s = span(
            SpanKind::Server,
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new(RESOURCE_NAME, "new.name"),
                KeyValue::new(OPERATION_NAME, "overriden.name"),
                KeyValue::new(SERVICE_NAME, 42i64),
                KeyValue::new(SPAN_TYPE, true),
                KeyValue::new(ANALYTICS_EVENT, "true"),
            ],
        );
        apply(&mut s);
        assert_eq!(
            attrs(&s),
            [
                "_dd1.sr.eausr=F64(1.0)",
                "http.request.method=String(Static(\"GET\"))",
                "operation.name=String(Static(\"overriden.name\"))",
                "resource.name=String(Static(\"new.name\"))",
                "service.name=String(Owned(\"42\"))",
                "span.type=String(Owned(\"true\"))",
            ]
        );
    }

    #[test]
    fn analytics_event_reads_like_go_parse_bool() {
        let cases: Vec<(Value, Option<f64>)> = vec![
            (true.into(), Some(1.0)),
            (false.into(), Some(0.0)),
            (1i64.into(), Some(1.0)),
            (0i64.into(), Some(0.0)),
            ("2".into(), None),
            ("something-else".into(), None),
            ("fAlse".into(), None),
            ("trUe".into(), None),
            ("".into(), None),
        ];
        let texts = [
            ("true", 1.0),
            ("TRUE", 1.0),
            ("True", 1.0),
            ("t", 1.0),
            ("T", 1.0),
            ("1", 1.0),
            ("false", 0.0),
            ("FALSE", 0.0),
            ("False", 0.0),
            ("f", 0.0),
            ("F", 0.0),
            ("0", 0.0),
        ];
        let cases = cases.into_iter().chain(
            texts
                .into_iter()
                .map(|(t, metric)| (Value::from(t), Some(metric))),
        );
        for (input, expected) in cases {
            let mut s = span(
                SpanKind::Server,
                vec![KeyValue::new(ANALYTICS_EVENT, input.clone())],
            );
            apply(&mut s);
            let metric = value(&s, ANALYTICS_METRIC).map(|v| match v {
                Value::F64(f) => *f,
                other => panic!("{other:?}"),
            });
            assert_eq!(metric, expected, "{input:?}");
            assert!(value(&s, ANALYTICS_EVENT).is_none(), "{input:?}");
        }
    }

    #[test]
    fn status_codes_are_text_under_datadogs_name() {
        let mut s = span(
            SpanKind::Server,
            vec![KeyValue::new("http.response.status_code", 200i64)],
        );
        apply(&mut s);
        assert_eq!(text(&s, "http.status_code").as_deref(), Some("200"));
        assert!(value(&s, "http.response.status_code").is_none());

        let mut s = span(
            SpanKind::Server,
            vec![KeyValue::new("http.status_code", 503i64)],
        );
        apply(&mut s);
        assert_eq!(text(&s, "http.status_code").as_deref(), Some("503"));

        // Both: the Datadog name is kept, the other dropped.
        let mut s = span(
            SpanKind::Server,
            vec![
                KeyValue::new("http.response.status_code", 201i64),
                KeyValue::new("http.status_code", "200"),
            ],
        );
        apply(&mut s);
        assert_eq!(text(&s, "http.status_code").as_deref(), Some("200"));
        assert!(value(&s, "http.response.status_code").is_none());
    }

    #[test]
    fn arrays_are_flattened_with_their_types() {
        let mut s = span(
            SpanKind::Producer,
            vec![
                KeyValue::new(
                    "array_val_str",
                    Value::Array(Array::String(vec!["val1".into(), "val2".into()])),
                ),
                KeyValue::new("array_val_int", Value::Array(vec![10i64, 20].into())),
                KeyValue::new("array_val_bool", Value::Array(vec![true, false].into())),
                KeyValue::new("array_val_double", Value::Array(vec![10.1, 20.2].into())),
                KeyValue::new("empty", Value::Array(Vec::<i64>::new().into())),
            ],
        );
        apply(&mut s);
        assert_eq!(
            attrs(&s),
            [
                "array_val_bool.0=Bool(true)",
                "array_val_bool.1=Bool(false)",
                "array_val_double.0=F64(10.1)",
                "array_val_double.1=F64(20.2)",
                "array_val_int.0=I64(10)",
                "array_val_int.1=I64(20)",
                "array_val_str.0=String(Static(\"val1\"))",
                "array_val_str.1=String(Static(\"val2\"))",
                "operation.name=String(Owned(\"producer\"))",
            ]
        );
    }

    #[test]
    fn a_repeated_attribute_keeps_its_last_value() {
        let mut s = span(
            SpanKind::Internal,
            vec![
                KeyValue::new("a", "first"),
                KeyValue::new("b", 1i64),
                KeyValue::new("a", "second"),
                KeyValue::new(SERVICE_NAME, "one"),
                KeyValue::new(SERVICE_NAME, "two"),
            ],
        );
        apply(&mut s);
        assert_eq!(
            attrs(&s),
            [
                "a=String(Static(\"second\"))",
                "b=I64(1)",
                "operation.name=String(Owned(\"internal\"))",
                "service.name=String(Static(\"two\"))",
            ]
        );
    }

    fn event(name: &'static str, nanos: u64, attributes: Vec<KeyValue>) -> Event {
        Event::new(
            name,
            UNIX_EPOCH + Duration::from_nanos(nanos),
            attributes,
            0,
        )
    }

    /// As the suite's test_otel_add_event_meta_serialization adds them.
    #[test]
    fn events_become_one_json_tag() {
        let mut s = span(SpanKind::Internal, vec![]);
        s.events.events = vec![
            event("first_event", 1_730_393_556_000_000_000, vec![]),
            event(
                "second_event",
                1_000,
                vec![
                    KeyValue::new("int_val", 1i64),
                    KeyValue::new("string_val", "2"),
                    KeyValue::new("int_array", Value::Array(vec![3i64, 4].into())),
                    KeyValue::new(
                        "string_array",
                        Value::Array(Array::String(vec!["5".into(), "6".into()])),
                    ),
                    KeyValue::new("double", 0.5),
                    KeyValue::new("flag", true),
                ],
            ),
        ];
        apply(&mut s);
        assert_eq!(
            text(&s, EVENTS).as_deref(),
            Some(concat!(
                r#"[{"name":"first_event","time_unix_nano":1730393556000000000},"#,
                r#"{"attributes":{"double":0.5,"flag":true,"int_array":[3,4],"int_val":1,"#,
                r#""string_array":["5","6"],"string_val":"2"},"name":"second_event","time_unix_nano":1000}]"#,
            ))
        );
        assert!(s.status == Status::Unset);
        assert!(value(&s, "error.message").is_none());
    }

    /// The events of a `tracing` span are its log lines: not sent again, and no error tags
    /// from them.
    #[test]
    fn the_events_of_tracing_spans_stay_logs() {
        let mut s = span(SpanKind::Server, vec![KeyValue::new("error.type", "Mine")]);
        s.instrumentation_scope =
            opentelemetry::InstrumentationScope::builder(TRACING_SCOPE).build();
        s.events.events = vec![event(
            "exception",
            1,
            vec![KeyValue::new("exception.message", "from a log line")],
        )];
        s.status = Status::error("");
        apply(&mut s);
        assert_eq!(
            attrs(&s),
            [
                "error.type=String(Static(\"Mine\"))",
                "operation.name=String(Owned(\"server.request\"))",
            ]
        );
    }

    /// As the suite's test_otel_record_exception_attributes_serialization records them: the
    /// last exception's message wins, the stack stays from the one that had it.
    #[test]
    fn a_failed_span_takes_its_error_tags_from_its_exceptions() {
        let events = vec![
            event(
                "exception",
                1,
                vec![
                    KeyValue::new("exception.type", "parametric::Exception"),
                    KeyValue::new("exception.message", "woof1"),
                    KeyValue::new("exception.stacktrace", "stacktrace1"),
                ],
            ),
            event(
                "non_exception_event",
                2,
                vec![KeyValue::new("exception.stacktrace", "non-error")],
            ),
            event(
                "exception",
                3,
                vec![KeyValue::new("exception.message", "message override")],
            ),
        ];
        let mut s = span(SpanKind::Internal, vec![]);
        s.events.events = events.clone();
        s.status = Status::error("error_desc");
        apply(&mut s);
        assert_eq!(
            text(&s, "error.message").as_deref(),
            Some("message override")
        );
        assert_eq!(
            text(&s, "error.type").as_deref(),
            Some("parametric::Exception")
        );
        assert_eq!(text(&s, "error.stack").as_deref(), Some("stacktrace1"));

        // Not failed: the events are only events.
        let mut s = span(SpanKind::Internal, vec![]);
        s.events.events = events.clone();
        apply(&mut s);
        assert!(value(&s, "error.message").is_none());
        assert!(value(&s, EVENTS).is_some());

        // All three set on the span already: kept.
        let mut s = span(
            SpanKind::Internal,
            vec![
                KeyValue::new("error.message", "mine"),
                KeyValue::new("error.type", "MyError"),
                KeyValue::new("error.stack", "here"),
            ],
        );
        s.events.events = events;
        s.status = Status::error("error_desc");
        apply(&mut s);
        assert_eq!(text(&s, "error.message").as_deref(), Some("mine"));
        assert_eq!(text(&s, "error.type").as_deref(), Some("MyError"));
    }

    #[test]
    fn a_start_before_1970_starts_at_the_epoch() {
        let mut s = span(SpanKind::Internal, vec![]);
        s.start_time = UNIX_EPOCH - Duration::from_secs(5);
        s.end_time = UNIX_EPOCH - Duration::from_secs(1);
        apply(&mut s);
        assert_eq!((s.start_time, s.end_time), (UNIX_EPOCH, UNIX_EPOCH));
    }

    /// A span as the library's own integrations make it (explicit fields, string status code)
    /// is left as it is, but for the operation name it already has.
    #[test]
    fn an_integration_span_is_unchanged() {
        let attributes = vec![
            KeyValue::new(OPERATION_NAME, "actix_web.request"),
            KeyValue::new(SPAN_TYPE, "web"),
            KeyValue::new("http.status_code", "200"),
            KeyValue::new("http.method", "GET"),
            KeyValue::new("code.lineno", 12i64),
        ];
        let mut s = span(SpanKind::Server, attributes.clone());
        apply(&mut s);
        assert_eq!(s.attributes, attributes);
    }
}
