//! Node signals: what the kernel knows about the processes on this host
//! beyond their network traffic.

pub mod delayacct;
pub mod oom;
pub mod taskstats;
