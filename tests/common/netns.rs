//! Test "hosts" in network namespaces: two namespaces joined by a veth pair,
//! with IPv4 and IPv6 addresses, and helpers to run commands, testgen servers
//! and clients, nftables rulesets and sysctls inside them.
//!
//! Cleanup: [`NetnsPair`] kills what still runs in its namespaces and deletes
//! them on drop (also when a test panics). A run killed midway leaves
//! namespaces named `na-<tag>-<pid>-{a,b}`; [`cleanup_stale`] (to be called at
//! the start of every netns test) deletes those whose creating process is gone,
//! and [`NetnsPair::new`] deletes namespaces with its own names before creating
//! them. The veth pair is created directly inside the two namespaces, so it
//! never exists in the root namespace and goes away with them.
//!
//! Every external command runs with a time limit, and every wait is bounded.
//!
//! One file per part in tests/common/netns/: bounded commands (`command`),
//! the namespace pair (`pair`), servers and clients in a namespace
//! (`servers`), a third namespace behind `b` (`leg`), and stale-namespace
//! cleanup (`cleanup`). This file holds
//! the time limits they all keep and the skip-or-fail checks.

mod cleanup;
mod command;
mod leg;
mod link;
mod pair;
mod servers;

// Each test crate uses some of these (see `dead_code` in common/mod.rs).
#[allow(unused_imports)]
pub use cleanup::{cleanup_stale, list_netns, root_veth_links};
#[allow(unused_imports)]
pub use command::wait_bounded;
#[allow(unused_imports)]
pub use leg::Leg;
#[allow(unused_imports)]
pub use pair::NetnsPair;
#[allow(unused_imports)]
pub use servers::{testgen_in, NsServer};

use std::time::Duration;

/// Prefix of every namespace these helpers create.
const PREFIX: &str = "na-";
/// Time limit for helper commands (`ip`, `nft`, `sh`).
const CMD_TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit for a testgen run in [`testgen_in`] (above the ~130 s a connect
/// takes with the default 6 SYN retries).
const TESTGEN_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the veth link and addresses may take to become usable.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long killed processes in a namespace may take to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a testgen server may take to print its ports.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Process start vs. namespace creation: wall-clock slack for the pid-reuse test
/// in [`cleanup_stale`] (boot time is known to the second only).
const START_SLACK_SECS: f64 = 2.0;

/// True when network namespaces can be used (root, `ip`); otherwise a visible
/// skip locally and a failure in CI (see [`super::require`]).
pub fn require_netns() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    super::require(
        root && super::have("ip") && std::path::Path::new("/proc/self/ns/net").exists(),
        "needs root, iproute2 (`ip`) and network namespaces",
    )
}

/// Like [`require_netns`], plus the `nft` tool.
pub fn require_nft() -> bool {
    require_netns() && super::require(super::have("nft"), "needs nftables (`nft`)")
}
