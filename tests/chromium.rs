//! Chromium on both ends: a browser publishes over WHIP, the project's viewer page plays.

use std::time::Duration;

use anyhow::{Result, ensure};
use hallcast_tests::results::{self, PublishResult, ensure_pages_playing};
use hallcast_tests::{Ctx, Demo, DemoOptions, Weight, run};

use crate::gop_cache::metric;
use crate::util::{browser_publisher, expect_published, is_2xx, viewer_pages};

/// Frames every viewer page must decode.
const MIN_FRAMES: u64 = 60;
/// How long a simulcast publisher sends before the relay's ingest is compared with what it sent
/// (see `check_layers_flowed`).
const SIMULCAST_PUBLISH_S: f64 = 20.0;

/// Publishes Chromium's fake camera + microphone (`codec`, simulcast or not) to a demo without
/// its own source; `n_pages` viewer pages must each decode MIN_FRAMES frames and receive audio.
fn publish_and_watch(ctx: &Ctx, codec: &str, simulcast: bool, n_pages: u32) -> Result<()> {
    let mut demo = Demo::without_source(ctx)?;
    let mut publisher = browser_publisher(ctx, &demo.info, codec, simulcast, 120)?;
    let what = format!(
        "Chromium's WHIP offer ({codec}{})",
        if simulcast { ", simulcast l/m/h" } else { "" }
    );
    expect_published(&mut publisher, &what)?;

    let mut viewers = viewer_pages(
        ctx,
        &demo.info.viewer_url,
        n_pages,
        60,
        MIN_FRAMES as u32,
        &[],
    )?;
    let result = viewers.result(Duration::from_secs(100))?;
    demo.ensure_running()?;
    let pages = results::pages(&result)?;
    ensure!(
        pages.len() == n_pages as usize,
        "expected {n_pages} viewer pages, got {}",
        pages.len()
    );
    ensure_pages_playing(&pages, MIN_FRAMES)?;
    let expected_mime = format!("video/{}", codec.to_uppercase());
    for p in &pages {
        ensure!(
            p.video_codec
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(&expected_mime)),
            "viewer page {} decoded {:?}, but the publisher sent {expected_mime}",
            p.page,
            p.video_codec
        );
        ensure!(
            p.has_hallcast_pc,
            "viewer page {} does not expose window.hallcast.pc",
            p.page
        );
    }

    if simulcast {
        publisher.wait_for(
            &format!("{SIMULCAST_PUBLISH_S} s of publishing"),
            Duration::from_secs(90),
            |ev| ev["event"] == "progress" && ev["t"].as_f64() >= Some(SIMULCAST_PUBLISH_S),
        )?;
    }
    let published: PublishResult = results::parse("publisher", &publisher.stop()?)?;
    ensure!(
        published.frames_encoded > 0,
        "the publisher encoded no frames: {published:?}"
    );
    if simulcast {
        // The publisher's last stats were taken just before its DELETE, which ended its
        // session: the relay's ingest counter is final by now.
        let metrics = reqwest::blocking::get(demo.info.url("/metrics"))?.text()?;
        let relay_rx = metric(&metrics, "hallcast_rx_media_packets_total");
        check_layers_flowed(&published, relay_rx, &pages)?;
    }
    ensure!(
        is_2xx(&published.delete_status),
        "DELETE of the WHIP session ({:?}) answered {:?}, expected 2xx",
        published.location,
        published.delete_status
    );
    // The broadcast, as the relay recorded it (the top layer when simulcast).
    crate::recording::check_browser_recording(&demo.info, codec)?;
    demo.ensure_running()
}

/// Every simulcast layer Chromium was asked for flowed: it encoded and sent each of them all along
/// (the layers share the camera's frame rate), and the relay took in (nearly) every packet it sent,
/// so none of the layers was lost on the way in.
/// Prints which layer (by frame size) each viewer page received.
fn check_layers_flowed(
    published: &PublishResult,
    relay_rx: Option<f64>,
    pages: &[results::PageResult],
) -> Result<()> {
    let layers = &published.layers;
    let rids: Vec<&str> = layers.iter().filter_map(|l| l.rid.as_deref()).collect();
    ensure!(
        rids == ["h", "l", "m"],
        "Chromium was asked for simulcast layers l/m/h but reports {layers:?}"
    );
    // Seen here: 590–605 frames on every layer in SIMULCAST_PUBLISH_S; a layer that stopped
    // early, or never started, falls below half of the busiest one.
    let most_frames = layers.iter().map(|l| l.frames_encoded).max().unwrap_or(0);
    let silent: Vec<&str> = layers
        .iter()
        .filter(|l| {
            l.packets_sent == 0 || l.frames_encoded == 0 || 2 * l.frames_encoded < most_frames
        })
        .filter_map(|l| l.rid.as_deref())
        .collect();
    ensure!(
        silent.is_empty(),
        "Chromium sent nothing, or encoded fewer than half the frames of its busiest layer \
         ({most_frames}), on simulcast layer(s) {silent:?}: {layers:?}"
    );

    // /metrics counts the relay's ingest as one total, not per layer (publisher RTP after SRTP,
    // every layer and the audio): with the demo's own source off, all of it is this publisher's.
    // A layer lost between Chromium and the relay would leave the relay short of what Chromium
    // sent by that whole layer, so any slack below the smallest layer catches a lost layer.
    // Chromium's `packetsSent` also counts the padding-only packets of its bandwidth probes,
    // which the relay drops before counting: seen here, 85–190 packets (on layer l's count) from
    // the first seconds, not growing afterwards. After SIMULCAST_PUBLISH_S the smallest layer (l,
    // 35–40 packets/s) has sent 700–800 packets: a slack of 3/4 of it (~550) stays well above the
    // padding, and a relay that dropped all of layer l came up short by exactly l's count (706 of
    // 707, slack 530).
    let sent: u64 =
        published.audio_packets_sent + layers.iter().map(|l| l.packets_sent).sum::<u64>();
    let smallest = layers.iter().map(|l| l.packets_sent).min().unwrap_or(0);
    let slack = smallest * 3 / 4;
    let rx = relay_rx.unwrap_or(0.0) as u64;
    eprintln!(
        "simulcast: Chromium sent {sent} packets (audio {}, layers {}), the relay took in {rx} \
         ({:+}; slack {slack})",
        published.audio_packets_sent,
        layers
            .iter()
            .map(|l| format!(
                "{}: {}x{} {} frames {} packets",
                l.rid.as_deref().unwrap_or("?"),
                l.frame_width,
                l.frame_height,
                l.frames_encoded,
                l.packets_sent
            ))
            .collect::<Vec<_>>()
            .join(", "),
        rx as i64 - sent as i64
    );
    ensure!(
        relay_rx.is_some() && rx + slack >= sent,
        "the relay's hallcast_rx_media_packets_total is {relay_rx:?}, but Chromium sent {sent} packets \
         (audio {} + layers {layers:?}): more than 3/4 of a layer ({slack} packets) never reached \
         the relay",
        published.audio_packets_sent
    );

    for p in pages {
        let layer = layers
            .iter()
            .find(|l| l.frame_width == p.frame_width && l.frame_height == p.frame_height)
            .and_then(|l| l.rid.as_deref())
            .unwrap_or("no layer of that size at the end");
        eprintln!(
            "simulcast: viewer page {} received {}x{} (layer {layer})",
            p.page, p.frame_width, p.frame_height
        );
    }
    Ok(())
}

#[test]
fn chromium_publishes_h264_and_two_viewer_pages_play() {
    run(
        "chromium_publishes_h264_and_two_viewer_pages_play",
        Weight::Heavy,
        |ctx| publish_and_watch(ctx, "h264", false, 2),
    );
}

#[test]
fn chromium_publishes_vp8_simulcast_and_a_viewer_page_plays() {
    run(
        "chromium_publishes_vp8_simulcast_and_a_viewer_page_plays",
        Weight::Heavy,
        |ctx| publish_and_watch(ctx, "vp8", true, 1),
    );
}

#[test]
fn chromium_publishes_h264_simulcast_and_a_viewer_page_plays() {
    run(
        "chromium_publishes_h264_simulcast_and_a_viewer_page_plays",
        Weight::Heavy,
        |ctx| publish_and_watch(ctx, "h264", true, 1),
    );
}

/// What a newcomer sees: `hallcast demo`'s own source in the viewer page, with sound (the test
/// browser allows autoplay), in English when asked, and the headcount prompt answered.
#[test]
fn demo_source_plays_in_the_viewer_page() {
    run(
        "demo_source_plays_in_the_viewer_page",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::start(ctx, DemoOptions::default())?;
            let mut viewer = viewer_pages(
                ctx,
                &demo.info.viewer_url,
                1,
                60,
                MIN_FRAMES as u32,
                &["--lang", "en", "--headcount", "25"],
            )?;
            let result = viewer.result(Duration::from_secs(100))?;
            demo.ensure_running()?;
            let pages = results::pages(&result)?;
            ensure_pages_playing(&pages, MIN_FRAMES)?;
            let page = &pages[0];
            ensure!(
                page.muted == Some(false),
                "autoplay with sound is allowed in the test browser, yet the video is muted"
            );
            ensure!(
                page.lang.as_deref() == Some("en"),
                "the English switch did not apply: <html lang={:?}>",
                page.lang
            );
            ensure!(
                page.badge_text.as_deref() == Some("Live"),
                "the English badge reads {:?}, expected \"Live\"",
                page.badge_text
            );

            // The headcount prompt: the demo keeps attendance, so the declaration is recorded
            // (200), carries the page's own idempotency key, and the page shows the number.
            let h = page.headcount.clone().unwrap_or_default();
            ensure!(
                h.get("error").is_none(),
                "answering the headcount prompt failed: {h}"
            );
            ensure!(
                h["api_status"] == 200,
                "POST /api/v1/conferences/{{id}}/headcount answered {}: {h}",
                h["api_status"]
            );
            let sent_id = h["sent"]["event_id"].as_str().unwrap_or_default();
            ensure!(
                sent_id.len() == 32 && sent_id.chars().all(|c| c.is_ascii_hexdigit()),
                "the page sent no 32-hex-digit event_id with its declaration: {h}"
            );
            ensure!(
                h["sent"]["n_people"] == 25
                    && h["answer"]["event_id"] == sent_id
                    && h["answer"]["duplicate"] == false
                    && h["answer"]["n_people"] == 25,
                "the relay's answer does not confirm the page's declaration: {h}"
            );
            ensure!(
                !h["form_visible"].as_bool().unwrap_or(true)
                    && h["button_visible"] == true
                    && h["button_text"].as_str().is_some_and(|t| t.contains("25")),
                "the relay recorded the headcount but the page does not show it: {h}"
            );
            Ok(())
        },
    );
}
