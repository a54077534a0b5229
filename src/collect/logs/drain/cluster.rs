//! One pattern of a [`Drain`](super::Drain): its template, the values seen
//! where it may turn out to be variable, its count and sample.

use super::{is_var, VARIABLE_AFTER};
use crate::collect::logs::mask::WILDCARD;

/// One pattern.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The template; for a tail pattern, the part before the tail.
    pub(super) tokens: Vec<Box<str>>,
    /// Any number of further tokens follow (one variable).
    pub(super) tail: bool,
    /// Tokens that are not `<*>`.
    pub(super) constants: usize,
    /// The route word it is filed under.
    pub(super) route: Box<str>,
    hash: String,
    /// Unique within its [`Drain`], never reused.
    pub(super) uid: u64,
    /// Other values seen at constant positions in near misses (position,
    /// value): fewer than [`VARIABLE_AFTER`] per position.
    pub(super) seen: Vec<(u16, Box<str>)>,
    /// Lines counted under this pattern.
    pub count: u64,
    /// The first line of the pattern (already shortened by the caller).
    pub sample: String,
}

impl Cluster {
    pub(super) fn new<T: AsRef<str>>(tokens: &[T], tail: bool, route: &str, uid: u64) -> Self {
        let tokens: Vec<Box<str>> = tokens.iter().map(|t| Box::from(t.as_ref())).collect();
        let constants = tokens.iter().filter(|t| !is_var(t)).count();
        let mut c = Cluster {
            tokens,
            tail,
            constants,
            route: Box::from(route),
            hash: String::new(),
            uid,
            seen: Vec::new(),
            count: 0,
            sample: String::new(),
        };
        c.rehash();
        c
    }

    pub(super) fn rehash(&mut self) {
        self.constants = self.tokens.iter().filter(|t| !is_var(t)).count();
        self.hash = pattern_hash(&self.template());
    }

    /// The template: tokens joined by single spaces, `<*>` for variables
    /// (a tail pattern ends in the `<*>` of its tail).
    pub fn template(&self) -> String {
        let mut t = self.tokens.join(" ");
        if self.tail {
            if !t.is_empty() {
                t.push(' ');
            }
            t.push_str(WILDCARD);
        }
        t
    }

    /// See [`pattern_hash`].
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The route word it is filed under (saved with the template).
    pub fn route(&self) -> &str {
        &self.route
    }

    /// A tail pattern (its last `<*>` stands for any number of tokens).
    pub fn is_tail(&self) -> bool {
        self.tail
    }

    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// Share of the pattern's constant tokens that `tokens` has at the
    /// same positions (1 for a pattern of variables only).
    pub(super) fn similarity<T: AsRef<str>>(&self, tokens: &[T]) -> f64 {
        if self.constants == 0 {
            return 1.0;
        }
        let equal = self
            .tokens
            .iter()
            .zip(tokens)
            .filter(|(t, m)| !is_var(t) && &***t == m.as_ref())
            .count();
        equal as f64 / self.constants as f64
    }

    /// Whether every line of a pattern with these tokens would match this
    /// one: same length (at least as long, under a tail) and this one's
    /// constants at their positions.
    pub(super) fn covers<T: AsRef<str>>(&self, tokens: &[T], tail: bool) -> bool {
        let fits = if self.tail {
            tokens.len() >= self.tokens.len()
        } else {
            !tail && tokens.len() == self.tokens.len()
        };
        fits && self.similarity(tokens) == 1.0
    }

    /// Notes the values `tokens` has where it differs from the pattern's
    /// constants; true if every such position has now shown
    /// [`VARIABLE_AFTER`] values (the pattern's own one included).
    pub(super) fn near_miss(&mut self, tokens: &[&str]) -> bool {
        let mut all = true;
        for (i, (t, m)) in self.tokens.iter().zip(tokens).enumerate() {
            if is_var(t) || **t == **m {
                continue;
            }
            // A token with a masked part (`tzdata:<*>`, `[<*>]`) is part
            // variable already: one other value shows it.
            let need = if t.contains(WILDCARD) || m.contains(WILDCARD) {
                2
            } else {
                VARIABLE_AFTER
            };
            let i = i as u16;
            let mut others = 0;
            let mut known = false;
            for (p, v) in &self.seen {
                if *p == i {
                    others += 1;
                    known |= **v == **m;
                }
            }
            if !known && others + 1 < need {
                self.seen.push((i, Box::from(*m)));
                others += 1;
            }
            all &= others + 1 >= need;
        }
        all
    }

    /// Turns the constant positions that differ from `tokens` into
    /// variables; true if any did.
    pub(super) fn generalise<T: AsRef<str>>(&mut self, tokens: &[T]) -> bool {
        let mut changed = false;
        for (i, (t, m)) in self.tokens.iter_mut().zip(tokens).enumerate() {
            if !is_var(t) && &**t != m.as_ref() {
                *t = Box::from(WILDCARD);
                changed = true;
                self.seen.retain(|(p, _)| *p as usize != i);
            }
        }
        if changed {
            self.rehash();
        }
        changed
    }

    /// Bytes of heap this pattern holds (template, route, hash, sample,
    /// values seen).
    pub(super) fn heap_bytes(&self) -> usize {
        self.tokens.capacity() * std::mem::size_of::<Box<str>>()
            + self.tokens.iter().map(|t| t.len()).sum::<usize>()
            + self.route.len()
            + self.seen.capacity() * std::mem::size_of::<(u16, Box<str>)>()
            + self.seen.iter().map(|(_, v)| v.len()).sum::<usize>()
            + self.hash.capacity()
            + self.sample.capacity()
    }
}

/// First 16 hex digits of the SHA-256 of a template.
pub fn pattern_hash(template: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, template.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}
