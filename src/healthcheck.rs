//! `monolith healthcheck`: asks the server on this machine for `/healthz`, for container
//! health checks (the runtime image has no curl). Exit 0 if it answers 200.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::config::{Config, TlsMode};

const TIMEOUT: Duration = Duration::from_secs(3);

/// Requests `/healthz` from the configured port; `Err` says why the server is not healthy.
pub fn check(config: &Config) -> Result<(), String> {
    let target = SocketAddr::new(loopback_for(config.bind.ip()), config.bind.port());
    let stream = TcpStream::connect_timeout(&target, TIMEOUT)
        .map_err(|e| format!("cannot connect to {target}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let request = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";
    let response = match config.tls {
        TlsMode::Off => exchange(stream, request),
        _ => {
            crate::tls::install_crypto_provider();
            let tls = ClientConnection::new(Arc::new(probe_tls_config()), localhost())
                .map_err(|e| e.to_string())?;
            exchange(StreamOwned::new(tls, stream), request)
        }
    }
    .map_err(|e| format!("no answer from {target}: {e}"))?;
    let status_line = response.lines().next().unwrap_or("");
    if status_line.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("{target} answered {status_line:?}"))
    }
}

fn exchange(mut stream: impl Read + Write, request: &[u8]) -> std::io::Result<String> {
    stream.write_all(request)?;
    let mut response = Vec::new();
    // A TLS peer that closes without close_notify still sent a whole answer.
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        Err(e) if !response.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// The address to probe: loopback when the server listens on all addresses.
fn loopback_for(bound: IpAddr) -> IpAddr {
    match bound {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid name")
}

/// TLS for a probe of this very machine: the certificate is not checked (it may be
/// self-signed, or name a public host), since nothing sits between the probe and the server.
fn probe_tls_config() -> ClientConfig {
    ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
        .with_no_client_auth()
}

#[derive(Debug)]
struct AcceptAnyCertificate;

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
