//! Node signals: what the host itself says, next to what its sockets do.

pub mod logs;
