//! What both actix-web services need around their handlers: content negotiation, plain
//! bodies, the 404/405 answers, and route registration ([`Routes`]), which records the methods
//! each path routes so that a request's [`Routing`] (and the server span's resource) is known
//! before any handler runs.

use actix_web::http::{header, Method};
use actix_web::web::ServiceConfig;
use actix_web::{FromRequest, Handler, HttpRequest, HttpResponse, Responder};
use std::collections::HashMap;

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

/// One path and the handlers of its methods; requests with another method get
/// [`method_not_allowed`]. Give it to [`Routes::with`].
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
        inner: actix_web::web::resource(path)
            .default_service(actix_web::web::to(method_not_allowed)),
    }
}

impl Resource {
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

/// 405 for a known path with another method.
pub async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    Format::of(&request).text(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "error",
        "Method Not Allowed",
    )
}
