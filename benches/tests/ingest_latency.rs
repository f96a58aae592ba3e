//! The ingest latency benchmark (`src/bin/ingest_latency/`) runs briefly against the real
//! relay (`hallcast demo`, built with `cargo build -p hallcast`; or `$HALLCAST_BIN`) and gives
//! well-formed figures for all three paths — so it does not rot. No timing is asserted.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn hallcast_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HALLCAST_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/ingest_latency-<hash> → target/<profile>/hallcast
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    profile_dir.join("hallcast")
}

#[test]
fn a_short_run_measures_whip_rtmp_and_srt() {
    let relay = hallcast_bin();
    assert!(
        relay.is_file(),
        "{} missing: build it first (cargo build -p hallcast) or set HALLCAST_BIN",
        relay.display()
    );
    let dir = std::env::temp_dir().join(format!("hallcast-ingest-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work dir");
    let out = dir.join("result.json");
    let run = Command::new(env!("CARGO_BIN_EXE_ingest_latency"))
        .arg("--relay-bin")
        .arg(&relay)
        .args(["--rounds", "1", "--duration", "1.5", "--warmup", "0.5"])
        .args(["--join-after", "1", "--label", "smoke", "--work-dir"])
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("running the benchmark");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the benchmark failed: {}\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let result: Value =
        serde_json::from_slice(&std::fs::read(&out).expect("the JSON result")).expect("JSON");
    let runs = result["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 3, "{result}");
    for (run, path) in runs.iter().zip(["whip", "rtmp", "srt"]) {
        assert_eq!(run["path"], path);
        let sent = run["frames_sent_in_window"].as_u64().expect("frames sent");
        let l = &run["latency_ms"];
        let n = l["n"].as_u64().expect("n");
        // 1.5 s at 30 fps.
        assert!(sent >= 40, "{path}: {sent} frames sent in the window");
        assert!(n > 0 && n <= sent, "{path}: {n} of {sent} frames whole");
        let q: Vec<f64> = ["min", "p50", "p95", "p99", "max"]
            .iter()
            .map(|k| l[*k].as_f64().expect("a number"))
            .collect();
        assert!(
            q[0] > 0.0 && q.windows(2).all(|w| w[0] <= w[1]),
            "{path}: {l}"
        );
        assert_eq!(
            run["frame_latencies_ms"].as_array().map(Vec::len),
            Some(n as usize)
        );
        assert!(run["first_picture_ms"].as_f64().is_some_and(|v| v > 0.0));
        assert_eq!(run["srt_latency_ms"].is_number(), path == "srt", "{run}");
        assert!(
            stdout.contains(&format!("| {path} | {n} / {sent} |")),
            "{stdout}"
        );
    }
    for path in ["rtmp", "srt"] {
        assert!(
            result["summary"][path]["extra_over_whip_ms"]["p50"].is_number(),
            "{result}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
