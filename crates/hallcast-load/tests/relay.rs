//! Against a real relay (`hallcast demo --no-source`): the looping publisher goes live and
//! three subscribers, started before it (so they meet 409 first), each receive media and a
//! keyframe, and the relay's counters agree with what they received.
//!
//! The relay binary: `$HALLCAST_BIN`, else `hallcast` in this test's target directory
//! (`debug/`, then `release/`). Build it with `cargo build -p hallcast`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hallcast_load::publish::{self, PublishOptions};
use hallcast_load::subscribe::{self, SubscribeOptions};
use serde::Deserialize;

struct Relay {
    child: Child,
    dir: PathBuf,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Deserialize)]
struct Info {
    whip_url: String,
    stream_key: String,
    whep_url: String,
    viewer_token: String,
    http_base: String,
}

fn relay_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HALLCAST_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "HALLCAST_BIN={} is not a file", p.display());
        return p;
    }
    // This test runs as <target>/<profile>/deps/relay-<hash>.
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe
        .parent()
        .and_then(|d| d.parent())
        .and_then(|d| d.parent())
        .expect("target dir");
    let candidates = [
        target.join("debug/hallcast"),
        target.join("release/hallcast"),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "the relay binary was not found (looked at {:?}); build it with `cargo build -p hallcast` \
             (same CARGO_TARGET_DIR) or set HALLCAST_BIN",
            candidates
        )
    })
}

fn start_relay() -> (Relay, Info) {
    let dir = std::env::temp_dir().join(format!("hallcast-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let info_path = dir.join("info.json");
    let log = std::fs::File::create(dir.join("relay.log")).expect("log file");
    let child = Command::new(relay_bin())
        .args([
            "demo",
            "--no-source",
            "--http",
            "127.0.0.1:0",
            "--media",
            "127.0.0.1:0",
            "--info-file",
        ])
        .arg(&info_path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting the relay");
    let mut relay = Relay { child, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(bytes) = std::fs::read(&info_path) {
            return (
                relay,
                serde_json::from_slice(&bytes).expect("demo info JSON"),
            );
        }
        if let Ok(Some(status)) = relay.child.try_wait() {
            let log = std::fs::read_to_string(relay.dir.join("relay.log")).unwrap_or_default();
            panic!("the relay exited ({status}):\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "the relay wrote no info file within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn three_subscribers_get_media_and_a_keyframe() {
    let (_relay, info) = start_relay();
    let sub_opts = SubscribeOptions {
        whep_url: info.whep_url.clone(),
        token: info.viewer_token.clone(),
        n_subscribers: 3,
        ramp_per_sec: 50.0,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(3),
        metrics_url: Some(format!("{}/metrics", info.http_base)),
        join_timeout: Duration::from_secs(15),
        ..SubscribeOptions::default()
    };
    let pub_opts = PublishOptions {
        whip_url: info.whip_url.clone(),
        stream_key: info.stream_key.clone(),
        bind_ip: sub_opts.bind_ip,
        duration: None,
        join_timeout: Duration::from_secs(15),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let subscribers = async {
        let r = subscribe::run(&sub_opts).await;
        let _ = stop_tx.send(true);
        r
    };
    let publisher = async {
        // The subscribers POST first and are told 409 until the publisher is live.
        tokio::time::sleep(Duration::from_millis(500)).await;
        publish::run(&pub_opts, stop_rx).await
    };
    let (report, published) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(subscribers, publisher)
    })
    .await
    .expect("the run ended within 60 s");
    let report = report.expect("subscriber run");
    let published = published.expect("publisher run");
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();

    assert!(
        published.video_frames > 60 && published.audio_packets > 100,
        "publisher sent too little: {published:?}"
    );
    assert!(report.failures.is_empty(), "failures: {json}");
    assert_eq!(report.n_connected, 3, "{json}");
    assert_eq!(
        report.n_with_keyframe, 3,
        "every subscriber times a first keyframe: {json}"
    );
    assert!(
        report.ttfk_ms.max > 0.0 && report.ttfk_ms.max < 10_000.0,
        "{json}"
    );
    let window = report.window.as_ref().expect("a measurement window");
    assert_eq!(window.n_subscribers_measured, 3, "{json}");
    // ~210 video + 50 audio packets a second each; 3 s window.
    assert!(
        window.min_packets_per_subscriber > 300,
        "each subscriber receives packets: {json}"
    );
    assert!(
        window.audio_packets > 0 && window.video_packets > window.audio_packets,
        "{json}"
    );
    assert!(
        window.seq_delivery_ratio > 0.99,
        "no loss on loopback: {json}"
    );
    let relay = window.relay.as_ref().expect("relay counters");
    assert!(
        relay.forwarded_packets > 0 && relay.t1.n_subscribers == 3 && relay.t1.live,
        "{json}"
    );
    assert!(
        (0.95..=1.05).contains(&relay.delivered_ratio),
        "subscribers received about what the relay forwarded: {json}"
    );
    // The relay forwarded to 3 subscribers for the whole window, so it used CPU (its counter
    // ticks every 10 ms), and a process cannot use more than every core for the whole window.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(
        relay.cpu_seconds > 0.0 && relay.cpu_seconds < window.secs * cores,
        "the relay's CPU over the {:.1} s window is {} s; expected above 0 and below {:.1} s \
         ({cores} cores): {json}",
        window.secs,
        relay.cpu_seconds,
        window.secs * cores
    );
    assert!(relay.t1.rss_bytes > 0, "{json}");
}
