//! The `notes` table, in one of two stores behind one small interface ([`Database`]):
//! - [`postgres`]: PostgreSQL through a deadpool-postgres pool (when `DB_HOST` or a
//!   `postgres://` `DATABASE_URL` is given);
//! - [`sqlite`]: an embedded SQLite database, in memory (the default, as the Python original
//!   without `DB_HOST`) or in a file (`DATABASE_URL=sqlite:notes.db`).
//!
//! Both answer the same calls with the same [`Note`]s and the same [`DbError`] classes (which
//! map to 503 or 500), and trace each statement with one span helper (`query_span`), shaped
//! like Datadog's own integrations: resource = the SQL text, type `sql`, `db.*` tags, row count.
//!
//! Dispatch is one `match` on the enum: no boxing, no dynamic call on the PostgreSQL path.

pub mod postgres;
pub mod sqlite;

use crate::config::StoreSettings;
use std::time::Duration;
use tracing::field::Empty;
use tutorial_common::config::ConfigError;

pub use postgres::Postgres;
pub use sqlite::Sqlite;

/// A note as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    /// Primary key, from 1, never reused.
    pub id: i32,
    /// Up to 255 characters.
    pub description: String,
}

impl std::fmt::Display for Note {
    /// The tutorial's body: `(1, hello)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {})", self.id, self.description)
    }
}

/// The store holding the notes.
#[derive(Debug, Clone)]
pub enum Database {
    /// PostgreSQL, through a connection pool.
    Postgres(Postgres),
    /// Embedded SQLite, in memory or in a file.
    Sqlite(Sqlite),
}

/// Runs the same call on whichever store is in use.
macro_rules! dispatch {
    ($self:ident, $db:ident => $call:expr) => {
        match $self {
            Database::Postgres($db) => $call,
            Database::Sqlite($db) => $call,
        }
    };
}

impl Database {
    /// Opens the configured store. PostgreSQL is not contacted yet (the service starts while it
    /// is down); a SQLite file is opened and checked now, so that an unreadable, locked or
    /// foreign file stops start-up with an error naming `DATABASE_URL`.
    pub async fn open(settings: &StoreSettings) -> Result<Self, OpenError> {
        Ok(match settings {
            StoreSettings::Postgres(pg) => {
                let db = Postgres::new(pg)?;
                db.prepare_in_background();
                Database::Postgres(db)
            }
            StoreSettings::Sqlite(lite) => Database::Sqlite(Sqlite::open(lite).await?),
        })
    }

    /// Which store, and where: for the start-up log line.
    pub fn location(&self) -> String {
        dispatch!(self, db => db.location())
    }

    /// All notes, ordered by id.
    pub async fn list(&self) -> Result<Vec<Note>, DbError> {
        dispatch!(self, db => db.list().await)
    }

    /// One note.
    pub async fn get(&self, id: i32) -> Result<Option<Note>, DbError> {
        dispatch!(self, db => db.get(id).await)
    }

    /// Stores a note and returns it with its id.
    pub async fn create(&self, description: &str) -> Result<Note, DbError> {
        dispatch!(self, db => db.create(description).await)
    }

    /// Replaces a description; `None` when there is no such note.
    pub async fn update(&self, id: i32, description: &str) -> Result<Option<Note>, DbError> {
        dispatch!(self, db => db.update(id, description).await)
    }

    /// Deletes a note; false when there was none.
    pub async fn delete(&self, id: i32) -> Result<bool, DbError> {
        dispatch!(self, db => db.delete(id).await)
    }

    /// Whether the database answers (and holds the table).
    pub async fn ping(&self) -> Result<(), DbError> {
        dispatch!(self, db => db.ping().await)
    }
}

/// A database failure: no connection, or a statement that failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No PostgreSQL connection within the pool's timeout.
    #[error("no PostgreSQL connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// PostgreSQL refused or lost a statement.
    #[error("PostgreSQL statement failed{}", postgres::sqlstate(.0))]
    Query(#[from] tokio_postgres::Error),
    /// A PostgreSQL statement got no answer in time.
    #[error("no answer within {0:?}; the connection was dropped")]
    Timeout(Duration),
    /// SQLite refused a statement, or the file failed.
    #[error("SQLite statement failed")]
    Sqlite(#[from] rusqlite::Error),
    /// The SQLite connection stayed busy (with other statements) for this long.
    #[error("the SQLite connection stayed busy for {0:?}")]
    SqliteBusy(Duration),
    /// The blocking task running a SQLite statement failed (it panicked).
    #[error("the SQLite statement did not complete")]
    SqliteTask(#[source] tokio::task::JoinError),
}

impl DbError {
    /// Whether the database is unavailable (503) rather than a statement failing (500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Pool(_) | DbError::Timeout(_) | DbError::SqliteBusy(_) => true,
            DbError::Query(q) => postgres::is_unavailable(q),
            DbError::Sqlite(s) => sqlite::is_unavailable(s),
            DbError::SqliteTask(_) => false,
        }
    }
}

/// Why a store could not be opened at start-up.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The settings cannot work (a SQLite file that cannot be used, say); names the variable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The PostgreSQL pool could not be built.
    #[error("cannot build the PostgreSQL pool")]
    Pool(#[source] deadpool_postgres::BuildError),
}

/// What the spans of one database client say about it, as Datadog's integration for it does.
#[derive(Debug, Clone)]
pub(crate) struct DbTags {
    /// The Datadog operation name (`postgres.query`, `sqlite.query`).
    pub operation: &'static str,
    /// The service of its spans (`postgres`, `sqlite`), as Datadog's tracers name it.
    pub service: &'static str,
    /// `component`: the client library.
    pub component: &'static str,
    /// `db.system` (`postgresql`, `sqlite`).
    pub system: &'static str,
    /// `db.name`, where the database has one.
    pub name: Option<String>,
    /// `db.user`, where there is one.
    pub user: Option<String>,
    /// `out.host`, for a database reached over the network.
    pub host: Option<String>,
    /// `network.destination.port`, likewise.
    pub port: Option<u16>,
}

/// Operation name of the start-up trace: the database bootstrap (the schema statements) of one
/// start of notes, as one trace of its own rather than one trace per statement.
pub const STARTUP_OPERATION: &str = "notes.startup";
/// Resource of the start-up trace.
pub const STARTUP_RESOURCE: &str = "bootstrap database";

/// The root span of the database bootstrap (`notes.startup` / `bootstrap database`, service
/// `notes`): a trace of its own (no parent, whatever span is current: a request that finds the
/// table missing waits for it but does not carry it), with the schema statements as its
/// children. One per start when the database answers; a failed attempt records its error and
/// the next attempt makes another.
pub(crate) fn startup_span() -> tracing::Span {
    tracing::info_span!(
        parent: None,
        "notes.startup",
        otel.name = STARTUP_RESOURCE,
        otel.status_code = Empty,
        operation.name = STARTUP_OPERATION,
        error.type = Empty,
        error.message = Empty,
    )
}

/// The span of one statement: resource = the SQL text, type `sql`, the client's tags, and
/// `db.row_count` / `error.*` left to record when it ends (the errors with
/// [`datadog_otel_tracing::spans::record_error`]).
pub(crate) fn query_span(tags: &DbTags, sql: &'static str) -> tracing::Span {
    tracing::info_span!(
        "db.query",
        otel.name = sql,
        otel.kind = "client",
        otel.status_code = Empty,
        operation.name = tags.operation,
        service.name = tags.service,
        span.type = "sql",
        component = tags.component,
        db.system = tags.system,
        db.name = tags.name.as_deref(),
        db.user = tags.user.as_deref(),
        out.host = tags.host.as_deref(),
        // Numbers as i64: they become Datadog metrics (tracing-opentelemetry writes u64 as text).
        network.destination.port = tags.port.map(i64::from),
        db.row_count = Empty,
        error.type = Empty,
        error.message = Empty,
    )
}
