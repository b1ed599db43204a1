//! The `notes` table in PostgreSQL, through a deadpool-postgres pool.
//!
//! Every statement runs in autocommit mode with bind parameters, so a failed statement never
//! leaves a connection inside a broken transaction (the Python original's shared connection
//! stayed in an aborted transaction after `?id=abc`). Each statement gets a `postgres.query`
//! span shaped like Datadog's: resource = the SQL text, type `sql`, `db.*` tags, row count.

use super::{query_span, startup_span, DbError, DbTags, Note, OpenError};
use crate::config::PostgresSettings;
use datadog_otel_tracing::spans::record_error;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};
use tracing::Instrument;
use tutorial_common::config::ConfigError;

const SQL_SCHEMA_LOCK: &str = "SELECT pg_advisory_xact_lock(7202210)";
const SQL_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS notes (id SERIAL PRIMARY KEY, description VARCHAR(255) NOT NULL)";
const SQL_LIST: &str = "SELECT id, description FROM notes ORDER BY id";
const SQL_GET: &str = "SELECT id, description FROM notes WHERE id = $1";
const SQL_INSERT: &str = "INSERT INTO notes(description) VALUES ($1) RETURNING id";
const SQL_UPDATE: &str = "UPDATE notes SET description = $1 WHERE id = $2";
const SQL_DELETE: &str = "DELETE FROM notes WHERE id = $1";
const SQL_PING: &str = "SELECT 1";

/// The pool and the schema state.
#[derive(Clone)]
pub struct Postgres {
    /// Connections, opened on demand, checked before reuse.
    pool: Pool,
    /// Tags for the query spans.
    tags: Arc<DbTags>,
    /// Set once the table is known to exist (created idempotently on first use). Creation is
    /// serialised inside this process by the cell, across replicas by an advisory lock; a
    /// failed attempt leaves it unset, and the next caller tries again.
    schema: Arc<OnceCell<()>>,
    /// Bound on one statement as seen from here: PostgreSQL's `statement_timeout` cannot fire
    /// when the server or the network hangs.
    query_timeout: Duration,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("tags", &self.tags)
            .finish()
    }
}

/// A PostgreSQL error in one line: severity, SQLSTATE and message, or the cause chain.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => tutorial_common::error::error_chain(e),
    }
}

/// ` (SQLSTATE 42P01)` when PostgreSQL itself refused the statement, for [`DbError`]'s message.
pub(crate) fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|code| format!(" (SQLSTATE {})", code.code()))
        .unwrap_or_default()
}

/// Whether an error means the database is unavailable (503) rather than a failed statement.
pub(crate) fn is_unavailable(q: &tokio_postgres::Error) -> bool {
    match q.code() {
        // No SQLSTATE: the connection broke (closed, I/O), or a row did not convert.
        None => q.is_closed() || is_io(q),
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                    SqlState::QUERY_CANCELED,
                ]
                .contains(code)
        }
    }
}

fn is_io(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

impl Postgres {
    /// Builds the pool without connecting: the service starts even while PostgreSQL is not up.
    pub fn new(settings: &PostgresSettings) -> Result<Self, OpenError> {
        let mut config = match &settings.url {
            Some(url) => url
                .parse::<tokio_postgres::Config>()
                .map_err(|e| ConfigError::with_source("DATABASE_URL", "not a PostgreSQL URL", e))?,
            None => {
                let mut c = tokio_postgres::Config::new();
                c.host(&settings.host)
                    .port(settings.port)
                    .dbname(&settings.name)
                    .user(&settings.user)
                    .password(settings.password.as_bytes());
                c
            }
        };
        config
            .connect_timeout(settings.pool_timeout)
            // A connection whose peer vanished (no RST) is noticed by the kernel, not in 15 min.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(settings.statement_timeout + Duration::from_secs(1))
            .application_name("notes")
            .options(format!(
                "-c statement_timeout={}",
                settings.statement_timeout.as_millis()
            ));
        let tags = DbTags {
            operation: "postgres.query",
            service: "postgres",
            component: "tokio-postgres",
            system: "postgresql",
            name: Some(
                config
                    .get_dbname()
                    .or(config.get_user())
                    .unwrap_or("postgres")
                    .to_string(),
            ),
            user: Some(config.get_user().unwrap_or("postgres").to_string()),
            host: Some(
                config
                    .get_hosts()
                    .first()
                    .map(|h| match h {
                        tokio_postgres::config::Host::Tcp(host) => host.clone(),
                        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                    })
                    .unwrap_or_else(|| "localhost".into()),
            ),
            port: Some(config.get_ports().first().copied().unwrap_or(5432)),
        };
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .wait_timeout(Some(settings.pool_timeout))
            .create_timeout(Some(settings.pool_timeout))
            .recycle_timeout(Some(settings.pool_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(OpenError::Pool)?;
        Ok(Self {
            pool,
            tags: Arc::new(tags),
            schema: Arc::new(OnceCell::new()),
            query_timeout: settings.statement_timeout + Duration::from_millis(500),
        })
    }

    /// Tries to create the table in the background until it succeeds, so that the first
    /// request does not pay for it; requests also ensure it themselves.
    pub fn prepare_in_background(&self) {
        let db = self.clone();
        tokio::spawn(async move {
            let mut logged = false;
            loop {
                match db.connection().await {
                    Ok(_) => {
                        tracing::info!("database ready");
                        return;
                    }
                    Err(e) => {
                        if !logged {
                            tracing::warn!(error = %e, "database not ready yet; retrying every second");
                            logged = true;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    /// `PostgreSQL host:port/db`, for the start-up log line.
    pub fn location(&self) -> String {
        format!(
            "PostgreSQL at {}:{}/{}",
            self.tags.host.as_deref().unwrap_or("localhost"),
            self.tags.port.unwrap_or(5432),
            self.tags.name.as_deref().unwrap_or("postgres")
        )
    }

    /// Runs `work` on a pooled connection within the query timeout, and gives the connection
    /// back with the result. A connection with no answer in time is dropped, not returned to
    /// the pool (its state is unknown), so that a hung server or network never keeps a request
    /// waiting longer.
    async fn bounded<T>(
        &self,
        mut client: Object,
        work: impl AsyncFnOnce(&mut Object) -> Result<T, DbError>,
    ) -> Result<(Object, T), DbError> {
        let answered = tokio::time::timeout(self.query_timeout, work(&mut client)).await;
        match answered {
            Ok(result) => result.map(|value| (client, value)),
            Err(_) => {
                drop(Object::take(client));
                Err(DbError::Timeout(self.query_timeout))
            }
        }
    }

    /// Runs one traced statement on a pooled connection and records its row count (or its
    /// error).
    async fn run<T>(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        rows_of: impl FnOnce(&T) -> u64,
        exec: impl AsyncFnOnce(
            &Object,
            &tokio_postgres::Statement,
            &[&(dyn tokio_postgres::types::ToSql + Sync)],
        ) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, DbError> {
        let client = self.connection().await?;
        let span = query_span(&self.tags, sql);
        let result = self
            .bounded(client, async |client| {
                let statement = client.prepare_cached(sql).await?;
                Ok(exec(client, &statement, params).await?)
            })
            .instrument(span.clone())
            .await;
        match result {
            Ok((_, value)) => {
                span.record(
                    "db.row_count",
                    i64::try_from(rows_of(&value)).unwrap_or(i64::MAX),
                );
                Ok(value)
            }
            Err(e) => {
                record_query_error(&span, &e);
                Err(e)
            }
        }
    }

    /// A pooled connection, with the table known to exist. Waiting for the schema happens
    /// before taking a connection, so waiters do not hold the pool.
    async fn connection(&self) -> Result<Object, DbError> {
        let mut creator = None;
        let slot = &mut creator;
        self.schema
            .get_or_try_init(|| async move {
                let client = self.pool.get().await?;
                let (client, ()) = self
                    .bounded(client, async |client| self.create_schema(client).await)
                    .await?;
                *slot = Some(client);
                Ok::<(), DbError>(())
            })
            .await?;
        match creator {
            // The connection that just created the table serves this call too.
            Some(client) => Ok(client),
            None => Ok(self.pool.get().await?),
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` under an advisory lock, so replicas starting together do
    /// not race on the catalog.
    /// Traced as one start-up trace (`notes.startup`, [`startup_span`]), the statements below it.
    async fn create_schema(&self, client: &mut Object) -> Result<(), DbError> {
        let root = startup_span();
        let result = async {
            let tx = client.transaction().await?;
            for sql in [SQL_SCHEMA_LOCK, SQL_SCHEMA] {
                let span = query_span(&self.tags, sql);
                let result = tx.batch_execute(sql).instrument(span.clone()).await;
                if let Err(e) = &result {
                    record_error(&span, &error_type(e), &describe(e));
                }
                result?;
            }
            tx.commit().await?;
            Ok::<(), DbError>(())
        }
        .instrument(root.clone())
        .await;
        if let Err(e) = &result {
            record_query_error(&root, e);
        }
        result
    }

    /// All notes, ordered by id.
    pub async fn list(&self) -> Result<Vec<Note>, DbError> {
        let rows: Vec<Row> = self
            .run(
                SQL_LIST,
                &[],
                |r: &Vec<Row>| r.len() as u64,
                async |c, s, p| c.query(s, p).await,
            )
            .await?;
        rows.iter().map(note).collect()
    }

    /// One note.
    pub async fn get(&self, id: i32) -> Result<Option<Note>, DbError> {
        let row: Option<Row> = self
            .run(
                SQL_GET,
                &[&id],
                |r: &Option<Row>| u64::from(r.is_some()),
                async |c, s, p| c.query_opt(s, p).await,
            )
            .await?;
        row.as_ref().map(note).transpose()
    }

    /// Stores a note and returns it with its id.
    pub async fn create(&self, description: &str) -> Result<Note, DbError> {
        let row: Row = self
            .run(
                SQL_INSERT,
                &[&description],
                |_| 1,
                async |c, s, p| c.query_one(s, p).await,
            )
            .await?;
        Ok(Note {
            id: row.try_get(0)?,
            description: description.to_string(),
        })
    }

    /// Replaces a description; `None` when there is no such note.
    pub async fn update(&self, id: i32, description: &str) -> Result<Option<Note>, DbError> {
        let count: u64 = self
            .run(
                SQL_UPDATE,
                &[&description, &id],
                |n: &u64| *n,
                async |c, s, p| c.execute(s, p).await,
            )
            .await?;
        Ok((count > 0).then(|| Note {
            id,
            description: description.to_string(),
        }))
    }

    /// Deletes a note; false when there was none.
    pub async fn delete(&self, id: i32) -> Result<bool, DbError> {
        let count: u64 = self
            .run(
                SQL_DELETE,
                &[&id],
                |n: &u64| *n,
                async |c, s, p| c.execute(s, p).await,
            )
            .await?;
        Ok(count > 0)
    }

    /// Whether the database answers (and holds the table).
    pub async fn ping(&self) -> Result<(), DbError> {
        let client = self.connection().await?;
        self.bounded(client, async |client| {
            Ok(client.simple_query(SQL_PING).await.map(drop)?)
        })
        .await
        .map(drop)
    }
}

/// `error.type` and `error.message` of a failed statement's span.
fn record_query_error(span: &tracing::Span, e: &DbError) {
    match e {
        DbError::Query(q) => record_error(span, &error_type(q), &describe(q)),
        DbError::Timeout(_) => record_error(span, "notes::db::Timeout", &e.to_string()),
        other => record_error(span, "notes::db::Error", &other.to_string()),
    }
}

/// `error.type` of a failed statement: the SQLSTATE, or the kind of client error.
fn error_type(e: &tokio_postgres::Error) -> String {
    match e.code() {
        Some(code) => format!("tokio_postgres::error::DbError({})", code.code()),
        None if e.is_closed() => "tokio_postgres::Error(closed)".into(),
        None => "tokio_postgres::Error".into(),
    }
}

fn note(row: &Row) -> Result<Note, DbError> {
    Ok(Note {
        id: row.try_get(0)?,
        description: row.try_get(1)?,
    })
}
