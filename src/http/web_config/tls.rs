//! `tls_server_config` to a rustls server config: the certificate chain
//! and key (files relative to the web config, or inline PEM), client
//! certificate verification as Go's `tls.ClientAuthType`, and the
//! protocol versions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_saphyr::Spanned;

use super::{given, line, unsupported, TlsSection};

/// PEM from a file (relative to the web config's directory) or inline.
enum Pem<'a> {
    File(&'a Spanned<String>, &'static str),
    Inline(&'a Spanned<String>, &'static str),
}

/// A key of the web config, its line where known, and what is wrong with it.
pub(super) type KeyError = (String, Option<u64>, String);

/// The rustls config for `tls_server_config`, or `None` when the section
/// sets nothing (plain HTTP, as in the exporter toolkit).
pub(super) fn server_config(
    t: &TlsSection,
    dir: &Path,
    files: &mut Vec<PathBuf>,
    notes: &mut Vec<String>,
) -> Result<Option<Arc<rustls::ServerConfig>>, KeyError> {
    let k = |name: &str| format!("tls_server_config.{name}");
    for (name, v) in [
        ("cipher_suites", &t.cipher_suites),
        ("curve_preferences", &t.curve_preferences),
        ("client_allowed_sans", &t.client_allowed_sans),
    ] {
        if v.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err((k(name), None, unsupported()));
        }
    }
    let enabled = [
        &t.cert_file,
        &t.key_file,
        &t.client_ca_file,
        &t.cert,
        &t.key,
        &t.client_ca,
        &t.client_auth_type,
    ]
    .iter()
    .any(|v| given(v).is_some());
    if !enabled {
        return Ok(None);
    }

    let missing = |what: &str| {
        (
            k(what),
            None,
            "missing; TLS needs cert_file and key_file (or inline cert and key)".to_string(),
        )
    };
    let cert =
        pick("cert_file", "cert", &t.cert_file, &t.cert)?.ok_or_else(|| missing("cert_file"))?;
    let key = pick("key_file", "key", &t.key_file, &t.key)?.ok_or_else(|| missing("key_file"))?;
    let client_ca = pick(
        "client_ca_file",
        "client_ca",
        &t.client_ca_file,
        &t.client_ca,
    )?;

    let chain = read_pem(&cert, dir, files, certificates)?;
    let key_der: PrivateKeyDer<'static> = read_pem(&key, dir, files, |b| {
        PrivateKeyDer::from_pem_slice(b)
            .map_err(|e| format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"))
    })?;
    let roots = match &client_ca {
        Some(ca) => {
            let certs = read_pem(ca, dir, files, certificates)?;
            let mut store = rustls::RootCertStore::empty();
            for c in certs {
                store.add(c).map_err(|e| {
                    (
                        pem_key(ca),
                        pem_line(ca),
                        format!("bad CA certificate: {e}"),
                    )
                })?;
            }
            Some((store, pem_key(ca), pem_line(ca)))
        }
        None => None,
    };

    // Client authentication, as Go's tls.ClientAuthType.
    let auth = given(&t.client_auth_type);
    let auth_name = auth.map_or("NoClientCert", |a| a.value.as_str());
    let auth_key = k("client_auth_type");
    let auth_line = auth.and_then(line);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match auth_name {
        "NoClientCert" => {
            if let Some((_, key, line)) = roots {
                let msg = "client CAs are set but client_auth_type is NoClientCert; \
                           set it to RequireAndVerifyClientCert";
                return Err((key, line, msg.into()));
            }
            None
        }
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let Some((store, _, _)) = roots else {
                return Err((
                    auth_key,
                    auth_line,
                    format!("{auth_name} needs client_ca_file"),
                ));
            };
            let mut b = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(store),
                provider.clone(),
            );
            if auth_name == "VerifyClientCertIfGiven" {
                b = b.allow_unauthenticated();
            }
            Some(
                b.build()
                    .map_err(|e| (auth_key.clone(), auth_line, e.to_string()))?,
            )
        }
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => {
            let msg = format!(
                "{auth_name} accepts client certificates without verifying them; netagent \
                 supports NoClientCert, VerifyClientCertIfGiven and RequireAndVerifyClientCert"
            );
            return Err((auth_key, auth_line, msg));
        }
        other => {
            let msg = format!(
                "{other:?} is not one of NoClientCert, VerifyClientCertIfGiven, \
                 RequireAndVerifyClientCert"
            );
            return Err((auth_key, auth_line, msg));
        }
    };

    let mut version =
        |v: &Option<Spanned<String>>, name: &str, default: u8| -> Result<u8, KeyError> {
            match given(v) {
                None => Ok(default),
                Some(s) => match s.value.as_str() {
                    "TLS10" | "TLS11" => {
                        notes.push(format!(
                            "{}: {} is below what rustls offers; TLS 1.2 is the minimum",
                            k(name),
                            s.value
                        ));
                        Ok(12)
                    }
                    "TLS12" => Ok(12),
                    "TLS13" => Ok(13),
                    other => Err((
                        k(name),
                        line(s),
                        format!("{other:?} is not one of TLS10, TLS11, TLS12, TLS13"),
                    )),
                },
            }
        };
    let min = version(&t.min_version, "min_version", 12)?;
    let max = version(&t.max_version, "max_version", 13)?;
    if max < min {
        return Err((
            k("max_version"),
            t.max_version.as_ref().and_then(line),
            "is below min_version".into(),
        ));
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();

    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| (k("min_version"), None, e.to_string()))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key_der).map_err(|e| {
        (
            pem_key(&key),
            pem_line(&key),
            format!("cannot be used with the certificate: {e}"),
        )
    })?;
    // Only HTTP/1.1 is served; HTTP/2 clients fall back to it through ALPN.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    Ok(Some(Arc::new(config)))
}

/// Every certificate of a PEM text; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate".into());
    }
    Ok(certs)
}

/// The PEM source of one item: its file key or its inline key, not both.
fn pick<'a>(
    file: &'static str,
    inline: &'static str,
    f: &'a Option<Spanned<String>>,
    i: &'a Option<Spanned<String>>,
) -> Result<Option<Pem<'a>>, KeyError> {
    match (given(f), given(i)) {
        (Some(f), Some(_)) => Err((
            format!("tls_server_config.{file}"),
            line(f),
            format!("give {file} or {inline}, not both"),
        )),
        (Some(f), None) => Ok(Some(Pem::File(f, file))),
        (None, Some(i)) => Ok(Some(Pem::Inline(i, inline))),
        (None, None) => Ok(None),
    }
}

fn pem_key(p: &Pem<'_>) -> String {
    match p {
        Pem::File(_, name) | Pem::Inline(_, name) => format!("tls_server_config.{name}"),
    }
}

fn pem_line(p: &Pem<'_>) -> Option<u64> {
    match p {
        Pem::File(s, _) | Pem::Inline(s, _) => line(s),
    }
}

/// Reads PEM from a file (recorded in `files`) or inline text and decodes it.
fn read_pem<T>(
    p: &Pem<'_>,
    dir: &Path,
    files: &mut Vec<PathBuf>,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, KeyError> {
    match p {
        Pem::File(name, _) => {
            let path = dir.join(&name.value);
            let bytes = std::fs::read(&path).map_err(|e| {
                (
                    pem_key(p),
                    pem_line(p),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            files.push(path.clone());
            decode(&bytes)
                .map_err(|e| (pem_key(p), pem_line(p), format!("{}: {e}", path.display())))
        }
        Pem::Inline(text, _) => {
            decode(text.value.as_bytes()).map_err(|e| (pem_key(p), pem_line(p), e))
        }
    }
}
