//! Unit tests of the parent module.
use super::*;
use crate::test_support::TempDir;
use std::io::Write;

/// A scratch directory of this file's tests (`tag` unique among them).
fn scratch(tag: &str) -> TempDir {
    TempDir::new(&format!("tail-{tag}"))
}

fn cfg(dir: &Path) -> TailConfig {
    TailConfig {
        patterns: vec![format!("{}/*.log", dir.display())],
        max_files: 10,
        max_line_bytes: 1000,
        rotate_wait: Duration::ZERO,
        read_from_start: true,
    }
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

fn poll(t: &mut Tailer) -> Vec<String> {
    let mut out = Vec::new();
    t.poll(&mut |_, m| out.push(m.text.into_owned()));
    out
}

fn lines(prefix: &str, range: std::ops::Range<u32>) -> String {
    range
        .map(|i| format!("{prefix} line number {i:04} of the test file\n"))
        .collect()
}

/// A tailer that follows `p` (10 lines read) and copies named `*.log.1`.
fn reading_ten_lines_with_copies(d: &TempDir, p: &Path) -> Tailer {
    append(p, &lines("a", 0..10));
    let mut c = cfg(&d.0);
    c.patterns.push(format!("{}/*.log.1", d.0.display()));
    let mut t = Tailer::new(c, None);
    t.scan();
    assert_eq!(poll(&mut t).len(), 10);
    t
}

fn truncate(p: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(0)
        .unwrap();
}

#[test]
fn partial_lines_wait_for_their_newline() {
    let d = scratch("partial");
    let p = d.0.join("a.log");
    append(&p, "one\ntw");
    let mut t = Tailer::new(cfg(&d.0), None);
    t.scan();
    assert_eq!(poll(&mut t), vec!["one"]);
    assert_eq!(t.saved()[0].offset, 4);
    append(&p, "o\n");
    assert_eq!(poll(&mut t), vec!["two"]);
    assert_eq!(t.saved()[0].offset, 8);
}

#[test]
fn rename_rotation_loses_and_repeats_nothing() {
    let d = scratch("rename");
    let p = d.0.join("a.log");
    append(&p, &lines("a", 0..10));
    let mut t = Tailer::new(cfg(&d.0), None);
    t.scan();
    assert_eq!(poll(&mut t).len(), 10);
    append(&p, &lines("a", 10..15));
    let rotated = d.0.join("a.log.1");
    std::fs::rename(&p, &rotated).unwrap();
    append(&rotated, &lines("a", 15..17)); // the writer has not reopened yet
    append(&p, &lines("b", 0..3));
    let got = poll(&mut t);
    assert_eq!(got.len(), 7, "{got:?}");
    let got = poll(&mut t);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|l| l.starts_with('b')));
    assert_eq!(t.stats().live, 1);
    assert!(poll(&mut t).is_empty());
}

#[test]
fn truncation_restarts_at_zero_and_a_matched_copy_continues() {
    let d = scratch("trunc");
    let p = d.0.join("a.log");
    let mut t = reading_ten_lines_with_copies(&d, &p);
    append(&p, &lines("a", 10..14)); // not read before the rotation
    let copy = d.0.join("a.log.1");
    std::fs::copy(&p, &copy).unwrap();
    t.scan(); // the copy is seen before the truncation: left alone
    assert_eq!(t.stats().live, 1);
    truncate(&p);
    append(&p, &lines("b", 0..2));
    let got = poll(&mut t);
    assert_eq!(got.len(), 2, "{got:?}");
    t.scan();
    let got = poll(&mut t);
    assert_eq!(got, lines("a", 10..14).lines().collect::<Vec<_>>());
    assert!(poll(&mut t).is_empty());
}

#[test]
fn a_copy_scanned_before_its_truncation_was_polled_repeats_nothing() {
    let d = scratch("trunc-race");
    let p = d.0.join("a.log");
    let mut t = reading_ten_lines_with_copies(&d, &p);
    append(&p, &lines("a", 10..14));
    // copytruncate and new lines, all between one poll and a scan.
    std::fs::copy(&p, d.0.join("a.log.1")).unwrap();
    truncate(&p);
    append(&p, &lines("b", 0..2));
    t.scan();
    let mut got = poll(&mut t);
    got.sort();
    let mut want: Vec<String> = lines("a", 10..14).lines().map(String::from).collect();
    want.extend(lines("b", 0..2).lines().map(String::from));
    assert_eq!(got, want);
    assert!(poll(&mut t).is_empty());
}

#[test]
fn an_empty_new_file_is_opened_once_it_has_content() {
    let d = scratch("empty");
    append(&d.0.join("a.log"), &lines("a", 0..3));
    let mut t = Tailer::new(cfg(&d.0), None);
    t.scan();
    assert_eq!(poll(&mut t).len(), 3);
    let q = d.0.join("b.log");
    append(&q, "");
    t.scan();
    // It might have been a copy about to be written.
    assert_eq!(t.stats().live, 1, "empty: not known yet");
    append(&q, &lines("b", 0..2));
    t.scan();
    assert_eq!(poll(&mut t).len(), 2);
}

#[test]
fn files_that_only_start_alike_are_both_read() {
    let d = scratch("alike");
    let banner = lines("start", 0..3);
    append(&d.0.join("a.log"), &format!("{banner}a only\n"));
    append(&d.0.join("b.log"), &format!("{banner}b only\n"));
    let mut t = Tailer::new(cfg(&d.0), None);
    t.scan();
    assert_eq!(t.stats().live, 2);
    assert_eq!(poll(&mut t).len(), 8);
}

#[test]
fn restart_resumes_from_the_saved_offset() {
    let d = scratch("restart");
    let p = d.0.join("a.log");
    append(&p, &lines("a", 0..5));
    let mut t = Tailer::new(cfg(&d.0), None);
    t.scan();
    assert_eq!(poll(&mut t).len(), 5);
    let saved = t.saved();
    drop(t);
    append(&p, &lines("a", 5..8));
    let mut t = Tailer::new(cfg(&d.0), Some(saved));
    t.scan();
    assert_eq!(poll(&mut t).len(), 3);
}

#[test]
fn a_file_rotated_while_stopped_is_drained_from_its_offset() {
    let d = scratch("down");
    let p = d.0.join("a.log");
    append(&p, &lines("a", 0..5));
    let mut t = Tailer::new(cfg(&d.0), None);
    t.scan();
    assert_eq!(poll(&mut t).len(), 5);
    let saved = t.saved();
    drop(t);
    append(&p, &lines("a", 5..8));
    std::fs::rename(&p, d.0.join("a.log.1")).unwrap(); // not matched by *.log
    append(&p, &lines("b", 0..2));
    let mut t = Tailer::new(cfg(&d.0), Some(saved));
    t.scan();
    let mut got = Vec::new();
    let mut sources = Vec::new();
    for _ in 0..3 {
        t.poll(&mut |o, m| {
            sources.push(o.source.clone());
            got.push(m.text.into_owned());
        });
    }
    got.sort();
    let mut want: Vec<String> = lines("a", 5..8).lines().map(String::from).collect();
    want.extend(lines("b", 0..2).lines().map(String::from));
    want.sort();
    assert_eq!(got, want);
    // Counted under the name it had when it was followed.
    assert!(sources.iter().all(|s| s.ends_with("/a.log")), "{sources:?}");
    assert_eq!(t.stats().rotated, 0, "drained and closed");
}

#[test]
fn a_small_file_saved_before_its_fingerprint_resumes_by_inode() {
    let d = scratch("small");
    let p = d.0.join("a.log");
    append(&p, "one\n");
    let mut t = Tailer::new(cfg(&d.0), None);
    t.scan();
    assert_eq!(poll(&mut t), vec!["one"]);
    let saved = t.saved();
    assert_eq!(saved[0].fingerprint, None);
    drop(t);
    append(&p, &lines("a", 0..3)); // now long enough for a fingerprint
    let mut t = Tailer::new(cfg(&d.0), Some(saved));
    t.scan();
    assert_eq!(poll(&mut t).len(), 3);
}

#[test]
fn first_run_without_read_from_start_begins_at_the_end() {
    let d = scratch("end");
    let p = d.0.join("a.log");
    append(&p, &lines("a", 0..5));
    append(&p, "half");
    let mut c = cfg(&d.0);
    c.read_from_start = false;
    let mut t = Tailer::new(c, None);
    t.scan();
    append(&p, " done\n");
    assert_eq!(poll(&mut t), vec!["half done"]);
    // Files that appear later are new: read from their start.
    let q = d.0.join("b.log");
    append(&q, "x\ny\n");
    t.scan();
    assert_eq!(poll(&mut t), vec!["x", "y"]);
}

#[test]
fn long_lines_are_cut_and_the_rest_skipped() {
    let d = scratch("long");
    let p = d.0.join("a.log");
    let mut c = cfg(&d.0);
    c.max_line_bytes = 10;
    append(&p, &format!("{}\nshort\n", "x".repeat(100)));
    let mut t = Tailer::new(c, None);
    t.scan();
    let mut out = Vec::new();
    t.poll(&mut |_, m| out.push((m.text.into_owned(), m.truncated)));
    assert_eq!(
        out,
        vec![("x".repeat(10), true), ("short".to_string(), false)]
    );
}

#[test]
fn max_files_is_enforced_and_reported() {
    let d = scratch("max");
    for i in 0..4 {
        append(&d.0.join(format!("{i}.log")), "x\n");
    }
    let mut c = cfg(&d.0);
    c.max_files = 3;
    let mut t = Tailer::new(c, None);
    t.scan();
    let s = t.stats();
    assert_eq!((s.live, s.skipped), (3, 1));
}
