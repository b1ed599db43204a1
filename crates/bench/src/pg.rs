//! A private PostgreSQL server with default settings, and pgbench runs against it.

use crate::load::{Latencies, Shape};
use crate::procs::{self, Proc, Spec};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The database the services and pgbench use.
pub const DB: &str = "bench";

/// A running PostgreSQL server on a loopback port.
pub struct Postgres {
    pub bindir: PathBuf,
    pub port: u16,
    pub version: String,
    /// `name=value` of the settings that matter for the figures.
    pub settings: String,
    proc: Proc,
}

/// The directory holding `initdb`, `postgres` and `pgbench`: the newest
/// `/usr/lib/postgresql/*/bin`, else `/usr/local/bin` or `/usr/bin`.
pub fn find_bindir() -> Result<PathBuf, String> {
    devkit::pg_bindir(
        &["initdb", "postgres", "pgbench", "psql", "pg_isready"],
        devkit::Search::VersionedFirst(&["/usr/local/bin", "/usr/bin"]),
    )
    .ok_or_else(|| {
        "no PostgreSQL server binaries (initdb, postgres, pgbench, psql, pg_isready) under \
         /usr/lib/postgresql/*/bin: install them (Debian: `apt-get install postgresql`)"
            .into()
    })
}

impl Postgres {
    /// initdb + postgres (default settings: fsync and synchronous_commit on), then the
    /// database with the tutorial's table and the row id=1.
    pub fn start(base: &Path, run_as: Option<(u32, u32)>) -> Result<Postgres, String> {
        let bindir = find_bindir()?;
        let data = base.join("pgdata");
        let mut initdb = Command::new(bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            // --no-sync only skips syncing initdb's own files; the server's settings are default.
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .args(["--encoding=UTF8", "--locale=C"])
            .current_dir(base)
            .stdin(Stdio::null());
        if let Some((uid, gid)) = run_as {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = devkit::free_port()
                .map_err(|e| format!("cannot bind 127.0.0.1:0 to find a free port: {e}"))?;
            let mut proc = Proc::spawn(Spec {
                name: "postgres",
                program: &bindir.join("postgres"),
                args: vec![
                    "-D".into(),
                    data.display().to_string(),
                    "-p".into(),
                    port.to_string(),
                    "-c".into(),
                    "listen_addresses=127.0.0.1".into(),
                    "-k".into(),
                    base.display().to_string(),
                ],
                envs: vec![("LANG".into(), "C".into())],
                log: base.join("postgres.log"),
                cwd: base,
                run_as,
                stop_signal: libc::SIGINT,
            })?;
            let end = Instant::now() + Duration::from_secs(60);
            loop {
                let ready = Command::new(bindir.join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ready {
                    let mut pg = Postgres {
                        bindir: bindir.clone(),
                        port,
                        version: String::new(),
                        settings: String::new(),
                        proc,
                    };
                    pg.prepare()?;
                    return Ok(pg);
                }
                if proc.exited().is_some() || Instant::now() > end || procs::stopped() {
                    last_error = format!(
                        "PostgreSQL did not start on port {port}; its log:\n{}",
                        proc.log_tail(20)
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(last_error)
    }

    fn prepare(&mut self) -> Result<(), String> {
        self.psql("postgres", &format!("CREATE DATABASE {DB}"))?;
        self.psql(
            DB,
            "CREATE TABLE IF NOT EXISTS notes (id SERIAL PRIMARY KEY, \
             description VARCHAR(255) NOT NULL); \
             INSERT INTO notes(description) VALUES ('hello')",
        )?;
        self.version = self.psql(DB, "SHOW server_version")?.trim().to_string();
        let mut settings = Vec::new();
        for name in [
            "fsync",
            "synchronous_commit",
            "shared_buffers",
            "max_connections",
        ] {
            let value = self.psql(DB, &format!("SHOW {name}"))?;
            settings.push(format!("{name}={}", value.trim()));
        }
        self.settings = settings.join(", ");
        Ok(())
    }

    /// Runs SQL through psql and returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        procs::output(
            &self.bindir.join("psql"),
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ],
            Path::new("/"),
        )
    }

    /// `postgres://postgres@127.0.0.1:PORT/bench` (trust authentication).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DB}", self.port)
    }

    pub fn stop(&mut self) {
        self.proc.stop();
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// One pgbench measurement.
pub struct PgbenchResult {
    /// CPU time of the PostgreSQL server (postmaster and backends) during the measured run.
    pub db_cpu: Duration,
    /// CPU time of pgbench itself during the measured run.
    pub client_cpu: Duration,
    pub tps: f64,
    pub transactions: u64,
    pub failed: u64,
    pub latencies: Latencies,
}

/// Runs `sql` through pgbench (prepared statements, `shape.connections` clients, 2 threads) for
/// `shape.duration`, at `shape.rate` transactions/s when given (latency then counts from each transaction's
/// scheduled start, as pgbench does under `-R`). A short run of the same script warms up first.
pub fn pgbench(
    pg: &Postgres,
    workdir: &Path,
    tag: &str,
    sql: &str,
    shape: Shape,
) -> Result<PgbenchResult, String> {
    let Shape {
        connections: clients,
        warmup,
        duration,
        rate,
    } = shape;
    let script = workdir.join(format!("{tag}.sql"));
    std::fs::write(&script, format!("{sql};\n")).map_err(|e| e.to_string())?;
    let threads = clients.clamp(1, 2);
    let common = |secs: u64, log_prefix: Option<&Path>| {
        let mut args = vec![
            "-n".to_string(),
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            pg.port.to_string(),
            "-U".into(),
            "postgres".into(),
            "-M".into(),
            "prepared".into(),
            "-f".into(),
            script.display().to_string(),
            "-c".into(),
            clients.to_string(),
            "-j".into(),
            threads.to_string(),
            "-T".into(),
            secs.max(1).to_string(),
        ];
        if let Some(rate) = rate {
            args.push("-R".into());
            args.push(format!("{rate:.0}"));
        }
        if let Some(prefix) = log_prefix {
            args.push("-l".into());
            args.push(format!("--log-prefix={}", prefix.display()));
        }
        args.push(DB.into());
        args
    };
    if !warmup.is_zero() {
        run(
            pg,
            workdir,
            &format!("{tag}-warmup"),
            common(warmup.as_secs(), None),
        )?;
    }
    // Per-transaction latencies only at a fixed rate: in a closed loop pgbench stamps the
    // transactions it completes in one wake-up with one cached clock reading, so many show 0 µs
    // (its own "latency average" is then just clients / tps).
    let prefix = workdir.join(format!("{tag}-log"));
    let log_prefix = rate.is_some().then_some(prefix.as_path());
    let meter = procs::CpuMeter::start(vec![procs::Group::Tree(pg.proc.pid())]);
    let children_before = procs::rusage_cpu(libc::RUSAGE_CHILDREN);
    let out = run(pg, workdir, tag, common(duration.as_secs(), log_prefix));
    let client_cpu = procs::rusage_cpu(libc::RUSAGE_CHILDREN).saturating_sub(children_before);
    let db_cpu = meter.finish().first().copied().unwrap_or_default();
    let out = out?;
    let number = |key: &str| -> Option<f64> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.parse().ok())
    };
    let tps = number("tps = ").ok_or_else(|| format!("no tps in pgbench's output:\n{out}"))?;
    let transactions = number("number of transactions actually processed:").unwrap_or(0.0) as u64;
    let failed = number("number of failed transactions:").unwrap_or(0.0) as u64;

    // Per-transaction log lines: client_id transaction_no time_us script_no epoch epoch_us [lag]
    let mut latencies = Latencies::new();
    let name_prefix = format!("{tag}-log");
    for entry in std::fs::read_dir(workdir)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(&name_prefix)
        {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).map_err(|e| e.to_string())?;
        for line in text.lines() {
            if let Some(us) = line.split(' ').nth(2).and_then(|t| t.parse::<u64>().ok()) {
                latencies.record_us(us);
            }
        }
        let _ = std::fs::remove_file(entry.path());
    }
    Ok(PgbenchResult {
        db_cpu,
        client_cpu,
        tps,
        transactions,
        failed,
        latencies,
    })
}

fn run(pg: &Postgres, workdir: &Path, tag: &str, args: Vec<String>) -> Result<String, String> {
    let log = workdir.join(format!("{tag}.out"));
    let secs: u64 = args
        .iter()
        .position(|a| a == "-T")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut proc = Proc::spawn(Spec {
        name: "pgbench",
        program: &pg.bindir.join("pgbench"),
        args,
        envs: vec![],
        log: log.clone(),
        cwd: workdir,
        run_as: None,
        stop_signal: libc::SIGINT,
    })?;
    let status = proc
        .wait_for(Duration::from_secs(secs + 60))
        .ok_or_else(|| "pgbench did not finish (stopped or timed out)".to_string())?;
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        return Err(format!("pgbench failed ({status}):\n{out}"));
    }
    Ok(out)
}
