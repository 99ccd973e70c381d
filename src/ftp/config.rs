//! Command-line flags and the resolved configuration of the FTP server.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;

use super::FtpError;
use super::auth::FtpCredentials;

/// Name of the generated password file inside the data directory.
pub(super) const PASSWORD_FILE: &str = "ftp-password";

/// A range of TCP ports for passive data connections, e.g. `50000-50100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    pub(crate) fn len(&self) -> usize {
        usize::from(self.high - self.low) + 1
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("invalid port range {s:?}: expected LOW-HIGH with 1 <= LOW <= HIGH <= 65535")
        };
        let (low, high) = s.trim().split_once('-').ok_or_else(bad)?;
        let low: u16 = low.trim().parse().map_err(|_| bad())?;
        let high: u16 = high.trim().parse().map_err(|_| bad())?;
        if low == 0 || low > high {
            return Err(bad());
        }
        Ok(PortRange { low, high })
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnOff {
    On,
    Off,
}

/// FTP flags of `fleetup serve`. The listen address itself (`--ftp ADDR`) belongs to `serve`,
/// which binds the listener and hands it over.
#[derive(clap::Args, Debug, Clone)]
pub struct FtpArgs {
    /// Ports for passive data connections (PASV/EPSV), e.g. 50000-50100; open them in the
    /// firewall. Default: any free port.
    #[arg(
        id = "ftp-passive-ports",
        long = "ftp-passive-ports",
        env = "FLEETUP_FTP_PASSIVE_PORTS",
        value_name = "LOW-HIGH"
    )]
    pub passive_ports: Option<PortRange>,

    /// IPv4 address announced in PASV replies, when devices reach fleetup through NAT.
    /// Default: the address the device connected to.
    #[arg(
        id = "ftp-public-host",
        long = "ftp-public-host",
        env = "FLEETUP_FTP_PUBLIC_HOST",
        value_name = "ADDR"
    )]
    pub public_host: Option<std::net::Ipv4Addr>,

    /// FTP login name of the service account.
    #[arg(
        id = "ftp-user",
        long = "ftp-user",
        env = "FLEETUP_FTP_USER",
        default_value = "fleetup",
        value_name = "NAME"
    )]
    pub user: String,

    /// FTP password of the service account. Default: generated at first start and kept in
    /// DATA_DIR/ftp-password.
    #[arg(
        id = "ftp-password",
        long = "ftp-password",
        env = "FLEETUP_FTP_PASSWORD",
        hide_env_values = true,
        value_name = "PW"
    )]
    pub password: Option<String>,

    /// Allow anonymous login (user `anonymous` or `ftp`, any password).
    #[arg(
        id = "ftp-anonymous",
        long = "ftp-anonymous",
        env = "FLEETUP_FTP_ANONYMOUS"
    )]
    pub anonymous: bool,

    /// Active mode (PORT/EPRT). The server connects back only to the address of the control
    /// connection, never to a third host.
    #[arg(
        id = "ftp-active",
        long = "ftp-active",
        env = "FLEETUP_FTP_ACTIVE",
        value_enum,
        default_value = "on"
    )]
    pub(crate) active: OnOff,

    /// PEM certificate chain for FTPS (explicit AUTH TLS); needs --ftp-tls-key.
    #[arg(
        id = "ftp-tls-cert",
        long = "ftp-tls-cert",
        env = "FLEETUP_FTP_TLS_CERT",
        requires = "ftp-tls-key",
        value_name = "FILE"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for FTPS; needs --ftp-tls-cert.
    #[arg(
        id = "ftp-tls-key",
        long = "ftp-tls-key",
        env = "FLEETUP_FTP_TLS_KEY",
        requires = "ftp-tls-cert",
        value_name = "FILE"
    )]
    pub tls_key: Option<PathBuf>,

    /// Concurrent FTP sessions, all sources together.
    #[arg(
        id = "ftp-max-sessions",
        long = "ftp-max-sessions",
        env = "FLEETUP_FTP_MAX_SESSIONS",
        default_value_t = 200
    )]
    pub max_sessions: usize,

    /// Concurrent FTP sessions from one source address (segmented clients open several).
    #[arg(
        id = "ftp-max-per-client",
        long = "ftp-max-per-client",
        env = "FLEETUP_FTP_MAX_PER_CLIENT",
        default_value_t = 10
    )]
    pub max_per_client: usize,

    /// Seconds without a command (control) or without progress (data) before a connection is
    /// closed.
    #[arg(
        id = "ftp-idle-timeout",
        long = "ftp-idle-timeout",
        env = "FLEETUP_FTP_IDLE_TIMEOUT",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub idle_timeout: u64,

    /// Seconds a new connection may take to log in (USER/PASS) before it is closed, so that
    /// connections that never log in do not hold session slots for the whole idle timeout.
    #[arg(
        id = "ftp-login-timeout",
        long = "ftp-login-timeout",
        env = "FLEETUP_FTP_LOGIN_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub login_timeout: u64,

    /// Failed logins from one address before it is locked out (0: never).
    #[arg(
        id = "ftp-lockout-after",
        long = "ftp-lockout-after",
        env = "FLEETUP_FTP_LOCKOUT_AFTER",
        default_value_t = 5
    )]
    pub lockout_after: u32,

    /// How long a locked-out address stays locked out.
    #[arg(
        id = "ftp-lockout-seconds",
        long = "ftp-lockout-seconds",
        env = "FLEETUP_FTP_LOCKOUT_SECONDS",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub lockout_seconds: u64,
}

impl FtpArgs {
    /// Resolve the flags: read or generate the password, load the TLS certificate.
    pub(crate) fn to_config(&self, data_dir: &Path) -> Result<FtpConfig, FtpError> {
        if self.user.trim().is_empty() {
            return Err(FtpError::Config("--ftp-user must not be empty".into()));
        }
        let password = match &self.password {
            Some(p) if p.is_empty() => {
                return Err(FtpError::Config(
                    "--ftp-password must not be empty; leave it out to use the generated one"
                        .into(),
                ));
            }
            Some(p) => p.clone(),
            None => load_or_create_password(data_dir).map_err(|source| FtpError::PasswordFile {
                path: data_dir.join(PASSWORD_FILE),
                source,
            })?,
        };
        if self.max_sessions == 0 || self.max_per_client == 0 {
            return Err(FtpError::Config(
                "--ftp-max-sessions and --ftp-max-per-client must be at least 1".into(),
            ));
        }
        if self.idle_timeout == 0 {
            return Err(FtpError::Config(
                "--ftp-idle-timeout must be at least 1 second".into(),
            ));
        }
        if self.login_timeout == 0 {
            return Err(FtpError::Config(
                "--ftp-login-timeout must be at least 1 second".into(),
            ));
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(FtpTls::from_pem_files(cert, key)?),
            (None, None) => None,
            _ => {
                return Err(FtpError::Config(
                    "--ftp-tls-cert and --ftp-tls-key must be given together".into(),
                ));
            }
        };
        let credentials = FtpCredentials::new(&self.user, &password);
        credentials.set_anonymous(self.anonymous);
        Ok(FtpConfig {
            credentials,
            passive_ports: self.passive_ports,
            public_host: self.public_host.map(IpAddr::V4),
            active: self.active == OnOff::On,
            tls,
            max_sessions: self.max_sessions,
            max_per_client: self.max_per_client,
            idle_timeout: Duration::from_secs(self.idle_timeout),
            login_timeout: Duration::from_secs(self.login_timeout),
            lockout_after: self.lockout_after,
            lockout_duration: Duration::from_secs(self.lockout_seconds),
        })
    }
}

/// A loaded certificate and key for FTPS.
#[derive(Clone)]
pub struct FtpTls {
    pub(super) config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for FtpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FtpTls")
    }
}

impl FtpTls {
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, FtpError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let tls_err = |path: &Path, reason: String| FtpError::Tls {
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
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(cert, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .map_err(|e| tls_err(key, format!("certificate and key do not fit together: {e}")))?;
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// Everything the FTP server needs besides the listener, the root and the transfer registry.
#[derive(Debug, Clone)]
pub struct FtpConfig {
    /// Shared with the running server: temporary accounts added later take effect at once.
    pub credentials: FtpCredentials,
    pub passive_ports: Option<PortRange>,
    /// Announced in PASV replies instead of the control connection's local address.
    pub public_host: Option<IpAddr>,
    /// Whether PORT/EPRT are accepted.
    pub active: bool,
    pub tls: Option<FtpTls>,
    pub max_sessions: usize,
    pub max_per_client: usize,
    /// Control: longest wait for the next command. Data: longest wait for a data connection
    /// or for progress while sending.
    pub idle_timeout: Duration,
    /// Longest time from connection to a successful login.
    pub login_timeout: Duration,
    pub lockout_after: u32,
    pub lockout_duration: Duration,
}

impl Default for FtpConfig {
    /// User `fleetup` with a fresh random password, any free passive port, active mode on,
    /// no TLS: set `credentials` to log in.
    fn default() -> Self {
        Self {
            credentials: FtpCredentials::new("fleetup", &generate_password()),
            passive_ports: None,
            public_host: None,
            active: true,
            tls: None,
            max_sessions: 200,
            max_per_client: 10,
            idle_timeout: Duration::from_secs(300),
            login_timeout: Duration::from_secs(30),
            lockout_after: 5,
            lockout_duration: Duration::from_secs(300),
        }
    }
}

/// Letters and digits that cannot be confused with one another and need no escaping in an
/// `ftp://user:password@host/file` URL typed into a device.
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

pub fn generate_password() -> String {
    (0..24)
        .map(|_| char::from(ALPHABET[(rand::random::<u32>() as usize) % ALPHABET.len()]))
        .collect()
}

/// The FTP service password kept in `DATA_DIR/ftp-password` (mode 0600), generated on first use.
pub(super) fn load_or_create_password(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(PASSWORD_FILE);
    let read = |path: &Path| -> std::io::Result<String> {
        let mut s = String::new();
        std::fs::File::open(path)?.read_to_string(&mut s)?;
        let pw = s.trim().to_string();
        if pw.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is empty; delete it to have a new password generated",
                    path.display()
                ),
            ));
        }
        Ok(pw)
    };
    match read(&path) {
        Ok(pw) => return Ok(pw),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let pw = generate_password();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(&path) {
        Ok(mut f) => {
            f.write_all(format!("{pw}\n").as_bytes())?;
            f.sync_all()?;
            Ok(pw)
        }
        // Another process created it between our read and our create: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ftp: FtpArgs,
    }

    #[test]
    fn flag_defaults_match_config_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let flags = Cli::try_parse_from(["fleetup"])
            .unwrap()
            .ftp
            .to_config(dir.path())
            .unwrap();
        let default = FtpConfig::default();
        assert_eq!(flags.passive_ports, default.passive_ports);
        assert_eq!(flags.public_host, default.public_host);
        assert_eq!(flags.active, default.active);
        assert_eq!(flags.tls.is_some(), default.tls.is_some());
        assert_eq!(flags.max_sessions, default.max_sessions);
        assert_eq!(flags.max_per_client, default.max_per_client);
        assert_eq!(flags.idle_timeout, default.idle_timeout);
        assert_eq!(flags.lockout_after, default.lockout_after);
        assert_eq!(flags.lockout_duration, default.lockout_duration);
    }

    #[test]
    fn port_range_parsing() {
        assert_eq!(
            "50000-50100".parse(),
            Ok(PortRange {
                low: 50000,
                high: 50100
            })
        );
        assert_eq!("21-21".parse::<PortRange>().map(|r| r.len()), Ok(1));
        for bad in ["", "50000", "50100-50000", "0-10", "a-b", "1-70000"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_parse_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli::try_parse_from([
            "x",
            "--ftp-passive-ports",
            "50000-50010",
            "--ftp-public-host",
            "192.0.2.1",
            "--ftp-password",
            "pw",
            "--ftp-active",
            "off",
            "--ftp-lockout-after",
            "3",
        ])
        .unwrap();
        let c = cli.ftp.to_config(dir.path()).unwrap();
        assert_eq!(
            c.passive_ports,
            Some(PortRange {
                low: 50000,
                high: 50010
            })
        );
        assert_eq!(c.public_host, Some("192.0.2.1".parse().unwrap()));
        assert!(!c.active);
        assert_eq!(c.lockout_after, 3);
        assert!(c.credentials.verify("fleetup", "pw").is_some());
        // No password file is written when the password is given.
        assert!(!dir.path().join(PASSWORD_FILE).exists());
    }

    #[test]
    fn without_a_password_flag_the_generated_one_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli::try_parse_from(["x"]).unwrap();
        let c = cli.ftp.to_config(dir.path()).unwrap();
        let pw = std::fs::read_to_string(dir.path().join(PASSWORD_FILE)).unwrap();
        assert!(c.credentials.verify("fleetup", pw.trim()).is_some());
        assert!(c.active);
        assert_eq!(c.credentials.verify("anonymous", ""), None);
    }

    #[test]
    fn bad_flags_are_refused_with_the_flag_name() {
        assert!(Cli::try_parse_from(["x", "--ftp-passive-ports", "9-1"]).is_err());
        assert!(Cli::try_parse_from(["x", "--ftp-active", "maybe"]).is_err());
        assert!(Cli::try_parse_from(["x", "--ftp-tls-cert", "c.pem"]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli::try_parse_from(["x", "--ftp-password", ""]).unwrap();
        let err = cli.ftp.to_config(dir.path()).unwrap_err().to_string();
        assert!(err.contains("--ftp-password"), "{err}");
        let cli = Cli::try_parse_from(["x", "--ftp-max-sessions", "0"]).unwrap();
        assert!(cli.ftp.to_config(dir.path()).is_err());
    }

    #[test]
    fn missing_tls_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = FtpTls::from_pem_files(&missing, &missing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.pem"), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem").unwrap();
        assert!(FtpTls::from_pem_files(&garbage, &garbage).is_err());
    }

    #[test]
    fn password_is_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let a = load_or_create_password(&data).unwrap();
        let b = load_or_create_password(&data).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.join(PASSWORD_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(data.join(PASSWORD_FILE), "\n").unwrap();
        assert!(load_or_create_password(&data).is_err());
    }
}
