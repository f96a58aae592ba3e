//! The attendance events the relay emits. They are facts with a time; the fold decides
//! what they mean, so the relay never has to reason about attendance.

use super::ids::{ConferenceId, EventId, PointId, RollCallId, SessionId};

/// One attendance fact.
///
/// `at_ms` is the wall-clock time in Unix milliseconds, supplied by the I/O layer that saw
/// the fact (the core never reads a clock). `event_id` makes the event idempotent: the relay
/// picks 128 random bits per event, and a retried delivery reuses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_id: EventId,
    pub conference: ConferenceId,
    pub at_ms: i64,
    pub kind: EventKind,
}

/// What happened. Conference-level kinds carry no point; point-level kinds carry their point
/// (and, when they come from one WHEP session, the session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The hall feed went live (the publisher's media reached the relay).
    BroadcastStarted,
    /// The hall feed is gone (publisher left, or was lost).
    BroadcastEnded,
    /// The point declared how many people are present (the latest declaration counts).
    Headcount { point: PointId, n_people: u32 },
    /// Something happened to one WHEP session of a point.
    Session {
        point: PointId,
        session: SessionId,
        change: SessionChange,
    },
    /// An organiser started a roll call (điểm danh): every connected point is asked to
    /// confirm its presence and its number of people before `deadline_ms`. The roll call's
    /// id is this event's own id.
    RollCallStarted { deadline_ms: i64 },
    /// A point answered a roll call with the number of people present (the latest answer
    /// before the deadline counts).
    RollCallAnswered {
        point: PointId,
        rollcall: RollCallId,
        n_people: u32,
    },
}

/// A change in one WHEP session's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange {
    /// The WHEP session was created (POST answered).
    Started,
    /// Media is being delivered to the session (first delivery, or delivery resumed).
    MediaFlowing,
    /// The relay sent the session its first video packet `after_ms` after the session was
    /// created (its WHEP POST was answered). This is the relay's side of the link: it says
    /// nothing about when, or whether, the receiver decoded a picture.
    /// Implies [`SessionChange::MediaFlowing`].
    FirstVideoSent { after_ms: u32 },
    /// Only audio reaches the session (as its first delivery, or after video stopped).
    /// Audio is media delivered: implies [`SessionChange::MediaFlowing`].
    AudioOnly,
    /// Video reaches the session again after [`SessionChange::AudioOnly`].
    /// Implies [`SessionChange::MediaFlowing`].
    VideoResumed,
    /// The picture stands still: the relay delivers nothing to the session any more (the
    /// session still counts as receiving media, as the hall's feed is what stalled).
    Frozen,
    /// Media reaches the session again after [`SessionChange::Frozen`].
    Unfrozen,
    /// The session is over; a session never comes back after this.
    Ended { reason: EndReason },
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The viewer sent DELETE (left on purpose).
    Deleted,
    /// The session stopped answering (ICE consent failure, no receiver reports) and the
    /// relay ended it.
    Timeout,
    /// The relay shut down in an orderly way.
    RelayShutdown,
    /// The relay vanished (crash, kill -9) and the ledger closed the session when the
    /// node came back, at the node's last heartbeat.
    RelayLost,
    /// A protocol or internal error ended the session.
    Error,
}

impl Event {
    /// The point this event is about, if it is a point-level event.
    pub fn point(&self) -> Option<&PointId> {
        match &self.kind {
            EventKind::Headcount { point, .. }
            | EventKind::Session { point, .. }
            | EventKind::RollCallAnswered { point, .. } => Some(point),
            EventKind::BroadcastStarted
            | EventKind::BroadcastEnded
            | EventKind::RollCallStarted { .. } => None,
        }
    }

    /// The WHEP session this event is about, if any.
    pub fn session(&self) -> Option<&SessionId> {
        match &self.kind {
            EventKind::Session { session, .. } => Some(session),
            _ => None,
        }
    }

    /// Shorthand for a session event.
    pub fn session_event(
        event_id: EventId,
        conference: ConferenceId,
        point: PointId,
        session: SessionId,
        at_ms: i64,
        change: SessionChange,
    ) -> Self {
        Self {
            event_id,
            conference,
            at_ms,
            kind: EventKind::Session {
                point,
                session,
                change,
            },
        }
    }
}

impl EventKind {
    /// Processing order among events with the same `at_ms`: beginnings before ends, so an
    /// appearance and a disappearance in the same millisecond leave nothing open, and the
    /// result never depends on arrival order. Ties after this go by `event_id`.
    pub fn same_instant_rank(&self) -> u8 {
        match self {
            EventKind::BroadcastStarted => 0,
            EventKind::Session { change, .. } => match change {
                SessionChange::Started => 1,
                SessionChange::MediaFlowing => 2,
                SessionChange::FirstVideoSent { .. } => 3,
                SessionChange::VideoResumed => 4,
                SessionChange::AudioOnly => 5,
                SessionChange::Unfrozen => 6,
                SessionChange::Frozen => 7,
                SessionChange::Ended { .. } => 9,
            },
            EventKind::Headcount { .. } => 8,
            EventKind::RollCallStarted { .. } => 8,
            EventKind::RollCallAnswered { .. } => 8,
            EventKind::BroadcastEnded => 10,
        }
    }
}
