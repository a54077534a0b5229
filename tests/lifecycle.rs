//! Start-up errors, exit codes and clean shutdown: nothing stays loaded or
//! attached after SIGTERM or SIGKILL.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// Every loaded BPF program's id.
fn loaded_prog_ids() -> Vec<u64> {
    bpftool_programs().into_iter().map(|(id, _)| id).collect()
}

/// Waits until none of the given program ids is loaded any more.
fn wait_unloaded(ids: &[u64]) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u64> = loaded_prog_ids()
            .into_iter()
            .filter(|i| ids.contains(i))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (program id, name) of every program attached to the cgroup v2 root.
fn cgroup_attachments() -> Vec<(u64, String)> {
    let root = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .expect("cgroup2 mount");
    let out = Command::new("bpftool")
        .args(["cgroup", "show", &root])
        .output()
        .unwrap();
    // "ID  AttachType  AttachFlags  Name" lines after a header.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let id = f.next()?.parse().ok()?;
            Some((id, f.last().unwrap_or_default().to_string()))
        })
        .collect()
}

fn check_signal_cleans_up(sig: i32, expect_code: Option<i32>) {
    // What the agent should load on this kernel, from its own hook table
    // as `netagent probe --json` reports it.
    let mut want: Vec<String> = probe_used_programs(None)
        .iter()
        .map(|n| kernel_prog_name(n).to_string())
        .collect();
    want.sort();
    assert!(
        want.iter().any(|n| n == "on_inet_sock_se"),
        "the core program is used: {want:?}"
    );
    let mut agent = Agent::start(&[("x", "nettest-none")]);
    let held = programs_of(agent.child.id());
    let ids: Vec<u64> = held.iter().map(|(id, _)| *id).collect();
    let mut got: Vec<String> = held
        .iter()
        .map(|(_, n)| kernel_prog_name(n).to_string())
        .collect();
    got.sort();
    assert_eq!(
        got, want,
        "the agent holds exactly the programs of the hooks `netagent probe` says it uses"
    );
    // Ours by id: another agent on the host may attach the same names.
    let cg = cgroup_attachments();
    for hook in ["on_sendmsg4", "on_sendmsg6", "on_recvmsg4", "on_recvmsg6"] {
        assert!(
            cg.iter().any(|(id, n)| n == hook && ids.contains(id)),
            "{hook} not attached: {cg:?}"
        );
    }
    let status = agent.signal_and_wait(sig);
    assert_eq!(
        status.code(),
        expect_code,
        "exit status after signal {sig}: {status}"
    );
    assert_eq!(
        wait_unloaded(&ids),
        Vec::<u64>::new(),
        "programs left after signal {sig}"
    );
    let cg = cgroup_attachments();
    assert!(
        !cg.iter().any(|(id, _)| ids.contains(id)),
        "cgroup hooks left after signal {sig}: {cg:?}"
    );
}

#[test]
fn sigterm_detaches_everything_and_exits_zero() {
    let _g = serial();
    if !require_bpf() || !require(have("bpftool"), "bpftool not installed") {
        return;
    }
    check_signal_cleans_up(libc::SIGTERM, Some(0));
    check_signal_cleans_up(libc::SIGINT, Some(0));
}

#[test]
fn sigkill_leaves_nothing_loaded() {
    let _g = serial();
    if !require_bpf() || !require(have("bpftool"), "bpftool not installed") {
        return;
    }
    check_signal_cleans_up(libc::SIGKILL, None);
}

fn run_agent(args: &[&str], pre: &[&str]) -> (i32, String) {
    let mut cmd = if pre.is_empty() {
        Command::new(AGENT)
    } else {
        let mut c = Command::new(pre[0]);
        c.args(&pre[1..]).arg(AGENT);
        c
    };
    let out = cmd.args(args).output().expect("run netagent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_exits_2_naming_key_and_line() {
    let dir = TempDir::new("badcfg");
    let cfg = dir.0.join("bad.yaml");
    std::fs::write(&cfg, "targets:\n  - name: web\n    match_com: nginx\n").unwrap();
    let (code, err) = run_agent(&["--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("match_com") && err.contains("line 3"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");

    let (code, err) = run_agent(&["--config", "/nonexistent/netagent.yaml"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/netagent.yaml"), "{err}");
}

#[test]
fn missing_capability_exits_1_naming_it() {
    if !require(have("setpriv"), "setpriv (util-linux) not installed") || !require_bpf() {
        return;
    }
    // Root without CAP_BPF/CAP_SYS_ADMIN in the bounding set: execve leaves
    // them out of the effective set.
    let (code, err) = run_agent(
        &["--config", "/dev/null"],
        &[
            "setpriv",
            "--bounding-set=-bpf,-sys_admin",
            "--inh-caps=-bpf,-sys_admin",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("missing capability CAP_BPF"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
}

#[test]
fn version_and_help() {
    let out = Command::new(AGENT).arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // Exactly what users see: the name and Cargo's version, one line.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("netagent {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(AGENT).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--log-level", "--version"] {
        assert!(help.contains(flag), "{help}");
    }
}
