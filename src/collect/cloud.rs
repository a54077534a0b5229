//! Cloud instance metadata: which cloud and which instance the agent runs
//! on, read from the provider's link-local metadata service and exported as
//! `netagent_cloud_info{provider,account_id,instance_id,…} 1`.
//!
//! Which provider to ask is decided first, without sending anything: by
//! `cloud.provider` when set, otherwise from the machine's DMI identity
//! ([`dmi`]). A machine whose firmware names no known cloud asks no one.
//! The chosen provider (AWS with IMDSv2, GCP, Azure or Hetzner) is asked at
//! `cloud.base_url` (all four serve at 169.254.169.254; GCP's documented
//! `metadata.google.internal` resolves there too). One round is bounded by
//! `cloud.timeout_seconds` and runs in a background task, once at start and
//! then every `cloud.refresh_interval_seconds`: start-up and scrapes never
//! wait for it. When nothing answers there is no `netagent_cloud_info`
//! series, one info line in the log, and the next round tries again.
//!
//! Families (only with `cloud.enabled`):
//! - `netagent_cloud_detection_info{provider, source}` (always 1): the
//!   provider chosen and what chose it (`dmi` or `config`); `provider="none"`
//!   when nothing is asked.
//! - `netagent_cloud_info` (gauge, always 1): the detected instance; label
//!   values the provider does not have are empty.
//! - `netagent_cloud_probes_total{result="detected"|"not_detected"}`:
//!   detection rounds.
//! - `netagent_cloud_probe_duration_seconds` (gauge): the last round's time.

mod aws;
mod azure;
pub mod dmi;
mod gcp;
mod hetzner;
mod http;

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::cloud::base_url;
pub use crate::config::cloud::{Choice, CloudConfig, Provider, DEFAULT_BASE_URL};
use crate::metrics::catalog;
use crate::metrics::{Family, Labels, Value};
use http::Client;
pub use http::ProbeError;

/// `lifecycle` values shared by the providers (AWS may also report its
/// own, e.g. `scheduled` or `capacity-block`, which are passed through).
pub const ON_DEMAND: &str = "on-demand";
pub const SPOT: &str = "spot";
pub const PREEMPTIBLE: &str = "preemptible";

/// What the metadata service said about this instance; empty strings for
/// what the provider does not tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub provider: Provider,
    pub account_id: String,
    pub instance_id: String,
    pub instance_type: String,
    pub region: String,
    pub availability_zone: String,
    pub availability_zone_id: String,
    pub lifecycle: String,
    pub private_ip: String,
    pub public_ip: String,
}

impl Instance {
    pub fn new(provider: Provider) -> Self {
        Self {
            provider,
            account_id: String::new(),
            instance_id: String::new(),
            instance_type: String::new(),
            region: String::new(),
            availability_zone: String::new(),
            availability_zone_id: String::new(),
            lifecycle: String::new(),
            private_ip: String::new(),
            public_ip: String::new(),
        }
    }

    /// Labels of `netagent_cloud_info`, in render order.
    pub fn labels(&self) -> Labels {
        vec![
            ("provider", self.provider.name().to_string()),
            ("account_id", label_value(&self.account_id)),
            ("instance_id", label_value(&self.instance_id)),
            ("instance_type", label_value(&self.instance_type)),
            ("region", label_value(&self.region)),
            ("availability_zone", label_value(&self.availability_zone)),
            (
                "availability_zone_id",
                label_value(&self.availability_zone_id),
            ),
            ("lifecycle", label_value(&self.lifecycle)),
            ("private_ip", ip_label(&self.private_ip)),
            ("public_ip", ip_label(&self.public_ip)),
        ]
    }
}

/// Longest label value taken from a metadata answer (bytes); real values
/// are short, this only bounds a misbehaving service.
const MAX_LABEL_BYTES: usize = 256;

/// Trimmed, without control characters, at most [`MAX_LABEL_BYTES`].
fn label_value(s: &str) -> String {
    let mut out = String::new();
    for c in s.trim().chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_LABEL_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// An IP address in canonical form, or empty for anything else.
fn ip_label(s: &str) -> String {
    s.trim()
        .parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

/// One detection round: asks `provider`'s metadata service, within `budget`.
async fn detect(
    client: &Client,
    provider: Provider,
    budget: Duration,
) -> Result<Instance, ProbeError> {
    match provider {
        Provider::Aws => bounded(budget, aws::probe(client)).await,
        Provider::Gcp => bounded(budget, gcp::probe(client)).await,
        Provider::Azure => bounded(budget, azure::probe(client)).await,
        Provider::Hetzner => bounded(budget, hetzner::probe(client)).await,
    }
}

/// `probe`, or a timeout error once `budget` has passed.
async fn bounded(
    budget: Duration,
    probe: impl std::future::Future<Output = Result<Instance, ProbeError>>,
) -> Result<Instance, ProbeError> {
    tokio::time::timeout(budget, probe)
        .await
        .unwrap_or(Err(ProbeError::Timeout(budget)))
}

/// What detection has found so far, shared with the scrape path.
pub struct CloudState {
    enabled: bool,
    inner: Mutex<Rounds>,
}

#[derive(Default)]
struct Rounds {
    /// The provider asked (None: nobody) and what decided it.
    decision: Option<(Option<Provider>, &'static str)>,
    instance: Option<Instance>,
    detected: u64,
    not_detected: u64,
    last_duration: Option<Duration>,
}

impl CloudState {
    /// `enabled: false` exports nothing at all.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            inner: Mutex::new(Rounds::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Rounds> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The detected provider's name, for `/health`.
    pub fn provider(&self) -> Option<&'static str> {
        self.lock().instance.as_ref().map(|i| i.provider.name())
    }

    /// Records which provider is asked (None: nobody) and whether `dmi` or
    /// `config` decided it.
    fn decide(&self, provider: Option<Provider>, source: &'static str) {
        self.lock().decision = Some((provider, source));
    }

    /// Records a round; returns whether the exported instance changed.
    fn record(&self, found: Option<Instance>, took: Duration) -> bool {
        let mut r = self.lock();
        r.last_duration = Some(took);
        match found {
            Some(instance) => {
                r.detected += 1;
                let changed = r.instance.as_ref() != Some(&instance);
                r.instance = Some(instance);
                changed
            }
            None => {
                // A service that answered before is kept: the instance's
                // identity does not change while it runs, and a busy
                // metadata service should not make the series flap.
                r.not_detected += 1;
                false
            }
        }
    }

    /// `netagent_cloud_*` families (none when disabled).
    pub fn families(&self) -> Vec<Family> {
        if !self.enabled {
            return Vec::new();
        }
        let r = self.lock();
        let mut decision = Family::new(&catalog::CLOUD_DETECTION_INFO);
        if let Some((provider, source)) = r.decision {
            decision.push(
                vec![
                    (
                        "provider",
                        provider.map_or("none", Provider::name).to_string(),
                    ),
                    ("source", source.to_string()),
                ],
                Value::Gauge(1.0),
            );
        }
        let mut info = Family::new(&catalog::CLOUD_INFO);
        if let Some(instance) = &r.instance {
            info.push(instance.labels(), Value::Gauge(1.0));
        }
        let mut rounds = Family::new(&catalog::CLOUD_PROBES);
        for (result, n) in [("detected", r.detected), ("not_detected", r.not_detected)] {
            rounds.push(
                vec![("result", result.to_string())],
                Value::Counter(n as f64),
            );
        }
        let mut duration = Family::new(&catalog::CLOUD_PROBE_DURATION_SECONDS);
        if let Some(d) = r.last_duration {
            duration.push(Vec::new(), Value::Gauge(d.as_secs_f64()));
        }
        vec![decision, info, rounds, duration]
    }
}

/// The background detection task; stopped when dropped.
pub struct Detector(tokio::task::JoinHandle<()>);

impl Drop for Detector {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The provider to ask, and what decided it: `cloud.provider`, or the
/// DMI identity under `cloud.dmi_root` when it is `auto`. Reads a few
/// small files; sends nothing.
pub fn choose(cfg: &CloudConfig) -> (Option<Provider>, &'static str) {
    match cfg.choice() {
        Choice::Nobody => {
            tracing::info!("cloud.provider is none: no cloud metadata service is asked");
            (None, "config")
        }
        Choice::Only(p) => (Some(p), "config"),
        Choice::Auto => {
            let identity = dmi::Identity::read(Path::new(&cfg.dmi_root.value));
            let provider = identity.provider();
            match provider {
                Some(p) => tracing::debug!(
                    provider = p.name(),
                    identity = %identity.summary(),
                    "DMI identity names a cloud"
                ),
                None => tracing::info!(
                    identity = %identity.summary(),
                    dmi_root = %cfg.dmi_root.value,
                    "the machine's DMI identity names no known cloud: no metadata service is asked (cloud.provider overrides)"
                ),
            }
            (provider, "dmi")
        }
    }
}

/// Starts detection in the background (None when disabled or when no
/// provider is to be asked). Must be called inside a tokio runtime.
pub fn spawn(cfg: &CloudConfig, state: Arc<CloudState>) -> Option<Detector> {
    if !cfg.enabled {
        return None;
    }
    let (provider, source) = choose(cfg);
    state.decide(provider, source);
    let provider = provider?;
    // Validated at load; a default config never fails here.
    let base = base_url(&cfg.base_url.value).unwrap_or_else(|_| DEFAULT_BASE_URL.to_string());
    let (budget, every) = (cfg.timeout(), cfg.refresh_interval());
    Some(Detector(tokio::spawn(async move {
        let client = match Client::new(&base, budget) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the cloud metadata HTTP client; cloud detection is off");
                return;
            }
        };
        detect_every(&client, provider, &base, budget, every, &state).await;
    })))
}

/// Detection rounds forever, `every` apart.
async fn detect_every(
    client: &Client,
    provider: Provider,
    base: &str,
    budget: Duration,
    every: Duration,
    state: &CloudState,
) {
    // Log "nothing answered" once per streak, not every round.
    let mut quiet = false;
    loop {
        let started = Instant::now();
        let result = detect(client, provider, budget).await;
        let took = started.elapsed();
        let took_ms = (took.as_secs_f64() * 1e6).round() / 1e3;
        match result {
            Ok(instance) => {
                quiet = false;
                let summary = format!(
                    "{} {} {}",
                    instance.provider.name(),
                    instance.instance_id,
                    instance.region
                );
                if state.record(Some(instance), took) {
                    tracing::info!(instance = %summary, took_ms, "cloud instance detected");
                }
            }
            Err(e) => {
                tracing::debug!(provider = provider.name(), error = %e, "cloud metadata probe failed");
                let had = state.provider().is_some();
                state.record(None, took);
                if !quiet {
                    quiet = true;
                    if had {
                        tracing::info!(
                            provider = provider.name(),
                            base_url = base,
                            took_ms,
                            "cloud metadata service did not answer; keeping the last answer"
                        );
                    } else {
                        tracing::info!(
                            provider = provider.name(),
                            base_url = base,
                            took_ms,
                            retry_seconds = every.as_secs_f64(),
                            "the cloud metadata service did not answer; no netagent_cloud_info until it does"
                        );
                    }
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

impl super::Collector for CloudState {
    fn name(&self) -> &'static str {
        "cloud"
    }

    fn collect(&self, scrape: &mut super::Scrape<'_, '_>) -> anyhow::Result<()> {
        scrape.families.extend(self.families());
        Ok(())
    }

    /// One instance at most.
    fn capped(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_bounded_and_ips_canonical() {
        assert_eq!(label_value("  i-123\n"), "i-123");
        assert_eq!(label_value("a\u{7}b"), "ab");
        assert_eq!(label_value(&"é".repeat(200)).len(), 256);
        assert_eq!(ip_label(" 10.0.0.1\n"), "10.0.0.1");
        assert_eq!(ip_label("2001:DB8::1"), "2001:db8::1");
        assert_eq!(ip_label("<html>"), "");
        assert_eq!(ip_label(""), "");
    }

    #[test]
    fn auto_without_dmi_asks_nobody_and_an_override_ignores_dmi() {
        // auto on a machine without DMI: nobody; an override ignores DMI.
        let mut cfg = CloudConfig {
            dmi_root: crate::config::unspanned("/nonexistent".to_string()),
            ..CloudConfig::default()
        };
        assert_eq!(choose(&cfg), (None, "dmi"));
        cfg.provider = crate::config::unspanned("gcp".to_string());
        assert_eq!(choose(&cfg), (Some(Provider::Gcp), "config"));
    }

    #[test]
    fn families_follow_the_rounds() {
        let state = CloudState::new(true);
        let f = state.families();
        assert_eq!(f.len(), 4);
        assert!(f[0].series.is_empty(), "nothing decided yet");
        let f = &f[1..];
        assert!(f[0].series.is_empty(), "no instance before detection");
        assert!(f[2].series.is_empty(), "no duration before the first round");

        assert!(!state.record(None, Duration::from_millis(3)));
        let mut i = Instance::new(Provider::Hetzner);
        i.instance_id = "42".into();
        i.public_ip = "192.0.2.10".into();
        assert!(state.record(Some(i.clone()), Duration::from_millis(5)));
        assert!(!state.record(Some(i.clone()), Duration::from_millis(5)));
        // A failed refresh keeps the instance.
        assert!(!state.record(None, Duration::from_millis(7)));
        assert_eq!(state.provider(), Some("hetzner"));

        state.decide(Some(Provider::Hetzner), "dmi");
        let all = state.families();
        assert_eq!(
            all[0].series[0].labels,
            vec![
                ("provider", "hetzner".to_string()),
                ("source", "dmi".to_string())
            ]
        );
        let f = &all[1..];
        assert_eq!(f[0].series.len(), 1);
        let labels = &f[0].series[0].labels;
        assert_eq!(labels.len(), 10);
        assert_eq!(labels[0], ("provider", "hetzner".to_string()));
        assert_eq!(labels[2], ("instance_id", "42".to_string()));
        assert_eq!(labels[9], ("public_ip", "192.0.2.10".to_string()));
        assert_eq!(f[1].series[0].value, Value::Counter(2.0));
        assert_eq!(f[1].series[1].value, Value::Counter(2.0));
        assert_eq!(f[2].series[0].value, Value::Gauge(0.007));

        assert!(CloudState::new(false).families().is_empty());
    }

    /// A closed port fails at once; a service that accepts but never
    /// answers costs exactly the budget, never more.
    #[tokio::test]
    async fn rounds_are_bounded_by_the_budget() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let budget = Duration::from_millis(300);
        let client = Client::new(&format!("http://127.0.0.1:{port}"), budget).unwrap();
        for p in [
            Provider::Aws,
            Provider::Gcp,
            Provider::Azure,
            Provider::Hetzner,
        ] {
            let t = Instant::now();
            assert!(detect(&client, p, budget).await.is_err());
            assert!(t.elapsed() < budget, "{p:?}: {:?}", t.elapsed());
        }

        // The kernel completes the handshake; nobody ever reads the request.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let client = Client::new(&format!("http://127.0.0.1:{port}"), budget).unwrap();
        for p in [
            Provider::Aws,
            Provider::Gcp,
            Provider::Azure,
            Provider::Hetzner,
        ] {
            let t = Instant::now();
            assert!(detect(&client, p, budget).await.is_err());
            let took = t.elapsed();
            assert!(
                took >= budget && took < budget + Duration::from_millis(500),
                "{p:?}: {took:?}"
            );
        }
    }
}
