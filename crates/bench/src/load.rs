//! The HTTP load generator: keep-alive HTTP/1.1 connections (hyper) on one thread.
//!
//! - Closed loop ([`Shape::rate`] = None): each connection sends its next request as soon as
//!   the previous answer arrived; latency is each request's service time.
//! - Open loop (a fixed rate): a pacer thread releases request *i* at `start + i/rate`; any idle
//!   connection takes the next one. Latency counts from the scheduled time, not from when the
//!   request was sent, so a stall delays (and is charged to) every request scheduled during it:
//!   no coordinated omission. Tokio's timer has 1 ms granularity, hence the pacer thread with
//!   `nanosleep` and a 1 µs timer slack.

use crate::procs::{self, stopped};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// A latency histogram in microseconds (1 µs .. 100 s, 3 significant digits).
#[derive(Clone)]
pub struct Latencies(Histogram<u64>);

impl Latencies {
    pub fn new() -> Self {
        match Histogram::new_with_bounds(1, 100_000_000, 3) {
            Ok(h) => Self(h),
            Err(e) => unreachable!("constant histogram bounds are valid: {e}"),
        }
    }

    pub fn record_us(&mut self, us: u64) {
        self.0.saturating_record(us.max(1));
    }

    pub fn record(&mut self, d: Duration) {
        self.record_us(d.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    pub fn add(&mut self, other: &Latencies) {
        // Same bounds on both sides: cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// The quantile in milliseconds (None when empty).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.value_at_quantile(q) as f64 / 1000.0)
    }
}

/// What to send.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub method: Method,
    pub path: &'static str,
}

/// How hard and how long.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub connections: usize,
    /// Discarded from the figures (its requests are still counted for the spans).
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests/s for an open loop; None for a closed loop.
    pub rate: Option<f64>,
}

/// The outcome of one load run.
#[derive(Clone)]
pub struct LoadResult {
    /// Requests scheduled in the measured window (after warm-up).
    pub measured: u64,
    /// Of those, answered with a 2xx status.
    pub ok: u64,
    /// Of those, failed (non-2xx status, connection error).
    pub errors: u64,
    /// Answered requests over the whole run, warm-up included (each one makes a trace).
    pub answered_total: u64,
    /// Latencies of the measured requests that succeeded.
    pub latencies: Latencies,
    pub window: Duration,
    pub first_error: Option<String>,
    /// CPU time of the load generator's threads over the whole run.
    pub client_cpu: Duration,
    /// Open loop: how late each measured request was sent after its scheduled time (the
    /// generator's and the machine's share of the latency: pacer and worker wake-ups, busy
    /// connections).
    pub send_lag: Latencies,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.measured as f64 / self.window.as_secs_f64()
    }
}

#[derive(Default)]
struct WorkerStats {
    measured: u64,
    ok: u64,
    errors: u64,
    answered_total: u64,
    latencies: Option<Latencies>,
    send_lag: Option<Latencies>,
    first_error: Option<String>,
}

impl WorkerStats {
    fn note(&mut self, measured: bool, outcome: Result<(), Outcome>, latency: Duration) {
        match &outcome {
            Ok(()) | Err(Outcome::Status(_)) => self.answered_total += 1,
            Err(Outcome::Io(_)) => {}
        }
        if !measured {
            return;
        }
        self.measured += 1;
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.latencies
                    .get_or_insert_with(Latencies::new)
                    .record(latency);
            }
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(match e {
                        Outcome::Status(s) => s,
                        Outcome::Io(s) => s,
                    });
                }
            }
        }
    }
}

enum Outcome {
    /// Answered, with an unexpected status.
    Status(String),
    /// Not answered.
    Io(String),
}

/// Runs the load on one current-thread runtime and returns the merged figures.
pub fn run(target: &Target, shape: Shape) -> Result<LoadResult, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the load generator's runtime: {e}"))?;
    let target = Arc::new(target.clone());
    let cpu_before = procs::rusage_cpu(libc::RUSAGE_THREAD);
    let mut pacer_thread = None;
    let stats = runtime.block_on(async {
        let start = Instant::now() + Duration::from_millis(20);
        let warm_end = start + shape.warmup;
        let end = warm_end + shape.duration;
        let mut workers = Vec::with_capacity(shape.connections);
        match shape.rate {
            None => {
                for _ in 0..shape.connections {
                    workers.push(tokio::spawn(closed_worker(target.clone(), warm_end, end)));
                }
            }
            Some(rate) => {
                let (tickets, thread) = pacer(start, end, rate);
                pacer_thread = Some(thread);
                // Requests still queued this long after the end are given up: the service is
                // far past saturation and the figures already say so.
                let give_up = end + Duration::from_secs(10);
                for _ in 0..shape.connections {
                    workers.push(tokio::spawn(open_worker(
                        target.clone(),
                        tickets.clone(),
                        warm_end,
                        give_up,
                    )));
                }
            }
        }
        let mut all = Vec::new();
        for w in workers {
            match w.await {
                Ok(s) => all.push(s),
                Err(e) => return Err(format!("a load worker failed: {e}")),
            }
        }
        Ok((all, warm_end, end))
    });
    drop(runtime);
    let pacer_cpu = match pacer_thread.map(|t| t.join()) {
        Some(Ok(cpu)) => cpu,
        Some(Err(_)) => return Err("the pacer thread panicked".into()),
        None => Duration::ZERO,
    };
    let client_cpu = procs::rusage_cpu(libc::RUSAGE_THREAD).saturating_sub(cpu_before) + pacer_cpu;
    let (stats, warm_end, end) = stats?;
    let mut result = LoadResult {
        measured: 0,
        ok: 0,
        errors: 0,
        answered_total: 0,
        latencies: Latencies::new(),
        window: end - warm_end,
        first_error: None,
        client_cpu,
        send_lag: Latencies::new(),
    };
    for s in stats {
        result.measured += s.measured;
        result.ok += s.ok;
        result.errors += s.errors;
        result.answered_total += s.answered_total;
        if let Some(l) = &s.latencies {
            result.latencies.add(l);
        }
        if let Some(l) = &s.send_lag {
            result.send_lag.add(l);
        }
        if result.first_error.is_none() {
            result.first_error = s.first_error;
        }
    }
    Ok(result)
}

async fn closed_worker(target: Arc<Target>, warm_end: Instant, end: Instant) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let mut conn = None;
    loop {
        let sent = Instant::now();
        if sent >= end || stopped() {
            return stats;
        }
        let outcome = request(&target, &mut conn).await;
        let failed_io = matches!(outcome, Err(Outcome::Io(_)));
        stats.note(sent >= warm_end, outcome, sent.elapsed());
        if failed_io {
            // Do not spin on a refused connection.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

type Tickets = Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>;

/// A thread that sends each request's scheduled time when it is due; it returns its CPU time.
fn pacer(start: Instant, end: Instant, rate: f64) -> (Tickets, std::thread::JoinHandle<Duration>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let interval_ns = 1e9 / rate.max(0.001);
    let thread = std::thread::spawn(move || {
        // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong);
        }
        let mut i: u64 = 0;
        loop {
            let scheduled = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
            if scheduled >= end || stopped() {
                break;
            }
            let now = Instant::now();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            if tx.send(scheduled).is_err() {
                break;
            }
            i += 1;
        }
        procs::rusage_cpu(libc::RUSAGE_THREAD)
    });
    (Arc::new(Mutex::new(rx)), thread)
}

async fn open_worker(
    target: Arc<Target>,
    tickets: Tickets,
    warm_end: Instant,
    give_up: Instant,
) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let mut conn = None;
    loop {
        let scheduled = {
            let mut rx = tickets.lock().await;
            match rx.recv().await {
                Some(s) => s,
                None => return stats,
            }
        };
        if Instant::now() > give_up || stopped() {
            // Scheduled but never sent: still counted against the run.
            stats.note(
                scheduled >= warm_end,
                Err(Outcome::Io(
                    "not sent: the service fell too far behind".into(),
                )),
                Duration::ZERO,
            );
            continue;
        }
        if scheduled >= warm_end {
            stats
                .send_lag
                .get_or_insert_with(Latencies::new)
                .record(Instant::now().saturating_duration_since(scheduled));
        }
        let outcome = request(&target, &mut conn).await;
        stats.note(
            scheduled >= warm_end,
            outcome,
            Instant::now().saturating_duration_since(scheduled),
        );
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One request on the worker's connection (opened or reopened as needed); the body is read.
async fn request(
    target: &Target,
    conn: &mut Option<SendRequest<Empty<Bytes>>>,
) -> Result<(), Outcome> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        *conn = Some(connect(target.addr).await.map_err(Outcome::Io)?);
    }
    let Some(sender) = conn.as_mut() else {
        return Err(Outcome::Io("no connection".into()));
    };
    let answered = async {
        sender.ready().await.map_err(|e| e.to_string())?;
        let request = Request::builder()
            .method(target.method.clone())
            .uri(target.path)
            .header(hyper::header::HOST, target.addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, body))
    }
    .await;
    match answered {
        Ok((status, _)) if status.is_success() => Ok(()),
        Ok((status, body)) => Err(Outcome::Status(format!(
            "{} {} answered {status}: {}",
            target.method,
            target.path,
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))),
        Err(e) => {
            *conn = None;
            Err(Outcome::Io(format!(
                "{} {}: {e}",
                target.method, target.path
            )))
        }
    }
}

/// Sends `n` requests one after the other; returns how many succeeded (2xx).
pub fn sequential(target: &Target, n: u64) -> Result<u64, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build a runtime: {e}"))?;
    runtime.block_on(async {
        let mut conn = None;
        let mut ok = 0;
        for _ in 0..n {
            if request(target, &mut conn).await.is_ok() {
                ok += 1;
            }
        }
        Ok(ok)
    })
}
