//! Health policy, as values: whether a session is alive, what a viewer receives, when
//! viewers of a vanished source give up. Pure functions of readings and time, so the relay
//! applies them and the tests check them without a network.

use std::time::{Duration, Instant};

use crate::api::{Delivery, EndReason};

/// Window over which [`Delivery`] is judged.
pub const DELIVERY_WINDOW: Duration = Duration::from_secs(2);
/// How long viewers wait for a source to come back before they are ended.
pub const SOURCE_GRACE: Duration = Duration::from_secs(30);

/// Liveness limits of a session.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    /// A connected session from which nothing (STUN consent, RTCP, media) arrived for this
    /// long is ended.
    pub session_timeout: Duration,
    /// A session that never connects is ended after this long.
    pub connect_timeout: Duration,
}

impl Liveness {
    /// Why the session must end now, if it must.
    pub fn verdict(
        &self,
        connected: bool,
        last_rx: Instant,
        stack_alive: bool,
        now: Instant,
    ) -> Option<EndReason> {
        if !stack_alive {
            return Some(EndReason::Closed);
        }
        let silent = now.saturating_duration_since(last_rx);
        let limit = if connected {
            self.session_timeout
        } else {
            self.connect_timeout
        };
        (silent >= limit).then_some(EndReason::Timeout)
    }
}

/// What a viewer receives, from when its last audio and video packets left.
/// `has_video`: it negotiated video; `parked`: some of its video waits in the replay backlog
/// (on its way, so it is not audio-only: the state stays `prev`).
pub fn delivery(
    prev: Delivery,
    has_video: bool,
    last_audio_at: Option<Instant>,
    last_video_at: Option<Instant>,
    parked: bool,
    now: Instant,
) -> Delivery {
    let recent =
        |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < DELIVERY_WINDOW);
    if recent(last_video_at) || (!has_video && recent(last_audio_at)) {
        Delivery::Flowing
    } else if parked {
        prev
    } else if recent(last_audio_at) {
        Delivery::AudioOnly
    } else if prev == Delivery::Pending {
        Delivery::Pending
    } else {
        Delivery::Stalled
    }
}

/// Viewers of a source that left at `gone_at` are ended once this is true.
pub fn orphaned(gone_at: Option<Instant>, now: Instant) -> bool {
    gone_at.is_some_and(|t| now.saturating_duration_since(t) >= SOURCE_GRACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_ends_silent_and_never_connected_sessions() {
        let t0 = Instant::now();
        let l = Liveness {
            session_timeout: Duration::from_secs(6),
            connect_timeout: Duration::from_secs(20),
        };
        let s = Duration::from_secs;
        assert_eq!(l.verdict(true, t0, true, t0 + s(5)), None);
        assert_eq!(
            l.verdict(true, t0, true, t0 + s(6)),
            Some(EndReason::Timeout)
        );
        assert_eq!(l.verdict(false, t0, true, t0 + s(19)), None);
        assert_eq!(
            l.verdict(false, t0, true, t0 + s(20)),
            Some(EndReason::Timeout)
        );
        assert_eq!(l.verdict(true, t0, false, t0), Some(EndReason::Closed));
    }

    #[test]
    fn delivery_says_what_a_viewer_receives() {
        let t0 = Instant::now();
        let ms = |m| t0 + Duration::from_millis(m);
        use Delivery::*;
        // Nothing yet.
        assert_eq!(delivery(Pending, true, None, None, false, ms(100)), Pending);
        // A joiner whose replay is parked stays Pending (audio alone is no audio-only state).
        assert_eq!(
            delivery(Pending, true, Some(ms(50)), None, true, ms(100)),
            Pending
        );
        assert_eq!(
            delivery(Pending, true, Some(ms(50)), Some(ms(60)), false, ms(100)),
            Flowing
        );
        assert_eq!(
            delivery(
                Flowing,
                true,
                Some(ms(2900)),
                Some(ms(500)),
                false,
                ms(3000)
            ),
            AudioOnly
        );
        assert_eq!(
            delivery(
                AudioOnly,
                true,
                Some(ms(500)),
                Some(ms(500)),
                false,
                ms(3000)
            ),
            Stalled
        );
        // An audio-only broadcast flows on audio.
        assert_eq!(
            delivery(Pending, false, Some(ms(50)), None, false, ms(100)),
            Flowing
        );
    }

    #[test]
    fn viewers_of_a_vanished_source_wait_out_the_grace() {
        let t0 = Instant::now();
        assert!(!orphaned(None, t0));
        assert!(!orphaned(
            Some(t0),
            t0 + SOURCE_GRACE - Duration::from_millis(1)
        ));
        assert!(orphaned(Some(t0), t0 + SOURCE_GRACE));
    }
}
