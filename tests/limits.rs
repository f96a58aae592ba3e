//! Limits (issue 13, B.3) against a real relay: a leaked link hammering WHEP is refused with 429
//! while the other points of its address still join; a whole organisation behind one address
//! joins at once within the default budget; a full conference or relay answers 503 with
//! `Retry-After` and takes a viewer again once one leaves; silent and slow HTTP clients are
//! disconnected while others are served; a wrong admin token hammered gets 429.
//!
//! The viewers speak WHEP with hand-made offers (the sessions exist, ICE never completes, which
//! is all that admission needs).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::http::{Answer, Http};
use hallcast_tests::tree::{metric, metrics};
use hallcast_tests::{Ctx, Demo, DemoOptions, Info, Weight, run, sdp};
use serde_json::Value;

use crate::util::expect;

/// A refusal: `status`, a whole number of seconds in `Retry-After`, and a message.
fn expect_refusal(what: &str, a: &Answer, status: u16) -> Result<u64> {
    ensure!(
        a.status == status,
        "{what}: expected {status}, got {} with body {:?}",
        a.status,
        a.body
    );
    let secs: u64 = a
        .retry_after
        .as_deref()
        .with_context(|| format!("{what}: {status} without Retry-After"))?
        .parse()
        .with_context(|| format!("{what}: Retry-After {:?} is not seconds", a.retry_after))?;
    ensure!(secs >= 1, "{what}: Retry-After {secs}");
    ensure!(
        a.body.contains("retry later"),
        "{what}: the message does not say to retry: {:?}",
        a.body
    );
    Ok(secs)
}

/// A relay waiting for a publisher, with `set` overrides.
fn demo(ctx: &Ctx, set: &[&str]) -> Result<Demo> {
    Demo::start(
        ctx,
        DemoOptions {
            no_source: true,
            set: set.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    )
}

/// Makes the demo conference live with a hand-made WHIP offer.
fn go_live(http: &Http, info: &Info) -> Result<()> {
    expect(
        "WHIP with the stream key",
        http.post_sdp(
            &info.whip_url,
            Some(&info.stream_key),
            &sdp::publisher_offer(),
        ),
        201,
    )?;
    let start = Instant::now();
    loop {
        let a = http.get(
            &format!("/api/v1/conferences/{}/status", info.conference),
            None,
        )?;
        if a.json()?["live"] == Value::Bool(true) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(5) {
            bail!("the conference did not go live after WHIP");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Registers `n` points (organisations of 20, as the storm does) and returns their join tokens.
fn register_points(info: &Info, admin: &str, n: usize) -> Result<Vec<String>> {
    let mut csv = String::from("point_id,point_name,org_id,org_name,location,expected_headcount\n");
    for i in 0..n {
        csv.push_str(&format!(
            "nat-{i:04},Điểm cầu {i},don-vi-nat-{:02},Đơn vị {},Phòng {i},10\n",
            i / 20,
            i / 20
        ));
    }
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let r = client
        .post(format!("{}/api/v1/points/import", info.http_base))
        .bearer_auth(admin)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()?;
    ensure!(
        r.status().is_success(),
        "importing {n} points: {} {}",
        r.status(),
        r.text().unwrap_or_default()
    );
    let links: Value = client
        .get(format!(
            "{}/api/v1/conferences/{}/links?format=json",
            info.http_base, info.conference
        ))
        .bearer_auth(admin)
        .send()?
        .json()?;
    let tokens: Vec<String> = links
        .as_array()
        .context("the links API answered no list")?
        .iter()
        .filter(|l| {
            l["point_id"]
                .as_str()
                .is_some_and(|p| p.starts_with("nat-"))
        })
        .filter_map(|l| {
            l["url"]
                .as_str()?
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("token="))
                .map(str::to_string)
        })
        .collect();
    ensure!(
        tokens.len() == n,
        "{} join links for {n} points",
        tokens.len()
    );
    Ok(tokens)
}

fn refusals(info: &Info, reason: &str) -> Result<f64> {
    let text = metrics(&info.http_base)?;
    metric(
        &text,
        "hallcast_limit_refusals_total",
        Some(&format!("reason=\"{reason}\"")),
    )
    .with_context(|| format!("/metrics has no hallcast_limit_refusals_total{{reason={reason:?}}}"))
}

#[test]
fn a_leaked_link_hammering_whep_gets_429_while_its_address_still_joins() {
    run(
        "a_leaked_link_hammering_whep_gets_429_while_its_address_still_joins",
        Weight::Light,
        |ctx| {
            let d = demo(ctx, &["limits.token_per_second=1", "limits.token_burst=10"])?;
            let info = &d.info;
            let http = Http::new(&info.http_base)?;
            let admin = info.key("admin_token")?;
            let tokens = register_points(info, &admin, 2)?;
            go_live(&http, info)?;
            let (leaked, other) = (&tokens[0], &tokens[1]);
            let mut created = 0;
            let mut refused = None;
            for i in 0..40 {
                let a = http.post_sdp(&info.whep_url, Some(leaked), &sdp::viewer_offer())?;
                match a.status {
                    201 => created += 1,
                    429 => {
                        refused = Some((i, a));
                        break;
                    }
                    s => bail!("WHEP #{i} with the hammered link: {s} {:?}", a.body),
                }
            }
            let (at, a) = refused.context("40 WHEP POSTs with one link: never refused")?;
            expect_refusal("the hammered link", &a, 429)?;
            ensure!(
                created >= 10,
                "the link was refused after only {created} sessions (burst 10)"
            );
            // The same address, another point: joins.
            expect(
                "WHEP with another point's link from the same address",
                http.post_sdp(&info.whep_url, Some(other), &sdp::viewer_offer()),
                201,
            )?;
            ensure!(refusals(info, "token")? >= 1.0, "no token refusal counted");
            ensure!(refusals(info, "address")? == 0.0, "the address was refused");
            // After Retry-After the link may join again (the bucket refills).
            std::thread::sleep(Duration::from_millis(2100));
            expect(
                "WHEP with the hammered link after its Retry-After",
                http.post_sdp(&info.whep_url, Some(leaked), &sdp::viewer_offer()),
                201,
            )?;
            println!("limits: the link was refused at POST #{at} after {created} sessions");
            Ok(())
        },
    );
}

#[test]
fn an_organisation_behind_one_address_joins_at_once_with_the_default_limits() {
    run(
        "an_organisation_behind_one_address_joins_at_once_with_the_default_limits",
        Weight::Light,
        |ctx| {
            const POINTS: usize = 300;
            const THREADS: usize = 10;
            let d = demo(ctx, &[])?;
            let info = &d.info;
            let http = Http::new(&info.http_base)?;
            let admin = info.key("admin_token")?;
            let tokens = register_points(info, &admin, POINTS)?;
            go_live(&http, info)?;
            let started = Instant::now();
            let answers: Vec<(u16, String)> = std::thread::scope(|s| {
                let handles: Vec<_> = tokens
                    .chunks(POINTS / THREADS)
                    .map(|chunk| {
                        s.spawn(move || -> Result<Vec<(u16, String)>> {
                            let http = Http::new(&info.http_base)?;
                            let mut out = Vec::new();
                            for t in chunk {
                                // Each point joins, then subscribes to its WHEP events (as the
                                // viewer page does).
                                let a =
                                    http.post_sdp(&info.whep_url, Some(t), &sdp::viewer_offer())?;
                                let loc = a.location.clone().unwrap_or_default();
                                out.push((a.status, a.body));
                                if !loc.is_empty() {
                                    let e = http.post_json(
                                        &format!("{loc}/events"),
                                        Some(t),
                                        &serde_json::json!(["active", "inactive"]),
                                    )?;
                                    out.push((e.status, e.body));
                                }
                            }
                            Ok(out)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a joining thread panicked"))
                    .collect::<Result<Vec<_>>>()
                    .map(|v| v.into_iter().flatten().collect())
            })?;
            let took = started.elapsed();
            let refused: Vec<_> = answers
                .iter()
                .filter(|(s, _)| *s == 429 || *s == 503)
                .collect();
            ensure!(
                refused.is_empty(),
                "{} of {} requests from one address were refused: {:?}",
                refused.len(),
                answers.len(),
                refused.first()
            );
            let joined = answers.iter().filter(|(s, _)| *s == 201).count();
            ensure!(
                joined >= POINTS,
                "{joined} of {POINTS} points joined; answers: {:?}",
                answers.iter().find(|(s, _)| *s >= 300)
            );
            println!(
                "limits: {POINTS} points from 127.0.0.1 joined in {took:?} ({} requests), none refused",
                answers.len()
            );
            Ok(())
        },
    );
}

#[test]
fn a_full_conference_or_relay_answers_503_and_takes_a_viewer_once_one_leaves() {
    run(
        "a_full_conference_or_relay_answers_503_and_takes_a_viewer_once_one_leaves",
        Weight::Light,
        |ctx| {
            let d = demo(
                ctx,
                &[
                    "limits.max_sessions_per_conference=3",
                    "limits.retry_after_secs=7",
                ],
            )?;
            let info = &d.info;
            let http = Http::new(&info.http_base)?;
            go_live(&http, info)?;
            let mut viewers = Vec::new();
            for i in 0..3 {
                let a = expect(
                    &format!("viewer {i}"),
                    http.post_sdp(
                        &info.whep_url,
                        Some(&info.viewer_token),
                        &sdp::viewer_offer(),
                    ),
                    201,
                )?;
                viewers.push(a.location.context("201 without Location")?);
            }
            let full = http.post_sdp(
                &info.whep_url,
                Some(&info.viewer_token),
                &sdp::viewer_offer(),
            )?;
            let secs = expect_refusal("the 4th viewer of a 3-viewer conference", &full, 503)?;
            ensure!(secs == 7, "Retry-After {secs}, configured 7");
            ensure!(refusals(info, "conference_full")? >= 1.0, "not counted");
            // One leaves: a slot frees (the session table follows the engine's end event).
            expect(
                "a viewer leaves",
                http.delete(&viewers[0], Some(&info.viewer_token)),
                200,
            )?;
            let start = Instant::now();
            loop {
                let a = http.post_sdp(
                    &info.whep_url,
                    Some(&info.viewer_token),
                    &sdp::viewer_offer(),
                )?;
                if a.status == 201 {
                    break;
                }
                expect_refusal("waiting for the freed slot", &a, 503)?;
                if start.elapsed() > Duration::from_secs(5) {
                    bail!("no slot freed within 5 s of a viewer's DELETE");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            drop(d);

            // The relay's cap: the publisher and one viewer fill a relay of 2 sessions.
            let d = demo(ctx, &["limits.max_sessions=2"])?;
            let info = &d.info;
            let http = Http::new(&info.http_base)?;
            go_live(&http, info)?;
            expect(
                "the relay's one viewer",
                http.post_sdp(
                    &info.whep_url,
                    Some(&info.viewer_token),
                    &sdp::viewer_offer(),
                ),
                201,
            )?;
            let full = http.post_sdp(
                &info.whep_url,
                Some(&info.viewer_token),
                &sdp::viewer_offer(),
            )?;
            expect_refusal("a viewer of a full relay", &full, 503)?;
            ensure!(refusals(info, "relay_full")? >= 1.0, "not counted");
            Ok(())
        },
    );
}

/// Whether the relay closed `s` within `within` (a read returns end of file or a reset).
fn closed_within(s: &mut TcpStream, within: Duration) -> Result<Option<Vec<u8>>> {
    s.set_read_timeout(Some(within))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(Some(got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Ok(None);
            }
            Err(_) => return Ok(Some(got)),
        }
    }
}

#[test]
fn silent_and_slow_http_clients_are_disconnected_while_others_are_served() {
    run(
        "silent_and_slow_http_clients_are_disconnected_while_others_are_served",
        Weight::Light,
        |ctx| {
            let d = demo(
                ctx,
                &["limits.header_timeout_secs=2", "limits.body_timeout_secs=2"],
            )?;
            let info = &d.info;
            let http = Http::new(&info.http_base)?;
            go_live(&http, info)?;
            let addr = info
                .http_base
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            // Connects and sends nothing.
            let mut silent = TcpStream::connect(&addr)?;
            // Sends half a header.
            let mut half = TcpStream::connect(&addr)?;
            half.write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ")?;
            // Sends a whole header and part of its body.
            let mut slow_body = TcpStream::connect(&addr)?;
            let offer = sdp::viewer_offer();
            write!(
                slow_body,
                "POST /whep/{} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
                info.conference,
                info.viewer_token,
                offer.len()
            )?;
            slow_body.write_all(&offer.as_bytes()[..20])?;
            // Meanwhile others are served.
            for _ in 0..5 {
                expect("GET /healthz meanwhile", http.get("/healthz", None), 200)?;
                expect(
                    "a viewer meanwhile",
                    http.post_sdp(
                        &info.whep_url,
                        Some(&info.viewer_token),
                        &sdp::viewer_offer(),
                    ),
                    201,
                )?;
            }
            let deadline = Duration::from_secs(6);
            ensure!(
                closed_within(&mut silent, deadline)?.is_some(),
                "a client that sent nothing is still connected after {deadline:?} (header timeout 2 s)"
            );
            ensure!(
                closed_within(&mut half, deadline)?.is_some(),
                "a client that sent half a header is still connected after {deadline:?}"
            );
            let answer = closed_within(&mut slow_body, deadline)?
                .context("a client that sent part of its body is still connected")?;
            let head = String::from_utf8_lossy(&answer);
            ensure!(
                head.starts_with("HTTP/1.1 408"),
                "a body not sent in time: expected 408, got {:?}",
                head.lines().next()
            );
            ensure!(
                refusals(info, "header_timeout")? >= 2.0,
                "header timeouts not counted"
            );
            ensure!(
                refusals(info, "body_timeout")? >= 1.0,
                "body timeouts not counted"
            );
            expect("GET /healthz after", http.get("/healthz", None), 200)?;
            Ok(())
        },
    );
}

#[test]
fn a_wrong_admin_token_hammered_gets_429_and_the_right_one_still_works() {
    run(
        "a_wrong_admin_token_hammered_gets_429_and_the_right_one_still_works",
        Weight::Light,
        |ctx| {
            let d = demo(ctx, &[])?;
            let info = &d.info;
            let http = Http::new(&info.http_base)?;
            let admin = info.key("admin_token")?;
            let mut first_429 = None;
            for i in 0..400 {
                let a = http.get("/api/v1/points", Some(&format!("guess-{i:08}")))?;
                match a.status {
                    401 | 403 => {}
                    429 => {
                        expect_refusal("a wrong admin token hammered", &a, 429)?;
                        first_429 = Some(i);
                        break;
                    }
                    s => bail!("a wrong admin token: {s} {:?}", a.body),
                }
            }
            let at = first_429.context("400 wrong admin tokens: never 429")?;
            ensure!(
                at >= 100,
                "refused after {at} wrong tokens (default budget 100)"
            );
            // Still refused: guessing does not go on.
            let a = http.get("/api/v1/points", Some("guess-again"))?;
            expect_refusal("another guess", &a, 429)?;
            // The right token from the same address works, and so does a point's link.
            expect(
                "the admin token from the guesser's address",
                http.get("/api/v1/points", Some(&admin)),
                200,
            )?;
            ensure!(refusals(info, "auth_failures")? >= 2.0, "not counted");
            println!("limits: the 429 came after {at} wrong admin tokens");
            Ok(())
        },
    );
}
