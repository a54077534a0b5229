//! The web UI end to end: the real agent serves `/`, its embedded assets and
//! `/api/v1/graph`; real traffic comes from a known comm; Debian's headless
//! Chromium renders the page. The rendered DOM must show the process node and
//! its edge; in a screenshot taken over the DevTools protocol the pixels
//! where the page laid out those nodes and the edge must have their colours
//! (so they are really painted, not a blank canvas). The screenshot is kept
//! at `target/ui-artifacts/service-map.png` for humans (CI can publish it).

mod common;
use common::cdp::Browser;
use common::hostlink::HostLink;
use common::*;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CLIENT: &str = "nettest-ui";
const LABEL: &str = "ui-client";
const SERVER: &str = "nettest-srv";
/// A Chromium run is killed after this long.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(60);

/// What a bounded Chromium run printed.
struct Run {
    stdout: String,
    stderr: String,
}

/// Runs Chromium with a fresh profile (removed afterwards) in its own
/// process group, killing the whole group after `CHROMIUM_LIMIT`.
fn chromium(netns: &str, host: &str, tag: &str, args: &[&str]) -> Run {
    let profile = TempDir::new(&format!("chromium-{tag}"));
    let mut child = common::cdp::command(netns, host)
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
fn wait_for_graph(agent: &Agent, node: &str, edge: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        match http_get_at(agent.ip, agent.port, "/api/v1/graph", None) {
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

    // Chromium runs in a test namespace that reaches the agent over a veth
    // (no default route, no IPv6): nothing it tries can leave the machine.
    let link = HostLink::new("ui");
    let agent = Agent::start_with_yaml_on(
        &format!("targets:\n  - name: \"{LABEL}\"\n    match_comm: \"{CLIENT}\"\n"),
        link.host_ip.into(),
    );
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
    wait_for_graph(&agent, &node, &edge);
    let host = agent.ip.to_string();
    let url = format!("http://{host}:{}/", agent.port);

    // 1. The DOM after the page has polled a few times (virtual time).
    let dom = chromium(
        &link.ns,
        &host,
        "dom",
        &["--dump-dom", "--virtual-time-budget=10000", &url],
    )
    .stdout;
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

    // 2. The pixels: where the page laid out the process node, the peer
    // node and the edge, a screenshot shows their colours.
    let mut browser = Browser::open(&link.ns, &host, &url, 1280, 900);
    let peer = format!("peer:tcp/127.0.0.1:{port}");
    let layout = browser.eval(
        &LAYOUT_JS
            .replace("NODES", &serde_json::json!([node, peer]).to_string())
            .replace("EDGE", &serde_json::json!(edge).to_string()),
    );
    assert!(
        !layout.is_null(),
        "the page never drew {node}, {peer} and {edge}"
    );
    let bytes = browser.screenshot();
    drop(browser);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("service-map.png");
    std::fs::write(&png, &bytes).unwrap();
    eprintln!("screenshot: {} ({} bytes)", png.display(), bytes.len());
    let shot = Image::decode(&bytes);
    let dpr = layout["dpr"].as_f64().unwrap();
    let bg = rgb(&layout["background"]);
    for n in layout["nodes"].as_array().unwrap() {
        let id = n["id"].as_str().unwrap();
        let [x, y, w, h] = rect(&n["rect"]);
        assert!(w >= 40.0 && h >= 16.0, "{id}: laid out at {x},{y} {w}x{h}");
        let (box_fill, stripe) = (rgb(&n["box"]), rgb(&n["stripe"]));
        assert_ne!(box_fill, bg, "{id}: the box has the page's colour");
        // The stripe is 4 px wide at the left edge; the box's right end
        // holds no text or badge.
        let stripe_px = shot.at((x + 2.0) * dpr, (y + h / 2.0) * dpr);
        let box_px = shot.at((x + w - 3.0) * dpr, (y + h - 4.0) * dpr);
        assert!(
            close(stripe_px, stripe),
            "{id}: stripe pixel {stripe_px:?}, expected {stripe:?}; see {}",
            png.display()
        );
        assert!(
            close(box_px, box_fill),
            "{id}: box pixel {box_px:?}, expected {box_fill:?}; see {}",
            png.display()
        );
    }
    // The edge: along its path (dashed when idle, thin and antialiased)
    // most points have a pixel painted towards the line's colour from the
    // card behind it (sampled 6 px above the line).
    let stroke = rgb(&layout["edge"]["stroke"]);
    let points = layout["edge"]["points"].as_array().unwrap();
    let painted = points
        .iter()
        .filter(|p| {
            let (px, py) = (p[0].as_f64().unwrap() * dpr, p[1].as_f64().unwrap() * dpr);
            let behind = shot.at(px, py - 6.0 * dpr);
            (-1..=1).any(|dy| mixes_towards(shot.at(px, py + dy as f64), behind, stroke))
        })
        .count();
    assert!(
        painted * 3 >= points.len(),
        "only {painted} of {} points along the edge are painted in {stroke:?}; see {}",
        points.len(),
        png.display()
    );
}

/// Runs in the page: waits (bounded) until the nodes NODES and the edge
/// EDGE are drawn, then returns their layout in viewport pixels and the
/// colours they are painted with.
const LAYOUT_JS: &str = r#"(async () => {
  const ids = NODES, edgeKey = EDGE;
  const sel = id => '[data-node-id="' + CSS.escape(id) + '"]';
  const drawn = () => ids.every(id => document.querySelector(sel(id))) &&
    document.querySelector('[data-edge="' + CSS.escape(edgeKey) + '"] path.line[d]');
  for (let i = 0; i < 200 && !drawn(); i++) await new Promise(r => setTimeout(r, 50));
  if (!drawn()) return null;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const box = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; };
  const line = document.querySelector('[data-edge="' + CSS.escape(edgeKey) + '"] path.line');
  const len = line.getTotalLength(), m = line.getScreenCTM(), points = [];
  for (let i = 1; i < 40; i++) {
    const p = line.getPointAtLength(len * i / 40).matrixTransform(m);
    points.push([p.x, p.y]);
  }
  return {
    dpr: window.devicePixelRatio,
    background: getComputedStyle(document.body).backgroundColor,
    nodes: ids.map(id => {
      const g = document.querySelector(sel(id));
      return {
        id, rect: box(g.querySelector('.box')),
        box: getComputedStyle(g.querySelector('.box')).fill,
        stripe: getComputedStyle(g.querySelector('.stripe')).fill,
      };
    }),
    edge: { stroke: getComputedStyle(line).stroke, points },
  };
})()"#;

fn rect(v: &serde_json::Value) -> [f64; 4] {
    let a: Vec<f64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    [a[0], a[1], a[2], a[3]]
}

/// `rgb(r, g, b)` or `rgba(…)` as the page computed it.
fn rgb(v: &serde_json::Value) -> [u8; 3] {
    let s = v.as_str().unwrap_or_else(|| panic!("not a colour: {v}"));
    let nums: Vec<u8> = s
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .take(3)
        .map(|n| n.trim().parse().unwrap_or_else(|_| panic!("colour {s}")))
        .collect();
    [nums[0], nums[1], nums[2]]
}

/// Equal up to antialiasing and colour-space rounding.
fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 12)
}

/// `p` is `bg` blended with at least a third of `fg` (antialiased line).
fn mixes_towards(p: [u8; 3], bg: [u8; 3], fg: [u8; 3]) -> bool {
    let span: i32 = (0..3).map(|i| (fg[i] as i32 - bg[i] as i32).abs()).sum();
    let moved: i32 = (0..3).map(|i| (p[i] as i32 - bg[i] as i32).abs()).sum();
    let between = (0..3).all(|i| {
        let (lo, hi) = (bg[i].min(fg[i]), bg[i].max(fg[i]));
        p[i].saturating_add(6) >= lo && p[i] <= hi.saturating_add(6)
    });
    span > 30 && between && moved * 3 >= span
}

/// A decoded RGB(A) screenshot.
struct Image {
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<u8>,
}

impl Image {
    fn decode(bytes: &[u8]) -> Image {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("screenshot is a PNG");
        let mut data = vec![0; reader.output_buffer_size().expect("PNG size")];
        let info = reader.next_frame(&mut data).expect("PNG frame");
        let channels = match info.color_type {
            png::ColorType::Rgba => 4,
            png::ColorType::Rgb => 3,
            other => panic!("unexpected PNG colour type {other:?}"),
        };
        data.truncate(info.buffer_size());
        Image {
            width: info.width as usize,
            height: info.height as usize,
            channels,
            data,
        }
    }

    /// The pixel at (x, y), clamped to the image.
    fn at(&self, x: f64, y: f64) -> [u8; 3] {
        let x = (x.max(0.0) as usize).min(self.width - 1);
        let y = (y.max(0.0) as usize).min(self.height - 1);
        let i = (y * self.width + x) * self.channels;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}
