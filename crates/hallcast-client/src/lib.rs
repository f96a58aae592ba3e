//! hallcast-client: the built-in test source. It publishes a live test card and a tone to a
//! relay over WHIP, exactly as a hall encoder would.
//!
//! # What it owns
//! - The test card ([`card`]): colour bars, moving noise, a sweeping box, the wall-clock time
//!   (`HH:MM:SS.mmm`, UTC) and a frame counter, drawn in Rust straight into I420 with a built-in
//!   bitmap font.
//! - Live H.264 encoding of that card ([`h264`], OpenH264, constrained baseline, configurable
//!   bitrate, frame rate and IDR interval), answering PLI/FIR with an IDR (at most one per second).
//! - Optionally simulcast ([`SourceOptions::simulcast`]): three layers `q`/`h`/`f` (quarter, half
//!   and full size), each drawn at its own size and encoded by its own encoder, sent on one
//!   video track as three RTP streams named by RID (`a=rid`/`a=simulcast` in the offer, the
//!   `mid` and `rtp-stream-id` header extensions on every packet), as Chromium sends them. A
//!   PLI/FIR for one layer's SSRC gets an IDR of that layer only.
//! - The Opus tone: a 1 s Ogg/Opus asset embedded in the binary ([`ogg`]), looped packet by
//!   packet at 20 ms.
//! - The WHIP client side ([`whip`]): POST the offer (after full ICE gathering, no trickle), apply
//!   the answer, DELETE the resource on [`Publisher::stop`].
//! - The WebRTC sender (webrtc-rs): send-only audio and video, NACKs answered by retransmission.
//! - A feed publisher ([`feed`], [`publish_feed`]): the same WHIP and WebRTC machinery sending
//!   H.264 access units and Opus packets encoded elsewhere (the RTMP/SRT ingest gateway of
//!   `hallcast-ingest`), instead of the test card and the tone.
//!
//! # What it must never do
//! - Be on a relay's data path: relays link this crate only to test themselves and, through
//!   `hallcast-ingest`, to publish an RTMP/SRT encoder's feed into themselves over WHIP, as any
//!   encoder would. It knows nothing of hallcast's core, its config or its ledger.
//! - Encode anywhere a benchmark measures the relay: a live encode costs a CPU core's worth of
//!   budget; benchmarks feed pre-encoded media.
//! - Install a tracing subscriber, read files at run time, or talk to anything but the WHIP URL
//!   it was given (and the ICE path the answer leads to).
//!
//! # Example
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use hallcast_client::{publish, SourceOptions};
//! let publisher = publish(
//!     "http://127.0.0.1:8080/whip/conf-1",
//!     "stream-key",
//!     SourceOptions { label: "HOI NGHI 2025".into(), ..SourceOptions::default() },
//! )
//! .await?;
//! publisher.closed().await; // the relay went away: republish with backoff
//! publisher.stop().await?;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

pub mod card;
pub mod feed;
mod font;
pub mod h264;
pub mod ogg;
mod pacing;
mod session;
pub mod whip;

pub use feed::{FeedAudio, FeedPublisher, FeedStats, FeedVideo, publish_feed, publish_feed_with};
pub use whip::WhipError;

/// What the test source sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOptions {
    /// Picture width in pixels (even). Default 1280.
    pub width: u32,
    /// Picture height in pixels (even). Default 720.
    pub height: u32,
    /// Frames per second. Default 30.
    pub fps: u32,
    /// Video encoder target bitrate in bit/s. Default 2 000 000.
    pub bitrate_bps: u32,
    /// Time from one IDR to the next. Default 2 s.
    pub keyframe_interval: Duration,
    /// Text drawn on the card, e.g. the conference name (ASCII; Vietnamese loses its accents).
    pub label: String,
    /// Send three simulcast layers by RID instead of one stream, as a browser does: `"q"` at a
    /// quarter of `width` x `height` (`bitrate_bps` × 3/40), `"h"` at half (`bitrate_bps` / 4)
    /// and `"f"` at full size (`bitrate_bps`); each its own encoder and SSRC. Needs a size
    /// divisible by 8 and at least 64x64. Default `false`.
    pub simulcast: bool,
    /// What the audio track carries. Default [`AudioSource::Tone`].
    pub audio: AudioSource,
    /// Let the encoder drop frames to hold `bitrate_bps`, as encoders do when the bitrate is
    /// set too low for the picture (without it OpenH264 overshoots a bitrate it cannot
    /// reach). Default `false`.
    pub skip_frames: bool,
}

/// The audio a test source sends: a real encoder's right and wrong ways (the relay's
/// pre-flight checks are tested against the wrong ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioSource {
    /// The built-in Opus tone.
    #[default]
    Tone,
    /// An audio track of digital silence: Opus silence frames (3 bytes per 20 ms), as an
    /// encoder whose microphone input is muted or unplugged sends.
    Silence,
    /// No audio track at all (the offer has no audio section).
    None,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 30,
            bitrate_bps: 2_000_000,
            keyframe_interval: Duration::from_secs(2),
            label: "HALLCAST TEST SOURCE".to_owned(),
            simulcast: false,
            audio: AudioSource::Tone,
            skip_frames: false,
        }
    }
}

/// Counters of what a [`Publisher`] has sent so far. With simulcast the video counters add
/// up all the layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Encoded video frames handed to the track.
    pub n_video_frames: u64,
    /// Of which IDR frames (periodic and requested).
    pub n_keyframes: u64,
    /// H.264 bytes (Annex-B) handed to the track.
    pub video_bytes: u64,
    /// Frame slots skipped because the encoder fell behind real time.
    pub n_skipped_frames: u64,
    /// Opus packets handed to the track.
    pub n_audio_packets: u64,
    /// PLI and FIR packets received for the video track.
    pub n_keyframe_requests: u64,
}

/// A live WHIP session. Media flows in background tasks until [`Publisher::stop`] or drop
/// (dropping stops the media and the peer connection but does not DELETE the resource).
pub struct Publisher {
    session: session::Session,
}

/// Publishes the test card and the tone to `whip_url`: `POST` with `Content-Type:
/// application/sdp` and `Authorization: Bearer <stream_key>`, expecting `201 Created` with a
/// `Location` (resolved against the URL that answered, after redirects).
///
/// Returns once the answer is applied; ICE, DTLS and media continue in the background. Media
/// starts when the connection is up, with an IDR. Must be called within a Tokio runtime.
///
/// # Errors
/// Invalid options, an encoder or network failure, or a refusal by the endpoint. A refusal is a
/// [`WhipError`] carrying the HTTP status:
/// `err.downcast_ref::<WhipError>().and_then(WhipError::status) == Some(409)` means the
/// conference is already live.
pub async fn publish(
    whip_url: &str,
    stream_key: &str,
    opts: SourceOptions,
) -> anyhow::Result<Publisher> {
    let session = session::publish(whip_url, stream_key, opts).await?;
    Ok(Publisher { session })
}

impl Publisher {
    /// Resolves when the session is over: the peer connection failed or closed, stayed
    /// disconnected for 5 s, never connected within 15 s of the answer, or a media task failed.
    /// The caller can then republish with backoff.
    pub async fn closed(&self) {
        let mut done = self.session.done.clone();
        // An error means the sender is gone, which also means over.
        let _ = done.wait_for(|d| *d).await;
    }

    /// Sends `DELETE` to the session resource and closes the peer connection (both are
    /// attempted; the first failure is returned).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.session.stop().await
    }

    /// The session resource (the absolute `Location` of the WHIP answer).
    pub fn resource(&self) -> &str {
        self.session.resource.as_str()
    }

    /// What has been sent so far.
    pub fn stats(&self) -> PublisherStats {
        self.session.counters.snapshot()
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("resource", &self.session.resource.as_str())
            .field("stats", &self.stats())
            .finish()
    }
}
