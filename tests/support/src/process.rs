//! Process plumbing shared by the harness: free ports, paths, and background
//! servers that cannot outlive the test process.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

pub use devkit::{file_tail, is_root, lines_tail, lookup_user, pid_alive};

/// A loopback TCP port that was free a moment ago, for programs that cannot
/// bind port 0 themselves. Another process may take it before it is used:
/// callers that start a server on it should retry on "address in use".
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` distinct free loopback ports (see [`free_port`]).
pub fn free_ports<const N: usize>() -> [u16; N] {
    devkit::free_ports()
        .expect("cannot bind 127.0.0.1:0 to find a free TCP port: is the loopback interface up?")
}

/// The workspace root (where `Cargo.toml`, `.venv/` and `tests/` live).
pub fn workspace_root() -> PathBuf {
    // This crate sits in `tests/support` of the workspace.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support has two parent directories")
        .to_path_buf()
}

/// A fresh, empty directory under the system temp dir, named after `prefix`,
/// this process and a counter. The caller removes it.
pub fn private_temp_dir(prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(sweep_stale_temp_dirs);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", dir.display()));
    dir
}

/// Removes the harness's temp dirs (`apm-tutorial-*-PID-...`) left by test
/// processes that are gone (one killed before its servers were guarded).
fn sweep_stale_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("apm-tutorial-")) else {
            continue;
        };
        // rest = KIND-PID-COUNTER-NANOS
        let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !pid_alive(pid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// `sh -c GUARD_SCRIPT sh SIGNAL CLEANUP LOG PROGRAM ARGS...`
///
/// Starts PROGRAM in the background (stdin from /dev/null, stdout and stderr
/// appended to LOG), prints its pid, then blocks reading its own stdin. The
/// write end of that pipe is held by the test process only (Rust opens pipes
/// close-on-exec, so no other child inherits it), so the read returns at EOF
/// when the test process drops it or exits for any reason, even by SIGKILL.
/// Then it sends SIGNAL to PROGRAM, waits for it (SIGKILL after 30 s), and
/// removes CLEANUP when that is not empty. The shell exits with PROGRAM's status.
const GUARD_SCRIPT: &str = r#"
sig=$1 cleanup=$2 log=$3
shift 3
"$@" </dev/null >>"$log" 2>&1 &
child=$!
echo "$child"
read -r _ || :
kill -s "$sig" "$child" 2>/dev/null
(
  i=0
  while [ "$i" -lt 300 ] && kill -0 "$child" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  kill -s KILL "$child" 2>/dev/null
) &
wait "$child"
status=$?
if [ -n "$cleanup" ]; then rm -rf -- "$cleanup"; fi
exit "$status"
"#;

/// A background server tied to the life of the test process (see [`GUARD_SCRIPT`]).
/// Dropping it, or the test process ending, stops the server and removes its
/// cleanup dir in the background; [`Guarded::kill_now`] does both at once.
pub struct Guarded {
    shell: Child,
    stdin: Option<ChildStdin>,
    /// The server's own pid (the shell's child).
    pub pid: u32,
}

/// How to start a [`Guarded`] server.
pub struct GuardedSpec<'a> {
    pub program: &'a Path,
    pub args: Vec<&'a OsStr>,
    pub envs: Vec<(&'a str, &'a OsStr)>,
    /// Start from an empty environment (plus `envs` and PATH/HOME/LANG).
    pub clear_env: bool,
    pub log: &'a Path,
    pub cwd: &'a Path,
    /// Signal name for `kill -s` when the test process goes away (INT, TERM...).
    pub stop_signal: &'a str,
    /// Directory removed after the server stopped at EOF (None: nothing).
    pub cleanup: Option<&'a Path>,
    /// Run as this (uid, gid) instead of the current user.
    pub run_as: Option<(u32, u32)>,
}

impl Guarded {
    pub fn spawn(spec: GuardedSpec<'_>) -> Result<Guarded, String> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(GUARD_SCRIPT)
            .arg("sh")
            .arg(spec.stop_signal)
            .arg(spec.cleanup.map(Path::as_os_str).unwrap_or_default())
            .arg(spec.log)
            .arg(spec.program)
            .args(&spec.args)
            .current_dir(spec.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C at the terminal reaches the test
            // process only, and the server is then stopped through the pipe.
            .process_group(0);
        if spec.clear_env {
            cmd.env_clear();
            for key in ["PATH", "HOME", "LANG", "TMPDIR"] {
                if let Some(value) = std::env::var_os(key) {
                    cmd.env(key, value);
                }
            }
        }
        for (key, value) in &spec.envs {
            cmd.env(key, value);
        }
        if let Some((uid, gid)) = spec.run_as {
            cmd.uid(uid).gid(gid);
        }
        let mut shell = cmd
            .spawn()
            .map_err(|e| format!("cannot run `sh` to start {}: {e}", spec.program.display()))?;
        let stdin = shell.stdin.take();
        let mut line = String::new();
        let read = match shell.stdout.take() {
            Some(out) => BufReader::new(out).read_line(&mut line),
            None => Ok(0),
        };
        let mut guard = Guarded {
            shell,
            stdin,
            pid: 0,
        };
        match (read, line.trim().parse::<u32>()) {
            (Ok(_), Ok(pid)) => {
                guard.pid = pid;
                Ok(guard)
            }
            (read, _) => {
                guard.kill_now();
                Err(format!(
                    "the guard shell for {} did not report a pid (read: {read:?}, line: {line:?}); log:\n{}",
                    spec.program.display(),
                    file_tail(spec.log, 40)
                ))
            }
        }
    }

    /// Whether the server is still running.
    pub fn alive(&self) -> bool {
        pid_alive(self.pid)
    }

    /// SIGKILL the server, then let the shell reap it and clean up, and reap
    /// the shell: on return the server is gone and its cleanup dir removed.
    pub fn kill_now(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions. The server is the
        // shell's child, and the shell reaps it only after we close its stdin
        // below, so the pid cannot have been reused.
        if self.pid > 0 {
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            }
        }
        self.stdin.take();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match self.shell.try_wait() {
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
                _ => return,
            }
        }
        // The shell is stuck: kill its whole process group (process_group(0)).
        // SAFETY: as above; a negative pid names the group this shell leads.
        unsafe {
            libc::kill(-(self.shell.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.shell.wait();
    }

    /// Close the pipe: the shell stops the server gracefully and cleans up, in
    /// the background.
    pub fn release(&mut self) {
        self.stdin.take();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // Closing stdin makes the shell stop the server and clean up. Reap the
        // shell if it is already gone; otherwise leave it to finish on its own.
        self.stdin.take();
        let _ = self.shell.try_wait();
    }
}
