//! Headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: commands on the child's fd 3, answers on its
//! fd 4, each a JSON object ended by a NUL byte). Enough of the protocol to
//! evaluate JavaScript in a page and take a screenshot of it, without a
//! WebSocket client or a driver binary.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::TempDir;

/// Flags of every run: no sandbox (we are root), no GPU, nothing fetched
/// from the network besides the page under test. Even with background
/// networking off, Chromium looks up Google's update and account hosts at
/// start; [`command`] adds a resolver rule that answers every name but the
/// host of the page under test "not found" without asking DNS.
pub const FLAGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--no-pings",
];

/// A Chromium with one page open, attached through the pipe; the whole
/// process group is killed on drop.
pub struct Browser {
    child: Child,
    to: File,
    from: Receiver<serde_json::Value>,
    /// Messages read but not yet asked for (answers and events).
    pending: VecDeque<serde_json::Value>,
    next_id: u64,
    session: String,
    _profile: TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors on success; checked below.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Chromium with [`FLAGS`], run inside network namespace `netns`, that
/// resolves no name but `page_host` (the rule covers IP literals too). Even
/// with every name unresolved Chromium checks IPv6 reachability by routing
/// to Google's public DNS; in the root namespace that lookup alone sends a
/// neighbour solicitation to the default router. A test namespace with no
/// default route and no IPv6 keeps it on the machine.
pub fn command(netns: &str, page_host: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "/usr/bin/chromium"])
        .args(FLAGS)
        .arg(format!(
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {page_host}"
        ));
    cmd
}

impl Browser {
    /// Starts Chromium with a `width`×`height` window (inside network
    /// namespace `netns`, see [`command`]), attaches to its page and loads
    /// `url` in it.
    pub fn open(netns: &str, page_host: &str, url: &str, width: u32, height: u32) -> Browser {
        let profile = TempDir::new("chromium-cdp");
        let (cmd_r, cmd_w) = pipe();
        let (resp_r, resp_w) = pipe();
        let (cr, rw) = (cmd_r.as_raw_fd(), resp_w.as_raw_fd());
        let mut cmd = command(netns, page_host);
        cmd.arg("--remote-debugging-pipe")
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("--hide-scrollbars")
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        // SAFETY: only async-signal-safe calls (dup2/fcntl) in the child.
        unsafe {
            cmd.pre_exec(move || {
                // Copies above 10 first, so placing one end on 3 or 4 cannot
                // close the other; dup2 leaves the targets inheritable.
                let a = libc::fcntl(cr, libc::F_DUPFD, 10);
                let b = libc::fcntl(rw, libc::F_DUPFD, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop(cmd_r);
        drop(resp_w);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut reader = File::from(resp_r);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice(&msg[..msg.len() - 1]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to: File::from(cmd_w),
            from: rx,
            pending: VecDeque::new(),
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        // The page target appears once the browser has opened the URL.
        let deadline = Instant::now() + Duration::from_secs(30);
        let target = loop {
            let targets = b.call(None, "Target.getTargets", serde_json::json!({}));
            if let Some(t) = targets["targetInfos"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["type"] == "page")
            {
                break t["targetId"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "no page target: {targets}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let attached = b.call(
            None,
            "Target.attachToTarget",
            serde_json::json!({"targetId": target, "flatten": true}),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        let session = b.session.clone();
        b.call(Some(&session), "Page.enable", serde_json::json!({}));
        b.call(
            Some(&session),
            "Page.navigate",
            serde_json::json!({ "url": url }),
        );
        b.wait_event("Page.loadEventFired");
        b
    }

    /// Waits (bounded) for an event of the page's session.
    fn wait_event(&mut self, method: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(i) = self
                .pending
                .iter()
                .position(|m| m["method"] == method && m["sessionId"] == self.session.as_str())
            {
                return self.pending.remove(i).unwrap();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from.recv_timeout(left) {
                Ok(m) => self.pending.push_back(m),
                Err(RecvTimeoutError::Timeout) => panic!("no {method} within 60 s"),
                Err(RecvTimeoutError::Disconnected) => panic!("{method}: chromium exited"),
            }
        }
    }

    /// Sends one command (to the page's session unless `session` is None
    /// and the browser is meant) and waits for its result (bounded).
    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = serde_json::json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("chromium pipe: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(i) = self.pending.iter().position(|m| m["id"] == id) {
                let m = self.pending.remove(i).unwrap();
                if let Some(err) = m.get("error") {
                    panic!("{method}: {err}");
                }
                return m["result"].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from.recv_timeout(left) {
                Ok(m) => self.pending.push_back(m),
                Err(RecvTimeoutError::Timeout) => panic!("{method}: no answer within 60 s"),
                Err(RecvTimeoutError::Disconnected) => panic!("{method}: chromium exited"),
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns
    /// its value, which must be JSON-serialisable.
    pub fn eval(&mut self, expression: &str) -> serde_json::Value {
        let session = self.session.clone();
        let r = self.call(
            Some(&session),
            "Runtime.evaluate",
            serde_json::json!({
                "expression": expression,
                "awaitPromise": true,
                "returnByValue": true,
            }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("page script failed: {e}");
        }
        r["result"]["value"].clone()
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let session = self.session.clone();
        let r = self.call(
            Some(&session),
            "Page.captureScreenshot",
            serde_json::json!({"format": "png"}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Helpers (renderer, zygote, …) share the group: end them all.
        // SAFETY: kill(2) on the process group created for this browser.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
