//! Bandwidth adaptation end to end (issue 11): each viewer gets the simulcast layer its link can
//! carry, or audio alone below the lowest layer, and goes back up when the link recovers.
//!
//! Every relay and every point is a host of its own (a network namespace, `src/tree.rs`): the
//! central (`hallcast demo`), a hall point with the publisher, viewer points linked only to the
//! central. A viewer's downlink is shaped with `tbf` on the relay's end of its link
//! (`src/shape.rs`: rate, 8 KB burst, 200 ms queue), so what the relay sends toward it queues and
//! drops as behind a weak connection; its uplink (feedback) stays clean. Nothing in the media path
//! is mocked: Chromium publishes (or the demo's own source), Chromium viewer pages decode.
//!
//! What is observed, as time series in Unix ms (`src/adapt.rs`): the relay's
//! `GET /api/v1/sessions` every 250 ms (per viewer `layer`, `paused`, `pause_reason`,
//! `estimate_bps`, `switches`), and each page's getStats every 250 ms (frame width, frames,
//! freezes, bytes, concealed audio, whether the "audio only" notice is visible).
//!
//! | test | what |
//! |---|---|
//! | `harness_shaping_caps_a_links_throughput` | the shaper itself, with plain UDP: 2 Mbit/s sent toward a point arrives whole unshaped, at ≤ 400 kbit/s (and with drops) shaped, whole again unshaped; the namespaces are gone after |
//! | `chromium_simulcast_two_viewers_one_shaped` | scenarios 1 and 3: Chromium publishes l/m/h; viewers A and B on unshaped links get the top layer (1280 wide, layer 2); A's link at 400 kbit/s → A below the top layer while B stays on it (at least [`B_TOP_SHARE`] of the time: B's own estimator on a loaded host may step it down for a moment); 100 kbit/s → A audio only (paused for bandwidth), the page shows the notice (screenshot); unshaped → A back on the top layer; each page's freezes and concealed audio bounded ([`Limits`]: the 3 s / 15 s / 1 s / 2 % under `HALLCAST_ADAPT_LIMITS=issue`, looser bounds that still catch the bug in the suite) |
//! | `demo_simulcast_source_one_shaped_viewer` | scenario 2: the same for one viewer of `hallcast demo --simulcast` (q/h/f) |
//!
//! Scenarios 1 and 3 are one test: scenario 3's two viewers on different links at the same time
//! *are* scenario 1's shaped viewer plus an unshaped reference, so one Chromium publisher (~1 core
//! encoding three layers) serves both instead of two; on 2 cores a second publisher would starve
//! the pages, and freezes measured on a starved machine mean nothing. Tests take a scenario slot
//! (`adapt::scenario_slot`: one per two cores), so they run side by side on a bigger machine and
//! one after the other on 2 cores.
//!
//! Each test goes through all its phases and records everything before it judges, so a failing
//! run still leaves the whole picture: `target/<profile>/e2e-results/<test>/` (or
//! `$HALLCAST_RESULTS_DIR/<test>`) holds `sessions.jsonl`, `viewer-*.jsonl` (every getStats
//! sample), `publisher.jsonl`, `summary.json` (phases, per-window figures, the checks) and
//! `audio-only.png`. The test then fails with every check that failed.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::adapt::{
    Allocation, PageSample, PageWindow, SessionsPoller, SessionsSample, allocations, first_after,
    page_series, poll_errors, results_dir, scenario_slot, viewer_at, write_json, write_jsonl,
};
use hallcast_tests::results::{self, PageResult};
use hallcast_tests::shape::{self, ShaperStats, shape, udp_throughput, unshape};
use hallcast_tests::tree::{Host, Tree, central_options, chromium_wrapper, now_ms, pages_in_with};
use hallcast_tests::{Client, ClientKind, Ctx, Demo, Info, Weight, run};
use serde_json::{Value, json};

/// The weak link of the issue: below the top layer (Chromium's h: up to 2 Mbit/s; the demo's
/// f), above the lowest (~0.2 Mbit/s) plus audio.
const SHAPED_KBIT: u32 = 400;
/// Below the lowest layer (l ≤ 200 kbit/s, q 320x180) plus audio (Opus with its RTP/UDP/IP
/// overhead ~50 kbit/s), above audio alone: the viewer must be left with audio only.
const AUDIO_ONLY_KBIT: u32 = 100;
/// The top layer: its index in the sessions API and its width in getStats.
const TOP_LAYER: u64 = 2;
const TOP_WIDTH: u32 = 1280;
/// How often the sessions API is polled, and the pages sampled.
const POLL: Duration = Duration::from_millis(250);
/// The figures the scenario is judged by. Two sets:
/// - `ci` (the default): what the suite asserts. Each bound is loose enough for a loaded
///   2-core machine and still fails on the bug this issue fixes (the "before" run at afa7a4c:
///   the shaped viewer never left the top layer, froze 30.7 s and concealed 7.3–8.1 % of its
///   audio). The project's rule: speed targets are checked by benchmarks, not by timed
///   assertions in tests.
/// - `issue` (`HALLCAST_ADAPT_LIMITS=issue`, what `benches/e2e/adapt.sh` runs): the issue's
///   targets — below the top layer within 3 s, back on it within 15 s, under 1 s of freezes,
///   audio concealed under 2 % (why 2 %: ~1.8 s of ~90 s, room for a few hundred ms of loss at
///   each of the two steps down while the queue overflows, and nothing more).
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// A shaped link: below the top layer (or paused) within this.
    down_ms: i64,
    /// An unshaped link: back on the top layer within this.
    up_ms: i64,
    /// Total freeze time a page may see over the whole run, outside announced audio-only
    /// time (getStats totalFreezesDuration).
    freeze_s: f64,
    /// Audio concealed / audio played over the whole run.
    concealed: f64,
}

fn limits() -> Limits {
    match std::env::var("HALLCAST_ADAPT_LIMITS").as_deref() {
        Ok("issue") => Limits {
            down_ms: 3_000,
            up_ms: 15_000,
            freeze_s: 1.0,
            concealed: 0.02,
        },
        _ => Limits {
            down_ms: 8_000,
            up_ms: 40_000,
            freeze_s: 15.0,
            concealed: 0.05,
        },
    }
}
/// The viewer page's notice when the relay paused video for bandwidth (vi, the default).
const WEAK_TEXT: &str = "Chỉ có tiếng — đường truyền yếu";
/// The pages reach the top layer within this (a Chromium sender ramps up over 10–25 s).
const WARMUP_TIMEOUT: Duration = Duration::from_secs(90);
/// Unshaped, on the top layer, before the first shaping.
const BASELINE: Duration = Duration::from_secs(5);
/// At SHAPED_KBIT.
const SHAPED_HOLD: Duration = Duration::from_secs(15);
/// At AUDIO_ONLY_KBIT; longer than 5 s so that getStats counts the gap in video as a pause,
/// not a freeze.
const AUDIO_ONLY_HOLD: Duration = Duration::from_secs(15);
/// Unshaped again, after the viewer is back on top (or the `up_ms` limit passed): steady state.
const STEADY: Duration = Duration::from_secs(5);
/// Longer than any run: the clients are stopped by the test.
const CLIENT_DURATION_S: u32 = 600;

// ----- the scenario -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Chromium's fake camera, simulcast l/m/h (`whip_publish.mjs --simulcast`), on a hall point.
    Chromium,
    /// `hallcast demo --simulcast`: the built-in source, q/h/f.
    Demo,
}

/// A viewer page in a point's namespace.
struct Viewer {
    name: &'static str,
    host: Host,
    pages: Client,
    screenshot: Option<PathBuf>,
}

impl Viewer {
    fn start(
        ctx: &Ctx,
        name: &'static str,
        host: Host,
        info: &Info,
        screenshot: Option<PathBuf>,
    ) -> Result<Viewer> {
        let mut extra = vec![
            "--progress-interval".to_string(),
            POLL.as_secs_f64().to_string(),
            "--watch-text".to_string(),
            WEAK_TEXT.to_string(),
        ];
        if let Some(p) = &screenshot {
            extra.push("--text-screenshot".into());
            extra.push(p.to_string_lossy().into_owned());
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let pages = pages_in_with(
            ctx,
            &host,
            &info.viewer_url,
            1,
            CLIENT_DURATION_S,
            0,
            &extra,
        )?;
        Ok(Viewer {
            name,
            host,
            pages,
            screenshot,
        })
    }

    fn series(&self) -> Vec<PageSample> {
        page_series(&self.pages.events(), 0)
    }
}

/// When each phase began (Unix ms).
#[derive(Clone, Debug, Default, serde::Serialize)]
struct Phases {
    viewers_started: i64,
    /// Every viewer page decoding at TOP_WIDTH.
    top: i64,
    shaped: i64,
    audio_only: i64,
    unshaped: i64,
    /// The viewer back on top (API and page), or the `up_ms` limit after `unshaped`.
    recovered: i64,
    end: i64,
    /// The shaper's counters toward A at the end of each shaped phase.
    shaper_at_audio_only: Option<ShaperStats>,
    shaper_at_unshaped: Option<ShaperStats>,
}

fn admin_token(info: &Info) -> Result<String> {
    info.raw["admin_token"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .with_context(|| format!("the demo's info file has no admin_token: {}", info.raw))
}

/// Chromium's fake camera and microphone, simulcast l/m/h in VP8, published from `hall`.
fn chromium_publisher(ctx: &Ctx, hall: &Host, info: &Info) -> Result<Client> {
    let wrapper = chromium_wrapper(ctx, &hall.ns)?;
    let args: Vec<String> = [
        "--url",
        &info.whip_url,
        "--key",
        &info.stream_key,
        "--codec",
        "vp8",
        "--simulcast",
        "--progress",
        "--duration",
        &CLIENT_DURATION_S.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut publisher = Client::start_with_env(
        ctx,
        ClientKind::Browser,
        "whip_publish.mjs",
        &args,
        &[("HALLCAST_CHROMIUM", &wrapper.to_string_lossy())],
    )?;
    let ev = publisher.wait_for("the WHIP answer", Duration::from_secs(60), |ev| {
        ev["event"] == "published"
    })?;
    ensure!(
        ev["status"] == 201,
        "the relay refused the simulcast publisher: {} {}",
        ev["status"],
        ev["body"]
    );
    Ok(publisher)
}

/// Sleeps `d`, failing at once if the relay died.
fn hold(demo: &mut Demo, d: Duration) -> Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        demo.ensure_running()?;
        thread::sleep(Duration::from_millis(250).min(until - Instant::now()));
    }
    Ok(())
}

/// Whether the viewer at `ip` is on the top layer in the relay's latest answer.
fn on_top_now(poller: &SessionsPoller, ip: &str) -> bool {
    poller
        .samples()
        .last()
        .and_then(|s| viewer_at(s.body.as_ref()?, ip))
        .is_some_and(|a| a.on_layer(TOP_LAYER))
}

/// Whether the page decoded frames at TOP_WIDTH between its last two samples.
fn decoding_top(series: &[PageSample]) -> bool {
    match series {
        [.., a, b] => b.frame_width == TOP_WIDTH && b.frames_decoded > a.frames_decoded,
        _ => false,
    }
}

/// The first sample at or after `from` where the page decoded at TOP_WIDTH (frames went up since
/// the sample before).
fn first_decoding_top(series: &[PageSample], from: i64) -> Option<&PageSample> {
    series
        .windows(2)
        .find(|w| {
            w[1].wall_ms >= from
                && w[1].frame_width == TOP_WIDTH
                && w[1].frames_decoded > w[0].frames_decoded
        })
        .map(|w| &w[1])
}

/// Runs one scenario: phases, then every check; writes the results either way.
fn scenario(ctx: &Ctx, test: &str, source: Source, reference_viewer: bool) -> Result<()> {
    let _slot = scenario_slot();
    let out = results_dir(test)?;
    eprintln!("{test}: results in {}", out.display());

    // Declared first, dropped last: every process below is stopped before the namespaces go.
    let mut tree = Tree::create()?;
    let central_host = tree.relay_host("ad-central")?;
    let hall = match source {
        Source::Chromium => Some(tree.point_under("ad-hall", &central_host)?),
        Source::Demo => None,
    };
    let a_host = tree.point_under("ad-viewer-a", &central_host)?;
    let b_host = match reference_viewer {
        true => Some(tree.point_under("ad-viewer-b", &central_host)?),
        false => None,
    };
    let mut opts = central_options(&central_host);
    match source {
        Source::Chromium => opts.no_source = true,
        Source::Demo => opts.simulcast = true,
    }
    let mut demo = Demo::start(ctx, opts)?;
    let token = admin_token(&demo.info)?;
    let mut publisher = match &hall {
        Some(h) => Some(chromium_publisher(ctx, h, &demo.info)?),
        None => None,
    };
    let mut poller = SessionsPoller::start(
        &demo.info.http_base,
        &token,
        POLL,
        Some(&out.join("sessions.jsonl")),
    )?;

    let mut phases = Phases {
        viewers_started: now_ms(),
        ..Default::default()
    };
    let mut viewers = vec![Viewer::start(
        ctx,
        "a",
        a_host.clone(),
        &demo.info,
        Some(out.join("audio-only.png")),
    )?];
    if let Some(h) = &b_host {
        viewers.push(Viewer::start(ctx, "b", h.clone(), &demo.info, None)?);
    }

    // Phases. A failure here (a client or the relay died, nothing ever played) ends the test at
    // once; what the adaptation did is judged afterwards from the series.
    let phased = (|| -> Result<()> {
        let warm_until = Instant::now() + WARMUP_TIMEOUT;
        for v in viewers.iter_mut() {
            v.pages.wait_for(
                &format!("viewer {} decoding {TOP_WIDTH} wide", v.name),
                WARMUP_TIMEOUT,
                |ev| {
                    ev["event"] == "progress"
                        && ev["pages"][0]["frame_width"] == TOP_WIDTH
                        && ev["pages"][0]["frames_decoded"].as_u64() > Some(0)
                },
            )?;
        }
        // And on the top layer in the relay's view, each: a join's first picture is the top
        // layer's cached GOP whatever the estimate, and a Chromium publisher that shed its top
        // layer for a while (its own send estimate, when the browsers starting beside it took
        // the cores) brings it back only seconds later. The phases start from the steady state
        // the issue describes: unshaped, on the top layer.
        for v in &viewers {
            loop {
                if on_top_now(&poller, &v.host.ip) {
                    break;
                }
                ensure!(
                    Instant::now() < warm_until,
                    "viewer {} was not on layer {TOP_LAYER} in /api/v1/sessions within \
                     {WARMUP_TIMEOUT:?} of starting, unshaped",
                    v.name
                );
                hold(&mut demo, POLL)?;
            }
        }
        phases.top = now_ms();
        hold(&mut demo, BASELINE)?;

        phases.shaped = now_ms();
        shape(&a_host, SHAPED_KBIT)?;
        hold(&mut demo, SHAPED_HOLD)?;

        phases.shaper_at_audio_only = shape::stats(&a_host)?;
        phases.audio_only = now_ms();
        shape(&a_host, AUDIO_ONLY_KBIT)?;
        hold(&mut demo, AUDIO_ONLY_HOLD)?;

        phases.shaper_at_unshaped = shape::stats(&a_host)?;
        phases.unshaped = now_ms();
        unshape(&a_host)?;
        ensure!(
            shape::stats(&a_host)?.is_none(),
            "the shaping toward A is still there after unshape"
        );
        // Until A is back on top in the relay's view and in its page's, or the `up_ms` limit (+ a
        // little, to see it if it comes late).
        let give_up = Instant::now() + Duration::from_millis(limits().up_ms as u64 + 5_000);
        loop {
            let api_top = on_top_now(&poller, &a_host.ip);
            if (api_top && decoding_top(&viewers[0].series())) || Instant::now() >= give_up {
                break;
            }
            hold(&mut demo, POLL)?;
        }
        phases.recovered = now_ms();
        hold(&mut demo, STEADY)?;
        phases.end = now_ms();
        Ok(())
    })();
    // The shaping goes with the namespace anyway; removing it first lets the clients end cleanly.
    let _ = unshape(&a_host);

    // Stop everything and keep what each saw.
    let mut finals: Vec<Result<PageResult>> = Vec::new();
    for v in viewers.iter_mut() {
        finals.push(
            v.pages
                .stop()
                .and_then(|r| results::pages(&r).map(|mut pages| pages.remove(0))),
        );
        write_jsonl(
            &out.join(format!("viewer-{}.jsonl", v.name)),
            &v.pages.events(),
        )?;
    }
    if let Some(p) = publisher.as_mut() {
        let _ = p.stop();
        write_jsonl(&out.join("publisher.jsonl"), &p.events())?;
    }
    let samples = poller.stop();
    let relay_alive = demo.ensure_running();

    let mut checks = Checks::default();
    let summary = judge(&mut checks, &phases, &viewers, &finals, &samples, source);
    write_json(
        &out.join("summary.json"),
        &json!({
            "test": test,
            "source": format!("{source:?}"),
            "shaping": {"shaped_kbit": SHAPED_KBIT, "audio_only_kbit": AUDIO_ONLY_KBIT,
                         "burst_bytes": shape::BURST_BYTES, "latency_ms": shape::LATENCY_MS},
            "phases": phases,
            "figures": summary,
            "checks": checks.all,
            "phase_error": phased.as_ref().err().map(|e| format!("{e:#}")),
        }),
    )?;
    // The failed checks first: a CI log keeps the head of a failing test's output, and the
    // figures below run to a few hundred lines.
    for f in &checks.failed {
        eprintln!("{test}: FAILED CHECK {f}");
    }
    eprintln!(
        "{test}: figures\n{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    phased?;
    relay_alive?;
    for (v, f) in viewers.iter().zip(&finals) {
        if let Err(e) = f {
            bail!("viewer {}'s result: {e:#}", v.name);
        }
    }
    checks.finish()
}

/// The checks of a run: every one is recorded (pass or fail) for the summary.
#[derive(Default)]
struct Checks {
    all: Vec<Value>,
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: String) {
        self.all
            .push(json!({"check": name, "ok": ok, "detail": detail}));
        if !ok {
            self.failed.push(format!("{name}: {detail}"));
        }
    }

    fn finish(self) -> Result<()> {
        if self.failed.is_empty() {
            return Ok(());
        }
        bail!(
            "{} of {} checks failed:\n- {}",
            self.failed.len(),
            self.all.len(),
            self.failed.join("\n- ")
        )
    }
}

/// The time video was off on purpose and the viewer knew: from one sample to the next while
/// the relay had the viewer paused for bandwidth, or while its page showed the notice (which
/// stays up until video is back on screen). Intervals in Unix ms, in time order.
fn announced_audio_only(series: &[PageSample], allocs: &[Allocation]) -> Vec<(i64, i64)> {
    let mut spans: Vec<(i64, i64)> = allocs
        .windows(2)
        .filter(|w| w[0].paused && w[0].pause_reason.as_deref() == Some("bandwidth"))
        .map(|w| (w[0].wall_ms, w[1].wall_ms))
        .chain(
            series
                .windows(2)
                .filter(|w| w[0].text_seen)
                .map(|w| (w[0].wall_ms, w[1].wall_ms)),
        )
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// Seconds of freezes (getStats totalFreezesDuration) outside `announced`. A freeze is counted
/// when the frame that ends it is rendered: a rise of `d` seconds seen at a sample is taken as
/// the `d` seconds before it.
fn unannounced_freeze_s(series: &[PageSample], announced: &[(i64, i64)]) -> f64 {
    let mut total = 0.0;
    for w in series.windows(2) {
        let d = w[1].total_freezes_duration_s - w[0].total_freezes_duration_s;
        if d <= 0.0 {
            continue;
        }
        let end = w[1].wall_ms;
        let start = end - (d * 1000.0) as i64;
        let covered: i64 = announced
            .iter()
            .map(|&(a, b)| (b.min(end) - a.max(start)).max(0))
            .sum();
        total += (d - covered as f64 / 1000.0).max(0.0);
    }
    total
}

fn ms_after(at: Option<i64>, from: i64) -> Value {
    at.map_or(Value::Null, |t| json!(t - from))
}

/// The allocations in `[from, to]`, summed up for the figures.
fn allocation_figures(allocs: &[Allocation], from: i64, to: i64) -> Value {
    let inside: Vec<&Allocation> = allocs
        .iter()
        .filter(|a| a.wall_ms >= from && a.wall_ms <= to)
        .collect();
    let mut layers: Vec<Value> = Vec::new();
    for a in &inside {
        let l = if a.paused {
            json!("paused")
        } else {
            json!(a.layer)
        };
        if layers.last() != Some(&l) {
            layers.push(l);
        }
    }
    let est: Vec<u64> = inside.iter().filter_map(|a| a.estimate_bps).collect();
    json!({
        "samples": inside.len(),
        "layers": layers,
        "estimate_bps_min": est.iter().min(),
        "estimate_bps_max": est.iter().max(),
        "switches_at_end": inside.last().map(|a| a.switches),
    })
}

/// Every check of the issue, on the recorded series; returns the figures.
fn judge(
    checks: &mut Checks,
    p: &Phases,
    viewers: &[Viewer],
    finals: &[Result<PageResult>],
    samples: &[SessionsSample],
    source: Source,
) -> Value {
    let Limits {
        down_ms: down_within_ms,
        up_ms: up_within_ms,
        freeze_s: max_freeze_s,
        concealed: max_concealed,
    } = limits();
    let windows = [
        ("baseline", p.top, p.shaped),
        ("shaped", p.shaped, p.audio_only),
        ("audio_only", p.audio_only, p.unshaped),
        ("recovery", p.unshaped, p.end),
    ];
    let mut figures = json!({});
    figures["limits"] = json!({
        "set": std::env::var("HALLCAST_ADAPT_LIMITS").unwrap_or_else(|_| "ci".into()),
        "down_ms": down_within_ms,
        "up_ms": up_within_ms,
        "freeze_s": max_freeze_s,
        "concealed": max_concealed,
    });
    let api_problem = poll_errors(samples);
    let mut series_of = Vec::new();
    for (v, f) in viewers.iter().zip(finals) {
        let series = v.series();
        let allocs = allocations(samples, &v.host.ip);
        let mut w = json!({});
        for (name, from, to) in windows {
            w[name] = json!({
                "page": PageWindow::of(&series, from, to),
                "relay": allocation_figures(&allocs, from, to),
            });
        }
        let fin = f.as_ref().ok();
        figures[format!("viewer_{}", v.name)] = json!({
            "peer": v.host.ip,
            "windows": w,
            "final": fin.map(|r| json!({
                "frames_decoded": r.frames_decoded,
                "frame_width": r.frame_width,
                "freeze_count": r.freeze_count,
                "total_freezes_duration_s": r.total_freezes_duration_s,
                "pause_count": r.pause_count,
                "total_pauses_duration_s": r.total_pauses_duration_s,
                "audio_samples_received": r.audio_samples_received,
                "audio_concealed_samples": r.audio_concealed_samples,
                "n_peer_connections": r.n_peer_connections,
                "states": r.states,
            })),
        });
        series_of.push((v, series, allocs, fin));
    }
    figures["shaper_toward_a"] = json!({
        "at_audio_only": p.shaper_at_audio_only,
        "at_unshaped": p.shaper_at_unshaped,
    });
    figures["sessions_api"] = json!({
        "polls": samples.len(),
        "failed_polls": api_problem.as_ref().map(|(n, _)| *n),
        "first_error": api_problem.as_ref().map(|(_, e)| e.clone()),
    });
    if p.end == 0 {
        // The phases did not finish: the error says why; the figures are what there is.
        return figures;
    }

    let (a, a_series, a_allocs, _) = &series_of[0];
    let api = format!(
        "sessions API: {} polls, {}",
        samples.len(),
        match &api_problem {
            Some((n, e)) => format!("{n} failed, first: {e}"),
            None => "all answered".into(),
        }
    );

    // The relay's view of A.
    let in_baseline = a_allocs
        .iter()
        .any(|x| x.wall_ms >= p.top && x.wall_ms <= p.shaped && x.on_layer(TOP_LAYER));
    checks.check(
        "a_on_top_layer_unshaped",
        in_baseline,
        format!(
            "viewer A ({}) on layer {TOP_LAYER} in /api/v1/sessions while unshaped: relay saw {} ({api})",
            a.host.ip,
            allocation_figures(a_allocs, p.top, p.shaped)
        ),
    );
    let down = first_after(a_allocs, p.shaped, |x| x.wall_ms, |x| x.below(TOP_LAYER));
    let down_ms = down.map(|x| x.wall_ms - p.shaped);
    checks.check(
        "a_below_top_in_time_at_400kbit",
        down_ms.is_some_and(|d| d <= down_within_ms),
        format!(
            "viewer A below layer {TOP_LAYER} or paused after its link went to {SHAPED_KBIT} kbit/s: \
             after {down_ms:?} ms (limit {down_within_ms}); relay saw {}",
            allocation_figures(a_allocs, p.shaped, p.audio_only)
        ),
    );
    let paused = first_after(
        a_allocs,
        p.audio_only,
        |x| x.wall_ms,
        |x| x.paused && x.pause_reason.as_deref() == Some("bandwidth"),
    )
    .filter(|x| x.wall_ms <= p.unshaped);
    let paused_ms = paused.map(|x| x.wall_ms - p.audio_only);
    checks.check(
        "a_audio_only_in_time_at_100kbit",
        paused_ms.is_some_and(|d| d <= down_within_ms),
        format!(
            "viewer A paused for bandwidth after its link went to {AUDIO_ONLY_KBIT} kbit/s: after \
             {paused_ms:?} ms (limit {down_within_ms}); relay saw {}",
            allocation_figures(a_allocs, p.audio_only, p.unshaped)
        ),
    );
    let up = first_after(
        a_allocs,
        p.unshaped,
        |x| x.wall_ms,
        |x| x.on_layer(TOP_LAYER),
    );
    let up_ms = up.map(|x| x.wall_ms - p.unshaped);
    checks.check(
        "a_back_on_top_in_time_unshaped",
        up_ms.is_some_and(|d| d <= up_within_ms),
        format!(
            "viewer A back on layer {TOP_LAYER} after the shaping was removed: after {up_ms:?} ms \
             (limit {up_within_ms}); relay saw {}",
            allocation_figures(a_allocs, p.unshaped, p.end)
        ),
    );

    // A's page.
    let page_up = first_decoding_top(a_series, p.unshaped).map(|s| s.wall_ms - p.unshaped);
    let shaped_page = PageWindow::of(a_series, p.shaped + down_within_ms, p.audio_only);
    // Below the top layer and decoding, or told it is audio only: a page frozen on the top
    // layer (the bug) is neither. Decoding means 5 frames/s or more: on the 400 kbit/s link
    // the lowest layer itself freezes now and then while the estimator probes (seen: 8.7
    // frames/s over 7 s in one run of ten); the bug stayed on the top layer and froze.
    // Stepped below the top at some point of the window, not necessarily at its end: in one CI
    // run the page went 320 → 1280 wide inside the 400 kbit/s window (the loaded publisher's
    // top layer can shrink to fit the link, and the relay then rightly climbs back to it).
    let notice_while_shaped = a_series
        .iter()
        .any(|s| s.wall_ms >= p.shaped && s.wall_ms <= p.audio_only && s.text_seen);
    checks.check(
        "a_page_below_top_while_shaped",
        notice_while_shaped
            || shaped_page
                .as_ref()
                .is_some_and(|w| w.widths.iter().any(|&x| x < TOP_WIDTH) && w.frames_per_s >= 5.0),
        format!(
            "viewer A's page from {down_within_ms} ms after the shaping to {SHAPED_KBIT} kbit/s: \
             {shaped_page:?}; audio-only notice shown: {notice_while_shaped}"
        ),
    );
    checks.check(
        "a_page_decodes_top_in_time_unshaped",
        page_up.is_some_and(|d| d <= up_within_ms),
        format!(
            "viewer A's page decoding {TOP_WIDTH} wide again after the shaping was removed: after \
             {page_up:?} ms (limit {up_within_ms})"
        ),
    );
    let text_at = first_after(a_series, p.audio_only, |s| s.wall_ms, |s| s.text_seen)
        .filter(|s| s.wall_ms <= p.unshaped)
        .map(|s| s.wall_ms - p.audio_only);
    let shot = a
        .screenshot
        .as_deref()
        .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0));
    checks.check(
        "a_page_shows_audio_only_notice",
        text_at.is_some() && shot.is_some(),
        format!(
            "viewer A's page showing {WEAK_TEXT:?} while paused for bandwidth: after {text_at:?} ms \
             of {AUDIO_ONLY_KBIT} kbit/s; screenshot {}",
            shot.map_or("none".to_string(), |f: &Path| f.display().to_string())
        ),
    );
    let text_before = a_series
        .iter()
        .any(|s| s.wall_ms <= p.shaped && s.text_seen);
    let text_at_end = a_series.last().is_some_and(|s| s.text_seen);
    checks.check(
        "a_page_notice_only_while_audio_only",
        !text_before && !text_at_end,
        format!(
            "the notice must not show before the shaping (shown: {text_before}) nor at the end, video \
             back (shown: {text_at_end})"
        ),
    );

    // Freezes and audio, whole run, every viewer. Video stopped while the relay paused it for
    // bandwidth and the page said so is not a freeze the viewer is left to guess at; Chromium
    // counts it as one (or as a pause) when the next frame comes, so that time is taken out.
    for (v, series, allocs, fin) in &series_of {
        match fin {
            Some(r) => {
                let announced = announced_audio_only(series, allocs);
                // Freezes the page counted after its last sample are not placed: all counted.
                let after_series = series.last().map_or(r.total_freezes_duration_s, |l| {
                    r.total_freezes_duration_s - l.total_freezes_duration_s
                });
                let unannounced = unannounced_freeze_s(series, &announced) + after_series.max(0.0);
                checks.check(
                    &format!("{}_freezes_within_limit", v.name),
                    unannounced < max_freeze_s,
                    format!(
                        "viewer {}: {} freezes, {:.2} s in all, {unannounced:.2} s of it outside \
                         announced audio-only time ({:.1} s announced) (limit {max_freeze_s} s); \
                         pauses {} ({:.1} s)",
                        v.name,
                        r.freeze_count,
                        r.total_freezes_duration_s,
                        announced
                            .iter()
                            .map(|(a, b)| (b - a) as f64 / 1000.0)
                            .sum::<f64>(),
                        r.pause_count,
                        r.total_pauses_duration_s
                    ),
                );
                // Adapting is the relay's job: a page that had to reconnect lost its picture and
                // its sound for seconds, whatever the freeze counter says.
                checks.check(
                    &format!("{}_page_kept_its_connection", v.name),
                    r.n_peer_connections == 1,
                    format!(
                        "viewer {}: {} peer connection(s), states {:?}",
                        v.name, r.n_peer_connections, r.states
                    ),
                );
                let ratio = if r.audio_samples_received > 0 {
                    r.audio_concealed_samples as f64 / r.audio_samples_received as f64
                } else {
                    1.0
                };
                checks.check(
                    &format!("{}_audio_continuous", v.name),
                    ratio < max_concealed,
                    format!(
                        "viewer {}: {} of {} audio samples concealed ({:.2} %, limit {} %)",
                        v.name,
                        r.audio_concealed_samples,
                        r.audio_samples_received,
                        ratio * 100.0,
                        max_concealed * 100.0
                    ),
                );
            }
            None => checks.check(
                &format!("{}_result", v.name),
                false,
                format!("viewer {} printed no result", v.name),
            ),
        }
    }

    // Scenario 3: B unshaped keeps the top layer while A is below it, at the same moments.
    if let Some((b, b_series, b_allocs, _)) = series_of.get(1) {
        let together = samples.iter().any(|s| {
            s.wall_ms >= p.shaped
                && s.wall_ms <= p.unshaped
                && s.body.as_ref().is_some_and(|body| {
                    viewer_at(body, &a.host.ip).is_some_and(|x| x.below(TOP_LAYER))
                        && viewer_at(body, &b.host.ip).is_some_and(|x| x.on_layer(TOP_LAYER))
                })
        });
        checks.check(
            "a_and_b_on_different_layers_at_once",
            together,
            format!(
                "one sessions answer with A below layer {TOP_LAYER} and B on it while A was shaped; \
                 relay saw A {} and B {}",
                allocation_figures(a_allocs, p.shaped, p.unshaped),
                allocation_figures(b_allocs, p.shaped, p.unshaped)
            ),
        );
        // Most of the time, not every answer: B's own estimator runs on a host loaded by
        // three Chromium pages and the other scenario, and now and then sees a delay trend
        // and steps B down for a few seconds (seen: 2 s of 30 in one run of ten; the CI run
        // at 8baa7ce failed this check when it asked for every answer). What the check is
        // for — A's link dragging B down with it — keeps B below the top for most of the
        // window, as A is.
        let b_window: Vec<&Allocation> = b_allocs
            .iter()
            .filter(|x| x.wall_ms >= p.shaped && x.wall_ms <= p.unshaped)
            .collect();
        let b_top_share = if b_window.is_empty() {
            0.0
        } else {
            b_window.iter().filter(|x| x.on_layer(TOP_LAYER)).count() as f64 / b_window.len() as f64
        };
        checks.check(
            "b_stays_on_top_while_a_is_shaped",
            b_top_share >= B_TOP_SHARE,
            format!(
                "viewer B (unshaped) on layer {TOP_LAYER} in {:.0} % of {} answers while A was \
                 shaped (at least {:.0} %): {}",
                b_top_share * 100.0,
                b_window.len(),
                B_TOP_SHARE * 100.0,
                allocation_figures(b_allocs, p.shaped, p.unshaped)
            ),
        );
        let bw = PageWindow::of(b_series, p.shaped + down_within_ms, p.audio_only);
        let b_page: Vec<&PageSample> = b_series
            .iter()
            .filter(|x| x.wall_ms >= p.shaped + down_within_ms && x.wall_ms <= p.audio_only)
            .collect();
        let b_page_top_share = if b_page.is_empty() {
            0.0
        } else {
            b_page.iter().filter(|x| x.frame_width == TOP_WIDTH).count() as f64
                / b_page.len() as f64
        };
        checks.check(
            "b_page_on_top_while_a_is_shaped",
            bw.as_ref().is_some_and(|w| w.frames_per_s >= 15.0) && b_page_top_share >= B_TOP_SHARE,
            format!(
                "viewer B's page decoding {TOP_WIDTH} wide in {:.0} % of {} samples while A was \
                 shaped (at least {:.0} %), at 15 frames/s or more: {bw:?}",
                b_page_top_share * 100.0,
                b_page.len(),
                B_TOP_SHARE * 100.0
            ),
        );
    }
    figures["source"] = json!(format!("{source:?}"));
    figures["timings_ms"] = json!({
        "a_below_top_after_shaping": ms_after(down.map(|x| x.wall_ms), p.shaped),
        "a_paused_after_100kbit": ms_after(paused.map(|x| x.wall_ms), p.audio_only),
        "a_top_after_unshaping_api": ms_after(up.map(|x| x.wall_ms), p.unshaped),
        "a_top_after_unshaping_page": page_up,
        "a_notice_after_100kbit": text_at,
    });
    figures
}

// ----- tests -----

/// The freeze accounting itself: a 3 s freeze ending inside announced audio-only time counts
/// only for the part before the announcement.
#[test]
fn freezes_during_announced_audio_only_are_not_counted() {
    let s = |wall_ms, freeze_s, text_seen| PageSample {
        wall_ms,
        total_freezes_duration_s: freeze_s,
        text_seen,
        ..Default::default()
    };
    let series = vec![
        s(0, 0.0, false),
        s(1_000, 0.0, true),
        s(4_000, 0.0, true),
        s(5_000, 3.5, false),
    ];
    let announced = announced_audio_only(&series, &[]);
    assert_eq!(announced, vec![(1_000, 5_000)]);
    let left = unannounced_freeze_s(&series, &announced);
    assert!((left - 0.0).abs() < 1e-9, "{left}");
    let late = vec![
        s(0, 0.0, false),
        s(1_000, 0.0, true),
        s(2_000, 0.0, false),
        s(9_000, 4.0, false),
    ];
    let left = unannounced_freeze_s(&late, &announced_audio_only(&late, &[]));
    assert!((left - 4.0).abs() < 1e-9, "{left}");
}

/// The shaper itself, with plain UDP between the central's host and a point under it: 2 Mbit/s
/// arrives whole on the bare link, at most the shaped rate (and the shaper drops the rest) with
/// `shape(point, 400)`, whole again after `unshape`; no namespace is left after the tree goes.
#[test]
fn harness_shaping_caps_a_links_throughput() {
    run(
        "harness_shaping_caps_a_links_throughput",
        Weight::Light,
        |_ctx| -> Result<()> {
            let mut tree = Tree::create()?;
            let backbone = tree.backbone.clone();
            let relay = tree.relay_host("ad-relay")?;
            let point = tree.point_under("ad-point", &relay)?;
            ensure!(
                point.toward.ns == relay.ns,
                "a point's link is shaped in its relay's namespace: {:?}",
                point.toward
            );
            let send_kbit = 2_000;
            let secs = 4.0;
            ensure!(shape::stats(&point)?.is_none(), "a fresh link is shaped");
            let bare = udp_throughput(&relay, &point, send_kbit, secs)?;
            shape(&point, SHAPED_KBIT)?;
            let stats0 = shape::stats(&point)?.context("no tbf after shape()")?;
            ensure!(
                stats0.rate_bps == SHAPED_KBIT as u64 * 1000,
                "the shaper holds to {} bit/s, not {SHAPED_KBIT} kbit/s",
                stats0.rate_bps
            );
            let shaped = udp_throughput(&relay, &point, send_kbit, secs)?;
            let stats1 = shape::stats(&point)?.context("no tbf")?;
            // The other direction is not shaped.
            let uplink = udp_throughput(&point, &relay, send_kbit, secs)?;
            unshape(&point)?;
            ensure!(shape::stats(&point)?.is_none(), "unshape left the tbf");
            unshape(&point)?; // again: nothing to do, no error
            let after = udp_throughput(&relay, &point, send_kbit, secs)?;
            eprintln!(
                "shaping: {send_kbit} kbit/s sent toward the point for {secs} s arrived at {bare:.0} \
                 kbit/s bare, {shaped:.0} kbit/s shaped to {SHAPED_KBIT} kbit/s (shaper: {stats1:?}), \
                 {after:.0} kbit/s after unshaping; the point's uplink while shaped: {uplink:.0} kbit/s"
            );
            // Sent at 2000: the bare link carries (nearly) all of it; shaped, what passed is the
            // rate plus at most the 8 KB burst over the ~4 s measured (~16 kbit/s) and the
            // timing's slack.
            ensure!(
                bare > 0.9 * send_kbit as f64 && after > 0.9 * send_kbit as f64,
                "the bare link carried {bare:.0} / {after:.0} kbit/s of {send_kbit}"
            );
            ensure!(
                uplink > 0.9 * send_kbit as f64,
                "shaping toward the point slowed its uplink to {uplink:.0} kbit/s"
            );
            ensure!(
                shaped <= 1.1 * SHAPED_KBIT as f64 && shaped >= 0.8 * SHAPED_KBIT as f64,
                "shaped to {SHAPED_KBIT} kbit/s the link carried {shaped:.0} kbit/s"
            );
            ensure!(
                stats1.dropped > 0 && stats1.sent_bytes > 0,
                "the shaper dropped nothing of {send_kbit} kbit/s: {stats1:?}"
            );
            drop(tree);
            let left = Tree::existing_namespaces(&backbone)?;
            ensure!(left.is_empty(), "the tree left namespaces behind: {left:?}");
            Ok(())
        },
    );
}

/// The share of the time viewer B (unshaped) must be on the top layer while A is shaped.
const B_TOP_SHARE: f64 = 0.75;

/// Scenarios 1 and 3 (one Chromium publisher for both; the module's comment says why).
#[test]
fn chromium_simulcast_two_viewers_one_shaped() {
    let name = "chromium_simulcast_two_viewers_one_shaped";
    // Weight::Light: the scenario slot (not the process-wide heavy lock) decides what runs
    // beside it.
    run(name, Weight::Light, |ctx| {
        scenario(ctx, name, Source::Chromium, true)
    });
}

/// Scenario 2: `hallcast demo --simulcast` as the source, one viewer shaped and unshaped.
#[test]
fn demo_simulcast_source_one_shaped_viewer() {
    let name = "demo_simulcast_source_one_shaped_viewer";
    run(name, Weight::Light, |ctx| {
        scenario(ctx, name, Source::Demo, false)
    });
}
