//! The tracing pipeline: [`Pipeline::build`] puts the log layer, the `tracing-opentelemetry`
//! layer, the sampler, the propagator and the export to the Agent together; [`Pipeline::install`]
//! makes it the process's subscriber and propagator and hands back the [`TracingGuard`] that
//! flushes at shutdown.

use crate::config::Config;
use crate::datadog::ExporterError;
use crate::env::ConfigError;
use crate::{agent_rates, datadog, logs, propagation, sampler};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::Duration;
use tracing::Dispatch;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Why the pipeline could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A setting is invalid (`RUST_LOG` is not a filter, say); the error names the variable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A global subscriber was installed already.
    #[error("cannot install the log and trace subscriber")]
    Subscriber(#[source] tracing_subscriber::util::TryInitError),
    /// The export to the Agent could not be built.
    #[error(transparent)]
    Exporter(#[from] ExporterError),
}

/// Why the spans could not all be flushed at shutdown.
#[derive(Debug, thiserror::Error)]
#[error("spans could not all be flushed at shutdown")]
pub struct ShutdownError(#[source] opentelemetry_sdk::error::OTelSdkError);

/// A built pipeline, not installed yet: a `tracing` subscriber (JSON logs, and spans through
/// `tracing-opentelemetry` to the Datadog Agent) and the propagator of the configured styles.
///
/// [`Pipeline::install`] makes it the process's; [`Pipeline::dispatch`] lends the subscriber
/// for a scope of your own (`tracing::dispatcher::with_default`), for example in a test.
pub struct Pipeline {
    dispatch: Dispatch,
    guard: TracingGuard,
    /// Installs the propagator as the global one (incoming and outgoing calls read it).
    install_propagator: Option<InstallPropagator>,
}

/// Installs a pipeline's propagator as the global one.
pub(crate) type InstallPropagator = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

/// Flushes and stops the span export: call [`TracingGuard::shutdown`] once the server stopped.
/// Dropping it stops the export too, with the SDK's own timeout.
#[derive(Debug)]
#[must_use = "dropping the guard stops the span export"]
pub struct TracingGuard {
    /// The tracer provider (`None` when tracing is off).
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Sends the spans still queued (partial chunks included) and stops the export, taking at
    /// most about `timeout`: an unreachable Agent cannot hang shutdown.
    pub fn shutdown(self, timeout: Duration) -> Result<(), ShutdownError> {
        match self.provider {
            Some(provider) => provider
                .shutdown_with_timeout(timeout)
                .map_err(ShutdownError),
            None => Ok(()),
        }
    }
}

impl Pipeline {
    /// Builds the pipeline for `config`. Call it before an async runtime starts (the export's
    /// HTTP client is a blocking one, built on a thread of its own).
    pub fn build(config: &Config) -> Result<Self, InitError> {
        let filter = EnvFilter::try_new(&config.log_filter).map_err(|e| {
            let message = format!("{:?} is not a log filter", config.log_filter);
            ConfigError::with_source("RUST_LOG", message, e)
        })?;
        let format = logs::DatadogJsonFormat::new(
            &config.service,
            config.env.as_deref(),
            config.version.as_deref(),
        );
        let log_layer = logs::JsonLogLayer::new(format, std::io::stdout);
        if !config.enabled {
            let subscriber = tracing_subscriber::registry().with(log_layer.with_filter(filter));
            return Ok(Self {
                dispatch: Dispatch::new(subscriber),
                guard: TracingGuard { provider: None },
                install_propagator: None,
            });
        }

        // The seam: the one place where the export path is chosen.
        #[cfg(not(feature = "datadog-sdk"))]
        let (provider, install_propagator) = project_provider(config)?;
        // Datadog's own SDK instead (`crate::sdk`).
        #[cfg(feature = "datadog-sdk")]
        let (provider, install_propagator) = crate::sdk::provider(config);
        let tracer = provider.tracer("datadog-otel-tracing");

        let otel_layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            // No OpenTelemetry context attached on each enter and exit of each span (every poll
            // of an instrumented future): parents come from the `tracing` span tree, outgoing
            // calls inject `Span::current().context()`, and log lines ask for their span's ids
            // ([`logs::JsonLogLayer`]).
            .with_context_activation(false)
            .with_level(false)
            .with_target(false)
            .with_filter(LevelFilter::INFO);
        let subscriber = tracing_subscriber::registry()
            .with(log_layer.with_trace_ids().with_filter(filter))
            .with(otel_layer);
        Ok(Self {
            dispatch: Dispatch::new(subscriber),
            guard: TracingGuard {
                provider: Some(provider),
            },
            install_propagator: Some(install_propagator),
        })
    }

    /// The subscriber, for a scope of your own instead of [`Pipeline::install`].
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// Makes the pipeline the process's global `tracing` subscriber (and, with tracing on, its
    /// OpenTelemetry propagator); returns the guard that flushes at shutdown. Fails when a
    /// global subscriber is installed already.
    pub fn install(self) -> Result<TracingGuard, InitError> {
        self.dispatch.try_init().map_err(InitError::Subscriber)?;
        if let Some(install) = self.install_propagator {
            install();
        }
        Ok(self.guard)
    }
}

/// The project's export path: a bounded batch processor, `opentelemetry-datadog` ([`datadog`]),
/// the project's sampler, and its Datadog + W3C propagator.
// With the `datadog-sdk` feature the project's path is still compiled (and linted), not used.
#[cfg_attr(feature = "datadog-sdk", allow(dead_code))]
fn project_provider(config: &Config) -> Result<(SdkTracerProvider, InstallPropagator), InitError> {
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
    let propagator =
        propagation::DatadogW3cPropagator::with_styles(config.datadog.propagation.clone());
    let install = Box::new(move || {
        opentelemetry::global::set_text_map_propagator(propagator);
    });
    Ok((provider, install))
}
