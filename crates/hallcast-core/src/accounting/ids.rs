//! Identifiers: parsed once at the edge, then carried as types ("parse, don't validate").

use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The string is empty.
    Empty { what: &'static str },
    /// The string is longer than the identifier allows.
    TooLong { what: &'static str, max: usize },
    /// The string holds a character outside `[A-Za-z0-9._-]`.
    BadChar { what: &'static str, ch: char },
    /// A 128-bit id (session, event) holds a character that is not a hex digit.
    NotHex { what: &'static str, ch: char },
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty { what } => write!(f, "{what} must not be empty"),
            IdError::TooLong { what, max } => write!(f, "{what} is longer than {max} characters"),
            IdError::BadChar { what, ch } => write!(
                f,
                "{what} may only contain letters A-Z a-z, digits, '.', '_' and '-' (found {ch:?})"
            ),
            IdError::NotHex { what, ch } => {
                write!(f, "{what} must be up to 32 hex digits (found {ch:?})")
            }
        }
    }
}

impl std::error::Error for IdError {}

fn check(s: &str, what: &'static str, max: usize, extra: &[char]) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { what });
    }
    if s.len() > max {
        return Err(IdError::TooLong { what, max });
    }
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || extra.contains(c)))
    {
        return Err(IdError::BadChar { what, ch });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal, $extra:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted identifier, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Parses an identifier; the only way to make one.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check(s, $what, $max, $extra)?;
                Ok(Self(s.to_owned()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check(&s, $what, $max, $extra)?;
                Ok(Self(s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A conference (hội nghị): one scheduled broadcast. `[A-Za-z0-9._-]{1,64}`.
    ConferenceId,
    "conference id",
    64,
    &[]
);
string_id!(
    /// A connection point (điểm cầu): one registered receiving location. `[A-Za-z0-9._-]{1,64}`.
    PointId,
    "point id",
    64,
    &[]
);
string_id!(
    /// An organisation (đơn vị): a group of points. `[A-Za-z0-9._-]{1,64}`.
    OrgId,
    "organisation id",
    64,
    &[]
);
/// One session (a WHIP publisher's or a WHEP viewer's peer connection): 128 random bits chosen
/// by the relay that created it from a CSPRNG. The same value names the session everywhere: the
/// media engine, the resource URL (`/whep/{conference}/{id}`), the logs and the ledger. Written as
/// 32 lowercase hex digits; parsing accepts 1 to 32 hex digits (ledgers written before the ids
/// were 128-bit hold 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u128);

impl SessionId {
    /// Parses 1 to 32 hex digits.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        parse_hex128(s, "session id").map(SessionId)
    }
}

impl fmt::Display for SessionId {
    /// 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for SessionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

/// One roll call (điểm danh) of a conference: the event id of its `RollCallStarted` event.
/// Written as 32 lowercase hex digits; parsing accepts 1 to 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RollCallId(pub u128);

impl RollCallId {
    /// Parses 1 to 32 hex digits.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        parse_hex128(s, "roll call id").map(RollCallId)
    }
}

impl From<EventId> for RollCallId {
    fn from(id: EventId) -> Self {
        RollCallId(id.0)
    }
}

impl fmt::Display for RollCallId {
    /// 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for RollCallId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

/// 1 to 32 hex digits as a `u128`.
fn parse_hex128(s: &str, what: &'static str) -> Result<u128, IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { what });
    }
    if s.len() > 32 {
        return Err(IdError::TooLong { what, max: 32 });
    }
    if let Some(ch) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(IdError::NotHex { what, ch });
    }
    // Only hex digits, at most 32 of them: always fits.
    u128::from_str_radix(s, 16).map_err(|_| IdError::NotHex { what, ch: '?' })
}

/// The idempotency key of one event: 128 random bits chosen by whoever creates the event.
/// Storing or folding the same id twice has the effect of storing or folding it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub u128);

impl EventId {
    /// The id as 16 big-endian bytes (the stored form).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The id from 16 big-endian bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(u128::from_be_bytes(bytes))
    }

    /// The id from exactly 16 bytes, or `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 16] = bytes.try_into().ok()?;
        Some(Self::from_bytes(arr))
    }
}

impl fmt::Display for EventId {
    /// 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for EventId {
    type Err = IdError;
    /// Parses 1 to 32 hex digits.
    fn from_str(s: &str) -> Result<Self, IdError> {
        parse_hex128(s, "event id").map(EventId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_reject() {
        assert_eq!(
            PointId::parse("HN-01.a_b").map(|p| p.to_string()),
            Ok("HN-01.a_b".into())
        );
        assert_eq!(PointId::parse(""), Err(IdError::Empty { what: "point id" }));
        assert_eq!(
            OrgId::parse("Hà Nội"),
            Err(IdError::BadChar {
                what: "organisation id",
                ch: 'à'
            })
        );
        assert!(ConferenceId::parse(&"x".repeat(65)).is_err());
        assert!(SessionId::parse("whep:abc-1").is_err());
        let id = SessionId(0xfedc_ba98_7654_3210_0123_4567_89ab_cdef);
        assert_eq!(id.to_string(), "fedcba98765432100123456789abcdef");
        assert_eq!(id.to_string().parse::<SessionId>(), Ok(id));
        assert_eq!(SessionId::parse("00ab"), Ok(SessionId(0xab)));
        assert!(SessionId::parse(&"f".repeat(33)).is_err());
        assert!(PointId::parse("whep:abc").is_err());
    }

    #[test]
    fn event_id_round_trips() {
        let id = EventId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.to_string(), "0123456789abcdef0011223344556677");
        assert_eq!(id.to_string().parse::<EventId>(), Ok(id));
        assert_eq!(EventId::from_bytes(id.to_bytes()), id);
        assert_eq!(EventId::from_slice(&[1, 2]), None);
        assert!("xyz".parse::<EventId>().is_err());
    }
}
