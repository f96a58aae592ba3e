//! What the gateway tells the relay about an encoder it refused, so the conference's operator
//! sees it (the relay's pre-flight answer and console), not only the log.
//!
//! The gateway does not reach into the relay: the relay hands it a [`RefusalSink`] inside the
//! [`crate::IngestTarget`], and decides itself what to keep (only for conferences it has,
//! one latest refusal each). A refusal is reported only once the encoder named a conference:
//! a bad SRT `streamid` or a truncated RTMP handshake belongs to no conference and stays a
//! log line.

/// The ingest protocol an encoder used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Rtmp,
    Srt,
}

impl Protocol {
    /// `RTMP`, `SRT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rtmp => "RTMP",
            Protocol::Srt => "SRT",
        }
    }

    /// The value of the WHIP POST's [`INGEST_HEADER`]: `rtmp`, `srt`.
    pub fn header_value(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Srt => "srt",
        }
    }

    /// Parses a [`INGEST_HEADER`] value.
    pub fn from_header_value(v: &str) -> Option<Protocol> {
        match v.trim() {
            v if v.eq_ignore_ascii_case("rtmp") => Some(Protocol::Rtmp),
            v if v.eq_ignore_ascii_case("srt") => Some(Protocol::Srt),
            _ => None,
        }
    }
}

/// The header on the gateway's WHIP POST naming the encoder's protocol. The relay believes it
/// only on the loopback listener it opened for its own gateway; anywhere else it is ignored
/// (an outside WHIP publisher cannot pass for an RTMP/SRT encoder).
pub const INGEST_HEADER: &str = "hallcast-ingest";

/// Why the gateway refused (or dropped) an encoder's push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The relay refused the stream key (401).
    WrongKey,
    /// The conference already has a live publisher (409).
    AlreadyLive,
    /// Any other refusal by the relay (403: the conference has ended, 503: draining...).
    Relay,
    /// A codec the relay cannot carry (HEVC, Sorenson H.263, MP3, ...).
    UnsupportedCodec,
    /// The SRT payload is not MPEG-TS with H.264 video, or the stream is malformed.
    BadPayload,
}

/// Longest detail kept (characters): the message is for a console line.
pub const MAX_DETAIL_CHARS: usize = 300;

/// One refused push of a named conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub conference: String,
    pub protocol: Protocol,
    pub kind: RefusalKind,
    /// What the log line says (English; codec names and numbers read the same in both
    /// languages), at most [`MAX_DETAIL_CHARS`].
    pub detail: String,
}

impl Refusal {
    /// `detail`: the log line's reason. For a codec or a payload, only what it names is kept
    /// (up to the first `;`: the advice after it is the message's own).
    pub fn new(conference: &str, protocol: Protocol, kind: RefusalKind, detail: &str) -> Refusal {
        let detail = match kind {
            RefusalKind::UnsupportedCodec | RefusalKind::BadPayload => {
                let d = detail.split(';').next().unwrap_or(detail).trim();
                let d = d.strip_prefix("unsupported: ").unwrap_or(d);
                d.strip_prefix("unsupported codec ").unwrap_or(d)
            }
            _ => detail,
        };
        Refusal {
            conference: conference.to_owned(),
            protocol,
            kind,
            detail: detail.chars().take(MAX_DETAIL_CHARS).collect(),
        }
    }

    /// For the operator, Vietnamese: what happened and what to change.
    pub fn message_vi(&self) -> String {
        let p = self.protocol.as_str();
        let d = &self.detail;
        match self.kind {
            RefusalKind::WrongKey => format!(
                "Bộ mã hoá {p} bị từ chối: sai khoá luồng (stream key). Chép lại khoá từ bảng điều khiển vào bộ mã hoá."
            ),
            RefusalKind::AlreadyLive => format!(
                "Bộ mã hoá {p} bị từ chối: hội nghị đang có nguồn phát khác. Dừng nguồn kia trước."
            ),
            RefusalKind::Relay => format!("Bộ mã hoá {p} bị từ chối: {d}"),
            RefusalKind::UnsupportedCodec => format!(
                "Bộ mã hoá {p} bị từ chối: codec không hỗ trợ ({d}). Đặt video H.264 (không B-frame) và âm thanh AAC."
            ),
            RefusalKind::BadPayload => format!(
                "Bộ mã hoá {p} bị từ chối: luồng không đọc được ({d}). Với SRT, chọn định dạng MPEG-TS, video H.264 và âm thanh AAC."
            ),
        }
    }

    /// For the operator, English.
    pub fn message_en(&self) -> String {
        let p = self.protocol.as_str();
        let d = &self.detail;
        match self.kind {
            RefusalKind::WrongKey => format!(
                "{p} encoder refused: wrong stream key. Copy the key from the console into the encoder again."
            ),
            RefusalKind::AlreadyLive => format!(
                "{p} encoder refused: the conference already has a live publisher. Stop that one first."
            ),
            RefusalKind::Relay => format!("{p} encoder refused: {d}"),
            RefusalKind::UnsupportedCodec => format!(
                "{p} encoder refused: unsupported codec ({d}). Set H.264 video (no B-frames) and AAC audio."
            ),
            RefusalKind::BadPayload => format!(
                "{p} encoder refused: the stream cannot be read ({d}). Over SRT, send MPEG-TS with H.264 video and AAC audio."
            ),
        }
    }
}

/// Where the gateway reports refusals: the relay it runs in. Called from the connection's
/// task; must not block.
pub trait RefusalSink: Send + Sync + 'static {
    fn refused(&self, refusal: Refusal);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_protocol_in_both_languages_and_details_are_bounded() {
        let r = Refusal::new(
            "hn",
            Protocol::Srt,
            RefusalKind::UnsupportedCodec,
            "unsupported codec HEVC (H.265) (MPEG-TS stream type 0x24); hallcast takes H.264",
        );
        assert_eq!(r.detail, "HEVC (H.265) (MPEG-TS stream type 0x24)");
        assert!(r.message_vi().starts_with(
            "Bộ mã hoá SRT bị từ chối: codec không hỗ trợ (HEVC (H.265) (MPEG-TS stream type 0x24))"
        ));
        assert!(r.message_en().contains("HEVC"));
        let long = "x".repeat(10_000);
        let r = Refusal::new("hn", Protocol::Rtmp, RefusalKind::Relay, &long);
        assert_eq!(r.detail.chars().count(), MAX_DETAIL_CHARS);
        assert_eq!(Protocol::from_header_value(" RTMP "), Some(Protocol::Rtmp));
        assert_eq!(Protocol::from_header_value("whip"), None);
    }
}
