//! HTTPS without a reverse proxy (issue 13, B.2): `hallcast demo` with `--tls-cert/--tls-key`
//! (a certificate for 127.0.0.1 and localhost from a private CA, both made here with the openssl
//! CLI) and
//! `http.redirect_from`. Headless Chromium watches the viewer page over https (trusting the
//! certificate by its key's hash, so the page stays a secure context), aiortc does WHEP over
//! https, the redirect listener answers 308, plain HTTP at the TLS port is refused cleanly while
//! the relay keeps serving, the consoles' cookies carry `Secure`, and an edge pulls from the
//! https central with `--ca-file` and its viewer plays.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hallcast_tests::http::Http;
use hallcast_tests::proc::Proc;
use hallcast_tests::results::{self, PlayResult};
use hallcast_tests::{Client, ClientKind, Ctx, Demo, DemoOptions, Weight, hallcast_bin, run};
use serde_json::Value;

use crate::util::{AIORTC_UNTIL_AUDIO_PACKETS, strings, viewer_pages};

const MIN_FRAMES: u64 = 30;

/// A private CA, the relay's certificate (P-256) for 127.0.0.1 and localhost signed by it, and
/// that certificate's key's SPKI sha256 in base64 (what Chromium's
/// `--ignore-certificate-errors-spki-list` takes).
struct TestCert {
    /// The CA certificate: what clients trust (`--ca-file`, `upstream.ca_file`).
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    spki_sha256: String,
}

fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run openssl (apt-get install openssl; scripts/install-test-deps.sh)")?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("openssl's stdin")?
            .write_all(input)?;
    }
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

fn make_cert(ctx: &Ctx) -> Result<TestCert> {
    make_cert_as(ctx, "tls")
}

/// [`make_cert`] into files named `<stem>-*.pem` of the scratch directory.
fn make_cert_as(ctx: &Ctx, stem: &str) -> Result<TestCert> {
    let ca = ctx.path(&format!("{stem}-ca.pem"));
    let ca_key = ctx.path(&format!("{stem}-ca-key.pem"));
    let csr = ctx.path(&format!("{stem}.csr"));
    let ext = ctx.path(&format!("{stem}-ext.cnf"));
    let cert = ctx.path(&format!("{stem}-cert.pem"));
    let key = ctx.path(&format!("{stem}-key.pem"));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    // A private CA ...
    let mut args = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=hallcast test CA",
    ];
    args.extend(ec);
    args.extend(["-keyout", path_str(&ca_key)?, "-out", path_str(&ca)?]);
    openssl(&args, None)?;
    // ... and the relay's certificate for 127.0.0.1 and localhost, signed by it.
    let mut args = vec!["req", "-new", "-subj", "/CN=localhost"];
    args.extend(ec);
    args.extend(["-keyout", path_str(&key)?, "-out", path_str(&csr)?]);
    openssl(&args, None)?;
    fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )?;
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            path_str(&csr)?,
            "-CA",
            path_str(&ca)?,
            "-CAkey",
            path_str(&ca_key)?,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            path_str(&ext)?,
            "-out",
            path_str(&cert)?,
        ],
        None,
    )?;
    let public = openssl(
        &["x509", "-in", path_str(&cert)?, "-pubkey", "-noout"],
        None,
    )?;
    let der = openssl(&["pkey", "-pubin", "-outform", "DER"], Some(&public))?;
    let digest = openssl(&["dgst", "-sha256", "-binary"], Some(&der))?;
    let b64 = openssl(&["base64", "-A"], Some(&digest))?;
    let spki_sha256 = String::from_utf8(b64)?.trim().to_string();
    ensure!(
        spki_sha256.len() == 44,
        "unexpected SPKI hash {spki_sha256:?}"
    );
    Ok(TestCert {
        ca,
        cert,
        key,
        spki_sha256,
    })
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("a non-UTF-8 scratch path")
}

fn tls_demo(ctx: &Ctx, cert: &TestCert) -> Result<Demo> {
    Demo::start(
        ctx,
        DemoOptions {
            set: vec![
                format!("http.tls_cert={:?}", path_str(&cert.cert)?),
                format!("http.tls_key={:?}", path_str(&cert.key)?),
                "http.redirect_from=\"127.0.0.1:0\"".into(),
            ],
            ..Default::default()
        },
    )
}

/// One raw HTTP/1.1 exchange over plain TCP: the whole answer as text (the server closes).
fn raw_exchange(addr: &str, request: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .with_context(|| format!("reading the answer of {addr}"))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn host_port(base: &str) -> &str {
    base.trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
}

#[test]
fn https_serves_pages_whep_redirects_and_refuses_plain_http() {
    run(
        "https_serves_pages_whep_redirects_and_refuses_plain_http",
        Weight::Heavy,
        |ctx| -> Result<()> {
            let cert = make_cert(ctx)?;
            let mut demo = tls_demo(ctx, &cert)?;
            let info = demo.info.clone();
            for key in [
                "http_base",
                "whip_url",
                "whep_url",
                "viewer_url",
                "operator_url",
            ] {
                let url = info.raw[key].as_str().unwrap_or_default();
                ensure!(
                    url.starts_with("https://127.0.0.1:"),
                    "with TLS on, {key} should be an https URL (public_url's default), got {url:?}"
                );
            }
            let https = Http::with_ca(&info.http_base, &cert.ca)?;
            let health = https.get("/healthz", None)?;
            ensure!(
                health.status == 200,
                "GET https …/healthz answered {health:?}"
            );
            let metrics = https.get("/metrics", None)?;
            ensure!(
                metrics.status == 200 && metrics.body.contains("hallcast_conference_live"),
                "GET https …/metrics answered {} {:?}",
                metrics.status,
                metrics.body.get(..200)
            );

            // A client that does not trust the certificate is refused by its own TLS check.
            let untrusted = Http::new(&info.http_base)?.get("/healthz", None);
            ensure!(
                untrusted.is_err(),
                "a client without the test CA reached the relay: {untrusted:?}"
            );

            // Plain HTTP at the TLS port: a short 400 naming https, the connection closed.
            let tls_addr = host_port(&info.http_base).to_string();
            let plain = raw_exchange(
                &tls_addr,
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )?;
            ensure!(
                plain.starts_with("HTTP/1.1 400") && plain.contains("HTTPS"),
                "plain HTTP at the TLS port answered {plain:?}, expected 400 naming HTTPS"
            );
            // Garbage and a connection closed mid-handshake end those connections only.
            let _ = raw_exchange(&tls_addr, "\u{16}\u{3}\u{1}garbage");
            drop(TcpStream::connect(&tls_addr)?);
            demo.ensure_running()?;
            let again = https.get("/healthz", None)?;
            ensure!(
                again.status == 200,
                "after plain HTTP and garbage at the TLS port, GET https …/healthz answered {again:?}"
            );

            // The redirect listener: 308 to the same path and query on https.
            let redirect = info.raw["redirect_from"]
                .as_str()
                .filter(|s| !s.is_empty())
                .context("the info file names no redirect_from listener")?
                .to_string();
            let plain_http = Http::new(&format!("http://{redirect}"))?;
            let path = format!("/watch/{}?token=abc&lang=en", info.conference);
            let moved = plain_http.get(&path, None)?;
            ensure!(
                moved.status == 308
                    && moved.location.as_deref() == Some(&format!("{}{path}", info.http_base)),
                "GET http://{redirect}{path} answered {} Location {:?}, expected 308 to {}{path}",
                moved.status,
                moved.location,
                info.http_base
            );
            let moved_post =
                plain_http.post_sdp(&format!("/whep/{}", info.conference), None, "v=0\r\n")?;
            ensure!(
                moved_post.status == 308
                    && moved_post.location.as_deref()
                        == Some(&format!("{}/whep/{}", info.http_base, info.conference)),
                "POST to the redirect listener answered {} Location {:?}, expected 308 (method kept)",
                moved_post.status,
                moved_post.location
            );

            // The console's sign-in cookies carry Secure over TLS.
            let client = reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&fs::read(&cert.ca)?)?)
                .timeout(Duration::from_secs(15))
                .build()?;
            let operator_url = info.raw["operator_url"].as_str().unwrap_or_default();
            let signed_in = client.get(operator_url).send()?;
            let cookies: Vec<String> = signed_in
                .headers()
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            ensure!(
                cookies.len() >= 2 && cookies.iter().all(|c| c.contains("; Secure")),
                "the operator sign-in over https answered {} with cookies {cookies:?}, each should carry Secure",
                signed_in.status()
            );

            // aiortc plays over https (WHEP POST, PATCH and DELETE through TLS).
            let mut player = Client::start(
                ctx,
                ClientKind::Aiortc,
                "whep_play.py",
                &strings(&[
                    "--url",
                    &info.whep_url,
                    "--token",
                    &info.viewer_token,
                    "--ca-file",
                    path_str(&cert.ca)?,
                    "--duration",
                    "60",
                    "--until-frames",
                    &MIN_FRAMES.to_string(),
                    "--until-audio",
                    &AIORTC_UNTIL_AUDIO_PACKETS.to_string(),
                    "--wait-live",
                ]),
            )?;
            // Chromium watches the viewer page over https, as a secure context.
            let mut viewer = viewer_pages(
                ctx,
                &info.viewer_url,
                1,
                60,
                MIN_FRAMES as u32,
                &["--spki", &cert.spki_sha256],
            )?;
            let played: PlayResult = results::parse(
                "aiortc over https",
                &player.result(Duration::from_secs(90))?,
            )?;
            played.ensure_played("aiortc playing the demo over https", MIN_FRAMES)?;
            let pages = results::pages(&viewer.result(Duration::from_secs(100))?)?;
            let page = &pages[0];
            ensure!(
                page.secure_context == Some(true),
                "the viewer page over https is not a secure context ({:?}): {page:?}",
                page.secure_context
            );
            ensure!(
                page.frames_decoded >= MIN_FRAMES && page.page_errors.is_empty(),
                "the viewer page over https decoded {} frames (errors {:?}), expected {MIN_FRAMES}",
                page.frames_decoded,
                page.page_errors
            );
            demo.ensure_running()?;
            Ok(())
        },
    );
}

/// `hallcast edge` on loopback, pulling from `parent`; its info file once it accepts requests.
fn start_edge(
    ctx: &Ctx,
    tag: &str,
    parent: &str,
    credential: &str,
    ca_file: Option<&Path>,
) -> Result<(Proc, Value)> {
    let info_path = ctx.path(&format!("{tag}-info.json"));
    let log = ctx.path(&format!("{tag}.log"));
    let mut cmd = Command::new(hallcast_bin()?);
    cmd.arg("edge")
        .args(["--parent", parent, "--credential", credential])
        .args([
            "--http",
            "127.0.0.1:0",
            "--media",
            "127.0.0.1:0",
            "--name",
            "edge-https",
        ])
        .arg("--info-file")
        .arg(&info_path)
        .arg("--data-dir")
        .arg(ctx.path(&format!("{tag}-data")));
    if let Some(ca) = ca_file {
        cmd.arg("--ca-file").arg(ca);
    }
    let out = fs::File::create(&log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .env("RUST_LOG", "info");
    ctx.register_log(&format!("hallcast {tag}"), &log);
    let mut proc = Proc::spawn(&mut cmd, false)?;
    let started = Instant::now();
    loop {
        if let Some(status) = proc.try_wait()? {
            bail!("hallcast edge exited with {status} before writing its info file");
        }
        if let Ok(v) = fs::read_to_string(&info_path)
            .map_err(anyhow::Error::from)
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(anyhow::Error::from))
        {
            return Ok((proc, v));
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("hallcast edge wrote no info file within 60 s");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Polls an edge's `/readyz` until it answers 200 (Some(elapsed)) or `within` passes (None).
fn wait_ready(edge_info: &Value, within: Duration) -> Result<Option<Duration>> {
    let base = edge_info["http_base"]
        .as_str()
        .context("the edge's info file has no http_base")?;
    let http = Http::new(base)?;
    let started = Instant::now();
    while started.elapsed() < within {
        if http.get("/readyz", None)?.status == 200 {
            return Ok(Some(started.elapsed()));
        }
        thread::sleep(Duration::from_millis(200));
    }
    Ok(None)
}

#[test]
fn an_edge_pulls_from_an_https_central_with_its_ca_file() {
    run(
        "an_edge_pulls_from_an_https_central_with_its_ca_file",
        Weight::Heavy,
        |ctx| -> Result<()> {
            let cert = make_cert(ctx)?;
            let mut demo = tls_demo(ctx, &cert)?;
            let info = demo.info.clone();
            let credential = info.raw["relay_credential"]
                .as_str()
                .context("the info file has no relay_credential")?
                .to_string();
            // Without the CA file the edge cannot trust the central: it never gets ready.
            let (mut blind, blind_info) =
                start_edge(ctx, "edge-without-ca", &info.http_base, &credential, None)?;
            let blind_ready = wait_ready(&blind_info, Duration::from_secs(5))?;
            ensure!(
                blind_ready.is_none(),
                "an edge without upstream.ca_file became ready against the https central with a private CA"
            );
            blind.terminate(Duration::from_secs(5));
            let (mut edge, edge_info) =
                start_edge(ctx, "edge", &info.http_base, &credential, Some(&cert.ca))?;
            ensure!(
                wait_ready(&edge_info, Duration::from_secs(30))?.is_some(),
                "the edge with upstream.ca_file never became ready (its parent check) against the https central"
            );
            let edge_base = edge_info["http_base"]
                .as_str()
                .context("the edge's info file has no http_base")?
                .to_string();
            let mut player = Client::start(
                ctx,
                ClientKind::Aiortc,
                "whep_play.py",
                &strings(&[
                    "--url",
                    &format!("{edge_base}/whep/{}", info.conference),
                    "--token",
                    &info.viewer_token,
                    "--duration",
                    "60",
                    "--until-frames",
                    &MIN_FRAMES.to_string(),
                    "--until-audio",
                    &AIORTC_UNTIL_AUDIO_PACKETS.to_string(),
                    "--wait-live",
                ]),
            )?;
            let played: PlayResult = results::parse(
                "aiortc at the edge",
                &player.result(Duration::from_secs(90))?,
            )?;
            ensure!(
                edge.try_wait()?.is_none(),
                "the edge exited during the test"
            );
            played.ensure_played(
                "a viewer of the edge that pulls from the https central",
                MIN_FRAMES,
            )?;
            demo.ensure_running()?;
            Ok(())
        },
    );
}

#[test]
fn validate_reads_the_certificate_files_and_names_their_keys() {
    run(
        "validate_reads_the_certificate_files_and_names_their_keys",
        Weight::Light,
        |ctx| -> Result<()> {
            let cert = make_cert(ctx)?;
            let validate = |name: &str, text: String| -> Result<(bool, String)> {
                let file = ctx.path(name);
                fs::write(&file, text)?;
                let out = Command::new(hallcast_bin()?)
                    .arg("validate")
                    .arg("--config")
                    .arg(&file)
                    .output()?;
                Ok((
                    out.status.success(),
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                ))
            };
            let good = format!(
                "[http]\ntls_cert = {:?}\ntls_key = {:?}\nredirect_from = \"127.0.0.1:8081\"\n\n[upstream]\nca_file = {:?}\n",
                path_str(&cert.cert)?,
                path_str(&cert.key)?,
                path_str(&cert.ca)?
            );
            let (ok, out) = validate("good.toml", good)?;
            ensure!(
                ok && out.contains("ok (central)"),
                "validate refused good TLS files: {out}"
            );
            let missing = ctx.path("missing.pem");
            for (name, text, key, line) in [
                (
                    "no-cert.toml",
                    format!(
                        "[http]\ntls_cert = {:?}\ntls_key = {:?}\n",
                        path_str(&missing)?,
                        path_str(&cert.key)?
                    ),
                    "http.tls_cert",
                    2,
                ),
                (
                    // The certificate where the key should be: read, but holds no key.
                    "cert-as-key.toml",
                    format!(
                        "[http]\ntls_cert = {:?}\ntls_key = {:?}\n",
                        path_str(&cert.cert)?,
                        path_str(&cert.cert)?
                    ),
                    "http.tls_key",
                    3,
                ),
                (
                    // The CA's key does not go with the relay's certificate.
                    "wrong-key.toml",
                    format!(
                        "[http]\ntls_cert = {:?}\ntls_key = {:?}\n",
                        path_str(&cert.cert)?,
                        path_str(&ctx.path("tls-ca-key.pem"))?
                    ),
                    "http.tls_key",
                    3,
                ),
                (
                    "no-ca.toml",
                    format!("[upstream]\nca_file = {:?}\n", path_str(&missing)?),
                    "upstream.ca_file",
                    2,
                ),
            ] {
                let (ok, out) = validate(name, text)?;
                let want = format!("{name}:{line}:1: {key}: ");
                ensure!(
                    !ok && out.contains(&want),
                    "validate {name}: expected exit 1 and a line containing {want:?}, got (ok={ok}) {out}"
                );
            }
            Ok(())
        },
    );
}

#[test]
fn sighup_reloads_the_certificate_and_a_bad_one_keeps_the_old() {
    run(
        "sighup_reloads_the_certificate_and_a_bad_one_keeps_the_old",
        Weight::Light,
        |ctx| -> Result<()> {
            let first = make_cert(ctx)?;
            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    no_source: true,
                    set: vec![
                        format!("http.tls_cert={:?}", path_str(&first.cert)?),
                        format!("http.tls_key={:?}", path_str(&first.key)?),
                    ],
                    ..Default::default()
                },
            )?;
            let base = demo.info.http_base.clone();
            let trusts = |ca: &Path| -> bool {
                Http::with_ca(&base, ca)
                    .and_then(|h| h.get("/healthz", None))
                    .is_ok_and(|a| a.status == 200)
            };
            ensure!(trusts(&first.ca), "the first certificate is not served");
            // A renewal: another CA's certificate written over the same files, then SIGHUP.
            let second = make_cert_as(ctx, "renewed")?;
            ensure!(
                !trusts(&second.ca),
                "the second CA is trusted before the renewal"
            );
            fs::copy(&second.cert, &first.cert)?;
            fs::copy(&second.key, &first.key)?;
            let hup = |pid: u32| -> Result<()> {
                let status = Command::new("kill")
                    .args(["-HUP", &pid.to_string()])
                    .status()?;
                ensure!(status.success(), "kill -HUP {pid} failed");
                Ok(())
            };
            hup(demo.pid())?;
            let started = Instant::now();
            while !trusts(&second.ca) {
                ensure!(
                    started.elapsed() < Duration::from_secs(10),
                    "10 s after SIGHUP the relay still serves the old certificate"
                );
                thread::sleep(Duration::from_millis(100));
            }
            ensure!(
                !trusts(&first.ca),
                "the old certificate is still served after the reload"
            );
            // A broken key file: SIGHUP keeps the certificate in use, and the relay runs on.
            fs::write(&first.key, "not a key\n")?;
            hup(demo.pid())?;
            thread::sleep(Duration::from_secs(1));
            demo.ensure_running()?;
            ensure!(
                trusts(&second.ca),
                "after a SIGHUP with a broken key file the relay no longer serves the renewed certificate"
            );
            Ok(())
        },
    );
}
