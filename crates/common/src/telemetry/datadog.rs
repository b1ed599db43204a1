//! Export to the Datadog Agent's trace API through `opentelemetry-datadog`.
//!
//! This is the only module that knows about `opentelemetry-datadog` (deprecated upstream, final
//! version 0.20): swapping the exporter later touches this file alone.
//!
//! The crate maps OpenTelemetry spans to Datadog's v0.5 msgpack format. Three small layers make
//! the result look like what Datadog's own tracers send:
//! 1. the mapping closures take the Datadog operation name and service from span attributes
//!    ([`OPERATION_NAME`], [`SERVICE_NAME`]); the resource is the OpenTelemetry span name,
//!    unless [`RESOURCE_NAME`] overrides it;
//! 2. [`EnrichingExporter`] adds what only the span context knows: `span.kind`, the sampling
//!    priority, the upper 64 bits of the trace id (`_dd.p.tid`), the error message;
//! 3. [`AgentClient`], the HTTP client handed to the crate, rewrites each payload before it
//!    leaves: numeric tags become metrics (the crate writes every attribute as a string tag),
//!    `_dd.p.tid` stays on the first span of each trace chunk only, and the attributes that only
//!    steer the mapping are removed. It uses a blocking client with timeouts, because the batch
//!    processor runs on its own thread without an async runtime, and an unreachable or slow agent
//!    must never hold anything up for long.

// The crate is deprecated upstream (final version); this module is where that is accepted.
#![allow(deprecated)]

use super::agent_rates::AgentRateTable;
use super::propagation::DdState;
use super::TelemetryConfig;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{KeyValue, Value};
use opentelemetry_datadog::{ApiVersion, DatadogExporter, ModelConfig};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use rmpv::Value as Mp;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Span attribute holding the Datadog operation name (`postgres.query`, `actix_web.request`, …).
pub const OPERATION_NAME: &str = "operation.name";
/// Span attribute holding a service other than the process's own (`postgres`, `notes_helper`).
pub const SERVICE_NAME: &str = "service.name";
/// Span attribute overriding the resource (the OpenTelemetry span name) once the span has
/// started: `tracing-opentelemetry` cannot rename a started span.
pub const RESOURCE_NAME: &str = "resource.name";
/// Operation name of spans that do not set one.
pub const DEFAULT_OPERATION: &str = "internal";

/// Attributes that steer the mapping and are not sent as tags.
/// (`service` is the crate's copy of the span's own service field: noise.)
const CONTROL_KEYS: &[&str] = &[
    OPERATION_NAME,
    SERVICE_NAME,
    RESOURCE_NAME,
    "span.type",
    "service",
];
/// Tags that Datadog expects as numeric metrics rather than strings.
const METRIC_KEYS: &[&str] = &[
    "_sampling_priority_v1",
    "db.row_count",
    "network.destination.port",
    "_dd.top_level",
    "_dd.measured",
    "process_id",
    "_dd.rule_psr",
    "_dd.limit_psr",
    "_dd.agent_psr",
];
/// Tags written on the first span of each trace chunk only: the propagated trace tags.
const CHUNK_PREFIX: &str = "_dd.p.";

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a str> {
    span.attributes.iter().find_map(|kv| match &kv.value {
        Value::String(s) if kv.key.as_str() == key => Some(s.as_str()),
        _ => None,
    })
}

/// Builds the exporter chain for the batch processor.
/// The Agent's answers (its sampling rates) go to `rates`.
pub(crate) fn exporter(
    config: &TelemetryConfig,
    rates: Arc<AgentRateTable>,
) -> Result<EnrichingExporter, String> {
    let client = AgentClient::new(config, rates)?;
    let mut pipeline = opentelemetry_datadog::new_pipeline()
        .with_service_name(config.service.clone())
        .with_api_version(ApiVersion::Version05)
        .with_agent_endpoint(config.agent_url.clone())
        .with_http_client(client)
        .with_name_mapping(|span: &SpanData, _: &ModelConfig| {
            attr(span, OPERATION_NAME).unwrap_or(DEFAULT_OPERATION)
        })
        .with_service_name_mapping(|span: &SpanData, model: &ModelConfig| {
            attr(span, SERVICE_NAME).unwrap_or(model.service_name.as_str())
        })
        .with_resource_mapping(|span: &SpanData, _: &ModelConfig| {
            attr(span, RESOURCE_NAME).unwrap_or(span.name.as_ref())
        });
    // Given explicitly so that their case is kept (the crate lowercases what it reads itself).
    if let Some(env) = &config.env {
        pipeline = pipeline.with_env(env.clone());
    }
    if let Some(version) = &config.version {
        pipeline = pipeline.with_version(version.clone());
    }
    let inner = pipeline
        .build_exporter()
        .map_err(|e| format!("cannot build the Datadog exporter: {e}"))?;
    Ok(EnrichingExporter {
        inner,
        service: config.service.clone(),
    })
}

/// The tags (`DD_TAGS`) every span carries, as the exporter's resource.
pub(crate) fn resource(config: &TelemetryConfig) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            config
                .tags
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}

/// Adds to each span what Datadog's tracers write and only the span context knows.
#[derive(Debug)]
pub(crate) struct EnrichingExporter {
    /// The `opentelemetry-datadog` exporter doing the mapping and the sending.
    inner: DatadogExporter,
    /// The process's service (`DD_SERVICE`), to mark spans of other services with their base.
    service: String,
}

fn enrich(span: &mut SpanData) {
    let mut extra = Vec::new();
    let has = |span: &SpanData, key: &str| span.attributes.iter().any(|kv| kv.key.as_str() == key);
    if !has(span, "span.kind") {
        let kind = match span.span_kind {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
            SpanKind::Internal => "internal",
        };
        extra.push(KeyValue::new("span.kind", kind));
    }
    let dd = DdState::from_trace_state(span.span_context.trace_state());
    extra.push(KeyValue::new(
        "_sampling_priority_v1",
        i64::from(dd.priority.unwrap_or(1)),
    ));
    let high = (u128::from_be_bytes(span.span_context.trace_id().to_bytes()) >> 64) as u64;
    if high != 0 {
        extra.push(KeyValue::new("_dd.p.tid", format!("{high:016x}")));
    }
    for (name, value) in &dd.tags {
        extra.push(KeyValue::new(format!("_dd.p.{name}"), value.clone()));
    }
    if let Some(origin) = dd.origin {
        extra.push(KeyValue::new("_dd.origin", origin));
    }
    if let Status::Error { description } = &span.status {
        if !has(span, "error.message") && !description.is_empty() {
            extra.push(KeyValue::new("error.message", description.to_string()));
        }
    }
    if span.parent_span_id == opentelemetry::trace::SpanId::INVALID || span.parent_span_is_remote {
        extra.push(KeyValue::new("language", "rust"));
    }
    span.attributes.extend(extra);
}

impl SpanExporter for EnrichingExporter {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        for span in &mut batch {
            enrich(span);
            if let Some(other) = attr(span, SERVICE_NAME) {
                if other != self.service {
                    let base = KeyValue::new("_dd.base_service", self.service.clone());
                    span.attributes.push(base);
                }
            }
        }
        self.inner.export(batch).await
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The HTTP client given to `opentelemetry-datadog`: rewrites each payload, then posts it.
#[derive(Debug)]
pub(crate) struct AgentClient {
    /// Blocking client (the batch processor's thread has no async runtime), with timeouts.
    client: reqwest::blocking::Client,
    /// `DD_TRACE_DEBUG`: log every payload sent and every answer.
    debug: bool,
    /// Whether the last send failed, so that an outage is logged once, not per batch.
    failing: AtomicBool,
    /// Spans lost because the agent could not be reached or refused them.
    lost_spans: AtomicU64,
    /// Where the Agent's sampling rates (its answer to each post) go.
    rates: Arc<AgentRateTable>,
}

impl AgentClient {
    fn new(config: &TelemetryConfig, rates: Arc<AgentRateTable>) -> Result<Self, String> {
        let timeout = config.agent_timeout;
        let socket = config.agent_socket.clone();
        // Build the blocking client on a plain thread: building (and dropping) it on a tokio
        // worker thread panics.
        let client = std::thread::spawn(move || {
            let builder = reqwest::blocking::Client::builder()
                .connect_timeout(timeout.min(Duration::from_secs(1)))
                .timeout(timeout)
                .pool_idle_timeout(Duration::from_secs(30));
            match socket {
                Some(path) => builder.unix_socket(path),
                None => builder,
            }
            .build()
        })
        .join()
        .map_err(|_| "the agent HTTP client could not be built".to_string())?
        .map_err(|e| format!("the agent HTTP client could not be built: {e}"))?;
        Ok(Self {
            client,
            debug: config.debug,
            failing: AtomicBool::new(false),
            lost_spans: AtomicU64::new(0),
            rates,
        })
    }

    fn post(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let (body, spans) = match rewrite_payload(&body) {
            Ok(rewritten) => rewritten,
            Err(e) => {
                tracing::warn!(error = %e, "trace payload could not be rewritten; sent as built");
                (body.to_vec(), 0)
            }
        };
        let mut builder = self.client.post(parts.uri.to_string());
        for (name, value) in parts.headers.iter() {
            builder = builder.header(name, value);
        }
        match builder.body(body).send() {
            Ok(response) if response.status().is_success() => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    let lost_spans_total = self.lost_spans.load(Ordering::Relaxed);
                    tracing::info!(url = %parts.uri, lost_spans_total, "the Datadog Agent accepts traces again");
                }
                let status = response.status().as_u16();
                // The answer holds the Agent's sampling rates; a malformed one is logged once.
                let answer = response.bytes().unwrap_or_default();
                let _ = self.rates.update(&answer);
                if self.debug {
                    tracing::info!(url = %parts.uri, spans, status, "sent spans to the Datadog Agent");
                }
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().unwrap_or_default();
                let error = format!("agent answered {status}: {text}");
                self.report_failure(&parts.uri, spans, &error);
            }
            Err(e) => {
                self.report_failure(&parts.uri, spans, &crate::http::error_chain(&e));
            }
        }
        // A failure was counted and logged above; reporting it to the batch processor as well
        // would log the same outage again on every flush.
        Ok(Response::new(Bytes::new()))
    }

    /// Counts the lost spans and logs an outage once (every failure with `DD_TRACE_DEBUG`).
    fn report_failure(&self, url: &http::Uri, spans: usize, error: &str) {
        let lost = self.lost_spans.fetch_add(spans as u64, Ordering::Relaxed) + spans as u64;
        let first = !self.failing.swap(true, Ordering::Relaxed);
        if first || self.debug {
            tracing::warn!(%url, error, lost_spans_total = lost, "cannot send traces to the Datadog Agent; spans are dropped until it is back");
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for AgentClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.post(request)
    }
}

fn span_field(span: &Mp, index: usize) -> Option<u64> {
    span.as_array()?.get(index)?.as_u64()
}

/// Rewrites a v0.5 payload (`[strings, [[span, …], …]]`, a span being a 12-element array whose
/// strings are indexes into `strings`). Returns the new payload and its span count.
fn rewrite_payload(payload: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut value = rmpv::decode::read_value(&mut &payload[..]).map_err(|e| e.to_string())?;
    let Mp::Array(root) = &mut value else {
        return Err("payload is not an array".into());
    };
    let [Mp::Array(strings), Mp::Array(traces)] = root.as_mut_slice() else {
        return Err("payload is not [strings, traces]".into());
    };
    let strings: Vec<String> = strings
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect();
    let name = |v: &Mp| {
        v.as_u64()
            .and_then(|i| strings.get(i as usize))
            .map(String::as_str)
    };
    let mut count = 0;
    for trace in traces.iter_mut() {
        let Mp::Array(spans) = trace else { continue };
        // The chunk's local root first: it is the span that carries the chunk-level tags.
        let ids: HashSet<u64> = spans.iter().filter_map(|s| span_field(s, 4)).collect();
        spans.sort_by_key(|s| span_field(s, 5).is_some_and(|parent| ids.contains(&parent)));
        for (position, span) in spans.iter_mut().enumerate() {
            count += 1;
            let Mp::Array(fields) = span else { continue };
            if fields.len() != 12 {
                continue;
            }

            let (meta, metrics) = fields.split_at_mut(10);
            let (Mp::Map(meta), Mp::Map(metrics)) = (&mut meta[9], &mut metrics[0]) else {
                continue;
            };
            // `version` belongs to the process's own service, as ddtrace writes it: spans of
            // other services (`postgres`, `reqwest`, `notes_helper`: those marked with
            // `_dd.base_service`) keep `env` but not `version`.
            let other_service = meta
                .iter()
                .any(|(k, _)| name(k) == Some("_dd.base_service"));
            let mut moved: Vec<(Mp, f64)> = Vec::new();
            meta.retain(|(k, v)| {
                let Some(key) = name(k) else { return true };
                if CONTROL_KEYS.contains(&key) || (other_service && key == "version") {
                    return false;
                }
                if key.starts_with(CHUNK_PREFIX) && position != 0 {
                    return false;
                }
                if METRIC_KEYS.contains(&key) {
                    if let Some(number) = name(v).and_then(|s| s.parse::<f64>().ok()) {
                        moved.push((k.clone(), number));
                    }
                    return false;
                }
                true
            });
            metrics.retain(|(k, v)| {
                let key = name(k);
                let replaced = moved.iter().any(|(mk, _)| Some(key) == Some(name(mk)));
                // The crate always writes `_dd.measured: 0`; a zero there is noise.
                let zero_measured = key == Some("_dd.measured") && v.as_f64() == Some(0.0);
                !replaced && !zero_measured
            });
            metrics.extend(moved.into_iter().map(|(k, n)| (k, Mp::F64(n))));
        }
    }
    let mut out = Vec::with_capacity(payload.len());
    rmpv::encode::write_value(&mut out, &value).map_err(|e| e.to_string())?;
    Ok((out, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn payload(meta: Vec<(&str, &str)>, metrics: Vec<(&str, f64)>, spans: usize) -> Vec<u8> {
        let mut strings: Vec<String> = vec!["".into()];
        let mut intern = |s: &str| -> u64 {
            if let Some(i) = strings.iter().position(|x| x == s) {
                return i as u64;
            }
            strings.push(s.into());
            (strings.len() - 1) as u64
        };
        let meta_map: Vec<(Mp, Mp)> = meta
            .iter()
            .map(|(k, v)| (Mp::from(intern(k)), Mp::from(intern(v))))
            .collect();
        let metric_map: Vec<(Mp, Mp)> = metrics
            .iter()
            .map(|(k, v)| (Mp::from(intern(k)), Mp::F64(*v)))
            .collect();
        let span = Mp::Array(vec![
            Mp::from(0),
            Mp::from(0),
            Mp::from(0),
            Mp::from(1u64),
            Mp::from(2u64),
            Mp::from(0u64),
            Mp::from(0i64),
            Mp::from(5i64),
            Mp::from(0i32),
            Mp::Map(meta_map),
            Mp::Map(metric_map),
            Mp::from(0),
        ]);
        let root = Mp::Array(vec![
            Mp::Array(strings.into_iter().map(Mp::from).collect()),
            Mp::Array(vec![Mp::Array(vec![span; spans])]),
        ]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &root).unwrap();
        out
    }

    fn decode(bytes: &[u8]) -> Vec<(HashMap<String, String>, HashMap<String, f64>)> {
        let value = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        let root = value.as_array().unwrap();
        let strings: Vec<&str> = root[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let s = |v: &Mp| strings[v.as_u64().unwrap() as usize].to_string();
        root[1].as_array().unwrap()[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|span| {
                let f = span.as_array().unwrap();
                let meta = f[9]
                    .as_map()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (s(k), s(v)))
                    .collect();
                let metrics = f[10]
                    .as_map()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (s(k), v.as_f64().unwrap()))
                    .collect();
                (meta, metrics)
            })
            .collect()
    }

    #[test]
    fn numeric_tags_become_metrics_and_control_keys_go() {
        let input = payload(
            vec![
                ("db.row_count", "3"),
                ("_sampling_priority_v1", "2"),
                ("operation.name", "postgres.query"),
                ("service.name", "postgres"),
                ("span.type", "sql"),
                ("db.system", "postgresql"),
                ("_dd.p.tid", "6b058a5d00000000"),
            ],
            vec![("_sampling_priority_v1", 1.0), ("_dd.measured", 0.0)],
            2,
        );
        let (out, count) = rewrite_payload(&input).unwrap();
        assert_eq!(count, 2);
        let spans = decode(&out);
        let (meta, metrics) = &spans[0];
        assert_eq!(
            meta.get("db.system").map(String::as_str),
            Some("postgresql")
        );
        assert_eq!(
            meta.get("_dd.p.tid").map(String::as_str),
            Some("6b058a5d00000000")
        );
        for gone in [
            "db.row_count",
            "operation.name",
            "service.name",
            "span.type",
            "_sampling_priority_v1",
        ] {
            assert!(!meta.contains_key(gone), "{gone} still in meta");
        }
        assert_eq!(metrics.get("db.row_count"), Some(&3.0));
        assert_eq!(metrics.get("_sampling_priority_v1"), Some(&2.0));
        assert!(!metrics.contains_key("_dd.measured"));
        // Only the first span of the chunk keeps `_dd.p.tid`.
        assert!(!spans[1].0.contains_key("_dd.p.tid"));
    }

    #[test]
    fn the_chunk_root_comes_first_and_alone_carries_the_trace_tags() {
        // Two spans: a child (id 2, parent 1) listed before its parent (id 1, parent 99, remote).
        let mut strings: Vec<Mp> = vec!["".into(), "_dd.p.tid".into(), "6b058a5d00000000".into()];
        strings.push("_dd.p.dm".into());
        strings.push("-0".into());
        let span = |id: u64, parent: u64| {
            Mp::Array(vec![
                Mp::from(0),
                Mp::from(0),
                Mp::from(0),
                Mp::from(7u64),
                Mp::from(id),
                Mp::from(parent),
                Mp::from(0i64),
                Mp::from(1i64),
                Mp::from(0i32),
                Mp::Map(vec![(Mp::from(1), Mp::from(2)), (Mp::from(3), Mp::from(4))]),
                Mp::Map(vec![]),
                Mp::from(0),
            ])
        };
        let root = Mp::Array(vec![
            Mp::Array(strings),
            Mp::Array(vec![Mp::Array(vec![span(2, 1), span(1, 99)])]),
        ]);
        let mut input = Vec::new();
        rmpv::encode::write_value(&mut input, &root).unwrap();
        let (out, _) = rewrite_payload(&input).unwrap();
        let value = rmpv::decode::read_value(&mut &out[..]).unwrap();
        let spans = value.as_array().unwrap()[1].as_array().unwrap()[0]
            .as_array()
            .unwrap()
            .clone();
        let id = |s: &Mp| s.as_array().unwrap()[4].as_u64().unwrap();
        let meta_len = |s: &Mp| s.as_array().unwrap()[9].as_map().unwrap().len();
        assert_eq!(
            (id(&spans[0]), meta_len(&spans[0])),
            (1, 2),
            "root first, with both tags"
        );
        assert_eq!(
            (id(&spans[1]), meta_len(&spans[1])),
            (2, 0),
            "child without them"
        );
    }

    #[test]
    fn enrich_adds_kind_priority_trace_tags_and_error_message() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        let state: TraceState = "dd=s:2;t.dm:-4;o:rum".parse().unwrap();
        let mut span = SpanData {
            span_context: SpanContext::new(
                TraceId::from(0x6b058a5d_00000000_493c264c_32613b9e_u128),
                SpanId::from(5u64),
                TraceFlags::SAMPLED,
                false,
                state,
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: "GET /".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: vec![],
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::error("boom"),
            instrumentation_scope: Default::default(),
        };
        enrich(&mut span);
        let get = |k: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(get("span.kind").as_deref(), Some("server"));
        assert_eq!(get("_sampling_priority_v1").as_deref(), Some("2"));
        assert_eq!(get("_dd.p.tid").as_deref(), Some("6b058a5d00000000"));
        assert_eq!(get("_dd.p.dm").as_deref(), Some("-4"));
        assert_eq!(get("_dd.origin").as_deref(), Some("rum"));
        assert_eq!(get("error.message").as_deref(), Some("boom"));
        assert_eq!(get("language").as_deref(), Some("rust"));
    }

    #[test]
    fn garbage_is_reported_not_panicked_on() {
        assert!(rewrite_payload(b"\x01\x02").is_err());
        assert!(rewrite_payload(&[]).is_err());
    }
}
