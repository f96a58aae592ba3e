//! The one place that reads and compares bearer credentials (stream keys, viewer tokens, join
//! links, the admin token).
//!
//! Rules, the same for every endpoint:
//! * `Authorization: Bearer <token>`; the scheme is case-insensitive, the token is trimmed and
//!   must not be empty.
//! * Secrets are compared as SHA-256 digests in constant time ([`subtle`]), so neither the
//!   content nor the length of a secret leaks through timing.
//! * A session resource remembers the digest of the credential that created it
//!   ([`Credential`]); `DELETE`/`PATCH` must present the same credential. A stream key rotated
//!   after the session started still ends that session: the digest is the one it started with.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a request carries no usable bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization` header.
    Missing,
    /// A header that is not `Bearer <token>` (or not ASCII).
    Malformed,
}

impl BearerError {
    /// What the client should send instead.
    pub fn message(self) -> &'static str {
        match self {
            BearerError::Missing => "missing Authorization: Bearer <token>",
            BearerError::Malformed => "Authorization must be \"Bearer <token>\"",
        }
    }
}

/// The bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Result<&str, BearerError> {
    let v = headers
        .get(header::AUTHORIZATION)
        .ok_or(BearerError::Missing)?;
    let v = v.to_str().map_err(|_| BearerError::Malformed)?;
    let (scheme, token) = v.trim().split_once(' ').ok_or(BearerError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(BearerError::Malformed);
    }
    Ok(token)
}

/// Whether `given` equals the configured `secret`, in time independent of both. An empty
/// `secret` matches nothing (a disabled credential).
pub fn secret_matches(given: &str, secret: &str) -> bool {
    !secret.is_empty() && Credential::of(given).matches(&Credential::of(secret))
}

/// The SHA-256 digest of a credential, kept instead of the credential itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credential([u8; 32]);

impl Credential {
    pub fn of(token: &str) -> Credential {
        Credential(Sha256::digest(token.as_bytes()).into())
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &Credential) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never printed: a digest of a short stream key can be brute-forced.
        f.write_str("Credential(..)")
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer_reads_one_form_only() {
        assert_eq!(bearer(&HeaderMap::new()), Err(BearerError::Missing));
        assert_eq!(bearer(&with("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(&with("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer(&with("BEARER abc")), Ok("abc"));
        assert_eq!(bearer(&with("Basic abc")), Err(BearerError::Malformed));
        assert_eq!(bearer(&with("Bearer ")), Err(BearerError::Malformed));
        assert_eq!(bearer(&with("Bearerabc")), Err(BearerError::Malformed));
    }

    #[test]
    fn secrets_compare_by_digest() {
        assert!(secret_matches("k3y-k3y-k3y", "k3y-k3y-k3y"));
        assert!(!secret_matches("k3y-k3y-k3", "k3y-k3y-k3y"));
        assert!(!secret_matches("", ""));
        assert!(!secret_matches("x", ""));
        let c = Credential::of("t");
        assert!(c.matches(&Credential::of("t")));
        assert!(!c.matches(&Credential::of("u")));
        assert_eq!(format!("{c:?}"), "Credential(..)");
    }
}
