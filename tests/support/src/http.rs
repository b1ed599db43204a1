//! One HTTP request as the tests send it, and what came back.

/// A response as a test reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// The `Content-Type` header (empty when there is none).
    pub content_type: String,
    pub body: String,
}

/// Sends `method url` with `headers`; panics (with the URL) only if the server cannot be
/// reached at all.
pub async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .unwrap_or_else(|e| panic!("{method:?} is not an HTTP method: {e}"));
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.text().await.unwrap_or_default();
    Reply {
        status,
        content_type,
        body,
    }
}

/// Sends each `(method, path, status)` to `base` on a connection of its own and asserts the
/// status it answers.
pub async fn assert_statuses(base: &str, requests: &[(&str, &str, u16)]) {
    for (method, path, status) in requests {
        let reply = send(
            &reqwest::Client::new(),
            method,
            &format!("{base}{path}"),
            &[],
        )
        .await;
        assert_eq!(reply.status, *status, "{method} {path}: {}", reply.body);
    }
}

impl Reply {
    /// A `text/plain; charset=utf-8` reply, as the services send their plain answers.
    pub fn plain(status: u16, body: &str) -> Reply {
        Reply::with(status, "text/plain; charset=utf-8", body)
    }

    /// An `application/json` reply.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::with(status, "application/json", body)
    }

    /// A reply with this status, content type and body.
    pub fn with(status: u16, content_type: &str, body: &str) -> Reply {
        Reply {
            status,
            content_type: content_type.to_string(),
            body: body.to_string(),
        }
    }
}
