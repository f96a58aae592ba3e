//! The relay's encoder pre-flight checks (`GET /api/v1/conferences/{id}/preflight`) against
//! real publishers: the demo's built-in source (webrtc-rs, a live OpenH264 encode and Opus,
//! over WHIP and real UDP) made to behave as encoders that get it wrong — a long keyframe
//! interval, no audio, silent audio, a too-low bitrate — each flagged, and raised on the admin
//! board as its `ingest_unhealthy` / `audio_silent` alert; a good one all green, no alert.
//! Chromium publishing (its microphone live, then muted) shows the audio level read from the
//! RFC 6464 header extension, which the built-in source does not send (it is judged by Opus
//! packet sizes).

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use hallcast_tests::adapt::{results_dir, write_json};
use hallcast_tests::http::Http;
use hallcast_tests::{Client, ClientKind, Demo, DemoOptions, Weight, run};
use serde_json::Value;

/// Every check id the API must list, in order.
const IDS: [&str; 9] = [
    "codec",
    "keyframe_interval",
    "b_frames",
    "bitrate",
    "resolution",
    "frame_rate",
    "simulcast",
    "audio",
    "audio_level",
];

/// How long a scenario may take to show what it expects, from its relay being ready (the
/// source connects, then the checks need a few seconds of media; a 10 s keyframe interval is
/// red once 4 s passed without a keyframe).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One publisher and what its pre-flight answer must say.
struct Scenario {
    name: &'static str,
    opts: DemoOptions,
    /// (check id, status).
    expect: Vec<(&'static str, &'static str)>,
    /// (check id, text its value must contain).
    expect_value: Vec<(&'static str, &'static str)>,
    /// Publish with Chromium (`whip_publish.mjs` with these extra arguments) instead of the
    /// demo's built-in source.
    browser: Option<&'static [&'static str]>,
    /// The pre-flight alerts the admin board must show, exactly (`ingest_unhealthy`,
    /// `audio_silent`); `None`: not looked at.
    board_alerts: Option<&'static [&'static str]>,
}

impl Scenario {
    /// The demo's built-in source, with `opts`.
    fn source(
        name: &'static str,
        opts: DemoOptions,
        expect: Vec<(&'static str, &'static str)>,
    ) -> Scenario {
        Scenario {
            name,
            opts,
            expect,
            expect_value: vec![],
            browser: None,
            board_alerts: None,
        }
    }

    /// The same, with the pre-flight alerts the admin board must show.
    fn alerting(mut self, kinds: &'static [&'static str]) -> Scenario {
        self.board_alerts = Some(kinds);
        self
    }

    fn satisfied(&self, v: &Value, board: &[String]) -> bool {
        let got = statuses(v);
        self.board_alerts.is_none_or(|want| {
            let mut want: Vec<&str> = want.to_vec();
            want.sort_unstable();
            want == board.iter().map(String::as_str).collect::<Vec<_>>()
        }) && v["live"] == true
            // Every publisher here speaks WHIP (one claims the ingest gateway's header).
            && v["protocol"] == "WHIP"
            && v["ingest_problem"].is_null()
            && self
                .expect
                .iter()
                .all(|(id, want)| got.get(*id).map(String::as_str) == Some(*want))
            && self
                .expect_value
                .iter()
                .all(|(id, text)| check_value(v, id).contains(text))
    }

    fn unmet(&self, v: &Value, board: &[String]) -> Vec<String> {
        let statuses = self
            .expect
            .iter()
            .map(|(id, want)| format!("{id} {want} (got {})", line(v, id)))
            .chain(std::iter::once(format!(
                "protocol WHIP, no ingest_problem (got {}, {})",
                v["protocol"], v["ingest_problem"]
            )));
        let values = self
            .expect_value
            .iter()
            .map(|(id, text)| format!("{id}'s value with {text:?} (got {})", line(v, id)));
        let alerts = self
            .board_alerts
            .map(|want| format!("board alerts {want:?} (got {board:?})"));
        statuses.chain(values).chain(alerts).collect()
    }
}

/// The answer for the demo's conference, checked for shape: every id once, in order, each
/// with a status of the four, a value and both advice texts.
fn preflight(demo: &Demo) -> Result<Value> {
    let http = Http::new(&demo.info.http_base)?;
    let token = admin_token(demo)?;
    let path = format!("/api/v1/conferences/{}/preflight", demo.info.conference);
    let a = http.get(&path, Some(&token))?;
    ensure!(a.status == 200, "GET {path}: {} {}", a.status, a.body);
    let v = a.json()?;
    ensure!(
        v["conference"] == demo.info.conference.as_str(),
        "conference: {v}"
    );
    ensure!(v["live"].is_boolean(), "live: {v}");
    let checks = v["checks"].as_array().cloned().unwrap_or_default();
    let ids: Vec<&str> = checks.iter().filter_map(|c| c["id"].as_str()).collect();
    ensure!(ids == IDS, "check ids {ids:?}, expected {IDS:?}: {v}");
    for c in &checks {
        let status = c["status"].as_str().unwrap_or("");
        ensure!(
            ["green", "amber", "red", "unknown"].contains(&status),
            "status of {c}"
        );
        for key in ["value", "advice_vi", "advice_en"] {
            ensure!(
                c[key].as_str().is_some_and(|s| !s.is_empty()),
                "{key} of {c}"
            );
        }
    }
    Ok(v)
}

/// The pre-flight kinds among the admin board's alerts for the demo's conference, sorted.
fn board_alerts(demo: &Demo) -> Result<Vec<String>> {
    let http = Http::new(&demo.info.http_base)?;
    let path = format!("/api/v1/conferences/{}/board", demo.info.conference);
    let a = http.get(&path, Some(&admin_token(demo)?))?;
    ensure!(a.status == 200, "GET {path}: {} {}", a.status, a.body);
    let v = a.json()?;
    let mut kinds: Vec<String> = v["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["kind"].as_str())
        .filter(|k| ["ingest_unhealthy", "audio_silent"].contains(k))
        .map(str::to_string)
        .collect();
    kinds.sort_unstable();
    Ok(kinds)
}

fn admin_token(demo: &Demo) -> Result<String> {
    match demo.info.raw["admin_token"].as_str() {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ => bail!("the demo's info file has no admin_token"),
    }
}

fn statuses(v: &Value) -> BTreeMap<String, String> {
    v["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or("").to_string(),
                c["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn check_value(v: &Value, id: &str) -> String {
    v["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["id"] == id)
        .and_then(|c| c["value"].as_str())
        .unwrap_or("")
        .to_string()
}

fn line(v: &Value, id: &str) -> String {
    v["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["id"] == id)
        .map(|c| format!("{id}: {} ({})", c["status"], c["value"]))
        .unwrap_or_else(|| format!("{id}: missing"))
}

/// Starts every scenario's relay and publisher (the built-in source, or Chromium), then polls
/// them all until each answer shows what its scenario expects, or the timeout. The last
/// answers go to the test's results directory.
fn run_scenarios(ctx: &hallcast_tests::Ctx, test: &str, scenarios: Vec<Scenario>) -> Result<()> {
    let mut demos = Vec::new();
    let mut browsers: Vec<Client> = Vec::new();
    for s in &scenarios {
        let opts = DemoOptions {
            tag: Some(s.name.to_string()),
            no_source: s.browser.is_some(),
            ..s.opts.clone()
        };
        let demo = Demo::start(ctx, opts)?;
        if let Some(extra) = s.browser {
            let mut args: Vec<String> = vec![
                "--url".into(),
                demo.info.whip_url.clone(),
                "--key".into(),
                demo.info.stream_key.clone(),
                "--duration".into(),
                "60".into(),
            ];
            args.extend(extra.iter().map(|a| a.to_string()));
            browsers.push(Client::start(
                ctx,
                ClientKind::Browser,
                "whip_publish.mjs",
                &args,
            )?);
        }
        demos.push(demo);
    }
    let started = Instant::now();
    let mut last: Vec<Option<Value>> = vec![None; scenarios.len()];
    let mut last_alerts: Vec<Vec<String>> = vec![vec![]; scenarios.len()];
    let mut done = vec![false; scenarios.len()];
    while started.elapsed() < SETTLE_TIMEOUT && done.iter().any(|d| !d) {
        thread::sleep(Duration::from_secs(1));
        for (i, (s, demo)) in scenarios.iter().zip(&mut demos).enumerate() {
            if done[i] {
                continue;
            }
            demo.ensure_running()?;
            let v = preflight(demo)?;
            let alerts = if s.board_alerts.is_some() {
                board_alerts(demo)?
            } else {
                vec![]
            };
            done[i] = s.satisfied(&v, &alerts);
            last_alerts[i] = alerts;
            if done[i] {
                eprintln!(
                    "{test}/{}: as expected after {:.1} s: {}",
                    s.name,
                    started.elapsed().as_secs_f64(),
                    v["checks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| format!("{}={} ({})", c["id"], c["status"], c["value"]))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            last[i] = Some(v);
        }
    }
    for b in &mut browsers {
        let _ = b.stop();
    }
    let dir = results_dir(test)?;
    let mut problems = Vec::new();
    for (((s, v), ok), alerts) in scenarios.iter().zip(&last).zip(&done).zip(&last_alerts) {
        let v = v.clone().unwrap_or(Value::Null);
        write_json(&dir.join(format!("{}.json", s.name)), &v)?;
        if !ok {
            problems.push(format!(
                "{}: expected within {SETTLE_TIMEOUT:?} live and {}; last answer: {v}",
                s.name,
                s.unmet(&v, alerts).join(", ")
            ));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// A small, cheap picture for the scenarios whose mistake is not the picture.
const SMALL: Option<(u32, u32)> = Some((640, 360));

#[test]
fn preflight_flags_encoders_that_get_it_wrong() {
    let test = "preflight_flags_encoders_that_get_it_wrong";
    run(test, Weight::Heavy, |ctx| {
        let scenarios = vec![
            Scenario::source(
                "long_keyframe_interval",
                DemoOptions {
                    keyframe_interval_s: Some(10),
                    source_size: SMALL,
                    source_bitrate_kbps: Some(800),
                    ..Default::default()
                },
                // Red well before the second keyframe (10 s): 4 s without one is enough.
                vec![
                    ("keyframe_interval", "red"),
                    ("audio", "green"),
                    ("audio_level", "green"),
                    ("b_frames", "green"),
                ],
            )
            .alerting(&["ingest_unhealthy"]),
            Scenario::source(
                "no_audio",
                DemoOptions {
                    keyframe_interval_s: Some(1),
                    source_size: SMALL,
                    source_bitrate_kbps: Some(800),
                    source_audio: Some("none"),
                    ..Default::default()
                },
                vec![
                    ("audio", "red"),
                    ("audio_level", "unknown"),
                    ("keyframe_interval", "green"),
                ],
            )
            .alerting(&["audio_silent"]),
            Scenario::source(
                "silent_audio",
                DemoOptions {
                    keyframe_interval_s: Some(1),
                    source_size: SMALL,
                    source_bitrate_kbps: Some(800),
                    source_audio: Some("silence"),
                    ..Default::default()
                },
                vec![
                    ("audio", "green"),
                    ("audio_level", "red"),
                    ("keyframe_interval", "green"),
                ],
            )
            .alerting(&["audio_silent"]),
            Scenario::source(
                "too_low_bitrate",
                DemoOptions {
                    keyframe_interval_s: Some(1),
                    source_size: Some((1280, 720)),
                    source_bitrate_kbps: Some(150),
                    // Without it OpenH264 overshoots a bitrate it cannot reach.
                    source_skip_frames: true,
                    ..Default::default()
                },
                vec![
                    ("bitrate", "red"),
                    ("resolution", "green"),
                    ("audio_level", "green"),
                ],
            )
            .alerting(&["ingest_unhealthy"]),
        ];
        run_scenarios(ctx, test, scenarios)
    });
}

#[test]
fn preflight_of_a_good_encoder_is_all_green() {
    let test = "preflight_of_a_good_encoder_is_all_green";
    run(test, Weight::Heavy, |ctx| {
        run_scenarios(
            ctx,
            test,
            vec![
                Scenario::source(
                    "good",
                    // 1280x720 at 30 fps and 2 Mbit/s, three simulcast layers, a keyframe every
                    // second, the tone.
                    DemoOptions {
                        simulcast: true,
                        keyframe_interval_s: Some(1),
                        ..Default::default()
                    },
                    IDS.iter().map(|id| (*id, "green")).collect(),
                )
                .alerting(&[]),
            ],
        )
    });
}

#[test]
fn preflight_of_chromium_reads_the_audio_level_extension_and_vp8() {
    let test = "preflight_of_chromium_reads_the_audio_level_extension_and_vp8";
    run(test, Weight::Heavy, |ctx| {
        let live = Scenario {
            name: "chromium_microphone",
            opts: DemoOptions::default(),
            // Chromium's fake microphone beeps: loud peaks in every 10 s window.
            expect: vec![
                ("audio", "green"),
                ("audio_level", "green"),
                ("codec", "green"),
                ("b_frames", "green"),
            ],
            // "peak −N dBov": judged by the level extension, not by packet sizes. (The
            // keyframe line is not judged here: Chromium's keyframes come when asked and when
            // its encoder changes resolution while ramping up, so it may be amber or red.)
            expect_value: vec![("audio_level", "dBov")],
            browser: Some(&[]),
            board_alerts: None,
        };
        let muted = Scenario {
            name: "chromium_muted_microphone",
            opts: DemoOptions::default(),
            expect: vec![("audio", "green"), ("audio_level", "red")],
            expect_value: vec![("audio_level", "dBov")],
            browser: Some(&["--mute-audio"]),
            board_alerts: None,
        };
        // VP8: the resolution comes from the key frame header. This publisher also sends the
        // relay's ingest-gateway header (`hallcast-ingest: rtmp`) on the public listener: it
        // must stay WHIP (`protocol` "WHIP", `keyframe_interval` listed, not
        // `keyframe_requests`: `preflight` checks the ids).
        let vp8 = Scenario {
            name: "chromium_vp8",
            opts: DemoOptions::default(),
            expect: vec![("codec", "green"), ("b_frames", "green")],
            expect_value: vec![("codec", "VP8"), ("resolution", "×")],
            browser: Some(&["--codec", "vp8", "--header", "hallcast-ingest: rtmp"]),
            board_alerts: None,
        };
        run_scenarios(ctx, test, vec![live, muted, vp8])
    });
}

#[test]
fn preflight_api_refusals_and_an_idle_conference() {
    run(
        "preflight_api_refusals_and_an_idle_conference",
        Weight::Light,
        |ctx| {
            let demo = Demo::without_source(ctx)?;
            let http = Http::new(&demo.info.http_base)?;
            let path = format!("/api/v1/conferences/{}/preflight", demo.info.conference);
            // Nothing published: live false, every check unknown.
            let v = preflight(&demo)?;
            ensure!(v["live"] == false, "an idle conference: {v}");
            ensure!(
                statuses(&v).values().all(|s| s == "unknown"),
                "an idle conference's checks are all unknown: {v}"
            );
            // Without the admin token, with a viewer token, with a wrong one: 401, bilingual.
            for token in [None, Some(demo.info.viewer_token.as_str()), Some("wrong")] {
                let a = http.get(&path, token)?;
                ensure!(a.status == 401, "token {token:?}: {} {}", a.status, a.body);
                let msg = a.json()?["message"].as_str().unwrap_or("").to_string();
                ensure!(
                    msg.contains("mã quản trị") && msg.contains("admin token"),
                    "the refusal says why in Vietnamese and English: {msg:?}"
                );
            }
            // An unknown conference: 404.
            let a = http.get(
                "/api/v1/conferences/khong-co/preflight",
                Some(&admin_token(&demo)?),
            )?;
            ensure!(
                a.status == 404,
                "unknown conference: {} {}",
                a.status,
                a.body
            );
            ensure!(a.body.contains("khong-co"), "{}", a.body);
            Ok(())
        },
    );
}
