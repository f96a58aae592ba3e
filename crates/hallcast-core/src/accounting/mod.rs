//! Attendance folding: join/leave/media events into per-point presence and the report model
//! (sans-IO).
//!
//! Owns: the event vocabulary the relay emits ([`Event`]), the identifiers
//! ([`ConferenceId`], [`PointId`], [`OrgId`], [`SessionId`], [`EventId`]), the fold of events
//! into presence intervals ([`Folder`], [`fold`]) and the report model ([`build_report`]).
//!
//! Never: reads a clock (the horizon `as_of_ms` and every `at_ms` are arguments), touches a
//! database or a socket, serializes (no serde here: the ledger stores, the server renders),
//! or panics on any event sequence: events may arrive in any order, any number of times,
//! with gaps, and the result depends only on the set of distinct event ids.
//!
//! The flow: the relay emits [`Event`]s → the ledger stores them durably → a report loads a
//! conference's events, pushes them into a [`Folder`], calls [`Folder::finish`] at a horizon,
//! then [`build_report`] joins the [`Presence`] with the registry.
//!
//! Meaning of the events (stated in full in `accounting/fold.rs`, and restated independently
//! by the oracle of the ledger's property test): a point is present while the broadcast is
//! live and one of its WHEP sessions has media flowing — media delivered, audio included: a
//! session that only ever receives audio is present, its time counted as audio-only;
//! audio-only and frozen while present and every flowing session is; reconnect gaps of at
//! most the grace window (60 s by default) are interruptions within one attendance, longer
//! gaps separate attendances.
//!
//! What the relay emits, and when:
//! * `BroadcastStarted` / `BroadcastEnded` when the publisher's media arrives / is gone;
//! * per WHEP session: `Started` at POST; `MediaFlowing` when media first reaches it (video,
//!   or audio to a session without video) and again after delivery resumed; `AudioOnly`
//!   instead when only audio reaches a session that has video (first delivery, or video
//!   lost) and `VideoResumed` when video is back; `FirstVideoSent { after_ms }` when the
//!   relay sent it its first video packet; `Frozen` / `Unfrozen` when nothing reaches it /
//!   media reaches it again; and exactly one `Ended { reason }` (DELETE →
//!   `Deleted`; no consent/receiver reports for 10 s → `Timeout`; orderly shutdown →
//!   `RelayShutdown`; the ledger itself writes `RelayLost` after a crash);
//! * `Headcount` whenever the viewer page declares the number of people;
//! * `RollCallStarted` when an organiser starts a roll call, `RollCallAnswered` when a point
//!   answers it (folded by [`roll_calls`], not by the presence fold).

mod board;
mod event;
mod fold;
mod hash;
mod ids;
mod report;
mod rollcall;

pub use board::{
    Alert, AlertKind, Board, BoardInput, DEGRADED_LOSS, Delivery, LiveSession, OrgBoard,
    PointBoard, PointState, RelayDown, board,
};
pub use event::{EndReason, Event, EventKind, SessionChange};
pub use fold::{Declaration, Folder, Interval, PointPresence, Presence, fold};
pub use ids::{ConferenceId, EventId, IdError, OrgId, PointId, RollCallId, SessionId};
pub use report::{
    DEFAULT_GRACE_MS, OrgRow, Organisation, PointInfo, PointRow, Report, ReportConfig, StoreOutage,
    build_report,
};
pub use rollcall::{RollCall, RollCallOutcome, RollCallPoint, roll_calls, running};

#[cfg(test)]
mod tests;
