//! The actix-web integration: [`ServerSpanBuilder`], the server span of each request for
//! `tracing-actix-web`'s `TracingLogger`, and the route-aware resource: routes registered
//! through [`Routes`] let the span know, when it starts, whether the request is routed
//! (`GET /orders/{id}`), of a method the path does not take (`PATCH 405`) or unrouted
//! (`GET 404`), so that sampling rules on `resource` see the final resource.
//!
//! ```
//! use actix_web::{web, App, HttpResponse};
//! use datadog_otel_tracing::actix::{resource, Routes, ServerSpanBuilder};
//! use datadog_otel_tracing::{Config, HttpTracing};
//! use tracing_actix_web::TracingLogger;
//!
//! async fn order() -> HttpResponse {
//!     HttpResponse::Ok().body("an order")
//! }
//!
//! let http = HttpTracing::from_config(&Config::new("shop")).untraced_path("/health");
//! let app = App::new()
//!     .wrap(TracingLogger::<ServerSpanBuilder>::new())
//!     .app_data(http.clone())
//!     .configure(|cfg| Routes::default().with(resource("/orders/{id}").get(order)).register(cfg));
//! ```
//!
//! The settings (redaction, header tags, untraced paths) are the app's [`HttpTracing`] app
//! data; an app without it gets Datadog's defaults. The parent trace context is extracted with
//! the global propagator ([`crate::Pipeline::install`] sets it), only when the request carries
//! a trace-context header.

use crate::header_tags;
use crate::propagation;
use crate::spans::record_error;
use crate::web::HttpTracing;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::http::Method;
use actix_web::web::ServiceConfig;
use actix_web::{FromRequest, Handler, HttpRequest, Responder};
use opentelemetry::propagation::Extractor;
use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;
use tracing::field::Empty;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// What an error type tells the server span about itself.
pub trait TracedError: actix_web::ResponseError + 'static {
    /// A short type name for the span's `error.type` (`DatabaseUnavailable`, …).
    fn error_type(&self) -> &'static str;
}

/// For a service whose handlers cannot fail (calendar): `ServerSpanBuilder<Infallible>`.
impl TracedError for std::convert::Infallible {
    fn error_type(&self) -> &'static str {
        match *self {}
    }
}

/// Builds the per-request server span the way Datadog's tracers shape it: operation
/// `actix_web.request`, resource `<METHOD> <route>` (`GET 404` / `PATCH 405` when no route
/// matched the path / the method; then no `http.route` either), type
/// `web`, the usual `http.*` tags, and `error.*` on a 5xx. Errors of type `E` give their
/// [`TracedError::error_type`] and their `Display` (the internal detail, never sent to clients).
/// Paths the app's [`HttpTracing`] leaves untraced get no span.
///
/// The resource is final when the span starts, which is when the trace's sampling decision is
/// made: the route comes from the pattern actix-web matched, and `405` from the methods the
/// service registered for it through [`Routes`] ([`Routing`]), so a sampling rule
/// on `PATCH 405` applies to that request and one on `PATCH /notes` does not.
pub struct ServerSpanBuilder<E = std::convert::Infallible>(PhantomData<E>);

struct HeaderExtractor<'a>(&'a HeaderMap);

/// The trace-context headers ([`propagation::HEADERS`]) as `HeaderName`s, in the same order: a
/// lookup by `&str` parses the name, and copies it when it is not a standard header (all of
/// these but `baggage`).
static CONTEXT_HEADERS: [HeaderName; 13] = propagation::context_header_names!(HeaderName);

impl HeaderExtractor<'_> {
    /// `key`'s static name when it is a trace-context header.
    fn known(key: &str) -> Option<&'static HeaderName> {
        CONTEXT_HEADERS.get(propagation::header_index(key)?)
    }
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = match Self::known(key) {
            Some(name) => self.0.get(name),
            None => self.0.get(key),
        };
        value.and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
    /// Every value of a repeated header (W3C lets `tracestate` be split across several).
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values = match Self::known(key) {
            Some(name) => self.0.get_all(name),
            None => self.0.get_all(key),
        };
        let all: Vec<&str> = values.filter_map(|v| v.to_str().ok()).collect();
        (!all.is_empty()).then_some(all)
    }
}

// Fields are given as `&str` where possible: `%value` would format each one through `Debug`
// into a fresh string on every request.
impl<E: TracedError> RootSpanBuilder for ServerSpanBuilder<E> {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let http = settings(request.request());
        if !http.traces_path(request.path()) {
            // A disabled span: nothing is exported, and the handler's own spans (if it made
            // any) would start traces of their own.
            return Span::none();
        }
        let routing = Routing::of(request.request());
        let resource = routing.resource(request.method());
        let method = request.method().as_str();
        let (scheme, host) = scheme_and_host(request.request());
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let url = [&*scheme, "://", &*host, target].concat();
        let user_agent = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        // A root in `tracing` too: without a trace-context header the span is a trace's root,
        // whatever span happens to be current (its parent, if any, is set below).
        let span = tracing::info_span!(
            parent: None,
            "http.request",
            otel.name = resource.as_str(),
            otel.kind = "server",
            otel.status_code = Empty,
            operation.name = "actix_web.request",
            // Set only for a 405, for Datadog's SDK (`datadog-sdk`), whose resource comes
            // from `http.route` otherwise; the project's path reads `otel.name`, the same.
            resource.name = matches!(routing, Routing::MethodNotRouted(_)).then_some(resource.as_str()),
            span.type = "web",
            component = "actix-web",
            http.method = method,
            http.route = routing.route(),
            http.url = http.redact_url(&url).as_ref(),
            http.useragent = user_agent,
            http.status_code = Empty,
            error.type = Empty,
            error.message = Empty,
        );
        let header_tags = http.header_tags();
        if !header_tags.is_empty() {
            let headers = request.headers();
            for (tag, value) in header_tags.tags_with(false, |name| joined(headers, name)) {
                span.set_attribute(tag, value);
            }
        }
        // Most requests carry no trace context: then there is nothing to extract, and the span
        // stays a root without a pass through every configured style.
        let headers = request.headers();
        if propagation::carries_context(headers.keys().map(|name| name.as_str())) {
            let parent = opentelemetry::global::get_text_map_propagator(|p| {
                p.extract(&HeaderExtractor(headers))
            });
            // A context without a valid remote span leaves the span a root (a bad header starts
            // a new trace, it never fails the request).
            let _ = span.set_parent(parent);
        }
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
        span.record("http.status_code", status.as_str());
        if let Ok(response) = outcome {
            let header_tags = settings(response.request()).header_tags();
            if !header_tags.is_empty() {
                let headers = response.headers();
                for (tag, value) in header_tags.tags_with(true, |name| joined(headers, name)) {
                    span.set_attribute(tag, value);
                }
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

/// The request's scheme and host as [`HttpRequest::connection_info`] gives them, without
/// building it (it also formats the peer's address, and is kept in the request's extensions):
/// `X-Forwarded-Proto`, the URI's scheme, then the app's `secure` setting; `X-Forwarded-Host`,
/// `Host`, the URI's authority, then the app's host. A request with a `Forwarded` header is
/// left to actix-web.
fn scheme_and_host(request: &HttpRequest) -> (Cow<'_, str>, Cow<'_, str>) {
    let headers = request.headers();
    if headers.contains_key(header::FORWARDED) {
        let info = request.connection_info();
        return (
            Cow::Owned(info.scheme().to_string()),
            Cow::Owned(info.host().to_string()),
        );
    }
    static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    // By `HeaderName`: a lookup by `&str` parses the name first.
    let first = |name: &HeaderName| {
        let value = headers.get(name)?.to_str().ok()?;
        value.split(',').next().map(str::trim)
    };
    let config = request.app_config();
    let scheme = first(&X_FORWARDED_PROTO)
        .or_else(|| request.uri().scheme_str())
        .unwrap_or(if config.secure() { "https" } else { "http" });
    let host = first(&X_FORWARDED_HOST)
        .or_else(|| headers.get(header::HOST)?.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_else(|| config.host());
    (Cow::Borrowed(scheme), Cow::Borrowed(host))
}

/// A header's values joined with `,` (`None` when absent), for the header tags.
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    header_tags::join(headers.get_all(name).filter_map(|v| v.to_str().ok()))
}

/// The app's [`HttpTracing`], or Datadog's defaults.
fn settings(request: &HttpRequest) -> &HttpTracing {
    request
        .app_data::<HttpTracing>()
        .unwrap_or_else(|| HttpTracing::defaults())
}

/// Where a request's route led: what the server span is named after (`<METHOD> <route>`,
/// `<METHOD> 405`, `<METHOD> 404`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// A route takes this method on the matched pattern (`/notes/{id}`).
    Routed(String),
    /// The path matched this pattern, but no route takes the method: the answer is 405.
    MethodNotRouted(String),
    /// No pattern matched the path: the answer is 404.
    NoRoute,
}

impl Routing {
    /// Where `request` is routed, from the pattern actix-web matches and the [`RoutedMethods`]
    /// the service registered through [`Routes`]. Known before the handler runs, so the server
    /// span has its final resource when it starts (sampling rules on `resource` see it).
    /// Without registered routes, every matched pattern counts as routed.
    pub fn of(request: &HttpRequest) -> Self {
        match request.match_pattern() {
            None => Routing::NoRoute,
            Some(pattern) => match request.app_data::<RoutedMethods>() {
                Some(table) if !table.routes(&pattern, request.method()) => {
                    Routing::MethodNotRouted(pattern)
                }
                _ => Routing::Routed(pattern),
            },
        }
    }

    /// The matched route (`/notes/{id}`), when a route takes the request (`http.route`).
    pub fn route(&self) -> Option<&str> {
        match self {
            Routing::Routed(pattern) => Some(pattern),
            _ => None,
        }
    }

    /// The Datadog resource of a request with this method: `GET /notes`, `PATCH 405`, `GET 404`.
    pub fn resource(&self, method: &Method) -> String {
        match self {
            Routing::Routed(pattern) => format!("{method} {pattern}"),
            Routing::MethodNotRouted(_) => format!("{method} 405"),
            Routing::NoRoute => format!("{method} 404"),
        }
    }
}

/// The methods each path pattern routes, as [`Routes::register`] recorded them; app data of the
/// service's `App`, read by [`Routing::of`].
#[derive(Debug, Clone, Default)]
pub struct RoutedMethods(HashMap<String, Vec<Method>>);

impl RoutedMethods {
    /// Whether a route of `pattern` takes `method`.
    pub fn routes(&self, pattern: &str, method: &Method) -> bool {
        self.0.get(pattern).is_some_and(|m| m.contains(method))
    }
}

/// One path and the handlers of its methods. Give it to [`Routes::with`].
pub struct Resource {
    path: String,
    methods: Vec<Method>,
    inner: actix_web::Resource,
}

/// A path whose routes are added with [`Resource::get`], [`Resource::post`], ….
pub fn resource(path: &str) -> Resource {
    Resource {
        path: path.to_string(),
        methods: Vec::new(),
        inner: actix_web::web::resource(path),
    }
}

impl Resource {
    /// Answers requests with a method the path does not take (actix-web's default: an empty
    /// 405).
    pub fn method_not_allowed<F, Args>(mut self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.inner = self.inner.default_service(actix_web::web::to(handler));
        self
    }

    /// Routes `method` to `handler`.
    pub fn route<F, Args>(mut self, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.inner = self
            .inner
            .route(actix_web::web::method(method.clone()).to(handler));
        self.methods.push(method);
        self
    }

    /// Routes `GET` to `handler`.
    pub fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::GET, handler)
    }

    /// Routes `POST` to `handler`.
    pub fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::POST, handler)
    }

    /// Routes `PUT` to `handler`.
    pub fn put<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::PUT, handler)
    }

    /// Routes `DELETE` to `handler`.
    pub fn delete<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::DELETE, handler)
    }
}

/// A service's routes: the one way both services register them, so that the actix-web
/// resources and the [`RoutedMethods`] the server span reads cannot disagree.
///
/// ```ignore
/// Routes::default()
///     .with(resource("/").get(index))
///     .with(resource("/notes").get(list).post(create))
///     .register(cfg);
/// ```
#[derive(Default)]
pub struct Routes {
    methods: HashMap<String, Vec<Method>>,
    resources: Vec<actix_web::Resource>,
}

impl Routes {
    /// Adds a path and its routes (a path added twice keeps the methods of both).
    pub fn with(mut self, resource: Resource) -> Self {
        self.methods
            .entry(resource.path)
            .or_default()
            .extend(resource.methods);
        self.resources.push(resource.inner);
        self
    }

    /// Registers the resources, and the [`RoutedMethods`] as app data (one set per `App`: a
    /// second `register` in the same `App` would replace the first one's table).
    pub fn register(self, cfg: &mut ServiceConfig) {
        cfg.app_data(RoutedMethods(self.methods));
        for resource in self.resources {
            cfg.service(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    /// The extractor's static names are the trace-context headers, in order.
    #[test]
    fn context_headers_are_the_propagation_headers() {
        let names: Vec<&str> = CONTEXT_HEADERS.iter().map(HeaderName::as_str).collect();
        assert_eq!(names, propagation::HEADERS);
        let mut headers = HeaderMap::new();
        headers.append(
            HeaderName::from_static("tracestate"),
            "a=1".parse().unwrap(),
        );
        headers.append(
            HeaderName::from_static("tracestate"),
            "b=2".parse().unwrap(),
        );
        headers.insert(HeaderName::from_static("x-other"), "o".parse().unwrap());
        let extractor = HeaderExtractor(&headers);
        assert_eq!(extractor.get_all("tracestate"), Some(vec!["a=1", "b=2"]));
        assert_eq!(extractor.get("x-other"), Some("o"));
        assert_eq!(extractor.get("traceparent"), None);
    }

    /// The scheme and host of the server span's URL are those actix-web's connection info
    /// gives, whatever the proxy headers.
    #[test]
    fn scheme_and_host_are_those_of_the_connection_info() {
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![],
            vec![("host", "notes:8080")],
            vec![("host", "notes:8080"), ("x-forwarded-host", "a.example, b")],
            vec![("x-forwarded-proto", " https , http"), ("host", "h")],
            vec![("forwarded", "for=1.2.3.4; proto=https; host=f.example")],
            vec![("forwarded", "for=1.2.3.4"), ("x-forwarded-host", "x")],
        ];
        for headers in cases {
            for uri in ["/notes?id=1", "http://u.example:81/notes"] {
                let mut request = TestRequest::get().uri(uri);
                for (name, value) in &headers {
                    request = request.insert_header((*name, *value));
                }
                let request = request.to_http_request();
                let (scheme, host) = scheme_and_host(&request);
                let info = request.connection_info();
                assert_eq!(
                    (&*scheme, &*host),
                    (info.scheme(), info.host()),
                    "{uri} {headers:?}"
                );
            }
        }
    }
}
