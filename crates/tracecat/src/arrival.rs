//! Whole traces only: telling a trace that is complete from one still arriving.
//!
//! Each service sends its spans on its own, about once per flush interval (1 s by default), so
//! right after a request the agent may hold none of its trace, or only the chunk of one service
//! (the `reqwest GET /calendar` span with nothing under it, which looks like broken propagation).
//! The agent records no arrival times, so a [`Watcher`] polls it and decides from two clocks:
//!
//! - the spans' own end times: a span is sent within a flush interval of its end, so once every
//!   span of a trace ended longer ago than the settle time, no more are on their way;
//! - what the watcher saw: a trace whose span count changed within the settle time is still
//!   arriving, and (for "the last trace") nothing at all may have changed for the settle time
//!   since the watcher started, since the newest trace may not have shown up yet.

use crate::model::Trace;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default settle time: two flush intervals of the services (1 s each) and a margin.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(2500);

/// Whether a trace is whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Quiet for the settle time, with its root span.
    Complete,
    /// Spans ended or arrived within the settle time, or the root has not arrived: more may come.
    Arriving,
}

/// Remembers, across polls of the agent, when each trace last changed.
#[derive(Debug)]
pub struct Watcher {
    settle: Duration,
    /// Trace id -> (span count, when that count was first seen, if it changed after the first
    /// look).
    seen: HashMap<u64, (usize, Option<Instant>)>,
    /// When the set of traces last changed (a new trace or new spans).
    last_change: Instant,
    /// Whether a poll has been taken in (the first one is no change).
    looked: bool,
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Watcher {
    /// A watcher that calls a trace complete after `settle` without change.
    pub fn new(settle: Duration) -> Self {
        let now = Instant::now();
        Watcher {
            settle,
            seen: HashMap::new(),
            last_change: now,
            looked: false,
        }
    }

    /// The settle time.
    pub fn settle(&self) -> Duration {
        self.settle
    }

    /// Takes in one poll of the agent. Traces the agent no longer holds are forgotten.
    pub fn observe(&mut self, traces: &[Trace]) {
        self.observe_at(traces, Instant::now());
    }

    fn observe_at(&mut self, traces: &[Trace], now: Instant) {
        let first_look = !self.looked;
        self.looked = true;
        let mut changed = false;
        let mut next = HashMap::with_capacity(traces.len());
        for trace in traces {
            let count = trace.spans.len();
            let entry = match self.seen.get(&trace.trace_id) {
                Some(&(before, since)) if before == count => (count, since),
                Some(_) => {
                    changed = true;
                    (count, Some(now))
                }
                None => {
                    changed = true;
                    (count, None)
                }
            };
            next.insert(trace.trace_id, entry);
        }
        if changed && !first_look {
            self.last_change = now;
        }
        self.seen = next;
    }

    /// Whether `trace` is whole, by the spans' end times and what this watcher saw.
    pub fn state(&self, trace: &Trace) -> State {
        self.state_at(trace, Instant::now(), now_nanos())
    }

    fn state_at(&self, trace: &Trace, now: Instant, now_wall: i64) -> State {
        let settle = i64::try_from(self.settle.as_nanos()).unwrap_or(i64::MAX);
        let has_root = trace.spans.iter().any(|s| s.parent_id == 0);
        // Without its root a trace waits longer: the root may be a long request still running.
        let needed = if has_root {
            settle
        } else {
            settle.saturating_mul(3)
        };
        let ended_long_ago = now_wall.saturating_sub(trace.end()) >= needed;
        let changed_lately = self
            .seen
            .get(&trace.trace_id)
            .and_then(|&(_, since)| since)
            .is_some_and(|since| now.duration_since(since) < self.settle);
        if ended_long_ago && !changed_lately {
            State::Complete
        } else {
            State::Arriving
        }
    }

    /// Whether nothing has changed for the settle time since this watcher started: until then a
    /// newer trace than any seen may still be on its way.
    pub fn all_quiet(&self) -> bool {
        self.last_change.elapsed() >= self.settle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Span;
    use std::collections::BTreeMap;

    fn trace(id: u64, spans: &[(u64, u64, i64)], end: i64) -> Trace {
        Trace {
            trace_id: id,
            trace_id_high: None,
            spans: spans
                .iter()
                .map(|&(span_id, parent_id, start)| Span {
                    service: "s".into(),
                    name: "n".into(),
                    resource: "r".into(),
                    trace_id: id,
                    span_id,
                    parent_id,
                    start,
                    duration: end - start,
                    error: false,
                    span_type: String::new(),
                    meta: BTreeMap::new(),
                    metrics: BTreeMap::new(),
                })
                .collect(),
        }
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_trace_is_complete_once_quiet_with_its_root() {
        let settle = Duration::from_secs(2);
        let mut w = Watcher::new(settle);
        let t0 = w.last_change;
        let wall = 100 * S;
        // Ended 1 s ago: arriving. Ended 3 s ago: complete.
        let recent = trace(1, &[(1, 0, wall - 2 * S)], wall - S);
        let old = trace(2, &[(1, 0, wall - 5 * S)], wall - 3 * S);
        w.observe_at(&[recent.clone(), old.clone()], t0);
        assert_eq!(w.state_at(&recent, t0, wall), State::Arriving);
        assert_eq!(w.state_at(&old, t0, wall), State::Complete);
        // The first look is no change; then nothing moves for the settle time: all quiet.
        assert_eq!(w.last_change, t0);

        // Without its root, an old chunk waits three settle times.
        let orphan = trace(3, &[(5, 4, wall - 5 * S)], wall - 4 * S);
        assert_eq!(w.state_at(&orphan, t0, wall), State::Arriving);
        assert_eq!(w.state_at(&orphan, t0, wall + 3 * S), State::Complete);
    }

    #[test]
    fn new_spans_make_a_trace_arrive_again() {
        let settle = Duration::from_secs(2);
        let mut w = Watcher::new(settle);
        let t0 = w.last_change;
        let wall = 100 * S;
        let first = trace(1, &[(1, 0, wall - 9 * S)], wall - 8 * S);
        w.observe_at(std::slice::from_ref(&first), t0);
        assert_eq!(w.state_at(&first, t0, wall), State::Complete);
        // A late chunk of old spans: the trace is arriving until settled again, and so is the
        // whole set.
        let t1 = t0 + Duration::from_secs(1);
        let more = trace(
            1,
            &[(1, 0, wall - 9 * S), (2, 1, wall - 9 * S)],
            wall - 8 * S,
        );
        w.observe_at(std::slice::from_ref(&more), t1);
        assert_eq!(w.state_at(&more, t1, wall), State::Arriving);
        assert_eq!(w.last_change, t1);
        let t3 = t1 + settle;
        assert_eq!(w.state_at(&more, t3, wall), State::Complete);
        // A new trace is a change too.
        let other = trace(2, &[(1, 0, wall - 9 * S)], wall - 8 * S);
        w.observe_at(&[more, other], t3);
        assert_eq!(w.last_change, t3);
    }
}
