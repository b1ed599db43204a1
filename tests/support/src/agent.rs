//! Datadog's test agent (`ddapm-test-agent` from PyPI) as a private, per-test
//! stand-in for the Datadog Agent.
//!
//! Each [`TestAgent::start`] runs its own agent on free loopback ports, with
//! trace-check failures pooled in memory and these checks on (the agent runs
//! none unless asked): [`ENABLED_CHECKS`]. The agent is killed when the
//! `TestAgent` is dropped, and stopped when the test process exits in any way.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::{
    file_tail, free_ports, private_temp_dir, workspace_root, Guarded, GuardedSpec,
};

/// The checks enabled in every test agent:
/// - `trace_count_header`: `X-Datadog-Trace-Count` is present and matches the payload;
/// - `meta_tracer_version_header`: `Datadog-Meta-Tracer-Version` is present;
/// - `trace_content_length`: `Content-Length` is present and under 50 MB;
/// - `meta_events_is_valid_json`: a span's `meta.events`, if any, is a JSON array;
/// - `trace_stall`: not a check: it applies the request delay
///   ([`TestAgent::set_request_delay`]), which does nothing without it.
pub const ENABLED_CHECKS: &str = "trace_count_header,meta_tracer_version_header,\
trace_content_length,meta_events_is_valid_json,trace_stall";

const FIX: &str = "run `bash tests/run.sh` (it installs it into .venv), or \
`python3 -m venv .venv && .venv/bin/pip install ddapm-test-agent`, or set DDAPM_TEST_AGENT \
to the executable";

/// Where the `ddapm-test-agent` executable is: `$DDAPM_TEST_AGENT`, else
/// `<workspace>/.venv/bin/ddapm-test-agent`. The error says how to install it.
pub fn locate_test_agent() -> Result<PathBuf, String> {
    locate_test_agent_from(std::env::var_os("DDAPM_TEST_AGENT"), &workspace_root())
}

pub fn locate_test_agent_from(env: Option<OsString>, root: &Path) -> Result<PathBuf, String> {
    let (path, origin) = match env.filter(|v| !v.is_empty()) {
        Some(v) => (PathBuf::from(v), "DDAPM_TEST_AGENT"),
        None => (
            root.join(".venv/bin/ddapm-test-agent"),
            "the project's virtual environment",
        ),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "Datadog's test agent was not found at {} (from {origin}): {FIX}",
            path.display()
        ))
    }
}

/// The value of header `name` (any case) in a request from
/// [`TestAgent::trace_requests`]. HTTP/1 clients often send names in lower case.
pub fn request_header<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request["headers"]
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .and_then(|(_, value)| value.as_str())
}

/// Whether snapshots are to be (re-)recorded: `UPDATE_SNAPSHOTS=1`, never in CI. Without it a
/// missing snapshot fails the test and an existing one is only compared.
pub fn snapshot_update_requested() -> bool {
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    if update && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("UPDATE_SNAPSHOTS=1 is refused with CI=true: snapshots are recorded on a developer's machine and committed");
    }
    update
}

/// One test agent for the whole test binary, started on first use and stopped when the process
/// exits. Tests that share it keep their traces apart with sessions ([`TestAgent::start_session`]).
pub async fn shared_agent() -> &'static TestAgent {
    static AGENT: tokio::sync::OnceCell<TestAgent> = tokio::sync::OnceCell::const_new();
    AGENT.get_or_init(TestAgent::start).await
}

/// A running `ddapm-test-agent`. See the module docs.
pub struct TestAgent {
    exe: PathBuf,
    port: u16,
    otlp_http_port: u16,
    otlp_grpc_port: u16,
    dir: PathBuf,
    log: PathBuf,
    guard: Option<Guarded>,
    request_delay: f64,
    http: reqwest::Client,
    /// A Unix socket the agent also listens on ([`TestAgent::start_with_socket`]).
    socket: Option<PathBuf>,
}

impl TestAgent {
    /// Starts a private agent and waits until it answers. Panics with the fix
    /// when the agent is not installed, or with its log when it cannot start.
    pub async fn start() -> TestAgent {
        Self::start_listening(false).await
    }

    /// Like [`TestAgent::start`], the agent also listening on a Unix socket
    /// ([`TestAgent::socket`]), as the Datadog Agent's `/var/run/datadog/apm.socket`.
    pub async fn start_with_socket() -> TestAgent {
        Self::start_listening(true).await
    }

    /// The Unix socket, for an agent started with [`TestAgent::start_with_socket`].
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    async fn start_listening(with_socket: bool) -> TestAgent {
        let exe = locate_test_agent().unwrap_or_else(|e| panic!("{e}"));
        let dir = private_temp_dir("apm-tutorial-agent");
        let socket = with_socket.then(|| dir.join("apm.socket"));
        let mut agent = TestAgent {
            socket,
            exe,
            port: 0,
            otlp_http_port: 0,
            otlp_grpc_port: 0,
            log: dir.join("agent.log"),
            dir,
            guard: None,
            request_delay: 0.0,
            // No idle pool: a shared agent ([`TestAgent::shared`]) is used from several tests'
            // runtimes, and a pooled connection belongs to the runtime that opened it.
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(60))
                .build()
                .expect("cannot build an HTTP client"),
        };
        let mut last_error = String::new();
        // The ports may be taken between choosing and binding them: try a few.
        for _ in 0..3 {
            // Distinct: the test agent refuses to start when two of its ports are the same.
            [agent.port, agent.otlp_http_port, agent.otlp_grpc_port] = free_ports();
            match agent.launch().await {
                Ok(()) => return agent,
                Err((e, retry)) => {
                    last_error = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("{last_error}");
    }

    async fn launch(&mut self) -> Result<(), (String, bool)> {
        let started = Instant::now();
        // Stopping the agent removes its directory: make it anew.
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| (format!("cannot create {}: {e}", self.dir.display()), false))?;
        let port = self.port.to_string();
        let otlp_http = self.otlp_http_port.to_string();
        let otlp_grpc = self.otlp_grpc_port.to_string();
        let delay = self.request_delay.to_string();
        let vcr = self.dir.join("vcr-cassettes");
        let mut args: Vec<&OsStr> = vec![
            "--host".as_ref(),
            "127.0.0.1".as_ref(),
            "--port".as_ref(),
            port.as_ref(),
            "--otlp-http-port".as_ref(),
            otlp_http.as_ref(),
            "--otlp-grpc-port".as_ref(),
            otlp_grpc.as_ref(),
            "--snapshot-dir".as_ref(),
            self.dir.as_os_str(),
            "--vcr-cassettes-directory".as_ref(),
            vcr.as_os_str(),
            "--trace-request-delay".as_ref(),
            delay.as_ref(),
            "--disable-llmobs-data-forwarding".as_ref(),
            // Snapshots are only ever compared, never written, unless asked for
            // (see [`snapshot_update_requested`]).
            "--snapshot-ci-mode".as_ref(),
            if snapshot_update_requested() {
                "0".as_ref()
            } else {
                "1".as_ref()
            },
        ];
        if let Some(socket) = &self.socket {
            args.extend(["--trace-uds-socket".as_ref(), socket.as_os_str()]);
        }
        // A clean environment: the agent reads DD_TRACE_AGENT_URL, DD_API_KEY,
        // PORT... as settings, so none of the caller's may leak in. Its list-typed
        // options only work through the environment (argparse `type=List[str]`).
        let envs: Vec<(&str, &OsStr)> = vec![
            ("ENABLED_CHECKS", ENABLED_CHECKS.as_ref()),
            ("DD_POOL_TRACE_CHECK_FAILURES", "true".as_ref()),
            ("PYTHONUNBUFFERED", "1".as_ref()),
        ];
        let mut guard = Guarded::spawn(GuardedSpec {
            program: &self.exe,
            args,
            envs,
            clear_env: true,
            log: &self.log,
            cwd: &self.dir,
            stop_signal: "TERM",
            cleanup: Some(&self.dir),
            run_as: None,
        })
        .map_err(|e| (e, false))?;

        let deadline = started + Duration::from_secs(90);
        loop {
            let ready = self
                .http
                .get(format!("{}/info", self.url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                self.guard = Some(guard);
                return Ok(());
            }
            let exited = !guard.alive();
            if exited || Instant::now() > deadline {
                let tail = file_tail(&self.log, 40);
                guard.kill_now();
                let retry = exited && tail.to_ascii_lowercase().contains("address already in use");
                let what = if exited {
                    "exited during startup"
                } else {
                    "was not ready within 90 s"
                };
                return Err((
                    format!(
                        "Datadog's test agent {} {what} (port {}); its log:\n{tail}",
                        self.exe.display(),
                        self.port
                    ),
                    retry,
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The agent's base URL, `http://127.0.0.1:PORT`: what a service gets as
    /// `DD_TRACE_AGENT_URL`. It stays the same across [`TestAgent::restart`].
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last lines the agent logged (it logs every payload it receives).
    pub fn log_tail(&self, max_lines: usize) -> String {
        file_tail(&self.log, max_lines)
    }

    async fn get(&self, path_and_query: &str) -> (u16, String) {
        let url = format!("{}{path_and_query}", self.url());
        let response = match self.http.get(&url).send().await {
            Ok(r) => r,
            Err(e) => panic!(
                "GET {url} failed: {e}; test agent log:\n{}",
                self.log_tail(30)
            ),
        };
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: cannot read the body: {e}"));
        (status, body)
    }

    async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        if status != 200 {
            panic!(
                "GET {path} on the test agent answered {status}: {body}\nlog:\n{}",
                self.log_tail(30)
            );
        }
        serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("GET {path}: the test agent's answer is not JSON ({e}): {body}")
        })
    }

    /// Every trace the agent received (since the last [`TestAgent::clear`]), as
    /// lists of spans in the agent's JSON form: `service`, `name`, `resource`,
    /// `trace_id`, `span_id`, `parent_id` (integers), `start`, `duration` (ns),
    /// `error` (0/1), `type`, `meta` (strings), `metrics` (numbers), and
    /// `span_links`/`span_events` when sent. Spans are grouped by `trace_id`
    /// across payloads, so chunks sent separately come back as one trace; the
    /// order of traces and of spans within one is not meaningful.
    pub async fn traces(&self) -> Vec<Vec<Value>> {
        let value = self.get_json("/test/session/traces").await;
        serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("unexpected traces shape ({e}): {value}"))
    }

    /// All spans of [`TestAgent::traces`], flattened.
    pub async fn spans(&self) -> Vec<Value> {
        self.traces().await.into_iter().flatten().collect()
    }

    /// Polls [`TestAgent::traces`] until `pred` holds and returns them; panics
    /// after `timeout` with what was received.
    pub async fn wait_for_traces<F>(&self, mut pred: F, timeout: Duration) -> Vec<Vec<Value>>
    where
        F: FnMut(&[Vec<Value>]) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let traces = self.traces().await;
            if pred(&traces) {
                return traces;
            }
            if Instant::now() > deadline {
                let mut shown = serde_json::to_string_pretty(&traces).unwrap_or_default();
                if shown.len() > 20_000 {
                    shown.truncate(20_000);
                    shown.push_str("\n[... cut ...]");
                }
                panic!(
                    "the expected traces did not arrive at the test agent within {timeout:?}; it has {} trace(s):\n{shown}\nagent log:\n{}",
                    traces.len(),
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The raw trace (and other intake) requests received, newest first:
    /// objects with `method`, `url`, `headers` (an object) and `body` (base64).
    pub async fn trace_requests(&self) -> Vec<Value> {
        let value = self.get_json("/test/session/requests").await;
        serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("unexpected requests shape ({e}): {value}"))
    }

    /// `None` when the agent's checks found nothing wrong in any payload it
    /// received; else the agent's report of the failures.
    pub async fn trace_check_failures(&self) -> Option<String> {
        let (status, body) = self.get("/test/trace_check/failures?return_all=true").await;
        match status {
            200 => None,
            400 => Some(body),
            other => Some(format!(
                "unexpected answer {other} from /test/trace_check/failures: {body}"
            )),
        }
    }

    /// Per check, how many times it `Passed_Checks`, `Failed_Checks`, `Skipped_Checks`.
    pub async fn trace_check_summary(&self) -> Value {
        self.get_json("/test/trace_check/summary?return_all=true")
            .await
    }

    /// Starts the session `token`: from now on, until another session starts, the traces the
    /// agent receives (services send no token) belong to it.
    pub async fn start_session(&self, token: &str) {
        let (status, body) = self
            .get(&format!("/test/session/start?test_session_token={token}"))
            .await;
        assert_eq!(status, 200, "/test/session/start failed: {body}");
    }

    /// Starts the agent's default session (the one requests without a token, the services',
    /// belong to) with the sampling rates it answers trace posts with: `rates` maps
    /// `service:<service>,env:<env>` keys to rates.
    pub async fn start_session_with_rates(&self, rates: &[(&str, f64)]) {
        let map: serde_json::Map<String, Value> = rates
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let json = Value::Object(map).to_string();
        let mut url = reqwest::Url::parse(&format!("{}/test/session/start", self.url()))
            .expect("the agent's URL parses");
        url.query_pairs_mut()
            .append_pair("agent_sample_rate_by_service", &json);
        let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
        let (status, body) = self.get(&path).await;
        assert_eq!(status, 200, "/test/session/start failed: {body}");
    }

    /// The stats payloads (`/v0.6/stats`) of the default session, as the agent decoded them:
    /// `{"Env", "Version", "Stats": [{"Start", "Duration", "Stats": [{"Service", "Name",
    /// "Resource", "HTTPStatusCode", "Hits", "TopLevelHits", "Errors", "Duration", …}]}]}`.
    pub async fn stats(&self) -> Vec<Value> {
        let value = self.get_json("/test/session/stats").await;
        serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("unexpected stats shape ({e}): {value}"))
    }

    /// The traces of session `token` (see [`TestAgent::traces`] for their form).
    pub async fn session_traces(&self, token: &str) -> Vec<Vec<Value>> {
        let value = self
            .get_json(&format!("/test/session/traces?test_session_token={token}"))
            .await;
        serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("unexpected traces shape ({e}): {value}"))
    }

    /// Compares the traces of session `token` with the snapshot `<file>.json` (an absolute path
    /// without the extension), ignoring the span attributes `ignores` besides the agent's
    /// defaults (ids, timestamps, durations, `_dd.p.tid`). Returns the agent's report on a
    /// mismatch. With [`snapshot_update_requested`] a missing snapshot is written instead.
    pub async fn snapshot(&self, token: &str, file: &Path, ignores: &[&str]) -> Result<(), String> {
        let mut url = reqwest::Url::parse(&format!("{}/test/session/snapshot", self.url()))
            .expect("the agent URL is valid");
        url.query_pairs_mut()
            .append_pair("test_session_token", token)
            .append_pair("file", &file.to_string_lossy())
            .append_pair("ignores", &ignores.join(","))
            // Recorded files leave out what is never compared, so their diffs show real changes.
            .append_pair(
                "removes",
                &[ignores, &["start", "duration"]].concat().join(","),
            )
            // Loopback addresses with their (free, random) ports, e.g. in `http.url`.
            .append_pair("regex_placeholders", r"addr:127\.0\.0\.1:[0-9]+");
        let response = self
            .http
            .get(url.as_str())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        match status {
            200 => Ok(()),
            _ => Err(format!("snapshot {} ({status}):\n{body}", file.display())),
        }
    }

    /// Forgets every request received so far (traces included).
    pub async fn clear(&self) {
        let (status, body) = self.get("/test/session/clear").await;
        assert_eq!(status, 200, "/test/session/clear failed: {body}");
    }

    /// Makes the agent stall every trace request for `seconds` before answering
    /// (a slow agent). Kept across [`TestAgent::restart`].
    pub async fn set_request_delay(&mut self, seconds: f64) {
        let url = format!("{}/test/settings", self.url());
        let response = self
            .http
            .post(&url)
            .json(&serde_json::json!({ "trace_request_delay": seconds }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url} failed: {e}"));
        let status = response.status();
        assert!(
            status.is_success(),
            "POST {url} answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
        self.request_delay = seconds;
    }

    /// Kills the agent at once (its port then refuses connections). What it
    /// had received, and its log, are lost.
    pub async fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            guard.kill_now();
        }
    }

    /// Starts the agent again on the same port (after [`TestAgent::stop`]),
    /// empty. Panics if it cannot start, e.g. when the port was taken meanwhile.
    pub async fn restart(&mut self) {
        self.stop().await;
        if let Err((e, _)) = self.launch().await {
            panic!("cannot restart the test agent on the same port: {e}");
        }
    }

    pub fn is_running(&self) -> bool {
        self.guard.as_ref().is_some_and(Guarded::alive)
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "[harness] test agent on port {} (log {}), last lines:\n{}",
                self.port,
                self.log.display(),
                self.log_tail(40)
            );
        }
        if let Some(mut guard) = self.guard.take() {
            guard.kill_now();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `trace` is the tutorial's distributed `POST /notes?add_date=y`: notes' server span,
/// its client span to calendar, calendar's server and custom spans, and a PostgreSQL query.
pub fn is_distributed(trace: &[Value]) -> bool {
    let has = |service: &str, name: &str| {
        trace
            .iter()
            .any(|s| s["service"] == service && s["name"] == name)
    };
    has("notes", "actix_web.request")
        && has("reqwest", "reqwest.request")
        && has("calendar", "actix_web.request")
        && has("calendar", "calendar.get_date")
        && has("postgres", "postgres.query")
}
