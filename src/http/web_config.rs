//! Prometheus exporter-toolkit `web-config.yml`: TLS (certificate, key,
//! client CAs, versions) and basic-auth users with bcrypt hashes. Loading
//! reads and checks the file and every file it names; serving with the
//! result is the server's job. Free of server internals, so that the config
//! check (and later a config module) can use it as it is.

mod tls;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A web config error: the file, and the key (with its line) where known.
#[derive(Debug)]
pub struct WebConfigError {
    file: PathBuf,
    key: Option<String>,
    line: Option<u64>,
    message: String,
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let Some(key) = &self.key {
            write!(f, "{key}")?;
            if let Some(line) = self.line {
                write!(f, " (line {line})")?;
            }
            write!(f, ": ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for WebConfigError {}

/// The file as written. Keys of the exporter toolkit that netagent does not
/// implement are parsed so they can be refused by name rather than as typos.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsSection>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    http_server_config: Option<IgnoredAny>,
    #[serde(default)]
    rate_limit: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    #[serde(default)]
    cert_file: Option<Spanned<String>>,
    #[serde(default)]
    key_file: Option<Spanned<String>>,
    #[serde(default)]
    client_ca_file: Option<Spanned<String>>,
    #[serde(default)]
    cert: Option<Spanned<String>>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    #[serde(default)]
    client_ca: Option<Spanned<String>>,
    #[serde(default)]
    client_auth_type: Option<Spanned<String>>,
    #[serde(default)]
    min_version: Option<Spanned<String>>,
    #[serde(default)]
    max_version: Option<Spanned<String>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    cipher_suites: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    curve_preferences: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<IgnoredAny>>,
}

/// A loaded, checked web config.
pub struct WebConfig {
    tls: Option<Arc<rustls::ServerConfig>>,
    /// `basic_auth_users`: user -> bcrypt hash; empty = no auth.
    users: HashMap<String, String>,
    /// The web config file and every file it names, for reload checks.
    files: Vec<PathBuf>,
    /// Things worth a warning at start.
    notes: Vec<String>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field(
                "users",
                &(!self.users.is_empty()).then_some(self.users.len()),
            )
            .field("files", &self.files)
            .finish()
    }
}

fn line<T>(s: &Spanned<T>) -> Option<u64> {
    let l = s.referenced.line();
    (l > 0).then_some(l)
}

/// Empty strings count as absent, as in the exporter toolkit.
fn given(s: &Option<Spanned<String>>) -> Option<&Spanned<String>> {
    s.as_ref().filter(|s| !s.value.is_empty())
}

impl WebConfig {
    /// Reads and checks `path`: its YAML, every file it names, the
    /// certificate against the key, and every bcrypt hash.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let err = |key: Option<String>, line: Option<u64>, message: String| WebConfigError {
            file: path.to_path_buf(),
            key,
            line,
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(None, None, format!("cannot read web config: {e}")))?;
        let parsed: Option<WebConfigFile> = serde_saphyr::from_str(&text)
            .map_err(|e| err(None, None, first_line(&e.to_string())))?;
        let parsed = parsed.unwrap_or_default();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut files = vec![path.to_path_buf()];
        let mut notes = Vec::new();

        for (key, value) in [
            ("http_server_config", &parsed.http_server_config),
            ("rate_limit", &parsed.rate_limit),
        ] {
            if value.is_some() {
                return Err(err(Some(key.into()), None, unsupported()));
            }
        }

        let tls = match &parsed.tls_server_config {
            Some(t) => tls::server_config(t, &dir, &mut files, &mut notes)
                .map_err(|(key, line, message)| err(Some(key), line, message))?,
            None => None,
        };

        let mut hashes = HashMap::new();
        for (user, hash) in parsed.basic_auth_users.iter().flatten() {
            let key = Some(format!("basic_auth_users.{user}"));
            if user.contains(':') {
                return Err(err(key, line(hash), "user names cannot contain ':'".into()));
            }
            match hash.value.parse::<bcrypt::HashParts>() {
                Ok(parts) if (4..=31).contains(&parts.get_cost()) => {}
                Ok(parts) => {
                    return Err(err(
                        key,
                        line(hash),
                        format!("bcrypt cost {} is outside 4..=31", parts.get_cost()),
                    ))
                }
                Err(e) => {
                    return Err(err(
                        key,
                        line(hash),
                        format!(
                            "not a bcrypt hash ({e}); make one with \
                             `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                        ),
                    ))
                }
            }
            hashes.insert(user.clone(), hash.value.clone());
        }
        if !hashes.is_empty() && tls.is_none() {
            notes.push("basic auth without TLS: passwords cross the network readable".into());
        }
        Ok(WebConfig {
            tls,
            users: hashes,
            files,
            notes,
        })
    }

    /// True when the web config turns TLS on.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Number of basic-auth users (0 = no auth).
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// The rustls config when TLS is on.
    pub fn tls_server_config(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.tls.as_ref()
    }

    /// `basic_auth_users`: user -> bcrypt hash (each checked); empty = no auth.
    pub fn basic_auth_users(&self) -> &HashMap<String, String> {
        &self.users
    }

    /// The web config file and every file it names: a change to any of them
    /// is a new version.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Things worth a warning at start.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

fn unsupported() -> String {
    "supported by the Prometheus exporter toolkit but not by netagent; remove it".into()
}

/// serde-saphyr's message without its source snippet ("line L column C: …").
fn first_line(s: &str) -> String {
    let first = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(s);
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    /// A scratch directory of this file's tests (`tag` unique among them).
    fn scratch(tag: &str) -> TempDir {
        TempDir::new(&format!("webcfg-{tag}"))
    }

    /// A self-signed certificate and key in `dir` (cert.pem, key.pem).
    fn cert(dir: &TempDir) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        dir.write("cert.pem", &c.cert.pem());
        dir.write("key.pem", &c.signing_key.serialize_pem());
    }

    fn load(dir: &TempDir, yaml: &str) -> Result<WebConfig, String> {
        let p = dir.write("web.yml", yaml);
        WebConfig::load(&p).map_err(|e| e.to_string())
    }

    /// A web config with TLS from cert.pem and key.pem, plus `extra`.
    fn tls(extra: &str) -> String {
        format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n{extra}")
    }

    const HASH: &str = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let d = scratch("empty");
        let w = load(&d, "# nothing\n").unwrap();
        assert!(!w.tls());
        assert_eq!(w.users(), 0);
        let w = load(&d, "tls_server_config: {}\nbasic_auth_users: {}\n").unwrap();
        assert!(!w.tls());
        assert_eq!(w.users(), 0);
    }

    #[test]
    fn tls_paths_are_relative_to_the_web_config() {
        let d = scratch("rel");
        cert(&d);
        let w = load(&d, &tls(&format!("basic_auth_users:\n  alice: {HASH}\n"))).unwrap();
        assert!(w.tls());
        assert_eq!(w.users(), 1);
        assert_eq!(w.files.len(), 3, "{:?}", w.files);
    }

    #[test]
    fn basic_auth_without_tls_is_allowed() {
        let d = scratch("authonly");
        let w = load(&d, &format!("basic_auth_users:\n  bob: \"{HASH}\"\n")).unwrap();
        assert!(!w.tls());
        assert_eq!(w.users(), 1);
        assert_eq!(w.notes.len(), 1, "{:?}", w.notes);
    }

    #[test]
    fn unknown_keys_are_named() {
        let d = scratch("unknown");
        let e = load(&d, "tls_server_config:\n  cert_fille: x\n").unwrap_err();
        assert!(e.contains("cert_fille"), "{e}");
        assert!(e.contains("web.yml"), "{e}");
        let e = load(&d, "basic_auth_user:\n  a: b\n").unwrap_err();
        assert!(e.contains("basic_auth_user"), "{e}");
    }

    #[test]
    fn toolkit_keys_netagent_lacks_are_refused_by_name() {
        let d = scratch("unsupported");
        let e = load(&d, "rate_limit:\n  interval: 1s\n  burst: 2\n").unwrap_err();
        assert!(
            e.contains("rate_limit: supported") && e.contains("not by netagent"),
            "{e}"
        );
        cert(&d);
        let e = load(&d, &tls("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n")).unwrap_err();
        assert!(
            e.contains("tls_server_config.cipher_suites: supported"),
            "{e}"
        );
        let e = load(&d, &tls("  client_auth_type: RequireAnyClientCert\n")).unwrap_err();
        assert!(
            e.contains("tls_server_config.client_auth_type (line 4)"),
            "{e}"
        );
    }

    #[test]
    fn tls_errors_name_the_key_and_file() {
        let d = scratch("tlserr");
        cert(&d);
        let e = load(
            &d,
            "tls_server_config:\n  cert_file: nope.pem\n  key_file: key.pem\n",
        )
        .unwrap_err();
        assert!(
            e.contains("tls_server_config.cert_file (line 2)") && e.contains("nope.pem"),
            "{e}"
        );
        let e = load(&d, "tls_server_config:\n  cert_file: cert.pem\n").unwrap_err();
        assert!(e.contains("tls_server_config.key_file"), "{e}");
        let e = load(
            &d,
            "tls_server_config:\n  cert_file: key.pem\n  key_file: key.pem\n",
        )
        .unwrap_err();
        assert!(
            e.contains("tls_server_config.cert_file") && e.contains("no PEM certificate"),
            "{e}"
        );
        // A key that is not the certificate's.
        let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        d.write("other.pem", &other.signing_key.serialize_pem());
        let e = load(
            &d,
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: other.pem\n",
        )
        .unwrap_err();
        assert!(e.contains("tls_server_config.key_file (line 3)"), "{e}");
        let e = load(&d, &tls("  client_ca_file: cert.pem\n")).unwrap_err();
        assert!(e.contains("client_auth_type is NoClientCert"), "{e}");
        let e = load(&d, &tls("  client_auth_type: RequireAndVerifyClientCert\n")).unwrap_err();
        assert!(e.contains("needs client_ca_file"), "{e}");
        let e = load(&d, &tls("  min_version: TLS14\n")).unwrap_err();
        assert!(e.contains("tls_server_config.min_version (line 4)"), "{e}");
        let e = load(&d, &tls("  min_version: TLS13\n  max_version: TLS12\n")).unwrap_err();
        assert!(e.contains("max_version"), "{e}");
    }

    #[test]
    fn client_certificates_and_versions() {
        let d = scratch("mtls");
        cert(&d);
        let w = load(
            &d,
            &tls(concat!(
                "  client_ca_file: cert.pem\n",
                "  client_auth_type: RequireAndVerifyClientCert\n",
                "  min_version: TLS13\n",
            )),
        )
        .unwrap();
        assert!(w.tls());
        let w = load(&d, &tls("  min_version: TLS10\n")).unwrap();
        assert_eq!(w.notes.len(), 1);
    }

    #[test]
    fn bad_hashes_and_user_names_are_refused() {
        let d = scratch("users");
        let e = load(&d, "basic_auth_users:\n  alice: secret\n").unwrap_err();
        assert!(
            e.contains("basic_auth_users.alice (line 2)") && e.contains("bcrypt"),
            "{e}"
        );
        let e = load(&d, &format!("basic_auth_users:\n  \"a:b\": \"{HASH}\"\n")).unwrap_err();
        assert!(e.contains("':'"), "{e}");
    }
}
