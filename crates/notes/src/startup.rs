//! Building and running the notes server.

use crate::calendar::CalendarClient;
use crate::config::Settings;
use crate::db::Database;
use crate::error::ApiError;
use crate::routes::{self, AppState};
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use tracing_actix_web::TracingLogger;
use tutorial_common::http::{not_found, ServerSpanBuilder};

/// A bound, ready-to-run notes server.
pub struct Application {
    /// The address actually bound (the port is the OS's choice when `PORT=0`).
    address: SocketAddr,
    /// The actix-web server, not yet polled.
    server: Server,
}

impl Application {
    /// Binds the listener and builds the pool and clients. Does not wait for the database.
    pub async fn build(settings: Settings) -> Result<Self, String> {
        let db = Database::new(&settings.database)?;
        db.prepare_in_background();
        let calendar = CalendarClient::new(&settings.calendar_url, settings.calendar_timeout)
            .map_err(|e| format!("cannot build the calendar client: {e}"))?;
        let state = web::Data::new(AppState {
            db,
            calendar,
            helper_delay_scale: settings.helper_delay_scale,
        });
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .map_err(|e| format!("cannot listen on {}:{}: {e}", settings.host, settings.port))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::<ServerSpanBuilder<ApiError>>::new())
                .app_data(state.clone())
                .configure(routes::configure)
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

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets requests in flight
    /// finish (within the shutdown timeout).
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
