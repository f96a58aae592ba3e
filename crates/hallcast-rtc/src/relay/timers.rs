//! The sessions' deadlines, soonest first.
//!
//! A binary heap with one entry per deadline change (a session keeps the key of its live
//! entry; an entry whose key is no longer its session's is stale and skipped when popped).
//! Entries are keyed by whole nanoseconds since the relay's start, not by `Instant`: a paced
//! viewer changes its deadline about twice per packet it is sent, so the heap takes hundreds
//! of thousands of pushes and pops a second at a busy relay, and an `Instant` key (seconds
//! and nanoseconds, compared field by field) with a `u128` id made each entry 32 bytes to
//! move and two comparisons per heap level; a `u64` key and the id's two halves make 24
//! bytes and, as keys rarely tie, one comparison.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::SessionId;

/// A deadline's place on the relay's clock: nanoseconds since [`Timers::new`]'s `epoch`
/// (0 for any instant before it: already due).
pub(crate) type Key = u64;

pub(crate) struct Timers {
    epoch: Instant,
    heap: BinaryHeap<Reverse<(Key, u64, u64)>>,
}

impl Timers {
    pub fn new(epoch: Instant) -> Timers {
        Timers {
            epoch,
            heap: BinaryHeap::new(),
        }
    }

    /// `t` on the relay's clock (saturating below the epoch; 584 years above it).
    pub fn key(&self, t: Instant) -> Key {
        t.saturating_duration_since(self.epoch).as_nanos() as Key
    }

    /// The instant of `key` (exact for an instant at or after the epoch).
    pub fn instant(&self, key: Key) -> Instant {
        self.epoch + Duration::from_nanos(key)
    }

    pub fn push(&mut self, key: Key, id: SessionId) {
        self.heap
            .push(Reverse((key, (id.0 >> 64) as u64, id.0 as u64)));
    }

    /// The soonest entry.
    pub fn peek(&self) -> Option<(Key, SessionId)> {
        self.heap
            .peek()
            .map(|Reverse((k, hi, lo))| (*k, join(*hi, *lo)))
    }

    pub fn pop(&mut self) -> Option<(Key, SessionId)> {
        self.heap
            .pop()
            .map(|Reverse((k, hi, lo))| (k, join(hi, lo)))
    }
}

fn join(hi: u64, lo: u64) -> SessionId {
    SessionId(u128::from(hi) << 64 | u128::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soonest_first_ids_intact_instants_exact() {
        let epoch = Instant::now();
        let mut t = Timers::new(epoch);
        let a = SessionId(u128::MAX - 7);
        let b = SessionId(1 << 64 | 5);
        let c = SessionId(3);
        let at = |ms: u64| epoch + Duration::from_millis(ms) + Duration::from_nanos(17);
        t.push(t.key(at(30)), a);
        t.push(t.key(at(10)), b);
        t.push(t.key(at(20)), c);
        // Before the epoch: already due, first.
        t.push(t.key(epoch - Duration::from_millis(5)), c);
        assert_eq!(t.pop(), Some((0, c)));
        let (k, id) = t.peek().expect("entries");
        assert_eq!((t.instant(k), id), (at(10), b));
        assert_eq!(t.pop().map(|(k, id)| (t.instant(k), id)), Some((at(10), b)));
        assert_eq!(t.pop().map(|(k, id)| (t.instant(k), id)), Some((at(20), c)));
        assert_eq!(t.pop().map(|(k, id)| (t.instant(k), id)), Some((at(30), a)));
        assert_eq!(t.pop(), None);
    }
}
