//! WHIP (RFC 9725) ingest and WHEP playback: the same resource model, two roles.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hallcast_config::ConferenceConfig;
use hallcast_rtc::{EndReason, Role, SessionId};

use crate::{AppError, AppState, SessionMeta, ViewerIdentity};

const SDP: &str = "application/sdp";
const TRICKLE: &str = "application/trickle-ice-sdpfrag";

pub async fn options(State(state): State<Arc<AppState>>) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        header::ALLOW,
        HeaderValue::from_static("OPTIONS, POST, DELETE, PATCH"),
    );
    h.insert("accept-post", HeaderValue::from_static(SDP));
    h.insert("accept-patch", HeaderValue::from_static(TRICKLE));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("OPTIONS, POST, DELETE, PATCH"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, If-Match"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    for link in ice_links(&state) {
        h.append(header::LINK, link);
    }
    r
}

pub async fn whip_post(
    State(state): State<Arc<AppState>>,
    Path(conference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let conf = conference_of(&state, &conference)?;
    let offer = sdp_body(&headers, &body)?;
    let token = bearer(&headers)?;
    if !constant_time_eq(token.as_bytes(), conf.stream_key.as_bytes()) {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "wrong stream key for this conference",
        ));
    }
    let started = state.engine.publish(&conference, offer).await?;
    Ok(created(
        &state,
        "whip",
        &conference,
        started.session,
        started.answer,
        Role::Publisher,
        None,
    ))
}

pub async fn whep_post(
    State(state): State<Arc<AppState>>,
    Path(conference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let conf = conference_of(&state, &conference)?;
    let offer = sdp_body(&headers, &body)?;
    let token = bearer(&headers)?;
    let identity = if !conf.viewer_token.is_empty()
        && constant_time_eq(token.as_bytes(), conf.viewer_token.as_bytes())
    {
        ViewerIdentity { point: None }
    } else {
        state
            .viewer_auth
            .verify(&conference, token)
            .ok_or_else(|| {
                AppError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid, expired or revoked viewer token",
                )
            })?
    };
    let started = state.engine.subscribe(&conference, offer).await?;
    Ok(created(
        &state,
        "whep",
        &conference,
        started.session,
        started.answer,
        Role::Subscriber,
        identity.point,
    ))
}

pub async fn resource_delete(
    State(state): State<Arc<AppState>>,
    Path((conference, session)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let id = session_of(&state, &conference, &session)?;
    state.engine.end(id, EndReason::Deleted).await?;
    Ok(StatusCode::OK.into_response())
}

/// Trickle ICE (RFC 8840 fragments). ICE restarts are not supported: the client
/// starts a new session instead (the relay keeps its place in the fan-out cheap).
pub async fn resource_patch(
    State(state): State<Arc<AppState>>,
    Path((conference, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let id = session_of(&state, &conference, &session)?;
    let etag = state
        .sessions()
        .get(&id)
        .map(|m| m.etag.clone())
        .unwrap_or_default();
    if content_type(&headers) != TRICKLE {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("PATCH takes Content-Type: {TRICKLE}"),
        ));
    }
    if let Some(m) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
        && m != "*"
        && m != etag
    {
        return Err(AppError::new(
            StatusCode::PRECONDITION_FAILED,
            "If-Match does not match the session's ETag",
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| AppError::new(StatusCode::BAD_REQUEST, "the fragment is not UTF-8"))?;
    if text.lines().any(|l| l.starts_with("a=ice-ufrag:"))
        && headers.get(header::IF_MATCH).is_some_and(|v| v == "*")
    {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ICE restart is not supported: DELETE this session and POST a new offer",
        ));
    }
    let candidates: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("a=candidate:"))
        .map(str::to_string)
        .collect();
    state.engine.trickle(id, candidates).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn created(
    state: &AppState,
    kind: &str,
    conference: &str,
    session: SessionId,
    answer: String,
    role: Role,
    point: Option<String>,
) -> Response {
    let etag = format!("\"{session}\"");
    state.sessions().insert(
        session,
        SessionMeta {
            conference: conference.to_string(),
            role,
            point,
            etag: etag.clone(),
            created_at: SystemTime::now(),
        },
    );
    let location = format!("/{kind}/{conference}/{session}");
    let mut r = (StatusCode::CREATED, [(header::CONTENT_TYPE, SDP)], answer).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(TRICKLE));
    for link in ice_links(state) {
        h.append(header::LINK, link);
    }
    r
}

fn ice_links(state: &AppState) -> Vec<HeaderValue> {
    let mut out = Vec::new();
    for s in &state.config.ice_servers {
        for url in &s.urls {
            let mut v = format!("<{url}>; rel=\"ice-server\"");
            if !s.username.is_empty() {
                v.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    s.username, s.credential
                ));
            }
            if let Ok(h) = HeaderValue::from_str(&v) {
                out.push(h);
            }
        }
    }
    out
}

fn conference_of<'a>(state: &'a AppState, id: &str) -> Result<&'a ConferenceConfig, AppError> {
    state.conferences.get(id).ok_or_else(|| {
        AppError::new(
            StatusCode::NOT_FOUND,
            format!("no conference {id:?} on this relay"),
        )
    })
}

fn session_of(state: &AppState, conference: &str, session: &str) -> Result<SessionId, AppError> {
    let not_found = || AppError::new(StatusCode::NOT_FOUND, "no such session (it may have ended)");
    let id: SessionId = session.parse().map_err(|_| not_found())?;
    match state.sessions().get(&id) {
        Some(m) if m.conference == conference => Ok(id),
        _ => Err(not_found()),
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn sdp_body(headers: &HeaderMap, body: &Bytes) -> Result<String, AppError> {
    let ct = content_type(headers);
    if ct != SDP {
        let got = if ct.is_empty() {
            "none".to_string()
        } else {
            ct
        };
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected Content-Type: {SDP}, got {got}"),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| AppError::new(StatusCode::BAD_REQUEST, "the SDP offer is not UTF-8"))?;
    if !text.trim_start().starts_with("v=0") {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "malformed SDP offer: it must start with \"v=0\"",
        ));
    }
    Ok(text.to_string())
}

fn bearer(headers: &HeaderMap) -> Result<&str, AppError> {
    let v = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <token>",
        )
    })?;
    v.to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            AppError::new(
                StatusCode::UNAUTHORIZED,
                "Authorization must be \"Bearer <token>\"",
            )
        })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
