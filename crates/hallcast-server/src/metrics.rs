//! /metrics (Prometheus text exposition) and /readyz.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use hallcast_rtc::SnapshotConference;
use hallcast_rtc::transit::{TRANSIT_BUCKETS, TransitHistogram, upper_bound_ns};

use crate::AppState;

/// Ready while every media shard publishes fresh snapshots (a wedged or stopped shard makes
/// the node unready); reads the published cells, never a media thread.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.engine.snapshot().await {
        Ok(_) => "ready".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let s = state.engine.stats();
    let mut out = String::with_capacity(4096);
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
        "# HELP hallcast_backlog_packets Joiners' replayed video parked, waiting for its slice\n\
         # TYPE hallcast_backlog_packets gauge\nhallcast_backlog_packets {}",
        s.backlog_packets.load(Relaxed)
    );
    write_transit(&mut out, &s.transit);
    if let Ok(snap) = state.engine.snapshot().await {
        let per_conference =
            |out: &mut String, name: &str, help: &str, v: &dyn Fn(&SnapshotConference) -> u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                for c in &snap.conferences {
                    let _ = writeln!(out, "{name}{{conference=\"{}\"}} {}", c.id, v(c));
                }
            };
        per_conference(
            &mut out,
            "hallcast_conference_live",
            "Whether the hall feed is live",
            &|c| u64::from(c.live),
        );
        per_conference(
            &mut out,
            "hallcast_subscribers",
            "Subscriber sessions per conference",
            &|c| c.n_subscribers as u64,
        );
        per_conference(
            &mut out,
            "hallcast_relay_consumers",
            "Downstream relays pulling each conference",
            &|c| c.n_relays as u64,
        );
        let _ = writeln!(
            out,
            "# HELP hallcast_layer_bitrate_bps Measured bitrate of each video layer of the hall feed (last second)\n# TYPE hallcast_layer_bitrate_bps gauge"
        );
        for c in &snap.conferences {
            for (layer, bps) in c.layer_bitrates.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "hallcast_layer_bitrate_bps{{conference=\"{}\",layer=\"{layer}\"}} {bps}",
                    c.id
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP hallcast_shard_sessions Sessions on each media shard\n# TYPE hallcast_shard_sessions gauge"
        );
        for sh in &snap.shards {
            let _ = writeln!(
                out,
                "hallcast_shard_sessions{{shard=\"{}\",udp=\"{}\"}} {}",
                sh.index, sh.udp, sh.sessions
            );
        }
    }
    if let Some(extra) = state.extra_metrics.get() {
        extra(&mut out);
    }
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
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

    use super::*;

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
