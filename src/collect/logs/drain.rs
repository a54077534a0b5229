//! Drain-style clustering of masked messages into patterns (He et al.,
//! "Drain: An Online Log Parsing Approach with Fixed Depth Tree", 2017; the
//! same scheme as the `drain3` library).
//!
//! Messages are grouped by token count, then by their first
//! [`PREFIX_TOKENS`] tokens (a fixed-depth tree); in the leaf, a message
//! joins the most similar pattern if at least `similarity` of its tokens
//! are equal to the pattern's, and positions that differ become `<*>`.
//! Otherwise it starts a new pattern — if the caller allows one more.
//!
//! A pattern's hash is the first 16 hex digits of the SHA-256 of its text
//! (tokens joined by single spaces), so the same pattern has the same hash
//! on every node and across restarts.

use std::collections::HashMap;

use super::mask::WILDCARD;

/// Tokens used as tree keys below the token count.
pub const PREFIX_TOKENS: usize = 2;

/// Children per tree node; beyond it new keys share the `<*>` child, which
/// bounds the tree when a prefix position is variable but was not masked.
const MAX_CHILDREN: usize = 100;

/// One pattern.
#[derive(Debug, Clone)]
pub struct Cluster {
    tokens: Vec<Box<str>>,
    hash: String,
    /// Lines counted under this pattern.
    pub count: u64,
    /// The first line of the pattern (already shortened by the caller).
    pub sample: String,
}

impl Cluster {
    fn new(tokens: &[&str]) -> Self {
        let tokens: Vec<Box<str>> = tokens.iter().map(|t| Box::from(*t)).collect();
        let mut c = Cluster {
            tokens,
            hash: String::new(),
            count: 0,
            sample: String::new(),
        };
        c.hash = pattern_hash(&c.pattern());
        c
    }

    /// The pattern text: tokens joined by single spaces.
    pub fn pattern(&self) -> String {
        self.tokens.join(" ")
    }

    /// See [`pattern_hash`].
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// (equal tokens / length, wildcards in the pattern)
    fn similarity(&self, tokens: &[&str]) -> (f64, usize) {
        let mut equal = 0;
        let mut params = 0;
        for (t, m) in self.tokens.iter().zip(tokens) {
            if **t == **m {
                equal += 1;
            } else if &**t == WILDCARD {
                params += 1;
            }
        }
        (equal as f64 / tokens.len() as f64, params)
    }

    /// Turns positions that differ from `tokens` into wildcards.
    fn generalise(&mut self, tokens: &[&str]) {
        let mut changed = false;
        for (t, m) in self.tokens.iter_mut().zip(tokens) {
            if **t != **m && &**t != WILDCARD {
                *t = Box::from(WILDCARD);
                changed = true;
            }
        }
        if changed {
            self.hash = pattern_hash(&self.pattern());
        }
    }
}

/// First 16 hex digits of the SHA-256 of a pattern's text.
pub fn pattern_hash(pattern: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, pattern.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    clusters: Vec<usize>,
}

/// The patterns of one stream of messages.
#[derive(Debug)]
pub struct Drain {
    similarity: f64,
    clusters: Vec<Cluster>,
    /// Token count -> prefix tree.
    root: HashMap<usize, Node>,
}

impl Drain {
    /// `similarity`: fraction of equal tokens (0 < s <= 1) for a message to
    /// join a pattern; drain3 uses 0.4.
    pub fn new(similarity: f64) -> Self {
        Self {
            similarity,
            clusters: Vec::new(),
            root: HashMap::new(),
        }
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    pub fn cluster_mut(&mut self, i: usize) -> &mut Cluster {
        &mut self.clusters[i]
    }

    /// The pattern for `tokens` (index, and whether it was created now), or
    /// `None` when it would need a new pattern and `may_create` is false.
    pub fn add(&mut self, tokens: &[&str], may_create: bool) -> Option<(usize, bool)> {
        if let Some(i) = self.best_match(tokens) {
            self.clusters[i].generalise(tokens);
            return Some((i, false));
        }
        if !may_create {
            return None;
        }
        let id = self.clusters.len();
        self.clusters.push(Cluster::new(tokens));
        let mut node = self.root.entry(tokens.len()).or_default();
        for t in tokens.iter().take(PREFIX_TOKENS) {
            // Known keys and new ones while there is room; the rest share `<*>`.
            let own_key = node.children.contains_key(*t)
                || (*t != WILDCARD && node.children.len() < MAX_CHILDREN);
            let key: &str = if own_key { t } else { WILDCARD };
            node = node.children.entry(Box::from(key)).or_default();
        }
        node.clusters.push(id);
        Some((id, true))
    }

    fn best_match(&self, tokens: &[&str]) -> Option<usize> {
        let mut node = self.root.get(&tokens.len())?;
        for t in tokens.iter().take(PREFIX_TOKENS) {
            node = node
                .children
                .get(*t)
                .or_else(|| node.children.get(WILDCARD))?;
        }
        let mut best: Option<(f64, usize, usize)> = None;
        for &i in &node.clusters {
            let (sim, params) = self.clusters[i].similarity(tokens);
            if best.is_none_or(|(s, p, _)| sim > s || (sim == s && params > p)) {
                best = Some((sim, params, i));
            }
        }
        best.filter(|(s, _, _)| *s >= self.similarity)
            .map(|(_, _, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::logs::mask::mask;

    fn add(d: &mut Drain, line: &str) -> usize {
        let m = mask(line);
        let t: Vec<&str> = m.split(' ').collect();
        let (i, _) = d.add(&t, true).unwrap();
        d.cluster_mut(i).count += 1;
        i
    }

    fn patterns(d: &Drain) -> Vec<(String, u64)> {
        let mut v: Vec<_> = d
            .clusters()
            .iter()
            .map(|c| (c.pattern(), c.count))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn templates_become_patterns_with_exact_counts() {
        let mut d = Drain::new(0.4);
        for i in 0..10 {
            add(&mut d, &format!("user {i} logged in from 10.0.0.{i}"));
            add(&mut d, &format!("disk /dev/sd{i} is {i}0% full"));
        }
        for i in 0..3 {
            add(&mut d, &format!("connection to \"db-{i}\" refused"));
        }
        assert_eq!(
            patterns(&d),
            vec![
                ("connection to <*> refused".to_string(), 3),
                ("disk <*> is <*> full".to_string(), 10),
                ("user <*> logged in from <*>".to_string(), 10),
            ]
        );
    }

    #[test]
    fn differing_words_generalise_and_the_hash_follows() {
        let mut d = Drain::new(0.4);
        let a = add(&mut d, "session opened for user alice by sshd");
        let h1 = d.clusters()[a].hash().to_string();
        assert_eq!(h1, pattern_hash("session opened for user alice by sshd"));
        let b = add(&mut d, "session opened for user bob by sshd");
        assert_eq!(a, b);
        assert_eq!(
            d.clusters()[a].pattern(),
            "session opened for user <*> by sshd"
        );
        assert_eq!(
            d.clusters()[a].hash(),
            pattern_hash("session opened for user <*> by sshd")
        );
        assert_eq!(d.clusters()[a].count, 2);
    }

    #[test]
    fn dissimilar_lines_of_equal_length_stay_apart() {
        let mut d = Drain::new(0.4);
        let a = add(&mut d, "cache warmed in <*>");
        let b = add(&mut d, "cache evicted key <*>");
        let c = add(&mut d, "cache warmed in 12ms");
        assert_ne!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn no_new_pattern_when_not_allowed() {
        let mut d = Drain::new(0.4);
        add(&mut d, "alpha beta gamma");
        let m = ["delta", "epsilon", "zeta"];
        assert_eq!(d.add(&m, false), None);
        // An existing pattern still matches.
        assert_eq!(d.add(&["alpha", "beta", "gamma"], false), Some((0, false)));
    }

    #[test]
    fn hash_is_stable() {
        // Pinned: the hash is part of the exported series identity.
        assert_eq!(
            pattern_hash("user <*> logged in"),
            pattern_hash("user <*> logged in")
        );
        assert_eq!(pattern_hash("").len(), 16);
        assert_eq!(pattern_hash(""), "e3b0c44298fc1c14");
    }

    #[test]
    fn tree_children_are_bounded() {
        let mut d = Drain::new(0.4);
        // 500 distinct first words that the mask does not catch.
        for i in 0..500u32 {
            let w: String = (0..4)
                .map(|k| (b'a' + ((i / 26u32.pow(k)) % 26) as u8) as char)
                .collect();
            let t = [w.as_str(), "x"];
            d.add(&t, true);
        }
        let node = &d.root[&2];
        assert!(node.children.len() <= MAX_CHILDREN + 1);
    }
}
