//! The built-in image server over HTTP and HTTPS: read-only, for devices that copy with
//! `copy http://SERVER/j/TOKEN/IMAGE flash:`.
//!
//! Only `/j/TOKEN/FILE` is served, where TOKEN is a live path token of
//! [`crate::grants::Grants`] that allows FILE; the token dies with its device job. Everything
//! else is 404, logged, and nothing is ever listed. GET and HEAD, one byte range per request
//! (206), bodies by sendfile(2) on plain HTTP.
//!
//! A small HTTP/1.1 responder of our own rather than hyper: hyper writes bodies from user-space
//! buffers, and sendfile is what lets one core serve a fleet at line rate (as nginx does).
//!
//! Code map: `request` parses a request head (pure, bounded), `route` reads `/j/TOKEN/FILE`
//! from a target (pure), `range` resolves `Range` against a length (pure), `response` decides
//! the status, head and body (pure, `now` passed in), `connection` is the one file that
//! touches a socket, this file the accept loop with its connection limits, `config` the flags.

mod config;
mod connection;
pub(crate) mod range;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod route;

pub use config::{ImageHttpArgs, ImageHttpConfig, ImageTls};

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::grants::Grants;
use crate::shutdown::Shutdown;
use crate::transfers::Transfers;

#[derive(Debug, thiserror::Error)]
pub enum ImageHttpError {
    #[error("image HTTP configuration: {0}")]
    Config(String),
    #[error(
        "image HTTPS certificate or key {path}: {reason}; check --image-https-cert/--image-https-key"
    )]
    Tls { path: PathBuf, reason: String },
    #[error("image store {path} is not a readable directory: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image HTTP listener: {0}")]
    Listener(#[source] std::io::Error),
}

/// State shared by every connection of the HTTP and the HTTPS listener.
pub(crate) struct Shared {
    root: PathBuf,
    config: ImageHttpConfig,
    grants: Grants,
    transfers: Transfers,
    connections: Mutex<ConnectionCount>,
}

#[derive(Default)]
struct ConnectionCount {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// The image server: one per service, shared by its HTTP and HTTPS listeners so that the
/// connection limits count both. Cheap to clone.
#[derive(Clone)]
pub struct ImageServer {
    shared: Arc<Shared>,
}

impl ImageServer {
    /// Serve files of `root` that `grants` allow, reporting downloads to `transfers`.
    pub fn new(
        root: PathBuf,
        config: ImageHttpConfig,
        grants: Grants,
        transfers: Transfers,
    ) -> Result<Self, ImageHttpError> {
        std::fs::read_dir(&root).map_err(|source| ImageHttpError::Root {
            path: root.clone(),
            source,
        })?;
        Ok(Self {
            shared: Arc::new(Shared {
                root,
                config,
                grants,
                transfers,
                connections: Mutex::new(ConnectionCount::default()),
            }),
        })
    }
}

/// The file a request target names, when `allows(token, file)` and the store's path rules
/// ([`crate::images::resolve_in`]) both agree; else why not (for the log) and the token, if
/// the target had one. The grant is asked first, so a name no grant lists never reaches the
/// file system.
pub(crate) fn locate(
    root: &std::path::Path,
    target: &str,
    allows: impl Fn(&str, &str) -> bool,
) -> Result<(route::Route, PathBuf), (String, Option<String>)> {
    let route = route::route(target).map_err(|why| (why.to_string(), None))?;
    if !allows(&route.token, &route.file) {
        return Err((
            "no live grant for this token and file".into(),
            Some(route.token),
        ));
    }
    match crate::images::resolve_in(root, &route.file) {
        Ok(path) => Ok((route, path)),
        Err(e) => Err((e.to_string(), Some(route.token))),
    }
}

/// A connection slot; dropping it frees the slot.
struct Permit {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self
            .shared
            .connections
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

/// A slot for a connection from `ip`, or why there is none.
fn admit(shared: &Arc<Shared>, ip: IpAddr) -> Result<Permit, String> {
    let ip = ip.to_canonical();
    let mut c = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
    if c.total >= shared.config.max_connections {
        return Err(format!(
            "{} connections in use (--image-http-max-connections)",
            shared.config.max_connections
        ));
    }
    let mine = c.per_source.get(&ip).copied().unwrap_or(0);
    if mine >= shared.config.max_per_client {
        return Err(format!(
            "{mine} connections open from this address (--image-http-max-per-client)"
        ));
    }
    c.total += 1;
    *c.per_source.entry(ip).or_default() += 1;
    Ok(Permit {
        shared: shared.clone(),
        ip,
    })
}

/// Ask for `size` as the send buffer of `socket` and return what the kernel granted (Linux
/// doubles the request for its bookkeeping and caps it at `net.core.wmem_max`).
fn set_send_buffer(socket: socket2::SockRef<'_>, size: usize) -> std::io::Result<usize> {
    socket.set_send_buffer_size(size)?;
    socket.send_buffer_size()
}

/// Serve on `listener` (bound by the caller; port 0 is fine), plain HTTP, or HTTPS when
/// `https` is set (the configuration must then hold the certificate), until `shutdown` is
/// requested. Connections run as tasks of `shutdown.tasks`.
pub async fn run(
    listener: TcpListener,
    server: ImageServer,
    https: bool,
    shutdown: Shutdown,
) -> Result<(), ImageHttpError> {
    let shared = server.shared;
    let tls = if https {
        let Some(tls) = &shared.config.tls else {
            return Err(ImageHttpError::Config(
                "--image-https needs --image-https-cert and --image-https-key".into(),
            ));
        };
        Some(TlsAcceptor::from(tls.config.clone()))
    } else {
        None
    };
    let what = if https { "image HTTPS" } else { "image HTTP" };
    let local = listener.local_addr().map_err(ImageHttpError::Listener)?;
    let send_buffer = shared.config.send_buffer;
    if send_buffer > 0 {
        // Accepted connections inherit the listener's buffer; the probe shows what they get.
        match set_send_buffer(socket2::SockRef::from(&listener), send_buffer) {
            Ok(granted) if granted < send_buffer => tracing::warn!(
                wanted = send_buffer,
                granted,
                "{what}: the kernel granted a smaller send buffer than --image-http-send-buffer; raise net.core.wmem_max for full speed over long, fast links"
            ),
            Ok(granted) => tracing::debug!(granted, "{what}: send buffer"),
            Err(e) => tracing::warn!(error = %e, "{what}: cannot set the send buffer"),
        }
    }
    tracing::info!(%local, root = %shared.root.display(), "{what} image server listening");
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.requested() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::select! {
                        _ = shutdown.requested() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        let permit = match admit(&shared, peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                tracing::warn!(%peer, reason = why, "{what}: connection refused (503)");
                if tls.is_none() {
                    let r =
                        response::error(503, request::Method::Get, false, jiff::Timestamp::now());
                    let text = match r.body {
                        response::Body::Text(t) => t,
                        _ => "",
                    };
                    let _ = stream.try_write(format!("{}{text}", r.head).as_bytes());
                }
                continue;
            }
        };
        if send_buffer > 0
            && let Err(e) = socket2::SockRef::from(&stream).set_send_buffer_size(send_buffer)
        {
            tracing::debug!(%peer, error = %e, "{what}: cannot set the send buffer");
        }
        let (shared, tls, sd) = (shared.clone(), tls.clone(), shutdown.clone());
        shutdown.tasks.spawn(async move {
            let _permit = permit;
            connection::run(shared, stream, peer, tls, sd).await;
        });
    }
}
