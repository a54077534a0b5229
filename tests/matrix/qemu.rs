//! Boots a kernel with an initramfs under qemu's TCG emulator (the
//! machine's /dev/kvm cannot run guests), the serial console written to a
//! log file, with no network device and a hard time limit.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one boot produced.
pub struct Boot {
    pub console: String,
    pub wall: Duration,
}

/// Kills qemu if the test is abandoned mid-boot (panic, timeout).
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn boot(
    kernel: &Path,
    initrd: &Path,
    append: &str,
    log: &Path,
    timeout: Duration,
) -> Result<Boot, String> {
    let _ = std::fs::remove_file(log);
    let start = Instant::now();
    let child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "1G", "-smp", "1"])
        .args(["-display", "none", "-monitor", "none", "-nic", "none"])
        .args(["-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(append)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let mut guard = Guard(child);
    let status = loop {
        if let Some(s) = guard.0.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if start.elapsed() > timeout {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let wall = start.elapsed();
    let console = std::fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
        .unwrap_or_default();
    match status {
        None => Err(format!(
            "qemu still running after {timeout:?}; console so far:\n{console}"
        )),
        Some(s) if !s.success() => {
            let mut err = String::new();
            if let Some(mut e) = guard.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            Err(format!("qemu exited with {s}: {err}\nconsole:\n{console}"))
        }
        Some(_) => Ok(Boot { console, wall }),
    }
}
