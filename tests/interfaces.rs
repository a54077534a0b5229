//! Per-interface traffic from the TC programs: exact counts on both ends of
//! a veth, interfaces appearing and vanishing while the agent runs, and
//! coexistence with TC filters that are not ours.

mod common;
use common::hostlink::{HostLink, RootVeth};
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INTERVAL: &str = "interface_stats:\n  interval_seconds: 0.3\n";

/// `NA_IFACE_DIRECT` (bpf/netagent.h): entries of `iface_direct`.
const IFACE_DIRECT: u32 = 4096;

/// The agent inside a namespace, scraped with curl from inside it (so the
/// scrape itself never crosses the veth being measured).
struct NsAgent {
    child: Child,
    ns: String,
    port: u16,
    _dir: TempDir,
}

impl NsAgent {
    fn start(ns: &str) -> NsAgent {
        let dir = TempDir::new("nsagent");
        let port = free_port();
        let cfg = dir.0.join("config.yaml");
        std::fs::write(
            &cfg,
            format!("targets: []\n{INTERVAL}export:\n  listen_addr: \"127.0.0.1:{port}\"\n"),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, AGENT, "--config"])
            .arg(&cfg)
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let a = NsAgent {
            child,
            ns: ns.to_string(),
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while a.get("/health").is_none() {
            assert!(Instant::now() < deadline, "agent in {ns} not ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        a
    }

    fn get(&self, path: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-sf", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn metrics(&self) -> Metrics {
        Metrics::parse(&self.get("/metrics").expect("scrape agent in namespace"))
    }
}

impl Drop for NsAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn iface_counts(m: &Metrics, iface: &str) -> [f64; 4] {
    let get = |name: &str, dir: &str| {
        m.series(name)
            .iter()
            .find(|(l, _)| l["interface"] == iface && l["direction"] == dir)
            .map(|(_, v)| *v)
            .unwrap_or(f64::NAN)
    };
    [
        get("netagent_interface_packets_total", "ingress"),
        get("netagent_interface_bytes_total", "ingress"),
        get("netagent_interface_packets_total", "egress"),
        get("netagent_interface_bytes_total", "egress"),
    ]
}

fn delta(after: [f64; 4], before: [f64; 4]) -> [f64; 4] {
    [0, 1, 2, 3].map(|i| after[i] - before[i])
}

#[test]
fn packets_and_bytes_across_a_veth_are_exact_on_both_ends() {
    let _g = serial();
    if !require_bpf() || !require(have("curl"), "curl not installed") {
        return;
    }
    let link = HostLink::new("ifc");
    let host = Agent::start_with_yaml(&format!(
        "targets: []\ninterfaces: [\"{}\"]\n{INTERVAL}",
        link.host_if
    ));
    // Inside, another interface holds the ns end's `iface_direct` entry
    // (same ifindex modulo its size, attached first: "aaa0" < "eth0"), so
    // the ns end is counted by the fallback hash, the root end by slot.
    let ifindex = |ns: Option<&str>, dev: &str| -> u32 {
        let path = format!("/sys/class/net/{dev}/ifindex");
        let out = match ns {
            Some(ns) => {
                Command::new("ip")
                    .args(["netns", "exec", ns, "cat", &path])
                    .output()
                    .unwrap()
                    .stdout
            }
            None => std::fs::read(&path).unwrap(),
        };
        String::from_utf8_lossy(&out).trim().parse().unwrap()
    };
    let ns_index = ifindex(Some(&link.ns), &link.ns_if);
    let colliding = (ns_index + IFACE_DIRECT).to_string();
    assert!(Command::new("ip")
        .args(["-n", &link.ns, "link", "add", "aaa0", "index", &colliding])
        .args(["type", "veth", "peer", "name", "aaa1"])
        .status()
        .unwrap()
        .success());
    let inside = NsAgent::start(&link.ns);
    // Sinks (no replies, so nothing else crosses the link).
    let host_sink = Server::start(
        "nettest-srv",
        &[
            "--udp4",
            "0",
            "--sink",
            "--bind4",
            &link.host_ip.to_string(),
        ],
    );
    let mut ns_sink_cmd = link.exec();
    ns_sink_cmd.extend([
        testgen_exe().to_string(),
        "--comm".into(),
        "nettest-srv".into(),
        "serve".into(),
        "--udp4".into(),
        "0".into(),
        "--sink".into(),
        "--bind4".into(),
        link.ns_ip.to_string(),
        "--max-seconds".into(),
        "60".into(),
    ]);
    let mut ns_sink = Command::new(&ns_sink_cmd[0])
        .args(&ns_sink_cmd[1..])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(ns_sink.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let ns_port: serde_json::Value = serde_json::from_str(&line).unwrap();
    let ns_port = ns_port["udp4"].as_u64().unwrap();

    std::thread::sleep(Duration::from_millis(800)); // two collections
    let before_host = iface_counts(&host.metrics(), &link.host_if);
    let before_ns = iface_counts(&inside.metrics(), &link.ns_if);

    // Root -> namespace: p datagrams of s bytes; namespace -> root: q of t.
    let (p, s, q, t) = (37.0, 300.0, 23.0, 1000.0);
    testgen(
        "nettest-cli",
        &[
            "client",
            "--udp4",
            &format!("{}:{ns_port}", link.ns_ip),
            "--sends",
            "37",
            "--size",
            "300",
        ],
    );
    let mut cmd = link.exec();
    cmd.extend([
        testgen_exe().to_string(),
        "--comm".into(),
        "nettest-cli".into(),
        "client".into(),
        "--udp4".into(),
        format!("{}:{}", link.host_ip, host_sink.port("udp4")),
        "--sends".into(),
        "23".into(),
        "--size".into(),
        "1000".into(),
    ]);
    assert!(Command::new(&cmd[0])
        .args(&cmd[1..])
        .status()
        .unwrap()
        .success());

    std::thread::sleep(Duration::from_millis(800));
    // Ethernet 14 + IPv4 20 + UDP 8 bytes around each payload.
    let frame = |payload: f64| payload + 42.0;
    let host_d = delta(iface_counts(&host.metrics(), &link.host_if), before_host);
    let ns_d = delta(iface_counts(&inside.metrics(), &link.ns_if), before_ns);
    assert_eq!(
        host_d,
        [q, q * frame(t), p, p * frame(s)],
        "root end: [in pkts, in bytes, out pkts, out bytes]"
    );
    assert_eq!(ns_d, [p, p * frame(s), q, q * frame(t)], "namespace end");
    // Which path counted each end.
    let has_ifindex = |pid: u32, map: &str, index: u32| {
        let dump = map_dump(pid, map).unwrap_or_else(|| panic!("map {map} of {pid}"));
        serde_json::to_string(&dump)
            .unwrap()
            .contains(&format!("\"ifindex\":{index}"))
    };
    let host_index = ifindex(None, &link.host_if);
    assert!(
        has_ifindex(host.child.id(), "iface_direct", host_index),
        "root end by slot"
    );
    assert!(
        has_ifindex(inside.child.id(), "iface_stats", ns_index)
            && has_ifindex(inside.child.id(), "iface_direct", ns_index + IFACE_DIRECT),
        "namespace end by ifindex, its colliding neighbour by slot"
    );
    let _ = ns_sink.kill();
    let _ = ns_sink.wait();
}

fn tc_filters(dev: &str) -> String {
    let out = Command::new("tc")
        .args(["filter", "show", "dev", dev, "ingress"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether any of our TC programs is loaded (bpftool 7.1 cannot list TCX
/// attachments per device, so after exit we check the programs are gone).
fn tc_programs_loaded() -> bool {
    bpftool_programs()
        .iter()
        .any(|(_, n)| n.contains("on_tc_ingress") || n.contains("on_tc_egress"))
}

/// The agent's own view: `tc/<dev>` attached (link present with its ifindex).
fn attached_per_health(port: u16, dev: &str) -> bool {
    let health: serde_json::Value =
        serde_json::from_str(&http_get(port, "/health", None).unwrap()).unwrap();
    health["probes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == format!("tc/{dev}") && p["attached"] == true)
}

#[test]
fn new_interfaces_are_attached_vanished_ones_dropped_and_foreign_filters_kept() {
    let _g = serial();
    if !require_bpf() || !require(have("tc"), "tc (iproute2) not installed") {
        return;
    }
    // An interface with a TC filter that is not ours, before the agent starts.
    let old = RootVeth::new('o');
    assert!(Command::new("sh")
        .arg("-c")
        .arg(format!("tc qdisc add dev {0} clsact && tc filter add dev {0} ingress protocol all prio 10 u32 match u32 0 0 classid :1", old.a))
        .status()
        .unwrap()
        .success());
    let filters_before = tc_filters(&old.a);
    assert!(filters_before.contains("u32"));

    let mut agent =
        Agent::start_with_yaml(&format!("targets: []\ninterfaces: [\"nah*\"]\n{INTERVAL}"));
    let wait_for = |what: &str, cond: &dyn Fn(&Metrics) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(3); // 10 intervals
        loop {
            let m = agent.metrics();
            if cond(&m) {
                return m;
            }
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let has = |m: &Metrics, dev: &str| {
        m.series("netagent_interface_active")
            .iter()
            .any(|(l, _)| l["interface"] == dev)
    };
    wait_for("pre-existing interface attached", &|m| has(m, &old.a));
    assert!(attached_per_health(agent.port, &old.a));

    let started = Instant::now();
    let new = RootVeth::new('n');
    wait_for("new interface attached", &|m| {
        has(m, &new.a) && has(m, &new.b)
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1000),
        "attached after {took:?}"
    );
    assert!(attached_per_health(agent.port, &new.a));

    new.delete();
    wait_for("vanished interface's series removed", &|m| {
        !has(m, &new.a) && !has(m, &new.b)
    });

    let status = agent.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0));
    assert_eq!(tc_filters(&old.a), filters_before, "foreign filter changed");
    assert!(
        !tc_programs_loaded(),
        "our TC programs still loaded after exit"
    );
}

/// `tc -j filter show dev <dev> <hook>`: (kind, BPF program name) per
/// filter entry that carries options.
fn tc_filter_list(dev: &str, hook: &str) -> Vec<(String, String)> {
    let out = Command::new("tc")
        .args(["-j", "filter", "show", "dev", dev, hook])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|f| f.get("options").is_some())
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or("").to_string(),
                f["options"]["bpf_name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn ours(dev: &str, hook: &str, prog: &str) -> usize {
    tc_filter_list(dev, hook)
        .iter()
        .filter(|(kind, name)| kind == "bpf" && name.starts_with(prog))
        .count()
}

/// Kernels before 6.6 get netlink TC filters, which outlive a killed agent.
/// Forced here with `interface_stats.netlink_filters`: after SIGKILL the
/// filters remain; the next agent replaces them (one of each, not two) and
/// leaves another tool's filter on the same hook alone; SIGTERM removes ours.
#[test]
fn netlink_filters_left_by_sigkill_are_replaced_not_duplicated() {
    let _g = serial();
    if !require_bpf() || !require(have("tc"), "tc (iproute2) not installed") {
        return;
    }
    let veth = RootVeth::new('n');
    let dev = veth.a.clone();
    let yaml = format!(
        "targets: []\ninterfaces: [\"{dev}\"]\ninterface_stats:\n  netlink_filters: true\n  \
         interval_seconds: 0.3\n"
    );
    let attached = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if ours(&dev, "ingress", "on_tc_ingress") == n
                && ours(&dev, "egress", "on_tc_egress") == n
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    let mut first = Agent::start_with_yaml(&yaml);
    assert!(
        attached(1),
        "first agent: {:?}",
        tc_filter_list(&dev, "ingress")
    );
    // Someone else's filter on the same hook.
    let status = Command::new("tc")
        .args(["filter", "add", "dev", &dev, "ingress", "prio", "7", "u32"])
        .args(["match", "u32", "0", "0", "classid", "1:1"])
        .status()
        .unwrap();
    assert!(status.success());
    first.signal_and_wait(libc::SIGKILL);
    assert_eq!(ours(&dev, "ingress", "on_tc_ingress"), 1, "left by SIGKILL");

    let mut second = Agent::start_with_yaml(&yaml);
    assert!(
        attached(1),
        "after restart: {:?} / {:?}",
        tc_filter_list(&dev, "ingress"),
        tc_filter_list(&dev, "egress")
    );
    let foreign = |dev: &str| {
        tc_filter_list(dev, "ingress")
            .iter()
            .filter(|(k, _)| k == "u32")
            .count()
    };
    assert!(foreign(&dev) >= 1, "the other filter was removed");
    let up = second
        .metrics()
        .series("netagent_probe_up")
        .into_iter()
        .find(|(l, _)| l["probe"] == format!("tc/{dev}"))
        .map(|(_, v)| v);
    assert_eq!(up, Some(1.0), "netlink-attached interface reported up");
    assert_eq!(second.signal_and_wait(libc::SIGTERM).code(), Some(0));
    assert!(
        attached(0),
        "SIGTERM leaves filters: {:?}",
        tc_filter_list(&dev, "ingress")
    );
    assert!(foreign(&dev) >= 1, "the other filter was removed at exit");
}
