//! Test "hosts" in network namespaces: two namespaces joined by a veth pair,
//! with IPv4 and IPv6 addresses, and helpers to run commands, testgen servers
//! and clients, nftables rulesets and sysctls inside them.
//!
//! Cleanup: [`NetnsPair`] kills what still runs in its namespaces and deletes
//! them on drop (also when a test panics). A run killed midway leaves
//! namespaces named `na-<tag>-<pid>-{a,b}`; [`cleanup_stale`] (to be called at
//! the start of every netns test) deletes those whose creating process is gone,
//! and [`NetnsPair::new`] deletes namespaces with its own names before creating
//! them. The veth pair is created directly inside the two namespaces, so it
//! never exists in the root namespace and goes away with them.
//!
//! Every external command runs with a time limit, and every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Prefix of every namespace these helpers create.
const PREFIX: &str = "na-";
/// Time limit for helper commands (`ip`, `nft`, `sh`).
const CMD_TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit for a testgen run in [`testgen_in`] (above the ~130 s a connect
/// takes with the default 6 SYN retries).
const TESTGEN_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the veth link and addresses may take to become usable.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long killed processes in a namespace may take to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a testgen server may take to print its ports.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Process start vs. namespace creation: wall-clock slack for the pid-reuse test
/// in [`cleanup_stale`] (boot time is known to the second only).
const START_SLACK_SECS: f64 = 2.0;

/// True when network namespaces can be used (root, `ip`); otherwise a visible
/// skip locally and a failure in CI (see [`super::require`]).
pub fn require_netns() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    super::require(
        root && super::have("ip") && std::path::Path::new("/proc/self/ns/net").exists(),
        "needs root, iproute2 (`ip`) and network namespaces",
    )
}

/// Like [`require_netns`], plus the `nft` tool.
pub fn require_nft() -> bool {
    require_netns() && super::require(super::have("nft"), "needs nftables (`nft`)")
}

/// Makes `cmd`'s process get SIGKILL when the thread that spawned it ends
/// (PR_SET_PDEATHSIG), so a killed test run does not leave servers running
/// until the next run's [`cleanup_stale`]. Survives the exec of `ip netns exec`.
fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (prctl, getppid), without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    }
}

/// Runs `cmd` (with `input` on stdin), killing it after `timeout`. A killed
/// command reports the signal in its status (`code()` is `None`).
fn run_bounded(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    let mut child = die_with_parent(cmd)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = collect(child.stdout.take().map(|p| Box::new(p) as _));
    let err = collect(child.stderr.take().map(|p| Box::new(p) as _));
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        // A command that exits without reading everything gives EPIPE; its
        // status tells what happened.
        let _ = stdin.write_all(data);
    }
    let status = wait_bounded(&mut child, timeout).unwrap_or_else(|| {
        eprintln!("netns: {cmd:?} did not finish within {timeout:?}; killed");
        let _ = child.kill();
        child.wait().expect("wait for killed command")
    });
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// `child`'s exit status if it ends within `timeout`.
/// Waits for `child` at most `timeout`; None when it is still running.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `ip ARGS`, bounded; the Output whatever the status.
fn ip(args: &[&str]) -> Output {
    run_bounded(Command::new("ip").args(args), None, CMD_TIMEOUT)
}

/// `ip ARGS`, panicking with stderr on failure.
fn ip_ok(args: &[&str]) -> String {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names of all named network namespaces.
pub fn list_netns() -> Vec<String> {
    String::from_utf8_lossy(&ip(&["netns", "list"]).stdout)
        .lines()
        // Lines look like `name (id: 3)` or just `name`.
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Names of all veth links in the caller's (root) namespace.
pub fn root_veth_links() -> Vec<String> {
    String::from_utf8_lossy(&ip(&["-o", "link", "show", "type", "veth"]).stdout)
        .lines()
        // `7: name@peer: <...> ...`
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Pids of processes inside namespace `ns` (empty when it does not exist).
fn ns_pids(ns: &str) -> Vec<i32> {
    String::from_utf8_lossy(&ip(&["netns", "pids", ns]).stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// SIGKILLs everything in `ns` until nothing is left (bounded).
fn kill_ns_processes(ns: &str) {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        let pids: Vec<i32> = ns_pids(ns)
            .into_iter()
            .filter(|&p| p > 1 && p != me)
            .collect();
        if pids.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!("netns: processes {pids:?} still in {ns} after SIGKILL");
            return;
        }
        for pid in pids {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid was
            // just listed inside our own test namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the named namespace is the one this process runs in (or init's):
/// then "everything inside" is the whole host, which must never be killed.
fn is_host_netns(ns: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(named) = std::fs::metadata(format!("/run/netns/{ns}")) else {
        return false;
    };
    ["/proc/self/ns/net", "/proc/1/ns/net"].iter().any(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.ino() == named.ino() && m.dev() == named.dev())
    })
}

/// Kills what runs in `ns` and deletes it; errors (e.g. already gone) ignored.
fn delete_netns(ns: &str) {
    if is_host_netns(ns) {
        eprintln!("netns: {ns} names the host's own namespace; only removing the name");
    } else {
        kill_ns_processes(ns);
    }
    let _ = ip(&["netns", "del", ns]);
}

/// FNV-1a, to derive stable per-(tag, pid) addresses and link names.
fn fnv1a(data: &[u8]) -> u64 {
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
        };
        // From here on, drop (also by a panic below) removes whatever exists.
        // Namespaces with our names are leftovers of a killed run whose pid
        // this process happens to reuse.
        pair.destroy();
        ip_ok(&["netns", "add", &pair.a]);
        ip_ok(&["netns", "add", &pair.b]);
        ip_ok(&[
            "link",
            "add",
            &pair.a_dev,
            "netns",
            &pair.a,
            "type",
            "veth",
            "peer",
            "name",
            &pair.b_dev,
            "netns",
            &pair.b,
        ]);
        for (ns, dev, v4, v6) in [
            (&pair.a, &pair.a_dev, pair.a_ip, pair.a_ip6),
            (&pair.b, &pair.b_dev, pair.b_ip, pair.b_ip6),
        ] {
            ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
            ip_ok(&["-n", ns, "addr", "add", &format!("{v4}/30"), "dev", dev]);
            ip_ok(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            ip_ok(&["-n", ns, "link", "set", dev, "up"]);
        }
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
                let link =
                    String::from_utf8_lossy(&ip(&["-n", ns, "-o", "link", "show", dev]).stdout)
                        .into_owned();
                if !link.contains("LOWER_UP") || !link.contains("state UP") {
                    return Some(format!("{ns}: link not up: {link}"));
                }
                let tentative = ip(&["-n", ns, "-o", "addr", "show", "dev", dev, "tentative"]);
                if !tentative.status.success() || !tentative.stdout.is_empty() {
                    return Some(format!(
                        "{ns}: tentative addresses: {}",
                        String::from_utf8_lossy(&tentative.stdout)
                    ));
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
    }

    fn check_ns(&self, ns: &str) {
        assert!(
            ns == self.a || ns == self.b,
            "{ns:?} is not a namespace of this pair ({} / {})",
            self.a,
            self.b
        );
    }

    /// The IPv4 address of `ns`'s veth end.
    pub fn ip4(&self, ns: &str) -> Ipv4Addr {
        self.check_ns(ns);
        if ns == self.a {
            self.a_ip
        } else {
            self.b_ip
        }
    }

    /// The IPv6 address of `ns`'s veth end.
    pub fn ip6(&self, ns: &str) -> Ipv6Addr {
        self.check_ns(ns);
        if ns == self.a {
            self.a_ip6
        } else {
            self.b_ip6
        }
    }

    fn ns_command(&self, ns: &str, argv: &[&str]) -> Command {
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

/// `(tag, pid)` of a namespace name made by [`NetnsPair::new`].
fn parse_name(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (rest, side) = rest.rsplit_once('-')?;
    if side != "a" && side != "b" {
        return None;
    }
    let (tag, pid) = rest.rsplit_once('-')?;
    Some((tag, pid.parse().ok()?))
}

/// Start of process `pid` in seconds since the epoch; `None` when it does not
/// exist or is a zombie.
fn process_start(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm: state is field 3, starttime field 22.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z" | &"X")) {
        return None;
    }
    let ticks: f64 = fields.get(22 - 3)?.parse().ok()?;
    let btime: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(btime + ticks / if hz > 0 { hz as f64 } else { 100.0 })
}

/// Creation time of a named namespace: its nsfs inode's mtime, set when the
/// namespace was created.
fn netns_created(name: &str) -> Option<f64> {
    let m = std::fs::metadata(format!("/run/netns/{name}")).ok()?;
    let t = m.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
}

/// Whether the process that created namespace `name` (pid in the name) still
/// runs: the pid exists and started before the namespace was created (a later
/// start means the pid was reused).
fn creator_alive(name: &str, pid: u32) -> bool {
    let Some(started) = process_start(pid) else {
        return false;
    };
    match netns_created(name) {
        Some(created) => started <= created + START_SLACK_SECS,
        None => true,
    }
}

/// Deletes namespaces named `na-*` left by earlier runs whose creating pid
/// (encoded in the name) is no longer alive (or was reused by a process that
/// started after the namespace was made), killing processes still inside
/// them first. Call at the start of every netns test. Returns the names
/// removed.
pub fn cleanup_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for name in list_netns() {
        let Some((_, pid)) = parse_name(&name) else {
            continue;
        };
        if creator_alive(&name, pid) {
            continue;
        }
        eprintln!("netns: removing stale namespace {name} (pid {pid} is gone)");
        delete_netns(&name);
        removed.push(name);
    }
    removed
}

/// A testgen server in a namespace (like `common::Server`, via
/// `ip netns exec`), killed on drop.
pub struct NsServer {
    child: Child,
    /// The ready line: `{"tcp4":P,"tcp6":P,"udp4":P,"udp6":P,"pid":N}`.
    pub ports: serde_json::Value,
    /// The namespace it runs in.
    pub ns: String,
}

impl NsServer {
    /// `testgen --comm comm serve ARGS --max-seconds 120` in `ns`. Unless `args`
    /// has `--bind4`/`--bind6`, it binds `ns`'s veth addresses (not loopback),
    /// so the other namespace can reach it.
    pub fn start(pair: &NetnsPair, ns: &str, comm: &str, args: &[&str]) -> NsServer {
        let bind4 = pair.ip4(ns).to_string();
        let bind6 = pair.ip6(ns).to_string();
        let mut argv = vec![super::testgen_exe(), "--comm", comm, "serve"];
        argv.extend_from_slice(args);
        if !args.contains(&"--bind4") {
            argv.extend(["--bind4", bind4.as_str()]);
        }
        if !args.contains(&"--bind6") {
            argv.extend(["--bind6", bind6.as_str()]);
        }
        if !args.contains(&"--max-seconds") {
            argv.extend(["--max-seconds", "120"]);
        }
        let mut child = pair.spawn(ns, &argv);
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(SERVER_READY_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("testgen serve in {ns} printed nothing within {SERVER_READY_TIMEOUT:?}");
            }
        };
        let ports = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("serve {args:?} in {ns} said {line:?} ({e}); status {status:?}");
            }
        };
        NsServer {
            child,
            ports,
            ns: ns.to_string(),
        }
    }

    pub fn port(&self, key: &str) -> u16 {
        self.ports[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no port {key:?} in {}", self.ports)) as u16
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs testgen in `ns` with `--comm comm` (killed after 180 s) and returns
/// (exit code, JSON of its last non-empty stdout line). Does not assert
/// success: the code is -1 when it was killed by a signal, and the JSON is
/// `Null` when there is none (e.g. a usage error, code 2). Its stderr is
/// echoed to the test's stderr.
pub fn testgen_in(
    pair: &NetnsPair,
    ns: &str,
    comm: &str,
    args: &[&str],
) -> (i32, serde_json::Value) {
    let mut argv = vec![super::testgen_exe(), "--comm", comm];
    argv.extend_from_slice(args);
    let out = run_bounded(&mut pair.ns_command(ns, &argv), None, TESTGEN_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.is_empty() {
        eprint!("[testgen in {ns}] {stderr}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json)
}
