//! Self-test of the integration-test harness (`tests/support/`): the private
//! PostgreSQL, Datadog's test agent, and service subprocesses.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::{connect, free_port, fresh_database, ServiceProcess, TestAgent};

#[tokio::test]
async fn fresh_databases_are_distinct_empty_and_queryable() {
    let first = fresh_database().await;
    let second = fresh_database().await;
    assert_ne!(first, second);

    let a = connect(&first).await;
    let b = connect(&second).await;
    let name_of = |url: &str| url.rsplit('/').next().unwrap_or_default().to_owned();
    let current: String = a
        .query_one("SELECT current_database()", &[])
        .await
        .expect("query on the first database")
        .get(0);
    assert_eq!(current, name_of(&first));

    a.batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('only in the first')")
        .await
        .expect("create a table in the first database");
    let v: String = a
        .query_one("SELECT v FROM t", &[])
        .await
        .expect("read it back")
        .get(0);
    assert_eq!(v, "only in the first");

    let current: String = b
        .query_one("SELECT current_database()", &[])
        .await
        .expect("query on the second database")
        .get(0);
    assert_eq!(current, name_of(&second));
    let tables: i64 = b
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .expect("list tables of the second database")
        .get(0);
    assert_eq!(tables, 0, "a fresh database starts empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fresh_databases_are_all_distinct() {
    let urls = futures::future::join_all((0..6).map(|_| fresh_database())).await;
    let mut names: Vec<&str> = urls
        .iter()
        .map(|u| u.rsplit('/').next().unwrap_or_default())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 6, "{urls:?}");
    for url in &urls {
        let client = connect(url).await;
        let one: i32 = client
            .query_one("SELECT 1", &[])
            .await
            .expect("query a fresh database")
            .get(0);
        assert_eq!(one, 1);
    }
}

fn span(trace_id: u64, span_id: u64, parent_id: u64, name: &str) -> Value {
    json!({
        "service": "harness-svc",
        "name": name,
        "resource": format!("GET /{name}"),
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_id": parent_id,
        "start": 1_700_000_000_000_000_000u64,
        "duration": 1_000_000,
        "error": 0,
        "type": "web",
        "meta": { "http.method": "GET" },
        "metrics": { "_sampling_priority_v1": 1.0 },
    })
}

/// PUTs a v0.4 JSON payload as a Datadog tracer would (with the headers the
/// enabled checks look for unless `tracer_headers` is false); returns the status.
async fn send_v04(agent: &TestAgent, traces: &Value, tracer_headers: bool) -> u16 {
    let count = traces.as_array().map(Vec::len).unwrap_or(0);
    let mut request = reqwest::Client::new()
        .put(format!("{}/v0.4/traces", agent.url()))
        .header("Content-Type", "application/json")
        .header("X-Datadog-Trace-Count", count.to_string())
        .body(traces.to_string());
    if tracer_headers {
        request = request
            .header("Datadog-Meta-Lang", "rust")
            .header("Datadog-Meta-Tracer-Version", "0.0.0-harness");
    }
    request
        .send()
        .await
        .expect("PUT /v0.4/traces to the test agent")
        .status()
        .as_u16()
}

#[tokio::test]
async fn test_agent_receives_merges_and_checks_traces() {
    let started = Instant::now();
    let agent = TestAgent::start().await;
    eprintln!("test agent ready in {:.1?}", started.elapsed());
    assert!(agent.traces().await.is_empty());

    // Two chunks of one trace in two payloads, plus another trace.
    let root = span(111, 1, 0, "root");
    let child = span(111, 2, 1, "child");
    let other = span(222, 3, 0, "other");
    assert_eq!(send_v04(&agent, &json!([[root]]), true).await, 200);
    assert_eq!(
        send_v04(&agent, &json!([[child], [other]]), true).await,
        200
    );

    let traces = agent
        .wait_for_traces(|t| t.len() == 2, Duration::from_secs(5))
        .await;
    let merged = traces
        .iter()
        .find(|t| t[0]["trace_id"] == 111)
        .expect("trace 111 is there");
    let mut names: Vec<&str> = merged.iter().filter_map(|s| s["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["child", "root"], "chunks of one trace are merged");
    let child = merged
        .iter()
        .find(|s| s["name"] == "child")
        .expect("child span");
    assert_eq!(child["parent_id"], 1);
    assert_eq!(child["service"], "harness-svc");
    assert_eq!(child["resource"], "GET /child");
    assert_eq!(child["meta"]["http.method"], "GET");
    assert_eq!(child["metrics"]["_sampling_priority_v1"], 1.0);
    assert_eq!(agent.spans().await.len(), 3);

    let requests = agent.trace_requests().await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests
        .iter()
        .all(|r| test_support::agent::request_header(r, "Datadog-Meta-Lang") == Some("rust")));

    assert_eq!(agent.trace_check_failures().await, None);
    let summary = agent.trace_check_summary().await;
    assert_eq!(
        summary["meta_tracer_version_header"]["Passed_Checks"], 2,
        "the checks ran: {summary}"
    );

    agent.clear().await;
    assert!(agent.traces().await.is_empty());
}

#[tokio::test]
async fn test_agent_reports_failed_checks() {
    let agent = TestAgent::start().await;
    // No Datadog-Meta-Tracer-Version header: the agent answers 400 and pools the failure.
    let status = send_v04(&agent, &json!([[span(5, 6, 0, "bad")]]), false).await;
    assert_eq!(status, 400);
    let failures = agent
        .trace_check_failures()
        .await
        .expect("the missing header is reported");
    assert!(
        failures.contains("meta_tracer_version_header"),
        "{failures}"
    );
}

#[tokio::test]
async fn test_agent_stops_restarts_on_the_same_port_and_delays() {
    let mut agent = TestAgent::start().await;
    let url = agent.url();
    assert_eq!(
        send_v04(&agent, &json!([[span(7, 8, 0, "before")]]), true).await,
        200
    );

    agent.stop().await;
    assert!(!agent.is_running());
    let refused = reqwest::Client::new()
        .get(format!("{url}/info"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a stopped agent still answers: {refused:?}"
    );

    let started = Instant::now();
    agent.restart().await;
    eprintln!("test agent restarted in {:.1?}", started.elapsed());
    assert_eq!(agent.url(), url);
    assert!(agent.is_running());
    assert!(
        agent.traces().await.is_empty(),
        "a restarted agent starts empty"
    );

    agent.set_request_delay(1.0).await;
    let sent = Instant::now();
    assert_eq!(
        send_v04(&agent, &json!([[span(9, 10, 0, "slow")]]), true).await,
        200
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(950),
        "the delay was not applied: {:?}",
        sent.elapsed()
    );
    assert_eq!(agent.spans().await.len(), 1);
    assert_eq!(agent.trace_check_failures().await, None);
}

#[test]
fn a_missing_test_agent_fails_with_the_fix() {
    let root = std::env::temp_dir().join("apm-tutorial-no-such-workspace");
    let err =
        test_support::agent::locate_test_agent_from(None, &root).expect_err("nothing is there");
    assert!(err.contains("bash tests/run.sh"), "{err}");
    let err = test_support::agent::locate_test_agent_from(Some("/no/such/agent".into()), &root)
        .expect_err("nothing is there");
    assert!(err.contains("DDAPM_TEST_AGENT"), "{err}");
}

#[tokio::test]
#[should_panic(expected = "cargo build --workspace --bins")]
async fn a_missing_service_binary_fails_with_the_fix() {
    ServiceProcess::spawn("no-such-service-binary", &[]).await;
}

/// A stand-in service in sh: logs a non-JSON line, then a JSON `listening`
/// record, and on SIGTERM logs `stopping` and exits 0.
const FAKE_SERVICE: &str = r#"
trap 'echo "{\"message\":\"stopping\",\"port\":\"$PORT\"}"; exit 0' TERM
echo "plain text on stderr" >&2
echo "{\"level\":\"INFO\",\"fields\":{\"message\":\"listening\",\"address\":\"0.0.0.0:$FAKE_PORT\"},\"dd_service\":\"$DD_SERVICE\"}"
while :; do sleep 0.05; done
"#;

#[tokio::test]
async fn service_process_finds_the_port_captures_output_and_signals() {
    let port = free_port();
    let port_str = port.to_string();
    let mut service = ServiceProcess::spawn_program(
        std::path::Path::new("sh"),
        &["-c", FAKE_SERVICE],
        &[("FAKE_PORT", &port_str), ("DD_SERVICE", "fake")],
    )
    .await;
    assert_eq!(service.port(), port);
    assert_eq!(service.base_url(), format!("http://127.0.0.1:{port}"));
    let logs = service.logs();
    assert_eq!(logs[0]["dd_service"], "fake");

    service.signal(libc::SIGTERM);
    let status = service
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the fake service exits on SIGTERM");
    assert!(status.success(), "{status}");
    let stopping = service
        .logs()
        .into_iter()
        .find(|l| l["message"] == "stopping")
        .expect("the shutdown record was captured");
    assert_eq!(stopping["port"], "0", "PORT=0 is set by default");
    assert!(service.lines().iter().any(|l| l == "plain text on stderr"));
}
