//! HTTPS: the certificate from PEM files (re-read on SIGHUP) or generated at start-up.

use std::io;
use std::path::{Path, PathBuf};

use axum_server::tls_rustls::RustlsConfig;

use crate::config::TlsMode;

/// Makes ring the process's TLS crypto provider; harmless if one is installed already.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the TLS configuration for `mode`; `None` for plain HTTP. An unreadable or invalid
/// certificate or key is an error that names the files.
pub async fn load(mode: &TlsMode) -> io::Result<Option<RustlsConfig>> {
    install_crypto_provider();
    match mode {
        TlsMode::Off => Ok(None),
        TlsMode::Files { cert, key } => RustlsConfig::from_pem_file(cert, key)
            .await
            .map(Some)
            .map_err(|e| invalid_files(cert, key, &e)),
        TlsMode::SelfSigned => {
            let (cert, key) = self_signed_pem().map_err(io::Error::other)?;
            tracing::warn!("serving HTTPS with a self-signed certificate: for local testing only");
            RustlsConfig::from_pem(cert.into_bytes(), key.into_bytes())
                .await
                .map(Some)
        }
    }
}

/// Re-reads both files into `config`: new connections get the new certificate, open ones keep
/// theirs. On failure the old certificate stays in use.
pub async fn reload(config: &RustlsConfig, cert: &Path, key: &Path) -> io::Result<()> {
    config
        .reload_from_pem_file(cert, key)
        .await
        .map_err(|e| invalid_files(cert, key, &e))
}

/// Reloads the certificate each time the process gets SIGHUP.
#[cfg(unix)]
pub fn reload_on_sighup(config: RustlsConfig, cert: PathBuf, key: PathBuf) -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match reload(&config, &cert, &key).await {
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
pub fn reload_on_sighup(_: RustlsConfig, _: PathBuf, _: PathBuf) -> io::Result<()> {
    Ok(())
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
