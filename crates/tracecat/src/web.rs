//! The viewer's pages and JSON, built from traces (no I/O here: [`crate::serve`] fetches).
//!
//! Plain HTML with the flame graph or the waterfall of [`crate::views`]; selecting a span, zooming
//! and switching views are links (`?span=ID&zoom=ID&view=waterfall`), so every page works without
//! a script. The list's script refreshes it while requests come in (without losing what is being
//! typed into the filters); the trace page's helps the keyboard (Escape zooms out).

use crate::arrival::{State, Watcher};
use crate::flame::service_colours;
use crate::model::{Filter, Span, Trace};
use crate::tree::{format_duration, rows};
use crate::views::{flame_html, href, span_title, waterfall_html, Focus, Shape, View, ERROR_MARK};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// The list page's filters, from its query string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only traces with a span of this service.
    pub service: Option<String>,
    /// Only traces whose root resource contains this.
    pub resource: Option<String>,
    /// Only traces with an error.
    pub errors: bool,
    /// Background traces too (`background=1`): without it, the list hides the traces whose
    /// root span is not a web request ([`is_background`]), such as notes' start-up trace.
    pub background: bool,
}

impl ListQuery {
    /// The model's filter for service and resource.
    pub fn filter(&self) -> Filter {
        Filter {
            service: self.service.clone(),
            resource: self.resource.clone(),
        }
    }

    /// Whether `trace` passes every filter.
    pub fn matches(&self, trace: &Trace) -> bool {
        self.filter().matches(trace) && (!self.errors || trace.error_count() > 0)
    }

    /// Whether the list page shows `trace`: it passes every filter, and it is a web request's
    /// trace unless background traces are asked for.
    pub fn shows(&self, trace: &Trace) -> bool {
        self.matches(trace) && (self.background || !is_background(trace))
    }
}

/// Whether a trace is background work rather than a request someone sent: its root span is not
/// of type `web` (notes' start-up trace `notes.startup`, a statement traced on its own). A trace
/// whose root has not arrived yet is not background.
pub fn is_background(trace: &Trace) -> bool {
    trace
        .roots()
        .first()
        .is_some_and(|root| root.parent_id == 0 && root.span_type != "web")
}

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A start time in UTC: `2026-12-02 15:04:05.123`.
pub fn format_time(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos)
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d1d1f;background:#f6f7f9}
header{background:#632ca6;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}
header a{color:#fff;text-decoration:none;font-weight:600}
header .agent{opacity:.8;font-size:12px;margin-left:auto}
main{padding:16px 20px}
h1{font-size:18px;margin:4px 0 4px}
h2{font-size:16px;margin:0 0 2px;overflow-wrap:anywhere}
a{color:#3b1d8f}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible{outline:3px solid #632ca6;outline-offset:2px}
table{border-collapse:collapse;background:#fff;width:100%}
.stats{margin:8px 0 14px}
.stats h2{font-size:15px;margin:6px 0}
.stats-table td.num,.stats-table th{text-align:right}
.stats-table td:first-child,.stats-table td:nth-child(2),.stats-table th:first-child,.stats-table th:nth-child(2){text-align:left}
.stats-table td.error{color:#a00016;font-weight:700}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e5e8;vertical-align:top}
th{background:#eef0f3;font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.time{white-space:nowrap}
tr.arriving td{color:#8a8f98}
.err{color:#d0021b;font-weight:700}
.mark{display:inline-block;min-width:15px;height:15px;line-height:15px;margin-right:4px;border-radius:50%;background:#d0021b;color:#fff;font:bold 11px/15px system-ui,sans-serif;text-align:center;vertical-align:1px}
.tag-error td{background:#fde8ea;color:#a00016}
.notice{background:#fff;border-left:4px solid #632ca6;padding:10px 14px;margin:10px 0}
.notice.bad{border-color:#d0021b}
code,pre,.mono{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:12px}
.meta{margin:0 0 10px;color:#5f6368}
form.filters{display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin:0 0 12px}
.toolbar{display:flex;gap:6px;align-items:center;flex-wrap:wrap;margin:8px 0 0;border-bottom:2px solid #632ca6}
.tab{padding:6px 14px;border:1px solid #d6d9de;border-bottom:none;border-radius:6px 6px 0 0;background:#eef0f3;color:#1d1d1f;text-decoration:none;font-weight:600}
.tab[aria-current]{background:#632ca6;color:#fff;border-color:#632ca6}
.zoom{margin-left:12px;padding:4px 0;color:#3c4043}
.button{display:inline-block;padding:2px 10px;border:1px solid #632ca6;border-radius:4px;background:#fff;color:#632ca6;text-decoration:none;font-weight:600;font-size:13px}
.button:hover{background:#efe7fa}
.flame{position:relative;background:#fff;border:1px solid #e3e5e8;border-top:none;padding:0;margin:0 0 4px;box-sizing:content-box}
.flame .axis{position:absolute;left:0;right:0;top:0;bottom:0}
.axis .tick{position:absolute;top:3px;transform:translateX(-50%);font:11px 'DejaVu Sans Mono',monospace;color:#5f6368;white-space:nowrap}
.axis .tick.first{transform:none;padding-left:3px}
.axis .tick.last{transform:translateX(-100%);padding-right:3px}
.axis .grid{position:absolute;top:20px;bottom:0;width:1px;background:#e3e5e8}
.bar{position:absolute;height:22px;box-sizing:border-box;min-width:2px;padding:0 4px;border:1px solid #fff;border-radius:3px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;font:12px/20px 'DejaVu Sans Mono',Menlo,Consolas,monospace;color:#1d1d1f;text-decoration:none}
.bar:hover{filter:brightness(.92)}
.bar.ancestor{opacity:.5}
.bar.error{border:2px solid #d0021b;line-height:18px;color:#a00016;font-weight:700}
.bar.selected{box-shadow:0 0 0 3px #1d1d1f;z-index:1}
.bar:focus-visible{outline:3px solid #632ca6;outline-offset:2px;z-index:2}
.bar .mark{margin-right:4px}
.legend{display:flex;gap:14px;flex-wrap:wrap;margin:4px 0 6px;font-size:13px}
.hint{color:#3c4043;margin:6px 0 10px}
.cols{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}
#details{flex:1 1 380px;min-width:0;background:#fff;border:1px solid #e3e5e8;padding:10px 12px}
#details.wide{max-width:1100px}
#details .sub{margin:0 0 6px;color:#5f6368}
#details .none{margin:0;color:#5f6368}
#list{flex:1 1 480px;min-width:0}
.error-message{background:#fde8ea;color:#a00016;border-left:4px solid #d0021b;padding:6px 10px;margin:6px 0}
.actions{margin:6px 0 8px}
#details table td:first-child{white-space:nowrap;width:30%}
.tags td{overflow-wrap:anywhere}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
.error-swatch{background:#fff;border:2px solid #d0021b;box-sizing:border-box}
.svc{color:#5f6368}
tr.selected td{background:#efe7fa}
tr.error td{color:#a00016}
tr.outside td{opacity:.55}
tr.error a{color:#d0021b;font-weight:700}
.waterfall{table-layout:fixed;border:1px solid #e3e5e8;border-top:none}
.wf-name-col{width:34%}.wf-dur-col{width:84px}
.waterfall td{padding:3px 8px}
.wf-name{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;font:12px/18px 'DejaVu Sans Mono',Menlo,Consolas,monospace}
.zoom-in{margin-left:6px;font:11px system-ui,sans-serif}
.lane-head{position:relative;height:22px;padding:0}
.lane{position:relative;padding:0;background-image:linear-gradient(to right,#e3e5e8 1px,transparent 1px);background-size:var(--tick) 100%;background-position:var(--tick-at) 0}
.wf-bar{position:absolute;top:4px;height:16px;min-width:2px;border-radius:3px;box-sizing:border-box}
.wf-bar.error{background:#d0021b !important}
tr.selected .wf-bar{box-shadow:0 0 0 2px #1d1d1f}
";

/// The script of the trace page, for the keyboard: Escape zooms out; after following a link that
/// selected a span, the focus returns to that span's link (so Tab goes on from there).
const TRACE_SCRIPT: &str = "
document.addEventListener('keydown',function(e){
  if(e.key==='Escape'){var z=document.getElementById('zoom-out');if(z)location.href=z.href;}
});
document.addEventListener('DOMContentLoaded',function(){
  var id=new URLSearchParams(location.search).get('span');if(!id)return;
  var a=document.querySelector('.selected[data-span-id=\"'+CSS.escape(id)+'\"]');
  if(a&&a.tagName!=='A')a=a.querySelector('a');
  if(a)a.focus({preventScroll:true});
});
";

/// The script of the list page: reload its rows every 2 s, not while a filter is being edited.
const REFRESH_SCRIPT: &str = "
setInterval(async function(){
  var a=document.activeElement; if(a&&a.form)return;
  try{var r=await fetch(location.href,{cache:'no-store'});var t=await r.text();
  var d=new DOMParser().parseFromString(t,'text/html');var n=d.getElementById('live');
  if(n)document.getElementById('live').replaceWith(n);}catch(e){}
},2000);
";

fn page(title: &str, agent: &str, body: &str, head_extra: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · tracecat</title><style>{STYLE}</style>{head_extra}</head><body>\
         <header><a href=\"/\">tracecat</a><span>traces from Datadog's APM test agent</span>\
         <span class=\"agent\">agent: <code>{}</code></span></header><main>{body}</main></body></html>\n",
        esc(title),
        esc(agent)
    )
}

/// How to start the test agent, for the page shown when it cannot be reached.
pub const START_AGENT_HINT: &str = "DD_AGENT_HOST=testagent docker-compose -f compose/docker-compose.yaml --profile testagent up -d --build";

/// The curl command to send when there are no traces yet.
pub const FIRST_REQUEST_HINT: &str = "curl -X POST 'localhost:8080/notes?desc=hello&add_date=y'";

/// The list page: the traces newest first, or what went wrong reading them.
pub fn list_page(
    traces: Result<&[Trace], &str>,
    watcher: &Watcher,
    query: &ListQuery,
    agent: &str,
    search_error: Option<&str>,
    stats: &str,
) -> String {
    let mut body = String::new();
    body.push_str("<h1>Traces</h1>");
    // The services' stats (requests, errors, latency), beside the list.
    body.push_str(stats);
    let services: Vec<String> = match traces {
        Ok(traces) => {
            let mut all: Vec<String> = traces
                .iter()
                .flat_map(|t| t.spans.iter().map(|s| s.service.clone()))
                .collect();
            all.sort();
            all.dedup();
            all
        }
        Err(_) => Vec::new(),
    };
    // Filters and search.
    body.push_str("<form class=\"filters\" method=\"get\" action=\"/\">");
    body.push_str("<label>service <select name=\"service\"><option value=\"\">any</option>");
    let mut known = services.clone();
    if let Some(s) = &query.service {
        if !known.contains(s) {
            known.push(s.clone());
        }
    }
    for s in &known {
        let sel = if query.service.as_deref() == Some(s) {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, "<option{sel}>{}</option>", esc(s));
    }
    let _ = write!(
        body,
        "</select></label><label>resource <input name=\"resource\" value=\"{}\" \
         placeholder=\"POST /notes\"></label>\
         <label><input type=\"checkbox\" name=\"errors\" value=\"1\"{}> errors only</label>\
         <label title=\"traces whose root span is not a web request, such as notes' start-up \
         trace (notes.startup)\"><input type=\"checkbox\" id=\"background\" name=\"background\" \
         value=\"1\"{}> background traces too</label>\
         <button>Filter</button></form>",
        esc(query.resource.as_deref().unwrap_or("")),
        if query.errors { " checked" } else { "" },
        if query.background { " checked" } else { "" }
    );
    body.push_str(
        "<form class=\"filters\" method=\"get\" action=\"/search\"><label>trace id \
         <input name=\"id\" size=\"36\" placeholder=\"dd.trace_id from the logs, or 32 hex digits\">\
         </label><button>Open</button></form>",
    );
    if let Some(message) = search_error {
        let _ = write!(
            body,
            "<div class=\"notice bad\" id=\"search-error\">{}</div>",
            esc(message)
        );
    }
    body.push_str("<div id=\"live\">");
    match traces {
        Err(message) => {
            let _ = write!(
                body,
                "<div class=\"notice bad\" id=\"agent-down\"><b>Cannot reach the test agent.</b> \
                 {}<br>Start it (from the repository root):<pre>{}</pre>or run \
                 <code>ddapm-test-agent --port 8126</code>, and check <code>--agent</code>. \
                 This page keeps trying by itself.</div>",
                esc(message),
                esc(START_AGENT_HINT)
            );
        }
        Ok([]) => {
            let _ = write!(
                body,
                "<div class=\"notice\" id=\"no-traces\"><b>No traces yet.</b> Send a request, \
                 for instance:<pre>{}</pre>The services send their spans every second; they \
                 show up here by themselves.</div>",
                esc(FIRST_REQUEST_HINT)
            );
        }
        Ok(traces) => {
            let mut shown: Vec<&Trace> = traces.iter().filter(|t| query.shows(t)).collect();
            let hidden = traces
                .iter()
                .filter(|t| query.matches(t) && !query.shows(t))
                .count();
            shown.sort_by_key(|t| std::cmp::Reverse((t.root_start(), t.trace_id)));
            let last = shown.iter().find(|t| watcher.state(t) == State::Complete);
            match last {
                Some(t) => {
                    let _ = write!(
                        body,
                        "<p>Last complete trace: <a id=\"last\" href=\"/trace/{}\">{}</a></p>",
                        t.trace_id,
                        esc(&root_label(t))
                    );
                }
                None if !shown.is_empty() => {
                    body.push_str("<p id=\"waiting\">Traces are still arriving…</p>");
                }
                None => {}
            }
            let _ = write!(
                body,
                "<p>{} of {} trace{} (newest first)",
                shown.len(),
                traces.len(),
                if traces.len() == 1 { "" } else { "s" }
            );
            if hidden > 0 {
                let _ = write!(
                    body,
                    "; <span id=\"hidden-background\">{hidden} background trace{} hidden</span> \
                     (<a href=\"{}\">show</a>)",
                    if hidden == 1 { "" } else { "s" },
                    esc(&list_link(&ListQuery {
                        background: true,
                        ..query.clone()
                    }))
                );
            }
            body.push_str("</p>");
            body.push_str(
                "<table id=\"traces\"><thead><tr><th>started (UTC)</th><th>service</th>\
                 <th>resource</th><th>duration</th><th>spans</th><th>services</th><th></th>\
                 </tr></thead><tbody>",
            );
            for t in &shown {
                let arriving = watcher.state(t) == State::Arriving;
                let (service, resource) = t
                    .roots()
                    .first()
                    .map(|r| (r.service.as_str(), r.resource.as_str()))
                    .unwrap_or(("", ""));
                let errors = t.error_count();
                let _ = write!(
                    body,
                    "<tr class=\"trace{}\" data-trace-id=\"{id}\"><td class=\"mono time\">{}</td>\
                     <td>{}</td><td><a href=\"/trace/{id}\">{}</a></td><td class=\"num\">{}</td>\
                     <td class=\"num\">{}</td><td>{}</td><td>{}{}</td></tr>",
                    if arriving { " arriving" } else { "" },
                    format_time(t.start()),
                    esc(service),
                    esc(if resource.is_empty() {
                        "(no root yet)"
                    } else {
                        resource
                    }),
                    format_duration(t.duration()),
                    t.spans.len(),
                    esc(&t.services().join(", ")),
                    if errors > 0 {
                        format!(
                            "<span class=\"err\" title=\"{errors} error span(s)\">! error</span> "
                        )
                    } else {
                        String::new()
                    },
                    if arriving { "arriving…" } else { "" },
                    id = t.trace_id,
                );
            }
            body.push_str("</tbody></table>");
        }
    }
    body.push_str("</div>");
    let head = format!(
        "<noscript><meta http-equiv=\"refresh\" content=\"3\"></noscript><script>{REFRESH_SCRIPT}</script>"
    );
    page("Traces", agent, &body, &head)
}

fn root_label(trace: &Trace) -> String {
    match trace.roots().first() {
        Some(r) => format!(
            "{} {} · {}",
            r.service,
            r.resource,
            format_duration(trace.duration())
        ),
        None => format!("trace {}", trace.trace_id),
    }
}

/// The page of one trace: one heading, the flame graph or the waterfall (`focus.view`) of the
/// whole trace or of one span's subtree (`focus.zoom`), the selected span's tags (the root's
/// when none is chosen) and, beside the flame graph, the spans as a list.
pub fn trace_page(trace: &Trace, state: State, focus: &Focus, agent: &str) -> String {
    let shape = Shape::new(trace);
    let zoom = focus.zoom.filter(|id| shape.span(*id).is_some());
    let selected = focus
        .selected
        .filter(|id| shape.span(*id).is_some())
        .or_else(|| shape.rows.first().map(|r| r.span.span_id));
    let focus = Focus {
        view: focus.view,
        selected,
        zoom,
    };
    let mut body = String::new();
    let _ = write!(body, "<h1 id=\"title\">{}</h1>", esc(&root_label(trace)));
    let _ = write!(
        body,
        "<p class=\"mono meta\">trace {}{} · {} spans · services: {}{}</p>",
        trace.trace_id,
        trace
            .trace_id_128()
            .map(|id| format!(" (128-bit {id})"))
            .unwrap_or_default(),
        trace.spans.len(),
        esc(&trace.services().join(", ")),
        match trace.error_count() {
            0 => String::new(),
            n => format!(" · <span class=\"err\">{ERROR_MARK} {n} error span(s)</span>"),
        }
    );
    if state == State::Arriving {
        body.push_str(
            "<div class=\"notice\" id=\"arriving\">This trace is still receiving spans: the \
             page reloads until it is complete.</div>",
        );
    }
    body.push_str(&toolbar(&shape, &focus));
    let selected_span = selected.and_then(|id| shape.span(id));
    let details = match selected_span {
        Some(span) => span_details(trace, &shape, &focus, span),
        None => "<p class=\"none\">No span selected.</p>".to_owned(),
    };
    match focus.view {
        View::Flame => {
            body.push_str(&flame_html(trace, &shape, &focus));
            body.push_str(
                "<p class=\"hint\">Select a bar, or a span's name in the \
                 <a href=\"#spans\">list of spans</a>, to see its tags; a bar with spans under it \
                 also zooms in on them, and the bars above it zoom back out. Hover a bar to see \
                 what it is.</p><div class=\"cols\">",
            );
            let _ = write!(body, "<section id=\"details\">{details}</section>");
            body.push_str(&span_list(trace, &shape, &focus));
            body.push_str("</div>");
        }
        View::Waterfall => {
            body.push_str(&waterfall_html(trace, &shape, &focus));
            body.push_str(
                "<p class=\"hint\">Select a span's name to see its tags below; <i>zoom in</i> \
                 shows only a span and the spans under it. Hover a bar to see what it is.</p>",
            );
            let _ = write!(
                body,
                "<section id=\"details\" class=\"wide\">{details}</section>"
            );
        }
    }
    let mut head = format!("<script>{TRACE_SCRIPT}</script>");
    if state == State::Arriving {
        head.push_str("<meta http-equiv=\"refresh\" content=\"1\">");
    }
    page(&root_label(trace), agent, &body, &head)
}

/// The tabs of the two views and where the drawing is zoomed (each ancestor a link back out).
fn toolbar(shape: &Shape<'_>, focus: &Focus) -> String {
    let mut out = String::from("<nav class=\"toolbar\" aria-label=\"Trace views\">");
    for (view, name) in [(View::Flame, "Flame graph"), (View::Waterfall, "Waterfall")] {
        let current = if view == focus.view {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<a class=\"tab\" id=\"tab-{}\" href=\"{}\"{current}>{name}</a>",
            if view == View::Flame {
                "flame"
            } else {
                "waterfall"
            },
            href(view, focus.selected, focus.zoom)
        );
    }
    out.push_str("<span class=\"zoom\" id=\"zoom\">");
    match focus.zoom.and_then(|z| shape.span(z)) {
        None => out.push_str("Showing the whole trace"),
        Some(span) => {
            let _ = write!(
                out,
                "Zoomed in: <a href=\"{}\">whole trace</a>",
                href(focus.view, focus.selected, None)
            );
            for a in shape.ancestors(span.span_id) {
                let _ = write!(
                    out,
                    " › <a href=\"{}\">{}</a>",
                    href(
                        focus.view,
                        focus.selected,
                        shape.zoom_for(a.span_id, Some(a.span_id))
                    ),
                    esc(&format!("{} {}", a.service, span_title(a)))
                );
            }
            let parent = shape
                .ancestors(span.span_id)
                .last()
                .and_then(|p| shape.zoom_for(p.span_id, Some(p.span_id)));
            let _ = write!(
                out,
                " › <b>{}</b> <a class=\"button\" id=\"zoom-out\" href=\"{}\" \
                 title=\"Zoom out (Escape)\">Zoom out</a>",
                esc(&format!("{} {}", span.service, span_title(span))),
                href(focus.view, focus.selected, parent)
            );
        }
    }
    out.push_str("</span></nav>");
    out
}

/// The spans as a list in tree order, each name a link selecting it.
fn span_list(trace: &Trace, shape: &Shape<'_>, focus: &Focus) -> String {
    let colours = service_colours(trace);
    let t0 = trace.start();
    let mut body = String::from(
        "<section id=\"list\"><table id=\"spans\"><thead><tr><th>span</th><th>operation</th>\
         <th class=\"num\">start</th><th class=\"num\">duration</th></tr></thead><tbody>",
    );
    let inside = shape.range(focus.zoom);
    for (i, row) in shape.rows.iter().enumerate() {
        let s = row.span;
        let colour = colours
            .iter()
            .find(|(name, _)| *name == s.service)
            .map(|(_, c)| *c)
            .unwrap_or("#ccc");
        let zoom = focus.zoom.filter(|_| inside.contains(&i));
        let _ = write!(
            body,
            "<tr class=\"span-row{sel}{err}{outside}\" data-span-id=\"{id}\" data-parent-id=\"{parent}\" \
             data-depth=\"{depth}\" data-service=\"{svc}\" data-name=\"{op}\"><td class=\"mono\" \
             style=\"padding-left:{indent}px\"><span class=\"swatch\" style=\"background:{colour}\">\
             </span>{mark}<span class=\"svc\">{svc}</span> <a href=\"{link}\">{res}</a></td>\
             <td class=\"mono\">{op}</td><td class=\"num\">+{start}</td><td class=\"num\">{dur}</td>\
             </tr>",
            sel = if focus.selected == Some(s.span_id) {
                " selected"
            } else {
                ""
            },
            err = if s.error { " error" } else { "" },
            outside = if focus.zoom.is_some() && zoom.is_none() {
                " outside"
            } else {
                ""
            },
            id = s.span_id,
            parent = s.parent_id,
            depth = row.depth,
            svc = esc(&s.service),
            indent = 8 + 14 * row.depth.min(40),
            mark = if s.error { ERROR_MARK } else { "" },
            link = href(View::Flame, Some(s.span_id), zoom),
            res = esc(span_title(s)),
            op = esc(&s.name),
            start = format_duration(s.start - t0),
            dur = format_duration(s.duration),
        );
    }
    body.push_str("</tbody></table></section>");
    body
}

fn span_details(trace: &Trace, shape: &Shape<'_>, focus: &Focus, span: &Span) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<h2>{}{}</h2><p class=\"sub\">{} · {} · {}</p>",
        if span.error { ERROR_MARK } else { "" },
        esc(span_title(span)),
        esc(&span.service),
        esc(&span.name),
        format_duration(span.duration)
    );
    if span.error {
        let _ = write!(
            out,
            "<p class=\"error-message\">Error: {}</p>",
            esc(span.error_message().unwrap_or("(no message)"))
        );
    }
    let mut actions = Vec::new();
    let into = shape.zoom_for(span.span_id, focus.zoom);
    if shape.has_children(span.span_id) && into != focus.zoom {
        actions.push(format!(
            "<a class=\"button\" id=\"zoom-in\" href=\"{}\">Zoom in on this span</a>",
            href(focus.view, Some(span.span_id), into)
        ));
    }
    if !actions.is_empty() {
        let _ = write!(out, "<p class=\"actions\">{}</p>", actions.join(" "));
    }
    out.push_str("<table class=\"tags\"><tbody>");
    let mut row = |key: &str, value: &str, error: bool| {
        let _ = write!(
            out,
            "<tr class=\"tag{}\"><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
            if error { " tag-error" } else { "" },
            esc(key),
            esc(value)
        );
    };
    row("service", &span.service, false);
    row("operation", &span.name, false);
    row("resource", &span.resource, false);
    row("type", &span.span_type, false);
    row("span id", &span.span_id.to_string(), false);
    row("parent id", &span.parent_id.to_string(), false);
    row(
        "start",
        &format!(
            "+{} ({} UTC)",
            format_duration(span.start - trace.start()),
            format_time(span.start)
        ),
        false,
    );
    row("duration", &format_duration(span.duration), false);
    row("error", if span.error { "1" } else { "0" }, span.error);
    for (k, v) in &span.meta {
        row(k, v, k.starts_with("error"));
    }
    for (k, v) in &span.metrics {
        row(k, &v.to_string(), k.starts_with("error"));
    }
    out.push_str("</tbody></table>");
    out
}

/// A page with a message, for 400 and 404 answers.
pub fn message_page(title: &str, message: &str, agent: &str) -> String {
    page(
        title,
        agent,
        &format!(
            "<h1>{}</h1><div class=\"notice bad\" id=\"message\">{}</div><p><a href=\"/\">All traces</a></p>",
            esc(title),
            esc(message)
        ),
        "",
    )
}

/// One trace's summary for `/api/traces`.
pub fn summary_json(trace: &Trace, state: State) -> Value {
    let root = trace.roots().first().map(|r| (*r).clone());
    json!({
        "trace_id": trace.trace_id.to_string(),
        "trace_id_128": trace.trace_id_128(),
        "root_service": root.as_ref().map(|r| r.service.clone()),
        "resource": root.as_ref().map(|r| r.resource.clone()),
        "start": trace.start(),
        "duration": trace.duration(),
        "span_count": trace.spans.len(),
        "services": trace.services(),
        "errors": trace.error_count(),
        "complete": state == State::Complete,
    })
}

/// One span in the Agent's JSON form (ids as numbers, as the agent gives them).
pub fn span_json(span: &Span) -> Value {
    json!({
        "service": span.service,
        "name": span.name,
        "resource": span.resource,
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "start": span.start,
        "duration": span.duration,
        "error": i32::from(span.error),
        "type": span.span_type,
        "meta": span.meta,
        "metrics": span.metrics,
    })
}

/// A trace for `/api/traces/<id>`: its summary and its spans in tree order.
pub fn trace_json(trace: &Trace, state: State) -> Value {
    let mut value = summary_json(trace, state);
    value["spans"] = Value::Array(rows(trace).iter().map(|r| span_json(r.span)).collect());
    value
}

/// The link to the list with these filters.
pub fn list_link(query: &ListQuery) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &query.service {
        parts.push(format!("service={}", enc(s)));
    }
    if let Some(r) = &query.resource {
        parts.push(format!("resource={}", enc(r)));
    }
    if query.errors {
        parts.push("errors=1".to_owned());
    }
    if query.background {
        parts.push("background=1".to_owned());
    }
    if parts.is_empty() {
        "/".to_owned()
    } else {
        format!("/?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::traces_from_json;
    use serde_json::json;
    use std::time::Duration;

    /// A trace of 10,000 spans: a root, 99 requests under it, 100 queries under each.
    fn big_trace() -> Trace {
        let mut spans = vec![json!({"service": "notes", "name": "actix_web.request",
            "resource": "GET /big", "trace_id": 7, "span_id": 1, "parent_id": 0,
            "start": 0, "duration": 10_000_000_000i64, "error": 0, "type": "web"})];
        let mut id = 2u64;
        for i in 0..99i64 {
            let parent = id;
            spans.push(json!({"service": "reqwest", "name": "reqwest.request",
                "resource": format!("GET /item/{i}"), "trace_id": 7, "span_id": parent,
                "parent_id": 1, "start": i * 100_000_000, "duration": 99_000_000,
                "error": i32::from(i % 10 == 0), "meta": {"error.message": "boom <b>"}}));
            id += 1;
            for j in 0..100i64 {
                spans.push(json!({"service": "postgres", "name": "postgres.query",
                    "resource": "SELECT 1", "trace_id": 7, "span_id": id, "parent_id": parent,
                    "start": i * 100_000_000 + j * 1_000_000, "duration": 900_000,
                    "metrics": {"db.row_count": 1}}));
                id += 1;
            }
        }
        let traces = traces_from_json(&Value::Array(spans)).expect("valid spans");
        assert_eq!(traces.len(), 1);
        traces.into_iter().next().expect("one trace")
    }

    #[test]
    fn a_trace_of_ten_thousand_spans_renders_every_span() {
        let trace = big_trace();
        assert_eq!(trace.spans.len(), 10_000);
        let watcher = Watcher::new(Duration::from_secs(1));
        let focus = Focus {
            selected: Some(2),
            ..Focus::default()
        };
        let page = trace_page(&trace, watcher.state(&trace), &focus, "http://agent");
        // Zoomed to the root's subtree (all of it), both views still draw every span.
        for view in [View::Flame, View::Waterfall] {
            let zoomed = Focus {
                view,
                selected: Some(2),
                zoom: Some(1),
            };
            let page = trace_page(&trace, watcher.state(&trace), &zoomed, "http://agent");
            let rows =
                page.matches("<a class=\"bar").count() + page.matches("<tr class=\"wf-row").count();
            assert_eq!(rows, 10_000);
        }
        assert_eq!(page.matches("<a class=\"bar").count(), 10_000);
        assert_eq!(page.matches("<tr class=\"span-row").count(), 10_000);
        // The selected span (an error) lists its tags, the error ones highlighted; tags are
        // escaped, never markup.
        let details = &page[page.find("id=\"details\"").expect("details")..];
        assert!(details.contains(
            "<tr class=\"tag tag-error\"><td class=\"mono\">error.message</td><td class=\"mono\">boom &lt;b&gt;</td>"
        ));
        assert!(page.contains("boom &lt;b&gt;"));
        assert!(!page.contains("boom <b>"));
        let list = list_page(
            Ok(std::slice::from_ref(&trace)),
            &watcher,
            &ListQuery::default(),
            "http://agent",
            None,
            "",
        );
        assert!(list.contains("GET /big"));
        // The start column never wraps onto two lines.
        assert!(list.contains("<td class=\"mono time\">1970-01-01 00:00:00.000</td>"));
        assert!(STYLE.contains("td.time{white-space:nowrap}"));
        // Links, bars and buttons show where the keyboard focus is.
        assert!(STYLE.contains("a:focus-visible,button:focus-visible"));
        assert!(STYLE.contains(".bar:focus-visible{outline:3px solid"));
        assert!(list.contains("! error"));
    }

    #[test]
    fn list_filters_and_messages() {
        let trace = big_trace();
        let watcher = Watcher::new(Duration::from_secs(1));
        let traces = std::slice::from_ref(&trace);
        let only = |q: ListQuery| {
            list_page(Ok(traces), &watcher, &q, "a", None, "")
                .matches("<tr class=\"trace")
                .count()
        };
        assert_eq!(only(ListQuery::default()), 1);
        let service = |s: &str| ListQuery {
            service: Some(s.to_owned()),
            ..ListQuery::default()
        };
        assert_eq!(only(service("postgres")), 1);
        assert_eq!(only(service("calendar")), 0);
        let resource = ListQuery {
            resource: Some("POST".to_owned()),
            ..ListQuery::default()
        };
        assert_eq!(only(resource), 0);
        let errors = ListQuery {
            errors: true,
            ..ListQuery::default()
        };
        assert_eq!(only(errors), 1);
        // A trace whose root is not a web request (notes' start-up trace) is hidden unless
        // background traces are asked for, and the list says how many it hides.
        let startup = traces_from_json(&json!([{"service": "notes", "name": "notes.startup",
            "resource": "bootstrap database", "trace_id": 8, "span_id": 1, "parent_id": 0,
            "start": 5, "duration": 10, "error": 0}]))
        .expect("valid spans");
        let both = [trace.clone(), startup[0].clone()];
        let page = list_page(Ok(&both), &watcher, &ListQuery::default(), "a", None, "");
        assert_eq!(page.matches("<tr class=\"trace").count(), 1);
        assert!(
            page.contains("1 background trace hidden") && !page.contains(">bootstrap database<")
        );
        let all = ListQuery {
            background: true,
            ..ListQuery::default()
        };
        let page = list_page(Ok(&both), &watcher, &all, "a", None, "");
        assert_eq!(page.matches("<tr class=\"trace").count(), 2);
        assert!(page.contains(">bootstrap database<") && !page.contains("hidden-background"));
        assert_eq!(list_link(&all), "/?background=1");
        let empty = list_page(Ok(&[]), &watcher, &ListQuery::default(), "a", None, "");
        assert!(empty.contains(&esc(FIRST_REQUEST_HINT)));
        let down = list_page(
            Err("refused"),
            &watcher,
            &ListQuery::default(),
            "a",
            None,
            "",
        );
        assert!(down.contains("id=\"agent-down\"") && down.contains("refused"));
    }
}
