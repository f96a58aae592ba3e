//! The thin I/O around [`Relay`]: per media shard one OS thread with a current-thread tokio
//! runtime, one UDP socket (`recvmsg` with each datagram's destination, `sendmmsg` with
//! GSO), its ICE-TCP listener on the same port (see [`crate::tcp`]) and the wall clock. [`Engine`] is the handle the HTTP side holds: it places
//! sessions on shards and reads the shards' published snapshots without waiting on them.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hallcast_core::preflight::IngestProtocol;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, trace, warn};

use crate::SessionId;
use crate::api::{
    EndReason, EngineConfig, EngineError, EngineEvent, EngineStats, SessionStarted, Snapshot,
};
use crate::relay::{Command, Relay, RelayConfig, Reply, ShardMessage, health::Liveness, shard_of};
use crate::tcp::TcpIn;
use crate::udp::SendQueue;

/// Datagrams read per wake-up before commands and timers get a turn.
const RECV_BATCH: usize = 256;
/// Queued datagrams that trigger a flush in the middle of a receive burst.
const FLUSH_AT: usize = 1024;
/// In a receive burst, what was forwarded is drained and sent at least this often: a
/// keyframe fanned out to many viewers is thousands of writes, and without a bound every
/// packet of the burst would wait for the whole burst (per-hop transit p99 of 15 ms at an
/// edge with 50 viewers; see docs/BENCHMARKS.md, "Edge tree").
const FLUSH_AFTER: Duration = Duration::from_micros(250);
/// Messages from other shards handled per wake-up.
const SHARD_BATCH: usize = 512;
/// Turns in a row whose deadline was already due and that sent nothing, after which the
/// loop sleeps on the timer again: a deadline that stays in the past without producing
/// anything (a bug, or a session's timer bounded by `on_timers`' budget) must not spin a core.
const MAX_IDLE_DUE_TURNS: u32 = 4;

enum ShardCommand {
    Run(Command, oneshot::Sender<Reply>),
    Shutdown(oneshot::Sender<()>),
}

struct Shard {
    tx: mpsc::Sender<ShardCommand>,
    stats: Arc<EngineStats>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Sessions on the shard (published each turn; bumped at placement).
    load: Arc<AtomicUsize>,
    local_addr: SocketAddr,
}

/// Handle to the media engine (its shards); cheap to clone.
#[derive(Clone)]
pub struct Engine {
    shards: Arc<Vec<Shard>>,
    started: Instant,
    snapshot_interval: Duration,
}

impl Engine {
    /// Binds one UDP socket per shard and starts each shard on its own thread. Events go to
    /// `events` (never blocking: if the receiver lags, events are counted as dropped).
    pub fn start(
        config: EngineConfig,
        events: mpsc::Sender<EngineEvent>,
    ) -> std::io::Result<Engine> {
        let n = if config.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.threads
        }
        .min(64);
        let started = Instant::now();
        let sockets = bind_shards(config.bind, n)?;
        let (inbox_txs, inbox_rxs): (Vec<_>, Vec<_>) =
            (0..n).map(|_| mpsc::unbounded_channel()).unzip();
        let mut shards = Vec::with_capacity(n);
        for (i, (std_socket, inbox)) in sockets.into_iter().zip(inbox_rxs).enumerate() {
            let local_addr = std_socket.local_addr()?;
            // ICE-TCP on the same port; a port taken by another program costs TCP only.
            let tcp_listener = config
                .tcp
                .then(|| {
                    std::net::TcpListener::bind(local_addr)
                        .and_then(|l| l.set_nonblocking(true).map(|()| l))
                        .map_err(|e| warn!(%local_addr, "ICE-TCP off for this shard: {e}"))
                        .ok()
                })
                .flatten();
            let stats = Arc::new(EngineStats::default());
            let mut relay = Relay::new(
                RelayConfig {
                    local_addr,
                    public_ips: config.public_ips.clone(),
                    liveness: Liveness {
                        session_timeout: config.session_timeout,
                        connect_timeout: config.connect_timeout,
                    },
                    shard: i,
                    n_shards: n,
                    adaptation: config.adaptation,
                    fixed_threshold: false,
                    tcp: tcp_listener.is_some(),
                    record: config.record.is_some(),
                },
                stats.clone(),
                Instant::now(),
            )?;
            // Messages to the other shards leave the moment they are made: a source packet's
            // copy for another shard's viewers goes before this shard writes its own, and the
            // shards fan it out at the same time (queued until this shard's drain, the other
            // shard started after this one's fan-out: leaf hop p99 1.17–1.44 ms against
            // 0.78–0.84 ms, docs/BENCHMARKS.md, "Edge tree").
            let peers = inbox_txs.clone();
            relay.set_shard_sink(Box::new(move |to, msg| {
                if let Some(p) = peers.get(to) {
                    let _ = p.send((i, msg));
                }
            }));
            let (tx, rx) = mpsc::channel(1024);
            let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
            let load = Arc::new(AtomicUsize::new(0));
            let (tcp_tx, tcp_rx) = mpsc::channel(4096);
            let io = ShardIo {
                tcp_rx,
                tcp_tx: tcp_tx.clone(),
                tcp_out: HashMap::new(),
                relay,
                rx,
                inbox,
                events: events.clone(),
                snapshot: snapshot.clone(),
                load: load.clone(),
                sendq: SendQueue::new(config.gso),
                started,
                interval: config.snapshot_interval,
                record: config.record.clone(),
            };
            let realtime_priority = config.realtime_priority;
            std::thread::Builder::new()
                .name(format!("hallcast-media-{i}"))
                .spawn(move || {
                    if realtime_priority > 0 {
                        match set_fifo(realtime_priority) {
                            Ok(()) => info!(shard = i, priority = realtime_priority, "media shard runs under SCHED_FIFO"),
                            Err(e) => warn!(
                                shard = i,
                                "media.realtime_priority = {realtime_priority}: the kernel refused SCHED_FIFO ({e}); the shard runs on the default policy (needs CAP_SYS_NICE or LimitRTPRIO={realtime_priority})"
                            ),
                        }
                    }
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            warn!("media shard runtime failed to start: {e}");
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
                        if let Some(l) = tcp_listener {
                            match tokio::net::TcpListener::from_std(l) {
                                Ok(l) => {
                                    tokio::spawn(crate::tcp::accept(l, tcp_tx));
                                }
                                Err(e) => warn!("ICE-TCP listener: {e}"),
                            }
                        }
                        io.run(socket).await;
                    });
                })?;
            info!(shard = i, %local_addr, "media shard listening");
            shards.push(Shard {
                tx,
                stats,
                snapshot,
                load,
                local_addr,
            });
        }
        info!(
            n_shards = n,
            "media engine started (one UDP port per shard; every peer of a shard on its port)"
        );
        Ok(Engine {
            shards: Arc::new(shards),
            started,
            snapshot_interval: config.snapshot_interval,
        })
    }

    /// The first shard's UDP address (the port in firewall rules is this one and the next
    /// `threads - 1`).
    pub fn local_addr(&self) -> SocketAddr {
        self.shards[0].local_addr
    }

    /// Every shard's UDP address, by shard index.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.shards.iter().map(|s| s.local_addr).collect()
    }

    pub fn n_shards(&self) -> usize {
        self.shards.len()
    }

    /// The shards' counters, summed.
    pub fn stats(&self) -> EngineStats {
        let total = EngineStats::default();
        for s in self.shards.iter() {
            s.stats.accumulate(&total);
        }
        total
    }

    /// A publisher's shard: fixed per conference, so one shard decides "already live".
    fn source_shard(&self, conference: &str) -> usize {
        // FNV-1a: stable across runs and processes.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in conference.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        (h % self.shards.len() as u64) as usize
    }

    /// A viewer's shard: the one with the fewest sessions.
    fn viewer_shard(&self) -> usize {
        let i = (0..self.shards.len())
            .min_by_key(|i| self.shards[*i].load.load(Relaxed))
            .unwrap_or(0);
        self.shards[i].load.fetch_add(1, Relaxed);
        i
    }

    pub async fn publish(
        &self,
        conference: &str,
        offer: String,
    ) -> Result<SessionStarted, EngineError> {
        self.publish_as(conference, offer, IngestProtocol::Whip)
            .await
    }

    /// [`Engine::publish`] of a publisher that arrives over `protocol`: the relay's own
    /// ingest gateway says RTMP or SRT (only the HTTP layer, which knows its loopback ingest
    /// listener, may say so).
    pub async fn publish_as(
        &self,
        conference: &str,
        offer: String,
        protocol: IngestProtocol,
    ) -> Result<SessionStarted, EngineError> {
        let shard = self.source_shard(conference);
        self.start_session(
            shard,
            Command::Publish {
                conference: conference.into(),
                offer,
                protocol,
            },
        )
        .await
    }

    pub async fn subscribe(
        &self,
        conference: &str,
        offer: String,
    ) -> Result<SessionStarted, EngineError> {
        let shard = self.viewer_shard();
        self.start_session(
            shard,
            Command::Subscribe {
                conference: conference.into(),
                offer,
            },
        )
        .await
    }

    /// A downstream relay's offer (made by its [`Engine::pull`]): a relay consumer of every
    /// layer.
    pub async fn subscribe_relay(
        &self,
        conference: &str,
        offer: String,
    ) -> Result<SessionStarted, EngineError> {
        let shard = self.viewer_shard();
        self.start_session(
            shard,
            Command::SubscribeRelay {
                conference: conference.into(),
                offer,
            },
        )
        .await
    }

    /// Starts pulling `conference` from another relay, as its ICE client: the SDP offer to
    /// send there (`SessionStarted::answer` holds the offer). Give the answer to
    /// [`Engine::accept`].
    pub async fn pull(&self, conference: &str) -> Result<SessionStarted, EngineError> {
        self.pull_on(conference, None).await
    }

    /// [`Engine::pull`] from shard `shard` (its own UDP port; None or out of range: the
    /// conference's source shard). One 4-tuple carries one session, so two pulls from the
    /// same parent must leave from different shards' ports.
    pub async fn pull_on(
        &self,
        conference: &str,
        shard: Option<usize>,
    ) -> Result<SessionStarted, EngineError> {
        let shard = shard
            .filter(|s| *s < self.shards.len())
            .unwrap_or_else(|| self.source_shard(conference));
        self.start_session(
            shard,
            Command::Pull {
                conference: conference.into(),
            },
        )
        .await
    }

    pub async fn accept(&self, session: SessionId, answer: String) -> Result<(), EngineError> {
        match self
            .run_on_session(session, Command::Accept { session, answer })
            .await?
        {
            Reply::Done(r) => r,
            _ => Err(EngineError::Stopped),
        }
    }

    /// Caps a viewer's video layer and pauses or resumes its video (audio goes on).
    pub async fn set_video(
        &self,
        session: SessionId,
        max_layer: hallcast_core::Layer,
        paused: bool,
    ) -> Result<(), EngineError> {
        match self
            .run_on_session(
                session,
                Command::SetVideo {
                    session,
                    max_layer,
                    paused,
                },
            )
            .await?
        {
            Reply::Done(r) => r,
            _ => Err(EngineError::Stopped),
        }
    }

    /// The layers a relay consumer (a downstream relay's pull) wants forwarded.
    pub async fn set_relay_layers(
        &self,
        session: SessionId,
        layers: [bool; hallcast_core::Layer::MAX],
    ) -> Result<(), EngineError> {
        match self
            .run_on_session(session, Command::SetRelayLayers { session, layers })
            .await?
        {
            Reply::Done(r) => r,
            _ => Err(EngineError::Stopped),
        }
    }

    /// Ends a session; false if it did not exist.
    pub async fn end(&self, session: SessionId, reason: EndReason) -> Result<bool, EngineError> {
        match self
            .run_on_session(session, Command::End { session, reason })
            .await
        {
            Ok(Reply::Ended(e)) => Ok(e),
            Err(EngineError::UnknownSession) => Ok(false),
            Err(e) => Err(e),
            Ok(_) => Err(EngineError::Stopped),
        }
    }

    /// Ends every session of a conference on every shard (its publisher and its viewers);
    /// the number ended.
    pub async fn end_conference(&self, conference: &str) -> Result<usize, EngineError> {
        let mut n = 0;
        for shard in 0..self.shards.len() {
            if let Reply::EndedConference(k) = self
                .run(
                    shard,
                    Command::EndConference {
                        conference: conference.into(),
                    },
                )
                .await?
            {
                n += k;
            }
        }
        Ok(n)
    }

    /// Adds trickled remote candidates (`a=candidate:` lines or bare values).
    pub async fn trickle(
        &self,
        session: SessionId,
        candidates: Vec<String>,
    ) -> Result<(), EngineError> {
        match self
            .run_on_session(
                session,
                Command::Trickle {
                    session,
                    candidates,
                },
            )
            .await?
        {
            Reply::Done(r) => r,
            _ => Err(EngineError::Stopped),
        }
    }

    /// The shards' latest published snapshots, merged. Never waits on a media thread;
    /// fails if a shard stopped or has not published for three intervals (wedged).
    pub async fn snapshot(&self) -> Result<Snapshot, EngineError> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let stale_after = (self.snapshot_interval * 3).as_millis() as u64 + 1000;
        let mut merged = Snapshot {
            taken_ms: now_ms,
            ..Snapshot::default()
        };
        for s in self.shards.iter() {
            if s.tx.is_closed() {
                return Err(EngineError::Stopped);
            }
            let snap = s.snapshot.load();
            if now_ms.saturating_sub(snap.taken_ms) > stale_after && now_ms > stale_after {
                return Err(EngineError::Stopped);
            }
            merged.taken_ms = merged.taken_ms.min(snap.taken_ms);
            merged.sessions.extend(snap.sessions.iter().cloned());
            merged.shards.extend(snap.shards.iter().cloned());
            for c in &snap.conferences {
                match merged.conferences.iter_mut().find(|m| m.id == c.id) {
                    Some(m) => {
                        m.live |= c.live;
                        m.audio_codec = m.audio_codec.or(c.audio_codec);
                        m.video_codec = m.video_codec.or(c.video_codec);
                        m.n_subscribers += c.n_subscribers;
                        m.n_relays += c.n_relays;
                        m.audio_bitrate += c.audio_bitrate;
                        if m.preflight.is_none() {
                            m.preflight = c.preflight.clone();
                        }
                        m.keyframe_requests_upstream += c.keyframe_requests_upstream;
                        m.keyframe_requests_downstream += c.keyframe_requests_downstream;
                        m.sent_bytes += c.sent_bytes;
                        // Every shard measures the same producer: keep the largest reading.
                        for (a, b) in m.layer_bitrates.iter_mut().zip(c.layer_bitrates) {
                            *a = (*a).max(b);
                        }
                    }
                    None => merged.conferences.push(c.clone()),
                }
            }
        }
        Ok(merged)
    }

    /// Ends every session (RTCP BYE / DTLS close where possible) and stops every shard.
    pub async fn shutdown(&self) {
        for s in self.shards.iter() {
            let (reply, rx) = oneshot::channel();
            if s.tx.send(ShardCommand::Shutdown(reply)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    async fn run_on_session(&self, session: SessionId, cmd: Command) -> Result<Reply, EngineError> {
        let shard = shard_of(session);
        if shard >= self.shards.len() {
            return Err(EngineError::UnknownSession);
        }
        self.run(shard, cmd).await
    }

    /// Runs a command that starts a session (publish, subscribe, pull) on `shard`.
    async fn start_session(
        &self,
        shard: usize,
        cmd: Command,
    ) -> Result<SessionStarted, EngineError> {
        match self.run(shard, cmd).await? {
            Reply::Started(r) => r,
            _ => Err(EngineError::Stopped),
        }
    }

    async fn run(&self, shard: usize, cmd: Command) -> Result<Reply, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.shards[shard]
            .tx
            .send(ShardCommand::Run(cmd, reply))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }
}

/// One socket per shard on consecutive ports from `bind`'s (port 0: the first one
/// ephemeral, the others right after it, retried if one of those is taken), so the firewall
/// rule is always one range.
fn bind_shards(bind: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    let open = |port: u16| -> std::io::Result<std::net::UdpSocket> {
        let s = std::net::UdpSocket::bind(SocketAddr::new(bind.ip(), port))?;
        s.set_nonblocking(true)?;
        crate::udp::grow_buffers(&s);
        // Each datagram's real destination picks the candidate it came to (see
        // `udp::candidate_destination`); without it only a single candidate works.
        if let Err(e) = crate::udp::enable_destination_info(&s) {
            warn!("cannot learn datagrams' destination addresses (IP_PKTINFO): {e}");
        }
        Ok(s)
    };
    let range = |first: u16| -> std::io::Result<Vec<std::net::UdpSocket>> {
        (0..n)
            .map(|i| {
                let port = first.checked_add(i as u16).ok_or_else(|| {
                    std::io::Error::new(ErrorKind::InvalidInput, "media port range past 65535")
                })?;
                open(port)
            })
            .collect()
    };
    if bind.port() != 0 || n == 1 {
        return range(bind.port());
    }
    let mut last = None;
    for _ in 0..32 {
        let first = open(0)?;
        let port = first.local_addr()?.port();
        drop(first);
        match range(port) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free media port range")))
}

/// One shard's I/O.
struct ShardIo {
    /// Frames and connection changes from the ICE-TCP tasks (the sender is kept so the
    /// channel never closes when TCP is off).
    tcp_rx: mpsc::Receiver<TcpIn>,
    #[allow(dead_code)]
    tcp_tx: mpsc::Sender<TcpIn>,
    /// Each open ICE-TCP connection's writer, by peer address.
    tcp_out: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    relay: Relay,
    rx: mpsc::Receiver<ShardCommand>,
    inbox: mpsc::UnboundedReceiver<(usize, ShardMessage)>,
    events: mpsc::Sender<EngineEvent>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    load: Arc<AtomicUsize>,
    sendq: SendQueue,
    started: Instant,
    interval: Duration,
    /// The queue to the recorder (see [`EngineConfig::record`]).
    record: Option<hallcast_record::RecordTx>,
}

impl ShardIo {
    async fn run(mut self, socket: UdpSocket) {
        let mut buf = vec![0u8; 2048];
        let mut control = crate::udp::control_buffer();
        let local_addr = self.relay.local_addr();
        let mut next_snapshot = Instant::now();
        let mut idle_due_turns = 0;
        loop {
            let deadline = self.relay.poll_timeout().min(next_snapshot);
            // Already due: a turn now, not on the timer. tokio's timer counts in whole
            // milliseconds and rounds a deadline up to the next one, and a pacer (str0m's
            // hands out one packet per timeout, asking for the next "1 µs later") then sends
            // one packet per session per millisecond: a 50-packet keyframe to a paced viewer
            // took 50 ms (docs/BENCHMARKS.md, "Edge tree"). The turn still yields first, so
            // the runtime polls the socket and the other tasks on this thread.
            let due = deadline <= Instant::now() && idle_due_turns < MAX_IDLE_DUE_TURNS;
            tokio::select! {
                r = socket.readable() => {
                    if r.is_ok() {
                        let mut last_flush = Instant::now();
                        for _ in 0..RECV_BATCH {
                            let r = socket.try_io(Interest::READABLE, || {
                                crate::udp::recv_with_destination(&socket, &mut buf, &mut control)
                            });
                            match r {
                                Ok(r) => {
                                    let to = SocketAddr::new(
                                        r.destination.unwrap_or(local_addr.ip()),
                                        local_addr.port(),
                                    );
                                    let now = Instant::now();
                                    self.relay.handle_datagram(now, r.source, to, &buf[..r.len]);
                                    if now.saturating_duration_since(last_flush) >= FLUSH_AFTER {
                                        self.relay.drain_now();
                                        // Packets for the other shards' viewers go too.
                                        self.pump();
                                        self.flush(&socket);
                                        last_flush = Instant::now();
                                    } else if self.relay.n_transmits() >= FLUSH_AT {
                                        self.flush(&socket);
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
                cmd = self.rx.recv() => {
                    match cmd {
                        Some(ShardCommand::Run(cmd, reply)) => {
                            // What other shards said before this command was sent comes
                            // first (a source that started there, before a viewer's WHEP here).
                            self.drain_inbox(Instant::now());
                            let r = self.relay.handle_command(Instant::now(), cmd);
                            // The command's events (a session ended, a broadcast started) go
                            // out before its reply: whoever waits on the reply then finds them
                            // already on their way.
                            self.pump();
                            let _ = reply.send(r);
                        }
                        Some(ShardCommand::Shutdown(reply)) => {
                            self.relay.shutdown(Instant::now());
                            self.pump();
                            self.flush(&socket);
                            let _ = reply.send(());
                            return;
                        }
                        None => {
                            self.relay.shutdown(Instant::now());
                            self.flush(&socket);
                            return;
                        }
                    }
                }
                Some(m) = self.tcp_rx.recv() => {
                    let now = Instant::now();
                    self.on_tcp(now, m);
                    // What else the connections sent meanwhile, in the same turn.
                    for _ in 0..RECV_BATCH {
                        match self.tcp_rx.try_recv() {
                            Ok(m) => self.on_tcp(now, m),
                            Err(_) => break,
                        }
                    }
                }
                Some((from, msg)) = self.inbox.recv() => {
                    let now = Instant::now();
                    self.relay.handle_shard_message(now, from, msg);
                    self.drain_inbox(now);
                }
                _ = tokio::time::sleep_until(deadline.into()), if !due => {}
                _ = tokio::task::yield_now(), if due => {}
            }
            let now = Instant::now();
            self.relay.handle_timeout(now);
            self.pump();
            let sent = self.flush(&socket);
            // Only a send clears the count: a deadline stuck in the past gets its few
            // turns, then waits on the timer until the relay sends something again.
            if sent {
                idle_due_turns = 0;
            } else if due {
                idle_due_turns += 1;
            }
            if now >= next_snapshot {
                next_snapshot = now + self.interval;
                let ms = now.saturating_duration_since(self.started).as_millis() as u64;
                self.snapshot.store(Arc::new(self.relay.snapshot(now, ms)));
            }
        }
    }

    fn on_tcp(&mut self, now: Instant, m: TcpIn) {
        match m {
            TcpIn::Open { peer, writer } => {
                self.tcp_out.insert(peer, writer);
            }
            TcpIn::Frame { peer, local, data } => {
                self.relay.handle_tcp(now, peer, local, &data);
            }
            TcpIn::Closed { peer } => {
                self.tcp_out.remove(&peer);
            }
        }
    }

    fn drain_inbox(&mut self, now: Instant) {
        for _ in 0..SHARD_BATCH {
            match self.inbox.try_recv() {
                Ok((from, msg)) => self.relay.handle_shard_message(now, from, msg),
                Err(_) => break,
            }
        }
    }

    /// Events to the relay's consumer, packets to the recorder.
    fn pump(&mut self) {
        while let Some(e) = self.relay.poll_event() {
            if self.events.try_send(e).is_err() {
                self.relay.stats().events_dropped.fetch_add(1, Relaxed);
            }
        }
        // (Messages to the other shards do not wait here: the relay hands them to its sink.)
        while let Some(item) = self.relay.poll_record() {
            if let Some(r) = &self.record {
                r.send(item);
            }
        }
        self.load.store(self.relay.n_sessions(), Relaxed);
    }

    /// Sends what the relay has to send; whether there was anything.
    fn flush(&mut self, socket: &UdpSocket) -> bool {
        let mut tcp = false;
        while let Some(t) = self.relay.poll_transmit() {
            if t.tcp {
                self.send_tcp(t.destination, t.contents);
                tcp = true;
            } else {
                self.sendq.push_from(t.destination, t.source, t.contents);
            }
        }
        if self.sendq.is_empty() {
            if tcp {
                self.relay.handle_sent(Instant::now());
            }
            return tcp;
        }
        let f = self.sendq.flush(socket);
        self.relay.handle_sent(Instant::now());
        let stats = self.relay.stats();
        stats.tx_datagrams.fetch_add(f.sent as u64, Relaxed);
        stats.tx_bytes.fetch_add(f.bytes as u64, Relaxed);
        stats.tx_dropped.fetch_add(f.dropped as u64, Relaxed);
        stats
            .tx_gso_messages
            .fetch_add(f.gso_messages as u64, Relaxed);
        stats.tx_syscalls.fetch_add(f.syscalls as u64, Relaxed);
        true
    }

    /// A packet for an ICE-TCP peer: to its connection's writer, or dropped (connection
    /// gone, or a peer that does not read fast enough).
    fn send_tcp(&mut self, peer: SocketAddr, contents: Vec<u8>) {
        let stats = self.relay.stats();
        let n = contents.len() as u64;
        match self.tcp_out.get(&peer).map(|w| w.try_send(contents)) {
            Some(Ok(())) => {
                stats.tx_datagrams.fetch_add(1, Relaxed);
                stats.tx_bytes.fetch_add(n, Relaxed);
            }
            _ => {
                stats.tx_dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Puts the calling thread under SCHED_FIFO at `priority` (`media.realtime_priority`), with
/// SCHED_RESET_ON_FORK: threads it starts (a runtime's blocking pool) get the default policy.
/// A shard's loop sleeps whenever nothing arrived and nothing is due, so it never holds its
/// core without work; the kernel's real-time throttling (`sched_rt_runtime_us`, 95 % by
/// default) bounds it if it ever did. The workspace denies `unsafe`; this call is an
/// exception as `udp.rs`'s `sendmmsg` is: nix wraps no `sched_setscheduler`.
#[allow(unsafe_code)]
fn set_fifo(priority: u8) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: `param` is a valid `sched_param` for the call's duration; pid 0 is the calling
    // thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param) }
        == 0
    {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
