//! Commands with a time limit: `ip` and anything run in a namespace, killed
//! when they overrun and when the test thread that spawned them ends.

use super::CMD_TIMEOUT;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Makes `cmd`'s process get SIGKILL when the thread that spawned it ends
/// (PR_SET_PDEATHSIG), so a killed test run does not leave servers running
/// until the next run's [`cleanup_stale`]. Survives the exec of `ip netns exec`.
pub(super) fn die_with_parent(cmd: &mut Command) -> &mut Command {
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
pub(super) fn run_bounded(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
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
pub(super) fn ip(args: &[&str]) -> Output {
    run_bounded(Command::new("ip").args(args), None, CMD_TIMEOUT)
}

/// `ip ARGS`, panicking with stderr on failure.
pub(super) fn ip_ok(args: &[&str]) -> String {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
