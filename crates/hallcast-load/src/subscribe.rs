//! Many WHEP subscribers in one thread.
//!
//! Each subscriber is a full WebRTC receiver: its own str0m [`Rtc`] (ICE controlling, full ICE
//! not lite, DTLS client, SRTP, RTP mode so no depacketizing or jitter buffer), its own UDP
//! socket, a real WHEP POST and DELETE. str0m sends the receiver reports and NACKs itself.
//! Every subscriber is a task on one [`LocalSet`]: the whole load generator is one poll loop on
//! one thread, so the relay keeps the other core.
//!
//! Why one socket per subscriber and not one shared socket: a relay tells its peers apart by
//! the 4-tuple (hallcast does, after the first STUN check names the session's ufrag), so
//! subscribers sharing a local port would look like one peer roaming between sessions.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use str0m::change::SdpAnswer;
use str0m::format::{Codec, detect_h264_keyframe, detect_vp8_keyframe};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::LocalSet;
use tracing::{debug, info};

use crate::probe::{self, ProcSample, RelaySample};
use crate::report::{Percentiles, count_failures};
use crate::{signal, udp_socket};

/// What a subscriber run does.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    pub whep_url: String,
    pub token: String,
    pub n_subscribers: usize,
    /// Subscribers started per second.
    pub ramp_per_sec: f64,
    /// After the last subscriber started, wait this long before the measurement window.
    pub warmup: Duration,
    /// Length of the measurement window (0: no window, only join statistics).
    pub duration: Duration,
    /// The relay's `/metrics`, sampled at both ends of the window.
    pub metrics_url: Option<String>,
    /// Local address the subscribers' sockets bind to (one port each).
    pub bind_ip: IpAddr,
    /// How long a subscriber waits for the feed to go live (409) and then to connect.
    pub join_timeout: Duration,
    /// SO_RCVBUF of every subscriber socket, in bytes.
    pub recv_buffer: usize,
    /// Other local UDP ports (the relay's media port, the publisher's) whose kernel drop
    /// counters are read at both ends of the window.
    pub watch_udp_ports: Vec<u16>,
    /// Offer a video m-line too (false: an audio-only viewer).
    pub video: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            whep_url: String::new(),
            token: String::new(),
            n_subscribers: 1,
            ramp_per_sec: 20.0,
            warmup: Duration::from_secs(5),
            duration: Duration::from_secs(20),
            metrics_url: None,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            join_timeout: Duration::from_secs(20),
            recv_buffer: 1 << 20,
            watch_udp_ports: Vec::new(),
            video: true,
        }
    }
}

/// The result of a run, printed as JSON by the binary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscribeReport {
    pub n_subscribers: usize,
    pub n_connected: usize,
    pub n_with_keyframe: usize,
    pub n_failed: usize,
    /// Failure reason → number of subscribers.
    pub failures: BTreeMap<String, usize>,
    /// RTP packets (video + audio, each counted once, repairs included) over the whole run.
    pub packets_received_total: u64,
    pub video_packets_total: u64,
    pub audio_packets_total: u64,
    /// WHEP POST sent → last packet of the first keyframe received.
    pub ttfk_ms: Percentiles,
    /// WHEP POST sent → 201 received.
    pub answer_ms: Percentiles,
    /// WHEP POST sent → ICE and DTLS connected.
    pub connect_ms: Percentiles,
    /// WHEP POST sent → first RTP packet.
    pub first_packet_ms: Percentiles,
    pub window: Option<Window>,
}

/// Counters over the measurement window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Window {
    pub secs: f64,
    /// Subscribers connected at the start of the window.
    pub n_subscribers_measured: usize,
    pub packets_received: u64,
    pub video_packets: u64,
    pub audio_packets: u64,
    pub bytes_received: u64,
    pub datagrams_received: u64,
    /// Packets received / packets the relay sent, from the subscribers' RTP sequence numbers
    /// (gaps that NACK/RTX did not fill are losses). Unlike `RelayWindow::delivered_ratio`
    /// it does not count packets still queued in socket buffers at the end of the window as
    /// lost, so it holds when the load generator lags on a busy machine.
    #[serde(default)]
    pub seq_delivery_ratio: f64,
    /// The fewest packets any connected subscriber received in the window.
    pub min_packets_per_subscriber: u64,
    /// CPU time of this process (all subscribers) in the window.
    pub loadgen_cpu_seconds: f64,
    pub loadgen_cpu_us_per_packet: f64,
    /// Resident memory of this process at the end of the window (all subscribers).
    #[serde(default)]
    pub loadgen_rss_bytes: u64,
    /// Delta of the machine-wide UDP receive-buffer overflow counter.
    pub udp_rcvbuf_errors: Option<u64>,
    /// Datagrams the kernel dropped on the subscribers' sockets (full receive buffers).
    pub subscriber_socket_drops: u64,
    /// The same on the watched ports (`watch_udp_ports`: the relay's, the publisher's).
    pub watched_socket_drops: u64,
    /// CPU time of the whole machine in the window, in cores (all processes: the relay, this
    /// one, the publisher and whatever else runs).
    pub machine_busy_cores: Option<f64>,
    pub relay: Option<RelayWindow>,
}

/// The relay's counters over the measurement window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayWindow {
    pub t0: RelaySample,
    pub t1: RelaySample,
    pub cpu_seconds: f64,
    pub cores: f64,
    pub forwarded_packets: u64,
    pub tx_datagrams: u64,
    pub rx_media_packets: u64,
    pub cpu_us_per_forwarded_packet: f64,
    pub cpu_us_per_tx_datagram: f64,
    /// Packets the subscribers received / packets the relay forwarded.
    pub delivered_ratio: f64,
}

/// One subscriber's counters, shared between its task and the coordinator (one thread).
#[derive(Debug, Default)]
pub(crate) struct Sub {
    pub(crate) video_packets: Cell<u64>,
    pub(crate) audio_packets: Cell<u64>,
    pub(crate) bytes: Cell<u64>,
    pub(crate) datagrams: Cell<u64>,
    pub(crate) answer: Cell<Option<Duration>>,
    pub(crate) connected: Cell<Option<Duration>>,
    pub(crate) first_packet: Cell<Option<Duration>>,
    pub(crate) first_keyframe: Cell<Option<Duration>>,
    /// Connected and not yet ended.
    pub(crate) up: Cell<bool>,
    /// Local UDP port (0 until bound).
    pub(crate) port: Cell<u16>,
    /// Packets the relay sent on this subscriber's streams, from their sequence numbers
    /// (highest − first + 1, summed over audio and video).
    pub(crate) expected: Cell<u64>,
    /// Distinct packets received at or after each stream's first sequence number.
    pub(crate) in_seq: Cell<u64>,
    pub(crate) failure: RefCell<Option<String>>,
    /// When set, audio delays are recorded per phase (see [`DelayLog`]).
    pub(crate) delays: Option<DelayLog>,
}

/// Audio forwarding delay of one subscriber, recorded per phase of a run.
///
/// The publisher sends an Opus packet every 20 ms on an absolute schedule, so a packet's
/// transit (arrival time minus its RTP time) is constant up to an offset, and anything that
/// holds packets back on their way through the relay shows as transit above the smallest
/// seen. No clock is shared between processes: the offset cancels out.
#[derive(Debug, Default)]
pub(crate) struct DelayLog {
    /// The phase samples are recorded for (0: none), set by the coordinator.
    pub phase: Rc<Cell<usize>>,
    /// Delay above the smallest transit seen, in µs, per phase.
    pub samples: RefCell<Vec<Vec<u32>>>,
    /// (last RTP timestamp, extended timestamp) of the audio stream.
    ts: Cell<Option<(u32, i64)>>,
    min_transit_us: Cell<Option<i64>>,
}

impl DelayLog {
    pub(crate) fn new(phase: Rc<Cell<usize>>) -> DelayLog {
        DelayLog {
            phase,
            ..DelayLog::default()
        }
    }

    /// An audio packet with RTP timestamp `ts` (48 kHz) arrived `arrival_us` after origin.
    fn on_audio(&self, arrival_us: i64, ts: u32) {
        let ext = match self.ts.get() {
            None => 0,
            Some((last, ext)) => ext + i64::from(ts.wrapping_sub(last) as i32),
        };
        self.ts.set(Some((ts, ext)));
        let transit = arrival_us - ext * 1_000_000 / 48_000;
        let min = self
            .min_transit_us
            .get()
            .map_or(transit, |m| m.min(transit));
        self.min_transit_us.set(Some(min));
        let phase = self.phase.get();
        if phase > 0 {
            let mut s = self.samples.borrow_mut();
            if s.len() <= phase {
                s.resize_with(phase + 1, Vec::new);
            }
            s[phase].push(u32::try_from(transit - min).unwrap_or(u32::MAX));
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub(crate) video: u64,
    pub(crate) audio: u64,
    pub(crate) bytes: u64,
    pub(crate) datagrams: u64,
    pub(crate) expected: u64,
    pub(crate) in_seq: u64,
}

pub(crate) fn totals(subs: &[Rc<Sub>]) -> (Totals, Vec<u64>) {
    let mut t = Totals::default();
    let mut per = Vec::with_capacity(subs.len());
    for s in subs {
        t.video += s.video_packets.get();
        t.audio += s.audio_packets.get();
        t.bytes += s.bytes.get();
        t.datagrams += s.datagrams.get();
        t.expected += s.expected.get();
        t.in_seq += s.in_seq.get();
        per.push(s.video_packets.get() + s.audio_packets.get());
    }
    (t, per)
}

/// Runs the subscribers and returns the report. Needs a Tokio runtime (a current-thread one
/// is what it is built for); everything runs on the calling thread.
pub async fn run(opts: &SubscribeOptions) -> anyhow::Result<SubscribeReport> {
    LocalSet::new().run_until(run_local(opts)).await
}

async fn run_local(opts: &SubscribeOptions) -> anyhow::Result<SubscribeReport> {
    anyhow::ensure!(opts.ramp_per_sec > 0.0, "--ramp-per-sec must be positive");
    let client = signal::http_client()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut subs = Vec::with_capacity(opts.n_subscribers);
    let mut tasks = Vec::with_capacity(opts.n_subscribers);
    let start = tokio::time::Instant::now();
    for i in 0..opts.n_subscribers {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / opts.ramp_per_sec))
            .await;
        let sub = Rc::new(Sub::default());
        subs.push(sub.clone());
        tasks.push(spawn_subscriber(
            opts.clone(),
            client.clone(),
            sub,
            stop_rx.clone(),
        ));
    }
    info!(n = opts.n_subscribers, "all subscribers started");
    tokio::time::sleep(opts.warmup).await;

    let window = if opts.duration.is_zero() {
        None
    } else {
        let n_measured = subs.iter().filter(|s| s.up.get()).count();
        let relay0 = match &opts.metrics_url {
            Some(u) => Some(probe::scrape(&client, u).await?),
            None => None,
        };
        let (sub0, per0) = totals(&subs);
        let me0 = probe::proc_sample(None)?;
        let drops0 = probe::udp_rcvbuf_errors();
        let sub_ports: HashSet<u16> = subs
            .iter()
            .map(|s| s.port.get())
            .filter(|p| *p != 0)
            .collect();
        let watched: HashSet<u16> = opts.watch_udp_ports.iter().copied().collect();
        let (sock0, watch0) = (
            probe::udp_socket_drops(&sub_ports),
            probe::udp_socket_drops(&watched),
        );
        let busy0 = probe::machine_busy_seconds();
        let t0 = Instant::now();
        tokio::time::sleep(opts.duration).await;
        let (sub1, per1) = totals(&subs);
        let me1 = probe::proc_sample(None)?;
        let drops1 = probe::udp_rcvbuf_errors();
        let (sock1, watch1) = (
            probe::udp_socket_drops(&sub_ports),
            probe::udp_socket_drops(&watched),
        );
        let busy1 = probe::machine_busy_seconds();
        let secs = t0.elapsed().as_secs_f64();
        let relay1 = match &opts.metrics_url {
            Some(u) => Some(probe::scrape(&client, u).await?),
            None => None,
        };
        Some(window(WindowInputs {
            secs,
            n_measured,
            sub0,
            sub1,
            per0,
            per1,
            up: subs.iter().map(|s| s.connected.get().is_some()).collect(),
            me0,
            me1,
            drops: drops0.zip(drops1).map(|(a, b)| b.saturating_sub(a)),
            subscriber_socket_drops: sock1.saturating_sub(sock0),
            watched_socket_drops: watch1.saturating_sub(watch0),
            machine_busy_cores: busy0.zip(busy1).map(|(a, b)| (b - a) / secs),
            relay: relay0.zip(relay1),
        }))
    };

    let _ = stop_tx.send(true);
    for t in tasks {
        // A subscriber task ends within its DELETE's timeout; a panic is a bug worth seeing.
        if let Err(e) = t.await {
            anyhow::bail!("a subscriber task panicked: {e}");
        }
    }
    Ok(report(opts.n_subscribers, &subs, window))
}

struct WindowInputs {
    secs: f64,
    n_measured: usize,
    sub0: Totals,
    sub1: Totals,
    per0: Vec<u64>,
    per1: Vec<u64>,
    up: Vec<bool>,
    me0: ProcSample,
    me1: ProcSample,
    drops: Option<u64>,
    subscriber_socket_drops: u64,
    watched_socket_drops: u64,
    machine_busy_cores: Option<f64>,
    relay: Option<(RelaySample, RelaySample)>,
}

fn window(w: WindowInputs) -> Window {
    let video = w.sub1.video - w.sub0.video;
    let audio = w.sub1.audio - w.sub0.audio;
    let packets = video + audio;
    let min_per_sub = w
        .per0
        .iter()
        .zip(&w.per1)
        .zip(&w.up)
        .filter(|(_, up)| **up)
        .map(|((a, b), _)| b - a)
        .min()
        .unwrap_or(0);
    let loadgen_cpu = w.me1.cpu_seconds - w.me0.cpu_seconds;
    let relay = w.relay.map(|(r0, r1)| {
        let cpu = r1.cpu_seconds - r0.cpu_seconds;
        let forwarded = r1.forwarded_packets.saturating_sub(r0.forwarded_packets);
        let tx = r1.tx_datagrams.saturating_sub(r0.tx_datagrams);
        RelayWindow {
            t0: r0,
            t1: r1,
            cpu_seconds: cpu,
            cores: cpu / w.secs,
            forwarded_packets: forwarded,
            tx_datagrams: tx,
            rx_media_packets: r1.rx_media_packets.saturating_sub(r0.rx_media_packets),
            cpu_us_per_forwarded_packet: per_unit_us(cpu, forwarded),
            cpu_us_per_tx_datagram: per_unit_us(cpu, tx),
            delivered_ratio: if forwarded == 0 {
                0.0
            } else {
                packets as f64 / forwarded as f64
            },
        }
    });
    Window {
        secs: w.secs,
        n_subscribers_measured: w.n_measured,
        packets_received: packets,
        seq_delivery_ratio: {
            let expected = w.sub1.expected - w.sub0.expected;
            if expected == 0 {
                0.0
            } else {
                (w.sub1.in_seq - w.sub0.in_seq) as f64 / expected as f64
            }
        },
        video_packets: video,
        audio_packets: audio,
        bytes_received: w.sub1.bytes - w.sub0.bytes,
        datagrams_received: w.sub1.datagrams - w.sub0.datagrams,
        min_packets_per_subscriber: min_per_sub,
        loadgen_cpu_seconds: loadgen_cpu,
        loadgen_cpu_us_per_packet: per_unit_us(loadgen_cpu, packets),
        loadgen_rss_bytes: w.me1.rss_bytes,
        udp_rcvbuf_errors: w.drops,
        subscriber_socket_drops: w.subscriber_socket_drops,
        watched_socket_drops: w.watched_socket_drops,
        machine_busy_cores: w.machine_busy_cores,
        relay,
    }
}

fn per_unit_us(cpu_seconds: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        cpu_seconds * 1e6 / n as f64
    }
}

pub(crate) fn report(
    n_subscribers: usize,
    subs: &[Rc<Sub>],
    window: Option<Window>,
) -> SubscribeReport {
    let ms = |f: fn(&Sub) -> Option<Duration>| {
        Percentiles::of_durations(subs.iter().filter_map(|s| f(s)))
    };
    let failures: Vec<String> = subs
        .iter()
        .filter_map(|s| s.failure.borrow().clone())
        .collect();
    let (t, _) = totals(subs);
    SubscribeReport {
        n_subscribers,
        n_connected: subs.iter().filter(|s| s.connected.get().is_some()).count(),
        n_with_keyframe: subs
            .iter()
            .filter(|s| s.first_keyframe.get().is_some())
            .count(),
        n_failed: failures.len(),
        failures: count_failures(&failures),
        packets_received_total: t.video + t.audio,
        video_packets_total: t.video,
        audio_packets_total: t.audio,
        ttfk_ms: ms(|s| s.first_keyframe.get()),
        answer_ms: ms(|s| s.answer.get()),
        connect_ms: ms(|s| s.connected.get()),
        first_packet_ms: ms(|s| s.first_packet.get()),
        window,
    }
}

/// What a payload type carries, as negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PtKind {
    Unknown,
    Audio,
    H264,
    Vp8,
    OtherVideo,
}

/// Per-subscriber receive state: payload types and the first keyframe.
struct Receiver<'a> {
    sub: &'a Sub,
    origin: Instant,
    kinds: [PtKind; 128],
    /// RTP timestamp of the first keyframe seen, until its last packet arrives.
    keyframe_ts: Option<u32>,
    /// (first, highest) extended sequence number seen, audio and video.
    seq: [Option<(u64, u64)>; 2],
    closed: bool,
}

impl Receiver<'_> {
    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                self.sub.connected.set(Some(self.origin.elapsed()));
                self.sub.up.set(true);
            }
            Event::RtpPacket(p) => {
                let now = p.timestamp;
                let kind = self.kinds[usize::from(*p.header.payload_type & 0x7f)];
                self.sub
                    .bytes
                    .set(self.sub.bytes.get() + p.payload.len() as u64);
                if self.sub.first_packet.get().is_none() {
                    self.sub
                        .first_packet
                        .set(Some(now.saturating_duration_since(self.origin)));
                }
                self.on_seq(usize::from(kind != PtKind::Audio), *p.seq_no);
                if kind == PtKind::Audio {
                    self.sub.audio_packets.set(self.sub.audio_packets.get() + 1);
                    if let Some(d) = &self.sub.delays {
                        let arrival = now.saturating_duration_since(self.origin);
                        d.on_audio(arrival.as_micros() as i64, p.header.timestamp);
                    }
                    return;
                }
                self.sub.video_packets.set(self.sub.video_packets.get() + 1);
                if self.sub.first_keyframe.get().is_some() {
                    return;
                }
                let ts = p.header.timestamp;
                if self.keyframe_ts.is_none() {
                    let key = match kind {
                        PtKind::H264 => detect_h264_keyframe(&p.payload),
                        PtKind::Vp8 => detect_vp8_keyframe(&p.payload),
                        _ => false,
                    };
                    if key {
                        self.keyframe_ts = Some(ts);
                    }
                }
                if self.keyframe_ts == Some(ts) && p.header.marker {
                    self.sub
                        .first_keyframe
                        .set(Some(now.saturating_duration_since(self.origin)));
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) | Event::Closed => {
                self.closed = true;
            }
            _ => {}
        }
    }
}

impl Receiver<'_> {
    /// Sequence accounting: str0m hands over each packet once (duplicates dropped, repairs
    /// rewritten to the original sequence number), so in-order counting gives delivery.
    fn on_seq(&mut self, stream: usize, seq: u64) {
        let sub = self.sub;
        match &mut self.seq[stream] {
            None => {
                self.seq[stream] = Some((seq, seq));
                sub.expected.set(sub.expected.get() + 1);
                sub.in_seq.set(sub.in_seq.get() + 1);
            }
            Some((first, _)) if seq < *first => {}
            Some((_, max)) => {
                if seq > *max {
                    sub.expected.set(sub.expected.get() + (seq - *max));
                    *max = seq;
                }
                sub.in_seq.set(sub.in_seq.get() + 1);
            }
        }
    }
}

/// Polls `rtc` until it asks for its next timeout: transmits are sent, events handled.
fn drain(
    rtc: &mut Rtc,
    socket: &UdpSocket,
    rx: &mut Receiver<'_>,
) -> Result<Instant, str0m::RtcError> {
    loop {
        match rtc.poll_output()? {
            Output::Timeout(t) => return Ok(t),
            Output::Transmit(t) => {
                // Loopback sends do not block; a full send buffer loses an RTCP packet or
                // STUN check, which the protocols repeat.
                let _ = socket.try_send_to(&t.contents, t.destination);
            }
            Output::Event(e) => rx.on_event(e),
        }
    }
}

/// Runs one subscriber as a local task; its failure, if any, is kept in `sub`.
pub(crate) fn spawn_subscriber(
    opts: SubscribeOptions,
    client: reqwest::Client,
    sub: Rc<Sub>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_local(async move {
        if let Err(e) = subscriber(&opts, &client, &sub, stop).await {
            debug!("subscriber failed: {e:#}");
            sub.failure.replace(Some(format!("{e:#}")));
        }
        sub.up.set(false);
    })
}

async fn subscriber(
    opts: &SubscribeOptions,
    client: &reqwest::Client,
    sub: &Sub,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let socket =
        udp_socket(opts.bind_ip, opts.recv_buffer).context("binding a subscriber socket")?;
    let local = socket.local_addr()?;
    sub.port.set(local.port());
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_h264(true)
        .enable_vp8(true)
        .set_stats_interval(None)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").context("host candidate")?);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    if opts.video {
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    }
    let (offer, pending) = api.apply().context("str0m made no offer")?;

    let give_up_at = Instant::now() + opts.join_timeout;
    let offer = offer.to_sdp_string();
    let answer = tokio::select! {
        a = signal::post_offer(client, &opts.whep_url, &opts.token, &offer, give_up_at) => a?,
        _ = stop.changed() => anyhow::bail!("stopped before the relay answered"),
    };
    let origin = answer.posted_at;
    sub.answer.set(Some(origin.elapsed()));
    let sdp = SdpAnswer::from_sdp_string(&answer.sdp).context("parsing the SDP answer")?;
    rtc.sdp_api()
        .accept_answer(pending, sdp)
        .context("applying the SDP answer")?;

    let mut kinds = [PtKind::Unknown; 128];
    for p in rtc.codec_config().params() {
        kinds[usize::from(*p.pt() & 0x7f)] = match p.spec().codec {
            Codec::Opus => PtKind::Audio,
            Codec::H264 => PtKind::H264,
            Codec::Vp8 => PtKind::Vp8,
            c if c.is_audio() => PtKind::Audio,
            _ => PtKind::OtherVideo,
        };
    }
    let mut rx = Receiver {
        sub,
        origin,
        kinds,
        keyframe_ts: None,
        seq: [None; 2],
        closed: false,
    };
    let result = receive_loop(
        &mut rtc,
        &socket,
        local,
        &mut rx,
        &mut stop,
        origin + opts.join_timeout,
    )
    .await;
    sub.up.set(false);
    if let Some(resource) = &answer.resource {
        // Best effort: the relay also ends a silent session by itself.
        if let Err(e) = signal::delete(client, resource, &opts.token).await {
            debug!("{e:#}");
        }
    }
    result
}

async fn receive_loop(
    rtc: &mut Rtc,
    socket: &UdpSocket,
    local: SocketAddr,
    rx: &mut Receiver<'_>,
    stop: &mut watch::Receiver<bool>,
    connect_deadline: Instant,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 2048];
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        let timeout = drain(rtc, socket, rx).context("WebRTC")?;
        if rx.closed || !rtc.is_alive() {
            anyhow::bail!("the relay closed the session");
        }
        if rx.sub.connected.get().is_none() && Instant::now() >= connect_deadline {
            anyhow::bail!("not connected (ICE + DTLS) within the join timeout");
        }
        let wake = if rx.sub.connected.get().is_none() {
            timeout.min(connect_deadline)
        } else {
            timeout
        };
        sleep.as_mut().reset(wake.into());
        tokio::select! {
            biased;
            _ = stop.changed() => return Ok(()),
            r = socket.readable() => {
                r.context("socket")?;
                loop {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, source)) => {
                            rx.sub.datagrams.set(rx.sub.datagrams.get() + 1);
                            let Ok(input) = Receive::new(Protocol::Udp, source, local, &buf[..n]) else { continue };
                            rtc.handle_input(Input::Receive(Instant::now(), input)).context("WebRTC input")?;
                            drain(rtc, socket, rx).context("WebRTC")?;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        // ICMP errors (port unreachable after the relay went away) land here.
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
                        Err(e) => return Err(e).context("receiving"),
                    }
                }
            }
            _ = &mut sleep => {
                rtc.handle_input(Input::Timeout(Instant::now())).context("WebRTC timeout")?;
            }
        }
    }
}
