//! Real podman containers (Debian's podman 4.3 as root, private storage,
//! cgroupfs manager, runc): traffic from inside them under known comms is
//! counted exactly per container name, which comes from containers/storage's
//! `containers.json`; the service map shows the call by name.

mod common;

use std::time::{Duration, Instant};

use common::runtimes::podman::Podman;
use common::runtimes::{owner, remove_rootfs, wire};
use common::*;

#[test]
fn podman_containers_are_counted_by_name() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let started = Instant::now();
    let Some(podman) = Podman::start() else {
        require(false, "podman not installed: scripts/setup.sh installs it");
        return;
    };
    let (cli, srv) = (unique_comm("pmcli"), unique_comm("pmsrv"));
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: cli\n    match_comm: \"{cli}\"\n  - name: srv\n    match_comm: \"{srv}\"\n\
         containers:\n  storage_root: \"{}\"\n  storage_run_root: \"{}\"\n  prune_interval_seconds: 1\n",
        podman.root.display(),
        podman.runroot.display()
    ));
    let cache = podman.run(
        "cache",
        &[
            "/bin/netagent-testgen",
            "--comm",
            &srv,
            "serve",
            "--tcp4",
            "6379",
            "--bind4",
            "0.0.0.0",
        ],
    );
    let app = podman.run(
        "app",
        &[
            "/bin/netagent-testgen",
            "--comm",
            "idle",
            "serve",
            "--tcp4",
            "0",
        ],
    );
    let tag = format!("{:x}", std::process::id() % 0x10000);
    let (_, cache_ip) = wire(app.pid, cache.pid, 243, &format!("{tag}p"));
    let out = podman.testgen(
        &app.name,
        &cli,
        &[
            "client",
            "--tcp4",
            &format!("{cache_ip}:6379"),
            "--connects",
            "9",
        ],
    );
    assert_eq!(out["tcp4"]["connects_ok"], 9, "{out}");

    let opened = "netagent_tcp_connections_opened_total";
    let mut app_l = owner("cli", "app", &app.id, "", "");
    app_l.push(("direction", "outbound"));
    let mut cache_l = owner("srv", "cache", &cache.id, "", "");
    cache_l.push(("direction", "inbound"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let m = loop {
        let m = agent.metrics();
        if m.get(opened, &cache_l) == 9.0 || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let why = format!("{:?}", m.series(opened));
    assert_eq!(m.get(opened, &app_l), 9.0, "{why}");
    assert_eq!(m.get(opened, &cache_l), 9.0, "{why}");
    assert_eq!(m.series(opened).len(), 2, "{why}");
    for (c, name) in [(&app, "app"), (&cache, "cache")] {
        let labels = [
            ("container_id", c.id.as_str()),
            ("container", name),
            ("pod", ""),
            ("namespace", ""),
            ("image", podman.image.as_str()),
            ("runtime", "podman"),
        ];
        assert_eq!(
            m.get("netagent_container_info", &labels),
            1.0,
            "{:?}",
            m.series("netagent_container_info")
        );
    }
    assert_eq!(
        m.get(
            "netagent_container_metadata_reads_total",
            &[("runtime", "podman"), ("result", "found")]
        ),
        2.0
    );
    let g: serde_json::Value =
        serde_json::from_str(&http_get(agent.port, "/api/v1/graph", None).unwrap()).unwrap();
    let edge = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "container:app" && e["target"] == "container:cache")
        .unwrap_or_else(|| panic!("no edge app -> cache: {g}"));
    assert_eq!(edge["connects_total"], 9);
    drop(podman);
    remove_rootfs();
    eprintln!("podman test took {:?}", started.elapsed());
}
