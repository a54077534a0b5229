//! The metadata HTTP client: requests relative to the base URL, bounded in
//! time and size, never through a proxy and never redirected.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

/// Largest answer read from a metadata service; the documents we read are
/// a few KiB (Azure's instance document is the largest).
const MAX_BODY: usize = 256 * 1024;

/// Why one provider's probe found nothing.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{path}: {message}")]
    Http { path: String, message: String },
    #[error("{path}: HTTP {status}")]
    Status { path: String, status: u16 },
    #[error("{path}: answer larger than {MAX_BODY} bytes")]
    TooLarge { path: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
}

impl ProbeError {
    pub fn invalid(path: &str, message: impl Into<String>) -> Self {
        ProbeError::Invalid {
            path: path.to_string(),
            message: message.into(),
        }
    }

    fn http(path: &str, e: reqwest::Error) -> Self {
        // reqwest's own message is generic ("error sending request"); the
        // cause (connection refused, timed out) is in its sources.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        ProbeError::Http {
            path: path.to_string(),
            message,
        }
    }
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub path: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body of a 200 answer.
    pub fn ok(self) -> Result<String, ProbeError> {
        match self.status {
            StatusCode::OK => Ok(self.body),
            s => Err(ProbeError::Status {
                path: self.path,
                status: s.as_u16(),
            }),
        }
    }

    /// The body of a 200 answer, None for 404 (a key this instance does
    /// not have, e.g. no public address).
    pub fn optional(self) -> Result<Option<String>, ProbeError> {
        if self.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.ok().map(Some)
    }
}

/// HTTP client for one base URL.
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// `base` without a trailing slash; `timeout` bounds each request.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            // Metadata is link-local: a proxy from the environment would
            // answer for another machine, or not at all.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(5))
            .user_agent(concat!("netagent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base.to_string(),
        })
    }

    /// Sends one request (`path` starts with `/`) and reads the answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ProbeError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let mut resp = req.send().await.map_err(|e| ProbeError::http(path, e))?;
        let status = resp.status();
        let headers = std::mem::take(resp.headers_mut());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| ProbeError::http(path, e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ProbeError::TooLarge {
                    path: path.to_string(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let body = String::from_utf8(body)
            .map_err(|_| ProbeError::invalid(path, "answer is not UTF-8"))?;
        Ok(Reply {
            path: path.to_string(),
            status,
            headers,
            body,
        })
    }

    /// GET with these request headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Reply, ProbeError> {
        self.send(Method::GET, path, headers).await
    }
}
