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

/// Join tokens (`TokenVerifier::verify`): any string is refused with an error, never
/// accepted, since no input here was signed by the key (a fixed one, so runs repeat).
pub fn join_token(data: &[u8]) {
    let signer = hallcast_ledger::TokenSigner::new(
        hallcast_ledger::Secret::from_bytes(vec![7u8; 32]).expect("a 32-byte secret"),
    );
    let text = String::from_utf8_lossy(data);
    let verifier = signer.verifier();
    // A token the key really signed is in the corpus: a forged or mangled one is not
    // accepted unless it is that very token.
    let genuine = genuine_token(&signer);
    match verifier.verify(&text, 0) {
        Ok(claims) => assert!(
            text == genuine,
            "accepted a token the key did not sign: {text:?} → {claims:?}"
        ),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The one token the fuzzing key signed (for the corpus and the check above).
pub fn genuine_token(signer: &hallcast_ledger::TokenSigner) -> String {
    let conference = hallcast_core::accounting::ConferenceId::parse("hoi-nghi-fuzz")
        .expect("a valid conference id");
    let point = hallcast_core::accounting::PointId::parse("diem-fuzz").expect("a valid point id");
    signer.issue(&conference, &point, 0, i64::MAX)
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
