//! [`NetnsPair`]: two network namespaces joined by a veth pair, with IPv4
//! and IPv6 addresses derived from (tag, pid), commands, spawned processes,
//! nftables rulesets and sysctls inside them; deleted on drop.

use super::cleanup::delete_netns;
use super::command::{die_with_parent, ip, ip_ok, run_bounded};
use super::link::{self, End};
use super::{CMD_TIMEOUT, PREFIX, READY_TIMEOUT};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// FNV-1a, to derive stable per-(tag, pid) addresses and link names.
pub(super) fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Two network namespaces ("hosts") joined by a veth pair, with IPv4 and IPv6
/// addresses; deleted on drop.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub a_ip: Ipv4Addr,
    pub b_ip: Ipv4Addr,
    pub a_ip6: Ipv6Addr,
    pub b_ip6: Ipv6Addr,
    /// veth end in `a` / in `b` (at most 15 bytes).
    pub a_dev: String,
    pub b_dev: String,
    /// A third namespace behind `b` ([`NetnsPair::add_leg`]).
    pub c: Option<super::leg::Leg>,
}

impl NetnsPair {
    /// Creates `na-<tag>-<pid>-a` and `-b`, a veth pair between them (created
    /// inside the namespaces, never in the root one), loopback up in both, the
    /// addresses `.1`/`.2` of a /30 in 10.203.0.0/16 and `::1`/`::2` of a /64 in
    /// fd00:203::/48 (`nodad`, so usable at once), both chosen from (tag, pid).
    /// Returns when links are up, addresses are not tentative and routes exist.
    /// `tag`: 1..=20 bytes of `[a-z0-9_]`, unique among concurrently running tests.
    pub fn new(tag: &str) -> NetnsPair {
        assert!(
            !tag.is_empty()
                && tag.len() <= 20
                && tag
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'),
            "netns tag {tag:?}: use 1..=20 bytes of [a-z0-9_]"
        );
        let pid = std::process::id();
        let h = fnv1a(format!("{tag}/{pid}").as_bytes());
        let idx = (h % (1 << 14)) as u32; // one of 16384 /30s in the /16
        let base = u32::from(Ipv4Addr::new(10, 203, 0, 0)) + idx * 4;
        let six = |host: u16| Ipv6Addr::new(0xfd00, 0x203, 0, idx as u16, 0, 0, 0, host);
        let pair = NetnsPair {
            a: format!("{PREFIX}{tag}-{pid}-a"),
            b: format!("{PREFIX}{tag}-{pid}-b"),
            a_ip: Ipv4Addr::from(base + 1),
            b_ip: Ipv4Addr::from(base + 2),
            a_ip6: six(1),
            b_ip6: six(2),
            // "na" + 8 hex digits + side = 11 bytes (IFNAMSIZ allows 15).
            a_dev: format!("na{:08x}a", h as u32),
            b_dev: format!("na{:08x}b", h as u32),
            c: None,
        };
        // From here on, drop (also by a panic below) removes whatever exists.
        // Namespaces with our names are leftovers of a killed run whose pid
        // this process happens to reuse.
        pair.destroy();
        ip_ok(&["netns", "add", &pair.a]);
        ip_ok(&["netns", "add", &pair.b]);
        link::veth(
            &End {
                ns: &pair.a,
                dev: &pair.a_dev,
                v4: pair.a_ip,
                v6: pair.a_ip6,
            },
            &End {
                ns: &pair.b,
                dev: &pair.b_dev,
                v4: pair.b_ip,
                v6: pair.b_ip6,
            },
        );
        pair.wait_ready();
        pair
    }

    /// Ping-free readiness: both veth ends have carrier and are up, no address
    /// is tentative, and each side has a route to the other's addresses.
    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let problem = [
                (&self.a, &self.a_dev, self.b_ip, self.b_ip6),
                (&self.b, &self.b_dev, self.a_ip, self.a_ip6),
            ]
            .into_iter()
            .find_map(|(ns, dev, peer4, peer6)| {
                if let Some(p) = link::not_ready(ns, dev) {
                    return Some(p);
                }
                for peer in [peer4.to_string(), peer6.to_string()] {
                    let route = ip(&["-n", ns, "route", "get", &peer]);
                    let text = String::from_utf8_lossy(&route.stdout);
                    if !route.status.success() || !text.contains(dev.as_str()) {
                        return Some(format!("{ns}: no route to {peer} via {dev}: {text}"));
                    }
                }
                None
            });
            match problem {
                None => return,
                Some(p) if Instant::now() >= deadline => {
                    panic!("netns pair not ready within {READY_TIMEOUT:?}: {p}")
                }
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Kills what runs in the namespaces and deletes them (errors ignored).
    fn destroy(&self) {
        for ns in [&self.a, &self.b] {
            delete_netns(ns);
        }
        if let Some(leg) = &self.c {
            delete_netns(&leg.ns);
        }
    }

    fn check_ns(&self, ns: &str) {
        assert!(
            ns == self.a || ns == self.b || self.c.as_ref().is_some_and(|c| c.ns == ns),
            "{ns:?} is not a namespace of this pair ({} / {})",
            self.a,
            self.b
        );
    }

    /// The IPv4 address of `ns`'s veth end.
    pub fn ip4(&self, ns: &str) -> Ipv4Addr {
        self.check_ns(ns);
        match &self.c {
            Some(c) if c.ns == ns => c.ip,
            _ if ns == self.a => self.a_ip,
            _ => self.b_ip,
        }
    }

    /// The IPv6 address of `ns`'s veth end.
    pub fn ip6(&self, ns: &str) -> Ipv6Addr {
        self.check_ns(ns);
        match &self.c {
            Some(c) if c.ns == ns => c.ip6,
            _ if ns == self.a => self.a_ip6,
            _ => self.b_ip6,
        }
    }

    pub(super) fn ns_command(&self, ns: &str, argv: &[&str]) -> Command {
        self.check_ns(ns);
        assert!(!argv.is_empty(), "empty command");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).args(argv);
        cmd
    }

    /// Runs `argv` inside `ns` (via `ip netns exec`, killed after 30 s) and
    /// returns its output; panics with stderr when it fails.
    pub fn exec(&self, ns: &str, argv: &[&str]) -> Output {
        let out = self.exec_unchecked(ns, argv);
        assert!(
            out.status.success(),
            "{argv:?} in {ns} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Like [`NetnsPair::exec`], but returns the output whatever the status.
    pub fn exec_unchecked(&self, ns: &str, argv: &[&str]) -> Output {
        run_bounded(&mut self.ns_command(ns, argv), None, CMD_TIMEOUT)
    }

    /// Spawns a long-running `argv` in `ns` with stdout piped (stderr inherited,
    /// stdin null). `ip netns exec` execs the command, so the child's pid is the
    /// command's. It is SIGKILLed when the spawning thread ends (so spawn from
    /// the test's own thread, not a short-lived helper thread), and whatever
    /// still runs in the namespaces is killed on drop of the pair; wait for
    /// the child to reap it.
    pub fn spawn(&self, ns: &str, argv: &[&str]) -> Child {
        die_with_parent(&mut self.ns_command(ns, argv))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {argv:?} in {ns}: {e}"))
    }

    /// Loads an nftables ruleset (text, as for `nft -f -`) in `ns`; panics
    /// with nft's message when it is rejected. Needs `nft` ([`require_nft`]).
    ///
    /// nft 1.0.6 (Debian 12) rejects one-line rulesets like
    /// `table inet t { chain c { ...; drop; } }`: a closing `}` must be followed
    /// by `;` or a newline before the next `}`. If the text is rejected and
    /// contains `} }`, it is retried once with those written as `}\n}` (a
    /// rejected `nft -f` changes nothing, so the retry starts clean).
    pub fn nft(&self, ns: &str, ruleset: &str) {
        let load = |text: &str| {
            run_bounded(
                &mut self.ns_command(ns, &["nft", "-f", "-"]),
                Some(text.as_bytes()),
                CMD_TIMEOUT,
            )
        };
        let mut out = load(ruleset);
        if !out.status.success() && ruleset.contains("} }") {
            let mut text = ruleset.to_string();
            while text.contains("} }") {
                text = text.replace("} }", "}\n}");
            }
            let retry = load(&text);
            if retry.status.success() {
                out = retry;
            }
        }
        assert!(
            out.status.success(),
            "nft in {ns} failed ({}): {}\nruleset:\n{ruleset}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sets a sysctl (e.g. `net.ipv4.tcp_syn_retries`) inside `ns` by writing
    /// its /proc/sys file there (no `sysctl` tool needed); checks it took.
    pub fn sysctl(&self, ns: &str, key: &str, value: &str) {
        assert!(
            !key.is_empty()
                && key.split('.').all(|p| {
                    !p.is_empty()
                        && p != ".."
                        && p.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                }),
            "sysctl key {key:?}"
        );
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.exec(
            ns,
            &[
                "sh",
                "-c",
                r#"printf '%s\n' "$1" > "$2""#,
                "sh",
                value,
                &path,
            ],
        );
        let now = self.exec(ns, &["cat", &path]);
        let got = String::from_utf8_lossy(&now.stdout);
        assert_eq!(
            got.split_whitespace().collect::<Vec<_>>(),
            value.split_whitespace().collect::<Vec<_>>(),
            "sysctl {key} in {ns}"
        );
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        self.destroy();
    }
}
