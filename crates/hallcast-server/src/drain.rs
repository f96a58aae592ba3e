//! Graceful drain: what a relay does between SIGTERM and its exit.
//!
//! On the first SIGTERM the binary calls [`Drain::start`]; from then on
//! - `/readyz` answers 503 with a failed `draining` check (load balancers and Kubernetes stop
//!   sending new clients);
//! - new WHIP and WHEP POSTs get 503 with `Retry-After` ([`Drain::refuse`]); a viewer page
//!   retries through the route lookup, which sends it elsewhere;
//! - an edge tells its parent in its next report (`draining: true`, sent at once): the
//!   parent's route and 307 redirects stop naming it, and a child relay hears it in its sync
//!   answer and moves to its next fallback;
//! - every viewer that subscribed to the WHEP event `drain` hears where to go
//!   ([`DrainNotice`]): the page connects there first and then lets go of its session here.
//!
//! Sessions that exist are never cut by the drain itself: the hall's publisher on a draining
//! central keeps broadcasting, viewers that cannot move keep playing. The relay exits when no
//! viewer session (point or child relay) is left, or when `http.drain_seconds` have passed;
//! then it ends what remains as a shutdown always did (leaves written to the ledger).
//!
//! The decisions are [`DrainClock::step`] (no clock read, no I/O); [`Drain`] is the shared
//! flag and the notice cell the HTTP layer and the event streams read.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use tokio::sync::watch;

use crate::AppError;

/// What a draining relay answers new sessions in `Retry-After` (seconds): short, because the
/// retry goes through the route lookup, which names another relay.
pub const RETRY_AFTER_S: &str = "2";
/// How often the binary looks at the viewer count while draining.
pub const POLL: Duration = Duration::from_millis(250);

/// What the `drain` event tells a viewer (JSON of the event's `data`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrainNotice {
    /// This relay's base URL (the page avoids it when it asks for a route).
    pub relay: String,
    /// Where to ask for a route first: the central (`home`) when known, else the parent;
    /// `None` on a central without anywhere to send its viewers.
    pub url: Option<String>,
    /// The central's base URL (empty when unknown).
    pub home: String,
    /// This relay's parent (an edge), if any.
    pub parent: Option<String>,
    /// When the relay ends the sessions still here (Unix milliseconds).
    pub deadline_ms: i64,
}

/// The drain's decisions, from the moment it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainClock {
    pub started: Instant,
    pub timeout: Duration,
}

/// What the draining relay does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Viewers remain and there is time left: look again after this long.
    Wait(Duration),
    /// Exit now, for this reason.
    Exit(ExitReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// No viewer session is left.
    Empty,
    /// `http.drain_seconds` passed with viewers still here.
    Timeout,
}

impl DrainClock {
    pub fn new(started: Instant, timeout: Duration) -> DrainClock {
        DrainClock { started, timeout }
    }

    /// The next step at `now` with `viewers` viewer sessions (points and child relays) left.
    pub fn step(&self, now: Instant, viewers: usize) -> Step {
        if viewers == 0 {
            return Step::Exit(ExitReason::Empty);
        }
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= self.timeout {
            return Step::Exit(ExitReason::Timeout);
        }
        Step::Wait(POLL.min(self.timeout - elapsed))
    }

    /// Time left before the timeout at `now`.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.timeout
            .saturating_sub(now.saturating_duration_since(self.started))
    }
}

/// The relay's drain state, shared by the HTTP handlers, the edge loop and the event streams.
pub struct Drain {
    clock: Mutex<Option<DrainClock>>,
    notice: watch::Sender<Option<DrainNotice>>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            clock: Mutex::new(None),
            notice: watch::Sender::new(None),
        }
    }
}

impl std::fmt::Debug for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drain")
            .field("clock", &self.clock())
            .finish()
    }
}

impl Drain {
    /// Enters draining (idempotent: a second call keeps the first start). From now on new
    /// sessions are refused and `/readyz` fails; viewers are told nothing yet (see
    /// [`Drain::notify`]).
    pub fn start(&self, now: Instant, timeout: Duration) -> DrainClock {
        *self
            .clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(DrainClock::new(now, timeout))
    }

    pub fn clock(&self) -> Option<DrainClock> {
        *self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_draining(&self) -> bool {
        self.clock().is_some()
    }

    /// Tells every viewer's event stream where to go.
    pub fn notify(&self, notice: DrainNotice) {
        self.notice.send_replace(Some(notice));
    }

    /// The notice cell an event stream waits on.
    pub fn subscribe(&self) -> watch::Receiver<Option<DrainNotice>> {
        self.notice.subscribe()
    }

    /// `Err(503 + Retry-After)` while draining: a new session must go elsewhere.
    pub fn refuse(&self) -> Result<(), AppError> {
        if !self.is_draining() {
            return Ok(());
        }
        Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Máy chủ đang dừng, hãy kết nối lại nơi khác / this relay is draining (stopping): \
             connect elsewhere in the tree (ask the route again)",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_exits_when_empty_or_at_the_timeout_and_waits_otherwise() {
        let t0 = Instant::now();
        let c = DrainClock::new(t0, Duration::from_secs(30));
        assert_eq!(
            c.step(t0, 0),
            Step::Exit(ExitReason::Empty),
            "nobody: at once"
        );
        assert_eq!(c.step(t0, 3), Step::Wait(POLL));
        let near = t0 + Duration::from_millis(29_900);
        assert_eq!(
            c.step(near, 1),
            Step::Wait(Duration::from_millis(100)),
            "never past the timeout"
        );
        assert_eq!(
            c.step(t0 + Duration::from_secs(30), 1),
            Step::Exit(ExitReason::Timeout)
        );
        assert_eq!(
            c.step(t0 + Duration::from_secs(31), 0),
            Step::Exit(ExitReason::Empty),
            "empty wins over late"
        );
        assert_eq!(
            c.remaining(t0 + Duration::from_secs(10)),
            Duration::from_secs(20)
        );
        assert_eq!(c.remaining(t0 + Duration::from_secs(40)), Duration::ZERO);
        let none = DrainClock::new(t0, Duration::ZERO);
        assert_eq!(
            none.step(t0, 5),
            Step::Exit(ExitReason::Timeout),
            "0 s: no drain"
        );
    }

    #[test]
    fn draining_refuses_new_sessions_with_retry_after_and_keeps_its_first_start() {
        let d = Drain::default();
        assert!(d.refuse().is_ok());
        assert!(!d.is_draining());
        let t0 = Instant::now();
        let c = d.start(t0, Duration::from_secs(30));
        let again = d.start(t0 + Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(c, again, "a second SIGTERM does not restart the drain");
        let e = d.refuse().unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            e.headers,
            vec![(header::RETRY_AFTER, HeaderValue::from_static("2"))]
        );
        let mut rx = d.subscribe();
        assert_eq!(*rx.borrow_and_update(), None);
        let n = DrainNotice {
            relay: "http://edge".into(),
            url: Some("http://central".into()),
            home: "http://central".into(),
            parent: Some("http://central".into()),
            deadline_ms: 1,
        };
        d.notify(n.clone());
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().as_ref(), Some(&n));
    }
}
