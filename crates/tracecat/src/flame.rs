//! The flame graph of one trace as an SVG document (drawn with the `svg` crate).
//!
//! Time runs left to right over the whole trace; the root is on top and each span sits below its
//! parent (spans that overlap in time go to separate rows, so none hides another). Each bar reads
//! `service · resource · duration` (cut to fit, the whole text in its tooltip), is coloured by
//! service (legend below), and an error span has a red outline and a `!` before its label.

use crate::model::{Span, Trace};
use crate::tree::{format_duration, rows, truncate};
use std::collections::{BTreeMap, BTreeSet};
use svg::node::element::{Element, Group, Line, Rectangle, Title};
use svg::{Document, Node};

/// Options of the picture.
#[derive(Clone, Debug)]
pub struct Style {
    /// Width of the whole picture in pixels.
    pub width: u32,
    /// Makes each bar a link to this text followed by the span id (the viewer's
    /// `?span=`); `None` for a plain picture.
    pub span_link: Option<String>,
    /// A span drawn as selected (dark outline).
    pub selected: Option<u64>,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            width: 1200,
            span_link: None,
            selected: None,
        }
    }
}

/// Fills for services, in order of first appearance: light enough for dark text.
pub const PALETTE: &[&str] = &[
    "#7eb0f7", // blue
    "#f7b267", // orange
    "#8dd39e", // green
    "#c9a4f5", // purple
    "#f2d16b", // yellow
    "#79d2d0", // teal
    "#f59fb5", // pink
    "#c7b98f", // khaki
    "#a9bfd9", // steel
    "#e3a27f", // clay
];
/// Outline of error spans.
pub const ERROR_STROKE: &str = "#d0021b";
const TEXT: &str = "#1d1d1f";
const MUTED: &str = "#5f6368";
const GRID: &str = "#e3e5e8";
const FONT: &str = "DejaVu Sans Mono, Menlo, Consolas, monospace";
const FONT_SIZE: f64 = 12.0;
/// Advance of one character of a 12 px monospace font (DejaVu Sans Mono: 0.602 em).
const CHAR_WIDTH: f64 = 7.23;
const MARGIN: f64 = 16.0;
const ROW: f64 = 24.0;
const SELECTED_STROKE: &str = "#1d1d1f";
const BAR: f64 = 20.0;
const AXIS_TOP: f64 = 62.0;
const BARS_TOP: f64 = 84.0;

/// The colour of each service of `trace`, in order of first appearance.
pub fn service_colours(trace: &Trace) -> Vec<(String, &'static str)> {
    trace
        .services()
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s.to_owned(), PALETTE[i % PALETTE.len()]))
        .collect()
}

/// A span's place in the picture.
#[derive(Debug, Clone)]
pub struct Bar<'a> {
    pub span: &'a Span,
    /// Row from the top, 0 for the root.
    pub row: usize,
    pub x: f64,
    pub width: f64,
}

/// Places every span: x from its start and duration, row below its parent's, the first row where
/// it overlaps nothing already placed.
pub fn layout<'a>(trace: &'a Trace, plot_left: f64, plot_width: f64) -> Vec<Bar<'a>> {
    let t0 = trace.start();
    let total = trace.duration().max(1) as f64;
    let scale = plot_width / total;
    // Per row, the spans placed there: start -> end, disjoint intervals (so only the one
    // starting last before a new span's end can overlap it).
    let mut occupied: Vec<BTreeMap<i64, i64>> = Vec::new();
    let mut bars: Vec<Bar<'a>> = Vec::new();
    for row in rows(trace) {
        let span = row.span;
        let (start, end) = (span.start, span.end().max(span.start + 1));
        let mut r = row.parent.map(|p| bars[p].row + 1).unwrap_or(0);
        loop {
            if occupied.len() <= r {
                occupied.resize_with(r + 1, BTreeMap::new);
            }
            let clash = occupied[r]
                .range(..end)
                .next_back()
                .is_some_and(|(_, &e)| e > start);
            if !clash {
                break;
            }
            r += 1;
        }
        occupied[r].insert(start, end);
        let x = plot_left + (span.start - t0) as f64 * scale;
        let width = (span.duration.max(0) as f64 * scale).max(1.0);
        bars.push(Bar {
            span,
            row: r,
            x,
            width: width.min(plot_left + plot_width - x).max(1.0),
        });
    }
    bars
}

/// Where a bar's label goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// On the bar.
    Inside,
    /// In the free space of its row, right of the bar.
    Right,
    /// In the free space of its row, left of the bar (the text ends at `x`).
    Left,
}

/// A placed label: its text (cut to fit), where it is anchored, on which side.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelPlace {
    pub text: String,
    pub x: f64,
    pub side: Side,
}

/// How many characters fit in `pixels` with 4 px of padding on each side.
fn chars_in(pixels: f64) -> usize {
    ((pixels - 8.0) / CHAR_WIDTH).floor().max(0.0) as usize
}

/// Places each bar's [`label`]: on the bar when it fits; else beside the bar, in the free space
/// of its row (right first) when it fits whole there; else wherever most of it fits, cut with `…`
/// (nothing under 2 characters; beside the bar, nothing under 8). Labels never overlap bars or
/// each other.
pub fn place_labels(bars: &[Bar<'_>], plot_left: f64, plot_right: f64) -> Vec<Option<LabelPlace>> {
    let mut places = vec![None; bars.len()];
    let rows = bars.iter().map(|b| b.row + 1).max().unwrap_or(0);
    for row in 0..rows {
        let mut order: Vec<usize> = (0..bars.len()).filter(|&i| bars[i].row == row).collect();
        order.sort_by(|&a, &b| bars[a].x.total_cmp(&bars[b].x));
        // Taken stretches of the row (the bars, then each outside label placed), by their
        // starts and by their ends, in hundredths of a pixel.
        let mut starts: BTreeSet<(i64, usize)> = BTreeSet::new();
        let mut ends: BTreeSet<(i64, usize)> = BTreeSet::new();
        let take = |from: f64, to: f64, starts: &mut BTreeSet<_>, ends: &mut BTreeSet<_>| {
            let n = starts.len();
            starts.insert((hundredths(from), n));
            ends.insert((hundredths(to), n));
        };
        for &i in &order {
            take(bars[i].x, bars[i].x + bars[i].width, &mut starts, &mut ends);
        }
        for &i in &order {
            let bar = &bars[i];
            let full = label(bar.span);
            let need = full.chars().count();
            let (left_edge, right_edge) = (bar.x, bar.x + bar.width);
            // The nearest stretch starting at or after the bar's right edge (not the bar
            // itself), and the nearest ending at or before its left edge.
            let (l, r) = (hundredths(left_edge), hundredths(right_edge));
            let free_right = starts
                .range(((r - 1).max(l + 1), 0)..)
                .next()
                .map(|&(s, _)| s as f64 / 100.0)
                .map_or(plot_right, |s| s.min(plot_right))
                - right_edge;
            let free_left = left_edge
                - ends
                    .range(..((l + 1).min(r - 1) + 1, 0))
                    .next_back()
                    .map(|&(e, _)| e as f64 / 100.0)
                    .map_or(plot_left, |e| e.max(plot_left));
            let options = [
                (Side::Inside, chars_in(bar.width), 2),
                (Side::Right, chars_in(free_right), 8),
                (Side::Left, chars_in(free_left), 8),
            ];
            let pick = options
                .iter()
                .find(|(_, fits, _)| *fits >= need)
                .or_else(|| {
                    options
                        .iter()
                        .filter(|(_, fits, least)| fits >= least)
                        .max_by_key(|(_, fits, _)| *fits)
                });
            let Some(&(side, fits, _)) = pick else {
                continue;
            };
            let text = fit_label(bar.span, fits);
            let width = text.chars().count() as f64 * CHAR_WIDTH + 8.0;
            let x = match side {
                Side::Inside => left_edge + 4.0,
                Side::Right => {
                    take(right_edge, right_edge + width, &mut starts, &mut ends);
                    right_edge + 4.0
                }
                Side::Left => {
                    take(left_edge - width, left_edge, &mut starts, &mut ends);
                    left_edge - 4.0
                }
            };
            places[i] = Some(LabelPlace { text, x, side });
        }
    }
    places
}

/// A position in hundredths of a pixel, as a key.
fn hundredths(v: f64) -> i64 {
    (v * 100.0).round() as i64
}

/// The label on a span's bar: `service · resource · duration`.
pub fn label(span: &Span) -> String {
    let resource = if span.resource.is_empty() {
        &span.name
    } else {
        &span.resource
    };
    format!(
        "{}{} · {} · {}",
        if span.error { "! " } else { "" },
        span.service,
        resource,
        format_duration(span.duration)
    )
}

/// [`label`] in at most `max` characters: whole if it fits; else with the resource cut (keeping
/// service and duration) when at least 4 of its characters fit; else cut at the end.
pub fn fit_label(span: &Span, max: usize) -> String {
    let full = label(span);
    if full.chars().count() <= max {
        return full;
    }
    let resource = if span.resource.is_empty() {
        &span.name
    } else {
        &span.resource
    };
    let fixed = full.chars().count() - resource.chars().count();
    if max >= fixed + 4 {
        let cut = truncate(resource, max - fixed);
        return format!(
            "{}{} · {} · {}",
            if span.error { "! " } else { "" },
            span.service,
            cut,
            format_duration(span.duration)
        );
    }
    truncate(&full, max)
}

/// Tick spacing for `total` nanoseconds: 1, 2 or 5 times a power of ten, about 8 ticks.
pub fn tick_step(total: i64) -> i64 {
    let target = (total.max(1) as f64) / 8.0;
    let mut step: i64 = 1;
    loop {
        for m in [1, 2, 5] {
            let s = step.saturating_mul(m);
            if s as f64 >= target {
                return s;
            }
        }
        if step > i64::MAX / 10 {
            return step;
        }
        step *= 10;
    }
}

/// A tick's label in the unit that suits the whole trace.
pub fn tick_label(nanos: i64, total: i64) -> String {
    let (div, unit) = if total >= 2_000_000_000 {
        (1e9, "s")
    } else if total >= 2_000_000 {
        (1e6, "ms")
    } else if total >= 2_000 {
        (1e3, "µs")
    } else {
        (1.0, "ns")
    };
    let v = format!("{:.3}", nanos as f64 / div);
    let v = v.trim_end_matches('0').trim_end_matches('.');
    format!("{v} {unit}")
}

/// A `<text>` element. (Built as a plain element: the crate's `Text` type writes its content on
/// lines of its own, which would put spaces into the labels when read back.)
fn text(content: impl Into<String>, x: f64, y: f64, size: f64, fill: &str) -> Element {
    let mut element = Element::new("text");
    element.assign("x", x);
    element.assign("y", y);
    element.assign("font-family", FONT);
    element.assign("font-size", size);
    element.assign("fill", fill);
    element.append(svg::node::Text::new(content));
    element
}

/// The flame graph of `trace` as an SVG document.
pub fn render_svg(trace: &Trace, style: &Style) -> String {
    let width = f64::from(style.width.max(320));
    let plot_left = MARGIN;
    let plot_width = width - 2.0 * MARGIN;
    let bars = layout(trace, plot_left, plot_width);
    let colours = service_colours(trace);
    let row_count = bars.iter().map(|b| b.row + 1).max().unwrap_or(0);
    let bars_bottom = BARS_TOP + row_count as f64 * ROW;
    let legend_lines = legend_lines(&colours, trace.error_count() > 0, width);
    let legend_top = bars_bottom + 16.0;
    let height = legend_top + legend_lines.len() as f64 * 20.0 + 8.0;

    let (title, subtitle) = headings(trace, colours.len(), width);
    let mut doc = Document::new()
        .set("width", width)
        .set("height", height)
        .set("viewBox", (0, 0, width, height))
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "#ffffff"),
        )
        .add(title)
        .add(subtitle)
        .add(time_axis(
            trace.duration(),
            plot_left,
            plot_width,
            bars_bottom,
        ));
    let t0 = trace.start();
    let places = place_labels(&bars, plot_left, plot_left + plot_width);
    for (bar, place) in bars.iter().zip(&places) {
        let colour = colour_of(&colours, &bar.span.service);
        doc = doc.add(span_node(bar, place.as_ref(), colour, t0, style));
    }
    doc.add(legend(&legend_lines, legend_top)).to_string()
}

/// The fill of `service` (the first colour for one not in `colours`).
fn colour_of(colours: &[(String, &'static str)], service: &str) -> &'static str {
    colours
        .iter()
        .find(|(s, _)| s == service)
        .map(|(_, c)| *c)
        .unwrap_or(PALETTE[0])
}

/// One legend entry: where it starts, the service (or `error`), its fill (`None`: the error
/// outline).
type LegendEntry = (f64, String, Option<&'static str>);

/// The legend's entries, one per service and `error` when `errors`, wrapped into lines that
/// fit `width`.
fn legend_lines(
    colours: &[(String, &'static str)],
    errors: bool,
    width: f64,
) -> Vec<Vec<LegendEntry>> {
    let mut entries: Vec<(String, Option<&'static str>)> =
        colours.iter().map(|(s, c)| (s.clone(), Some(*c))).collect();
    if errors {
        entries.push(("error".to_owned(), None));
    }
    let mut lines: Vec<Vec<LegendEntry>> = vec![Vec::new()];
    let mut x = MARGIN;
    for (name, colour) in entries {
        let w = 14.0 + 6.0 + name.chars().count() as f64 * CHAR_WIDTH + 18.0;
        if x + w > width - MARGIN && x > MARGIN {
            lines.push(Vec::new());
            x = MARGIN;
        }
        if let Some(line) = lines.last_mut() {
            line.push((x, name, colour));
        }
        x += w;
    }
    lines
}

/// The title (root service, resource, duration) and the subtitle (ids and counts), each cut to
/// fit `width`.
fn headings(trace: &Trace, service_count: usize, width: f64) -> (Element, Element) {
    let title = match trace.roots().first() {
        Some(r) => format!(
            "{} {} · {}",
            r.service,
            r.resource,
            format_duration(trace.duration())
        ),
        None => format_duration(trace.duration()),
    };
    // Bold 16 px characters are about 9.7 px wide.
    let title = truncate(&title, ((width - 2.0 * MARGIN) / 9.7) as usize);
    let mut heading = text(title, MARGIN, 26.0, 16.0, TEXT);
    heading.assign("font-weight", "bold");
    let mut sub = format!("trace {}", trace.trace_id);
    if let Some(id) = trace.trace_id_128() {
        sub.push_str(&format!(" (128-bit {id})"));
    }
    sub.push_str(&format!(
        " · {} spans · {} services",
        trace.spans.len(),
        service_count
    ));
    match trace.error_count() {
        0 => {}
        1 => sub.push_str(" · 1 error"),
        n => sub.push_str(&format!(" · {n} errors")),
    }
    let sub = truncate(&sub, ((width - 2.0 * MARGIN) / CHAR_WIDTH) as usize);
    (heading, text(sub, MARGIN, 46.0, FONT_SIZE, MUTED))
}

/// The time axis over `duration`: grid lines through the bars (down to `bars_bottom`), labels
/// above.
fn time_axis(duration: i64, plot_left: f64, plot_width: f64, bars_bottom: f64) -> Group {
    let total = duration.max(1);
    let step = tick_step(total);
    let mut axis = Group::new().set("class", "axis");
    let mut t = 0i64;
    while t <= total {
        let x = plot_left + t as f64 / total as f64 * plot_width;
        axis = axis
            .add(
                Line::new()
                    .set("x1", x)
                    .set("x2", x)
                    .set("y1", AXIS_TOP + 6.0)
                    .set("y2", bars_bottom)
                    .set("stroke", GRID)
                    .set("stroke-width", 1),
            )
            .add({
                let mut tick = text(tick_label(t, total), x, AXIS_TOP, 11.0, MUTED);
                tick.assign("text-anchor", if t == 0 { "start" } else { "middle" });
                tick
            });
        match t.checked_add(step) {
            Some(next) => t = next,
            None => break,
        }
    }
    axis
}

/// One span: its bar (outlined when selected or failed), its tooltip, its label where
/// [`place_labels`] found room, and the link of `style.span_link`. `t0`: the trace's start.
fn span_node(
    bar: &Bar<'_>,
    place: Option<&LabelPlace>,
    colour: &str,
    t0: i64,
    style: &Style,
) -> Box<dyn Node> {
    let span = bar.span;
    let y = BARS_TOP + bar.row as f64 * ROW;
    let mut rect = Rectangle::new()
        .set("x", round(bar.x))
        .set("y", y)
        .set("width", round(bar.width))
        .set("height", BAR)
        .set("rx", 2)
        .set("fill", colour);
    if style.selected == Some(span.span_id) {
        rect = rect
            .set("stroke", SELECTED_STROKE)
            .set("stroke-width", 3)
            .set(
                "class",
                if span.error {
                    "selected error"
                } else {
                    "selected"
                },
            );
    } else if span.error {
        rect = rect
            .set("stroke", ERROR_STROKE)
            .set("stroke-width", 2.5)
            .set("class", "error");
    } else {
        rect = rect.set("stroke", "#ffffff").set("stroke-width", 0.5);
    }
    let mut group = Group::new()
        .set("class", "span")
        .set("data-service", span.service.as_str())
        .set("data-span-id", span.span_id.to_string())
        .add(Title::new(tooltip(span, t0)))
        .add(rect);
    if let Some(place) = place {
        let fill = if span.error { ERROR_STROKE } else { TEXT };
        let mut label = text(
            place.text.as_str(),
            round(place.x),
            y + 14.5,
            FONT_SIZE,
            fill,
        );
        if place.side == Side::Left {
            label.assign("text-anchor", "end");
        }
        if place.side != Side::Inside {
            label.assign("class", "outside");
        }
        group = group.add(label);
    }
    match &style.span_link {
        Some(prefix) => {
            let mut link = Element::new("a");
            link.assign("href", format!("{prefix}{}", span.span_id));
            link.append(group);
            Box::new(link)
        }
        None => Box::new(group),
    }
}

/// A span's tooltip: its whole label, operation, timing, id and error message (the viewer's
/// bars show the same on hover).
pub fn tooltip(span: &Span, t0: i64) -> String {
    let mut tip = format!(
        "{}\noperation: {}\nstart: +{} · duration: {}\nspan id: {}",
        label(span),
        span.name,
        format_duration(span.start - t0),
        format_duration(span.duration),
        span.span_id
    );
    if let Some(message) = span.error_message().filter(|_| span.error) {
        tip.push_str(&format!("\nerror: {message}"));
    }
    tip
}

/// The legend: a swatch and a name per entry, line by line from `top`.
fn legend(lines: &[Vec<LegendEntry>], top: f64) -> Group {
    let mut legend = Group::new().set("class", "legend");
    for (i, line) in lines.iter().enumerate() {
        let y = top + i as f64 * 20.0;
        for (x, name, colour) in line {
            let swatch = Rectangle::new()
                .set("x", *x)
                .set("y", y)
                .set("width", 14)
                .set("height", 14)
                .set("rx", 2);
            let swatch = match colour {
                Some(c) => swatch.set("fill", *c),
                None => swatch
                    .set("fill", "#ffffff")
                    .set("stroke", ERROR_STROKE)
                    .set("stroke-width", 2.5),
            };
            legend =
                legend
                    .add(swatch)
                    .add(text(name.as_str(), x + 20.0, y + 11.5, FONT_SIZE, TEXT));
        }
    }
    legend
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        assert_eq!(tick_step(60_000_000), 10_000_000);
        assert_eq!(tick_step(8), 1);
        assert_eq!(tick_step(1), 1);
        assert_eq!(tick_step(i64::MAX), 2_000_000_000_000_000_000);
        assert_eq!(tick_label(10_000_000, 60_000_000), "10 ms");
        assert_eq!(tick_label(500_000, 1_500_000), "500 µs");
        assert_eq!(tick_label(2_500_000_000, 4_000_000_000), "2.5 s");
        assert_eq!(tick_label(0, 5), "0 ns");
    }
}
