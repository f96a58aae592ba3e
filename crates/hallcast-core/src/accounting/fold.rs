//! Folding events into presence: which point received the hall feed, from when to when.
//!
//! The [`Folder`] takes events in any order, any number of times; [`Folder::finish`] sorts
//! them by `(at_ms, same-instant rank, event_id)` and sweeps once. The result is a function
//! of the *set* of distinct events and the horizon, never of arrival order.
//!
//! Meaning (the oracle in the ledger's property tests restates this independently):
//! * The broadcast is live from `BroadcastStarted` until `BroadcastEnded` (repeatable).
//! * A session is *flowing* (media is delivered to it) from its first `MediaFlowing`,
//!   `FirstVideoSent`, `AudioOnly` or `VideoResumed` until `Ended`: audio is media, so a
//!   session that only ever receives audio (the hall's camera failed, or adaptation dropped
//!   it to audio) is flowing. `AudioOnly`/`VideoResumed` also set/clear its audio-only flag,
//!   `Frozen`/`Unfrozen` its frozen flag. Nothing revives an ended session; events of an
//!   ended session are ignored.
//! * A point is *present* while the broadcast is live and at least one of its sessions is
//!   flowing; *audio-only* while present and every flowing session is audio-only; *frozen*
//!   while present and every flowing session is frozen.
//! * Headcount: the latest declaration (by time) wins. First video sent: `after_ms` of the
//!   point's earliest `FirstVideoSent` (when the relay sent video, not when a receiver
//!   decoded it).
//! * Events after the horizon `as_of_ms` are ignored; whatever is open is closed there.

use super::event::{EndReason, Event, EventKind, SessionChange};
use super::hash::{FastMap, FastSet};
use super::ids::{ConferenceId, PointId, SessionId};

/// A half-open time range `[start_ms, end_ms)` in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Interval {
    /// Length in milliseconds.
    pub fn len_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }
}

/// A headcount declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declaration {
    pub n_people: u32,
    pub at_ms: i64,
}

/// What the fold knows about one point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointPresence {
    pub point: PointId,
    /// Maximal intervals during which the point was present (sorted, disjoint, non-adjacent).
    pub intervals: Vec<Interval>,
    /// Whether the point was present at the horizon.
    pub present_at_horizon: bool,
    pub audio_only_ms: i64,
    pub frozen_ms: i64,
    /// `after_ms` of the point's earliest `FirstVideoSent`: how long after its WHEP session
    /// was created the relay sent it the first video packet (not a decoded frame).
    pub first_video_after_ms: Option<u32>,
    /// The latest headcount declaration.
    pub headcount: Option<Declaration>,
    /// Distinct sessions seen (up to the horizon).
    pub n_sessions: u32,
    /// Sessions the relay ended because they stopped answering.
    pub n_timeouts: u32,
}

impl PointPresence {
    /// Total presence in milliseconds.
    pub fn present_ms(&self) -> i64 {
        self.intervals.iter().map(Interval::len_ms).sum()
    }
}

/// The folded state of one conference at a horizon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub conference: ConferenceId,
    pub as_of_ms: i64,
    /// When the broadcast was live (sorted, disjoint, non-adjacent).
    pub live: Vec<Interval>,
    /// Whether the broadcast was live at the horizon.
    pub live_at_horizon: bool,
    /// Points that appear in at least one event, sorted by id.
    pub points: Vec<PointPresence>,
    /// Distinct events of this conference given to the folder.
    pub n_events: u64,
    /// Events given again with an id already seen (dropped).
    pub n_duplicates: u64,
    /// Events of another conference (dropped).
    pub n_foreign: u64,
}

impl Presence {
    /// Total live time of the broadcast, in milliseconds.
    pub fn live_ms(&self) -> i64 {
        self.live.iter().map(Interval::len_ms).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    BroadcastStarted,
    BroadcastEnded,
    Headcount,
    Started,
    Flowing,
    FirstVideoSent,
    AudioOnly,
    VideoResumed,
    Frozen,
    Unfrozen,
    Ended(EndReason),
    /// Roll-call events: counted as events, no effect on presence (see `rollcall.rs`).
    RollCall,
}

/// One event, interned: 48 bytes, no heap.
#[derive(Debug, Clone, Copy)]
struct Rec {
    id: u128,
    at_ms: i64,
    point: u32,
    session: u32,
    value: u32,
    rank: u8,
    op: Op,
}

const NONE: u32 = u32::MAX;

/// Accumulates the events of one conference; see the module docs for their meaning.
#[derive(Debug)]
pub struct Folder {
    conference: ConferenceId,
    seen: FastSet<u128>,
    points: FastMap<PointId, u32>,
    point_ids: Vec<PointId>,
    session_names: FastMap<SessionId, u32>,
    sessions: FastMap<(u32, u32), u32>,
    session_points: Vec<u32>,
    recs: Vec<Rec>,
    sorted: bool,
    n_duplicates: u64,
    n_foreign: u64,
}

impl Folder {
    /// An empty folder for one conference.
    pub fn new(conference: ConferenceId) -> Self {
        Self {
            conference,
            seen: FastSet::default(),
            points: FastMap::default(),
            point_ids: Vec::new(),
            session_names: FastMap::default(),
            sessions: FastMap::default(),
            session_points: Vec::new(),
            recs: Vec::new(),
            sorted: true,
            n_duplicates: 0,
            n_foreign: 0,
        }
    }

    /// An empty folder with room for `n_events` events.
    pub fn with_capacity(conference: ConferenceId, n_events: usize) -> Self {
        let mut f = Self::new(conference);
        f.seen.reserve(n_events);
        f.recs.reserve(n_events);
        f
    }

    /// The conference this folder accepts.
    pub fn conference(&self) -> &ConferenceId {
        &self.conference
    }

    /// Adds one event. Returns `false` when it was dropped (id already seen, or another
    /// conference's event).
    pub fn push(&mut self, ev: &Event) -> bool {
        if ev.conference != self.conference {
            self.n_foreign += 1;
            return false;
        }
        if !self.seen.insert(ev.event_id.0) {
            self.n_duplicates += 1;
            return false;
        }
        let rank = ev.kind.same_instant_rank();
        let (op, point, session, value) = match &ev.kind {
            EventKind::BroadcastStarted => (Op::BroadcastStarted, NONE, NONE, 0),
            EventKind::BroadcastEnded => (Op::BroadcastEnded, NONE, NONE, 0),
            EventKind::Headcount { point, n_people } => {
                (Op::Headcount, self.point_index(point), NONE, *n_people)
            }
            EventKind::Session {
                point,
                session,
                change,
            } => {
                let p = self.point_index(point);
                let s = self.session_index(p, session);
                let (op, value) = match change {
                    SessionChange::Started => (Op::Started, 0),
                    SessionChange::MediaFlowing => (Op::Flowing, 0),
                    SessionChange::FirstVideoSent { after_ms } => (Op::FirstVideoSent, *after_ms),
                    SessionChange::AudioOnly => (Op::AudioOnly, 0),
                    SessionChange::VideoResumed => (Op::VideoResumed, 0),
                    SessionChange::Frozen => (Op::Frozen, 0),
                    SessionChange::Unfrozen => (Op::Unfrozen, 0),
                    SessionChange::Ended { reason } => (Op::Ended(*reason), 0),
                };
                (op, p, s, value)
            }
            EventKind::RollCallStarted { .. } | EventKind::RollCallAnswered { .. } => {
                (Op::RollCall, NONE, NONE, 0)
            }
        };
        if let Some(last) = self.recs.last()
            && (last.at_ms, last.rank, last.id) > (ev.at_ms, rank, ev.event_id.0)
        {
            self.sorted = false;
        }
        self.recs.push(Rec {
            id: ev.event_id.0,
            at_ms: ev.at_ms,
            point,
            session,
            value,
            rank,
            op,
        });
        true
    }

    /// Adds many events.
    pub fn extend<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for ev in events {
            self.push(ev);
        }
    }

    /// Number of distinct events held.
    pub fn n_events(&self) -> usize {
        self.recs.len()
    }

    fn point_index(&mut self, point: &PointId) -> u32 {
        if let Some(&i) = self.points.get(point) {
            return i;
        }
        let i = self.point_ids.len() as u32;
        self.points.insert(point.clone(), i);
        self.point_ids.push(point.clone());
        i
    }

    fn session_index(&mut self, point: u32, session: &SessionId) -> u32 {
        let name = match self.session_names.get(session) {
            Some(&n) => n,
            None => {
                let n = self.session_names.len() as u32;
                self.session_names.insert(*session, n);
                n
            }
        };
        let next = self.session_points.len() as u32;
        let slot = *self.sessions.entry((point, name)).or_insert(next);
        if slot == next {
            self.session_points.push(point);
        }
        slot
    }

    /// Folds everything held into presence at the horizon `as_of_ms`. Can be called again
    /// after more events are pushed.
    pub fn finish(&mut self, as_of_ms: i64) -> Presence {
        if !self.sorted {
            self.recs.sort_unstable_by_key(|r| (r.at_ms, r.rank, r.id));
            self.sorted = true;
        }
        let mut sweep = Sweep::new(self.point_ids.len(), &self.session_points);
        for r in &self.recs {
            if r.at_ms > as_of_ms {
                break;
            }
            sweep.apply(r);
        }
        sweep.close(as_of_ms);

        let mut points: Vec<PointPresence> = sweep
            .points
            .into_iter()
            .zip(&self.point_ids)
            .map(|(acc, id)| PointPresence {
                point: id.clone(),
                intervals: acc.intervals,
                present_at_horizon: acc.state.present,
                audio_only_ms: acc.audio_only_ms,
                frozen_ms: acc.frozen_ms,
                first_video_after_ms: acc.first_video_after_ms,
                headcount: acc.headcount,
                n_sessions: acc.n_sessions,
                n_timeouts: acc.n_timeouts,
            })
            .collect();
        points.sort_unstable_by(|a, b| a.point.cmp(&b.point));
        Presence {
            conference: self.conference.clone(),
            as_of_ms,
            live: sweep.live_intervals,
            live_at_horizon: sweep.live,
            points,
            n_events: self.recs.len() as u64,
            n_duplicates: self.n_duplicates,
            n_foreign: self.n_foreign,
        }
    }
}

/// Folds a slice of events of one conference (convenience for one-shot reports).
pub fn fold(conference: ConferenceId, events: &[Event], as_of_ms: i64) -> Presence {
    let mut f = Folder::with_capacity(conference, events.len());
    f.extend(events);
    f.finish(as_of_ms)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Flags {
    present: bool,
    audio_only: bool,
    frozen: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct SessState {
    seen: bool,
    ended: bool,
    flowing: bool,
    audio_only: bool,
    frozen: bool,
}

impl SessState {
    /// (flowing, flowing with video, flowing with a moving picture)
    fn contributions(&self) -> (u32, u32, u32) {
        let f = self.flowing && !self.ended;
        (
            u32::from(f),
            u32::from(f && !self.audio_only),
            u32::from(f && !self.frozen),
        )
    }
}

#[derive(Debug, Default)]
struct PointAcc {
    n_flowing: u32,
    n_video: u32,
    n_moving: u32,
    state: Flags,
    since: i64,
    intervals: Vec<Interval>,
    audio_only_ms: i64,
    frozen_ms: i64,
    first_video_after_ms: Option<u32>,
    headcount: Option<Declaration>,
    n_sessions: u32,
    n_timeouts: u32,
}

impl PointAcc {
    fn target(&self, live: bool) -> Flags {
        let present = live && self.n_flowing > 0;
        Flags {
            present,
            audio_only: present && self.n_video == 0,
            frozen: present && self.n_moving == 0,
        }
    }

    /// Accounts `[since, now)` with the current flags, then moves to the flags implied by
    /// the counters.
    fn settle(&mut self, now: i64, live: bool) {
        let next = self.target(live);
        if next != self.state {
            self.account(now);
            self.state = next;
            self.since = now;
        }
    }

    fn account(&mut self, now: i64) {
        let d = now - self.since;
        if d <= 0 {
            return;
        }
        if self.state.present {
            push_interval(&mut self.intervals, self.since, now);
        }
        if self.state.audio_only {
            self.audio_only_ms += d;
        }
        if self.state.frozen {
            self.frozen_ms += d;
        }
    }
}

fn push_interval(v: &mut Vec<Interval>, start_ms: i64, end_ms: i64) {
    if end_ms <= start_ms {
        return;
    }
    if let Some(last) = v.last_mut()
        && last.end_ms == start_ms
    {
        last.end_ms = end_ms;
        return;
    }
    v.push(Interval { start_ms, end_ms });
}

struct Sweep<'a> {
    live: bool,
    live_since: i64,
    live_intervals: Vec<Interval>,
    points: Vec<PointAcc>,
    sessions: Vec<SessState>,
    session_points: &'a [u32],
}

impl<'a> Sweep<'a> {
    fn new(n_points: usize, session_points: &'a [u32]) -> Self {
        let mut points = Vec::with_capacity(n_points);
        points.resize_with(n_points, PointAcc::default);
        Self {
            live: false,
            live_since: 0,
            live_intervals: Vec::new(),
            points,
            sessions: vec![SessState::default(); session_points.len()],
            session_points,
        }
    }

    fn set_live(&mut self, now: i64, live: bool) {
        if live == self.live {
            return;
        }
        if !live {
            push_interval(&mut self.live_intervals, self.live_since, now);
        }
        self.live = live;
        self.live_since = now;
        for p in &mut self.points {
            if p.n_flowing > 0 {
                p.settle(now, live);
            }
        }
    }

    fn apply(&mut self, r: &Rec) {
        match r.op {
            Op::BroadcastStarted => self.set_live(r.at_ms, true),
            Op::BroadcastEnded => self.set_live(r.at_ms, false),
            Op::Headcount => {
                self.points[r.point as usize].headcount = Some(Declaration {
                    n_people: r.value,
                    at_ms: r.at_ms,
                });
            }
            Op::RollCall => {}
            _ => self.apply_session(r),
        }
    }

    fn apply_session(&mut self, r: &Rec) {
        let s = &mut self.sessions[r.session as usize];
        if s.ended {
            return;
        }
        let p_idx = self.session_points[r.session as usize] as usize;
        let p = &mut self.points[p_idx];
        if !s.seen {
            s.seen = true;
            p.n_sessions += 1;
        }
        let before = s.contributions();
        match r.op {
            Op::Started => {}
            Op::Flowing => s.flowing = true,
            Op::FirstVideoSent => {
                s.flowing = true;
                if p.first_video_after_ms.is_none() {
                    p.first_video_after_ms = Some(r.value);
                }
            }
            // Audio is media delivered: either change also starts the session's flow.
            Op::AudioOnly => {
                s.flowing = true;
                s.audio_only = true;
            }
            Op::VideoResumed => {
                s.flowing = true;
                s.audio_only = false;
            }
            Op::Frozen => s.frozen = true,
            Op::Unfrozen => s.frozen = false,
            Op::Ended(reason) => {
                s.ended = true;
                if reason == EndReason::Timeout {
                    p.n_timeouts += 1;
                }
            }
            Op::BroadcastStarted | Op::BroadcastEnded | Op::Headcount | Op::RollCall => {}
        }
        let after = s.contributions();
        if before != after {
            p.n_flowing = p.n_flowing + after.0 - before.0;
            p.n_video = p.n_video + after.1 - before.1;
            p.n_moving = p.n_moving + after.2 - before.2;
            p.settle(r.at_ms, self.live);
        }
    }

    fn close(&mut self, as_of_ms: i64) {
        if self.live {
            push_interval(&mut self.live_intervals, self.live_since, as_of_ms);
        }
        for p in &mut self.points {
            p.account(as_of_ms);
            p.since = as_of_ms;
        }
    }
}
