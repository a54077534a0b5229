//! The agent's background work besides scrapes: the span reader (ring
//! buffer -> labelled spans -> OTLP and DogStatsD), the DogStatsD and OTLP
//! metric pushes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::Agent;
use crate::export::otlp::{self, MetricEncoder, SpanSink, Transport};
use crate::export::statsd::{SpanBuffer, StatsdExporter};
use crate::http::Gather;
use crate::kernel::spans::SpanCap;
use crate::model::spans::{decode, FlowSpan, SpanDecoder};

/// How often the span ring is drained without a wakeup: the kernel wakes
/// the reader only once the ring is a quarter full (bpf/netagent/span.h),
/// as a wakeup per span cost more than the rest of the span's path.
const SPAN_POLL: Duration = Duration::from_millis(50);

/// Drains the span ring buffer, labels each record and offers it to the
/// span pipeline (which never blocks: full means dropped and counted).
pub async fn read_spans(
    agent: Arc<Agent>,
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    cap: Option<SpanCap>,
    mut otlp: Option<SpanSink>,
    statsd: Option<Arc<SpanBuffer>>,
) {
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd
    // owns the ring buffer, and always reports that same fd.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE)
    };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(error = %e, "cannot poll the span ring buffer; OTLP traces are off");
            return;
        }
    };
    let mut decoder = SpanDecoder::new();
    let mut resynced = Instant::now();
    let mut capped = 0;
    let mut tick = tokio::time::interval(SPAN_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ready = fd.readable_mut() => match ready {
                // Cleared before the drain: a wakeup during it is kept.
                Ok(mut guard) => guard.clear_ready(),
                Err(e) => {
                    tracing::error!(error = %e, "span ring buffer poll failed");
                    return;
                }
            },
            _ = tick.tick() => {}
        }
        if resynced.elapsed() > Duration::from_secs(60) {
            decoder.resync(); // follow NTP adjustments of the wall clock
            resynced = Instant::now();
        }
        let ring = fd.get_mut();
        let mut batch = Vec::new();
        while let Some(item) = ring.next() {
            match decode(&item) {
                Ok(ev) => batch.push(ev),
                Err(e) => {
                    agent
                        .span_stats
                        .decode_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(error = %e, "bad span record");
                }
            }
        }
        if let Some(cap) = &cap {
            // Dropped in the kernel over the cap: OTLP's rate limit, and
            // DogStatsD's sampled out (its lines' rate stands for them).
            let now = cap.capped();
            let new = now.saturating_sub(capped);
            capped = capped.max(now);
            if otlp.is_some() {
                agent
                    .span_stats
                    .dropped_rate_limit
                    .fetch_add(new, Ordering::Relaxed);
            }
            if let Some(buf) = &statsd {
                buf.sampled_out(new);
            }
        }
        if batch.is_empty() {
            continue;
        }
        let spans: Vec<FlowSpan> = agent.with_labeler(|labeler| {
            batch
                .iter()
                .filter_map(|ev| {
                    let process = labeler.process(&ev.comm)?;
                    let identity = labeler.identity(ev.cgroup_id);
                    let mut span = decoder.span(ev, process, identity);
                    if ev.direction == crate::kernel::abi::DIR_OUTBOUND {
                        span.dst_name = labeler.dst_name(&ev.comm, ev.cgroup_id, &ev.raddr);
                    }
                    Some(span)
                })
                .collect()
        });
        if let Some(buf) = &statsd {
            buf.offer(&spans);
        }
        if let Some(sink) = otlp.as_mut() {
            for sp in spans {
                sink.offer(sp);
            }
        }
    }
}

/// Sends families (and span durations) to DogStatsD every interval.
pub fn spawn_statsd_thread(
    mut exporter: StatsdExporter,
    agent: Arc<Agent>,
    spans: Arc<SpanBuffer>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("netagent-statsd".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let until = Instant::now() + interval;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50).min(interval));
                }
                match agent.gather() {
                    Ok(families) => {
                        exporter.export(&families);
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "statsd: collection failed")
                    }
                }
                let sampled = spans.take();
                exporter.observe_spans(&sampled.spans, sampled.rate);
                agent
                    .statsd_stats
                    .send_errors
                    .store(exporter.errors(), Ordering::Relaxed);
            }
        })
        .expect("spawn statsd thread")
}

/// Pushes every metric family over OTLP each interval.
pub async fn push_metrics(agent: Arc<Agent>, transport: Transport, cfg: otlp::OtelConfig) {
    let resource = otlp::resource(&cfg);
    let mut encoder = MetricEncoder::new(cfg.metrics_temporality);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(cfg.metrics_interval_seconds));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let a = agent.clone();
        let families = match tokio::task::spawn_blocking(move || a.gather()).await {
            Ok(Ok(f)) => f,
            _ => continue,
        };
        let req = encoder.request(&resource, &families);
        if let Err(e) = transport.export_metrics(req).await {
            agent
                .span_stats
                .export_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(error = %format!("{e:#}"), "OTLP metric push failed");
        }
    }
}
