//! A minimal actix-web service traced to the Datadog Agent.
//!
//! ```text
//! DD_SERVICE=hello DD_TRACE_AGENT_URL=http://localhost:8126 PORT=8000 \
//!     cargo run -p datadog-otel-tracing --example actix_server
//! curl 'localhost:8000/hello/world?token=secret'
//! ```
//!
//! Each request is a trace: the server span (`actix_web.request`, resource `GET /hello/{name}`,
//! the token redacted in `http.url`) and the handler's own span under it. Stop it with Ctrl-C
//! (the spans are flushed) or after `EXIT_AFTER_S` seconds; `PORT=0` picks a free port.

use actix_web::{web, App, HttpServer};
use datadog_otel_tracing::actix::{resource, Routes, ServerSpanBuilder};
use datadog_otel_tracing::{Config, Env, HttpTracing, Pipeline};
use std::time::Duration;
use tracing_actix_web::TracingLogger;

async fn hello(name: web::Path<String>) -> String {
    // A span of your own: a child of the request's server span.
    let _span =
        tracing::info_span!("greet", otel.name = "greet", operation.name = "hello.greet").entered();
    tracing::info!(name = %name, "greeting");
    format!("Hello, {name}!")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = Env::from_process();
    let config = Config::from_env(&env, "hello")?;
    // Before the async runtime: the export runs on threads of its own.
    let guard = Pipeline::build(&config)?.install()?;
    let http = HttpTracing::from_config(&config).untraced_path("/health");
    let port = env.port("PORT", 8000)?;
    let exit_after: Option<u64> = match env.get("EXIT_AFTER_S") {
        Some(_) => Some(env.parse("EXIT_AFTER_S", 0)?),
        None => None,
    };
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::<ServerSpanBuilder>::new())
                .app_data(http.clone())
                .configure(|cfg| {
                    Routes::default()
                        .with(resource("/hello/{name}").get(hello))
                        .register(cfg)
                })
        })
        .bind(("127.0.0.1", port))?;
        for address in server.addrs() {
            tracing::info!(%address, "listening");
        }
        let server = server.run();
        if let Some(seconds) = exit_after {
            let handle = server.handle();
            actix_web::rt::spawn(async move {
                actix_web::rt::time::sleep(Duration::from_secs(seconds)).await;
                handle.stop(true).await;
            });
        }
        server.await
    })?;
    guard.shutdown(Duration::from_secs(3))?;
    Ok(())
}
