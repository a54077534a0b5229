//! The traffic generator under a known comm: a one-shot run with its JSON
//! summary, a server ([`Server`]), and a process that reports step by step
//! ([`Stepper`]); every process is killed on drop.

use super::testgen_exe;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs the traffic generator with `--comm comm` and returns its JSON summary.
pub fn testgen(comm: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(testgen_exe())
        .arg("--comm")
        .arg(comm)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run testgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("testgen output {stdout:?}: {e}"));
    assert!(out.status.success(), "testgen {args:?} failed: {v}");
    v
}

/// A testgen server, killed on drop; `ports` holds what it bound.
pub struct Server {
    child: Child,
    pub ports: serde_json::Value,
}

impl Server {
    pub fn start(comm: &str, args: &[&str]) -> Server {
        let mut child = Command::new(testgen_exe())
            .arg("--comm")
            .arg(comm)
            .arg("serve")
            .args(args)
            // A bound for servers a test forgets; soak runs set their own.
            .args(if args.contains(&"--max-seconds") {
                &[][..]
            } else {
                &["--max-seconds", "120"][..]
            })
            .stdout(Stdio::piped())
            .spawn()
            .expect("start testgen serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("serve said {line:?}: {e}"));
        Server { child, ports }
    }

    pub fn port(&self, key: &str) -> u16 {
        self.ports[key].as_u64().unwrap() as u16
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A testgen process that reports on stdout one JSON line per step (ready,
/// done, ...): read them in order, wait for its exit with a bound; killed
/// on drop.
pub struct Stepper {
    pub child: Child,
    out: BufReader<std::process::ChildStdout>,
    /// From its first (ready) line.
    pub pid: u32,
}

impl Stepper {
    /// Spawns `cmd` (stdout is taken over) and reads its ready line, which
    /// must carry its pid.
    pub fn start(mut cmd: Command) -> Stepper {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start testgen");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut s = Stepper { child, out, pid: 0 };
        let ready = s.line().expect("ready line");
        s.pid = ready["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no pid in {ready}")) as u32;
        s
    }

    /// The next JSON line; None at EOF (the process died).
    pub fn line(&mut self) -> Option<serde_json::Value> {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        (!line.is_empty()).then(|| {
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("testgen said {line:?}: {e}"))
        })
    }

    /// Its exit status, within `within` or the test fails.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "testgen did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Stepper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
