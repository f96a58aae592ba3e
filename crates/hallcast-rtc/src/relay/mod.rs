//! The relay as a state machine, without sockets or a clock (as `quinn-proto` is to
//! `quinn`): it owns every `str0m::Rtc` of one media shard and one router per conference.
//!
//! Inputs: [`Relay::handle_datagram`], [`Relay::handle_timeout`], [`Relay::handle_command`],
//! [`Relay::handle_shard_message`], and [`Relay::handle_sent`] (the polled datagrams left:
//! per-hop transit samples). Outputs: [`Relay::poll_transmit`] (datagrams to send),
//! [`Relay::poll_event`] (for accounting and logs), [`Relay::poll_shard_message`] (to the
//! other shards of the process) and [`Relay::poll_timeout`] (when to call
//! `handle_timeout` next). Time is always an argument; the driver (`crate::driver`) owns the
//! socket and the wall clock, the tests drive it on virtual time.
//!
//! Data path nouns: each conference has a *router* (`hallcast_core`), fed by one *producer*
//! whose source is a session here (a WHIP publisher, or an upstream relay this relay pulls
//! from as the ICE client) or another shard's relay consumer; its *consumers* are viewer
//! sessions and, for the other shards, in-process relay consumers.

pub mod health;
mod session;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use hallcast_core::keyframe::Vp8Ids;
use hallcast_core::preflight::{IngestProtocol, Preflight};
use hallcast_core::{
    Allocation, Backlog, Codec, ConsumerId, Forward, Layer, MediaKind, Outputs, Pacer, PauseReason,
    Router, SourcePacket, Target,
};
use hallcast_record::Item as RecordItem;
use rustc_hash::FxHashMap;
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, KeyframeRequestKind, Mid, Rids};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, RtpWrite, Vp8Descriptor, Vp8Patch};
use str0m::{Candidate, Event, IceConnectionState, Input, Rtc};
use tracing::{debug, info};

use crate::SessionId;
use crate::api::{
    Delivery, EndReason, EngineError, EngineEvent, EngineStats, Role, RxDrop, SessionStarted,
    Snapshot, SnapshotConference, SnapshotSession,
};
use crate::sdp_scan;
use health::Liveness;
use session::{
    InFlight, Ingest, MAX_IN_FLIGHT, Session, SessionRole, TxStream, ViewerSink, departure, drain,
    negotiated_pt, note_reply_from, order_rids, reply_source,
};
use timers::Timers;

/// How often the relay does housekeeping (liveness, delivery, keyframe retries).
const TICK: Duration = Duration::from_millis(200);
/// Parked replay packets written per turn, after the turn's live packets, and per
/// subscriber per visit (about a frame of 720p). A turn's replay slice then costs about
/// a millisecond of the media thread, which bounds what a join storm adds to live latency.
const BACKLOG_BUDGET: usize = 256;
const BACKLOG_PER_VISIT: usize = 32;
/// How long a viewer's sent video stays in str0m's retransmission cache. A repair later
/// than ~1 s arrives after a browser's jitter buffer gave up on its frame (libwebrtc keeps
/// its own send history about as long); str0m's default of 3 s made the cache — 408 bytes of
/// packet metadata per entry, the payload itself shared — the largest part of a
/// subscriber's memory.
const RTX_HISTORY: Duration = Duration::from_secs(1);
const RTX_MAX_PACKETS: usize = 1024;
/// Stop answering NACKs when retransmissions exceed this share of what a stream sent over
/// the last second. str0m's default is 15 %, which starves the low layers: the lowest
/// layer (~150 kbit/s, ~19 kB a second) crosses it with four repaired packets, and a
/// browser whose NACKs go unanswered gives up on the frame and shows nothing more until
/// its own 3 s timeout asks for a keyframe (measured in tests/adaptation.rs after a switch
/// down to the lowest layer: a 3 s freeze in most runs). Congestion is the allocator's and
/// the pacer's to answer, not the repair path's; this only bounds a storm.
const RTX_RATIO_CAP: Option<f32> = Some(0.5);
/// str0m's own padding target while media flows (its default; vendor/str0m/PATCHES.md),
/// restored when a paused viewer's video resumes.
const AUTO_PADDING: Bitrate = Bitrate::bps(50_000);
/// How often str0m reports a session's RTT, loss and bytes (read by snapshots).
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// The same for a measured link (its estimator on): each report carries the transport-wide
/// loss over the last second, which the allocator steps down on. Reported every second, a
/// link that starts dropping a third of what it is sent was first reported 0.5–1.5 s later
/// (tests/adaptation.rs); every 250 ms, within 0.25–0.5 s.
const MEASURED_STATS_INTERVAL: Duration = Duration::from_millis(250);
/// Writes into consumers' streams wait (their sessions marked dirty) until this many are
/// pending, or the current input is handled, and then each dirty session is drained once:
/// str0m's `poll_output` (ICE, DTLS, pacer and timeout bookkeeping) runs once per session per
/// burst instead of once per packet, and a session's datagrams leave back to back (GSO runs).
/// The bound keeps what one burst holds back small (a few milliseconds of a shard's work).
const DRAIN_AT: usize = 512;
/// Consumer ids of the in-process relay consumers that feed other shards: the top 120 bits
/// set, the shard's index below (session ids never take this shape, see `new_id`).
const SHARD_CONSUMER: u128 = u128::MAX << 8;
/// The consumer id of a conference's recorder (with [`RelayConfig::record`]): a viewer of
/// the local producer, so that it gets what a viewer gets — the highest active layer,
/// falling back to a lower one at its keyframe when the top layer stops and back up at the
/// top layer's next keyframe, in one continuous stream. The shard-consumer shape with a low
/// byte no shard takes (at most 64 shards).
const RECORD_CONSUMER: u128 = SHARD_CONSUMER | 0xff;
/// How long the recorder waits for the top simulcast layer's first keyframe before it
/// records the best layer there is.
const RECORD_WAITS_TOP: Duration = Duration::from_secs(3);
/// Arrivals of live forwards kept for [`Relay::handle_sent`]; beyond this (a driver that
/// never calls it) further samples are not kept.
const MAX_DEPARTING: usize = 1 << 16;

/// The H.264 payload types the relay offers and accepts: (PT, RTX PT, profile-level-id), all
/// packetization-mode=1; constrained baseline first (what every browser decodes), then
/// baseline, main and high for encoders.
pub const H264_PAYLOADS: [(u8, u8, u32); 4] = [
    (108, 109, 0x42e01f),
    (127, 121, 0x42001f),
    (123, 119, 0x4d001f),
    (114, 115, 0x64001f),
];

/// The estimate a downstream relay's link starts from: high, since a relay link is
/// usually a good one and trimming its layers at the start would lower every point's first
/// picture below it; the estimator brings it down if the link says otherwise.
const RELAY_START_BPS: u64 = 20_000_000;
/// A measured viewer is probed this often while its estimate stays under its probe target
/// (below the top layer) or under the top layer's need (on it).
const REPROBE_EVERY: Duration = Duration::from_secs(2);

/// Settings of one relay (one media shard).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The address the shard's socket is bound to (0.0.0.0 / `::` allowed with
    /// `public_ips`).
    pub local_addr: SocketAddr,
    /// Addresses announced as ICE host candidates, each on `local_addr`'s port. Empty: the
    /// bound address.
    pub public_ips: Vec<IpAddr>,
    pub liveness: Liveness,
    /// This shard's index and the number of shards in the process. Session ids carry the
    /// index in their low byte.
    pub shard: usize,
    pub n_shards: usize,
    /// Bandwidth adaptation for viewers: the estimator's start value, bits per second
    /// (`None`: off).
    pub adaptation: Option<u64>,
    /// Benchmarks only: measured viewers get the fixed-threshold selector, the baseline the
    /// allocator is compared with.
    pub fixed_threshold: bool,
    /// ICE-TCP: announce a passive TCP host candidate on each address, on the same port as
    /// UDP (the driver accepts the connections and hands their frames to
    /// [`Relay::handle_tcp`]).
    pub tcp: bool,
    /// Hand each local source's broadcast (start, audio and top-layer packets, end) to the
    /// recorder through [`Relay::poll_record`].
    pub record: bool,
}

impl RelayConfig {
    pub fn new(local_addr: SocketAddr) -> Self {
        RelayConfig {
            local_addr,
            public_ips: vec![],
            liveness: Liveness {
                session_timeout: Duration::from_secs(6),
                connect_timeout: Duration::from_secs(20),
            },
            shard: 0,
            n_shards: 1,
            // Off by default here (the simulated network's relays opt in); the engine's
            // own default, from the config, is on.
            adaptation: None,
            fixed_threshold: false,
            tcp: false,
            record: false,
        }
    }
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    pub destination: SocketAddr,
    /// The local IP it must leave from (a socket bound to 0.0.0.0); `None`: the kernel's
    /// choice.
    pub source: Option<IpAddr>,
    pub contents: Vec<u8>,
    /// On the ICE-TCP connection from `destination` (RFC 4571 framing is the driver's),
    /// not UDP.
    pub tcp: bool,
    /// A live forward: when its source datagram arrived (a transit sample once sent).
    pub(crate) arrival: Option<Instant>,
}

/// What the rest of the relay asks of it.
#[derive(Debug, Clone)]
pub enum Command {
    /// A WHIP publisher's offer: the answer, or why not.
    Publish {
        conference: Arc<str>,
        offer: String,
        /// WHIP, or the relay's own ingest gateway (RTMP/SRT) as the HTTP layer established
        /// it: the pre-flight judges keyframes by it.
        protocol: IngestProtocol,
    },
    /// A WHEP viewer's offer.
    Subscribe {
        conference: Arc<str>,
        offer: String,
    },
    /// A downstream relay's offer (as made by [`Command::Pull`]): a relay consumer, every
    /// layer on its own video section.
    SubscribeRelay {
        conference: Arc<str>,
        offer: String,
    },
    /// Pull `conference` from another relay: this relay is the ICE client and makes the
    /// offer (audio, and one receive-only video section per layer).
    Pull {
        conference: Arc<str>,
    },
    /// The other relay's answer to a [`Command::Pull`] offer.
    Accept {
        session: SessionId,
        answer: String,
    },
    End {
        session: SessionId,
        reason: EndReason,
    },
    /// What a viewer's video may be: the highest layer it may receive, and whether its video
    /// is paused (audio only). The bandwidth allocator's levers.
    SetVideo {
        session: SessionId,
        max_layer: Layer,
        paused: bool,
    },
    /// The layers a relay consumer (a downstream relay) wants forwarded.
    SetRelayLayers {
        session: SessionId,
        layers: [bool; Layer::MAX],
    },
    EndConference {
        conference: Arc<str>,
    },
    /// Trickled remote candidates (`a=candidate:` lines or bare values).
    Trickle {
        session: SessionId,
        candidates: Vec<String>,
    },
}

/// The answer to a [`Command`].
#[derive(Debug)]
pub enum Reply {
    /// Publish, Subscribe: the session and its SDP answer. Pull: the session and its
    /// SDP *offer*.
    Started(Result<SessionStarted, EngineError>),
    /// Accept, Trickle.
    Done(Result<(), EngineError>),
    /// End: whether the session existed.
    Ended(bool),
    /// EndConference: how many sessions ended.
    EndedConference(usize),
}

/// The shard a relay consumer of another shard feeds (`SHARD_CONSUMER`); `None` for every
/// other consumer, the recorder's included.
fn shard_consumer(sub: ConsumerId) -> Option<usize> {
    (sub.0 & SHARD_CONSUMER == SHARD_CONSUMER && sub.0 != RECORD_CONSUMER)
        .then_some((sub.0 & 0xff) as usize)
}

/// A message to shard `to`: to the sink if the driver set one, else queued for
/// [`Relay::poll_shard_message`].
fn to_shard(
    sink: &mut Option<ShardSink>,
    queue: &mut VecDeque<(usize, ShardMessage)>,
    to: usize,
    msg: ShardMessage,
) {
    match sink {
        Some(sink) => sink(to, msg),
        None => queue.push_back((to, msg)),
    }
}

/// Where a shard's relay hands its messages to the other shards (see
/// [`Relay::set_shard_sink`]): the shard's index and the message.
pub type ShardSink = Box<dyn FnMut(usize, ShardMessage) + Send>;

/// Between the shards of one process: a producer's packets reach the other shards' routers
/// through in-process relay consumers (the same `Arc` payload, no SRTP, no copy).
#[derive(Debug, Clone)]
pub enum ShardMessage {
    SourceStarted {
        conference: Arc<str>,
        audio: Option<Codec>,
        video: Option<Codec>,
    },
    SourceEnded {
        conference: Arc<str>,
    },
    Packet {
        conference: Arc<str>,
        packet: SourcePacket,
    },
    /// A shard's viewers need a keyframe of `layer` from the producer's shard.
    KeyframeRequest {
        conference: Arc<str>,
        layer: Layer,
    },
}

/// One conference on this shard.
#[derive(Default)]
struct ConfState {
    router: Router,
    /// The local session feeding the producer.
    source: Option<SessionId>,
    /// The shard feeding the producer (the source is on another shard).
    mirror_of: Option<usize>,
    viewers: Vec<SessionId>,
    /// When the source left (viewers are kept for a grace period).
    source_gone_at: Option<Instant>,
    /// The codecs (audio, video) of the last source: what the viewers negotiated.
    codecs: (Option<Codec>, Option<Codec>),
    /// Counters for `/metrics`, kept while the conference has a session on this shard.
    counters: ConfCounters,
}

/// Per-conference counters of one shard (plain integers: only the shard's thread touches
/// them, once per keyframe request or session end, never per packet).
#[derive(Default)]
struct ConfCounters {
    keyframe_requests_upstream: u64,
    keyframe_requests_downstream: u64,
    /// Media bytes sent to viewers and relays whose sessions have ended.
    ended_sent_bytes: u64,
}

impl ConfState {
    fn is_empty(&self) -> bool {
        self.source.is_none() && self.mirror_of.is_none() && self.viewers.is_empty()
    }
}

/// The relay state machine of one media shard.
pub struct Relay {
    config: RelayConfig,
    candidates: Vec<Candidate>,
    /// The candidates' IPs: where datagrams are said to arrive (`udp::candidate_destination`).
    announced: Vec<IpAddr>,
    /// The socket is bound to 0.0.0.0 / `::`: the kernel would pick each reply's source by
    /// routing, so replies name the address the peer's datagrams arrived at
    /// (`Session::reply_from`). Bound to one address, the source is that one.
    choose_source: bool,
    stats: Arc<EngineStats>,
    /// Boxed: a `Session` is ~10 KiB (its `Rtc`), and a map of inline sessions keeps that
    /// per slot of its capacity, which only grows. Hashed with FxHash, not SipHash: the keys
    /// are random ids this relay makes (`Relay::new_id`), so no peer can choose them to
    /// collide, and SipHash of a `u128` on every forward, timer and drain was 3.6 % of the
    /// relay's instructions (callgrind, docs/bench-data/2026-12-05-issue9-pacer-only). Maps
    /// keyed by what peers send (addresses, ufrags) keep SipHash.
    sessions: FxHashMap<SessionId, Box<Session>>,
    by_addr: HashMap<SocketAddr, SessionId>,
    by_ufrag: HashMap<String, SessionId>,
    confs: HashMap<Arc<str>, ConfState>,
    timers: Timers,
    /// Reused buffers: the per-packet path does not allocate.
    outs: Outputs,
    queue: VecDeque<(SessionId, Event)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EngineEvent>,
    shard_out: VecDeque<(usize, ShardMessage)>,
    /// Where messages to other shards go the moment they are made, when the driver set one
    /// ([`Relay::set_shard_sink`]); else they wait in `shard_out` for
    /// [`Relay::poll_shard_message`].
    shard_sink: Option<ShardSink>,
    /// For the recorder (only with [`RelayConfig::record`]).
    record_out: VecDeque<RecordItem>,
    new_destinations: Vec<SocketAddr>,
    /// Sessions written to since their last drain (see [`DRAIN_AT`]).
    dirty: Vec<SessionId>,
    pending_writes: usize,
    next_tick: Instant,
    /// Joiners' GOP replays, released a slice per turn after the turn's live packets.
    backlog: Backlog,
    released: Vec<Forward>,
    /// Reused buffer of the allocations a tick changed.
    reallocated: Vec<(ConsumerId, Allocation)>,
    /// Measured viewers with video waiting in their pacer.
    paced: Vec<SessionId>,
    /// Reused buffer of paced releases.
    paced_out: Vec<Forward>,
    last_now: Instant,
    /// Set while the router's outputs for a live source packet are written: those forwards
    /// are transit samples (replays are not).
    live: bool,
    /// Arrival instants of the live forwards written since the last [`Relay::handle_sent`].
    departing: Vec<Instant>,
}

impl Relay {
    pub fn new(
        config: RelayConfig,
        stats: Arc<EngineStats>,
        now: Instant,
    ) -> std::io::Result<Relay> {
        let local_addr = config.local_addr;
        let ips = if config.public_ips.is_empty() {
            if local_addr.ip().is_unspecified() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "media socket bound to an unspecified address: configure media.public_ips",
                ));
            }
            vec![local_addr.ip()]
        } else {
            config.public_ips.clone()
        };
        let mut candidates = Vec::new();
        let invalid = |e: str0m::error::IceError| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
        };
        for &ip in &ips {
            let addr = SocketAddr::new(ip, local_addr.port());
            candidates.push(Candidate::host(addr, "udp").map_err(invalid)?);
        }
        if config.tcp {
            // After the UDP ones: a browser that can use UDP prefers it (RFC 6544's type
            // preference puts TCP host candidates below UDP ones).
            for &ip in &ips {
                let addr = SocketAddr::new(ip, local_addr.port());
                let c = Candidate::builder()
                    .tcp()
                    .host(addr)
                    .tcptype(str0m::net::TcpType::Passive)
                    .build()
                    .map_err(invalid)?;
                candidates.push(c);
            }
        }
        Ok(Relay {
            announced: ips,
            choose_source: local_addr.ip().is_unspecified(),
            candidates,
            config,
            stats,
            sessions: FxHashMap::default(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            confs: HashMap::new(),
            timers: Timers::new(now),
            outs: Outputs::default(),
            queue: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            shard_out: VecDeque::new(),
            shard_sink: None,
            record_out: VecDeque::new(),
            new_destinations: Vec::new(),
            dirty: Vec::new(),
            pending_writes: 0,
            next_tick: now + TICK,
            backlog: Backlog::new(),
            released: Vec::new(),
            reallocated: Vec::new(),
            paced: Vec::new(),
            paced_out: Vec::new(),
            last_now: now,
            live: false,
            departing: Vec::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.config.local_addr
    }

    pub fn shard(&self) -> usize {
        self.config.shard
    }

    pub fn n_sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.stats
    }

    /// The peer addresses `session` is reached from (at most [`MAX_ADDRS_PER_SESSION`]).
    pub fn n_addresses(&self, session: SessionId) -> usize {
        self.sessions.get(&session).map_or(0, |s| s.addrs.len())
    }

    // ------------------------------------------------------------------ outputs

    // Not inlined (nor `drain_now`, `handle_sent`): an entry point that drains stays a
    // symbol of its own, so a profile collected per entry point (callgrind's
    // `--toggle-collect`, docs/BENCHMARKS.md) counts the drains done here.
    #[inline(never)]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.dirty.is_empty() {
            self.drain_dirty();
        }
        let t = self.transmits.pop_front()?;
        if let Some(arrival) = t.arrival
            && self.departing.len() < MAX_DEPARTING
        {
            self.departing.push(arrival);
        }
        Some(t)
    }

    /// Drains every session written to since its last drain now, instead of at the next
    /// [`DRAIN_AT`] writes or timeout: the driver calls it when the oldest unsent forward
    /// has waited long enough (a bound on transit time, whatever the burst size).
    #[inline(never)]
    pub fn drain_now(&mut self) {
        self.drain_dirty();
    }

    pub fn n_transmits(&self) -> usize {
        self.transmits.len()
    }

    /// The transmits polled so far were handed to the kernel at `now`: every live packet
    /// forwarded in them is a transit sample (its source datagram's arrival to `now`) in
    /// [`EngineStats::transit`]. A live forward is known by its datagram's SSRC and
    /// sequence number when str0m hands it out (`session::departure`), however long the
    /// viewer's pacer or str0m's held it; the arrivals kept since the last call are those
    /// of the transmits polled since.
    #[inline(never)]
    pub fn handle_sent(&mut self, now: Instant) {
        self.stats
            .transit
            .record_departures(now, self.departing.drain(..));
    }

    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    pub fn poll_shard_message(&mut self) -> Option<(usize, ShardMessage)> {
        self.shard_out.pop_front()
    }

    /// Hands messages to other shards to `sink` the moment they are made, instead of queueing
    /// them for [`Relay::poll_shard_message`] (what is queued already is handed over first,
    /// so each shard's messages keep their order). A source packet's copy for another shard
    /// then leaves before this shard writes its own viewers' copies, and the two shards fan
    /// it out at the same time (the leaf hop's transit, docs/BENCHMARKS.md, "Edge tree").
    /// The sink must not block: the driver's is an unbounded channel send.
    pub fn set_shard_sink(&mut self, mut sink: ShardSink) {
        while let Some((to, msg)) = self.shard_out.pop_front() {
            sink(to, msg);
        }
        self.shard_sink = Some(sink);
    }

    /// What the recorder gets: each local source's broadcast started (codecs, the
    /// instant), its audio packets and its top video layer's, its end. Empty unless
    /// [`RelayConfig::record`]. The payloads are the source's own `Arc`s (no copy).
    pub fn poll_record(&mut self) -> Option<RecordItem> {
        self.record_out.pop_front()
    }

    /// When [`Relay::handle_timeout`] must be called next: now, while replays wait in the
    /// backlog; else the earliest session deadline or housekeeping tick.
    pub fn poll_timeout(&self) -> Instant {
        if !self.backlog.is_empty() {
            return self.last_now;
        }
        let mut d = self.next_tick;
        if let Some((k, _)) = self.timers.peek() {
            d = d.min(self.timers.instant(k));
        }
        for id in &self.paced {
            if let Some(t) = self.sessions.get(id).and_then(|s| s.pacer()?.next_due()) {
                d = d.min(t);
            }
        }
        d
    }

    // ------------------------------------------------------------------ inputs

    /// One datagram from `from`, which arrived at the local address `to` (the socket's
    /// address when the driver cannot tell: then the first announced candidate of the
    /// family is assumed).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, buf: &[u8]) {
        self.last_now = now;
        let real = (!to.ip().is_unspecified()).then(|| to.ip());
        let destination =
            crate::udp::candidate_destination(real, self.config.local_addr, &self.announced);
        // The real destination, never the announced one: behind 1:1 NAT only the private
        // address is this host's.
        let local = real
            .filter(|_| self.choose_source)
            .map(|ip| ip.to_canonical());
        self.on_datagram(now, Protocol::Udp, from, destination, local, buf);
    }

    /// A frame (one RFC 4571 packet, its length prefix removed) from the ICE-TCP connection
    /// `from` → `to` (the connection's local address).
    pub fn handle_tcp(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, buf: &[u8]) {
        self.last_now = now;
        let destination = crate::udp::candidate_destination(
            Some(to.ip()),
            self.config.local_addr,
            &self.announced,
        );
        self.on_datagram(now, Protocol::Tcp, from, destination, None, buf);
    }

    /// Time passed: session timers, housekeeping, and the next slice of parked replays.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.on_timers(now);
        self.release_backlog(now);
        self.release_paced(now);
        self.drain_dirty();
    }

    pub fn handle_command(&mut self, now: Instant, cmd: Command) -> Reply {
        self.last_now = now;
        let reply = match cmd {
            Command::Publish {
                conference,
                offer,
                protocol,
            } => Reply::Started(self.publish(now, conference, &offer, protocol)),
            Command::Subscribe { conference, offer } => {
                Reply::Started(self.subscribe(now, conference, &offer, false))
            }
            Command::SubscribeRelay { conference, offer } => {
                Reply::Started(self.subscribe(now, conference, &offer, true))
            }
            Command::Pull { conference } => Reply::Started(self.pull(now, conference)),
            Command::Accept { session, answer } => Reply::Done(self.accept(now, session, &answer)),
            Command::SetVideo {
                session,
                max_layer,
                paused,
            } => Reply::Done(self.set_video(now, session, max_layer, paused)),
            Command::SetRelayLayers { session, layers } => {
                Reply::Done(self.set_relay_layers(now, session, layers))
            }
            Command::End { session, reason } => {
                let existed = self.sessions.contains_key(&session);
                self.end_session(now, session, reason);
                Reply::Ended(existed)
            }
            Command::EndConference { conference } => {
                let ids: Vec<SessionId> = self
                    .confs
                    .get(&conference)
                    .map(|c| c.source.iter().chain(&c.viewers).copied().collect())
                    .unwrap_or_default();
                for id in &ids {
                    self.end_session(now, *id, EndReason::ConferenceEnded);
                }
                Reply::EndedConference(ids.len())
            }
            Command::Trickle {
                session,
                candidates,
            } => Reply::Done(self.trickle(session, candidates)),
        };
        self.process_queue(now);
        self.drain_dirty();
        reply
    }

    /// A message from shard `from` of this process.
    pub fn handle_shard_message(&mut self, now: Instant, from: usize, msg: ShardMessage) {
        self.last_now = now;
        match msg {
            ShardMessage::SourceStarted {
                conference,
                audio,
                video,
            } => {
                self.source_starts(now, &conference, audio, video);
                if let Some(c) = self.confs.get_mut(&conference) {
                    c.mirror_of = Some(from);
                    c.source = None;
                }
            }
            ShardMessage::SourceEnded { conference } => {
                if let Some(c) = self.confs.get_mut(&conference)
                    && c.mirror_of.is_some()
                {
                    c.mirror_of = None;
                    c.router.source_ended();
                    c.source_gone_at = Some(now);
                    if c.is_empty() {
                        self.confs.remove(&conference);
                    }
                }
            }
            ShardMessage::Packet { conference, packet } => {
                self.outs.clear();
                if let Some(c) = self.confs.get_mut(&conference) {
                    c.router.on_packet(&packet, &mut self.outs);
                }
                self.apply_live_outputs(now, &conference);
            }
            ShardMessage::KeyframeRequest { conference, layer } => {
                self.outs.clear();
                if let Some(c) = self.confs.get_mut(&conference) {
                    c.router.on_keyframe_request(
                        ConsumerId(SHARD_CONSUMER | from as u128),
                        Some(layer),
                        now,
                        &mut self.outs,
                    );
                }
                self.apply_outputs(now, &conference);
            }
        }
        self.process_queue(now);
        if self.pending_writes >= DRAIN_AT {
            self.drain_dirty();
        }
    }

    /// A snapshot of this shard for dashboards (taken by the driver at a fixed rate, read
    /// by the HTTP side without touching the media thread).
    pub fn snapshot(&self, now: Instant, taken_ms: u64) -> Snapshot {
        let conferences = self
            .confs
            .iter()
            .map(|(id, c)| {
                let (a, v) = c.router.codecs();
                let layers = c.router.layers(now);
                SnapshotConference {
                    id: id.clone(),
                    live: c.router.is_live(),
                    audio_codec: a.map(Codec::name),
                    video_codec: v.map(Codec::name),
                    n_subscribers: c
                        .viewers
                        .iter()
                        .filter(|v| self.role_of(**v) == Some(Role::Subscriber))
                        .count(),
                    n_relays: c
                        .viewers
                        .iter()
                        .filter(|v| self.role_of(**v) == Some(Role::Relay))
                        .count(),
                    layer_bitrates: layers.map(|l| l.bitrate_bps),
                    // Measured where the source is; a mirror reports 0 so sums stay right.
                    audio_bitrate: if c.source.is_some() {
                        c.router.audio_bitrate_bps(now)
                    } else {
                        0
                    },
                    preflight: c
                        .source
                        .and_then(|src| self.sessions.get(&src))
                        .and_then(|s| match &s.role {
                            SessionRole::Source(ingest) => ingest.preflight.as_ref(),
                            SessionRole::Viewer(_) => None,
                        })
                        .map(|p| p.report(now)),
                    keyframe_requests_upstream: c.counters.keyframe_requests_upstream,
                    keyframe_requests_downstream: c.counters.keyframe_requests_downstream,
                    sent_bytes: c.counters.ended_sent_bytes
                        + c.viewers
                            .iter()
                            .filter_map(|v| self.sessions.get(v))
                            .map(|s| s.readings.media_bytes)
                            .sum::<u64>(),
                }
            })
            .collect();
        let sessions = self
            .sessions
            .values()
            .map(|s| {
                let (delivery, video, adaptation, relay_layers) = match &s.role {
                    SessionRole::Viewer(v) => {
                        let router = self.confs.get(&s.conference).map(|c| &c.router);
                        let id = ConsumerId(s.id.0);
                        (
                            Some(v.delivery),
                            router.and_then(|r| r.video_status(id)),
                            router.and_then(|r| r.allocation(id)),
                            router.and_then(|r| r.relay_layers(id)),
                        )
                    }
                    SessionRole::Source(_) => (None, None, None, None),
                };
                SnapshotSession {
                    id: s.id,
                    conference: s.conference.clone(),
                    role: s.role(),
                    shard: self.config.shard,
                    connected: s.connected,
                    delivery,
                    video,
                    adaptation,
                    relay_layers,
                    rtt_ms: s.readings.rtt.map(|d| d.as_millis() as u32),
                    loss: s.readings.loss,
                    media_bytes: s.readings.media_bytes,
                    peer: s.addrs.first().map(|a| a.ip()),
                }
            })
            .collect();
        Snapshot {
            taken_ms,
            conferences,
            sessions,
            shards: vec![crate::api::SnapshotShard {
                index: self.config.shard,
                udp: self.config.local_addr,
                sessions: self.sessions.len(),
            }],
        }
    }

    fn role_of(&self, id: SessionId) -> Option<Role> {
        self.sessions.get(&id).map(|s| s.role())
    }

    /// Ends every session (RTCP BYE / DTLS close where possible).
    pub fn shutdown(&mut self, now: Instant) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.end_session(now, id, EndReason::Shutdown);
        }
    }

    // ------------------------------------------------------------------ commands

    /// `twcc`: negotiate transport-wide congestion control. Publishers and relay links
    /// keep it (the relay's feedback drives a browser publisher's own estimate); viewers
    /// have it when adaptation is on (`bwe`: the estimator's start value), and go without
    /// it otherwise (str0m keeps a 1 000-packet send register per session for it,
    /// ~44 KiB, that nothing would read).
    fn new_rtc(
        &self,
        now: Instant,
        audio: Option<Codec>,
        video: &[Codec],
        ice_lite: bool,
        twcc: bool,
        bwe: Option<u64>,
    ) -> Rtc {
        let mut b = Rtc::builder()
            // Shared DTLS configuration and certificate (see dtls.rs): str0m asks this
            // provider for the certificate, which is the process's one.
            .set_crypto_provider(crate::dtls::RelayDtls::crypto_provider())
            .set_ice_lite(ice_lite)
            .set_rtp_mode(true)
            .set_stats_interval(Some(if bwe.is_some() {
                MEASURED_STATS_INTERVAL
            } else {
                STATS_INTERVAL
            }))
            .enable_bwe(bwe.map(Bitrate::bps))
            .clear_codecs();
        if !twcc {
            // str0m's standard map without transport-wide-cc (ids as Chrome's).
            b = b
                .clear_extension_map()
                .set_extension(1, Extension::AudioLevel)
                .set_extension(2, Extension::AbsoluteSendTime)
                .set_extension(4, Extension::RtpMid)
                .set_extension(10, Extension::RtpStreamId)
                .set_extension(11, Extension::RepairedRtpStreamId)
                .set_extension(13, Extension::VideoOrientation);
        }
        if audio == Some(Codec::Opus) {
            b = b.enable_opus(true, false);
        }
        for v in video {
            match v {
                Codec::Vp8 => b = b.enable_vp8(true),
                Codec::H264 => {
                    let cfg = b.codec_config();
                    for (pt, rtx, profile) in H264_PAYLOADS {
                        cfg.add_h264(pt.into(), Some(rtx.into()), true, profile);
                    }
                }
                Codec::Opus => {}
            }
        }
        let mut rtc = b.build(now);
        // Every write is followed by a timeout in `drain_dirty`, so a paced session's pacer
        // need not take a snapshot "1 µs later" to find its queues empty after it handed out
        // all they held (str0m patch `Rtc::set_pacer_wakes_on_write`): one timeout less
        // after each audio packet and each video burst.
        rtc.set_pacer_wakes_on_write(true);
        // An ICE client (a pull from another relay) checks over UDP only: ICE-TCP is for
        // peers whose network blocks UDP, and relays reach each other over UDP.
        for c in self
            .candidates
            .iter()
            .filter(|c| ice_lite || c.proto() == str0m::net::Protocol::Udp)
        {
            rtc.add_local_candidate(c.clone());
        }
        rtc
    }

    fn publish(
        &mut self,
        now: Instant,
        conference: Arc<str>,
        offer: &str,
        protocol: IngestProtocol,
    ) -> Result<SessionStarted, EngineError> {
        if self
            .confs
            .get(&conference)
            .is_some_and(|c| c.source.is_some() || c.mirror_of.is_some())
        {
            return Err(EngineError::AlreadyLive);
        }
        let sdp =
            SdpOffer::from_sdp_string(offer).map_err(|e| EngineError::BadSdp(e.to_string()))?;
        let scan = sdp_scan::scan(offer);
        if !scan.has_audio && !scan.has_video {
            return Err(EngineError::BadSdp(
                "the offer has no audio or video section".into(),
            ));
        }
        let audio = scan.audio;
        let video = scan.video.first().copied();
        if audio.is_none() && video.is_none() {
            return Err(EngineError::NoSupportedCodec);
        }
        let mut rtc = self.new_rtc(now, audio, video.as_slice(), true, true, None);
        let answer = rtc
            .sdp_api()
            .accept_offer(sdp)
            .map_err(|e| EngineError::BadSdp(e.to_string()))?;
        let id = self.new_id();
        let mut ingest = Ingest::new(audio, video);
        ingest.protocol = protocol;
        // Learn the media sections (mids, simulcast RIDs) from the negotiation.
        for (kind, mid) in &scan.mids {
            let mid = Mid::from(mid.as_str());
            let Some(media) = rtc.media(mid) else {
                continue;
            };
            match kind.as_str() {
                "audio" if ingest.audio_mid.is_none() => ingest.audio_mid = Some(mid),
                "video" if ingest.video_mids.is_empty() => {
                    ingest.video_mids.push(mid);
                    if let Rids::Specific(list) = media.rids_rx() {
                        ingest.rids = order_rids(list.clone());
                    }
                }
                _ => {}
            }
        }
        let session = Session::new(
            id,
            conference.clone(),
            rtc,
            SessionRole::Source(ingest),
            now,
        );
        self.insert_session(now, session);
        self.stats.sessions_started.fetch_add(1, Relaxed);
        info!(session = %id, %conference, ?audio, ?video, "publisher session created");
        self.install_source(now, &conference, id, audio, video);
        Ok(SessionStarted {
            session: id,
            answer: answer.to_sdp_string(),
        })
    }

    /// `id` now feeds the conference's producer.
    fn install_source(
        &mut self,
        now: Instant,
        conference: &Arc<str>,
        id: SessionId,
        audio: Option<Codec>,
        video: Option<Codec>,
    ) {
        self.source_starts(now, conference, audio, video);
        if let Some(c) = self.confs.get_mut(conference) {
            c.source = Some(id);
        }
        if let Some(s) = self.sessions.get_mut(&id)
            && let SessionRole::Source(ingest) = &mut s.role
        {
            // Offered layers: simulcast RIDs, or an upstream relay's sections, else one.
            let n_layers = if ingest.rids.is_empty() {
                ingest.video_mids.len()
            } else {
                ingest.rids.len()
            };
            ingest.preflight = Some(Box::new(
                Preflight::new(audio, video, n_layers, now).with_protocol(ingest.protocol),
            ));
            if self.config.record {
                self.record_out.push_back(RecordItem::Started {
                    broadcast: id,
                    conference: conference.clone(),
                    audio,
                    video,
                    at: now,
                });
                // The recorder is a viewer of the producer: the best layer the encoder
                // sends, a lower one while the top layer is stopped (an encoder shedding
                // it under load), switching at keyframes, audio throughout. With simulcast
                // its video starts at the top layer's first keyframe (or the best layer
                // then, after RECORD_WAITS_TOP).
                self.outs.clear();
                if let Some(c) = self.confs.get_mut(conference) {
                    let rec = ConsumerId(RECORD_CONSUMER);
                    c.router.add_viewer(rec, now, &mut self.outs);
                    if n_layers > 1 && video.is_some() {
                        c.router.set_paused(rec, true, now, &mut self.outs);
                        ingest.record_waits_top =
                            Some((Layer(n_layers as u8 - 1), now + RECORD_WAITS_TOP));
                    }
                }
                self.apply_outputs(now, conference);
            }
        }
        self.emit(EngineEvent::BroadcastStarted {
            conference: conference.clone(),
            session: id,
        });
        // The other shards mirror this producer through in-process relay consumers.
        if self.config.n_shards > 1 {
            let me = self.config.shard;
            for shard in (0..self.config.n_shards).filter(|s| *s != me) {
                to_shard(
                    &mut self.shard_sink,
                    &mut self.shard_out,
                    shard,
                    ShardMessage::SourceStarted {
                        conference: conference.clone(),
                        audio,
                        video,
                    },
                );
                self.outs.clear();
                if let Some(c) = self.confs.get_mut(conference) {
                    c.router.add_relay_consumer(
                        ConsumerId(SHARD_CONSUMER | shard as u128),
                        now,
                        &mut self.outs,
                    );
                }
                self.apply_outputs(now, conference);
            }
        }
    }

    /// A source (local or on another shard) starts: viewers that negotiated other codecs
    /// end, the router restarts its producer.
    fn source_starts(
        &mut self,
        now: Instant,
        conference: &Arc<str>,
        audio: Option<Codec>,
        video: Option<Codec>,
    ) {
        // Viewers waiting for a returning publisher negotiated the previous one's codecs; if
        // this one uses others they cannot continue: end them (their pages reconnect with a
        // fresh offer) rather than leave them on a payload type that no longer exists.
        let stale: Vec<SessionId> = self
            .confs
            .get(conference)
            .filter(|c| c.codecs != (audio, video))
            .map(|c| c.viewers.clone())
            .unwrap_or_default();
        if !stale.is_empty() {
            info!(%conference, n_viewers = stale.len(), ?audio, ?video,
                "publisher came back with other codecs: its waiting viewers reconnect");
        }
        for sub in stale {
            self.end_session(now, sub, EndReason::SourceGone);
        }
        let conf = self.confs.entry(conference.clone()).or_default();
        conf.codecs = (audio, video);
        conf.source_gone_at = None;
        self.outs.clear();
        conf.router
            .source_started(audio, video, now, &mut self.outs);
        self.apply_outputs(now, conference);
    }

    fn subscribe(
        &mut self,
        now: Instant,
        conference: Arc<str>,
        offer: &str,
        relay: bool,
    ) -> Result<SessionStarted, EngineError> {
        let sdp =
            SdpOffer::from_sdp_string(offer).map_err(|e| EngineError::BadSdp(e.to_string()))?;
        let Some(conf) = self.confs.get(&conference) else {
            return Err(EngineError::NotLive);
        };
        if !conf.router.is_live() {
            return Err(EngineError::NotLive);
        }
        let (audio, video) = conf.router.codecs();
        let scan = sdp_scan::scan(offer);
        if !scan.has_audio && !scan.has_video {
            return Err(EngineError::BadSdp(
                "the offer has no audio or video section".into(),
            ));
        }
        let audio_ok = audio.is_some_and(|a| scan.audio == Some(a));
        let video_ok = video.is_some_and(|v| scan.video.contains(&v));
        let want = || {
            [audio.map(Codec::name), video.map(Codec::name)]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" + ")
        };
        if !audio_ok && !video_ok {
            return Err(EngineError::CodecMismatch(want()));
        }
        let video_codecs: Vec<Codec> = video.filter(|_| video_ok).into_iter().collect();
        // A viewer is measured (and adapted) when it can send transport-wide feedback and
        // there is video to adapt. A downstream relay's link is measured too, from a higher
        // start value: its layers are trimmed only once the estimate shows the link
        // cannot carry them.
        let adaptive = self
            .config
            .adaptation
            .filter(|_| video_ok && offer.contains("transport-wide-cc"))
            .map(|start| if relay { RELAY_START_BPS } else { start });
        let mut rtc = self.new_rtc(
            now,
            audio.filter(|_| audio_ok),
            &video_codecs,
            true,
            relay || adaptive.is_some(),
            adaptive,
        );
        let answer = rtc
            .sdp_api()
            .accept_offer(sdp)
            .map_err(|e| EngineError::BadSdp(e.to_string()))?;
        let mut tx_audio = None;
        let mut tx_video: [Option<TxStream>; Layer::MAX] = [None; Layer::MAX];
        let mut n_video = 0;
        for (kind, mid) in &scan.mids {
            let mid = Mid::from(mid.as_str());
            let Some(media) = rtc.media(mid) else {
                continue;
            };
            if !matches!(media.direction(), Direction::SendOnly | Direction::SendRecv) {
                continue;
            }
            // A viewer gets one video section; a relay consumer one per layer.
            let (slot, codec) = match kind.as_str() {
                "audio" => (&mut tx_audio, audio),
                "video" if n_video < if relay { Layer::MAX } else { 1 } => {
                    n_video += 1;
                    (&mut tx_video[n_video - 1], video)
                }
                _ => continue,
            };
            if slot.is_some() {
                continue;
            }
            let Some(codec) = codec else { continue };
            let Some(pt) = negotiated_pt(&rtc, mid, codec) else {
                continue;
            };
            let is_video = kind == "video";
            let Some(ssrc) = rtc.direct_api().stream_tx_by_mid(mid, None).map(|s| {
                if is_video {
                    s.set_rtx_cache(RTX_MAX_PACKETS, RTX_HISTORY, RTX_RATIO_CAP);
                    // A downstream relay's link is measured (its layers trimmed when it
                    // cannot carry them) but its video is not paced: str0m's leaky bucket
                    // runs at 1.1 × an estimate that sits near what the link is sent, so a
                    // keyframe took up to ~100 ms to cross each tier (per-hop transit p99
                    // 67 ms, docs/BENCHMARKS.md "Edge tree"). Viewers' last hops stay paced.
                    if relay {
                        s.set_unpaced(true);
                    }
                }
                s.ssrc()
            }) else {
                continue;
            };
            *slot = Some(TxStream { ssrc, pt, mid });
        }
        if tx_audio.is_none() && tx_video.iter().all(Option::is_none) {
            return Err(EngineError::CodecMismatch(want()));
        }
        let id = self.new_id();
        let sink = ViewerSink {
            relay,
            audio: tx_audio,
            video: tx_video,
            first_video_sent: false,
            max_layer: Layer((Layer::MAX - 1) as u8),
            paused: false,
            last_audio_at: None,
            last_video_at: None,
            delivery: Delivery::Pending,
            adaptive,
            desired_bps: 0,
            probed_at: None,
            sustain_bps: 0,
            target: None,
            estimator_resets: 0,
            on_top: false,
            // Relay links are not paced here (str0m's pacer at 1.1 × the estimate only).
            pacer: adaptive
                .filter(|_| !relay)
                .map(|start| Box::new(Pacer::new(start))),
        };
        let session = Session::new(id, conference.clone(), rtc, SessionRole::Viewer(sink), now);
        self.insert_session(now, session);
        if let Some(conf) = self.confs.get_mut(&conference) {
            conf.viewers.push(id);
        }
        self.stats.sessions_started.fetch_add(1, Relaxed);
        debug!(session = %id, %conference, relay, "consumer session created");
        Ok(SessionStarted {
            session: id,
            answer: answer.to_sdp_string(),
        })
    }

    /// The ICE client side: an offer to another relay for `conference` (audio, and one
    /// receive-only video section per layer: a relay consumer there sends layer `i` on
    /// section `i`).
    fn pull(&mut self, now: Instant, conference: Arc<str>) -> Result<SessionStarted, EngineError> {
        if self
            .confs
            .get(&conference)
            .is_some_and(|c| c.source.is_some() || c.mirror_of.is_some())
        {
            return Err(EngineError::AlreadyLive);
        }
        let mut rtc = self.new_rtc(
            now,
            Some(Codec::Opus),
            &[Codec::H264, Codec::Vp8],
            false,
            true,
            None,
        );
        let mut ingest = Ingest::new(None, None);
        ingest.upstream = true;
        let mut api = rtc.sdp_api();
        ingest.audio_mid = Some(api.add_media(
            str0m::media::MediaKind::Audio,
            Direction::RecvOnly,
            None,
            None,
            None,
        ));
        for _ in 0..Layer::MAX {
            ingest.video_mids.push(api.add_media(
                str0m::media::MediaKind::Video,
                Direction::RecvOnly,
                None,
                None,
                None,
            ));
        }
        let Some((offer, pending)) = api.apply() else {
            return Err(EngineError::BadSdp("nothing to offer".into()));
        };
        ingest.pending = Some(pending);
        let id = self.new_id();
        let session = Session::new(
            id,
            conference.clone(),
            rtc,
            SessionRole::Source(ingest),
            now,
        );
        self.insert_session(now, session);
        self.stats.sessions_started.fetch_add(1, Relaxed);
        info!(session = %id, %conference, "pulling from an upstream relay");
        Ok(SessionStarted {
            session: id,
            answer: offer.to_sdp_string(),
        })
    }

    fn accept(&mut self, now: Instant, id: SessionId, answer: &str) -> Result<(), EngineError> {
        let Some(s) = self.sessions.get_mut(&id) else {
            return Err(EngineError::UnknownSession);
        };
        let SessionRole::Source(ingest) = &mut s.role else {
            return Err(EngineError::NotOffering);
        };
        let Some(pending) = ingest.pending.take() else {
            return Err(EngineError::NotOffering);
        };
        let sdp = SdpAnswer::from_sdp_string(answer)
            .map_err(|e| EngineError::BadAnswer(e.to_string()))?;
        s.rtc
            .sdp_api()
            .accept_answer(pending, sdp)
            .map_err(|e| EngineError::BadAnswer(e.to_string()))?;
        let scan = sdp_scan::scan(answer);
        let audio = scan.audio;
        let video = scan.video.first().copied();
        ingest.audio = audio;
        ingest.video = video;
        let conference = s.conference.clone();
        self.queue_drain(id);
        if audio.is_none() && video.is_none() {
            self.end_session(now, id, EndReason::Closed);
            return Err(EngineError::NoSupportedCodec);
        }
        self.install_source(now, &conference, id, audio, video);
        Ok(())
    }

    fn set_video(
        &mut self,
        now: Instant,
        id: SessionId,
        max_layer: Layer,
        paused: bool,
    ) -> Result<(), EngineError> {
        let Some(s) = self.sessions.get_mut(&id) else {
            return Err(EngineError::UnknownSession);
        };
        let SessionRole::Viewer(v) = &mut s.role else {
            return Err(EngineError::UnknownSession);
        };
        if v.relay {
            return Err(EngineError::UnknownSession);
        }
        // Kept for a viewer that has not joined the router yet (before ICE and DTLS).
        v.max_layer = max_layer;
        v.paused = paused;
        let conference = s.conference.clone();
        self.outs.clear();
        if let Some(c) = self.confs.get_mut(&conference) {
            c.router.set_max_layer(ConsumerId(id.0), max_layer);
            c.router
                .set_paused(ConsumerId(id.0), paused, now, &mut self.outs);
        }
        self.apply_outputs(now, &conference);
        if paused {
            // What its pacer, the backlog (a join's replay) or str0m still holds would reach
            // it paused.
            self.drop_paced(id, true);
        }
        Ok(())
    }

    fn set_relay_layers(
        &mut self,
        now: Instant,
        id: SessionId,
        layers: [bool; Layer::MAX],
    ) -> Result<(), EngineError> {
        let Some(s) = self.sessions.get(&id) else {
            return Err(EngineError::UnknownSession);
        };
        if !matches!(&s.role, SessionRole::Viewer(v) if v.relay) {
            return Err(EngineError::UnknownSession);
        }
        let conference = s.conference.clone();
        self.outs.clear();
        if let Some(c) = self.confs.get_mut(&conference) {
            c.router
                .set_relay_layers(ConsumerId(id.0), layers, now, &mut self.outs);
        }
        self.apply_outputs(now, &conference);
        Ok(())
    }

    fn trickle(&mut self, session: SessionId, candidates: Vec<String>) -> Result<(), EngineError> {
        let Some(s) = self.sessions.get_mut(&session) else {
            return Err(EngineError::UnknownSession);
        };
        for c in candidates {
            let c = c
                .trim()
                .trim_start_matches("a=")
                .trim_start_matches("candidate:");
            match Candidate::from_sdp_string(&format!("candidate:{c}")) {
                Ok(cand) => s.rtc.add_remote_candidate(cand),
                Err(e) => debug!("ignoring trickled candidate {c:?}: {e}"),
            }
        }
        self.queue_drain(session);
        Ok(())
    }

    fn insert_session(&mut self, now: Instant, mut session: Session) {
        let id = session.id;
        // The negotiation's own outputs (none to send for an answerer).
        drain(
            &mut session,
            now,
            false,
            &mut self.transmits,
            &mut Vec::new(),
            |_| {},
        );
        let key = self.timers.key(session.timeout);
        session.scheduled = Some((session.timeout, key));
        self.timers.push(key, id);
        self.by_ufrag.insert(session.ufrag.clone(), id);
        self.sessions.insert(id, Box::new(session));
    }

    /// The viewer joins the fan-out once ICE+DTLS are up, so its GOP replay goes out
    /// immediately instead of into a queue.
    fn attach_viewer(&mut self, now: Instant, id: SessionId) {
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        let conference = s.conference.clone();
        // A relay consumer (another relay pulling) gets every layer, each on its own
        // section; a viewer one layer.
        let relay = matches!(&s.role, SessionRole::Viewer(v) if v.relay);
        let wanted = match &s.role {
            SessionRole::Viewer(v) if !v.relay => Some((v.max_layer, v.paused)),
            _ => None,
        };
        let adaptive = match &s.role {
            SessionRole::Viewer(v) => v.adaptive,
            _ => None,
        };
        if adaptive.is_some()
            && let Some(s) = self.sessions.get_mut(&id)
            && let SessionRole::Viewer(v) = &mut s.role
            && let Some(p) = v.pacer.as_deref_mut()
        {
            // The join's GOP replay is paced at a multiple of the viewer's estimate.
            p.start_replay();
        }
        let Some(conf) = self.confs.get_mut(&conference) else {
            return;
        };
        self.outs.clear();
        let n_replays = conf.router.n_gop_replays();
        if relay {
            conf.router
                .add_relay_consumer(ConsumerId(id.0), now, &mut self.outs);
            if let Some(start) = adaptive {
                conf.router.measure_relay(ConsumerId(id.0), start, now);
            }
        } else if let Some(start) = adaptive {
            conf.router.use_fixed_threshold(self.config.fixed_threshold);
            conf.router
                .add_adaptive_viewer(ConsumerId(id.0), start, now, &mut self.outs);
            // The layer it joins on is its first target: the first switch down from it is a
            // switch down (its pacer's held video dropped, its resend history emptied).
            let target = conf
                .router
                .allocation(ConsumerId(id.0))
                .and_then(|a| a.target);
            if let Some(s) = self.sessions.get_mut(&id)
                && let SessionRole::Viewer(v) = &mut s.role
            {
                v.target = target;
            }
        } else {
            conf.router
                .add_viewer(ConsumerId(id.0), now, &mut self.outs);
        }
        // A `SetVideo` that came before the viewer joined: a paused viewer gets no replay; a
        // lower cap takes over at that layer's next keyframe.
        if let Some((max_layer, paused)) = wanted
            && (paused || max_layer.index() < Layer::MAX - 1)
        {
            conf.router.set_max_layer(ConsumerId(id.0), max_layer);
            if paused {
                self.outs.forwards.retain(|f| f.kind != MediaKind::Video);
                conf.router
                    .set_paused(ConsumerId(id.0), true, now, &mut self.outs);
            }
        }
        // A counter over every conference: add this join's replays (0 or 1).
        self.stats
            .gop_replays
            .fetch_add(conf.router.n_gop_replays() - n_replays, Relaxed);
        // The replay is parked and released in slices with the turn's other replays.
        let forwards = std::mem::take(&mut self.outs.forwards);
        for f in forwards {
            if let Some(f) = self.backlog.park(f) {
                self.outs.forwards.push(f);
            }
        }
        self.apply_outputs(now, &conference);
    }

    fn end_session(&mut self, now: Instant, id: SessionId, reason: EndReason) {
        let Some(mut s) = self.sessions.remove(&id) else {
            return;
        };
        s.rtc.disconnect();
        drain(
            &mut s,
            now,
            false,
            &mut self.transmits,
            &mut Vec::new(),
            |_| {},
        );
        for a in &s.addrs {
            if self.by_addr.get(a) == Some(&id) {
                self.by_addr.remove(a);
            }
        }
        self.by_ufrag.remove(&s.ufrag);
        self.stats.sessions_ended.fetch_add(1, Relaxed);
        let role = s.role();
        let conference = s.conference.clone();
        info!(session = %id, %conference, ?role, ?reason, "session ended");
        self.emit(EngineEvent::SessionEnded {
            conference: conference.clone(),
            session: id,
            role,
            reason,
        });
        let Some(conf) = self.confs.get_mut(&conference) else {
            return;
        };
        let mut broadcast_ended = false;
        match role {
            Role::Subscriber | Role::Relay => {
                conf.counters.ended_sent_bytes += s.readings.media_bytes;
                conf.viewers.retain(|x| *x != id);
                conf.router.remove_consumer(ConsumerId(id.0));
                self.backlog.remove(ConsumerId(id.0));
            }
            Role::Publisher => {
                if conf.source == Some(id) {
                    conf.source = None;
                    conf.router.source_ended();
                    conf.source_gone_at = Some(now);
                    conf.router.remove_consumer(ConsumerId(RECORD_CONSUMER));
                    for shard in 0..self.config.n_shards {
                        conf.router
                            .remove_consumer(ConsumerId(SHARD_CONSUMER | shard as u128));
                        if shard != self.config.shard {
                            to_shard(
                                &mut self.shard_sink,
                                &mut self.shard_out,
                                shard,
                                ShardMessage::SourceEnded {
                                    conference: conference.clone(),
                                },
                            );
                        }
                    }
                    broadcast_ended = true;
                    if self.config.record {
                        self.record_out.push_back(RecordItem::Ended {
                            broadcast: id,
                            at: now,
                        });
                    }
                }
            }
        }
        if conf.is_empty() {
            self.confs.remove(&conference);
        }
        if broadcast_ended {
            self.emit(EngineEvent::BroadcastEnded {
                conference,
                session: id,
            });
        }
    }

    // ------------------------------------------------------------------ network

    /// `destination`: an announced candidate's address (`udp::candidate_destination`);
    /// `local`: the local IP the datagram arrived at, when replies must name their source
    /// (`Relay::choose_source`).
    fn on_datagram(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        local: Option<IpAddr>,
        buf: &[u8],
    ) {
        self.stats.rx_datagrams.fetch_add(1, Relaxed);
        self.stats.rx_bytes.fetch_add(buf.len() as u64, Relaxed);
        let Ok(receive) = Receive::new(proto, source, destination, buf) else {
            self.stats.dropped(RxDrop::NotWebrtc);
            return;
        };
        let id = match self.by_addr.get(&source) {
            Some(id) => *id,
            None => {
                // A new address: only a STUN binding request naming a session's ufrag
                // may introduce it (an O(1) lookup, not a scan of every session). An ICE
                // client's own destinations were admitted when its checks left.
                if !crate::stun::is_stun(buf) {
                    self.stats.dropped(RxDrop::UnknownAddress);
                    return;
                }
                let Some(id) = crate::stun::local_ufrag(buf)
                    .and_then(|u| self.by_ufrag.get(u))
                    .copied()
                else {
                    self.stats.dropped(RxDrop::UnknownUfrag);
                    return;
                };
                let Some(s) = self.sessions.get_mut(&id) else {
                    self.stats.dropped(RxDrop::UnknownUfrag);
                    return;
                };
                if !s.rtc.accepts(&Input::Receive(now, receive)) {
                    self.stats.dropped(RxDrop::StunRefused);
                    return;
                }
                admit_address(s, &mut self.by_addr, source);
                id
            }
        };
        let Ok(receive) = Receive::new(proto, source, destination, buf) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.last_rx = now;
        if let Some(local) = local {
            // Before the input: its replies (a STUN response) are drained right after.
            note_reply_from(&mut s.reply_from, source, destination.ip(), local);
        }
        if let Err(e) = s.rtc.handle_input(Input::Receive(now, receive)) {
            self.stats.dropped(RxDrop::Rejected);
            debug!(session = %id, "input rejected: {e}");
        }
        self.queue_drain(id);
        self.process_queue(now);
        if self.pending_writes >= DRAIN_AT {
            self.drain_dirty();
        }
    }

    /// Drains every session written to since its last drain (see [`DRAIN_AT`]).
    fn drain_dirty(&mut self) {
        while !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty);
            let now = self.last_now;
            for id in dirty.drain(..) {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.dirty = false;
                    // str0m's pacer sees what was written only from its next timeout
                    // (it snapshots the send queues there): without this, forwards would
                    // wait for the session's next timer, about 1 ms (the driver sleeps in
                    // milliseconds) — the per-hop transit's p50 before this line.
                    if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                        debug!(session = %id, "timeout input failed: {e}");
                    }
                }
                self.queue_drain(id);
            }
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
            self.pending_writes = 0;
            self.process_queue(self.last_now);
        }
    }

    /// A measured viewer's pacer follows its allocator's pacing rate (the lower of str0m's
    /// averaged estimate and its estimator's latest figure: on a step down the average lags
    /// by seconds, and a gate sized on it let str0m be handed ~20 kB more than a 400 kbit/s
    /// link drains in its 50 ms).
    fn pace(&mut self, now: Instant, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let SessionRole::Viewer(v) = &mut s.role else {
            return;
        };
        let Some(p) = v.pacer.as_deref_mut() else {
            return;
        };
        let Some(c) = self.confs.get(&s.conference) else {
            return;
        };
        if let Some(rate) = c.router.pace_bps(ConsumerId(id.0), now) {
            p.set_rate(rate);
        }
        p.set_throttle(c.router.throttle_bps(ConsumerId(id.0), now));
    }

    fn on_timers(&mut self, now: Instant) {
        // Bounded, so a session whose deadline stays in the past cannot starve the loop;
        // what is left runs on the next turn (its deadline makes the loop wake at once).
        let mut budget = self.sessions.len() * 2 + 64;
        let now_key = self.timers.key(now);
        while let Some((k, id)) = self.timers.peek() {
            if k > now_key || budget == 0 {
                break;
            }
            budget -= 1;
            self.timers.pop();
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if s.scheduled.map(|(_, key)| key) != Some(k) {
                continue; // stale entry: the session rescheduled since
            }
            s.scheduled = None;
            if let Err(e) = session::timeout(&mut s.rtc, now) {
                debug!(session = %id, "timeout input failed: {e}");
            }
            self.drain_session(id, true);
        }
        self.process_queue(now);
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.tick(now);
        }
    }

    /// Housekeeping: the health policy (`health`) applied to every session.
    fn tick(&mut self, now: Instant) {
        let liveness = self.config.liveness;
        let dead: Vec<(SessionId, EndReason)> = self
            .sessions
            .values()
            .filter_map(|s| {
                liveness
                    .verdict(s.connected, s.last_rx, s.rtc.is_alive(), now)
                    .map(|r| (s.id, r))
            })
            .collect();
        for (id, reason) in dead {
            self.end_session(now, id, reason);
        }
        // What each viewer receives.
        for s in self.sessions.values_mut() {
            let SessionRole::Viewer(v) = &mut s.role else {
                continue;
            };
            if !s.connected {
                continue;
            }
            let state = health::delivery(
                v.delivery,
                v.video.iter().any(Option::is_some),
                v.last_audio_at,
                v.last_video_at,
                self.backlog.has_parked(ConsumerId(s.id.0)),
                now,
            );
            if state != v.delivery {
                v.delivery = state;
                self.events.push_back(EngineEvent::Delivery {
                    conference: s.conference.clone(),
                    session: s.id,
                    state,
                });
            }
        }
        // Viewers whose source is gone for good.
        let mut orphaned = Vec::new();
        for c in self.confs.values() {
            if health::orphaned(c.source_gone_at, now) {
                orphaned.extend(c.viewers.iter().copied());
            }
        }
        for id in orphaned {
            self.end_session(now, id, EndReason::SourceGone);
        }
        // Keyframe retries for waiting viewers; allocations re-evaluated (hold times pass,
        // layer bitrates change).
        let confs: Vec<Arc<str>> = self.confs.keys().cloned().collect();
        let mut changed = std::mem::take(&mut self.reallocated);
        for conference in confs {
            self.outs.clear();
            if let Some(c) = self.confs.get_mut(&conference) {
                c.router.tick(now, &mut self.outs);
                c.router.reallocate(now, &mut self.outs, &mut changed);
            }
            self.apply_outputs(now, &conference);
        }
        for (id, a) in changed.drain(..) {
            self.on_allocation(SessionId(id.0), a);
        }
        self.reallocated = changed;
        // Probing targets follow the layer bitrates; a viewer below the top layer (or
        // paused) whose estimate has not reached its probe target has its exact target
        // written again every REPROBE_EVERY, past `set_desired`'s 5 % filter. It is not a
        // rise: str0m 0.25 only stores the target (`Bwe::set_bitrate`) and its probe
        // controller reads it at its own timeout. The rise that makes str0m probe a paused
        // viewer is the allocator's dip (`alloc::REPROBE_EVERY`, a step apart); the same dip
        // for viewers below the top layer was measured and dropped (docs/BENCHMARKS.md).
        // Each conference's top active layer, measured once for all its viewers.
        let tops: HashMap<&Arc<str>, Option<Layer>> = self
            .confs
            .iter()
            .map(|(id, c)| {
                let top = c
                    .router
                    .layers(now)
                    .iter()
                    .rposition(|l| l.active)
                    .map(|i| Layer(i as u8));
                (id, top)
            })
            .collect();
        for s in self.sessions.values_mut() {
            let SessionRole::Viewer(v) = &mut s.role else {
                continue;
            };
            if v.adaptive.is_none() || !s.connected {
                continue;
            }
            let Some(c) = self.confs.get(&s.conference) else {
                continue;
            };
            let Some(a) = c.router.allocation(ConsumerId(s.id.0)) else {
                continue;
            };
            set_desired(s, a.desired_bps, a.sustain_bps);
            reset_estimator(s, &a);
            let top = tops.get(&s.conference).copied().flatten();
            let below_top = match a.target {
                Some(Target::Layer(l)) => Some(l) < top,
                _ => true,
            };
            let SessionRole::Viewer(v) = &mut s.role else {
                continue;
            };
            v.on_top = !below_top;
            let due = v
                .probed_at
                .is_none_or(|t| now.saturating_duration_since(t) >= REPROBE_EVERY);
            // On the top layer the target is that layer's own need times the headroom: a
            // probe is asked for only while the estimate is under the need itself (the
            // warm-up holds the layer while a join's estimate is still climbing; measured: an
            // unshaped viewer's estimate at 0.25–0.8 Mbit/s for 4 s after its join, then a
            // needless switch down at the end of the warm-up).
            let short = a.estimate_bps.is_some_and(|e| {
                if below_top {
                    e < a.desired_bps
                } else {
                    (e as f64) * hallcast_core::alloc::PROBE_HEADROOM < a.desired_bps as f64
                }
            });
            if due && short {
                v.probed_at = Some(now);
                let sustain = Bitrate::bps(v.sustain_bps);
                s.rtc
                    .bwe()
                    .set_bitrate(sustain, Bitrate::bps(a.desired_bps));
            }
        }
        self.process_queue(now);
    }

    /// Writes the next slice of parked replays (see [`Backlog`]).
    fn release_backlog(&mut self, now: Instant) {
        if !self.backlog.is_empty() {
            let mut released = std::mem::take(&mut self.released);
            self.backlog
                .release(BACKLOG_BUDGET, BACKLOG_PER_VISIT, &mut released);
            for f in released.drain(..) {
                self.write_forward(now, f);
            }
            self.released = released;
            self.process_queue(now);
        }
        // Gauges: parked packets may also leave with their viewer or be dropped when live
        // video queues behind a full backlog, so they are read here every turn.
        self.stats
            .backlog_packets
            .store(self.backlog.len() as u64, Relaxed);
        self.stats
            .backlog_dropped
            .store(self.backlog.n_dropped(), Relaxed);
    }

    // ------------------------------------------------------------------ media path

    fn queue_drain(&mut self, id: SessionId) {
        self.drain_session(id, false);
    }

    /// [`drain`] for one session; `pacer_turn` when its own deadline fired.
    fn drain_session(&mut self, id: SessionId, pacer_turn: bool) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let queue = &mut self.queue;
        drain(
            s,
            self.last_now,
            pacer_turn,
            &mut self.transmits,
            &mut self.new_destinations,
            |e| match e {
                Event::RtpPacket(_)
                | Event::KeyframeRequest(_)
                | Event::Connected
                | Event::IceConnectionStateChange(_)
                | Event::PeerStats(_)
                | Event::MediaEgressStats(_)
                | Event::EgressBitrateEstimate(_)
                | Event::Closed => queue.push_back((id, e)),
                _ => {}
            },
        );
        // An ICE client's checks go to the other relay's candidates: datagrams from there
        // are this session's.
        for d in self.new_destinations.drain(..) {
            if !s.addrs.contains(&d) && !self.by_addr.contains_key(&d) {
                s.addrs.push(d);
                self.by_addr.insert(d, id);
            }
        }
        // One heap entry per deadline change, not per drain: a viewer drained for every
        // forwarded packet keeps the same deadline most of the time.
        if s.scheduled.map(|(t, _)| t) != Some(s.timeout) {
            let key = self.timers.key(s.timeout);
            s.scheduled = Some((s.timeout, key));
            self.timers.push(key, s.id);
        }
    }

    fn process_queue(&mut self, now: Instant) {
        while let Some((id, event)) = self.queue.pop_front() {
            match event {
                Event::RtpPacket(pkt) => self.on_rtp(now, id, pkt),
                Event::KeyframeRequest(req) => {
                    self.stats
                        .keyframe_requests_downstream
                        .fetch_add(1, Relaxed);
                    let Some(s) = self.sessions.get(&id) else {
                        continue;
                    };
                    let conference = s.conference.clone();
                    // A relay consumer asks per layer: the section it asked on names it.
                    let layer = match &s.role {
                        SessionRole::Viewer(v) if v.relay => v
                            .video
                            .iter()
                            .position(|t| t.is_some_and(|t| t.mid == req.mid))
                            .map(|i| Layer(i as u8)),
                        _ => None,
                    };
                    self.outs.clear();
                    if let Some(c) = self.confs.get_mut(&conference) {
                        c.counters.keyframe_requests_downstream += 1;
                        c.router
                            .on_keyframe_request(ConsumerId(id.0), layer, now, &mut self.outs);
                    }
                    self.apply_outputs(now, &conference);
                }
                Event::Connected => {
                    let Some(s) = self.sessions.get_mut(&id) else {
                        continue;
                    };
                    s.connected = true;
                    let (conference, role) = (s.conference.clone(), s.role());
                    debug!(session = %id, ?role, "connected");
                    self.emit(EngineEvent::SessionConnected {
                        conference,
                        session: id,
                        role,
                    });
                    if role != Role::Publisher {
                        self.attach_viewer(now, id);
                    }
                }
                Event::PeerStats(p) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        let viewer = matches!(s.role, SessionRole::Viewer(_));
                        s.readings.rtt = p.rtt.or(s.readings.rtt);
                        let loss = if viewer {
                            p.egress_loss_fraction
                        } else {
                            p.ingress_loss_fraction
                        };
                        s.readings.loss = loss.or(s.readings.loss);
                        s.readings.transport_wide |= viewer && loss.is_some();
                        s.readings.media_bytes = if viewer { p.bytes_tx } else { p.bytes_rx };
                        // A measured viewer's round trip by its transport-wide feedback
                        // (the link's queue counts): the loss settle, sustained probes, a
                        // growing queue.
                        if viewer && let Some(rtt) = p.rtt {
                            let conference = s.conference.clone();
                            if let Some(c) = self.confs.get_mut(&conference) {
                                c.router.on_rtt(ConsumerId(id.0), rtt, p.rtt_sent_at, now);
                            }
                        }
                        // A measured viewer's estimator's own latest figure (the
                        // estimate events are a 3 s average of them): the pacer and how
                        // far a switch down goes.
                        if viewer && let Some(raw) = p.bwe_tx {
                            let conference = s.conference.clone();
                            if let Some(c) = self.confs.get_mut(&conference) {
                                c.router
                                    .on_raw_estimate(ConsumerId(id.0), raw.as_u64(), now);
                            }
                            self.pace(now, id);
                        }
                        // A measured viewer's transport-wide loss over the last second
                        // (padding included: a sustained probe's losses count).
                        if viewer && let Some(l) = p.egress_loss_fraction {
                            self.on_loss(now, id, l);
                        }
                    }
                }
                // A consumer's RTT and loss come from its receiver reports, per stream (a
                // viewer's from its transport-wide feedback once it has given them).
                Event::MediaEgressStats(m) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        if !s.readings.transport_wide {
                            s.readings.rtt = m.rtt.or(s.readings.rtt);
                            s.readings.loss = m.loss.or(s.readings.loss);
                        }
                        if matches!(s.role, SessionRole::Viewer(_))
                            && let Some(l) = m.loss
                        {
                            self.on_loss(now, id, l);
                        }
                    }
                }
                // A measured viewer's bandwidth estimate: transport-wide feedback into
                // str0m's delay- and loss-based estimator, or the receiver's REMB.
                Event::EgressBitrateEstimate(kind) => {
                    let estimate = match kind {
                        BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. } => {
                            estimate.as_u64()
                        }
                        _ => continue,
                    };
                    self.stats.bwe_estimates.fetch_add(1, Relaxed);
                    let Some(s) = self.sessions.get_mut(&id) else {
                        continue;
                    };
                    let conference = s.conference.clone();
                    self.outs.clear();
                    let changed = self.confs.get_mut(&conference).and_then(|c| {
                        c.router
                            .on_estimate(ConsumerId(id.0), estimate, now, &mut self.outs)
                    });
                    self.pace(now, id);
                    self.apply_outputs(now, &conference);
                    if let Some(a) = changed {
                        self.on_allocation(id, a);
                    } else {
                        // A sustained probe starts or ends without a switch.
                        self.follow_probe(id);
                    }
                }
                // A pull's RTT comes from its parent's extended reports (DLRR), when sent.
                Event::MediaIngressStats(m) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.readings.rtt = m.rtt.or(s.readings.rtt);
                    }
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                | Event::Closed => {
                    self.end_session(now, id, EndReason::Closed);
                }
                _ => {}
            }
        }
    }

    fn on_rtp(&mut self, now: Instant, id: SessionId, pkt: Box<str0m::rtp::RtpPacket>) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let SessionRole::Source(ingest) = &mut s.role else {
            return;
        };
        self.stats.rx_media_packets.fetch_add(1, Relaxed);
        let ssrc = pkt.header.ssrc;
        let (kind, layer) = match ingest.ssrcs.get(&ssrc) {
            Some(x) => *x,
            None => {
                let Some((mid, rid)) = s
                    .rtc
                    .direct_api()
                    .stream_rx(&ssrc)
                    .map(|r| (r.mid(), r.rid()))
                else {
                    return;
                };
                let Some(kl) = ingest.layer_of(mid, rid) else {
                    return;
                };
                ingest.ssrcs.insert(ssrc, kl);
                kl
            }
        };
        let codec = match kind {
            MediaKind::Audio => ingest.audio,
            MediaKind::Video => ingest.video,
        };
        let Some(codec) = codec else { return };
        let source = SourcePacket {
            kind,
            layer,
            seq: *pkt.seq_no,
            ts: pkt.header.timestamp,
            marker: pkt.header.marker,
            keyframe_start: codec.starts_keyframe(&pkt.payload),
            payload: pkt.payload,
            arrival: pkt.timestamp,
        };
        if source.keyframe_start {
            debug!(session = %id, layer = layer.0, "keyframe from the source");
        }
        if let Some(p) = ingest.preflight.as_mut() {
            // RFC 6464: str0m gives the level as -dBov.
            let level = pkt.header.ext_vals.audio_level.map(i8::unsigned_abs);
            p.on_packet(&source, level);
        }
        let start_recording_video = match ingest.record_waits_top {
            Some((top, deadline))
                if kind == MediaKind::Video
                    && ((layer == top && source.keyframe_start) || source.arrival >= deadline) =>
            {
                ingest.record_waits_top = None;
                true
            }
            _ => false,
        };
        let conference = s.conference.clone();
        self.outs.clear();
        if let Some(c) = self.confs.get_mut(&conference) {
            if start_recording_video {
                // Before the packet: a top-layer keyframe starts the recorder's video.
                c.router
                    .set_paused(ConsumerId(RECORD_CONSUMER), false, now, &mut self.outs);
            }
            c.router.on_packet(&source, &mut self.outs);
        }
        self.apply_live_outputs(now, &conference);
    }

    /// Writes one forward into its viewer's stream, through the viewer's pacer when it has
    /// one (a measured viewer): a replay the pacer holds leaves from [`Relay::release_paced`].
    fn write_forward(&mut self, now: Instant, f: Forward) {
        let id = SessionId(f.sub.0);
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let SessionRole::Viewer(v) = &mut s.role else {
            return;
        };
        if self.live
            && let Some(tx) = v.stream_for(&f)
        {
            if s.in_flight.len() >= MAX_IN_FLIGHT {
                s.in_flight.pop_front();
            }
            s.in_flight.push_back(InFlight {
                ssrc: *tx.ssrc,
                seq: f.seq as u16,
                arrival: f.arrival,
            });
        }
        let f = match v.pacer.as_deref_mut() {
            None => f,
            Some(p) => {
                // Asked only when it can matter: audio never waits, and video behind a
                // queue waits whatever str0m holds (one stream lookup saved per packet).
                let held = match f.kind {
                    MediaKind::Video if p.queued() == 0 => transport_holds(&mut s.rtc, v.video[0]),
                    _ => 0,
                };
                match p.push(now, f, held) {
                    Some(f) => f,
                    None => {
                        if p.queued() == 1 {
                            self.paced.push(id);
                        }
                        return;
                    }
                }
            }
        };
        self.write_stream(now, f);
    }

    /// Drops the video a viewer's pacer holds, and what it has parked in the backlog (a
    /// pause, a switch down on a congested link, a queue over [`PACED_MAX`]); never called
    /// while forwards of the router's outputs are being written (their numbers would
    /// collide with the rewound ones): its stream resumes at a keyframe of its target
    /// layer, numbered from the first dropped packet, without a gap.
    /// Returns whether the pacer held video (the link was congested).
    ///
    /// `unsent`: what str0m holds of the video and has not sent yet goes too (its pacer's
    /// queue, up to [`hallcast_core::pacer::GATE_BYTES`] and a frame, and the resends it
    /// scheduled), and the viewer's NACKs go unanswered until the video resumes (str0m patch
    /// `StreamTx::drop_unsent`). For a pause (for bandwidth or the viewer's wish): that video
    /// and those repairs would reach a paused viewer, ahead of its audio, for frames it
    /// will not show (the video resumes at a keyframe). Measured in tests/adaptation.rs
    /// (docs/bench-data/2026-12-05-issue11-calm): paused on the 100 kbit/s link 1.8–2.3 s
    /// after its step, a viewer was still sent 31–73 kbit/s of media for 2–3 s against the
    /// audio's 16–22, its queue reading 780–840 ms all that time; with the unsent video
    /// dropped but repairs still answered, 90–108 kbit/s for a second in one run.
    fn drop_paced(&mut self, id: SessionId, unsent: bool) -> bool {
        let Some(s) = self.sessions.get_mut(&id) else {
            return false;
        };
        let in_transport = match &mut s.role {
            SessionRole::Viewer(v) if unsent => {
                let tx = v.video[0];
                let d = tx.and_then(|tx| {
                    s.rtc
                        .direct_api()
                        .stream_tx(&tx.ssrc)
                        .and_then(|st| st.drop_unsent())
                });
                d.map(|(seq, n)| (*seq, n))
            }
            _ => None,
        };
        let dropped = match &mut s.role {
            SessionRole::Viewer(v) => v.pacer.as_deref_mut().and_then(Pacer::drop_queued),
            _ => None,
        };
        let conference = s.conference.clone();
        // Video still parked in the backlog (a replay not yet released, live video behind
        // it) comes after what the pacer held: it goes too, or it would leave later under
        // numbers the restarted stream reuses (the receiver's SRTP drops such packets as
        // replays, silently: no gap, no NACK, no picture).
        let parked = self.backlog.drop_parked(ConsumerId(id.0));
        let held = match (dropped, parked) {
            (Some(d), Some((_, n))) => Some((d.first_seq, d.packets + n)),
            (Some(d), None) => Some((d.first_seq, d.packets)),
            (None, p) => p,
        };
        // What str0m held was written before what the pacer and the backlog hold.
        let Some((first_seq, packets)) = (match (in_transport, held) {
            (Some((seq, n)), Some((first, m))) => Some((seq.min(first), n + m)),
            (t, h) => t.or(h),
        }) else {
            return false;
        };
        self.stats.paced_dropped.fetch_add(packets as u64, Relaxed);
        self.outs.clear();
        if let Some(c) = self.confs.get_mut(&conference) {
            c.router
                .video_dropped(ConsumerId(id.0), first_seq, self.last_now, &mut self.outs);
        }
        self.apply_outputs(self.last_now, &conference);
        dropped.is_some()
    }

    /// A viewer's video switched down on a congested link: what was sent of the old layer
    /// is not repaired any more (str0m's resend history is emptied), so the lower layer's
    /// keyframe does not queue behind repairs of frames nobody will show. The repair budget
    /// ([`RTX_RATIO_CAP`] of what was sent over the last second) starts afresh too: a second
    /// mostly of the old layer would otherwise license repairs of several times the new
    /// layer's rate. Measured in tests/adaptation.rs (the demo's viewer, 1.8 Mbit/s top layer,
    /// stepped to 400 kbit/s): in the 0.5 s after the switch, 33 kB of retransmissions —
    /// what was still sent of the old layer and the new keyframe, dropped by the full queue,
    /// asked for again every ~100 ms by a browser that expects them sooner than a queued link
    /// delivers — against ~20 kB of new media.
    fn forget_sent_video(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let SessionRole::Viewer(v) = &s.role else {
            return;
        };
        if let Some(tx) = v.video[0]
            && let Some(stream) = s.rtc.direct_api().stream_tx(&tx.ssrc)
        {
            // (Without a cap, str0m drops its byte counts; with one, it starts them anew.)
            stream.set_rtx_cache(RTX_MAX_PACKETS, RTX_HISTORY, None);
            stream.set_rtx_cache(RTX_MAX_PACKETS, RTX_HISTORY, RTX_RATIO_CAP);
        }
    }

    /// Releases what the measured viewers' pacers allow now (joiners' replays, video the
    /// gate held).
    fn release_paced(&mut self, now: Instant) {
        if self.paced.is_empty() {
            return;
        }
        let mut paced = std::mem::take(&mut self.paced);
        let mut out = std::mem::take(&mut self.paced_out);
        let mut overfull = Vec::new();
        paced.retain(|&id| {
            let Some(s) = self.sessions.get_mut(&id) else {
                return false;
            };
            let SessionRole::Viewer(v) = &mut s.role else {
                return false;
            };
            let Some(p) = v.pacer.as_deref_mut() else {
                return false;
            };
            p.poll(now, transport_holds(&mut s.rtc, v.video[0]), &mut out);
            let keep = p.queued() > 0;
            // A joiner's replay is a whole cached GOP (a 10 s GOP of a 2 Mbit/s layer is
            // ~2 000 packets): the queue is long by design while it drains.
            let max = if p.replaying() {
                PACED_MAX_REPLAYING
            } else {
                PACED_MAX
            };
            if p.queued() > max {
                // A link that has stopped taking video: what waits would only arrive late.
                overfull.push(id);
            }
            for f in out.drain(..) {
                self.write_stream(now, f);
            }
            keep
        });
        // Viewers that started queueing while this ran.
        paced.append(&mut self.paced);
        self.paced = paced;
        self.paced_out = out;
        // Outside the loop over forwards: the viewer restarts at a keyframe.
        for id in overfull {
            if self.drop_paced(id, false) {
                self.forget_sent_video(id);
            }
        }
    }

    /// Writes one forward into its viewer's stream now.
    fn write_stream(&mut self, now: Instant, f: Forward) {
        let id = SessionId(f.sub.0);
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let SessionRole::Viewer(v) = &mut s.role else {
            return;
        };
        match f.kind {
            MediaKind::Audio => v.last_audio_at = Some(now),
            MediaKind::Video => v.last_video_at = Some(now),
        }
        let Some(tx) = v.stream_for(&f) else { return };
        let unmeasured = v.adaptive.is_none();
        if f.kind == MediaKind::Video && !v.first_video_sent {
            v.first_video_sent = true;
            let after = now.saturating_duration_since(s.created);
            self.events.push_back(EngineEvent::FirstVideoSent {
                conference: s.conference.clone(),
                session: id,
                after,
            });
        }
        // A viewer without an estimator (adaptation off) has no pacer to wait for: the
        // packet is protected and queued for the socket now (str0m patch
        // `Rtc::send_rtp_now`), without the timeout and the walk of the whole session a
        // write otherwise takes in `drain_dirty`. Its deadlines do not move, so it is not
        // marked dirty.
        if unmeasured {
            let transmits = &mut self.transmits;
            let (reply_from, in_flight) = (&s.reply_from, &mut s.in_flight);
            let sent = s.rtc.send_rtp_now(now, tx.ssrc, rtp_write(tx, f), |t| {
                let contents: Vec<u8> = t.contents.into();
                transmits.push_back(Transmit {
                    destination: t.destination,
                    source: reply_source(reply_from, t.destination, t.source.ip()),
                    arrival: departure(in_flight, &contents),
                    contents,
                    tcp: t.proto == str0m::net::Protocol::Tcp,
                });
            });
            match sent {
                Ok(()) => {
                    self.stats.forwarded_packets.fetch_add(1, Relaxed);
                    return;
                }
                // Not this way (not yet set up, or a packet before it still queued).
                Err(write) => {
                    let mut api = s.rtc.direct_api();
                    let Some(stream) = api.stream_tx(&tx.ssrc) else {
                        return;
                    };
                    stream.write_rtp(write);
                }
            }
        } else {
            // Written here, not through a helper shared with the branch above: one more move
            // of the write (≥ 320 bytes) per copy showed in the instruction count (+54
            // instructions of `memcpy` per packet with adaptation on).
            let mut api = s.rtc.direct_api();
            let Some(stream) = api.stream_tx(&tx.ssrc) else {
                return;
            };
            stream.write_rtp(rtp_write(tx, f));
        }
        self.stats.forwarded_packets.fetch_add(1, Relaxed);
        if !s.dirty {
            s.dirty = true;
            self.dirty.push(id);
        }
        self.pending_writes += 1;
    }

    /// [`Relay::apply_outputs`] for the router's outputs of a live source packet: the
    /// forwards written now are transit samples.
    fn apply_live_outputs(&mut self, now: Instant, conference: &Arc<str>) {
        self.live = true;
        self.apply_outputs(now, conference);
        self.live = false;
    }

    /// Writes the router's outputs: forwards into viewer streams (or behind their viewer's
    /// parked replay, or to another shard), keyframe requests to the producer's source.
    fn apply_outputs(&mut self, now: Instant, conference: &Arc<str>) {
        let mut outs = std::mem::take(&mut self.outs);
        // The other shards' copies leave first, wherever their relay consumers sit in the
        // router (after the viewers that stayed through a publisher's reconnect, for one):
        // with a sink, that shard fans them out while this one writes its own
        // (`set_shard_sink`). Taken out of the list, in order, the rest keeping theirs.
        for f in outs
            .forwards
            .extract_if(.., |f| shard_consumer(f.sub).is_some())
        {
            if let Some(shard) = shard_consumer(f.sub) {
                to_shard(
                    &mut self.shard_sink,
                    &mut self.shard_out,
                    shard,
                    ShardMessage::Packet {
                        conference: conference.clone(),
                        packet: f.into_source(),
                    },
                );
            }
        }
        // The recorder's broadcast (this conference's local source), looked up once per call.
        let mut recorded: Option<Option<SessionId>> = None;
        for f in outs.forwards.drain(..) {
            if f.sub.0 == RECORD_CONSUMER {
                let broadcast = *recorded
                    .get_or_insert_with(|| self.confs.get(conference).and_then(|c| c.source));
                if let Some(broadcast) = broadcast {
                    self.record_out.push_back(RecordItem::Packet {
                        broadcast,
                        packet: f.into_source(),
                    });
                }
                continue;
            }
            if let Some(f) = self.backlog.admit(f) {
                self.write_forward(now, f);
            }
        }
        if !outs.keyframe_requests.is_empty() {
            let conf = self.confs.get(conference);
            if let Some(shard) = conf.and_then(|c| c.mirror_of) {
                for layer in outs.keyframe_requests.drain(..) {
                    to_shard(
                        &mut self.shard_sink,
                        &mut self.shard_out,
                        shard,
                        ShardMessage::KeyframeRequest {
                            conference: conference.clone(),
                            layer,
                        },
                    );
                }
            } else if let Some(src) = conf.and_then(|c| c.source)
                && let Some(s) = self.sessions.get_mut(&src)
                && let SessionRole::Source(ingest) = &mut s.role
            {
                let mut sent = 0;
                for layer in outs.keyframe_requests.drain(..) {
                    if let Some(p) = ingest.preflight.as_mut() {
                        p.on_keyframe_request(layer, now);
                    }
                    let Some((mid, rid)) = ingest.stream_of(layer) else {
                        continue;
                    };
                    let mut api = s.rtc.direct_api();
                    if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
                        rx.request_keyframe(KeyframeRequestKind::Pli);
                        debug!(session = %src, layer = layer.0, "keyframe asked of the source");
                        self.stats.keyframe_requests_upstream.fetch_add(1, Relaxed);
                        sent += 1;
                    }
                }
                if let Some(c) = self.confs.get_mut(conference) {
                    c.counters.keyframe_requests_upstream += sent;
                }
                self.queue_drain(src);
            }
        }
        outs.clear();
        self.outs = outs;
    }

    /// A loss report on a measured viewer's link, for its allocator (a step down on heavy
    /// loss, or a sustained probe aborted).
    fn on_loss(&mut self, now: Instant, id: SessionId, lost: f32) {
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        debug!(session = %id, lost, "loss report");
        let conference = s.conference.clone();
        self.outs.clear();
        let changed = self.confs.get_mut(&conference).and_then(|c| {
            c.router
                .on_loss(ConsumerId(id.0), lost, now, &mut self.outs)
        });
        self.apply_outputs(now, &conference);
        match changed {
            Some(a) => self.on_allocation(id, a),
            None => self.follow_probe(id),
        }
    }

    /// Hands a measured viewer's estimator its allocator's sustained rate and probing
    /// target, when they changed (without a switch: a sustained probe starts or ends).
    fn follow_probe(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(a) = self
            .confs
            .get(&s.conference)
            .and_then(|c| c.router.allocation(ConsumerId(id.0)))
        else {
            return;
        };
        set_desired(s, a.desired_bps, a.sustain_bps);
    }

    /// A measured viewer's allocation changed: the estimator probes towards the new
    /// target's next layer, a pause for bandwidth is audio-only delivery at once (the
    /// ledger's `AudioOnly`, without waiting for the delivery window), and the change is
    /// an event for the viewer page and the dashboard.
    fn on_allocation(&mut self, id: SessionId, a: Allocation) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        self.stats.layer_switches.fetch_add(1, Relaxed);
        set_desired(s, a.desired_bps, a.sustain_bps);
        let conference = s.conference.clone();
        // A cut starts the throttle on the new layer; any other switch ends it.
        self.pace(self.last_now, id);
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        // Paused, or a switch down while the pacer holds video back from a congested link:
        // what is held would only arrive late (and delay the lower layer's keyframe).
        let down = match &mut s.role {
            SessionRole::Viewer(v) => {
                let down = a.target.is_some_and(|t| is_lower(t, v.target));
                if a.target.is_some() {
                    v.target = a.target;
                }
                down
            }
            _ => false,
        };
        // While paused, no padding but what the allocator asks for (a sustained probe's
        // minimum). str0m pads up to 50 kbit/s by itself while media flows, audio included:
        // beside the audio that filled a 100 kbit/s link (tests/adaptation.rs, captured on
        // the wire: 40-57 kbit/s of blank padding all through the pause, the link at 100 %,
        // a standing 0.6-0.8 s queue ahead of the audio, concealed audio throughout).
        // Probes are not padding: they still come when asked for. On a layer str0m's
        // default is kept (the estimator of a viewer on the lowest layer leans on it:
        // without it, adapt_sim's oscillating link paused a viewer on 600 kbit/s).
        if let Some(t) = a.target {
            s.rtc.bwe().set_padding_target(if t == Target::Paused {
                Bitrate::ZERO
            } else {
                AUTO_PADDING
            });
        }
        if down {
            self.drop_paced(id, a.target == Some(Target::Paused));
            // Every switch down to a layer, whether or not the pacer held video back: on a
            // step the estimate still reads high, str0m holds what it was handed, and the
            // viewer NACKs what the link dropped of the old layer. Not on a pause: while
            // paused, what the history holds is what str0m pads a resume's sustained probe
            // with (full-size packets; emptied, it pads with ~240-byte blanks, five times the
            // packets: a 2 Mbit/s single-layer viewer failed to resume for 95 s on a loaded
            // machine).
            if a.target != Some(Target::Paused) {
                self.forget_sent_video(id);
            }
        }
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if let SessionRole::Viewer(v) = &mut s.role
            && a.pause == Some(PauseReason::Bandwidth)
            && matches!(v.delivery, Delivery::Flowing)
        {
            v.delivery = Delivery::AudioOnly;
            self.events.push_back(EngineEvent::Delivery {
                conference: conference.clone(),
                session: id,
                state: Delivery::AudioOnly,
            });
        }
        debug!(session = %id, target = ?a.target, estimate = ?a.estimate_bps, "allocation");
        self.events.push_back(EngineEvent::Adaptation {
            conference,
            session: id,
            target: match a.target {
                Some(Target::Layer(l)) => Some(l),
                _ => None,
            },
            paused: a.pause,
            estimate_bps: a.estimate_bps,
            switches: a.switches,
        });
    }

    fn emit(&mut self, e: EngineEvent) {
        self.events.push_back(e);
    }

    /// 120 bits from the thread's CSPRNG (ChaCha12 seeded by the OS) and the shard's index
    /// in the low byte: a session's id is also the unguessable part of its resource URL, and
    /// tells the engine which shard holds the session.
    fn new_id(&self) -> SessionId {
        loop {
            let r = rand::random::<u128>();
            let id = SessionId((r & !0xff) | self.config.shard as u128);
            if id.0 & SHARD_CONSUMER != SHARD_CONSUMER && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }
}

/// The most video packets a measured viewer's pacer holds; beyond, it drops them all
/// ([`Relay::drop_paced`]). About a second of a 10 Mbit/s layer.
const PACED_MAX: usize = 1000;
/// The same while the pacer drains a joiner's GOP replay: the cache's bound on a GOP, and
/// as much live video again behind it.
const PACED_MAX_REPLAYING: usize = 2 * hallcast_core::producer::GOP_MAX_PACKETS;

/// Payload bytes of a viewer's video str0m still holds, now (str0m patch
/// `StreamTx::queued_bytes`): what was written and not yet sent. The figure str0m's pacer
/// samples at its timeouts (`StreamTx::queue_info`) was stale within a burst of writes (a
/// keyframe from the source: a whole 40 kB passed a gate of 12 kB until the video written
/// since the sample was counted too) and, with the pacer's bursts and no timeout after its
/// queues empty, stays stale after a burst has left.
fn transport_holds(rtc: &mut Rtc, tx: Option<TxStream>) -> usize {
    let Some(tx) = tx else { return 0 };
    rtc.direct_api()
        .stream_tx(&tx.ssrc)
        .map_or(0, |s| s.queued_bytes())
}

/// str0m's patch that writes `ids` over a VP8 payload descriptor's picture numbers.
fn vp8_patch(payload: &[u8], ids: Vp8Ids) -> Option<Vp8Patch> {
    let mut b = Vp8Descriptor::parse(payload).ok()?.patch();
    if let Some((pid, _)) = ids.picture_id {
        b = b.picture_id(pid);
    }
    if let Some(t) = ids.tl0_pic_idx {
        b = b.tl0_pic_idx(t);
    }
    if let Some(k) = ids.key_idx {
        b = b.key_idx(k);
    }
    b.build().ok()
}

/// `new` gives the viewer less video than `old` (a pause, or a lower layer).
fn is_lower(new: Target, old: Option<Target>) -> bool {
    match (new, old) {
        (Target::Paused, Some(Target::Paused)) => false,
        (Target::Paused, _) => true,
        (Target::Layer(_), None) => false,
        (Target::Layer(_), Some(Target::Paused)) => false,
        (Target::Layer(n), Some(Target::Layer(o))) => n < o,
    }
}

/// The shard a session id names (its low byte).
/// The most peer addresses one session keeps: a browser's checks come from a handful (host
/// addresses, server-reflexive, TURN), and a peer spraying authenticated checks from
/// thousands of ports must not grow the routing table without bound.
pub const MAX_ADDRS_PER_SESSION: usize = 16;

/// Routes `source` to session `s` from now on; past [`MAX_ADDRS_PER_SESSION`] the oldest
/// address is forgotten (a peer that moved does not come back to its first address).
fn admit_address(
    s: &mut Session,
    by_addr: &mut HashMap<SocketAddr, SessionId>,
    source: SocketAddr,
) {
    if s.addrs.len() >= MAX_ADDRS_PER_SESSION {
        let oldest = s.addrs.remove(0);
        by_addr.remove(&oldest);
    }
    s.addrs.push(source);
    by_addr.insert(source, s.id);
}

/// Hands a measured viewer's estimator its probing target and sustained rate, when they
/// changed: str0m probes towards the target (padding or retransmissions), and while the
/// allocator runs a sustained probe before a switch up its pacer pads the link up to the
/// sustained rate (capped by the estimate; the minimum is clamped to the target, so the
/// target is raised to it).
fn set_desired(s: &mut Session, desired_bps: u64, sustain_bps: u64) {
    let SessionRole::Viewer(v) = &mut s.role else {
        return;
    };
    let desired_bps = desired_bps.max(sustain_bps);
    // Changes under 5 % are noise of the layer bitrate meters; a probe's start or end is not.
    let desired_moved =
        desired_bps != 0 && desired_bps.abs_diff(v.desired_bps) * 20 >= v.desired_bps;
    if !desired_moved && (sustain_bps == 0) == (v.sustain_bps == 0) {
        return;
    }
    if desired_moved {
        v.desired_bps = desired_bps;
    }
    v.sustain_bps = sustain_bps;
    s.rtc.bwe().set_bitrate(
        Bitrate::bps(sustain_bps.min(v.desired_bps)),
        Bitrate::bps(v.desired_bps),
    );
}

/// The allocator asked for an estimator reset since the last look (its estimator could
/// neither rise nor probe: see `hallcast_core::alloc::STUCK_RESET_PAUSED`; or a sustained
/// probe just carried a resume from audio only): a fresh one from the estimate the
/// allocator names, which probes at once.
fn reset_estimator(s: &mut Session, a: &Allocation) {
    let SessionRole::Viewer(v) = &mut s.role else {
        return;
    };
    if a.estimator_resets <= v.estimator_resets {
        return;
    }
    v.estimator_resets = a.estimator_resets;
    // Set with every reset the allocator asks for.
    let Some(estimate) = a.reset_bps else {
        return;
    };
    tracing::info!(
        session = %s.id,
        estimate_bps = estimate,
        resets = a.estimator_resets,
        "bandwidth estimator reset (stuck, or the link carried a resume)"
    );
    s.rtc.bwe().reset(Bitrate::bps(estimate));
}

/// A forward as str0m's write of it into the stream `tx`. VP8 picture numbers continued
/// across a switch are written while str0m copies the payload into the packet, no copy of our
/// own. Inlined where it is handed over, so the write is built in place (not built and moved:
/// a move more of it per copy showed in the instruction count).
#[inline(always)]
fn rtp_write(tx: TxStream, f: Forward) -> RtpWrite {
    let patch = f.vp8.and_then(|ids| vp8_patch(&f.payload, ids));
    let write = RtpWrite::new(tx.pt, f.seq.into(), f.ts, f.arrival, f.payload)
        .marker(f.marker)
        .nackable(f.kind == MediaKind::Video);
    match patch {
        Some(patch) => write.vp8_patch(patch),
        None => write,
    }
}

pub fn shard_of(id: SessionId) -> usize {
    (id.0 & 0xff) as usize
}
