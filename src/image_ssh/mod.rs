//! The SCP/SFTP image server (`fleetup serve --image-scp ADDR`): a read-only SSH file server
//! over the image store, for devices that copy with `copy scp://USER:PASS@HOST/IMAGE flash:`
//! or `copy sftp://…`. The only logins are the one-time accounts of [`Grants`]: each device
//! job gets one for its own files, ended with the job; an account reads what its grant names
//! and nothing else, and sees no listing.
//!
//! `config` (flags, host key), `conn` (login, channel requests), `scp` (rcp source mode),
//! `sftp` (the read-only SFTP subsystem), `files` (what an account may read).

mod config;
mod conn;
mod files;
mod scp;
mod sftp;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use russh::{Disconnect, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{ImageSshArgs, ImageSshConfig};

use crate::ftp::auth::Lockout;
use crate::grants::Grants;
use crate::shutdown::Shutdown;
use crate::transfers::Transfers;

#[derive(Debug, thiserror::Error)]
pub enum ImageSshError {
    #[error("SCP/SFTP image server configuration: {0}")]
    Config(String),
    #[error("SCP/SFTP image server host key {path}: {message}")]
    HostKey { path: PathBuf, message: String },
    #[error("SCP/SFTP image server root {path} is not a readable directory: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Flow-control window granted to clients: big enough for a WAN's bandwidth-delay product
/// (100 Mbit/s × 80 ms is 1 MB). Only uploads would use it; they are refused.
const WINDOW: u32 = 16 * 1024 * 1024;

/// What every connection of one server shares.
pub(crate) struct Shared {
    root: PathBuf,
    grants: Grants,
    transfers: Transfers,
    shutdown: Shutdown,
    lockout: Mutex<Lockout>,
    sessions: Mutex<Sessions>,
    max_sessions: usize,
    max_per_client: usize,
}

#[derive(Default)]
struct Sessions {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

impl Shared {
    fn lockout(&self) -> MutexGuard<'_, Lockout> {
        self.lockout.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session slot for `ip`, or why there is none.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<SessionSlot, &'static str> {
        let mut s = self.sessions();
        if s.total >= self.max_sessions {
            return Err("too many sessions");
        }
        let mine = s.per_client.entry(ip).or_default();
        if *mine >= self.max_per_client {
            return Err("too many sessions from this address");
        }
        *mine += 1;
        s.total += 1;
        Ok(SessionSlot {
            shared: self.clone(),
            ip,
        })
    }
}

/// Held for the life of one connection.
struct SessionSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut s = self.shared.sessions();
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.per_client.remove(&self.ip);
            }
        }
    }
}

fn server_config(config: &ImageSshConfig) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(
            concat!("SSH-2.0-fleetup_", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::Password][..]),
        auth_rejection_time: Duration::from_millis(500),
        // OpenSSH probes with `none` first: no reason to make that wait.
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 3,
        keys: vec![config.host_key.clone()],
        window_size: WINDOW,
        maximum_packet_size: 65536,
        // OpenSSH's sftp keeps 64 reads in flight; with a smaller buffer russh's session loop
        // blocks on a full channel and stops reading the window adjustments the transfer
        // waits for (seen as a stalled download across a WAN link in bench/wan.sh).
        channel_buffer_size: 256,
        inactivity_timeout: Some(config.idle_timeout),
        preferred: preferred(),
        nodelay: true,
        ..Default::default()
    }
}

/// russh's safe algorithms first, then what older IOS releases' SCP clients speak only
/// (diffie-hellman-group14-sha1, CBC ciphers, HMAC-SHA1).
fn preferred() -> russh::Preferred {
    use russh::{cipher, kex, mac};
    use std::borrow::Cow;
    let d = russh::Preferred::default();
    let mut kex_list = d.kex.to_vec();
    let at = kex_list
        .iter()
        .position(|k| *k == kex::EXTENSION_SUPPORT_AS_CLIENT)
        .unwrap_or(kex_list.len());
    kex_list.insert(at, kex::DH_G14_SHA1);
    let mut ciphers = d.cipher.to_vec();
    ciphers.extend([cipher::AES_256_CBC, cipher::AES_128_CBC]);
    let mut macs = d.mac.to_vec();
    macs.extend([mac::HMAC_SHA1_ETM, mac::HMAC_SHA1]);
    russh::Preferred {
        kex: Cow::Owned(kex_list),
        cipher: Cow::Owned(ciphers),
        mac: Cow::Owned(macs),
        ..d
    }
}

/// Serve `root` read-only over SCP and SFTP on `listener` (bound by the caller; port 0 is
/// fine) until `shutdown` is requested. Logins are the accounts of `grants`; downloads are
/// registered with `transfers`.
pub async fn run(
    listener: TcpListener,
    root: PathBuf,
    config: ImageSshConfig,
    grants: Grants,
    transfers: Transfers,
    shutdown: Shutdown,
) -> Result<(), ImageSshError> {
    std::fs::read_dir(&root).map_err(|source| ImageSshError::Root {
        path: root.clone(),
        source,
    })?;
    let ssh_config = Arc::new(server_config(&config));
    let shared = Arc::new(Shared {
        root,
        grants,
        transfers,
        shutdown: shutdown.clone(),
        lockout: Mutex::new(Lockout::new(config.lockout_after, config.lockout_duration)),
        sessions: Mutex::new(Sessions::default()),
        max_sessions: config.max_sessions,
        max_per_client: config.max_per_client,
    });
    if let Ok(local) = listener.local_addr() {
        tracing::info!(%local, root = %shared.root.display(), "SCP/SFTP image server listening");
    }
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.requested() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "image SSH: accept failed");
                    tokio::select! {
                        _ = shutdown.requested() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        let slot = match shared.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::info!(%peer, why, "image SSH: connection refused");
                continue;
            }
        };
        let logged_in = CancellationToken::new();
        let conn = conn::Conn {
            shared: shared.clone(),
            peer,
            user: None,
            logged_in: logged_in.clone(),
            gone: CancellationToken::new(),
            channels: HashMap::new(),
        };
        let (ssh_config, sd) = (ssh_config.clone(), shutdown.clone());
        let auth_timeout = config.auth_timeout;
        shutdown.tasks.spawn(async move {
            let _slot = slot;
            // The login timeout counts from the connection: a client that never even sends
            // its version line is closed too.
            let deadline = tokio::time::Instant::now() + auth_timeout;
            let start = russh::server::run_stream(ssh_config, stream, conn);
            let session = tokio::select! {
                r = tokio::time::timeout_at(deadline, start) => match r {
                    Ok(Ok(session)) => session,
                    Ok(Err(_)) => return,
                    Err(_) => {
                        tracing::info!(%peer, "image SSH: no SSH handshake within the login timeout; closing");
                        return;
                    }
                },
                _ = sd.requested() => return,
            };
            let handle = session.handle();
            tokio::pin!(session);
            let login_deadline = tokio::time::sleep_until(deadline);
            tokio::pin!(login_deadline);
            let bye = |why: &'static str| {
                let handle = handle.clone();
                async move {
                    let _ = handle
                        .disconnect(Disconnect::ByApplication, why.into(), String::new())
                        .await;
                }
            };
            loop {
                tokio::select! {
                    _ = &mut session => return,
                    _ = sd.requested() => {
                        bye("fleetup is shutting down").await;
                        return;
                    }
                    _ = &mut login_deadline, if !logged_in.is_cancelled() => {
                        tracing::info!(%peer, "image SSH: no login within the timeout; closing");
                        bye("login timeout").await;
                        return;
                    }
                    _ = logged_in.cancelled(), if !logged_in.is_cancelled() => {}
                }
            }
        });
    }
}
