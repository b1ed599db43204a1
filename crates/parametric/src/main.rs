//! The parametric app of Datadog's system-tests, over `datadog-otel-tracing`.
//!
//! Datadog proves its tracers with one shared conformance suite: each tracer serves the same
//! small HTTP API ("start a span", "set a tag", "inject headers", "flush", …; see the suite's
//! `docs/understand/scenarios/parametric.md`), and the suite drives it beside Datadog's test
//! agent. This binary serves that API through the library's public API only: the spans are
//! started with the pipeline's OpenTelemetry tracer ([`TracingGuard::tracer`]) and follow the
//! span fields of [`datadog_otel_tracing::spans`]; headers go through the pipeline's propagator
//! ([`TracingGuard::inject`], [`TracingGuard::extract`]); `flush` is [`TracingGuard::flush`].
//!
//! Settings come from the environment like any service of the library (`DD_*`), plus `PORT`
//! (default 8080; 0: a free one) on 127.0.0.1. It logs `{"message":"listening","address":…}`
//! when ready. `tests/conformance/` runs the suite against it.

mod api;

use datadog_otel_tracing::{Config, Env, Pipeline};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parametric: {}", datadog_otel_tracing::error_chain(&*e));
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let env = Env::from_process();
    let config = Config::from_env(&env, "parametric")?;
    let port = env.port("PORT", 8080)?;
    let guard = Pipeline::build(&config)?.install()?;
    let state = api::State::new(config, guard);
    actix_web::rt::System::new().block_on(api::serve(state, port))?;
    Ok(())
}
