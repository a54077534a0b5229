//! Kernel side: the BPF object, its Rust mirror types, and loading/attaching.

pub mod abi;
pub mod cgroup;
pub mod iface;
pub mod links;
pub mod loader;
pub mod node;
pub mod privileges;

pub use loader::{KernelError, KernelMaps, LoadOptions, Probes};
