//! `/metrics`: the Prometheus text exposition (format 0.0.4). Every series is listed in
//! docs/OBSERVABILITY.md; a test parses this output with `prometheus_client`'s parser.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hallcast_core::{Layer, PauseReason, VideoStatus};
use hallcast_rtc::transit::{TRANSIT_BUCKETS, TransitHistogram, upper_bound_ns};
use hallcast_rtc::{Role, Snapshot};

use crate::AppState;
use crate::tree::{DOWN_AFTER, NodeReport};

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let s = state.engine.stats();
    let mut out = String::with_capacity(8192);
    let counters = [
        (
            "hallcast_rx_datagrams_total",
            "UDP datagrams received on the media port",
            s.rx_datagrams.load(Relaxed),
        ),
        (
            "hallcast_rx_bytes_total",
            "Bytes received on the media port",
            s.rx_bytes.load(Relaxed),
        ),
        (
            "hallcast_tx_datagrams_total",
            "UDP datagrams sent from the media port",
            s.tx_datagrams.load(Relaxed),
        ),
        (
            "hallcast_tx_bytes_total",
            "Bytes sent from the media port",
            s.tx_bytes.load(Relaxed),
        ),
        (
            "hallcast_tx_dropped_total",
            "Datagrams dropped because the socket buffer was full",
            s.tx_dropped.load(Relaxed),
        ),
        (
            "hallcast_tx_gso_messages_total",
            "Messages that carried several datagrams to one peer with UDP GSO",
            s.tx_gso_messages.load(Relaxed),
        ),
        (
            "hallcast_tx_syscalls_total",
            "sendmmsg system calls on the media port",
            s.tx_syscalls.load(Relaxed),
        ),
        (
            "hallcast_rx_unroutable_total",
            "Datagrams matching no session (garbage, strangers)",
            s.rx_unroutable.load(Relaxed),
        ),
        (
            "hallcast_rx_media_packets_total",
            "RTP packets received from publishers",
            s.rx_media_packets.load(Relaxed),
        ),
        (
            "hallcast_forwarded_packets_total",
            "RTP packets written to subscribers",
            s.forwarded_packets.load(Relaxed),
        ),
        (
            "hallcast_gop_replays_total",
            "Joiners started from the cached GOP",
            s.gop_replays.load(Relaxed),
        ),
        (
            "hallcast_backlog_dropped_total",
            "Replayed video packets dropped because a joiner's backlog was full",
            s.backlog_dropped.load(Relaxed),
        ),
        (
            "hallcast_keyframe_requests_upstream_total",
            "Keyframe requests sent to publishers",
            s.keyframe_requests_upstream.load(Relaxed),
        ),
        (
            "hallcast_keyframe_requests_downstream_total",
            "Keyframe requests received from subscribers",
            s.keyframe_requests_downstream.load(Relaxed),
        ),
        (
            "hallcast_bwe_estimates_total",
            "Bandwidth estimates received for measured viewers (TWCC or REMB)",
            s.bwe_estimates.load(Relaxed),
        ),
        (
            "hallcast_layer_switches_total",
            "Bandwidth allocation changes: layer switches decided, pauses, resumes",
            s.layer_switches.load(Relaxed),
        ),
        (
            "hallcast_paced_dropped_packets_total",
            "Video packets dropped from viewers' pacer queues when their video paused",
            s.paced_dropped.load(Relaxed),
        ),
        (
            "hallcast_events_dropped_total",
            "Engine events dropped because the consumer lagged",
            s.events_dropped.load(Relaxed),
        ),
        (
            "hallcast_sessions_started_total",
            "WebRTC sessions created",
            s.sessions_started.load(Relaxed),
        ),
        (
            "hallcast_sessions_ended_total",
            "WebRTC sessions ended",
            s.sessions_ended.load(Relaxed),
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP hallcast_rx_dropped_total Datagrams at the media ports dropped, by reason\n\
         # TYPE hallcast_rx_dropped_total counter"
    );
    for r in hallcast_rtc::RxDrop::ALL {
        let _ = writeln!(
            out,
            "hallcast_rx_dropped_total{{reason=\"{}\"}} {}",
            r.as_str(),
            s.rx_dropped[r as usize].load(Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP hallcast_backlog_packets Joiners' replayed video parked, waiting for its slice\n\
         # TYPE hallcast_backlog_packets gauge\nhallcast_backlog_packets {}",
        s.backlog_packets.load(Relaxed)
    );
    write_transit(&mut out, &s.transit);
    let mut x = Exposition { out };
    let snapshot = state.engine.snapshot().await.ok();
    if let Some(snap) = &snapshot {
        write_engine(&mut x, snap);
    }
    let open: Vec<String> = state
        .registry
        .all()
        .iter()
        .filter(|c| c.ended_ms.is_none())
        .map(|c| c.id.to_string())
        .collect();
    write_conferences(&mut x, &conference_rows(snapshot.as_ref(), &open));
    let now = Instant::now();
    write_node(&mut x, &state, now);
    write_edges(&mut x, &state.tree.children(now));
    let mut out = x.out;
    crate::limits::write_metrics(&state.limits, &mut out);
    if let Some(r) = state.recorder.get() {
        crate::recordings::write_metrics(r, &mut out);
    }
    if let Some(extra) = state.extra_metrics.get() {
        extra(&mut out);
    }
    // Tasks alive on the relay's tokio runtime (HTTP connections, SSE streams, the event
    // pump, pulls, timers): flat under churn unless something spawned per session or per
    // request never ends (the soak test, tests/soak.rs, fits a line to it).
    let _ = writeln!(
        out,
        "# HELP hallcast_runtime_tasks Tasks alive on the relay's async runtime\n# TYPE hallcast_runtime_tasks gauge\nhallcast_runtime_tasks {}",
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    );
    if let Some((cpu, rss)) = process_usage() {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total User and system CPU time of the relay process\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}"
        );
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
        );
    }
    if let Some(heap) = heap_in_use() {
        let _ = writeln!(
            out,
            "# HELP hallcast_heap_in_use_bytes Bytes allocated on the heap and not freed (what a leak grows; resident memory also holds the allocator's free space)\n# TYPE hallcast_heap_in_use_bytes gauge\nhallcast_heap_in_use_bytes {heap}"
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// The text exposition being written: one `# HELP`/`# TYPE` header per family, then its
/// samples, label values escaped.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample; a value that is not finite (no reading) is left out.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        if !value.is_finite() {
            return;
        }
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value as the text format wants it: backslash, double quote and line feed
/// escaped.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// The shards' session counts.
fn write_engine(x: &mut Exposition, snap: &Snapshot) {
    x.family(
        "hallcast_shard_sessions",
        "gauge",
        "Sessions on each media shard",
    );
    for sh in &snap.shards {
        x.sample(
            "hallcast_shard_sessions",
            &[
                ("shard", &sh.index.to_string()),
                ("udp", &sh.udp.to_string()),
            ],
            sh.sessions as f64,
        );
    }
}

/// One conference as `/metrics` shows it.
#[derive(Debug, Default, Clone, PartialEq)]
struct ConferenceRow {
    live: bool,
    viewers: usize,
    relays: usize,
    /// Connected ingest sessions (the hall encoder; on an edge, the pull from its parent).
    publishers: usize,
    layer_bps: [u64; Layer::MAX],
    audio_bps: u64,
    /// Viewers forwarded each layer now.
    layer_viewers: [usize; Layer::MAX],
    paused_bandwidth: usize,
    paused_viewer: usize,
    sent_bytes: u64,
    keyframe_requests_upstream: u64,
    keyframe_requests_downstream: u64,
}

/// Per conference (by id): what the engine's snapshot says, and a row of zeros for each
/// open conference of the registry the engine has no session of.
fn conference_rows(snap: Option<&Snapshot>, open: &[String]) -> BTreeMap<String, ConferenceRow> {
    let mut rows: BTreeMap<String, ConferenceRow> = open
        .iter()
        .map(|id| (id.clone(), ConferenceRow::default()))
        .collect();
    let Some(snap) = snap else {
        return rows;
    };
    for c in &snap.conferences {
        let r = rows.entry(c.id.to_string()).or_default();
        r.live = c.live;
        r.viewers = c.n_subscribers;
        r.relays = c.n_relays;
        r.layer_bps = c.layer_bitrates;
        r.audio_bps = c.audio_bitrate;
        r.sent_bytes = c.sent_bytes;
        r.keyframe_requests_upstream = c.keyframe_requests_upstream;
        r.keyframe_requests_downstream = c.keyframe_requests_downstream;
    }
    for s in &snap.sessions {
        let r = rows.entry(s.conference.to_string()).or_default();
        match s.role {
            Role::Publisher => r.publishers += usize::from(s.connected),
            Role::Relay => {}
            Role::Subscriber => {
                if let Some(VideoStatus::Forwarding { layer }) = s.video
                    && let Some(n) = r.layer_viewers.get_mut(layer.index())
                {
                    *n += 1;
                }
                match s.adaptation.and_then(|a| a.pause) {
                    Some(PauseReason::Bandwidth) => r.paused_bandwidth += 1,
                    Some(PauseReason::Viewer) => r.paused_viewer += 1,
                    None => {}
                }
            }
        }
    }
    rows
}

fn write_conferences(x: &mut Exposition, rows: &BTreeMap<String, ConferenceRow>) {
    type Get = fn(&ConferenceRow) -> f64;
    // (name, type, help, value); the names before `hallcast_conference_viewers` are kept as
    // they were first published (tests and dashboards read them).
    let simple: [(&str, &str, &str, Get); 10] = [
        (
            "hallcast_conference_live",
            "gauge",
            "Whether the hall feed is live (1) or not (0)",
            |r| f64::from(u8::from(r.live)),
        ),
        (
            "hallcast_subscribers",
            "gauge",
            "Subscriber sessions per conference (same as hallcast_conference_viewers)",
            |r| r.viewers as f64,
        ),
        (
            "hallcast_relay_consumers",
            "gauge",
            "Downstream relays pulling each conference",
            |r| r.relays as f64,
        ),
        (
            "hallcast_conference_viewers",
            "gauge",
            "Viewer sessions (points, browsers) of the conference on this relay",
            |r| r.viewers as f64,
        ),
        (
            "hallcast_conference_relays",
            "gauge",
            "Downstream relays (edges) pulling the conference from this relay",
            |r| r.relays as f64,
        ),
        (
            "hallcast_conference_publishers_live",
            "gauge",
            "Connected ingest sessions feeding the conference (the hall encoder; on an edge, its pull from the parent)",
            |r| r.publishers as f64,
        ),
        (
            "hallcast_conference_audio_ingest_bits_per_second",
            "gauge",
            "Measured bitrate of the hall feed's audio (last second)",
            |r| r.audio_bps as f64,
        ),
        (
            "hallcast_conference_sent_bytes_total",
            "counter",
            "Media bytes forwarded to the conference's viewers and downstream relays (reset when the conference has no session left on the relay)",
            |r| r.sent_bytes as f64,
        ),
        (
            "hallcast_conference_keyframe_requests_upstream_total",
            "counter",
            "Keyframe requests (PLI) sent to the conference's publisher",
            |r| r.keyframe_requests_upstream as f64,
        ),
        (
            "hallcast_conference_keyframe_requests_downstream_total",
            "counter",
            "Keyframe requests received from the conference's viewers and relays",
            |r| r.keyframe_requests_downstream as f64,
        ),
    ];
    for (name, kind, help, get) in simple {
        x.family(name, kind, help);
        for (id, r) in rows {
            x.sample(name, &[("conference", id)], get(r));
        }
    }
    let layers =
        |x: &mut Exposition, name: &str, help: &str, get: &dyn Fn(&ConferenceRow, usize) -> f64| {
            x.family(name, "gauge", help);
            for (id, r) in rows {
                for l in 0..Layer::MAX {
                    x.sample(
                        name,
                        &[("conference", id), ("layer", &l.to_string())],
                        get(r, l),
                    );
                }
            }
        };
    layers(
        x,
        "hallcast_layer_bitrate_bps",
        "Measured bitrate of each video layer of the hall feed (last second; same as hallcast_conference_ingest_bits_per_second)",
        &|r, l| r.layer_bps[l] as f64,
    );
    layers(
        x,
        "hallcast_conference_ingest_bits_per_second",
        "Measured bitrate of each video layer of the hall feed (last second; layer 0 is the lowest, 0 bit/s: inactive)",
        &|r, l| r.layer_bps[l] as f64,
    );
    layers(
        x,
        "hallcast_conference_layer_viewers",
        "Viewers forwarded each video layer now",
        &|r, l| r.layer_viewers[l] as f64,
    );
    let name = "hallcast_conference_viewers_paused";
    x.family(
        name,
        "gauge",
        "Viewers whose video is paused (audio only), by reason: bandwidth (their link cannot carry the lowest layer) or viewer (their page asked)",
    );
    for (id, r) in rows {
        x.sample(
            name,
            &[("conference", id), ("reason", "bandwidth")],
            r.paused_bandwidth as f64,
        );
        x.sample(
            name,
            &[("conference", id), ("reason", "viewer")],
            r.paused_viewer as f64,
        );
    }
}

/// This relay: its role, and on an edge its own link to the parent.
fn write_node(x: &mut Exposition, state: &AppState, now: Instant) {
    let is_edge = !state.config.upstream.parent.is_empty();
    x.family(
        "hallcast_node_info",
        "gauge",
        "This relay: its name in the tree and its role (central or edge); always 1",
    );
    x.sample(
        "hallcast_node_info",
        &[
            ("node", &state.tree.name),
            ("role", if is_edge { "edge" } else { "central" }),
        ],
        1.0,
    );
    if !is_edge {
        return;
    }
    let own = state.tree.own();
    let up = state.tree.parent_answered_within(now, DOWN_AFTER);
    x.family(
        "hallcast_uplink_up",
        "gauge",
        "On an edge: whether its parent relay answered its last report within 5 s",
    );
    x.sample("hallcast_uplink_up", &[], f64::from(u8::from(up)));
    let Some(own) = own else { return };
    x.family(
        "hallcast_uplink_rtt_seconds",
        "gauge",
        "On an edge: round-trip time to its parent relay",
    );
    x.sample(
        "hallcast_uplink_rtt_seconds",
        &[],
        own.uplink
            .rtt_ms
            .map_or(f64::NAN, |ms| f64::from(ms) / 1000.0),
    );
    x.family(
        "hallcast_uplink_loss_ratio",
        "gauge",
        "On an edge: fraction of packets lost on the way in from its parent (0..1)",
    );
    x.sample(
        "hallcast_uplink_loss_ratio",
        &[],
        own.uplink.loss.map_or(f64::NAN, ratio),
    );
    x.family(
        "hallcast_uplink_bits_per_second",
        "gauge",
        "On an edge: bitrate received from its parent relay",
    );
    x.sample(
        "hallcast_uplink_bits_per_second",
        &[],
        own.uplink.bitrate_in_bps as f64,
    );
}

/// A loss fraction read as an `f32`, to 6 decimals (0.02, not 0.019999999552965164).
fn ratio(x: f32) -> f64 {
    (f64::from(x) * 1e6).round() / 1e6
}

/// Every relay below this one (the whole tree on the central), labelled by its name, as
/// the edges' own reports say. A relay that stopped reporting 5 s ago (`down`) keeps only
/// `hallcast_edge_up` 0 and the age of its last report: its old load is not current.
fn write_edges(x: &mut Exposition, children: &[NodeReport]) {
    let mut nodes = Vec::new();
    fn flatten<'a>(n: &'a NodeReport, out: &mut Vec<&'a NodeReport>) {
        out.push(n);
        for c in &n.children {
            flatten(c, out);
        }
    }
    for c in children {
        flatten(c, &mut nodes);
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.dedup_by(|a, b| a.name == b.name);
    type Get = fn(&NodeReport) -> f64;
    let all: [(&str, &str, Get); 2] = [
        (
            "hallcast_edge_up",
            "Whether the edge relay reports (1: its last report is under 3 s old; 0: stale or down)",
            |n| f64::from(u8::from(n.state == "up")),
        ),
        (
            "hallcast_edge_last_report_age_seconds",
            "Time since the edge relay's last report reached its parent",
            |n| n.last_report_ms.map_or(f64::NAN, |ms| ms as f64 / 1000.0),
        ),
    ];
    let reporting: [(&str, &str, Get); 6] = [
        (
            "hallcast_edge_viewers",
            "Viewers (points) on the edge relay",
            |n| n.load.viewers as f64,
        ),
        (
            "hallcast_edge_relays",
            "Relays pulling from the edge relay",
            |n| n.load.relays as f64,
        ),
        (
            "hallcast_edge_uplink_rtt_seconds",
            "Round-trip time from the edge relay to its parent",
            |n| {
                n.uplink
                    .rtt_ms
                    .map_or(f64::NAN, |ms| f64::from(ms) / 1000.0)
            },
        ),
        (
            "hallcast_edge_uplink_loss_ratio",
            "Fraction of packets lost from the parent to the edge relay (0..1)",
            |n| n.uplink.loss.map_or(f64::NAN, ratio),
        ),
        (
            "hallcast_edge_uplink_bits_per_second",
            "Bitrate the edge relay receives from its parent",
            |n| n.uplink.bitrate_in_bps as f64,
        ),
        (
            "hallcast_edge_cpu_cores",
            "CPU used by the edge relay's process, in cores (1 = one core busy)",
            |n| n.load.cpu,
        ),
    ];
    for (name, help, get) in all {
        x.family(name, "gauge", help);
        for n in &nodes {
            x.sample(name, &[("edge", &n.name)], get(n));
        }
    }
    for (name, help, get) in reporting {
        x.family(name, "gauge", help);
        for n in nodes.iter().filter(|n| n.state != "down") {
            x.sample(name, &[("edge", &n.name)], get(n));
        }
    }
}

/// `hallcast_transit_seconds`: the per-hop transit histogram (cumulative buckets, `le` in
/// seconds, exact decimals of the nanosecond bounds).
fn write_transit(out: &mut String, h: &TransitHistogram) {
    let name = "hallcast_transit_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Per-hop transit of live media packets: arrival of the source datagram at this relay to the send of the forwarded datagram toward a viewer or downstream relay
# TYPE {name} histogram"
    );
    let counts = h.counts();
    let mut cumulative = 0;
    for (i, n) in counts.iter().enumerate() {
        cumulative += n;
        match upper_bound_ns(i) {
            Some(ns) => {
                let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", seconds(ns));
            }
            None => {
                debug_assert_eq!(i, TRANSIT_BUCKETS - 1);
                let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
            }
        }
    }
    let _ = writeln!(out, "{name}_sum {}", seconds(h.sum().as_nanos() as u64));
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// Nanoseconds as an exact decimal number of seconds ("0.00001024", "2", "0").
fn seconds(ns: u64) -> String {
    let frac = format!("{:09}", ns % 1_000_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{}", ns / 1_000_000_000)
    } else {
        format!("{}.{frac}", ns / 1_000_000_000)
    }
}

/// CPU seconds and RSS bytes of this process, from /proc (Linux).
fn process_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state(0) ... utime(11) stime(12) ... rss(21)
    let ticks = 100.0; // USER_HZ on Linux
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let rss_pages: u64 = f.get(21)?.parse().ok()?;
    Some(((utime + stime) / ticks, rss_pages * 4096))
}

/// Bytes the process holds allocated on the heap (glibc's `mallinfo2`: in use in the arenas
/// plus the large blocks mapped on their own). Unlike the resident size it does not count the
/// free space the allocator keeps, which creeps up for minutes after a start as the arenas
/// fragment, so a leak shows in it within minutes (the soak test, tests/soak.rs). Rust's
/// allocations and SQLite's page cache both come from this heap.
///
/// The workspace denies `unsafe`; this call is one of its two exceptions (docs/ARCHITECTURE.md):
/// no crate wraps glibc's heap counters short of replacing the allocator.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn heap_in_use() -> Option<u64> {
    // SAFETY: `mallinfo2` takes nothing and only reads the allocator's own counters (under
    // each arena's lock).
    let m = unsafe { libc::mallinfo2() };
    Some(m.uordblks as u64 + m.hblkhd as u64)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use() -> Option<u64> {
    None
}

/// CPU the process used since the previous call, in cores (0.0 on the first call or where
/// `/proc` is missing): the load a relay reports to its parent.
pub(crate) fn process_cpu_cores() -> f64 {
    static LAST: std::sync::Mutex<Option<(std::time::Instant, f64)>> = std::sync::Mutex::new(None);
    let Some((cpu, _)) = process_usage() else {
        return 0.0;
    };
    let now = std::time::Instant::now();
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let cores = match *last {
        Some((t, c)) if now > t => (cpu - c).max(0.0) / now.duration_since(t).as_secs_f64(),
        _ => 0.0,
    };
    *last = Some((now, cpu));
    cores
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;

    use super::*;
    use crate::tree::{Load, Uplink};

    #[test]
    fn label_values_are_escaped() {
        let mut x = Exposition { out: String::new() };
        x.sample("m", &[("edge", "a\"b\\c\nd")], 1.5);
        x.sample("m", &[("edge", "gone")], f64::NAN);
        assert_eq!(x.out, "m{edge=\"a\\\"b\\\\c\\nd\"} 1.5\n");
    }

    fn session(
        id: u128,
        conference: &str,
        role: Role,
        video: Option<VideoStatus>,
        pause: Option<PauseReason>,
    ) -> hallcast_rtc::SnapshotSession {
        hallcast_rtc::SnapshotSession {
            id: hallcast_rtc::SessionId(id),
            conference: conference.into(),
            role,
            shard: 0,
            connected: true,
            delivery: None,
            video,
            adaptation: pause.map(|p| hallcast_core::Allocation {
                target: Some(hallcast_core::Target::Paused),
                estimate_bps: Some(1),
                desired_bps: 0,
                sustain_bps: 0,
                switches: 1,
                pause: Some(p),
                estimator_resets: 0,
                reset_bps: None,
            }),
            relay_layers: None,
            rtt_ms: None,
            loss: None,
            media_bytes: 0,
            peer: None,
        }
    }

    /// Per conference: the engine's counts, viewers by the layer they are forwarded and by
    /// why they are paused, and zeros for an open conference nobody is on.
    #[test]
    fn conference_rows_count_layers_and_pauses() {
        let fwd = |l| Some(VideoStatus::Forwarding { layer: Layer(l) });
        let snap = Snapshot {
            conferences: vec![hallcast_rtc::SnapshotConference {
                id: "c".into(),
                live: true,
                audio_codec: None,
                video_codec: None,
                n_subscribers: 4,
                n_relays: 1,
                layer_bitrates: [150_000, 500_000, 0],
                audio_bitrate: 32_000,
                preflight: None,
                keyframe_requests_upstream: 3,
                keyframe_requests_downstream: 5,
                sent_bytes: 1234,
            }],
            sessions: vec![
                session(1, "c", Role::Publisher, None, None),
                session(2, "c", Role::Subscriber, fwd(1), None),
                session(3, "c", Role::Subscriber, fwd(1), None),
                session(
                    4,
                    "c",
                    Role::Subscriber,
                    Some(VideoStatus::Paused),
                    Some(PauseReason::Bandwidth),
                ),
                session(5, "c", Role::Subscriber, fwd(0), None),
                session(6, "c", Role::Relay, fwd(1), None),
            ],
            ..Snapshot::default()
        };
        let rows = conference_rows(Some(&snap), &["c".into(), "idle".into()]);
        let c = &rows["c"];
        assert_eq!((c.viewers, c.relays, c.publishers), (4, 1, 1));
        assert_eq!(c.layer_viewers, [1, 2, 0]);
        assert_eq!((c.paused_bandwidth, c.paused_viewer), (1, 0));
        assert_eq!(c.layer_bps, [150_000, 500_000, 0]);
        assert_eq!(
            (
                c.sent_bytes,
                c.keyframe_requests_upstream,
                c.keyframe_requests_downstream
            ),
            (1234, 3, 5)
        );
        assert_eq!(rows["idle"], ConferenceRow::default());
        let mut x = Exposition { out: String::new() };
        write_conferences(&mut x, &rows);
        for line in [
            "hallcast_conference_viewers{conference=\"c\"} 4",
            "hallcast_conference_viewers{conference=\"idle\"} 0",
            "hallcast_conference_live{conference=\"c\"} 1",
            "hallcast_conference_ingest_bits_per_second{conference=\"c\",layer=\"1\"} 500000",
            "hallcast_conference_layer_viewers{conference=\"c\",layer=\"1\"} 2",
            "hallcast_conference_viewers_paused{conference=\"c\",reason=\"bandwidth\"} 1",
            "hallcast_conference_sent_bytes_total{conference=\"c\"} 1234",
            "# TYPE hallcast_conference_sent_bytes_total counter",
        ] {
            assert!(
                x.out.lines().any(|l| l == line),
                "{line} missing from\n{}",
                x.out
            );
        }
    }

    /// The whole tree below, one series per relay; a down relay keeps only `up` 0 and its
    /// report's age.
    #[test]
    fn edges_are_flattened_and_a_down_one_shows_no_load() {
        let node = |name: &str, state: &str, viewers| NodeReport {
            name: name.into(),
            state: state.into(),
            last_report_ms: Some(800),
            uplink: Uplink {
                rtt_ms: Some(25),
                loss: Some(0.02),
                bitrate_in_bps: 900_000,
                ..Uplink::default()
            },
            load: Load {
                viewers,
                cpu: 0.25,
                ..Load::default()
            },
            ..NodeReport::default()
        };
        let mut mid = node("mid", "up", 2);
        mid.children.push(node("leaf", "up", 3));
        let tree = [mid, node("dead", "down", 7)];
        let mut x = Exposition { out: String::new() };
        write_edges(&mut x, &tree);
        for line in [
            "hallcast_edge_up{edge=\"mid\"} 1",
            "hallcast_edge_up{edge=\"leaf\"} 1",
            "hallcast_edge_up{edge=\"dead\"} 0",
            "hallcast_edge_viewers{edge=\"leaf\"} 3",
            "hallcast_edge_uplink_rtt_seconds{edge=\"mid\"} 0.025",
            "hallcast_edge_uplink_loss_ratio{edge=\"mid\"} 0.02",
            "hallcast_edge_uplink_bits_per_second{edge=\"leaf\"} 900000",
            "hallcast_edge_cpu_cores{edge=\"leaf\"} 0.25",
            "hallcast_edge_last_report_age_seconds{edge=\"dead\"} 0.8",
        ] {
            assert!(
                x.out.lines().any(|l| l == line),
                "{line} missing from\n{}",
                x.out
            );
        }
        assert!(
            !x.out.contains("hallcast_edge_viewers{edge=\"dead\"}"),
            "{}",
            x.out
        );
    }

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(8_192), "0.000008192");
        assert_eq!(seconds(10_240), "0.00001024");
        assert_eq!(seconds(134_217_728), "0.134217728");
        assert_eq!(seconds(2_000_000_000), "2");
        assert_eq!(seconds(1_500_000_000), "1.5");
    }

    #[test]
    fn transit_histogram_is_cumulative_with_inf_sum_and_count() {
        let h = TransitHistogram::default();
        h.record(Duration::from_micros(5));
        h.record(Duration::from_micros(9));
        h.record(Duration::from_micros(10));
        h.record(Duration::from_secs(1));
        let mut out = String::new();
        write_transit(&mut out, &h);
        assert!(out.contains("# TYPE hallcast_transit_seconds histogram\n"));
        assert!(out.contains("hallcast_transit_seconds_bucket{le=\"0.000008192\"} 1\n"));
        assert!(out.contains("hallcast_transit_seconds_bucket{le=\"0.00001024\"} 3\n"));
        assert!(out.contains("hallcast_transit_seconds_bucket{le=\"0.134217728\"} 3\n"));
        assert!(out.contains("hallcast_transit_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(out.contains("hallcast_transit_seconds_sum 1.000024\n"));
        assert!(out.contains("hallcast_transit_seconds_count 4\n"));
        let buckets = out.lines().filter(|l| l.contains("_bucket{")).count();
        assert_eq!(buckets, TRANSIT_BUCKETS);
    }

    /// `/metrics` of a running engine serves the histogram (empty: every bucket 0).
    #[tokio::test]
    async fn metrics_endpoint_has_the_transit_histogram() {
        use axum::body::Body;
        use axum::http::Request;
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let (state, dir) = crate::test_state("hallcast-metrics").await;
        let engine = state.engine.clone();
        let app = crate::app(state, axum::Router::new());
        let req = Request::builder()
            .uri("/metrics")
            .body(Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        engine.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            text.contains("# TYPE hallcast_transit_seconds histogram\n"),
            "{text}"
        );
        assert!(text.contains("hallcast_transit_seconds_bucket{le=\"0.00001024\"} 0\n"));
        assert!(text.contains("hallcast_transit_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("hallcast_transit_seconds_count 0\n"));
    }
}
