//! The Datadog-semantics settings: sampling rules and rate limit, propagation styles, query
//! obfuscation, header tags, and where the Agent listens (TCP or a Unix socket).
//!
//! Each is read through [`Env`], so a bad value stops start-up with one line naming the
//! variable (exit 2), like every other setting.

use crate::env::{ConfigError, Env};
use crate::header_tags::HeaderTags;
use crate::redact::QueryObfuscator;
use crate::rules::SamplingRules;
use crate::styles::PropagationStyles;
use std::path::{Path, PathBuf};

/// Where Datadog's tracers look for the Agent's socket when nothing else is configured.
pub const DEFAULT_SOCKET: &str = "/var/run/datadog/apm.socket";

/// The default `DD_TRACE_RATE_LIMIT` (traces per second kept by sampling rules).
pub const DEFAULT_RATE_LIMIT: f64 = 100.0;

/// Where the Agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEndpoint {
    /// An `http://host:port` base URL, without trailing slash.
    Http(String),
    /// A Unix domain socket (`DD_TRACE_AGENT_URL=unix:///path`, or the default socket).
    Unix(PathBuf),
}

impl AgentEndpoint {
    /// The base URL requests are addressed to (over a socket, the host is only a name).
    pub fn base_url(&self) -> String {
        match self {
            AgentEndpoint::Http(url) => url.clone(),
            AgentEndpoint::Unix(_) => "http://localhost".to_string(),
        }
    }

    /// The socket, when the Agent is reached through one.
    pub fn socket(&self) -> Option<&Path> {
        match self {
            AgentEndpoint::Unix(path) => Some(path),
            AgentEndpoint::Http(_) => None,
        }
    }

    /// Reads the Agent's address as Datadog's tracers do: `DD_TRACE_AGENT_URL` (`http://` or
    /// `unix://`; `https://`, which dd-trace-go accepts, stops start-up: no TLS is built in); else `DD_AGENT_HOST` / `DD_TRACE_AGENT_PORT` when either is
    /// set; else [`DEFAULT_SOCKET`] when `socket_exists` says it exists; else
    /// `http://localhost:8126`.
    pub fn from_env(env: &Env, socket_exists: impl Fn(&Path) -> bool) -> Result<Self, ConfigError> {
        const URL: &str = "DD_TRACE_AGENT_URL";
        if let Some(raw) = env.get(URL) {
            if let Some(path) = raw.strip_prefix("unix://") {
                if !path.starts_with('/') {
                    return Err(ConfigError::new(
                        URL,
                        format!("{raw:?} must name an absolute socket path (unix:///path)"),
                    ));
                }
                return Ok(AgentEndpoint::Unix(PathBuf::from(path)));
            }
            return Ok(AgentEndpoint::Http(env.url(URL)?.unwrap_or_default()));
        }
        let configured =
            env.get("DD_AGENT_HOST").is_some() || env.get("DD_TRACE_AGENT_PORT").is_some();
        let host = env.host("DD_AGENT_HOST", "localhost")?;
        let port = env.port("DD_TRACE_AGENT_PORT", 8126)?;
        if !configured && socket_exists(Path::new(DEFAULT_SOCKET)) {
            return Ok(AgentEndpoint::Unix(PathBuf::from(DEFAULT_SOCKET)));
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(AgentEndpoint::Http(format!("http://{host}:{port}")))
    }
}

/// Sampling, propagation and redaction settings.
#[derive(Debug, Clone)]
pub struct DatadogSettings {
    /// `DD_TRACE_SAMPLING_RULES`, then `DD_TRACE_SAMPLE_RATE` as a catch-all rule.
    pub rules: SamplingRules,
    /// `DD_TRACE_RATE_LIMIT`: traces per second kept by rules (default 100; 0 none; < 0 all).
    pub rate_limit: f64,
    /// `DD_TRACE_PROPAGATION_STYLE[_EXTRACT|_INJECT]`.
    pub propagation: PropagationStyles,
    /// `DD_TRACE_OBFUSCATION_QUERY_STRING_REGEXP`.
    pub query_obfuscation: QueryObfuscator,
    /// `DD_TRACE_HEADER_TAGS`.
    pub header_tags: HeaderTags,
}

impl DatadogSettings {
    /// Reads the settings.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        const RULES: &str = "DD_TRACE_SAMPLING_RULES";
        const LIMIT: &str = "DD_TRACE_RATE_LIMIT";
        let sample_rate = env.rate("DD_TRACE_SAMPLE_RATE")?;
        let rules = SamplingRules::parse(env.get(RULES), sample_rate)
            .map_err(|e| ConfigError::with_source(RULES, "cannot be used", e))?;
        let rate_limit: f64 = env.parse(LIMIT, DEFAULT_RATE_LIMIT)?;
        if !rate_limit.is_finite() {
            return Err(ConfigError::new(LIMIT, "must be a finite number"));
        }
        Ok(Self {
            rules,
            rate_limit,
            propagation: PropagationStyles::from_env(env)?,
            query_obfuscation: QueryObfuscator::from_env(env)?,
            header_tags: HeaderTags::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = DatadogSettings::from_env(&Env::default()).unwrap();
        assert!(s.rules.is_empty());
        assert_eq!(s.rate_limit, 100.0);
        assert_eq!(s.propagation, PropagationStyles::default());
        assert!(s.query_obfuscation.is_enabled());
        assert!(s.header_tags.is_empty());
        let s =
            DatadogSettings::from_env(&Env::from_pairs([("DD_TRACE_SAMPLE_RATE", "0.5")])).unwrap();
        assert_eq!(s.rules.rules().len(), 1);
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        for (k, v) in [
            ("DD_TRACE_SAMPLING_RULES", "[{\"sample_rate\":2}]"),
            ("DD_TRACE_SAMPLING_RULES", "not json"),
            ("DD_TRACE_RATE_LIMIT", "fast"),
            ("DD_TRACE_RATE_LIMIT", "inf"),
            ("DD_TRACE_PROPAGATION_STYLE", "jaeger"),
            ("DD_TRACE_PROPAGATION_STYLE_EXTRACT", "b3,zipkin"),
            ("DD_TRACE_PROPAGATION_EXTRACT_FIRST", "sometimes"),
            ("DD_TRACE_PROPAGATION_STYLE_INJECT", "x"),
            ("DD_TRACE_OBFUSCATION_QUERY_STRING_REGEXP", "[a-"),
            ("DD_TRACE_HEADER_TAGS", "bad header,x"),
            ("DD_TRACE_SAMPLE_RATE", "-1"),
        ] {
            let err = DatadogSettings::from_env(&Env::from_pairs([(k, v)])).unwrap_err();
            assert_eq!(err.variable, k, "{v}: {err}");
        }
    }

    #[test]
    fn the_agent_over_tcp_or_a_socket() {
        let none = |_: &Path| false;
        let there = |p: &Path| p == Path::new(DEFAULT_SOCKET);
        let ep = |pairs: &[(&str, &str)], exists: &dyn Fn(&Path) -> bool| {
            AgentEndpoint::from_env(&Env::from_pairs(pairs.iter().copied()), exists)
        };
        assert_eq!(
            ep(&[], &none),
            Ok(AgentEndpoint::Http("http://localhost:8126".into()))
        );
        assert_eq!(
            ep(&[], &there),
            Ok(AgentEndpoint::Unix(DEFAULT_SOCKET.into()))
        );
        assert_eq!(
            ep(&[("DD_AGENT_HOST", "datadog")], &there),
            Ok(AgentEndpoint::Http("http://datadog:8126".into()))
        );
        assert_eq!(
            ep(&[("DD_TRACE_AGENT_PORT", "9126")], &there),
            Ok(AgentEndpoint::Http("http://localhost:9126".into()))
        );
        assert_eq!(
            ep(&[("DD_TRACE_AGENT_URL", "unix:///tmp/apm.sock")], &none),
            Ok(AgentEndpoint::Unix("/tmp/apm.sock".into()))
        );
        assert_eq!(
            ep(&[("DD_TRACE_AGENT_URL", "http://127.0.0.1:1234/")], &there),
            Ok(AgentEndpoint::Http("http://127.0.0.1:1234".into()))
        );
        assert_eq!(
            ep(&[("DD_AGENT_HOST", "::1")], &none),
            Ok(AgentEndpoint::Http("http://[::1]:8126".into()))
        );
        for bad in [
            "unix://relative.sock",
            "ftp://x",
            "localhost:8126",
            "https://datadog-agent:8126",
        ] {
            let err = ep(&[("DD_TRACE_AGENT_URL", bad)], &none).unwrap_err();
            assert_eq!(err.variable, "DD_TRACE_AGENT_URL");
        }
    }
}
