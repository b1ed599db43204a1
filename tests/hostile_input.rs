//! Arbitrary and hostile requests: never a 5xx, never a panic, nothing spliced into SQL.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use test_support::inprocess::{spawn_calendar, spawn_notes, NotesApp};
use test_support::Reply;

async fn app() -> NotesApp {
    let db = test_support::fresh_database().await;
    spawn_notes(&db, &spawn_calendar().await, &[]).await
}

/// Percent-encodes every byte that is not unreserved.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (*b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| encode(&b)),
        "[0-9]{0,25}",
        "-?[0-9]{1,12}(e[0-9])?",
        "[a-zA-Z0-9%+]{0,30}",
        Just("y".to_string()),
        Just("Y".to_string()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("id".to_string()),
        Just("desc".to_string()),
        Just("add_date".to_string()),
        "[a-z%]{0,6}",
    ];
    proptest::collection::vec((key, value(), any::<bool>()), 0..5).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v, with_eq)| if with_eq { format!("{k}={v}") } else { k })
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_string()),
        Just("/notes".to_string()),
        Just("/health".to_string()),
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| format!("/notes/{}", encode(&b))),
        "/[a-z0-9/]{0,20}",
    ]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("DELETE"),
        Just("PATCH"),
        Just("HEAD")
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_query_strings_and_paths_never_get_a_5xx() {
    let app = app().await;
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let result = tokio::task::block_in_place(|| {
        runner.run(&(method(), path(), query()), |(method, path, query)| {
            let url = format!("{}{path}?{query}", app.base);
            prop_assume!(reqwest::Url::parse(&url).is_ok());
            let Reply { status, body, .. } =
                handle.block_on(test_support::send(&app.client, method, &url, &[]));
            prop_assert!(status < 500, "{method} {url} -> {status} {body}");
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The server is still healthy afterwards.
    assert_eq!(app.send("GET", "/health").await.status, 200);
}

#[tokio::test]
async fn hostile_corpus() {
    let app = app().await;
    let long = "a".repeat(10_000);
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "POST",
            "/notes?desc=%27%3B%20DROP%20TABLE%20notes%3B%20--".into(),
            201,
        ),
        (
            "POST",
            "/notes?desc=Robert%27)%3B%20DELETE%20FROM%20notes%3B--".into(),
            201,
        ),
        (
            "POST",
            "/notes?desc=%F0%9F%98%80%20%D7%A9%D7%9C%D7%95%D7%9D%20%E2%80%AEabc".into(),
            201,
        ),
        ("GET", "/notes?id=1%20OR%201%3D1".into(), 400),
        (
            "GET",
            "/notes?id=1;DROP TABLE notes".replace(' ', "%20"),
            400,
        ),
        ("GET", "/notes?id=1&id=2".into(), 200),
        ("POST", "/notes?desc=first&desc=second".into(), 201),
        ("GET", "/notes?id=%".into(), 400),
        ("GET", "/notes?id=%zz".into(), 400),
        ("POST", "/notes?desc=%".into(), 201),
        ("POST", "/notes?desc=%C3%28".into(), 400),
        ("POST", "/notes?desc=a%00".into(), 400),
        ("POST", format!("/notes?desc={}", &long[..300]), 400),
        ("POST", format!("/notes?desc={long}"), 414),
        ("GET", "/notes/%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(), 400),
        ("GET", "/notes?id=١٢".into(), 400),
    ];
    for (method, path, expected) in &cases {
        let Reply { status, body, .. } = app.send(method, path).await;
        assert_eq!(status, *expected, "{method} {path}: {body}");
    }
    // Injection strings were stored verbatim, and the table is intact.
    let rows: Vec<String> = app.rows().await.into_iter().map(|r| r.1).collect();
    assert_eq!(
        rows,
        vec![
            "'; DROP TABLE notes; --",
            "Robert'); DELETE FROM notes;--",
            "😀 שלום \u{202e}abc",
            "first",
            "%",
        ]
    );
}

// Issue 11's parsers: sampling rules JSON, the Agent's answer, baggage, B3, header tags and
// query obfuscation, on arbitrary and hostile input.
mod datadog_inputs {
    use datadog_otel_tracing::fuzzing::AgentRates;
    use datadog_otel_tracing::fuzzing::B3Context;
    use datadog_otel_tracing::fuzzing::Glob;
    use datadog_otel_tracing::fuzzing::HeaderTags;
    use datadog_otel_tracing::fuzzing::QueryObfuscator;
    use datadog_otel_tracing::fuzzing::SamplingRules;
    use datadog_otel_tracing::fuzzing::{baggage, Baggage};
    use proptest::prelude::*;

    /// JSON-looking text: fragments of rules glued together, so the parser goes deep.
    fn rules_json() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just("[".to_string()),
            Just("]".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just(",".to_string()),
            Just("\"sample_rate\":".to_string()),
            Just("\"service\":".to_string()),
            Just("\"tags\":".to_string()),
            Just("\"resource\":".to_string()),
            "-?[0-9]{1,3}(\\.[0-9]{1,3})?(e[0-9]{1,3})?",
            "\"[a-z*?\\\\]{0,8}\"",
            any::<String>(),
        ];
        proptest::collection::vec(fragment, 0..40).prop_map(|f| f.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn rules_json_never_panics_and_accepted_rates_are_rates(json in rules_json()) {
            if let Ok(rules) = SamplingRules::parse(Some(&json), None) {
                for rule in rules.rules() {
                    prop_assert!((0.0..=1.0).contains(&rule.sample_rate), "{json}");
                }
            }
        }

        #[test]
        fn agent_answers_never_panic(body in any::<Vec<u8>>(), json in rules_json()) {
            let _ = AgentRates::parse(&body);
            let _ = AgentRates::parse(json.as_bytes());
        }

        #[test]
        fn baggage_stays_bounded_and_round_trips(header in "[a-z0-9=,;% %\\PC]{0,300}", items in proptest::collection::vec(("\\PC{0,12}", "\\PC{0,200}"), 0..80)) {
            for parsed in [Baggage::parse(&header), Baggage::from_items(items)] {
                prop_assert!(parsed.items().len() <= baggage::MAX_ITEMS);
                if let Some(out) = parsed.header() {
                    prop_assert!(out.len() <= baggage::MAX_BYTES);
                    let again = Baggage::parse(&out);
                    prop_assert_eq!(again.header(), Some(out));
                }
            }
        }

        #[test]
        fn b3_headers_never_panic_and_accepted_ones_round_trip(header in "[0-9a-fdx-]{0,80}|\\PC{0,80}") {
            if let Some(cx) = B3Context::extract_single(&header) {
                prop_assert_eq!(B3Context::extract_single(&cx.single_header()), Some(cx));
            }
        }

        #[test]
        fn header_tags_and_globs_never_panic(raw in any::<String>(), subject in any::<String>()) {
            let _ = HeaderTags::parse(&raw);
            let _ = Glob::new(&raw).matches(&subject);
        }

        #[test]
        fn redaction_keeps_the_url_before_the_query(query in any::<String>()) {
            let url = format!("http://h/p?{query}");
            let out = QueryObfuscator::default().redact_url(&url).into_owned();
            prop_assert!(out.starts_with("http://h/p?"));
        }
    }

    #[test]
    fn hostile_rules_corpus() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let many = format!(
            "[{}]",
            vec![r#"{"service":"x*","sample_rate":0.5}"#; 10_000].join(",")
        );
        let star_bomb = format!(
            r#"[{{"resource":"{}b","sample_rate":1}}]"#,
            "*a".repeat(500)
        );
        for (json, ok) in [
            (deep.as_str(), false),
            (many.as_str(), true),
            (star_bomb.as_str(), true),
            (r#"[{"sample_rate":1e999}]"#, false),
            (r#"[{"sample_rate":NaN}]"#, false),
            (r#"[{"sample_rate":0.5,"sample_rate":0.7}]"#, false),
            ("\u{feff}[]", false),
            (r#"[{"sample_rate":1,"tags":{"a":"\u0000*"}}]"#, true),
        ] {
            assert_eq!(
                SamplingRules::parse(Some(json), None).is_ok(),
                ok,
                "{}",
                &json[..json.len().min(80)]
            );
        }
        // A pathological pattern against a long resource still answers.
        let rules = SamplingRules::parse(Some(&star_bomb), None).unwrap();
        let glob = rules.rules()[0].resource.as_ref().unwrap();
        assert!(!glob.matches(&"a".repeat(5_000)));
    }

    #[test]
    fn hostile_baggage_corpus() {
        let commas = ",".repeat(1_000_000);
        let megabyte = format!("k={}", "v".repeat(1 << 20));
        let many: String = (0..100_000).map(|i| format!("k{i}=v,")).collect();
        for header in [
            commas.as_str(),
            megabyte.as_str(),
            many.as_str(),
            "=",
            "%",
            "k=%ZZ%",
            "k=%C3%28",
            "k=v;;;;;=;",
            "\u{0}=\u{0}",
        ] {
            let parsed = Baggage::parse(header);
            assert!(parsed.items().len() <= baggage::MAX_ITEMS);
            if let Some(out) = parsed.header() {
                assert!(out.len() <= baggage::MAX_BYTES);
            }
        }
        assert_eq!(Baggage::parse(&many).items().len(), baggage::MAX_ITEMS);
        assert!(Baggage::parse(&megabyte).is_empty());
    }
}
