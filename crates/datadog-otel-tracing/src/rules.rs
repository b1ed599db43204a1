//! Trace sampling rules (`DD_TRACE_SAMPLING_RULES`) and the deterministic rate decision.
//!
//! A rule is a JSON object with a `sample_rate` and optional `service`, `name`, `resource` and
//! `tags` glob patterns ([`crate::glob`]); all given patterns must match the trace's local root
//! span. Rules are tried in order and the first match decides (priority 2 kept / -1 dropped,
//! decision maker `-3`, `_dd.rule_psr` = the rule's rate). `DD_TRACE_SAMPLE_RATE` is appended
//! as a catch-all rule `{"sample_rate": x}`, as `dd-trace-rs` does and as `dd-trace-py` 3.0
//! asks its users to write it.
//!
//! Where Datadog's tracers differ, this follows the strictest one, because a typo in a rule
//! silently samples the wrong traces: a rule without `sample_rate`, a rate outside 0..=1, an
//! unknown key or a non-string pattern stops start-up (dd-trace-py skips or clamps such rules,
//! dd-trace-go rejects the out-of-range ones).

use crate::glob::Glob;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// Knuth's multiplicative hash factor used by every Datadog sampler.
const KNUTH_FACTOR: u64 = 1_111_111_111_111_111_111;

/// The deterministic keep decision of Datadog's samplers: keep iff
/// `(low64(trace_id) × 1111111111111111111) mod 2⁶⁴ ≤ rate × (2⁶⁴ − 1)`. Every service of a
/// trace reaches the same verdict for the same rate.
pub fn sampled_by_rate(trace_id: u128, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate.is_nan() || rate <= 0.0 {
        return false;
    }
    let hashed = (trace_id as u64).wrapping_mul(KNUTH_FACTOR);
    // `as` saturates: 1.0 × MAX would round to 2⁶⁴, but rate < 1 here.
    hashed <= (rate * u64::MAX as f64) as u64
}

/// Why `DD_TRACE_SAMPLING_RULES` was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not a JSON list of rule objects (or an unknown key, a wrong type).
    #[error("not a JSON list of rules")]
    Json(#[source] serde_json::Error),
    /// A rule without `sample_rate`.
    #[error("rule {index} has no sample_rate")]
    MissingRate {
        /// The rule's position in the list, from 0.
        index: usize,
    },
    /// A rate outside 0..=1.
    #[error("rule {index} has sample_rate {rate}, which is not between 0 and 1")]
    RateOutOfRange {
        /// The rule's position in the list, from 0.
        index: usize,
        /// The rate given.
        rate: f64,
    },
}

/// One rule as written in JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    sample_rate: Option<f64>,
    service: Option<String>,
    name: Option<String>,
    resource: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// Set by remote configuration (`customer`, `dynamic`); accepted, and ignored for
    /// rules given locally.
    #[allow(dead_code)]
    provenance: Option<String>,
}

/// A trace sampling rule.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingRule {
    /// The share of matching traces to keep, 0..=1.
    pub sample_rate: f64,
    /// Pattern on the local root's service.
    pub service: Option<Glob>,
    /// Pattern on the local root's operation name (`actix_web.request`).
    pub name: Option<Glob>,
    /// Pattern on the local root's resource (`GET /notes`).
    pub resource: Option<Glob>,
    /// Patterns on the local root's tags; every tag named must exist and match.
    pub tags: Vec<(String, Glob)>,
}

/// What a rule looks at: the trace's local root span.
pub struct RootFacts<'a> {
    /// Its service.
    pub service: &'a str,
    /// Its operation name.
    pub name: &'a str,
    /// Its resource.
    pub resource: &'a str,
    /// Looks up one of its tags (attributes, `env`, `version`, `DD_TAGS`), as a string.
    pub tag: &'a dyn Fn(&str) -> Option<String>,
}

impl fmt::Debug for RootFacts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootFacts")
            .field("service", &self.service)
            .field("name", &self.name)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl SamplingRule {
    /// A rule that matches every trace (what `DD_TRACE_SAMPLE_RATE` becomes).
    pub fn catch_all(sample_rate: f64) -> Self {
        Self {
            sample_rate,
            service: None,
            name: None,
            resource: None,
            tags: Vec::new(),
        }
    }

    /// Whether the rule matches the trace's root.
    pub fn matches(&self, root: &RootFacts<'_>) -> bool {
        let field =
            |glob: &Option<Glob>, value: &str| glob.as_ref().is_none_or(|g| g.matches(value));
        field(&self.service, root.service)
            && field(&self.name, root.name)
            && field(&self.resource, root.resource)
            && self
                .tags
                .iter()
                .all(|(key, glob)| (root.tag)(key).is_some_and(|v| glob.matches(&v)))
    }
}

/// The ordered rule list; the first match decides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingRules {
    rules: Vec<SamplingRule>,
}

impl SamplingRules {
    /// Parses `DD_TRACE_SAMPLING_RULES` (`None`: no rules) and appends `DD_TRACE_SAMPLE_RATE`
    /// as a catch-all rule.
    pub fn parse(json: Option<&str>, sample_rate: Option<f64>) -> Result<Self, RulesError> {
        let mut rules = Vec::new();
        if let Some(json) = json {
            let raw: Vec<RawRule> = serde_json::from_str(json).map_err(RulesError::Json)?;
            for (index, r) in raw.into_iter().enumerate() {
                let rate = r.sample_rate.ok_or(RulesError::MissingRate { index })?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(RulesError::RateOutOfRange { index, rate });
                }
                rules.push(SamplingRule {
                    sample_rate: rate,
                    service: r.service.as_deref().map(Glob::new),
                    name: r.name.as_deref().map(Glob::new),
                    resource: r.resource.as_deref().map(Glob::new),
                    tags: r
                        .tags
                        .iter()
                        .map(|(k, v)| (k.clone(), Glob::new(v)))
                        .collect(),
                });
            }
        }
        if let Some(rate) = sample_rate {
            rules.push(SamplingRule::catch_all(rate));
        }
        Ok(Self { rules })
    }

    /// The rules, in order.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn rules(&self) -> &[SamplingRule] {
        &self.rules
    }

    /// Whether there is no rule at all (then the Agent's rates decide).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule matching the root, if any.
    pub fn find(&self, root: &RootFacts<'_>) -> Option<&SamplingRule> {
        self.rules.iter().find(|r| r.matches(root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(
        service: &'a str,
        resource: &'a str,
        tag: &'a dyn Fn(&str) -> Option<String>,
    ) -> RootFacts<'a> {
        RootFacts {
            service,
            name: "actix_web.request",
            resource,
            tag,
        }
    }

    #[test]
    fn the_hash_is_datadogs() {
        // 1 × K = 1111111111111111111 ≤ 0.5 × (2⁶⁴ − 1) ≈ 9.22e18; 9 × K mod 2⁶⁴ ≈ 1.0e19 is not.
        assert!(sampled_by_rate(1, 0.5));
        assert!(!sampled_by_rate(9, 0.5));
        let kept = (1..=10_000u128)
            .filter(|id| sampled_by_rate(*id * 7_919, 0.25))
            .count();
        assert!((2_300..2_700).contains(&kept), "{kept}");
        assert!(sampled_by_rate(u128::MAX, 1.0));
        assert!(!sampled_by_rate(12345, 0.0));
        assert!(!sampled_by_rate(12345, f64::NAN));
        // Only the low 64 bits count.
        let low = 0x493c264c32613b9e_u128;
        for rate in [0.1, 0.5, 0.9] {
            assert_eq!(
                sampled_by_rate(low, rate),
                sampled_by_rate((0x6b058a5d_u128 << 96) | low, rate)
            );
        }
    }

    #[test]
    fn first_match_wins_and_the_sample_rate_comes_last() {
        let rules = SamplingRules::parse(
            Some(
                r#"[{"service":"notes","resource":"GET /notes*","sample_rate":0.0},
                    {"service":"no?es","sample_rate":0.5},
                    {"tags":{"http.method":"post"},"sample_rate":1}]"#,
            ),
            Some(0.25),
        )
        .unwrap();
        let none = |_: &str| None;
        let post = |k: &str| (k == "http.method").then(|| "POST".to_string());
        let rate = |f: RootFacts<'_>| rules.find(&f).map(|r| r.sample_rate);
        assert_eq!(rate(facts("notes", "GET /notes/{id}", &none)), Some(0.0));
        assert_eq!(rate(facts("NOTES", "POST /notes", &none)), Some(0.5));
        assert_eq!(rate(facts("calendar", "POST /calendar", &post)), Some(1.0));
        assert_eq!(rate(facts("calendar", "GET /calendar", &none)), Some(0.25));
    }

    #[test]
    fn a_tag_rule_needs_the_tag() {
        let rules =
            SamplingRules::parse(Some(r#"[{"tags":{"team":"*"},"sample_rate":1}]"#), None).unwrap();
        let none = |_: &str| None;
        assert!(rules.find(&facts("notes", "GET /", &none)).is_none());
        let team = |_: &str| Some(String::new());
        assert!(rules.find(&facts("notes", "GET /", &team)).is_some());
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        for (json, expect) in [
            ("{}", "not a JSON list"),
            ("[1]", "not a JSON list"),
            (r#"[{"sample_rate":"0.5"}]"#, "not a JSON list"),
            (r#"[{"servce":"notes","sample_rate":1}]"#, "unknown field"),
            (r#"[{"service":"notes"}]"#, "rule 0 has no sample_rate"),
            (r#"[{"sample_rate":1},{"sample_rate":1.5}]"#, "rule 1 has"),
            (r#"[{"sample_rate":-0.1}]"#, "not between 0 and 1"),
            (r#"[{"tags":{"a":1},"sample_rate":1}]"#, "not a JSON list"),
            ("[", "not a JSON list"),
        ] {
            let err = crate::error_chain(&SamplingRules::parse(Some(json), None).unwrap_err());
            assert!(err.contains(expect), "{json}: {err}");
        }
        assert!(SamplingRules::parse(Some("[]"), None).unwrap().is_empty());
    }
}
