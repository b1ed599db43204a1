//! The trace viewer (`tracecat serve`) in a real browser: the services send the tutorial's
//! requests to Datadog's test agent, the viewer reads it, and headless Chromium (from Debian)
//! loads its pages (`--dump-dom` for what a user sees, `--screenshot` for the picture in
//! docs/). A missing Chromium fails with the fix.

use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use test_support::http::assert_statuses;
use test_support::{send, Reply, TestAgent};

const WAIT: Duration = Duration::from_secs(20);

// The harness's own lookup on PATH, not the services' configuration (as in tests/support).
#[allow(clippy::disallowed_methods)]
fn chromium() -> PathBuf {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
        });
    found.unwrap_or_else(|| {
        panic!(
            "no Chromium found on PATH: install it (Debian: apt-get install chromium; \
             `bash tests/run.sh` does it in CI)"
        )
    })
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=…`); its stdout.
async fn browser(args: &[String], url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("viewer-chromium-{}", std::process::id()));
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium did not finish within 90 s")
    .expect("chromium could not be run");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The page at `url` as the browser built it.
async fn dom(url: &str) -> String {
    browser(&["--dump-dom".to_owned()], url).await
}

/// `tracecat serve` on a free port, killed when dropped.
struct Viewer {
    child: tokio::process::Child,
    base: String,
}

impl Viewer {
    async fn start(agent: &str) -> Viewer {
        let bin = test_support::service::bin_dir().join("tracecat");
        assert!(
            bin.is_file(),
            "{} not found: run `cargo build --workspace --bins` first (`bash tests/run.sh` does it)",
            bin.display()
        );
        let port = test_support::free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = tokio::process::Command::new(bin)
            .args(["serve", "--agent", agent, "--listen", &listen])
            .args(["--settle", "1000"])
            .kill_on_drop(true)
            .spawn()
            .expect("tracecat serve could not be run");
        let viewer = Viewer {
            child,
            base: format!("http://{listen}"),
        };
        let deadline = Instant::now() + WAIT;
        while reqwest::get(&viewer.base).await.is_err() {
            assert!(Instant::now() < deadline, "tracecat serve did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        viewer
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// `GET url` on a connection of its own.
async fn get(url: &str) -> Reply {
    send(&reqwest::Client::new(), "GET", url, &[]).await
}

/// The text of the first element of `html` with `attribute="value"`, from its opening tag to
/// the matching end of the row or section (enough for the assertions here).
fn element<'a>(html: &'a str, attribute: &str, value: &str, end: &str) -> &'a str {
    let needle = format!("{attribute}=\"{value}\"");
    let start = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no element with {needle} in:\n{html}"));
    let rest = &html[start..];
    let stop = rest.find(end).map(|i| i + end.len()).unwrap_or(rest.len());
    &rest[..stop]
}

/// An attribute of the span row of `service`/`name` in the trace page.
fn row_attr(html: &str, service: &str, name: &str, attribute: &str) -> String {
    html.split("<tr class=\"span-row")
        .skip(1)
        .find(|row| {
            row.contains(&format!("data-service=\"{service}\""))
                && row.contains(&format!("data-name=\"{name}\""))
        })
        .and_then(|row| {
            let key = format!("{attribute}=\"");
            let at = row.find(&key)? + key.len();
            Some(row[at..].split('"').next()?.to_owned())
        })
        .unwrap_or_else(|| panic!("no {service} {name} row with {attribute} in:\n{html}"))
}

#[tokio::test]
async fn the_viewer_shows_the_tutorials_traces_in_a_browser() {
    let mut agent = TestAgent::start().await;
    let agent_url = agent.url();
    let viewer = Viewer::start(&agent_url).await;

    // Nothing sent yet: the list says how to send a first request.
    let page = dom(&viewer.url("/")).await;
    assert!(page.contains("id=\"no-traces\""), "{page}");
    assert!(page.contains("curl -X POST"), "{page}");

    let common = [
        ("DD_TRACE_AGENT_URL", agent_url.as_str()),
        ("DD_TRACE_FLUSH_INTERVAL_MS", "200"),
        ("HOST", "127.0.0.1"),
    ];
    let (calendar, notes) = test_support::calendar_and_notes(&common, &[]).await;
    let base = notes.base_url();

    // The tutorial's requests (and health checks, which are not traced).
    assert_statuses(
        &base,
        &[
            ("GET", "/notes", 200),
            ("POST", "/notes?desc=hello", 201),
            ("GET", "/notes?id=1", 200),
            ("PUT", "/notes?id=1&desc=UpdatedNote", 200),
            ("DELETE", "/notes?id=1", 200),
            ("GET", "/health", 200),
            ("POST", "/notes?desc=hello_again&add_date=y", 201),
        ],
    )
    .await;
    let traces = agent
        .wait_for_traces(
            |ts| ts.iter().any(|t| test_support::agent::is_distributed(t)),
            WAIT,
        )
        .await;
    let add_date = traces
        .iter()
        .find(|t| test_support::agent::is_distributed(t))
        .expect("the distributed trace");
    let trace_id = add_date[0]["trace_id"].as_u64().expect("a trace id");
    let span_of = |service: &str, name: &str| {
        add_date
            .iter()
            .find(|s| s["service"] == service && s["name"] == name)
            .and_then(|s| s["span_id"].as_u64())
            .unwrap_or_else(|| panic!("no {service} {name} span"))
    };
    // Let the last chunks settle (the viewer's settle time is 1 s here).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The list: the tutorial's requests, newest first, no health check.
    let page = dom(&viewer.url("/")).await;
    assert!(page.contains("id=\"traces\""), "{page}");
    let rows: Vec<&str> = page.split("<tr class=\"trace").skip(1).collect();
    assert!(rows.len() >= 6, "{page}");
    let post_rows = rows
        .iter()
        .filter(|r| r.contains(">POST /notes</a>"))
        .count();
    assert_eq!(post_rows, 2, "{page}");
    assert!(
        rows[0].contains(&format!("data-trace-id=\"{trace_id}\"")),
        "{page}"
    );
    assert!(
        rows[0].contains("calendar") && rows[0].contains("postgres"),
        "{page}"
    );
    assert!(!page.contains("GET /health"), "{page}");
    assert!(
        page.contains(&format!("id=\"last\" href=\"/trace/{trace_id}\"")),
        "{page}"
    );

    // Filters: by service, and by resource.
    let page = dom(&viewer.url("/?service=calendar")).await;
    let rows = page.split("<tr class=\"trace").skip(1).count();
    assert_eq!(rows, 1, "{page}");
    let page = dom(&viewer.url("/?resource=PUT")).await;
    assert!(page.contains(">PUT /notes</a>"), "{page}");
    assert!(!page.contains(">POST /notes</a>"), "{page}");

    // Search by the decimal id the logs carry: opens the trace.
    let page = dom(&viewer.url(&format!("/search?id={trace_id}"))).await;
    assert!(page.contains("id=\"flame\""), "{page}");

    // The add_date trace: spans of notes, calendar and postgres, the calendar server span under
    // the notes client span, bars in the flame graph linking to each span.
    let page = dom(&viewer.url(&format!("/trace/{trace_id}"))).await;
    assert!(page.contains("notes POST /notes"), "{page}");
    let notes_root = span_of("notes", "actix_web.request");
    let client = span_of("reqwest", "reqwest.request");
    let calendar_server = span_of("calendar", "actix_web.request");
    assert_eq!(
        row_attr(&page, "reqwest", "reqwest.request", "data-parent-id"),
        notes_root.to_string()
    );
    assert_eq!(
        row_attr(&page, "calendar", "actix_web.request", "data-parent-id"),
        client.to_string()
    );
    assert_eq!(
        row_attr(&page, "calendar", "actix_web.request", "data-depth"),
        "2"
    );
    assert_eq!(
        row_attr(&page, "postgres", "postgres.query", "data-depth"),
        "1"
    );
    let flame = element(&page, "id", "flame", "</svg>");
    for service in ["notes", "reqwest", "calendar", "postgres", "notes_helper"] {
        assert!(
            flame.contains(&format!("data-service=\"{service}\"")),
            "{flame}"
        );
    }
    let link = format!("href=\"?span={calendar_server}\"");
    assert!(flame.contains(&link), "{flame}");
    assert!(page.contains("No span selected"), "{page}");

    // Selecting the calendar server span (following its bar's link) shows all its tags.
    let selected_url = viewer.url(&format!("/trace/{trace_id}?span={calendar_server}"));
    let page = dom(&selected_url).await;
    let details = element(&page, "id", "details", "</section>");
    for (key, value) in [
        ("service", "calendar"),
        ("resource", "GET /calendar"),
        ("http.route", "/calendar"),
        ("http.status_code", "200"),
        ("span.kind", "server"),
        ("component", "actix-web"),
    ] {
        assert!(
            details.contains(&format!(
                "<td class=\"mono\">{key}</td><td class=\"mono\">{value}</td>"
            )),
            "{key}={value} not in {details}"
        );
    }
    assert!(
        element(&page, "id", "flame", "</svg>").contains("class=\"selected\""),
        "{page}"
    );

    // The picture for docs/ (and README): the same page, as the browser draws it.
    let shot = test_support::workspace_root().join("target/viewer-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    browser(
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,980".to_owned(),
        ],
        &selected_url,
    )
    .await;
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );

    // The same data as JSON.
    let Reply { status, body, .. } = get(&viewer.url("/api/traces")).await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("JSON");
    let first = &list["traces"][0];
    assert_eq!(first["trace_id"], trace_id.to_string(), "{body}");
    assert_eq!(first["resource"], "POST /notes", "{body}");
    assert_eq!(first["complete"], true, "{body}");
    let Reply { status, body, .. } = get(&viewer.url(&format!("/api/traces/{trace_id}"))).await;
    assert_eq!(status, 200, "{body}");
    let one: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(one["spans"].as_array().map(Vec::len), Some(6), "{body}");

    // Bad and unknown ids.
    let Reply { status, body, .. } = get(&viewer.url("/trace/123")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("No such trace"), "{body}");
    let Reply { status, .. } = get(&viewer.url("/trace/not-an-id")).await;
    assert_eq!(status, 400);
    let Reply { status, body, .. } = get(&viewer.url("/search?id=zz")).await;
    assert_eq!(status, 400);
    assert!(body.contains("is not a trace id"), "{body}");
    let Reply { status, .. } = get(&viewer.url("/api/traces/123")).await;
    assert_eq!(status, 404);

    // The agent goes away: the page says so and how to start it; then it recovers by itself.
    agent.stop().await;
    let page = dom(&viewer.url("/")).await;
    assert!(page.contains("id=\"agent-down\""), "{page}");
    assert!(page.contains("--profile testagent up"), "{page}");
    agent.restart().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let page = dom(&viewer.url("/")).await;
        if page.contains("id=\"no-traces\"") || page.contains("id=\"traces\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the viewer did not recover: {page}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop((notes, calendar));
}
