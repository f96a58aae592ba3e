//! The `result` lines of the test clients, as types.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

/// One viewer page (tests/js/watch_pages.mjs).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PageResult {
    pub page: u32,
    pub frames_decoded: u64,
    pub audio_packets_received: u64,
    /// getStats' inbound-rtp audio `totalSamplesReceived`: samples played out, concealed ones
    /// included.
    pub audio_samples_received: u64,
    /// `concealedSamples`: samples NetEq made up because no packet was there to decode.
    pub audio_concealed_samples: u64,
    /// `silentConcealedSamples`: the concealed samples that were silence.
    pub audio_silent_concealed_samples: u64,
    /// `totalSamplesDuration`, in seconds.
    pub audio_samples_duration_s: f64,
    /// `totalAudioEnergy`: the sum over played samples of level² × duration (level 0..1);
    /// 0 for silence. Divided by `audio_samples_duration_s`: the mean power.
    pub audio_energy: f64,
    pub frame_width: u32,
    pub frame_height: u32,
    pub freeze_count: u64,
    /// getStats' `totalFreezesDuration`, in seconds.
    pub total_freezes_duration_s: f64,
    /// `pauseCount`: gaps of more than 5 s between rendered frames (not freezes).
    pub pause_count: u64,
    pub total_pauses_duration_s: f64,
    pub video_bytes_received: u64,
    pub audio_bytes_received: u64,
    /// The page's visible text contained `--watch-text` when the result was taken.
    pub text_seen: bool,
    /// The page's visible text (whitespace folded, the first 300 characters).
    pub visible_text: Option<String>,
    /// From the page's navigation start.
    pub first_frame_ms: Option<f64>,
    /// From the start of the WHEP POST that led to it.
    pub first_frame_ms_from_post: Option<f64>,
    /// Every distinct state in order (`window.hallcast.state`).
    pub states: Vec<String>,
    pub state: Option<String>,
    pub has_hallcast_pc: bool,
    pub video_codec: Option<String>,
    pub n_peer_connections: u32,
    pub n_offers_posted: u32,
    pub muted: Option<bool>,
    pub page_errors: Vec<String>,
    pub error: Option<String>,
    /// `<html lang>` and the status texts the page shows.
    pub lang: Option<String>,
    pub status_text: Option<String>,
    pub badge_text: Option<String>,
    /// `window.isSecureContext` (an https page whose certificate Chromium trusts: true).
    pub secure_context: Option<bool>,
    /// Page 0 with `--headcount N`: what answering the prompt did.
    pub headcount: Option<Value>,
}

/// All pages of one watch_pages.mjs run.
pub fn pages(result: &Value) -> Result<Vec<PageResult>> {
    let pages: Vec<PageResult> = serde_json::from_value(result["pages"].clone())
        .with_context(|| format!("unexpected viewer result: {result}"))?;
    if pages.is_empty() {
        bail!("the viewer result lists no page: {result}");
    }
    for p in &pages {
        if let Some(e) = &p.error {
            bail!("viewer page {} could not be read: {e}", p.page);
        }
    }
    Ok(pages)
}

/// aiortc's WHEP player (tests/py/whep_play.py).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PlayResult {
    pub status: Option<u16>,
    pub body: Option<String>,
    pub frames_decoded: u64,
    /// From the start of the WHEP POST that got the 201.
    pub first_frame_ms: Option<f64>,
    pub frame_width: u32,
    pub frame_height: u32,
    pub audio_packets_received: u64,
    pub audio_frames_decoded: u64,
    /// From the first decoded audio frame to the end of playing (`None`: no audio decoded).
    pub audio_played_s: Option<f64>,
    /// The largest absolute sample value of the decoded audio, 0..1 (0: silence).
    pub audio_peak: Option<f64>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub connection_states: Vec<String>,
    pub delete_status: Option<Value>,
}

/// Either publisher (tests/js/whip_publish.mjs, tests/py/whip_publish.py).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PublishResult {
    pub status: Option<u16>,
    pub body: Option<String>,
    pub location: Option<String>,
    pub frames_encoded: u64,
    pub frames_sent: u64,
    pub audio_packets_sent: u64,
    pub layers: Vec<Layer>,
    pub codec: Option<String>,
    pub video_codec: Option<String>,
    pub connection_states: Vec<String>,
    pub delete_status: Option<Value>,
}

/// One simulcast layer as Chromium's sender saw it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Layer {
    pub rid: Option<String>,
    pub frame_width: u32,
    pub frame_height: u32,
    pub frames_encoded: u64,
    pub bytes_sent: u64,
    pub packets_sent: u64,
    pub retransmitted_packets_sent: u64,
}

pub fn parse<T: for<'de> Deserialize<'de>>(what: &str, value: &Value) -> Result<T> {
    serde_json::from_value(value.clone())
        .with_context(|| format!("unexpected {what} result: {value}"))
}

impl PageResult {
    /// Failures of a page that is expected to be playing, as sentences (empty when fine).
    pub fn playing_problems(&self, min_frames: u64) -> Vec<String> {
        let mut problems = Vec::new();
        if self.frames_decoded < min_frames {
            problems.push(format!(
                "decoded {} video frames, expected at least {min_frames}",
                self.frames_decoded
            ));
        }
        problems.extend(self.audio_problems());
        if self.frame_width == 0 {
            problems.push("getStats reported no frame width".to_string());
        }
        if self.state.as_deref() != Some("live") {
            problems.push(format!(
                "window.hallcast.state is {:?}, expected \"live\"",
                self.state
            ));
        }
        if !self.page_errors.is_empty() {
            problems.push(format!("the page threw: {:?}", self.page_errors));
        }
        problems
    }
}

// Audio that plays, not audio that merely arrived.
//
// Chromium's NetEq plays 48 000 samples a second from its first audio packet on, whether packets
// arrive or not: what no packet covered it makes up (`concealedSamples`), so the concealed share of
// `totalSamplesReceived` says how much of the time the page played nothing real. A page that gets
// no audio plays no samples at all. A page waits for 3 s of audio packets before it ends early
// (tests/util.rs, PAGE_UNTIL_AUDIO_PACKETS), so audio that stops after its first second keeps it
// playing concealment to its full duration. Seen on this 2-core machine (a browser, an encoder and
// the relay sharing it): healthy pages conceal 0–2 %; a relay that forwarded each viewer only its
// first 50 audio packets gave 74 % (a 4 s page, before the wait for 3 s of audio) and 98 % (with
// it). 20 % sits well between the two.
/// Most of a page's played audio samples that may be concealed.
pub const MAX_CONCEALED_SHARE: f64 = 0.20;

// aiortc decodes every Opus packet into one 20 ms frame: 50 frames a second of play. On a loaded
// machine its Python event loop falls behind now and then, and the last frames may still sit in
// its jitter buffer when it stops, so the count is held to half the expected number. A player
// waits for 5 s of audio packets before it ends early (tests/util.rs, AIORTC_UNTIL_AUDIO_PACKETS),
// so audio that stops after a second keeps it playing to its full duration. Seen here: healthy
// players decode 100–102 % of the expected count; a relay that forwarded only the first 50 audio
// packets gave 2 % (49 % in a 2 s run before the wait for 5 s of audio, which is why it waits).
/// Opus frames per second (20 ms frames).
pub const OPUS_FRAMES_PER_S: f64 = 50.0;
/// Share of `OPUS_FRAMES_PER_S × audio_played_s` an aiortc player must decode.
pub const MIN_AUDIO_FRAMES_SHARE: f64 = 0.5;

impl PageResult {
    /// The concealed share of the audio samples the page played (`None`: it played none).
    pub fn concealed_share(&self) -> Option<f64> {
        (self.audio_samples_received > 0)
            .then(|| self.audio_concealed_samples as f64 / self.audio_samples_received as f64)
    }

    /// Problems with the audio of a page expected to be playing, as sentences (empty when fine).
    pub fn audio_problems(&self) -> Vec<String> {
        match self.concealed_share() {
            None => vec![format!(
                "played no audio samples ({} audio packets received)",
                self.audio_packets_received
            )],
            Some(share) if share > MAX_CONCEALED_SHARE => vec![format!(
                "concealed {} of the {} audio samples it played ({:.0} %, at most {:.0} % \
                 allowed; {} audio packets received): the audio stopped or stuttered",
                self.audio_concealed_samples,
                self.audio_samples_received,
                share * 100.0,
                MAX_CONCEALED_SHARE * 100.0,
                self.audio_packets_received
            )],
            Some(_) => Vec::new(),
        }
    }
}

impl PlayResult {
    /// An aiortc player that must have played: the WHEP POST answered 201, at least
    /// `min_frames` video frames decoded, audio decoded ([`PlayResult::audio_problems`]).
    pub fn ensure_played(&self, what: &str, min_frames: u64) -> Result<()> {
        if self.status != Some(201) {
            bail!(
                "{what}: WHEP POST answered {:?} with body {:?}, expected 201",
                self.status,
                self.body
            );
        }
        if self.frames_decoded < min_frames || self.frame_width == 0 {
            bail!(
                "{what}: decoded {} video frames (width {}), expected at least {min_frames} \
                 (ICE never completing leaves 0; result: {self:?})",
                self.frames_decoded,
                self.frame_width
            );
        }
        let audio = self.audio_problems();
        if !audio.is_empty() {
            bail!("{what}: {} (result: {self:?})", audio.join("; "));
        }
        Ok(())
    }

    /// Problems with the audio an aiortc player decoded, as sentences (empty when fine).
    pub fn audio_problems(&self) -> Vec<String> {
        let Some(played_s) = self
            .audio_played_s
            .filter(|_| self.audio_frames_decoded > 0)
        else {
            return vec![format!(
                "decoded no audio frame ({} audio packets received)",
                self.audio_packets_received
            )];
        };
        let expected = OPUS_FRAMES_PER_S * played_s;
        eprintln!(
            "aiortc player: {} audio frames decoded in {played_s:.1} s of audio ({:.0} % of {expected:.0})",
            self.audio_frames_decoded,
            self.audio_frames_decoded as f64 * 100.0 / expected.max(1.0)
        );
        if (self.audio_frames_decoded as f64) < MIN_AUDIO_FRAMES_SHARE * expected {
            return vec![format!(
                "decoded {} audio frames in the {played_s:.1} s from its first one to the end, \
                 expected at least {:.0} ({:.0} % of {OPUS_FRAMES_PER_S} frames/s; {} audio packets \
                 received): the audio stopped or stuttered",
                self.audio_frames_decoded,
                MIN_AUDIO_FRAMES_SHARE * expected,
                MIN_AUDIO_FRAMES_SHARE * 100.0,
                self.audio_packets_received
            )];
        }
        Vec::new()
    }
}

/// Fails with every problem of every page, or passes.
pub fn ensure_pages_playing(pages: &[PageResult], min_frames: u64) -> Result<()> {
    let mut report = Vec::new();
    for p in pages {
        eprintln!(
            "viewer page {}: {} video frames ({}x{}); audio: {} packets, {} samples played, {} \
             concealed ({:.1} %)",
            p.page,
            p.frames_decoded,
            p.frame_width,
            p.frame_height,
            p.audio_packets_received,
            p.audio_samples_received,
            p.audio_concealed_samples,
            p.concealed_share().unwrap_or(0.0) * 100.0
        );
        let problems = p.playing_problems(min_frames);
        if !problems.is_empty() {
            report.push(format!(
                "viewer page {}: {} (result: {p:?})",
                p.page,
                problems.join("; ")
            ));
        }
    }
    if !report.is_empty() {
        bail!("{}", report.join("\n"));
    }
    Ok(())
}
