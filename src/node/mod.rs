//! Signals about the node the agent runs on, beyond its sockets: cloud
//! instance metadata, delay accounting, OOM kills, log patterns.

pub mod cloud;
pub mod delayacct;
pub mod logs;
pub mod oom;
pub mod taskstats;
