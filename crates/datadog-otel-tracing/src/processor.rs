//! The span processor of the project's pipeline: trace chunks assembled, counted in the stats
//! and (at priority 0) dropped on the threads that end the spans; what is left queued for one
//! worker thread that sends it to the Agent.
//!
//! ```text
//! span starts ──► ChunkBuffer (shard by trace id): the trace's open spans counted
//! span ends ──► ChunkBuffer ──► the trace's last open span ended: Exporter::admit
//!   (request thread)                                   ├─ stats: counted (always)
//!                                                      ├─ P0, Agent allows: dropped, counted
//!                                                      └─ else: bounded queue ──► worker
//! worker: every flush interval, or at a full batch: Exporter::send (map, encode, post);
//!         every tick: chunks whose root never ended leave partial, closed stats buckets go.
//! ```
//!
//! Counting a chunk before the queue means the stats see every span the pipeline recorded:
//! a full queue (an Agent slower than the traffic) loses traces, never hits. A chunk dropped at
//! priority 0 costs a hash lookup, a few pushes and the stats' additions; nothing of it crosses
//! a thread.

use crate::chunks::{Chunk, ChunkBuffer};
use crate::datadog::{lock, Exporter};
use crate::health::{self, HealthMetrics, Totals};
use opentelemetry::trace::{Span as _, TraceId};
use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the spans of a chunk wait for its root before going out as a partial chunk.
const CHUNK_MAX_AGE: Duration = Duration::from_secs(10);

/// How often the worker looks for chunks that waited [`CHUNK_MAX_AGE`] and closed stats
/// buckets.
const TICK: Duration = Duration::from_secs(1);

/// How long [`SpanProcessor::force_flush`] waits for the worker.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Independent chunk buffers: spans of different traces rarely wait on each other's lock.
const SHARDS: usize = 16;

/// How the processor is sized and timed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessorSettings {
    /// At most this many spans queued for the worker, and this many waiting for their root
    /// (`DD_TRACE_SPAN_QUEUE_SIZE`).
    pub queue_size: usize,
    /// A batch leaves at least this often (`DD_TRACE_FLUSH_INTERVAL_MS`).
    pub flush_interval: Duration,
    /// ... or once it holds this many spans.
    pub max_batch: usize,
    /// How long a chunk waits for its root.
    pub max_age: Duration,
    /// How often the worker looks for aged chunks.
    pub tick: Duration,
    /// Partial flush at this many ended spans of an open trace (`None`: off).
    pub partial_flush_min_spans: Option<usize>,
}

impl ProcessorSettings {
    /// The settings for `queue_size` and `flush_interval`, the rest as Datadog's tracers do
    /// (partial flush off).
    pub(crate) fn new(queue_size: usize, flush_interval: Duration) -> Self {
        Self {
            partial_flush_min_spans: None,
            queue_size,
            flush_interval,
            // Small batches: each send holds a core for less time (a shorter latency tail).
            max_batch: queue_size.clamp(1, 256),
            max_age: CHUNK_MAX_AGE,
            tick: TICK,
        }
    }
}

/// What the worker is asked.
enum Work {
    /// A chunk to send.
    Chunk(Chunk),
    /// Send what is queued now; answer when sent.
    Flush(SyncSender<OTelSdkResult>),
    /// Send everything (partial chunks too), flush the stats, stop; answer when done.
    Shutdown(SyncSender<OTelSdkResult>),
    /// Look at the orders now (sent on the chunks' queue after an order).
    Wake,
}

/// What the processor and its worker share.
#[derive(Debug)]
struct Shared {
    exporter: Exporter,
    shards: Vec<Mutex<ChunkBuffer>>,
    /// Spans queued for the worker now.
    queued_spans: AtomicUsize,
    max_queued_spans: usize,
    /// Spans dropped because the queue was full.
    lost_spans: AtomicU64,
}

impl Shared {
    fn shard(&self, trace: TraceId) -> &Mutex<ChunkBuffer> {
        // The last byte of a trace id is random.
        let last = trace.to_bytes()[15];
        &self.shards[usize::from(last) % self.shards.len()]
    }

    /// The chunks `take` takes from each shard, admitted (each shard's lock released first).
    fn admitted(&self, take: impl Fn(&mut ChunkBuffer) -> Vec<Chunk>) -> Vec<Chunk> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let taken = take(&mut lock(shard));
            out.extend(taken.into_iter().filter_map(|c| self.exporter.admit(c)));
        }
        out
    }

    /// Every chunk still open past its age, admitted (on the worker).
    fn expired(&self, now: Instant) -> Vec<Chunk> {
        self.admitted(|buffer| buffer.expired(now))
    }

    /// Every waiting chunk as a partial chunk, admitted (at shutdown).
    fn drained(&self) -> Vec<Chunk> {
        self.admitted(ChunkBuffer::drain)
    }
}

/// The span processor (see the module docs).
#[derive(Debug)]
pub(crate) struct ChunkProcessor {
    shared: Arc<Shared>,
    queue: SyncSender<Work>,
    /// Orders to the worker that must not wait behind a full queue of chunks.
    orders: SyncSender<Work>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl ChunkProcessor {
    /// Starts the worker thread for `exporter`, which also sends `health` metrics (when on).
    pub(crate) fn new(
        exporter: Exporter,
        settings: ProcessorSettings,
        health: Option<HealthMetrics>,
    ) -> std::io::Result<Self> {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(
                    ChunkBuffer::new((settings.queue_size / SHARDS).max(1), settings.max_age)
                        .with_partial_flush(settings.partial_flush_min_spans),
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            exporter,
            shards,
            queued_spans: AtomicUsize::new(0),
            max_queued_spans: settings.queue_size,
            lost_spans: AtomicU64::new(0),
        });
        // Bounded by spans (`queued_spans`); the channel's own bound only backs that up.
        let (queue, chunks) = mpsc::sync_channel(settings.queue_size.max(1));
        let (orders, ordered) = mpsc::sync_channel(4);
        let worker = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("dd-trace-export".into())
                .spawn(move || work(&shared, &chunks, &ordered, settings, health))?
        };
        Ok(Self {
            shared,
            queue,
            orders,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// The exporter (tests).
    #[cfg(test)]
    pub(crate) fn exporter(&self) -> &Exporter {
        &self.shared.exporter
    }

    /// Queues an admitted chunk for the worker; a full queue drops it (it was counted in the
    /// stats already), logged the first time.
    fn enqueue(&self, chunk: Chunk) {
        let spans = chunk.spans.len();
        let max = self.shared.max_queued_spans;
        // Room reserved only when there is some: a chunk that fits is never refused because
        // another thread's reservation was counted for a moment.
        let full = self
            .shared
            .queued_spans
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                (queued + spans <= max).then_some(queued + spans)
            })
            .is_err();
        let refused = full || {
            match self.queue.try_send(Work::Chunk(chunk)) {
                Ok(()) => false,
                Err(TrySendError::Full(_)) => true,
                // Ended after the shutdown (the worker is gone): nothing can send it any more.
                Err(TrySendError::Disconnected(_)) => {
                    self.shared.queued_spans.fetch_sub(spans, Ordering::Relaxed);
                    return;
                }
            }
        };
        if refused {
            if !full {
                self.shared.queued_spans.fetch_sub(spans, Ordering::Relaxed);
            }
            let before = self
                .shared
                .lost_spans
                .fetch_add(spans as u64, Ordering::Relaxed);
            if before == 0 {
                tracing::warn!(
                    dropped_spans = spans,
                    max_queued_spans = self.shared.max_queued_spans,
                    "the trace export queue is full: traces are dropped (their stats are kept); \
                     is the Datadog Agent slow? DD_TRACE_SPAN_QUEUE_SIZE sets the queue's size"
                );
            }
        }
    }

    /// Sends `order` to the worker and waits for its answer at most `timeout`.
    fn ask(
        &self,
        order: impl FnOnce(SyncSender<OTelSdkResult>) -> Work,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (answer, answered) = mpsc::sync_channel(1);
        match self.orders.try_send(order(answer)) {
            // A full queue of chunks keeps the worker awake anyway.
            Ok(()) => drop(self.queue.try_send(Work::Wake)),
            Err(TrySendError::Disconnected(_)) => return Err(OTelSdkError::AlreadyShutdown),
            Err(TrySendError::Full(_)) => {
                return Err(OTelSdkError::InternalFailure(
                    "the trace export worker has too many orders pending".into(),
                ))
            }
        }
        match answered.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(OTelSdkError::InternalFailure(
                "the trace export worker stopped".into(),
            )),
        }
    }
}

impl SpanProcessor for ChunkProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        crate::links::add_extracted_links(span, cx);
        let trace = span.span_context().trace_id();
        lock(self.shared.shard(trace)).start(trace, Instant::now);
    }

    fn on_end(&self, span: SpanData) {
        let mut ready = Vec::new();
        let trace = span.span_context.trace_id();
        lock(self.shared.shard(trace)).push(span, Instant::now, &mut ready);
        for chunk in ready {
            if let Some(chunk) = self.shared.exporter.admit(chunk) {
                self.enqueue(chunk);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Work::Flush, FLUSH_TIMEOUT)
    }

    /// Sends the spans still queued and those of chunks whose root never ended (as partial
    /// chunks), then the stats, waiting at most `timeout` for the Agent.
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.ask(Work::Shutdown, timeout);
        if result.is_ok() {
            if let Some(worker) = lock(&self.worker).take() {
                let _ = worker.join();
            }
        }
        let lost = self.shared.lost_spans.load(Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!(
                dropped_spans_total = lost,
                "spans were dropped because the trace export queue was full"
            );
        }
        result
    }
}

/// The chunks the worker is gathering for its next send.
struct Batch<'a> {
    exporter: &'a Exporter,
    chunks: Vec<Chunk>,
    spans: usize,
    max_spans: usize,
    last_send: Instant,
}

impl Batch<'_> {
    /// Adds `chunk`; a batch that reaches its size is sent at once.
    fn add(&mut self, chunk: Chunk) {
        self.spans += chunk.spans.len();
        self.chunks.push(chunk);
        if self.spans >= self.max_spans {
            // A failed send was counted and logged by the client.
            let _ = self.send();
        }
    }

    /// Sends what is gathered (nothing when empty).
    fn send(&mut self) -> OTelSdkResult {
        self.spans = 0;
        self.last_send = Instant::now();
        if self.chunks.is_empty() {
            return Ok(());
        }
        futures::executor::block_on(self.exporter.send(std::mem::take(&mut self.chunks)))
    }
}

/// The worker: batches the queued chunks and sends them; ages partial chunks; closes stats
/// buckets; answers flushes and the shutdown.
fn work(
    shared: &Shared,
    chunks: &Receiver<Work>,
    orders: &Receiver<Work>,
    settings: ProcessorSettings,
    mut health: Option<HealthMetrics>,
) {
    // Sending to the Agent must not make spans of its own (HTTP client instrumentation).
    let _suppressed = Context::enter_telemetry_suppressed_scope();
    let exporter = &shared.exporter;
    let mut batch = Batch {
        exporter,
        chunks: Vec::new(),
        spans: 0,
        max_spans: settings.max_batch,
        last_send: Instant::now(),
    };
    let mut last_tick = Instant::now();
    let mut last_health = Instant::now();
    // Moves a queued chunk into the batch.
    let take = |batch: &mut Batch<'_>, chunk: Chunk| {
        shared
            .queued_spans
            .fetch_sub(chunk.spans.len(), Ordering::Relaxed);
        batch.add(chunk);
    };
    // Moves what is queued now into the batch: at most as many entries as were queued when
    // asked (each chunk holds a span at least), so that a steady flow of new chunks cannot keep
    // the worker here.
    let drain = |batch: &mut Batch<'_>| {
        let queued_now = shared.queued_spans.load(Ordering::Relaxed) + 8;
        for _ in 0..queued_now {
            let Ok(work) = chunks.try_recv() else { break };
            if let Work::Chunk(chunk) = work {
                take(batch, chunk);
            }
        }
    };
    // The end: chunks still waiting for spans go partial, then the stats and the health
    // metrics, for the last time.
    let finish = |batch: &mut Batch<'_>, health: Option<&mut HealthMetrics>| {
        for chunk in shared.drained() {
            batch.add(chunk);
        }
        let mut result = batch.send();
        // Chunks that ended while the above was sent (their spans were counted in the stats
        // already) go too.
        drain(batch);
        result = result.and(batch.send());
        exporter.stats().stop();
        exporter.stats().flush(true);
        send_health(shared, exporter, health);
        result
    };
    loop {
        if let Ok(order) = orders.try_recv() {
            match order {
                Work::Flush(answer) => {
                    drain(&mut batch);
                    let _ = answer.send(batch.send());
                }
                Work::Shutdown(answer) => {
                    drain(&mut batch);
                    let _ = answer.send(finish(&mut batch, health.as_mut()));
                    return;
                }
                Work::Chunk(_) | Work::Wake => {}
            }
            continue;
        }
        let next_send = batch.last_send + settings.flush_interval;
        let next_tick = last_tick + settings.tick;
        let wait = next_send
            .min(next_tick)
            .saturating_duration_since(Instant::now());
        match chunks.recv_timeout(wait) {
            Ok(Work::Chunk(chunk)) => take(&mut batch, chunk),
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            // The processor is gone without a shutdown: send what is left, then stop.
            Err(RecvTimeoutError::Disconnected) => {
                let _ = finish(&mut batch, health.as_mut());
                return;
            }
        }
        let now = Instant::now();
        if now >= last_tick + settings.tick {
            last_tick = now;
            for chunk in shared.expired(now) {
                batch.add(chunk);
            }
            exporter.stats().flush(false);
            if now >= last_health + health::INTERVAL {
                last_health = now;
                send_health(shared, exporter, health.as_mut());
            }
        }
        if now >= batch.last_send + settings.flush_interval {
            let _ = batch.send();
        }
    }
}

/// Sends the health metrics (when on) with the export's totals now.
fn send_health(shared: &Shared, exporter: &Exporter, health: Option<&mut HealthMetrics>) {
    let Some(health) = health else { return };
    let (api_dropped_spans, payload_dropped_spans) = exporter.dropped_totals();
    let totals = Totals {
        queue_dropped_spans: shared.lost_spans.load(Ordering::Relaxed),
        api_dropped_spans,
        payload_dropped_spans,
    };
    health.send(totals, shared.queued_spans.load(Ordering::Relaxed));
}
