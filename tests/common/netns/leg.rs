//! [`Leg`]: a third namespace behind `b` of a [`NetnsPair`], so `b` can be a
//! router ("node") between two "pods": `a` and the leg. Made by
//! [`NetnsPair::add_leg`]; deleted with the pair.

use super::command::ip_ok;
use super::link::{self, End};
use super::pair::{fnv1a, NetnsPair};
use super::PREFIX;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Namespace `na-<tag>-<pid>-c`, joined to `b` by its own veth pair.
pub struct Leg {
    pub ns: String,
    /// The leg's address, and `b`'s on the link to it.
    pub ip: Ipv4Addr,
    pub b_ip: Ipv4Addr,
    pub ip6: Ipv6Addr,
    pub b_ip6: Ipv6Addr,
    pub dev: String,
    pub b_dev: String,
}

impl NetnsPair {
    /// Adds the leg (once): a /30 and a /64 of its own, routes between `a`
    /// and the leg through `b`, and forwarding on in `b`. Returns when the
    /// leg's link is up and usable.
    pub fn add_leg(&mut self, tag: &str) -> &Leg {
        assert!(self.c.is_none(), "the pair already has a leg");
        let pid = std::process::id();
        let h = fnv1a(format!("{tag}/{pid}/leg").as_bytes());
        let idx = (h % (1 << 14)) as u32;
        let base = u32::from(Ipv4Addr::new(10, 203, 0, 0)) + idx * 4;
        let six = |host: u16| Ipv6Addr::new(0xfd00, 0x203, 1, idx as u16, 0, 0, 0, host);
        let leg = Leg {
            ns: format!("{PREFIX}{tag}-{pid}-c"),
            ip: Ipv4Addr::from(base + 2),
            b_ip: Ipv4Addr::from(base + 1),
            ip6: six(2),
            b_ip6: six(1),
            dev: format!("na{:08x}c", h as u32),
            b_dev: format!("na{:08x}d", h as u32),
        };
        super::cleanup::delete_netns(&leg.ns);
        // Owned by the pair from here on: its drop deletes the leg too.
        self.c = Some(leg);
        let leg = self.c.as_ref().expect("just set");
        ip_ok(&["netns", "add", &leg.ns]);
        link::veth(
            &End {
                ns: &leg.ns,
                dev: &leg.dev,
                v4: leg.ip,
                v6: leg.ip6,
            },
            &End {
                ns: &self.b,
                dev: &leg.b_dev,
                v4: leg.b_ip,
                v6: leg.b_ip6,
            },
        );
        // a <-> leg through b (host routes: the two addresses are all there is).
        let (a_net, leg_net) = (format!("{}/32", self.a_ip), format!("{}/32", leg.ip));
        let (a_net6, leg_net6) = (format!("{}/128", self.a_ip6), format!("{}/128", leg.ip6));
        ip_ok(&[
            "-n",
            &self.a,
            "route",
            "add",
            &leg_net,
            "via",
            &self.b_ip.to_string(),
        ]);
        ip_ok(&[
            "-n",
            &self.a,
            "-6",
            "route",
            "add",
            &leg_net6,
            "via",
            &self.b_ip6.to_string(),
        ]);
        ip_ok(&[
            "-n",
            &leg.ns,
            "route",
            "add",
            &a_net,
            "via",
            &leg.b_ip.to_string(),
        ]);
        ip_ok(&[
            "-n",
            &leg.ns,
            "-6",
            "route",
            "add",
            &a_net6,
            "via",
            &leg.b_ip6.to_string(),
        ]);
        self.sysctl(&self.b, "net.ipv4.ip_forward", "1");
        self.sysctl(&self.b, "net.ipv6.conf.all.forwarding", "1");
        self.wait_leg_ready();
        self.c.as_ref().expect("just set")
    }

    /// The leg's link has carrier and its addresses are not tentative.
    fn wait_leg_ready(&self) {
        let leg = self.c.as_ref().expect("leg");
        let deadline = std::time::Instant::now() + super::READY_TIMEOUT;
        loop {
            let ok = [(&leg.ns, &leg.dev), (&self.b, &leg.b_dev)]
                .into_iter()
                .all(|(ns, dev)| link::not_ready(ns, dev).is_none());
            if ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "leg {} not ready within {:?}",
                leg.ns,
                super::READY_TIMEOUT
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
