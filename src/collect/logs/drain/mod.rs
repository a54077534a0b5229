//! Clustering of masked messages into patterns: Drain (He et al., "Drain:
//! An Online Log Parsing Approach with Fixed Depth Tree", 2017) where only
//! constant tokens count, positions become variables once they have shown
//! several values, and patterns that turn out to be one template merge.
//!
//! A message arrives masked (`mask`): variable-looking words are already
//! `<*>`. Its *route* is its token count and its first constant word (a
//! token with a letter and no `<*>`; timestamps and ids in front are
//! skipped): messages of different routes never share a pattern.
//!
//! Among the patterns of its route, a message joins one whose constant
//! tokens it all has. Failing that, it may join the most similar pattern
//! whose constant tokens it matches for at least `similarity` of them, if
//! each position where it differs has shown [`VARIABLE_AFTER`] different
//! values in such near misses: then those positions become `<*>` — the
//! pattern has learned its variables. `cache hit for key <*>` and `cache
//! miss for key <*>` stay two patterns; dpkg's `status <state> …` lines,
//! with eight states, become one. A token with a masked part
//! (`netagent:<*>`, `[<*>]`) is partly variable already: one other value
//! there is enough. Variables never count as equal: lines that share only
//! timestamps and numbers do not join.
//!
//! The same principle applies to the token count: when patterns of
//! [`VARIABLE_AFTER`] different lengths in a route share their start up to
//! past the first constant word after the route word (`run with …`,
//! `Commandline: apt-get …`), what follows is one variable of any length —
//! a *tail* pattern, `update-alternatives <*> <*>: run with <*>`, that
//! takes lines of every length from then on.
//!
//! A pattern may start before the lines that show one of its positions to
//! be variable, so the same template can be learned twice
//! (`status installed <*>` and `status <*> <*>`). Whenever a pattern
//! appears or generalises, the patterns of its route that it covers merge
//! into it, with their counts.
//!
//! A pattern's hash is the first 16 hex digits of the SHA-256 of its
//! template (tokens joined by single spaces), so the same template has the
//! same hash on every node and across restarts.

use std::collections::HashMap;

use super::mask::WILDCARD;

mod cluster;
pub use cluster::{pattern_hash, Cluster};

/// Different values a position (or the token count) must show before it is
/// a variable: a word that comes in two kinds (`hit`/`miss`,
/// `Accepted`/`Failed`) is part of the event, one that comes in three or
/// more is a value.
pub const VARIABLE_AFTER: usize = 3;

/// Routes (distinct first constant words) per token count; beyond it new
/// words share the `<*>` route, which bounds the tree when the first
/// constant word is in fact variable.
const MAX_CHILDREN: usize = 100;

fn is_var(t: &str) -> bool {
    t == WILDCARD
}

/// A constant word: has a letter and no masked part.
fn word(t: &str) -> bool {
    !t.contains(WILDCARD) && t.bytes().any(|b| b.is_ascii_alphabetic() || !b.is_ascii())
}

/// The first constant word of a message: the second level of the tree.
pub fn route<'a>(tokens: &[&'a str]) -> &'a str {
    tokens.iter().find(|t| word(t)).copied().unwrap_or(WILDCARD)
}

/// Where the tail of a pattern with these tokens may start: after its
/// route word and the constant word after that (after the route word and
/// one token when there is none).
fn tail_start<T: AsRef<str>>(tokens: &[T]) -> Option<usize> {
    let r = tokens.iter().position(|t| word(t.as_ref()))?;
    Some(
        match tokens[r + 1..].iter().position(|t| word(t.as_ref())) {
            Some(p) => r + 1 + p + 1,
            None => r + 2,
        },
    )
}

/// Leading positions where `a` and `b` agree (equal, or either `<*>`).
fn common_prefix<A: AsRef<str>, B: AsRef<str>>(a: &[A], b: &[B]) -> usize {
    a.iter()
        .zip(b)
        .take_while(|(x, y)| {
            let (x, y) = (x.as_ref(), y.as_ref());
            x == y || is_var(x) || is_var(y)
        })
        .count()
}

/// What [`Drain::add`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// Where the pattern is: for [`Drain::cluster_mut`].
    pub slot: usize,
    /// The message started a pattern (it may have merged into an older
    /// one at once: see [`Drain::len`] for the patterns held).
    pub created: bool,
}

/// The patterns of one stream of messages.
#[derive(Debug)]
pub struct Drain {
    similarity: f64,
    slots: Vec<Option<Cluster>>,
    free: Vec<usize>,
    live: usize,
    next_uid: u64,
    /// Token count -> route word -> slots of fixed-length patterns.
    tree: HashMap<usize, HashMap<Box<str>, Vec<usize>>>,
    /// Route word -> slots of tail patterns.
    tails: HashMap<Box<str>, Vec<usize>>,
    /// uid of a merged pattern -> uid it merged into (only when tracked).
    merged_into: Option<HashMap<u64, u64>>,
}

impl Drain {
    /// `similarity`: share of a pattern's constant tokens (0 < s <= 1) a
    /// message must match to join it as a near miss.
    pub fn new(similarity: f64) -> Self {
        Self {
            similarity,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_uid: 0,
            tree: HashMap::new(),
            tails: HashMap::new(),
            merged_into: None,
        }
    }

    /// Remembers which pattern each merged one went into, for
    /// [`Drain::resolve`] (measurements; grows with every merge).
    pub fn track_merges(&mut self) {
        self.merged_into.get_or_insert_with(HashMap::new);
    }

    /// The uid a pattern's lines are counted under now.
    pub fn resolve(&self, mut uid: u64) -> u64 {
        if let Some(m) = &self.merged_into {
            while let Some(&next) = m.get(&uid) {
                uid = next;
            }
        }
        uid
    }

    /// The uid the next new pattern gets (every uid below it was handed out).
    pub fn next_uid(&self) -> u64 {
        self.next_uid
    }

    /// Live patterns.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn clusters(&self) -> impl Iterator<Item = &Cluster> {
        self.slots.iter().flatten()
    }

    pub fn cluster_mut(&mut self, slot: usize) -> &mut Cluster {
        self.slots[slot].as_mut().expect("live slot")
    }

    fn get(&self, slot: usize) -> &Cluster {
        self.slots[slot].as_ref().expect("live slot")
    }

    /// Heap bytes of the patterns and the tree (an estimate: allocator
    /// overhead and hash table slack are not counted).
    pub fn heap_bytes(&self) -> usize {
        let vec = std::mem::size_of::<usize>();
        let entry = std::mem::size_of::<(Box<str>, Vec<usize>)>() + 1;
        let routes = |m: &HashMap<Box<str>, Vec<usize>>| {
            m.capacity() * entry
                + m.iter()
                    .map(|(k, v)| k.len() + v.capacity() * vec)
                    .sum::<usize>()
        };
        self.clusters().map(Cluster::heap_bytes).sum::<usize>()
            + self.slots.capacity() * std::mem::size_of::<Option<Cluster>>()
            + self.free.capacity() * vec
            + self.tree.values().map(routes).sum::<usize>()
            + self.tree.capacity()
                * (std::mem::size_of::<(usize, HashMap<Box<str>, Vec<usize>>)>() + 1)
            + routes(&self.tails)
    }

    /// The pattern for `tokens`, or `None` when it would need a new pattern
    /// and `may_create` is false.
    pub fn add(&mut self, tokens: &[&str], may_create: bool) -> Option<Added> {
        let route = route(tokens);
        let found = self.lookup(tokens, route);
        if let Some(slot) = found.join {
            if self.cluster_mut(slot).generalise(tokens) {
                self.merge_covered(slot);
            }
            return Some(Added {
                slot,
                created: false,
            });
        }
        if !may_create {
            return None;
        }
        // A word that starts no route yet but nearly matches a pattern of
        // the shared route is taken for a variable: file it there too.
        let key = if found.near_shared { WILDCARD } else { route };
        let slot = self.insert(tokens, false, key);
        self.merge_covered(slot);
        let slot = self.try_tail(slot);
        Some(Added {
            slot,
            created: true,
        })
    }

    /// Adds a saved template (no lines yet), unless one like it is there.
    pub fn restore(
        &mut self,
        route: &str,
        template: &str,
        tail: bool,
        sample: String,
    ) -> Option<usize> {
        let mut tokens: Vec<&str> = template.split(' ').collect();
        if tail && tokens.pop() != Some(WILDCARD) {
            return None;
        }
        let known = self
            .clusters()
            .any(|c| c.route() == route && c.template() == template);
        if known {
            return None;
        }
        let slot = self.insert(&tokens, tail, route);
        self.cluster_mut(slot).sample = sample;
        Some(slot)
    }

    fn insert<T: AsRef<str>>(&mut self, tokens: &[T], tail: bool, route: &str) -> usize {
        let uid = self.next_uid;
        self.next_uid += 1;
        let key = if tail {
            route
        } else {
            let routes = self.tree.entry(tokens.len()).or_default();
            // Known words and new ones while there is room; the rest share `<*>`.
            if routes.contains_key(route) || routes.len() < MAX_CHILDREN {
                route
            } else {
                WILDCARD
            }
        };
        let c = Cluster::new(tokens, tail, key, uid);
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(c);
                s
            }
            None => {
                self.slots.push(Some(c));
                self.slots.len() - 1
            }
        };
        let list = if tail {
            self.tails.entry(Box::from(key)).or_default()
        } else {
            self.tree
                .entry(tokens.len())
                .or_default()
                .entry(Box::from(key))
                .or_default()
        };
        list.push(slot);
        self.live += 1;
        slot
    }

    /// Finds the pattern `tokens` joins (see the module docs).
    fn lookup(&mut self, tokens: &[&str], route: &str) -> Lookup {
        let (len, threshold) = (tokens.len(), self.similarity);
        let mut out = Lookup {
            join: None,
            near_shared: false,
        };
        let mut shared = false;
        let leaf: &[usize] = match self.tree.get(&len) {
            Some(routes) => match routes.get(route) {
                Some(v) => v,
                None => {
                    shared = true;
                    routes.get(WILDCARD).map_or(&[], Vec::as_slice)
                }
            },
            None => &[],
        };
        // A pattern whose constants the message all has: the most general.
        let mut exact: Option<(usize, usize)> = None;
        for &slot in leaf {
            let c = self.get(slot);
            if c.similarity(tokens) == 1.0 {
                let vars = c.tokens.len() - c.constants;
                if exact.is_none_or(|(v, _)| vars > v) {
                    exact = Some((vars, slot));
                }
            }
        }
        if let Some((_, slot)) = exact {
            out.join = Some(slot);
            return out;
        }
        // A tail pattern: the longest start that fits.
        if let Some(tails) = self.tails.get(route) {
            let mut best: Option<(usize, usize)> = None;
            for &slot in tails {
                let c = self.get(slot);
                if c.covers(tokens, false) && best.is_none_or(|(l, _)| c.tokens.len() > l) {
                    best = Some((c.tokens.len(), slot));
                }
            }
            if let Some((_, slot)) = best {
                out.join = Some(slot);
                return out;
            }
        }
        // A near miss whose differing positions are known to vary.
        let leaf = leaf.to_vec();
        let mut best: Option<(f64, usize)> = None;
        for slot in leaf {
            let c = self.cluster_mut(slot);
            let sim = c.similarity(tokens);
            if sim < threshold {
                continue;
            }
            out.near_shared |= shared;
            if c.near_miss(tokens) && best.is_none_or(|(s, _)| sim > s) {
                best = Some((sim, slot));
            }
        }
        out.join = best.map(|(_, slot)| slot);
        out
    }

    /// Merges into `slot` the other patterns of its route that it covers
    /// (their constants include all of its own).
    fn merge_covered(&mut self, slot: usize) {
        let c = self.get(slot);
        let (len, route, tail) = (c.tokens.len(), c.route.clone(), c.tail);
        let mut candidates: Vec<usize> = Vec::new();
        if tail {
            for routes in self.tree.values() {
                candidates.extend(routes.get(&route).into_iter().flatten());
            }
            candidates.extend(self.tails.get(&route).into_iter().flatten());
        } else if let Some(v) = self.tree.get(&len).and_then(|r| r.get(&route)) {
            candidates.extend(v);
        }
        for other in candidates {
            if other == slot {
                continue;
            }
            let o = self.get(other);
            if self.get(slot).covers(&o.tokens, o.tail) {
                self.absorb(slot, other);
            }
        }
    }

    /// Moves `other`'s count into `slot` and removes `other`.
    fn absorb(&mut self, slot: usize, other: usize) {
        let gone = self.remove(other);
        let target = self.cluster_mut(slot);
        target.count += gone.count;
        if target.sample.is_empty() || gone.uid < target.uid {
            // The first line of the pattern: the oldest part's.
            if !gone.sample.is_empty() {
                target.sample = gone.sample;
            }
        }
        let uid = target.uid;
        if let Some(m) = &mut self.merged_into {
            m.insert(gone.uid, uid);
        }
    }

    /// After `slot` (fixed length) appeared: the patterns of its route that
    /// share its start up to the first constant word after the route word
    /// (`… run with`) become one tail pattern once they come in
    /// [`VARIABLE_AFTER`] lengths, or join the tail pattern that shares that
    /// start. Returns where `slot`'s lines are counted now.
    fn try_tail(&mut self, slot: usize) -> usize {
        let c = self.get(slot);
        if &*c.route == WILDCARD {
            return slot;
        }
        let Some(min) = tail_start(&c.tokens) else {
            return slot;
        };
        let route = c.route.clone();
        let tokens = c.tokens.clone();
        // A tail that shares that start takes it, starting where they part.
        let shared = self
            .tails
            .get(&route)
            .into_iter()
            .flatten()
            .map(|&t| (common_prefix(&tokens, &self.get(t).tokens), t))
            .filter(|(common, _)| *common >= min)
            .max();
        if let Some((common, t)) = shared {
            let tail = self.cluster_mut(t);
            if tail.tokens.len() > common {
                tail.tokens.truncate(common);
                tail.seen.retain(|(p, _)| (*p as usize) < common);
            }
            tail.generalise(&tokens);
            tail.rehash();
            self.merge_covered(t);
            return t;
        }
        // Patterns of other lengths that share it.
        let mut members: Vec<(usize, usize)> = Vec::new();
        let mut lengths = vec![tokens.len()];
        for (&len, routes) in &self.tree {
            if len == tokens.len() {
                continue;
            }
            for &o in routes.get(&route).into_iter().flatten() {
                let other = &self.get(o).tokens;
                let common = common_prefix(&tokens, other);
                if common >= min.min(tail_start(other).unwrap_or(min)) {
                    members.push((o, common));
                    lengths.push(len);
                }
            }
        }
        lengths.sort_unstable();
        lengths.dedup();
        if lengths.len() < VARIABLE_AFTER {
            return slot;
        }
        let keep = members.iter().map(|m| m.1).min().unwrap_or(min);
        let tail = self.insert(&tokens[..keep], true, &route);
        for (o, _) in members {
            let t = self.get(o).tokens.clone();
            self.cluster_mut(tail).generalise(&t[..keep]);
        }
        self.merge_covered(tail);
        tail
    }

    fn remove(&mut self, slot: usize) -> Cluster {
        let c = self.slots[slot].take().expect("live slot");
        let list = if c.tail {
            self.tails.get_mut(&c.route)
        } else {
            self.tree
                .get_mut(&c.tokens.len())
                .and_then(|r| r.get_mut(&c.route))
        };
        if let Some(v) = list {
            v.retain(|&s| s != slot);
        }
        if c.tail {
            if self.tails.get(&c.route).is_some_and(Vec::is_empty) {
                self.tails.remove(&c.route);
            }
        } else if let Some(routes) = self.tree.get_mut(&c.tokens.len()) {
            if routes.get(&c.route).is_some_and(Vec::is_empty) {
                routes.remove(&c.route);
            }
        }
        self.free.push(slot);
        self.live -= 1;
        c
    }
}

/// What [`Drain::lookup`] found.
struct Lookup {
    join: Option<usize>,
    /// The message's route word has no patterns of its length yet, and it
    /// nearly matched one of the shared `<*>` route.
    near_shared: bool,
}

#[cfg(test)]
mod tests;
