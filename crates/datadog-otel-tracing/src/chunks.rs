//! Trace chunks: the spans of one trace in this process, sent together once the chunk's local
//! root (the span whose parent is remote or absent) has ended, as Datadog's tracers do.
//!
//! The span processor ([`crate::processor`]) hands over spans as they end, children before their
//! parents, on the threads that end them. Sent as they come, the chunk would reach the Agent in
//! pieces, each piece with its own "first span" carrying the chunk-level tags. Instead the spans
//! of an unfinished chunk wait here until their root arrives. A chunk whose root never
//! comes (a span still open after [`ChunkBuffer::new`]'s `max_age`, or more waiting spans than
//! the bound) is sent as it is, a partial chunk, as Datadog's partial flush does; shutdown sends
//! everything.

use crate::facts::SamplingPriority;
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
}

impl Chunk {
    fn new(spans: Vec<SpanData>, complete: bool) -> Self {
        Self {
            spans,
            complete,
            manual: None,
            counted: false,
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
    spans: Vec<SpanData>,
    since: Instant,
}

/// Spans of chunks whose local root has not ended yet.
#[derive(Debug)]
pub struct ChunkBuffer {
    waiting: TraceMap<Waiting>,
    waiting_spans: usize,
    max_spans: usize,
    max_age: Duration,
}

impl ChunkBuffer {
    /// At most `max_spans` spans wait, each at most `max_age`.
    pub fn new(max_spans: usize, max_age: Duration) -> Self {
        Self {
            waiting: TraceMap::default(),
            waiting_spans: 0,
            max_spans,
            max_age,
        }
    }

    /// Spans waiting for their chunk's root.
    #[cfg(test)]
    pub fn waiting_spans(&self) -> usize {
        self.waiting_spans
    }

    /// Takes one ended span; a chunk that is ready (its root ended, or the oldest chunks past
    /// the bound of waiting spans) goes to `ready`. `now` is asked only when the span is the
    /// first of a chunk to wait.
    pub fn push(&mut self, span: SpanData, now: impl FnOnce() -> Instant, ready: &mut Vec<Chunk>) {
        let trace = span.span_context.trace_id();
        if is_local_root(&span) {
            let mut spans = match self.waiting.remove(&trace) {
                Some(waiting) => {
                    self.waiting_spans -= waiting.spans.len();
                    waiting.spans
                }
                None => Vec::with_capacity(1),
            };
            spans.push(span);
            ready.push(Chunk::new(spans, true));
            return;
        }
        self.waiting_spans += 1;
        self.waiting
            .entry(trace)
            .or_insert_with(|| Waiting {
                spans: Vec::new(),
                since: now(),
            })
            .spans
            .push(span);
        while self.waiting_spans > self.max_spans {
            let Some(oldest) = self
                .waiting
                .iter()
                .min_by_key(|(_, w)| w.since)
                .map(|(t, _)| *t)
            else {
                break;
            };
            self.release(oldest, ready);
        }
    }

    /// [`ChunkBuffer::push`] for each span of `batch` at time `now`, then the chunks that are
    /// older than the age (tests).
    #[cfg(test)]
    pub fn add(&mut self, batch: Vec<SpanData>, now: Instant) -> Vec<Chunk> {
        let mut ready = Vec::new();
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
            self.release(trace, ready);
        }
        while self.waiting_spans > self.max_spans {
            let Some(oldest) = self
                .waiting
                .iter()
                .min_by_key(|(_, w)| w.since)
                .map(|(t, _)| *t)
            else {
                break;
            };
            self.release(oldest, ready);
        }
    }

    fn release(&mut self, trace: TraceId, ready: &mut Vec<Chunk>) {
        if let Some(waiting) = self.waiting.remove(&trace) {
            self.waiting_spans -= waiting.spans.len();
            ready.push(Chunk::new(waiting.spans, false));
        }
    }

    /// Every waiting chunk, as partial chunks (at shutdown).
    pub fn drain(&mut self) -> Vec<Chunk> {
        self.waiting_spans = 0;
        self.waiting
            .drain()
            .map(|(_, w)| Chunk::new(w.spans, false))
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

    #[test]
    fn children_wait_for_their_root() {
        let mut buffer = ChunkBuffer::new(100, Duration::from_secs(10));
        let now = Instant::now();
        // Trace 1's children end in one batch, its root in the next; trace 2 is whole.
        let ready = buffer.add(vec![span(1, 2, 1, false), span(2, 9, 0, false)], now);
        assert_eq!(ready.len(), 1);
        assert_eq!(ids(&ready[0]), vec![9]);
        assert_eq!(buffer.waiting_spans(), 1);
        let ready = buffer.add(vec![span(1, 3, 1, false), span(1, 1, 77, true)], now);
        assert_eq!(ready.len(), 1);
        assert!(ready[0].complete);
        assert_eq!(ids(&ready[0]), vec![2, 3, 1]);
        assert_eq!(buffer.waiting_spans(), 0);
    }

    #[test]
    fn a_chunk_without_root_goes_out_partial_when_old_or_over_the_bound() {
        let mut buffer = ChunkBuffer::new(2, Duration::from_secs(10));
        let now = Instant::now();
        assert!(buffer.add(vec![span(1, 2, 1, false)], now).is_empty());
        let later = now + Duration::from_secs(11);
        let ready = buffer.add(vec![span(3, 5, 4, false)], later);
        assert_eq!(ready.len(), 1);
        assert!(!ready[0].complete);
        assert_eq!(ids(&ready[0]), vec![2]);
        // Over the bound of 2 waiting spans: the oldest chunk goes.
        let latest = later + Duration::from_secs(1);
        let ready = buffer.add(vec![span(6, 7, 8, false), span(6, 9, 8, false)], latest);
        assert_eq!(ready.len(), 1);
        assert_eq!(ids(&ready[0]), vec![5]);
        assert_eq!(buffer.drain().len(), 1);
        assert_eq!(buffer.waiting_spans(), 0);
    }
}
