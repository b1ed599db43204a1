//! The report: run conditions, one markdown table, and the targets checked against it.

use crate::load::Latencies;
use crate::{Endpoint, Statement};
use std::fmt::Write as _;
use std::time::Duration;

/// One cell of the benchmark.
pub struct Row {
    pub endpoint: Option<&'static Endpoint>,
    /// pgbench rows: the statement.
    pub statement: Option<Statement>,
    pub tracing: Option<bool>,
    /// The fixed rate asked for; None for the saturated (closed-loop) cells.
    pub rate: Option<f64>,
    pub requests: u64,
    pub rps: f64,
    pub errors: u64,
    pub latencies: Latencies,
    pub rss_notes_kib: Option<u64>,
    pub rss_calendar_kib: Option<u64>,
    /// (received by the sink, expected from the answered requests).
    pub spans: Option<(u64, u64)>,
    /// CPU µs per request of the services (notes + calendar), of PostgreSQL, and of the client
    /// (the load generator, or pgbench).
    pub cpu_service_us: Option<f64>,
    pub cpu_db_us: Option<f64>,
    pub cpu_client_us: Option<f64>,
    /// Fixed-rate HTTP cells: p99 of how late requests were sent after their scheduled time.
    pub send_lag_p99_ms: Option<f64>,
}

/// The whole run.
pub struct Run {
    pub command: String,
    pub revision: String,
    pub date: String,
    pub machine: String,
    pub load_before: String,
    pub load_after: String,
    pub postgres: String,
    pub services: String,
    pub connections: usize,
    pub rate_fraction: f64,
    pub calibration: Vec<String>,
    pub rows: Vec<Row>,
    pub wall: Duration,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Run {
    pub fn describe(command: String, connections: usize, rate_fraction: f64) -> Run {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        let mem_kib: u64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Run {
            command,
            revision: String::new(),
            date,
            machine: format!(
                "{cpu}, {cores} CPUs, {:.1} GiB, Linux {kernel}",
                mem_kib as f64 / 1024.0 / 1024.0
            ),
            load_before: loadavg(),
            load_after: String::new(),
            postgres: String::new(),
            services: String::new(),
            connections,
            rate_fraction,
            calibration: Vec::new(),
            rows: Vec::new(),
            wall: Duration::ZERO,
        }
    }

    pub fn finish(&mut self) {
        self.load_after = loadavg();
    }

    fn saturated(&self, key: &str, tracing: bool) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.rate.is_none()
                && r.tracing == Some(tracing)
                && r.endpoint.is_some_and(|e| e.key == key)
        })
    }

    fn pgbench_saturated(&self, st: Statement) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.rate.is_none() && r.statement == Some(st))
    }

    /// Traced ÷ untraced throughput (saturated rows with tracing on).
    fn on_off(&self, r: &Row) -> Option<f64> {
        let e = r.endpoint?;
        if r.rate.is_some() || r.tracing != Some(true) {
            return None;
        }
        let off = self.saturated(e.key, false)?;
        (off.rps > 0.0).then(|| r.rps / off.rps)
    }

    /// Throughput ÷ pgbench's on the same statement (saturated endpoint rows).
    fn vs_pgbench(&self, r: &Row) -> Option<f64> {
        let st = r.endpoint?.statement?;
        if r.rate.is_some() {
            return None;
        }
        let pg = self.pgbench_saturated(st)?;
        (pg.rps > 0.0).then(|| r.rps / pg.rps)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "- command: `{}` (source {})",
            self.command, self.revision
        );
        let _ = writeln!(
            s,
            "- date: {}; wall time {:.0} s",
            self.date,
            self.wall.as_secs_f64()
        );
        let _ = writeln!(s, "- machine: {}", self.machine);
        let _ = writeln!(
            s,
            "- load average (1/5/15 min) before: {}; after: {}",
            self.load_before, self.load_after
        );
        let _ = writeln!(s, "- database: {}", self.postgres);
        let _ = writeln!(s, "- services: {}", self.services);
        let _ = writeln!(
            s,
            "- saturated = closed loop, {} keep-alive connections; fixed rate = open loop at {:.0}% \
             of the endpoint's saturated rate (the lower of tracing on and off), latency from each request's \
             scheduled start (pgbench: same clients, `-M prepared`, `-R` for the fixed rate)",
            self.connections,
            self.rate_fraction * 100.0
        );
        for c in &self.calibration {
            let _ = writeln!(s, "- spans per request (read back): {c}");
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| load | endpoint | tracing | req/s | on ÷ off | ÷ pgbench | p50 ms | p99 ms | p99.9 ms | send lag p99 ms | requests | errors | CPU µs/req services | CPU µs/req PostgreSQL | CPU µs/req client | notes peak RSS MB | calendar peak RSS MB | spans received / expected |"
        );
        let _ = writeln!(
            s,
            "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        );
        for r in &self.rows {
            let load = match r.rate {
                None => "saturated".to_string(),
                Some(rate) => format!("rate {rate:.0}/s"),
            };
            let subject = match (r.endpoint, r.statement) {
                (Some(e), _) => format!("`{}`", e.label),
                (None, Some(st)) => format!("pgbench `{}`", st.sql()),
                (None, None) => "?".into(),
            };
            let tracing = match r.tracing {
                Some(true) => "on",
                Some(false) => "off",
                None => "",
            };
            let ms = |q: f64| {
                r.latencies
                    .quantile_ms(q)
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_default()
            };
            let mb = |k: Option<u64>| {
                k.map(|k| format!("{:.1}", k as f64 / 1024.0))
                    .unwrap_or_default()
            };
            let us = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_default();
            let pct = |v: Option<f64>| v.map(|v| format!("{:.0}%", v * 100.0)).unwrap_or_default();
            let spans = match r.spans {
                Some((got, want)) => format!("{got} / {want}"),
                None => String::new(),
            };
            let _ = writeln!(
                s,
                "| {load} | {subject} | {tracing} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {spans} |",
                r.rps,
                pct(self.on_off(r)),
                pct(self.vs_pgbench(r)),
                ms(0.5),
                ms(0.99),
                ms(0.999),
                r.send_lag_p99_ms
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_default(),
                r.requests,
                r.errors,
                us(r.cpu_service_us),
                us(r.cpu_db_us),
                us(r.cpu_client_us),
                mb(r.rss_notes_kib),
                mb(r.rss_calendar_kib),
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "Targets:");
        for line in self.targets() {
            let _ = writeln!(s, "- {line}");
        }
        s
    }

    fn targets(&self) -> Vec<String> {
        let mark = |ok: bool| if ok { "MET" } else { "MISSED" };
        let mut out = Vec::new();

        let ratios: Vec<(String, f64)> = self
            .rows
            .iter()
            .filter_map(|r| Some((r.endpoint?.label.to_string(), self.on_off(r)?)))
            .collect();
        if !ratios.is_empty() {
            let ok = ratios.iter().all(|(_, v)| *v >= 0.9);
            let list: Vec<String> = ratios
                .iter()
                .map(|(l, v)| format!("`{l}` {:.0}%", v * 100.0))
                .collect();
            out.push(format!(
                "{}: tracing on >= 90% of tracing-off throughput: {}",
                mark(ok),
                list.join(", ")
            ));
        }

        if let Some(v) = self
            .rows
            .iter()
            .find(|r| r.endpoint.is_some_and(|e| e.key == "get-note") && r.tracing == Some(true))
            .and_then(|r| self.vs_pgbench(r))
        {
            let off = self
                .saturated("get-note", false)
                .and_then(|r| self.vs_pgbench(r))
                .map(|v| format!(" (tracing off: {:.0}%)", v * 100.0))
                .unwrap_or_default();
            out.push(format!(
                "{}: `GET /notes?id=1` >= 50% of pgbench's single-row SELECT rate: {:.0}% with tracing on{off}",
                mark(v >= 0.5),
                v * 100.0
            ));
        }

        let p99: Vec<(String, f64)> = self
            .rows
            .iter()
            .filter(|r| r.rate.is_some())
            .filter_map(|r| {
                let e = r.endpoint?;
                let tracing = if r.tracing == Some(true) { "on" } else { "off" };
                Some((
                    format!("`{}` {tracing}", e.label),
                    r.latencies.quantile_ms(0.99)?,
                ))
            })
            .collect();
        if !p99.is_empty() {
            let ok = p99.iter().all(|(_, v)| *v < 5.0);
            let worst = p99
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(l, v)| format!("worst {l}: {v:.2} ms"))
                .unwrap_or_default();
            out.push(format!(
                "{}: p99 < 5 ms at {:.0}% of the saturated rate: {worst}",
                mark(ok),
                self.rate_fraction * 100.0
            ));
        }

        let lost: Vec<(String, u64, u64)> = self
            .rows
            .iter()
            .filter(|r| r.rate.is_none() && r.tracing == Some(true))
            .filter_map(|r| {
                let (got, want) = r.spans?;
                Some((r.endpoint?.label.to_string(), got, want))
            })
            .collect();
        if !lost.is_empty() {
            let ok = lost.iter().all(|(_, got, want)| got == want);
            let list: Vec<String> = lost
                .iter()
                .map(|(l, got, want)| {
                    if got == want {
                        format!("`{l}` {got} of {want}")
                    } else {
                        format!("`{l}` {got} of {want} ({:+})", *got as i64 - *want as i64)
                    }
                })
                .collect();
            out.push(format!(
                "{}: zero spans lost at saturation: {}",
                mark(ok),
                list.join(", ")
            ));
        }

        let max_rss = |f: fn(&Row) -> Option<u64>| self.rows.iter().filter_map(f).max();
        if let (Some(n), Some(c)) = (
            max_rss(|r| r.rss_notes_kib),
            max_rss(|r| r.rss_calendar_kib),
        ) {
            let ok = n < 40 * 1024 && c < 40 * 1024;
            out.push(format!(
                "{}: peak RSS < 40 MB per service under load: notes {:.1} MB, calendar {:.1} MB",
                mark(ok),
                n as f64 / 1024.0,
                c as f64 / 1024.0
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ENDPOINTS;

    fn row(e: Option<usize>, st: Option<Statement>, tracing: Option<bool>, rps: f64) -> Row {
        let mut latencies = Latencies::new();
        latencies.record_us(1000);
        Row {
            endpoint: e.map(|i| &ENDPOINTS[i]),
            statement: st,
            tracing,
            rate: None,
            requests: 10,
            rps,
            errors: 0,
            latencies,
            rss_notes_kib: Some(20 * 1024),
            rss_calendar_kib: Some(10 * 1024),
            spans: tracing.map(|on| if on { (20, 20) } else { (0, 0) }),
            cpu_service_us: Some(50.0),
            cpu_db_us: Some(40.0),
            cpu_client_us: Some(15.0),
            send_lag_p99_ms: None,
        }
    }

    #[test]
    fn ratios_and_targets_come_from_the_same_run() {
        let mut run = Run::describe("bench".into(), 16, 0.5);
        run.rows = vec![
            row(None, Some(Statement::Select), None, 1000.0),
            row(Some(0), None, Some(false), 600.0),
            row(Some(0), None, Some(true), 570.0),
        ];
        let mut fixed = row(Some(0), None, Some(true), 285.0);
        fixed.rate = Some(285.0);
        fixed.latencies.record_us(9000);
        fixed.send_lag_p99_ms = Some(0.5);
        run.rows.push(fixed);
        let text = run.render();
        assert!(text.contains("| saturated | `GET /notes?id=1` | on | 570 | 95% | 57% |"));
        assert!(text
            .contains("MET: tracing on >= 90% of tracing-off throughput: `GET /notes?id=1` 95%"));
        assert!(
            text.contains("MET: `GET /notes?id=1` >= 50% of pgbench's single-row SELECT rate: 57%")
        );
        assert!(text.contains("MISSED: p99 < 5 ms"));
        assert!(text.contains("MET: zero spans lost at saturation"));
        assert!(text.contains(
            "MET: peak RSS < 40 MB per service under load: notes 20.0 MB, calendar 10.0 MB"
        ));
        assert!(text.contains("| rate 285/s | `GET /notes?id=1` | on | 285 |"));
    }
}
