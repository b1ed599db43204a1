//! The tracing configuration: Datadog's environment variables, typed and checked.

use crate::env::{ConfigError, Env};
use crate::settings;
use std::time::Duration;

/// The tracing configuration: Datadog's environment variables (`DD_SERVICE`, `DD_ENV`,
/// `DD_TRACE_AGENT_URL`, `DD_TRACE_SAMPLING_RULES`, …), typed and checked once.
///
/// Read it with [`Config::from_env`] (a bad value is a [`ConfigError`] naming the variable), or
/// build it in code: [`Config::new`] gives Datadog's defaults, the `with_*` methods change one
/// setting, and [`Env::from_pairs`] feeds any other variable by its Datadog name.
///
/// ```
/// use datadog_otel_tracing::{Config, Env};
/// let config = Config::from_env(&Env::from_pairs([("DD_ENV", "dev")]), "my-service")?
///     .with_agent_url("http://127.0.0.1:8126")?;
/// assert_eq!(config.service(), "my-service");
/// assert_eq!(config.agent_url(), "http://127.0.0.1:8126");
/// # Ok::<(), datadog_otel_tracing::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// `DD_SERVICE`: the service every span and log line belongs to.
    pub(crate) service: String,
    /// `DD_ENV`, kept as given (case included).
    pub(crate) env: Option<String>,
    /// `DD_VERSION`, kept as given.
    pub(crate) version: Option<String>,
    /// `DD_TAGS` (`key:value` pairs separated by commas or spaces), added to every span.
    pub(crate) tags: Vec<(String, String)>,
    /// `DD_TRACE_AGENT_URL`, else `http://$DD_AGENT_HOST:$DD_TRACE_AGENT_PORT`, else the
    /// default socket when it exists (then `http://localhost`, the host name sent over it).
    pub(crate) agent_url: String,
    /// The Agent's Unix socket (`DD_TRACE_AGENT_URL=unix:///…`, or the default one).
    pub(crate) agent_socket: Option<std::path::PathBuf>,
    /// `DD_TRACE_ENABLED` (default true).
    pub(crate) enabled: bool,
    /// `DD_TRACE_SAMPLE_RATE`, as given; the sampler uses it as the catch-all rule at the end of
    /// [`settings::DatadogSettings::rules`].
    pub(crate) sample_rate: Option<f64>,
    /// `DD_TRACE_DEBUG`: log every payload sent to the agent and every export error.
    pub(crate) debug: bool,
    /// `DD_TRACE_AGENT_TIMEOUT` in seconds (default 2): bound on one send to the agent.
    pub(crate) agent_timeout: Duration,
    /// `DD_TRACE_SPAN_QUEUE_SIZE` (default 8192): spans waiting for export; more are dropped.
    pub(crate) queue_size: usize,
    /// `DD_TRACE_128_BIT_TRACEID_GENERATION_ENABLED` (default true): new trace ids are 128-bit
    /// (the upper half travels as `_dd.p.tid`), else 64-bit.
    pub(crate) trace_id_128: bool,
    /// `DD_TRACE_STATS_COMPUTATION_ENABLED` (unset: on when the Agent's `/info` lists
    /// `/v0.6/stats`): client-side stats, and the local drop of priority-0 chunks when the
    /// Agent allows it.
    pub(crate) stats_computation: Option<bool>,
    /// `DD_TRACE_STATS_CARDINALITY_LIMIT`, `DD_TRACE_STATS_RESOURCE_CARDINALITY_LIMIT`.
    pub(crate) stats_limits: crate::stats::Limits,
    /// `DD_HOSTNAME` when `DD_TRACE_REPORT_HOSTNAME` is true: the host name the stats carry.
    pub(crate) report_hostname: Option<String>,
    /// `DD_TRACE_FLUSH_INTERVAL_MS` (default 1000): how often spans are sent.
    pub(crate) flush_interval: Duration,
    /// Partial flush: once this many spans of a trace still open have ended, they leave as a
    /// partial chunk (`DD_TRACE_PARTIAL_FLUSH_MIN_SPANS`, default 1000;
    /// `DD_TRACE_PARTIAL_FLUSH_ENABLED=false`: `None`).
    pub(crate) partial_flush_min_spans: Option<usize>,
    /// `DD_TRACE_HEALTH_METRICS_ENABLED` (default false): the tracer's health metrics over
    /// DogStatsD ([`crate::health`]).
    pub(crate) health_metrics: bool,
    /// `DD_DOGSTATSD_HOST` (default `DD_AGENT_HOST`, else `localhost`).
    pub(crate) dogstatsd_host: String,
    /// `DD_DOGSTATSD_PORT` (default 8125).
    pub(crate) dogstatsd_port: u16,
    /// `RUST_LOG` (default `info`).
    pub(crate) log_filter: String,
    /// Sampling rules and limit, propagation styles, query obfuscation, header tags.
    pub(crate) datadog: settings::DatadogSettings,
}

impl Config {
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
            trace_id_128: env.flag("DD_TRACE_128_BIT_TRACEID_GENERATION_ENABLED", true)?,
            stats_limits: crate::stats::Limits {
                keys: env.positive(
                    "DD_TRACE_STATS_CARDINALITY_LIMIT",
                    crate::stats::Limits::default().keys,
                )?,
                resources: env.positive(
                    "DD_TRACE_STATS_RESOURCE_CARDINALITY_LIMIT",
                    crate::stats::Limits::default().resources,
                )?,
            },
            report_hostname: match env.flag("DD_TRACE_REPORT_HOSTNAME", false)? {
                true => env.get("DD_HOSTNAME").map(str::to_string),
                false => None,
            },
            stats_computation: match env.get("DD_TRACE_STATS_COMPUTATION_ENABLED") {
                Some(_) => Some(env.flag("DD_TRACE_STATS_COMPUTATION_ENABLED", false)?),
                None => None,
            },
            flush_interval: env.millis("DD_TRACE_FLUSH_INTERVAL_MS", 1000)?,
            partial_flush_min_spans: {
                let min_spans = env.positive("DD_TRACE_PARTIAL_FLUSH_MIN_SPANS", 1000)?;
                env.flag("DD_TRACE_PARTIAL_FLUSH_ENABLED", true)?
                    .then_some(min_spans)
            },
            health_metrics: env.flag("DD_TRACE_HEALTH_METRICS_ENABLED", false)?,
            dogstatsd_host: match env.get("DD_DOGSTATSD_HOST") {
                Some(_) => env.host("DD_DOGSTATSD_HOST", "localhost")?,
                None => env.host("DD_AGENT_HOST", "localhost")?,
            },
            dogstatsd_port: env.port("DD_DOGSTATSD_PORT", 8125)?,
            log_filter: env.string("RUST_LOG", "info"),
            datadog: settings::DatadogSettings::from_env(env)?,
        })
    }

    /// Reads the process environment (once), with `default_service` when `DD_SERVICE` is unset.
    pub fn from_process_env(default_service: &str) -> Result<Self, ConfigError> {
        Self::from_env(&Env::from_process(), default_service)
    }

    /// Datadog's defaults for `service`, the process environment ignored.
    pub fn new(service: &str) -> Self {
        match Self::from_env(&Env::default(), service) {
            Ok(config) => config,
            // Unreachable: every default is valid (the unit tests read an empty environment).
            Err(e) => panic!("the default configuration is invalid: {e}"),
        }
    }

    /// The service every span and log line belongs to (`DD_SERVICE`).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The environment (`DD_ENV`), as given.
    pub fn env(&self) -> Option<&str> {
        self.env.as_deref()
    }

    /// The version (`DD_VERSION`), as given.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Whether spans are made and sent (`DD_TRACE_ENABLED`); logs are written either way.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The Agent's base URL (`http://localhost` when it is reached over a Unix socket).
    pub fn agent_url(&self) -> &str {
        &self.agent_url
    }

    /// The effective settings, by the Datadog variable they come from (what Datadog's tracers
    /// report in their start-up log and configuration telemetry): `DD_SERVICE`, `DD_ENV`,
    /// `DD_VERSION`, `DD_TAGS`, `DD_TRACE_AGENT_URL`, `DD_TRACE_ENABLED`, `DD_TRACE_SAMPLE_RATE`,
    /// `DD_TRACE_RATE_LIMIT`, `DD_TRACE_PROPAGATION_STYLE_EXTRACT` / `_INJECT`,
    /// `DD_TRACE_PROPAGATION_EXTRACT_FIRST`, `DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT`,
    /// `DD_TRACE_DEBUG`; unset optional ones are left out.
    pub fn effective(&self) -> std::collections::BTreeMap<&'static str, String> {
        let styles = |styles: &[crate::styles::Style]| {
            styles
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut out = std::collections::BTreeMap::new();
        out.insert("DD_SERVICE", self.service.clone());
        if let Some(env) = &self.env {
            out.insert("DD_ENV", env.clone());
        }
        if let Some(version) = &self.version {
            out.insert("DD_VERSION", version.clone());
        }
        let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        out.insert("DD_TAGS", tags.join(","));
        let agent = match &self.agent_socket {
            Some(socket) => format!("unix://{}", socket.display()),
            None => self.agent_url.clone(),
        };
        out.insert("DD_TRACE_AGENT_URL", agent);
        out.insert("DD_TRACE_ENABLED", self.enabled.to_string());
        out.insert("DD_DOGSTATSD_HOST", self.dogstatsd_host.clone());
        out.insert("DD_DOGSTATSD_PORT", self.dogstatsd_port.to_string());
        out.insert(
            "DD_TRACE_HEALTH_METRICS_ENABLED",
            self.health_metrics.to_string(),
        );
        if let Some(rate) = self.sample_rate {
            out.insert("DD_TRACE_SAMPLE_RATE", rate.to_string());
        }
        out.insert("DD_TRACE_RATE_LIMIT", self.datadog.rate_limit.to_string());
        let propagation = &self.datadog.propagation;
        out.insert(
            "DD_TRACE_PROPAGATION_STYLE_EXTRACT",
            styles(&propagation.extract),
        );
        out.insert(
            "DD_TRACE_PROPAGATION_STYLE_INJECT",
            styles(&propagation.inject),
        );
        out.insert(
            "DD_TRACE_PROPAGATION_EXTRACT_FIRST",
            propagation.extract_first.to_string(),
        );
        out.insert(
            "DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT",
            propagation.behavior.name().to_string(),
        );
        out.insert("DD_TRACE_DEBUG", self.debug.to_string());
        out
    }

    /// Sets the service (`DD_SERVICE`).
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Sets the environment (`DD_ENV`).
    pub fn with_env(mut self, env: impl Into<String>) -> Self {
        self.env = Some(env.into());
        self
    }

    /// Sets the version (`DD_VERSION`).
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Turns tracing on or off (`DD_TRACE_ENABLED`).
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets where the Agent is, as `DD_TRACE_AGENT_URL` would (`http://host:port` or
    /// `unix:///path`); an error names `DD_TRACE_AGENT_URL`.
    pub fn with_agent_url(mut self, url: &str) -> Result<Self, ConfigError> {
        let env = Env::from_pairs([("DD_TRACE_AGENT_URL", url)]);
        let agent = settings::AgentEndpoint::from_env(&env, |_| false)?;
        self.agent_url = agent.base_url();
        self.agent_socket = agent.socket().map(Into::into);
        Ok(self)
    }

    /// Sets how often spans are sent (`DD_TRACE_FLUSH_INTERVAL_MS`).
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Sets the partial flush (`DD_TRACE_PARTIAL_FLUSH_ENABLED`,
    /// `DD_TRACE_PARTIAL_FLUSH_MIN_SPANS`): once `min_spans` spans of a trace that is still open
    /// have ended, they are sent as a partial chunk; `None` switches it off (a chunk then leaves
    /// whole, or partial only when it waited 10 s or the queue bound is reached).
    pub fn with_partial_flush(mut self, min_spans: Option<usize>) -> Self {
        self.partial_flush_min_spans = min_spans.map(|n| n.max(1));
        self
    }

    /// Sets the log filter (`RUST_LOG` syntax; checked when the pipeline is built).
    pub fn with_log_filter(mut self, filter: impl Into<String>) -> Self {
        self.log_filter = filter.into();
        self
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_url_is_built_like_datadogs_tracers() {
        let c = Config::from_env(&Env::default(), "notes").unwrap();
        assert_eq!(c.agent_url, "http://localhost:8126");
        assert_eq!(c.service, "notes");
        assert!(c.enabled);
        let env = Env::from_pairs([
            ("DD_AGENT_HOST", "datadog"),
            ("DD_TRACE_AGENT_PORT", "9126"),
        ]);
        let c = Config::from_env(&env, "notes").unwrap();
        assert_eq!(c.agent_url, "http://datadog:9126");
        let env = env.with("DD_TRACE_AGENT_URL", "http://127.0.0.1:1234/");
        let c = Config::from_env(&env, "notes").unwrap();
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
        let c = Config::from_env(&env, "calendar").unwrap();
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
            let err = Config::from_env(&Env::from_pairs([(k, v)]), "notes").unwrap_err();
            assert_eq!(err.variable, k);
        }
    }
}
