//! The notes service: the tutorial's REST API over PostgreSQL, or an embedded SQLite database.
//!
//! A request goes: [`startup`] (the actix-web app, its middleware and the server span) ->
//! [`routes`] (a handler, its parameters parsed by [`query`]) -> [`db`] and, for
//! `add_date=y`, [`calendar`] -> back through [`error`] when something failed. Where a change
//! goes:
//! - a setting or environment variable: [`config`] ([`Settings`]);
//! - start-up (what is opened, what stops it): [`startup`] ([`Application`], [`startup::BuildError`]);
//! - a route, a response body, content negotiation: [`routes`];
//! - what a query parameter accepts: [`query`];
//! - SQL, the stores and their `*.query` spans: [`db`] (`db/postgres.rs`, `db/sqlite.rs`);
//! - the call to the calendar service and its client span: [`calendar`];
//! - the tutorial's custom-instrumented helper work: [`helpers`];
//! - an error's HTTP status, client message or `error.type`: [`error`] ([`NotesError`]).
//!
//! What both services share (the server span, request limits, the Datadog export, `main`)
//! lives in `tutorial_common`.

pub mod calendar;
pub mod config;
pub mod db;
pub mod error;
pub mod helpers;
pub mod query;
pub mod routes;
pub mod startup;

pub use config::Settings;
pub use error::NotesError;
pub use startup::Application;
