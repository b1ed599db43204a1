//! Building the notes server.

use crate::calendar::CalendarClient;
use crate::config::Settings;
use crate::db::Database;
use crate::error::ApiError;
use crate::routes::{self, AppState};
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use tracing_actix_web::TracingLogger;
use tutorial_common::http::not_found;
use tutorial_common::server::{enforce_limits, Server};
use tutorial_common::telemetry::spans::ServerSpanBuilder;

/// The notes service.
pub struct Application;

impl Application {
    /// Builds the pool, the calendar client and the bound server. Does not wait for the
    /// database: the service starts (and answers 503 where it needs it) while it is down.
    pub async fn build(settings: Settings) -> Result<Server, String> {
        let db = Database::new(&settings.database)?;
        db.prepare_in_background();
        let calendar = CalendarClient::new(&settings.calendar_url, settings.calendar_timeout)
            .map_err(|e| format!("cannot build the calendar client: {e}"))?;
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
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(not_found))
        })
    }
}
