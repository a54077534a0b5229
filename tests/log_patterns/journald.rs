//! The journal, read through journalctl from a journal file written with
//! systemd-journal-remote: levels from priorities, the cursor kept across
//! restarts, a first run counting from the agent's start, and no
//! journalctl outliving the agent.

use super::{config, hash, messages, parse, scrape_until, value, Sample, MALFORMED};
use crate::common::{have, require, require_bpf, serial, Agent, TempDir};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
