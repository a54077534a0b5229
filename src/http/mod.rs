//! HTTP surface: `/metrics` (Prometheus text or OpenMetrics, negotiated;
//! gzip when accepted), `/health` (JSON), `/api/v1/graph` (the service map
//! as JSON, see docs/API.md) and `/` (the live service-map page, assets
//! embedded). It knows nothing about BPF: it asks a [`Gather`].
//!
//! - `routes`: the router and its handlers.
//! - `server`: serving it: accept loop, connection limit, HTTP/1.1
//!   connections, request timeout, graceful shutdown.
//! - `deadlines`: header, response and idle timeouts per connection.
//! - `auth`: basic auth of each request.
//! - `reload`: the web config's current version while serving.
//! - `web_config`: the `web-config.yml` file, read and checked (TLS in
//!   `web_config/tls.rs`).

mod auth;
mod deadlines;
mod reload;
mod routes;
pub mod server;
pub mod web_config;

pub use routes::router;

use std::sync::{Mutex, MutexGuard};

use crate::metrics::Family;

/// What the HTTP layer needs from the agent.
pub trait Gather: Send + Sync + 'static {
    /// Every metric family, read fresh.
    fn gather(&self) -> anyhow::Result<Vec<Family>>;
    /// Health document served at `/health`; `ok == false` gives HTTP 503.
    fn health(&self) -> (bool, serde_json::Value);
    /// The service map served at `/api/v1/graph`.
    fn graph(&self) -> anyhow::Result<serde_json::Value>;
}

/// Locks `m` even if poisoned: one panicking request must not wedge the
/// connections and requests after it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
