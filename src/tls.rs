//! HTTPS: the certificate from PEM files (re-read on SIGHUP) or generated at start-up.

use std::io;
use std::path::{Path, PathBuf};

use axum_server::tls_rustls::RustlsConfig;

use crate::config::TlsMode;
use crate::metrics::Metrics;

/// Makes ring the process's TLS crypto provider; harmless if one is installed already.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the TLS configuration for `mode`; `None` for plain HTTP. An unreadable or invalid
/// certificate or key is an error that names the files. The certificate's expiry goes to
/// `metrics`.
pub async fn load(mode: &TlsMode, metrics: &Metrics) -> io::Result<Option<RustlsConfig>> {
    install_crypto_provider();
    let (cert, key) = match mode {
        TlsMode::Off => return Ok(None),
        TlsMode::Files { cert, key } => read_pair(cert, key).await?,
        TlsMode::SelfSigned => {
            let (cert, key) = self_signed_pem().map_err(io::Error::other)?;
            tracing::warn!("serving HTTPS with a self-signed certificate: for local testing only");
            (cert.into_bytes(), key.into_bytes())
        }
    };
    record_expiry(&cert, metrics);
    let config = RustlsConfig::from_pem(cert, key).await;
    match mode {
        TlsMode::Files { cert, key } => config.map_err(|e| invalid_files(cert, key, &e)),
        _ => config,
    }
    .map(Some)
}

/// Re-reads both files into `config`: new connections get the new certificate, open ones keep
/// theirs. On failure the old certificate stays in use.
pub async fn reload(
    config: &RustlsConfig,
    cert: &Path,
    key: &Path,
    metrics: &Metrics,
) -> io::Result<()> {
    let (cert_pem, key_pem) = read_pair(cert, key).await?;
    config
        .reload_from_pem(cert_pem.clone(), key_pem)
        .await
        .map_err(|e| invalid_files(cert, key, &e))?;
    record_expiry(&cert_pem, metrics);
    Ok(())
}

/// Reloads the certificate each time the process gets SIGHUP.
#[cfg(unix)]
pub fn reload_on_sighup(
    config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    metrics: Metrics,
) -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match reload(&config, &cert, &key, &metrics).await {
                Ok(()) => tracing::info!(cert = %cert.display(), "TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload failed; keeping the old certificate")
                }
            }
        }
    });
    Ok(())
}

/// SIGHUP does not exist here; certificates are read once.
#[cfg(not(unix))]
pub fn reload_on_sighup(_: RustlsConfig, _: PathBuf, _: PathBuf, _: Metrics) -> io::Result<()> {
    Ok(())
}

async fn read_pair(cert: &Path, key: &Path) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let cert_pem = tokio::fs::read(cert)
        .await
        .map_err(|e| invalid_files(cert, key, &e))?;
    let key_pem = tokio::fs::read(key)
        .await
        .map_err(|e| invalid_files(cert, key, &e))?;
    Ok((cert_pem, key_pem))
}

/// The Unix time after which the first certificate of a PEM chain is no longer valid.
pub fn not_after(cert_pem: &[u8]) -> Option<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn record_expiry(cert_pem: &[u8], metrics: &Metrics) {
    match not_after(cert_pem) {
        Some(at) => metrics.set_tls_not_after(at),
        None => tracing::warn!("cannot read the certificate's expiry for the metrics"),
    }
}

/// A certificate for `localhost`, `127.0.0.1` and `::1` and its key, as PEM.
pub fn self_signed_pem() -> Result<(String, String), rcgen::Error> {
    let names = ["localhost", "127.0.0.1", "::1"].map(str::to_owned);
    let certified = rcgen::generate_simple_self_signed(names)?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

fn invalid_files(cert: &Path, key: &Path, error: &io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!(
            "invalid TLS certificate or key (TLS_CERT_PATH={}, TLS_KEY_PATH={}): {error}",
            cert.display(),
            key.display()
        ),
    )
}
