//! Kernel side: the BPF object, its Rust mirror types, and loading/attaching.

pub mod abi;
mod attach;
pub mod batch;
pub mod btf_raw;
pub mod cgroup;
mod choice;
pub mod conns;
pub mod dns;
pub mod drops;
pub mod error;
pub mod hooks;
pub mod iface;
pub mod links;
pub mod loader;
pub mod oom;
pub mod privileges;
pub mod report;
pub mod seed;
pub mod series;
pub mod spans;
mod trials;
pub mod verify;

pub use error::KernelError;
pub use loader::{KernelMaps, LoadOptions, Probes};
pub use trials::probe_kernel;
