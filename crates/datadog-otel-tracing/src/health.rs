//! Tracer health metrics over DogStatsD (`DD_TRACE_HEALTH_METRICS_ENABLED`), as Datadog's
//! tracers send theirs: what the export lost, as `datadog.tracer.*` counts, sent over UDP to
//! `DD_DOGSTATSD_HOST:DD_DOGSTATSD_PORT` every [`INTERVAL`] by the processor's worker thread.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `datadog.tracer.queue.dropped.spans` | count | spans dropped because the export queue was full |
//! | `datadog.tracer.api.dropped.spans` | count | spans the Agent did not take (unreachable, an error status) |
//! | `datadog.tracer.payload.dropped.spans` | count | spans of payloads that could not be built |
//! | `datadog.tracer.queue.spans` | gauge | spans waiting in the export queue |
//!
//! Every metric carries `service`, `env` and `version` (when set) and `lang:rust`. A metric
//! that cannot be sent (nothing listening) is lost silently: health metrics never cost the
//! service anything but one datagram every ten seconds. The host is resolved once, when the
//! pipeline is built (a name that does not resolve is logged there, and nothing is sent).

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

/// How often the metrics go.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// The totals the export keeps (monotonic), read at each send.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Spans dropped at the full export queue.
    pub queue_dropped_spans: u64,
    /// Spans the Agent did not take.
    pub api_dropped_spans: u64,
    /// Spans of payloads that could not be built.
    pub payload_dropped_spans: u64,
}

/// Where the metrics go, and the totals last sent (counts are sent as differences).
#[derive(Debug)]
pub(crate) struct HealthMetrics {
    socket: Option<UdpSocket>,
    /// `host:port`, resolved (`None`: it did not resolve).
    address: Option<SocketAddr>,
    /// `|#service:…,env:…,version:…,lang:rust`.
    tags: String,
    sent: Totals,
}

impl HealthMetrics {
    /// Metrics to `host:port`, tagged with the service, its env and version.
    pub(crate) fn new(
        host: &str,
        port: u16,
        service: &str,
        env: Option<&str>,
        version: Option<&str>,
    ) -> Self {
        let mut tags = format!("|#service:{service}");
        if let Some(env) = env {
            tags.push_str(&format!(",env:{env}"));
        }
        if let Some(version) = version {
            tags.push_str(&format!(",version:{version}"));
        }
        tags.push_str(",lang:rust");
        // An IPv6 literal needs its brackets to join a port.
        let address = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let resolved = match address.to_socket_addrs() {
            Ok(mut addresses) => addresses.next(),
            Err(e) => {
                tracing::warn!(%address, error = %e, "cannot resolve the DogStatsD address: no health metrics");
                None
            }
        };
        let bind = match resolved {
            Some(SocketAddr::V6(_)) => "[::]:0",
            _ => "0.0.0.0:0",
        };
        Self {
            socket: UdpSocket::bind(bind).ok(),
            address: resolved,
            tags,
            sent: Totals::default(),
        }
    }

    /// The DogStatsD lines for `totals` (counts since the last send) and the `queued` spans.
    fn lines(&self, totals: Totals, queued: usize) -> String {
        let sent = self.sent;
        let counts = [
            (
                "datadog.tracer.queue.dropped.spans",
                totals
                    .queue_dropped_spans
                    .saturating_sub(sent.queue_dropped_spans),
            ),
            (
                "datadog.tracer.api.dropped.spans",
                totals
                    .api_dropped_spans
                    .saturating_sub(sent.api_dropped_spans),
            ),
            (
                "datadog.tracer.payload.dropped.spans",
                totals
                    .payload_dropped_spans
                    .saturating_sub(sent.payload_dropped_spans),
            ),
        ];
        let mut out = String::new();
        for (name, value) in counts {
            out.push_str(&format!("{name}:{value}|c{}\n", self.tags));
        }
        out.push_str(&format!(
            "datadog.tracer.queue.spans:{queued}|g{}",
            self.tags
        ));
        out
    }

    /// Sends the metrics for `totals` and `queued`; nothing happens when they cannot go.
    pub(crate) fn send(&mut self, totals: Totals, queued: usize) {
        let lines = self.lines(totals, queued);
        self.sent = totals;
        if let (Some(socket), Some(address)) = (&self.socket, self.address) {
            let _ = socket.send_to(lines.as_bytes(), address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_as_differences_to_the_dogstatsd_address() {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut health = HealthMetrics::new("127.0.0.1", port, "notes", Some("dev"), None);
        let receive = || {
            let mut buf = [0u8; 2048];
            let n = listener.recv(&mut buf).expect("a datagram");
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        let totals = Totals {
            queue_dropped_spans: 3,
            api_dropped_spans: 5,
            payload_dropped_spans: 0,
        };
        health.send(totals, 7);
        assert_eq!(
            receive(),
            "datadog.tracer.queue.dropped.spans:3|c|#service:notes,env:dev,lang:rust\n\
             datadog.tracer.api.dropped.spans:5|c|#service:notes,env:dev,lang:rust\n\
             datadog.tracer.payload.dropped.spans:0|c|#service:notes,env:dev,lang:rust\n\
             datadog.tracer.queue.spans:7|g|#service:notes,env:dev,lang:rust"
        );
        health.send(
            Totals {
                queue_dropped_spans: 4,
                ..totals
            },
            0,
        );
        let second = receive();
        assert!(
            second.starts_with("datadog.tracer.queue.dropped.spans:1|c"),
            "{second}"
        );
        assert!(
            second.contains("datadog.tracer.api.dropped.spans:0|c"),
            "{second}"
        );
    }

    #[test]
    fn nothing_listening_costs_nothing() {
        // Port 9 on loopback: nobody listens; the send must neither fail nor block.
        let mut health = HealthMetrics::new("localhost", 9, "notes", None, None);
        health.send(Totals::default(), 0);
        let mut nowhere = HealthMetrics::new("no-such-host.invalid", 8125, "notes", None, None);
        nowhere.send(Totals::default(), 0);
    }
}
