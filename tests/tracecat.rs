//! `tracecat` end to end: the real services send a distributed trace to Datadog's test agent, and
//! the `tracecat` binary reads it back from the agent and draws it.

use std::path::PathBuf;
use std::time::Duration;
use test_support::TestAgent;

const WAIT: Duration = Duration::from_secs(15);

fn tracecat_bin() -> PathBuf {
    let path = test_support::service::bin_dir().join("tracecat");
    if !path.is_file() {
        panic!(
            "{} not found: run `cargo build --workspace --bins` first (`bash tests/run.sh` does it)",
            path.display()
        );
    }
    path
}

/// Runs `tracecat ARGS`; its exit code, stdout and stderr.
async fn tracecat(args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(tracecat_bin())
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("tracecat did not finish within 60 s")
    .expect("tracecat could not be run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn tracecat_draws_the_last_trace_from_the_test_agent() {
    let agent = TestAgent::start().await;
    let url = agent.url();

    // Nothing received yet: tracecat says so and fails.
    let (code, _, stderr) = tracecat(&["--agent", &url, "--last"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("has no traces yet"), "{stderr}");

    let common = [
        ("DD_TRACE_AGENT_URL", url.as_str()),
        ("DD_TRACE_FLUSH_INTERVAL_MS", "200"),
        ("HOST", "127.0.0.1"),
    ];
    let (_calendar, notes) = test_support::calendar_and_notes(&common, &[]).await;

    let post = || async {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/notes?desc=hello_again&add_date=y",
                notes.base_url()
            ))
            .send()
            .await
            .expect("POST /notes");
        assert_eq!(response.status().as_u16(), 201);
    };
    post().await;
    let traces = agent
        .wait_for_traces(
            |ts| ts.iter().any(|t| test_support::agent::is_distributed(t)),
            WAIT,
        )
        .await;
    let trace = traces
        .iter()
        .find(|t| test_support::agent::is_distributed(t))
        .expect("the distributed trace");
    let trace_id = trace[0]["trace_id"].as_u64().expect("a trace id");

    let dir = std::env::temp_dir().join(format!("tracecat-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let svg = dir.join("trace.svg");
    let svg_arg = svg.display().to_string();
    // The notes service checks its schema at start-up in traces of its own, which may begin
    // after this first request: pick the request's trace by its root.
    let (code, tree, stderr) = tracecat(&[
        "--agent",
        &url,
        "--last",
        "--resource",
        "POST /notes",
        "--svg",
        &svg_arg,
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");

    // The tree: the headline names the trace, then one line per span, nested by parent.
    let mut lines = tree.lines();
    let head = lines.next().unwrap_or_default();
    assert!(
        head.starts_with(&format!("trace {trace_id} (128-bit ")),
        "{tree}"
    );
    assert!(head.contains("· notes POST /notes ·"), "{tree}");
    assert!(head.contains("· 6 spans ·"), "{tree}");
    let squeezed: Vec<String> = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let starts = |prefix: &str| squeezed.iter().any(|l| l.starts_with(prefix));
    assert!(starts("notes actix_web.request POST /notes "), "{tree}");
    assert!(
        starts("├─ notes_helper notes_helper another_process "),
        "{tree}"
    );
    assert!(
        starts("├─ reqwest reqwest.request GET /calendar "),
        "{tree}"
    );
    assert!(
        starts("│ └─ calendar actix_web.request GET /calendar "),
        "{tree}"
    );
    assert!(
        starts("│ └─ calendar calendar.get_date get_date "),
        "{tree}"
    );
    assert!(
        starts(
            "└─ postgres postgres.query INSERT INTO notes(description) VALUES ($1) RETURNING id "
        ),
        "{tree}"
    );
    assert!(!tree.contains("ERROR"), "{tree}");

    // The picture: a bar per span, both services coloured.
    let picture = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert_eq!(picture.matches("<g class=\"span\"").count(), 6, "{picture}");
    assert!(picture.contains("data-service=\"notes\""), "{picture}");
    assert!(picture.contains("data-service=\"calendar\""), "{picture}");
    let _ = std::fs::remove_dir_all(&dir);

    // The same trace by id.
    let id = trace_id.to_string();
    let (code, by_id, stderr) = tracecat(&["--agent", &url, "--trace-id", &id]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(by_id, tree);

    // A second request: plain --last now shows its trace.
    post().await;
    let traces = agent
        .wait_for_traces(
            |ts| {
                ts.iter()
                    .filter(|t| test_support::agent::is_distributed(t))
                    .count()
                    == 2
            },
            WAIT,
        )
        .await;
    let second = traces
        .iter()
        .filter(|t| test_support::agent::is_distributed(t))
        .filter_map(|t| t[0]["trace_id"].as_u64())
        .find(|id| *id != trace_id)
        .expect("a second distributed trace");
    let (code, last, stderr) = tracecat(&["--agent", &url, "--last"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(last.starts_with(&format!("trace {second} (")), "{last}");
    assert!(last.contains("│  └─ calendar"), "{last}");
}

/// "curl, then look": `tracecat --last` run right after a request shows that request's whole
/// distributed trace, although each service sends its spans on its own once a second (the
/// default flush interval, as in the tutorial). Repeated, so a race shows.
#[tokio::test]
async fn last_right_after_a_request_is_the_whole_new_trace() {
    let agent = TestAgent::start().await;
    let url = agent.url();
    let common = [("DD_TRACE_AGENT_URL", url.as_str()), ("HOST", "127.0.0.1")];
    let (_calendar, notes) = test_support::calendar_and_notes(&common, &[]).await;
    // The schema check at start-up is a trace of its own, which may start after a first
    // request: let it be sent first (in compose it is long done before the first curl).
    agent
        .wait_for_traces(
            |ts| {
                ts.iter().flatten().any(|s| {
                    s["resource"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("CREATE TABLE"))
                })
            },
            WAIT,
        )
        .await;
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for round in 0..4 {
        let response = client
            .post(format!(
                "{}/notes?desc=round{round}&add_date=y",
                notes.base_url()
            ))
            .send()
            .await
            .expect("POST /notes");
        assert_eq!(response.status().as_u16(), 201);
        let (code, tree, stderr) = tracecat(&["--agent", &url, "--last"]).await;
        assert_eq!(code, Some(0), "{stderr}");
        let head = tree.lines().next().unwrap_or_default().to_owned();
        assert!(
            head.contains("· notes POST /notes ·"),
            "round {round}: {tree}"
        );
        assert!(head.contains("· 6 spans ·"), "round {round}: {tree}");
        // The calendar server span sits under the notes client span.
        assert!(
            tree.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .any(|l| l.starts_with("│ └─ calendar actix_web.request GET /calendar ")),
            "round {round}: {tree}"
        );
        assert!(
            !stderr.contains("still receiving"),
            "round {round}: {stderr}"
        );
        let id = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        assert!(
            !seen.contains(&id),
            "round {round} showed an earlier trace: {tree}"
        );
        seen.push(id);
    }
}
