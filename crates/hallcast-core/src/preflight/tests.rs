use std::sync::Arc;

use super::*;

/// Writes H.264 bitstream fields (test side of the parser).
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    n_bits: usize,
}

impl BitWriter {
    fn bit(&mut self, b: u32) {
        if self.n_bits.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if b != 0 {
            *self.bytes.last_mut().unwrap() |= 0x80 >> (self.n_bits % 8);
        }
        self.n_bits += 1;
    }
    fn bits(&mut self, v: u32, n: u32) {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1);
        }
    }
    fn ue(&mut self, v: u32) {
        let x = v + 1;
        let len = 32 - x.leading_zeros();
        self.bits(0, len - 1);
        self.bits(x, len);
    }
    /// Adds emulation prevention bytes as an encoder does.
    fn rbsp_to_ebsp(self) -> Vec<u8> {
        let mut out = vec![];
        let mut zeros = 0;
        for b in self.bytes {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            out.push(b);
        }
        out
    }
}

/// An SPS NAL (header included) for `width`×`height` (4:2:0, frame MBs only, cropped).
fn sps(profile_idc: u8, constraints: u8, width: u32, height: u32) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.bits(u32::from(profile_idc), 8);
    w.bits(u32::from(constraints), 8);
    w.bits(31, 8); // level 3.1
    w.ue(0); // sps id
    if profile_idc == 100 {
        w.ue(1); // chroma 4:2:0
        w.ue(0);
        w.ue(0);
        w.bit(0);
        w.bit(0); // no scaling matrix
    }
    w.ue(0); // log2_max_frame_num_minus4
    w.ue(2); // poc type 2
    w.ue(1); // max_num_ref_frames
    w.bit(0);
    let mbs_w = width.div_ceil(16);
    let mbs_h = height.div_ceil(16);
    w.ue(mbs_w - 1);
    w.ue(mbs_h - 1);
    w.bit(1); // frame_mbs_only
    w.bit(1); // direct_8x8
    let crop_r = (mbs_w * 16 - width) / 2;
    let crop_b = (mbs_h * 16 - height) / 2;
    if crop_r + crop_b > 0 {
        w.bit(1);
        w.ue(0);
        w.ue(crop_r);
        w.ue(0);
        w.ue(crop_b);
    } else {
        w.bit(0);
    }
    w.bit(0); // no VUI
    w.bit(1); // rbsp stop bit
    let mut nal = vec![0x67];
    nal.extend(w.rbsp_to_ebsp());
    nal
}

/// A slice NAL of `nal_type` (1 or 5) whose slice_type is `slice_type`.
fn slice(nal_type: u8, slice_type: u32) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.ue(0); // first_mb_in_slice
    w.ue(slice_type);
    w.ue(0); // pps id
    w.bits(0xabcd, 16);
    let mut nal = vec![0x60 | nal_type];
    nal.extend(w.rbsp_to_ebsp());
    nal
}

fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![0x78];
    for n in nals {
        p.extend((n.len() as u16).to_be_bytes());
        p.extend_from_slice(n);
    }
    p
}

fn vp8_key(width: u16, height: u16) -> Vec<u8> {
    // Descriptor X=1, S=1 with a 15-bit picture id, then the key frame header.
    let mut p = vec![0x90, 0x80, 0x81, 0x23];
    p.extend([0x50, 0x2a, 0x01, 0x9d, 0x01, 0x2a]);
    p.extend(width.to_le_bytes());
    p.extend(height.to_le_bytes());
    p.extend([0; 20]);
    p
}

/// A synthetic encoder on virtual time.
struct Enc {
    t0: Instant,
    seq: [u64; Layer::MAX],
    aseq: u64,
}

impl Enc {
    fn new() -> Enc {
        Enc {
            t0: Instant::now(),
            seq: [0; Layer::MAX],
            aseq: 0,
        }
    }
    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }
    fn video(&mut self, layer: u8, ms: u64, ts: u32, key: bool, payload: Vec<u8>) -> SourcePacket {
        let l = usize::from(layer);
        self.seq[l] += 1;
        SourcePacket {
            kind: MediaKind::Video,
            layer: Layer(layer),
            seq: self.seq[l],
            ts,
            marker: true,
            keyframe_start: key,
            payload: Arc::from(payload),
            arrival: self.at(ms),
        }
    }
    fn audio(&mut self, ms: u64, size: usize) -> SourcePacket {
        self.aseq += 1;
        SourcePacket {
            kind: MediaKind::Audio,
            layer: Layer(0),
            seq: self.aseq,
            ts: (ms * 48) as u32,
            marker: false,
            keyframe_start: false,
            payload: Arc::from(vec![0xfc; size]),
            arrival: self.at(ms),
        }
    }
}

/// What an H.264 encoder sends: `secs` seconds at `fps`, a keyframe every `gop_ms`,
/// `bytes_per_frame` per frame, `b_frames` reordering (I P B P B ... in sending order
/// with B's timestamps behind).
struct H264Feed {
    width: u32,
    height: u32,
    profile: u8,
    fps: u64,
    gop_ms: u64,
    bytes_per_frame: usize,
    b_frames: bool,
    /// Where the encoder's GOP counting starts (a forced keyframe restarts it).
    gop_origin_ms: u64,
}

impl Default for H264Feed {
    fn default() -> Self {
        H264Feed {
            width: 1280,
            height: 720,
            profile: 66,
            fps: 30,
            gop_ms: 1000,
            bytes_per_frame: 8000, // ~1.9 Mbit/s at 30 fps
            b_frames: false,
            gop_origin_ms: 0,
        }
    }
}

fn feed_h264(p: &mut Preflight, e: &mut Enc, f: &H264Feed, layer: u8, from_ms: u64, to_ms: u64) {
    let sps = sps(f.profile, 0xc0, f.width, f.height);
    let frame_ms = 1000 / f.fps;
    let mut i = 0u64;
    let mut ms = from_ms;
    while ms < to_ms {
        let key = ms >= f.gop_origin_ms && (ms - f.gop_origin_ms) % f.gop_ms < frame_ms;
        let mut ts_frame = 90_000 + ms * 90;
        let slice_type = if key {
            7
        } else if f.b_frames && i % 2 == 1 {
            // A B-frame is sent after the P it refers to: its timestamp is behind.
            ts_frame -= 2 * frame_ms * 90;
            6
        } else {
            5
        };
        let ts = ts_frame as u32;
        if key {
            let pps = [0x68u8, 0xce, 0x3c, 0x80];
            let pkt = e.video(layer, ms, ts, true, stap_a(&[&sps, &pps]));
            p.on_packet(&pkt, None);
        }
        let mut body = slice(if key { 5 } else { 1 }, slice_type);
        body.resize(f.bytes_per_frame, 0x55);
        let pkt = e.video(layer, ms, ts, key, body);
        p.on_packet(&pkt, None);
        i += 1;
        ms += frame_ms;
    }
}

fn feed_audio(
    p: &mut Preflight,
    e: &mut Enc,
    from_ms: u64,
    to_ms: u64,
    size: usize,
    level: Option<u8>,
) {
    let mut ms = from_ms;
    while ms < to_ms {
        let pkt = e.audio(ms, size);
        p.on_packet(&pkt, level);
        ms += 20;
    }
}

fn status(r: &Report, id: CheckId) -> Status {
    r.get(id).unwrap().status
}

fn value(r: &Report, id: CheckId) -> String {
    r.get(id).unwrap().value.clone()
}

/// A good encoder: simulcast H.264 CB 720p30 at 1.9 Mbit/s, 1 s GOP, Opus with voice.
fn good(secs: u64) -> (Preflight, Enc, Report) {
    let mut e = Enc::new();
    let mut p = Preflight::new(Some(Codec::Opus), Some(Codec::H264), 3, e.at(0));
    let to = secs * 1000;
    let low = H264Feed {
        width: 320,
        height: 180,
        bytes_per_frame: 600,
        ..H264Feed::default()
    };
    let mid = H264Feed {
        width: 640,
        height: 360,
        bytes_per_frame: 2000,
        ..H264Feed::default()
    };
    feed_h264(&mut p, &mut e, &low, 0, 0, to);
    feed_h264(&mut p, &mut e, &mid, 1, 0, to);
    feed_h264(&mut p, &mut e, &H264Feed::default(), 2, 0, to);
    feed_audio(&mut p, &mut e, 0, to, 80, Some(25));
    let r = p.report(e.at(to));
    (p, e, r)
}

#[test]
fn every_check_is_listed_in_order_and_unknown_before_anything_arrives() {
    let t0 = Instant::now();
    let p = Preflight::new(Some(Codec::Opus), Some(Codec::H264), 1, t0);
    let r = p.report(t0 + Duration::from_millis(500));
    let ids: Vec<_> = r.checks.iter().map(|c| c.id).collect();
    assert_eq!(ids, CheckId::ALL);
    for c in &r.checks {
        assert_eq!(c.status, Status::Unknown, "{c:?}");
        assert!(!c.advice_vi.is_empty() && !c.advice_en.is_empty());
    }
    assert_eq!(Report::unknown().checks.len(), 9);
}

#[test]
fn a_good_encoder_is_all_green() {
    let (_, _, r) = good(8);
    for c in &r.checks {
        assert_eq!(c.status, Status::Green, "{c:?}");
    }
    assert_eq!(
        value(&r, CheckId::Codec),
        "H.264 Constrained Baseline 3.1, Opus"
    );
    assert_eq!(value(&r, CheckId::Resolution), "1280×720");
    assert_eq!(value(&r, CheckId::KeyframeInterval), "1.0 s");
    assert_eq!(value(&r, CheckId::FrameRate), "30 fps");
    assert_eq!(value(&r, CheckId::Simulcast), "3 of 3 layers");
    assert_eq!(value(&r, CheckId::AudioLevel), "peak −25 dBov");
    assert!(
        value(&r, CheckId::Bitrate).starts_with("1.9 Mbit/s"),
        "{r:?}"
    );
}

#[test]
fn keyframe_interval_green_amber_red() {
    for (gop_ms, want, shown) in [
        (2000, Status::Green, "2.0 s"),
        (3000, Status::Amber, "3.0 s"),
        (8000, Status::Red, "8.0 s"),
    ] {
        let mut e = Enc::new();
        let mut p = Preflight::new(Some(Codec::Opus), Some(Codec::H264), 1, e.at(0));
        let f = H264Feed {
            gop_ms,
            ..H264Feed::default()
        };
        // Just past the second keyframe: one whole interval measured.
        let to = gop_ms + 100;
        feed_h264(&mut p, &mut e, &f, 0, 0, to);
        let r = p.report(e.at(to));
        assert_eq!(
            status(&r, CheckId::KeyframeInterval),
            want,
            "{gop_ms}: {r:?}"
        );
        assert_eq!(value(&r, CheckId::KeyframeInterval), shown);
    }
}

#[test]
fn a_long_keyframe_interval_shows_before_the_next_keyframe() {
    let mut e = Enc::new();
    let mut p = Preflight::new(None, Some(Codec::H264), 1, e.at(0));
    let f = H264Feed {
        gop_ms: 60_000,
        ..H264Feed::default()
    };
    feed_h264(&mut p, &mut e, &f, 0, 0, 1500);
    let r = p.report(e.at(1500));
    assert_eq!(status(&r, CheckId::KeyframeInterval), Status::Unknown);
    feed_h264(&mut p, &mut e, &f, 0, 1500, 5000);
    let r = p.report(e.at(5000));
    assert_eq!(status(&r, CheckId::KeyframeInterval), Status::Red, "{r:?}");
    assert!(
        value(&r, CheckId::KeyframeInterval).starts_with("≥ 5.0"),
        "{r:?}"
    );
}

#[test]
fn keyframes_the_relay_asked_for_do_not_hide_a_long_interval() {
    let mut e = Enc::new();
    let mut p = Preflight::new(None, Some(Codec::H264), 1, e.at(0));
    let f = H264Feed {
        gop_ms: 6000,
        ..H264Feed::default()
    };
    // Natural keyframes at 0, 6, 12 s; the relay asks at 2.9 s and 8.9 s and the encoder
    // answers at once (and restarts its GOP: the next natural one is 6 s later).
    feed_h264(&mut p, &mut e, &f, 0, 0, 3000);
    p.on_keyframe_request(Layer(0), e.at(2900));
    let f = H264Feed {
        gop_origin_ms: 3000,
        ..f
    };
    feed_h264(&mut p, &mut e, &f, 0, 3000, 9000);
    p.on_keyframe_request(Layer(0), e.at(8900));
    let f = H264Feed {
        gop_origin_ms: 9000,
        ..f
    };
    feed_h264(&mut p, &mut e, &f, 0, 9000, 15_100);
    let r = p.report(e.at(15_100));
    assert_eq!(status(&r, CheckId::KeyframeInterval), Status::Red, "{r:?}");
    assert_eq!(value(&r, CheckId::KeyframeInterval), "6.0 s");
}

#[test]
fn a_publisher_that_sends_keyframes_only_when_asked_is_amber_not_red() {
    // A browser: one keyframe at the start, then only when the relay asks (at 4.9 s and
    // 10.9 s, answered within 0.1 s).
    let mut e = Enc::new();
    let mut p = Preflight::new(None, Some(Codec::H264), 1, e.at(0));
    let f = H264Feed {
        gop_ms: 60_000,
        ..H264Feed::default()
    };
    feed_h264(&mut p, &mut e, &f, 0, 0, 4900);
    p.on_keyframe_request(Layer(0), e.at(4900));
    let f = H264Feed {
        gop_origin_ms: 5000,
        ..f
    };
    feed_h264(&mut p, &mut e, &f, 0, 4900, 10_900);
    p.on_keyframe_request(Layer(0), e.at(10_900));
    let f = H264Feed {
        gop_origin_ms: 11_000,
        ..f
    };
    feed_h264(&mut p, &mut e, &f, 0, 10_900, 16_000);
    let r = p.report(e.at(16_000));
    assert_eq!(
        status(&r, CheckId::KeyframeInterval),
        Status::Amber,
        "{r:?}"
    );
    assert!(
        value(&r, CheckId::KeyframeInterval).ends_with("; on request in 0.1 s"),
        "{r:?}"
    );
    // Asked again, and nothing comes: red.
    p.on_keyframe_request(Layer(0), e.at(16_000));
    feed_h264(&mut p, &mut e, &f, 0, 16_000, 18_000);
    let r = p.report(e.at(18_000));
    assert_eq!(status(&r, CheckId::KeyframeInterval), Status::Red, "{r:?}");
}

#[test]
fn a_long_interval_of_an_encoder_that_does_not_answer_requests_is_red() {
    let mut e = Enc::new();
    let mut p = Preflight::new(None, Some(Codec::H264), 1, e.at(0));
    let f = H264Feed {
        gop_ms: 6000,
        ..H264Feed::default()
    };
    // Natural keyframes at 0, 6, 12 s; the relay asks at 2.9 s and 8.9 s, nothing comes.
    feed_h264(&mut p, &mut e, &f, 0, 0, 2900);
    p.on_keyframe_request(Layer(0), e.at(2900));
    feed_h264(&mut p, &mut e, &f, 0, 2900, 8900);
    p.on_keyframe_request(Layer(0), e.at(8900));
    feed_h264(&mut p, &mut e, &f, 0, 8900, 15_100);
    let r = p.report(e.at(15_100));
    assert_eq!(status(&r, CheckId::KeyframeInterval), Status::Red, "{r:?}");
    assert_eq!(value(&r, CheckId::KeyframeInterval), "6.0 s");
}

#[test]
fn b_frames_are_flagged_by_slice_type_and_by_timestamps() {
    let mut e = Enc::new();
    let mut p = Preflight::new(Some(Codec::Opus), Some(Codec::H264), 1, e.at(0));
    let f = H264Feed {
        b_frames: true,
        profile: 100,
        ..H264Feed::default()
    };
    feed_h264(&mut p, &mut e, &f, 0, 0, 4000);
    let r = p.report(e.at(4000));
    assert_eq!(status(&r, CheckId::BFrames), Status::Red, "{r:?}");
    assert!(value(&r, CheckId::BFrames).starts_with("yes ("), "{r:?}");
    assert_eq!(status(&r, CheckId::Codec), Status::Amber, "High profile");
    assert_eq!(value(&r, CheckId::Codec), "H.264 High 3.1, Opus");
    // Without B-frames: green once enough frames were seen.
    let (_, _, r) = good(3);
    assert_eq!(status(&r, CheckId::BFrames), Status::Green);
}

#[test]
fn retransmitted_old_packets_are_not_b_frames() {
    let mut e = Enc::new();
    let mut p = Preflight::new(None, Some(Codec::H264), 1, e.at(0));
    feed_h264(&mut p, &mut e, &H264Feed::default(), 0, 0, 3000);
    // A repaired packet of an older frame, with an older sequence number.
    let mut old = e.video(0, 3000, 90 * 1000, false, slice(1, 5));
    old.seq = 5;
    p.on_packet(&old, None);
    let r = p.report(e.at(3000));
    assert_eq!(status(&r, CheckId::BFrames), Status::Green, "{r:?}");
}

#[test]
fn a_too_low_bitrate_is_red_a_low_one_amber() {
    for (bytes_per_frame, want) in [
        (800, Status::Red),
        (2500, Status::Amber),
        (8000, Status::Green),
    ] {
        let mut e = Enc::new();
        let mut p = Preflight::new(None, Some(Codec::H264), 1, e.at(0));
        let f = H264Feed {
            bytes_per_frame,
            ..H264Feed::default()
        };
        feed_h264(&mut p, &mut e, &f, 0, 0, 6000);
        let r = p.report(e.at(6000));
        assert_eq!(
            status(&r, CheckId::Bitrate),
            want,
            "{bytes_per_frame}: {r:?}"
        );
    }
}

#[test]
fn resolution_and_frame_rate() {
    for (w, h, fps, res, rate) in [
        (1920, 1080, 30, Status::Green, Status::Green),
        (854, 480, 25, Status::Amber, Status::Green),
        (426, 240, 20, Status::Red, Status::Amber),
        (1280, 720, 10, Status::Green, Status::Red),
    ] {
        let mut e = Enc::new();
        let mut p = Preflight::new(None, Some(Codec::H264), 1, e.at(0));
        let f = H264Feed {
            width: w,
            height: h,
            fps,
            ..H264Feed::default()
        };
        feed_h264(&mut p, &mut e, &f, 0, 0, 6000);
        let r = p.report(e.at(6000));
        assert_eq!(status(&r, CheckId::Resolution), res, "{w}x{h}: {r:?}");
        assert_eq!(value(&r, CheckId::Resolution), format!("{w}×{h}"));
        assert_eq!(status(&r, CheckId::FrameRate), rate, "{fps} fps: {r:?}");
    }
}

#[test]
fn a_single_layer_is_amber_a_missing_offered_layer_too() {
    let mut e = Enc::new();
    let mut p = Preflight::new(None, Some(Codec::H264), 1, e.at(0));
    feed_h264(&mut p, &mut e, &H264Feed::default(), 0, 0, 4000);
    let r = p.report(e.at(4000));
    assert_eq!(status(&r, CheckId::Simulcast), Status::Amber);
    assert_eq!(value(&r, CheckId::Simulcast), "1 of 1 layers");
    // Three offered, two arriving.
    let mut e = Enc::new();
    let mut p = Preflight::new(None, Some(Codec::H264), 3, e.at(0));
    feed_h264(&mut p, &mut e, &H264Feed::default(), 0, 0, 4000);
    feed_h264(&mut p, &mut e, &H264Feed::default(), 1, 0, 4000);
    let r = p.report(e.at(4000));
    assert_eq!(status(&r, CheckId::Simulcast), Status::Amber);
    assert_eq!(value(&r, CheckId::Simulcast), "2 of 3 layers");
    // The top layer stops: resolution and bitrate follow the highest active layer.
    let (mut p, mut e, _) = good(4);
    let low = H264Feed {
        width: 320,
        height: 180,
        bytes_per_frame: 600,
        ..H264Feed::default()
    };
    feed_h264(&mut p, &mut e, &low, 0, 4000, 8000);
    let r = p.report(e.at(8000));
    assert_eq!(value(&r, CheckId::Resolution), "320×180");
    assert_eq!(value(&r, CheckId::Simulcast), "1 of 3 layers");
}

#[test]
fn no_audio_is_red() {
    // Not offered at all.
    let mut e = Enc::new();
    let mut p = Preflight::new(None, Some(Codec::H264), 1, e.at(0));
    feed_h264(&mut p, &mut e, &H264Feed::default(), 0, 0, 4000);
    let r = p.report(e.at(4000));
    assert_eq!(status(&r, CheckId::Audio), Status::Red);
    assert_eq!(status(&r, CheckId::AudioLevel), Status::Unknown);
    assert_eq!(value(&r, CheckId::Codec), "H.264 Constrained Baseline 3.1");
    // Offered, never sent.
    let mut e = Enc::new();
    let mut p = Preflight::new(Some(Codec::Opus), Some(Codec::H264), 1, e.at(0));
    feed_h264(&mut p, &mut e, &H264Feed::default(), 0, 0, 2000);
    assert_eq!(
        status(&p.report(e.at(2000)), CheckId::Audio),
        Status::Unknown
    );
    feed_h264(&mut p, &mut e, &H264Feed::default(), 0, 2000, 4000);
    let r = p.report(e.at(4000));
    assert_eq!(status(&r, CheckId::Audio), Status::Red);
    assert_eq!(value(&r, CheckId::Audio), "no audio packets");
    // Sent, then stopped.
    let (mut p, mut e, _) = good(4);
    feed_h264(&mut p, &mut e, &H264Feed::default(), 2, 4000, 8000);
    let r = p.report(e.at(8000));
    assert_eq!(status(&r, CheckId::Audio), Status::Red, "{r:?}");
}

#[test]
fn silent_audio_by_level_extension() {
    for (level, want) in [
        (20, Status::Green),
        (60, Status::Amber),
        (90, Status::Red),
        (127, Status::Red),
    ] {
        let mut e = Enc::new();
        let mut p = Preflight::new(Some(Codec::Opus), None, 1, e.at(0));
        // Big packets: the level, not the size, decides.
        feed_audio(&mut p, &mut e, 0, 6000, 80, Some(level));
        let r = p.report(e.at(6000));
        assert_eq!(status(&r, CheckId::AudioLevel), want, "{level}: {r:?}");
        assert_eq!(status(&r, CheckId::Audio), Status::Green);
    }
    // One loud moment within the window is enough: people pause between sentences.
    let mut e = Enc::new();
    let mut p = Preflight::new(Some(Codec::Opus), None, 1, e.at(0));
    feed_audio(&mut p, &mut e, 0, 2000, 80, Some(20));
    feed_audio(&mut p, &mut e, 2000, 9000, 80, Some(127));
    assert_eq!(
        status(&p.report(e.at(9000)), CheckId::AudioLevel),
        Status::Green
    );
    // ... but not once it left the window.
    feed_audio(&mut p, &mut e, 9000, 14_000, 80, Some(127));
    assert_eq!(
        status(&p.report(e.at(14_000)), CheckId::AudioLevel),
        Status::Red
    );
}

#[test]
fn silent_audio_by_opus_packet_sizes_without_the_extension() {
    let mut e = Enc::new();
    let mut p = Preflight::new(Some(Codec::Opus), None, 1, e.at(0));
    feed_audio(&mut p, &mut e, 0, 6000, 3, None);
    let r = p.report(e.at(6000));
    assert_eq!(status(&r, CheckId::AudioLevel), Status::Red, "{r:?}");
    assert_eq!(
        value(&r, CheckId::AudioLevel),
        "silent (100 % silence frames)"
    );
    let mut e = Enc::new();
    let mut p = Preflight::new(Some(Codec::Opus), None, 1, e.at(0));
    feed_audio(&mut p, &mut e, 0, 6000, 60, None);
    let r = p.report(e.at(6000));
    assert_eq!(status(&r, CheckId::AudioLevel), Status::Green, "{r:?}");
}

#[test]
fn vp8_resolution_from_the_key_frame_header() {
    assert_eq!(vp8_keyframe_size(&vp8_key(1280, 720)), Some((1280, 720)));
    let mut inter = vp8_key(1280, 720);
    inter[4] |= 1; // P bit: an inter frame has no size
    assert_eq!(vp8_keyframe_size(&inter), None);
    assert_eq!(vp8_keyframe_size(&[0x10, 0x00, 0x01]), None);

    let mut e = Enc::new();
    let mut p = Preflight::new(Some(Codec::Opus), Some(Codec::Vp8), 1, e.at(0));
    for i in 0..120u64 {
        let key = i % 30 == 0;
        let payload = if key {
            vp8_key(640, 360)
        } else {
            vec![0x90, 0x80, 0x81, 0x23, 0x01, 0, 0, 0]
        };
        let pkt = e.video(0, i * 33, (i * 33 * 90) as u32, key, payload);
        p.on_packet(&pkt, None);
    }
    let r = p.report(e.at(4000));
    assert_eq!(value(&r, CheckId::Resolution), "640×360");
    assert_eq!(status(&r, CheckId::Resolution), Status::Amber);
    assert_eq!(status(&r, CheckId::Codec), Status::Green);
    assert_eq!(status(&r, CheckId::BFrames), Status::Green);
}

/// Sizes and crops near `u32::MAX` (a crafted SPS from the network) are refused, not
/// overflowed: the recorder's fuzz target found `width_mbs * 16` overflowing.
#[test]
fn an_sps_with_huge_sizes_is_refused_without_overflow() {
    for (mbs_w_minus1, crop) in [(0x1000_0000, 0), (79, u32::MAX - 1), (u32::MAX - 1, 0)] {
        let mut w = BitWriter::default();
        w.bits(66, 8);
        w.bits(0xc0, 8);
        w.bits(31, 8);
        w.ue(0); // sps id
        w.ue(0); // log2_max_frame_num_minus4
        w.ue(2); // poc type 2
        w.ue(1); // max_num_ref_frames
        w.bit(0);
        w.ue(mbs_w_minus1);
        w.ue(44);
        w.bit(1); // frame_mbs_only
        w.bit(1); // direct_8x8
        w.bit(1); // cropping
        w.ue(crop);
        w.ue(crop);
        w.ue(0);
        w.ue(0);
        w.bit(0); // no VUI
        w.bit(1);
        let mut nal = vec![0x67];
        nal.extend(w.rbsp_to_ebsp());
        assert_eq!(parse_sps(&nal), None, "{mbs_w_minus1} {crop}");
    }
}

#[test]
fn sps_parsing() {
    for (w, h) in [
        (1280, 720),
        (1920, 1080),
        (640, 360),
        (320, 180),
        (854, 480),
    ] {
        let s = parse_sps(&sps(66, 0xc0, w, h)).unwrap();
        assert_eq!((s.width, s.height), (w, h));
        assert_eq!(s.profile.name(), "Constrained Baseline");
        let s = parse_sps(&sps(100, 0, w, h)).unwrap();
        assert_eq!((s.width, s.height), (w, h));
        assert_eq!(s.profile.name(), "High");
    }
    // A real SPS (x264, High 3.1, 1280x720, with VUI).
    let x264 = [
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    let s = parse_sps(&x264).unwrap();
    assert_eq!((s.width, s.height, s.profile.level_idc), (1280, 720, 31));
    // Truncated or not an SPS: none, no panic.
    let full = sps(66, 0xc0, 1280, 720);
    for n in 0..full.len() - 2 {
        let _ = parse_sps(&full[..n]);
    }
    assert_eq!(parse_sps(&[0x65, 1, 2]), None);
    assert_eq!(
        h264_find_sps(&stap_a(&[&full, &[0x68, 1]])).map(|s| s.width),
        Some(1280)
    );
}

#[test]
fn slice_types() {
    assert_eq!(h264_first_slice_type(&slice(1, 5)), Some(SliceType::P));
    assert_eq!(h264_first_slice_type(&slice(1, 1)), Some(SliceType::B));
    assert_eq!(h264_first_slice_type(&slice(5, 7)), Some(SliceType::I));
    // FU-A start of a B slice.
    let s = slice(1, 6);
    let mut fu = vec![0x7c, 0x80 | 1];
    fu.extend_from_slice(&s[1..]);
    assert_eq!(h264_first_slice_type(&fu), Some(SliceType::B));
    fu[1] = 1; // not a start fragment
    assert_eq!(h264_first_slice_type(&fu), None);
    assert_eq!(
        h264_first_slice_type(&stap_a(&[&[0x06, 1], &s])),
        Some(SliceType::B)
    );
    assert_eq!(h264_first_slice_type(&[0x67, 0x42]), None);
    assert_eq!(h264_first_slice_type(&[]), None);
}

#[test]
fn codec_profiles_and_no_video() {
    for (profile, constraints, name, want) in [
        (66, 0xc0, "Constrained Baseline", Status::Green),
        (66, 0x00, "Baseline", Status::Green),
        (77, 0x00, "Main", Status::Green),
        (100, 0x00, "High", Status::Amber),
        (110, 0x00, "High 10", Status::Red),
        (122, 0x00, "High 4:2:2", Status::Red),
    ] {
        let p = H264Profile {
            profile_idc: profile,
            constraints,
            level_idc: 40,
        };
        assert_eq!((p.name(), p.status()), (name, want), "{profile}");
    }
    // Audio only: the codec line is red (no picture), the video checks unknown.
    let mut e = Enc::new();
    let mut p = Preflight::new(Some(Codec::Opus), None, 1, e.at(0));
    feed_audio(&mut p, &mut e, 0, 5000, 80, None);
    let r = p.report(e.at(5000));
    assert_eq!(status(&r, CheckId::Codec), Status::Red);
    assert_eq!(value(&r, CheckId::Codec), "no video, Opus");
    for id in [
        CheckId::KeyframeInterval,
        CheckId::BFrames,
        CheckId::Bitrate,
        CheckId::Resolution,
        CheckId::FrameRate,
        CheckId::Simulcast,
    ] {
        assert_eq!(status(&r, id), Status::Unknown, "{id:?}");
    }
    // H.264 before its first SPS: unknown, not guessed.
    let mut e = Enc::new();
    let mut p = Preflight::new(Some(Codec::Opus), Some(Codec::H264), 1, e.at(0));
    let pkt = e.video(0, 0, 0, false, slice(1, 5));
    p.on_packet(&pkt, None);
    assert_eq!(
        status(&p.report(e.at(100)), CheckId::Codec),
        Status::Unknown
    );
}

#[test]
fn an_ingest_gateway_gets_keyframe_requests_in_place_of_keyframe_interval() {
    for (protocol, gop_ms, want, shown) in [
        (IngestProtocol::Rtmp, 1000, Status::Green, "1.0 s"),
        (IngestProtocol::Rtmp, 2000, Status::Green, "2.0 s"),
        (IngestProtocol::Srt, 3000, Status::Amber, "3.0 s"),
        (IngestProtocol::Rtmp, 5000, Status::Red, "5.0 s"),
    ] {
        let mut e = Enc::new();
        let mut p = Preflight::new(Some(Codec::Opus), Some(Codec::H264), 1, e.at(0))
            .with_protocol(protocol);
        let f = H264Feed {
            gop_ms,
            ..H264Feed::default()
        };
        let to = gop_ms + 100;
        feed_h264(&mut p, &mut e, &f, 0, 0, to);
        let r = p.report(e.at(to));
        assert_eq!(r.protocol, Some(protocol));
        let ids: Vec<_> = r.checks.iter().map(|c| c.id).collect();
        let mut expected = CheckId::ALL.to_vec();
        expected[1] = CheckId::KeyframeRequests;
        assert_eq!(ids, expected, "same place, other id");
        assert!(r.get(CheckId::KeyframeInterval).is_none());
        assert_eq!(
            status(&r, CheckId::KeyframeRequests),
            want,
            "{gop_ms}: {r:?}"
        );
        assert_eq!(value(&r, CheckId::KeyframeRequests), shown);
        let c = r.get(CheckId::KeyframeRequests).unwrap();
        if want != Status::Green {
            assert!(
                c.advice_vi.starts_with(
                    "Bộ mã hoá RTMP/SRT không nhận được yêu cầu khung hình chính từ người xem"
                ) && c.advice_vi.contains("keyframe interval")
                    && c.advice_vi.contains("1–2 giây"),
                "{c:?}"
            );
            assert!(
                c.advice_en
                    .contains("cannot receive viewers' keyframe requests")
            );
        }
    }
    // A WHIP publisher: the usual line, and the report says WHIP.
    let (_, _, r) = good(4);
    assert_eq!(r.protocol, Some(IngestProtocol::Whip));
    assert!(r.get(CheckId::KeyframeRequests).is_none());
    assert_eq!(Report::unknown().protocol, None);
}

#[test]
fn an_ingest_gateways_long_interval_shows_red_before_its_next_keyframe() {
    // ffmpeg -g 150 at 30 fps: a keyframe every 5 s. Red once 4 s passed without one.
    let mut e = Enc::new();
    let mut p =
        Preflight::new(None, Some(Codec::H264), 1, e.at(0)).with_protocol(IngestProtocol::Rtmp);
    let f = H264Feed {
        gop_ms: 5000,
        ..H264Feed::default()
    };
    feed_h264(&mut p, &mut e, &f, 0, 0, 3000);
    assert_eq!(
        status(&p.report(e.at(3000)), CheckId::KeyframeRequests),
        Status::Amber
    );
    feed_h264(&mut p, &mut e, &f, 0, 3000, 4200);
    let r = p.report(e.at(4200));
    assert_eq!(status(&r, CheckId::KeyframeRequests), Status::Red, "{r:?}");
    assert!(
        value(&r, CheckId::KeyframeRequests).starts_with("≥ 4.2"),
        "{r:?}"
    );
}

#[test]
fn behind_the_gateway_no_keyframe_counts_as_an_answer_and_red_stays_red() {
    // The relay asks (viewers' PLIs), the gateway cannot pass it on; a natural keyframe that
    // happens to follow a request is still the encoder's own interval, and nothing softens
    // the red to amber.
    let mut e = Enc::new();
    let mut p =
        Preflight::new(None, Some(Codec::H264), 1, e.at(0)).with_protocol(IngestProtocol::Srt);
    let f = H264Feed {
        gop_ms: 6000,
        ..H264Feed::default()
    };
    feed_h264(&mut p, &mut e, &f, 0, 0, 5500);
    p.on_keyframe_request(Layer(0), e.at(5500));
    feed_h264(&mut p, &mut e, &f, 0, 5500, 6100);
    let r = p.report(e.at(6100));
    assert_eq!(status(&r, CheckId::KeyframeRequests), Status::Red, "{r:?}");
    assert_eq!(value(&r, CheckId::KeyframeRequests), "6.0 s");
    // The same stream over WHIP: that keyframe came 0.5 s after a request, so it is the
    // relay's, and the interval is not measured yet.
    let mut e = Enc::new();
    let mut p = Preflight::new(None, Some(Codec::H264), 1, e.at(0));
    feed_h264(&mut p, &mut e, &f, 0, 0, 5500);
    p.on_keyframe_request(Layer(0), e.at(5500));
    feed_h264(&mut p, &mut e, &f, 0, 5500, 6100);
    let r = p.report(e.at(6100));
    assert_ne!(value(&r, CheckId::KeyframeInterval), "6.0 s", "{r:?}");
}

#[test]
fn every_status_has_advice_in_both_languages() {
    for id in CheckId::ALL.into_iter().chain([CheckId::KeyframeRequests]) {
        for s in [Status::Green, Status::Amber, Status::Red, Status::Unknown] {
            let (vi, en) = advice(id, s);
            assert!(!vi.is_empty() && !en.is_empty(), "{id:?} {s:?}");
            assert_ne!(vi, en, "{id:?} {s:?}");
        }
    }
}
