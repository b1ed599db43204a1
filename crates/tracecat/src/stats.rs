//! The services' client-side stats as the test agent received them (`PUT /v0.6/stats`, kept raw
//! in its `GET /test/session/requests`): requests, errors and p50/p95/p99 latency per service and
//! resource, the local counterpart of Datadog's service page.
//!
//! The latencies come from the payloads' DDSketches (Datadog's own `libdd-ddsketch` decodes
//! them), merged per service and resource over every bucket received.

use crate::source::normalize_agent_url;
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use libdd_ddsketch::DDSketch;
use rmpv::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// One service and resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceStats {
    /// The service (`notes`, `postgres`, …).
    pub service: String,
    /// The resource (`GET /notes`, the SQL text, …).
    pub resource: String,
    /// Requests (hits) counted.
    pub hits: u64,
    /// Of which failed.
    pub errors: u64,
    /// Latency quantiles in nanoseconds: p50, p95, p99 (`None` without any point).
    pub quantiles: Option<[f64; 3]>,
}

#[derive(Default)]
struct Sum {
    hits: u64,
    errors: u64,
    /// (value, weight) of every bin of every sketch.
    bins: Vec<(f64, f64)>,
}

/// The quantile `q` (0..=1) of weighted points.
fn quantile(sorted: &[(f64, f64)], q: f64) -> Option<f64> {
    let total: f64 = sorted.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut seen = 0.0;
    for (value, weight) in sorted {
        seen += weight;
        if seen >= rank {
            return Some(*value);
        }
    }
    sorted.last().map(|(v, _)| *v)
}

fn field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// Adds one `/v0.6/stats` payload (msgpack) to `sums`.
fn add_payload(body: &[u8], sums: &mut BTreeMap<(String, String), Sum>) -> Result<()> {
    let payload = rmpv::decode::read_value(&mut &body[..]).context("not msgpack")?;
    let buckets = field(&payload, "Stats")
        .and_then(Value::as_array)
        .context("no Stats")?;
    for bucket in buckets {
        let entries = field(bucket, "Stats").and_then(Value::as_array);
        for entry in entries.into_iter().flatten() {
            let text = |k: &str| {
                field(entry, k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let number = |k: &str| field(entry, k).and_then(Value::as_u64).unwrap_or(0);
            let sum = sums.entry((text("Service"), text("Resource"))).or_default();
            sum.hits += number("Hits");
            sum.errors += number("Errors");
            for summary in ["OkSummary", "ErrorSummary"] {
                let bytes = field(entry, summary).and_then(|v| match v {
                    Value::Binary(b) => Some(b.as_slice()),
                    _ => None,
                });
                if let Some(sketch) = bytes.and_then(DDSketch::from_encoded) {
                    sum.bins.extend(sketch.ordered_bins());
                }
            }
        }
    }
    Ok(())
}

/// Totals per service and resource of the stats payloads in the test agent's request log
/// (`requests`: its `GET /test/session/requests` answer), busiest first.
pub fn from_requests(requests: &serde_json::Value) -> Result<Vec<ResourceStats>> {
    let Some(requests) = requests.as_array() else {
        bail!("the request log is not a list");
    };
    let mut sums: BTreeMap<(String, String), Sum> = BTreeMap::new();
    for request in requests {
        let url = request["url"].as_str().unwrap_or_default();
        if !url.contains("/v0.6/stats") {
            continue;
        }
        let body = base64::engine::general_purpose::STANDARD
            .decode(request["body"].as_str().unwrap_or_default())
            .context("a stats payload that is not base64")?;
        add_payload(&body, &mut sums).with_context(|| format!("a stats payload of {url}"))?;
    }
    let mut out: Vec<ResourceStats> = sums
        .into_iter()
        .map(|((service, resource), mut sum)| {
            sum.bins.sort_by(|a, b| a.0.total_cmp(&b.0));
            let q = |p| quantile(&sum.bins, p);
            let quantiles = match (q(0.5), q(0.95), q(0.99)) {
                (Some(a), Some(b), Some(c)) => Some([a, b, c]),
                _ => None,
            };
            ResourceStats {
                service,
                resource,
                hits: sum.hits,
                errors: sum.errors,
                quantiles,
            }
        })
        .collect();
    out.sort_by(|a, b| b.hits.cmp(&a.hits).then(a.service.cmp(&b.service)));
    Ok(out)
}

/// The stats the test agent at `agent` received.
pub fn from_agent(agent: &str) -> Result<Vec<ResourceStats>> {
    let url = format!("{}/test/session/requests", normalize_agent_url(agent));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot make an HTTP client")?;
    let response = client
        .get(&url)
        .send()
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("GET {url} answered {status}");
    }
    let requests: serde_json::Value = response
        .json()
        .with_context(|| format!("unexpected answer from {url}"))?;
    from_requests(&requests)
}

/// Nanoseconds as the viewer shows durations (`1.25 ms`, `830 µs`).
fn duration(nanos: f64) -> String {
    crate::tree::format_duration(nanos.max(0.0) as i64)
}

/// The "Services" table of the list page.
pub fn table(stats: Result<&[ResourceStats], &str>) -> String {
    let mut out = String::from(
        "<section class=\"stats\" aria-labelledby=\"stats-title\">\
         <h2 id=\"stats-title\">Services</h2>",
    );
    let stats = match stats {
        Err(e) => {
            let _ = write!(
                out,
                "<p class=\"muted\">No stats: {}</p></section>",
                crate::web::esc(e)
            );
            return out;
        }
        Ok(stats) => stats,
    };
    if stats.is_empty() {
        out.push_str(
            "<p class=\"muted\">No stats yet: the services send theirs every 10 s (and when \
             they stop), when the agent takes them.</p></section>",
        );
        return out;
    }
    out.push_str(
        "<table class=\"stats-table\"><thead><tr><th>service</th><th>resource</th>\
         <th>requests</th><th>errors</th><th>p50</th><th>p95</th><th>p99</th></tr></thead><tbody>",
    );
    for s in stats {
        let (p50, p95, p99) = match s.quantiles {
            Some([a, b, c]) => (duration(a), duration(b), duration(c)),
            None => ("–".into(), "–".into(), "–".into()),
        };
        let error_class = if s.errors > 0 { " class=\"error\"" } else { "" };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\"{error_class}>{}</td>\
             <td class=\"num\">{p50}</td><td class=\"num\">{p95}</td><td class=\"num\">{p99}</td></tr>",
            crate::web::esc(&s.service),
            crate::web::esc(&s.resource),
            s.hits,
            s.errors,
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(entries: &[(&str, &str, u64, u64, &[f64])]) -> Vec<u8> {
        let entries: Vec<Value> = entries
            .iter()
            .map(|(service, resource, hits, errors, points)| {
                let mut ok = DDSketch::default();
                for p in *points {
                    ok.add(*p).unwrap();
                }
                Value::Map(vec![
                    ("Service".into(), (*service).into()),
                    ("Resource".into(), (*resource).into()),
                    ("Hits".into(), (*hits).into()),
                    ("Errors".into(), (*errors).into()),
                    ("OkSummary".into(), Value::Binary(ok.encode_to_vec())),
                    (
                        "ErrorSummary".into(),
                        Value::Binary(DDSketch::default().encode_to_vec()),
                    ),
                ])
            })
            .collect();
        let value = Value::Map(vec![(
            "Stats".into(),
            Value::Array(vec![Value::Map(vec![(
                "Stats".into(),
                Value::Array(entries),
            )])]),
        )]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &value).unwrap();
        out
    }

    fn request(url: &str, body: &[u8]) -> serde_json::Value {
        serde_json::json!({
            "url": url,
            "method": "PUT",
            "body": base64::engine::general_purpose::STANDARD.encode(body),
        })
    }

    #[test]
    fn payloads_add_up_per_service_and_resource_with_their_quantiles() {
        let points: Vec<f64> = (1..=100).map(|i| f64::from(i) * 1_000_000.0).collect();
        let requests = serde_json::Value::Array(vec![
            request(
                "http://127.0.0.1:1/v0.6/stats",
                &payload(&[("notes", "GET /notes", 60, 1, &points[..60])]),
            ),
            request("http://127.0.0.1:1/v0.5/traces", b"not stats"),
            request(
                "http://127.0.0.1:1/v0.6/stats",
                &payload(&[
                    ("notes", "GET /notes", 40, 0, &points[60..]),
                    ("calendar", "GET /calendar", 3, 0, &[2_000_000.0; 3]),
                ]),
            ),
        ]);
        let stats = from_requests(&requests).unwrap();
        assert_eq!(stats.len(), 2);
        assert_eq!(
            (stats[0].service.as_str(), stats[0].hits, stats[0].errors),
            ("notes", 100, 1)
        );
        let [p50, p95, p99] = stats[0].quantiles.unwrap();
        // DDSketch: 1% relative accuracy.
        for (got, want) in [(p50, 50e6), (p95, 95e6), (p99, 99e6)] {
            assert!((got - want).abs() / want < 0.03, "{got} vs {want}");
        }
        let html = table(Ok(&stats));
        assert!(
            html.contains("<td>GET /calendar</td><td class=\"num\">3</td>"),
            "{html}"
        );
        assert!(html.contains("class=\"error\">1<"), "{html}");
    }

    #[test]
    fn no_stats_and_broken_payloads_say_so() {
        assert!(table(Ok(&[])).contains("No stats yet"));
        assert!(table(Err("agent down")).contains("No stats: agent down"));
        let broken = serde_json::Value::Array(vec![request("http://a/v0.6/stats", b"\xc1")]);
        assert!(from_requests(&broken).is_err());
    }
}
