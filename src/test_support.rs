//! Helpers shared by unit tests.

/// Tests that need root, BPF or an external tool call this when it is
/// missing: a visible skip locally, a failure under CI (`CI=true`), where
/// everything must actually run.
pub fn skip_or_fail(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("required for CI but unavailable: {why}");
    }
    eprintln!("SKIP: {why}");
}
