//! Pacing for one measured viewer: its video leaves at the rate its bandwidth estimate
//! allows, its audio never waits.
//!
//! A leaky bucket on virtual time: each video packet moves the bucket's "free at" instant
//! forward by its size at the pacing rate — [`PACING_FACTOR`] × the viewer's estimate, and
//! [`REPLAY_FACTOR`] × while a joiner's GOP replay drains (its first picture should not
//! wait: the replay's keyframe leads it); a packet may leave while that instant is no
//! more than [`BURST`] ahead of now (a frame's packets leave together, a keyframe or a
//! joiner's GOP replay is spread out). What cannot leave waits in the viewer's queue, in
//! order, until [`Pacer::poll`] at the time [`Pacer::next_due`] names.
//!
//! Audio bypasses the bucket and the queue: it is never queued behind video, whatever
//! the link does.
//!
//! Live video that waited longer than [`MAX_DELAY`] is worth less than nothing (the
//! picture would lag the sound by that much): [`Pacer::expire`] drops the whole queued
//! video and says where the viewer's sequence numbers must resume, so the router can
//! restart the viewer at its next keyframe with no gap the browser would try to repair.
//! A joiner's GOP replay is exempt until the queue first empties (it is old by design).
//!
//! Invariant: no clock reads; `now` is always an argument. The relay's str0m pacer sits
//! behind this one at 1.1 × the same estimate, so it rarely holds anything.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::consumer::Forward;
use crate::media::MediaKind;

/// Live video is paced at this multiple of the estimate: the estimate is what the link
/// carries on average, and a frame's packets (a keyframe's most of all) come in bursts.
pub const PACING_FACTOR: f64 = 1.5;
/// A joiner's GOP replay is paced at this multiple of the estimate.
pub const REPLAY_FACTOR: f64 = 3.0;
/// How far ahead of now the bucket may run: packets within this budget leave at once.
pub const BURST: Duration = Duration::from_millis(20);
/// Queued live video older than this is dropped (the viewer restarts at a keyframe).
pub const MAX_DELAY: Duration = Duration::from_millis(700);
/// Header bytes counted on top of each payload (RTP, SRTP tag, UDP, IP).
const OVERHEAD_BYTES: u64 = 60;

/// Video dropped from a pacer's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// The outgoing sequence number of the first dropped packet: the viewer's stream
    /// resumes there.
    pub first_seq: u64,
    pub packets: usize,
}

/// One viewer's pacer.
#[derive(Debug)]
pub struct Pacer {
    /// Bits per second; 0: not paced.
    rate_bps: u64,
    /// When the bucket is empty again.
    free_at: Option<Instant>,
    queue: VecDeque<(Instant, Forward)>,
    /// The queue holds a joiner's GOP replay (exempt from expiry until it empties).
    replaying: bool,
    n_dropped: u64,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new(0)
    }
}

impl Pacer {
    pub fn new(rate_bps: u64) -> Self {
        Pacer {
            rate_bps,
            free_at: None,
            queue: VecDeque::new(),
            replaying: false,
            n_dropped: 0,
        }
    }

    /// The viewer's estimate (the pacing rate is a multiple of it).
    pub fn set_rate(&mut self, rate_bps: u64) {
        self.rate_bps = rate_bps;
    }

    pub fn rate_bps(&self) -> u64 {
        self.rate_bps
    }

    /// Video packets waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Video packets dropped by [`Pacer::expire`] so far.
    pub fn n_dropped(&self) -> u64 {
        self.n_dropped
    }

    /// Marks what is queued from now on, until the queue empties, as a joiner's replay.
    pub fn start_replay(&mut self) {
        self.replaying = true;
    }

    /// Offers a packet: returned when it may leave now (all audio; video the bucket has
    /// room for and nothing queued before it), queued otherwise.
    pub fn push(&mut self, now: Instant, f: Forward) -> Option<Forward> {
        if f.kind == MediaKind::Audio || self.rate_bps == 0 {
            return Some(f);
        }
        if self.queue.is_empty() && self.has_room(now) {
            self.spend(now, &f);
            return Some(f);
        }
        self.queue.push_back((now, f));
        None
    }

    /// Releases the queued video the bucket has room for at `now`, in order.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Forward>) {
        while !self.queue.is_empty() && (self.rate_bps == 0 || self.has_room(now)) {
            let Some((_, f)) = self.queue.pop_front() else {
                break;
            };
            self.spend(now, &f);
            out.push(f);
        }
        if self.queue.is_empty() {
            self.replaying = false;
        }
    }

    /// When [`Pacer::poll`] can release the next queued packet (`None`: nothing queued).
    pub fn next_due(&self) -> Option<Instant> {
        if self.queue.is_empty() {
            return None;
        }
        Some(
            self.free_at
                .map_or_else(|| self.queue[0].0, |t| t.checked_sub(BURST).unwrap_or(t)),
        )
    }

    /// Drops every queued video packet when the oldest live one waited past
    /// [`MAX_DELAY`].
    pub fn expire(&mut self, now: Instant) -> Option<Dropped> {
        let &(queued_at, ref first) = self.queue.front()?;
        if self.replaying || now.saturating_duration_since(queued_at) < MAX_DELAY {
            return None;
        }
        let d = Dropped {
            first_seq: first.seq,
            packets: self.queue.len(),
        };
        self.n_dropped += d.packets as u64;
        self.queue.clear();
        Some(d)
    }

    /// Drops every queued video packet now (the viewer's video was paused: what is
    /// queued would only arrive late).
    pub fn drop_queued(&mut self) -> Option<Dropped> {
        let first = self.queue.front()?.1.seq;
        let d = Dropped {
            first_seq: first,
            packets: self.queue.len(),
        };
        self.n_dropped += d.packets as u64;
        self.queue.clear();
        self.replaying = false;
        Some(d)
    }

    fn has_room(&self, now: Instant) -> bool {
        self.free_at.is_none_or(|t| t <= now + BURST)
    }

    fn spend(&mut self, now: Instant, f: &Forward) {
        if self.rate_bps == 0 {
            return;
        }
        let factor = if self.replaying {
            REPLAY_FACTOR
        } else {
            PACING_FACTOR
        };
        let rate = (self.rate_bps as f64 * factor).max(1.0) as u64;
        let bits = (f.payload.len() as u64 + OVERHEAD_BYTES) * 8;
        let cost = Duration::from_nanos(bits.saturating_mul(1_000_000_000) / rate);
        let from = self.free_at.map_or(now, |t| t.max(now));
        self.free_at = Some(from + cost);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::consumer::ConsumerId;
    use crate::media::Layer;

    fn pkt(kind: MediaKind, seq: u64, bytes: usize, at: Instant) -> Forward {
        Forward {
            sub: ConsumerId(1),
            kind,
            layer: Layer(0),
            seq,
            ts: 0,
            marker: false,
            keyframe_start: false,
            payload: Arc::from(vec![0u8; bytes].into_boxed_slice()),
            arrival: at,
        }
    }

    /// Runs the pacer on virtual time, polling at each due time; returns (send time,
    /// packet) for everything released within `until`.
    fn drain(p: &mut Pacer, until: Instant) -> Vec<(Instant, Forward)> {
        let mut sent = Vec::new();
        let mut out = Vec::new();
        while let Some(t) = p.next_due() {
            if t > until {
                break;
            }
            p.poll(t, &mut out);
            sent.extend(out.drain(..).map(|f| (t, f)));
        }
        sent
    }

    #[test]
    fn a_gop_burst_leaves_at_the_pacing_rate() {
        let t0 = Instant::now();
        // An estimate of 1/3 Mbit/s: the replay leaves at 1 Mbit/s; 100 packets of 1190-byte
        // payloads (+ 60 bytes of headers) = 1 Mbit = 1 s on the wire.
        let mut p = Pacer::new(333_334);
        p.start_replay();
        let mut at_once = 0;
        for seq in 0..100 {
            if p.push(t0, pkt(MediaKind::Video, seq, 1190, t0)).is_some() {
                at_once += 1;
            }
        }
        assert_eq!(
            at_once, 3,
            "only the burst allowance leaves at once (20 ms ≈ 2.1 packets + 1)"
        );
        let sent = drain(&mut p, t0 + Duration::from_secs(5));
        assert_eq!(sent.len(), 97);
        let last = sent.last().unwrap().0 - t0;
        assert!(
            last >= Duration::from_millis(950) && last <= Duration::from_millis(1000),
            "{last:?}"
        );
        // In order.
        assert!(sent.windows(2).all(|w| w[0].1.seq < w[1].1.seq));
        assert!(p.expire(t0 + Duration::from_secs(5)).is_none());
    }

    #[test]
    fn audio_never_waits_behind_video() {
        let t0 = Instant::now();
        let mut p = Pacer::new(130_000);
        for seq in 0..50 {
            p.push(t0, pkt(MediaKind::Video, seq, 1190, t0));
        }
        assert!(p.queued() > 40);
        let a = p.push(t0, pkt(MediaKind::Audio, 7, 100, t0));
        assert!(a.is_some(), "audio passes a full video queue");
    }

    #[test]
    fn live_video_that_waited_too_long_is_dropped_with_where_to_resume() {
        let t0 = Instant::now();
        // A 200 kbit/s estimate (paced at 300 kbit/s), 1.5 Mbit/s of video offered.
        let mut p = Pacer::new(200_000);
        let mut out = Vec::new();
        let mut dropped = None;
        for ms in 0..1000u64 {
            let now = t0 + Duration::from_millis(ms);
            if ms % 8 == 0 {
                out.extend(p.push(now, pkt(MediaKind::Video, 1000 + ms / 8, 1440, now)));
            }
            p.poll(now, &mut out);
            if let Some(d) = p.expire(now) {
                dropped = Some((ms, d));
                break;
            }
        }
        let (ms, d) = dropped.expect("the queue outgrew MAX_DELAY");
        // The queue drains at a fifth of the offered rate, so the head packet at time t
        // was queued at about t/5: it has waited MAX_DELAY at t ≈ 875 ms.
        assert!((860..900).contains(&ms), "dropped at {ms} ms");
        let next_expected = 1000 + out.len() as u64;
        assert_eq!(
            d.first_seq, next_expected,
            "resumes right after the last packet sent"
        );
        assert_eq!(p.queued(), 0);
        assert_eq!(p.n_dropped(), d.packets as u64);
    }

    #[test]
    fn unpaced_passes_everything() {
        let t0 = Instant::now();
        let mut p = Pacer::new(0);
        for seq in 0..100 {
            assert!(p.push(t0, pkt(MediaKind::Video, seq, 1200, t0)).is_some());
        }
        assert_eq!(p.next_due(), None);
    }
}
