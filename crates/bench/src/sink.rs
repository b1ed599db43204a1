//! A trace sink: accepts the Datadog Agent's trace API on loopback, answers 200 at once and
//! counts spans without keeping them (the Python test agent cannot keep up with thousands of
//! spans per second).

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
}

/// A running sink; it lives as long as the process.
pub struct Sink {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
}

impl Sink {
    pub fn spans(&self) -> u64 {
        self.counters.spans.load(Ordering::SeqCst)
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
        format!(
            "{} trace payloads ({} not countable); other requests (answered 404): {}",
            c.payloads.load(Ordering::SeqCst),
            c.rejected.load(Ordering::SeqCst),
            if other.is_empty() { "none" } else { &other }
        )
    }
}

/// Starts the sink on `127.0.0.1:0`, on a thread of its own.
pub fn start() -> Result<Sink, String> {
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
                            async move { Ok::<_, hyper::Error>(handle(req, &counters).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })
        .map_err(|e| format!("trace sink: cannot start its thread: {e}"))?;
    Ok(Sink { addr, counters })
}

async fn handle(req: Request<Incoming>, counters: &Counters) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, "{}"),
    };
    let counted = match path.as_str() {
        "/v0.5/traces" => count_v05(&body),
        "/v0.4/traces" | "/v0.3/traces" => count_v04(&body),
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
            reply(StatusCode::OK, r#"{"rate_by_service":{}}"#)
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
}
