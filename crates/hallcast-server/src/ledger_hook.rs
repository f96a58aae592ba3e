//! Engine events → attendance ledger events.
//!
//! Only sessions tied to a connection point (a join-link WHEP session) are accounted;
//! the publisher's life is the conference-level broadcast interval. The hook never
//! blocks: [`EventSink::emit`] pushes into the ledger's bounded queue.

use std::collections::HashMap;
use std::sync::Mutex;

use hallcast_core::accounting::{
    ConferenceId, EndReason as LedgerEnd, Event, EventKind, PointId, SessionChange, SessionId,
};
use hallcast_ledger::{EventSink, new_event_id, now_ms};
use hallcast_rtc::{Delivery, EndReason, EngineEvent, Role};
use tracing::warn;

use crate::{EventHook, SessionMeta};

pub struct LedgerHook {
    sink: EventSink,
    /// Last delivery state per session, to tell "resumed" from "started".
    delivery: Mutex<HashMap<hallcast_rtc::SessionId, Delivery>>,
}

impl LedgerHook {
    pub fn new(sink: EventSink) -> Self {
        LedgerHook {
            sink,
            delivery: Mutex::new(HashMap::new()),
        }
    }

    fn emit(&self, ev: Event) {
        if self.sink.emit(ev).is_err() {
            warn!("attendance event dropped: the ledger queue is full");
        }
    }

    fn session(
        &self,
        meta: Option<&SessionMeta>,
        session: hallcast_rtc::SessionId,
        changes: &[SessionChange],
    ) {
        let Some(meta) = meta else { return };
        let Some(point) = meta.point.as_deref() else {
            return;
        };
        let (Ok(conference), Ok(point), Ok(session)) = (
            ConferenceId::parse(&meta.conference),
            PointId::parse(point),
            SessionId::parse(&session.to_string()),
        ) else {
            return;
        };
        let at = now_ms();
        for change in changes {
            self.emit(Event::session_event(
                new_event_id(),
                conference.clone(),
                point.clone(),
                session.clone(),
                at,
                *change,
            ));
        }
    }
}

impl EventHook for LedgerHook {
    fn on_event(&self, event: &EngineEvent, meta: Option<&SessionMeta>) {
        match event {
            EngineEvent::BroadcastStarted { conference, .. }
            | EngineEvent::BroadcastEnded { conference, .. } => {
                let Ok(conference) = ConferenceId::parse(conference) else {
                    return;
                };
                let kind = if matches!(event, EngineEvent::BroadcastStarted { .. }) {
                    EventKind::BroadcastStarted
                } else {
                    EventKind::BroadcastEnded
                };
                self.emit(Event {
                    event_id: new_event_id(),
                    conference,
                    at_ms: now_ms(),
                    kind,
                });
            }
            EngineEvent::SessionConnected {
                session,
                role: Role::Subscriber,
                ..
            } => {
                self.session(meta, *session, &[SessionChange::Started]);
            }
            EngineEvent::SessionConnected { .. } => {}
            EngineEvent::FirstVideoSent { session, after, .. } => {
                let ttff_ms = u32::try_from(after.as_millis()).unwrap_or(u32::MAX);
                self.session(meta, *session, &[SessionChange::FirstFrame { ttff_ms }]);
            }
            EngineEvent::Delivery { session, state, .. } => {
                let prev = {
                    let mut map = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
                    map.insert(*session, *state).unwrap_or(Delivery::Pending)
                };
                let changes: &[SessionChange] = match (prev, state) {
                    (Delivery::AudioOnly, Delivery::Flowing) => &[SessionChange::VideoResumed],
                    (Delivery::Stalled, Delivery::Flowing) => {
                        &[SessionChange::Unfrozen, SessionChange::MediaFlowing]
                    }
                    (_, Delivery::Flowing) => &[SessionChange::MediaFlowing],
                    (_, Delivery::AudioOnly) => &[SessionChange::AudioOnly],
                    (_, Delivery::Stalled) => &[SessionChange::Frozen],
                    (_, Delivery::Pending) => &[],
                };
                self.session(meta, *session, changes);
            }
            EngineEvent::SessionEnded {
                session,
                role: Role::Subscriber,
                reason,
                ..
            } => {
                self.delivery
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(session);
                let reason = match reason {
                    EndReason::Deleted | EndReason::Closed => LedgerEnd::Deleted,
                    EndReason::Timeout => LedgerEnd::Timeout,
                    EndReason::Shutdown => LedgerEnd::RelayShutdown,
                    EndReason::SourceGone => LedgerEnd::Error,
                };
                self.session(meta, *session, &[SessionChange::Ended { reason }]);
            }
            EngineEvent::SessionEnded { .. } => {}
        }
    }
}
