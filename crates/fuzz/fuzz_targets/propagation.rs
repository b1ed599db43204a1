//! Extracting trace context from arbitrary headers never panics; a context that is accepted
//! survives a round trip through injection and extraction unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use std::collections::HashMap;
use datadog_otel_tracing::fuzzing::DatadogW3cPropagator;

const NAMES: [&str; 7] = [
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "x-datadog-origin",
    "x-datadog-tags",
    "traceparent",
    "tracestate",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Each line is one header; its first byte picks the name, the rest is the value.
    let mut headers = HashMap::new();
    for line in text.split('\n') {
        let mut chars = line.chars();
        if let Some(first) = chars.next() {
            headers.insert(NAMES[first as usize % NAMES.len()].to_string(), chars.as_str().to_string());
        }
    }
    let propagator = DatadogW3cPropagator::new();
    let cx = propagator.extract(&headers);
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return;
    }
    let mut injected: HashMap<String, String> = HashMap::new();
    propagator.inject_context(&cx, &mut injected);
    let again = propagator.extract(&injected);
    let again_span = again.span();
    let again_sc = again_span.span_context();
    assert_eq!(again_sc.trace_id(), sc.trace_id());
    assert_eq!(again_sc.span_id(), sc.span_id());
    assert_eq!(again_sc.is_sampled(), sc.is_sampled());
});
