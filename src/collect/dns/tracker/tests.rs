//! The tracker on hand-made kernel records.

use super::*;
use crate::kernel::abi::{comm_bytes, IPPROTO_TCP, IPPROTO_UDP};
use crate::kernel::dns::{CAPTURE, INGRESS};
use hickory_proto::op::{Message as Msg, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

const MS: u64 = 1_000_000;

fn mapped(a: [u8; 4]) -> [u8; 16] {
    std::net::Ipv4Addr::from(a).to_ipv6_mapped().octets()
}

fn event(dir: u8, id: u16, bytes: &[u8], ts_ns: u64) -> DnsEvent {
    let mut data = [0u8; CAPTURE];
    let n = bytes.len().min(CAPTURE);
    data[..n].copy_from_slice(&bytes[..n]);
    DnsEvent {
        ts_ns,
        cgroup_id: 9,
        sock_cookie: 77,
        comm: comm_bytes("getent"),
        laddr: mapped([10, 0, 0, 1]),
        raddr: mapped([10, 0, 0, 53]),
        pid: 1,
        lport: 40000 + id,
        rport: 53,
        msg_len: bytes.len() as u16,
        cap_len: n as u16,
        proto: IPPROTO_UDP,
        direction: dir,
        _pad: [0; 2],
        data,
    }
}

fn query(id: u16, name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Msg::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m.to_vec().unwrap()
}

fn answer(
    id: u16,
    name: &str,
    t: RecordType,
    rcode: ResponseCode,
    addr: Option<[u8; 4]>,
) -> Vec<u8> {
    let mut m = Msg::new(id, MessageType::Response, OpCode::Query);
    m.metadata.response_code = rcode;
    let n = Name::from_ascii(name).unwrap();
    m.add_query(Query::query(n.clone(), t));
    if let Some(a) = addr {
        m.add_answer(Record::from_rdata(
            n,
            300,
            RData::A(A::from(std::net::Ipv4Addr::from(a))),
        ));
    }
    m.to_vec().unwrap()
}

fn tracker(domains: usize) -> Tracker {
    Tracker::new(
        Limits {
            timeout_ns: 1000 * MS,
            max_pending: 3,
            max_series: 100,
            domains,
        },
        Names::new(100, 0),
    )
}

fn count(t: &Tracker, qtype: u16, rcode: u16) -> u64 {
    t.requests
        .iter()
        .filter(|(k, _)| k.qtype == qtype && k.rcode == rcode)
        .map(|(_, v)| *v)
        .sum()
}

#[test]
fn answers_end_their_queries_with_rcode_and_duration() {
    let mut t = tracker(0);
    t.on_event(&event(EGRESS, 1, &query(1, "a.test.", RecordType::A), 0));
    t.on_event(&event(EGRESS, 2, &query(2, "b.test.", RecordType::AAAA), 0));
    assert_eq!(t.pending(), 2);
    let ok = answer(
        1,
        "a.test.",
        RecordType::A,
        ResponseCode::NoError,
        Some([192, 0, 2, 1]),
    );
    t.on_event(&event(INGRESS, 1, &ok, 30 * MS));
    let nx = answer(2, "b.test.", RecordType::AAAA, ResponseCode::NXDomain, None);
    t.on_event(&event(INGRESS, 2, &nx, 31 * MS));
    assert_eq!(t.pending(), 0);
    assert_eq!(count(&t, 1, 0), 1);
    assert_eq!(count(&t, 28, 3), 1);
    let d: Vec<&Durations> = t.durations.values().collect();
    assert_eq!(d.len(), 2);
    assert!(d
        .iter()
        .all(|d| d.sum >= 0.030 && d.buckets.iter().sum::<u64>() == 1));
    // The A record names the address for this process.
    let name = t
        .names
        .lookup(&comm_bytes("getent"), 9, false, &mapped([192, 0, 2, 1]), MS);
    assert_eq!(name.as_deref(), Some("a.test"));
}

#[test]
fn unanswered_queries_time_out_and_late_answers_are_unmatched() {
    let mut t = tracker(0);
    t.on_event(&event(
        EGRESS,
        1,
        &query(1, "never.test.", RecordType::A),
        0,
    ));
    t.expire(999 * MS);
    assert_eq!(t.pending(), 1);
    t.expire(1000 * MS);
    assert_eq!(count(&t, 1, TIMEOUT), 1);
    let late = answer(1, "never.test.", RecordType::A, ResponseCode::NoError, None);
    t.on_event(&event(INGRESS, 1, &late, 2000 * MS));
    assert_eq!(t.unmatched, 1);
    assert_eq!(count(&t, 1, 0), 0);
}

#[test]
fn a_retry_ends_the_first_try_as_a_timeout() {
    let mut t = tracker(0);
    let q = query(5, "slow.test.", RecordType::A);
    t.on_event(&event(EGRESS, 5, &q, 0));
    t.on_event(&event(EGRESS, 5, &q, 500 * MS));
    let a = answer(5, "slow.test.", RecordType::A, ResponseCode::ServFail, None);
    t.on_event(&event(INGRESS, 5, &a, 530 * MS));
    assert_eq!(count(&t, 1, TIMEOUT), 1);
    assert_eq!(count(&t, 1, 2), 1);
    let d = t.durations.values().next().unwrap();
    assert!((d.sum - 0.030).abs() < 1e-9, "{d:?}");
}

#[test]
fn answers_must_match_socket_id_addresses_and_question() {
    let mut t = tracker(0);
    t.on_event(&event(EGRESS, 1, &query(1, "a.test.", RecordType::A), 0));
    // Another question under the same id.
    let other = answer(1, "b.test.", RecordType::A, ResponseCode::NoError, None);
    t.on_event(&event(INGRESS, 1, &other, MS));
    // Another socket.
    let mut ev = event(
        INGRESS,
        1,
        &answer(1, "a.test.", RecordType::A, ResponseCode::NoError, None),
        MS,
    );
    ev.sock_cookie = 78;
    t.on_event(&ev);
    // Another server, and TCP instead of UDP.
    let mut ev2 = ev;
    ev2.sock_cookie = 77;
    ev2.raddr = mapped([10, 0, 0, 54]);
    t.on_event(&ev2);
    let mut ev3 = ev;
    ev3.sock_cookie = 77;
    ev3.proto = IPPROTO_TCP;
    t.on_event(&ev3);
    assert_eq!(t.unmatched, 4);
    assert_eq!(t.pending(), 1);
    // A query seen as an answer (QR clear) on ingress is ignored.
    t.on_event(&event(INGRESS, 1, &query(1, "a.test.", RecordType::A), MS));
    assert_eq!(t.pending(), 1);
}

#[test]
fn malformed_messages_are_counted_and_never_counted_as_requests() {
    let mut t = tracker(0);
    t.on_event(&event(EGRESS, 1, &[0u8; 5], 0));
    let q = query(1, "a.test.", RecordType::A);
    t.on_event(&event(EGRESS, 1, &q[..14], 0));
    assert_eq!(t.malformed, [1, 1, 0]);
    assert_eq!(t.pending(), 0);
    // A cut answer still ends its query.
    t.on_event(&event(EGRESS, 1, &q, 0));
    let a = answer(
        1,
        "a.test.",
        RecordType::A,
        ResponseCode::NoError,
        Some([192, 0, 2, 1]),
    );
    t.on_event(&event(INGRESS, 1, &a[..a.len() - 3], MS));
    assert_eq!(t.malformed, [1, 1, 1]);
    assert_eq!(count(&t, 1, 0), 1);
    assert!(t.requests.len() == 1 && t.unmatched == 0);
}

#[test]
fn the_pending_table_is_bounded() {
    let mut t = tracker(0);
    for id in 0..5 {
        t.on_event(&event(EGRESS, id, &query(id, "a.test.", RecordType::A), 0));
    }
    assert_eq!(t.pending(), 3);
    assert_eq!(t.pending_full, 2);
}

#[test]
fn domains_are_capped_with_other() {
    let mut t = tracker(2);
    for (id, name) in ["a.test.", "b.test.", "c.test.", "a.test."]
        .iter()
        .enumerate()
    {
        let id = id as u16;
        t.on_event(&event(EGRESS, id, &query(id, name, RecordType::A), 0));
        t.expire(u64::MAX);
    }
    let mut domains: Vec<(String, u64)> = t
        .requests
        .iter()
        .map(|(k, v)| (k.domain.to_string(), *v))
        .collect();
    domains.sort();
    assert_eq!(
        domains,
        vec![
            ("a.test".into(), 2),
            ("b.test".into(), 1),
            ("~other".into(), 1)
        ]
    );
}

#[test]
fn an_owners_fingerprint_follows_its_counts_and_its_series_can_be_dropped() {
    let mut t = tracker(0);
    let me = owner(&comm_bytes("getent"), 9);
    assert!(t.owner_prints().is_empty());
    t.on_event(&event(EGRESS, 1, &query(1, "a.test.", RecordType::A), 0));
    let ok = answer(1, "a.test.", RecordType::A, ResponseCode::NoError, None);
    t.on_event(&event(INGRESS, 1, &ok, 30 * MS));
    let first = t.owner_prints()[&me];
    assert_eq!(t.owner_prints()[&me], first, "unchanged without counts");
    t.on_event(&event(
        EGRESS,
        2,
        &query(2, "a.test.", RecordType::A),
        40 * MS,
    ));
    t.expire(2000 * MS); // a timeout is a count too
    assert_ne!(t.owner_prints()[&me], first);
    assert_eq!(t.forget_owners(|o| *o != me), 0, "someone else's: nothing");
    // One request series per rcode (ok, timeout) and one duration series.
    assert_eq!(t.forget_owners(|o| *o == me), 3);
    assert!(t.requests.is_empty() && t.durations.is_empty());
}
