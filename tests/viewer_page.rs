//! The viewer page on its own: it waits while the hall is not live, goes live by itself when a
//! publisher starts, says so when the broadcast ends, resumes when the hall publishes again, and
//! reconnects by itself when its network drops and comes back.

use std::thread;
use std::time::Duration;

use anyhow::{Result, ensure};
use hallcast_tests::netns::NetNs;
use hallcast_tests::results::{self, PublishResult};
use hallcast_tests::{Client, ClientKind, Demo, DemoOptions, Weight, run};

use crate::util::{
    aiortc_publisher, aiortc_publisher_at, expect_published, frames_of, is_2xx, is_progress,
    page_of, state_of, strings, viewer_pages,
};

const WAITING_VI: &str = "Đang chờ tín hiệu hội trường…";

#[test]
fn viewer_page_waits_goes_live_by_itself_ends_and_resumes() {
    run(
        "viewer_page_waits_goes_live_by_itself_ends_and_resumes",
        Weight::Heavy,
        |ctx| -> Result<()> {
            let mut demo = Demo::without_source(ctx)?;
            let info = demo.info.clone();
            let mut viewer = viewer_pages(ctx, &info.viewer_url, 1, 240, 0, &[])?;

            // Nobody publishes: the page waits (409 + Retry-After), in Vietnamese by default.
            let waiting = viewer.wait_for(
                "the page to show \"waiting\"",
                Duration::from_secs(30),
                |ev| is_progress(ev) && state_of(ev, 0) == "waiting",
            )?;
            ensure!(
                page_of(&waiting, 0)["status_text"] == WAITING_VI,
                "the waiting page reads {}, expected {WAITING_VI:?}",
                page_of(&waiting, 0)["status_text"]
            );
            let offers_waiting = page_of(&waiting, 0)["n_offers_posted"].as_u64();
            // The page's own report from 5 s later (the lines in between are queued).
            let t_waiting = waiting["t"].as_f64().unwrap_or(f64::MAX);
            let still = viewer.wait_for(
                "a progress line 5 s after \"waiting\"",
                Duration::from_secs(20),
                |ev| is_progress(ev) && ev["t"].as_f64().is_some_and(|t| t >= t_waiting + 5.0),
            )?;
            ensure!(
                state_of(&still, 0) == "waiting" && frames_of(&still, 0) == 0,
                "with no publisher the page should keep waiting, but shows {}",
                page_of(&still, 0)
            );
            // It waits on the relay's word (a held status request), not by offering again
            // every Retry-After (2 s): no new offer in those 5 s.
            ensure!(
                offers_waiting.is_some()
                    && page_of(&still, 0)["n_offers_posted"].as_u64() == offers_waiting,
                "the waiting page offered again: {offers_waiting:?} offers when it showed \
                 \"waiting\", {} five seconds later",
                page_of(&still, 0)["n_offers_posted"]
            );

            // A publisher starts: the page goes live by itself.
            let mut first = aiortc_publisher(ctx, &info, 20)?;
            expect_published(&mut first, "the first publisher's WHIP offer")?;
            let live = viewer.wait_for(
                "the page to go live by itself and decode 30 frames",
                Duration::from_secs(45),
                |ev| is_progress(ev) && state_of(ev, 0) == "live" && frames_of(ev, 0) >= 30,
            )?;
            let frames_first = frames_of(&live, 0);

            // The publisher ends its broadcast (DELETE): the page notices and says so.
            let ended: PublishResult =
                results::parse("first publisher", &first.result(Duration::from_secs(60))?)?;
            ensure!(
                is_2xx(&ended.delete_status),
                "DELETE of the WHIP session {:?} answered {:?}, expected 2xx",
                ended.location,
                ended.delete_status
            );
            viewer.wait_for(
                "the page to show \"ended\" after the publisher's DELETE",
                Duration::from_secs(45),
                |ev| is_progress(ev) && matches!(state_of(ev, 0), "ended" | "waiting"),
            )?;

            // The hall publishes again: the same page resumes by itself.
            let mut second = aiortc_publisher(ctx, &info, 40)?;
            expect_published(&mut second, "a new publisher after the first one ended")?;
            viewer.wait_for(
                "the page to resume by itself and decode 30 more frames",
                Duration::from_secs(60),
                |ev| {
                    is_progress(ev)
                        && state_of(ev, 0) == "live"
                        && frames_of(ev, 0) >= frames_first + 30
                },
            )?;
            demo.ensure_running()?;

            let pages = results::pages(&viewer.stop()?)?;
            ensure!(
                in_order(&pages[0].states, &["waiting", "live", "ended", "live"]),
                "the page's states were {:?}; expected waiting → live → ended → live in that order",
                pages[0].states
            );
            ensure!(
                pages[0].page_errors.is_empty(),
                "the page threw: {:?}",
                pages[0].page_errors
            );
            drop(second);
            Ok(())
        },
    );
}

/// True when `states` contains `wanted` in that order (other states may come between).
fn in_order(states: &[String], wanted: &[&str]) -> bool {
    let mut want = wanted.iter().peekable();
    for s in states {
        if want.peek().is_some_and(|w| *w == s) {
            want.next();
        }
    }
    want.peek().is_none()
}

/// The viewer page runs on a second host (a network namespace); its link is cut while it plays,
/// then restored. The page must show "reconnecting", keep retrying with backoff, and come back
/// live by itself.
#[test]
fn viewer_page_reconnects_by_itself_after_the_network_drops() {
    run(
        "viewer_page_reconnects_by_itself_after_the_network_drops",
        Weight::Heavy,
        |ctx| -> Result<()> {
            let ns = NetNs::create()?;
            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    no_source: true,
                    ip: Some(ns.host_ip.clone()),
                    ..Default::default()
                },
            )?;
            let info = demo.info.clone();
            let mut publisher = aiortc_publisher_at(ctx, &info, 200, &ns.host_ip)?;
            expect_published(&mut publisher, "aiortc's WHIP offer")?;

            let wrapper = ns.chromium_wrapper(ctx)?;
            let args = strings(&[
                "--url",
                &info.viewer_url,
                "--pages",
                "1",
                "--duration",
                "180",
                "--progress",
            ]);
            let wrapper_env = wrapper.to_string_lossy().to_string();
            let mut viewer = Client::start_with_env(
                ctx,
                ClientKind::Browser,
                "watch_pages.mjs",
                &args,
                &[("HALLCAST_CHROMIUM", &wrapper_env)],
            )?;
            viewer.wait_for(
                "the page in the namespace to play 30 frames",
                Duration::from_secs(60),
                |ev| is_progress(ev) && state_of(ev, 0) == "live" && frames_of(ev, 0) >= 30,
            )?;

            ns.link_down()?;
            viewer.wait_for(
                "the page to show \"reconnecting\" after its link went down",
                Duration::from_secs(40),
                |ev| is_progress(ev) && state_of(ev, 0) == "reconnecting",
            )?;
            // Several attempts fail while the link stays down.
            thread::sleep(Duration::from_secs(8));
            let down = viewer.wait_for("a progress line", Duration::from_secs(10), is_progress)?;
            ensure!(
                state_of(&down, 0) == "reconnecting",
                "with its link down the page shows {}",
                page_of(&down, 0)
            );
            let frames_down = frames_of(&down, 0);

            ns.link_up()?;
            viewer.wait_for(
                "the page to come back live by itself after the link returned",
                Duration::from_secs(60),
                |ev| {
                    is_progress(ev)
                        && state_of(ev, 0) == "live"
                        && frames_of(ev, 0) >= frames_down + 30
                },
            )?;
            demo.ensure_running()?;

            let pages = results::pages(&viewer.stop()?)?;
            let page = &pages[0];
            ensure!(
                in_order(&page.states, &["live", "reconnecting", "live"]),
                "the page's states were {:?}; expected live → reconnecting → live",
                page.states
            );
            ensure!(
                page.n_offers_posted >= 2,
                "the page posted {} offers; a reconnect needs a new one",
                page.n_offers_posted
            );
            ensure!(
                page.page_errors.is_empty(),
                "the page threw: {:?}",
                page.page_errors
            );
            drop(publisher);
            Ok(())
        },
    );
}
