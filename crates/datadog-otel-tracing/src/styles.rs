//! Propagation styles: which headers are read on the way in and written on the way out.
//!
//! `DD_TRACE_PROPAGATION_STYLE_EXTRACT` and `DD_TRACE_PROPAGATION_STYLE_INJECT` override
//! `DD_TRACE_PROPAGATION_STYLE`, which overrides `OTEL_PROPAGATORS`; the default is
//! `datadog,tracecontext,baggage`, as in dd-trace-py, dd-trace-go and dd-trace-rs. Values are
//! comma-separated and case-insensitive. `b3` is the single `b3` header (as dd-trace-py and
//! dd-trace-rs; dd-trace-go reads it as `b3multi`), `b3 single header` is its old name, and
//! `none` alone turns propagation off (beside other styles it is ignored). Extraction tries the styles in order: the first that
//! yields a context wins.

use crate::baggage::BaggageTagKeys;
use crate::env::{ConfigError, Env};

/// One propagation style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `x-datadog-*` headers.
    Datadog,
    /// W3C `traceparent` / `tracestate`.
    TraceContext,
    /// W3C `baggage`.
    Baggage,
    /// `x-b3-*` headers.
    B3Multi,
    /// One `b3` header.
    B3,
}

impl Style {
    /// The name as configured.
    pub fn name(self) -> &'static str {
        match self {
            Style::Datadog => "datadog",
            Style::TraceContext => "tracecontext",
            Style::Baggage => "baggage",
            Style::B3Multi => "b3multi",
            Style::B3 => "b3",
        }
    }
}

/// The default styles, in order.
pub const DEFAULT: &[Style] = &[Style::Datadog, Style::TraceContext, Style::Baggage];

/// Why a propagation style list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StyleError {
    /// A name that is no style.
    #[error(
        "unknown propagation style {0:?} (use datadog, tracecontext, baggage, b3multi, b3 or none)"
    )]
    Unknown(String),
}

/// Parses a style list.
pub fn parse(raw: &str) -> Result<Vec<Style>, StyleError> {
    let mut styles = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let style = match name.to_ascii_lowercase().as_str() {
            "datadog" => Style::Datadog,
            "tracecontext" => Style::TraceContext,
            "baggage" => Style::Baggage,
            "b3multi" => Style::B3Multi,
            "b3" | "b3 single header" => Style::B3,
            // Ignored beside other styles, as Datadog's tracers do; alone, no style at all.
            "none" => continue,
            _ => return Err(StyleError::Unknown(name.to_string())),
        };
        if !styles.contains(&style) {
            styles.push(style);
        }
    }
    Ok(styles)
}

/// `DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT`: what an extracted trace context becomes, as in
/// Datadog's tracers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExtractBehavior {
    /// `continue` (the default): the local spans continue the extracted trace.
    #[default]
    Continue,
    /// `restart`: a new trace, whose local root carries a span link to the extracted context
    /// (`reason: propagation_behavior_extract`); baggage is kept.
    Restart,
    /// `ignore`: nothing is extracted, neither a trace context nor baggage.
    Ignore,
}

impl ExtractBehavior {
    /// The name as configured.
    pub fn name(self) -> &'static str {
        match self {
            ExtractBehavior::Continue => "continue",
            ExtractBehavior::Restart => "restart",
            ExtractBehavior::Ignore => "ignore",
        }
    }
}

/// Why a `DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown extract behavior {0:?} (use continue, restart or ignore)")]
pub struct ExtractBehaviorError(String);

impl std::str::FromStr for ExtractBehavior {
    type Err = ExtractBehaviorError;

    /// `continue`, `restart` or `ignore`, case-insensitive.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "continue" => Ok(ExtractBehavior::Continue),
            "restart" => Ok(ExtractBehavior::Restart),
            "ignore" => Ok(ExtractBehavior::Ignore),
            _ => Err(ExtractBehaviorError(raw.to_string())),
        }
    }
}

/// The extract and inject styles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropagationStyles {
    /// Tried in order on the way in.
    pub extract: Vec<Style>,
    /// All written on the way out.
    pub inject: Vec<Style>,
    /// `DD_TRACE_PROPAGATION_EXTRACT_FIRST`: the first context found is taken as it is, no
    /// later style is consulted (no W3C parent or `tracestate` from a later `tracecontext`).
    pub extract_first: bool,
    /// `DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT`: continue, restart or ignore what is extracted.
    pub behavior: ExtractBehavior,
    /// `DD_TRACE_BAGGAGE_TAG_KEYS`: extracted baggage members tagged on the local root span.
    pub baggage_tag_keys: BaggageTagKeys,
}

impl Default for PropagationStyles {
    fn default() -> Self {
        Self {
            extract: DEFAULT.to_vec(),
            inject: DEFAULT.to_vec(),
            extract_first: false,
            behavior: ExtractBehavior::Continue,
            baggage_tag_keys: BaggageTagKeys::default(),
        }
    }
}

impl PropagationStyles {
    /// Reads the four style variables, `DD_TRACE_PROPAGATION_EXTRACT_FIRST`,
    /// `DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT` and `DD_TRACE_BAGGAGE_TAG_KEYS`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let read = |key: &str| -> Result<Option<Vec<Style>>, ConfigError> {
            env.get(key)
                .map(|raw| {
                    parse(raw).map_err(|e| {
                        ConfigError::with_source(key, format!("{raw:?} is not valid"), e)
                    })
                })
                .transpose()
        };
        let otel = read("OTEL_PROPAGATORS")?;
        let both = read("DD_TRACE_PROPAGATION_STYLE")?.or(otel);
        let extract = read("DD_TRACE_PROPAGATION_STYLE_EXTRACT")?.or_else(|| both.clone());
        let inject = read("DD_TRACE_PROPAGATION_STYLE_INJECT")?.or(both);
        Ok(Self {
            extract: extract.unwrap_or_else(|| DEFAULT.to_vec()),
            inject: inject.unwrap_or_else(|| DEFAULT.to_vec()),
            extract_first: env.flag("DD_TRACE_PROPAGATION_EXTRACT_FIRST", false)?,
            behavior: env.parse(
                "DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT",
                ExtractBehavior::Continue,
            )?,
            // Set but empty: no baggage tags.
            baggage_tag_keys: env
                .raw("DD_TRACE_BAGGAGE_TAG_KEYS")
                .map(BaggageTagKeys::parse)
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_in_order_without_duplicates() {
        assert_eq!(
            parse("B3, datadog ,b3multi,b3 single header"),
            Ok(vec![Style::B3, Style::Datadog, Style::B3Multi])
        );
        assert_eq!(parse("none"), Ok(vec![]));
        assert!(parse("jaeger")
            .unwrap_err()
            .to_string()
            .contains("\"jaeger\""));
        // `none` beside other styles is ignored, as in Datadog's tracers.
        assert_eq!(parse("none,datadog"), Ok(vec![Style::Datadog]));
        assert_eq!(parse("datadog, None"), Ok(vec![Style::Datadog]));
    }

    #[test]
    fn precedence_of_the_variables() {
        assert_eq!(
            PropagationStyles::from_env(&Env::default()).unwrap(),
            PropagationStyles::default()
        );
        let env = Env::from_pairs([
            ("OTEL_PROPAGATORS", "b3"),
            ("DD_TRACE_PROPAGATION_STYLE", "tracecontext"),
            ("DD_TRACE_PROPAGATION_STYLE_INJECT", "b3multi,baggage"),
        ]);
        let s = PropagationStyles::from_env(&env).unwrap();
        assert_eq!(s.extract, vec![Style::TraceContext]);
        assert_eq!(s.inject, vec![Style::B3Multi, Style::Baggage]);
        let env = Env::from_pairs([("OTEL_PROPAGATORS", "b3")]);
        assert_eq!(
            PropagationStyles::from_env(&env).unwrap().extract,
            vec![Style::B3]
        );
        let env = Env::from_pairs([("DD_TRACE_PROPAGATION_STYLE_EXTRACT", "zipkin")]);
        let err = PropagationStyles::from_env(&env).unwrap_err();
        assert_eq!(err.variable, "DD_TRACE_PROPAGATION_STYLE_EXTRACT");
        let env = Env::from_pairs([("DD_TRACE_PROPAGATION_STYLE", "none,datadog")]);
        assert_eq!(
            PropagationStyles::from_env(&env).unwrap().extract,
            vec![Style::Datadog]
        );
    }

    #[test]
    fn extract_first_is_a_flag_named_when_bad() {
        assert!(!PropagationStyles::default().extract_first);
        let env = Env::from_pairs([("DD_TRACE_PROPAGATION_EXTRACT_FIRST", "true")]);
        assert!(PropagationStyles::from_env(&env).unwrap().extract_first);
        let env = Env::from_pairs([("DD_TRACE_PROPAGATION_EXTRACT_FIRST", "maybe")]);
        let err = PropagationStyles::from_env(&env).unwrap_err();
        assert_eq!(err.variable, "DD_TRACE_PROPAGATION_EXTRACT_FIRST");
    }

    #[test]
    fn extract_behavior_is_read_case_insensitively_and_named_when_bad() {
        let behavior = |value: &str| {
            PropagationStyles::from_env(&Env::from_pairs([(
                "DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT",
                value,
            )]))
            .map(|s| s.behavior)
        };
        assert_eq!(
            PropagationStyles::default().behavior,
            ExtractBehavior::Continue
        );
        assert_eq!(behavior(""), Ok(ExtractBehavior::Continue));
        assert_eq!(behavior("continue"), Ok(ExtractBehavior::Continue));
        assert_eq!(behavior("Restart"), Ok(ExtractBehavior::Restart));
        assert_eq!(behavior(" IGNORE "), Ok(ExtractBehavior::Ignore));
        let err = behavior("drop").unwrap_err();
        assert_eq!(err.variable, "DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT");
        assert_eq!(
            crate::error_chain(&err),
            "invalid DD_TRACE_PROPAGATION_BEHAVIOR_EXTRACT: \"drop\" is not valid: \
             unknown extract behavior \"drop\" (use continue, restart or ignore)"
        );
        assert_eq!(ExtractBehavior::Restart.name(), "restart");
    }

    #[test]
    fn baggage_tag_keys_default_and_empty() {
        let keys = |pairs: &[(&str, &str)]| {
            PropagationStyles::from_env(&Env::from_pairs(pairs.iter().copied()))
                .unwrap()
                .baggage_tag_keys
        };
        assert_eq!(keys(&[]), BaggageTagKeys::default());
        assert_eq!(
            keys(&[("DD_TRACE_BAGGAGE_TAG_KEYS", "")]),
            BaggageTagKeys::Keys(vec![])
        );
        assert_eq!(
            keys(&[("DD_TRACE_BAGGAGE_TAG_KEYS", "*")]),
            BaggageTagKeys::All
        );
    }
}
