//! `bench`: the one-command benchmark of BENCHMARKS.md.
//!
//! Starts a private PostgreSQL (default settings) and three copies of the stack (calendar +
//! notes, release builds, `NOTES_HELPER_DELAY_SCALE=0`): tracing off (`DD_TRACE_ENABLED=false`),
//! traced through this project's path (`opentelemetry-datadog`), and traced through Datadog's own
//! SDK (`datadog-opentelemetry`, the `datadog-sdk` feature); each traced copy exports to a trace
//! sink of its own. Then, for each endpoint, it drives load at a fixed concurrency (closed loop)
//! and at a fixed rate below saturation (open loop, latency from the scheduled start), runs
//! pgbench on the same single-row statements at the same concurrency, and prints one markdown
//! table with the ratios computed inside the run.
//!
//!     cargo run --release -p bench -- --duration 10

mod load;
mod pg;
mod procs;
mod report;
mod sink;

use hyper::Method;
use load::{LoadResult, Shape, Target};
use procs::{Proc, Spec};
use report::{Row, Run};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: cargo run --release -p bench -- [options]

  --duration SECS       measured seconds of each cell, closed and fixed-rate (default 10)
  --warmup SECS         unmeasured seconds before each cell (default 2)
  --connections N       concurrent connections, also pgbench's clients (default 16)
  --rate-fraction F     fixed rate = F x the saturated rate of each endpoint, the lowest of
                        the copies (default 0.5)
  --only KEYS           comma-separated endpoints: get-note, post-note, post-note-date, get-calendar
  --env KEY=VALUE       extra environment for the services (repeatable), e.g. --env WORKERS=1
  --stress-cpu N        keep N cores busy with `stress-ng --cpu N` during the whole run
                        (Debian: apt-get install stress-ng)
  --out FILE            also write the report (markdown) to FILE
  --perf DIR            record `perf` (cpu-clock, dwarf call graphs) of the serving process in
                        each saturated cell into DIR/<endpoint>-tracing-<off|on|sdk>.perf.data
                        (perturbs the figures: profile in a separate run)
  --saturated-only      skip the fixed-rate cells
  --bin-dir DIR         use the notes and calendar binaries in DIR (this project's path, and
                        tracing off) and do not build them
  --sdk-bin-dir DIR     the same for the copy traced by Datadog's SDK (built with
                        `--features datadog-sdk`); without it, --bin-dir leaves that copy out
  --no-sdk              leave out the copies traced by Datadog's SDK
  --no-production       leave out the production-sampling copies (`on-prod`, `sdk-prod`: their
                        sink answers /info with /v0.6/stats and client_drop_p0s, and rates of 1%)
  --production-only     run tracing off and the production-sampling copies only
  --baseline-bin-dir DIR
                        also run tracing off and on from the notes and calendar binaries in DIR
                        (an earlier commit's release build), beside the others in the same run:
                        an A/B of the same path (rows `off-base`, `on-base`)
  --no-build            do not build first (binaries in target/bench-bins/{project,sdk})
  -h, --help            this text

Needs the PostgreSQL server binaries (Debian: apt-get install postgresql); run as root it runs
PostgreSQL as user `postgres`. Everything listens on 127.0.0.1 only.";

/// Command-line options.
#[derive(Debug, Clone)]
struct Options {
    duration: Duration,
    warmup: Duration,
    connections: usize,
    rate_fraction: f64,
    only: Option<Vec<String>>,
    service_env: Vec<(String, String)>,
    out: Option<PathBuf>,
    perf: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
    sdk_bin_dir: Option<PathBuf>,
    /// An earlier build to compare with, tracing off and on (`--baseline-bin-dir`).
    baseline_bin_dir: Option<PathBuf>,
    sdk: bool,
    /// The production-sampling copies (`on-prod`, `sdk-prod`).
    production: bool,
    /// Only tracing off and the production-sampling copies (`--production-only`).
    production_only: bool,
    stress_cpu: usize,
    build: bool,
    saturated_only: bool,
}

fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        connections: 16,
        rate_fraction: 0.5,
        only: None,
        service_env: Vec::new(),
        out: None,
        perf: None,
        bin_dir: None,
        sdk_bin_dir: None,
        baseline_bin_dir: None,
        sdk: true,
        production: true,
        production_only: false,
        stress_cpu: 0,
        build: true,
        saturated_only: false,
    };
    let mut i = 0;
    while i < args.len() {
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (args[i].clone(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let secs = |v: String| -> Result<Duration, String> {
            let s: f64 = v
                .parse()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))?;
            if !(s.is_finite() && s >= 0.0) {
                return Err(format!("{flag}: {v:?} must be a non-negative number"));
            }
            Ok(Duration::from_secs_f64(s))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--duration" => {
                o.duration = secs(value()?)?;
                if o.duration < Duration::from_secs(1) {
                    return Err("--duration must be at least 1 second".into());
                }
                o.duration = Duration::from_secs(o.duration.as_secs());
            }
            "--warmup" => o.warmup = Duration::from_secs(secs(value()?)?.as_secs()),
            "--connections" => {
                let v = value()?;
                o.connections = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| format!("--connections: {v:?} is not 1..=64"))?;
            }
            "--rate-fraction" => {
                let v = value()?;
                o.rate_fraction = v
                    .parse()
                    .ok()
                    .filter(|f: &f64| *f > 0.0 && *f <= 2.0)
                    .ok_or_else(|| format!("--rate-fraction: {v:?} is not in (0, 2]"))?;
            }
            "--only" => {
                let keys: Vec<String> = value()?.split(',').map(|s| s.trim().to_string()).collect();
                for k in &keys {
                    if !ENDPOINTS.iter().any(|e| e.key == k) {
                        return Err(format!("--only: unknown endpoint {k:?}"));
                    }
                }
                o.only = Some(keys);
            }
            "--env" => {
                let v = value()?;
                let (k, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--env: {v:?} is not KEY=VALUE"))?;
                o.service_env.push((k.to_string(), val.to_string()));
            }
            "--out" => o.out = Some(PathBuf::from(value()?)),
            "--perf" => o.perf = Some(PathBuf::from(value()?)),
            "--bin-dir" => {
                o.bin_dir = Some(bin_dir("--bin-dir", &value()?)?);
                o.build = false;
            }
            "--sdk-bin-dir" => {
                o.sdk_bin_dir = Some(bin_dir("--sdk-bin-dir", &value()?)?);
                o.build = false;
            }
            "--baseline-bin-dir" => {
                o.baseline_bin_dir = Some(bin_dir("--baseline-bin-dir", &value()?)?)
            }
            "--no-sdk" => o.sdk = false,
            "--no-production" => o.production = false,
            "--production-only" => o.production_only = true,
            "--stress-cpu" => {
                let v = value()?;
                o.stress_cpu = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| format!("--stress-cpu: {v:?} is not 1..=64"))?;
            }
            "--no-build" => o.build = false,
            "--saturated-only" => o.saturated_only = true,
            _ => return Err(format!("unknown argument {:?}", args[i])),
        }
        i += 1;
    }
    Ok(Some(o))
}

/// A directory of prebuilt `notes` and `calendar` binaries, made absolute: the services start
/// in directories of their own.
fn bin_dir(flag: &str, dir: &str) -> Result<PathBuf, String> {
    let path = std::fs::canonicalize(dir).map_err(|e| format!("{flag}: {dir:?}: {e}"))?;
    for bin in ["notes", "calendar"] {
        if !path.join(bin).is_file() {
            return Err(format!("{flag}: {dir:?} has no {bin} binary"));
        }
    }
    Ok(path)
}

/// How a copy of the system is traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `DD_TRACE_ENABLED=false`.
    Off,
    /// This project's export path (`opentelemetry-datadog`): the default build.
    Project,
    /// Datadog's own SDK (`datadog-opentelemetry`): the `datadog-sdk` feature.
    Sdk,
    /// The baseline build (`--baseline-bin-dir`), tracing off.
    BaseOff,
    /// The baseline build, traced through its own (this project's) path.
    BaseOn,
    /// This project's path under production sampling: its sink answers `/info` as the Agent
    /// does (stats, `client_drop_p0s`) and rates of 1%; `DD_TRACE_STATS_COMPUTATION_ENABLED`
    /// unset, so the services follow the Agent.
    ProdOn,
    /// Datadog's SDK against the same production sink, with
    /// `DD_TRACE_STATS_COMPUTATION_ENABLED=true` (its stats are off unless a user sets it).
    ProdSdk,
}

impl Mode {
    /// The table's "tracing" column, and the file names.
    pub fn tag(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Project => "on",
            Mode::Sdk => "sdk",
            Mode::BaseOff => "off-base",
            Mode::BaseOn => "on-base",
            Mode::ProdOn => "on-prod",
            Mode::ProdSdk => "sdk-prod",
        }
    }

    /// A copy traced by Datadog's SDK.
    pub fn is_sdk(self) -> bool {
        matches!(self, Mode::Sdk | Mode::ProdSdk)
    }

    /// A copy under production sampling (its sink plays a production Agent).
    pub fn production(self) -> bool {
        matches!(self, Mode::ProdOn | Mode::ProdSdk)
    }

    /// The SDK copy this project's copy is compared with, at the same sampling.
    pub fn sdk_peer(self) -> Option<Mode> {
        match self {
            Mode::Project => Some(Mode::Sdk),
            Mode::ProdOn => Some(Mode::ProdSdk),
            _ => None,
        }
    }

    pub fn traced(self) -> bool {
        !matches!(self, Mode::Off | Mode::BaseOff)
    }

    /// The untraced copy of the same build, which this one's tracing cost is measured against.
    pub fn untraced(self) -> Mode {
        match self {
            Mode::BaseOff | Mode::BaseOn => Mode::BaseOff,
            Mode::Off | Mode::Project | Mode::Sdk | Mode::ProdOn | Mode::ProdSdk => Mode::Off,
        }
    }

    /// For the baseline copies, the copy of the build under test they are compared with.
    pub fn compared_with(self) -> Option<Mode> {
        match self {
            Mode::BaseOff => Some(Mode::Off),
            Mode::BaseOn => Some(Mode::Project),
            Mode::Off | Mode::Project | Mode::Sdk | Mode::ProdOn | Mode::ProdSdk => None,
        }
    }
}

/// Which service an endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Notes,
    Calendar,
}

impl Service {
    /// Its `DD_SERVICE`, as the stats name it.
    fn name(self) -> &'static str {
        match self {
            Service::Notes => "notes",
            Service::Calendar => "calendar",
        }
    }
}

/// The single-row statement pgbench runs as an endpoint's database limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    Select,
    Insert,
}

impl Statement {
    fn sql(self) -> &'static str {
        match self {
            Statement::Select => "SELECT id, description FROM notes WHERE id = 1",
            Statement::Insert => "INSERT INTO notes(description) VALUES ('x') RETURNING id",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Statement::Select => "select",
            Statement::Insert => "insert",
        }
    }
}

/// A benchmarked request.
#[derive(Debug)]
pub struct Endpoint {
    pub key: &'static str,
    pub label: &'static str,
    service: Service,
    method: Method,
    path: &'static str,
    /// Spans one request produces in all (both services).
    pub spans: u64,
    pub statement: Option<Statement>,
}

const ENDPOINTS: [Endpoint; 4] = [
    Endpoint {
        key: "get-note",
        label: "GET /notes?id=1",
        service: Service::Notes,
        method: Method::GET,
        path: "/notes?id=1",
        spans: 2,
        statement: Some(Statement::Select),
    },
    Endpoint {
        key: "post-note",
        label: "POST /notes?desc=x",
        service: Service::Notes,
        method: Method::POST,
        path: "/notes?desc=x",
        spans: 2,
        statement: Some(Statement::Insert),
    },
    Endpoint {
        key: "post-note-date",
        label: "POST /notes?desc=x&add_date=y",
        service: Service::Notes,
        method: Method::POST,
        path: "/notes?desc=x&add_date=y",
        spans: 6,
        statement: Some(Statement::Insert),
    },
    Endpoint {
        key: "get-calendar",
        label: "GET /calendar",
        service: Service::Calendar,
        method: Method::GET,
        path: "/calendar",
        spans: 2,
        statement: None,
    },
];

/// One copy of the system: calendar + notes, with tracing off, or traced to a sink of its own.
struct Stack {
    mode: Mode,
    /// Where its spans go (traced copies).
    sink: Option<sink::Sink>,
    notes: Proc,
    notes_addr: SocketAddr,
    calendar: Proc,
    calendar_addr: SocketAddr,
}

impl Stack {
    fn start(
        bins: &Path,
        workdir: &Path,
        mode: Mode,
        database_url: &str,
        extra: &[(String, String)],
    ) -> Result<Stack, String> {
        let tag = mode.tag();
        let tracing = mode.traced();
        let agent = if mode.production() {
            sink::Agent::Production
        } else {
            sink::Agent::Plain
        };
        let sink = if tracing {
            Some(sink::start(agent)?)
        } else {
            None
        };
        // Tracing off: an address nothing listens on (nothing may be sent).
        let sink_addr = sink
            .as_ref()
            .map(|s| s.addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9)));
        let base = |service: &str| -> Vec<(String, String)> {
            let mut env = vec![
                ("HOST".to_string(), "127.0.0.1".to_string()),
                ("PORT".into(), "0".into()),
                ("DD_SERVICE".into(), service.into()),
                ("DD_ENV".into(), "bench".into()),
                ("DD_TRACE_ENABLED".into(), tracing.to_string()),
                ("DD_TRACE_AGENT_URL".into(), format!("http://{sink_addr}")),
            ];
            // Datadog's SDK computes stats only when told to, as a user running it with an
            // Agent that takes them would set it; this project's copy follows the Agent's /info.
            if mode == Mode::ProdSdk {
                env.push(("DD_TRACE_STATS_COMPUTATION_ENABLED".into(), "true".into()));
            }
            env.extend(extra.iter().cloned());
            env
        };
        let mut calendar = Proc::spawn(Spec {
            name: &format!("calendar (tracing {tag})"),
            program: &bins.join("calendar"),
            args: vec![],
            envs: base("calendar"),
            log: workdir.join(format!("calendar-{tag}.log")),
            cwd: workdir,
            run_as: None,
            stop_signal: libc::SIGTERM,
        })?;
        let calendar_addr = procs::wait_listening(&mut calendar, Duration::from_secs(30))?;
        let mut env = base("notes");
        env.extend([
            ("DATABASE_URL".to_string(), database_url.to_string()),
            ("CALENDAR_URL".into(), format!("http://{calendar_addr}")),
            ("NOTES_HELPER_DELAY_SCALE".into(), "0".into()),
        ]);
        let mut notes = Proc::spawn(Spec {
            name: &format!("notes (tracing {tag})"),
            program: &bins.join("notes"),
            args: vec![],
            envs: env,
            log: workdir.join(format!("notes-{tag}.log")),
            cwd: workdir,
            run_as: None,
            stop_signal: libc::SIGTERM,
        })?;
        let notes_addr = procs::wait_listening(&mut notes, Duration::from_secs(30))?;
        // Ready when the database answers through it.
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let health = Target {
                addr: notes_addr,
                method: Method::GET,
                path: "/health",
            };
            match load::sequential(&health, 1) {
                Ok(1) => break,
                _ if Instant::now() < end && !procs::stopped() => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                other => {
                    return Err(format!(
                        "notes (tracing {tag}) is not healthy: {:?}; its log:\n{}",
                        other,
                        notes.log_tail(20)
                    ))
                }
            }
        }
        Ok(Stack {
            mode,
            sink,
            notes,
            notes_addr,
            calendar,
            calendar_addr,
        })
    }

    fn target(&self, e: &Endpoint) -> Target {
        Target {
            addr: match e.service {
                Service::Notes => self.notes_addr,
                Service::Calendar => self.calendar_addr,
            },
            method: e.method.clone(),
            path: e.path,
        }
    }

    fn check_alive(&mut self) -> Result<(), String> {
        for p in [&mut self.notes, &mut self.calendar] {
            if let Some(status) = p.exited() {
                return Err(format!(
                    "{} exited ({status}); its log:\n{}",
                    p.name,
                    p.log_tail(20)
                ));
            }
        }
        Ok(())
    }
}

/// Spans a sink has received so far (0 without a sink).
fn sink_spans(sink: Option<&sink::Sink>) -> u64 {
    sink.map_or(0, |s| s.spans())
}

/// Waits until the sink has what `expected` says and has been quiet for longer than the
/// exporters' flush interval (1 s), or quiet for 3 s; returns the spans received since `before`.
fn settle(sink: &sink::Sink, before: u64, expected: u64) -> u64 {
    let start = Instant::now();
    let mut last = sink.spans();
    let mut changed = Instant::now();
    loop {
        if !procs::sleep_unless_stopped(Duration::from_millis(100)) {
            break;
        }
        let now = sink.spans();
        if now != last {
            last = now;
            changed = Instant::now();
        }
        let quiet = changed.elapsed();
        if (last - before >= expected && quiet >= Duration::from_millis(1300))
            || quiet >= Duration::from_secs(3)
            || start.elapsed() >= Duration::from_secs(30)
        {
            break;
        }
    }
    last - before
}

/// Waits until the stats' server hits of `service` since `before` reach `expected` and have been
/// quiet for longer than the exporters' flush tick, or quiet for 25 s (Datadog's SDK sends a
/// bucket up to two bucket lengths, 20 s, after it opened); returns them.
fn settle_hits(sink: &sink::Sink, service: &str, before: u64, expected: u64) -> u64 {
    let start = Instant::now();
    let mut last = sink.server_hits(service);
    let mut changed = Instant::now();
    loop {
        if !procs::sleep_unless_stopped(Duration::from_millis(100)) {
            break;
        }
        let now = sink.server_hits(service);
        if now != last {
            last = now;
            changed = Instant::now();
        }
        let quiet = changed.elapsed();
        if (last - before >= expected && quiet >= Duration::from_millis(1300))
            || quiet >= Duration::from_secs(25)
            || start.elapsed() >= Duration::from_secs(45)
        {
            break;
        }
    }
    last - before
}

struct Bench<'a> {
    opts: &'a Options,
    pg: &'a pg::Postgres,
    workdir: &'a Path,
}

impl Bench<'_> {
    fn endpoint_cell(
        &self,
        e: &'static Endpoint,
        stack: &mut Stack,
        shape: Shape,
    ) -> Result<Row, String> {
        stack.check_alive()?;
        for pid in [stack.notes.pid(), stack.calendar.pid()] {
            procs::reset_peak_rss(pid);
        }
        let before = sink_spans(stack.sink.as_ref());
        let hits_before = stack
            .sink
            .as_ref()
            .filter(|_| stack.mode.production())
            .map(|s| s.server_hits(e.service.name()));
        let meter = procs::CpuMeter::start(vec![
            procs::Group::Pids(vec![stack.notes.pid(), stack.calendar.pid()]),
            procs::Group::Tree(self.pg.pid()),
        ]);
        let perf = match &self.opts.perf {
            Some(dir) if shape.rate.is_none() => {
                let file = dir.join(format!("{}-tracing-{}.perf.data", e.key, stack.mode.tag()));
                let pid = match e.service {
                    Service::Notes => stack.notes.pid(),
                    Service::Calendar => stack.calendar.pid(),
                };
                Some(start_perf(&file, pid, shape, self.workdir)?)
            }
            _ => None,
        };
        eprintln!(
            "[bench] {} tracing {} {} ...",
            e.label,
            stack.mode.tag(),
            shape_label(shape)
        );
        let result: LoadResult = load::run(&stack.target(e), shape)?;
        if let Some(mut perf) = perf {
            if perf.wait_for(Duration::from_secs(30)).is_none() {
                perf.stop();
            }
        }
        let expected = if stack.mode.traced() {
            result.answered_total * e.spans
        } else {
            0
        };
        let received = match &stack.sink {
            Some(sink) if stack.mode.production() => settle(sink, before, 0),
            Some(sink) => settle(sink, before, expected),
            None => 0,
        };
        // Per answered request, warm-up included: the meter ran over the whole cell, and
        // through the last span export.
        let cpu = meter.finish();
        // Production sampling: the stats of the last requests come when their 10 s bucket
        // closes (after the meter: waiting costs the services nothing).
        let stats_hits = match (&stack.sink, hits_before) {
            (Some(sink), Some(before)) => Some((
                settle_hits(sink, e.service.name(), before, result.answered_total),
                result.answered_total,
            )),
            _ => None,
        };
        let per_request = |d: Option<&Duration>| {
            d.filter(|_| result.answered_total > 0)
                .map(|d| d.as_secs_f64() * 1e6 / result.answered_total as f64)
        };
        stack.check_alive()?;
        if let Some(err) = &result.first_error {
            eprintln!("[bench]   first error: {err}");
        }
        Ok(Row {
            endpoint: Some(e),
            statement: None,
            tracing: Some(stack.mode),
            rate: shape.rate,
            requests: result.measured,
            rps: result.rate(),
            errors: result.errors,
            latencies: result.latencies,
            rss_notes_kib: procs::peak_rss_kib(stack.notes.pid()),
            rss_calendar_kib: procs::peak_rss_kib(stack.calendar.pid()),
            spans: Some((received, expected)),
            stats_hits,
            cpu_service_us: per_request(cpu.first()),
            cpu_db_us: per_request(cpu.get(1)),
            cpu_client_us: per_request(Some(&result.client_cpu)),
            send_lag_p99_ms: shape.rate.and_then(|_| result.send_lag.quantile_ms(0.99)),
        })
    }

    /// The cells of one phase: per endpoint, at the shape `shape_of` gives it (none: left out).
    fn cells(
        &self,
        endpoints: &[&'static Endpoint],
        stacks: &mut [Stack],
        run: &mut Run,
        shape_of: impl Fn(&Run, &Endpoint) -> Option<Shape>,
    ) -> Result<(), String> {
        let mut pg_done = Vec::new();
        for e in endpoints {
            if let Some(shape) = shape_of(run, e) {
                self.endpoint_cells(e, stacks, shape, &mut pg_done, run)?;
            }
        }
        Ok(())
    }

    /// One endpoint at `shape`: pgbench on its statement unless `pg_done` has it, then each
    /// copy of the stack.
    fn endpoint_cells(
        &self,
        e: &'static Endpoint,
        stacks: &mut [Stack],
        shape: Shape,
        pg_done: &mut Vec<Statement>,
        run: &mut Run,
    ) -> Result<(), String> {
        if let Some(st) = e.statement.filter(|s| !pg_done.contains(s)) {
            run.rows.push(self.pgbench_cell(st, shape)?);
            pg_done.push(st);
        }
        for stack in stacks.iter_mut() {
            run.rows.push(self.endpoint_cell(e, stack, shape)?);
            if procs::stopped() {
                return Err("stopped".into());
            }
        }
        Ok(())
    }

    fn pgbench_cell(&self, statement: Statement, shape: Shape) -> Result<Row, String> {
        eprintln!(
            "[bench] pgbench {} {} ...",
            statement.tag(),
            shape_label(shape)
        );
        let r = pg::pgbench(
            self.pg,
            self.workdir,
            statement.tag(),
            statement.sql(),
            shape,
        )?;
        let per_txn = |d: Duration| {
            (r.transactions > 0).then(|| d.as_secs_f64() * 1e6 / r.transactions as f64)
        };
        Ok(Row {
            endpoint: None,
            statement: Some(statement),
            tracing: None,
            rate: shape.rate,
            requests: r.transactions,
            rps: r.tps,
            errors: r.failed,
            latencies: r.latencies,
            rss_notes_kib: None,
            rss_calendar_kib: None,
            spans: None,
            stats_hits: None,
            cpu_service_us: None,
            cpu_db_us: per_txn(r.db_cpu),
            cpu_client_us: per_txn(r.client_cpu),
            send_lag_p99_ms: None,
        })
    }
}

fn shape_label(shape: Shape) -> String {
    match shape.rate {
        None => format!(
            "{} connections, {} s",
            shape.connections,
            shape.duration.as_secs()
        ),
        Some(r) => format!(
            "{r:.0} req/s on {} connections, {} s",
            shape.connections,
            shape.duration.as_secs()
        ),
    }
}

fn start_perf(file: &Path, pid: u32, shape: Shape, workdir: &Path) -> Result<Proc, String> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let secs = (shape.warmup + shape.duration).as_secs().max(1);
    Proc::spawn(Spec {
        name: "perf",
        program: Path::new("perf"),
        args: vec![
            "record".into(),
            "-e".into(),
            "cpu-clock".into(),
            "-F".into(),
            "299".into(),
            "--call-graph".into(),
            "dwarf,32768".into(),
            "-p".into(),
            pid.to_string(),
            "-o".into(),
            file.display().to_string(),
            "--".into(),
            "sleep".into(),
            secs.to_string(),
        ],
        envs: vec![],
        log: workdir.join("perf.log"),
        cwd: Path::new("."),
        run_as: None,
        stop_signal: libc::SIGINT,
    })
}

/// `cargo build --release` of the two services, into the target dir this binary runs from,
/// with `features` (empty: the default build), and a copy of both binaries into `into` (the two
/// builds write the same `target/release/{notes,calendar}`).
fn build_services(target_dir: &Path, features: &str, into: &Path) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args = vec![
        "build",
        "--release",
        "--bins",
        "-p",
        "notes",
        "-p",
        "calendar",
    ];
    if !features.is_empty() {
        args.extend(["--features", features]);
    }
    eprintln!("[bench] cargo {} ...", args.join(" "));
    let status = std::process::Command::new("cargo")
        .args(&args)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run cargo in {}: {e}", root.display()))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})"));
    }
    std::fs::create_dir_all(into).map_err(|e| format!("cannot create {}: {e}", into.display()))?;
    for b in ["notes", "calendar"] {
        let from = target_dir.join("release").join(b);
        std::fs::copy(&from, into.join(b))
            .map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
    }
    Ok(())
}

/// Checks that `dir` holds both services.
fn check_bins(dir: &Path, build: &str) -> Result<(), String> {
    for b in ["notes", "calendar"] {
        if !dir.join(b).is_file() {
            return Err(format!(
                "{} missing: build it with `{build}` (or let the benchmark build: no --no-build)",
                dir.join(b).display()
            ));
        }
    }
    Ok(())
}

/// The whole benchmark: builds (unless told not to), starts PostgreSQL and the copies of the
/// stack, measures every cell, and returns the report.
fn run(opts: &Options) -> Result<String, String> {
    if cfg!(debug_assertions) {
        eprintln!("[bench] warning: this is a debug build of the load generator; use --release");
    }
    let started = Instant::now();
    let (bins, sdk_bins) = service_bins(opts)?;
    let mut run = Run::describe(opts_command(), opts.connections, opts.rate_fraction);
    run.revision = revision();
    let run_as = postgres_user()?;
    let workdir = procs::TempDir::new(run_as)?;
    let mut pg = pg::Postgres::start(&workdir.path, run_as)?;
    eprintln!(
        "[bench] PostgreSQL {} on port {} ({})",
        pg.version, pg.port, pg.settings
    );
    run.postgres = format!("PostgreSQL {} ({})", pg.version, pg.settings);
    run.services = describe_services(
        &bins,
        sdk_bins.as_deref(),
        opts.baseline_bin_dir.as_deref(),
        &opts.service_env,
    );
    if opts.production_only {
        run.services.push_str(
            "; --production-only: of the copies above, tracing off and the production-sampling ones",
        );
    }
    if opts.production || opts.production_only {
        run.services.push_str(&format!(
            "; production sampling: `on-prod` (this project's path{}) with \
             DD_TRACE_STATS_COMPUTATION_ENABLED unset, exporting to a sink that answers GET /info \
             as a Datadog Agent 7 (endpoints with /v0.6/stats, client_drop_p0s: true, peer_tags), \
             answers each trace post with rate_by_service {:.0}% for every service and counts the \
             /v0.6/stats payloads' server hits",
            if sdk_bins.is_some() {
                ") and `sdk-prod` (Datadog's SDK, DD_TRACE_STATS_COMPUTATION_ENABLED=true"
            } else {
                ""
            },
            sink::PRODUCTION_RATE * 100.0
        ));
    }
    let mut stress = start_stress(opts, &workdir.path, &mut run)?;

    let result = (|| -> Result<(), String> {
        let mut stacks = start_stacks(opts, &bins, sdk_bins.as_deref(), &workdir.path, &pg)?;
        let endpoints = selected_endpoints(opts);
        calibrate(&stacks, &endpoints, &mut run)?;
        let bench = Bench {
            opts,
            pg: &pg,
            workdir: &workdir.path,
        };
        let closed = Shape {
            connections: opts.connections,
            warmup: opts.warmup,
            duration: opts.duration,
            rate: None,
        };
        bench.cells(&endpoints, &mut stacks, &mut run, |_, _| Some(closed))?;
        if !opts.saturated_only {
            bench.cells(&endpoints, &mut stacks, &mut run, |run, e| {
                fixed_rate(run, e, closed, opts.rate_fraction)
            })?;
        }
        stop_stacks(&mut stacks, &mut run);
        Ok(())
    })();
    pg.stop();
    if let Some(p) = stress.as_mut() {
        p.stop();
    }
    result?;
    run.wall = started.elapsed();
    run.finish();
    Ok(run.render())
}

/// The fixed-rate shape of an endpoint: the same rate for every copy, `fraction` of the slowest
/// one's saturated rate; none when it did not saturate above 1 req/s.
fn fixed_rate(run: &Run, e: &Endpoint, closed: Shape, fraction: f64) -> Option<Shape> {
    let saturated = run
        .rows
        .iter()
        .filter(|r| r.rate.is_none() && r.endpoint.is_some_and(|x| x.key == e.key))
        .map(|r| r.rps)
        .fold(f64::INFINITY, f64::min);
    (saturated.is_finite() && saturated >= 1.0).then_some(Shape {
        rate: Some(saturated * fraction),
        ..closed
    })
}

/// The directories of the services' binaries: this project's path (also tracing off) and, when
/// included, the copy traced by Datadog's SDK; built first unless told otherwise.
fn service_bins(opts: &Options) -> Result<(PathBuf, Option<PathBuf>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    // target/<profile>/bench → target
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?
        .to_path_buf();
    let (bins, sdk_bins) = match &opts.bin_dir {
        Some(dir) => (dir.clone(), opts.sdk_bin_dir.clone().filter(|_| opts.sdk)),
        None => {
            let bins = target_dir.join("bench-bins/project");
            let sdk_bins = target_dir.join("bench-bins/sdk");
            if opts.build {
                build_services(&target_dir, "", &bins)?;
                if opts.sdk {
                    build_services(&target_dir, "datadog-sdk", &sdk_bins)?;
                }
            }
            (bins, opts.sdk.then_some(sdk_bins))
        }
    };
    check_bins(&bins, "cargo build --release --bins -p notes -p calendar")?;
    if let Some(dir) = &opts.baseline_bin_dir {
        check_bins(dir, "cargo build --release --bins -p notes -p calendar")?;
    }
    if let Some(dir) = &sdk_bins {
        check_bins(
            dir,
            "cargo build --release --bins -p notes -p calendar --features datadog-sdk",
        )?;
    } else {
        eprintln!("[bench] the copy traced by Datadog's SDK is left out (--no-sdk, or --bin-dir without --sdk-bin-dir)");
    }
    Ok((bins, sdk_bins))
}

/// As root, the `postgres` user to run PostgreSQL as (initdb refuses root); else nobody else.
fn postgres_user() -> Result<Option<(u32, u32)>, String> {
    if !devkit::is_root() {
        return Ok(None);
    }
    devkit::lookup_user("postgres").map(Some).ok_or_else(|| {
        "running as root, and there is no user `postgres` to run PostgreSQL as".into()
    })
}

/// The report's line on the services: which copies, from where, with what environment.
fn describe_services(
    bins: &Path,
    sdk_bins: Option<&Path>,
    baseline_bins: Option<&Path>,
    service_env: &[(String, String)],
) -> String {
    let extra: Vec<String> = service_env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "release builds; copies of calendar + notes: tracing off (DD_TRACE_ENABLED=false) and \
         `on` (this project's path, opentelemetry-datadog) from {}{}{}, each traced copy exporting \
         to a trace sink of its own; NOTES_HELPER_DELAY_SCALE=0, logs (RUST_LOG=info) to files, \
         defaults otherwise{}",
        bins.display(),
        match sdk_bins {
            Some(d) => format!(
                ", `sdk` (Datadog's datadog-opentelemetry, `--features datadog-sdk`) from {}",
                d.display()
            ),
            None => String::new(),
        },
        match baseline_bins {
            Some(d) => format!(
                ", and the baseline's copies `off-base` and `on-base` from {}",
                d.display()
            ),
            None => String::new(),
        },
        if extra.is_empty() {
            String::new()
        } else {
            format!(", plus {}", extra.join(" "))
        }
    )
}

/// With `--stress-cpu N`, another process keeping N cores busy for the whole run (noted in the
/// report).
fn start_stress(opts: &Options, workdir: &Path, run: &mut Run) -> Result<Option<Proc>, String> {
    if opts.stress_cpu == 0 {
        return Ok(None);
    }
    let p = Proc::spawn(Spec {
        name: "stress-ng",
        program: Path::new("stress-ng"),
        args: vec![
            "--cpu".into(),
            opts.stress_cpu.to_string(),
            "--quiet".into(),
        ],
        envs: vec![],
        log: workdir.join("stress-ng.log"),
        cwd: workdir,
        run_as: None,
        stop_signal: libc::SIGTERM,
    })
    .map_err(|e| format!("{e} (Debian: apt-get install stress-ng)"))?;
    run.services.push_str(&format!(
        "; `stress-ng --cpu {}` running all along",
        opts.stress_cpu
    ));
    Ok(Some(p))
}

/// The copies of the stack: tracing off, this project's path, and Datadog's SDK when included.
fn start_stacks(
    opts: &Options,
    bins: &Path,
    sdk_bins: Option<&Path>,
    workdir: &Path,
    pg: &pg::Postgres,
) -> Result<Vec<Stack>, String> {
    let url = pg.url();
    // With a baseline, each of its copies runs right after its counterpart, so the two of a
    // pair see the same machine.
    let baseline = opts.baseline_bin_dir.as_deref();
    let hundred = !opts.production_only;
    let mut copies = vec![(bins, Mode::Off)];
    if hundred {
        copies.extend(baseline.map(|dir| (dir, Mode::BaseOff)));
        copies.push((bins, Mode::Project));
        copies.extend(baseline.map(|dir| (dir, Mode::BaseOn)));
        copies.extend(sdk_bins.map(|dir| (dir, Mode::Sdk)));
    }
    if opts.production || opts.production_only {
        copies.push((bins, Mode::ProdOn));
        copies.extend(sdk_bins.map(|dir| (dir, Mode::ProdSdk)));
    }
    let mut stacks = Vec::new();
    for (dir, mode) in copies {
        stacks.push(Stack::start(dir, workdir, mode, &url, &opts.service_env)?);
    }
    Ok(stacks)
}

/// The endpoints `--only` selects (all without it).
fn selected_endpoints(opts: &Options) -> Vec<&'static Endpoint> {
    ENDPOINTS
        .iter()
        .filter(|e| {
            opts.only
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k == e.key))
        })
        .collect()
}

/// Spans per request, read back from the sink (the table's expectations are the documented
/// counts; this checks them).
fn calibrate(
    stacks: &[Stack],
    endpoints: &[&'static Endpoint],
    run: &mut Run,
) -> Result<(), String> {
    for stack in stacks.iter().filter(|s| s.mode.traced()) {
        let Some(sink) = &stack.sink else { continue };
        settle(sink, sink.spans(), 0);
        for e in endpoints {
            let before = sink.spans();
            let n = 20;
            let ok = load::sequential(&stack.target(e), n)?;
            if stack.mode.production() {
                // Kept at the Agent's rate once it has answered a trace post; these requests
                // bring its first answer.
                let got = settle(sink, before, 0);
                run.calibration.push(format!(
                    "tracing {}, {}: {got} spans sent for {ok} requests (production sampling: \
                     {} per request at 100%, 1% once the sink's rates have arrived)",
                    stack.mode.tag(),
                    e.label,
                    e.spans
                ));
                continue;
            }
            let got = settle(sink, before, ok * e.spans);
            run.calibration.push(format!(
                "tracing {}, {}: {} spans for {ok} requests ({:.2} per request; expected {})",
                stack.mode.tag(),
                e.label,
                got,
                got as f64 / ok.max(1) as f64,
                e.spans
            ));
        }
    }
    Ok(())
}

/// Stops every copy and notes what each sink received.
fn stop_stacks(stacks: &mut [Stack], run: &mut Run) {
    for stack in stacks.iter_mut() {
        stack.notes.stop();
        stack.calendar.stop();
        if let Some(sink) = &stack.sink {
            run.sinks
                .push(format!("tracing {}: {}", stack.mode.tag(), sink.summary()));
        }
    }
}

/// `git describe` of the workspace (with `-dirty` when the tree has changes), if it is a repo.
fn revision() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(root)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn opts_command() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        "cargo run --release -p bench".into()
    } else {
        format!("cargo run --release -p bench -- {}", args.join(" "))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    procs::install_signal_handlers();
    match run(&opts) {
        Ok(report) => {
            println!("{report}");
            if let Some(out) = &opts.out {
                if let Err(e) = std::fs::write(out, &report) {
                    eprintln!("bench: cannot write {}: {e}", out.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_options() {
        let o = parse_args(&args(
            "--duration 3 --warmup=1 --only get-note,get-calendar --env WORKERS=1 --no-build",
        ))
        .expect("valid")
        .expect("not help");
        assert_eq!(o.duration, Duration::from_secs(3));
        assert_eq!(o.warmup, Duration::from_secs(1));
        assert_eq!(
            o.only,
            Some(vec!["get-note".to_string(), "get-calendar".to_string()])
        );
        assert_eq!(o.service_env, vec![("WORKERS".into(), "1".into())]);
        assert!(!o.build);
        assert_eq!(o.baseline_bin_dir, None);
        // A binary directory is made absolute and must hold both services.
        let dir = std::env::temp_dir().join(format!("bench-bins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("notes"), "").expect("notes");
        let flag = format!("--baseline-bin-dir {}", dir.display());
        let missing = parse_args(&args(&flag)).expect_err("no calendar binary");
        assert!(missing.contains("has no calendar binary"), "{missing}");
        std::fs::write(dir.join("calendar"), "").expect("calendar");
        let o = parse_args(&args(&flag)).expect("valid").expect("not help");
        assert_eq!(
            o.baseline_bin_dir,
            Some(dir.canonicalize().expect("exists"))
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(parse_args(&args("--baseline-bin-dir /nonexistent/bins")).is_err());
        assert!(parse_args(&args("--baseline-bin-dir")).is_err());
        assert!(parse_args(&args("--help")).expect("valid").is_none());
        assert!(parse_args(&args("--only nope")).is_err());
        assert!(parse_args(&args("--duration")).is_err());
        assert!(parse_args(&args("--connections 0")).is_err());
        let o = parse_args(&args("--production-only"))
            .expect("valid")
            .expect("not help");
        assert!(o.production && o.production_only);
        let o = parse_args(&args("--no-production"))
            .expect("valid")
            .expect("not help");
        assert!(!o.production && !o.production_only);
    }
}
