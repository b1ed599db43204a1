//! Export through Datadog's own Rust SDK, `datadog-opentelemetry` (cargo feature `datadog-sdk`).
//!
//! With the feature on, [`provider`] replaces the project's export path (chunk processor,
//! `opentelemetry-datadog`, the project's sampler and propagator) with the SDK's: its span
//! processor and trace exporter, its sampler (rules, rate limiter, agent rates) and its
//! Datadog + W3C propagator. Everything else stays as it is: the same `tracing` spans through
//! `tracing-opentelemetry`, the same JSON logs, the same environment variables.
//!
//! The SDK maps OpenTelemetry spans the way the Datadog Agent's OTLP receiver does, so the
//! project's span conventions carry over through attributes the SDK reads: `operation.name`
//! (operation), `service.name` (a span's own service), `resource.name` (the server span's
//! `<METHOD> 405`, set when it starts), `span.type`. The resource otherwise comes from the
//! SDK's rules: the span name for internal and database spans, `<METHOD> <route>` for server
//! spans; an outgoing HTTP span gets `<METHOD>` alone (the project's own path writes
//! `<METHOD> <path>`), and a request that matched no route `<METHOD>` (the project:
//! `<METHOD> 404`).
//!
//! Settings: `DD_SERVICE`, `DD_ENV`, `DD_VERSION`, `DD_TAGS`, the agent URL, `DD_TRACE_ENABLED`,
//! `DD_TRACE_SAMPLE_RATE` and `DD_TRACE_DEBUG` are read and validated by
//! [`TracingConfig`](crate::Config) and handed to the SDK in code, so a bad value
//! stops start-up the same way. `DD_TRACE_SPAN_QUEUE_SIZE`, `DD_TRACE_FLUSH_INTERVAL_MS` and
//! `DD_TRACE_AGENT_TIMEOUT` belong to the project's own path: the SDK buffers and flushes on
//! its own schedule. Any other `DD_*` variable the SDK knows (for example
//! `DD_TRACE_SAMPLING_RULES`, `DD_TRACE_RATE_LIMIT`, `DD_INSTRUMENTATION_TELEMETRY_ENABLED`,
//! `DD_REMOTE_CONFIGURATION_ENABLED`) it reads itself, with its own defaults.

use crate::config::Config as TracingConfig;
use datadog_opentelemetry::configuration::Config;
use datadog_opentelemetry::log::LevelFilter;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The SDK's settings for this process: the project's validated configuration, set in code
/// (which wins over the SDK's own reading of the environment).
fn sdk_config(config: &TracingConfig) -> Config {
    let mut builder = Config::builder();
    builder
        .set_service(config.service.clone())
        .set_trace_agent_url(config.agent_url.clone())
        .set_enabled(config.enabled)
        .set_global_tags(config.tags.clone())
        .set_log_level_filter(if config.debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Error
        });
    if let Some(env) = &config.env {
        builder.set_env(env.clone());
    }
    if let Some(version) = &config.version {
        builder.set_version(version.clone());
    }
    if let Some(rate) = config.sample_rate {
        builder.set_trace_sample_rate(rate);
    }
    builder.build()
}

/// Builds the SDK's tracer provider and its propagator (installed as the global one by
/// `Pipeline::install`).
pub(crate) fn provider(
    config: &TracingConfig,
) -> (SdkTracerProvider, crate::pipeline::SharedPropagator) {
    let (provider, propagator) = datadog_opentelemetry::tracing()
        .with_config(sdk_config(config))
        .init_local();
    (provider, std::sync::Arc::new(propagator))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Env;

    #[test]
    fn the_projects_settings_reach_the_sdk() {
        let env = Env::from_pairs([
            ("DD_SERVICE", "notes-x"),
            ("DD_ENV", "Dev"),
            ("DD_VERSION", "1.2.3"),
            ("DD_TAGS", "team:apm"),
            ("DD_TRACE_AGENT_URL", "http://127.0.0.1:1234"),
            ("DD_TRACE_SAMPLE_RATE", "0.25"),
        ]);
        let c = sdk_config(&TracingConfig::from_env(&env, "notes").unwrap());
        assert_eq!(&*c.service(), "notes-x");
        assert_eq!(c.env(), Some("Dev"));
        assert_eq!(c.version(), Some("1.2.3"));
        assert_eq!(&*c.trace_agent_url(), "http://127.0.0.1:1234");
        assert_eq!(c.trace_sample_rate(), Some(0.25));
        assert_eq!(c.global_tags().collect::<Vec<_>>(), vec![("team", "apm")]);
        assert!(c.enabled());
    }
}
