//! The recordings of this relay's broadcasts (see `hallcast_record`):
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `GET /api/v1/recordings[?conference=]` | operator | every recording, newest first: id, conference, state (`recording`, `complete`, `interrupted`), start/end, media duration, bytes, codecs, download URL |
//! | `GET /api/v1/recordings/{id}` | operator | the file (`video/x-matroska` or `video/webm`, as an attachment); byte ranges (206) for players and resumed downloads |
//!
//! Operators run the broadcasts, so they may fetch them (admins ⊇ operators). Reads the
//! recorder's directory only; never touches a media thread.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hallcast_record::{Recorder, RecordingInfo};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::access::Role as Access;
use crate::{AppError, AppState};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub conference: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RecordingsAnswer {
    /// `[recording] enabled` on this relay.
    pub enabled: bool,
    pub recordings: Vec<RecordingDto>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordingDto {
    /// The broadcast's publisher session id.
    pub id: String,
    pub conference: String,
    pub conference_name: Option<String>,
    /// `recording`, `complete`, or `interrupted` (the relay stopped without finishing the
    /// file: it plays up to the cut).
    pub state: String,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    /// The media's duration (from the file's timestamps), once complete.
    pub duration_ms: Option<i64>,
    pub bytes: u64,
    /// `mkv` or `webm`.
    pub container: String,
    pub content_type: String,
    pub audio: Option<String>,
    pub video: Option<String>,
    pub file_name: String,
    pub download_url: String,
}

impl RecordingDto {
    pub fn of(r: &RecordingInfo, base_url: &str) -> RecordingDto {
        RecordingDto {
            id: r.id.clone(),
            conference: r.conference.clone(),
            conference_name: r.conference_name.clone(),
            state: r.state.as_str().into(),
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            duration_ms: r.duration_ms,
            bytes: r.bytes,
            container: r.container.extension().into(),
            content_type: r.container.content_type().into(),
            audio: r.audio.clone(),
            video: r.video.clone(),
            file_name: r.file_name(),
            download_url: format!("{base_url}/api/v1/recordings/{}", r.id),
        }
    }
}

/// A conference's recordings, oldest first (blocking reads moved off the runtime).
pub async fn of_conference(recorder: &Arc<Recorder>, conference: &str) -> Vec<RecordingInfo> {
    let recorder = recorder.clone();
    let conference = conference.to_string();
    tokio::task::spawn_blocking(move || {
        let mut v: Vec<RecordingInfo> = recorder
            .list()
            .into_iter()
            .filter(|r| r.conference == conference)
            .collect();
        v.reverse();
        v
    })
    .await
    .unwrap_or_default()
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: axum::http::HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<RecordingsAnswer>, AppError> {
    state.access.check(&method, &headers, Access::Operator)?;
    let Some(recorder) = state.recorder.get().cloned() else {
        return Ok(Json(RecordingsAnswer {
            enabled: false,
            recordings: vec![],
        }));
    };
    let base = state.config.public_url();
    let all = tokio::task::spawn_blocking(move || recorder.list())
        .await
        .map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let recordings = all
        .iter()
        .filter(|r| q.conference.as_deref().is_none_or(|c| c == r.conference))
        .map(|r| RecordingDto::of(r, &base))
        .collect();
    Ok(Json(RecordingsAnswer {
        enabled: true,
        recordings,
    }))
}

pub async fn download(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, AppError> {
    state
        .access
        .check(req.method(), req.headers(), Access::Operator)?;
    let not_found = || {
        AppError::new(
            StatusCode::NOT_FOUND,
            format!("không có bản ghi {id} / no recording {id}"),
        )
    };
    if hallcast_core::SessionId::parse(&id).is_err() {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "mã bản ghi phải là 32 chữ số hex / a recording id is 32 hex digits",
        ));
    }
    let recorder = state.recorder.get().cloned().ok_or_else(not_found)?;
    let wanted = id.clone();
    let found = tokio::task::spawn_blocking(move || recorder.find(&wanted))
        .await
        .ok()
        .flatten()
        .ok_or_else(not_found)?;
    let served = ServeFile::new(&found.path)
        .oneshot(req)
        .await
        .map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut resp = served.map(Body::new).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(found.container.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        found.file_name().replace(['"', '\\'], "_")
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `/metrics` series of the recorder.
pub fn write_metrics(recorder: &Recorder, out: &mut String) {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let s = recorder.stats();
    let series: [(&str, &str, &str, u64); 9] = [
        (
            "hallcast_recordings_started_total",
            "counter",
            "Recordings started (one per broadcast).",
            s.started.load(Relaxed),
        ),
        (
            "hallcast_recordings_finished_total",
            "counter",
            "Recordings finished.",
            s.finished.load(Relaxed),
        ),
        (
            "hallcast_recordings_active",
            "gauge",
            "Recordings in progress.",
            s.active.load(Relaxed),
        ),
        (
            "hallcast_recording_bytes_written_total",
            "counter",
            "Bytes written to recording files.",
            s.bytes_written.load(Relaxed),
        ),
        (
            "hallcast_recording_dropped_items_total",
            "counter",
            "Packets and events a full recorder queue dropped (the media threads never wait).",
            s.dropped_items.load(Relaxed),
        ),
        (
            "hallcast_recording_write_errors_total",
            "counter",
            "Recording files that could not be written.",
            s.write_errors.load(Relaxed),
        ),
        (
            "hallcast_recordings_deleted_total",
            "counter",
            "Recordings deleted by recording.max_bytes / max_age_days.",
            s.deleted.load(Relaxed),
        ),
        (
            "hallcast_recording_video_frames_dropped_total",
            "counter",
            "Video frames left out of recordings (a lost packet, up to the next keyframe).",
            s.video_frames_dropped.load(Relaxed),
        ),
        (
            "hallcast_recording_bad_packets_total",
            "counter",
            "Video packets the recorder could not depacketize.",
            s.bad_packets.load(Relaxed),
        ),
    ];
    for (name, kind, help, v) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
}
