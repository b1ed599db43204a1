//! General error formatting, used by the other modules (it depends on none of them).

pub use datadog_otel_tracing::error_chain;
