//! A leaky-bucket pacer's burst (`Rtc::set_pacer_burst`, `vendor/str0m/PATCHES.md`, the
//! eighteenth change): what one snapshot of the send queues lets go at once is handed out by
//! `poll_output` without the timeout upstream str0m asks for after every packet ("1 µs
//! later"), and it is exactly what that timeout after every packet would have let go: the
//! same packets, stopped by the same debt. And the nineteenth and twentieth changes: a
//! stream's live count of what it holds (`StreamTx::queued_bytes`), and a pacer told that the
//! application gives it a timeout after each write (`Rtc::set_pacer_wakes_on_write`). Two
//! bare str0m peers on virtual time, wired to each other in memory: a sender with bandwidth
//! estimation (so a leaky-bucket pacer) in RTP mode, as the relay's viewer sessions are, and
//! a receiver.

mod common;

use std::time::{Duration, Instant};

use common::{Negotiated, Peer, negotiated, rtp_pt};
use str0m::bwe::Bitrate;
use str0m::media::{Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Event, Input, Output, Reason};

/// Not a divisor of the pacer's burst (40 ms at a round bitrate): a frame never ends on the
/// debt's limit to the byte, where the 1 µs of credit a timeout per packet gets (a fraction
/// of a byte a packet) would let one more packet through than a burst at one instant.
const VIDEO_PAYLOAD: usize = 1100;

struct Pair {
    now: Instant,
    tx: Peer,
    rx: Peer,
    video_mid: Mid,
    video_pt: Pt,
    seq: u16,
    /// Video packets the sender sent in [`Pair::settle`] so far.
    video_sent: usize,
}

impl Pair {
    fn new() -> Pair {
        Pair::with_feedback(false)
    }

    /// `feedback`: the receiver sends transport-wide feedback, so the sender's estimator
    /// sees its media as the relay's does (and its pacer has a padding rate,
    /// `PacerControl`'s automatic target); without it the estimate stays at its start.
    fn with_feedback(feedback: bool) -> Pair {
        let now = Instant::now();
        // Without `feedback` the receiver answers without transport-wide feedback, so the
        // sender's estimate stays at the figure it starts with and each frame meets the same
        // pacing rate.
        let Negotiated {
            tx,
            rx,
            video_mid,
            video_pt,
        } = negotiated(now, Some(Bitrate::mbps(2)), feedback);
        Pair {
            now,
            tx,
            rx,
            video_mid,
            video_pt,
            seq: 1,
            video_sent: 0,
        }
    }

    /// Drains both peers at `now`, handing each one's datagrams to the other, until neither
    /// has anything more; returns the video packets the sender sent.
    fn settle(&mut self) -> usize {
        let video_pt = self.video_pt;
        let mut video = 0;
        for round in 0.. {
            assert!(round < 10_000, "the peers never settle at {:?}", self.now);
            let mut moved = false;
            for from_tx in [true, false] {
                let (from, to) = if from_tx {
                    (&mut self.tx, &mut self.rx)
                } else {
                    (&mut self.rx, &mut self.tx)
                };
                loop {
                    match from.rtc.poll_output().expect("poll_output") {
                        Output::Timeout(t) => {
                            from.timeout = t;
                            break;
                        }
                        Output::Transmit(t) => {
                            moved = true;
                            if from_tx && is_video(video_pt, &t.contents) {
                                video += 1;
                            }
                            let r = Receive::new(Protocol::Udp, t.source, to.addr, &t.contents)
                                .expect("a datagram str0m reads");
                            to.rtc
                                .handle_input(Input::Receive(self.now, r))
                                .expect("receive");
                        }
                        Output::Event(Event::Connected) => from.connected = true,
                        Output::Event(_) => {}
                    }
                }
            }
            if !moved {
                self.video_sent += video;
                return video;
            }
        }
        unreachable!()
    }

    /// [`Pair::run_for`], returning the video packets the sender sent meanwhile.
    fn settle_for(&mut self, d: Duration) -> usize {
        let before = self.video_sent;
        self.run_for(d);
        self.video_sent - before
    }

    /// Runs both peers on virtual time for `d`.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            self.settle();
            // At least 1 µs on: a pacer's "next packet 1 µs later" reads as due at once
            // (str0m clamps a deadline to the last instant it was given).
            let next =
                (self.tx.timeout.min(self.rx.timeout)).max(self.now + Duration::from_micros(1));
            if next > end {
                self.now = end;
                return;
            }
            self.now = next;
            for p in [&mut self.tx, &mut self.rx] {
                if p.timeout <= self.now {
                    p.rtc
                        .handle_input(Input::Timeout(self.now))
                        .expect("timeout");
                }
            }
        }
        panic!(
            "no progress at {:?}: timeouts {:?} / {:?} ({:?})",
            self.now,
            self.tx.timeout.checked_duration_since(self.now),
            self.rx.timeout.checked_duration_since(self.now),
            self.tx.rtc.last_timeout_reason()
        );
    }

    fn video_ssrc(&mut self) -> Ssrc {
        self.tx
            .rtc
            .direct_api()
            .stream_tx_by_mid(self.video_mid, None)
            .expect("the video send stream")
            .ssrc()
    }

    /// Runs on until neither peer has a deadline within the next millisecond (the end of
    /// [`Pair::run_for`] can fall 1 µs before one, feedback's or the estimator's), then
    /// gives the sender a whole timeout: a frame written now meets only its pacer's
    /// timeouts.
    fn catch_up(&mut self) {
        for _ in 0..1000 {
            let next = self.tx.timeout.min(self.rx.timeout);
            if next > self.now + Duration::from_millis(1) {
                self.tx
                    .rtc
                    .handle_input(Input::Timeout(self.now))
                    .expect("timeout");
                self.settle();
                return;
            }
            self.run_for(next.saturating_duration_since(self.now) + Duration::from_millis(1));
        }
        panic!("the peers always have a deadline within a millisecond");
    }

    /// Writes `n` video packets of one frame to the sender's stream.
    fn write_frame(&mut self, n: usize) {
        let ssrc = self.video_ssrc();
        let (pt, now) = (self.video_pt, self.now);
        for i in 0..n {
            let seq = self.seq;
            self.seq = self.seq.wrapping_add(1);
            let mut api = self.tx.rtc.direct_api();
            let stream = api.stream_tx(&ssrc).expect("the video send stream");
            let write = RtpWrite::new(
                pt,
                u64::from(seq).into(),
                9000,
                now,
                vec![0u8; VIDEO_PAYLOAD],
            )
            .marker(i + 1 == n)
            .nackable(true);
            stream.write_rtp(write);
        }
    }

    /// The sender's video packets until its pacer holds the rest back, and how many
    /// timeouts (each a fresh snapshot of the send queues) that took: a pacer-only one at
    /// `now` after the write, then, whenever `poll_output` asks for its pacer's next packet
    /// "1 µs later", one at that instant (as the relay's drain does), all within `now` +
    /// 200 µs (a 40-packet frame stepped 1 µs a packet takes 41).
    fn pace_frame(&mut self) -> (usize, usize) {
        let (sent, timeouts, _) = self.pace_frame_until();
        (sent, timeouts)
    }

    /// [`Pair::pace_frame`], and the deadline `poll_output` gave after it, past `now` + 200
    /// µs.
    fn pace_frame_until(&mut self) -> (usize, usize, Instant) {
        assert!(
            self.tx.rtc.handle_pacer_timeout(self.now),
            "a pacer-only timeout applies (no probe under way)"
        );
        let (mut sent, mut timeouts) = (0, 1);
        loop {
            match self.tx.rtc.poll_output().expect("poll_output") {
                Output::Transmit(t) => {
                    if is_video(self.video_pt, &t.contents) {
                        sent += 1;
                    }
                }
                Output::Event(_) => {}
                Output::Timeout(t) => {
                    if t > self.now + Duration::from_micros(200) {
                        return (sent, timeouts, t);
                    }
                    let t = t.max(self.now);
                    // When the fold names another subsystem's deadline at the same instant
                    // (str0m keeps the later of equal deadlines), a whole timeout, as the
                    // relay's drain gives it; it takes a fresh snapshot as well.
                    if !matches!(self.tx.rtc.last_timeout_reason(), Reason::Pacer(_))
                        || !self.tx.rtc.handle_pacer_timeout(t)
                    {
                        self.tx
                            .rtc
                            .handle_input(Input::Timeout(t))
                            .expect("timeout");
                    }
                    timeouts += 1;
                }
            }
        }
    }
}

/// An SRTP packet of the sender's video: its payload type, and larger than padding (which
/// goes out on the video's payload type too, in packets of a few dozen bytes).
fn is_video(video_pt: Pt, b: &[u8]) -> bool {
    rtp_pt(b) == video_pt && b.len() > 300
}

/// A connected pair whose sender's estimator has done its start-up probes and whose
/// pacer holds no debt.
fn connected_pair() -> Pair {
    connected(Pair::new())
}

fn connected(mut pair: Pair) -> Pair {
    pair.run_for(Duration::from_secs(4));
    assert!(pair.tx.connected && pair.rx.connected, "the peers connect");
    pair
}

#[test]
fn a_burst_hands_out_what_one_packet_per_timeout_would_and_stops_at_the_same_debt() {
    let mut pair = connected_pair();

    // Upstream: one packet per timeout.
    pair.tx.rtc.set_pacer_burst(0);
    pair.write_frame(40);
    let (stepped, stepped_timeouts) = pair.pace_frame();
    assert_eq!(
        stepped_timeouts,
        stepped + 1,
        "one timeout per packet, and one that finds the debt too high"
    );
    assert!(
        stepped > 3 && stepped < 40,
        "the debt held back part of a 44 kB frame: {stepped} of 40 packets sent at once"
    );
    // The rest leaves at the pacing rate; then the debt clears.
    pair.run_for(Duration::from_secs(2));

    // The burst: the same packets from one timeout.
    pair.tx.rtc.set_pacer_burst(64);
    pair.write_frame(40);
    let (burst, burst_timeouts) = pair.pace_frame();
    assert_eq!(
        burst, stepped,
        "a burst lets go exactly what a timeout per packet would"
    );
    // One timeout for the burst, one (or, when the estimator's deadline falls on the same
    // instant, two) that find the debt too high.
    assert!(
        burst_timeouts <= 3 && burst_timeouts < stepped_timeouts,
        "the burst took {burst_timeouts} timeouts for {burst} packets"
    );
    pair.run_for(Duration::from_secs(2));

    // The figure bounds the burst: 1 + 3 packets, then a timeout per packet again.
    pair.tx.rtc.set_pacer_burst(3);
    pair.write_frame(40);
    let (bounded, bounded_timeouts) = pair.pace_frame();
    assert_eq!(bounded, stepped, "the same packets before the debt holds");
    assert_eq!(
        bounded_timeouts,
        stepped + 1 - 3,
        "three packets handed out without a timeout each"
    );
}

#[test]
fn a_burst_ends_when_the_queue_it_counted_off_is_empty() {
    let mut pair = connected_pair();
    pair.tx.rtc.set_pacer_burst(64);
    pair.write_frame(3);
    let (sent, timeouts) = pair.pace_frame();
    assert_eq!(sent, 3, "a small frame leaves at once");
    assert_eq!(
        timeouts, 2,
        "one timeout for the frame, one that finds the queue empty"
    );
    // Nothing more was held back: the sender has no video left to send.
    let seen = pair.settle();
    assert_eq!(seen, 0, "nothing more was held back");
}

/// `StreamTx::queued_bytes` (`vendor/str0m/PATCHES.md`, the nineteenth change): the payload
/// bytes a stream holds now, what was written since the pacer's last snapshot included and
/// what it has sent since left out (the relay's pacer gate reads it).
#[test]
fn a_streams_queued_bytes_are_what_was_written_and_not_yet_sent() {
    let mut pair = connected_pair();
    pair.tx.rtc.set_pacer_burst(64);
    let queued = |pair: &mut Pair| {
        let mid = pair.video_mid;
        pair.tx
            .rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .map(|s| s.queued_bytes())
    };
    assert_eq!(queued(&mut pair), Some(0), "nothing written yet");
    pair.write_frame(40);
    assert_eq!(
        queued(&mut pair),
        Some(40 * VIDEO_PAYLOAD),
        "written, before any timeout has seen it"
    );
    let (first, _) = pair.pace_frame();
    assert!(first < 40, "the debt held part of the frame back");
    assert_eq!(
        queued(&mut pair),
        Some((40 - first) * VIDEO_PAYLOAD),
        "the burst's packets left"
    );
    pair.run_for(Duration::from_secs(1));
    assert_eq!(
        queued(&mut pair),
        Some(0),
        "the rest left at the pacing rate"
    );
}

/// `Rtc::set_pacer_wakes_on_write` (`vendor/str0m/PATCHES.md`, the twentieth change): once
/// a decision has handed out all its snapshot held, the pacer does not ask for a timeout to
/// find the queues empty; it sets the deadline that timeout's snapshot would have set.
#[test]
fn a_pacer_told_of_writes_skips_the_timeout_that_finds_its_queues_empty() {
    for feedback in [false, true] {
        told_of_writes(feedback);
    }
}

/// `feedback`: without it the pacer has no padding rate (the deadline it sets after the
/// frame: none); with it, it has one ([`Pair::with_feedback`]), and that deadline is when
/// its debts have cleared. Either way the next deadline after the frame is the same as
/// upstream's. (Whether padding still comes when it should is `adapt_sim`'s: a sustained
/// probe pads, and with no deadline set there `every_switch_up_after_the_link_returns_
/// follows_a_sustained_probe` fails.)
fn told_of_writes(feedback: bool) {
    let mut pair = connected(Pair::with_feedback(feedback));
    pair.tx.rtc.set_pacer_burst(64);

    // Upstream: after the frame, a timeout "1 µs later" finds the queue empty and sets the
    // next deadline.
    pair.catch_up();
    pair.write_frame(3);
    let (sent, timeouts, upstream_next) = pair.pace_frame_until();
    assert_eq!(
        (sent, timeouts),
        (3, 2),
        "the frame, then the timeout that finds nothing"
    );
    let upstream_after = upstream_next - pair.now;
    pair.run_for(Duration::from_secs(2));

    // Told of writes: the same frame, one timeout, and the same next deadline.
    pair.tx.rtc.set_pacer_wakes_on_write(true);
    pair.catch_up();
    pair.write_frame(3);
    let (sent, timeouts, next) = pair.pace_frame_until();
    assert_eq!(sent, 3, "the frame leaves at once");
    assert_eq!(timeouts, 1, "no timeout to find the queue empty");
    let after = next - pair.now;
    // The snapshot the upstream timeout takes 1 µs later clears 1 µs of debt and measures
    // its deadline from there: the same instant, to within rounding.
    let diff = after.abs_diff(upstream_after);
    assert!(
        diff <= Duration::from_micros(2),
        "the next deadline {after:?} after the frame, upstream {upstream_after:?}"
    );
    assert_eq!(pair.settle(), 0, "nothing more was held back");

    // A frame larger than the debt allows: the part the debt holds back still leaves at the
    // pacing rate (the pacer asks for its timeouts as before), and then nothing is left.
    pair.run_for(Duration::from_secs(2));
    pair.catch_up();
    pair.write_frame(40);
    let (first, _) = pair.pace_frame();
    assert!(
        first < 40,
        "the debt held part of the frame back: {first} sent at once"
    );
    let rest = pair.settle_for(Duration::from_secs(1));
    assert_eq!(first + rest, 40, "the rest left at the pacing rate");
}
