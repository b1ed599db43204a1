//! The tracing library (`crates/datadog-otel-tracing`) as an engineer adopts it: its server
//! example sends a complete trace to Datadog's test agent, and two applications in one process
//! keep their own HTTP tracing settings (no process-wide state).

use datadog_otel_tracing::{Config, Env, Pipeline};
use serde_json::Value;
use std::time::Duration;
use test_support::inprocess::spawn_calendar_with;
use test_support::service::{bin_dir, ServiceProcess};
use test_support::{send, TestAgent};

const WAIT: Duration = Duration::from_secs(20);

fn meta<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["meta"][key].as_str()
}

/// `examples/actix_server.rs`, run as its docs say: one request is one trace, the server span
/// (route-aware resource, redacted URL) and the handler's own span under it, and the log line
/// written inside carries the trace's id; `/health` is not traced; SIGTERM flushes and exits 0.
#[tokio::test]
async fn the_server_example_sends_a_complete_trace() {
    let agent = TestAgent::start().await;
    let example = bin_dir().join("examples").join("actix_server");
    assert!(
        example.is_file(),
        "{} not built: run `cargo build --workspace --bins --examples` (`bash tests/run.sh` does it)",
        example.display()
    );
    let agent_url = agent.url();
    let mut server = ServiceProcess::spawn_program(
        &example,
        &[],
        &[("DD_SERVICE", "hello"), ("DD_TRACE_AGENT_URL", &agent_url)],
    )
    .await;
    let client = reqwest::Client::new();
    let base = server.base_url();
    let reply = send(
        &client,
        "GET",
        &format!("{base}/hello/world?token=secret"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "Hello, world!");
    let reply = send(&client, "GET", &format!("{base}/health"), &[]).await;
    assert_eq!(
        reply.status, 404,
        "the example has no /health route: {}",
        reply.body
    );

    let traces = agent
        .wait_for_traces(|t| t.iter().any(|trace| trace.len() == 2), WAIT)
        .await;
    let trace = traces
        .iter()
        .find(|trace| trace.len() == 2)
        .expect("waited for it");
    let root = trace
        .iter()
        .find(|s| s["parent_id"] == 0)
        .unwrap_or_else(|| panic!("no root span in {trace:?}"));
    let child = trace
        .iter()
        .find(|s| s["parent_id"] != 0)
        .unwrap_or_else(|| panic!("no child span in {trace:?}"));
    assert_eq!(root["service"], "hello");
    assert_eq!(root["name"], "actix_web.request");
    assert_eq!(root["resource"], "GET /hello/{name}");
    assert_eq!(root["type"], "web");
    assert_eq!(meta(root, "http.status_code"), Some("200"));
    let url = meta(root, "http.url").unwrap_or_default();
    assert!(url.ends_with("/hello/world?<redacted>"), "{url}");
    assert_eq!(meta(root, "language"), Some("rust"));
    assert_eq!(child["name"], "hello.greet");
    assert_eq!(child["resource"], "greet");
    assert_eq!(child["parent_id"], root["span_id"]);
    assert_eq!(child["trace_id"], root["trace_id"]);
    assert_eq!(
        traces.len(),
        1,
        "only the request is traced (no /health, nothing else): {traces:?}"
    );

    let line = server
        .wait_for_log(|l| l["message"] == "greeting", WAIT)
        .await;
    assert_eq!(line["dd.trace_id"], root["trace_id"].to_string(), "{line}");
    assert_eq!(line["dd.span_id"], child["span_id"].to_string(), "{line}");
    assert_eq!(line["dd.service"], "hello");

    server.signal(libc::SIGTERM);
    let status = server.wait_exit(WAIT).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        server.output_tail(20)
    );
}

/// Two apps in one process, each with its own health-check, header-tag and redaction
/// settings, traced through one pipeline installed in this process: each request's server span
/// follows the settings of the app that served it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_in_one_process_keep_their_own_settings() {
    let agent = TestAgent::start().await;
    let env = Env::from_pairs([
        ("DD_SERVICE", "calendar"),
        ("DD_TRACE_AGENT_URL", agent.url().as_str()),
        ("DD_TRACE_FLUSH_INTERVAL_MS", "100"),
        ("RUST_LOG", "warn"),
    ]);
    let config = Config::from_env(&env, "calendar").expect("valid settings");
    // The pipeline's export uses a blocking client built on a thread of its own.
    let guard = tokio::task::spawn_blocking(move || Pipeline::build(&config)?.install())
        .await
        .expect("the build does not panic")
        .expect("the pipeline installs");

    let alpha = spawn_calendar_with(&[
        ("TRACE_HEALTH_CHECKS", "true"),
        ("DD_TRACE_HEADER_TAGS", "x-team:team.alpha"),
        ("DD_TRACE_OBFUSCATION_QUERY_STRING_REGEXP", "alpha=[^&]*"),
    ])
    .await;
    let beta = spawn_calendar_with(&[
        ("TRACE_HEALTH_CHECKS", "false"),
        ("DD_TRACE_HEADER_TAGS", "x-team:team.beta"),
        ("DD_TRACE_OBFUSCATION_QUERY_STRING_REGEXP", "beta=[^&]*"),
    ])
    .await;
    let client = reqwest::Client::new();
    for base in [&alpha, &beta] {
        let url = format!("{base}/calendar?alpha=1&beta=2");
        let reply = send(&client, "GET", &url, &[("x-team", "red")]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let reply = send(&client, "GET", &format!("{base}/health"), &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    let server_spans = |traces: &[Vec<Value>]| -> Vec<Value> {
        traces
            .iter()
            .flatten()
            .filter(|s| s["name"] == "actix_web.request")
            .cloned()
            .collect()
    };
    let traces = agent
        .wait_for_traces(|t| server_spans(t).len() >= 3, WAIT)
        .await;
    // Give a wrongly traced health check of beta's time to arrive too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spans = server_spans(&agent.traces().await);
    let of = |base: &str, resource: &str| -> Vec<Value> {
        spans
            .iter()
            .filter(|s| meta(s, "http.url").is_some_and(|u| u.starts_with(base)))
            .filter(|s| s["resource"] == resource)
            .cloned()
            .collect()
    };
    let (alpha_calendar, beta_calendar) = (of(&alpha, "GET /calendar"), of(&beta, "GET /calendar"));
    assert_eq!(alpha_calendar.len(), 1, "{traces:?}");
    assert_eq!(beta_calendar.len(), 1, "{traces:?}");
    assert_eq!(
        meta(&alpha_calendar[0], "http.url"),
        Some(format!("{alpha}/calendar?<redacted>&beta=2").as_str())
    );
    assert_eq!(
        meta(&beta_calendar[0], "http.url"),
        Some(format!("{beta}/calendar?alpha=1&<redacted>").as_str())
    );
    assert_eq!(meta(&alpha_calendar[0], "team.alpha"), Some("red"));
    assert_eq!(meta(&alpha_calendar[0], "team.beta"), None);
    assert_eq!(meta(&beta_calendar[0], "team.beta"), Some("red"));
    assert_eq!(meta(&beta_calendar[0], "team.alpha"), None);
    assert_eq!(
        of(&alpha, "GET /health").len(),
        1,
        "alpha traces health checks"
    );
    assert_eq!(of(&beta, "GET /health").len(), 0, "beta does not");

    tokio::task::spawn_blocking(move || guard.shutdown(Duration::from_secs(3)))
        .await
        .expect("the shutdown does not panic")
        .expect("the spans are flushed");
}
