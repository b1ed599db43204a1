//! The suite's HTTP API: `/trace/span/*` (Datadog-style spans), `/trace/otel/*` (the
//! OpenTelemetry API), `/trace/config`, flushes. Spans live in [`State`] by span id from their
//! start to their end; ids are the Datadog ones (64-bit span id, 128-bit trace id).

use actix_web::web::{self, Data, Json};
use actix_web::{App, HttpResponse, HttpServer};
use datadog_otel_tracing::spans::{
    record_exception, MANUAL_DROP, MANUAL_KEEP, OPERATION_NAME, RESOURCE_NAME, SERVICE_NAME,
    SPAN_TYPE,
};
use datadog_otel_tracing::{Config, TracingGuard};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator, SdkTracer, Span};
use serde_json::{json, Value as Json_};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the app keeps between requests.
pub struct State {
    config: Config,
    guard: TracingGuard,
    tracer: SdkTracer,
    /// Spans started and not yet finished.
    live: Mutex<HashMap<u64, Span>>,
    /// The order they started in: the last one still open is the current span (a started span
    /// is active until it ends, as the suite's apps make it).
    started: Mutex<Vec<(u64, u128)>>,
    /// The loggers of `/otel/logger/create`: name → the least level written.
    loggers: Mutex<HashMap<String, tracing::Level>>,
    /// The context of each span (live or finished) and of each extraction, to parent later
    /// spans on and to inject: a span's context keeps what the context it started on carried
    /// (baggage, above all).
    contexts: Mutex<HashMap<u64, Context>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// The state of an app over `guard`'s pipeline.
    pub fn new(config: Config, guard: TracingGuard) -> Self {
        let tracer = guard.tracer();
        Self {
            config,
            guard,
            tracer,
            live: Mutex::new(HashMap::new()),
            started: Mutex::new(Vec::new()),
            contexts: Mutex::new(HashMap::new()),
            loggers: Mutex::new(HashMap::new()),
        }
    }

    /// The context of span `id` (live, finished or extracted) as a parent.
    fn parent(&self, id: Option<u64>) -> Context {
        let Some(id) = id.filter(|id| *id != 0) else {
            return Context::new();
        };
        lock(&self.contexts).get(&id).cloned().unwrap_or_default()
    }

    fn start(
        &self,
        name: String,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
        parent: &Context,
        start: Option<SystemTime>,
    ) -> (u64, u128) {
        let tracer = &self.tracer;
        let mut builder = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes);
        if let Some(start) = start {
            builder = builder.with_start_time(start);
        }
        let span = tracer.build_with_context(builder, parent);
        let sc = span.span_context().clone();
        let span_id = u64::from_be_bytes(sc.span_id().to_bytes());
        let trace_id = u128::from_be_bytes(sc.trace_id().to_bytes());
        lock(&self.contexts).insert(span_id, parent.with_remote_span_context(sc));
        lock(&self.live).insert(span_id, span);
        lock(&self.started).push((span_id, trace_id));
        (span_id, trace_id)
    }

    /// Runs `f` on live span `id` (nothing when it is unknown or ended).
    fn with_span(&self, id: Option<u64>, f: impl FnOnce(&mut Span)) {
        if let Some(id) = id {
            if let Some(span) = lock(&self.live).get_mut(&id) {
                f(span);
            }
        }
    }

    fn finish(&self, id: Option<u64>, end: Option<SystemTime>) {
        let Some(id) = id else { return };
        let Some(mut span) = lock(&self.live).remove(&id) else {
            return;
        };
        lock(&self.started).retain(|(span_id, _)| *span_id != id);
        match end {
            Some(end) => span.end_with_timestamp(end),
            None => span.end(),
        }
    }
}

/// An id as the suite sends it: a number or a decimal string.
fn id(body: &Json_, key: &str) -> Option<u64> {
    match body.get(key)? {
        Json_::Number(n) => n.as_u64(),
        Json_::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(body: &Json_, key: &str) -> Option<String> {
    body.get(key)
        .and_then(Json_::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A JSON value as an attribute value: strings, booleans and numbers as themselves, lists of
/// strings as string arrays, anything else as its JSON text.
fn attribute(value: &Json_) -> Option<Value> {
    Some(match value {
        Json_::Null => return None,
        Json_::Bool(b) => Value::Bool(*b),
        Json_::Number(n) => match n.as_i64() {
            Some(i) => Value::I64(i),
            None => Value::F64(n.as_f64()?),
        },
        Json_::String(s) => Value::String(s.clone().into()),
        Json_::Array(items) if items.iter().all(Json_::is_string) => {
            let strings: Vec<StringValue> = items
                .iter()
                .filter_map(Json_::as_str)
                .map(|s| StringValue::from(s.to_string()))
                .collect();
            Value::Array(Array::String(strings))
        }
        Json_::Array(items) if items.iter().all(Json_::is_boolean) => Value::Array(Array::Bool(
            items.iter().filter_map(Json_::as_bool).collect(),
        )),
        Json_::Array(items) if items.iter().all(|i| i.as_i64().is_some()) => {
            Value::Array(Array::I64(items.iter().filter_map(Json_::as_i64).collect()))
        }
        Json_::Array(items) if items.iter().all(Json_::is_number) => {
            Value::Array(Array::F64(items.iter().filter_map(Json_::as_f64).collect()))
        }
        other => Value::String(other.to_string().into()),
    })
}

/// The attributes of `key` = `value`: one, except for a list of lists, which OpenTelemetry
/// cannot hold: each inner list becomes an attribute of its own, `key.0`, `key.1`, … (the
/// export flattens those in turn, into `key.0.0`, as Datadog's tracers flatten nested lists).
fn key_values(key: &str, value: &Json_) -> Vec<KeyValue> {
    match value {
        Json_::Array(items) if !items.is_empty() && items.iter().all(Json_::is_array) => items
            .iter()
            .enumerate()
            .flat_map(|(i, item)| key_values(&format!("{key}.{i}"), item))
            .collect(),
        other => attribute(other)
            .map(|v| KeyValue::new(key.to_string(), v))
            .into_iter()
            .collect(),
    }
}

fn attributes(body: &Json_, key: &str) -> Vec<KeyValue> {
    body.get(key)
        .and_then(Json_::as_object)
        .map(|map| map.iter().flat_map(|(k, v)| key_values(k, v)).collect())
        .unwrap_or_default()
}

/// A time the suite gives in microseconds since the epoch.
fn micros(body: &Json_, key: &str) -> Option<SystemTime> {
    let us = body.get(key)?.as_u64()?;
    UNIX_EPOCH.checked_add(Duration::from_micros(us))
}

/// Headers as the suite sends and expects them: `[[name, value], …]`.
struct Headers(Vec<(String, String)>);

impl Extractor for Headers {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let all: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
            .collect();
        (!all.is_empty()).then_some(all)
    }
}

impl Injector for Headers {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

/// `{"span_id": …, "trace_id": …}` with the whole 128-bit trace id as a JSON number (written
/// by hand: `serde_json` without arbitrary precision stops at 64 bits).
fn ids(span_id: u64, trace_id: u128) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(format!(r#"{{"span_id":{span_id},"trace_id":{trace_id}}}"#))
}

fn ok() -> HttpResponse {
    HttpResponse::Ok().json(json!({}))
}

async fn span_start(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let name = text(&body, "name").unwrap_or_else(|| "span".to_string());
    let resource = text(&body, "resource").unwrap_or_else(|| name.clone());
    let mut attrs = vec![KeyValue::new(OPERATION_NAME, name)];
    if let Some(service) = text(&body, "service") {
        attrs.push(KeyValue::new(SERVICE_NAME, service));
    }
    if let Some(kind) = text(&body, "type") {
        attrs.push(KeyValue::new(SPAN_TYPE, kind));
    }
    if let Some(tags) = body.get("span_tags").and_then(Json_::as_array) {
        for pair in tags {
            if let (Some(k), Some(v)) = (pair.get(0).and_then(Json_::as_str), pair.get(1)) {
                if let Some(v) = attribute(v) {
                    attrs.push(KeyValue::new(k.to_string(), v));
                }
            }
        }
    }
    let parent = state.parent(id(&body, "parent_id"));
    let (span_id, trace_id) = state.start(resource, SpanKind::Internal, attrs, &parent, None);
    ids(span_id, trace_id)
}

async fn span_finish(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    state.finish(id(&body, "span_id"), None);
    ok()
}

async fn span_set_resource(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    if let Some(resource) = text(&body, "resource") {
        state.with_span(id(&body, "span_id"), |s| {
            s.set_attribute(KeyValue::new(RESOURCE_NAME, resource))
        });
    }
    ok()
}

async fn span_set_meta(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let (Some(key), Some(value)) = (text(&body, "key"), body.get("value")) else {
        return ok();
    };
    // A tag is text: a boolean too.
    let attrs = match value {
        Json_::Bool(b) => vec![KeyValue::new(key, b.to_string())],
        other => key_values(&key, other),
    };
    state.with_span(id(&body, "span_id"), |s| s.set_attributes(attrs));
    ok()
}

async fn span_set_metric(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let (Some(key), Some(value)) = (text(&body, "key"), body.get("value")) else {
        return ok();
    };
    // A metric is a number (a list of numbers is flattened by the export).
    let attrs = match value.as_f64() {
        Some(number) => vec![KeyValue::new(key, number)],
        None => key_values(&key, value),
    };
    state.with_span(id(&body, "span_id"), |s| s.set_attributes(attrs));
    ok()
}

async fn span_error(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let message = text(&body, "message").unwrap_or_default();
    let mut attrs = vec![KeyValue::new("error.message", message.clone())];
    if let Some(kind) = text(&body, "type") {
        attrs.push(KeyValue::new("error.type", kind));
    }
    if let Some(stack) = text(&body, "stack") {
        attrs.push(KeyValue::new("error.stack", stack));
    }
    state.with_span(id(&body, "span_id"), |s| {
        s.set_attributes(attrs);
        s.set_status(Status::error(message));
    });
    ok()
}

async fn span_manual(state: Data<State>, body: Json<Json_>, keep: bool) -> HttpResponse {
    let tag = if keep { MANUAL_KEEP } else { MANUAL_DROP };
    state.with_span(id(&body, "span_id"), |s| {
        s.set_attribute(KeyValue::new(tag, "true"))
    });
    ok()
}

async fn span_manual_keep(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    span_manual(state, body, true).await
}

async fn span_manual_drop(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    span_manual(state, body, false).await
}

/// A span link from span `span_id` to span (or extracted context) `parent_id`.
async fn span_add_link(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let linked = state
        .parent(id(&body, "parent_id"))
        .span()
        .span_context()
        .clone();
    if linked.is_valid() {
        let attrs = attributes(&body, "attributes");
        state.with_span(id(&body, "span_id"), |s| s.add_link(linked, attrs));
    }
    ok()
}

async fn span_inject(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let cx = state.parent(id(&body, "span_id"));
    let mut headers = Headers(Vec::new());
    state.guard.inject(&cx, &mut headers);
    let pairs: Vec<[String; 2]> = headers.0.into_iter().map(|(k, v)| [k, v]).collect();
    HttpResponse::Ok().json(json!({ "http_headers": pairs }))
}

async fn span_extract(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let pairs = body
        .get("http_headers")
        .and_then(Json_::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|p| {
                    Some((
                        p.get(0)?.as_str()?.to_string(),
                        p.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let cx = state.guard.extract(&Headers(pairs));
    if !datadog_otel_tracing::has_extracted(&cx) {
        return HttpResponse::Ok().json(json!({ "span_id": null }));
    }
    // The parent's id; a context without one (baggage alone, a restarted trace) gets an id of
    // its own, under which the suite passes it back as a parent.
    let sc = cx.span().span_context().clone();
    let span_id = if sc.is_valid() {
        u64::from_be_bytes(sc.span_id().to_bytes())
    } else {
        u64::from_be_bytes(RandomIdGenerator::default().new_span_id().to_bytes())
    };
    lock(&state.contexts).insert(span_id, cx);
    HttpResponse::Ok().json(json!({ "span_id": span_id }))
}

async fn flush(state: Data<State>) -> HttpResponse {
    // The flush blocks (it waits for the export): off the async workers.
    let flushed = web::block(move || state.guard.flush()).await;
    let flushed = match flushed {
        Ok(result) => result,
        Err(e) => {
            return HttpResponse::InternalServerError()
                .json(json!({ "success": false, "error": e.to_string() }))
        }
    };
    match flushed {
        Ok(()) => HttpResponse::Ok().json(json!({ "success": true })),
        Err(e) => HttpResponse::InternalServerError().json(json!({
            "success": false,
            "error": datadog_otel_tracing::error_chain(&e),
        })),
    }
}

/// The current span: the last started one still open (`0`s when none).
async fn current(state: Data<State>) -> HttpResponse {
    let (span_id, trace_id) = lock(&state.started).last().copied().unwrap_or((0, 0));
    ids(span_id, trace_id)
}

/// The suite's log level names.
fn level(body: &Json_, key: &str) -> Option<tracing::Level> {
    match text(body, key)?.to_ascii_uppercase().as_str() {
        "DEBUG" => Some(tracing::Level::DEBUG),
        "INFO" => Some(tracing::Level::INFO),
        "WARN" => Some(tracing::Level::WARN),
        "ERROR" => Some(tracing::Level::ERROR),
        _ => None,
    }
}

/// `/otel/logger/create`: a named logger writing from `level` up. The library's logs are JSON
/// lines on stdout (`datadog_otel_tracing::logs`), not OpenTelemetry log records: the logger is
/// a name and a level over them.
async fn logger_create(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let (Some(name), Some(level)) = (text(&body, "name"), level(&body, "level")) else {
        return HttpResponse::BadRequest().json(json!({"success": false}));
    };
    lock(&state.loggers).insert(name, level);
    HttpResponse::Ok().json(json!({"success": true}))
}

/// `/otel/logger/write`: one JSON log line from logger `logger_name` at `level`, correlated
/// with span `span_id` when given (`logs::in_span_context`); below the logger's level, nothing.
async fn logger_write(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let (Some(logger), Some(level)) = (text(&body, "logger_name"), level(&body, "level")) else {
        return HttpResponse::BadRequest().json(json!({"success": false}));
    };
    let Some(least) = lock(&state.loggers).get(&logger).copied() else {
        return HttpResponse::NotFound().json(json!({"success": false}));
    };
    let message = text(&body, "message").unwrap_or_default();
    // tracing's levels order the other way round: ERROR < WARN < INFO < DEBUG.
    if level <= least {
        let write = || match level {
            tracing::Level::ERROR => tracing::error!(logger, "{message}"),
            tracing::Level::WARN => tracing::warn!(logger, "{message}"),
            tracing::Level::INFO => tracing::info!(logger, "{message}"),
            _ => tracing::debug!(logger, "{message}"),
        };
        match id(&body, "span_id").map(|id| state.parent(Some(id))) {
            Some(cx) => {
                let sc = cx.span().span_context().clone();
                datadog_otel_tracing::logs::in_span_context(&sc, write);
            }
            None => write(),
        }
    }
    HttpResponse::Ok().json(json!({"success": true}))
}

async fn config(state: Data<State>) -> HttpResponse {
    let effective = state.config.effective();
    let get = |key: &str| effective.get(key).cloned();
    let styles = match (
        get("DD_TRACE_PROPAGATION_STYLE_EXTRACT"),
        get("DD_TRACE_PROPAGATION_STYLE_INJECT"),
    ) {
        (Some(extract), Some(inject)) if extract == inject => Some(extract),
        (Some(extract), _) => Some(extract),
        _ => None,
    };
    let agent = get("DD_TRACE_AGENT_URL");
    HttpResponse::Ok().json(json!({ "config": {
        "dd_service": get("DD_SERVICE"),
        "dd_env": get("DD_ENV"),
        "dd_version": get("DD_VERSION"),
        "dd_tags": get("DD_TAGS"),
        "dd_trace_agent_url": agent,
        "dd_trace_enabled": get("DD_TRACE_ENABLED"),
        "dd_trace_sample_rate": get("DD_TRACE_SAMPLE_RATE"),
        "dd_trace_rate_limit": get("DD_TRACE_RATE_LIMIT"),
        "dd_trace_propagation_style": styles,
        "dd_trace_debug": get("DD_TRACE_DEBUG"),
        "dd_trace_otel_enabled": "true",
        "dd_log_level": null,
        "dd_runtime_metrics_enabled": "false",
        "dd_trace_sample_ignore_parent": null,
        "dd_dogstatsd_host": get("DD_DOGSTATSD_HOST"),
        "dd_dogstatsd_port": get("DD_DOGSTATSD_PORT"),
        "dd_logs_injection": "true",
        "dd_profiling_enabled": "false",
        "dd_data_streams_enabled": "false",
    }}))
}

/// The OpenTelemetry span kind of the suite's number (Python's `SpanKind` values).
fn kind(body: &Json_) -> SpanKind {
    match body.get("span_kind").and_then(Json_::as_u64) {
        Some(1) => SpanKind::Server,
        Some(2) => SpanKind::Client,
        Some(3) => SpanKind::Producer,
        Some(4) => SpanKind::Consumer,
        _ => SpanKind::Internal,
    }
}

async fn otel_start(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let name = text(&body, "name").unwrap_or_default();
    let attrs = attributes(&body, "attributes");
    let parent = state.parent(id(&body, "parent_id"));
    let (span_id, trace_id) = state.start(
        name,
        kind(&body),
        attrs,
        &parent,
        micros(&body, "timestamp"),
    );
    if let Some(links) = body.get("links").and_then(Json_::as_array) {
        for link in links {
            let sc = state
                .parent(id(link, "parent_id"))
                .span()
                .span_context()
                .clone();
            if sc.is_valid() {
                let attrs = attributes(link, "attributes");
                state.with_span(Some(span_id), |s| s.add_link(sc, attrs));
            }
        }
    }
    ids(span_id, trace_id)
}

async fn otel_end(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    state.finish(id(&body, "id"), micros(&body, "timestamp"));
    ok()
}

async fn otel_set_attributes(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let attrs = attributes(&body, "attributes");
    state.with_span(id(&body, "span_id"), |s| s.set_attributes(attrs));
    ok()
}

async fn otel_set_name(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let name = text(&body, "name").unwrap_or_default();
    state.with_span(id(&body, "span_id"), |s| s.update_name(name));
    ok()
}

async fn otel_set_status(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let description = text(&body, "description").unwrap_or_default();
    let status = match body.get("code").and_then(Json_::as_str) {
        Some("ERROR") => Status::error(description),
        Some("OK") => Status::Ok,
        _ => Status::Unset,
    };
    state.with_span(id(&body, "span_id"), |s| s.set_status(status));
    ok()
}

async fn otel_add_event(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let name = text(&body, "name").unwrap_or_default();
    let attrs = attributes(&body, "attributes");
    let at = micros(&body, "timestamp").unwrap_or_else(SystemTime::now);
    state.with_span(id(&body, "span_id"), |s| {
        s.add_event_with_timestamp(name, at, attrs)
    });
    ok()
}

/// The exception the suite asks to record: only its message is given.
#[derive(Debug)]
struct Exception(String);

impl std::fmt::Display for Exception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Exception {}

async fn otel_record_exception(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let exception = Exception(text(&body, "message").unwrap_or_default());
    let attrs = attributes(&body, "attributes");
    state.with_span(id(&body, "span_id"), |s| {
        record_exception(s, &exception, attrs)
    });
    ok()
}

async fn otel_is_recording(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let mut recording = false;
    state.with_span(id(&body, "span_id"), |s| recording = s.is_recording());
    HttpResponse::Ok().json(json!({ "is_recording": recording }))
}

async fn otel_span_context(state: Data<State>, body: Json<Json_>) -> HttpResponse {
    let sc = state
        .parent(id(&body, "span_id"))
        .span()
        .span_context()
        .clone();
    // The suite's convention: the trace id in hex, the span id as a number.
    HttpResponse::Ok().json(json!({
        "trace_id": format!("{:032x}", sc.trace_id()),
        "span_id": u64::from_be_bytes(sc.span_id().to_bytes()),
        "trace_flags": format!("{:02x}", sc.trace_flags().to_u8()),
        "trace_state": sc.trace_state().header(),
        "remote": sc.is_remote(),
    }))
}

async fn agent_info() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "ready": true }))
}

async fn not_implemented() -> HttpResponse {
    HttpResponse::NotFound().body("not implemented by this parametric app")
}

/// Serves the API on 127.0.0.1:`port` until the process is stopped; logs `listening`.
pub async fn serve(state: State, port: u16) -> std::io::Result<()> {
    let state = Data::new(state);
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(web::JsonConfig::default().limit(1 << 20))
            .route("/trace/span/start", web::post().to(span_start))
            .route("/trace/span/finish", web::post().to(span_finish))
            .route("/trace/span/current", web::get().to(current))
            .route(
                "/trace/span/set_resource",
                web::post().to(span_set_resource),
            )
            .route("/trace/span/set_meta", web::post().to(span_set_meta))
            .route("/trace/span/set_metric", web::post().to(span_set_metric))
            .route("/trace/span/error", web::post().to(span_error))
            .route("/trace/span/manual_keep", web::post().to(span_manual_keep))
            .route("/trace/span/manual_drop", web::post().to(span_manual_drop))
            .route("/trace/span/add_link", web::post().to(span_add_link))
            .route("/trace/span/inject_headers", web::post().to(span_inject))
            .route("/trace/span/extract_headers", web::post().to(span_extract))
            .route("/trace/span/flush", web::post().to(flush))
            .route("/trace/stats/flush", web::post().to(flush))
            .route("/trace/config", web::get().to(config))
            .route("/trace/agent/ensure_agent_info", web::get().to(agent_info))
            .route("/trace/otel/start_span", web::post().to(otel_start))
            .route("/trace/otel/end_span", web::post().to(otel_end))
            .route(
                "/trace/otel/set_attributes",
                web::post().to(otel_set_attributes),
            )
            .route("/trace/otel/set_name", web::post().to(otel_set_name))
            .route("/trace/otel/set_status", web::post().to(otel_set_status))
            .route("/trace/otel/add_event", web::post().to(otel_add_event))
            .route(
                "/trace/otel/record_exception",
                web::post().to(otel_record_exception),
            )
            .route(
                "/trace/otel/is_recording",
                web::post().to(otel_is_recording),
            )
            .route(
                "/trace/otel/span_context",
                web::post().to(otel_span_context),
            )
            .route("/trace/otel/flush", web::post().to(flush))
            .route("/trace/otel/current_span", web::get().to(current))
            .route("/otel/logger/create", web::post().to(logger_create))
            .route("/otel/logger/write", web::post().to(logger_write))
            .default_service(web::to(not_implemented))
    })
    .workers(2)
    .bind(("127.0.0.1", port))?;
    for address in server.addrs() {
        tracing::info!(%address, "listening");
    }
    server.run().await?;
    // Ended by a signal: send what is left (blocking, off the async runtime).
    let _ = web::block(move || state.guard.flush()).await;
    Ok(())
}
