//! No secrets in spans: the query string of `http.url` goes through
//! `DD_TRACE_OBFUSCATION_QUERY_STRING_REGEXP`.
//!
//! The default is the pattern dd-trace-py ships (passwords, keys, tokens, signatures, bearer
//! values, GitHub tokens, JWTs, private keys, SSH keys), compiled like Python compiles it: an
//! ASCII, case-insensitive, verbose byte pattern. Each match in the query is replaced by
//! `<redacted>`; the rest of the URL (the fragment too) is kept, and user information
//! (`user:password@`) is removed first. An empty value turns obfuscation off; an invalid pattern
//! stops start-up (dd-trace-py drops the whole query instead; an error names the mistake).

use crate::env::{ConfigError, Env};
use regex::bytes::{Regex, RegexBuilder};
use std::borrow::Cow;

/// The variable.
pub const VARIABLE: &str = "DD_TRACE_OBFUSCATION_QUERY_STRING_REGEXP";

/// dd-trace-py's default pattern (`ddtrace/internal/settings/_config.py`), fragments joined.
pub const DEFAULT_PATTERN: &str = concat!(
    r#"(?ix)(?:(?:"|%22)?)(?:(?:old[-_]?|new[-_]?)?p(?:ass)?w(?:or)?d(?:1|2)?|pass(?:[-_]?phrase)?|secret|"#,
    r#"(?:api[-_]?|private[-_]?|public[-_]?|access[-_]?|secret[-_]?|app(?:lication)?[-_]?)key(?:[-_]?id)?|"#,
    r#"token|consumer[-_]?(?:id|key|secret)|sign(?:ed|ature)?|auth(?:entication|orization)?)"#,
    r#"(?:(?:\s|%20)*(?:=|%3D)[^&]+|(?:"|%22)(?:\s|%20)*(?::|%3A)(?:\s|%20)*(?:"|%22)(?:%2[^2]|%[^2]|[^"%])+(?:"|%22))|"#,
    r#"(?: bearer(?:\s|%20)+[a-z0-9._\-]+|token(?::|%3A)[a-z0-9]{13}|gh[opsu]_[0-9a-zA-Z]{36}|"#,
    r#"ey[I-L](?:[\w=-]|%3D)+\.ey[I-L](?:[\w=-]|%3D)+(?:\.(?:[\w.+/=-]|%3D|%2F|%2B)+)?|"#,
    r#"-{5}BEGIN(?:[a-z\s]|%20)+PRIVATE(?:\s|%20)KEY-{5}[^\-]+-{5}END(?:[a-z\s]|%20)+PRIVATE(?:\s|%20)KEY(?:-{5})?(?:\n|%0A)?|"#,
    r#"(?:ssh-(?:rsa|dss)|ecdsa-[a-z0-9]+-[a-z0-9]+)(?:\s|%20|%09)+(?:[a-z0-9/.+]|%2F|%5C|%2B){100,}(?:=|%3D)*(?:(?:\s|%20|%09)+[a-z0-9._-]+)?)"#,
);

/// What replaces each match.
pub const REDACTED: &[u8] = b"<redacted>";

/// The query-string obfuscator (`None` inside: obfuscation off).
#[derive(Debug, Clone)]
pub struct QueryObfuscator {
    regex: Option<Regex>,
}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    // `(?-u)`: ASCII classes and case folding, any byte matched by `[^&]`, as Python's bytes
    // pattern; the size limit bounds what a configured pattern may cost.
    RegexBuilder::new(&format!("(?-u){pattern}"))
        .size_limit(1 << 22)
        .build()
}

impl Default for QueryObfuscator {
    fn default() -> Self {
        Self {
            // The default is a constant tested below: it compiles.
            regex: compile(DEFAULT_PATTERN).ok(),
        }
    }
}

impl QueryObfuscator {
    /// Reads the variable: unset → the default, empty → off.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.raw(VARIABLE) {
            None => Ok(Self::default()),
            Some("") => Ok(Self { regex: None }),
            Some(pattern) => compile(pattern)
                .map(|r| Self { regex: Some(r) })
                .map_err(|e| {
                    // The parser's message spans lines (pattern, caret, reason): keep the reason.
                    let text = e.to_string();
                    let reason = text
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("");
                    let reason = reason.trim().trim_start_matches("error: ");
                    ConfigError::new(
                        VARIABLE,
                        format!("{pattern:?} is not a valid pattern ({reason})"),
                    )
                }),
        }
    }

    #[cfg(test)]
    /// Whether obfuscation is on.
    pub fn is_enabled(&self) -> bool {
        self.regex.is_some()
    }

    /// `url` without user information, each match in its query replaced by `<redacted>`.
    pub fn redact_url<'a>(&self, url: &'a str) -> Cow<'a, str> {
        let url = strip_userinfo(url);
        let Some(regex) = &self.regex else {
            return url;
        };
        let Some(query_start) = url.find('?').map(|i| i + 1) else {
            return url;
        };
        let query_end = url[query_start..]
            .find('#')
            .map_or(url.len(), |i| query_start + i);
        let query = &url.as_bytes()[query_start..query_end];
        match regex.replace_all(query, REDACTED) {
            Cow::Borrowed(_) => url,
            Cow::Owned(redacted) => {
                let mut out = String::with_capacity(url.len());
                out.push_str(&url[..query_start]);
                // Matches end on ASCII or at the end: lossless for valid UTF-8 in practice.
                out.push_str(&String::from_utf8_lossy(&redacted));
                out.push_str(&url[query_end..]);
                Cow::Owned(out)
            }
        }
    }
}

/// Removes `user:password@` from an absolute URL.
fn strip_userinfo(url: &str) -> Cow<'_, str> {
    // Byte searches: every server span's URL comes here, and `str`'s pattern searches cost
    // more than the rest of the redaction for a URL without a query.
    let bytes = url.as_bytes();
    let Some(scheme_end) = bytes.windows(3).position(|w| w == b"://").map(|i| i + 3) else {
        return Cow::Borrowed(url);
    };
    let authority_end = bytes[scheme_end..]
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .map_or(url.len(), |i| scheme_end + i);
    match bytes[scheme_end..authority_end]
        .iter()
        .rposition(|b| *b == b'@')
    {
        Some(at) => Cow::Owned(format!(
            "{}{}",
            &url[..scheme_end],
            &url[scheme_end + at + 1..]
        )),
        None => Cow::Borrowed(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(url: &str) -> String {
        QueryObfuscator::default().redact_url(url).into_owned()
    }

    #[test]
    fn the_default_pattern_compiles() {
        assert!(QueryObfuscator::default().is_enabled());
    }

    /// Each expectation is what Python's `re.sub` gives with the same pattern on the query.
    #[test]
    fn passwords_keys_tokens_and_jwts_are_redacted() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        for (url, expect) in [
            (
                "http://h/notes?desc=hi&password=hunter2&id=1".to_string(),
                "http://h/notes?desc=hi&<redacted>&id=1".to_string(),
            ),
            (
                "http://h/x?api_key=abc123".into(),
                "http://h/x?<redacted>".into(),
            ),
            (
                "http://h/x?Api-Key=abc&X=1#frag".into(),
                "http://h/x?<redacted>&X=1#frag".into(),
            ),
            (
                format!("http://h/x?q=1&t={jwt}"),
                "http://h/x?q=1&t=<redacted>".into(),
            ),
            (
                // The pattern is not anchored on keys: `token` matches inside `access_token`.
                "http://h/x?access_token=zzz&passwd=1".into(),
                "http://h/x?access_<redacted>&<redacted>".into(),
            ),
            (
                "http://h/x?pwd%3Dsecret".into(),
                "http://h/x?<redacted>".into(),
            ),
            (
                "http://user:pw@h:8080/x?desc=hi".into(),
                "http://h:8080/x?desc=hi".into(),
            ),
            (
                "http://h/notes?desc=hello".into(),
                "http://h/notes?desc=hello".into(),
            ),
            ("http://h/password=x".into(), "http://h/password=x".into()),
        ] {
            assert_eq!(redact(&url), expect, "{url}");
        }
    }

    #[test]
    fn empty_turns_it_off_and_bad_patterns_are_refused() {
        let off = QueryObfuscator::from_env(&Env::from_pairs([(VARIABLE, "")])).unwrap();
        assert_eq!(
            off.redact_url("http://h/?password=x"),
            "http://h/?password=x"
        );
        let custom =
            QueryObfuscator::from_env(&Env::from_pairs([(VARIABLE, "desc=[^&]*")])).unwrap();
        assert_eq!(
            custom.redact_url("http://h/?desc=a&password=x"),
            "http://h/?<redacted>&password=x"
        );
        let err = QueryObfuscator::from_env(&Env::from_pairs([(VARIABLE, "(")])).unwrap_err();
        assert_eq!(err.variable, VARIABLE);
    }

    #[test]
    fn non_ascii_queries_stay_valid_text() {
        let out = redact("http://h/x?desc=été&token=été&z=ü");
        assert_eq!(out, "http://h/x?desc=été&<redacted>&z=ü");
    }
}
