//! RTMP ingest (issue 15): a real ffmpeg pushes a test pattern with AAC audio over RTMP to
//! `hallcast demo --no-source`; the relay publishes it to itself over WHIP (hallcast-ingest) and
//! headless Chromium and aiortc play it. Wrong keys, unsupported codecs, truncated handshakes
//! and garbage are refused with a log line, and the listener keeps serving.
//!
//! | test | shows |
//! |---|---|
//! | `rtmp_push_plays_in_chromium_and_aiortc` | ffmpeg (H.264 + AAC 44.1 kHz) → RTMP → the viewer page and an aiortc WHEP player decode video at 640x360 and play non-silent Opus audio; a screenshot of the page is kept |
//! | `rtmp_wrong_key_or_conference_is_refused` | a wrong stream key and an unknown conference: ffmpeg fails, the relay logs the refusal, nothing goes live; the conference API's `rtmp_url` (operator console) |
//! | `rtmp_unsupported_codecs_are_refused_by_name` | Sorenson H.263 (`-c:v flv1`) and MP3 audio: the log names the codec, the connection is closed, while another conference's push stays on the air; B-frames (`-bf 2`) are carried with a warning line |
//! | `rtmp_bad_handshakes_do_not_stop_a_good_push` | a truncated handshake and garbage: each dropped with a log line; 20 idle connections from one address: 8 kept, 12 closed at once with a log line; a good push from another address that follows plays in aiortc |
//! | `rtmp_ingest_reaches_a_relay_that_announces_a_public_ip` | `--media 0.0.0.0:0 --public-ip 203.0.113.7`: the gateway's WebRTC connection to its own relay still carries the push |
//! | `rtmp_ingest_works_when_the_relay_speaks_https` | `http.tls_cert`/`tls_key` set: the gateway publishes through the relay's loopback plain listener |
//! | `rtmp_preflight_says_keyframe_requests_cannot_reach_the_encoder` | two pushes at once: `-g 150` (5 s GOP) → the pre-flight answer says `protocol` RTMP and lists `keyframe_requests` (in place of `keyframe_interval`) red with the RTMP/SRT advice; `-g 30` → green; no `ingest_problem` |
//!
//! The refusal tests also read the pre-flight answer (`ingest_problem`): a wrong key and a
//! Sorenson H.263 / MP3 push show there for their conference only, and a push that is taken
//! clears it.
//!
//! Needs ffmpeg (Debian's, with libx264 and libmp3lame) besides the e2e prerequisites.

use std::fs;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::adapt::results_dir;
use hallcast_tests::admin::Admin;
use hallcast_tests::ffmpeg;
use hallcast_tests::net::Prng;
use hallcast_tests::proc::Proc;
use hallcast_tests::results::{self, PlayResult, ensure_pages_playing};
use hallcast_tests::{Client, ClientKind, Ctx, Demo, DemoOptions, Info, Weight, run};

// The e2e binary's client helpers (the aiortc player), shared rather than copied; this binary
// uses only some of them.
#[path = "util.rs"]
#[allow(dead_code)]
mod util;

use util::aiortc_player;

/// Video frames every player must decode.
const MIN_FRAMES: u64 = 60;
/// The loudest sample of ffmpeg's `sine` source is 1/8 of full scale; a player that decodes
/// it hears at least this (0 would be silence).
const MIN_AUDIO_PEAK: f64 = 0.03;
/// Chromium's mean audio power (totalAudioEnergy / totalSamplesDuration) of that sine is about
/// 0.125² / 2 ≈ 0.008; silence gives 0.
const MIN_AUDIO_POWER: f64 = 0.0005;

/// The encoder settings of the test: a test pattern and a 440 Hz tone, H.264 without
/// B-frames, keyframes every 2 s, AAC at 96 kbit/s.
const GOOD_VIDEO: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-tune",
    "zerolatency",
    "-bf",
    "0",
    "-g",
    "60",
    "-pix_fmt",
    "yuv420p",
];
const GOOD_AUDIO: &[&str] = &["-c:a", "aac", "-b:a", "96k"];

/// `rtmp_url` of the demo's info file (`rtmp://127.0.0.1:PORT/{conference}/{stream_key}`).
fn rtmp_url(info: &Info) -> Result<String> {
    let url = info.key("rtmp_url")?;
    let expected_tail = format!("/{}/{}", info.conference, info.stream_key);
    ensure!(
        url.starts_with("rtmp://127.0.0.1:") && url.ends_with(&expected_tail),
        "rtmp_url {url:?} is not rtmp://127.0.0.1:PORT{expected_tail}"
    );
    Ok(url)
}

/// `host:port` of an rtmp:// URL.
fn rtmp_addr(url: &str) -> Result<String> {
    let rest = url.strip_prefix("rtmp://").context("not an rtmp:// URL")?;
    Ok(rest.split('/').next().unwrap_or_default().to_string())
}

/// ffmpeg pushing the test pattern and the tone to `url` for `seconds` (in real time), with
/// the given codec arguments; its output goes to `ffmpeg-<tag>.log` in the scratch directory.
fn ffmpeg_push(
    ctx: &Ctx,
    tag: &str,
    url: &str,
    codecs: &[&[&str]],
    seconds: u32,
) -> Result<(Proc, PathBuf)> {
    let seconds = seconds.to_string();
    let mut args = vec!["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"];
    args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]);
    for c in codecs {
        args.extend_from_slice(c);
    }
    args.extend(["-t", &seconds, "-f", "flv", url]);
    ffmpeg::spawn(ctx, &format!("ffmpeg-{tag}"), &args)
}

/// `conference`'s pre-flight answer (admin token).
fn preflight(admin: &Admin, conference: &str) -> Result<serde_json::Value> {
    admin.get(&format!("/api/v1/conferences/{conference}/preflight"))
}

/// One line of a pre-flight answer, by id.
fn check<'a>(v: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    v["checks"].as_array()?.iter().find(|c| c["id"] == id)
}

/// Polls `conference`'s pre-flight answer until `ok`; fails with the last answer.
fn wait_preflight(
    admin: &Admin,
    conference: &str,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = preflight(admin, conference)?;
        if ok(&v) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!(
                "{conference}'s pre-flight answer: expected {what} within {timeout:?}; last: {v}"
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// The refusal the pre-flight answer shows for `conference`: RTMP, its English message
/// containing `needle`, and Vietnamese first.
fn expect_problem(admin: &Admin, conference: &str, needle: &str) -> Result<()> {
    wait_preflight(
        admin,
        conference,
        Duration::from_secs(10),
        &format!("an RTMP ingest_problem mentioning {needle:?}"),
        |v| {
            let p = &v["ingest_problem"];
            p["protocol"] == "RTMP"
                && p["at_ms"].as_i64().is_some_and(|t| t > 0)
                && p["message_vi"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Bộ mã hoá RTMP bị từ chối"))
                && p["message_en"].as_str().is_some_and(|m| m.contains(needle))
        },
    )?;
    Ok(())
}

/// The relay's log so far.
fn demo_log(demo: &Demo) -> String {
    fs::read_to_string(demo.log_path()).unwrap_or_default()
}

/// Waits until the relay's log (without colour codes) contains every one of `needles`.
fn wait_for_log(demo: &Demo, needles: &[&str], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let log = plain_log(demo);
        let missing: Vec<&&str> = needles.iter().filter(|n| !log.contains(**n)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the relay's log has no {missing:?} after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for ffmpeg to exit and fails unless it failed (a refused push).
fn expect_ffmpeg_failed(ffmpeg: &mut Proc, log: &Path, what: &str) -> Result<()> {
    ffmpeg::expect_refused(ffmpeg, log, Duration::from_secs(30), what)
}

fn check_aiortc(played: &PlayResult, what: &str) -> Result<()> {
    played.ensure_played(what, MIN_FRAMES)?;
    ensure!(
        played.video_codec.as_deref() == Some("H264") && played.frame_width == 640,
        "{what}: decoded {:?} at {}x{}, expected the pushed H264 at 640x360",
        played.video_codec,
        played.frame_width,
        played.frame_height
    );
    let peak = played.audio_peak.unwrap_or(0.0);
    ensure!(
        played.audio_codec.as_deref() == Some("opus") && peak >= MIN_AUDIO_PEAK,
        "{what}: audio {:?} with peak {peak}, expected the tone as Opus (peak ≥ {MIN_AUDIO_PEAK})",
        played.audio_codec
    );
    Ok(())
}

#[test]
fn rtmp_push_plays_in_chromium_and_aiortc() {
    run(
        "rtmp_push_plays_in_chromium_and_aiortc",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::without_source(ctx)?;
            let url = rtmp_url(&demo.info)?;
            let (mut ffmpeg, _) = ffmpeg_push(ctx, "good", &url, &[GOOD_VIDEO, GOOD_AUDIO], 120)?;
            wait_for_log(&demo, &["RTMP publish accepted"], Duration::from_secs(20))?;

            let shot = ctx.path("viewer.png");
            let page_args: Vec<String> = [
                "--url",
                &demo.info.viewer_url,
                "--pages",
                "1",
                "--duration",
                "60",
                "--until-frames",
                &MIN_FRAMES.to_string(),
                "--until-audio",
                "150",
                "--screenshot",
                &shot.display().to_string(),
                "--progress",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut page = Client::start(ctx, ClientKind::Browser, "watch_pages.mjs", &page_args)?;
            let mut player = aiortc_player(ctx, &demo.info, 60, MIN_FRAMES as u32)?;

            let page_result = page.result(Duration::from_secs(100))?;
            let played: PlayResult =
                results::parse("aiortc player", &player.result(Duration::from_secs(100))?)?;
            demo.ensure_running()?;
            ensure!(
                ffmpeg.try_wait()?.is_none(),
                "ffmpeg stopped pushing during the test"
            );

            let pages = results::pages(&page_result)?;
            ensure_pages_playing(&pages, MIN_FRAMES)?;
            let p = &pages[0];
            ensure!(
                p.frame_width == 640 && p.frame_height == 360,
                "the viewer page decoded {}x{}, expected the pushed 640x360",
                p.frame_width,
                p.frame_height
            );
            let power = p.audio_energy / p.audio_samples_duration_s.max(1e-9);
            ensure!(
                power >= MIN_AUDIO_POWER,
                "the viewer page's audio is silent: mean power {power} (totalAudioEnergy {} over \
                 {} s), expected the tone (≥ {MIN_AUDIO_POWER})",
                p.audio_energy,
                p.audio_samples_duration_s
            );
            check_aiortc(&played, "aiortc playing the RTMP feed")?;

            // The screenshot of the page playing the feed, kept for people to look at.
            let size = fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
            ensure!(
                size > 10_000,
                "no screenshot of the viewer page ({size} bytes)"
            );
            let keep = results_dir("rtmp_push_plays_in_chromium_and_aiortc")?.join("viewer.png");
            fs::copy(&shot, &keep)?;
            eprintln!("screenshot of the viewer page: {}", keep.display());

            // The encoder leaves: the feed ends with it.
            drop(ffmpeg);
            wait_for_log(
                &demo,
                &["ingest feed ended", "broadcast ended"],
                Duration::from_secs(20),
            )?;
            Ok(())
        },
    );
}

#[test]
fn rtmp_wrong_key_or_conference_is_refused() {
    run(
        "rtmp_wrong_key_or_conference_is_refused",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::without_source(ctx)?;
            let addr = rtmp_addr(&rtmp_url(&demo.info)?)?;
            let conference = demo.info.conference.clone();
            let wrong_key = format!("rtmp://{addr}/{conference}/not-the-key-0123456789");
            let (mut ffmpeg, ffmpeg_log) =
                ffmpeg_push(ctx, "wrong-key", &wrong_key, &[GOOD_VIDEO, GOOD_AUDIO], 20)?;
            expect_ffmpeg_failed(&mut ffmpeg, &ffmpeg_log, "a push with a wrong stream key")?;
            wait_for_log(
                &demo,
                &["RTMP publish refused", "wrong stream key"],
                Duration::from_secs(10),
            )?;
            // The conference's operator sees it in the pre-flight answer.
            let admin = Admin::new(&demo.info)?;
            expect_problem(&admin, &conference, "wrong stream key")?;

            let no_conference =
                format!("rtmp://{addr}/no-such-conference/{}", demo.info.stream_key);
            let (mut ffmpeg, ffmpeg_log) = ffmpeg_push(
                ctx,
                "no-conference",
                &no_conference,
                &[GOOD_VIDEO, GOOD_AUDIO],
                20,
            )?;
            expect_ffmpeg_failed(&mut ffmpeg, &ffmpeg_log, "a push to an unknown conference")?;
            wait_for_log(
                &demo,
                &["no conference no-such-conference"],
                Duration::from_secs(10),
            )?;

            demo.ensure_running()?;
            ensure!(
                !demo_log(&demo).contains("broadcast live"),
                "a refused push went live"
            );

            // The operator console's API tells the RTMP server of the conference.
            let c = admin.get(&format!("/api/v1/conferences/{conference}"))?;
            let expected = format!("rtmp://{addr}/{conference}");
            ensure!(
                c["rtmp_url"] == expected.as_str(),
                "GET /api/v1/conferences/{conference} says rtmp_url {}, expected {expected:?}",
                c["rtmp_url"]
            );
            Ok(())
        },
    );
}

#[test]
fn rtmp_unsupported_codecs_are_refused_by_name() {
    run(
        "rtmp_unsupported_codecs_are_refused_by_name",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::without_source(ctx)?;
            let url = rtmp_url(&demo.info)?;
            let addr = rtmp_addr(&url)?;
            // Another conference, on the air meanwhile: the refusals must not touch it.
            let other = Admin::new(&demo.info)?.post(
                "/api/v1/conferences",
                serde_json::json!({"id": "hn-khac", "title": "Hội nghị khác"}),
                &[201],
            )?;
            let other_key = other["stream_key"].as_str().context("no stream_key")?;
            let other_url = format!("rtmp://{addr}/hn-khac/{other_key}");
            let (mut on_air, _) =
                ffmpeg_push(ctx, "other", &other_url, &[GOOD_VIDEO, GOOD_AUDIO], 120)?;
            wait_for_log(&demo, &["conference=hn-khac"], Duration::from_secs(20))?;
            let admin = Admin::new(&demo.info)?;
            let conference = demo.info.conference.clone();

            let (mut ffmpeg, ffmpeg_log) =
                ffmpeg_push(ctx, "flv1", &url, &[&["-c:v", "flv1"], GOOD_AUDIO], 20)?;
            expect_ffmpeg_failed(&mut ffmpeg, &ffmpeg_log, "a Sorenson H.263 push")?;
            wait_for_log(
                &demo,
                &["RTMP stream refused", "Sorenson H.263 (flv1)"],
                Duration::from_secs(10),
            )?;
            // Shown to this conference's operator, and to nobody else's.
            expect_problem(&admin, &conference, "Sorenson H.263 (flv1)")?;
            let other_answer = preflight(&admin, "hn-khac")?;
            ensure!(
                other_answer["ingest_problem"].is_null() && other_answer["protocol"] == "RTMP",
                "the other conference's pre-flight answer shows another's refusal, or is not RTMP: {other_answer}"
            );

            let mp3 = &["-c:a", "libmp3lame", "-b:a", "96k"][..];
            let (mut ffmpeg, ffmpeg_log) = ffmpeg_push(ctx, "mp3", &url, &[GOOD_VIDEO, mp3], 20)?;
            expect_ffmpeg_failed(&mut ffmpeg, &ffmpeg_log, "an MP3 push")?;
            wait_for_log(
                &demo,
                &["audio codec MP3 (FLV sound format 2)"],
                Duration::from_secs(10),
            )?;
            // The latest refusal supersedes the first.
            expect_problem(&admin, &conference, "MP3")?;
            // Each refused stream's feed was withdrawn from the relay.
            wait_for_log(&demo, &["broadcast ended"], Duration::from_secs(10))?;

            // B-frames are carried but told (browsers drop them).
            let bframes = &[
                "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "60",
            ][..];
            let (mut ffmpeg, _) = ffmpeg_push(ctx, "bframes", &url, &[bframes, GOOD_AUDIO], 6)?;
            wait_for_log(
                &demo,
                &["the encoder sends B-frames"],
                Duration::from_secs(20),
            )?;
            // A push was taken: the refusal is history.
            let v = preflight(&admin, &conference)?;
            ensure!(
                v["ingest_problem"].is_null(),
                "a taken push left the refusal in the pre-flight answer: {v}"
            );
            let _ = ffmpeg.wait_timeout(Duration::from_secs(20))?;

            // The other conference was on the air throughout.
            demo.ensure_running()?;
            ensure!(
                on_air.try_wait()?.is_none(),
                "the other conference's push stopped"
            );
            let log = plain_log(&demo);
            ensure!(
                !log.lines()
                    .any(|l| l.contains("ingest feed ended") && l.contains("conference=hn-khac")),
                "the other conference's feed ended during the refusals"
            );
            Ok(())
        },
    );
}

#[test]
fn rtmp_bad_handshakes_do_not_stop_a_good_push() {
    run(
        "rtmp_bad_handshakes_do_not_stop_a_good_push",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::without_source(ctx)?;
            let url = rtmp_url(&demo.info)?;
            let addr = rtmp_addr(&url)?;
            let mut rng = Prng::seeded();

            // A handshake cut short: version 3 and part of C1 (1536 bytes), then the end.
            let mut s = TcpStream::connect(&addr)?;
            s.write_all(&[3])?;
            s.write_all(&rng.bytes(500))?;
            drop(s);
            // Garbage: not an RTMP version byte, then noise.
            let mut s = TcpStream::connect(&addr)?;
            let mut garbage = rng.bytes(4096);
            garbage[0] = 0x47;
            s.write_all(&garbage)?;
            drop(s);
            wait_for_log(
                &demo,
                &[
                    // Closed or reset, depending on what the kernel saw first.
                    "after 501 bytes",
                    "handshake failed: BadVersionId (not an RTMP client?)",
                ],
                Duration::from_secs(10),
            )?;

            // A stranger at 127.0.0.2 holds idle connections: past its cap of 8 the relay
            // closes them at once; the hall's encoder at 127.0.0.1 is not locked out.
            let stranger: std::net::SocketAddr = "127.0.0.2:0".parse()?;
            let target: std::net::SocketAddr = addr.parse()?;
            let mut held = Vec::new();
            for _ in 0..20 {
                let s = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )?;
                s.bind(&stranger.into())?;
                s.connect(&target.into())?;
                let s: TcpStream = s.into();
                s.set_read_timeout(Some(Duration::from_millis(300)))?;
                held.push(s);
            }
            // Closed by the relay: EOF (or a reset). Kept open: the relay waits for the
            // handshake (10 s) and the read times out.
            let open = held
                .iter_mut()
                .map(|s| std::io::Read::read(s, &mut [0u8; 1]))
                .filter(|r| {
                    matches!(r, Err(e) if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ))
                })
                .count();
            ensure!(
                open == 8,
                "the relay should keep 8 connections of one address open and close the other 12 at once: {open} open"
            );
            wait_for_log(
                &demo,
                &["RTMP connection refused: at most 8 connections per address"],
                Duration::from_secs(10),
            )?;

            let (mut ffmpeg, _) = ffmpeg_push(ctx, "after", &url, &[GOOD_VIDEO, GOOD_AUDIO], 90)?;
            let mut player = aiortc_player(ctx, &demo.info, 60, MIN_FRAMES as u32)?;
            let played: PlayResult =
                results::parse("aiortc player", &player.result(Duration::from_secs(100))?)?;
            demo.ensure_running()?;
            drop(held);
            ensure!(ffmpeg.try_wait()?.is_none(), "ffmpeg stopped pushing");
            check_aiortc(&played, "aiortc playing a push after bad handshakes")?;
            Ok(())
        },
    );
}

/// The relay's log without its colour codes.
fn plain_log(demo: &Demo) -> String {
    let log = demo_log(demo);
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `field=N` on the last log line containing `line`.
fn logged_number(log: &str, line: &str, field: &str) -> Option<u64> {
    let l = log.lines().rev().find(|l| l.contains(line))?;
    let at = l.find(&format!("{field}="))? + field.len() + 1;
    l[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// A relay behind 1:1 NAT announces a public address its own host may not reach: the gateway
/// still reaches the media port (its WHIP answer's candidates are moved to the bound address).
#[test]
fn rtmp_ingest_reaches_a_relay_that_announces_a_public_ip() {
    run(
        "rtmp_ingest_reaches_a_relay_that_announces_a_public_ip",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    no_source: true,
                    media_addr: Some("0.0.0.0:0".into()),
                    // TEST-NET-3: routed nowhere from this host.
                    public_ips: vec!["203.0.113.7".into()],
                    ..Default::default()
                },
            )?;
            ensure_short_push_arrives(ctx, &mut demo, "nat", "a relay announcing 203.0.113.7")?;
            Ok(())
        },
    );
}

/// ffmpeg pushes 8 s; the gateway must have handed most of it to its WebRTC connection.
fn ensure_short_push_arrives(ctx: &Ctx, demo: &mut Demo, tag: &str, what: &str) -> Result<()> {
    let url = rtmp_url(&demo.info)?;
    let (mut ffmpeg, _) = ffmpeg_push(ctx, tag, &url, &[GOOD_VIDEO, GOOD_AUDIO], 8)?;
    ensure!(
        ffmpeg.wait_timeout(Duration::from_secs(30))?.is_some(),
        "ffmpeg did not finish its 8 s push"
    );
    wait_for_log(demo, &["ingest feed ended"], Duration::from_secs(20))?;
    demo.ensure_running()?;
    let log = plain_log(demo);
    let frames = logged_number(&log, "ingest feed ended", "n_video_frames").unwrap_or(0);
    let audio = logged_number(&log, "ingest feed ended", "n_audio_packets").unwrap_or(0);
    // 8 s at 30 fps and 50 packets/s, less what came before the connection was up.
    ensure!(
        frames >= 150 && audio >= 250,
        "the gateway sent {frames} video frames and {audio} audio packets to {what}: its \
         media never connected"
    );
    Ok(())
}

/// With `[http]` TLS on, the gateway still publishes (through the relay's loopback plain
/// listener, as the demo's built-in source does).
#[test]
fn rtmp_ingest_works_when_the_relay_speaks_https() {
    run(
        "rtmp_ingest_works_when_the_relay_speaks_https",
        Weight::Heavy,
        |ctx| {
            let cert = ctx.path("cert.pem");
            let key = ctx.path("key.pem");
            let out = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                .args(["-subj", "/CN=localhost", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .context("cannot run openssl")?;
            ensure!(
                out.status.success(),
                "openssl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    no_source: true,
                    set: vec![
                        format!("http.tls_cert={:?}", cert.display().to_string()),
                        format!("http.tls_key={:?}", key.display().to_string()),
                    ],
                    ..Default::default()
                },
            )?;
            ensure!(
                demo.info.http_base.starts_with("https://"),
                "the demo does not speak https: {}",
                demo.info.http_base
            );
            ensure_short_push_arrives(ctx, &mut demo, "tls", "an https relay")
        },
    );
}

/// H.264 without B-frames or scene-cut keyframes, a keyframe every `gop` frames (30 fps).
fn x264_gop(gop: &'static str) -> Vec<&'static str> {
    vec![
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-bf",
        "0",
        "-g",
        gop,
        "-keyint_min",
        gop,
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
    ]
}

#[test]
fn rtmp_preflight_says_keyframe_requests_cannot_reach_the_encoder() {
    let test = "rtmp_preflight_says_keyframe_requests_cannot_reach_the_encoder";
    run(test, Weight::Heavy, |ctx| {
        let mut demo = Demo::without_source(ctx)?;
        let url = rtmp_url(&demo.info)?;
        let addr = rtmp_addr(&url)?;
        let admin = Admin::new(&demo.info)?;
        let conference = demo.info.conference.clone();
        let other = admin.post(
            "/api/v1/conferences",
            serde_json::json!({"id": "hn-gop-1s", "title": "GOP 1 s"}),
            &[201],
        )?;
        let other_key = other["stream_key"].as_str().context("no stream_key")?;
        let other_url = format!("rtmp://{addr}/hn-gop-1s/{other_key}");
        // A 5 s GOP (x264's habit when left alone is 8 s) and a 1 s one, at once.
        let long_gop = x264_gop("150");
        let short_gop = x264_gop("30");
        let (mut long_ff, _) = ffmpeg_push(ctx, "gop-5s", &url, &[&long_gop, GOOD_AUDIO], 90)?;
        let (mut short_ff, _) =
            ffmpeg_push(ctx, "gop-1s", &other_url, &[&short_gop, GOOD_AUDIO], 90)?;

        let is_ingest_line = |v: &serde_json::Value, status: &str| {
            v["live"] == true
                && v["protocol"] == "RTMP"
                && v["ingest_problem"].is_null()
                && check(v, "keyframe_interval").is_none()
                && check(v, "keyframe_requests").is_some_and(|c| c["status"] == status)
        };
        let long = wait_preflight(
            &admin,
            &conference,
            Duration::from_secs(45),
            "live, protocol RTMP, keyframe_requests red",
            |v| is_ingest_line(v, "red"),
        )?;
        let short = wait_preflight(
            &admin,
            "hn-gop-1s",
            Duration::from_secs(30),
            "live, protocol RTMP, keyframe_requests green",
            |v| is_ingest_line(v, "green"),
        )?;
        let line = check(&long, "keyframe_requests").context("no keyframe_requests")?;
        let vi = line["advice_vi"].as_str().unwrap_or_default();
        let en = line["advice_en"].as_str().unwrap_or_default();
        ensure!(
            vi.starts_with(
                "Bộ mã hoá RTMP/SRT không nhận được yêu cầu khung hình chính từ người xem"
            ) && vi.contains("keyframe interval")
                && en.contains("cannot receive viewers' keyframe requests"),
            "keyframe_requests' advice does not say why: {line}"
        );
        // The ids are the usual nine with keyframe_requests in keyframe_interval's place.
        let ids: Vec<&str> = long["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["id"].as_str())
            .collect();
        ensure!(
            ids.get(1) == Some(&"keyframe_requests") && ids.len() == 9,
            "check ids {ids:?}"
        );
        eprintln!(
            "5 s GOP: keyframe_requests {} ({}); 1 s GOP: {} ({})",
            line["status"],
            line["value"],
            check(&short, "keyframe_requests").map_or(String::new(), |c| c["status"].to_string()),
            check(&short, "keyframe_requests").map_or(String::new(), |c| c["value"].to_string()),
        );
        let dir = results_dir(test)?;
        fs::write(
            dir.join("preflight-gop-5s.json"),
            serde_json::to_string_pretty(&long)?,
        )?;
        fs::write(
            dir.join("preflight-gop-1s.json"),
            serde_json::to_string_pretty(&short)?,
        )?;
        demo.ensure_running()?;
        long_ff.terminate(Duration::from_secs(5));
        short_ff.terminate(Duration::from_secs(5));
        Ok(())
    });
}
