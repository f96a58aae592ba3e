//! Roll call (điểm danh, issue 12 item 7) end to end: headless Chromium plays four connection
//! points' viewer pages against `hallcast demo` (its built-in hall feed is live) and drives the
//! admin roll call panel (web/admin-rollcall.js, on a tiny page of the test's own that holds the
//! panel's section and the relay's /static/api.js and /static/admin-rollcall.js; see
//! tests/js/rollcall.mjs). One point answers, one ignores the prompt, one closed its page before
//! the roll call, one drops and rejoins during the countdown and still gets the prompt. The
//! viewer pages, the panel, the roll call API and the report (JSON, CSV, HTML) must all show
//! exactly that.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hallcast_tests::http::Http;
use hallcast_tests::{Client, ClientKind, Demo, DemoOptions, Weight, run};
use serde_json::{Value, json};

use crate::util::strings;

const ORG: &str = "so-noi-vu";
/// (id, name, role in the scenario)
const POINTS: [(&str, &str); 4] = [
    ("dc-tra-loi", "Điểm cầu trả lời"),
    ("dc-im-lang", "Điểm cầu không trả lời"),
    ("dc-mat-ket-noi", "Điểm cầu mất kết nối"),
    ("dc-vao-lai", "Điểm cầu vào lại"),
];
const PEOPLE_A: u32 = 12;
const PEOPLE_D: u32 = 7;
const DURATION_S: u32 = 30;

/// What the roll call must say of each point (the demo's own registered point never connects).
fn expected() -> BTreeMap<&'static str, (&'static str, Option<u32>)> {
    BTreeMap::from([
        ("dc-tra-loi", ("answered", Some(PEOPLE_A))),
        ("dc-im-lang", ("no_answer", None)),
        ("dc-mat-ket-noi", ("not_connected", None)),
        ("dc-vao-lai", ("answered", Some(PEOPLE_D))),
        ("diem-cau-demo", ("not_connected", None)),
    ])
}

struct Admin {
    http: Http,
    token: String,
    /// The demo's signed-in admin link (the dashboard's sign-in).
    url: String,
}

impl Admin {
    fn post(&self, path: &str, body: Value, expect: u16) -> Result<Value> {
        let a = self.http.post_json(path, Some(&self.token), &body)?;
        ensure!(
            a.status == expect,
            "POST {path} {body} → {} {}, expected {expect}",
            a.status,
            a.body
        );
        a.json()
    }

    fn get(&self, path: &str) -> Result<Value> {
        let a = self.http.get(path, Some(&self.token))?;
        ensure!(a.status == 200, "GET {path} → {} {}", a.status, a.body);
        a.json()
    }

    fn get_text(&self, path: &str) -> Result<String> {
        let a = self.http.get(path, Some(&self.token))?;
        ensure!(a.status == 200, "GET {path} → {} {}", a.status, a.body);
        Ok(a.body)
    }
}

#[test]
fn rollcall_one_answers_one_ignores_one_disconnected_one_rejoins() {
    run(
        "rollcall_one_answers_one_ignores_one_disconnected_one_rejoins",
        Weight::Heavy,
        |ctx| -> Result<()> {
            let mut demo = Demo::start(ctx, DemoOptions::default())?;
            let info = demo.info.clone();
            let admin = Admin {
                http: Http::new(&info.http_base)?,
                token: info.raw["admin_token"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .context("the demo's info file has no admin_token")?
                    .to_string(),
                url: info.raw["admin_url"]
                    .as_str()
                    .context("the demo's info file has no admin_url")?
                    .to_string(),
            };
            let c = &info.conference;
            admin.post(
                "/api/v1/organisations",
                json!({"id": ORG, "name": "Sở Nội vụ"}),
                201,
            )?;
            for (id, name) in POINTS {
                admin.post(
                    "/api/v1/points",
                    json!({"id": id, "org_id": ORG, "name": name, "expected_headcount": 15}),
                    201,
                )?;
            }
            let links = admin.get(&format!("/api/v1/conferences/{c}/links?format=json"))?;
            let mut tokens = BTreeMap::new();
            for l in links.as_array().context("links: not a list")? {
                let url = l["url"].as_str().context("a link without url")?;
                let token = url
                    .split(['?', '&'])
                    .find_map(|kv| kv.strip_prefix("token="))
                    .context("a link without token")?;
                tokens.insert(
                    l["point_id"].as_str().unwrap_or_default().to_string(),
                    token.to_string(),
                );
            }
            let points_arg = POINTS
                .iter()
                .map(|(id, _)| {
                    Ok(format!(
                        "{id}={}",
                        tokens
                            .get(*id)
                            .with_context(|| format!("no link for {id}"))?
                    ))
                })
                .collect::<Result<Vec<_>>>()?
                .join(",");

            // Screenshots outlive the scratch directory: target/<profile>/e2e-results/<test>/.
            let out_dir = hallcast_tests::adapt::results_dir(
                "rollcall_one_answers_one_ignores_one_disconnected_one_rejoins",
            )?
            .to_string_lossy()
            .to_string();
            let mut browser = Client::start(
                ctx,
                ClientKind::Browser,
                "rollcall.mjs",
                &strings(&[
                    "--base",
                    &info.http_base,
                    "--conference",
                    c,
                    "--admin-token",
                    &admin.token,
                    "--admin-url",
                    &admin.url,
                    "--points",
                    &points_arg,
                    "--out-dir",
                    &out_dir,
                    "--duration",
                    &DURATION_S.to_string(),
                    "--people-a",
                    &PEOPLE_A.to_string(),
                    "--people-d",
                    &PEOPLE_D.to_string(),
                ]),
            )?;
            let r = browser.result(Duration::from_secs(240))?;
            demo.ensure_running()?;

            // ----- what the pages and the panel showed -----
            ensure!(
                r["page_errors"].as_array().is_some_and(|e| e.is_empty()),
                "the pages threw: {}",
                r["page_errors"]
            );
            let rollcall = r["rollcall_id"].as_str().context("no roll call id")?;
            ensure!(
                r["deadline_ms"].as_i64().unwrap_or(0) - r["started_ms"].as_i64().unwrap_or(0)
                    == i64::from(DURATION_S) * 1000,
                "the panel started a roll call of {} ms, expected {DURATION_S} s: {r}",
                r["deadline_ms"].as_i64().unwrap_or(0) - r["started_ms"].as_i64().unwrap_or(0)
            );
            for p in ["dc-tra-loi", "dc-im-lang", "dc-vao-lai"] {
                let ms = r["prompt_ms"][p].as_i64().unwrap_or(i64::MAX);
                ensure!(
                    ms <= 5_000,
                    "{p}'s page showed the prompt {ms} ms after the start (at most 5 s)"
                );
            }
            let rejoin = r["rejoin_prompt_ms"].as_i64().unwrap_or(i64::MAX);
            ensure!(
                rejoin <= 20_000,
                "the point that rejoined during the countdown got the prompt after {rejoin} ms"
            );
            let text = r["prompt_text"].as_str().unwrap_or_default();
            ensure!(
                text.starts_with("Điểm danh") && text.contains("Xác nhận có mặt"),
                "the prompt reads {text:?}: Vietnamese first (Điểm danh … Xác nhận có mặt)"
            );
            ensure!(
                r["ignored_final_state"] == "expired" && r["ignored_hidden"] == true,
                "the ignored prompt should be gone at the deadline: state {}, hidden {}",
                r["ignored_final_state"],
                r["ignored_hidden"]
            );
            let late_body = r["late_body"].as_str().unwrap_or_default();
            ensure!(
                r["late_status"] == 410
                    && late_body.contains("hết thời gian điểm danh")
                    && late_body.contains("The roll call is over"),
                "an answer after the deadline answered {} {late_body}, expected 410 with a \
                 bilingual message",
                r["late_status"]
            );
            let panel = &r["panel"];
            let list = |k: &str| -> Vec<String> {
                panel[k]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            ensure!(
                list("answered") == ["dc-tra-loi", "dc-vao-lai"]
                    && list("no_answer") == ["dc-im-lang"]
                    && list("not_connected") == ["dc-mat-ket-noi", "diem-cau-demo"],
                "the admin panel shows {panel}"
            );
            ensure!(
                panel["people"].as_str() == Some((PEOPLE_A + PEOPLE_D).to_string().as_str()),
                "the panel counts {} people, expected {}",
                panel["people"],
                PEOPLE_A + PEOPLE_D
            );
            for shot in r["screenshots"].as_array().context("no screenshots")? {
                let path = shot["path"].as_str().unwrap_or_default();
                ensure!(
                    std::path::Path::new(path).is_file(),
                    "screenshot {path} missing"
                );
                ensure!(
                    shot["distinct_colors"].as_u64().unwrap_or(0) >= 50
                        && shot["luma_stddev"].as_f64().unwrap_or(0.0) >= 8.0,
                    "the {} screenshot looks blank: {shot}",
                    shot["name"]
                );
                if let Ok(dir) = std::env::var("HALLCAST_SCREENSHOT_DIR") {
                    let _ = std::fs::create_dir_all(&dir);
                    let name = std::path::Path::new(path)
                        .file_name()
                        .context("screenshot name")?;
                    std::fs::copy(path, std::path::Path::new(&dir).join(name))?;
                }
            }
            ensure!(
                r["screenshots"].as_array().map_or(0, Vec::len) == 2,
                "expected the prompt and the panel screenshots: {}",
                r["screenshots"]
            );

            // ----- what the API and the report say -----
            let api = admin.get(&format!("/api/v1/conferences/{c}/rollcalls"))?;
            let calls = api["rollcalls"]
                .as_array()
                .context("rollcalls: not a list")?;
            ensure!(
                calls.len() == 1 && calls[0]["id"] == rollcall && calls[0]["running"] == false,
                "the roll call API lists {api}"
            );
            let got: BTreeMap<String, (String, Option<u64>)> = calls[0]["points"]
                .as_array()
                .context("points: not a list")?
                .iter()
                .map(|p| {
                    (
                        p["point"].as_str().unwrap_or_default().to_string(),
                        (
                            p["outcome"].as_str().unwrap_or_default().to_string(),
                            p["n_people"].as_u64(),
                        ),
                    )
                })
                .collect();
            let want: BTreeMap<String, (String, Option<u64>)> = expected()
                .into_iter()
                .map(|(p, (o, n))| (p.to_string(), (o.to_string(), n.map(u64::from))))
                .collect();
            ensure!(
                got == want,
                "the roll call API says {got:?}, expected {want:?}"
            );
            let counts = &calls[0]["counts"];
            ensure!(
                counts["answered"] == 2 && counts["no_answer"] == 1 && counts["not_connected"] == 2,
                "counts {counts}"
            );

            let report = admin.get(&format!("/api/v1/conferences/{c}/report?format=json"))?;
            let rc = &report["roll_calls"][0];
            ensure!(
                report["roll_calls"].as_array().map_or(0, Vec::len) == 1 && rc["id"] == rollcall,
                "the JSON report lists roll calls {}",
                report["roll_calls"]
            );
            for p in rc["points"].as_array().context("report roll call points")? {
                let id = p["point_id"].as_str().unwrap_or_default();
                let (o, n) = expected()
                    .get(id)
                    .copied()
                    .with_context(|| format!("the report lists an unknown point {id}"))?;
                ensure!(
                    p["outcome"] == o && p["n_people"].as_u64() == n.map(u64::from),
                    "the JSON report says {p} for {id}, expected {o} {n:?}"
                );
            }
            let csv = admin.get_text(&format!("/api/v1/conferences/{c}/report?format=csv"))?;
            let header = csv.lines().next().unwrap_or_default();
            ensure!(
                header
                    .trim_end()
                    .rsplit(',')
                    .next()
                    .unwrap_or_default()
                    .starts_with("Điểm danh "),
                "the CSV's last column should be the roll call: {header}"
            );
            for (id, cell) in [
                ("dc-tra-loi", format!("đã trả lời: {PEOPLE_A} người")),
                ("dc-im-lang", "không trả lời".to_string()),
                ("dc-mat-ket-noi", "không kết nối".to_string()),
                ("dc-vao-lai", format!("đã trả lời: {PEOPLE_D} người")),
            ] {
                let line = csv
                    .lines()
                    .find(|l| l.contains(&format!(",{id},")))
                    .with_context(|| format!("no CSV line for {id}"))?;
                let last = line.trim_end().rsplit(',').next().unwrap_or_default();
                ensure!(
                    last.starts_with(&cell),
                    "the CSV's roll call cell of {id} is {last:?}, expected {cell:?}…"
                );
            }
            let html = admin.get_text(&format!("/api/v1/conferences/{c}/report?format=html"))?;
            for (id, (o, _)) in expected() {
                ensure!(
                    html.contains(&format!("data-point=\"{id}\" data-outcome=\"{o}\"")),
                    "the HTML report does not show {id} as {o}"
                );
            }
            browser.stop().ok();
            Ok(())
        },
    );
}
