//! What every property shares: the number of cases (`PROPTEST_CASES`),
//! the proptest settings (nothing persisted next to the sources) and the
//! seed corpus in tests/corpus/<kind>/.

use proptest::test_runner::Config as ProptestConfig;
use std::path::{Path, PathBuf};

/// Cases per property: `PROPTEST_CASES` when set, else `default`.
pub(super) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(super) fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        // Failures are printed with the shrunk input; nothing is written
        // next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

pub(super) fn corpus_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind)
}

/// (file name, contents) of every corpus file with this extension, sorted.
pub(super) fn corpus(kind: &str, ext: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir(kind))
        .unwrap_or_else(|e| panic!("tests/corpus/{kind}: {e}"))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read corpus file"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{ext} seeds in tests/corpus/{kind}");
    files
}
