//! The report: run conditions, one markdown table, and the targets checked against it.

use crate::load::Latencies;
use crate::{Endpoint, Mode, Service, Statement};
use std::fmt::Write as _;
use std::time::Duration;

/// One cell of the benchmark.
pub struct Row {
    pub endpoint: Option<&'static Endpoint>,
    /// pgbench rows: the statement.
    pub statement: Option<Statement>,
    pub tracing: Option<Mode>,
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
    /// Production sampling: (the stats' server hits of the endpoint's service, requests it
    /// answered), warm-up included.
    pub stats_hits: Option<(u64, u64)>,
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
    /// What each traced copy's sink received besides spans.
    pub sinks: Vec<String>,
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
            sinks: Vec::new(),
            rows: Vec::new(),
            wall: Duration::ZERO,
        }
    }

    pub fn finish(&mut self) {
        self.load_after = loadavg();
    }

    fn saturated(&self, key: &str, mode: Mode) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.rate.is_none() && r.tracing == Some(mode) && r.endpoint.is_some_and(|e| e.key == key)
        })
    }

    /// The row of the same endpoint and load (saturated, or the same fixed rate) in `mode`.
    fn peer(&self, r: &Row, mode: Mode) -> Option<&Row> {
        let key = r.endpoint?.key;
        self.rows.iter().find(|x| {
            x.tracing == Some(mode)
                && x.endpoint.is_some_and(|e| e.key == key)
                && match (x.rate, r.rate) {
                    (None, None) => true,
                    (Some(a), Some(b)) => (a - b).abs() < 0.5,
                    _ => false,
                }
        })
    }

    /// What tracing costs the services, CPU µs per span: (traced − untraced CPU per request) ÷
    /// spans per request, same endpoint and load.
    fn cpu_per_span(&self, r: &Row) -> Option<f64> {
        let e = r.endpoint?;
        if !r.tracing?.traced() || e.spans == 0 {
            return None;
        }
        let off = self.peer(r, r.tracing?.untraced())?.cpu_service_us?;
        Some((r.cpu_service_us? - off) / e.spans as f64)
    }

    /// This project's throughput ÷ the SDK's at the same sampling (saturated rows of this
    /// project's path).
    fn vs_sdk(&self, r: &Row) -> Option<f64> {
        if r.rate.is_some() {
            return None;
        }
        let sdk = self.peer(r, r.tracing?.sdk_peer()?)?;
        (sdk.rps > 0.0).then(|| r.rps / sdk.rps)
    }

    fn pgbench_saturated(&self, st: Statement) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.rate.is_none() && r.statement == Some(st))
    }

    /// Traced ÷ untraced throughput (saturated traced rows).
    fn on_off(&self, r: &Row) -> Option<f64> {
        let e = r.endpoint?;
        let mode = r.tracing?;
        if r.rate.is_some() || !mode.traced() {
            return None;
        }
        let off = self.saturated(e.key, mode.untraced())?;
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
             of the endpoint's saturated rate (the lowest of the copies), latency from each request's \
             scheduled start (pgbench: same clients, `-M prepared`, `-R` for the fixed rate)",
            self.connections,
            self.rate_fraction * 100.0
        );
        for c in &self.calibration {
            let _ = writeln!(s, "- spans per request (read back): {c}");
        }
        for c in &self.sinks {
            let _ = writeln!(s, "- trace sink of {c}");
        }
        let _ = writeln!(
            s,
            "- tracing: `off` = DD_TRACE_ENABLED=false, `on` = this project's path \
             (opentelemetry-datadog), `sdk` = Datadog's datadog-opentelemetry; \"÷ off\" and \
             \"÷ sdk\" are throughput ratios inside this run; \"tracing CPU µs/span\" = (services' \
             CPU per request traced − off, same endpoint and load) ÷ spans per request (expected \
             spans: a copy that drops spans also skips their export, so its figure is too low)"
        );
        if self
            .rows
            .iter()
            .any(|r| r.tracing.is_some_and(Mode::production))
        {
            let _ = writeln!(
                s,
                "- production sampling: `on-prod` and `sdk-prod` export to a sink playing a \
                 production Agent (/info with /v0.6/stats and client_drop_p0s, rates of 1%); \
                 their \"÷ sdk\" is `on-prod` ÷ `sdk-prod`, their spans are those sent (kept \
                 traces), and \"stats hits / served\" = the server hits of the endpoint's \
                 service in the /v0.6/stats payloads received for the cell ÷ the requests it \
                 answered (warm-up included)"
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| load | endpoint | tracing | req/s | ÷ off | ÷ sdk | ÷ pgbench | p50 ms | p99 ms | p99.9 ms | send lag p99 ms | requests | errors | CPU µs/req services | tracing CPU µs/span | CPU µs/req PostgreSQL | CPU µs/req client | notes peak RSS MB | calendar peak RSS MB | spans received / expected | stats hits / served |"
        );
        let _ = writeln!(
            s,
            "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
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
            let tracing = r.tracing.map_or("", Mode::tag);
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
            let us1 = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
            let pct = |v: Option<f64>| v.map(|v| format!("{:.0}%", v * 100.0)).unwrap_or_default();
            let production = r.tracing.is_some_and(Mode::production);
            let spans = match r.spans {
                Some((got, _)) if production => format!("{got} sent"),
                Some((got, want)) => format!("{got} / {want}"),
                None => String::new(),
            };
            let hits = match r.stats_hits {
                Some((got, want)) => format!("{got} / {want}"),
                None => String::new(),
            };
            let _ = writeln!(
                s,
                "| {load} | {subject} | {tracing} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {spans} | {hits} |",
                r.rps,
                pct(self.on_off(r)),
                pct(self.vs_sdk(r)),
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
                us1(self.cpu_per_span(r)),
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
        let baseline = self.baseline();
        if !baseline.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "Against the baseline (`--baseline-bin-dir`; this build ÷ the baseline, the same \
                 tracing, endpoint and load):"
            );
            for line in baseline {
                let _ = writeln!(s, "- {line}");
            }
        }
        s
    }

    /// One line per baseline row: throughput, the services' CPU per request and p99 of the build
    /// under test ÷ the baseline's, same endpoint, tracing and load.
    fn baseline(&self) -> Vec<String> {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.0}%", a / b * 100.0),
            _ => "n/a".to_string(),
        };
        self.rows
            .iter()
            .filter_map(|base| {
                let e = base.endpoint?;
                let this = self.peer(base, base.tracing?.compared_with()?)?;
                let load = match base.rate {
                    None => "saturated".to_string(),
                    Some(rate) => format!("rate {rate:.0}/s"),
                };
                Some(format!(
                    "{load}, `{}`, tracing {}: req/s {:.0} vs {:.0} ({}), services' CPU µs/req \
                     {} vs {} ({}), p99 {} vs {} ms",
                    e.label,
                    this.tracing.map_or("", Mode::tag),
                    this.rps,
                    base.rps,
                    ratio(Some(this.rps), Some(base.rps)),
                    this.cpu_service_us
                        .map_or("n/a".into(), |v| format!("{v:.1}")),
                    base.cpu_service_us
                        .map_or("n/a".into(), |v| format!("{v:.1}")),
                    ratio(this.cpu_service_us, base.cpu_service_us),
                    this.latencies
                        .quantile_ms(0.99)
                        .map_or("n/a".into(), |v| format!("{v:.2}")),
                    base.latencies
                        .quantile_ms(0.99)
                        .map_or("n/a".into(), |v| format!("{v:.2}")),
                ))
            })
            .collect()
    }

    /// Saturated rows of `mode`, with their endpoint label.
    fn saturated_rows(&self, mode: Mode) -> impl Iterator<Item = (&'static str, &Row)> {
        self.rows.iter().filter_map(move |r| {
            (r.rate.is_none() && r.tracing == Some(mode)).then_some((r.endpoint?.label, r))
        })
    }

    /// Issue 22's targets under production sampling (`on-prod` against off and `sdk-prod`).
    fn production_targets(&self) -> Vec<String> {
        let mark = |ok: bool| if ok { "MET" } else { "MISSED" };
        let list = |items: &[String]| items.join(", ");
        let mut out = Vec::new();
        let rows: Vec<(&Endpoint, &Row)> = self
            .saturated_rows(Mode::ProdOn)
            .filter_map(|(_, r)| Some((r.endpoint?, r)))
            .collect();
        let ratios: Vec<(&Endpoint, f64)> = rows
            .iter()
            .filter_map(|(e, r)| Some((*e, self.on_off(r)?)))
            .collect();
        let notes: Vec<&(&Endpoint, f64)> = ratios
            .iter()
            .filter(|(e, _)| e.service == Service::Notes)
            .collect();
        if !notes.is_empty() {
            let ok = notes.iter().all(|(_, v)| *v >= 0.9);
            let fmt = |v: &[&(&Endpoint, f64)]| {
                v.iter()
                    .map(|(e, v)| format!("`{}` {:.0}%", e.label, v * 100.0))
                    .collect::<Vec<_>>()
            };
            let others: Vec<&(&Endpoint, f64)> = ratios
                .iter()
                .filter(|(e, _)| e.service != Service::Notes)
                .collect();
            let sdk: Vec<String> = self
                .saturated_rows(Mode::ProdSdk)
                .filter_map(|(l, r)| Some(format!("`{l}` {:.0}%", self.on_off(r)? * 100.0)))
                .collect();
            out.push(format!(
                "{}: production sampling, traced >= 90% of tracing-off throughput on every notes endpoint: {}{}{}",
                mark(ok),
                list(&fmt(&notes)),
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" (not a target: {})", list(&fmt(&others)))
                },
                if sdk.is_empty() {
                    String::new()
                } else {
                    format!(" (Datadog's SDK: {})", list(&sdk))
                }
            ));
        }
        let ahead: Vec<(&Endpoint, f64)> = rows
            .iter()
            .filter_map(|(e, r)| Some((*e, self.vs_sdk(r)?)))
            .collect();
        if !ahead.is_empty() {
            let ok = ahead.iter().all(|(_, v)| *v >= 1.2);
            let items: Vec<String> = ahead
                .iter()
                .map(|(e, v)| format!("`{}` {:.0}% of the SDK's rate", e.label, v * 100.0))
                .collect();
            out.push(format!(
                "{}: production sampling, ahead of datadog-opentelemetry by >= 20% on every endpoint: {}",
                mark(ok),
                list(&items)
            ));
        } else if !rows.is_empty() {
            out.push(
                "NOT MEASURED: production sampling, ahead of datadog-opentelemetry (no SDK copy in this run)"
                    .into(),
            );
        }
        for mode in [Mode::ProdOn, Mode::ProdSdk] {
            let hits: Vec<(String, u64, u64)> = self
                .rows
                .iter()
                .filter(|r| r.tracing == Some(mode))
                .filter_map(|r| {
                    let (got, want) = r.stats_hits?;
                    let load = match r.rate {
                        None => "saturated".to_string(),
                        Some(rate) => format!("rate {rate:.0}/s"),
                    };
                    Some((format!("{load} `{}`", r.endpoint?.label), got, want))
                })
                .collect();
            if hits.is_empty() {
                continue;
            }
            let ok = hits.iter().all(|(_, got, want)| got == want);
            let items: Vec<String> = hits
                .iter()
                .map(|(l, got, want)| {
                    if got == want {
                        format!("{l} {got} of {want}")
                    } else {
                        format!("{l} {got} of {want} ({:+})", *got as i64 - *want as i64)
                    }
                })
                .collect();
            out.push(format!(
                "{}: production sampling, the stats' hits equal the requests served, tracing {}: {}",
                mark(ok),
                mode.tag(),
                list(&items)
            ));
        }
        out
    }

    fn targets(&self) -> Vec<String> {
        let mark = |ok: bool| if ok { "MET" } else { "MISSED" };
        let mut out = Vec::new();
        let list = |items: &[(&str, String)]| {
            items
                .iter()
                .map(|(l, v)| format!("`{l}` {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // The SDK copy's figures after ours, when there are any.
        let sdk_suffix = |sdk: &[(&str, String)]| {
            if sdk.is_empty() {
                String::new()
            } else {
                format!(" (Datadog's SDK: {})", list(sdk))
            }
        };
        let has_sdk = self.rows.iter().any(|r| r.tracing == Some(Mode::Sdk));

        let ratios: Vec<(&str, f64)> = self
            .saturated_rows(Mode::Project)
            .filter_map(|(l, r)| Some((l, self.on_off(r)?)))
            .collect();
        if !ratios.is_empty() {
            let ok = ratios.iter().all(|(_, v)| *v >= 0.9);
            let items: Vec<(&str, String)> = ratios
                .iter()
                .map(|(l, v)| (*l, format!("{:.0}%", v * 100.0)))
                .collect();
            let sdk: Vec<(&str, String)> = self
                .saturated_rows(Mode::Sdk)
                .filter_map(|(l, r)| Some((l, format!("{:.0}%", self.on_off(r)? * 100.0))))
                .collect();
            out.push(format!(
                "{}: tracing on >= 90% of tracing-off throughput: {}{}",
                mark(ok),
                list(&items),
                sdk_suffix(&sdk)
            ));
        }

        let ahead: Vec<(&str, f64)> = self
            .saturated_rows(Mode::Project)
            .filter_map(|(l, r)| Some((l, self.vs_sdk(r)?)))
            .collect();
        if !ahead.is_empty() {
            let ok = ahead.iter().all(|(_, v)| *v > 1.0);
            let items: Vec<(&str, String)> = ahead
                .iter()
                .map(|(l, v)| (*l, format!("{:.0}% of the SDK's rate", v * 100.0)))
                .collect();
            out.push(format!(
                "{}: tracing on ahead of datadog-opentelemetry on every endpoint: {}",
                mark(ok),
                list(&items)
            ));
        } else if !has_sdk && self.rows.iter().any(|r| r.tracing == Some(Mode::Project)) {
            out.push(
                "NOT MEASURED: tracing on ahead of datadog-opentelemetry (no SDK copy in this run)"
                    .into(),
            );
        }

        let per_span: Vec<(&str, f64)> = self
            .saturated_rows(Mode::Project)
            .filter_map(|(l, r)| Some((l, self.cpu_per_span(r)?)))
            .collect();
        if !per_span.is_empty() {
            let ok = per_span.iter().all(|(_, v)| *v <= 5.0);
            let items: Vec<(&str, String)> = per_span
                .iter()
                .map(|(l, v)| (*l, format!("{v:.1} µs")))
                .collect();
            let sdk: Vec<(&str, String)> = self
                .saturated_rows(Mode::Sdk)
                .filter_map(|(l, r)| Some((l, format!("{:.1} µs", self.cpu_per_span(r)?))))
                .collect();
            out.push(format!(
                "{}: tracing <= 5 µs of the services' CPU per span (saturated): {}{}",
                mark(ok),
                list(&items),
                sdk_suffix(&sdk)
            ));
        }

        if let Some(v) = self
            .saturated("get-note", Mode::Project)
            .and_then(|r| self.vs_pgbench(r))
        {
            let off = self
                .saturated("get-note", Mode::Off)
                .and_then(|r| self.vs_pgbench(r))
                .map(|v| format!(" (tracing off: {:.0}%)", v * 100.0))
                .unwrap_or_default();
            out.push(format!(
                "{}: `GET /notes?id=1` >= 50% of pgbench's single-row SELECT rate: {:.0}% with tracing on{off}",
                mark(v >= 0.5),
                v * 100.0
            ));
        }

        let p99 = |mode: Mode| -> Vec<(&str, f64)> {
            self.rows
                .iter()
                .filter(|r| r.rate.is_some() && r.tracing == Some(mode))
                .filter_map(|r| Some((r.endpoint?.label, r.latencies.quantile_ms(0.99)?)))
                .collect()
        };
        let on = p99(Mode::Project);
        if !on.is_empty() {
            let ok = on.iter().all(|(_, v)| *v < 5.0);
            let fmt = |v: &[(&str, f64)]| {
                list(
                    &v.iter()
                        .map(|(l, x)| (*l, format!("{x:.2} ms")))
                        .collect::<Vec<_>>(),
                )
            };
            let mut others = Vec::new();
            for mode in [Mode::Off, Mode::Sdk] {
                let v = p99(mode);
                if !v.is_empty() {
                    others.push(format!("tracing {}: {}", mode.tag(), fmt(&v)));
                }
            }
            out.push(format!(
                "{}: p99 < 5 ms at {:.0}% of the saturated rate, tracing on: {}{}",
                mark(ok),
                self.rate_fraction * 100.0,
                fmt(&on),
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", others.join("; "))
                }
            ));
        }

        for mode in [Mode::Project, Mode::Sdk] {
            let lost: Vec<(&str, u64, u64)> = self
                .saturated_rows(mode)
                .filter_map(|(l, r)| {
                    let (got, want) = r.spans?;
                    Some((l, got, want))
                })
                .collect();
            if lost.is_empty() {
                continue;
            }
            // More than expected: spans of the previous cell that arrived after its settle.
            let ok = lost.iter().all(|(_, got, want)| got >= want);
            let items: Vec<(&str, String)> = lost
                .iter()
                .map(|(l, got, want)| {
                    let v = if got == want {
                        format!("{got} of {want}")
                    } else if got > want {
                        format!(
                            "{got} of {want} (+{} late from the cell before)",
                            got - want
                        )
                    } else {
                        format!(
                            "{got} of {want} ({:+}, {:.1}% lost)",
                            *got as i64 - *want as i64,
                            (*want as f64 - *got as f64) * 100.0 / (*want).max(1) as f64
                        )
                    };
                    (*l, v)
                })
                .collect();
            out.push(format!(
                "{}: zero spans lost at saturation, tracing {}: {}",
                mark(ok),
                mode.tag(),
                list(&items)
            ));
        }

        out.extend(self.production_targets());

        // This project's copies (off and on); the SDK's figure is shown beside.
        let max_rss = |f: fn(&Row) -> Option<u64>, sdk: bool| {
            self.rows
                .iter()
                .filter(|r| r.tracing.is_some_and(Mode::is_sdk) == sdk)
                .filter_map(f)
                .max()
        };
        if let (Some(n), Some(c)) = (
            max_rss(|r| r.rss_notes_kib, false),
            max_rss(|r| r.rss_calendar_kib, false),
        ) {
            let ok = n < 40 * 1024 && c < 40 * 1024;
            let sdk = match (
                max_rss(|r| r.rss_notes_kib, true),
                max_rss(|r| r.rss_calendar_kib, true),
            ) {
                (Some(n), Some(c)) => format!(
                    " (Datadog's SDK: notes {:.1} MB, calendar {:.1} MB)",
                    n as f64 / 1024.0,
                    c as f64 / 1024.0
                ),
                _ => String::new(),
            };
            out.push(format!(
                "{}: peak RSS < 40 MB per service under load: notes {:.1} MB, calendar {:.1} MB{sdk}",
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

    fn row(e: Option<usize>, st: Option<Statement>, tracing: Option<Mode>, rps: f64) -> Row {
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
            spans: tracing.map(|m| if m.traced() { (20, 20) } else { (0, 0) }),
            stats_hits: None,
            cpu_service_us: Some(50.0),
            cpu_db_us: Some(40.0),
            cpu_client_us: Some(15.0),
            send_lag_p99_ms: None,
        }
    }

    #[test]
    fn ratios_and_targets_come_from_the_same_run() {
        let mut run = Run::describe("bench".into(), 16, 0.5);
        let mut sdk = row(Some(0), None, Some(Mode::Sdk), 500.0);
        sdk.cpu_service_us = Some(70.0);
        sdk.spans = Some((18, 20));
        let mut on = row(Some(0), None, Some(Mode::Project), 570.0);
        on.cpu_service_us = Some(56.0);
        run.rows = vec![
            row(None, Some(Statement::Select), None, 1000.0),
            row(Some(0), None, Some(Mode::Off), 600.0),
            on,
            sdk,
        ];
        let mut fixed = row(Some(0), None, Some(Mode::Project), 285.0);
        fixed.rate = Some(285.0);
        fixed.latencies.record_us(9000);
        fixed.send_lag_p99_ms = Some(0.5);
        run.rows.push(fixed);
        let text = run.render();
        assert!(
            text.contains("| saturated | `GET /notes?id=1` | on | 570 | 95% | 114% | 57% |"),
            "{text}"
        );
        assert!(text.contains("| saturated | `GET /notes?id=1` | sdk | 500 | 83% |  | 50% |"));
        // (56 - 50) / 2 spans and (70 - 50) / 2.
        assert!(text.contains("| 56 | 3.0 | 40 |"), "{text}");
        assert!(text.contains("| 70 | 10.0 | 40 |"), "{text}");
        assert!(text.contains(
            "MET: tracing on >= 90% of tracing-off throughput: `GET /notes?id=1` 95% (Datadog's SDK: `GET /notes?id=1` 83%)"
        ));
        assert!(text.contains(
            "MET: tracing on ahead of datadog-opentelemetry on every endpoint: `GET /notes?id=1` 114%"
        ));
        assert!(text.contains(
            "MET: tracing <= 5 µs of the services' CPU per span (saturated): `GET /notes?id=1` 3.0 µs (Datadog's SDK: `GET /notes?id=1` 10.0 µs)"
        ));
        assert!(
            text.contains("MET: `GET /notes?id=1` >= 50% of pgbench's single-row SELECT rate: 57%")
        );
        assert!(text.contains("MISSED: p99 < 5 ms"));
        assert!(text.contains("MET: zero spans lost at saturation, tracing on"));
        assert!(text.contains(
            "MISSED: zero spans lost at saturation, tracing sdk: `GET /notes?id=1` 18 of 20 (-2, 10.0% lost)"
        ));
        assert!(text.contains(
            "MET: peak RSS < 40 MB per service under load: notes 20.0 MB, calendar 10.0 MB"
        ));
        assert!(text.contains("| rate 285/s | `GET /notes?id=1` | on | 285 |"));
        assert!(!text.contains("Against the baseline"), "{text}");
    }

    #[test]
    fn baseline_rows_compare_with_their_counterparts() {
        let mut run = Run::describe("bench".into(), 16, 0.5);
        let mut base_off = row(Some(0), None, Some(Mode::BaseOff), 500.0);
        base_off.cpu_service_us = Some(40.0);
        let mut base_on = row(Some(0), None, Some(Mode::BaseOn), 400.0);
        base_on.cpu_service_us = Some(60.0);
        let mut on = row(Some(0), None, Some(Mode::Project), 440.0);
        on.cpu_service_us = Some(54.0);
        run.rows = vec![
            row(Some(0), None, Some(Mode::Off), 600.0),
            base_off,
            on,
            base_on,
        ];
        let text = run.render();
        // The baseline's own tracing ratio and cost are against its own untraced copy.
        assert!(
            text.contains("| saturated | `GET /notes?id=1` | on-base | 400 | 80% |"),
            "{text}"
        );
        assert!(text.contains("| 60 | 10.0 | 40 |"), "{text}");
        assert!(text.contains(
            "saturated, `GET /notes?id=1`, tracing off: req/s 600 vs 500 (120%), services' CPU µs/req 50.0 vs 40.0 (125%)"
        ), "{text}");
        assert!(text.contains(
            "saturated, `GET /notes?id=1`, tracing on: req/s 440 vs 400 (110%), services' CPU µs/req 54.0 vs 60.0 (90%)"
        ), "{text}");
        // The targets read this build's rows only.
        assert!(
            text.contains("tracing on >= 90% of tracing-off throughput: `GET /notes?id=1` 73%"),
            "{text}"
        );
    }

    #[test]
    fn production_sampling_has_targets_of_its_own() {
        let mut run = Run::describe("bench".into(), 16, 0.5);
        let prod = |e: usize, mode: Mode, rps: f64, hits: (u64, u64)| {
            let mut r = row(Some(e), None, Some(mode), rps);
            r.spans = Some((4, 0));
            r.stats_hits = Some(hits);
            r
        };
        run.rows = vec![
            row(Some(0), None, Some(Mode::Off), 600.0),
            row(Some(0), None, Some(Mode::Project), 450.0),
            row(Some(0), None, Some(Mode::Sdk), 400.0),
            prod(0, Mode::ProdOn, 570.0, (7000, 7000)),
            prod(0, Mode::ProdSdk, 450.0, (6990, 7000)),
            row(Some(3), None, Some(Mode::Off), 1000.0),
            prod(3, Mode::ProdOn, 800.0, (9000, 9000)),
            prod(3, Mode::ProdSdk, 700.0, (9000, 9000)),
        ];
        let text = run.render();
        // on-prod ÷ off, and ÷ sdk-prod (not the 100% SDK copy).
        assert!(
            text.contains("| saturated | `GET /notes?id=1` | on-prod | 570 | 95% | 127% |"),
            "{text}"
        );
        assert!(text.contains("| 4 sent | 7000 / 7000 |"), "{text}");
        assert!(text.contains("| 20 / 20 |  |"), "{text}");
        assert!(text.contains(
            "MET: production sampling, traced >= 90% of tracing-off throughput on every notes endpoint: `GET /notes?id=1` 95% (not a target: `GET /calendar` 80%) (Datadog's SDK: `GET /notes?id=1` 75%, `GET /calendar` 70%)"
        ), "{text}");
        assert!(text.contains(
            "MISSED: production sampling, ahead of datadog-opentelemetry by >= 20% on every endpoint: `GET /notes?id=1` 127% of the SDK's rate, `GET /calendar` 114% of the SDK's rate"
        ), "{text}");
        assert!(text.contains(
            "MET: production sampling, the stats' hits equal the requests served, tracing on-prod: saturated `GET /notes?id=1` 7000 of 7000, saturated `GET /calendar` 9000 of 9000"
        ), "{text}");
        assert!(text.contains(
            "MISSED: production sampling, the stats' hits equal the requests served, tracing sdk-prod: saturated `GET /notes?id=1` 6990 of 7000 (-10)"
        ), "{text}");
        // The 100% targets still read the 100% copies.
        assert!(
            text.contains(
                "MISSED: tracing on >= 90% of tracing-off throughput: `GET /notes?id=1` 75%"
            ),
            "{text}"
        );
        assert!(text.contains(
            "MET: tracing on ahead of datadog-opentelemetry on every endpoint: `GET /notes?id=1` 112%"
        ), "{text}");
    }
}
