//! The SRT `streamid` of a publishing encoder: which conference it feeds and with which key.
//!
//! Two spellings are accepted (sans-IO: a string in, a value or a reason out):
//! * the SRT Access Control syntax (`#!::` then comma-separated `key=value` pairs, parsed by
//!   `srt-protocol`'s own `AccessControlList`): `r` names the conference, `u` carries the
//!   stream key (`s`, the session id, is taken when there is no `u`: some encoders only let
//!   the operator fill that one), `m` must be `publish` when present (a relay does not serve
//!   `request` here). `#!::r=hoi-nghi,m=publish,u=KEY`;
//! * the plain `CONFERENCE/KEY` that encoders with one free-text "stream ID" field take.
//!
//! Anything else is refused with a reason the log can show.

use std::str::FromStr;

use srt_tokio::access::{
    AccessControlList, ConnectionMode, ParseAccessControlEntryError, StandardAccessControlEntry,
};

/// What an encoder's `streamid` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    pub conference: String,
    pub key: String,
}

/// Why a `streamid` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    #[error(
        "no streamid: give `#!::r=CONFERENCE,m=publish,u=STREAM_KEY` or `CONFERENCE/STREAM_KEY`"
    )]
    Missing,
    #[error("malformed access-control streamid ({0})")]
    Malformed(String),
    #[error("the streamid names no conference (r=CONFERENCE)")]
    NoConference,
    #[error("the streamid carries no stream key (u=STREAM_KEY)")]
    NoKey,
    #[error("mode m={0}: this relay only takes encoders that publish (m=publish)")]
    NotPublish(String),
    #[error("streamid {0:?} is neither `#!::r=CONFERENCE,m=publish,u=KEY` nor `CONFERENCE/KEY`")]
    Unrecognised(String),
}

/// Reads a `streamid` (as received; `None` when the caller sent none). A percent-encoded one
/// (`%23%21%3A%3Ar%3D…`, from an encoder that passes a URL-encoded value through verbatim, as
/// ffmpeg 5 does) is decoded first: conference ids and stream keys never contain `%`.
pub fn parse(stream_id: Option<&str>) -> Result<PublishRequest, StreamIdError> {
    let decoded = stream_id.and_then(percent_decode);
    let s = decoded
        .as_deref()
        .or(stream_id)
        .map(str::trim)
        .unwrap_or_default();
    if s.is_empty() {
        return Err(StreamIdError::Missing);
    }
    if s.starts_with("#!::") {
        return parse_access_control(s);
    }
    match s.split_once('/') {
        Some((conference, key))
            if !conference.is_empty()
                && !key.is_empty()
                && !key.contains('/')
                && conference.chars().all(is_id_char) =>
        {
            Ok(PublishRequest {
                conference: conference.to_string(),
                key: key.to_string(),
            })
        }
        _ => Err(StreamIdError::Unrecognised(shorten(s))),
    }
}

fn parse_access_control(s: &str) -> Result<PublishRequest, StreamIdError> {
    let list = AccessControlList::from_str(s).map_err(|e| {
        StreamIdError::Malformed(match e {
            ParseAccessControlEntryError::NoValue => "an entry without `=value`".into(),
            other => format!("{other}"),
        })
    })?;
    let (mut conference, mut user, mut session) = (None, None, None);
    for entry in list.0 {
        // The mode is read here rather than through `StandardAccessControlEntry`, whose parse
        // fails on values it does not know and would hide which one was given.
        if entry.key == "m" {
            if ConnectionMode::from_str(&entry.value) != Ok(ConnectionMode::Publish) {
                return Err(StreamIdError::NotPublish(shorten(&entry.value)));
            }
            continue;
        }
        // Unknown keys (and `h`, `t`) are allowed by the guidelines and ignored here.
        match StandardAccessControlEntry::try_from(entry) {
            Ok(StandardAccessControlEntry::ResourceName(r)) => conference = Some(r),
            Ok(StandardAccessControlEntry::UserName(u)) => user = Some(u),
            Ok(StandardAccessControlEntry::SessionId(v)) => session = Some(v),
            _ => {}
        }
    }
    let conference = conference
        .filter(|c| !c.is_empty())
        .ok_or(StreamIdError::NoConference)?;
    let key = user
        .filter(|u| !u.is_empty())
        .or(session.filter(|s| !s.is_empty()))
        .ok_or(StreamIdError::NoKey)?;
    Ok(PublishRequest { conference, key })
}

/// `%XX` sequences decoded; `None` when there is none or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Conference ids are URL path segments; the plain form must not swallow other syntaxes.
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A streamid comes from the network: at most 64 characters of it go into a log line.
fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The `streamid` this relay hands out for a conference and key (the access-control form).
pub fn format(conference: &str, key: &str) -> String {
    format!("#!::r={conference},m=publish,u={key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(conference: &str, key: &str) -> Result<PublishRequest, StreamIdError> {
        Ok(PublishRequest {
            conference: conference.into(),
            key: key.into(),
        })
    }

    #[test]
    fn access_control_form() {
        assert_eq!(
            parse(Some("#!::r=hoi-nghi,m=publish,u=abc123")),
            ok("hoi-nghi", "abc123")
        );
        // Any order, unknown keys ignored, no mode given.
        assert_eq!(
            parse(Some("#!::u=k,h=relay.example,x=1,r=c1")),
            ok("c1", "k")
        );
        // The session id carries the key when there is no user name.
        assert_eq!(parse(Some("#!::r=c1,s=secret")), ok("c1", "secret"));
        assert_eq!(parse(Some("#!::r=c1,u=user,s=other")), ok("c1", "user"));
        assert_eq!(parse(Some(&format("c2", "k2"))), ok("c2", "k2"));
        // Percent-encoded, as an encoder may pass a URL-encoded value through.
        assert_eq!(
            parse(Some("%23%21%3A%3Ar%3Dc1%2Cm%3Dpublish%2Cu%3Dk1")),
            ok("c1", "k1")
        );
        assert_eq!(parse(Some("c1%2Fk1")), ok("c1", "k1"));
    }

    #[test]
    fn plain_form() {
        assert_eq!(parse(Some("hoi-nghi/abc123")), ok("hoi-nghi", "abc123"));
        assert_eq!(parse(Some(" c_1.x/k ")), ok("c_1.x", "k"));
    }

    #[test]
    fn refusals_name_the_problem() {
        assert_eq!(parse(None), Err(StreamIdError::Missing));
        assert_eq!(parse(Some("")), Err(StreamIdError::Missing));
        assert_eq!(
            parse(Some("#!::r=c,m=request,u=k")),
            Err(StreamIdError::NotPublish("request".into()))
        );
        assert_eq!(
            parse(Some("#!::r=c,m=weird,u=k")),
            Err(StreamIdError::NotPublish("weird".into()))
        );
        assert_eq!(
            parse(Some("#!::m=publish,u=k")),
            Err(StreamIdError::NoConference)
        );
        assert_eq!(parse(Some("#!::r=c,m=publish")), Err(StreamIdError::NoKey));
        assert_eq!(parse(Some("#!::r=c,u=")), Err(StreamIdError::NoKey));
        assert!(matches!(
            parse(Some("#!::r=c,garbage")),
            Err(StreamIdError::Malformed(_))
        ));
        for bad in ["just-a-name", "c/", "/k", "a/b/c", "c d/k", "publish:c:k"] {
            assert!(
                matches!(parse(Some(bad)), Err(StreamIdError::Unrecognised(_))),
                "{bad}"
            );
        }
        let long = "x".repeat(500);
        match parse(Some(&long)) {
            Err(StreamIdError::Unrecognised(s)) => assert_eq!(s.len(), 64),
            other => panic!("{other:?}"),
        }
    }
}
