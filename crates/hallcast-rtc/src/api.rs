//! The engine's public vocabulary: settings, roles, events, errors, counters, snapshots.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hallcast_core::{Allocation, Layer, PauseReason, VideoStatus};

use crate::sdp_scan::SUPPORTED_CODECS;
use crate::transit::TransitHistogram;

/// Settings of the media engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The one UDP address every peer talks to.
    pub bind: SocketAddr,
    /// Addresses announced as ICE host candidates. Empty: the bound address (which
    /// must then be a specific IP, not 0.0.0.0).
    pub public_ips: Vec<IpAddr>,
    /// A session from which nothing (STUN consent, RTCP, media) arrived for this long
    /// is ended.
    pub session_timeout: Duration,
    /// A session that never connects is ended after this long.
    pub connect_timeout: Duration,
    /// Use UDP GSO for runs of datagrams to one peer.
    pub gso: bool,
    /// Media shards: threads, each with its own `str0m` sessions and its own UDP port
    /// (`bind`'s port + shard index; port 0: an ephemeral port each). 0: one per core.
    pub threads: usize,
    /// How often each shard publishes its [`Snapshot`] for dashboards and `/metrics`.
    pub snapshot_interval: Duration,
    /// Bandwidth adaptation for viewers: their estimator's start value in bits per
    /// second (`None`: off, every viewer gets the top layer).
    pub adaptation: Option<u64>,
    /// ICE-TCP (passive): each shard also accepts TCP on its media port and announces it
    /// (see [`crate::tcp`]).
    pub tcp: bool,
    /// Record every broadcast whose source is on this relay: the queue to the recorder
    /// (`hallcast_record::Recorder::sender`), fed with `try_send` (a full queue drops and
    /// counts, the media threads never wait).
    pub record: Option<hallcast_record::RecordTx>,
    /// SCHED_FIFO priority of the media shards' threads (1–99); 0: the default policy.
    /// Refused by the kernel (no CAP_SYS_NICE, RLIMIT_RTPRIO too low): a warning, and the
    /// shard runs on the default policy.
    pub realtime_priority: u8,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_ips: vec![],
            session_timeout: Duration::from_secs(6),
            connect_timeout: Duration::from_secs(20),
            gso: true,
            threads: 1,
            snapshot_interval: Duration::from_millis(500),
            adaptation: Some(1_000_000),
            tcp: true,
            record: None,
            realtime_priority: 0,
        }
    }
}

/// A session (one peer connection) in the engine: the one id type of the relay, from the
/// engine through the resource URL to the ledger (see [`hallcast_core::SessionId`]).
use hallcast_core::SessionId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    /// A viewer: one selected layer (a point, a browser).
    Subscriber,
    /// A downstream relay pulling every layer (an edge); not a point, not in attendance.
    Relay,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The client sent DELETE.
    Deleted,
    /// Nothing arrived from the peer for the session timeout (or it never connected).
    Timeout,
    /// The peer closed DTLS or ICE failed.
    Closed,
    /// The publisher left and its subscribers could not continue (it stayed away past the
    /// grace period, or came back with other codecs than the viewers negotiated: their pages
    /// reconnect with a fresh offer).
    SourceGone,
    /// The admin ended the conference.
    ConferenceEnded,
    /// The relay is shutting down.
    Shutdown,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Deleted => "deleted",
            EndReason::Timeout => "timeout",
            EndReason::Closed => "closed",
            EndReason::SourceGone => "source_gone",
            EndReason::ConferenceEnded => "conference_ended",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// What the engine reports to the rest of the relay (accounting, logs, dashboard).
#[derive(Debug, Clone)]
pub enum EngineEvent {
    BroadcastStarted {
        conference: Arc<str>,
        session: SessionId,
    },
    BroadcastEnded {
        conference: Arc<str>,
        session: SessionId,
    },
    SessionConnected {
        conference: Arc<str>,
        session: SessionId,
        role: Role,
    },
    /// The first video packet was sent to a subscriber (ms since its creation).
    FirstVideoSent {
        conference: Arc<str>,
        session: SessionId,
        after: Duration,
    },
    SessionEnded {
        conference: Arc<str>,
        session: SessionId,
        role: Role,
        reason: EndReason,
    },
    /// What a subscriber is receiving changed (evaluated every 200 ms over the last
    /// [`crate::DELIVERY_WINDOW`]).
    Delivery {
        conference: Arc<str>,
        session: SessionId,
        state: Delivery,
    },
    /// A measured viewer's allocation changed: the bandwidth allocator chose another
    /// layer, or paused or resumed its video (see [`hallcast_core::alloc`]). The egress
    /// takes a new layer at that layer's next keyframe.
    Adaptation {
        conference: Arc<str>,
        session: SessionId,
        /// The layer the allocator chose (`None`: video paused).
        target: Option<Layer>,
        paused: Option<PauseReason>,
        estimate_bps: Option<u64>,
        switches: u32,
    },
}

/// What the relay delivers to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing sent yet.
    Pending,
    /// Video (and audio, if the broadcast has audio) is flowing.
    Flowing,
    /// Only audio reaches the subscriber (no video packet in the window).
    AudioOnly,
    /// Nothing reaches the subscriber (the publisher stalled or left).
    Stalled,
}

/// Errors returned to the HTTP layer. Each says what was wrong with the request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("malformed SDP offer: {0}")]
    BadSdp(String),
    #[error("no supported codec in the offer; hallcast forwards {SUPPORTED_CODECS}")]
    NoSupportedCodec,
    #[error(
        "the offer has no codec matching the broadcast ({0}); hallcast forwards {SUPPORTED_CODECS}"
    )]
    CodecMismatch(String),
    #[error("the hall feed is not live yet")]
    NotLive,
    #[error("a publisher is already live on this conference")]
    AlreadyLive,
    #[error("no such session")]
    UnknownSession,
    #[error("the media engine has stopped")]
    Stopped,
    #[error("malformed SDP answer: {0}")]
    BadAnswer(String),
    #[error("the session is not waiting for an answer")]
    NotOffering,
}

/// The result of a successful publish/subscribe.
#[derive(Debug, Clone)]
pub struct SessionStarted {
    pub session: SessionId,
    pub answer: String,
}

/// Why a datagram at the media port was dropped before (or by) a session: the labels of
/// `hallcast_rx_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxDrop {
    /// Not STUN, DTLS, RTP or RTCP at all (garbage).
    NotWebrtc,
    /// Not STUN, from an address no session has (a stranger's RTP/DTLS, or a peer's
    /// packets after its session ended).
    UnknownAddress,
    /// STUN from a new address naming no session's username fragment (or none).
    UnknownUfrag,
    /// STUN naming a session, refused by it: wrong message integrity or peer username.
    StunRefused,
    /// A session's own address sent something its WebRTC stack refused.
    Rejected,
}

impl RxDrop {
    pub const ALL: [RxDrop; 5] = [
        RxDrop::NotWebrtc,
        RxDrop::UnknownAddress,
        RxDrop::UnknownUfrag,
        RxDrop::StunRefused,
        RxDrop::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RxDrop::NotWebrtc => "not_webrtc",
            RxDrop::UnknownAddress => "unknown_address",
            RxDrop::UnknownUfrag => "unknown_ufrag",
            RxDrop::StunRefused => "stun_refused",
            RxDrop::Rejected => "rejected",
        }
    }
}

/// Counters a media shard keeps for /metrics. Written by the shard's thread only, with
/// relaxed atomics (one uncontended add each); [`crate::Engine::stats`] sums the shards.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub rx_datagrams: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_datagrams: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_dropped: AtomicU64,
    /// Messages that carried several datagrams with UDP GSO.
    pub tx_gso_messages: AtomicU64,
    /// `sendmmsg` calls made.
    pub tx_syscalls: AtomicU64,
    pub rx_unroutable: AtomicU64,
    /// Dropped datagrams by reason, indexed by `RxDrop as usize` (the first four make up
    /// `rx_unroutable`).
    pub rx_dropped: [AtomicU64; RxDrop::ALL.len()],
    pub rx_media_packets: AtomicU64,
    pub forwarded_packets: AtomicU64,
    pub gop_replays: AtomicU64,
    /// Replayed video parked for joiners (gauge), and what a full backlog dropped.
    pub backlog_packets: AtomicU64,
    pub backlog_dropped: AtomicU64,
    pub keyframe_requests_upstream: AtomicU64,
    /// Bandwidth estimates received for measured viewers (TWCC or REMB).
    pub bwe_estimates: AtomicU64,
    /// Allocation changes (layer switches decided, pauses, resumes).
    pub layer_switches: AtomicU64,
    /// Video packets dropped from measured viewers' pacer queues (at a pause).
    pub paced_dropped: AtomicU64,
    pub keyframe_requests_downstream: AtomicU64,
    pub events_dropped: AtomicU64,
    pub sessions_started: AtomicU64,
    pub sessions_ended: AtomicU64,
    /// Per-hop transit of live forwarded packets: arrival at this relay to the send
    /// toward the consumer (see [`crate::transit`]).
    pub transit: TransitHistogram,
}

impl EngineStats {
    /// Counts a dropped datagram (and, unless a session refused it, an unroutable one).
    pub fn dropped(&self, why: RxDrop) {
        use std::sync::atomic::Ordering::Relaxed;
        self.rx_dropped[why as usize].fetch_add(1, Relaxed);
        if why != RxDrop::Rejected {
            self.rx_unroutable.fetch_add(1, Relaxed);
        }
    }

    /// Adds this shard's counters (and gauges) into `into`: the engine's totals are the sum
    /// of its shards'.
    pub fn accumulate(&self, into: &EngineStats) {
        use std::sync::atomic::Ordering::Relaxed;
        into.rx_datagrams
            .fetch_add(self.rx_datagrams.load(Relaxed), Relaxed);
        into.rx_bytes
            .fetch_add(self.rx_bytes.load(Relaxed), Relaxed);
        into.tx_datagrams
            .fetch_add(self.tx_datagrams.load(Relaxed), Relaxed);
        into.tx_bytes
            .fetch_add(self.tx_bytes.load(Relaxed), Relaxed);
        into.tx_dropped
            .fetch_add(self.tx_dropped.load(Relaxed), Relaxed);
        into.tx_gso_messages
            .fetch_add(self.tx_gso_messages.load(Relaxed), Relaxed);
        into.tx_syscalls
            .fetch_add(self.tx_syscalls.load(Relaxed), Relaxed);
        into.rx_unroutable
            .fetch_add(self.rx_unroutable.load(Relaxed), Relaxed);
        for (into, from) in into.rx_dropped.iter().zip(&self.rx_dropped) {
            into.fetch_add(from.load(Relaxed), Relaxed);
        }
        into.rx_media_packets
            .fetch_add(self.rx_media_packets.load(Relaxed), Relaxed);
        into.forwarded_packets
            .fetch_add(self.forwarded_packets.load(Relaxed), Relaxed);
        into.gop_replays
            .fetch_add(self.gop_replays.load(Relaxed), Relaxed);
        into.backlog_dropped
            .fetch_add(self.backlog_dropped.load(Relaxed), Relaxed);
        into.keyframe_requests_upstream
            .fetch_add(self.keyframe_requests_upstream.load(Relaxed), Relaxed);
        into.keyframe_requests_downstream
            .fetch_add(self.keyframe_requests_downstream.load(Relaxed), Relaxed);
        into.events_dropped
            .fetch_add(self.events_dropped.load(Relaxed), Relaxed);
        into.sessions_started
            .fetch_add(self.sessions_started.load(Relaxed), Relaxed);
        into.sessions_ended
            .fetch_add(self.sessions_ended.load(Relaxed), Relaxed);
        into.backlog_packets
            .fetch_add(self.backlog_packets.load(Relaxed), Relaxed);
        self.transit.accumulate(&into.transit);
    }
}

/// A point-in-time view of one media shard (or, merged, of the engine) for dashboards and
/// metrics. Shards publish it at a fixed rate; readers never wait on a media thread.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When it was taken, in milliseconds since the engine started.
    pub taken_ms: u64,
    pub conferences: Vec<SnapshotConference>,
    pub sessions: Vec<SnapshotSession>,
    /// Per shard: its index, its UDP address and its number of sessions.
    pub shards: Vec<SnapshotShard>,
}

#[derive(Debug, Clone)]
pub struct SnapshotShard {
    pub index: usize,
    pub udp: SocketAddr,
    pub sessions: usize,
}

#[derive(Debug, Clone)]
pub struct SnapshotConference {
    pub id: Arc<str>,
    pub live: bool,
    pub audio_codec: Option<&'static str>,
    pub video_codec: Option<&'static str>,
    /// Viewers (consumers of one layer) on every shard.
    pub n_subscribers: usize,
    /// Relay consumers (downstream relays; shards are not counted).
    pub n_relays: usize,
    /// Measured per video layer, low to high: bits per second over the last second
    /// (0: inactive).
    pub layer_bitrates: [u64; Layer::MAX],
    pub audio_bitrate: u64,
    /// The encoder pre-flight checks of the publisher, from the shard that ingests it
    /// (`None` on the other shards, and while nothing is published).
    pub preflight: Option<hallcast_core::preflight::Report>,
    /// Keyframe requests (PLI) sent to the conference's publisher, and received from its
    /// viewers and relays, since the conference got its first session on the relay (a
    /// conference left with no session at all starts again from 0).
    pub keyframe_requests_upstream: u64,
    pub keyframe_requests_downstream: u64,
    /// Media bytes sent to the conference's viewers and downstream relays (the WebRTC
    /// stack's per-session counts, updated about once a second), ended sessions included;
    /// reset like the keyframe counts.
    pub sent_bytes: u64,
}

/// One session as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct SnapshotSession {
    pub id: crate::SessionId,
    pub conference: Arc<str>,
    pub role: Role,
    pub shard: usize,
    pub connected: bool,
    /// For viewers: what they receive, and why video is or is not flowing.
    pub delivery: Option<Delivery>,
    pub video: Option<VideoStatus>,
    /// For measured viewers (adaptation on): the allocator's state.
    pub adaptation: Option<Allocation>,
    /// For relay consumers: the layers the downstream relay wants forwarded.
    pub relay_layers: Option<[bool; Layer::MAX]>,
    pub rtt_ms: Option<u32>,
    /// Fraction of packets lost (0..1): egress for viewers, ingress for publishers.
    pub loss: Option<f32>,
    /// Media bytes sent to (viewers) or received from (publishers) the peer.
    pub media_bytes: u64,
    pub peer: Option<IpAddr>,
}
