//! Signals about the node the agent runs on, beyond its sockets.

pub mod cloud;
