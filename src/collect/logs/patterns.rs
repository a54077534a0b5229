//! Counting messages per pattern, with bounded memory and series.
//!
//! Messages are grouped by stream — `source` and `container` — and level;
//! each group has its own [`Drain`]. A group may hold at most
//! `max_patterns_per_source` patterns, and all groups together at most
//! `max_patterns`. A message that would need a pattern beyond either cap is
//! still counted, under `pattern_hash="~other"`, and in
//! `netagent_log_patterns_dropped_total`. Patterns that merge give their
//! place back.
//!
//! The templates seen since the start are saved with the read positions
//! ([`Patterns::saved`]) and restored at the next start
//! ([`Patterns::restore`]), so a template keeps its `pattern_hash` across
//! restarts from its first line on.

use std::collections::{BTreeMap, HashMap};

use super::drain::Drain;
use super::formats::{normalize, structured, Message};
use super::level::{detect, Level};
use super::state::SavedPattern;
use crate::metrics::catalog;
use crate::metrics::OTHER;
use crate::metrics::{scalar_family, Family, Labels};

/// Streams (source, container) remembered; lines of further ones are
/// counted under source and container `~other`.
pub const MAX_STREAMS: usize = 10_000;

/// Caps and knobs of the pattern stage.
#[derive(Debug, Clone)]
pub struct PatternLimits {
    pub per_source: usize,
    pub total: usize,
    pub sample_max_bytes: usize,
    pub similarity: f64,
}

/// Where a message's level comes from, besides its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelHint {
    /// Only the text.
    None,
    /// This level, whatever the text says (e.g. journald PRIORITY=3).
    Fixed(Level),
    /// The text's level if it names one, else this (journald's default
    /// PRIORITY=6 for a service's stdout says nothing about the line).
    Default(Level),
}

/// Where a message was counted (for measuring the grouping: see
/// [`Patterns::resolver`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub level: Level,
    /// The pattern's uid in its group; `None` for `~other`.
    pub uid: Option<u64>,
}

#[derive(Debug)]
struct Group {
    drain: Drain,
    /// Messages that found no pattern and could not create one.
    overflow: u64,
}

#[derive(Debug, Default)]
struct Stream {
    levels: [Option<Box<Group>>; Level::ALL.len()],
    malformed: u64,
    truncated: u64,
}

/// All counts of the log collector's messages.
#[derive(Debug)]
pub struct Patterns {
    limits: PatternLimits,
    /// source -> container -> stream
    streams: HashMap<String, HashMap<String, Stream>>,
    stream_count: usize,
    pattern_count: usize,
    track_merges: bool,
}

impl Patterns {
    pub fn new(limits: PatternLimits) -> Self {
        Self {
            limits,
            streams: HashMap::new(),
            stream_count: 0,
            pattern_count: 0,
            track_merges: false,
        }
    }

    /// Remembers where merged patterns went, for [`Patterns::resolver`]
    /// (measurements only: this grows with every merge).
    pub fn track_merges(&mut self) {
        self.track_merges = true;
    }

    /// Patterns held over all groups.
    pub fn pattern_count(&self) -> usize {
        self.pattern_count
    }

    /// Estimated heap bytes of all patterns and their trees.
    pub fn heap_bytes(&self) -> usize {
        self.groups().map(|(_, _, _, g)| g.drain.heap_bytes()).sum()
    }

    fn groups(&self) -> impl Iterator<Item = (&str, &str, Level, &Group)> {
        self.streams.iter().flat_map(|(source, containers)| {
            containers.iter().flat_map(move |(container, stream)| {
                Level::ALL
                    .iter()
                    .zip(&stream.levels)
                    .filter_map(move |(level, g)| {
                        g.as_deref()
                            .map(|g| (source.as_str(), container.as_str(), *level, g))
                    })
            })
        })
    }

    fn stream(&mut self, source: &str, container: &str) -> &mut Stream {
        let exists = self
            .streams
            .get(source)
            .is_some_and(|c| c.contains_key(container));
        let (source, container) = if exists || self.stream_count < MAX_STREAMS {
            (source, container)
        } else {
            (OTHER, OTHER)
        };
        if !self
            .streams
            .get(source)
            .is_some_and(|c| c.contains_key(container))
        {
            self.stream_count += 1;
        }
        self.streams
            .entry(source.to_string())
            .or_default()
            .entry(container.to_string())
            .or_default()
    }

    fn group(&mut self, source: &str, container: &str, level: Level) -> &mut Group {
        let (similarity, track) = (self.limits.similarity, self.track_merges);
        let stream = self.stream(source, container);
        stream.levels[level.index()].get_or_insert_with(|| {
            let mut drain = Drain::new(similarity);
            if track {
                drain.track_merges();
            }
            Box::new(Group { drain, overflow: 0 })
        })
    }

    /// Counts one message of `source`/`container`, and says where. Blank
    /// messages are not log messages and are not counted (`None`).
    pub fn add(
        &mut self,
        source: &str,
        container: &str,
        msg: Message<'_>,
        hint: LevelHint,
    ) -> Option<Placement> {
        let clean = normalize(&msg.text);
        let (text, field_level) = structured(&clean);
        if text.trim().is_empty() {
            if msg.malformed {
                // e.g. a journal entry without MESSAGE: not lost silently.
                self.stream(source, container).malformed += 1;
            }
            return None;
        }
        let level = match hint {
            LevelHint::Fixed(l) => l,
            _ => field_level.unwrap_or_else(|| match (detect(&text), hint) {
                (Level::Unknown, LevelHint::Default(l)) => l,
                (l, _) => l,
            }),
        };
        let (per_source, sample_max) = (self.limits.per_source, self.limits.sample_max_bytes);
        let total_full = self.pattern_count >= self.limits.total;
        let stream = self.stream(source, container);
        stream.malformed += u64::from(msg.malformed);
        stream.truncated += u64::from(msg.truncated);
        let group = self.group(source, container, level);
        let masked = super::mask::mask(&text);
        let tokens: Vec<&str> = masked.split(' ').collect();
        let before = group.drain.len();
        let may_create = !total_full && before < per_source;
        let Some(added) = group.drain.add(&tokens, may_create) else {
            group.overflow += 1;
            return Some(Placement { level, uid: None });
        };
        let after = group.drain.len();
        let c = group.drain.cluster_mut(added.slot);
        c.count += 1;
        let uid = c.uid();
        if c.sample.is_empty() {
            c.sample = shorten(&text, sample_max);
        }
        if added.created {
            tracing::debug!(source, container, level = level.as_str(), hash = c.hash(), template = %c.template(), "new log pattern");
        }
        // New patterns, less those that merged into others.
        self.pattern_count = self.pattern_count + after - before;
        Some(Placement {
            level,
            uid: Some(uid),
        })
    }

    /// For each placement that [`Patterns::add`] returned for this stream,
    /// the pattern its message is counted under now: `level/pattern_hash`
    /// (patterns merge and generalise after the message was added). Needs
    /// [`Patterns::track_merges`] from the start.
    pub fn resolver(&self, source: &str, container: &str) -> impl Fn(Placement) -> String {
        let mut now: HashMap<(Level, u64), String> = HashMap::new();
        let mut drains: Vec<(Level, &Drain)> = Vec::new();
        for (s, c, level, g) in self.groups() {
            if s == source && c == container {
                drains.push((level, &g.drain));
                for cl in g.drain.clusters() {
                    now.insert((level, cl.uid()), cl.hash().to_string());
                }
            }
        }
        let forward: HashMap<(Level, u64), u64> = drains
            .iter()
            .flat_map(|(level, d)| {
                // Every uid ever handed out that merged away.
                (0..d.next_uid()).filter_map(move |uid| {
                    let to = d.resolve(uid);
                    (to != uid).then_some(((*level, uid), to))
                })
            })
            .collect();
        move |p: Placement| -> String {
            let Some(uid) = p.uid else {
                return format!("{}/{OTHER}", p.level.as_str());
            };
            let uid = forward.get(&(p.level, uid)).copied().unwrap_or(uid);
            let hash = now
                .get(&(p.level, uid))
                .map_or("?", String::as_str)
                .to_string();
            format!("{}/{hash}", p.level.as_str())
        }
    }

    /// The templates of the patterns that counted messages since the start,
    /// to save.
    pub fn saved(&self) -> Vec<SavedPattern> {
        let mut out: Vec<SavedPattern> = self
            .groups()
            .flat_map(|(source, container, level, g)| {
                g.drain
                    .clusters()
                    .filter(|c| c.count > 0)
                    .map(move |c| SavedPattern {
                        source: source.to_string(),
                        container: container.to_string(),
                        level: level.as_str().to_string(),
                        route: c.route().to_string(),
                        template: c.template(),
                        tail: c.is_tail(),
                        sample: c.sample.clone(),
                    })
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.source, &a.container, &a.level, &a.template).cmp(&(
                &b.source,
                &b.container,
                &b.level,
                &b.template,
            ))
        });
        out
    }

    /// Puts back saved templates (no messages counted yet), within the caps.
    pub fn restore(&mut self, saved: &[SavedPattern]) {
        for p in saved {
            let Some(level) = Level::ALL.into_iter().find(|l| l.as_str() == p.level) else {
                continue;
            };
            if self.pattern_count >= self.limits.total {
                return;
            }
            let per_source = self.limits.per_source;
            let group = self.group(&p.source, &p.container, level);
            if group.drain.len() >= per_source {
                continue;
            }
            let sample = shorten(&p.sample, self.limits.sample_max_bytes);
            let group = self.group(&p.source, &p.container, level);
            if group
                .drain
                .restore(&p.route, &p.template, p.tail, sample)
                .is_some()
            {
                self.pattern_count += 1;
            }
        }
    }

    /// The exported families (see the module docs of `collect::logs`).
    pub fn families(&self) -> Vec<Family> {
        let mut messages: BTreeMap<[&str; 4], (&str, u64)> = BTreeMap::new();
        let mut info: BTreeMap<[&str; 4], String> = BTreeMap::new();
        let mut dropped = BTreeMap::new();
        let mut malformed = BTreeMap::new();
        let mut truncated = BTreeMap::new();
        for (source, containers) in &self.streams {
            for (container, stream) in containers {
                let sc = || -> Labels {
                    vec![("source", source.clone()), ("container", container.clone())]
                };
                malformed.insert(sc(), stream.malformed as f64);
                truncated.insert(sc(), stream.truncated as f64);
                for (level, group) in Level::ALL.iter().zip(&stream.levels) {
                    let Some(group) = group else { continue };
                    for c in group.drain.clusters().filter(|c| c.count > 0) {
                        let key = [source.as_str(), container, level.as_str(), c.hash()];
                        // Two patterns may have the same template (one
                        // filed under the shared `<*>` route): one series,
                        // the counts added.
                        messages.entry(key).or_insert((&c.sample, 0)).1 += c.count;
                        info.entry(key).or_insert_with(|| {
                            shorten(&c.template(), self.limits.sample_max_bytes)
                        });
                    }
                    if group.overflow > 0 {
                        let e = messages
                            .entry([source, container, level.as_str(), OTHER])
                            .or_insert(("", 0));
                        e.1 += group.overflow;
                    }
                    let mut l = sc();
                    l.push(("level", level.as_str().to_string()));
                    dropped.insert(l, group.overflow as f64);
                }
            }
        }
        let labels = |[source, container, level, hash]: [&str; 4], last: (&'static str, String)| {
            vec![
                ("source", source.to_string()),
                ("container", container.to_string()),
                ("level", level.to_string()),
                ("pattern_hash", hash.to_string()),
                last,
            ]
        };
        let messages = messages
            .into_iter()
            .map(|(k, (sample, n))| (labels(k, ("sample", sample.to_string())), n as f64))
            .collect();
        let info = info
            .into_iter()
            .map(|(k, template)| (labels(k, ("template", template)), 1.0))
            .collect();
        vec![
            scalar_family(&catalog::LOG_MESSAGES, messages),
            scalar_family(&catalog::LOG_PATTERN_INFO, info),
            scalar_family(&catalog::LOG_PATTERNS_DROPPED, dropped),
            scalar_family(&catalog::LOG_LINES_MALFORMED, malformed),
            scalar_family(&catalog::LOG_LINES_TRUNCATED, truncated),
        ]
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn shorten(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn msg(text: &str) -> Message<'_> {
        Message {
            text: Cow::Borrowed(text),
            malformed: false,
            truncated: false,
        }
    }

    fn limits(per_source: usize, total: usize) -> PatternLimits {
        PatternLimits {
            per_source,
            total,
            sample_max_bytes: 20,
            similarity: 0.4,
        }
    }

    fn series(p: &Patterns, family: &str) -> Vec<(Vec<String>, f64)> {
        let f = p.families().into_iter().find(|f| f.name == family).unwrap();
        f.series
            .into_iter()
            .map(|s| {
                let v = match s.value {
                    crate::metrics::Value::Counter(v) => v,
                    _ => unreachable!(),
                };
                (s.labels.into_iter().map(|(_, v)| v).collect(), v)
            })
            .collect()
    }

    #[test]
    fn counts_per_pattern_and_level_with_a_sample() {
        let mut p = Patterns::new(limits(10, 100));
        for i in 0..5 {
            p.add(
                "f",
                "",
                msg(&format!("ERROR disk {i} failed")),
                LevelHint::None,
            );
            p.add(
                "f",
                "",
                msg(&format!("INFO user {i} logged in from somewhere far away")),
                LevelHint::None,
            );
        }
        p.add("f", "", msg("   "), LevelHint::None);
        let s = series(&p, "netagent_log_messages");
        let h1 = crate::collect::logs::drain::pattern_hash("ERROR disk <*> failed");
        let h2 = crate::collect::logs::drain::pattern_hash(
            "INFO user <*> logged in from somewhere far away",
        );
        assert_eq!(s.len(), 2);
        assert!(s.contains(&(
            vec![
                "f".into(),
                "".into(),
                "error".into(),
                h1,
                "ERROR disk 0 failed".into()
            ],
            5.0
        )));
        // The sample is cut at sample_max_bytes.
        assert!(s.contains(&(
            vec![
                "f".into(),
                "".into(),
                "info".into(),
                h2,
                "INFO user 0 logged i".into()
            ],
            5.0
        )));
    }

    #[test]
    fn caps_fold_into_other_and_are_counted() {
        let mut p = Patterns::new(limits(2, 3));
        for w in ["alpha", "beta", "gamma", "delta"] {
            p.add("a", "", msg(&format!("{w} {w} {w}")), LevelHint::None);
        }
        p.add("a", "", msg("alpha alpha alpha"), LevelHint::None);
        // Two patterns in a, one in b: the total is full, c overflows.
        p.add("b", "", msg("one two three"), LevelHint::None);
        p.add("c", "", msg("four five six"), LevelHint::None);
        let s = series(&p, "netagent_log_messages");
        let other = |src: &str| {
            s.iter()
                .find(|(l, _)| l[0] == src && l[3] == OTHER)
                .map(|(_, v)| *v)
        };
        assert_eq!(other("a"), Some(2.0));
        assert_eq!(other("b"), None);
        assert_eq!(other("c"), Some(1.0));
        let total: f64 = s.iter().map(|(_, v)| v).sum();
        assert_eq!(total, 7.0, "every message counted once");
        let d = series(&p, "netagent_log_patterns_dropped");
        assert!(d.contains(&(vec!["a".into(), "".into(), "unknown".into()], 2.0)));
        assert!(d.contains(&(vec!["c".into(), "".into(), "unknown".into()], 1.0)));
    }

    #[test]
    fn level_hints() {
        let mut p = Patterns::new(limits(10, 100));
        p.add("j", "", msg("ERROR x"), LevelHint::Fixed(Level::Warning));
        p.add("j", "", msg("ERROR y"), LevelHint::Default(Level::Info));
        p.add("j", "", msg("plain z"), LevelHint::Default(Level::Info));
        p.add(
            "j",
            "",
            msg(r#"{"level":"debug","msg":"tick 5"}"#),
            LevelHint::None,
        );
        let levels: Vec<(String, f64)> = series(&p, "netagent_log_messages")
            .into_iter()
            .map(|(l, v)| (l[2].clone(), v))
            .collect();
        assert_eq!(
            levels,
            vec![
                ("debug".into(), 1.0),
                ("error".into(), 1.0),
                ("info".into(), 1.0),
                ("warning".into(), 1.0)
            ]
        );
    }

    #[test]
    fn malformed_and_truncated_are_counted_per_stream() {
        let mut p = Patterns::new(limits(10, 100));
        let mut m = msg("x");
        m.malformed = true;
        m.truncated = true;
        p.add("docker", "id", m, LevelHint::None);
        let mut empty = msg("");
        empty.malformed = true;
        p.add("docker", "id", empty, LevelHint::None);
        assert_eq!(
            series(&p, "netagent_log_lines_malformed"),
            vec![(vec!["docker".to_string(), "id".to_string()], 2.0)]
        );
        assert_eq!(
            series(&p, "netagent_log_lines_truncated"),
            vec![(vec!["docker".to_string(), "id".to_string()], 1.0)]
        );
    }
}
