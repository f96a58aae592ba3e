//! The attendance report (báo cáo điểm danh): presence joined with the registry.
//!
//! Pure data; rendering (CSV, JSON, HTML) belongs to the I/O crates.

use std::collections::{BTreeMap, BTreeSet};

use super::fold::{Declaration, Interval, PointPresence, Presence};
use super::ids::{ConferenceId, OrgId, PointId};
use super::rollcall::RollCall;

/// Reconnects whose gap is at most this long merge into one attendance (default 60 s).
pub const DEFAULT_GRACE_MS: i64 = 60_000;

/// A registered organisation (đơn vị).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    pub id: OrgId,
    pub name: String,
}

/// A registered connection point (điểm cầu).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointInfo {
    pub id: PointId,
    pub org: OrgId,
    pub name: String,
    pub location: String,
    pub expected_headcount: Option<u32>,
}

/// How to build a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportConfig {
    /// Gaps of at most this many milliseconds are interruptions inside one attendance;
    /// longer gaps separate attendances.
    pub grace_ms: i64,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            grace_ms: DEFAULT_GRACE_MS,
        }
    }
}

/// One point's line in the report.
#[derive(Debug, Clone, PartialEq)]
pub struct PointRow {
    pub point: PointId,
    /// `false` for a point that appears in events but not in the registry.
    pub registered: bool,
    pub name: String,
    pub org: Option<OrgId>,
    pub org_name: String,
    pub location: String,
    pub expected_headcount: Option<u32>,
    /// Present for a positive time while the broadcast was live.
    pub connected: bool,
    pub first_join_ms: Option<i64>,
    /// End of the last presence; `None` while still present at the horizon (or never joined).
    pub last_leave_ms: Option<i64>,
    pub present_at_horizon: bool,
    pub present_ms: i64,
    /// `present_ms` as a percentage of the broadcast's live time (0 when it never went live).
    pub percent_of_broadcast: f64,
    /// Attendances: presence intervals with gaps of at most the grace window bridged.
    pub attendances: Vec<Interval>,
    /// Raw presence intervals (media delivered while live).
    pub intervals: Vec<Interval>,
    /// Gaps of at most the grace window (reconnects).
    pub interruptions: u32,
    /// Gaps longer than the grace window (left and came back).
    pub absences: u32,
    pub longest_gap_ms: Option<i64>,
    /// How long after the broadcast start the point first joined (0 if at or before).
    pub late_join_ms: Option<i64>,
    pub audio_only_ms: i64,
    pub frozen_ms: i64,
    /// How long after its WHEP session was created the relay sent the point its first video
    /// packet (earliest session). The relay's side: not a frame the receiver decoded.
    pub first_video_after_ms: Option<u32>,
    pub headcount: Option<Declaration>,
    pub n_sessions: u32,
    pub n_timeouts: u32,
    /// The relay nodes that served its sessions, sorted ("central", "edge-a", ...). Filled
    /// by [`Report::with_relays`] from where the events were stored; empty from
    /// [`build_report`] alone (the fold knows no relays).
    pub relays: Vec<String>,
}

/// One organisation's summary, with the points that did not connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRow {
    pub org: OrgId,
    pub name: String,
    pub n_points: u32,
    pub n_points_connected: u32,
    /// Sum of the latest declared headcounts of its connected points.
    pub headcount: u64,
    /// Registered points of this organisation that never connected: (id, name).
    pub missing: Vec<(PointId, String)>,
}

impl OrgRow {
    pub fn connected(&self) -> bool {
        self.n_points_connected > 0
    }
}

/// The attendance report of one conference at a horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub conference: ConferenceId,
    pub as_of_ms: i64,
    pub grace_ms: i64,
    pub broadcast_start_ms: Option<i64>,
    /// End of the last live period; `None` while live at the horizon or never started.
    pub broadcast_end_ms: Option<i64>,
    pub broadcast_live_ms: i64,
    pub live: Vec<Interval>,
    pub n_orgs: u32,
    pub n_orgs_connected: u32,
    pub n_points: u32,
    pub n_points_connected: u32,
    /// Sum of the latest declared headcount of every connected registered point.
    pub total_headcount: u64,
    /// Sum of the expected headcounts of all registered points.
    pub total_expected_headcount: u64,
    /// Registered points, by organisation id then point id.
    pub points: Vec<PointRow>,
    /// Points seen in events but not registered, by id.
    pub unregistered: Vec<PointRow>,
    /// Every organisation, by id.
    pub orgs: Vec<OrgRow>,
    pub n_events: u64,
    pub n_duplicates: u64,
    /// The conference's roll calls, oldest first (see [`super::roll_calls`]); empty from
    /// [`build_report`] alone, filled by [`Report::with_roll_calls`].
    pub roll_calls: Vec<RollCall>,
    /// Times the ledger's store could not be reached while this broadcast was live, oldest
    /// first; empty from [`build_report`] alone, filled by [`Report::with_store_outages`].
    pub store_outages: Vec<StoreOutage>,
}

/// A time during which a relay node could not reach the ledger's store (the database was
/// unreachable), recorded by that node once the store answered again.
///
/// While the store is unreachable the node keeps its events in a bounded queue and stores
/// them when it comes back (`n_stored_late`); only events that found the queue full are
/// lost (`n_dropped`). A report whose broadcast overlapped an outage says so, because its
/// figures may lack the dropped events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOutage {
    /// The relay node that saw the outage.
    pub node: String,
    /// First failed write (Unix ms).
    pub from_ms: i64,
    /// First successful write after it (Unix ms).
    pub to_ms: i64,
    /// Events that waited in the node's queue and were stored when the store came back.
    pub n_stored_late: u64,
    /// Events dropped because the queue was full (lost: never stored).
    pub n_dropped: u64,
}

impl StoreOutage {
    /// Whether the outage overlaps the interval (both ends included: an outage that ends
    /// exactly when the broadcast starts could still have held its first events).
    pub fn overlaps(&self, i: &Interval) -> bool {
        self.from_ms <= i.end_ms && self.to_ms >= i.start_ms
    }
}

impl Report {
    /// Keeps, of every recorded store outage (of any node, in any order), those that
    /// overlap a live period of this broadcast, oldest first. A broadcast that never went
    /// live has no notice: nothing of it could be lost.
    pub fn with_store_outages(mut self, outages: impl IntoIterator<Item = StoreOutage>) -> Report {
        let mut kept: Vec<StoreOutage> = outages
            .into_iter()
            .filter(|o| self.live.iter().any(|i| o.overlaps(i)))
            .collect();
        kept.sort_by(|a, b| (a.from_ms, a.to_ms, &a.node).cmp(&(b.from_ms, b.to_ms, &b.node)));
        kept.dedup();
        self.store_outages = kept;
        self
    }

    /// Events of the overlapping outages that were stored late, and that were dropped.
    pub fn store_outage_totals(&self) -> (u64, u64) {
        self.store_outages
            .iter()
            .fold((0, 0), |(l, d), o| (l + o.n_stored_late, d + o.n_dropped))
    }

    /// Sets the roll calls (computed by [`super::roll_calls`] from the same events).
    pub fn with_roll_calls(mut self, roll_calls: Vec<RollCall>) -> Report {
        self.roll_calls = roll_calls;
        self
    }

    /// Organisations with at least one point that never connected ("who is missing").
    pub fn missing(&self) -> impl Iterator<Item = &OrgRow> {
        self.orgs.iter().filter(|o| !o.missing.is_empty())
    }

    /// Names, per point, the relay nodes that served it, from (point, node) pairs (in any
    /// order, repeats allowed). Points not named keep an empty list.
    pub fn with_relays(mut self, served: impl IntoIterator<Item = (PointId, String)>) -> Report {
        let mut by_point: BTreeMap<PointId, BTreeSet<String>> = BTreeMap::new();
        for (point, node) in served {
            by_point.entry(point).or_default().insert(node);
        }
        for r in self.points.iter_mut().chain(self.unregistered.iter_mut()) {
            if let Some(nodes) = by_point.remove(&r.point) {
                r.relays = nodes.into_iter().collect();
            }
        }
        self
    }
}

/// Joins the folded presence with the registry.
pub fn build_report(
    presence: &Presence,
    orgs: &[Organisation],
    points: &[PointInfo],
    cfg: &ReportConfig,
) -> Report {
    let live_ms = presence.live_ms();
    let broadcast_start_ms = presence.live.first().map(|i| i.start_ms);
    let broadcast_end_ms = if presence.live_at_horizon {
        None
    } else {
        presence.live.last().map(|i| i.end_ms)
    };

    let org_names: BTreeMap<&OrgId, &str> = orgs.iter().map(|o| (&o.id, o.name.as_str())).collect();
    let by_point: BTreeMap<&PointId, &PointPresence> =
        presence.points.iter().map(|p| (&p.point, p)).collect();

    let mut rows: Vec<PointRow> = points
        .iter()
        .map(|info| {
            let org_name = org_names
                .get(&info.org)
                .map_or_else(|| info.org.to_string(), |n| (*n).to_owned());
            row(
                info.id.clone(),
                Some(info),
                org_name,
                by_point.get(&info.id).copied(),
                broadcast_start_ms,
                live_ms,
                cfg,
            )
        })
        .collect();
    rows.sort_by(|a, b| (&a.org, &a.point).cmp(&(&b.org, &b.point)));

    let registered: BTreeSet<&PointId> = points.iter().map(|p| &p.id).collect();
    let unregistered: Vec<PointRow> = presence
        .points
        .iter()
        .filter(|p| !registered.contains(&p.point))
        .map(|p| {
            row(
                p.point.clone(),
                None,
                String::new(),
                Some(p),
                broadcast_start_ms,
                live_ms,
                cfg,
            )
        })
        .collect();

    // Every registered organisation, plus any organisation a point names that is missing
    // from the organisation list (the store forbids it; the core stays total).
    let mut org_rows: BTreeMap<OrgId, OrgRow> = orgs
        .iter()
        .map(|o| {
            (
                o.id.clone(),
                OrgRow {
                    org: o.id.clone(),
                    name: o.name.clone(),
                    n_points: 0,
                    n_points_connected: 0,
                    headcount: 0,
                    missing: Vec::new(),
                },
            )
        })
        .collect();
    let mut total_headcount = 0u64;
    let mut n_points_connected = 0u32;
    for r in &rows {
        let Some(org) = &r.org else { continue };
        let o = org_rows.entry(org.clone()).or_insert_with(|| OrgRow {
            org: org.clone(),
            name: r.org_name.clone(),
            n_points: 0,
            n_points_connected: 0,
            headcount: 0,
            missing: Vec::new(),
        });
        o.n_points += 1;
        if r.connected {
            o.n_points_connected += 1;
            n_points_connected += 1;
            let h = u64::from(r.headcount.map_or(0, |d| d.n_people));
            o.headcount += h;
            total_headcount += h;
        } else {
            o.missing.push((r.point.clone(), r.name.clone()));
        }
    }
    let org_rows: Vec<OrgRow> = org_rows.into_values().collect();

    Report {
        conference: presence.conference.clone(),
        as_of_ms: presence.as_of_ms,
        grace_ms: cfg.grace_ms,
        broadcast_start_ms,
        broadcast_end_ms,
        broadcast_live_ms: live_ms,
        live: presence.live.clone(),
        n_orgs: org_rows.len() as u32,
        n_orgs_connected: org_rows.iter().filter(|o| o.connected()).count() as u32,
        n_points: rows.len() as u32,
        n_points_connected,
        total_headcount,
        total_expected_headcount: points
            .iter()
            .map(|p| u64::from(p.expected_headcount.unwrap_or(0)))
            .sum(),
        points: rows,
        unregistered,
        orgs: org_rows,
        n_events: presence.n_events,
        n_duplicates: presence.n_duplicates,
        roll_calls: Vec::new(),
        store_outages: Vec::new(),
    }
}

fn row(
    point: PointId,
    info: Option<&PointInfo>,
    org_name: String,
    presence: Option<&PointPresence>,
    broadcast_start_ms: Option<i64>,
    live_ms: i64,
    cfg: &ReportConfig,
) -> PointRow {
    let empty: &[Interval] = &[];
    let intervals = presence.map_or(empty, |p| p.intervals.as_slice());
    let present_ms: i64 = intervals.iter().map(Interval::len_ms).sum();
    let present_at_horizon = presence.is_some_and(|p| p.present_at_horizon);

    let mut attendances: Vec<Interval> = Vec::new();
    let (mut interruptions, mut absences) = (0u32, 0u32);
    let mut longest_gap_ms: Option<i64> = None;
    for iv in intervals {
        match attendances.last_mut() {
            Some(last) => {
                let gap = iv.start_ms - last.end_ms;
                longest_gap_ms = Some(longest_gap_ms.map_or(gap, |g| g.max(gap)));
                if gap <= cfg.grace_ms {
                    interruptions += 1;
                    last.end_ms = iv.end_ms;
                } else {
                    absences += 1;
                    attendances.push(*iv);
                }
            }
            None => attendances.push(*iv),
        }
    }
    let first_join_ms = intervals.first().map(|i| i.start_ms);
    let last_leave_ms = if present_at_horizon {
        None
    } else {
        intervals.last().map(|i| i.end_ms)
    };
    let late_join_ms = match (first_join_ms, broadcast_start_ms) {
        (Some(j), Some(b)) => Some((j - b).max(0)),
        _ => None,
    };
    let percent_of_broadcast = if live_ms > 0 {
        present_ms as f64 * 100.0 / live_ms as f64
    } else {
        0.0
    };

    PointRow {
        point,
        registered: info.is_some(),
        name: info.map(|i| i.name.clone()).unwrap_or_default(),
        org: info.map(|i| i.org.clone()),
        org_name,
        location: info.map(|i| i.location.clone()).unwrap_or_default(),
        expected_headcount: info.and_then(|i| i.expected_headcount),
        connected: present_ms > 0,
        first_join_ms,
        last_leave_ms,
        present_at_horizon,
        present_ms,
        percent_of_broadcast,
        attendances,
        intervals: intervals.to_vec(),
        interruptions,
        absences,
        longest_gap_ms,
        late_join_ms,
        audio_only_ms: presence.map_or(0, |p| p.audio_only_ms),
        frozen_ms: presence.map_or(0, |p| p.frozen_ms),
        first_video_after_ms: presence.and_then(|p| p.first_video_after_ms),
        headcount: presence.and_then(|p| p.headcount),
        n_sessions: presence.map_or(0, |p| p.n_sessions),
        n_timeouts: presence.map_or(0, |p| p.n_timeouts),
        relays: Vec::new(),
    }
}
