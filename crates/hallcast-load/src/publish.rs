//! The benchmark publisher: loops the pre-encoded H.264 file and the Opus tone over WHIP at
//! their real rates, with str0m's frame API (it packetizes, keeps the NACK send buffer and
//! answers NACKs with RTX). Nothing is encoded at run time, so the publisher costs about as
//! much as one subscriber.
//!
//! A keyframe request (PLI/FIR, at most one acted on per second) makes the loop jump to the
//! next IDR of the file, as an encoder would answer with a fresh IDR.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::media::{self, AccessUnit, H264_LOOP_FPS, OPUS_FRAME_SAMPLES};
use crate::{signal, udp_socket};

/// RTP payload types offered for the video (H.264 constrained baseline 42e01f,
/// packetization-mode 1) and its RTX.
const H264_PT: u8 = 102;
const H264_RTX_PT: u8 = 103;
/// How often a keyframe request may move the loop to the next IDR.
const KEYFRAME_JUMP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub whip_url: String,
    pub stream_key: String,
    pub bind_ip: IpAddr,
    /// Stop after this long (None: until stopped).
    pub duration: Option<Duration>,
    /// How long to wait for the WHIP answer (409 retried) and then for ICE + DTLS.
    pub join_timeout: Duration,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PublishReport {
    pub secs: f64,
    pub connect_ms: f64,
    pub video_frames: u64,
    pub audio_packets: u64,
    pub keyframe_requests: u64,
    pub keyframe_jumps: u64,
    pub loops: u64,
}

struct Source {
    video: Vec<AccessUnit>,
    audio: Vec<std::sync::Arc<[u8]>>,
}

/// Publishes until `stop` turns true, the duration ends, or the relay closes the session.
pub async fn run(
    opts: &PublishOptions,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<PublishReport> {
    let source = Source {
        video: media::h264_access_units(media::H264_LOOP),
        audio: media::opus_packets(media::OPUS_OGG)?,
    };
    anyhow::ensure!(
        source.video.first().is_some_and(|u| u.keyframe),
        "the video loop must start with an IDR"
    );
    let socket = udp_socket(opts.bind_ip, 1 << 20)?;
    let local = socket.local_addr()?;
    let mut config = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .set_stats_interval(None);
    config
        .codec_config()
        .add_h264(H264_PT.into(), Some(H264_RTX_PT.into()), true, 0x42e01f);
    let mut rtc = config.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").context("host candidate")?);
    let mut api = rtc.sdp_api();
    let audio_mid = api.add_media(
        MediaKind::Audio,
        Direction::SendOnly,
        Some("hallcast-load".into()),
        None,
        None,
    );
    let video_mid = api.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        Some("hallcast-load".into()),
        None,
        None,
    );
    let (offer, pending) = api.apply().context("str0m made no offer")?;
    let give_up_at = Instant::now() + opts.join_timeout;
    let client = signal::http_client()?;
    let answer = signal::post_offer(
        &client,
        &opts.whip_url,
        &opts.stream_key,
        &offer.to_sdp_string(),
        give_up_at,
    )
    .await?;
    let sdp = SdpAnswer::from_sdp_string(&answer.sdp).context("parsing the WHIP answer")?;
    rtc.sdp_api()
        .accept_answer(pending, sdp)
        .context("applying the WHIP answer")?;
    let video_pt = negotiated_pt(&mut rtc, video_mid, Codec::H264)
        .context("the relay did not accept H.264")?;
    let audio_pt =
        negotiated_pt(&mut rtc, audio_mid, Codec::Opus).context("the relay did not accept Opus")?;

    let mut state = Publisher {
        rtc,
        socket,
        local,
        started: answer.posted_at,
        connected_at: None,
        report: PublishReport::default(),
        pos: 0,
        n_frames: 0,
        n_audio: 0,
        last_jump: None,
        closed: false,
    };
    let result = state
        .run(
            &source,
            (video_mid, video_pt),
            (audio_mid, audio_pt),
            opts,
            &mut stop,
        )
        .await;
    if let Some(resource) = &answer.resource
        && let Err(e) = signal::delete(&client, resource, &opts.stream_key).await
    {
        debug!("{e:#}");
    }
    result?;
    state.report.secs = state.started.elapsed().as_secs_f64();
    Ok(state.report)
}

fn negotiated_pt(rtc: &mut Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let writer = rtc.writer(mid)?;
    writer
        .payload_params()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
}

struct Publisher {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    started: Instant,
    connected_at: Option<Instant>,
    report: PublishReport,
    /// Index of the next access unit to send.
    pos: usize,
    n_frames: u64,
    n_audio: u64,
    last_jump: Option<Instant>,
    closed: bool,
}

impl Publisher {
    async fn run(
        &mut self,
        source: &Source,
        (video_mid, video_pt): (Mid, Pt),
        (audio_mid, audio_pt): (Mid, Pt),
        opts: &PublishOptions,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let frame_interval = Duration::from_secs(1) / H264_LOOP_FPS;
        let audio_interval = Duration::from_millis(20);
        let end = opts.duration.map(|d| self.started + d);
        let connect_deadline = self.started + opts.join_timeout;
        let mut buf = vec![0u8; 2048];
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        // Media schedule, anchored when the session connects.
        let mut next_video = Instant::now();
        let mut next_audio = Instant::now();
        loop {
            let timeout = self.drain(source)?;
            if self.closed || !self.rtc.is_alive() {
                anyhow::bail!("the relay closed the publishing session");
            }
            let now = Instant::now();
            if end.is_some_and(|e| now >= e) {
                return Ok(());
            }
            let mut wake = timeout;
            match self.connected_at {
                None if now >= connect_deadline => {
                    anyhow::bail!("publisher not connected within the join timeout")
                }
                None => wake = wake.min(connect_deadline),
                Some(_) => wake = wake.min(next_video).min(next_audio),
            }
            if let Some(e) = end {
                wake = wake.min(e);
            }
            sleep.as_mut().reset(wake.into());
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                r = self.socket.readable() => {
                    r.context("socket")?;
                    loop {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, source_addr)) => {
                                let Ok(input) = Receive::new(Protocol::Udp, source_addr, self.local, &buf[..n]) else { continue };
                                self.rtc.handle_input(Input::Receive(Instant::now(), input)).context("WebRTC input")?;
                                self.drain(source)?;
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                            Err(e) => return Err(e).context("receiving"),
                        }
                    }
                }
                _ = &mut sleep => {
                    self.rtc.handle_input(Input::Timeout(Instant::now())).context("WebRTC timeout")?;
                }
            }
            let Some(connected_at) = self.connected_at else {
                continue;
            };
            if self.report.video_frames == 0 && self.report.audio_packets == 0 {
                next_video = connected_at;
                next_audio = connected_at;
            }
            let now = Instant::now();
            // After a stall (the machine is shared) resume at the current time rather than
            // bursting the backlog.
            if now > next_video + Duration::from_millis(500) {
                next_video = now;
            }
            if now > next_audio + Duration::from_millis(500) {
                next_audio = now;
            }
            while now >= next_video {
                let unit = &source.video[self.pos];
                let rtp_time = MediaTime::new(
                    self.n_frames * u64::from(90_000 / H264_LOOP_FPS),
                    Frequency::NINETY_KHZ,
                );
                if let Some(w) = self.rtc.writer(video_mid) {
                    w.write(video_pt, now, rtp_time, unit.data.clone())
                        .context("writing video")?;
                }
                self.n_frames += 1;
                self.report.video_frames += 1;
                self.pos += 1;
                if self.pos == source.video.len() {
                    self.pos = 0;
                    self.report.loops += 1;
                }
                next_video += frame_interval;
                self.drain(source)?;
            }
            while now >= next_audio {
                let packet = &source.audio[(self.n_audio % source.audio.len() as u64) as usize];
                let rtp_time = MediaTime::new(
                    self.n_audio * u64::from(OPUS_FRAME_SAMPLES),
                    Frequency::FORTY_EIGHT_KHZ,
                );
                if let Some(w) = self.rtc.writer(audio_mid) {
                    w.write(audio_pt, now, rtp_time, packet.clone())
                        .context("writing audio")?;
                }
                self.n_audio += 1;
                self.report.audio_packets += 1;
                next_audio += audio_interval;
                self.drain(source)?;
            }
        }
    }

    fn drain(&mut self, source: &Source) -> anyhow::Result<Instant> {
        loop {
            match self.rtc.poll_output().context("WebRTC")? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => {
                    let now = Instant::now();
                    self.connected_at = Some(now);
                    self.report.connect_ms =
                        now.saturating_duration_since(self.started).as_secs_f64() * 1e3;
                    info!(after_ms = self.report.connect_ms, "publisher connected");
                }
                Output::Event(Event::KeyframeRequest(_)) => {
                    self.report.keyframe_requests += 1;
                    let now = Instant::now();
                    if self
                        .last_jump
                        .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_JUMP_INTERVAL)
                    {
                        self.last_jump = Some(now);
                        self.report.keyframe_jumps += 1;
                        self.pos = next_keyframe(&source.video, self.pos);
                    }
                }
                Output::Event(
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                    | Event::Closed,
                ) => {
                    self.closed = true;
                }
                Output::Event(_) => {}
            }
        }
    }
}

/// Index of the first keyframe at or after `pos`, wrapping around (the loop starts with one).
fn next_keyframe(units: &[AccessUnit], pos: usize) -> usize {
    (pos..units.len()).find(|&i| units[i].keyframe).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_jumps_go_forward_and_wrap() {
        let units = media::h264_access_units(media::H264_LOOP);
        assert_eq!(next_keyframe(&units, 0), 0);
        assert_eq!(next_keyframe(&units, 1), 60);
        assert_eq!(next_keyframe(&units, 60), 60);
        assert_eq!(next_keyframe(&units, 241), 0);
    }
}
