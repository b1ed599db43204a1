//! Code shared by the `notes` and `calendar` services.
//!
//! Layout (each module depends only on the ones listed before it; no cycles):
//! - [`error`]: general error formatting ([`error::error_chain`]); depends on nothing.
//! - [`config`]: the one typed layer that reads the process environment. Nothing else in the
//!   workspace calls `std::env::var` (clippy's `disallowed-methods` enforces it).
//! - [`http`]: content negotiation, plain bodies, the 404/405 answers, route registration
//!   ([`http::Routes`]) and a request's [`http::Routing`] (read by the server span); no telemetry.
//! - [`telemetry`]: logs, the span conventions ([`telemetry::spans`]: server, client and
//!   database span fields, `record_error`), sampling, propagation, and the export to the Datadog
//!   Agent. Inside it: the Datadog-semantics pieces stand alone (`glob`, `rate_limiter`,
//!   `agent_rates`, `baggage`, `b3`) or use only `config` (`styles`, `redact`, `header_tags`);
//!   `rules` uses `glob`; `settings` gathers `rules`, `styles`, `redact`, `header_tags`. `spans`
//!   uses `redact` and `header_tags`, `propagation` uses `b3`, `baggage` and `styles`; `facts`
//!   and `sampler` use `propagation` (the sampler also `spans`, `rules`, `rate_limiter`,
//!   `agent_rates`), `payload` uses `spans`, and `datadog` (the only module that knows
//!   `opentelemetry-datadog`) uses `agent_rates`, `chunks`, `facts`, `payload` and `spans`.
//! - [`server`]: listening settings and limits, the bound server, graceful shutdown, the
//!   container health check, and the services' `main` ([`server::run_main`]).

pub mod config;
pub mod error;
pub mod http;
pub mod server;
pub mod telemetry;
