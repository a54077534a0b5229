//! Signals about the node the agent runs on, beyond its sockets: cloud
//! instance metadata, delay accounting, OOM kills.

pub mod cloud;
pub mod delayacct;
pub mod oom;
pub mod taskstats;
