//! HTTPS without a reverse proxy (issue 13, B.2).
//!
//! - [`server_config`] reads `http.tls_cert` / `http.tls_key` (PEM) into a rustls server
//!   configuration whose certificate [`ServerCert::reload`] replaces (the binary does on
//!   SIGHUP); [`serve_tls`] is the accept loop (tokio-rustls handshakes, then hyper's
//!   HTTP/1.1 connection driving the same axum router `axum::serve` drives for plain HTTP).
//! - A plain-HTTP request that reaches the TLS port gets a short `400` naming https and the
//!   connection is closed; the relay goes on serving.
//! - [`redirect_router`]: the optional plain-HTTP listener (`http.redirect_from`) that answers
//!   every request with `308` to the same path on the https URL.
//! - [`parent_client`]: the HTTP client an edge uses towards an https parent: the system's
//!   trust store plus `upstream.ca_file`.
//!
//! The crypto provider is rustls' `ring` one: the one reqwest's rustls (already in the build for
//! https parents) uses, so no second provider is compiled in and none has to be installed
//! process-wide. (str0m's DTLS keeps aws-lc-rs; the two do not meet.)

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::limits::{self, Limiter};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tracing::{debug, warn};

/// A certificate, key or CA file that cannot be used, with the configuration key naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFileError {
    /// `http.tls_cert`, `http.tls_key` or `upstream.ca_file`.
    pub key: &'static str,
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.key, self.path.display(), self.message)
    }
}

impl std::error::Error for TlsFileError {}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|e| TlsFileError {
        key,
        path: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain and key of `http.tls_cert` / `http.tls_key`, read and checked (the key
/// must go with the chain's first certificate).
pub fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsFileError> {
    let cert_pem = read("http.tls_cert", cert)?;
    let key_pem = read("http.tls_key", key)?;
    let cert_error = |message: String| TlsFileError {
        key: "http.tls_cert",
        path: cert.to_path_buf(),
        message,
    };
    let key_error = |message: String| TlsFileError {
        key: "http.tls_key",
        path: key.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!("is not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(cert_error(
            "holds no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\")".into(),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        key_error(format!(
            "holds no usable private key (PEM PKCS#8, PKCS#1 or SEC1): {e}"
        ))
    })?;
    CertifiedKey::from_der(chain, private, &provider())
        .map_err(|e| key_error(format!("does not go with the certificate: {e}")))
}

/// The certificate the relay presents, replaced in place by [`ServerCert::reload`] (SIGHUP):
/// connections made after a reload get the new certificate, open ones keep theirs.
#[derive(Debug)]
pub struct ServerCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    /// Reads the files (as [`certified_key`]).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerCert>, TlsFileError> {
        let first = certified_key(cert, key)?;
        Ok(Arc::new(ServerCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Arc::new(first)),
        }))
    }

    /// Reads the files again; on a problem the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsFileError> {
        let fresh = Arc::new(certified_key(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The rustls server configuration presenting this certificate.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsFileError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsFileError {
                key: "http.tls_cert",
                path: self.cert.clone(),
                message: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        // HTTP/1.1 only, as the plain listener (axum is built without HTTP/2).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The rustls server configuration from a PEM certificate chain and its private key, and the
/// handle that reloads them.
pub fn server_config(
    cert: &Path,
    key: &Path,
) -> Result<(rustls::ServerConfig, Arc<ServerCert>), TlsFileError> {
    let current = ServerCert::load(cert, key)?;
    Ok((current.server_config()?, current))
}

/// Serves `app` over TLS on `listener` until the listener fails for good, with the plain
/// listener's limits (`crate::limits::serve`): at most `limits.max_connections` open, and
/// `limits.header_timeout_secs` for the TLS handshake and then for each request's header.
/// Each connection is handshaken in its own task; a failed handshake (or plain HTTP) ends that
/// connection only.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
    limiter: Arc<Limiter>,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let slots = limits::connection_slots(&limiter);
    let handshake_timeout = limits::header_timeout(&limiter).max(Duration::from_secs(1));
    loop {
        let slot = limits::take_slot(&slots).await?;
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // As the plain listener: per-connection errors and fd exhaustion are not fatal.
                warn!(error = %e, "accepting an HTTPS connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let limiter = limiter.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Some(stream) = handshake(tcp, peer, acceptor, handshake_timeout).await {
                limits::serve_connection(stream, peer, app, limiter).await;
            }
        });
    }
}

/// The TLS handshake of one connection, or None (plain HTTP answered 400, a failed or late
/// handshake, a connection closed at once).
async fn handshake(
    mut tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    within: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let _ = tcp.set_nodelay(true);
    let handshake = async {
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 {
            return Ok(None);
        }
        // 0x16: a TLS handshake record. Anything else is most likely plain HTTP.
        if first[0] != 0x16 {
            plain_http_at_tls_port(&mut tcp).await;
            return Ok(None);
        }
        acceptor.accept(tcp).await.map(Some)
    };
    match tokio::time::timeout(within, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%peer, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Reads what the client sent (so closing does not reset the connection before it reads the
/// answer), answers 400 naming https, and closes.
async fn plain_http_at_tls_port(tcp: &mut TcpStream) {
    let mut buf = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf)).await;
    let body =
        "Cổng này chỉ nhận HTTPS: dùng https://\nThis port speaks HTTPS only: use https://\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(answer.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// Where the redirect listener sends clients.
#[derive(Clone)]
struct RedirectTo {
    /// `http.public_url` when it was set to an https URL: always used.
    public: Option<String>,
    /// The HTTPS listen port (left out of Locations when 443).
    port: u16,
    /// Used when the request names no host.
    fallback: String,
}

/// The plain-HTTP listener of `http.redirect_from`: every method and path answers `308` with
/// `Location` the same path and query on https. The base is `http.public_url` when that is an
/// https URL, else the request's own host name on the HTTPS port. One handler for every
/// method and path (a method router served alone): this listener serves no route of the API (`axum::serve(listener,
/// redirect_service(&config).into_make_service())`).
pub fn redirect_service(config: &hallcast_config::Config) -> axum::routing::MethodRouter {
    let given = config.http.public_url.trim_end_matches('/');
    let to = RedirectTo {
        public: given.starts_with("https://").then(|| given.to_string()),
        port: config.http.listen.port(),
        fallback: config.public_url(),
    };
    axum::routing::any(redirect).with_state(Arc::new(to))
}

async fn redirect(State(to): State<Arc<RedirectTo>>, headers: HeaderMap, uri: Uri) -> Response {
    let base = match &to.public {
        Some(p) => p.clone(),
        None => match headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(host_name)
        {
            Some(host) if to.port == 443 => format!("https://{host}"),
            Some(host) => format!("https://{host}:{}", to.port),
            None => to.fallback.clone(),
        },
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut r = StatusCode::PERMANENT_REDIRECT.into_response();
    match HeaderValue::from_str(&format!("{base}{path}")) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    }
    r
}

/// The host name of a `Host` header (without its port), if it is a plausible one.
fn host_name(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    ok.then_some(name)
}

/// How long a pooled connection to the parent may sit idle before it is dropped. A relay closes
/// a keep-alive connection that sends no request within `limits.header_timeout_secs` (default
/// 10 s); reqwest keeps one for 90 s. A request written onto a connection the parent is closing
/// at that moment fails with "connection closed before message completed" (a POST is not retried
/// by the client), so the child lets go first: below the parent's default timeout, with margin.
pub const PARENT_POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// A plain HTTP client builder for the parent relay: [`PARENT_POOL_IDLE`], no extra trust.
pub fn parent_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().pool_idle_timeout(PARENT_POOL_IDLE)
}

/// An HTTP client builder for the parent relay (reports, WHEP pulls, attendance): the system's
/// trust store, plus the certificates of `ca_file` (PEM bundle) when it is set; pooled
/// connections expire after [`PARENT_POOL_IDLE`].
pub fn parent_client(ca_file: &Path) -> Result<reqwest::ClientBuilder, TlsFileError> {
    let builder = parent_client_builder();
    if ca_file.as_os_str().is_empty() {
        return Ok(builder);
    }
    let pem = read("upstream.ca_file", ca_file)?;
    let error = |message: String| TlsFileError {
        key: "upstream.ca_file",
        path: ca_file.to_path_buf(),
        message,
    };
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| error(format!("is not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(error(
            "holds no certificate (expected PEM \"-----BEGIN CERTIFICATE-----\")".into(),
        ));
    }
    Ok(certs
        .into_iter()
        .fold(builder, |b, c| b.add_root_certificate(c)))
}

/// Every certificate file of `config` that cannot be used (`hallcast validate` and start-up).
pub fn check_files(config: &hallcast_config::Config) -> Vec<TlsFileError> {
    let mut out = Vec::new();
    if config.http.tls()
        && let Err(e) = server_config(&config.http.tls_cert, &config.http.tls_key)
    {
        out.push(e);
    }
    if let Err(e) = parent_client(&config.upstream.ca_file) {
        out.push(e);
    }
    out
}

/// Logs a warning when the redirect listener would send clients to an http public URL.
pub fn warn_if_public_url_is_http(config: &hallcast_config::Config) {
    if config.http.tls() && config.public_url().starts_with("http://") {
        warn!(
            public_url = %config.public_url(),
            "TLS is on but http.public_url is http://: links handed out will not use https"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_of_host_headers() {
        assert_eq!(host_name("hall.example:80"), Some("hall.example"));
        assert_eq!(host_name("hall.example"), Some("hall.example"));
        assert_eq!(host_name("127.0.0.1:8080"), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:80"), Some("[::1]"));
        assert_eq!(host_name("evil.example/x"), None);
        assert_eq!(host_name(""), None);
    }

    #[test]
    fn missing_and_wrong_files_name_their_key() {
        let dir = std::env::temp_dir().join(format!("hallcast-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let nothing = dir.join("missing.pem");
        let e = server_config(&nothing, &nothing).unwrap_err();
        assert_eq!(e.key, "http.tls_cert");
        assert!(e.message.contains("cannot read"), "{e}");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = server_config(&junk, &nothing).unwrap_err();
        assert_eq!(e.key, "http.tls_key", "{e}");
        let e = parent_client(&junk).unwrap_err();
        assert_eq!(e.key, "upstream.ca_file");
        assert!(parent_client(Path::new("")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A connection to the parent idle for longer than [`PARENT_POOL_IDLE`] is not reused: the
    /// next request opens a new one, before the parent's own idle close (its default
    /// `limits.header_timeout_secs`) could race it.
    #[tokio::test]
    async fn parent_connections_expire_before_the_parents_idle_close() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let parent_idle_close = std::time::Duration::from_secs(
            hallcast_config::Config::default()
                .limits
                .header_timeout_secs,
        );
        assert!(PARENT_POOL_IDLE * 3 / 2 <= parent_idle_close);

        // A keep-alive HTTP/1.1 responder that counts the connections it accepts.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n @ 1..) = tcp.read(&mut chunk).await {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                            if tcp.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });

        let client = parent_client(Path::new("")).unwrap().build().unwrap();
        let url = format!("http://{addr}/api/v1/tree");
        let get = || async { client.get(&url).send().await.unwrap().status() };
        assert_eq!(get().await, 200);
        assert_eq!(get().await, 200);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "a busy connection is reused"
        );
        tokio::time::sleep(PARENT_POOL_IDLE + std::time::Duration::from_millis(500)).await;
        assert_eq!(get().await, 200);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "an idle connection past PARENT_POOL_IDLE must not be reused"
        );
    }
}
