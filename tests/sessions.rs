//! Who may do what to a session and to a conference: session resources that cannot be guessed or
//! taken over, and conferences made through the admin API or the CLI that take WHIP at once.
//!
//! The light tests speak WHIP/WHEP with hand-made offers (the sessions exist, ICE never
//! completes, which is all that authorisation needs); the heavy one plays a conference made
//! through the API in Chromium.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::http::Http;
use hallcast_tests::results::{self, ensure_pages_playing};
use hallcast_tests::{Ctx, Demo, Weight, hallcast_bin, run, sdp};
use serde_json::{Value, json};

use crate::util::{browser_publisher, expect, expect_published, viewer_pages};

/// A trickle-ICE fragment with one host candidate (a harmless PATCH body).
const FRAGMENT: &str = "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n";

/// The relay, waiting for a publisher.
fn demo_without_source(ctx: &Ctx) -> Result<Demo> {
    Demo::without_source(ctx)
}

/// The session id at the end of a resource URL; it must be 128 bits as 32 lowercase hex digits.
fn session_id(location: &str) -> Result<String> {
    let id = location.rsplit('/').next().unwrap_or_default().to_string();
    ensure!(
        id.len() == 32
            && id
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "session resource {location:?}: the id is not 32 lowercase hex digits (128 bits)"
    );
    Ok(id)
}

fn is_live(http: &Http, conference: &str) -> Result<bool> {
    let a = expect(
        "the conference status",
        http.get(&format!("/api/v1/conferences/{conference}/status"), None),
        200,
    )?;
    Ok(a.json()?["live"] == Value::Bool(true))
}

/// The conference's `live` once a snapshot taken after now is published (shards publish
/// theirs every 500 ms; the status API reads the latest): a check that the broadcast is
/// *still* live cannot pass on a stale reading.
fn settled_live(http: &Http, conference: &str) -> Result<bool> {
    std::thread::sleep(Duration::from_millis(1200));
    is_live(http, conference)
}

/// Waits up to `within` for the conference's `live` to become `want`.
fn wait_live(http: &Http, conference: &str, want: bool, within: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if is_live(http, conference)? == want {
            return Ok(());
        }
        if start.elapsed() > within {
            bail!("conference {conference} did not become live={want} within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Join tokens of the registered points for `conference`, from the links API.
fn join_links(http: &Http, admin: &str, conference: &str) -> Result<Vec<(String, String)>> {
    let links = expect(
        "the join links",
        http.get(
            &format!("/api/v1/conferences/{conference}/links?format=json"),
            Some(admin),
        ),
        200,
    )?
    .json()?;
    let mut out = Vec::new();
    for l in links.as_array().context("the links API answered no list")? {
        let (Some(point), Some(url)) = (l["point_id"].as_str(), l["url"].as_str()) else {
            bail!("a join link without point_id or url: {l}");
        };
        out.push((point.to_string(), url.to_string()));
    }
    Ok(out)
}

fn token_of(url: &str) -> Result<String> {
    url.split_once("token=")
        .map(|(_, t)| t.split('&').next().unwrap_or(t).to_string())
        .with_context(|| format!("the join link {url} has no token"))
}

#[test]
fn sessions_cannot_be_guessed_or_taken_over() {
    run(
        "sessions_cannot_be_guessed_or_taken_over",
        Weight::Light,
        |ctx| {
            let demo = demo_without_source(ctx)?;
            let info = &demo.info;
            let conf = info.conference.as_str();
            let http = Http::new(&info.http_base)?;
            let admin = info.key("admin_token")?;
            // A second point of the demo organisation, with its own join link.
            expect(
                "registering a second point",
                http.post_json(
                    "/api/v1/points",
                    Some(&admin),
                    &json!({"id": "diem-cau-2", "org_id": "don-vi-demo",
                            "name": "Điểm cầu 2", "location": "Phòng 2"}),
                ),
                201,
            )?;
            let other = join_links(&http, &admin, conf)?
                .into_iter()
                .find(|(p, _)| p == "diem-cau-2")
                .context("no join link for diem-cau-2")?;
            let other = token_of(&other.1)?;

            let publisher = expect(
                "WHIP with the stream key",
                http.post_sdp(
                    &info.whip_url,
                    Some(&info.stream_key),
                    &sdp::publisher_offer(),
                ),
                201,
            )?;
            let pub_loc = publisher.location.context("WHIP 201 without Location")?;
            let a = expect(
                "WHEP with the demo point's link",
                http.post_sdp(
                    &info.whep_url,
                    Some(&info.viewer_token),
                    &sdp::viewer_offer(),
                ),
                201,
            )?;
            let a_loc = a.location.context("WHEP 201 without Location")?;
            let b = expect(
                "WHEP with the second point's link",
                http.post_sdp(&info.whep_url, Some(&other), &sdp::viewer_offer()),
                201,
            )?;
            let b_loc = b.location.context("WHEP 201 without Location")?;
            let ids = [
                session_id(&pub_loc)?,
                session_id(&a_loc)?,
                session_id(&b_loc)?,
            ];
            ensure!(
                ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
                "session ids repeat: {ids:?}"
            );
            wait_live(&http, conf, true, Duration::from_secs(3))
                .context("the conference is not live after WHIP")?;

            // The broadcast cannot be ended by anyone but its publisher.
            expect(
                "DELETE of the publisher without a token",
                http.delete(&pub_loc, None),
                401,
            )?;
            expect(
                "DELETE of the publisher with a viewer's link",
                http.delete(&pub_loc, Some(&info.viewer_token)),
                403,
            )?;
            expect(
                "DELETE of the publisher with a wrong key",
                http.delete(&pub_loc, Some("not-the-stream-key")),
                403,
            )?;
            expect(
                "PATCH of the publisher with a viewer's link",
                http.patch_trickle(&pub_loc, Some(&info.viewer_token), FRAGMENT),
                403,
            )?;
            expect(
                "DELETE of the publisher's id under /whep with the stream key",
                http.delete(&pub_loc.replace("/whip/", "/whep/"), Some(&info.stream_key)),
                404,
            )?;
            ensure!(
                settled_live(&http, conf)?,
                "the broadcast ended after refused DELETEs"
            );

            // A viewer cannot end or change another viewer's session (nor can the publisher).
            expect(
                "DELETE of viewer B without a token",
                http.delete(&b_loc, None),
                401,
            )?;
            expect(
                "DELETE of viewer B with viewer A's link",
                http.delete(&b_loc, Some(&info.viewer_token)),
                403,
            )?;
            expect(
                "DELETE of viewer B with the stream key",
                http.delete(&b_loc, Some(&info.stream_key)),
                403,
            )?;
            expect(
                "PATCH of viewer B without a token",
                http.patch_trickle(&b_loc, None, FRAGMENT),
                401,
            )?;
            expect(
                "PATCH of viewer B with viewer A's link",
                http.patch_trickle(&b_loc, Some(&info.viewer_token), FRAGMENT),
                403,
            )?;

            // Nothing changed: each session still answers to its own credential, once.
            expect(
                "PATCH of viewer B with its own link",
                http.patch_trickle(&b_loc, Some(&other), FRAGMENT),
                204,
            )?;
            expect(
                "DELETE of viewer B with its own link",
                http.delete(&b_loc, Some(&other)),
                200,
            )?;
            expect(
                "DELETE of viewer B again",
                http.delete(&b_loc, Some(&other)),
                404,
            )?;
            expect(
                "DELETE of viewer A with its own link",
                http.delete(&a_loc, Some(&info.viewer_token)),
                200,
            )?;

            // A child relay's pull (every layer, POSTed to /whep with the relay credential) is a
            // WHEP resource too: the edge that lets go of it ends it with the same credential, and
            // nobody else can.
            let relay = info.key("relay_credential")?;
            let pull = expect(
                "WHEP with the relay credential (an edge's pull)",
                http.post_sdp(&info.whep_url, Some(&relay), &sdp::viewer_offer()),
                201,
            )?;
            let pull_loc = pull.location.context("the pull's 201 has no Location")?;
            expect(
                "DELETE of the relay pull with a viewer's link",
                http.delete(&pull_loc, Some(&info.viewer_token)),
                403,
            )?;
            expect(
                "PATCH of the relay pull with the relay credential",
                http.patch_trickle(&pull_loc, Some(&relay), FRAGMENT),
                204,
            )?;
            expect(
                "DELETE of the relay pull with the relay credential",
                http.delete(&pull_loc, Some(&relay)),
                200,
            )?;
            expect(
                "DELETE of the relay pull again",
                http.delete(&pull_loc, Some(&relay)),
                404,
            )?;
            ensure!(
                settled_live(&http, conf)?,
                "the broadcast ended when its viewers left"
            );
            expect(
                "DELETE of the publisher with the stream key",
                http.delete(&pub_loc, Some(&info.stream_key)),
                200,
            )?;
            wait_live(&http, conf, false, Duration::from_secs(2))
        },
    );
}

/// `hallcast conference …` on the demo's ledger; its JSON lines.
fn cli(demo: &Demo, args: &[&str]) -> Result<Vec<Value>> {
    let out = Command::new(hallcast_bin()?)
        .arg("conference")
        .args(args)
        .arg("--data-dir")
        .arg(demo.data_dir())
        .args(["--base-url", &demo.info.http_base])
        .output()
        .context("running hallcast conference")?;
    ensure!(
        out.status.success(),
        "hallcast conference {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON line: {l:?}")))
        .collect()
}

fn key_of(c: &Value) -> Result<String> {
    let key = c["stream_key"]
        .as_str()
        .with_context(|| format!("no stream_key in {c}"))?;
    ensure!(key.len() >= 32, "a generated stream key is short: {key:?}");
    Ok(key.to_string())
}

#[test]
fn conferences_made_through_the_api_or_the_cli_take_whip_at_once() {
    run(
        "conferences_made_through_the_api_or_the_cli_take_whip_at_once",
        Weight::Light,
        |ctx| {
            let demo = demo_without_source(ctx)?;
            let http = Http::new(&demo.info.http_base)?;
            let admin = demo.info.key("admin_token")?;
            let offer = sdp::publisher_offer();

            // Through the admin API.
            let id = "hoi-nghi-api";
            let made = expect(
                "creating a conference",
                http.post_json(
                    "/api/v1/conferences",
                    Some(&admin),
                    &json!({"id": id, "title": "Hội nghị tạo qua API"}),
                ),
                201,
            )?
            .json()?;
            let whip = format!("{}/whip/{id}", http.base);
            ensure!(
                made["whip_url"] == whip.as_str()
                    && made["whep_url"] == format!("{}/whep/{id}", http.base).as_str()
                    && made["state"] == "open",
                "the created conference answered {made}"
            );
            let key = key_of(&made)?;
            expect(
                "WHIP with a wrong key",
                http.post_sdp(&whip, Some("wrong-key-123"), &offer),
                401,
            )?;
            let publisher = expect(
                "WHIP to the new conference",
                http.post_sdp(&whip, Some(&key), &offer),
                201,
            )?;
            wait_live(&http, id, true, Duration::from_secs(2))?;

            // A rotated key: the old one is refused, the new one is accepted (409: the
            // broadcast that started with the old key is still live).
            let rotated = expect(
                "rotating the stream key",
                http.post_json(
                    &format!("/api/v1/conferences/{id}/stream-key"),
                    Some(&admin),
                    &Value::Null,
                ),
                200,
            )?
            .json()?;
            let new_key = key_of(&rotated)?;
            ensure!(new_key != key, "the rotated key is the old one");
            expect(
                "WHIP with the old key",
                http.post_sdp(&whip, Some(&key), &offer),
                401,
            )?;
            expect(
                "WHIP with the new key while live",
                http.post_sdp(&whip, Some(&new_key), &offer),
                409,
            )?;
            ensure!(
                settled_live(&http, id)?,
                "rotating the key ended the broadcast"
            );
            let pub_loc = publisher.location.context("WHIP 201 without Location")?;
            expect(
                "a PATCH of the publisher with the key it started with",
                http.patch_trickle(&pub_loc, Some(&key), FRAGMENT),
                204,
            )?;

            // Ended: its sessions end and WHIP is refused; reopened: WHIP again.
            let ended = expect(
                "ending the conference",
                http.post_json(
                    &format!("/api/v1/conferences/{id}/end"),
                    Some(&admin),
                    &Value::Null,
                ),
                200,
            )?
            .json()?;
            ensure!(ended["state"] == "ended", "ending answered {ended}");
            wait_live(&http, id, false, Duration::from_secs(2))?;
            expect(
                "WHIP to an ended conference",
                http.post_sdp(&whip, Some(&new_key), &offer),
                403,
            )?;
            expect(
                "reopening the conference",
                http.post_json(
                    &format!("/api/v1/conferences/{id}/reopen"),
                    Some(&admin),
                    &Value::Null,
                ),
                200,
            )?;
            expect(
                "WHIP to the reopened conference",
                http.post_sdp(&whip, Some(&new_key), &offer),
                201,
            )?;

            // Through the CLI, on the running relay's ledger.
            let cid = "hoi-nghi-cli";
            let made = cli(
                &demo,
                &["create", "--id", cid, "--title", "Hội nghị tạo qua CLI"],
            )?;
            let made = made.first().context("the CLI printed no conference")?;
            let key = key_of(made)?;
            let whip = format!("{}/whip/{cid}", http.base);
            expect(
                "WHIP to the conference the CLI made",
                http.post_sdp(&whip, Some(&key), &offer),
                201,
            )?;
            let rotated = cli(&demo, &["rotate-key", "--id", cid])?;
            let new_key = key_of(rotated.first().context("rotate-key printed nothing")?)?;
            expect(
                "WHIP with the key the CLI rotated in",
                http.post_sdp(&whip, Some(&new_key), &offer),
                409,
            )?;
            expect(
                "WHIP with the key the CLI rotated out",
                http.post_sdp(&whip, Some(&key), &offer),
                401,
            )?;
            cli(&demo, &["end", "--id", cid])?;
            // The relay re-reads the registry every 2 s.
            wait_live(&http, cid, false, Duration::from_secs(5))?;
            let all = cli(&demo, &["list"])?;
            let state = |c: &str| {
                all.iter()
                    .find(|v| v["id"] == c)
                    .map(|v| v["state"].clone())
            };
            ensure!(
                state(cid) == Some(json!("ended"))
                    && state(id) == Some(json!("open"))
                    && state(&demo.info.conference) == Some(json!("open")),
                "the CLI lists {all:?}"
            );
            Ok(())
        },
    );
}

#[test]
fn a_conference_made_through_the_api_plays_in_chromium() {
    run(
        "a_conference_made_through_the_api_plays_in_chromium",
        Weight::Heavy,
        |ctx| {
            let mut demo = demo_without_source(ctx)?;
            let http = Http::new(&demo.info.http_base)?;
            let admin = demo.info.key("admin_token")?;
            let id = "hoi-nghi-moi";
            let made = expect(
                "creating a conference",
                http.post_json(
                    "/api/v1/conferences",
                    Some(&admin),
                    &json!({"id": id, "title": "Hội nghị mới"}),
                ),
                201,
            )?
            .json()?;
            let mut info = demo.info.clone();
            info.whip_url = made["whip_url"]
                .as_str()
                .context("no whip_url")?
                .to_string();
            info.stream_key = key_of(&made)?;
            let mut publisher = browser_publisher(ctx, &info, "h264", false, 90)?;
            expect_published(
                &mut publisher,
                "Chromium's WHIP offer to the new conference",
            )?;
            let (_, link) = join_links(&http, &admin, id)?
                .into_iter()
                .find(|(p, _)| p == "diem-cau-demo")
                .context("no join link of the demo point for the new conference")?;
            let mut viewer = viewer_pages(ctx, &link, 1, 60, 60, &[])?;
            let result = viewer.result(Duration::from_secs(90))?;
            demo.ensure_running()?;
            ensure_pages_playing(&results::pages(&result)?, 60)?;
            publisher.stop()?;
            Ok(())
        },
    );
}

#[test]
fn viewers_waiting_for_a_publisher_that_returns_with_other_codecs_are_ended() {
    run(
        "viewers_waiting_for_a_publisher_that_returns_with_other_codecs_are_ended",
        Weight::Light,
        |ctx| {
            let demo = demo_without_source(ctx)?;
            let info = &demo.info;
            let http = Http::new(&info.http_base)?;
            let h264 = sdp::offer(
                sdp::Direction::SendOnly,
                &[sdp::Codec::Opus],
                &[sdp::Codec::H264],
            );
            let vp8 = sdp::offer(
                sdp::Direction::SendOnly,
                &[sdp::Codec::Opus],
                &[sdp::Codec::Vp8],
            );
            let publish = |offer: &str| -> Result<String> {
                expect(
                    "WHIP",
                    http.post_sdp(&info.whip_url, Some(&info.stream_key), offer),
                    201,
                )?
                .location
                .context("WHIP 201 without Location")
            };
            let unpublish = |loc: &str| -> Result<()> {
                expect(
                    "publisher DELETE",
                    http.delete(loc, Some(&info.stream_key)),
                    200,
                )?;
                Ok(())
            };
            let p = publish(&h264)?;
            let viewer = expect(
                "WHEP",
                http.post_sdp(
                    &info.whep_url,
                    Some(&info.viewer_token),
                    &sdp::viewer_offer(),
                ),
                201,
            )?
            .location
            .context("WHEP 201 without Location")?;

            // The same codecs again: the waiting viewer is kept (it resumes on the new feed).
            unpublish(&p)?;
            let p = publish(&h264)?;
            expect(
                "a PATCH of the viewer after the publisher came back with H.264",
                http.patch_trickle(&viewer, Some(&info.viewer_token), FRAGMENT),
                204,
            )?;

            // Other codecs: the viewer negotiated H.264 and cannot follow; it is ended.
            unpublish(&p)?;
            publish(&vp8)?;
            expect(
                "a PATCH of the viewer after the publisher came back with VP8",
                http.patch_trickle(&viewer, Some(&info.viewer_token), FRAGMENT),
                404,
            )?;
            Ok(())
        },
    );
}
