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

impl PreflightAnswer {
    /// The check named `id`.
    pub fn check(&self, id: &str) -> Option<&PreflightCheck> {
        self.checks.iter().find(|c| c.id == id)
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
