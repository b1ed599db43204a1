//! The span tree of a trace, and its plain-text rendering for the terminal.

use crate::model::{Span, Trace};
use std::collections::{HashMap, HashSet};

/// A span in tree order (depth first, siblings by start).
#[derive(Debug)]
pub struct Row<'a> {
    pub span: &'a Span,
    pub depth: usize,
    /// Index in the rows of the parent, `None` for a root.
    pub parent: Option<usize>,
    /// The box-drawing prefix before the span (`├─ `, `│  └─ `, …).
    pub prefix: String,
    /// The prefix for lines that continue this span (its error message).
    pub continuation: String,
}

/// The spans of `trace` depth first: roots (spans whose parent is not in the trace) by start,
/// each followed by its children by start. Every span appears exactly once, even in a trace whose
/// parent links form a cycle (such spans come last, as extra roots).
pub fn rows(trace: &Trace) -> Vec<Row<'_>> {
    let mut children: HashMap<u64, Vec<&Span>> = HashMap::new();
    for span in &trace.spans {
        children.entry(span.parent_id).or_default().push(span);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| (s.start, s.span_id));
    }
    let mut out = Vec::with_capacity(trace.spans.len());
    let mut seen = HashSet::new();
    for root in trace.roots() {
        visit(root, None, 0, "", true, &children, &mut seen, &mut out);
    }
    // Spans not reached are in a cycle of parent links: show each such group from its earliest.
    let mut missed: Vec<&Span> = trace
        .spans
        .iter()
        .filter(|s| !seen.contains(&s.span_id))
        .collect();
    missed.sort_by_key(|s| (s.start, s.span_id));
    for span in missed {
        visit(span, None, 0, "", true, &children, &mut seen, &mut out);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn visit<'a>(
    span: &'a Span,
    parent: Option<usize>,
    depth: usize,
    indent: &str,
    last: bool,
    children: &HashMap<u64, Vec<&'a Span>>,
    seen: &mut HashSet<u64>,
    out: &mut Vec<Row<'a>>,
) {
    if !seen.insert(span.span_id) {
        return;
    }
    let (prefix, child_indent) = if depth == 0 {
        (String::new(), String::new())
    } else if last {
        (format!("{indent}└─ "), format!("{indent}   "))
    } else {
        (format!("{indent}├─ "), format!("{indent}│  "))
    };
    let index = out.len();
    let kids: Vec<&Span> = children
        .get(&span.span_id)
        .map(|k| {
            k.iter()
                .copied()
                .filter(|c| c.span_id != span.span_id && !seen.contains(&c.span_id))
                .collect()
        })
        .unwrap_or_default();
    let continuation = if kids.is_empty() {
        format!("{child_indent}   ")
    } else {
        format!("{child_indent}│  ")
    };
    out.push(Row {
        span,
        depth,
        parent,
        prefix,
        continuation,
    });
    let count = kids.len();
    for (i, kid) in kids.into_iter().enumerate() {
        visit(
            kid,
            Some(index),
            depth + 1,
            &child_indent,
            i + 1 == count,
            children,
            seen,
            out,
        );
    }
}

/// A duration in nanoseconds with three significant digits: `812 ns`, `3.88 ms`, `1.20 s`.
pub fn format_duration(nanos: i64) -> String {
    let n = nanos.max(0) as f64;
    let (value, unit) = if n < 1e3 {
        return format!("{} ns", nanos.max(0));
    } else if n < 1e6 {
        (n / 1e3, "µs")
    } else if n < 1e9 {
        (n / 1e6, "ms")
    } else {
        (n / 1e9, "s")
    };
    // Rounding can carry into the next unit (999.96 µs): say 1.00 ms then.
    let rounded = round3(value);
    if rounded >= 1000.0 && unit != "s" {
        let next = if unit == "µs" { "ms" } else { "s" };
        return format!("{} {next}", sig3(rounded / 1000.0));
    }
    format!("{} {unit}", sig3(value))
}

fn round3(v: f64) -> f64 {
    if v >= 100.0 {
        v.round()
    } else if v >= 10.0 {
        (v * 10.0).round() / 10.0
    } else {
        (v * 100.0).round() / 100.0
    }
}

fn sig3(v: f64) -> String {
    let v = round3(v);
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Cuts `text` to at most `max` characters, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Longest resource shown in the terminal (SQL can be long).
const MAX_RESOURCE: usize = 64;
/// Longest error message shown in the terminal.
const MAX_ERROR: usize = 120;

/// The one-line summary of a trace: id, root, duration, counts.
pub fn headline(trace: &Trace) -> String {
    let root = trace
        .roots()
        .first()
        .map(|s| format!(" · {} {}", s.service, s.resource))
        .unwrap_or_default();
    let id128 = trace
        .trace_id_128()
        .map(|id| format!(" (128-bit {id})"))
        .unwrap_or_default();
    let services = trace.services();
    let errors = match trace.error_count() {
        0 => String::new(),
        1 => " · 1 error".to_owned(),
        n => format!(" · {n} errors"),
    };
    format!(
        "trace {}{id128}{root} · {} · {} span{} · {} service{}: {}{errors}",
        trace.trace_id,
        format_duration(trace.duration()),
        trace.spans.len(),
        plural(trace.spans.len()),
        services.len(),
        plural(services.len()),
        services.join(", "),
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The trace as an indented tree, one span a line:
/// `├─ service  operation  resource  duration`, columns aligned, error spans marked `ERROR`
/// with their message on the next line.
pub fn render_text(trace: &Trace) -> String {
    let rows = rows(trace);
    let first: Vec<String> = rows
        .iter()
        .map(|r| format!("{}{}", r.prefix, r.span.service))
        .collect();
    let resources: Vec<String> = rows
        .iter()
        .map(|r| truncate(&r.span.resource, MAX_RESOURCE))
        .collect();
    let durations: Vec<String> = rows
        .iter()
        .map(|r| format_duration(r.span.duration))
        .collect();
    let width = |items: &mut dyn Iterator<Item = usize>| items.max().unwrap_or(0);
    let w1 = width(&mut first.iter().map(|s| s.chars().count()));
    let w2 = width(&mut rows.iter().map(|r| r.span.name.chars().count()));
    let w3 = width(&mut resources.iter().map(|s| s.chars().count()));
    let w4 = width(&mut durations.iter().map(|s| s.chars().count()));

    let mut out = headline(trace);
    out.push('\n');
    for (i, row) in rows.iter().enumerate() {
        let mut line = format!(
            "{}  {}  {}  {}",
            pad(&first[i], w1),
            pad(&row.span.name, w2),
            pad(&resources[i], w3),
            pad_left(&durations[i], w4)
        );
        if row.span.error {
            line.push_str("  ERROR");
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if row.span.error {
            if let Some(message) = row.span.error_message() {
                let kind = row
                    .span
                    .meta
                    .get("error.type")
                    .filter(|t| t.as_str() != message)
                    .map(|t| format!("{t}: "))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{}! {}\n",
                    row.continuation,
                    truncate(&format!("{kind}{message}"), MAX_ERROR)
                ));
            }
        }
    }
    out
}

/// One line per trace, oldest first: id, start offset, duration, spans, services, root.
pub fn render_list(traces: &[Trace]) -> String {
    let mut out = String::new();
    for trace in traces {
        let root = trace
            .roots()
            .first()
            .map(|s| format!("{} {}", s.service, s.resource))
            .unwrap_or_default();
        let errors = if trace.error_count() > 0 {
            "  ERROR"
        } else {
            ""
        };
        out.push_str(&format!(
            "{:>20}  {:>8}  {:>3} span{}  {}  [{}]{errors}\n",
            trace.trace_id,
            format_duration(trace.duration()),
            trace.spans.len(),
            if trace.spans.len() == 1 { " " } else { "s" },
            root,
            trace.services().join(", "),
        ));
    }
    out
}

fn pad(text: &str, width: usize) -> String {
    let n = text.chars().count();
    format!("{text}{}", " ".repeat(width.saturating_sub(n)))
}

fn pad_left(text: &str, width: usize) -> String {
    let n = text.chars().count();
    format!("{}{text}", " ".repeat(width.saturating_sub(n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::traces_from_json;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(format_duration(0), "0 ns");
        assert_eq!(format_duration(812), "812 ns");
        assert_eq!(format_duration(1_500), "1.50 µs");
        assert_eq!(format_duration(591_870), "592 µs");
        assert_eq!(format_duration(999_999), "1.00 ms");
        assert_eq!(format_duration(3_884_042), "3.88 ms");
        assert_eq!(format_duration(59_834_709), "59.8 ms");
        assert_eq!(format_duration(302_000_000), "302 ms");
        assert_eq!(format_duration(1_204_000_000), "1.20 s");
        assert_eq!(format_duration(-5), "0 ns");
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("abcd", 0), "");
        assert_eq!(truncate("µµµµ", 2), "µ…");
    }

    #[test]
    fn cycles_and_orphans_are_shown_once() {
        let span = |id: u64, parent: u64, start: i64| {
            json!({"service": "s", "name": "n", "resource": format!("r{id}"), "trace_id": 1,
                   "span_id": id, "parent_id": parent, "start": start, "duration": 1})
        };
        // 1 is the root; 2 and 3 point at each other; 4's parent never arrived.
        let input = json!([span(1, 0, 0), span(2, 3, 1), span(3, 2, 2), span(4, 99, 3)]);
        let traces = traces_from_json(&input).expect("valid");
        let rows = rows(&traces[0]);
        let mut ids: Vec<u64> = rows.iter().map(|r| r.span.span_id).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        let text = render_text(&traces[0]);
        assert_eq!(text.lines().count(), 5, "{text}");
    }
}
