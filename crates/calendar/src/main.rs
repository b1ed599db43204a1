//! `calendar`: the calendar service. `calendar healthcheck` checks a running instance (for Docker).

use std::process::ExitCode;
use std::time::Duration;
use tutorial_common::config::Env;
use tutorial_common::http::{healthcheck, shutdown_signal};
use tutorial_common::telemetry;

fn main() -> ExitCode {
    let settings = match calendar::Settings::from_env(&Env::from_process()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("calendar: {e}");
            return ExitCode::from(2);
        }
    };
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck(settings.port);
    }
    // Before the async runtime: the exporter's blocking HTTP client must not be built on it.
    let telemetry = match telemetry::init(&settings.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("calendar: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("calendar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let app = calendar::Application::build(settings).await?;
        tracing::info!(address = %app.address(), "listening");
        app.run_until_stopped(shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let code = match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "calendar failed");
            eprintln!("calendar: {e}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown(Duration::from_secs(5));
    code
}
