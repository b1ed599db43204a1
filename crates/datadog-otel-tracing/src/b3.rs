//! B3 trace context headers (Zipkin): `b3multi` (`x-b3-*`) and `b3` (one `b3` header).
//!
//! Mapping of the sampling priority, as dd-trace-py and dd-trace-rs do it:
//! - inject: priority ≤ 0 → sampled `0`, 1 → `1`, ≥ 2 → debug (`x-b3-flags: 1`, or `d` in the
//!   single header);
//! - extract: `0` → 0, `1`/`true` → 1, debug → 2, nothing → no decision (the sampler decides).
//!
//! Trace ids are 16 or 32 hex digits (32 when the upper 64 bits are set), span ids 16. The
//! single header accepts `{trace}-{span}`, `{trace}-{span}-{sampling}` and a fourth part (the
//! parent span, ignored); a header of one part carries a decision without ids and starts no
//! context.

/// Multi-header names.
pub const TRACE_ID: &str = "x-b3-traceid";
/// Multi-header names.
pub const SPAN_ID: &str = "x-b3-spanid";
/// Multi-header names.
pub const SAMPLED: &str = "x-b3-sampled";
/// Multi-header names.
pub const FLAGS: &str = "x-b3-flags";
/// The single header.
pub const SINGLE: &str = "b3";

/// The trace context B3 carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct B3Context {
    /// 128-bit trace id (upper half 0 for 64-bit ids); never 0.
    pub trace_id: u128,
    /// The caller's span id; never 0.
    pub span_id: u64,
    /// The sampling priority, when the caller decided.
    pub priority: Option<i32>,
}

fn hex_id(s: &str, lengths: &[usize]) -> Option<u128> {
    let s = s.trim();
    if !lengths.contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(s, 16).ok().filter(|v| *v != 0)
}

fn sampled(value: &str) -> Option<i32> {
    match value.trim() {
        "0" | "false" => Some(0),
        "1" | "true" => Some(1),
        "d" => Some(2),
        _ => None,
    }
}

impl B3Context {
    /// Reads `x-b3-*` headers.
    pub fn extract_multi<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        let trace_id = hex_id(get(TRACE_ID)?, &[16, 32])?;
        let span_id = hex_id(get(SPAN_ID)?, &[16])? as u64;
        let priority = if get(FLAGS).map(str::trim) == Some("1") {
            Some(2)
        } else {
            get(SAMPLED).and_then(sampled).filter(|p| *p < 2)
        };
        Some(Self {
            trace_id,
            span_id,
            priority,
        })
    }

    /// Reads a `b3` header.
    pub fn extract_single(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let trace_id = hex_id(parts.next()?, &[16, 32])?;
        let span_id = hex_id(parts.next()?, &[16])? as u64;
        let priority = match parts.next() {
            None => None,
            Some(s) => Some(sampled(s)?),
        };
        // A fourth part is the parent span id: ignored, but it must be one.
        if let Some(parent) = parts.next() {
            hex_id(parent, &[16])?;
        }
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            priority,
        })
    }

    fn trace_hex(&self) -> String {
        if self.trace_id >> 64 == 0 {
            format!("{:016x}", self.trace_id as u64)
        } else {
            format!("{:032x}", self.trace_id)
        }
    }

    /// The `x-b3-*` headers to send.
    pub fn inject_multi(&self, mut set: impl FnMut(&'static str, String)) {
        set(TRACE_ID, self.trace_hex());
        set(SPAN_ID, format!("{:016x}", self.span_id));
        match self.priority {
            Some(p) if p >= 2 => set(FLAGS, "1".into()),
            Some(p) => set(SAMPLED, if p > 0 { "1" } else { "0" }.into()),
            None => {}
        }
    }

    /// The `b3` header to send.
    pub fn single_header(&self) -> String {
        let mut out = format!("{}-{:016x}", self.trace_hex(), self.span_id);
        match self.priority {
            Some(p) if p >= 2 => out.push_str("-d"),
            Some(p) if p > 0 => out.push_str("-1"),
            Some(_) => out.push_str("-0"),
            None => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn single_header_round_trips() {
        let h = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1";
        let cx = B3Context::extract_single(h).unwrap();
        assert_eq!(cx.trace_id, 0x80f198ee56343ba864fe8b2a57d3eff7);
        assert_eq!(cx.span_id, 0xe457b5a2e4d86bd1);
        assert_eq!(cx.priority, Some(1));
        assert_eq!(cx.single_header(), h);
        let debug =
            B3Context::extract_single("64fe8b2a57d3eff7-e457b5a2e4d86bd1-d-05e3ac9a4f6e3b90");
        assert_eq!(debug.unwrap().priority, Some(2));
        assert_eq!(
            debug.unwrap().single_header(),
            "64fe8b2a57d3eff7-e457b5a2e4d86bd1-d"
        );
        let undecided = B3Context::extract_single("64fe8b2a57d3eff7-e457b5a2e4d86bd1").unwrap();
        assert_eq!(undecided.priority, None);
    }

    #[test]
    fn multi_headers_round_trip() {
        let mut headers = HashMap::new();
        let cx = B3Context {
            trace_id: 0x1234,
            span_id: 0xabc,
            priority: Some(2),
        };
        cx.inject_multi(|k, v| {
            headers.insert(k.to_string(), v);
        });
        assert_eq!(headers[TRACE_ID], "0000000000001234");
        assert_eq!(headers[SPAN_ID], "0000000000000abc");
        assert_eq!(headers[FLAGS], "1");
        assert!(!headers.contains_key(SAMPLED));
        let back = B3Context::extract_multi(|k| headers.get(k).map(String::as_str)).unwrap();
        assert_eq!(back, cx);
        for (p, sampled) in [(-1, "0"), (0, "0"), (1, "1")] {
            let mut h = HashMap::new();
            B3Context {
                priority: Some(p),
                ..cx
            }
            .inject_multi(|k, v| {
                h.insert(k, v);
            });
            assert_eq!(h[SAMPLED], sampled);
        }
    }

    #[test]
    fn garbage_starts_no_context() {
        for bad in [
            "",
            "0",
            "d",
            "xyz-e457b5a2e4d86bd1-1",
            "00000000000000000000000000000000-e457b5a2e4d86bd1-1",
            "64fe8b2a57d3eff7-0000000000000000",
            "64fe8b2a57d3eff7-e457b5a2e4d86bd1-2",
            "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1-zz",
            "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-x",
            "64fe8b2a57d3eff-e457b5a2e4d86bd1",
        ] {
            assert_eq!(B3Context::extract_single(bad), None, "{bad}");
        }
        assert_eq!(B3Context::extract_multi(|_| None), None);
        assert_eq!(
            B3Context::extract_multi(|k| (k == TRACE_ID).then_some("64fe8b2a57d3eff7")),
            None
        );
    }
}
