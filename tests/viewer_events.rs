//! WHEP server-sent events: the resource a WHEP answer links, its subscription and stream over
//! plain HTTP, and the viewer page showing "audio only" when the relay pauses its video because
//! its link (shaped with `tbf` in a namespace) cannot carry the broadcast.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::tree::{Host, Tree, central_options, pages_in_with};
use hallcast_tests::{Demo, DemoOptions, Weight, run, sdp};
use reqwest::blocking::{Client as Http, Response};
use serde_json::Value;

use crate::util::{page_of, state_of};

const REL: &str = "urn:ietf:params:whep:ext:core:server-sent-events";
const AUDIO_ONLY_VI: &str = "Chỉ có tiếng — đường truyền yếu";

fn http() -> Result<Http> {
    Ok(Http::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

fn header(r: &Response, name: &str) -> Vec<String> {
    r.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

/// The `<url>` of the events link among a response's `Link` headers.
fn events_link(links: &[String]) -> Option<String> {
    links
        .iter()
        .flat_map(|l| l.split(", <"))
        .find(|l| l.contains(&format!("rel=\"{REL}\"")))
        .and_then(|l| {
            let l = l.trim_start_matches('<');
            l.split_once('>').map(|(url, _)| url.to_string())
        })
}

/// Server-sent events read from a streaming response, one `(event, data)` at a time.
struct SseReader {
    lines: BufReader<Response>,
}

impl SseReader {
    /// The next event; `None` when the stream ended.
    fn next(&mut self) -> Result<Option<(String, String)>> {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !name.is_empty() {
                    return Ok(Some((name, data)));
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data = v.trim().to_string();
            }
        }
    }
}

#[test]
fn whep_events_link_subscription_and_stream() {
    run(
        "whep_events_link_subscription_and_stream",
        Weight::Light,
        |ctx| -> Result<()> {
            // The built-in source publishes: the conference is live.
            let mut demo = Demo::start(ctx, DemoOptions::default())?;
            let info = demo.info.clone();
            let http = http()?;
            let token = info.viewer_token.as_str();
            let deadline = Instant::now() + Duration::from_secs(60);
            let answer = loop {
                let r = http
                    .post(&info.whep_url)
                    .bearer_auth(token)
                    .header("Content-Type", "application/sdp")
                    .body(sdp::viewer_offer())
                    .send()?;
                if r.status() == 201 || Instant::now() > deadline {
                    break r;
                }
                thread::sleep(Duration::from_millis(500));
            };
            ensure!(
                answer.status() == 201,
                "WHEP POST → {}, expected 201",
                answer.status()
            );
            let session = header(&answer, "Location")
                .pop()
                .context("no Location on the WHEP answer")?;
            let links = header(&answer, "Link");
            let events = events_link(&links).with_context(|| {
                format!("no rel=\"{REL}\" in the WHEP answer's Link: {links:?}")
            })?;
            ensure!(
                events == format!("{session}/events"),
                "the events link {events} is not the session resource {session} + /events"
            );
            let link = links
                .iter()
                .find(|l| l.contains(REL))
                .cloned()
                .unwrap_or_default();
            ensure!(
                link.contains("events=\"active,inactive,layers,viewercount,rollcall,drain\""),
                "the events link does not list its events: {link}"
            );

            // Bad subscriptions: a clear 4xx, nothing subscribed.
            let post = |body: &str, bearer: Option<&str>| -> Result<(u16, String, String)> {
                let mut req = http
                    .post(info.url(&events))
                    .header("Content-Type", "application/json")
                    .body(body.to_string());
                if let Some(t) = bearer {
                    req = req.bearer_auth(t);
                }
                let r = req.send()?;
                let status = r.status().as_u16();
                let location = header(&r, "Location").pop().unwrap_or_default();
                Ok((status, location, r.text().unwrap_or_default()))
            };
            let big = format!("[{}]", vec!["\"layers\""; 300].join(","));
            for (body, bearer, want) in [
                ("not json", Some(token), 400),
                ("{\"events\":[\"layers\"]}", Some(token), 400),
                ("[\"layers\",\"reconnect\"]", Some(token), 400),
                ("[]", Some(token), 400),
                (big.as_str(), Some(token), 413),
                ("[\"layers\"]", None, 401),
                ("[\"layers\"]", Some("not-the-viewer-token"), 403),
            ] {
                let (status, _, text) = post(body, bearer)?;
                ensure!(
                    status == want && !text.trim().is_empty(),
                    "events POST {:?} (token {bearer:?}) → {status} {text:?}, expected {want} with a message",
                    body.chars().take(60).collect::<String>()
                );
            }
            let (status, _, text) = post("[\"layers\"]", Some(token))?;
            ensure!(status == 201, "a good subscription → {status} {text}");
            let r = http
                .post(info.url(&format!(
                    "/whep/{}/{:032x}/events",
                    info.conference,
                    0x5eed_u128 << 8
                )))
                .bearer_auth(token)
                .header("Content-Type", "application/json")
                .body("[\"layers\"]")
                .send()?;
            ensure!(
                r.status() == 404,
                "events POST of an unknown session → {}, expected 404",
                r.status()
            );

            // The subscription: 201 + the stream's URL, bound to this session.
            let (status, stream_url, text) = post(
                "[\"active\",\"inactive\",\"layers\",\"viewercount\"]",
                Some(token),
            )?;
            ensure!(
                status == 201,
                "events POST → {status} {text:?}, expected 201"
            );
            ensure!(
                stream_url.starts_with(&format!("{events}/")),
                "the stream URL {stream_url:?} is not under {events}"
            );
            let guessed = format!("{events}/{:032x}", 0xfeed_u128);
            let r = http
                .get(info.url(&guessed))
                .header("Accept", "text/event-stream")
                .send()?;
            ensure!(
                r.status() == 404,
                "a stream URL with a made-up token → {}, expected 404",
                r.status()
            );

            let r = http
                .get(info.url(&stream_url))
                .header("Accept", "text/event-stream")
                .send()?;
            ensure!(r.status() == 200, "GET the stream → {}", r.status());
            let ct = header(&r, "Content-Type").pop().unwrap_or_default();
            ensure!(
                ct.starts_with("text/event-stream"),
                "the stream's Content-Type is {ct:?}"
            );
            let mut sse = SseReader {
                lines: BufReader::new(r),
            };
            // The state at once; the source's measured layers at the latest with the next
            // snapshot tick (a source that just started has measured nothing yet).
            let has_layers = |data: &str| {
                serde_json::from_str::<Value>(data).is_ok_and(|v| {
                    v["video"]["available"].as_array().is_some_and(|a| {
                        !a.is_empty()
                            && a[0]["layer"] == 0
                            && a[0]["bitrate_bps"].as_u64().unwrap_or(0) > 0
                    })
                })
            };
            // The count comes from the engine's snapshot, which may predate this viewer.
            let counts_me = |data: &str| {
                serde_json::from_str::<Value>(data)
                    .is_ok_and(|v| v["viewercount"].as_u64().is_some_and(|n| n >= 1))
            };
            let mut seen: Vec<(String, String)> = Vec::new();
            let started = Instant::now();
            while !(seen.iter().any(|(n, _)| n == "active")
                && seen.iter().any(|(n, d)| n == "layers" && has_layers(d))
                && seen.iter().any(|(n, d)| n == "viewercount" && counts_me(d)))
            {
                ensure!(
                    started.elapsed() < Duration::from_secs(15),
                    "no active, layers with the source's layer and a viewercount counting this viewer in 15 s: {seen:?}"
                );
                match sse.next()? {
                    Some(e) => seen.push(e),
                    None => bail!("the stream ended after {seen:?}"),
                }
            }
            ensure!(
                seen[0].0 == "active" && seen[1].0 == "viewercount" && seen[2].0 == "layers",
                "the stream should start with the state (active, viewercount, layers): {seen:?}"
            );
            ensure!(
                !seen.iter().any(|(n, _)| n == "inactive"),
                "a live conference's stream said inactive: {seen:?}"
            );
            let layers: Value = serde_json::from_str(&seen[2].1)
                .with_context(|| format!("layers data is not JSON: {}", seen[2].1))?;
            let video = &layers["video"];
            ensure!(
                video["paused"].is_boolean()
                    && video.get("layer").is_some()
                    && video.get("target").is_some()
                    && video.get("reason").is_some()
                    && video.get("estimate_bps").is_some()
                    && video["available"].is_array(),
                "layers lacks a field: {layers}"
            );
            // The viewer leaves: its stream ends.
            let r = http.delete(info.url(&session)).bearer_auth(token).send()?;
            ensure!(
                r.status().is_success(),
                "DELETE the session → {}",
                r.status()
            );
            let started = Instant::now();
            while let Some(e) = sse.next()? {
                ensure!(
                    started.elapsed() < Duration::from_secs(10),
                    "the stream still runs 10 s after the session ended (last {e:?})"
                );
            }
            let r = http
                .get(info.url(&stream_url))
                .header("Accept", "text/event-stream")
                .send()?;
            ensure!(
                r.status() == 404,
                "the stream of an ended session → {}, expected 404",
                r.status()
            );
            demo.ensure_running()?;
            Ok(())
        },
    );
}

/// Limits what the relay sends to `point` (its namespace `relay_ns`, the veth `dev` towards the
/// point) to `kbit` kbit/s; `None` removes the limit.
fn shape(relay_ns: &str, dev: &str, kbit: Option<u32>) -> Result<()> {
    let rate = kbit.map(|k| format!("{k}kbit"));
    let args: Vec<&str> = match &rate {
        Some(rate) => vec![
            "-n", relay_ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst",
            "20kb", "latency", "200ms",
        ],
        None => vec!["-n", relay_ns, "qdisc", "del", "dev", dev, "root"],
    };
    let out = Command::new("tc")
        .args(&args)
        .output()
        .context("cannot run `tc`")?;
    ensure!(
        out.status.success(),
        "tc {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn audio_only_shown(ev: &Value) -> Option<&str> {
    page_of(ev, 0)["audio_only_visible"].as_str()
}

#[test]
fn viewer_page_shows_audio_only_while_its_link_is_too_weak() {
    run(
        "viewer_page_shows_audio_only_while_its_link_is_too_weak",
        Weight::Heavy,
        |ctx| -> Result<()> {
            // Declared first: dropped (namespaces deleted) after the relay and the browser stop.
            let mut tree = Tree::create()?;
            let central: Host = tree.relay_host("central")?;
            let point = tree.point_under("point", &central)?;
            // The first point's link is `pt0` on the relay's side.
            let relay_dev = "pt0";
            let demo = Demo::start(ctx, central_options(&central))?;
            let info = demo.info.clone();
            // The demo source is one layer of about 2 Mbit/s: 600 kbit/s cannot carry it.
            shape(&central.ns, relay_dev, Some(600))?;
            let shot = ctx.path("audio-only.png");
            let shot_arg = shot.to_string_lossy().to_string();
            let mut page = pages_in_with(
                ctx,
                &point,
                &info.viewer_url,
                1,
                240,
                0,
                &[
                    "--progress-interval",
                    "0.5",
                    "--audio-only-screenshot",
                    &shot_arg,
                ],
            )?;
            let paused = page.wait_for(
                "the page to show the audio-only notice on a 600 kbit/s link",
                Duration::from_secs(90),
                |ev| ev["event"] == "progress" && audio_only_shown(ev).is_some(),
            )?;
            let text = audio_only_shown(&paused).unwrap_or_default().to_string();
            ensure!(
                text.contains(AUDIO_ONLY_VI),
                "the notice reads {text:?}, expected {AUDIO_ONLY_VI:?} (Vietnamese first)"
            );
            ensure!(
                state_of(&paused, 0) == "live",
                "audio only is a live state, the page shows {}",
                page_of(&paused, 0)
            );
            page.wait_for("the screenshot", Duration::from_secs(20), |ev| {
                ev["event"] == "screenshot"
            })?;
            ensure!(shot.exists(), "no screenshot at {}", shot.display());
            if let Ok(dir) = std::env::var("HALLCAST_SCREENSHOT_DIR") {
                let _ = std::fs::create_dir_all(&dir);
                std::fs::copy(
                    &shot,
                    std::path::Path::new(&dir).join("viewer-audio-only.png"),
                )?;
            }

            // The link recovers: the relay resumes video and the notice goes away by itself.
            // The wait is long: the single 2 Mbit/s layer resumes only once the estimator,
            // climbing from audio alone, has proved the whole layer's need. That took 5–15 s
            // on a quiet machine, but 90 s in one of three runs beside two other copies of
            // this test and four busy loops, and over 120 s once on the loaded CI machine
            // (2026-12-01; why the climb stalls under load is not found yet).
            shape(&central.ns, relay_dev, None)?;
            let unshaped_at = Instant::now();
            let resumed = page.wait_for(
                "the notice to clear after the link recovered",
                Duration::from_secs(240),
                |ev| {
                    ev["event"] == "progress"
                        && page_of(ev, 0)["audio_only"] == false
                        && audio_only_shown(ev).is_none()
                },
            )?;
            ensure!(
                state_of(&resumed, 0) == "live",
                "after the link recovered the page shows {}",
                page_of(&resumed, 0)
            );
            // Reported, not asserted (a timing on a shared machine): docs/BENCHMARKS.md.
            eprintln!(
                "video resumed {:.1} s after the link recovered",
                unshaped_at.elapsed().as_secs_f64()
            );
            let result = page.stop()?;
            let p = &result["pages"][0];
            ensure!(
                p["page_errors"].as_array().is_none_or(|e| e.is_empty()),
                "the page threw: {}",
                p["page_errors"]
            );
            drop(demo);
            drop(tree);
            Ok(())
        },
    );
}
