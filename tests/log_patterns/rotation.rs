//! Files that change under the tailer: rename and copytruncate rotation in
//! the middle of a stream (no line lost, none counted twice), and an agent
//! restart that continues from the saved offsets.

use super::{append, config, hash, messages, open_append, parse, scrape_until, total_under, ts};
use super::{value, Sample};
use crate::common::{require_bpf, serial, Agent, TempDir};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

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
fn a_learned_template_keeps_its_hash_across_a_restart() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("logs-restart-hash");
    let d = &dir.0;
    let cfg = config(d, &[format!("{}/*.log", d.display())], "");
    let app = d.join("app.log");
    let login = |u: &str| format!("INFO user {u} logged in\n");
    // Three users make the name a variable: one pattern, `user <*>`.
    let mut agent = Agent::start_with_yaml(&cfg);
    append(&app, &["alice", "bob", "carol"].map(login).concat());
    let s = scrape_until(&agent, Duration::from_secs(15), |s| {
        total_under(s, d) >= 3.0
    });
    let before = messages(&s, |l| l["source"] == app.display().to_string());
    assert_eq!(before.len(), 1, "one pattern: {before:?}");
    let (key, _) = before.into_iter().next().unwrap();
    assert!(agent.signal_and_wait(libc::SIGTERM).success());
    drop(agent);

    // After the restart a single new user is no proof of a variable, yet
    // the line lands in the saved template, under the same hash.
    let agent = Agent::start_with_yaml(&cfg);
    append(&app, &login("dave"));
    let s = scrape_until(&agent, Duration::from_secs(15), |s| {
        total_under(s, d) >= 1.0
    });
    let after = messages(&s, |l| l["source"] == app.display().to_string());
    assert_eq!(
        after
            .into_iter()
            .map(|(k, (v, _))| (k, v))
            .collect::<Vec<_>>(),
        vec![(key, 1.0)],
        "the same pattern_hash as before the restart"
    );
}
