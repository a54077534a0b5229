//! Label values of a kernel flow key: process name, container identity,
//! protocol, port, peer address, direction.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use super::containers::{CgroupResolver, Identity};
use crate::metrics::Labels;

use crate::kernel::abi::{
    comm_bytes, comm_str, FlowKey, COMM_LEN, DIR_INBOUND, IPPROTO_TCP, IPPROTO_UDP,
};

/// Maps a socket owner's kernel comm to the `process` label.
#[derive(Debug, Clone, Default)]
pub struct ProcessNames {
    /// comm -> configured target name; empty means "label by comm".
    by_comm: HashMap<[u8; COMM_LEN], String>,
}

impl ProcessNames {
    /// Every process, labelled by its comm.
    pub fn by_comm() -> Self {
        Self::default()
    }

    /// Configured targets: (kernel comm, label).
    pub fn targets<'a>(targets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            by_comm: targets
                .into_iter()
                .map(|(comm, name)| (comm_bytes(comm), name.to_string()))
                .collect(),
        }
    }

    /// The label for a comm; None for a comm that is not a target (the
    /// kernel already filters those, this is a second guard).
    pub fn label(&self, comm: &[u8; COMM_LEN]) -> Option<String> {
        if self.by_comm.is_empty() {
            return Some(comm_str(comm));
        }
        self.by_comm.get(comm).cloned()
    }

    /// Whether a process with this comm is tracked.
    pub fn tracks(&self, comm: &str) -> bool {
        self.by_comm.is_empty() || self.by_comm.contains_key(&comm_bytes(comm))
    }
}

/// `dst_ip`/`listen_addr` label: IPv4-mapped IPv6 is shown as IPv4.
pub fn format_addr(bytes: [u8; 16]) -> String {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4).to_string(),
        None => v6.to_string(),
    }
}

pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        _ => "other",
    }
}

pub fn direction_name(direction: u8) -> &'static str {
    if direction == DIR_INBOUND {
        "inbound"
    } else {
        "outbound"
    }
}

/// Resolved label values of one flow key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLabels {
    pub process: String,
    /// Who owns the socket: the container (and pod), empty for the host.
    pub identity: Arc<Identity>,
    /// The owner's cgroup v2 id (0 = unknown).
    pub cgroup_id: u64,
    pub proto: &'static str,
    pub dport: String,
    pub dst_ip: String,
    /// Where the destination was translated to (DNAT); empty when nothing
    /// was translated.
    pub actual_dst_ip: String,
    pub actual_dport: String,
    pub direction: &'static str,
    /// The name the owner resolved to `dst_ip` (outbound only; empty when
    /// unknown): see [`DstNames`].
    pub dst_name: String,
}

/// Names that processes resolved, for `dst_name` (the DNS source keeps
/// them, src/collect/dns/).
pub trait DstNames: Send + Sync {
    /// The name that the process `comm` of `cgroup_id` (or, in a
    /// container, any process of that container) resolved to `addr`.
    fn dst_name(
        &self,
        comm: &[u8; COMM_LEN],
        cgroup_id: u64,
        in_container: bool,
        addr: &[u8; 16],
    ) -> Option<Arc<str>>;

    /// The flows of `comm` in `cgroup_id` to `addr` expired: the name they
    /// kept (so that it never flipped under their counters) is let go.
    fn forget(&self, comm: &[u8; COMM_LEN], cgroup_id: u64, addr: &[u8; 16]);
}

/// Where a labeler gets identities from: the agent's cgroup cache, or
/// nothing (every process a host process).
pub trait Identities {
    /// The owner of a cgroup v2 id.
    fn by_cgroup(&mut self, cgroup_id: u64) -> Arc<Identity>;
    /// A container by its 64-hex id ("" = the host).
    fn by_container_id(&mut self, id: &str) -> Arc<Identity>;
    /// A process in the cgroup, if the cgroup is known and has one.
    fn a_pid(&self, cgroup_id: u64) -> Option<u32>;
}

impl Identities for CgroupResolver {
    fn by_cgroup(&mut self, cgroup_id: u64) -> Arc<Identity> {
        self.identity(cgroup_id)
    }

    fn by_container_id(&mut self, id: &str) -> Arc<Identity> {
        self.identity_of_container(id)
    }

    fn a_pid(&self, cgroup_id: u64) -> Option<u32> {
        CgroupResolver::a_pid(self, cgroup_id)
    }
}

/// No containers (no cgroup v2 hierarchy, tests): everyone is the host.
#[derive(Debug, Default)]
pub struct HostOnly;

impl Identities for HostOnly {
    fn by_cgroup(&mut self, _: u64) -> Arc<Identity> {
        Arc::default()
    }

    fn by_container_id(&mut self, id: &str) -> Arc<Identity> {
        if id.is_empty() {
            Arc::default()
        } else {
            Arc::new(Identity::unnamed(id, ""))
        }
    }

    fn a_pid(&self, _: u64) -> Option<u32> {
        None
    }
}

/// `process` and the identity labels, in catalog order.
pub fn owner_labels(process: String, identity: &Identity) -> Labels {
    let mut labels = vec![("process", process)];
    labels.extend(identity.labels());
    labels
}

/// Resolves flow keys to labels; identities are looked up once per cgroup
/// per scrape.
pub struct Labeler<'a> {
    names: &'a ProcessNames,
    identities: &'a mut dyn Identities,
    by_cgroup: HashMap<u64, Arc<Identity>>,
    dst_names: Option<&'a dyn DstNames>,
}

impl<'a> Labeler<'a> {
    pub fn new(names: &'a ProcessNames, identities: &'a mut dyn Identities) -> Self {
        Self {
            names,
            identities,
            by_cgroup: HashMap::new(),
            dst_names: None,
        }
    }

    /// Labels outbound peers with the names their owners resolved.
    pub fn with_dst_names(mut self, names: Option<&'a dyn DstNames>) -> Self {
        self.dst_names = names;
        self
    }

    /// The name `comm` of `cgroup_id` resolved to `addr`; empty when none.
    pub fn dst_name(&mut self, comm: &[u8; COMM_LEN], cgroup_id: u64, addr: &[u8; 16]) -> String {
        let Some(names) = self.dst_names else {
            return String::new();
        };
        let in_container = !self.identity(cgroup_id).id.is_empty();
        names
            .dst_name(comm, cgroup_id, in_container, addr)
            .map(|n| n.to_string())
            .unwrap_or_default()
    }

    /// Lets go of the name the expired flow of `comm` in `cgroup_id` to
    /// `addr` kept (see [`DstNames::forget`]).
    pub fn forget_dst_name(&self, comm: &[u8; COMM_LEN], cgroup_id: u64, addr: &[u8; 16]) {
        if let Some(names) = self.dst_names {
            names.forget(comm, cgroup_id, addr);
        }
    }

    /// The owner of a cgroup; the host for cgroup 0 (unknown).
    pub fn identity(&mut self, cgroup_id: u64) -> Arc<Identity> {
        if cgroup_id == 0 {
            return Arc::default();
        }
        let source = &mut self.identities;
        self.by_cgroup
            .entry(cgroup_id)
            .or_insert_with(|| source.by_cgroup(cgroup_id))
            .clone()
    }

    /// A container by its id (for sources that know ids, not cgroups).
    pub fn identity_of_container(&mut self, id: &str) -> Arc<Identity> {
        if id == crate::metrics::OTHER {
            return Arc::new(Identity::other());
        }
        self.identities.by_container_id(id)
    }

    pub fn process(&self, comm: &[u8; COMM_LEN]) -> Option<String> {
        self.names.label(comm)
    }

    /// A process in a cgroup (to find the cgroup's network namespace).
    pub fn a_pid(&self, cgroup_id: u64) -> Option<u32> {
        if cgroup_id == 0 {
            return None;
        }
        self.identities.a_pid(cgroup_id)
    }

    /// None when the owner is not a target.
    pub fn key(&mut self, k: &FlowKey) -> Option<KeyLabels> {
        Some(KeyLabels {
            process: self.process(&k.comm)?,
            identity: self.identity(k.cgroup_id),
            cgroup_id: k.cgroup_id,
            proto: proto_name(k.proto),
            dport: k.dport.to_string(),
            dst_ip: format_addr(k.daddr),
            actual_dst_ip: if k.nat_dport == 0 {
                String::new()
            } else {
                format_addr(k.nat_daddr)
            },
            actual_dport: if k.nat_dport == 0 {
                String::new()
            } else {
                k.nat_dport.to_string()
            },
            direction: direction_name(k.direction),
            dst_name: if k.direction == DIR_INBOUND {
                String::new()
            } else {
                self.dst_name(&k.comm, k.cgroup_id, &k.daddr)
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_render_v4_mapped_as_v4() {
        let mut b = [0u8; 16];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(format_addr(b), "127.0.0.1");
        assert_eq!(format_addr(Ipv6Addr::LOCALHOST.octets()), "::1");
        assert_eq!(format_addr([0; 16]), "::");
    }

    #[test]
    fn names_filter_and_label() {
        let n = ProcessNames::targets([("curl", "web-client")]);
        assert_eq!(n.label(&comm_bytes("curl")).as_deref(), Some("web-client"));
        assert_eq!(n.label(&comm_bytes("wget")), None);
        assert!(n.tracks("curl") && !n.tracks("wget"));
        assert_eq!(
            ProcessNames::by_comm().label(&comm_bytes("x")).as_deref(),
            Some("x")
        );
    }
}
