//! Typed configuration read from the environment.
//!
//! [`Env`] is a snapshot of the variables, taken once at start-up (or built by a test from
//! pairs), so parsing never races with the environment and tests never mutate process state.
//! Every getter names the variable in its error, so a bad value stops start-up with one clear line.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// A configuration error: which variable, what is wrong with its value, and the error that
/// said so, when there is one (a parse error, a file that cannot be opened, …).
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: String,
    /// What is wrong with its value.
    pub message: String,
    /// The underlying error, as [`std::error::Error::source`] (shared, so that the error stays
    /// `Clone`).
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ConfigError {
    /// An error with no underlying cause (a value out of range, say).
    pub fn new(variable: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by `source` (printed after the message by
    /// [`error_chain`](crate::error_chain)).
    pub fn with_source(
        variable: impl Into<String>,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            source: Some(Arc::new(source)),
            ..Self::new(variable, message)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.variable, self.message)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Two errors are equal when they name the same variable with the same message and their
/// causes (if any) read the same.
impl PartialEq for ConfigError {
    fn eq(&self, other: &Self) -> bool {
        self.variable == other.variable
            && self.message == other.message
            && self.source.as_ref().map(ToString::to_string)
                == other.source.as_ref().map(ToString::to_string)
    }
}

impl Eq for ConfigError {}

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// Reads the process environment once. Variables whose name or value is not valid UTF-8 are
    /// kept lossily, so that a later getter reports them as invalid rather than as absent.
    #[allow(clippy::disallowed_methods)]
    pub fn from_process() -> Self {
        let vars = std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        Self { vars }
    }

    /// Builds an environment from pairs (for tests and embedding).
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Returns a copy with one variable set.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(key.into(), value.into());
        self
    }

    /// The raw value; an empty value counts as unset, as in Datadog's tracers.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The value as set, empty included (for the few variables where empty means "off").
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(|v| v.trim())
    }

    /// A string with a default.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or(default).to_string()
    }

    /// Parses a value, or returns the default when unset; the parse error is the source.
    pub fn parse<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| ConfigError::with_source(key, format!("{raw:?} is not valid"), e)),
        }
    }

    /// A count that must be at least 1 (a size, a limit, a number of workers).
    pub fn positive(&self, key: &str, default: usize) -> Result<usize, ConfigError> {
        match self.parse(key, default)? {
            0 => Err(ConfigError::new(key, "must be at least 1")),
            n => Ok(n),
        }
    }

    /// A TCP port (0 lets the OS choose one).
    pub fn port(&self, key: &str, default: u16) -> Result<u16, ConfigError> {
        self.parse(key, default)
    }

    /// A duration given in milliseconds; must be positive.
    pub fn millis(&self, key: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parse(key, default_ms)?;
        if ms == 0 {
            return Err(ConfigError::new(
                key,
                "must be a positive number of milliseconds",
            ));
        }
        Ok(Duration::from_millis(ms))
    }

    /// A boolean the way Datadog's tracers read them: true/false, 1/0, yes/no (any case).
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::new(
                    key,
                    format!("{raw:?} is not true or false"),
                )),
            },
        }
    }

    /// A number between 0 and 1 inclusive (a rate), if set.
    pub fn rate(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => {
                let value: f64 = self.parse(key, 1.0)?;
                if (0.0..=1.0).contains(&value) {
                    Ok(Some(value))
                } else {
                    Err(ConfigError::new(key, "must be between 0 and 1"))
                }
            }
        }
    }

    /// A non-negative, finite factor.
    pub fn factor(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        let value: f64 = self.parse(key, default)?;
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err(ConfigError::new(key, "must be a non-negative number"))
        }
    }

    /// An `http://` base URL, returned without a trailing slash. `https://` is refused: the
    /// HTTP clients are built without TLS (no TLS stack in the dependencies), so such a URL
    /// would fail every request instead of stopping start-up.
    pub fn url(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => {
                let parsed = url::Url::parse(raw).map_err(|e| {
                    ConfigError::with_source(key, format!("{raw:?} is not a URL"), e)
                })?;
                if parsed.scheme() == "https" {
                    return Err(ConfigError::new(
                        key,
                        format!(
                            "{raw:?}: https:// is not supported (built without TLS); use http://"
                        ),
                    ));
                }
                if parsed.scheme() != "http" || parsed.host_str().is_none() {
                    return Err(ConfigError::new(
                        key,
                        format!("{raw:?} must be an http:// URL with a host"),
                    ));
                }
                Ok(Some(raw.trim_end_matches('/').to_string()))
            }
        }
    }

    /// A host name or address (no scheme, no port, no spaces).
    pub fn host(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        let host = self.string(key, default);
        let valid = !host.is_empty()
            && host.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
            });
        if valid {
            Ok(host)
        } else {
            Err(ConfigError::new(
                key,
                format!("{host:?} is not a host name"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_count_as_unset() {
        let env = Env::from_pairs([("PORT", " ")]);
        assert_eq!(env.port("PORT", 8080), Ok(8080));
    }

    #[test]
    fn errors_name_the_variable() {
        let env = Env::from_pairs([("PORT", "eighty")]);
        let err = env.port("PORT", 8080).unwrap_err();
        assert_eq!(err.variable, "PORT");
        assert!(
            err.to_string().starts_with("invalid PORT: \"eighty\""),
            "{err}"
        );
    }

    #[test]
    fn flags_and_rates() {
        let env = Env::from_pairs([("A", "FALSE"), ("B", "1"), ("R", "1.5"), ("S", "0.25")]);
        assert_eq!(env.flag("A", true), Ok(false));
        assert_eq!(env.flag("B", false), Ok(true));
        assert!(env.rate("R").is_err());
        assert_eq!(env.rate("S"), Ok(Some(0.25)));
        assert_eq!(env.rate("UNSET"), Ok(None));
    }

    #[test]
    fn urls_lose_their_trailing_slash_and_need_a_host() {
        let env = Env::from_pairs([
            ("U", "http://calendar:9090/"),
            ("V", "calendar:9090"),
            ("W", "https://calendar:9090"),
        ]);
        assert_eq!(env.url("U"), Ok(Some("http://calendar:9090".into())));
        assert!(env.url("V").is_err());
        let https = env.url("W").unwrap_err();
        assert!(
            https.message.contains("https:// is not supported"),
            "{https}"
        );
    }

    #[test]
    fn a_parse_error_is_the_source_and_the_chain_prints_it() {
        let err = Env::from_pairs([("N", "ten")])
            .parse::<u32>("N", 1)
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid N: \"ten\" is not valid");
        let source = std::error::Error::source(&err).expect("the parse error");
        assert_eq!(source.to_string(), "invalid digit found in string");
        assert_eq!(
            crate::error_chain(&err),
            "invalid N: \"ten\" is not valid: invalid digit found in string"
        );
    }

    #[test]
    fn positive_counts_refuse_zero_with_one_message() {
        let env = Env::from_pairs([("Z", "0"), ("N", "3"), ("X", "-1")]);
        assert_eq!(
            env.positive("Z", 5),
            Err(ConfigError::new("Z", "must be at least 1"))
        );
        assert_eq!(env.positive("N", 5), Ok(3));
        assert_eq!(env.positive("UNSET", 5), Ok(5));
        assert_eq!(env.positive("X", 5).unwrap_err().variable, "X");
    }

    #[test]
    fn zero_millis_is_rejected() {
        let env = Env::from_pairs([("T", "0")]);
        assert!(env.millis("T", 10).is_err());
    }
}
