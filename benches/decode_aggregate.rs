//! Userspace hot paths between the kernel and the exporters:
//!
//! * `span_decode`: ring-buffer records → checked `SpanEvent` → labelled
//!   `FlowSpan` (what `read_spans` in src/agent.rs does per record);
//! * `aggregate`: a harvested kernel snapshot → labelled, capped metric
//!   families (what `Agent::gather` does per scrape, minus the map reads).
//!
//! Throughput is reported in events (records or kernel map entries) per
//! second on one core: `cargo bench --bench decode_aggregate`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use netagent::collect::connections;
use netagent::collect::labels::{HostOnly, Labeler, ProcessNames};
use netagent::collect::tcp;
use netagent::collect::KernelSnapshot;
use netagent::kernel::abi::{
    comm_bytes, FlowKey, FlowStats, Hist, HistKind, SpanEvent, DIR_INBOUND, DIR_OUTBOUND,
    IPPROTO_TCP,
};
use netagent::model::cardinality::SeriesLimiter;
use netagent::model::spans::{decode, SpanDecoder};

/// Records per decode iteration: about one ring-buffer drain under load.
const RECORDS: usize = 4096;
/// Peers in the aggregation snapshot (per peer: one counter key, four histogram keys).
const PEERS: u32 = 2000;

fn v4(i: u32) -> [u8; 16] {
    Ipv4Addr::from(0x0a00_0000 + i).to_ipv6_mapped().octets()
}

fn record(i: usize) -> Vec<u8> {
    let ev = SpanEvent {
        start_ns: 1_000_000 + i as u64 * 1000,
        end_ns: 1_250_000 + i as u64 * 1000,
        cgroup_id: 0,
        sock_cookie: i as u64,
        comm: comm_bytes(["nginx", "curl", "postgres"][i % 3]),
        laddr: v4(1),
        raddr: v4(2 + (i % 64) as u32),
        nat_raddr: [0; 16],
        pid: 1000 + (i % 7) as u32,
        lport: 40_000 + (i % 20_000) as u16,
        rport: 443,
        nat_rport: 0,
        proto: IPPROTO_TCP,
        direction: if i.is_multiple_of(2) {
            DIR_OUTBOUND
        } else {
            DIR_INBOUND
        },
        _pad: [0; 4],
    };
    // SAFETY: reading the bytes of a plain-old-data #[repr(C)] struct.
    unsafe {
        std::slice::from_raw_parts(
            (&ev as *const SpanEvent).cast::<u8>(),
            std::mem::size_of::<SpanEvent>(),
        )
    }
    .to_vec()
}

fn span_decode(c: &mut Criterion) {
    let records: Vec<Vec<u8>> = (0..RECORDS).map(record).collect();
    let names = ProcessNames::by_comm();
    let decoder = SpanDecoder::new();
    let mut g = c.benchmark_group("span_decode");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("decode_label_span", |b| {
        b.iter(|| {
            let mut no_container = HostOnly;
            let mut labeler = Labeler::new(&names, &mut no_container);
            let mut n = 0usize;
            for r in &records {
                let ev = decode(black_box(r)).expect("valid record");
                let process = labeler.process(&ev.comm).expect("tracked");
                let container = labeler.identity(ev.cgroup_id);
                n += black_box(decoder.span(&ev, process, container)).pid as usize;
            }
            n
        })
    });
    g.finish();
}

fn key(comm: &str, peer: u32, hist: Option<HistKind>) -> FlowKey {
    FlowKey {
        comm: comm_bytes(comm),
        daddr: v4(peer),
        nat_daddr: [0; 16],
        cgroup_id: 0,
        dport: 443,
        nat_dport: 0,
        proto: IPPROTO_TCP,
        direction: DIR_OUTBOUND,
        hist: hist.map(|h| h as u8).unwrap_or(0),
        _pad: 0,
    }
}

/// A snapshot like the kernel's after churn to `PEERS` peers.
fn snapshot() -> KernelSnapshot {
    let mut snap = KernelSnapshot::default();
    let mut h = Hist::default();
    h.buckets[3] = 5;
    h.sum_ns = 4_000_000;
    for p in 0..PEERS {
        let stats = FlowStats {
            connects: 10,
            opened: 10,
            closed: 9,
            bytes_sent: 4096,
            bytes_received: 65536,
            ..Default::default()
        };
        snap.flows.push((key("curl", p, None), stats));
        for kind in [
            HistKind::Tx,
            HistKind::Rtt,
            HistKind::Connect,
            HistKind::ConnDuration,
        ] {
            snap.hists.push((key("curl", p, Some(kind)), h));
        }
    }
    snap
}

/// What `Agent::gather` does with a harvested snapshot: labels, families,
/// then the per-metric series cap.
fn gather(
    snap: &KernelSnapshot,
    names: &ProcessNames,
    limiter: &mut SeriesLimiter,
) -> Vec<netagent::metrics::Family> {
    let mut no_container = HostOnly;
    let mut labeler = Labeler::new(names, &mut no_container);
    let resolved = connections::resolve(snap, &mut labeler);
    let mut families = connections::families(&resolved);
    families.push(tcp::listen_family(&snap.listeners, &mut labeler));
    families.extend(tcp::families(&resolved));
    let mut dropped = BTreeMap::new();
    for f in &mut families {
        dropped.insert(f.name, limiter.limit(f));
    }
    families
}

fn aggregate(c: &mut Criterion) {
    let snap = snapshot();
    let names = ProcessNames::by_comm();
    let entries = (snap.flows.len() + snap.hists.len()) as u64;
    let mut g = c.benchmark_group("aggregate");
    g.throughput(Throughput::Elements(entries));
    g.sample_size(20);
    g.bench_function("resolve_labels", |b| {
        b.iter(|| {
            let mut no_container = HostOnly;
            let mut labeler = Labeler::new(&names, &mut no_container);
            connections::resolve(black_box(&snap), &mut labeler)
                .flows
                .len()
        })
    });
    // Every scrape after the first: the series are already admitted.
    let mut warm = SeriesLimiter::new(1_000_000);
    gather(&snap, &names, &mut warm);
    g.bench_function("snapshot_to_capped_families", |b| {
        b.iter(|| gather(black_box(&snap), &names, &mut warm))
    });
    // The first scrape admits every series.
    g.bench_function("first_scrape", |b| {
        b.iter_batched(
            || SeriesLimiter::new(1_000_000),
            |mut limiter| gather(black_box(&snap), &names, &mut limiter),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, span_decode, aggregate);
criterion_main!(benches);
