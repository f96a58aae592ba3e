//! Observability (issue 12, item 5): `/metrics` of a known scenario parsed by the Prometheus
//! client library's own text parser, with the documented series present and the right values;
//! `/readyz` of a central and of an edge; `--log-format json` (and `[log] format = "json"`)
//! printing only JSON lines on stderr; the Grafana dashboard querying only series the relay
//! documents and exports.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::obs::{
    Exposition, Relay, dashboard_metrics, documented_series, non_json_lines, parse_exposition,
    series_of,
};
use hallcast_tests::{Client, ClientKind, Ctx, Demo, DemoOptions, Weight, run};
use serde_json::Value;

/// The edge's name in the tree (its `edge` label at the central).
const EDGE: &str = "edge-obs";
/// aiortc viewers at the central, and at the edge.
const N_CENTRAL: usize = 2;
const N_EDGE: usize = 1;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn get(url: &str) -> Result<(u16, String)> {
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?
        .get(url)
        .send()
        .with_context(|| format!("GET {url}: no answer"))?;
    Ok((r.status().as_u16(), r.text()?))
}

fn scrape(base: &str) -> Result<Exposition> {
    let (status, text) = get(&format!("{base}/metrics"))?;
    ensure!(status == 200, "GET {base}/metrics answered {status}");
    parse_exposition(&text)
}

/// An aiortc viewer of `whep` that plays until stopped (90 s at most).
fn viewer(ctx: &Ctx, whep: &str, token: &str) -> Result<Client> {
    Client::start(
        ctx,
        ClientKind::Aiortc,
        "whep_play.py",
        &strings(&[
            "--url",
            whep,
            "--token",
            token,
            "--duration",
            "90",
            "--wait-live",
            "--progress",
        ]),
    )
}

/// Collects what differs from the expected values.
struct Expect<'a> {
    m: &'a Exposition,
    relay: &'static str,
    problems: Vec<String>,
}

impl Expect<'_> {
    fn value(&mut self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let v = self.m.value(name, labels);
        if v.is_none() {
            self.problems
                .push(format!("{}: no sample {name}{labels:?}", self.relay));
        }
        v
    }

    fn eq(&mut self, name: &str, labels: &[(&str, &str)], want: f64) {
        if let Some(v) = self.value(name, labels)
            && v != want
        {
            self.problems.push(format!(
                "{}: {name}{labels:?} = {v}, expected {want}",
                self.relay
            ));
        }
    }

    fn within(&mut self, name: &str, labels: &[(&str, &str)], lo: f64, hi: f64) -> Option<f64> {
        let v = self.value(name, labels)?;
        if !(lo..=hi).contains(&v) {
            self.problems.push(format!(
                "{}: {name}{labels:?} = {v}, expected within [{lo}, {hi}]",
                self.relay
            ));
        }
        Some(v)
    }
}

/// `hallcast demo` with its built-in source (one H.264 layer and Opus), an edge under it on
/// loopback, two aiortc viewers at the central and one at the edge. Both relays' `/metrics` are
/// parsed by `prometheus_client`; the documented series are exactly those exported, each once,
/// with HELP; the per-conference and per-edge values are the scenario's; after the central's
/// viewers leave, its viewer count is 0 and its bytes-forwarded counter has not gone back.
#[test]
fn metrics_of_a_demo_with_viewers_and_an_edge_parse_with_prometheus_client() {
    run(
        "metrics_of_a_demo_with_viewers_and_an_edge_parse_with_prometheus_client",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::start(ctx, DemoOptions::default())?;
            let info = demo.info.clone();
            let conf = info.conference.clone();
            let central = info.http_base.clone();
            let credential = info.raw["relay_credential"]
                .as_str()
                .context("the demo's info file has no relay_credential")?
                .to_string();
            let edge_data = ctx.path("edge-data");
            let mut edge = Relay::start(
                ctx,
                "hallcast edge",
                &strings(&[
                    "edge",
                    "--parent",
                    &central,
                    "--credential",
                    &credential,
                    "--name",
                    EDGE,
                    "--http",
                    "127.0.0.1:0",
                    "--media",
                    "127.0.0.1:0",
                    "--data-dir",
                    &edge_data.display().to_string(),
                ]),
            )?;
            let edge_base = edge.base();

            // The edge is ready once its parent answered; it pulls the live conference.
            let started = Instant::now();
            loop {
                let (status, body) = get(&format!("{edge_base}/readyz"))?;
                let live = scrape(&edge_base)?
                    .value("hallcast_conference_live", &[("conference", &conf)])
                    .unwrap_or(0.0);
                if status == 200 && live == 1.0 {
                    let v: Value = serde_json::from_str(&body)?;
                    ensure!(
                        v["role"] == "edge"
                            && v["checks"].as_array().is_some_and(|c| c
                                .iter()
                                .any(|c| c["name"] == "parent" && c["ok"] == true)),
                        "the edge's /readyz body does not report its parent connected: {body}"
                    );
                    break;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    bail!(
                        "after 30 s the edge's /readyz is {status} {body} and the conference is \
                         live there: {live}"
                    );
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            let (status, body) = get(&format!("{central}/readyz"))?;
            ensure!(
                status == 200 && body.contains("\"role\":\"central\""),
                "the central's /readyz: {status} {body}"
            );

            let edge_whep = format!("{edge_base}/whep/{conf}");
            let mut central_viewers = Vec::new();
            for _ in 0..N_CENTRAL {
                central_viewers.push(viewer(ctx, &info.whep_url, &info.viewer_token)?);
            }
            let mut edge_viewers = Vec::new();
            for _ in 0..N_EDGE {
                edge_viewers.push(viewer(ctx, &edge_whep, &info.viewer_token)?);
            }
            for (i, v) in central_viewers
                .iter_mut()
                .chain(edge_viewers.iter_mut())
                .enumerate()
            {
                v.wait_for(
                    &format!("viewer {i} to decode 10 frames"),
                    Duration::from_secs(60),
                    |ev| ev["event"] == "progress" && ev["frames_decoded"].as_u64() >= Some(10),
                )?;
            }

            let documented = documented_series()?;
            ensure!(
                documented.len() > 40,
                "docs/OBSERVABILITY.md lists only {} series",
                documented.len()
            );
            let dashboard = dashboard_metrics()?;
            let n = |x: usize| x as f64;
            let c = [("conference", conf.as_str())];
            let e = [("edge", EDGE)];
            // The values settle within a few report and snapshot periods (1 s, 0.5 s).
            let started = Instant::now();
            let (at_central, sent_before) = loop {
                let cm = scrape(&central)?;
                let em = scrape(&edge_base)?;
                let mut problems = Vec::new();

                // The exposition itself: every family once, with HELP; the documented series
                // are exactly those the two relays export.
                for (m, relay) in [(&cm, "central"), (&em, "edge")] {
                    let dup = m.duplicates();
                    if !dup.is_empty() {
                        problems.push(format!("{relay}: series exposed twice: {dup:?}"));
                    }
                    for f in m.families.iter().filter(|f| f.help.trim().is_empty()) {
                        problems.push(format!("{relay}: {} has no HELP", f.series));
                    }
                }
                let exported: BTreeSet<String> = cm.series().union(&em.series()).cloned().collect();
                let undocumented: Vec<_> = exported.difference(&documented).collect();
                let missing: Vec<_> = documented.difference(&exported).collect();
                if !undocumented.is_empty() {
                    problems.push(format!(
                        "exported but not in docs/OBSERVABILITY.md: {undocumented:?}"
                    ));
                }
                if !missing.is_empty() {
                    problems.push(format!(
                        "documented but exported by neither relay: {missing:?}"
                    ));
                }
                let not_exported: Vec<_> = dashboard
                    .iter()
                    .filter(|q| !exported.contains(&series_of(q, &exported)))
                    .collect();
                if !not_exported.is_empty() {
                    problems.push(format!(
                        "deploy/grafana/hallcast.json queries series no relay exports: {not_exported:?}"
                    ));
                }
                for (series, kind) in [
                    ("hallcast_conference_sent_bytes_total", "counter"),
                    ("hallcast_conference_viewers", "gauge"),
                    ("hallcast_edge_up", "gauge"),
                    ("hallcast_transit_seconds", "histogram"),
                ] {
                    let got = cm.family(series).map(|f| f.kind.as_str());
                    if got != Some(kind) {
                        problems.push(format!(
                            "central: {series} has type {got:?}, expected {kind}"
                        ));
                    }
                }

                // The central: the hall feed, N viewers, the edge pulling, the edge's health.
                let mut x = Expect {
                    m: &cm,
                    relay: "central",
                    problems,
                };
                x.eq("hallcast_conference_live", &c, 1.0);
                x.eq("hallcast_conference_viewers", &c, n(N_CENTRAL));
                x.eq("hallcast_subscribers", &c, n(N_CENTRAL));
                x.eq("hallcast_conference_relays", &c, 1.0);
                x.eq("hallcast_conference_publishers_live", &c, 1.0);
                x.within(
                    "hallcast_conference_ingest_bits_per_second",
                    &[c[0], ("layer", "0")],
                    100e3,
                    20e6,
                );
                // One layer: the built-in source does not send simulcast here.
                x.eq(
                    "hallcast_conference_ingest_bits_per_second",
                    &[c[0], ("layer", "1")],
                    0.0,
                );
                x.eq(
                    "hallcast_conference_ingest_bits_per_second",
                    &[c[0], ("layer", "2")],
                    0.0,
                );
                x.within(
                    "hallcast_conference_audio_ingest_bits_per_second",
                    &c,
                    8e3,
                    512e3,
                );
                x.eq(
                    "hallcast_conference_layer_viewers",
                    &[c[0], ("layer", "0")],
                    n(N_CENTRAL),
                );
                x.eq(
                    "hallcast_conference_viewers_paused",
                    &[c[0], ("reason", "bandwidth")],
                    0.0,
                );
                x.eq(
                    "hallcast_conference_viewers_paused",
                    &[c[0], ("reason", "viewer")],
                    0.0,
                );
                let sent = x.within("hallcast_conference_sent_bytes_total", &c, 10e3, 1e12);
                x.within(
                    "hallcast_conference_keyframe_requests_upstream_total",
                    &c,
                    0.0,
                    1e6,
                );
                x.within(
                    "hallcast_conference_keyframe_requests_downstream_total",
                    &c,
                    0.0,
                    1e6,
                );
                x.eq(
                    "hallcast_node_info",
                    &[("node", "central"), ("role", "central")],
                    1.0,
                );
                x.eq("hallcast_edge_up", &e, 1.0);
                x.eq("hallcast_edge_viewers", &e, n(N_EDGE));
                x.eq("hallcast_edge_relays", &e, 0.0);
                x.within("hallcast_edge_uplink_bits_per_second", &e, 100e3, 20e6);
                x.within("hallcast_edge_uplink_rtt_seconds", &e, 0.0, 1.0);
                x.within("hallcast_edge_cpu_cores", &e, 0.0, 4.0);
                x.within("hallcast_edge_last_report_age_seconds", &e, 0.0, 3.0);
                if cm.value("hallcast_edge_uplink_loss_ratio", &e).is_some() {
                    x.within("hallcast_edge_uplink_loss_ratio", &e, 0.0, 0.05);
                }
                let mut problems = x.problems;

                // The edge: its viewer, its pull as the conference's publisher, its uplink.
                let mut x = Expect {
                    m: &em,
                    relay: "edge",
                    problems: Vec::new(),
                };
                x.eq("hallcast_conference_live", &c, 1.0);
                x.eq("hallcast_conference_viewers", &c, n(N_EDGE));
                x.eq("hallcast_conference_publishers_live", &c, 1.0);
                x.eq(
                    "hallcast_node_info",
                    &[("node", EDGE), ("role", "edge")],
                    1.0,
                );
                x.eq("hallcast_uplink_up", &[], 1.0);
                x.within("hallcast_uplink_bits_per_second", &[], 100e3, 20e6);
                problems.extend(x.problems);

                if problems.is_empty() {
                    break (cm, sent.unwrap_or_default());
                }
                if started.elapsed() > Duration::from_secs(20) {
                    bail!(
                        "after 20 s the relays' /metrics still differ from the scenario ({N_CENTRAL} \
                         viewers at the central, {N_EDGE} at edge {EDGE}):\n- {}",
                        problems.join("\n- ")
                    );
                }
                std::thread::sleep(Duration::from_millis(500));
            };
            // The figures, for the log.
            for (name, labels) in [
                ("hallcast_conference_viewers", &c[..]),
                (
                    "hallcast_conference_ingest_bits_per_second",
                    &[c[0], ("layer", "0")][..],
                ),
                ("hallcast_conference_audio_ingest_bits_per_second", &c[..]),
                ("hallcast_conference_sent_bytes_total", &c[..]),
                (
                    "hallcast_conference_keyframe_requests_upstream_total",
                    &c[..],
                ),
                (
                    "hallcast_conference_keyframe_requests_downstream_total",
                    &c[..],
                ),
                ("hallcast_edge_uplink_bits_per_second", &e[..]),
                ("hallcast_edge_uplink_rtt_seconds", &e[..]),
                ("hallcast_edge_cpu_cores", &e[..]),
            ] {
                println!(
                    "central: {name}{labels:?} = {:?}",
                    at_central.value(name, labels)
                );
            }

            // The central's viewers leave (DELETE): its count drops to 0, the bytes they were
            // sent stay counted.
            for v in &mut central_viewers {
                v.stop()?;
            }
            let started = Instant::now();
            loop {
                let cm = scrape(&central)?;
                let viewers = cm.value("hallcast_conference_viewers", &c);
                let sent = cm.value("hallcast_conference_sent_bytes_total", &c);
                if viewers == Some(0.0) {
                    ensure!(
                        sent.is_some_and(|s| s >= sent_before),
                        "after the viewers left, hallcast_conference_sent_bytes_total is {sent:?}, \
                         below the {sent_before} counted while they played (a counter must not go back)"
                    );
                    ensure!(
                        cm.value("hallcast_conference_layer_viewers", &[c[0], ("layer", "0")])
                            == Some(0.0),
                        "no viewer left at the central, yet hallcast_conference_layer_viewers is not 0"
                    );
                    break;
                }
                if started.elapsed() > Duration::from_secs(10) {
                    bail!("10 s after its viewers left, the central shows {viewers:?} viewers");
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            for v in &mut edge_viewers {
                v.stop()?;
            }
            edge.ensure_running()?;
            demo.ensure_running()?;
            Ok(())
        },
    );
}

/// `hallcast demo --log-format json`, an edge whose configuration file says `[log] format =
/// "json"` and `hallcast serve --log-format json`: every line each prints on stderr is a JSON
/// object with a timestamp, a level and a message, from start to the orderly stop (SIGTERM).
#[test]
fn relays_log_json_lines_when_asked() {
    run("relays_log_json_lines_when_asked", Weight::Light, |ctx| {
        let mut demo = Relay::start(
            ctx,
            "hallcast demo",
            &strings(&[
                "demo",
                "--no-source",
                "--log-format",
                "json",
                "--http",
                "127.0.0.1:0",
                "--media",
                "127.0.0.1:0",
                "--data-dir",
                &ctx.path("demo-data").display().to_string(),
            ]),
        )?;
        let central = demo.base();
        let credential = demo.info["relay_credential"]
            .as_str()
            .context("no relay_credential in the demo's info file")?
            .to_string();
        let config = ctx.path("edge.toml");
        std::fs::write(&config, "[log]\nformat = \"json\"\n")?;
        let mut edge = Relay::start(
            ctx,
            "hallcast edge",
            &strings(&[
                "edge",
                "--config",
                &config.display().to_string(),
                "--parent",
                &central,
                "--credential",
                &credential,
                "--name",
                "edge-json",
                "--http",
                "127.0.0.1:0",
                "--media",
                "127.0.0.1:0",
                "--data-dir",
                &ctx.path("edge-data").display().to_string(),
            ]),
        )?;
        // The edge logs its parent answering before it is ready.
        let started = Instant::now();
        while get(&format!("{}/readyz", edge.base()))?.0 != 200 {
            ensure!(
                started.elapsed() < Duration::from_secs(20),
                "the edge is not ready 20 s after its start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let serve_base = format!("http://127.0.0.1:{port}");
        let mut serve = Relay::start_at(
            ctx,
            "hallcast serve",
            &strings(&[
                "serve",
                "--log-format",
                "json",
                "--http",
                &format!("127.0.0.1:{port}"),
                "--media",
                "127.0.0.1:0",
                "--data-dir",
                &ctx.path("serve-data").display().to_string(),
            ]),
            &serve_base,
        )?;
        let mut problems = Vec::new();
        for (label, relay, ready_message) in [
            ("serve", &mut serve, "relay ready on"),
            ("edge", &mut edge, "edge relay ready on"),
            ("demo", &mut demo, "media engine started"),
        ] {
            let status = relay.stop(Duration::from_secs(10))?;
            if !status.success() {
                problems.push(format!(
                    "hallcast {label} exited with {status} after SIGTERM"
                ));
            }
            let (n_lines, bad) = non_json_lines(&relay.stderr)?;
            if n_lines < 3 {
                problems.push(format!("hallcast {label} logged only {n_lines} lines"));
            }
            for (i, line) in bad.iter().take(5) {
                problems.push(format!(
                    "hallcast {label}: stderr line {i} is not JSON: {line}"
                ));
            }
            let text = std::fs::read_to_string(&relay.stderr)?;
            let lines: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            for l in &lines {
                if !(l["timestamp"].is_string()
                    && l["level"].is_string()
                    && l["message"].is_string())
                {
                    problems.push(format!(
                        "hallcast {label}: a line lacks timestamp, level or message: {l}"
                    ));
                    break;
                }
            }
            for wanted in [ready_message, "terminated; "] {
                if !lines
                    .iter()
                    .any(|l| l["message"].as_str().is_some_and(|m| m.contains(wanted)))
                {
                    problems.push(format!("hallcast {label}: no JSON line says {wanted:?}"));
                }
            }
        }
        ensure!(problems.is_empty(), "{}", problems.join("\n"));
        Ok(())
    });
}

/// The dashboard is valid JSON and every series it queries is in docs/OBSERVABILITY.md's
/// tables (the scenario test above checks that each is also exported).
#[test]
fn the_grafana_dashboard_queries_documented_series() {
    run(
        "the_grafana_dashboard_queries_documented_series",
        Weight::Light,
        |_ctx| {
            let documented = documented_series()?;
            let queried = dashboard_metrics()?;
            ensure!(
                queried.len() >= 15,
                "the dashboard queries only {queried:?}"
            );
            let unknown: Vec<_> = queried
                .iter()
                .filter(|q| !documented.contains(&series_of(q, &documented)))
                .collect();
            ensure!(
                unknown.is_empty(),
                "deploy/grafana/hallcast.json queries series docs/OBSERVABILITY.md does not list: {unknown:?}"
            );
            // Sanity of the helpers: a histogram's bucket is its family's; an unknown name is
            // itself.
            let known: BTreeSet<String> = ["hallcast_transit_seconds".to_string()].into();
            ensure!(
                series_of("hallcast_transit_seconds_bucket", &known) == "hallcast_transit_seconds"
            );
            ensure!(series_of("hallcast_nope_bucket", &known) == "hallcast_nope_bucket");
            Ok(())
        },
    );
}

/// The parser the scenario test relies on is strict: an unescaped quote in a label value, a
/// sample without a value, an unquoted label value are rejected (so an exposition the relay got
/// wrong fails the scenario test); what it lets through and a Prometheus server refuses (a
/// second TYPE line for a family, a sample twice) is caught by `Exposition::duplicates`; a
/// correct exposition is read back exactly.
#[test]
fn the_exposition_parser_rejects_what_prometheus_rejects() {
    run(
        "the_exposition_parser_rejects_what_prometheus_rejects",
        Weight::Light,
        |_ctx| {
            for bad in [
                "# TYPE m gauge\nm{edge=\"a\"b\"} 1\n",
                "# TYPE m gauge\nm{edge=\"a\"}\n",
                "# TYPE m gauge\nm{edge=a} 1\n",
            ] {
                ensure!(
                    parse_exposition(bad).is_err(),
                    "prometheus_client accepted {bad:?}"
                );
            }
            for twice in [
                "# TYPE m gauge\nm 1\n# TYPE m gauge\nm 2\n",
                "# TYPE m gauge\nm{a=\"1\"} 1\nm{a=\"1\"} 2\n",
            ] {
                let parsed = parse_exposition(twice)?;
                ensure!(
                    !parsed.duplicates().is_empty(),
                    "no duplicate found in {twice:?}"
                );
            }
            let good = parse_exposition(
                "# HELP m_total Things.\n# TYPE m_total counter\nm_total{edge=\"a\\\"b\"} 3\n",
            )?;
            ensure!(
                good.value("m_total", &[("edge", "a\"b")]) == Some(3.0)
                    && good.series().contains("m_total"),
                "{good:?}"
            );
            Ok(())
        },
    );
}
