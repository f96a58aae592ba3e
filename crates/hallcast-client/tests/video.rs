//! The test card survives a round trip through OpenH264, shows the time, and keeps its GOP.

use std::time::Duration;

use hallcast_client::card::{Rect, TestCard};

use hallcast_client::h264::{EncoderSettings, H264Encoder, NAL_IDR, NAL_SPS, nal_unit_types};
use openh264::decoder::Decoder;
use openh264::formats::YUVSource;

/// Luma of a decoded picture, copied out without stride padding.
fn decoded_luma(decoder: &mut Decoder, au: &[u8]) -> (usize, usize, Vec<u8>) {
    let picture = decoder
        .decode(au)
        .expect("a well-formed access unit decodes")
        .expect("every access unit yields a picture (no reordering in baseline)");
    let (w, h) = picture.dimensions();
    let stride = picture.strides().0;
    let mut luma = Vec::with_capacity(w * h);
    for row in 0..h {
        luma.extend_from_slice(&picture.y()[row * stride..row * stride + w]);
    }
    (w, h, luma)
}

/// Pixels of `r` whose luma differs by more than a quantisation error could explain.
fn n_changed(a: &[u8], b: &[u8], width: usize, r: Rect) -> usize {
    let mut n = 0;
    for y in r.y..r.y + r.h {
        for x in r.x..r.x + r.w {
            let i = y * width + x;
            n += usize::from(a[i].abs_diff(b[i]) > 64);
        }
    }
    n
}

#[test]
fn card_round_trips_through_openh264_and_the_clock_moves() {
    let (width, height, fps) = (640, 360, 30);
    let mut card = TestCard::new(width, height, fps, "ROUND TRIP");
    let mut encoder = H264Encoder::new(EncoderSettings {
        fps,
        bitrate_bps: 1_000_000,
        idr_interval_frames: 60,
    })
    .expect("encoder");
    let mut decoder = Decoder::new().expect("decoder");

    // 12:34:56.789 UTC, then one second (30 frames) later.
    let t0 = Duration::from_millis(45_296_789);
    let mut decoded = Vec::new();
    for i in 0..=30u64 {
        let wall = t0 + Duration::from_millis(i * 1000 / 30);
        let frame = encoder.encode(card.render(i, wall)).expect("encode");
        assert!(!frame.data.is_empty(), "frame {i} is empty");
        decoded.push(decoded_luma(&mut decoder, &frame.data));
    }

    let (w, h, first) = &decoded[0];
    assert_eq!((*w, *h), (width, height), "decoded picture size");
    let (_, _, later) = &decoded[30];
    let changed_clock = n_changed(first, later, width, card.clock_rect());
    // The seconds digit (and the milliseconds) changed: hundreds of pixels flip.
    assert!(
        changed_clock > 200,
        "clock area barely changed: {changed_clock} px"
    );
    // Control: the static label line is the same after a lossy round trip.
    let label = card.label_rect();
    assert!(label.w > 0 && label.h > 0);
    assert_eq!(n_changed(first, later, width, label), 0, "label area moved");
}

#[test]
fn first_frame_is_idr_and_a_ten_second_gop_has_no_other_idr() {
    let fps = 30;
    let mut card = TestCard::new(320, 180, fps, "GOP");
    let mut encoder = H264Encoder::new(EncoderSettings {
        fps,
        bitrate_bps: 500_000,
        idr_interval_frames: 10 * fps, // keyframe_interval = 10 s
    })
    .expect("encoder");

    let mut idr_frames = Vec::new();
    for i in 0..=300u64 {
        let frame = encoder
            .encode(card.render(i, Duration::from_millis(i * 33)))
            .expect("encode");
        let types: Vec<u8> = nal_unit_types(&frame.data).collect();
        assert!(!types.is_empty(), "frame {i} has no NAL units");
        assert_eq!(frame.is_idr, types.contains(&NAL_IDR), "frame {i}");
        if types.contains(&NAL_IDR) {
            assert!(types.contains(&NAL_SPS), "IDR {i} without SPS");
            idr_frames.push(i);
        }
    }
    // Frame 0 is an IDR, frames 1..=299 are not, and the GOP really is 300 frames long.
    assert_eq!(idr_frames, vec![0, 300]);
}

#[test]
fn a_requested_keyframe_is_an_idr() {
    let mut card = TestCard::new(320, 180, 30, "PLI");
    let mut encoder = H264Encoder::new(EncoderSettings {
        fps: 30,
        bitrate_bps: 500_000,
        idr_interval_frames: 300,
    })
    .expect("encoder");
    for i in 0..5 {
        let f = encoder
            .encode(card.render(i, Duration::ZERO))
            .expect("encode");
        assert_eq!(f.is_idr, i == 0);
    }
    encoder.request_keyframe();
    let f = encoder
        .encode(card.render(5, Duration::ZERO))
        .expect("encode");
    assert!(f.is_idr);
}
