//! The built-in FTP server: a read-only view of the image store for devices that copy with
//! `copy ftp://user:pass@server/FILE flash:`.
//!
//! A small server of our own rather than libunftp: libunftp 0.24 reaches vsftpd's throughput
//! with a custom storage back-end, but its PORT connects to whatever address the client names
//! (FTP bounce), it has no EPRT and cannot connect from port 20, and none of that can be hooked
//! from outside. See `docs/ftp.md` for the measurements.
//!
//! Code map: `command` parses control lines (pure), `auth` holds accounts and the lockout
//! (pure, time passed in), `listing` the flat view of the store and its LIST/MLSD formats,
//! `data` the data connections and the file sender (sendfile), `session` one control
//! connection, this file the accept loop with its session limits.

pub(crate) mod auth;
pub(crate) mod command;
mod config;
mod data;
pub(crate) mod listing;
mod session;

pub use auth::{CredentialToken, FtpCredentials};
pub use config::{FtpArgs, FtpConfig, FtpTls, PortRange, generate_password};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::shutdown::Shutdown;
use crate::transfers::Transfers;

#[derive(Debug, thiserror::Error)]
pub enum FtpError {
    #[error("FTP configuration: {0}")]
    Config(String),
    #[error("FTP password file {path}: {source}; fix or delete the file, or pass --ftp-password")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("FTPS certificate or key {path}: {reason}; check --ftp-tls-cert/--ftp-tls-key")]
    Tls { path: PathBuf, reason: String },
    #[error("FTP root {path} is not a readable directory: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("FTP listener: {0}")]
    Listener(#[source] std::io::Error),
}

/// State shared by every session of one server.
struct Shared {
    root: PathBuf,
    config: FtpConfig,
    transfers: Transfers,
    passive: data::PassivePorts,
    lockout: Mutex<auth::Lockout>,
    sessions: Mutex<SessionCount>,
}

impl Shared {
    fn lockout(&self) -> MutexGuard<'_, auth::Lockout> {
        self.lockout.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn locked_for(&self, ip: IpAddr) -> Option<Duration> {
        self.lockout().locked_for(ip.to_canonical(), Instant::now())
    }
}

#[derive(Default)]
struct SessionCount {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// A session slot; dropping it frees the slot.
struct SessionPermit {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        let mut c = self
            .shared
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        c.total -= 1;
        if let Some(n) = c.per_source.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_source.remove(&self.ip);
            }
        }
    }
}

fn admit(shared: &Arc<Shared>, ip: IpAddr) -> Result<SessionPermit, String> {
    let ip = ip.to_canonical();
    let mut c = shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
    if c.total >= shared.config.max_sessions {
        return Err(format!(
            "421 Too many FTP sessions ({} in use); try again later.\r\n",
            shared.config.max_sessions
        ));
    }
    let mine = c.per_source.get(&ip).copied().unwrap_or(0);
    if mine >= shared.config.max_per_client {
        return Err(format!(
            "421 Too many FTP sessions from {ip} ({mine} open); close one and try again.\r\n"
        ));
    }
    c.total += 1;
    *c.per_source.entry(ip).or_default() += 1;
    Ok(SessionPermit {
        shared: shared.clone(),
        ip,
    })
}

/// Serve `root` read-only over FTP on `listener` (bound by the caller; port 0 is fine) until
/// `shutdown` is requested. Sessions run as tasks of `shutdown.tasks`; on shutdown each says
/// 421 and closes, aborting a transfer in progress. Temporary accounts are added and removed
/// while it runs through a clone of `config.credentials`.
pub async fn run(
    listener: TcpListener,
    root: PathBuf,
    config: FtpConfig,
    transfers: Transfers,
    shutdown: Shutdown,
) -> Result<(), FtpError> {
    let lockout = auth::Lockout::new(config.lockout_after, config.lockout_duration);
    let passive = data::PassivePorts::new(config.passive_ports);
    let shared = Arc::new(Shared {
        root,
        config,
        transfers,
        passive,
        lockout: Mutex::new(lockout),
        sessions: Mutex::new(SessionCount::default()),
    });
    std::fs::read_dir(&shared.root).map_err(|source| FtpError::Root {
        path: shared.root.clone(),
        source,
    })?;
    let local = listener.local_addr().map_err(FtpError::Listener)?;
    tracing::info!(%local, root = %shared.root.display(), "FTP server listening");
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.requested() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "FTP accept failed");
                    tokio::select! {
                        _ = shutdown.requested() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        if let Some(left) = shared.locked_for(peer.ip()) {
            tracing::info!(%peer, "FTP: refused connection from locked-out address");
            let msg = format!("421 {}\r\n", locked_out(peer.ip(), left));
            let _ = stream.try_write(msg.as_bytes());
            continue;
        }
        let permit = match admit(&shared, peer.ip()) {
            Ok(p) => p,
            Err(msg) => {
                tracing::info!(%peer, "FTP: session limit reached");
                let _ = stream.try_write(msg.as_bytes());
                continue;
            }
        };
        let shared = shared.clone();
        let sd = shutdown.clone();
        shutdown.tasks.spawn(async move {
            let _permit = permit;
            session::run(shared, stream, peer, sd).await;
        });
    }
}

/// Run one session, as `run` would for a client from `peer` to `local`, over an in-memory
/// stream standing for the control connection: what the fuzz target drives. Data connections
/// cannot be made over it.
pub(crate) async fn session_in_memory(
    root: PathBuf,
    config: FtpConfig,
    stream: tokio::io::DuplexStream,
    peer: SocketAddr,
    local: SocketAddr,
) {
    let lockout = auth::Lockout::new(config.lockout_after, config.lockout_duration);
    let passive = data::PassivePorts::new(config.passive_ports);
    let shared = Arc::new(Shared {
        root,
        config,
        transfers: Transfers::new(),
        passive,
        lockout: Mutex::new(lockout),
        sessions: Mutex::new(SessionCount::default()),
    });
    session::run_in_memory(shared, stream, peer, local, Shutdown::new()).await;
}

/// The text of the 421 reply to an address that is locked out for `left`.
fn locked_out(ip: IpAddr, left: Duration) -> String {
    format!(
        "Too many failed logins from {}; try again in {} s.",
        ip.to_canonical(),
        left.as_secs().max(1)
    )
}

/// The address to give PASV/EPSV clients, and the one to bind passive listeners on.
fn local_ip_for(local: SocketAddr) -> IpAddr {
    local.ip().to_canonical()
}
