//! The two stores notes can run on, for tests that run against both: a fresh PostgreSQL
//! database (see [`crate::postgres`]) or a fresh SQLite file.
//!
//! The SQLite files live in one private temp dir per test process (`apm-tutorial-sqlite-PID-…`),
//! which the next test run's sweep removes once this process is gone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Where a notes server under test keeps its notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A fresh database on the private PostgreSQL server.
    Postgres,
    /// A fresh SQLite file.
    Sqlite,
}

impl Store {
    /// A fresh, empty database of this kind; returns the `DATABASE_URL` that names it.
    pub async fn fresh(self) -> String {
        match self {
            Store::Postgres => crate::fresh_database().await,
            Store::Sqlite => sqlite_url(&fresh_sqlite_path()),
        }
    }
}

/// A path for a new SQLite file (not created: notes creates it).
pub fn fresh_sqlite_path() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = DIR.get_or_init(|| crate::process::private_temp_dir("apm-tutorial-sqlite"));
    dir.join(format!(
        "notes-{}.db",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// `sqlite:/abs/path`
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

/// The file named by a `sqlite:` URL, if it is one.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite:").map(PathBuf::from)
}

/// Opens a SQLite file the way a second process would (it waits up to 5 s for locks).
pub fn open_sqlite(path: &Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    connection
        .busy_timeout(Duration::from_secs(5))
        .expect("busy_timeout");
    connection
}

/// The rows of a SQLite file's notes table, ordered by id.
pub fn sqlite_rows(path: &Path) -> Vec<(i32, String)> {
    let connection = open_sqlite(path);
    let mut statement = connection
        .prepare("SELECT id, description FROM notes ORDER BY id")
        .expect("reading the notes table");
    statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("reading the notes table")
        .collect::<Result<_, _>>()
        .expect("reading the notes table")
}
