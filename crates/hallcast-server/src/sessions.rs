//! `GET /api/v1/sessions` (admin token): every session of this relay as the dashboard
//! shows it — what each viewer receives and why (its layer, the allocator's target and
//! bandwidth estimate, a pause and its reason, the number of switches), plus each
//! conference's measured layers. Read from the engine's published snapshot: answering
//! never touches a media thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use hallcast_core::{Target, VideoStatus};
use hallcast_rtc::{Delivery, Role};
use serde::{Deserialize, Serialize};

use crate::access::Role as Access;
use crate::{AppError, AppState};

#[derive(Debug, Deserialize)]
pub struct SessionsQuery {
    pub conference: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SessionsAnswer {
    pub taken_ms: u64,
    pub sessions: Vec<SessionRow>,
    /// Per conference, its video layers low to high.
    pub layers: BTreeMap<String, Vec<LayerRow>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SessionRow {
    pub id: String,
    pub conference: String,
    /// "viewer", "relay" or "publisher".
    pub role: String,
    pub shard: usize,
    pub connected: bool,
    /// "pending", "flowing", "audio_only", "stalled" (viewers).
    pub delivery: Option<String>,
    /// The layer forwarded now (0: lowest); none while paused, waiting or without video.
    pub layer: Option<u8>,
    /// The layer the bandwidth allocator chose (measured viewers).
    pub target_layer: Option<u8>,
    pub paused: bool,
    /// "bandwidth" (the link cannot carry the lowest layer) or "viewer".
    pub pause_reason: Option<String>,
    pub estimate_bps: Option<u64>,
    /// The rate a sustained probe keeps the link at before a switch up, padding included
    /// (measured viewers; none while no probe runs).
    pub sustain_bps: Option<u64>,
    pub switches: u32,
    /// Times the relay reset the viewer's bandwidth estimator: it neither rose nor probed
    /// while the viewer was paused or held below the top layer (measured viewers).
    #[serde(default)]
    pub estimator_resets: u32,
    /// For a relay (a downstream relay's pull): the layers it asked for and gets.
    pub relay_layers: Option<Vec<u8>>,
    pub rtt_ms: Option<u32>,
    pub loss: Option<f32>,
    pub media_bytes: u64,
    pub peer: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LayerRow {
    pub layer: u8,
    pub bitrate_bps: u64,
    pub active: bool,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Publisher => "publisher",
        Role::Subscriber => "viewer",
        Role::Relay => "relay",
    }
}

fn delivery_name(d: Delivery) -> &'static str {
    match d {
        Delivery::Pending => "pending",
        Delivery::Flowing => "flowing",
        Delivery::AudioOnly => "audio_only",
        Delivery::Stalled => "stalled",
    }
}

pub async fn sessions(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<SessionsQuery>,
) -> Result<Response, AppError> {
    state.access.check(&method, &headers, Access::Admin)?;
    let snap = state.engine.snapshot().await?;
    let wanted = |c: &str| q.conference.as_deref().is_none_or(|w| w == c);
    let sessions = snap
        .sessions
        .iter()
        .filter(|s| wanted(&s.conference))
        .map(|s| {
            let a = s.adaptation;
            SessionRow {
                id: s.id.to_string(),
                conference: s.conference.to_string(),
                role: role_name(s.role).into(),
                shard: s.shard,
                connected: s.connected,
                delivery: s.delivery.map(|d| delivery_name(d).into()),
                layer: match s.video {
                    Some(VideoStatus::Forwarding { layer }) => Some(layer.0),
                    _ => None,
                },
                target_layer: match a.and_then(|a| a.target) {
                    Some(Target::Layer(l)) => Some(l.0),
                    _ => None,
                },
                paused: matches!(s.video, Some(VideoStatus::Paused)),
                pause_reason: a
                    .and_then(|a| a.pause)
                    .or_else(|| {
                        matches!(s.video, Some(VideoStatus::Paused))
                            .then_some(hallcast_core::PauseReason::Viewer)
                    })
                    .map(|r| r.as_str().into()),
                estimate_bps: a.and_then(|a| a.estimate_bps),
                sustain_bps: a.map(|a| a.sustain_bps).filter(|&b| b > 0),
                switches: a.map_or(0, |a| a.switches),
                estimator_resets: a.map_or(0, |a| a.estimator_resets),
                relay_layers: s
                    .relay_layers
                    .map(|m| (0..m.len() as u8).filter(|&i| m[usize::from(i)]).collect()),
                rtt_ms: s.rtt_ms,
                loss: s.loss,
                media_bytes: s.media_bytes,
                peer: s.peer.map(|p| p.to_string()),
            }
        })
        .collect();
    let layers = snap
        .conferences
        .iter()
        .filter(|c| wanted(&c.id))
        .map(|c| {
            let rows = c
                .layer_bitrates
                .iter()
                .enumerate()
                .map(|(i, &bps)| LayerRow {
                    layer: i as u8,
                    bitrate_bps: bps,
                    active: bps > 0,
                })
                .collect();
            (c.id.to_string(), rows)
        })
        .collect();
    Ok(Json(SessionsAnswer {
        taken_ms: snap.taken_ms,
        sessions,
        layers,
    })
    .into_response())
}
