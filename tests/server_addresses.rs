//! The documented server setups connect a viewer on another host: the media socket bound to
//! 0.0.0.0 with `--public-ip`, and a relay behind 1:1 NAT (cloud VMs) announcing its public
//! address. In both, datagrams reach the socket at an address other than the one announced
//! (0.0.0.0 is no destination; the NAT delivers to the private address), and ICE completes
//! only if the relay tells str0m the announced one.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use hallcast_tests::netns::{NetNs, NsPair, ip_in, nft, one_to_one_nat};
use hallcast_tests::results::{self, PlayResult};
use hallcast_tests::{Client, ClientKind, Ctx, Demo, DemoOptions, Info, Weight, run};

use crate::util::strings;

const MIN_FRAMES: u64 = 60;
/// The relay's "public" address behind NAT: TEST-NET-1, a route only between the test's
/// namespaces.
const PUBLIC_IP: &str = "192.0.2.10";
/// Ports inside a namespace of our own are all free.
const NAT_HTTP_PORT: u16 = 8080;
const NAT_MEDIA_PORT: u16 = 8443;

/// aiortc plays over WHEP from inside `netns`, its one ICE host candidate on `host_address`.
fn player_in_netns(ctx: &Ctx, info: &Info, netns: &str, host_address: &str) -> Result<Client> {
    let args = strings(&[
        "--host-address",
        host_address,
        "--url",
        &info.whep_url,
        "--token",
        &info.viewer_token,
        "--duration",
        "45",
        "--until-frames",
        &MIN_FRAMES.to_string(),
        "--wait-live",
        "--progress",
    ]);
    Client::start_in_netns(ctx, ClientKind::Aiortc, "whep_play.py", &args, netns)
}

/// Frames decoded and audio received: ICE, DTLS and media all went through.
fn check_played(played: &PlayResult, what: &str) -> Result<()> {
    if played.status != Some(201) {
        bail!(
            "{what}: WHEP POST answered {:?} with body {:?}, expected 201",
            played.status,
            played.body
        );
    }
    ensure!(
        played.frames_decoded >= MIN_FRAMES && played.frame_width > 0,
        "{what}: decoded {} video frames (width {}), expected at least {MIN_FRAMES} \
         (ICE never completing leaves 0; result: {played:?})",
        played.frames_decoded,
        played.frame_width
    );
    ensure!(
        played.audio_packets_received > 0,
        "{what}: received no audio packets (result: {played:?})"
    );
    Ok(())
}

/// The relay in this host's namespace, media on `0.0.0.0:0` announcing the veth address; the
/// built-in source publishes to it here, an aiortc viewer plays from a second host.
#[test]
fn relay_bound_to_unspecified_address_serves_another_host() {
    run(
        "relay_bound_to_unspecified_address_serves_another_host",
        Weight::Heavy,
        |ctx| -> Result<()> {
            let viewer_host = NetNs::create()?;
            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    ip: Some(viewer_host.host_ip.clone()),
                    media_addr: Some("0.0.0.0:0".into()),
                    public_ips: vec![viewer_host.host_ip.clone()],
                    ..Default::default()
                },
            )?;
            let media = demo.info.raw["media_udp"].as_str().unwrap_or("");
            ensure!(
                media.starts_with("0.0.0.0:"),
                "the relay's media socket is bound to {media:?}, expected 0.0.0.0:PORT"
            );
            let mut player =
                player_in_netns(ctx, &demo.info, &viewer_host.name, &viewer_host.ns_ip)?;
            let played: PlayResult =
                results::parse("aiortc player", &player.result(Duration::from_secs(90))?)?;
            demo.ensure_running()?;
            check_played(&played, "a viewer on another host, relay media on 0.0.0.0")
        },
    );
}

/// The relay on its own host (namespace) at a private address, behind 1:1 NAT from
/// `PUBLIC_IP` (nftables DNAT in the relay's namespace), announcing `PUBLIC_IP`. The viewer's
/// host reaches the relay only through the public address: its traffic to the private one
/// is dropped.
#[test]
fn relay_behind_one_to_one_nat_serves_another_host() {
    run(
        "relay_behind_one_to_one_nat_serves_another_host",
        Weight::Heavy,
        |ctx| -> Result<()> {
            let hosts = NsPair::create()?;
            let (relay_ns, viewer_ns) = (&hosts.a, &hosts.b);
            let private = &hosts.a_ip;
            one_to_one_nat(relay_ns, &hosts.a_if, PUBLIC_IP, private)?;
            ip_in(
                viewer_ns,
                &["route", "add", &format!("{PUBLIC_IP}/32"), "via", private],
            )?;
            nft(viewer_ns, &["add", "table", "ip", "f"])?;
            nft(
                viewer_ns,
                &[
                    "add",
                    "chain",
                    "ip",
                    "f",
                    "out",
                    "{ type filter hook output priority 0; }",
                ],
            )?;
            nft(
                viewer_ns,
                &[
                    "add", "rule", "ip", "f", "out", "ip", "daddr", private, "drop",
                ],
            )?;

            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    netns: Some(relay_ns.clone()),
                    ip: Some(private.clone()),
                    http_port: Some(NAT_HTTP_PORT),
                    media_port: Some(NAT_MEDIA_PORT),
                    public_ips: vec![PUBLIC_IP.into()],
                    public_url: Some(format!("http://{PUBLIC_IP}:{NAT_HTTP_PORT}")),
                    ..Default::default()
                },
            )?;
            let media = demo.info.raw["media_udp"].as_str().unwrap_or("");
            ensure!(
                media == format!("{private}:{NAT_MEDIA_PORT}"),
                "the relay's media socket is bound to {media:?}, expected the private address"
            );
            ensure!(
                demo.info.whep_url.contains(PUBLIC_IP),
                "the WHEP URL {} does not use the public address",
                demo.info.whep_url
            );
            let mut player = player_in_netns(ctx, &demo.info, viewer_ns, &hosts.b_ip)?;
            let played: PlayResult =
                results::parse("aiortc player", &player.result(Duration::from_secs(90))?)?;
            demo.ensure_running()?;
            check_played(&played, "a viewer reaching the relay through 1:1 NAT")
        },
    );
}
