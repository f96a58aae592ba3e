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

/// The answer: every check id always present, `unknown` until enough was received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreflightAnswer {
    pub conference: String,
    /// A publisher is live (`false`: every check is `unknown`).
    pub live: bool,
    /// How the live publisher arrives: `WHIP`, or `RTMP` / `SRT` through the relay's ingest
    /// gateway (then `keyframe_requests` is listed in place of `keyframe_interval`); `null`
    /// when nothing is live.
    pub protocol: Option<String>,
    /// The ingest gateway's latest refused push of this conference (wrong key, unsupported
    /// codec, unreadable stream...), until a publisher is accepted; `null`: none.
    pub ingest_problem: Option<crate::ingest::IngestProblem>,
    pub checks: Vec<PreflightCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreflightCheck {
    /// `codec`, `keyframe_interval` (`keyframe_requests` for an RTMP/SRT encoder),
    /// `b_frames`, `bitrate`, `resolution`, `frame_rate`, `simulcast`, `audio`, `audio_level`.
    pub id: String,
    /// `green`, `amber`, `red` or `unknown`.
    pub status: String,
    pub value: String,
    pub advice_vi: String,
    pub advice_en: String,
}

/// The checks about the picture (the `ingest_unhealthy` alert's).
pub const VIDEO_CHECKS: [&str; 8] = [
    "codec",
    "keyframe_interval",
    "keyframe_requests",
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
        protocol: report.protocol.map(|p| p.as_str().to_owned()),
        ingest_problem: state.ingest_problems.latest(conference),
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

/// `GET /api/v1/conferences/{conference}/preflight`: an operator's (or admin's) console
/// session, or the admin bearer token.
pub async fn preflight(
    State(state): State<Arc<AppState>>,
    Path(conference): Path<String>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Response {
    if let Err(d) = state
        .access
        .check(&method, &headers, crate::access::Role::Operator)
    {
        return d.into_response();
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
            protocol: report.protocol.map(|p| p.as_str().to_owned()),
            ingest_problem: None,
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

/// The dashboard's pre-flight alerts (`ingest_unhealthy`, `audio_silent`): a watcher reads
/// every registered conference's report once a second and keeps, per conference and kind,
/// since when the condition has stood, so an alert's `id` and `since_ms` stay the same while
/// it lasts (the page rings once per alert, not once per update).
#[derive(Default)]
pub struct PreflightAlerts {
    standing: std::sync::Mutex<Standing>,
}

/// conference → (kind, since ms, red checks) standing now.
type Standing =
    std::collections::HashMap<String, Vec<(hallcast_core::accounting::AlertKind, i64, String)>>;

impl PreflightAlerts {
    /// Starts the watcher (one report a second per conference; reports are read from the
    /// engine's published snapshot, never from a media thread).
    pub fn spawn(state: Arc<AppState>) -> Arc<PreflightAlerts> {
        let alerts = Arc::new(PreflightAlerts::default());
        let weak = Arc::downgrade(&alerts);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(alerts) = weak.upgrade() else {
                    return;
                };
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                for c in state.registry.all() {
                    let id = c.id.as_str().to_string();
                    if let Ok(answer) = report(&state, &id).await {
                        alerts.observe(&id, &answer, now_ms);
                    }
                }
            }
        });
        alerts
    }

    /// Folds one report of `conference` in (sans clock: `now_ms` is passed).
    pub fn observe(&self, conference: &str, answer: &PreflightAnswer, now_ms: i64) {
        use hallcast_core::accounting::AlertKind;
        let mut now: Vec<(AlertKind, String)> = Vec::new();
        let red = answer.video_red();
        if !red.is_empty() {
            now.push((AlertKind::IngestUnhealthy, red.join(", ")));
        }
        if answer.audio_silent() {
            now.push((AlertKind::AudioSilent, String::new()));
        }
        let mut standing = self.standing.lock().unwrap_or_else(|p| p.into_inner());
        let before = standing.remove(conference).unwrap_or_default();
        let kept: Vec<_> = now
            .into_iter()
            .map(|(kind, what)| {
                let since = before
                    .iter()
                    .find(|(k, _, _)| *k == kind)
                    .map_or(now_ms, |(_, s, _)| *s);
                (kind, since, what)
            })
            .collect();
        if !kept.is_empty() {
            standing.insert(conference.to_string(), kept);
        }
    }
}

impl crate::board::AlertSource for PreflightAlerts {
    fn alerts(&self, conference: &str, _now_ms: i64) -> Vec<hallcast_core::accounting::Alert> {
        use hallcast_core::accounting::{Alert, AlertKind};
        let standing = self.standing.lock().unwrap_or_else(|p| p.into_inner());
        standing
            .get(conference)
            .into_iter()
            .flatten()
            .map(|(kind, since_ms, what)| {
                let (text_vi, text_en) = match kind {
                    AlertKind::AudioSilent => (
                        "Tín hiệu tiếng từ hội trường đang im lặng hoặc không có".to_string(),
                        "The hall's audio is silent or missing".to_string(),
                    ),
                    _ => (
                        format!("Luồng hình từ hội trường không đạt: {what}"),
                        format!("The hall's video ingest is unhealthy: {what}"),
                    ),
                };
                Alert {
                    id: format!("{}:{conference}", kind.as_str()),
                    kind: *kind,
                    since_ms: *since_ms,
                    text_vi,
                    text_en,
                    point: None,
                    node: None,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod alert_tests {
    use super::*;
    use crate::board::AlertSource;
    use hallcast_core::accounting::AlertKind;

    fn answer(live: bool, red: &[&str]) -> PreflightAnswer {
        let ids = [
            "codec",
            "keyframe_interval",
            "b_frames",
            "bitrate",
            "resolution",
            "frame_rate",
            "simulcast",
            "audio",
            "audio_level",
        ];
        PreflightAnswer {
            conference: "c".into(),
            live,
            protocol: Some("WHIP".into()),
            ingest_problem: None,
            checks: ids
                .iter()
                .map(|id| PreflightCheck {
                    id: (*id).into(),
                    status: if red.contains(id) { "red" } else { "green" }.into(),
                    value: String::new(),
                    advice_vi: String::new(),
                    advice_en: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn alerts_keep_their_id_and_start_while_they_stand_and_clear_after() {
        let a = PreflightAlerts::default();
        a.observe("c", &answer(true, &["audio_level"]), 1_000);
        a.observe(
            "c",
            &answer(true, &["audio_level", "keyframe_interval"]),
            2_000,
        );
        let now = a.alerts("c", 2_000);
        let silent = now
            .iter()
            .find(|x| x.kind == AlertKind::AudioSilent)
            .unwrap();
        assert_eq!(
            (silent.id.as_str(), silent.since_ms),
            ("audio_silent:c", 1_000)
        );
        let video = now
            .iter()
            .find(|x| x.kind == AlertKind::IngestUnhealthy)
            .unwrap();
        assert_eq!(video.since_ms, 2_000);
        assert!(video.text_en.contains("keyframe_interval"), "{video:?}");
        // Cleared, then back: a new start.
        a.observe("c", &answer(true, &[]), 3_000);
        assert!(a.alerts("c", 3_000).is_empty());
        a.observe("c", &answer(true, &["audio"]), 4_000);
        assert_eq!(a.alerts("c", 4_000)[0].since_ms, 4_000);
        // Nothing published: no alert (the board shows the broadcast is not live).
        a.observe("c", &answer(false, &["audio"]), 5_000);
        assert!(a.alerts("c", 5_000).is_empty());
        assert!(a.alerts("other", 5_000).is_empty());
    }
}
