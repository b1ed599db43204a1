//! An outgoing call traced to the Datadog Agent: one trace with the caller's span and the
//! client span (`reqwest.request`, `peer.service`), its context injected into the request's
//! headers (Datadog and W3C by default).
//!
//! ```text
//! DD_SERVICE=caller cargo run -p datadog-otel-tracing --example reqwest_client -- http://localhost:8000/hello/you
//! ```

use datadog_otel_tracing::reqwest_client::{traced_client, PeerService};
use datadog_otel_tracing::{Config, HttpTracing, Pipeline};
use std::time::Duration;
use tracing::Instrument;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://localhost:8000/hello/you".to_string());
    let config = Config::from_process_env("caller")?;
    let guard = Pipeline::build(&config)?.install()?;
    let client = traced_client(reqwest::Client::new(), &HttpTracing::from_config(&config)).build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let root = tracing::info_span!(
        "job",
        otel.name = "fetch greeting",
        operation.name = "caller.job"
    );
    let answer = runtime.block_on(
        async {
            let response = client
                .get(&url)
                .with_extension(PeerService("hello"))
                .send()
                .await?;
            response
                .text()
                .await
                .map_err(reqwest_middleware::Error::from)
        }
        .instrument(root),
    );
    match answer {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("the call failed: {}", datadog_otel_tracing::error_chain(&e)),
    }
    guard.shutdown(Duration::from_secs(3))?;
    Ok(())
}
