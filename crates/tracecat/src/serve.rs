//! `tracecat serve`: the trace viewer, a small actix-web server over the test agent.
//!
//! Every page reads the agent afresh (`GET /test/traces`, on the blocking thread pool), so the
//! viewer holds no copy of the traces, recovers by itself when the agent comes back, and one
//! [`Watcher`] shared by all requests tells complete traces from arriving ones.

use crate::arrival::{State, Watcher};
use crate::model::{parse_trace_id, Trace, TraceId};
use crate::source;
use crate::views::{Focus, View};
use crate::web::{self, ListQuery};
use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web as aweb, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What `tracecat serve` was asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct ServeArgs {
    /// The test agent's URL.
    pub agent: String,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Quiet time after which a trace counts as complete.
    pub settle: Duration,
}

/// Shared by every request.
struct Viewer {
    agent: String,
    watcher: Mutex<Watcher>,
}

type Shared = aweb::Data<Arc<Viewer>>;

impl Viewer {
    /// The agent's traces (taken in by the watcher), or why they cannot be read.
    async fn traces(&self) -> Result<Vec<Trace>, String> {
        let agent = self.agent.clone();
        let traces = match aweb::block(move || source::from_agent(&agent)).await {
            Ok(Ok(traces)) => traces,
            Ok(Err(e)) => return Err(format!("{e:#}")),
            Err(e) => return Err(format!("the agent could not be read: {e}")),
        };
        self.watcher().observe(&traces);
        Ok(traces)
    }

    /// The "Services" table: the stats the agent received, or why there are none.
    async fn stats_table(&self) -> String {
        let agent = self.agent.clone();
        match aweb::block(move || crate::stats::from_agent(&agent)).await {
            Ok(Ok(stats)) => crate::stats::table(Ok(&stats)),
            Ok(Err(e)) => crate::stats::table(Err(&format!("{e:#}"))),
            Err(e) => crate::stats::table(Err(&format!("the agent could not be read: {e}"))),
        }
    }

    fn watcher(&self) -> std::sync::MutexGuard<'_, Watcher> {
        // A panic while holding the lock leaves the watcher usable: it only holds counts.
        self.watcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(ContentType::html())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

fn json(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

fn redirect(to: String) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

fn list_query(params: &HashMap<String, String>) -> ListQuery {
    let text = |key: &str| {
        params
            .get(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let flag = |key: &str| params.get(key).is_some_and(|v| !v.is_empty() && v != "0");
    ListQuery {
        service: text("service"),
        resource: text("resource"),
        errors: flag("errors"),
        background: flag("background"),
    }
}

fn params(request: &HttpRequest) -> HashMap<String, String> {
    aweb::Query::<HashMap<String, String>>::from_query(request.query_string())
        .map(aweb::Query::into_inner)
        .unwrap_or_default()
}

async fn list(request: HttpRequest, viewer: Shared) -> HttpResponse {
    let query = list_query(&params(&request));
    let traces = viewer.traces().await;
    let stats = viewer.stats_table().await;
    let watcher = viewer.watcher();
    match &traces {
        Ok(t) => html(
            StatusCode::OK,
            web::list_page(Ok(t), &watcher, &query, &viewer.agent, None, &stats),
        ),
        Err(e) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            web::list_page(Err(e), &watcher, &query, &viewer.agent, None, &stats),
        ),
    }
}

/// `/search?id=…`: opens the trace with that id.
async fn search(request: HttpRequest, viewer: Shared) -> HttpResponse {
    let raw = params(&request).remove("id").unwrap_or_default();
    let id = match parse_trace_id(&raw) {
        Ok(id) => id,
        Err(e) => {
            let traces = viewer.traces().await;
            let watcher = viewer.watcher();
            let traces = traces.as_deref().map_err(String::as_str);
            let message = format!("{e:#}");
            return html(
                StatusCode::BAD_REQUEST,
                web::list_page(
                    traces,
                    &watcher,
                    &ListQuery::default(),
                    &viewer.agent,
                    Some(&message),
                    "",
                ),
            );
        }
    };
    redirect(format!("/trace/{}", id_text(&id)))
}

fn id_text(id: &TraceId) -> String {
    match *id {
        TraceId::Low(low) => low.to_string(),
        TraceId::Full { high, low } => format!("{high:016x}{low:016x}"),
    }
}

enum Found {
    Trace(Trace, State),
    BadId(String),
    Missing(String),
    AgentDown(String),
}

async fn find(viewer: &Viewer, raw: &str) -> Found {
    let id = match parse_trace_id(raw) {
        Ok(id) => id,
        Err(e) => return Found::BadId(format!("{e:#}")),
    };
    let traces = match viewer.traces().await {
        Ok(traces) => traces,
        Err(e) => return Found::AgentDown(e),
    };
    match traces.into_iter().find(|t| id.matches(t)) {
        Some(trace) => {
            let state = viewer.watcher().state(&trace);
            Found::Trace(trace, state)
        }
        None => Found::Missing(format!(
            "The test agent holds no trace with id {}. It keeps traces until it restarts \
             or is cleared; the list shows those it has.",
            id_text(&id)
        )),
    }
}

async fn trace_page(
    request: HttpRequest,
    viewer: Shared,
    path: aweb::Path<String>,
) -> HttpResponse {
    let raw = path.into_inner();
    if raw == "last" {
        return last(&viewer).await;
    }
    let params = params(&request);
    let id = |key: &str| params.get(key).and_then(|s| s.trim().parse::<u64>().ok());
    let focus = Focus {
        view: View::from_param(params.get("view").map(String::as_str)),
        selected: id("span"),
        zoom: id("zoom"),
    };
    match find(&viewer, &raw).await {
        Found::Trace(trace, state) => html(
            StatusCode::OK,
            web::trace_page(&trace, state, &focus, &viewer.agent),
        ),
        Found::BadId(e) => html(
            StatusCode::BAD_REQUEST,
            web::message_page("Not a trace id", &e, &viewer.agent),
        ),
        Found::Missing(e) => html(
            StatusCode::NOT_FOUND,
            web::message_page("No such trace", &e, &viewer.agent),
        ),
        Found::AgentDown(e) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            web::message_page(
                "Cannot reach the test agent",
                &format!("{e}. Start it: {}", web::START_AGENT_HINT),
                &viewer.agent,
            ),
        ),
    }
}

/// `/trace/last`: the newest complete trace (by root start).
async fn last(viewer: &Viewer) -> HttpResponse {
    let traces = match viewer.traces().await {
        Ok(traces) => traces,
        Err(e) => {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                web::message_page("Cannot reach the test agent", &e, &viewer.agent),
            )
        }
    };
    let watcher = viewer.watcher();
    let newest = traces
        .iter()
        .filter(|t| watcher.state(t) == State::Complete)
        .max_by_key(|t| (t.root_start(), t.trace_id));
    match newest {
        Some(t) => redirect(format!("/trace/{}", t.trace_id)),
        None => html(
            StatusCode::NOT_FOUND,
            web::message_page(
                "No complete trace yet",
                "No trace has been quiet long enough to be complete; try again in a moment.",
                &viewer.agent,
            ),
        ),
    }
}

/// `/api/stats`: the services' stats per service and resource, as the list page shows them.
async fn api_stats(viewer: Shared) -> HttpResponse {
    let agent = viewer.agent.clone();
    match aweb::block(move || crate::stats::from_agent(&agent)).await {
        Ok(Ok(stats)) => {
            let rows: Vec<_> = stats
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "service": s.service,
                        "resource": s.resource,
                        "requests": s.hits,
                        "errors": s.errors,
                        "p50_ns": s.quantiles.map(|q| q[0]),
                        "p95_ns": s.quantiles.map(|q| q[1]),
                        "p99_ns": s.quantiles.map(|q| q[2]),
                    })
                })
                .collect();
            json(StatusCode::OK, serde_json::json!({ "stats": rows }))
        }
        Ok(Err(e)) => json(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({ "error": format!("{e:#}") }),
        ),
        Err(e) => json(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({ "error": format!("the agent could not be read: {e}") }),
        ),
    }
}

async fn api_traces(request: HttpRequest, viewer: Shared) -> HttpResponse {
    let query = list_query(&params(&request));
    match viewer.traces().await {
        Ok(traces) => {
            let watcher = viewer.watcher();
            let mut shown: Vec<&Trace> = traces.iter().filter(|t| query.matches(t)).collect();
            shown.sort_by_key(|t| std::cmp::Reverse((t.root_start(), t.trace_id)));
            let list: Vec<_> = shown
                .iter()
                .map(|t| web::summary_json(t, watcher.state(t)))
                .collect();
            json(StatusCode::OK, serde_json::json!({ "traces": list }))
        }
        Err(e) => json(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({ "error": format!("cannot reach the test agent: {e}") }),
        ),
    }
}

async fn api_trace(viewer: Shared, path: aweb::Path<String>) -> HttpResponse {
    match find(&viewer, &path.into_inner()).await {
        Found::Trace(trace, state) => json(StatusCode::OK, web::trace_json(&trace, state)),
        Found::BadId(e) => json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": e })),
        Found::Missing(e) => json(StatusCode::NOT_FOUND, serde_json::json!({ "error": e })),
        Found::AgentDown(e) => json(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({ "error": format!("cannot reach the test agent: {e}") }),
        ),
    }
}

async fn not_found(request: HttpRequest, viewer: Shared) -> HttpResponse {
    let message = format!("Nothing at {}.", request.path());
    if request.path().starts_with("/api/") {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": message }),
        );
    }
    html(
        StatusCode::NOT_FOUND,
        web::message_page("Not found", &message, &viewer.agent),
    )
}

/// Serves until SIGINT or SIGTERM.
pub fn run(args: &ServeArgs) -> Result<()> {
    let viewer = Arc::new(Viewer {
        agent: source::normalize_agent_url(&args.agent),
        watcher: Mutex::new(Watcher::new(args.settle)),
    });
    let listen = args.listen;
    actix_web::rt::System::new().block_on(async move {
        let data = aweb::Data::new(viewer.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/", aweb::get().to(list))
                .route("/search", aweb::get().to(search))
                .route("/trace/{id}", aweb::get().to(trace_page))
                .route("/api/traces", aweb::get().to(api_traces))
                .route("/api/stats", aweb::get().to(api_stats))
                .route("/api/traces/{id}", aweb::get().to(api_trace))
                .default_service(aweb::to(not_found))
        })
        .workers(2)
        .shutdown_timeout(2)
        .bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
        let bound = server.addrs().first().copied().unwrap_or(listen);
        eprintln!(
            "tracecat: serving http://{bound} (traces from the test agent at {})",
            viewer.agent
        );
        server.run().await.context("the server stopped")
    })
}
