//! The attendance ledger end to end (issue 3): aiortc viewers holding different points' join
//! links watch the demo's source, leave, rejoin, crash, live through a relay restart and declare
//! headcounts; the report the relay serves must match what the viewers themselves measured.
//!
//! The viewers run `py/whep_play.py --wall-clock`, which stamps its first decoded frame and the
//! moment it sends its DELETE in Unix milliseconds, the clock the ledger records in. A point's
//! presence in the ledger starts when the relay first delivers media to it (video, or audio when
//! the hall sends only audio) and ends with the session, so each boundary must agree with the
//! viewer's own within [`TOLERANCE_MS`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::{Client, ClientKind, Ctx, Demo, DemoOptions, Info, Weight, hallcast_bin, run};
use reqwest::blocking::Client as Http;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::util::{is_2xx, strings};

const CONFERENCE: &str = "hoi-nghi-demo";
/// How far a time in the report may be from the time the viewer measured (issue 3: ±1 s).
const TOLERANCE_MS: i64 = 1_000;
/// A viewer that loses its relay without a word is ended within this (issue 3: 10 s).
const SILENT_END_MS: i64 = 10_000;
/// The ledger's heartbeat period: after a kill -9 the relay's sessions are closed at the last one.
const HEARTBEAT_MS: i64 = 2_000;
/// How long the viewers stay between join and leave (short: the CI machine has 2 cores).
const STAY: Duration = Duration::from_secs(4);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Sleeps until the Unix time `at_ms` (returns at once if it is past).
fn sleep_until(at_ms: i64) {
    let wait = at_ms - now_ms();
    if wait > 0 {
        thread::sleep(Duration::from_millis(wait as u64));
    }
}

// ----- the report, as much of its JSON as the tests read -----

#[derive(Clone, Copy, Debug, Deserialize)]
struct Interval {
    start_ms: i64,
    end_ms: i64,
}

#[derive(Debug, Deserialize)]
struct Broadcast {
    live: Vec<Interval>,
}

#[derive(Debug, Deserialize)]
struct Summary {
    n_orgs: u32,
    n_orgs_connected: u32,
    n_points: u32,
    n_points_connected: u32,
    total_headcount: u64,
}

#[derive(Debug, Deserialize)]
struct PointRow {
    point_id: String,
    org_id: Option<String>,
    connected: bool,
    first_join_ms: Option<i64>,
    last_leave_ms: Option<i64>,
    present_at_horizon: bool,
    present_ms: i64,
    minutes_present: f64,
    interruptions: u32,
    absences: u32,
    headcount: Option<u32>,
    headcount_declared_ms: Option<i64>,
    n_sessions: u32,
    n_timeouts: u32,
    audio_only_ms: i64,
    attendances: Vec<Interval>,
    intervals: Vec<Interval>,
}

#[derive(Debug, Deserialize)]
struct MissingPoint {
    point_id: String,
}

#[derive(Debug, Deserialize)]
struct OrgRow {
    org_id: String,
    n_points: u32,
    n_points_connected: u32,
    headcount: u64,
    missing: Vec<MissingPoint>,
}

#[derive(Debug, Deserialize)]
struct Report {
    broadcast: Broadcast,
    summary: Summary,
    points: Vec<PointRow>,
    unregistered: Vec<Value>,
    orgs: Vec<OrgRow>,
}

impl Report {
    fn point(&self, id: &str) -> Result<&PointRow> {
        self.points
            .iter()
            .find(|p| p.point_id == id)
            .with_context(|| format!("the report has no row for point {id}"))
    }

    fn org(&self, id: &str) -> Result<&OrgRow> {
        self.orgs
            .iter()
            .find(|o| o.org_id == id)
            .with_context(|| format!("the report has no row for organisation {id}"))
    }
}

// ----- the admin API -----

/// The relay's admin API with the demo's admin token.
struct Admin {
    http: Http,
    base: String,
    token: String,
}

impl Admin {
    fn new(info: &Info) -> Result<Admin> {
        let token = info.raw["admin_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .with_context(|| format!("the demo's info file has no admin_token: {}", info.raw))?
            .to_string();
        Ok(Admin {
            http: Http::builder().timeout(Duration::from_secs(15)).build()?,
            base: info.http_base.clone(),
            token,
        })
    }

    /// Sends a request; fails unless the answer has status `expect`; returns the body as JSON.
    fn call(
        &self,
        req: reqwest::blocking::RequestBuilder,
        what: &str,
        expect: u16,
    ) -> Result<Value> {
        let r = req
            .bearer_auth(&self.token)
            .send()
            .with_context(|| format!("{what}: no answer"))?;
        let status = r.status().as_u16();
        let body = r.text()?;
        ensure!(
            status == expect,
            "{what} → {status} with body {body:?}, expected {expect}"
        );
        serde_json::from_str(&body)
            .with_context(|| format!("{what}: the body is not JSON: {body:?}"))
    }

    fn post_json(&self, path: &str, body: Value) -> Result<Value> {
        let what = format!("POST {path} {body}");
        self.call(
            self.http.post(format!("{}{path}", self.base)).json(&body),
            &what,
            201,
        )
    }

    fn get(&self, path: &str) -> Result<Value> {
        self.call(
            self.http.get(format!("{}{path}", self.base)),
            &format!("GET {path}"),
            200,
        )
    }

    /// Imports a registry CSV (all or nothing).
    fn import_csv(&self, csv: &str) -> Result<Value> {
        self.call(
            self.http
                .post(format!("{}/api/v1/points/import", self.base))
                .header("Content-Type", "text/csv")
                .body(csv.to_string()),
            "POST /api/v1/points/import",
            200,
        )
    }

    /// Every registered point's join token for `conference`, from the links API (JSON), by
    /// point id.
    fn join_tokens(&self, conference: &str) -> Result<BTreeMap<String, String>> {
        let links = self.get(&format!(
            "/api/v1/conferences/{conference}/links?format=json"
        ))?;
        let links = links
            .as_array()
            .with_context(|| format!("the links API answered {links}, expected a list"))?;
        let mut tokens = BTreeMap::new();
        for link in links {
            let (Some(point), Some(url)) = (link["point_id"].as_str(), link["url"].as_str()) else {
                bail!("a join link without point_id or url: {link}");
            };
            ensure!(
                url.starts_with(&format!("{}/watch/{conference}?", self.base)),
                "the join link of {point} is {url}, expected {}/watch/{conference}?token=…",
                self.base
            );
            let token = url
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("token="))
                .filter(|t| !t.is_empty())
                .with_context(|| format!("the join link of {point} carries no token: {url}"))?;
            tokens.insert(point.to_string(), token.to_string());
        }
        Ok(tokens)
    }

    /// The registry as the relay has it: (point id, organisation id) and organisation ids.
    fn registry(&self) -> Result<(BTreeMap<String, String>, BTreeSet<String>)> {
        let points = self.get("/api/v1/points")?;
        let orgs = self.get("/api/v1/organisations")?;
        let points = points
            .as_array()
            .context("GET /api/v1/points is not a list")?
            .iter()
            .map(|p| {
                Ok((
                    p["id"].as_str().context("a point without id")?.to_string(),
                    p["org_id"]
                        .as_str()
                        .context("a point without org_id")?
                        .to_string(),
                ))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        let orgs = orgs
            .as_array()
            .context("GET /api/v1/organisations is not a list")?
            .iter()
            .map(|o| {
                Ok(o["id"]
                    .as_str()
                    .context("an organisation without id")?
                    .to_string())
            })
            .collect::<Result<BTreeSet<_>>>()?;
        Ok((points, orgs))
    }

    fn report(&self) -> Result<Report> {
        let raw = self.get(&format!(
            "/api/v1/conferences/{CONFERENCE}/report?format=json"
        ))?;
        serde_json::from_value(raw.clone())
            .with_context(|| format!("the JSON report is not as documented: {raw}"))
    }
}

// ----- viewers -----

/// One aiortc viewer of one point; it leaves when told (SIGTERM: DELETE, then its result).
struct Viewer {
    point: String,
    client: Client,
}

impl Viewer {
    fn start(ctx: &Ctx, info: &Info, point: &str, token: &str) -> Result<Viewer> {
        let args = strings(&[
            "--url",
            &info.whep_url,
            "--token",
            token,
            "--duration",
            "120",
            "--wait-live",
            "--wall-clock",
            "--progress",
        ]);
        Ok(Viewer {
            point: point.to_string(),
            client: Client::start(ctx, ClientKind::Aiortc, "whep_play.py", &args)?,
        })
    }

    /// Waits for the first decoded video frame; returns its Unix time.
    fn joined(&mut self) -> Result<i64> {
        self.joined_on("first_frame")
    }

    /// Waits for the client's `first` line (`first_frame`: video, `first_audio`: audio)
    /// after a 201 to its WHEP POST; returns its Unix time.
    fn joined_on(&mut self, first: &str) -> Result<i64> {
        let what = format!("the {first} of point {}'s viewer", self.point);
        let posted = self.client.wait_for(&what, Duration::from_secs(60), |ev| {
            ev["event"] == "posted" && ev["status"] != 409
        })?;
        ensure!(
            posted["status"] == 201,
            "the relay refused point {}'s WHEP offer: {posted}",
            self.point
        );
        let ev = self
            .client
            .wait_for(&what, Duration::from_secs(30), |ev| ev["event"] == first)?;
        ev["wall_ms"]
            .as_i64()
            .with_context(|| format!("a {first} line without wall_ms: {ev}"))
    }

    /// The WHEP session's URL (from the answer to the POST).
    fn location(&self) -> Result<String> {
        let posted = self
            .client
            .events()
            .into_iter()
            .rev()
            .find(|ev| ev["event"] == "posted" && ev["status"] == 201)
            .context("the viewer printed no successful POST")?;
        posted["location"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("a posted line without location: {posted}"))
    }

    /// Leaves now (DELETE); returns the Unix time the DELETE was sent. Fails unless the relay
    /// accepted the DELETE.
    fn leave(&mut self) -> Result<i64> {
        let result = self.client.stop()?;
        ensure!(
            is_2xx(&Some(result["delete_status"].clone())),
            "point {}'s viewer: DELETE of its WHEP session answered {}, expected 2xx",
            self.point,
            result["delete_status"]
        );
        ensure!(
            result["frames_decoded"].as_u64().unwrap_or(0) > 0,
            "point {}'s viewer decoded no frame: {result}",
            self.point
        );
        result["delete_sent_wall_ms"]
            .as_i64()
            .with_context(|| format!("a result without delete_sent_wall_ms: {result}"))
    }
}

/// One stay of a point as its viewer measured it: first frame → DELETE sent.
#[derive(Clone, Copy, Debug)]
struct Stay {
    joined_ms: i64,
    left_ms: i64,
}

/// Collects every mismatch, so one run shows them all.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    /// `actual` (from the report) within `tolerance` of `expected` (measured by the viewer).
    fn near(&mut self, what: &str, actual: Option<i64>, expected: i64, tolerance: i64) {
        match actual {
            Some(a) if (a - expected).abs() <= tolerance => {}
            Some(a) => self.0.push(format!(
                "{what}: report {a}, measured {expected} (off by {} ms, tolerance ±{tolerance} ms)",
                a - expected
            )),
            None => self.0.push(format!(
                "{what}: missing from the report (measured {expected})"
            )),
        }
    }

    fn finish(self, report: &Report) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        bail!(
            "the attendance report disagrees with what the viewers measured:\n  - {}\nreport points: {:#?}",
            self.0.join("\n  - "),
            report.points
        )
    }
}

/// A point whose viewers came and left as `stays` (each ended by DELETE, rejoins within the
/// grace window): one attendance, one interval per stay, times as measured.
fn check_stays(p: &mut Problems, row: &PointRow, stays: &[Stay]) {
    let id = &row.point_id;
    p.check(row.connected, || format!("{id}: not connected"));
    p.check(!row.present_at_horizon, || {
        format!("{id}: still present after its last viewer left")
    });
    p.check(row.intervals.len() == stays.len(), || {
        format!(
            "{id}: {} presence intervals {:?}, expected {} (one per stay)",
            row.intervals.len(),
            row.intervals,
            stays.len()
        )
    });
    for (i, (iv, stay)) in row.intervals.iter().zip(stays).enumerate() {
        p.near(
            &format!("{id} interval {i} start"),
            Some(iv.start_ms),
            stay.joined_ms,
            TOLERANCE_MS,
        );
        p.near(
            &format!("{id} interval {i} end"),
            Some(iv.end_ms),
            stay.left_ms,
            TOLERANCE_MS,
        );
    }
    if let (Some(first), Some(last)) = (stays.first(), stays.last()) {
        p.near(
            &format!("{id} first join"),
            row.first_join_ms,
            first.joined_ms,
            TOLERANCE_MS,
        );
        p.near(
            &format!("{id} last leave"),
            row.last_leave_ms,
            last.left_ms,
            TOLERANCE_MS,
        );
    }
    let measured_ms: i64 = stays.iter().map(|s| s.left_ms - s.joined_ms).sum();
    p.near(
        &format!("{id} time present (ms)"),
        Some(row.present_ms),
        measured_ms,
        TOLERANCE_MS,
    );
    // minutes_present is present_ms in minutes, rounded to a tenth.
    let minutes_off_ms = (row.minutes_present * 60_000.0 - measured_ms as f64).abs();
    p.check(minutes_off_ms <= 3_000.0 + TOLERANCE_MS as f64, || {
        format!(
            "{id}: minutes_present {} but the viewers measured {:.3} min",
            row.minutes_present,
            measured_ms as f64 / 60_000.0
        )
    });
    p.check(row.attendances.len() == 1, || {
        format!(
            "{id}: {} attendances {:?}, expected 1 (rejoins within the grace window merge)",
            row.attendances.len(),
            row.attendances
        )
    });
    let rejoins = stays.len() as u32 - 1;
    p.check(row.interruptions == rejoins && row.absences == 0, || {
        format!(
            "{id}: {} interruptions and {} absences, expected {rejoins} and 0",
            row.interruptions, row.absences
        )
    });
    p.check(row.n_sessions == stays.len() as u32, || {
        format!(
            "{id}: {} sessions, expected {}",
            row.n_sessions,
            stays.len()
        )
    });
    p.check(row.n_timeouts == 0, || {
        format!(
            "{id}: {} sessions ended by timeout, expected 0 (all left with DELETE)",
            row.n_timeouts
        )
    });
}

// ----- 1. several points join, leave and rejoin -----

const GD_CSV: &str = "\u{feff}point_id,point_name,org_id,org_name,location,expected_headcount\n\
gd-1,Điểm cầu Trường Chu Văn An,so-giao-duc,Sở Giáo dục và Đào tạo,\"Hội trường A, số 10 Thụy Khuê\",40\n\
gd-2,Điểm cầu Trường Nguyễn Trãi,so-giao-duc,Sở Giáo dục và Đào tạo,Phòng họp B,25\n";

#[test]
fn points_join_leave_and_rejoin_and_the_report_matches() {
    run(
        "points_join_leave_and_rejoin_and_the_report_matches",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::start(ctx, DemoOptions::default())?;
            let info = demo.info.clone();
            let admin = Admin::new(&info)?;

            // Two organisations: one through the JSON API, one through a CSV import. gd-2 is
            // registered and never joins.
            admin.post_json(
                "/api/v1/organisations",
                json!({"id": "so-tai-chinh", "name": "Sở Tài chính"}),
            )?;
            for (id, name) in [
                ("tc-1", "Điểm cầu Tài chính 1"),
                ("tc-2", "Điểm cầu Tài chính 2"),
            ] {
                admin.post_json(
                    "/api/v1/points",
                    json!({"id": id, "org_id": "so-tai-chinh", "name": name,
                           "location": "Phòng họp tầng 3", "expected_headcount": 30}),
                )?;
            }
            let imported = admin.import_csv(GD_CSV)?;
            ensure!(
                imported["n_points"] == 2 && imported["n_organisations"] == 1,
                "importing 2 points of 1 organisation answered {imported}"
            );
            let tokens = admin.join_tokens(CONFERENCE)?;
            let token = |p: &str| {
                tokens
                    .get(p)
                    .cloned()
                    .with_context(|| format!("the links API lists no link for {p}: {tokens:?}"))
            };

            // The script: tc-1 and tc-2 join; tc-1 leaves and rejoins at once while gd-1 joins
            // late; then everyone leaves, tc-2 first.
            let mut tc1 = Viewer::start(ctx, &info, "tc-1", &token("tc-1")?)?;
            let mut tc2 = Viewer::start(ctx, &info, "tc-2", &token("tc-2")?)?;
            let tc1_joined = tc1.joined()?;
            let tc2_joined = tc2.joined()?;
            sleep_until(tc1_joined + STAY.as_millis() as i64);
            let tc1_left = tc1.leave()?;
            let mut tc1_again = Viewer::start(ctx, &info, "tc-1", &token("tc-1")?)?;
            let mut gd1 = Viewer::start(ctx, &info, "gd-1", &token("gd-1")?)?;
            let tc1_rejoined = tc1_again.joined()?;
            let gd1_joined = gd1.joined()?;
            thread::sleep(STAY);
            let tc2_left = tc2.leave()?;
            thread::sleep(Duration::from_secs(1));
            let gd1_left = gd1.leave()?;
            let tc1_left_again = tc1_again.leave()?;
            demo.ensure_running()?;

            let report = admin.report()?;
            let (registry, orgs) = admin.registry()?;
            let stays: BTreeMap<&str, Vec<Stay>> = BTreeMap::from([
                (
                    "tc-1",
                    vec![
                        Stay {
                            joined_ms: tc1_joined,
                            left_ms: tc1_left,
                        },
                        Stay {
                            joined_ms: tc1_rejoined,
                            left_ms: tc1_left_again,
                        },
                    ],
                ),
                (
                    "tc-2",
                    vec![Stay {
                        joined_ms: tc2_joined,
                        left_ms: tc2_left,
                    }],
                ),
                (
                    "gd-1",
                    vec![Stay {
                        joined_ms: gd1_joined,
                        left_ms: gd1_left,
                    }],
                ),
            ]);

            let mut p = Problems::default();
            // Exactly the points that joined are connected; every registered point has a row.
            for (point, org) in &registry {
                match report.point(point) {
                    Ok(row) => {
                        let joined = stays.contains_key(point.as_str());
                        p.check(row.connected == joined, || {
                            format!(
                                "{point}: connected = {}, but its viewers {}",
                                row.connected,
                                if joined { "played" } else { "never joined" }
                            )
                        });
                        p.check(row.org_id.as_deref() == Some(org.as_str()), || {
                            format!(
                                "{point}: organisation {:?}, registered in {org}",
                                row.org_id
                            )
                        });
                    }
                    Err(e) => p.0.push(format!("{e:#}")),
                }
            }
            p.check(report.points.len() == registry.len(), || {
                format!(
                    "{} point rows, {} registered points",
                    report.points.len(),
                    registry.len()
                )
            });
            p.check(report.unregistered.is_empty(), || {
                format!("unregistered points: {:?}", report.unregistered)
            });
            for (point, point_stays) in &stays {
                match report.point(point) {
                    Ok(row) => check_stays(&mut p, row, point_stays),
                    Err(e) => p.0.push(format!("{e:#}")),
                }
            }
            // X/Y: both new organisations connected; the demo's own organisation (its point
            // never joined) did not.
            let s = &report.summary;
            p.check(
                (s.n_points, s.n_points_connected) == (registry.len() as u32, 3),
                || {
                    format!(
                        "points connected {}/{}, expected 3/{}",
                        s.n_points_connected,
                        s.n_points,
                        registry.len()
                    )
                },
            );
            p.check(
                (s.n_orgs, s.n_orgs_connected) == (orgs.len() as u32, 2),
                || {
                    format!(
                        "organisations connected {}/{}, expected 2/{}",
                        s.n_orgs_connected,
                        s.n_orgs,
                        orgs.len()
                    )
                },
            );
            // Who is missing: gd-2 under Sở Giáo dục; nobody under Sở Tài chính.
            let gd = report.org("so-giao-duc")?;
            let gd_missing: Vec<&str> = gd.missing.iter().map(|m| m.point_id.as_str()).collect();
            p.check(
                gd_missing == ["gd-2"] && (gd.n_points, gd.n_points_connected) == (2, 1),
                || format!("so-giao-duc: missing {gd_missing:?}, {}/{} connected; expected [gd-2], 1/2",
                    gd.n_points_connected, gd.n_points),
            );
            let tc = report.org("so-tai-chinh")?;
            p.check(
                tc.missing.is_empty() && (tc.n_points, tc.n_points_connected) == (2, 2),
                || {
                    format!(
                        "so-tai-chinh: missing {:?}, {}/{} connected; expected none, 2/2",
                        tc.missing, tc.n_points_connected, tc.n_points
                    )
                },
            );
            let missing: BTreeSet<&str> = report
                .orgs
                .iter()
                .flat_map(|o| o.missing.iter().map(|m| m.point_id.as_str()))
                .collect();
            let never: BTreeSet<&str> = registry
                .keys()
                .map(String::as_str)
                .filter(|pt| !stays.contains_key(pt))
                .collect();
            p.check(missing == never, || {
                format!("the missing list is {missing:?}, expected every point that never joined: {never:?}")
            });
            p.finish(&report)
        },
    );
}

// ----- 2. a viewer that vanishes without DELETE -----

#[test]
fn a_viewer_killed_without_delete_is_ended_by_the_relay_within_10_s() {
    run(
        "a_viewer_killed_without_delete_is_ended_by_the_relay_within_10_s",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::start(ctx, DemoOptions::default())?;
            let info = demo.info.clone();
            let admin = Admin::new(&info)?;
            let point = info.raw["point"]
                .as_str()
                .unwrap_or("diem-cau-demo")
                .to_string();
            let mut viewer = Viewer::start(ctx, &info, &point, &info.viewer_token)?;
            let joined = viewer.joined()?;
            let location = viewer.location()?;
            sleep_until(joined + 2_000);
            let row = admin.report()?;
            let row = row.point(&point)?;
            ensure!(
                row.present_at_horizon && row.connected,
                "{point} is not present in the report while its viewer plays: {row:?}"
            );

            let killed = now_ms();
            viewer.client.kill();
            // The report must show the point gone within 10 s of the kill (the last fetch may
            // take a moment, hence the slack on the polling deadline only).
            let report = loop {
                let report = admin.report()?;
                if !report.point(&point)?.present_at_horizon {
                    break report;
                }
                if now_ms() > killed + SILENT_END_MS + 1_000 {
                    bail!(
                        "{point}'s viewer was killed {} ms ago and the report still shows it present: {:?}",
                        now_ms() - killed,
                        report.point(&point)?
                    );
                }
                thread::sleep(Duration::from_millis(250));
            };
            demo.ensure_running()?;
            let row = report.point(&point)?;
            let mut p = Problems::default();
            p.near(
                &format!("{point} first join"),
                row.first_join_ms,
                joined,
                TOLERANCE_MS,
            );
            match row.last_leave_ms {
                Some(left) => p.check(left > killed && left <= killed + SILENT_END_MS, || {
                    format!("{point}: last leave {} ms after the kill, expected within (0, {SILENT_END_MS}] ms", left - killed)
                }),
                None => p.0.push(format!("{point}: no last leave although it is not present")),
            }
            p.check(row.intervals.len() == 1 && row.n_sessions == 1, || {
                format!(
                    "{point}: {} intervals, {} sessions; expected 1 and 1",
                    row.intervals.len(),
                    row.n_sessions
                )
            });
            p.check(row.n_timeouts == 1, || {
                format!(
                    "{point}: {} sessions ended by timeout, expected 1 (the killed viewer's)",
                    row.n_timeouts
                )
            });
            p.check(
                row.connected && report.summary.n_points_connected == 1,
                || {
                    format!(
                        "{point} connected = {}, points connected {}; expected true and 1",
                        row.connected, report.summary.n_points_connected
                    )
                },
            );
            p.finish(&report)?;

            // The relay forgot the session: its URL is gone.
            let r = Http::builder()
                .timeout(Duration::from_secs(15))
                .build()?
                .delete(&location)
                .bearer_auth(&info.viewer_token)
                .send()?;
            ensure!(
                r.status() == 404,
                "DELETE {location} after the relay ended the session by timeout → {}, expected 404",
                r.status()
            );
            Ok(())
        },
    );
}

// ----- 3. the relay restarts during the broadcast -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGTERM: the relay ends every session (RelayShutdown) before it exits.
    Term,
    /// SIGKILL: the restarted relay closes its predecessor's sessions at the last heartbeat.
    Kill,
}

fn port_of(addr: &str) -> Result<u16> {
    let port = addr
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap_or_default();
    port.parse().with_context(|| format!("no port in {addr:?}"))
}

/// `hallcast report --data-dir D --conference C --format json`, with the relay stopped.
fn cli_report(data_dir: &Path) -> Result<Report> {
    let out = Command::new(hallcast_bin()?)
        .arg("report")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--conference", CONFERENCE, "--format", "json"])
        .output()
        .context("cannot run hallcast report")?;
    ensure!(
        out.status.success(),
        "hallcast report exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "hallcast report printed no JSON report: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn relay_restart_during_the_broadcast(ctx: &Ctx, how: Stop) -> Result<()> {
    let data_dir = ctx.path("ledger");
    let mut demo = Demo::start(
        ctx,
        DemoOptions {
            data_dir: Some(data_dir.clone()),
            ..Default::default()
        },
    )?;
    let info = demo.info.clone();
    let admin = Admin::new(&info)?;
    admin.post_json(
        "/api/v1/organisations",
        json!({"id": "so-noi-vu", "name": "Sở Nội vụ"}),
    )?;
    for id in ["nv-1", "nv-2"] {
        admin.post_json(
            "/api/v1/points",
            json!({"id": id, "org_id": "so-noi-vu", "name": format!("Điểm cầu {id}")}),
        )?;
    }
    let tokens = admin.join_tokens(CONFERENCE)?;
    let points = ["nv-1", "nv-2"];
    let token = |p: &str| {
        tokens
            .get(p)
            .cloned()
            .with_context(|| format!("the links API lists no link for {p}"))
    };
    let http_port = port_of(&info.http_base)?;
    let media_port = port_of(info.raw["media_udp"].as_str().unwrap_or_default())?;

    let mut first = Vec::new();
    for pt in points {
        first.push(Viewer::start(ctx, &info, pt, &token(pt)?)?);
    }
    let mut joined = Vec::new();
    for v in &mut first {
        joined.push(v.joined()?);
    }
    thread::sleep(STAY);

    let stopped = now_ms();
    match how {
        Stop::Term => {
            let status = demo.stop(Duration::from_secs(20))?;
            ensure!(
                status.success(),
                "the relay exited with {status} after SIGTERM, expected success"
            );
        }
        Stop::Kill => {
            demo.kill()?;
        }
    }
    let mut demo = Demo::start(
        ctx,
        DemoOptions {
            data_dir: Some(data_dir.clone()),
            http_port: Some(http_port),
            media_port: Some(media_port),
            ..Default::default()
        },
    )
    .context("restarting the relay on the same ports and data directory")?;
    // The viewers lost their relay; they go too (they reconnect below as new processes). Only
    // now, so that nothing else can take the relay's ports while it is down.
    for v in &mut first {
        v.client.kill();
    }
    let info2 = demo.info.clone();
    ensure!(
        info2.whep_url == info.whep_url,
        "the restarted relay serves WHEP at {}, its predecessor at {}",
        info2.whep_url,
        info.whep_url
    );
    let admin = Admin::new(&info2)?;
    // Same join links as before the restart: the secret lives in the data directory.
    let mut second = Vec::new();
    for pt in points {
        second.push(Viewer::start(ctx, &info2, pt, &token(pt)?)?);
    }
    let mut rejoined = Vec::new();
    for v in &mut second {
        rejoined.push(v.joined()?);
    }
    thread::sleep(STAY);
    let mut left = Vec::new();
    for v in &mut second {
        left.push(v.leave()?);
    }
    demo.ensure_running()?;
    let report = admin.report()?;

    let mut p = Problems::default();
    for (i, pt) in points.iter().enumerate() {
        let row = report.point(pt)?;
        p.check(row.connected && !row.present_at_horizon, || {
            format!(
                "{pt}: connected = {}, present at the end = {}; expected true, false",
                row.connected, row.present_at_horizon
            )
        });
        p.check(
            row.intervals.len() == 2 && row.attendances.len() == 1,
            || format!("{pt}: {} intervals {:?} and {} attendances, expected 2 intervals in 1 attendance",
                row.intervals.len(), row.intervals, row.attendances.len()),
        );
        p.check(row.interruptions == 1 && row.absences == 0, || {
            format!(
                "{pt}: {} interruptions, {} absences; expected 1 and 0 (one interrupted presence)",
                row.interruptions, row.absences
            )
        });
        p.check(row.n_sessions == 2 && row.n_timeouts == 0, || {
            format!(
                "{pt}: {} sessions, {} timeouts; expected 2 and 0",
                row.n_sessions, row.n_timeouts
            )
        });
        p.near(
            &format!("{pt} first join"),
            row.first_join_ms,
            joined[i],
            TOLERANCE_MS,
        );
        p.near(
            &format!("{pt} last leave"),
            row.last_leave_ms,
            left[i],
            TOLERANCE_MS,
        );
        if let [before, after] = row.intervals.as_slice() {
            p.near(
                &format!("{pt} start before the restart"),
                Some(before.start_ms),
                joined[i],
                TOLERANCE_MS,
            );
            p.near(
                &format!("{pt} start after the restart"),
                Some(after.start_ms),
                rejoined[i],
                TOLERANCE_MS,
            );
            p.near(
                &format!("{pt} end after the restart"),
                Some(after.end_ms),
                left[i],
                TOLERANCE_MS,
            );
            match how {
                // Ended when the relay shut down.
                Stop::Term => p.near(
                    &format!("{pt} end at the shutdown"),
                    Some(before.end_ms),
                    stopped,
                    TOLERANCE_MS,
                ),
                // Closed at the dead relay's last heartbeat: before the kill, by at most a
                // heartbeat period.
                Stop::Kill => p.check(
                    before.end_ms <= stopped + 100
                        && before.end_ms >= stopped - HEARTBEAT_MS - TOLERANCE_MS,
                    || format!(
                        "{pt}: presence before the kill ended {} ms after it, expected within [-{}, 0] ms (last heartbeat)",
                        before.end_ms - stopped,
                        HEARTBEAT_MS + TOLERANCE_MS
                    ),
                ),
            }
        }
    }
    p.check(report.summary.n_points_connected == 2, || {
        format!(
            "points connected {}, expected 2",
            report.summary.n_points_connected
        )
    });
    p.check(report.broadcast.live.len() == 2, || {
        format!(
            "the broadcast was live in {:?}, expected two periods (before and after the restart)",
            report.broadcast.live
        )
    });
    p.finish(&report)?;

    // What the relay served is what it stored: with the relay stopped, the CLI reads the same
    // presence from the data directory.
    let status = demo.stop(Duration::from_secs(20))?;
    ensure!(
        status.success(),
        "the relay exited with {status} after SIGTERM"
    );
    let stored = cli_report(&data_dir)?;
    for pt in points {
        let (served, stored) = (report.point(pt)?, stored.point(pt)?);
        let key = |r: &PointRow| {
            (
                r.intervals
                    .iter()
                    .map(|i| (i.start_ms, i.end_ms))
                    .collect::<Vec<_>>(),
                r.n_sessions,
                r.interruptions,
            )
        };
        ensure!(
            key(served) == key(stored),
            "{pt}: the relay served {served:?} but `hallcast report` on its data directory reads {stored:?}"
        );
    }
    Ok(())
}

#[test]
fn relay_stopped_and_restarted_during_the_broadcast_one_interrupted_presence_per_point() {
    run(
        "relay_stopped_and_restarted_during_the_broadcast_one_interrupted_presence_per_point",
        Weight::Heavy,
        |ctx| relay_restart_during_the_broadcast(ctx, Stop::Term),
    );
}

#[test]
fn relay_killed_and_restarted_during_the_broadcast_one_interrupted_presence_per_point() {
    run(
        "relay_killed_and_restarted_during_the_broadcast_one_interrupted_presence_per_point",
        Weight::Heavy,
        |ctx| relay_restart_during_the_broadcast(ctx, Stop::Kill),
    );
}

// ----- 4. headcount declarations -----

fn declare(http: &Http, info: &Info, token: Option<&str>, n_people: u32) -> Result<(u16, Value)> {
    let mut req = http
        .post(info.url(&format!("/api/v1/conferences/{CONFERENCE}/headcount")))
        .json(&json!({ "n_people": n_people }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send()?;
    let status = r.status().as_u16();
    let body = r.text()?;
    Ok((
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ))
}

#[test]
fn the_latest_headcount_declaration_counts() {
    run(
        "the_latest_headcount_declaration_counts",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::start(ctx, DemoOptions::default())?;
            let info = demo.info.clone();
            let admin = Admin::new(&info)?;
            let point = info.raw["point"]
                .as_str()
                .unwrap_or("diem-cau-demo")
                .to_string();
            // A second point that declares people but never connects.
            admin.post_json(
                "/api/v1/organisations",
                json!({"id": "so-xay-dung", "name": "Sở Xây dựng"}),
            )?;
            admin.post_json(
                "/api/v1/points",
                json!({"id": "xd-1", "org_id": "so-xay-dung", "name": "Điểm cầu Xây dựng"}),
            )?;
            let tokens = admin.join_tokens(CONFERENCE)?;
            let xd_token = tokens.get("xd-1").context("no join link for xd-1")?;
            // A link of the same point for another conference.
            let other = admin.get(&format!(
                "/api/v1/conferences/hoi-nghi-khac/links?format=json&point={point}"
            ))?;
            let other_token = other[0]["url"]
                .as_str()
                .and_then(|u| u.split("token=").nth(1))
                .context("no join link for another conference")?
                .to_string();
            let http = Http::builder().timeout(Duration::from_secs(15)).build()?;

            let mut viewer = Viewer::start(ctx, &info, &point, &info.viewer_token)?;
            viewer.joined()?;
            let (status, body) = declare(&http, &info, None, 99)?;
            ensure!(
                status == 401,
                "a headcount without a join token → {status} {body}, expected 401"
            );
            let (status, body) = declare(&http, &info, Some(&info.viewer_token), 25)?;
            ensure!(
                status == 200 && body["n_people"] == 25 && body["point"] == point.as_str(),
                "declaring 25 people at {point} → {status} {body}, expected 200 for that point"
            );
            // Distinct milliseconds, so "the latest" is well defined.
            thread::sleep(Duration::from_millis(20));
            let (status, latest) = declare(&http, &info, Some(&info.viewer_token), 30)?;
            ensure!(
                status == 200 && latest["n_people"] == 30,
                "declaring 30 people at {point} → {status} {latest}, expected 200"
            );
            let (status, body) = declare(&http, &info, Some(xd_token), 50)?;
            ensure!(
                status == 200,
                "declaring 50 people at xd-1 → {status} {body}, expected 200"
            );
            let (status, body) = declare(&http, &info, Some(&other_token), 70)?;
            ensure!(
                status == 403,
                "a headcount with another conference's link → {status} {body}, expected 403"
            );
            thread::sleep(Duration::from_secs(1));
            viewer.leave()?;
            demo.ensure_running()?;

            let report = admin.report()?;
            let mut p = Problems::default();
            let row = report.point(&point)?;
            p.check(row.connected && row.headcount == Some(30), || {
            format!("{point}: connected = {}, headcount {:?}; expected true and 30 (the latest declaration)",
                row.connected, row.headcount)
        });
            p.check(row.headcount_declared_ms == latest["at_ms"].as_i64(), || {
            format!("{point}: headcount declared at {:?}, the latest declaration was answered with at_ms {}",
                row.headcount_declared_ms, latest["at_ms"])
        });
            let xd = report.point("xd-1")?;
            p.check(!xd.connected && xd.headcount == Some(50), || {
                format!(
                    "xd-1: connected = {}, headcount {:?}; expected false and 50",
                    xd.connected, xd.headcount
                )
            });
            // The total counts the people at connected points, each point's latest declaration.
            p.check(report.summary.total_headcount == 30, || {
                format!(
                    "total declared headcount {}, expected 30 (xd-1 never connected)",
                    report.summary.total_headcount
                )
            });
            if let Some(org) = &row.org_id {
                let o = report.org(org)?;
                p.check(o.headcount == 30, || {
                    format!("organisation {org}: headcount {}, expected 30", o.headcount)
                });
            }
            let o = report.org("so-xay-dung")?;
            p.check(o.headcount == 0, || {
                format!(
                    "so-xay-dung: headcount {}, expected 0 (never connected)",
                    o.headcount
                )
            });
            p.finish(&report)
        },
    );
}

// ----- 5. crash safety of the relay itself -----

/// Points in the join storm (issue 3: "500 points in 1 s").
const STORM_POINTS: usize = 500;
/// Concurrent declaring clients.
const STORM_CLIENTS: usize = 32;
/// The relay is killed once this many declarations were acknowledged.
const KILL_AFTER_ACKS: usize = 1_500;

/// One acknowledged headcount declaration.
#[derive(Clone, Debug)]
struct Ack {
    point: String,
    event_id: String,
    n_people: u32,
}

/// What one storm client saw.
#[derive(Default)]
struct StormLog {
    acks: Vec<Ack>,
    /// Per point, the last value sent whose answer never came (in flight at the kill).
    in_flight: BTreeMap<String, u32>,
    /// Retries that the relay answered as duplicates, as it must.
    n_duplicates_confirmed: usize,
}

/// Every point declares its headcount as the viewer page does when it joins, all at once,
/// then again and again, until the relay vanishes. A fifth of the declarations are sent a
/// second time with the same event id (a retry after a lost answer).
fn storm_client(
    http: &Http,
    info: &Info,
    points: &[(String, String)],
    seed: u64,
    acked: &std::sync::atomic::AtomicUsize,
) -> Result<StormLog> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut prng = hallcast_tests::net::Prng::new(seed);
    let mut log = StormLog::default();
    let url = info.url(&format!("/api/v1/conferences/{CONFERENCE}/headcount"));
    for round in 1u32.. {
        for (i, (point, token)) in points.iter().enumerate() {
            let n_people = round * 10 + (i as u32 % 10) + 1;
            let event_id = format!("{:016x}{:016x}", prng.next_u64(), prng.next_u64());
            let body = json!({ "n_people": n_people, "event_id": event_id });
            let send = || http.post(&url).bearer_auth(token).json(&body).send();
            let Ok(r) = send() else {
                // The relay is gone: this one may or may not have been stored.
                log.in_flight.insert(point.clone(), n_people);
                return Ok(log);
            };
            let status = r.status().as_u16();
            let answer: Value = r.json().unwrap_or(Value::Null);
            ensure!(
                status == 200 && answer["event_id"] == event_id.as_str(),
                "declaring {n_people} people at {point} → {status} {answer}, expected 200 echoing event id {event_id}"
            );
            log.acks.push(Ack {
                point: point.clone(),
                event_id: event_id.clone(),
                n_people,
            });
            acked.fetch_add(1, Relaxed);
            if prng.next_u64().is_multiple_of(5) {
                match send() {
                    Err(_) => return Ok(log),
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let answer: Value = r.json().unwrap_or(Value::Null);
                        ensure!(
                            status == 200 && answer["duplicate"] == true,
                            "a retry of event {event_id} → {status} {answer}, expected 200 with duplicate: true"
                        );
                        log.n_duplicates_confirmed += 1;
                    }
                }
            }
        }
    }
    unreachable!("the rounds never end before the relay is killed")
}

#[test]
fn relay_killed_during_a_join_storm_keeps_every_acknowledged_event_once() {
    run(
        "relay_killed_during_a_join_storm_keeps_every_acknowledged_event_once",
        Weight::Heavy,
        |ctx| {
            use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
            let data_dir = ctx.path("ledger");
            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    data_dir: Some(data_dir.clone()),
                    ..Default::default()
                },
            )?;
            let info = demo.info.clone();
            let admin = Admin::new(&info)?;
            let mut csv =
                String::from("point_id,point_name,org_id,org_name,location,expected_headcount\n");
            for i in 0..STORM_POINTS {
                let org = i / 10;
                csv.push_str(&format!(
                    "bao-{i:03},Điểm cầu số {i},don-vi-{org:02},Đơn vị số {org},Phòng họp {i},20\n"
                ));
            }
            let imported = admin.import_csv(&csv)?;
            ensure!(
                imported["n_points"] == STORM_POINTS,
                "importing {STORM_POINTS} points answered {imported}"
            );
            let tokens = admin.join_tokens(CONFERENCE)?;
            let points: Vec<(String, String)> = tokens
                .into_iter()
                .filter(|(p, _)| p.starts_with("bao-"))
                .collect();
            ensure!(
                points.len() == STORM_POINTS,
                "{} join links for the storm's points",
                points.len()
            );

            let acked = AtomicUsize::new(0);
            let started = std::time::Instant::now();
            let mut first_wave = None;
            let logs = thread::scope(|s| -> Result<Vec<StormLog>> {
                let mut handles = Vec::new();
                for (c, chunk) in points
                    .chunks(STORM_POINTS.div_ceil(STORM_CLIENTS))
                    .enumerate()
                {
                    let (info, acked) = (&info, &acked);
                    handles.push(s.spawn(move || {
                        let http = Http::builder().timeout(Duration::from_secs(15)).build()?;
                        let seed = (now_ms() as u64) ^ ((c as u64 + 1) << 40);
                        storm_client(&http, info, chunk, seed, acked)
                    }));
                }
                let deadline = std::time::Instant::now() + Duration::from_secs(90);
                while acked.load(Relaxed) < KILL_AFTER_ACKS {
                    if first_wave.is_none() && acked.load(Relaxed) >= STORM_POINTS {
                        first_wave = Some(started.elapsed());
                    }
                    ensure!(
                        std::time::Instant::now() < deadline
                            && handles.iter().all(|h| !h.is_finished()),
                        "the storm stalled at {} acknowledged declarations",
                        acked.load(Relaxed)
                    );
                    thread::sleep(Duration::from_millis(2));
                }
                demo.kill()?;
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .map_err(|_| anyhow::anyhow!("a storm client panicked"))?
                    })
                    .collect()
            })?;
            let acks: Vec<Ack> = logs.iter().flat_map(|l| l.acks.iter().cloned()).collect();
            let n_dup: usize = logs.iter().map(|l| l.n_duplicates_confirmed).sum();
            eprintln!(
                "storm: first {STORM_POINTS} declarations acknowledged after {:?}; {} acknowledged and {n_dup} retries answered as duplicates before the kill",
                first_wave,
                acks.len()
            );
            ensure!(
                acks.len() >= KILL_AFTER_ACKS,
                "only {} acknowledged declarations",
                acks.len()
            );

            // The relay comes back on its ledger.
            let demo = Demo::start(
                ctx,
                DemoOptions {
                    data_dir: Some(data_dir.clone()),
                    ..Default::default()
                },
            )
            .context("restarting the relay on its data directory")?;
            let admin = Admin::new(&demo.info)?;
            let stored = admin.get(&format!("/api/v1/conferences/{CONFERENCE}/events"))?;
            let stored = stored.as_array().context("the event log is not a list")?;
            let mut count: BTreeMap<&str, u32> = BTreeMap::new();
            let mut latest: BTreeMap<&str, (i64, u32)> = BTreeMap::new();
            for ev in stored {
                let id = ev["event_id"]
                    .as_str()
                    .with_context(|| format!("an event without id: {ev}"))?;
                *count.entry(id).or_default() += 1;
                if ev["kind"] == "headcount" {
                    let point = ev["point"].as_str().context("a headcount without point")?;
                    let n = ev["n_people"]
                        .as_u64()
                        .context("a headcount without n_people")?
                        as u32;
                    let at = ev["at_ms"].as_i64().context("an event without at_ms")?;
                    let e = latest.entry(point).or_insert((at, n));
                    if at >= e.0 {
                        *e = (at, n);
                    }
                }
            }
            if let Some((id, n)) = count.iter().find(|(_, n)| **n > 1) {
                bail!("event {id} is stored {n} times");
            }
            let lost: Vec<&Ack> = acks
                .iter()
                .filter(|a| !count.contains_key(a.event_id.as_str()))
                .collect();
            ensure!(
                lost.is_empty(),
                "{} of {} acknowledged declarations are missing after the kill, e.g. {:?}",
                lost.len(),
                acks.len(),
                lost.first()
            );
            // Each point's report headcount is its last acknowledged declaration, or the one
            // that was in flight at the kill if that one made it to disk.
            let report = admin.report()?;
            let mut last_acked: BTreeMap<&str, u32> = BTreeMap::new();
            for a in &acks {
                last_acked.insert(a.point.as_str(), a.n_people);
            }
            let in_flight: BTreeMap<&str, u32> = logs
                .iter()
                .flat_map(|l| l.in_flight.iter().map(|(p, n)| (p.as_str(), *n)))
                .collect();
            for (point, n) in &last_acked {
                let row = report.point(point)?;
                let ok =
                    row.headcount == Some(*n) || row.headcount == in_flight.get(point).copied();
                ensure!(
                    ok,
                    "point {point}: the report says {:?} people, its last acknowledged declaration was {n} (in flight at the kill: {:?}); the ledger's latest is {:?}",
                    row.headcount,
                    in_flight.get(point),
                    latest.get(point)
                );
            }
            Ok(())
        },
    );
}

// ----- 6. a hall that sends only audio -----

/// How long the audio-only viewer plays.
const AUDIO_ONLY_STAY: Duration = Duration::from_secs(8);
/// How far the audio-only point's time present may be from what its viewer measured.
const AUDIO_ONLY_TOLERANCE_MS: i64 = 2_000;

/// The hall's camera failed: its publisher offers audio and video but sends only audio. A point
/// that hears the hall attends it: present for the time its viewer played, that time recorded
/// as audio-only. The relay's log for such a session has no `media_flowing` (only
/// `audio_only`), so the presence must come from the meaning of `audio_only` itself.
#[test]
fn an_audio_only_broadcast_counts_its_points_present_with_their_time_recorded_as_audio_only() {
    run(
        "an_audio_only_broadcast_counts_its_points_present_with_their_time_recorded_as_audio_only",
        Weight::Heavy,
        |ctx| {
            let mut demo = Demo::without_source(ctx)?;
            let info = demo.info.clone();
            ensure!(
                info.conference == CONFERENCE,
                "the demo's conference is {}, expected {CONFERENCE}",
                info.conference
            );
            let admin = Admin::new(&info)?;
            let point = info.raw["point"]
                .as_str()
                .unwrap_or("diem-cau-demo")
                .to_string();
            let tokens = admin.join_tokens(CONFERENCE)?;
            let token = tokens
                .get(&point)
                .with_context(|| format!("the links API lists no link for {point}: {tokens:?}"))?;

            let mut publisher = Client::start(
                ctx,
                ClientKind::Aiortc,
                "whip_publish.py",
                &strings(&[
                    "--url",
                    &info.whip_url,
                    "--key",
                    &info.stream_key,
                    "--codec",
                    "vp8",
                    "--duration",
                    "120",
                    "--no-video-frames",
                    "--progress",
                ]),
            )?;
            crate::util::expect_published(&mut publisher, "the audio-only WHIP offer")?;

            let mut viewer = Viewer::start(ctx, &info, &point, token)?;
            let joined = viewer.joined_on("first_audio")?;
            sleep_until(joined + AUDIO_ONLY_STAY.as_millis() as i64);
            let played = viewer.client.stop()?;
            ensure!(
                is_2xx(&Some(played["delete_status"].clone())),
                "point {point}'s viewer: DELETE of its WHEP session answered {}, expected 2xx",
                played["delete_status"]
            );
            let left = played["delete_sent_wall_ms"]
                .as_i64()
                .with_context(|| format!("a result without delete_sent_wall_ms: {played}"))?;
            demo.ensure_running()?;

            let mut p = Problems::default();
            // The viewer heard the hall (~50 Opus frames a second) and saw nothing.
            let audio_frames = played["audio_frames_decoded"].as_u64().unwrap_or(0);
            let min_audio = 25 * AUDIO_ONLY_STAY.as_secs();
            p.check(audio_frames >= min_audio, || {
                format!(
                    "point {point}'s viewer decoded {audio_frames} audio frames in {AUDIO_ONLY_STAY:?}, expected at least {min_audio}: {played}"
                )
            });
            p.check(played["frames_decoded"] == 0, || {
                format!(
                    "point {point}'s viewer decoded {} video frames, but the hall sends no video",
                    played["frames_decoded"]
                )
            });

            let report = admin.report()?;
            let row = report.point(&point)?;
            let measured = left - joined;
            p.check(row.connected && !row.present_at_horizon, || {
                format!(
                    "{point}: connected = {}, present at the end = {}; expected true, false (it heard the hall for {measured} ms)",
                    row.connected, row.present_at_horizon
                )
            });
            p.near(
                &format!("{point} time present (ms)"),
                Some(row.present_ms),
                measured,
                AUDIO_ONLY_TOLERANCE_MS,
            );
            p.near(
                &format!("{point} first join"),
                row.first_join_ms,
                joined,
                AUDIO_ONLY_TOLERANCE_MS,
            );
            p.near(
                &format!("{point} time audio-only (ms), against its time present"),
                Some(row.audio_only_ms),
                row.present_ms,
                TOLERANCE_MS,
            );
            p.check(row.n_sessions == 1 && row.intervals.len() == 1, || {
                format!(
                    "{point}: {} sessions, {} intervals; expected 1 and 1",
                    row.n_sessions,
                    row.intervals.len()
                )
            });
            p.check(report.summary.n_points_connected == 1, || {
                format!(
                    "points connected {}, expected 1",
                    report.summary.n_points_connected
                )
            });

            // The relay's own log of the session: started, audio-only, ended; never a
            // media_flowing (so the presence above comes from audio_only) nor any video.
            let log = admin.get(&format!("/api/v1/conferences/{CONFERENCE}/events"))?;
            let log = log.as_array().context("the event log is not a list")?;
            let mut changes: Vec<(i64, String)> = log
                .iter()
                .filter(|ev| ev["kind"] == "session" && ev["point"] == point.as_str())
                .map(|ev| {
                    (
                        ev["at_ms"].as_i64().unwrap_or(0),
                        ev["change"].as_str().unwrap_or("?").to_string(),
                    )
                })
                .collect();
            // Stable: events of one millisecond keep the log's order.
            changes.sort_by_key(|(at, _)| *at);
            let changes: Vec<&str> = changes.iter().map(|(_, c)| c.as_str()).collect();
            p.check(
                changes.first() == Some(&"started")
                    && changes.contains(&"audio_only")
                    && changes.last() == Some(&"ended")
                    && !changes
                        .iter()
                        .any(|c| matches!(*c, "media_flowing" | "first_video_sent" | "video_resumed")),
                || {
                    format!(
                        "{point}: the session's log is {changes:?}, expected started, audio_only, ended (no media_flowing, no video)"
                    )
                },
            );
            let published = publisher.stop()?;
            p.check(published["video_packets_sent"] == 0, || {
                format!(
                    "the audio-only publisher sent {} video packets",
                    published["video_packets_sent"]
                )
            });
            p.finish(&report)
        },
    );
}
