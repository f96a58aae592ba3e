//! Hand-made SDP offers, shaped like a browser's, for the HTTP-level tests (bad input, status
//! codes). They are never used to carry media: nothing answers ICE for them.

use std::fmt::Write as _;

use crate::net::Prng;

/// Which way the offerer wants media to flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A WHIP publisher.
    SendOnly,
    /// A WHEP viewer.
    RecvOnly,
}

/// A codec to list in an m-section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Opus,
    G722,
    H264,
    Vp8,
    Av1,
    /// A codec nobody implements.
    MadeUp,
}

impl Codec {
    fn lines(self, out: &mut String) {
        let (pt, rtpmap, fmtp, video) = match self {
            Codec::Opus => (
                111,
                "opus/48000/2",
                Some("minptime=10;useinbandfec=1"),
                false,
            ),
            Codec::G722 => (9, "G722/8000", None, false),
            Codec::H264 => (
                102,
                "H264/90000",
                Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
                true,
            ),
            Codec::Vp8 => (96, "VP8/90000", None, true),
            Codec::Av1 => (45, "AV1/90000", Some("level-idx=5;profile=0;tier=0"), true),
            Codec::MadeUp => (118, "X-HALLCAST-NONE/90000", None, true),
        };
        let _ = writeln!(out, "a=rtpmap:{pt} {rtpmap}\r");
        if video {
            for fb in ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"] {
                let _ = writeln!(out, "a=rtcp-fb:{pt} {fb}\r");
            }
        } else if self == Codec::Opus {
            let _ = writeln!(out, "a=rtcp-fb:{pt} transport-cc\r");
        }
        if let Some(fmtp) = fmtp {
            let _ = writeln!(out, "a=fmtp:{pt} {fmtp}\r");
        }
    }

    fn payload_type(self) -> u8 {
        match self {
            Codec::Opus => 111,
            Codec::G722 => 9,
            Codec::H264 => 102,
            Codec::Vp8 => 96,
            Codec::Av1 => 45,
            Codec::MadeUp => 118,
        }
    }
}

/// An offer with one audio and one video m-section (BUNDLE, rtcp-mux, DTLS fingerprint, ICE
/// credentials, no candidates), listing `audio` and `video` codecs in that order.
pub fn offer(direction: Direction, audio: &[Codec], video: &[Codec]) -> String {
    let mut rng = Prng::seeded();
    let ufrag = rng.token(8);
    let pwd = rng.token(24);
    let fingerprint = (0..32)
        .map(|_| format!("{:02X}", rng.next_u64() as u8))
        .collect::<Vec<_>>()
        .join(":");
    let session_id = rng.next_u64() >> 2;
    let stream_id = rng.token(12);
    let mut s = String::new();
    let _ = writeln!(s, "v=0\r");
    let _ = writeln!(s, "o=- {session_id} 2 IN IP4 127.0.0.1\r");
    let _ = writeln!(s, "s=-\r");
    let _ = writeln!(s, "t=0 0\r");
    let _ = writeln!(s, "a=group:BUNDLE 0 1\r");
    let _ = writeln!(s, "a=extmap-allow-mixed\r");
    let _ = writeln!(s, "a=msid-semantic: WMS {stream_id}\r");
    for (mid, (kind, codecs)) in [("audio", audio), ("video", video)].into_iter().enumerate() {
        let pts = codecs
            .iter()
            .map(|c| c.payload_type().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(s, "m={kind} 9 UDP/TLS/RTP/SAVPF {pts}\r");
        let _ = writeln!(s, "c=IN IP4 0.0.0.0\r");
        let _ = writeln!(s, "a=rtcp:9 IN IP4 0.0.0.0\r");
        let _ = writeln!(s, "a=ice-ufrag:{ufrag}\r");
        let _ = writeln!(s, "a=ice-pwd:{pwd}\r");
        let _ = writeln!(s, "a=ice-options:trickle\r");
        let _ = writeln!(s, "a=fingerprint:sha-256 {fingerprint}\r");
        let _ = writeln!(s, "a=setup:actpass\r");
        let _ = writeln!(s, "a=mid:{mid}\r");
        let _ = writeln!(s, "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r");
        match direction {
            Direction::SendOnly => {
                let _ = writeln!(s, "a=sendonly\r");
                let _ = writeln!(s, "a=msid:{stream_id} {kind}-{}\r", rng.token(8));
            }
            Direction::RecvOnly => {
                let _ = writeln!(s, "a=recvonly\r");
            }
        }
        let _ = writeln!(s, "a=rtcp-mux\r");
        if kind == "video" {
            let _ = writeln!(s, "a=rtcp-rsize\r");
        }
        for codec in codecs {
            codec.lines(&mut s);
        }
        if direction == Direction::SendOnly {
            let ssrc = rng.next_u64() as u32;
            let _ = writeln!(s, "a=ssrc:{ssrc} cname:{}\r", rng.token(16));
            let _ = writeln!(s, "a=ssrc:{ssrc} msid:{stream_id} {kind}\r");
        }
    }
    s
}

/// A usual viewer offer (Opus; H.264 and VP8).
pub fn viewer_offer() -> String {
    offer(
        Direction::RecvOnly,
        &[Codec::Opus],
        &[Codec::H264, Codec::Vp8],
    )
}

/// A usual publisher offer (Opus; H.264).
pub fn publisher_offer() -> String {
    offer(Direction::SendOnly, &[Codec::Opus], &[Codec::H264])
}

/// A viewer offer grown past `size` bytes with attribute lines that a parser must skip.
pub fn padded_offer(size: usize) -> String {
    let mut s = viewer_offer();
    let mut n = 0;
    while s.len() <= size {
        let _ = writeln!(s, "a=x-hallcast-padding-{n}:{}\r", "p".repeat(200));
        n += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_list_their_codecs() {
        let sdp = offer(Direction::RecvOnly, &[Codec::G722], &[Codec::Av1]);
        assert!(sdp.contains("m=audio 9 UDP/TLS/RTP/SAVPF 9\r\n"));
        assert!(sdp.contains("m=video 9 UDP/TLS/RTP/SAVPF 45\r\n"));
        assert!(sdp.contains("a=rtpmap:45 AV1/90000\r\n"));
        assert!(!sdp.to_lowercase().contains("opus"));
        assert!(!sdp.contains("H264") && !sdp.contains("VP8"));
        assert!(sdp.contains("a=recvonly\r\n"));
    }

    #[test]
    fn publisher_offers_announce_ssrcs() {
        let sdp = publisher_offer();
        assert!(sdp.contains("a=sendonly\r\n"));
        assert_eq!(sdp.matches("a=ssrc:").count(), 4);
        assert!(sdp.lines().all(|l| !l.is_empty()));
    }

    #[test]
    fn padding_reaches_the_size() {
        assert!(padded_offer(70 * 1024).len() > 70 * 1024);
    }
}
