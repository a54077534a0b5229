//! Why the kernel side could not start, shared by every loader.

use aya::programs::ProgramError;

use super::privileges::MissingCapability;

/// Why the kernel side could not start. Each message names what is missing.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("missing capability {}: needed for {} (run as root, or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)", .0.name, .0.needed_for)]
    MissingCapability(MissingCapability),
    #[error("{0}")]
    MissingBtf(String),
    #[error("missing kernel hook: {hook} (needed for {needed_for})")]
    MissingHook {
        hook: String,
        needed_for: &'static str,
    },
    #[error("BPF program {program} was rejected: {detail}")]
    Load {
        program: &'static str,
        detail: String,
    },
    #[error("cannot attach {program} to {hook}: {source}")]
    Attach {
        program: &'static str,
        hook: String,
        #[source]
        source: ProgramError,
    },
    #[error("BPF object is malformed: {0}")]
    Object(String),
}

impl KernelError {
    /// The error and every cause, on one line (aya nests the errno).
    pub(crate) fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let text = c.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cause = c.source();
        }
        out
    }
}
