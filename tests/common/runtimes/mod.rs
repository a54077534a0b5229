//! Real container runtimes for the end-to-end tests, each private to the
//! test process that starts it: its own daemon (dockerd, containerd) or
//! state directories (podman) under `/run/netagent-rt/<pid>-<tag>` and
//! `/var/tmp/netagent-rt/<pid>-<tag>`, its own sockets, no network of its
//! own (containers start with none; the tests wire veths between their
//! namespaces, IPv6 off, addresses in 10.204.0.0/16), no iptables rules.
//!
//! Everything started is stopped on drop ([`Daemon`], [`Scratch`]); a run
//! that was killed is cleaned up by the next one ([`cleanup_stale`]): the
//! processes whose command line names a dead run's directories, the
//! processes in the container cgroups it recorded, its mounts, its
//! directories. Nothing else on the machine is touched.
//!
//! The image is built locally from the traffic generator (and busybox when
//! installed) with the libraries `ldd` names ([`rootfs`]); no registry.

pub mod containerd;
pub mod docker;
pub mod podman;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::testgen_exe;

const RUN_BASE: &str = "/run/netagent-rt";
const VAR_BASE: &str = "/var/tmp/netagent-rt";
/// The unified (v2) cgroup hierarchy, where container cgroups are recorded.
const CGROUP_FS: &str = "/sys/fs/cgroup";

/// Runs a command with a deadline; its output, or a panic naming it.
pub fn run(prog: &str, args: &[&str], timeout: Duration) -> Output {
    let out =
        try_run(prog, args, timeout).unwrap_or_else(|e| panic!("{prog} {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{prog} {} failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Like [`run`], but any exit status is returned.
pub fn try_run(prog: &str, args: &[&str], timeout: Duration) -> Result<Output, String> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut pipes = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let _ = pipes.0.read_to_end(&mut o);
        let _ = pipes.1.read_to_end(&mut e);
        (o, e)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no exit within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = out.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// stdout of [`run`], trimmed.
pub fn run_text(prog: &str, args: &[&str], timeout: Duration) -> String {
    String::from_utf8_lossy(&run(prog, args, timeout).stdout)
        .trim()
        .to_string()
}

/// Whether an executable exists.
pub fn installed(path: &str) -> bool {
    Path::new(path).exists()
}

/// A test process's directories for one runtime: `run` (sockets, state)
/// and `var` (data roots), removed with everything mounted below them on
/// drop; plus the record of the container cgroups made, for the cleanup of
/// a killed run.
pub struct Scratch {
    pub run: PathBuf,
    pub var: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        cleanup_stale();
        let name = format!("{}-{tag}", std::process::id());
        let s = Scratch {
            run: Path::new(RUN_BASE).join(&name),
            var: Path::new(VAR_BASE).join(&name),
        };
        cleanup_dir(&s.run, &s.var);
        std::fs::create_dir_all(&s.run).unwrap();
        std::fs::create_dir_all(&s.var).unwrap();
        s
    }

    /// Remembers a cgroup (relative to the hierarchy's root) a container of
    /// this run lives in, so a cleanup after a kill can empty and remove it.
    pub fn record_cgroup(&self, rel: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run.join("cgroups"))
            .unwrap();
        writeln!(f, "{rel}").unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        cleanup_dir(&self.run, &self.var);
    }
}

/// Removes what runs killed before their drop left behind.
pub fn cleanup_stale() {
    for base in [RUN_BASE, VAR_BASE] {
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            eprintln!("runtimes: cleaning up after the killed run {name}");
            let tail = e.path();
            let (run, var) = (
                Path::new(RUN_BASE).join(&name),
                Path::new(VAR_BASE).join(&name),
            );
            let _ = tail;
            cleanup_dir(&run, &var);
        }
    }
}

/// Pids of every process whose command line mentions `needle`.
fn pids_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

fn kill(pids: &[i32], sig: i32) {
    for &p in pids {
        // SAFETY: kill(2) has no memory-safety preconditions; these pids are
        // processes of this run (they name its directories or sit in its
        // containers' cgroups).
        unsafe { libc::kill(p, sig) };
    }
}

/// Everything of one run: processes, cgroups, mounts, directories.
fn cleanup_dir(run: &Path, var: &Path) {
    if !run.exists() && !var.exists() {
        return;
    }
    // Daemons, shims and monitors name the run's directories.
    for dir in [run, var] {
        let needle = dir.to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = pids_mentioning(&needle);
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            kill(&pids, libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Container processes sit in the recorded cgroups.
    let recorded = std::fs::read_to_string(run.join("cgroups")).unwrap_or_default();
    for rel in recorded.lines().filter(|l| !l.is_empty()) {
        empty_and_remove_cgroup(rel);
    }
    unmount_below(run);
    unmount_below(var);
    for dir in [run, var] {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("runtimes: cannot remove {}: {e}", dir.display());
            }
        }
    }
}

/// The mount points of every cgroup hierarchy (v1 controllers and v2).
fn cgroup_mounts() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2") && f[1].starts_with(CGROUP_FS))
                .then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// Kills every process in cgroup `rel` (in every hierarchy), then removes
/// it where it exists; bounded.
pub fn empty_and_remove_cgroup(rel: &str) {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() || rel.contains("..") {
        return;
    }
    for root in cgroup_mounts() {
        let dir = root.join(rel);
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            let pids: Vec<i32> = procs.lines().filter_map(|p| p.parse().ok()).collect();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            kill(&pids, libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(20));
        }
        // Children first (a container may have made sub-cgroups).
        let mut dirs = Vec::new();
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                stack.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
                dirs.push(d);
            }
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Detaches every mount at or below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(unescape))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let c = std::ffi::CString::new(p.as_str()).unwrap();
        // SAFETY: a valid C string; MNT_DETACH of a mount of this run.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// mountinfo escapes spaces and the like as `\040`.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// A started container: its name, id and main process.
pub struct Container {
    pub name: String,
    pub id: String,
    pub pid: u32,
}

impl Container {
    /// Container `id`, just started as `name` by a docker-compatible CLI
    /// (`cli` runs it with these arguments, returns its stdout): its pid.
    pub fn started(cli: impl Fn(&[&str]) -> String, name: &str, id: String) -> Container {
        let pid = cli(&["inspect", "-f", "{{.State.Pid}}", &id])
            .parse()
            .unwrap_or_else(|e| panic!("pid of {name}: {e}"));
        Container {
            name: name.to_string(),
            id,
            pid,
        }
    }
}

/// Runs the traffic generator in container `name` under `comm` through a
/// docker-compatible CLI; its JSON summary.
pub fn testgen_in(
    cli: impl Fn(&[&str]) -> String,
    name: &str,
    comm: &str,
    args: &[&str],
) -> serde_json::Value {
    let mut all = vec!["exec", name, "/bin/netagent-testgen", "--comm", comm];
    all.extend_from_slice(args);
    let out = cli(&all);
    serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("testgen in {name} said {out:?}: {e}"))
}

/// A daemon of this run: its stdout and stderr in `log`; stopped on drop
/// (SIGTERM, then SIGKILL after 15 s).
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub name: &'static str,
}

impl Daemon {
    pub fn spawn(name: &'static str, prog: &str, args: &[String], log: PathBuf) -> Daemon {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {prog}: {e}"));
        Daemon { child, log, name }
    }

    /// Waits (bounded) until `ready` says so; panics with the daemon's log.
    pub fn wait_ready(&mut self, timeout: Duration, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}): {}", self.name, self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {timeout:?}: {}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text[text.floor_char_boundary(start)..].to_string()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        kill(&[pid], libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The image's root file system (built when this test process has none,
/// so again after a test's [`remove_rootfs`]): the traffic generator as
/// `/bin/netagent-testgen` with the libraries `ldd` names, busybox as
/// `/bin/sh` and `/bin/sleep` when installed, and the directories runc
/// mounts over. Also as a tar archive (`rootfs.tar`).
pub fn rootfs() -> (PathBuf, PathBuf) {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _g = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let base = Path::new(VAR_BASE).join(format!("{}-image", std::process::id()));
    let (root, tar) = (base.join("rootfs"), base.join("rootfs.tar"));
    if tar.exists() {
        return (root, tar);
    }
    {
        let _ = std::fs::remove_dir_all(&base);
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "run"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("etc/hostname"), "netagent-test\n").unwrap();
        let gen = testgen_exe();
        copy_stripped(Path::new(gen), &root.join("bin/netagent-testgen"));
        for lib in libraries(gen) {
            let dest = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &dest).unwrap_or_else(|e| panic!("{lib}: {e}"));
        }
        if let Some(bb) = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        {
            std::fs::copy(bb, root.join("bin/busybox")).unwrap();
            for applet in ["sh", "sleep"] {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
            }
        }
        // Written under another name first: an interrupted build is no tar.
        let partial = base.join("rootfs.tar.partial");
        run(
            "tar",
            &[
                "-C",
                &root.to_string_lossy(),
                "-cf",
                &partial.to_string_lossy(),
                ".",
            ],
            Duration::from_secs(120),
        );
        std::fs::rename(&partial, &tar).unwrap();
    }
    (root, tar)
}

/// Removes the image directory of this test process (call at the end).
pub fn remove_rootfs() {
    let base = Path::new(VAR_BASE).join(format!("{}-image", std::process::id()));
    let _ = std::fs::remove_dir_all(base);
}

fn copy_stripped(bin: &Path, dest: &Path) {
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(dest)
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        std::fs::copy(bin, dest).unwrap();
    }
}

/// Shared libraries (and the loader) `bin` needs, as absolute paths.
fn libraries(bin: &str) -> Vec<String> {
    let out = run("ldd", &[bin], Duration::from_secs(30));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        })
        .filter(|p| p.starts_with('/'))
        .map(str::to_string)
        .collect()
}

/// Runs a shell command line in the network namespace of `pid` (host's
/// tools, the container's network).
pub fn in_netns(pid: u32, script: &str) {
    run(
        "nsenter",
        &["-t", &pid.to_string(), "-n", "sh", "-c", script],
        Duration::from_secs(30),
    );
}

/// A veth between the network namespaces of two processes, `10.204.X.1/30`
/// in `a`'s and `.2` in `b`'s; IPv6 off on both ends before they come up,
/// so nothing but the test's own packets crosses it. Goes away with the
/// namespaces.
pub fn wire(a: u32, b: u32, x: u8, tag: &str) -> (String, String) {
    let (ia, ib) = (format!("na{tag}a"), format!("na{tag}b"));
    run(
        "ip",
        &[
            "link",
            "add",
            "name",
            &ia,
            "netns",
            &a.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            &ib,
            "netns",
            &b.to_string(),
        ],
        Duration::from_secs(10),
    );
    let (ip_a, ip_b) = (format!("10.204.{x}.1"), format!("10.204.{x}.2"));
    for (pid, dev, ip) in [(a, &ia, &ip_a), (b, &ib, &ip_b)] {
        in_netns(
            pid,
            &format!(
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && \
                 echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 && \
                 echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6 && \
                 ip addr add {ip}/30 dev {dev} && ip link set {dev} up && ip link set lo up"
            ),
        );
    }
    (ip_a, ip_b)
}

/// A random-looking 64-hex container id unique to this call.
pub fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!(
        "{:016x}{:016x}{:016x}{:016x}",
        0x6e61_0000_0000_0000u64 | std::process::id() as u64,
        nanos,
        n,
        nanos.rotate_left(17) ^ n
    )
}

/// Labels of a process in a container (exact label set of the owner part).
pub fn owner<'a>(
    process: &'a str,
    container: &'a str,
    id: &'a str,
    pod: &'a str,
    namespace: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("process", process),
        ("container", container),
        ("container_id", id),
        ("pod", pod),
        ("namespace", namespace),
    ]
}
