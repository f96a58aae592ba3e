//! Join tokens: one per conference and point, HMAC-SHA256-signed, with an expiry, revocable.
//!
//! Form: `v1.<payload>.<mac>`, both parts base64url without padding (safe in a URL as is).
//! The payload is `conference \n point \n generation \n expires_unix_s`; the MAC covers a
//! domain-separation prefix and the payload. Revocation is by generation: each
//! (conference, point) pair has a generation in the store (0 until first revoked); a token
//! is valid only while its generation is the pair's current one, so revoking invalidates
//! every link issued for the pair so far, and newly issued links work at once.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hallcast_core::accounting::{ConferenceId, PointId};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{LedgerError, Result};

type HmacSha256 = Hmac<Sha256>;

const DOMAIN: &[u8] = b"hallcast-join-v1\n";

/// The signing secret (at least 16 bytes).
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// A secret from raw bytes; fails under 16 bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self> {
        let b = bytes.into();
        if b.len() < 16 {
            return Err(LedgerError::Invalid(
                "the join-token secret must be at least 16 bytes".into(),
            ));
        }
        Ok(Self(b))
    }

    /// 32 random bytes.
    pub fn random() -> Self {
        Self(rand::random::<[u8; 32]>().to_vec())
    }

    /// Reads the secret file (its trimmed text is the secret), or creates it with 32 random
    /// bytes as hex and mode 0600 when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_bytes(text.trim().as_bytes().to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir)?;
                }
                let hex: String = rand::random::<[u8; 32]>()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                write_private(path, hex.as_bytes())?;
                Self::from_bytes(hex.into_bytes())
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinClaims {
    pub conference: ConferenceId,
    pub point: PointId,
    /// Expiry, Unix seconds.
    pub expires: i64,
    pub generation: u32,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed join token")]
    Malformed,
    #[error("join token signature does not match")]
    BadSignature,
    #[error("join token expired at {expires} (Unix seconds)")]
    Expired { expires: i64 },
    #[error("join token was revoked")]
    Revoked,
    #[error("join token is for conference {token}, not {requested}")]
    WrongConference { token: String, requested: String },
}

/// Signs and checks tokens (signature and expiry; revocation is the ledger's, see
/// `Ledger::verify_token`).
#[derive(Clone, Debug)]
pub struct TokenSigner {
    secret: Secret,
}

impl TokenSigner {
    pub fn new(secret: Secret) -> Self {
        Self { secret }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.secret.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(DOMAIN);
        m
    }

    /// Issues a token.
    pub fn issue(
        &self,
        conference: &ConferenceId,
        point: &PointId,
        generation: u32,
        expires: i64,
    ) -> String {
        let payload = format!("{conference}\n{point}\n{generation}\n{expires}");
        let mut m = self.mac();
        m.update(payload.as_bytes());
        let tag = m.finalize().into_bytes();
        format!(
            "v1.{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks form, signature and expiry at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<JoinClaims, TokenError> {
        let mut parts = token.trim().split('.');
        let (Some("v1"), Some(p), Some(t), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        if p.len() > 512 || t.len() > 64 {
            return Err(TokenError::Malformed);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(t)
            .map_err(|_| TokenError::Malformed)?;
        let mut m = self.mac();
        m.update(&payload);
        m.verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
        // Signed by us: the fields were written by `issue`, but parse them defensively.
        let text = std::str::from_utf8(&payload).map_err(|_| TokenError::Malformed)?;
        let mut f = text.split('\n');
        let (Some(c), Some(pt), Some(g), Some(e), None) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return Err(TokenError::Malformed);
        };
        let claims = JoinClaims {
            conference: ConferenceId::parse(c).map_err(|_| TokenError::Malformed)?,
            point: PointId::parse(pt).map_err(|_| TokenError::Malformed)?,
            generation: g.parse().map_err(|_| TokenError::Malformed)?,
            expires: e.parse().map_err(|_| TokenError::Malformed)?,
        };
        if now >= claims.expires {
            return Err(TokenError::Expired {
                expires: claims.expires,
            });
        }
        Ok(claims)
    }
}

/// The viewer link of a token: `{base}/watch/{conference}?token={token}`.
pub fn join_link(base_url: &str, conference: &ConferenceId, token: &str) -> String {
    format!(
        "{}/watch/{conference}?token={token}",
        base_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_expire_tamper() {
        let s = TokenSigner::new(Secret::from_bytes(b"0123456789abcdef".to_vec()).unwrap());
        let c = ConferenceId::parse("hn-2025").unwrap();
        let p = PointId::parse("hue-01").unwrap();
        let t = s.issue(&c, &p, 2, 1_000);
        let claims = s.verify(&t, 999).unwrap();
        assert_eq!(claims.point, p);
        assert_eq!(claims.generation, 2);
        assert_eq!(
            s.verify(&t, 1_000),
            Err(TokenError::Expired { expires: 1_000 })
        );
        let other = TokenSigner::new(Secret::random());
        assert_eq!(other.verify(&t, 0), Err(TokenError::BadSignature));
        let mut forged = t.clone();
        forged.replace_range(5..6, if &t[5..6] == "A" { "B" } else { "A" });
        assert!(s.verify(&forged, 0).is_err());
        assert_eq!(s.verify("v1.x", 0), Err(TokenError::Malformed));
        assert_eq!(s.verify("", 0), Err(TokenError::Malformed));
        assert!(Secret::from_bytes(b"short".to_vec()).is_err());
        assert_eq!(
            join_link("http://h:8080/", &c, &t),
            format!("http://h:8080/watch/hn-2025?token={t}")
        );
    }

    #[test]
    fn secret_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/join-secret");
        let a = Secret::load_or_create(&path).unwrap();
        let b = Secret::load_or_create(&path).unwrap();
        assert_eq!(a.0, b.0);
        assert_eq!(a.0.len(), 64);
    }
}
