//! WHIP signalling (RFC 9725) over plain HTTP: POST the offer, read the answer and the session
//! resource, DELETE the resource to end.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::{Client, StatusCode, Url};

/// How long one signalling request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an error body kept for the error message.
const MAX_ERROR_BODY: usize = 512;

/// A WHIP signalling failure. Callers tell "already live" (409) from other refusals with
/// [`WhipError::status`].
#[derive(Debug, thiserror::Error)]
pub enum WhipError {
    #[error("invalid WHIP URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("WHIP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("WHIP endpoint answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("WHIP endpoint answered 201 without a usable Location header")]
    MissingLocation,
    #[error("WHIP endpoint answered with an empty or non-SDP body")]
    BadAnswer,
}

impl WhipError {
    /// The HTTP status the endpoint refused with, if it answered at all (409 = already live).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The session a successful POST created.
#[derive(Debug, Clone)]
pub(crate) struct WhipSession {
    /// The answer SDP.
    pub(crate) answer: String,
    /// The session resource (absolute, resolved against the URL that answered).
    pub(crate) resource: Url,
}

pub(crate) fn client() -> Result<Client, WhipError> {
    // A relay is reached directly: proxies from the environment would only get in the way of
    // loopback and LAN addresses.
    Ok(Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()?)
}

pub(crate) fn parse_url(url: &str) -> Result<Url, WhipError> {
    let parsed = Url::parse(url).map_err(|e| WhipError::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    if parsed.scheme() != "http" || parsed.host().is_none() {
        return Err(WhipError::InvalidUrl {
            url: url.to_owned(),
            reason: "not an http:// URL with a host (the test source has no TLS)".to_owned(),
        });
    }
    Ok(parsed)
}

/// POSTs `offer` and returns the answer and the session resource.
pub(crate) async fn post_offer(
    client: &Client,
    url: &Url,
    stream_key: &str,
    headers: &[(String, String)],
    offer: &str,
) -> Result<WhipSession, WhipError> {
    let mut request = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/sdp")
        .header(AUTHORIZATION, format!("Bearer {stream_key}"));
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.body(offer.to_owned()).send().await?;
    let status = response.status();
    // Redirects (307) are followed by the client; relative Locations resolve against the URL
    // that finally answered.
    let answered_at = response.url().clone();
    if status != StatusCode::CREATED {
        return Err(status_error(response).await);
    }
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(WhipError::MissingLocation)?;
    let resource = answered_at
        .join(location)
        .map_err(|_| WhipError::MissingLocation)?;
    let answer = response.text().await?;
    if !answer.trim_start().starts_with("v=0") {
        return Err(WhipError::BadAnswer);
    }
    Ok(WhipSession { answer, resource })
}

/// Ends the session. 404 counts as ended (the relay already dropped it).
pub(crate) async fn delete(
    client: &Client,
    resource: &Url,
    stream_key: &str,
) -> Result<(), WhipError> {
    let response = client
        .delete(resource.clone())
        .header(AUTHORIZATION, format!("Bearer {stream_key}"))
        .send()
        .await?;
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_FOUND {
        Ok(())
    } else {
        Err(status_error(response).await)
    }
}

async fn status_error(response: reqwest::Response) -> WhipError {
    let status = response.status().as_u16();
    let mut body = response.text().await.unwrap_or_default();
    if body.len() > MAX_ERROR_BODY {
        let mut cut = MAX_ERROR_BODY;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    WhipError::Status { status, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("http://127.0.0.1:8080/whip/conf").is_ok());
        assert!(parse_url("http://relay.example/whip").is_ok());
        assert!(parse_url("https://relay.example/whip").is_err());
        assert!(parse_url("ftp://relay.example/whip").is_err());
        assert!(parse_url("not a url").is_err());
    }

    #[test]
    fn status_is_exposed_for_refusals_only() {
        let e = WhipError::Status {
            status: 409,
            body: String::new(),
        };
        assert_eq!(e.status(), Some(409));
        assert_eq!(WhipError::MissingLocation.status(), None);
    }
}
