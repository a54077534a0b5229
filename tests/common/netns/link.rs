//! One veth link between two namespaces, addressed and brought up, and the
//! ping-free check that one end of it is ready. Used by [`super::NetnsPair`]
//! for its own link and by its leg.

use super::command::{ip, ip_ok};
use std::net::{Ipv4Addr, Ipv6Addr};

/// One end of a veth link: its namespace, device name and addresses.
pub(super) struct End<'a> {
    pub ns: &'a str,
    pub dev: &'a str,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

/// Creates the veth pair between the ends' namespaces, gives each end its
/// /30 and /64 (no duplicate address detection: the link is ours alone)
/// and brings both ends and the namespaces' loopback up.
pub(super) fn veth(a: &End, b: &End) {
    ip_ok(&[
        "link", "add", a.dev, "netns", a.ns, "type", "veth", "peer", "name", b.dev, "netns", b.ns,
    ]);
    for end in [a, b] {
        let (v4, v6) = (format!("{}/30", end.v4), format!("{}/64", end.v6));
        ip_ok(&["-n", end.ns, "link", "set", "lo", "up"]);
        ip_ok(&["-n", end.ns, "addr", "add", &v4, "dev", end.dev]);
        ip_ok(&["-n", end.ns, "addr", "add", &v6, "dev", end.dev, "nodad"]);
        ip_ok(&["-n", end.ns, "link", "set", end.dev, "up"]);
    }
}

/// Why `dev` in `ns` is not usable yet (no carrier, not up, or a
/// tentative address), or None when it is.
pub(super) fn not_ready(ns: &str, dev: &str) -> Option<String> {
    let link =
        String::from_utf8_lossy(&ip(&["-n", ns, "-o", "link", "show", dev]).stdout).into_owned();
    if !link.contains("LOWER_UP") || !link.contains("state UP") {
        return Some(format!("{ns}: link not up: {link}"));
    }
    let tentative = ip(&["-n", ns, "-o", "addr", "show", "dev", dev, "tentative"]);
    if !tentative.status.success() || !tentative.stdout.is_empty() {
        return Some(format!(
            "{ns}: tentative addresses: {}",
            String::from_utf8_lossy(&tentative.stdout)
        ));
    }
    None
}
