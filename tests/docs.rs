//! The documentation cannot drift from the programs: the outputs that docs/TUTORIAL.md and
//! README.md show, of the programs of this project, are compared with what the real programs
//! print.
//!
//! - Every JSON log line shown (a line holding `{"timestamp":…`, after any `notes_1 | ` prefix of
//!   docker-compose) is compared with a line the real `notes` binary prints with the same message:
//!   the same keys in the same order, the same values except those that vary from run to run
//!   ([`VARYING_KEYS`]: timestamps, ids, span counts, the Agent's URL and the error text, which
//!   names the host).
//! - The `console` blocks are replayed in order against real services (notes on a fresh
//!   PostgreSQL database for the tutorial, on SQLite in memory for README's example; calendar;
//!   Datadog's test agent; `tracecat serve`): each `curl …` and `cargo run -q -p tracecat -- …`
//!   command is run by bash as written, with the documented addresses (`localhost:8080`, …)
//!   replaced by the test's loopback ports and `cargo run -q -p tracecat --` by the built binary
//!   (reading the test agent); its output is compared with the one shown, after [`normalize`]
//!   abstracted what varies (durations, ids, dates, column padding, error texts naming hosts).
//!   Lifecycle commands of docker-compose are followed (`DD_TRACE_ENABLED=false … up -d`: notes
//!   untraced; `--profile testagent up -d`: traced; `stop calendar` / `start calendar`); other
//!   Docker commands and their output (abridged with `…`) are not checked. The block after
//!   `git apply docs/try-it-yourself.patch` shows the patched build: tests/try_it_yourself.rs
//!   checks it, so its `tracecat` output is skipped here.

use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use test_support::{ServiceProcess, TestAgent};

/// Log keys whose values vary from run to run (or with the machine): not compared.
const VARYING_KEYS: &[&str] = &[
    "timestamp",
    "dd.trace_id",
    "dd.span_id",
    "spans",
    "lost_spans_total",
    "url",
    "error",
];

fn read_doc(name: &str) -> String {
    let path = test_support::workspace_root().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A JSON object's members in the order written.
struct Ordered(Vec<(String, Value)>);

/// `line` as a JSON object, its members in the order written (the keys are read at depth 1 of
/// the text; the values from the parsed object).
fn ordered(line: &str) -> Option<Ordered> {
    let Value::Object(map) = serde_json::from_str::<Value>(line).ok()? else {
        return None;
    };
    let mut keys = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut current = String::new();
    let mut last_string = None;
    for c in line.chars() {
        if in_string {
            if escaped {
                escaped = false;
                current.push(c);
            } else if c == '\\' {
                escaped = true;
                current.push(c);
            } else if c == '"' {
                in_string = false;
                last_string = Some(std::mem::take(&mut current));
            } else {
                current.push(c);
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            ':' if depth == 1 => {
                let raw = last_string.take()?;
                let key: String = serde_json::from_str(&format!("\"{raw}\"")).ok()?;
                keys.push(key);
            }
            _ => {}
        }
        if c != '"' && !c.is_whitespace() && c != ':' {
            last_string = None;
        }
    }
    let members = keys
        .into_iter()
        .map(|k| {
            let v = map.get(&k).cloned().unwrap_or(Value::Null);
            (k, v)
        })
        .collect::<Vec<_>>();
    (members.len() == map.len()).then_some(Ordered(members))
}

/// The JSON log lines a document shows (without docker-compose's `service_1 | ` prefix).
fn shown_log_lines(doc: &str) -> Vec<String> {
    doc.lines()
        .filter_map(|line| {
            let at = line.find("{\"")?;
            let json = line[at..].trim();
            let parsed = ordered(json)?;
            parsed
                .0
                .iter()
                .any(|(k, _)| k == "dd.service")
                .then(|| json.to_owned())
        })
        .collect()
}

fn member<'a>(o: &'a Ordered, key: &str) -> Option<&'a Value> {
    o.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// A message with its numbers abstracted (`starting 2 workers`: one per CPU).
fn message_shape(o: &Ordered) -> String {
    member(o, "message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// Compares a shown log line with the printed ones of the same message, level and keys.
fn check_log_line(shown: &str, printed: &[Ordered]) -> Result<(), String> {
    let doc = ordered(shown).ok_or_else(|| format!("not a JSON object: {shown}"))?;
    let keys = |o: &Ordered| o.0.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let same_message: Vec<&Ordered> = printed
        .iter()
        .filter(|p| {
            message_shape(p) == message_shape(&doc) && member(p, "level") == member(&doc, "level")
        })
        .collect();
    let same_keys: Vec<&&Ordered> = same_message
        .iter()
        .filter(|p| keys(p) == keys(&doc))
        .collect();
    if same_keys.is_empty() {
        return Err(format!(
            "the docs show\n  {shown}\nbut the program prints this message with the keys\n{}",
            same_message
                .iter()
                .map(|p| format!("  {:?}", keys(p)))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    let mut mismatch = String::new();
    for real in same_keys {
        match same_values(&doc, real) {
            Ok(()) => return Ok(()),
            Err(e) if mismatch.is_empty() => mismatch = format!("{e}, in\n  {shown}"),
            Err(_) => {}
        }
    }
    Err(mismatch)
}

/// The shape of an export error: the URL in it abstracted, cut after the kind of the connect
/// failure (`dns`, `tcp`), whose details depend on the system.
fn error_shape(error: &str) -> String {
    let mut shape = error.to_owned();
    if let Some(start) = shape.find("(http") {
        if let Some(len) = shape[start..].find(')') {
            shape.replace_range(start..start + len + 1, "(URL)");
        }
    }
    let marker = "client error (Connect): ";
    if let Some(at) = shape.find(marker) {
        let rest = &shape[at + marker.len()..];
        let word = rest.split(' ').next().unwrap_or("").to_owned();
        shape.truncate(at + marker.len());
        shape.push_str(&word);
    }
    shape
}

/// The values of a shown line and a printed one with the same keys agree, but for those that vary.
fn same_values(doc: &Ordered, real: &Ordered) -> Result<(), String> {
    for ((key, shown_value), (_, real_value)) in doc.0.iter().zip(real.0.iter()) {
        if key == "error" {
            let shape = |v: &Value| error_shape(v.as_str().unwrap_or(""));
            if shape(shown_value) != shape(real_value) {
                return Err(format!(
                    "error: the docs show {shown_value}, the program prints {real_value}"
                ));
            }
            continue;
        }
        // Compared above, numbers abstracted; the others vary.
        if key == "message" || VARYING_KEYS.contains(&key.as_str()) {
            continue;
        }
        if shown_value != real_value {
            return Err(format!(
                "{key}: the docs show {shown_value}, the program prints {real_value}"
            ));
        }
    }
    Ok(())
}

fn bin(name: &str) -> PathBuf {
    let path = test_support::service::bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --workspace --bins` first (`bash tests/run.sh` does it)",
        path.display()
    );
    path
}

/// Every log line the docs show matches one the real notes prints (untraced, traced with the
/// debug log, and with an Agent that cannot be resolved or reached).
#[tokio::test]
async fn the_log_lines_shown_are_the_ones_printed() {
    let agent = TestAgent::start().await;
    let agent_url = agent.url();
    let db = test_support::fresh_database().await;
    let closed = format!("http://127.0.0.1:{}", test_support::free_port());
    let common = [
        ("DD_ENV", "dev"),
        ("DD_VERSION", "0.1.0"),
        ("NOTES_HELPER_DELAY_SCALE", "0.01"),
        ("HOST", "127.0.0.1"),
        ("DATABASE_URL", db.as_str()),
        ("CALENDAR_URL", closed.as_str()),
        ("WORKERS", "2"),
    ];
    let runs: [&[(&str, &str)]; 4] = [
        &[("DD_TRACE_ENABLED", "false")],
        &[
            ("DD_TRACE_DEBUG", "true"),
            ("DD_TRACE_AGENT_URL", &agent_url),
        ],
        &[
            ("DD_TRACE_DEBUG", "true"),
            ("DD_AGENT_HOST", "datadog-agent.invalid"),
        ],
        &[("DD_TRACE_DEBUG", "true"), ("DD_TRACE_AGENT_URL", &closed)],
    ];
    let mut printed = Vec::new();
    for extra in runs {
        let mut env = common.to_vec();
        env.extend_from_slice(extra);
        let notes = ServiceProcess::spawn("notes", &env).await;
        let reply = test_support::send(
            &reqwest::Client::new(),
            "GET",
            &format!("{}/notes", notes.base_url()),
            &[],
        )
        .await;
        assert_eq!(reply.status, 200);
        let debug = extra.iter().any(|(k, _)| *k == "DD_TRACE_DEBUG");
        if debug {
            // The export's line (sent, or the warning) comes within a flush interval or two.
            notes
                .wait_for_log(
                    |l| {
                        l["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("Datadog Agent"))
                    },
                    Duration::from_secs(15),
                )
                .await;
        } else {
            notes
                .wait_for_log(
                    |l| l["message"] == "Hello from the another process",
                    Duration::from_secs(15),
                )
                .await;
        }
        printed.extend(notes.lines().iter().filter_map(|l| ordered(l)));
    }
    let mut failures = Vec::new();
    let mut count = 0;
    for doc in ["docs/TUTORIAL.md", "README.md"] {
        for line in shown_log_lines(&read_doc(doc)) {
            count += 1;
            if let Err(e) = check_log_line(&line, &printed) {
                failures.push(format!("{doc}: {e}"));
            }
        }
    }
    assert!(count >= 8, "only {count} log lines found in the docs");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A command of a `console` block and the output shown under it.
#[derive(Debug)]
struct Shown {
    command: String,
    output: Vec<String>,
}

/// The commands of a document's `console` blocks, in order; one `Vec` per block.
fn console_blocks(doc: &str) -> Vec<Vec<Shown>> {
    let mut blocks = Vec::new();
    // The block being read, and the indentation of its fence (a block inside a list item).
    let mut current: Option<(Vec<Shown>, usize)> = None;
    for raw in doc.lines() {
        let line = raw.trim_start();
        let indent = raw.len() - line.len();
        match &mut current {
            None if line == "```console" => current = Some((Vec::new(), indent)),
            None => {}
            Some(_) if line == "```" => blocks.extend(current.take().map(|(b, _)| b)),
            Some((block, fence)) => {
                let text = raw.get(indent.min(*fence)..).unwrap_or(raw).to_owned();
                if let Some(command) = text.strip_prefix("$ ") {
                    block.push(Shown {
                        command: command.to_owned(),
                        output: Vec::new(),
                    });
                } else if let Some(last) = block.last_mut() {
                    last.output.push(text);
                }
            }
        }
    }
    blocks
}

/// Output with what varies abstracted: runs of spaces (column padding), durations (`1.81 ms`),
/// long numbers (ids, timestamps), long hex runs (128-bit ids, `_dd.p.tid`), dates, curl's
/// version; an error line (`! type: message`) keeps its type only (the message names hosts).
fn normalize(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let mut kept: Vec<String> = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let t = tokens[i];
            if t == "!" {
                kept.push("!".into());
                if let Some(next) = tokens.get(i + 1) {
                    kept.push(next.split(':').next().unwrap_or("").to_owned());
                }
                break;
            }
            let is_number = !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.');
            if is_number && matches!(tokens.get(i + 1), Some(&("ms" | "µs" | "s" | "ns" | "min")))
            {
                kept.push("<dur>".into());
                i += 2;
                continue;
            }
            // A process id (`"process_id": 21488.0`) may have any number of digits.
            if i > 0 && tokens[i - 1] == "\"process_id\":" {
                kept.push("<pid>".into());
            } else {
                kept.push(abstract_token(t));
            }
            i += 1;
        }
        if !kept.is_empty() {
            out.push(kept.join(" "));
        }
    }
    out.join("\n")
}

fn abstract_token(t: &str) -> String {
    // A UUID (`runtime-id`).
    let bare = t.trim_matches(|c| c == '"' || c == ',');
    if bare.len() == 36
        && bare.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && bare.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    {
        return t.replace(bare, "<uuid>");
    }
    if let Some(at) = t.find("curl/") {
        return format!(
            "{}curl/V{}",
            &t[..at],
            if t.ends_with("\",") { "\"," } else { "" }
        );
    }
    let chars: Vec<char> = t.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        // A date: dd/dd/dddd.
        if i + 10 <= chars.len() {
            let d = &chars[i..i + 10];
            let digit = |k: usize| d[k].is_ascii_digit();
            if digit(0)
                && digit(1)
                && d[2] == '/'
                && digit(3)
                && digit(4)
                && d[5] == '/'
                && (6..10).all(digit)
            {
                out.push_str("<date>");
                i += 10;
                continue;
            }
        }
        if chars[i].is_ascii_hexdigit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_hexdigit() {
                i += 1;
            }
            let run: String = chars[start..i].iter().collect();
            let digits = run.chars().all(|c| c.is_ascii_digit());
            if run.len() >= 16 || (digits && run.len() >= 5) {
                out.push('#');
            } else {
                out.push_str(&run);
            }
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// The services, the test agent and the viewer of one replay, on loopback ports that stay the
/// same across restarts.
struct Replay {
    agent: TestAgent,
    database: Option<String>,
    notes_port: u16,
    calendar_port: u16,
    notes: Option<ServiceProcess>,
    notes_traced: bool,
    calendar: Option<ServiceProcess>,
    viewer: Option<tokio::process::Child>,
    viewer_port: u16,
    tmp: PathBuf,
}

impl Replay {
    async fn new(database: Option<String>, traced: bool) -> Replay {
        let tmp = test_support::process::private_temp_dir("docs-replay");
        let mut replay = Replay {
            agent: TestAgent::start().await,
            database,
            notes_port: test_support::free_port(),
            calendar_port: test_support::free_port(),
            notes: None,
            notes_traced: traced,
            calendar: None,
            viewer: None,
            viewer_port: test_support::free_port(),
            tmp,
        };
        replay.start_calendar(traced).await;
        replay.start_notes(traced).await;
        replay.start_viewer();
        replay
    }

    fn env(&self, traced: bool, port: u16) -> Vec<(String, String)> {
        let mut env = vec![
            ("DD_TRACE_AGENT_URL".to_owned(), self.agent.url()),
            ("DD_ENV".to_owned(), "dev".to_owned()),
            ("DD_VERSION".to_owned(), "0.1.0".to_owned()),
            ("DD_TRACE_ENABLED".to_owned(), traced.to_string()),
            ("HOST".to_owned(), "127.0.0.1".to_owned()),
            ("PORT".to_owned(), port.to_string()),
        ];
        if let Some(db) = &self.database {
            env.push(("DATABASE_URL".to_owned(), db.clone()));
        }
        env
    }

    async fn start_calendar(&mut self, traced: bool) {
        if self.calendar.take().is_some() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let env = self.env(traced, self.calendar_port);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.calendar = Some(ServiceProcess::spawn("calendar", &env).await);
    }

    async fn start_notes(&mut self, traced: bool) {
        if let Some(old) = self.notes.take() {
            drop(old);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let calendar = format!("http://127.0.0.1:{}", self.calendar_port);
        let mut env = self.env(traced, self.notes_port);
        env.push(("CALENDAR_URL".to_owned(), calendar));
        env.push(("NOTES_HELPER_DELAY_SCALE".to_owned(), "0.01".to_owned()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.notes = Some(ServiceProcess::spawn("notes", &env).await);
        self.notes_traced = traced;
    }

    fn start_viewer(&mut self) {
        let listen = format!("127.0.0.1:{}", self.viewer_port);
        let child = tokio::process::Command::new(bin("tracecat"))
            .args(["serve", "--agent", &self.agent.url(), "--listen", &listen])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tracecat serve could not be run");
        self.viewer = Some(child);
    }

    /// The command as the test runs it: documented addresses to the test's, `cargo run` to the
    /// built binary, `/tmp/` to the test's directory.
    fn localize(&self, command: &str) -> String {
        let tracecat = format!("{} --agent {}", bin("tracecat").display(), self.agent.url());
        command
            .replace("cargo run -q -p tracecat --", &tracecat)
            .replace("localhost:8080", &format!("127.0.0.1:{}", self.notes_port))
            .replace(
                "localhost:9090",
                &format!("127.0.0.1:{}", self.calendar_port),
            )
            .replace("localhost:8127", &format!("127.0.0.1:{}", self.viewer_port))
            .replace("localhost:8126", &self.agent.url().replace("http://", ""))
            .replace(" /tmp/", &format!(" {}/", self.tmp.display()))
    }

    /// What the program printed, with the test's addresses written as the docs write them.
    fn delocalize(&self, output: &str) -> String {
        output
            .replace(&format!("127.0.0.1:{}", self.notes_port), "localhost:8080")
            .replace(&format!("{}/", self.tmp.display()), "/tmp/")
    }

    /// `--trace-id N` of a run of the docs: the id of the newest trace of the root the output
    /// shows (`· notes GET /notes ·`).
    async fn trace_id_for(&self, shown_first_line: &str) -> Option<u64> {
        let root = shown_first_line.split(" · ").nth(1)?;
        let (service, resource) = root.split_once(' ')?;
        self.agent
            .traces()
            .await
            .iter()
            .filter_map(|t| {
                t.iter()
                    .find(|s| {
                        s["parent_id"] == 0 && s["service"] == service && s["resource"] == resource
                    })
                    .and_then(|s| Some((s["start"].as_i64()?, s["trace_id"].as_u64()?)))
            })
            .max()
            .map(|(_, id)| id)
    }

    /// Replays one document's console blocks; the mismatches.
    async fn replay(&mut self, doc: &str, name: &str) -> (usize, Vec<String>) {
        let mut failures = Vec::new();
        let mut checked = 0;
        for block in console_blocks(doc) {
            let patched = block.iter().any(|c| {
                c.command
                    .starts_with("git apply docs/try-it-yourself.patch")
            });
            for shown in block {
                let c = shown.command.as_str();
                if c.contains("docker-compose") {
                    if c.contains("DD_TRACE_ENABLED=false") && c.contains(" up -d") {
                        self.start_calendar(false).await;
                        self.start_notes(false).await;
                    } else if c.contains("--profile testagent up -d")
                        && !c.contains("--build")
                        && !self.notes_traced
                    {
                        self.start_calendar(true).await;
                        self.start_notes(true).await;
                    } else if c.ends_with(" stop calendar") {
                        self.calendar = None;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    } else if c.ends_with(" start calendar") {
                        self.start_calendar(self.notes_traced).await;
                    }
                    continue;
                }
                let runs = c.starts_with("curl ") || c.starts_with("cargo run -q -p tracecat --");
                if !runs || c.contains(" serve") {
                    continue;
                }
                if patched && c.contains("tracecat") {
                    continue;
                }
                // What reads the traces without tracecat's settle time (the viewer's JSON, the
                // agent, `--list`) comes a few seconds after the requests, as when a learner
                // types it: the services send their spans every second.
                if c.contains("localhost:8127")
                    || c.contains("localhost:8126")
                    || c.contains("--list")
                {
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                }
                let mut command = self.localize(c);
                if let Some(at) = command.find("--trace-id ") {
                    let rest = &command[at + "--trace-id ".len()..];
                    let end = rest.find(' ').unwrap_or(rest.len());
                    let first = shown.output.first().map(String::as_str).unwrap_or("");
                    if let Some(id) = self.trace_id_for(first).await {
                        command = format!("{}--trace-id {id}{}", &command[..at], &rest[end..]);
                    }
                }
                let out = tokio::process::Command::new("bash")
                    .args(["-o", "pipefail", "-c", &command])
                    .output()
                    .await
                    .expect("bash could not be run");
                // curl's progress meter (stderr, as it writes to a pipe here) is not shown: on
                // a terminal it is not printed. tracecat's `wrote …` line goes to stderr.
                let stderr = if c.starts_with("curl ") {
                    String::new()
                } else {
                    String::from_utf8_lossy(&out.stderr).into_owned()
                };
                let printed =
                    self.delocalize(&format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)));
                let shown_text = shown.output.join("\n");
                checked += 1;
                if normalize(&printed) != normalize(&shown_text) {
                    failures.push(format!(
                        "{name}: `{c}`\n--- shown\n{shown_text}\n--- printed\n{printed}\n--- (normalized: shown)\n{}\n--- (normalized: printed)\n{}",
                        normalize(&shown_text),
                        normalize(&printed)
                    ));
                }
            }
        }
        (checked, failures)
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Some(v) = &mut self.viewer {
            let _ = v.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

fn wait_tool(name: &str) {
    let found = std::process::Command::new("bash")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{name} is not on PATH: the docs' commands need it");
}

/// docs/TUTORIAL.md's commands, from step 1 to the end, against notes on a fresh PostgreSQL
/// database: the curl answers and tracecat's output as shown.
#[tokio::test]
async fn the_tutorials_commands_print_what_it_shows() {
    wait_tool("curl");
    wait_tool("python3");
    let db = test_support::fresh_database().await;
    let mut replay = Replay::new(Some(db), false).await;
    let (checked, failures) = replay
        .replay(&read_doc("docs/TUTORIAL.md"), "docs/TUTORIAL.md")
        .await;
    assert!(checked >= 20, "only {checked} commands checked");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// README's commands (the tutorial's requests, tracecat on the no-Docker run with SQLite in
/// memory), against fresh services.
#[tokio::test]
async fn the_readmes_commands_print_what_it_shows() {
    wait_tool("curl");
    let mut replay = Replay::new(None, true).await;
    let (checked, failures) = replay.replay(&read_doc("README.md"), "README.md").await;
    assert!(checked >= 9, "only {checked} commands checked");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn normalize_abstracts_only_what_varies() {
    assert_eq!(
        normalize("trace 7264809252989325459 (128-bit 6b1040e80000000064d1c98665665093) · notes POST /notes · 1.81 ms · 2 spans"),
        "trace # (128-bit #) · notes POST /notes · <dur> · 2 spans"
    );
    assert_eq!(
        normalize("(2, hello_again with date 10/02/2022)"),
        "(2, hello_again with date <date>)"
    );
    assert_ne!(normalize("(2, hello)"), normalize("(3, hello)"));
    assert_ne!(normalize("2 spans"), normalize("3 spans"));
}
