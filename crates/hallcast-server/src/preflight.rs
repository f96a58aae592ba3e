//! `GET /api/v1/conferences/{id}/preflight` (admin): the encoder pre-flight checks of a
//! conference's publisher, as the relay that ingests it computes them
//! (`hallcast_core::preflight`), read from the engine's published snapshot — answering
//! never touches a media thread.
//!
//! [`report`] is the same answer as a function, for the dashboard's alerts
//! (`ingest_unhealthy`: a red line among the video checks; `audio_silent`: `audio` or
//! `audio_level` red).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hallcast_core::preflight::{Check, Report};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth;

/// The answer: every check id always present, `unknown` until enough was received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreflightAnswer {
    pub conference: String,
    /// A publisher is live (`false`: every check is `unknown`).
    pub live: bool,
    pub checks: Vec<PreflightCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreflightCheck {
    /// `codec`, `keyframe_interval`, `b_frames`, `bitrate`, `resolution`, `frame_rate`,
    /// `simulcast`, `audio`, `audio_level`.
    pub id: String,
    /// `green`, `amber`, `red` or `unknown`.
    pub status: String,
    pub value: String,
    pub advice_vi: String,
    pub advice_en: String,
}

/// The checks about the picture (the `ingest_unhealthy` alert's).
pub const VIDEO_CHECKS: [&str; 7] = [
    "codec",
    "keyframe_interval",
    "b_frames",
    "bitrate",
    "resolution",
    "frame_rate",
    "simulcast",
];

impl PreflightAnswer {
    /// The check named `id`.
    pub fn check(&self, id: &str) -> Option<&PreflightCheck> {
        self.checks.iter().find(|c| c.id == id)
    }

    fn is_red(&self, id: &str) -> bool {
        self.check(id).is_some_and(|c| c.status == "red")
    }

    /// Live, and `audio` or `audio_level` is red: nobody hears anything (the dashboard's
    /// `audio_silent` alert).
    pub fn audio_silent(&self) -> bool {
        self.live && (self.is_red("audio") || self.is_red("audio_level"))
    }

    /// Live, and a check about the picture is red (the dashboard's `ingest_unhealthy`
    /// alert); the red ones, by id.
    pub fn video_red(&self) -> Vec<&str> {
        if !self.live {
            return vec![];
        }
        VIDEO_CHECKS
            .iter()
            .copied()
            .filter(|id| self.is_red(id))
            .collect()
    }
}

impl From<&Check> for PreflightCheck {
    fn from(c: &Check) -> Self {
        PreflightCheck {
            id: c.id.as_str().to_owned(),
            status: c.status.as_str().to_owned(),
            value: c.value.clone(),
            advice_vi: c.advice_vi.to_owned(),
            advice_en: c.advice_en.to_owned(),
        }
    }
}

/// Why there is no report.
#[derive(Debug)]
pub enum PreflightError {
    /// No such conference in the registry.
    UnknownConference,
    /// The media engine stopped or is wedged.
    Engine(hallcast_rtc::EngineError),
}

/// The pre-flight report of `conference` on this relay (for the dashboard's alerts and the
/// API): from the latest engine snapshot (at most ~500 ms old).
pub async fn report(state: &AppState, conference: &str) -> Result<PreflightAnswer, PreflightError> {
    if state.registry.lookup(conference).await.is_none() {
        return Err(PreflightError::UnknownConference);
    }
    let snap = state
        .engine
        .snapshot()
        .await
        .map_err(PreflightError::Engine)?;
    let c = snap.conferences.iter().find(|c| *c.id == *conference);
    let live = c.is_some_and(|c| c.live);
    let report = c
        .and_then(|c| c.preflight.clone())
        .filter(|_| live)
        .unwrap_or_else(Report::unknown);
    Ok(PreflightAnswer {
        conference: conference.to_owned(),
        live,
        checks: report.checks.iter().map(PreflightCheck::from).collect(),
    })
}

impl std::fmt::Display for PreflightError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PreflightError::UnknownConference => f.write_str("no such conference"),
            PreflightError::Engine(e) => write!(f, "media engine: {e}"),
        }
    }
}

impl std::error::Error for PreflightError {}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

fn error(status: StatusCode, code: &str, vi: &str, en: &str) -> Response {
    tracing::debug!(%status, code, "{en}");
    (
        status,
        Json(ErrorBody {
            error: code,
            message: format!("{vi} / {en}"),
        }),
    )
        .into_response()
}

/// `GET /api/v1/conferences/{conference}/preflight` with the admin bearer token.
pub async fn preflight(
    State(state): State<Arc<AppState>>,
    Path(conference): Path<String>,
    headers: HeaderMap,
) -> Response {
    let token = &state.config.admin.token;
    if token.is_empty() {
        return error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "API quản trị đang tắt (chưa cấu hình mã quản trị)",
            "The admin API is disabled (no admin token configured)",
        );
    }
    match auth::bearer(&headers) {
        Ok(t) if auth::secret_matches(t, token) => {}
        _ => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Thiếu hoặc sai mã quản trị",
                "Missing or wrong admin token (Authorization: Bearer <token>)",
            );
        }
    }
    match report(&state, &conference).await {
        Ok(answer) => Json(answer).into_response(),
        Err(PreflightError::UnknownConference) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("Không có hội nghị {conference:?}"),
            &format!("No conference {conference:?}"),
        ),
        Err(PreflightError::Engine(e)) => {
            tracing::error!("preflight: {e}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "engine_unavailable",
                "Bộ xử lý media không phản hồi",
                "The media engine is not answering",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use hallcast_core::Codec;
    use hallcast_core::preflight::Preflight;

    use super::*;

    fn answer(live: bool, report: &Report) -> PreflightAnswer {
        PreflightAnswer {
            conference: "c".into(),
            live,
            checks: report.checks.iter().map(PreflightCheck::from).collect(),
        }
    }

    #[test]
    fn alerts_read_the_red_lines() {
        let t0 = Instant::now();
        // Audio offered, nothing but the offer: after the warm-up `audio` is red; no video.
        let p = Preflight::new(Some(Codec::Opus), None, 1, t0);
        let r = p.report(t0 + std::time::Duration::from_secs(5));
        let a = answer(true, &r);
        assert!(a.audio_silent());
        assert_eq!(a.video_red(), vec!["codec"]);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["checks"][7]["id"], "audio");
        assert_eq!(json["checks"][7]["status"], "red");
        assert!(
            json["checks"][7]["advice_vi"]
                .as_str()
                .unwrap()
                .contains("âm thanh")
        );
        // Not live: no alert, whatever the lines say.
        let idle = answer(false, &r);
        assert!(!idle.audio_silent() && idle.video_red().is_empty());
        // Nothing known yet: no alert.
        let unknown = answer(true, &Report::unknown());
        assert!(!unknown.audio_silent() && unknown.video_red().is_empty());
    }
}
