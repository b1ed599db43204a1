//! The errors of the notes service and the HTTP status each one maps to.
//!
//! Clients get a short plain message (or `{"error": …}` when they asked for JSON); the detail
//! (`Display`) goes to the logs and to the server span's `error.message`, never to the client.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tutorial_common::http::Format;
use tutorial_common::telemetry::spans::TracedError;

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum NotesError {
    /// 400: a parameter is missing or invalid; the message names it.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404 `Note does not exist`.
    #[error("note {0} does not exist")]
    NotFound(i32),
    /// 503 `Cannot reach calendar service.`: unreachable, failing, too slow, or a bad answer.
    #[error("calendar call failed: {0}")]
    CalendarUnavailable(String),
    /// 503 `Database unavailable`: no connection within the pool's timeout, or it broke.
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    /// 500 `Internal server error`: anything else (a bug); details in logs and spans only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl NotesError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            NotesError::BadRequest(_) => StatusCode::BAD_REQUEST,
            NotesError::NotFound(_) => StatusCode::NOT_FOUND,
            NotesError::CalendarUnavailable(_) | NotesError::DatabaseUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            NotesError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The short message the client sees.
    pub fn client_message(&self) -> &str {
        match self {
            NotesError::BadRequest(message) => message,
            NotesError::NotFound(_) => "Note does not exist",
            NotesError::CalendarUnavailable(_) => "Cannot reach calendar service.",
            NotesError::DatabaseUnavailable(_) => "Database unavailable",
            NotesError::Internal(_) => "Internal server error",
        }
    }

    /// Attaches the representation the client asked for.
    pub fn respond_as(self, format: Format) -> ApiError {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        ApiError {
            error: self,
            format,
        }
    }
}

/// A [`NotesError`] with the representation the client asked for: what handlers return.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ApiError {
    /// What went wrong.
    pub error: NotesError,
    /// Plain text or JSON.
    pub format: Format,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.error.status()
    }

    fn error_response(&self) -> HttpResponse {
        self.format
            .text(self.status_code(), "error", self.error.client_message())
    }
}

impl TracedError for ApiError {
    fn error_type(&self) -> &'static str {
        match self.error {
            NotesError::BadRequest(_) => "notes::BadRequest",
            NotesError::NotFound(_) => "notes::NotFound",
            NotesError::CalendarUnavailable(_) => "notes::CalendarUnavailable",
            NotesError::DatabaseUnavailable(_) => "notes::DatabaseUnavailable",
            NotesError::Internal(_) => "notes::Internal",
        }
    }
}
