//! journald: `journalctl --follow --output=json` as a child process (the
//! journal file format is only stable through systemd's own reader).
//!
//! The cursor of the last entry counted is kept with the file offsets, so a
//! restart continues after it (`--after-cursor`). Without a cursor the
//! agent starts at its own start time (or at the beginning with
//! `read_from_start`). Labels: `source="journald/<unit>"` (or
//! `journald/<SYSLOG_IDENTIFIER>`, or `journald`), `container` =
//! `CONTAINER_NAME` (Docker's journald driver). `PRIORITY` gives the level,
//! except the default 6 (what a service's stdout gets), where a level
//! written in the message wins.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;

use super::formats::Message;
use super::level::Level;
use super::patterns::{LevelHint, Patterns};

/// Pause before restarting a journalctl that exited.
const RESTART_PAUSE: Duration = Duration::from_secs(5);
/// journalctl stderr lines logged per run.
const MAX_STDERR_LINES: usize = 20;

/// How to run journalctl.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    pub program: PathBuf,
    /// `--directory`: a journal other than the system's (e.g. the host's,
    /// mounted into a container).
    pub directory: Option<PathBuf>,
    pub read_from_start: bool,
    pub max_line_bytes: usize,
    /// Where to start without a cursor (unless `read_from_start`).
    pub since: SystemTime,
}

/// State shared with the collector.
#[derive(Debug, Default)]
pub struct JournalShared {
    pub cursor: Mutex<Option<String>>,
    pub up: AtomicBool,
    pub errors: AtomicU64,
    child: Mutex<Option<Child>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl JournalShared {
    pub fn with_cursor(cursor: Option<String>) -> Self {
        Self {
            cursor: Mutex::new(cursor),
            ..Self::default()
        }
    }

    /// Stops the follower: kills journalctl so its reader sees the end.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(c) = lock(&self.child).as_mut() {
            let _ = c.kill();
        }
    }
}

/// One journal entry as the collector uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub cursor: String,
    pub message: Option<String>,
    pub priority: Option<u8>,
    pub source: String,
    pub container: String,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "__CURSOR")]
    cursor: String,
    #[serde(rename = "MESSAGE")]
    message: Option<Value>,
    #[serde(rename = "PRIORITY")]
    priority: Option<Value>,
    #[serde(rename = "_SYSTEMD_UNIT")]
    unit: Option<Value>,
    #[serde(rename = "SYSLOG_IDENTIFIER")]
    identifier: Option<Value>,
    #[serde(rename = "CONTAINER_NAME")]
    container: Option<Value>,
}

/// A field's text: JSON output gives a string, an array of bytes for
/// binary values, or an array of values for a repeated field (first taken).
fn text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Array(a) if a.iter().all(Value::is_u64) => {
            let bytes: Vec<u8> = a
                .iter()
                .filter_map(|b| b.as_u64())
                .map(|b| b as u8)
                .collect();
            Some(Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()))
        }
        Value::Array(a) => a.first().and_then(text),
        _ => None,
    }
}

/// Parses one line of `journalctl --output=json`; `None` if it is not an
/// entry.
pub fn parse_entry(line: &[u8]) -> Option<Entry> {
    let raw: Raw = serde_json::from_slice(line).ok()?;
    let field = |v: &Option<Value>| v.as_ref().and_then(text).map(Cow::into_owned);
    let source = match field(&raw.unit).or_else(|| field(&raw.identifier)) {
        Some(s) => format!("journald/{s}"),
        None => "journald".to_string(),
    };
    Some(Entry {
        cursor: raw.cursor,
        message: field(&raw.message),
        priority: field(&raw.priority).and_then(|p| p.trim().parse().ok()),
        source,
        container: field(&raw.container).unwrap_or_default(),
    })
}

/// The level hint of a priority (see the module docs).
pub fn hint(priority: Option<u8>) -> LevelHint {
    match priority {
        Some(6) | None => LevelHint::Default(Level::Info),
        Some(p) => LevelHint::Fixed(Level::from_priority(p)),
    }
}

/// journalctl's arguments.
pub fn args(opts: &JournalOptions, cursor: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = [
        "--follow",
        "--output=json",
        "--all",
        "--no-pager",
        "--quiet",
        "--no-tail",
        "--output-fields=MESSAGE,PRIORITY,_SYSTEMD_UNIT,SYSLOG_IDENTIFIER,CONTAINER_NAME",
    ]
    .map(String::from)
    .into();
    if let Some(d) = &opts.directory {
        a.push(format!("--directory={}", d.display()));
    }
    match cursor {
        Some(c) => a.push(format!("--after-cursor={c}")),
        None if opts.read_from_start => {}
        None => {
            let t = opts.since.duration_since(UNIX_EPOCH).unwrap_or_default();
            a.push(format!("--since=@{}.{:06}", t.as_secs(), t.subsec_micros()));
        }
    }
    a
}

/// Reads one line of at most `max` bytes (the rest of a longer one is
/// skipped). `Ok(false)` at the end of the stream.
fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> std::io::Result<bool> {
    line.clear();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(!line.is_empty());
        }
        let (part, used, found) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&part[..part.len().min(room)]);
        r.consume(used);
        if found {
            return Ok(true);
        }
    }
}

/// Follows the journal until `shared.stop()`; restarts journalctl when it
/// exits.
pub fn follow(opts: JournalOptions, shared: Arc<JournalShared>, patterns: Arc<Mutex<Patterns>>) {
    let mut warned = false;
    // Warn about the first exit of a streak, not about every restart.
    let mut exit_warned = false;
    while !shared.stop.load(Ordering::SeqCst) {
        let cursor = lock(&shared.cursor).clone();
        let mut cmd = Command::new(&opts.program);
        cmd.args(args(&opts, cursor.as_deref()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe. The child gets SIGTERM when
        // this thread ends — also when the agent is killed — so no
        // journalctl outlives the agent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if !warned {
                    tracing::warn!(program = %opts.program.display(), error = %e, "cannot run journalctl; journald logs are not counted");
                    warned = true;
                }
                pause(&shared);
                continue;
            }
        };
        let stdout = child.stdout.take();
        if let Some(err) = child.stderr.take() {
            std::thread::Builder::new()
                .name("netagent-journalctl-stderr".into())
                .spawn(move || {
                    let lines = BufReader::new(err).lines().map_while(Result::ok);
                    for l in lines.take(MAX_STDERR_LINES) {
                        tracing::warn!("journalctl: {l}");
                    }
                })
                .ok();
        }
        *lock(&shared.child) = Some(child);
        // A stop() that came before the child was stored did not kill it.
        if shared.stop.load(Ordering::SeqCst) {
            shared.stop();
        }
        shared.up.store(true, Ordering::Relaxed);
        tracing::info!(cursor = cursor.is_some(), "following the journal");
        if let Some(out) = stdout {
            if read_entries(out, &opts, &shared, &patterns) > 0 {
                exit_warned = false;
            }
        }
        shared.up.store(false, Ordering::Relaxed);
        let status = lock(&shared.child).take().map(|mut c| c.wait());
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        shared.errors.fetch_add(1, Ordering::Relaxed);
        if !exit_warned {
            tracing::warn!(status = ?status, "journalctl exited; restarting every {} s", RESTART_PAUSE.as_secs());
            exit_warned = true;
        } else {
            tracing::debug!(status = ?status, "journalctl exited again");
        }
        pause(&shared);
    }
}

/// Counts entries until journalctl's output ends; returns how many.
fn read_entries(
    out: impl Read,
    opts: &JournalOptions,
    shared: &JournalShared,
    patterns: &Mutex<Patterns>,
) -> u64 {
    let mut reader = BufReader::with_capacity(64 << 10, out);
    let mut line = Vec::new();
    let mut n = 0;
    while let Ok(true) = read_line(
        &mut reader,
        &mut line,
        opts.max_line_bytes.saturating_add(4096),
    ) {
        let Some(e) = parse_entry(&line) else {
            continue; // not an entry (journalctl prints only entries in JSON mode)
        };
        let (text, malformed) = match &e.message {
            Some(m) => (m.as_str(), false),
            None => ("", true),
        };
        let truncated = text.len() > opts.max_line_bytes;
        let mut end = text.len().min(opts.max_line_bytes);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let msg = Message {
            text: Cow::Borrowed(&text[..end]),
            malformed,
            truncated,
        };
        lock(patterns).add(&e.source, &e.container, msg, hint(e.priority));
        *lock(&shared.cursor) = Some(e.cursor);
        n += 1;
    }
    n
}

fn pause(shared: &JournalShared) {
    let until = Instant::now() + RESTART_PAUSE;
    while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real `journalctl -o json` output (systemd 252), one entry per line.
    const OUTPUT: &str = r#"{"SYSLOG_IDENTIFIER":"app","__CURSOR":"s=a36a;i=1;b=0;m=0;t=60a2;x=606f","__MONOTONIC_TIMESTAMP":"0","_BOOT_ID":"00","PRIORITY":"6","_SYSTEMD_UNIT":"app.service","__REALTIME_TIMESTAMP":"1700000000000001","MESSAGE":"user 1 logged in"}
{"__CURSOR":"s=a36a;i=2","PRIORITY":"3","SYSLOG_IDENTIFIER":"kernel","MESSAGE":[98,105,110,255]}
{"__CURSOR":"s=a36a;i=3","MESSAGE":null,"CONTAINER_NAME":"web","PRIORITY":["4","5"]}
"#;

    #[test]
    fn parses_journalctl_json() {
        let e: Vec<Entry> = OUTPUT
            .lines()
            .filter_map(|l| parse_entry(l.as_bytes()))
            .collect();
        assert_eq!(
            e,
            vec![
                Entry {
                    cursor: "s=a36a;i=1;b=0;m=0;t=60a2;x=606f".into(),
                    message: Some("user 1 logged in".into()),
                    priority: Some(6),
                    source: "journald/app.service".into(),
                    container: "".into(),
                },
                Entry {
                    cursor: "s=a36a;i=2".into(),
                    message: Some("bin\u{fffd}".into()),
                    priority: Some(3),
                    source: "journald/kernel".into(),
                    container: "".into(),
                },
                Entry {
                    cursor: "s=a36a;i=3".into(),
                    message: None,
                    priority: Some(4),
                    source: "journald".into(),
                    container: "web".into(),
                },
            ]
        );
        assert_eq!(parse_entry(b"-- No entries --"), None);
    }

    #[test]
    fn priority_hints() {
        assert_eq!(hint(Some(6)), LevelHint::Default(Level::Info));
        assert_eq!(hint(None), LevelHint::Default(Level::Info));
        assert_eq!(hint(Some(3)), LevelHint::Fixed(Level::Error));
    }

    #[test]
    fn arguments() {
        let opts = JournalOptions {
            program: "journalctl".into(),
            directory: Some("/host/journal".into()),
            read_from_start: false,
            max_line_bytes: 100,
            since: UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_042),
        };
        let a = args(&opts, None);
        assert!(a.contains(&"--directory=/host/journal".to_string()));
        assert!(a.contains(&"--since=@1700000000.000042".to_string()));
        let a = args(&opts, Some("s=1"));
        assert!(a.contains(&"--after-cursor=s=1".to_string()));
        assert!(!a.iter().any(|x| x.starts_with("--since")));
        let a = args(
            &JournalOptions {
                read_from_start: true,
                ..opts
            },
            None,
        );
        assert!(!a
            .iter()
            .any(|x| x.starts_with("--since") || x.starts_with("--after")));
    }

    #[test]
    fn bounded_lines() {
        let mut r = BufReader::with_capacity(4, &b"abcdefgh\nxy\nlast"[..]);
        let mut line = Vec::new();
        assert!(read_line(&mut r, &mut line, 5).unwrap());
        assert_eq!(line, b"abcde");
        assert!(read_line(&mut r, &mut line, 5).unwrap());
        assert_eq!(line, b"xy");
        assert!(read_line(&mut r, &mut line, 5).unwrap());
        assert_eq!(line, b"last");
        assert!(!read_line(&mut r, &mut line, 5).unwrap());
    }
}
