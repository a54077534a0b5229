//! The network guard (scripts/net-guard.sh) that scripts/test.sh and
//! scripts/bench/run.sh run around the suite: it must see a packet that
//! leaves for an outside address, name it, ignore loopback and the suite's
//! subnets, and vanish with the process it guards. Run inside a test
//! network namespace (with its own nftables), so the packets it must
//! catch never reach the root namespace — where the suite's own guard is
//! counting.

mod common;
use common::netns::{cleanup_stale, NetnsPair};
use common::*;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/net-guard.sh");

fn guard(net: &NetnsPair, ns: &str, args: &[&str]) -> Output {
    let mut argv = vec![SCRIPT];
    argv.extend_from_slice(args);
    net.exec_unchecked(ns, &argv)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_guard_names_what_left_and_goes_away_with_its_run() {
    let _g = serial();
    if !require_bpf() || !require(have("nft"), "nft (Debian package nftables) not installed") {
        return;
    }
    cleanup_stale();
    let net = NetnsPair::new("guard");
    let ns = net.a.clone();
    // An "outside" network, reached through the peer namespace (which
    // forwards nothing: the packets end there).
    net.exec(
        &ns,
        &[
            "ip",
            "route",
            "add",
            "192.0.2.0/24",
            "via",
            &net.b_ip.to_string(),
        ],
    );

    let mut run = Command::new("sleep").arg("120").spawn().unwrap();
    let pid = run.id().to_string();
    let out = guard(&net, &ns, &["start", &pid]);
    assert!(out.status.success(), "{}", text(&out));
    let out = guard(&net, &ns, &["report", &pid]);
    assert!(out.status.success(), "nothing sent yet: {}", text(&out));
    assert!(text(&out).contains("0 packets"), "{}", text(&out));

    // Three datagrams to an outside address, and some to places that are
    // allowed: loopback, the peer namespace (10.203.0.0/16).
    let send = |dst: &str, n: usize| {
        let cmd = format!("for i in $(seq {n}); do echo x > /dev/udp/{dst}/9; done");
        net.exec(&ns, &["bash", "-c", &cmd]);
    };
    send("192.0.2.99", 3);
    send("127.0.0.1", 2);
    send(&net.b_ip.to_string(), 2);
    let out = guard(&net, &ns, &["report", &pid]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("192.0.2.99 packets=3 "), "{report}");
    assert!(!report.contains("127.0.0.1"), "{report}");
    assert!(!report.contains(&net.b_ip.to_string()), "{report}");

    // The run ends (here by SIGKILL): its watchdog removes the table.
    run.kill().unwrap();
    run.wait().unwrap();
    let table = format!("netagent_guard_{pid}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tables = net.exec(&ns, &["nft", "list", "tables"]);
        let tables = String::from_utf8_lossy(&tables.stdout).into_owned();
        if !tables.contains(&table) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{table} still there after its run was killed: {tables}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
