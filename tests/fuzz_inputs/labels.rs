//! Label values as they can reach the exporters, and the series labels
//! built from them: shared by the exposition and DogStatsD properties.

use proptest::prelude::*;

/// Label values as they can reach the encoder: any Unicode, the
/// characters the formats escape, and invalid UTF-8 made lossy (process
/// names are bytes in the kernel).
pub(super) fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        3 => "[\\\\\"\n\r\t ={},#a-z\u{0}\u{7f}\u{85}\u{2028}é🦀]{0,12}",
        2 => proptest::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => Just(String::new()),
    ]
}

pub(super) fn labels() -> impl Strategy<Value = [String; 2]> {
    (label_value(), label_value()).prop_map(|(a, b)| [a, b])
}

pub(super) const LABEL_NAMES: [&str; 2] = ["process", "dst_ip"];

pub(super) fn series_labels(id: &str, values: &[String; 2]) -> Vec<(&'static str, String)> {
    vec![
        ("id", id.to_string()),
        (LABEL_NAMES[0], values[0].clone()),
        (LABEL_NAMES[1], values[1].clone()),
    ]
}

/// Equal as sample values: NaN equals NaN, and -0 equals 0 (the text
/// forms are the same).
pub(super) fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}
