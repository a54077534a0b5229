//! Masks the variable parts of a log message so that lines of one template
//! look alike before clustering.
//!
//! A *word* is a run of characters between whitespace and the delimiters
//! `, ; : ( ) [ ] { } < > = | " '`. These words become `<*>`:
//! - words with a digit (numbers, ids, IPs, hex, UUIDs, timestamps,
//!   durations, versions, paths with numbers) and long hex strings; such
//!   words joined by colons (`12:00:01`, `10.0.0.1:5432`) become one `<*>`;
//! - paths (`/usr/bin/less`, `./x`, `~/x`) and e-mail addresses;
//! - the value of a `key=value` pair (`user=alice` → `user=<*>`), except
//!   that of `msg=`/`message=`, which in logfmt *is* the message;
//! - month and weekday names next to a masked word (`Sat May  9 07:28:50`
//!   is a timestamp wherever it stands).
//!
//! Quoted strings become `<*>` as a whole, except JSON keys (a quoted
//! string followed by `:`) and the quoted value of `msg=`/`message=`,
//! whose content is masked word by word. Whitespace runs collapse to one
//! space, and only the first [`MAX_TOKENS`] tokens are kept.

/// What a variable part becomes.
pub const WILDCARD: &str = "<*>";

/// Tokens (space-separated parts of the masked text) kept per message:
/// bounds the clustering cost of very long lines.
pub const MAX_TOKENS: usize = 64;

/// Keys whose quoted value is the human-readable message (logfmt).
const MESSAGE_KEYS: [&str; 2] = ["msg", "message"];

/// Hex words without digits are only masked from this length on (shorter
/// ones are ordinary words: "added", "decade", "facade").
const MIN_HEX_WORD: usize = 16;

fn is_delim(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(
            b,
            b',' | b';'
                | b':'
                | b'('
                | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b'<'
                | b'>'
                | b'='
                | b'|'
                | b'"'
                | b'\''
        )
}

/// The masked text of `msg`.
pub fn mask(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut st = State {
        tokens: 1,
        dates: false,
    };
    mask_into(msg, &mut out, &mut st);
    while out.ends_with(' ') {
        out.pop();
    }
    if st.dates {
        mask_dates(&mut out);
    }
    out
}

/// What the masking of one message carries across recursion into
/// message values.
struct State {
    /// Tokens started so far.
    tokens: usize,
    /// A month or weekday name was seen (see [`mask_dates`]).
    dates: bool,
}

fn variable(word: &str) -> bool {
    let b = word.as_bytes();
    if b.is_empty() {
        return false;
    }
    b.iter().any(u8::is_ascii_digit)
        || (b.len() >= MIN_HEX_WORD && b.iter().all(u8::is_ascii_hexdigit))
        // Paths and URLs after `scheme:`: /usr/bin/less, //host/x, ./run,
        // ../x, ~/x (a lone `/` is not one).
        || (b[0] == b'/' && b[1..].iter().any(u8::is_ascii_alphanumeric))
        || word.starts_with("./")
        || word.starts_with("../")
        || word.starts_with("~/")
        // E-mail addresses.
        || word
            .find('@')
            .is_some_and(|at| at > 0 && word[at + 1..].contains('.'))
}

/// Month and weekday names, as loggers write them in timestamps.
const DATE_WORDS: [&str; 31] = [
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
    "Mon",
    "Tue",
    "Wed",
    "Thu",
    "Fri",
    "Sat",
    "Sun",
    "January",
    "February",
    "March",
    "April",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
    "Sept",
];

fn date_word(t: &str) -> bool {
    if !t.as_bytes().first().is_some_and(u8::is_ascii_uppercase) {
        return false;
    }
    let t = t.trim_end_matches([',', '.']);
    (3..=9).contains(&t.len()) && DATE_WORDS.contains(&t)
}

/// A token that is a masked word with at most punctuation around it.
fn masked_token(t: &str) -> bool {
    t.contains(WILDCARD) && !t.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Month and weekday names in a run of tokens that holds a masked word
/// (`Sat May <*> <*>`) become `<*>`: the date is a variable wherever it
/// stands, not a word that splits patterns once a day.
fn mask_dates(out: &mut String) {
    let tokens: Vec<&str> = out.split(' ').collect();
    let mut keep = vec![true; tokens.len()];
    let mut i = 0;
    while i < tokens.len() {
        let mut j = i;
        let mut has_date = false;
        let mut has_var = false;
        while j < tokens.len() && (date_word(tokens[j]) || masked_token(tokens[j])) {
            has_date |= date_word(tokens[j]);
            has_var |= masked_token(tokens[j]);
            j += 1;
        }
        if has_date && has_var {
            for k in i..j {
                keep[k] = !date_word(tokens[k]);
            }
        }
        i = j.max(i + 1);
    }
    if keep.iter().all(|k| *k) {
        return;
    }
    let mut masked = String::with_capacity(out.len());
    for (i, (t, k)) in tokens.iter().zip(&keep).enumerate() {
        if i > 0 {
            masked.push(' ');
        }
        if *k {
            masked.push_str(t);
        } else {
            let punct = &t[t.trim_end_matches([',', '.']).len()..];
            masked.push_str(WILDCARD);
            masked.push_str(punct);
        }
    }
    *out = masked;
}

/// Index of the quote closing the one at `open`, if the string is closed.
fn closing(b: &[u8], open: usize) -> Option<usize> {
    let q = b[open];
    let mut j = open + 1;
    while j < b.len() {
        if q == b'"' && b[j] == b'\\' {
            j += 2;
            continue;
        }
        // A single quote only closes before a delimiter: "it's" is a word.
        if b[j] == q && (q == b'"' || b.get(j + 1).is_none_or(|&n| is_delim(n) || n == b'.')) {
            return Some(j);
        }
        j += 1;
    }
    None
}

/// Appends the masked `s` to `out`.
fn mask_into(s: &str, out: &mut String, st: &mut State) {
    let b = s.as_bytes();
    let mut i = 0;
    // The word before the last delimiter, when that delimiter followed it
    // directly (`key` in `key=value`, `msg` in `msg="…"`).
    let mut last_word = "";
    let mut space = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            space = true;
            last_word = "";
            i += 1;
            continue;
        }
        if space {
            space = false;
            if !out.is_empty() && !out.ends_with(' ') {
                if st.tokens >= MAX_TOKENS {
                    return;
                }
                st.tokens += 1;
                out.push(' ');
            }
        }
        // `key=value`: the byte before is `=` and a word stood right before it.
        let value = i > 0 && b[i - 1] == b'=' && !last_word.is_empty();
        if c == b'"' || c == b'\'' {
            let prev = i.checked_sub(1).map(|p| b[p]);
            // Only at the start of a token or after `=`, `:`, `(`…: an
            // apostrophe inside a word does not open a string.
            let opens = prev.is_none_or(is_delim);
            if let Some(end) = closing(b, i).filter(|_| opens) {
                if b.get(end + 1) == Some(&b':') {
                    out.push_str(&s[i..=end]); // a JSON key
                } else if value && MESSAGE_KEYS.contains(&last_word) {
                    out.push(c as char);
                    mask_into(&s[i + 1..end], out, st);
                    while out.ends_with(' ') {
                        out.pop();
                    }
                    out.push(c as char);
                } else {
                    out.push_str(WILDCARD);
                }
                last_word = "";
                i = end + 1;
                continue;
            }
            out.push(c as char);
            i += 1;
            continue;
        }
        if is_delim(c) {
            out.push(c as char);
            if c != b'=' || i == 0 || is_delim(b[i - 1]) {
                last_word = "";
            }
            i += 1;
            continue;
        }
        // Delimiters are ASCII, so word boundaries are char boundaries.
        let start = i;
        while i < b.len() && !is_delim(b[i]) {
            i += 1;
        }
        let word = &s[start..i];
        if variable(word) || (value && !MESSAGE_KEYS.contains(&last_word)) {
            out.push_str(WILDCARD);
            // `12:00:01`, `10.0.0.1:5432`, `fe80::1`: one variable, not three.
            while b.get(i) == Some(&b':') {
                let mut j = i;
                while b.get(j) == Some(&b':') {
                    j += 1;
                }
                let end = j + b[j..].iter().take_while(|&&c| !is_delim(c)).count();
                if end == j || !variable(&s[j..end]) {
                    break;
                }
                i = end;
            }
        } else {
            st.dates |= date_word(word);
            out.push_str(word);
        }
        last_word = word;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_masked() {
        for (line, want) in [
            (
                "user 42 logged in from 10.0.0.1:5432",
                "user <*> logged in from <*>",
            ),
            ("GET /api/v1/users/123 200 5ms", "GET <*> <*> <*>"),
            ("peer [::1]:8080 closed", "peer [::<*>]:<*> closed"),
            (
                "id=550e8400-e29b-41d4-a716-446655440000 done",
                "id=<*> done",
            ),
            ("commit deadbeefdeadbeefdeadbeef", "commit <*>"),
            ("tx 0x1f ok", "tx <*> ok"),
            (
                "2024-01-02T03:04:05.123Z host sshd[1234]: Accepted key for root",
                "<*> host sshd[<*>]: Accepted key for root",
            ),
            ("took 3.5s, retry=2", "took <*>, retry=<*>"),
            ("at 12:00:01 via fe80::1 port:80", "at <*> via <*> port:<*>"),
            ("listening on :8080", "listening on :<*>"),
        ] {
            assert_eq!(mask(line), want, "{line}");
        }
    }

    #[test]
    fn quoted_strings_are_masked() {
        assert_eq!(
            mask(r#"open "/etc/my file.conf" failed: 'no such file'"#),
            "open <*> failed: <*>"
        );
        assert_eq!(mask(r#"name="a \"quoted\" value" ok"#), "name=<*> ok");
        // Apostrophes in words and unclosed quotes are text.
        assert_eq!(mask("it's the user's fault"), "it's the user's fault");
        assert_eq!(mask(r#"say "hi"#), r#"say "hi"#);
        // JSON keys stay, values go.
        assert_eq!(mask(r#"{"user":"bob","n":3}"#), r#"{"user":<*>,"n":<*>}"#);
    }

    #[test]
    fn logfmt_message_is_masked_inside() {
        assert_eq!(
            mask(r#"level=info msg="user 42 logged in" took=3ms"#),
            r#"level=<*> msg="user <*> logged in" took=<*>"#
        );
        assert_eq!(
            mask(r#"message='cache  warm' n=1"#),
            "message='cache warm' n=<*>"
        );
    }

    #[test]
    fn values_paths_addresses_and_dates_are_masked() {
        for (line, want) in [
            // The value of every key but msg/message.
            (
                "method=GET user=alice msg=started a==b",
                "method=<*> user=<*> msg=started a==b",
            ),
            ("see --auth=peer x= y", "see --auth=<*> x= y"),
            // Paths, URLs, e-mail addresses; a lone slash and words with
            // slashes inside are text.
            (
                "link group pager updated to point to /usr/bin/less",
                "link group pager updated to point to <*>",
            ),
            (
                "fetch http://example.com/a ./run ~/x ../y / and/or",
                "fetch http:<*> <*> <*> <*> / and/or",
            ),
            ("mail to bob@example.com sent", "mail to <*> sent"),
            // Month and weekday names next to masked words, anywhere.
            (
                "Local time is now: Sat May  9 07:28:50 UTC 2026.",
                "Local time is now: <*> <*> <*> <*> UTC <*>",
            ),
            ("due Dec 6, 2026 ok", "due <*> <*>, <*> ok"),
            // Not next to a variable: a word.
            ("May I come in", "May I come in"),
        ] {
            assert_eq!(mask(line), want, "{line}");
        }
    }

    #[test]
    fn whitespace_collapses_and_tokens_are_bounded() {
        assert_eq!(mask("  a \t b\n c  "), "a b c");
        let long = (0..200)
            .map(|i| format!("w{i}x"))
            .collect::<Vec<_>>()
            .join(" ");
        let m = mask(&long);
        assert_eq!(m.split(' ').count(), MAX_TOKENS);
        assert!(m.split(' ').all(|t| t == WILDCARD));
        assert_eq!(mask(""), "");
    }

    #[test]
    fn non_ascii_is_kept_intact() {
        assert_eq!(mask("Grüße an 5 Nutzer"), "Grüße an <*> Nutzer");
        assert_eq!(mask("日志 123 条"), "日志 <*> 条");
    }
}
