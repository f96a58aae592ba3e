//! A packet written and sent at once (`Rtc::send_rtp_now`, `vendor/str0m/PATCHES.md`, the
//! twenty-first change): for a session without bandwidth estimation (no pacer to wait for),
//! the relay protects a forward and queues it for the socket in the call that wrote it,
//! without the timeout and the walk of the whole session a write otherwise needs. Two bare
//! str0m peers on virtual time, wired to each other in memory: a sender in RTP mode, as the
//! relay's viewer sessions are (without adaptation), and a receiver.

mod common;

use std::time::{Duration, Instant};

use common::{Negotiated, Peer, negotiated, rtp_pt};
use str0m::bwe::Bitrate;
use str0m::media::{Mid, Pt};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Event, Input, Output};

struct Pair {
    now: Instant,
    tx: Peer,
    rx: Peer,
    video_mid: Mid,
    video_pt: Pt,
    /// Video packets the receiver handed out (`Event::RtpPacket`): sequence number and
    /// payload.
    received: Vec<(u64, Vec<u8>)>,
    /// The sender's video datagrams whose sequence number (as sent) is here are lost.
    drop_seq: Vec<u16>,
}

impl Pair {
    /// `bwe`: the sender estimates bandwidth (a leaky-bucket pacer), as the relay's measured
    /// viewers do.
    fn new(bwe: bool) -> Pair {
        let now = Instant::now();
        let Negotiated {
            tx,
            rx,
            video_mid,
            video_pt,
        } = negotiated(now, bwe.then(|| Bitrate::mbps(2)), true);
        Pair {
            now,
            tx,
            rx,
            video_mid,
            video_pt,
            received: vec![],
            drop_seq: vec![],
        }
    }

    /// Hands `t` (from the sender when `from_tx`) to the other peer, unless it is a video
    /// datagram whose sequence number is in `drop_seq`.
    fn deliver(&mut self, from_tx: bool, t: Transmit) {
        if from_tx
            && rtp_pt(&t.contents) == self.video_pt
            && self.drop_seq.contains(&rtp_seq(&t.contents))
        {
            return;
        }
        let to = if from_tx { &mut self.rx } else { &mut self.tx };
        let r = Receive::new(Protocol::Udp, t.source, to.addr, &t.contents)
            .expect("a datagram str0m reads");
        to.rtc
            .handle_input(Input::Receive(self.now, r))
            .expect("receive");
    }

    /// Drains both peers at `now`, handing each one's datagrams to the other, until neither
    /// has anything more.
    fn settle(&mut self) {
        for round in 0.. {
            assert!(round < 10_000, "the peers never settle at {:?}", self.now);
            let mut moved = false;
            for from_tx in [true, false] {
                loop {
                    let from = if from_tx { &mut self.tx } else { &mut self.rx };
                    match from.rtc.poll_output().expect("poll_output") {
                        Output::Timeout(t) => {
                            from.timeout = t;
                            break;
                        }
                        Output::Transmit(t) => {
                            moved = true;
                            self.deliver(from_tx, t);
                        }
                        Output::Event(Event::Connected) => from.connected = true,
                        Output::Event(Event::RtpPacket(p)) if !from_tx => {
                            self.received.push((*p.seq_no, p.payload.to_vec()));
                        }
                        Output::Event(_) => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Runs both peers on virtual time for `d`.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        // A pacer asks for its next packet "1 µs later": many short steps.
        for _ in 0..5_000_000 {
            self.settle();
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
        panic!("no progress at {:?}", self.now);
    }

    fn video_ssrc(&mut self) -> Ssrc {
        self.tx
            .rtc
            .direct_api()
            .stream_tx_by_mid(self.video_mid, None)
            .expect("the video send stream")
            .ssrc()
    }

    /// A video packet numbered `seq` whose payload says so.
    fn write(&self, seq: u64) -> RtpWrite {
        RtpWrite::new(
            self.video_pt,
            SeqNo::from(seq),
            90 * seq as u32,
            self.now,
            payload(seq),
        )
        .nackable(true)
    }

    /// Writes packet `seq` the usual way (`StreamTx::write_rtp`; it leaves at the sender's
    /// next timeout and poll), or `write` when given.
    fn write_usual(&mut self, seq: u64, write: Option<RtpWrite>) {
        let ssrc = self.video_ssrc();
        let write = write.unwrap_or_else(|| self.write(seq));
        self.tx
            .rtc
            .direct_api()
            .stream_tx(&ssrc)
            .expect("the video stream")
            .write_rtp(write);
    }

    /// [`Rtc::send_rtp_now`] for packet `seq`: the transmits it gave, or the write it gave
    /// back.
    fn send_now(&mut self, seq: u64) -> Result<Vec<Transmit>, Box<RtpWrite>> {
        let ssrc = self.video_ssrc();
        let write = self.write(seq);
        let mut out = vec![];
        self.tx
            .rtc
            .send_rtp_now(self.now, ssrc, write, |t| out.push(t))
            .map_err(Box::new)?;
        Ok(out)
    }
}

fn payload(seq: u64) -> Vec<u8> {
    let mut p = vec![0x41u8; 900];
    p[..8].copy_from_slice(&seq.to_be_bytes());
    p
}

fn rtp_seq(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[2], b[3]])
}

/// Connected, and the video stream through its first timeout: it has written one packet the
/// usual way (`write_rtp`, a timeout, polls), numbered 1.
fn connected(bwe: bool) -> Pair {
    let mut pair = Pair::new(bwe);
    pair.run_for(Duration::from_secs(2));
    assert!(pair.tx.connected && pair.rx.connected, "the peers connect");
    pair.write_usual(1, None);
    pair.tx
        .rtc
        .handle_input(Input::Timeout(pair.now))
        .expect("timeout");
    pair.run_for(Duration::from_millis(100));
    assert_eq!(
        pair.received.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [1],
        "the first packet, written the usual way, arrives"
    );
    pair
}

#[test]
fn a_packet_sent_now_leaves_at_once_arrives_as_written_and_moves_no_deadline() {
    let mut pair = connected(false);
    // The sender's deadline and nothing pending, before.
    let before = match pair.tx.rtc.poll_output().expect("poll_output") {
        Output::Timeout(t) => t,
        o => panic!("the sender had output pending: {o:?}"),
    };

    let out = pair.send_now(2).expect("sent at once");
    assert_eq!(out.len(), 1, "one datagram for one packet");
    assert_eq!(rtp_pt(&out[0].contents), pair.video_pt);
    assert_eq!(rtp_seq(&out[0].contents), 2);
    assert_eq!(out[0].destination, pair.rx.addr);
    // Nothing else to send and the same deadline: no timeout needed to get it out.
    match pair.tx.rtc.poll_output().expect("poll_output") {
        Output::Timeout(t) => assert_eq!(t, before, "the sender's deadline moved"),
        o => panic!("the send left output behind: {o:?}"),
    }

    for t in out {
        pair.deliver(true, t);
    }
    pair.settle();
    let got: Vec<_> = pair.received.iter().filter(|(s, _)| *s == 2).collect();
    assert_eq!(
        got.len(),
        1,
        "the receiver got packet 2 once: {:?}",
        pair.received
    );
    assert_eq!(got[0].1, payload(2), "the payload arrives as written");
}

#[test]
fn a_lost_packet_sent_now_is_resent_on_the_receivers_nack() {
    let mut pair = connected(false);
    pair.drop_seq = vec![3];
    for seq in 2..=5 {
        let out = pair.send_now(seq).expect("sent at once");
        for t in out {
            pair.deliver(true, t);
        }
        pair.run_for(Duration::from_millis(20));
    }
    pair.drop_seq.clear();
    pair.run_for(Duration::from_millis(500));
    let mut seqs: Vec<_> = pair.received.iter().map(|(s, _)| *s).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs,
        [1, 2, 3, 4, 5],
        "the lost packet came back by RTX (it was kept in the resend history)"
    );
    let resent = pair.received.iter().find(|(s, _)| *s == 3).expect("3");
    assert_eq!(
        resent.1,
        payload(3),
        "the resend carries the packet's payload"
    );
}

#[test]
fn a_session_with_an_estimator_or_a_stream_holding_packets_gets_the_write_back() {
    // A pacer to wait for: the write is given back, untouched, for `write_rtp`.
    let mut pair = connected(true);
    let back = pair.send_now(2).expect_err("an estimator's pacer decides");
    pair.write_usual(2, Some(*back));
    pair.tx
        .rtc
        .handle_input(Input::Timeout(pair.now))
        .expect("timeout");
    pair.run_for(Duration::from_millis(100));
    let got: Vec<_> = pair.received.iter().filter(|(s, _)| *s == 2).collect();
    assert_eq!(got.len(), 1, "the given-back write was sent the usual way");
    assert_eq!(got[0].1, payload(2));

    // A packet written the usual way and not yet out: the next one must not overtake it.
    let mut pair = connected(false);
    pair.write_usual(2, None);
    assert!(
        pair.send_now(3).is_err(),
        "packet 2 still waits in the queue"
    );

    // Not connected yet: nowhere to send it.
    let mut pair = Pair::new(false);
    assert!(pair.send_now(1).is_err(), "no address nominated yet");
}
