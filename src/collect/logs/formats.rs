//! Line formats of log files, and what is done to every message before it
//! is clustered.
//!
//! - plain text (an RFC 3164 syslog header `Nov 22 02:44:09 host ` is
//!   removed: the month would otherwise split every pattern once a month,
//!   and the host name is the same word on every line of a host, or
//!   splits the patterns of a file that gathers several hosts);
//! - Docker's json-file driver: `{"log":"text\n","stream":"stdout","time":"…"}`
//!   — a `log` without the final `\n` is a part of a longer line (Docker
//!   splits at 16 KiB) and is joined with the following records;
//! - CRI (containerd, CRI-O): `<RFC 3339 time> <stdout|stderr> <P|F>[:tags] <text>`
//!   — `P` marks a partial line, joined up to the next `F`.
//!
//! A line that does not parse in its file's format is counted as plain
//! text and reported as malformed. Messages that are JSON objects
//! (structured logging) are clustered on their `msg`/`message` field, and
//! their `level` field sets the level.

use std::borrow::Cow;

use serde::Deserialize;

use super::level::Level;

/// How a file's lines are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    Docker,
    Cri,
}

/// One complete message, as handed to the pattern stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub text: Cow<'a, str>,
    /// The line was not valid in its file's format (counted as plain text).
    pub malformed: bool,
    /// The line was longer than the limit and was cut.
    pub truncated: bool,
}

#[derive(Deserialize)]
struct DockerLine<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
}

/// (text, partial) of one line, or `None` when it is not in `format`.
fn decode(format: Format, line: &[u8]) -> Option<(Cow<'_, str>, bool)> {
    match format {
        Format::Plain => Some((strip_syslog_header(String::from_utf8_lossy(line)), false)),
        Format::Docker => {
            let rec: DockerLine = serde_json::from_slice(line).ok()?;
            let partial = !rec.log.ends_with('\n');
            let text = match rec.log {
                Cow::Borrowed(s) => Cow::Borrowed(s.trim_end_matches(['\n', '\r'])),
                Cow::Owned(s) => Cow::Owned(s.trim_end_matches(['\n', '\r']).to_string()),
            };
            Some((text, partial))
        }
        Format::Cri => {
            let mut parts = line.splitn(4, |&b| b == b' ');
            let time = parts.next()?;
            let stream = parts.next()?;
            let tag = parts.next()?;
            let text = parts.next().unwrap_or_default();
            if !time.first().is_some_and(u8::is_ascii_digit)
                || !(stream == b"stdout" || stream == b"stderr")
            {
                return None;
            }
            let partial = match tag.split(|&b| b == b':').next() {
                Some(b"P") => true,
                Some(b"F") => false,
                _ => return None,
            };
            Some((String::from_utf8_lossy(text), partial))
        }
    }
}

/// Removes `Mmm dd hh:mm:ss host ` from the start of a syslog file line
/// (the host only when the word after the time is not already the tag,
/// `sshd[5]:` or `kernel:`).
fn strip_syslog_header(s: Cow<'_, str>) -> Cow<'_, str> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = s.as_bytes();
    let is_header = b.len() > 16
        && MONTHS.iter().any(|m| b.starts_with(m.as_bytes()))
        && b[3] == b' '
        && (b[4] == b' ' || b[4].is_ascii_digit())
        && b[5].is_ascii_digit()
        && b[6] == b' '
        && b[7..15].iter().enumerate().all(|(i, c)| {
            if i % 3 == 2 {
                *c == b':'
            } else {
                c.is_ascii_digit()
            }
        })
        && b[15] == b' ';
    if !is_header {
        return s;
    }
    let mut cut = 16;
    if let Some(host_end) = b[16..].iter().position(|&c| c == b' ') {
        let host = &b[16..16 + host_end];
        let tag = host.contains(&b'[') || host.ends_with(b":");
        let rest = &b[16 + host_end + 1..];
        if !host.is_empty() && !tag && rest.iter().any(|c| !c.is_ascii_whitespace()) {
            cut += host_end + 1;
        }
    }
    match s {
        Cow::Borrowed(x) => Cow::Borrowed(&x[cut..]),
        Cow::Owned(x) => Cow::Owned(x[cut..].to_string()),
    }
}

/// Per-file decoding state: joins partial records into messages.
#[derive(Debug)]
pub struct Decoder {
    format: Format,
    max_bytes: usize,
    pending: String,
    pending_truncated: bool,
    joining: bool,
}

impl Decoder {
    /// `max_bytes` bounds a joined message (the rest is dropped and the
    /// message reported truncated).
    pub fn new(format: Format, max_bytes: usize) -> Self {
        Self {
            format,
            max_bytes,
            pending: String::new(),
            pending_truncated: false,
            joining: false,
        }
    }

    /// True while partial records wait for their final part.
    pub fn joining(&self) -> bool {
        self.joining
    }

    /// Forgets a half-joined message (the file was truncated under it).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.pending_truncated = false;
        self.joining = false;
    }

    /// Decodes one line (without its newline; `truncated` if it was cut)
    /// and passes each complete message to `emit`.
    pub fn line(&mut self, line: &[u8], truncated: bool, emit: &mut dyn FnMut(Message<'_>)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some((text, partial)) = decode(self.format, line) else {
            // Whatever was being joined ends here, as it is.
            self.flush(emit);
            emit(Message {
                text: String::from_utf8_lossy(line),
                malformed: true,
                truncated,
            });
            return;
        };
        if !partial && !self.joining {
            emit(Message {
                text,
                malformed: false,
                truncated,
            });
            return;
        }
        self.joining = true;
        self.pending_truncated |= truncated;
        let room = self.max_bytes.saturating_sub(self.pending.len());
        if text.len() > room {
            let mut cut = room;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.pending.push_str(&text[..cut]);
            self.pending_truncated = true;
        } else {
            self.pending.push_str(&text);
        }
        if !partial {
            self.flush(emit);
        }
    }

    /// Emits a half-joined message as it is (end of a file that will not
    /// grow any more).
    pub fn flush(&mut self, emit: &mut dyn FnMut(Message<'_>)) {
        if !self.joining {
            return;
        }
        let text = std::mem::take(&mut self.pending);
        emit(Message {
            text: Cow::Owned(text),
            malformed: false,
            truncated: self.pending_truncated,
        });
        self.reset();
    }
}

/// Text to cluster and level of a message: the `msg`/`message` field and
/// `level`-like field of a JSON object, the message itself otherwise.
pub fn structured(text: &str) -> (Cow<'_, str>, Option<Level>) {
    let t = text.trim();
    if !(t.starts_with('{') && t.ends_with('}')) {
        return (Cow::Borrowed(text), None);
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(t) else {
        return (Cow::Borrowed(text), None);
    };
    let field = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| map.get(*k).and_then(|v| v.as_str()))
            .map(str::to_string)
    };
    let level = field(&["level", "lvl", "severity", "levelname", "log.level"])
        .and_then(|l| Level::from_word(l.trim()));
    match field(&["msg", "message", "MESSAGE"]) {
        Some(m) => (Cow::Owned(m), level),
        None => (Cow::Borrowed(text), level),
    }
}

/// Removes ANSI escape sequences (colours) and turns other control
/// characters into spaces, so that they neither split words nor reach a
/// label value.
pub fn normalize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte in @..~
            if chars.peek() == Some(&'[') {
                chars.next();
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(format: Format, lines: &[&str]) -> Vec<(String, bool, bool)> {
        let mut d = Decoder::new(format, 1 << 16);
        let mut out = Vec::new();
        for l in lines {
            d.line(l.as_bytes(), false, &mut |m| {
                out.push((m.text.into_owned(), m.malformed, m.truncated))
            });
        }
        out
    }

    #[test]
    fn plain_lines_lose_the_syslog_header() {
        assert_eq!(
            run(
                Format::Plain,
                &[
                    "Nov 22 02:44:09 host sshd[5]: ok\r",
                    "Nov  2 02:44:09 h x",
                    "Nov  2 02:44:09 sshd[5]: no host",
                    "Nov  2 02:44:09 kernel: no host",
                    "Nov  2 02:44:09 lonely",
                    "plain"
                ]
            ),
            vec![
                ("sshd[5]: ok".into(), false, false),
                ("x".into(), false, false),
                ("sshd[5]: no host".into(), false, false),
                ("kernel: no host".into(), false, false),
                ("lonely".into(), false, false),
                ("plain".into(), false, false),
            ]
        );
    }

    #[test]
    fn docker_json_with_a_split_line() {
        let out = run(
            Format::Docker,
            &[
                r#"{"log":"hello \"x\"\n","stream":"stdout","time":"2024-01-01T00:00:00Z"}"#,
                r#"{"log":"part one, ","stream":"stderr","time":"2024-01-01T00:00:00Z"}"#,
                r#"{"log":"part two\n","stream":"stderr","time":"2024-01-01T00:00:01Z"}"#,
                r#"not json"#,
            ],
        );
        assert_eq!(
            out,
            vec![
                ("hello \"x\"".into(), false, false),
                ("part one, part two".into(), false, false),
                ("not json".into(), true, false),
            ]
        );
    }

    #[test]
    fn cri_with_partial_lines() {
        let out = run(
            Format::Cri,
            &[
                "2024-01-01T00:00:00.000000001Z stdout F hello world",
                "2024-01-01T00:00:00.1Z stderr P first ",
                "2024-01-01T00:00:00.2Z stderr P second ",
                "2024-01-01T00:00:00.3Z stderr F third",
                "2024-01-01T00:00:00.4Z stdout F",
                "garbage line",
            ],
        );
        assert_eq!(
            out,
            vec![
                ("hello world".into(), false, false),
                ("first second third".into(), false, false),
                ("".into(), false, false),
                ("garbage line".into(), true, false),
            ]
        );
    }

    #[test]
    fn joined_messages_are_bounded() {
        let mut d = Decoder::new(Format::Cri, 10);
        let mut out = Vec::new();
        for l in [
            "1Z stdout P 123456",
            "1Z stdout P 789abc",
            "1Z stdout F def",
        ] {
            d.line(l.as_bytes(), false, &mut |m| {
                out.push((m.text.into_owned(), m.truncated))
            });
            if out.is_empty() {
                assert!(d.joining());
            }
        }
        assert_eq!(out, vec![("123456789a".to_string(), true)]);
        assert!(!d.joining());
    }

    #[test]
    fn a_final_part_that_never_comes_is_flushed() {
        let mut d = Decoder::new(Format::Cri, 100);
        let mut out = Vec::new();
        d.line(b"1Z stdout P abc", false, &mut |m| {
            out.push(m.text.into_owned())
        });
        assert!(out.is_empty());
        d.flush(&mut |m| out.push(m.text.into_owned()));
        assert_eq!(out, vec!["abc".to_string()]);
    }

    #[test]
    fn structured_messages() {
        let (t, l) = structured(r#"{"level":"warn","msg":"disk 91% full","ts":1}"#);
        assert_eq!((t.as_ref(), l), ("disk 91% full", Some(Level::Warning)));
        let (t, l) = structured(r#"{"a":1}"#);
        assert_eq!((t.as_ref(), l), (r#"{"a":1}"#, None));
        let (t, l) = structured("{not json}");
        assert_eq!((t.as_ref(), l), ("{not json}", None));
    }

    #[test]
    fn control_characters() {
        assert_eq!(normalize("\x1b[31mERROR\x1b[0m boom"), "ERROR boom");
        assert_eq!(normalize("a\tb\0c"), "a b c");
        assert!(matches!(normalize("clean"), Cow::Borrowed(_)));
    }
}
