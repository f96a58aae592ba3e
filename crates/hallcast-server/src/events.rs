//! WHEP server-sent events (the WHEP draft's `server-sent-events` extension): a viewer hears
//! whether the broadcast is live, how many viewers the conference has and what the relay
//! allocates to it (its layer, or video paused because its link is too weak).
//!
//! ```text
//! POST /whep/{c}                       201, Link: </whep/{c}/{s}/events>;
//!                                           rel="urn:ietf:params:whep:ext:core:server-sent-events";
//!                                           events="active,inactive,layers,viewercount"
//! POST /whep/{c}/{s}/events            Bearer (the session's own credential), ["active","layers"]
//!                                      → 201, Location: /whep/{c}/{s}/events/{stream token}
//! GET  /whep/{c}/{s}/events/{token}    Accept: text/event-stream → the stream
//! ```
//! The stream URL carries a fresh 128-bit token and no other credential (`EventSource` sends
//! no `Authorization`): only the holder of the session's credential can mint it, and it names
//! one session. It ends when the session ends.
//!
//! Events (`data` is JSON):
//! * `active` / `inactive` (`{}`): the broadcast is live / not live (at subscription, then on
//!   every change);
//! * `viewercount` (`{"viewercount": N}`): viewers of the conference on this relay, at most
//!   every [`TICK`];
//! * `rollcall` (`{"id": "<32 hex>", "deadline_ms": N, "remaining_ms": N}`): an organiser
//!   started a roll call (điểm danh) that runs until `deadline_ms` (Unix ms; `remaining_ms`
//!   is the time left when the relay sent it, for pages whose clock is off): sent when it
//!   starts and at subscription while it runs, so a point that drops and rejoins during the
//!   countdown still gets it. Only to sessions of a connection point (a join link): they
//!   answer with that link's token (`POST /api/v1/conferences/{c}/rollcalls/{id}/answer`);
//! * `drain` (`{"relay": URL, "url": URL|null, "home": URL, "parent": URL|null,
//!   "deadline_ms": N}`): this relay is stopping (SIGTERM, see [`crate::drain`]): connect
//!   elsewhere — ask `url` (the central, else the parent) for a route avoiding `relay` — and
//!   then let go of this session; the relay ends the sessions still here at `deadline_ms`.
//!   Sent once, when the drain starts or at subscription during one;
//! * `layers`: this viewer's allocation —
//!   `{"video": {"layer": 0|null, "target": 0|null, "paused": bool, "reason":
//!   "bandwidth"|"viewer"|null, "estimate_bps": N|null, "available": [{"layer": 0,
//!   "bitrate_bps": N}, …]}}` (`layer`: forwarded now; `target`: the allocator's choice;
//!   `available`: the conference's active layers, low to high), at subscription, on every
//!   `EngineEvent::Adaptation` of the session and when the forwarded layer or the set of
//!   active layers changes.
//!
//! Fan-out: the event pump feeds [`Hub::on_event`] (allocations, broadcast start/end); one
//! ticker task reads the engine snapshot every [`TICK`] for viewer counts, layer bitrates and
//! the forwarded layers. Each viewer and each watched conference has a `tokio::sync::watch`
//! cell; a stream waits on its two cells and never on a media thread.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use hallcast_core::{PauseReason, Target, VideoStatus};
use hallcast_rtc::{Engine, EngineEvent, Role, SessionId, Snapshot};
use serde_json::json;
use tokio::sync::watch;

use crate::auth::secret_matches;
use crate::{AppError, AppState};

/// The link relation of the extension (WHEP draft, "Server Sent Events extension").
pub const REL: &str = "urn:ietf:params:whep:ext:core:server-sent-events";
/// The events this relay sends, in the `events` attribute of the `Link`.
pub const EVENTS: [&str; 6] = [
    "active",
    "inactive",
    "layers",
    "viewercount",
    "rollcall",
    "drain",
];
/// How often the snapshot is read for viewer counts, layer bitrates and forwarded layers.
pub const TICK: Duration = Duration::from_secs(2);
/// Keep-alive comments: proxies cut idle responses after 30–60 s.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The largest subscription body: a JSON array of a few names.
pub const MAX_BODY: usize = 1024;
/// Open streams per session (an `EventSource` reconnecting after a network error opens a new
/// one before the relay has noticed the old one is gone).
pub const MAX_STREAMS: usize = 4;

/// The `Link` header value of a viewer session's events resource.
pub fn link(conference: &str, session: SessionId) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "</whep/{conference}/{session}/events>; rel=\"{REL}\"; events=\"{}\"",
        EVENTS.join(",")
    ))
    .ok()
}

/// Which events a subscription asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSet {
    pub active: bool,
    pub inactive: bool,
    pub layers: bool,
    pub viewercount: bool,
    pub rollcall: bool,
    pub drain: bool,
}

impl EventSet {
    /// Parses the subscription body: a non-empty JSON array of known event names.
    pub fn parse(body: &[u8]) -> Result<EventSet, String> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            format!(
                "the body must be a JSON array of event names, e.g. [\"active\",\"layers\"]: {e}"
            )
        })?;
        let serde_json::Value::Array(items) = value else {
            return Err(format!(
                "the body must be a JSON array of event names (one of {}), not {}",
                EVENTS.join(", "),
                kind_of(&value)
            ));
        };
        if items.is_empty() {
            return Err(format!(
                "the array names no event: ask for some of {}",
                EVENTS.join(", ")
            ));
        }
        let mut set = EventSet::default();
        let mut unknown = Vec::new();
        for item in &items {
            match item.as_str() {
                Some("active") => set.active = true,
                Some("inactive") => set.inactive = true,
                Some("layers") => set.layers = true,
                Some("viewercount") => set.viewercount = true,
                Some("rollcall") => set.rollcall = true,
                Some("drain") => set.drain = true,
                Some(other) => unknown.push(format!("{other:?}")),
                None => unknown.push(item.to_string()),
            }
        }
        if !unknown.is_empty() {
            return Err(format!(
                "unknown event {}: this relay sends {}",
                unknown.join(", "),
                EVENTS.join(", ")
            ));
        }
        Ok(set)
    }
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// What a viewer is allocated, as the `layers` event says it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ViewerState {
    /// Forwarded now (from the snapshot).
    layer: Option<u8>,
    /// The allocator's choice.
    target: Option<u8>,
    pause: Option<PauseReason>,
    estimate_bps: Option<u64>,
    /// Whether an `Adaptation` event set `target`/`pause`/`estimate_bps` (else the snapshot may).
    from_event: bool,
}

/// A conference as its streams see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ConferenceState {
    live: bool,
    n_viewers: usize,
    /// Active layers, low to high: (layer, measured bits per second).
    layers: Vec<(u8, u64)>,
    /// The latest roll call started (it may be over: see its deadline).
    rollcall: Option<RollCallNotice>,
}

/// A roll call as the viewer pages hear of it (and as a parent relay tells its edges: the
/// tree's sync carries it, so points on edges are asked too).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RollCallNotice {
    /// 32 hex digits.
    pub id: String,
    /// Unix milliseconds.
    #[serde(default)]
    pub started_ms: i64,
    /// Unix milliseconds.
    pub deadline_ms: i64,
}

struct Subscription {
    /// The stream URL's token (32 hex digits).
    token: String,
    events: EventSet,
    /// The session is a connection point's (a join link): it can answer roll calls.
    point: bool,
}

/// One viewer session known to the hub (from its first allocation or subscription to its end).
struct Slot {
    conference: Arc<str>,
    state: watch::Sender<ViewerState>,
    subscription: Option<Subscription>,
    n_streams: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Inner {
    /// Broadcast state per conference, from `BroadcastStarted`/`BroadcastEnded`.
    live: HashMap<Arc<str>, bool>,
    /// Conferences somebody streams events of.
    conferences: HashMap<Arc<str>, watch::Sender<ConferenceState>>,
    /// The latest roll call started per conference.
    rollcalls: HashMap<Arc<str>, RollCallNotice>,
    sessions: HashMap<SessionId, Slot>,
}

/// The per-session and per-conference cells the streams wait on.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<Inner>,
    /// Counts `BroadcastStarted` events (after `Inner::live` says so): what a held status
    /// request waits on ([`Hub::wait_live`]), apart from the streams' conference cells.
    started: watch::Sender<u64>,
    ticker: OnceLock<()>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hub")
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Poisoned: a handler panicked mid-update of plain maps; they stay usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A roll call started (or, after a restart, is still running): every point session of
    /// the conference that subscribed to `rollcall` hears of it now, and later subscribers
    /// until its deadline.
    pub fn start_rollcall(&self, conference: &str, notice: RollCallNotice) {
        let mut inner = self.inner();
        let key: Arc<str> = Arc::from(conference);
        if let Some(tx) = inner.conferences.get(&key) {
            let n = notice.clone();
            tx.send_if_modified(|c| {
                let changed = c.rollcall.as_ref() != Some(&n);
                c.rollcall = Some(n);
                changed
            });
        }
        inner.rollcalls.insert(key, notice);
    }

    /// The latest roll call started in `conference` (it may be over: see its deadline).
    pub fn rollcall(&self, conference: &str) -> Option<RollCallNotice> {
        self.inner().rollcalls.get(conference).cloned()
    }

    /// Waits until `conference` goes live (a `BroadcastStarted`) or `limit` passes; whether
    /// it did. A waiting viewer page holds this (`GET .../status?wait_live=S`) instead of
    /// asking with a WHEP offer every `Retry-After`: it connects the moment the hall goes
    /// live, not up to a retry later.
    pub async fn wait_live(&self, conference: &str, limit: std::time::Duration) -> bool {
        // Subscribed before the look at `live`: a start between the two is not missed.
        let mut started = self.started.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.inner().live.get(conference).copied().unwrap_or(false) {
                return true;
            }
            match tokio::time::timeout_at(deadline, started.changed()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
    }

    /// Called by the event pump for every engine event, after the session table was updated.
    pub fn on_event(&self, event: &EngineEvent) {
        match event {
            EngineEvent::BroadcastStarted { conference, .. }
            | EngineEvent::BroadcastEnded { conference, .. } => {
                let live = matches!(event, EngineEvent::BroadcastStarted { .. });
                let mut inner = self.inner();
                inner.live.insert(conference.clone(), live);
                if let Some(tx) = inner.conferences.get(conference) {
                    tx.send_if_modified(|c| std::mem::replace(&mut c.live, live) != live);
                }
                drop(inner);
                if live {
                    self.started.send_modify(|n| *n += 1);
                }
            }
            EngineEvent::Adaptation {
                conference,
                session,
                target,
                paused,
                estimate_bps,
                ..
            } => {
                let mut inner = self.inner();
                let slot = inner
                    .sessions
                    .entry(*session)
                    .or_insert_with(|| Slot::new(conference.clone()));
                slot.state.send_modify(|s| {
                    s.target = target.map(|l| l.0);
                    s.pause = *paused;
                    s.estimate_bps = *estimate_bps;
                    s.from_event = true;
                });
            }
            EngineEvent::SessionEnded { session, .. } => {
                // Dropping the sender ends the session's streams.
                self.inner().sessions.remove(session);
            }
            _ => {}
        }
    }

    /// Starts the ticker once (on the first subscription).
    fn ensure_ticker(self: &Arc<Self>, engine: &Engine) {
        self.ticker.get_or_init(|| {
            let hub = Arc::downgrade(self);
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(TICK);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let Some(hub) = hub.upgrade() else { return };
                    if !hub.watched() {
                        continue;
                    }
                    match engine.snapshot().await {
                        Ok(snap) => hub.apply(&snap),
                        Err(_) => return,
                    }
                }
            });
        });
    }

    /// Whether any stream is open.
    fn watched(&self) -> bool {
        let mut inner = self.inner();
        inner.conferences.retain(|_, tx| tx.receiver_count() > 0);
        !inner.conferences.is_empty()
    }

    /// Folds a snapshot into the watched cells: viewer counts, active layers, forwarded layers.
    fn apply(&self, snap: &Snapshot) {
        let inner = self.inner();
        for (id, tx) in &inner.conferences {
            let c = snap.conferences.iter().find(|c| c.id == *id);
            let live = inner
                .live
                .get(id)
                .copied()
                .unwrap_or_else(|| c.is_some_and(|c| c.live));
            let mut next = conference_state(live, c);
            next.rollcall = inner.rollcalls.get(id).cloned();
            tx.send_if_modified(|cur| {
                let changed = *cur != next;
                *cur = next;
                changed
            });
        }
        for s in &snap.sessions {
            let Some(slot) = inner.sessions.get(&s.id) else {
                continue;
            };
            if slot.state.receiver_count() == 0 {
                continue;
            }
            let from_snap = viewer_from_snapshot(s);
            slot.state
                .send_if_modified(|cur| fold_snapshot(cur, from_snap));
        }
    }
}

impl Slot {
    fn new(conference: Arc<str>) -> Slot {
        Slot {
            conference,
            state: watch::Sender::new(ViewerState::default()),
            subscription: None,
            n_streams: Arc::new(AtomicUsize::new(0)),
        }
    }
}

fn conference_state(live: bool, c: Option<&hallcast_rtc::SnapshotConference>) -> ConferenceState {
    ConferenceState {
        live,
        n_viewers: c.map_or(0, |c| c.n_subscribers),
        layers: c
            .map(|c| {
                c.layer_bitrates
                    .iter()
                    .enumerate()
                    .filter(|(_, bps)| **bps > 0)
                    .map(|(i, bps)| (i as u8, *bps))
                    .collect()
            })
            .unwrap_or_default(),
        rollcall: None,
    }
}

fn viewer_from_snapshot(s: &hallcast_rtc::SnapshotSession) -> ViewerState {
    let a = s.adaptation;
    let paused = matches!(s.video, Some(VideoStatus::Paused));
    ViewerState {
        layer: match s.video {
            Some(VideoStatus::Forwarding { layer }) => Some(layer.0),
            _ => None,
        },
        target: match a.and_then(|a| a.target) {
            Some(Target::Layer(l)) => Some(l.0),
            _ => None,
        },
        pause: a
            .and_then(|a| a.pause)
            .or_else(|| paused.then_some(PauseReason::Viewer)),
        estimate_bps: a.and_then(|a| a.estimate_bps),
        from_event: false,
    }
}

/// The forwarded layer always comes from the snapshot; the allocation only until an event
/// said it (events are newer than any snapshot: the snapshot lags by up to 500 ms).
fn fold_snapshot(cur: &mut ViewerState, snap: ViewerState) -> bool {
    let before = *cur;
    cur.layer = snap.layer;
    if !cur.from_event {
        cur.target = snap.target;
        cur.pause = snap.pause;
        cur.estimate_bps = snap.estimate_bps;
    }
    *cur != before
}

/// `POST /whep/{conference}/{session}/events`: subscribes (the session's own credential, a JSON
/// array of event names) and answers 201 with the stream's URL.
pub async fn subscribe(
    State(state): State<Arc<AppState>>,
    Path((conference, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let id = crate::whip::session_of(&state, &conference, &session, Role::Subscriber, &headers)?;
    let ct = crate::whip::content_type(&headers);
    if !ct.is_empty() && ct != "application/json" {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected Content-Type: application/json, got {ct}"),
        ));
    }
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the subscription is larger than {MAX_BODY} bytes: send a JSON array of event names"
            ),
        )
    })?;
    let events = EventSet::parse(&body).map_err(|m| AppError::new(StatusCode::BAD_REQUEST, m))?;
    let token = new_token();
    let point = state.sessions().get(&id).is_some_and(|m| m.point.is_some());
    {
        // Lock order hub → sessions: the event pump removes the session's metadata before its
        // slot, so a session that ends meanwhile is either refused here or its slot removed.
        let mut inner = state.events.inner();
        if !state.sessions().contains_key(&id) {
            return Err(AppError::new(
                StatusCode::NOT_FOUND,
                "no such session (it may have ended)",
            ));
        }
        let slot = inner
            .sessions
            .entry(id)
            .or_insert_with(|| Slot::new(Arc::from(conference.as_str())));
        slot.subscription = Some(Subscription {
            token: token.clone(),
            events,
            point,
        });
    }
    state.events.ensure_ticker(&state.engine);
    let location = format!("/whep/{conference}/{session}/events/{token}");
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// `GET /whep/{conference}/{session}/events/{token}`: the event stream.
pub async fn stream(
    State(state): State<Arc<AppState>>,
    Path((conference, session, token)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let not_found = || {
        AppError::new(
            StatusCode::NOT_FOUND,
            "no such event stream (the session ended, or subscribe again with POST)",
        )
    };
    let id: SessionId = session.parse().map_err(|_| not_found())?;
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
        && !accept.contains("text/event-stream")
        && !accept.contains("*/*")
    {
        return Err(AppError::new(
            StatusCode::NOT_ACCEPTABLE,
            "this resource is a server-sent event stream: Accept: text/event-stream",
        ));
    }
    // Read before the lock (never held across an await).
    let snap = state.engine.snapshot().await?;
    let hub = &state.events;
    let feed = {
        let mut inner = hub.inner();
        let slot = inner.sessions.get(&id).ok_or_else(not_found)?;
        let sub = slot.subscription.as_ref().ok_or_else(not_found)?;
        if *slot.conference != *conference || !secret_matches(&token, &sub.token) {
            return Err(not_found());
        }
        let mut events = sub.events;
        // Only a connection point can answer a roll call.
        events.rollcall &= sub.point;
        let guard = StreamGuard::take(&slot.n_streams).ok_or_else(|| {
            AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("this session already has {MAX_STREAMS} event streams open"),
            )
        })?;
        if let Some(s) = snap.sessions.iter().find(|s| s.id == id) {
            let from_snap = viewer_from_snapshot(s);
            slot.state
                .send_if_modified(|cur| fold_snapshot(cur, from_snap));
        }
        let viewer = slot.state.subscribe();
        let conf_id = slot.conference.clone();
        let c = snap.conferences.iter().find(|c| c.id == conf_id);
        let live = inner
            .live
            .get(&conf_id)
            .copied()
            .unwrap_or_else(|| c.is_some_and(|c| c.live));
        let mut fresh = conference_state(live, c);
        fresh.rollcall = inner.rollcalls.get(&conf_id).cloned();
        let conf = inner
            .conferences
            .entry(conf_id)
            .or_insert_with(|| watch::Sender::new(fresh))
            .subscribe();
        Feed::new(events, viewer, conf, state.drain.subscribe(), guard)
    };
    hub.ensure_ticker(&state.engine);
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        feed.next().await.map(|e| (Ok::<_, Infallible>(e), feed))
    });
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    // nginx buffers responses unless told not to.
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// `OPTIONS` on the events resources (CORS preflight).
pub async fn options() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        header::ALLOW,
        HeaderValue::from_static("OPTIONS, POST, GET"),
    );
    crate::cors_preflight(
        h,
        "OPTIONS, POST, GET",
        "Authorization, Content-Type, Accept",
    );
    r
}

fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Counts a session's open streams; releases its place when the stream is dropped.
struct StreamGuard(Arc<AtomicUsize>);

impl StreamGuard {
    fn take(n: &Arc<AtomicUsize>) -> Option<StreamGuard> {
        n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            (v < MAX_STREAMS).then_some(v + 1)
        })
        .ok()?;
        Some(StreamGuard(n.clone()))
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open stream: waits on its viewer's and its conference's cells and turns changes into
/// events.
struct Feed {
    events: EventSet,
    viewer: watch::Receiver<ViewerState>,
    conference: watch::Receiver<ConferenceState>,
    pending: VecDeque<Event>,
    sent_live: Option<bool>,
    sent_viewers: Option<usize>,
    sent_viewer: Option<ViewerState>,
    sent_layer_set: Option<Vec<u8>>,
    sent_rollcall: Option<String>,
    drain: watch::Receiver<Option<crate::drain::DrainNotice>>,
    sent_drain: bool,
    _guard: StreamGuard,
}

impl Feed {
    fn new(
        events: EventSet,
        mut viewer: watch::Receiver<ViewerState>,
        mut conference: watch::Receiver<ConferenceState>,
        drain: watch::Receiver<Option<crate::drain::DrainNotice>>,
        guard: StreamGuard,
    ) -> Feed {
        viewer.mark_unchanged();
        conference.mark_unchanged();
        let mut feed = Feed {
            events,
            viewer,
            conference,
            pending: VecDeque::new(),
            sent_live: None,
            sent_viewers: None,
            sent_viewer: None,
            sent_layer_set: None,
            sent_rollcall: None,
            drain,
            sent_drain: false,
            _guard: guard,
        };
        // The current state right after the subscription.
        feed.collect(true);
        feed
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            tokio::select! {
                r = self.viewer.changed() => {
                    // Err: the session ended (its slot was removed), and so does the stream.
                    r.ok()?;
                    self.collect(true);
                }
                r = self.conference.changed() => {
                    r.ok()?;
                    self.collect(false);
                }
                r = self.drain.changed(), if !self.sent_drain => {
                    r.ok()?;
                    self.collect(false);
                }
            }
        }
    }

    /// Queues the events the current state calls for.
    fn collect(&mut self, viewer_changed: bool) {
        let conf = self.conference.borrow_and_update().clone();
        let viewer = *self.viewer.borrow_and_update();
        if self.sent_live != Some(conf.live) {
            self.sent_live = Some(conf.live);
            if conf.live && self.events.active {
                self.pending
                    .push_back(Event::default().event("active").data("{}"));
            } else if !conf.live && self.events.inactive {
                self.pending
                    .push_back(Event::default().event("inactive").data("{}"));
            }
        }
        if self.events.viewercount && self.sent_viewers != Some(conf.n_viewers) {
            self.sent_viewers = Some(conf.n_viewers);
            self.pending.push_back(
                Event::default()
                    .event("viewercount")
                    .data(json!({ "viewercount": conf.n_viewers }).to_string()),
            );
        }
        if self.events.rollcall
            && let Some(rc) = &conf.rollcall
            && self.sent_rollcall.as_ref() != Some(&rc.id)
        {
            self.sent_rollcall = Some(rc.id.clone());
            let remaining_ms = rc.deadline_ms - hallcast_ledger::now_ms();
            // One that is over is not announced (a page opened after the deadline).
            if remaining_ms > 0 {
                self.pending.push_back(
                    Event::default().event("rollcall").data(
                        json!({
                            "id": rc.id,
                            "deadline_ms": rc.deadline_ms,
                            "remaining_ms": remaining_ms,
                        })
                        .to_string(),
                    ),
                );
            }
        }
        if !self.sent_drain
            && let Some(n) = self.drain.borrow_and_update().clone()
        {
            self.sent_drain = true;
            if self.events.drain {
                self.pending.push_back(
                    Event::default()
                        .event("drain")
                        .data(serde_json::to_string(&n).unwrap_or_default()),
                );
            }
        }
        let layer_set: Vec<u8> = conf.layers.iter().map(|(l, _)| *l).collect();
        let viewer_new = viewer_changed && self.sent_viewer != Some(viewer);
        if self.events.layers && (viewer_new || self.sent_layer_set.as_ref() != Some(&layer_set)) {
            self.sent_viewer = Some(viewer);
            self.sent_layer_set = Some(layer_set);
            self.pending.push_back(
                Event::default()
                    .event("layers")
                    .data(layers_json(&viewer, &conf).to_string()),
            );
        }
    }
}

fn layers_json(v: &ViewerState, c: &ConferenceState) -> serde_json::Value {
    json!({
        "video": {
            "layer": v.layer,
            "target": v.target,
            "paused": v.pause.is_some(),
            "reason": v.pause.map(PauseReason::as_str),
            "estimate_bps": v.estimate_bps,
            "available": c.layers.iter().map(|(l, bps)| json!({"layer": l, "bitrate_bps": bps})).collect::<Vec<_>>(),
        }
    })
}

#[cfg(test)]
mod tests;
