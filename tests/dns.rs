//! DNS, end to end and exact: a DNS server run by the test (testgen
//! dns-serve, in namespace `b`) answers after a fixed delay — NOERROR with
//! A/AAAA records (and a CNAME) for some names, NXDOMAIN, SERVFAIL, and
//! never for some — to clients in namespace `a` with known process names:
//! glibc's resolver (a copy of `getent` under a unique name, run with
//! `ip netns exec`, which puts the test's resolv.conf and nsswitch.conf
//! over /etc in that namespace only), raw UDP queries and TCP queries
//! (testgen dns-query). Every count per qtype/rcode/timeout is asserted
//! exactly, durations are at least the server's delay, and the edge of a
//! TCP connection the client made to an address it had just resolved
//! carries the name (`dst_name`). The BPF cost of the DNS programs during
//! the traffic is measured with the kernel's run-time stats and printed.

mod common;
use common::netns::{cleanup_stale, testgen_in, NetnsPair, NsServer};
use common::receivers::{AttrValue, OtlpReceiver};
use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The server's delay before every answer.
const DELAY_MS: u64 = 30;

fn getent_comm() -> &'static str {
    static C: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    C.get_or_init(|| unique_comm("dnsget"))
}

fn query_comm() -> &'static str {
    static C: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    C.get_or_init(|| unique_comm("dnsq"))
}

/// /etc/netns/<ns>/ with the test's resolv.conf and nsswitch.conf, which
/// `ip netns exec` bind-mounts over /etc/; removed on drop.
struct NetnsEtc(PathBuf);

impl NetnsEtc {
    fn new(ns: &str, server: &str) -> NetnsEtc {
        let dir = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        // One try per query, 1 s each: a lookup of a name that is never
        // answered sends exactly one query per record type.
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {server}\noptions attempts:1 timeout:1\n"),
        )
        .unwrap();
        std::fs::write(dir.join("nsswitch.conf"), "hosts: files dns\n").unwrap();
        NetnsEtc(dir)
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // /etc/netns itself only if nothing else uses it.
        let _ = std::fs::remove_dir("/etc/netns");
    }
}

/// `getent` under the test's process name.
struct Getent(TempDir);

impl Getent {
    fn new() -> Getent {
        let dir = TempDir::new("dnsgetent");
        let src = String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v getent"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        std::fs::copy(src.trim(), dir.0.join(getent_comm())).unwrap();
        Getent(dir)
    }

    fn path(&self) -> String {
        self.0 .0.join(getent_comm()).display().to_string()
    }
}

/// (run time ns, runs) of a BPF program, from bpftool.
fn run_stats(id: u64) -> (u64, u64) {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show", "id", &id.to_string()])
        .output()
        .expect("bpftool");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (
        v["run_time_ns"].as_u64().unwrap_or(0),
        v["run_cnt"].as_u64().unwrap_or(0),
    )
}

fn sysctl(key: &str, value: Option<&str>) -> String {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    if let Some(v) = value {
        let _ = std::fs::write(&path, v);
    }
    old.trim().to_string()
}

#[test]
fn requests_answers_timeouts_durations_and_dst_name_are_exact() {
    let _g = serial();
    if !require_bpf()
        || !require(have("ip"), "ip (iproute2) needed")
        || !require(have("getent"), "getent (libc-bin) needed")
    {
        return;
    }
    cleanup_stale();
    let mut net = NetnsPair::new("dns");
    let leg = net.add_leg("dns");
    let (web_ns, web_ip4, web_ip6) = (leg.ns.clone(), leg.ip.to_string(), leg.ip6.to_string());
    let (srv4, srv6) = (net.b_ip.to_string(), net.b_ip6.to_string());
    // A TCP listener where the names point (behind the DNS server's
    // namespace, so the server's own address is never a resolved one),
    // for the connections after a lookup.
    let web = NsServer::start(&net, &web_ns, "dnsweb", &["--tcp4", "0", "--tcp6", "0"]);
    let dns_srv = {
        let mut argv: Vec<String> = vec![
            testgen_exe().into(),
            "--comm".into(),
            "dnssrv".into(),
            "dns-serve".into(),
            "--bind".into(),
            "::".into(),
            "--port".into(),
            "53".into(),
            "--delay-ms".into(),
            DELAY_MS.to_string(),
        ];
        for z in [
            format!("web.test=A:{web_ip4}"),
            format!("web.test=AAAA:{web_ip6}"),
            format!("v4only.test=A:{web_ip4}"),
            format!("six.test=AAAA:{web_ip6}"),
            "alias6.test=CNAME:six.test".to_string(),
            "nx.test=NXDOMAIN".to_string(),
            "fail.test=SERVFAIL".to_string(),
            "never.test=DROP".to_string(),
        ] {
            argv.push("--zone".into());
            argv.push(z);
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut child = net.spawn(&net.b, &argv);
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.contains("\"udp\":53"), "dns-serve said {line:?}");
        child
    };
    let _etc = NetnsEtc::new(&net.a, &srv4);
    let getent = Getent::new();
    let receiver = OtlpReceiver::grpc();
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: \"getent\"\n    match_comm: \"{}\"\n  \
         - name: \"dnsq\"\n    match_comm: \"{}\"\n\
         dns:\n  timeout_seconds: 2\n\
         otel:\n  endpoint: \"{}\"\n  protocol: grpc\n",
        getent_comm(),
        query_comm(),
        receiver.endpoint()
    ));
    // The DNS programs are attached, and their ids for the run-time stats.
    let progs = programs_of(agent.child.id());
    let ids: Vec<(String, u64)> = [
        "on_dns_egress",
        "on_dns_ingress",
        "on_connect4",
        "on_sendmsg4",
    ]
    .iter()
    .map(|name| {
        let id = progs
            .iter()
            .find(|(_, n)| kernel_prog_name(name) == n)
            .unwrap_or_else(|| panic!("{name} not loaded: {progs:?}"))
            .0;
        (name.to_string(), id)
    })
    .collect();
    let stats_before = sysctl("kernel.bpf_stats_enabled", Some("1"));
    let runs_before: Vec<(u64, u64)> = ids.iter().map(|(_, id)| run_stats(*id)).collect();

    // glibc: `getent ahostsv4` asks for A only; `getent hosts` asks for
    // AAAA first and for A only when AAAA found nothing.
    let ge = |args: &[&str]| {
        let mut argv = vec![getent.path()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        net.exec_unchecked(&net.a, &argv)
    };
    for _ in 0..3 {
        let out = ge(&["ahostsv4", "web.test."]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&web_ip4),
            "{out:?}"
        );
    }
    for _ in 0..2 {
        assert_eq!(ge(&["ahostsv4", "nx.test."]).status.code(), Some(2));
        assert_eq!(ge(&["ahostsv4", "fail.test."]).status.code(), Some(2));
    }
    let started = Instant::now();
    assert_eq!(ge(&["ahostsv4", "never.test."]).status.code(), Some(2));
    assert!(started.elapsed() >= Duration::from_millis(900));
    // AAAA found: one query.
    assert!(String::from_utf8_lossy(&ge(&["hosts", "six.test."]).stdout).contains(&web_ip6));
    // No AAAA: AAAA (NOERROR, no answer), then A.
    assert!(String::from_utf8_lossy(&ge(&["hosts", "v4only.test."]).stdout).contains(&web_ip4));

    // Raw UDP queries from an unconnected socket, a garbage datagram, and
    // TCP queries followed by connections to what they resolved.
    let dns = format!("{srv4}:53");
    let q = |args: &[&str]| {
        let mut argv = vec!["dns-query", "--server", dns.as_str()];
        argv.extend_from_slice(args);
        let (code, out) = testgen_in(&net, &net.a, query_comm(), &argv);
        assert_eq!(code, 0, "{argv:?}: {out}");
        out
    };
    q(&["--name", "web.test", "--qtype", "A", "--count", "2"]);
    q(&["--name", "nx.test", "--qtype", "AAAA"]);
    q(&["--name", "web.test", "--qtype", "SRV"]);
    let out = q(&[
        "--name",
        "never.test",
        "--qtype",
        "TXT",
        "--timeout-ms",
        "300",
    ]);
    assert_eq!(out["results"][0]["rcode"], "timeout", "{out}");
    q(&["--name", "x", "--garbage", "5"]);
    // To the server's IPv6 address (sendmsg6 marks the socket).
    let dns6 = format!("[{srv6}]:53");
    let (code, out) = testgen_in(
        &net,
        &net.a,
        query_comm(),
        &[
            "dns-query",
            "--server",
            &dns6,
            "--name",
            "web.test",
            "--qtype",
            "AAAA",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let web4 = web.port("tcp4").to_string();
    let out = q(&[
        "--tcp",
        "--name",
        "web.test",
        "--qtype",
        "A",
        "--count",
        "2",
        "--connect-port",
        &web4,
    ]);
    assert_eq!(out["connected"], format!("{web_ip4}:{web4}"), "{out}");
    let web6 = web.port("tcp6").to_string();
    let out = q(&[
        "--name",
        "alias6.test",
        "--qtype",
        "AAAA",
        "--connect-port",
        &web6,
    ]);
    assert_eq!(out["connected"], format!("[{web_ip6}]:{web6}"), "{out}");

    // Every query is answered or past its 2 s timeout.
    std::thread::sleep(Duration::from_millis(2300));
    let runs_after: Vec<(u64, u64)> = ids.iter().map(|(_, id)| run_stats(*id)).collect();
    sysctl("kernel.bpf_stats_enabled", Some(&stats_before));
    for ((name, _), (b, a)) in ids.iter().zip(runs_before.iter().zip(&runs_after)) {
        let (ns, runs) = (a.0 - b.0, a.1 - b.1);
        eprintln!(
            "BPF run stats during the DNS traffic: {name}: {runs} runs, {} ns per run",
            ns.checked_div(runs).unwrap_or(0)
        );
    }

    let m = agent.metrics();
    let requests = |process: &str, qtype: &str, rcode: &str| {
        m.get(
            "netagent_dns_requests_total",
            &[
                ("process", process),
                ("server", &srv4),
                ("qtype", qtype),
                ("rcode", rcode),
            ],
        )
    };
    let all: Vec<String> = m
        .series("netagent_dns_requests_total")
        .iter()
        .map(|(l, v)| format!("{l:?} {v}"))
        .collect();
    let expect = [
        ("getent", "A", "NOERROR", 4.0),
        ("getent", "AAAA", "NOERROR", 2.0),
        ("getent", "A", "NXDOMAIN", 2.0),
        ("getent", "A", "SERVFAIL", 2.0),
        ("getent", "A", "timeout", 1.0),
        ("dnsq", "A", "NOERROR", 4.0),
        ("dnsq", "AAAA", "NXDOMAIN", 1.0),
        ("dnsq", "SRV", "NOERROR", 1.0),
        ("dnsq", "TXT", "timeout", 1.0),
        ("dnsq", "AAAA", "NOERROR", 1.0),
    ];
    for (process, qtype, rcode, n) in expect {
        assert_eq!(
            requests(process, qtype, rcode),
            n,
            "{process} {qtype} {rcode}; all: {all:#?}"
        );
    }
    let v6 = m.get(
        "netagent_dns_requests_total",
        &[
            ("process", "dnsq"),
            ("server", &srv6),
            ("qtype", "AAAA"),
            ("rcode", "NOERROR"),
        ],
    );
    assert_eq!(v6, 1.0, "{all:#?}");
    assert_eq!(all.len(), expect.len() + 1, "{all:#?}");

    // Durations: one per answered request, none below the server's delay.
    let hist = |process: &str, qtype: &str, suffix: &str, le: Option<&str>| {
        let mut l = vec![("process", process), ("qtype", qtype)];
        if let Some(le) = le {
            l.push(("le", le));
        }
        m.get(
            &format!("netagent_dns_request_duration_seconds{suffix}"),
            &l,
        )
    };
    for (process, qtype, answered) in [
        ("getent", "A", 8.0),
        ("getent", "AAAA", 2.0),
        ("dnsq", "A", 4.0),
        ("dnsq", "AAAA", 3.0),
        ("dnsq", "SRV", 1.0),
    ] {
        assert_eq!(
            hist(process, qtype, "_count", None),
            answered,
            "{process} {qtype}"
        );
        assert_eq!(
            hist(process, qtype, "_bucket", Some("0.025")),
            0.0,
            "{process} {qtype}: an answer faster than the server's delay"
        );
        assert!(
            hist(process, qtype, "_sum", None) >= answered * DELAY_MS as f64 / 1000.0,
            "{process} {qtype}"
        );
    }
    assert_eq!(
        m.get("netagent_dns_malformed_total", &[("reason", "short")]),
        1.0
    );
    assert_eq!(
        m.get("netagent_dns_malformed_total", &[("reason", "question")]),
        0.0
    );
    assert_eq!(m.get("netagent_dns_unmatched_answers_total", &[]), 0.0);
    for table in ["pending", "names", "series"] {
        assert_eq!(
            m.get("netagent_dns_table_full_total", &[("table", table)]),
            0.0
        );
    }
    for reason in ["dns_ringbuf_full", "dns_sock_storage_full"] {
        assert_eq!(
            m.get("netagent_events_lost_total", &[("reason", reason)]),
            0.0
        );
    }

    // The connections to the resolved addresses carry the queried name.
    let edge = |ip: &str, port: &str, name: &str| {
        m.get(
            "netagent_edge_total",
            &[
                ("process", "dnsq"),
                ("proto", "tcp"),
                ("dport", port),
                ("dst_ip", ip),
                ("dst_name", name),
            ],
        )
    };
    let edges: Vec<String> = m
        .series("netagent_edge_total")
        .iter()
        .map(|(l, v)| format!("{l:?} {v}"))
        .collect();
    assert_eq!(edge(&web_ip4, &web4, "web.test"), 1.0, "{edges:#?}");
    assert_eq!(edge(&web_ip6, &web6, "alias6.test"), 1.0, "{edges:#?}");
    let bytes = m.get(
        "netagent_bytes_sent_total",
        &[
            ("process", "dnsq"),
            ("proto", "tcp"),
            ("dport", &web4),
            ("dst_ip", &web_ip4),
            ("direction", "outbound"),
            ("dst_name", "web.test"),
        ],
    );
    assert_eq!(bytes, 1.0, "{edges:#?}");
    // The client spans of those connections name the server too.
    let r = receiver.wait_for(Duration::from_secs(15), |r| {
        r.spans.iter().filter(|s| s.kind == 3).count() >= 2
    });
    for (ip, port, name) in [
        (&web_ip4, &web4, "web.test"),
        (&web_ip6, &web6, "alias6.test"),
    ] {
        let span = r
            .spans
            .iter()
            .find(|s| {
                s.kind == 3
                    && s.attributes.get("dst_ip") == Some(&AttrValue::Str(ip.to_string()))
                    && s.attributes.get("dport") == Some(&AttrValue::Int(port.parse().unwrap()))
            })
            .unwrap_or_else(|| panic!("no client span to {ip}:{port}: {r:?}"));
        assert_eq!(
            span.attributes.get("dst_name"),
            Some(&AttrValue::Str(name.into())),
            "{span:?}"
        );
        assert_eq!(
            span.attributes.get("server.address"),
            Some(&AttrValue::Str(name.into())),
            "{span:?}"
        );
    }
    // The DNS server's own address was never resolved: no name there.
    assert!(
        m.series("netagent_edge_total")
            .iter()
            .filter(|(l, _)| l.get("dport").map(String::as_str) == Some("53"))
            .all(|(l, _)| l.get("dst_name").is_none_or(|n| n.is_empty())),
        "{edges:#?}"
    );
    let mut dns_srv = dns_srv;
    let _ = dns_srv.kill();
    let _ = dns_srv.wait();
}

/// DNS depends on the udp_peers programs that mark its sockets: without one
/// of them it is reported unavailable with the reason (and everything else
/// runs); `dns.enabled: false` loads none of its programs; a udp_peers
/// program DNS does not need leaves it on.
#[test]
fn dns_follows_its_marking_programs_and_its_switch() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let dns_feature = |agent: &Agent| -> serde_json::Value {
        let (_, health) = health(agent.port);
        health["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feature"] == "dns")
            .cloned()
            .unwrap_or_else(|| panic!("no dns feature: {health}"))
    };
    let holds = |agent: &Agent, program: &str| {
        programs_of(agent.child.id())
            .iter()
            .any(|(_, n)| n == kernel_prog_name(program))
    };
    let agent = Agent::start_with_yaml("debug:\n  disable_probes: [\"cgroup/sendmsg6\"]\n");
    let f = dns_feature(&agent);
    assert_eq!(f["available"], false, "{f}");
    assert!(
        f["rejected"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("mark DNS sockets")),
        "{f}"
    );
    assert!(!holds(&agent, "on_dns_egress"));
    drop(agent);
    let agent = Agent::start_with_yaml("debug:\n  disable_probes: [\"cgroup/recvmsg4\"]\n");
    assert_eq!(dns_feature(&agent)["available"], true);
    assert!(holds(&agent, "on_dns_egress") && holds(&agent, "on_dns_ingress"));
    drop(agent);
    let agent = Agent::start_with_yaml("dns:\n  enabled: false\n");
    let f = dns_feature(&agent);
    assert_eq!(f["available"], false, "{f}");
    assert!(
        f["rejected"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("dns.enabled is false")),
        "{f}"
    );
    assert!(!holds(&agent, "on_dns_egress") && !holds(&agent, "on_dns_ingress"));
    let m = agent.metrics();
    assert!(m.series("netagent_dns_requests_total").is_empty());
}
