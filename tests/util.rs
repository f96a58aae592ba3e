//! Shorthands shared by the test modules: starting the clients with the usual arguments.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::http::Answer;
use hallcast_tests::{Client, ClientKind, Ctx, Info};
use serde_json::Value;

/// `answer`, which must have `status` (the error names `what` and shows the body).
pub fn expect(what: &str, answer: Result<Answer>, status: u16) -> Result<Answer> {
    let a = answer.with_context(|| what.to_string())?;
    ensure!(
        a.status == status,
        "{what}: expected {status}, got {} with body {:?}",
        a.status,
        a.body
    );
    Ok(a)
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Audio packets every viewer page waits for before ending early (`--until-audio`): 3 s of Opus.
/// A page's first video frames can come all at once (the relay's GOP replay), so without it a
/// page could end with well under a second of audio played, too little to tell playing audio
/// from audio that stops after its first second (`PageResult::audio_problems`).
pub const PAGE_UNTIL_AUDIO_PACKETS: u32 = 150;

/// `n_pages` tabs of the viewer page in one Chromium, for at most `duration_s`; ends early once
/// every page decoded `until_frames` frames and received PAGE_UNTIL_AUDIO_PACKETS audio packets
/// (`until_frames` 0: run the whole duration).
pub fn viewer_pages(
    ctx: &Ctx,
    url: &str,
    n_pages: u32,
    duration_s: u32,
    until_frames: u32,
    extra: &[&str],
) -> Result<Client> {
    let mut args = strings(&["--url", url, "--progress"]);
    args.extend(strings(&[
        "--pages",
        &n_pages.to_string(),
        "--duration",
        &duration_s.to_string(),
    ]));
    args.extend(strings(&[
        "--until-frames",
        &until_frames.to_string(),
        "--until-audio",
        &PAGE_UNTIL_AUDIO_PACKETS.to_string(),
    ]));
    args.extend(strings(extra));
    Client::start(ctx, ClientKind::Browser, "watch_pages.mjs", &args)
}

/// Chromium's fake camera and microphone published over WHIP.
pub fn browser_publisher(
    ctx: &Ctx,
    info: &Info,
    codec: &str,
    simulcast: bool,
    duration_s: u32,
) -> Result<Client> {
    let mut args = strings(&[
        "--url",
        &info.whip_url,
        "--key",
        &info.stream_key,
        "--codec",
        codec,
        "--progress",
    ]);
    args.extend(strings(&["--duration", &duration_s.to_string()]));
    if simulcast {
        args.push("--simulcast".into());
    }
    Client::start(ctx, ClientKind::Browser, "whip_publish.mjs", &args)
}

/// aiortc publishing its moving pattern (VP8) and a tone over WHIP.
pub fn aiortc_publisher(ctx: &Ctx, info: &Info, duration_s: u32) -> Result<Client> {
    aiortc_publisher_at(ctx, info, duration_s, "127.0.0.1")
}

/// `aiortc_publisher` with its ICE host candidate on `host_address`.
pub fn aiortc_publisher_at(
    ctx: &Ctx,
    info: &Info,
    duration_s: u32,
    host_address: &str,
) -> Result<Client> {
    let args = strings(&[
        "--host-address",
        host_address,
        "--url",
        &info.whip_url,
        "--key",
        &info.stream_key,
        "--codec",
        "vp8",
        "--duration",
        &duration_s.to_string(),
        "--progress",
    ]);
    Client::start(ctx, ClientKind::Aiortc, "whip_publish.py", &args)
}

/// Audio packets an aiortc player waits for before ending early (`--until-audio`): 5 s of Opus,
/// so that its decoded audio frames can be held to the time it played (`PlayResult::
/// audio_problems`): audio that stops after a second never gets there and plays on to the end.
pub const AIORTC_UNTIL_AUDIO_PACKETS: u32 = 250;

/// aiortc playing over WHEP (waiting through 409s while the feed is not live yet); ends early
/// once it decoded `until_frames` video frames and received AIORTC_UNTIL_AUDIO_PACKETS audio
/// packets.
pub fn aiortc_player(ctx: &Ctx, info: &Info, duration_s: u32, until_frames: u32) -> Result<Client> {
    let args = strings(&[
        "--url",
        &info.whep_url,
        "--token",
        &info.viewer_token,
        "--duration",
        &duration_s.to_string(),
        "--until-frames",
        &until_frames.to_string(),
        "--until-audio",
        &AIORTC_UNTIL_AUDIO_PACKETS.to_string(),
        "--wait-live",
        "--progress",
    ]);
    Client::start(ctx, ClientKind::Aiortc, "whep_play.py", &args)
}

/// Waits for a publisher's `published` line and fails unless the relay answered 201.
pub fn expect_published(publisher: &mut Client, what: &str) -> Result<()> {
    let ev = publisher.wait_for(
        &format!("{what} to be answered"),
        Duration::from_secs(60),
        |ev| ev["event"] == "published",
    )?;
    if ev["status"] != 201 {
        bail!(
            "the relay refused {what}: POST → {} with body {}",
            ev["status"],
            ev["body"]
        );
    }
    Ok(())
}

/// A page's entry in a watch_pages.mjs progress line.
pub fn page_of(ev: &Value, page: usize) -> &Value {
    &ev["pages"][page]
}

pub fn state_of(ev: &Value, page: usize) -> &str {
    page_of(ev, page)["state"].as_str().unwrap_or("")
}

pub fn frames_of(ev: &Value, page: usize) -> u64 {
    page_of(ev, page)["frames_decoded"].as_u64().unwrap_or(0)
}

pub fn is_progress(ev: &Value) -> bool {
    ev["event"] == "progress"
}

/// A DELETE answer counts as accepted when it is 2xx.
pub fn is_2xx(status: &Option<Value>) -> bool {
    status
        .as_ref()
        .and_then(Value::as_u64)
        .is_some_and(|s| (200..300).contains(&s))
}
