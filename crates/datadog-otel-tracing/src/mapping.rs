//! OpenTelemetry spans with Datadog's semantics: what Datadog's tracers do to a span made
//! through the OpenTelemetry API (and the Agent to an OTLP span), applied by [`apply`] to every
//! finished span before its chunk is counted in the stats and encoded, so that the stats, the
//! sampler's view and the payload agree:
//!
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
//! - span events go in the `events` tag, as JSON: `[{"name", "time_unix_nano", "attributes"}]`;
//! - a failed span (status error) takes `error.message`, `error.type` and `error.stack` from the
//!   `exception.message`, `exception.type` and `exception.stacktrace` of its `exception` events
//!   (the last one wins), unless all three are set on the span already.

use crate::spans::{OPERATION_NAME, RESOURCE_NAME, SERVICE_NAME, SPAN_TYPE};
use opentelemetry::trace::{Event, SpanKind, Status};
use opentelemetry::{Array, Key, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

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
    if !span.events.is_empty() {
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
    if n < 2 {
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
