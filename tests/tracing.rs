//! Traces as Datadog sees them: the real service binaries export to Datadog's test agent, and
//! the tests read back what it received.

use serde_json::Value;
use std::time::Duration;
use test_support::http::assert_statuses;
use test_support::{send, Reply, ServiceProcess, TestAgent};

const WAIT: Duration = Duration::from_secs(15);

/// Telemetry settings shared by every service in these tests.
fn dd_env(agent: &str) -> Vec<(&str, &str)> {
    vec![
        ("DD_TRACE_AGENT_URL", agent),
        ("DD_ENV", "Dev"),
        ("DD_VERSION", "0.1.0-RC1"),
        ("DD_TRACE_FLUSH_INTERVAL_MS", "200"),
        // Every trace sent, dropped decisions too (the test agent would let the services drop
        // priority-0 traces locally once they compute stats; tests/stats.rs covers that).
        ("DD_TRACE_STATS_COMPUTATION_ENABLED", "false"),
        ("HOST", "127.0.0.1"),
    ]
}

/// calendar + notes (on a fresh database), both exporting to `agent`.
async fn start_services(
    agent: &TestAgent,
    extra: &[(&str, &str)],
) -> (ServiceProcess, ServiceProcess) {
    test_support::calendar_and_notes(&dd_env(&agent.url()), extra).await
}

fn meta<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["meta"][key].as_str()
}

/// Asserts string tags (meta) of a span.
fn assert_tags(span: &Value, tags: &[(&str, &str)]) {
    for (k, v) in tags {
        assert_eq!(meta(span, k), Some(*v), "{k} on {span}");
    }
}

fn metric(span: &Value, key: &str) -> Option<f64> {
    span["metrics"][key].as_f64()
}

fn id(span: &Value, key: &str) -> u64 {
    span[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {span}"))
}

/// The first span matching `pred` in `spans`, or a panic showing them.
fn find<'a>(spans: &'a [Value], what: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    spans.iter().find(|s| pred(s)).unwrap_or_else(|| {
        panic!(
            "no {what} span among:\n{}",
            serde_json::to_string_pretty(spans).unwrap_or_default()
        )
    })
}

fn is(span: &Value, service: &str, name: &str, resource: &str) -> bool {
    span["service"] == service && span["name"] == name && span["resource"] == resource
}

/// The trace holding a span that matches `pred`.
async fn trace_with(agent: &TestAgent, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let traces = agent
        .wait_for_traces(|traces| traces.iter().any(|t| t.iter().any(&pred)), WAIT)
        .await;
    traces
        .into_iter()
        .find(|t| t.iter().any(&pred))
        .unwrap_or_default()
}

/// The trace holding the server spans of both services and a span matching `pred`: notes and
/// calendar send their chunks separately, so it may take two flushes to be whole.
async fn whole_distributed_trace(agent: &TestAgent, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let server = |t: &[Value], service: &str| {
        t.iter()
            .any(|s| s["service"] == service && s["name"] == "actix_web.request")
    };
    let whole = |t: &Vec<Value>| t.iter().any(&pred) && server(t, "notes") && server(t, "calendar");
    let traces = agent
        .wait_for_traces(|traces| traces.iter().any(whole), WAIT)
        .await;
    traces.into_iter().find(whole).unwrap_or_default()
}

fn assert_no_noise(span: &Value) {
    if let Some(meta) = span["meta"].as_object() {
        for key in meta.keys() {
            assert!(
                !(key.starts_with("code.")
                    || key.starts_with("thread.")
                    || key == "busy_ns"
                    || key == "idle_ns"
                    || key == "target"
                    || key.starts_with("otel.")
                    || key == "operation.name"
                    || key == "service.name"),
                "noise tag {key} on {span}"
            );
        }
    }
}

/// One request on a connection of its own (a new client each time).
async fn http(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    send(&reqwest::Client::new(), method, url, headers).await
}

#[tokio::test]
async fn post_with_a_date_is_one_trace_across_both_services() {
    let agent = TestAgent::start().await;
    let (_calendar, notes) = start_services(&agent, &[]).await;
    let Reply { status, body, .. } = http(
        "POST",
        &format!("{}/notes?desc=hello_again&add_date=y", notes.base_url()),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let trace = whole_distributed_trace(&agent, |s| s["resource"] == "POST /notes").await;
    let trace_id = id(&trace[0], "trace_id");
    assert!(
        trace.iter().all(|s| id(s, "trace_id") == trace_id),
        "one trace id"
    );

    let root = find(&trace, "notes server", |s| {
        is(s, "notes", "actix_web.request", "POST /notes")
    });
    assert_eq!(id(root, "parent_id"), 0);
    assert_eq!(root["type"], "web");
    assert_eq!(root["error"], 0);
    assert_tags(
        root,
        &[
            ("http.method", "POST"),
            ("http.route", "/notes"),
            ("http.status_code", "201"),
            ("span.kind", "server"),
            ("component", "actix-web"),
            ("env", "Dev"),
            ("version", "0.1.0-RC1"),
        ],
    );
    assert!(
        meta(root, "http.url").is_some_and(|u| u.ends_with("/notes?desc=hello_again&add_date=y")),
        "{root}"
    );
    let tid =
        meta(root, "_dd.p.tid").unwrap_or_else(|| panic!("_dd.p.tid on the notes root: {root}"));
    assert!(
        tid.len() == 16 && tid.bytes().all(|b| b.is_ascii_hexdigit()) && tid != "0000000000000000",
        "{tid}"
    );
    assert_eq!(metric(root, "_sampling_priority_v1"), Some(1.0));

    let helper = find(&trace, "another_process", |s| {
        is(s, "notes_helper", "notes_helper", "another_process")
    });
    assert_eq!(id(helper, "parent_id"), id(root, "span_id"));

    let client = find(&trace, "calendar client", |s| {
        is(s, "reqwest", "reqwest.request", "GET /calendar")
    });
    assert_eq!(client["type"], "http");
    assert_eq!(id(client, "parent_id"), id(root, "span_id"));
    assert_tags(
        client,
        &[
            ("span.kind", "client"),
            ("http.status_code", "200"),
            ("out.host", "127.0.0.1"),
            ("peer.service", "calendar"),
            ("_dd.base_service", "notes"),
        ],
    );
    assert!(meta(client, "http.url").is_some_and(|u| u.ends_with("/calendar")));
    assert!(
        helper["start"].as_u64() < client["start"].as_u64(),
        "another_process runs before the call"
    );

    let calendar_root = find(&trace, "calendar server", |s| {
        is(s, "calendar", "actix_web.request", "GET /calendar")
    });
    assert_eq!(
        id(calendar_root, "parent_id"),
        id(client, "span_id"),
        "calendar's parent is the notes client span"
    );
    assert_eq!(
        meta(calendar_root, "_dd.p.tid"),
        Some(tid),
        "same 128-bit trace id in calendar"
    );
    assert_eq!(meta(calendar_root, "http.status_code"), Some("200"));

    let insert = find(&trace, "insert", |s| {
        s["name"] == "postgres.query"
            && s["resource"]
                .as_str()
                .is_some_and(|r| r.starts_with("INSERT INTO notes"))
    });
    assert_eq!(insert["service"], "postgres");
    assert_eq!(insert["type"], "sql");
    assert_eq!(id(insert, "parent_id"), id(root, "span_id"));
    assert_tags(
        insert,
        &[
            ("db.system", "postgresql"),
            ("db.user", "postgres"),
            ("out.host", "127.0.0.1"),
            ("span.kind", "client"),
        ],
    );
    assert!(meta(insert, "db.name").is_some_and(|n| n.starts_with('t')));
    assert_eq!(metric(insert, "db.row_count"), Some(1.0));
    assert!(metric(insert, "network.destination.port").is_some_and(|p| p > 0.0));

    // As ddtrace: `env` everywhere, `version` only on the services' own spans (not on
    // `postgres`, `reqwest`, `notes_helper`); client spans measured; each process's local root
    // carries its `runtime-id` and `process_id`.
    for span in &trace {
        assert_no_noise(span);
        assert_eq!(meta(span, "env"), Some("Dev"), "{span}");
        let own = span["service"] == "notes" || span["service"] == "calendar";
        let version = own.then_some("0.1.0-RC1");
        assert_eq!(meta(span, "version"), version, "{span}");
    }
    assert_eq!(metric(client, "_dd.measured"), Some(1.0), "{client}");
    let runtime = |s: &Value| meta(s, "runtime-id").map(str::to_string);
    let (notes_rt, calendar_rt) = (runtime(root), runtime(calendar_root));
    assert!(notes_rt.as_ref().is_some_and(|r| r.len() == 36), "{root}");
    assert!(
        calendar_rt.is_some() && calendar_rt != notes_rt,
        "{calendar_root}"
    );
    assert!(
        metric(root, "process_id").is_some_and(|p| p > 0.0),
        "{root}"
    );
    assert_eq!(runtime(client), None, "only local roots carry runtime-id");
    assert_eq!(agent.trace_check_failures().await, None);
}

#[tokio::test]
async fn each_request_of_the_tutorial_has_its_spans() {
    let agent = TestAgent::start().await;
    let (_calendar, notes) = start_services(&agent, &[]).await;
    let base = notes.base_url();
    assert_statuses(
        &base,
        &[
            ("GET", "/notes", 200),
            ("POST", "/notes?desc=hello", 201),
            ("GET", "/notes?id=1", 200),
            ("PUT", "/notes?id=1&desc=UpdatedNote", 200),
            ("DELETE", "/notes?id=1", 200),
            ("GET", "/nope", 404),
            ("GET", "/notes?id=999", 404),
            ("PATCH", "/notes", 405),
        ],
    )
    .await;
    let server = |resource: &'static str, status: &'static str| {
        move |s: &Value| {
            s["service"] == "notes"
                && s["resource"] == resource
                && meta(s, "http.status_code") == Some(status)
        }
    };

    let list = trace_with(&agent, server("GET /notes", "200")).await;
    let list = if list
        .iter()
        .any(|s| s["name"] == "notes_helper.private_method_1")
    {
        list
    } else {
        // The list trace is the one with the helper spans.
        trace_with(&agent, |s| s["name"] == "notes_helper.private_method_1").await
    };
    let root = find(&list, "list root", server("GET /notes", "200"));
    let lrp = find(&list, "long_running_process", |s| {
        is(
            s,
            "notes_helper",
            "notes_helper.long_running_process",
            "long_running_process",
        )
    });
    assert_eq!(id(lrp, "parent_id"), id(root, "span_id"));
    let private = find(&list, "private step", |s| {
        s["resource"] == "private_method_1"
    });
    assert_eq!(
        id(private, "parent_id"),
        id(lrp, "span_id"),
        "the private step is a child of long_running_process"
    );
    find(&list, "another_process", |s| {
        is(s, "notes_helper", "notes_helper", "another_process")
    });
    find(&list, "list query", |s| {
        s["resource"] == "SELECT id, description FROM notes ORDER BY id"
    });

    for (resource, status, sql) in [
        (
            "POST /notes",
            "201",
            "INSERT INTO notes(description) VALUES ($1) RETURNING id",
        ),
        (
            "PUT /notes",
            "200",
            "UPDATE notes SET description = $1 WHERE id = $2",
        ),
        ("DELETE /notes", "200", "DELETE FROM notes WHERE id = $1"),
    ] {
        let trace = trace_with(&agent, server(resource, status)).await;
        let query = find(&trace, sql, |s| s["resource"] == sql);
        assert_eq!(query["name"], "postgres.query");
        assert_eq!(metric(query, "db.row_count"), Some(1.0), "{query}");
    }
    let get = trace_with(&agent, server("GET /notes", "404")).await;
    let q = find(&get, "select", |s| {
        s["resource"] == "SELECT id, description FROM notes WHERE id = $1"
    });
    assert_eq!(metric(q, "db.row_count"), Some(0.0));
    for (resource, status) in [
        ("GET 404", "404"),
        ("GET /notes", "404"),
        ("PATCH 405", "405"),
    ] {
        let trace = trace_with(&agent, server(resource, status)).await;
        let root = find(&trace, resource, server(resource, status));
        assert_eq!(root["error"], 0, "a 4xx is not an error: {root}");
        let route = if resource == "GET /notes" {
            Some("/notes")
        } else {
            None
        };
        assert_eq!(meta(root, "http.route"), route, "no route matched: {root}");
    }
    assert_eq!(agent.trace_check_failures().await, None);
}

#[tokio::test]
async fn failures_carry_error_type_and_message() {
    let agent = TestAgent::start().await;
    let url = agent.url();
    let db = test_support::fresh_database().await;
    let dead_calendar = format!("http://127.0.0.1:{}", test_support::free_port());
    let mut env = dd_env(&url);
    env.extend([
        ("DATABASE_URL", db.as_str()),
        ("CALENDAR_URL", dead_calendar.as_str()),
        ("CALENDAR_TIMEOUT_MS", "500"),
    ]);
    let notes = ServiceProcess::spawn("notes", &env).await;
    let base = notes.base_url();

    let Reply { status, body, .. } =
        http("POST", &format!("{base}/notes?desc=x&add_date=y"), &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (503, "Cannot reach calendar service.")
    );
    let trace = trace_with(&agent, |s| s["name"] == "reqwest.request").await;
    let root = find(&trace, "503 root", |s| s["resource"] == "POST /notes");
    assert_eq!(root["error"], 1);
    assert_eq!(meta(root, "http.status_code"), Some("503"));
    assert_eq!(meta(root, "error.type"), Some("notes::CalendarUnavailable"));
    assert!(
        meta(root, "error.message").is_some_and(|m| m.contains("calendar")),
        "{root}"
    );
    let client = find(&trace, "client", |s| s["name"] == "reqwest.request");
    assert_eq!(client["error"], 1);
    assert!(
        meta(client, "error.type").is_some_and(|t| t.starts_with("reqwest")),
        "{client}"
    );
    assert!(
        meta(client, "error.message").is_some_and(|m| !m.is_empty()),
        "{client}"
    );

    // A statement PostgreSQL rejects.
    let admin = test_support::connect(&db).await;
    let deadline = std::time::Instant::now() + WAIT;
    while admin
        .batch_execute("ALTER TABLE notes ADD CONSTRAINT no_boom CHECK (description <> 'boom')")
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the notes table never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        http("POST", &format!("{base}/notes?desc=boom"), &[])
            .await
            .status,
        500
    );
    let trace = trace_with(&agent, |s| s["name"] == "postgres.query" && s["error"] == 1).await;
    let query = find(&trace, "failed insert", |s| {
        s["name"] == "postgres.query" && s["error"] == 1
    });
    assert_eq!(
        meta(query, "error.type"),
        Some("tokio_postgres::error::DbError(23514)")
    );
    assert!(
        meta(query, "error.message").is_some_and(|m| m.contains("no_boom")),
        "{query}"
    );
    let root = find(&trace, "500 root", |s| s["resource"] == "POST /notes");
    assert_eq!(root["error"], 1);
    assert_eq!(meta(root, "error.type"), Some("notes::Internal"));
    assert_eq!(agent.trace_check_failures().await, None);
}

#[tokio::test]
async fn incoming_datadog_headers_are_continued_with_128_bit_ids_and_priority() {
    let agent = TestAgent::start().await;
    let (_calendar, notes) = start_services(&agent, &[]).await;
    let headers = [
        ("x-datadog-trace-id", "5277134972075981726"),
        ("x-datadog-parent-id", "16511978227091699246"),
        ("x-datadog-sampling-priority", "2"),
        ("x-datadog-tags", "_dd.p.dm=-0,_dd.p.tid=6b058a5d00000000"),
    ];
    let Reply { status, .. } = http(
        "POST",
        &format!("{}/notes?desc=continued&add_date=y", notes.base_url()),
        &headers,
    )
    .await;
    assert_eq!(status, 201);
    let trace = whole_distributed_trace(&agent, |s| id(s, "trace_id") == 5277134972075981726).await;
    let root = find(&trace, "notes root", |s| {
        s["service"] == "notes" && s["name"] == "actix_web.request"
    });
    assert_eq!(
        id(root, "parent_id"),
        16511978227091699246,
        "parent = the caller's span"
    );
    assert_eq!(meta(root, "_dd.p.tid"), Some("6b058a5d00000000"));
    assert_eq!(
        metric(root, "_sampling_priority_v1"),
        Some(2.0),
        "priority kept"
    );
    let calendar_root = find(&trace, "calendar root", |s| {
        s["service"] == "calendar" && s["name"] == "actix_web.request"
    });
    assert_eq!(meta(calendar_root, "_dd.p.tid"), Some("6b058a5d00000000"));
    assert_eq!(
        metric(calendar_root, "_sampling_priority_v1"),
        Some(2.0),
        "priority passed on"
    );
}

#[tokio::test]
async fn incoming_w3c_traceparent_is_continued() {
    let agent = TestAgent::start().await;
    let (_calendar, notes) = start_services(&agent, &[]).await;
    let headers = [
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("tracestate", "dd=s:2;o:rum,other=vendor"),
    ];
    assert_eq!(
        http("GET", &format!("{}/notes?id=7", notes.base_url()), &headers)
            .await
            .status,
        404
    );
    let low = 0x8448eb211c80319c_u64;
    let trace = trace_with(&agent, |s| id(s, "trace_id") == low).await;
    let root = find(&trace, "root", |s| s["name"] == "actix_web.request");
    assert_eq!(id(root, "parent_id"), 0xb7ad6b7169203331);
    assert_eq!(meta(root, "_dd.p.tid"), Some("0af7651916cd43dd"));
    assert_eq!(metric(root, "_sampling_priority_v1"), Some(2.0));
}

#[tokio::test]
async fn headers_without_priority_are_traced_and_dropped_decisions_are_honoured() {
    let agent = TestAgent::start().await;
    let (_calendar, notes) = start_services(&agent, &[]).await;
    let base = notes.base_url();
    let undecided = [
        ("x-datadog-trace-id", "3333"),
        ("x-datadog-parent-id", "4444"),
    ];
    assert_eq!(
        http("GET", &format!("{base}/"), &undecided).await.status,
        200
    );
    let trace = trace_with(&agent, |s| id(s, "trace_id") == 3333).await;
    assert_eq!(id(&trace[0], "parent_id"), 4444);
    assert_eq!(
        metric(&trace[0], "_sampling_priority_v1"),
        Some(1.0),
        "decided here: keep"
    );
    assert_eq!(meta(&trace[0], "_dd.p.dm"), Some("-0"));

    // A caller's drop decision (and its decision maker) is kept and passed on to calendar; the
    // spans still reach the Agent, which counts them in its stats and then drops them, as with
    // Datadog's tracers.
    let dropped = [
        ("x-datadog-trace-id", "1111"),
        ("x-datadog-parent-id", "2222"),
        ("x-datadog-sampling-priority", "-1"),
        ("x-datadog-tags", "_dd.p.dm=-4"),
    ];
    let Reply { status, .. } =
        http("POST", &format!("{base}/notes?desc=d&add_date=y"), &dropped).await;
    assert_eq!(status, 201);
    let trace = whole_distributed_trace(&agent, |s| id(s, "trace_id") == 1111).await;
    for service in ["notes", "calendar"] {
        let root = find(&trace, service, |s| {
            s["service"] == service && s["name"] == "actix_web.request"
        });
        assert_eq!(metric(root, "_sampling_priority_v1"), Some(-1.0), "{root}");
        assert_eq!(meta(root, "_dd.p.dm"), Some("-4"), "{root}");
    }
}

#[tokio::test]
async fn forged_trace_headers_start_a_new_trace_and_never_break_the_request() {
    let agent = TestAgent::start().await;
    let (_calendar, notes) = start_services(&agent, &[]).await;
    let base = notes.base_url();
    let huge_tags = format!("_dd.p.tid={},{}", "f".repeat(16), "k=v,".repeat(2000));
    let forged: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("x-datadog-trace-id", "garbage"),
            ("x-datadog-parent-id", "-1"),
        ],
        vec![("x-datadog-trace-id", "0"), ("x-datadog-parent-id", "0")],
        vec![
            ("x-datadog-trace-id", "99999999999999999999999"),
            ("x-datadog-parent-id", "1"),
        ],
        vec![(
            "traceparent",
            "00-00000000000000000000000000000000-0000000000000000-01",
        )],
        vec![("traceparent", "zz-not-a-traceparent")],
        vec![(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        )],
    ];
    for headers in &forged {
        let Reply { status, .. } = http("GET", &format!("{base}/notes?id=1"), headers).await;
        assert_eq!(status, 404, "{headers:?}");
    }
    let huge = [
        ("x-datadog-trace-id", "77"),
        ("x-datadog-parent-id", "88"),
        ("x-datadog-tags", huge_tags.as_str()),
    ];
    assert_eq!(
        http("GET", &format!("{base}/notes?id=1"), &huge)
            .await
            .status,
        404
    );
    let traces = agent
        .wait_for_traces(
            |t| {
                t.iter()
                    .filter(|t| t.iter().any(|s| s["resource"] == "GET /notes"))
                    .count()
                    > forged.len()
            },
            WAIT,
        )
        .await;
    for trace in traces
        .iter()
        .filter(|t| t.iter().any(|s| s["resource"] == "GET /notes"))
    {
        let root = find(trace, "root", |s| s["name"] == "actix_web.request");
        if id(root, "trace_id") == 77 {
            assert_eq!(id(root, "parent_id"), 88);
            assert!(
                meta(root, "_dd.p.tid").is_none(),
                "oversized tags are ignored: {root}"
            );
        } else {
            assert_eq!(
                id(root, "parent_id"),
                0,
                "forged headers start a new trace: {root}"
            );
        }
    }
}

#[tokio::test]
async fn sigterm_flushes_the_last_request_and_logs_carry_its_ids() {
    let agent = TestAgent::start().await;
    // A long flush interval: only the shutdown flush can deliver the span in time.
    let (_calendar, mut notes) =
        start_services(&agent, &[("DD_TRACE_FLUSH_INTERVAL_MS", "60000")]).await;
    let Reply { status, .. } = http("GET", &format!("{}/notes", notes.base_url()), &[]).await;
    assert_eq!(status, 200);
    notes.signal(libc::SIGTERM);
    let exit = notes
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("notes exits after SIGTERM");
    assert!(
        exit.success(),
        "exit status {exit:?}\n{}",
        notes.output_tail(20)
    );

    let trace = trace_with(&agent, |s| {
        s["service"] == "notes" && s["resource"] == "GET /notes"
    })
    .await;
    let root = find(&trace, "root", |s| s["resource"] == "GET /notes");
    let trace_id = id(root, "trace_id");
    let span_ids: Vec<u64> = trace.iter().map(|s| id(s, "span_id")).collect();
    let line = notes
        .logs()
        .into_iter()
        .find(|l| l["message"] == "Hello from the long running process")
        .unwrap_or_else(|| panic!("no helper log line in:\n{}", notes.output_tail(30)));
    assert_eq!(
        line["dd.trace_id"].as_str(),
        Some(trace_id.to_string().as_str()),
        "{line}"
    );
    let logged_span: u64 = line["dd.span_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("dd.span_id");
    assert!(span_ids.contains(&logged_span), "{line}");
    assert_eq!(line["dd.service"], "notes");
    assert_eq!(line["dd.env"], "Dev");
    assert_eq!(line["dd.version"], "0.1.0-RC1");
}

#[tokio::test]
async fn unified_tags_from_dd_tags_and_tracing_can_be_turned_off() {
    let agent = TestAgent::start().await;
    let url = agent.url();
    let mut env = dd_env(&url);
    env.extend([
        ("DD_TAGS", "team:apm,region:eu-west-1"),
        ("DD_SERVICE", "my-calendar"),
    ]);
    let on = ServiceProcess::spawn("calendar", &env).await;
    env.push(("DD_TRACE_ENABLED", "false"));
    let off = ServiceProcess::spawn("calendar", &env).await;
    assert_eq!(
        http("GET", &format!("{}/calendar", off.base_url()), &[])
            .await
            .status,
        200
    );
    assert_eq!(
        http("GET", &format!("{}/calendar", on.base_url()), &[])
            .await
            .status,
        200
    );
    let trace = trace_with(&agent, |s| s["name"] == "actix_web.request").await;
    let root = find(&trace, "root", |s| s["name"] == "actix_web.request");
    assert_eq!(root["service"], "my-calendar");
    assert_eq!(meta(root, "team"), Some("apm"));
    assert_eq!(meta(root, "region"), Some("eu-west-1"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let roots = agent
        .spans()
        .await
        .into_iter()
        .filter(|s| s["name"] == "actix_web.request")
        .count();
    assert_eq!(
        roots, 1,
        "the process with DD_TRACE_ENABLED=false sent nothing"
    );
    assert!(
        off.logs().iter().any(|l| l["message"] == "listening"),
        "logs still flow with tracing off"
    );
}

#[tokio::test]
async fn sqlite_statements_have_sqlite_query_spans_like_datadogs() {
    let agent = TestAgent::start().await;
    let url = agent.url();
    let calendar = ServiceProcess::spawn("calendar", &dd_env(&url)).await;
    let path = test_support::store::fresh_sqlite_path();
    let db = test_support::store::sqlite_url(&path);
    let calendar_url = calendar.base_url();
    let mut env = dd_env(&url);
    env.extend([
        ("DATABASE_URL", db.as_str()),
        ("CALENDAR_URL", calendar_url.as_str()),
        ("NOTES_HELPER_DELAY_SCALE", "0.01"),
    ]);
    let notes = ServiceProcess::spawn("notes", &env).await;
    let base = notes.base_url();
    let Reply { status, body, .. } =
        http("POST", &format!("{base}/notes?desc=hello&add_date=y"), &[]).await;
    assert_eq!(status, 201, "{body}");

    const INSERT: &str = "INSERT INTO notes(description) VALUES (?) RETURNING id";
    let trace = whole_distributed_trace(&agent, |s| s["resource"] == INSERT).await;
    let root = find(&trace, "notes server", |s| {
        is(s, "notes", "actix_web.request", "POST /notes")
    });
    let insert = find(&trace, "insert", |s| {
        is(s, "sqlite", "sqlite.query", INSERT)
    });
    assert_eq!(insert["type"], "sql");
    assert_eq!(insert["error"], 0);
    assert_eq!(id(insert, "parent_id"), id(root, "span_id"));
    assert_tags(
        insert,
        &[
            ("db.system", "sqlite"),
            ("span.kind", "client"),
            ("component", "rusqlite"),
            ("_dd.base_service", "notes"),
            ("env", "Dev"),
        ],
    );
    assert_eq!(metric(insert, "db.row_count"), Some(1.0));
    for absent in ["db.user", "out.host", "db.name"] {
        assert_eq!(meta(insert, absent), None, "{absent} on {insert}");
    }
    assert_eq!(metric(insert, "network.destination.port"), None);
    assert_no_noise(insert);

    let Reply { status, .. } = http("GET", &format!("{base}/notes?id=99"), &[]).await;
    assert_eq!(status, 404);
    let get = trace_with(&agent, |s| {
        s["resource"] == "SELECT id, description FROM notes WHERE id = ?"
    })
    .await;
    let select = find(&get, "select", |s| s["name"] == "sqlite.query");
    assert_eq!(metric(select, "db.row_count"), Some(0.0));

    // A statement SQLite refuses: the span carries the error, the client a bare 500.
    tokio::task::spawn_blocking(move || {
        test_support::store::open_sqlite(&path)
            .execute_batch(
                "CREATE TRIGGER no_boom BEFORE INSERT ON notes WHEN NEW.description = 'boom' \
                 BEGIN SELECT RAISE(ABORT, 'no_boom'); END",
            )
            .expect("create the trigger")
    })
    .await
    .unwrap();
    let Reply { status, body, .. } = http("POST", &format!("{base}/notes?desc=boom"), &[]).await;
    assert_eq!((status, body.as_str()), (500, "Internal server error"));
    let failed = trace_with(&agent, |s| s["name"] == "sqlite.query" && s["error"] == 1).await;
    let query = find(&failed, "failed insert", |s| {
        s["name"] == "sqlite.query" && s["error"] == 1
    });
    assert_eq!(query["resource"], INSERT);
    assert_eq!(
        meta(query, "error.type"),
        Some("rusqlite::ErrorCode::ConstraintViolation")
    );
    assert!(
        meta(query, "error.message").is_some_and(|m| m.contains("no_boom")),
        "{query}"
    );
    let root = find(&failed, "500 root", |s| s["resource"] == "POST /notes");
    assert_eq!(meta(root, "error.type"), Some("notes::Internal"));
    assert_eq!(agent.trace_check_failures().await, None);
}

/// The health checks (`GET /health`, every few seconds from Docker or an orchestrator) are not
/// traced by default, so they do not bury the traces a learner sends; `TRACE_HEALTH_CHECKS=true`
/// traces them.
#[tokio::test]
async fn health_checks_are_not_traced_unless_asked() {
    let agent = TestAgent::start().await;
    let (calendar, notes) = start_services(&agent, &[]).await;
    for base in [calendar.base_url(), notes.base_url()] {
        for _ in 0..3 {
            assert_eq!(
                http("GET", &format!("{base}/health"), &[]).await.status,
                200
            );
        }
        // A request after them, whose trace shows the health checks' would have been sent.
        assert_eq!(http("GET", &format!("{base}/"), &[]).await.status, 200);
    }
    let traces = agent
        .wait_for_traces(
            |ts| {
                ["notes", "calendar"].iter().all(|service| {
                    ts.iter().flatten().any(|s| {
                        s["service"] == *service && s["resource"] == "GET /" && s["parent_id"] == 0
                    })
                })
            },
            WAIT,
        )
        .await;
    // Let a last flush pass, then no span of any trace is a health check.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let spans = agent.spans().await;
    assert!(!spans.is_empty());
    assert!(
        spans.iter().all(|s| s["resource"] != "GET /health"),
        "{traces:?}"
    );
    drop((calendar, notes));

    agent.clear().await;
    let (_calendar, notes) = start_services(&agent, &[("TRACE_HEALTH_CHECKS", "true")]).await;
    assert_eq!(
        http("GET", &format!("{}/health", notes.base_url()), &[])
            .await
            .status,
        200
    );
    let trace = trace_with(&agent, |s| {
        is(s, "notes", "actix_web.request", "GET /health")
    })
    .await;
    // The server span alone: the health handler makes no spans of its own.
    assert_eq!(trace.len(), 1, "{trace:?}");
}

/// The start-up traces among `traces`: those whose root is notes' `notes.startup`.
fn startup_traces(traces: &[Vec<Value>]) -> Vec<&Vec<Value>> {
    traces
        .iter()
        .filter(|t| {
            t.iter()
                .any(|s| s["parent_id"] == 0 && s["name"] == "notes.startup")
        })
        .collect()
}

/// A fresh start of notes sends one start-up trace, as documented (docs/TUTORIAL.md, step 2):
/// root `notes.startup`, resource `bootstrap database`, service `notes`, the schema statements
/// as its children; no statement of the bootstrap is a trace of its own, and the first request's
/// trace holds only the request. With PostgreSQL (the advisory lock and `CREATE TABLE`) and with
/// SQLite (`CREATE TABLE`).
#[tokio::test]
async fn a_fresh_start_sends_one_start_up_trace() {
    for store in ["postgres", "sqlite"] {
        let agent = TestAgent::start().await;
        let url = agent.url();
        let db = test_support::fresh_database().await;
        let mut env = dd_env(&url);
        let statements: &[&str] = if store == "postgres" {
            env.push(("DATABASE_URL", db.as_str()));
            &[
                "SELECT pg_advisory_xact_lock(",
                "CREATE TABLE IF NOT EXISTS notes",
            ]
        } else {
            &["CREATE TABLE IF NOT EXISTS notes"]
        };
        let notes = ServiceProcess::spawn("notes", &env).await;
        assert_statuses(&notes.base_url(), &[("GET", "/notes", 200)]).await;
        agent
            .wait_for_traces(
                |ts| {
                    ts.iter()
                        .any(|t| t.iter().any(|s| s["resource"] == "GET /notes"))
                        && !startup_traces(ts).is_empty()
                },
                WAIT,
            )
            .await;
        // Two flush intervals more: a second start-up trace, if any, would have arrived.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let traces = agent.traces().await;
        let startup = startup_traces(&traces);
        assert_eq!(startup.len(), 1, "{store}: {traces:#?}");
        let trace = startup[0];
        let root = find(trace, "start-up root", |s| s["parent_id"] == 0);
        assert_eq!(root["service"], "notes", "{store}: {root}");
        assert_eq!(root["resource"], "bootstrap database", "{store}: {root}");
        assert_eq!(root["error"], 0, "{store}: {root}");
        assert_eq!(trace.len(), statements.len() + 1, "{store}: {trace:#?}");
        for statement in statements {
            let span = find(trace, statement, |s| {
                s["resource"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(statement))
            });
            assert_eq!(span["parent_id"], root["span_id"], "{store}: {span}");
            assert_eq!(span["service"], store, "{store}: {span}");
        }
        // Nothing else: the request's trace, without the bootstrap in it.
        assert_eq!(traces.len(), 2, "{store}: {traces:#?}");
        let request = traces
            .iter()
            .find(|t| t.iter().any(|s| s["resource"] == "GET /notes"))
            .expect("the request's trace");
        assert!(
            request.iter().all(|s| s["resource"]
                .as_str()
                .is_some_and(|r| !r.starts_with("CREATE") && !r.starts_with("SELECT pg_"))),
            "{store}: {request:#?}"
        );
        drop(notes);
    }
}
