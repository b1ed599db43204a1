//! Where traces come from: the test agent's `GET /test/traces`, or a JSON file.

use crate::model::{traces_from_json, Trace};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// The test agent's address when none is given: the Agent's standard port.
pub const DEFAULT_AGENT: &str = "http://localhost:8126";

/// `localhost:8126` → `http://localhost:8126`; a trailing `/` is dropped.
pub fn normalize_agent_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

/// Every trace the test agent at `agent` holds (`GET /test/traces`).
pub fn from_agent(agent: &str) -> Result<Vec<Trace>> {
    let base = normalize_agent_url(agent);
    let url = format!("{base}/test/traces");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot make an HTTP client")?;
    let response = client.get(&url).send().with_context(|| {
        format!(
            "cannot reach the test agent at {base}: is it running (ddapm-test-agent, or \
             docker-compose --profile testagent), and is that its address (--agent)?"
        )
    })?;
    let status = response.status();
    let body = response
        .text()
        .with_context(|| format!("cannot read the answer of {url}"))?;
    if !status.is_success() {
        let hint = if status.as_u16() == 404 {
            " (a real Datadog Agent does not give traces back: this needs Datadog's test agent; \
             with a real Agent look at the traces in Datadog)"
        } else {
            ""
        };
        bail!(
            "GET {url} answered {status}{hint}: {}",
            crate::tree::truncate(body.trim(), 300)
        );
    }
    parse(&body).with_context(|| format!("unexpected answer from {url}"))
}

/// The traces in a JSON file (`-`: standard input): the test agent's answer saved with
/// `curl localhost:8126/test/traces > traces.json`, or a list of spans.
pub fn from_file(path: &Path) -> Result<Vec<Trace>> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    parse(&text).with_context(|| format!("{} holds no traces tracecat can read", path.display()))
}

fn parse(text: &str) -> Result<Vec<Trace>> {
    let value: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    traces_from_json(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_urls() {
        assert_eq!(
            normalize_agent_url("localhost:8126"),
            "http://localhost:8126"
        );
        assert_eq!(normalize_agent_url("http://a:1/"), "http://a:1");
        assert_eq!(normalize_agent_url(" https://a "), "https://a");
    }

    #[test]
    fn unreachable_agent_is_an_error() {
        // Port 9 (discard) on loopback: nothing listens there on a test machine.
        let err = from_agent("127.0.0.1:9")
            .expect_err("nothing listens")
            .to_string();
        assert!(err.contains("cannot reach the test agent"), "{err}");
    }
}
