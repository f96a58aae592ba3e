//! The relay's side of its own ingest gateway (RTMP/SRT, `hallcast-ingest`): which WHIP
//! publisher is the gateway, and the gateway's latest refusal per conference for the operator.
//!
//! **Who is the gateway.** The gateway publishes over WHIP to a loopback-only plain listener
//! the relay opens for it ([`ingest_listener_app`]: the relay's whole HTTP surface with the
//! [`IngestListener`] request extension added). Its WHIP POST names the encoder's protocol in
//! the [`INGEST_HEADER`]; [`protocol_of`] believes that header only on a request that carries
//! the extension. Every other listener (the public one, the demo's loopback one) never adds
//! it, so an outside WHIP publisher that sends the header is still WHIP.
//!
//! **Refusals.** What the gateway refuses after the encoder named a conference (wrong key,
//! already live, unsupported codec, unreadable payload) it reports in-process; the relay keeps
//! the latest per conference ([`IngestProblems`]) for the pre-flight answer and the operator
//! console, only for conferences in the registry, at most [`MAX_PROBLEMS`] in all (the oldest
//! goes), and forgets it when a publisher of that conference is accepted.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Extension;
use axum::Router;
use axum::http::HeaderMap;
use hallcast_core::preflight::IngestProtocol;
use serde::{Deserialize, Serialize};

use crate::AppState;

/// The header on the gateway's WHIP POST naming the encoder's protocol (`rtmp`, `srt`); the
/// same name as `hallcast_ingest::INGEST_HEADER`.
pub const INGEST_HEADER: &str = "hallcast-ingest";

/// Conferences with a refusal kept, at most.
pub const MAX_PROBLEMS: usize = 1024;

/// Marks a request that arrived on the gateway's own loopback listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestListener;

/// The relay's HTTP surface as served to its ingest gateway: `app` with [`IngestListener`] on
/// every request. Serve it on a loopback-only listener that nothing else is told about.
pub fn ingest_listener_app(app: Router) -> Router {
    app.layer(Extension(IngestListener))
}

/// How a WHIP publisher arrives: the [`INGEST_HEADER`]'s protocol on the gateway's listener,
/// WHIP anywhere else (or without a header the relay knows).
pub fn protocol_of(headers: &HeaderMap, listener: Option<IngestListener>) -> IngestProtocol {
    if listener.is_none() {
        return IngestProtocol::Whip;
    }
    let value = headers
        .get(INGEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    match value {
        Some(v) if v.eq_ignore_ascii_case("rtmp") => IngestProtocol::Rtmp,
        Some(v) if v.eq_ignore_ascii_case("srt") => IngestProtocol::Srt,
        _ => IngestProtocol::Whip,
    }
}

/// The latest refused push of a conference, as the pre-flight answer shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestProblem {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// `RTMP` or `SRT`.
    pub protocol: String,
    pub message_vi: String,
    pub message_en: String,
}

/// The latest refusal per conference (see the module doc).
#[derive(Debug, Default)]
pub struct IngestProblems {
    latest: Mutex<HashMap<String, IngestProblem>>,
}

impl IngestProblems {
    /// Keeps `problem` as `conference`'s latest (the caller checked the conference exists);
    /// at [`MAX_PROBLEMS`] conferences the oldest entry goes.
    pub fn record(&self, conference: &str, problem: IngestProblem) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if !latest.contains_key(conference) && latest.len() >= MAX_PROBLEMS {
            let oldest = latest
                .iter()
                .min_by_key(|(_, p)| p.at_ms)
                .map(|(c, _)| c.clone());
            if let Some(c) = oldest {
                latest.remove(&c);
            }
        }
        latest.insert(conference.to_owned(), problem);
    }

    /// A publisher of `conference` was accepted: its refusal is history.
    pub fn clear(&self, conference: &str) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest.remove(conference);
    }

    pub fn latest(&self, conference: &str) -> Option<IngestProblem> {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest.get(conference).cloned()
    }

    pub fn len(&self) -> usize {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The gateway refused a push to `conference`: kept for its operator if the relay has that
/// conference (a name that is not a conference is only the gateway's log line).
pub fn record_refusal(
    state: &AppState,
    conference: &str,
    protocol: IngestProtocol,
    message_vi: String,
    message_en: String,
) {
    if state.registry.get(conference).is_none() {
        return;
    }
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    state.ingest_problems.record(
        conference,
        IngestProblem {
            at_ms,
            protocol: protocol.as_str().to_owned(),
            message_vi,
            message_en,
        },
    );
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn problem(at_ms: i64) -> IngestProblem {
        IngestProblem {
            at_ms,
            protocol: "RTMP".into(),
            message_vi: "vi".into(),
            message_en: "en".into(),
        }
    }

    #[test]
    fn the_header_counts_only_on_the_gateways_listener() {
        let mut h = HeaderMap::new();
        h.insert(INGEST_HEADER, HeaderValue::from_static("rtmp"));
        assert_eq!(protocol_of(&h, None), IngestProtocol::Whip);
        assert_eq!(protocol_of(&h, Some(IngestListener)), IngestProtocol::Rtmp);
        h.insert(INGEST_HEADER, HeaderValue::from_static(" SRT"));
        assert_eq!(protocol_of(&h, Some(IngestListener)), IngestProtocol::Srt);
        h.insert(INGEST_HEADER, HeaderValue::from_static("rtsp"));
        assert_eq!(protocol_of(&h, Some(IngestListener)), IngestProtocol::Whip);
        assert_eq!(
            protocol_of(&HeaderMap::new(), Some(IngestListener)),
            IngestProtocol::Whip
        );
    }

    #[test]
    fn one_problem_per_conference_superseded_cleared_and_bounded() {
        let p = IngestProblems::default();
        p.record("a", problem(1));
        p.record("a", problem(2));
        assert_eq!(p.latest("a").map(|x| x.at_ms), Some(2));
        assert_eq!(p.len(), 1);
        p.clear("a");
        assert!(p.latest("a").is_none() && p.is_empty());
        for i in 0..(MAX_PROBLEMS as i64 + 10) {
            p.record(&format!("c{i}"), problem(i));
        }
        assert_eq!(p.len(), MAX_PROBLEMS);
        // The oldest went first.
        assert!(p.latest("c0").is_none());
        assert!(p.latest(&format!("c{}", MAX_PROBLEMS + 9)).is_some());
    }
}
