//! Container attribution from cgroups, and the per-metric series cap under
//! 100,000 distinct destinations.

mod common;
use common::*;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;

fn v2_root() -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .ok()?
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
        .map(|l| PathBuf::from(l.split_whitespace().nth(1).unwrap()))
}

/// Removes the test cgroups (rmdir, innermost first) even if the test fails.
struct CgroupDirs(Vec<PathBuf>);

impl Drop for CgroupDirs {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn a_process_in_a_docker_shaped_cgroup_is_labelled_with_its_container() {
    let _g = serial();
    let root = v2_root();
    if !require_bpf() || !require(root.is_some(), "no cgroup v2 hierarchy mounted") {
        return;
    }
    let root = root.unwrap();
    let id = format!("{:064x}", 0xfeed_0000_u64 + std::process::id() as u64);
    let parent = root.join(format!("netagent-test-{}", std::process::id()));
    let scope = parent.join(format!("docker-{id}.scope"));
    std::fs::create_dir_all(&scope).unwrap();
    let _dirs = CgroupDirs(vec![parent, scope.clone()]);

    let agent = Agent::start(&[("cli", "nettest-cli")]);
    let srv = Server::start("nettest-srv", &["--tcp4", "0"]);
    let port = srv.port("tcp4");
    // Join the cgroup first, then become the client.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec {} --comm nettest-cli client --tcp4 127.0.0.1:{port} --connects 3",
            scope.display(),
            testgen_exe()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    testgen(
        "nettest-cli",
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{port}"),
            "--connects",
            "2",
        ],
    );

    let m = agent.metrics();
    let opened = |container: &str, container_id: &str| {
        m.get(
            "netagent_tcp_connections_opened_total",
            &[
                ("process", "cli"),
                ("container", container),
                ("container_id", container_id),
                ("pod", ""),
                ("namespace", ""),
                ("direction", "outbound"),
            ],
        )
    };
    // No docker has state for this id: the container is named by its
    // short id, as `docker ps` shows it.
    assert_eq!(
        opened(&id[..12], &id),
        3.0,
        "{:?}",
        m.series("netagent_tcp_connections_opened_total")
    );
    assert_eq!(opened("", ""), 2.0, "host process: empty container");
    let info = m.series("netagent_container_info");
    assert!(
        info.iter().any(|(l, v)| l["container_id"] == id
            && l["container"] == id[..12]
            && l["runtime"] == "docker"
            && *v == 1.0),
        "{info:?}"
    );
}

#[test]
fn one_hundred_thousand_destinations_stay_within_the_series_cap() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let cap = 1000;
    let n: u32 = 100_000;
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: spray\n    match_comm: nettest-spray\nlimits:\n  max_series: 150000\n  max_series_per_metric: {cap}\n"
    ));
    // A thread's name is its comm: no child process needed.
    let sent = std::thread::Builder::new()
        .name("nettest-spray".into())
        .spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut ok = 0u32;
            for i in 0..n {
                // 127.1.0.0 upwards: every address routes to loopback.
                let ip = Ipv4Addr::from(0x7f01_0000u32 + i);
                if sock.send_to(b"x", (ip, 9)).is_ok() {
                    ok += 1;
                }
            }
            ok
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(sent, n);

    let m = agent.metrics();
    eprintln!("lost: {:?}", m.series("netagent_events_lost_total"));
    let edges = m.series("netagent_edge_total");
    assert_eq!(edges.len(), cap + 1, "cap series plus ~other");
    let total: f64 = edges.iter().map(|(_, v)| v).sum();
    assert_eq!(total, n as f64, "nothing lost, only folded");
    let other = m.get(
        "netagent_edge_total",
        &[
            ("process", "~other"),
            ("proto", "~other"),
            ("dport", "~other"),
            ("dst_ip", "~other"),
            ("actual_dst_ip", "~other"),
            ("actual_dport", "~other"),
            ("dst_name", "~other"),
        ],
    );
    assert_eq!(other, (n as usize - cap) as f64);
    assert_eq!(
        m.get(
            "netagent_series_dropped_total",
            &[("metric", "netagent_edge")]
        ),
        (n as usize - cap) as f64
    );
    let lost: f64 = m
        .series("netagent_events_lost_total")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(lost, 0.0);
}
