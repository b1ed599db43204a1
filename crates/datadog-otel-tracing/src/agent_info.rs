//! What the Agent's `GET /info` says this tracer may do: compute stats (its `endpoints` list
//! `/v0.6/stats`), drop priority-0 chunks locally (`client_drop_p0s`), and which peer tags to
//! aggregate client spans on (`peer_tags`). Asked at start and refreshed, as Datadog's tracers
//! do; an Agent that does not answer, or answers without them, means no stats and every trace
//! sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// The Agent's latest `/info`, shared by the exporter and the refresh thread.
#[derive(Debug, Default)]
pub struct AgentInfo {
    stats: AtomicBool,
    drop_p0s: AtomicBool,
    peer_tags: Mutex<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct Raw {
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    client_drop_p0s: bool,
    #[serde(default)]
    peer_tags: Option<Vec<String>>,
}

impl AgentInfo {
    /// Takes an answer of `/info`; an unreadable one counts as an Agent without the features.
    pub fn update(&self, body: &[u8]) {
        match serde_json::from_slice::<Raw>(body) {
            Ok(raw) => {
                let stats = raw
                    .endpoints
                    .iter()
                    .any(|e| e.trim_end_matches('/') == "/v0.6/stats");
                self.stats.store(stats, Ordering::Relaxed);
                self.drop_p0s
                    .store(stats && raw.client_drop_p0s, Ordering::Relaxed);
                *self
                    .peer_tags
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = raw.peer_tags.unwrap_or_default();
            }
            Err(_) => self.clear(),
        }
    }

    /// The Agent did not answer: no stats, every trace sent.
    pub fn clear(&self) {
        self.stats.store(false, Ordering::Relaxed);
        self.drop_p0s.store(false, Ordering::Relaxed);
    }

    /// Whether the Agent takes stats (`/v0.6/stats`).
    pub fn takes_stats(&self) -> bool {
        self.stats.load(Ordering::Relaxed)
    }

    /// Whether the Agent lets this tracer drop priority-0 chunks.
    pub fn drops_p0s(&self) -> bool {
        self.drop_p0s.load(Ordering::Relaxed)
    }

    /// The tags client spans are aggregated on.
    pub fn peer_tags(&self) -> Vec<String> {
        self.peer_tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_features_follow_the_answer() {
        let info = AgentInfo::default();
        assert!(!info.takes_stats());
        info.update(br#"{"endpoints":["/v0.4/traces","/v0.6/stats"],"client_drop_p0s":true,"peer_tags":["peer.service","out.host"]}"#);
        assert!(info.takes_stats() && info.drops_p0s());
        assert_eq!(info.peer_tags(), vec!["peer.service", "out.host"]);
        info.update(br#"{"endpoints":["/v0.4/traces"],"client_drop_p0s":true}"#);
        assert!(
            !info.takes_stats() && !info.drops_p0s(),
            "no stats: nothing dropped"
        );
        info.update(br#"{"endpoints":["/v0.6/stats"]}"#);
        assert!(info.takes_stats() && !info.drops_p0s());
        info.update(b"OK");
        assert!(!info.takes_stats());
    }
}
