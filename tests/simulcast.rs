//! `hallcast demo --simulcast`: the built-in source publishes three layers by RID, and the relay
//! takes them as three layers of one feed, ranked low to high.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use hallcast_tests::{Demo, DemoOptions, Weight, run};
use serde_json::Value;

/// How long the relay may take to measure all three layers (source start, ICE, DTLS, the first
/// second of media; a debug build on a busy 2-core machine).
const LAYERS_TIMEOUT: Duration = Duration::from_secs(40);
/// Samples (one a second) averaged once all three layers flow: the relay's figure is the last
/// second, and a keyframe second of a small layer must not decide the order.
const N_SAMPLES: usize = 6;
/// The least bitrate a layer counts as active at: the smallest layer is sent at ~150 kbit/s.
const MIN_ACTIVE_BPS: f64 = 30_000.0;

#[test]
fn demo_simulcast_reaches_the_relay_as_three_layers() {
    run(
        "demo_simulcast_reaches_the_relay_as_three_layers",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    simulcast: true,
                    ..Default::default()
                },
            )?;
            ensure!(
                demo.info.raw.get("simulcast") == Some(&Value::Bool(true)),
                "the info file of `hallcast demo --simulcast` should say \"simulcast\": true: {}",
                demo.info.raw
            );
            let conference = demo.info.conference.clone();
            let metrics_url = demo.info.url("/metrics");

            // Wait for three layers, all flowing.
            let started = Instant::now();
            loop {
                demo.ensure_running()?;
                let text = reqwest::blocking::get(&metrics_url)?.text()?;
                let layers = layer_bitrates(&text, &conference);
                if layers.len() == 3 && layers.values().all(|&b| b >= MIN_ACTIVE_BPS) {
                    break;
                }
                if started.elapsed() > LAYERS_TIMEOUT {
                    bail!(
                        "after {LAYERS_TIMEOUT:?} the relay's /metrics shows the layers {layers:?} \
                         (layer -> bit/s) for {conference}; expected 3 layers (q, h, f of the \
                         built-in source) each above {MIN_ACTIVE_BPS} bit/s"
                    );
                }
                thread::sleep(Duration::from_millis(500));
            }

            let mut sums = [0.0f64; 3];
            for _ in 0..N_SAMPLES {
                thread::sleep(Duration::from_secs(1));
                let text = reqwest::blocking::get(&metrics_url)?.text()?;
                let layers = layer_bitrates(&text, &conference);
                for (i, sum) in sums.iter_mut().enumerate() {
                    let bps = layers.get(&i).copied().unwrap_or(0.0);
                    ensure!(
                        bps >= MIN_ACTIVE_BPS,
                        "layer {i} stopped: /metrics shows {layers:?} (layer -> bit/s)"
                    );
                    *sum += bps;
                }
            }
            let avg = sums.map(|s| s / N_SAMPLES as f64);
            eprintln!(
                "relay's layer bitrates over {N_SAMPLES} s (bit/s): {:.0} / {:.0} / {:.0}",
                avg[0], avg[1], avg[2]
            );
            ensure!(
                avg[0] < avg[1] && avg[1] < avg[2],
                "the relay's average layer bitrates over {N_SAMPLES} s are {avg:?} bit/s for \
                 layers 0, 1, 2; expected them increasing (q ~150 k < h ~500 k < f ~2 M): the \
                 relay ranks RIDs q < h < f"
            );

            // The admin sessions API, where the relay has it, tells the same story.
            if let Some(token) = demo.info.raw.get("admin_token").and_then(Value::as_str) {
                let answer = reqwest::blocking::Client::new()
                    .get(demo.info.url("/api/v1/sessions"))
                    .bearer_auth(token)
                    .send()?;
                if answer.status().is_success() {
                    let body: Value = answer.json()?;
                    let layers = body["layers"][&conference].as_array().cloned();
                    let active = layers
                        .iter()
                        .flatten()
                        .filter(|l| l["active"] == Value::Bool(true))
                        .count();
                    ensure!(
                        active == 3,
                        "GET /api/v1/sessions shows {active} active layers for {conference}, \
                         expected 3: {body}"
                    );
                }
            }
            demo.ensure_running()?;
            Ok(())
        },
    );
}

/// `hallcast_layer_bitrate_bps{conference="C",layer="N"} V` for one conference: layer -> bit/s.
fn layer_bitrates(text: &str, conference: &str) -> BTreeMap<usize, f64> {
    let prefix = format!("hallcast_layer_bitrate_bps{{conference=\"{conference}\",layer=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (layer, value) = rest.split_once("\"} ")?;
            Some((layer.parse().ok()?, value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::layer_bitrates;

    #[test]
    fn reads_layer_bitrates_of_one_conference() {
        let text = "# HELP hallcast_layer_bitrate_bps x\n\
                    hallcast_layer_bitrate_bps{conference=\"a\",layer=\"0\"} 150000\n\
                    hallcast_layer_bitrate_bps{conference=\"a\",layer=\"2\"} 2000000\n\
                    hallcast_layer_bitrate_bps{conference=\"b\",layer=\"1\"} 7\n";
        let layers = layer_bitrates(text, "a");
        assert_eq!(layers.len(), 2);
        assert_eq!(layers.get(&0), Some(&150_000.0));
        assert_eq!(layers.get(&2), Some(&2_000_000.0));
    }
}
