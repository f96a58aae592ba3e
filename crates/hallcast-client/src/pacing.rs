//! Media cadence: which frame a timer tick stands for, and the RTP timestamp steps around it.
//!
//! Sans-IO: the caller passes the elapsed time; nothing here reads a clock. Frames sit on a fixed
//! grid (frame `n` is due at `n / rate` seconds and carries RTP time `n * clock_rate / rate`), so
//! a late or skipped tick never makes the RTP clock drift away from the wall clock: the frames
//! that were not produced leave a gap in RTP time instead.

use std::time::Duration;

/// The grid a stream is produced on: `rate` frames (or packets) per second, stamped with a
/// `clock_rate` Hz RTP clock.
#[derive(Debug, Clone)]
pub(crate) struct Cadence {
    rate: u32,
    clock_rate: u32,
    /// Grid index of the next frame to produce.
    next: u64,
}

/// What to produce on one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TickPlan {
    /// Grid index of the frame to produce now.
    pub(crate) index: u64,
    /// Frames skipped since the previous tick (the producer was late).
    pub(crate) n_skipped: u64,
    /// RTP time to advance before this frame, covering the skipped frames (0 when none).
    pub(crate) gap_units: u32,
    /// RTP time this frame lasts.
    pub(crate) units: u32,
}

impl Cadence {
    /// `rate` must be at least 1.
    pub(crate) fn new(rate: u32, clock_rate: u32) -> Self {
        Self {
            rate: rate.max(1),
            clock_rate,
            next: 0,
        }
    }

    /// Timer period between frames.
    pub(crate) fn period(&self) -> Duration {
        Duration::from_secs(1) / self.rate
    }

    /// Plans the frame for a tick observed `elapsed` after the stream started.
    ///
    /// The tick is snapped to the nearest grid slot, and never to one already produced.
    pub(crate) fn on_tick(&mut self, elapsed: Duration) -> TickPlan {
        let index = Self::slot(elapsed, self.rate).max(self.next);
        let plan = TickPlan {
            index,
            n_skipped: index - self.next,
            gap_units: self.units_between(self.next, index),
            units: self.units_between(index, index + 1),
        };
        self.next = index + 1;
        plan
    }

    /// Plans every frame due by `elapsed` that has not been produced yet, oldest first — the
    /// catch-up policy for audio, where a late packet is better than a missing one. Frames more
    /// than `max_behind` slots late are given up (the first plan then carries the gap).
    pub(crate) fn due(&mut self, elapsed: Duration, max_behind: u64) -> Vec<TickPlan> {
        let slot = Self::slot(elapsed, self.rate);
        let mut plans = Vec::new();
        if slot < self.next {
            return plans;
        }
        let first = self.next.max(slot.saturating_sub(max_behind));
        for index in first..=slot {
            plans.push(TickPlan {
                index,
                n_skipped: index - self.next,
                gap_units: self.units_between(self.next, index),
                units: self.units_between(index, index + 1),
            });
            self.next = index + 1;
        }
        plans
    }

    /// The grid slot nearest to `elapsed`.
    fn slot(elapsed: Duration, rate: u32) -> u64 {
        let slot = (elapsed.as_nanos() * u128::from(rate) + 500_000_000) / 1_000_000_000;
        u64::try_from(slot).unwrap_or(u64::MAX - 1)
    }

    fn rtp_time(&self, index: u64) -> u128 {
        u128::from(index) * u128::from(self.clock_rate) / u128::from(self.rate)
    }

    fn units_between(&self, from: u64, to: u64) -> u32 {
        // RTP timestamps are 32-bit and wrap; a step is always far below that.
        u32::try_from(self.rtp_time(to) - self.rtp_time(from)).unwrap_or(u32::MAX)
    }
}

/// The sample duration that makes `webrtc`'s packetizer advance its RTP clock by exactly `units`.
///
/// The packetizer computes `(duration.as_secs_f64() * clock_rate) as u32`, which truncates: a
/// duration of exactly 1/30 s becomes 2999 ticks of a 90 kHz clock, not 3000, and even exact
/// durations can land a hair below the integer in floating point. One nanosecond above the exact
/// value is far above that error and far below one tick, so truncation yields `units`.
pub(crate) fn duration_for_units(units: u32, clock_rate: u32) -> Duration {
    let nanos = u128::from(units) * 1_000_000_000 / u128::from(clock_rate.max(1)) + 1;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packetizer_units(d: Duration, clock_rate: u32) -> u32 {
        // Mirrors rtc's TrackLocalStaticSample::write_sample.
        (d.as_secs_f64() * f64::from(clock_rate)) as u32
    }

    #[test]
    fn durations_round_trip_through_the_packetizer_formula() {
        for (units, clock) in [(3000, 90_000), (960, 48_000), (1, 90_000), (8181, 90_000)] {
            assert_eq!(
                packetizer_units(duration_for_units(units, clock), clock),
                units
            );
        }
        for units in 0..100_000 {
            assert_eq!(
                packetizer_units(duration_for_units(units, 90_000), 90_000),
                units
            );
            assert_eq!(
                packetizer_units(duration_for_units(units, 48_000), 48_000),
                units
            );
        }
        for fps in 1..=60 {
            let mut c = Cadence::new(fps, 90_000);
            for i in 0..200u64 {
                let p = c.on_tick(c.period() * u32::try_from(i).unwrap_or(0));
                assert_eq!(
                    packetizer_units(duration_for_units(p.units, 90_000), 90_000),
                    p.units
                );
            }
        }
    }

    #[test]
    fn on_time_ticks_walk_the_grid() {
        let mut c = Cadence::new(30, 90_000);
        let p0 = c.on_tick(Duration::from_millis(1));
        assert_eq!((p0.index, p0.gap_units, p0.units), (0, 0, 3000));
        let p1 = c.on_tick(Duration::from_millis(34));
        assert_eq!((p1.index, p1.n_skipped, p1.gap_units), (1, 0, 0));
    }

    #[test]
    fn a_late_tick_leaves_a_gap_in_rtp_time() {
        let mut c = Cadence::new(30, 90_000);
        c.on_tick(Duration::ZERO);
        // Next tick arrives 100 ms late: slots 1 and 2 were missed, 3 and 4 roughly due.
        let p = c.on_tick(Duration::from_millis(133));
        assert_eq!(p.index, 4);
        assert_eq!(p.n_skipped, 3);
        assert_eq!(p.gap_units, 9000);
    }

    #[test]
    fn an_early_tick_never_repeats_a_slot() {
        let mut c = Cadence::new(50, 48_000);
        assert_eq!(c.on_tick(Duration::from_millis(20)).index, 1);
        let p = c.on_tick(Duration::from_millis(21));
        assert_eq!((p.index, p.gap_units, p.units), (2, 0, 960));
    }

    #[test]
    fn due_catches_up_without_gaps_then_gives_up_on_long_stalls() {
        let mut c = Cadence::new(50, 48_000);
        assert_eq!(c.due(Duration::ZERO, 25).len(), 1);
        // Nothing new is due 5 ms later.
        assert!(c.due(Duration::from_millis(5), 25).is_empty());
        // 100 ms late: five packets, back to back, contiguous in RTP time.
        let late = c.due(Duration::from_millis(100), 25);
        assert_eq!(
            late.iter().map(|p| p.index).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert!(late.iter().all(|p| p.gap_units == 0 && p.units == 960));
        // A 2 s stall: only the last 25 slots (+ the current one) are sent, after a gap.
        let stalled = c.due(Duration::from_millis(2100), 25);
        assert_eq!(stalled.len(), 26);
        assert_eq!(stalled[0].index, 80);
        assert_eq!(stalled[0].gap_units, (80 - 6) * 960);
        assert!(stalled[1..].iter().all(|p| p.gap_units == 0));
    }

    #[test]
    fn uneven_rates_sum_exactly_over_a_second() {
        let mut c = Cadence::new(7, 90_000);
        let total: u32 = (0..7)
            .map(|i| c.on_tick(Duration::from_secs(i) / 7).units)
            .sum();
        assert_eq!(total, 90_000);
    }
}
