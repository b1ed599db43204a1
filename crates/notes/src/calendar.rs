//! The call to the calendar service: reqwest through reqwest-middleware, with reqwest-tracing
//! making the client span and injecting the trace context headers.

use datadog_otel_tracing::reqwest_client::{traced_client, PeerService};
use datadog_otel_tracing::HttpTracing;
use reqwest_middleware::ClientWithMiddleware;
use std::time::Duration;

/// Why no date came back from the calendar (every one of them: a 503 for the client).
#[derive(Debug, thiserror::Error)]
pub enum CalendarCallError {
    /// No answer: refused, unreachable, or slower than `CALENDAR_TIMEOUT_MS` (reqwest's
    /// message names the URL; its causes say why).
    #[error(transparent)]
    Request(reqwest_middleware::Error),
    /// The calendar answered with an error status.
    #[error("{url} answered {status}")]
    Status {
        /// What was asked.
        url: String,
        /// What it answered.
        status: reqwest::StatusCode,
    },
    /// The body could not be read in time.
    #[error(transparent)]
    Body(reqwest::Error),
    /// The body is not a date.
    #[error("{url} answered {shown:?}, not a MM/DD/YYYY date")]
    NotADate {
        /// What was asked.
        url: String,
        /// The start of the answer.
        shown: String,
    },
}

/// A client for `GET /calendar`.
#[derive(Debug, Clone)]
pub struct CalendarClient {
    /// The traced HTTP client, whose timeout bounds the whole call.
    client: ClientWithMiddleware,
    /// `<base>/calendar`.
    url: String,
}

impl CalendarClient {
    /// A client for the calendar at `base_url`, giving up after `timeout`; its spans follow
    /// `http` (redaction, header tags).
    pub fn new(
        base_url: &str,
        timeout: Duration,
        http: &HttpTracing,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            client: traced_client(client, http).build(),
            url: format!("{base_url}/calendar"),
        })
    }

    /// A date `MM/DD/YYYY` from the calendar service.
    pub async fn date(&self) -> Result<String, CalendarCallError> {
        let response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "text/plain")
            .with_extension(PeerService("calendar"))
            .send()
            .await
            .map_err(CalendarCallError::Request)?;
        let status = response.status();
        if !status.is_success() {
            return Err(CalendarCallError::Status {
                url: self.url.clone(),
                status,
            });
        }
        let body = response.text().await.map_err(CalendarCallError::Body)?;
        let date = body.trim();
        if is_date(date) {
            Ok(date.to_string())
        } else {
            Err(CalendarCallError::NotADate {
                url: self.url.clone(),
                shown: date.chars().take(40).collect(),
            })
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
    use super::*;
    use crate::error::NotesError;
    use tutorial_common::http::Format;

    #[tokio::test]
    async fn a_refused_call_keeps_its_cause_for_the_logs() {
        // A loopback port bound, then released: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let client = CalendarClient::new(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_secs(2),
            &HttpTracing::default(),
        )
        .expect("client");
        let error = client.date().await.expect_err("nothing listens");
        assert!(matches!(error, CalendarCallError::Request(_)), "{error:?}");
        let error = NotesError::from(error).respond_as(Format::Plain);
        let logged = error.to_string();
        assert!(
            logged.starts_with(
                "calendar call failed: error sending request for url (http://127.0.0.1:"
            ),
            "{logged}"
        );
        assert!(
            logged.contains(&format!("127.0.0.1:{port}/calendar")),
            "{logged}"
        );
        assert!(
            logged.to_lowercase().contains("connect"),
            "the cause: {logged}"
        );
        assert_eq!(
            error.error.client_message(),
            "Cannot reach calendar service."
        );
    }

    #[test]
    fn dates_are_checked() {
        assert!(super::is_date("07/24/2022"));
        assert!(!super::is_date("7/24/2022"));
        assert!(!super::is_date("<html>oops"));
        assert!(!super::is_date(""));
    }
}
