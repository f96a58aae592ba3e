//! A WHIP publisher of externally supplied media: H.264 access units and Opus packets that
//! someone else encoded (an RTMP or SRT ingest gateway), sent through the same webrtc-rs
//! machinery as the test card.
//!
//! The caller pushes media as it arrives ([`FeedPublisher::send_video`],
//! [`FeedPublisher::send_audio`]), never blocking: each kind has a bounded queue, and what
//! does not fit is dropped and counted. Video pushed before the peer connection is up is
//! kept from its latest keyframe on (the GOP in progress) and sent at once when it comes up,
//! so the relay's first picture decodes without waiting for the encoder's next keyframe;
//! audio pushed before that is dropped. RTP timestamps follow the caller's timestamps: a frame's RTP time is
//! its timestamp's distance from the first frame's, in the track's clock (90 kHz for
//! video, 48 kHz for Opus), so pauses and jitter of the source stay in the RTP clock.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use rtc::media::Sample;
use tokio::sync::{mpsc, watch};
use tracing::{info, trace};
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::session::{self, Connected, Counters, SendTrack};

/// Media stream id of a feed's two tracks.
const FEED_STREAM_ID: &str = "hallcast-feed";
/// Frames queued for the video task before new ones are dropped (a few seconds at 30 fps).
const VIDEO_QUEUE: usize = 128;
/// Opus packets queued for the audio task before new ones are dropped (2.5 s of 20 ms).
const AUDIO_QUEUE: usize = 128;
/// Frames kept while the connection comes up (the GOP in progress): 10 s at 30 fps.
const MAX_PENDING_GOP: usize = 300;
/// A timestamp step longer than this (or backwards) is a discontinuity of the source, not a
/// pause: the RTP clock moves on by one nominal frame instead (10 s).
const MAX_STEP_SECONDS: i64 = 10;

/// One H.264 access unit for [`FeedPublisher::send_video`].
#[derive(Debug, Clone)]
pub struct FeedVideo {
    /// Presentation time in 90 kHz units (any origin; only differences count).
    pub ts: i64,
    /// The access unit in Annex B (start codes), SPS/PPS in front of every IDR.
    pub annexb: Bytes,
    /// Whether the access unit holds an IDR slice.
    pub keyframe: bool,
}

/// One Opus packet for [`FeedPublisher::send_audio`].
#[derive(Debug, Clone)]
pub struct FeedAudio {
    /// Time of the packet's first sample in 48 kHz units (any origin; only differences count).
    pub ts: i64,
    /// The Opus packet (20 ms).
    pub opus: Bytes,
}

/// Counters of a [`FeedPublisher`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Access units handed to the video track.
    pub n_video_frames: u64,
    /// Of which keyframes.
    pub n_keyframes: u64,
    /// Opus packets handed to the audio track.
    pub n_audio_packets: u64,
    /// Access units and packets dropped: pushed before the connection was up (video: before
    /// its first keyframe after that) or while a queue was full.
    pub n_dropped: u64,
    /// PLI and FIR received from the relay (an external encoder cannot be asked for a keyframe).
    pub n_keyframe_requests: u64,
}

/// A live WHIP session fed by the caller. Dropping it stops the media and the peer connection
/// but does not DELETE the resource: call [`FeedPublisher::stop`].
pub struct FeedPublisher {
    session: session::Session,
    video: mpsc::Sender<FeedVideo>,
    audio: mpsc::Sender<FeedAudio>,
    n_dropped: Arc<AtomicU64>,
    state: watch::Receiver<RTCPeerConnectionState>,
}

/// Publishes a feed to `whip_url` (plain `http://`) with `stream_key` as the bearer token:
/// one H.264 video track (constrained baseline offered; the relay passes the bitstream through
/// whatever its profile) and one Opus audio track.
///
/// Returns once the answer is applied; ICE and DTLS continue in the background. Must be called
/// within a Tokio runtime.
///
/// # Errors
/// An invalid URL, a network failure, or a refusal: a [`crate::WhipError`] with the HTTP
/// status (401: wrong stream key, 404: no such conference, 409: already live).
///
/// `media_ip`: reach the relay's media port at this address instead of the answer's
/// candidates (a gateway on the relay's own host: the relay's bound media address, or
/// loopback when it binds a wildcard; its announced public addresses may be unreachable from
/// inside a 1:1 NAT).
pub async fn publish_feed(
    whip_url: &str,
    stream_key: &str,
    media_ip: Option<IpAddr>,
) -> anyhow::Result<FeedPublisher> {
    publish_feed_with(whip_url, stream_key, media_ip, &[]).await
}

/// [`publish_feed`] with extra headers on the WHIP POST (hallcast's ingest gateway names its
/// protocol this way; the relay believes it only on its loopback ingest listener).
pub async fn publish_feed_with(
    whip_url: &str,
    stream_key: &str,
    media_ip: Option<IpAddr>,
    headers: &[(String, String)],
) -> anyhow::Result<FeedPublisher> {
    let url = crate::whip::parse_url(whip_url)?;
    let Connected {
        pc,
        http,
        resource,
        video,
        audio,
        state_rx,
    } = session::connect(
        &session::Target {
            url: &url,
            stream_key,
            media_ip,
            headers,
        },
        &[None],
        true,
        FEED_STREAM_ID,
    )
    .await?;
    let video = video
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no video track"))?;
    let audio = audio.ok_or_else(|| anyhow::anyhow!("no audio track"))?;

    let (done_tx, done) = watch::channel(false);
    let done_tx = Arc::new(done_tx);
    let counters = Arc::new(Counters::default());
    let n_dropped = Arc::new(AtomicU64::new(0));
    let (video_tx, video_rx) = mpsc::channel(VIDEO_QUEUE);
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE);
    let tasks = vec![
        tokio::spawn(session::supervise(state_rx.clone(), Arc::clone(&done_tx))),
        tokio::spawn(session::forward_keyframe_requests(
            Arc::clone(&video.track),
            Some(Arc::clone(&audio.track)),
            // Nobody to ask: the requests are only counted.
            vec![(video.ssrc, Arc::new(AtomicBool::new(false)))],
            Arc::clone(&counters),
        )),
        tokio::spawn(session::guard(
            "feed video",
            Arc::clone(&done_tx),
            video_pump(
                video,
                video_rx,
                state_rx.clone(),
                Arc::clone(&counters),
                Arc::clone(&n_dropped),
            ),
        )),
        tokio::spawn(session::guard(
            "feed audio",
            Arc::clone(&done_tx),
            audio_pump(
                audio,
                audio_rx,
                state_rx.clone(),
                Arc::clone(&counters),
                Arc::clone(&n_dropped),
            ),
        )),
    ];
    info!(%resource, "feed published");
    Ok(FeedPublisher {
        session: session::Session {
            pc,
            http,
            resource,
            stream_key: stream_key.to_owned(),
            done,
            done_tx,
            tasks,
            counters,
            pc_closed: false,
        },
        video: video_tx,
        audio: audio_tx,
        n_dropped,
        state: state_rx,
    })
}

impl FeedPublisher {
    /// Queues one access unit; never waits. Returns `false` if it was dropped (queue full or
    /// session over).
    pub fn send_video(&self, frame: FeedVideo) -> bool {
        let sent = self.video.try_send(frame).is_ok();
        if !sent {
            self.n_dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Queues one Opus packet; never waits. Returns `false` if it was dropped.
    pub fn send_audio(&self, packet: FeedAudio) -> bool {
        let sent = self.audio.try_send(packet).is_ok();
        if !sent {
            self.n_dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Whether the session is over (connection failed or closed, a media task failed).
    pub fn is_closed(&self) -> bool {
        *self.session.done.borrow()
    }

    /// Resolves when the session is over (see [`crate::Publisher::closed`]).
    pub async fn closed(&self) {
        let mut done = self.session.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }

    /// Resolves once the peer connection is up (or the session is over).
    pub async fn connected(&self) {
        let mut state = self.state.clone();
        let mut done = self.session.done.clone();
        tokio::select! {
            _ = state.wait_for(|s| *s == RTCPeerConnectionState::Connected) => {}
            _ = done.wait_for(|d| *d) => {}
        }
    }

    /// DELETEs the resource and closes the peer connection.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.session.stop().await
    }

    /// The session resource (the absolute `Location` of the WHIP answer).
    pub fn resource(&self) -> &str {
        self.session.resource.as_str()
    }

    /// What has been sent so far.
    pub fn stats(&self) -> FeedStats {
        let s = self.session.counters.snapshot();
        FeedStats {
            n_video_frames: s.n_video_frames,
            n_keyframes: s.n_keyframes,
            n_audio_packets: s.n_audio_packets,
            n_dropped: self.n_dropped.load(Ordering::Relaxed),
            n_keyframe_requests: s.n_keyframe_requests,
        }
    }
}

impl std::fmt::Debug for FeedPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedPublisher")
            .field("resource", &self.resource())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Turns a source's timestamps into RTP clock steps (sans-IO).
#[derive(Debug, Clone)]
pub(crate) struct RtpSteps {
    clock_rate: u32,
    /// The step used after a discontinuity: one nominal frame.
    nominal: u32,
    last: Option<i64>,
}

impl RtpSteps {
    pub(crate) fn new(clock_rate: u32, nominal: u32) -> Self {
        Self {
            clock_rate,
            nominal,
            last: None,
        }
    }

    /// The RTP time to advance before the frame stamped `ts` (0 for the first frame). A step
    /// backwards or longer than [`MAX_STEP_SECONDS`] is a discontinuity: one nominal frame.
    pub(crate) fn step(&mut self, ts: i64) -> u32 {
        let step = match self.last {
            None => 0,
            Some(last) => {
                let d = ts.saturating_sub(last);
                if d >= 0 && d <= MAX_STEP_SECONDS * i64::from(self.clock_rate) {
                    u32::try_from(d).unwrap_or(self.nominal)
                } else {
                    self.nominal
                }
            }
        };
        self.last = Some(ts);
        step
    }
}

fn is_connected(state: &watch::Receiver<RTCPeerConnectionState>) -> bool {
    *state.borrow() == RTCPeerConnectionState::Connected
}

async fn write(t: &SendTrack, step: u32, clock_rate: u32, data: Bytes) {
    if step > 0 {
        session::advance(t, step, clock_rate).await;
    }
    let sample = Sample {
        data,
        duration: std::time::Duration::ZERO,
        ..Sample::new(Instant::now())
    };
    if let Err(e) = t.write(&sample).await {
        trace!(error = %e, "writing a feed sample failed");
    }
}

async fn video_pump(
    t: SendTrack,
    mut rx: mpsc::Receiver<FeedVideo>,
    state: watch::Receiver<RTCPeerConnectionState>,
    counters: Arc<Counters>,
    n_dropped: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    // 90 kHz; one frame at 30 fps after a discontinuity.
    let mut steps = RtpSteps::new(90_000, 3000);
    let mut started = false;
    // Until the connection is up: the frames since the latest keyframe, sent at once when it
    // comes up, so the relay's first picture need not wait for the encoder's next keyframe.
    let mut gop: Vec<FeedVideo> = Vec::new();
    while let Some(frame) = rx.recv().await {
        if !started {
            if frame.keyframe {
                n_dropped.fetch_add(gop.len() as u64, Ordering::Relaxed);
                gop.clear();
            }
            if frame.keyframe || !gop.is_empty() {
                gop.push(frame);
            } else {
                n_dropped.fetch_add(1, Ordering::Relaxed);
            }
            if gop.len() > MAX_PENDING_GOP {
                // A keyframe interval longer than this: wait for the next keyframe.
                n_dropped.fetch_add(gop.len() as u64, Ordering::Relaxed);
                gop.clear();
            }
            if !is_connected(&state) || gop.is_empty() {
                continue;
            }
            started = true;
            for f in gop.drain(..) {
                let step = steps.step(f.ts);
                counters.count_video(f.annexb.len(), f.keyframe);
                write(&t, step, 90_000, f.annexb).await;
            }
            continue;
        }
        let step = steps.step(frame.ts);
        counters.count_video(frame.annexb.len(), frame.keyframe);
        write(&t, step, 90_000, frame.annexb).await;
    }
    Ok(())
}

async fn audio_pump(
    t: SendTrack,
    mut rx: mpsc::Receiver<FeedAudio>,
    state: watch::Receiver<RTCPeerConnectionState>,
    counters: Arc<Counters>,
    n_dropped: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    // 48 kHz; one 20 ms packet after a discontinuity.
    let mut steps = RtpSteps::new(48_000, 960);
    while let Some(packet) = rx.recv().await {
        if !is_connected(&state) {
            n_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let step = steps.step(packet.ts);
        counters.count_audio();
        write(&t, step, 48_000, packet.opus).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_steps_follow_the_source_and_survive_discontinuities() {
        let mut s = RtpSteps::new(90_000, 3000);
        assert_eq!(s.step(1_000_000), 0);
        assert_eq!(s.step(1_003_000), 3000);
        // A late frame keeps its real distance (a pause of the source).
        assert_eq!(s.step(1_096_000), 93_000);
        // Backwards (a restarted encoder's clock): one nominal frame.
        assert_eq!(s.step(5), 3000);
        assert_eq!(s.step(3005), 3000);
        // A jump of more than 10 s: one nominal frame.
        assert_eq!(s.step(3005 + 11 * 90_000), 3000);
        // Equal timestamps: no step.
        assert_eq!(s.step(3005 + 11 * 90_000), 0);
    }
}
