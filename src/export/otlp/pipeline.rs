//! The span path: a non-blocking producer handle with the per-second cap
//! (`max_spans_per_second`) and a bounded queue, and the task that batches
//! the queue and exports it with retry and backoff.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::encode::{resource, trace_request};
use super::stats::SpanStats;
use super::transport::Transport;
use crate::config::otel::OtelConfig;
use crate::model::spans::FlowSpan;

/// The producer side, used by the span reader: non-blocking.
pub struct SpanSink {
    tx: mpsc::Sender<FlowSpan>,
    stats: Arc<SpanStats>,
    per_second: u32,
    window: Instant,
    in_window: u32,
}

impl SpanSink {
    /// Offers a span: dropped (and counted) when over the per-second cap or
    /// when the queue is full; never waits.
    pub fn offer(&mut self, span: FlowSpan) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.in_window = 0;
        }
        if self.in_window >= self.per_second {
            self.stats
                .dropped_rate_limit
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.in_window += 1;
        if self.tx.try_send(span).is_err() {
            self.stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Retries of one batch before it is dropped (backoff from 0.5 s doubling
/// up to `retry_max_backoff_seconds`).
const MAX_ATTEMPTS: u32 = 8;

/// Starts the export task; returns the producer handle.
pub fn start_span_pipeline(
    cfg: &OtelConfig,
    transport: Transport,
    stats: Arc<SpanStats>,
) -> SpanSink {
    let (tx, mut rx) = mpsc::channel::<FlowSpan>(cfg.queue_size.max(1));
    let resource = resource(cfg);
    let batch_size = cfg.batch_size.max(1);
    let max_backoff = Duration::from_secs_f64(cfg.retry_max_backoff_seconds.clamp(0.1, 600.0));
    let task_stats = stats.clone();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(batch_size);
        loop {
            // Wait for the first span, then gather more for up to 200 ms.
            match rx.recv().await {
                Some(sp) => batch.push(sp),
                None => return,
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
            while batch.len() < batch_size {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(sp)) => batch.push(sp),
                    _ => break,
                }
            }
            let req = trace_request(&resource, &batch);
            let mut backoff = Duration::from_millis(500);
            let mut attempt = 0;
            loop {
                attempt += 1;
                match transport.export_traces(req.clone()).await {
                    Ok(()) => {
                        task_stats
                            .exported
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => {
                        task_stats.export_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(error = %format!("{e:#}"), attempt, "span export failed");
                        if attempt >= MAX_ATTEMPTS {
                            tracing::warn!(error = %format!("{e:#}"), spans = batch.len(), "dropping spans after retries");
                            task_stats
                                .dropped_export_failed
                                .fetch_add(batch.len() as u64, Ordering::Relaxed);
                            break;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(max_backoff);
                    }
                }
            }
            batch.clear();
        }
    });
    SpanSink {
        tx,
        stats,
        per_second: cfg.max_spans_per_second,
        window: Instant::now(),
        in_window: 0,
    }
}
