//! HTTP basic auth against the web config's bcrypt hashes. bcrypt is slow
//! on purpose, so credentials that passed are remembered (as digests) and
//! checks run one at a time off the async threads.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use tokio::sync::Semaphore;

use super::lock;

/// The realm sent with `401 Unauthorized`.
const REALM: &str = r#"Basic realm="netagent""#;
/// Verified credentials remembered (as digests) so scrapes skip bcrypt.
const VERIFIED_CACHE: usize = 256;

/// `basic_auth_users`: user -> bcrypt hash.
pub(super) struct Users {
    hashes: HashMap<String, String>,
    /// Unknown users are checked against this hash so that their answer
    /// takes as long as a wrong password's.
    decoy: String,
    /// SHA-256 of credentials that passed bcrypt (never the passwords).
    verified: Mutex<HashSet<[u8; 32]>>,
    /// bcrypt is slow on purpose: one at a time, off the async threads.
    bcrypt_gate: Semaphore,
}

impl Users {
    pub(super) fn new(hashes: HashMap<String, String>) -> Self {
        let decoy = hashes
            .iter()
            .min_by(|a, b| a.0.cmp(b.0))
            .map(|(_, h)| h.clone())
            .unwrap_or_default();
        Self {
            hashes,
            decoy,
            verified: Mutex::new(HashSet::new()),
            bcrypt_gate: Semaphore::new(1),
        }
    }

    /// True when the request carries the basic-auth credentials of a user.
    pub(super) async fn check(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = credentials(headers) else {
            return false;
        };
        let digest = credential_digest(&user, &password);
        if lock(&self.verified).contains(&digest) {
            return true;
        }
        let (hash, known) = match self.hashes.get(&user) {
            Some(h) => (h.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let Ok(_permit) = self.bcrypt_gate.acquire().await else {
            return false;
        };
        // Another request may have verified the same credentials meanwhile.
        if lock(&self.verified).contains(&digest) {
            return true;
        }
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok && known {
            let mut verified = lock(&self.verified);
            if verified.len() >= VERIFIED_CACHE {
                verified.clear();
            }
            verified.insert(digest);
        }
        ok && known
    }
}

/// User and password of an `Authorization: Basic` header.
pub(super) fn credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = raw.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

/// SHA-256 over the length-prefixed user and the password.
fn credential_digest(user: &str, password: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(user.len() as u64).to_le_bytes());
    ctx.update(user.as_bytes());
    ctx.update(password);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub(super) fn unauthorized() -> Response<Body> {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM))],
        "Unauthorized\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_parsed_from_the_header() {
        use base64::Engine as _;
        let mut h = HeaderMap::new();
        assert!(credentials(&h).is_none());
        let enc = base64::engine::general_purpose::STANDARD.encode("alice:pa:ss");
        h.insert(
            header::AUTHORIZATION,
            format!("basic {enc}").parse().unwrap(),
        );
        assert_eq!(credentials(&h), Some(("alice".into(), b"pa:ss".to_vec())));
        h.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert!(credentials(&h).is_none());
        assert_ne!(
            credential_digest("a\0", b"b"),
            credential_digest("a", b"\0b")
        );
    }

    #[tokio::test]
    async fn users_check_passwords_and_remember_successes() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let users = Users::new(HashMap::from([("alice".to_string(), hash)]));
        let header = |u: &str, p: &str| {
            use base64::Engine as _;
            let mut h = HeaderMap::new();
            let enc = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            h.insert(
                header::AUTHORIZATION,
                format!("Basic {enc}").parse().unwrap(),
            );
            h
        };
        assert!(users.check(&header("alice", "right")).await);
        assert_eq!(lock(&users.verified).len(), 1);
        assert!(users.check(&header("alice", "right")).await);
        assert!(!users.check(&header("alice", "wrong")).await);
        assert!(!users.check(&header("mallory", "right")).await);
        assert!(!users.check(&HeaderMap::new()).await);
    }
}
