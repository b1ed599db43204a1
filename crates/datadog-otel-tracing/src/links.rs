//! Span links, as Datadog's tracers send them.
//!
//! The v0.5 payload has no field for links: Datadog's tracers then write a span's links as
//! JSON in its `_dd.span_links` meta tag (dd-trace-py's `SpanLink.to_dict`, which the Agent and
//! Datadog's tools read):
//!
//! ```json
//! [{"trace_id":"<32 hex>","span_id":"<16 hex>","attributes":{"k":"v","list.0":"a"},
//!   "dropped_attributes_count":1,"tracestate":"dd=s:1;p:…","flags":1}]
//! ```
//!
//! - `trace_id` is the whole 128-bit id, `span_id` the 64-bit one, both lowercase hex;
//! - `attributes` (left out when there are none) are strings: arrays are flattened to
//!   `key.0`, `key.1`, …, booleans are `true` / `false`;
//! - `dropped_attributes_count` only when attributes were dropped;
//! - `tracestate` (left out when the linked context has none) is the linked context's W3C
//!   `tracestate` in the form this crate propagates it (the `dd` member first);
//! - `flags` is the W3C sampled flag: 1 when the linked context's priority keeps it, else 0.
//!
//! Links come from OpenTelemetry (`Span::add_link`, `SpanBuilder::with_links`) and from
//! extraction ([`crate::propagation::ExtractedLinks`]): [`add_extracted_links`] adds those to
//! the local root span started on an extracted context.

use crate::propagation::{w3c_tracestate, DdState, ExtractedLinks};
use opentelemetry::trace::{Link, SpanContext, TraceId};
use opentelemetry::{Array, Context, KeyValue, Value};
use opentelemetry_sdk::trace::Span;
use serde_json::{Map, Value as Json};
#[cfg(test)]
use {
    opentelemetry_sdk::error::OTelSdkResult,
    opentelemetry_sdk::trace::{SpanData, SpanProcessor},
    std::time::Duration,
};

/// The meta tag holding a span's links.
pub(crate) const SPAN_LINKS: &str = "_dd.span_links";

/// The `_dd.span_links` tag of a span with these links (`None` without any to a trace: a
/// link to a trace without a span, as a restart from a context without parent makes, is kept
/// with span id 0).
pub(crate) fn span_links_tag(links: &[Link]) -> Option<KeyValue> {
    let list: Vec<Json> = links
        .iter()
        .filter(|link| link.span_context.trace_id() != TraceId::INVALID)
        .map(link_json)
        .collect();
    if list.is_empty() {
        return None;
    }
    Some(KeyValue::new(SPAN_LINKS, Json::Array(list).to_string()))
}

/// One link as Datadog's JSON object.
fn link_json(link: &Link) -> Json {
    let sc = &link.span_context;
    let mut out = Map::new();
    out.insert(
        "trace_id".into(),
        Json::String(format!("{:032x}", sc.trace_id())),
    );
    out.insert(
        "span_id".into(),
        Json::String(format!("{:016x}", sc.span_id())),
    );
    if !link.attributes.is_empty() {
        let mut attributes = Map::new();
        for kv in &link.attributes {
            flatten(kv.key.as_str(), &kv.value, &mut attributes);
        }
        out.insert("attributes".into(), Json::Object(attributes));
    }
    if link.dropped_attributes_count > 0 {
        out.insert(
            "dropped_attributes_count".into(),
            Json::from(link.dropped_attributes_count),
        );
    }
    if !sc.trace_state().header().is_empty() {
        out.insert("tracestate".into(), Json::String(w3c_tracestate(sc)));
    }
    out.insert("flags".into(), Json::from(flags(sc)));
    Json::Object(out)
}

/// The W3C sampled flag of a linked context: its priority decides when it has one.
fn flags(sc: &SpanContext) -> u8 {
    let priority = DdState::from_trace_state(sc.trace_state()).priority_or(sc.is_sampled());
    u8::from(priority > 0)
}

/// An attribute as string members: itself, or an array's items as `key.0`, `key.1`, ….
fn flatten(key: &str, value: &Value, out: &mut Map<String, Json>) {
    let mut item = |i: usize, text: String| {
        out.insert(format!("{key}.{i}"), Json::String(text));
    };
    match value {
        Value::Array(Array::Bool(items)) => {
            for (i, b) in items.iter().enumerate() {
                item(i, b.to_string());
            }
        }
        Value::Array(Array::I64(items)) => {
            for (i, n) in items.iter().enumerate() {
                item(i, n.to_string());
            }
        }
        Value::Array(Array::F64(items)) => {
            for (i, f) in items.iter().enumerate() {
                item(i, float(*f));
            }
        }
        Value::Array(Array::String(items)) => {
            for (i, s) in items.iter().enumerate() {
                item(i, s.to_string());
            }
        }
        Value::F64(f) => {
            out.insert(key.to_string(), Json::String(float(*f)));
        }
        // Strings, booleans, integers (and any later kind) as their text.
        other => {
            out.insert(key.to_string(), Json::String(other.to_string()));
        }
    }
}

/// A float as Python writes it (`1.0`, `0.5`), as dd-trace-py's links carry them.
fn float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        f.to_string()
    }
}

/// Adds the span links an extraction left in the parent context `cx`
/// ([`ExtractedLinks`]: `terminated_context` links, or the link of a restarted trace) to
/// `span`, the local root started on it; its descendants, whose contexts hold them too, get
/// none. The pipeline's span processor ([`crate::processor`]) calls it for every span it sees
/// start (one processor: the SDK copies a span's data once per extra processor).
pub(crate) fn add_extracted_links(span: &mut Span, cx: &Context) {
    use opentelemetry::trace::Span as _;
    let Some(extracted) = cx.get::<ExtractedLinks>() else {
        return;
    };
    if !extracted.belong_to(cx) {
        return;
    }
    for link in &extracted.links {
        span.add_link(link.span_context.clone(), link.attributes.clone());
    }
}

/// [`add_extracted_links`] as a span processor of its own (tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct ExtractedLinkProcessor;

#[cfg(test)]
impl SpanProcessor for ExtractedLinkProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        add_extracted_links(span, cx);
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceState};
    use opentelemetry::StringValue;

    fn context(trace: u128, span: u64, sampled: bool, state: TraceState) -> SpanContext {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            flags,
            false,
            state,
        )
    }

    fn parsed(tag: &KeyValue) -> Json {
        assert_eq!(tag.key.as_str(), SPAN_LINKS);
        serde_json::from_str(&tag.value.as_str()).expect("JSON")
    }

    #[test]
    fn links_are_written_as_datadog_s_json() {
        let state = TraceState::from_key_value([("dd", "s:2;t.dm:-4"), ("foo", "1")]).unwrap();
        let links = [
            Link::new(
                context(
                    0x1234567890123456_7890123456789012,
                    0x1234567890123456,
                    true,
                    state,
                ),
                vec![
                    KeyValue::new("foo", "bar"),
                    KeyValue::new(
                        "array",
                        Value::Array(Array::String(vec![
                            StringValue::from("a"),
                            StringValue::from("b"),
                        ])),
                    ),
                    KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
                    KeyValue::new("nested", Value::Array(Array::I64(vec![1, 2]))),
                    KeyValue::new("rate", 0.5),
                    KeyValue::new("whole", 2.0),
                    KeyValue::new("n", 7_i64),
                    KeyValue::new("ok", true),
                ],
                3,
            ),
            Link::with_context(context(1, 1, false, TraceState::default())),
        ];
        let json = parsed(&span_links_tag(&links).expect("a tag"));
        assert_eq!(
            json,
            serde_json::json!([
                {
                    "trace_id": "12345678901234567890123456789012",
                    "span_id": "1234567890123456",
                    "attributes": {
                        "foo": "bar",
                        "array.0": "a",
                        "array.1": "b",
                        "bools.0": "true",
                        "bools.1": "false",
                        "nested.0": "1",
                        "nested.1": "2",
                        "rate": "0.5",
                        "whole": "2.0",
                        "n": "7",
                        "ok": "true"
                    },
                    "dropped_attributes_count": 3,
                    "tracestate": "dd=s:2;p:1234567890123456;t.dm:-4;t.tid:1234567890123456,foo=1",
                    "flags": 1
                },
                {
                    "trace_id": "00000000000000000000000000000001",
                    "span_id": "0000000000000001",
                    "flags": 0
                }
            ])
        );
    }

    #[test]
    fn the_priority_decides_the_flag_and_invalid_links_are_left_out() {
        // Sampled by OpenTelemetry, dropped by its Datadog priority.
        let dropped = TraceState::from_key_value([("dd", "s:-1")]).unwrap();
        let links = [
            Link::with_context(SpanContext::empty_context()),
            Link::with_context(context(5, 6, true, dropped)),
        ];
        let json = parsed(&span_links_tag(&links).expect("a tag"));
        assert_eq!(json.as_array().map(Vec::len), Some(1));
        assert_eq!(json[0]["flags"], 0);
        assert_eq!(json[0]["span_id"], "0000000000000006");
        assert!(span_links_tag(&[]).is_none());
        assert!(span_links_tag(&[Link::with_context(SpanContext::empty_context())]).is_none());
    }

    /// Spans as they end, through the SDK's simple processor.
    #[derive(Debug, Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Captured {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(batch);
            Ok(())
        }
    }

    /// A restarted trace: the local root started on the extracted context gets the link, a
    /// span under it (whose context holds the links too) does not.
    #[test]
    fn the_local_root_of_an_extraction_gets_its_links_and_its_children_none() {
        use crate::styles::{ExtractBehavior, PropagationStyles};
        use opentelemetry::propagation::TextMapPropagator as _;
        use opentelemetry::trace::{
            Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _,
        };
        use std::collections::HashMap;

        let captured = Captured::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(ExtractedLinkProcessor)
            .with_span_processor(opentelemetry_sdk::trace::SimpleSpanProcessor::new(
                captured.clone(),
            ))
            .build();
        let tracer = provider.tracer("test");
        let propagator = crate::propagation::DatadogW3cPropagator::with_styles(PropagationStyles {
            behavior: ExtractBehavior::Restart,
            ..PropagationStyles::default()
        });
        let headers: HashMap<String, String> = [
            ("x-datadog-trace-id", "1"),
            ("x-datadog-parent-id", "1"),
            ("x-datadog-sampling-priority", "2"),
            ("x-datadog-tags", "_dd.p.tid=1111111111111111"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cx = propagator.extract(&headers);
        let mut root = tracer.build_with_context(tracer.span_builder("root"), &cx);
        let root_sc = root.span_context().clone();
        let child_cx = cx.with_remote_span_context(root_sc.clone());
        let mut child = tracer.build_with_context(tracer.span_builder("child"), &child_cx);
        child.end();
        root.end();

        let spans = captured.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let of = |name: &str| spans.iter().find(|s| s.name == name).expect("ended");
        let (root, child) = (of("root"), of("child"));
        assert_ne!(root.span_context.trace_id(), TraceId::from(1u128));
        assert_eq!(root.parent_span_id, SpanId::INVALID);
        assert!(child.links.is_empty());
        let json = parsed(&span_links_tag(&root.links).expect("a link"));
        assert_eq!(
            json,
            serde_json::json!([{
                "trace_id": "11111111111111110000000000000001",
                "span_id": "0000000000000001",
                "attributes": {
                    "reason": "propagation_behavior_extract",
                    "context_headers": "datadog"
                },
                "flags": 1
            }])
        );
        assert_eq!(child.parent_span_id, root_sc.span_id());
    }
}
