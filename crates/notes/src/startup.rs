//! Building the notes server.

use crate::calendar::CalendarClient;
use crate::config::Settings;
use crate::db::Database;
use crate::error::ApiError;
use crate::routes::{self, AppState};
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use tracing_actix_web::TracingLogger;
use tutorial_common::http::{not_found, ServerSpanBuilder};
use tutorial_common::server::{enforce_limits, Server, StartError};

/// The notes service.
pub struct Application;

impl Application {
    /// Opens the store, builds the calendar client and the bound server. Does not wait for
    /// PostgreSQL: the service starts (and answers 503 where it needs it) while it is down. A
    /// SQLite file that cannot be used is a [`StartError::Config`] naming `DATABASE_URL`.
    pub async fn build(settings: Settings) -> Result<Server, StartError> {
        let db = Database::open(&settings.database).await?;
        tracing::info!("notes are kept in {}", db.location());
        let calendar = CalendarClient::new(&settings.calendar_url, settings.calendar_timeout)
            .map_err(|e| StartError::Failed(format!("cannot build the calendar client: {e}")))?;
        let state = web::Data::new(AppState {
            db,
            calendar,
            helper_delay_scale: settings.helper_delay_scale,
        });
        let limits = settings.server.limits;
        let server = Server::bind(&settings.server, move || {
            App::new()
                .wrap(from_fn(move |req, next| enforce_limits(limits, req, next)))
                .wrap(TracingLogger::<ServerSpanBuilder<ApiError>>::new())
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(not_found))
        })?;
        Ok(server)
    }
}
