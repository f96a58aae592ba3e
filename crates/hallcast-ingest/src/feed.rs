//! One encoder's stream into one conference: what the RTMP and SRT ingests both produce.
//!
//! **A stable API: the `srt` branch (SRT + MPEG-TS ingest) builds on it.** Change it only
//! compatibly.
//!
//! A [`Feed`] is a WHIP publisher of the relay it runs in: [`Feed::start`] publishes to
//! `{target}/whip/{conference}` with the encoder's stream key, so the relay checks the key
//! (a refusal is [`IngestError::Refused`]) and everything a WHIP publisher gets (GOP cache,
//! pre-flight, attendance, edges, recording) comes with it. Then the ingest pushes media as
//! it arrives, without waiting:
//! - [`Feed::video_h264`]: one H.264 access unit in Annex B. Parameter sets seen in the
//!   stream are put in front of every IDR that lacks them; access unit delimiters are dropped.
//!   A `pts` different from `dts` (B-frames) is warned about once.
//! - [`Feed::audio_aac`]: one raw AAC-LC frame and its AudioSpecificConfig; decoded,
//!   resampled to 48 kHz and encoded to 20 ms Opus packets (see [`crate::aac`]). For ADTS
//!   (MPEG-TS), split the PES payload with [`crate::adts::parse`] first.
//!
//! Times are in 90 kHz units (MPEG-TS's own clock; RTMP's milliseconds × 90), any origin.
//! Media pushed before the WebRTC connection is up is dropped; video starts at the first
//! keyframe after that.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use hallcast_client::{FeedAudio, FeedPublisher, FeedStats, FeedVideo, WhipError};
use tracing::{info, warn};

use crate::IngestError;
use crate::aac::AacToOpus;
use crate::h264::ParameterSets;
use crate::refusal::{INGEST_HEADER, Protocol, Refusal, RefusalKind, RefusalSink};

/// Where feeds are published: the relay's own HTTP listener, plain `http://` (with TLS on,
/// the relay opens a loopback-only plain listener for this; see `hallcast serve`).
///
/// The listener that serves a target sets its [`Protocol`] ([`IngestTarget::for_protocol`]):
/// each WHIP POST then names it in the [`INGEST_HEADER`], which the relay believes on its own
/// loopback ingest listener only. Refusals of named conferences go to the relay's
/// [`RefusalSink`] when it gave one ([`IngestTarget::with_refusals`]).
#[derive(Clone)]
pub struct IngestTarget {
    base: String,
    media_ip: Option<IpAddr>,
    protocol: Option<Protocol>,
    refusals: Option<Arc<dyn RefusalSink>>,
}

impl std::fmt::Debug for IngestTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestTarget")
            .field("base", &self.base)
            .field("media_ip", &self.media_ip)
            .field("protocol", &self.protocol)
            .field("refusals", &self.refusals.is_some())
            .finish()
    }
}

impl IngestTarget {
    /// `base`: e.g. `http://127.0.0.1:8080` (no trailing slash needed).
    pub fn new(base: impl Into<String>) -> Self {
        let base: String = base.into();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            media_ip: None,
            protocol: None,
            refusals: None,
        }
    }

    /// Feeds from encoders speaking `protocol` (set by the listener that serves the target).
    pub fn for_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Refusals of named conferences are reported to `sink` (the relay).
    pub fn with_refusals(mut self, sink: Arc<dyn RefusalSink>) -> Self {
        self.refusals = Some(sink);
        self
    }

    /// Tells the relay that an encoder's push to `conference` was refused (with a protocol
    /// and a sink; otherwise only the caller's log line says it).
    pub fn report_refusal(&self, conference: &str, kind: RefusalKind, detail: &str) {
        if let (Some(sink), Some(protocol)) = (&self.refusals, self.protocol) {
            sink.refused(Refusal::new(conference, protocol, kind, detail));
        }
    }

    /// Reach the relay's media port at `ip` instead of the addresses its WHIP answer
    /// announces: the relay's bound media address, or loopback when it binds a wildcard
    /// (its announced public addresses may not be reachable from its own host behind 1:1
    /// NAT).
    pub fn with_media_ip(mut self, ip: IpAddr) -> Self {
        self.media_ip = Some(ip);
        self
    }

    /// The WHIP endpoint of `conference`.
    pub fn whip_url(&self, conference: &str) -> String {
        format!("{}/whip/{conference}", self.base)
    }
}

/// One encoder's stream into one conference.
pub struct Feed {
    publisher: FeedPublisher,
    conference: String,
    label: String,
    params: ParameterSets,
    audio: Option<AacToOpus>,
    warned_b_frames: bool,
    n_bad_audio: u64,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("conference", &self.conference)
            .field("label", &self.label)
            .field("stats", &self.publisher.stats())
            .finish_non_exhaustive()
    }
}

impl Feed {
    /// Publishes to `conference` on `target` with `key`. `label` names the source in logs
    /// (e.g. `rtmp 10.0.0.5:51234`).
    ///
    /// # Errors
    /// [`IngestError::Refused`] when the relay refuses: a wrong key (401), no such conference
    /// (404), already live (409), or any other refusal with the relay's message (403: the
    /// conference has ended, 503: draining, ...); [`IngestError::Publish`] when the relay
    /// could not be reached or WebRTC failed.
    pub async fn start(
        target: &IngestTarget,
        conference: &str,
        key: &str,
        label: &str,
    ) -> Result<Feed, IngestError> {
        if conference.is_empty() || conference.contains(['/', '?', '#']) {
            return Err(IngestError::Refused(format!(
                "invalid conference name {conference:?}"
            )));
        }
        let headers: Vec<(String, String)> = target
            .protocol
            .map(|p| (INGEST_HEADER.to_owned(), p.header_value().to_owned()))
            .into_iter()
            .collect();
        let published = hallcast_client::publish_feed_with(
            &target.whip_url(conference),
            key,
            target.media_ip,
            &headers,
        )
        .await;
        let publisher = published.map_err(|e| {
            let status = e.downcast_ref::<WhipError>().and_then(WhipError::status);
            let (err, kind) = match status {
                Some(401) => (
                    IngestError::Refused(format!("wrong stream key for conference {conference}")),
                    Some(RefusalKind::WrongKey),
                ),
                // No such conference: nobody to tell but the log.
                Some(404) => (
                    IngestError::Refused(format!("no conference {conference}")),
                    None,
                ),
                Some(409) => (
                    IngestError::Refused(format!(
                        "conference {conference} already has a live publisher"
                    )),
                    Some(RefusalKind::AlreadyLive),
                ),
                Some(status) => (
                    IngestError::Refused(format!("the relay answered {status}: {e}")),
                    Some(RefusalKind::Relay),
                ),
                None => (IngestError::Publish(format!("{e:#}")), None),
            };
            if let Some(kind) = kind {
                target.report_refusal(conference, kind, &err.to_string());
            }
            err
        })?;
        info!(%conference, source = %label, resource = publisher.resource(), "ingest feed published");
        Ok(Feed {
            publisher,
            conference: conference.to_owned(),
            label: label.to_owned(),
            params: ParameterSets::default(),
            audio: None,
            warned_b_frames: false,
            n_bad_audio: 0,
        })
    }

    /// One H.264 access unit in Annex B (start codes), times in 90 kHz units.
    ///
    /// # Errors
    /// [`IngestError::Closed`] once the WHIP session is over (the caller should end the
    /// encoder's connection).
    pub fn video_h264(&mut self, pts: i64, dts: i64, annexb: &[u8]) -> Result<(), IngestError> {
        self.check_open()?;
        if pts != dts && !self.warned_b_frames {
            self.warned_b_frames = true;
            warn!(
                conference = %self.conference,
                source = %self.label,
                "the encoder sends B-frames (presentation time differs from decode time): \
                 browsers' WebRTC decoders drop them and the picture stutters; set the \
                 encoder's B-frames to 0 (x264: -bf 0, OBS: bframes=0, profile baseline)"
            );
        }
        let au = self.params.complete(annexb);
        if au.annexb.is_empty() {
            return Ok(());
        }
        // The RTP clock follows the decode time: monotonic even with B-frames (whose
        // presentation times go backwards, which RTP could carry but a sample writer cannot).
        // Without B-frames the two are equal.
        self.publisher.send_video(FeedVideo {
            ts: dts,
            annexb: Bytes::from(au.annexb),
            keyframe: au.keyframe,
        });
        Ok(())
    }

    /// One raw AAC frame (no ADTS header) with its AudioSpecificConfig; `pts` in 90 kHz
    /// units. A new configuration restarts the transcoder.
    ///
    /// # Errors
    /// [`IngestError::Unsupported`] for audio this ingest cannot carry (not AAC-LC, more than
    /// two channels); [`IngestError::Closed`] once the session is over. A frame that does not
    /// decode is skipped (logged once per 100 such frames).
    pub fn audio_aac(&mut self, pts: i64, asc: &[u8], frame: &[u8]) -> Result<(), IngestError> {
        self.check_open()?;
        if !self.audio.as_ref().is_some_and(|a| a.is_for(asc)) {
            let t = AacToOpus::new(asc)?;
            let c = t.config();
            info!(
                conference = %self.conference,
                source = %self.label,
                sample_rate = c.sample_rate,
                channels = c.channels,
                "AAC audio, transcoded to Opus 48 kHz"
            );
            self.audio = Some(t);
        }
        let Some(t) = self.audio.as_mut() else {
            return Ok(());
        };
        match t.push(pts, frame) {
            Ok(packets) => {
                for p in packets {
                    self.publisher.send_audio(FeedAudio {
                        ts: p.ts,
                        opus: p.data,
                    });
                }
            }
            Err(e) => {
                if self.n_bad_audio.is_multiple_of(100) {
                    warn!(conference = %self.conference, source = %self.label, "skipping an AAC frame: {e}");
                }
                self.n_bad_audio += 1;
            }
        }
        Ok(())
    }

    /// Whether the WHIP session is over.
    pub fn is_closed(&self) -> bool {
        self.publisher.is_closed()
    }

    /// Resolves when the WHIP session is over (the relay dropped it, the conference ended).
    pub async fn closed(&self) {
        self.publisher.closed().await;
    }

    /// Resolves once media flows (the WebRTC connection is up) or the session is over.
    pub async fn connected(&self) {
        self.publisher.connected().await;
    }

    /// What has been sent so far.
    pub fn stats(&self) -> FeedStats {
        self.publisher.stats()
    }

    /// The conference this feed publishes to.
    pub fn conference(&self) -> &str {
        &self.conference
    }

    /// Ends the WHIP session (DELETE) and the peer connection.
    pub async fn stop(self) {
        let stats = self.publisher.stats();
        if let Err(e) = self.publisher.stop().await {
            warn!(conference = %self.conference, source = %self.label, "ending the ingest feed: {e:#}");
        }
        info!(
            conference = %self.conference,
            source = %self.label,
            n_video_frames = stats.n_video_frames,
            n_audio_packets = stats.n_audio_packets,
            n_dropped = stats.n_dropped,
            "ingest feed ended"
        );
    }

    fn check_open(&self) -> Result<(), IngestError> {
        if self.publisher.is_closed() {
            Err(IngestError::Closed)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_makes_whip_urls() {
        let t = IngestTarget::new("http://127.0.0.1:8080/");
        assert_eq!(t.whip_url("hn-1"), "http://127.0.0.1:8080/whip/hn-1");
    }
}
