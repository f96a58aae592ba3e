//! The WebRTC side of a publish: the peer connection, its two send-only tracks, and the tasks
//! that render, encode and pace media into them.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use reqwest::Url;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media::Sample;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::marshal::{Marshal, MarshalSize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, trace, warn};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, SettingEngineBuilder, configure_nack, configure_rtcp_reports,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

use crate::AudioSource;
use crate::card::TestCard;
use crate::h264::{EncoderSettings, H264Encoder};
use crate::ogg::{OPUS_CLOCK_RATE, TONE_OGG, opus_packet_samples, opus_packets};
use crate::pacing::{Cadence, duration_for_units};
use crate::{PublisherStats, SourceOptions};

/// The H.264 format offered: constrained baseline 3.1, non-interleaved packetization.
pub(crate) const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
const H264_PT: u8 = 102;
const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";
const OPUS_PT: u8 = 111;
const VIDEO_CLOCK_RATE: u32 = 90_000;
/// Packets of the built-in tone per second (20 ms each).
const AUDIO_PACKET_RATE: u32 = 50;
/// Audio packets sent late (back to back) after a stall before older ones are given up: 500 ms.
const MAX_AUDIO_CATCH_UP: u64 = 25;

/// How long ICE gathering may take before the offer goes out with what there is.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long ICE + DTLS may take after the answer before the session counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `Disconnected` may last before the session counts as failed.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);
/// The least time between two IDRs sent in answer to keyframe requests. Counted from the last
/// IDR sent on request only: a periodic IDR just before a request does not delay the answer
/// (the receiver asks because it lacks a picture now; measured in tests/adaptation.rs, a relay's
/// switch down waited ~0.95 s for the answer when the layer's periodic IDR had left 90 ms
/// before the request, and the viewer saw no video meanwhile).
const MIN_KEYFRAME_SPACING: Duration = Duration::from_secs(1);
/// Interceptor slot of the keyframe-request forwarder: after every built-in interceptor.
const KEYFRAME_REQUEST_SLOT: usize = 14_000;
/// Media stream id shared by both tracks, so receivers keep them in sync.
const STREAM_ID: &str = "hallcast-test-source";
/// The simulcast layers, lowest first: RID, size divisor, bitrate as a fraction of the top
/// layer's (numerator, denominator). Chromium's names (`q`uarter, `h`alf, `f`ull) and roughly
/// its bitrate steps (150 k / 500 k / 2 M at 720p), so a relay ranks them as it ranks a browser's.
const SIMULCAST_LAYERS: [(&str, u32, (u32, u32)); 3] =
    [("q", 4, (3, 40)), ("h", 2, (1, 4)), ("f", 1, (1, 1))];
/// The least bitrate given to a simulcast layer.
const MIN_LAYER_BITRATE: u32 = 50_000;

/// Counters shared by the media tasks and [`crate::Publisher::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    n_video_frames: AtomicU64,
    n_keyframes: AtomicU64,
    video_bytes: AtomicU64,
    n_skipped_frames: AtomicU64,
    n_audio_packets: AtomicU64,
    n_keyframe_requests: AtomicU64,
}

impl Counters {
    /// One video frame of `n_bytes` handed to the track.
    pub(crate) fn count_video(&self, n_bytes: usize, keyframe: bool) {
        self.n_video_frames.fetch_add(1, Ordering::Relaxed);
        self.video_bytes
            .fetch_add(n_bytes as u64, Ordering::Relaxed);
        if keyframe {
            self.n_keyframes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One audio packet handed to the track.
    pub(crate) fn count_audio(&self) {
        self.n_audio_packets.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> PublisherStats {
        PublisherStats {
            n_video_frames: self.n_video_frames.load(Ordering::Relaxed),
            n_keyframes: self.n_keyframes.load(Ordering::Relaxed),
            video_bytes: self.video_bytes.load(Ordering::Relaxed),
            n_skipped_frames: self.n_skipped_frames.load(Ordering::Relaxed),
            n_audio_packets: self.n_audio_packets.load(Ordering::Relaxed),
            n_keyframe_requests: self.n_keyframe_requests.load(Ordering::Relaxed),
        }
    }
}

/// A published session: everything [`crate::Publisher`] owns.
pub(crate) struct Session {
    pub(crate) pc: Arc<dyn PeerConnection>,
    pub(crate) http: reqwest::Client,
    pub(crate) resource: Url,
    pub(crate) stream_key: String,
    /// Flips to `true` once, when the session is over (failed, closed or a media task died).
    pub(crate) done: watch::Receiver<bool>,
    pub(crate) done_tx: Arc<watch::Sender<bool>>,
    pub(crate) tasks: Vec<JoinHandle<()>>,
    pub(crate) counters: Arc<Counters>,
    /// Set by [`Session::stop`], so drop does not close a second time.
    pub(crate) pc_closed: bool,
}

/// Peer connection events the session cares about, as watchable values.
struct Events {
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        debug!(%state, "publisher peer connection state");
        self.state.send_replace(state);
    }
}

/// One 20 ms Opus frame of digital silence (TOC: CELT, fullband, 20 ms, one frame), the
/// frame WebRTC stacks send for a muted track.
const OPUS_SILENCE_FRAME: [u8; 3] = [0xf8, 0xff, 0xfe];

pub(crate) async fn publish(
    whip_url: &str,
    stream_key: &str,
    opts: SourceOptions,
) -> anyhow::Result<Session> {
    let opts = Checked::new(opts)?;
    let url = crate::whip::parse_url(whip_url)?;

    // Media first: a broken asset or encoder fails here, before anything touches the network.
    let audio = match opts.audio {
        AudioSource::Tone => opus_packets(TONE_OGG).context("built-in tone")?,
        AudioSource::Silence => vec![Bytes::from_static(&OPUS_SILENCE_FRAME)],
        AudioSource::None => vec![],
    };
    for p in &audio {
        if opus_packet_samples(p) != Ok(OPUS_CLOCK_RATE / AUDIO_PACKET_RATE) {
            bail!("built-in tone: every packet must last 20 ms");
        }
    }
    // One card and one encoder per layer (a single one without simulcast): each layer is drawn
    // at its own size, so every layer shows the same picture, legibly.
    let workers = opts
        .layers
        .iter()
        .map(|l| {
            Ok(VideoWorker {
                card: TestCard::new(l.width, l.height, opts.fps, &opts.label),
                encoder: {
                    let settings = EncoderSettings {
                        fps: opts.fps,
                        bitrate_bps: l.bitrate_bps,
                        idr_interval_frames: opts.idr_interval_frames,
                    };
                    if opts.skip_frames {
                        H264Encoder::with_frame_skipping(settings)?
                    } else {
                        H264Encoder::new(settings)?
                    }
                },
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let with_audio = opts.audio != AudioSource::None;
    let rids: Vec<Option<&'static str>> = opts.layers.iter().map(|l| l.rid).collect();
    let Connected {
        pc,
        http,
        resource,
        video,
        audio: audio_track,
        state_rx,
    } = connect(
        &Target {
            url: &url,
            stream_key,
            media_ip: None,
            headers: &[],
        },
        &rids,
        with_audio,
        STREAM_ID,
    )
    .await?;

    let (done_tx, done) = watch::channel(false);
    let done_tx = Arc::new(done_tx);
    let counters = Arc::new(Counters::default());
    // One keyframe-request flag per layer, keyed by the layer's SSRC.
    let keyframe_wanted: Vec<(u32, Arc<AtomicBool>)> = video
        .iter()
        .map(|l| (l.ssrc, Arc::new(AtomicBool::new(false))))
        .collect();
    let video_track = video
        .first()
        .map(|l| Arc::clone(&l.track))
        .ok_or_else(|| anyhow!("no video layer"))?;

    let mut tasks = vec![
        tokio::spawn(supervise(state_rx.clone(), Arc::clone(&done_tx))),
        tokio::spawn(forward_keyframe_requests(
            video_track,
            audio_track.as_ref().map(|a| Arc::clone(&a.track)),
            keyframe_wanted.clone(),
            Arc::clone(&counters),
        )),
    ];
    // One pump per layer: the layers encode in parallel (on blocking threads), each on its own
    // clock, so the big layer's encode never delays the small ones.
    for ((layer, worker), (_, wanted)) in video.into_iter().zip(workers).zip(keyframe_wanted) {
        tasks.push(tokio::spawn(guard(
            "video",
            Arc::clone(&done_tx),
            video_pump(
                layer,
                worker,
                opts.fps,
                state_rx.clone(),
                wanted,
                Arc::clone(&counters),
            ),
        )));
    }
    if let Some(audio_track) = audio_track {
        tasks.push(tokio::spawn(guard(
            "audio",
            Arc::clone(&done_tx),
            audio_pump(audio_track, audio, state_rx, Arc::clone(&counters)),
        )));
    }

    info!(
        %resource,
        width = opts.width,
        height = opts.height,
        fps = opts.fps,
        simulcast = opts.simulcast(),
        "published"
    );
    Ok(Session {
        pc,
        http,
        resource,
        stream_key: stream_key.to_owned(),
        done,
        done_tx,
        tasks,
        counters,
        pc_closed: false,
    })
}

/// Where and how to publish.
pub(crate) struct Target<'a> {
    pub(crate) url: &'a Url,
    pub(crate) stream_key: &'a str,
    /// Reach the relay's media port at this address, whatever the answer's candidates say:
    /// the answer's candidate addresses are replaced by it. For a publisher on the relay's own
    /// host, whose announced addresses (public IPs behind NAT) it may not reach.
    pub(crate) media_ip: Option<IpAddr>,
    /// Extra request headers of the WHIP POST (name, value).
    pub(crate) headers: &'a [(String, String)],
}

/// `sdp` with the connection address of every `a=candidate` line replaced by `ip`.
pub(crate) fn candidates_at(sdp: &str, ip: IpAddr) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let (body, eol) = match line.strip_suffix("\r\n") {
            Some(b) => (b, "\r\n"),
            None => match line.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (line, ""),
            },
        };
        if body.starts_with("a=candidate:") {
            let mut fields: Vec<String> = body.split(' ').map(str::to_owned).collect();
            if fields.len() > 5 {
                fields[4] = ip.to_string();
            }
            out.push_str(&fields.join(" "));
        } else {
            out.push_str(body);
        }
        out.push_str(eol);
    }
    out
}

/// A negotiated WHIP session before any media task runs.
pub(crate) struct Connected {
    pub(crate) pc: Arc<dyn PeerConnection>,
    pub(crate) http: reqwest::Client,
    pub(crate) resource: Url,
    /// One per layer, lowest first.
    pub(crate) video: Vec<SendTrack>,
    pub(crate) audio: Option<SendTrack>,
    pub(crate) state_rx: watch::Receiver<RTCPeerConnectionState>,
}

/// Builds the peer connection (H.264 video with one encoding per entry of `rids`, `None` for
/// a single stream; Opus audio if `with_audio`), POSTs the offer and applies the answer.
/// ICE, DTLS and media continue in the background; `state_rx` follows the connection.
pub(crate) async fn connect(
    target: &Target<'_>,
    rids: &[Option<&'static str>],
    with_audio: bool,
    stream_id: &str,
) -> anyhow::Result<Connected> {
    let http = crate::whip::client()?;
    let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
    let (gathered_tx, mut gathered_rx) = watch::channel(false);
    let events = Arc::new(Events {
        state: state_tx,
        gathered: gathered_tx,
    });

    let simulcast = rids.iter().any(Option::is_some);
    let (media_engine, registry) = media_engine(simulcast)?;
    let setting_engine = SettingEngineBuilder::new()
        // No .local candidates and no socket on port 5353: the relay needs plain addresses.
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let bind = bind_addrs(target.url, target.media_ip).await;
    debug!(?bind, "publisher ICE sockets");
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_setting_engine(setting_engine)
            .with_interceptor_registry(registry)
            .with_handler(events as Arc<dyn PeerConnectionEventHandler>)
            .with_udp_addrs(bind)
            .build()
            .await
            .context("building the peer connection")?,
    );

    let result = match add_tracks(&pc, rids, with_audio, stream_id).await {
        Ok(local) => negotiate(&pc, &http, target, local, rids, &mut gathered_rx).await,
        Err(e) => Err(e),
    };
    match result {
        Ok((resource, video, audio)) => Ok(Connected {
            pc,
            http,
            resource,
            video,
            audio,
            state_rx,
        }),
        Err(e) => {
            let _ = pc.close().await;
            Err(e)
        }
    }
}

/// One encoded video stream: the only one, or a simulcast layer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LayerSpec {
    /// The RID naming the layer (simulcast only).
    rid: Option<&'static str>,
    width: usize,
    height: usize,
    bitrate_bps: u32,
}

/// `SourceOptions` after validation, with the derived IDR interval and the video layers.
struct Checked {
    width: usize,
    height: usize,
    fps: u32,
    idr_interval_frames: u32,
    label: String,
    /// Lowest first; one entry (without a RID) unless simulcast.
    layers: Vec<LayerSpec>,
    audio: AudioSource,
    skip_frames: bool,
}

impl Checked {
    fn new(o: SourceOptions) -> anyhow::Result<Self> {
        if o.width < 16
            || o.height < 16
            || !o.width.is_multiple_of(2)
            || !o.height.is_multiple_of(2)
        {
            bail!(
                "picture size {}x{} must be even and at least 16x16",
                o.width,
                o.height
            );
        }
        if o.width > 3840 || o.height > 2160 {
            bail!("picture size {}x{} is above 3840x2160", o.width, o.height);
        }
        if !(1..=120).contains(&o.fps) {
            bail!("fps {} must be between 1 and 120", o.fps);
        }
        if o.bitrate_bps < 50_000 {
            bail!("bitrate {} bit/s is below 50 kbit/s", o.bitrate_bps);
        }
        if o.simulcast
            && (!o.width.is_multiple_of(8) || !o.height.is_multiple_of(8) || o.height < 64)
        {
            bail!(
                "simulcast needs a picture size divisible by 8 and at least 64x64, not {}x{}",
                o.width,
                o.height
            );
        }
        let frames = o.keyframe_interval.as_secs_f64() * f64::from(o.fps);
        if frames < 1.0 {
            bail!(
                "keyframe interval {:?} is shorter than a frame",
                o.keyframe_interval
            );
        }
        let width = usize::try_from(o.width)?;
        let height = usize::try_from(o.height)?;
        let layers = if o.simulcast {
            SIMULCAST_LAYERS
                .iter()
                .map(|&(rid, divisor, (num, den))| {
                    let divisor = divisor as usize;
                    let share = u64::from(o.bitrate_bps) * u64::from(num) / u64::from(den);
                    LayerSpec {
                        rid: Some(rid),
                        width: width / divisor,
                        height: height / divisor,
                        bitrate_bps: u32::try_from(share)
                            .unwrap_or(u32::MAX)
                            .max(MIN_LAYER_BITRATE),
                    }
                })
                .collect()
        } else {
            vec![LayerSpec {
                rid: None,
                width,
                height,
                bitrate_bps: o.bitrate_bps,
            }]
        };
        Ok(Self {
            width,
            height,
            fps: o.fps,
            idr_interval_frames: frames.round().min(f64::from(u32::MAX)) as u32,
            label: o.label,
            layers,
            audio: o.audio,
            skip_frames: o.skip_frames,
        })
    }

    fn simulcast(&self) -> bool {
        self.layers.iter().any(|l| l.rid.is_some())
    }
}

/// H.264 and Opus only, NACK (answered by the NACK responder), sender/receiver reports, the
/// `mid` header extension (with simulcast also `rtp-stream-id` and `repaired-rtp-stream-id` for
/// video, which is what Chromium offers), and the keyframe-request forwarder.
fn media_engine(simulcast: bool) -> anyhow::Result<(MediaEngine, Registry)> {
    let mut me = MediaEngine::default();
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: h264_codec(),
            payload_type: H264_PT,
        },
        RtpCodecKind::Video,
    )?;
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: OPUS_PT,
        },
        RtpCodecKind::Audio,
    )?;
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        me.register_header_extension(
            rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability {
                uri: rtc::sdp::extmap::SDES_MID_URI.to_owned(),
            },
            kind,
            None,
        )?;
    }
    if simulcast {
        // No RTX is sent (NACKs are answered on the layer's own SSRC), but the repaired-RID
        // extension is offered all the same, as browsers do.
        for uri in [
            rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI,
            rtc::sdp::extmap::SDES_REPAIR_RTP_STREAM_ID_URI,
        ] {
            me.register_header_extension(
                rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability {
                    uri: uri.to_owned(),
                },
                RtpCodecKind::Video,
                None,
            )?;
        }
    }
    // Registers `nack` and `nack pli` feedback for video and the NACK responder/generator.
    let registry = configure_nack(Registry::new(), &mut me);
    me.register_feedback(
        rtc::rtp_transceiver::rtp_sender::RTCPFeedback {
            typ: "ccm".to_owned(),
            parameter: "fir".to_owned(),
        },
        RtpCodecKind::Video,
    );
    let registry = configure_rtcp_reports(registry).with(
        Slot::from(KEYFRAME_REQUEST_SLOT),
        KeyframeRequestForwarder::default(),
    );
    Ok((me, registry))
}

fn h264_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/H264".to_owned(),
        clock_rate: VIDEO_CLOCK_RATE,
        channels: 0,
        sdp_fmtp_line: H264_FMTP.to_owned(),
        rtcp_feedback: vec![],
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: OPUS_CLOCK_RATE,
        channels: 2,
        sdp_fmtp_line: OPUS_FMTP.to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The local UDP addresses to gather host candidates on.
///
/// The address the kernel would route towards the WHIP host comes first and is bound exactly —
/// which keeps loopback working (webrtc-rs skips loopback when it expands a wildcard). When that
/// is not loopback, every other interface is added too (`0.0.0.0:0` expands to them).
/// With `media_ip` (see [`Target::media_ip`]) the route towards that address decides instead.
async fn bind_addrs(url: &Url, media_ip: Option<IpAddr>) -> Vec<SocketAddr> {
    let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let route = match media_ip {
        Some(ip) => route_to(SocketAddr::new(ip, 9)),
        None => route_towards(url).await,
    };
    match route {
        Some(ip) if ip.is_loopback() => vec![SocketAddr::new(ip, 0)],
        Some(ip) => vec![SocketAddr::new(ip, 0), any],
        None => vec![loopback, any],
    }
}

/// The local IP the kernel picks to reach the URL's host (no packet is sent).
async fn route_towards(url: &Url) -> Option<IpAddr> {
    let port = url.port_or_known_default()?;
    let host = url.host_str()?;
    // IPv6 literals come bracketed in URLs.
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let remote = match literal.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => tokio::net::lookup_host((host, port)).await.ok()?.next()?,
    };
    route_to(remote)
}

/// The local IP the kernel picks to reach `remote` (no packet is sent).
fn route_to(remote: SocketAddr) -> Option<IpAddr> {
    let local: SocketAddr = if remote.is_ipv4() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
    };
    let socket = std::net::UdpSocket::bind(local).ok()?;
    socket.connect(remote).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// A local track (or one simulcast layer of it) and what the answer negotiated for it.
pub(crate) struct SendTrack {
    pub(crate) track: Arc<TrackLocalStaticSample>,
    pub(crate) ssrc: u32,
    payload_type: u8,
    /// Header extensions put on every packet (simulcast: the `mid` and the layer's RID).
    extensions: Vec<HeaderExtension>,
}

impl SendTrack {
    pub(crate) async fn write(&self, sample: &Sample) -> webrtc::error::Result<()> {
        self.track
            .write_sample(self.ssrc, self.payload_type, sample, &self.extensions)
            .await
    }
}

/// The tracks added to the peer connection before the offer.
struct LocalTracks {
    video: Arc<TrackLocalStaticSample>,
    /// One per layer, lowest first.
    video_ssrcs: Vec<u32>,
    video_tr: Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>,
    /// None: the source sends no audio ([`AudioSource::None`]).
    audio: Option<LocalAudio>,
}

struct LocalAudio {
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    tr: Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>,
}

/// Adds the send-only audio and video tracks: the video track carries one encoding per layer
/// (with simulcast, each named by its RID, which makes webrtc-rs write `a=rid:<rid> send` and
/// `a=simulcast:send q;h;f` instead of `a=ssrc` lines).
async fn add_tracks(
    pc: &Arc<dyn PeerConnection>,
    rids: &[Option<&'static str>],
    with_audio: bool,
    stream_id: &str,
) -> anyhow::Result<LocalTracks> {
    let now = Instant::now();
    let video_ssrcs: Vec<u32> = rids.iter().map(|_| rand::random::<u32>()).collect();
    let audio_ssrc = rand::random::<u32>();
    let video_encodings = rids
        .iter()
        .zip(&video_ssrcs)
        .map(|(rid, &ssrc)| encoding(ssrc, *rid, h264_codec()))
        .collect();
    let video = Arc::new(TrackLocalStaticSample::new(
        now,
        track(RtpCodecKind::Video, video_encodings, stream_id),
    )?);
    let audio = Arc::new(TrackLocalStaticSample::new(
        now,
        track(
            RtpCodecKind::Audio,
            vec![encoding(audio_ssrc, None, opus_codec())],
            stream_id,
        ),
    )?);
    let sendonly = || {
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            ..Default::default()
        })
    };
    // Audio first: the conventional m-line order (and the one browsers use).
    let audio = if with_audio {
        let tr = pc
            .add_transceiver_from_track(Arc::clone(&audio) as Arc<dyn TrackLocal>, sendonly())
            .await?;
        Some(LocalAudio {
            track: audio,
            ssrc: audio_ssrc,
            tr,
        })
    } else {
        None
    };
    let video_tr = pc
        .add_transceiver_from_track(Arc::clone(&video) as Arc<dyn TrackLocal>, sendonly())
        .await?;
    Ok(LocalTracks {
        video,
        video_ssrcs,
        video_tr,
        audio,
    })
}

/// Offer → gather → POST → answer. Returns the session resource, the video layers (lowest
/// first) and the audio track.
async fn negotiate(
    pc: &Arc<dyn PeerConnection>,
    http: &reqwest::Client,
    target: &Target<'_>,
    local: LocalTracks,
    rids: &[Option<&'static str>],
    gathered: &mut watch::Receiver<bool>,
) -> anyhow::Result<(Url, Vec<SendTrack>, Option<SendTrack>)> {
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer).await?;
    // Non-trickle: wait for every host candidate to be in the SDP before sending it.
    if tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|g| *g))
        .await
        .is_err()
    {
        warn!("ICE gathering did not complete in {GATHER_TIMEOUT:?}; offering what was gathered");
    }
    let offer = pc
        .local_description()
        .await
        .ok_or_else(|| anyhow!("no local description after set_local_description"))?;
    trace!(sdp = %offer.sdp, "WHIP offer");

    let stream_key = target.stream_key;
    let mut session =
        crate::whip::post_offer(http, target.url, stream_key, target.headers, &offer.sdp).await?;
    trace!(sdp = %session.answer, "WHIP answer");
    if let Some(ip) = target.media_ip {
        session.answer = candidates_at(&session.answer, ip);
    }
    let applied = async {
        let answer = RTCSessionDescription::answer(session.answer.clone())?;
        pc.set_remote_description(answer).await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = applied {
        // The relay holds a session for us: release it before giving up.
        if let Err(d) = crate::whip::delete(http, &session.resource, stream_key).await {
            debug!(error = %d, "DELETE after a rejected answer failed");
        }
        return Err(e.context("applying the WHIP answer"));
    }

    let video_pt = negotiated_pt(&local.video_tr).await?;
    let audio = match local.audio {
        Some(a) => Some(SendTrack {
            payload_type: negotiated_pt(&a.tr).await?,
            track: a.track,
            ssrc: a.ssrc,
            extensions: vec![],
        }),
        None => None,
    };
    let video_mid = local.video_tr.mid().await?.unwrap_or_default();
    let video = rids
        .iter()
        .zip(&local.video_ssrcs)
        .map(|(rid, &ssrc)| SendTrack {
            track: Arc::clone(&local.video),
            ssrc,
            payload_type: video_pt,
            // A receiver learns which layer an SSRC carries from the RID on its packets (the
            // SDP has no a=ssrc lines with simulcast), and which section from the mid: both
            // go on every packet, as Chromium sends them until the receiver has seen them.
            extensions: match rid {
                Some(rid) => vec![
                    sdes_extension(rtc::sdp::extmap::SDES_MID_URI, &video_mid),
                    sdes_extension(rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI, rid),
                ],
                None => vec![],
            },
        })
        .collect();
    Ok((session.resource, video, audio))
}

/// An RTP header extension whose value is a short text (an RFC 8852 SDES item: mid, RID).
fn sdes_extension(uri: &'static str, value: &str) -> HeaderExtension {
    HeaderExtension::Custom {
        uri: uri.into(),
        extension: Box::new(SdesValue(Bytes::copy_from_slice(value.as_bytes()))),
    }
}

/// The value of an SDES header extension, written as is.
struct SdesValue(Bytes);

impl MarshalSize for SdesValue {
    fn marshal_size(&self) -> usize {
        self.0.len()
    }
}

impl Marshal for SdesValue {
    fn marshal_to(&self, buf: &mut [u8]) -> rtc::shared::error::Result<usize> {
        let n = self.0.len();
        buf.get_mut(..n)
            .ok_or(rtc::shared::error::Error::ErrBufferTooSmall)?
            .copy_from_slice(&self.0);
        Ok(n)
    }
}

fn encoding(ssrc: u32, rid: Option<&str>, codec: RTCRtpCodec) -> RTCRtpEncodingParameters {
    RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters {
            ssrc: Some(ssrc),
            rid: rid.unwrap_or_default().into(),
            ..Default::default()
        },
        codec,
        ..Default::default()
    }
}

fn track(
    kind: RtpCodecKind,
    encodings: Vec<RTCRtpEncodingParameters>,
    stream_id: &str,
) -> MediaStreamTrack {
    let id = match kind {
        RtpCodecKind::Audio => "audio",
        _ => "video",
    };
    MediaStreamTrack::new(
        stream_id.to_owned(),
        id.to_owned(),
        id.to_owned(),
        kind,
        encodings,
    )
}

/// The payload type the answer accepted for a transceiver's sender.
async fn negotiated_pt(
    transceiver: &Arc<dyn webrtc::rtp_transceiver::RtpTransceiver>,
) -> anyhow::Result<u8> {
    let sender = transceiver
        .sender()
        .await?
        .ok_or_else(|| anyhow!("transceiver has no sender"))?;
    let params = sender.get_parameters().await?;
    params
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
        .ok_or_else(|| anyhow!("the WHIP answer accepted none of the offered codecs"))
}

/// Marks the session done when the connection fails, closes, stays disconnected, or never
/// connects.
pub(crate) async fn supervise(
    mut state: watch::Receiver<RTCPeerConnectionState>,
    done: Arc<watch::Sender<bool>>,
) {
    let connected = tokio::time::timeout(
        CONNECT_TIMEOUT,
        state.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        }),
    )
    .await
    .map(|r| r.is_ok());
    match connected {
        Err(_) => warn!("publisher did not connect within {CONNECT_TIMEOUT:?}"),
        Ok(false) => {}
        Ok(true) => loop {
            let s = *state.borrow_and_update();
            match s {
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    info!(state = %s, "publisher connection ended");
                    break;
                }
                RTCPeerConnectionState::Disconnected => {
                    match tokio::time::timeout(DISCONNECT_GRACE, state.changed()).await {
                        Ok(Ok(())) => continue,
                        Ok(Err(_)) => break,
                        Err(_) => {
                            warn!("publisher disconnected for {DISCONNECT_GRACE:?}");
                            break;
                        }
                    }
                }
                _ => {
                    if state.changed().await.is_err() {
                        break;
                    }
                }
            }
        },
    }
    done.send_replace(true);
}

/// Runs a media task; any error ends the session.
pub(crate) async fn guard(
    what: &'static str,
    done: Arc<watch::Sender<bool>>,
    task: impl std::future::Future<Output = anyhow::Result<()>>,
) {
    let mut done_rx = done.subscribe();
    tokio::select! {
        result = task => {
            if let Err(e) = result {
                warn!(error = %format!("{e:#}"), "{what} task failed; ending the session");
            }
            done.send_replace(true);
        }
        _ = done_rx.wait_for(|d| *d) => {}
    }
}

async fn wait_connected(state: &mut watch::Receiver<RTCPeerConnectionState>) -> anyhow::Result<()> {
    state
        .wait_for(|s| *s == RTCPeerConnectionState::Connected)
        .await
        .map(|_| ())
        .map_err(|_| anyhow!("peer connection dropped before connecting"))
}

/// Writes an empty sample lasting `units`: the packetizer moves its RTP clock on without
/// sending anything (and without using sequence numbers).
pub(crate) async fn advance(t: &SendTrack, units: u32, clock_rate: u32) {
    let sample = Sample {
        duration: duration_for_units(units, clock_rate),
        ..Sample::new(Instant::now())
    };
    if let Err(e) = t.write(&sample).await {
        trace!(error = %e, "advancing the RTP clock failed");
    }
}

/// The blocking half of the video task: owned state moved to a blocking thread per frame.
struct VideoWorker {
    card: TestCard,
    encoder: H264Encoder,
}

async fn video_pump(
    t: SendTrack,
    worker: VideoWorker,
    fps: u32,
    mut state: watch::Receiver<RTCPeerConnectionState>,
    keyframe_wanted: Arc<AtomicBool>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    // Nothing is sent before DTLS is up, so the very first frame (an IDR) reaches the relay.
    wait_connected(&mut state).await?;
    let mut cadence = Cadence::new(fps, VIDEO_CLOCK_RATE);
    let mut ticker = tokio::time::interval(cadence.period());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let start = tokio::time::Instant::now();
    let mut worker = Some(worker);
    let mut last_forced_idr: Option<tokio::time::Instant> = None;
    loop {
        ticker.tick().await;
        let plan = cadence.on_tick(start.elapsed());
        let force = keyframe_wanted.load(Ordering::Relaxed)
            && last_forced_idr.is_none_or(|at| at.elapsed() >= MIN_KEYFRAME_SPACING);
        if force {
            keyframe_wanted.store(false, Ordering::Relaxed);
            last_forced_idr = Some(tokio::time::Instant::now());
            debug!(ssrc = t.ssrc, "IDR on request");
        }
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut w = worker.take().ok_or_else(|| anyhow!("video worker lost"))?;
        let (w, encoded) = tokio::task::spawn_blocking(move || {
            if force {
                w.encoder.request_keyframe();
            }
            let picture = w.card.render(plan.index, wall);
            let encoded = w.encoder.encode(picture);
            (w, encoded)
        })
        .await
        .context("video worker panicked")?;
        worker = Some(w);
        let frame = encoded?;
        if frame.data.is_empty() {
            // Dropped by the encoder to hold its bitrate: the clock moves on.
            counters.n_skipped_frames.fetch_add(1, Ordering::Relaxed);
            advance(&t, plan.gap_units + plan.units, VIDEO_CLOCK_RATE).await;
            continue;
        }

        if plan.gap_units > 0 {
            counters
                .n_skipped_frames
                .fetch_add(plan.n_skipped, Ordering::Relaxed);
            advance(&t, plan.gap_units, VIDEO_CLOCK_RATE).await;
        }
        if frame.is_idr {
            counters.n_keyframes.fetch_add(1, Ordering::Relaxed);
        }
        counters
            .video_bytes
            .fetch_add(frame.data.len() as u64, Ordering::Relaxed);
        counters.n_video_frames.fetch_add(1, Ordering::Relaxed);
        let sample = Sample {
            data: frame.data,
            duration: duration_for_units(plan.units, VIDEO_CLOCK_RATE),
            ..Sample::new(Instant::now())
        };
        if let Err(e) = t.write(&sample).await {
            trace!(error = %e, "writing a video frame failed");
        }
    }
}

async fn audio_pump(
    t: SendTrack,
    packets: Vec<Bytes>,
    mut state: watch::Receiver<RTCPeerConnectionState>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    if packets.is_empty() {
        bail!("no audio packets");
    }
    wait_connected(&mut state).await?;
    let mut cadence = Cadence::new(AUDIO_PACKET_RATE, OPUS_CLOCK_RATE);
    let mut ticker = tokio::time::interval(cadence.period());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let start = tokio::time::Instant::now();
    let n = packets.len() as u64;
    loop {
        ticker.tick().await;
        // Late packets are sent late rather than dropped (a receiver's jitter buffer absorbs
        // that); only a long stall gives packets up.
        for plan in cadence.due(start.elapsed(), MAX_AUDIO_CATCH_UP) {
            if plan.gap_units > 0 {
                advance(&t, plan.gap_units, OPUS_CLOCK_RATE).await;
            }
            // The slot index picks the packet, so the tone stays in phase across a gap.
            let packet = &packets[usize::try_from(plan.index % n).unwrap_or(0)];
            let sample = Sample {
                data: packet.clone(),
                duration: duration_for_units(plan.units, OPUS_CLOCK_RATE),
                ..Sample::new(Instant::now())
            };
            if let Err(e) = t.write(&sample).await {
                trace!(error = %e, "writing an audio packet failed");
            }
            counters.n_audio_packets.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Turns PLI/FIR arriving for the video track into a keyframe request for the video task of
/// the layer whose SSRC it names (`wanted`: one flag per layer, by SSRC).
pub(crate) async fn forward_keyframe_requests(
    video: Arc<TrackLocalStaticSample>,
    audio: Option<Arc<TrackLocalStaticSample>>,
    wanted: Vec<(u32, Arc<AtomicBool>)>,
    counters: Arc<Counters>,
) {
    let video_events = async {
        while let Some(event) = video.poll().await {
            if let TrackLocalEvent::OnRtcpPacket(packets) = event {
                let mut n = 0;
                for p in packets.iter().filter(|p| is_keyframe_request(p.as_ref())) {
                    n += 1;
                    for (_, flag) in layers_asked(&wanted, &p.destination_ssrc()) {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
                if n > 0 {
                    debug!(n, "keyframe requested");
                    counters
                        .n_keyframe_requests
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    };
    // Drained so nothing queues up; audio has no keyframes.
    let audio_events = async {
        if let Some(audio) = audio {
            while audio.poll().await.is_some() {}
        }
    };
    tokio::join!(video_events, audio_events);
}

/// The layers a keyframe request for `ssrcs` is meant for. A single stream takes every request;
/// of several layers, those named, or all of them if the request names none (it cannot be told
/// which one the receiver lacks).
fn layers_asked<'a, T>(layers: &'a [(u32, T)], ssrcs: &[u32]) -> Vec<&'a (u32, T)> {
    let named: Vec<&(u32, T)> = layers.iter().filter(|(s, _)| ssrcs.contains(s)).collect();
    if layers.len() == 1 || named.is_empty() {
        layers.iter().collect()
    } else {
        named
    }
}

fn is_keyframe_request(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Last in the interceptor chain: hands inbound PLI/FIR to the application (inbound RTCP stops
/// at the end of the chain otherwise) and lets every other packet end here as it would anyway.
#[derive(Default)]
struct KeyframeRequestForwarder {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_keyframe_request(p.as_ref()))
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

impl Session {
    /// Stops the media tasks, DELETEs the resource, closes the peer connection.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.done_tx.send_replace(true);
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let deleted = crate::whip::delete(&self.http, &self.resource, &self.stream_key).await;
        let closed = self.pc.close().await;
        self.pc_closed = true;
        deleted.context("WHIP DELETE")?;
        closed.context("closing the peer connection")?;
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if !self.pc_closed {
            // A webrtc-rs driver on the application's runtime outlives its handle unless
            // closed; closing needs a runtime, which a drop outside one does not have.
            self.done_tx.send_replace(true);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let pc = Arc::clone(&self.pc);
                runtime.spawn(async move {
                    let _ = pc.close().await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_validated_and_the_gop_is_counted_in_frames() {
        let ten = SourceOptions {
            keyframe_interval: Duration::from_secs(10),
            ..SourceOptions::default()
        };
        let checked = Checked::new(ten).expect("defaults with a 10 s GOP are valid");
        assert_eq!(checked.idr_interval_frames, 300);
        assert_eq!((checked.width, checked.height), (1280, 720));
        assert_eq!(
            Checked::new(SourceOptions::default())
                .map(|c| c.idr_interval_frames)
                .ok(),
            Some(60)
        );
        for bad in [
            SourceOptions {
                width: 1279,
                ..SourceOptions::default()
            },
            SourceOptions {
                fps: 0,
                ..SourceOptions::default()
            },
            SourceOptions {
                bitrate_bps: 1000,
                ..SourceOptions::default()
            },
            SourceOptions {
                keyframe_interval: Duration::from_millis(1),
                ..SourceOptions::default()
            },
        ] {
            assert!(Checked::new(bad).is_err());
        }
    }

    #[test]
    fn simulcast_makes_three_layers_quarter_half_and_full() {
        let simulcast = SourceOptions {
            simulcast: true,
            ..SourceOptions::default()
        };
        let layers = Checked::new(simulcast)
            .expect("720p simulcast is valid")
            .layers;
        let seen: Vec<(Option<&str>, usize, usize, u32)> = layers
            .iter()
            .map(|l| (l.rid, l.width, l.height, l.bitrate_bps))
            .collect();
        assert_eq!(
            seen,
            vec![
                (Some("q"), 320, 180, 150_000),
                (Some("h"), 640, 360, 500_000),
                (Some("f"), 1280, 720, 2_000_000),
            ]
        );
        let single = Checked::new(SourceOptions::default()).expect("defaults are valid");
        assert_eq!(
            single.layers,
            vec![LayerSpec {
                rid: None,
                width: 1280,
                height: 720,
                bitrate_bps: 2_000_000
            }]
        );
        // A quarter of 100x60 is not a whole, even picture.
        let odd = SourceOptions {
            width: 100,
            height: 60,
            simulcast: true,
            ..SourceOptions::default()
        };
        assert!(Checked::new(odd).is_err());
    }

    /// The offer the test source would POST, without sending it anywhere.
    async fn offer_sdp(simulcast: bool) -> String {
        let opts = Checked::new(SourceOptions {
            simulcast,
            ..SourceOptions::default()
        })
        .expect("valid options");
        let (media_engine, registry) = media_engine(simulcast).expect("media engine");
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(media_engine)
                .with_interceptor_registry(registry)
                .with_handler(Arc::new(Events {
                    state: watch::channel(RTCPeerConnectionState::New).0,
                    gathered: watch::channel(false).0,
                }) as Arc<dyn PeerConnectionEventHandler>)
                .with_udp_addrs(vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)])
                .build()
                .await
                .expect("peer connection"),
        );
        let rids: Vec<Option<&'static str>> = opts.layers.iter().map(|l| l.rid).collect();
        add_tracks(&pc, &rids, true, STREAM_ID)
            .await
            .expect("tracks");
        let offer = pc.create_offer(None).await.expect("offer");
        let _ = pc.close().await;
        offer.sdp
    }

    /// The lines of the video media section.
    fn video_section(sdp: &str) -> Vec<&str> {
        sdp.lines()
            .skip_while(|l| !l.starts_with("m=video"))
            .take_while(|l| !l.starts_with("m=audio"))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_simulcast_offer_names_the_layers_by_rid_as_chromium_does() {
        let sdp = offer_sdp(true).await;
        let video = video_section(&sdp);
        for line in [
            "a=rid:q send",
            "a=rid:h send",
            "a=rid:f send",
            "a=simulcast:send q;h;f",
            "a=sendonly",
        ] {
            assert!(
                video.contains(&line),
                "no {line:?} in the video section:\n{sdp}"
            );
        }
        for uri in [
            "urn:ietf:params:rtp-hdrext:sdes:mid",
            "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        ] {
            assert!(
                video
                    .iter()
                    .any(|l| l.starts_with("a=extmap:") && l.ends_with(&format!(" {uri}"))),
                "no a=extmap for {uri} in the video section:\n{sdp}"
            );
        }
        // Like Chromium: the layers are announced by RID, not by SSRC.
        assert!(
            !video.iter().any(|l| l.starts_with("a=ssrc:")),
            "a simulcast video section with a=ssrc lines:\n{sdp}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_stream_offer_is_unchanged() {
        let sdp = offer_sdp(false).await;
        let video = video_section(&sdp);
        assert!(
            !video
                .iter()
                .any(|l| l.starts_with("a=rid") || l.starts_with("a=simulcast")),
            "{sdp}"
        );
        assert!(!sdp.contains("rtp-stream-id"), "{sdp}");
        assert!(video.iter().any(|l| l.starts_with("a=ssrc:")), "{sdp}");
    }

    #[test]
    fn keyframe_requests_go_to_the_layer_they_name() {
        let layers = [(10, 'q'), (20, 'h'), (30, 'f')];
        let asked = |ssrcs: &[u32]| -> Vec<char> {
            layers_asked(&layers, ssrcs).iter().map(|l| l.1).collect()
        };
        assert_eq!(asked(&[20]), vec!['h']);
        assert_eq!(asked(&[30, 10]), vec!['q', 'f']);
        // Naming no layer: every layer is asked.
        assert_eq!(asked(&[99]), vec!['q', 'h', 'f']);
        // A single stream answers whatever SSRC the request names.
        assert_eq!(layers_asked(&[(10, 'x')], &[99]).len(), 1);
    }

    #[test]
    fn answer_candidates_can_be_moved_to_another_address() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 203.0.113.5 8443 typ host\r\n\
                   a=candidate:2 1 tcp 1 203.0.113.5 8443 typ host tcptype passive\r\na=end\r\n";
        let moved = candidates_at(sdp, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            moved,
            "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 8443 typ host\r\n\
             a=candidate:2 1 tcp 1 127.0.0.1 8443 typ host tcptype passive\r\na=end\r\n"
        );
    }

    #[test]
    fn only_pli_and_fir_are_keyframe_requests() {
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 2,
        };
        assert!(is_keyframe_request(&pli));
        let rr = rtc::rtcp::receiver_report::ReceiverReport::default();
        assert!(!is_keyframe_request(&rr));
    }
}
