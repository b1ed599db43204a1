//! `tracecat`: shows one trace from Datadog's APM test agent (or from a JSON dump of its traces)
//! as a tree in the terminal and as a flame graph picture (SVG or PNG).
//!
//! - [`model`]: spans and traces in the Agent's JSON form, and picking one trace;
//! - [`source`]: reading them from the test agent or a file;
//! - [`tree`]: the text tree;
//! - [`flame`]: the flame graph as SVG; [`raster`]: SVG to PNG;
//! - [`arrival`]: telling complete traces from those still arriving;
//! - [`stats`]: the services' client-side stats the test agent received (requests, errors,
//!   latency per service and resource);
//! - [`web`]: the viewer's pages and JSON, [`views`]: its flame graph and waterfall in HTML;
//!   [`serve`]: its server (`tracecat serve`);
//! - [`cli`]: the command line.

pub mod arrival;
pub mod cli;
pub mod flame;
pub mod model;
pub mod raster;
pub mod serve;
pub mod source;
pub mod stats;
pub mod tree;
pub mod views;
pub mod web;

pub use model::{Selector, Span, Trace};
