//! Destination names (`dst_name`): which name a process — or, in a
//! container, any of its processes — resolved to an address, from the A
//! and AAAA records of its answers (CNAME chains followed back to the
//! queried name), kept for the record's TTL (at least
//! `dns.min_ttl_seconds`), bounded by `dns.max_names`.
//!
//! A label must not flip under a counter: once an owner's flow to an
//! address has been labelled with a name, it keeps that name for as long
//! as the kernel keeps the counter (until the series expires), even after
//! the record expired or the address was resolved for another name since.

use std::collections::HashMap;
use std::sync::Arc;

use crate::kernel::abi::COMM_LEN;

/// Whose resolution an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    Process([u8; COMM_LEN], u64),
    Container(u64),
}

/// The name cache.
#[derive(Debug)]
pub struct Names {
    max: usize,
    min_ttl_ns: u64,
    /// (owner, address) -> (name, expiry in CLOCK_MONOTONIC ns).
    live: HashMap<(Owner, [u8; 16]), (Arc<str>, u64)>,
    /// (process owner, address) -> the name its flows were labelled with.
    sticky: HashMap<(Owner, [u8; 16]), Arc<str>>,
    /// Entries not kept because the cache was full.
    pub full: u64,
}

impl Names {
    pub fn new(max: usize, min_ttl_seconds: u32) -> Self {
        Self {
            max: max.max(1),
            min_ttl_ns: u64::from(min_ttl_seconds) * 1_000_000_000,
            live: HashMap::new(),
            sticky: HashMap::new(),
            full: 0,
        }
    }

    /// `comm` of `cgroup_id` resolved `name` to `addr` at `now_ns`, valid
    /// for `ttl` seconds.
    pub fn insert(
        &mut self,
        comm: &[u8; COMM_LEN],
        cgroup_id: u64,
        addr: [u8; 16],
        name: &Arc<str>,
        ttl: u32,
        now_ns: u64,
    ) {
        let expiry = now_ns.saturating_add((u64::from(ttl) * 1_000_000_000).max(self.min_ttl_ns));
        let mut owners = vec![Owner::Process(*comm, cgroup_id)];
        if cgroup_id != 0 {
            owners.push(Owner::Container(cgroup_id));
        }
        for owner in owners {
            let key = (owner, addr);
            if !self.live.contains_key(&key) && self.live.len() >= self.max {
                self.live.retain(|_, (_, until)| *until > now_ns);
                if self.live.len() >= self.max {
                    self.full += 1;
                    continue;
                }
            }
            self.live.insert(key, (name.clone(), expiry));
        }
    }

    /// The name for a flow of `comm` in `cgroup_id` to `addr` at `now_ns`.
    pub fn lookup(
        &mut self,
        comm: &[u8; COMM_LEN],
        cgroup_id: u64,
        in_container: bool,
        addr: &[u8; 16],
        now_ns: u64,
    ) -> Option<Arc<str>> {
        let process = (Owner::Process(*comm, cgroup_id), *addr);
        if let Some(n) = self.sticky.get(&process) {
            return Some(n.clone());
        }
        let live = |key| {
            self.live
                .get(&key)
                .filter(|(_, until)| *until > now_ns)
                .map(|(n, _)| n.clone())
        };
        let found = live(process).or_else(|| {
            in_container
                .then(|| live((Owner::Container(cgroup_id), *addr)))
                .flatten()
        })?;
        if self.sticky.len() < self.max {
            self.sticky.insert(process, found.clone());
        }
        Some(found)
    }

    /// The flows of this owner to `addr` expired: their name is let go.
    pub fn forget(&mut self, comm: &[u8; COMM_LEN], cgroup_id: u64, addr: &[u8; 16]) {
        self.sticky
            .remove(&(Owner::Process(*comm, cgroup_id), *addr));
    }

    /// Entries held (expired ones are dropped when room is needed).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::abi::comm_bytes;

    const S: u64 = 1_000_000_000;

    fn addr(last: u8) -> [u8; 16] {
        std::net::Ipv4Addr::new(192, 0, 2, last)
            .to_ipv6_mapped()
            .octets()
    }

    #[test]
    fn names_live_for_their_ttl_and_stick_to_labelled_flows() {
        let mut n = Names::new(100, 0);
        let (curl, wget) = (comm_bytes("curl"), comm_bytes("wget"));
        let name: Arc<str> = Arc::from("api.example.com");
        n.insert(&curl, 7, addr(1), &name, 30, 0);
        // Another process of the host: not its resolution.
        assert_eq!(n.lookup(&wget, 8, false, &addr(1), S), None);
        // Another process of the same container: the container resolved it.
        assert_eq!(n.lookup(&wget, 7, true, &addr(1), S), Some(name.clone()));
        assert_eq!(n.lookup(&wget, 7, false, &addr(1), S), Some(name.clone()));
        // Expired for a flow never labelled before.
        n.insert(&curl, 7, addr(2), &name, 30, 0);
        assert_eq!(n.lookup(&curl, 7, false, &addr(2), 31 * S), None);
        // A flow labelled once keeps its name after the TTL.
        assert_eq!(
            n.lookup(&curl, 7, false, &addr(1), 10 * S),
            Some(name.clone())
        );
        assert_eq!(n.lookup(&curl, 7, false, &addr(1), 100 * S), Some(name));
        // Its series expired: the name goes with it.
        n.forget(&curl, 7, &addr(1));
        assert_eq!(n.lookup(&curl, 7, false, &addr(1), 100 * S), None);
    }

    #[test]
    fn the_minimum_ttl_and_the_bound() {
        let mut n = Names::new(2, 60);
        let c = comm_bytes("c");
        let name: Arc<str> = Arc::from("x");
        n.insert(&c, 0, addr(1), &name, 1, 0);
        assert_eq!(n.lookup(&c, 0, false, &addr(1), 59 * S), Some(name.clone()));
        n.insert(&c, 0, addr(2), &name, 1, 0);
        n.insert(&c, 0, addr(3), &name, 1, 0);
        assert_eq!(n.full, 1);
        assert_eq!(n.len(), 2);
        // Expired entries make room.
        n.insert(&c, 0, addr(3), &name, 1, 61 * S);
        assert_eq!(n.full, 1);
        assert_eq!(n.len(), 1);
    }
}
