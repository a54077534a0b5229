//! The endpoints: `/metrics` (Prometheus text 0.0.4 or OpenMetrics, picked
//! from `Accept` by [`Format::negotiate`]; gzip when `Accept-Encoding`
//! allows, by the compression layer), `/health`, `/api/v1/graph`, `/` and
//! the UI assets embedded from `ui/`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::Gather;
use crate::export::prometheus::{encode, Format};

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
