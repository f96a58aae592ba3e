//! `EngineConfig::realtime_priority` (`media.realtime_priority`): the media shards' threads
//! run under SCHED_FIFO at that priority when the kernel allows it, and on the default policy
//! otherwise (a warning, the relay still serving); without the setting they keep the
//! default policy. Read from `/proc/self/task/*/stat` (policy and rt_priority, fields 41 and
//! 40), so the threads are found by name (`hallcast-media-N`, cut to 15 bytes by the kernel).
//! One test in this binary: no other engine's threads are in the process.

use std::time::{Duration, Instant};

use hallcast_rtc::{Engine, EngineConfig};
use tokio::sync::mpsc;

/// (policy, rt_priority) of every thread of this process whose name starts with
/// "hallcast-media".
fn media_threads() -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("task").path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.starts_with("hallcast-media") {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Fields after the command's closing parenthesis start at field 3 (state).
        let rest = &stat[stat.rfind(')').expect("stat") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| f[n - 3].parse::<u32>().expect("number");
        out.push((field(41), field(40)));
    }
    out
}

/// Whether the kernel lets a thread of this process take SCHED_FIFO at `priority` (asked on a
/// scratch thread: CAP_SYS_NICE or RLIMIT_RTPRIO, and a cgroup with real-time time to give,
/// all decide it).
#[allow(unsafe_code)]
fn may_use_fifo(priority: u8) -> bool {
    std::thread::spawn(move || {
        let param = libc::sched_param {
            sched_priority: i32::from(priority),
        };
        // SAFETY: a valid `sched_param` for the call; pid 0 is this scratch thread.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
    })
    .join()
    .expect("scratch thread")
}

/// Waits until `n` media threads exist and have passed their start (a thread sets its
/// policy first thing).
async fn threads_of(n: usize) -> Vec<(u32, u32)> {
    let start = Instant::now();
    loop {
        let t = media_threads();
        if t.len() >= n || start.elapsed() > Duration::from_secs(5) {
            // The policy is set before the runtime starts; give the last one that moment.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return media_threads();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An engine of two shards with `realtime_priority`, and its media threads' (policy,
/// rt_priority) once both have started. The events' receiver is kept with the engine.
async fn two_shards(
    realtime_priority: u8,
) -> (
    Engine,
    mpsc::Receiver<hallcast_rtc::EngineEvent>,
    Vec<(u32, u32)>,
) {
    let (tx, rx) = mpsc::channel(64);
    let engine = Engine::start(
        EngineConfig {
            threads: 2,
            realtime_priority,
            ..EngineConfig::default()
        },
        tx,
    )
    .expect("an engine starts, whatever the kernel says to its priority");
    let t = threads_of(2).await;
    assert_eq!(t.len(), 2, "two media threads: {t:?}");
    (engine, rx, t)
}

#[tokio::test]
async fn media_threads_run_under_sched_fifo_when_asked_and_allowed() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_FIFO: u32 = 1;

    // Without the setting: the default policy.
    let (engine, _rx, t) = two_shards(0).await;
    assert!(t.iter().all(|&(p, _)| p == SCHED_OTHER), "{t:?}");
    engine.shutdown().await;
    let start = Instant::now();
    while !media_threads().is_empty() && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        media_threads().is_empty(),
        "the first engine's threads ended"
    );

    // With it.
    let (engine, _rx, t) = two_shards(7).await;
    if may_use_fifo(7) {
        assert!(t.iter().all(|&x| x == (SCHED_FIFO, 7)), "{t:?}");
    } else {
        assert!(t.iter().all(|&(p, _)| p == SCHED_OTHER), "{t:?}");
    }
    // Either way every shard's loop runs: a command goes to each and each answers.
    assert_eq!(engine.end_conference("nothing-live").await.ok(), Some(0));
    engine.shutdown().await;
}
