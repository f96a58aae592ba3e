//! The registry of organisations and connection points, and its CSV form.
//!
//! One CSV file carries both (one row per point, with its organisation's id and name):
//!
//! ```text
//! point_id,point_name,org_id,org_name,location,expected_headcount
//! hn-01,Điểm cầu Quận Ba Đình,ha-noi,Đảng ủy Thành phố Hà Nội,"Phòng họp tầng 2, số 1 Phạm Văn Đồng",40
//! ```
//!
//! Import accepts these English headers or their Vietnamese forms (`Mã điểm cầu`,
//! `Tên điểm cầu`, `Mã đơn vị`, `Tên đơn vị`, `Địa điểm`, `Số người dự kiến`), in any column
//! order, with or without a UTF-8 BOM (Excel writes one). The whole file is checked before
//! anything is stored; every bad line is reported with its line number. Import upserts: points
//! and organisations not in the file are kept. Export writes a UTF-8 BOM so Excel shows
//! Vietnamese correctly, then the English headers, sorted by point id.

use std::borrow::Cow;
use std::collections::BTreeMap;

use hallcast_core::accounting::{ConferenceId, OrgId, Organisation, PointId, PointInfo};

use crate::error::{LedgerError, Result};

/// A conference (hội nghị) of the registry: what the relay needs to take its WHIP publish and
/// serve its WHEP viewers, and what the admin sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conference {
    pub id: ConferenceId,
    pub title: String,
    pub created_ms: i64,
    /// The hall encoder's WHIP bearer token. Empty: WHIP is refused.
    pub stream_key: String,
    /// A shared viewer token accepted by WHEP besides per-point join links. Empty: none.
    pub viewer_token: String,
    /// When the conference was ended by the admin (WHIP refused from then on); `None`: open.
    pub ended_ms: Option<i64>,
    /// The stream key the configuration file last gave this conference (`[[conferences]]`);
    /// empty for conferences made through the API or the CLI. A relay started with a file
    /// whose key differs from this one applies the file's key; an unchanged file keeps a key
    /// rotated since.
    pub seed_stream_key: String,
}

impl Conference {
    /// A new, open conference.
    pub fn new(id: ConferenceId, title: String, stream_key: String, created_ms: i64) -> Self {
        Conference {
            id,
            title,
            created_ms,
            stream_key,
            viewer_token: String::new(),
            ended_ms: None,
            seed_stream_key: String::new(),
        }
    }
}

/// The registry's CSV columns, in export order.
pub const CSV_HEADERS: [&str; 6] = [
    "point_id",
    "point_name",
    "org_id",
    "org_name",
    "location",
    "expected_headcount",
];

const VI_HEADERS: [&str; 6] = [
    "mã điểm cầu",
    "tên điểm cầu",
    "mã đơn vị",
    "tên đơn vị",
    "địa điểm",
    "số người dự kiến",
];

/// The UTF-8 byte order mark.
pub const BOM: &str = "\u{feff}";

/// A parsed registry file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryFile {
    pub organisations: Vec<Organisation>,
    pub points: Vec<PointInfo>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    pub n_organisations: usize,
    pub n_points: usize,
}

/// What a spreadsheet takes for the start of a formula when a cell begins with it.
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell of a CSV the project writes. One that a spreadsheet would read as a formula
/// (`=HYPERLINK(…)`, `+cmd|…`, `@SUM(…)`) gets a leading `'`, as OWASP advises against
/// CSV injection: a registry name typed by anyone must not run in the organiser's Excel.
/// [`parse_csv`] takes the `'` off again, so an exported registry imports unchanged.
pub fn csv_cell(s: &str) -> CsvCell<'_> {
    CsvCell(if s.starts_with(FORMULA_START) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    })
}

/// A cell made by [`csv_cell`], as the CSV writer takes it.
pub struct CsvCell<'a>(Cow<'a, str>);

impl AsRef<[u8]> for CsvCell<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The inverse of [`csv_cell`] for an imported cell.
fn uncell(s: &str) -> &str {
    match s.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_START) => rest,
        _ => s,
    }
}

/// Parses a registry CSV. All-or-nothing: any bad line makes the whole file an error that
/// lists every problem (up to 50).
pub fn parse_csv(bytes: &[u8]) -> Result<RegistryFile> {
    parse_csv_counted(bytes).map_err(|r| r.error)
}

/// A registry CSV refused: why, and how many of its lines were bad (0: the file as a
/// whole, e.g. not UTF-8 or a missing column).
pub(crate) struct Refused {
    pub n_lines: u64,
    pub error: LedgerError,
}

impl From<LedgerError> for Refused {
    fn from(error: LedgerError) -> Self {
        Refused { n_lines: 0, error }
    }
}

/// [`parse_csv`], telling how many lines were refused.
pub(crate) fn parse_csv_counted(bytes: &[u8]) -> std::result::Result<RegistryFile, Refused> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        LedgerError::Invalid(format!(
            "the file is not UTF-8 (byte {}); save it as \"CSV UTF-8\"",
            e.valid_up_to()
        ))
    })?;
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| LedgerError::Invalid(format!("cannot read the header line: {e}")))?
        .clone();
    let mut col = [usize::MAX; 6];
    for (i, h) in headers.iter().enumerate() {
        let h = h.to_lowercase();
        if let Some(k) = CSV_HEADERS
            .iter()
            .position(|c| *c == h)
            .or_else(|| VI_HEADERS.iter().position(|c| *c == h))
        {
            col[k] = i;
        }
    }
    for k in [0, 2] {
        if col[k] == usize::MAX {
            return Err(LedgerError::Invalid(format!(
                "missing column {:?} (expected headers: {})",
                CSV_HEADERS[k],
                CSV_HEADERS.join(",")
            ))
            .into());
        }
    }

    let mut errors: Vec<String> = Vec::new();
    let mut orgs: BTreeMap<OrgId, String> = BTreeMap::new();
    let mut points: BTreeMap<PointId, PointInfo> = BTreeMap::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("{e}"));
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let field = |k: usize| -> &str { uncell(rec.get(col[k]).unwrap_or("")) };
        if rec.iter().all(str::is_empty) {
            continue;
        }
        let point = match PointId::parse(field(0)) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let org = match OrgId::parse(field(2)) {
            Ok(o) => o,
            Err(e) => {
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let bad_text = [("point_name", 1), ("org_name", 3), ("location", 4)]
            .into_iter()
            .find_map(|(what, k)| text_problem(what, field(k)));
        if let Some(problem) = bad_text {
            errors.push(format!("line {line}: {problem}"));
            continue;
        }
        let name = if field(1).is_empty() {
            point.to_string()
        } else {
            field(1).to_owned()
        };
        let org_name = field(3);
        match orgs.get(&org) {
            Some(existing)
                if !org_name.is_empty() && existing != org_name && !existing.is_empty() =>
            {
                errors.push(format!(
                    "line {line}: organisation {org} is named {existing:?} on an earlier line and {org_name:?} here"
                ));
                continue;
            }
            Some(existing) if existing.is_empty() => {
                orgs.insert(org.clone(), org_name.to_owned());
            }
            Some(_) => {}
            None => {
                orgs.insert(org.clone(), org_name.to_owned());
            }
        }
        let expected = field(5);
        let expected_headcount = if expected.is_empty() {
            None
        } else {
            match expected.parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    errors.push(format!(
                        "line {line}: expected_headcount {expected:?} is not a whole number"
                    ));
                    continue;
                }
            }
        };
        if points.contains_key(&point) {
            errors.push(format!("line {line}: point {point} appears twice"));
            continue;
        }
        points.insert(
            point.clone(),
            PointInfo {
                id: point,
                org,
                name,
                location: field(4).to_owned(),
                expected_headcount,
            },
        );
    }
    if !errors.is_empty() {
        let n = errors.len();
        errors.truncate(50);
        return Err(Refused {
            n_lines: n as u64,
            error: LedgerError::Invalid(format!(
                "{n} problem(s) in the CSV, nothing imported:\n{}",
                errors.join("\n")
            )),
        });
    }
    Ok(RegistryFile {
        organisations: orgs
            .into_iter()
            .map(|(id, name)| Organisation {
                name: if name.is_empty() {
                    id.to_string()
                } else {
                    name
                },
                id,
            })
            .collect(),
        points: points.into_values().collect(),
    })
}

/// The longest name or location a registry line may hold, in characters. The longest
/// real names (an organisation's full title) run to about 120; a longer field is a pasted
/// paragraph or an attack on the reports' layout.
pub const MAX_TEXT_CHARS: usize = 200;

/// Why a name or location cannot be stored, if it cannot. Anything else, quotes, angle
/// brackets and SQL-looking text included, is stored literally (every store binds its
/// parameters; every page escapes). Refused: control characters (line breaks inside a
/// name break the CSV and log lines) and the bidirectional overrides and isolates, which
/// can make a name read as another one in the reports. The API's edits apply the same rule.
pub fn text_problem(what: &str, value: &str) -> Option<String> {
    let n = value.chars().count();
    if n > MAX_TEXT_CHARS {
        return Some(format!(
            "{what} is {n} characters long; the limit is {MAX_TEXT_CHARS}"
        ));
    }
    value.chars().find_map(|c| {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        (c.is_control() || bidi).then(|| {
            format!(
                "{what} contains the character U+{:04X}, which a name may not hold",
                u32::from(c)
            )
        })
    })
}

/// Writes the registry as CSV (BOM, English headers, points sorted by id).
pub fn to_csv(orgs: &[Organisation], points: &[PointInfo]) -> Result<Vec<u8>> {
    let names: BTreeMap<&OrgId, &str> = orgs.iter().map(|o| (&o.id, o.name.as_str())).collect();
    let mut sorted: Vec<&PointInfo> = points.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = BOM.as_bytes().to_vec();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        w.write_record(CSV_HEADERS).map_err(csv_err)?;
        for p in sorted {
            let expected = p
                .expected_headcount
                .map(|n| n.to_string())
                .unwrap_or_default();
            w.write_record(
                [
                    p.id.as_str(),
                    &p.name,
                    p.org.as_str(),
                    names.get(&p.org).copied().unwrap_or(""),
                    &p.location,
                    &expected,
                ]
                .map(csv_cell),
            )
            .map_err(csv_err)?;
        }
        w.flush()?;
    }
    Ok(out)
}

pub(crate) fn csv_err(e: csv::Error) -> LedgerError {
    LedgerError::Invalid(format!("CSV: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_vietnamese_names_and_bom() {
        let input = "\u{feff}Mã điểm cầu,Tên điểm cầu,Mã đơn vị,Tên đơn vị,Địa điểm,Số người dự kiến\n\
                     hn-01,Điểm cầu Ba Đình,ha-noi,Đảng ủy Hà Nội,\"Phòng họp 2, tầng 3\",40\n\
                     hn-02,Điểm cầu Hoàn Kiếm,ha-noi,,,\n\
                     \n\
                     hue-01,Điểm cầu Huế,hue,Đảng ủy Huế,Huế,25\n";
        let reg = parse_csv(input.as_bytes()).unwrap();
        assert_eq!(reg.organisations.len(), 2);
        assert_eq!(reg.organisations[0].name, "Đảng ủy Hà Nội");
        assert_eq!(reg.points.len(), 3);
        assert_eq!(reg.points[0].location, "Phòng họp 2, tầng 3");
        assert_eq!(reg.points[1].expected_headcount, None);
        let out = to_csv(&reg.organisations, &reg.points).unwrap();
        assert!(out.starts_with(BOM.as_bytes()));
        let again = parse_csv(&out).unwrap();
        assert_eq!(again, reg);
    }

    /// CSV injection: names a spreadsheet would run as formulas are stored literally,
    /// exported with a leading `'` (so Excel shows text), and import back unchanged.
    #[test]
    fn formula_names_are_exported_inert_and_import_back_unchanged() {
        let input = "point_id,point_name,org_id,org_name,location\n\
                     -p1,\"=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",o-1,+cmd|' /C calc'!A0,@SUM(1+1)\n\
                     p2,-2+3,o-1,,'plain quote\n";
        let reg = parse_csv(input.as_bytes()).unwrap();
        let p1 = &reg.points[0];
        assert_eq!(p1.id.as_str(), "-p1");
        assert_eq!(p1.name, "=HYPERLINK(\"http://x\",\"y\")");
        assert_eq!(p1.location, "@SUM(1+1)");
        assert_eq!(reg.organisations[0].name, "+cmd|' /C calc'!A0");
        assert_eq!(reg.points[1].location, "'plain quote");
        let out = String::from_utf8(to_csv(&reg.organisations, &reg.points).unwrap()).unwrap();
        let mut rdr = csv::Reader::from_reader(out.trim_start_matches(BOM).as_bytes());
        for rec in rdr.records() {
            for cell in rec.unwrap().iter() {
                assert!(
                    !cell.starts_with(FORMULA_START),
                    "a cell a spreadsheet would run: {cell:?}\n{out}"
                );
            }
        }
        assert!(out.contains("'=HYPERLINK"), "{out}");
        assert!(out.contains("'-2+3"), "{out}");
        assert!(out.contains(",'plain quote"), "{out}");
        assert_eq!(parse_csv(out.as_bytes()).unwrap(), reg);
    }

    #[test]
    fn hostile_names_are_stored_literally_or_refused_with_the_limit() {
        let input = "point_id,point_name,org_id,org_name,location\n\
                     p-1,\"'); DROP TABLE points;--\",o-1,<script>alert(1)</script>,\"a \"\"b\"\"\"\n";
        let reg = parse_csv(input.as_bytes()).unwrap();
        assert_eq!(reg.points[0].name, "'); DROP TABLE points;--");
        assert_eq!(reg.organisations[0].name, "<script>alert(1)</script>");
        assert_eq!(reg.points[0].location, "a \"b\"");

        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        let ok = "đ".repeat(MAX_TEXT_CHARS);
        let input = format!(
            "point_id,point_name,org_id,org_name,location\n\
             p-1,{ok},o-1,,\n\
             p-2,{long},o-1,,\n\
             p-3,a\u{202e}b,o-1,,\n\
             p-4,ok,o-2,\"tab\there\",\n"
        );
        let err = parse_csv(input.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("3 problem(s) in the CSV, nothing imported"),
            "{err}"
        );
        assert!(
            err.contains("line 3: point_name is 201 characters long; the limit is 200"),
            "{err}"
        );
        assert!(
            err.contains("line 4: point_name contains the character U+202E"),
            "{err}"
        );
        assert!(
            err.contains("line 5: org_name contains the character U+0009"),
            "{err}"
        );
        assert!(!err.contains("line 2"), "200 characters are allowed: {err}");
    }

    #[test]
    fn bad_lines_are_all_reported_and_nothing_is_accepted() {
        let input = "point_id,org_id,expected_headcount\n\
                     ok-1,org\n\
                     bad id,org,1\n\
                     ok-2,org,many\n\
                     ok-1,org,3\n";
        let err = parse_csv(input.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("3 problem(s)"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("many"), "{err}");
        assert!(err.contains("appears twice"), "{err}");
        let missing = parse_csv(b"name,org_id\nx,y\n").unwrap_err().to_string();
        assert!(missing.contains("point_id"), "{missing}");
        assert!(parse_csv(&[0xff, 0xfe]).is_err());
    }
}
