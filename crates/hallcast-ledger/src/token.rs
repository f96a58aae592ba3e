//! Join tokens: one per conference and point, signed, with an expiry, revocable.
//!
//! Two forms, both parts base64url without padding (safe in a URL as is):
//! * `v2.<payload>.<sig>` (issued now): an Ed25519 signature over a domain-separation prefix
//!   and the payload. The signing key is derived from the secret
//!   (seed = HMAC-SHA256(secret, "hallcast-join-ed25519-v2")), so the same secret file keeps
//!   issuing the same links; the public key ([`TokenSigner::public_key`]) lets any relay of
//!   the tree check a link with a [`TokenVerifier`] without holding the secret.
//! * `v1.<payload>.<mac>` (issued before): HMAC-SHA256 with the secret itself. Still accepted
//!   by the relay that holds the secret, so links already handed out keep working; a
//!   [`TokenVerifier`] cannot check them ([`TokenError::NeedsSecret`]).
//!
//! The payload is `conference \n point \n generation \n expires_unix_s`. Revocation is by
//! generation: each (conference, point) pair has a generation in the store (0 until first
//! revoked); a token is valid only while its generation is the pair's current one, so
//! revoking invalidates every link issued for the pair so far, and newly issued links work
//! at once. The generations travel down the relay tree with the public key.

use std::path::Path;

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hallcast_core::accounting::{ConferenceId, PointId};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{LedgerError, Result};

type HmacSha256 = Hmac<Sha256>;

const DOMAIN: &[u8] = b"hallcast-join-v1\n";
const DOMAIN_V2: &[u8] = b"hallcast-join-v2\n";
/// The HMAC message that turns the secret into the Ed25519 seed.
const ED25519_SEED_LABEL: &[u8] = b"hallcast-join-ed25519-v2";

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
    /// A `v1` token shown to a relay that only has the public key.
    #[error("join token of the old form (v1) can only be checked by the relay that issued it")]
    NeedsSecret,
}

/// Signs and checks tokens (signature and expiry; revocation is the ledger's, see
/// `Ledger::verify_token`).
#[derive(Clone)]
pub struct TokenSigner {
    secret: Secret,
    key: SigningKey,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("public_key", &self.public_key())
            .finish()
    }
}

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

impl TokenSigner {
    pub fn new(secret: Secret) -> Self {
        let mut m = hmac(&secret.0);
        m.update(ED25519_SEED_LABEL);
        let seed: [u8; 32] = m.finalize().into_bytes().into();
        Self {
            key: SigningKey::from_bytes(&seed),
            secret,
        }
    }

    fn mac(&self) -> HmacSha256 {
        let mut m = hmac(&self.secret.0);
        m.update(DOMAIN);
        m
    }

    /// The Ed25519 verification key of `v2` tokens: base64url (no padding) of its 32 bytes.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes())
    }

    /// A verifier that holds only the public key (what an edge relay gets).
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier {
            key: self.key.verifying_key(),
            generations: HashMap::new(),
        }
    }

    /// Issues a token (`v2`).
    pub fn issue(
        &self,
        conference: &ConferenceId,
        point: &PointId,
        generation: u32,
        expires: i64,
    ) -> String {
        let payload = payload(conference, point, generation, expires);
        let sig = self.key.sign(&signed_message(payload.as_bytes()));
        format!(
            "v2.{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(sig.to_bytes())
        )
    }

    /// Issues a token of the old form (`v1`, HMAC). Only for tests and tools that must
    /// produce links for relays that predate `v2`.
    pub fn issue_v1(
        &self,
        conference: &ConferenceId,
        point: &PointId,
        generation: u32,
        expires: i64,
    ) -> String {
        let payload = payload(conference, point, generation, expires);
        let mut m = self.mac();
        m.update(payload.as_bytes());
        let tag = m.finalize().into_bytes();
        format!(
            "v1.{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks form, signature and expiry at `now` (Unix seconds), of both forms.
    pub fn verify(&self, token: &str, now: i64) -> Result<JoinClaims, TokenError> {
        let parts = split(token)?;
        match parts.version {
            Version::V1 => {
                let mut m = self.mac();
                m.update(&parts.payload);
                m.verify_slice(&parts.sig)
                    .map_err(|_| TokenError::BadSignature)?;
                claims(&parts.payload, now)
            }
            Version::V2 => verify_v2(&self.key.verifying_key(), &parts, now),
        }
    }
}

/// Checks `v2` join tokens with the public key only, plus revocation by the generations it
/// was given (the parent relay's view, see `Ledger::token_generations`). An immutable value:
/// build a new one when the key or the generations change.
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    key: VerifyingKey,
    generations: HashMap<(ConferenceId, PointId), u32>,
}

impl TokenVerifier {
    /// From the base64url public key (as [`TokenSigner::public_key`] writes it).
    pub fn from_public_key(public_key: &str) -> Result<Self> {
        let bad = || LedgerError::Invalid("join public key: 32 bytes of base64url expected".into());
        let bytes = URL_SAFE_NO_PAD
            .decode(public_key.trim())
            .map_err(|_| bad())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        Ok(Self {
            key,
            generations: HashMap::new(),
        })
    }

    /// The same key with these current generations (pairs not listed are at 0).
    pub fn with_generations(
        mut self,
        generations: impl IntoIterator<Item = (ConferenceId, PointId, u32)>,
    ) -> Self {
        self.generations = generations
            .into_iter()
            .map(|(c, p, g)| ((c, p), g))
            .collect();
        self
    }

    /// The public key, base64url.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.as_bytes())
    }

    /// The pair's current generation as this verifier knows it.
    pub fn generation(&self, conference: &ConferenceId, point: &PointId) -> u32 {
        self.generations
            .get(&(conference.clone(), point.clone()))
            .copied()
            .unwrap_or(0)
    }

    /// Signature and expiry only (no revocation).
    pub fn verify_signature(&self, token: &str, now: i64) -> Result<JoinClaims, TokenError> {
        let parts = split(token)?;
        match parts.version {
            Version::V1 => Err(TokenError::NeedsSecret),
            Version::V2 => verify_v2(&self.key, &parts, now),
        }
    }

    /// Signature, expiry and revocation at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<JoinClaims, TokenError> {
        let claims = self.verify_signature(token, now)?;
        if claims.generation != self.generation(&claims.conference, &claims.point) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }
}

fn payload(conference: &ConferenceId, point: &PointId, generation: u32, expires: i64) -> String {
    format!("{conference}\n{point}\n{generation}\n{expires}")
}

fn signed_message(payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(DOMAIN_V2.len() + payload.len());
    msg.extend_from_slice(DOMAIN_V2);
    msg.extend_from_slice(payload);
    msg
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

struct Parts {
    version: Version,
    payload: Vec<u8>,
    sig: Vec<u8>,
}

fn split(token: &str) -> Result<Parts, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(v), Some(p), Some(t), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let (version, max_sig) = match v {
        "v1" => (Version::V1, 64),
        "v2" => (Version::V2, 96),
        _ => return Err(TokenError::Malformed),
    };
    if p.len() > 512 || t.len() > max_sig {
        return Err(TokenError::Malformed);
    }
    Ok(Parts {
        version,
        payload: URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| TokenError::Malformed)?,
        sig: URL_SAFE_NO_PAD
            .decode(t)
            .map_err(|_| TokenError::Malformed)?,
    })
}

fn verify_v2(key: &VerifyingKey, parts: &Parts, now: i64) -> Result<JoinClaims, TokenError> {
    let sig = Signature::from_slice(&parts.sig).map_err(|_| TokenError::Malformed)?;
    key.verify(&signed_message(&parts.payload), &sig)
        .map_err(|_| TokenError::BadSignature)?;
    claims(&parts.payload, now)
}

/// The claims of a payload whose signature was checked, and its expiry at `now`.
fn claims(payload: &[u8], now: i64) -> Result<JoinClaims, TokenError> {
    // Signed by us: the fields were written by `issue`, but parse them defensively.
    let text = std::str::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
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

    fn ids() -> (ConferenceId, PointId) {
        (
            ConferenceId::parse("hn-2025").unwrap(),
            PointId::parse("hue-01").unwrap(),
        )
    }

    fn signer() -> TokenSigner {
        TokenSigner::new(Secret::from_bytes(b"0123456789abcdef".to_vec()).unwrap())
    }

    #[test]
    fn v2_round_trip_and_key_is_derived_from_the_secret() {
        let s = signer();
        let (c, p) = ids();
        let t = s.issue(&c, &p, 3, 1_000);
        assert!(t.starts_with("v2."), "{t}");
        let claims = s.verify(&t, 999).unwrap();
        assert_eq!((claims.conference, claims.point), (c.clone(), p.clone()));
        assert_eq!((claims.generation, claims.expires), (3, 1_000));
        assert_eq!(
            s.verify(&t, 1_000),
            Err(TokenError::Expired { expires: 1_000 })
        );
        // Deterministic: the same secret gives the same key (links survive a restart), a
        // different secret another one.
        assert_eq!(signer().public_key(), s.public_key());
        assert_ne!(
            TokenSigner::new(Secret::random()).public_key(),
            s.public_key()
        );
        // Pinned: the derivation (HMAC-SHA256(secret, label) as the Ed25519 seed) must not
        // change, or every v2 link handed out would break. (Value checked independently
        // with Python's `cryptography` package.)
        assert_eq!(
            s.public_key(),
            "iJAixmeRwGJqorgmwz3FlsaMImD59XCkcNRvlvO0EI4"
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(s.public_key()).unwrap().len(), 32);
    }

    #[test]
    fn v2_tampering_is_refused() {
        let s = signer();
        let (c, p) = ids();
        let t = s.issue(&c, &p, 0, 1_000);
        let (head, sig) = t.rsplit_once('.').unwrap();
        // A flipped signature character.
        let mut bad = sig.to_owned();
        let flip = if &bad[10..11] == "A" { "B" } else { "A" };
        bad.replace_range(10..11, flip);
        assert_eq!(
            s.verify(&format!("{head}.{bad}"), 0),
            Err(TokenError::BadSignature)
        );
        // Another point's payload under this signature.
        let other = s.issue(&c, &PointId::parse("hue-02").unwrap(), 0, 1_000);
        let other_payload = other.split('.').nth(1).unwrap();
        assert_eq!(
            s.verify(&format!("v2.{other_payload}.{sig}"), 0),
            Err(TokenError::BadSignature)
        );
        // A v1 MAC relabelled v2, a v2 signature relabelled v1.
        let v1 = s.issue_v1(&c, &p, 0, 1_000);
        assert!(s.verify(&v1.replacen("v1.", "v2.", 1), 0).is_err());
        assert!(s.verify(&t.replacen("v2.", "v1.", 1), 0).is_err());
        assert_eq!(s.verify("v2.x", 0), Err(TokenError::Malformed));
        assert_eq!(s.verify("v3.a.b", 0), Err(TokenError::Malformed));
    }

    #[test]
    fn v1_links_still_verify_with_the_secret() {
        let s = signer();
        let (c, p) = ids();
        let t = s.issue_v1(&c, &p, 1, 1_000);
        assert!(t.starts_with("v1."));
        assert_eq!(s.verify(&t, 0).unwrap().generation, 1);
        // The verifier has no secret: it says so instead of guessing.
        assert_eq!(s.verifier().verify(&t, 0), Err(TokenError::NeedsSecret));
    }

    #[test]
    fn verifier_needs_only_the_public_key() {
        let s = signer();
        let (c, p) = ids();
        let v = TokenVerifier::from_public_key(&s.public_key()).unwrap();
        assert_eq!(v.public_key(), s.public_key());
        let t = s.issue(&c, &p, 0, 1_000);
        assert_eq!(v.verify(&t, 10).unwrap().point, p);
        assert_eq!(
            v.verify(&t, 1_000),
            Err(TokenError::Expired { expires: 1_000 })
        );
        // Another secret's token, a wrong key.
        let foreign = TokenSigner::new(Secret::random()).issue(&c, &p, 0, 1_000);
        assert_eq!(v.verify(&foreign, 10), Err(TokenError::BadSignature));
        let other_key = TokenSigner::new(Secret::random()).public_key();
        let w = TokenVerifier::from_public_key(&other_key).unwrap();
        assert_eq!(w.verify(&t, 10), Err(TokenError::BadSignature));
        // Bad keys are refused.
        assert!(TokenVerifier::from_public_key("").is_err());
        assert!(TokenVerifier::from_public_key("abc").is_err());
        assert!(TokenVerifier::from_public_key(&URL_SAFE_NO_PAD.encode([0u8; 31])).is_err());
    }

    #[test]
    fn verifier_revokes_by_generation() {
        let s = signer();
        let (c, p) = ids();
        let other = PointId::parse("hue-02").unwrap();
        let g0 = s.issue(&c, &p, 0, 1_000);
        let g1 = s.issue(&c, &p, 1, 1_000);
        let o0 = s.issue(&c, &other, 0, 1_000);
        let v = s.verifier();
        assert!(v.verify(&g0, 0).is_ok());
        assert_eq!(v.verify(&g1, 0), Err(TokenError::Revoked));
        // The parent says the pair was revoked once.
        let v = v.with_generations([(c.clone(), p.clone(), 1)]);
        assert_eq!(v.generation(&c, &p), 1);
        assert_eq!(v.verify(&g0, 0), Err(TokenError::Revoked));
        assert!(v.verify_signature(&g0, 0).is_ok());
        assert_eq!(v.verify(&g1, 0).unwrap().generation, 1);
        // Other pairs are untouched.
        assert!(v.verify(&o0, 0).is_ok());
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
