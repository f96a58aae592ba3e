//! A light scan of an SDP offer, done before the WebRTC stack sees it, to choose
//! the one audio and one video codec the session will use and to give a clear error
//! when the offer has nothing hallcast can forward.

use hallcast_core::Codec;

/// What the offer contains that matters for codec choice.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OfferScan {
    pub has_audio: bool,
    pub has_video: bool,
    /// The first supported audio codec in the offerer's order of preference.
    pub audio: Option<Codec>,
    /// Supported video codecs in the offerer's order of preference.
    pub video: Vec<Codec>,
    /// `(kind, mid)` of every media section, in order (`kind` is `audio`/`video`/...).
    pub mids: Vec<(String, String)>,
}

/// The codec list quoted in error messages.
pub const SUPPORTED_CODECS: &str = "Opus (audio), H264 packetization-mode=1 and VP8 (video)";

/// Scans the media sections of an offer.
pub fn scan(sdp: &str) -> OfferScan {
    struct Section {
        kind: String,
        mid: Option<String>,
        pts: Vec<String>,
        rtpmap: Vec<(String, String)>,
        fmtp: Vec<(String, String)>,
    }
    let mut sections: Vec<Section> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("m=") {
            let mut it = rest.split_whitespace();
            let kind = it.next().unwrap_or_default().to_string();
            let pts = it.skip(2).map(str::to_string).collect();
            sections.push(Section {
                kind,
                mid: None,
                pts,
                rtpmap: vec![],
                fmtp: vec![],
            });
        } else if let Some(sec) = sections.last_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                sec.mid = Some(mid.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
                if let Some((pt, name)) = rest.split_once(' ') {
                    sec.rtpmap.push((pt.to_string(), name.to_ascii_lowercase()));
                }
            } else if let Some(rest) = line.strip_prefix("a=fmtp:")
                && let Some((pt, params)) = rest.split_once(' ')
            {
                sec.fmtp.push((pt.to_string(), params.to_ascii_lowercase()));
            }
        }
    }
    let mut out = OfferScan::default();
    for sec in &sections {
        if let Some(mid) = &sec.mid {
            out.mids.push((sec.kind.clone(), mid.clone()));
        }
        let codec_of = |pt: &str| -> Option<Codec> {
            let name = &sec.rtpmap.iter().find(|(p, _)| p == pt)?.1;
            let fmtp = sec
                .fmtp
                .iter()
                .find(|(p, _)| p == pt)
                .map(|(_, f)| f.as_str())
                .unwrap_or("");
            if name.starts_with("opus/48000") {
                Some(Codec::Opus)
            } else if name.starts_with("vp8/90000") {
                Some(Codec::Vp8)
            } else if name.starts_with("h264/90000") && fmtp.contains("packetization-mode=1") {
                Some(Codec::H264)
            } else {
                None
            }
        };
        match sec.kind.as_str() {
            "audio" => {
                out.has_audio = true;
                if out.audio.is_none() {
                    out.audio = sec.pts.iter().find_map(|pt| codec_of(pt));
                }
            }
            "video" => {
                out.has_video = true;
                for c in sec.pts.iter().filter_map(|pt| codec_of(pt)) {
                    if !out.video.contains(&c) {
                        out.video.push(c);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 9\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:9 G722/8000\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n\
a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:103 H264/90000\r\na=fmtp:103 packetization-mode=0;profile-level-id=42e01f\r\n";

    #[test]
    fn picks_codecs_in_offer_order() {
        let s = scan(OFFER);
        assert!(s.has_audio && s.has_video);
        assert_eq!(s.audio, Some(Codec::Opus));
        assert_eq!(s.video, vec![Codec::Vp8, Codec::H264]);
        assert!(s.mids.is_empty(), "this offer has no a=mid lines");
        let with_mids = OFFER.replace("m=video", "a=mid:0\r\nm=video") + "a=mid:1\r\n";
        let s = scan(&with_mids);
        assert_eq!(
            s.mids,
            vec![
                ("audio".to_string(), "0".to_string()),
                ("video".to_string(), "1".to_string())
            ]
        );
    }

    #[test]
    fn unsupported_codecs_are_not_chosen() {
        let s = scan(
            &OFFER
                .replace("opus/48000/2", "ISAC/16000")
                .replace("VP8", "AV1")
                .replace("packetization-mode=1", "packetization-mode=0"),
        );
        assert_eq!(s.audio, None);
        assert!(s.video.is_empty());
        assert!(s.has_video);
    }
}
