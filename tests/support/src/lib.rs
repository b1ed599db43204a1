//! The integration-test harness of `tests/*.rs` (a dev-only crate of the workspace, used as
//! `test_support`).
//!
//! - [`fresh_database`]: a new database on a private PostgreSQL server (one per
//!   test binary, started on first use, stopped at exit; `TEST_DATABASE_URL`
//!   overrides).
//! - [`TestAgent`]: Datadog's test agent on a free port, to receive and check traces.
//! - [`ServiceProcess`]: a service binary run as a subprocess.
//! - [`free_port`]: a free loopback TCP port.
//! - [`Store`]: PostgreSQL or a SQLite file, for the tests that run against both stores.
//! - [`send`]: one HTTP request, answered as a [`Reply`] (status, content type, body).
//! - [`inprocess`]: the services started inside the test process, and fakes around them.
//!
//! Free ports, users, log tails and the PostgreSQL bin-dir search come from `devkit`, which the
//! benchmark (`crates/bench`) shares.
//!
//! A missing prerequisite fails the test with the fix; nothing is skipped.
// The harness reads its own settings (TEST_DATABASE_URL, DDAPM_TEST_AGENT, PATH) and clears
// the caller's DD_*/DB_* variables for the services it starts: not the services' configuration,
// so the workspace's ban on std::env reads does not apply here.
#![allow(clippy::disallowed_methods)]

pub mod agent;
pub mod http;
pub mod inprocess;
pub mod postgres;
pub mod process;
pub mod service;
pub mod store;

pub use agent::{locate_test_agent, TestAgent, ENABLED_CHECKS};
pub use http::{send, Reply};
pub use postgres::{connect, fresh_database};
pub use process::{free_port, free_ports, workspace_root};
pub use service::{calendar_and_notes, ServiceProcess};
pub use store::Store;
