//! Access to the consoles (issue 12, item 6) over real HTTP against `hallcast demo`: strangers,
//! viewer links and stream keys are refused by the operator/admin pages and APIs; a wrong
//! password is refused; a signed-in cookie works for its role only; a forged cross-site POST (no
//! or a wrong CSRF header, a foreign Origin) is refused; the demo's signed-in links work.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hallcast_tests::{Demo, DemoOptions, Weight, hallcast_bin, run};
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use serde_json::Value;

const PASSWORD: &str = "mật khẩu của Chi 2026";

/// `hallcast hash-password` with the password on stdin.
pub(crate) fn hash_password(password: &str) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new(hallcast_bin()?)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "hallcast hash-password failed");
    let hash = String::from_utf8(out.stdout)?.trim().to_string();
    ensure!(
        hash.starts_with("$argon2id$"),
        "hash-password printed {hash:?}, expected an argon2id PHC string"
    );
    Ok(hash)
}

/// The `name=value` of each `Set-Cookie`, and the whole header lines.
fn set_cookies(r: &Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

fn cookie_value(lines: &[String], name: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let first = l.split(';').next()?;
        let (k, v) = first.split_once('=')?;
        (k.trim() == name && !v.is_empty()).then(|| v.to_string())
    })
}

/// A signed-in browser's cookies.
struct Jar {
    session: String,
    csrf: String,
}

impl Jar {
    fn from(lines: &[String]) -> Result<Jar> {
        Ok(Jar {
            session: cookie_value(lines, "hallcast_session")
                .with_context(|| format!("no hallcast_session cookie in {lines:?}"))?,
            csrf: cookie_value(lines, "hallcast_csrf")
                .with_context(|| format!("no hallcast_csrf cookie in {lines:?}"))?,
        })
    }

    fn on(&self, req: RequestBuilder) -> RequestBuilder {
        req.header(
            "Cookie",
            format!(
                "hallcast_session={}; hallcast_csrf={}",
                self.session, self.csrf
            ),
        )
    }
}

fn status_and_body(r: Response) -> Result<(u16, String)> {
    let s = r.status().as_u16();
    Ok((s, r.text()?))
}

fn bilingual(body: &str) -> bool {
    // Vietnamese first, then " / " and English.
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string())
        .contains(" / ")
}

#[test]
fn access_refuses_strangers_viewer_links_wrong_passwords_and_forged_posts() {
    run(
        "access_refuses_strangers_viewer_links_wrong_passwords_and_forged_posts",
        Weight::Light,
        |ctx| {
            let hash = hash_password(PASSWORD)?;
            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    no_source: true,
                    set: vec![format!(
                        "access.accounts=[{{name=\"chi\", role=\"operator\", password_hash=\"{hash}\"}}]"
                    )],
                    ..Default::default()
                },
            )?;
            let info = demo.info.clone();
            let base = info.http_base.clone();
            let host = base.trim_start_matches("http://").to_string();
            let http = Http::builder()
                .timeout(Duration::from_secs(20))
                .redirect(reqwest::redirect::Policy::none())
                .build()?;
            let mut failures: Vec<String> = Vec::new();
            let mut check = |ok: bool, what: String| {
                if !ok {
                    failures.push(what);
                }
            };

            // Pages: not signed in → the sign-in page, which is in Vietnamese first.
            let r = http.get(info.url("/operator")).send()?;
            check(
                r.status() == 303
                    && r.headers().get("location").and_then(|v| v.to_str().ok())
                        == Some("/login?next=/operator"),
                format!(
                    "GET /operator unauthenticated → {} {:?}, expected 303 to /login?next=/operator",
                    r.status(),
                    r.headers().get("location")
                ),
            );
            let (s, body) = status_and_body(http.get(info.url("/login")).send()?)?;
            check(
                s == 200 && body.contains("lang=\"vi\"") && body.contains("Đăng nhập"),
                format!("GET /login → {s}, expected the Vietnamese sign-in page"),
            );

            // APIs: nothing, a viewer link, a join link, the stream key, a malformed header.
            let operator_api = info.url("/api/v1/conferences");
            // The broadcasts' recordings: operators run the broadcasts, so they may fetch them.
            let recordings_api = info.url("/api/v1/recordings");
            let admin_apis = [
                info.url("/api/v1/points"),
                info.url("/api/v1/sessions"),
                info.url("/api/v1/tree"),
            ];
            let bearers: [(&str, Option<String>); 4] = [
                ("no credential", None),
                (
                    "the viewer (join) token",
                    Some(format!("Bearer {}", info.viewer_token)),
                ),
                (
                    "the stream key",
                    Some(format!("Bearer {}", info.stream_key)),
                ),
                ("a malformed header", Some("Basic YWRtaW46YWRtaW4=".into())),
            ];
            for (what, auth) in &bearers {
                for url in [&operator_api, &recordings_api]
                    .into_iter()
                    .chain(admin_apis.iter())
                {
                    let mut req = http.get(url);
                    if let Some(a) = auth {
                        req = req.header("Authorization", a);
                    }
                    let (s, body) = status_and_body(req.send()?)?;
                    check(
                        s == 401 && bilingual(&body),
                        format!(
                            "GET {url} with {what} → {s} {body:?}, expected 401 with a bilingual message"
                        ),
                    );
                }
                let mut req = http.get(info.url("/operator"));
                if let Some(a) = auth {
                    req = req.header("Authorization", a);
                }
                let s = req.send()?.status().as_u16();
                check(
                    s == 303,
                    format!("GET /operator with {what} → {s}, expected 303 to /login"),
                );
            }
            // The viewer page's own link does not open a console either.
            let s = http
                .get(format!("{base}/operator?token={}", info.viewer_token))
                .send()?
                .status()
                .as_u16();
            check(
                s == 303,
                format!("GET /operator?token=<viewer token> → {s}, expected 303"),
            );

            // Wrong password, unknown name: 401, no cookie.
            for (name, pw) in [("chi", "sai mật khẩu"), ("nobody", PASSWORD), ("chi", "")] {
                let r = http
                    .post(info.url("/api/v1/login"))
                    .json(&serde_json::json!({"name": name, "password": pw}))
                    .send()?;
                let cookies = set_cookies(&r);
                let (s, body) = status_and_body(r)?;
                check(
                    s == 401 && cookies.is_empty() && bilingual(&body),
                    format!(
                        "login {name:?}/{pw:?} → {s} {body:?} cookies {cookies:?}, expected 401 without cookies"
                    ),
                );
            }
            // A sign-in posted by another site (login CSRF) is refused.
            let s = http
                .post(info.url("/api/v1/login"))
                .header("Origin", "http://evil.example")
                .json(&serde_json::json!({"name": "chi", "password": PASSWORD}))
                .send()?
                .status()
                .as_u16();
            check(
                s == 403,
                format!("login with Origin http://evil.example → {s}, expected 403"),
            );

            // The right password: 204 and the two cookies, as agreed.
            let r = http
                .post(info.url("/api/v1/login"))
                .header("Origin", &base)
                .json(&serde_json::json!({"name": "chi", "password": PASSWORD}))
                .send()?;
            let lines = set_cookies(&r);
            ensure!(
                r.status() == 204,
                "login with the right password → {}",
                r.status()
            );
            let session_line = lines
                .iter()
                .find(|l| l.starts_with("hallcast_session="))
                .cloned()
                .unwrap_or_default();
            let csrf_line = lines
                .iter()
                .find(|l| l.starts_with("hallcast_csrf="))
                .cloned()
                .unwrap_or_default();
            check(
                session_line.contains("HttpOnly")
                    && session_line.contains("SameSite=Strict")
                    && session_line.contains("Path=/"),
                format!(
                    "session cookie {session_line:?}: expected HttpOnly; SameSite=Strict; Path=/"
                ),
            );
            check(
                csrf_line.contains("SameSite=Strict") && !csrf_line.contains("HttpOnly"),
                format!(
                    "CSRF cookie {csrf_line:?}: expected SameSite=Strict, readable by the page"
                ),
            );
            let chi = Jar::from(&lines)?;

            // The cookie opens the operator's page and API.
            let s = chi
                .on(http.get(info.url("/operator")))
                .send()?
                .status()
                .as_u16();
            check(
                s == 200,
                format!("GET /operator signed in → {s}, expected 200"),
            );
            let (s, body) = status_and_body(chi.on(http.get(info.url("/api/v1/me"))).send()?)?;
            check(
                s == 200 && body.contains("\"chi\"") && body.contains("\"operator\""),
                format!("GET /api/v1/me → {s} {body}"),
            );
            let (s, body) = status_and_body(chi.on(http.get(&operator_api)).send()?)?;
            check(
                s == 200 && body.contains(&info.conference),
                format!("GET /api/v1/conferences signed in → {s} {body:?}, expected the list"),
            );
            let (s, body) = status_and_body(chi.on(http.get(&recordings_api)).send()?)?;
            check(
                s == 200 && body.contains("\"recordings\""),
                format!("GET /api/v1/recordings signed in → {s} {body:?}, expected the list"),
            );
            // ... but not the admin's.
            for url in &admin_apis {
                let (s, body) = status_and_body(chi.on(http.get(url)).send()?)?;
                check(
                    s == 403 && bilingual(&body),
                    format!("GET {url} as an operator → {s} {body:?}, expected 403"),
                );
            }

            // Forged cross-site POSTs with the operator's cookie: no CSRF header, a wrong one,
            // a foreign Origin, a cross-site fetch.
            let create = serde_json::json!({"id": "hn-forged", "title": "Giả mạo"});
            let forged: [(&str, Vec<(&str, String)>); 4] = [
                (
                    "no X-CSRF-Token",
                    vec![("Origin", "http://evil.example".into())],
                ),
                (
                    "a wrong X-CSRF-Token",
                    vec![("X-CSRF-Token", "0".repeat(64))],
                ),
                (
                    "the right token from a foreign Origin",
                    vec![
                        ("X-CSRF-Token", chi.csrf.clone()),
                        ("Origin", "http://evil.example".into()),
                    ],
                ),
                (
                    "the right token from a cross-site fetch",
                    vec![
                        ("X-CSRF-Token", chi.csrf.clone()),
                        ("Sec-Fetch-Site", "cross-site".into()),
                    ],
                ),
            ];
            for (what, headers) in &forged {
                let mut req = chi.on(http.post(&operator_api)).json(&create);
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                let (s, body) = status_and_body(req.send()?)?;
                check(
                    s == 403 && bilingual(&body),
                    format!("POST /api/v1/conferences with {what} → {s} {body:?}, expected 403"),
                );
            }
            let (s, body) =
                status_and_body(
                    chi.on(http
                        .post(info.url(&format!("/api/v1/conferences/{}/end", info.conference))))
                        .header("Origin", "http://evil.example")
                        .send()?,
                )?;
            check(
                s == 403,
                format!("a forged POST .../end → {s} {body:?}, expected 403"),
            );
            let (s, body) = status_and_body(http.get(&operator_api).send()?)?;
            check(
                s == 401,
                format!("GET /api/v1/conferences without the cookie → {s} {body:?}"),
            );
            let listed: Value = chi.on(http.get(&operator_api)).send()?.json()?;
            check(
                !listed.to_string().contains("hn-forged")
                    && listed
                        .as_array()
                        .is_some_and(|a| a.iter().all(|c| c["state"] == "open")),
                format!(
                    "after the forged POSTs the conferences are {listed}: nothing may have changed"
                ),
            );
            // The page's own request (cookie + CSRF header + this Origin) works.
            let (s, body) = status_and_body(
                chi.on(http.post(&operator_api))
                    .header("X-CSRF-Token", &chi.csrf)
                    .header("Origin", &base)
                    .json(&serde_json::json!({"id": "hn-that", "title": "Hội nghị thật"}))
                    .send()?,
            )?;
            check(
                s == 201,
                format!("POST /api/v1/conferences as the page does → {s} {body:?}, expected 201"),
            );
            let _ = host;

            // Signing out ends the session on the server.
            let s = chi
                .on(http.post(info.url("/api/v1/logout")))
                .header("X-CSRF-Token", &chi.csrf)
                .send()?
                .status()
                .as_u16();
            check(s == 204, format!("POST /api/v1/logout → {s}, expected 204"));
            let s = chi.on(http.get(&operator_api)).send()?.status().as_u16();
            check(
                s == 401,
                format!("the signed-out cookie → {s}, expected 401"),
            );

            // The demo's signed-in links: the admin's opens the admin APIs; a made-up ticket
            // opens nothing.
            let admin_url = info.raw["admin_url"]
                .as_str()
                .context("info has no admin_url")?;
            let operator_url = info.raw["operator_url"]
                .as_str()
                .context("info has no operator_url")?;
            let r = http.get(admin_url).send()?;
            check(
                r.status() == 303
                    && r.headers().get("location").and_then(|v| v.to_str().ok()) == Some("/admin"),
                format!(
                    "GET admin_url → {} {:?}, expected 303 to /admin",
                    r.status(),
                    r.headers().get("location")
                ),
            );
            let admin = Jar::from(&set_cookies(&r))?;
            for url in &admin_apis {
                let s = admin.on(http.get(url)).send()?.status().as_u16();
                check(
                    s == 200,
                    format!("GET {url} as the demo admin → {s}, expected 200"),
                );
            }
            let r = http.get(operator_url).send()?;
            let to = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            check(
                r.status() == 303 && to == format!("/operator?conference={}", info.conference),
                format!("GET operator_url → {} {to:?}", r.status()),
            );
            let op = Jar::from(&set_cookies(&r))?;
            let s = op
                .on(http.get(info.url("/api/v1/points")))
                .send()?
                .status()
                .as_u16();
            check(
                s == 403,
                format!("the demo operator on /api/v1/points → {s}, expected 403"),
            );
            let s = http
                .get(info.url(&format!("/login/ticket/{}?next=/operator", "ab".repeat(32))))
                .send()?
                .status()
                .as_u16();
            check(s == 401, format!("a made-up ticket → {s}, expected 401"));
            // `next` never leaves the relay.
            let ticket = operator_url
                .split("/login/ticket/")
                .nth(1)
                .and_then(|t| t.split('?').next())
                .unwrap_or("");
            let r = http
                .get(info.url(&format!("/login/ticket/{ticket}?next=//evil.example/")))
                .send()?;
            let to = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            check(
                to == "/operator",
                format!("next=//evil.example/ → Location {to:?}, expected /operator"),
            );

            demo.ensure_running()?;
            ensure!(
                failures.is_empty(),
                "{} failures:\n  {}",
                failures.len(),
                failures.join("\n  ")
            );
            Ok(())
        },
    );
}
