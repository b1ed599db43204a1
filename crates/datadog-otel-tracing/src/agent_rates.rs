//! The sampling rates the Datadog Agent returns (`rate_by_service`).
//!
//! Each answer to a trace post on `/v0.4` or `/v0.5` holds
//! `{"rate_by_service": {"service:notes,env:dev": 0.25, "service:,env:": 1}}`: the Agent's
//! per-service rates, aimed at about 10 traces per second per service. A trace that starts here
//! with no user decision is sampled at the rate of `service:<DD_SERVICE>,env:<DD_ENV>`, else at
//! the default key's (`service:,env:`), as the issue asks and as dd-trace-go does (dd-trace-py
//! uses the exact key only). Kept gives priority 1, dropped 0; the decision maker is `-1` and
//! `_dd.agent_psr` holds the rate. Before any answer, every trace is kept (priority 1, `-0`).
//!
//! A valid answer replaces the whole table. `{}` (what the Agent sends when the
//! `Datadog-Rates-Payload-Version` header says the tracer is up to date) keeps it. Anything
//! else (empty, `OK`, bad JSON, a rate outside 0..=1) changes nothing and is logged once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// The key the Agent uses for its default rate.
pub const DEFAULT_KEY: &str = "service:,env:";

/// Why an Agent answer was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatesError {
    /// Not JSON, or not an object.
    #[error("the Agent's answer is not a JSON object: {0}")]
    Json(String),
    /// An object without `rate_by_service` (and not `{}`).
    #[error("the Agent's answer has no rate_by_service")]
    NoRates,
    /// A rate that is not a number in 0..=1.
    #[error("the Agent's rate for {key:?} is not a number between 0 and 1")]
    BadRate {
        /// The key whose value is wrong.
        key: String,
    },
}

/// One table of Agent rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentRates {
    by_key: HashMap<String, f64>,
}

/// What an answer does to the table.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// New rates: they replace the table.
    Rates(AgentRates),
    /// `{}`: the tracer's rates are current.
    Unchanged,
}

/// The table key of a service and an environment (a missing environment is empty).
pub fn key(service: &str, env: Option<&str>) -> String {
    format!("service:{service},env:{}", env.unwrap_or(""))
}

impl AgentRates {
    /// Parses the body of an Agent answer.
    pub fn parse(body: &[u8]) -> Result<Answer, RatesError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| RatesError::Json(e.to_string()))?;
        let object = value
            .as_object()
            .ok_or_else(|| RatesError::Json("not an object".into()))?;
        let Some(rates) = object.get("rate_by_service") else {
            return if object.is_empty() {
                Ok(Answer::Unchanged)
            } else {
                Err(RatesError::NoRates)
            };
        };
        let rates = rates.as_object().ok_or(RatesError::NoRates)?;
        let mut by_key = HashMap::with_capacity(rates.len());
        for (key, rate) in rates {
            match rate.as_f64() {
                Some(r) if (0.0..=1.0).contains(&r) => {
                    by_key.insert(key.clone(), r);
                }
                _ => return Err(RatesError::BadRate { key: key.clone() }),
            }
        }
        Ok(Answer::Rates(AgentRates { by_key }))
    }

    /// The rate for a key, else the default key's.
    pub fn rate_for(&self, key: &str) -> Option<f64> {
        self.by_key
            .get(key)
            .or_else(|| self.by_key.get(DEFAULT_KEY))
            .copied()
    }
}

/// The table shared between the exporter (which reads the Agent's answers) and the sampler.
#[derive(Debug, Default)]
pub struct AgentRateTable {
    /// `None` until the first valid answer.
    current: RwLock<Option<Arc<AgentRates>>>,
    /// A malformed answer was already logged.
    logged: AtomicBool,
}

impl AgentRateTable {
    /// An empty table (every trace kept until the Agent answers).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one answer of the Agent. A malformed one changes nothing and is logged once.
    pub fn update(&self, body: &[u8]) -> Result<(), RatesError> {
        match AgentRates::parse(body) {
            Ok(Answer::Rates(rates)) => {
                let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                *current = Some(Arc::new(rates));
                Ok(())
            }
            Ok(Answer::Unchanged) => Ok(()),
            Err(e) => {
                if !self.logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "ignoring the Datadog Agent's sampling rates (logged once)");
                }
                Err(e)
            }
        }
    }

    /// The Agent's rate for a key (or its default), `None` before any answer.
    pub fn rate_for(&self, key: &str) -> Option<f64> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.as_ref().and_then(|rates| rates.rate_for(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_the_agent_writes_them() {
        let body = br#"{"rate_by_service":{"service:notes,env:dev":0.25,"service:,env:":1}}"#;
        let Answer::Rates(rates) = AgentRates::parse(body).unwrap() else {
            panic!("rates expected")
        };
        assert_eq!(rates.rate_for(&key("notes", Some("dev"))), Some(0.25));
        assert_eq!(rates.rate_for(&key("notes", None)), Some(1.0));
        assert_eq!(rates.rate_for(&key("calendar", Some("dev"))), Some(1.0));
        assert_eq!(AgentRates::parse(b"{}"), Ok(Answer::Unchanged));
        let Answer::Rates(no_default) =
            AgentRates::parse(br#"{"rate_by_service":{"service:a,env:":0}}"#).unwrap()
        else {
            panic!("rates expected")
        };
        assert_eq!(no_default.rate_for("service:b,env:"), None);
    }

    #[test]
    fn malformed_answers_change_nothing() {
        let table = AgentRateTable::new();
        assert_eq!(table.rate_for(DEFAULT_KEY), None);
        table
            .update(br#"{"rate_by_service":{"service:,env:":0.5}}"#)
            .unwrap();
        for bad in [
            &b""[..],
            b"OK\n",
            b"[1]",
            b"{\"rate_by_service\":3}",
            b"{\"rate_by_service\":{\"service:,env:\":2}}",
            b"{\"rate_by_service\":{\"service:,env:\":\"1\"}}",
            b"{\"other\":1}",
            b"{\"rate_by_service\"",
        ] {
            assert!(
                table.update(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        table.update(b"{}").unwrap();
        assert_eq!(table.rate_for(DEFAULT_KEY), Some(0.5));
        // A valid answer replaces the whole table.
        table
            .update(br#"{"rate_by_service":{"service:notes,env:":0.1}}"#)
            .unwrap();
        assert_eq!(table.rate_for(DEFAULT_KEY), None);
        assert_eq!(table.rate_for("service:notes,env:"), Some(0.1));
    }
}
