//! The agent's own metrics: build info, and every source's events lost in
//! one family.

use crate::metrics::{catalog, Family, Value};

/// `netagent_build_info` and `netagent_events_lost_total`, whose reasons
/// the sources reported (kernel maps full, interface map full, OOM kills
/// not counted, …).
pub fn agent_families(
    lost: &[(&'static str, u64)],
    expired: &[(&'static str, u64)],
) -> Vec<Family> {
    let mut info = Family::new(&catalog::BUILD_INFO);
    info.push(
        vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "rustc",
                option_env!("NETAGENT_RUSTC")
                    .unwrap_or("unknown")
                    .to_string(),
            ),
        ],
        Value::Gauge(1.0),
    );
    let mut lost_f = Family::new(&catalog::EVENTS_LOST);
    for (reason, n) in lost {
        lost_f.push(
            vec![("reason", reason.to_string())],
            Value::Counter(*n as f64),
        );
    }
    let mut expired_f = Family::new(&catalog::SERIES_EXPIRED);
    for (family, n) in expired {
        expired_f.push(
            vec![("family", family.to_string())],
            Value::Counter(*n as f64),
        );
    }
    vec![info, lost_f, expired_f]
}
