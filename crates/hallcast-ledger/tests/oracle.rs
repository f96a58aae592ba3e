//! Property test: over random histories (any order, duplicates, restarts, flaps), the core's
//! fold + report equals an independent oracle that steps through time one millisecond at a
//! time and derives every number from per-millisecond state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use hallcast_core::accounting::{
    ConferenceId, Declaration, EndReason, Event, EventId, EventKind, Interval, OrgId, OrgRow,
    Organisation, PointId, PointInfo, PointRow, Report, ReportConfig, SessionChange, SessionId,
    build_report, fold,
};
use proptest::prelude::*;

const T0: i64 = 1_700_000_000_000;
const SPAN: i64 = 1_500;

// ----- the oracle -----
//
// The meaning, restated: the broadcast is live between BroadcastStarted and BroadcastEnded. A
// session receives media from its first MediaFlowing, FirstVideoSent, AudioOnly or
// VideoResumed (audio alone is media) until its Ended; nothing after Ended counts. At each
// millisecond a point is present when the broadcast is live and one of its sessions receives
// media; audio-only (frozen) when present and every such session is flagged audio-only
// (frozen) by its latest AudioOnly/VideoResumed (Frozen/Unfrozen).

/// The processing order among events of the same millisecond, restated from the spec:
/// broadcast start, session start, flowing, first video sent, video resumed, audio only,
/// unfrozen, frozen, headcount, session end, broadcast end; then event id.
fn oracle_rank(k: &EventKind) -> u8 {
    use SessionChange as C;
    match k {
        EventKind::BroadcastStarted => 0,
        EventKind::Session {
            change: C::Started, ..
        } => 1,
        EventKind::Session {
            change: C::MediaFlowing,
            ..
        } => 2,
        EventKind::Session {
            change: C::FirstVideoSent { .. },
            ..
        } => 3,
        EventKind::Session {
            change: C::VideoResumed,
            ..
        } => 4,
        EventKind::Session {
            change: C::AudioOnly,
            ..
        } => 5,
        EventKind::Session {
            change: C::Unfrozen,
            ..
        } => 6,
        EventKind::Session {
            change: C::Frozen, ..
        } => 7,
        EventKind::Headcount { .. }
        | EventKind::RollCallStarted { .. }
        | EventKind::RollCallAnswered { .. } => 8,
        EventKind::Session {
            change: C::Ended { .. },
            ..
        } => 9,
        EventKind::BroadcastEnded => 10,
    }
}

#[derive(Default, Clone)]
struct OSession {
    ended: bool,
    /// Media (audio counts) has reached the session: any of MediaFlowing, FirstVideoSent,
    /// AudioOnly, VideoResumed was seen.
    flowing: bool,
    audio_only: bool,
    frozen: bool,
}

#[derive(Default)]
struct OPoint {
    sessions: BTreeMap<String, OSession>,
    first_video_after: Option<u32>,
    headcount: Option<Declaration>,
    n_timeouts: u32,
    present: Vec<bool>,
    audio: Vec<bool>,
    frozen: Vec<bool>,
}

impl OPoint {
    fn flags(&self, live: bool) -> (bool, bool, bool) {
        let flowing: Vec<&OSession> = self
            .sessions
            .values()
            .filter(|s| s.flowing && !s.ended)
            .collect();
        let present = live && !flowing.is_empty();
        (
            present,
            present && flowing.iter().all(|s| s.audio_only),
            present && flowing.iter().all(|s| s.frozen),
        )
    }
}

fn runs(v: &[bool], t_start: i64) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut open: Option<i64> = None;
    for (i, b) in v.iter().enumerate() {
        let t = t_start + i as i64;
        match (open, *b) {
            (None, true) => open = Some(t),
            (Some(s), false) => {
                out.push(Interval {
                    start_ms: s,
                    end_ms: t,
                });
                open = None;
            }
            _ => {}
        }
    }
    if let Some(s) = open {
        out.push(Interval {
            start_ms: s,
            end_ms: t_start + v.len() as i64,
        });
    }
    out
}

fn oracle(
    conference: &ConferenceId,
    input: &[Event],
    orgs: &[Organisation],
    points: &[PointInfo],
    as_of: i64,
    grace: i64,
) -> Report {
    // Distinct events by id, first one wins.
    let mut seen = HashSet::new();
    let mut distinct: Vec<&Event> = Vec::new();
    let mut n_dups = 0u64;
    for e in input.iter().filter(|e| &e.conference == conference) {
        if seen.insert(e.event_id) {
            distinct.push(e);
        } else {
            n_dups += 1;
        }
    }
    let mut evs: Vec<&Event> = distinct
        .iter()
        .copied()
        .filter(|e| e.at_ms <= as_of)
        .collect();
    evs.sort_by_key(|e| (e.at_ms, oracle_rank(&e.kind), e.event_id));

    let t_start = evs.first().map_or(as_of, |e| e.at_ms.min(as_of));
    let mut live = false;
    let mut live_v: Vec<bool> = Vec::new();
    let mut pts: BTreeMap<PointId, OPoint> = BTreeMap::new();
    // Register every point that appears in any distinct event (even after the horizon).
    for e in &distinct {
        if let Some(p) = e.point() {
            pts.entry(p.clone()).or_default();
        }
    }
    let mut sessions_seen: BTreeSet<(PointId, String)> = BTreeSet::new();
    let mut idx = 0usize;
    let mut t = t_start;
    loop {
        while idx < evs.len() && evs[idx].at_ms == t {
            let e = evs[idx];
            idx += 1;
            match &e.kind {
                EventKind::BroadcastStarted => live = true,
                EventKind::BroadcastEnded => live = false,
                EventKind::RollCallStarted { .. } | EventKind::RollCallAnswered { .. } => {}
                EventKind::Headcount { point, n_people } => {
                    pts.get_mut(point).unwrap().headcount = Some(Declaration {
                        n_people: *n_people,
                        at_ms: e.at_ms,
                    });
                }
                EventKind::Session {
                    point,
                    session,
                    change,
                } => {
                    let p = pts.get_mut(point).unwrap();
                    let s = p.sessions.entry(session.to_string()).or_default();
                    if s.ended {
                        continue;
                    }
                    sessions_seen.insert((point.clone(), session.to_string()));
                    match change {
                        SessionChange::Started => {}
                        SessionChange::MediaFlowing => s.flowing = true,
                        SessionChange::FirstVideoSent { after_ms } => {
                            s.flowing = true;
                            if p.first_video_after.is_none() {
                                p.first_video_after = Some(*after_ms);
                            }
                        }
                        // Only audio delivered is still delivered: the session counts.
                        SessionChange::AudioOnly => {
                            s.flowing = true;
                            s.audio_only = true;
                        }
                        SessionChange::VideoResumed => {
                            s.flowing = true;
                            s.audio_only = false;
                        }
                        SessionChange::Frozen => s.frozen = true,
                        SessionChange::Unfrozen => s.frozen = false,
                        SessionChange::Ended { reason } => {
                            s.ended = true;
                            if *reason == EndReason::Timeout {
                                p.n_timeouts += 1;
                            }
                        }
                    }
                }
            }
        }
        if t >= as_of {
            break;
        }
        // State during [t, t+1).
        live_v.push(live);
        for p in pts.values_mut() {
            let (a, b, c) = p.flags(live);
            p.present.push(a);
            p.audio.push(b);
            p.frozen.push(c);
        }
        t += 1;
    }

    let live_iv = runs(&live_v, t_start);
    let live_ms: i64 = live_v.iter().filter(|b| **b).count() as i64;
    let b_start = live_iv.first().map(|i| i.start_ms);
    let b_end = if live {
        None
    } else {
        live_iv.last().map(|i| i.end_ms)
    };

    let mut rows_by_point: BTreeMap<PointId, PointRow> = BTreeMap::new();
    for (id, p) in &pts {
        let intervals = runs(&p.present, t_start);
        let present_ms = p.present.iter().filter(|b| **b).count() as i64;
        let (horizon_present, _, _) = p.flags(live);
        let mut gaps = Vec::new();
        for w in intervals.windows(2) {
            gaps.push(w[1].start_ms - w[0].end_ms);
        }
        // Attendances: split where a gap exceeds the grace window.
        let mut attendances: Vec<Interval> = Vec::new();
        for (i, iv) in intervals.iter().enumerate() {
            if i > 0 && gaps[i - 1] <= grace {
                attendances.last_mut().unwrap().end_ms = iv.end_ms;
            } else {
                attendances.push(*iv);
            }
        }
        let first = intervals.first().map(|i| i.start_ms);
        rows_by_point.insert(
            id.clone(),
            PointRow {
                point: id.clone(),
                registered: false,
                name: String::new(),
                org: None,
                org_name: String::new(),
                location: String::new(),
                expected_headcount: None,
                connected: present_ms > 0,
                first_join_ms: first,
                last_leave_ms: if horizon_present {
                    None
                } else {
                    intervals.last().map(|i| i.end_ms)
                },
                present_at_horizon: horizon_present,
                present_ms,
                percent_of_broadcast: if live_ms > 0 {
                    present_ms as f64 * 100.0 / live_ms as f64
                } else {
                    0.0
                },
                attendances,
                interruptions: gaps.iter().filter(|g| **g <= grace).count() as u32,
                absences: gaps.iter().filter(|g| **g > grace).count() as u32,
                longest_gap_ms: gaps.iter().copied().max(),
                late_join_ms: match (first, b_start) {
                    (Some(f), Some(b)) => Some(if f > b { f - b } else { 0 }),
                    _ => None,
                },
                audio_only_ms: p.audio.iter().filter(|b| **b).count() as i64,
                frozen_ms: p.frozen.iter().filter(|b| **b).count() as i64,
                first_video_after_ms: p.first_video_after,
                headcount: p.headcount,
                n_sessions: sessions_seen.iter().filter(|(q, _)| q == id).count() as u32,
                n_timeouts: p.n_timeouts,
                relays: vec![],
                intervals,
            },
        );
    }

    let org_name: HashMap<&OrgId, &String> = orgs.iter().map(|o| (&o.id, &o.name)).collect();
    let mut registered = Vec::new();
    for info in points {
        let mut r = rows_by_point.remove(&info.id).unwrap_or_else(|| PointRow {
            point: info.id.clone(),
            registered: false,
            name: String::new(),
            org: None,
            org_name: String::new(),
            location: String::new(),
            expected_headcount: None,
            connected: false,
            first_join_ms: None,
            last_leave_ms: None,
            present_at_horizon: false,
            present_ms: 0,
            percent_of_broadcast: 0.0,
            attendances: vec![],
            intervals: vec![],
            interruptions: 0,
            absences: 0,
            longest_gap_ms: None,
            late_join_ms: None,
            audio_only_ms: 0,
            frozen_ms: 0,
            first_video_after_ms: None,
            headcount: None,
            n_sessions: 0,
            n_timeouts: 0,
            relays: vec![],
        });
        r.registered = true;
        r.name = info.name.clone();
        r.org = Some(info.org.clone());
        r.org_name = org_name[&info.org].clone();
        r.location = info.location.clone();
        r.expected_headcount = info.expected_headcount;
        registered.push(r);
    }
    registered.sort_by_key(|r| (r.org.clone(), r.point.clone()));

    let mut org_rows = Vec::new();
    for o in orgs {
        let mine: Vec<&PointRow> = registered
            .iter()
            .filter(|r| r.org.as_ref() == Some(&o.id))
            .collect();
        let connected: Vec<&&PointRow> = mine.iter().filter(|r| r.connected).collect();
        org_rows.push(OrgRow {
            org: o.id.clone(),
            name: o.name.clone(),
            n_points: mine.len() as u32,
            n_points_connected: connected.len() as u32,
            headcount: connected
                .iter()
                .map(|r| u64::from(r.headcount.map_or(0, |d| d.n_people)))
                .sum(),
            missing: mine
                .iter()
                .filter(|r| !r.connected)
                .map(|r| (r.point.clone(), r.name.clone()))
                .collect(),
        });
    }
    org_rows.sort_by(|a, b| a.org.cmp(&b.org));

    Report {
        conference: conference.clone(),
        as_of_ms: as_of,
        grace_ms: grace,
        broadcast_start_ms: b_start,
        broadcast_end_ms: b_end,
        broadcast_live_ms: live_ms,
        live: live_iv,
        n_orgs: org_rows.len() as u32,
        n_orgs_connected: org_rows.iter().filter(|o| o.n_points_connected > 0).count() as u32,
        n_points: registered.len() as u32,
        n_points_connected: registered.iter().filter(|r| r.connected).count() as u32,
        total_headcount: org_rows.iter().map(|o| o.headcount).sum(),
        total_expected_headcount: points
            .iter()
            .map(|p| u64::from(p.expected_headcount.unwrap_or(0)))
            .sum(),
        points: registered,
        unregistered: rows_by_point.into_values().collect(),
        orgs: org_rows,
        n_events: distinct.len() as u64,
        n_duplicates: n_dups,
        // The generator makes no roll calls (they have their own tests).
        roll_calls: Vec::new(),
        store_outages: Vec::new(),
    }
}

// ----- random histories -----

fn registry() -> (Vec<Organisation>, Vec<PointInfo>) {
    let orgs = vec![
        Organisation {
            id: OrgId::parse("o0").unwrap(),
            name: "Đơn vị 0".into(),
        },
        Organisation {
            id: OrgId::parse("o1").unwrap(),
            name: "Đơn vị 1".into(),
        },
        Organisation {
            id: OrgId::parse("o2").unwrap(),
            name: "Đơn vị 2".into(),
        },
    ];
    // p0..p3 registered; p4 appears in events unregistered; o2 has no points.
    let points = (0..4)
        .map(|i| PointInfo {
            id: PointId::parse(&format!("p{i}")).unwrap(),
            org: OrgId::parse(if i < 2 { "o0" } else { "o1" }).unwrap(),
            name: format!("Điểm cầu {i}"),
            location: String::new(),
            expected_headcount: Some(10 * i),
        })
        .collect();
    (orgs, points)
}

#[derive(Debug, Clone)]
enum Step {
    Live(bool),
    Head(u8, u32),
    Sess(u8, u8, u8, u32),
}

fn step() -> impl Strategy<Value = (i64, Step)> {
    let kind = prop_oneof![
        1 => any::<bool>().prop_map(Step::Live),
        1 => (0u8..5, 0u32..60).prop_map(|(p, n)| Step::Head(p, n)),
        10 => (0u8..5, 0u8..3, 0u8..12, 0u32..5000).prop_map(|(p, s, c, v)| Step::Sess(p, s, c, v)),
    ];
    // Coarse times make same-millisecond ties frequent.
    (
        prop_oneof![0i64..SPAN, (0i64..15).prop_map(|x| x * 100)],
        kind,
    )
}

fn to_event(conference: &ConferenceId, id: u128, at: i64, s: &Step) -> Event {
    let point = |p: u8| PointId::parse(&format!("p{p}")).unwrap();
    let kind = match s {
        Step::Live(true) => EventKind::BroadcastStarted,
        Step::Live(false) => EventKind::BroadcastEnded,
        Step::Head(p, n) => EventKind::Headcount {
            point: point(*p),
            n_people: *n,
        },
        Step::Sess(p, s, c, v) => EventKind::Session {
            point: point(*p),
            session: SessionId(*s as u128),
            change: match c {
                0 => SessionChange::Started,
                1 | 2 => SessionChange::MediaFlowing,
                3 => SessionChange::FirstVideoSent { after_ms: *v },
                4 => SessionChange::AudioOnly,
                5 => SessionChange::VideoResumed,
                6 => SessionChange::Frozen,
                7 => SessionChange::Unfrozen,
                8 => SessionChange::Ended {
                    reason: EndReason::Deleted,
                },
                9 => SessionChange::Ended {
                    reason: EndReason::Timeout,
                },
                10 => SessionChange::Ended {
                    reason: EndReason::RelayLost,
                },
                _ => SessionChange::Ended {
                    reason: EndReason::Error,
                },
            },
        },
    };
    Event {
        event_id: EventId(id),
        conference: conference.clone(),
        at_ms: T0 + at,
        kind,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn fold_equals_oracle(
        steps in prop::collection::vec(step(), 0..80),
        dup_picks in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        order_seed in any::<u64>(),
        as_of in 0i64..SPAN + 200,
        grace in prop_oneof![Just(0i64), 1i64..400, (1i64..5).prop_map(|x| x * 100)],
    ) {
        let conference = ConferenceId::parse("c").unwrap();
        let mut events: Vec<Event> = steps
            .iter()
            .enumerate()
            .map(|(i, (at, s))| to_event(&conference, (i as u128 + 1) * 0x9e37_79b9, *at, s))
            .collect();
        if !events.is_empty() {
            for ix in &dup_picks {
                let e = events[ix.index(events.len())].clone();
                events.push(e);
            }
        }
        // Deterministic shuffle from the seed (xorshift).
        let mut x = order_seed | 1;
        for i in (1..events.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            events.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let (orgs, points) = registry();
        let cfg = ReportConfig { grace_ms: grace };
        let got = build_report(&fold(conference.clone(), &events, T0 + as_of), &orgs, &points, &cfg);
        let want = oracle(&conference, &events, &orgs, &points, T0 + as_of, grace);
        prop_assert_eq!(got, want);
    }
}

/// A hand-made history also agrees (guards the oracle itself against vacuity).
#[test]
fn oracle_agrees_on_a_restart_history() {
    let c = ConferenceId::parse("c").unwrap();
    let steps = [
        (0, Step::Live(true)),
        (10, Step::Sess(0, 0, 1, 0)),
        (500, Step::Sess(0, 0, 10, 0)),
        (500, Step::Live(false)),
        (520, Step::Live(true)),
        (530, Step::Sess(0, 1, 1, 0)),
        (900, Step::Sess(1, 0, 3, 700)),
        // p2 only ever receives audio (AudioOnly, no MediaFlowing): present, all audio-only.
        (100, Step::Sess(2, 0, 0, 0)),
        (150, Step::Sess(2, 0, 4, 0)),
        (350, Step::Sess(2, 0, 8, 0)),
        (1000, Step::Live(false)),
    ];
    let events: Vec<Event> = steps
        .iter()
        .enumerate()
        .map(|(i, (at, s))| to_event(&c, i as u128 + 1, *at, s))
        .collect();
    let (orgs, points) = registry();
    let cfg = ReportConfig { grace_ms: 60 };
    let want = oracle(&c, &events, &orgs, &points, T0 + 1200, 60);
    let got = build_report(&fold(c, &events, T0 + 1200), &orgs, &points, &cfg);
    assert_eq!(got, want);
    let p0 = got
        .points
        .iter()
        .find(|r| r.point.as_str() == "p0")
        .unwrap();
    assert_eq!(p0.interruptions, 1);
    assert_eq!(p0.attendances.len(), 1);
    assert_eq!(p0.present_ms, 490 + 470);
    let p1 = got
        .points
        .iter()
        .find(|r| r.point.as_str() == "p1")
        .unwrap();
    assert_eq!(p1.first_video_after_ms, Some(700));
    let p2 = got
        .points
        .iter()
        .find(|r| r.point.as_str() == "p2")
        .unwrap();
    assert!(p2.connected);
    assert_eq!(p2.present_ms, 200);
    assert_eq!(p2.audio_only_ms, 200);
    assert_eq!(got.n_points_connected, 3);
}
