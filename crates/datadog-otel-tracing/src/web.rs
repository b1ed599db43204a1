//! [`HttpTracing`]: the HTTP settings of one application, read by the server span
//! ([`crate::actix`]) and the client span ([`crate::reqwest_client`]) of its requests. They travel
//! with the application (actix-web app data, a reqwest-middleware extension), never in a
//! process-wide static: two applications in one process keep their own.

use crate::config::Config;
use crate::header_tags::HeaderTags;
use crate::redact::QueryObfuscator;
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

/// The HTTP settings of one application: the query-string redaction of `http.url`
/// (`DD_TRACE_OBFUSCATION_QUERY_STRING_REGEXP`), the header tags (`DD_TRACE_HEADER_TAGS`), and
/// the request paths that get no server span (say a health check that probes call every few
/// seconds).
///
/// Cheap to clone (shared). Give it to actix-web as app data and to reqwest-middleware as an
/// extension; where none is given, Datadog's defaults apply (the default redaction pattern, no
/// header tags, every path traced).
///
/// ```
/// use datadog_otel_tracing::{Config, HttpTracing};
/// let http = HttpTracing::from_config(&Config::new("my-service")).untraced_path("/health");
/// assert!(!http.traces_path("/health"));
/// assert!(http.traces_path("/orders"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct HttpTracing {
    inner: Arc<Settings>,
}

#[derive(Debug, Default)]
struct Settings {
    obfuscator: QueryObfuscator,
    header_tags: HeaderTags,
    untraced_paths: Vec<String>,
}

#[cfg_attr(not(any(feature = "actix", feature = "reqwest")), allow(dead_code))]
/// Datadog's defaults, for requests of an application that registered no settings.
static DEFAULTS: LazyLock<HttpTracing> = LazyLock::new(HttpTracing::default);

impl HttpTracing {
    /// The settings `config` read from the environment (redaction pattern and header tags),
    /// with every path traced.
    pub fn from_config(config: &Config) -> Self {
        Self {
            inner: Arc::new(Settings {
                obfuscator: config.datadog.query_obfuscation.clone(),
                header_tags: config.datadog.header_tags.clone(),
                untraced_paths: Vec::new(),
            }),
        }
    }

    /// These settings, with requests to exactly `path` left untraced (no server span, so no
    /// trace; spans the handler makes would start traces of their own, so make none there).
    pub fn untraced_path(self, path: impl Into<String>) -> Self {
        let mut settings = Settings {
            obfuscator: self.inner.obfuscator.clone(),
            header_tags: self.inner.header_tags.clone(),
            untraced_paths: self.inner.untraced_paths.clone(),
        };
        settings.untraced_paths.push(path.into());
        Self {
            inner: Arc::new(settings),
        }
    }

    /// Whether requests to `path` get a server span.
    pub fn traces_path(&self, path: &str) -> bool {
        !self.inner.untraced_paths.iter().any(|p| p == path)
    }

    /// `url` as spans show it: no user information, secrets in the query `<redacted>`.
    pub fn redact_url<'a>(&self, url: &'a str) -> Cow<'a, str> {
        self.inner.obfuscator.redact_url(url)
    }

    #[cfg_attr(not(any(feature = "actix", feature = "reqwest")), allow(dead_code))]
    pub(crate) fn header_tags(&self) -> &HeaderTags {
        &self.inner.header_tags
    }

    #[cfg_attr(not(any(feature = "actix", feature = "reqwest")), allow(dead_code))]
    /// The settings of an application that registered none.
    pub(crate) fn defaults() -> &'static HttpTracing {
        &DEFAULTS
    }
}
