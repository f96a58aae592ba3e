//! One peer connection in the relay: its `str0m::Rtc`, what it is to the data path (a
//! producer's source or a consumer's sink), the addresses it uses, its health readings.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hallcast_core::preflight::{IngestProtocol, Preflight};
use hallcast_core::{Codec, Forward, Layer, MediaKind, Pacer, Target};
use str0m::change::SdpPendingOffer;
use str0m::format::Codec as StCodec;
use str0m::media::{Mid, Pt, Rid};
use str0m::rtp::Ssrc;
use str0m::{Event, Input, Output, Reason, Rtc, RtcError};
use tracing::debug;

use super::{Transmit, timers};
use crate::SessionId;
use crate::api::{Delivery, Role};

#[derive(Debug, Clone, Copy)]
pub(crate) struct TxStream {
    pub ssrc: Ssrc,
    pub pt: Pt,
    pub mid: Mid,
}

/// What a session is to the data path.
pub(crate) enum SessionRole {
    /// The source of a conference's producer: a WHIP publisher, or (as the ICE client) a
    /// session pulling the conference from another relay.
    Source(Ingest),
    /// A viewer consumer's sink: audio and one video stream.
    Viewer(ViewerSink),
}

pub(crate) struct Ingest {
    pub audio: Option<Codec>,
    pub video: Option<Codec>,
    pub audio_mid: Option<Mid>,
    /// Video media sections: one with simulcast RIDs (a publisher), or one per layer (an
    /// upstream relay's relay consumer: section `i` carries layer `i`).
    pub video_mids: Vec<Mid>,
    /// RIDs of the video layers, ordered low to high (empty: no simulcast).
    pub rids: Vec<Rid>,
    pub ssrcs: HashMap<Ssrc, (MediaKind, Layer)>,
    /// An upstream pull waiting for the parent's answer.
    pub pending: Option<SdpPendingOffer>,
    /// This relay is the ICE client (controlling agent) of the session.
    pub upstream: bool,
    /// The encoder pre-flight analysis, from the moment the source is installed (boxed: it
    /// is ~1.2 KiB, and a session's role must stay small for the viewers).
    pub preflight: Option<Box<Preflight>>,
    /// How the publisher arrives (WHIP, or this relay's RTMP/SRT ingest gateway).
    pub protocol: IngestProtocol,
    /// Recording a simulcast source: the recorder's video waits (paused) for the first
    /// keyframe of this top layer, until the deadline, so that the file starts with the
    /// best picture rather than the lowest layer whose packets happen to come first.
    pub record_waits_top: Option<(Layer, Instant)>,
}

impl Ingest {
    pub fn new(audio: Option<Codec>, video: Option<Codec>) -> Ingest {
        Ingest {
            audio,
            video,
            audio_mid: None,
            video_mids: vec![],
            rids: vec![],
            ssrcs: HashMap::new(),
            pending: None,
            upstream: false,
            preflight: None,
            protocol: IngestProtocol::Whip,
            record_waits_top: None,
        }
    }

    /// The layer a received stream carries: by its RID (simulcast), else by its section.
    pub fn layer_of(&self, mid: Mid, rid: Option<Rid>) -> Option<(MediaKind, Layer)> {
        if Some(mid) == self.audio_mid {
            return Some((MediaKind::Audio, Layer(0)));
        }
        let section = self.video_mids.iter().position(|m| *m == mid)?;
        let layer = match rid.and_then(|rid| self.rids.iter().position(|r| *r == rid)) {
            Some(i) => i,
            None => section,
        };
        Some((MediaKind::Video, Layer(layer as u8)))
    }

    /// Where to send a keyframe request for `layer`: the section and RID carrying it.
    pub fn stream_of(&self, layer: Layer) -> Option<(Mid, Option<Rid>)> {
        if self.rids.is_empty() {
            let mid = self
                .video_mids
                .get(layer.index())
                .or(self.video_mids.first())?;
            Some((*mid, None))
        } else {
            Some((
                *self.video_mids.first()?,
                self.rids.get(layer.index()).copied(),
            ))
        }
    }
}

/// A consumer's sink: a viewer's (audio and one video stream: `video[0]`) or a relay
/// consumer's (audio and one video stream per layer: `video[i]` carries layer `i`).
pub(crate) struct ViewerSink {
    pub relay: bool,
    pub audio: Option<TxStream>,
    pub video: [Option<TxStream>; Layer::MAX],
    pub first_video_sent: bool,
    /// The video it may receive (`Command::SetVideo`), applied when it joins the router.
    pub max_layer: Layer,
    pub paused: bool,
    pub last_audio_at: Option<Instant>,
    pub last_video_at: Option<Instant>,
    pub delivery: Delivery,
    /// Adaptation on for this viewer: its estimator's start value (bits per second).
    pub adaptive: Option<u64>,
    /// The desired bitrate last handed to its estimator (probing target).
    pub desired_bps: u64,
    /// When a probe towards it was last asked for.
    pub probed_at: Option<Instant>,
    /// The sustained rate last handed to its estimator's pacer (`Bwe::set_bitrate`'s
    /// minimum: str0m pads up to it): a sustained probe before a switch up, else 0.
    pub sustain_bps: u64,
    /// A measured viewer's pacer (its video leaves at its estimate's rate).
    pub pacer: Option<Box<Pacer>>,
    /// The allocator's last target for it (a measured viewer).
    pub target: Option<Target>,
    /// Estimator resets done (the allocator's count, [`Allocation::estimator_resets`]).
    ///
    /// [`Allocation::estimator_resets`]: hallcast_core::Allocation::estimator_resets
    pub estimator_resets: u32,
    /// The allocator's last tick found it on its conference's top layer: a drain at its own
    /// deadline may hand out its pacer's whole burst ([`drain`]'s `pacer_turn`). Below the
    /// top (or paused, or before the first tick) its link is the one being measured and
    /// stepped, and its packets leave one per turn of the loop as before.
    pub on_top: bool,
}

impl ViewerSink {
    /// The stream `f` is written into: the audio one, or the video one of its layer (a
    /// relay consumer's) or the only one (a viewer's).
    pub fn stream_for(&self, f: &Forward) -> Option<TxStream> {
        match f.kind {
            MediaKind::Audio => self.audio,
            MediaKind::Video => self.video[if self.relay { f.layer.index() } else { 0 }],
        }
    }
}

/// Readings from str0m's periodic stats (`Event::PeerStats`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Readings {
    /// A viewer's: from its transport-wide feedback once that has given one (a packet's
    /// send to the feedback reporting it: what waits in the link's queue counts), else
    /// from receiver reports; a publisher's or a pull's: from reports.
    pub rtt: Option<Duration>,
    /// A viewer's: its transport-wide loss once its feedback has given one (receiver
    /// reports, per stream, until then and for viewers without it); a publisher's: ingress.
    pub loss: Option<f32>,
    /// `loss` and `rtt` are transport-wide: receiver reports no longer overwrite them.
    pub transport_wide: bool,
    pub media_bytes: u64,
}

pub(crate) struct Session {
    pub id: SessionId,
    pub conference: Arc<str>,
    pub rtc: Rtc,
    pub role: SessionRole,
    pub ufrag: String,
    pub addrs: Vec<SocketAddr>,
    /// Where replies leave from, on a socket bound to an unspecified address (empty
    /// otherwise): per peer address and announced candidate (str0m's `Transmit::source`),
    /// the local IP the peer's datagrams to that candidate arrived at (see
    /// [`reply_source`]).
    pub reply_from: Vec<ReplyFrom>,
    pub created: Instant,
    pub last_rx: Instant,
    pub connected: bool,
    pub timeout: Instant,
    /// The deadline this session has in the timer heap, and its key there (`None`: not
    /// scheduled). The key is derivable from the deadline and kept beside it on purpose: the
    /// drain after every write compares deadlines and the timer loop compares keys, so
    /// neither converts (an `Instant` difference, ~40 instructions).
    pub scheduled: Option<(Instant, timers::Key)>,
    pub readings: Readings,
    /// Written to since its last drain (in `Relay::dirty`).
    pub dirty: bool,
    /// Live forwards written to it (or to its pacer) and not yet seen leaving, oldest
    /// first: each one's transit is sampled when its datagram leaves ([`departure`]).
    pub in_flight: VecDeque<InFlight>,
}

/// A live forward on its way out of the relay: the outgoing stream and sequence number it
/// will carry, and when its source datagram arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InFlight {
    pub ssrc: u32,
    pub seq: u16,
    pub arrival: Instant,
}

/// The most [`InFlight`] entries a session keeps; beyond, the oldest is forgotten (its
/// sample lost). A viewer's pacers hold at most a few hundred live packets.
pub(crate) const MAX_IN_FLIGHT: usize = 512;

/// The arrival of the live forward `datagram` carries, if it is one (its entry leaves
/// `in_flight`): an SRTP packet's header is in the clear, so its SSRC and sequence number
/// name it. Entries of the same stream written before it go too (the pacer dropped them).
/// Not a forward: RTCP, a retransmission (its own SSRC, or its entry already gone), padding,
/// DTLS or STUN.
pub(crate) fn departure(in_flight: &mut VecDeque<InFlight>, datagram: &[u8]) -> Option<Instant> {
    if in_flight.is_empty() || datagram.len() < 12 || datagram[0] & 0xc0 != 0x80 {
        return None;
    }
    // RTCP's packet types are 192–223 in the second byte (RFC 5761 §4).
    if (192..=223).contains(&datagram[1]) {
        return None;
    }
    let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
    let ssrc = u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
    let i = in_flight
        .iter()
        .position(|e| e.ssrc == ssrc && e.seq == seq)?;
    let arrival = in_flight[i].arrival;
    // Only the entries up to it are looked at (it is usually the first).
    let mut k = 0;
    for _ in 0..=i {
        if in_flight[k].ssrc == ssrc {
            in_flight.remove(k);
        } else {
            k += 1;
        }
    }
    Some(arrival)
}

impl Session {
    /// A measured viewer's pacer.
    pub fn pacer(&self) -> Option<&Pacer> {
        match &self.role {
            SessionRole::Viewer(v) => v.pacer.as_deref(),
            SessionRole::Source(_) => None,
        }
    }

    pub fn new(
        id: SessionId,
        conference: Arc<str>,
        mut rtc: Rtc,
        role: SessionRole,
        now: Instant,
    ) -> Self {
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        Session {
            id,
            conference,
            rtc,
            role,
            ufrag,
            addrs: vec![],
            reply_from: vec![],
            created: now,
            last_rx: now,
            connected: false,
            timeout: now,
            scheduled: None,
            readings: Readings::default(),
            dirty: false,
            in_flight: VecDeque::new(),
        }
    }

    pub fn role(&self) -> Role {
        match &self.role {
            SessionRole::Source(_) => Role::Publisher,
            SessionRole::Viewer(v) if v.relay => Role::Relay,
            SessionRole::Viewer(_) => Role::Subscriber,
        }
    }

    /// This relay runs full ICE as the controlling agent (it pulls from another relay).
    pub fn is_ice_client(&self) -> bool {
        matches!(&self.role, SessionRole::Source(i) if i.upstream)
    }
}

/// One entry of [`Session::reply_from`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplyFrom {
    pub peer: SocketAddr,
    pub candidate: IpAddr,
    pub local: IpAddr,
}

/// Deadlines already due that one [`drain`] handles itself (each lets str0m's pacer hand
/// out one more packet); then the session waits for its turn of the loop.
const MAX_DUE_IN_DRAIN: u32 = 256;
/// The same for a measured viewer, in a drain at its own deadline (`pacer_turn`): what its
/// pacer lets go at once (its 40 ms burst; at most libwebrtc's 63 kB) leaves in that turn.
const MAX_DUE_IN_PACER_TURN: u32 = 64;
/// A deadline this close is due: str0m's pacer asks for its next timeout 1 µs after the
/// last, so its clock runs at most [`MAX_DUE_IN_DRAIN`] µs ahead of the driver's.
const DUE_SLACK: Duration = Duration::from_micros(300);
/// The step of str0m's pacer from one packet to the next when its debt allows the next at
/// once ("1 µs later").
const CHAIN_STEP: Duration = Duration::from_micros(1);

/// A timeout at `now` for `rtc`. When its last deadline was its pacer's (a measured
/// viewer's leaky bucket asks for one after every packet it lets go, "1 µs later"), only
/// the pacer's part of a timeout (str0m patch `Rtc::handle_pacer_timeout`: what was written
/// gets its queue time, a fresh snapshot of the queues, the pacer's debt), not the whole
/// walk of ICE, DTLS, SCTP, every stream and the estimator; another subsystem's deadline
/// that passed meanwhile is then the soonest of the next `poll_output` and is handled at
/// once. That walk was 23.6 % of the relay's instructions with 100 paced viewers
/// (callgrind at b431dd6, `docs/bench-data/2026-12-05-issue9-pacer-only`).
pub(crate) fn timeout(rtc: &mut Rtc, now: Instant) -> Result<(), RtcError> {
    if matches!(rtc.last_timeout_reason(), Reason::Pacer(_)) && rtc.handle_pacer_timeout(now) {
        return Ok(());
    }
    rtc.handle_input(Input::Timeout(now))
}

/// Drains an `Rtc` until it yields its next timeout (str0m's single-mutation rule):
/// transmits go to `transmits`, events to `on_event`. An ICE client's destinations it has
/// not used yet go to `new_destinations` (the addresses its checks go to become its own);
/// other sessions' transmits are not looked at. `pacer_turn`: the drain runs at the
/// session's own deadline (its timer fired), not after an input or a write.
pub(crate) fn drain(
    s: &mut Session,
    now: Instant,
    pacer_turn: bool,
    transmits: &mut VecDeque<Transmit>,
    new_destinations: &mut Vec<SocketAddr>,
    mut on_event: impl FnMut(Event),
) {
    let client = s.is_ice_client();
    // How many due deadlines this drain handles itself. A downstream relay's link (its
    // video unpaced): everything due. A measured viewer: in a drain after writes or input,
    // none (one packet), so audio the relay takes in meanwhile still goes ahead of the rest
    // of a video burst (str0m's pacer sends unpaced audio first; handed out all at once
    // there, a link at 400–600 kbit/s saw audio gaps and a pause in the simulated network,
    // tests/adapt_sim.rs). In a drain at its own deadline on the top layer, the rest of what
    // its pacer allows at once, instead of one packet per turn of the loop (a turn and a
    // `sendmmsg` slot per packet were most of a paced packet's cost,
    // docs/bench-data/2026-12-05-issue9-burst). Not below the top: there the link is the one
    // being stepped and probed; with the burst for every viewer, the demo source's viewer
    // paused later at the step to 100 kbit/s in end-to-end runs (not explained), with it on
    // the top layer only, issue 11's end-to-end figures stayed at base's
    // (docs/bench-data/2026-12-05-issue9-on-top).
    // `chained`: only the pacer's "next packet 1 µs later" counts as due, so its clock stays
    // within a few µs of the driver's and what its debt holds back still waits for its time.
    // The pacer's burst (str0m patch `Rtc::set_pacer_burst`): in that same turn, the packets
    // its last snapshot lets go at once are handed out without a timeout and a fresh
    // snapshot of the send queues each (the due deadlines above still come between
    // bursts); in every other drain none, one packet per timeout as before.
    let (due_budget, chained) = match &s.role {
        SessionRole::Viewer(v) if v.relay => (MAX_DUE_IN_DRAIN, false),
        SessionRole::Viewer(v) if pacer_turn && v.on_top => {
            s.rtc.set_pacer_burst(MAX_DUE_IN_PACER_TURN);
            (MAX_DUE_IN_PACER_TURN, true)
        }
        SessionRole::Viewer(_) => {
            s.rtc.set_pacer_burst(0);
            (0, false)
        }
        _ => (0, false),
    };
    let mut slack = if chained { CHAIN_STEP } else { DUE_SLACK };
    let mut due = 0;
    loop {
        match s.rtc.poll_output() {
            // Due (str0m asks for "now + 1 µs" when its pacer may hand out the next
            // packet: it hands out one per timeout, paced or not): without this the rest of
            // a burst (a frame's packets) waits for the session's next turn of the media
            // loop, which sleeps in whole milliseconds — ~1.1 ms per packet on a quiet
            // relay (the central's hop to one edge: transit p50 3 ms, a frame's 7 packets
            // over 7 ms).
            Ok(Output::Timeout(t)) if t <= now + slack && due < due_budget => {
                due += 1;
                if chained {
                    slack += CHAIN_STEP;
                }
                if let Err(e) = timeout(&mut s.rtc, t.max(now)) {
                    debug!(session = %s.id, "timeout input failed: {e}");
                }
            }
            Ok(Output::Timeout(t)) => {
                s.timeout = t;
                return;
            }
            Ok(Output::Transmit(t)) => {
                let source = reply_source(&s.reply_from, t.destination, t.source.ip());
                if client && !s.addrs.contains(&t.destination) {
                    new_destinations.push(t.destination);
                }
                let contents: Vec<u8> = t.contents.into();
                transmits.push_back(Transmit {
                    destination: t.destination,
                    source,
                    arrival: departure(&mut s.in_flight, &contents),
                    contents,
                    tcp: t.proto == str0m::net::Protocol::Tcp,
                });
            }
            Ok(Output::Event(e)) => on_event(e),
            Err(e) => {
                debug!(session = %s.id, "rtc error: {e}");
                s.rtc.disconnect();
                s.timeout = now + Duration::from_millis(50);
                return;
            }
        }
    }
}
/// Remembers that `peer`'s datagrams to the announced `candidate` arrived at the local IP
/// `local` (a few entries per session: its peer addresses × the candidates they use).
pub(crate) fn note_reply_from(
    reply_from: &mut Vec<ReplyFrom>,
    peer: SocketAddr,
    candidate: IpAddr,
    local: IpAddr,
) {
    match reply_from
        .iter_mut()
        .find(|r| r.peer == peer && r.candidate == candidate)
    {
        Some(r) => r.local = local,
        None => reply_from.push(ReplyFrom {
            peer,
            candidate,
            local,
        }),
    }
}

/// The local IP a datagram to `peer` from the announced `candidate` (str0m's
/// `Transmit::source`) must leave from: the one `peer`'s datagrams to `candidate` arrived
/// at. A peer's ICE agent accepts a STUN response only from the address its request went
/// to; on a socket bound to 0.0.0.0 the kernel would pick the source by routing, which on a
/// host with several addresses may be another one. `None` (bound to one address, or nothing
/// heard from `peer` on `candidate`): the kernel picks. Never the announced IP itself: behind
/// 1:1 NAT that one is not local, the private IP the NAT delivered to is.
pub(crate) fn reply_source(
    reply_from: &[ReplyFrom],
    peer: SocketAddr,
    candidate: IpAddr,
) -> Option<IpAddr> {
    reply_from
        .iter()
        .find(|r| r.peer == peer && r.candidate == candidate)
        .map(|r| r.local)
}

/// The payload type a subscriber negotiated for `codec` on `mid`.
pub(crate) fn negotiated_pt(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let media = rtc.media(mid)?;
    let remote = media.remote_pts();
    let want = match codec {
        Codec::Opus => StCodec::Opus,
        Codec::H264 => StCodec::H264,
        Codec::Vp8 => StCodec::Vp8,
    };
    let params = rtc.codec_config().params();
    // The remote's order of preference, among the PTs of the right codec.
    remote.iter().copied().find(|pt| {
        params.iter().any(|p| {
            p.pt() == *pt
                && p.spec().codec == want
                && (want != StCodec::H264 || p.spec().format.packetization_mode == Some(1))
        })
    })
}

/// Orders simulcast RIDs from the lowest to the highest layer. The customary
/// names (`q/h/f`, `l/m/h`, `0/1/2`) are recognised; otherwise the offer's order is
/// kept.
pub(crate) fn order_rids(rids: Vec<Rid>) -> Vec<Rid> {
    let names: Vec<String> = rids.iter().map(|r| r.to_string()).collect();
    let rank = |schemes: &[&[&str]]| -> Option<Vec<usize>> {
        schemes.iter().find_map(|scheme| {
            names
                .iter()
                .map(|n| scheme.iter().position(|s| s == n))
                .collect::<Option<Vec<_>>>()
        })
    };
    match rank(&[
        &["q", "h", "f"],
        &["l", "m", "h"],
        &["0", "1", "2"],
        &["low", "mid", "high"],
    ]) {
        Some(ranks) => {
            let mut pairs: Vec<(usize, Rid)> = ranks.into_iter().zip(rids).collect();
            pairs.sort_by_key(|(r, _)| *r);
            pairs.into_iter().map(|(_, r)| r).collect()
        }
        None => rids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(b1: u8, ssrc: u32, seq: u16) -> Vec<u8> {
        let mut d = vec![0x80, b1];
        d.extend_from_slice(&seq.to_be_bytes());
        d.extend_from_slice(&[0; 4]);
        d.extend_from_slice(&ssrc.to_be_bytes());
        d.extend_from_slice(&[0xaa; 100]);
        d
    }

    #[test]
    fn a_departing_live_forward_is_known_by_its_ssrc_and_sequence_number() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let e = |ssrc, seq, ms| InFlight {
            ssrc,
            seq,
            arrival: at(ms),
        };
        // Video 7, 8 (the pacer will drop 7), audio 3, video 9.
        let mut q: VecDeque<InFlight> = [e(1, 7, 0), e(1, 8, 1), e(2, 3, 2), e(1, 9, 3)]
            .into_iter()
            .collect();
        // RTCP from the same SSRC, a retransmission's own SSRC, DTLS: not forwards.
        assert_eq!(departure(&mut q, &rtp(200, 1, 8)), None);
        assert_eq!(departure(&mut q, &rtp(0x80 | 97, 5, 8)), None);
        assert_eq!(
            departure(&mut q, &[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(q.len(), 4);
        // Audio leaves first (never paced): the video ahead of it stays.
        assert_eq!(departure(&mut q, &rtp(111, 2, 3)), Some(at(2)));
        assert_eq!(q.len(), 3);
        // Video 8 (with the marker bit): 7, never seen, is forgotten with it.
        assert_eq!(departure(&mut q, &rtp(0x80 | 96, 1, 8)), Some(at(1)));
        assert_eq!(q.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![9]);
        // Sent again (a resend on the same SSRC): no second sample.
        assert_eq!(departure(&mut q, &rtp(96, 1, 8)), None);
        assert_eq!(departure(&mut q, &rtp(96, 1, 9)), Some(at(3)));
        assert!(q.is_empty());
    }

    #[test]
    fn replies_leave_from_where_each_peers_datagrams_to_each_candidate_arrived() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let peer: SocketAddr = "198.51.100.7:50000".parse().unwrap();
        let other: SocketAddr = "198.51.100.8:50000".parse().unwrap();
        let mut r = Vec::new();
        // Two announced candidates, both local (a 0.0.0.0 bind on a host with two
        // addresses): the peer checks both from one address.
        note_reply_from(&mut r, peer, ip("203.0.113.1"), ip("203.0.113.1"));
        note_reply_from(&mut r, peer, ip("203.0.113.2"), ip("203.0.113.2"));
        // 1:1 NAT: the announced IP is not local; the private one the NAT delivered to is.
        note_reply_from(&mut r, other, ip("203.0.113.1"), ip("10.0.0.5"));
        assert_eq!(r.len(), 3);
        assert_eq!(
            reply_source(&r, peer, ip("203.0.113.1")),
            Some(ip("203.0.113.1"))
        );
        assert_eq!(
            reply_source(&r, peer, ip("203.0.113.2")),
            Some(ip("203.0.113.2"))
        );
        assert_eq!(
            reply_source(&r, other, ip("203.0.113.1")),
            Some(ip("10.0.0.5"))
        );
        // Nothing heard from `other` on the second candidate: the kernel picks.
        assert_eq!(reply_source(&r, other, ip("203.0.113.2")), None);
        // The same path seen at another local IP (a moved address): the newest wins, no
        // second entry.
        note_reply_from(&mut r, other, ip("203.0.113.1"), ip("10.0.0.6"));
        assert_eq!(r.len(), 3);
        assert_eq!(
            reply_source(&r, other, ip("203.0.113.1")),
            Some(ip("10.0.0.6"))
        );
    }
}
