//! Moving events between ledgers: an edge relay's outbox reads its ledger in `seq` order
//! ([`crate::Ledger::events_after`]) and its parent appends them
//! ([`crate::Ledger::import`]), each keeping the `node` and `run` that first stored it.
//!
//! [`EventJson`] is the wire form of one event (the body of `POST /api/v1/relay/events`).
//! It lives here, beside the stored form, because its `kind` and `value` are exactly the
//! stored columns (`codec`): one vocabulary for the table and the wire, and a relay of a
//! newer version that adds a kind is refused loudly instead of misread.

use hallcast_core::accounting::{Event, EventKind};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{LedgerError, Result};

/// An event as stored, with its place in the log and its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in this ledger's log (strictly increasing in commit order on SQLite).
    pub seq: i64,
    pub event: Event,
    /// The relay node that first stored the event.
    pub node: String,
    /// That node's run (process lifetime) when it stored the event.
    pub run: i64,
}

impl StoredEvent {
    /// The event and its origin, without the local position.
    pub fn into_origin(self) -> OriginEvent {
        OriginEvent {
            event: self.event,
            node: self.node,
            run: self.run,
        }
    }
}

/// An event with the node and run that first stored it: what [`crate::Ledger::import`] takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginEvent {
    pub event: Event,
    pub node: String,
    pub run: i64,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Imported {
    /// Events newly stored.
    pub n_accepted: u64,
    /// Events whose id was already stored (sent twice, or through two parents).
    pub n_duplicates: u64,
}

/// Whether an event is about one point (headcounts, sessions): the only events an edge
/// forwards. Broadcast events describe the edge's own pull from its parent, not the hall.
pub fn is_point_level(ev: &Event) -> bool {
    match ev.kind {
        EventKind::Headcount { .. }
        | EventKind::Session { .. }
        | EventKind::RollCallAnswered { .. } => true,
        // A roll call is started on the central, where the organisers are.
        EventKind::BroadcastStarted
        | EventKind::BroadcastEnded
        | EventKind::RollCallStarted { .. } => false,
    }
}

/// Longest node name accepted from the wire.
pub const MAX_NODE_LEN: usize = 128;

/// The JSON form of an event with its origin. Field names are stable; `kind` is the stored
/// kind name (`headcount`, `session_started`, `media_flowing`, `first_frame`, `audio_only`,
/// `video_resumed`, `frozen`, `unfrozen`, `ended_deleted`, `ended_timeout`,
/// `ended_relay_shutdown`, `ended_relay_lost`, `ended_error`, `broadcast_started`,
/// `broadcast_ended`, `rollcall_started`, `rollcall_answered`) and `value` its number
/// (headcount and `rollcall_answered`: people; `first_frame`: ms; `rollcall_started`: the
/// deadline in Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventJson {
    /// The sender's log position; informative only, ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// 32 hex digits.
    pub event_id: String,
    pub conference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub at_ms: i64,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    pub node: String,
    pub run: i64,
}

impl EventJson {
    fn of(seq: Option<i64>, event: &Event, node: &str, run: i64) -> Self {
        let row = codec::to_row(event);
        EventJson {
            seq,
            event_id: event.event_id.to_string(),
            conference: row.conference,
            point: row.point,
            session: row.session,
            at_ms: row.at_ms,
            kind: row.kind.to_owned(),
            value: row.value,
            node: node.to_owned(),
            run,
        }
    }
}

impl From<&StoredEvent> for EventJson {
    fn from(s: &StoredEvent) -> Self {
        EventJson::of(Some(s.seq), &s.event, &s.node, s.run)
    }
}

impl From<&OriginEvent> for EventJson {
    fn from(o: &OriginEvent) -> Self {
        EventJson::of(None, &o.event, &o.node, o.run)
    }
}

impl TryFrom<EventJson> for OriginEvent {
    type Error = LedgerError;

    /// Parses and checks every field; errors are [`LedgerError::Invalid`] naming the event.
    fn try_from(j: EventJson) -> Result<Self> {
        let invalid = |why: String| LedgerError::Invalid(format!("event {}: {why}", j.event_id));
        let id: hallcast_core::accounting::EventId = j
            .event_id
            .parse()
            .map_err(|e| invalid(format!("event_id must be 32 hex digits ({e})")))?;
        if j.node.is_empty() || j.node.len() > MAX_NODE_LEN || j.node.chars().any(char::is_control)
        {
            return Err(invalid(format!(
                "node must be 1 to {MAX_NODE_LEN} printable characters"
            )));
        }
        let event = codec::from_row(
            &id.to_bytes(),
            &j.conference,
            j.point.as_deref(),
            j.session.as_deref(),
            j.at_ms,
            &j.kind,
            j.value,
        )
        .map_err(|e| match e {
            LedgerError::Corrupt(why) => invalid(why),
            other => other,
        })?;
        Ok(OriginEvent {
            event,
            node: j.node,
            run: j.run,
        })
    }
}

#[cfg(test)]
mod tests {
    use hallcast_core::accounting::{ConferenceId, EventId, PointId, SessionChange, SessionId};

    use super::*;

    #[test]
    fn json_round_trips_with_stable_names() {
        let ev = Event::session_event(
            EventId(0xabc),
            ConferenceId::parse("hn-2025").unwrap(),
            PointId::parse("hue-1").unwrap(),
            SessionId(0x51),
            1_700_000_000_000,
            SessionChange::FirstVideoSent { after_ms: 850 },
        );
        let stored = StoredEvent {
            seq: 7,
            event: ev.clone(),
            node: "edge-a".into(),
            run: 3,
        };
        let j = EventJson::from(&stored);
        let text = serde_json::to_string(&j).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"seq\":7,\"event_id\":\"{}\",\"conference\":\"hn-2025\",\"point\":\"hue-1\",\
                 \"session\":\"{}\",\"at_ms\":1700000000000,\"kind\":\"first_frame\",\"value\":850,\
                 \"node\":\"edge-a\",\"run\":3}}",
                EventId(0xabc),
                SessionId(0x51)
            )
        );
        let back: EventJson = serde_json::from_str(&text).unwrap();
        assert_eq!(
            OriginEvent::try_from(back).unwrap(),
            stored.clone().into_origin()
        );
        assert!(is_point_level(&ev));

        let mut bad = j.clone();
        bad.kind = "teleported".into();
        assert!(matches!(
            OriginEvent::try_from(bad),
            Err(LedgerError::Invalid(_))
        ));
        let mut bad = j.clone();
        bad.event_id = "xyz".into();
        assert!(matches!(
            OriginEvent::try_from(bad),
            Err(LedgerError::Invalid(_))
        ));
        let mut bad = j;
        bad.node = String::new();
        assert!(matches!(
            OriginEvent::try_from(bad),
            Err(LedgerError::Invalid(_))
        ));
    }
}
