//! Code shared by the `notes` and `calendar` services.
//!
//! Layout:
//! - [`config`]: the one typed layer that reads the process environment. Nothing else in the
//!   workspace calls `std::env::var` (clippy's `disallowed-methods` enforces it).
//! - [`telemetry`]: logs, spans and their export to the Datadog Agent. The only module that
//!   knows about `opentelemetry-datadog` is [`telemetry::datadog`].
//! - [`http`]: what both actix-web servers need: the traced server span, content negotiation,
//!   the outgoing-call span backend, graceful shutdown and the container health check.

pub mod config;
pub mod http;
pub mod telemetry;
