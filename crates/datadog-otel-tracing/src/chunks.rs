//! Trace chunks: the spans of one trace in this process, sent together once every one of them
//! has ended, as Datadog's tracers do.
//!
//! The span processor ([`crate::processor`]) tells when a span starts and hands it over when it
//! ends, on the threads that start and end them. Sent as they end, the chunk would reach the
//! Agent in pieces, each piece with its own "first span" carrying the chunk-level tags. Instead
//! the buffer counts each trace's open spans, and the ended ones wait until the count is back at
//! zero (usually when the local root ends; a child may also end after its root). A chunk that
//! stays open (a span still open [`ChunkBuffer::new`]'s `max_age` after the trace's first span
//! started here, or more waiting spans than the bound) is sent as it is, a partial chunk, as
//! Datadog's partial flush does; shutdown sends everything.

use crate::facts::{SamplingPriority, TraceFacts};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::SpanData;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

/// Whether `span` is the root of its chunk: no parent, or a parent in another process.
pub fn is_local_root(span: &SpanData) -> bool {
    span.parent_span_id == SpanId::INVALID || span.parent_span_is_remote
}

/// One chunk ready to send; `complete` when its local root is among the spans.
#[derive(Debug)]
pub struct Chunk {
    /// The chunk's spans, in the order they ended.
    pub spans: Vec<SpanData>,
    /// Whether the local root is among `spans` (else: a partial chunk).
    pub complete: bool,
    /// A keep or drop by hand on one of its spans (the marks are taken off the spans when the
    /// chunk is admitted, see `datadog::Exporter::admit`).
    pub manual: Option<SamplingPriority>,
    /// Whether the chunk was counted in the client-side stats.
    pub counted: bool,
    /// Its trace's facts, when `datadog::Exporter::admit` read them (for the stats).
    pub facts: Option<TraceFacts>,
}

impl Chunk {
    fn new(spans: Vec<SpanData>, complete: bool) -> Self {
        Self {
            spans,
            complete,
            manual: None,
            counted: false,
            facts: None,
        }
    }

    /// The index of the span that carries the chunk-level facts: the local root of a complete
    /// chunk, the first span of a partial one.
    pub fn head(&self) -> usize {
        if self.complete {
            self.spans.iter().position(is_local_root).unwrap_or(0)
        } else {
            0
        }
    }
}

/// Trace ids are random: their low 64 bits are a hash already (SipHash would cost more than
/// the rest of a lookup).
#[derive(Debug, Default)]
pub(crate) struct TraceIdHasher(u64);

impl Hasher for TraceIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `TraceId` hashes as its 16 bytes; keep the last 8 (the random part of a 128-bit id).
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
}

type TraceMap<V> = HashMap<TraceId, V, BuildHasherDefault<TraceIdHasher>>;

#[derive(Debug)]
struct Waiting {
    /// The ended spans.
    spans: Vec<SpanData>,
    /// Spans started and not ended yet.
    open: usize,
    /// When the first span of the trace started here (or ended, for a trace whose start was not
    /// seen).
    since: Instant,
}

/// Spans of chunks whose local root has not ended yet.
#[derive(Debug)]
pub struct ChunkBuffer {
    waiting: TraceMap<Waiting>,
    waiting_spans: usize,
    max_spans: usize,
    max_age: Duration,
    /// Partial flush: ended spans of an open trace leave once there are this many.
    partial_min: Option<usize>,
}

impl ChunkBuffer {
    /// At most `max_spans` spans wait, each at most `max_age`.
    pub fn new(max_spans: usize, max_age: Duration) -> Self {
        Self {
            waiting: TraceMap::default(),
            waiting_spans: 0,
            max_spans,
            max_age,
            partial_min: None,
        }
    }

    /// With partial flush: the ended spans of a trace still open leave as a partial chunk once
    /// there are `min_spans` of them.
    pub fn with_partial_flush(mut self, min_spans: Option<usize>) -> Self {
        self.partial_min = min_spans;
        self
    }

    /// Spans waiting for their chunk's root.
    #[cfg(test)]
    pub fn waiting_spans(&self) -> usize {
        self.waiting_spans
    }

    /// Counts a started span of trace `trace`; `now` is asked only for the trace's first.
    pub fn start(&mut self, trace: TraceId, now: impl FnOnce() -> Instant) {
        self.waiting
            .entry(trace)
            .or_insert_with(|| Waiting {
                spans: Vec::new(),
                open: 0,
                since: now(),
            })
            .open += 1;
    }

    /// Takes one ended span; a chunk that is ready (its last open span ended, or the oldest
    /// chunks past the bound of waiting spans) goes to `ready`. `now` is asked only when the
    /// span's trace was not known (its start not seen, or its chunk sent partial already).
    pub fn push(&mut self, span: SpanData, now: impl FnOnce() -> Instant, ready: &mut Vec<Chunk>) {
        let trace = span.span_context.trace_id();
        let waiting = self.waiting.entry(trace).or_insert_with(|| Waiting {
            spans: Vec::new(),
            open: 1,
            since: now(),
        });
        waiting.open = waiting.open.saturating_sub(1);
        if waiting.open == 0 {
            let mut spans = match self.waiting.remove(&trace) {
                Some(waiting) => waiting.spans,
                None => Vec::new(),
            };
            self.waiting_spans -= spans.len();
            spans.push(span);
            let complete = spans.iter().any(is_local_root);
            ready.push(Chunk::new(spans, complete));
            return;
        }
        waiting.spans.push(span);
        self.waiting_spans += 1;
        if self
            .partial_min
            .is_some_and(|min| waiting.spans.len() >= min)
        {
            self.release(trace, Instant::now(), ready);
        }
        while self.waiting_spans > self.max_spans {
            let Some(oldest) = self
                .waiting
                .iter()
                .filter(|(_, w)| !w.spans.is_empty())
                .min_by_key(|(_, w)| w.since)
                .map(|(t, _)| *t)
            else {
                break;
            };
            self.release(oldest, Instant::now(), ready);
        }
    }

    /// [`ChunkBuffer::push`] for each span of `batch` at time `now`, then the chunks that are
    /// older than the age (tests).
    #[cfg(test)]
    pub fn add(&mut self, batch: Vec<SpanData>, now: Instant) -> Vec<Chunk> {
        let mut ready = Vec::new();
        for span in &batch {
            self.start(span.span_context.trace_id(), || now);
        }
        for span in batch {
            self.push(span, || now, &mut ready);
        }
        if !self.waiting.is_empty() {
            self.expire(now, &mut ready);
        }
        ready
    }

    /// The chunks that waited too long, or the oldest beyond the bound, as partial chunks (the
    /// processor's worker asks every tick, so that they leave on an idle service too).
    pub fn expired(&mut self, now: Instant) -> Vec<Chunk> {
        let mut ready = Vec::new();
        if !self.waiting.is_empty() {
            self.expire(now, &mut ready);
        }
        ready
    }

    /// Moves the chunks that waited too long, or the oldest beyond the bound, to `ready`.
    fn expire(&mut self, now: Instant, ready: &mut Vec<Chunk>) {
        let old: Vec<TraceId> = self
            .waiting
            .iter()
            .filter(|(_, w)| now.duration_since(w.since) >= self.max_age)
            .map(|(t, _)| *t)
            .collect();
        for trace in old {
            let abandoned = self.waiting.get(&trace).is_some_and(|w| w.spans.is_empty());
            if abandoned {
                // Open spans and nothing to send: spans that never ended (leaked), or a root open
                // longer than the age with nothing ended under it yet (a long poll). Forget the
                // count; spans that end later go out as they end, in pieces.
                self.waiting.remove(&trace);
            } else {
                self.release(trace, now, ready);
            }
        }
        while self.waiting_spans > self.max_spans {
            let Some(oldest) = self
                .waiting
                .iter()
                .filter(|(_, w)| !w.spans.is_empty())
                .min_by_key(|(_, w)| w.since)
                .map(|(t, _)| *t)
            else {
                break;
            };
            self.release(oldest, now, ready);
        }
    }

    /// Sends the ended spans of `trace` as a partial chunk; its open spans stay counted, and
    /// make the next chunk of the trace when they end.
    fn release(&mut self, trace: TraceId, now: Instant, ready: &mut Vec<Chunk>) {
        if let Some(waiting) = self.waiting.get_mut(&trace) {
            let spans = std::mem::take(&mut waiting.spans);
            waiting.since = now;
            self.waiting_spans -= spans.len();
            // The root may be among them (it ended before a child that is still open): then it
            // carries the chunk's facts.
            let complete = spans.iter().any(is_local_root);
            ready.push(Chunk::new(spans, complete));
        }
    }

    /// Every waiting chunk, as partial chunks (at shutdown).
    pub fn drain(&mut self) -> Vec<Chunk> {
        self.waiting_spans = 0;
        self.waiting
            .drain()
            .filter(|(_, w)| !w.spans.is_empty())
            .map(|(_, w)| {
                let complete = w.spans.iter().any(is_local_root);
                Chunk::new(w.spans, complete)
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState};

    pub(crate) fn span(trace: u128, id: u64, parent: u64, remote_parent: bool) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(trace),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: remote_parent,
            span_kind: SpanKind::Internal,
            name: "x".into(),
            start_time: std::time::SystemTime::UNIX_EPOCH,
            end_time: std::time::SystemTime::UNIX_EPOCH,
            attributes: vec![],
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    fn ids(chunk: &Chunk) -> Vec<u64> {
        chunk
            .spans
            .iter()
            .map(|s| u64::from_be_bytes(s.span_context.span_id().to_bytes()))
            .collect()
    }

    /// Starts every span of `spans` (as the processor's `on_start` does).
    fn start(buffer: &mut ChunkBuffer, spans: &[&SpanData], now: Instant) {
        for span in spans {
            buffer.start(span.span_context.trace_id(), || now);
        }
    }

    fn end(buffer: &mut ChunkBuffer, span: SpanData) -> Vec<Chunk> {
        let mut ready = Vec::new();
        buffer.push(span, Instant::now, &mut ready);
        ready
    }

    #[test]
    fn a_chunk_leaves_when_its_last_open_span_ends() {
        let mut buffer = ChunkBuffer::new(100, Duration::from_secs(10));
        let now = Instant::now();
        let (child, other_child, root) = (
            span(1, 2, 1, false),
            span(1, 3, 1, false),
            span(1, 1, 77, true),
        );
        let whole = span(2, 9, 0, false);
        start(&mut buffer, &[&root, &child, &other_child, &whole], now);
        assert!(end(&mut buffer, child).is_empty());
        let ready = end(&mut buffer, whole);
        assert_eq!(ready.len(), 1);
        assert_eq!(ids(&ready[0]), vec![9]);
        assert_eq!(buffer.waiting_spans(), 1);
        // The root ends before its last child: the chunk waits for the child.
        assert!(end(&mut buffer, root).is_empty());
        let ready = end(&mut buffer, other_child);
        assert_eq!(ready.len(), 1);
        assert!(ready[0].complete);
        assert_eq!(ids(&ready[0]), vec![2, 1, 3]);
        assert_eq!(ready[0].head(), 1, "the root carries the chunk's facts");
        assert_eq!(buffer.waiting_spans(), 0);
    }

    #[test]
    fn a_chunk_left_open_goes_out_partial_when_old_or_over_the_bound() {
        let mut buffer = ChunkBuffer::new(2, Duration::from_secs(10));
        let now = Instant::now();
        let (root, child) = (span(1, 1, 0, false), span(1, 2, 1, false));
        start(&mut buffer, &[&root, &child], now);
        assert!(end(&mut buffer, child).is_empty());
        let ready = buffer.expired(now + Duration::from_secs(11));
        assert_eq!(ready.len(), 1);
        assert!(!ready[0].complete);
        assert_eq!(ids(&ready[0]), vec![2]);
        // The root, still counted, makes the next chunk when it ends.
        let ready = end(&mut buffer, root);
        assert_eq!(ids(&ready[0]), vec![1]);
        assert!(ready[0].complete);
        // Over the bound of 2 waiting spans: the oldest chunk goes. Traces 3 and 6 keep their
        // roots open.
        let later = Instant::now();
        start(
            &mut buffer,
            &[&span(3, 4, 0, false), &span(3, 5, 4, false)],
            later,
        );
        let trace6 = [
            span(6, 8, 0, false),
            span(6, 7, 8, false),
            span(6, 9, 8, false),
        ];
        start(
            &mut buffer,
            &trace6.iter().collect::<Vec<_>>(),
            later + Duration::from_secs(1),
        );
        let mut ready = Vec::new();
        let [_, seven, nine] = trace6;
        for span in [span(3, 5, 4, false), seven, nine] {
            buffer.push(span, Instant::now, &mut ready);
        }
        assert_eq!(ready.len(), 1);
        assert_eq!(ids(&ready[0]), vec![5]);
        let rest = buffer.drain();
        assert_eq!(rest.len(), 1);
        assert_eq!(ids(&rest[0]), vec![7, 9]);
        assert_eq!(buffer.waiting_spans(), 0);
    }

    /// A buffer with partial flush at 2 spans, and a trace of a root and two children, all three
    /// started.
    fn partial_flush_at_two() -> (ChunkBuffer, [SpanData; 3]) {
        let mut buffer = ChunkBuffer::new(100, Duration::from_secs(10)).with_partial_flush(Some(2));
        let spans = [
            span(1, 1, 0, false),
            span(1, 2, 1, false),
            span(1, 3, 1, false),
        ];
        start(
            &mut buffer,
            &spans.iter().collect::<Vec<_>>(),
            Instant::now(),
        );
        (buffer, spans)
    }

    /// Partial flush: at the minimum, the ended spans of an open trace leave; the rest of the
    /// trace makes the next chunk.
    #[test]
    fn partial_flush_sends_ended_spans_of_an_open_trace_at_the_minimum() {
        let (mut buffer, [root, two, three]) = partial_flush_at_two();
        assert!(end(&mut buffer, two).is_empty());
        let ready = end(&mut buffer, three);
        assert_eq!(ready.len(), 1);
        assert!(!ready[0].complete);
        assert_eq!(ids(&ready[0]), vec![2, 3]);
        let ready = end(&mut buffer, root);
        assert_eq!(ids(&ready[0]), vec![1]);
        assert!(ready[0].complete);
    }

    /// A partial chunk that holds the root (it ended before a child still open) has the root
    /// carry the chunk's facts, not its first span.
    #[test]
    fn a_partial_chunk_with_the_root_has_the_root_as_head() {
        let (mut buffer, [root, two, _three]) = partial_flush_at_two();
        assert!(end(&mut buffer, two).is_empty());
        let ready = end(&mut buffer, root);
        assert_eq!(ids(&ready[0]), vec![2, 1]);
        assert!(ready[0].complete);
        assert_eq!(ready[0].head(), 1);
    }

    /// Spans that start and never end are forgotten after the age, not kept forever.
    #[test]
    fn a_trace_whose_spans_never_end_is_forgotten() {
        let mut buffer = ChunkBuffer::new(100, Duration::from_secs(10));
        let now = Instant::now();
        start(&mut buffer, &[&span(1, 1, 0, false)], now);
        assert!(buffer.expired(now + Duration::from_secs(11)).is_empty());
        assert!(buffer.drain().is_empty());
    }
}
