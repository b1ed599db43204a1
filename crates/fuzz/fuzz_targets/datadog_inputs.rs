//! The parsers of issue 11 on arbitrary input: sampling rules JSON (`DD_TRACE_SAMPLING_RULES`),
//! the Agent's `rate_by_service` answer, W3C baggage, B3 single headers, header tags, and query
//! obfuscation. None panics; baggage stays within Datadog's bounds and survives a round trip;
//! an accepted B3 header round-trips; a redacted URL keeps everything before its query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use datadog_otel_tracing::fuzzing::AgentRates;
use datadog_otel_tracing::fuzzing::B3Context;
use datadog_otel_tracing::fuzzing::{baggage, Baggage};
use datadog_otel_tracing::fuzzing::HeaderTags;
use datadog_otel_tracing::fuzzing::QueryObfuscator;
use datadog_otel_tracing::fuzzing::{RootFacts, SamplingRules};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match selector % 6 {
        0 => {
            if let Ok(rules) = SamplingRules::parse(Some(&text), Some(0.5)) {
                let tag = |k: &str| Some(k.to_string());
                let facts = RootFacts {
                    service: &text,
                    name: "actix_web.request",
                    resource: &text,
                    tag: &tag,
                };
                // The catch-all rule comes last: some rule always matches.
                assert!(rules.find(&facts).is_some());
            }
        }
        1 => {
            let _ = AgentRates::parse(rest);
        }
        2 => {
            let parsed = Baggage::parse(&text);
            assert!(parsed.items().len() <= baggage::MAX_ITEMS);
            if let Some(header) = parsed.header() {
                assert!(header.len() <= baggage::MAX_BYTES);
                let again = Baggage::parse(&header);
                assert_eq!(again.header().as_deref(), Some(header.as_str()));
            }
        }
        3 => {
            if let Some(cx) = B3Context::extract_single(&text) {
                assert_eq!(B3Context::extract_single(&cx.single_header()), Some(cx));
            }
        }
        4 => {
            let _ = HeaderTags::parse(&text);
        }
        _ => {
            let url = format!("http://h/p?{text}");
            let redacted = QueryObfuscator::default().redact_url(&url).into_owned();
            assert!(redacted.starts_with("http://h/p?"), "{redacted}");
        }
    }
});
