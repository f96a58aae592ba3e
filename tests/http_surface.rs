//! The relay's HTTP surface without media: health, metrics, CORS preflights, the viewer page and
//! its static files, and 409 + Retry-After while nothing is published.

use std::time::Duration;

use anyhow::ensure;
use hallcast_tests::{Demo, Weight, repo_root, run, sdp};
use reqwest::blocking::{Client as Http, Response};

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[test]
fn http_surface_of_a_conference_without_publisher() {
    run(
        "http_surface_of_a_conference_without_publisher",
        Weight::Light,
        |ctx| {
            let mut demo = Demo::without_source(ctx)?;
            let info = demo.info.clone();
            let http = Http::builder()
                .timeout(Duration::from_secs(15))
                .redirect(reqwest::redirect::Policy::none())
                .build()?;
            let mut failures: Vec<String> = Vec::new();
            let mut check = |ok: bool, what: String| {
                if !ok {
                    failures.push(what);
                }
            };

            let r = http.get(info.url("/healthz")).send()?;
            check(
                r.status() == 200,
                format!("GET /healthz → {}, expected 200", r.status()),
            );

            let r = http.get(info.url("/metrics")).send()?;
            let status = r.status();
            let body = r.text()?;
            check(
                status == 200 && (body.contains("# TYPE ") || body.contains("# HELP ")),
                format!(
                    "GET /metrics → {status}, expected 200 with Prometheus text; got {:?}",
                    body.chars().take(200).collect::<String>()
                ),
            );
            // The attendance ledger's health is in the same place: nothing dropped so far.
            check(
                body.lines().any(|l| l == "hallcast_ledger_events_dropped_total 0")
                    && body
                        .lines()
                        .any(|l| l.starts_with("hallcast_ledger_events_stored_total ")),
                "GET /metrics has no hallcast_ledger_events_{dropped,stored}_total series (dropped must be 0)"
                    .to_string(),
            );

            // The sessions API is the admin's: no token, or a wrong one, is a 401 that says so.
            for auth in [None, Some("wrong")] {
                let mut req = http.get(info.url("/api/v1/sessions"));
                if let Some(t) = auth {
                    req = req.bearer_auth(t);
                }
                let r = req.send()?;
                let status = r.status();
                let body = r.text()?;
                check(
                    status == 401 && body.to_lowercase().contains("token"),
                    format!(
                        "GET /api/v1/sessions with token {auth:?} → {status} {body:?}, expected 401"
                    ),
                );
            }
            let r = http
                .get(info.url("/api/v1/sessions"))
                .bearer_auth(info.raw["admin_token"].as_str().unwrap_or_default())
                .send()?;
            let status = r.status();
            let v: serde_json::Value = r.json()?;
            check(
                status == 200
                    && v["sessions"].as_array().is_some_and(|s| s.is_empty())
                    && v["layers"].is_object(),
                format!("GET /api/v1/sessions (admin) → {status} {v}, expected no sessions yet"),
            );

            for (name, url) in [("WHIP", &info.whip_url), ("WHEP", &info.whep_url)] {
                let r = http
                    .request(reqwest::Method::OPTIONS, url)
                    .header("Origin", "http://example.invalid")
                    .header("Access-Control-Request-Method", "POST")
                    .header(
                        "Access-Control-Request-Headers",
                        "authorization, content-type",
                    )
                    .send()?;
                let accept_post = header(&r, "Accept-Post").unwrap_or_default();
                let allow_origin = header(&r, "Access-Control-Allow-Origin");
                check(
                    r.status() == 204 || (name == "WHEP" && r.status().is_success()),
                    format!("OPTIONS {url} ({name}) → {}, expected 204", r.status()),
                );
                check(
                    accept_post.contains("application/sdp"),
                    format!(
                        "OPTIONS {url} ({name}): Accept-Post is {accept_post:?}, expected application/sdp"
                    ),
                );
                check(
                    allow_origin.is_some(),
                    format!("OPTIONS {url} ({name}): no Access-Control-Allow-Origin (CORS)"),
                );
            }

            // Nobody publishes: a viewer is told to come back later.
            let r = http
                .post(&info.whep_url)
                .header("Authorization", format!("Bearer {}", info.viewer_token))
                .header("Content-Type", "application/sdp")
                .body(sdp::viewer_offer())
                .send()?;
            let status = r.status();
            let retry_after = header(&r, "Retry-After");
            let body = r.text().unwrap_or_default();
            check(
                status == 409,
                format!("WHEP POST while not live → {status} {body:?}, expected 409"),
            );
            check(
                retry_after
                    .as_deref()
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .is_some_and(|s| s >= 1),
                format!(
                    "WHEP POST while not live: Retry-After is {retry_after:?}, expected a number of seconds ≥ 1"
                ),
            );

            // The viewer page and its static files, as the repository has them.
            let r = http.get(&info.viewer_url).send()?;
            let status = r.status();
            let ctype = header(&r, "Content-Type").unwrap_or_default();
            // Its address carries the point's join link: nothing it loads may see it as Referer.
            let referrer = header(&r, "Referrer-Policy");
            check(
                referrer.as_deref() == Some("no-referrer"),
                format!(
                    "GET {}: Referrer-Policy is {referrer:?}, expected no-referrer (the URL holds a join link)",
                    info.viewer_url
                ),
            );
            let page = r.text()?;
            check(
                status == 200 && ctype.starts_with("text/html"),
                format!(
                    "GET {} → {status} ({ctype}), expected 200 text/html",
                    info.viewer_url
                ),
            );
            for asset in ["/static/watch.js", "/static/watch.css"] {
                check(
                    page.contains(asset),
                    format!("the viewer page does not refer to {asset}"),
                );
            }
            for (asset, file, ctype_wanted) in [
                ("/static/watch.js", "web/watch.js", "javascript"),
                ("/static/watch.css", "web/watch.css", "text/css"),
                (
                    "/static/admin-rollcall.js",
                    "web/admin-rollcall.js",
                    "javascript",
                ),
            ] {
                let r = http.get(info.url(asset)).send()?;
                let status = r.status();
                let ctype = header(&r, "Content-Type").unwrap_or_default();
                let served = r.text()?;
                let repo = std::fs::read_to_string(repo_root().join(file))?;
                check(
                    status == 200 && ctype.contains(ctype_wanted),
                    format!("GET {asset} → {status} ({ctype}), expected 200 {ctype_wanted}"),
                );
                check(
                    served == repo,
                    format!(
                        "GET {asset} does not serve the repository's {file} (is the binary stale?)"
                    ),
                );
            }
            demo.ensure_running()?;
            ensure!(
                failures.is_empty(),
                "{} problems:\n- {}",
                failures.len(),
                failures.join("\n- ")
            );
            Ok::<(), anyhow::Error>(())
        },
    );
}
