//! What the load generator reads about processes: the relay's `/metrics` (its own counters and
//! its own CPU accounting) and `/proc/<pid>/stat` (CPU and RSS of any process, this one
//! included).

use std::collections::HashMap;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One scrape of the relay's `/metrics`: the counters a benchmark needs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct RelaySample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub forwarded_packets: u64,
    pub tx_datagrams: u64,
    pub tx_dropped: u64,
    pub rx_media_packets: u64,
    pub rx_datagrams: u64,
    pub keyframe_requests_upstream: u64,
    pub gop_replays: u64,
    /// `sendmmsg` calls and UDP GSO messages (relays before GSO report none).
    #[serde(default)]
    pub tx_syscalls: u64,
    #[serde(default)]
    pub tx_gso_messages: u64,
    /// WebRTC sessions created, and attendance events the ledger stored durably.
    #[serde(default)]
    pub sessions_started: u64,
    #[serde(default)]
    pub ledger_events_stored: u64,
    /// Sum of `hallcast_subscribers` over conferences.
    pub n_subscribers: u64,
    /// Some conference reports `hallcast_conference_live 1`.
    pub live: bool,
}

impl RelaySample {
    /// Parses the Prometheus text format; unknown series are ignored, missing ones stay 0.
    pub fn parse(text: &str) -> RelaySample {
        let mut values: HashMap<&str, f64> = HashMap::new();
        let mut s = RelaySample::default();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let name = series.split('{').next().unwrap_or(series);
            match name {
                "hallcast_subscribers" => s.n_subscribers += value as u64,
                "hallcast_conference_live" => s.live |= value >= 1.0,
                _ => {
                    values.insert(name, value);
                }
            }
        }
        let get = |k: &str| values.get(k).copied().unwrap_or(0.0);
        s.cpu_seconds = get("process_cpu_seconds_total");
        s.rss_bytes = get("process_resident_memory_bytes") as u64;
        s.forwarded_packets = get("hallcast_forwarded_packets_total") as u64;
        s.tx_datagrams = get("hallcast_tx_datagrams_total") as u64;
        s.tx_dropped = get("hallcast_tx_dropped_total") as u64;
        s.rx_media_packets = get("hallcast_rx_media_packets_total") as u64;
        s.rx_datagrams = get("hallcast_rx_datagrams_total") as u64;
        s.keyframe_requests_upstream = get("hallcast_keyframe_requests_upstream_total") as u64;
        s.gop_replays = get("hallcast_gop_replays_total") as u64;
        s.tx_syscalls = get("hallcast_tx_syscalls_total") as u64;
        s.tx_gso_messages = get("hallcast_tx_gso_messages_total") as u64;
        s.sessions_started = get("hallcast_sessions_started_total") as u64;
        s.ledger_events_stored = get("hallcast_ledger_events_stored_total") as u64;
        s
    }
}

/// GETs and parses the relay's `/metrics`.
pub async fn scrape(client: &reqwest::Client, metrics_url: &str) -> anyhow::Result<RelaySample> {
    let resp = client
        .get(metrics_url)
        .send()
        .await
        .with_context(|| format!("GET {metrics_url}"))?;
    let status = resp.status();
    anyhow::ensure!(status.is_success(), "GET {metrics_url}: HTTP {status}");
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading {metrics_url}"))?;
    Ok(RelaySample::parse(&text))
}

/// GETs a URL's body as text (a relay's `/metrics` or `/readyz`); an error unless 2xx.
pub async fn get_text(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    anyhow::ensure!(status.is_success(), "GET {url}: HTTP {status}");
    resp.text().await.with_context(|| format!("reading {url}"))
}

/// A Prometheus histogram as exposed (cumulative buckets), e.g. `hallcast_transit_seconds`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    /// Upper bounds (`le`), ascending; the last is `+Inf`.
    pub le: Vec<f64>,
    /// Cumulative counts, by bound.
    pub cumulative: Vec<f64>,
    pub sum: f64,
    pub count: f64,
}

impl Histogram {
    /// The histogram `name` in a `/metrics` text (series without labels other than `le`);
    /// empty if absent.
    pub fn parse(text: &str, name: &str) -> Histogram {
        let bucket = format!("{name}_bucket{{le=\"");
        let mut h = Histogram::default();
        let mut points: Vec<(f64, f64)> = Vec::new();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            if let Some(le) = series.strip_prefix(&bucket) {
                let le = le.trim_end_matches("\"}");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    match le.parse() {
                        Ok(v) => v,
                        Err(_) => continue,
                    }
                };
                points.push((le, value));
            } else if series == format!("{name}_sum") {
                h.sum = value;
            } else if series == format!("{name}_count") {
                h.count = value;
            }
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        (h.le, h.cumulative) = points.into_iter().unzip();
        h
    }

    /// What was added between `earlier` and `self` (two scrapes of the same histogram).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let cumulative = if earlier.le == self.le {
            self.cumulative
                .iter()
                .zip(&earlier.cumulative)
                .map(|(a, b)| a - b)
                .collect()
        } else {
            self.cumulative.clone()
        };
        Histogram {
            le: self.le.clone(),
            cumulative,
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// The `q` quantile (0..1), interpolated linearly inside its bucket (as Prometheus'
    /// `histogram_quantile`); the first bucket is taken to start at 0, and a quantile in the
    /// `+Inf` bucket is the last finite bound. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = *self.cumulative.last()?;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let i = self.cumulative.iter().position(|c| *c >= rank)?;
        let hi = self.le[i];
        if hi.is_infinite() {
            return self.le.get(i.wrapping_sub(1)).copied();
        }
        let (lo, below) = if i == 0 {
            (0.0, 0.0)
        } else {
            (self.le[i - 1], self.cumulative[i - 1])
        };
        let in_bucket = self.cumulative[i] - below;
        if in_bucket <= 0.0 {
            return Some(hi);
        }
        Some(lo + (hi - lo) * (rank - below) / in_bucket)
    }

    /// Samples above `bound` (seconds, one of the bucket bounds).
    pub fn above(&self, bound: f64) -> f64 {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let at = self
            .le
            .iter()
            .position(|le| *le >= bound)
            .map_or(total, |i| self.cumulative[i]);
        total - at
    }
}

/// CPU time (user + system) and resident memory of a process, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcSample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` (`None`: this process).
pub fn proc_sample(pid: Option<u32>) -> anyhow::Result<ProcSample> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&stat).with_context(|| format!("unexpected format of {path}"))
}

fn parse_stat(stat: &str) -> Option<ProcSample> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12) ... rss(21), in pages.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    // USER_HZ is 100 and pages are 4 KiB on every Linux this runs on (x86-64, arm64 4K).
    Some(ProcSample {
        cpu_seconds: (utime + stime) / 100.0,
        rss_bytes: rss_pages * 4096,
    })
}

/// The machine-wide UDP receive-buffer overflow counter (`RcvbufErrors` in `/proc/net/snmp`):
/// datagrams the kernel dropped because a socket's receive buffer was full. Machine-wide, so
/// other processes' drops count too; a benchmark reports its delta as a diagnostic.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(i)?.parse().ok()
}

/// Datagrams the kernel dropped on the UDP sockets bound to `ports` (IPv4 and IPv6, any
/// local address), summed: the `drops` column of `/proc/net/udp{,6}`. Counts of sockets that
/// were closed are gone, so take deltas between two reads of the same open sockets.
pub fn udp_socket_drops(ports: &std::collections::HashSet<u16>) -> u64 {
    let mut total = 0;
    for path in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            total += parse_udp_drops(&text, ports);
        }
    }
    total
}

fn parse_udp_drops(text: &str, ports: &std::collections::HashSet<u16>) -> u64 {
    let mut total = 0;
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = fields
            .get(1)
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        if port.is_some_and(|p| ports.contains(&p)) {
            total += fields
                .last()
                .and_then(|d| d.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// CPU time the whole machine spent busy (all cores, everything but idle and iowait), in
/// seconds, from `/proc/stat`. With the relay's and the load generator's own CPU it shows how
/// much else ran during a window on a shared machine.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy(&stat)
}

fn parse_machine_busy(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user/nice).
    let busy: u64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    Some(busy as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_is_read() {
        let text = "# HELP x y\n# TYPE hallcast_forwarded_packets_total counter\n\
            hallcast_forwarded_packets_total 12345\n\
            hallcast_tx_datagrams_total 13000\n\
            hallcast_conference_live{conference=\"a\"} 1\n\
            hallcast_subscribers{conference=\"a\"} 7\n\
            hallcast_subscribers{conference=\"b\"} 3\n\
            process_cpu_seconds_total 1.25\n\
            process_resident_memory_bytes 4096000\n";
        let s = RelaySample::parse(text);
        assert_eq!(s.forwarded_packets, 12345);
        assert_eq!(s.tx_datagrams, 13000);
        assert_eq!(s.n_subscribers, 10);
        assert!(s.live);
        assert_eq!(s.cpu_seconds, 1.25);
        assert_eq!(s.rss_bytes, 4_096_000);
        assert_eq!(s.rx_media_packets, 0);
    }

    #[test]
    fn histograms_are_read_subtracted_and_their_quantiles_interpolated() {
        let text = "# TYPE h histogram\n\
            h_bucket{le=\"0.00001\"} 10\n\
            h_bucket{le=\"0.00002\"} 30\n\
            h_bucket{le=\"0.00004\"} 40\n\
            h_bucket{le=\"+Inf\"} 41\n\
            h_sum 0.001\n\
            h_count 41\n\
            other_bucket{le=\"1\"} 5\n";
        let h = Histogram::parse(text, "h");
        assert_eq!(h.le.len(), 4);
        assert!(h.le[3].is_infinite());
        assert_eq!(h.cumulative, vec![10.0, 30.0, 40.0, 41.0]);
        assert_eq!((h.sum, h.count), (0.001, 41.0));
        let earlier = Histogram::parse(
            "h_bucket{le=\"0.00001\"} 10\nh_bucket{le=\"0.00002\"} 20\n\
             h_bucket{le=\"0.00004\"} 21\nh_bucket{le=\"+Inf\"} 21\nh_sum 0.0005\nh_count 21\n",
            "h",
        );
        let d = h.since(&earlier);
        assert_eq!(d.cumulative, vec![0.0, 10.0, 19.0, 20.0]);
        assert_eq!(d.count, 20.0);
        // Median: rank 10 of 20, the top of the second bucket.
        assert_eq!(d.quantile(0.5), Some(0.00002));
        // Rank 15: 5 of the third bucket's 9 samples.
        let p75 = d.quantile(0.75).unwrap();
        assert!(
            (p75 - (0.00002 + 0.00002 * 5.0 / 9.0)).abs() < 1e-12,
            "{p75}"
        );
        // The top sample is in +Inf: the last finite bound.
        assert_eq!(d.quantile(1.0), Some(0.00004));
        assert_eq!(d.above(0.00002), 10.0);
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn proc_stat_with_a_strange_name_is_read() {
        let stat =
            "42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000000 300 ...";
        let s = parse_stat(stat).expect("parsed");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.rss_bytes, 300 * 4096);
        let me = proc_sample(None).expect("own stat");
        assert!(me.rss_bytes > 0);
    }

    #[test]
    fn udp_drops_and_machine_busy_are_read() {
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            1: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 0000000000000000 17\n\
            2: 0100007F:1F91 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 0000000000000000 5\n";
        let ports = [8080u16].into_iter().collect();
        assert_eq!(parse_udp_drops(udp, &ports), 17);
        let stat = "cpu  100 10 50 1000 30 0 5 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(parse_machine_busy(stat), Some(1.65));
        assert!(machine_busy_seconds().is_some());
    }
}
