//! Command-line flags and the resolved configuration of the HTTP(S) image server.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;

use super::ImageHttpError;
use crate::config::parse_size;

/// Flags of `fleetup serve` for the image server. The listen addresses themselves
/// (`--image-http`, `--image-https`) belong to `serve`, which binds the listeners.
#[derive(clap::Args, Debug, Clone)]
pub struct ImageHttpArgs {
    /// PEM certificate chain of the HTTPS image server; needs --image-https-key.
    #[arg(
        id = "image-https-cert",
        long = "image-https-cert",
        env = "FLEETUP_IMAGE_HTTPS_CERT",
        requires = "image-https-key",
        value_name = "FILE"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of the HTTPS image server; needs --image-https-cert.
    #[arg(
        id = "image-https-key",
        long = "image-https-key",
        env = "FLEETUP_IMAGE_HTTPS_KEY",
        requires = "image-https-cert",
        value_name = "FILE"
    )]
    pub tls_key: Option<PathBuf>,

    /// Connections to the image server at once, HTTP and HTTPS together; more are answered
    /// 503 and closed.
    #[arg(
        id = "image-http-max-connections",
        long = "image-http-max-connections",
        env = "FLEETUP_IMAGE_HTTP_MAX_CONNECTIONS",
        default_value_t = 256,
        value_name = "N"
    )]
    pub max_connections: usize,

    /// Connections to the image server at once from one client address.
    #[arg(
        id = "image-http-max-per-client",
        long = "image-http-max-per-client",
        env = "FLEETUP_IMAGE_HTTP_MAX_PER_CLIENT",
        default_value_t = 8,
        value_name = "N"
    )]
    pub max_per_client: usize,

    /// Seconds a client may take to send a request's line and headers (and, on a kept-alive
    /// connection, to start the next request; for HTTPS, to finish the TLS handshake).
    #[arg(
        id = "image-http-header-timeout",
        long = "image-http-header-timeout",
        env = "FLEETUP_IMAGE_HTTP_HEADER_TIMEOUT",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub header_timeout: u64,

    /// Seconds a download may go without progress (the client stopped reading) before the
    /// connection is closed.
    #[arg(
        id = "image-http-idle-timeout",
        long = "image-http-idle-timeout",
        env = "FLEETUP_IMAGE_HTTP_IDLE_TIMEOUT",
        default_value_t = 120,
        value_name = "SECONDS"
    )]
    pub idle_timeout: u64,

    /// Send buffer (SO_SNDBUF) asked for each connection, to cover a WAN's bandwidth-delay
    /// product (100 Mbit/s × 80 ms = 1 MB); the kernel caps it at net.core.wmem_max. 0 leaves
    /// it to the kernel's autotuning.
    #[arg(
        id = "image-http-send-buffer",
        long = "image-http-send-buffer",
        env = "FLEETUP_IMAGE_HTTP_SEND_BUFFER",
        default_value = "4MiB",
        value_parser = parse_size,
        value_name = "BYTES"
    )]
    pub send_buffer: u64,
}

impl Default for ImageHttpArgs {
    fn default() -> Self {
        let c = ImageHttpConfig::default();
        Self {
            tls_cert: None,
            tls_key: None,
            max_connections: c.max_connections,
            max_per_client: c.max_per_client,
            header_timeout: c.header_timeout.as_secs(),
            idle_timeout: c.idle_timeout.as_secs(),
            send_buffer: c.send_buffer as u64,
        }
    }
}

impl ImageHttpArgs {
    /// Resolve the limits; `https` says whether `--image-https` is on, which needs the
    /// certificate and key.
    pub(crate) fn to_config(&self, https: bool) -> Result<ImageHttpConfig, ImageHttpError> {
        if self.max_connections == 0 || self.max_per_client == 0 {
            return Err(ImageHttpError::Config(
                "--image-http-max-connections and --image-http-max-per-client must be at least 1"
                    .into(),
            ));
        }
        if self.header_timeout == 0 || self.idle_timeout == 0 {
            return Err(ImageHttpError::Config(
                "--image-http-header-timeout and --image-http-idle-timeout must be at least 1 second"
                    .into(),
            ));
        }
        let send_buffer = usize::try_from(self.send_buffer)
            .ok()
            .filter(|&n| n <= i32::MAX as usize)
            .ok_or_else(|| {
                ImageHttpError::Config("--image-http-send-buffer must be below 2 GiB".into())
            })?;
        let tls = match (https, &self.tls_cert, &self.tls_key) {
            (false, _, _) => None,
            (true, Some(cert), Some(key)) => Some(ImageTls::from_pem_files(cert, key)?),
            (true, _, _) => {
                return Err(ImageHttpError::Config(
                    "--image-https needs --image-https-cert FILE and --image-https-key FILE (PEM); give both, or turn HTTPS off with --image-https off"
                        .into(),
                ));
            }
        };
        Ok(ImageHttpConfig {
            max_connections: self.max_connections,
            max_per_client: self.max_per_client,
            header_timeout: Duration::from_secs(self.header_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            send_buffer,
            tls,
        })
    }
}

/// A loaded certificate and key for HTTPS.
#[derive(Clone)]
pub struct ImageTls {
    pub(super) config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for ImageTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ImageTls")
    }
}

impl ImageTls {
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, ImageHttpError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let tls_err = |path: &Path, reason: String| ImageHttpError::Tls {
            path: path.to_path_buf(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(cert)
            .map_err(|e| tls_err(cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_err(cert, e.to_string()))?;
        if certs.is_empty() {
            return Err(tls_err(cert, "no CERTIFICATE block in the file".into()));
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(cert, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .map_err(|e| tls_err(key, format!("certificate and key do not fit together: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// Everything the image server needs besides its listeners, the store, the grants and the
/// transfer registry.
#[derive(Debug, Clone)]
pub struct ImageHttpConfig {
    /// HTTP and HTTPS connections together.
    pub max_connections: usize,
    pub max_per_client: usize,
    /// Longest time to receive a request head (and the TLS handshake before the first one).
    pub header_timeout: Duration,
    /// Longest time a response may go without progress.
    pub idle_timeout: Duration,
    /// SO_SNDBUF asked for each connection; 0 leaves the kernel's autotuning.
    pub send_buffer: usize,
    /// The certificate of the HTTPS listener, when there is one.
    pub tls: Option<ImageTls>,
}

impl Default for ImageHttpConfig {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_per_client: 8,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            send_buffer: 4 << 20,
            tls: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        http: ImageHttpArgs,
    }

    #[test]
    fn flag_defaults_match_config_defaults() {
        let flags = Cli::try_parse_from(["fleetup"])
            .unwrap()
            .http
            .to_config(false)
            .unwrap();
        let default = ImageHttpConfig::default();
        assert_eq!(flags.max_connections, default.max_connections);
        assert_eq!(flags.max_per_client, default.max_per_client);
        assert_eq!(flags.header_timeout, default.header_timeout);
        assert_eq!(flags.idle_timeout, default.idle_timeout);
        assert_eq!(flags.send_buffer, default.send_buffer);
        let args = ImageHttpArgs::default();
        assert_eq!(args.send_buffer, 4 << 20);
    }

    #[test]
    fn https_without_certificate_names_the_flags() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        let err = cli.http.to_config(true).unwrap_err().to_string();
        assert!(err.contains("--image-https-cert"), "{err}");
        assert!(Cli::try_parse_from(["x", "--image-https-cert", "c.pem"]).is_err());
        let cli = Cli::try_parse_from(["x", "--image-http-max-connections", "0"]).unwrap();
        assert!(cli.http.to_config(false).is_err());
        let cli = Cli::try_parse_from(["x", "--image-http-header-timeout", "0"]).unwrap();
        assert!(cli.http.to_config(false).is_err());
    }

    #[test]
    fn unreadable_certificates_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = ImageTls::from_pem_files(&missing, &missing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.pem"), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem").unwrap();
        let err = ImageTls::from_pem_files(&garbage, &garbage)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--image-https-cert"), "{err}");
    }
}
