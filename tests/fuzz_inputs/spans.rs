//! `model::spans::decode` on arbitrary bytes and on bit-flipped real
//! records (tests/corpus/spans/*.bin, generated from `SpanEvent` structs);
//! decoded records go on through `SpanDecoder::span` and the OTLP encoding.

use super::corpus::{config, corpus, corpus_dir};
use netagent::export::otlp::encode_span;
use netagent::kernel::abi::{
    comm_bytes, comm_str, SpanEvent, DIR_INBOUND, DIR_OUTBOUND, IPPROTO_TCP, IPPROTO_UDP,
};
use netagent::model::spans::{decode, DecodeError, SpanDecoder};
use proptest::prelude::*;
use proptest::sample::Index;
use std::sync::OnceLock;

const SPAN_SIZE: usize = std::mem::size_of::<SpanEvent>();

fn record_bytes(ev: &SpanEvent) -> Vec<u8> {
    // SAFETY: SpanEvent is repr(C) plain old data with explicit padding
    // fields, so every byte is initialised; the slice lives only here.
    unsafe { std::slice::from_raw_parts((ev as *const SpanEvent).cast::<u8>(), SPAN_SIZE) }.to_vec()
}

fn mapped(a: [u8; 4]) -> [u8; 16] {
    std::net::Ipv4Addr::from(a).to_ipv6_mapped().octets()
}

/// The seed records: what the kernel writes for typical and edge cases.
fn seed_events() -> Vec<(&'static str, SpanEvent)> {
    let base = SpanEvent {
        start_ns: 5_000_000_000,
        end_ns: 5_020_000_000,
        cgroup_id: 4242,
        sock_cookie: 0x1234_5678_9abc_def0,
        comm: comm_bytes("curl"),
        laddr: mapped([127, 0, 0, 1]),
        raddr: mapped([127, 0, 0, 1]),
        nat_raddr: [0; 16],
        pid: 1234,
        lport: 40_000,
        rport: 80,
        nat_rport: 0,
        proto: IPPROTO_TCP,
        direction: DIR_OUTBOUND,
        _pad: [0; 4],
    };
    vec![
        ("tcp4-client", base),
        (
            "tcp4-server",
            SpanEvent {
                comm: comm_bytes("nginx"),
                lport: 80,
                rport: 40_000,
                direction: DIR_INBOUND,
                ..base
            },
        ),
        (
            "tcp6-client",
            SpanEvent {
                laddr: "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                raddr: "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                rport: 443,
                ..base
            },
        ),
        (
            "udp4-client",
            SpanEvent {
                comm: comm_bytes("dig"),
                raddr: mapped([10, 0, 0, 53]),
                rport: 53,
                proto: IPPROTO_UDP,
                ..base
            },
        ),
        (
            "udp6-server",
            SpanEvent {
                comm: comm_bytes("unbound"),
                laddr: std::net::Ipv6Addr::LOCALHOST.octets(),
                raddr: std::net::Ipv6Addr::LOCALHOST.octets(),
                lport: 53,
                rport: 51_000,
                proto: IPPROTO_UDP,
                direction: DIR_INBOUND,
                ..base
            },
        ),
        (
            "zero-duration-long-comm",
            SpanEvent {
                end_ns: base.start_ns,
                comm: comm_bytes("a-very-long-process-name"),
                ..base
            },
        ),
        (
            "extremes",
            SpanEvent {
                start_ns: 0,
                end_ns: u64::MAX,
                cgroup_id: u64::MAX,
                sock_cookie: 0,
                comm: [0xff; 16],
                laddr: [0; 16],
                raddr: [0xff; 16],
                pid: u32::MAX,
                lport: 0,
                rport: u16::MAX,
                ..base
            },
        ),
    ]
}

/// The seeds on disk are exactly the bytes of `seed_events()` (so a change
/// of `SpanEvent` shows up here). `NETAGENT_WRITE_CORPUS=1` rewrites them.
#[test]
fn span_corpus_is_real_records() {
    let dir = corpus_dir("spans");
    let write = std::env::var("NETAGENT_WRITE_CORPUS").as_deref() == Ok("1");
    for (name, ev) in seed_events() {
        let path = dir.join(format!("{name}.bin"));
        let bytes = record_bytes(&ev);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (NETAGENT_WRITE_CORPUS=1 writes it)",
                path.display()
            )
        });
        assert_eq!(
            on_disk,
            bytes,
            "{} differs from the SpanEvent it was made from; \
             rerun with NETAGENT_WRITE_CORPUS=1 if the layout changed on purpose",
            path.display()
        );
        assert_eq!(decode(&on_disk), Ok(ev), "{name}");
    }
    assert_eq!(corpus("spans", "bin").len(), seed_events().len());
}

fn span_decoder() -> &'static SpanDecoder {
    static DECODER: OnceLock<SpanDecoder> = OnceLock::new();
    DECODER.get_or_init(SpanDecoder::new)
}

/// Decodes a record and, when it is accepted, takes it through everything
/// the agent does with a span.
fn check_record(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes) {
        Err(DecodeError::Size(got, want)) => {
            prop_assert_eq!(got, bytes.len());
            prop_assert_eq!(want, SPAN_SIZE);
            prop_assert_ne!(got, want);
        }
        Err(DecodeError::Proto(p)) => prop_assert!(p != IPPROTO_TCP && p != IPPROTO_UDP),
        Err(DecodeError::Time) => prop_assert_eq!(bytes.len(), SPAN_SIZE),
        Ok(ev) => {
            prop_assert_eq!(bytes.len(), SPAN_SIZE);
            prop_assert!(ev.proto == IPPROTO_TCP || ev.proto == IPPROTO_UDP);
            prop_assert!(ev.end_ns >= ev.start_ns);
            let process = comm_str(&ev.comm);
            let container = netagent::collect::containers::Identity::unnamed(
                &format!("{:064x}", ev.cgroup_id),
                "docker",
            );
            let span = span_decoder().span(&ev, process.clone(), container.into());
            let d = span.duration_seconds();
            prop_assert!(d.is_finite() && d >= 0.0, "duration {}", d);
            prop_assert_eq!(&span.process, &process);
            let _ = (span.name(), span.flow_id(), span.trace_id());
            let otlp = encode_span(&span);
            prop_assert_eq!(otlp.trace_id.len(), 16);
            prop_assert!(otlp.span_id.iter().any(|&b| b != 0));
        }
    }
    Ok(())
}

fn span_seeds() -> &'static [(String, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| corpus("spans", "bin"))
}

proptest! {
    #![proptest_config(config(10000))]

    #[test]
    fn span_decode_arbitrary_bytes(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            proptest::collection::vec(any::<u8>(), SPAN_SIZE - 1..=SPAN_SIZE + 1),
            // Full-size records with a valid protocol byte, so the time
            // check and the conversion see random content too.
            (proptest::collection::vec(any::<u8>(), SPAN_SIZE), any::<bool>()).prop_map(
                |(mut b, udp)| {
                    b[std::mem::offset_of!(SpanEvent, proto)] =
                        if udp { IPPROTO_UDP } else { IPPROTO_TCP };
                    b
                }
            ),
        ]
    ) {
        check_record(&bytes)?;
    }

    #[test]
    fn span_decode_bit_flipped_seeds(
        seed in any::<Index>(),
        flips in proptest::collection::vec(any::<Index>(), 1..12),
        resize in prop_oneof![8 => Just(0i8), 1 => -3i8..=3],
    ) {
        let seeds = span_seeds();
        let mut bytes = seeds[seed.index(seeds.len())].1.clone();
        for f in &flips {
            let bit = f.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        let len = (bytes.len() as isize + resize as isize) as usize;
        bytes.resize(len, 0xa5);
        check_record(&bytes)?;
    }
}
