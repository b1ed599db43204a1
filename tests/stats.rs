//! Client-side stats and the local drop of priority-0 traces, through the real services (issue
//! 22): Datadog's test agent answers `/info` as the Agent does (it takes `/v0.6/stats` and
//! allows `client_drop_p0s`) and here answers trace posts with a rate of 0 for notes and
//! calendar, as a busy production Agent would. The tutorial's requests then show up in the
//! agent's stats with their hits, errors and status codes, no priority-0 trace reaches it, and a
//! failed request's trace still does.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use test_support::http::assert_statuses;
use test_support::{send, TestAgent};

const WAIT: Duration = Duration::from_secs(20);

/// (service, resource, status) → (hits, errors), summed over every payload and bucket.
fn hits(payloads: &[Value]) -> BTreeMap<(String, String, u64), (u64, u64)> {
    let mut out = BTreeMap::new();
    for payload in payloads {
        for bucket in payload["Stats"].as_array().into_iter().flatten() {
            for entry in bucket["Stats"].as_array().into_iter().flatten() {
                let key = (
                    entry["Service"].as_str().unwrap_or_default().to_string(),
                    entry["Resource"].as_str().unwrap_or_default().to_string(),
                    entry["HTTPStatusCode"].as_u64().unwrap_or(0),
                );
                let slot = out.entry(key).or_insert((0, 0));
                slot.0 += entry["Hits"].as_u64().unwrap_or(0);
                slot.1 += entry["Errors"].as_u64().unwrap_or(0);
            }
        }
    }
    out
}

fn roots(traces: &[Vec<Value>]) -> Vec<(String, String)> {
    traces
        .iter()
        .flatten()
        .filter(|s| s["parent_id"] == 0 || s["metrics"].get("_sampling_priority_v1").is_some())
        .map(|s| {
            (
                s["service"].as_str().unwrap_or_default().to_string(),
                s["resource"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn stats_count_every_request_while_only_kept_and_failed_traces_are_sent() {
    let agent = TestAgent::start().await;
    agent
        .start_session_with_rates(&[
            ("service:notes,env:dev", 0.0),
            ("service:calendar,env:dev", 0.0),
        ])
        .await;
    let agent_url = agent.url();
    let env = [
        ("DD_TRACE_AGENT_URL", agent_url.as_str()),
        ("DD_ENV", "dev"),
        ("DD_TRACE_FLUSH_INTERVAL_MS", "100"),
        ("HOST", "127.0.0.1"),
    ];
    let (mut calendar, mut notes) = test_support::calendar_and_notes(&env, &[]).await;
    let client = reqwest::Client::new();
    let (n, c) = (notes.base_url(), calendar.base_url());
    let warm_up = || async {
        assert_statuses(&n, &[("GET", "/", 200)]).await;
        assert_statuses(&c, &[("GET", "/", 200)]).await;
    };

    // Warm-up: before the agent's first answer the services keep traces (priority 1); its
    // answer carries the rate of 0 for each.
    warm_up().await;
    let warmed = agent
        .wait_for_traces(
            |t| {
                let roots = roots(t);
                ["notes", "calendar"].iter().all(|s| {
                    roots
                        .iter()
                        .any(|(service, r)| service == s && r == "GET /")
                })
            },
            WAIT,
        )
        .await;
    // What arrived before the rates applied (start-up, warm-up).
    let mut before = roots(&warmed);
    // Traces posted from now on carry the rate of 0 (the warm-up's answers gave it).

    // The tutorial's requests.
    assert_statuses(
        &n,
        &[
            ("GET", "/notes", 200),
            ("POST", "/notes?desc=hello", 201),
            ("GET", "/notes?id=1", 200),
            ("PUT", "/notes?id=1&desc=UpdatedNote", 200),
            ("DELETE", "/notes?id=1", 200),
            ("GET", "/notes?id=1", 404),
            ("POST", "/notes?desc=hello_again&add_date=y", 201),
        ],
    )
    .await;
    assert_statuses(&c, &[("GET", "/calendar", 200)]).await;
    // The calendar goes down: the next add_date request fails with 503, an error trace.
    calendar.signal(libc::SIGTERM);
    calendar.wait_exit(WAIT).await;
    let reply = send(
        &client,
        "POST",
        &format!("{n}/notes?desc=late&add_date=y"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    let traces = agent
        .wait_for_traces(
            |t| {
                roots(t)
                    .iter()
                    .any(|(s, r)| s == "notes" && r == "POST /notes")
            },
            WAIT,
        )
        .await;
    // Stopping notes sends its last stats bucket (calendar's went at its own stop).
    notes.signal(libc::SIGTERM);
    notes.wait_exit(WAIT).await;

    // No priority-0 trace arrived after the warm-up: only the failed request's.
    let after: Vec<(String, String)> = roots(&agent.traces().await)
        .into_iter()
        .filter(|root| match before.iter().position(|b| b == root) {
            Some(i) => {
                before.remove(i);
                false
            }
            None => true,
        })
        .collect();
    let failed: Vec<&Vec<Value>> = traces
        .iter()
        .filter(|t| {
            t.iter()
                .any(|s| s["error"] == 1 && s["resource"] == "POST /notes")
        })
        .collect();
    assert_eq!(failed.len(), 1, "the failed request's trace: {traces:?}");
    assert_eq!(
        after,
        vec![("notes".to_string(), "POST /notes".to_string())],
        "priority-0 traces reached the agent"
    );
    let trace_posts = agent.trace_requests().await;
    assert!(
        trace_posts.iter().any(|r| {
            test_support::agent::request_header(r, "Datadog-Client-Computed-Stats") == Some("yes")
        }),
        "no trace payload says its stats were computed"
    );

    let stats = agent.stats().await;
    let counted = hits(&stats);
    let get = |service: &str, resource: &str, status: u64| {
        counted
            .get(&(service.to_string(), resource.to_string(), status))
            .copied()
            .unwrap_or((0, 0))
    };
    assert_eq!(get("notes", "GET /notes", 200), (2, 0), "{counted:?}");
    assert_eq!(get("notes", "GET /notes", 404), (1, 0), "{counted:?}");
    assert_eq!(get("notes", "POST /notes", 201), (2, 0), "{counted:?}");
    assert_eq!(get("notes", "POST /notes", 503), (1, 1), "{counted:?}");
    assert_eq!(get("notes", "PUT /notes", 200), (1, 0), "{counted:?}");
    assert_eq!(get("notes", "DELETE /notes", 200), (1, 0), "{counted:?}");
    assert_eq!(get("notes", "GET /", 200), (1, 0), "{counted:?}");
    assert_eq!(get("calendar", "GET /", 200), (1, 0), "{counted:?}");
    // calendar: its own GET /calendar and the one notes made for the add_date request.
    assert_eq!(get("calendar", "GET /calendar", 200), (2, 0), "{counted:?}");
    // notes' client span to calendar (kind client, service reqwest).
    assert_eq!(get("reqwest", "GET /calendar", 200).0, 1, "{counted:?}");
}
