//! `copy http://…` and `copy https://…` on a lab device: one HTTP/1.1 GET from the device's own
//! address, over TLS for `https`. Like an IOS-XE device with `ip http client secure-trustpoint`
//! pointing at a trustpoint that accepts the server, the lab checks no certificate (see
//! docs/lab.md).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::copy::{FetchError, FetchOptions, FlashSink};

/// The longest response head read before the body.
const MAX_HEAD: usize = 16 * 1024;

/// Fetch `path` from `server` into `sink`; returns the number of body bytes written.
pub(super) async fn fetch(
    tls: bool,
    server: SocketAddr,
    path: &str,
    opts: &FetchOptions,
    sink: &mut FlashSink,
) -> Result<u64, FetchError> {
    let local = opts.local_ip;
    let connect = async {
        let socket = match local {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }?;
        socket.bind(SocketAddr::new(local, 0))?;
        socket.connect(server).await
    };
    let stream = tokio::time::timeout(opts.tftp_timeout * 3, connect)
        .await
        .map_err(|_| FetchError::Timeout)?
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => FetchError::Refused,
            io::ErrorKind::TimedOut => FetchError::Timeout,
            _ => FetchError::Other(e.to_string()),
        })?;
    let host = server.ip().to_string();
    if !tls {
        return get(stream, &host, path, sink).await;
    }
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| FetchError::Other(e.to_string()))?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCertificate))
    .with_no_client_auth();
    let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(server.ip().into());
    let stream = tokio::time::timeout(
        opts.tftp_timeout * 3,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream),
    )
    .await
    .map_err(|_| FetchError::Timeout)?
    .map_err(|e| FetchError::Other(format!("SSL handshake failed: {e}")))?;
    get(stream, &host, path, sink).await
}

async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
    sink: &mut FlashSink,
) -> Result<u64, FetchError> {
    let other = |e: io::Error| FetchError::Other(e.to_string());
    let request = format!(
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cisco-IOS\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(other)?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let body_start = loop {
        let n = stream.read(&mut buf).await.map_err(other)?;
        if n == 0 {
            return Err(FetchError::Other(
                "connection closed before a response".into(),
            ));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > MAX_HEAD {
            return Err(FetchError::Other("response head too long".into()));
        }
    };
    let text = String::from_utf8_lossy(&head[..body_start]).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| FetchError::Other("malformed HTTP response".into()))?;
    match status {
        200 => {}
        404 | 410 => return Err(FetchError::NotFound),
        401 | 403 => return Err(FetchError::Permission),
        other => return Err(FetchError::Other(format!("HTTP status {other}"))),
    }
    let length: Option<u64> = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    });
    let mut total = 0u64;
    let mut write = async |data: &[u8], total: &mut u64| -> Result<(), FetchError> {
        if let Err(e) = sink.write_all(data).await {
            return Err(super::copy::sink_error(sink, &e));
        }
        *total += data.len() as u64;
        Ok(())
    };
    let first = head[body_start..].to_vec();
    if !first.is_empty() {
        write(&first, &mut total).await?;
    }
    loop {
        if length.is_some_and(|l| total >= l) {
            break;
        }
        let n = stream.read(&mut buf).await.map_err(other)?;
        if n == 0 {
            break;
        }
        write(&buf[..n], &mut total).await?;
    }
    if let Some(l) = length
        && total != l
    {
        return Err(FetchError::Other(format!(
            "connection closed after {total} of {l} bytes"
        )));
    }
    Ok(total)
}

/// Accepts any server certificate, and checks that the handshake is signed by it.
#[derive(Debug)]
struct AnyCertificate;

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[tokio_rustls::rustls::pki_types::CertificateDer<'_>],
        _server_name: &tokio_rustls::rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: tokio_rustls::rustls::pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error>
    {
        Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &tokio_rustls::rustls::crypto::ring::default_provider()
                .signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &tokio_rustls::rustls::crypto::ring::default_provider()
                .signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        tokio_rustls::rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
