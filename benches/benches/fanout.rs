//! Per-packet fan-out cost of the core: one publisher packet rewritten for every
//! consumer (sequence/timestamp rewrite + shared payload) and pushed to the output
//! buffer. Sweeps 10/100/500/1000 viewers; the figure to read is time per packet
//! divided by the consumer count (reported as throughput in elements). A second group
//! feeds three simulcast layers to relay consumers, which receive every layer. A third
//! measures what the encoder pre-flight analysis (`hallcast_core::preflight`) adds per
//! publisher packet on the ingest path, to compare with the fan-out's cost of that packet.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hallcast_core::preflight::Preflight;
use hallcast_core::{Codec, ConsumerId, Layer, MediaKind, Outputs, Router, SourcePacket};

fn packet(layer: u8, seq: u64, t0: Instant, payload: &Arc<[u8]>, key: bool) -> SourcePacket {
    SourcePacket {
        kind: MediaKind::Video,
        layer: Layer(layer),
        seq,
        ts: (seq as u32 / 5) * 3000,
        marker: seq % 5 == 4,
        keyframe_start: key,
        payload: payload.clone(),
        arrival: t0 + Duration::from_micros(seq * 600),
    }
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_video_packet");
    let payload: Arc<[u8]> = Arc::from(vec![0x41u8; 1100].into_boxed_slice());
    for n in [10u64, 100, 500, 1000] {
        let t0 = Instant::now();
        let mut router = Router::new();
        let mut out = Outputs::default();
        router.source_started(Some(Codec::Opus), Some(Codec::H264), t0, &mut out);
        router.on_packet(&packet(0, 1, t0, &payload, true), &mut out);
        for id in 0..n {
            router.add_viewer(ConsumerId(id.into()), t0, &mut out);
        }
        out.clear();
        let mut seq = 2u64;
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                seq += 1;
                // A keyframe every 3000 packets keeps the GOP cache bounded, like a
                // real encoder.
                let p = packet(0, seq, t0, &payload, seq.is_multiple_of(3000));
                router.on_packet(black_box(&p), &mut out);
                black_box(out.forwards.len());
                out.clear();
            })
        });
    }
    group.finish();
}

/// Relay consumers: the source sends three layers in turn, each packet goes to every
/// relay consumer (on that layer's stream).
fn fanout_relay(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_video_packet_relay_consumers");
    let payload: Arc<[u8]> = Arc::from(vec![0x41u8; 1100].into_boxed_slice());
    for n in [1u64, 10, 100] {
        let t0 = Instant::now();
        let mut router = Router::new();
        let mut out = Outputs::default();
        router.source_started(Some(Codec::Opus), Some(Codec::H264), t0, &mut out);
        for layer in 0..3 {
            router.on_packet(&packet(layer, 1, t0, &payload, true), &mut out);
        }
        for id in 0..n {
            router.add_relay_consumer(ConsumerId(id.into()), t0, &mut out);
        }
        out.clear();
        let mut seq = 2u64;
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                seq += 1;
                let layer = (seq % 3) as u8;
                let p = packet(
                    layer,
                    seq / 3 + 1,
                    t0,
                    &payload,
                    (seq / 3).is_multiple_of(3000),
                );
                router.on_packet(black_box(&p), &mut out);
                black_box(out.forwards.len());
                out.clear();
            })
        });
    }
    group.finish();
}

/// A real SPS (x264, 1280x720) and a PPS in a STAP-A, as a keyframe's first packet.
const STAP_A_SPS_PPS: [u8; 34] = [
    0x78, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00,
    0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60, 0x00, 0x03, 0x68,
    0xeb, 0xe3,
];

/// The pre-flight analysis per publisher packet: video (five packets a frame, a slice
/// header sampled on one frame in seven, a keyframe with its SPS every 3000 packets) and
/// audio (with an RFC 6464 level).
fn preflight(c: &mut Criterion) {
    let mut group = c.benchmark_group("preflight_packet");
    let slice: Arc<[u8]> = {
        let mut p = vec![0x7c, 0x81, 0x9a, 0x21];
        p.resize(1100, 0x41);
        Arc::from(p.into_boxed_slice())
    };
    let sps: Arc<[u8]> = Arc::from(&STAP_A_SPS_PPS[..]);
    let opus: Arc<[u8]> = Arc::from(vec![0xfcu8; 90].into_boxed_slice());
    let t0 = Instant::now();
    let mut pf = Preflight::new(Some(Codec::Opus), Some(Codec::H264), 1, t0);
    let mut seq = 1u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("video", |b| {
        b.iter(|| {
            seq += 1;
            let key = seq.is_multiple_of(3000);
            let p = packet(0, seq, t0, if key { &sps } else { &slice }, key);
            pf.on_packet(black_box(&p), None);
        })
    });
    let mut aseq = 1u64;
    group.bench_function("audio", |b| {
        b.iter(|| {
            aseq += 1;
            let p = SourcePacket {
                kind: MediaKind::Audio,
                layer: Layer(0),
                seq: aseq,
                ts: (aseq * 960) as u32,
                marker: false,
                keyframe_start: false,
                payload: opus.clone(),
                arrival: t0 + Duration::from_millis(aseq * 20),
            };
            pf.on_packet(black_box(&p), Some(30));
        })
    });
    group.finish();
}

criterion_group!(benches, fanout, fanout_relay, preflight);
criterion_main!(benches);
