//! What both actix-web services need around their handlers.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponse};
use opentelemetry::propagation::Extractor;
use std::marker::PhantomData;
use std::time::Duration;
use tracing::field::Empty;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry::{header_tags, record_error, redact};

/// What an error type tells the server span about itself.
pub trait TracedError: actix_web::ResponseError + 'static {
    /// A short type name for the span's `error.type` (`DatabaseUnavailable`, …).
    fn error_type(&self) -> &'static str;
}

/// Builds the per-request server span the way Datadog's tracers shape it: operation
/// `actix_web.request`, resource `<METHOD> <route>` (`GET 404` / `PATCH 405` when no route
/// matched the path / the method; then no `http.route` either), type
/// `web`, the usual `http.*` tags, and `error.*` on a 5xx. Errors of type `E` give their
/// [`TracedError::error_type`] and their `Display` (the internal detail, never sent to clients).
pub struct ServerSpanBuilder<E>(PhantomData<E>);

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

impl<E: TracedError> RootSpanBuilder for ServerSpanBuilder<E> {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let method = request.method().as_str();
        let route = request.match_pattern();
        let resource = match &route {
            Some(route) => format!("{method} {route}"),
            None => format!("{method} 404"),
        };
        let info = request.connection_info();
        let url = format!(
            "{}://{}{}",
            info.scheme(),
            info.host(),
            request
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        );
        let user_agent = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let span = tracing::info_span!(
            "http.request",
            otel.name = %resource,
            otel.kind = "server",
            otel.status_code = Empty,
            operation.name = "actix_web.request",
            resource.name = Empty,
            span.type = "web",
            component = "actix-web",
            http.method = %method,
            http.route = Empty,
            http.url = %redact::redact_url(&url),
            http.useragent = user_agent,
            http.status_code = Empty,
            error.type = Empty,
            error.message = Empty,
        );
        let header_tags = header_tags::installed();
        if !header_tags.is_empty() {
            let headers = request.headers();
            for (tag, value) in header_tags.tags_with(false, |name| joined(headers, name)) {
                span.set_attribute(tag, value);
            }
        }
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(request.headers()))
        });
        // A context without a valid remote span leaves the span a root (a bad header starts a
        // new trace, it never fails the request).
        let _ = span.set_parent(parent);
        span
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let (status, error) = match outcome {
            Ok(response) => (response.status(), response.response().error()),
            Err(error) => (error.as_response_error().status_code(), Some(error)),
        };
        span.record("http.status_code", status.as_u16().to_string());
        if let Ok(response) = outcome {
            let header_tags = header_tags::installed();
            if !header_tags.is_empty() {
                let headers = response.headers();
                for (tag, value) in header_tags.tags_with(true, |name| joined(headers, name)) {
                    span.set_attribute(tag, value);
                }
            }
            let request = response.request();
            if status == actix_web::http::StatusCode::METHOD_NOT_ALLOWED {
                // As Datadog's tracers: no route matched this method.
                span.record("resource.name", format!("{} 405", request.method()));
            } else if let Some(route) = request.match_pattern() {
                span.record("http.route", route);
            }
        }
        if status.is_server_error() {
            match error {
                Some(error) => {
                    let kind = error
                        .as_error::<E>()
                        .map(TracedError::error_type)
                        .unwrap_or("actix_web::Error");
                    record_error(&span, kind, &error.to_string());
                }
                None => record_error(&span, "http.server_error", &format!("status {status}")),
            }
        }
    }
}

/// A header's values joined with `,` (`None` when absent), for [`header_tags`].
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The representation a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The tutorial's plain bodies (`text/plain; charset=utf-8`).
    Plain,
    /// JSON, for clients sending `Accept: application/json`.
    Json,
}

impl Format {
    /// JSON when the `Accept` header names `application/json` (with a non-zero quality).
    pub fn of(request: &HttpRequest) -> Self {
        let accepts_json = request
            .headers()
            .get_all(header::ACCEPT)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or("");
                let zero_q = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/json") && !zero_q
            });
        if accepts_json {
            Format::Json
        } else {
            Format::Plain
        }
    }

    /// A response with a text body, or `{"<json_key>": text}` for JSON clients.
    pub fn text(
        self,
        status: actix_web::http::StatusCode,
        json_key: &str,
        text: &str,
    ) -> HttpResponse {
        match self {
            Format::Plain => HttpResponse::build(status)
                .content_type("text/plain; charset=utf-8")
                .body(text.to_string()),
            Format::Json => HttpResponse::build(status).json(serde_json::json!({ json_key: text })),
        }
    }
}

/// A plain-text response (`text/plain; charset=utf-8`).
pub fn plain(status: actix_web::http::StatusCode, body: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(body.into())
}

/// 404 for unknown paths.
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    Format::of(&request).text(actix_web::http::StatusCode::NOT_FOUND, "error", "Not Found")
}

/// A resource whose requests with an unrouted method get [`method_not_allowed`].
pub fn resource(path: &str) -> actix_web::Resource {
    actix_web::web::resource(path).default_service(actix_web::web::to(method_not_allowed))
}

/// 405 for a known path with another method.
pub async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    Format::of(&request).text(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "error",
        "Method Not Allowed",
    )
}

/// Resolves on the first SIGTERM or SIGINT. A second signal ends the process at once.
pub async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("shutdown signal received: finishing requests in flight");
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second shutdown signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // No signal handling available: only Ctrl-C through tokio's portable path.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The container health check: `GET /health` on the local port, exit status 0 when it answers
/// 200. Needs no curl in the image.
pub fn healthcheck(port: u16) -> std::process::ExitCode {
    use std::io::{Read, Write};
    let check = || -> std::io::Result<bool> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200")
    };
    match check() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("unhealthy: /health did not answer 200");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The service an outgoing call goes to, for the client span's `peer.service`
/// (attach it with `RequestBuilder::with_extension`).
#[derive(Debug, Clone, Copy)]
pub struct PeerService(pub &'static str);

/// Client span for outgoing calls through `reqwest-tracing`, shaped like Datadog's: operation
/// `reqwest.request`, service `reqwest`, resource `<METHOD> <path>`, type `http`, with
/// `http.url`, `http.status_code`, `out.host`, `peer.service`, and `error.*` when the call fails
/// or answers 5xx.
pub struct ClientSpanBackend;

impl reqwest_tracing::ReqwestOtelSpanBackend for ClientSpanBackend {
    fn on_request_start(req: &reqwest::Request, ext: &mut http::Extensions) -> Span {
        let url = req.url();
        let method = req.method().as_str();
        let peer = ext.get::<PeerService>().map(|p| p.0);
        let span = tracing::info_span!(
            "http.client.request",
            otel.name = %format!("{method} {}", url.path()),
            otel.kind = "client",
            otel.status_code = Empty,
            operation.name = "reqwest.request",
            service.name = "reqwest",
            span.type = "http",
            component = "reqwest",
            http.method = %method,
            http.url = %redact::redact_url(url.as_str()),
            http.status_code = Empty,
            out.host = url.host_str().unwrap_or(""),
            network.destination.port = url.port_or_known_default(),
            peer.service = peer,
            // Measured, as ddtrace's HTTP client spans: the Agent computes their stats.
            _dd.measured = 1i64,
            error.type = Empty,
            error.message = Empty,
        );
        let header_tags = header_tags::installed();
        if !header_tags.is_empty() {
            for (tag, value) in header_tags.tags(req.headers(), false) {
                span.set_attribute(tag, value);
            }
        }
        span
    }

    fn on_request_end(
        span: &Span,
        outcome: &reqwest_middleware::Result<reqwest::Response>,
        _ext: &mut http::Extensions,
    ) {
        match outcome {
            Ok(response) => {
                let status = response.status();
                span.record("http.status_code", status.as_u16().to_string());
                let header_tags = header_tags::installed();
                if !header_tags.is_empty() {
                    for (tag, value) in header_tags.tags(response.headers(), true) {
                        span.set_attribute(tag, value);
                    }
                }
                if status.is_server_error() {
                    let message = format!("{} answered {status}", response.url());
                    record_error(span, "http.server_error", &message);
                }
            }
            Err(error) => {
                let kind = match error {
                    reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => {
                        "reqwest::Error(timeout)"
                    }
                    reqwest_middleware::Error::Reqwest(e) if e.is_connect() => {
                        "reqwest::Error(connect)"
                    }
                    reqwest_middleware::Error::Reqwest(_) => "reqwest::Error",
                    reqwest_middleware::Error::Middleware(_) => "reqwest_middleware::Error",
                };
                record_error(span, kind, &error_chain(error));
            }
        }
    }
}

/// An error and its sources, joined with `: ` (reqwest's own message hides the cause).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
