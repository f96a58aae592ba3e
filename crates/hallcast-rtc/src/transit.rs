//! Per-hop transit time: a fixed log-bucket histogram of relaxed atomics (no allocation, one
//! uncontended add per sample), written by one media shard, summed for `/metrics`.
//!
//! What a sample is: for every live media packet a shard forwards to a consumer (a viewer
//! or a downstream relay), the time from the source datagram's arrival (the driver's clock
//! read right after `recvmsg` returned it; the same instant str0m stamps on the received
//! packet) to the end of the `sendmmsg` call that handed the forwarded datagram to the
//! kernel. It covers SRTP decryption, routing, the hop to another shard of the process, the
//! rewrite, the wait in the consumer's pacers (the relay's gate and str0m's leaky bucket),
//! SRTP encryption, the wait for the rest of the receive burst and the send itself. The
//! forwarded datagram is recognised when str0m hands it out, by the SSRC and sequence number
//! in its (clear) SRTP header; until 2026-12-03 the sample was taken at the first send after
//! the write, which missed the pacers' wait.
//! It does not cover the kernel's socket queues on either side, GOP replays (cached
//! packets, not transit) or live packets parked behind a joiner's replay, nor NACK
//! retransmissions.
//!
//! Buckets: 4 per octave of nanoseconds (upper bounds 2^e · 5/4, 6/4, 7/4, 8/4), from
//! 8.192 µs to 134.2 ms; below the first bound: the first bucket, above the last: the
//! overflow bucket (`+Inf`). A percentile read from it is within one bucket (≤ 25 %).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// log2 of the first bucket's upper bound, in nanoseconds (8.192 µs).
const MIN_EXP: u32 = 13;
/// log2 of the last finite upper bound (134.2 ms).
const MAX_EXP: u32 = 27;
const SUB_BITS: u32 = 2;
const SUBS: usize = 1 << SUB_BITS;
/// Finite buckets (the first one, then 4 per octave), plus the overflow bucket.
pub const TRANSIT_BUCKETS: usize = 1 + (MAX_EXP - MIN_EXP) as usize * SUBS + 1;

/// Histogram of per-hop transit times (see the module docs).
#[derive(Debug)]
pub struct TransitHistogram {
    buckets: [AtomicU64; TRANSIT_BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for TransitHistogram {
    fn default() -> Self {
        TransitHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

/// The bucket of a transit of `ns` nanoseconds: the first whose upper bound is ≥ `ns`
/// (Prometheus `le` semantics).
pub fn bucket_of(ns: u64) -> usize {
    // On `ns - 1`, so that a value equal to a bound lands in that bound's bucket.
    let w = ns.saturating_sub(1);
    if w < 1 << MIN_EXP {
        return 0;
    }
    if w >= 1 << MAX_EXP {
        return TRANSIT_BUCKETS - 1;
    }
    let e = 63 - w.leading_zeros(); // MIN_EXP..MAX_EXP
    let m = ((w >> (e - SUB_BITS)) as usize) & (SUBS - 1);
    1 + (e - MIN_EXP) as usize * SUBS + m
}

/// A bucket's upper bound in nanoseconds; `None` for the overflow bucket.
pub fn upper_bound_ns(bucket: usize) -> Option<u64> {
    if bucket == 0 {
        return Some(1 << MIN_EXP);
    }
    if bucket >= TRANSIT_BUCKETS - 1 {
        return None;
    }
    let e = MIN_EXP + ((bucket - 1) / SUBS) as u32;
    let m = ((bucket - 1) % SUBS) as u64;
    Some((SUBS as u64 + 1 + m) << (e - SUB_BITS))
}

impl TransitHistogram {
    /// One sample.
    #[inline]
    pub fn record(&self, transit: Duration) {
        self.record_n(transit, 1);
    }

    /// `n` samples of the same transit (the copies of one source packet that left in one
    /// send: one bucket lookup and two atomic adds for all of them).
    #[inline]
    pub fn record_n(&self, transit: Duration, n: u64) {
        let ns = u64::try_from(transit.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(n, Relaxed);
        self.sum_ns.fetch_add(ns.saturating_mul(n), Relaxed);
    }

    /// A sample for each datagram that left at `sent`, given its source datagram's arrival.
    /// The copies of one source packet share its arrival and mostly leave together, so a
    /// run of equal arrivals is one difference and one [`TransitHistogram::record_n`] (an
    /// `Instant` difference is ~45 instructions).
    #[inline]
    pub fn record_departures(&self, sent: Instant, arrivals: impl IntoIterator<Item = Instant>) {
        let mut run: Option<(Instant, u64)> = None;
        for arrival in arrivals {
            match &mut run {
                Some((at, n)) if *at == arrival => *n += 1,
                _ => {
                    if let Some((at, n)) = run {
                        self.record_n(sent.saturating_duration_since(at), n);
                    }
                    run = Some((arrival, 1));
                }
            }
        }
        if let Some((at, n)) = run {
            self.record_n(sent.saturating_duration_since(at), n);
        }
    }

    /// Samples per bucket (not cumulative), by bucket index.
    pub fn counts(&self) -> [u64; TRANSIT_BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Relaxed))
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.load(Relaxed))
    }

    /// Adds this histogram into `into` (the engine's total is the sum of its shards').
    pub fn accumulate(&self, into: &TransitHistogram) {
        for (a, b) in self.buckets.iter().zip(&into.buckets) {
            b.fetch_add(a.load(Relaxed), Relaxed);
        }
        into.sum_ns.fetch_add(self.sum_ns.load(Relaxed), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_run_from_8_us_to_134_ms_four_per_octave() {
        assert_eq!(TRANSIT_BUCKETS, 58);
        assert_eq!(upper_bound_ns(0), Some(8_192));
        assert_eq!(upper_bound_ns(1), Some(10_240));
        assert_eq!(upper_bound_ns(2), Some(12_288));
        assert_eq!(upper_bound_ns(3), Some(14_336));
        assert_eq!(upper_bound_ns(4), Some(16_384));
        assert_eq!(upper_bound_ns(5), Some(20_480));
        assert_eq!(upper_bound_ns(TRANSIT_BUCKETS - 2), Some(1 << 27));
        assert_eq!(upper_bound_ns(TRANSIT_BUCKETS - 1), None);
        // Strictly increasing, each at most 25 % above the one before.
        for i in 1..TRANSIT_BUCKETS - 1 {
            let (a, b) = (upper_bound_ns(i - 1).unwrap(), upper_bound_ns(i).unwrap());
            assert!(b > a && b * 4 <= a * 5, "bucket {i}: {a} -> {b}");
        }
    }

    #[test]
    fn every_value_lands_in_the_first_bucket_whose_bound_holds_it() {
        let mut values = vec![0, 1, 8_191, 8_192, 8_193, 10_240, 10_241, u64::MAX];
        for i in 0..TRANSIT_BUCKETS - 1 {
            let b = upper_bound_ns(i).unwrap();
            values.extend([b - 1, b, b + 1]);
        }
        let mut x = 1u64;
        while x < 1 << 30 {
            values.push(x);
            x = x * 9 / 7 + 3;
        }
        for v in values {
            let i = bucket_of(v);
            let le = |i| upper_bound_ns(i).unwrap_or(u64::MAX);
            assert!(v <= le(i), "{v} above its bucket {i} ({})", le(i));
            assert!(i == 0 || v > le(i - 1), "{v} fits bucket {} already", i - 1);
        }
    }

    #[test]
    fn records_sum_and_accumulate() {
        let h = TransitHistogram::default();
        h.record(Duration::from_micros(5));
        h.record(Duration::from_micros(100));
        h.record(Duration::from_millis(200));
        assert_eq!(h.count(), 3);
        assert_eq!(h.sum(), Duration::from_nanos(200_105_000));
        let c = h.counts();
        assert_eq!(c[0], 1);
        assert_eq!(c[bucket_of(100_000)], 1);
        assert_eq!(c[TRANSIT_BUCKETS - 1], 1);
        // n samples at once are n samples.
        let one_by_one = TransitHistogram::default();
        let at_once = TransitHistogram::default();
        for _ in 0..7 {
            one_by_one.record(Duration::from_micros(300));
        }
        at_once.record_n(Duration::from_micros(300), 7);
        assert_eq!(at_once.counts(), one_by_one.counts());
        assert_eq!(at_once.sum(), one_by_one.sum());
        let total = TransitHistogram::default();
        h.accumulate(&total);
        h.accumulate(&total);
        assert_eq!(total.count(), 6);
        assert_eq!(total.sum(), Duration::from_nanos(400_210_000));
    }

    #[test]
    fn departures_count_each_datagram_whatever_the_runs_of_arrivals() {
        let t0 = Instant::now();
        let (a, b) = (t0, t0 + Duration::from_micros(700));
        let sent = t0 + Duration::from_millis(2);
        let arrivals = [a, a, a, b, a, b, b];
        let batched = TransitHistogram::default();
        batched.record_departures(sent, arrivals);
        let one_by_one = TransitHistogram::default();
        for at in arrivals {
            one_by_one.record(sent - at);
        }
        assert_eq!(batched.count(), 7);
        assert_eq!(batched.counts(), one_by_one.counts());
        assert_eq!(batched.sum(), one_by_one.sum());
        assert_eq!(batched.sum(), Duration::from_micros(4 * 2000 + 3 * 1300));
        let none = TransitHistogram::default();
        none.record_departures(sent, []);
        assert_eq!(none.count(), 0);
    }
}
