//! Shared by the `str0m_*` tests that wire two bare str0m peers to each other in memory.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::bwe::Bitrate;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::rtp::Extension;
use str0m::{Candidate, Rtc};

/// One of the two peers: its `Rtc`, its address, its last deadline, and whether it has
/// reported `Event::Connected`.
pub struct Peer {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub timeout: Instant,
    pub connected: bool,
}

/// A sender and a receiver in RTP mode (Opus and H.264), the sender's offer of an audio and a
/// video m-line accepted: the shape of the relay's viewer sessions.
pub struct Negotiated {
    pub tx: Peer,
    pub rx: Peer,
    pub video_mid: Mid,
    /// The H.264 payload type both sides agreed on.
    pub video_pt: Pt,
}

/// `bwe`: the sender's bandwidth estimation (a leaky-bucket pacer) and its start value.
/// `rx_feedback`: the receiver negotiates str0m's standard extensions (transport-wide
/// feedback included); without it, the MID alone.
pub fn negotiated(now: Instant, bwe: Option<Bitrate>, rx_feedback: bool) -> Negotiated {
    let tx_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let rx_addr: SocketAddr = "10.0.0.2:5000".parse().unwrap();
    let mut tx = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_h264(true)
        .set_stats_interval(None)
        .enable_bwe(bwe)
        .build(now);
    let mut rx = Rtc::builder().set_rtp_mode(true);
    if !rx_feedback {
        rx = rx.clear_extension_map().set_extension(4, Extension::RtpMid);
    }
    let mut rx = rx
        .clear_codecs()
        .enable_opus(true, false)
        .enable_h264(true)
        .set_stats_interval(None)
        .build(now);
    tx.add_local_candidate(Candidate::host(tx_addr, "udp").unwrap());
    rx.add_local_candidate(Candidate::host(rx_addr, "udp").unwrap());
    let mut api = tx.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let video_mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().expect("an offer");
    let answer = rx.sdp_api().accept_offer(offer).expect("an answer");
    tx.sdp_api()
        .accept_answer(pending, answer)
        .expect("the answer applies");
    let remote = tx
        .media(video_mid)
        .expect("the video media")
        .remote_pts()
        .to_vec();
    let video_pt = tx
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::H264 && remote.contains(&p.pt()))
        .expect("H.264 negotiated")
        .pt();
    let peer = |rtc, addr| Peer {
        rtc,
        addr,
        timeout: now,
        connected: false,
    };
    Negotiated {
        tx: peer(tx, tx_addr),
        rx: peer(rx, rx_addr),
        video_mid,
        video_pt,
    }
}

/// The payload type of an SRTP packet (its header is in the clear); 0 for anything else.
pub fn rtp_pt(b: &[u8]) -> Pt {
    if b.len() >= 12 && b[0] >> 6 == 2 && !(192..=223).contains(&b[1]) {
        (b[1] & 0x7f).into()
    } else {
        0.into()
    }
}
