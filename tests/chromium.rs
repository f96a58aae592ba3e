//! Chromium on both ends: a browser publishes over WHIP, the project's viewer page plays.

use std::time::Duration;

use anyhow::{Result, ensure};
use hallcast_tests::results::{self, PublishResult, ensure_pages_playing};
use hallcast_tests::{Ctx, Demo, DemoOptions, Weight, run};

use crate::util::{browser_publisher, expect_published, is_2xx, viewer_pages};

/// Frames every viewer page must decode.
const MIN_FRAMES: u64 = 60;

/// Publishes Chromium's fake camera + microphone (`codec`, simulcast or not) to a demo without
/// its own source; `n_pages` viewer pages must each decode MIN_FRAMES frames and receive audio.
fn publish_and_watch(ctx: &Ctx, codec: &str, simulcast: bool, n_pages: u32) -> Result<()> {
    let mut demo = Demo::start(
        ctx,
        DemoOptions {
            no_source: true,
            ..Default::default()
        },
    )?;
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

    let published: PublishResult = results::parse("publisher", &publisher.stop()?)?;
    ensure!(
        published.frames_encoded > 0,
        "the publisher encoded no frames: {published:?}"
    );
    if simulcast {
        ensure!(
            published.layers.len() == 3,
            "Chromium was asked for 3 simulcast layers but reports {:?}",
            published.layers
        );
    }
    ensure!(
        is_2xx(&published.delete_status),
        "DELETE of the WHIP session ({:?}) answered {:?}, expected 2xx",
        published.location,
        published.delete_status
    );
    demo.ensure_running()
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
