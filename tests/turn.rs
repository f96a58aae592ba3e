//! TURN (issue 14, item 5; issue 13, B.4): the shipped coturn config (deploy/turn/turnserver.conf)
//! wired to the relay's `[[ice_servers]]` (deploy/turn/ice-servers.toml), run for real on loopback
//! and between network namespaces (a viewer whose network drops all UDP).
//!
//! | test | what |
//! |---|---|
//! | `the_shipped_turn_config_matches_the_relays_ice_servers` | ice-servers.toml loads as a relay config; its user, password, host and port are turnserver.conf's `user=`, `realm=` and `listening-port`; the conf uses static long-term credentials, denies every peer but the relays (both address families), and does not allow loopback peers |
//! | `a_viewer_whose_udp_is_blocked_plays_the_real_page_through_turn_over_tcp` | hosts in network namespaces (tests/src/tree.rs): a central (`hallcast demo`) announcing coturn's UDP and TCP URLs, coturn (the shipped conf, `allowed-peer-ip` = the central's address, no loopback peers) on a host of its own, a point whose nftables rules drop all UDP both ways. The real viewer page (`/watch/...`, no forced policy; `js/watch_pages.mjs`) in Chromium in the point decodes 60 frames and 3 s of audio over a selected pair whose local candidate is `relay` over TCP from the TCP URL and whose far end is the central's media port, on its first and only connection and offer, its first frame before the page's own connect timeout (15 s); coturn logs the point's TCP connection and the permission for the central. The control: the same page in the same point against a second central that announces no TURN server offers, and decodes nothing in 20 s; the drop rule counted the pages' UDP |
//! | `a_viewer_whose_udp_is_blocked_plays_the_real_page_over_ice_tcp` | the same UDP-blocked point, a central with no TURN server and its default ICE-TCP (`media.tcp = true`): the real viewer page decodes 60 frames and audio over a direct TCP pair to the central's media port, on its first connection, its first frame within the page's connect timeout (the control, no TURN and `media.tcp = false`, is step 2 above) |
//! | `a_viewer_forced_through_turn_plays_and_turn_relays_only_to_the_relay` | coturn runs the shipped conf on 127.0.0.1 (only its addresses, ports and log changed, plus `allow-loopback-peers` and `allowed-peer-ip=127.0.0.1`: the relay's address in this test); `hallcast demo` announces it from ice-servers.toml; Chromium with `iceTransportPolicy: 'relay'` learns it from the WHEP Link header and decodes 60 frames over a `relay` candidate pair whose remote end is the relay's media port, once with only the TURN-over-UDP URL and once with only TURN over TCP (a network that lets no UDP out); coturn logs the allocation and the permission for user hallcast. Then the same coturn conf without the allowed relay address: the viewer cannot play and coturn answers 403 Forbidden IP (the shipped denial works) |

use std::fs;
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hallcast_config::{Config, IceServer};
use hallcast_tests::net::free_udp_port;
use hallcast_tests::netns::nft;
use hallcast_tests::results::{self, ensure_pages_playing};
use hallcast_tests::tree::{Tree, central_options, pages_in};
use hallcast_tests::{Client, ClientKind, Ctx, Demo, DemoOptions, Weight, repo_root, run};
use serde_json::Value;

const MIN_FRAMES: u64 = 60;

fn turnserver_conf() -> PathBuf {
    repo_root().join("deploy/turn/turnserver.conf")
}

/// `key=value` and bare `key` lines of a coturn config, comments dropped, in order.
fn conf_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

fn conf_values<'a>(entries: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    entries
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The relay's side: deploy/turn/ice-servers.toml's one server.
fn shipped_ice_server() -> Result<IceServer> {
    let path = repo_root().join("deploy/turn/ice-servers.toml");
    let config =
        Config::load(Some(&path), &[]).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    ensure!(
        config.ice_servers.len() == 1,
        "ice-servers.toml lists {} servers, want 1",
        config.ice_servers.len()
    );
    Ok(config.ice_servers[0].clone())
}

#[test]
fn the_shipped_turn_config_matches_the_relays_ice_servers() {
    run(
        "the_shipped_turn_config_matches_the_relays_ice_servers",
        Weight::Light,
        |_ctx| {
            let text = fs::read_to_string(turnserver_conf())?;
            let conf = conf_entries(&text);
            let one = |key: &str| -> Result<String> {
                match conf_values(&conf, key).as_slice() {
                    [v] => Ok(v.to_string()),
                    other => bail!("turnserver.conf: want one {key}=, found {other:?}"),
                }
            };
            let (user, password) = one("user")?
                .split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .context("user= is not NAME:PASSWORD")?;
            let realm = one("realm")?;
            let port = one("listening-port")?;
            let ice = shipped_ice_server()?;
            ensure!(
                ice.username == user && ice.credential == password,
                "ice-servers.toml hands out {:?}/{:?}, turnserver.conf knows {user:?}/{password:?}",
                ice.username,
                ice.credential
            );
            let mut transports = Vec::new();
            for url in &ice.urls {
                let rest = url
                    .strip_prefix("turn:")
                    .with_context(|| format!("{url}: want a turn: URL"))?;
                let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
                ensure!(
                    hostport == format!("{realm}:{port}"),
                    "{url}: want host {realm} and port {port} (turnserver.conf's realm and listening-port)"
                );
                transports.push(query.to_string());
            }
            ensure!(
                transports == ["transport=udp", "transport=tcp"],
                "ice-servers.toml: want TURN over UDP and over TCP (UDP-blocking networks): {transports:?}"
            );

            // Static long-term credentials, not an open relay.
            ensure!(
                !conf_values(&conf, "lt-cred-mech").is_empty()
                    && conf_values(&conf, "use-auth-secret").is_empty(),
                "turnserver.conf: lt-cred-mech (static credentials), no use-auth-secret"
            );
            let denied = conf_values(&conf, "denied-peer-ip");
            for all in [
                "0.0.0.0-255.255.255.255",
                "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ] {
                ensure!(
                    denied.contains(&all),
                    "turnserver.conf: denied-peer-ip={all} (every peer but the relays) is missing"
                );
            }
            for private in [
                "10.0.0.0-10.255.255.255",
                "172.16.0.0-172.31.255.255",
                "192.168.0.0-192.168.255.255",
                "127.0.0.0-127.255.255.255",
                "169.254.0.0-169.254.255.255",
            ] {
                ensure!(
                    denied.contains(&private),
                    "turnserver.conf: denied-peer-ip={private} is missing"
                );
            }
            let allowed = conf_values(&conf, "allowed-peer-ip");
            ensure!(
                !allowed.is_empty(),
                "turnserver.conf: no allowed-peer-ip: the relays are unreachable through it"
            );
            for a in &allowed {
                let ip: std::net::IpAddr = a.parse().with_context(|| {
                    format!("allowed-peer-ip={a}: want one address, not a range")
                })?;
                ensure!(
                    !ip.is_loopback() && !ip.is_unspecified(),
                    "allowed-peer-ip={a}"
                );
            }
            ensure!(
                conf_values(&conf, "allow-loopback-peers").is_empty(),
                "turnserver.conf must not allow loopback peers (only the test's copy does)"
            );
            ensure!(
                !conf_values(&conf, "no-multicast-peers").is_empty()
                    && !conf_values(&conf, "no-tcp-relay").is_empty(),
                "turnserver.conf: no-multicast-peers and no-tcp-relay"
            );
            Ok(())
        },
    );
}

/// coturn, killed (and reaped) on drop.
struct Coturn {
    child: Child,
    log: PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Coturn {
    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `n` consecutive UDP ports on 127.0.0.1 that were free a moment ago (coturn's relay range).
fn free_udp_range(n: u16) -> Result<u16> {
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    for attempt in 0..50u64 {
        let base = 20000 + ((seed.wrapping_add(attempt * 7919)) % 9000) as u16;
        let sockets: Vec<_> = (base..base + n)
            .map_while(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
            .collect();
        if sockets.len() == usize::from(n) {
            return Ok(base);
        }
    }
    bail!("no {n} free consecutive UDP ports on 127.0.0.1")
}

/// Where coturn runs: an address to listen and relay on, inside a network namespace or not.
struct TurnHost<'a> {
    netns: Option<&'a str>,
    ip: &'a str,
}

/// On loopback, in the test's own namespace.
const LOOPBACK: TurnHost<'static> = TurnHost {
    netns: None,
    ip: "127.0.0.1",
};

/// Starts coturn with the shipped config, only where it listens, relays and logs changed for a
/// test on loopback, plus `extra` lines.
fn start_coturn(ctx: &Ctx, tag: &str, port: u16, extra: &[&str]) -> Result<Coturn> {
    start_coturn_at(ctx, &LOOPBACK, tag, port, extra)
}

/// [`start_coturn`] on `at` (listening and relaying on its address).
fn start_coturn_at(
    ctx: &Ctx,
    at: &TurnHost<'_>,
    tag: &str,
    port: u16,
    extra: &[&str],
) -> Result<Coturn> {
    let turnserver = Path::new("/usr/bin/turnserver");
    ensure!(
        turnserver.is_file(),
        "coturn is not installed (/usr/bin/turnserver): run scripts/install-test-deps.sh (apt-get install coturn)"
    );
    let shipped = fs::read_to_string(turnserver_conf())?;
    let replaced = [
        "listening-ip",
        "relay-ip",
        "external-ip",
        "listening-port",
        "tls-listening-port",
        "min-port",
        "max-port",
        "log-file",
        "pidfile",
        "userdb",
    ];
    let mut conf: Vec<String> = shipped
        .lines()
        .filter(|l| {
            let key = l.trim().split('=').next().unwrap_or("");
            !replaced.contains(&key)
        })
        .map(str::to_string)
        .collect();
    // A namespace of its own has every port free; on loopback, find 40 free ones.
    let relay_base = match at.netns {
        Some(_) => 49152,
        None => free_udp_range(40)?,
    };
    let dir = ctx.path(&format!("coturn-{tag}"));
    fs::create_dir_all(&dir)?;
    conf.extend([
        "# --- the test's own (tests/turn.rs) ---".to_string(),
        format!("listening-ip={}", at.ip),
        format!("relay-ip={}", at.ip),
        format!("listening-port={port}"),
        format!("min-port={relay_base}"),
        format!("max-port={}", relay_base + 39),
        format!("pidfile={}", dir.join("turnserver.pid").display()),
        format!("userdb={}", dir.join("turndb").display()),
        "log-file=stdout".to_string(),
        "verbose".to_string(),
    ]);
    conf.extend(extra.iter().map(|s| s.to_string()));
    let conf_path = dir.join("turnserver.conf");
    fs::write(&conf_path, conf.join("\n") + "\n")?;
    let log = dir.join("turnserver.log");
    ctx.register_log(&format!("coturn {tag}"), &log);
    let mut cmd = match at.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(turnserver);
            c
        }
        None => Command::new(turnserver),
    };
    let child = cmd
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log)?)
        .stderr(Stdio::from(fs::File::options().append(true).open(&log)?))
        .spawn()
        .context("cannot start turnserver")?;
    let mut coturn = Coturn { child, log };
    // Ready once its listener answers on TCP (the same port as UDP; probing the UDP port by
    // binding it could steal it from coturn for a moment).
    let ip: std::net::IpAddr = at.ip.parse()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = coturn.child.try_wait()? {
            bail!(
                "turnserver exited at once ({status}): {}",
                coturn.log_text()
            );
        }
        if TcpStream::connect_timeout(&(ip, port).into(), Duration::from_millis(200)).is_ok() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "turnserver did not listen on {ip}:{port} within 10 s"
        );
        thread::sleep(Duration::from_millis(100));
    }
    Ok(coturn)
}

/// `js/turn_watch.mjs` with only the announced TURN URLs of `transport` (udp or tcp).
fn watch_through_turn(ctx: &Ctx, demo: &Demo, timeout_s: u32, transport: &str) -> Result<Value> {
    let args: Vec<String> = [
        "--url",
        &demo.info.whep_url,
        "--token",
        &demo.info.viewer_token,
        "--frames",
        &MIN_FRAMES.to_string(),
        "--timeout",
        &timeout_s.to_string(),
        "--transport",
        transport,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut client = Client::start(ctx, ClientKind::Browser, "turn_watch.mjs", &args)?;
    client.result(Duration::from_secs(u64::from(timeout_s) + 60))
}

#[test]
fn a_viewer_forced_through_turn_plays_and_turn_relays_only_to_the_relay() {
    run(
        "a_viewer_forced_through_turn_plays_and_turn_relays_only_to_the_relay",
        Weight::Heavy,
        |ctx| {
            let port = free_udp_port()?;
            let ice = shipped_ice_server()?;
            // The shipped URLs (UDP and TCP) with turn.example.org:3478 replaced by the test's.
            let urls: Vec<String> = ice
                .urls
                .iter()
                .map(|u| {
                    let (_, query) = u.split_once('?').unwrap_or((u, ""));
                    format!("turn:127.0.0.1:{port}?{query}")
                })
                .collect();
            let set = format!(
                "ice_servers=[{{urls=[{}],username=\"{}\",credential=\"{}\"}}]",
                urls.iter()
                    .map(|u| format!("\"{u}\""))
                    .collect::<Vec<_>>()
                    .join(","),
                ice.username,
                ice.credential
            );
            let demo = Demo::start(
                ctx,
                DemoOptions {
                    set: vec![set],
                    ..Default::default()
                },
            )?;
            let shard_ports: Vec<u64> = demo.info.raw["media_udp_shards"]
                .as_array()
                .context("the info file has no media_udp_shards")?
                .iter()
                .filter_map(|a| a.as_str()?.rsplit(':').next()?.parse().ok())
                .collect();

            // 1. The relay's address allowed (as allowed-peer-ip lists the relays in production);
            // a viewer that may use only TURN over UDP, then one that may use only TURN over TCP
            // (a network that lets no UDP out).
            let coturn = start_coturn(
                ctx,
                "allowed",
                port,
                &["allow-loopback-peers", "allowed-peer-ip=127.0.0.1"],
            )?;
            for transport in ["udp", "tcp"] {
                let turn_url = format!("turn:127.0.0.1:{port}?transport={transport}");
                let r = watch_through_turn(ctx, &demo, 30, transport)?;
                let frames = r["frames_decoded"].as_u64().unwrap_or(0);
                ensure!(
                    frames >= MIN_FRAMES,
                    "the viewer decoded {frames} frames through TURN over {transport} (want {MIN_FRAMES}): {r}"
                );
                ensure!(
                    r["local_candidate_type"] == "relay" && r["relay_protocol"] == transport,
                    "the selected pair is not through TURN over {transport}: {r}"
                );
                ensure!(
                    r["local_candidate_url"] == turn_url.as_str(),
                    "the relayed candidate is not from {turn_url}: {r}"
                );
                ensure!(
                    r["remote_candidate_port"]
                        .as_u64()
                        .is_some_and(|p| shard_ports.contains(&p)),
                    "the pair's far end is not one of the relay's media ports {shard_ports:?}: {r}"
                );
                let announced = r["answer_link"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                    .unwrap_or_default();
                let want_link = format!(
                    "<{turn_url}>; rel=\"ice-server\"; username=\"{}\"; credential=\"{}\"",
                    ice.username, ice.credential
                );
                ensure!(
                    announced.iter().any(|l| l.starts_with(&want_link)),
                    "the WHEP answer's Link headers do not announce {want_link}: {announced:?}"
                );
            }
            // The viewer page learns the same servers before its first offer, from the route
            // answer (a page whose network blocks UDP must not wait for a failed connection).
            let http = hallcast_tests::http::Http::new(&demo.info.http_base)?;
            let route = http
                .get(
                    &format!("/api/v1/conferences/{}/route", demo.info.conference),
                    Some(&demo.info.viewer_token),
                )?
                .json()?;
            let offered = &route["ice_servers"];
            ensure!(
                offered.as_array().is_some_and(|a| a.iter().any(|s| {
                    s["urls"] == serde_json::json!(urls)
                        && s["username"] == ice.username.as_str()
                        && s["credential"] == ice.credential.as_str()
                })),
                "the route answer does not hand the page the TURN server {urls:?} with its \
                 credentials: {route}"
            );
            let log = coturn.log_text();
            for want in [
                format!("username=<{}>", ice.username),
                "ALLOCATE processed, success".to_string(),
                "peer 127.0.0.1 lifetime updated".to_string(),
                "CREATE_PERMISSION processed, success".to_string(),
                // The TCP viewer's connection to coturn.
                "tcp or tls connected to: 127.0.0.1:".to_string(),
            ] {
                ensure!(log.contains(&want), "coturn's log has no {want:?}");
            }
            drop(coturn);

            // 2. The shipped peer rules alone (loopback allowed, but 127.0.0.1 not a listed relay):
            // the permission is refused and nothing plays.
            let coturn = start_coturn(ctx, "denied", port, &["allow-loopback-peers"])?;
            let r = watch_through_turn(ctx, &demo, 8, "udp")?;
            let frames = r["frames_decoded"].as_u64().unwrap_or(0);
            ensure!(
                frames == 0 && r["local_candidate_type"].is_null(),
                "a peer outside allowed-peer-ip was reached through TURN: {r}"
            );
            let log = coturn.log_text();
            ensure!(
                log.contains("CREATE_PERMISSION processed, error 403: Forbidden IP"),
                "coturn did not refuse the relay's address as a peer"
            );
            Ok(())
        },
    );
}

/// How long the viewer page gives a connection that does not come up before it drops it and
/// tries again: web/watch.js's `CONNECT_TIMEOUT_MS` (15 s), read from the page's source. A page
/// that plays sooner, on its first and only connection, did not wait for a failed UDP attempt.
fn page_connect_timeout_ms() -> Result<f64> {
    let js = fs::read_to_string(repo_root().join("web/watch.js"))?;
    js.lines()
        .find_map(|l| l.trim().strip_prefix("const CONNECT_TIMEOUT_MS = "))
        .and_then(|v| v.trim_end_matches(';').trim().parse().ok())
        .context("web/watch.js has no `const CONNECT_TIMEOUT_MS = N;`")
}

/// `ice_servers=[...]` for `--set`: the shipped server's credentials with `urls`.
fn ice_servers_set(urls: &[String], ice: &IceServer) -> String {
    format!(
        "ice_servers=[{{urls=[{}],username=\"{}\",credential=\"{}\"}}]",
        urls.iter()
            .map(|u| format!("\"{u}\""))
            .collect::<Vec<_>>()
            .join(","),
        ice.username,
        ice.credential
    )
}

/// The point's network lets no UDP through, either way (DNS included: every URL in these
/// tests is an address): nftables table `udpblock`, chains `in` and `out`, counted drops.
fn block_udp(ns: &str) -> Result<()> {
    nft(ns, &["add", "table", "inet", "udpblock"])?;
    for (chain, hook) in [("in", "input"), ("out", "output")] {
        nft(
            ns,
            &[
                "add",
                "chain",
                "inet",
                "udpblock",
                chain,
                &format!("{{ type filter hook {hook} priority 0; }}"),
            ],
        )?;
        nft(
            ns,
            &[
                "add", "rule", "inet", "udpblock", chain, "meta", "l4proto", "udp", "counter",
                "drop",
            ],
        )?;
    }
    Ok(())
}

/// The page's selected pair ends at one of the relay's media ports, on its first and only
/// connection and offer, its first frame before its own connect timeout (no failed attempt
/// waited out first).
fn reached_relay_at_once(
    page: &Value,
    relay_ip: &str,
    ports: &[u64],
    connect_timeout_ms: f64,
) -> Result<()> {
    let pair = &page["selected_pair"];
    ensure!(
        pair["remote_candidate_address"] == relay_ip
            && pair["remote_candidate_port"]
                .as_u64()
                .is_some_and(|p| ports.contains(&p)),
        "the pair's far end is not one of the relay's media ports {relay_ip}:{ports:?}: {pair}"
    );
    ensure!(
        page["n_peer_connections"] == 1 && page["n_offers_posted"] == 1,
        "the page needed more than one connection (a failed attempt first?): {page}"
    );
    let first_frame_ms = page["first_frame_ms"].as_f64().unwrap_or(f64::INFINITY);
    ensure!(
        first_frame_ms < connect_timeout_ms,
        "the page's first frame came {first_frame_ms} ms after it loaded, not within its \
         connect timeout ({connect_timeout_ms} ms): it waited for a failed attempt"
    );
    Ok(())
}

/// The relay's media ports from the demo's info file.
fn shard_ports(demo: &Demo) -> Result<Vec<u64>> {
    Ok(demo.info.raw["media_udp_shards"]
        .as_array()
        .context("the info file has no media_udp_shards")?
        .iter()
        .filter_map(|a| a.as_str()?.rsplit(':').next()?.parse().ok())
        .collect())
}

#[test]
fn a_viewer_whose_udp_is_blocked_plays_the_real_page_through_turn_over_tcp() {
    run(
        "a_viewer_whose_udp_is_blocked_plays_the_real_page_through_turn_over_tcp",
        Weight::Heavy,
        |ctx| {
            // Hosts on one backbone (tests/src/tree.rs): the central with TURN announced, a
            // second central without, coturn on a host of its own, and the point.
            let mut tree = Tree::create()?;
            let relay = tree.relay_host("central")?;
            let plain = tree.relay_host("central-no-turn")?;
            let turn = tree.backbone_host("turn")?;
            let point = tree.backbone_host("point")?;

            block_udp(&point.ns)?;

            // coturn: the shipped conf on the turn host, the central's address its one allowed
            // peer (as in production: allowed-peer-ip lists the relays' media.public_ips). No
            // allow-loopback-peers: every peer here is a real address.
            let connect_timeout_ms = page_connect_timeout_ms()?;
            let ice = shipped_ice_server()?;
            let port: u16 = 3478;
            let urls: Vec<String> = ice
                .urls
                .iter()
                .map(|u| {
                    let (_, query) = u.split_once('?').unwrap_or((u, ""));
                    format!("turn:{}:{port}?{query}", turn.ip)
                })
                .collect();
            let tcp_url = format!("turn:{}:{port}?transport=tcp", turn.ip);
            ensure!(
                urls.contains(&tcp_url),
                "ice-servers.toml has no TURN-over-TCP URL: {urls:?}"
            );
            let coturn = start_coturn_at(
                ctx,
                &TurnHost {
                    netns: Some(&turn.ns),
                    ip: &turn.ip,
                },
                "netns",
                port,
                &[&format!("allowed-peer-ip={}", relay.ip)],
            )?;

            // 1. The real viewer page, no forced policy: it learns TURN from the route answer
            // before its first offer and plays through TURN over TCP.
            // (ICE-TCP off: this is about TURN; the relay's own TCP candidate would win.)
            let mut opts = central_options(&relay);
            opts.set = vec![ice_servers_set(&urls, &ice), "media.tcp=false".into()];
            let mut demo = Demo::start(ctx, opts)?;
            let shard_ports = shard_ports(&demo)?;
            let mut viewer =
                pages_in(ctx, &point, &demo.info.viewer_url, 1, 45, MIN_FRAMES as u32)?;
            let result = viewer.result(Duration::from_secs(90))?;
            demo.ensure_running()?;
            let pages = results::pages(&result)?;
            let page = &result["pages"][0];
            eprintln!("UDP-blocked page through TURN: {page}");
            ensure_pages_playing(&pages, MIN_FRAMES)?;
            let pair = &page["selected_pair"];
            ensure!(
                pair["local_candidate_type"] == "relay" && pair["relay_protocol"] == "tcp",
                "the page's selected pair is not a relay candidate over TCP: {pair}"
            );
            ensure!(
                pair["local_candidate_url"] == tcp_url.as_str(),
                "the relayed candidate is not from {tcp_url}: {pair}"
            );
            reached_relay_at_once(page, &relay.ip, &shard_ports, connect_timeout_ms)?;
            let log = coturn.log_text();
            for want in [
                format!("tcp or tls connected to: {}:", point.ip),
                format!("peer {} lifetime updated", relay.ip),
                "CREATE_PERMISSION processed, success".to_string(),
            ] {
                ensure!(log.contains(&want), "coturn's log has no {want:?}");
            }
            drop(demo);

            // 2. The negative control: the same page in the same namespace, a relay that
            // announces no TURN server and no ICE-TCP candidate. Nothing plays: the drop rule
            // holds (and is what a_viewer_whose_udp_is_blocked_plays_the_real_page_over_ice_tcp
            // gets past).
            let mut opts = central_options(&plain);
            opts.set = vec!["media.tcp=false".into()];
            let demo = Demo::start(ctx, opts)?;
            let mut viewer = pages_in(
                ctx,
                &point,
                &demo.info.viewer_url,
                1,
                (connect_timeout_ms / 1000.0) as u32 + 5,
                MIN_FRAMES as u32,
            )?;
            let result = viewer.result(Duration::from_secs(90))?;
            let page = &result["pages"][0];
            eprintln!("UDP-blocked page without TURN: {page}");
            ensure!(
                page["n_offers_posted"].as_u64().unwrap_or(0) >= 1,
                "the page without TURN never offered (the control proves nothing): {page}"
            );
            ensure!(
                page["frames_decoded"] == 0 && page["selected_pair"].is_null(),
                "a page whose UDP is dropped played without TURN (the drop rule does not hold): {page}"
            );
            // The rule did drop the pages' UDP (their host candidates' checks, TURN over UDP).
            let listed = Command::new("ip")
                .args([
                    "netns", "exec", &point.ns, "nft", "list", "table", "inet", "udpblock",
                ])
                .output()?;
            let listed = String::from_utf8_lossy(&listed.stdout).to_string();
            eprintln!("{listed}");
            let dropped_out: u64 = listed
                .split("chain out")
                .nth(1)
                .and_then(|c| c.split("counter packets ").nth(1))
                .and_then(|c| c.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .context("no packet counter in the point's `out` chain")?;
            ensure!(
                dropped_out > 0,
                "the point's drop rule saw no outgoing UDP: the pages never tried it\n{listed}"
            );
            Ok(())
        },
    );
}

/// ICE-TCP (issue 13, B.4): a point whose network drops all UDP, a central with no TURN server
/// and its default `media.tcp = true`. The real viewer page in Chromium connects out to the
/// relay's passive TCP candidate by itself and decodes video and audio, on its first and only
/// connection, its first frame within its connect timeout. (The control — the same network, a
/// relay with `media.tcp = false` and no TURN, nothing plays — is step 2 of
/// `a_viewer_whose_udp_is_blocked_plays_the_real_page_through_turn_over_tcp`.)
#[test]
fn a_viewer_whose_udp_is_blocked_plays_the_real_page_over_ice_tcp() {
    run(
        "a_viewer_whose_udp_is_blocked_plays_the_real_page_over_ice_tcp",
        Weight::Heavy,
        |ctx| {
            let mut tree = Tree::create()?;
            let relay = tree.relay_host("central")?;
            let point = tree.backbone_host("point")?;
            block_udp(&point.ns)?;
            let connect_timeout_ms = page_connect_timeout_ms()?;
            let mut demo = Demo::start(ctx, central_options(&relay))?;
            let ports = shard_ports(&demo)?;
            let mut viewer =
                pages_in(ctx, &point, &demo.info.viewer_url, 1, 45, MIN_FRAMES as u32)?;
            let result = viewer.result(Duration::from_secs(90))?;
            demo.ensure_running()?;
            let pages = results::pages(&result)?;
            let page = &result["pages"][0];
            eprintln!("UDP-blocked page over ICE-TCP: {page}");
            ensure_pages_playing(&pages, MIN_FRAMES)?;
            let pair = &page["selected_pair"];
            ensure!(
                pair["local_protocol"] == "tcp" && pair["local_candidate_type"] != "relay",
                "the page's selected pair is not a direct TCP pair: {pair}"
            );
            reached_relay_at_once(page, &relay.ip, &ports, connect_timeout_ms)?;
            Ok(())
        },
    );
}
