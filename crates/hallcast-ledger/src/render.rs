//! Report and join-link documents: CSV, JSON and printable HTML.
//!
//! Why this lives in the ledger and not in the HTTP crate: these are *files* handed to
//! organisers, and `hallcast report` / `hallcast token` must write byte-for-byte the same
//! documents as the HTTP API without running a server. The JSON here is the report's file
//! format (a serde DTO private to this module); the server's request/response types stay in
//! the server crate.
//!
//! Times are shown in a fixed UTC offset (default +07:00, Vietnam, which has no daylight
//! saving); JSON also carries every time as Unix milliseconds. The HTML pages switch between
//! Vietnamese (default) and English with CSS only (no script), print cleanly, and embed QR
//! codes as inline SVG.

use std::fmt::Write as _;

use hallcast_core::accounting::{
    Interval, OrgRow, PointRow, Report, RollCall, RollCallOutcome, StoreOutage,
};
use qrcode::QrCode;
use qrcode::render::svg;
use serde::Serialize;

use crate::error::{LedgerError, Result};
use crate::ledger::JoinLink;
use crate::registry::{BOM, csv_cell, csv_err};

/// Language of a document. Vietnamese first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Vi,
    En,
}

impl std::str::FromStr for Lang {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "vi" | "vn" | "" => Ok(Lang::Vi),
            "en" => Ok(Lang::En),
            other => Err(LedgerError::Invalid(format!(
                "unknown language {other:?}: use vi or en"
            ))),
        }
    }
}

/// How to show times and text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    pub lang: Lang,
    /// Offset from UTC for displayed times, minutes (420 = UTC+07:00).
    pub utc_offset_minutes: i32,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            lang: Lang::Vi,
            utc_offset_minutes: 420,
        }
    }
}

/// The recording of one broadcast, as a report links it (the relay's recorder lists them;
/// the ledger only shows them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingLink {
    pub id: String,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    /// The media's duration, once the recording is complete.
    pub duration_ms: Option<i64>,
    pub bytes: u64,
    /// `recording`, `complete` or `interrupted`.
    pub state: String,
    pub url: String,
}

#[derive(Serialize)]
struct RecordingDto<'a> {
    id: &'a str,
    start_ms: i64,
    start: String,
    end_ms: Option<i64>,
    end: Option<String>,
    duration_ms: Option<i64>,
    bytes: u64,
    state: &'a str,
    url: &'a str,
}

/// A document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Html,
}

impl std::str::FromStr for Format {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "html" => Ok(Format::Html),
            other => Err(LedgerError::Invalid(format!(
                "unknown format {other:?}: use csv, json or html"
            ))),
        }
    }
}

impl Format {
    /// The HTTP content type of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

// ----- time and number formatting -----

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD HH:MM:SS` in the given offset.
pub fn format_time(ms: i64, utc_offset_minutes: i32) -> String {
    let local_s = ms.div_euclid(1000) + i64::from(utc_offset_minutes) * 60;
    let (y, mo, d) = civil_from_days(local_s.div_euclid(86_400));
    let sod = local_s.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// ISO 8601 with offset, e.g. `2025-03-01T08:00:05+07:00`.
pub fn format_iso(ms: i64, utc_offset_minutes: i32) -> String {
    let t = format_time(ms, utc_offset_minutes).replacen(' ', "T", 1);
    let sign = if utc_offset_minutes < 0 { '-' } else { '+' };
    let off = utc_offset_minutes.unsigned_abs();
    format!("{t}{sign}{:02}:{:02}", off / 60, off % 60)
}

fn offset_label(utc_offset_minutes: i32) -> String {
    let sign = if utc_offset_minutes < 0 { '-' } else { '+' };
    let off = utc_offset_minutes.unsigned_abs();
    format!("UTC{sign}{:02}:{:02}", off / 60, off % 60)
}

/// Minutes with one decimal.
pub fn minutes(ms: i64) -> String {
    format!("{:.1}", ms as f64 / 60_000.0)
}

fn seconds(ms: i64) -> String {
    format!("{:.0}", ms as f64 / 1000.0)
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// Both languages in one element: `<span class=vi>…</span><span class=en>…</span>`.
fn t(vi: &str, en: &str) -> String {
    format!(
        "<span class=\"vi\">{}</span><span class=\"en\">{}</span>",
        esc(vi),
        esc(en)
    )
}

// ----- store outages -----

/// One recording in a sentence: "2025-03-01 08:00:00 – 2025-03-01 10:00:00, 120.0 phút,
/// 812.3 MB" (or "đang ghi" / "recording", "bị ngắt" / "interrupted" for the end).
fn recording_summary(r: &RecordingLink, lang: Lang, utc_offset_minutes: i32) -> String {
    let vi = lang == Lang::Vi;
    let end = match (r.end_ms, r.state.as_str()) {
        (Some(ms), _) => format_time(ms, utc_offset_minutes),
        (None, "recording") => (if vi { "đang ghi" } else { "recording" }).to_owned(),
        (None, _) => (if vi { "bị ngắt" } else { "interrupted" }).to_owned(),
    };
    let mut text = format!("{} – {end}", format_time(r.start_ms, utc_offset_minutes));
    if let Some(d) = r.duration_ms {
        let _ = write!(text, ", {} {}", minutes(d), if vi { "phút" } else { "min" });
    }
    let _ = write!(text, ", {:.1} MB", r.bytes as f64 / 1e6);
    text
}

/// The notice a report carries for a store outage that overlapped its broadcast, e.g.
/// "Sổ ghi điểm danh mất kết nối cơ sở dữ liệu từ 2025-03-01 08:10:00 đến 08:12:30 (trạm
/// central): 120 sự kiện được ghi muộn, 0 sự kiện bị mất." Times in the document's offset.
pub fn outage_notice(o: &StoreOutage, lang: Lang, utc_offset_minutes: i32) -> String {
    let from = format_time(o.from_ms, utc_offset_minutes);
    let to = format_time(o.to_ms, utc_offset_minutes);
    match lang {
        Lang::Vi => {
            let mut n = format!(
                "Sổ ghi điểm danh mất kết nối cơ sở dữ liệu từ {from} đến {to} (trạm {}): \
                 {} sự kiện được ghi muộn, {} sự kiện bị mất.",
                o.node, o.n_stored_late, o.n_dropped
            );
            if o.n_dropped > 0 {
                n.push_str(" Số liệu có thể thiếu các sự kiện bị mất.");
            }
            n
        }
        Lang::En => {
            let mut n = format!(
                "The attendance ledger lost its database connection from {from} to {to} \
                 (relay {}): {} events were stored late, {} events were lost.",
                o.node, o.n_stored_late, o.n_dropped
            );
            if o.n_dropped > 0 {
                n.push_str(" The figures may lack the lost events.");
            }
            n
        }
    }
}

// ----- CSV -----

const CSV_COLUMNS: [(&str, &str); 22] = [
    ("Mã đơn vị", "org_id"),
    ("Tên đơn vị", "org_name"),
    ("Mã điểm cầu", "point_id"),
    ("Tên điểm cầu", "point_name"),
    ("Địa điểm", "location"),
    ("Đã kết nối", "connected"),
    ("Vào lúc", "first_join"),
    ("Rời lúc", "last_leave"),
    ("Số phút dự", "minutes_present"),
    ("% thời lượng phát", "percent_of_broadcast"),
    ("Số lần gián đoạn", "interruptions"),
    ("Số lần rời đi", "absences"),
    ("Gián đoạn dài nhất (giây)", "longest_gap_s"),
    ("Vào muộn (phút)", "late_join_min"),
    ("Số phút chỉ có tiếng", "audio_only_min"),
    ("Số phút hình bị đứng", "frozen_min"),
    // When the relay sent the first video packet (ms after the WHEP session was created); not
    // a frame the receiver decoded.
    ("Gửi hình đầu tiên sau (ms)", "first_video_after_ms"),
    ("Số người dự (khai báo)", "headcount"),
    ("Số người dự kiến", "expected_headcount"),
    ("Số phiên kết nối", "n_sessions"),
    ("Số phiên mất liên lạc", "n_timeouts"),
    // Last, so that scripts reading the columns by position before it still work.
    ("Trạm phục vụ", "relays"),
];

/// The relays of a point in one cell: `central; edge-a`.
fn relays_cell(r: &PointRow) -> String {
    r.relays.join("; ")
}

/// A point's outcome in one roll call, in one cell: `đã trả lời: 12 người (2025-03-01
/// 08:05:03)` / `không trả lời` / `không kết nối` (English: `answered: 12 (…)`, `no_answer`,
/// `not_connected`).
fn rollcall_cell(
    call: &RollCall,
    point: &hallcast_core::accounting::PointId,
    opts: &RenderOptions,
) -> String {
    let outcome = call
        .points
        .iter()
        .find(|p| &p.point == point)
        .map_or(RollCallOutcome::NotConnected, |p| p.outcome);
    match (outcome, opts.lang) {
        (RollCallOutcome::Answered { n_people, at_ms }, Lang::Vi) => format!(
            "đã trả lời: {n_people} người ({})",
            format_time(at_ms, opts.utc_offset_minutes)
        ),
        (RollCallOutcome::Answered { n_people, at_ms }, Lang::En) => format!(
            "answered: {n_people} ({})",
            format_time(at_ms, opts.utc_offset_minutes)
        ),
        (RollCallOutcome::NoAnswer, Lang::Vi) => "không trả lời".to_owned(),
        (RollCallOutcome::NotConnected, Lang::Vi) => "không kết nối".to_owned(),
        (o, Lang::En) => o.as_str().to_owned(),
    }
}

/// One line per point (registered, then unregistered). Vietnamese headers by default,
/// snake_case English headers with [`Lang::En`]; UTF-8 with a BOM for Excel. Each roll call
/// adds a column at the end (`Điểm danh <start time>` / `rollcall_<n>`), oldest first, so
/// the columns before keep their positions. When a store outage overlapped the broadcast,
/// one more row per outage follows the points: `Lưu ý` / `notice` in the first column, the
/// notice ([`outage_notice`]) in the second, the other cells empty.
pub fn report_csv(report: &Report, opts: &RenderOptions) -> Result<Vec<u8>> {
    report_csv_with(report, opts, &[])
}

/// [`report_csv`] with the broadcasts' recordings linked: after the points (and the
/// outage notices), one row per recording, oldest first: `Bản ghi` / `recording` in the
/// first column, its start, end, duration and size in the second, its download URL in the
/// third, the other cells empty.
pub fn report_csv_with(
    report: &Report,
    opts: &RenderOptions,
    recordings: &[RecordingLink],
) -> Result<Vec<u8>> {
    let mut out = BOM.as_bytes().to_vec();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        let mut header: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|(vi, en)| match opts.lang {
                Lang::Vi => (*vi).to_owned(),
                Lang::En => (*en).to_owned(),
            })
            .collect();
        for (i, call) in report.roll_calls.iter().enumerate() {
            header.push(match opts.lang {
                Lang::Vi => format!(
                    "Điểm danh {}",
                    format_time(call.started_ms, opts.utc_offset_minutes)
                ),
                Lang::En => format!("rollcall_{}", i + 1),
            });
        }
        w.write_record(&header).map_err(csv_err)?;
        let yes_no = |b: bool| match (opts.lang, b) {
            (Lang::Vi, true) => "có",
            (Lang::Vi, false) => "không",
            (Lang::En, true) => "yes",
            (Lang::En, false) => "no",
        };
        let opt = |v: Option<String>| v.unwrap_or_default();
        for r in report.points.iter().chain(&report.unregistered) {
            let last_leave = match (r.last_leave_ms, r.present_at_horizon) {
                (_, true) => match opts.lang {
                    Lang::Vi => "đang kết nối".to_owned(),
                    Lang::En => "still connected".to_owned(),
                },
                (Some(ms), false) => format_time(ms, opts.utc_offset_minutes),
                (None, false) => String::new(),
            };
            let calls: Vec<String> = report
                .roll_calls
                .iter()
                .map(|c| rollcall_cell(c, &r.point, opts))
                .collect();
            let fixed = [
                r.org.as_ref().map_or("", |o| o.as_str()),
                &r.org_name,
                r.point.as_str(),
                &r.name,
                &r.location,
                yes_no(r.connected),
                &opt(r
                    .first_join_ms
                    .map(|ms| format_time(ms, opts.utc_offset_minutes))),
                &last_leave,
                &minutes(r.present_ms),
                &format!("{:.1}", r.percent_of_broadcast),
                &r.interruptions.to_string(),
                &r.absences.to_string(),
                &opt(r.longest_gap_ms.map(seconds)),
                &opt(r.late_join_ms.map(minutes)),
                &minutes(r.audio_only_ms),
                &minutes(r.frozen_ms),
                &opt(r.first_video_after_ms.map(|v| v.to_string())),
                &opt(r.headcount.map(|d| d.n_people.to_string())),
                &opt(r.expected_headcount.map(|v| v.to_string())),
                &r.n_sessions.to_string(),
                &r.n_timeouts.to_string(),
                &relays_cell(r),
            ];
            w.write_record(
                fixed
                    .iter()
                    .copied()
                    .chain(calls.iter().map(String::as_str))
                    .map(csv_cell),
            )
            .map_err(csv_err)?;
        }
        for o in &report.store_outages {
            let mut row = vec![String::new(); header.len()];
            row[0] = match opts.lang {
                Lang::Vi => "Lưu ý".to_owned(),
                Lang::En => "notice".to_owned(),
            };
            row[1] = outage_notice(o, opts.lang, opts.utc_offset_minutes);
            w.write_record(&row).map_err(csv_err)?;
        }
        for r in recordings {
            let mut row = vec![String::new(); header.len()];
            row[0] = match opts.lang {
                Lang::Vi => "Bản ghi".to_owned(),
                Lang::En => "recording".to_owned(),
            };
            row[1] = recording_summary(r, opts.lang, opts.utc_offset_minutes);
            row[2] = r.url.clone();
            w.write_record(row.iter().map(String::as_str).map(csv_cell))
                .map_err(csv_err)?;
        }
        w.flush()?;
    }
    Ok(out)
}

// ----- JSON -----

#[derive(Serialize)]
struct IntervalDto {
    start_ms: i64,
    end_ms: i64,
    start: String,
    end: String,
}

#[derive(Serialize)]
struct PointDto<'a> {
    point_id: &'a str,
    registered: bool,
    name: &'a str,
    org_id: Option<&'a str>,
    org_name: &'a str,
    location: &'a str,
    expected_headcount: Option<u32>,
    connected: bool,
    first_join_ms: Option<i64>,
    first_join: Option<String>,
    last_leave_ms: Option<i64>,
    last_leave: Option<String>,
    present_at_horizon: bool,
    present_ms: i64,
    minutes_present: f64,
    percent_of_broadcast: f64,
    interruptions: u32,
    absences: u32,
    longest_gap_ms: Option<i64>,
    late_join_ms: Option<i64>,
    audio_only_ms: i64,
    frozen_ms: i64,
    /// ms from the WHEP session's creation until the relay sent its first video packet.
    first_video_after_ms: Option<u32>,
    headcount: Option<u32>,
    headcount_declared_ms: Option<i64>,
    n_sessions: u32,
    n_timeouts: u32,
    /// The relay nodes that served the point's sessions.
    relays: &'a [String],
    attendances: Vec<IntervalDto>,
    intervals: Vec<IntervalDto>,
}

#[derive(Serialize)]
struct MissingPointDto<'a> {
    point_id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct OrgDto<'a> {
    org_id: &'a str,
    name: &'a str,
    n_points: u32,
    n_points_connected: u32,
    headcount: u64,
    missing: Vec<MissingPointDto<'a>>,
}

#[derive(Serialize)]
struct SummaryDto {
    n_orgs: u32,
    n_orgs_connected: u32,
    n_points: u32,
    n_points_connected: u32,
    total_headcount: u64,
    total_expected_headcount: u64,
}

#[derive(Serialize)]
struct BroadcastDto {
    start_ms: Option<i64>,
    start: Option<String>,
    end_ms: Option<i64>,
    end: Option<String>,
    live_ms: i64,
    live: Vec<IntervalDto>,
}

#[derive(Serialize)]
struct RollCallPointDto<'a> {
    point_id: &'a str,
    name: &'a str,
    org_id: Option<&'a str>,
    org_name: &'a str,
    registered: bool,
    /// `answered`, `no_answer` or `not_connected`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    n_people: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answered_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answered: Option<String>,
}

#[derive(Serialize)]
struct RollCallDto<'a> {
    id: String,
    started_ms: i64,
    started: String,
    deadline_ms: i64,
    deadline: String,
    running: bool,
    n_answered: u32,
    n_no_answer: u32,
    n_not_connected: u32,
    /// People declared by the points that answered.
    n_people: u64,
    points: Vec<RollCallPointDto<'a>>,
}

fn rollcall_dto(c: &RollCall, off: i32) -> RollCallDto<'_> {
    RollCallDto {
        id: c.id.to_string(),
        started_ms: c.started_ms,
        started: format_iso(c.started_ms, off),
        deadline_ms: c.deadline_ms,
        deadline: format_iso(c.deadline_ms, off),
        running: c.running,
        n_answered: c.n_answered(),
        n_no_answer: c.n_no_answer(),
        n_not_connected: c.n_not_connected(),
        n_people: c.n_people(),
        points: c
            .points
            .iter()
            .map(|p| {
                let answered = match p.outcome {
                    RollCallOutcome::Answered { n_people, at_ms } => Some((n_people, at_ms)),
                    _ => None,
                };
                RollCallPointDto {
                    point_id: p.point.as_str(),
                    name: &p.name,
                    org_id: p.org.as_ref().map(|o| o.as_str()),
                    org_name: &p.org_name,
                    registered: p.registered,
                    outcome: p.outcome.as_str(),
                    n_people: answered.map(|a| a.0),
                    answered_ms: answered.map(|a| a.1),
                    answered: answered.map(|a| format_iso(a.1, off)),
                }
            })
            .collect(),
    }
}

#[derive(Serialize)]
struct StoreOutageDto<'a> {
    node: &'a str,
    from_ms: i64,
    from: String,
    to_ms: i64,
    to: String,
    /// Events that waited in the relay's queue and were stored when the store came back.
    n_stored_late: u64,
    /// Events dropped because the queue was full: lost.
    n_dropped: u64,
    notice_vi: String,
    notice_en: String,
}

#[derive(Serialize)]
struct ReportDto<'a> {
    conference: &'a str,
    title: Option<&'a str>,
    as_of_ms: i64,
    as_of: String,
    grace_ms: i64,
    broadcast: BroadcastDto,
    summary: SummaryDto,
    points: Vec<PointDto<'a>>,
    unregistered: Vec<PointDto<'a>>,
    orgs: Vec<OrgDto<'a>>,
    /// Roll calls (điểm danh), oldest first, each with every point's outcome.
    roll_calls: Vec<RollCallDto<'a>>,
    /// Times the ledger's database was unreachable while the broadcast was live, oldest
    /// first (empty when none): the report may be missing `n_dropped` events.
    store_outages: Vec<StoreOutageDto<'a>>,
    /// The recording of each broadcast of the conference, oldest first.
    recordings: Vec<RecordingDto<'a>>,
    n_events: u64,
    n_duplicates: u64,
}

fn interval_dto(i: &Interval, off: i32) -> IntervalDto {
    IntervalDto {
        start_ms: i.start_ms,
        end_ms: i.end_ms,
        start: format_iso(i.start_ms, off),
        end: format_iso(i.end_ms, off),
    }
}

fn point_dto(r: &PointRow, off: i32) -> PointDto<'_> {
    PointDto {
        point_id: r.point.as_str(),
        registered: r.registered,
        name: &r.name,
        org_id: r.org.as_ref().map(|o| o.as_str()),
        org_name: &r.org_name,
        location: &r.location,
        expected_headcount: r.expected_headcount,
        connected: r.connected,
        first_join_ms: r.first_join_ms,
        first_join: r.first_join_ms.map(|ms| format_iso(ms, off)),
        last_leave_ms: r.last_leave_ms,
        last_leave: r.last_leave_ms.map(|ms| format_iso(ms, off)),
        present_at_horizon: r.present_at_horizon,
        present_ms: r.present_ms,
        minutes_present: (r.present_ms as f64 / 6_000.0).round() / 10.0,
        percent_of_broadcast: (r.percent_of_broadcast * 10.0).round() / 10.0,
        interruptions: r.interruptions,
        absences: r.absences,
        longest_gap_ms: r.longest_gap_ms,
        late_join_ms: r.late_join_ms,
        audio_only_ms: r.audio_only_ms,
        frozen_ms: r.frozen_ms,
        first_video_after_ms: r.first_video_after_ms,
        headcount: r.headcount.map(|d| d.n_people),
        headcount_declared_ms: r.headcount.map(|d| d.at_ms),
        n_sessions: r.n_sessions,
        n_timeouts: r.n_timeouts,
        relays: &r.relays,
        attendances: r.attendances.iter().map(|i| interval_dto(i, off)).collect(),
        intervals: r.intervals.iter().map(|i| interval_dto(i, off)).collect(),
    }
}

fn org_dto(o: &OrgRow) -> OrgDto<'_> {
    OrgDto {
        org_id: o.org.as_str(),
        name: &o.name,
        n_points: o.n_points,
        n_points_connected: o.n_points_connected,
        headcount: o.headcount,
        missing: o
            .missing
            .iter()
            .map(|(p, n)| MissingPointDto {
                point_id: p.as_str(),
                name: n,
            })
            .collect(),
    }
}

/// The report as pretty JSON. `title` is the conference's title when known.
pub fn report_json(report: &Report, title: Option<&str>, opts: &RenderOptions) -> Result<String> {
    report_json_with(report, title, opts, &[])
}

/// [`report_json`] with the broadcasts' recordings linked.
pub fn report_json_with(
    report: &Report,
    title: Option<&str>,
    opts: &RenderOptions,
    recordings: &[RecordingLink],
) -> Result<String> {
    let off = opts.utc_offset_minutes;
    let dto = ReportDto {
        conference: report.conference.as_str(),
        title,
        as_of_ms: report.as_of_ms,
        as_of: format_iso(report.as_of_ms, off),
        grace_ms: report.grace_ms,
        broadcast: BroadcastDto {
            start_ms: report.broadcast_start_ms,
            start: report.broadcast_start_ms.map(|ms| format_iso(ms, off)),
            end_ms: report.broadcast_end_ms,
            end: report.broadcast_end_ms.map(|ms| format_iso(ms, off)),
            live_ms: report.broadcast_live_ms,
            live: report.live.iter().map(|i| interval_dto(i, off)).collect(),
        },
        summary: SummaryDto {
            n_orgs: report.n_orgs,
            n_orgs_connected: report.n_orgs_connected,
            n_points: report.n_points,
            n_points_connected: report.n_points_connected,
            total_headcount: report.total_headcount,
            total_expected_headcount: report.total_expected_headcount,
        },
        points: report.points.iter().map(|r| point_dto(r, off)).collect(),
        unregistered: report
            .unregistered
            .iter()
            .map(|r| point_dto(r, off))
            .collect(),
        orgs: report.orgs.iter().map(org_dto).collect(),
        roll_calls: report
            .roll_calls
            .iter()
            .map(|c| rollcall_dto(c, off))
            .collect(),
        store_outages: report
            .store_outages
            .iter()
            .map(|o| StoreOutageDto {
                node: &o.node,
                from_ms: o.from_ms,
                from: format_iso(o.from_ms, off),
                to_ms: o.to_ms,
                to: format_iso(o.to_ms, off),
                n_stored_late: o.n_stored_late,
                n_dropped: o.n_dropped,
                notice_vi: outage_notice(o, Lang::Vi, off),
                notice_en: outage_notice(o, Lang::En, off),
            })
            .collect(),
        recordings: recordings
            .iter()
            .map(|r| RecordingDto {
                id: &r.id,
                start_ms: r.start_ms,
                start: format_iso(r.start_ms, off),
                end_ms: r.end_ms,
                end: r.end_ms.map(|ms| format_iso(ms, off)),
                duration_ms: r.duration_ms,
                bytes: r.bytes,
                state: &r.state,
                url: &r.url,
            })
            .collect(),
        n_events: report.n_events,
        n_duplicates: report.n_duplicates,
    };
    serde_json::to_string_pretty(&dto).map_err(|e| LedgerError::Invalid(format!("JSON: {e}")))
}

// ----- HTML -----

const STYLE: &str = r#"
body{font-family:"Noto Sans","Segoe UI",Arial,sans-serif;margin:1.5rem;color:#111;font-size:14px}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin-top:1.6rem;border-bottom:2px solid #8b0000}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #999;padding:.25rem .4rem;text-align:left;vertical-align:top}
th{background:#f1e6e6}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.no td{background:#fff3f3}.muted{color:#666}.big{font-size:1.3rem;font-weight:bold}
.notice{border:2px solid #b8860b;background:#fff8e1;padding:.3rem .6rem;margin:.6rem 0}
.summary td{width:50%}.lang{float:right}.lang label{margin-left:.6rem;cursor:pointer;text-decoration:underline}
.lang input{display:none}
#lang-vi:checked~main .en,#lang-en:checked~main .vi{display:none}
#lang-vi:checked~.lang label[for=lang-vi],#lang-en:checked~.lang label[for=lang-en]{font-weight:bold;text-decoration:none}
.cards{display:flex;flex-wrap:wrap;gap:.6rem}
.card{border:1px solid #999;padding:.6rem;width:calc(50% - 1.6rem);break-inside:avoid;page-break-inside:avoid}
.card svg{width:160px;height:160px;float:right;margin-left:.5rem}
.url{font-family:monospace;font-size:.7rem;word-break:break-all;clear:both}
@media print{.lang{display:none}body{margin:0;font-size:11px}h2{break-after:avoid}}
"#;

fn page(title_vi: &str, title_en: &str, lang: Lang, body: &str) -> String {
    let (vi, en) = match lang {
        Lang::Vi => (" checked", ""),
        Lang::En => ("", " checked"),
    };
    format!(
        "<!doctype html>\n<html lang=\"vi\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} / {}</title><style>{STYLE}</style></head><body>\
         <input type=\"radio\" name=\"lang\" id=\"lang-vi\"{vi} hidden>\
         <input type=\"radio\" name=\"lang\" id=\"lang-en\"{en} hidden>\
         <div class=\"lang\"><label for=\"lang-vi\">Tiếng Việt</label><label for=\"lang-en\">English</label></div>\
         <main>{body}</main></body></html>\n",
        esc(title_vi),
        esc(title_en)
    )
}

/// The printable attendance report.
pub fn report_html(report: &Report, title: Option<&str>, opts: &RenderOptions) -> String {
    report_html_with(report, title, opts, &[])
}

/// [`report_html`] with the broadcasts' recordings linked (a section after the summary
/// when there are any).
pub fn report_html_with(
    report: &Report,
    title: Option<&str>,
    opts: &RenderOptions,
    recordings: &[RecordingLink],
) -> String {
    let off = opts.utc_offset_minutes;
    let time = |ms: Option<i64>| ms.map_or_else(String::new, |ms| format_time(ms, off));
    let mut b = String::new();
    let conf = esc(report.conference.as_str());
    let _ = write!(
        b,
        "<h1>{} — {}</h1>",
        t("Báo cáo điểm danh", "Attendance report"),
        title.map_or_else(|| conf.clone(), |t| format!("{} ({conf})", esc(t)))
    );
    let _ = write!(
        b,
        "<p class=\"muted\">{} {} ({}). {} {} s.</p>",
        t("Số liệu tính đến", "Figures as of"),
        format_time(report.as_of_ms, off),
        offset_label(off),
        t(
            "Mất kết nối rồi vào lại trong vòng",
            "Reconnections count as one attendance when back within"
        ),
        report.grace_ms / 1000
    );
    if !report.store_outages.is_empty() {
        let _ = write!(b, "<div class=\"notice\">");
        for o in &report.store_outages {
            let _ = write!(
                b,
                "<p>{}</p>",
                t(
                    &outage_notice(o, Lang::Vi, off),
                    &outage_notice(o, Lang::En, off)
                )
            );
        }
        let _ = write!(b, "</div>");
    }

    // Summary
    let _ = write!(b, "<table class=\"summary\">");
    let mut kv = |k: String, v: String| {
        let _ = write!(b, "<tr><th>{k}</th><td class=\"big\">{v}</td></tr>");
    };
    kv(
        t("Đơn vị có kết nối", "Organisations connected"),
        format!("{}/{}", report.n_orgs_connected, report.n_orgs),
    );
    kv(
        t("Điểm cầu có kết nối", "Connection points connected"),
        format!("{}/{}", report.n_points_connected, report.n_points),
    );
    kv(
        t("Tổng số người dự (khai báo)", "Total declared attendees"),
        report.total_headcount.to_string(),
    );
    kv(
        t("Bắt đầu phát", "Broadcast start"),
        time(report.broadcast_start_ms),
    );
    kv(
        t("Kết thúc phát", "Broadcast end"),
        match (report.broadcast_end_ms, report.broadcast_start_ms) {
            (Some(ms), _) => format_time(ms, off),
            (None, Some(_)) => t("đang phát", "still live"),
            (None, None) => t("chưa phát", "not started"),
        },
    );
    kv(
        t("Thời lượng phát (phút)", "Broadcast duration (minutes)"),
        minutes(report.broadcast_live_ms),
    );
    let _ = write!(b, "</table>");

    if !recordings.is_empty() {
        let _ = write!(
            b,
            "<h2>{}</h2><table class=\"recordings\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
            t("Bản ghi các buổi phát", "Recordings of the broadcasts"),
            t("Bắt đầu", "Start"),
            t("Kết thúc", "End"),
            t("Thời lượng (phút)", "Duration (minutes)"),
            t("Dung lượng (MB)", "Size (MB)"),
        );
        for r in recordings {
            let end = match (r.end_ms, r.state.as_str()) {
                (Some(ms), _) => format_time(ms, off),
                (None, "recording") => t("đang ghi", "recording"),
                (None, _) => t("bị ngắt", "interrupted"),
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{end}</td><td>{}</td><td>{:.1}</td><td><a href=\"{}\" download>{}</a></td></tr>",
                format_time(r.start_ms, off),
                r.duration_ms.map_or_else(String::new, minutes),
                r.bytes as f64 / 1e6,
                esc(&r.url),
                t("Tải về", "Download"),
            );
        }
        let _ = write!(b, "</table>");
    }

    // Who is missing
    let _ = write!(
        b,
        "<h2>{}</h2>",
        t("Đơn vị, điểm cầu vắng", "Who is missing")
    );
    let missing: Vec<&OrgRow> = report.missing().collect();
    if missing.is_empty() {
        let _ = write!(
            b,
            "<p>{}</p>",
            t(
                "Tất cả điểm cầu đã kết nối.",
                "Every connection point connected."
            )
        );
    } else {
        let _ = write!(
            b,
            "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
            t("Đơn vị", "Organisation"),
            t("Kết nối", "Connected"),
            t("Điểm cầu chưa kết nối", "Points not connected")
        );
        for o in missing {
            let names: Vec<String> = o
                .missing
                .iter()
                .map(|(p, n)| {
                    format!(
                        "{} <span class=\"muted\">({})</span>",
                        esc(n),
                        esc(p.as_str())
                    )
                })
                .collect();
            let absent = if o.connected() {
                String::new()
            } else {
                format!(" — <b>{}</b>", t("không kết nối", "not connected"))
            };
            let _ = write!(
                b,
                "<tr{}><td>{}{absent}</td><td class=\"n\">{}/{}</td><td>{}</td></tr>",
                if o.connected() { "" } else { " class=\"no\"" },
                esc(&o.name),
                o.n_points_connected,
                o.n_points,
                names.join("; ")
            );
        }
        let _ = write!(b, "</table>");
    }

    // Per point
    let _ = write!(
        b,
        "<h2>{}</h2>",
        t("Chi tiết từng điểm cầu", "Per connection point")
    );
    let head = [
        ("Đơn vị", "Organisation"),
        ("Điểm cầu", "Point"),
        ("Vào lúc", "First join"),
        ("Rời lúc", "Last leave"),
        ("Số phút dự", "Minutes present"),
        ("% thời lượng", "% of broadcast"),
        ("Gián đoạn", "Interruptions"),
        ("Gián đoạn dài nhất (giây)", "Longest gap (s)"),
        ("Vào muộn (phút)", "Late join (min)"),
        ("Chỉ có tiếng (phút)", "Audio only (min)"),
        ("Hình đứng (phút)", "Frozen (min)"),
        ("Gửi hình đầu tiên sau (ms)", "First video sent after (ms)"),
        ("Số người dự", "Attendees"),
        ("Trạm phục vụ", "Relay"),
    ];
    let point_table = |b: &mut String, rows: &[PointRow]| {
        let _ = write!(b, "<table><tr>");
        for (vi, en) in head {
            let _ = write!(b, "<th>{}</th>", t(vi, en));
        }
        let _ = write!(b, "</tr>");
        for r in rows {
            let leave = if r.present_at_horizon {
                t("đang kết nối", "still connected")
            } else {
                time(r.last_leave_ms)
            };
            let gaps = if r.absences > 0 {
                format!(
                    "{} (+{} {})",
                    r.interruptions,
                    r.absences,
                    t("lần rời", "left")
                )
            } else {
                r.interruptions.to_string()
            };
            let opt = |v: Option<String>| v.unwrap_or_default();
            let _ = write!(
                b,
                "<tr{}><td>{}</td><td>{} <span class=\"muted\">({})</span></td><td>{}</td><td>{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{:.1}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td>{}</td></tr>",
                if r.connected { "" } else { " class=\"no\"" },
                esc(&r.org_name),
                esc(&r.name),
                esc(r.point.as_str()),
                time(r.first_join_ms),
                leave,
                minutes(r.present_ms),
                r.percent_of_broadcast,
                gaps,
                opt(r.longest_gap_ms.map(seconds)),
                opt(r.late_join_ms.map(minutes)),
                minutes(r.audio_only_ms),
                minutes(r.frozen_ms),
                opt(r.first_video_after_ms.map(|v| v.to_string())),
                opt(r.headcount.map(|d| d.n_people.to_string())),
                esc(&relays_cell(r)),
            );
        }
        let _ = write!(b, "</table>");
    };
    point_table(&mut b, &report.points);
    if !report.unregistered.is_empty() {
        let _ = write!(
            b,
            "<h2>{}</h2>",
            t("Điểm cầu chưa đăng ký", "Unregistered points")
        );
        point_table(&mut b, &report.unregistered);
    }
    rollcalls_html(&mut b, &report.roll_calls, off);
    let _ = write!(
        b,
        "<p class=\"muted\">hallcast · {} {} · {} {}</p>",
        report.n_events,
        t("sự kiện", "events"),
        report.n_duplicates,
        t("sự kiện trùng bị bỏ qua", "duplicate events ignored")
    );
    page("Báo cáo điểm danh", "Attendance report", opts.lang, &b)
}

/// The roll calls section of the printable report: one table per roll call.
fn rollcalls_html(b: &mut String, calls: &[RollCall], off: i32) {
    if calls.is_empty() {
        return;
    }
    let _ = write!(b, "<h2>{}</h2>", t("Điểm danh", "Roll calls"));
    for (i, c) in calls.iter().enumerate() {
        let _ = write!(
            b,
            "<h3>{} {} — {} → {}{}</h3><p>{}: <b>{}</b> · {}: <b>{}</b> · {}: <b>{}</b> · {}: <b>{}</b></p>",
            t("Lần", "Roll call"),
            i + 1,
            format_time(c.started_ms, off),
            format_time(c.deadline_ms, off),
            if c.running {
                format!(" ({})", t("đang diễn ra", "running"))
            } else {
                String::new()
            },
            t("Đã trả lời", "Answered"),
            c.n_answered(),
            t("Không trả lời", "No answer"),
            c.n_no_answer(),
            t("Không kết nối", "Not connected"),
            c.n_not_connected(),
            t("Số người", "People"),
            c.n_people(),
        );
        let _ = write!(
            b,
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            t("Đơn vị", "Organisation"),
            t("Điểm cầu", "Point"),
            t("Kết quả", "Outcome"),
            t("Số người", "People"),
            t("Trả lời lúc", "Answered at"),
        );
        for p in &c.points {
            let (outcome, people, at) = match p.outcome {
                RollCallOutcome::Answered { n_people, at_ms } => (
                    t("Đã trả lời", "Answered"),
                    n_people.to_string(),
                    format_time(at_ms, off),
                ),
                RollCallOutcome::NoAnswer => (
                    t("Không trả lời", "No answer"),
                    String::new(),
                    String::new(),
                ),
                RollCallOutcome::NotConnected => (
                    t("Không kết nối", "Not connected"),
                    String::new(),
                    String::new(),
                ),
            };
            let _ = write!(
                b,
                "<tr{} data-point=\"{}\" data-outcome=\"{}\"><td>{}</td><td>{} <span class=\"muted\">({})</span></td>\
                 <td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                if matches!(p.outcome, RollCallOutcome::Answered { .. }) {
                    ""
                } else {
                    " class=\"no\""
                },
                esc(p.point.as_str()),
                p.outcome.as_str(),
                esc(&p.org_name),
                esc(&p.name),
                esc(p.point.as_str()),
                outcome,
                people,
                at,
            );
        }
        let _ = write!(b, "</table>");
    }
}

// ----- join links -----

/// Join links as CSV (BOM; English headers, stable for scripts).
pub fn links_csv(links: &[JoinLink], opts: &RenderOptions) -> Result<Vec<u8>> {
    let mut out = BOM.as_bytes().to_vec();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        w.write_record([
            "org_id",
            "org_name",
            "point_id",
            "point_name",
            "location",
            "expires",
            "url",
        ])
        .map_err(csv_err)?;
        for l in links {
            w.write_record(
                [
                    l.point.org.as_str(),
                    &l.org_name,
                    l.point.id.as_str(),
                    &l.point.name,
                    &l.point.location,
                    &format_iso(l.expires.saturating_mul(1000), opts.utc_offset_minutes),
                    &l.url,
                ]
                .map(csv_cell),
            )
            .map_err(csv_err)?;
        }
        w.flush()?;
    }
    Ok(out)
}

/// An inline SVG QR code of `text`, or `None` when it is too long for a QR code.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<svg::Color<'_>>()
        .min_dimensions(160, 160)
        .quiet_zone(true)
        .build();
    // Drop the XML declaration: the SVG goes inline in HTML.
    let start = svg.find("<svg")?;
    Some(svg[start..].to_owned())
}

/// A printable page of join links, one card per point with its QR code.
pub fn links_html(
    conference: &str,
    title: Option<&str>,
    links: &[JoinLink],
    opts: &RenderOptions,
) -> String {
    let mut b = String::new();
    let conf = esc(conference);
    let _ = write!(
        b,
        "<h1>{} — {}</h1><p class=\"muted\">{}</p><div class=\"cards\">",
        t("Đường dẫn tham dự", "Join links"),
        title.map_or_else(|| conf.clone(), |t| format!("{} ({conf})", esc(t))),
        t(
            "Mỗi điểm cầu dùng đúng đường dẫn của mình: mở bằng trình duyệt trên máy tính phòng họp, hoặc quét mã QR.",
            "Each connection point uses its own link: open it in a browser on the room's computer, or scan the QR code."
        )
    );
    for l in links {
        let qr = qr_svg(&l.url).unwrap_or_default();
        let _ = write!(
            b,
            "<div class=\"card\">{qr}<div class=\"muted\">{}</div><div class=\"big\">{}</div>\
             <div>{}: {}</div><div>{}</div><div class=\"muted\">{} {}</div>\
             <div class=\"url\">{}</div></div>",
            esc(&l.org_name),
            esc(&l.point.name),
            t("Mã", "ID"),
            esc(l.point.id.as_str()),
            esc(&l.point.location),
            t("Hết hạn", "Expires"),
            format_time(l.expires.saturating_mul(1000), opts.utc_offset_minutes),
            esc(&l.url)
        );
    }
    let _ = write!(b, "</div>");
    page("Đường dẫn tham dự", "Join links", opts.lang, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_in_vietnam_time() {
        // 2024-02-29 01:02:03 UTC
        let ms = 1_709_168_523_000;
        assert_eq!(format_time(ms, 0), "2024-02-29 01:02:03");
        assert_eq!(format_time(ms, 420), "2024-02-29 08:02:03");
        assert_eq!(format_iso(ms, 420), "2024-02-29T08:02:03+07:00");
        assert_eq!(format_time(0, 0), "1970-01-01 00:00:00");
        assert_eq!(format_time(-1, 0), "1969-12-31 23:59:59");
        assert_eq!(
            format_iso(951_782_400_000, -90),
            "2000-02-28T22:30:00-01:30"
        );
        assert_eq!(minutes(90_000), "1.5");
    }

    #[test]
    fn qr_is_inline_svg() {
        let s = qr_svg("http://127.0.0.1:8080/watch/c?token=v1.abc.def").unwrap();
        assert!(s.starts_with("<svg"));
        assert!(s.ends_with("</svg>"));
        assert!(qr_svg(&"x".repeat(5000)).is_none());
    }

    #[test]
    fn html_escapes() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    /// Hostile names from the registry CSV reach the HTML report escaped, and the CSV and
    /// JSON reports literally.
    #[test]
    fn hostile_registry_names_are_escaped_in_the_html_report() {
        use hallcast_core::accounting::{ConferenceId, Folder, ReportConfig, build_report};
        let reg = crate::registry::parse_csv(
            "point_id,point_name,org_id,org_name,location\n\
             p-1,<script>alert(1)</script>,o-1,\"'); DROP TABLE points;--\",<img src=x onerror=alert(2)>\n\
             p-2,=cmd|' /C calc'!A0,o-1,,\n"
                .as_bytes(),
        )
        .unwrap();
        let c = ConferenceId::parse("hn-2025").unwrap();
        let t0 = 1_709_168_523_000;
        let mut f = Folder::new(c);
        let report = build_report(
            &f.finish(t0 + 600_000),
            &reg.organisations,
            &reg.points,
            &ReportConfig::default(),
        );
        let opts = RenderOptions::default();
        let html = report_html(&report, Some("<b>title</b>"), &opts);
        for raw in ["<script>alert(1)", "<img src=x", "<b>title</b>"] {
            assert!(!html.contains(raw), "{raw} reached the HTML unescaped");
        }
        assert!(html.contains("&#39;); DROP TABLE points;--"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        let csv = String::from_utf8(report_csv(&report, &opts).unwrap()).unwrap();
        assert!(csv.contains("'); DROP TABLE points;--"), "{csv}");
        assert!(csv.contains(",'=cmd|' /C calc'!A0,"), "{csv}");
        let json = report_json(&report, None, &opts).unwrap();
        assert!(json.contains("<script>alert(1)</script>"), "{json}");
    }

    /// A report whose broadcast overlapped a store outage says so, in both languages, in
    /// every format; one without says nothing.
    #[test]
    fn store_outages_show_in_every_format() {
        use hallcast_core::accounting::{
            ConferenceId, Event, EventId, EventKind, Folder, ReportConfig, build_report,
        };
        let c = ConferenceId::parse("hn-2025").unwrap();
        let t0 = 1_709_168_523_000; // 2024-02-29 08:02:03 +07:00
        let mut f = Folder::new(c.clone());
        f.extend(&[Event {
            event_id: EventId(1),
            conference: c,
            at_ms: t0,
            kind: EventKind::BroadcastStarted,
        }]);
        let plain = build_report(&f.finish(t0 + 600_000), &[], &[], &ReportConfig::default());
        let o = StoreOutage {
            node: "central".into(),
            from_ms: t0 + 60_000,
            to_ms: t0 + 150_000,
            n_stored_late: 120,
            n_dropped: 3,
        };
        let report = plain.clone().with_store_outages([o.clone()]);
        let opts = RenderOptions::default();
        let vi = "Sổ ghi điểm danh mất kết nối cơ sở dữ liệu từ 2024-02-29 08:03:03 đến \
                  2024-02-29 08:04:33 (trạm central): 120 sự kiện được ghi muộn, 3 sự kiện bị mất.";
        let en = "The attendance ledger lost its database connection from 2024-02-29 08:03:03 \
                  to 2024-02-29 08:04:33 (relay central): 120 events were stored late, 3 events \
                  were lost.";
        assert!(outage_notice(&o, Lang::Vi, 420).starts_with(vi));
        assert!(outage_notice(&o, Lang::En, 420).starts_with(en));

        let json: serde_json::Value =
            serde_json::from_str(&report_json(&report, None, &opts).unwrap()).unwrap();
        let j = &json["store_outages"][0];
        assert_eq!(j["node"], "central");
        assert_eq!(j["n_stored_late"], 120);
        assert_eq!(j["n_dropped"], 3);
        assert_eq!(j["from"], "2024-02-29T08:03:03+07:00");
        assert!(j["notice_vi"].as_str().unwrap().starts_with(vi));
        assert!(j["notice_en"].as_str().unwrap().starts_with(en));

        let html = report_html(&report, None, &opts);
        assert!(html.contains("class=\"notice\""));
        let (at_vi, at_en) = (html.find(&esc(vi)).unwrap(), html.find(&esc(en)).unwrap());
        assert!(at_vi < at_en, "Vietnamese first");
        assert!(html.find("class=\"notice\"").unwrap() < html.find("class=\"summary\"").unwrap());

        let csv = String::from_utf8(report_csv(&report, &opts).unwrap()).unwrap();
        let last = csv.lines().last().unwrap();
        assert!(last.starts_with("Lưu ý,"), "{csv}");
        assert!(last.contains(vi), "{csv}");
        let en_csv = RenderOptions {
            lang: Lang::En,
            ..opts
        };
        let csv = String::from_utf8(report_csv(&report, &en_csv).unwrap()).unwrap();
        assert!(csv.lines().last().unwrap().starts_with("notice,"), "{csv}");
        // Same width as the header: strict CSV readers still read the file.
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        assert_eq!(r.records().count(), 1);

        // No outage: no notice anywhere, and the JSON says so with an empty list.
        let json: serde_json::Value =
            serde_json::from_str(&report_json(&plain, None, &opts).unwrap()).unwrap();
        assert_eq!(json["store_outages"], serde_json::json!([]));
        assert!(!report_html(&plain, None, &opts).contains("class=\"notice\""));
        let csv = String::from_utf8(report_csv(&plain, &opts).unwrap()).unwrap();
        assert!(!csv.contains("Lưu ý"));
    }

    /// The CSV report lists each broadcast's recording after the points: label, a summary
    /// (times in the document's offset) and the download URL, as wide as the header.
    #[test]
    fn recordings_are_linked_in_the_csv_report() {
        use hallcast_core::accounting::{
            ConferenceId, Event, EventId, EventKind, Folder, ReportConfig, build_report,
        };
        let c = ConferenceId::parse("hn-2025").unwrap();
        let t0 = 1_709_168_523_000; // 2024-02-29 08:02:03 +07:00
        let mut f = Folder::new(c.clone());
        f.extend(&[Event {
            event_id: EventId(1),
            conference: c,
            at_ms: t0,
            kind: EventKind::BroadcastStarted,
        }]);
        let report = build_report(&f.finish(t0 + 600_000), &[], &[], &ReportConfig::default());
        let recs = [
            RecordingLink {
                id: "a1".into(),
                start_ms: t0,
                end_ms: Some(t0 + 300_000),
                duration_ms: Some(299_000),
                bytes: 12_345_678,
                state: "complete".into(),
                url: "https://relay.example/api/v1/recordings/a1".into(),
            },
            RecordingLink {
                id: "b2".into(),
                start_ms: t0 + 360_000,
                end_ms: None,
                duration_ms: None,
                bytes: 1_000_000,
                state: "recording".into(),
                url: "https://relay.example/api/v1/recordings/b2".into(),
            },
        ];
        let opts = RenderOptions::default();
        let csv = String::from_utf8(report_csv_with(&report, &opts, &recs).unwrap()).unwrap();
        let mut r = csv::Reader::from_reader(csv.trim_start_matches(BOM).as_bytes());
        let width = r.headers().unwrap().len();
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        let linked: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[0] == "Bản ghi").collect();
        assert_eq!(linked.len(), 2, "{csv}");
        assert!(linked.iter().all(|r| r.len() == width));
        assert_eq!(
            &linked[0][1],
            "2024-02-29 08:02:03 – 2024-02-29 08:07:03, 5.0 phút, 12.3 MB"
        );
        assert_eq!(&linked[0][2], "https://relay.example/api/v1/recordings/a1");
        assert_eq!(&linked[1][1], "2024-02-29 08:08:03 – đang ghi, 1.0 MB");
        assert_eq!(&linked[1][2], "https://relay.example/api/v1/recordings/b2");

        let en = RenderOptions {
            lang: Lang::En,
            ..opts
        };
        let csv = String::from_utf8(report_csv_with(&report, &en, &recs[..1]).unwrap()).unwrap();
        let last = csv.lines().last().unwrap();
        assert!(last.starts_with("recording,"), "{csv}");
        assert!(last.contains("5.0 min"), "{csv}");
        // Without recordings, nothing is added.
        let plain = String::from_utf8(report_csv(&report, &opts).unwrap()).unwrap();
        assert!(!plain.contains("Bản ghi"));
    }
}
