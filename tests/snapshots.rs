//! Snapshot tests: the traces of the tutorial's requests, exactly as the Datadog Agent receives
//! them, compared with the recorded snapshots in `tests/snapshots/` by Datadog's test agent.
//!
//! Each test runs its own services (fresh database) against the one test agent of this binary,
//! inside a session of its own (started before the services, so that notes' start-up trace,
//! `notes.startup` with the schema statements below it, is part of every snapshot) ([`TestAgent::start_session`]); the tests run one at a time, since
//! the services send no session token and the agent gives untagged traces to the latest session.
//! Ids, timestamps, durations and `_dd.p.tid` (the agent's default ignores), the database name and
//! the loopback ports (`{addr}`) are not compared; every other field, tag and metric is.
//!
//! A missing snapshot fails. To record one (never in CI): delete `tests/snapshots/<test>.json`
//! and run `UPDATE_SNAPSHOTS=1 cargo test --test snapshots <test>`; review the diff and commit it.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use test_support::agent::{shared_agent, snapshot_update_requested};
use test_support::{ServiceProcess, TestAgent};

/// Span attributes not compared besides the agent's defaults: the fresh database's random name and
/// the private PostgreSQL server's port.
/// `runtime-id` and `process_id` (one per process, on each local root) differ per run too.
const IGNORES: &[&str] = &[
    "meta.db.name",
    "metrics.network.destination.port",
    "meta.runtime-id",
    "metrics.process_id",
];

/// The tests share one agent and one session at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn telemetry_env(agent: &str) -> Vec<(&str, &str)> {
    vec![
        ("DD_TRACE_AGENT_URL", agent),
        ("DD_ENV", "Dev"),
        ("DD_VERSION", "0.1.0-RC1"),
        ("DD_TRACE_FLUSH_INTERVAL_MS", "100"),
        // Every trace sent, dropped decisions too (the test agent would let the services drop
        // priority-0 traces locally once they compute stats; tests/stats.rs covers that).
        ("DD_TRACE_STATS_COMPUTATION_ENABLED", "false"),
        ("HOST", "127.0.0.1"),
    ]
}

/// calendar (unless `calendar_down`) and notes on a fresh database, exporting to `agent`.
async fn start_services(
    agent: &TestAgent,
    calendar_down: bool,
) -> (Option<ServiceProcess>, ServiceProcess) {
    let url = agent.url();
    let calendar = if calendar_down {
        None
    } else {
        Some(ServiceProcess::spawn("calendar", &telemetry_env(&url)).await)
    };
    let calendar_url = match &calendar {
        Some(c) => c.base_url(),
        None => format!("http://127.0.0.1:{}", test_support::free_port()),
    };
    let db = test_support::fresh_database().await;
    let mut env = telemetry_env(&url);
    env.extend([
        ("DATABASE_URL", db.as_str()),
        ("CALENDAR_URL", calendar_url.as_str()),
        ("NOTES_HELPER_DELAY_SCALE", "0.01"),
        ("CALENDAR_TIMEOUT_MS", "1000"),
    ]);
    let notes = ServiceProcess::spawn("notes", &env).await;
    (calendar, notes)
}

/// Sends one request and checks its status. Its `User-Agent` is `snapshots/<step>`: the test agent
/// pairs received traces with recorded ones by their root spans, so two alike requests (the
/// tutorial's two `GET /notes`) must differ there.
async fn request(step: usize, method: &str, url: &str, headers: &[(&str, &str)], status: u16) {
    let user_agent = format!("snapshots/{step}");
    let mut all = vec![("user-agent", user_agent.as_str())];
    all.extend_from_slice(headers);
    let reply = test_support::send(&reqwest::Client::new(), method, url, &all).await;
    assert_eq!(reply.status, status, "{method} {url}");
}

/// Waits until the session holds `traces` traces and nothing more arrives for a while (so a
/// stray span fails the snapshot instead of racing it), then compares them with the snapshot.
async fn check_snapshot(agent: &TestAgent, token: &str, traces: usize, spans: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = (0, 0);
    let mut stable_since = Instant::now();
    loop {
        let got = agent.session_traces(token).await;
        let now = (got.len(), got.iter().map(Vec::len).sum::<usize>());
        if now != seen {
            seen = now;
            stable_since = Instant::now();
        }
        if seen.0 >= traces
            && seen.1 >= spans
            && stable_since.elapsed() > Duration::from_millis(600)
        {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "session {token}: expected {traces} traces / {spans} spans, got {seen:?}:\n{}",
                serde_json::to_string_pretty(&got).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(token);
    let json = file.with_extension("json");
    if !snapshot_update_requested() {
        assert!(
            json.is_file(),
            "snapshot {} is missing: record it with `UPDATE_SNAPSHOTS=1 cargo test --test snapshots {token}` (never in CI), review and commit it",
            json.display()
        );
    }
    if let Err(report) = agent.snapshot(token, &file, IGNORES).await {
        panic!("{report}\n(an intended change: delete {} and re-record it with UPDATE_SNAPSHOTS=1, then say so in the commit)", json.display());
    }
    assert_eq!(
        (seen.0, seen.1),
        (traces, spans),
        "session {token}: the snapshot matched, but the expected counts did not"
    );
}

#[tokio::test]
async fn tutorial_sequence() {
    let _serial = SERIAL.lock().await;
    let agent = shared_agent().await;
    let token = "tutorial_sequence";
    agent.start_session(token).await;
    let (_calendar, notes) = start_services(agent, false).await;
    let base = notes.base_url();
    for (step, (method, path, status)) in [
        ("GET", "/notes", 200),
        ("POST", "/notes?desc=hello", 201),
        ("GET", "/notes?id=1", 200),
        ("GET", "/notes", 200),
        ("PUT", "/notes?id=1&desc=UpdatedNote", 200),
        ("DELETE", "/notes?id=1", 200),
    ]
    .into_iter()
    .enumerate()
    {
        request(step, method, &format!("{base}{path}"), &[], status).await;
    }
    check_snapshot(agent, token, 7, 21).await;
}

#[tokio::test]
async fn post_with_a_date() {
    let _serial = SERIAL.lock().await;
    let agent = shared_agent().await;
    let token = "post_with_a_date";
    agent.start_session(token).await;
    let (calendar, notes) = start_services(agent, false).await;
    let base = notes.base_url();
    request(
        0,
        "POST",
        &format!("{base}/notes?desc=hello_again&add_date=y"),
        &[],
        201,
    )
    .await;
    let calendar = calendar.expect("calendar runs");
    request(
        1,
        "GET",
        &format!("{}/calendar", calendar.base_url()),
        &[],
        200,
    )
    .await;
    check_snapshot(agent, token, 3, 11).await;
}

#[tokio::test]
async fn errors_and_not_found() {
    let _serial = SERIAL.lock().await;
    let agent = shared_agent().await;
    let token = "errors_and_not_found";
    agent.start_session(token).await;
    let (_calendar, notes) = start_services(agent, true).await;
    let base = notes.base_url();
    for (step, (method, path, status)) in [
        ("POST", "/notes?desc=x&add_date=y", 503),
        ("GET", "/notes?id=42", 404),
        ("GET", "/nowhere", 404),
        ("PATCH", "/notes", 405),
        ("GET", "/notes?id=abc", 400),
    ]
    .into_iter()
    .enumerate()
    {
        request(step, method, &format!("{base}{path}"), &[], status).await;
    }
    check_snapshot(agent, token, 6, 11).await;
}

#[tokio::test]
async fn incoming_datadog_headers() {
    let _serial = SERIAL.lock().await;
    let agent = shared_agent().await;
    let token = "incoming_datadog_headers";
    agent.start_session(token).await;
    let (_calendar, notes) = start_services(agent, false).await;
    let headers = [
        ("x-datadog-trace-id", "5277134972075981726"),
        ("x-datadog-parent-id", "16511978227091699246"),
        ("x-datadog-sampling-priority", "2"),
        ("x-datadog-tags", "_dd.p.dm=-4,_dd.p.tid=6b058a5d00000000"),
        ("x-datadog-origin", "synthetics"),
    ];
    let url = format!("{}/notes?desc=from_dd&add_date=y", notes.base_url());
    request(0, "POST", &url, &headers, 201).await;
    check_snapshot(agent, token, 2, 9).await;
}

#[tokio::test]
async fn incoming_w3c_headers() {
    let _serial = SERIAL.lock().await;
    let agent = shared_agent().await;
    let token = "incoming_w3c_headers";
    agent.start_session(token).await;
    let (_calendar, notes) = start_services(agent, false).await;
    let headers = [
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("tracestate", "dd=s:1;o:rum;t.dm:-0,congo=t61rcWkgMzE"),
    ];
    let url = format!("{}/notes?id=7", notes.base_url());
    request(0, "GET", &url, &headers, 404).await;
    // A dropped decision: still sent, with its priority, for the Agent's statistics.
    let dropped = [(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319d-b7ad6b7169203331-00",
    )];
    request(1, "GET", &url, &dropped, 404).await;
    check_snapshot(agent, token, 3, 7).await;
}
