//! The documented server setups connect a viewer on another host: the media socket bound to
//! 0.0.0.0 with `--public-ip`, and a relay behind 1:1 NAT (cloud VMs) announcing its public
//! address. In both, datagrams reach the socket at an address other than the one announced
//! (0.0.0.0 is no destination; the NAT delivers to the private address), and ICE completes
//! only if the relay tells str0m the announced one. And on a host with several addresses,
//! only if replies leave from the address the viewer's datagrams arrived at, not from the
//! one the kernel would pick.

use std::time::Duration;

use anyhow::{Result, ensure};
use hallcast_tests::netns::{NetNs, NsPair, ip_in, nft, one_to_one_nat, route_source};
use hallcast_tests::results::{self, PlayResult};
use hallcast_tests::{Client, ClientKind, Ctx, Demo, DemoOptions, Info, Weight, run};

use crate::util::{AIORTC_UNTIL_AUDIO_PACKETS, strings};

const MIN_FRAMES: u64 = 60;
/// The relay's "public" address behind NAT: TEST-NET-1, a route only between the test's
/// namespaces.
const PUBLIC_IP: &str = "192.0.2.10";
/// A second address of the relay's host, besides its subnet's (TEST-NET-1, as an additional
/// IP a provider routes to the host): a route only between the test's namespaces.
const SECOND_IP: &str = "192.0.2.20";
/// Ports inside a namespace of our own are all free.
const NS_HTTP_PORT: u16 = 8080;
const NS_MEDIA_PORT: u16 = 8443;

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
        "--until-audio",
        &AIORTC_UNTIL_AUDIO_PACKETS.to_string(),
        "--wait-live",
        "--progress",
    ]);
    Client::start_in_netns(ctx, ClientKind::Aiortc, "whep_play.py", &args, netns)
}

/// Frames decoded and audio received: ICE, DTLS and media all went through.
fn check_played(played: &PlayResult, what: &str) -> Result<()> {
    played.ensure_played(what, MIN_FRAMES)
}

/// Checks the relay's media socket is bound as the test set it up (`media` is the expected
/// address, or its prefix ending in ':' when the port was left to the relay), then an aiortc
/// viewer inside `viewer_ns` (ICE host candidate `viewer_ip`) must play video and audio.
fn plays_from_another_host(
    ctx: &Ctx,
    demo: &mut Demo,
    media: &str,
    viewer_ns: &str,
    viewer_ip: &str,
    what: &str,
) -> Result<()> {
    let bound = demo.info.raw["media_udp"].as_str().unwrap_or("");
    let as_expected = if media.ends_with(':') {
        bound.starts_with(media)
    } else {
        bound == media
    };
    ensure!(
        as_expected,
        "the relay's media socket is bound to {bound:?}, expected {media}"
    );
    let mut player = player_in_netns(ctx, &demo.info, viewer_ns, viewer_ip)?;
    let played: PlayResult =
        results::parse("aiortc player", &player.result(Duration::from_secs(90))?)?;
    demo.ensure_running()?;
    check_played(&played, what)
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
            plays_from_another_host(
                ctx,
                &mut demo,
                "0.0.0.0:",
                &viewer_host.name,
                &viewer_host.ns_ip,
                "a viewer on another host, relay media on 0.0.0.0",
            )
        },
    );
}

/// The host `netns` cannot reach `ip`: an nftables output rule drops what it sends there.
fn drop_output_to(netns: &str, ip: &str) -> Result<()> {
    nft(netns, &["add", "table", "ip", "f"])?;
    nft(
        netns,
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
        netns,
        &["add", "rule", "ip", "f", "out", "ip", "daddr", ip, "drop"],
    )
}

/// The relay on its own host (namespace) whose interface has two addresses: the subnet's
/// (`primary`), which the kernel picks as the source towards the viewer, and `SECOND_IP`, the
/// one announced, with media on `0.0.0.0:PORT`. The viewer reaches the relay only at
/// `SECOND_IP` (its traffic to `primary` is dropped), and its ICE agent takes a STUN response
/// only from the address its request went to: replies leaving from `primary` (the kernel's
/// choice for a socket bound to 0.0.0.0) leave ICE unfinished.
#[test]
fn relay_bound_to_unspecified_address_replies_from_the_announced_address() {
    run(
        "relay_bound_to_unspecified_address_replies_from_the_announced_address",
        Weight::Heavy,
        |ctx| -> Result<()> {
            let hosts = NsPair::create()?;
            let (relay_ns, viewer_ns) = (&hosts.a, &hosts.b);
            let primary = &hosts.a_ip;
            ip_in(
                relay_ns,
                &[
                    "addr",
                    "add",
                    &format!("{SECOND_IP}/32"),
                    "dev",
                    &hosts.a_if,
                ],
            )?;
            ip_in(
                viewer_ns,
                &["route", "add", &format!("{SECOND_IP}/32"), "via", primary],
            )?;
            drop_output_to(viewer_ns, primary)?;
            // What makes the setup: towards the viewer the kernel would reply from the
            // primary address, not the announced one.
            let kernel_source = route_source(relay_ns, &hosts.b_ip)?;
            ensure!(
                kernel_source == *primary,
                "towards the viewer the relay's host picks {kernel_source} as source, expected \
                 the primary address {primary} (the test needs it to differ from {SECOND_IP})"
            );

            let mut demo = Demo::start(
                ctx,
                DemoOptions {
                    netns: Some(relay_ns.clone()),
                    ip: Some(SECOND_IP.into()),
                    http_port: Some(NS_HTTP_PORT),
                    media_addr: Some(format!("0.0.0.0:{NS_MEDIA_PORT}")),
                    public_ips: vec![SECOND_IP.into()],
                    ..Default::default()
                },
            )?;
            plays_from_another_host(
                ctx,
                &mut demo,
                &format!("0.0.0.0:{NS_MEDIA_PORT}"),
                viewer_ns,
                &hosts.b_ip,
                "a viewer of a relay on 0.0.0.0 announcing its host's second address",
            )
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
        |ctx| behind_one_to_one_nat(ctx, false),
    );
}

/// The same with media on `0.0.0.0:PORT`: replies name their source, which must be the private
/// address the NAT delivered to (the announced `PUBLIC_IP` is none of the host's: sending from
/// it fails).
#[test]
fn relay_behind_one_to_one_nat_bound_to_unspecified_address_serves_another_host() {
    run(
        "relay_behind_one_to_one_nat_bound_to_unspecified_address_serves_another_host",
        Weight::Heavy,
        |ctx| behind_one_to_one_nat(ctx, true),
    );
}

fn behind_one_to_one_nat(ctx: &Ctx, media_on_any: bool) -> Result<()> {
    let hosts = NsPair::create()?;
    let (relay_ns, viewer_ns) = (&hosts.a, &hosts.b);
    let private = &hosts.a_ip;
    one_to_one_nat(relay_ns, &hosts.a_if, PUBLIC_IP, private)?;
    ip_in(
        viewer_ns,
        &["route", "add", &format!("{PUBLIC_IP}/32"), "via", private],
    )?;
    drop_output_to(viewer_ns, private)?;

    let media_bind = if media_on_any { "0.0.0.0" } else { private };
    let mut demo = Demo::start(
        ctx,
        DemoOptions {
            netns: Some(relay_ns.clone()),
            ip: Some(private.clone()),
            http_port: Some(NS_HTTP_PORT),
            media_addr: Some(format!("{media_bind}:{NS_MEDIA_PORT}")),
            public_ips: vec![PUBLIC_IP.into()],
            public_url: Some(format!("http://{PUBLIC_IP}:{NS_HTTP_PORT}")),
            ..Default::default()
        },
    )?;
    ensure!(
        demo.info.whep_url.contains(PUBLIC_IP),
        "the WHEP URL {} does not use the public address",
        demo.info.whep_url
    );
    plays_from_another_host(
        ctx,
        &mut demo,
        &format!("{media_bind}:{NS_MEDIA_PORT}"),
        viewer_ns,
        &hosts.b_ip,
        &format!("a viewer reaching the relay (media on {media_bind}) through 1:1 NAT"),
    )
}
