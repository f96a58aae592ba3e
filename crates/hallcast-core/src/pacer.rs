//! Pacing for one measured viewer's GOP replay: a joiner on a slow link is not sent a
//! 2-second GOP in one burst, and its audio never waits.
//!
//! A leaky bucket on virtual time: each replayed video packet moves the bucket's "free at"
//! instant forward by its size at [`REPLAY_FACTOR`] × the viewer's estimate (the replay's
//! keyframe leads it, so the first picture does not wait long); a packet may leave while
//! that instant is no more than [`BURST`] ahead of now. Live video that arrives while the
//! replay drains queues behind it (per-viewer order: no gap for the receiver to NACK); once
//! the queue is empty, live video passes straight through.
//!
//! Why live video is not paced here: str0m's own pacer (on whenever its estimator is) paces
//! every video packet at 1.1 × the same estimate, audio unpaced. A second leaky bucket in
//! front of it, at 1.5× or 2.5× the estimate, made the estimator itself unstable on a clean
//! link in the simulated network (`hallcast-rtc/tests/adapt_sim.rs`): the estimate fell from
//! ~2.3 Mbit/s to 0.6 Mbit/s on a 5 Mbit/s link within seconds and the viewer flapped between
//! layers; with live video passing straight to str0m it stayed on the top layer.
//!
//! **A throttle after a cut.** The one exception: for a while after a switch down that
//! stopped the old layer at once ([`crate::alloc::Allocator::throttle_bps`]), live video
//! goes through the same bucket at twice the new layer's bitrate (under 0.6 × the estimate
//! less the audio's need). That link could not carry the old layer: its queue is full of it,
//! and the estimate still reads above it. On a clean link there is no cut, so this never runs
//! there (the instability above came from pacing a link that carried its layer).
//!
//! Audio bypasses the bucket and the queue: it is never queued behind video. A pause drops
//! what is queued ([`Pacer::drop_queued`]) and says where the viewer's sequence numbers must
//! resume, so the router restarts it at a keyframe without a gap.
//!
//! **A gate on what the transport still holds.** Live video also waits here while the
//! viewer's transport (str0m's pacer, at 1.1 × the estimate) still holds more than
//! [`GATE_BYTES`] of video: what is handed to str0m cannot be taken back, what waits here can.
//! Measured in tests/adaptation.rs before the gate: on a step from ~3 Mbit/s to 400 kbit/s
//! the viewer was switched to the lowest layer 2.0 s after the step, and its first picture
//! of that layer came 2.3 s later, behind ~50 kB of the top layer that str0m's queue (drained
//! within its 2 s limit, at the falling estimate, into a link dropping a third) still held;
//! the relay sent 0.7 Mbit/s towards the 0.4 Mbit/s link for those 2.3 s. With the gate,
//! str0m holds at most [`GATE_BYTES`] of it, and a switch down or a pause drops what waits
//! here ([`Pacer::drop_queued`]): the lower layer's keyframe is next on the wire. The driver reports what str0m holds as its
//! last sample of its queue plus the video written since (str0m samples only at the
//! session's timeouts, and a keyframe arrives as one burst of writes).
//!
//! Invariant: no clock reads; `now` is always an argument.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::consumer::Forward;
use crate::media::MediaKind;

/// A joiner's GOP replay is paced at this multiple of the estimate.
pub const REPLAY_FACTOR: f64 = 3.0;
/// How far ahead of now the bucket may run: packets within this budget leave at once.
pub const BURST: Duration = Duration::from_millis(20);
/// Header bytes counted on top of each payload (RTP, SRTP tag, UDP, IP).
const OVERHEAD_BYTES: u64 = 60;
/// Live video waits here while the transport holds more than this many bytes of video (a
/// keyframe of the lowest layer passes whole; 0.24 s of a 400 kbit/s link).
///
/// History: 200 ms of the estimate (at 1.1 ×, str0m's pace) at first, then 50 ms with this
/// as the floor. At 100 ms, in the simulated network's oscillating link (2.5 ↔ 0.6 Mbit/s),
/// a switch down had dropped so much of what the pacer held that the estimator, starved,
/// paused a viewer on a 0.6 Mbit/s link (5 runs in 8) — measured while the relay read
/// str0m's queue only as str0m last sampled it; with what was written since counted (then
/// the relay's `TransportHeld`, now str0m's live count, `StreamTx::queued_bytes`), 50 ms
/// passed every simulated test, and on a step to 400 kbit/s (`relay_sim`'s
/// `on_a_stepped_down_link_the_switch_comes_within_0_5_s_and_the_lower_layers_picture_0_7_s_later`)
/// the lower layer's first picture followed the switch by 1.0 s instead of 1.5 s. A gate
/// that grows with the estimate lets a fast link's transport hold the most just when the
/// link may step down: at the demo's 4.5–6 Mbit/s estimate, 50 ms was ~34 kB
/// of its 1.8 Mbit/s top layer, which str0m still sent after a step to 400 kbit/s and the
/// switch down (tests/adaptation.rs: 1.1–1.4 Mbit/s for 0.2 s after the switch, then
/// retransmissions of it). A fixed size passes every simulated test as well; a keyframe
/// larger than it is handed over in slices every [`GATE_RECHECK`], which at 12 kB each is
/// ~9.6 Mbit/s, more than any layer's keyframe needs.
pub const GATE_BYTES: usize = 12_000;
/// How soon video held by the gate is offered again.
pub const GATE_RECHECK: Duration = Duration::from_millis(10);

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
    /// The viewer's estimate, bits per second; 0: not paced.
    rate_bps: u64,
    /// When the bucket is empty again.
    free_at: Option<Instant>,
    queue: VecDeque<Forward>,
    /// A replay is being paced (until the queue empties).
    replaying: bool,
    /// Live video is held to this rate too (bits per second; the allocator's throttle
    /// while the viewer's layer does not fit).
    throttle_bps: Option<u64>,
    /// The gate was closed at this instant (the transport held too much): offered again
    /// [`GATE_RECHECK`] later.
    held_at: Option<Instant>,
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
            throttle_bps: None,
            held_at: None,
            n_dropped: 0,
        }
    }

    /// The viewer's estimate (the replay's pacing rate is a multiple of it).
    pub fn set_rate(&mut self, rate_bps: u64) {
        self.rate_bps = rate_bps;
    }

    pub fn rate_bps(&self) -> u64 {
        self.rate_bps
    }

    /// Holds live video to `bps` as well, through the replay's bucket (`None`: not held).
    pub fn set_throttle(&mut self, bps: Option<u64>) {
        self.throttle_bps = bps;
    }

    /// Video goes through the bucket: a replay, or a throttle.
    fn bucketed(&self) -> bool {
        self.replaying || self.throttle_bps.is_some()
    }

    /// Video packets waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// A joiner's replay is being paced (until the queue empties).
    pub fn replaying(&self) -> bool {
        self.replaying
    }

    /// Video packets dropped so far.
    pub fn n_dropped(&self) -> u64 {
        self.n_dropped
    }

    /// What is pushed from now on, until the queue empties, is a joiner's replay.
    pub fn start_replay(&mut self) {
        self.replaying = true;
    }

    /// Offers a packet: returned when it may leave now (all audio; video with nothing queued
    /// before it, that the replay's bucket has room for and the gate lets through), queued
    /// otherwise. `downstream_bytes`: the viewer's video the transport still holds.
    pub fn push(&mut self, now: Instant, f: Forward, downstream_bytes: usize) -> Option<Forward> {
        if f.kind == MediaKind::Audio || self.rate_bps == 0 {
            return Some(f);
        }
        if self.queue.is_empty() && (!self.bucketed() || self.has_room(now)) {
            if downstream_bytes <= GATE_BYTES {
                if self.bucketed() {
                    self.spend(now, &f);
                }
                return Some(f);
            }
            self.held_at = Some(now);
        }
        self.queue.push_back(f);
        None
    }

    /// Releases the queued video the bucket has room for and the gate lets through at `now`,
    /// in order. `downstream_bytes`: as for [`Pacer::push`].
    pub fn poll(&mut self, now: Instant, downstream_bytes: usize, out: &mut Vec<Forward>) {
        let mut held = downstream_bytes;
        self.held_at = None;
        while let Some(f) = self.queue.front() {
            if self.rate_bps != 0 && self.bucketed() && !self.has_room(now) {
                break;
            }
            if self.rate_bps != 0 && held > GATE_BYTES {
                self.held_at = Some(now);
                break;
            }
            held += f.payload.len();
            let Some(f) = self.queue.pop_front() else {
                break;
            };
            if self.bucketed() {
                self.spend(now, &f);
            }
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
        let bucket = self
            .free_at
            .filter(|_| self.bucketed())
            .map(|t| t.checked_sub(BURST).unwrap_or(t));
        let gate = self.held_at.map(|t| t + GATE_RECHECK);
        match (bucket, gate) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drops every queued video packet now (the viewer's video was paused: what is
    /// queued would only arrive late).
    pub fn drop_queued(&mut self) -> Option<Dropped> {
        let first = self.queue.front()?.seq;
        let d = Dropped {
            first_seq: first,
            packets: self.queue.len(),
        };
        self.n_dropped += d.packets as u64;
        self.queue.clear();
        self.replaying = false;
        self.held_at = None;
        Some(d)
    }

    fn has_room(&self, now: Instant) -> bool {
        self.free_at.is_none_or(|t| t <= now + BURST)
    }

    fn spend(&mut self, now: Instant, f: &Forward) {
        if self.rate_bps == 0 {
            return;
        }
        let replay = if self.replaying {
            (self.rate_bps as f64 * REPLAY_FACTOR) as u64
        } else {
            u64::MAX
        };
        let rate = replay.min(self.throttle_bps.unwrap_or(u64::MAX)).max(1);
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
            vp8: None,
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
            p.poll(t, 0, &mut out);
            sent.extend(out.drain(..).map(|f| (t, f)));
        }
        sent
    }

    #[test]
    fn a_gop_replay_leaves_at_three_times_the_estimate_then_live_video_passes() {
        let t0 = Instant::now();
        // An estimate of 1/3 Mbit/s: the replay leaves at 1 Mbit/s; 100 packets of 1190-byte
        // payloads (+ 60 bytes of headers) = 1 Mbit = 1 s on the wire.
        let mut p = Pacer::new(333_334);
        p.start_replay();
        let mut at_once = 0;
        for seq in 0..100 {
            if p.push(t0, pkt(MediaKind::Video, seq, 1190, t0), 0)
                .is_some()
            {
                at_once += 1;
            }
        }
        assert_eq!(at_once, 3, "only the burst allowance leaves at once");
        // Live video arriving meanwhile queues behind the replay (no reordering).
        let live_at = t0 + Duration::from_millis(100);
        assert!(
            p.push(live_at, pkt(MediaKind::Video, 100, 1190, live_at), 0)
                .is_none()
        );
        let sent = drain(&mut p, t0 + Duration::from_secs(5));
        assert_eq!(sent.len(), 98);
        let last = sent.last().unwrap().0 - t0;
        assert!(
            last >= Duration::from_millis(950) && last <= Duration::from_millis(1010),
            "{last:?}"
        );
        assert!(sent.windows(2).all(|w| w[0].1.seq < w[1].1.seq));
        // Replay done: live video passes at once, whatever its rate.
        let later = t0 + Duration::from_secs(2);
        for seq in 101..200 {
            assert!(
                p.push(later, pkt(MediaKind::Video, seq, 1190, later), 0)
                    .is_some()
            );
        }
    }

    #[test]
    fn a_throttle_holds_live_video_to_its_rate_and_audio_passes() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000_000);
        p.set_throttle(Some(100_000));
        // 1 s of a 500 kbit/s layer (~52 packets of 1190 bytes) offered at once.
        let mut at_once = 0;
        for seq in 0..52 {
            at_once += usize::from(
                p.push(t0, pkt(MediaKind::Video, seq, 1190, t0), 0)
                    .is_some(),
            );
        }
        assert!(at_once <= 1, "only the burst allowance leaves: {at_once}");
        assert!(p.push(t0, pkt(MediaKind::Audio, 1, 100, t0), 0).is_some());
        // At 100 kbit/s, 1250 bytes a packet on the wire: ~10 a second.
        let sent = drain(&mut p, t0 + Duration::from_secs(1));
        assert!((8..=11).contains(&sent.len()), "{}", sent.len());
        // Lifted: what waits leaves at once, and live video passes again.
        p.set_throttle(None);
        let later = t0 + Duration::from_millis(1100);
        let mut out = Vec::new();
        while p.queued() > 0 {
            // (The gate lets ~12 kB through a poll: the transport took it all each time.)
            let before = out.len();
            p.poll(later, 0, &mut out);
            assert!(out.len() > before);
        }
        assert_eq!(out.len() + sent.len() + at_once, 52);
        assert!(
            p.push(later, pkt(MediaKind::Video, 52, 1190, later), 0)
                .is_some()
        );
    }

    #[test]
    fn audio_never_waits_behind_a_replay() {
        let t0 = Instant::now();
        let mut p = Pacer::new(130_000);
        p.start_replay();
        for seq in 0..50 {
            p.push(t0, pkt(MediaKind::Video, seq, 1190, t0), 0);
        }
        assert!(p.queued() > 40);
        let a = p.push(t0, pkt(MediaKind::Audio, 7, 100, t0), 0);
        assert!(a.is_some(), "audio passes a full video queue");
    }

    #[test]
    fn a_pause_drops_what_is_queued_and_says_where_to_resume() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100_000);
        p.start_replay();
        let mut passed = 0;
        for seq in 1000..1040 {
            passed += usize::from(
                p.push(t0, pkt(MediaKind::Video, seq, 1190, t0), 0)
                    .is_some(),
            );
        }
        let d = p.drop_queued().expect("something queued");
        assert_eq!(d.first_seq, 1000 + passed as u64);
        assert_eq!(d.packets, 40 - passed);
        assert_eq!(p.queued(), 0);
        assert_eq!(p.n_dropped(), d.packets as u64);
        assert_eq!(p.drop_queued(), None);
    }

    #[test]
    fn unpaced_passes_everything() {
        let t0 = Instant::now();
        let mut p = Pacer::new(0);
        p.start_replay();
        for seq in 0..100 {
            assert!(
                p.push(t0, pkt(MediaKind::Video, seq, 1200, t0), 0)
                    .is_some()
            );
        }
        assert_eq!(p.next_due(), None);
    }

    #[test]
    fn live_video_waits_while_the_transport_holds_more_than_the_gate() {
        let t0 = Instant::now();
        // 4 Mbit/s: the gate is GATE_BYTES whatever the estimate.
        let mut p = Pacer::new(4_000_000);
        assert!(
            p.push(t0, pkt(MediaKind::Video, 1, 1200, t0), GATE_BYTES)
                .is_some()
        );
        assert!(
            p.push(t0, pkt(MediaKind::Video, 2, 1200, t0), GATE_BYTES + 1)
                .is_none()
        );
        assert!(
            p.push(t0, pkt(MediaKind::Video, 3, 1200, t0), 0).is_none(),
            "in order"
        );
        // Audio never waits.
        assert!(
            p.push(t0, pkt(MediaKind::Audio, 9, 100, t0), 1 << 20)
                .is_some()
        );
        assert_eq!(p.next_due(), Some(t0 + GATE_RECHECK));
        let mut out = Vec::new();
        let t1 = t0 + GATE_RECHECK;
        p.poll(t1, 30_000, &mut out);
        assert!(out.is_empty(), "still over the gate");
        assert_eq!(p.next_due(), Some(t1 + GATE_RECHECK));
        // The transport drained: both leave, in order, and live video passes again.
        p.poll(t1 + GATE_RECHECK, 10_000, &mut out);
        assert_eq!(out.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(p.next_due(), None);
        assert!(p.push(t1, pkt(MediaKind::Video, 4, 1200, t1), 0).is_some());
    }

    #[test]
    fn the_gate_lets_a_small_keyframe_through_at_a_low_estimate() {
        let t0 = Instant::now();
        // 150 kbit/s: GATE_BYTES is over 0.6 s of it.
        let mut p = Pacer::new(150_000);
        assert!(
            p.push(t0, pkt(MediaKind::Video, 1, 1200, t0), GATE_BYTES)
                .is_some()
        );
        assert!(
            p.push(t0, pkt(MediaKind::Video, 2, 1200, t0), GATE_BYTES + 1)
                .is_none()
        );
    }

    #[test]
    fn what_the_gate_held_is_dropped_on_a_switch_down() {
        let t0 = Instant::now();
        let mut p = Pacer::new(400_000);
        for seq in 10..40 {
            p.push(t0, pkt(MediaKind::Video, seq, 1200, t0), 1 << 20);
        }
        let d = p.drop_queued().expect("held");
        assert_eq!((d.first_seq, d.packets), (10, 30));
        assert_eq!(p.next_due(), None);
    }
}
