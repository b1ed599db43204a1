//! Settings of the notes service, read from the environment with the tutorial's defaults.

use datadog_otel_tracing::Config as TracingConfig;
use std::path::PathBuf;
use std::time::Duration;
use tutorial_common::config::{ConfigError, Env};
use tutorial_common::server::{ServerSettings, ServiceSettings};

/// Everything the notes service needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST`, `PORT` (default 8080), workers, shutdown timeout and request limits.
    pub server: ServerSettings,
    /// Where the notes are stored: PostgreSQL or SQLite.
    pub database: StoreSettings,
    /// `CALENDAR_URL`, else `http://$CALENDAR_HOST:$CALENDAR_PORT` (localhost, 9090).
    pub calendar_url: String,
    /// `CALENDAR_TIMEOUT_MS` (default 2000): the whole calendar call, connection included.
    pub calendar_timeout: Duration,
    /// `NOTES_HELPER_DELAY_SCALE` (default 1.0; 0 disables): scales the helper sleeps.
    pub helper_delay_scale: f64,
    /// Logs and traces.
    pub telemetry: TracingConfig,
}

/// Which store holds the notes.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// PostgreSQL: `DATABASE_URL=postgres://…`, or any of `DB_HOST`, `DB_PORT`, `DB_NAME`,
    /// `DB_USER`, `DB_PASSWORD` set.
    Postgres(PostgresSettings),
    /// SQLite: `DATABASE_URL=sqlite:…`, or no database configured at all (in memory).
    Sqlite(SqliteSettings),
}

/// An embedded SQLite database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteSettings {
    /// The file (created when missing); `None`: in memory, lost at exit.
    pub path: Option<PathBuf>,
    /// `DB_POOL_TIMEOUT_MS` (default 2000): how long a statement may wait for the database
    /// (locked by another process, or busy with other statements); then 503.
    pub busy_timeout: Duration,
}

/// The `DB_*` variables that point at a PostgreSQL server: any of them selects PostgreSQL.
const POSTGRES_VARIABLES: [&str; 5] = ["DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD"];

/// How to reach PostgreSQL. Its `Debug` never shows the password (nor one inside `url`).
#[derive(Clone)]
pub struct PostgresSettings {
    /// `DATABASE_URL` (overrides the fields below when set).
    pub url: Option<String>,
    /// `DB_HOST` (default `localhost`).
    pub host: String,
    /// `DB_PORT` (default 5432).
    pub port: u16,
    /// `DB_NAME` (default `testdb`).
    pub name: String,
    /// `DB_USER` (default `postgres`).
    pub user: String,
    /// `DB_PASSWORD` (default `password`).
    pub password: String,
    /// `DB_POOL_SIZE` (default 16): connections at most.
    pub pool_size: usize,
    /// `DB_POOL_TIMEOUT_MS` (default 2000): wait for a connection, and to open one, at most.
    pub pool_timeout: Duration,
    /// `DB_STATEMENT_TIMEOUT_MS` (default 5000): PostgreSQL cancels a statement running longer.
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &self.url.as_deref().map(without_password))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("name", &self.name)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("pool_timeout", &self.pool_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// A connection string with its password replaced: `postgres://u:<redacted>@h/db`, and
/// libpq's `password=<redacted>`.
fn without_password(url: &str) -> String {
    if let Some(scheme_end) = url.find("://").map(|i| i + 3) {
        let authority_end = url[scheme_end..]
            .find(['/', '?'])
            .map_or(url.len(), |i| scheme_end + i);
        if let Some(at) = url[scheme_end..authority_end].rfind('@') {
            let userinfo = &url[scheme_end..scheme_end + at];
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!(
                    "{}{user}:<redacted>{}",
                    &url[..scheme_end],
                    &url[scheme_end + at..]
                );
            }
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                "password=<redacted>".to_string()
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Settings {
    /// Reads and checks every setting; the error names the variable at fault.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let calendar_url = match env.url("CALENDAR_URL")? {
            Some(url) => url,
            None => format!(
                "http://{}:{}",
                env.host("CALENDAR_HOST", "localhost")?,
                env.port("CALENDAR_PORT", 9090)?
            ),
        };
        let pool_size = env.positive("DB_POOL_SIZE", 16)?;
        let pool_timeout = env.millis("DB_POOL_TIMEOUT_MS", 2000)?;
        let postgres = PostgresSettings {
            url: None,
            host: env.host("DB_HOST", "localhost")?,
            port: env.port("DB_PORT", 5432)?,
            name: env.string("DB_NAME", "testdb"),
            user: env.string("DB_USER", "postgres"),
            password: env.string("DB_PASSWORD", "password"),
            pool_size,
            pool_timeout,
            statement_timeout: env.millis("DB_STATEMENT_TIMEOUT_MS", 5000)?,
        };
        let sqlite = |path| {
            StoreSettings::Sqlite(SqliteSettings {
                path,
                busy_timeout: pool_timeout,
            })
        };
        let database = match env.get("DATABASE_URL") {
            Some(url) => match parse_database_url(url)? {
                DatabaseUrl::Postgres => StoreSettings::Postgres(PostgresSettings {
                    url: Some(url.to_string()),
                    ..postgres
                }),
                DatabaseUrl::Sqlite(path) => sqlite(path),
            },
            None if POSTGRES_VARIABLES.iter().any(|v| env.get(v).is_some()) => {
                StoreSettings::Postgres(postgres)
            }
            None => sqlite(None),
        };
        Ok(Self {
            server: ServerSettings::from_env(env, 8080)?,
            database,
            calendar_url,
            calendar_timeout: env.millis("CALENDAR_TIMEOUT_MS", 2000)?,
            helper_delay_scale: env.factor("NOTES_HELPER_DELAY_SCALE", 1.0)?,
            telemetry: TracingConfig::from_env(env, "notes")?,
        })
    }
}

/// What a `DATABASE_URL` names.
#[derive(Debug, PartialEq, Eq)]
enum DatabaseUrl {
    /// A PostgreSQL URL or `key=value` connection string (parsed by tokio-postgres).
    Postgres,
    /// `sqlite::memory:` (`None`), or `sqlite:PATH` / `sqlite://PATH` (`sqlite:///abs/path`).
    Sqlite(Option<PathBuf>),
}

/// Sorts a `DATABASE_URL` by its scheme and checks it; the error names the variable.
fn parse_database_url(url: &str) -> Result<DatabaseUrl, ConfigError> {
    let bad = |message: String| ConfigError::new("DATABASE_URL", message);
    let scheme = url.split_once(':').map(|(scheme, _)| scheme).filter(|s| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    match scheme.map(str::to_ascii_lowercase).as_deref() {
        Some("sqlite") => {
            let rest = &url["sqlite:".len()..];
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(bad(format!(
                    "{url:?} names no file (sqlite:notes.db, sqlite:///abs/path or sqlite::memory:)"
                )));
            }
            if path.contains('?') {
                return Err(bad(format!(
                    "{url:?}: SQLite URL parameters are not supported; give the file path only"
                )));
            }
            Ok(DatabaseUrl::Sqlite(
                (path != ":memory:").then(|| PathBuf::from(path)),
            ))
        }
        Some("postgres" | "postgresql") | None => match url.parse::<tokio_postgres::Config>() {
            Ok(_) => Ok(DatabaseUrl::Postgres),
            Err(e) if scheme.is_some() => Err(ConfigError::with_source(
                "DATABASE_URL",
                "not a PostgreSQL URL",
                e,
            )),
            Err(_) => Err(bad(format!(
                "{url:?} is neither a URL (postgres://… or sqlite:…) nor a PostgreSQL connection string"
            ))),
        },
        Some(other) => Err(bad(format!(
            "unknown scheme {other:?}: use postgres://user:password@host:port/db or sqlite:path/to/notes.db"
        ))),
    }
}

impl ServiceSettings for Settings {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Settings::from_env(env)
    }
    fn server(&self) -> &ServerSettings {
        &self.server
    }
    fn telemetry(&self) -> &TracingConfig {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        for (key, value) in [
            ("DB_PASSWORD", "hunter2"),
            ("DATABASE_URL", "postgres://app:hunter2@db:5432/notes"),
            (
                "DATABASE_URL",
                "host=db user=app password=hunter2 dbname=notes",
            ),
        ] {
            let s = Settings::from_env(&Env::from_pairs([(key, value)])).unwrap();
            let shown = format!("{s:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }

    #[test]
    fn defaults_are_the_tutorials() {
        let s = Settings::from_env(&Env::default()).unwrap();
        assert_eq!((s.server.host.as_str(), s.server.port), ("0.0.0.0", 8080));
        let StoreSettings::Sqlite(lite) = &s.database else {
            panic!(
                "no database configured: SQLite in memory, got {:?}",
                s.database
            )
        };
        assert_eq!(lite.path, None);
        assert_eq!(lite.busy_timeout, Duration::from_millis(2000));
        let s = Settings::from_env(&Env::from_pairs([("DB_HOST", "db")])).unwrap();
        let StoreSettings::Postgres(pg) = &s.database else {
            panic!("DB_HOST selects PostgreSQL, got {:?}", s.database)
        };
        assert_eq!(pg.url, None);
        assert_eq!(pg.host, "db");
        assert_eq!(pg.port, 5432);
        assert_eq!(pg.name, "testdb");
        assert_eq!(pg.user, "postgres");
        assert_eq!(pg.password, "password");
        assert_eq!(s.calendar_url, "http://localhost:9090");
        assert_eq!(s.calendar_timeout, Duration::from_millis(2000));
        assert_eq!(s.helper_delay_scale, 1.0);
        assert_eq!(s.telemetry.service(), "notes");
    }

    #[test]
    fn calendar_host_and_port_or_url() {
        let env = Env::from_pairs([("CALENDAR_HOST", "calendar"), ("CALENDAR_PORT", "9999")]);
        assert_eq!(
            Settings::from_env(&env).unwrap().calendar_url,
            "http://calendar:9999"
        );
        let env = env.with("CALENDAR_URL", "http://10.0.0.1:1/");
        assert_eq!(
            Settings::from_env(&env).unwrap().calendar_url,
            "http://10.0.0.1:1"
        );
    }

    fn store(pairs: &[(&str, &str)]) -> StoreSettings {
        Settings::from_env(&Env::from_pairs(pairs.iter().copied()))
            .unwrap()
            .database
    }

    #[test]
    fn the_store_follows_database_url_or_the_db_variables() {
        for var in POSTGRES_VARIABLES {
            assert!(
                matches!(store(&[(var, "5433")]), StoreSettings::Postgres(_)),
                "{var}"
            );
        }
        for url in [
            "postgres://u:p@h:1/d",
            "postgresql://h/d",
            "host=h user=u dbname=d",
        ] {
            match store(&[("DATABASE_URL", url), ("DB_HOST", "other")]) {
                StoreSettings::Postgres(pg) => assert_eq!(pg.url.as_deref(), Some(url)),
                other => panic!("{url}: {other:?}"),
            }
        }
        for (url, path) in [
            ("sqlite:notes.db", Some("notes.db")),
            ("sqlite://notes.db", Some("notes.db")),
            ("sqlite:///var/lib/notes.db", Some("/var/lib/notes.db")),
            ("SQLITE:/tmp/n.db", Some("/tmp/n.db")),
            ("sqlite::memory:", None),
            ("sqlite://:memory:", None),
        ] {
            // DATABASE_URL wins over the DB_* variables.
            match store(&[("DATABASE_URL", url), ("DB_HOST", "db")]) {
                StoreSettings::Sqlite(lite) => {
                    assert_eq!(lite.path, path.map(PathBuf::from), "{url}")
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        match store(&[
            ("DATABASE_URL", "sqlite:n.db"),
            ("DB_POOL_TIMEOUT_MS", "300"),
        ]) {
            StoreSettings::Sqlite(lite) => {
                assert_eq!(lite.busy_timeout, Duration::from_millis(300))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_database_urls_say_what_is_wrong() {
        for (url, says) in [
            ("mysql://u@h/d", "unknown scheme \"mysql\""),
            ("file:/tmp/notes.db", "unknown scheme"),
            ("sqlite:", "names no file"),
            ("sqlite://", "names no file"),
            ("sqlite:n.db?mode=ro", "not supported"),
            ("postgres://host:notaport/db", "not a PostgreSQL URL"),
            ("/tmp/notes.db", "neither a URL"),
        ] {
            let err = Settings::from_env(&Env::from_pairs([("DATABASE_URL", url)])).unwrap_err();
            assert_eq!(err.variable, "DATABASE_URL", "{url}");
            assert!(err.message.contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("DB_PORT", "x"),
            ("PORT", "70000"),
            ("CALENDAR_TIMEOUT_MS", "-5"),
            ("NOTES_HELPER_DELAY_SCALE", "-1"),
            ("DATABASE_URL", "postgres://host:notaport/db"),
            ("DB_POOL_SIZE", "0"),
            ("DB_HOST", "bad host"),
        ] {
            let err = Settings::from_env(&Env::from_pairs([(k, v)])).unwrap_err();
            assert_eq!(err.variable, k, "{k}={v}: {err}");
        }
    }
}
