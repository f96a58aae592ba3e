//! Engine events → attendance ledger events.
//!
//! Only sessions tied to a connection point (a join-link WHEP session) are accounted;
//! the publisher's life is the conference-level broadcast interval. The hook never
//! blocks: [`EventSink::emit`] pushes into the ledger's bounded queue.

use std::collections::HashMap;
use std::sync::Mutex;

use hallcast_core::accounting::{
    ConferenceId, EndReason as LedgerEnd, Event, EventKind, PointId, SessionChange,
};
use hallcast_ledger::{EventSink, new_event_id, now_ms};
use hallcast_rtc::{Delivery, EndReason, EngineEvent, Role};
use tracing::warn;

use crate::{EventHook, SessionMeta};

pub struct LedgerHook {
    sink: EventSink,
    /// What was last reported per session, to tell "resumed" from "started" and to clear
    /// exactly the flags that were set.
    delivery: Mutex<HashMap<hallcast_rtc::SessionId, Reported>>,
}

/// A session's delivery as the ledger last heard it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reported {
    state: Delivery,
    /// `AudioOnly` was emitted and no `VideoResumed` since (a stall in between keeps it).
    audio_only: bool,
}

impl Default for Reported {
    fn default() -> Self {
        Reported {
            state: Delivery::Pending,
            audio_only: false,
        }
    }
}

/// The ledger events for a delivery change, and what is reported after them.
///
/// Audio is media delivered: a first delivery of audio only is `AudioOnly` alone, which the
/// fold counts as present and audio-only (no `MediaFlowing` is needed, nor emitted, so logs of
/// either age mean the same). Every flag the fold keeps is cleared by the event that names it:
/// `Frozen` (nothing reaches the session) by `Unfrozen` as soon as audio or video reaches it
/// again, `AudioOnly` by `VideoResumed` when video is back, even when a stall came between.
fn delivery_changes(prev: Reported, next: Delivery) -> (&'static [SessionChange], Reported) {
    use Delivery::{AudioOnly, Flowing, Pending, Stalled};
    use SessionChange as C;
    let stalled = prev.state == Stalled;
    let changes: &'static [SessionChange] = match next {
        _ if next == prev.state => &[],
        Pending => &[],
        Stalled => &[C::Frozen],
        Flowing => match (stalled, prev.audio_only) {
            (false, false) => &[C::MediaFlowing],
            (false, true) => &[C::VideoResumed],
            (true, false) => &[C::Unfrozen, C::MediaFlowing],
            (true, true) => &[C::Unfrozen, C::VideoResumed],
        },
        AudioOnly => match (stalled, prev.audio_only) {
            (false, _) => &[C::AudioOnly],
            (true, false) => &[C::Unfrozen, C::AudioOnly],
            (true, true) => &[C::Unfrozen],
        },
    };
    let audio_only = match next {
        Flowing => false,
        AudioOnly => true,
        Pending | Stalled => prev.audio_only,
    };
    (
        changes,
        Reported {
            state: next,
            audio_only,
        },
    )
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
        let (Ok(conference), Ok(point)) =
            (ConferenceId::parse(&meta.conference), PointId::parse(point))
        else {
            return;
        };
        let at = now_ms();
        for change in changes {
            self.emit(Event::session_event(
                new_event_id(),
                conference.clone(),
                point.clone(),
                session,
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
                let after_ms = u32::try_from(after.as_millis()).unwrap_or(u32::MAX);
                self.session(
                    meta,
                    *session,
                    &[SessionChange::FirstVideoSent { after_ms }],
                );
            }
            EngineEvent::Delivery { session, state, .. } => {
                let changes = {
                    let mut map = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
                    let reported = map.entry(*session).or_default();
                    let (changes, next) = delivery_changes(*reported, *state);
                    *reported = next;
                    changes
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
                    // Both are the relay ending the session in an orderly way.
                    EndReason::Shutdown | EndReason::ConferenceEnded => LedgerEnd::RelayShutdown,
                    EndReason::SourceGone => LedgerEnd::Error,
                };
                self.session(meta, *session, &[SessionChange::Ended { reason }]);
            }
            EngineEvent::SessionEnded { .. } => {}
            // The ledger hears of a pause for bandwidth through `Delivery` (audio only),
            // which the relay emits at the allocator's decision.
            EngineEvent::Adaptation { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Delivery::{AudioOnly, Flowing, Pending, Stalled};
    use SessionChange as C;

    /// The events a sequence of delivery states (from a new session) turns into.
    fn events(states: &[Delivery]) -> Vec<Vec<SessionChange>> {
        let mut reported = Reported::default();
        states
            .iter()
            .map(|s| {
                let (changes, next) = delivery_changes(reported, *s);
                reported = next;
                changes.to_vec()
            })
            .collect()
    }

    #[test]
    fn a_first_delivery_of_audio_only_is_audio_only_alone() {
        assert_eq!(
            events(&[AudioOnly, Flowing, AudioOnly]),
            vec![
                vec![C::AudioOnly],
                vec![C::VideoResumed],
                vec![C::AudioOnly]
            ]
        );
        assert_eq!(events(&[Flowing]), vec![vec![C::MediaFlowing]]);
    }

    #[test]
    fn a_stall_clears_its_frozen_flag_and_keeps_audio_only_until_video_is_back() {
        // Audio-only, stalled, then video again: audio-only must be cleared too.
        assert_eq!(
            events(&[AudioOnly, Stalled, Flowing]),
            vec![
                vec![C::AudioOnly],
                vec![C::Frozen],
                vec![C::Unfrozen, C::VideoResumed]
            ]
        );
        // Flowing, stalled, then audio only, then video: frozen cleared when audio is back.
        assert_eq!(
            events(&[Flowing, Stalled, AudioOnly, Flowing]),
            vec![
                vec![C::MediaFlowing],
                vec![C::Frozen],
                vec![C::Unfrozen, C::AudioOnly],
                vec![C::VideoResumed]
            ]
        );
        assert_eq!(
            events(&[AudioOnly, Stalled, AudioOnly, Stalled, Flowing]),
            vec![
                vec![C::AudioOnly],
                vec![C::Frozen],
                vec![C::Unfrozen],
                vec![C::Frozen],
                vec![C::Unfrozen, C::VideoResumed]
            ]
        );
        assert_eq!(
            events(&[Flowing, Stalled, Flowing]),
            vec![
                vec![C::MediaFlowing],
                vec![C::Frozen],
                vec![C::Unfrozen, C::MediaFlowing]
            ]
        );
        assert_eq!(events(&[Pending, Pending]), vec![vec![], vec![]]);
    }
}
