//! An edge relay: a viewer of its parent.
//!
//! The edge opens every connection itself, so it works from behind NAT and firewalls: every
//! second it reports to its parent (`POST /api/v1/relay/report`) and learns the conferences,
//! the join-link key and the revocations; for each live conference it makes a pull offer
//! (`Engine::pull`: full ICE as the client, every simulcast layer) and POSTs it to the
//! parent's `/whep/{conference}` with the relay credential. Its points are served by the same
//! engine as the central's (GOP cache, keyframe coalescing, NACK/RTX). When the parent stops
//! answering, the edge moves to the next of its fallbacks and pulls again there; its points
//! keep their sessions through the gap (the router keeps viewers while a source returns).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hallcast_config::{PullMode, Upstream as UpstreamConfig};
use hallcast_core::accounting::{ConferenceId, PointId};
use hallcast_ledger::{TokenError, TokenVerifier};
use hallcast_rtc::{EndReason, EngineEvent, Role, SessionId};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::outbox::Upstream;
use crate::tree::{JoinKeys, NodeReport, PullReport, Revocation, SyncAnswer, Uplink};
use crate::{AppState, EventHook, SessionMeta, ViewerAuth, ViewerIdentity};

/// A report that takes longer than this counts as failed.
const REPORT_TIMEOUT: Duration = Duration::from_millis(700);
/// After a failed report, the next try comes this soon (two failures in a row: fail over).
const RETRY_AFTER: Duration = Duration::from_millis(300);
/// Failed reports in a row before the edge moves to its next parent.
const FAILOVER_AFTER: u32 = 2;
/// The primary parent must answer this long before the edge goes back to it.
const PRIMARY_STABLE: Duration = Duration::from_secs(10);
/// How long a pull offer may take to be answered.
const PULL_TIMEOUT: Duration = Duration::from_secs(3);

/// Join-link checking at an edge: the parent's public key and revocations, no secret.
#[derive(Default)]
pub struct EdgeKeys {
    verifier: RwLock<Option<TokenVerifier>>,
    revocations: RwLock<Vec<Revocation>>,
}

impl EdgeKeys {
    fn update(&self, key: &str, revocations: Vec<Revocation>) {
        let mut current = self.revocations.write().unwrap_or_else(|p| p.into_inner());
        let same_key = self
            .verifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|v| v.public_key() == key);
        if same_key && *current == revocations {
            return;
        }
        let verifier = match TokenVerifier::from_public_key(key) {
            Ok(v) => v.with_generations(revocations.iter().filter_map(|r| {
                Some((
                    ConferenceId::parse(&r.conference).ok()?,
                    PointId::parse(&r.point).ok()?,
                    r.generation,
                ))
            })),
            Err(e) => {
                warn!("the parent sent an unusable join-link key: {e}");
                return;
            }
        };
        *self.verifier.write().unwrap_or_else(|p| p.into_inner()) = Some(verifier);
        *current = revocations;
    }

    /// A join link's claims, checked with the parent's key and revocations.
    pub fn claims(&self, token: &str) -> Result<hallcast_ledger::JoinClaims, TokenError> {
        let now = hallcast_ledger::now_ms().div_euclid(1000);
        let guard = self.verifier.read().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(v) => v.verify(token, now),
            None => Err(TokenError::Malformed),
        }
    }

    fn verify(&self, conference: &str, token: &str) -> Option<PointId> {
        let now = hallcast_ledger::now_ms().div_euclid(1000);
        let guard = self.verifier.read().unwrap_or_else(|p| p.into_inner());
        let claims = guard.as_ref()?.verify(token, now).ok()?;
        (claims.conference.as_str() == conference).then_some(claims.point)
    }
}

impl JoinKeys for EdgeKeys {
    fn public_key(&self) -> String {
        self.verifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|v| v.public_key())
            .unwrap_or_default()
    }
    fn revocations(&self) -> Vec<Revocation> {
        self.revocations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The WHEP endpoint's join-link check at an edge.
pub struct EdgeViewerAuth(pub Arc<EdgeKeys>);

impl ViewerAuth for EdgeViewerAuth {
    fn verify(&self, conference: &str, token: &str) -> Option<ViewerIdentity> {
        self.0.verify(conference, token).map(|p| ViewerIdentity {
            point: Some(p.into_string()),
        })
    }
}

#[derive(Debug, Clone)]
enum Pull {
    /// Being set up from media shard `shard`.
    Starting { shard: usize },
    Live {
        session: SessionId,
        /// The resource at the parent (for DELETE when the edge lets go).
        location: Option<String>,
        shard: usize,
    },
}

/// The conferences whose live pull is one of `gone` (session ids at the parent, as reported:
/// the last segment of the pull's resource URL).
fn gone_conferences(pulls: &HashMap<String, Pull>, gone: &[String]) -> Vec<String> {
    if gone.is_empty() {
        return Vec::new();
    }
    pulls
        .iter()
        .filter_map(|(c, p)| match p {
            Pull::Live {
                location: Some(location),
                ..
            } if gone
                .iter()
                .any(|g| location.rsplit('/').next() == Some(g.as_str())) =>
            {
                Some(c.clone())
            }
            _ => None,
        })
        .collect()
}

impl Pull {
    fn shard(&self) -> usize {
        match self {
            Pull::Starting { shard } | Pull::Live { shard, .. } => *shard,
        }
    }
}

/// A running edge: its parents, its pulls, and the loop that keeps them.
pub struct Edge {
    state: Arc<AppState>,
    keys: Arc<EdgeKeys>,
    parents: Vec<String>,
    credential: String,
    pull_mode: PullMode,
    organisations: Vec<String>,
    open: bool,
    interval: Duration,
    http: reqwest::Client,
    /// Index into `parents` of the parent in use.
    current: AtomicUsize,
    pulls: Mutex<HashMap<String, Pull>>,
    /// Conferences a viewer asked for (pull on demand).
    demanded: Mutex<HashSet<String>>,
    /// The parent's last answer.
    last_sync: RwLock<Option<SyncAnswer>>,
    /// Whether any parent has answered yet.
    connected: std::sync::atomic::AtomicBool,
    /// Round trip of the last report, in microseconds (the uplink RTT when the media path
    /// gives none).
    report_rtt_us: std::sync::atomic::AtomicU64,
    upstream: watch::Sender<Option<Upstream>>,
    wake: Notify,
    /// The parent acknowledged a report that said this relay is draining.
    parent_knows_draining: std::sync::atomic::AtomicBool,
    drain_acked: Notify,
    /// The relay is stopping: no new pull.
    stopping: std::sync::atomic::AtomicBool,
}

impl Edge {
    /// The edge for `state` (whose viewer auth must be an [`EdgeViewerAuth`] over `keys`).
    /// Call [`Edge::spawn`] to start it.
    pub fn new(
        state: Arc<AppState>,
        keys: Arc<EdgeKeys>,
        config: &UpstreamConfig,
    ) -> (Arc<Edge>, watch::Receiver<Option<Upstream>>) {
        let parents = config.parents();
        let (tx, rx) = watch::channel(parents.first().map(|url| Upstream {
            url: url.clone(),
            credential: config.credential.clone(),
        }));
        let edge = Arc::new(Edge {
            state,
            keys,
            parents,
            credential: config.credential.clone(),
            pull_mode: config.pull,
            organisations: config.organisations.clone(),
            open: config.open,
            interval: Duration::from_millis(config.report_interval_ms.max(100)),
            // https parents: the system's trust store plus upstream.ca_file (checked at start).
            http: crate::tls::parent_client(&config.ca_file)
                .unwrap_or_else(|e| {
                    tracing::error!("{e}; trusting the system's store only");
                    crate::tls::parent_client_builder()
                })
                .connect_timeout(REPORT_TIMEOUT)
                .build()
                .unwrap_or_default(),
            current: AtomicUsize::new(0),
            pulls: Mutex::new(HashMap::new()),
            demanded: Mutex::new(HashSet::new()),
            last_sync: RwLock::new(None),
            connected: false.into(),
            report_rtt_us: 0.into(),
            upstream: tx,
            wake: Notify::new(),
            parent_knows_draining: false.into(),
            drain_acked: Notify::new(),
            stopping: false.into(),
        });
        (edge, rx)
    }

    /// Starts the report/sync/pull loop.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let edge = self.clone();
        tokio::spawn(async move { edge.run().await })
    }

    /// The parent in use now.
    pub fn parent_url(&self) -> String {
        self.parent().1.to_string()
    }

    /// Draining: reports to the parent at once and resolves when the parent has acknowledged
    /// a report that says so (it then routes no new point here), or after `timeout` (false).
    pub async fn tell_parent_draining(&self, timeout: Duration) -> bool {
        let acked = self.drain_acked.notified();
        tokio::pin!(acked);
        acked.as_mut().enable();
        if self.parent_knows_draining.load(Relaxed) {
            return true;
        }
        self.wake.notify_one();
        tokio::time::timeout(timeout, acked).await.is_ok()
            || self.parent_knows_draining.load(Relaxed)
    }

    /// Stopping: lets go of every pull at the parent (DELETE, waiting at most `timeout`), so
    /// that the parent counts this relay gone at once rather than after its sessions time out
    /// (a draining parent waits for its child relays too). No pull starts after this.
    pub async fn release_pulls(&self, timeout: Duration) {
        self.stopping.store(true, Relaxed);
        let pulls: Vec<Pull> = self.pulls_lock().drain().map(|(_, p)| p).collect();
        let deletes = pulls.into_iter().filter_map(|p| match p {
            Pull::Live {
                location: Some(url),
                ..
            } => Some(
                self.http
                    .delete(url)
                    .bearer_auth(&self.credential)
                    .timeout(timeout)
                    .send(),
            ),
            _ => None,
        });
        futures_util::future::join_all(deletes).await;
    }

    fn parent(&self) -> (usize, &str) {
        let i = self.current.load(Relaxed).min(self.parents.len() - 1);
        (i, &self.parents[i])
    }

    async fn run(self: Arc<Self>) {
        let mut failures = 0u32;
        let mut primary_ok_since: Option<Instant> = None;
        loop {
            let (i, parent) = self.parent();
            let parent = parent.to_string();
            let report = self.report(i).await;
            let sent = Instant::now();
            match self.post_report(&parent, &report).await {
                Ok(sync) => {
                    if failures > 0 || !self.connected.load(Relaxed) {
                        info!(%parent, "parent relay answers");
                    }
                    failures = 0;
                    self.connected.store(true, Relaxed);
                    self.state.tree.parent_answered(Instant::now());
                    self.report_rtt_us
                        .store(sent.elapsed().as_micros() as u64, Relaxed);
                    if report.draining && !self.parent_knows_draining.swap(true, Relaxed) {
                        info!(%parent, "the parent relay knows this relay is draining");
                        self.drain_acked.notify_waiters();
                    }
                    let parent_draining = sync.draining;
                    self.apply(sync).await;
                    // The parent is stopping: a child with somewhere else to go goes now (its
                    // points keep their sessions, as in any failover). A draining child stays.
                    if parent_draining && self.parents.len() > 1 && !self.state.drain.is_draining()
                    {
                        warn!(%parent, "the parent relay is draining; moving to the next parent");
                        primary_ok_since = None;
                        self.move_to((i + 1) % self.parents.len()).await;
                        continue;
                    }
                }
                Err(e) => {
                    failures += 1;
                    warn!(%parent, failures, "report to the parent relay failed: {e:#}");
                    if failures >= FAILOVER_AFTER && self.parents.len() > 1 {
                        failures = 0;
                        primary_ok_since = None;
                        self.move_to((i + 1) % self.parents.len()).await;
                        continue;
                    }
                    tokio::time::sleep(RETRY_AFTER).await;
                    continue;
                }
            }
            // On a fallback: go back to the primary once it has answered for a while.
            if i != 0 {
                if self.probe(&self.parents[0]).await {
                    let since = *primary_ok_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= PRIMARY_STABLE {
                        primary_ok_since = None;
                        self.move_to(0).await;
                        continue;
                    }
                } else {
                    primary_ok_since = None;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Leaves the current parent for `parents[to]`: ends the pulls (the points stay, waiting
    /// for the source) and pulls again from the new parent at the next report.
    async fn move_to(&self, to: usize) {
        let from = self.current.swap(to, Relaxed);
        warn!(
            from = %self.parents[from],
            to = %self.parents[to],
            "changing parent relay"
        );
        let pulls: Vec<Pull> = self.pulls_lock().drain().map(|(_, p)| p).collect();
        for p in pulls {
            if let Pull::Live {
                session, location, ..
            } = p
            {
                let _ = self.state.engine.end(session, EndReason::Closed).await;
                self.delete_at_parent(location);
            }
        }
        let _ = self.upstream.send(Some(Upstream {
            url: self.parents[to].clone(),
            credential: self.credential.clone(),
        }));
    }

    fn delete_at_parent(&self, location: Option<String>) {
        let Some(url) = location else { return };
        let http = self.http.clone();
        let credential = self.credential.clone();
        tokio::spawn(async move {
            let _ = http
                .delete(&url)
                .bearer_auth(credential)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
        });
    }

    async fn probe(&self, parent: &str) -> bool {
        matches!(
            self.http
                .get(format!("{parent}/readyz"))
                .timeout(REPORT_TIMEOUT)
                .send()
                .await,
            Ok(r) if r.status().is_success()
        )
    }

    async fn post_report(&self, parent: &str, report: &NodeReport) -> anyhow::Result<SyncAnswer> {
        let r = self
            .http
            .post(format!("{parent}/api/v1/relay/report"))
            .bearer_auth(&self.credential)
            .json(report)
            .timeout(REPORT_TIMEOUT)
            .send()
            .await?;
        let status = r.status();
        if !status.is_success() {
            let text = r.text().await.unwrap_or_default();
            anyhow::bail!("{status}: {}", text.trim());
        }
        Ok(r.json().await?)
    }

    /// This relay as its parent should see it.
    async fn report(&self, parent_index: usize) -> NodeReport {
        let snapshot = self.state.engine.snapshot().await.ok();
        let load = crate::tree::load_of(snapshot.as_ref());
        let pulls: HashMap<SessionId, String> = self
            .pulls_lock()
            .iter()
            .filter_map(|(c, p)| match p {
                Pull::Live { session, .. } => Some((*session, c.clone())),
                Pull::Starting { .. } => None,
            })
            .collect();
        let mut uplink = Uplink {
            pulls: pulls.len(),
            ..Uplink::default()
        };
        if let Some(s) = &snapshot {
            for session in s.sessions.iter().filter(|s| pulls.contains_key(&s.id)) {
                uplink.rtt_ms = uplink.rtt_ms.max(session.rtt_ms);
                if let Some(l) = session.loss {
                    uplink.loss = Some(uplink.loss.unwrap_or(0.0).max(l));
                }
            }
            for c in s
                .conferences
                .iter()
                .filter(|c| pulls.values().any(|p| **p == *c.id))
            {
                uplink.bitrate_in_bps += crate::tree::bitrate_in(c);
            }
        }
        if uplink.rtt_ms.is_none() && self.connected.load(Relaxed) {
            // str0m measures no RTT on a receive-only session (no DLRR from the parent): the
            // report's own round trip stands in (TCP, one request: a fair upper bound).
            uplink.rtt_ms = Some(self.report_rtt_us.load(Relaxed).div_ceil(1000) as u32);
        }
        let state = if !self.connected.load(Relaxed) {
            "connecting"
        } else if parent_index == 0 {
            "up"
        } else {
            "failover"
        };
        // Per pull, the layers this relay's own viewers and children use.
        let pull_reports = self
            .pulls_lock()
            .iter()
            .filter_map(|(c, p)| match p {
                Pull::Live {
                    location: Some(location),
                    ..
                } => Some(PullReport {
                    conference: c.clone(),
                    session: location.rsplit('/').next().unwrap_or_default().to_string(),
                    layers: crate::tree::wanted_layers(
                        snapshot.as_ref().map_or(&[][..], |s| &s.sessions[..]),
                        c,
                    ),
                }),
                _ => None,
            })
            .collect();
        let report = NodeReport {
            pulls: pull_reports,
            name: self.state.tree.name.clone(),
            url: self.state.tree.url.clone(),
            parent: Some(self.parents[parent_index].clone()),
            state: state.into(),
            organisations: self.organisations.clone(),
            open: self.open,
            uplink,
            load,
            last_report_ms: None,
            children: self.state.tree.children(Instant::now()),
            draining: self.state.drain.is_draining(),
        };
        self.state.tree.set_own(report.clone());
        report
    }

    /// Takes in the parent's answer: conferences, keys, and which conferences to pull.
    async fn apply(self: &Arc<Self>, sync: SyncAnswer) {
        if !sync.root.is_empty() {
            self.state.tree.set_root(sync.root.clone());
        }
        // Pulls the parent no longer has (it restarted): end them and pull again below, now.
        let gone = {
            let mut pulls = self.pulls_lock();
            gone_conferences(&pulls, &sync.gone_pulls)
                .into_iter()
                .filter_map(|c| match pulls.remove(&c) {
                    Some(Pull::Live { session, .. }) => Some((c, session)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        for (conference, session) in gone {
            warn!(%conference, %session, "the parent relay no longer has this relay's pull (it restarted?); pulling again");
            let _ = self.state.engine.end(session, EndReason::Closed).await;
        }
        self.keys.update(&sync.join_key, sync.revocations.clone());
        for c in &sync.conferences {
            let Ok(id) = ConferenceId::parse(&c.id) else {
                continue;
            };
            if let Err(e) = self
                .state
                .registry
                .mirror(id, c.title.clone(), c.viewer_token.clone(), c.ended)
                .await
            {
                warn!(conference = %c.id, "cannot record the parent's conference: {e}");
                continue;
            }
            // A roll call of the parent's: this relay's points are asked too (idempotent).
            if let Some(rc) = &c.rollcall
                && self.state.events.rollcall(&c.id).as_ref() != Some(rc)
            {
                self.state.events.start_rollcall(&c.id, rc.clone());
            }
            if c.ended {
                self.demanded_lock().remove(&c.id);
                let removed = self.pulls_lock().remove(&c.id);
                if let Some(Pull::Live {
                    session, location, ..
                }) = removed
                {
                    let _ = self
                        .state
                        .engine
                        .end(session, EndReason::ConferenceEnded)
                        .await;
                    self.delete_at_parent(location);
                }
                continue;
            }
            let wanted = self.pull_mode == PullMode::Eager || self.demanded_lock().contains(&c.id);
            let pulling = self.pulls_lock().contains_key(&c.id);
            if c.live && wanted && !pulling {
                let edge = self.clone();
                let conference = c.id.clone();
                tokio::spawn(async move { edge.start_pull(conference).await });
            }
        }
        *self.last_sync.write().unwrap_or_else(|p| p.into_inner()) = Some(sync);
    }

    /// Pulls `conference` from the current parent.
    async fn start_pull(&self, conference: String) -> bool {
        // Each pull leaves from its own media shard's port: one 4-tuple carries one session,
        // so two conferences pulled from one parent cannot share a local port.
        let shard = {
            let mut pulls = self.pulls_lock();
            if pulls.contains_key(&conference) || self.stopping.load(Relaxed) {
                return false;
            }
            let used: HashSet<usize> = pulls.values().map(Pull::shard).collect();
            let Some(shard) = (0..self.state.engine.n_shards()).find(|s| !used.contains(s)) else {
                warn!(
                    %conference,
                    pulled = pulls.len(),
                    "not pulled: an edge pulls at most media.threads conferences at once (one UDP port each); raise media.threads"
                );
                return false;
            };
            pulls.insert(conference.clone(), Pull::Starting { shard });
            shard
        };
        let (_, parent) = self.parent();
        let parent = parent.to_string();
        match self.pull_from(&parent, &conference, shard).await {
            Ok((session, location)) => {
                info!(%conference, %parent, %session, "pulling from the parent relay");
                let kept = {
                    let mut pulls = self.pulls_lock();
                    // Still wanted (the parent did not change meanwhile)?
                    let wanted = matches!(pulls.get(&conference), Some(Pull::Starting { .. }))
                        && self.parent().1 == parent;
                    if wanted {
                        let location = location.clone();
                        pulls.insert(
                            conference,
                            Pull::Live {
                                session,
                                location,
                                shard,
                            },
                        );
                    }
                    wanted
                };
                if !kept {
                    let _ = self.state.engine.end(session, EndReason::Closed).await;
                    self.delete_at_parent(location);
                }
                kept
            }
            Err(e) => {
                warn!(%conference, %parent, "cannot pull from the parent relay: {e:#}");
                if matches!(
                    self.pulls_lock().get(&conference),
                    Some(Pull::Starting { .. })
                ) {
                    self.pulls_lock().remove(&conference);
                }
                false
            }
        }
    }

    async fn pull_from(
        &self,
        parent: &str,
        conference: &str,
        shard: usize,
    ) -> anyhow::Result<(SessionId, Option<String>)> {
        let started = self.state.engine.pull_on(conference, Some(shard)).await?;
        let session = started.session;
        let result = async {
            let r = self
                .http
                .post(format!("{parent}/whep/{conference}"))
                .bearer_auth(&self.credential)
                .header(reqwest::header::CONTENT_TYPE, "application/sdp")
                .body(started.answer)
                .timeout(PULL_TIMEOUT)
                .send()
                .await?;
            let status = r.status();
            let location = r
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| {
                    if l.starts_with("http://") || l.starts_with("https://") {
                        l.to_string()
                    } else {
                        format!("{parent}{l}")
                    }
                });
            let body = r.text().await?;
            if status != reqwest::StatusCode::CREATED {
                anyhow::bail!("the parent answered {status}: {}", body.trim());
            }
            self.state.engine.accept(session, body).await?;
            Ok(location)
        }
        .await;
        match result {
            Ok(location) => Ok((session, location)),
            Err(e) => {
                let _ = self.state.engine.end(session, EndReason::Closed).await;
                Err(e)
            }
        }
    }

    /// A pull ended by itself (the parent ended it, or it timed out): pull again at the
    /// next report.
    fn pull_ended(&self, ended: SessionId) {
        let mut pulls = self.pulls_lock();
        let conference = pulls.iter().find_map(|(c, p)| match p {
            Pull::Live { session, .. } if *session == ended => Some(c.clone()),
            _ => None,
        });
        if let Some(c) = conference {
            pulls.remove(&c);
            info!(conference = %c, session = %ended, "the pull from the parent relay ended");
            self.wake.notify_one();
        }
    }

    fn pulls_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pull>> {
        self.pulls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn demanded_lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.demanded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::Demand for Edge {
    fn demand(
        &self,
        conference: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            let live_upstream = self
                .last_sync
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_some_and(|s| {
                    s.conferences
                        .iter()
                        .any(|c| c.id == conference && c.live && !c.ended)
                });
            if !live_upstream {
                return false;
            }
            self.demanded_lock().insert(conference.clone());
            if self.start_pull(conference.clone()).await {
                return true;
            }
            // Another request is starting it: wait for it.
            let deadline = Instant::now() + PULL_TIMEOUT;
            while Instant::now() < deadline {
                let state = self.pulls_lock().get(&conference).cloned();
                match state {
                    Some(Pull::Live { .. }) => return true,
                    Some(Pull::Starting { .. }) => {}
                    None => return false,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        })
    }
}

/// Hands the edge the engine's word that one of its pulls ended.
pub struct EdgeHook(pub Arc<Edge>);

impl EventHook for EdgeHook {
    fn on_event(&self, event: &EngineEvent, _meta: Option<&SessionMeta>) {
        if let EngineEvent::SessionEnded {
            session,
            role: Role::Publisher,
            ..
        } = event
        {
            self.0.pull_ended(*session);
        }
    }
}

/// Several hooks in turn.
pub struct Hooks(pub Vec<Arc<dyn EventHook>>);

impl EventHook for Hooks {
    fn on_event(&self, event: &EngineEvent, meta: Option<&SessionMeta>) {
        for h in &self.0 {
            h.on_event(event, meta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_the_parent_no_longer_has_is_found_by_its_session_at_the_parent() {
        let live = |n: u128, location: Option<&str>| Pull::Live {
            session: SessionId(n),
            location: location.map(str::to_string),
            shard: 0,
        };
        let pulls: HashMap<String, Pull> = [
            (
                "a".to_string(),
                live(
                    1,
                    Some("http://central:8080/whep/a/0000000000000000000000000000000a"),
                ),
            ),
            (
                "b".to_string(),
                live(
                    2,
                    Some("http://central:8080/whep/b/0000000000000000000000000000000b"),
                ),
            ),
            ("c".to_string(), live(3, None)),
            ("d".to_string(), Pull::Starting { shard: 1 }),
        ]
        .into();
        let gone = |g: &[&str]| {
            let mut v =
                gone_conferences(&pulls, &g.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            v.sort();
            v
        };
        assert!(gone(&[]).is_empty());
        assert_eq!(gone(&["0000000000000000000000000000000b"]), ["b"]);
        assert_eq!(
            gone(&[
                "0000000000000000000000000000000a",
                "0000000000000000000000000000000b"
            ]),
            ["a", "b"]
        );
        // Another session (a pull started since the report was sent) is kept.
        assert!(gone(&["00000000000000000000000000000099"]).is_empty());
    }
}
