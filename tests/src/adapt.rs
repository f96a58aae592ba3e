//! What the bandwidth-adaptation tests (issue 11) observe, as time series stamped in Unix
//! milliseconds so they line up with each other and with the moments a link was shaped:
//! - the relay's view: `GET /api/v1/sessions` ([`sessions`]), polled in the background
//!   ([`SessionsPoller`]): per viewer the layer it forwards, whether video is paused, the
//!   bandwidth estimate and the number of switches (interfaces: the spec);
//! - the viewer's view: the progress lines of `tests/js/watch_pages.mjs` ([`page_series`]):
//!   getStats' frame size, frames, freezes, bytes and audio concealment per sample;
//! - summaries of a window of either ([`PageWindow`], [`Allocation`]).
//!
//! Also the slots that let scenarios run side by side only where the machine has the cores
//! ([`scenario_slot`]).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tree::now_ms;

/// `GET {base}/api/v1/sessions` with the admin token: the parsed answer. Fails on anything but
/// a 2xx with a JSON body, saying what came back.
pub fn sessions(base: &str, admin_token: &str) -> Result<Value> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    sessions_with(&http, base, admin_token)
}

fn sessions_with(http: &reqwest::blocking::Client, base: &str, admin_token: &str) -> Result<Value> {
    let url = format!("{}/api/v1/sessions", base.trim_end_matches('/'));
    let r = http
        .get(&url)
        .bearer_auth(admin_token)
        .send()
        .with_context(|| format!("GET {url}: no answer"))?;
    let status = r.status();
    let body = r.text().unwrap_or_default();
    if !status.is_success() {
        let mut shown = body.clone();
        shown.truncate(300);
        bail!("GET {url} answered {status}: {shown:?}");
    }
    serde_json::from_str(&body)
        .with_context(|| format!("GET {url}: the answer is not JSON: {body:?}"))
}

/// One poll of the sessions API.
#[derive(Clone, Debug, Serialize)]
pub struct SessionsSample {
    pub wall_ms: i64,
    /// The answer, when it was a 2xx with JSON.
    pub body: Option<Value>,
    /// Why there is no body.
    pub error: Option<String>,
}

/// `GET /api/v1/sessions` every `interval` in a thread of its own, each answer kept (and
/// appended to a JSON-lines file if given) until [`SessionsPoller::stop`] or drop.
pub struct SessionsPoller {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<SessionsSample>>>,
    thread: Option<JoinHandle<()>>,
}

impl SessionsPoller {
    pub fn start(
        base: &str,
        admin_token: &str,
        interval: Duration,
        out: Option<&Path>,
    ) -> Result<SessionsPoller> {
        // A poll must not hold the next one up for long: a stalled answer is a gap, not a delay.
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let mut file = match out {
            Some(p) => {
                Some(File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
            }
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (base, token) = (base.to_string(), admin_token.to_string());
        let thread = {
            let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let wall_ms = now_ms();
                    let sample = match sessions_with(&http, &base, &token) {
                        Ok(body) => SessionsSample {
                            wall_ms,
                            body: Some(body),
                            error: None,
                        },
                        Err(e) => SessionsSample {
                            wall_ms,
                            body: None,
                            error: Some(format!("{e:#}")),
                        },
                    };
                    if let Some(f) = file.as_mut() {
                        let _ = serde_json::to_writer(&mut *f, &sample);
                        let _ = writeln!(f);
                    }
                    samples
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(sample);
                    // Keep to the interval from the start of a poll.
                    let spent = Duration::from_millis((now_ms() - wall_ms).max(0) as u64);
                    thread::sleep(interval.saturating_sub(spent));
                }
            })
        };
        Ok(SessionsPoller {
            stop,
            samples,
            thread: Some(thread),
        })
    }

    /// Every sample so far.
    pub fn samples(&self) -> Vec<SessionsSample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops polling; returns every sample.
    pub fn stop(&mut self) -> Vec<SessionsSample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.samples()
    }
}

impl Drop for SessionsPoller {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A viewer's allocation as the sessions API shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Allocation {
    pub wall_ms: i64,
    pub id: String,
    /// The layer forwarded now (0 = lowest); `None`: none.
    pub layer: Option<u64>,
    pub target_layer: Option<u64>,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub estimate_bps: Option<u64>,
    pub switches: u64,
    pub delivery: Option<String>,
}

impl Allocation {
    /// Forwarding layer `top` with video on.
    pub fn on_layer(&self, layer: u64) -> bool {
        !self.paused && self.layer == Some(layer)
    }

    /// Below `top`: a lower layer, or video paused.
    pub fn below(&self, top: u64) -> bool {
        self.paused || self.layer.is_some_and(|l| l < top)
    }
}

/// The viewer session whose peer address is `peer_ip` (the point's address: one viewer per
/// point) in one answer of the sessions API; the newest connected one if there are several.
pub fn viewer_at(body: &Value, peer_ip: &str) -> Option<Allocation> {
    let list = body["sessions"].as_array()?;
    let peer_matches = |s: &Value| {
        s["peer"].as_str().is_some_and(|p| {
            // "IP" per the spec; also accept "IP:PORT".
            p == peer_ip || p.rsplit_once(':').is_some_and(|(ip, _)| ip == peer_ip)
        })
    };
    let s = list
        .iter()
        .filter(|s| s["role"] == "viewer" && peer_matches(s))
        .max_by_key(|s| s["connected"].as_bool().unwrap_or(false))?;
    let num = |k: &str| s[k].as_u64();
    Some(Allocation {
        wall_ms: 0,
        id: s["id"].as_str().unwrap_or_default().to_string(),
        layer: num("layer"),
        target_layer: num("target_layer"),
        paused: s["paused"].as_bool().unwrap_or(false),
        pause_reason: s["pause_reason"].as_str().map(str::to_string),
        estimate_bps: num("estimate_bps"),
        switches: num("switches").unwrap_or(0),
        delivery: s["delivery"].as_str().map(str::to_string),
    })
}

/// The allocation of the viewer at `peer_ip` in every sample that has one, in time order.
pub fn allocations(samples: &[SessionsSample], peer_ip: &str) -> Vec<Allocation> {
    samples
        .iter()
        .filter_map(|s| {
            let mut a = viewer_at(s.body.as_ref()?, peer_ip)?;
            a.wall_ms = s.wall_ms;
            Some(a)
        })
        .collect()
}

/// The first error the poller got, and how many of `samples` had one.
pub fn poll_errors(samples: &[SessionsSample]) -> Option<(usize, String)> {
    let n = samples.iter().filter(|s| s.error.is_some()).count();
    let first = samples.iter().find_map(|s| s.error.clone())?;
    Some((n, first))
}

/// One sample of one page from a watch_pages.mjs progress line (getStats, summed over the
/// page's connections; counters are cumulative since the page opened).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PageSample {
    pub wall_ms: i64,
    pub page: u32,
    pub state: Option<String>,
    pub frames_decoded: u64,
    pub frame_width: u32,
    pub frame_height: u32,
    pub fps: Option<f64>,
    pub freeze_count: u64,
    pub total_freezes_duration_s: f64,
    pub pause_count: u64,
    pub total_pauses_duration_s: f64,
    pub video_bytes_received: u64,
    pub audio_bytes_received: u64,
    pub audio_packets_received: u64,
    pub audio_samples_received: u64,
    pub audio_concealed_samples: u64,
    /// The page's visible text contained watch_pages.mjs's `--watch-text`.
    pub text_seen: bool,
    pub status_text: Option<String>,
}

/// Page `page`'s samples from a watch_pages.mjs run's events, in time order.
pub fn page_series(events: &[Value], page: u32) -> Vec<PageSample> {
    events
        .iter()
        .filter(|ev| ev["event"] == "progress")
        .filter_map(|ev| {
            let entry = ev["pages"]
                .as_array()?
                .iter()
                .find(|p| p["page"].as_u64() == Some(page as u64))?;
            let mut s: PageSample = serde_json::from_value(entry.clone()).ok()?;
            s.wall_ms = ev["wall_ms"].as_i64()?;
            Some(s)
        })
        .collect()
}

/// What a page received between two moments (the samples nearest inside the window).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PageWindow {
    pub from_ms: i64,
    pub to_ms: i64,
    pub seconds: f64,
    pub video_kbps: f64,
    pub audio_kbps: f64,
    pub frames_per_s: f64,
    /// Frame widths seen in the window (each distinct value, in order).
    pub widths: Vec<u32>,
    pub freezes: u64,
    pub freeze_s: f64,
    pub pauses: u64,
    pub pause_s: f64,
    /// Concealed audio samples / audio samples played, in the window.
    pub concealed_ratio: f64,
}

impl PageWindow {
    /// `None` if fewer than two samples fall in `[from_ms, to_ms]`.
    pub fn of(series: &[PageSample], from_ms: i64, to_ms: i64) -> Option<PageWindow> {
        let inside: Vec<&PageSample> = series
            .iter()
            .filter(|s| s.wall_ms >= from_ms && s.wall_ms <= to_ms)
            .collect();
        let (a, b) = (*inside.first()?, *inside.last()?);
        if b.wall_ms <= a.wall_ms {
            return None;
        }
        let secs = (b.wall_ms - a.wall_ms) as f64 / 1000.0;
        let mut widths: Vec<u32> = Vec::new();
        for s in &inside {
            if s.frame_width > 0 && widths.last() != Some(&s.frame_width) {
                widths.push(s.frame_width);
            }
        }
        let samples = b
            .audio_samples_received
            .saturating_sub(a.audio_samples_received);
        let concealed = b
            .audio_concealed_samples
            .saturating_sub(a.audio_concealed_samples);
        Some(PageWindow {
            from_ms: a.wall_ms,
            to_ms: b.wall_ms,
            seconds: secs,
            video_kbps: b
                .video_bytes_received
                .saturating_sub(a.video_bytes_received) as f64
                * 8.0
                / 1000.0
                / secs,
            audio_kbps: b
                .audio_bytes_received
                .saturating_sub(a.audio_bytes_received) as f64
                * 8.0
                / 1000.0
                / secs,
            frames_per_s: b.frames_decoded.saturating_sub(a.frames_decoded) as f64 / secs,
            widths,
            freezes: b.freeze_count.saturating_sub(a.freeze_count),
            freeze_s: (b.total_freezes_duration_s - a.total_freezes_duration_s).max(0.0),
            pauses: b.pause_count.saturating_sub(a.pause_count),
            pause_s: (b.total_pauses_duration_s - a.total_pauses_duration_s).max(0.0),
            concealed_ratio: if samples > 0 {
                concealed as f64 / samples as f64
            } else {
                0.0
            },
        })
    }
}

/// The first sample at or after `from_ms` for which `pred` holds.
pub fn first_after<T>(
    series: &[T],
    from_ms: i64,
    at: impl Fn(&T) -> i64,
    pred: impl Fn(&T) -> bool,
) -> Option<&T> {
    series.iter().find(|s| at(s) >= from_ms && pred(s))
}

/// Writes `value` as pretty JSON.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes one JSON value per line.
pub fn write_jsonl(path: &Path, values: &[Value]) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    for v in values {
        serde_json::to_writer(&mut f, v)?;
        writeln!(f)?;
    }
    Ok(())
}

/// Where a test's results go when the scratch directory does not survive it:
/// `$HALLCAST_RESULTS_DIR/<test>`, else `target/<profile>/e2e-results/<test>` beside the test
/// binary. Emptied first, so it holds the latest run only.
pub fn results_dir(test: &str) -> Result<PathBuf> {
    let root = match std::env::var_os("HALLCAST_RESULTS_DIR") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().context("cannot find the test executable's path")?;
            // target/<profile>/deps/<binary> → target/<profile>/e2e-results
            exe.parent()
                .and_then(Path::parent)
                .context("the test executable has no target/<profile>/deps parent")?
                .join("e2e-results")
        }
    };
    let dir = root.join(test.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Scenario slots: how many browser scenarios may run at once. Each takes about two cores (a
/// Chromium publisher encoding three layers ~1, a receiving Chromium ~0.3 each, the relay), and
/// their measurements (freezes, concealed audio) mean nothing on a starved machine: one slot per
/// two cores, at least one; `HALLCAST_SCENARIO_SLOTS` overrides.
pub fn scenario_slots() -> usize {
    if let Some(n) = std::env::var("HALLCAST_SCENARIO_SLOTS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return n.max(1);
    }
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (cores / 2).max(1)
}

static SLOTS_TAKEN: Mutex<usize> = Mutex::new(0);
static SLOT_FREED: Condvar = Condvar::new();

/// A taken scenario slot, given back on drop.
pub struct Slot(());

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = SLOTS_TAKEN.lock().unwrap_or_else(|p| p.into_inner());
        *taken = taken.saturating_sub(1);
        SLOT_FREED.notify_all();
    }
}

/// Waits for a free scenario slot (of [`scenario_slots`]).
pub fn scenario_slot() -> Slot {
    let max = scenario_slots();
    let mut taken = SLOTS_TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    while *taken >= max {
        taken = SLOT_FREED.wait(taken).unwrap_or_else(|p| p.into_inner());
    }
    *taken += 1;
    Slot(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_a_viewer_by_its_peer_address() {
        let body = json!({"taken_ms": 1, "sessions": [
            {"id": "p", "role": "publisher", "peer": "10.78.1.2", "layer": null},
            {"id": "old", "role": "viewer", "peer": "10.78.1.2", "connected": false, "layer": 2},
            {"id": "a", "role": "viewer", "peer": "10.78.1.2", "connected": true, "layer": 0,
             "target_layer": 1, "paused": false, "pause_reason": null, "estimate_bps": 380000,
             "switches": 2, "delivery": "flowing"},
            {"id": "b", "role": "viewer", "peer": "10.78.1.6:50000", "connected": true,
             "layer": null, "paused": true, "pause_reason": "bandwidth", "switches": 1},
        ]});
        let a = viewer_at(&body, "10.78.1.2").expect("viewer a");
        assert_eq!(a.id, "a");
        assert_eq!(a.layer, Some(0));
        assert_eq!(a.estimate_bps, Some(380_000));
        assert!(a.below(2) && !a.on_layer(2));
        let b = viewer_at(&body, "10.78.1.6").expect("viewer b");
        assert!(b.paused && b.below(2));
        assert_eq!(b.pause_reason.as_deref(), Some("bandwidth"));
        assert!(viewer_at(&body, "10.78.1.10").is_none());
    }

    #[test]
    fn a_page_window_takes_differences() {
        let s = |wall_ms, frames, bytes, width, freeze_s, samples, concealed| PageSample {
            wall_ms,
            frames_decoded: frames,
            video_bytes_received: bytes,
            frame_width: width,
            total_freezes_duration_s: freeze_s,
            audio_samples_received: samples,
            audio_concealed_samples: concealed,
            ..Default::default()
        };
        let series = vec![
            s(0, 0, 0, 0, 0.0, 0, 0),
            s(1000, 30, 250_000, 1280, 0.0, 48_000, 0),
            s(3000, 60, 350_000, 640, 0.5, 144_000, 960),
        ];
        let w = PageWindow::of(&series, 500, 3000).expect("two samples");
        assert_eq!(w.seconds, 2.0);
        assert_eq!(w.video_kbps, 400.0);
        assert_eq!(w.frames_per_s, 15.0);
        assert_eq!(w.widths, vec![1280, 640]);
        assert_eq!(w.freeze_s, 0.5);
        assert_eq!(w.concealed_ratio, 0.01);
        assert!(PageWindow::of(&series, 2000, 4000).is_none());
    }
}
