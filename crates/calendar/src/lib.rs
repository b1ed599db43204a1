//! The calendar service: a random date in 2022, as the tutorial's calendar app.
//!
//! Everything is in this file; where a change goes:
//! - [`Settings`]: port and telemetry from the environment (the variables live in
//!   `tutorial_common::server` and `datadog_otel_tracing`);
//! - [`random_date`] and its range [`FIRST_DAY`]..=[`LAST_DAY`]: uniformly random from
//!   2022-01-01 to 2023-01-01 inclusive (366 days), as the original
//!   (`datetime(2022,1,1) + timedelta(days=randint(0,365))`);
//! - the handlers and [`configure`]: the routes `/`, `/calendar`, `/health`;
//! - [`Application`]: builds the bound server (run by `tutorial_common::server::run_main`), with
//!   the request limits and the traced server span shared with the notes service.

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpResponse};
use chrono::{Days, NaiveDate};
use datadog_otel_tracing::actix::ServerSpanBuilder;
use datadog_otel_tracing::Config as TracingConfig;
use rand::RngExt;
use std::convert::Infallible;
use tracing_actix_web::TracingLogger;
use tutorial_common::config::{ConfigError, Env};
use tutorial_common::http::{not_found, resource, Format, Routes};
use tutorial_common::server::{
    enforce_limits, Server, ServerSettings, ServiceSettings, StartError,
};

/// Settings of the calendar service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST`, `PORT` (default 9090), workers, shutdown timeout and request limits.
    pub server: ServerSettings,
    /// Logs and traces.
    pub telemetry: TracingConfig,
}

impl ServiceSettings for Settings {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            server: ServerSettings::from_env(env, 9090)?,
            telemetry: TracingConfig::from_env(env, "calendar")?,
        })
    }
    fn server(&self) -> &ServerSettings {
        &self.server
    }
    fn telemetry(&self) -> &TracingConfig {
        &self.telemetry
    }
}

/// The first date the calendar gives (a wrong constant is a compile error, never 1970).
pub const FIRST_DAY: NaiveDate = date(2022, 1, 1);
/// The last date the calendar gives: the original's `randint(0, 365)` days after [`FIRST_DAY`].
pub const LAST_DAY: NaiveDate = date(2023, 1, 1);
/// Days from [`FIRST_DAY`] to [`LAST_DAY`].
const SPAN_DAYS: i64 = LAST_DAY.signed_duration_since(FIRST_DAY).num_days();
const _: () = assert!(SPAN_DAYS == 365, "the original draws randint(0, 365) days");

/// A date, checked when the program is compiled.
const fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date) => date,
        None => panic!("not a calendar date"),
    }
}

/// A date from [`FIRST_DAY`] to [`LAST_DAY`] inclusive, every day equally likely.
pub fn random_date() -> NaiveDate {
    let days = rand::rng().random_range(0..=SPAN_DAYS.unsigned_abs());
    // At most 365 days after 2022-01-01: far from the end of NaiveDate's range.
    FIRST_DAY + Days::new(days)
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

/// The routes, for `App::configure` (registered through [`Routes`], so that the server span
/// knows a 405 from the start).
pub fn configure(cfg: &mut web::ServiceConfig) {
    Routes::default()
        .with(resource("/").get(index))
        .with(resource("/calendar").get(calendar))
        .with(resource("/health").get(health))
        .register(cfg);
}

/// The calendar service.
pub struct Application;

impl Application {
    /// Binds the server (it starts serving when run).
    pub async fn build(settings: Settings) -> Result<Server, StartError> {
        let limits = settings.server.limits;
        let http = settings.server.http_tracing(&settings.telemetry);
        Server::bind(&settings.server, move || {
            App::new()
                .wrap(from_fn(move |req, next| enforce_limits(limits, req, next)))
                // The handlers cannot fail: the server span's error type has no values.
                .wrap(TracingLogger::<ServerSpanBuilder<Infallible>>::new())
                .app_data(http.clone())
                .configure(configure)
                .default_service(web::to(not_found))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_cover_2022_and_new_years_day_2023() {
        let start = NaiveDate::from_ymd_opt(2022, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
        assert_eq!((FIRST_DAY, LAST_DAY), (start, end));
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
