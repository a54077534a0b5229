//! The little system the scenario needs: as a guest's PID 1, the kernel
//! filesystems, the modules shipped in the initramfs and a loopback that is
//! up; on a host, a private network namespace (so the loopback counters and
//! the traffic are ours alone) with its own /sys.

use std::ffi::CString;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Kernel command-line key carrying extra agent YAML (standard base64).
pub const EXTRA_PARAM: &str = "netagent.extra=";

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in a path")
}

fn check(rc: libc::c_int, what: impl FnOnce() -> String) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error()).with_context(what)
    }
}

/// mount(2); `fstype` and `source` the same, as for every pseudo filesystem.
fn mount(fstype: &str, target: &str, flags: libc::c_ulong) -> Result<()> {
    std::fs::create_dir_all(target).with_context(|| format!("mkdir {target}"))?;
    let (src, dst, ty) = (cstr(fstype), cstr(target), cstr(fstype));
    // SAFETY: valid NUL-terminated strings that outlive the call; no data.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            ty.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    check(rc, || format!("mount {fstype} on {target}"))
}

/// Filesystems below /sys the agent (and its hook fallbacks) look for:
/// the cgroup v2 root for the socket-address hooks, tracefs/debugfs for
/// tracepoint ids and kprobe events, bpffs for completeness.
fn mount_sys_children() -> Result<()> {
    mount("cgroup2", "/sys/fs/cgroup", 0).context("the agent attaches cgroup hooks to it")?;
    for (fstype, target) in [
        ("tracefs", "/sys/kernel/tracing"),
        ("debugfs", "/sys/kernel/debug"),
        ("bpf", "/sys/fs/bpf"),
    ] {
        // Optional: a kernel without one of them still runs the scenario.
        if let Err(e) = mount(fstype, target, 0) {
            eprintln!("netagent-matrix: {e:#} (continuing)");
        }
    }
    Ok(())
}

/// As PID 1 of a fresh guest: everything a normal init would provide.
pub fn setup_guest() -> Result<Vec<String>> {
    mount("proc", "/proc", 0)?;
    mount("sysfs", "/sys", 0)?;
    mount("devtmpfs", "/dev", 0)?;
    mount_sys_children()?;
    for dir in ["/tmp", "/run"] {
        std::fs::create_dir_all(dir)?;
    }
    let modules = load_modules(Path::new("/lib/modules"))?;
    loopback_up()?;
    Ok(modules)
}

/// On a host: a new network namespace with a new mount namespace, so /sys
/// shows this namespace's interfaces (as `ip netns exec` does). Must run
/// before any thread is started (unshare(CLONE_NEWNS) refuses otherwise).
pub fn isolate_on_host() -> Result<()> {
    // SAFETY: plain syscall; the process is still single-threaded.
    check(
        unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS) },
        || "unshare(CLONE_NEWNET | CLONE_NEWNS)".into(),
    )?;
    let root = cstr("/");
    // SAFETY: valid strings; MS_REC|MS_SLAVE only changes propagation, so
    // nothing mounted below leaks back into the host's namespace.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        )
    };
    check(rc, || "make / a slave mount".into())?;
    let sys = cstr("/sys");
    // SAFETY: valid string; a lazy unmount of our namespace's copy only.
    check(
        unsafe { libc::umount2(sys.as_ptr(), libc::MNT_DETACH) },
        || "unmount the host's /sys".into(),
    )?;
    mount("sysfs", "/sys", 0)?;
    mount_sys_children()?;
    loopback_up()
}

/// Loads every `*.ko` in `dir` (the runner puts only what the agent needs
/// there, already decompressed), in name order; already loaded is fine.
fn load_modules(dir: &Path) -> Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ko"))
        .collect();
    paths.sort();
    let mut loaded = Vec::new();
    for path in paths {
        let file = std::fs::File::open(&path).with_context(|| format!("{}", path.display()))?;
        let params = cstr("");
        // SAFETY: finit_module(fd, params, flags) with a valid open fd and
        // a NUL-terminated (empty) parameter string.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_finit_module,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                params.as_ptr(),
                0,
            )
        };
        let err = io::Error::last_os_error();
        if rc != 0 && err.raw_os_error() != Some(libc::EEXIST) {
            bail!("loading module {}: {err}", path.display());
        }
        loaded.push(
            path.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into(),
        );
    }
    Ok(loaded)
}

/// Brings `lo` up; the kernel then adds 127.0.0.1/8 and ::1 by itself.
/// Waits (bounded) until both addresses can be bound.
fn loopback_up() -> Result<()> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("socket for SIOCSIFFLAGS");
    }
    // SAFETY: fd is a fresh socket we own; OwnedFd closes it.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: all-zero bytes are a valid ifreq.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass,
    // which lives across both calls; the union field is the flags one.
    unsafe {
        check(libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut req), || {
            "SIOCGIFFLAGS lo".into()
        })?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(raw, libc::SIOCSIFFLAGS, &req), || {
            "SIOCSIFFLAGS lo up".into()
        })?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0");
        let v6 = std::net::UdpSocket::bind("[::1]:0");
        match (v4, v6) {
            (Ok(_), Ok(_)) => return Ok(()),
            (a, b) if Instant::now() > deadline => {
                bail!(
                    "loopback addresses not usable within 10 s: 127.0.0.1 {:?}, ::1 {:?}",
                    a.err(),
                    b.err()
                )
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Extra agent YAML from the kernel command line (`netagent.extra=<base64>`):
/// the kernel passes such dotted parameters to no one, but /proc/cmdline
/// keeps them.
pub fn extra_from_cmdline(cmdline: &str) -> Result<Option<String>> {
    use base64::Engine;
    let Some(b64) = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(EXTRA_PARAM))
    else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("netagent.extra is not base64")?;
    Ok(Some(
        String::from_utf8(bytes).context("netagent.extra is not UTF-8")?,
    ))
}

/// Kernel command-line key choosing the driver's mode (`verify`).
pub const MODE_PARAM: &str = "netagent.mode=";

/// The mode from the kernel command line, if one is given.
pub fn mode_from_cmdline(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(MODE_PARAM))
        .map(str::to_string)
}

/// Seconds since the kernel started (the guest's boot time so far).
pub fn uptime_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Flushes file systems and powers the guest off (qemu then exits).
pub fn power_off() -> ! {
    // SAFETY: sync and reboot have no memory-safety preconditions; as PID 1
    // with CAP_SYS_BOOT, RB_POWER_OFF halts the machine.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // Only reached if reboot failed; exiting PID 1 panics the kernel,
    // which with panic=-1 and -no-reboot also ends qemu.
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_yaml_comes_from_the_cmdline() {
        // "debug: {}\n" in base64.
        let line = "console=ttyS0 panic=-1 netagent.extra=ZGVidWc6IHt9Cg== quiet";
        assert_eq!(
            extra_from_cmdline(line).unwrap().as_deref(),
            Some("debug: {}\n")
        );
        assert_eq!(extra_from_cmdline("console=ttyS0").unwrap(), None);
        assert!(extra_from_cmdline("netagent.extra=***").is_err());
    }

    #[test]
    fn mode_comes_from_the_cmdline() {
        let line = "console=ttyS0 netagent.mode=verify quiet";
        assert_eq!(mode_from_cmdline(line).as_deref(), Some("verify"));
        assert_eq!(mode_from_cmdline("console=ttyS0"), None);
    }
}
