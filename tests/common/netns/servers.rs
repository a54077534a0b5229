//! testgen inside a namespace: a server ([`NsServer`], killed on drop) and
//! a bounded client run ([`testgen_in`]).

use super::super::testgen_exe;
use super::command::run_bounded;
use super::pair::NetnsPair;
use super::{SERVER_READY_TIMEOUT, TESTGEN_TIMEOUT};
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;

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
        let mut argv = vec![testgen_exe(), "--comm", comm, "serve"];
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
    let mut argv = vec![testgen_exe(), "--comm", comm];
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
