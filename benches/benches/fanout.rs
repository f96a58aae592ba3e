//! Per-packet fan-out cost of the core: one publisher packet rewritten for every
//! consumer (sequence/timestamp rewrite + shared payload) and pushed to the output
//! buffer. Sweeps 10/100/500/1000 viewers; the figure to read is time per packet
//! divided by the consumer count (reported as throughput in elements). A second group
//! feeds three simulcast layers to relay consumers, which receive every layer.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
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

criterion_group!(benches, fanout, fanout_relay);
criterion_main!(benches);
