//! End to end: `publish` against a tiny WHIP endpoint made of axum and a webrtc-rs answerer on
//! 127.0.0.1. The answerer depacketizes and decodes the H.264 it receives, so "packets arrived"
//! means "a decoder could show them".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use hallcast_client::{SourceOptions, WhipError, publish};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::watch;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCSessionDescription, Registry, SettingEngineBuilder,
    register_default_interceptors,
};

const KEY: &str = "secret-stream-key";

/// What the answerer saw.
#[derive(Default)]
struct Seen {
    video_packets: AtomicU64,
    audio_packets: AtomicU64,
    decoded_frames: AtomicU64,
    decoded_size: Mutex<Option<(usize, usize)>>,
    /// Video RTP timestamp steps that are not a whole number of 1/30 s frames.
    odd_video_steps: AtomicU64,
    /// Audio RTP timestamp steps that are not whole 20 ms packets (960 at 48 kHz).
    odd_audio_steps: AtomicU64,
    /// The video sequence number the lossy path dropped, and whether it was sent again.
    dropped_seq: Mutex<Option<u16>>,
    retransmitted: AtomicBool,
    video_mime: Mutex<Option<String>>,
    audio_mime: Mutex<Option<String>>,
    offer: Mutex<Option<String>>,
    deleted: AtomicBool,
    delete_auth_ok: AtomicBool,
}

#[derive(Clone)]
struct Endpoint {
    /// Put a [`lossy_path`] between publisher and answerer.
    lossy: bool,
    seen: Arc<Seen>,
    sessions: Arc<Mutex<HashMap<String, Arc<dyn PeerConnection>>>>,
}

struct Answerer {
    gathered: watch::Sender<bool>,
    seen: Arc<Seen>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Answerer {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let seen = Arc::clone(&self.seen);
        tokio::spawn(async move {
            let kind = track.kind().await;
            let ssrc = track.ssrcs().await.first().copied();
            let codec = match ssrc {
                Some(ssrc) => track.codec(ssrc).await,
                None => None,
            };
            let mime = codec.map(|c| c.mime_type);
            match kind {
                RtpCodecKind::Video => *seen.video_mime.lock().expect("lock") = mime,
                _ => *seen.audio_mime.lock().expect("lock") = mime,
            }
            let mut depacketizer = H264Packet::default();
            let mut access_unit: Vec<u8> = Vec::new();
            let mut decoder = openh264::decoder::Decoder::new().expect("decoder");
            let mut last_ts: Option<u32> = None;
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = event else {
                    continue;
                };
                let ts = packet.header.timestamp;
                match kind {
                    RtpCodecKind::Video => {
                        let n = seen.video_packets.fetch_add(1, Ordering::Relaxed) + 1;
                        if n == 60 {
                            // Ask for a keyframe; the 10 s GOP would not bring one before long.
                            let feedback: Vec<Box<dyn rtc::rtcp::Packet>> =
                                vec![Box::new(PictureLossIndication {
                                    sender_ssrc: 1,
                                    media_ssrc: packet.header.ssrc,
                                })];
                            if let Err(e) = track.write_rtcp(feedback).await {
                                eprintln!("sending a PLI failed: {e}");
                            }
                        }
                        if let Some(prev) = last_ts.filter(|p| *p != ts)
                            && !ts.wrapping_sub(prev).is_multiple_of(3000)
                        {
                            seen.odd_video_steps.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Ok(nals) = depacketizer.depacketize(&packet.payload) {
                            access_unit.extend_from_slice(&nals);
                        }
                        if packet.header.marker {
                            if let Ok(Some(picture)) = decoder.decode(&access_unit) {
                                use openh264::formats::YUVSource;
                                *seen.decoded_size.lock().expect("lock") =
                                    Some(picture.dimensions());
                                seen.decoded_frames.fetch_add(1, Ordering::Relaxed);
                            }
                            access_unit.clear();
                        }
                    }
                    _ => {
                        seen.audio_packets.fetch_add(1, Ordering::Relaxed);
                        if let Some(prev) = last_ts
                            && (ts == prev || !ts.wrapping_sub(prev).is_multiple_of(960))
                        {
                            seen.odd_audio_steps.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                last_ts = Some(ts);
            }
        });
    }
}

fn bearer_ok(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {KEY}").as_str())
}

async fn whip_post(
    State(ep): State<Endpoint>,
    Path(conf): Path<String>,
    headers: HeaderMap,
    offer: String,
) -> Response {
    if !bearer_ok(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/sdp")
    {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    if conf == "busy" {
        return (StatusCode::CONFLICT, "already live").into_response();
    }
    *ep.seen.offer.lock().expect("lock") = Some(offer.clone());
    match answer(&ep, offer).await {
        Ok((id, sdp)) => (
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/sdp".to_owned()),
                // Relative on purpose: the client must resolve it against the WHIP URL
                // (RFC 3986: against `/whip/conf-1` this is `/whip/conf-1/session/{id}`).
                (header::LOCATION, format!("{conf}/session/{id}")),
            ],
            sdp,
        )
            .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e:#}")).into_response(),
    }
}

async fn answer(ep: &Endpoint, offer: String) -> anyhow::Result<(String, String)> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let (gathered, mut gathered_rx) = watch::channel(false);
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    .build(),
            )
            .with_handler(Arc::new(Answerer {
                gathered,
                seen: Arc::clone(&ep.seen),
            }))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await?,
    );
    let (offer, path) = if ep.lossy {
        let to_publisher = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let to_answerer = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let publisher = host_candidate(&offer)?;
        let offer = retarget(&offer, publisher, to_answerer.local_addr()?);
        (offer, Some((to_publisher, to_answerer, publisher)))
    } else {
        (offer, None)
    };
    pc.set_remote_description(RTCSessionDescription::offer(offer)?)
        .await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    tokio::time::timeout(Duration::from_secs(5), gathered_rx.wait_for(|g| *g)).await??;
    let mut sdp = pc
        .local_description()
        .await
        .ok_or_else(|| anyhow::anyhow!("no answer"))?
        .sdp;
    if let Some((to_publisher, to_answerer, publisher)) = path {
        let answerer = host_candidate(&sdp)?;
        sdp = retarget(&sdp, answerer, to_publisher.local_addr()?);
        lossy_path(
            to_publisher,
            publisher,
            to_answerer,
            answerer,
            Arc::clone(&ep.seen),
        );
    }
    let id = format!("{:016x}", rand::random::<u64>());
    ep.sessions.lock().expect("lock").insert(id.clone(), pc);
    Ok((id, sdp))
}

/// The first host candidate's address in an SDP.
fn host_candidate(sdp: &str) -> anyhow::Result<SocketAddr> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:") && l.contains(" typ host"))
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{}:{}", f.get(4)?, f.get(5)?).parse().ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no host candidate in\n{sdp}"))
}

/// Points every candidate at `from` to `to` instead.
fn retarget(sdp: &str, from: SocketAddr, to: SocketAddr) -> String {
    sdp.replace(
        &format!(" {} {} typ", from.ip(), from.port()),
        &format!(" {} {} typ", to.ip(), to.port()),
    )
}

/// Relays UDP between the publisher and the answerer, which each see only the relay. Drops the
/// 100th H.264 RTP packet and records whether a packet with the same sequence number follows,
/// i.e. whether the publisher answered the answerer's NACK (no RTX: same SSRC, same number).
fn lossy_path(
    to_publisher: tokio::net::UdpSocket,
    publisher: SocketAddr,
    to_answerer: tokio::net::UdpSocket,
    answerer: SocketAddr,
    seen: Arc<Seen>,
) {
    let to_publisher = Arc::new(to_publisher);
    let to_answerer = Arc::new(to_answerer);
    let (a, b) = (Arc::clone(&to_publisher), Arc::clone(&to_answerer));
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut n_video = 0u64;
        while let Ok((n, _)) = a.recv_from(&mut buf).await {
            let p = &buf[..n];
            // RTP (RFC 5761 demux): version 2, payload type 102 (our H.264), not RTCP.
            if n > 12 && p[0] >> 6 == 2 && p[1] & 0x7f == 102 {
                let seq = u16::from_be_bytes([p[2], p[3]]);
                n_video += 1;
                let mut dropped = seen.dropped_seq.lock().expect("lock");
                if n_video == 100 {
                    *dropped = Some(seq);
                    continue;
                }
                if *dropped == Some(seq) {
                    seen.retransmitted.store(true, Ordering::SeqCst);
                }
            }
            let _ = b.send_to(p, answerer).await;
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = to_answerer.recv_from(&mut buf).await {
            let _ = to_publisher.send_to(&buf[..n], publisher).await;
        }
    });
}

async fn whip_delete(
    State(ep): State<Endpoint>,
    Path((_conf, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> StatusCode {
    ep.seen
        .delete_auth_ok
        .store(bearer_ok(&headers), Ordering::SeqCst);
    let pc = ep.sessions.lock().expect("lock").remove(&id);
    match pc {
        Some(pc) => {
            let _ = pc.close().await;
            ep.seen.deleted.store(true, Ordering::SeqCst);
            StatusCode::OK
        }
        None => StatusCode::NOT_FOUND,
    }
}

/// Serves the endpoint on 127.0.0.1:0; returns its base URL.
async fn serve(ep: Endpoint) -> String {
    let app = Router::new()
        .route("/whip/{conf}", post(whip_post))
        .route("/whip/{conf}/session/{id}", delete(whip_delete))
        .with_state(ep);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn endpoint(lossy: bool) -> (Endpoint, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    (
        Endpoint {
            lossy,
            seen: Arc::clone(&seen),
            sessions: Arc::default(),
        },
        seen,
    )
}

fn small_source() -> SourceOptions {
    SourceOptions {
        width: 320,
        height: 180,
        fps: 30,
        bitrate_bps: 300_000,
        keyframe_interval: Duration::from_secs(10),
        label: "E2E".to_owned(),
        simulcast: false,
        audio: hallcast_client::AudioSource::Tone,
        skip_frames: false,
    }
}

/// The addresses of the UDP host candidates in an SDP (`a=candidate:F C udp P ADDR PORT typ host`),
/// those whose address is an IP literal.
fn host_candidates(sdp: &str) -> Vec<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .filter_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            let is_host_udp =
                f.len() >= 8 && f[2].eq_ignore_ascii_case("udp") && f[6..8] == ["typ", "host"];
            is_host_udp
                .then(|| format!("{}:{}", f[4], f[5]).parse().ok())
                .flatten()
        })
        .collect()
}

#[test]
fn reads_host_candidates() {
    let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n\
               a=candidate:2 1 udp 2130706431 abc.local 50001 typ host\r\n\
               a=candidate:3 1 udp 1694498815 203.0.113.7 50002 typ srflx raddr 0.0.0.0 rport 0\r\n\
               a=end-of-candidates\r\n";
    assert_eq!(
        host_candidates(sdp),
        vec!["127.0.0.1:50000".parse::<SocketAddr>().unwrap()]
    );
    assert!(host_candidates("v=0\r\na=end-of-candidates\r\n").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_decodable_h264_and_opus_then_deletes() {
    let (ep, seen) = endpoint(true);
    let base = serve(ep.clone()).await;
    let publisher = publish(&format!("{base}/whip/conf-1"), KEY, small_source())
        .await
        .expect("publish");
    assert_eq!(
        publisher.resource(),
        format!("{base}/whip/conf-1/session/{}", {
            let ids: Vec<String> = ep.sessions.lock().expect("lock").keys().cloned().collect();
            ids.first().cloned().unwrap_or_default()
        })
    );

    let offer = seen.offer.lock().expect("lock").clone().unwrap_or_default();
    assert!(offer.contains("a=sendonly"), "offer:\n{offer}");
    assert!(
        offer.contains("packetization-mode=1") && offer.contains("profile-level-id=42e01f"),
        "offer:\n{offer}"
    );
    assert!(offer.contains("opus/48000/2"), "offer:\n{offer}");
    assert!(offer.contains("typ host"), "offer:\n{offer}");
    assert!(offer.contains("127.0.0.1"), "offer:\n{offer}");
    assert!(offer.contains("a=rtcp-fb:102 nack\r\n"), "offer:\n{offer}");
    // Non-trickle: the offer itself carries the host candidates, as literal addresses (no
    // .local names) the relay can send to.
    let hosts = host_candidates(&offer);
    assert!(
        hosts.iter().any(|a| a.ip().is_loopback() && a.port() != 0),
        "the offer has no a=candidate line with a host address on loopback (found {hosts:?}):\n{offer}"
    );

    // Media for up to 10 s: at 30 fps and 50 packets/s, 3 s is plenty.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = seen.video_packets.load(Ordering::Relaxed);
        let a = seen.audio_packets.load(Ordering::Relaxed);
        let d = seen.decoded_frames.load(Ordering::Relaxed);
        if v > 60 && a > 100 && d > 45 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {v} video packets, {a} audio packets, {d} decoded frames; stats {:?}",
            publisher.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen.video_mime.lock().expect("lock").as_deref(),
        Some("video/H264")
    );
    assert_eq!(
        seen.audio_mime.lock().expect("lock").as_deref(),
        Some("audio/opus")
    );
    assert_eq!(*seen.decoded_size.lock().expect("lock"), Some((320, 180)));
    assert_eq!(seen.odd_video_steps.load(Ordering::Relaxed), 0);
    assert_eq!(seen.odd_audio_steps.load(Ordering::Relaxed), 0);
    // The packet the lossy path dropped was NACKed by the answerer and sent again, and the PLI
    // sent after 60 packets was answered with an IDR (the 10 s GOP has no second one yet).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stats = publisher.stats();
        if seen.retransmitted.load(Ordering::SeqCst)
            && stats.n_keyframe_requests >= 1
            && stats.n_keyframes >= 2
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retransmitted: {}, stats {stats:?}",
            seen.retransmitted.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = publisher.stats();
    assert!(stats.n_video_frames >= 45, "{stats:?}");
    assert!(stats.n_audio_packets >= 100, "{stats:?}");

    publisher.stop().await.expect("stop");
    assert!(seen.deleted.load(Ordering::SeqCst), "DELETE not received");
    assert!(
        seen.delete_auth_ok.load(Ordering::SeqCst),
        "DELETE without the bearer token"
    );
    assert!(ep.sessions.lock().expect("lock").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_http_status() {
    let (ep, _seen) = endpoint(false);
    let base = serve(ep).await;

    let err = publish(&format!("{base}/whip/busy"), KEY, small_source())
        .await
        .expect_err("409 must fail");
    let whip = err.downcast_ref::<WhipError>().expect("a WhipError");
    assert_eq!(whip.status(), Some(409), "{err:#}");
    assert!(format!("{err:#}").contains("already live"));

    let err = publish(&format!("{base}/whip/conf-2"), "wrong-key", small_source())
        .await
        .expect_err("401 must fail");
    assert_eq!(
        err.downcast_ref::<WhipError>().and_then(WhipError::status),
        Some(401)
    );

    let bad = SourceOptions {
        width: 321,
        ..small_source()
    };
    assert!(
        publish(&format!("{base}/whip/conf-3"), KEY, bad)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_resolves_when_the_relay_goes_away() {
    let (ep, seen) = endpoint(false);
    let base = serve(ep.clone()).await;
    let publisher = publish(&format!("{base}/whip/conf-4"), KEY, small_source())
        .await
        .expect("publish");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.video_packets.load(Ordering::Relaxed) < 10 {
        assert!(tokio::time::Instant::now() < deadline, "no media");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The relay drops the session on its side.
    let pcs: Vec<Arc<dyn PeerConnection>> = ep
        .sessions
        .lock()
        .expect("lock")
        .drain()
        .map(|(_, pc)| pc)
        .collect();
    for pc in pcs {
        let _ = pc.close().await;
    }
    // ICE consent lapses after ~5 s, then 5 s of grace: about 10 s.
    tokio::time::timeout(Duration::from_secs(30), publisher.closed())
        .await
        .expect("closed() resolves once the relay is gone");
    // Stopping after the fact still works; the resource is already gone (404 counts as ended).
    publisher.stop().await.expect("stop after close");
}
