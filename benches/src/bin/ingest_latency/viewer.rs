//! The benchmark's viewer: one WHEP subscriber on str0m in RTP mode (no depacketizer or jitter
//! buffer, so a frame counts the moment its last packet arrives), as `hallcast-load`'s
//! subscribers are, reassembling H.264 frames by RTP timestamp ([`FrameAssembler`]).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use hallcast_load::signal;
use str0m::change::SdpAnswer;
use str0m::format::{Codec, detect_h264_keyframe};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::media::FrameAssembler;

/// What the viewer saw.
#[derive(Debug, Default)]
pub struct Watched {
    /// When the WHEP offer that was accepted was posted.
    pub posted_at: Option<Instant>,
    /// When the first whole keyframe arrived (the first picture a player could show).
    pub first_picture: Option<Instant>,
    /// Frame counter → when the frame was whole.
    pub frames: HashMap<u32, Instant>,
    pub video_packets: u64,
}

struct State {
    h264_pts: Vec<u8>,
    assembler: FrameAssembler,
    watched: Watched,
    closed: bool,
    first_tx: watch::Sender<Option<Instant>>,
}

impl State {
    fn on_event(&mut self, e: Event) {
        match e {
            Event::RtpPacket(p) => {
                if !self.h264_pts.contains(&*p.header.payload_type) {
                    return;
                }
                self.watched.video_packets += 1;
                let key = detect_h264_keyframe(&p.payload);
                if let Some(c) = self.assembler.push(
                    p.header.timestamp,
                    *p.seq_no,
                    p.header.marker,
                    key,
                    &p.payload,
                ) {
                    self.watched.frames.entry(c.counter).or_insert(p.timestamp);
                    if c.keyframe && self.watched.first_picture.is_none() {
                        self.watched.first_picture = Some(p.timestamp);
                        let _ = self.first_tx.send(Some(p.timestamp));
                    }
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) | Event::Closed => {
                self.closed = true;
            }
            _ => {}
        }
    }
}

fn drain(rtc: &mut Rtc, socket: &UdpSocket, st: &mut State) -> anyhow::Result<Instant> {
    loop {
        match rtc.poll_output().context("WebRTC")? {
            Output::Timeout(t) => return Ok(t),
            Output::Transmit(t) => {
                let _ = socket.try_send_to(&t.contents, t.destination);
            }
            Output::Event(e) => st.on_event(e),
        }
    }
}

/// Watches `whep_url` until `stop` turns true; `first_tx` is told the first picture's time.
pub async fn watch(
    client: &reqwest::Client,
    whep_url: &str,
    token: &str,
    mut stop: watch::Receiver<bool>,
    first_tx: watch::Sender<Option<Instant>>,
) -> anyhow::Result<Watched> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .context("binding the viewer's socket")?;
    let local: SocketAddr = socket.local_addr()?;
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_h264(true)
        .set_stats_interval(None)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").context("host candidate")?);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().context("str0m made no offer")?;
    let answer = signal::post_offer(
        client,
        whep_url,
        token,
        &offer.to_sdp_string(),
        Instant::now() + Duration::from_secs(20),
    )
    .await?;
    let sdp = SdpAnswer::from_sdp_string(&answer.sdp).context("parsing the SDP answer")?;
    rtc.sdp_api()
        .accept_answer(pending, sdp)
        .context("applying the SDP answer")?;
    let h264_pts = rtc
        .codec_config()
        .params()
        .iter()
        .filter(|p| p.spec().codec == Codec::H264)
        .map(|p| *p.pt())
        .collect();
    let mut st = State {
        h264_pts,
        assembler: FrameAssembler::default(),
        watched: Watched {
            posted_at: Some(answer.posted_at),
            ..Watched::default()
        },
        closed: false,
        first_tx,
    };
    let result = receive(&mut rtc, &socket, local, &mut st, &mut stop).await;
    if let Some(resource) = &answer.resource {
        let _ = signal::delete(client, resource, token).await;
    }
    result.map(|()| st.watched)
}

async fn receive(
    rtc: &mut Rtc,
    socket: &UdpSocket,
    local: SocketAddr,
    st: &mut State,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 2048];
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        let timeout = drain(rtc, socket, st)?;
        if *stop.borrow() {
            return Ok(());
        }
        if st.closed || !rtc.is_alive() {
            anyhow::bail!("the relay closed the viewer's session");
        }
        sleep.as_mut().reset(timeout.into());
        tokio::select! {
            biased;
            _ = stop.changed() => return Ok(()),
            r = socket.readable() => {
                r.context("socket")?;
                loop {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, source)) => {
                            let Ok(input) = Receive::new(Protocol::Udp, source, local, &buf[..n]) else { continue };
                            rtc.handle_input(Input::Receive(Instant::now(), input)).context("WebRTC input")?;
                            drain(rtc, socket, st)?;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
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
