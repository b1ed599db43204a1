//! Arbitrary and hostile requests: never a 5xx, never a panic, nothing spliced into SQL.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::inprocess::{spawn_calendar, spawn_notes, NotesApp};

async fn app() -> NotesApp {
    let db = support::fresh_database().await;
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
            let (status, _, body) =
                handle.block_on(support::inprocess::send(&app.client, method, &url, None));
            prop_assert!(status < 500, "{method} {url} -> {status} {body}");
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The server is still healthy afterwards.
    assert_eq!(app.send("GET", "/health").await.0, 200);
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
        let (status, _, body) = app.send(method, path).await;
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
