//! Recording each broadcast (issue 15, part 2) end to end: `hallcast demo` with its built-in
//! source (a live OpenH264 encode and Opus over WHIP and real UDP) broadcasts, the broadcast
//! is ended through the API (`POST /api/v1/conferences/{id}/end`), and the recording must be
//! listed (`GET /api/v1/recordings`), download (`GET /api/v1/recordings/{id}`), show both
//! tracks in `ffprobe` with a duration within 1 s of the broadcast's (as the attendance
//! ledger measured it, independently of the recorder), and decode with
//! `ffmpeg -v error … -f null -` without a word. Reopening the conference brings the source
//! back: a second broadcast, a second file. The attendance report links both (the API's, and
//! `hallcast report` on the relay's host, with the files' paths).
//!
//! The limits and a crash: with `recording.max_bytes = 1`, a finished broadcast deletes the
//! older one (never the newest); the relay killed with SIGKILL mid-broadcast leaves a file
//! that ffprobe opens and ffmpeg decodes without error, listed as `interrupted` after a
//! restart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::admin::Admin;
use hallcast_tests::{Ctx, Demo, DemoOptions, Weight, hallcast_bin, run};
use serde_json::{Value, json};

/// How long a broadcast lasts before the test ends it.
const BROADCAST: Duration = Duration::from_secs(6);
/// The tolerance between a recording's duration and its broadcast's.
const TOLERANCE_S: f64 = 1.0;

fn recordings(admin: &Admin, conference: &str) -> Result<Vec<Value>> {
    let v = admin.get(&format!("/api/v1/recordings?conference={conference}"))?;
    ensure!(v["enabled"] == json!(true), "recording is off: {v}");
    Ok(v["recordings"].as_array().cloned().unwrap_or_default())
}

/// Polls until `f` answers `Some` (or fails after `within`).
fn wait_for<T>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(x) = f()? {
            return Ok(x);
        }
        if start.elapsed() > within {
            bail!("{what}: not within {within:?}");
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// The recording of `conference` in `state` whose id is not in `except`.
fn wait_recording(
    admin: &Admin,
    conference: &str,
    state: &str,
    except: &[String],
    within: Duration,
) -> Result<Value> {
    wait_for(&format!("a recording {state}"), within, || {
        Ok(recordings(admin, conference)?.into_iter().find(|r| {
            r["state"] == json!(state)
                && !except.iter().any(|e| r["id"].as_str() == Some(e.as_str()))
        }))
    })
}

fn end(admin: &Admin, conference: &str) -> Result<()> {
    admin.post(
        &format!("/api/v1/conferences/{conference}/end"),
        json!({}),
        &[200],
    )?;
    Ok(())
}

fn reopen(admin: &Admin, conference: &str) -> Result<()> {
    admin.post(
        &format!("/api/v1/conferences/{conference}/reopen"),
        json!({}),
        &[200],
    )?;
    Ok(())
}

/// Downloads a recording into the test's directory; checks the headers and the size listed.
fn download(admin: &Admin, rec: &Value, dir: &Path) -> Result<PathBuf> {
    let url = rec["download_url"].as_str().context("download_url")?;
    let r = reqwest::blocking::Client::new()
        .get(url)
        .bearer_auth(&admin.token)
        .send()?;
    ensure!(r.status().as_u16() == 200, "GET {url} → {}", r.status());
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    ensure!(
        header("content-type") == "video/x-matroska",
        "{}",
        header("content-type")
    );
    let file_name = rec["file_name"].as_str().context("file_name")?;
    ensure!(
        header("content-disposition") == format!("attachment; filename=\"{file_name}\""),
        "{}",
        header("content-disposition")
    );
    let bytes = r.bytes()?;
    ensure!(
        Some(bytes.len() as u64) == rec["bytes"].as_u64(),
        "downloaded {} bytes, listed {}",
        bytes.len(),
        rec["bytes"]
    );
    let path = dir.join(file_name);
    std::fs::write(&path, &bytes)?;
    Ok(path)
}

/// What ffprobe says of a file: its streams (type, codec), its duration in seconds, its JSON.
type Probed = (Vec<(String, String)>, Option<f64>, Value);

fn probe(path: &Path) -> Result<Probed> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:format_tags:stream=codec_type,codec_name",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .context("ffprobe (scripts/install-test-deps.sh installs ffmpeg)")?;
    ensure!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let streams = v["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap_or("").to_string(),
                s["codec_name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok());
    Ok((streams, duration, v))
}

/// Decodes every frame of both tracks: ffmpeg must say nothing at `-v error`. Returns the
/// number of video frames decoded.
///
/// `-enc_time_base -1` keeps the file's own time base (1 ms) for the null output. Without it
/// ffmpeg 5.1 converts each frame's time to a tick of the frame rate it guessed (1/29.97 s),
/// and a browser's variable frame spacing (capture times: two frames 20 ms apart after a late
/// one) lands two frames on one tick, which the null muxer reports as "non monotonically
/// increasing dts" — about the conversion, not the file: the frames are in order, each decodes.
fn decode(path: &Path) -> Result<u64> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-enc_time_base", "-1", "-f", "null", "-"])
        .output()
        .context("ffmpeg")?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && err.trim().is_empty(),
        "ffmpeg -v error decoding {}: {err}",
        path.display()
    );
    let frames = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()?;
    let n = String::from_utf8_lossy(&frames.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    Ok(n)
}

/// The broadcast intervals the attendance ledger recorded (start_ms, end_ms).
fn live_intervals(report: &Value) -> Vec<(i64, i64)> {
    report["broadcast"]["live"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|i| Some((i["start_ms"].as_i64()?, i["end_ms"].as_i64()?)))
        .collect()
}

/// A downloaded recording: both tracks, its duration within 1 s of its broadcast's (the
/// ledger's interval that overlaps it), every frame decodes.
fn check_file(path: &Path, rec: &Value, report: &Value) -> Result<f64> {
    let (streams, duration, v) = probe(path)?;
    ensure!(
        streams
            == [
                ("video".to_string(), "h264".to_string()),
                ("audio".to_string(), "opus".to_string())
            ],
        "{}: streams {streams:?}",
        path.display()
    );
    let tags = &v["format"]["tags"];
    ensure!(tags["CONFERENCE_ID"] == rec["conference"], "tags {tags}");
    ensure!(tags["CONFERENCE_NAME"].is_string(), "tags {tags}");
    ensure!(tags["BROADCAST_START"].is_string(), "tags {tags}");
    let duration = duration.context("no duration in a finished recording")?;
    let start = rec["start_ms"].as_i64().context("start_ms")?;
    let end = rec["end_ms"].as_i64().context("end_ms")?;
    let (ls, le) = live_intervals(report)
        .into_iter()
        .find(|(s, e)| *s < end && *e > start)
        .with_context(|| {
            format!(
                "no broadcast in the report overlaps the recording: {}",
                report["broadcast"]
            )
        })?;
    let live_s = (le - ls) as f64 / 1000.0;
    ensure!(
        (duration - live_s).abs() <= TOLERANCE_S,
        "{}: duration {duration:.2} s, the broadcast lasted {live_s:.2} s",
        path.display()
    );
    let frames = decode(path)?;
    // The source sends 30 fps; at least half of them, over the broadcast.
    ensure!(
        frames as f64 >= live_s * 15.0,
        "{frames} video frames in {live_s:.1} s"
    );
    eprintln!(
        "recording {}: {duration:.2} s (broadcast {live_s:.2} s), {frames} frames, {} bytes",
        rec["id"], rec["bytes"]
    );
    Ok(duration)
}

#[test]
fn each_broadcast_is_recorded_listed_downloaded_and_decodes() {
    run("recording", Weight::Heavy, |ctx: &Ctx| {
        let demo = Demo::start(ctx, DemoOptions::default())?;
        let admin = Admin::new(&demo.info)?;
        let conf = demo.info.conference.clone();
        // First broadcast.
        let first = wait_recording(&admin, &conf, "recording", &[], Duration::from_secs(30))?;
        thread::sleep(BROADCAST);
        end(&admin, &conf)?;
        let first_id = first["id"].as_str().context("id")?.to_string();
        let first = wait_for(
            "the first recording complete",
            Duration::from_secs(15),
            || {
                Ok(recordings(&admin, &conf)?.into_iter().find(|r| {
                    r["id"].as_str() == Some(&first_id) && r["state"] == json!("complete")
                }))
            },
        )?;
        // Second broadcast: the source comes back when the conference reopens.
        reopen(&admin, &conf)?;
        wait_recording(
            &admin,
            &conf,
            "recording",
            std::slice::from_ref(&first_id),
            Duration::from_secs(30),
        )?;
        thread::sleep(BROADCAST);
        end(&admin, &conf)?;
        let second = wait_recording(
            &admin,
            &conf,
            "complete",
            std::slice::from_ref(&first_id),
            Duration::from_secs(15),
        )?;
        let listed = recordings(&admin, &conf)?;
        ensure!(
            listed.len() == 2,
            "two broadcasts, two recordings: {listed:?}"
        );
        ensure!(first["file_name"] != second["file_name"]);
        let report = admin.get(&format!("/api/v1/conferences/{conf}/report?format=json"))?;
        ensure!(
            live_intervals(&report).len() == 2,
            "{}",
            report["broadcast"]
        );
        for rec in [&first, &second] {
            let path = download(&admin, rec, ctx.dir())?;
            check_file(&path, rec, &report)?;
        }
        // The report links each broadcast's recording, oldest first.
        let linked: Vec<&str> = report["recordings"]
            .as_array()
            .context("report.recordings")?
            .iter()
            .filter_map(|r| r["url"].as_str())
            .collect();
        let urls: Vec<&str> = [&first, &second]
            .iter()
            .filter_map(|r| r["download_url"].as_str())
            .collect();
        ensure!(
            linked == urls,
            "report links {linked:?}, recordings {urls:?}"
        );
        let html = admin.http.get(
            &format!("/api/v1/conferences/{conf}/report?format=html"),
            Some(&admin.token),
        )?;
        ensure!(
            urls.iter().all(|u| html.body.contains(u)),
            "the HTML report does not link the recordings"
        );
        let csv = admin.http.get(
            &format!("/api/v1/conferences/{conf}/report?format=csv"),
            Some(&admin.token),
        )?;
        let csv_links: Vec<&str> = csv
            .body
            .lines()
            .filter(|l| l.starts_with("Bản ghi,"))
            .filter_map(|l| l.rsplit(',').find(|c| c.starts_with("http")))
            .collect();
        ensure!(
            csv_links == urls,
            "the CSV report links {csv_links:?}, recordings {urls:?}"
        );
        // `hallcast report` on the relay's host links the files themselves.
        let out = Command::new(hallcast_bin()?)
            .args([
                "report",
                "--conference",
                &conf,
                "--format",
                "json",
                "--data-dir",
            ])
            .arg(demo.data_dir())
            .output()?;
        ensure!(
            out.status.success(),
            "hallcast report: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli: Value = serde_json::from_slice(&out.stdout)?;
        let files: Vec<String> = cli["recordings"]
            .as_array()
            .context("hallcast report: recordings")?
            .iter()
            .filter_map(|r| {
                r["url"]
                    .as_str()?
                    .strip_prefix("file://")
                    .map(str::to_string)
            })
            .collect();
        ensure!(files.len() == 2, "hallcast report links {files:?}");
        for (f, rec) in files.iter().zip([&first, &second]) {
            ensure!(
                f.ends_with(rec["file_name"].as_str().unwrap_or("?")) && Path::new(f).exists(),
                "hallcast report links {f} for {}",
                rec["file_name"]
            );
        }
        Ok(())
    });
}

#[test]
fn the_size_limit_deletes_the_oldest_and_a_killed_relay_leaves_a_playable_file() {
    run("recording-limits", Weight::Heavy, |ctx: &Ctx| {
        let data_dir = ctx.dir().join("data");
        let opts = DemoOptions {
            data_dir: Some(data_dir.clone()),
            set: vec!["recording.max_bytes=1".into()],
            ..Default::default()
        };
        let mut demo = Demo::start(ctx, opts.clone())?;
        let admin = Admin::new(&demo.info)?;
        let conf = demo.info.conference.clone();
        let first = wait_recording(&admin, &conf, "recording", &[], Duration::from_secs(30))?;
        let first_id = first["id"].as_str().context("id")?.to_string();
        thread::sleep(Duration::from_secs(3));
        end(&admin, &conf)?;
        wait_recording(&admin, &conf, "complete", &[], Duration::from_secs(15))?;
        reopen(&admin, &conf)?;
        let second = wait_recording(
            &admin,
            &conf,
            "recording",
            std::slice::from_ref(&first_id),
            Duration::from_secs(30),
        )?;
        let second_id = second["id"].as_str().context("id")?.to_string();
        // While the second records, the first (the newest finished one) is kept.
        ensure!(recordings(&admin, &conf)?.len() == 2);
        thread::sleep(Duration::from_secs(3));
        end(&admin, &conf)?;
        // The second finished: the total is over the limit, the oldest goes. The listing
        // hides a recording once its media file is gone, a moment before the recorder's
        // thread counts the deletion: wait for both.
        let mut metrics = String::new();
        let kept = wait_for(
            "the oldest recording deleted and counted",
            Duration::from_secs(15),
            || {
                let l = recordings(&admin, &conf)?;
                metrics = admin.http.get("/metrics", None)?.body;
                let counted = metrics
                    .lines()
                    .any(|l| l == "hallcast_recordings_deleted_total 1");
                Ok((l.len() == 1 && l[0]["state"] == json!("complete") && counted).then_some(l))
            },
        )
        .with_context(|| {
            format!(
                "/metrics: {}",
                metrics
                    .lines()
                    .filter(|l| l.contains("recording"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        ensure!(
            kept[0]["id"].as_str() == Some(second_id.as_str()),
            "kept {kept:?}"
        );
        // A third broadcast, cut short by SIGKILL.
        reopen(&admin, &conf)?;
        let third = wait_recording(
            &admin,
            &conf,
            "recording",
            std::slice::from_ref(&second_id),
            Duration::from_secs(30),
        )?;
        thread::sleep(Duration::from_secs(4));
        demo.kill()?;
        let file = data_dir
            .join("recordings")
            .join(&conf)
            .join(third["file_name"].as_str().context("file_name")?);
        let (streams, _, _) = probe(&file)?;
        ensure!(streams.len() == 2, "the cut file has {streams:?}");
        let frames = decode(&file)?;
        ensure!(frames >= 30, "{frames} frames decoded from the cut file");
        eprintln!(
            "killed mid-broadcast: {frames} frames decode from {}",
            file.display()
        );
        // After a restart it is listed as interrupted (and the limit, applied at start,
        // keeps it: the newest finished one).
        let demo = Demo::start(
            ctx,
            DemoOptions {
                tag: Some("restarted".into()),
                ..opts
            },
        )?;
        let admin = Admin::new(&demo.info)?;
        let third_id = third["id"].as_str().context("id")?;
        let listed = recordings(&admin, &conf)?;
        let cut = listed
            .iter()
            .find(|r| r["id"].as_str() == Some(third_id))
            .with_context(|| format!("the cut recording is not listed: {listed:?}"))?;
        ensure!(cut["state"] == json!("interrupted"), "{cut}");
        ensure!(
            !listed
                .iter()
                .any(|r| r["id"].as_str() == Some(second_id.as_str())),
            "the older complete one is deleted at start: {listed:?}"
        );
        Ok(())
    });
}

/// A browser publisher's broadcast (its WHIP session just ended, `codec` "vp8" or "h264") was
/// recorded: listed complete, in WebM for VP8 and Matroska for H.264, with that codec and
/// Opus, decoding without an error. Called by the Chromium publishing tests.
pub(crate) fn check_browser_recording(info: &hallcast_tests::Info, codec: &str) -> Result<()> {
    let admin = Admin::new(info)?;
    let rec = wait_recording(
        &admin,
        &info.conference,
        "complete",
        &[],
        Duration::from_secs(15),
    )?;
    let (container, content_type) = if codec == "vp8" {
        ("webm", "video/webm")
    } else {
        ("mkv", "video/x-matroska")
    };
    ensure!(
        rec["container"] == json!(container) && rec["content_type"] == json!(content_type),
        "{rec}"
    );
    let url = rec["download_url"].as_str().context("download_url")?;
    let bytes = reqwest::blocking::Client::new()
        .get(url)
        .bearer_auth(&admin.token)
        .send()?
        .error_for_status()?
        .bytes()?;
    let path = std::env::temp_dir().join(format!(
        "hallcast-browser-recording-{}.{container}",
        std::process::id()
    ));
    std::fs::write(&path, &bytes)?;
    let checked = (|| {
        let (streams, duration, _) = probe(&path)?;
        ensure!(
            streams
                == [
                    ("video".to_string(), codec.to_string()),
                    ("audio".to_string(), "opus".to_string())
                ],
            "streams {streams:?}"
        );
        let frames = decode(&path)?;
        ensure!(frames > 0, "no video frame decoded");
        eprintln!(
            "browser recording ({codec}): {:.1} s, {frames} frames, {} bytes",
            duration.unwrap_or(0.0),
            bytes.len()
        );
        Ok(())
    })();
    if checked.is_ok() {
        let _ = std::fs::remove_file(&path);
    }
    checked
}

/// The frames of a file's video track as ffprobe decodes them: (width, time in seconds).
fn video_frames(path: &Path) -> Result<Vec<(u32, f64)>> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=width,best_effort_timestamp_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .context("ffprobe")?;
    ensure!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split(',').map(str::trim);
            // ffprobe writes the entries in its own order: the time, then the width.
            let t = f.next().and_then(|t| t.parse().ok());
            let width = f.next().and_then(|w| w.parse().ok());
            width
                .zip(t)
                .with_context(|| format!("ffprobe's frame line {l:?} of {}", path.display()))
        })
        .collect()
}

/// A Chromium simulcast publisher (1280×720, 640×360, 320×180) stops sending its top layer for
/// 6 s mid-broadcast, as an encoder shedding it under load does: the recording goes on with the
/// 640×360 layer from its keyframe and returns to 1280×720 — the picture pauses only as long as
/// a viewer's does (the recorder is a viewer of the producer), every frame decodes.
#[test]
fn a_simulcast_publisher_shedding_its_top_layer_is_recorded_without_a_gap() {
    run(
        "a_simulcast_publisher_shedding_its_top_layer_is_recorded_without_a_gap",
        Weight::Heavy,
        |ctx: &Ctx| {
            let demo = Demo::without_source(ctx)?;
            let info = &demo.info;
            let mut publisher = hallcast_tests::Client::start(
                ctx,
                hallcast_tests::ClientKind::Browser,
                "whip_publish.mjs",
                &[
                    "--url",
                    &info.whip_url,
                    "--key",
                    &info.stream_key,
                    "--codec",
                    "h264",
                    "--simulcast",
                    "--duration",
                    "60",
                    "--shed-top",
                    "6:6",
                ]
                .map(String::from),
            )?;
            crate::util::expect_published(&mut publisher, "Chromium's simulcast WHIP offer")?;
            publisher.wait_for("the top layer shed", Duration::from_secs(30), |e| {
                e["event"] == "shed"
            })?;
            publisher.wait_for("the top layer restored", Duration::from_secs(30), |e| {
                e["event"] == "restored"
            })?;
            thread::sleep(Duration::from_secs(6));
            publisher.stop()?;
            let admin = Admin::new(info)?;
            let rec = wait_recording(
                &admin,
                &info.conference,
                "complete",
                &[],
                Duration::from_secs(15),
            )?;
            let path = download(&admin, &rec, ctx.dir())?;
            let frames = decode(&path)?;
            let seen = video_frames(&path)?;
            ensure!(
                seen.len() as u64 == frames && frames > 300,
                "{frames} frames decoded, {} listed",
                seen.len()
            );
            let widths: std::collections::BTreeSet<u32> = seen.iter().map(|f| f.0).collect();
            ensure!(
                widths.contains(&1280) && widths.contains(&640),
                "the recording should hold the top layer and, while it was shed, the middle one: widths {widths:?}"
            );
            ensure!(
                seen.first().map(|f| f.0) == Some(1280) && seen.last().map(|f| f.0) == Some(1280),
                "the recording starts and ends on the top layer: {:?} … {:?}",
                seen.first(),
                seen.last()
            );
            let gap = seen
                .windows(2)
                .map(|w| w[1].1 - w[0].1)
                .fold(0.0_f64, f64::max);
            let n_640 = seen.iter().filter(|f| f.0 == 640).count();
            eprintln!(
                "shed top layer: {frames} frames, widths {widths:?}, {n_640} frames at 640, longest gap {gap:.3} s"
            );
            // A layer counts as stopped after 1.5 s of silence (the producer's
            // LAYER_INACTIVE_AFTER: a low-rate layer must not flap), then the middle layer's
            // keyframe is asked for: ~1.9 s here, what a viewer of the top layer sees too.
            // Recording the top layer only, the picture would stop for the whole 6 s.
            ensure!(
                gap < 3.0,
                "the picture stopped for {gap:.2} s in the recording while the top layer was shed"
            );
            Ok(())
        },
    );
}
