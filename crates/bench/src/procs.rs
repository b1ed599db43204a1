//! Child processes (PostgreSQL, the services, pgbench) that cannot outlive the benchmark, a
//! private temp dir, and `/proc` readings (peak RSS). Free ports, users and log tails come from
//! `devkit`, shared with the integration tests.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM: every loop checks it, so Ctrl-C stops the load and cleans up.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to [`stopped`] instead of killing the process at once.
pub fn install_signal_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, handler as libc::sighandler_t);
        }
    }
}

/// Whether the user asked to stop (Ctrl-C or SIGTERM).
pub fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Sleeps up to `d`, returning early (false) when asked to stop.
pub fn sleep_unless_stopped(d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stopped() {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    !stopped()
}

/// A private directory for the run (PostgreSQL's data, logs, pgbench scripts), removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(run_as: Option<(u32, u32)>) -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("apm-bench-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {} to uid {uid}: {e}", path.display()))?;
        }
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// How to start a [`Proc`].
pub struct Spec<'a> {
    pub name: &'a str,
    pub program: &'a Path,
    pub args: Vec<String>,
    /// The whole environment of the child (plus PATH), so that the caller's DD_* or DB_*
    /// variables cannot leak into a measurement.
    pub envs: Vec<(String, String)>,
    pub log: PathBuf,
    pub cwd: &'a Path,
    pub run_as: Option<(u32, u32)>,
    /// Sent to stop it (SIGTERM: graceful; SIGINT for PostgreSQL: fast shutdown).
    pub stop_signal: libc::c_int,
}

/// A child process stopped (stop signal, then SIGKILL after 15 s) when dropped. It runs in its
/// own process group, so a Ctrl-C at the terminal reaches the benchmark only, which then stops
/// it in order; and it gets SIGKILL from the kernel should the benchmark die without cleaning up.
pub struct Proc {
    pub name: String,
    child: Child,
    stop_signal: libc::c_int,
    pub log: PathBuf,
}

impl Proc {
    /// Starts a process. Call it from the main thread: the kernel's parent-death signal fires
    /// when the *thread* that forked the child exits.
    pub fn spawn(spec: Spec<'_>) -> Result<Proc, String> {
        let log = File::create(&spec.log)
            .map_err(|e| format!("cannot create {}: {e}", spec.log.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = spec.run_as {
            let _ = std::os::unix::fs::chown(&spec.log, Some(uid), Some(gid));
        }
        let mut cmd = Command::new(spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(spec.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(spec.cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        if let Some((uid, gid)) = spec.run_as {
            cmd.uid(uid).gid(gid);
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.program.display()))?;
        Ok(Proc {
            name: spec.name.to_string(),
            child,
            stop_signal: spec.stop_signal,
            log: spec.log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for it to exit by itself, up to `timeout` (None: still running, or asked to stop).
    pub fn wait_for(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= end || stopped() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends its stop signal and waits for it (SIGKILL after 15 s).
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, self.stop_signal);
        }
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        devkit::file_tail(&self.log, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits for a service's `"message":"listening"` log line and returns its address.
pub fn wait_listening(proc: &mut Proc, timeout: Duration) -> Result<SocketAddr, String> {
    let end = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(&proc.log).unwrap_or_default();
        for line in text.lines() {
            if !line.contains("\"message\":\"listening\"") {
                continue;
            }
            let address = line
                .split("\"address\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|a| a.parse::<SocketAddr>().ok());
            if let Some(address) = address {
                return Ok(address);
            }
        }
        if let Some(status) = proc.exited() {
            return Err(format!(
                "{} exited during start-up ({status}); its log:\n{}",
                proc.name,
                proc.log_tail(20)
            ));
        }
        if Instant::now() >= end || stopped() {
            return Err(format!(
                "{} did not log its listening address within {timeout:?}; its log:\n{}",
                proc.name,
                proc.log_tail(20)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resets the process's peak RSS (VmHWM) to its current RSS (`/proc/PID/clear_refs`, value 5).
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The process's peak RSS (VmHWM) in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Runs a command to completion and returns its stdout (stderr on failure).
pub fn output(program: &Path, args: &[&str], cwd: &Path) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed ({}): {}{}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// CPU time (user + system) used so far by this thread (`who` = RUSAGE_THREAD), this process
/// (RUSAGE_SELF) or its reaped children (RUSAGE_CHILDREN).
pub fn rusage_cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command: state is field 3; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The direct children of a process (all its threads' `children` lists).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(
                    list.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    out
}

/// What a [`CpuMeter`] group measures.
#[derive(Clone, Debug)]
pub enum Group {
    /// These processes.
    Pids(Vec<u32>),
    /// A process and its direct children, including children that start and end while
    /// measuring (PostgreSQL's postmaster and its backends).
    Tree(u32),
}

/// Measures the CPU time that groups of processes use between `start` and `finish`, sampling
/// `/proc` every 100 ms (a process that ends between two samples loses at most its last 100 ms).
pub struct CpuMeter {
    stop: std::sync::Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<Duration>>,
}

impl CpuMeter {
    pub fn start(groups: Vec<Group>) -> CpuMeter {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
            // Per group: pid -> (ticks when first seen, ticks when last seen).
            let mut seen: Vec<std::collections::HashMap<u32, (u64, u64)>> =
                vec![Default::default(); groups.len()];
            let mut first_pass = true;
            loop {
                let last_pass = flag.load(Ordering::SeqCst);
                for (g, group) in groups.iter().enumerate() {
                    let pids = match group {
                        Group::Pids(p) => p.clone(),
                        Group::Tree(root) => {
                            let mut p = children(*root);
                            p.push(*root);
                            p
                        }
                    };
                    for pid in pids {
                        if let Some(t) = cpu_ticks(pid) {
                            // A process first seen after the start counts from zero.
                            let base = if first_pass { t } else { 0 };
                            seen[g].entry(pid).or_insert((base, t)).1 = t;
                        }
                    }
                }
                first_pass = false;
                if last_pass {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            seen.iter()
                .map(|m| {
                    let ticks: u64 = m.values().map(|(a, b)| b.saturating_sub(*a)).sum();
                    Duration::from_micros(ticks * 1_000_000 / hz)
                })
                .collect()
        });
        CpuMeter { stop, handle }
    }

    /// CPU time of each group, in the order given to [`CpuMeter::start`].
    pub fn finish(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}
