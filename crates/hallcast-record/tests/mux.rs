//! The muxer against real media and real tools: H.264 (libx264) and VP8 (libvpx) made by
//! ffmpeg, the Opus tone the test source sends, packetized into RTP as encoders do, fed to
//! a [`Recording`] on virtual time; the file is checked with `ffprobe` (tracks, duration,
//! tags) and decoded with `ffmpeg -v error` (no error). Also: a file cut off mid-broadcast
//! (the relay killed) still decodes, and lost packets cost frames, not errors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hallcast_core::{Codec, Layer, MediaKind, SourcePacket};
use hallcast_record::{Metadata, Op, Recording};

const FPS: u32 = 25;
const SECONDS: u32 = 4;

/// A scratch directory, removed when the test ends.
struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

fn tmpdir(name: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("hallcast-record-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .expect("ffmpeg/ffprobe installed (scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// H.264 access units (Annex B split into NAL units) from libx264, constrained baseline,
/// an IDR every second, parameter sets before each.
fn h264_access_units(dir: &Path) -> Vec<Vec<Vec<u8>>> {
    let f = dir.join("in.h264");
    run(Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size=320x240:rate={FPS}:duration={SECONDS}"),
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-g",
            &FPS.to_string(),
            "-x264-params",
            "aud=1:repeat-headers=1",
            "-bsf:v",
            "h264_mp4toannexb",
        ])
        .arg(&f));
    let data = std::fs::read(&f).unwrap();
    let mut nals = vec![];
    let mut i = 0;
    let mut start = None;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            if let Some(s) = start {
                let mut end = i;
                while end > s && data[end - 1] == 0 {
                    end -= 1;
                }
                nals.push(data[s..end].to_vec());
            }
            start = Some(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        nals.push(data[s..].to_vec());
    }
    // Access units begin at each access unit delimiter (type 9), which is left out.
    let mut aus: Vec<Vec<Vec<u8>>> = vec![];
    for n in nals {
        if n[0] & 0x1f == 9 {
            aus.push(vec![]);
        } else if let Some(au) = aus.last_mut() {
            au.push(n);
        }
    }
    aus.retain(|a| !a.is_empty());
    aus
}

/// RTP payloads of one access unit: SPS + PPS in a STAP-A, small NAL units whole, large
/// ones in FU-A fragments of at most 1000 bytes.
fn packetize_h264(au: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    let mut stap = vec![24u8];
    for n in au {
        let t = n[0] & 0x1f;
        if t == 7 || t == 8 {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
            continue;
        }
        if stap.len() > 1 {
            out.push(std::mem::replace(&mut stap, vec![24]));
        }
        if n.len() <= 1000 {
            out.push(n.clone());
        } else {
            let chunks: Vec<&[u8]> = n[1..].chunks(1000).collect();
            for (i, c) in chunks.iter().enumerate() {
                let mut p = vec![(n[0] & 0xe0) | 28, n[0] & 0x1f];
                if i == 0 {
                    p[1] |= 0x80;
                }
                if i == chunks.len() - 1 {
                    p[1] |= 0x40;
                }
                p.extend_from_slice(c);
                out.push(p);
            }
        }
    }
    out
}

/// VP8 frames from libvpx, in an IVF file.
fn vp8_frames(dir: &Path) -> Vec<Vec<u8>> {
    let f = dir.join("in.ivf");
    run(Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size=320x240:rate={FPS}:duration={SECONDS}"),
            "-c:v",
            "libvpx",
            "-g",
            &FPS.to_string(),
            "-auto-alt-ref",
            "0",
            "-f",
            "ivf",
        ])
        .arg(&f));
    let data = std::fs::read(&f).unwrap();
    let mut frames = vec![];
    let mut i = usize::from(u16::from_le_bytes([data[6], data[7]]));
    while i + 12 <= data.len() {
        let n = u32::from_le_bytes(data[i..i + 4].try_into().unwrap()) as usize;
        frames.push(data[i + 12..i + 12 + n].to_vec());
        i += 12 + n;
    }
    frames
}

fn packetize_vp8(frame: &[u8]) -> Vec<Vec<u8>> {
    frame
        .chunks(1000)
        .enumerate()
        .map(|(i, c)| {
            let mut p = vec![if i == 0 { 0x10 } else { 0x00 }];
            p.extend_from_slice(c);
            p
        })
        .collect()
}

struct Feed {
    packets: Vec<SourcePacket>,
}

/// Video and audio packets in arrival order: video from 150 ms, audio from 100 ms after
/// the broadcast's start (as ICE and DTLS delay the first media), random RTP offsets.
fn feed(start: Instant, video: Codec, payloads: Vec<Vec<Vec<u8>>>) -> Feed {
    let opus = hallcast_client::ogg::opus_packets(hallcast_client::ogg::TONE_OGG).unwrap();
    let mut packets = vec![];
    let mut seq = 1000u64;
    let ts0 = 4_294_000_000u32; // wraps during the test
    for (i, frame) in payloads.iter().enumerate() {
        let at = start
            + Duration::from_millis(150)
            + Duration::from_millis(i as u64 * 1000 / u64::from(FPS));
        let ts = ts0.wrapping_add(i as u32 * 90_000 / FPS);
        let n = frame.len();
        for (j, p) in frame.iter().enumerate() {
            packets.push(SourcePacket {
                kind: MediaKind::Video,
                layer: Layer(0),
                seq,
                ts,
                marker: j == n - 1,
                keyframe_start: video.starts_keyframe(p) && j == 0,
                payload: Arc::from(p.as_slice()),
                arrival: at,
            });
            seq += 1;
        }
    }
    let n_audio = SECONDS * 50;
    for k in 0..n_audio {
        let at = start + Duration::from_millis(100 + u64::from(k) * 20);
        let p = &opus[k as usize % opus.len()];
        packets.push(SourcePacket {
            kind: MediaKind::Audio,
            layer: Layer(0),
            seq: u64::from(k),
            ts: 7_000u32.wrapping_add(k * 960),
            marker: false,
            keyframe_start: false,
            payload: Arc::from(&p[..]),
            arrival: at,
        });
    }
    // Stable: each stream keeps its order.
    packets.sort_by_key(|p| p.arrival);
    Feed { packets }
}

/// Carries out the ops on a file; `limit`: stop after this many ops (a process killed).
fn write(path: &Path, ops: &[Op], limit: Option<usize>) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::File::create(path).unwrap();
    for op in ops.iter().take(limit.unwrap_or(usize::MAX)) {
        match op {
            Op::Append(b) => {
                f.seek(SeekFrom::End(0)).unwrap();
                f.write_all(b).unwrap();
            }
            Op::Patch { at, bytes } => {
                f.seek(SeekFrom::Start(*at)).unwrap();
                f.write_all(bytes).unwrap();
            }
        }
    }
}

fn record(
    video: Codec,
    payloads: Vec<Vec<Vec<u8>>>,
    drop: impl Fn(&SourcePacket) -> bool,
) -> (Vec<Op>, usize, Recording) {
    let start = Instant::now();
    let meta = Metadata {
        conference_id: "hoi-nghi-1".into(),
        conference_name: Some("Hội nghị tổng kết".into()),
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
        audio: Some(Codec::Opus),
        video: Some(video),
    };
    let mut ops = vec![];
    let mut rec = Recording::new(meta, start, &mut ops);
    let f = feed(start, video, payloads);
    for p in &f.packets {
        if drop(p) {
            continue;
        }
        rec.push(p, &mut ops).unwrap();
    }
    let before_finish = ops.len();
    rec.finish(&mut ops);
    (ops, before_finish, rec)
}

fn probe(path: &Path) -> serde_json::Value {
    let out = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration,format_name:format_tags:stream=codec_name,codec_type,width,height",
            "-of",
            "json",
        ])
        .arg(path));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Decodes every frame; returns ffmpeg's error output (empty: clean) and the frames decoded.
fn decode(path: &Path) -> (String, u64) {
    let out = run(Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v", "-f", "framemd5", "-"]));
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count() as u64;
    let audio = run(Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"]));
    let mut err = String::from_utf8_lossy(&out.stderr).into_owned();
    err.push_str(&String::from_utf8_lossy(&audio.stderr));
    (err, frames)
}

fn check(
    video: Codec,
    name: &str,
    ext: &str,
    codec_name: &str,
    payloads: Vec<Vec<Vec<u8>>>,
    dir: &Path,
) {
    let n_frames = payloads.len() as u64;
    let (ops, _, rec) = record(video, payloads, |_| false);
    let path = dir.join(format!("{name}.{ext}"));
    write(&path, &ops, None);
    let p = probe(&path);
    let streams = p["streams"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = streams
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap(),
                s["codec_name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds, [("video", codec_name), ("audio", "opus")], "{p}");
    assert_eq!(streams[0]["width"], 320);
    assert_eq!(streams[0]["height"], 240);
    let duration: f64 = p["format"]["duration"].as_str().unwrap().parse().unwrap();
    // Audio from 0.10 s to 4.10 s: the file's time starts at the broadcast's start.
    assert!((duration - 4.12).abs() < 0.1, "duration {duration}");
    let tags = &p["format"]["tags"];
    assert_eq!(tags["CONFERENCE_ID"], "hoi-nghi-1", "{p}");
    assert_eq!(tags["CONFERENCE_NAME"], "Hội nghị tổng kết");
    assert_eq!(tags["BROADCAST_START"], "2026-11-18T11:06:40Z");
    // DateUTC.
    assert_eq!(tags["creation_time"], "2026-11-18T11:06:40.000000Z");
    let (err, frames) = decode(&path);
    assert_eq!(err, "", "decoding {name}");
    assert_eq!(frames, n_frames, "every frame decodes");
    assert_eq!(rec.n_video_dropped(), 0);
}

#[test]
fn h264_and_opus_make_a_matroska_file_that_decodes() {
    let dir = tmpdir("h264");
    let aus = h264_access_units(&dir);
    assert_eq!(aus.len() as u32, FPS * SECONDS);
    let payloads = aus.iter().map(|a| packetize_h264(a)).collect();
    check(Codec::H264, "h264", "mkv", "h264", payloads, &dir);
}

#[test]
fn vp8_and_opus_make_a_webm_file_that_decodes() {
    let dir = tmpdir("vp8");
    let frames = vp8_frames(&dir);
    assert_eq!(frames.len() as u32, FPS * SECONDS);
    let payloads = frames.iter().map(|f| packetize_vp8(f)).collect();
    check(Codec::Vp8, "vp8", "webm", "vp8", payloads, &dir);
}

#[test]
fn a_file_cut_off_mid_broadcast_still_decodes() {
    let dir = tmpdir("cut");
    let aus = h264_access_units(&dir);
    let payloads: Vec<_> = aus.iter().map(|a| packetize_h264(a)).collect();
    let (ops, before_finish, _) = record(Codec::H264, payloads, |_| false);
    // Killed after ~2/3 of the broadcast: no cues, no duration, the last cluster of
    // unknown size.
    let path = dir.join("cut.mkv");
    write(&path, &ops, Some(before_finish * 2 / 3));
    let p = probe(&path);
    assert_eq!(p["streams"].as_array().unwrap().len(), 2, "{p}");
    let (err, frames) = decode(&path);
    assert_eq!(err, "");
    assert!(frames > 40, "{frames} frames decoded");
}

#[test]
fn lost_packets_cost_frames_up_to_the_next_keyframe_not_decode_errors() {
    let dir = tmpdir("loss");
    let aus = h264_access_units(&dir);
    let n = aus.len() as u64;
    let payloads: Vec<_> = aus.iter().map(|a| packetize_h264(a)).collect();
    // Drop the last packet of a frame in the middle of the second GOP (frames 25–49), chosen
    // by its frame, not by its place in the feed: how many packets a frame takes depends on
    // the encoder's version. The recorder sees the frame incomplete.
    let frame_35 = 4_294_000_000u32.wrapping_add(35 * 90_000 / FPS);
    let (ops, _, rec) = record(Codec::H264, payloads, |p| {
        p.kind == MediaKind::Video && p.ts == frame_35 && p.marker
    });
    let path = dir.join("loss.mkv");
    write(&path, &ops, None);
    let (err, frames) = decode(&path);
    assert_eq!(err, "");
    assert!(rec.n_video_dropped() > 0);
    assert_eq!(frames, n - rec.n_video_dropped());
}
