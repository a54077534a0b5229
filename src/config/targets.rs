//! The `targets:` list: which processes are tracked and their labels.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{line, KeyError, Warning};

/// Bytes of a task's comm in the kernel, NUL included (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;

/// One tracked process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Value of the `process` label.
    pub name: Spanned<String>,
    /// Exact `/proc/<pid>/comm` to match (the kernel keeps 15 bytes).
    pub match_comm: Spanned<String>,
}

/// The part of a comm the kernel keeps (15 bytes, on a char boundary).
pub fn kernel_comm(comm: &str) -> &str {
    let mut end = comm.len().min(COMM_LEN - 1);
    while !comm.is_char_boundary(end) {
        end -= 1;
    }
    &comm[..end]
}

/// Checks every target: names and comms non-empty, no comm matched twice
/// (after the kernel's truncation); long comms only warn.
pub fn validate(targets: &[Target]) -> Result<Vec<Warning>, KeyError> {
    let mut warnings = Vec::new();
    let mut seen: Vec<(&str, u64)> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        if t.name.value.is_empty() {
            return Err(KeyError {
                key: format!("targets[{i}].name"),
                line: line(&t.name),
                reason: "must not be empty".into(),
            });
        }
        let comm = t.match_comm.value.as_str();
        let key = format!("targets[{i}].match_comm");
        if comm.is_empty() || comm.contains('\0') {
            return Err(KeyError {
                key,
                line: line(&t.match_comm),
                reason: "must be a non-empty process name".into(),
            });
        }
        if comm.len() >= COMM_LEN {
            warnings.push(Warning(format!(
                "{key}{}: {comm:?} is longer than the kernel's 15-byte comm; matching {:?}",
                super::LineRef(line(&t.match_comm)),
                kernel_comm(comm)
            )));
        }
        let kc = kernel_comm(comm);
        if let Some((_, first)) = seen.iter().find(|(c, _)| *c == kc) {
            return Err(KeyError {
                key,
                line: line(&t.match_comm),
                reason: format!("{kc:?} is already matched by the target on line {first}"),
            });
        }
        seen.push((kc, t.match_comm.referenced.line()));
    }
    Ok(warnings)
}
