//! The relay's DTLS: one certificate and one validated DTLS configuration for every session.
//!
//! str0m's stock provider builds a fresh `dimpl::Config` for every `Rtc`, and building one
//! validates the crypto provider from scratch: test vectors for every hash and cipher and a
//! trial key exchange in every group (X25519, P-256 and P-384). Measured in a join storm
//! (`hallcast-load storm`, 500 points joining in 1 s), that validation was 15 % of the media
//! thread's time, on the thread that also forwards every packet. Here the configuration is
//! built (and validated) once per MTU and shared through an `Arc`; each session still gets
//! its own `dimpl::Dtls` state, keys and handshake.
//!
//! The certificate is shared too ([`RelayDtls::certificate`]): generating one per session
//! costs a key pair and a signature on the media thread, and buys nothing — the peer checks
//! the fingerprint the SDP answer carries, which is the relay's identity either way. This is
//! what other SFUs do (one certificate per process or worker). A new one is made per process
//! start.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert};
use str0m::crypto::CryptoError;
use str0m::crypto::dtls::{
    DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};

/// The provider: str0m's own for everything but DTLS instances.
#[derive(Debug)]
pub(crate) struct RelayDtls {
    /// Validated configurations by MTU (a relay uses one MTU; the list stays tiny).
    configs: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>>,
}

static RELAY_DTLS: RelayDtls = RelayDtls {
    configs: Mutex::new(Vec::new()),
};

impl RelayDtls {
    /// The crypto provider every relay `Rtc` is built with.
    pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
        static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
        PROVIDER
            .get_or_init(|| {
                let stock = str0m::crypto::from_feature_flags();
                Arc::new(CryptoProvider {
                    dtls_provider: &RELAY_DTLS,
                    ..stock
                })
            })
            .clone()
    }

    /// The relay's certificate, made on first use.
    fn certificate() -> Option<DtlsCert> {
        static CERT: OnceLock<Option<DtlsCert>> = OnceLock::new();
        CERT.get_or_init(|| dimpl_certificate().ok()).clone()
    }

    /// The shared configuration for `mtu`, built and validated on first use.
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        let mut configs = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = configs.iter().find(|(m, _)| *m == mtu) {
            return Ok(c.clone());
        }
        // ICE has verified return routability before DTLS starts, so the server cookie
        // exchange would only add a round trip.
        let mut b = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        let config = Arc::new(
            b.build()
                .map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))?,
        );
        configs.push((mtu, config.clone()));
        Ok(config)
    }
}

fn dimpl_certificate() -> Result<DtlsCert, CryptoError> {
    dimpl::certificate::generate_self_signed_certificate()
        .map_err(|e| CryptoError::Other(format!("DTLS certificate: {e}")))
}

impl DtlsProvider for RelayDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        RelayDtls::certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let dtls = match version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert.clone(), now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert.clone(), now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert.clone(), now),
            other => {
                return Err(CryptoError::Other(format!(
                    "DTLS version {other} is not supported"
                )));
            }
        };
        Ok(Box::new(Session(dtls)))
    }
}

/// One session's DTLS state; every call goes straight to dimpl.
struct Session(dimpl::Dtls);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("relay DTLS session")
    }
}

impl DtlsInstance for Session {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_validated_configuration_per_mtu() {
        let p = RelayDtls {
            configs: Mutex::new(Vec::new()),
        };
        let a = p.config(Some(1150)).unwrap();
        let b = p.config(Some(1150)).unwrap();
        let c = p.config(None).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "the same MTU must reuse the configuration"
        );
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(a.mtu(), 1150);
    }

    #[test]
    fn one_certificate_per_process() {
        let a = RelayDtls::certificate().expect("a certificate");
        let b = RelayDtls::generate_certificate(&RELAY_DTLS).expect("a certificate");
        assert_eq!(a.certificate, b.certificate);
        assert!(!a.private_key.is_empty());
    }
}
