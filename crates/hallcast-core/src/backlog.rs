//! The replay backlog: joiners' GOP replays wait here and go out in bounded slices, so a
//! join storm never holds back the live stream of the consumers already watching.
//!
//! A joiner's replay is the whole cached GOP — up to a few hundred packets at once. Written
//! straight into the send path, 500 joiners in one second put ~180 000 packets in front of
//! everyone's live audio and video (measured with `hallcast-load storm`: steady viewers'
//! audio was held back by 0.7 s at the median). Here the relay parks replayed video per
//! consumer and releases it round-robin, a few frames per consumer per visit and a fixed
//! number of packets per turn of the media loop, after that turn's live packets.
//!
//! Invariants:
//! - Per consumer, packets leave in the order they were parked: while a consumer has
//!   parked video, its live video is parked behind it ([`Backlog::admit`]), so its sequence
//!   numbers stay in order and the receiver sees no gap to NACK.
//! - A consumer whose video is dropped (a pause, its pacer's queue dropped) loses what it
//!   has parked too ([`Backlog::drop_parked`]): parked packets already carry their outgoing
//!   numbers, which the restarted stream reuses.
//! - Audio is never parked (audio first: it is small and it is what a hall must hear).
//! - Bounded: at most [`MAX_PARKED_PER_SUBSCRIBER`] packets per consumer; past that, packets
//!   are dropped and counted (the receiver's NACK/PLI recovers, as for any loss).
//! - Sans-IO: no clock, no sockets; the caller decides when a turn happens.

use std::collections::{HashMap, VecDeque};

use crate::consumer::{ConsumerId, Forward};
use crate::media::MediaKind;

/// Packets one consumer may have parked (a GOP at the cache's packet bound).
pub const MAX_PARKED_PER_SUBSCRIBER: usize = crate::producer::GOP_MAX_PACKETS;

/// Parked video per consumer, released round-robin.
#[derive(Debug, Default)]
pub struct Backlog {
    parked: HashMap<ConsumerId, VecDeque<Forward>>,
    /// Consumers with parked packets, in visiting order (each appears once).
    ring: VecDeque<ConsumerId>,
    len: usize,
    dropped: u64,
}

impl Backlog {
    pub fn new() -> Backlog {
        Backlog::default()
    }

    /// Parks a replayed packet (audio passes through: returned as `Some`).
    pub fn park(&mut self, f: Forward) -> Option<Forward> {
        if f.kind == MediaKind::Audio {
            return Some(f);
        }
        let q = self.parked.entry(f.sub).or_default();
        if q.is_empty() {
            self.ring.push_back(f.sub);
        }
        if q.len() >= MAX_PARKED_PER_SUBSCRIBER {
            self.dropped += 1;
            return None;
        }
        q.push_back(f);
        self.len += 1;
        None
    }

    /// A live packet: returned to be sent now, unless its consumer still has parked
    /// video, behind which it is parked (order per consumer is kept).
    pub fn admit(&mut self, f: Forward) -> Option<Forward> {
        // Fast path (nothing parked: every packet of a quiet relay) costs one comparison.
        if self.len == 0 {
            return Some(f);
        }
        if f.kind == MediaKind::Video && self.parked.get(&f.sub).is_some_and(|q| !q.is_empty()) {
            return self.park(f);
        }
        Some(f)
    }

    /// Releases up to `budget` packets into `out`, at most `per_visit` from one consumer
    /// before moving to the next.
    pub fn release(&mut self, budget: usize, per_visit: usize, out: &mut Vec<Forward>) {
        let per_visit = per_visit.max(1);
        let mut left = budget;
        while left > 0 {
            let Some(sub) = self.ring.pop_front() else {
                break;
            };
            let Some(q) = self.parked.get_mut(&sub) else {
                continue;
            };
            let n = q.len().min(per_visit).min(left);
            out.extend(q.drain(..n));
            self.len -= n;
            left -= n;
            if q.is_empty() {
                self.parked.remove(&sub);
            } else {
                self.ring.push_back(sub);
            }
        }
    }

    /// Forgets a consumer's parked packets (it left).
    pub fn remove(&mut self, sub: ConsumerId) {
        self.drop_parked(sub);
    }

    /// Drops a consumer's parked video (its video was paused, or its pacer dropped what it
    /// held): the outgoing sequence number of the first packet dropped and how many, so
    /// the consumer numbers on from there. Not counted in [`Backlog::n_dropped`] (that
    /// counts overflows, which leave gaps).
    pub fn drop_parked(&mut self, sub: ConsumerId) -> Option<(u64, usize)> {
        let q = self.parked.remove(&sub)?;
        self.len -= q.len();
        self.ring.retain(|s| *s != sub);
        Some((q.front()?.seq, q.len()))
    }

    /// Whether `sub` has video parked: its video is on its way (a replay not yet released, live
    /// video queued behind it), so a receiver that hears only its audio so far is not one that
    /// gets no video.
    pub fn has_parked(&self, sub: ConsumerId) -> bool {
        self.parked.get(&sub).is_some_and(|q| !q.is_empty())
    }

    /// Packets parked, all consumers.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Packets dropped because a consumer's backlog was full.
    pub fn n_dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::media::Layer;

    fn fwd(sub: u64, kind: MediaKind, seq: u64) -> Forward {
        Forward {
            sub: ConsumerId(sub.into()),
            kind,
            layer: Layer(0),
            seq,
            ts: 0,
            marker: false,
            keyframe_start: false,
            payload: Arc::from(&b"x"[..]),
            arrival: Instant::now(),
            vp8: None,
        }
    }

    fn seqs(out: &[Forward], sub: u64) -> Vec<u64> {
        out.iter()
            .filter(|f| f.sub == ConsumerId(sub.into()))
            .map(|f| f.seq)
            .collect()
    }

    #[test]
    fn audio_is_never_parked() {
        let mut b = Backlog::new();
        assert!(b.park(fwd(1, MediaKind::Audio, 1)).is_some());
        b.park(fwd(1, MediaKind::Video, 1));
        assert!(b.admit(fwd(1, MediaKind::Audio, 2)).is_some());
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn live_video_waits_behind_its_consumers_replay_and_order_is_kept() {
        let mut b = Backlog::new();
        for s in 0..5 {
            b.park(fwd(1, MediaKind::Video, s));
        }
        // Consumer 2 has nothing parked: its live video goes at once.
        assert!(b.admit(fwd(2, MediaKind::Video, 100)).is_some());
        // Consumer 1's live video queues behind its replay.
        assert!(b.admit(fwd(1, MediaKind::Video, 5)).is_none());
        let mut out = Vec::new();
        b.release(3, 8, &mut out);
        assert_eq!(seqs(&out, 1), vec![0, 1, 2]);
        assert!(b.admit(fwd(1, MediaKind::Video, 6)).is_none());
        b.release(100, 8, &mut out);
        assert_eq!(seqs(&out, 1), vec![0, 1, 2, 3, 4, 5, 6]);
        assert!(b.is_empty());
        // Drained: live video flows directly again.
        assert!(b.admit(fwd(1, MediaKind::Video, 7)).is_some());
    }

    #[test]
    fn release_is_bounded_and_round_robin() {
        let mut b = Backlog::new();
        for sub in 1..=3 {
            for s in 0..10 {
                b.park(fwd(sub, MediaKind::Video, s));
            }
        }
        let mut out = Vec::new();
        b.release(12, 2, &mut out);
        assert_eq!(out.len(), 12, "the budget bounds a turn");
        for sub in 1..=3 {
            assert_eq!(seqs(&out, sub), vec![0, 1, 2, 3], "fair share for {sub}");
        }
        assert_eq!(b.len(), 18);
    }

    #[test]
    fn dropping_a_consumers_parked_video_says_where_its_numbers_resume() {
        let mut b = Backlog::new();
        for s in 10..15 {
            b.park(fwd(1, MediaKind::Video, s));
            b.park(fwd(2, MediaKind::Video, s));
        }
        let mut out = Vec::new();
        b.release(2, 2, &mut out);
        assert_eq!(b.drop_parked(ConsumerId(1)), Some((12, 3)));
        assert_eq!(b.drop_parked(ConsumerId(1)), None);
        assert_eq!(b.len(), 5);
        assert_eq!(b.n_dropped(), 0, "not an overflow");
        // Its live video is no longer parked; the other consumer's replay goes on.
        assert!(b.admit(fwd(1, MediaKind::Video, 12)).is_some());
        out.clear();
        b.release(16, 8, &mut out);
        assert_eq!(seqs(&out, 1), Vec::<u64>::new());
        assert_eq!(seqs(&out, 2), vec![10, 11, 12, 13, 14]);
    }

    #[test]
    fn a_leaving_consumer_takes_its_backlog_along() {
        let mut b = Backlog::new();
        for s in 0..4 {
            b.park(fwd(1, MediaKind::Video, s));
            b.park(fwd(2, MediaKind::Video, s));
        }
        b.remove(ConsumerId(1));
        assert_eq!(b.len(), 4);
        let mut out = Vec::new();
        b.release(100, 100, &mut out);
        assert!(seqs(&out, 1).is_empty());
        assert_eq!(seqs(&out, 2), vec![0, 1, 2, 3]);
    }

    #[test]
    fn has_parked_follows_a_consumers_video_until_it_leaves() {
        let mut b = Backlog::new();
        assert!(!b.has_parked(ConsumerId(1)));
        // Audio is never parked.
        b.park(fwd(1, MediaKind::Audio, 0));
        assert!(!b.has_parked(ConsumerId(1)));
        b.park(fwd(1, MediaKind::Video, 0));
        b.park(fwd(1, MediaKind::Video, 1));
        b.park(fwd(2, MediaKind::Video, 0));
        assert!(b.has_parked(ConsumerId(1)));
        assert!(!b.has_parked(ConsumerId(3)));
        // Live video queued behind the replay keeps it parked after the replay left.
        let mut out = Vec::new();
        b.release(1, 1, &mut out);
        assert!(b.admit(fwd(1, MediaKind::Video, 2)).is_none());
        b.release(1, 1, &mut out);
        assert!(b.has_parked(ConsumerId(1)));
        b.release(100, 100, &mut out);
        assert!(!b.has_parked(ConsumerId(1)));
        assert!(!b.has_parked(ConsumerId(2)));
        // A leaving consumer takes its parked video along.
        b.park(fwd(2, MediaKind::Video, 1));
        b.remove(ConsumerId(2));
        assert!(!b.has_parked(ConsumerId(2)));
    }

    #[test]
    fn a_full_backlog_drops_and_counts() {
        let mut b = Backlog::new();
        for s in 0..(MAX_PARKED_PER_SUBSCRIBER as u64 + 3) {
            b.park(fwd(1, MediaKind::Video, s));
        }
        assert_eq!(b.len(), MAX_PARKED_PER_SUBSCRIBER);
        assert_eq!(b.n_dropped(), 3);
    }
}
