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
    pub frame_width: u32,
    pub frame_height: u32,
    pub freeze_count: u64,
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
        if self.audio_packets_received == 0 {
            problems.push("received no audio packets".to_string());
        }
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

/// Fails with every problem of every page, or passes.
pub fn ensure_pages_playing(pages: &[PageResult], min_frames: u64) -> Result<()> {
    let mut report = Vec::new();
    for p in pages {
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
