//! The admin dashboard's roster board (sans-IO): the registry's expected points, the
//! attendance events stored so far and this relay's live sessions, folded into each point's
//! state now and the alerts an admin must see.
//!
//! Never reads a clock: `now_ms` is an argument, so the same inputs always give the same
//! board (the server calls [`board`] at most twice a second and sends it when it changed).
//!
//! A point's state:
//! * `Connected` — one of its WHEP sessions is open (in the ledger, or live on this relay);
//! * `Degraded` — open, but only audio reaches it, its picture stands still, or the relay
//!   measures at least [`DEGRADED_LOSS`] packet loss towards it;
//! * `Left` — it was connected and is gone, for less than the grace window (it may be
//!   reconnecting), or it left while the broadcast is not live (the broadcast ended);
//! * `Missing` — never connected, or gone for longer than the grace window while the
//!   broadcast is live, or the relay that served it is down.
//!
//! Alerts: `point_dropped` for a point that had been connected, is gone, and has not come
//! back within the grace window of the live broadcast (counted from its drop, or from the
//! broadcast's start if it dropped before); `edge_down` for each relay of the tree that stopped
//! reporting; `ingest_unhealthy` and `audio_silent` come from the pre-flight analysis and are
//! passed in ready-made ([`BoardInput::extra_alerts`]).

use std::collections::{BTreeMap, HashMap};

use super::event::{Event, EventKind, SessionChange};
use super::ids::{OrgId, PointId, SessionId};
use super::report::{Organisation, PointInfo};

/// Loss towards a point at or above which it is shown degraded (5 %).
pub const DEGRADED_LOSS: f32 = 0.05;

/// A point's state on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointState {
    Connected,
    Degraded,
    Missing,
    Left,
}

impl PointState {
    pub fn as_str(self) -> &'static str {
        match self {
            PointState::Connected => "connected",
            PointState::Degraded => "degraded",
            PointState::Missing => "missing",
            PointState::Left => "left",
        }
    }

    /// Connected or degraded: the point receives the broadcast.
    pub fn is_present(self) -> bool {
        matches!(self, PointState::Connected | PointState::Degraded)
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertKind {
    PointDropped,
    EdgeDown,
    IngestUnhealthy,
    AudioSilent,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::PointDropped => "point_dropped",
            AlertKind::EdgeDown => "edge_down",
            AlertKind::IngestUnhealthy => "ingest_unhealthy",
            AlertKind::AudioSilent => "audio_silent",
        }
    }
}

/// One alert. `id` is stable while the condition lasts (`point_dropped:<point>`,
/// `edge_down:<node>`), so a page can tell a new alert from one it already rang for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: String,
    pub kind: AlertKind,
    /// When the condition began (Unix ms).
    pub since_ms: i64,
    pub text_vi: String,
    pub text_en: String,
    pub point: Option<PointId>,
    pub node: Option<String>,
}

/// What reaches one live session on this relay, as its media thread last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Delivery {
    /// Nothing delivered yet (ICE/DTLS or the first keyframe under way).
    Pending,
    /// Only audio (the link cannot carry the lowest video layer, or no video).
    AudioOnly,
    /// Nothing reaches it any more.
    Stalled,
    Flowing,
}

/// A live session of a point on this relay, with what the relay measures of it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSession {
    pub point: PointId,
    /// The relay node serving it (this relay's name).
    pub relay: String,
    /// When the session was created (Unix ms).
    pub since_ms: i64,
    pub delivery: Delivery,
    pub layer: Option<u8>,
    pub bitrate_bps: Option<u64>,
    pub rtt_ms: Option<u32>,
    pub loss: Option<f32>,
}

/// A relay of the tree that stopped reporting to its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayDown {
    pub node: String,
    /// When it last reported (Unix ms).
    pub since_ms: i64,
}

/// Everything the board is folded from.
#[derive(Debug, Clone, Copy)]
pub struct BoardInput<'a> {
    pub now_ms: i64,
    /// The alert grace window (config `[alerts] grace_seconds`), ms.
    pub grace_ms: i64,
    /// The hall feed is live now.
    pub live: bool,
    pub orgs: &'a [Organisation],
    pub points: &'a [PointInfo],
    /// The conference's stored events, in any order.
    pub events: &'a [Event],
    /// This relay's live sessions of points of the conference.
    pub sessions: &'a [LiveSession],
    /// The relay node that last served each point (from the ledger), for points whose
    /// sessions are on other relays.
    pub point_relays: &'a [(PointId, String)],
    pub relays_down: &'a [RelayDown],
    /// Alerts computed elsewhere (the pre-flight analysis: `ingest_unhealthy`,
    /// `audio_silent`), merged in as they are.
    pub extra_alerts: &'a [Alert],
}

/// One point's line on the board.
#[derive(Debug, Clone, PartialEq)]
pub struct PointBoard {
    pub id: PointId,
    pub name: String,
    pub state: PointState,
    pub relay: Option<String>,
    pub layer: Option<u8>,
    pub bitrate_bps: Option<u64>,
    pub rtt_ms: Option<u32>,
    pub loss: Option<f32>,
    /// Times its picture stood still during this conference (the ledger's `Frozen` events).
    pub freezes: u32,
    /// Seconds since it connected (this continuous presence), while present.
    pub connected_s: Option<u64>,
    /// The latest headcount it declared.
    pub people: Option<u32>,
}

/// One organisation's block on the board.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgBoard {
    pub id: OrgId,
    pub name: String,
    /// Registered points.
    pub expected: u32,
    pub connected: u32,
    pub degraded: u32,
    /// Not present (missing or left).
    pub missing: u32,
    pub points: Vec<PointBoard>,
}

/// The whole board.
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    pub live: bool,
    /// Organisations with at least one present point / with at least one registered point.
    pub n_orgs_connected: u32,
    pub n_orgs: u32,
    /// Present points / registered points.
    pub n_points_connected: u32,
    pub n_points: u32,
    /// Latest declared headcounts of present points / the registry's expected headcounts.
    pub n_people_declared: u64,
    pub n_people_expected: u64,
    pub orgs: Vec<OrgBoard>,
    /// Ordered by `since_ms`, then id.
    pub alerts: Vec<Alert>,
}

#[derive(Default)]
struct Flags {
    audio_only: bool,
    frozen: bool,
}

/// A point's story in the ledger.
#[derive(Default)]
struct Track {
    open: BTreeMap<SessionId, Flags>,
    present_since: Option<i64>,
    left_ms: Option<i64>,
    freezes: u32,
    people: Option<u32>,
}

impl Track {
    fn open_session(&mut self, session: SessionId, at_ms: i64) -> &mut Flags {
        if self.open.is_empty() {
            self.present_since = Some(at_ms);
        }
        self.open.entry(session).or_default()
    }
}

/// Folds the inputs into the board at `input.now_ms`.
pub fn board(input: &BoardInput<'_>) -> Board {
    let mut events: Vec<&Event> = input.events.iter().collect();
    events.sort_by(|a, b| {
        (a.at_ms, a.kind.same_instant_rank(), a.event_id.0).cmp(&(
            b.at_ms,
            b.kind.same_instant_rank(),
            b.event_id.0,
        ))
    });
    let mut tracks: HashMap<&PointId, Track> = HashMap::new();
    let mut live_since: Option<i64> = None;
    let mut ended: std::collections::HashSet<SessionId> = std::collections::HashSet::new();
    for ev in events {
        match &ev.kind {
            EventKind::BroadcastStarted => live_since = live_since.or(Some(ev.at_ms)),
            EventKind::BroadcastEnded => live_since = None,
            // Roll calls have their own fold (`accounting::roll_calls`) and panel.
            EventKind::RollCallStarted { .. } | EventKind::RollCallAnswered { .. } => {}
            EventKind::Headcount { point, n_people } => {
                tracks.entry(point).or_default().people = Some(*n_people);
            }
            EventKind::Session {
                point,
                session,
                change,
            } => {
                let t = tracks.entry(point).or_default();
                if let SessionChange::Ended { .. } = change {
                    ended.insert(*session);
                    t.open.remove(session);
                    if t.open.is_empty() {
                        t.left_ms = Some(t.left_ms.map_or(ev.at_ms, |l| l.max(ev.at_ms)));
                        t.present_since = None;
                    }
                    continue;
                }
                if *change == SessionChange::Frozen {
                    t.freezes += 1;
                }
                if ended.contains(session) {
                    // A late event of a session already over (duplicates, clock skew).
                    continue;
                }
                let f = t.open_session(*session, ev.at_ms);
                match change {
                    SessionChange::AudioOnly => f.audio_only = true,
                    SessionChange::VideoResumed => f.audio_only = false,
                    SessionChange::Frozen => f.frozen = true,
                    SessionChange::Unfrozen | SessionChange::MediaFlowing => f.frozen = false,
                    _ => {}
                }
            }
        }
    }
    let live_since = if input.live {
        live_since.unwrap_or(input.now_ms)
    } else {
        input.now_ms
    };

    let mut local: HashMap<&PointId, Vec<&LiveSession>> = HashMap::new();
    for s in input.sessions {
        local.entry(&s.point).or_default().push(s);
    }
    let relay_of: HashMap<&PointId, &str> = input
        .point_relays
        .iter()
        .map(|(p, n)| (p, n.as_str()))
        .collect();
    let down: HashMap<&str, &RelayDown> = input
        .relays_down
        .iter()
        .map(|r| (r.node.as_str(), r))
        .collect();

    let mut orgs: BTreeMap<&OrgId, OrgBoard> = input
        .orgs
        .iter()
        .map(|o| {
            (
                &o.id,
                OrgBoard {
                    id: o.id.clone(),
                    name: o.name.clone(),
                    expected: 0,
                    connected: 0,
                    degraded: 0,
                    missing: 0,
                    points: Vec::new(),
                },
            )
        })
        .collect();
    let mut alerts: Vec<Alert> = Vec::new();
    let mut n_people_declared = 0u64;
    let mut n_people_expected = 0u64;
    let empty = Track::default();
    for p in input.points {
        let t = tracks.get(&p.id).unwrap_or(&empty);
        let mine = local.get(&p.id).map(Vec::as_slice).unwrap_or(&[]);
        // The best of this relay's sessions of the point: flowing first, then lowest loss.
        let best = mine.iter().copied().max_by(|a, b| {
            (a.delivery, std::cmp::Reverse(loss_key(a.loss)))
                .cmp(&(b.delivery, std::cmp::Reverse(loss_key(b.loss))))
        });
        let elsewhere = relay_of.get(&p.id).copied();
        let elsewhere_down =
            best.is_none() && !t.open.is_empty() && elsewhere.is_some_and(|n| down.contains_key(n));
        let present = best.is_some() || (!t.open.is_empty() && !elsewhere_down);
        let mut row = PointBoard {
            id: p.id.clone(),
            name: p.name.clone(),
            state: PointState::Missing,
            relay: best
                .map(|s| s.relay.clone())
                .or(elsewhere.map(str::to_string)),
            layer: best.and_then(|s| s.layer),
            bitrate_bps: best.and_then(|s| s.bitrate_bps),
            rtt_ms: best.and_then(|s| s.rtt_ms),
            loss: best.and_then(|s| s.loss),
            freezes: t.freezes,
            connected_s: None,
            people: t.people,
        };
        if present {
            let degraded = match best {
                Some(s) => {
                    matches!(s.delivery, Delivery::AudioOnly | Delivery::Stalled)
                        || s.loss.is_some_and(|l| l >= DEGRADED_LOSS)
                }
                None => t.open.values().all(|f| f.audio_only || f.frozen),
            };
            row.state = if degraded {
                PointState::Degraded
            } else {
                PointState::Connected
            };
            let since = [t.present_since, mine.iter().map(|s| s.since_ms).min()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(input.now_ms);
            row.connected_s = Some((input.now_ms.saturating_sub(since).max(0) / 1000) as u64);
            n_people_declared += u64::from(t.people.unwrap_or(0));
        } else if elsewhere_down {
            row.state = PointState::Missing;
        } else if let Some(left) = t.left_ms {
            let gone_since = left.max(live_since);
            row.state = if input.now_ms - left < input.grace_ms {
                PointState::Left
            } else if input.live {
                PointState::Missing
            } else {
                PointState::Left
            };
            if input.live && input.now_ms - gone_since >= input.grace_ms {
                let org_name = input
                    .orgs
                    .iter()
                    .find(|o| o.id == p.org)
                    .map_or(p.org.as_str(), |o| o.name.as_str());
                let g = input.grace_ms / 1000;
                alerts.push(Alert {
                    id: format!("point_dropped:{}", p.id),
                    kind: AlertKind::PointDropped,
                    since_ms: gone_since,
                    text_vi: format!(
                        "Điểm cầu «{}» ({org_name}) mất kết nối, chưa quay lại sau {g} giây",
                        p.name
                    ),
                    text_en: format!(
                        "Point «{}» ({org_name}) dropped and has not come back within {g} s",
                        p.name
                    ),
                    point: Some(p.id.clone()),
                    node: None,
                });
            }
        }
        n_people_expected += u64::from(p.expected_headcount.unwrap_or(0));
        let org = orgs.entry(&p.org).or_insert_with(|| OrgBoard {
            id: p.org.clone(),
            name: p.org.to_string(),
            expected: 0,
            connected: 0,
            degraded: 0,
            missing: 0,
            points: Vec::new(),
        });
        org.expected += 1;
        match row.state {
            PointState::Connected => org.connected += 1,
            PointState::Degraded => org.degraded += 1,
            PointState::Missing | PointState::Left => org.missing += 1,
        }
        org.points.push(row);
    }
    for r in input.relays_down {
        alerts.push(Alert {
            id: format!("edge_down:{}", r.node),
            kind: AlertKind::EdgeDown,
            since_ms: r.since_ms,
            text_vi: format!("Trạm chuyển tiếp {} không phản hồi", r.node),
            text_en: format!("Edge relay {} is down", r.node),
            point: None,
            node: Some(r.node.clone()),
        });
    }
    alerts.extend(input.extra_alerts.iter().cloned());
    alerts.sort_by(|a, b| (a.since_ms, &a.id).cmp(&(b.since_ms, &b.id)));

    let mut orgs: Vec<OrgBoard> = orgs.into_values().collect();
    for o in &mut orgs {
        o.points.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let with_points = orgs.iter().filter(|o| o.expected > 0);
    Board {
        live: input.live,
        n_orgs_connected: with_points
            .clone()
            .filter(|o| o.connected + o.degraded > 0)
            .count() as u32,
        n_orgs: with_points.count() as u32,
        n_points_connected: orgs.iter().map(|o| o.connected + o.degraded).sum(),
        n_points: orgs.iter().map(|o| o.expected).sum(),
        n_people_declared,
        n_people_expected,
        orgs,
        alerts,
    }
}

/// Loss as an orderable key (thousandths; unknown sorts as none).
fn loss_key(loss: Option<f32>) -> u32 {
    loss.map_or(0, |l| (l.clamp(0.0, 1.0) * 1000.0) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::{ConferenceId, EndReason, EventId};

    const GRACE: i64 = 10_000;

    fn org(id: &str) -> Organisation {
        Organisation {
            id: OrgId::parse(id).unwrap(),
            name: format!("Đơn vị {id}"),
        }
    }

    fn point(id: &str, org: &str, expected: u32) -> PointInfo {
        PointInfo {
            id: PointId::parse(id).unwrap(),
            org: OrgId::parse(org).unwrap(),
            name: format!("Điểm {id}"),
            location: String::new(),
            expected_headcount: Some(expected),
        }
    }

    struct Log {
        events: Vec<Event>,
        n: u128,
    }

    impl Log {
        fn new() -> Self {
            Log {
                events: vec![],
                n: 0,
            }
        }
        fn push(&mut self, at_ms: i64, kind: EventKind) {
            self.n += 1;
            self.events.push(Event {
                event_id: EventId(self.n),
                conference: ConferenceId::parse("c").unwrap(),
                at_ms,
                kind,
            });
        }
        fn session(&mut self, at_ms: i64, p: &str, s: u128, change: SessionChange) {
            self.push(
                at_ms,
                EventKind::Session {
                    point: PointId::parse(p).unwrap(),
                    session: SessionId(s),
                    change,
                },
            );
        }
    }

    fn input<'a>(
        now_ms: i64,
        live: bool,
        orgs: &'a [Organisation],
        points: &'a [PointInfo],
        events: &'a [Event],
    ) -> BoardInput<'a> {
        BoardInput {
            now_ms,
            grace_ms: GRACE,
            live,
            orgs,
            points,
            events,
            sessions: &[],
            point_relays: &[],
            relays_down: &[],
            extra_alerts: &[],
        }
    }

    fn state(b: &Board, p: &str) -> PointState {
        b.orgs
            .iter()
            .flat_map(|o| &o.points)
            .find(|r| r.id.as_str() == p)
            .unwrap()
            .state
    }

    fn row<'b>(b: &'b Board, p: &str) -> &'b PointBoard {
        b.orgs
            .iter()
            .flat_map(|o| &o.points)
            .find(|r| r.id.as_str() == p)
            .unwrap()
    }

    #[test]
    fn never_connected_is_missing_without_alert() {
        let orgs = [org("a")];
        let points = [point("p1", "a", 10)];
        let mut log = Log::new();
        log.push(0, EventKind::BroadcastStarted);
        let b = board(&input(100_000, true, &orgs, &points, &log.events));
        assert_eq!(state(&b, "p1"), PointState::Missing);
        assert!(b.alerts.is_empty(), "{:?}", b.alerts);
        assert_eq!((b.n_points_connected, b.n_points), (0, 1));
        assert_eq!((b.n_orgs_connected, b.n_orgs), (0, 1));
        assert_eq!(b.n_people_expected, 10);
    }

    #[test]
    fn join_leave_then_missing_and_alert_after_grace() {
        let orgs = [org("a"), org("b")];
        let points = [point("p1", "a", 10), point("p2", "b", 5)];
        let mut log = Log::new();
        log.push(1_000, EventKind::BroadcastStarted);
        log.session(2_000, "p1", 1, SessionChange::Started);
        log.session(2_500, "p1", 1, SessionChange::MediaFlowing);
        log.push(
            3_000,
            EventKind::Headcount {
                point: PointId::parse("p1").unwrap(),
                n_people: 8,
            },
        );
        let b = board(&input(12_000, true, &orgs, &points, &log.events));
        assert_eq!(state(&b, "p1"), PointState::Connected);
        assert_eq!(row(&b, "p1").connected_s, Some(10));
        assert_eq!(row(&b, "p1").people, Some(8));
        assert_eq!((b.n_points_connected, b.n_points), (1, 2));
        assert_eq!((b.n_orgs_connected, b.n_orgs), (1, 2));
        assert_eq!((b.n_people_declared, b.n_people_expected), (8, 15));

        log.session(
            20_000,
            "p1",
            1,
            SessionChange::Ended {
                reason: EndReason::Deleted,
            },
        );
        // Within the grace window: left, no alert.
        let b = board(&input(
            20_000 + GRACE - 1,
            true,
            &orgs,
            &points,
            &log.events,
        ));
        assert_eq!(state(&b, "p1"), PointState::Left);
        assert!(b.alerts.is_empty());
        assert_eq!(b.n_people_declared, 0);
        // At the grace window: missing, one alert since the drop.
        let b = board(&input(20_000 + GRACE, true, &orgs, &points, &log.events));
        assert_eq!(state(&b, "p1"), PointState::Missing);
        assert_eq!(b.alerts.len(), 1);
        let a = &b.alerts[0];
        assert_eq!(a.kind, AlertKind::PointDropped);
        assert_eq!(a.id, "point_dropped:p1");
        assert_eq!(a.since_ms, 20_000);
        assert_eq!(a.point.as_ref().unwrap().as_str(), "p1");
        assert!(a.text_vi.contains("Điểm p1") && a.text_en.contains("10 s"));
        let org_a = b.orgs.iter().find(|o| o.id.as_str() == "a").unwrap();
        assert_eq!((org_a.expected, org_a.connected, org_a.missing), (1, 0, 1));

        // It comes back: connected again, the alert is gone, connected_s restarts.
        log.session(40_000, "p1", 2, SessionChange::Started);
        let b = board(&input(41_000, true, &orgs, &points, &log.events));
        assert_eq!(state(&b, "p1"), PointState::Connected);
        assert_eq!(row(&b, "p1").connected_s, Some(1));
        assert!(b.alerts.is_empty());
    }

    #[test]
    fn a_reconnect_within_grace_never_alerts() {
        let orgs = [org("a")];
        let points = [point("p1", "a", 1)];
        let mut log = Log::new();
        log.push(0, EventKind::BroadcastStarted);
        log.session(1_000, "p1", 1, SessionChange::Started);
        let end = SessionChange::Ended {
            reason: EndReason::Timeout,
        };
        log.session(5_000, "p1", 1, end);
        log.session(9_000, "p1", 2, SessionChange::Started);
        for now in (5_000..60_000).step_by(500) {
            let b = board(&input(now, true, &orgs, &points, &log.events));
            assert!(b.alerts.is_empty(), "at {now}: {:?}", b.alerts);
        }
    }

    #[test]
    fn leaving_when_not_live_is_left_and_never_alerts() {
        let orgs = [org("a")];
        let points = [point("p1", "a", 1)];
        let mut log = Log::new();
        log.push(0, EventKind::BroadcastStarted);
        log.session(1_000, "p1", 1, SessionChange::Started);
        log.push(50_000, EventKind::BroadcastEnded);
        log.session(
            51_000,
            "p1",
            1,
            SessionChange::Ended {
                reason: EndReason::Deleted,
            },
        );
        let b = board(&input(500_000, false, &orgs, &points, &log.events));
        assert_eq!(state(&b, "p1"), PointState::Left);
        assert!(b.alerts.is_empty());
    }

    #[test]
    fn a_drop_before_the_broadcast_counts_grace_from_its_start() {
        let orgs = [org("a")];
        let points = [point("p1", "a", 1)];
        let mut log = Log::new();
        log.session(1_000, "p1", 1, SessionChange::Started);
        log.session(
            2_000,
            "p1",
            1,
            SessionChange::Ended {
                reason: EndReason::Deleted,
            },
        );
        log.push(100_000, EventKind::BroadcastStarted);
        let b = board(&input(
            100_000 + GRACE - 1,
            true,
            &orgs,
            &points,
            &log.events,
        ));
        assert_eq!(state(&b, "p1"), PointState::Missing);
        assert!(b.alerts.is_empty());
        let b = board(&input(100_000 + GRACE, true, &orgs, &points, &log.events));
        assert_eq!(b.alerts.len(), 1);
        assert_eq!(b.alerts[0].since_ms, 100_000);
    }

    #[test]
    fn live_sessions_give_metrics_and_degradation() {
        let orgs = [org("a")];
        let points = [
            point("p1", "a", 1),
            point("p2", "a", 1),
            point("p3", "a", 1),
        ];
        let s = |p: &str, delivery, loss| LiveSession {
            point: PointId::parse(p).unwrap(),
            relay: "central".into(),
            since_ms: 4_000,
            delivery,
            layer: Some(2),
            bitrate_bps: Some(1_500_000),
            rtt_ms: Some(12),
            loss,
        };
        let sessions = [
            s("p1", Delivery::Flowing, Some(0.0)),
            s("p2", Delivery::AudioOnly, None),
            s("p3", Delivery::Flowing, Some(0.08)),
        ];
        // No event stored yet: the live sessions alone make the points present.
        let mut inp = input(10_000, true, &orgs, &points, &[]);
        inp.sessions = &sessions;
        let b = board(&inp);
        assert_eq!(state(&b, "p1"), PointState::Connected);
        assert_eq!(state(&b, "p2"), PointState::Degraded);
        assert_eq!(state(&b, "p3"), PointState::Degraded);
        let r = row(&b, "p1");
        assert_eq!(r.relay.as_deref(), Some("central"));
        assert_eq!(
            (r.layer, r.bitrate_bps, r.rtt_ms, r.connected_s),
            (Some(2), Some(1_500_000), Some(12), Some(6))
        );
        let o = &b.orgs[0];
        assert_eq!(
            (o.expected, o.connected, o.degraded, o.missing),
            (3, 1, 2, 0)
        );
        assert_eq!((b.n_points_connected, b.n_orgs_connected), (3, 1));
    }

    #[test]
    fn frozen_sessions_count_freezes_and_degrade() {
        let orgs = [org("a")];
        let points = [point("p1", "a", 1)];
        let mut log = Log::new();
        log.push(0, EventKind::BroadcastStarted);
        log.session(1_000, "p1", 1, SessionChange::Started);
        log.session(2_000, "p1", 1, SessionChange::Frozen);
        log.session(3_000, "p1", 1, SessionChange::Unfrozen);
        log.session(4_000, "p1", 1, SessionChange::Frozen);
        let b = board(&input(5_000, true, &orgs, &points, &log.events));
        assert_eq!(state(&b, "p1"), PointState::Degraded);
        assert_eq!(row(&b, "p1").freezes, 2);
        log.session(6_000, "p1", 1, SessionChange::MediaFlowing);
        let b = board(&input(7_000, true, &orgs, &points, &log.events));
        assert_eq!(state(&b, "p1"), PointState::Connected);
    }

    #[test]
    fn an_edge_down_alerts_and_its_points_are_missing() {
        let orgs = [org("a")];
        let points = [point("p1", "a", 1)];
        let mut log = Log::new();
        log.push(0, EventKind::BroadcastStarted);
        log.session(1_000, "p1", 1, SessionChange::Started);
        let relays = [(PointId::parse("p1").unwrap(), "edge-a".to_string())];
        let down = [RelayDown {
            node: "edge-a".into(),
            since_ms: 3_000,
        }];
        let mut inp = input(5_000, true, &orgs, &points, &log.events);
        inp.point_relays = &relays;
        let b = board(&inp);
        assert_eq!(state(&b, "p1"), PointState::Connected);
        assert_eq!(row(&b, "p1").relay.as_deref(), Some("edge-a"));
        inp.relays_down = &down;
        let b = board(&inp);
        assert_eq!(state(&b, "p1"), PointState::Missing);
        assert_eq!(b.alerts.len(), 1);
        assert_eq!(b.alerts[0].kind, AlertKind::EdgeDown);
        assert_eq!(b.alerts[0].node.as_deref(), Some("edge-a"));
    }

    #[test]
    fn extra_alerts_are_merged_in_time_order_and_event_order_does_not_matter() {
        let orgs = [org("a")];
        let points = [point("p1", "a", 1)];
        let mut log = Log::new();
        log.push(0, EventKind::BroadcastStarted);
        log.session(1_000, "p1", 1, SessionChange::Started);
        log.session(
            2_000,
            "p1",
            1,
            SessionChange::Ended {
                reason: EndReason::Timeout,
            },
        );
        let extra = [Alert {
            id: "audio_silent".into(),
            kind: AlertKind::AudioSilent,
            since_ms: 500,
            text_vi: "Âm thanh im lặng".into(),
            text_en: "Audio is silent".into(),
            point: None,
            node: None,
        }];
        let mut inp = input(60_000, true, &orgs, &points, &log.events);
        inp.extra_alerts = &extra;
        let b = board(&inp);
        let kinds: Vec<_> = b.alerts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [AlertKind::AudioSilent, AlertKind::PointDropped]);
        let mut reversed = log.events.clone();
        reversed.reverse();
        let mut inp2 = input(60_000, true, &orgs, &points, &reversed);
        inp2.extra_alerts = &extra;
        assert_eq!(board(&inp2), b);
    }
}
