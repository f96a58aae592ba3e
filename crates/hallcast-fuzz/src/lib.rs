//! Fuzz targets for the parsers hallcast owns. Each target takes raw bytes (what
//! `arbitrary` hands a `&[u8]` target), must never panic, and checks the parser's own
//! invariants (round trips where one exists). The same functions run two ways:
//!
//! - bounded, on the stable toolchain, in the normal test suite (`tests/bounded.rs`): every
//!   file of the committed corpus (`fuzz/corpus/<target>/`) plus a fixed number of
//!   deterministic mutations of it;
//! - unbounded, under cargo-fuzz with a nightly toolchain (`fuzz/`, see docs/fuzzing.md).
//!
//! A target that finds a broken invariant panics with the input's description, which is
//! what both runners report as a crash.

pub mod mutate;

use hallcast_core::Codec;

/// A fuzz target: any bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// The targets by name: the name is the corpus directory and the cargo-fuzz target.
pub const TARGETS: &[(&str, Target)] = &[
    ("sdp_scan", sdp_scan),
    ("stun_ufrag", stun_ufrag),
    ("join_token", join_token),
    ("registry_csv", registry_csv),
    ("config_toml", config_toml),
    ("keyframe", keyframe),
    ("rtp_rewrite", rtp_rewrite),
    ("admin_api", admin_api),
    ("recording", recording),
    ("ts_demux", ts_demux),
    ("srt_streamid", srt_streamid),
];

/// SDP offer scanning (`hallcast_rtc::sdp_scan::scan`): any text; every media section
/// found is one `m=` line, and a codec is reported only for a kind that is present.
pub fn sdp_scan(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let scan = hallcast_rtc::sdp_scan::scan(&text);
    let m_lines = text
        .lines()
        .filter(|l| l.trim_end().starts_with("m="))
        .count();
    assert!(
        scan.mids.len() <= m_lines,
        "{} sections reported for {m_lines} m= lines",
        scan.mids.len()
    );
    assert!(
        scan.audio.is_none() || scan.has_audio,
        "audio codec without audio"
    );
    assert!(
        scan.video.is_empty() || scan.has_video,
        "video codec without video"
    );
}

/// The local ufrag of a STUN binding request (`hallcast_rtc::stun::local_ufrag`): any
/// datagram; a ufrag found is a slice of the datagram's USERNAME, without a colon.
pub fn stun_ufrag(data: &[u8]) {
    if let Some(ufrag) = hallcast_rtc::stun::local_ufrag(data) {
        assert!(!ufrag.contains(':'), "ufrag {ufrag:?} holds a colon");
        assert!(
            data.len() >= 20 + 4 + ufrag.len(),
            "ufrag longer than the datagram"
        );
        let bytes = ufrag.as_bytes();
        assert!(
            bytes.is_empty() || data.windows(bytes.len()).any(|w| w == bytes),
            "ufrag {ufrag:?} is not in the datagram"
        );
    }
}

/// Join tokens (`TokenVerifier::verify`): every string but the one token the fuzzing key
/// signed is refused with an error (a fixed key, so runs repeat).
pub fn join_token(data: &[u8]) {
    let (verifier, genuine) = token_key();
    let text = String::from_utf8_lossy(data);
    match verifier.verify(&text, 0) {
        Ok(claims) => assert!(
            text == genuine.as_str(),
            "accepted a token the key did not sign: {text:?} → {claims:?}"
        ),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The fuzzing key's verifier and the one token it signed (made once: the bounded run adds
/// the token to the corpus, since it depends on the signing code).
pub fn token_key() -> &'static (hallcast_ledger::TokenVerifier, String) {
    static KEY: std::sync::OnceLock<(hallcast_ledger::TokenVerifier, String)> =
        std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let signer = hallcast_ledger::TokenSigner::new(
            hallcast_ledger::Secret::from_bytes(vec![7u8; 32]).expect("a 32-byte secret"),
        );
        let conference = hallcast_core::accounting::ConferenceId::parse("hoi-nghi-fuzz")
            .expect("a valid conference id");
        let point =
            hallcast_core::accounting::PointId::parse("diem-fuzz").expect("a valid point id");
        let token = signer.issue(&conference, &point, 0, i64::MAX);
        (signer.verifier(), token)
    })
}

/// The registry CSV import (`registry::parse_csv`): any bytes; what parses writes back
/// (`to_csv`) to a file that parses to the same points.
pub fn registry_csv(data: &[u8]) {
    use hallcast_ledger::registry::{parse_csv, to_csv};
    let Ok(file) = parse_csv(data) else {
        return;
    };
    let written = to_csv(&file.organisations, &file.points).expect("a parsed registry writes");
    let again = parse_csv(&written).unwrap_or_else(|e| {
        panic!(
            "the registry written back does not parse: {e}\n{}",
            String::from_utf8_lossy(&written)
        )
    });
    let mut before = file.points.clone();
    before.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        before, again.points,
        "points changed in a write/parse round trip"
    );
}

/// The TOML configuration (`Config::from_toml`): any text; a configuration that loads
/// prints (`to_toml`) to one that loads again and prints the same.
pub fn config_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(config) = hallcast_config::Config::from_toml(&text, &[]) else {
        return;
    };
    let _ = config.problems();
    let printed = config.to_toml();
    let again = hallcast_config::Config::from_toml(&printed, &[])
        .unwrap_or_else(|e| panic!("the printed configuration does not load: {e}\n{printed}"));
    assert_eq!(printed, again.to_toml(), "printing is not stable");
}

/// Keyframe detection on RTP payloads (H.264 and VP8): any payload, no panic.
pub fn keyframe(data: &[u8]) {
    for codec in [Codec::H264, Codec::Vp8, Codec::Opus] {
        let _ = codec.starts_keyframe(data);
    }
}

/// The relay's RTP header rewriting (`hallcast_core::Router`: sequence numbers and
/// timestamps mapped into each consumer's own space across layer switches, pauses and
/// publisher restarts). The bytes drive a publisher (three simulcast layers and audio,
/// sequence numbers moving forward, a little reordering, restarts) and consumers joining,
/// leaving, capped and paused. Invariants, per outgoing stream of each consumer: no
/// outgoing sequence number carries two different source packets, and a viewer's video
/// only changes layer at a keyframe's first packet.
pub fn rtp_rewrite(data: &[u8]) {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use hallcast_core::{ConsumerId, Layer, MediaKind, Outputs, Router, SourcePacket};

    let t0 = Instant::now();
    let mut now_ms = 0u64;
    let mut router = Router::new();
    let mut out = Outputs::default();
    router.source_started(Some(Codec::Opus), Some(Codec::H264), t0, &mut out);
    // Source state: next seq and ts per video layer, then audio at index 3.
    let mut seq = [1_000u64, 20_000, 40_000, 7];
    let mut ts = [0u32; 4];
    let mut recent: Vec<SourcePacket> = Vec::new();
    let mut relays: Vec<u128> = Vec::new();
    // (consumer, kind, stream) → out seq → (layer, source seq)
    type Key = (u128, bool, u8);
    let mut sent: HashMap<Key, HashMap<u64, (u8, u64)>> = HashMap::new();
    let mut viewer_layer: HashMap<u128, u8> = HashMap::new();

    let check = |out: &mut Outputs,
                 relays: &[u128],
                 sources: &[SourcePacket],
                 sent: &mut HashMap<Key, HashMap<u64, (u8, u64)>>,
                 viewer_layer: &mut HashMap<u128, u8>| {
        for f in out.forwards.drain(..) {
            let id = f.sub.0;
            let video = f.kind == MediaKind::Video;
            let stream = if video && relays.contains(&id) {
                f.layer.0
            } else {
                0
            };
            let src = sources
                .iter()
                .rev()
                .find(|p| {
                    p.kind == f.kind && p.layer == f.layer && Arc::ptr_eq(&p.payload, &f.payload)
                })
                .map(|p| p.seq)
                .unwrap_or(u64::MAX);
            let entry = sent.entry((id, video, stream)).or_default();
            if let Some(&(l, s)) = entry.get(&f.seq) {
                assert!(
                    (l, s) == (f.layer.0, src),
                    "consumer {id}: outgoing seq {} carried layer {l} seq {s}, now layer {} seq {src}",
                    f.seq,
                    f.layer.0
                );
            }
            entry.insert(f.seq, (f.layer.0, src));
            if video && !relays.contains(&id) {
                let before = viewer_layer.insert(id, f.layer.0);
                assert!(
                    before.is_none_or(|b| b == f.layer.0) || f.keyframe_start,
                    "viewer {id} changed layer {before:?} → {} without a keyframe",
                    f.layer.0
                );
            }
        }
        out.keyframe_requests.clear();
    };

    for op in data.chunks(4) {
        let [a, b, c, d] = [
            op[0],
            *op.get(1).unwrap_or(&0),
            *op.get(2).unwrap_or(&0),
            *op.get(3).unwrap_or(&0),
        ];
        now_ms += u64::from(d % 40);
        let now = t0 + Duration::from_millis(now_ms);
        let id = u128::from(b % 6);
        match a % 16 {
            // A packet: video on a layer, or audio; sequence forward by 1..=3.
            0..=8 => {
                let audio = a % 16 == 8;
                let i = if audio { 3 } else { usize::from(b % 3) };
                seq[i] += 1 + u64::from(c % 3);
                ts[i] = ts[i].wrapping_add(u32::from(c) * 30);
                let pkt = SourcePacket {
                    kind: if audio {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    },
                    layer: Layer(if audio { 0 } else { i as u8 }),
                    seq: seq[i],
                    ts: ts[i],
                    marker: c & 0x40 != 0,
                    keyframe_start: !audio && c & 0x80 != 0,
                    payload: Arc::from(vec![a, b, c, d].into_boxed_slice()),
                    arrival: now,
                };
                router.on_packet(&pkt, &mut out);
                recent.push(pkt);
            }
            // A late packet: one of the last 16 again (reordering or a retransmission).
            9 if !recent.is_empty() => {
                let back = usize::from(c % 16).min(recent.len() - 1);
                let pkt = recent[recent.len() - 1 - back].clone();
                router.on_packet(&pkt, &mut out);
            }
            10 => {
                if id < 4 {
                    router.add_viewer(ConsumerId(id), now, &mut out);
                } else {
                    router.add_relay_consumer(ConsumerId(id), now, &mut out);
                    if !relays.contains(&id) {
                        relays.push(id);
                    }
                }
            }
            11 => {
                router.remove_consumer(ConsumerId(id));
                sent.retain(|k, _| k.0 != id);
                viewer_layer.remove(&id);
            }
            12 => router.set_max_layer(ConsumerId(id), Layer(c % 3)),
            13 => router.set_paused(ConsumerId(id), c & 1 == 1, now, &mut out),
            14 => router.tick(now, &mut out),
            // The publisher leaves and another comes, with its own sequence numbers.
            _ => {
                router.source_ended();
                router.source_started(Some(Codec::Opus), Some(Codec::H264), now, &mut out);
                for (i, s) in seq.iter_mut().enumerate() {
                    *s = u64::from(c) * 97 + i as u64 * 10_000;
                }
                recent.clear();
            }
        }
        check(&mut out, &relays, &recent, &mut sent, &mut viewer_layer);
        if recent.len() > 64 {
            recent.drain(..recent.len() - 64);
        }
    }
}

/// The admin API's request bodies, through the real router (`oneshot`, no socket) on a real
/// SQLite ledger: the first byte (from `'0'`) picks a route that takes a body, the rest is the
/// body. Invariants: never a 5xx (a server error on input is a bug); every 4xx carries a JSON
/// `{"error", "message"}` with a message; a refused request stores nothing (the registry's
/// organisations, points and conferences are unchanged); everything stored keeps the
/// registry's text rule (`registry::text_problem`).
pub fn admin_api(data: &[u8]) {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let api = admin_api_fixture();
    let (method, path, content_type) =
        ADMIN_ROUTES[usize::from(pick.wrapping_sub(b'0')) % ADMIN_ROUTES.len()];
    let (router, token) = if path == "/api/v1/relay/events" {
        (&api.relay, ADMIN_FUZZ_CREDENTIAL)
    } else {
        (&api.admin, ADMIN_FUZZ_TOKEN)
    };
    api.rt.block_on(async {
        let before = registry_state(&api.ledger).await;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(Body::from(body.to_vec()))
            .expect("a request");
        let resp = router
            .clone()
            .oneshot(req)
            .await
            .expect("the router answers");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !status.is_server_error(),
            "{method} {path} answered {status}: {text}"
        );
        if status.is_client_error() {
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{method} {path} {status}: not JSON ({e}): {text}"));
            assert!(
                v["error"].as_str().is_some_and(|e| !e.is_empty())
                    && v["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{method} {path} {status} without an error and a message: {text}"
            );
            let after = registry_state(&api.ledger).await;
            assert!(
                after == before,
                "{method} {path} was refused ({status}) yet changed the registry"
            );
        } else {
            for (what, name) in registry_texts(&api.ledger).await {
                assert!(
                    hallcast_ledger::registry::text_problem(what, &name).is_none(),
                    "{method} {path} stored a {what} the registry refuses: {name:?}"
                );
            }
        }
    });
}

/// Routes of the admin API that take a body (method, path, content type); the ids in the
/// paths exist in the fixture's ledger.
const ADMIN_ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/api/v1/organisations", "application/json"),
    ("PUT", "/api/v1/organisations/o-1", "application/json"),
    ("POST", "/api/v1/points", "application/json"),
    ("PUT", "/api/v1/points/p-1", "application/json"),
    ("POST", "/api/v1/points/import", "text/csv"),
    ("POST", "/api/v1/conferences", "application/json"),
    (
        "POST",
        "/api/v1/conferences/hn/headcount",
        "application/json",
    ),
    (
        "POST",
        "/api/v1/conferences/hn/rollcalls",
        "application/json",
    ),
    ("POST", "/api/v1/relay/events", "application/json"),
];

const ADMIN_FUZZ_TOKEN: &str = "fuzz-admin-token";
const ADMIN_FUZZ_CREDENTIAL: &str = "fuzz-relay-credential";

struct AdminApi {
    rt: tokio::runtime::Runtime,
    admin: axum::Router,
    relay: axum::Router,
    ledger: hallcast_ledger::Ledger,
    /// The ledger's temp directory, removed by [`admin_api_done`].
    dir: std::path::PathBuf,
}

static ADMIN_API: std::sync::OnceLock<AdminApi> = std::sync::OnceLock::new();

/// Removes the [`admin_api`] target's ledger directory, if the target ran: call it when no
/// more admin API inputs will come (the fixture is a `static`, never dropped; nothing writes
/// to the ledger after this).
pub fn admin_api_done() {
    if let Some(api) = ADMIN_API.get() {
        let _ = std::fs::remove_dir_all(&api.dir);
    }
}

/// One ledger (SQLite in a fresh temp directory) and routers for the whole run: organisation
/// o-1, point p-1 and conference hn exist.
fn admin_api_fixture() -> &'static AdminApi {
    ADMIN_API.get_or_init(|| {
        use hallcast_ledger::{Ledger, LedgerConfig, Secret, StoreConfig};
        use hallcast_server::attendance::{AttendanceCtx, relay_router, router};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = std::env::temp_dir().join(format!(
            "hallcast-fuzz-admin-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let ledger = rt.block_on(async {
            let ledger = Ledger::open(LedgerConfig::new(
                StoreConfig::sqlite_in(&dir),
                Secret::from_bytes(b"fuzz-fuzz-fuzz-fuzz-".to_vec()).expect("a secret"),
            ))
            .await
            .expect("a ledger");
            ledger
                .import_csv(b"point_id,point_name,org_id,org_name\np-1,Point,o-1,Org\n".to_vec())
                .await
                .expect("the fixture's registry");
            let hn = hallcast_core::accounting::ConferenceId::parse("hn").expect("an id");
            ledger
                .upsert_conference(hallcast_ledger::Conference::new(
                    hn,
                    "Hội nghị".into(),
                    "fuzz-stream-key".into(),
                    1,
                ))
                .await
                .expect("the fixture's conference");
            ledger
        });
        let admin = router(AttendanceCtx::new(
            ledger.clone(),
            ADMIN_FUZZ_TOKEN,
            "http://127.0.0.1:8080",
        ));
        let relay = relay_router(
            AttendanceCtx::new(ledger.clone(), ADMIN_FUZZ_TOKEN, "http://127.0.0.1:8080"),
            std::sync::Arc::from(ADMIN_FUZZ_CREDENTIAL),
        );
        AdminApi {
            rt,
            admin,
            relay,
            ledger,
            dir,
        }
    })
}

/// The registry as stored: organisations, points, conferences (ids and every field).
async fn registry_state(ledger: &hallcast_ledger::Ledger) -> String {
    format!(
        "{:?}{:?}{:?}",
        ledger.organisations().await.expect("organisations"),
        ledger.points().await.expect("points"),
        ledger.conferences().await.expect("conferences")
    )
}

/// Every name and location stored in the registry.
async fn registry_texts(ledger: &hallcast_ledger::Ledger) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for o in ledger.organisations().await.expect("organisations") {
        out.push(("org_name", o.name));
    }
    for p in ledger.points().await.expect("points") {
        out.push(("point_name", p.name));
        out.push(("location", p.location));
    }
    out
}

/// The recorder's depacketizers and muxer (`hallcast_record::Recording`) on arbitrary RTP
/// payloads: each packet is `[flags][len][payload…]` (flags: bit 0 audio, bit 1 marker,
/// bit 2 a sequence gap, bit 3 a new timestamp), for H.264 and VP8. Invariants: no panic;
/// every patch lands inside what was already appended; the muxer's length is the bytes
/// appended.
pub fn recording(data: &[u8]) {
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    use hallcast_core::{Layer, MediaKind, SourcePacket};
    use hallcast_record::{Metadata, Op, Recording};

    for video in [Codec::H264, Codec::Vp8] {
        let start = Instant::now();
        let meta = Metadata {
            conference_id: "fuzz".into(),
            conference_name: None,
            start: SystemTime::UNIX_EPOCH,
            audio: Some(Codec::Opus),
            video: Some(video),
        };
        let mut ops = Vec::new();
        let mut rec = Recording::new(meta, start, &mut ops);
        let (mut seq, mut ts, mut i, mut n) = (0u64, 0u32, 0usize, 0u64);
        while i + 2 <= data.len() {
            let flags = data[i];
            let len = usize::from(data[i + 1]).min(data.len() - i - 2);
            let payload = &data[i + 2..i + 2 + len];
            i += 2 + len;
            seq += if flags & 4 != 0 { 2 } else { 1 };
            if flags & 8 != 0 {
                ts = ts.wrapping_add(3000);
            }
            n += 1;
            let p = SourcePacket {
                kind: if flags & 1 != 0 {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                },
                layer: Layer(0),
                seq,
                ts,
                marker: flags & 2 != 0,
                keyframe_start: false,
                payload: Arc::from(payload),
                arrival: start + Duration::from_millis(n * 10),
            };
            let _ = rec.push(&p, &mut ops);
        }
        rec.finish(&mut ops);
        let mut len = 0u64;
        for op in &ops {
            match op {
                Op::Append(b) => len += b.len() as u64,
                Op::Patch { at, bytes } => assert!(
                    at + bytes.len() as u64 <= len,
                    "{video:?}: a patch at {at} (+{}) beyond the {len} bytes written",
                    bytes.len()
                ),
            }
        }
        assert_eq!(len, rec.muxer().len(), "{video:?}: the muxer's length");
    }
}

/// The SRT ingest's MPEG-TS demultiplexer (`hallcast_ingest::TsDemux`): any bytes, pushed in
/// chunks whose sizes the input's first byte picks (1 to 256 times 7); nothing comes out before
/// a program map table, every access unit and audio frame has bytes, and skipped bytes are
/// never more than the bytes pushed.
pub fn ts_demux(data: &[u8]) {
    use hallcast_ingest::{TsDemux, TsEvent};
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = 7 * (usize::from(first) + 1);
    let mut demux = TsDemux::new();
    for part in rest.chunks(chunk) {
        demux.push(part);
        while let Some(event) = demux.poll() {
            assert!(demux.saw_pmt(), "{event:?} before any program map table");
            match event {
                TsEvent::Video { data, .. } => assert!(!data.is_empty(), "empty access unit"),
                TsEvent::Audio { frame, asc, .. } => {
                    assert!(!frame.is_empty(), "empty AAC frame");
                    assert!(asc[0] >> 3 != 0, "audio object type 0 in {asc:?}");
                }
                TsEvent::Unsupported { codec, .. } => assert!(!codec.is_empty()),
                TsEvent::VideoLoss => {}
            }
        }
    }
    assert!(
        demux.n_garbage_bytes() <= demux.n_bytes(),
        "{} garbage bytes of {} pushed",
        demux.n_garbage_bytes(),
        demux.n_bytes()
    );
}

/// An SRT encoder's `streamid` (`hallcast_ingest::streamid::parse`): any text; what it accepts
/// names a conference and a key, and the form the relay hands out reads back as itself.
pub fn srt_streamid(data: &[u8]) {
    use hallcast_ingest::streamid::{format, parse};
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = parse(Some(&text)) {
        assert!(
            !r.conference.is_empty() && !r.key.is_empty(),
            "{text:?} → {r:?}"
        );
        let plain = |s: &str| s.trim() == s && !s.contains([',', '=', '%']) && !s.is_empty();
        if plain(&r.conference) && plain(&r.key) {
            let again = parse(Some(&format(&r.conference, &r.key)));
            assert_eq!(again.as_ref(), Ok(&r), "{text:?}");
        }
    }
}
