//! The trace page's two drawings, as HTML and CSS: the flame graph and the waterfall.
//!
//! Unlike the SVG of [`crate::flame`] (a picture of a fixed width, for files), positions here are
//! percentages of the drawing's width, so both drawings fill the browser window whatever its
//! width. Every bar and row is a link that selects its span (`?span=ID`); in the flame graph a
//! bar with spans under it also zooms to that subtree (`&zoom=ID`), its ancestors staying above
//! it as full-width bars that zoom back out. Every bar carries a `title` naming its span, so a bar
//! too narrow for its label still says what it is on hover.

use crate::flame::{label, layout, service_colours, tick_label, tick_step, tooltip, PALETTE};
use crate::model::{Span, Trace};
use crate::tree::{format_duration, rows, Row};
use crate::web::esc;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

/// Which drawing the trace page shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum View {
    /// Time left to right, each span below its parent.
    #[default]
    Flame,
    /// One row per span in tree order, indented by depth, bars on a shared time axis.
    Waterfall,
}

impl View {
    /// The view of a `view=` query value (anything but `waterfall` is the flame graph).
    pub fn from_param(value: Option<&str>) -> View {
        match value.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("waterfall") => View::Waterfall,
            _ => View::Flame,
        }
    }
}

/// What the trace page was asked for (its query string).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Focus {
    pub view: View,
    /// The selected span (`span=`); the root when absent or not in the trace.
    pub selected: Option<u64>,
    /// The span whose subtree fills the drawing (`zoom=`); the whole trace when absent.
    pub zoom: Option<u64>,
}

/// A link to the trace page with this view, selection and zoom (relative: `?view=…&span=…`).
pub fn href(view: View, span: Option<u64>, zoom: Option<u64>) -> String {
    let mut parts = Vec::new();
    if view == View::Waterfall {
        parts.push("view=waterfall".to_owned());
    }
    if let Some(s) = span {
        parts.push(format!("span={s}"));
    }
    if let Some(z) = zoom {
        parts.push(format!("zoom={z}"));
    }
    format!("?{}", parts.join("&amp;"))
}

/// The trace's spans in tree order with what the page needs to know about them.
pub struct Shape<'a> {
    pub rows: Vec<Row<'a>>,
    /// Index in `rows` of each span id.
    index: HashMap<u64, usize>,
    /// Spans with at least one child.
    parents: HashSet<u64>,
    /// The trace has a single root (zooming to it is the whole trace).
    single_root: bool,
}

impl<'a> Shape<'a> {
    pub fn new(trace: &'a Trace) -> Shape<'a> {
        let rows = rows(trace);
        let index = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.span.span_id, i))
            .collect();
        let parents = rows
            .iter()
            .filter_map(|r| r.parent.map(|p| rows[p].span.span_id))
            .collect();
        let single_root = rows.iter().filter(|r| r.parent.is_none()).count() == 1;
        Shape {
            rows,
            index,
            parents,
            single_root,
        }
    }

    pub fn span(&self, id: u64) -> Option<&'a Span> {
        self.index.get(&id).map(|&i| self.rows[i].span)
    }

    pub fn has_children(&self, id: u64) -> bool {
        self.parents.contains(&id)
    }

    /// Where `zoom`'s subtree is in `rows` (all of them without a zoom): tree order puts a span's
    /// descendants right after it.
    pub fn range(&self, zoom: Option<u64>) -> std::ops::Range<usize> {
        let Some(&start) = zoom.and_then(|z| self.index.get(&z)) else {
            return 0..self.rows.len();
        };
        let depth = self.rows[start].depth;
        let end = self.rows[start + 1..]
            .iter()
            .position(|r| r.depth <= depth)
            .map_or(self.rows.len(), |n| start + 1 + n);
        start..end
    }

    /// The rows of `zoom`'s subtree (all rows without a zoom).
    pub fn subtree(&self, zoom: Option<u64>) -> &[Row<'a>] {
        &self.rows[self.range(zoom)]
    }

    /// Whether `id` is in `zoom`'s subtree.
    pub fn within(&self, id: u64, zoom: Option<u64>) -> bool {
        self.index
            .get(&id)
            .is_some_and(|i| self.range(zoom).contains(i))
    }

    /// The ancestors of `id`, the root first.
    pub fn ancestors(&self, id: u64) -> Vec<&'a Span> {
        let mut out = Vec::new();
        let mut at = self.index.get(&id).and_then(|&i| self.rows[i].parent);
        while let Some(i) = at {
            out.push(self.rows[i].span);
            at = self.rows[i].parent;
        }
        out.reverse();
        out
    }

    /// Where selecting `id` zooms: its subtree when it has children (the whole trace for the
    /// single root), else the current zoom.
    pub fn zoom_for(&self, id: u64, current: Option<u64>) -> Option<u64> {
        if !self.has_children(id) {
            return current;
        }
        let is_root = self
            .index
            .get(&id)
            .is_some_and(|&i| self.rows[i].parent.is_none());
        if is_root && self.single_root {
            None
        } else {
            Some(id)
        }
    }
}

/// A span's short name: its resource, else its operation.
pub fn span_title(span: &Span) -> &str {
    if span.resource.is_empty() {
        &span.name
    } else {
        &span.resource
    }
}

/// The hover text of a bar (a `title` attribute): the flame graph picture's tooltip.
fn hover(span: &Span, t0: i64) -> String {
    esc(&tooltip(span, t0)).replace('\n', "&#10;")
}

/// The fill of a service.
fn colour(colours: &[(String, &'static str)], service: &str) -> &'static str {
    colours
        .iter()
        .find(|(s, _)| s == service)
        .map_or(PALETTE[0], |(_, c)| c)
}

/// The red error mark.
pub const ERROR_MARK: &str = "<b class=\"mark\" title=\"error\" aria-label=\"error\">!</b>";

/// A fraction of `[from, from + total)` as a CSS percentage.
fn pct(value: f64) -> String {
    format!("{:.4}%", value.clamp(0.0, 100.0))
}

/// The time axis of a window `total` nanoseconds long that starts `offset` nanoseconds into the
/// trace: ticks at round times since the trace's start (so a zoomed axis still reads as the
/// trace's time), placed at percentages of the width; grid lines too when `grid`.
fn axis(offset: i64, total: i64, grid: bool) -> String {
    let total = total.max(1);
    let offset = offset.max(0);
    let step = tick_step(total);
    let mut out = String::from("<div class=\"axis\" aria-hidden=\"true\">");
    // The first multiple of `step` at or after `offset`.
    let mut t = offset.div_euclid(step).saturating_mul(step);
    if t < offset {
        t = t.saturating_add(step);
    }
    while t <= offset.saturating_add(total) {
        let at = (t - offset) as f64 / total as f64 * 100.0;
        let class = if at < 4.0 {
            "tick first"
        } else if at > 94.0 {
            "tick last"
        } else {
            "tick"
        };
        let _ = write!(
            out,
            "<span class=\"{class}\" style=\"left:{}\">{}</span>",
            pct(at),
            esc(&tick_label(t, total))
        );
        if grid {
            let _ = write!(
                out,
                "<span class=\"grid\" style=\"left:{}\"></span>",
                pct(at)
            );
        }
        match t.checked_add(step) {
            Some(next) => t = next,
            None => break,
        }
    }
    out.push_str("</div>");
    out
}

/// Units of the layout's width: fine enough that the narrowest span is not widened.
const UNITS: f64 = 1_000_000.0;

/// A bar's classes: `bar`, and `error`, `selected`, `ancestor` as they apply.
fn classes(base: &str, span: &Span, selected: Option<u64>, extra: &str) -> String {
    let mut c = base.to_owned();
    if span.error {
        c.push_str(" error");
    }
    if selected == Some(span.span_id) {
        c.push_str(" selected");
    }
    c.push_str(extra);
    c
}

/// The flame graph of `zoom`'s subtree (the whole trace without a zoom), as HTML.
pub fn flame_html(trace: &Trace, shape: &Shape<'_>, focus: &Focus) -> String {
    let colours = service_colours(trace);
    let sub = shape.subtree(focus.zoom);
    let shown = Trace {
        trace_id: trace.trace_id,
        trace_id_high: trace.trace_id_high,
        spans: sub.iter().map(|r| r.span.clone()).collect(),
    };
    let t0 = trace.start();
    let bars = layout(&shown, 0.0, UNITS);
    let ancestors = focus.zoom.map(|z| shape.ancestors(z)).unwrap_or_default();
    let rows = ancestors.len() + bars.iter().map(|b| b.row + 1).max().unwrap_or(0);
    let mut out = format!(
        "<div class=\"flame\" id=\"flame\" role=\"group\" aria-label=\"Flame graph\" \
         style=\"height:{}px\">{}",
        24 + rows * 24,
        axis(shown.start() - trace.start(), shown.duration(), true)
    );
    let bar = |out: &mut String, span: &Span, class: String, left: f64, width: f64, row: usize| {
        let link = href(
            focus.view,
            Some(span.span_id),
            shape.zoom_for(span.span_id, focus.zoom),
        );
        let _ = write!(
            out,
            "<a class=\"{class}\" data-span-id=\"{id}\" data-service=\"{svc}\" data-name=\"{op}\" \
             href=\"{link}\" title=\"{tip}\" style=\"left:{left};width:{width};top:{top}px;\
             background:{fill}\">{mark}{text}</a>",
            id = span.span_id,
            svc = esc(&span.service),
            op = esc(&span.name),
            tip = hover(span, t0),
            left = pct(left),
            width = pct(width),
            top = 24 + row * 24,
            fill = colour(&colours, &span.service),
            mark = if span.error { ERROR_MARK } else { "" },
            text = esc(&label(span)[if span.error { 2 } else { 0 }..]),
        );
    };
    for (row, span) in ancestors.iter().enumerate() {
        let class = classes("bar", span, focus.selected, " ancestor");
        bar(&mut out, span, class, 0.0, 100.0, row);
    }
    for b in &bars {
        let class = classes("bar", b.span, focus.selected, "");
        let (left, width) = (b.x / UNITS * 100.0, b.width / UNITS * 100.0);
        bar(
            &mut out,
            b.span,
            class,
            left,
            width.min(100.0 - left),
            ancestors.len() + b.row,
        );
    }
    out.push_str("</div>");
    out.push_str(&legend(&colours, trace.error_count() > 0));
    out
}

/// The services' colours, and the error mark when the trace has errors.
fn legend(colours: &[(String, &'static str)], errors: bool) -> String {
    let mut out = String::from("<p class=\"legend\">");
    for (service, c) in colours {
        let _ = write!(
            out,
            "<span><span class=\"swatch\" style=\"background:{c}\"></span>{}</span>",
            esc(service)
        );
    }
    if errors {
        let _ = write!(
            out,
            "<span class=\"err\"><span class=\"swatch error-swatch\"></span>{ERROR_MARK} error</span>"
        );
    }
    out.push_str("</p>");
    out
}

/// The waterfall of `zoom`'s subtree (the whole trace without a zoom), as an HTML table.
pub fn waterfall_html(trace: &Trace, shape: &Shape<'_>, focus: &Focus) -> String {
    let colours = service_colours(trace);
    let sub = shape.subtree(focus.zoom);
    let from = sub.iter().map(|r| r.span.start).min().unwrap_or(0);
    let to = sub.iter().map(|r| r.span.end()).max().unwrap_or(from);
    let total = (to - from).max(1);
    let base_depth = sub.first().map_or(0, |r| r.depth);
    let t0 = trace.start();
    // The lanes' grid lines: a background repeated every tick, shifted to the first tick (a
    // background's percentage position p puts it at p% of the width left over beside it).
    let step = tick_step(total);
    let offset = from - trace.start();
    let first = (step - offset.rem_euclid(step)) % step;
    let (step_pct, first_frac) = (
        step as f64 / total as f64 * 100.0,
        first as f64 / total as f64,
    );
    let shift = if step_pct < 100.0 {
        first_frac / (1.0 - step_pct / 100.0) * 100.0
    } else {
        0.0
    };
    let mut out = format!(
        "<table class=\"waterfall\" id=\"waterfall\" style=\"--tick:{};--tick-at:{}\"><colgroup>\
         <col class=\"wf-name-col\"><col class=\"wf-dur-col\"><col></colgroup><thead><tr>\
         <th>span</th><th class=\"num\">duration</th><th class=\"lane-head\">{}</th></tr></thead>\
         <tbody>",
        pct(step_pct),
        pct(shift),
        axis(offset, total, false)
    );
    for row in sub {
        let s = row.span;
        let depth = row.depth - base_depth;
        let left = (s.start - from) as f64 / total as f64 * 100.0;
        let width = s.duration.max(0) as f64 / total as f64 * 100.0;
        let into = shape.zoom_for(s.span_id, focus.zoom);
        let zoom_link = if into != focus.zoom {
            format!(
                " <a class=\"zoom-in\" href=\"{}\" title=\"Show only this span and the spans \
                 under it\">zoom in</a>",
                href(View::Waterfall, Some(s.span_id), into)
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr class=\"{class}\" data-span-id=\"{id}\" data-parent-id=\"{parent}\" \
             data-depth=\"{depth}\" data-service=\"{svc}\" data-name=\"{op}\">\
             <td class=\"wf-name\" style=\"padding-left:{indent}px\" title=\"{tip}\">\
             <span class=\"swatch\" style=\"background:{fill}\"></span>{mark}\
             <a href=\"{link}\">{res}</a> <span class=\"svc\">{svc}</span>{zoom_link}</td>\
             <td class=\"num\">{dur}</td><td class=\"lane\"><a class=\"{bar}\" href=\"{link}\" \
             tabindex=\"-1\" aria-hidden=\"true\" style=\"left:{left};width:{width};\
             background:{fill}\" title=\"{tip}\"></a></td></tr>",
            class = classes("wf-row", s, focus.selected, ""),
            id = s.span_id,
            parent = s.parent_id,
            svc = esc(&s.service),
            op = esc(&s.name),
            indent = 8 + 18 * depth.min(40),
            tip = hover(s, t0),
            fill = colour(&colours, &s.service),
            mark = if s.error { ERROR_MARK } else { "" },
            link = href(View::Waterfall, Some(s.span_id), focus.zoom),
            res = esc(span_title(s)),
            dur = format_duration(s.duration),
            bar = if s.error { "wf-bar error" } else { "wf-bar" },
            left = pct(left),
            width = pct(width.min(100.0 - left)),
        );
    }
    out.push_str("</tbody></table>");
    out.push_str(&legend(&colours, trace.error_count() > 0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::traces_from_json;
    use serde_json::json;

    fn trace() -> Trace {
        let span = |id: u64, parent: u64, start: i64, duration: i64, error: bool| {
            json!({"service": format!("s{id}"), "name": "op", "resource": format!("r{id}"),
                   "trace_id": 1, "span_id": id, "parent_id": parent, "start": start,
                   "duration": duration, "error": i32::from(error)})
        };
        // 1 ─┬─ 2 ── 3
        //    └─ 4
        let input = json!([
            span(1, 0, 0, 100, false),
            span(2, 1, 10, 50, false),
            span(3, 2, 20, 10, true),
            span(4, 1, 70, 20, false)
        ]);
        traces_from_json(&input)
            .expect("valid")
            .into_iter()
            .next()
            .expect("one trace")
    }

    #[test]
    fn subtrees_ancestors_and_zoom_targets() {
        let trace = trace();
        let shape = Shape::new(&trace);
        let ids = |rows: &[Row<'_>]| rows.iter().map(|r| r.span.span_id).collect::<Vec<_>>();
        assert_eq!(ids(shape.subtree(None)), vec![1, 2, 3, 4]);
        assert_eq!(ids(shape.subtree(Some(2))), vec![2, 3]);
        assert_eq!(ids(shape.subtree(Some(4))), vec![4]);
        assert_eq!(ids(shape.subtree(Some(99))), vec![1, 2, 3, 4]);
        assert!(shape.within(3, Some(2)) && !shape.within(4, Some(2)));
        let ancestors: Vec<u64> = shape.ancestors(3).iter().map(|s| s.span_id).collect();
        assert_eq!(ancestors, vec![1, 2]);
        // A parent zooms to itself, the single root to the whole trace, a leaf keeps the zoom.
        assert_eq!(shape.zoom_for(2, None), Some(2));
        assert_eq!(shape.zoom_for(1, Some(2)), None);
        assert_eq!(shape.zoom_for(3, Some(2)), Some(2));
        assert_eq!(
            href(View::Waterfall, Some(3), Some(2)),
            "?view=waterfall&amp;span=3&amp;zoom=2"
        );
        assert_eq!(View::from_param(Some("waterfall")), View::Waterfall);
        assert_eq!(View::from_param(Some("nonsense")), View::Flame);
    }

    #[test]
    fn zoomed_flame_fills_the_width_with_the_subtree_and_keeps_its_ancestors() {
        let trace = trace();
        let shape = Shape::new(&trace);
        let focus = Focus {
            view: View::Flame,
            selected: Some(3),
            zoom: Some(2),
        };
        let html = flame_html(&trace, &shape, &focus);
        // The ancestor above, the zoomed span across the whole width, its child on half of it.
        assert_eq!(html.matches("class=\"bar ancestor\"").count(), 1);
        assert!(html.contains(
            "data-span-id=\"2\" data-service=\"s2\" data-name=\"op\" href=\"?span=2&amp;zoom=2\""
        ));
        assert!(
            html.contains("style=\"left:0.0000%;width:100.0000%;top:48px"),
            "{html}"
        );
        assert!(
            html.contains("style=\"left:20.0000%;width:20.0000%;top:72px"),
            "{html}"
        );
        assert!(!html.contains("data-span-id=\"4\""), "{html}");
        // Its time axis still reads as the trace's time: 10 ns at the left edge, 60 at the right.
        assert!(
            html.contains("style=\"left:0.0000%\">10 ns</span>"),
            "{html}"
        );
        assert!(
            html.contains("style=\"left:100.0000%\">60 ns</span>"),
            "{html}"
        );
        // The error span is selected, marked and named on hover.
        assert!(html.contains("class=\"bar error selected\""), "{html}");
        assert!(
            html.contains("title=\"! s3 · r3 · 10 ns&#10;operation: op"),
            "{html}"
        );
        assert!(html.contains(ERROR_MARK));
        // The ancestor (the single root) zooms back out to the whole trace.
        assert!(html
            .contains("data-span-id=\"1\" data-service=\"s1\" data-name=\"op\" href=\"?span=1\""));
    }

    #[test]
    fn waterfall_rows_are_indented_on_one_time_axis() {
        let trace = trace();
        let shape = Shape::new(&trace);
        let focus = Focus {
            view: View::Waterfall,
            selected: None,
            zoom: None,
        };
        let html = waterfall_html(&trace, &shape, &focus);
        assert_eq!(html.matches("<tr class=\"wf-row").count(), 4);
        assert!(html.contains("style=\"padding-left:44px\""), "{html}");
        assert!(
            html.contains("style=\"left:70.0000%;width:20.0000%;"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"?view=waterfall&amp;span=3\">r3</a>"),
            "{html}"
        );
        assert!(html.contains("class=\"wf-bar error\""), "{html}");
        assert!(
            html.contains("href=\"?view=waterfall&amp;span=2&amp;zoom=2\""),
            "{html}"
        );
    }
}
