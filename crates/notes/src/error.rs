//! The errors of the notes service and the HTTP status each one maps to.
//!
//! Every error keeps its cause as a typed `source()`. Clients get a short plain message (or
//! `{"error": …}` when they asked for JSON); the whole chain goes, as one line, to the logs and
//! to the server span's `error.message` ([`ApiError`]'s `Display`, the one place that prints
//! it), never to the client.

use crate::calendar::CalendarCallError;
use crate::db::DbError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use datadog_otel_tracing::actix::TracedError;
use tutorial_common::error::error_chain;
use tutorial_common::http::Format;

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
    #[error("calendar call failed")]
    CalendarUnavailable(#[source] CalendarCallError),
    /// 503 `Database unavailable`: no connection within the pool's timeout, or it broke.
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] DbError),
    /// 500 `Internal server error`: anything else (a bug); details in logs and spans only.
    #[error("internal error")]
    Internal(#[source] InternalError),
}

/// What a 500 hides from the client.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    /// The database refused a statement (a constraint, a bug in the SQL).
    #[error(transparent)]
    Database(DbError),
    /// A response body could not be encoded.
    #[error("cannot encode the JSON body")]
    Json(#[source] serde_json::Error),
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

    /// Attaches the representation the client asked for (and logs a 5xx with its chain).
    pub fn respond_as(self, format: Format) -> ApiError {
        let error = ApiError {
            error: self,
            format,
        };
        if error.error.status().is_server_error() {
            tracing::error!(error = %error, "request failed");
        }
        error
    }
}

impl From<DbError> for NotesError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            NotesError::DatabaseUnavailable(e)
        } else {
            NotesError::Internal(InternalError::Database(e))
        }
    }
}

impl From<CalendarCallError> for NotesError {
    fn from(e: CalendarCallError) -> Self {
        NotesError::CalendarUnavailable(e)
    }
}

impl From<serde_json::Error> for NotesError {
    fn from(e: serde_json::Error) -> Self {
        NotesError::Internal(InternalError::Json(e))
    }
}

/// A [`NotesError`] with the representation the client asked for: what handlers return.
/// Its `Display` is the error with all its causes, on one line.
#[derive(Debug)]
pub struct ApiError {
    /// What went wrong.
    pub error: NotesError,
    /// Plain text or JSON.
    pub format: Format,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&error_chain(&self.error))
    }
}

impl std::error::Error for ApiError {}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_reaches_the_logs_but_not_the_client() {
        let refused = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            Some("CHECK constraint failed: length(description) <= 255".into()),
        );
        let error = NotesError::from(DbError::Sqlite(refused)).respond_as(Format::Plain);
        let logged = error.to_string();
        assert!(
            logged.starts_with("internal error: SQLite statement failed: CHECK constraint failed"),
            "{logged}"
        );
        assert_eq!(error.error.client_message(), "Internal server error");
        assert_eq!(error.error_type(), "notes::Internal");
    }
}
