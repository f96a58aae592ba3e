//! A host's downlink shaped to a bandwidth, as a viewer behind a weak connection (issue 11).
//!
//! The kernel here has the `tbf` and `htb` qdiscs, not `netem` (docs: TESTING.md). A qdisc shapes
//! what an interface *sends*, so a host's downlink (relay → viewer) is shaped at the far end of
//! its link: [`crate::tree::Host::toward`], the relay's end of a point link (or the bridge port
//! of a backbone host). The host's own uplink (its RTCP, its TWCC feedback) stays unshaped.
//!
//! `tc qdisc replace dev DEV root tbf rate Rkbit burst B latency L`:
//! - `burst` ([`BURST_BYTES`]): the token bucket's depth, what may leave at line rate after a
//!   quiet moment — a few full-size packets, as an access link's modem, not a whole keyframe;
//! - `latency` ([`LATENCY_MS`]): how long a packet may wait in the queue before tbf drops
//!   instead (its queue limit is rate × latency + burst): a home router's buffer. A sender
//!   above the rate first sees the delay grow (what a delay-based estimate reacts to), then
//!   losses.
//!
//! The qdisc lives in the namespace and goes with it; [`unshape`] removes it earlier.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::prereq::python_bin;
use crate::proc::Proc;
use crate::tree::{Host, LinkEnd};

/// The token bucket's depth: 8 KB, five or six full-size packets.
pub const BURST_BYTES: u32 = 8 * 1024;
/// The longest a packet may queue before it is dropped.
pub const LATENCY_MS: u32 = 200;

/// `tc ARGS` inside namespace `ns`; its stdout, or an error with what it printed.
fn tc(ns: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "tc"])
        .args(args)
        .output()
        .context("cannot run `ip netns exec NS tc` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "`tc {}` in {ns} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Limits what reaches `host` to `kbit` kbit/s (tbf on the egress of the far end of its link);
/// a second call changes the rate in place.
pub fn shape(host: &Host, kbit: u32) -> Result<()> {
    shape_end(&host.toward, kbit)
        .with_context(|| format!("shaping the link toward {} to {kbit} kbit/s", host.label))
}

/// [`shape`] on a given interface.
pub fn shape_end(end: &LinkEnd, kbit: u32) -> Result<()> {
    tc(
        &end.ns,
        &[
            "qdisc",
            "replace",
            "dev",
            &end.dev,
            "root",
            "tbf",
            "rate",
            &format!("{kbit}kbit"),
            "burst",
            &BURST_BYTES.to_string(),
            "latency",
            &format!("{LATENCY_MS}ms"),
        ],
    )?;
    Ok(())
}

/// Removes the shaping toward `host` (nothing to do if there is none).
pub fn unshape(host: &Host) -> Result<()> {
    unshape_end(&host.toward).with_context(|| format!("removing the shaping toward {}", host.label))
}

/// [`unshape`] on a given interface.
pub fn unshape_end(end: &LinkEnd) -> Result<()> {
    if stats_end(end)?.is_none() {
        return Ok(());
    }
    tc(&end.ns, &["qdisc", "del", "dev", &end.dev, "root"])?;
    Ok(())
}

/// What the shaper toward a host did since it was installed (`tc -s qdisc show`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShaperStats {
    /// The rate it holds to, in bit/s.
    pub rate_bps: u64,
    pub sent_bytes: u64,
    pub sent_packets: u64,
    /// Packets dropped because the queue was full (they would have waited beyond the latency).
    pub dropped: u64,
    /// Times a packet had to wait for tokens.
    pub overlimits: u64,
}

/// The shaper's counters toward `host`; `None`: its link is not shaped.
pub fn stats(host: &Host) -> Result<Option<ShaperStats>> {
    stats_end(&host.toward)
}

/// [`stats`] on a given interface.
pub fn stats_end(end: &LinkEnd) -> Result<Option<ShaperStats>> {
    let text = tc(&end.ns, &["-s", "qdisc", "show", "dev", &end.dev, "root"])?;
    Ok(parse_tbf_stats(&text))
}

/// Reads `tc -s qdisc show` of a root tbf: `qdisc tbf 8001: root refcnt 2 rate 400Kbit burst
/// 8Kb lat 200ms` / ` Sent 1234 bytes 12 pkt (dropped 3, overlimits 40 requeues 0)`.
fn parse_tbf_stats(text: &str) -> Option<ShaperStats> {
    let first = text.lines().next()?;
    let words: Vec<&str> = first.split_whitespace().collect();
    if words.get(1) != Some(&"tbf") {
        return None;
    }
    let after = |ws: &[&str], key: &str| -> Option<String> {
        ws.windows(2)
            .find(|w| w[0] == key)
            .map(|w| w[1].trim_end_matches(',').to_string())
    };
    let rate_bps = after(&words, "rate").and_then(|r| parse_rate(&r))?;
    let all: Vec<&str> = text.split_whitespace().collect();
    let num = |key: &str| -> u64 {
        after(&all, key)
            .map(|v| v.trim_start_matches('(').to_string())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let sent_bytes = num("Sent");
    let sent_packets = all
        .windows(2)
        .find(|w| w[1] == "pkt")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0);
    Some(ShaperStats {
        rate_bps,
        sent_bytes,
        sent_packets,
        dropped: num("(dropped"),
        overlimits: num("overlimits"),
    })
}

/// `400Kbit`, `2Mbit`, `800bit` → bit/s.
fn parse_rate(r: &str) -> Option<u64> {
    let r = r.to_ascii_lowercase();
    let digits: String = r
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let value: f64 = digits.parse().ok()?;
    let unit = &r[digits.len()..];
    let factor = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return None,
    };
    Some((value * factor).round() as u64)
}

/// Counts the UDP bytes that arrive on a port until 1.5 s pass without any (or 30 s in all):
/// prints `{"bytes": N, "first": T, "last": T}` (monotonic seconds of the first and last).
const UDP_SINK: &str = r#"
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
s.settimeout(1.5)
n, first, last, start = 0, None, None, time.monotonic()
while time.monotonic() - start < 30:
    try:
        data = s.recv(65535)
    except socket.timeout:
        if first is not None:
            break
        continue
    now = time.monotonic()
    first = now if first is None else first
    last = now
    n += len(data)
print(json.dumps({"bytes": n, "first": first, "last": last}), flush=True)
"#;

/// Sends 1200-byte datagrams to ADDR:PORT at RATE kbit/s for SECS seconds, paced.
const UDP_SOURCE: &str = r#"
import socket, sys, time
addr, port, kbit, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * 1200
gap = len(payload) * 8 / (kbit * 1000)
start = time.monotonic()
k = 0
while time.monotonic() - start < secs:
    try:
        s.sendto(payload, (addr, port))
    except OSError:
        pass
    k += 1
    wait = start + k * gap - time.monotonic()
    if wait > 0:
        time.sleep(wait)
"#;

/// The UDP throughput from `from` to `to` (kbit/s received, from the first datagram to the
/// last) while `from` sends `kbit` kbit/s for `secs` seconds: a check that a shaped link holds
/// to its rate, made with nothing but Python's sockets in the two namespaces.
pub fn udp_throughput(from: &Host, to: &Host, kbit: u32, secs: f64) -> Result<f64> {
    use std::io::{BufRead, BufReader};
    let python = python_bin()?;
    let port = "47999";
    let mut sink_cmd = Command::new("ip");
    sink_cmd
        .args(["netns", "exec", &to.ns])
        .arg(&python)
        .args(["-c", UDP_SINK, &to.ip, port])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut sink = Proc::spawn(&mut sink_cmd, true)?;
    let mut lines = BufReader::new(sink.take_stdout().context("sink stdout")?).lines();
    let ready = lines.next().transpose()?.unwrap_or_default();
    ensure!(
        ready == "ready",
        "the UDP sink in {} did not start: {ready:?}",
        to.ns
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &from.ns])
        .arg(&python)
        .args([
            "-c",
            UDP_SOURCE,
            &to.ip,
            port,
            &kbit.to_string(),
            &secs.to_string(),
        ])
        .output()
        .context("cannot run the UDP source")?;
    ensure!(
        out.status.success(),
        "the UDP source in {} failed: {}",
        from.ns,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let result = lines.next().transpose()?.unwrap_or_default();
    let status = sink.wait_timeout(Duration::from_secs(35))?;
    ensure!(status.is_some(), "the UDP sink did not end");
    let v: Value = serde_json::from_str(&result)
        .with_context(|| format!("the UDP sink printed {result:?}"))?;
    let bytes = v["bytes"].as_f64().unwrap_or(0.0);
    let (first, last) = (v["first"].as_f64(), v["last"].as_f64());
    match (first, last) {
        (Some(f), Some(l)) if l > f => Ok(bytes * 8.0 / 1000.0 / (l - f)),
        _ => bail!(
            "no UDP datagram from {} reached {}: {v}",
            from.label,
            to.label
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tbf_counters() {
        let text = "qdisc tbf 8001: root refcnt 2 rate 400Kbit burst 8Kb lat 200ms \n \
                    Sent 153240 bytes 131 pkt (dropped 1093, overlimits 2044 requeues 0) \n \
                    backlog 9120b 8p requeues 0\n";
        assert_eq!(
            parse_tbf_stats(text),
            Some(ShaperStats {
                rate_bps: 400_000,
                sent_bytes: 153_240,
                sent_packets: 131,
                dropped: 1093,
                overlimits: 2044,
            })
        );
        assert_eq!(
            parse_tbf_stats("qdisc noqueue 0: root refcnt 2 \n Sent 0 bytes 0 pkt\n"),
            None
        );
        assert_eq!(parse_tbf_stats(""), None);
        assert_eq!(parse_rate("2Mbit"), Some(2_000_000));
    }
}
