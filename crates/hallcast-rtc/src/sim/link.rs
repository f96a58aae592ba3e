//! Constrained links of the simulated network: what a home router or a mobile cell does to a
//! viewer's downlink, on virtual time.
//!
//! A [`LinkModel`] is, in order: a drop-tail queue of at most `queue_bytes`, a bottleneck
//! that serialises one datagram at a time at the rate a [`LinkTrace`] gives for that
//! moment (piecewise constant, possibly 0: an outage), random loss bursts after the
//! bottleneck (a lost datagram used its share of the rate, as on a radio link), and then the
//! network's fixed propagation delay. So a sender above the rate first sees its datagrams'
//! delay grow (the queue fills: what delay-based bandwidth estimation reacts to) and only
//! then loses them (the queue overflows), as behind a real router.
//!
//! Everything is exact integer arithmetic on nanoseconds and a seeded generator: the same
//! datagrams at the same instants give the same departures and the same losses.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes a datagram takes on the wire besides its UDP payload (IPv4 + UDP headers).
pub const IP_UDP_OVERHEAD: usize = 28;

/// A period during which a fraction of the datagrams leaving the bottleneck is lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossBurst {
    /// Offsets from the link's start.
    pub from: Duration,
    pub until: Duration,
    /// 0..=1.
    pub fraction: f64,
}

/// The rate of a link over virtual time (piecewise constant, from the moment the link is set
/// with [`crate::sim::Net::set_link`]), and its loss bursts.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkTrace {
    /// (from, bit/s), sorted by `from`, the first at zero: the rate from that offset on.
    rates: Vec<(Duration, u64)>,
    losses: Vec<LossBurst>,
}

fn kbps(k: f64) -> u64 {
    (k * 1000.0).round().max(0.0) as u64
}

impl LinkTrace {
    /// A constant rate.
    pub fn constant(kbit_s: f64) -> LinkTrace {
        LinkTrace {
            rates: vec![(Duration::ZERO, kbps(kbit_s))],
            losses: vec![],
        }
    }

    /// From `at` on, the rate is `kbit_s` (until a later change). Changes may be given in
    /// any order; one at an offset already set replaces it.
    pub fn then(mut self, at: Duration, kbit_s: f64) -> LinkTrace {
        let bps = kbps(kbit_s);
        match self.rates.binary_search_by_key(&at, |(t, _)| *t) {
            Ok(i) => self.rates[i].1 = bps,
            Err(i) => self.rates.insert(i, (at, bps)),
        }
        self
    }

    /// `high` until `down_at`, `low` until `up_at`, then `high` again (e.g. 5 Mbit/s →
    /// 0.4 Mbit/s at 20 s → 5 Mbit/s at 40 s).
    pub fn step_down_up(high: f64, low: f64, down_at: Duration, up_at: Duration) -> LinkTrace {
        LinkTrace::constant(high)
            .then(down_at, low)
            .then(up_at, high)
    }

    /// `from` until `start`, then a linear ramp to `to` over `length` in steps of `step`,
    /// then `to`.
    pub fn ramp(
        from: f64,
        to: f64,
        start: Duration,
        length: Duration,
        step: Duration,
    ) -> LinkTrace {
        LinkTrace::constant(from).then_ramp(start, to, length, step)
    }

    /// From `start` on, a linear ramp from the rate at `start` to `to` over `length` in
    /// steps of `step`, then `to` (later changes are kept).
    pub fn then_ramp(
        mut self,
        start: Duration,
        to: f64,
        length: Duration,
        step: Duration,
    ) -> LinkTrace {
        let from = self.bps_at(start) as f64 / 1000.0;
        let n = (length.as_secs_f64() / step.as_secs_f64()).ceil().max(1.0) as u32;
        for i in 1..=n {
            let k = from + (to - from) * f64::from(i) / f64::from(n);
            self = self.then(start + step * (i - 1), k);
        }
        self.then(start + length, to)
    }

    /// A square wave: `high` for half a `period`, then `low` for half, ..., until `until`,
    /// then `high`.
    pub fn square(high: f64, low: f64, period: Duration, until: Duration) -> LinkTrace {
        let half = period / 2;
        let mut t = LinkTrace::constant(high);
        let mut at = half;
        let mut is_low = true;
        while at < until {
            t = t.then(at, if is_low { low } else { high });
            is_low = !is_low;
            at += half;
        }
        t.then(until, high)
    }

    /// Loses `fraction` of the datagrams leaving the bottleneck in `[from, until)`.
    pub fn with_loss(mut self, from: Duration, until: Duration, fraction: f64) -> LinkTrace {
        self.losses.push(LossBurst {
            from,
            until,
            fraction: fraction.clamp(0.0, 1.0),
        });
        self
    }

    /// Loss bursts of `length` every `every`, the first at `first`, until `until`.
    pub fn with_loss_bursts(
        mut self,
        first: Duration,
        every: Duration,
        length: Duration,
        fraction: f64,
        until: Duration,
    ) -> LinkTrace {
        let mut at = first;
        while at < until {
            self = self.with_loss(at, (at + length).min(until), fraction);
            at += every;
        }
        self
    }

    /// The rate at offset `t`, in bit/s.
    pub fn bps_at(&self, t: Duration) -> u64 {
        let i = self.rates.partition_point(|(from, _)| *from <= t);
        self.rates[i.saturating_sub(1)].1
    }

    /// The mean rate over `[from, to)`, in bit/s.
    pub fn mean_bps(&self, from: Duration, to: Duration) -> f64 {
        if to <= from {
            return self.bps_at(from) as f64;
        }
        let mut bits = 0.0;
        let mut t = from;
        while t < to {
            let end = self.next_change(t).map_or(to, |c| c.min(to));
            bits += self.bps_at(t) as f64 * (end - t).as_secs_f64();
            t = end;
        }
        bits / (to - from).as_secs_f64()
    }

    /// The offsets at which the rate changes (after zero).
    pub fn changes(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.rates.iter().skip(1).copied()
    }

    pub fn losses(&self) -> &[LossBurst] {
        &self.losses
    }

    /// The fraction of datagrams lost at offset `t`.
    pub fn loss_at(&self, t: Duration) -> f64 {
        self.losses
            .iter()
            .filter(|b| b.from <= t && t < b.until)
            .map(|b| b.fraction)
            .fold(0.0, f64::max)
    }

    fn next_change(&self, t: Duration) -> Option<Duration> {
        let i = self.rates.partition_point(|(from, _)| *from <= t);
        self.rates.get(i).map(|(from, _)| *from)
    }

    /// When a bottleneck that starts serialising `bits` at offset `start` is done with
    /// them; `None` if the rate stays 0 for ever.
    pub fn finish(&self, start: Duration, bits: u64) -> Option<Duration> {
        // Work in bit·nanoseconds: a segment of `d` ns at `r` bit/s carries r·d of them,
        // the datagram needs bits·1e9.
        let mut need = u128::from(bits) * 1_000_000_000;
        let mut t = start;
        loop {
            let rate = u128::from(self.bps_at(t));
            match self.next_change(t) {
                Some(end) => {
                    let have = rate * (end - t).as_nanos();
                    if have >= need && rate > 0 {
                        return Some(t + Duration::from_nanos(need.div_ceil(rate) as u64));
                    }
                    need -= have;
                    t = end;
                }
                None if rate == 0 => return None,
                None => return Some(t + Duration::from_nanos(need.div_ceil(rate) as u64)),
            }
        }
    }
}

/// A link's bottleneck, queue and loss (see the module doc).
#[derive(Debug, Clone)]
pub struct LinkModel {
    pub trace: LinkTrace,
    /// The drop-tail queue's limit: datagrams (wire bytes) waiting for and in the
    /// bottleneck. A datagram arriving at an empty queue always enters.
    pub queue_bytes: usize,
    /// Wire bytes added to each datagram (headers below UDP's payload).
    pub overhead_bytes: usize,
    /// Seed of the loss bursts' generator.
    pub seed: u64,
}

impl LinkModel {
    pub fn new(trace: LinkTrace, queue_bytes: usize) -> LinkModel {
        LinkModel {
            trace,
            queue_bytes,
            overhead_bytes: IP_UDP_OVERHEAD,
            seed: 0x5eed,
        }
    }
}

/// One datagram that left a link's bottleneck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
    /// When the sender handed it to the link.
    pub sent: Instant,
    /// When the bottleneck was done with it (it arrives a propagation delay later).
    pub left: Instant,
    /// Wire bytes.
    pub bytes: usize,
    /// Lost in a loss burst after the bottleneck.
    pub lost: bool,
}

/// What happened on a link.
#[derive(Debug, Clone, Default)]
pub struct LinkStats {
    /// Every datagram the queue took, in order.
    pub departures: Vec<Departure>,
    /// When datagrams found the queue full.
    pub queue_drops: Vec<Instant>,
}

impl LinkStats {
    /// Wire bits per second that left the bottleneck (lost ones included: they used the
    /// rate) in `[from, to)`.
    pub fn throughput_bps(&self, from: Instant, to: Instant) -> f64 {
        let bytes: usize = self
            .departures
            .iter()
            .filter(|d| d.left >= from && d.left < to)
            .map(|d| d.bytes)
            .sum();
        bytes as f64 * 8.0 / (to - from).as_secs_f64()
    }

    /// The longest time a datagram sent in `[from, to)` spent in the queue and bottleneck.
    pub fn max_sojourn(&self, from: Instant, to: Instant) -> Duration {
        self.departures
            .iter()
            .filter(|d| d.sent >= from && d.sent < to)
            .map(|d| d.left - d.sent)
            .max()
            .unwrap_or_default()
    }

    /// Datagrams lost after the bottleneck.
    pub fn n_lost(&self) -> usize {
        self.departures.iter().filter(|d| d.lost).count()
    }
}

/// What a link does with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It leaves the bottleneck then.
    Leaves(Instant),
    QueueFull,
    /// It leaves the bottleneck and is lost.
    Lost,
}

/// A link in use: its model, its queue and what happened.
#[derive(Debug)]
pub struct Link {
    model: LinkModel,
    /// The trace's offset zero.
    epoch: Instant,
    /// Departure and wire bytes of every datagram taken and not yet gone, in order.
    queue: VecDeque<(Instant, usize)>,
    queued_bytes: usize,
    rng: u64,
    pub stats: LinkStats,
}

impl Link {
    pub fn new(model: LinkModel, epoch: Instant) -> Link {
        Link {
            rng: model.seed,
            model,
            epoch,
            queue: VecDeque::new(),
            queued_bytes: 0,
            stats: LinkStats::default(),
        }
    }

    pub fn model(&self) -> &LinkModel {
        &self.model
    }

    /// When the trace starts.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Wire bytes waiting for or in the bottleneck at `now` (no earlier than the last
    /// datagram offered).
    pub fn queued_bytes(&mut self, now: Instant) -> usize {
        while let Some(&(left, bytes)) = self.queue.front() {
            if left > now {
                break;
            }
            self.queue.pop_front();
            self.queued_bytes -= bytes;
        }
        self.queued_bytes
    }

    /// Offers a datagram of `payload` bytes sent at `now` (never earlier than the last).
    pub fn offer(&mut self, now: Instant, payload: usize) -> Verdict {
        let bytes = payload + self.model.overhead_bytes;
        let queued = self.queued_bytes(now);
        if queued > 0 && queued + bytes > self.model.queue_bytes {
            self.stats.queue_drops.push(now);
            return Verdict::QueueFull;
        }
        let start = self.queue.back().map_or(now, |(left, _)| (*left).max(now));
        let offset = start.saturating_duration_since(self.epoch);
        let Some(done) = self.model.trace.finish(offset, bytes as u64 * 8) else {
            // The rate is 0 from here on: nothing ever leaves.
            self.stats.queue_drops.push(now);
            return Verdict::QueueFull;
        };
        let left = self.epoch + done;
        self.queue.push_back((left, bytes));
        self.queued_bytes += bytes;
        let p = self.model.trace.loss_at(done);
        let lost = p > 0.0 && self.next_unit() < p;
        self.stats.departures.push(Departure {
            sent: now,
            left,
            bytes,
            lost,
        });
        if lost {
            Verdict::Lost
        } else {
            Verdict::Leaves(left)
        }
    }

    /// A uniform number in [0, 1) (splitmix64).
    fn next_unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_datagram_takes_its_bits_over_the_rate() {
        let t = LinkTrace::constant(400.0);
        // 1000 bytes at 400 kbit/s: 20 ms.
        assert_eq!(t.finish(ms(0), 8000), Some(ms(20)));
        assert_eq!(t.finish(ms(5), 8000), Some(ms(25)));
    }

    #[test]
    fn serialisation_spans_a_rate_change() {
        // 1 Mbit/s until 10 ms (10 000 bits), then 100 kbit/s.
        let t = LinkTrace::constant(1000.0).then(ms(10), 100.0);
        // 8000 bits at 5 ms: 5000 in the first segment, 3000 at 100 kbit/s = 30 ms more.
        assert_eq!(t.finish(ms(5), 8000), Some(ms(40)));
        // An outage then nothing: never.
        let dead = LinkTrace::constant(1000.0).then(ms(10), 0.0);
        assert_eq!(dead.finish(ms(5), 8000), None);
        // An outage in the middle waits it out.
        let gap = LinkTrace::constant(1000.0)
            .then(ms(10), 0.0)
            .then(ms(50), 1000.0);
        assert_eq!(gap.finish(ms(5), 8000), Some(ms(53)));
    }

    #[test]
    fn generators_shape_the_rate() {
        let s = LinkTrace::step_down_up(5000.0, 400.0, ms(20_000), ms(40_000));
        assert_eq!(s.bps_at(ms(19_999)), 5_000_000);
        assert_eq!(s.bps_at(ms(20_000)), 400_000);
        assert_eq!(s.bps_at(ms(40_000)), 5_000_000);
        let sq = LinkTrace::square(2000.0, 500.0, ms(10_000), ms(30_000));
        assert_eq!(sq.bps_at(ms(1_000)), 2_000_000);
        assert_eq!(sq.bps_at(ms(6_000)), 500_000);
        assert_eq!(sq.bps_at(ms(11_000)), 2_000_000);
        assert_eq!(sq.bps_at(ms(29_000)), 500_000);
        assert_eq!(sq.bps_at(ms(31_000)), 2_000_000);
        assert!((sq.mean_bps(ms(0), ms(30_000)) - 1_250_000.0).abs() < 1.0);
        let r = LinkTrace::ramp(1000.0, 3000.0, ms(1000), ms(2000), ms(500));
        assert_eq!(r.bps_at(ms(999)), 1_000_000);
        assert_eq!(r.bps_at(ms(1000)), 1_500_000);
        assert_eq!(r.bps_at(ms(2600)), 3_000_000);
        assert_eq!(r.bps_at(ms(9000)), 3_000_000);
        let l = LinkTrace::constant(1000.0).with_loss_bursts(
            ms(1000),
            ms(5000),
            ms(200),
            0.5,
            ms(12_000),
        );
        assert_eq!(l.losses().len(), 3);
        assert_eq!(l.loss_at(ms(6100)), 0.5);
        assert_eq!(l.loss_at(ms(6300)), 0.0);
    }

    #[test]
    fn the_queue_builds_delay_then_drops_its_tail() {
        let epoch = Instant::now();
        // 80 kbit/s (1000 wire bytes: 100 ms), a queue of 3 datagrams.
        let mut model = LinkModel::new(LinkTrace::constant(80.0), 3000);
        model.overhead_bytes = 0;
        let mut link = Link::new(model, epoch);
        let offered: Vec<Verdict> = (0..5).map(|_| link.offer(epoch, 1000)).collect();
        assert_eq!(
            offered,
            [
                Verdict::Leaves(epoch + ms(100)),
                Verdict::Leaves(epoch + ms(200)),
                Verdict::Leaves(epoch + ms(300)),
                Verdict::QueueFull,
                Verdict::QueueFull,
            ]
        );
        // One left: room for one more, behind the others.
        assert_eq!(
            link.offer(epoch + ms(100), 1000),
            Verdict::Leaves(epoch + ms(400))
        );
        assert_eq!(link.queued_bytes(epoch + ms(450)), 0);
        assert_eq!(link.stats.queue_drops.len(), 2);
    }

    #[test]
    fn loss_bursts_are_deterministic_and_near_their_fraction() {
        let run = || {
            let epoch = Instant::now();
            let trace = LinkTrace::constant(100_000.0).with_loss(ms(0), ms(10_000), 0.3);
            let mut link = Link::new(LinkModel::new(trace, 1 << 20), epoch);
            (0..2000)
                .map(|i| link.offer(epoch + ms(i), 1000) == Verdict::Lost)
                .collect::<Vec<bool>>()
        };
        let a = run();
        assert_eq!(a, run());
        let lost = a.iter().filter(|l| **l).count();
        assert!((500..700).contains(&lost), "{lost} of 2000 lost at 30 %");
    }
}
