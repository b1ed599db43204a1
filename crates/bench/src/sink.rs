//! A trace sink: accepts the Datadog Agent's trace API on loopback, answers 200 at once and
//! counts spans without keeping them (the Python test agent cannot keep up with thousands of
//! spans per second).
//!
//! A **production** sink ([`Agent::Production`]) also answers as a Datadog Agent in production
//! does: `GET /info` lists `/v0.6/stats` and allows `client_drop_p0s`, each trace post is
//! answered with a low `rate_by_service` ([`PRODUCTION_RATE`]), and `/v0.6/stats` payloads are
//! accepted and their server spans' hits counted per service (issue 22 item 6). A plain sink
//! answers `/info` and stats with 404 and every trace post with empty rates, as before.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rmpv::ValueRef;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Which Agent the sink plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// Traces only: no `/info`, no stats, empty rates (every trace kept at 100%).
    Plain,
    /// A production Agent: `/info` with stats and `client_drop_p0s`, rates at 1%.
    Production,
}

/// The sampling rate a production sink gives every service.
pub const PRODUCTION_RATE: f64 = 0.01;

/// The production sink's `GET /info`, as a Datadog Agent 7 answers it (the fields tracers read).
pub const INFO: &str = r#"{"version":"7.60.0","endpoints":["/v0.3/traces","/v0.4/traces","/v0.5/traces","/v0.6/stats","/info"],"client_drop_p0s":true,"span_meta_structs":true,"peer_tags":["_dd.base_service","db.instance","db.system","http.host","net.peer.name","out.host","peer.hostname","peer.service","server.address"],"config":{"default_env":"none","statsd_port":8125}}"#;

/// The production sink's answer to a trace post: 1% for every key the services use (their
/// `DD_SERVICE` with `DD_ENV=bench`) and the default key.
pub const PRODUCTION_RATES: &str = r#"{"rate_by_service":{"service:notes,env:bench":0.01,"service:calendar,env:bench":0.01,"service:,env:":0.01}}"#;

/// What the sink has received so far.
#[derive(Default, Debug)]
pub struct Counters {
    pub spans: AtomicU64,
    pub payloads: AtomicU64,
    /// Payloads that were not a trace payload the sink could count.
    pub rejected: AtomicU64,
    /// Requests to other paths (answered 404), by method and path: what else an exporter sends
    /// (Datadog's SDK asks for `/info` and sends its own telemetry).
    pub other: Mutex<BTreeMap<String, u64>>,
    /// Production sink: `GET /info` answered.
    pub info: AtomicU64,
    /// Production sink: `/v0.6/stats` payloads, and those it could not decode.
    pub stats_payloads: AtomicU64,
    pub stats_rejected: AtomicU64,
    /// Production sink: the stats' hits of server spans, by service.
    pub server_hits: Mutex<BTreeMap<String, u64>>,
}

/// A running sink; it lives as long as the process.
pub struct Sink {
    pub addr: SocketAddr,
    pub agent: Agent,
    pub counters: Arc<Counters>,
}

impl Sink {
    pub fn spans(&self) -> u64 {
        self.counters.spans.load(Ordering::SeqCst)
    }

    /// The stats' hits of `service`'s server spans received so far.
    pub fn server_hits(&self, service: &str) -> u64 {
        self.counters.server_hits(service)
    }

    /// One line: payloads, rejected payloads, and the other requests by path.
    pub fn summary(&self) -> String {
        let c = &self.counters;
        let other = c
            .other
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| format!("{k} ×{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let production = match self.agent {
            Agent::Plain => String::new(),
            Agent::Production => {
                let hits = c
                    .server_hits
                    .lock()
                    .map(|m| {
                        m.iter()
                            .map(|(k, n)| format!("{k} {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                format!(
                    "; GET /info ×{}; {} stats payloads ({} not decodable), server hits: {}",
                    c.info.load(Ordering::SeqCst),
                    c.stats_payloads.load(Ordering::SeqCst),
                    c.stats_rejected.load(Ordering::SeqCst),
                    if hits.is_empty() { "none" } else { &hits }
                )
            }
        };
        format!(
            "{} trace payloads ({} not countable){production}; other requests (answered 404): {}",
            c.payloads.load(Ordering::SeqCst),
            c.rejected.load(Ordering::SeqCst),
            if other.is_empty() { "none" } else { &other }
        )
    }
}

impl Counters {
    fn server_hits(&self, service: &str) -> u64 {
        self.server_hits
            .lock()
            .map(|m| m.get(service).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// Starts the sink on `127.0.0.1:0`, on a thread of its own.
pub fn start(agent: Agent) -> Result<Sink, String> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| format!("trace sink: cannot bind 127.0.0.1:0: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let counters = Arc::new(Counters::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("trace sink: cannot build its runtime: {e}"))?;
    let shared = counters.clone();
    std::thread::Builder::new()
        .name("trace-sink".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("trace sink: {e}");
                        return;
                    }
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let counters = shared.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let counters = counters.clone();
                            async move {
                                Ok::<_, hyper::Error>(handle(req, agent, &counters).await)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })
        .map_err(|e| format!("trace sink: cannot start its thread: {e}"))?;
    Ok(Sink {
        addr,
        agent,
        counters,
    })
}

async fn handle(
    req: Request<Incoming>,
    agent: Agent,
    counters: &Counters,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, "{}"),
    };
    answer(agent, &method, &path, &body, counters)
}

/// The sink's answer to one request (its body read), counted into `counters`.
fn answer(
    agent: Agent,
    method: &str,
    path: &str,
    body: &[u8],
    counters: &Counters,
) -> Response<Full<Bytes>> {
    let production = agent == Agent::Production;
    let counted = match path {
        "/v0.5/traces" => count_v05(body),
        "/v0.4/traces" | "/v0.3/traces" => count_v04(body),
        "/info" if production && method == "GET" => {
            counters.info.fetch_add(1, Ordering::SeqCst);
            return reply(StatusCode::OK, INFO);
        }
        "/v0.6/stats" if production => {
            counters.stats_payloads.fetch_add(1, Ordering::SeqCst);
            return match server_hits(body) {
                Some(hits) => {
                    if let Ok(mut m) = counters.server_hits.lock() {
                        for (service, n) in hits {
                            *m.entry(service).or_default() += n;
                        }
                    }
                    reply(StatusCode::OK, "OK")
                }
                None => {
                    counters.stats_rejected.fetch_add(1, Ordering::SeqCst);
                    reply(StatusCode::BAD_REQUEST, "{}")
                }
            };
        }
        _ => {
            if let Ok(mut m) = counters.other.lock() {
                *m.entry(format!("{method} {path}")).or_default() += 1;
            }
            return reply(StatusCode::NOT_FOUND, "{}");
        }
    };
    counters.payloads.fetch_add(1, Ordering::SeqCst);
    match counted {
        Some(n) => {
            counters.spans.fetch_add(n, Ordering::SeqCst);
            match agent {
                Agent::Plain => reply(StatusCode::OK, r#"{"rate_by_service":{}}"#),
                Agent::Production => reply(StatusCode::OK, PRODUCTION_RATES),
            }
        }
        None => {
            counters.rejected.fetch_add(1, Ordering::SeqCst);
            reply(StatusCode::BAD_REQUEST, "{}")
        }
    }
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// v0.5: `[strings, [[span, …], …]]`.
pub fn count_v05(payload: &[u8]) -> Option<u64> {
    let value = rmpv::decode::read_value_ref(&mut &payload[..]).ok()?;
    let ValueRef::Array(root) = value else {
        return None;
    };
    let [ValueRef::Array(_strings), ValueRef::Array(traces)] = root.as_slice() else {
        return None;
    };
    count_traces(traces)
}

/// v0.4: `[[span, …], …]`.
pub fn count_v04(payload: &[u8]) -> Option<u64> {
    let value = rmpv::decode::read_value_ref(&mut &payload[..]).ok()?;
    let ValueRef::Array(traces) = value else {
        return None;
    };
    count_traces(&traces)
}

/// The hits of the server spans in a `/v0.6/stats` payload, by service: the sum of
/// `Stats[].Stats[].Hits` over the groups whose `SpanKind` is `server` (one per request a
/// service served, whatever else its trace holds).
pub fn server_hits(payload: &[u8]) -> Option<BTreeMap<String, u64>> {
    let value = rmpv::decode::read_value_ref(&mut &payload[..]).ok()?;
    let mut out = BTreeMap::new();
    let buckets = field(&value, "Stats")?;
    let ValueRef::Array(buckets) = buckets else {
        return None;
    };
    for bucket in buckets {
        let ValueRef::Array(groups) = field(bucket, "Stats")? else {
            return None;
        };
        for group in groups {
            let text = |key| match field(group, key) {
                Some(ValueRef::String(s)) => s.as_str().map(str::to_string),
                _ => None,
            };
            let kind = text("SpanKind").unwrap_or_default();
            if !kind.eq_ignore_ascii_case("server") {
                continue;
            }
            let hits = field(group, "Hits").and_then(|v| v.as_u64())?;
            *out.entry(text("Service").unwrap_or_default()).or_default() += hits;
        }
    }
    Some(out)
}

/// The value of `key` in a msgpack map.
fn field<'a>(map: &'a ValueRef<'a>, key: &str) -> Option<&'a ValueRef<'a>> {
    let ValueRef::Map(entries) = map else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| matches!(k, ValueRef::String(s) if s.as_str() == Some(key)))
        .map(|(_, v)| v)
}

fn count_traces(traces: &[ValueRef<'_>]) -> Option<u64> {
    traces.iter().try_fold(0u64, |n, trace| match trace {
        ValueRef::Array(spans) => Some(n + spans.len() as u64),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    fn encode(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).expect("encoding into a Vec cannot fail");
        out
    }

    fn span() -> Value {
        Value::Array((0..12).map(|i| Value::from(i as u64)).collect())
    }

    #[test]
    fn counts_spans_of_v05_payloads() {
        let payload = Value::Array(vec![
            Value::Array(vec![Value::from("notes"), Value::from("")]),
            Value::Array(vec![
                Value::Array(vec![span(), span()]),
                Value::Array(vec![span(), span(), span(), span()]),
                Value::Array(vec![]),
            ]),
        ]);
        assert_eq!(count_v05(&encode(&payload)), Some(6));
        assert_eq!(count_v05(&encode(&Value::Array(vec![]))), None);
        assert_eq!(count_v05(b"\xc1"), None);
    }

    #[test]
    fn counts_spans_of_v04_payloads() {
        let payload = Value::Array(vec![Value::Array(vec![span()]), Value::Array(vec![span()])]);
        assert_eq!(count_v04(&encode(&payload)), Some(2));
        assert_eq!(count_v04(&encode(&Value::from(3))), None);
    }

    fn body_of(response: Response<Full<Bytes>>) -> (StatusCode, String) {
        let status = response.status();
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(response.into_body().collect())
            .expect("a full body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn map(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        )
    }

    fn group(service: &str, name: &str, kind: &str, hits: u64) -> Value {
        map(vec![
            ("Service", Value::from(service)),
            ("Name", Value::from(name)),
            ("Resource", Value::from("GET /calendar")),
            ("HTTPStatusCode", Value::from(200)),
            ("Hits", Value::from(hits)),
            ("TopLevelHits", Value::from(hits)),
            ("Errors", Value::from(0)),
            ("SpanKind", Value::from(kind)),
        ])
    }

    fn stats_payload(buckets: Vec<Vec<Value>>) -> Vec<u8> {
        encode(&map(vec![
            ("Env", Value::from("bench")),
            ("Service", Value::from("notes")),
            (
                "Stats",
                Value::Array(
                    buckets
                        .into_iter()
                        .map(|groups| {
                            map(vec![
                                ("Start", Value::from(1_700_000_000_000_000_000u64)),
                                ("Duration", Value::from(10_000_000_000u64)),
                                ("Stats", Value::Array(groups)),
                            ])
                        })
                        .collect(),
                ),
            ),
        ]))
    }

    #[test]
    fn stats_hits_are_the_server_spans_by_service() {
        let payload = stats_payload(vec![
            vec![
                group("notes", "actix_web.request", "server", 7),
                group("notes", "reqwest.request", "client", 3),
                group("calendar", "actix_web.request", "server", 3),
            ],
            vec![
                group("notes", "actix_web.request", "server", 5),
                group("notes", "db.query", "internal", 12),
            ],
        ]);
        let hits = server_hits(&payload).expect("decodable");
        assert_eq!(hits.get("notes"), Some(&12));
        assert_eq!(hits.get("calendar"), Some(&3));
        assert_eq!(hits.len(), 2);
        assert_eq!(
            server_hits(&stats_payload(vec![])),
            Some(BTreeMap::new()),
            "no buckets, no hits"
        );
        assert_eq!(server_hits(&encode(&Value::from(3))), None);
        assert_eq!(server_hits(b"\xc1"), None);
    }

    #[test]
    fn a_production_sink_answers_info_rates_and_stats() {
        let c = Counters::default();
        let (status, info) = body_of(answer(Agent::Production, "GET", "/info", b"", &c));
        assert_eq!(status, StatusCode::OK);
        for part in [r#""/v0.6/stats""#, r#""client_drop_p0s":true"#, "peer_tags"] {
            assert!(info.contains(part), "{info}");
        }
        let traces = encode(&Value::Array(vec![Value::Array(vec![span(), span()])]));
        let (status, rates) = body_of(answer(
            Agent::Production,
            "PUT",
            "/v0.4/traces",
            &traces,
            &c,
        ));
        assert_eq!(status, StatusCode::OK);
        for key in [
            "service:notes,env:bench",
            "service:calendar,env:bench",
            "service:,env:",
        ] {
            assert!(rates.contains(&format!("\"{key}\":0.01")), "{rates}");
        }
        let stats = stats_payload(vec![vec![group("notes", "actix_web.request", "server", 4)]]);
        for _ in 0..2 {
            let (status, _) = body_of(answer(Agent::Production, "PUT", "/v0.6/stats", &stats, &c));
            assert_eq!(status, StatusCode::OK);
        }
        let (status, _) = body_of(answer(Agent::Production, "POST", "/v0.6/stats", b"x", &c));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(c.server_hits("notes"), 8);
        assert_eq!(c.server_hits("calendar"), 0);
        assert_eq!(c.stats_payloads.load(Ordering::SeqCst), 3);
        assert_eq!(c.stats_rejected.load(Ordering::SeqCst), 1);
        assert_eq!(c.info.load(Ordering::SeqCst), 1);
        assert_eq!(c.spans.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_plain_sink_answers_no_info_nor_stats() {
        let c = Counters::default();
        let (status, _) = body_of(answer(Agent::Plain, "GET", "/info", b"", &c));
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = body_of(answer(Agent::Plain, "PUT", "/v0.6/stats", b"", &c));
        assert_eq!(status, StatusCode::NOT_FOUND);
        let traces = encode(&Value::Array(vec![Value::Array(vec![span()])]));
        let (_, rates) = body_of(answer(Agent::Plain, "PUT", "/v0.4/traces", &traces, &c));
        assert_eq!(rates, r#"{"rate_by_service":{}}"#, "no rates: 100% kept");
        let other = c.other.lock().expect("not poisoned");
        assert_eq!(other.get("GET /info"), Some(&1));
        assert_eq!(other.get("PUT /v0.6/stats"), Some(&1));
        assert_eq!(c.stats_payloads.load(Ordering::SeqCst), 0);
    }
}
