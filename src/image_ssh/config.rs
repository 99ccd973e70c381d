//! Command-line flags and the resolved configuration of the SCP/SFTP image server, and its
//! host key, kept in the data directory.

use std::path::Path;
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey};

use super::ImageSshError;

/// Name of the server's host key inside the data directory (OpenSSH format, mode 0600).
pub(crate) const HOST_KEY_FILE: &str = "image-scp-host-key";

/// Flags of the SCP/SFTP image server. The listen address itself (`--image-scp ADDR|off`)
/// belongs to `serve`, which binds the listener and hands it over.
#[derive(clap::Args, Debug, Clone)]
pub struct ImageSshArgs {
    /// Concurrent SSH sessions of the SCP/SFTP image server, all sources together.
    #[arg(
        id = "image-scp-max-sessions",
        long = "image-scp-max-sessions",
        env = "FLEETUP_IMAGE_SCP_MAX_SESSIONS",
        default_value_t = 200,
        value_name = "N"
    )]
    pub max_sessions: usize,

    /// Concurrent SSH sessions of the image server from one source address.
    #[arg(
        id = "image-scp-max-per-client",
        long = "image-scp-max-per-client",
        env = "FLEETUP_IMAGE_SCP_MAX_PER_CLIENT",
        default_value_t = 4,
        value_name = "N"
    )]
    pub max_per_client: usize,

    /// Seconds a new SSH connection to the image server may take to log in.
    #[arg(
        id = "image-scp-auth-timeout",
        long = "image-scp-auth-timeout",
        env = "FLEETUP_IMAGE_SCP_AUTH_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub auth_timeout: u64,

    /// Seconds without anything received from a client (data or window updates) before the
    /// image server closes its connection.
    #[arg(
        id = "image-scp-idle-timeout",
        long = "image-scp-idle-timeout",
        env = "FLEETUP_IMAGE_SCP_IDLE_TIMEOUT",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub idle_timeout: u64,

    /// Failed logins from one address before the image server locks it out (0: never).
    #[arg(
        id = "image-scp-lockout-after",
        long = "image-scp-lockout-after",
        env = "FLEETUP_IMAGE_SCP_LOCKOUT_AFTER",
        default_value_t = 5,
        value_name = "N"
    )]
    pub lockout_after: u32,

    /// How long a locked-out address stays locked out of the image server.
    #[arg(
        id = "image-scp-lockout-seconds",
        long = "image-scp-lockout-seconds",
        env = "FLEETUP_IMAGE_SCP_LOCKOUT_SECONDS",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub lockout_seconds: u64,
}

/// The resolved settings of one image server.
#[derive(Clone)]
pub struct ImageSshConfig {
    pub(crate) host_key: PrivateKey,
    pub(crate) max_sessions: usize,
    pub(crate) max_per_client: usize,
    pub(crate) auth_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) lockout_after: u32,
    pub(crate) lockout_duration: Duration,
}

impl std::fmt::Debug for ImageSshConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSshConfig")
            .field("max_sessions", &self.max_sessions)
            .field("max_per_client", &self.max_per_client)
            .finish_non_exhaustive()
    }
}

impl ImageSshArgs {
    /// Resolve the flags; read the host key from the data directory, or create it.
    pub fn to_config(&self, data_dir: &Path) -> Result<ImageSshConfig, ImageSshError> {
        if self.max_sessions == 0 || self.max_per_client == 0 {
            return Err(ImageSshError::Config(
                "--image-scp-max-sessions and --image-scp-max-per-client must be at least 1".into(),
            ));
        }
        if self.auth_timeout == 0 || self.idle_timeout == 0 {
            return Err(ImageSshError::Config(
                "--image-scp-auth-timeout and --image-scp-idle-timeout must be at least 1 second"
                    .into(),
            ));
        }
        Ok(ImageSshConfig {
            host_key: load_or_create_host_key(&data_dir.join(HOST_KEY_FILE))?,
            max_sessions: self.max_sessions,
            max_per_client: self.max_per_client,
            auth_timeout: Duration::from_secs(self.auth_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            lockout_after: self.lockout_after,
            lockout_duration: Duration::from_secs(self.lockout_seconds),
        })
    }
}

/// The host key devices see: created once (Ed25519, mode 0600 from the start) so that a
/// device's known host entry stays valid across restarts.
pub(crate) fn load_or_create_host_key(path: &Path) -> Result<PrivateKey, ImageSshError> {
    let err = |message: String| ImageSshError::HostKey {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return PrivateKey::from_openssh(text)
                .map_err(|e| err(format!("{e}; delete the file to get a new key")));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let key =
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| err(e.to_string()))?;
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| err(e.to_string()))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write as _;
    let mut f = opts.open(path).map_err(|e| err(e.to_string()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| err(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_key_is_created_private_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HOST_KEY_FILE);
        let first = load_or_create_host_key(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = load_or_create_host_key(&path).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        std::fs::write(&path, "garbage").unwrap();
        let e = load_or_create_host_key(&path).unwrap_err().to_string();
        assert!(e.contains("delete the file"), "{e}");
    }
}
