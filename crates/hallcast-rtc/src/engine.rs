//! The media engine: one task, one UDP socket, every session.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hallcast_core::{
    Backlog, Codec, Conference, Forward, Layer, MediaKind, Outputs, SourcePacket, SubscriberId,
};
use str0m::change::SdpOffer;
use str0m::format::Codec as StCodec;
use str0m::media::{Direction, KeyframeRequestKind, Mid, Pt, Rid, Rids};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, trace, warn};

use crate::sdp_scan::{self, SUPPORTED_CODECS};
use crate::udp::SendQueue;

/// How often the engine does housekeeping (liveness, keyframe retries, stats).
const TICK: Duration = Duration::from_millis(200);
/// Datagrams read per wake-up before commands and timers get a turn.
const RECV_BATCH: usize = 256;
/// Parked replay packets written per turn of the loop, after the turn's live packets, and
/// per subscriber per visit (about a frame of 720p). A turn's replay slice then costs about
/// a millisecond of the media thread, which bounds what a join storm adds to live latency.
const BACKLOG_BUDGET: usize = 256;
const BACKLOG_PER_VISIT: usize = 32;
/// How long a subscriber's sent video stays in str0m's retransmission cache. A repair later
/// than ~1 s arrives after a browser's jitter buffer gave up on its frame (libwebrtc keeps
/// its own send history about as long); str0m's default of 3 s made the cache — 408 bytes of
/// packet metadata per entry, the payload itself shared — the largest part of a
/// subscriber's memory.
const RTX_HISTORY: Duration = Duration::from_secs(1);
const RTX_MAX_PACKETS: usize = 1024;
/// str0m's default: stop answering NACKs when retransmissions exceed 15 % of what was sent.
const RTX_RATIO_CAP: Option<f32> = Some(0.15);
/// Queued datagrams that trigger a flush in the middle of a receive burst.
const FLUSH_AT: usize = 1024;

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_ips: vec![],
            session_timeout: Duration::from_secs(6),
            connect_timeout: Duration::from_secs(20),
            gso: true,
        }
    }
}

/// A session (one peer connection) in the engine: the one id type of the relay, from the
/// engine through the resource URL to the ledger (see [`hallcast_core::SessionId`]).
pub use hallcast_core::SessionId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Subscriber,
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
    /// [`DELIVERY_WINDOW`]).
    Delivery {
        conference: Arc<str>,
        session: SessionId,
        state: Delivery,
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

/// Window over which [`Delivery`] is judged.
pub const DELIVERY_WINDOW: Duration = Duration::from_secs(2);

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
}

/// The result of a successful publish/subscribe.
#[derive(Debug, Clone)]
pub struct SessionStarted {
    pub session: SessionId,
    pub answer: String,
}

/// Counters the engine keeps for /metrics. Written by the engine task only, with
/// relaxed atomics (one uncontended add each).
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
    pub rx_media_packets: AtomicU64,
    pub forwarded_packets: AtomicU64,
    pub gop_replays: AtomicU64,
    /// Replayed video parked for joiners (gauge), and what a full backlog dropped.
    pub backlog_packets: AtomicU64,
    pub backlog_dropped: AtomicU64,
    pub keyframe_requests_upstream: AtomicU64,
    pub keyframe_requests_downstream: AtomicU64,
    pub events_dropped: AtomicU64,
    pub sessions_started: AtomicU64,
    pub sessions_ended: AtomicU64,
}

/// A point-in-time view of the engine for dashboards and metrics.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub conferences: Vec<SnapshotConference>,
}

#[derive(Debug, Clone)]
pub struct SnapshotConference {
    pub id: Arc<str>,
    pub live: bool,
    pub audio_codec: Option<&'static str>,
    pub video_codec: Option<&'static str>,
    pub n_subscribers: usize,
}

enum Command {
    Publish {
        conference: Arc<str>,
        offer: String,
        reply: oneshot::Sender<Result<SessionStarted, EngineError>>,
    },
    Subscribe {
        conference: Arc<str>,
        offer: String,
        reply: oneshot::Sender<Result<SessionStarted, EngineError>>,
    },
    End {
        session: SessionId,
        reason: EndReason,
        reply: oneshot::Sender<bool>,
    },
    EndConference {
        conference: Arc<str>,
        reply: oneshot::Sender<usize>,
    },
    Trickle {
        session: SessionId,
        candidates: Vec<String>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Handle to the media engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Command>,
    stats: Arc<EngineStats>,
    local_addr: SocketAddr,
}

impl Engine {
    /// Binds the UDP socket and starts the engine on its own thread. Events go to
    /// `events` (never blocking: if the receiver lags, events are counted as dropped).
    pub fn start(
        config: EngineConfig,
        events: mpsc::Sender<EngineEvent>,
    ) -> std::io::Result<Engine> {
        let std_socket = std::net::UdpSocket::bind(config.bind)?;
        std_socket.set_nonblocking(true)?;
        crate::udp::grow_buffers(&std_socket);
        // Each datagram's real destination picks the candidate it came to (see
        // `udp::candidate_destination`); without it only a single candidate works.
        if let Err(e) = crate::udp::enable_destination_info(&std_socket) {
            warn!("cannot learn datagrams' destination addresses (IP_PKTINFO): {e}");
        }
        let local_addr = std_socket.local_addr()?;
        let mut candidates = Vec::new();
        let ips = if config.public_ips.is_empty() {
            if local_addr.ip().is_unspecified() {
                return Err(std::io::Error::new(
                    ErrorKind::InvalidInput,
                    "media socket bound to an unspecified address: configure media.public_ips",
                ));
            }
            vec![local_addr.ip()]
        } else {
            config.public_ips.clone()
        };
        for ip in ips {
            let addr = SocketAddr::new(ip, local_addr.port());
            let c = Candidate::host(addr, "udp")
                .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e.to_string()))?;
            candidates.push(c);
        }
        let (tx, rx) = mpsc::channel(1024);
        let stats = Arc::new(EngineStats::default());
        let stats2 = stats.clone();
        std::thread::Builder::new()
            .name("hallcast-media".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        warn!("media engine runtime failed to start: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let socket = match UdpSocket::from_std(std_socket) {
                        Ok(s) => s,
                        Err(e) => {
                            warn!("media socket: {e}");
                            return;
                        }
                    };
                    let mut state =
                        State::new(config, socket, local_addr, candidates, stats2, events);
                    state.run(rx).await;
                });
            })?;
        info!(%local_addr, "media engine listening (one UDP port for every peer)");
        Ok(Engine {
            tx,
            stats,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub async fn publish(
        &self,
        conference: &str,
        offer: String,
    ) -> Result<SessionStarted, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Publish {
            conference: conference.into(),
            offer,
            reply,
        })
        .await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    pub async fn subscribe(
        &self,
        conference: &str,
        offer: String,
    ) -> Result<SessionStarted, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Subscribe {
            conference: conference.into(),
            offer,
            reply,
        })
        .await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Ends a session; false if it did not exist.
    pub async fn end(&self, session: SessionId, reason: EndReason) -> Result<bool, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::End {
            session,
            reason,
            reply,
        })
        .await?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Ends every session of a conference (its publisher and its viewers); the number ended.
    pub async fn end_conference(&self, conference: &str) -> Result<usize, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::EndConference {
            conference: conference.into(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Adds trickled remote candidates (`a=candidate:` lines or bare values).
    pub async fn trickle(
        &self,
        session: SessionId,
        candidates: Vec<String>,
    ) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Trickle {
            session,
            candidates,
            reply,
        })
        .await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    pub async fn snapshot(&self) -> Result<Snapshot, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Snapshot { reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Ends every session (RTCP BYE / DTLS close where possible) and stops the engine.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn send(&self, cmd: Command) -> Result<(), EngineError> {
        self.tx.send(cmd).await.map_err(|_| EngineError::Stopped)
    }
}

#[derive(Debug, Clone, Copy)]
struct TxStream {
    ssrc: Ssrc,
    pt: Pt,
}

enum SessionRole {
    Publisher {
        audio: Option<Codec>,
        video: Option<Codec>,
        audio_mid: Option<Mid>,
        video_mid: Option<Mid>,
        /// RIDs of the video layers, ordered low to high (empty: no simulcast).
        rids: Vec<Rid>,
        ssrcs: HashMap<Ssrc, (MediaKind, Layer)>,
    },
    Subscriber {
        audio: Option<TxStream>,
        video: Option<TxStream>,
        first_video_sent: bool,
        last_audio_at: Option<Instant>,
        last_video_at: Option<Instant>,
        delivery: Delivery,
    },
}

struct Session {
    id: SessionId,
    conference: Arc<str>,
    rtc: Rtc,
    role: SessionRole,
    ufrag: String,
    addrs: Vec<SocketAddr>,
    /// Where replies leave from, on a socket bound to an unspecified address (empty
    /// otherwise): per peer address and announced candidate (str0m's `Transmit::source`),
    /// the local IP the peer's datagrams to that candidate arrived at (see
    /// [`reply_source`]).
    reply_from: Vec<ReplyFrom>,
    created: Instant,
    last_rx: Instant,
    connected: bool,
    timeout: Instant,
    /// The deadline this session has in the timer heap (`None`: not scheduled).
    scheduled: Option<Instant>,
}

/// One entry of [`Session::reply_from`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReplyFrom {
    peer: SocketAddr,
    candidate: IpAddr,
    local: IpAddr,
}

impl Session {
    fn role(&self) -> Role {
        match self.role {
            SessionRole::Publisher { .. } => Role::Publisher,
            SessionRole::Subscriber { .. } => Role::Subscriber,
        }
    }
}

#[derive(Default)]
struct ConfState {
    core: Conference,
    publisher: Option<SessionId>,
    subscribers: Vec<SessionId>,
    /// When the publisher left (subscribers are kept for a grace period).
    source_gone_at: Option<Instant>,
    /// The codecs (audio, video) of the last publisher: what the subscribers negotiated.
    codecs: (Option<Codec>, Option<Codec>),
}

/// How long subscribers wait for a publisher to come back before they are ended.
const SOURCE_GRACE: Duration = Duration::from_secs(30);

struct State {
    config: EngineConfig,
    socket: UdpSocket,
    local_addr: SocketAddr,
    candidates: Vec<Candidate>,
    /// The candidates' IPs: where datagrams are said to arrive (`udp::candidate_destination`).
    announced: Vec<IpAddr>,
    /// The socket is bound to 0.0.0.0 / `::`: the kernel would pick each reply's source by
    /// routing, so replies name the address the peer's datagrams arrived at
    /// ([`Session::reply_from`]). Bound to one address, the source is that one.
    choose_source: bool,
    stats: Arc<EngineStats>,
    events: mpsc::Sender<EngineEvent>,
    sessions: HashMap<SessionId, Session>,
    by_addr: HashMap<SocketAddr, SessionId>,
    by_ufrag: HashMap<String, SessionId>,
    confs: HashMap<Arc<str>, ConfState>,
    timers: BinaryHeap<Reverse<(Instant, SessionId)>>,
    /// Reused buffers: the per-packet path does not allocate.
    outs: Outputs,
    queue: VecDeque<(SessionId, Event)>,
    sendq: SendQueue,
    next_tick: Instant,
    /// Joiners' GOP replays, released a slice per turn after the turn's live packets.
    backlog: Backlog,
    released: Vec<Forward>,
}

impl State {
    fn new(
        config: EngineConfig,
        socket: UdpSocket,
        local_addr: SocketAddr,
        candidates: Vec<Candidate>,
        stats: Arc<EngineStats>,
        events: mpsc::Sender<EngineEvent>,
    ) -> Self {
        let gso = config.gso;
        State {
            config,
            socket,
            local_addr,
            announced: candidates.iter().map(|c| c.addr().ip()).collect(),
            choose_source: local_addr.ip().is_unspecified(),
            candidates,
            stats,
            events,
            sessions: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            confs: HashMap::new(),
            timers: BinaryHeap::new(),
            outs: Outputs::default(),
            queue: VecDeque::new(),
            sendq: SendQueue::new(gso),
            next_tick: Instant::now() + TICK,
            backlog: Backlog::new(),
            released: Vec::new(),
        }
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 2048];
        let mut control = crate::udp::control_buffer();
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                r = self.socket.readable() => {
                    if r.is_ok() {
                        for _ in 0..RECV_BATCH {
                            let r = self.socket.try_io(Interest::READABLE, || {
                                crate::udp::recv_with_destination(
                                    &self.socket,
                                    &mut buf,
                                    &mut control,
                                )
                            });
                            match r {
                                Ok(r) => {
                                    let now = Instant::now();
                                    let destination = crate::udp::candidate_destination(
                                        r.destination,
                                        self.local_addr,
                                        &self.announced,
                                    );
                                    // The real destination, never the announced one: behind
                                    // 1:1 NAT only the private address is this host's.
                                    let local = r
                                        .destination
                                        .filter(|_| self.choose_source)
                                        .map(|ip| ip.to_canonical());
                                    self.on_datagram(
                                        now,
                                        r.source,
                                        destination,
                                        local,
                                        &buf[..r.len],
                                    );
                                    if self.sendq.len() >= FLUSH_AT {
                                        self.flush();
                                    }
                                }
                                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                Err(e) => {
                                    // ICMP errors (port unreachable) surface here on Linux.
                                    trace!("recv error: {e}");
                                    break;
                                }
                            }
                        }
                    }
                }
                cmd = rx.recv() => {
                    match cmd {
                        Some(Command::Shutdown { reply }) => {
                            self.shutdown();
                            self.flush();
                            let _ = reply.send(());
                            return;
                        }
                        Some(cmd) => self.on_command(cmd),
                        None => {
                            self.shutdown();
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            let now = Instant::now();
            self.on_timers(now);
            self.release_backlog(now);
            self.flush();
        }
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
        // Gauges: parked packets may also leave with their subscriber or be dropped when
        // live video queues behind a full backlog, so they are read here every turn.
        self.stats
            .backlog_packets
            .store(self.backlog.len() as u64, Relaxed);
        self.stats
            .backlog_dropped
            .store(self.backlog.n_dropped(), Relaxed);
    }

    fn flush(&mut self) {
        if self.sendq.is_empty() {
            return;
        }
        let f = self.sendq.flush(&self.socket);
        self.stats.tx_datagrams.fetch_add(f.sent as u64, Relaxed);
        self.stats.tx_bytes.fetch_add(f.bytes as u64, Relaxed);
        self.stats.tx_dropped.fetch_add(f.dropped as u64, Relaxed);
        self.stats
            .tx_gso_messages
            .fetch_add(f.gso_messages as u64, Relaxed);
        self.stats.tx_syscalls.fetch_add(f.syscalls as u64, Relaxed);
    }

    fn next_deadline(&mut self) -> Instant {
        if !self.backlog.is_empty() {
            return Instant::now();
        }
        let mut d = self.next_tick;
        if let Some(Reverse((t, _))) = self.timers.peek() {
            d = d.min(*t);
        }
        d
    }

    // ---------------------------------------------------------------- commands

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Publish {
                conference,
                offer,
                reply,
            } => {
                let r = self.publish(now, conference, &offer);
                let _ = reply.send(r);
            }
            Command::Subscribe {
                conference,
                offer,
                reply,
            } => {
                let r = self.subscribe(now, conference, &offer);
                let _ = reply.send(r);
            }
            Command::End {
                session,
                reason,
                reply,
            } => {
                let existed = self.sessions.contains_key(&session);
                self.end_session(now, session, reason);
                let _ = reply.send(existed);
            }
            Command::EndConference { conference, reply } => {
                let ids: Vec<SessionId> = self
                    .confs
                    .get(&conference)
                    .map(|c| c.publisher.iter().chain(&c.subscribers).copied().collect())
                    .unwrap_or_default();
                for id in &ids {
                    self.end_session(now, *id, EndReason::ConferenceEnded);
                }
                let _ = reply.send(ids.len());
            }
            Command::Trickle {
                session,
                candidates,
                reply,
            } => {
                let r = match self.sessions.get_mut(&session) {
                    None => Err(EngineError::UnknownSession),
                    Some(s) => {
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
                };
                let _ = reply.send(r);
                self.process_queue(now);
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
            Command::Shutdown { .. } => unreachable_shutdown(),
        }
    }

    fn new_rtc(&self, now: Instant, audio: Option<Codec>, video: Option<Codec>) -> Rtc {
        let mut b = Rtc::builder()
            // Shared DTLS configuration and certificate (see dtls.rs): str0m asks this
            // provider for the certificate, which is the process's one.
            .set_crypto_provider(crate::dtls::RelayDtls::crypto_provider())
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs();
        if audio == Some(Codec::Opus) {
            b = b.enable_opus(true, false);
        }
        match video {
            Some(Codec::Vp8) => b = b.enable_vp8(true),
            Some(Codec::H264) => {
                let cfg = b.codec_config();
                // packetization-mode=1 only; constrained baseline first (what every
                // browser decodes), then baseline, main and high for encoders.
                for (pt, rtx, profile) in [
                    (108u8, 109u8, 0x42e01fu32),
                    (127, 121, 0x42001f),
                    (123, 119, 0x4d001f),
                    (114, 115, 0x64001f),
                ] {
                    cfg.add_h264(pt.into(), Some(rtx.into()), true, profile);
                }
            }
            _ => {}
        }
        let mut rtc = b.build(now);
        for c in &self.candidates {
            rtc.add_local_candidate(c.clone());
        }
        rtc
    }

    fn publish(
        &mut self,
        now: Instant,
        conference: Arc<str>,
        offer: &str,
    ) -> Result<SessionStarted, EngineError> {
        let conf = self.confs.entry(conference.clone()).or_default();
        if conf.publisher.is_some() {
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
        let mut rtc = self.new_rtc(now, audio, video);
        let answer = rtc
            .sdp_api()
            .accept_offer(sdp)
            .map_err(|e| EngineError::BadSdp(e.to_string()))?;
        let id = self.new_id();
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let mut session = Session {
            id,
            conference: conference.clone(),
            rtc,
            role: SessionRole::Publisher {
                audio,
                video,
                audio_mid: None,
                video_mid: None,
                rids: vec![],
                ssrcs: HashMap::new(),
            },
            ufrag: ufrag.clone(),
            addrs: vec![],
            reply_from: vec![],
            created: now,
            last_rx: now,
            connected: false,
            timeout: now,
            scheduled: None,
        };
        // Learn the media sections (mids, simulcast RIDs) from the negotiation.
        drain(&mut session, &mut self.sendq, |_| {});
        if let SessionRole::Publisher {
            audio_mid,
            video_mid,
            rids,
            ..
        } = &mut session.role
        {
            for (kind, mid) in &scan.mids {
                let mid = Mid::from(mid.as_str());
                let Some(media) = session.rtc.media(mid) else {
                    continue;
                };
                match kind.as_str() {
                    "audio" if audio_mid.is_none() => *audio_mid = Some(mid),
                    "video" if video_mid.is_none() => {
                        *video_mid = Some(mid);
                        if let Rids::Specific(list) = media.rids_rx() {
                            *rids = order_rids(list.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        // Viewers waiting for a returning publisher negotiated the previous one's codecs; if
        // this one uses others they cannot continue: end them (their pages reconnect with a
        // fresh offer) rather than leave them on a payload type that no longer exists.
        let stale: Vec<SessionId> = self
            .confs
            .get(&conference)
            .filter(|c| c.codecs != (audio, video))
            .map(|c| c.subscribers.clone())
            .unwrap_or_default();
        if !stale.is_empty() {
            info!(%conference, n_viewers = stale.len(), ?audio, ?video,
                "publisher came back with other codecs: its waiting viewers reconnect");
        }
        for sub in stale {
            self.end_session(now, sub, EndReason::SourceGone);
        }
        self.schedule(&mut session);
        self.by_ufrag.insert(ufrag, id);
        self.sessions.insert(id, session);
        let conf = self.confs.entry(conference.clone()).or_default();
        conf.publisher = Some(id);
        conf.codecs = (audio, video);
        conf.source_gone_at = None;
        self.outs.clear();
        conf.core.source_started(audio, video, now, &mut self.outs);
        self.stats.sessions_started.fetch_add(1, Relaxed);
        info!(session = %id, %conference, ?audio, ?video, "publisher session created");
        self.emit(EngineEvent::BroadcastStarted {
            conference: conference.clone(),
            session: id,
        });
        self.apply_outputs(now, &conference);
        self.process_queue(now);
        Ok(SessionStarted {
            session: id,
            answer: answer.to_sdp_string(),
        })
    }

    fn subscribe(
        &mut self,
        now: Instant,
        conference: Arc<str>,
        offer: &str,
    ) -> Result<SessionStarted, EngineError> {
        let sdp =
            SdpOffer::from_sdp_string(offer).map_err(|e| EngineError::BadSdp(e.to_string()))?;
        let Some(conf) = self.confs.get(&conference) else {
            return Err(EngineError::NotLive);
        };
        if !conf.core.is_live() {
            return Err(EngineError::NotLive);
        }
        let (audio, video) = conf.core.codecs();
        let scan = sdp_scan::scan(offer);
        if !scan.has_audio && !scan.has_video {
            return Err(EngineError::BadSdp(
                "the offer has no audio or video section".into(),
            ));
        }
        let audio_ok = audio.is_some_and(|a| scan.audio == Some(a));
        let video_ok = video.is_some_and(|v| scan.video.contains(&v));
        if !audio_ok && !video_ok {
            let want = [audio.map(Codec::name), video.map(Codec::name)]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" + ");
            return Err(EngineError::CodecMismatch(want));
        }
        let mut rtc = self.new_rtc(now, audio.filter(|_| audio_ok), video.filter(|_| video_ok));
        let answer = rtc
            .sdp_api()
            .accept_offer(sdp)
            .map_err(|e| EngineError::BadSdp(e.to_string()))?;
        let id = self.new_id();
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let mut session = Session {
            id,
            conference: conference.clone(),
            rtc,
            role: SessionRole::Subscriber {
                audio: None,
                video: None,
                first_video_sent: false,
                last_audio_at: None,
                last_video_at: None,
                delivery: Delivery::Pending,
            },
            ufrag: ufrag.clone(),
            addrs: vec![],
            reply_from: vec![],
            created: now,
            last_rx: now,
            connected: false,
            timeout: now,
            scheduled: None,
        };
        drain(&mut session, &mut self.sendq, |_| {});
        let mut tx_audio = None;
        let mut tx_video = None;
        for (kind, mid) in &scan.mids {
            let mid = Mid::from(mid.as_str());
            let Some(media) = session.rtc.media(mid) else {
                continue;
            };
            if !matches!(media.direction(), Direction::SendOnly | Direction::SendRecv) {
                continue;
            }
            let (slot, codec) = match kind.as_str() {
                "audio" => (&mut tx_audio, audio),
                "video" => (&mut tx_video, video),
                _ => continue,
            };
            if slot.is_some() {
                continue;
            }
            let Some(codec) = codec else { continue };
            let Some(pt) = negotiated_pt(&session.rtc, mid, codec) else {
                continue;
            };
            let is_video = kind == "video";
            let Some(ssrc) = session
                .rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .map(|s| {
                    if is_video {
                        s.set_rtx_cache(RTX_MAX_PACKETS, RTX_HISTORY, RTX_RATIO_CAP);
                    }
                    s.ssrc()
                })
            else {
                continue;
            };
            *slot = Some(TxStream { ssrc, pt });
        }
        if tx_audio.is_none() && tx_video.is_none() {
            return Err(EngineError::CodecMismatch(
                [audio.map(Codec::name), video.map(Codec::name)]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" + "),
            ));
        }
        if let SessionRole::Subscriber { audio, video, .. } = &mut session.role {
            *audio = tx_audio;
            *video = tx_video;
        }
        self.schedule(&mut session);
        self.by_ufrag.insert(ufrag, id);
        self.sessions.insert(id, session);
        if let Some(conf) = self.confs.get_mut(&conference) {
            conf.subscribers.push(id);
        }
        self.stats.sessions_started.fetch_add(1, Relaxed);
        debug!(session = %id, %conference, "subscriber session created");
        Ok(SessionStarted {
            session: id,
            answer: answer.to_sdp_string(),
        })
    }

    /// The subscriber joins the fan-out once ICE+DTLS are up, so its GOP replay goes
    /// out immediately instead of into a queue.
    fn attach_subscriber(&mut self, now: Instant, id: SessionId) {
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        let conference = s.conference.clone();
        let Some(conf) = self.confs.get_mut(&conference) else {
            return;
        };
        self.outs.clear();
        let n_replays = conf.core.n_gop_replays();
        conf.core
            .add_subscriber(SubscriberId(id.0), now, &mut self.outs);
        // A counter over every conference: add this join's replays (0 or 1).
        self.stats
            .gop_replays
            .fetch_add(conf.core.n_gop_replays() - n_replays, Relaxed);
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
        drain(&mut s, &mut self.sendq, |_| {});
        for a in &s.addrs {
            self.by_addr.remove(a);
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
            Role::Subscriber => {
                conf.subscribers.retain(|x| *x != id);
                conf.core.remove_subscriber(SubscriberId(id.0));
                self.backlog.remove(SubscriberId(id.0));
            }
            Role::Publisher => {
                if conf.publisher == Some(id) {
                    conf.publisher = None;
                    conf.core.source_ended();
                    conf.source_gone_at = Some(now);
                    broadcast_ended = true;
                }
            }
        }
        if conf.publisher.is_none() && conf.subscribers.is_empty() {
            self.confs.remove(&conference);
        }
        if broadcast_ended {
            self.emit(EngineEvent::BroadcastEnded {
                conference,
                session: id,
            });
        }
    }

    fn shutdown(&mut self) {
        let now = Instant::now();
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.end_session(now, id, EndReason::Shutdown);
        }
    }

    fn snapshot(&self) -> Snapshot {
        let conferences = self
            .confs
            .iter()
            .map(|(id, c)| {
                let (a, v) = c.core.codecs();
                SnapshotConference {
                    id: id.clone(),
                    live: c.core.is_live(),
                    audio_codec: a.map(Codec::name),
                    video_codec: v.map(Codec::name),
                    n_subscribers: c.subscribers.len(),
                }
            })
            .collect();
        Snapshot { conferences }
    }

    // ---------------------------------------------------------------- network

    /// `destination`: an announced candidate's address (`udp::candidate_destination`);
    /// `local`: the local IP the datagram arrived at, when replies must name their source
    /// (`State::choose_source`).
    fn on_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        local: Option<IpAddr>,
        buf: &[u8],
    ) {
        self.stats.rx_datagrams.fetch_add(1, Relaxed);
        self.stats.rx_bytes.fetch_add(buf.len() as u64, Relaxed);
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, buf) else {
            self.stats.rx_unroutable.fetch_add(1, Relaxed);
            return;
        };
        let id = match self.by_addr.get(&source) {
            Some(id) => *id,
            None => {
                // A new address: only a STUN binding request naming a session's ufrag
                // may introduce it (an O(1) lookup, not a scan of every session).
                let Some(id) = crate::stun::local_ufrag(buf)
                    .and_then(|u| self.by_ufrag.get(u))
                    .copied()
                else {
                    self.stats.rx_unroutable.fetch_add(1, Relaxed);
                    return;
                };
                let Some(s) = self.sessions.get_mut(&id) else {
                    return;
                };
                if !s.rtc.accepts(&Input::Receive(now, receive)) {
                    self.stats.rx_unroutable.fetch_add(1, Relaxed);
                    return;
                }
                s.addrs.push(source);
                self.by_addr.insert(source, id);
                id
            }
        };
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, buf) else {
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
            debug!(session = %id, "input rejected: {e}");
        }
        self.queue_drain(id);
        self.process_queue(now);
    }

    fn on_timers(&mut self, now: Instant) {
        // Bounded, so a session whose deadline stays in the past cannot starve the loop;
        // what is left runs on the next turn (its deadline makes the loop wake at once).
        let mut budget = self.sessions.len() * 2 + 64;
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now || budget == 0 {
                break;
            }
            budget -= 1;
            self.timers.pop();
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if s.scheduled != Some(t) {
                continue; // stale entry: the session rescheduled since
            }
            s.scheduled = None;
            if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                debug!(session = %id, "timeout input failed: {e}");
            }
            self.queue_drain(id);
        }
        self.process_queue(now);
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.tick(now);
        }
    }

    fn tick(&mut self, now: Instant) {
        // Liveness: a peer that went silent (no consent checks, no RTCP) is ended.
        let mut dead = Vec::new();
        for s in self.sessions.values() {
            let silent = now.saturating_duration_since(s.last_rx);
            if (s.connected && silent >= self.config.session_timeout)
                || (!s.connected && silent >= self.config.connect_timeout)
                || !s.rtc.is_alive()
            {
                let reason = if s.rtc.is_alive() {
                    EndReason::Timeout
                } else {
                    EndReason::Closed
                };
                dead.push((s.id, reason));
            }
        }
        for (id, reason) in dead {
            self.end_session(now, id, reason);
        }
        // What each subscriber receives.
        let mut changes = Vec::new();
        for s in self.sessions.values_mut() {
            let SessionRole::Subscriber {
                video,
                last_audio_at,
                last_video_at,
                delivery,
                ..
            } = &mut s.role
            else {
                continue;
            };
            if !s.connected {
                continue;
            }
            let recent = |t: &Option<Instant>| {
                t.is_some_and(|t| now.saturating_duration_since(t) < DELIVERY_WINDOW)
            };
            let state = if recent(last_video_at) || (video.is_none() && recent(last_audio_at)) {
                Delivery::Flowing
            } else if self.backlog.has_parked(SubscriberId(s.id.0)) {
                // Its video is parked (a joiner's replay not yet released; audio is never
                // parked): it is on its way, so this is no audio-only subscriber. The state
                // stays as it is (Pending at a join) until the video leaves the backlog.
                *delivery
            } else if recent(last_audio_at) {
                Delivery::AudioOnly
            } else if *delivery == Delivery::Pending {
                Delivery::Pending
            } else {
                Delivery::Stalled
            };
            if state != *delivery {
                *delivery = state;
                changes.push(EngineEvent::Delivery {
                    conference: s.conference.clone(),
                    session: s.id,
                    state,
                });
            }
        }
        for e in changes {
            self.emit(e);
        }
        // Subscribers whose publisher is gone for good.
        let mut orphaned = Vec::new();
        for c in self.confs.values() {
            if c.source_gone_at
                .is_some_and(|t| now.saturating_duration_since(t) >= SOURCE_GRACE)
            {
                orphaned.extend(c.subscribers.iter().copied());
            }
        }
        for id in orphaned {
            self.end_session(now, id, EndReason::SourceGone);
        }
        // Keyframe retries for waiting subscribers.
        let confs: Vec<Arc<str>> = self.confs.keys().cloned().collect();
        for conference in confs {
            self.outs.clear();
            if let Some(c) = self.confs.get_mut(&conference) {
                c.core.tick(now, &mut self.outs);
            }
            self.apply_outputs(now, &conference);
        }
        self.process_queue(now);
    }

    // ---------------------------------------------------------------- media path

    fn queue_drain(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let queue = &mut self.queue;
        drain(s, &mut self.sendq, |e| match e {
            Event::RtpPacket(_)
            | Event::KeyframeRequest(_)
            | Event::Connected
            | Event::IceConnectionStateChange(_)
            | Event::Closed => queue.push_back((id, e)),
            _ => {}
        });
        // One heap entry per deadline change, not per drain: a subscriber drained for
        // every forwarded packet keeps the same deadline most of the time.
        if s.scheduled != Some(s.timeout) {
            s.scheduled = Some(s.timeout);
            self.timers.push(Reverse((s.timeout, s.id)));
        }
    }

    fn schedule(&mut self, s: &mut Session) {
        s.scheduled = Some(s.timeout);
        self.timers.push(Reverse((s.timeout, s.id)));
    }

    fn process_queue(&mut self, now: Instant) {
        while let Some((id, event)) = self.queue.pop_front() {
            match event {
                Event::RtpPacket(pkt) => self.on_rtp(now, id, pkt),
                Event::KeyframeRequest(_) => {
                    self.stats
                        .keyframe_requests_downstream
                        .fetch_add(1, Relaxed);
                    let Some(conference) = self.sessions.get(&id).map(|s| s.conference.clone())
                    else {
                        continue;
                    };
                    self.outs.clear();
                    if let Some(c) = self.confs.get_mut(&conference) {
                        c.core
                            .on_keyframe_request(SubscriberId(id.0), now, &mut self.outs);
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
                    if role == Role::Subscriber {
                        self.attach_subscriber(now, id);
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

    fn on_rtp(&mut self, now: Instant, id: SessionId, pkt: str0m::rtp::RtpPacket) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let SessionRole::Publisher {
            audio,
            video,
            audio_mid,
            video_mid,
            rids,
            ssrcs,
        } = &mut s.role
        else {
            return;
        };
        self.stats.rx_media_packets.fetch_add(1, Relaxed);
        let ssrc = pkt.header.ssrc;
        let (kind, layer) = match ssrcs.get(&ssrc) {
            Some(x) => *x,
            None => {
                let Some(rx) = s
                    .rtc
                    .direct_api()
                    .stream_rx(&ssrc)
                    .map(|r| (r.mid(), r.rid()))
                else {
                    return;
                };
                let kind = if Some(rx.0) == *video_mid {
                    MediaKind::Video
                } else if Some(rx.0) == *audio_mid {
                    MediaKind::Audio
                } else {
                    return;
                };
                let layer =
                    rx.1.and_then(|rid| rids.iter().position(|r| *r == rid))
                        .map(|i| Layer(i as u8))
                        .unwrap_or_default();
                ssrcs.insert(ssrc, (kind, layer));
                (kind, layer)
            }
        };
        let codec = match kind {
            MediaKind::Audio => *audio,
            MediaKind::Video => *video,
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
        let conference = s.conference.clone();
        self.outs.clear();
        if let Some(c) = self.confs.get_mut(&conference) {
            c.core.on_packet(&source, &mut self.outs);
        }
        self.apply_outputs(now, &conference);
    }

    /// Writes one forward into its subscriber's stream.
    fn write_forward(&mut self, now: Instant, f: Forward) {
        let id = SessionId(f.sub.0);
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let SessionRole::Subscriber {
            audio,
            video,
            first_video_sent,
            last_audio_at,
            last_video_at,
            ..
        } = &mut s.role
        else {
            return;
        };
        let tx = match f.kind {
            MediaKind::Audio => {
                *last_audio_at = Some(now);
                *audio
            }
            MediaKind::Video => {
                *last_video_at = Some(now);
                *video
            }
        };
        let Some(tx) = tx else { return };
        if f.kind == MediaKind::Video && !*first_video_sent {
            *first_video_sent = true;
            let after = now.saturating_duration_since(s.created);
            let _ = self.events.try_send(EngineEvent::FirstVideoSent {
                conference: s.conference.clone(),
                session: id,
                after,
            });
        }
        let mut api = s.rtc.direct_api();
        let Some(stream) = api.stream_tx(&tx.ssrc) else {
            return;
        };
        stream.write_rtp(
            RtpWrite::new(tx.pt, f.seq.into(), f.ts, f.arrival, f.payload)
                .marker(f.marker)
                .nackable(f.kind == MediaKind::Video),
        );
        self.stats.forwarded_packets.fetch_add(1, Relaxed);
        self.queue_drain(id);
    }

    /// Writes the core's outputs: forwards into subscriber streams (or behind their
    /// subscriber's parked replay), keyframe requests to the publisher.
    fn apply_outputs(&mut self, now: Instant, conference: &Arc<str>) {
        let mut outs = std::mem::take(&mut self.outs);
        for f in outs.forwards.drain(..) {
            if let Some(f) = self.backlog.admit(f) {
                self.write_forward(now, f);
            }
        }
        if !outs.keyframe_requests.is_empty()
            && let Some(pub_id) = self.confs.get(conference).and_then(|c| c.publisher)
            && let Some(s) = self.sessions.get_mut(&pub_id)
            && let SessionRole::Publisher {
                video_mid: Some(mid),
                rids,
                ..
            } = &s.role
        {
            let mid = *mid;
            for layer in outs.keyframe_requests.drain(..) {
                let rid = rids.get(layer.index()).copied();
                let mut api = s.rtc.direct_api();
                if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
                    rx.request_keyframe(KeyframeRequestKind::Pli);
                    self.stats.keyframe_requests_upstream.fetch_add(1, Relaxed);
                }
            }
            self.queue_drain(pub_id);
        }
        outs.clear();
        self.outs = outs;
    }

    fn emit(&self, e: EngineEvent) {
        if self.events.try_send(e).is_err() {
            self.stats.events_dropped.fetch_add(1, Relaxed);
        }
    }

    /// 128 bits from the thread's CSPRNG (ChaCha12 seeded by the OS): a session's id is also
    /// the unguessable part of its resource URL.
    fn new_id(&self) -> SessionId {
        loop {
            let id = SessionId(rand::random::<u128>());
            if !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }
}

/// Drains an `Rtc` until it yields its next timeout (str0m's single-mutation rule):
/// transmits go to the socket, events to `on_event`.
fn drain(s: &mut Session, sendq: &mut SendQueue, mut on_event: impl FnMut(Event)) {
    loop {
        match s.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                s.timeout = t;
                return;
            }
            Ok(Output::Transmit(t)) => {
                let from = reply_source(&s.reply_from, t.destination, t.source.ip());
                sendq.push_from(t.destination, from, t.contents.into());
            }
            Ok(Output::Event(e)) => on_event(e),
            Err(e) => {
                debug!(session = %s.id, "rtc error: {e}");
                s.rtc.disconnect();
                s.timeout = Instant::now() + Duration::from_millis(50);
                return;
            }
        }
    }
}

/// Remembers that `peer`'s datagrams to the announced `candidate` arrived at the local IP
/// `local` (a few entries per session: its peer addresses × the candidates they use).
fn note_reply_from(
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
fn reply_source(reply_from: &[ReplyFrom], peer: SocketAddr, candidate: IpAddr) -> Option<IpAddr> {
    reply_from
        .iter()
        .find(|r| r.peer == peer && r.candidate == candidate)
        .map(|r| r.local)
}

/// The payload type a subscriber negotiated for `codec` on `mid`.
fn negotiated_pt(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
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
fn order_rids(rids: Vec<Rid>) -> Vec<Rid> {
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

fn unreachable_shutdown() {
    // Shutdown is handled in the run loop before on_command is called.
}

#[cfg(test)]
mod tests {
    use super::*;

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
