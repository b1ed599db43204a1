//! Outages and load: the agent down or slow, the database blinking under writes, concurrent
//! writers on the same ids, shutdown with requests in flight, and request limits.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::inprocess::{spawn_calendar, spawn_notes, spawn_notes_behind_proxy};
use test_support::{send, Reply, ServiceProcess, TestAgent};

const WAIT: Duration = Duration::from_secs(15);

async fn notes_process(agent_url: &str, extra: &[(&str, &str)]) -> ServiceProcess {
    let db = test_support::fresh_database().await;
    let calendar = format!("http://127.0.0.1:{}", test_support::free_port());
    let mut env = vec![
        ("DD_TRACE_AGENT_URL", agent_url),
        ("DD_TRACE_FLUSH_INTERVAL_MS", "200"),
        ("DATABASE_URL", db.as_str()),
        ("CALENDAR_URL", calendar.as_str()),
        ("NOTES_HELPER_DELAY_SCALE", "0"),
        ("HOST", "127.0.0.1"),
    ];
    env.extend_from_slice(extra);
    ServiceProcess::spawn("notes", &env).await
}

/// Sends `count` requests one after the other; returns the slowest.
async fn slowest_of(client: &reqwest::Client, url: &str, count: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..count {
        let started = Instant::now();
        let Reply { status, body, .. } = send(client, "GET", url, &[]).await;
        assert_eq!(status, 200, "{body}");
        worst = worst.max(started.elapsed());
    }
    worst
}

fn count_logs(process: &ServiceProcess, message: &str) -> usize {
    process
        .logs()
        .iter()
        .filter(|l| {
            l["message"].as_str().is_some_and(|m| m.contains(message))
                || l["name"].as_str() == Some(message)
        })
        .count()
}

fn is_root(span: &Value, resource: &str) -> bool {
    span["resource"] == resource && span["name"] == "actix_web.request"
}

fn has_root(traces: &[Vec<Value>], resource: &str) -> bool {
    traces.iter().flatten().any(|s| is_root(s, resource))
}

/// How many traces have a server span with `resource`.
fn roots(traces: &[Vec<Value>], resource: &str) -> usize {
    traces
        .iter()
        .filter(|t| t.iter().any(|s| is_root(s, resource)))
        .count()
}

#[tokio::test]
async fn agent_down_then_back_requests_unaffected_and_outage_logged_once() {
    let mut agent = TestAgent::start().await;
    let notes = notes_process(&agent.url(), &[]).await;
    let client = reqwest::Client::new();
    let base = notes.base_url();
    slowest_of(&client, &format!("{base}/"), 1).await;
    agent.wait_for_traces(|t| has_root(t, "GET /"), WAIT).await;

    agent.stop().await;
    let worst = slowest_of(&client, &format!("{base}/"), 50).await;
    assert!(
        worst < Duration::from_secs(1),
        "a request waited on the missing agent: {worst:?}"
    );
    // Several flush intervals pass with the agent down...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    slowest_of(&client, &format!("{base}/"), 5).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // ...and the outage is logged once, with the count of lost spans.
    assert_eq!(
        count_logs(&notes, "cannot send traces to the Datadog Agent"),
        1,
        "{}",
        notes.output_tail(40)
    );
    let warning = notes
        .logs()
        .into_iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot send traces"))
        })
        .unwrap_or_default();
    assert!(
        warning["lost_spans_total"].as_u64().is_some_and(|n| n > 0),
        "{warning}"
    );

    agent.restart().await;
    assert_eq!(
        send(&client, "GET", &format!("{base}/"), &[]).await.status,
        200
    );
    agent.wait_for_traces(|t| has_root(t, "GET /"), WAIT).await;
    notes
        .wait_for_log(
            |l| l["message"] == "the Datadog Agent accepts traces again",
            WAIT,
        )
        .await;
}

#[tokio::test]
async fn agent_slow_no_request_waits_and_shutdown_stays_bounded() {
    let mut agent = TestAgent::start().await;
    agent.set_request_delay(4.0).await;
    let mut notes = notes_process(&agent.url(), &[("DD_TRACE_AGENT_TIMEOUT", "1")]).await;
    let client = reqwest::Client::new();
    let worst = slowest_of(&client, &format!("{}/", notes.base_url()), 60).await;
    assert!(
        worst < Duration::from_secs(1),
        "a request waited on the slow agent: {worst:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    notes.signal(libc::SIGTERM);
    let exit = notes
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("notes exits");
    assert!(exit.success(), "{exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_span_queue_is_bounded_and_drops_are_logged_once_and_counted_in_health_metrics() {
    let mut agent = TestAgent::start().await;
    agent.set_request_delay(3.0).await;
    // DogStatsD stand-in: the health metrics arrive here over UDP.
    let statsd = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    statsd
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("udp timeout");
    let statsd_port = statsd.local_addr().expect("udp address").port().to_string();
    let notes = notes_process(
        &agent.url(),
        &[
            ("DD_TRACE_SPAN_QUEUE_SIZE", "16"),
            ("DD_TRACE_FLUSH_INTERVAL_MS", "5000"),
            ("DD_TRACE_HEALTH_METRICS_ENABLED", "true"),
            ("DD_DOGSTATSD_HOST", "127.0.0.1"),
            ("DD_DOGSTATSD_PORT", &statsd_port),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    slowest_of(&client, &format!("{}/", notes.base_url()), 200).await;
    const FULL: &str = "the trace export queue is full";
    notes
        .wait_for_log(
            |l| l["message"].as_str().is_some_and(|m| m.starts_with(FULL)),
            WAIT,
        )
        .await;
    assert_eq!(count_logs(&notes, FULL), 1);
    // Within the metrics' 10 s interval (and a margin), a datagram counts the dropped spans.
    let dropped = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(25);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let Ok(n) = statsd.recv(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let count = text
                .lines()
                .find_map(|l| l.strip_prefix("datadog.tracer.queue.dropped.spans:"))
                .and_then(|rest| rest.split('|').next())
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(count) = count.filter(|n| *n > 0) {
                assert!(text.contains("|#service:notes"), "untagged: {text}");
                return Some(count);
            }
        }
        None
    })
    .await
    .expect("udp task");
    assert!(
        dropped.is_some(),
        "no health metric counted the dropped spans within 25 s"
    );
}

#[tokio::test]
async fn graceful_shutdown_under_load_finishes_requests_and_flushes_their_spans() {
    let agent = TestAgent::start().await;
    // Each GET /notes takes about 0.76 s; its first log line comes after 0.6 s.
    let mut notes = notes_process(&agent.url(), &[("NOTES_HELPER_DELAY_SCALE", "2")]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/notes", notes.base_url());
    let mut inflight = Vec::new();
    for _ in 0..12 {
        let (client, url) = (client.clone(), url.clone());
        inflight.push(tokio::spawn(async move {
            send(&client, "GET", &url, &[]).await
        }));
    }
    // Every request is inside its handler before the signal.
    let deadline = Instant::now() + WAIT;
    while count_logs(&notes, "Hello from the long running process") < 12 {
        assert!(Instant::now() < deadline, "the requests never all started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    notes.signal(libc::SIGTERM);
    for task in inflight {
        let Reply { status, body, .. } = task.await.expect("request task");
        assert_eq!(
            status, 200,
            "a request in flight at SIGTERM was cut: {body}"
        );
    }
    let exit = notes
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("notes exits");
    assert!(exit.success(), "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Stopped accepting.
    let refused = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(refused.is_err(), "still accepting after exit");
    let traces = agent
        .wait_for_traces(|t| roots(t, "GET /notes") >= 12, WAIT)
        .await;
    assert_eq!(roots(&traces, "GET /notes"), 12);
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let agent = TestAgent::start().await;
    let mut notes = notes_process(&agent.url(), &[("NOTES_HELPER_DELAY_SCALE", "20")]).await;
    let url = format!("{}/notes", notes.base_url());
    // A request that would take about 7.6 s.
    let slow = tokio::spawn(async move { reqwest::Client::new().get(&url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    notes.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    notes.signal(libc::SIGTERM);
    let exit = notes
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("notes exits on the second signal");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        !exit.success(),
        "the second signal is an abrupt exit: {exit:?}"
    );
    slow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_blinking_under_writes_loses_no_acknowledged_note() {
    let (app, proxy) = spawn_notes_behind_proxy(&[("DB_POOL_TIMEOUT_MS", "300")]).await;
    let (app, proxy) = (Arc::new(app), Arc::new(proxy));
    assert_eq!(app.send("GET", "/health").await.status, 200);

    // Writers post unique descriptions until the database has been cut twice and restored.
    let cuts: Arc<std::sync::Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6 {
        let (app, done) = (app.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut i = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let desc = format!("w{w}-{i}");
                let started = Instant::now();
                let Reply { status, body, .. } =
                    app.send("POST", &format!("/notes?desc={desc}")).await;
                outcomes.push((desc, status, body, started, Instant::now()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        }));
    }
    let chaos = {
        let (proxy, cuts, done) = (proxy.clone(), cuts.clone(), done.clone());
        tokio::spawn(async move {
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let before = Instant::now();
                proxy.cut().await;
                cuts.lock().expect("cuts").push((before, Instant::now()));
                tokio::time::sleep(Duration::from_millis(300)).await;
                proxy.restore().await;
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    chaos.await.expect("chaos");
    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.extend(w.await.expect("writer"));
    }
    let cuts = cuts.lock().expect("cuts").clone();

    let stored: BTreeSet<String> = app.rows().await.into_iter().map(|r| r.1).collect();
    let mut errors = 0;
    for (desc, status, body, started, ended) in &outcomes {
        // A request in flight at the instant a cut drops its connection may have committed
        // without hearing so (the client cannot know either); only those are exempt.
        let in_flight_at_cut = cuts.iter().any(|(from, to)| started <= to && from <= ended);
        match status {
            201 => assert!(stored.contains(desc), "acknowledged {desc} is missing"),
            503 => {
                errors += 1;
                assert_eq!(body, "Database unavailable");
                assert!(
                    in_flight_at_cut || !stored.contains(desc),
                    "{desc} got 503 but was stored"
                );
            }
            other => panic!("{desc}: unexpected {other} {body}"),
        }
    }
    assert!(
        errors > 0,
        "the outage was not observed: the test proves nothing"
    );
    // Writes succeeded before the first cut and again after the last one (recovery).
    let (first_cut, last_cut) = (cuts[0].0, cuts[cuts.len() - 1].1);
    let ok_before = outcomes.iter().any(|o| o.1 == 201 && o.4 < first_cut);
    let ok_after = outcomes.iter().any(|o| o.1 == 201 && o.3 > last_cut);
    assert!(
        ok_before && ok_after,
        "successes before: {ok_before}, after: {ok_after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_the_same_ids_leave_a_consistent_table() {
    let db = test_support::fresh_database().await;
    let app = Arc::new(spawn_notes(&db, &spawn_calendar().await, &[]).await);
    for i in 1..=5 {
        assert_eq!(
            app.send("POST", &format!("/notes?desc=orig{i}"))
                .await
                .status,
            201
        );
    }
    let mut tasks = Vec::new();
    for n in 0..300u32 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let id = 1 + n % 5;
            let (method, path) = match n % 3 {
                0 => ("PUT", format!("/notes?id={id}&desc=put{n}")),
                1 => ("POST", format!("/notes?desc=post{n}")),
                _ if n % 7 == 2 => ("DELETE", format!("/notes?id={id}")),
                _ => ("GET", format!("/notes?id={id}")),
            };
            let Reply { status, body, .. } = app.send(method, &path).await;
            (method, id, n, status, body)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    let table: BTreeMap<i32, String> = app.rows().await.into_iter().collect();
    let mut deleted: HashMap<u32, usize> = HashMap::new();
    let mut puts: HashMap<u32, Vec<String>> = HashMap::new();
    for (method, id, n, status, body) in &results {
        assert!(*status < 500, "{method} {id}: {status} {body}");
        match (*method, *status) {
            ("DELETE", 200) => *deleted.entry(*id).or_default() += 1,
            ("PUT", 200) => puts.entry(*id).or_default().push(format!("put{n}")),
            ("POST", 201) => {
                let id: i32 = body[1..body.find(',').expect("(id, desc)")]
                    .parse()
                    .expect("id");
                assert_eq!(
                    table.get(&id),
                    Some(&format!("post{n}")),
                    "posted note {id}"
                );
            }
            ("POST", s) => panic!("POST failed with {s}"),
            _ => {}
        }
    }
    for id in 1..=5u32 {
        let row = table.get(&(id as i32));
        match deleted.get(&id) {
            Some(count) => {
                assert_eq!(*count, 1, "id {id} deleted twice");
                assert!(row.is_none(), "id {id} was deleted but is still there");
            }
            None => {
                let row = row.unwrap_or_else(|| panic!("id {id} vanished"));
                let allowed = puts.get(&id).cloned().unwrap_or_default();
                assert!(
                    allowed.contains(row) || (allowed.is_empty() && row == &format!("orig{id}")),
                    "id {id} holds {row:?}, not one of the acknowledged writes {allowed:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn long_urls_and_large_headers_get_a_clear_4xx() {
    let db = test_support::fresh_database().await;
    let app = spawn_notes(
        &db,
        &spawn_calendar().await,
        &[("MAX_URL_BYTES", "2048"), ("MAX_HEADER_BYTES", "4096")],
    )
    .await;
    let client = reqwest::Client::new();
    let long = client
        .get(app.url(&format!("/notes?desc={}", "a".repeat(3000))))
        .send()
        .await
        .expect("sent");
    assert_eq!(long.status().as_u16(), 414);
    assert_eq!(long.text().await.unwrap_or_default(), "URI Too Long");
    let big = client
        .get(app.url("/"))
        .header("x-filler", "b".repeat(5000))
        .send()
        .await
        .expect("sent");
    assert_eq!(big.status().as_u16(), 431);
    let huge_trace_header = client
        .get(app.url("/"))
        .header("x-datadog-tags", "c".repeat(3000))
        .header("x-datadog-trace-id", "1")
        .header("x-datadog-parent-id", "2")
        .send()
        .await
        .expect("sent");
    assert_eq!(huge_trace_header.status().as_u16(), 200);
    // Within the limits everything is normal.
    assert_eq!(app.send("GET", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_database_gives_503_in_bounded_time_and_recovers() {
    let (app, proxy) = spawn_notes_behind_proxy(&[
        ("DB_POOL_TIMEOUT_MS", "300"),
        ("DB_STATEMENT_TIMEOUT_MS", "700"),
    ])
    .await;
    assert_eq!(app.send("POST", "/notes?desc=before").await.status, 201);

    proxy.freeze(true);
    let mut waiting = Vec::new();
    for i in 0..8 {
        let url = app.url(&format!("/notes?id={}", 1 + i % 2));
        let client = app.client.clone();
        waiting.push(tokio::spawn(async move {
            let started = Instant::now();
            let Reply { status, body, .. } = send(&client, "GET", &url, &[]).await;
            (status, body, started.elapsed())
        }));
    }
    for w in waiting {
        let (status, body, took) = w.await.expect("request");
        assert_eq!((status, body.as_str()), (503, "Database unavailable"));
        // The statement bound (0.7 s + 0.5 s) plus a pool wait: nowhere near a TCP timeout.
        assert!(
            took < Duration::from_secs(4),
            "waited {took:?} on a hung database"
        );
    }
    proxy.freeze(false);
    assert_eq!(app.wait_for_ok("/notes?id=1", WAIT).await, "(1, before)");
}
