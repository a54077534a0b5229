//! The web config as the server uses it: the TLS acceptor and users of its
//! current version, re-read when the file or a file it names changes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::auth::Users;
use super::lock;
use super::web_config::WebConfig;

/// What a connection is served with: TLS and users of the current web config.
#[derive(Clone, Default)]
pub(super) struct Active {
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(super) users: Option<Arc<Users>>,
}

impl From<&WebConfig> for Active {
    fn from(w: &WebConfig) -> Self {
        Self {
            tls: w
                .tls_server_config()
                .cloned()
                .map(tokio_rustls::TlsAcceptor::from),
            // Built once per loaded version: its cache of verified
            // credentials starts empty after a reload.
            users: (!w.basic_auth_users().is_empty())
                .then(|| Arc::new(Users::new(w.basic_auth_users().clone()))),
        }
    }
}

/// Identity of a file's content as far as `stat` tells.
type Stamp = Option<(u64, u64, i64, i64, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
        })
        .collect()
}

/// The web config, re-read when it or a file it names changes: checked
/// (with `stat`) at each new connection for TLS and at each request for
/// users, as the exporter toolkit reads it per request. A broken new
/// version is logged and the previous one kept; TLS cannot be switched on
/// or off without a restart.
pub(super) struct Reloader {
    path: PathBuf,
    state: Mutex<ReloadState>,
}

struct ReloadState {
    files: Vec<PathBuf>,
    stamps: Vec<Stamp>,
    active: Active,
    /// Stamps of a version that failed, so it is reported once.
    failed: Option<Vec<Stamp>>,
}

impl Reloader {
    pub(super) fn new(path: PathBuf, web: &WebConfig) -> Self {
        Self {
            path,
            state: Mutex::new(ReloadState {
                files: web.files().to_vec(),
                stamps: stamps(web.files()),
                active: Active::from(web),
                failed: None,
            }),
        }
    }

    pub(super) fn current(&self) -> Active {
        let mut st = lock(&self.state);
        let now = stamps(&st.files);
        if now != st.stamps && st.failed.as_ref() != Some(&now) {
            match WebConfig::load(&self.path) {
                Ok(w) if w.tls() == st.active.tls.is_some() => {
                    tracing::info!(
                        file = %self.path.display(),
                        tls = w.tls(),
                        users = w.users(),
                        "web config reloaded"
                    );
                    st.stamps = stamps(w.files());
                    st.files = w.files().to_vec();
                    st.active = Active::from(&w);
                    st.failed = None;
                }
                Ok(_) => {
                    tracing::error!(
                        file = %self.path.display(),
                        "web config: TLS cannot be turned on or off while running; restart \
                         the agent. Keeping the previous web config"
                    );
                    st.failed = Some(now);
                }
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        "web config reload failed; keeping the previous web config"
                    );
                    st.failed = Some(now);
                }
            }
        }
        st.active.clone()
    }
}
