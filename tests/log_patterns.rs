//! Log pattern extraction end to end: the real agent tails files (and a
//! real journal through journalctl) that this test writes, and the counts
//! scraped from /metrics must equal what was written — per pattern, level,
//! source and container — through rotation, truncation and restarts.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MESSAGES: &str = "netagent_log_messages_total";
const DROPPED: &str = "netagent_log_patterns_dropped_total";
const MALFORMED: &str = "netagent_log_lines_malformed_total";

/// The documented pattern hash: first 16 hex digits of SHA-256 of the text.
fn hash(pattern: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, pattern.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the classic text format, including escaped label values (the
/// `sample` label holds log text with quotes and backslashes).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap();
        let name = line[..name_end].to_string();
        let mut labels = BTreeMap::new();
        let mut chars = line[name_end..].chars().peekable();
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                assert_eq!(chars.next(), Some('"'), "{line}");
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some(e) => value.push(e),
                            None => panic!("{line}"),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                labels.insert(key, value);
                match chars.next() {
                    Some(',') => continue,
                    Some('}') => break,
                    other => panic!("{other:?} in {line}"),
                }
            }
        }
        let value: String = chars.collect();
        out.push((name, labels, value.trim().parse().unwrap()));
    }
    out
}

/// Labels as a map, for comparisons.
fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Message counts of sources under `dir`: (source, container, level, hash) -> (count, sample).
fn messages(
    samples: &[Sample],
    filter: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<(String, String, String, String), (f64, String)> {
    samples
        .iter()
        .filter(|(n, l, _)| n == MESSAGES && filter(l))
        .map(|(_, l, v)| {
            (
                (
                    l["source"].clone(),
                    l["container"].clone(),
                    l["level"].clone(),
                    l["pattern_hash"].clone(),
                ),
                (*v, l["sample"].clone()),
            )
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let want = labels(want);
    samples
        .iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| *v)
}

/// Scrapes until `done` holds (bounded); returns the last scrape either way.
fn scrape_until(agent: &Agent, timeout: Duration, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = parse(&agent.scrape());
        if done(&s) || Instant::now() >= deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Total of the message counter over sources below `dir`.
fn total_under(samples: &[Sample], dir: &Path) -> f64 {
    let prefix = dir.display().to_string();
    samples
        .iter()
        .filter(|(n, l, _)| n == MESSAGES && l["source"].starts_with(&prefix))
        .map(|(_, _, v)| v)
        .sum()
}

/// Agent config: no process is tracked and no interface counted (this
/// test is about logs), files polled fast.
fn config(dir: &Path, paths: &[String], extra: &str) -> String {
    let paths: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "targets:\n  - name: none\n    match_comm: \"nomatch-logs\"\n\
         interface_stats:\n  enabled: false\n\
         logs:\n  enabled: true\n  journald: false\n  paths: [{}]\n  \
         state_file: \"{}/state/offsets.json\"\n  poll_interval_seconds: 0.05\n  \
         rescan_interval_seconds: 0.2\n  rotate_wait_seconds: 1\n{extra}",
        paths.join(", "),
        dir.display()
    )
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn ts(i: usize) -> String {
    format!(
        "2026-11-22T02:{:02}:{:02}.{:03}Z",
        i / 60 % 60,
        i % 60,
        i % 1000
    )
}

#[test]
fn known_templates_and_levels_give_exactly_those_patterns_and_counts() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("logs-templates");
    let d = &dir.0;
    let agent = Agent::start_with_yaml(&config(
        d,
        &[format!("{}/*.log", d.display())],
        "  sample_max_bytes: 48\n",
    ));
    // (template as written, level, pattern after masking and clustering, count)
    let names = ["alice", "bob", "carol"];
    type Gen = Box<dyn Fn(usize) -> String>;
    let templates: Vec<(Gen, &str, &str, usize)> = vec![
        (
            Box::new(|i| {
                format!(
                    "{} ERROR payment p-{i:04} failed: card \"4111 {i}\" declined",
                    ts(i)
                )
            }),
            "error",
            "<*> ERROR payment <*> failed: card <*> declined",
            7,
        ),
        (
            Box::new(|i| {
                format!(
                    "{} ERROR disk /dev/sda{} is {}% full",
                    ts(i),
                    i % 4,
                    90 + i % 10
                )
            }),
            "error",
            "<*> ERROR disk <*> is <*> full",
            3,
        ),
        (
            Box::new(|i| {
                format!(
                    "{} WARN disk /dev/sda{} is {}% full",
                    ts(i),
                    i % 4,
                    80 + i % 10
                )
            }),
            "warning",
            "<*> WARN disk <*> is <*> full",
            5,
        ),
        (
            Box::new(move |i| {
                format!(
                    "{} INFO user {} logged in from 10.1.{}.{}:{}",
                    ts(i),
                    names[i % 3],
                    i % 7,
                    i,
                    40000 + i
                )
            }),
            "info",
            "<*> INFO user <*> logged in from <*>",
            11,
        ),
        (
            Box::new(|i| {
                format!(
                    "level=debug msg=\"cache refreshed in {}ms\" entries={}",
                    3 + i,
                    i * 10
                )
            }),
            "debug",
            "level=debug msg=\"cache refreshed in <*>\" entries=<*>",
            4,
        ),
        (
            Box::new(|_| "connection pool exhausted, waiting for a free slot".to_string()),
            "unknown",
            "connection pool exhausted, waiting for a free slot",
            3,
        ),
    ];
    // Interleave the templates in a fixed order; remember each one's first line.
    let mut lines = Vec::new();
    let mut first: Vec<Option<String>> = vec![None; templates.len()];
    let max = templates.iter().map(|t| t.3).max().unwrap();
    for i in 0..max {
        for (k, (gen, _, _, n)) in templates.iter().enumerate() {
            if i < *n {
                let l = gen(i);
                first[k].get_or_insert_with(|| l.clone());
                lines.push(l);
            }
        }
    }
    let app = d.join("app.log");
    append(&app, &(lines.join("\n") + "\n\n")); // a blank line is not a message
                                                // Another file: same template, its own source.
    let other = d.join("other.log");
    append(
        &other,
        &format!("{}\n{}\n", (templates[0].0)(100), (templates[0].0)(101)),
    );
    let want_total = lines.len() as f64 + 2.0;

    let s = scrape_until(&agent, Duration::from_secs(15), |s| {
        total_under(s, d) >= want_total
    });
    let got = messages(&s, |l| l["source"].starts_with(&d.display().to_string()));
    let src = app.display().to_string();
    let mut want = BTreeMap::new();
    for (k, (_, level, pattern, n)) in templates.iter().enumerate() {
        let sample: String = first[k].as_ref().unwrap().chars().take(48).collect();
        want.insert(
            (src.clone(), String::new(), level.to_string(), hash(pattern)),
            (*n as f64, sample),
        );
    }
    let first_other = (templates[0].0)(100);
    want.insert(
        (
            other.display().to_string(),
            String::new(),
            "error".into(),
            hash(templates[0].2),
        ),
        (2.0, first_other[..48].to_string()),
    );
    assert_eq!(got, want, "patterns, levels, counts and samples");
    for level in ["error", "warning", "info", "debug", "unknown"] {
        assert_eq!(
            value(
                &s,
                DROPPED,
                &[("source", &src), ("container", ""), ("level", level)]
            ),
            Some(0.0),
            "{level}: nothing dropped"
        );
    }
    assert_eq!(
        value(&s, MALFORMED, &[("source", &src), ("container", "")]),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "netagent_log_files", &[("state", "live")]),
        Some(2.0)
    );
    // Later scrapes count nothing twice.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(total_under(&parse(&agent.scrape()), d), want_total);
}

/// Writes numbered lines "<tag> INFO request <seq> served in <ms>ms", about
/// 10,000 a second.
struct Writer {
    seq: usize,
}

impl Writer {
    fn write(&mut self, f: &mut std::fs::File, n: usize, tag: &str) {
        for _ in 0..n {
            writeln!(
                f,
                "{tag} INFO request {} served in {}ms",
                self.seq,
                self.seq % 97
            )
            .unwrap();
            self.seq += 1;
            if self.seq.is_multiple_of(50) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn open_append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

#[test]
fn rotation_mid_stream_loses_no_line_and_counts_none_twice() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("logs-rotation");
    let d = &dir.0;
    // `*.log` for the files, `*.copy` for the copies copytruncate makes; the
    // renamed `rename.log.1` is matched by nothing and drained by inode.
    let agent = Agent::start_with_yaml(&config(
        d,
        &[
            format!("{}/*.log", d.display()),
            format!("{}/*.copy", d.display()),
        ],
        "",
    ));
    let renamed = d.join("rename.log");
    let copied = d.join("copy.log");
    let mut w = Writer { seq: 0 };
    let mut a = open_append(&renamed);
    let mut b = open_append(&copied);
    w.write(&mut a, 10, "a");
    w.write(&mut b, 10, "b");
    // Rotation is about files being followed: a file renamed away before
    // any scan saw it at a matching path cannot be known.
    let s = scrape_until(&agent, Duration::from_secs(15), |s| {
        value(s, "netagent_log_files", &[("state", "live")]) == Some(2.0)
    });
    assert_eq!(
        value(&s, "netagent_log_files", &[("state", "live")]),
        Some(2.0)
    );
    for _ in 0..4 {
        w.write(&mut a, 100, "a");
        w.write(&mut b, 100, "b");
    }
    // Rename rotation: the writer keeps its old handle for a while.
    std::fs::rename(&renamed, d.join("rename.log.1")).unwrap();
    w.write(&mut a, 150, "a");
    w.write(&mut b, 100, "b");
    let mut a = open_append(&renamed); // the writer reopens
    w.write(&mut a, 200, "a");
    // copytruncate: copy, then truncate (the writer is paused in between,
    // as logrotate's own window would lose lines otherwise). The last lines
    // before it were most likely not read yet: they must come from the copy.
    w.write(&mut b, 300, "b");
    std::fs::copy(&copied, d.join("copy.log.1.copy")).unwrap();
    b.set_len(0).unwrap();
    w.write(&mut b, 250, "b");
    // And once more, after the agent has caught up.
    let written = w.seq as f64;
    let s = scrape_until(&agent, Duration::from_secs(20), |s| {
        total_under(s, d) >= written
    });
    assert_eq!(total_under(&s, d), written, "every line counted once");
    w.write(&mut b, 120, "b");
    std::fs::copy(&copied, d.join("copy.log.2.copy")).unwrap();
    b.set_len(0).unwrap();
    w.write(&mut b, 80, "b");
    let written = w.seq as f64;
    let s = scrape_until(&agent, Duration::from_secs(20), |s| {
        total_under(s, d) >= written
    });
    assert_eq!(total_under(&s, d), written, "every line counted once");

    // The rotated file is drained and closed after rotate_wait (1 s); give
    // rescans time to double-count anything they would.
    let s = scrape_until(&agent, Duration::from_secs(10), |s| {
        value(s, "netagent_log_files", &[("state", "rotated")]) == Some(0.0)
    });
    assert_eq!(
        value(&s, "netagent_log_files", &[("state", "rotated")]),
        Some(0.0)
    );
    std::thread::sleep(Duration::from_millis(1500));
    let s = parse(&agent.scrape());
    assert_eq!(total_under(&s, d), written, "nothing counted twice");
    // One pattern: every line is the same template.
    let pattern = messages(&s, |l| l["source"].starts_with(&d.display().to_string()));
    // Where the lines were read (the copies' share depends on timing).
    for ((source, _, _, _), (n, _)) in &pattern {
        eprintln!("{source}: {n}");
    }
    assert!(
        pattern.keys().all(|(_, _, level, h)| level == "info"
            && (*h == hash("a INFO request <*> served in <*>")
                || *h == hash("b INFO request <*> served in <*>"))),
        "{pattern:?}"
    );
    assert_eq!(
        value(&s, "netagent_log_errors_total", &[("op", "file")]),
        Some(0.0)
    );
}

#[test]
fn a_restart_continues_from_the_saved_offsets() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("logs-restart");
    let d = &dir.0;
    let cfg = config(d, &[format!("{}/*.log", d.display())], "");
    let app = d.join("app.log");
    let rotated = d.join("rotated.log");
    let line = |i: usize| format!("{} INFO job {i} finished\n", ts(i));
    let other = |i: usize| format!("{} WARN queue {i} is backing up\n", ts(i));
    let mut agent = Agent::start_with_yaml(&cfg);
    append(&app, &(0..20).map(line).collect::<String>());
    append(&rotated, &(0..10).map(other).collect::<String>());
    let s = scrape_until(&agent, Duration::from_secs(15), |s| {
        total_under(s, d) >= 30.0
    });
    assert_eq!(total_under(&s, d), 30.0);
    assert!(agent.signal_and_wait(libc::SIGTERM).success());
    drop(agent);
    let state = std::fs::read_to_string(d.join("state/offsets.json")).unwrap();
    assert!(state.contains("app.log"), "{state}");

    // While the agent is down: 7 lines and the start of an 8th; and
    // rotated.log gets 4 lines, is renamed to a name no glob matches, and a
    // new rotated.log gets 3.
    append(&app, &(20..27).map(line).collect::<String>());
    append(&app, "2026-11-22T03:00:00.000Z INFO job 27 fin");
    append(&rotated, &(10..14).map(other).collect::<String>());
    std::fs::rename(&rotated, d.join("rotated.log.1")).unwrap();
    append(&rotated, &(100..103).map(other).collect::<String>());
    let agent = Agent::start_with_yaml(&cfg);
    let s = scrape_until(&agent, Duration::from_secs(15), |s| {
        total_under(s, d) >= 14.0
    });
    assert_eq!(total_under(&s, d), 14.0, "only what was written while down");
    let from = |s: &[Sample], f: &Path| -> f64 {
        messages(s, |l| l["source"] == f.display().to_string())
            .values()
            .map(|(v, _)| v)
            .sum()
    };
    assert_eq!(
        from(&s, &rotated),
        7.0,
        "the renamed file's rest and the new file"
    );
    append(&app, "ished\n");
    let s = scrape_until(&agent, Duration::from_secs(15), |s| {
        total_under(s, d) >= 15.0
    });
    assert_eq!(
        total_under(&s, d),
        15.0,
        "the line completed after the restart"
    );
    // The renamed file is closed after rotate_wait; nothing is read twice.
    let s = scrape_until(&agent, Duration::from_secs(10), |s| {
        value(s, "netagent_log_files", &[("state", "rotated")]) == Some(0.0)
    });
    assert_eq!(
        value(&s, "netagent_log_files", &[("state", "rotated")]),
        Some(0.0)
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(total_under(&parse(&agent.scrape()), d), 15.0);
}

#[test]
fn docker_json_and_cri_files_give_container_labels_and_joined_lines() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("logs-containers");
    let d = &dir.0;
    let docker_id = "a1".repeat(32);
    let cri_id = "c3".repeat(32);
    let agent = Agent::start_with_yaml(&config(
        d,
        &[
            format!("{}/docker/containers/*/*-json.log", d.display()),
            format!("{}/pods/*/nginx/*.log", d.display()),
            format!("{}/containers/*.log", d.display()),
        ],
        "",
    ));
    // Docker json-file: 4 requests, a line Docker split in two, a bad line.
    let docker_dir = d.join(format!("docker/containers/{docker_id}"));
    std::fs::create_dir_all(&docker_dir).unwrap();
    let rec = |log: &str, stream: &str| {
        format!(
            "{}\n",
            serde_json::json!({"log": log, "stream": stream, "time": "2026-11-22T02:44:09.000000001Z"})
        )
    };
    let mut docker = String::new();
    for i in 0..4 {
        docker += &rec(&format!("GET /api/items/{i} 200 {}ms\n", i + 1), "stdout");
    }
    docker += &rec("ERROR upstream \"inventory\" timed out after ", "stderr");
    docker += &rec("30s\n", "stderr");
    docker += "this is not json\n";
    append(&docker_dir.join(format!("{docker_id}-json.log")), &docker);

    // CRI, found under /var/log/pods: two partial parts and a final one.
    let pod_dir = d.join("pods/prod_web-1_0f0e0d0c-1111-2222-3333-444455556666");
    std::fs::create_dir_all(pod_dir.join("nginx")).unwrap();
    std::fs::create_dir_all(pod_dir.join("sidecar")).unwrap();
    let cri = |stream: &str, tag: &str, text: &str| {
        format!("2026-11-22T02:44:09.123456789Z {stream} {tag} {text}\n")
    };
    let mut nginx = String::new();
    for i in 0..3 {
        nginx += &cri(
            "stdout",
            "F",
            &format!("10.0.0.{i} - - \"GET / HTTP/1.1\" 200 612"),
        );
    }
    nginx += &cri("stderr", "P", "[warn] client body is buffered to ");
    nginx += &cri(
        "stderr",
        "P",
        "a temporary file /var/cache/nginx/client_temp/",
    );
    nginx += &cri("stderr", "F", "0000000001");
    append(&pod_dir.join("nginx/0.log"), &nginx);

    // CRI, found through kubelet's /var/log/containers link (id in the name).
    let mut sidecar = String::new();
    for i in 0..5 {
        sidecar += &cri(
            "stdout",
            "F",
            &format!("level=info msg=\"synced {i} objects\""),
        );
    }
    append(&pod_dir.join("sidecar/0.log"), &sidecar);
    std::fs::create_dir_all(d.join("containers")).unwrap();
    std::os::unix::fs::symlink(
        pod_dir.join("sidecar/0.log"),
        d.join(format!("containers/web-1_prod_sidecar-{cri_id}.log")),
    )
    .unwrap();

    let want_total = 4.0 + 1.0 + 1.0 + 3.0 + 1.0 + 5.0;
    let in_test = |l: &BTreeMap<String, String>| {
        l["container"] == docker_id
            || l["container"] == cri_id
            || l["container"] == "prod/web-1/nginx"
    };
    let s = scrape_until(&agent, Duration::from_secs(15), |s| {
        messages(s, in_test).values().map(|(v, _)| v).sum::<f64>() >= want_total
    });
    let got: BTreeMap<_, _> = messages(&s, in_test)
        .into_iter()
        .map(|(k, (v, _))| (k, v))
        .collect();
    let key = |src: &str, c: &str, level: &str, p: &str| {
        (src.to_string(), c.to_string(), level.to_string(), hash(p))
    };
    let want = BTreeMap::from([
        (key("docker", &docker_id, "unknown", "GET <*> <*> <*>"), 4.0),
        (
            key(
                "docker",
                &docker_id,
                "error",
                "ERROR upstream <*> timed out after <*>",
            ),
            1.0,
        ),
        (
            key("docker", &docker_id, "unknown", "this is not json"),
            1.0,
        ),
        (
            key("cri", "prod/web-1/nginx", "unknown", "<*> - - <*> <*> <*>"),
            3.0,
        ),
        (
            key(
                "cri",
                "prod/web-1/nginx",
                "warning",
                "[warn] client body is buffered to a temporary file <*>",
            ),
            1.0,
        ),
        (
            key(
                "cri",
                &cri_id,
                "info",
                "level=info msg=\"synced <*> objects\"",
            ),
            5.0,
        ),
    ]);
    assert_eq!(got, want);
    assert_eq!(
        value(
            &s,
            MALFORMED,
            &[("source", "docker"), ("container", &docker_id)]
        ),
        Some(1.0),
        "the line that is not JSON"
    );
    assert_eq!(
        value(
            &s,
            MALFORMED,
            &[("source", "cri"), ("container", "prod/web-1/nginx")]
        ),
        Some(0.0)
    );
}

#[test]
fn patterns_beyond_the_cap_are_counted_under_other() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("logs-cap");
    let d = &dir.0;
    let agent = Agent::start_with_yaml(&config(
        d,
        &[format!("{}/*.log", d.display())],
        "  max_patterns_per_source: 3\n",
    ));
    // Five templates of different lengths (never merged), in this order.
    let templates = [
        ("alpha started", 4),
        ("beta stopped cleanly", 6),
        ("gamma was restarted twice", 2),
        ("delta took too long to answer", 5),
        ("epsilon is not configured on this node", 3),
    ];
    let mut text = String::new();
    for round in 0..6 {
        for (t, n) in templates {
            if round < n {
                text += t;
                text += "\n";
            }
        }
    }
    let app = d.join("app.log");
    append(&app, &text);
    let s = scrape_until(&agent, Duration::from_secs(15), |s| {
        total_under(s, d) >= 20.0
    });
    let src = app.display().to_string();
    let got: BTreeMap<String, f64> = messages(&s, |l| l["source"] == src)
        .into_iter()
        .map(|((_, _, _, h), (v, _))| (h, v))
        .collect();
    let want = BTreeMap::from([
        (hash("alpha started"), 4.0),
        (hash("beta stopped cleanly"), 6.0),
        (hash("gamma was restarted twice"), 2.0),
        ("~other".to_string(), 8.0),
    ]);
    assert_eq!(got, want);
    assert_eq!(
        value(
            &s,
            DROPPED,
            &[("source", &src), ("container", ""), ("level", "unknown")]
        ),
        Some(8.0),
        "the lines of the two patterns that did not fit"
    );
}

/// Our journalctl children (those reading `dir`), from /proc.
fn journalctl_pids(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let cmdline = String::from_utf8_lossy(&cmdline);
            let argv0 = cmdline.split('\0').next().unwrap_or("");
            argv0.ends_with("journalctl") && cmdline.contains(&needle)
        })
        .collect()
}

const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// Appends entries to a journal file with systemd-journal-remote (from the
/// export format, stamped with this boot and the current time); an empty
/// message leaves MESSAGE out.
fn write_journal(file: &Path, entries: &[(&str, u8, &str)]) {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .replace('-', "");
    let mut export = String::new();
    for (unit, priority, message) in entries {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let mut mono = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut mono) };
        let mono_us = mono.tv_sec as u64 * 1_000_000 + mono.tv_nsec as u64 / 1000;
        export += &format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={boot}\n\
             _SYSTEMD_UNIT={unit}\nSYSLOG_IDENTIFIER={}\nPRIORITY={priority}\n",
            now.as_micros(),
            mono_us,
            unit.trim_end_matches(".service")
        );
        // An empty message stands for an entry without MESSAGE.
        if !message.is_empty() {
            export += &format!("MESSAGE={message}\n");
        }
        export += "\n";
    }
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg("-o")
        .arg(file)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-journal-remote");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn journald_entries_via_journalctl_with_cursor_across_restarts() {
    let _g = serial();
    if !require_bpf()
        || !require(have("journalctl"), "needs journalctl (systemd)")
        || !require(
            Path::new(JOURNAL_REMOTE).exists(),
            "needs systemd-journal-remote (scripts/setup.sh) to write a journal",
        )
    {
        return;
    }
    let dir = TempDir::new("logs-journal");
    let d = &dir.0;
    let jdir: PathBuf = d.join("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    let jfile = jdir.join("test.journal");
    write_journal(
        &jfile,
        &[
            ("shop.service", 3, "payment 17 failed"),
            ("shop.service", 3, "payment 18 failed"),
            ("shop.service", 6, "WARN stock for item 9 is low"),
            ("shop.service", 6, "order 5 placed"),
            ("shop.service", 6, "order 6 placed"),
            ("shop.service", 6, "order 7 placed"),
            ("cron.service", 5, "job backup-42 started"),
            ("cron.service", 6, ""),
        ],
    );
    let cfg = format!(
        "{}  journald: true\n  journald_directory: \"{}\"\n  read_from_start: true\n",
        config(d, &[], "").replace("  journald: false\n", ""),
        jdir.display()
    );
    let journal_total = |s: &[Sample]| -> f64 {
        messages(s, |l| l["source"].starts_with("journald/"))
            .values()
            .map(|(v, _)| v)
            .sum()
    };
    let mut agent = Agent::start_with_yaml(&cfg);
    let s = scrape_until(&agent, Duration::from_secs(15), |s| journal_total(s) >= 7.0);
    let got: BTreeMap<_, _> = messages(&s, |l| l["source"].starts_with("journald/"))
        .into_iter()
        .map(|((src, c, level, h), (v, _))| ((src, c, level, h), v))
        .collect();
    let key = |src: &str, level: &str, p: &str| {
        (src.to_string(), String::new(), level.to_string(), hash(p))
    };
    let want = BTreeMap::from([
        (
            key("journald/shop.service", "error", "payment <*> failed"),
            2.0,
        ),
        (
            key(
                "journald/shop.service",
                "warning",
                "WARN stock for item <*> is low",
            ),
            1.0,
        ),
        (
            key("journald/shop.service", "info", "order <*> placed"),
            3.0,
        ),
        (key("journald/cron.service", "info", "job <*> started"), 1.0),
    ]);
    assert_eq!(got, want);
    let s = scrape_until(&agent, Duration::from_secs(5), |s| {
        value(
            s,
            MALFORMED,
            &[("source", "journald/cron.service"), ("container", "")],
        ) == Some(1.0)
    });
    assert_eq!(
        value(
            &s,
            MALFORMED,
            &[("source", "journald/cron.service"), ("container", "")]
        ),
        Some(1.0),
        "the entry without MESSAGE"
    );
    assert_eq!(value(&s, "netagent_log_journald_up", &[]), Some(1.0));
    assert_eq!(
        journalctl_pids(d).len(),
        1,
        "one journalctl, reading our journal"
    );

    // Stop cleanly (the cursor is saved), write while down, start again.
    assert!(agent.signal_and_wait(libc::SIGTERM).success());
    drop(agent);
    let state = std::fs::read_to_string(d.join("state/offsets.json")).unwrap();
    assert!(state.contains("journal_cursor\":\"s="), "{state}");
    write_journal(
        &jfile,
        &[
            ("shop.service", 6, "order 8 placed"),
            ("shop.service", 3, "payment 19 failed"),
        ],
    );
    let agent = Agent::start_with_yaml(&cfg);
    let s = scrape_until(&agent, Duration::from_secs(15), |s| journal_total(s) >= 2.0);
    std::thread::sleep(Duration::from_millis(500));
    let s2 = parse(&agent.scrape());
    assert_eq!(journal_total(&s), 2.0);
    assert_eq!(
        journal_total(&s2),
        2.0,
        "entries before the cursor are not counted again"
    );

    // A killed agent takes its journalctl with it.
    drop(agent);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !journalctl_pids(d).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        journalctl_pids(d).is_empty(),
        "journalctl outlived the agent"
    );
}

/// Deterministic pseudo-random numbers (xorshift64) for the benchmark's lines.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One line of a realistic mix: ten templates, numbers, ids, addresses,
/// quoted strings, user names (words the mask leaves to clustering),
/// logfmt, JSON and syslog lines, every level.
fn bench_line(r: &mut Rng, i: u64) -> String {
    const USERS: [&str; 8] = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    let ts = format!(
        "2026-11-22T03:{:02}:{:02}.{:06}Z",
        i / 60_000 % 60,
        i / 1000 % 60,
        i % 1_000_000
    );
    let user = USERS[r.next(8) as usize];
    let (a, b, c, d) = (r.next(256), r.next(256), r.next(1000), r.next(65536));
    match r.next(10) {
        0 => format!(
            "{ts} INFO http request method=GET path=/api/v1/items/{d} status=200 \
             duration={c}ms bytes={}",
            a * d
        ),
        1 => format!(
            "{ts} INFO user {user} logged in from 10.{a}.{b}.{}:{d}",
            c % 256
        ),
        2 => format!("{ts} WARN slow query on table orders took {c}ms rows={d}"),
        3 => format!(
            "{ts} ERROR upstream \"inventory-{}\" timed out after {c}ms (attempt {} of 3)",
            a % 9,
            b % 3 + 1
        ),
        4 => format!("level=info msg=\"cache refreshed in {c}ms\" entries={d} hit_ratio=0.{a}"),
        5 => format!(r#"{{"level":"debug","ts":{i},"msg":"tick {d} processed","queue":{a}}}"#),
        6 => {
            let (hi, lo) = (r.next(u64::MAX), r.next(u64::MAX));
            format!(
                "{ts} INFO worker-{} picked job {hi:016x}{lo:016x} from queue default",
                a % 16
            )
        }
        7 => format!("{ts} ERROR failed to connect to 10.0.{a}.{b}:5432: connection refused"),
        8 => format!(
            "Nov 22 03:04:05 node-1 sshd[{c}{d}]: Accepted publickey for {user} \
             from 192.168.{a}.{b} port {d} ssh2"
        ),
        _ => format!("{ts} DEBUG gc pause {}ms heap={c}MB", a % 50),
    }
}

/// user + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tick
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    /// logs.enabled: false
    Off,
    /// logs on, files followed, nothing written
    Idle,
    /// logs on, `rate` lines/s written
    Load,
}

/// Runs the agent in one variant for `seconds`; returns (CPU cores used,
/// lines written).
fn bench_round(variant: Variant, seconds: f64, rate: f64, files: usize) -> (f64, u64) {
    let dir = TempDir::new("logs-bench");
    let d = &dir.0;
    let paths: Vec<PathBuf> = (0..files).map(|i| d.join(format!("app{i}.log"))).collect();
    for p in &paths {
        append(p, "");
    }
    let mut cfg = config(d, &[format!("{}/*.log", d.display())], "");
    cfg = cfg.replace("poll_interval_seconds: 0.05", "poll_interval_seconds: 0.25");
    cfg = cfg.replace(
        "rescan_interval_seconds: 0.2",
        "rescan_interval_seconds: 10",
    );
    if variant == Variant::Off {
        cfg = cfg.replace(
            "  enabled: true\n  journald",
            "  enabled: false\n  journald",
        );
    }
    let agent = Agent::start_with_yaml(&cfg);
    let pid = agent.child.id();
    std::thread::sleep(Duration::from_secs(1)); // start-up work settles
    let mut handles: Vec<std::fs::File> = paths.iter().map(|p| open_append(p)).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let mut written = 0u64;
    while t0.elapsed().as_secs_f64() < seconds {
        if variant == Variant::Load {
            let due = (t0.elapsed().as_secs_f64() * rate) as u64;
            let mut batches = vec![String::new(); files];
            while written < due {
                let b = &mut batches[(written % files as u64) as usize];
                b.push_str(&bench_line(&mut rng, written));
                b.push('\n');
                written += 1;
            }
            for (f, b) in handles.iter_mut().zip(&batches) {
                f.write_all(b.as_bytes()).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let cpu = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
    if variant == Variant::Load {
        // Exact under load, too.
        let s = scrape_until(&agent, Duration::from_secs(60), |s| {
            total_under(s, d) >= written as f64
        });
        assert_eq!(total_under(&s, d), written as f64, "lines counted");
        let patterns = messages(&s, |l| l["source"].starts_with(&d.display().to_string())).len();
        eprintln!(
            "  load round: {written} lines, {patterns} series of netagent_log_messages_total"
        );
    }
    (cpu, written)
}

#[test]
#[ignore = "benchmark: cargo test --release --test log_patterns bench -- --ignored --nocapture"]
fn bench_cpu_per_10k_lines_per_second() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let seconds: f64 = env_or("NETAGENT_LOG_BENCH_SECONDS", 10.0);
    let rate: f64 = env_or("NETAGENT_LOG_BENCH_RATE", 10_000.0);
    let rounds: usize = env_or("NETAGENT_LOG_BENCH_ROUNDS", 3);
    let files: usize = env_or("NETAGENT_LOG_BENCH_FILES", 4);
    let mut rows = Vec::new();
    for round in 1..=rounds {
        // Interleaved, so that machine noise hits every variant alike.
        let (off, _) = bench_round(Variant::Off, seconds, rate, files);
        let (idle, _) = bench_round(Variant::Idle, seconds, rate, files);
        let (load, lines) = bench_round(Variant::Load, seconds, rate, files);
        let actual = lines as f64 / seconds;
        let per_10k = (load - off) / (actual / 10_000.0);
        eprintln!("round {round}: off {off:.4} idle {idle:.4} load {load:.4} cores at {actual:.0} lines/s");
        rows.push((off, idle, load, actual, per_10k));
    }
    let median = |k: fn(&(f64, f64, f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(k).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let pct = |c: f64| format!("{:.2} %", c * 100.0);
    let mut out = format!(
        "Workload: {rate:.0} lines/s over {files} files (10 templates, every level), {seconds} s per run, {rounds} rounds interleaved (off, idle, load); CPU = agent user+system time / wall time (100 % = one core).\n\n\
         | round | logs off | logs on, idle | logs on, {rate:.0} lines/s | lines/s written | CPU per 10k lines/s (load − off) |\n|---|---|---|---|---|---|\n"
    );
    for (i, (off, idle, load, actual, per)) in rows.iter().enumerate() {
        out += &format!(
            "| {} | {} | {} | {} | {actual:.0} | {} |\n",
            i + 1,
            pct(*off),
            pct(*idle),
            pct(*load),
            pct(*per)
        );
    }
    out += &format!(
        "| median | {} | {} | {} | {:.0} | **{}** |\n",
        pct(median(|r| r.0)),
        pct(median(|r| r.1)),
        pct(median(|r| r.2)),
        median(|r| r.3),
        pct(median(|r| r.4))
    );
    println!("\n{out}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("logs.md"), &out).unwrap();
}

#[test]
fn journald_on_a_first_run_counts_from_the_agent_start() {
    let _g = serial();
    if !require_bpf()
        || !require(have("journalctl"), "needs journalctl (systemd)")
        || !require(
            Path::new(JOURNAL_REMOTE).exists(),
            "needs systemd-journal-remote (scripts/setup.sh) to write a journal",
        )
    {
        return;
    }
    let dir = TempDir::new("logs-journal-since");
    let d = &dir.0;
    let jdir = d.join("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    let jfile = jdir.join("test.journal");
    write_journal(
        &jfile,
        &[
            ("old.service", 6, "history 1"),
            ("old.service", 6, "history 2"),
        ],
    );
    let cfg = format!(
        "{}  journald: true\n  journald_directory: \"{}\"\n",
        config(d, &[], "").replace("  journald: false\n", ""),
        jdir.display()
    );
    let agent = Agent::start_with_yaml(&cfg);
    write_journal(&jfile, &[("new.service", 4, "disk 3 degraded")]);
    let counted = |s: &[Sample]| messages(s, |l| l["source"].starts_with("journald/"));
    let s = scrape_until(&agent, Duration::from_secs(15), |s| !counted(s).is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let s2 = parse(&agent.scrape());
    let want = BTreeMap::from([(
        (
            "journald/new.service".to_string(),
            String::new(),
            "warning".to_string(),
            hash("disk <*> degraded"),
        ),
        (1.0, "disk 3 degraded".to_string()),
    )]);
    assert_eq!(counted(&s), want);
    assert_eq!(
        counted(&s2),
        want,
        "entries from before the start are not counted"
    );
}
