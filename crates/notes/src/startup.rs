//! Building the notes server: the store, the calendar client, the routes, the middleware.
//!
//! [`BuildError`] says what stopped start-up, with its cause; it becomes the shared
//! [`StartError`] (exit status 2 for a bad setting, 1 otherwise) at the edge, in `run_main`,
//! which prints its chain.

use crate::calendar::CalendarClient;
use crate::config::Settings;
use crate::db::{Database, OpenError};
use crate::error::ApiError;
use crate::routes::{self, AppState};
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use datadog_otel_tracing::actix::ServerSpanBuilder;
use tracing_actix_web::TracingLogger;
use tutorial_common::http::not_found;
use tutorial_common::server::{enforce_limits, Server, StartError};

/// Why the notes service could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The store could not be opened (a bad setting, or no pool).
    #[error(transparent)]
    Store(#[from] OpenError),
    /// The HTTP client for the calendar could not be built (no TLS backend, say).
    #[error("cannot build the calendar client")]
    CalendarClient(#[source] reqwest::Error),
    /// The server could not listen.
    #[error(transparent)]
    Server(StartError),
}

impl From<BuildError> for StartError {
    /// A bad setting stays a [`StartError::Config`] (exit 2, one line naming the variable);
    /// anything else is kept whole, with its causes, as [`StartError::Service`].
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Store(OpenError::Config(config)) => StartError::Config(config),
            BuildError::Server(start) => start,
            other => StartError::Service(Box::new(other)),
        }
    }
}

/// The notes service.
pub struct Application;

impl Application {
    /// Opens the store, builds the calendar client and the bound server. Does not wait for
    /// PostgreSQL: the service starts (and answers 503 where it needs it) while it is down. A
    /// SQLite file that cannot be used is a [`OpenError::Config`] naming `DATABASE_URL`.
    pub async fn build(settings: Settings) -> Result<Server, BuildError> {
        let db = Database::open(&settings.database).await?;
        tracing::info!("notes are kept in {}", db.location());
        // The app's tracing settings travel with it (app data, the client's extension).
        let http = settings.server.http_tracing(&settings.telemetry);
        let calendar =
            CalendarClient::new(&settings.calendar_url, settings.calendar_timeout, &http)
                .map_err(BuildError::CalendarClient)?;
        let state = web::Data::new(AppState {
            db,
            calendar,
            helper_delay_scale: settings.helper_delay_scale,
        });
        let limits = settings.server.limits;
        Server::bind(&settings.server, move || {
            App::new()
                .wrap(from_fn(move |req, next| enforce_limits(limits, req, next)))
                .wrap(TracingLogger::<ServerSpanBuilder<ApiError>>::new())
                .app_data(http.clone())
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(not_found))
        })
        .map_err(BuildError::Server)
    }
}
