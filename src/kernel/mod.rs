//! Kernel side: the BPF object, its Rust mirror types, and loading/attaching.

pub mod abi;
pub mod batch;
pub mod cgroup;
pub mod hooks;
pub mod iface;
pub mod links;
pub mod loader;
pub mod node;
pub mod privileges;
pub mod report;
pub mod series;

pub use loader::{KernelError, KernelMaps, LoadOptions, Probes};
