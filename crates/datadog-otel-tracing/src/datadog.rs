//! Export to the Datadog Agent's trace API through `opentelemetry-datadog`.
//!
//! This is the only module that knows about `opentelemetry-datadog` (deprecated upstream, final
//! version 0.20): swapping the exporter touches this file and the seam in [`super`] alone.
//!
//! The path from a finished span to the Agent, in order:
//! 1. The span processor ([`crate::processor`]) assembles trace chunks ([`crate::chunks`]) on
//!    the threads that end the spans, and hands each chunk whose last open span has ended to
//!    [`Exporter::admit`]: a keep or drop by hand is taken off its spans, OpenTelemetry's
//!    conventions are mapped to Datadog's ([`crate::mapping`]: operation names from semantic
//!    conventions, reserved attributes, arrays, events, exceptions), the chunk is counted
//!    in the client-side stats ([`crate::stats`]), and a priority-0 chunk the Agent need not see
//!    is dropped there (it costs no mapping, encoding or HTTP). What is admitted waits in the
//!    processor's bounded queue; its worker thread calls [`Exporter::send`] with a batch.
//! 2. For each chunk `send` reads the trace's facts once ([`TraceFacts`]) and prepares each span:
//!    numeric attributes are taken out (they become metrics, still numbers), `span.kind`, the
//!    error message, `_dd.base_service` and `_dd.origin` are added, and the chunk root (sent first) alone gets
//!    the chunk-level tags (`_dd.p.*`, `language`) and metrics (the sampling priority). What the
//!    crate cannot write itself (metrics) goes into a [`BatchPlan`], keyed by span id.
//! 3. The crate maps the spans to the v0.5 payload: the closures take the Datadog operation name
//!    and service from span attributes ([`OPERATION_NAME`], [`SERVICE_NAME`]); the resource is
//!    the OpenTelemetry span name unless [`RESOURCE_NAME`] overrides it.
//! 4. `AgentClient`, the HTTP client handed to the crate, applies the plan to the crate's bytes
//!    in one streaming pass ([`crate::payload`]) and posts the result through a blocking client
//!    with timeouts (the processor's worker thread has no async runtime, and an unreachable or
//!    slow Agent must never hold anything up for long). A payload the pass cannot process is
//!    dropped and counted, logged once, never sent as built.

// The crate is deprecated upstream (final version); this module is where that is accepted.
#![allow(deprecated)]

use crate::agent_info::AgentInfo;
use crate::agent_rates::AgentRateTable;
use crate::chunks::Chunk;
use crate::config::Config;
use crate::facts::{SamplingPriority, TraceFacts};
use crate::payload::{self, BatchPlan};
use crate::propagation::DdState;
use crate::sampler::{AGENT_PSR, LIMIT_PSR, RULE_PSR};
use crate::spans::{
    kind_name, str_attr as attr, DEFAULT_OPERATION, MANUAL_DROP, MANUAL_KEEP, OPERATION_NAME,
    RESOURCE_NAME, SERVICE_NAME,
};
use crate::stats::{ChunkFacts, Concentrator};
use opentelemetry::trace::{SpanId, Status};
use opentelemetry::{KeyValue, Value};
use opentelemetry_datadog::{ApiVersion, DatadogExporter, ModelConfig};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

tokio::task_local! {
    /// The plan of the batch being exported, from [`Exporter::send`] to [`AgentClient::post`]
    /// within the one export future that encodes and posts it: each export carries its own,
    /// so exports may overlap.
    static PLAN: RefCell<Option<BatchPlan>>;
}

/// How often the Agent's `/info` is asked again.
const INFO_REFRESH: Duration = Duration::from_secs(60);

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves consistent data (plain collections).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why the export to the Agent could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// The HTTP client for the Agent could not be built.
    #[error("cannot build the agent HTTP client")]
    AgentClient(#[source] reqwest::Error),
    /// The thread building that client panicked.
    #[error("cannot build the agent HTTP client: its thread panicked")]
    AgentClientPanicked,
    /// The Agent's URL does not make the stats endpoints' URLs.
    #[error("cannot build the Agent's stats URLs: {0}")]
    AgentUrl(String),
    /// `opentelemetry-datadog` refused its settings (its error says why).
    #[error("cannot build the Datadog exporter")]
    Exporter(#[source] opentelemetry_datadog::Error),
}

/// Builds the export for the span processor, posting to the Agent over HTTP (or its Unix
/// socket); the Agent's answers (its sampling rates) go to `rates`.
pub(crate) fn exporter(
    config: &Config,
    rates: Arc<AgentRateTable>,
) -> Result<Exporter, ExporterError> {
    let transport = HttpTransport::new(config.agent_timeout, config.agent_socket.clone())?;
    build_exporter(config, Arc::new(transport), rates)
}

/// Client-side stats ([`crate::stats`]) and the local drop of priority-0 chunks, as the
/// Agent's `/info` allows them: the concentrator the exporter feeds, and the sends to
/// `/v0.6/stats`. Shared by the exporter, the processor's worker and the pipeline's guard (its
/// `flush`).
#[derive(Debug)]
pub(crate) struct Stats {
    /// `DD_TRACE_STATS_COMPUTATION_ENABLED` (`None`: on when the Agent takes stats).
    setting: Option<bool>,
    info: AgentInfo,
    concentrator: Mutex<Concentrator>,
    transport: Arc<dyn Transport>,
    info_url: http::Uri,
    stats_url: http::Uri,
    hostname: String,
    env: String,
    version: String,
    service: String,
    sequence: AtomicU64,
    debug: bool,
    /// Stops the `/info` refresh thread when dropped (at shutdown).
    stop_refresh: Mutex<Option<mpsc::Sender<()>>>,
}

impl Stats {
    fn new(config: &Config, transport: Arc<dyn Transport>) -> Result<Self, ExporterError> {
        let url = |path: &str| {
            format!("{}{path}", config.agent_url)
                .parse::<http::Uri>()
                .map_err(|e| ExporterError::AgentUrl(e.to_string()))
        };
        Ok(Self {
            setting: config.stats_computation,
            info: AgentInfo::default(),
            concentrator: Mutex::new(Concentrator::with_limits(config.stats_limits)),
            hostname: config.report_hostname.clone().unwrap_or_default(),
            transport,
            info_url: url("/info")?,
            stats_url: url("/v0.6/stats")?,
            env: config.env.clone().unwrap_or_default(),
            version: config.version.clone().unwrap_or_default(),
            service: config.service.clone(),
            sequence: AtomicU64::new(0),
            debug: config.debug,
            stop_refresh: Mutex::new(None),
        })
    }

    /// Whether stats are computed now (set, or unset and the Agent takes them).
    pub(crate) fn enabled(&self) -> bool {
        self.setting != Some(false) && self.info.takes_stats()
    }

    /// Whether priority-0 chunks are dropped here (stats on and the Agent allows it).
    fn drops_p0s(&self) -> bool {
        self.enabled() && self.info.drops_p0s()
    }

    /// Asks the Agent's `/info`; no answer means no stats (and every trace sent).
    fn refresh(&self) {
        match self.transport.get(&self.info_url) {
            Ok(answer) => {
                self.info.update(&answer.body);
                lock(&self.concentrator).set_peer_tags(self.info.peer_tags());
            }
            Err(_) => self.info.clear(),
        }
    }

    /// Starts the thread that asks `/info` now and every [`INFO_REFRESH`] (unless stats are
    /// switched off, then nothing is asked).
    fn start_refresh(self: &Arc<Self>) {
        if self.setting == Some(false) {
            return;
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let stats = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("dd-agent-info".into())
            .spawn(move || loop {
                stats.refresh();
                if !matches!(
                    stopped.recv_timeout(INFO_REFRESH),
                    Err(mpsc::RecvTimeoutError::Timeout)
                ) {
                    break;
                }
            });
        match spawned {
            Ok(_) => *lock(&self.stop_refresh) = Some(stop),
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the Agent's /info: no client-side stats")
            }
        }
    }

    /// Sends the closed buckets (every bucket with `force`); the lock is not held while sending.
    pub(crate) fn flush(&self, force: bool) {
        let buckets = lock(&self.concentrator).take(SystemTime::now(), force);
        if buckets.is_empty() {
            return;
        }
        let header = crate::stats::Header {
            hostname: &self.hostname,
            env: &self.env,
            version: &self.version,
            service: &self.service,
            runtime_id: crate::sampler::runtime_id(),
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let body = crate::stats::encode(&header, buckets);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/msgpack"),
        );
        headers.insert("Datadog-Meta-Lang", http::HeaderValue::from_static("rust"));
        headers.insert(
            "Datadog-Meta-Tracer-Version",
            http::HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
        );
        match self.transport.post(&self.stats_url, &headers, body) {
            Ok(answer) if self.debug => {
                let status = answer.status;
                tracing::info!(url = %self.stats_url, status, "sent stats to the Datadog Agent");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(url = %self.stats_url, error = %crate::error_chain(&e), "cannot send stats to the Datadog Agent");
            }
        }
    }

    /// Stops the `/info` refresh.
    pub(crate) fn stop(&self) {
        lock(&self.stop_refresh).take();
    }
}

/// [`exporter`] with any [`Transport`] (the golden test captures the payloads).
pub(crate) fn build_exporter(
    config: &Config,
    transport: Arc<dyn Transport>,
    rates: Arc<AgentRateTable>,
) -> Result<Exporter, ExporterError> {
    let stats = Arc::new(Stats::new(config, Arc::clone(&transport))?);
    stats.start_refresh();
    let client = Arc::new(AgentClient {
        transport,
        rates,
        dropped_traces: AtomicU64::new(0),
        dropped_spans: AtomicU64::new(0),
        debug: config.debug,
        failing: AtomicBool::new(false),
        lost_spans: AtomicU64::new(0),
        unprocessable_spans: AtomicU64::new(0),
    });
    let mut pipeline = opentelemetry_datadog::new_pipeline()
        .with_service_name(config.service.clone())
        .with_api_version(ApiVersion::Version05)
        .with_agent_endpoint(config.agent_url.clone())
        .with_http_client(SharedClient(Arc::clone(&client)))
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
    let mut inner = pipeline.build_exporter().map_err(ExporterError::Exporter)?;
    // The same resource as the tracer provider's (the pipeline gives it `resource(config)`).
    inner.set_resource(&resource(config));
    Ok(Exporter {
        inner,
        client,
        service: Arc::from(config.service.as_str()),
        stats,
    })
}

/// The tags (`DD_TAGS`) every span carries, as the exporter's resource.
pub(crate) fn resource(config: &Config) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            config
                .tags
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}

/// The facts of `chunk`'s trace, read from the span that carries them (the local root; a
/// partial chunk's first span), with a keep or drop by hand applied; `None` for no span.
fn chunk_facts(chunk: &Chunk) -> Option<TraceFacts> {
    let head = chunk.spans.get(chunk.head())?;
    let mut facts = TraceFacts::of(&head.span_context);
    if let Some(priority) = chunk.manual {
        facts.decide_manually(priority);
    }
    Some(facts)
}

/// The rates the sampler writes on a local root (`_dd.rule_psr`, `_dd.limit_psr`,
/// `_dd.agent_psr`), removed when the trace was kept or dropped by hand.
const SAMPLER_RATES: [&str; 3] = [RULE_PSR, LIMIT_PSR, AGENT_PSR];

/// A keep or drop by hand on any span of a chunk ([`MANUAL_KEEP`], [`MANUAL_DROP`]; a drop
/// wins): its priority, the marks removed from the spans (they are instructions, not tags).
fn take_manual_decision(spans: &mut [SpanData]) -> Option<SamplingPriority> {
    let mut decision = None;
    let is_mark = |key: &str| key == MANUAL_DROP || key == MANUAL_KEEP;
    for span in spans {
        if !span.attributes.iter().any(|kv| is_mark(kv.key.as_str())) {
            continue;
        }
        span.attributes.retain(|kv| {
            let key = kv.key.as_str();
            if key == MANUAL_DROP {
                decision = Some(SamplingPriority::USER_REJECT);
            } else if key == MANUAL_KEEP && decision.is_none() {
                decision = Some(SamplingPriority::USER_KEEP);
            }
            !is_mark(key)
        });
    }
    decision
}

/// The export of chunks to the Agent (see the module docs): admitted on the threads that end
/// the spans, prepared and handed to `opentelemetry-datadog` on the processor's worker.
#[derive(Debug)]
pub(crate) struct Exporter {
    /// The `opentelemetry-datadog` exporter doing the mapping and the encoding; it posts
    /// through [`AgentClient`].
    inner: DatadogExporter,
    /// The client `inner` posts through, for its counters (read by the tests).
    client: Arc<AgentClient>,
    /// The process's service (`DD_SERVICE`), to mark spans of other services with their base.
    service: Arc<str>,
    /// Client-side stats and the local P0 drop.
    stats: Arc<Stats>,
}

impl Exporter {
    /// Takes a chunk on the thread that ended its last span: the marks of a keep or drop by
    /// hand come off its spans into [`Chunk::manual`], the chunk is counted in the stats (when
    /// they are on), and `None` when it is a priority-0 chunk the Agent allows to drop here
    /// (no error span in it): counted for the next payload's headers, never sent.
    pub(crate) fn admit(&self, mut chunk: Chunk) -> Option<Chunk> {
        chunk.manual = take_manual_decision(&mut chunk.spans);
        // Datadog's semantics first (operation names, reserved attributes, events): the stats
        // and the payload read the mapped spans.
        chunk.spans.iter_mut().for_each(crate::mapping::apply);
        if !self.stats.enabled() {
            return Some(chunk);
        }
        // Only the priority and the origin here: the chunk's other facts are read for the
        // chunks that are sent, most are not.
        let head = chunk.spans.get(chunk.head())?;
        let (priority, origin) = DdState::priority_and_origin(head.span_context.trace_state());
        let priority = chunk.manual.unwrap_or(SamplingPriority(
            priority.unwrap_or(i32::from(head.span_context.is_sampled())),
        ));
        let stats_facts = ChunkFacts {
            service: &self.service,
            origin: origin.as_deref(),
        };
        // Held for this chunk's additions only, never across a send.
        lock(&self.stats.concentrator).add_chunk(&chunk.spans, stats_facts);
        chunk.counted = true;
        if self.stats.drops_p0s()
            && !priority.is_keep()
            && !chunk
                .spans
                .iter()
                .any(|s| matches!(s.status, Status::Error { .. }))
        {
            self.client.count_dropped(1, chunk.spans.len() as u64);
            return None;
        }
        let facts = chunk_facts(&chunk)?;
        // Read once: `prepare` writes them.
        chunk.facts = Some(facts);
        Some(chunk)
    }

    /// Prepares the spans of `chunks` for the crate and the plan for the payload pass.
    fn prepare(&self, chunks: Vec<Chunk>) -> (Vec<SpanData>, BatchPlan) {
        let mut plan = BatchPlan::default();
        let mut out = Vec::with_capacity(chunks.iter().map(|c| c.spans.len()).sum());
        // The payload says its spans went through the stats exactly when they did.
        plan.computed_stats = !chunks.is_empty() && chunks.iter().all(|c| c.counted);
        for mut chunk in chunks {
            let head = chunk.head();
            let Some(facts) = chunk.facts.take().or_else(|| chunk_facts(&chunk)) else {
                continue;
            };
            let manual = chunk.manual;
            let mut spans = chunk.spans;
            // Shared by every span of the chunk (reference-counted, not copied).
            let origin = facts
                .origin
                .as_deref()
                .map(|o| Value::from(Arc::<str>::from(o)));
            // The span carrying the chunk-level facts goes first in the payload: the Agent and
            // Datadog's tools read trace-level tags from the chunk's first span.
            spans[..=head].rotate_right(1);
            for (position, mut span) in spans.into_iter().enumerate() {
                if manual.is_some() {
                    // A manual decision replaces the sampler's: its rates go too.
                    span.attributes
                        .retain(|kv| !SAMPLER_RATES.contains(&kv.key.as_str()));
                }
                let mut metrics: Vec<(u32, f64)> = Vec::new();
                for kv in &span.attributes {
                    let value = match kv.value {
                        Value::I64(n) => n as f64,
                        Value::F64(f) => f,
                        _ => continue,
                    };
                    metrics.push((plan.intern(kv.key.as_str()), value));
                }
                if !metrics.is_empty() {
                    span.attributes
                        .retain(|kv| !matches!(kv.value, Value::I64(_) | Value::F64(_)));
                }
                let has = |span: &SpanData, key: &str| {
                    span.attributes.iter().any(|kv| kv.key.as_str() == key)
                };
                if !has(&span, "span.kind") {
                    span.attributes
                        .push(KeyValue::new("span.kind", kind_name(&span.span_kind)));
                }
                if let Status::Error { description } = &span.status {
                    if !description.is_empty() && !has(&span, "error.message") {
                        let message = KeyValue::new("error.message", description.to_string());
                        span.attributes.push(message);
                    }
                }
                if let Some(links) = crate::links::span_links_tag(&span.links) {
                    span.attributes.push(links);
                }
                if attr(&span, SERVICE_NAME).is_some_and(|other| *other != *self.service) {
                    let base = Value::from(self.service.clone());
                    span.attributes
                        .push(KeyValue::new("_dd.base_service", base));
                }
                if let Some(origin) = &origin {
                    span.attributes
                        .push(KeyValue::new("_dd.origin", origin.clone()));
                }
                if position == 0 {
                    if facts.no_parent && span.parent_span_id == crate::propagation::NO_PARENT {
                        span.parent_span_id = SpanId::INVALID;
                    }
                    span.attributes.extend(facts.chunk_tags());
                    for (key, value) in facts.chunk_metrics() {
                        metrics.push((plan.intern(key), value));
                    }
                }
                let span_id = u64::from_be_bytes(span.span_context.span_id().to_bytes());
                plan.add_span(span_id, metrics);
                out.push(span);
            }
        }
        (out, plan)
    }

    /// Sends `chunks` (nothing when empty), the batch's plan with them.
    pub(crate) async fn send(&self, chunks: Vec<Chunk>) -> OTelSdkResult {
        if chunks.is_empty() {
            return Ok(());
        }
        let (spans, plan) = self.prepare(chunks);
        if spans.is_empty() {
            // Every chunk was dropped here; the counts go with the next payload.
            return Ok(());
        }
        PLAN.scope(RefCell::new(Some(plan)), self.inner.export(spans))
            .await
    }
}

impl Exporter {
    /// Spans lost so far: those the Agent did not take, those of payloads that could not be
    /// built (for the health metrics).
    pub(crate) fn dropped_totals(&self) -> (u64, u64) {
        (
            self.client.lost_spans.load(Ordering::Relaxed),
            self.client.unprocessable_spans.load(Ordering::Relaxed),
        )
    }

    /// The stats this exporter feeds (for the processor's worker and the pipeline's flush).
    pub(crate) fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }
}

/// Why a payload did not reach the Agent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// No answer: refused, unreachable, timed out.
    #[error("no answer from the agent")]
    Send(#[source] reqwest::Error),
    /// The Agent answered with an error status.
    #[error("agent answered {status}: {body}")]
    Status {
        /// Its status.
        status: reqwest::StatusCode,
        /// The start of its answer.
        body: String,
    },
}

/// Where payloads go: the Agent over HTTP ([`HttpTransport`]), or a capture in tests.
pub(crate) trait Transport: Send + Sync + std::fmt::Debug {
    /// Posts `body` with `headers` to `url` and returns the Agent's (2xx) answer.
    fn post(
        &self,
        url: &http::Uri,
        headers: &http::HeaderMap,
        body: Vec<u8>,
    ) -> Result<Answer, TransportError>;

    /// Gets `url` (the Agent's `/info`) and returns its (2xx) answer.
    fn get(&self, url: &http::Uri) -> Result<Answer, TransportError>;
}

/// The Agent's answer to a post.
#[derive(Debug)]
pub(crate) struct Answer {
    /// Its HTTP status (2xx).
    pub status: u16,
    /// Its body: the sampling rates by service.
    pub body: Vec<u8>,
}

/// A blocking client with timeouts, over TCP or the Agent's Unix socket.
#[derive(Debug)]
pub(crate) struct HttpTransport {
    client: reqwest::blocking::Client,
}

impl HttpTransport {
    fn new(timeout: Duration, socket: Option<std::path::PathBuf>) -> Result<Self, ExporterError> {
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
        .map_err(|_| ExporterError::AgentClientPanicked)?
        .map_err(ExporterError::AgentClient)?;
        Ok(Self { client })
    }
}

impl HttpTransport {
    /// The answer of a sent request: its body when 2xx, else an error with its start.
    fn answer(
        sent: Result<reqwest::blocking::Response, reqwest::Error>,
    ) -> Result<Answer, TransportError> {
        let response = sent.map_err(TransportError::Send)?;
        let status = response.status();
        if status.is_success() {
            // An unreadable body counts as empty.
            let body = response.bytes().map(|b| b.to_vec()).unwrap_or_default();
            return Ok(Answer {
                status: status.as_u16(),
                body,
            });
        }
        let body: String = response
            .text()
            .unwrap_or_default()
            .chars()
            .take(512)
            .collect();
        Err(TransportError::Status { status, body })
    }
}

impl Transport for HttpTransport {
    fn get(&self, url: &http::Uri) -> Result<Answer, TransportError> {
        Self::answer(self.client.get(url.to_string()).send())
    }

    fn post(
        &self,
        url: &http::Uri,
        headers: &http::HeaderMap,
        body: Vec<u8>,
    ) -> Result<Answer, TransportError> {
        Self::answer(
            self.client
                .post(url.to_string())
                .headers(headers.clone())
                .body(body)
                .send(),
        )
    }
}

/// The HTTP client given to `opentelemetry-datadog`: applies the batch's plan to the payload,
/// then posts it.
#[derive(Debug)]
pub(crate) struct AgentClient {
    /// Where the payload goes.
    transport: Arc<dyn Transport>,
    /// Where the Agent's sampling rates (its answer to each post) go.
    rates: Arc<AgentRateTable>,
    /// Chunks (and their spans) dropped here since the last payload, for its headers.
    dropped_traces: AtomicU64,
    dropped_spans: AtomicU64,
    /// `DD_TRACE_DEBUG`: log every payload sent and every failure.
    debug: bool,
    /// Whether the last send failed, so that an outage is logged once, not per batch.
    failing: AtomicBool,
    /// Spans lost because the agent could not be reached or refused them.
    lost_spans: AtomicU64,
    /// Spans dropped because their payload could not be processed.
    unprocessable_spans: AtomicU64,
}

/// The crate takes its client by value; this shares ours with [`Exporter`].
#[derive(Debug)]
struct SharedClient(Arc<AgentClient>);

impl AgentClient {
    /// Counts chunks dropped here; the next payload's headers report them.
    fn count_dropped(&self, traces: u64, spans: u64) {
        self.dropped_traces.fetch_add(traces, Ordering::Relaxed);
        self.dropped_spans.fetch_add(spans, Ordering::Relaxed);
    }

    /// The headers of a payload whose spans went through the stats: the Agent then computes
    /// none itself, and weighs its rates with the chunks dropped here.
    fn add_stats_headers(&self, headers: &mut http::HeaderMap) {
        headers.insert(
            "Datadog-Client-Computed-Stats",
            http::HeaderValue::from_static("yes"),
        );
        headers.insert(
            "Datadog-Client-Computed-Top-Level",
            http::HeaderValue::from_static("yes"),
        );
        let traces = self.dropped_traces.swap(0, Ordering::Relaxed);
        let spans = self.dropped_spans.swap(0, Ordering::Relaxed);
        headers.insert(
            "Datadog-Client-Dropped-P0-Traces",
            http::HeaderValue::from(traces),
        );
        headers.insert(
            "Datadog-Client-Dropped-P0-Spans",
            http::HeaderValue::from(spans),
        );
    }

    fn post(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (mut parts, body) = request.into_parts();
        // The plan travels with the export that encoded this payload (see [`PLAN`]).
        let plan = PLAN
            .try_with(|plan| plan.borrow_mut().take())
            .ok()
            .flatten();

        let rewritten = match plan {
            Some(mut plan) => {
                let mut out = Vec::new();
                let computed_stats = plan.computed_stats;
                payload::rewrite(&body, &mut plan, &mut out)
                    .map(|spans| ((out, spans), computed_stats))
                    .map_err(|e| (crate::error_chain(&e), plan.len()))
            }
            None => Err(("no export plan for this payload".to_string(), 0)),
        };
        let ((body, spans), computed_stats) = match rewritten {
            Ok(rewritten) => rewritten,
            Err((error, spans)) => {
                self.drop_unprocessable(spans, &error);
                return Ok(Response::new(Bytes::new()));
            }
        };
        if computed_stats {
            self.add_stats_headers(&mut parts.headers);
        }
        match self.transport.post(&parts.uri, &parts.headers, body) {
            Ok(answer) => {
                // A malformed answer changes nothing and is logged once (by the table).
                let _ = self.rates.update(&answer.body);
                if self.failing.swap(false, Ordering::Relaxed) {
                    let lost_spans_total = self.lost_spans.load(Ordering::Relaxed);
                    tracing::info!(url = %parts.uri, lost_spans_total, "the Datadog Agent accepts traces again");
                }
                if self.debug {
                    let status = answer.status;
                    tracing::info!(url = %parts.uri, spans, status, "sent spans to the Datadog Agent");
                }
            }
            Err(error) => self.report_failure(&parts.uri, spans, &crate::error_chain(&error)),
        }
        // A failure was counted and logged above; reporting it to the processor's worker as well
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

    /// Counts the spans of a payload that could not be processed; logs the first time (every
    /// time with `DD_TRACE_DEBUG`).
    fn drop_unprocessable(&self, spans: usize, error: &str) {
        let before = self
            .unprocessable_spans
            .fetch_add(spans as u64, Ordering::Relaxed);
        if before == 0 || self.debug {
            let dropped_spans_total = before + spans as u64;
            tracing::error!(error, dropped_spans_total, "a trace payload could not be processed and was dropped (is the opentelemetry-datadog version the one this project was built for?)");
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for SharedClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.0.post(request)
    }
}

#[cfg(test)]
mod tests {
    //! The golden test: real `SpanData` through the real `DatadogExporter` (the crate's own
    //! encoding) and the payload pass, captured where the HTTP post would go.
    use super::*;
    use crate::chunks::ChunkBuffer;
    use crate::env::Env;
    use crate::processor::{ChunkProcessor, ProcessorSettings};
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState};
    use opentelemetry::Context;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanProcessor};
    use rmpv::Value as Mp;
    use std::time::{Instant, SystemTime};

    /// Keeps what would have been posted.
    #[derive(Debug, Default)]
    struct Capture {
        posts: Mutex<Vec<(http::Uri, http::HeaderMap, Vec<u8>)>>,
        /// How long each post takes (a slow Agent).
        delay: Option<Duration>,
        /// What `/info` answers (`None`: 404, an old Agent).
        info: Option<String>,
    }

    impl Transport for Capture {
        fn get(&self, _url: &http::Uri) -> Result<Answer, TransportError> {
            match &self.info {
                Some(info) => Ok(Answer {
                    status: 200,
                    body: info.as_bytes().to_vec(),
                }),
                None => Err(TransportError::Status {
                    status: reqwest::StatusCode::NOT_FOUND,
                    body: String::new(),
                }),
            }
        }

        fn post(
            &self,
            url: &http::Uri,
            headers: &http::HeaderMap,
            body: Vec<u8>,
        ) -> Result<Answer, TransportError> {
            if let Some(delay) = self.delay {
                std::thread::sleep(delay);
            }
            lock(&self.posts).push((url.clone(), headers.clone(), body));
            Ok(Answer {
                status: 200,
                body: br#"{"rate_by_service":{"service:notes,env:Dev":0.5}}"#.to_vec(),
            })
        }
    }

    const TRACE: u128 = 0x6b058a5d_00000000_493c264c_32613b9e;

    fn span(
        id: u64,
        parent: u64,
        remote: bool,
        state: &str,
        name: &str,
        attributes: Vec<KeyValue>,
    ) -> SpanData {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(TRACE),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                state.parse::<TraceState>().unwrap_or_default(),
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: remote,
            span_kind: if parent == 0 || remote {
                SpanKind::Server
            } else {
                SpanKind::Client
            },
            name: name.to_string().into(),
            start_time: start,
            end_time: start + Duration::from_millis(3),
            attributes,
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    fn exporter(capture: Arc<Capture>) -> Exporter {
        let env = Env::from_pairs([
            ("DD_SERVICE", "notes"),
            ("DD_ENV", "Dev"),
            ("DD_VERSION", "1.0"),
            ("DD_TAGS", "team:apm"),
            ("DD_TRACE_AGENT_URL", "http://127.0.0.1:9"),
        ]);
        let config = Config::from_env(&env, "notes").unwrap();
        let rates = Arc::new(AgentRateTable::new());
        build_exporter(&config, capture, rates).unwrap()
    }

    /// Waits (at most 5 s) until `exporter` has read the Agent's `/info` and computes stats.
    fn wait_for_stats(exporter: &Exporter) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !exporter.stats.enabled() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(exporter.stats.enabled(), "/info was not read");
    }

    /// What the processor does with ended spans, on the test's thread: chunks assembled,
    /// admitted, sent.
    struct Harness {
        exporter: Exporter,
        chunks: Mutex<ChunkBuffer>,
    }

    impl Harness {
        fn new(capture: Arc<Capture>) -> Self {
            Self {
                exporter: exporter(capture),
                chunks: Mutex::new(ChunkBuffer::new(100, Duration::from_secs(10))),
            }
        }

        /// Counts `spans` as started.
        fn start(&self, spans: &[&SpanData]) {
            for span in spans {
                lock(&self.chunks).start(span.span_context.trace_id(), Instant::now);
            }
        }

        /// Starts and ends `spans`; sends the chunks that are ready.
        fn export(&self, spans: Vec<SpanData>) {
            self.start(&spans.iter().collect::<Vec<_>>());
            self.end(spans);
        }

        /// Ends `spans` (started before); sends the chunks that are ready.
        fn end(&self, spans: Vec<SpanData>) {
            let mut ready = Vec::new();
            for span in spans {
                lock(&self.chunks).push(span, Instant::now, &mut ready);
            }
            let admitted: Vec<Chunk> = ready
                .into_iter()
                .filter_map(|c| self.exporter.admit(c))
                .collect();
            futures::executor::block_on(self.exporter.send(admitted)).unwrap();
        }
    }

    /// The real processor (its worker thread) over the exporter, in a tracer provider.
    fn provider(capture: Arc<Capture>, max_age: Duration) -> SdkTracerProvider {
        let mut settings = ProcessorSettings::new(100, Duration::from_millis(50));
        settings.max_age = max_age;
        settings.tick = Duration::from_millis(50);
        let processor = ChunkProcessor::new(exporter(capture), settings, None).unwrap();
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build()
    }

    /// A local root continuing a remote parent with the `dd` state `state`, left open (the
    /// returned context holds it: dropping it ends the root), and a child of it, ended.
    fn open_root_with_an_ended_child(provider: &SdkTracerProvider, state: &str) -> Context {
        use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _, TracerProvider as _};
        let tracer = provider.tracer("test");
        let remote = SpanContext::new(
            TraceId::from(TRACE),
            SpanId::from(99),
            TraceFlags::SAMPLED,
            true,
            state.parse::<TraceState>().unwrap(),
        );
        let cx = Context::new().with_remote_span_context(remote);
        let root = tracer.start_with_context("root", &cx);
        let cx = cx.with_span(root);
        tracer.start_with_context("work", &cx).end();
        cx
    }

    /// The payload as text: one line per span (ordered by span id), then its sorted tags and
    /// metrics; fails on bytes after the payload.
    fn render(body: &[u8]) -> String {
        let mut rd = body;
        let value = rmpv::decode::read_value(&mut rd).expect("msgpack");
        assert!(rd.is_empty(), "{} bytes after the payload", rd.len());
        let root = value.as_array().unwrap();
        let strings: Vec<&str> = root[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let s = |v: &Mp| strings[v.as_u64().unwrap() as usize].to_string();
        let mut out = String::new();
        for (t, trace) in root[1].as_array().unwrap().iter().enumerate() {
            let mut spans: Vec<&Mp> = trace.as_array().unwrap().iter().collect();
            spans.sort_by_key(|f| f.as_array().unwrap()[4].as_u64());
            for span in spans {
                let f = span.as_array().unwrap();
                assert_eq!(f.len(), 12);
                out.push_str(&format!(
                    "trace {t} span {} parent {} trace_id {} start {} duration {} error {}: {} {} {} type={}\n",
                    f[4], f[5], f[3], f[6], f[7], f[8], s(&f[0]), s(&f[1]), s(&f[2]), s(&f[11])
                ));
                let mut meta: Vec<String> = f[9]
                    .as_map()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| format!("  meta {}={}\n", s(k), s(v)))
                    .collect();
                meta.sort();
                let mut metrics: Vec<String> = f[10]
                    .as_map()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| format!("  metric {}={}\n", s(k), v.as_f64().unwrap()))
                    .collect();
                metrics.sort();
                out.extend(meta);
                out.extend(metrics);
            }
        }
        out
    }

    const GOLDEN: &str = "\
trace 0 span 1 parent 99 trace_id 5277134972075981726 start 1700000000000000000 duration 3000000 error 0: notes actix_web.request GET /notes type=web
  meta _dd.origin=rum
  meta _dd.p.dm=-4
  meta _dd.p.tid=6b058a5d00000000
  meta env=Dev
  meta http.status_code=200
  meta language=rust
  meta span.kind=server
  meta team=apm
  meta version=1.0
  metric _sampling_priority_v1=2
trace 0 span 2 parent 1 trace_id 5277134972075981726 start 1700000000000000000 duration 3000000 error 0: postgres postgres.query SELECT 1 type=sql
  meta _dd.base_service=notes
  meta _dd.origin=rum
  meta db.system=postgresql
  meta env=Dev
  meta span.kind=client
  meta team=apm
  metric db.row_count=3
  metric network.destination.port=5432
";

    #[test]
    fn the_agents_answer_reaches_the_rate_table() {
        let env = Env::from_pairs([
            ("DD_ENV", "Dev"),
            ("DD_TRACE_AGENT_URL", "http://127.0.0.1:9"),
        ]);
        let config = Config::from_env(&env, "notes").unwrap();
        let rates = Arc::new(AgentRateTable::new());
        let capture = Arc::new(Capture::default());
        let exporter = build_exporter(&config, capture.clone(), rates.clone()).unwrap();
        assert_eq!(rates.rate_for("service:notes,env:Dev"), None);
        let root = span(1, 0, false, "dd=s:1", "GET /", vec![]);
        let chunk = ChunkBuffer::new(10, Duration::from_secs(10)).add(vec![root], Instant::now());
        futures::executor::block_on(exporter.send(chunk)).unwrap();
        assert_eq!(lock(&capture.posts).len(), 1);
        assert_eq!(rates.rate_for("service:notes,env:Dev"), Some(0.5));
    }

    #[test]
    fn golden_payload_through_the_real_exporter() {
        let capture = Arc::new(Capture::default());
        let harness = Harness::new(capture.clone());
        let state = "dd=s:2;o:rum;t.dm:-4";
        let child = span(
            2,
            1,
            false,
            state,
            "SELECT 1",
            vec![
                KeyValue::new(OPERATION_NAME, "postgres.query"),
                KeyValue::new(SERVICE_NAME, "postgres"),
                KeyValue::new("span.type", "sql"),
                KeyValue::new("db.system", "postgresql"),
                KeyValue::new("db.row_count", 3i64),
                KeyValue::new("network.destination.port", 5432i64),
            ],
        );
        let root = span(
            1,
            99,
            true,
            state,
            "GET /notes",
            vec![
                KeyValue::new(OPERATION_NAME, "actix_web.request"),
                KeyValue::new("span.type", "web"),
                KeyValue::new("http.status_code", "200"),
            ],
        );
        // The child ends first: it waits for its root.
        harness.start(&[&root, &child]);
        harness.end(vec![child]);
        assert!(
            lock(&capture.posts).is_empty(),
            "a chunk without its root was sent"
        );
        harness.end(vec![root]);
        let posts = lock(&capture.posts);
        assert_eq!(posts.len(), 1);
        let (url, headers, body) = &posts[0];
        assert_eq!(url.to_string(), "http://127.0.0.1:9/v0.5/traces");
        assert_eq!(headers["x-datadog-trace-count"], "1");
        assert_eq!(headers["content-type"], "application/msgpack");
        assert_eq!(render(body), GOLDEN);
    }

    /// A span made with the OpenTelemetry API, through the real exporter: operation name from
    /// its kind and conventions, reserved attributes as fields, arrays flattened, events as
    /// JSON, error tags from its exception, and the stats see the same operation name.
    #[test]
    fn an_opentelemetry_api_span_goes_out_with_datadogs_semantics() {
        use opentelemetry::Array;
        let capture = Arc::new(Capture {
            info: Some(r#"{"endpoints":["/v0.4/traces","/v0.6/stats"]}"#.into()),
            ..Capture::default()
        });
        let harness = Harness::new(capture.clone());
        wait_for_stats(&harness.exporter);
        let mut root = span(
            1,
            0,
            false,
            "dd=s:1",
            "process order",
            vec![
                KeyValue::new("messaging.system", "Kafka"),
                KeyValue::new("messaging.operation", "Receive"),
                KeyValue::new("span.type", "worker"),
                KeyValue::new("analytics.event", true),
                KeyValue::new("http.response.status_code", 200i64),
                KeyValue::new("ids", Value::Array(Array::I64(vec![3, 4]))),
            ],
        );
        root.span_kind = SpanKind::Consumer;
        root.status = Status::error("failed");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        root.events.events = vec![opentelemetry::trace::Event::new(
            "exception",
            at,
            vec![
                KeyValue::new("exception.type", "io::Error"),
                KeyValue::new("exception.message", "boom"),
            ],
            0,
        )];
        harness.export(vec![root]);
        harness.exporter.stats.flush(true);
        let posts = lock(&capture.posts);
        assert_eq!(posts.len(), 2, "a trace payload and a stats payload");
        let (url, _, body) = &posts[1];
        assert_eq!(url.path(), "/v0.6/stats");
        let stats = rmpv::decode::read_value(&mut body.as_slice()).unwrap();
        let entry = &stats["Stats"][0]["Stats"][0];
        assert_eq!(entry["Name"].as_str(), Some("kafka.receive"), "{stats}");
        assert_eq!(entry["Type"].as_str(), Some("worker"), "{stats}");
        assert_eq!(entry["HTTPStatusCode"].as_u64(), Some(200), "{stats}");
        let text = render(&posts[0].2);
        for line in [
            "error 1: notes kafka.receive process order type=worker",
            "  meta error.message=boom",
            "  meta error.type=io::Error",
            r#"  meta events=[{"attributes":{"exception.message":"boom","exception.type":"io::Error"},"name":"exception","time_unix_nano":1700000000000000000}]"#,
            "  meta http.status_code=200",
            "  meta span.kind=consumer",
            "  meta messaging.system=Kafka",
            "  metric _dd1.sr.eausr=1",
            "  metric ids.0=3",
            "  metric ids.1=4",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
        for absent in ["analytics.event", "http.response", "span.type=", "meta ids"] {
            assert!(!text.contains(absent), "{absent} in:\n{text}");
        }
    }

    /// A trace continued without a parent (Datadog headers with parent 0) goes out with parent
    /// 0; the last Datadog parent and baggage tags carried in the dd state go on the root.
    #[test]
    fn a_stand_in_parent_goes_out_as_none_with_the_extracted_root_tags() {
        let capture = Arc::new(Capture::default());
        let harness = Harness::new(capture.clone());
        let state = "dd=s:1;o:synthetics;n:1;p:000000000000000a;b.user.id:doggo";
        let no_parent = u64::from_be_bytes(crate::propagation::NO_PARENT.to_bytes());
        let root = span(1, no_parent, true, state, "GET /", vec![]);
        let child = span(2, 1, false, state, "SELECT 1", vec![]);
        harness.export(vec![child, root]);
        let posts = lock(&capture.posts);
        let out = render(&posts[0].2);
        assert!(out.contains("span 1 parent 0 "), "{out}");
        assert!(out.contains("span 2 parent 1 "), "{out}");
        assert_eq!(
            out.matches("meta _dd.parent_id=000000000000000a").count(),
            1,
            "{out}"
        );
        assert_eq!(
            out.matches("meta baggage.user.id=doggo").count(),
            1,
            "{out}"
        );
    }

    /// With an Agent that takes stats and allows it, every chunk is counted in the stats and
    /// a priority-0 chunk without an error is not sent; the payload says so in its headers.
    #[test]
    fn p0_chunks_are_counted_then_dropped_when_the_agent_allows_it() {
        let capture = Arc::new(Capture {
            info: Some(
                r#"{"endpoints":["/v0.4/traces","/v0.6/stats"],"client_drop_p0s":true}"#.into(),
            ),
            ..Capture::default()
        });
        let harness = Harness::new(capture.clone());
        wait_for_stats(&harness.exporter);
        let dropped = span(1, 0, false, "dd=s:0;t.dm:-1", "GET /", vec![]);
        let kept = span(2, 0, false, "dd=s:1;t.dm:-1", "GET /", vec![]);
        let mut failed = span(3, 0, false, "dd=s:0;t.dm:-1", "GET /", vec![]);
        failed.status = Status::error("boom");
        let mut batch = vec![dropped, kept, failed];
        for (i, s) in batch.iter_mut().enumerate() {
            // Three traces.
            s.span_context = SpanContext::new(
                TraceId::from(TRACE + i as u128),
                s.span_context.span_id(),
                s.span_context.trace_flags(),
                false,
                s.span_context.trace_state().clone(),
            );
        }
        harness.export(batch);
        {
            let posts = lock(&capture.posts);
            assert_eq!(posts.len(), 1);
            let (_, headers, body) = &posts[0];
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            assert_eq!(header("Datadog-Client-Computed-Stats"), Some("yes"));
            assert_eq!(header("Datadog-Client-Dropped-P0-Traces"), Some("1"));
            assert_eq!(header("Datadog-Client-Dropped-P0-Spans"), Some("1"));
            let text = render(body);
            assert!(
                text.contains("span 2 parent 0") && text.contains("span 3 parent 0"),
                "{text}"
            );
            assert!(
                !text.contains("span 1 parent 0"),
                "the P0 chunk was sent:\n{text}"
            );
        }
        harness.exporter.stats.flush(true);
        let posts = lock(&capture.posts);
        let (url, _, body) = posts.last().expect("a stats payload");
        assert_eq!(url.path(), "/v0.6/stats");
        let value = rmpv::decode::read_value(&mut body.as_slice()).unwrap();
        let entry = &value["Stats"][0]["Stats"][0];
        assert_eq!(entry["Hits"].as_u64(), Some(3), "{value}");
        assert_eq!(entry["Errors"].as_u64(), Some(1), "{value}");
        assert_eq!(entry["TopLevelHits"].as_u64(), Some(3), "{value}");
    }

    /// A keep or drop by hand on any span decides the chunk: priority 2 / -1, decision maker
    /// `-4`, the sampler's rates gone; the root, which carries the chunk's facts, goes first.
    #[test]
    fn a_manual_decision_replaces_the_samplers() {
        for (mark, priority) in [(MANUAL_KEEP, "2"), (MANUAL_DROP, "-1")] {
            let capture = Arc::new(Capture::default());
            let harness = Harness::new(capture.clone());
            let child = span(
                2,
                1,
                false,
                "dd=s:0;t.dm:-1",
                "work",
                vec![KeyValue::new(mark, "true")],
            );
            let root = span(
                1,
                0,
                false,
                "dd=s:0;t.dm:-1",
                "GET /",
                vec![KeyValue::new(AGENT_PSR, 0.5)],
            );
            harness.export(vec![child, root]);
            let posts = lock(&capture.posts);
            let text = render(&posts[0].2);
            let first = text
                .lines()
                .find(|l| l.starts_with("trace"))
                .unwrap_or_default();
            assert!(
                first.contains("span 1 parent 0"),
                "the root is not first:\n{text}"
            );
            for line in [
                "meta _dd.p.dm=-4".to_string(),
                format!("metric _sampling_priority_v1={priority}"),
            ] {
                assert!(text.contains(&line), "{line} missing in:\n{text}");
            }
            for absent in ["_dd.agent_psr", "manual."] {
                assert!(!text.contains(absent), "{absent} in:\n{text}");
            }
        }
    }

    #[test]
    fn a_chunk_whose_root_never_ends_goes_out_partial_at_shutdown_with_the_chunk_tags() {
        let capture = Arc::new(Capture::default());
        let provider = provider(capture.clone(), Duration::from_secs(60));
        let _root = open_root_with_an_ended_child(&provider, "dd=s:-1;t.dm:-3");
        provider.force_flush().unwrap();
        assert!(lock(&capture.posts).is_empty(), "sent before its root");
        provider
            .shutdown_with_timeout(Duration::from_secs(1))
            .unwrap();
        let posts = lock(&capture.posts);
        assert_eq!(posts.len(), 1);
        let text = render(&posts[0].2);
        for line in [
            " work type=",
            "meta _dd.p.dm=-3",
            "meta language=rust",
            "metric _sampling_priority_v1=-1",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }

    #[test]
    fn an_unprocessable_payload_is_dropped_and_counted() {
        let capture = Arc::new(Capture::default());
        let exporter = exporter(capture.clone());
        // A plan that does not match the payload (as if the crate's layout had changed).
        let mut plan = BatchPlan::default();
        plan.add_span(42, vec![]);
        let root = span(1, 0, false, "dd=s:1", "GET /", vec![]);
        let core = &exporter;
        futures::executor::block_on(
            PLAN.scope(RefCell::new(Some(plan)), core.inner.export(vec![root])),
        )
        .unwrap();
        assert!(lock(&capture.posts).is_empty(), "sent as built");
        assert_eq!(core.client.unprocessable_spans.load(Ordering::Relaxed), 1);
        // No plan at all.
        let root = span(1, 0, false, "dd=s:1", "GET /", vec![]);
        futures::executor::block_on(core.inner.export(vec![root])).unwrap();
        assert!(lock(&capture.posts).is_empty());
    }

    /// A chunk whose root never ends leaves as a partial chunk after its age, although no other
    /// span comes (an idle service); the timer, not the next batch, sends it.
    #[test]
    fn a_partial_chunk_leaves_after_its_age_on_an_idle_exporter() {
        let capture = Arc::new(Capture::default());
        let provider = provider(capture.clone(), Duration::from_millis(300));
        let _root = open_root_with_an_ended_child(&provider, "dd=s:1");
        assert!(
            lock(&capture.posts).is_empty(),
            "sent before its root or its age"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&capture.posts).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let posts = lock(&capture.posts);
        assert_eq!(posts.len(), 1, "the partial chunk was not sent within 5 s");
        assert!(render(&posts[0].2).contains(" work type="));
    }

    /// A queue filled by a slow Agent loses traces, not hits: every chunk is counted in the
    /// stats on the thread that ends it, before the queue.
    #[test]
    fn a_full_queue_loses_traces_but_no_hits() {
        let capture = Arc::new(Capture {
            info: Some(r#"{"endpoints":["/v0.4/traces","/v0.6/stats"]}"#.into()),
            delay: Some(Duration::from_millis(200)),
            ..Capture::default()
        });
        let mut settings = ProcessorSettings::new(4, Duration::from_millis(10));
        settings.max_batch = 1;
        let processor = ChunkProcessor::new(exporter(capture.clone()), settings, None).unwrap();
        wait_for_stats(processor.exporter());
        let requests = 40u64;
        for i in 0..requests {
            let mut root = span(1, 0, false, "dd=s:1", "GET /", vec![]);
            root.span_context = SpanContext::new(
                TraceId::from(TRACE + u128::from(i)),
                SpanId::from(i + 1),
                TraceFlags::SAMPLED,
                false,
                root.span_context.trace_state().clone(),
            );
            processor.on_end(root);
        }
        processor
            .shutdown_with_timeout(Duration::from_secs(30))
            .unwrap();
        let posts = lock(&capture.posts);
        let sent: usize = posts
            .iter()
            .filter(|(url, _, _)| url.path() == "/v0.5/traces")
            .map(|(_, headers, _)| {
                headers["x-datadog-trace-count"]
                    .to_str()
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            })
            .sum();
        assert!(
            sent < requests as usize,
            "the queue never filled ({sent} sent)"
        );
        let hits: u64 = posts
            .iter()
            .filter(|(url, _, _)| url.path() == "/v0.6/stats")
            .map(|(_, _, body)| {
                let value = rmpv::decode::read_value(&mut body.as_slice()).unwrap();
                value["Stats"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|bucket| bucket["Stats"].as_array().unwrap().clone())
                    .map(|entry| entry["Hits"].as_u64().unwrap())
                    .sum::<u64>()
            })
            .sum();
        assert_eq!(hits, requests, "hits lost with the traces");
    }

    /// Shutdown waits for a slow Agent at most its timeout.
    #[test]
    fn shutdown_honours_its_timeout() {
        let capture = Arc::new(Capture {
            delay: Some(Duration::from_secs(5)),
            ..Capture::default()
        });
        let provider = provider(capture.clone(), Duration::from_secs(60));
        let _root = open_root_with_an_ended_child(&provider, "dd=s:1");
        let started = Instant::now();
        let result = provider.shutdown_with_timeout(Duration::from_millis(200));
        assert!(
            matches!(&result, Err(e) if e.to_string().contains("Timeout")),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
