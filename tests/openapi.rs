//! The HTTP API's OpenAPI document (`GET /api/openapi.json`, issue 14 item 7):
//! - it validates with PyPI's `openapi-spec-validator` (tests/py/validate_openapi.py);
//! - every route of the relay is in it, method by method: the `.route("…", …)` calls of every
//!   crate that depends on axum are read from the source and compared with the document's
//!   paths, both ways (a route the scan cannot read — a path that is not a string literal,
//!   `nest`, `route_service`, `fallback` — fails the test until it learns it);
//! - every operation in it answers on a running `hallcast demo` with a status the document lists
//!   for it (and, for 2xx, one of the documented content types), each called at least once with
//!   what it needs (the info file's tokens, a console session from its sign-in tickets) and,
//!   where it can be provoked, with an invalid request for its error codes.
//!
//! An edge is started under the demo on loopback for the edge's own answers (the same document,
//! 403 to a WHIP POST, `/readyz` with its parent). The central's 307s to an edge (a point whose
//! organisation an edge serves, with a `v2.` join link) are listed in the document but not
//! provoked here: tests/tree.rs covers them with relays on hosts of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::obs::Relay;
use hallcast_tests::{Demo, Weight, python_bin, repo_root, run, sdp};
use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};

/// Where the document lives in the repository (the relay serves it with `include_str!`).
const DOCUMENT: &str = "crates/hallcast-server/src/openapi.json";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Result<Value> {
    let path = repo_root().join(DOCUMENT);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// (path, METHOD) of every operation of the document.
fn documented_operations(doc: &Value) -> Result<BTreeSet<(String, String)>> {
    let paths = doc["paths"]
        .as_object()
        .context("the document has no `paths` object")?;
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((path.clone(), m.to_ascii_uppercase()));
            }
        }
    }
    Ok(out)
}

#[test]
fn openapi_document_validates_with_openapi_spec_validator() {
    run(
        "openapi_document_validates_with_openapi_spec_validator",
        Weight::Light,
        |_ctx| {
            let python = python_bin()?;
            let out = Command::new(&python)
                .arg(repo_root().join("tests/py/validate_openapi.py"))
                .arg(repo_root().join(DOCUMENT))
                .output()
                .with_context(|| format!("running {}", python.display()))?;
            ensure!(
                out.status.success(),
                "openapi-spec-validator rejects {DOCUMENT} (install it with \
                 scripts/install-test-deps.sh if it is missing):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        },
    );
}

// ----- every route of the relay is documented -----

/// The source files of the crates that build axum routers (those depending on axum).
fn router_sources() -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("crates"))? {
        let dir = entry?.path();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        if manifest.lines().any(|l| l.trim_start().starts_with("axum")) {
            collect_rs(&dir.join("src"), &mut files)?;
        }
    }
    files.sort();
    Ok(files)
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = entry?.path();
        if p.is_dir() {
            collect_rs(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// The routes one source file declares: (path, METHOD, line); `problems` gets what the scan
/// cannot read.
fn routes_in(
    file: &str,
    source: &str,
    problems: &mut Vec<String>,
) -> BTreeSet<(String, String, usize)> {
    // Comments out (line comments only: doc comments quote routes).
    let text: String = source
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let line_of = |i: usize| text[..i].matches('\n').count() + 1;
    for unsupported in [
        ".nest(",
        ".nest_service(",
        ".route_service(",
        ".fallback(",
        ".fallback_service(",
    ] {
        for (i, _) in text.match_indices(unsupported) {
            problems.push(format!(
                "{file}:{}: `{unsupported}…)` adds routes this test cannot enumerate: teach \
                 tests/openapi.rs to read it and document its routes",
                line_of(i)
            ));
        }
    }
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    for (start, pat) in text.match_indices(".route(") {
        let line = line_of(start);
        let mut i = start + pat.len();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'"') {
            problems.push(format!(
                "{file}:{line}: a `.route(` whose path is not a string literal: this test reads \
                 routes from literals only"
            ));
            continue;
        }
        let Some(len) = text[i + 1..].find('"') else {
            problems.push(format!("{file}:{line}: unterminated route path"));
            continue;
        };
        let path = text[i + 1..i + 1 + len].to_string();
        // The method router: up to the `)` that closes `.route(`.
        let mut j = i + 1 + len + 1;
        let mut depth = 1;
        let mut in_str = false;
        let expr_start = j;
        while j < bytes.len() && depth > 0 {
            match bytes[j] {
                b'"' => in_str = !in_str,
                b'\\' if in_str => j += 1,
                b'(' if !in_str => depth += 1,
                b')' if !in_str => depth -= 1,
                _ => {}
            }
            j += 1;
        }
        let expr = &text[expr_start..j.saturating_sub(1)];
        let mut n_methods = 0;
        for m in METHODS {
            let call = format!("{m}(");
            for (k, _) in expr.match_indices(&call) {
                let before = expr[..k].chars().next_back();
                if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                    out.insert((path.clone(), m.to_ascii_uppercase(), line));
                    n_methods += 1;
                }
            }
        }
        if n_methods == 0 {
            problems.push(format!(
                "{file}:{line}: route {path:?} has no method this test can read ({expr:?})"
            ));
        }
    }
    out
}

#[test]
fn every_route_of_the_relay_is_in_the_openapi_document() {
    run(
        "every_route_of_the_relay_is_in_the_openapi_document",
        Weight::Light,
        |_ctx| {
            let doc = document()?;
            let documented = documented_operations(&doc)?;
            let root = repo_root();
            let mut problems = Vec::new();
            let mut declared: BTreeMap<(String, String), String> = BTreeMap::new();
            let files = router_sources()?;
            ensure!(
                files
                    .iter()
                    .any(|f| f.ends_with("hallcast-server/src/lib.rs")),
                "the scan did not find crates/hallcast-server/src/lib.rs among the axum crates"
            );
            for f in &files {
                let rel = f.strip_prefix(&root).unwrap_or(f).display().to_string();
                let text = std::fs::read_to_string(f)?;
                for (path, method, line) in routes_in(&rel, &text, &mut problems) {
                    declared.insert((path, method), format!("{rel}:{line}"));
                }
            }
            ensure!(
                declared.len() >= 40,
                "only {} routes found in the source: the scan is broken",
                declared.len()
            );
            for ((path, method), at) in &declared {
                if !documented.contains(&(path.clone(), method.clone())) {
                    problems.push(format!(
                        "{at}: {method} {path} is a route of the relay but not in {DOCUMENT}"
                    ));
                }
            }
            for (path, method) in &documented {
                if !declared.contains_key(&(path.clone(), method.clone())) {
                    problems.push(format!(
                        "{DOCUMENT}: {method} {path} is documented but no `.route(` declares it"
                    ));
                }
            }
            if !problems.is_empty() {
                bail!(
                    "{} problem(s) between the routes and the document:\n{}",
                    problems.len(),
                    problems.join("\n")
                );
            }
            Ok(())
        },
    );
}

#[test]
fn the_route_scan_reads_methods_and_refuses_what_it_cannot_read() {
    let src = r#"
        // .route("/commented", get(x))
        Router::new()
            .route("/a/{id}", axum::routing::put(update).delete(remove))
            .route(
                "/b",
                post(import).layer(DefaultBodyLimit::max(8 << 20)),
            )
            .route("/c", get(whip::options).options(whip::options))
            .route(PATH, get(x))
            .nest("/d", other)
    "#;
    let mut problems = Vec::new();
    let got: Vec<(String, String)> = routes_in("x.rs", src, &mut problems)
        .into_iter()
        .map(|(p, m, _)| (p, m))
        .collect();
    let want: Vec<(String, String)> = [
        ("/a/{id}", "DELETE"),
        ("/a/{id}", "PUT"),
        ("/b", "POST"),
        ("/c", "GET"),
        ("/c", "OPTIONS"),
    ]
    .iter()
    .map(|(p, m)| (p.to_string(), m.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains(".nest("), "{problems:?}");
    assert!(problems[1].contains("not a string literal"), "{problems:?}");
}

// ----- every operation answers with a documented status -----

/// What the relay answered.
struct Got {
    status: u16,
    content_type: String,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl Got {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("not JSON ({}): {:?}", self.status, self.body))
    }
}

/// Calls operations and checks each answer against the document.
struct Checker {
    doc: Value,
    http: Client,
    base: String,
    called: BTreeSet<(String, String)>,
    failures: Vec<String>,
}

impl Checker {
    /// The document's response object, `$ref`s to `#/components/responses/…` followed.
    fn response<'a>(&'a self, op: &'a Value, status: u16) -> Option<&'a Value> {
        let r = op["responses"].get(status.to_string())?;
        match r.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.strip_prefix("#/components/responses/")?;
                self.doc["components"]["responses"].get(name)
            }
            None => Some(r),
        }
    }

    /// `method` on `path` (a concrete path of the document's `template`), checked: the status is
    /// one the operation lists; a 2xx has one of the listed content types (or no body when it
    /// lists none).
    fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Got> {
        let m = Method::from_bytes(method.as_bytes())?;
        let what = format!("{method} {path}");
        let req = build(self.http.request(m, format!("{}{path}", self.base)));
        let r = req.send().with_context(|| format!("{what}: no answer"))?;
        let status = r.status().as_u16();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type").unwrap_or_default();
        let location = header("location");
        let set_cookies = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        // An event stream never ends: its headers are the answer.
        let body = if content_type.starts_with("text/event-stream") {
            String::new()
        } else {
            r.text().unwrap_or_default()
        };
        let got = Got {
            status,
            content_type,
            location,
            set_cookies,
            body,
        };
        self.called
            .insert((template.to_string(), method.to_ascii_uppercase()));
        let doc = self.doc.clone();
        let Some(op) = doc["paths"][template].get(method.to_ascii_lowercase()) else {
            self.failures.push(format!(
                "{what}: the test calls {method} {template}, which is not in the document"
            ));
            return Ok(got);
        };
        let Some(resp) = self.response(op, status) else {
            let listed: Vec<&String> = op["responses"]
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            self.failures.push(format!(
                "{what} → {status} {:?}: the document lists only {listed:?} for {method} {template}",
                snippet(&got.body)
            ));
            return Ok(got);
        };
        if (200..300).contains(&status) {
            let essence = got
                .content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match resp.get("content").and_then(Value::as_object) {
                Some(types) if !types.contains_key(&essence) => self.failures.push(format!(
                    "{what} → {status} with Content-Type {:?}: the document lists {:?}",
                    got.content_type,
                    types.keys().collect::<Vec<_>>()
                )),
                None if !got.body.is_empty() => self.failures.push(format!(
                    "{what} → {status} with a body ({:?}, {:?}) the document does not describe",
                    got.content_type,
                    snippet(&got.body)
                )),
                _ => {}
            }
        }
        Ok(got)
    }

    /// `call`, and the status the scenario needs to go on.
    fn expect(
        &mut self,
        want: u16,
        method: &str,
        template: &str,
        path: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Got> {
        let got = self.call(method, template, path, build)?;
        if got.status != want {
            self.failures.push(format!(
                "{method} {path} → {} {:?}, the scenario expected {want}",
                got.status,
                snippet(&got.body)
            ));
        }
        Ok(got)
    }
}

fn snippet(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The `Cookie` header and CSRF value of a console session opened by a sign-in ticket answer.
fn session_of(got: &Got) -> Result<(String, String)> {
    let value = |name: &str| {
        got.set_cookies
            .iter()
            .filter_map(|c| c.split(';').next())
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let session = value("hallcast_session").context("no hallcast_session cookie")?;
    let csrf = value("hallcast_csrf").context("no hallcast_csrf cookie")?;
    Ok((
        format!("hallcast_session={session}; hallcast_csrf={csrf}"),
        csrf,
    ))
}

/// The path (and query) of an absolute URL.
fn path_of(url: &str) -> String {
    let after = url.find("://").map_or(0, |i| i + 3);
    url[after..]
        .find('/')
        .map_or("/".to_string(), |i| url[after + i..].to_string())
}

/// The `token` query parameter of a join link.
fn token_in(url: &str) -> Result<String> {
    url.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_string)
        .with_context(|| format!("no token in {url}"))
}

#[test]
fn every_documented_operation_answers_with_a_documented_status() {
    run(
        "every_documented_operation_answers_with_a_documented_status",
        Weight::Light,
        |ctx| {
            let demo = Demo::without_source(ctx)?;
            let info = demo.info.clone();
            let raw = |k: &str| -> Result<String> {
                info.raw[k]
                    .as_str()
                    .map(str::to_string)
                    .with_context(|| format!("the demo's info file has no {k}"))
            };
            let admin = raw("admin_token")?;
            let relay = raw("relay_credential")?;
            let point = raw("point")?;
            let c = info.conference.clone();
            let join = info.viewer_token.clone();
            let key = info.stream_key.clone();
            let mut k = Checker {
                doc: document()?,
                http: Client::builder()
                    .timeout(Duration::from_secs(15))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()?,
                base: info.http_base.clone(),
                called: BTreeSet::new(),
                failures: Vec::new(),
            };
            let bearer = |t: &str| format!("Bearer {t}");

            // The document served is the one in the repository.
            let got = k.expect(200, "GET", "/api/openapi.json", "/api/openapi.json", |r| r)?;
            if got.json()? != k.doc {
                k.failures
                    .push(format!("GET /api/openapi.json differs from {DOCUMENT}"));
            }

            // Operations and pages.
            k.expect(200, "GET", "/healthz", "/healthz", |r| r)?;
            k.call("GET", "/readyz", "/readyz", |r| r)?;
            k.expect(200, "GET", "/metrics", "/metrics", |r| r)?;
            k.expect(200, "GET", "/", "/", |r| r)?;
            let files: Vec<String> =
                k.doc["paths"]["/static/{file}"]["parameters"][0]["schema"]["enum"]
                    .as_array()
                    .context("/static/{file} lists no files")?
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
            for f in &files {
                k.expect(200, "GET", "/static/{file}", &format!("/static/{f}"), |r| r)?;
            }
            k.expect(404, "GET", "/static/{file}", "/static/nope.js", |r| r)?;
            k.expect(
                200,
                "GET",
                "/watch/{conference}",
                &format!("/watch/{c}"),
                |r| r,
            )?;
            k.expect(
                200,
                "GET",
                "/watch/{conference}",
                &format!("/watch/{c}?token={join}"),
                |r| r,
            )?;
            k.expect(404, "GET", "/watch/{conference}", "/watch/nope", |r| r)?;
            k.expect(
                400,
                "GET",
                "/watch/{conference}",
                &format!("/watch/{c}?token=a&token=b"),
                |r| r,
            )?;
            k.expect(200, "GET", "/login", "/login?next=/admin", |r| r)?;

            // Console sessions from the demo's sign-in tickets.
            let t = "/login/ticket/{ticket}";
            let got = k.expect(303, "GET", t, &path_of(&raw("admin_url")?), |r| r)?;
            let (admin_cookie, admin_csrf) = session_of(&got)?;
            let got = k.expect(303, "GET", t, &path_of(&raw("operator_url")?), |r| r)?;
            let (operator_cookie, _) = session_of(&got)?;
            k.expect(401, "GET", t, "/login/ticket/0123456789abcdef", |r| r)?;
            for page in ["/operator", "/admin"] {
                k.expect(303, "GET", page, page, |r| r)?;
            }
            k.expect(200, "GET", "/operator", "/operator", |r| {
                r.header("Cookie", &operator_cookie)
            })?;
            k.expect(403, "GET", "/admin", "/admin", |r| {
                r.header("Cookie", &operator_cookie)
            })?;
            k.expect(200, "GET", "/admin", "/admin", |r| {
                r.header("Cookie", &admin_cookie)
            })?;

            // Sign-in API.
            let me = "/api/v1/me";
            k.expect(401, "GET", me, me, |r| r)?;
            k.expect(200, "GET", me, me, |r| {
                r.header("Authorization", bearer(&admin))
            })?;
            k.expect(200, "GET", me, me, |r| r.header("Cookie", &operator_cookie))?;
            let login = "/api/v1/login";
            k.expect(415, "POST", login, login, |r| r.body("name=admin"))?;
            k.expect(400, "POST", login, login, |r| {
                r.header("Content-Type", "application/json").body("{")
            })?;
            k.expect(401, "POST", login, login, |r| {
                r.json(&json!({"name": "admin", "password": "not-the-password"}))
            })?;
            k.expect(403, "POST", login, login, |r| {
                r.header("Origin", "http://elsewhere.invalid")
                    .json(&json!({"name": "admin", "password": "x"}))
            })?;

            // Operations APIs.
            let s = "/api/v1/sessions";
            k.expect(401, "GET", s, s, |r| r)?;
            k.expect(200, "GET", s, &format!("{s}?conference={c}"), |r| {
                r.header("Authorization", bearer(&admin))
            })?;
            k.expect(
                400,
                "GET",
                s,
                &format!("{s}?conference=a&conference=b"),
                |r| r.header("Authorization", bearer(&admin)),
            )?;
            // Recordings (the demo records its built-in source's broadcast).
            let rl = "/api/v1/recordings";
            k.expect(401, "GET", rl, rl, |r| r)?;
            k.expect(200, "GET", rl, rl, |r| r.header("Cookie", &operator_cookie))?;
            let listed = k.expect(200, "GET", rl, &format!("{rl}?conference={c}"), |r| {
                r.header("Authorization", bearer(&admin))
            })?;
            let rd = "/api/v1/recordings/{id}";
            let missing = format!("{rl}/{}", "0".repeat(32));
            k.expect(401, "GET", rd, &missing, |r| r)?;
            k.expect(404, "GET", rd, &missing, |r| {
                r.header("Authorization", bearer(&admin))
            })?;
            k.expect(400, "GET", rd, &format!("{rl}/not-an-id"), |r| {
                r.header("Authorization", bearer(&admin))
            })?;
            if let Some(id) = listed.json()?["recordings"][0]["id"].as_str() {
                let one = format!("{rl}/{id}");
                k.expect(206, "GET", rd, &one, |r| {
                    r.header("Authorization", bearer(&admin))
                        .header("Range", "bytes=0-3")
                })?;
                k.expect(416, "GET", rd, &one, |r| {
                    r.header("Authorization", bearer(&admin))
                        .header("Range", "bytes=999999999999-")
                })?;
            }
            let tr = "/api/v1/tree";
            k.expect(401, "GET", tr, tr, |r| r)?;
            k.expect(403, "GET", tr, tr, |r| r.header("Cookie", &operator_cookie))?;
            let tree = k.expect(200, "GET", tr, tr, |r| {
                r.header("Authorization", bearer(&admin))
            })?;
            let own_name = tree.json()?["name"].as_str().unwrap_or("").to_string();
            let st = "/api/v1/conferences/{conference}/status";
            k.expect(
                200,
                "GET",
                st,
                &format!("/api/v1/conferences/{c}/status"),
                |r| r,
            )?;
            k.expect(404, "GET", st, "/api/v1/conferences/nope/status", |r| r)?;
            let pf = "/api/v1/conferences/{conference}/preflight";
            let pf_c = format!("/api/v1/conferences/{c}/preflight");
            k.expect(401, "GET", pf, &pf_c, |r| r)?;
            k.expect(200, "GET", pf, &pf_c, |r| {
                r.header("Authorization", bearer(&admin))
            })?;
            k.expect(404, "GET", pf, "/api/v1/conferences/nope/preflight", |r| {
                r.header("Authorization", bearer(&admin))
            })?;
            let rt = "/api/v1/conferences/{conference}/route";
            let rt_c = format!("/api/v1/conferences/{c}/route");
            k.expect(401, "GET", rt, &rt_c, |r| r)?;
            k.expect(401, "GET", rt, &rt_c, |r| {
                r.header("Authorization", bearer("wrong"))
            })?;
            k.expect(
                200,
                "GET",
                rt,
                &format!("{rt_c}?avoid=http://127.0.0.1:9"),
                |r| r.header("Authorization", bearer(&join)),
            )?;
            k.expect(404, "GET", rt, "/api/v1/conferences/nope/route", |r| {
                r.header("Authorization", bearer(&join))
            })?;

            // The relay tree's own routes, as a child relay calls them.
            let rr = "/api/v1/relay/report";
            k.expect(401, "POST", rr, rr, |r| r.json(&json!({"name": "x"})))?;
            k.expect(400, "POST", rr, rr, |r| {
                r.header("Authorization", bearer(&relay)).body("{")
            })?;
            k.expect(409, "POST", rr, rr, |r| {
                r.header("Authorization", bearer(&relay))
                    .json(&json!({"name": own_name, "url": "http://127.0.0.1:9", "state": "up"}))
            })?;
            k.expect(200, "POST", rr, rr, |r| {
                r.header("Authorization", bearer(&relay)).json(
                    &json!({"name": "edge-openapi", "url": "http://127.0.0.1:9", "state": "up"}),
                )
            })?;
            let re = "/api/v1/relay/events";
            k.expect(401, "POST", re, re, |r| {
                r.json(&json!({"node": "x", "events": []}))
            })?;
            k.expect(400, "POST", re, re, |r| {
                r.header("Authorization", bearer(&relay)).body("[]")
            })?;
            k.expect(200, "POST", re, re, |r| {
                r.header("Authorization", bearer(&relay))
                    .json(&json!({"node": "edge-openapi", "events": []}))
            })?;

            // The registry.
            let auth = |r: RequestBuilder| r.header("Authorization", format!("Bearer {admin}"));
            let o = "/api/v1/organisations";
            k.expect(401, "GET", o, o, |r| r)?;
            k.expect(200, "GET", o, o, auth)?;
            let org = json!({"id": "don-vi-openapi", "name": "Đơn vị OpenAPI"});
            k.expect(201, "POST", o, o, |r| auth(r).json(&org))?;
            k.expect(415, "POST", o, o, |r| auth(r).body(org.to_string()))?;
            k.expect(400, "POST", o, o, |r| {
                auth(r).header("Content-Type", "application/json").body("{")
            })?;
            k.expect(403, "POST", o, o, |r| {
                r.header("Cookie", &operator_cookie).json(&org)
            })?;
            let oi = "/api/v1/organisations/{id}";
            k.expect(
                200,
                "PUT",
                oi,
                "/api/v1/organisations/don-vi-openapi",
                |r| auth(r).json(&json!({"name": "Đơn vị OpenAPI (2)"})),
            )?;
            k.expect(
                403,
                "PUT",
                oi,
                "/api/v1/organisations/don-vi-openapi",
                |r| {
                    r.header("Cookie", &admin_cookie)
                        .json(&json!({"name": "no CSRF header"}))
                },
            )?;
            let p = "/api/v1/points";
            k.expect(200, "GET", p, p, auth)?;
            k.expect(200, "GET", p, "/api/v1/points?format=csv", auth)?;
            k.expect(400, "GET", p, "/api/v1/points?format=xml", auth)?;
            k.expect(201, "POST", p, p, |r| {
                auth(r).json(&json!({"id": "diem-openapi", "org_id": "don-vi-openapi",
                                     "name": "Điểm OpenAPI", "expected_headcount": 4}))
            })?;
            k.expect(400, "POST", p, p, |r| {
                auth(r).json(&json!({"id": "Not a valid id!", "org_id": "don-vi-openapi"}))
            })?;
            k.expect(409, "POST", p, p, |r| {
                auth(r).json(&json!({"id": "diem-mo-coi", "org_id": "don-vi-khong-co"}))
            })?;
            let pi = "/api/v1/points/{id}";
            k.expect(200, "GET", pi, "/api/v1/points/diem-openapi", auth)?;
            k.expect(404, "GET", pi, "/api/v1/points/diem-khong-co", auth)?;
            k.expect(200, "PUT", pi, "/api/v1/points/diem-openapi", |r| {
                auth(r).json(
                    &json!({"org_id": "don-vi-openapi", "name": "Điểm OpenAPI (2)",
                                     "location": "Phòng 2"}),
                )
            })?;
            let imp = "/api/v1/points/import";
            k.expect(200, "POST", imp, imp, |r| {
                auth(r).header("Content-Type", "text/csv").body(
                    "point_id,point_name,org_id,org_name,location,expected_headcount\n\
                     diem-nhap-openapi,Điểm nhập,don-vi-openapi,Đơn vị OpenAPI,Phòng 3,5\n",
                )
            })?;
            k.expect(400, "POST", imp, imp, |r| {
                auth(r).header("Content-Type", "text/csv")
            })?;

            // Conferences.
            let cs = "/api/v1/conferences";
            k.expect(401, "GET", cs, cs, |r| r)?;
            k.expect(200, "GET", cs, cs, |r| r.header("Cookie", &operator_cookie))?;
            let created = k.expect(201, "POST", cs, cs, |r| {
                auth(r).json(&json!({"id": "hn-openapi", "title": "Hội nghị OpenAPI"}))
            })?;
            let created = created.json()?;
            k.expect(200, "POST", cs, cs, |r| {
                r.header("Cookie", &admin_cookie)
                    .header("X-CSRF-Token", &admin_csrf)
                    .json(&json!({"id": "hn-openapi", "title": "Hội nghị OpenAPI (2)"}))
            })?;
            k.expect(422, "POST", cs, cs, |r| {
                auth(r).json(&json!({"id": "hn-openapi", "unknown": 1}))
            })?;
            let ci = "/api/v1/conferences/{id}";
            k.expect(200, "GET", ci, "/api/v1/conferences/hn-openapi", auth)?;
            k.expect(404, "GET", ci, "/api/v1/conferences/nope", auth)?;
            let sk = "/api/v1/conferences/{id}/stream-key";
            let rotated = k.expect(
                200,
                "POST",
                sk,
                "/api/v1/conferences/hn-openapi/stream-key",
                auth,
            )?;
            let new_key = rotated.json()?["stream_key"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if new_key.is_empty() || Some(new_key.as_str()) == created["stream_key"].as_str() {
                k.failures.push(format!(
                    "the stream key was not rotated: {:?}",
                    rotated.body
                ));
            }
            k.expect(
                400,
                "POST",
                sk,
                "/api/v1/conferences/hn-openapi/stream-key",
                |r| auth(r).json(&json!({"stream_key": "short"})),
            )?;
            k.expect(404, "POST", sk, "/api/v1/conferences/nope/stream-key", auth)?;

            let l = "/api/v1/conferences/{id}/links";
            let links = k.expect(
                200,
                "GET",
                l,
                &format!("/api/v1/conferences/{c}/links?format=json"),
                auth,
            )?;
            let links = links.json()?;
            k.expect(
                200,
                "GET",
                l,
                &format!("/api/v1/conferences/{c}/links"),
                auth,
            )?;
            k.expect(
                200,
                "GET",
                l,
                &format!("/api/v1/conferences/{c}/links?format=csv&lang=en&valid_hours=2"),
                auth,
            )?;
            k.expect(
                400,
                "GET",
                l,
                &format!("/api/v1/conferences/{c}/links?format=pdf"),
                auth,
            )?;
            k.expect(
                400,
                "GET",
                l,
                &format!("/api/v1/conferences/{c}/links?valid_hours=0"),
                auth,
            )?;
            let other_join = links
                .as_array()
                .and_then(|a| a.iter().find(|l| l["point_id"] == "diem-openapi"))
                .and_then(|l| l["url"].as_str())
                .map(token_in)
                .transpose()?
                .context("no join link for diem-openapi")?;
            let qr = "/api/v1/conferences/{id}/links/qr/{file}";
            k.expect(
                200,
                "GET",
                qr,
                &format!("/api/v1/conferences/{c}/links/qr/{point}.svg"),
                auth,
            )?;
            k.expect(
                404,
                "GET",
                qr,
                &format!("/api/v1/conferences/{c}/links/qr/{point}.png"),
                auth,
            )?;
            k.expect(
                401,
                "GET",
                qr,
                &format!("/api/v1/conferences/{c}/links/qr/{point}.svg"),
                |r| r,
            )?;

            // Attendance.
            let hc = "/api/v1/conferences/{id}/headcount";
            let hc_c = format!("/api/v1/conferences/{c}/headcount");
            k.expect(401, "POST", hc, &hc_c, |r| r.json(&json!({"n_people": 3})))?;
            k.expect(200, "POST", hc, &hc_c, |r| {
                r.header("Authorization", bearer(&join))
                    .json(&json!({"n_people": 12}))
            })?;
            k.expect(
                403,
                "POST",
                hc,
                "/api/v1/conferences/hn-openapi/headcount",
                |r| {
                    r.header("Authorization", bearer(&join))
                        .json(&json!({"n_people": 1}))
                },
            )?;
            k.expect(400, "POST", hc, &hc_c, |r| {
                r.header("Authorization", bearer(&join))
                    .json(&json!({"n_people": 1, "event_id": "not-hex"}))
            })?;
            k.expect(422, "POST", hc, &hc_c, |r| {
                r.header("Authorization", bearer(&join))
                    .json(&json!({"people": 1}))
            })?;
            let rc = "/api/v1/conferences/{id}/rollcalls";
            let rc_c = format!("/api/v1/conferences/{c}/rollcalls");
            k.expect(200, "GET", rc, &rc_c, auth)?;
            k.expect(404, "GET", rc, "/api/v1/conferences/nope/rollcalls", auth)?;
            k.expect(400, "POST", rc, &rc_c, |r| {
                auth(r).json(&json!({"duration_s": 1}))
            })?;
            let started = k.expect(201, "POST", rc, &rc_c, |r| {
                auth(r).json(&json!({"duration_s": 60}))
            })?;
            let rollcall = started.json()?["id"].as_str().unwrap_or("").to_string();
            k.expect(409, "POST", rc, &rc_c, auth)?;
            let an = "/api/v1/conferences/{id}/rollcalls/{rollcall}/answer";
            let an_c = format!("/api/v1/conferences/{c}/rollcalls/{rollcall}/answer");
            k.expect(401, "POST", an, &an_c, |r| r.json(&json!({"n_people": 3})))?;
            k.expect(200, "POST", an, &an_c, |r| {
                r.header("Authorization", bearer(&join))
                    .json(&json!({"n_people": 3}))
            })?;
            k.expect(400, "POST", an, &an_c, |r| {
                r.header("Authorization", bearer(&join))
                    .json(&json!({"n_people": 0}))
            })?;
            k.expect(
                404,
                "POST",
                an,
                &format!(
                    "/api/v1/conferences/{c}/rollcalls/0123456789abcdef0123456789abcdef/answer"
                ),
                |r| {
                    r.header("Authorization", bearer(&join))
                        .json(&json!({"n_people": 3}))
                },
            )?;
            let rp = "/api/v1/conferences/{id}/report";
            for f in ["json", "csv", "html"] {
                k.expect(
                    200,
                    "GET",
                    rp,
                    &format!("/api/v1/conferences/{c}/report?format={f}"),
                    auth,
                )?;
            }
            k.expect(
                400,
                "GET",
                rp,
                &format!("/api/v1/conferences/{c}/report?format=pdf"),
                auth,
            )?;
            k.expect(
                401,
                "GET",
                rp,
                &format!("/api/v1/conferences/{c}/report"),
                |r| r,
            )?;
            let ev = "/api/v1/conferences/{id}/events";
            k.expect(
                200,
                "GET",
                ev,
                &format!("/api/v1/conferences/{c}/events"),
                auth,
            )?;
            k.expect(
                400,
                "GET",
                ev,
                "/api/v1/conferences/Not%20an%20id/events",
                auth,
            )?;
            let bd = "/api/v1/conferences/{id}/board";
            k.expect(
                200,
                "GET",
                bd,
                &format!("/api/v1/conferences/{c}/board"),
                auth,
            )?;
            k.expect(404, "GET", bd, "/api/v1/conferences/nope/board", auth)?;
            let bs = "/api/v1/conferences/{id}/board/stream";
            k.expect(
                200,
                "GET",
                bs,
                &format!("/api/v1/conferences/{c}/board/stream"),
                auth,
            )?;
            k.expect(
                401,
                "GET",
                bs,
                &format!("/api/v1/conferences/{c}/board/stream"),
                |r| r,
            )?;

            // WHIP and WHEP, with hand-made offers (no media flows).
            let sdp_body = |r: RequestBuilder, body: String| {
                r.header("Content-Type", "application/sdp").body(body)
            };
            let trickle = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n";
            let patch_body = |r: RequestBuilder| {
                r.header("Content-Type", "application/trickle-ice-sdpfrag")
                    .body(trickle)
            };
            let wp = "/whip/{conference}";
            let wp_c = format!("/whip/{c}");
            k.expect(204, "OPTIONS", wp, &wp_c, |r| r)?;
            k.expect(401, "POST", wp, &wp_c, |r| {
                sdp_body(r, sdp::publisher_offer())
            })?;
            k.expect(401, "POST", wp, &wp_c, |r| {
                sdp_body(
                    r.header("Authorization", bearer("wrong-key")),
                    sdp::publisher_offer(),
                )
            })?;
            k.expect(404, "POST", wp, "/whip/nope", |r| {
                sdp_body(
                    r.header("Authorization", bearer(&key)),
                    sdp::publisher_offer(),
                )
            })?;
            k.expect(415, "POST", wp, &wp_c, |r| {
                r.header("Authorization", bearer(&key))
                    .header("Content-Type", "text/plain")
                    .body(sdp::publisher_offer())
            })?;
            k.expect(400, "POST", wp, &wp_c, |r| {
                sdp_body(r.header("Authorization", bearer(&key)), "hello".into())
            })?;
            let published = k.expect(201, "POST", wp, &wp_c, |r| {
                sdp_body(
                    r.header("Authorization", bearer(&key)),
                    sdp::publisher_offer(),
                )
            })?;
            let pub_loc = published
                .location
                .clone()
                .context("WHIP 201 without Location")?;
            k.expect(409, "POST", wp, &wp_c, |r| {
                sdp_body(
                    r.header("Authorization", bearer(&key)),
                    sdp::publisher_offer(),
                )
            })?;
            let ws = "/whip/{conference}/{session}";
            k.expect(204, "OPTIONS", ws, &pub_loc, |r| r)?;
            k.expect(204, "PATCH", ws, &pub_loc, |r| {
                patch_body(r.header("Authorization", bearer(&key)))
            })?;
            k.expect(415, "PATCH", ws, &pub_loc, |r| {
                r.header("Authorization", bearer(&key)).body(trickle)
            })?;
            k.expect(412, "PATCH", ws, &pub_loc, |r| {
                patch_body(
                    r.header("Authorization", bearer(&key))
                        .header("If-Match", "\"x\""),
                )
            })?;
            k.expect(403, "PATCH", ws, &pub_loc, |r| {
                patch_body(r.header("Authorization", bearer(&join)))
            })?;

            let wh = "/whep/{conference}";
            let wh_c = format!("/whep/{c}");
            k.expect(204, "OPTIONS", wh, &wh_c, |r| r)?;
            k.expect(401, "POST", wh, &wh_c, |r| {
                sdp_body(
                    r.header("Authorization", bearer("wrong")),
                    sdp::viewer_offer(),
                )
            })?;
            k.expect(404, "POST", wh, "/whep/nope", |r| {
                sdp_body(
                    r.header("Authorization", bearer(&join)),
                    sdp::viewer_offer(),
                )
            })?;
            k.expect(415, "POST", wh, &wh_c, |r| {
                r.header("Authorization", bearer(&join))
                    .body(sdp::viewer_offer())
            })?;
            let played = k.expect(201, "POST", wh, &wh_c, |r| {
                sdp_body(
                    r.header("Authorization", bearer(&join)),
                    sdp::viewer_offer(),
                )
            })?;
            let view_loc = played
                .location
                .clone()
                .context("WHEP 201 without Location")?;
            let second = k.expect(201, "POST", wh, &wh_c, |r| {
                sdp_body(
                    r.header("Authorization", bearer(&other_join)),
                    sdp::viewer_offer(),
                )
            })?;
            let vs = "/whep/{conference}/{session}";
            k.expect(204, "OPTIONS", vs, &view_loc, |r| r)?;
            k.expect(204, "PATCH", vs, &view_loc, |r| {
                patch_body(r.header("Authorization", bearer(&join)))
            })?;
            k.expect(404, "PATCH", vs, &format!("/whep/{c}/not-a-session"), |r| {
                patch_body(r.header("Authorization", bearer(&join)))
            })?;
            let es = "/whep/{conference}/{session}/events";
            let es_c = format!("{view_loc}/events");
            k.expect(204, "OPTIONS", es, &es_c, |r| r)?;
            k.expect(400, "POST", es, &es_c, |r| {
                r.header("Authorization", bearer(&join))
                    .json(&json!(["bogus"]))
            })?;
            k.expect(403, "POST", es, &es_c, |r| {
                r.header("Authorization", bearer(&other_join))
                    .json(&json!(["active"]))
            })?;
            let sub = k.expect(201, "POST", es, &es_c, |r| {
                r.header("Authorization", bearer(&join)).json(&json!([
                    "active",
                    "layers",
                    "viewercount",
                    "rollcall"
                ]))
            })?;
            let stream = sub
                .location
                .clone()
                .context("events 201 without Location")?;
            let et = "/whep/{conference}/{session}/events/{token}";
            k.expect(204, "OPTIONS", et, &stream, |r| r)?;
            k.expect(406, "GET", et, &stream, |r| {
                r.header("Accept", "application/json")
            })?;
            k.expect(200, "GET", et, &stream, |r| {
                r.header("Accept", "text/event-stream")
            })?;
            k.expect(404, "GET", et, &format!("{es_c}/{}", "0".repeat(32)), |r| r)?;
            k.expect(403, "DELETE", vs, &view_loc, |r| {
                r.header("Authorization", bearer(&other_join))
            })?;
            k.expect(200, "DELETE", vs, &view_loc, |r| {
                r.header("Authorization", bearer(&join))
            })?;
            if let Some(loc) = &second.location {
                k.expect(200, "DELETE", vs, loc, |r| {
                    r.header("Authorization", bearer(&other_join))
                })?;
            }
            k.expect(404, "DELETE", vs, &view_loc, |r| {
                r.header("Authorization", bearer(&join))
            })?;
            k.expect(401, "DELETE", ws, &pub_loc, |r| r)?;
            k.expect(200, "DELETE", ws, &pub_loc, |r| {
                r.header("Authorization", bearer(&key))
            })?;
            k.expect(404, "DELETE", ws, &pub_loc, |r| {
                r.header("Authorization", bearer(&key))
            })?;
            // Nobody publishes any more: come back later.
            let got = k.expect(409, "POST", wh, &wh_c, |r| {
                sdp_body(
                    r.header("Authorization", bearer(&join)),
                    sdp::viewer_offer(),
                )
            })?;
            drop(got);

            // An ended conference: viewers 410, its publisher 403, no roll call; then reopened.
            let en = "/api/v1/conferences/{id}/end";
            k.expect(200, "POST", en, "/api/v1/conferences/hn-openapi/end", auth)?;
            k.expect(404, "POST", en, "/api/v1/conferences/nope/end", auth)?;
            k.expect(410, "POST", wh, "/whep/hn-openapi", |r| {
                sdp_body(
                    r.header("Authorization", bearer(&join)),
                    sdp::viewer_offer(),
                )
            })?;
            k.expect(403, "POST", wp, "/whip/hn-openapi", |r| {
                sdp_body(
                    r.header("Authorization", bearer(&new_key)),
                    sdp::publisher_offer(),
                )
            })?;
            k.expect(
                409,
                "POST",
                rc,
                "/api/v1/conferences/hn-openapi/rollcalls",
                auth,
            )?;
            let ro = "/api/v1/conferences/{id}/reopen";
            k.expect(
                200,
                "POST",
                ro,
                "/api/v1/conferences/hn-openapi/reopen",
                auth,
            )?;

            // Revocation, then the registry cleaned up.
            let rv = "/api/v1/conferences/{id}/points/{point}/revoke";
            k.expect(
                200,
                "POST",
                rv,
                &format!("/api/v1/conferences/{c}/points/diem-openapi/revoke"),
                auth,
            )?;
            k.expect(
                401,
                "POST",
                rv,
                &format!("/api/v1/conferences/{c}/points/diem-openapi/revoke"),
                |r| r,
            )?;
            k.expect(401, "POST", hc, &hc_c, |r| {
                r.header("Authorization", bearer(&other_join))
                    .json(&json!({"n_people": 1}))
            })?;
            k.expect(
                409,
                "DELETE",
                oi,
                "/api/v1/organisations/don-vi-openapi",
                auth,
            )?;
            for id in ["diem-openapi", "diem-nhap-openapi"] {
                k.expect(204, "DELETE", pi, &format!("/api/v1/points/{id}"), auth)?;
            }
            k.expect(404, "DELETE", pi, "/api/v1/points/diem-openapi", auth)?;
            k.expect(
                204,
                "DELETE",
                oi,
                "/api/v1/organisations/don-vi-openapi",
                auth,
            )?;
            k.expect(
                404,
                "DELETE",
                oi,
                "/api/v1/organisations/don-vi-openapi",
                auth,
            )?;

            // Sign out: the session no longer opens anything.
            let lo = "/api/v1/logout";
            k.expect(403, "POST", lo, lo, |r| r.header("Cookie", &admin_cookie))?;
            k.expect(204, "POST", lo, lo, |r| {
                r.header("Cookie", &admin_cookie)
                    .header("X-CSRF-Token", &admin_csrf)
            })?;
            k.expect(401, "GET", me, me, |r| r.header("Cookie", &admin_cookie))?;

            // An edge under the demo, on loopback: the same document, its own answers (a WHIP
            // POST is refused there; /readyz reports its parent).
            let edge_data = ctx.path("edge-data");
            let edge = Relay::start(
                ctx,
                "hallcast edge",
                &[
                    "edge",
                    "--parent",
                    &info.http_base,
                    "--credential",
                    &relay,
                    "--name",
                    "edge-openapi-2",
                    "--http",
                    "127.0.0.1:0",
                    "--media",
                    "127.0.0.1:0",
                    "--data-dir",
                    &edge_data.display().to_string(),
                ]
                .map(str::to_string),
            )?;
            let central = std::mem::replace(&mut k.base, edge.base());
            let got = k.expect(200, "GET", "/api/openapi.json", "/api/openapi.json", |r| r)?;
            if got.json()? != k.doc {
                k.failures.push(format!(
                    "the edge's /api/openapi.json differs from {DOCUMENT}"
                ));
            }
            k.expect(403, "POST", wp, &wp_c, |r| {
                sdp_body(
                    r.header("Authorization", bearer(&key)),
                    sdp::publisher_offer(),
                )
            })?;
            let started = std::time::Instant::now();
            loop {
                let got = k.call("GET", "/readyz", "/readyz", |r| r)?;
                if got.status == 200 {
                    let v = got.json()?;
                    ensure!(v["role"] == "edge", "the edge's /readyz: {v}");
                    break;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    k.failures.push(format!(
                        "the edge's /readyz is still {} after 30 s: {}",
                        got.status,
                        snippet(&got.body)
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            k.base = central;
            drop(edge);

            // Every documented operation was called.
            let documented = documented_operations(&k.doc)?;
            for (path, method) in documented.difference(&k.called.clone()) {
                k.failures.push(format!(
                    "{method} {path} is documented but this test never called it"
                ));
            }
            if !k.failures.is_empty() {
                bail!(
                    "{} answer(s) not as documented:\n{}",
                    k.failures.len(),
                    k.failures.join("\n")
                );
            }
            Ok(())
        },
    );
}
