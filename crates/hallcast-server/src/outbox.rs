//! The outbox: an edge relay's attendance events travel up to its parent.
//!
//! The relay records its points' events in its own durable ledger; this task reads that
//! ledger in log order after a cursor persisted in `<data.dir>/outbox-cursor`, keeps the
//! point-level events (headcount, session: never the broadcast events of the edge's own
//! pulls), POSTs them in batches to the current parent's `POST /api/v1/relay/events`, and
//! advances the cursor only after a 2xx (the parent answers once they are durable there).
//! Every point-level event in the local ledger goes up, whatever its node: an edge that
//! serves edges forwards its children's events too.
//!
//! Failures are retried with a backoff capped at [`MAX_BACKOFF`], so the parent's report
//! converges within about two seconds of a link returning; a parent change (the edge loop
//! publishes the current parent in the watch channel) is followed at once. Resending is
//! harmless: the parent's ledger is idempotent by event id, so a crash between the parent's
//! commit and the cursor write, or a batch delivered to the old parent and then to the new
//! one, stores nothing twice.
//!
//! The decisions (what to send, where the cursor goes, how long to wait) are the pure
//! functions and [`Backoff`] at the top; [`spawn_outbox`] is the I/O around them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use hallcast_ledger::transfer::is_point_level;
use hallcast_ledger::{EventJson, Ledger, StoredEvent};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the outbox delivers: the current parent relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Base URL of the parent (`http://10.77.0.1:8080`).
    pub url: String,
    /// The relay credential the parent accepts.
    pub credential: String,
}

/// Most events read from the ledger and sent in one POST.
pub const MAX_BATCH: usize = 500;
/// Timeout of one POST.
pub const POST_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the ledger is read again when everything was sent.
pub const IDLE_POLL: Duration = Duration::from_millis(250);
/// First wait after a failure.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

// ----- decisions (no I/O) -----

/// What to do with one page of events read after the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The events to deliver (point-level only, in log order).
    pub events: Vec<StoredEvent>,
    /// The cursor once they are delivered: the last position read, so broadcast events
    /// at the end of the page are passed over too.
    pub next_cursor: i64,
}

/// The batch of a page read after `cursor`; `None` when the page is empty (caught up).
pub fn select_batch(cursor: i64, page: Vec<StoredEvent>) -> Option<Batch> {
    let next_cursor = page.last()?.seq.max(cursor);
    let events = page
        .into_iter()
        .filter(|e| e.seq > cursor && is_point_level(&e.event))
        .collect();
    Some(Batch {
        events,
        next_cursor,
    })
}

/// The cursor stored in the file's text; `None` for anything but one non-negative integer.
pub fn parse_cursor(text: &str) -> Option<i64> {
    text.trim().parse::<i64>().ok().filter(|c| *c >= 0)
}

/// Exponential backoff: [`MIN_BACKOFF`], doubling, capped at [`MAX_BACKOFF`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    n_failures: u32,
}

impl Backoff {
    /// Records a failure; returns how long to wait before the next attempt.
    pub fn failure(&mut self) -> Duration {
        let wait = MIN_BACKOFF
            .saturating_mul(1u32 << self.n_failures.min(16))
            .min(MAX_BACKOFF);
        self.n_failures = self.n_failures.saturating_add(1);
        wait
    }

    /// Records a success (the next failure waits [`MIN_BACKOFF`] again).
    pub fn success(&mut self) {
        self.n_failures = 0;
    }

    /// Failures since the last success.
    pub fn n_failures(&self) -> u32 {
        self.n_failures
    }
}

/// The request body of `POST /api/v1/relay/events`.
#[derive(Debug, Serialize)]
pub struct DeliveryBody<'a> {
    pub node: &'a str,
    pub events: Vec<EventJson>,
}

/// The parent's answer.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct DeliveryAnswer {
    pub accepted: u64,
    pub duplicates: u64,
}

/// The delivery URL under a parent's base URL.
pub fn events_url(base: &str) -> String {
    format!("{}/api/v1/relay/events", base.trim_end_matches('/'))
}

// ----- counters -----

/// The outbox's counters (cumulative), for `/metrics`.
#[derive(Debug, Default)]
pub struct OutboxStats {
    /// Events delivered (acknowledged by a parent).
    pub n_sent: AtomicU64,
    /// Events of the batch waiting for delivery (0 when caught up; a backlog longer than
    /// one batch shows as [`MAX_BATCH`]).
    pub n_pending: AtomicU64,
    /// Batches acknowledged.
    pub n_batches: AtomicU64,
    /// Failed delivery attempts.
    pub n_failures: AtomicU64,
    /// The persisted cursor (log position in the local ledger).
    pub cursor: AtomicI64,
}

/// The outbox counters in the Prometheus text format.
pub fn write_outbox_metrics(stats: &OutboxStats, out: &mut String) {
    use std::fmt::Write;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let series = [
        (
            "hallcast_outbox_events_sent_total",
            "counter",
            "Attendance events delivered to the parent relay",
            g(&stats.n_sent) as i64,
        ),
        (
            "hallcast_outbox_events_pending",
            "gauge",
            "Attendance events of the batch waiting for delivery to the parent relay",
            g(&stats.n_pending) as i64,
        ),
        (
            "hallcast_outbox_batches_total",
            "counter",
            "Event batches acknowledged by the parent relay",
            g(&stats.n_batches) as i64,
        ),
        (
            "hallcast_outbox_failures_total",
            "counter",
            "Failed deliveries of event batches to the parent relay",
            g(&stats.n_failures) as i64,
        ),
        (
            "hallcast_outbox_cursor",
            "gauge",
            "Log position in the local ledger delivered up to",
            stats.cursor.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, v) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
}

// ----- I/O -----

/// Starts the outbox (see the module docs). `cursor_path` is `<data.dir>/outbox-cursor`;
/// `upstream` holds the current parent (`None` while there is none: the outbox waits).
pub fn spawn_outbox(
    ledger: Ledger,
    cursor_path: PathBuf,
    upstream: watch::Receiver<Option<Upstream>>,
) -> JoinHandle<()> {
    spawn_outbox_with_stats(ledger, cursor_path, upstream, Arc::default())
}

/// [`spawn_outbox`] that counts into `stats` (for `/metrics`).
pub fn spawn_outbox_with_stats(
    ledger: Ledger,
    cursor_path: PathBuf,
    upstream: watch::Receiver<Option<Upstream>>,
    stats: Arc<OutboxStats>,
) -> JoinHandle<()> {
    spawn_outbox_with_client(
        ledger,
        cursor_path,
        upstream,
        stats,
        crate::tls::parent_client_builder(),
    )
}

/// [`spawn_outbox_with_stats`] whose HTTP client starts from `client` (an https parent's
/// trust: [`crate::tls::parent_client`]).
pub fn spawn_outbox_with_client(
    ledger: Ledger,
    cursor_path: PathBuf,
    upstream: watch::Receiver<Option<Upstream>>,
    stats: Arc<OutboxStats>,
    client: reqwest::ClientBuilder,
) -> JoinHandle<()> {
    tokio::spawn(run(ledger, cursor_path, upstream, stats, client))
}

async fn run(
    ledger: Ledger,
    cursor_path: PathBuf,
    mut upstream: watch::Receiver<Option<Upstream>>,
    stats: Arc<OutboxStats>,
    client: reqwest::ClientBuilder,
) {
    let client = match client.timeout(POST_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "outbox: cannot build the HTTP client; attendance is not forwarded");
            return;
        }
    };
    let mut cursor = start_cursor(&ledger, &cursor_path).await;
    stats.cursor.store(cursor, Ordering::Relaxed);
    let mut backoff = Backoff::default();
    loop {
        let target = upstream.borrow_and_update().clone();
        let Some(target) = target else {
            // No parent: wait for one (or for the sender to go away: the relay stops).
            if upstream.changed().await.is_err() {
                return;
            }
            continue;
        };
        let page = match ledger.events_after(cursor, MAX_BATCH).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "outbox: cannot read the ledger");
                if !wait(&mut upstream, backoff.failure()).await {
                    return;
                }
                continue;
            }
        };
        let Some(batch) = select_batch(cursor, page) else {
            stats.n_pending.store(0, Ordering::Relaxed);
            if !wait(&mut upstream, IDLE_POLL).await {
                return;
            }
            continue;
        };
        stats
            .n_pending
            .store(batch.events.len() as u64, Ordering::Relaxed);
        if !batch.events.is_empty() {
            match deliver(&client, &target, ledger.node(), &batch.events).await {
                Ok(answer) => {
                    if backoff.n_failures() > 0 {
                        tracing::info!(parent = %target.url, "outbox: delivering to the parent again");
                    }
                    backoff.success();
                    let n = batch.events.len() as u64;
                    if answer.accepted + answer.duplicates != n {
                        tracing::warn!(
                            sent = n,
                            ?answer,
                            "outbox: the parent counted another number of events"
                        );
                    }
                    stats.n_sent.fetch_add(n, Ordering::Relaxed);
                    stats.n_batches.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.n_failures.fetch_add(1, Ordering::Relaxed);
                    if backoff.n_failures() == 0 {
                        tracing::warn!(parent = %target.url, error = %e, "outbox: delivery failed; retrying");
                    } else {
                        tracing::debug!(parent = %target.url, error = %e, "outbox: delivery failed again");
                    }
                    if !wait(&mut upstream, backoff.failure()).await {
                        return;
                    }
                    continue;
                }
            }
        }
        cursor = batch.next_cursor;
        stats.cursor.store(cursor, Ordering::Relaxed);
        stats.n_pending.store(0, Ordering::Relaxed);
        if let Err(e) = store_cursor(&cursor_path, cursor).await {
            // The events are delivered; a stale cursor only means resending them later.
            tracing::warn!(error = %e, path = %cursor_path.display(), "outbox: cannot persist the cursor");
        }
    }
}

/// Sleeps `d`, or less when the parent changes. `false` when the watch sender is gone (the
/// relay is stopping).
async fn wait(upstream: &mut watch::Receiver<Option<Upstream>>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        changed = upstream.changed() => changed.is_ok(),
    }
}

#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("the parent answered {status}: {body}")]
    Status {
        status: reqwest::StatusCode,
        body: String,
    },
}

async fn deliver(
    client: &reqwest::Client,
    to: &Upstream,
    node: &str,
    events: &[StoredEvent],
) -> Result<DeliveryAnswer, DeliveryError> {
    let body = DeliveryBody {
        node,
        events: events.iter().map(EventJson::from).collect(),
    };
    let resp = client
        .post(events_url(&to.url))
        .bearer_auth(&to.credential)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        let mut body = resp.text().await.unwrap_or_default();
        body.truncate(300);
        return Err(DeliveryError::Status { status, body });
    }
    Ok(resp.json().await?)
}

/// The persisted cursor, checked against the ledger: it must name a stored event. A
/// missing, unreadable or foreign cursor (the ledger was replaced) starts from 0 —
/// resending is harmless, skipping is not.
async fn start_cursor(ledger: &Ledger, path: &Path) -> i64 {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "outbox: cannot read the cursor; sending everything again");
            return 0;
        }
    };
    let Some(cursor) = parse_cursor(&text) else {
        tracing::warn!(path = %path.display(), "outbox: the cursor file is not a number; sending everything again");
        return 0;
    };
    if cursor == 0 {
        return 0;
    }
    match ledger.events_after(cursor - 1, 1).await {
        Ok(page) if page.first().is_some_and(|e| e.seq == cursor) => cursor,
        Ok(_) => {
            tracing::warn!(
                cursor,
                "outbox: the cursor names no event of this ledger; sending everything again"
            );
            0
        }
        Err(e) => {
            // The main loop reports the ledger's failure; keep the cursor meanwhile.
            tracing::debug!(error = %e, "outbox: cannot check the cursor");
            cursor
        }
    }
}

/// Writes the cursor atomically: a temporary file, fsync, rename, fsync of the directory.
async fn store_cursor(path: &Path, cursor: i64) -> std::io::Result<()> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || write_atomically(&path, cursor.to_string().as_bytes()))
        .await
        .map_err(std::io::Error::other)?
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
