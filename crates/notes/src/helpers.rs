//! The tutorial's helper work, with its custom instrumentation.
//!
//! The Python tutorial adds two custom spans: `@tracer.wrap(service="notes_helper")` on
//! `long_running_process`, and `tracer.trace(name="notes_helper", service="notes_helper",
//! resource="another_process")` around `another_process`. Here they are an
//! `#[tracing::instrument]` attribute and an explicit span.

use std::time::Duration;
use tracing::Instrument;

/// Sleeps `seconds × scale` (not at all when `scale` is 0: the tests run without the delays).
async fn sleep(seconds: f64, scale: f64) {
    if scale > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(seconds * scale)).await;
    }
}

/// 0.3 s of work, then a private step of 0.03 s (its own child span); scaled by `scale`.
#[tracing::instrument(
    name = "long_running_process",
    skip_all,
    fields(
        otel.name = "long_running_process",
        operation.name = "notes_helper.long_running_process",
        service.name = "notes_helper",
    )
)]
pub async fn long_running_process(scale: f64) {
    sleep(0.3, scale).await;
    tracing::info!("Hello from the long running process");
    private_method_1(scale).await;
}

#[tracing::instrument(
    name = "private_method_1",
    skip_all,
    fields(
        otel.name = "private_method_1",
        operation.name = "notes_helper.private_method_1",
        service.name = "notes_helper",
    )
)]
async fn private_method_1(scale: f64) {
    sleep(0.03, scale).await;
    tracing::info!("Hello from the private method");
}

/// 0.05 s of work, in a span named `notes_helper` with resource `another_process`.
pub async fn another_process(scale: f64) {
    let span = tracing::info_span!(
        "notes_helper",
        otel.name = "another_process",
        operation.name = "notes_helper",
        service.name = "notes_helper",
    );
    async {
        sleep(0.05, scale).await;
        tracing::info!("Hello from the another process");
    }
    .instrument(span)
    .await
}
