//! Datadog tracing over OpenTelemetry: `tracing` spans sent to the Datadog Agent through
//! `opentelemetry-datadog`, with the semantics of Datadog's own tracers (sampling rules, rate
//! limit and the Agent's rates; Datadog, W3C, B3 and baggage propagation with 128-bit trace ids;
//! trace chunks with their chunk-level tags; query-string redaction; header tags) and JSON logs
//! that carry the trace ids Datadog links logs with.
//!
//! ```no_run
//! use datadog_otel_tracing::{Config, Pipeline};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Datadog's variables (DD_SERVICE, DD_ENV, DD_TRACE_AGENT_URL, DD_TRACE_SAMPLING_RULES, …);
//! // "my-service" when DD_SERVICE is unset. A bad value names its variable.
//! let config = Config::from_process_env("my-service")?;
//! let guard = Pipeline::build(&config)?.install()?;
//! // ... run the service: its `tracing` spans are Datadog spans ...
//! guard.shutdown(Duration::from_secs(3))?;
//! # Ok(()) }
//! ```
//!
//! The public API:
//! - [`Config`] (with [`Env`] and [`ConfigError`]): the configuration, from the environment
//!   or built in code;
//! - [`Pipeline`]: [`Pipeline::build`] makes the subscriber, [`Pipeline::install`] installs it
//!   and returns the [`TracingGuard`] whose [`TracingGuard::shutdown`] flushes;
//! - [`HttpTracing`]: the per-application HTTP settings (query redaction, header tags, paths
//!   left untraced), read by both integrations;
//! - [`actix`] (feature `actix`): the server span of each request and the route-aware resource;
//! - [`reqwest_client`] (feature `reqwest`): the client span of outgoing calls through
//!   `reqwest-middleware`;
//! - [`spans`]: the span fields the export reads, and [`spans::record_error`];
//! - [`has_extracted`]: whether an extracted context holds anything (a parent, baggage, the
//!   link of a restarted trace);
//! - [`logs`]: the JSON log layer with Datadog's correlation fields.
//!
//! Layout (each module depends only on the ones before it): `env`; the Datadog-semantics
//! pieces, standing alone (`glob`, `rate_limiter`, `agent_rates`, `baggage`, `b3`) or on `env`
//! (`styles`, `redact`, `header_tags`); `rules` (on `glob`); `settings` (gathers `rules`,
//! `styles`, `redact`, `header_tags`); `config`; `spans`; `mapping` (on `spans`: OpenTelemetry
//! spans with Datadog's semantics); `web` (on `redact`, `header_tags`, `config`); `propagation`
//! (on `b3`, `baggage`, `styles`); `facts`, `sampler` and `links` (on `propagation`; the
//! sampler on `mapping` too); `chunks`; `payload` (on `spans`); `datadog`, the only module that
//! knows `opentelemetry-datadog` (on `agent_rates`, `chunks`, `facts`, `links`, `mapping`,
//! `payload`, `spans`, `config`); `health`; `processor` (on `chunks`, `datadog`, `health`);
//! `logs`; `pipeline` (on everything above); `actix` and `reqwest_client` (on
//! `spans`, `web`, `propagation`).
#![deny(missing_docs)]

mod agent_info;
mod agent_rates;
mod b3;
mod baggage;
mod chunks;
mod config;
mod datadog;
mod env;
mod facts;
mod glob;
mod header_tags;
mod health;
mod links;
pub mod logs;
mod mapping;
mod payload;
mod pipeline;
mod processor;
mod propagation;
mod rate_limiter;
mod redact;
mod rules;
mod sampler;
#[cfg(feature = "datadog-sdk")]
mod sdk;
mod settings;
pub mod spans;
mod stats;
mod styles;
mod web;

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "reqwest")]
pub mod reqwest_client;

pub use config::Config;
pub use datadog::ExporterError;
pub use env::{ConfigError, Env};
pub use pipeline::{InitError, Pipeline, ShutdownError, TracingGuard};
pub use propagation::has_extracted;
pub use web::HttpTracing;

/// The parsers of Datadog's inputs, for the fuzz targets and property tests (feature
/// `fuzzing`); not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::agent_rates::AgentRates;
    pub use crate::b3::B3Context;
    pub use crate::baggage::Baggage;
    /// Baggage's bounds.
    pub mod baggage {
        pub use crate::baggage::{MAX_BYTES, MAX_ITEMS};
    }
    pub use crate::glob::Glob;
    pub use crate::header_tags::HeaderTags;
    pub use crate::propagation::DatadogW3cPropagator;
    pub use crate::redact::QueryObfuscator;
    pub use crate::rules::{RootFacts, SamplingRules};
}

/// An error and its sources, joined with `: ` (reqwest's own message hides the cause): the
/// text this crate records as a span's `error.message`.
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
