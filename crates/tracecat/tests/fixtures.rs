//! tracecat on traces recorded from the real services (tests/fixtures/, see its README.md).

use std::path::PathBuf;
use tracecat::flame::{render_svg, service_colours, Style, ERROR_STROKE};
use tracecat::model::{parse_trace_id, select, Selector, Trace};
use tracecat::source::from_file;
use tracecat::tree::{render_list, render_text};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn traces(name: &str) -> Vec<Trace> {
    from_file(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e:#}"))
}

fn last(name: &str) -> Trace {
    let traces = traces(name);
    select(&traces, &Selector::Last)
        .unwrap_or_else(|e| panic!("{name}: {e:#}"))
        .clone()
}

/// The span lines of the tree, without the headline, trailing spaces squeezed.
fn squeezed_lines(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn distributed_trace_as_a_tree() {
    let trace = last("add_date.json");
    assert_eq!(trace.spans.len(), 6);
    let text = render_text(&trace);
    let head = text.lines().next().unwrap_or_default();
    assert!(
        head.starts_with(&format!("trace {} (128-bit ", trace.trace_id)),
        "{head}"
    );
    assert!(
        head.contains(
            "notes POST /notes · 56.5 ms · 6 spans · 5 services: notes, notes_helper, \
             reqwest, calendar, postgres"
        ),
        "{head}"
    );
    assert_eq!(
        squeezed_lines(&text),
        vec![
            "notes actix_web.request POST /notes 56.5 ms",
            "├─ notes_helper notes_helper another_process 51.7 ms",
            "├─ reqwest reqwest.request GET /calendar 2.84 ms",
            "│ └─ calendar actix_web.request GET /calendar 621 µs",
            "│ └─ calendar calendar.get_date get_date 236 µs",
            "└─ postgres postgres.query INSERT INTO notes(description) VALUES ($1) RETURNING id 1.13 ms",
        ],
        "{text}"
    );
    // Columns are aligned: every duration ends in the same column.
    let ends: Vec<usize> = text.lines().skip(1).map(|l| l.chars().count()).collect();
    assert!(ends.windows(2).all(|w| w[0] == w[1]), "{text}");
}

#[test]
fn error_trace_marks_both_error_spans() {
    let trace = last("calendar_down.json");
    let text = render_text(&trace);
    assert!(
        text.lines()
            .next()
            .unwrap_or_default()
            .ends_with("· 2 errors"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let root = lines
        .iter()
        .position(|l| l.starts_with("notes ") && l.contains("POST /notes"))
        .unwrap_or_else(|| panic!("no root line:\n{text}"));
    assert!(lines[root].ends_with("ERROR"), "{text}");
    assert!(
        lines[root + 1].starts_with("│  ! notes::CalendarUnavailable: calendar call failed"),
        "{text}"
    );
    let client = lines
        .iter()
        .position(|l| l.contains("reqwest.request"))
        .unwrap_or_else(|| panic!("no client line:\n{text}"));
    assert!(lines[client].ends_with("ERROR"), "{text}");
    assert!(
        lines[client + 1].contains("! reqwest::Error(connect): error sending request"),
        "{text}"
    );
    // The helper span is not an error.
    let helper = lines
        .iter()
        .find(|l| l.contains("another_process"))
        .unwrap_or_else(|| panic!("no helper line:\n{text}"));
    assert!(!helper.contains("ERROR"), "{text}");
    // No calendar span: it was down.
    assert!(!text.contains("calendar.get_date"), "{text}");
}

#[test]
fn distributed_trace_as_svg() {
    let trace = last("add_date.json");
    let svg = render_svg(&trace, &Style::default());
    assert!(svg.starts_with("<svg"), "{svg}");
    // One bar (a group with a rect) per span.
    assert_eq!(svg.matches("<g class=\"span\"").count(), 6, "{svg}");
    for span in &trace.spans {
        assert!(
            svg.contains(&format!("data-span-id=\"{}\"", span.span_id)),
            "no bar for {span:?}"
        );
    }
    // Labels: service · resource · duration, whole or cut with an ellipsis.
    assert!(svg.contains(">notes · POST /notes · 56.5 ms<"), "{svg}");
    assert!(
        svg.contains(">notes_helper · another_process · 51.7 ms<"),
        "{svg}"
    );
    // Tooltips keep the whole text.
    assert!(
        svg.contains("<title>calendar · get_date · 236 µs\n"),
        "{svg}"
    );
    // One colour per service, each used by its bars and shown in the legend.
    let colours = service_colours(&trace);
    assert_eq!(colours.len(), 5);
    let mut distinct: Vec<&str> = colours.iter().map(|(_, c)| *c).collect();
    distinct.dedup();
    assert_eq!(distinct.len(), 5);
    for (service, colour) in &colours {
        assert!(svg.contains(&format!("fill=\"{colour}\"")), "{service}");
        assert!(
            svg.contains(&format!(">{service}</text>")),
            "legend {service}"
        );
    }
    // Title: root, duration, trace id; a time axis; no error marks.
    assert!(svg.contains(">notes POST /notes · 56.5 ms<"), "{svg}");
    assert!(
        svg.contains(&format!("trace {} (128-bit ", trace.trace_id)),
        "{svg}"
    );
    assert!(svg.contains(">50 ms<"), "{svg}");
    assert!(!svg.contains(ERROR_STROKE), "{svg}");
}

#[test]
fn svg_nests_children_below_parents_on_a_time_axis() {
    let trace = last("add_date.json");
    let svg = render_svg(&trace, &Style::default());
    // (y, x, width) of each span's rect, by span id.
    let bar = |span_id: u64| -> (f64, f64, f64) {
        let at = svg
            .find(&format!("data-span-id=\"{span_id}\""))
            .unwrap_or_else(|| panic!("no bar {span_id}"));
        let rect = &svg[at..];
        let rect = &rect[rect.find("<rect").unwrap_or(0)..];
        let attr = |name: &str| -> f64 {
            let key = format!(" {name}=\"");
            let from = rect.find(&key).map(|i| i + key.len()).unwrap_or(0);
            let to = rect[from..].find('"').map(|i| i + from).unwrap_or(from);
            rect[from..to].parse().unwrap_or(f64::NAN)
        };
        (attr("y"), attr("x"), attr("width"))
    };
    for span in &trace.spans {
        if let Some(parent) = trace.spans.iter().find(|p| p.span_id == span.parent_id) {
            let (py, px, pw) = bar(parent.span_id);
            let (y, x, w) = bar(span.span_id);
            assert!(y > py, "{} not below {}", span.resource, parent.resource);
            assert!(
                x >= px - 0.01 && x + w <= px + pw + 0.01,
                "{} outside",
                span.resource
            );
        }
    }
}

#[test]
fn error_trace_as_svg() {
    let trace = last("calendar_down.json");
    let svg = render_svg(&trace, &Style::default());
    assert_eq!(svg.matches("class=\"error\"").count(), 2, "{svg}");
    assert_eq!(
        svg.matches(&format!("stroke=\"{ERROR_STROKE}\"")).count(),
        3,
        "two bars and the legend swatch: {svg}"
    );
    assert!(svg.contains(">error</text>"), "{svg}");
    assert!(svg.contains(">! notes · POST /notes · "), "{svg}");
    assert!(svg.contains("\nerror: calendar call failed"), "{svg}");
    assert!(svg.contains(" · 2 errors"), "{svg}");
}

#[test]
fn narrow_bars_cut_their_labels() {
    let trace = last("add_date.json");
    let svg = render_svg(
        &trace,
        &Style {
            width: 320,
            ..Style::default()
        },
    );
    assert_eq!(svg.matches("<g class=\"span\"").count(), 6);
    // The helper's label no longer fits its bar: its resource is cut, the duration kept.
    assert!(
        svg.contains(">notes_helper · another_p… · 51.7 ms<"),
        "{svg}"
    );
    // The calendar spans are too narrow for any text: their labels go beside them.
    assert_eq!(svg.matches("class=\"outside\"").count(), 2, "{svg}");
    assert!(svg.contains(">calendar · get_date · 236 µs<"), "{svg}");
    // The 2.8 ms client span is 14 px wide, boxed in by its neighbours: no text at all.
    let at = svg.find("<title>reqwest · GET /calendar").unwrap_or(0);
    let group = &svg[at..at + svg[at..].find("</g>").unwrap_or(0)];
    assert!(!group.contains("<text"), "{group}");
}

#[test]
fn tutorial_sequence_lists_and_picks_traces() {
    let traces = traces("tutorial_sequence.json");
    assert_eq!(traces.len(), 8);
    let list = render_list(&traces);
    assert_eq!(list.lines().count(), 8, "{list}");
    // Oldest first: the sequence's first request is GET /notes, its last GET /calendar.
    assert!(
        list.lines()
            .next()
            .unwrap_or_default()
            .contains("notes GET /notes"),
        "{list}"
    );
    assert!(
        list.lines()
            .last()
            .unwrap_or_default()
            .contains("calendar GET /calendar"),
        "{list}"
    );
    let last = select(&traces, &Selector::Last).expect("a last trace");
    assert_eq!(last.roots()[0].resource, "GET /calendar");
    // The distributed one, by id.
    let distributed = traces
        .iter()
        .find(|t| t.services().contains(&"calendar") && t.services().contains(&"notes"))
        .expect("a trace with both services");
    let id = parse_trace_id(&distributed.trace_id.to_string()).expect("id");
    assert_eq!(
        select(&traces, &Selector::Id(id)).expect("by id"),
        distributed
    );
    // GET /notes holds the custom spans, nested: long_running_process > private_method_1.
    let get = traces
        .iter()
        .find(|t| t.roots()[0].resource == "GET /notes" && t.spans.len() == 5)
        .expect("GET /notes list trace");
    let text = render_text(get);
    let lines = squeezed_lines(&text);
    assert_eq!(
        lines[2..],
        [
            "├─ notes_helper notes_helper.long_running_process long_running_process 334 ms",
            "│ └─ notes_helper notes_helper.private_method_1 private_method_1 31.8 ms",
            "└─ notes_helper notes_helper another_process 51.1 ms",
        ],
        "{text}"
    );
}
