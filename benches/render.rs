//! Rendering `/metrics`: `export::prometheus::encode` of 100,000 series, in
//! both formats. The target is ≤ 100 ms per render:
//! `cargo bench --bench render`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netagent::collect::histograms::LATENCY_BOUNDS;
use netagent::export::prometheus::{encode, Format};
use netagent::metrics::{Family, Histogram, Kind, Value};

const SERIES: u32 = 100_000;

/// 100,000 series the shape of the agent's: counters with the edge labels,
/// plus histograms (each histogram is 19 series: 17 buckets, sum, count).
fn families() -> Vec<Family> {
    // Half the series in histograms, the rest counters: exactly SERIES lines.
    let per_hist = LATENCY_BOUNDS.len() as u32 + 3;
    let hist_series = (SERIES / 2) / per_hist;
    let counters = SERIES - hist_series * per_hist;
    let mut edges = Family::ad_hoc("netagent_bytes_sent", "Payload bytes sent.", Kind::Counter);
    for i in 0..counters {
        edges.push(
            vec![
                ("process", format!("proc-{}", i % 97)),
                ("container", String::new()),
                (
                    "proto",
                    if i.is_multiple_of(2) { "tcp" } else { "udp" }.to_string(),
                ),
                ("dport", (1024 + i % 4000).to_string()),
                (
                    "dst_ip",
                    format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                ),
                ("direction", "outbound".to_string()),
            ],
            Value::Counter(f64::from(i) * 1448.0),
        );
    }
    let mut hist = Family::ad_hoc(
        "netagent_tcp_connect_duration_seconds",
        "Handshake time.",
        Kind::Histogram,
    );
    for i in 0..hist_series {
        let mut buckets = vec![0u64; LATENCY_BOUNDS.len() + 1];
        let n = buckets.len();
        buckets[i as usize % n] = u64::from(i) + 1;
        hist.push(
            vec![
                ("process", format!("proc-{}", i % 97)),
                ("dst_ip", format!("10.200.{}.{}", (i >> 8) & 255, i & 255)),
            ],
            Value::Histogram(Histogram {
                bounds: &LATENCY_BOUNDS,
                buckets,
                sum: f64::from(i) * 0.001,
            }),
        );
    }
    vec![edges, hist]
}

fn render(c: &mut Criterion) {
    let families = families();
    let mut g = c.benchmark_group("render_100k_series");
    g.throughput(Throughput::Elements(u64::from(SERIES)));
    g.sample_size(20);
    for (name, format) in [("text", Format::Text), ("openmetrics", Format::OpenMetrics)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut out = String::with_capacity(16 << 20);
                encode(black_box(&families), format, &mut out);
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
