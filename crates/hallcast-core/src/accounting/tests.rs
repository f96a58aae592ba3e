//! Scripted histories → exactly the expected report.

use super::*;

const S: i64 = 1000;
const T0: i64 = 1_700_000_000_000;

struct H {
    conf: ConferenceId,
    evs: Vec<Event>,
    next: u128,
}

impl H {
    fn new() -> Self {
        Self {
            conf: ConferenceId::parse("hn-2025").unwrap(),
            evs: Vec::new(),
            next: 1,
        }
    }
    fn push(&mut self, at_s: i64, kind: EventKind) -> &mut Self {
        self.evs.push(Event {
            event_id: EventId(
                self.next
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
            ),
            conference: self.conf.clone(),
            at_ms: T0 + at_s * S,
            kind,
        });
        self.next += 1;
        self
    }
    fn live(&mut self, at_s: i64) -> &mut Self {
        self.push(at_s, EventKind::BroadcastStarted)
    }
    fn gone(&mut self, at_s: i64) -> &mut Self {
        self.push(at_s, EventKind::BroadcastEnded)
    }
    fn s(&mut self, at_s: i64, point: &str, session: &str, change: SessionChange) -> &mut Self {
        self.push(
            at_s,
            EventKind::Session {
                point: PointId::parse(point).unwrap(),
                session: test_session(session),
                change,
            },
        )
    }
    /// Started + MediaFlowing at the same second.
    fn join(&mut self, at_s: i64, point: &str, session: &str) -> &mut Self {
        self.s(at_s, point, session, SessionChange::Started).s(
            at_s,
            point,
            session,
            SessionChange::MediaFlowing,
        )
    }
    fn end(&mut self, at_s: i64, point: &str, session: &str, reason: EndReason) -> &mut Self {
        self.s(at_s, point, session, SessionChange::Ended { reason })
    }
    fn heads(&mut self, at_s: i64, point: &str, n: u32) -> &mut Self {
        self.push(
            at_s,
            EventKind::Headcount {
                point: PointId::parse(point).unwrap(),
                n_people: n,
            },
        )
    }
    fn report(&self, as_of_s: i64) -> Report {
        let presence = fold(self.conf.clone(), &self.evs, T0 + as_of_s * S);
        build_report(&presence, &orgs(), &points(), &ReportConfig::default())
    }
}

fn orgs() -> Vec<Organisation> {
    vec![
        Organisation {
            id: OrgId::parse("ha-noi").unwrap(),
            name: "Đảng ủy Hà Nội".into(),
        },
        Organisation {
            id: OrgId::parse("hue").unwrap(),
            name: "Đảng ủy Huế".into(),
        },
        Organisation {
            id: OrgId::parse("can-tho").unwrap(),
            name: "Đảng ủy Cần Thơ".into(),
        },
    ]
}

fn points() -> Vec<PointInfo> {
    let p = |id: &str, org: &str, n: u32| PointInfo {
        id: PointId::parse(id).unwrap(),
        org: OrgId::parse(org).unwrap(),
        name: format!("Điểm cầu {id}"),
        location: "Phòng họp số 1".into(),
        expected_headcount: Some(n),
    };
    vec![
        p("hn-1", "ha-noi", 30),
        p("hn-2", "ha-noi", 20),
        p("hue-1", "hue", 25),
        p("ct-1", "can-tho", 10),
    ]
}

fn row<'a>(r: &'a Report, id: &str) -> &'a PointRow {
    r.points
        .iter()
        .chain(&r.unregistered)
        .find(|p| p.point.as_str() == id)
        .unwrap()
}

fn iv(a_s: i64, b_s: i64) -> Interval {
    Interval {
        start_ms: T0 + a_s * S,
        end_ms: T0 + b_s * S,
    }
}

#[test]
fn joins_and_leaves() {
    let mut h = H::new();
    h.live(0)
        .join(0, "hn-1", "a")
        .s(8, "hn-2", "b", SessionChange::Started)
        .s(
            10,
            "hn-2",
            "b",
            SessionChange::FirstVideoSent { after_ms: 640 },
        )
        .heads(12, "hn-2", 18)
        .end(1800, "hn-2", "b", EndReason::Deleted)
        .heads(20, "hue-1", 99) // declared but never received media
        .s(20, "hue-1", "c", SessionChange::Started)
        .end(25, "hue-1", "c", EndReason::Error)
        .gone(3600);
    let r = h.report(4000);

    assert_eq!(r.broadcast_start_ms, Some(T0));
    assert_eq!(r.broadcast_end_ms, Some(T0 + 3600 * S));
    assert_eq!(r.broadcast_live_ms, 3600 * S);
    assert_eq!((r.n_points_connected, r.n_points), (2, 4));
    assert_eq!((r.n_orgs_connected, r.n_orgs), (1, 3));
    assert_eq!(r.total_headcount, 18);
    assert_eq!(r.total_expected_headcount, 85);

    // A session still open when the broadcast ends stops counting at the broadcast end.
    let a = row(&r, "hn-1");
    assert_eq!(a.intervals, vec![iv(0, 3600)]);
    assert_eq!(a.first_join_ms, Some(T0));
    assert_eq!(a.last_leave_ms, Some(T0 + 3600 * S));
    assert_eq!(a.present_ms, 3600 * S);
    assert_eq!(a.percent_of_broadcast, 100.0);
    assert_eq!(a.late_join_ms, Some(0));
    assert!(!a.present_at_horizon);

    let b = row(&r, "hn-2");
    assert_eq!(b.intervals, vec![iv(10, 1800)]);
    assert_eq!(b.attendances, vec![iv(10, 1800)]);
    assert_eq!(b.late_join_ms, Some(10 * S));
    assert_eq!(b.first_video_after_ms, Some(640));
    assert_eq!(b.headcount.map(|d| d.n_people), Some(18));
    assert_eq!(
        (b.interruptions, b.absences, b.longest_gap_ms),
        (0, 0, None)
    );
    assert_eq!(b.n_sessions, 1);

    let c = row(&r, "hue-1");
    assert!(!c.connected);
    assert_eq!(c.n_sessions, 1);
    assert_eq!(c.headcount.map(|d| d.n_people), Some(99));

    let missing: Vec<(&str, Vec<&str>)> = r
        .missing()
        .map(|o| {
            (
                o.org.as_str(),
                o.missing.iter().map(|(p, _)| p.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        missing,
        vec![("can-tho", vec!["ct-1"]), ("hue", vec!["hue-1"])]
    );
}

#[test]
fn flaps_merge_within_grace_and_split_beyond() {
    let mut h = H::new();
    h.live(0)
        .join(0, "hn-1", "s1")
        .end(100, "hn-1", "s1", EndReason::Timeout)
        .join(130, "hn-1", "s2") // 30 s gap: interruption
        .end(200, "hn-1", "s2", EndReason::Deleted)
        .join(260, "hn-1", "s3") // exactly 60 s: still within grace
        .end(300, "hn-1", "s3", EndReason::Deleted)
        .join(500, "hn-1", "s4") // 200 s gap: left and came back
        .end(600, "hn-1", "s4", EndReason::Deleted)
        .gone(1000);
    let r = h.report(1000);
    let a = row(&r, "hn-1");
    assert_eq!(
        a.intervals,
        vec![iv(0, 100), iv(130, 200), iv(260, 300), iv(500, 600)]
    );
    assert_eq!(a.attendances, vec![iv(0, 300), iv(500, 600)]);
    assert_eq!(a.interruptions, 2);
    assert_eq!(a.absences, 1);
    assert_eq!(a.longest_gap_ms, Some(200 * S));
    assert_eq!(a.present_ms, 310 * S);
    assert_eq!(a.n_sessions, 4);
    assert_eq!(a.n_timeouts, 1);
    assert_eq!(a.last_leave_ms, Some(T0 + 600 * S));
}

#[test]
fn crash_without_delete_is_ended_by_timeout() {
    let mut h = H::new();
    h.live(0)
        .join(5, "hue-1", "x")
        // The browser's machine lost power at 900 s; the relay noticed 10 s later.
        .end(910, "hue-1", "x", EndReason::Timeout)
        .gone(1200);
    let r = h.report(1200);
    let p = row(&r, "hue-1");
    assert_eq!(p.intervals, vec![iv(5, 910)]);
    assert_eq!(p.n_timeouts, 1);
    assert_eq!(p.last_leave_ms, Some(T0 + 910 * S));
    assert_eq!(p.late_join_ms, Some(5 * S));
}

#[test]
fn relay_restart_gives_one_interrupted_presence_per_point() {
    // The relay crashed at 1000 s. On restart the ledger closes the lost sessions and the
    // broadcast at the node's last heartbeat (RelayLost); the publisher and the points come back.
    let mut h = H::new();
    h.live(0).join(0, "hn-1", "a1").join(3, "hue-1", "b1");
    h.end(1000, "hn-1", "a1", EndReason::RelayLost)
        .end(1000, "hue-1", "b1", EndReason::RelayLost)
        .gone(1000)
        .live(1020)
        .join(1025, "hn-1", "a2")
        .join(1030, "hue-1", "b2")
        .gone(2000);
    let r = h.report(2000);
    for (id, start, back) in [("hn-1", 0, 1025), ("hue-1", 3, 1030)] {
        let p = row(&r, id);
        assert_eq!(p.attendances, vec![iv(start, 2000)], "{id}");
        assert_eq!(p.intervals, vec![iv(start, 1000), iv(back, 2000)], "{id}");
        assert_eq!(p.interruptions, 1, "{id}");
        assert_eq!(p.absences, 0, "{id}");
        assert_eq!(p.longest_gap_ms, Some((back - 1000) * S), "{id}");
        assert_eq!(p.n_sessions, 2, "{id}");
    }
    assert_eq!(r.broadcast_live_ms, 1980 * S);
    assert_eq!(r.live, vec![iv(0, 1000), iv(1020, 2000)]);
    assert_eq!(r.n_points_connected, 2);
}

#[test]
fn relay_restart_without_recovery_still_counts_one_attendance() {
    // Same crash, but nothing closed the lost sessions (no ledger recovery): they stay open,
    // the new sessions overlap them, and the point still counts once.
    let mut h = H::new();
    h.live(0)
        .join(0, "hn-1", "a1")
        .live(1020) // the publisher is back; the broadcast never looked gone
        .join(1025, "hn-1", "a2")
        .gone(2000);
    let r = h.report(2000);
    let p = row(&r, "hn-1");
    assert_eq!(p.attendances, vec![iv(0, 2000)]);
    assert_eq!(p.n_sessions, 2);
    assert_eq!(r.n_points_connected, 1);
}

#[test]
fn order_and_duplicates_do_not_matter() {
    let mut h = H::new();
    h.live(0)
        .join(0, "hn-1", "a")
        .s(40, "hn-1", "a", SessionChange::AudioOnly)
        .s(70, "hn-1", "a", SessionChange::VideoResumed)
        .end(100, "hn-1", "a", EndReason::Timeout)
        .join(110, "hn-1", "b")
        .heads(5, "hn-1", 10)
        .heads(50, "hn-1", 12)
        .gone(200);
    let expected = h.report(300);
    let mut shuffled = h.evs.clone();
    shuffled.reverse();
    shuffled.rotate_left(3);
    let dups: Vec<Event> = h.evs.iter().step_by(2).cloned().collect();
    shuffled.extend(dups);
    let mut f = Folder::new(h.conf.clone());
    f.extend(&shuffled);
    let presence = f.finish(T0 + 300 * S);
    assert_eq!(presence.n_duplicates, 6);
    let got = build_report(&presence, &orgs(), &points(), &ReportConfig::default());
    assert_eq!(
        Report {
            n_duplicates: 0,
            ..got
        },
        expected
    );
    let p = row(&expected, "hn-1");
    assert_eq!(p.headcount.map(|d| d.n_people), Some(12));
    assert_eq!(p.audio_only_ms, 30 * S);
}

#[test]
fn audio_only_and_frozen_follow_the_best_session() {
    let mut h = H::new();
    h.live(0)
        .join(0, "ct-1", "a")
        .s(10, "ct-1", "a", SessionChange::Frozen)
        .s(20, "ct-1", "a", SessionChange::Unfrozen)
        .s(30, "ct-1", "a", SessionChange::AudioOnly)
        .join(40, "ct-1", "b") // a second browser with video: not audio-only any more
        .end(50, "ct-1", "b", EndReason::Deleted)
        .s(60, "ct-1", "a", SessionChange::VideoResumed)
        .gone(100);
    let r = h.report(100);
    let p = row(&r, "ct-1");
    assert_eq!(p.frozen_ms, 10 * S);
    assert_eq!(p.audio_only_ms, 20 * S); // 30..40 and 50..60
    assert_eq!(p.intervals, vec![iv(0, 100)]);
    assert_eq!(p.n_sessions, 2);
}

#[test]
fn events_after_an_end_or_the_horizon_are_ignored() {
    let mut h = H::new();
    h.live(0)
        .join(0, "hn-1", "a")
        .end(10, "hn-1", "a", EndReason::Deleted)
        .s(20, "hn-1", "a", SessionChange::MediaFlowing) // late straggler for an ended session
        .join(50, "hn-2", "b");
    let r = h.report(60);
    assert_eq!(row(&r, "hn-1").intervals, vec![iv(0, 10)]);
    let b = row(&r, "hn-2");
    assert_eq!(b.intervals, vec![iv(50, 60)]);
    assert!(b.present_at_horizon);
    assert_eq!(b.last_leave_ms, None);
    assert_eq!(r.broadcast_end_ms, None);
    // At an earlier horizon, hn-2 has not joined yet.
    let early = h.report(40);
    assert!(!row(&early, "hn-2").connected);
}

#[test]
fn no_presence_while_the_broadcast_is_not_live() {
    let mut h = H::new();
    h.join(0, "hn-1", "a").live(30).gone(60).live(90).gone(120);
    let r = h.report(200);
    let p = row(&r, "hn-1");
    assert_eq!(p.intervals, vec![iv(30, 60), iv(90, 120)]);
    assert_eq!(p.interruptions, 1);
    assert_eq!(p.percent_of_broadcast, 100.0);
    assert_eq!(r.broadcast_start_ms, Some(T0 + 30 * S));
}

#[test]
fn unregistered_points_and_foreign_events_are_kept_apart() {
    let mut h = H::new();
    h.live(0).join(0, "ghost", "g").gone(10);
    let mut other = h.evs[0].clone();
    other.conference = ConferenceId::parse("other").unwrap();
    other.event_id = EventId(7);
    let mut f = Folder::new(h.conf.clone());
    f.extend(&h.evs);
    assert!(!f.push(&other));
    let presence = f.finish(T0 + 10 * S);
    assert_eq!(presence.n_foreign, 1);
    let r = build_report(&presence, &orgs(), &points(), &ReportConfig::default());
    assert_eq!(r.n_points_connected, 0);
    assert_eq!(r.unregistered.len(), 1);
    assert!(r.unregistered[0].connected);
    assert!(!r.unregistered[0].registered);
}

#[test]
fn audio_only_from_the_start_is_present_and_counted_audio_only() {
    // The hall's camera failed: the relay only ever delivers audio to the point. The relay's
    // log holds no MediaFlowing for the session, only AudioOnly.
    let mut h = H::new();
    h.live(0)
        .s(2, "hn-1", "a", SessionChange::Started)
        .s(3, "hn-1", "a", SessionChange::AudioOnly)
        .end(13, "hn-1", "a", EndReason::Deleted)
        .gone(20);
    let r = h.report(30);
    let p = row(&r, "hn-1");
    assert!(p.connected);
    assert_eq!(p.intervals, vec![iv(3, 13)]);
    assert_eq!(p.present_ms, 10 * S);
    assert_eq!(p.audio_only_ms, p.present_ms);
    assert_eq!(p.first_join_ms, Some(T0 + 3 * S));
    assert_eq!(p.first_video_after_ms, None);
    assert_eq!(r.n_points_connected, 1);
}

#[test]
fn audio_only_then_video_resumed_is_present_throughout() {
    // No MediaFlowing at all: audio first, then video arrives (VideoResumed).
    let mut h = H::new();
    h.live(0)
        .s(1, "hue-1", "a", SessionChange::Started)
        .s(2, "hue-1", "a", SessionChange::AudioOnly)
        .s(7, "hue-1", "a", SessionChange::VideoResumed)
        .s(
            7,
            "hue-1",
            "a",
            SessionChange::FirstVideoSent { after_ms: 6000 },
        )
        .end(20, "hue-1", "a", EndReason::Deleted)
        .gone(30);
    let r = h.report(30);
    let p = row(&r, "hue-1");
    assert_eq!(p.intervals, vec![iv(2, 20)]);
    assert_eq!(p.present_ms, 18 * S);
    assert_eq!(p.audio_only_ms, 5 * S);
    assert_eq!(p.first_video_after_ms, Some(6000));
    // A session whose first delivery is VideoResumed alone (its AudioOnly event was lost or
    // is beyond a partial export) is present from there.
    let mut h = H::new();
    h.live(0)
        .s(1, "hue-1", "a", SessionChange::Started)
        .s(4, "hue-1", "a", SessionChange::VideoResumed)
        .gone(10);
    let p = h.report(10);
    let p = row(&p, "hue-1");
    assert_eq!(p.intervals, vec![iv(4, 10)]);
    assert_eq!(p.audio_only_ms, 0);
}

#[test]
fn flowing_then_dropped_to_audio_only_stays_present() {
    // Adaptation drops the point to audio only, then gives video back, then drops it again
    // until it leaves: one presence, the audio-only spells counted.
    let mut h = H::new();
    h.live(0)
        .join(0, "ct-1", "a")
        .s(10, "ct-1", "a", SessionChange::AudioOnly)
        .s(25, "ct-1", "a", SessionChange::VideoResumed)
        .s(40, "ct-1", "a", SessionChange::AudioOnly)
        .end(50, "ct-1", "a", EndReason::Timeout)
        .gone(60);
    let r = h.report(60);
    let p = row(&r, "ct-1");
    assert_eq!(p.intervals, vec![iv(0, 50)]);
    assert_eq!(p.present_ms, 50 * S);
    assert_eq!(p.audio_only_ms, 25 * S); // 10..25 and 40..50
    assert_eq!(p.frozen_ms, 0);
    assert!(!p.present_at_horizon);
}

/// A distinct session id for each test name ("s1", "a", ...): the bytes of the name.
fn test_session(name: &str) -> SessionId {
    assert!(name.len() <= 16, "test session names are at most 16 bytes");
    SessionId(name.bytes().fold(0u128, |acc, b| (acc << 8) | b as u128))
}

#[test]
fn relays_are_named_per_point_sorted_and_deduplicated() {
    let mut h = H::new();
    h.live(0)
        .join(1, "hn-1", "a")
        .join(2, "hue-1", "b")
        .join(3, "ghost-1", "c");
    let plain = h.report(10);
    assert!(plain.points.iter().all(|r| r.relays.is_empty()));
    let pid = |s: &str| PointId::parse(s).unwrap();
    let r = plain.clone().with_relays([
        (pid("hn-1"), "edge-b".to_string()),
        (pid("hn-1"), "central".to_string()),
        (pid("hn-1"), "edge-b".to_string()),
        (pid("hue-1"), "edge-a".to_string()),
        (pid("ghost-1"), "central".to_string()),
        (pid("nowhere"), "edge-z".to_string()),
    ]);
    assert_eq!(row(&r, "hn-1").relays, ["central", "edge-b"]);
    assert_eq!(row(&r, "hue-1").relays, ["edge-a"]);
    assert_eq!(
        row(&r, "ghost-1").relays,
        ["central"],
        "unregistered rows too"
    );
    assert!(row(&r, "hn-2").relays.is_empty());
    // Nothing else changes.
    let mut stripped = r.clone();
    for p in stripped
        .points
        .iter_mut()
        .chain(stripped.unregistered.iter_mut())
    {
        p.relays.clear();
    }
    assert_eq!(stripped, plain);
}

fn outage(node: &str, from_s: i64, to_s: i64, late: u64, dropped: u64) -> StoreOutage {
    StoreOutage {
        node: node.into(),
        from_ms: T0 + from_s * S,
        to_ms: T0 + to_s * S,
        n_stored_late: late,
        n_dropped: dropped,
    }
}

#[test]
fn store_outages_are_kept_only_when_they_overlap_a_live_period() {
    let mut h = H::new();
    h.live(100).gone(200).live(300).join(300, "hn-1", "a");
    let all = vec![
        outage("central", 250, 290, 5, 0),   // between the two live periods
        outage("central", 10, 50, 1, 0),     // before the broadcast
        outage("central", 190, 210, 7, 2),   // across the first end
        outage("central-2", 350, 360, 3, 0), // during the second period, still live
        outage("central", 400, 500, 4, 0),   // after the horizon: the second period ends at 380
    ];
    let r = h.report(380).with_store_outages(all.clone());
    assert_eq!(
        r.store_outages,
        vec![
            outage("central", 190, 210, 7, 2),
            outage("central-2", 350, 360, 3, 0)
        ]
    );
    assert_eq!(r.store_outage_totals(), (10, 2));

    // The same outage recorded twice (two reads of one row) is shown once; order is by time.
    let mut twice = all.clone();
    twice.reverse();
    twice.push(outage("central", 190, 210, 7, 2));
    assert_eq!(
        h.report(380).with_store_outages(twice).store_outages,
        r.store_outages
    );

    // Touching ends count: an outage that ends exactly when the broadcast starts.
    let r = h
        .report(380)
        .with_store_outages([outage("central", 90, 100, 1, 0)]);
    assert_eq!(r.store_outages.len(), 1);

    // A broadcast that never went live shows no outage.
    let mut quiet = H::new();
    quiet.join(10, "hn-1", "a");
    assert!(
        quiet
            .report(100)
            .with_store_outages(all)
            .store_outages
            .is_empty()
    );
}
