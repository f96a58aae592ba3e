//! SRT ingest (issue 15): a real ffmpeg pushes MPEG-TS over SRT (caller mode, the `srt_url` of
//! `hallcast demo --info-file`, the way a hall encoder is set up) to `hallcast demo --no-source`;
//! real Chromium viewer pages and a real aiortc player decode the video and the audio. The stream
//! key is checked, garbage on the SRT port and a stream that is not MPEG-TS are dropped with a log
//! line while the listener keeps serving, and an HEVC encoder is refused with a line naming the
//! codec.

use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::admin::Admin;
use hallcast_tests::ffmpeg;
use hallcast_tests::proc::Proc;
use hallcast_tests::results::{self, PlayResult, ensure_pages_playing};
use hallcast_tests::{Ctx, Demo, Weight, run};

// The e2e binary's client helpers (viewer pages, aiortc player), shared rather than copied; this
// binary uses only some of them.
#[path = "util.rs"]
#[allow(dead_code)]
mod util;

use util::{aiortc_player, viewer_pages};

/// Frames every viewer must decode.
const MIN_FRAMES: u64 = 60;

/// How the test encoder encodes: what a hall encoder set up for WebRTC sends (H.264 without
/// B-frames, a keyframe every 2 s, AAC).
const H264_AAC: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-tune",
    "zerolatency",
    "-bf",
    "0",
    "-g",
    "60",
    "-pix_fmt",
    "yuv420p",
    "-c:a",
    "aac",
    "-b:a",
    "64k",
];

/// ffmpeg sending a test pattern and a tone, encoded with `codec_args`, as MPEG-TS (or
/// `format`) to `url` in real time for `seconds`. Its output goes to `<tag>.log` in the scratch
/// directory (shown if the test fails).
fn ffmpeg_push(
    ctx: &Ctx,
    tag: &str,
    url: &str,
    codec_args: &[&str],
    format: &str,
    seconds: u32,
) -> Result<(Proc, PathBuf)> {
    let seconds = seconds.to_string();
    let mut args = vec!["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"];
    args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    args.extend(["-map", "0:v", "-map", "1:a"]);
    args.extend_from_slice(codec_args);
    args.extend(["-t", &seconds, "-f", format, url]);
    ffmpeg::spawn(ctx, tag, &args)
}

/// ffmpeg sending raw PCM (not MPEG-TS) over SRT.
fn ffmpeg_push_pcm(ctx: &Ctx, url: &str) -> Result<(Proc, PathBuf)> {
    let args = [
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=sample_rate=48000",
        "-t",
        "30",
        "-f",
        "s16le",
        url,
    ];
    ffmpeg::spawn(ctx, "ffmpeg-pcm", &args)
}

/// The demo's `srt_url` and the UDP address it names.
fn srt_url(demo: &Demo) -> Result<(String, String)> {
    let url = demo.info.key("srt_url")?;
    let rest = url
        .strip_prefix("srt://")
        .with_context(|| format!("srt_url {url} is not srt://"))?;
    let addr = rest.split('?').next().unwrap_or(rest).to_string();
    ensure!(
        url.contains("streamid=") && url.contains(&demo.info.stream_key),
        "srt_url {url} does not carry the stream key in its streamid"
    );
    Ok((url, addr))
}

/// The same URL with another streamid.
fn with_streamid(addr: &str, streamid: &str) -> String {
    format!("srt://{addr}?streamid={streamid}")
}

/// Waits until the relay's log has a line containing every one of `needles`.
fn wait_log(log: &Path, needles: &[&str], timeout: Duration) -> Result<String> {
    let t0 = Instant::now();
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return Ok(line.to_string());
        }
        if t0.elapsed() > timeout {
            bail!(
                "no log line with {needles:?} within {timeout:?} in {}",
                log.display()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn count_lines(log: &Path, needle: &str) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

fn start_demo(ctx: &Ctx) -> Result<(Demo, PathBuf)> {
    let demo = Demo::without_source(ctx)?;
    let log = demo.log_path().to_path_buf();
    Ok((demo, log))
}

/// ffmpeg → SRT → relay → Chromium's viewer page and aiortc, both decoding video and audio.
#[test]
fn srt_push_plays_in_chromium_and_aiortc() {
    run(
        "srt_push_plays_in_chromium_and_aiortc",
        Weight::Heavy,
        |ctx| {
            let (mut demo, log) = start_demo(ctx)?;
            let (url, _) = srt_url(&demo)?;
            let (mut ff, ff_log) = ffmpeg_push(ctx, "ffmpeg", &url, H264_AAC, "mpegts", 120)?;
            wait_log(
                &log,
                &["SRT ingest: encoder connected", &demo.info.conference],
                Duration::from_secs(20),
            )?;
            let mut pages =
                viewer_pages(ctx, &demo.info.viewer_url, 1, 60, MIN_FRAMES as u32, &[])?;
            let mut player = aiortc_player(ctx, &demo.info, 60, MIN_FRAMES as u32)?;
            let pages = results::pages(&pages.result(Duration::from_secs(100))?)?;
            let played: PlayResult =
                results::parse("aiortc player", &player.result(Duration::from_secs(100))?)?;
            demo.ensure_running()?;
            ensure!(
                ff.try_wait()?.is_none(),
                "ffmpeg stopped sending before the viewers were done; its output:\n{}",
                fs::read_to_string(&ff_log).unwrap_or_default()
            );
            ensure_pages_playing(&pages, MIN_FRAMES)?;
            ensure!(
                pages[0]
                    .video_codec
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case("video/H264")),
                "the viewer page decoded {:?}, expected H.264 passed through",
                pages[0].video_codec
            );
            played.ensure_played("aiortc playing the SRT feed", MIN_FRAMES)?;
            ensure!(
                played.video_codec.as_deref() == Some("H264")
                    && played.audio_codec.as_deref() == Some("opus"),
                "aiortc got {:?} + {:?}, expected H264 + opus (AAC transcoded)",
                played.video_codec,
                played.audio_codec
            );
            // The encoder leaves: its feed ends and the conference is free again.
            ff.terminate(Duration::from_secs(5));
            wait_log(
                &log,
                &["SRT ingest: the encoder disconnected"],
                Duration::from_secs(15),
            )?;
            wait_log(&log, &["ingest feed ended"], Duration::from_secs(10))?;
            demo.ensure_running()
        },
    );
}

/// A wrong key, a streamid this relay cannot read and a `request` (playback) mode are rejected in
/// the SRT handshake, each with a log line saying why; the conference stays free. The operator
/// API lists the conference's `srt_url` as the info file does.
#[test]
fn srt_wrong_key_is_refused() {
    run("srt_wrong_key_is_refused", Weight::Heavy, |ctx| {
        let (mut demo, log) = start_demo(ctx)?;
        let (_, addr) = srt_url(&demo)?;
        let conference = demo.info.conference.clone();
        let cases = [
            (
                format!("#!::r={conference},m=publish,u=not-the-key"),
                format!("SRT ingest refused: wrong stream key for conference {conference}"),
            ),
            (
                format!("{conference}/not-the-key"),
                format!("SRT ingest refused: wrong stream key for conference {conference}"),
            ),
            (
                "just-a-name".to_string(),
                "SRT ingest refused: streamid \"just-a-name\" is neither".to_string(),
            ),
            (
                format!("#!::r={conference},m=request,u={}", demo.info.stream_key),
                "SRT ingest refused: mode m=request".to_string(),
            ),
        ];
        for (i, (streamid, line)) in cases.iter().enumerate() {
            let before = count_lines(&log, line);
            let (mut ff, ff_log) = ffmpeg_push(
                ctx,
                &format!("ffmpeg-refused-{i}"),
                &with_streamid(&addr, streamid),
                H264_AAC,
                "mpegts",
                20,
            )?;
            ffmpeg::expect_refused(&mut ff, &ff_log, Duration::from_secs(15), streamid)?;
            let ff_out = fs::read_to_string(&ff_log).unwrap_or_default();
            ensure!(
                ff_out.contains("REJECT") || ff_out.contains("failed"),
                "ffmpeg with streamid {streamid} was not told it was rejected:\n{ff_out}"
            );
            let t0 = Instant::now();
            while count_lines(&log, line) <= before {
                ensure!(
                    t0.elapsed() < Duration::from_secs(5),
                    "no new log line {line:?} for streamid {streamid}"
                );
                thread::sleep(Duration::from_millis(100));
            }
        }
        ensure!(
            count_lines(&log, "SRT ingest: encoder connected") == 0,
            "a refused encoder was connected"
        );
        // The operator console's conference details carry the same URL, key included.
        let (url, _) = srt_url(&demo)?;
        let details: serde_json::Value = reqwest::blocking::Client::new()
            .get(demo.info.url(&format!("/api/v1/conferences/{conference}")))
            .bearer_auth(demo.info.key("admin_token")?)
            .send()?
            .error_for_status()?
            .json()?;
        ensure!(
            details["srt_url"] == url.as_str(),
            "the conference's srt_url is {}, the demo's {url}",
            details["srt_url"]
        );
        demo.ensure_running()
    });
}

/// Garbage datagrams on the SRT port and an SRT stream that is not MPEG-TS are dropped with
/// log lines; the listener keeps serving: a good push then plays.
#[test]
fn srt_garbage_then_a_good_push_plays() {
    run("srt_garbage_then_a_good_push_plays", Weight::Heavy, |ctx| {
        let (mut demo, log) = start_demo(ctx)?;
        let (url, addr) = srt_url(&demo)?;
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        let mut x: u32 = 0x9e37_79b9;
        for i in 0..200usize {
            let datagram: Vec<u8> = (0..(20 + i * 7) % 1400)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            sock.send_to(&datagram, &addr)?;
        }
        sock.send_to(b"GET / HTTP/1.1\r\n\r\n", &addr)?;
        let line = wait_log(
            &log,
            &["datagrams that are not SRT dropped on the SRT port"],
            Duration::from_secs(10),
        )?;
        eprintln!("relay: {line}");

        // SRT carrying raw PCM: accepted by key, then dropped as not MPEG-TS.
        let (mut pcm, pcm_log) = ffmpeg_push_pcm(ctx, &url)?;
        wait_log(
            &log,
            &["SRT ingest refused: not MPEG-TS"],
            Duration::from_secs(15),
        )?;
        ffmpeg::expect_refused(
            &mut pcm,
            &pcm_log,
            Duration::from_secs(15),
            "raw PCM over SRT",
        )?;
        wait_log(&log, &["ingest feed ended"], Duration::from_secs(10))?;

        let (mut ff, ff_log) = ffmpeg_push(ctx, "ffmpeg", &url, H264_AAC, "mpegts", 90)?;
        let mut player = aiortc_player(ctx, &demo.info, 60, MIN_FRAMES as u32)?;
        let played: PlayResult =
            results::parse("aiortc player", &player.result(Duration::from_secs(90))?)?;
        demo.ensure_running()?;
        ensure!(
            ff.try_wait()?.is_none(),
            "ffmpeg stopped before the player was done; its output:\n{}",
            fs::read_to_string(&ff_log).unwrap_or_default()
        );
        played.ensure_played("aiortc playing the SRT feed after the garbage", MIN_FRAMES)?;
        ff.terminate(Duration::from_secs(5));
        demo.ensure_running()
    });
}

/// `conference`'s pre-flight answer (admin token).
fn preflight(admin: &Admin, conference: &str) -> Result<serde_json::Value> {
    admin.get(&format!("/api/v1/conferences/{conference}/preflight"))
}

/// Polls `conference`'s pre-flight answer until `ok`; fails with the last answer.
fn wait_preflight(
    admin: &Admin,
    conference: &str,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let t0 = Instant::now();
    loop {
        let v = preflight(admin, conference)?;
        if ok(&v) {
            return Ok(v);
        }
        if t0.elapsed() > timeout {
            bail!(
                "{conference}'s pre-flight answer: expected {what} within {timeout:?}; last: {v}"
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// An HEVC encoder (right key) is dropped with a log line naming the codec, and its feed is
/// ended, so an H.264 encoder is taken right after. The refusal shows in the conference's
/// pre-flight answer (`ingest_problem`, SRT, naming HEVC), not in another conference's, and
/// the H.264 push that is taken clears it (its answer then says `protocol` SRT).
#[test]
fn srt_hevc_is_refused() {
    run("srt_hevc_is_refused", Weight::Heavy, |ctx| {
        let (mut demo, log) = start_demo(ctx)?;
        let (url, _) = srt_url(&demo)?;
        let admin = Admin::new(&demo.info)?;
        let conference = demo.info.conference.clone();
        admin.post(
            "/api/v1/conferences",
            serde_json::json!({"id": "hn-khac", "title": "Hội nghị khác"}),
            &[201],
        )?;
        let hevc = [
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ];
        let (mut ff, ff_log) = ffmpeg_push(ctx, "ffmpeg-hevc", &url, &hevc, "mpegts", 30)?;
        let line = wait_log(
            &log,
            &["SRT ingest refused: unsupported codec HEVC (H.265)"],
            Duration::from_secs(20),
        )?;
        eprintln!("relay: {line}");
        ffmpeg::expect_refused(&mut ff, &ff_log, Duration::from_secs(15), "an HEVC encoder")?;
        wait_log(&log, &["ingest feed ended"], Duration::from_secs(10))?;
        let refused = wait_preflight(
            &admin,
            &conference,
            Duration::from_secs(10),
            "an SRT ingest_problem naming HEVC",
            |v| {
                let p = &v["ingest_problem"];
                p["protocol"] == "SRT"
                    && p["message_vi"].as_str().is_some_and(|m| {
                        m.starts_with("Bộ mã hoá SRT bị từ chối: codec không hỗ trợ")
                    })
                    && p["message_en"].as_str().is_some_and(|m| m.contains("HEVC"))
            },
        )?;
        eprintln!("pre-flight: {}", refused["ingest_problem"]);
        let other = preflight(&admin, "hn-khac")?;
        ensure!(
            other["ingest_problem"].is_null(),
            "another conference shows the refusal: {other}"
        );

        let (mut ff, _) = ffmpeg_push(ctx, "ffmpeg-h264", &url, H264_AAC, "mpegts", 30)?;
        let t0 = Instant::now();
        while count_lines(&log, "SRT ingest: encoder connected") < 2 {
            ensure!(
                t0.elapsed() < Duration::from_secs(20),
                "the H.264 encoder after the HEVC one was not taken (the HEVC feed still holds the conference?)"
            );
            thread::sleep(Duration::from_millis(100));
        }
        wait_preflight(
            &admin,
            &conference,
            Duration::from_secs(20),
            "live over SRT with keyframe_requests listed, the refusal cleared",
            |v| {
                v["live"] == true
                    && v["protocol"] == "SRT"
                    && v["ingest_problem"].is_null()
                    && v["checks"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c["id"] == "keyframe_requests"))
            },
        )?;
        ff.terminate(Duration::from_secs(5));
        demo.ensure_running()
    });
}
