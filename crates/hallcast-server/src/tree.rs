//! The relay tree as one relay sees it: the relays below it (each reports here every
//! second), the answer they get (conferences, join-link keys, revocations), where a point
//! should be served (307 redirects), and `GET /api/v1/tree`.
//!
//! Every relay of the tree runs this, the central and the edges alike: an edge can serve
//! edges. A child's report carries its own subtree, so the central sees the whole tree
//! without talking to the grandchildren.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::auth::{self, secret_matches};
use crate::{AppError, AppState};

/// A child that has not reported for this long is `stale` (points are no longer sent there).
pub const STALE_AFTER: Duration = Duration::from_secs(3);
/// A child that has not reported for this long is `down`.
pub const DOWN_AFTER: Duration = Duration::from_secs(5);

/// What a child relay sends its parent every second (registration and health in one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct NodeReport {
    pub name: String,
    /// Its public base URL (where points and child relays reach it).
    pub url: String,
    /// Its current parent's URL (None: the central).
    pub parent: Option<String>,
    /// As the parent sees it: `up`, `stale` (no report for 3 s: no new points) or `down`
    /// (5 s). In a report the child sends, its own view (`up`, `connecting`, `failover`),
    /// which the parent moves to `uplink.state`.
    pub state: String,
    /// Organisations whose points the central sends here.
    pub organisations: Vec<String>,
    /// Takes points of any organisation when the central spreads by load.
    pub open: bool,
    pub uplink: Uplink,
    pub load: Load,
    /// Milliseconds since its parent last heard from it (filled by the parent).
    pub last_report_ms: Option<u64>,
    pub children: Vec<NodeReport>,
    /// Its pulls from the parent, each with the layers its own viewers and child relays
    /// use: the parent forwards only those.
    pub pulls: Vec<PullReport>,
    /// The relay is draining (SIGTERM): it takes no new points, and the parent shows its
    /// `state` as `draining` and never routes or redirects a point to it (nor below it).
    pub draining: bool,
}

/// One pull of a relay from its parent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct PullReport {
    pub conference: String,
    /// The pull's session at the parent (the last segment of its resource URL).
    pub session: String,
    /// The video layers wanted (0: lowest).
    pub layers: Vec<u8>,
}

/// The video layers a relay needs from its parent for `conference`, from its own
/// snapshot: each measured viewer's target and the layer above it (so it can climb: a
/// layer never pulled would never be measured, never chosen), the layer each viewer is
/// forwarded now (a switch down completes at the lower layer's keyframe), the top layer
/// for viewers that are not measured, layer 0 for paused ones, and whatever child relays
/// asked for. Nobody at all: layer 0, which keeps the branch warm for the next joiner.
pub fn wanted_layers(sessions: &[hallcast_rtc::SnapshotSession], conference: &str) -> Vec<u8> {
    use hallcast_core::{Layer, Target, VideoStatus};
    use hallcast_rtc::Role;
    let top = Layer::MAX - 1;
    let mut w = [false; Layer::MAX];
    for s in sessions.iter().filter(|s| &*s.conference == conference) {
        match s.role {
            Role::Publisher => continue,
            Role::Relay => {
                let asked = s.relay_layers.unwrap_or([true; Layer::MAX]);
                for (i, a) in asked.iter().enumerate() {
                    w[i] |= *a;
                }
            }
            Role::Subscriber => match s.adaptation.and_then(|a| a.target) {
                Some(Target::Layer(l)) => {
                    w[l.index()] = true;
                    w[(l.index() + 1).min(top)] = true;
                }
                Some(Target::Paused) => w[0] = true,
                None => w[top] = true,
            },
        }
        if let Some(VideoStatus::Forwarding { layer }) = s.video {
            w[layer.index()] = true;
        }
    }
    if !w.contains(&true) {
        w[0] = true;
    }
    (0..Layer::MAX as u8)
        .filter(|&i| w[usize::from(i)])
        .collect()
}

/// Applies a child's pulls: the parent forwards each only the layers it asked for.
/// Returns the reported pulls this relay has no session for: the child pulls them again at
/// once (this relay restarted, or the pull ended here) instead of waiting for its media timeout.
async fn apply_pulls(state: &AppState, pulls: &[PullReport]) -> Vec<String> {
    let mut gone = Vec::new();
    for p in pulls {
        let Ok(session) = p.session.parse::<hallcast_rtc::SessionId>() else {
            continue;
        };
        let mut mask = [false; hallcast_core::Layer::MAX];
        for &l in &p.layers {
            if let Some(m) = mask.get_mut(usize::from(l)) {
                *m = true;
            }
        }
        if !mask.contains(&true) {
            continue;
        }
        // An unknown session (the pull just ended or moved, or this relay restarted) is not an
        // error of the report: the answer names it.
        if let Err(hallcast_rtc::EngineError::UnknownSession) =
            state.engine.set_relay_layers(session, mask).await
        {
            gone.push(p.session.clone());
        }
    }
    gone
}

/// The link from a relay to its parent, as the relay measures it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Uplink {
    /// The relay's own view: `up` (primary parent), `failover` (a fallback parent),
    /// `connecting` (no parent has answered yet).
    pub state: String,
    pub rtt_ms: Option<u32>,
    /// Fraction of packets lost on the way in (0..1).
    pub loss: Option<f32>,
    pub bitrate_in_bps: u64,
    /// Conferences being pulled from the parent.
    pub pulls: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Load {
    /// Viewers (points) on this relay.
    pub viewers: usize,
    /// Child relays pulling from this relay.
    pub relays: usize,
    /// CPU used by the relay process, in cores (1.0 = one core busy).
    pub cpu: f64,
    pub bitrate_in_bps: u64,
}

/// The parent's answer to a report: what the child needs to serve its points.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct SyncAnswer {
    /// The central's public URL (where a point's page goes when its own relay dies).
    pub root: String,
    pub conferences: Vec<SyncConference>,
    /// The Ed25519 public key that verifies join links (base64url).
    pub join_key: String,
    /// Revoked join links: only tokens of the current generation are valid.
    pub revocations: Vec<Revocation>,
    /// The parent is draining (SIGTERM): a child with a fallback moves there now.
    pub draining: bool,
    /// Sessions of the child's reported pulls that the parent does not have (it restarted
    /// after a crash, or the pull ended there): the child ends them and pulls again now, so its
    /// viewers get the feed back within moments of the parent's return, not after its media
    /// timeout. Absent from relays before it (empty).
    pub gone_pulls: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct SyncConference {
    pub id: String,
    pub title: String,
    pub viewer_token: String,
    /// The hall feed reaches this relay.
    pub live: bool,
    /// The admin ended the conference.
    pub ended: bool,
    /// The latest roll call started (on the central), so that the edge asks its points too and
    /// takes their answers (its outbox sends them up). Absent from relays before roll calls.
    pub rollcall: Option<crate::events::RollCallNotice>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
pub struct Revocation {
    pub conference: String,
    pub point: String,
    pub generation: u32,
}

/// Where join-link verification keys come from: the ledger on the central, the parent's
/// last answer on an edge.
pub trait JoinKeys: Send + Sync + 'static {
    fn public_key(&self) -> String;
    fn revocations(&self) -> Vec<Revocation>;
}

/// No join links (a relay without a ledger key, e.g. in unit tests).
pub struct NoJoinKeys;

impl JoinKeys for NoJoinKeys {
    fn public_key(&self) -> String {
        String::new()
    }
    fn revocations(&self) -> Vec<Revocation> {
        vec![]
    }
}

struct Child {
    report: NodeReport,
    at: Instant,
}

/// This relay's view of the tree below it.
pub struct Tree {
    /// This relay's name and public URL.
    pub name: String,
    pub url: String,
    /// The credential children present (empty: no child is accepted).
    credential: String,
    children: Mutex<HashMap<String, Child>>,
    /// The central's URL: this relay's own on the central, learnt from the parent on an edge.
    root: RwLock<String>,
    keys: RwLock<Arc<dyn JoinKeys>>,
    /// Point → organisation (the central's registry), for redirects.
    point_orgs: RwLock<HashMap<String, String>>,
    /// This relay's own uplink, as the edge loop last described it (None on the central).
    own: RwLock<Option<NodeReport>>,
    /// When the parent last answered a report (an edge; None: never, or the central).
    parent_answer: Mutex<Option<Instant>>,
}

impl Tree {
    pub fn new(name: String, url: String, credential: String) -> Tree {
        Tree {
            name,
            root: RwLock::new(url.clone()),
            url,
            credential,
            children: Mutex::new(HashMap::new()),
            keys: RwLock::new(Arc::new(NoJoinKeys)),
            point_orgs: RwLock::new(HashMap::new()),
            own: RwLock::new(None),
            parent_answer: Mutex::new(None),
        }
    }

    /// The edge loop got an answer from the parent.
    pub fn parent_answered(&self, now: Instant) {
        *self.parent_answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
    }

    /// Whether the parent answered a report within `window` before `now`.
    pub fn parent_answered_within(&self, now: Instant, window: Duration) -> bool {
        self.parent_answer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| now.saturating_duration_since(at) < window)
    }

    /// How long ago the parent last answered (None: never).
    pub fn parent_answer_age(&self, now: Instant) -> Option<Duration> {
        self.parent_answer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|at| now.saturating_duration_since(at))
    }

    pub fn set_keys(&self, keys: Arc<dyn JoinKeys>) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    pub fn set_root(&self, root: String) {
        *self.root.write().unwrap_or_else(|p| p.into_inner()) = root;
    }

    pub fn root(&self) -> String {
        self.root.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_point_orgs(&self, map: HashMap<String, String>) {
        *self.point_orgs.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// The edge loop's latest picture of this relay (its uplink, state and parent).
    pub fn set_own(&self, report: NodeReport) {
        *self.own.write().unwrap_or_else(|p| p.into_inner()) = Some(report);
    }

    pub fn own(&self) -> Option<NodeReport> {
        self.own.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether `token` is the relay credential.
    pub fn is_relay(&self, token: &str) -> bool {
        secret_matches(token, &self.credential)
    }

    /// Records a child's report.
    pub fn record(&self, report: NodeReport, now: Instant) {
        self.lock()
            .insert(report.name.clone(), Child { report, at: now });
    }

    /// The children with their state and age filled in, by name.
    pub fn children(&self, now: Instant) -> Vec<NodeReport> {
        let mut v: Vec<NodeReport> = self
            .lock()
            .values()
            .map(|c| {
                let age = now.saturating_duration_since(c.at);
                let mut r = c.report.clone();
                // The child's own word on its uplink (up, connecting, failover) moves to
                // `uplink.state`; `state` is the parent's view: up, stale or down.
                if r.uplink.state.is_empty() {
                    r.uplink.state = std::mem::take(&mut r.state);
                }
                r.state = state_of(age).into();
                if r.draining && r.state == "up" {
                    r.state = "draining".into();
                }
                r.last_report_ms = Some(age.as_millis() as u64);
                if r.state == "down" {
                    // What a dead relay last said about its children is no longer known: they
                    // show up wherever they hang now (their fallback parent).
                    r.children.clear();
                } else if r.state == "stale" {
                    for child in &mut r.children {
                        mark(child, "stale");
                    }
                }
                r
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Whether any relay below this one is up (not stale, down or draining): somewhere its
    /// viewers could be moved to. A central without one has nothing to drain into.
    pub fn has_live_edge(&self, now: Instant) -> bool {
        let kids = self.children(now);
        let mut live = Vec::new();
        for c in &kids {
            collect_live(c, &mut live);
        }
        !live.is_empty()
    }

    /// Where a point of `point` should be served instead of here, if anywhere: a live edge
    /// of its organisation first, then the least-loaded live edge that takes any point.
    pub fn redirect_for(&self, point: &str, now: Instant) -> Option<String> {
        self.redirect_avoiding(point, now, None)
    }

    /// [`Tree::redirect_for`] never naming `avoid` (a relay's base URL or origin).
    pub fn redirect_avoiding(
        &self,
        point: &str,
        now: Instant,
        avoid: Option<&str>,
    ) -> Option<String> {
        let org = self
            .point_orgs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(point)
            .cloned();
        let kids = self.children(now);
        let mut live = Vec::new();
        for c in &kids {
            collect_live(c, &mut live);
        }
        if let Some(avoid) = avoid {
            live.retain(|n| n.url.trim_end_matches('/') != avoid);
        }
        let least = |v: Vec<&NodeReport>| {
            v.into_iter()
                .min_by_key(|n| (n.load.viewers, n.name.clone()))
                .map(|n| n.url.clone())
        };
        if let Some(org) = org {
            let mine: Vec<&NodeReport> = live
                .iter()
                .copied()
                .filter(|n| n.organisations.contains(&org))
                .collect();
            if !mine.is_empty() {
                return least(mine);
            }
        }
        least(live.iter().copied().filter(|n| n.open).collect())
    }

    /// The answer a child gets: built from the registry, the media engine and the keys.
    pub async fn sync(&self, state: &AppState) -> SyncAnswer {
        let live: std::collections::HashSet<String> = match state.engine.snapshot().await {
            Ok(s) => s
                .conferences
                .iter()
                .filter(|c| c.live)
                .map(|c| c.id.to_string())
                .collect(),
            Err(_) => Default::default(),
        };
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        SyncAnswer {
            root: self.root(),
            conferences: state
                .registry
                .all()
                .iter()
                .map(|c| SyncConference {
                    id: c.id.to_string(),
                    title: c.title.clone(),
                    viewer_token: c.viewer_token.clone(),
                    live: c.ended_ms.is_none() && live.contains(c.id.as_str()),
                    ended: c.ended_ms.is_some(),
                    rollcall: state.events.rollcall(c.id.as_str()),
                })
                .collect(),
            join_key: keys.public_key(),
            revocations: keys.revocations(),
            draining: state.drain.is_draining(),
            gone_pulls: Vec::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Child>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn state_of(age: Duration) -> &'static str {
    if age >= DOWN_AFTER {
        "down"
    } else if age >= STALE_AFTER {
        "stale"
    } else {
        "up"
    }
}

fn mark(n: &mut NodeReport, state: &str) {
    n.state = state.into();
    for c in &mut n.children {
        mark(c, state);
    }
}

/// Nodes that can take points: reporting, not draining, with a live path to this relay.
fn collect_live<'a>(n: &'a NodeReport, out: &mut Vec<&'a NodeReport>) {
    if n.state != "up" {
        return;
    }
    out.push(n);
    for c in &n.children {
        collect_live(c, out);
    }
}

// ----- HTTP -----

fn relay_auth(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let token =
        auth::bearer(headers).map_err(|e| AppError::new(StatusCode::UNAUTHORIZED, e.message()))?;
    if !state.tree.is_relay(token) {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "wrong relay credential (the central's `relay_credential`)",
        ));
    }
    Ok(())
}

/// `POST /api/v1/relay/report`: a child relay's report; the answer is a [`SyncAnswer`].
pub async fn report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    relay_auth(&state, &headers)?;
    let report: NodeReport = serde_json::from_slice(&body).map_err(|e| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            format!("the report is not a valid node report (JSON): {e}"),
        )
    })?;
    if report.name.is_empty() || report.name.len() > 128 {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "the report needs a name of 1 to 128 characters",
        ));
    }
    if report.name == state.tree.name {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            format!(
                "the relay name {:?} is this relay's own: every relay of the tree needs its own name (upstream.name)",
                report.name
            ),
        ));
    }
    let gone_pulls = apply_pulls(&state, &report.pulls).await;
    state.tree.record(report, Instant::now());
    let mut answer = state.tree.sync(&state).await;
    answer.gone_pulls = gone_pulls;
    Ok(Json(answer).into_response())
}

/// The whole tree from this relay down.
#[derive(Debug, Serialize)]
pub struct TreeAnswer {
    pub name: String,
    pub url: String,
    pub state: String,
    pub parent: Option<String>,
    pub uplink: Option<Uplink>,
    pub load: Load,
    pub children: Vec<NodeReport>,
}

/// Bits per second a conference's producer receives (every video layer and the audio).
pub fn bitrate_in(c: &hallcast_rtc::SnapshotConference) -> u64 {
    c.layer_bitrates.iter().sum::<u64>() + c.audio_bitrate
}

/// This relay's own load, from one engine snapshot (None: the engine gave none).
pub fn load_of(snapshot: Option<&hallcast_rtc::Snapshot>) -> Load {
    let mut load = Load {
        cpu: crate::metrics::process_cpu_cores(),
        ..Load::default()
    };
    for c in snapshot.iter().flat_map(|s| &s.conferences) {
        load.viewers += c.n_subscribers;
        load.relays += c.n_relays;
        load.bitrate_in_bps += bitrate_in(c);
    }
    load
}

/// `GET /api/v1/tree` (admin: the admin token or an admin's console session).
pub async fn tree(
    State(state): State<Arc<AppState>>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    state
        .access
        .check(&method, &headers, crate::access::Role::Admin)?;
    let own = state.tree.own();
    let answer = TreeAnswer {
        name: state.tree.name.clone(),
        url: state.tree.url.clone(),
        state: if state.drain.is_draining() {
            "draining"
        } else {
            "up"
        }
        .into(),
        parent: own.as_ref().and_then(|o| o.parent.clone()),
        uplink: own.as_ref().map(|o| Uplink {
            state: o.state.clone(),
            ..o.uplink.clone()
        }),
        load: load_of(state.engine.snapshot().await.ok().as_ref()),
        children: state.tree.children(Instant::now()),
    };
    Ok(Json(answer).into_response())
}

#[derive(Debug, Deserialize)]
pub struct WatchQuery {
    pub token: Option<String>,
}

/// The point a bearer token identifies for `conference`, if it is a valid join link.
fn point_of(state: &AppState, conference: &str, token: &str) -> Option<String> {
    state.viewer_auth.verify(conference, token)?.point
}

/// `GET /api/v1/conferences/{conference}/route` with a viewer token: the WHEP URL this
/// viewer should use (an edge's, or this relay's own). The viewer page asks it here, and
/// asks the central (`home`) when its own relay has gone.
#[derive(Debug, Deserialize)]
pub struct RouteQuery {
    /// A relay the viewer found gone (its base URL or origin): never named in the answer,
    /// even before this relay marks it stale.
    pub avoid: Option<String>,
}

pub async fn route(
    State(state): State<Arc<AppState>>,
    Path(conference): Path<String>,
    query: Query<RouteQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let token =
        auth::bearer(&headers).map_err(|e| AppError::new(StatusCode::UNAUTHORIZED, e.message()))?;
    let Some(conf) = state.registry.lookup(&conference).await else {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            format!("no conference {conference:?} on this relay"),
        ));
    };
    let point = point_of(&state, &conference, token);
    if point.is_none() && !secret_matches(token, &conf.viewer_token) {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "invalid, expired or revoked viewer token",
        ));
    }
    let avoid = query.avoid.as_deref().map(|a| a.trim_end_matches('/'));
    let edge = edge_for(&state, token, point.as_deref(), avoid);
    // This relay's own STUN/TURN servers when it serves the point itself, so a page whose
    // network blocks UDP has its TURN server for the first offer (the WHEP answer's `Link`
    // headers come too late for that connection). An edge's come in its own answers.
    let ice_servers: Vec<serde_json::Value> = if edge.is_none() {
        state
            .config
            .ice_servers
            .iter()
            .map(|s| {
                let mut v = serde_json::json!({ "urls": s.urls });
                if !s.username.is_empty() {
                    v["username"] = s.username.clone().into();
                    v["credential"] = s.credential.clone().into();
                }
                v
            })
            .collect()
    } else {
        Vec::new()
    };
    let base = edge.unwrap_or_else(|| state.config.public_url());
    Ok(Json(serde_json::json!({
        "whep": format!("{base}/whep/{conference}"),
        "relay": base,
        "home": state.tree.root(),
        "ice_servers": ice_servers,
    }))
    .into_response())
}

/// The edge that should serve the point holding `token`, if any. Edges verify with the public
/// key only: links of the first form (HMAC, `v1.`) are served here.
fn edge_for(
    state: &AppState,
    token: &str,
    point: Option<&str>,
    avoid: Option<&str>,
) -> Option<String> {
    if !token.starts_with("v2.") {
        return None;
    }
    state.tree.redirect_avoiding(point?, Instant::now(), avoid)
}

/// The 307 a point's request at this relay gets when an edge should serve it.
pub fn redirect(state: &AppState, conference: &str, token: &str, path: &str) -> Option<Response> {
    let point = point_of(state, conference, token);
    let edge = edge_for(state, token, point.as_deref(), None)?;
    let location = HeaderValue::from_str(&format!("{edge}{path}")).ok()?;
    let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
    r.headers_mut().insert(header::LOCATION, location);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(r)
}

/// `GET /watch/{conference}?token=…` at a relay that has an edge for this point: 307 to the
/// edge's page, which learns where home is.
pub fn watch_redirect(
    state: &AppState,
    conference: &str,
    query: &Query<WatchQuery>,
) -> Option<Response> {
    let token = query.token.as_deref()?;
    let home = state.tree.root();
    let path = format!(
        "/watch/{conference}?token={}&home={}",
        urlencode(token),
        urlencode(&home)
    );
    redirect(state, conference, token, &path)
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A roll call started on this relay travels to its children in the sync answer (so points
    /// on edges are asked too); a parent from before roll calls sends none.
    #[tokio::test]
    async fn sync_carries_the_running_roll_call() {
        let (state, dir) = crate::test_state("hallcast-tree-sync").await;
        let id = hallcast_core::accounting::ConferenceId::parse("hn").unwrap();
        state
            .registry
            .create_or_rename(id, "T".into(), None)
            .await
            .unwrap();
        let sync = state.tree.sync(&state).await;
        assert_eq!(sync.conferences[0].rollcall, None);
        let notice = crate::events::RollCallNotice {
            id: format!("{:032x}", 0x5u128),
            started_ms: 1_000,
            deadline_ms: 61_000,
        };
        state.events.start_rollcall("hn", notice.clone());
        let sync = state.tree.sync(&state).await;
        assert_eq!(sync.conferences[0].rollcall.as_ref(), Some(&notice));
        let json = serde_json::to_string(&sync).unwrap();
        let back: SyncAnswer = serde_json::from_str(&json).unwrap();
        assert_eq!(back.conferences[0].rollcall, Some(notice));
        let old: SyncConference = serde_json::from_str(r#"{"id":"hn","live":true}"#).unwrap();
        assert_eq!(old.rollcall, None);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A child's report naming a pull this relay has no session for (this relay restarted
    /// after a crash) gets it back in `gone_pulls`, so the child pulls again at once; a
    /// session id that is not one is passed over; a parent from before sends no such key.
    #[tokio::test]
    async fn a_reported_pull_this_relay_does_not_have_is_answered_gone() {
        let (state, dir) = crate::test_state("hallcast-tree-gone-pulls").await;
        let unknown = format!("{:032x}", 0x7u128);
        let pulls = [
            PullReport {
                conference: "hn".into(),
                session: unknown.clone(),
                layers: vec![0],
            },
            PullReport {
                conference: "hn".into(),
                session: "not-a-session".into(),
                layers: vec![0],
            },
        ];
        assert_eq!(apply_pulls(&state, &pulls).await, vec![unknown]);
        assert!(state.tree.sync(&state).await.gone_pulls.is_empty());
        let old: SyncAnswer =
            serde_json::from_str(r#"{"root":"http://c","conferences":[]}"#).unwrap();
        assert!(old.gone_pulls.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    fn session(
        role: hallcast_rtc::Role,
        target: Option<hallcast_core::Target>,
        forwarding: Option<u8>,
        relay_layers: Option<[bool; 3]>,
    ) -> hallcast_rtc::SnapshotSession {
        hallcast_rtc::SnapshotSession {
            id: hallcast_rtc::SessionId(1),
            conference: "c".into(),
            role,
            shard: 0,
            connected: true,
            delivery: None,
            video: forwarding.map(|l| hallcast_core::VideoStatus::Forwarding {
                layer: hallcast_core::Layer(l),
            }),
            adaptation: target.map(|t| hallcast_core::Allocation {
                target: Some(t),
                estimate_bps: Some(1),
                desired_bps: 0,
                sustain_bps: 0,
                switches: 0,
                pause: None,
                estimator_resets: 0,
                reset_bps: None,
            }),
            relay_layers,
            rtt_ms: None,
            loss: None,
            media_bytes: 0,
            peer: None,
        }
    }

    #[test]
    fn an_edge_wants_the_layers_its_viewers_use_and_the_next_one_up() {
        use hallcast_core::{Layer, Target};
        use hallcast_rtc::Role::{Publisher, Relay, Subscriber};
        let l = |i| Some(Target::Layer(Layer(i)));
        // Nobody: layer 0 keeps the branch warm.
        assert_eq!(wanted_layers(&[], "c"), vec![0]);
        // Weak links only: the low layers, not the top.
        let weak = [
            session(Subscriber, l(0), Some(0), None),
            session(Subscriber, Some(Target::Paused), None, None),
            session(Publisher, None, None, None),
        ];
        assert_eq!(wanted_layers(&weak, "c"), vec![0, 1]);
        assert_eq!(wanted_layers(&weak, "other"), vec![0]);
        // Everyone on the top layer: only the top.
        let good = [session(Subscriber, l(2), Some(2), None)];
        assert_eq!(wanted_layers(&good, "c"), vec![2]);
        // A switch down in progress keeps the old layer until the new one's keyframe.
        let switching = [session(Subscriber, l(0), Some(2), None)];
        assert_eq!(wanted_layers(&switching, "c"), vec![0, 1, 2]);
        // A viewer that is not measured wants the top; a child relay what it asked for.
        let mixed = [
            session(Subscriber, None, None, None),
            session(Relay, None, None, Some([true, false, false])),
        ];
        assert_eq!(wanted_layers(&mixed, "c"), vec![0, 2]);
    }

    fn node(name: &str, orgs: &[&str], open: bool, viewers: usize) -> NodeReport {
        NodeReport {
            name: name.into(),
            url: format!("http://{name}"),
            state: "up".into(),
            organisations: orgs.iter().map(|s| s.to_string()).collect(),
            open,
            load: Load {
                viewers,
                ..Load::default()
            },
            ..NodeReport::default()
        }
    }

    #[test]
    fn points_go_to_their_organisations_edge_then_by_load_and_never_to_a_dead_one() {
        let tree = Tree::new("central".into(), "http://central".into(), "c".repeat(16));
        tree.set_point_orgs(HashMap::from([
            ("p1".to_string(), "org-a".to_string()),
            ("p2".to_string(), "org-b".to_string()),
        ]));
        let t0 = Instant::now();
        assert_eq!(tree.redirect_for("p1", t0), None, "no edge: served here");
        let mut mid = node("mid", &[], true, 40);
        mid.children.push(node("leaf-a", &["org-a"], false, 3));
        tree.record(mid, t0);
        tree.record(node("open-2", &[], true, 10), t0);
        assert_eq!(
            tree.redirect_for("p1", t0).as_deref(),
            Some("http://leaf-a"),
            "a grandchild edge of the point's organisation"
        );
        assert_eq!(
            tree.redirect_for("p2", t0).as_deref(),
            Some("http://open-2"),
            "no edge of its organisation: the least-loaded open edge"
        );
        assert_eq!(
            tree.redirect_for("p-unknown", t0).as_deref(),
            Some("http://open-2")
        );
        // The middle edge stops reporting: neither it nor what hangs below it takes points.
        tree.record(node("open-2", &[], true, 10), t0 + STALE_AFTER);
        let later = t0 + STALE_AFTER + Duration::from_millis(1);
        assert_eq!(
            tree.redirect_for("p1", later).as_deref(),
            Some("http://open-2")
        );
        let kids = tree.children(t0 + STALE_AFTER);
        let mid = kids.iter().find(|n| n.name == "mid").unwrap();
        assert_eq!(
            (mid.state.as_str(), mid.children[0].state.as_str()),
            ("stale", "stale")
        );
        assert_eq!(mid.uplink.state, "up", "the child's own view is kept");
        let kids = tree.children(t0 + DOWN_AFTER);
        let mid = kids.iter().find(|n| n.name == "mid").unwrap();
        assert_eq!(mid.state, "down");
        assert!(
            mid.children.is_empty(),
            "a dead relay's children are not claimed under it"
        );
    }

    #[test]
    fn a_draining_edge_gets_no_points_and_is_shown_draining() {
        let tree = Tree::new("central".into(), "http://central".into(), "c".repeat(16));
        tree.set_point_orgs(HashMap::from([("p1".to_string(), "org-a".to_string())]));
        let t0 = Instant::now();
        tree.record(node("edge-a", &["org-a"], true, 1), t0);
        tree.record(node("edge-b", &[], true, 5), t0);
        assert_eq!(
            tree.redirect_for("p1", t0).as_deref(),
            Some("http://edge-a")
        );
        let mut draining = node("edge-a", &["org-a"], true, 1);
        draining.draining = true;
        draining
            .children
            .push(node("below-a", &["org-a"], false, 0));
        tree.record(draining, t0);
        assert_eq!(
            tree.redirect_for("p1", t0).as_deref(),
            Some("http://edge-b"),
            "neither the draining edge nor what hangs below it: an open sibling"
        );
        let kids = tree.children(t0);
        let a = kids.iter().find(|n| n.name == "edge-a").unwrap();
        assert_eq!(a.state, "draining");
        assert!(tree.has_live_edge(t0), "edge-b is up");
        tree.record(node("edge-b", &[], false, 5), t0);
        assert!(
            tree.has_live_edge(t0),
            "edge-b is closed to other organisations' points but up"
        );
        assert_eq!(
            tree.redirect_for("p1", t0),
            None,
            "nowhere else: served here"
        );
        // A draining edge that stops reporting is stale, then down, as any other.
        let kids = tree.children(t0 + DOWN_AFTER);
        let a = kids.iter().find(|n| n.name == "edge-a").unwrap();
        assert_eq!(a.state, "down");
        assert!(
            !tree.has_live_edge(t0 + DOWN_AFTER),
            "every edge down: nowhere to move viewers to"
        );
        let lone = Tree::new("central".into(), "http://central".into(), "c".repeat(16));
        assert!(!lone.has_live_edge(t0), "no edge at all");
        let old: NodeReport = serde_json::from_str(r#"{"name":"old"}"#).unwrap();
        assert!(!old.draining, "a report from before drains is not draining");
    }

    #[test]
    fn only_the_relay_credential_is_a_relay() {
        let tree = Tree::new("c".into(), "http://c".into(), "s".repeat(16));
        assert!(tree.is_relay(&"s".repeat(16)));
        assert!(!tree.is_relay("nope"));
        let none = Tree::new("c".into(), "http://c".into(), String::new());
        assert!(!none.is_relay(""), "an empty credential accepts nobody");
    }
}
