//! The `cloud:` config section (README, "Cloud instance metadata").

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{line, range, unspanned, KeyError};

/// `cloud:` config section.
///
/// ```yaml
/// cloud:
///   enabled: true
///   provider: auto
///   dmi_root: /sys/class/dmi/id
///   base_url: "http://169.254.169.254"
///   timeout_seconds: 1
///   refresh_interval_seconds: 600
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudConfig {
    /// Probe the metadata services at all (default true).
    pub enabled: bool,
    /// `auto` (default): ask the provider the machine's DMI identity names,
    /// nobody when it names none; `aws`, `gcp`, `azure` or `hetzner`: ask
    /// that one whatever DMI says; `none`: ask nobody.
    pub provider: Spanned<String>,
    /// Where the DMI identity is read (default `/sys/class/dmi/id`; tests
    /// point it at a directory of their own).
    pub dmi_root: Spanned<String>,
    /// Where every provider's metadata service is asked (default
    /// `http://169.254.169.254`); provider paths are appended to it.
    pub base_url: Spanned<String>,
    /// Budget of one detection round, all providers concurrently and every
    /// request included (default 1 s).
    pub timeout_seconds: Spanned<f64>,
    /// Seconds between rounds (default 600), whether the last one found
    /// something or not.
    pub refresh_interval_seconds: Spanned<f64>,
}

/// The link-local address every supported provider serves metadata on.
pub const DEFAULT_BASE_URL: &str = "http://169.254.169.254";

/// Where the kernel publishes the firmware's DMI identity.
pub const DEFAULT_DMI_ROOT: &str = "/sys/class/dmi/id";

/// What `cloud.provider` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Decide from the DMI identity.
    Auto,
    /// Ask this provider.
    Only(Provider),
    /// Ask nobody.
    Nobody,
}

impl Choice {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Choice::Auto,
            "none" => Choice::Nobody,
            "aws" => Choice::Only(Provider::Aws),
            "gcp" => Choice::Only(Provider::Gcp),
            "azure" => Choice::Only(Provider::Azure),
            "hetzner" => Choice::Only(Provider::Hetzner),
            other => {
                return Err(format!(
                    "{other:?}: use auto, aws, gcp, azure, hetzner or none"
                ))
            }
        })
    }
}

impl Default for CloudConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            provider: unspanned("auto".to_string()),
            dmi_root: unspanned(DEFAULT_DMI_ROOT.to_string()),
            base_url: unspanned(DEFAULT_BASE_URL.to_string()),
            timeout_seconds: unspanned(1.0),
            refresh_interval_seconds: unspanned(600.0),
        }
    }
}

impl CloudConfig {
    /// Checks every key, whether or not detection is enabled (a typo should
    /// not wait until someone turns it on).
    pub fn validate(&self) -> Result<(), KeyError> {
        if let Err(reason) = Choice::parse(&self.provider.value) {
            return Err(KeyError {
                key: "cloud.provider".into(),
                line: line(&self.provider),
                reason,
            });
        }
        if self.dmi_root.value.is_empty() {
            return Err(KeyError {
                key: "cloud.dmi_root".into(),
                line: line(&self.dmi_root),
                reason: "must name a directory".into(),
            });
        }
        if let Err(reason) = base_url(&self.base_url.value) {
            return Err(KeyError {
                key: "cloud.base_url".into(),
                line: line(&self.base_url),
                reason,
            });
        }
        range("cloud.timeout_seconds", &self.timeout_seconds, 0.01, 60.0)?;
        range(
            "cloud.refresh_interval_seconds",
            &self.refresh_interval_seconds,
            1.0,
            86400.0,
        )
    }

    /// The validated `provider` (auto for a value that did not validate).
    pub fn choice(&self) -> Choice {
        Choice::parse(&self.provider.value).unwrap_or(Choice::Auto)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_seconds.value)
    }

    pub fn refresh_interval(&self) -> Duration {
        Duration::from_secs_f64(self.refresh_interval_seconds.value)
    }
}

/// `scheme://host[:port][/prefix]` without the trailing slash, or why not.
pub fn base_url(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{s:?}: scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{s:?}: only scheme, host, port and a path prefix are allowed"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A cloud provider with a metadata service we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
    Hetzner,
}

impl Provider {
    /// Value of the `provider` label.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
            Provider::Hetzner => "hetzner",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_forms() {
        assert_eq!(
            base_url("http://169.254.169.254").unwrap(),
            "http://169.254.169.254"
        );
        assert_eq!(
            base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url("http://metadata.google.internal/prefix/").unwrap(),
            "http://metadata.google.internal/prefix"
        );
        for bad in [
            "169.254.169.254",
            "ftp://x",
            "http://",
            "http://x/?a=1",
            "http://u@x",
        ] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn provider_choice_is_validated() {
        let mut cfg = CloudConfig::default();
        assert_eq!(cfg.choice(), Choice::Auto);
        for (v, want) in [
            ("none", Choice::Nobody),
            ("aws", Choice::Only(Provider::Aws)),
            ("hetzner", Choice::Only(Provider::Hetzner)),
        ] {
            cfg.provider = unspanned(v.to_string());
            assert!(cfg.validate().is_ok());
            assert_eq!(cfg.choice(), want);
        }
        cfg.provider = unspanned("ec2".to_string());
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.key, "cloud.provider");
        assert!(err.reason.contains("auto, aws"), "{}", err.reason);
    }
}
