//! HTTP surface: `/metrics` (Prometheus text or OpenMetrics, negotiated;
//! gzip when accepted), `/health` (JSON), `/api/v1/graph` (the service map
//! as JSON, see docs/API.md) and `/` (the live service-map page, assets
//! embedded). It knows nothing about BPF: it asks a [`Gather`].

pub mod server;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::export::prometheus::{encode, Format};
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

/// The router with all endpoints.
pub fn router(source: Arc<dyn Gather>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/api/v1/graph", get(graph))
        .route("/", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/style.css", get(style_css))
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(source)
}

async fn metrics(State(source): State<Arc<dyn Gather>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    // Reading kernel maps is a burst of syscalls: keep it off the reactor.
    let rendered = tokio::task::spawn_blocking(move || {
        source.gather().map(|families| {
            let mut body = String::with_capacity(64 * 1024);
            encode(&families, format, &mut body);
            body
        })
    })
    .await;
    match rendered {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "collection failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("collection failed: {e:#}\n"),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("collection panicked: {e}\n"),
        )
            .into_response(),
    }
}

async fn health(State(source): State<Arc<dyn Gather>>) -> Response {
    let (ok, doc) = source.health();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response()
}

async fn graph(State(source): State<Arc<dyn Gather>>) -> Response {
    match tokio::task::spawn_blocking(move || source.graph()).await {
        Ok(Ok(doc)) => (
            [(header::CONTENT_TYPE, "application/json")],
            doc.to_string(),
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("graph failed: {e:#}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("graph panicked: {e}\n"),
        )
            .into_response(),
    }
}

async fn index() -> Html<&'static str> {
    Html(include_str!("ui/index.html"))
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("ui/app.js"),
    )
        .into_response()
}

async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("ui/style.css"),
    )
        .into_response()
}
