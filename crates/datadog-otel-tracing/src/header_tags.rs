//! `DD_TRACE_HEADER_TAGS`: request and response headers as span tags.
//!
//! Entries `header[:tag]`, separated by commas (or by whitespace when there is no comma), split
//! on the first `:`, trimmed, the header name lowercased, as dd-trace-py reads them. Without a
//! tag name, a request header becomes `http.request.headers.<n>` and a response header
//! `http.response.headers.<n>`, `<n>` being the lowercased header with every character outside
//! `[a-z0-9_-:/]` replaced by `_` (`X-Foo.Bar` → `http.request.headers.x-foo_bar`). A tag
//! name given is used as is, for both directions. Several values of one header are joined with
//! `,`. Server spans (actix-web) and client spans (reqwest) both get them.

use crate::env::{ConfigError, Env};

/// The variable.
pub const VARIABLE: &str = "DD_TRACE_HEADER_TAGS";

/// One configured header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTag {
    /// The header, lowercased.
    pub header: String,
    /// The tag on request headers.
    pub request_tag: String,
    /// The tag on response headers.
    pub response_tag: String,
}

/// The configured headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderTags {
    entries: Vec<HeaderTag>,
}

fn normalize(header: &str) -> String {
    header
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | ':' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Why a `DD_TRACE_HEADER_TAGS` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderTagsError {
    /// An entry that does not start with a header name (`:tag`, `a b` between commas).
    #[error("{entry:?} does not start with an HTTP header name")]
    NotAHeader {
        /// The entry as written.
        entry: String,
    },
}

impl HeaderTags {
    /// Parses the variable's value.
    pub fn parse(raw: &str) -> Result<Self, HeaderTagsError> {
        let entries: Vec<&str> = if raw.contains(',') {
            raw.split(',').collect()
        } else {
            raw.split_whitespace().collect()
        };
        let mut out = Vec::new();
        for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
            let (header, tag) = match entry.split_once(':') {
                Some((h, t)) => (h.trim(), t.trim()),
                None => (entry, ""),
            };
            let header = header.to_ascii_lowercase();
            if !valid_header_name(&header) {
                return Err(HeaderTagsError::NotAHeader {
                    entry: entry.to_string(),
                });
            }
            let (request_tag, response_tag) = if tag.is_empty() {
                let n = normalize(&header);
                (
                    format!("http.request.headers.{n}"),
                    format!("http.response.headers.{n}"),
                )
            } else {
                (tag.to_string(), tag.to_string())
            };
            out.push(HeaderTag {
                header,
                request_tag,
                response_tag,
            });
        }
        Ok(Self { entries: out })
    }

    /// Reads `DD_TRACE_HEADER_TAGS`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.get(VARIABLE) {
            None => Ok(Self::default()),
            Some(raw) => Self::parse(raw).map_err(|e| {
                ConfigError::with_source(VARIABLE, format!("{raw:?} is not valid"), e)
            }),
        }
    }

    #[cfg_attr(not(any(feature = "actix", feature = "reqwest")), allow(dead_code))]
    /// Whether no header is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(any(test, feature = "fuzzing"))]
    /// The entries.
    pub fn entries(&self) -> &[HeaderTag] {
        &self.entries
    }

    #[cfg_attr(not(any(feature = "actix", feature = "reqwest")), allow(dead_code))]
    /// The tags for the headers `values` finds: `(tag, value)` for each configured header
    /// present. `values` returns a header's values joined with `,` (`None`: absent).
    pub fn tags_with(
        &self,
        response: bool,
        values: impl Fn(&str) -> Option<String>,
    ) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter_map(|entry| {
                let value = values(&entry.header)?;
                let tag = if response {
                    &entry.response_tag
                } else {
                    &entry.request_tag
                };
                Some((tag.clone(), value))
            })
            .collect()
    }

    #[cfg_attr(not(any(feature = "actix", feature = "reqwest")), allow(dead_code))]
    /// The tags for an `http` header map (reqwest's).
    pub fn tags(&self, headers: &http::HeaderMap, response: bool) -> Vec<(String, String)> {
        self.tags_with(response, |name| {
            join(headers.get_all(name).iter().filter_map(|v| v.to_str().ok()))
        })
    }
}

#[cfg_attr(not(any(feature = "actix", feature = "reqwest")), allow(dead_code))]
/// A header's values joined with `,`, as one tag value (`None` when it has none).
pub fn join<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let values: Vec<&str> = values.collect();
    (!values.is_empty()).then(|| values.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_like_dd_trace_py() {
        let t = HeaderTags::parse(" X-Request-ID , User-Agent:http.ua,X-Foo.Bar,").unwrap();
        assert_eq!(
            t.entries(),
            &[
                HeaderTag {
                    header: "x-request-id".into(),
                    request_tag: "http.request.headers.x-request-id".into(),
                    response_tag: "http.response.headers.x-request-id".into(),
                },
                HeaderTag {
                    header: "user-agent".into(),
                    request_tag: "http.ua".into(),
                    response_tag: "http.ua".into(),
                },
                HeaderTag {
                    header: "x-foo.bar".into(),
                    request_tag: "http.request.headers.x-foo_bar".into(),
                    response_tag: "http.response.headers.x-foo_bar".into(),
                },
            ]
        );
        let spaces = HeaderTags::parse("a:x b").unwrap();
        assert_eq!(spaces.entries().len(), 2);
        // The first `:` splits: the rest is the tag name.
        let colon = HeaderTags::parse("a:x:y").unwrap();
        assert_eq!(colon.entries()[0].request_tag, "x:y");
        assert!(HeaderTags::parse(":tag").is_err());
        assert!(HeaderTags::parse("bad header").is_ok()); // two headers: `bad`, `header`
        assert!(HeaderTags::parse("a b,c").is_err()); // commas win: "a b" is no header
    }

    #[test]
    fn present_headers_become_tags() {
        let t = HeaderTags::parse("x-request-id,accept:req.accept").unwrap();
        let mut h = http::HeaderMap::new();
        h.append("X-Request-Id", "abc".parse().unwrap());
        h.append("accept", "text/plain".parse().unwrap());
        h.append("accept", "application/json".parse().unwrap());
        assert_eq!(
            t.tags(&h, false),
            vec![
                ("http.request.headers.x-request-id".into(), "abc".into()),
                ("req.accept".into(), "text/plain,application/json".into())
            ]
        );
        assert_eq!(t.tags(&h, true)[0].0, "http.response.headers.x-request-id");
        assert!(t.tags(&http::HeaderMap::new(), false).is_empty());
    }
}
