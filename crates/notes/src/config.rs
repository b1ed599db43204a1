//! Settings of the notes service, read from the environment with the tutorial's defaults.

use std::time::Duration;
use tutorial_common::config::{ConfigError, Env};
use tutorial_common::server::{ServerSettings, ServiceSettings};
use tutorial_common::telemetry::TelemetryConfig;

/// Everything the notes service needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST`, `PORT` (default 8080), workers, shutdown timeout and request limits.
    pub server: ServerSettings,
    /// The database connection and pool.
    pub database: DatabaseSettings,
    /// `CALENDAR_URL`, else `http://$CALENDAR_HOST:$CALENDAR_PORT` (localhost, 9090).
    pub calendar_url: String,
    /// `CALENDAR_TIMEOUT_MS` (default 2000): the whole calendar call, connection included.
    pub calendar_timeout: Duration,
    /// `NOTES_HELPER_DELAY_SCALE` (default 1.0; 0 disables): scales the helper sleeps.
    pub helper_delay_scale: f64,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
}

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
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
        let pool_size: usize = env.parse("DB_POOL_SIZE", 16)?;
        if pool_size == 0 {
            return Err(ConfigError::new("DB_POOL_SIZE", "must be at least 1"));
        }
        let database_url = env.get("DATABASE_URL").map(str::to_string);
        if let Some(url) = &database_url {
            url.parse::<tokio_postgres::Config>().map_err(|e| {
                ConfigError::new("DATABASE_URL", format!("not a PostgreSQL URL ({e})"))
            })?;
        }
        Ok(Self {
            server: ServerSettings::from_env(env, 8080)?,
            database: DatabaseSettings {
                url: database_url,
                host: env.host("DB_HOST", "localhost")?,
                port: env.port("DB_PORT", 5432)?,
                name: env.string("DB_NAME", "testdb"),
                user: env.string("DB_USER", "postgres"),
                password: env.string("DB_PASSWORD", "password"),
                pool_size,
                pool_timeout: env.millis("DB_POOL_TIMEOUT_MS", 2000)?,
                statement_timeout: env.millis("DB_STATEMENT_TIMEOUT_MS", 5000)?,
            },
            calendar_url,
            calendar_timeout: env.millis("CALENDAR_TIMEOUT_MS", 2000)?,
            helper_delay_scale: env.factor("NOTES_HELPER_DELAY_SCALE", 1.0)?,
            telemetry: TelemetryConfig::from_env(env, "notes")?,
        })
    }
}

impl ServiceSettings for Settings {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Settings::from_env(env)
    }
    fn server(&self) -> &ServerSettings {
        &self.server
    }
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_tutorials() {
        let s = Settings::from_env(&Env::default()).unwrap();
        assert_eq!((s.server.host.as_str(), s.server.port), ("0.0.0.0", 8080));
        assert_eq!(s.database.host, "localhost");
        assert_eq!(s.database.port, 5432);
        assert_eq!(s.database.name, "testdb");
        assert_eq!(s.database.user, "postgres");
        assert_eq!(s.database.password, "password");
        assert_eq!(s.calendar_url, "http://localhost:9090");
        assert_eq!(s.calendar_timeout, Duration::from_millis(2000));
        assert_eq!(s.helper_delay_scale, 1.0);
        assert_eq!(s.telemetry.service, "notes");
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
