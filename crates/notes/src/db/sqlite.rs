//! The `notes` table in an embedded SQLite database (rusqlite, with SQLite compiled in).
//!
//! One connection, behind an async mutex: waiting for it never blocks a thread, and each
//! statement runs on tokio's blocking pool (`spawn_blocking`), never on an async worker. SQLite
//! runs one writer at a time anyway, and these statements take microseconds.
//!
//! The schema is the Python original's SQLite table (`INTEGER PRIMARY KEY AUTOINCREMENT`: ids
//! from 1, never reused after a delete, as PostgreSQL's `SERIAL`), plus the 255-character rule
//! of PostgreSQL's `VARCHAR(255)`. A file is opened and checked at start-up: a path that cannot
//! be opened, a file that is not a database, or one locked by another process stops start-up
//! with an error naming `DATABASE_URL`. A failure later (the file locked or failing) is a 503.
//!
//! Each statement gets a `sqlite.query` span as Datadog's tracers make it: service `sqlite`,
//! type `sql`, `db.system=sqlite`, resource = the SQL text, `db.row_count`, and `error.type` /
//! `error.message` when it fails.

use super::{query_span, startup_span, DbError, DbTags, Note};
use crate::config::SqliteSettings;
use datadog_otel_tracing::spans::record_error;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tracing::Instrument;
use tutorial_common::config::ConfigError;

const SQL_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY AUTOINCREMENT, description TEXT NOT NULL CHECK (length(description) <= 255))";
const SQL_LIST: &str = "SELECT id, description FROM notes ORDER BY id";
const SQL_GET: &str = "SELECT id, description FROM notes WHERE id = ?";
const SQL_INSERT: &str = "INSERT INTO notes(description) VALUES (?) RETURNING id";
const SQL_UPDATE: &str = "UPDATE notes SET description = ? WHERE id = ?";
const SQL_DELETE: &str = "DELETE FROM notes WHERE id = ?";
const SQL_PING: &str = "SELECT 1 FROM notes LIMIT 1";

/// The tags of every SQLite span (Datadog's sqlite integration has no host, user or name).
fn tags() -> DbTags {
    DbTags {
        operation: "sqlite.query",
        service: "sqlite",
        component: "rusqlite",
        system: "sqlite",
        name: None,
        user: None,
        host: None,
        port: None,
    }
}

/// The SQLite store.
#[derive(Clone)]
pub struct Sqlite {
    /// The one connection; statements take turns.
    connection: Arc<Mutex<Connection>>,
    /// Tags for the query spans.
    tags: Arc<DbTags>,
    /// How long a statement may wait for the connection (and SQLite for a lock); then 503.
    busy_timeout: Duration,
    /// Where the database is, for the start-up log line.
    location: String,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite")
            .field("location", &self.location)
            .finish()
    }
}

impl Sqlite {
    /// Opens (or creates) the database and its table, off the async workers. A file that
    /// cannot be used is a configuration error naming `DATABASE_URL`.
    pub async fn open(settings: &SqliteSettings) -> Result<Self, ConfigError> {
        let path = settings.path.clone();
        let busy_timeout = settings.busy_timeout;
        let location = match &path {
            None => "SQLite in memory: notes are lost at exit".to_string(),
            Some(p) => format!("SQLite file {}", absolute(p).display()),
        };
        let tags = Arc::new(tags());
        let span_tags = tags.clone();
        let opened = tokio::task::spawn_blocking(move || {
            open_connection(path.as_deref(), busy_timeout, &span_tags)
        })
        .await;
        let connection = match opened {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => {
                let message = match open_failure(&e) {
                    Some(reason) => format!("cannot use {location}: {reason}"),
                    None => format!("cannot use {location}"),
                };
                return Err(ConfigError::with_source("DATABASE_URL", message, e));
            }
            Err(e) => {
                return Err(ConfigError::with_source(
                    "DATABASE_URL",
                    format!("cannot open {location}"),
                    e,
                ))
            }
        };
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            tags,
            busy_timeout,
            location,
        })
    }

    /// `SQLite in memory: …` or `SQLite file /abs/path`, for the start-up log line.
    pub fn location(&self) -> String {
        self.location.clone()
    }

    /// The connection, once the statements before have finished (at most the busy timeout).
    async fn lock(&self) -> Result<OwnedMutexGuard<Connection>, DbError> {
        tokio::time::timeout(self.busy_timeout, self.connection.clone().lock_owned())
            .await
            .map_err(|_| DbError::SqliteBusy(self.busy_timeout))
    }

    /// Runs one traced statement on the connection, on the blocking pool, and records its row
    /// count (or its error).
    async fn run<T: Send + 'static>(
        &self,
        sql: &'static str,
        rows_of: fn(&T) -> u64,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DbError> {
        let connection = self.lock().await?;
        let span = query_span(&self.tags, sql);
        let result = tokio::task::spawn_blocking(move || work(&connection))
            .instrument(span.clone())
            .await;
        match result {
            Ok(Ok(value)) => {
                span.record(
                    "db.row_count",
                    i64::try_from(rows_of(&value)).unwrap_or(i64::MAX),
                );
                Ok(value)
            }
            Ok(Err(e)) => {
                record_error(&span, &error_type(&e), &describe(&e));
                Err(DbError::Sqlite(e))
            }
            Err(e) => {
                record_error(&span, "tokio::task::JoinError", &e.to_string());
                Err(DbError::SqliteTask(e))
            }
        }
    }

    /// All notes, ordered by id.
    pub async fn list(&self) -> Result<Vec<Note>, DbError> {
        self.run(
            SQL_LIST,
            |notes: &Vec<Note>| notes.len() as u64,
            |c| {
                c.prepare_cached(SQL_LIST)?
                    .query_map([], note)?
                    .collect::<rusqlite::Result<Vec<Note>>>()
            },
        )
        .await
    }

    /// One note.
    pub async fn get(&self, id: i32) -> Result<Option<Note>, DbError> {
        self.run(
            SQL_GET,
            |note: &Option<Note>| u64::from(note.is_some()),
            move |c| {
                let mut statement = c.prepare_cached(SQL_GET)?;
                let mut rows = statement.query([id])?;
                rows.next()?.map(note).transpose()
            },
        )
        .await
    }

    /// Stores a note and returns it with its id.
    pub async fn create(&self, description: &str) -> Result<Note, DbError> {
        let description = description.to_string();
        self.run(
            SQL_INSERT,
            |_| 1,
            move |c| {
                let id = c
                    .prepare_cached(SQL_INSERT)?
                    .query_row([&description], |row| row.get(0))?;
                Ok(Note { id, description })
            },
        )
        .await
    }

    /// Replaces a description; `None` when there is no such note.
    pub async fn update(&self, id: i32, description: &str) -> Result<Option<Note>, DbError> {
        let description = description.to_string();
        self.run(
            SQL_UPDATE,
            |note: &Option<Note>| u64::from(note.is_some()),
            move |c| {
                let changed = c
                    .prepare_cached(SQL_UPDATE)?
                    .execute(rusqlite::params![description, id])?;
                Ok((changed > 0).then_some(Note { id, description }))
            },
        )
        .await
    }

    /// Deletes a note; false when there was none.
    pub async fn delete(&self, id: i32) -> Result<bool, DbError> {
        self.run(
            SQL_DELETE,
            |deleted: &bool| u64::from(*deleted),
            move |c| Ok(c.prepare_cached(SQL_DELETE)?.execute([id])? > 0),
        )
        .await
    }

    /// Whether the database answers and holds the table (untraced, like PostgreSQL's ping).
    pub async fn ping(&self) -> Result<(), DbError> {
        let connection = self.lock().await?;
        tokio::task::spawn_blocking(move || {
            connection
                .prepare_cached(SQL_PING)?
                .query([])?
                .next()
                .map(drop)
        })
        .await
        .map_err(DbError::SqliteTask)?
        .map_err(DbError::Sqlite)
    }
}

/// Opens the connection, sets it up and creates the table (traced like any statement). In a
/// write transaction, so that a file locked by another process is found now, not at the
/// first request.
fn open_connection(
    path: Option<&Path>,
    busy_timeout: Duration,
    tags: &DbTags,
) -> rusqlite::Result<Connection> {
    let connection = match path {
        None => Connection::open_in_memory()?,
        // Without SQLITE_OPEN_URI: the path is a path, never a `file:` URI.
        Some(path) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?,
    };
    connection.busy_timeout(busy_timeout)?;
    if path.is_some() {
        if connection.is_readonly(rusqlite::MAIN_DB)? {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                Some("the file is read-only".into()),
            ));
        }
        // Readers never wait for the writer; every commit is synced before the 2xx.
        // (Where WAL is not possible SQLite keeps its rollback journal, which works too.)
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        connection.pragma_update(None, "synchronous", "FULL")?;
    }
    // One start-up trace (`notes.startup`), the statement below it.
    let root = startup_span();
    let created = root.in_scope(|| {
        let span = query_span(tags, SQL_SCHEMA);
        let _entered = span.enter();
        let created = connection.execute_batch(&format!("BEGIN IMMEDIATE; {SQL_SCHEMA}; COMMIT;"));
        if let Err(e) = &created {
            record_error(&span, &error_type(e), &describe(e));
        }
        created
    });
    if let Err(e) = &created {
        record_error(&root, &error_type(e), &describe(e));
    }
    created?;
    Ok(connection)
}

/// What went wrong with a file at start-up, in words, for the failures a user can fix (the
/// error itself follows as the source).
fn open_failure(e: &rusqlite::Error) -> Option<String> {
    let reason = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "it is locked by another process"
        }
        Some(ErrorCode::CannotOpen) => {
            "it cannot be opened (a missing directory, a directory, or no permission)"
        }
        Some(ErrorCode::NotADatabase) => "it is not a SQLite database",
        Some(ErrorCode::ReadOnly) => "it is read-only",
        _ => return None,
    };
    Some(match e {
        rusqlite::Error::SqliteFailure(code, _) => {
            format!("{reason} (SQLite error {})", code.extended_code)
        }
        _ => reason.to_string(),
    })
}

/// Whether an error means the database is unavailable (503) rather than a failed statement:
/// locked by another process, or the file failing.
pub(crate) fn is_unavailable(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::NotADatabase
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::FileLockingProtocolFailed
                | ErrorCode::OutOfMemory
        )
    )
}

/// A SQLite error in one line: its message and, for SQLite's own errors, the code.
pub(crate) fn describe(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(code, Some(message)) => {
            format!("{message} (SQLite error {})", code.extended_code)
        }
        other => other.to_string(),
    }
}

/// `error.type` of a failed statement: the SQLite error class, e.g.
/// `rusqlite::ErrorCode::ConstraintViolation`.
fn error_type(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(code) => format!("rusqlite::ErrorCode::{code:?}"),
        None => "rusqlite::Error".into(),
    }
}

/// The absolute form of a path, for logs (the path as given when that fails).
fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn note(row: &rusqlite::Row<'_>) -> rusqlite::Result<Note> {
    Ok(Note {
        id: row.get(0)?,
        description: row.get(1)?,
    })
}
