//! The web UI end to end: the real agent serves `/`, its embedded assets and
//! `/api/v1/graph`; real traffic comes from a known comm; Debian's headless
//! Chromium renders the page. The rendered DOM must show the process node and
//! its edge, and a screenshot is kept at `target/ui-artifacts/service-map.png`
//! for humans (CI can publish it as an artifact).

mod common;
use common::*;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CLIENT: &str = "nettest-ui";
const LABEL: &str = "ui-client";
const SERVER: &str = "nettest-srv";
/// A Chromium run is killed after this long.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(60);
/// Flags of every run: no sandbox (we are root), no GPU, nothing fetched
/// from the network besides the page under test.
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// What a bounded Chromium run printed.
struct Run {
    stdout: String,
    stderr: String,
}

/// Runs Chromium with a fresh profile (removed afterwards) in its own
/// process group, killing the whole group after `CHROMIUM_LIMIT`.
fn chromium(tag: &str, args: &[&str]) -> Run {
    let profile = TempDir::new(&format!("chromium-{tag}"));
    let mut child = Command::new(CHROMIUM)
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let pgid = child.id() as i32;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));

    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > CHROMIUM_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Helpers (renderer, zygote, …) share the group: end them all, so the
    // pipes close and the profile can be removed.
    // SAFETY: kill(2) on the process group we created for this run.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
    let run = Run {
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    drop(profile);
    match status {
        None => panic!(
            "chromium {args:?} still running after {CHROMIUM_LIMIT:?}, killed; stderr:\n{}",
            tail(&run.stderr)
        ),
        Some(s) if !s.success() => {
            panic!(
                "chromium {args:?} failed ({s}); stderr:\n{}",
                tail(&run.stderr)
            )
        }
        Some(_) => run,
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The agent's graph once it has `node` and an edge `source|target` equal
/// to `edge` (bounded), so a failure further on is the page's, not the API's.
fn wait_for_graph(port: u16, node: &str, edge: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        match http_get(port, "/api/v1/graph", None) {
            Ok(body) => {
                let doc: serde_json::Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("/api/v1/graph is not JSON ({e}): {body}"));
                let has_node = doc["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|n| n["id"] == node));
                let has_edge = doc["edges"].as_array().is_some_and(|e| {
                    e.iter().any(|e| {
                        format!(
                            "{}|{}",
                            e["source"].as_str().unwrap_or_default(),
                            e["target"].as_str().unwrap_or_default()
                        ) == edge
                    })
                });
                if has_node && has_edge {
                    return doc;
                }
                last = body;
            }
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("/api/v1/graph never showed {node} and {edge}; last answer: {last}");
}

#[test]
fn page_renders_the_service_map_of_real_traffic() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    if !require(
        Path::new(CHROMIUM).exists(),
        "needs Debian's headless Chromium at /usr/bin/chromium (apt-get install chromium)",
    ) {
        return;
    }

    let agent = Agent::start(&[(LABEL, CLIENT)]);
    let srv = Server::start(SERVER, &["--tcp4", "0"]);
    let port = srv.port("tcp4");
    testgen(
        CLIENT,
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{port}"),
            "--connects",
            "5",
            "--exchanges",
            "3",
        ],
    );
    let node = format!("process:{LABEL}");
    let edge = format!("{node}|peer:tcp/127.0.0.1:{port}");
    wait_for_graph(agent.port, &node, &edge);
    let url = format!("http://127.0.0.1:{}/", agent.port);

    // 1. The DOM after the page has polled a few times (virtual time).
    let dom = chromium("dom", &["--dump-dom", "--virtual-time-budget=10000", &url]).stdout;
    let head = |s: &str| s.chars().take(4000).collect::<String>();
    assert!(
        dom.contains(&format!("data-node-id=\"{node}\"")),
        "no node {node} in the rendered page:\n{}",
        head(&dom)
    );
    assert!(
        dom.contains(&format!("data-edge=\"{edge}\"")),
        "no edge {edge} in the rendered page:\n{}",
        head(&dom)
    );
    assert!(
        dom.contains(&format!("v{}", env!("CARGO_PKG_VERSION"))),
        "the header does not show the version from /health:\n{}",
        head(&dom)
    );
    assert!(
        !dom.contains("Could not update the service map"),
        "the page shows a fetch error:\n{}",
        head(&dom)
    );

    // 2. A screenshot for humans; it must at least be a real, non-blank PNG.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("service-map.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        "shot",
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,900",
            "--virtual-time-budget=10000",
            &url,
        ],
    );
    let bytes =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        png.display()
    );
    assert!(
        bytes.len() > 10 * 1024,
        "screenshot {} is only {} bytes: blank page?",
        png.display(),
        bytes.len()
    );
    eprintln!("screenshot: {} ({} bytes)", png.display(), bytes.len());
}
