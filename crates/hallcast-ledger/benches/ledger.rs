//! Attendance benchmarks: core fold throughput, report generation for 1,000 points × 100
//! events, and durable events/s with group commit on SQLite and PostgreSQL.
//!
//! `cargo bench -p hallcast-ledger --bench ledger`. The PostgreSQL group runs when
//! `HALLCAST_TEST_PG_URL` is set (see scripts/pg-test-setup.sh) and says so when it is not.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hallcast_core::accounting::{
    ConferenceId, EndReason, Event, EventId, EventKind, Folder, OrgId, Organisation, PointId,
    PointInfo, ReportConfig, SessionChange, SessionId, build_report,
};
use hallcast_ledger::{Ledger, LedgerConfig, Secret, StoreConfig, new_event_id};

const T0: i64 = 1_700_000_000_000;

/// A realistic conference: `n_points` points, about `per_point` events each (sessions with
/// first video sent, freezes, audio-only spells, timeouts and rejoins, headcounts).
fn history(n_points: usize, per_point: usize) -> Vec<Event> {
    let c = ConferenceId::parse("bench").unwrap();
    let mut id = 1u128;
    let mut next = || {
        id += 1;
        EventId(id.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
    };
    let mut out = vec![Event {
        event_id: next(),
        conference: c.clone(),
        at_ms: T0,
        kind: EventKind::BroadcastStarted,
    }];
    for p in 0..n_points {
        let point = PointId::parse(&format!("p{p:04}")).unwrap();
        let mut t = T0 + (p as i64 % 500) * 7;
        let mut s = 0;
        let mut n = 0;
        while n < per_point {
            let session = SessionId(((p as u128) << 32) | s as u128);
            let mut push = |at: i64, change| {
                out.push(Event::session_event(
                    next(),
                    c.clone(),
                    point.clone(),
                    session,
                    at,
                    change,
                ));
            };
            push(t, SessionChange::Started);
            push(t + 300, SessionChange::MediaFlowing);
            push(t + 700, SessionChange::FirstVideoSent { after_ms: 700 });
            n += 3;
            for k in 0..6 {
                let at = t + 1_000 + k * 20_000;
                push(at, SessionChange::Frozen);
                push(at + 1_500, SessionChange::Unfrozen);
                push(at + 5_000, SessionChange::AudioOnly);
                push(at + 9_000, SessionChange::VideoResumed);
                n += 4;
            }
            t += 130_000;
            push(
                t,
                SessionChange::Ended {
                    reason: EndReason::Timeout,
                },
            );
            n += 1;
            t += 15_000;
            s += 1;
        }
        out.push(Event {
            event_id: next(),
            conference: c.clone(),
            at_ms: T0 + 5_000,
            kind: EventKind::Headcount {
                point: point.clone(),
                n_people: 20,
            },
        });
    }
    out.push(Event {
        event_id: next(),
        conference: c,
        at_ms: T0 + 4 * 3_600_000,
        kind: EventKind::BroadcastEnded,
    });
    out
}

fn registry(n_points: usize) -> (Vec<Organisation>, Vec<PointInfo>) {
    let orgs: Vec<Organisation> = (0..61)
        .map(|o| Organisation {
            id: OrgId::parse(&format!("o{o}")).unwrap(),
            name: format!("Đảng ủy {o}"),
        })
        .collect();
    let points = (0..n_points)
        .map(|p| PointInfo {
            id: PointId::parse(&format!("p{p:04}")).unwrap(),
            org: orgs[p % 61].id.clone(),
            name: format!("Điểm cầu {p}"),
            location: String::new(),
            expected_headcount: Some(25),
        })
        .collect();
    (orgs, points)
}

fn fold_bench(c: &mut Criterion) {
    let events = history(1_000, 100);
    let mut shuffled = events.clone();
    // Deterministic interleaving: reverse chunks so the fold must sort.
    for chunk in shuffled.chunks_mut(64) {
        chunk.reverse();
    }
    let conference = ConferenceId::parse("bench").unwrap();
    let as_of = T0 + 5 * 3_600_000;
    let mut g = c.benchmark_group("fold");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function(BenchmarkId::new("in_order", events.len()), |b| {
        b.iter(|| {
            let mut f = Folder::with_capacity(conference.clone(), events.len());
            f.extend(&events);
            f.finish(as_of)
        })
    });
    g.bench_function(BenchmarkId::new("out_of_order", events.len()), |b| {
        b.iter(|| {
            let mut f = Folder::with_capacity(conference.clone(), shuffled.len());
            f.extend(&shuffled);
            f.finish(as_of)
        })
    });
    g.finish();

    let (orgs, points) = registry(1_000);
    let mut g = c.benchmark_group("report");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("fold_and_build_1000x100", |b| {
        b.iter(|| {
            let mut f = Folder::with_capacity(conference.clone(), shuffled.len());
            f.extend(&shuffled);
            build_report(&f.finish(as_of), &orgs, &points, &ReportConfig::default())
        })
    });
    g.finish();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Durable throughput: `n` events emitted (the relay's path), then `flush` (all committed).
async fn emit_and_flush(ledger: &Ledger, n: usize) -> Duration {
    let c = ConferenceId::parse("durable").unwrap();
    let p = PointId::parse("p").unwrap();
    let s = SessionId(1);
    let evs: Vec<Event> = (0..n)
        .map(|i| {
            Event::session_event(
                new_event_id(),
                c.clone(),
                p.clone(),
                s,
                T0 + i as i64,
                SessionChange::Frozen,
            )
        })
        .collect();
    let sink = ledger.sink();
    let start = Instant::now();
    for ev in evs {
        // The queue holds 65,536; for bigger runs wait for room like a paced producer.
        while let Err(e) = sink.emit(ev.clone()) {
            assert_eq!(e, hallcast_ledger::EmitError::Full);
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    ledger.flush().await.unwrap();
    start.elapsed()
}

/// Durable throughput with acknowledgements: `n_tasks` concurrent `append().await` loops.
async fn concurrent_appends(ledger: &Ledger, n: usize, n_tasks: usize) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..n_tasks {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let c = ConferenceId::parse("acked").unwrap();
            let p = PointId::parse(&format!("p{t}")).unwrap();
            let s = SessionId(1);
            for i in 0..n / n_tasks {
                ledger
                    .append(Event::session_event(
                        new_event_id(),
                        c.clone(),
                        p.clone(),
                        s,
                        T0 + i as i64,
                        SessionChange::Unfrozen,
                    ))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn durable_group(c: &mut Criterion, name: &str, store: StoreConfig) {
    let rt = runtime();
    let ledger = rt
        .block_on(Ledger::open(LedgerConfig::new(store, Secret::random())))
        .unwrap();
    let mut g = c.benchmark_group(format!("durable_{name}"));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    const N: usize = 50_000;
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("emit_then_flush_50k", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(emit_and_flush(&ledger, N)))
                .sum()
        })
    });
    const M: usize = 20_000;
    g.throughput(Throughput::Elements(M as u64));
    for n_tasks in [256usize, 1024] {
        g.bench_function(format!("append_acked_{n_tasks}_tasks_20k"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| rt.block_on(concurrent_appends(&ledger, M, n_tasks)))
                    .sum()
            })
        });
    }
    g.finish();

    // Report generation from the store: 1,000 points × 100 events.
    let events = history(1_000, 100);
    let (orgs, points) = registry(1_000);
    rt.block_on(async {
        for o in orgs {
            ledger.upsert_organisation(o).await.unwrap();
        }
        for p in points {
            ledger.upsert_point(p).await.unwrap();
        }
        let sink = ledger.sink();
        for ev in events.iter() {
            while sink.emit(ev.clone()).is_err() {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        ledger.flush().await.unwrap();
    });
    let conference = ConferenceId::parse("bench").unwrap();
    let mut g = c.benchmark_group(format!("report_from_{name}"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("1000x100", |b| {
        b.iter(|| {
            rt.block_on(ledger.report(&conference, T0 + 5 * 3_600_000, ReportConfig::default()))
                .unwrap()
        })
    });
    g.finish();
    rt.block_on(ledger.close()).unwrap();
}

fn durable_bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    durable_group(c, "sqlite", StoreConfig::sqlite_in(dir.path()));
    match std::env::var("HALLCAST_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => {
            let schema = format!("bench_{}", std::process::id());
            durable_group(
                c,
                "postgres",
                StoreConfig::Postgres {
                    url: url.clone(),
                    schema: Some(schema.clone()),
                },
            );
            // Leave the test database clean.
            let _ = std::thread::spawn(move || {
                if let Ok(mut client) = postgres::Client::connect(&url, postgres::NoTls) {
                    let _ = client.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"));
                }
            })
            .join();
        }
        _ => eprintln!(
            "durable_postgres: skipped (set HALLCAST_TEST_PG_URL, e.g. eval \"$(scripts/pg-test-setup.sh)\")"
        ),
    }
}

criterion_group!(benches, fold_bench, durable_bench);
criterion_main!(benches);
