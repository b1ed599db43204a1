//! The tracing pipeline: [`Pipeline::build`] puts the log layer, the `tracing-opentelemetry`
//! layer, the sampler, the propagator and the export to the Agent together; [`Pipeline::install`]
//! makes it the process's subscriber and propagator and hands back the [`TracingGuard`] that
//! flushes at shutdown.

use crate::config::Config;
use crate::datadog::ExporterError;
use crate::env::ConfigError;
use crate::{agent_rates, datadog, logs, processor, propagation, sampler};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::sync::Arc;
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
    /// The thread that sends traces to the Agent could not be started.
    #[error("cannot start the trace export thread")]
    Worker(#[source] std::io::Error),
}

/// Why the spans could not all be flushed (at shutdown, or by [`TracingGuard::flush`]).
#[derive(Debug, thiserror::Error)]
#[error("spans could not all be flushed")]
pub struct ShutdownError(#[source] opentelemetry_sdk::error::OTelSdkError);

/// The propagator of a pipeline, shared by the pipeline's own inject and extract and the
/// global one that [`Pipeline::install`] sets.
pub(crate) type SharedPropagator = Arc<dyn TextMapPropagator + Send + Sync>;

/// A [`SharedPropagator`] as one `opentelemetry::global` takes.
#[derive(Debug)]
struct GlobalPropagator(SharedPropagator);

impl TextMapPropagator for GlobalPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        self.0.inject_context(cx, injector);
    }
    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        self.0.extract_with_context(cx, extractor)
    }
    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        self.0.fields()
    }
}

/// A built pipeline, not installed yet: a `tracing` subscriber (JSON logs, and spans through
/// `tracing-opentelemetry` to the Datadog Agent) and the propagator of the configured styles.
///
/// [`Pipeline::install`] makes it the process's; [`Pipeline::dispatch`] lends the subscriber
/// for a scope of your own (`tracing::dispatcher::with_default`), for example in a test.
pub struct Pipeline {
    dispatch: Dispatch,
    guard: TracingGuard,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

/// Flushes and stops the span export: call [`TracingGuard::shutdown`] once the server stopped.
/// Dropping it stops the export too, with the SDK's own timeout.
///
/// It also gives the pipeline to code that makes spans without `tracing`: its OpenTelemetry
/// tracer ([`TracingGuard::tracer`], spans with this crate's sampling and export), and its
/// propagator ([`TracingGuard::inject`], [`TracingGuard::extract`]) for any carrier.
#[must_use = "dropping the guard stops the span export"]
pub struct TracingGuard {
    /// The tracer provider (`None` when tracing is off).
    provider: Option<SdkTracerProvider>,
    /// The configured propagation styles (`None` when tracing is off).
    propagator: Option<SharedPropagator>,
    /// Client-side stats (`None`: tracing off, or Datadog's SDK exports).
    stats: Option<Arc<datadog::Stats>>,
}

impl std::fmt::Debug for TracingGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingGuard")
            .field("tracing", &self.provider.is_some())
            .finish()
    }
}

impl TracingGuard {
    /// The pipeline's OpenTelemetry tracer: spans started with it are sampled, chunked and
    /// exported like the `tracing` spans, and follow the same fields ([`crate::spans`]). Use
    /// it where spans must outlive a scope or be driven by hand (a test harness, a bridge from
    /// another tracing API). With tracing off (`DD_TRACE_ENABLED=false`) it still works, as
    /// Datadog's tracers do: its spans get ids but are neither recorded nor sent.
    pub fn tracer(&self) -> SdkTracer {
        match &self.provider {
            Some(provider) => provider.tracer("datadog-otel-tracing"),
            None => SdkTracerProvider::builder()
                .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
                .build()
                .tracer("datadog-otel-tracing"),
        }
    }

    /// Writes the trace context of `cx` into `carrier` with the configured styles
    /// (`DD_TRACE_PROPAGATION_STYLE_INJECT`); nothing when tracing is off.
    pub fn inject(&self, cx: &Context, carrier: &mut dyn Injector) {
        if let Some(propagator) = &self.propagator {
            propagator.inject_context(cx, carrier);
        }
    }

    /// Reads a trace context from `carrier` with the configured styles
    /// (`DD_TRACE_PROPAGATION_STYLE_EXTRACT`): the parent of a span that continues the trace,
    /// or an empty context when there is none (or tracing is off).
    pub fn extract(&self, carrier: &dyn Extractor) -> Context {
        match &self.propagator {
            Some(propagator) => propagator.extract(carrier),
            None => Context::new(),
        }
    }

    /// Sends the spans that ended so far (whole chunks; a chunk whose root is still open stays
    /// until it ends or ages) and waits for the send (bounded by `DD_TRACE_AGENT_TIMEOUT`).
    /// Client-side stats go too, every bucket, closed or not.
    pub fn flush(&self) -> Result<(), ShutdownError> {
        if let Some(provider) = &self.provider {
            provider.force_flush().map_err(ShutdownError)?;
        }
        if let Some(stats) = &self.stats {
            // On a thread of its own: the send is a blocking HTTP call, which must not run on
            // an async runtime's thread (a caller's handler, say).
            std::thread::scope(|scope| {
                let _ = scope.spawn(|| stats.flush(true)).join();
            });
        }
        Ok(())
    }

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
                guard: TracingGuard {
                    provider: None,
                    propagator: None,
                    stats: None,
                },
            });
        }

        // The seam: the one place where the export path is chosen.
        #[cfg(not(feature = "datadog-sdk"))]
        let (provider, propagator, stats) = project_provider(config)?;
        // Datadog's own SDK instead (`crate::sdk`).
        #[cfg(feature = "datadog-sdk")]
        let (provider, propagator) = crate::sdk::provider(config);
        #[cfg(feature = "datadog-sdk")]
        let stats = None;
        // The `tracing` spans' own scope: their events are their log lines, which go out as
        // logs, not as span events (see `crate::mapping`).
        let scope =
            opentelemetry::InstrumentationScope::builder(crate::mapping::TRACING_SCOPE).build();
        let tracer = provider.tracer_with_scope(scope);

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
                propagator: Some(propagator),
                stats,
            },
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
        if let Some(propagator) = &self.guard.propagator {
            opentelemetry::global::set_text_map_propagator(GlobalPropagator(Arc::clone(
                propagator,
            )));
        }
        Ok(self.guard)
    }
}

/// The project's export path: the chunk processor ([`processor`]: stats and the P0 drop on the
/// threads that end spans, a bounded queue, one worker), `opentelemetry-datadog` ([`datadog`]),
/// the project's sampler, and its Datadog + W3C propagator.
// With the `datadog-sdk` feature the project's path is still compiled (and linted), not used.
#[cfg_attr(feature = "datadog-sdk", allow(dead_code))]
fn project_provider(
    config: &Config,
) -> Result<
    (
        SdkTracerProvider,
        SharedPropagator,
        Option<Arc<datadog::Stats>>,
    ),
    InitError,
> {
    // The Agent's answers to the exporter's posts carry the sampling rates the sampler applies.
    let agent_rates = std::sync::Arc::new(agent_rates::AgentRateTable::new());
    let exporter = datadog::exporter(config, agent_rates.clone())?;
    let stats = Arc::clone(exporter.stats());
    let settings = processor::ProcessorSettings {
        partial_flush_min_spans: config.partial_flush_min_spans,
        ..processor::ProcessorSettings::new(config.queue_size, config.flush_interval)
    };
    let health = config.health_metrics.then(|| {
        crate::health::HealthMetrics::new(
            &config.dogstatsd_host,
            config.dogstatsd_port,
            &config.service,
            config.env.as_deref(),
            config.version.as_deref(),
        )
    });
    let processor =
        processor::ChunkProcessor::new(exporter, settings, health).map_err(InitError::Worker)?;
    let provider = SdkTracerProvider::builder()
        // One processor (it adds an extraction's links too): the SDK hands every extra one a
        // copy of each span's data.
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
        .with_id_generator(sampler::DatadogIdGenerator::new(config.trace_id_128))
        .with_resource(datadog::resource(config))
        .build();
    let propagator =
        propagation::DatadogW3cPropagator::with_styles(config.datadog.propagation.clone());
    Ok((provider, Arc::new(propagator), Some(stats)))
}
