//! A second network host for a test: a network namespace joined to this one by a veth pair,
//! with addresses the test picks. Its link can be cut and restored to simulate a lost network.
//! Needs root and iproute2 (`ip`). Only traffic between this host and the namespace flows on it.
//! [`NsPair`]: two hosts joined only to each other; [`one_to_one_nat`]: a cloud VM's 1:1 NAT
//! inside a namespace (nftables).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

use crate::ctx::Ctx;
use crate::prereq::chromium_path;

static N_NETNS: AtomicU32 = AtomicU32::new(0);

/// A namespace `name` whose interface has `ns_ip`, reached from here at `host_ip`; deleted on drop.
pub struct NetNs {
    pub name: String,
    /// This side's address (bind the relay here).
    pub host_ip: String,
    /// The namespace's address.
    pub ns_ip: String,
    host_if: String,
    ns_if: String,
}

/// `ip ARGS` (iproute2), failing with what it printed.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2): scripts/install-test-deps.sh installs it")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {} (network namespaces need root and iproute2)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `ip netns add NAME`, the namespace IPv4 only ([`ipv4_only`]).
pub(crate) fn add_netns(name: &str) -> Result<()> {
    ip(&["netns", "add", name])?;
    ipv4_only(name)
}

/// Turns IPv6 off in namespace `ns` (before its links come up; every test address is IPv4).
/// Why: an interface that comes up gets an IPv6 link-local address, usable only once duplicate
/// address detection ends a second or two later, and Chromium, launched in the namespace by
/// then, takes that as the network changing: a page navigating at that moment failed with
/// `net::ERR_NETWORK_CHANGED` (tests/adaptation.rs, 1.7 s into the run, 2026-12-08).
pub(crate) fn ipv4_only(ns: &str) -> Result<()> {
    ip(&[
        "netns",
        "exec",
        ns,
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 && \
         echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
    ])
}

impl NetNs {
    pub fn create() -> Result<NetNs> {
        let n = N_NETNS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}{n}", pid % 100_000);
        // 10.213.<subnet>.0/30: a private subnet that exists only between us and our namespace.
        let subnet = (pid % 200 + n * 7) % 250;
        let ns = NetNs {
            name: format!("hc-e2e-{tag}"),
            host_ip: format!("10.213.{subnet}.1"),
            ns_ip: format!("10.213.{subnet}.2"),
            host_if: format!("hc{tag}h"),
            ns_if: format!("hc{tag}n"),
        };
        add_netns(&ns.name)?;
        // From here on Drop removes what was made.
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.ns_if,
        ])?;
        ip(&["link", "set", &ns.ns_if, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{}/30", ns.ns_ip),
            "dev",
            &ns.ns_if,
        ])?;
        ip(&["-n", &ns.name, "link", "set", &ns.ns_if, "up"])?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Cuts the namespace off (its side of the link goes down: "Network is unreachable").
    pub fn link_down(&self) -> Result<()> {
        ip(&["-n", &self.name, "link", "set", &self.ns_if, "down"])
    }

    /// Restores the link.
    pub fn link_up(&self) -> Result<()> {
        ip(&["-n", &self.name, "link", "set", &self.ns_if, "up"])
    }

    /// A script that runs Chromium inside the namespace, for `HALLCAST_CHROMIUM`: Playwright
    /// keeps driving it over its pipe from outside.
    pub fn chromium_wrapper(&self, ctx: &Ctx) -> Result<PathBuf> {
        let chromium = chromium_path()?;
        let path = ctx.path("chromium-in-netns.sh");
        fs::write(
            &path,
            format!(
                "#!/bin/sh\nexec ip netns exec {} {} \"$@\"\n",
                self.name,
                chromium.display()
            ),
        )?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        Ok(path)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Two namespaces joined to each other by a veth pair, not to this host: two hosts on a
/// private /30 (`10.213.<subnet>.1` in `a`, `.2` in `b`). Both are deleted on drop.
pub struct NsPair {
    pub a: String,
    pub b: String,
    pub a_ip: String,
    pub b_ip: String,
    /// `a`'s interface (towards `b`).
    pub a_if: String,
    /// `b`'s interface (towards `a`).
    pub b_if: String,
}

impl NsPair {
    pub fn create() -> Result<NsPair> {
        let n = N_NETNS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}{n}", pid % 100_000);
        let subnet = (pid % 200 + n * 7) % 250;
        let pair = NsPair {
            a: format!("hc-e2e-{tag}a"),
            b: format!("hc-e2e-{tag}b"),
            a_ip: format!("10.213.{subnet}.1"),
            b_ip: format!("10.213.{subnet}.2"),
            a_if: format!("hc{tag}a"),
            b_if: format!("hc{tag}b"),
        };
        add_netns(&pair.a)?;
        // From here on Drop removes what was made.
        add_netns(&pair.b)?;
        ip(&[
            "link", "add", &pair.a_if, "type", "veth", "peer", "name", &pair.b_if,
        ])?;
        for (ns, dev, addr) in [
            (&pair.a, &pair.a_if, &pair.a_ip),
            (&pair.b, &pair.b_if, &pair.b_ip),
        ] {
            ip(&["link", "set", dev, "netns", ns])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }
}

impl Drop for NsPair {
    fn drop(&mut self) {
        // A veth still here (creation failed half-way); in a namespace it goes with it.
        let _ = ip(&["link", "del", &self.a_if]);
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

/// `ip -n NETNS ARGS`.
pub fn ip_in(netns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    ip(&all)
}

/// The source address the kernel of `netns` picks for a datagram to `dest` from a socket
/// bound to no address (`ip -n NETNS route get DEST`: its `src`).
pub fn route_source(netns: &str, dest: &str) -> Result<String> {
    let out = Command::new("ip")
        .args(["-n", netns, "route", "get", dest])
        .output()
        .context("cannot run `ip` (iproute2): scripts/install-test-deps.sh installs it")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "`ip -n {netns} route get {dest}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    if let Some(pair) = words.windows(2).find(|w| w[0] == "src") {
        return Ok(pair[1].to_string());
    }
    bail!("`ip -n {netns} route get {dest}` names no source address: {text}")
}

/// `nft ARGS` inside namespace `netns` (its tables go with the namespace).
pub fn nft(netns: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "nft"])
        .args(args)
        .output()
        .context("cannot run `ip netns exec`")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file") || err.contains("exec of \"nft\" failed") {
            bail!("`nft` is missing: scripts/install-test-deps.sh installs nftables ({err})");
        }
        bail!("`nft {}` in {netns} failed: {}", args.join(" "), err.trim());
    }
    Ok(())
}

/// Makes namespace `netns` a host behind 1:1 NAT, as a cloud VM: datagrams to `public` are
/// delivered to `private` (an address of the host), and the replies leave as from `public`
/// (connection tracking). Also for the host's own traffic to `public` (the provider's
/// "hairpin"), which goes out `dev` before the NAT turns it back.
pub fn one_to_one_nat(netns: &str, dev: &str, public: &str, private: &str) -> Result<()> {
    nft(netns, &["add", "table", "ip", "nat"])?;
    for (chain, hook) in [("pre", "prerouting"), ("out", "output")] {
        nft(
            netns,
            &[
                "add",
                "chain",
                "ip",
                "nat",
                chain,
                &format!("{{ type nat hook {hook} priority -100; }}"),
            ],
        )?;
        nft(
            netns,
            &[
                "add", "rule", "ip", "nat", chain, "ip", "daddr", public, "dnat", "to", private,
            ],
        )?;
    }
    ip_in(
        netns,
        &["route", "add", &format!("{public}/32"), "dev", dev],
    )
}
