//! Code shared by the `notes` and `calendar` services.
//!
//! Layout:
//! - [`config`]: the one typed layer that reads the process environment. Nothing else in the
//!   workspace calls `std::env::var` (clippy's `disallowed-methods` enforces it).
//! - [`telemetry`]: logs, spans and their export to the Datadog Agent. The only module that
//!   knows about `opentelemetry-datadog` is [`telemetry::datadog`].
//! - [`http`]: what both actix-web servers need: the traced server span, content negotiation,
//!   the outgoing-call span backend, the shutdown signal and the container health check.
//! - [`server`]: listening settings and limits, the bound server, and the services' `main`.

pub mod config;
pub mod error;
pub mod http;
pub mod server;
pub mod telemetry;
