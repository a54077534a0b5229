//! Veth links with one end in the root network namespace (where the agent
//! watches interfaces): `HostLink` joins the root namespace to a test host
//! namespace; `RootVeth` is a veth pair entirely in the root namespace.
//! Both are quiet on purpose — IPv6 off, static neighbours, so no ARP or
//! ND chatter — so that packet counts on them are exactly the test's own.
//! Names embed the creating pid; [`cleanup_stale_links`] removes the links
//! of test runs that were killed.

use std::net::Ipv4Addr;
use std::process::Command;

use super::netns::cleanup_stale;

/// Link names: `nah<pid><suffix>` (at most 15 bytes).
const PREFIX: &str = "nah";

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mac(ns: Option<&str>, dev: &str) -> String {
    let prefix = ns
        .map(|n| format!("ip netns exec {n} "))
        .unwrap_or_default();
    sh(&format!("{prefix}cat /sys/class/net/{dev}/address"))
        .trim()
        .to_string()
}

/// Deletes root-namespace links `nah<pid>*` whose pid is no longer alive.
pub fn cleanup_stale_links() {
    let out = sh("ip -o link show");
    for line in out.lines() {
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(pid) = digits.parse::<u32>() else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("hostlink: removing stale link {name}");
            let _ = Command::new("ip").args(["link", "del", name]).status();
        }
    }
}

/// A veth from the root namespace (`host_if`, `host_ip`) to a namespace
/// (`ns`, `ns_if`, `ns_ip`). Deleted on drop.
pub struct HostLink {
    pub ns: String,
    pub host_if: String,
    pub ns_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
}

impl HostLink {
    pub fn new(tag: &str) -> HostLink {
        cleanup_stale();
        cleanup_stale_links();
        let pid = std::process::id();
        let ns = format!("na-{tag}-{pid}-a");
        let host_if = format!("{PREFIX}{pid}h");
        let ns_if = "eth0".to_string();
        let net = 1 + (pid % 60) as u8 * 4;
        let host_ip = Ipv4Addr::new(10, 204, 0, net);
        let ns_ip = Ipv4Addr::new(10, 204, 0, net + 1);
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        let _ = Command::new("ip").args(["link", "del", &host_if]).status();
        let link = HostLink {
            ns: ns.clone(),
            host_if: host_if.clone(),
            ns_if: ns_if.clone(),
            host_ip,
            ns_ip,
        };
        sh(&format!("ip netns add {ns}"));
        sh(&format!(
            "ip link add {host_if} type veth peer name {ns_if} netns {ns}"
        ));
        // No IPv6 (no router/neighbour solicitations, no MLD) on either end.
        sh(&format!(
            "sysctl -qw net.ipv6.conf.{host_if}.disable_ipv6=1"
        ));
        sh(&format!(
            "ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1"
        ));
        sh(&format!(
            "ip netns exec {ns} sysctl -qw net.ipv6.conf.default.disable_ipv6=1"
        ));
        sh(&format!("ip addr add {host_ip}/30 dev {host_if}"));
        sh(&format!(
            "ip netns exec {ns} ip addr add {ns_ip}/30 dev {ns_if}"
        ));
        sh(&format!("ip link set {host_if} up"));
        sh(&format!("ip netns exec {ns} ip link set lo up"));
        sh(&format!("ip netns exec {ns} ip link set {ns_if} up"));
        // Static neighbours: no ARP on the wire.
        let (hmac, nmac) = (mac(None, &host_if), mac(Some(&ns), &ns_if));
        sh(&format!(
            "ip neigh replace {ns_ip} lladdr {nmac} dev {host_if} nud permanent"
        ));
        sh(&format!(
            "ip netns exec {ns} ip neigh replace {host_ip} lladdr {hmac} dev {ns_if} nud permanent"
        ));
        link
    }

    /// A command line prefix that runs in the namespace.
    pub fn exec(&self) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns.clone()]
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        // Processes still inside would keep the namespace's veth end alive.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("ip netns pids {} | xargs -r kill -9", self.ns))
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A veth pair with both ends in the root namespace, deleted on drop
/// (deleting one end deletes the pair).
pub struct RootVeth {
    pub a: String,
    pub b: String,
}

impl RootVeth {
    pub fn new(suffix: char) -> RootVeth {
        cleanup_stale_links();
        let pid = std::process::id();
        let (a, b) = (
            format!("{PREFIX}{pid}{suffix}0"),
            format!("{PREFIX}{pid}{suffix}1"),
        );
        let _ = Command::new("ip").args(["link", "del", &a]).status();
        sh(&format!("ip link add {a} type veth peer name {b}"));
        // Quiet like HostLink: no IPv6 means no MLD reports or duplicate
        // address detection sent from the root namespace.
        sh(&format!(
            "sysctl -qw net.ipv6.conf.{a}.disable_ipv6=1 net.ipv6.conf.{b}.disable_ipv6=1"
        ));
        sh(&format!("ip link set {a} up && ip link set {b} up"));
        RootVeth { a, b }
    }

    pub fn delete(&self) {
        let _ = Command::new("ip").args(["link", "del", &self.a]).status();
    }
}

impl Drop for RootVeth {
    fn drop(&mut self) {
        self.delete();
    }
}
