//! The call to the calendar service: reqwest through reqwest-middleware, with reqwest-tracing
//! making the client span and injecting the trace context headers.

use crate::error::NotesError;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_tracing::TracingMiddleware;
use std::time::Duration;
use tutorial_common::error::error_chain;
use tutorial_common::telemetry::spans::{ClientSpanBackend, PeerService};

/// A client for `GET /calendar`.
#[derive(Debug, Clone)]
pub struct CalendarClient {
    /// The traced HTTP client, whose timeout bounds the whole call.
    client: ClientWithMiddleware,
    /// `<base>/calendar`.
    url: String,
}

impl CalendarClient {
    /// A client for the calendar at `base_url`, giving up after `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            client: ClientBuilder::new(client)
                .with(TracingMiddleware::<ClientSpanBackend>::new())
                .build(),
            url: format!("{base_url}/calendar"),
        })
    }

    /// A date `MM/DD/YYYY` from the calendar service.
    pub async fn date(&self) -> Result<String, NotesError> {
        let response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "text/plain")
            .with_extension(PeerService("calendar"))
            .send()
            .await
            .map_err(|e| NotesError::CalendarUnavailable(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(NotesError::CalendarUnavailable(format!(
                "{} answered {status}",
                self.url
            )));
        }
        let body = response
            .text()
            .await
            .map_err(|e| NotesError::CalendarUnavailable(error_chain(&e)))?;
        let date = body.trim();
        if is_date(date) {
            Ok(date.to_string())
        } else {
            let shown: String = date.chars().take(40).collect();
            Err(NotesError::CalendarUnavailable(format!(
                "{} answered {shown:?}, not a MM/DD/YYYY date",
                self.url
            )))
        }
    }
}

/// `MM/DD/YYYY`, digits where digits belong.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[2] == b'/'
        && b[5] == b'/'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 2 || i == 5 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_checked() {
        assert!(super::is_date("07/24/2022"));
        assert!(!super::is_date("7/24/2022"));
        assert!(!super::is_date("<html>oops"));
        assert!(!super::is_date(""));
    }
}
