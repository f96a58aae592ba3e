//! [`Net`](crate::sim::Net) holds one or more [`Relay`](crate::relay::Relay)s (each at its own `127.0.0.x:port`; relays of one
//! group are the shards of one process and exchange
//! [`ShardMessage`](crate::relay::ShardMessage)s as the driver does) and str0m peers
//! ([`Publisher`](crate::sim::Publisher), [`Viewer`](crate::sim::Viewer)), each at its own address. Nothing touches a socket or the
//! wall clock: the clock starts at `Instant::now()` once and then only moves forward, to the
//! earliest of every node's next deadline and the next datagram delivery. Datagrams take a
//! fixed link delay ([`Net::delay`](crate::sim::Net::delay)); a per-link [`LossFn`](crate::sim::LossFn) may drop chosen ones, and a
//! per-link [`LinkModel`](crate::sim::LinkModel) ([`Net::set_link`](crate::sim::Net::set_link)) puts a drop-tail queue and a bottleneck
//! whose rate follows a [`LinkTrace`](crate::sim::LinkTrace) in front of the delay (see [`link`]). The same
//! inputs give the same run up to what the stacks draw at random (ids, ICE credentials,
//! keys, the handshake's signatures). Those can change when things are sent: on a
//! bottleneck a few bytes more or less shift every later departure, and a run that keeps its
//! queue near the limit can then take another course. Seen in `adapt`'s oscillating trace:
//! one of two sets of figures from run to run, whatever the build (seeding str0m's id
//! generator did not change that; docs/BENCHMARKS.md, "Per-packet cost against the floor",
//! 2026-12-06): compare such runs in pairs run back to back, or over several runs. What a
//! viewer received can be read as frames, playback and freezes ([`playback`]).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec as StCodec;
use str0m::media::{
    Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid, Pt, Rid, Simulcast,
    SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use crate::SessionId;
use crate::api::{EndReason, EngineError, EngineEvent, EngineStats};
use crate::relay::{Command, Relay, RelayConfig, Reply, ShardMessage};

pub mod link;
pub mod playback;

pub use link::{Departure, LinkModel, LinkStats, LinkTrace, LossBurst};
pub use playback::{Frame, Freeze, Playback};

/// A relay of the [`Net`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelayId(pub usize);

/// A peer (publisher or viewer) of the [`Net`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub usize);

/// A datagram on the wire.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// When it was sent.
    pub sent: Instant,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub contents: Vec<u8>,
}

impl Datagram {
    /// The clear RTP header fields of an SRTP packet (not RTCP, STUN or DTLS).
    pub fn rtp(&self) -> Option<RtpInfo> {
        rtp_info(&self.contents)
    }
}

/// The unencrypted part of an RTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpInfo {
    pub pt: u8,
    pub seq: u16,
    pub ssrc: u32,
}

/// The RTP header of `b`, if it is an RTP (not RTCP) packet.
pub fn rtp_info(b: &[u8]) -> Option<RtpInfo> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let pt = b[1] & 0x7f;
    // RTCP packet types 192..=223 show up as 64..=95 without the marker bit.
    if (64..=95).contains(&pt) {
        return None;
    }
    Some(RtpInfo {
        pt,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
    })
}

/// The header extensions of an RTP packet in RFC 8285's one-byte form, `(id, value)` in
/// order (empty without the extension bit or in the two-byte form; stops at a malformed one).
pub fn rtp_extensions(b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    if b.len() < 12 || b[0] & 0x10 == 0 {
        return out;
    }
    let start = 12 + 4 * usize::from(b[0] & 0x0f);
    let Some(head) = b.get(start..start + 4) else {
        return out;
    };
    if head[..2] != [0xbe, 0xde] {
        return out;
    }
    let len = 4 * usize::from(u16::from_be_bytes([head[2], head[3]]));
    let Some(mut e) = b.get(start + 4..start + 4 + len) else {
        return out;
    };
    while let Some(&first) = e.first() {
        if first == 0 {
            e = &e[1..];
            continue;
        }
        let (id, n) = (first >> 4, usize::from(first & 0x0f) + 1);
        if id == 15 || e.len() < 1 + n {
            break;
        }
        out.push((id, &e[1..1 + n]));
        e = &e[1 + n..];
    }
    out
}

/// Decides, per datagram of a link, whether it is lost (`true`: dropped).
pub type LossFn = Box<dyn FnMut(&Datagram) -> bool>;

/// Called with `true` just before the network calls into a [`Relay`] (`new`, `handle_*`,
/// `poll_transmit`/`poll_shard_message`/`poll_event`) and with `false` just after: lets a
/// benchmark attribute what the relay allocates (see `benches/src/bin/memory.rs`). Not
/// called around `poll_timeout`, which only reads.
pub type RelayHook = fn(bool);

/// Called with a datagram for a relay and `true` just before the relay's `handle_datagram`,
/// and with `false` just after: lets a benchmark time what the relay spends on chosen
/// datagrams (e.g. RTCP feedback from viewers).
pub type DatagramHook = fn(&Datagram, bool);

/// Runs `f` between the two calls of `hook`.
fn in_relay<R>(hook: Option<RelayHook>, f: impl FnOnce() -> R) -> R {
    if let Some(h) = hook {
        h(true);
    }
    let r = f();
    if let Some(h) = hook {
        h(false);
    }
    r
}

struct InFlight {
    at: Instant,
    n: u64,
    d: Datagram,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.n) == (o.at, o.n)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    // Reversed: the heap pops the earliest delivery (then the first sent) first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.n).cmp(&(self.at, self.n))
    }
}

/// Messages between shards that went through the shards' sinks: group, from, to, message.
type ShardMail = Arc<std::sync::Mutex<Vec<(usize, usize, usize, ShardMessage)>>>;

struct RelayNode {
    relay: Relay,
    /// Relays of one group are the shards of one process.
    group: usize,
}

/// A peer of the network.
pub enum PeerNode {
    Publisher(Publisher),
    Viewer(Viewer),
}

impl PeerNode {
    pub fn core(&self) -> &PeerCore {
        match self {
            PeerNode::Publisher(p) => &p.core,
            PeerNode::Viewer(v) => &v.core,
        }
    }

    fn core_mut(&mut self) -> &mut PeerCore {
        match self {
            PeerNode::Publisher(p) => &mut p.core,
            PeerNode::Viewer(v) => &mut v.core,
        }
    }

    fn poll_timeout(&self) -> Instant {
        match self {
            PeerNode::Publisher(p) => p.poll_timeout(),
            PeerNode::Viewer(v) => v.core.timeout,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            PeerNode::Publisher(p) => p.handle_timeout(now),
            PeerNode::Viewer(v) => v.handle_timeout(now),
        }
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        match self {
            PeerNode::Publisher(p) => p.handle_datagram(now, from, buf),
            PeerNode::Viewer(v) => v.handle_datagram(now, from, buf),
        }
    }
}

/// The simulated network: relays, peers, datagrams in flight, and the virtual clock.
pub struct Net {
    start: Instant,
    now: Instant,
    /// One-way delay of every link.
    pub delay: Duration,
    relays: Vec<RelayNode>,
    peers: Vec<PeerNode>,
    in_flight: BinaryHeap<InFlight>,
    n_sent: u64,
    losses: Vec<(SocketAddr, SocketAddr, LossFn)>,
    links: Vec<(SocketAddr, SocketAddr, link::Link)>,
    events: Vec<(Instant, RelayId, EngineEvent)>,
    n_groups: usize,
    /// What shards with a sink ([`Net::add_shards_with_sinks`]) handed to it: group, from,
    /// to, message.
    shard_mail: ShardMail,
    /// Messages between shards delivered from `shard_mail`.
    pub n_shard_mail: u64,
    /// Of their packets, those whose sequence number was not above the last one of the same
    /// shards, kind and layer (a copy handed over twice, or out of order).
    pub n_shard_mail_out_of_order: u64,
    shard_mail_seq: std::collections::HashMap<
        (
            usize,
            usize,
            usize,
            hallcast_core::media::MediaKind,
            hallcast_core::media::Layer,
        ),
        u64,
    >,
    /// Datagrams dropped by loss functions, and delivered.
    pub n_dropped: u64,
    pub n_delivered: u64,
    relay_hook: Option<RelayHook>,
    datagram_hook: Option<DatagramHook>,
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

impl Net {
    pub fn new() -> Net {
        let start = Instant::now();
        Net {
            start,
            now: start,
            delay: Duration::from_millis(5),
            relays: vec![],
            peers: vec![],
            in_flight: BinaryHeap::new(),
            n_sent: 0,
            losses: vec![],
            links: vec![],
            events: vec![],
            n_groups: 0,
            shard_mail: ShardMail::default(),
            n_shard_mail: 0,
            n_shard_mail_out_of_order: 0,
            shard_mail_seq: Default::default(),
            n_dropped: 0,
            n_delivered: 0,
            relay_hook: None,
            datagram_hook: None,
        }
    }

    /// Brackets every later call into a relay with `hook` (see [`RelayHook`]).
    pub fn set_relay_hook(&mut self, hook: RelayHook) {
        self.relay_hook = Some(hook);
    }

    /// Brackets every later `handle_datagram` of a relay with `hook` (see [`DatagramHook`]).
    pub fn set_datagram_hook(&mut self, hook: DatagramHook) {
        self.datagram_hook = Some(hook);
    }

    /// Bytes (capacities) of the datagrams `from` sent that are still on the wire: the
    /// sender allocated them, the network owns them until delivery.
    pub fn in_flight_bytes(&self, from: SocketAddr) -> usize {
        self.in_flight
            .iter()
            .filter(|f| f.d.from == from)
            .map(|f| f.d.contents.capacity())
            .sum()
    }

    /// Takes the event log (what [`Net::events`] returns) out of the network.
    pub fn take_events(&mut self) -> Vec<(Instant, RelayId, EngineEvent)> {
        std::mem::take(&mut self.events)
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the network was created.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// A relay of its own (one shard, its own process) at `127.0.0.<n>:4000`; `configure`
    /// may change its settings (liveness).
    pub fn add_relay(&mut self, configure: impl FnOnce(&mut RelayConfig)) -> RelayId {
        self.add_shards(1, configure)[0]
    }

    /// `n` relays as the shards of one process: one IP, consecutive ports.
    pub fn add_shards(
        &mut self,
        n: usize,
        configure: impl FnOnce(&mut RelayConfig),
    ) -> Vec<RelayId> {
        let group = self.n_groups;
        self.n_groups += 1;
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + group as u8));
        let mut base = RelayConfig::new(SocketAddr::new(ip, 4000));
        configure(&mut base);
        (0..n)
            .map(|i| {
                let mut config = base.clone();
                config.local_addr = SocketAddr::new(ip, 4000 + i as u16);
                config.shard = i;
                config.n_shards = n;
                let now = self.now;
                let relay = in_relay(self.relay_hook, || {
                    Relay::new(config, Arc::new(EngineStats::default()), now)
                })
                .expect("relay config");
                self.relays.push(RelayNode { relay, group });
                RelayId(self.relays.len() - 1)
            })
            .collect()
    }

    /// [`Net::add_shards`] with each shard's messages to the others handed to a sink the
    /// moment they are made ([`Relay::set_shard_sink`], as the engine's driver does), not
    /// queued for `poll_shard_message`; delivered at once all the same.
    pub fn add_shards_with_sinks(
        &mut self,
        n: usize,
        configure: impl FnOnce(&mut RelayConfig),
    ) -> Vec<RelayId> {
        let ids = self.add_shards(n, configure);
        for id in &ids {
            let r = &mut self.relays[id.0];
            let (group, from) = (r.group, r.relay.shard());
            let mail = self.shard_mail.clone();
            r.relay.set_shard_sink(Box::new(move |to, msg| {
                mail.lock().unwrap().push((group, from, to, msg));
            }));
        }
        ids
    }

    pub fn relay(&self, r: RelayId) -> &Relay {
        &self.relays[r.0].relay
    }

    pub fn relay_mut(&mut self, r: RelayId) -> &mut Relay {
        &mut self.relays[r.0].relay
    }

    pub fn relay_addr(&self, r: RelayId) -> SocketAddr {
        self.relays[r.0].relay.local_addr()
    }

    fn next_peer_addr(&self) -> SocketAddr {
        let n = self.peers.len();
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                1 + (n / 200) as u8,
                1 + (n % 200) as u8,
            )),
            50000,
        )
    }

    /// Gives `relay` a command now.
    pub fn command(&mut self, relay: RelayId, cmd: Command) -> Reply {
        let now = self.now;
        let r = &mut self.relays[relay.0].relay;
        in_relay(self.relay_hook, || r.handle_command(now, cmd))
    }

    /// A publisher with the default stream publishing `conference` on `relay`.
    pub fn publish(&mut self, relay: RelayId, conference: &str) -> Result<PeerId, EngineError> {
        self.publish_with(relay, conference, PublisherOpts::default())
    }

    pub fn publish_with(
        &mut self,
        relay: RelayId,
        conference: &str,
        opts: PublisherOpts,
    ) -> Result<PeerId, EngineError> {
        let addr = self.next_peer_addr();
        let (mut p, offer, pending) = Publisher::offer(addr, relay, opts, self.now);
        let reply = self.command(
            relay,
            Command::Publish {
                conference: conference.into(),
                offer: offer.to_sdp_string(),
                protocol: hallcast_core::preflight::IngestProtocol::Whip,
            },
        );
        let started = started(reply)?;
        p.accept(self.now, pending, &started.answer);
        p.core.session = Some(started.session);
        self.peers.push(PeerNode::Publisher(p));
        Ok(PeerId(self.peers.len() - 1))
    }

    /// A publisher with `opts` on `relay`, run until it is connected and sending video (for
    /// tests: panics if it is not within 2 s).
    pub fn live_publisher(
        &mut self,
        relay: RelayId,
        conference: &str,
        opts: PublisherOpts,
    ) -> PeerId {
        let p = self
            .publish_with(relay, conference, opts)
            .expect("the relay refused the publisher");
        assert!(
            self.run_until_cond(Duration::from_secs(2), |n| n.publisher(p).frames_sent > 0),
            "the publisher never connected"
        );
        p
    }

    /// A viewer (audio and video) of `conference` on `relay`.
    pub fn subscribe(&mut self, relay: RelayId, conference: &str) -> Result<PeerId, EngineError> {
        let addr = self.next_peer_addr();
        let (mut v, offer, pending) = Viewer::offer(addr, relay, self.now);
        let reply = self.command(
            relay,
            Command::Subscribe {
                conference: conference.into(),
                offer: offer.to_sdp_string(),
            },
        );
        let started = started(reply)?;
        v.accept(self.now, pending, &started.answer);
        v.core.session = Some(started.session);
        self.peers.push(PeerNode::Viewer(v));
        Ok(PeerId(self.peers.len() - 1))
    }

    /// `downstream` pulls `conference` from `upstream` as its ICE client: its offer goes to
    /// `upstream` as a subscription, whose answer it accepts. The sessions on `downstream`
    /// and on `upstream`.
    pub fn pull(
        &mut self,
        downstream: RelayId,
        upstream: RelayId,
        conference: &str,
    ) -> Result<(SessionId, SessionId), EngineError> {
        let offer = started(self.command(
            downstream,
            Command::Pull {
                conference: conference.into(),
            },
        ))?;
        let answer = started(self.command(
            upstream,
            Command::SubscribeRelay {
                conference: conference.into(),
                offer: offer.answer,
            },
        ))?;
        match self.command(
            downstream,
            Command::Accept {
                session: offer.session,
                answer: answer.answer,
            },
        ) {
            Reply::Done(r) => r?,
            other => panic!("unexpected reply to Accept: {other:?}"),
        }
        Ok((offer.session, answer.session))
    }

    /// Ends a peer's session on its relay (as a DELETE would).
    pub fn end(&mut self, peer: PeerId, reason: EndReason) -> bool {
        let core = self.peers[peer.0].core();
        let (relay, session) = (core.relay, core.session.expect("a session"));
        matches!(
            self.command(relay, Command::End { session, reason }),
            Reply::Ended(true)
        )
    }

    /// The peer stops processing and sending anything (a closed laptop lid).
    pub fn vanish(&mut self, peer: PeerId) {
        let core = self.peers[peer.0].core_mut();
        core.vanished = true;
        core.out.clear();
    }

    pub fn peer(&self, p: PeerId) -> &PeerNode {
        &self.peers[p.0]
    }

    pub fn publisher(&self, p: PeerId) -> &Publisher {
        match &self.peers[p.0] {
            PeerNode::Publisher(x) => x,
            PeerNode::Viewer(_) => panic!("{p:?} is a viewer"),
        }
    }

    pub fn publisher_mut(&mut self, p: PeerId) -> &mut Publisher {
        match &mut self.peers[p.0] {
            PeerNode::Publisher(x) => x,
            PeerNode::Viewer(_) => panic!("{p:?} is a viewer"),
        }
    }

    pub fn viewer(&self, p: PeerId) -> &Viewer {
        match &self.peers[p.0] {
            PeerNode::Viewer(x) => x,
            PeerNode::Publisher(_) => panic!("{p:?} is a publisher"),
        }
    }

    pub fn viewer_mut(&mut self, p: PeerId) -> &mut Viewer {
        match &mut self.peers[p.0] {
            PeerNode::Viewer(x) => x,
            PeerNode::Publisher(_) => panic!("{p:?} is a publisher"),
        }
    }

    /// The viewer asks for a keyframe (RTCP PLI) now.
    pub fn request_keyframe(&mut self, viewer: PeerId) {
        let now = self.now;
        self.viewer_mut(viewer).request_keyframe(now);
    }

    /// Datagrams from `from` to `to` pass through `loss` (`true`: dropped).
    pub fn set_loss(&mut self, from: SocketAddr, to: SocketAddr, loss: LossFn) {
        self.losses.push((from, to, loss));
    }

    /// Datagrams from `from` to `to` (after any [`LossFn`] of that link) go through `model`
    /// from now on: its trace's offset zero is now. Replaces an earlier model of the link
    /// (and its statistics).
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, model: LinkModel) {
        self.links.retain(|(f, t, _)| (*f, *t) != (from, to));
        self.links
            .push((from, to, link::Link::new(model, self.now)));
    }

    /// What happened on the modelled link from `from` to `to`.
    pub fn link_stats(&self, from: SocketAddr, to: SocketAddr) -> Option<&LinkStats> {
        self.link(from, to).map(|l| &l.stats)
    }

    /// The modelled link from `from` to `to`.
    pub fn link(&self, from: SocketAddr, to: SocketAddr) -> Option<&link::Link> {
        self.links
            .iter()
            .find(|(f, t, _)| (*f, *t) == (from, to))
            .map(|(_, _, l)| l)
    }

    /// The address of a peer.
    pub fn peer_addr(&self, p: PeerId) -> SocketAddr {
        self.peers[p.0].core().addr
    }

    /// Every event of every relay so far, with when and where it happened.
    pub fn events(&self) -> &[(Instant, RelayId, EngineEvent)] {
        &self.events
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    /// Runs until the virtual clock reads `end`.
    pub fn run_until(&mut self, end: Instant) {
        self.run_while(end, |_| true);
    }

    /// Runs until `done` holds (true) or `limit` of virtual time passed (false).
    pub fn run_until_cond(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        self.run_while(end, |n| !done(n));
        done(self)
    }

    fn run_while(&mut self, end: Instant, mut go_on: impl FnMut(&Net) -> bool) {
        let mut same_instant = 0u32;
        loop {
            self.pump();
            if !go_on(self) {
                return;
            }
            let next = self.next_wake();
            if next > end {
                self.now = self.now.max(end);
                return;
            }
            if next <= self.now {
                same_instant += 1;
                assert!(
                    same_instant < 100_000,
                    "the network does not advance past {:?}",
                    self.elapsed()
                );
            } else {
                same_instant = 0;
                self.now = next;
            }
            self.turn();
        }
    }

    fn next_wake(&self) -> Instant {
        let mut t = self.now + Duration::from_secs(3600);
        if let Some(f) = self.in_flight.peek() {
            t = t.min(f.at);
        }
        for r in &self.relays {
            t = t.min(r.relay.poll_timeout());
        }
        for p in &self.peers {
            if !p.core().vanished {
                t = t.min(p.poll_timeout());
            }
        }
        t
    }

    /// Deliveries due, then every due timeout.
    fn turn(&mut self) {
        let now = self.now;
        while self.in_flight.peek().is_some_and(|f| f.at <= now) {
            let f = self.in_flight.pop().expect("peeked");
            self.deliver(f.d);
        }
        for r in &mut self.relays {
            if r.relay.poll_timeout() <= now {
                in_relay(self.relay_hook, || r.relay.handle_timeout(now));
            }
        }
        for p in &mut self.peers {
            if !p.core().vanished && p.poll_timeout() <= now {
                p.handle_timeout(now);
            }
        }
    }

    fn deliver(&mut self, d: Datagram) {
        let now = self.now;
        if let Some(r) = self
            .relays
            .iter_mut()
            .find(|r| r.relay.local_addr() == d.to)
        {
            self.n_delivered += 1;
            if let Some(h) = self.datagram_hook {
                h(&d, true);
            }
            in_relay(self.relay_hook, || {
                r.relay.handle_datagram(now, d.from, d.to, &d.contents)
            });
            if let Some(h) = self.datagram_hook {
                h(&d, false);
            }
            return;
        }
        if let Some(p) = self.peers.iter_mut().find(|p| p.core().addr == d.to)
            && !p.core().vanished
        {
            self.n_delivered += 1;
            p.handle_datagram(now, d.from, &d.contents);
        }
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, contents: Vec<u8>) {
        let d = Datagram {
            sent: self.now,
            from,
            to,
            contents,
        };
        for (f, t, loss) in &mut self.losses {
            if *f == from && *t == to && loss(&d) {
                self.n_dropped += 1;
                return;
            }
        }
        let mut leaves = self.now;
        if let Some((_, _, l)) = self
            .links
            .iter_mut()
            .find(|(f, t, _)| *f == from && *t == to)
        {
            match l.offer(self.now, d.contents.len()) {
                link::Verdict::Leaves(at) => leaves = at,
                link::Verdict::QueueFull | link::Verdict::Lost => {
                    self.n_dropped += 1;
                    return;
                }
            }
        }
        self.n_sent += 1;
        self.in_flight.push(InFlight {
            at: leaves + self.delay,
            n: self.n_sent,
            d,
        });
    }

    /// Moves every node's outputs: datagrams onto the links, shard messages to their
    /// shards (at once, as between threads of one process), events into the log.
    fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            let mut out = Vec::new();
            let mut shard_msgs = Vec::new();
            for (i, r) in self.relays.iter_mut().enumerate() {
                let from = r.relay.local_addr();
                let hook = self.relay_hook;
                while let Some(t) = in_relay(hook, || r.relay.poll_transmit()) {
                    out.push((from, t.destination, t.contents));
                }
                r.relay.handle_sent(now);
                while let Some((to, msg)) = in_relay(hook, || r.relay.poll_shard_message()) {
                    shard_msgs.push((r.group, r.relay.shard(), to, msg));
                }
                while let Some(e) = in_relay(hook, || r.relay.poll_event()) {
                    self.events.push((now, RelayId(i), e));
                }
            }
            let mut mail = std::mem::take(&mut *self.shard_mail.lock().unwrap());
            self.n_shard_mail += mail.len() as u64;
            for (group, from, to, msg) in &mail {
                match msg {
                    ShardMessage::Packet { packet, .. } => {
                        let key = (*group, *from, *to, packet.kind, packet.layer);
                        let last = self.shard_mail_seq.insert(key, packet.seq);
                        if last.is_some_and(|l| l >= packet.seq) {
                            self.n_shard_mail_out_of_order += 1;
                        }
                    }
                    // A new source (or none): a new relay consumer, its own sequence space.
                    ShardMessage::SourceStarted { .. } | ShardMessage::SourceEnded { .. } => {
                        self.shard_mail_seq
                            .retain(|k, _| (k.0, k.1, k.2) != (*group, *from, *to));
                    }
                    ShardMessage::KeyframeRequest { .. } => {}
                }
            }
            shard_msgs.append(&mut mail);
            for p in &mut self.peers {
                let core = p.core_mut();
                if core.vanished {
                    core.out.clear();
                    continue;
                }
                let from = core.addr;
                for (to, contents) in core.out.drain(..) {
                    out.push((from, to, contents));
                }
            }
            for (from, to, contents) in out {
                moved = true;
                self.send(from, to, contents);
            }
            for (group, from, to, msg) in shard_msgs {
                moved = true;
                if let Some(r) = self
                    .relays
                    .iter_mut()
                    .find(|r| r.group == group && r.relay.shard() == to)
                {
                    in_relay(self.relay_hook, || {
                        r.relay.handle_shard_message(now, from, msg)
                    });
                }
            }
            if !moved {
                return;
            }
        }
    }
}

fn started(reply: Reply) -> Result<crate::SessionStarted, EngineError> {
    match reply {
        Reply::Started(r) => r,
        other => panic!("unexpected reply: {other:?}"),
    }
}

/// What publishers and viewers share: the `Rtc`, the address, the output queue.
pub struct PeerCore {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub relay: RelayId,
    /// The session on the relay.
    pub session: Option<SessionId>,
    timeout: Instant,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: Vec<Event>,
    pub vanished: bool,
    pub connected_at: Option<Instant>,
    /// When the stack said the connection closed (or failed).
    pub closed_at: Option<Instant>,
}

impl PeerCore {
    fn new(rtc: Rtc, addr: SocketAddr, relay: RelayId, now: Instant) -> PeerCore {
        PeerCore {
            rtc,
            addr,
            relay,
            session: None,
            timeout: now,
            out: VecDeque::new(),
            events: vec![],
            vanished: false,
            connected_at: None,
            closed_at: None,
        }
    }

    /// Polls the `Rtc` until its next timeout; events are kept in `events`.
    fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => self.out.push_back((t.destination, t.contents.into())),
                Ok(Output::Event(e)) => {
                    match &e {
                        Event::Connected => self.connected_at = Some(now),
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                        | Event::Closed => {
                            self.closed_at.get_or_insert(now);
                        }
                        _ => {}
                    }
                    self.events.push(e);
                }
                Err(_) => {
                    self.closed_at.get_or_insert(now);
                    self.timeout = now + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }

    fn input(&mut self, now: Instant, input: Input<'_>) {
        if self.rtc.handle_input(input).is_err() {
            self.closed_at.get_or_insert(now);
        }
        self.drain(now);
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        let Ok(r) = Receive::new(Protocol::Udp, from, self.addr, buf) else {
            return;
        };
        self.input(now, Input::Receive(now, r));
    }

    fn connected(&self) -> bool {
        self.connected_at.is_some() && self.closed_at.is_none()
    }
}

/// The publisher's synthetic stream.
#[derive(Debug, Clone, Copy)]
pub struct PublisherOpts {
    /// Time between IDR access units.
    pub gop: Duration,
    pub fps: u32,
    /// Sizes of an IDR slice and of a P slice (the NAL units' filler).
    pub idr_bytes: usize,
    pub p_bytes: usize,
    pub audio_bytes: usize,
    /// Simulcast: one H.264 stream per layer, low to high, by RID ([`SIMULCAST_RIDS`]),
    /// each with these slice sizes and its IDRs at the same times as the others' (a real
    /// encoder's). `None`: one stream of `idr_bytes`/`p_bytes`.
    pub simulcast: Option<[LayerSizes; 3]>,
    /// Answer a keyframe request (PLI/FIR) with an IDR of the layer asked for (every layer
    /// without a RID) in the next frame, at most one such IDR a layer every
    /// [`FORCED_IDR_SPACING`], as a real encoder does; `false`: IDRs only every `gop`.
    pub idr_on_request: bool,
}

/// The least time between two IDRs a publisher with `idr_on_request` makes on request.
pub const FORCED_IDR_SPACING: Duration = Duration::from_secs(1);

/// The RIDs of a simulcast publisher's layers, low to high (Chromium's).
pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

/// The slice sizes of one simulcast layer.
#[derive(Debug, Clone, Copy)]
pub struct LayerSizes {
    pub idr_bytes: usize,
    pub p_bytes: usize,
}

impl PublisherOpts {
    /// Three simulcast layers at 30 fps with an IDR every 2 s: about 150 kbit/s,
    /// 500 kbit/s and 1.2 Mbit/s of payload.
    pub fn simulcast() -> Self {
        PublisherOpts {
            simulcast: Some([
                LayerSizes {
                    idr_bytes: 8_000,
                    p_bytes: 500,
                },
                LayerSizes {
                    idr_bytes: 18_800,
                    p_bytes: 1_800,
                },
                LayerSizes {
                    idr_bytes: 42_000,
                    p_bytes: 4_400,
                },
            ]),
            ..PublisherOpts::default()
        }
    }

    /// The video streams: (RID, IDR bytes, P bytes) per layer, low to high.
    fn layers(&self) -> Vec<(Option<Rid>, usize, usize)> {
        match &self.simulcast {
            Some(ls) => SIMULCAST_RIDS
                .iter()
                .zip(ls)
                .map(|(r, l)| (Some(Rid::from(*r)), l.idr_bytes, l.p_bytes))
                .collect(),
            None => vec![(None, self.idr_bytes, self.p_bytes)],
        }
    }
}

impl Default for PublisherOpts {
    /// About 1 Mbit/s: 30 fps P frames of 3.5 kB, an IDR of 16 kB every 2 s, Opus every
    /// 20 ms.
    fn default() -> Self {
        PublisherOpts {
            gop: Duration::from_secs(2),
            fps: 30,
            idr_bytes: 16_000,
            p_bytes: 3_500,
            audio_bytes: 80,
            simulcast: None,
            idr_on_request: false,
        }
    }
}

/// A WHIP-like publisher: str0m (frame API: it packetizes, keeps the send history and
/// answers NACKs with RTX), sendonly Opus + H.264 (packetization-mode 1).
pub struct Publisher {
    pub core: PeerCore,
    pub opts: PublisherOpts,
    audio_mid: Mid,
    video_mid: Mid,
    audio_pt: Option<Pt>,
    video_pt: Option<Pt>,
    next_video: Option<Instant>,
    next_audio: Option<Instant>,
    pub frames_sent: u64,
    pub audio_sent: u64,
    /// When each IDR access unit was written (once for all simulcast layers).
    pub idrs_sent: Vec<Instant>,
    /// Every access unit written: when, its layer (0 without simulcast), its size.
    pub video_written: Vec<(Instant, usize, usize)>,
    /// Keyframe requests (PLI/FIR) received from the relay.
    pub keyframe_requests: Vec<(Instant, KeyframeRequestKind)>,
    /// The RID each of those asked for (`None` without simulcast).
    pub keyframe_request_rids: Vec<Option<Rid>>,
    /// Simulcast layers not sent (bit `i`: layer `i`), as an encoder sheds its top layer
    /// under load; a layer sent again goes on with the shared IDR schedule.
    pub stopped_layers: u8,
    /// Layers (bit per layer) asked for a keyframe, not yet answered (`idr_on_request`).
    idr_requested: u8,
    last_forced_idr: [Option<Instant>; 3],
}

/// Annex B start code.
const START: [u8; 4] = [0, 0, 0, 1];
/// A constrained-baseline SPS and a PPS (their content is never decoded here).
const SPS: [u8; 10] = [0x67, 0x42, 0xe0, 0x1f, 0x8c, 0x8d, 0x40, 0x50, 0x1e, 0xd0];
const PPS: [u8; 4] = [0x68, 0xce, 0x3c, 0x80];

/// An H.264 access unit in Annex B: SPS + PPS + IDR slice, or a P slice (NAL 1). The slice
/// starts with a plausible header (first_mb_in_slice 0, slice type I or P, PPS 0: what the
/// relay's pre-flight analysis samples), then filler that never contains a zero byte, so no
/// start code appears inside a NAL unit.
pub fn access_unit(idr: bool, bytes: usize, frame: u64) -> Vec<u8> {
    let mut au = Vec::with_capacity(bytes + 32);
    if idr {
        au.extend_from_slice(&START);
        au.extend_from_slice(&SPS);
        au.extend_from_slice(&START);
        au.extend_from_slice(&PPS);
    }
    au.extend_from_slice(&START);
    au.push(if idr { 0x65 } else { 0x41 });
    // ue(0) ue(7) ue(0) = 1 0001000 1 (I); ue(0) ue(5) ue(0) = 1 00110 1 1 (P).
    let header: u8 = if idr { 0x88 } else { 0x9b };
    au.extend((0..bytes).map(|i| match i {
        0 => header,
        _ => 1 + ((i as u64 + frame) % 255) as u8,
    }));
    au
}

impl Publisher {
    fn offer(
        addr: SocketAddr,
        relay: RelayId,
        opts: PublisherOpts,
        now: Instant,
    ) -> (Publisher, SdpOffer, SdpPendingOffer) {
        let mut b = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .set_stats_interval(None);
        b.codec_config()
            .add_h264(102.into(), Some(103.into()), true, 0x42e01f);
        let mut rtc = b.build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
        let mut api = rtc.sdp_api();
        let audio_mid = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some("sim".into()),
            None,
            None,
        );
        let simulcast = opts.simulcast.map(|_| Simulcast {
            send: SIMULCAST_RIDS
                .iter()
                .map(|r| SimulcastLayer::new(r))
                .collect(),
            recv: vec![],
        });
        let video_mid = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some("sim".into()),
            None,
            simulcast,
        );
        let (offer, pending) = api.apply().expect("an offer");
        let p = Publisher {
            core: PeerCore::new(rtc, addr, relay, now),
            opts,
            audio_mid,
            video_mid,
            audio_pt: None,
            video_pt: None,
            next_video: None,
            next_audio: None,
            frames_sent: 0,
            audio_sent: 0,
            idrs_sent: vec![],
            video_written: vec![],
            keyframe_requests: vec![],
            keyframe_request_rids: vec![],
            stopped_layers: 0,
            idr_requested: 0,
            last_forced_idr: [None; 3],
        };
        (p, offer, pending)
    }

    fn accept(&mut self, now: Instant, pending: SdpPendingOffer, answer: &str) {
        let sdp = SdpAnswer::from_sdp_string(answer).expect("the relay's answer parses");
        self.core
            .rtc
            .sdp_api()
            .accept_answer(pending, sdp)
            .expect("the relay's answer applies");
        let pt = |rtc: &mut Rtc, mid: Mid, codec: StCodec| {
            rtc.writer(mid)?
                .payload_params()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
        };
        self.audio_pt = pt(&mut self.core.rtc, self.audio_mid, StCodec::Opus);
        self.video_pt = pt(&mut self.core.rtc, self.video_mid, StCodec::H264);
        self.core.drain(now);
        self.on_events(now);
    }

    fn poll_timeout(&self) -> Instant {
        let mut t = self.core.timeout;
        if self.core.connected() {
            for n in [self.next_video, self.next_audio].into_iter().flatten() {
                t = t.min(n);
            }
        }
        t
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        self.core.receive(now, from, buf);
        self.on_events(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.core.timeout <= now {
            self.core.input(now, Input::Timeout(now));
        }
        self.on_events(now);
        if !self.core.connected() {
            return;
        }
        let next_video = *self.next_video.get_or_insert(now);
        let next_audio = *self.next_audio.get_or_insert(now);
        if next_video <= now {
            self.write_frame(now);
            self.next_video = Some(next_video + Duration::from_secs(1) / self.opts.fps);
        }
        if next_audio <= now {
            self.write_audio(now);
            self.next_audio = Some(next_audio + Duration::from_millis(20));
        }
        self.on_events(now);
    }

    fn write_frame(&mut self, now: Instant) {
        let Some(pt) = self.video_pt else { return };
        let n = self.frames_sent;
        let gop_frames = (self.opts.gop.as_secs_f64() * f64::from(self.opts.fps))
            .round()
            .max(1.0) as u64;
        let idr = n.is_multiple_of(gop_frames);
        let rtp_time = MediaTime::new(n * u64::from(90_000 / self.opts.fps), Frequency::NINETY_KHZ);
        for (layer, (rid, idr_bytes, p_bytes)) in self.opts.layers().into_iter().enumerate() {
            if self.stopped_layers & (1 << layer) != 0 {
                continue;
            }
            let forced = self.opts.idr_on_request
                && self.idr_requested & (1 << layer) != 0
                && self.last_forced_idr[layer]
                    .is_none_or(|t| now.saturating_duration_since(t) >= FORCED_IDR_SPACING);
            if forced {
                self.idr_requested &= !(1 << layer);
                self.last_forced_idr[layer] = Some(now);
            }
            let idr = idr || forced;
            let au = access_unit(idr, if idr { idr_bytes } else { p_bytes }, n);
            self.video_written.push((now, layer, au.len()));
            if let Some(mut w) = self.core.rtc.writer(self.video_mid) {
                if let Some(rid) = rid {
                    w = w.rid(rid);
                }
                w.write(pt, now, rtp_time, au).expect("writing video");
            }
        }
        if idr {
            self.idrs_sent.push(now);
        }
        self.frames_sent += 1;
        self.core.drain(now);
    }

    fn write_audio(&mut self, now: Instant) {
        let Some(pt) = self.audio_pt else { return };
        let n = self.audio_sent;
        let data = vec![0xfc_u8; self.opts.audio_bytes];
        let rtp_time = MediaTime::new(n * 960, Frequency::FORTY_EIGHT_KHZ);
        if let Some(w) = self.core.rtc.writer(self.audio_mid) {
            w.write(pt, now, rtp_time, data).expect("writing audio");
        }
        self.audio_sent += 1;
        self.core.drain(now);
    }

    fn on_events(&mut self, now: Instant) {
        for e in self.core.events.drain(..) {
            if let Event::KeyframeRequest(r) = e {
                self.keyframe_requests.push((now, r.kind));
                self.keyframe_request_rids.push(r.rid);
                let bits = match r.rid {
                    Some(rid) => SIMULCAST_RIDS
                        .iter()
                        .position(|x| Rid::from(*x) == rid)
                        .map_or(0, |i| 1 << i),
                    None => 0b111,
                };
                self.idr_requested |= bits;
            }
        }
    }

    /// The payload bitrate (access unit bytes) written on `layer` in `[from, to)`.
    pub fn sent_bps(&self, layer: usize, from: Instant, to: Instant) -> u64 {
        let bytes: usize = self
            .video_written
            .iter()
            .filter(|(t, l, _)| *l == layer && *t >= from && *t < to)
            .map(|(_, _, b)| b)
            .sum();
        (bytes as f64 * 8.0 / (to - from).as_secs_f64()) as u64
    }

    /// Keyframe requests received in `[from, to)`.
    pub fn keyframe_requests_between(&self, from: Instant, to: Instant) -> usize {
        self.keyframe_requests
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .count()
    }
}

/// One received RTP packet.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub at: Instant,
    /// Extended sequence number (str0m's; repairs carry the original one).
    pub seq: u64,
    pub ts: u32,
    pub marker: bool,
    /// Payload bytes.
    pub len: usize,
    /// The packet starts an H.264 keyframe (IDR or SPS, alone, in STAP-A or FU-A).
    pub keyframe_start: bool,
}

/// A WHEP-like viewer: str0m in RTP mode, recvonly audio + video; records every packet.
pub struct Viewer {
    pub core: PeerCore,
    audio_mid: Mid,
    video_mid: Mid,
    audio_pts: Vec<u8>,
    /// The H.264 payload types, and their RTX payload types.
    pub video_pts: Vec<u8>,
    pub rtx_pts: Vec<u8>,
    pub audio: Vec<Received>,
    pub video: Vec<Received>,
    /// Cumulative NACKs and PLIs the stack sent (from its ingress stats).
    pub nacks_sent: u64,
    pub plis_sent: u64,
    /// PLIs asked for with `Viewer::request_keyframe`.
    pub plis_requested: u64,
}

impl Viewer {
    fn offer(
        addr: SocketAddr,
        relay: RelayId,
        now: Instant,
    ) -> (Viewer, SdpOffer, SdpPendingOffer) {
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_h264(true)
            .set_stats_interval(Some(Duration::from_millis(250)))
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
        let mut api = rtc.sdp_api();
        let audio_mid = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let video_mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        let mut audio_pts = vec![];
        let mut video_pts = vec![];
        let mut rtx_pts = vec![];
        for p in rtc.codec_config().params() {
            match p.spec().codec {
                StCodec::Opus => audio_pts.push(*p.pt()),
                StCodec::H264 => {
                    video_pts.push(*p.pt());
                    rtx_pts.extend(p.resend().map(|r| *r));
                }
                _ => {}
            }
        }
        let v = Viewer {
            core: PeerCore::new(rtc, addr, relay, now),
            audio_mid,
            video_mid,
            audio_pts,
            video_pts,
            rtx_pts,
            audio: vec![],
            video: vec![],
            nacks_sent: 0,
            plis_sent: 0,
            plis_requested: 0,
        };
        (v, offer, pending)
    }

    fn accept(&mut self, now: Instant, pending: SdpPendingOffer, answer: &str) {
        let sdp = SdpAnswer::from_sdp_string(answer).expect("the relay's answer parses");
        self.core
            .rtc
            .sdp_api()
            .accept_answer(pending, sdp)
            .expect("the relay's answer applies");
        self.core.drain(now);
        self.on_events();
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        self.core.receive(now, from, buf);
        self.on_events();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.core.input(now, Input::Timeout(now));
        self.on_events();
    }

    fn request_keyframe(&mut self, now: Instant) {
        if let Some(rx) = self
            .core
            .rtc
            .direct_api()
            .stream_rx_by_mid(self.video_mid, None)
        {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.plis_requested += 1;
        }
        self.core.drain(now);
        self.on_events();
    }

    fn on_events(&mut self) {
        for e in self.core.events.drain(..) {
            match e {
                Event::RtpPacket(p) => {
                    let pt = *p.header.payload_type;
                    let r = Received {
                        at: p.timestamp,
                        seq: *p.seq_no,
                        ts: p.header.timestamp,
                        marker: p.header.marker,
                        len: p.payload.len(),
                        keyframe_start: false,
                    };
                    if self.audio_pts.contains(&pt) {
                        self.audio.push(r);
                    } else if self.video_pts.contains(&pt) {
                        self.video.push(Received {
                            keyframe_start: hallcast_core::keyframe::h264_starts_keyframe(
                                &p.payload,
                            ),
                            ..r
                        });
                    }
                }
                Event::MediaIngressStats(s) if s.mid == self.video_mid => {
                    self.nacks_sent = self.nacks_sent.max(s.nacks);
                    self.plis_sent = self.plis_sent.max(s.plis);
                }
                _ => {}
            }
        }
        let _ = self.audio_mid;
    }

    pub fn first_video_at(&self) -> Option<Instant> {
        self.video.iter().map(|r| r.at).min()
    }

    /// Keyframes received whole (every packet from the keyframe's first to its marker),
    /// with when the last of them arrived, in order.
    pub fn complete_keyframes(&self) -> Vec<Instant> {
        let mut by_seq: Vec<&Received> = self.video.iter().collect();
        by_seq.sort_by_key(|r| r.seq);
        let mut out = vec![];
        for (i, start) in by_seq.iter().enumerate() {
            if !start.keyframe_start {
                continue;
            }
            // Skip a second keyframe-start packet of the same frame (STAP-A then FU-A).
            if i > 0 && by_seq[i - 1].ts == start.ts && by_seq[i - 1].seq + 1 == start.seq {
                continue;
            }
            let mut last = start.at;
            for (expect, r) in (start.seq..).zip(&by_seq[i..]) {
                if r.seq != expect || r.ts != start.ts {
                    break;
                }
                last = last.max(r.at);
                if r.marker {
                    out.push(last);
                    break;
                }
            }
        }
        out.sort();
        out
    }

    /// The video frames received, in sequence order (see [`playback::frames`]).
    pub fn frames(&self) -> Vec<Frame> {
        playback::frames(&self.video)
    }

    /// What a decoder would have rendered, and the freezes (see [`playback`]).
    pub fn playback(&self) -> Playback {
        playback::playback(&self.frames())
    }

    /// Video payload bits per second received in `[from, to)`.
    pub fn video_bps(&self, from: Instant, to: Instant) -> f64 {
        playback::bitrate(&self.video, from, to)
    }

    /// Gaps longer than `min` between audio packets arriving in `[from, to)`.
    pub fn audio_gaps(
        &self,
        from: Instant,
        to: Instant,
        min: Duration,
    ) -> Vec<(Instant, Duration)> {
        playback::gaps(&self.audio, from, to, min)
    }

    /// The layer of each complete frame received (by its size, against the publisher's
    /// `layers`), with when it was done, in sequence order: the layer the viewer was on.
    pub fn received_layers(&self, layers: &[LayerSizes]) -> Vec<(Instant, usize, Frame)> {
        self.frames()
            .into_iter()
            .filter(|f| f.complete)
            .filter_map(|f| {
                playback::layer_of(layers, f.keyframe, f.bytes).map(|l| (f.done_at, l, f))
            })
            .collect()
    }

    /// Video sequence numbers missing between the first and the last received.
    pub fn missing_video(&self) -> Vec<u64> {
        missing(&self.video)
    }

    pub fn missing_audio(&self) -> Vec<u64> {
        missing(&self.audio)
    }
}

fn missing(rs: &[Received]) -> Vec<u64> {
    let mut seqs: Vec<u64> = rs.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let mut gaps = vec![];
    for w in seqs.windows(2) {
        gaps.extend(w[0] + 1..w[1]);
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::rtp_extensions;

    #[test]
    fn rtp_extensions_reads_the_one_byte_form() {
        // V=2, X=1, no CSRC; BEDE, 2 words: id 2 (3 bytes 1 2 3), id 4 (1 byte "1"), padding.
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
        p.extend_from_slice(&[0xbe, 0xde, 0, 2, 0x22, 1, 2, 3, 0x40, b'1', 0, 0]);
        assert_eq!(
            rtp_extensions(&p),
            vec![(2, &[1u8, 2, 3][..]), (4, &b"1"[..])]
        );
        // Padding between elements is skipped; a length past the end stops the walk.
        let mut q = vec![0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
        q.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 9, 0, 0x31]);
        assert_eq!(rtp_extensions(&q), vec![(1, &[9u8][..])]);
        p[0] = 0x80; // no extension bit
        assert!(rtp_extensions(&p).is_empty());
    }
}
