//! What the `notes` and `calendar` services share around the tracing library
//! (`datadog-otel-tracing`, which holds everything Datadog).
//!
//! Layout (each module depends only on the ones listed before it; no cycles):
//! - [`error`]: general error formatting ([`error::error_chain`], the library's).
//! - [`config`]: the one typed layer that reads the process environment ([`config::Env`], the
//!   library's). Nothing else in the workspace calls `std::env::var` (clippy's
//!   `disallowed-methods` enforces it).
//! - [`http`]: content negotiation, plain bodies, the 404/405 answers, and the route
//!   registration the server span reads ([`http::resource`], [`http::Routes`]).
//! - [`server`]: listening settings and limits, the app's HTTP tracing settings
//!   ([`server::ServerSettings::http_tracing`]), the bound server, graceful shutdown, the
//!   container health check, and the services' `main` ([`server::run_main`]: it builds and
//!   installs the tracing pipeline, and flushes it at the end).

pub mod config;
pub mod error;
pub mod http;
pub mod server;
