//! The calendar service: a random date in 2022, as the tutorial's calendar app.
//!
//! - [`Settings`]: port and telemetry from the environment;
//! - [`Application`]: binds, serves until a shutdown future resolves;
//! - [`random_date`]: uniformly random from 2022-01-01 to 2023-01-01 inclusive (366 days), as the
//!   original (`datetime(2022,1,1) + timedelta(days=randint(0,365))`).

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{Days, NaiveDate};
use rand::RngExt;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;
use tracing_actix_web::TracingLogger;
use tutorial_common::config::{ConfigError, Env};
use tutorial_common::http::{
    method_not_allowed, not_found, Format, ServerSpanBuilder, TracedError,
};
use tutorial_common::telemetry::TelemetryConfig;

/// Settings of the calendar service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST` (default `0.0.0.0`).
    pub host: String,
    /// `PORT` (default 9090; 0 picks a free port).
    pub port: u16,
    /// `WORKERS` (default: one per CPU core).
    pub workers: Option<usize>,
    /// `SHUTDOWN_TIMEOUT_S` (default 10): how long requests in flight may take at shutdown.
    pub shutdown_timeout: Duration,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let workers = match env.get("WORKERS") {
            None => None,
            Some(_) => match env.parse::<usize>("WORKERS", 1)? {
                0 => return Err(ConfigError::new("WORKERS", "must be at least 1")),
                n => Some(n),
            },
        };
        Ok(Self {
            host: env.host("HOST", "0.0.0.0")?,
            port: env.port("PORT", 9090)?,
            workers,
            shutdown_timeout: Duration::from_secs(env.parse("SHUTDOWN_TIMEOUT_S", 10)?),
            telemetry: TelemetryConfig::from_env(env, "calendar")?,
        })
    }
}

/// The calendar has no failure of its own; this type only names the server span's errors.
#[derive(Debug, thiserror::Error)]
#[error("calendar error")]
pub struct CalendarError;

impl actix_web::ResponseError for CalendarError {}

impl TracedError for CalendarError {
    fn error_type(&self) -> &'static str {
        "calendar::Error"
    }
}

/// A date from 2022-01-01 to 2023-01-01 inclusive, every day equally likely.
pub fn random_date() -> NaiveDate {
    let start = NaiveDate::from_ymd_opt(2022, 1, 1).unwrap_or_default();
    let days = rand::rng().random_range(0..=365u64);
    start.checked_add_days(Days::new(days)).unwrap_or(start)
}

async fn index(request: HttpRequest) -> HttpResponse {
    Format::of(&request).text(StatusCode::OK, "message", "Welcome to the calendar app!")
}

#[tracing::instrument(name = "get_date", skip_all, fields(otel.name = "get_date", operation.name = "calendar.get_date"))]
async fn calendar(request: HttpRequest) -> HttpResponse {
    let date = random_date().format("%m/%d/%Y").to_string();
    tracing::info!(%date, "date chosen");
    Format::of(&request).text(StatusCode::OK, "date", &date)
}

async fn health(request: HttpRequest) -> HttpResponse {
    Format::of(&request).text(StatusCode::OK, "status", "OK")
}

/// The routes, for `App::configure`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, handler) in [("/", 0), ("/calendar", 1), ("/health", 2)] {
        let route = match handler {
            0 => web::get().to(index),
            1 => web::get().to(calendar),
            _ => web::get().to(health),
        };
        cfg.service(
            web::resource(path)
                .route(route)
                .default_service(web::to(method_not_allowed)),
        );
    }
}

/// A bound, ready-to-run calendar server.
pub struct Application {
    /// The address actually bound.
    address: SocketAddr,
    /// The actix-web server, not yet polled.
    server: Server,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, String> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .map_err(|e| format!("cannot listen on {}:{}: {e}", settings.host, settings.port))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let mut server = HttpServer::new(|| {
            App::new()
                .wrap(TracingLogger::<ServerSpanBuilder<CalendarError>>::new())
                .configure(configure)
                .default_service(web::to(not_found))
        })
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout.as_secs());
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let server = server
            .listen(listener)
            .map_err(|e| format!("cannot listen on {address}: {e}"))?
            .run();
        Ok(Self { address, server })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Serves until `shutdown` resolves, then finishes requests in flight.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        tokio::spawn(async move {
            shutdown.await;
            handle.stop(true).await;
        });
        self.server.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_cover_2022_and_new_years_day_2023() {
        let start = NaiveDate::from_ymd_opt(2022, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let d = random_date();
            assert!(d >= start && d <= end, "{d}");
            seen.insert(d);
        }
        // 366 possible values; 20 000 draws miss one with negligible probability.
        assert_eq!(seen.len(), 366);
    }
}
