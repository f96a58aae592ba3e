//! Plain HTTP against the relay for tests that speak WHIP/WHEP or the admin API by hand: every
//! answer comes back as status, `Location` and body, never as an error, so a test can assert on
//! refusals as easily as on successes.

use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;

/// What the relay answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
}

impl Answer {
    /// The body as JSON (fails with the body in the message).
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("the answer ({}) is not JSON: {:?}", self.status, self.body))
    }
}

/// A client for one relay at `base` (`http://IP:PORT`); redirects are not followed.
pub struct Http {
    client: Client,
    pub base: String,
}

impl Http {
    pub fn new(base: &str) -> Result<Http> {
        Ok(Http {
            client: Client::builder()
                .timeout(Duration::from_secs(15))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// A client for an https relay whose certificate is signed by (or is) the PEM `ca`.
    pub fn with_ca(base: &str, ca: &std::path::Path) -> Result<Http> {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        Ok(Http {
            client: Client::builder()
                .timeout(Duration::from_secs(15))
                .redirect(reqwest::redirect::Policy::none())
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
                .build()?,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// `path` (or an absolute URL) against the base.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// POST an SDP offer (WHIP/WHEP).
    pub fn post_sdp(&self, path: &str, token: Option<&str>, offer: &str) -> Result<Answer> {
        let req = self
            .client
            .post(self.url(path))
            .header("Content-Type", "application/sdp")
            .body(offer.to_string());
        self.send(req, token)
    }

    /// DELETE a session resource.
    pub fn delete(&self, path: &str, token: Option<&str>) -> Result<Answer> {
        self.send(self.client.delete(self.url(path)), token)
    }

    /// PATCH a session resource with a trickle-ICE fragment.
    pub fn patch_trickle(&self, path: &str, token: Option<&str>, fragment: &str) -> Result<Answer> {
        let req = self
            .client
            .patch(self.url(path))
            .header("Content-Type", "application/trickle-ice-sdpfrag")
            .body(fragment.to_string());
        self.send(req, token)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Result<Answer> {
        self.send(self.client.get(self.url(path)), token)
    }

    /// POST a JSON body (`Value::Null`: no body).
    pub fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Answer> {
        let mut req = self.client.post(self.url(path));
        if !body.is_null() {
            req = req.json(body);
        }
        self.send(req, token)
    }

    fn send(&self, mut req: RequestBuilder, token: Option<&str>) -> Result<Answer> {
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().context("the relay did not answer")?;
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("Location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = r
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = r.text().unwrap_or_default();
        Ok(Answer {
            status,
            location,
            body,
            retry_after,
        })
    }
}
