//! Datadog semantics end to end (issue 11): the Agent's sampling rates, sampling rules, the rate
//! limit, propagation styles, baggage bounds, no secrets in `http.url`, header tags, the Agent
//! over a Unix socket, and start-up refusing bad values. The real notes binary exports to
//! Datadog's test agent; a stand-in calendar records the headers notes sends it.
//!
//! The services run with client-side stats off (`DD_TRACE_STATS_COMPUTATION_ENABLED=false`):
//! the test agent allows dropping priority-0 traces locally, and these tests look at the
//! decisions the dropped traces carry. `tests/stats.rs` tests the stats and the drop.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_support::{ServiceProcess, TestAgent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(20);

/// Notes on a fresh database, exporting to `agent`, calling `calendar`, plus `extra`.
async fn notes(agent: &str, calendar: &str, extra: &[(&str, &str)]) -> ServiceProcess {
    let db = test_support::fresh_database().await;
    let mut env = vec![
        ("DD_TRACE_AGENT_URL", agent),
        ("DD_ENV", "dev"),
        ("DD_VERSION", "0.1.0"),
        ("DD_TRACE_FLUSH_INTERVAL_MS", "100"),
        ("DD_TRACE_STATS_COMPUTATION_ENABLED", "false"),
        ("HOST", "127.0.0.1"),
        ("DATABASE_URL", db.as_str()),
        ("CALENDAR_URL", calendar),
        ("NOTES_HELPER_DELAY_SCALE", "0"),
    ];
    env.extend_from_slice(extra);
    ServiceProcess::spawn("notes", &env).await
}

/// Headers of each request a [`recording_calendar`] received, names lowercased.
type Recorded = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// A calendar stand-in answering a date, recording the headers of every request.
async fn recording_calendar() -> (String, Recorded) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let recorded: Recorded = Arc::default();
    let store = recorded.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let headers = text
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                store.lock().unwrap().push(headers);
                let body = "12/02/2026";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), recorded)
}

/// The status of one request on a connection of its own (a new client each time).
async fn http(method: &str, url: &str, headers: &[(&str, &str)]) -> u16 {
    test_support::send(&reqwest::Client::new(), method, url, headers)
        .await
        .status
}

/// Makes the test agent answer every trace post with these rates.
async fn set_agent_rates(agent: &TestAgent, rates: &str) {
    let mut url = reqwest::Url::parse(&format!("{}/test/session/start", agent.url())).unwrap();
    url.query_pairs_mut()
        .append_pair("agent_sample_rate_by_service", rates);
    let status = reqwest::get(url).await.expect("session start").status();
    assert!(status.is_success(), "session start answered {status}");
}

fn meta<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["meta"][key].as_str()
}

fn metric(span: &Value, key: &str) -> Option<f64> {
    span["metrics"][key].as_f64()
}

fn priority(span: &Value) -> Option<f64> {
    metric(span, "_sampling_priority_v1")
}

/// The notes server roots received so far with this resource.
async fn roots(agent: &TestAgent, resource: &str) -> Vec<Value> {
    agent
        .spans()
        .await
        .into_iter()
        .filter(|s| {
            s["service"] == "notes" && s["name"] == "actix_web.request" && s["resource"] == resource
        })
        .collect()
}

/// Waits until `n` notes roots with this resource arrived, and returns them.
async fn wait_roots(agent: &TestAgent, resource: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = roots(agent, resource).await;
        if found.len() >= n {
            return found;
        }
        if Instant::now() > deadline {
            panic!(
                "{n} root(s) {resource:?} expected, {} arrived: {found:?}",
                found.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Datadog's keep decision for a rate, computed here independently of the service.
fn keeps(trace_id_low: u64, rate: f64) -> bool {
    trace_id_low.wrapping_mul(1_111_111_111_111_111_111) <= (rate * u64::MAX as f64) as u64
}

/// Sends `GET /` until a trace decided by the Agent's rates arrives (the first answer of the
/// Agent comes with the first flush), then `n` more; returns those `n` roots.
async fn roots_under_agent_rates(
    agent: &TestAgent,
    notes: &ServiceProcess,
    n: usize,
) -> Vec<Value> {
    let url = format!("{}/", notes.base_url());
    let deadline = Instant::now() + WAIT;
    loop {
        assert_eq!(http("GET", &url, &[]).await, 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let decided = roots(agent, "GET /")
            .await
            .iter()
            .any(|s| meta(s, "_dd.p.dm") == Some("-1"));
        if decided {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Agent's rates were never applied"
        );
    }
    agent.clear().await;
    for _ in 0..n {
        assert_eq!(http("GET", &url, &[]).await, 200);
    }
    wait_roots(agent, "GET /", n).await
}

#[tokio::test]
async fn the_agents_rates_decide_and_an_incoming_decision_is_kept() {
    let agent = TestAgent::start().await;
    let (calendar, _) = recording_calendar().await;
    set_agent_rates(&agent, r#"{"service:notes,env:dev":0,"service:,env:":1}"#).await;
    let notes = notes(&agent.url(), &calendar, &[]).await;

    // Before any answer of the Agent: kept, default mechanism, no rate tag.
    assert_eq!(
        http("GET", &format!("{}/", notes.base_url()), &[]).await,
        200
    );
    let first = wait_roots(&agent, "GET /", 1).await;
    assert_eq!(priority(&first[0]), Some(1.0), "{}", first[0]);
    assert_eq!(meta(&first[0], "_dd.p.dm"), Some("-0"));
    assert_eq!(metric(&first[0], "_dd.agent_psr"), None);

    // Rate 0 for notes: every trace dropped by the Agent's rate.
    for root in roots_under_agent_rates(&agent, &notes, 5).await {
        assert_eq!(priority(&root), Some(0.0), "{root}");
        assert_eq!(meta(&root, "_dd.p.dm"), Some("-1"));
        assert_eq!(metric(&root, "_dd.agent_psr"), Some(0.0));
    }

    // A trace arriving with a decision keeps it, whatever the rate.
    agent.clear().await;
    let status = http(
        "GET",
        &format!("{}/", notes.base_url()),
        &[
            ("x-datadog-trace-id", "4242"),
            ("x-datadog-parent-id", "17"),
            ("x-datadog-sampling-priority", "2"),
            ("x-datadog-tags", "_dd.p.dm=-4"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let root = &wait_roots(&agent, "GET /", 1).await[0];
    assert_eq!(priority(root), Some(2.0), "{root}");
    assert_eq!(meta(root, "_dd.p.dm"), Some("-4"));
    assert_eq!(metric(root, "_dd.agent_psr"), None);

    // Rate 0.5: each trace's fate is Datadog's hash of its id; rate 1 on the default key.
    set_agent_rates(&agent, r#"{"service:notes,env:dev":0.5,"service:,env:":1}"#).await;
    let mut kept = 0;
    for _ in 0..3 {
        // The new rates arrive with the next answer: wait for a trace showing them.
        let batch = roots_under_agent_rates(&agent, &notes, 20).await;
        if batch
            .iter()
            .all(|r| metric(r, "_dd.agent_psr") == Some(0.5))
        {
            for root in &batch {
                let id = root["trace_id"].as_u64().unwrap();
                let expected = if keeps(id, 0.5) { 1.0 } else { 0.0 };
                assert_eq!(priority(root), Some(expected), "{root}");
                kept += expected as usize;
            }
            break;
        }
    }
    assert!(kept > 0 && kept < 20, "rate 0.5 kept {kept} of 20");

    set_agent_rates(&agent, r#"{"service:,env:":1}"#).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let batch = roots_under_agent_rates(&agent, &notes, 3).await;
        if batch
            .iter()
            .all(|r| metric(r, "_dd.agent_psr") == Some(1.0))
        {
            assert!(batch.iter().all(|r| priority(r) == Some(1.0)));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the default key's rate was never applied"
        );
    }
    assert_eq!(agent.trace_check_failures().await, None);
}

#[tokio::test]
async fn rules_by_service_resource_and_tags_decide_before_the_outgoing_call() {
    let agent = TestAgent::start().await;
    let (calendar, recorded) = recording_calendar().await;
    let rules = r#"[
        {"service":"notes","resource":"GET /notes","sample_rate":0},
        {"name":"actix_web.request","tags":{"http.method":"P?ST","http.route":"/no*"},"sample_rate":1},
        {"service":"calendar","sample_rate":0}
    ]"#;
    let notes = notes(
        &agent.url(),
        &calendar,
        &[("DD_TRACE_SAMPLING_RULES", rules)],
    )
    .await;
    let base = notes.base_url();
    assert_eq!(http("GET", &format!("{base}/notes"), &[]).await, 200);
    assert_eq!(
        http("POST", &format!("{base}/notes?desc=a&add_date=y"), &[]).await,
        201
    );
    assert_eq!(http("GET", &format!("{base}/"), &[]).await, 200);

    let dropped = &wait_roots(&agent, "GET /notes", 1).await[0];
    assert_eq!(priority(dropped), Some(-1.0), "{dropped}");
    assert_eq!(meta(dropped, "_dd.p.dm"), Some("-3"));
    assert_eq!(metric(dropped, "_dd.rule_psr"), Some(0.0));
    assert_eq!(
        metric(dropped, "_dd.limit_psr"),
        None,
        "only kept traces are limited"
    );

    // Kept by the rule on tags: the server span has its route from the start.
    let kept = &wait_roots(&agent, "POST /notes", 1).await[0];
    assert_eq!(priority(kept), Some(2.0), "{kept}");
    assert_eq!(meta(kept, "_dd.p.dm"), Some("-3"));
    assert_eq!(metric(kept, "_dd.rule_psr"), Some(1.0));
    assert_eq!(metric(kept, "_dd.limit_psr"), Some(1.0));
    // The decision went out with the call to calendar.
    let sent = recorded.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["x-datadog-sampling-priority"], "2");
    assert!(
        sent[0]["x-datadog-tags"].contains("_dd.p.dm=-3"),
        "{sent:?}"
    );
    assert!(sent[0]["tracestate"].starts_with("dd=s:2;"), "{sent:?}");

    // No rule matched: the default decision (the test agent sends no rates).
    let other = &wait_roots(&agent, "GET /", 1).await[0];
    assert_eq!(priority(other), Some(1.0), "{other}");
    assert_eq!(meta(other, "_dd.p.dm"), Some("-0"));
    assert_eq!(metric(other, "_dd.rule_psr"), None);
}

#[tokio::test]
async fn a_rule_on_resource_sees_the_405_resource_of_an_unrouted_method() {
    let agent = TestAgent::start().await;
    let (calendar, _) = recording_calendar().await;
    // The trace is decided when its root starts: the rule on `PATCH /notes` (first) must not
    // match it, the one on `PATCH 405` must.
    let rules = r#"[
        {"resource":"PATCH /notes","sample_rate":1},
        {"resource":"PATCH 405","sample_rate":0}
    ]"#;
    let on_405 = notes(
        &agent.url(),
        &calendar,
        &[("DD_TRACE_SAMPLING_RULES", rules)],
    )
    .await;
    // Rules on the routed resources only: the 405 is not theirs.
    let rules = r#"[{"resource":"GET /notes","sample_rate":0}]"#;
    let on_get = notes(
        &agent.url(),
        &calendar,
        &[
            ("DD_SERVICE", "notes-get"),
            ("DD_TRACE_SAMPLING_RULES", rules),
        ],
    )
    .await;
    for service in [&on_405, &on_get] {
        let base = service.base_url();
        assert_eq!(http("PATCH", &format!("{base}/notes"), &[]).await, 405);
        assert_eq!(http("GET", &format!("{base}/notes"), &[]).await, 200);
    }
    let dropped = one_root(&agent, "notes", "PATCH 405").await;
    assert_eq!(meta(&dropped, "http.status_code"), Some("405"), "{dropped}");
    assert_eq!(meta(&dropped, "http.route"), None, "{dropped}");
    assert_eq!(priority(&dropped), Some(-1.0), "{dropped}");
    assert_eq!(meta(&dropped, "_dd.p.dm"), Some("-3"));
    assert_eq!(metric(&dropped, "_dd.rule_psr"), Some(0.0), "{dropped}");
    // The routed request is no rule's: the default decision.
    let get = one_root(&agent, "notes", "GET /notes").await;
    assert_eq!(priority(&get), Some(1.0), "{get}");
    assert_eq!(meta(&get, "_dd.p.dm"), Some("-0"));
    assert_eq!(metric(&get, "_dd.rule_psr"), None);

    let untouched = one_root(&agent, "notes-get", "PATCH 405").await;
    assert_eq!(priority(&untouched), Some(1.0), "{untouched}");
    assert_eq!(meta(&untouched, "_dd.p.dm"), Some("-0"));
    assert_eq!(metric(&untouched, "_dd.rule_psr"), None, "{untouched}");
    let get = one_root(&agent, "notes-get", "GET /notes").await;
    assert_eq!(priority(&get), Some(-1.0), "the GET rule applies: {get}");
    assert_eq!(metric(&get, "_dd.rule_psr"), Some(0.0));

    // Calendar registers its routes the same way.
    let rules = r#"[{"resource":"POST /calendar","sample_rate":1},{"resource":"POST 405","sample_rate":0}]"#;
    let calendar = ServiceProcess::spawn(
        "calendar",
        &[
            ("DD_TRACE_AGENT_URL", agent.url().as_str()),
            ("DD_TRACE_FLUSH_INTERVAL_MS", "100"),
            ("DD_TRACE_STATS_COMPUTATION_ENABLED", "false"),
            ("HOST", "127.0.0.1"),
            ("DD_TRACE_SAMPLING_RULES", rules),
        ],
    )
    .await;
    let url = format!("{}/calendar", calendar.base_url());
    assert_eq!(http("POST", &url, &[]).await, 405);
    let dropped = one_root(&agent, "calendar", "POST 405").await;
    assert_eq!(priority(&dropped), Some(-1.0), "{dropped}");
    assert_eq!(metric(&dropped, "_dd.rule_psr"), Some(0.0), "{dropped}");
    assert_eq!(agent.trace_check_failures().await, None);
}

/// Waits for the one server root of `service` with this resource, and returns it.
async fn one_root(agent: &TestAgent, service: &str, resource: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let found: Vec<Value> = agent
            .spans()
            .await
            .into_iter()
            .filter(|s| {
                s["service"] == service
                    && s["name"] == "actix_web.request"
                    && s["resource"] == resource
            })
            .collect();
        match found.as_slice() {
            [root] => return root.clone(),
            [] if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => panic!("one {service} root {resource:?} expected: {found:?}"),
        }
    }
}

#[tokio::test]
async fn the_rate_limit_caps_rule_kept_traces_under_a_burst() {
    let agent = TestAgent::start().await;
    let (calendar, _) = recording_calendar().await;
    let notes = notes(
        &agent.url(),
        &calendar,
        &[("DD_TRACE_SAMPLE_RATE", "1"), ("DD_TRACE_RATE_LIMIT", "2")],
    )
    .await;
    let url = format!("{}/", notes.base_url());
    let started = Instant::now();
    let burst: Vec<_> = (0..30)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { http("GET", &url, &[]).await })
        })
        .collect();
    for request in burst {
        assert_eq!(request.await.unwrap(), 200);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let roots = wait_roots(&agent, "GET /", 30).await;
    let limited: Vec<&Value> = roots.iter().filter(|r| priority(r) == Some(-1.0)).collect();
    let kept_here = roots.iter().filter(|r| priority(r) == Some(2.0)).count();
    assert_eq!(kept_here + limited.len(), 30, "{roots:?}");
    // Every local root decided by a rule takes a token, the start-up's schema query included:
    // together they got at least the bucket's 2.
    let kept = agent
        .spans()
        .await
        .iter()
        .filter(|s| metric(s, "_dd.rule_psr").is_some() && priority(s) == Some(2.0))
        .count();
    assert!(kept >= 2, "only {kept} rule-kept traces");
    // The burst got at most a full bucket of 2, plus 2 per second of its duration.
    let allowed = 2.0 + 2.0 * elapsed + 1.0;
    assert!(
        kept_here as f64 <= allowed,
        "kept {kept_here} of the burst in {elapsed:.2} s"
    );
    assert!(
        limited.len() as f64 >= 30.0 - allowed,
        "{} limited",
        limited.len()
    );
    for root in &limited {
        assert_eq!(meta(root, "_dd.p.dm"), Some("-3"), "{root}");
        assert_eq!(metric(root, "_dd.rule_psr"), Some(1.0));
        let psr = metric(root, "_dd.limit_psr").unwrap_or(1.0);
        assert!(psr < 1.0 && psr > 0.0, "{root}");
    }
}

#[tokio::test]
async fn secrets_in_urls_are_redacted_and_header_tags_are_added() {
    let agent = TestAgent::start().await;
    let (calendar, _) = recording_calendar().await;
    // User information in the calendar URL must not reach the client span either.
    let calendar_with_user = calendar.replace("http://", "http://admin:s3cret@");
    let notes = notes(
        &agent.url(),
        &calendar_with_user,
        &[(
            "DD_TRACE_HEADER_TAGS",
            "X-Request-ID, content-type:http.content_type",
        )],
    )
    .await;
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    let url = format!(
        "{}/notes?desc=hello&password=hunter2&api_key=ABCDEF&session={jwt}&add_date=y",
        notes.base_url()
    );
    assert_eq!(http("POST", &url, &[("x-request-id", "req-42")]).await, 201);
    let root = &wait_roots(&agent, "POST /notes", 1).await[0];
    let logged = meta(root, "http.url").unwrap_or_default();
    assert!(
        logged.ends_with("/notes?desc=hello&<redacted>&<redacted>&session=<redacted>&add_date=y"),
        "{logged}"
    );
    for secret in ["hunter2", "ABCDEF", "eyJ"] {
        assert!(!root.to_string().contains(secret), "{secret} in {root}");
    }
    assert_eq!(
        meta(root, "http.request.headers.x-request-id"),
        Some("req-42")
    );
    assert_eq!(
        meta(root, "http.content_type"),
        Some("text/plain; charset=utf-8"),
        "response header on the server span: {root}"
    );

    let trace = agent
        .wait_for_traces(
            |t| t.iter().flatten().any(|s| s["name"] == "reqwest.request"),
            WAIT,
        )
        .await;
    let client = trace
        .iter()
        .flatten()
        .find(|s| s["name"] == "reqwest.request")
        .unwrap();
    let client_url = meta(client, "http.url").unwrap_or_default();
    assert!(client_url.ends_with("/calendar"), "{client}");
    assert!(!client.to_string().contains("s3cret"), "{client}");
    assert_eq!(
        meta(client, "http.content_type"),
        Some("text/plain"),
        "response header on the client span: {client}"
    );
}

#[tokio::test]
async fn b3_and_baggage_in_and_out_within_datadogs_bounds() {
    let agent = TestAgent::start().await;
    let (calendar, recorded) = recording_calendar().await;
    let notes = notes(
        &agent.url(),
        &calendar,
        &[
            ("DD_TRACE_PROPAGATION_STYLE_EXTRACT", "b3,baggage"),
            ("DD_TRACE_PROPAGATION_STYLE_INJECT", "b3multi,b3,baggage"),
        ],
    )
    .await;
    let url = format!("{}/notes?desc=b3&add_date=y", notes.base_url());
    let b3 = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d";
    let status = http(
        "POST",
        &url,
        &[
            ("b3", b3),
            ("baggage", "user.id=42,team=apm%20rust"),
            // Not an extract style here: ignored.
            ("x-datadog-trace-id", "1"),
            ("x-datadog-parent-id", "2"),
        ],
    )
    .await;
    assert_eq!(status, 201);
    let root = &wait_roots(&agent, "POST /notes", 1).await[0];
    assert_eq!(
        root["trace_id"].as_u64(),
        Some(0x64fe8b2a57d3eff7),
        "{root}"
    );
    assert_eq!(meta(root, "_dd.p.tid"), Some("80f198ee56343ba8"));
    assert_eq!(root["parent_id"].as_u64(), Some(0xe457b5a2e4d86bd1));
    assert_eq!(priority(root), Some(2.0), "b3 debug reads as user keep");

    let sent = recorded.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let out = &sent[0];
    assert_eq!(out["x-b3-traceid"], "80f198ee56343ba864fe8b2a57d3eff7");
    assert_eq!(out["x-b3-flags"], "1");
    assert_eq!(out["x-b3-spanid"].len(), 16);
    assert!(
        out["b3"].starts_with("80f198ee56343ba864fe8b2a57d3eff7-"),
        "{out:?}"
    );
    assert!(out["b3"].ends_with("-d"), "{out:?}");
    assert_eq!(out["baggage"], "user.id=42,team=apm%20rust");
    for absent in ["x-datadog-trace-id", "traceparent", "tracestate"] {
        assert!(!out.contains_key(absent), "{absent} sent: {out:?}");
    }

    // Baggage beyond 64 members is cut; a malformed member drops it all.
    let many: Vec<String> = (0..100).map(|i| format!("k{i}=v{i}")).collect();
    let _ = http("POST", &url, &[("baggage", &many.join(","))]).await;
    let _ = http("POST", &url, &[("baggage", "good=1,bad")]).await;
    let huge = format!("a=1,big={}", "x".repeat(10_000));
    let _ = http("POST", &url, &[("baggage", &huge)]).await;
    let sent = recorded.lock().unwrap().clone();
    assert_eq!(sent.len(), 4, "{sent:?}");
    let members: Vec<&str> = sent[1]["baggage"].split(',').collect();
    assert_eq!(members.len(), 64);
    assert_eq!(members[63], "k63=v63");
    assert!(!sent[2].contains_key("baggage"), "{:?}", sent[2]);
    assert_eq!(sent[3].get("baggage").map(String::as_str), Some("a=1"));
    // Without incoming b3 headers, a new trace starts and still goes out in b3.
    assert!(sent[1]["x-b3-traceid"].len() == 32 && sent[1]["x-b3-sampled"] == "1");
}

/// Incoming Datadog and W3C headers of one trace, with baggage (test_extract_behavior.py's).
const ONE_TRACE_AND_BAGGAGE: [(&str, &str); 7] = [
    ("x-datadog-trace-id", "1"),
    ("x-datadog-parent-id", "1"),
    ("x-datadog-sampling-priority", "2"),
    ("x-datadog-tags", "_dd.p.tid=1111111111111111,_dd.p.dm=-4"),
    (
        "traceparent",
        "00-11111111111111110000000000000001-0000000000000001-01",
    ),
    ("tracestate", "dd=s:2;t.dm:-4,foo=1"),
    ("baggage", "user.id=42"),
];

/// The `_dd.span_links` tag of a span, parsed (`Null` without one).
fn span_links(span: &Value) -> Value {
    meta(span, "_dd.span_links")
        .map(|json| serde_json::from_str(json).expect("_dd.span_links is JSON"))
        .unwrap_or(Value::Null)
}

/// `POST /notes?add_date=y` with [`ONE_TRACE_AND_BAGGAGE`] through notes run with `extra`:
/// the spans of the trace whose root is the notes server span, and the headers notes sent the
/// calendar.
async fn extracted_with(extra: &[(&str, &str)]) -> (Vec<Value>, HashMap<String, String>) {
    let agent = TestAgent::start().await;
    let (calendar, recorded) = recording_calendar().await;
    let notes = notes(&agent.url(), &calendar, extra).await;
    let url = format!("{}/notes?desc=extract&add_date=y", notes.base_url());
    assert_eq!(http("POST", &url, &ONE_TRACE_AND_BAGGAGE).await, 201);
    let root = wait_roots(&agent, "POST /notes", 1).await.remove(0);
    let trace: Vec<Value> = agent
        .spans()
        .await
        .into_iter()
        .filter(|s| s["trace_id"] == root["trace_id"])
        .collect();
    let sent = recorded.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let root_id = root["span_id"].clone();
    let mut spans = vec![root];
    spans.extend(trace.into_iter().filter(|s| s["span_id"] != root_id));
    (spans, sent[0].clone())
}

/// DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT=restart through the actix integration: a new trace,
/// its root linked to the incoming context (and only the root), the baggage passed on.
#[tokio::test]
async fn restart_starts_a_new_trace_linked_to_the_incoming_one_and_keeps_the_baggage() {
    let (spans, sent) =
        extracted_with(&[("DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT", "restart")]).await;
    let root = &spans[0];
    assert_ne!(root["trace_id"].as_u64(), Some(1), "{root}");
    assert_eq!(root["parent_id"].as_u64().unwrap_or(0), 0, "{root}");
    assert_ne!(meta(root, "_dd.p.tid"), Some("1111111111111111"));
    assert_eq!(
        span_links(root),
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
    assert!(spans.len() > 2, "{spans:?}");
    for span in &spans[1..] {
        assert_eq!(span_links(span), Value::Null, "{span}");
    }
    assert_eq!(sent.get("baggage").map(String::as_str), Some("user.id=42"));
    assert_eq!(
        sent.get("x-datadog-trace-id")
            .and_then(|t| t.parse::<u64>().ok()),
        root["trace_id"].as_u64(),
        "{sent:?}"
    );
}

/// DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT=ignore: a new trace, no link, no baggage.
#[tokio::test]
async fn ignore_keeps_nothing_of_the_incoming_headers() {
    let (spans, sent) =
        extracted_with(&[("DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT", "ignore")]).await;
    let root = &spans[0];
    assert_ne!(root["trace_id"].as_u64(), Some(1), "{root}");
    assert_eq!(root["parent_id"].as_u64().unwrap_or(0), 0, "{root}");
    assert_eq!(span_links(root), Value::Null);
    assert!(!sent.contains_key("baggage"), "{sent:?}");
    assert_eq!(meta(root, "baggage.user.id"), None);
}

/// The default (continue): the Datadog context is continued; W3C headers of another trace
/// become the root's `terminated_context` link, with their tracestate.
#[tokio::test]
async fn a_context_of_another_trace_becomes_a_terminated_context_link() {
    let agent = TestAgent::start().await;
    let (calendar, _recorded) = recording_calendar().await;
    let notes = notes(&agent.url(), &calendar, &[]).await;
    let headers = [
        ("x-datadog-trace-id", "2"),
        ("x-datadog-parent-id", "2"),
        ("x-datadog-sampling-priority", "2"),
        ("x-datadog-tags", "_dd.p.tid=1111111111111111,_dd.p.dm=-4"),
        (
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-01",
        ),
        ("tracestate", "dd=s:2;o:rum,foo=1"),
    ];
    let url = format!("{}/notes?desc=two&add_date=y", notes.base_url());
    assert_eq!(http("POST", &url, &headers).await, 201);
    let root = &wait_roots(&agent, "POST /notes", 1).await[0];
    assert_eq!(root["trace_id"].as_u64(), Some(2), "{root}");
    assert_eq!(root["parent_id"].as_u64(), Some(2), "{root}");
    assert_eq!(
        span_links(root),
        serde_json::json!([{
            "trace_id": "12345678901234567890123456789012",
            "span_id": "1234567890123456",
            "attributes": {
                "reason": "terminated_context",
                "context_headers": "tracecontext"
            },
            "tracestate": "dd=s:2;p:1234567890123456;o:rum;t.tid:1234567890123456,foo=1",
            "flags": 1
        }])
    );
}

#[tokio::test]
async fn new_settings_with_bad_values_stop_start_up_naming_the_variable() {
    for (var, value) in [
        ("DD_TRACE_SAMPLING_RULES", r#"[{"service":"notes"}]"#),
        ("DD_TRACE_SAMPLING_RULES", "[{"),
        ("DD_TRACE_RATE_LIMIT", "lots"),
        ("DD_TRACE_PROPAGATION_STYLE", "jaeger"),
        // `none` beside other styles is ignored, as Datadog's tracers do: an unknown style is not.
        ("DD_TRACE_PROPAGATION_STYLE_EXTRACT", "b3,zipkin"),
        ("DD_TRACE_PROPAGATION_EXTRACT_FIRST", "sometimes"),
        ("DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT", "drop"),
        ("DD_TRACE_PROPAGATION_STYLE_INJECT", "w3c"),
        ("DD_TRACE_OBFUSCATION_QUERY_STRING_REGEXP", "(unclosed"),
        ("DD_TRACE_HEADER_TAGS", ":no-header"),
        ("DD_TRACE_AGENT_URL", "unix://relative/apm.socket"),
        // No TLS is built in: refused rather than failing every send.
        ("DD_TRACE_AGENT_URL", "https://datadog-agent:8126"),
        ("CALENDAR_URL", "https://calendar:9090"),
    ] {
        test_support::service::assert_bad_setting_stops_start_up("notes", var, value);
    }
}

#[tokio::test]
async fn traces_reach_the_agent_over_a_unix_socket() {
    let agent = TestAgent::start_with_socket().await;
    let socket = agent.socket().expect("socket").display().to_string();
    let deadline = Instant::now() + WAIT;
    while !std::path::Path::new(&socket).exists() {
        assert!(
            Instant::now() < deadline,
            "the test agent never made {socket}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (calendar, _) = recording_calendar().await;
    set_agent_rates(&agent, r#"{"service:notes,env:dev":0}"#).await;
    let url = format!("unix://{socket}");
    let notes = notes(&url, &calendar, &[]).await;
    // Traces arrive through the socket, and the Agent's answer comes back through it too.
    let roots = roots_under_agent_rates(&agent, &notes, 2).await;
    for root in &roots {
        assert_eq!(priority(root), Some(0.0), "{root}");
        assert_eq!(metric(root, "_dd.agent_psr"), Some(0.0));
    }
    let requests = agent.trace_requests().await;
    assert!(!requests.is_empty());
}

#[tokio::test]
async fn b3multi_in_and_only_the_configured_styles_out() {
    let agent = TestAgent::start().await;
    let (calendar, recorded) = recording_calendar().await;
    let datadog_out = notes(
        &agent.url(),
        &calendar,
        &[
            ("DD_TRACE_PROPAGATION_STYLE_EXTRACT", "b3multi"),
            ("DD_TRACE_PROPAGATION_STYLE_INJECT", "datadog"),
        ],
    )
    .await;
    let w3c_out = notes(
        &agent.url(),
        &calendar,
        &[("DD_TRACE_PROPAGATION_STYLE", "tracecontext")],
    )
    .await;
    let b3 = [
        ("x-b3-traceid", "64fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-sampled", "1"),
        ("baggage", "user.id=42"),
    ];
    for service in [&datadog_out, &w3c_out] {
        let url = format!("{}/notes?desc=styles&add_date=y", service.base_url());
        assert_eq!(http("POST", &url, &b3).await, 201);
    }
    let sent = recorded.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    // b3multi in, datadog out: the same trace, only x-datadog-* headers, no baggage.
    let out = &sent[0];
    assert_eq!(
        out["x-datadog-trace-id"],
        0x64fe8b2a57d3eff7_u64.to_string()
    );
    assert_eq!(out["x-datadog-sampling-priority"], "1");
    for absent in ["traceparent", "x-b3-traceid", "b3", "baggage"] {
        assert!(!out.contains_key(absent), "{absent} sent: {out:?}");
    }
    // tracecontext only: b3 is not read (a new trace), only traceparent/tracestate go out.
    let out = &sent[1];
    assert!(out["traceparent"].starts_with("00-"), "{out:?}");
    assert!(!out["traceparent"].contains("64fe8b2a57d3eff7"), "{out:?}");
    for absent in ["x-datadog-trace-id", "x-b3-traceid", "baggage"] {
        assert!(!out.contains_key(absent), "{absent} sent: {out:?}");
    }
    let roots = wait_roots(&agent, "POST /notes", 2).await;
    assert!(
        roots
            .iter()
            .any(|r| r["trace_id"].as_u64() == Some(0x64fe8b2a57d3eff7)
                && r["parent_id"].as_u64() == Some(0xe457b5a2e4d86bd1)),
        "{roots:?}"
    );
}
