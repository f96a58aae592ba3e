//! Bad input, while a viewer keeps playing: every malformed or unauthorised request gets the
//! agreed status with a readable message, garbage and a STUN flood on the media port are dropped
//! and counted by reason (`hallcast_rx_dropped_total`), and the viewer's decoded frame count keeps
//! growing through all of it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::net::{free_udp_port, spray_garbage, stun_flood};
use hallcast_tests::results::{self, PublishResult};
use hallcast_tests::sdp::{self, Codec, Direction};
use hallcast_tests::{Client, Demo, DemoOptions, Info, Weight, run};
use reqwest::blocking::Client as Http;

use crate::util::{aiortc_publisher, frames_of, is_progress, state_of, viewer_pages};

/// Collects every mismatch instead of stopping at the first, so one run tells the whole story.
struct Checks {
    http: Http,
    failures: Vec<String>,
    n_checks: usize,
}

struct Request<'a> {
    what: &'a str,
    url: String,
    auth: Option<String>,
    content_type: Option<&'a str>,
    body: Vec<u8>,
}

struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Checks {
    fn new() -> Result<Checks> {
        let http = Http::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Checks {
            http,
            failures: Vec::new(),
            n_checks: 0,
        })
    }

    fn send(&self, req: &Request<'_>) -> std::result::Result<Answer, String> {
        let mut builder = self.http.post(&req.url).body(req.body.clone());
        if let Some(auth) = &req.auth {
            builder = builder.header("Authorization", auth);
        }
        if let Some(ct) = req.content_type {
            builder = builder.header("Content-Type", ct);
        }
        let response = builder
            .send()
            .map_err(|e| format!("request failed: {e:#}"))?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("Location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.text().unwrap_or_default();
        Ok(Answer {
            status,
            location,
            body,
        })
    }

    fn describe(req: &Request<'_>) -> String {
        format!(
            "POST {} (Authorization: {}, Content-Type: {}, {} bytes)",
            req.url,
            req.auth.as_deref().unwrap_or("none"),
            req.content_type.unwrap_or("none"),
            req.body.len()
        )
    }

    /// Sends `req`, expects one of `statuses` and a readable message; `names` must all appear in
    /// the message (case-insensitive).
    fn expect(&mut self, req: Request<'_>, statuses: &[u16], names: &[&str]) {
        self.n_checks += 1;
        let answer = match self.send(&req) {
            Ok(a) => a,
            Err(e) => {
                self.failures.push(format!(
                    "{}: {} → {e}; expected {statuses:?}",
                    req.what,
                    Checks::describe(&req)
                ));
                return;
            }
        };
        let mut wrong = Vec::new();
        if !statuses.contains(&answer.status) {
            wrong.push(format!("expected status {statuses:?}"));
        }
        if let Some(problem) = unreadable(&answer.body) {
            wrong.push(format!("the message is not readable ({problem})"));
        }
        let lower = answer.body.to_lowercase();
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !lower.contains(&n.to_lowercase()))
            .collect();
        if !missing.is_empty() {
            wrong.push(format!("the message does not name {missing:?}"));
        }
        if !wrong.is_empty() {
            self.failures.push(format!(
                "{}: {} → {} {:?}; {}",
                req.what,
                Checks::describe(&req),
                answer.status,
                clip(&answer.body),
                wrong.join(", ")
            ));
        }
        // Something slipped through and created a session: release it.
        if answer.status == 201
            && let Some(loc) = answer.location
        {
            let _ = self.delete(&req.url, &loc, req.auth.as_deref());
        }
    }

    /// A hand-made offer that the relay should accept: proves the offers used by the checks are
    /// well formed, so their refusals mean what they say. The session is deleted at once.
    fn control(&mut self, info: &Info, when: &str) {
        self.n_checks += 1;
        let req = Request {
            what: "control: a well-formed viewer offer",
            url: info.whep_url.clone(),
            auth: Some(bearer(&info.viewer_token)),
            content_type: Some("application/sdp"),
            body: sdp::viewer_offer().into_bytes(),
        };
        match self.send(&req) {
            Ok(a) if a.status == 201 => match a.location {
                Some(loc) => match self.delete(&req.url, &loc, req.auth.as_deref()) {
                    Ok(s) if (200..300).contains(&s) => {}
                    Ok(s) => self.failures.push(format!("{when}: DELETE of the control session {loc} answered {s}, expected 2xx")),
                    Err(e) => self.failures.push(format!("{when}: DELETE of the control session {loc} failed: {e}")),
                },
                None => self.failures.push(format!("{when}: {} → 201 without a Location header", Checks::describe(&req))),
            },
            Ok(a) => self.failures.push(format!(
                "{when}: {} → {} {:?}; expected 201 (a browser-shaped recvonly offer with Opus, H264 and VP8; \
                 if the relay refuses it, the checks that rely on such offers are not conclusive)",
                Checks::describe(&req),
                a.status,
                clip(&a.body)
            )),
            Err(e) => self.failures.push(format!("{when}: {} → {e}", Checks::describe(&req))),
        }
    }

    fn delete(&self, base: &str, location: &str, auth: Option<&str>) -> Result<u16> {
        let url = resolve(base, location);
        let mut builder = self.http.delete(&url);
        if let Some(auth) = auth {
            builder = builder.header("Authorization", auth);
        }
        Ok(builder
            .send()
            .with_context(|| format!("DELETE {url}"))?
            .status()
            .as_u16())
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Resolves a Location header (absolute, absolute-path or relative) against the request URL.
fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let origin_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|i| base[i..].find('/').map(|j| i + j))
        .unwrap_or(base.len());
    if location.starts_with('/') {
        return format!("{}{location}", &base[..origin_end]);
    }
    let dir_end = base
        .rfind('/')
        .filter(|&i| i >= origin_end)
        .map(|i| i + 1)
        .unwrap_or(base.len());
    format!(
        "{}{}{location}",
        &base[..dir_end],
        if dir_end == base.len() && !base.ends_with('/') {
            "/"
        } else {
            ""
        }
    )
}

/// Why an error body is not a readable message, if it is not.
fn unreadable(body: &str) -> Option<String> {
    let text = body.trim();
    if text.is_empty() {
        return Some("empty body".into());
    }
    if text.chars().filter(|c| c.is_alphabetic()).count() < 3 {
        return Some("no words".into());
    }
    if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Some("control characters".into());
    }
    None
}

/// The offer up to the middle of its `m=video` line ("m=video 9 UD"): not parseable as SDP.
fn cut_inside_video_mline(offer: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(offer);
    let at = text
        .find("m=video")
        .map(|i| i + "m=video 9 UD".len())
        .unwrap_or(text.len() / 2);
    offer[..at.min(offer.len())].to_vec()
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(300).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Waits until the viewer page has decoded at least `more` frames beyond `since`, and has stayed
/// live. Returns the new count.
fn keeps_playing(viewer: &mut Client, since: u64, more: u64, after: &str) -> Result<u64> {
    let ev = viewer
        .wait_for(
            &format!("the viewer to keep decoding after {after}"),
            Duration::from_secs(20),
            |ev| is_progress(ev) && (frames_of(ev, 0) >= since + more || state_of(ev, 0) != "live"),
        )
        .with_context(|| {
            format!("the viewer stopped decoding after {after} (it had {since} frames)")
        })?;
    if state_of(&ev, 0) != "live" {
        bail!("the viewer left the live state after {after}: {ev}");
    }
    Ok(frames_of(&ev, 0))
}

/// The reasons a stranger's datagram is dropped for (`hallcast_rx_dropped_total`).
const STRANGER_REASONS: [&str; 4] = [
    "not_webrtc",
    "unknown_address",
    "unknown_ufrag",
    "stun_refused",
];

/// `hallcast_rx_dropped_total` by reason, from the relay's /metrics.
fn dropped(info: &Info) -> Result<BTreeMap<&'static str, f64>> {
    let text = hallcast_tests::tree::metrics(&info.http_base)?;
    STRANGER_REASONS
        .iter()
        .chain(&["rejected"])
        .map(|&r| {
            hallcast_tests::tree::metric(
                &text,
                "hallcast_rx_dropped_total",
                Some(&format!("reason=\"{r}\"")),
            )
            .map(|v| (r, v))
            .with_context(|| format!("/metrics has no hallcast_rx_dropped_total{{reason=\"{r}\"}}"))
        })
        .collect()
}

fn delta(
    before: &BTreeMap<&'static str, f64>,
    after: &BTreeMap<&'static str, f64>,
) -> BTreeMap<&'static str, f64> {
    after
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// The relay's ICE username fragment and its UDP host candidate's port on 127.0.0.1, from an
/// SDP answer.
fn ufrag_and_port(answer: &str) -> Result<(String, u16)> {
    let ufrag = answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .context("the answer has no a=ice-ufrag")?
        .to_string();
    let port = answer
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .find_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            (f.len() > 5 && f[2].eq_ignore_ascii_case("udp") && f[4] == "127.0.0.1")
                .then(|| f[5].parse().ok())
                .flatten()
        })
        .with_context(|| format!("the answer has no UDP candidate on 127.0.0.1:\n{answer}"))?;
    Ok((ufrag, port))
}

#[test]
fn bad_input_is_refused_while_a_viewer_keeps_playing() {
    run(
        "bad_input_is_refused_while_a_viewer_keeps_playing",
        Weight::Heavy,
        |ctx| {
            let media_port = free_udp_port()?;
            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    media_port: Some(media_port),
                    ..Default::default()
                },
            )?;
            let info = demo.info.clone();
            let mut viewer = viewer_pages(ctx, &info.viewer_url, 1, 240, 0, &[])?;
            let playing = viewer.wait_for(
                "the viewer to play 30 frames",
                Duration::from_secs(60),
                |ev| is_progress(ev) && frames_of(ev, 0) >= 30 && state_of(ev, 0) == "live",
            )?;
            let mut frames = frames_of(&playing, 0);

            let mut checks = Checks::new()?;
            checks.control(&info, "before the bad input");
            let offer = sdp::viewer_offer().into_bytes();
            let whep = |what, auth: Option<String>, ct, body: Vec<u8>| Request {
                what,
                url: info.whep_url.clone(),
                auth,
                content_type: ct,
                body,
            };
            let whip = |what, auth: Option<String>, ct, body: Vec<u8>| Request {
                what,
                url: info.whip_url.clone(),
                auth,
                content_type: ct,
                body,
            };
            let viewer_auth = || Some(bearer(&info.viewer_token));
            let key_auth = || Some(bearer(&info.stream_key));
            let sdp_type = Some("application/sdp");

            // Malformed SDP → 400.
            checks.expect(
                whep(
                    "malformed SDP (prose)",
                    viewer_auth(),
                    sdp_type,
                    b"this is not an SDP offer\r\n".to_vec(),
                ),
                &[400],
                &[],
            );
            checks.expect(
                whep(
                    "malformed SDP (offer cut inside its video m-line)",
                    viewer_auth(),
                    sdp_type,
                    cut_inside_video_mline(&offer),
                ),
                &[400],
                &[],
            );
            checks.expect(
                whep(
                    "malformed SDP (empty body)",
                    viewer_auth(),
                    sdp_type,
                    Vec::new(),
                ),
                &[400],
                &[],
            );
            checks.expect(
                whep(
                    "malformed SDP (binary)",
                    viewer_auth(),
                    sdp_type,
                    vec![0xff, 0xfe, 0x00, 0x9c, 0x80, 0x01],
                ),
                &[400],
                &[],
            );

            // Missing or wrong token → 401.
            checks.expect(
                whep("WHEP without a token", None, sdp_type, offer.clone()),
                &[401],
                &[],
            );
            checks.expect(
                whep(
                    "WHEP with a wrong token",
                    Some(bearer("not-the-viewer-token")),
                    sdp_type,
                    offer.clone(),
                ),
                &[401],
                &[],
            );
            checks.expect(
                whep(
                    "WHEP with Basic auth",
                    Some("Basic aGFsbDpjYXN0".into()),
                    sdp_type,
                    offer.clone(),
                ),
                &[401],
                &[],
            );
            let pub_offer = sdp::publisher_offer().into_bytes();
            checks.expect(
                whip(
                    "WHIP without a stream key",
                    None,
                    sdp_type,
                    pub_offer.clone(),
                ),
                &[401],
                &[],
            );
            checks.expect(
                whip(
                    "WHIP with a wrong stream key",
                    Some(bearer("not-the-stream-key")),
                    sdp_type,
                    pub_offer.clone(),
                ),
                &[401],
                &[],
            );
            // Authentication comes before the body is read: whatever the body, a wrong
            // credential is a 401.
            checks.expect(
                whip(
                    "WHIP with a wrong stream key and an empty body",
                    Some(bearer("not-the-stream-key")),
                    None,
                    Vec::new(),
                ),
                &[401],
                &[],
            );
            checks.expect(
                whep(
                    "WHEP with a wrong token and a malformed body",
                    Some(bearer("not-the-viewer-token")),
                    Some("text/plain"),
                    b"garbage".to_vec(),
                ),
                &[401],
                &[],
            );
            checks.expect(
                whip(
                    "WHIP with the viewer token (a viewer may not publish)",
                    viewer_auth(),
                    sdp_type,
                    pub_offer.clone(),
                ),
                &[401],
                &[],
            );

            // Unknown conference → 404.
            let unknown = format!("no-such-conference-{}", std::process::id());
            checks.expect(
                Request {
                    what: "WHEP to an unknown conference",
                    url: info.url(&format!("/whep/{unknown}")),
                    auth: viewer_auth(),
                    content_type: sdp_type,
                    body: offer.clone(),
                },
                &[404],
                &[],
            );
            checks.expect(
                Request {
                    what: "WHIP to an unknown conference",
                    url: info.url(&format!("/whip/{unknown}")),
                    auth: key_auth(),
                    content_type: sdp_type,
                    body: pub_offer.clone(),
                },
                &[404],
                &[],
            );

            // Body over 64 KiB → 413.
            checks.expect(
                whep(
                    "an offer over 64 KiB",
                    viewer_auth(),
                    sdp_type,
                    sdp::padded_offer(70 * 1024).into_bytes(),
                ),
                &[413],
                &[],
            );

            // Wrong content type → 415.
            checks.expect(
                whep(
                    "Content-Type text/plain",
                    viewer_auth(),
                    Some("text/plain"),
                    offer.clone(),
                ),
                &[415],
                &[],
            );
            checks.expect(
                whep(
                    "Content-Type application/json",
                    viewer_auth(),
                    Some("application/json"),
                    offer.clone(),
                ),
                &[415],
                &[],
            );
            checks.expect(
                whip(
                    "WHIP with Content-Type text/plain",
                    key_auth(),
                    Some("text/plain"),
                    pub_offer.clone(),
                ),
                &[415],
                &[],
            );

            // No supported codec → 400 or 422, naming the supported ones.
            let supported = ["opus", "h264", "vp8"];
            checks.expect(
                whep(
                    "an offer with only G722 audio and AV1 video",
                    viewer_auth(),
                    sdp_type,
                    sdp::offer(Direction::RecvOnly, &[Codec::G722], &[Codec::Av1]).into_bytes(),
                ),
                &[400, 422],
                &supported,
            );
            checks.expect(
                whep(
                    "an offer with only a made-up codec",
                    viewer_auth(),
                    sdp_type,
                    sdp::offer(Direction::RecvOnly, &[Codec::MadeUp], &[Codec::MadeUp])
                        .into_bytes(),
                ),
                &[400, 422],
                &supported,
            );

            // A second publisher while live → 409: a hand-made offer, then a real one (aiortc).
            checks.expect(
                whip(
                    "a second publisher (hand-made offer)",
                    key_auth(),
                    sdp_type,
                    pub_offer.clone(),
                ),
                &[409],
                &[],
            );
            let mut second = aiortc_publisher(ctx, &info, 10)?;
            let refused: PublishResult =
                results::parse("second publisher", &second.result(Duration::from_secs(60))?)?;
            checks.n_checks += 1;
            if refused.status != Some(409) || refused.body.as_deref().and_then(unreadable).is_some()
            {
                checks.failures.push(format!(
                "a second publisher (aiortc, real offer): POST {} → {:?} {:?}; expected 409 with a readable message",
                info.whip_url, refused.status, refused.body
            ));
            }

            demo.ensure_running()?;
            frames = keeps_playing(&mut viewer, frames, 30, "the bad HTTP requests")?;

            // Garbage on the media port, from strangers: dropped and counted by reason.
            let before = dropped(&info)?;
            let sent = spray_garbage(media_port, 3000)?;
            ensure!(
                sent > 2500,
                "could only send {sent} of 3000 garbage datagrams to 127.0.0.1:{media_port}"
            );
            demo.ensure_running()?;
            frames = keeps_playing(
                &mut viewer,
                frames,
                60,
                "3000 garbage datagrams on the media port",
            )?;
            let garbage = delta(&before, &dropped(&info)?);
            let strangers: f64 = STRANGER_REASONS.iter().map(|r| garbage[r]).sum();
            ensure!(
                strangers >= sent as f64 * 0.9
                    && garbage["not_webrtc"] > 0.0
                    && garbage["unknown_address"] > 0.0,
                "{sent} garbage datagrams sent; hallcast_rx_dropped_total rose by {garbage:?}: \
                 expected ≥ 90 % of them counted, under not_webrtc and unknown_address among others"
            );

            // A STUN flood: well-formed binding requests naming a live session (a hand-made
            // WHEP offer's, made now) and naming nobody, from senders without the password.
            let answer = hallcast_tests::http::Http::new(&info.http_base)?.post_sdp(
                &info.whep_url,
                Some(&info.viewer_token),
                &sdp::viewer_offer(),
            )?;
            ensure!(
                answer.status == 201,
                "a WHEP offer for the flood's target: {} {}",
                answer.status,
                answer.body
            );
            let (ufrag, port) = ufrag_and_port(&answer.body)?;
            let before = dropped(&info)?;
            let n_flood = 20_000;
            let flooded = stun_flood(
                port,
                &[format!("{ufrag}:fl00"), "nobody00:fl00".to_string()],
                n_flood,
            )?;
            ensure!(
                flooded > n_flood * 9 / 10,
                "could only send {flooded} of {n_flood} STUN requests to 127.0.0.1:{port}"
            );
            demo.ensure_running()?;
            frames = keeps_playing(
                &mut viewer,
                frames,
                60,
                "20,000 STUN binding requests on the media port",
            )?;
            let flood = delta(&before, &dropped(&info)?);
            eprintln!(
                "dropped by reason: {sent} garbage datagrams → {garbage:?}; {flooded} STUN \
                 requests → {flood:?}"
            );
            // Half named the session: refused by its integrity check (or, had the session
            // ended meanwhile, unknown); half named nobody.
            ensure!(
                flood["stun_refused"] + flood["unknown_ufrag"] >= flooded as f64 * 0.9
                    && flood["stun_refused"] >= flooded as f64 * 0.3
                    && flood["unknown_ufrag"] >= flooded as f64 * 0.3,
                "{flooded} STUN requests sent to 127.0.0.1:{port}, half for session ufrag {ufrag}; \
                 hallcast_rx_dropped_total rose by {flood:?}: expected each half counted, under \
                 stun_refused and unknown_ufrag"
            );

            // The relay still takes new viewers.
            checks.control(&info, "after the bad input");

            let pages = results::pages(&viewer.stop()?)?;
            let page = &pages[0];
            ensure!(
                page.frames_decoded >= frames,
                "the viewer's final count {} is below {frames}",
                page.frames_decoded
            );
            ensure!(
                !page.states.iter().any(|s| s != "connecting" && s != "live"),
                "the viewer did not stay live through the bad input: its states were {:?}",
                page.states
            );
            ensure!(
                page.n_peer_connections == 1,
                "the viewer had to reconnect ({} connections)",
                page.n_peer_connections
            );
            demo.ensure_running()?;
            ensure!(
                checks.failures.is_empty(),
                "{} of {} checks got a wrong answer from the relay:\n- {}",
                checks.failures.len(),
                checks.n_checks,
                checks.failures.join("\n- ")
            );
            Ok(())
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_request_url() {
        let base = "http://127.0.0.1:8080/whep/demo";
        assert_eq!(
            resolve(base, "/whep/demo/s/1"),
            "http://127.0.0.1:8080/whep/demo/s/1"
        );
        assert_eq!(
            resolve(base, "demo/s/1"),
            "http://127.0.0.1:8080/whep/demo/s/1"
        );
        assert_eq!(resolve(base, "http://other:1/x"), "http://other:1/x");
    }

    #[test]
    fn the_cut_offer_ends_inside_the_video_line() {
        let offer = sdp::viewer_offer().into_bytes();
        let cut = String::from_utf8(cut_inside_video_mline(&offer)).unwrap_or_default();
        assert!(cut.ends_with("\r\nm=video 9 UD"), "{cut:?}");
        assert!(cut.contains("m=audio"));
    }

    #[test]
    fn readable_messages() {
        assert!(unreadable("unsupported codecs; this relay speaks Opus, H264, VP8").is_none());
        assert!(unreadable("   ").is_some());
        assert!(unreadable("\u{1}\u{2}abc").is_some());
    }
}
