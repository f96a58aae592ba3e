//! Roll calls (điểm danh) folded: for each roll call of a conference, each point's outcome —
//! answered (people, when), no answer, or not connected (sans-IO).
//!
//! Meaning:
//! * A roll call runs from its `RollCallStarted` event's `at_ms` to its `deadline_ms`
//!   inclusive; its id is that event's id.
//! * An answer counts when it names a known roll call of the conference and its `at_ms` is
//!   within the roll call's window; the latest one (by `at_ms`, then event id) wins. The
//!   HTTP layer refuses answers after the deadline; the fold ignores them as well.
//! * A point that did not answer was *connected* when one of its WHEP sessions was open at
//!   some instant of the window (up to the horizon while the roll call runs): from the
//!   session's earliest event to its `Ended` (exclusive), or open at the horizon. A session
//!   is what carries the prompt to the viewer page, whether or not the hall feed was live,
//!   so a point that dropped and rejoined during the countdown counts as connected. Such a
//!   point is *no answer*; any other is *not connected*.
//! * Like the presence fold, the result depends only on the set of distinct events and the
//!   horizon: any order, any number of repeats.

use std::collections::{BTreeMap, BTreeSet};

use super::event::{Event, EventKind, SessionChange};
use super::ids::{ConferenceId, OrgId, PointId, RollCallId, SessionId};
use super::report::{Organisation, PointInfo};

/// One point's outcome in one roll call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollCallOutcome {
    /// The point confirmed its presence with `n_people` people at `at_ms`.
    Answered { n_people: u32, at_ms: i64 },
    /// The point was connected during the roll call but did not answer (yet, while it runs).
    NoAnswer,
    /// The point had no open session during the roll call.
    NotConnected,
}

impl RollCallOutcome {
    /// Stable name: `answered`, `no_answer`, `not_connected`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RollCallOutcome::Answered { .. } => "answered",
            RollCallOutcome::NoAnswer => "no_answer",
            RollCallOutcome::NotConnected => "not_connected",
        }
    }
}

/// One point's line in a roll call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollCallPoint {
    pub point: PointId,
    /// `false` for a point that answered or connected but is not in the registry.
    pub registered: bool,
    pub name: String,
    pub org: Option<OrgId>,
    pub org_name: String,
    pub outcome: RollCallOutcome,
}

/// One roll call with every point's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollCall {
    pub id: RollCallId,
    pub started_ms: i64,
    pub deadline_ms: i64,
    /// The horizon is before the deadline: answers may still come.
    pub running: bool,
    /// Registered points by organisation then point, then unregistered ones by id.
    pub points: Vec<RollCallPoint>,
}

impl RollCall {
    fn count(&self, f: impl Fn(&RollCallOutcome) -> bool) -> u32 {
        self.points.iter().filter(|p| f(&p.outcome)).count() as u32
    }

    pub fn n_answered(&self) -> u32 {
        self.count(|o| matches!(o, RollCallOutcome::Answered { .. }))
    }

    pub fn n_no_answer(&self) -> u32 {
        self.count(|o| matches!(o, RollCallOutcome::NoAnswer))
    }

    pub fn n_not_connected(&self) -> u32 {
        self.count(|o| matches!(o, RollCallOutcome::NotConnected))
    }

    /// People declared by the points that answered.
    pub fn n_people(&self) -> u64 {
        self.points
            .iter()
            .map(|p| match p.outcome {
                RollCallOutcome::Answered { n_people, .. } => u64::from(n_people),
                _ => 0,
            })
            .sum()
    }
}

/// The roll calls of `conference` at the horizon `as_of_ms`, oldest first, joined with the
/// registry. Events of other conferences and events after the horizon are ignored.
pub fn roll_calls(
    conference: &ConferenceId,
    events: &[Event],
    orgs: &[Organisation],
    points: &[PointInfo],
    as_of_ms: i64,
) -> Vec<RollCall> {
    let mut seen: BTreeSet<u128> = BTreeSet::new();
    // (point, session) -> (first event, end)
    let mut sessions: BTreeMap<(&PointId, SessionId), (i64, Option<i64>)> = BTreeMap::new();
    let mut calls: BTreeMap<RollCallId, (i64, i64)> = BTreeMap::new();
    // (roll call, point) -> (at_ms, event id, n_people) of every answer; filtered below.
    let mut answers: Vec<(RollCallId, &PointId, i64, u128, u32)> = Vec::new();
    for ev in events {
        if &ev.conference != conference || ev.at_ms > as_of_ms || !seen.insert(ev.event_id.0) {
            continue;
        }
        match &ev.kind {
            EventKind::Session {
                point,
                session,
                change,
            } => {
                let s = sessions
                    .entry((point, *session))
                    .or_insert((ev.at_ms, None));
                s.0 = s.0.min(ev.at_ms);
                if matches!(change, SessionChange::Ended { .. }) {
                    s.1 = Some(s.1.map_or(ev.at_ms, |e: i64| e.min(ev.at_ms)));
                }
            }
            EventKind::RollCallStarted { deadline_ms } => {
                calls.insert(ev.event_id.into(), (ev.at_ms, *deadline_ms));
            }
            EventKind::RollCallAnswered {
                point,
                rollcall,
                n_people,
            } => answers.push((*rollcall, point, ev.at_ms, ev.event_id.0, *n_people)),
            EventKind::BroadcastStarted
            | EventKind::BroadcastEnded
            | EventKind::Headcount { .. } => {}
        }
    }

    let mut best: BTreeMap<(RollCallId, &PointId), (i64, u128, u32)> = BTreeMap::new();
    for (rc, point, at_ms, id, n) in answers {
        let Some(&(start, deadline)) = calls.get(&rc) else {
            continue;
        };
        if at_ms < start || at_ms > deadline {
            continue;
        }
        let e = best.entry((rc, point)).or_insert((at_ms, id, n));
        if (at_ms, id) > (e.0, e.1) {
            *e = (at_ms, id, n);
        }
    }

    let org_names: BTreeMap<&OrgId, &str> = orgs.iter().map(|o| (&o.id, o.name.as_str())).collect();
    let mut registered: Vec<&PointInfo> = points.iter().collect();
    registered.sort_by(|a, b| (&a.org, &a.id).cmp(&(&b.org, &b.id)));
    let known: BTreeSet<&PointId> = points.iter().map(|p| &p.id).collect();

    let mut out: Vec<RollCall> = calls
        .iter()
        .map(|(&id, &(started_ms, deadline_ms))| {
            let end = deadline_ms.min(as_of_ms);
            let connected = |p: &PointId| {
                sessions
                    .range((p, SessionId(0))..=(p, SessionId(u128::MAX)))
                    .any(|(_, &(first, ended))| {
                        first <= end && ended.is_none_or(|e| e > started_ms)
                    })
            };
            let outcome = |p: &PointId| match best.get(&(id, p)) {
                Some(&(at_ms, _, n_people)) => RollCallOutcome::Answered { n_people, at_ms },
                None if connected(p) => RollCallOutcome::NoAnswer,
                None => RollCallOutcome::NotConnected,
            };
            let mut rows: Vec<RollCallPoint> = registered
                .iter()
                .map(|info| RollCallPoint {
                    point: info.id.clone(),
                    registered: true,
                    name: info.name.clone(),
                    org: Some(info.org.clone()),
                    org_name: org_names
                        .get(&info.org)
                        .map_or_else(|| info.org.to_string(), |n| (*n).to_owned()),
                    outcome: outcome(&info.id),
                })
                .collect();
            let others: BTreeSet<&PointId> = best
                .keys()
                .filter(|(rc, _)| *rc == id)
                .map(|(_, p)| *p)
                .chain(sessions.keys().map(|(p, _)| *p).filter(|p| connected(p)))
                .filter(|p| !known.contains(p))
                .collect();
            rows.extend(others.into_iter().map(|p| RollCallPoint {
                point: p.clone(),
                registered: false,
                name: String::new(),
                org: None,
                org_name: String::new(),
                outcome: outcome(p),
            }));
            RollCall {
                id,
                started_ms,
                deadline_ms,
                running: as_of_ms < deadline_ms,
                points: rows,
            }
        })
        .collect();
    out.sort_by_key(|r| (r.started_ms, r.id));
    out
}

/// The roll call running at `now_ms` (the latest started whose deadline is not past), from
/// [`roll_calls`]' result.
pub fn running(calls: &[RollCall]) -> Option<&RollCall> {
    calls.iter().rev().find(|r| r.running)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::{EndReason, EventId};

    fn c() -> ConferenceId {
        ConferenceId::parse("c").unwrap()
    }
    fn p(s: &str) -> PointId {
        PointId::parse(s).unwrap()
    }
    fn ev(id: u128, at_ms: i64, kind: EventKind) -> Event {
        Event {
            event_id: EventId(id),
            conference: c(),
            at_ms,
            kind,
        }
    }
    fn sess(id: u128, at_ms: i64, point: &str, s: u128, change: SessionChange) -> Event {
        ev(
            id,
            at_ms,
            EventKind::Session {
                point: p(point),
                session: SessionId(s),
                change,
            },
        )
    }
    fn registry() -> (Vec<Organisation>, Vec<PointInfo>) {
        let org = OrgId::parse("o").unwrap();
        let points = ["a", "b", "d"]
            .iter()
            .map(|id| PointInfo {
                id: p(id),
                org: org.clone(),
                name: format!("Point {id}"),
                location: String::new(),
                expected_headcount: None,
            })
            .collect();
        (
            vec![Organisation {
                id: org,
                name: "Org".into(),
            }],
            points,
        )
    }

    /// a answers, b is connected and ignores it, d closed its page before the roll call.
    fn scenario() -> Vec<Event> {
        let ended = SessionChange::Ended {
            reason: EndReason::Deleted,
        };
        vec![
            sess(1, 1_000, "a", 10, SessionChange::Started),
            sess(2, 1_000, "b", 20, SessionChange::Started),
            sess(3, 1_000, "d", 30, SessionChange::Started),
            sess(4, 5_000, "d", 30, ended),
            ev(
                100,
                10_000,
                EventKind::RollCallStarted {
                    deadline_ms: 70_000,
                },
            ),
            ev(
                5,
                20_000,
                EventKind::RollCallAnswered {
                    point: p("a"),
                    rollcall: RollCallId(100),
                    n_people: 12,
                },
            ),
        ]
    }

    fn outcomes(r: &RollCall) -> Vec<(&str, RollCallOutcome)> {
        r.points
            .iter()
            .map(|x| (x.point.as_str(), x.outcome))
            .collect()
    }

    #[test]
    fn answered_no_answer_not_connected() {
        let (orgs, points) = registry();
        let calls = roll_calls(&c(), &scenario(), &orgs, &points, 80_000);
        assert_eq!(calls.len(), 1);
        let r = &calls[0];
        assert_eq!(r.id, RollCallId(100));
        assert_eq!(
            (r.started_ms, r.deadline_ms, r.running),
            (10_000, 70_000, false)
        );
        assert_eq!(
            outcomes(r),
            vec![
                (
                    "a",
                    RollCallOutcome::Answered {
                        n_people: 12,
                        at_ms: 20_000
                    }
                ),
                ("b", RollCallOutcome::NoAnswer),
                ("d", RollCallOutcome::NotConnected),
            ]
        );
        assert_eq!(
            (r.n_answered(), r.n_no_answer(), r.n_not_connected()),
            (1, 1, 1)
        );
        assert_eq!(r.n_people(), 12);
        assert!(running(&calls).is_none());
        // While it runs.
        let calls = roll_calls(&c(), &scenario(), &orgs, &points, 30_000);
        assert!(calls[0].running);
        assert_eq!(running(&calls).map(|r| r.id), Some(RollCallId(100)));
    }

    #[test]
    fn order_and_repeats_do_not_matter() {
        let (orgs, points) = registry();
        let events = scenario();
        let want = roll_calls(&c(), &events, &orgs, &points, 80_000);
        let mut shuffled: Vec<Event> = events.iter().rev().cloned().collect();
        shuffled.extend(events.iter().cloned());
        assert_eq!(roll_calls(&c(), &shuffled, &orgs, &points, 80_000), want);
    }

    #[test]
    fn late_answers_and_unknown_roll_calls_are_ignored_latest_answer_wins() {
        let (orgs, points) = registry();
        let mut events = scenario();
        let answer = |id: u128, at: i64, rc: u128, point: &str, n: u32| {
            ev(
                id,
                at,
                EventKind::RollCallAnswered {
                    point: p(point),
                    rollcall: RollCallId(rc),
                    n_people: n,
                },
            )
        };
        events.push(answer(6, 30_000, 100, "a", 14)); // a corrects itself
        events.push(answer(7, 70_001, 100, "b", 3)); // too late
        events.push(answer(8, 30_000, 999, "b", 3)); // no such roll call
        let calls = roll_calls(&c(), &events, &orgs, &points, 80_000);
        assert_eq!(
            outcomes(&calls[0])[..2],
            [
                (
                    "a",
                    RollCallOutcome::Answered {
                        n_people: 14,
                        at_ms: 30_000
                    }
                ),
                ("b", RollCallOutcome::NoAnswer),
            ]
        );
    }

    #[test]
    fn a_point_that_rejoins_during_the_countdown_is_connected() {
        let (orgs, points) = registry();
        let mut events = scenario();
        // d comes back during the countdown with a new session.
        events.push(sess(9, 40_000, "d", 31, SessionChange::Started));
        let calls = roll_calls(&c(), &events, &orgs, &points, 80_000);
        assert_eq!(outcomes(&calls[0])[2], ("d", RollCallOutcome::NoAnswer));
        // A session that ended exactly when the roll call started was not connected.
        let mut events = scenario();
        events.push(sess(
            11,
            10_000,
            "b",
            20,
            SessionChange::Ended {
                reason: EndReason::Timeout,
            },
        ));
        let calls = roll_calls(&c(), &events, &orgs, &points, 80_000);
        assert_eq!(outcomes(&calls[0])[1], ("b", RollCallOutcome::NotConnected));
    }

    #[test]
    fn unregistered_points_that_answered_are_listed_after_the_registry() {
        let (orgs, points) = registry();
        let mut events = scenario();
        events.push(ev(
            12,
            15_000,
            EventKind::RollCallAnswered {
                point: p("zz"),
                rollcall: RollCallId(100),
                n_people: 2,
            },
        ));
        let calls = roll_calls(&c(), &events, &orgs, &points, 80_000);
        let last = calls[0].points.last().unwrap();
        assert_eq!((last.point.as_str(), last.registered), ("zz", false));
    }
}
