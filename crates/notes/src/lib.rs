//! The notes service: the tutorial's REST API over PostgreSQL, or an embedded SQLite database.
//!
//! Layout:
//! - [`config`]: [`Settings`], read from the environment;
//! - [`startup`]: [`Application`]: binds the listener, opens the store and builds the calendar
//!   client, runs until a shutdown future resolves;
//! - [`routes`]: the HTTP handlers and the tutorial's plain-text / JSON bodies;
//! - [`query`]: strict parsing of query parameters (`id`, `desc`, `add_date`);
//! - [`db`]: the `notes` table in PostgreSQL (a deadpool-postgres pool) or SQLite (rusqlite),
//!   behind one enum, one traced span per query;
//! - [`calendar`]: the traced HTTP call to the calendar service;
//! - [`helpers`]: the tutorial's custom-instrumented helper work;
//! - [`error`]: [`NotesError`], each variant with its HTTP status.

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
