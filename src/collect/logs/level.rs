//! Log levels: from a journald priority, or guessed from the message text.
//!
//! The guess looks for a level word where loggers put one: as the value of
//! a `level`-like key (`level=warn`, `"level":"warn"`), in capitals anywhere
//! near the start (`ERROR`), as the first word, in brackets (`[error]`) or
//! before a colon (`error:`), and klog's `E0102 …` prefix. A level word in
//! the middle of lower-case prose ("sent an alert to …") is not taken.

/// Normalised level, the value of the `level` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Critical,
    Error,
    Warning,
    Info,
    Debug,
    Unknown,
}

/// Only this much of a message is searched for a level.
const SCAN_BYTES: usize = 256;

/// Keys whose value is a level in logfmt and JSON logs.
const LEVEL_KEYS: [&str; 6] = [
    "level",
    "lvl",
    "severity",
    "loglevel",
    "log_level",
    "levelname",
];

impl Level {
    pub const ALL: [Level; 6] = [
        Level::Critical,
        Level::Error,
        Level::Warning,
        Level::Info,
        Level::Debug,
        Level::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Critical => "critical",
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Unknown => "unknown",
        }
    }

    /// Position in [`Level::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The level a word names, in any case (`WARN`, `Error`, `crit`).
    pub fn from_word(word: &str) -> Option<Level> {
        if word.len() > 11 {
            return None;
        }
        let mut buf = [0u8; 11];
        let lower = &mut buf[..word.len()];
        lower.copy_from_slice(word.as_bytes());
        lower.make_ascii_lowercase();
        Some(match &*lower {
            b"emerg" | b"emergency" | b"alert" | b"crit" | b"critical" | b"fatal" | b"panic" => {
                Level::Critical
            }
            b"err" | b"error" => Level::Error,
            b"warn" | b"warning" => Level::Warning,
            b"info" | b"information" | b"notice" => Level::Info,
            b"debug" | b"dbg" | b"trace" => Level::Debug,
            _ => return None,
        })
    }

    /// syslog/journald `PRIORITY` 0–7.
    pub fn from_priority(p: u8) -> Level {
        match p {
            0..=2 => Level::Critical,
            3 => Level::Error,
            4 => Level::Warning,
            5 | 6 => Level::Info,
            _ => Level::Debug,
        }
    }
}

/// The level written in `msg`, or [`Level::Unknown`].
pub fn detect(msg: &str) -> Level {
    let b = msg.as_bytes();
    // klog / glog: `E0102 15:04:05.000000 …`
    if b.len() > 6 && b[1..5].iter().all(u8::is_ascii_digit) && b[5] == b' ' {
        match b[0] {
            b'I' => return Level::Info,
            b'W' => return Level::Warning,
            b'E' => return Level::Error,
            b'F' => return Level::Critical,
            _ => {}
        }
    }
    let scan = &b[..b.len().min(SCAN_BYTES)];
    let mut prev_word: Option<&[u8]> = None;
    let mut i = 0;
    while i < scan.len() {
        if !scan[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < scan.len() && (scan[i].is_ascii_alphanumeric() || scan[i] == b'_') {
            i += 1;
        }
        let word = &scan[start..i];
        // ASCII alphanumerics and '_' only, so always valid UTF-8.
        let level = std::str::from_utf8(word).ok().and_then(Level::from_word);
        if let Some(level) = level {
            let before = &scan[..start];
            let after = scan.get(i).copied();
            let keyed = prev_word.is_some_and(|k| {
                LEVEL_KEYS
                    .iter()
                    .any(|l| k.eq_ignore_ascii_case(l.as_bytes()))
            }) && before
                .iter()
                .rev()
                .take_while(|c| !c.is_ascii_alphanumeric())
                .any(|&c| c == b'=' || c == b':');
            // A part of a longer name (`shared-mime-info:amd64`,
            // `error.log`, `/var/log/warn`) is not a level word.
            let glued = |c: Option<&u8>| matches!(c, Some(b'-' | b'.' | b'/' | b'@' | b'+'));
            let part = glued(before.last()) || glued(scan.get(i));
            let caps = word.iter().all(|c| c.is_ascii_uppercase());
            let first = prev_word.is_none();
            let bracketed = matches!(before.last(), Some(b'[' | b'<' | b'('));
            // `error: …`, not `info:amd64`.
            let colon =
                after == Some(b':') && scan.get(i + 1).is_none_or(|c| c.is_ascii_whitespace());
            if keyed || (!part && (caps || first || bracketed || colon)) {
                return level;
            }
        }
        prev_word = Some(word);
    }
    Level::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_formats() {
        for (line, want) in [
            ("ERROR cannot open /etc/x", Level::Error),
            ("2024-01-02T03:04:05Z WARN disk 91% full", Level::Warning),
            ("level=info msg=\"started\" err=none", Level::Info),
            (r#"{"level":"debug","msg":"tick"}"#, Level::Debug),
            ("[crit] worker died", Level::Critical),
            ("error: no such file", Level::Error),
            ("Error opening file", Level::Error),
            ("E0102 15:04:05.000000   1 main.go:12] boom", Level::Error),
            ("I0102 15:04:05.000000   1 main.go:12] ok", Level::Info),
            ("12:00:01 [Warning] low memory", Level::Warning),
            ("<notice> reloading", Level::Info),
            ("FATAL out of memory", Level::Critical),
            ("severity=warning something", Level::Warning),
        ] {
            assert_eq!(detect(line), want, "{line}");
        }
    }

    #[test]
    fn prose_is_not_a_level() {
        for line in [
            "sent an alert to the operator",
            "user 42 logged in",
            "the information desk opens",
            "",
            "stack trace follows",
            // Package and file names that contain a level word.
            "2025-06-24 14:36:29 install info:amd64 <none> 7.0.3-2",
            "status installed shared-mime-info:amd64 2.2-1",
            "Unpacking error-pages (1.0) ...",
            "rotating /var/log/nginx/error.log",
        ] {
            assert_eq!(detect(line), Level::Unknown, "{line}");
        }
    }

    #[test]
    fn the_first_level_wins() {
        assert_eq!(detect("INFO retrying after ERROR"), Level::Info);
        assert_eq!(
            detect("level=warn msg=\"got error: x\" level2=error"),
            Level::Warning
        );
    }

    #[test]
    fn priorities() {
        assert_eq!(Level::from_priority(0), Level::Critical);
        assert_eq!(Level::from_priority(3), Level::Error);
        assert_eq!(Level::from_priority(4), Level::Warning);
        assert_eq!(Level::from_priority(6), Level::Info);
        assert_eq!(Level::from_priority(7), Level::Debug);
    }

    #[test]
    fn indexes_follow_all() {
        for (i, l) in Level::ALL.iter().enumerate() {
            assert_eq!(l.index(), i);
        }
    }
}
