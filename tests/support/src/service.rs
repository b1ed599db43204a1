//! The real service binaries (`notes`, `calendar`) run as subprocesses.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

use crate::process::lines_tail;

/// How long a service may take to log that it is listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory holding the workspace's binaries for the profile the tests
/// were built with: tests run from `target/<profile>/deps/`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the test executable's path");
    let dir = exe
        .parent()
        .expect("the test executable has a parent directory");
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A running service process; killed when dropped (or when the test thread
/// that started it ends, see [`ServiceProcess::spawn_program`]).
pub struct ServiceProcess {
    name: String,
    child: tokio::process::Child,
    pid: u32,
    port: u16,
    output: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl ServiceProcess {
    /// Runs the workspace binary `bin` (e.g. "notes") with `envs` added to the
    /// environment (`PORT=0` unless given; the caller's `DD_*`, `OTEL_*`, `DB_*`
    /// and `DATABASE_URL` variables are removed), and waits until it logs that it
    /// is listening.
    /// Panics with the fix when the binary was not built, or with its output
    /// when it exits or does not start listening in time.
    pub async fn spawn(bin: &str, envs: &[(&str, &str)]) -> ServiceProcess {
        let path = bin_dir().join(bin);
        if !path.is_file() {
            panic!(
                "service binary {} not found: run `cargo build --workspace --bins` first \
                 (`bash tests/run.sh` does it)",
                path.display()
            );
        }
        Self::spawn_program(&path, &[], envs).await
    }

    /// [`ServiceProcess::spawn`] for any program and arguments.
    ///
    /// The child gets SIGKILL if the thread that spawned it ends first
    /// (PR_SET_PDEATHSIG), so a killed test process leaves no service behind;
    /// a service must therefore not outlive the test (runtime) that started it.
    pub async fn spawn_program(
        program: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> ServiceProcess {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| program.display().to_string());
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            let key_str = key.to_string_lossy();
            if key_str.starts_with("DD_")
                || key_str.starts_with("OTEL_")
                || key_str.starts_with("DB_")
                || key_str == "DATABASE_URL"
            {
                cmd.env_remove(&key);
            }
        }
        if !envs.iter().any(|(k, _)| *k == "PORT") {
            cmd.env("PORT", "0");
        }
        cmd.envs(envs.iter().copied());
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (prctl, getppid, kill-free).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let pid = child.id().expect("a just-spawned child has a pid");
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(collect_lines(out, output.clone())));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(collect_lines(err, output.clone())));
        }
        let mut service = ServiceProcess {
            name,
            child,
            pid,
            port: 0,
            output,
            readers,
        };
        service.port = service.wait_until_listening().await;
        service
    }

    async fn wait_until_listening(&mut self) -> u16 {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(port) = self.logs().iter().find_map(listening_port) {
                return port;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain_readers().await;
                panic!(
                    "service {} exited ({status}) before logging that it listens; its output:\n{}",
                    self.name,
                    self.output_tail(200)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "service {} did not log {{\"message\":\"listening\",\"address\":...}} within {STARTUP_TIMEOUT:?}; its output:\n{}",
                    self.name,
                    self.output_tail(200)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:PORT`, PORT being the one the service logged.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every line the service wrote so far, stdout and stderr interleaved.
    pub fn lines(&self) -> Vec<String> {
        self.output.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The lines that are JSON objects (its log records), parsed.
    pub fn logs(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// Polls [`ServiceProcess::logs`] until one matches `pred` and returns it;
    /// panics after `timeout` with the output.
    pub async fn wait_for_log<F>(&self, mut pred: F, timeout: Duration) -> Value
    where
        F: FnMut(&Value) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.logs().into_iter().find(|v| pred(v)) {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "service {} did not log the expected record within {timeout:?}; its output:\n{}",
                    self.name,
                    self.output_tail(200)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last `max_lines` output lines, for failure messages.
    pub fn output_tail(&self, max_lines: usize) -> String {
        lines_tail(&self.lines(), max_lines)
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the service.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own
        // child, not yet reaped (we hold its `Child`), so it cannot be reused.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, signal) };
        assert_eq!(
            rc,
            0,
            "kill({}, {signal}) failed: {}",
            self.pid,
            std::io::Error::last_os_error()
        );
    }

    /// Waits up to `timeout` for the service to exit; `None` if it is still
    /// running. Once it has exited, its output is complete in `lines()`/`logs()`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.drain_readers().await;
                Some(status)
            }
            Ok(Err(e)) => panic!("waiting for service {} failed: {e}", self.name),
            Err(_) => None,
        }
    }

    async fn drain_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "[harness] service {} (pid {}, port {}) output:\n{}",
                self.name,
                self.pid,
                self.port,
                self.output_tail(200)
            );
        }
        // kill_on_drop(true) kills the child when `child` is dropped.
    }
}

async fn collect_lines<R: AsyncRead + Unpin>(stream: R, output: Arc<Mutex<Vec<String>>>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                if let Ok(mut lines) = output.lock() {
                    lines.push(line);
                }
            }
        }
    }
}

/// The port in a `{"message": "listening", "address": "HOST:PORT"}` record
/// (the fields may also sit under `fields`, as tracing-subscriber's JSON does).
pub fn listening_port(record: &Value) -> Option<u16> {
    let fields = record.get("fields").filter(|f| f.is_object());
    let get = |key: &str| {
        record
            .get(key)
            .or_else(|| fields.and_then(|f| f.get(key)))
            .and_then(Value::as_str)
    };
    if get("message")? != "listening" {
        return None;
    }
    get("address")?.rsplit_once(':')?.1.parse().ok()
}

/// calendar, then notes on a fresh PostgreSQL database calling it (helper sleeps scaled to 1%),
/// both with `env` (typically where to send traces), notes also with `notes_extra`.
pub async fn calendar_and_notes(
    env: &[(&str, &str)],
    notes_extra: &[(&str, &str)],
) -> (ServiceProcess, ServiceProcess) {
    let calendar = ServiceProcess::spawn("calendar", env).await;
    let db = crate::fresh_database().await;
    let calendar_url = calendar.base_url();
    let mut notes_env = env.to_vec();
    notes_env.extend([
        ("DATABASE_URL", db.as_str()),
        ("CALENDAR_URL", calendar_url.as_str()),
        ("NOTES_HELPER_DELAY_SCALE", "0.01"),
    ]);
    notes_env.extend_from_slice(notes_extra);
    let notes = ServiceProcess::spawn("notes", &notes_env).await;
    (calendar, notes)
}

/// Runs the workspace binary `bin` with `var=value` added to the environment and asserts that
/// it stops at start-up as a bad setting must: exit status 2 and one line on stderr naming `var`.
pub fn assert_bad_setting_stops_start_up(bin: &str, var: &str, value: &str) {
    let output = std::process::Command::new(bin_dir().join(bin))
        .env(var, value)
        .output()
        .unwrap_or_else(|e| {
            panic!("run the {bin} binary (built by `cargo build --workspace --bins`): {e}")
        });
    assert_eq!(output.status.code(), Some(2), "{var}={value}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(var), "{stderr}");
}
