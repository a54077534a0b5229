//! OTLP traces and metrics into real OTLP receivers (gRPC and HTTP, built
//! from the opentelemetry-proto types), and DogStatsD into a UDP listener.

mod common;
use common::netns::{cleanup_stale, testgen_in, NetnsPair, NsServer};
use common::receivers::{AttrValue, OtlpReceiver, Received, ReceivedSpan, StatsdListener};
use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

const CLIENT: &str = "nettest-cli";
const SERVER: &str = "nettest-srv";

fn targets_yaml() -> String {
    format!("targets:\n  - name: cli\n    match_comm: {CLIENT}\n  - name: srv\n    match_comm: {SERVER}\n")
}

fn otel_yaml(endpoint: &str, protocol: &str, extra: &str) -> String {
    format!("otel:\n  endpoint: \"{endpoint}\"\n  protocol: {protocol}\n  retry_max_backoff_seconds: 0.5\n{extra}")
}

/// An agent tracking the test's processes and exporting to `receiver`.
fn otlp_agent(receiver: &OtlpReceiver, protocol: &str, extra: &str) -> Agent {
    Agent::start_with_yaml(&format!(
        "{}{}",
        targets_yaml(),
        otel_yaml(&receiver.endpoint(), protocol, extra)
    ))
}

/// An agent tracking the test's processes and sending DogStatsD lines to
/// `listener` every 0.3 s.
fn statsd_agent(listener: &StatsdListener, extra: &str) -> Agent {
    Agent::start_with_yaml(&format!(
        "{}statsd:\n  enabled: true\n  address: \"{}\"\n  interval_seconds: 0.3\n{extra}",
        targets_yaml(),
        listener.addr()
    ))
}

fn attr<'a>(s: &'a ReceivedSpan, k: &str) -> &'a AttrValue {
    s.attributes
        .get(k)
        .unwrap_or_else(|| panic!("span without {k}: {s:?}"))
}

fn spans_of(r: &Received, kind: i32) -> Vec<ReceivedSpan> {
    r.spans.iter().filter(|s| s.kind == kind).cloned().collect()
}

const SERVER_KIND: i32 = 2;
const CLIENT_KIND: i32 = 3;

fn exchange_spans_share_a_trace(receiver: OtlpReceiver, protocol: &str) {
    let agent = otlp_agent(&receiver, protocol, "");
    let srv = Server::start(SERVER, &["--tcp4", "0", "--delay-ms", "20"]);
    let port = srv.port("tcp4");
    let n = 6;
    testgen(
        CLIENT,
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{port}"),
            "--exchanges",
            &n.to_string(),
        ],
    );
    let r = receiver.wait_for(Duration::from_secs(15), |r| r.spans.len() >= 2 * n);
    assert!(
        r.errors.is_empty(),
        "receiver rejected requests: {:?}",
        r.errors
    );
    let (clients, servers) = (spans_of(&r, CLIENT_KIND), spans_of(&r, SERVER_KIND));
    assert_eq!((clients.len(), servers.len()), (n, n), "{r:?}");
    // One connection carried every exchange: one flow, one trace id.
    let ids: BTreeSet<[u8; 16]> = r.spans.iter().map(|s| s.trace_id).collect();
    assert_eq!(
        ids.len(),
        1,
        "client and server spans of the flow share the trace id"
    );
    let span_ids: BTreeSet<[u8; 8]> = r.spans.iter().map(|s| s.span_id).collect();
    assert_eq!(span_ids.len(), 2 * n, "span ids are unique");
    for s in &r.spans {
        let ms = (s.end_unix_nanos - s.start_unix_nanos) as f64 / 1e6;
        assert!(
            (20.0..40.0).contains(&ms),
            "duration {ms} ms vs the 20 ms server delay: {s:?}"
        );
        assert_eq!(attr(s, "network.transport"), &AttrValue::Str("tcp".into()));
        assert_eq!(attr(s, "server.port"), &AttrValue::Int(port as i64));
        assert_eq!(attr(s, "dport"), &AttrValue::Int(port as i64));
        assert_eq!(
            attr(s, "server.address"),
            &AttrValue::Str("127.0.0.1".into())
        );
        assert_eq!(attr(s, "dst_ip"), &AttrValue::Str("127.0.0.1".into()));
        for k in [
            "client.address",
            "client.port",
            "network.peer.address",
            "network.peer.port",
            "process.pid",
            "process.executable.name",
            "flow_id",
            "src_ip",
            "sport",
            "proto",
        ] {
            attr(s, k);
        }
        assert!(s.parent_span_id.is_empty());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(
            now - s.start_unix_nanos < 60_000_000_000,
            "wall-clock start time"
        );
    }
    let c = &clients[0];
    assert_eq!(c.name, format!("cli -> 127.0.0.1:{port} (tcp)"));
    assert_eq!(attr(c, "process"), &AttrValue::Str("cli".into()));
    assert_eq!(attr(&servers[0], "process"), &AttrValue::Str("srv".into()));
    assert_eq!(
        attr(c, "process.executable.name"),
        &AttrValue::Str(CLIENT.into())
    );
    assert_eq!(attr(c, "client.port"), attr(&servers[0], "client.port"));
    assert_eq!(
        r.resource.get("service.name").map(String::as_str),
        Some("netagent")
    );
    assert!(r.resource.contains_key("host.name") && r.resource.contains_key("service.version"));
    // The receiver has the spans; the agent counts them once the export
    // call's response is back, which can be a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut exported = 0.0;
    while std::time::Instant::now() < deadline {
        exported = agent
            .metrics()
            .get("netagent_otlp_spans_exported_total", &[]);
        if exported == (2 * n) as f64 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(exported, (2 * n) as f64);
}

#[test]
fn grpc_spans_of_client_and_server_share_the_flow_trace_id() {
    let _g = serial();
    if require_bpf() {
        exchange_spans_share_a_trace(OtlpReceiver::grpc(), "grpc");
    }
}

#[test]
fn http_spans_of_client_and_server_share_the_flow_trace_id() {
    let _g = serial();
    if require_bpf() {
        exchange_spans_share_a_trace(OtlpReceiver::http(), "http/protobuf");
    }
}

#[test]
fn two_agents_on_two_namespaces_produce_equal_trace_ids() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    cleanup_stale();
    let net = NetnsPair::new("otl");
    let (ra, rb) = (OtlpReceiver::grpc(), OtlpReceiver::grpc());
    let agent_a = Agent::start_with_yaml(&format!(
        "{}netns: /run/netns/{}\n{}",
        targets_yaml(),
        net.a,
        otel_yaml(&ra.endpoint(), "grpc", "")
    ));
    let agent_b = Agent::start_with_yaml(&format!(
        "{}netns: /run/netns/{}\n{}",
        targets_yaml(),
        net.b,
        otel_yaml(&rb.endpoint(), "grpc", "")
    ));
    let srv = NsServer::start(&net, &net.b, SERVER, &["--tcp4", "0", "--delay-ms", "5"]);
    let port = srv.port("tcp4");
    let n = 4;
    for _ in 0..3 {
        let (code, out) = testgen_in(
            &net,
            &net.a,
            CLIENT,
            &[
                "client",
                "--tcp4",
                &format!("{}:{port}", net.b_ip),
                "--exchanges",
                &n.to_string(),
            ],
        );
        assert_eq!(code, 0, "{out}");
    }
    let a = ra.wait_for(Duration::from_secs(15), |r| r.spans.len() >= 3 * n);
    let b = rb.wait_for(Duration::from_secs(15), |r| r.spans.len() >= 3 * n);
    assert!(a.errors.is_empty() && b.errors.is_empty());
    assert!(
        a.spans.iter().all(|s| s.kind == CLIENT_KIND),
        "agent A sees only the client"
    );
    assert!(
        b.spans.iter().all(|s| s.kind == SERVER_KIND),
        "agent B sees only the server"
    );
    let ta: BTreeSet<[u8; 16]> = a.spans.iter().map(|s| s.trace_id).collect();
    let tb: BTreeSet<[u8; 16]> = b.spans.iter().map(|s| s.trace_id).collect();
    assert_eq!(ta.len(), 3, "three connections, three flows");
    assert_eq!(ta, tb, "both agents derive the same trace id per flow");
    // Each agent counted only its own namespace's side.
    let ma = agent_a.metrics();
    assert!(ma
        .series("netagent_tcp_connections_opened_total")
        .iter()
        .all(|(l, _)| l["process"] == "cli"));
    let mb = agent_b.metrics();
    assert!(mb
        .series("netagent_tcp_connections_opened_total")
        .iter()
        .all(|(l, _)| l["process"] == "srv"));
}

#[test]
fn an_unreachable_collector_drops_counted_spans_and_recovers() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let mut receiver = OtlpReceiver::grpc();
    let agent = otlp_agent(&receiver, "grpc", "  queue_size: 20\n  batch_size: 10\n");
    let srv = Server::start(SERVER, &["--tcp4", "0"]);
    let target = format!("127.0.0.1:{}", srv.port("tcp4"));
    receiver.stop();
    // Counting goes on at full speed while the collector is down.
    testgen(
        CLIENT,
        &[
            "client",
            "--tcp4",
            &target,
            "--exchanges",
            "200",
            "--connects",
            "300",
        ],
    );
    // The agent drains the span ring every 50 ms (sooner only when it
    // fills), so the overflow shows a moment after the traffic.
    let m = agent.metrics_when(|m| {
        m.get(
            "netagent_otlp_spans_dropped_total",
            &[("reason", "queue_full")],
        ) > 0.0
    });
    let connects = m.get(
        "netagent_connect_total",
        &[
            ("process", "cli"),
            ("proto", "tcp"),
            ("dport", &srv.port("tcp4").to_string()),
        ],
    );
    assert_eq!(connects, 301.0, "counting unaffected by the outage");
    let dropped = m.get(
        "netagent_otlp_spans_dropped_total",
        &[("reason", "queue_full")],
    );
    assert!(dropped > 0.0, "queue overflow is counted");

    receiver.restart();
    receiver.clear();
    testgen(CLIENT, &["client", "--tcp4", &target, "--exchanges", "5"]);
    let r = receiver.wait_for(Duration::from_secs(20), |r| r.spans.len() >= 10);
    assert!(
        r.spans.len() >= 10,
        "spans flow again after the collector is back: {}",
        r.spans.len()
    );
}

/// Sum of every `field` in a bpftool JSON dump (BTF-formatted values).
/// Every value of `field` anywhere in a bpftool JSON dump (one per CPU
/// for a per-CPU map).
fn field_values(v: &serde_json::Value, field: &str) -> Vec<u64> {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .flat_map(|(k, x)| {
                if k == field {
                    vec![x.as_u64().unwrap_or(0)]
                } else {
                    field_values(x, field)
                }
            })
            .collect(),
        serde_json::Value::Array(a) => a.iter().flat_map(|x| field_values(x, field)).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn spans_over_the_rate_cap_are_dropped_in_the_kernel_and_counted() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let receiver = OtlpReceiver::http();
    let agent = otlp_agent(&receiver, "http/protobuf", "  max_spans_per_second: 10\n");
    let srv = Server::start(SERVER, &["--tcp4", "0"]);
    let n = 300;
    testgen(
        CLIENT,
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{}", srv.port("tcp4")),
            "--exchanges",
            &n.to_string(),
        ],
    );
    // Each exchange is a client and a server span: every one is exported
    // or counted as dropped by the rate limit, nothing else.
    let total = |m: &Metrics| {
        m.get("netagent_otlp_spans_exported_total", &[])
            + m.get(
                "netagent_otlp_spans_dropped_total",
                &[("reason", "rate_limit")],
            )
    };
    let m = agent.metrics_when(|m| total(m) >= (2 * n) as f64);
    assert_eq!(total(&m), (2 * n) as f64, "exported + rate_limit");
    for reason in ["queue_full", "export_failed", "decode_error"] {
        assert_eq!(
            m.get("netagent_otlp_spans_dropped_total", &[("reason", reason)]),
            0.0,
            "{reason}"
        );
    }
    let exported = m.get("netagent_otlp_spans_exported_total", &[]);
    assert!(
        (1.0..=20.0).contains(&exported),
        "about 10 spans a second exported: {exported}"
    );
    // Most never reached the ring: the kernel held each CPU to the cap.
    let dump = map_dump(agent.child.id(), "span_rate").expect("span_rate map");
    let capped: u64 = field_values(&dump, "capped").iter().sum();
    assert!(
        capped as f64 >= 2.0 * n as f64 - 2.0 * 20.0 * num_cpus() as f64,
        "kernel dropped {capped} of {} spans over the cap",
        2 * n
    );
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn otlp_metrics_equal_the_prometheus_scrape() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let receiver = OtlpReceiver::http();
    let agent = otlp_agent(
        &receiver,
        "http/protobuf",
        "  traces: false\n  metrics_interval_seconds: 0.5\n",
    );
    let srv = Server::start(SERVER, &["--tcp4", "0"]);
    let port = srv.port("tcp4").to_string();
    testgen(
        CLIENT,
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{port}"),
            "--connects",
            "17",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500)); // at least two pushes after the traffic
    receiver.clear();
    let r = receiver.wait_for(Duration::from_secs(5), |r| r.requests >= 1);
    assert!(
        r.errors.is_empty(),
        "receiver rejected requests: {:?}",
        r.errors
    );
    let scrape = agent.metrics();
    let want = scrape.get(
        "netagent_connect_total",
        &[("process", "cli"), ("proto", "tcp"), ("dport", &port)],
    );
    assert_eq!(want, 17.0);
    let got: Vec<f64> = r
        .points
        .iter()
        .filter(|p| {
            p.metric == "netagent_connect_total"
                && p.attributes.contains(&("process".into(), "cli".into()))
                && p.attributes.contains(&("dport".into(), port.clone()))
        })
        .map(|p| p.value)
        .collect();
    assert!(
        !got.is_empty(),
        "no netagent_connect_total point for the flow"
    );
    assert!(
        got.iter().all(|v| *v == want),
        "OTLP {got:?} vs scrape {want}"
    );
    let p = r
        .points
        .iter()
        .find(|p| p.metric == "netagent_connect_total")
        .unwrap();
    assert!(p.monotonic && p.cumulative && p.kind == "sum");
    // Every Prometheus family arrived under the same name.
    let names: BTreeSet<&str> = r.points.iter().map(|p| p.metric.as_str()).collect();
    for n in [
        "netagent_edge_total",
        "netagent_tcp_connections_opened_total",
        "netagent_build_info",
    ] {
        assert!(names.contains(n), "{n} missing from OTLP metrics");
    }
}

#[test]
fn dogstatsd_counter_deltas_sum_to_the_connects() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let listener = StatsdListener::new();
    let agent = statsd_agent(&listener, "  tags: [\"env:test\"]\n");
    let srv = Server::start(SERVER, &["--tcp4", "0", "--delay-ms", "5"]);
    let port = srv.port("tcp4").to_string();
    let target = format!("127.0.0.1:{port}");
    testgen(CLIENT, &["client", "--tcp4", &target, "--connects", "11"]);
    std::thread::sleep(Duration::from_millis(500));
    testgen(
        CLIENT,
        &[
            "client",
            "--tcp4",
            &target,
            "--connects",
            "7",
            "--exchanges",
            "3",
        ],
    );
    let is_flow = |l: &common::receivers::StatsdLine| {
        l.name == "netagent.connect"
            && l.kind == "c"
            && l.tags.contains(&("process".into(), "cli".into()))
            && l.tags.contains(&("proto".into(), "tcp".into()))
            && l.tags.contains(&("dport".into(), port.clone()))
            && l.tags.contains(&("env".into(), "test".into()))
    };
    let is_dist = |l: &common::receivers::StatsdLine| {
        l.name == "netagent.tx_duration_seconds" && l.kind == "d"
    };
    // Counters and span distributions leave in separate flushes: wait for both.
    let lines = listener.wait_for(Duration::from_secs(5), |ls| {
        ls.iter()
            .filter(|l| is_flow(l))
            .map(|l| l.value)
            .sum::<f64>()
            >= 19.0
            && ls.iter().filter(|l| is_dist(l)).count() >= 3
    });
    let total: f64 = lines.iter().filter(|l| is_flow(l)).map(|l| l.value).sum();
    assert_eq!(total, 19.0, "11 + 7 connects + 1 exchange connection");
    assert!(
        lines.iter().filter(|l| is_flow(l)).count() >= 2,
        "sent as deltas over intervals"
    );
    let dists: Vec<_> = lines.iter().filter(|l| is_dist(l)).collect();
    assert!(
        dists.len() >= 3,
        "span durations as distributions: {dists:?}"
    );
    drop(agent);
}

/// Over `statsd.max_spans_per_second` the kernel drops spans before the
/// ring, and the lines sent carry the rate that stands for them: summed
/// over the lines, 1 / rate counts every span. A CPU over the cap for a
/// whole second keeps spans at random in the next (`keep` set).
#[test]
fn dogstatsd_spans_over_the_cap_are_sampled_and_weighted() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let listener = StatsdListener::new();
    let agent = statsd_agent(&listener, "  max_spans_per_second: 10\n");
    // 10 ms a response: ~100 exchanges a second, over the cap for ~2 s.
    let srv = Server::start(SERVER, &["--tcp4", "0", "--delay-ms", "10"]);
    let target = format!("127.0.0.1:{}", srv.port("tcp4"));
    let n = 200;
    let started = std::time::Instant::now();
    testgen(
        CLIENT,
        &["client", "--tcp4", &target, "--exchanges", &n.to_string()],
    );
    let seconds = started.elapsed().as_secs_f64();
    let dump = map_dump(agent.child.id(), "span_rate").expect("span_rate map");
    assert!(
        field_values(&dump, "keep").iter().any(|&k| k > 0),
        "no CPU keeps spans at random after {seconds:.1} s over the cap: {dump}"
    );
    // A later exchange after a quiet second: its spans pass and carry the
    // weight of the last sampled-out ones.
    std::thread::sleep(Duration::from_millis(2500));
    testgen(CLIENT, &["client", "--tcp4", &target, "--exchanges", "1"]);
    let spans = (2 * (n + 1)) as f64;
    let is_dist = |l: &common::receivers::StatsdLine| {
        l.name == "netagent.tx_duration_seconds" && l.kind == "d"
    };
    let weight = |ls: &[common::receivers::StatsdLine]| -> f64 {
        ls.iter()
            .filter(|l| is_dist(l))
            .map(|l| 1.0 / l.sample_rate.unwrap_or(1.0))
            .sum()
    };
    let lines = listener.wait_for(Duration::from_secs(10), |ls| weight(ls) >= spans - 0.01);
    let sent = lines.iter().filter(|l| is_dist(l)).count();
    assert!(
        (weight(&lines) - spans).abs() < 0.01,
        "lines weigh {} for {spans} spans ({sent} lines)",
        weight(&lines)
    );
    assert!(
        sent as f64 <= 10.0 * (seconds.ceil() + 1.0) * num_cpus() as f64 + 2.0,
        "{sent} lines in {seconds:.1} s: the kernel holds each CPU to 10 spans a second"
    );
    assert!(
        lines.iter().any(|l| is_dist(l) && l.sample_rate.is_some()),
        "sampled lines carry @rate"
    );
    let m = agent.metrics();
    assert_eq!(
        m.get("netagent_statsd_dropped_total", &[("reason", "sampled")]),
        spans - sent as f64,
        "sampled out = seen - sent"
    );
    assert_eq!(
        m.get(
            "netagent_statsd_dropped_total",
            &[("reason", "span_buffer_full")]
        ),
        0.0
    );
}
