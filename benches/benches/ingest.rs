//! The RTMP/SRT ingest's audio transcode (issue 15): AAC-LC decode (symphonia), resampling to
//! 48 kHz (rubato) and Opus encoding (opus-rs), per second of audio. It dominates the ingest's
//! CPU: the H.264 video passes through untouched. Input: 1 s of a 440 Hz tone, 44.1 kHz
//! stereo AAC at 96 kbit/s (what ffmpeg and OBS send by default), and the same at 48 kHz
//! (no resampling) for comparison. The figure to read: time per iteration = CPU time per
//! second of audio.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hallcast_ingest::aac::AacToOpus;
use hallcast_ingest::adts;

const STEREO_44K1_1S: &[u8] =
    include_bytes!("../../crates/hallcast-ingest/testdata/sine-440hz-44k1-stereo-1s.aac");
const STEREO_48K_HALF_S: &[u8] =
    include_bytes!("../../crates/hallcast-ingest/testdata/sine-440hz-48k-stereo.aac");

fn frames(mut buf: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut asc = Vec::new();
    let mut out = Vec::new();
    while let Ok(f) = adts::parse(buf) {
        asc = f.asc.to_vec();
        out.push(f.frame.to_vec());
        buf = &buf[f.len..];
    }
    (asc, out)
}

/// Transcodes `frames` (as one continuous stream starting at `start`) into `t`.
fn run(t: &mut AacToOpus, frames: &[Vec<u8>], rate: i64, start: &mut i64) -> usize {
    let mut n = 0;
    for f in frames {
        n += t.push(*start, f).map(|p| p.len()).unwrap_or(0);
        *start += 1024 * 90_000 / rate;
    }
    n
}

fn transcode(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest_aac_to_opus");
    let (asc, f44) = frames(STEREO_44K1_1S);
    let mut t = AacToOpus::new(&asc).expect("AAC-LC");
    let mut ts = 0;
    g.bench_function("1s_44k1_stereo_96k", |b| {
        b.iter(|| black_box(run(&mut t, &f44, 44_100, &mut ts)))
    });
    let (asc, f48) = frames(STEREO_48K_HALF_S);
    let mut t = AacToOpus::new(&asc).expect("AAC-LC");
    let mut ts = 0;
    // Half a second of input, twice: one second.
    g.bench_function("1s_48k_stereo_96k", |b| {
        b.iter(|| {
            black_box(run(&mut t, &f48, 48_000, &mut ts));
            black_box(run(&mut t, &f48, 48_000, &mut ts))
        })
    });
    g.finish();
}

criterion_group!(benches, transcode);
criterion_main!(benches);
