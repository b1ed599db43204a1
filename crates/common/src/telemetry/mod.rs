//! Logs and traces.
//!
//! [`init`] installs, once per process and before the async runtime starts:
//! - a JSON log layer ([`logs`]), filtered by `RUST_LOG` (default `info`);
//! - unless `DD_TRACE_ENABLED=false`: a `tracing-opentelemetry` layer whose spans go through a
//!   bounded batch processor to the Datadog Agent ([`datadog`]), sampled by [`sampler`] (rules,
//!   rate limit, the Agent's rates), with the configured propagation styles ([`propagation`])
//!   installed as the global propagator. The export path is built in one place,
//!   `project_provider`; with the cargo feature `datadog-sdk`, Datadog's own SDK
//!   (`datadog-opentelemetry`, module `sdk`) is built there instead. The query-string
//!   obfuscator ([`redact`]) and the header tags ([`header_tags`]) are installed for the span
//!   builders, tracing on or off.
//!
//! Spans are plain `tracing` spans following the conventions of [`spans`]. On export, each trace
//! chunk ([`chunks`]) gets its Datadog facts once ([`facts`]), and the crate's payload is
//! adjusted in one streaming pass ([`payload`]).

pub mod chunks;
pub mod datadog;
pub mod facts;
pub mod logs;
pub mod payload;
pub mod propagation;
pub mod sampler;
#[cfg(feature = "datadog-sdk")]
pub mod sdk;
pub mod spans;

// Datadog semantics (issue 11): each a self-contained piece with its own tests.
pub mod agent_rates;
pub mod b3;
pub mod baggage;
pub mod glob;
pub mod header_tags;
pub mod rate_limiter;
pub mod redact;
pub mod rules;
pub mod settings;
pub mod styles;

use crate::config::{ConfigError, Env};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::Duration;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Telemetry settings, read from Datadog's usual environment variables.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `DD_SERVICE`: the service every span and log line belongs to.
    pub service: String,
    /// `DD_ENV`, kept as given (case included).
    pub env: Option<String>,
    /// `DD_VERSION`, kept as given.
    pub version: Option<String>,
    /// `DD_TAGS` (`key:value` pairs separated by commas or spaces), added to every span.
    pub tags: Vec<(String, String)>,
    /// `DD_TRACE_AGENT_URL`, else `http://$DD_AGENT_HOST:$DD_TRACE_AGENT_PORT`, else the
    /// default socket when it exists (then `http://localhost`, the host name sent over it).
    pub agent_url: String,
    /// The Agent's Unix socket (`DD_TRACE_AGENT_URL=unix:///…`, or the default one).
    pub agent_socket: Option<std::path::PathBuf>,
    /// `DD_TRACE_ENABLED` (default true).
    pub enabled: bool,
    /// `DD_TRACE_SAMPLE_RATE`, as given; the sampler uses it as the catch-all rule at the end of
    /// [`settings::DatadogSettings::rules`].
    pub sample_rate: Option<f64>,
    /// `DD_TRACE_DEBUG`: log every payload sent to the agent and every export error.
    pub debug: bool,
    /// `DD_TRACE_AGENT_TIMEOUT` in seconds (default 2): bound on one send to the agent.
    pub agent_timeout: Duration,
    /// `DD_TRACE_SPAN_QUEUE_SIZE` (default 8192): spans waiting for export; more are dropped.
    pub queue_size: usize,
    /// `DD_TRACE_FLUSH_INTERVAL_MS` (default 1000): how often spans are sent.
    pub flush_interval: Duration,
    /// `RUST_LOG` (default `info`).
    pub log_filter: String,
    /// Sampling rules and limit, propagation styles, query obfuscation, header tags.
    pub datadog: settings::DatadogSettings,
}

impl TelemetryConfig {
    /// Reads the settings, with `default_service` when `DD_SERVICE` is unset.
    pub fn from_env(env: &Env, default_service: &str) -> Result<Self, ConfigError> {
        let agent = settings::AgentEndpoint::from_env(env, |p| p.exists())?;
        let timeout_secs: f64 = env.parse("DD_TRACE_AGENT_TIMEOUT", 2.0)?;
        if !(timeout_secs.is_finite() && timeout_secs > 0.0) {
            return Err(ConfigError::new(
                "DD_TRACE_AGENT_TIMEOUT",
                "must be a positive number of seconds",
            ));
        }
        let queue_size = env.positive("DD_TRACE_SPAN_QUEUE_SIZE", 8192)?;
        Ok(Self {
            service: env.string("DD_SERVICE", default_service),
            env: env.get("DD_ENV").map(str::to_string),
            version: env.get("DD_VERSION").map(str::to_string),
            tags: parse_tags(env.get("DD_TAGS").unwrap_or("")),
            agent_url: agent.base_url(),
            agent_socket: agent.socket().map(Into::into),
            enabled: env.flag("DD_TRACE_ENABLED", true)?,
            sample_rate: env.rate("DD_TRACE_SAMPLE_RATE")?,
            debug: env.flag("DD_TRACE_DEBUG", false)?,
            agent_timeout: Duration::from_secs_f64(timeout_secs),
            queue_size,
            flush_interval: env.millis("DD_TRACE_FLUSH_INTERVAL_MS", 1000)?,
            log_filter: env.string("RUST_LOG", "info"),
            datadog: settings::DatadogSettings::from_env(env)?,
        })
    }
}

/// `DD_TAGS`: `key:value` pairs separated by commas or spaces; a key without value is kept empty.
fn parse_tags(raw: &str) -> Vec<(String, String)> {
    raw.split([',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .filter_map(|t| {
            let (k, v) = t.split_once(':').unwrap_or((t, ""));
            (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// What [`init`] installed; call [`Telemetry::shutdown`] after the server stopped.
#[derive(Debug)]
pub struct Telemetry {
    /// The tracer provider, to flush and stop at shutdown (`None` when tracing is off).
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued, waiting at most `timeout` (an unreachable agent cannot hang
    /// shutdown).
    pub fn shutdown(self, timeout: Duration) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown_with_timeout(timeout) {
                tracing::warn!(error = %e, "spans could not all be flushed at shutdown");
            }
        }
    }
}

/// Why [`init`] could not install logging and tracing.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// `RUST_LOG` is not a filter.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A global subscriber was installed already.
    #[error("cannot install the log and trace subscriber")]
    Subscriber(#[source] tracing_subscriber::util::TryInitError),
    /// The HTTP client for the Agent could not be built.
    #[error("cannot build the agent HTTP client")]
    AgentClient(#[source] reqwest::Error),
    /// The thread building that client panicked.
    #[error("cannot build the agent HTTP client: its thread panicked")]
    AgentClientPanicked,
    /// `opentelemetry-datadog` refused its settings.
    #[error(transparent)]
    Exporter(datadog::ExporterError),
}

/// Installs logging and tracing for the process. Call it before building the async runtime.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, InitError> {
    let filter = EnvFilter::try_new(&config.log_filter).map_err(|e| {
        let message = format!("{:?} is not a log filter", config.log_filter);
        ConfigError::with_source("RUST_LOG", message, e)
    })?;
    let log_layer = logs::JsonLogLayer::new(
        logs::DatadogJsonFormat::new(
            &config.service,
            config.env.as_deref(),
            config.version.as_deref(),
        ),
        std::io::stdout,
    );
    let log_layer = match config.enabled {
        true => log_layer.with_trace_ids(),
        false => log_layer,
    }
    .with_filter(filter);

    redact::install(config.datadog.query_obfuscation.clone());
    header_tags::install(config.datadog.header_tags.clone());
    if !config.enabled {
        tracing_subscriber::registry()
            .with(log_layer)
            .try_init()
            .map_err(InitError::Subscriber)?;
        return Ok(Telemetry { provider: None });
    }

    // The seam: the one place where the export path is chosen.
    #[cfg(not(feature = "datadog-sdk"))]
    let provider = project_provider(config)?;
    // Datadog's own SDK instead (`telemetry::sdk`).
    #[cfg(feature = "datadog-sdk")]
    let provider = sdk::provider(config);
    let tracer = provider.tracer("apm-tutorial-rust");

    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        // No OpenTelemetry context attached on each enter and exit of each span (every poll of
        // an instrumented future): parents come from the `tracing` span tree, outgoing calls
        // inject `Span::current().context()`, and log lines ask for their span's ids
        // ([`logs::JsonLogLayer`]).
        .with_context_activation(false)
        .with_level(false)
        .with_target(false)
        .with_filter(LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(log_layer)
        .with(otel_layer)
        .try_init()
        .map_err(InitError::Subscriber)?;
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// The project's export path: a bounded batch processor, `opentelemetry-datadog` ([`datadog`]),
/// the project's sampler and its Datadog + W3C propagator (installed as the global one).
// With the `datadog-sdk` feature the project's path is still compiled (and linted), not used.
#[cfg_attr(feature = "datadog-sdk", allow(dead_code))]
fn project_provider(config: &TelemetryConfig) -> Result<SdkTracerProvider, InitError> {
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor};
    // The Agent's answers to the exporter's posts carry the sampling rates the sampler applies.
    let agent_rates = std::sync::Arc::new(agent_rates::AgentRateTable::new());
    let exporter = datadog::exporter(config, agent_rates.clone())?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(config.queue_size)
                .with_scheduled_delay(config.flush_interval)
                // Small batches: each export holds a core for less time (a shorter latency tail).
                .with_max_export_batch_size(config.queue_size.min(256))
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler::DatadogSampler::new(
            sampler::SamplerSettings {
                service: config.service.clone(),
                env: config.env.clone(),
                version: config.version.clone(),
                tags: config.tags.clone(),
                rules: config.datadog.rules.clone(),
                rate_limit: config.datadog.rate_limit,
            },
            agent_rates,
        ))
        .with_id_generator(sampler::DatadogIdGenerator::default())
        .with_resource(datadog::resource(config))
        .build();
    opentelemetry::global::set_text_map_propagator(propagation::DatadogW3cPropagator::with_styles(
        config.datadog.propagation.clone(),
    ));
    Ok(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_url_is_built_like_datadogs_tracers() {
        let c = TelemetryConfig::from_env(&Env::default(), "notes").unwrap();
        assert_eq!(c.agent_url, "http://localhost:8126");
        assert_eq!(c.service, "notes");
        assert!(c.enabled);
        let env = Env::from_pairs([
            ("DD_AGENT_HOST", "datadog"),
            ("DD_TRACE_AGENT_PORT", "9126"),
        ]);
        let c = TelemetryConfig::from_env(&env, "notes").unwrap();
        assert_eq!(c.agent_url, "http://datadog:9126");
        let env = env.with("DD_TRACE_AGENT_URL", "http://127.0.0.1:1234/");
        let c = TelemetryConfig::from_env(&env, "notes").unwrap();
        assert_eq!(c.agent_url, "http://127.0.0.1:1234");
    }

    #[test]
    fn unified_tags_keep_their_case_and_dd_tags_parse() {
        let env = Env::from_pairs([
            ("DD_ENV", "Dev"),
            ("DD_VERSION", "1.2.3-RC1"),
            ("DD_TAGS", "team:apm, region:eu-west-1 solo"),
            ("DD_TRACE_ENABLED", "false"),
        ]);
        let c = TelemetryConfig::from_env(&env, "calendar").unwrap();
        assert_eq!(c.env.as_deref(), Some("Dev"));
        assert_eq!(c.version.as_deref(), Some("1.2.3-RC1"));
        assert!(!c.enabled);
        assert_eq!(
            c.tags,
            vec![
                ("team".to_string(), "apm".to_string()),
                ("region".to_string(), "eu-west-1".to_string()),
                ("solo".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (k, v) in [
            ("DD_TRACE_AGENT_PORT", "x"),
            ("DD_TRACE_SAMPLE_RATE", "2"),
            ("DD_TRACE_ENABLED", "maybe"),
            ("DD_TRACE_AGENT_URL", "localhost:8126"),
        ] {
            let err = TelemetryConfig::from_env(&Env::from_pairs([(k, v)]), "notes").unwrap_err();
            assert_eq!(err.variable, k);
        }
    }
}
