//! Typed configuration read from the environment: the tracing library's [`Env`] (a snapshot of
//! the variables, taken once) and [`ConfigError`] (naming the variable), shared by every setting
//! of the services so that each bad value stops start-up the same way.

pub use datadog_otel_tracing::{ConfigError, Env};
