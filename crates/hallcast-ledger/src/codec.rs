//! The stored form of an event: one row, columns that any SQL database has.

use hallcast_core::accounting::{
    ConferenceId, EndReason, Event, EventId, EventKind, PointId, RollCallId, SessionChange,
    SessionId,
};

use crate::error::{LedgerError, Result};

/// One event as a row (see `store` for the table).
///
/// `session` holds the WHEP session of session events and, for `rollcall_answered`, the
/// roll call answered (a roll call's id is its `rollcall_started` event's id, whose `value`
/// is the deadline in Unix ms). Queries about sessions therefore also filter on `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub event_id: [u8; 16],
    pub conference: String,
    pub point: Option<String>,
    pub session: Option<String>,
    pub at_ms: i64,
    pub kind: &'static str,
    pub value: Option<i64>,
}

/// Every stored kind name, one per event kind (and end reason).
#[cfg(test)]
pub const KINDS: &[&str] = &[
    "broadcast_started",
    "broadcast_ended",
    "headcount",
    "session_started",
    "media_flowing",
    "first_frame", // FirstVideoSent (its name before the rename, kept in stored rows)
    "audio_only",
    "video_resumed",
    "frozen",
    "unfrozen",
    "ended_deleted",
    "ended_timeout",
    "ended_relay_shutdown",
    "ended_relay_lost",
    "ended_error",
    "rollcall_started",
    "rollcall_answered",
];

pub fn to_row(ev: &Event) -> Row {
    let (point, session, kind, value): (Option<&PointId>, Option<String>, &'static str, _) =
        match &ev.kind {
            EventKind::RollCallStarted { deadline_ms } => {
                (None, None, "rollcall_started", Some(*deadline_ms))
            }
            EventKind::RollCallAnswered {
                point,
                rollcall: rc,
                n_people,
            } => (
                Some(point),
                Some(rc.to_string()),
                "rollcall_answered",
                Some(i64::from(*n_people)),
            ),
            EventKind::BroadcastStarted => (None, None, "broadcast_started", None),
            EventKind::BroadcastEnded => (None, None, "broadcast_ended", None),
            EventKind::Headcount { point, n_people } => {
                (Some(point), None, "headcount", Some(i64::from(*n_people)))
            }
            EventKind::Session {
                point,
                session,
                change,
            } => {
                let (kind, value) = match change {
                    SessionChange::Started => ("session_started", None),
                    SessionChange::MediaFlowing => ("media_flowing", None),
                    // Stored as "first_frame", the name this event had before it was named for
                    // what it is (the relay sent the first video packet, no frame was decoded):
                    // kept so that ledgers written before still load.
                    SessionChange::FirstVideoSent { after_ms } => {
                        ("first_frame", Some(i64::from(*after_ms)))
                    }
                    SessionChange::AudioOnly => ("audio_only", None),
                    SessionChange::VideoResumed => ("video_resumed", None),
                    SessionChange::Frozen => ("frozen", None),
                    SessionChange::Unfrozen => ("unfrozen", None),
                    SessionChange::Ended { reason } => (
                        match reason {
                            EndReason::Deleted => "ended_deleted",
                            EndReason::Timeout => "ended_timeout",
                            EndReason::RelayShutdown => "ended_relay_shutdown",
                            EndReason::RelayLost => "ended_relay_lost",
                            EndReason::Error => "ended_error",
                        },
                        None,
                    ),
                };
                (Some(point), Some(session.to_string()), kind, value)
            }
        };
    Row {
        event_id: ev.event_id.to_bytes(),
        conference: ev.conference.to_string(),
        point: point.map(ToString::to_string),
        session,
        at_ms: ev.at_ms,
        kind,
        value,
    }
}

/// Reads a stored row back. Every failure is [`LedgerError::Corrupt`]: rows are only ever
/// written by [`to_row`].
pub fn from_row(
    event_id: &[u8],
    conference: &str,
    point: Option<&str>,
    session: Option<&str>,
    at_ms: i64,
    kind: &str,
    value: Option<i64>,
) -> Result<Event> {
    let corrupt = |what: &str| LedgerError::Corrupt(format!("{what} in event row ({kind})"));
    let event_id = EventId::from_slice(event_id).ok_or_else(|| corrupt("event id length"))?;
    let conference = ConferenceId::parse(conference).map_err(|_| corrupt("conference id"))?;
    let point = || -> Result<PointId> {
        PointId::parse(point.ok_or_else(|| corrupt("missing point"))?)
            .map_err(|_| corrupt("point id"))
    };
    let value_u32 = || -> Result<u32> {
        value
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| corrupt("value"))
    };
    let change = |change: SessionChange| -> Result<EventKind> {
        let session = SessionId::parse(session.ok_or_else(|| corrupt("missing session"))?)
            .map_err(|_| corrupt("session id"))?;
        Ok(EventKind::Session {
            point: point()?,
            session,
            change,
        })
    };
    let ended = |reason| change(SessionChange::Ended { reason });
    let kind = match kind {
        "broadcast_started" => EventKind::BroadcastStarted,
        "broadcast_ended" => EventKind::BroadcastEnded,
        "headcount" => EventKind::Headcount {
            point: point()?,
            n_people: value_u32()?,
        },
        "session_started" => change(SessionChange::Started)?,
        "media_flowing" => change(SessionChange::MediaFlowing)?,
        // `FirstVideoSent`'s stored tag (see `to_row`).
        "first_frame" => change(SessionChange::FirstVideoSent {
            after_ms: value_u32()?,
        })?,
        "audio_only" => change(SessionChange::AudioOnly)?,
        "video_resumed" => change(SessionChange::VideoResumed)?,
        "frozen" => change(SessionChange::Frozen)?,
        "unfrozen" => change(SessionChange::Unfrozen)?,
        "ended_deleted" => ended(EndReason::Deleted)?,
        "ended_timeout" => ended(EndReason::Timeout)?,
        "ended_relay_shutdown" => ended(EndReason::RelayShutdown)?,
        "ended_relay_lost" => ended(EndReason::RelayLost)?,
        "ended_error" => ended(EndReason::Error)?,
        "rollcall_started" => EventKind::RollCallStarted {
            deadline_ms: value.ok_or_else(|| corrupt("missing deadline"))?,
        },
        "rollcall_answered" => EventKind::RollCallAnswered {
            point: point()?,
            rollcall: RollCallId::parse(session.ok_or_else(|| corrupt("missing roll call"))?)
                .map_err(|_| corrupt("roll call id"))?,
            n_people: value_u32()?,
        },
        _ => return Err(corrupt("unknown kind")),
    };
    Ok(Event {
        event_id,
        conference,
        at_ms,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let c = ConferenceId::parse("c").unwrap();
        let p = PointId::parse("p").unwrap();
        let s = SessionId(0x51);
        let mut kinds = vec![
            EventKind::BroadcastStarted,
            EventKind::BroadcastEnded,
            EventKind::Headcount {
                point: p.clone(),
                n_people: u32::MAX,
            },
        ];
        let changes = [
            SessionChange::Started,
            SessionChange::MediaFlowing,
            SessionChange::FirstVideoSent { after_ms: 1234 },
            SessionChange::AudioOnly,
            SessionChange::VideoResumed,
            SessionChange::Frozen,
            SessionChange::Unfrozen,
            SessionChange::Ended {
                reason: EndReason::Deleted,
            },
            SessionChange::Ended {
                reason: EndReason::Timeout,
            },
            SessionChange::Ended {
                reason: EndReason::RelayShutdown,
            },
            SessionChange::Ended {
                reason: EndReason::RelayLost,
            },
            SessionChange::Ended {
                reason: EndReason::Error,
            },
        ];
        kinds.extend(changes.into_iter().map(|change| EventKind::Session {
            point: p.clone(),
            session: s,
            change,
        }));
        kinds.push(EventKind::RollCallStarted {
            deadline_ms: 1_700_000_060_000,
        });
        kinds.push(EventKind::RollCallAnswered {
            point: p.clone(),
            rollcall: RollCallId(0xabc),
            n_people: 7,
        });
        let mut names = Vec::new();
        for (i, kind) in kinds.into_iter().enumerate() {
            let ev = Event {
                event_id: EventId(i as u128 * 77 + 1),
                conference: c.clone(),
                at_ms: -5 + i as i64,
                kind,
            };
            let r = to_row(&ev);
            names.push(r.kind);
            let back = from_row(
                &r.event_id,
                &r.conference,
                r.point.as_deref(),
                r.session.as_deref(),
                r.at_ms,
                r.kind,
                r.value,
            )
            .unwrap();
            assert_eq!(back, ev);
        }
        assert_eq!(names, KINDS);
        assert!(from_row(&[0; 16], "c", None, None, 0, "nope", None).is_err());
        assert!(from_row(&[0; 3], "c", None, None, 0, "broadcast_started", None).is_err());
        assert!(from_row(&[0; 16], "c", Some("p"), None, 0, "frozen", None).is_err());
        assert!(from_row(&[0; 16], "c", Some("p"), None, 0, "headcount", Some(-1)).is_err());
    }
}
