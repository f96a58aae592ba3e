//! WHIP/WHEP signalling: POST an offer, get the answer and the session resource; DELETE it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};

/// An accepted offer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub sdp: String,
    /// Absolute URL of the session resource (for DELETE), if the server gave one.
    pub resource: Option<String>,
    /// When the POST that succeeded was sent (after any 409 waits).
    pub posted_at: Instant,
}

/// A client for loopback HTTP only: no proxy, short timeouts.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        // Shorter than the relay's idle close (`limits.header_timeout_secs`, 10 s by default:
        // hyper's header-read timeout also ends an idle keep-alive connection). A connection
        // idle for about that long raced the relay's close: the bench's 10 s window ended with
        // a `/metrics` GET on a connection closed under it ("connection closed before message
        // completed"), 4 runs in 12.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .context("cannot build the HTTP client")
}

/// POSTs `offer` to a WHIP or WHEP endpoint. While the server answers 409 (for WHEP: the
/// hall feed is not live yet) the offer is sent again after `Retry-After` seconds (at most
/// 1 s between tries), until `give_up_at`; a 429 or 503 (the relay's limits) likewise after
/// its `Retry-After` (at most 5 s).
pub async fn post_offer(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
    offer: &str,
    give_up_at: Instant,
) -> anyhow::Result<Answer> {
    loop {
        let posted_at = Instant::now();
        let resp = client
            .post(url)
            .header(AUTHORIZATION, format!("Bearer {bearer}"))
            .header(CONTENT_TYPE, "application/sdp")
            .body(offer.to_string())
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        if status == StatusCode::CREATED {
            let resource = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|loc| resp.url().join(loc).map(|u| u.to_string()))
                .transpose()
                .context("bad Location header")?;
            let sdp = resp.text().await.context("reading the SDP answer")?;
            return Ok(Answer {
                sdp,
                resource,
                posted_at,
            });
        }
        let refused = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        if (status == StatusCode::CONFLICT || refused) && Instant::now() < give_up_at {
            let most = if refused { 5.0 } else { 1.0 };
            let wait = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map_or(Duration::from_millis(500), |s| {
                    Duration::from_secs_f64(s.clamp(0.05, most))
                });
            tokio::time::sleep(wait).await;
            continue;
        }
        let body = resp.text().await.unwrap_or_default();
        bail!("POST {url}: HTTP {status}: {}", body.trim());
    }
}

/// Ends a session resource; errors are returned, not retried.
pub async fn delete(client: &reqwest::Client, resource: &str, bearer: &str) -> anyhow::Result<()> {
    let resp = client
        .delete(resource)
        .header(AUTHORIZATION, format!("Bearer {bearer}"))
        .send()
        .await
        .with_context(|| format!("DELETE {resource}"))?;
    let status = resp.status();
    if !status.is_success() {
        bail!("DELETE {resource}: HTTP {status}");
    }
    Ok(())
}
