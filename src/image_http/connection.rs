//! One client connection: the only part of the image server that touches a socket. Reads
//! request heads (bounded, under the header timeout), asks the pure layers what to answer,
//! writes the head and sends the body: sendfile(2) on plain HTTP, large reads through user
//! space under TLS.

use crate::images::sendfile::send_chunk;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::request::{self, HeadError, MAX_HEAD, Method, Request};
use super::response::{self, Body, FileFacts, Response};
use super::route::token_hint;
use super::{Shared, locate};
use crate::shutdown::Shutdown;
use crate::transfers::{Protocol, TransferHandle};

/// Most bytes per sendfile call: bounds how long a page-cache miss can hold a runtime worker,
/// and sets the granularity of progress reports.
const SENDFILE_CHUNK: u64 = 1 << 20;
/// Read size for HTTPS, where bytes pass through user space: large enough for few system
/// calls, small enough that many connections stay cheap.
const TLS_CHUNK: usize = 128 << 10;

/// An established connection, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(bytes).await,
            Conn::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// FIN, or close_notify and FIN: the client can tell a complete body from a cut one.
    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
        }
    }
}

/// Why a body was not sent in full.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("server shutting down")]
    Shutdown,
    #[error("no progress for {0} s (the client stopped reading)")]
    Stalled(u64),
    #[error("{0}")]
    Io(#[from] io::Error),
}

async fn with_stall<T>(
    stall: Duration,
    f: impl Future<Output = io::Result<T>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(stall, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(SendError::Stalled(stall.as_secs())),
    }
}

/// Serve one accepted connection until it closes, times out or the service stops.
pub(super) async fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shutdown: Shutdown,
) {
    let protocol = if tls.is_some() {
        Protocol::Https
    } else {
        Protocol::Http
    };
    let deadline = Instant::now() + shared.config.header_timeout;
    let conn = match tls {
        None => Conn::Plain(stream),
        Some(acceptor) => match handshake(stream, acceptor, deadline, &shutdown).await {
            Ok(Some(s)) => Conn::Tls(Box::new(s)),
            Ok(None) => return,
            Err(e) => {
                tracing::info!(%peer, error = %e, "image HTTPS: handshake failed");
                return;
            }
        },
    };
    let mut session = Session {
        shared,
        conn,
        peer,
        protocol,
        buf: Vec::with_capacity(MAX_HEAD),
    };
    session.serve(deadline, &shutdown).await;
}

/// A TLS handshake within the header timeout. A client speaking plain HTTP to the HTTPS port
/// gets a plain 400 that says so, as nginx does, rather than a handshake error it cannot show.
async fn handshake(
    mut stream: TcpStream,
    acceptor: TlsAcceptor,
    deadline: Instant,
    shutdown: &Shutdown,
) -> io::Result<Option<TlsStream<TcpStream>>> {
    let work = async {
        let mut first = [0u8; 1];
        let n = stream.peek(&mut first).await?;
        // 0x16: a TLS handshake record.
        if n == 1 && first[0] != 0x16 {
            let text = "this is an HTTPS port: use https://\n";
            let reply = format!(
                "HTTP/1.1 400 Bad Request\r\nServer: fleetup\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            stream.write_all(reply.as_bytes()).await?;
            let _ = stream.shutdown().await;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "plain HTTP sent to the HTTPS port",
            ));
        }
        if n == 0 {
            return Ok(None);
        }
        acceptor.accept(stream).await.map(Some)
    };
    tokio::select! {
        r = tokio::time::timeout_at(deadline, work) => match r {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake within the header timeout")),
        },
        _ = shutdown.requested() => Ok(None),
    }
}

/// What reading a head came to.
enum Read {
    Request(Request),
    /// The client closed, went quiet past the deadline, or the service stops: close quietly.
    Gone,
    Bad(HeadError),
}

struct Session {
    shared: Arc<Shared>,
    conn: Conn,
    peer: SocketAddr,
    protocol: Protocol,
    /// Bytes read and not yet parsed; never more than MAX_HEAD plus one read.
    buf: Vec<u8>,
}

impl Session {
    fn label(&self) -> &'static str {
        match self.protocol {
            Protocol::Https => "image HTTPS",
            _ => "image HTTP",
        }
    }

    async fn serve(&mut self, mut deadline: Instant, shutdown: &Shutdown) {
        loop {
            let req = match self.read_head(deadline, shutdown).await {
                Read::Request(r) => r,
                Read::Gone => return,
                Read::Bad(e) => {
                    tracing::warn!(peer = %self.peer, error = %e, "{}: bad request", self.label());
                    let status = match e {
                        HeadError::TooLarge => 431,
                        HeadError::Malformed(_) => 400,
                    };
                    let r = response::error(status, Method::Get, false, jiff::Timestamp::now());
                    let _ = self.answer(&r, None, shutdown).await;
                    return;
                }
            };
            let (resp, download) = self.decide(&req);
            match self.answer(&resp, download, shutdown).await {
                Ok(()) if !resp.close => {}
                _ => return,
            }
            deadline = Instant::now() + self.shared.config.header_timeout;
        }
    }

    /// Read the next head; the whole head must arrive before `deadline` (slowloris).
    async fn read_head(&mut self, deadline: Instant, shutdown: &Shutdown) -> Read {
        let mut chunk = [0u8; 2048];
        loop {
            match request::parse(&self.buf) {
                Ok(Some((req, used))) => {
                    self.buf.drain(..used);
                    return Read::Request(req);
                }
                Ok(None) => {}
                Err(e) => return Read::Bad(e),
            }
            // parse() refuses a partial head of MAX_HEAD bytes, so the buffer never outgrows it.
            let want = chunk.len().min(MAX_HEAD.saturating_sub(self.buf.len()));
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline, self.conn.read(&mut chunk[..want])) => r,
                _ = shutdown.requested() => return Read::Gone,
            };
            match read {
                Ok(Ok(0)) => return Read::Gone,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => {
                    tracing::debug!(peer = %self.peer, error = %e, "{}: read failed", self.label());
                    return Read::Gone;
                }
                Err(_) => {
                    tracing::info!(
                        peer = %self.peer,
                        timeout_s = self.shared.config.header_timeout.as_secs(),
                        partial = !self.buf.is_empty(),
                        "{}: closed a connection that sent no complete request in time",
                        self.label()
                    );
                    return Read::Gone;
                }
            }
        }
    }

    /// The response to `req`, and for a file body the opened file, its name and the token.
    fn decide(&self, req: &Request) -> (Response, Option<Download>) {
        let now = jiff::Timestamp::now();
        match req.method {
            Method::Other => {
                tracing::warn!(peer = %self.peer, "{}: method not allowed", self.label());
                return (response::error(405, req.method, false, now), None);
            }
            Method::Get | Method::Head => {}
        }
        if req.has_body {
            tracing::warn!(peer = %self.peer, "{}: request with a body refused", self.label());
            return (response::error(400, req.method, false, now), None);
        }
        let not_found = |why: &dyn std::fmt::Display, token: Option<&str>| {
            tracing::warn!(
                peer = %self.peer,
                target = ?truncate(&req.target, 120),
                token = token.map(token_hint),
                reason = %why,
                "{}: refused (404)",
                self.label()
            );
            (response::error(404, req.method, req.keep_alive, now), None)
        };
        let grants = &self.shared.grants;
        let (route, path) = match locate(&self.shared.root, &req.target, |t, f| {
            grants.token_allows(t, f)
        }) {
            Ok(found) => found,
            Err((why, token)) => return not_found(&why, token.as_deref()),
        };
        let opened = std::fs::File::open(&path).and_then(|f| {
            let meta = f.metadata()?;
            Ok((f, meta))
        });
        let (file, meta) = match opened {
            Ok((f, m)) if m.is_file() => (f, m),
            Ok(_) => return not_found(&"not a regular file", Some(&route.token)),
            Err(e) => return not_found(&e, Some(&route.token)),
        };
        let facts = FileFacts {
            size: meta.len(),
            modified: meta
                .modified()
                .ok()
                .and_then(|t| jiff::Timestamp::try_from(t).ok())
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        };
        let resp = response::for_file(req, facts, now);
        let download = matches!(resp.body, Body::File { .. }).then(|| Download {
            file,
            name: route.file,
            token: route.token,
        });
        (resp, download)
    }

    /// Write the head and the body; an error means the connection is done.
    async fn answer(
        &mut self,
        resp: &Response,
        download: Option<Download>,
        shutdown: &Shutdown,
    ) -> Result<(), SendError> {
        let stall = self.shared.config.idle_timeout;
        with_stall(stall, self.conn.write_all(resp.head.as_bytes())).await?;
        match (resp.body, download) {
            (Body::None, _) => {}
            (Body::Text(t), _) => with_stall(stall, self.conn.write_all(t.as_bytes())).await?,
            (Body::File { offset, len }, Some(d)) => {
                self.send_file(d, offset, len, resp.status, shutdown)
                    .await?
            }
            (Body::File { .. }, None) => {
                return Err(io::Error::other("a file body without a file").into());
            }
        }
        if resp.close {
            with_stall(stall, self.conn.shutdown()).await?;
        }
        Ok(())
    }

    async fn send_file(
        &mut self,
        d: Download,
        offset: u64,
        len: u64,
        status: u16,
        shutdown: &Shutdown,
    ) -> Result<(), SendError> {
        let handle = self.shared.transfers.start_as(
            self.protocol,
            self.peer,
            Some(&d.token),
            &d.name,
            "download",
            Some(len),
        );
        let stall = self.shared.config.idle_timeout;
        let result = match &mut self.conn {
            Conn::Plain(tcp) => {
                send_plain(tcp, &d.file, offset, len, &handle, shutdown, stall).await
            }
            Conn::Tls(tls) => send_tls(tls, d.file, offset, len, &handle, shutdown, stall).await,
        };
        match result {
            Ok(()) => {
                tracing::info!(peer = %self.peer, file = d.name, status, offset, bytes = len, "{} download complete", self.label());
                handle.complete();
                Ok(())
            }
            Err(e) => {
                tracing::info!(peer = %self.peer, file = d.name, status, offset, reason = %e, "{} download ended early", self.label());
                handle.fail(e.to_string());
                Err(e)
            }
        }
    }
}

/// A file the response sends, with what the transfer registry needs.
struct Download {
    file: std::fs::File,
    name: String,
    token: String,
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Event-driven like nginx: sendfile on the non-blocking socket whenever it is writable, so
/// concurrent downloads need no thread each.
async fn send_plain(
    tcp: &mut TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    progress: &TransferHandle,
    shutdown: &Shutdown,
    stall: Duration,
) -> Result<(), SendError> {
    let mut sent = 0u64;
    let mut pos = offset;
    while sent < len {
        let step = (len - sent).min(SENDFILE_CHUNK) as usize;
        let n = loop {
            tokio::select! {
                ready = tokio::time::timeout(stall, tcp.writable()) => match ready {
                    Ok(r) => r?,
                    Err(_) => return Err(SendError::Stalled(stall.as_secs())),
                },
                _ = shutdown.requested() => return Err(SendError::Shutdown),
            }
            match tcp.try_io(Interest::WRITABLE, || send_chunk(tcp, file, &mut pos, step)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ended after {sent} of {len} bytes (truncated while sending?)"),
            )
            .into());
        }
        sent += n as u64;
        progress.set_bytes(sent);
    }
    Ok(())
}

async fn send_tls(
    tls: &mut TlsStream<TcpStream>,
    file: std::fs::File,
    offset: u64,
    len: u64,
    progress: &TransferHandle,
    shutdown: &Shutdown,
    stall: Duration,
) -> Result<(), SendError> {
    let mut file = tokio::fs::File::from_std(file);
    file.seek(io::SeekFrom::Start(offset)).await?;
    file.set_max_buf_size(TLS_CHUNK);
    let mut buf = vec![0u8; TLS_CHUNK];
    let mut sent = 0u64;
    while sent < len {
        let want = (len - sent).min(TLS_CHUNK as u64) as usize;
        let n = file.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ended after {sent} of {len} bytes (truncated while sending?)"),
            )
            .into());
        }
        tokio::select! {
            r = with_stall(stall, tls.write_all(&buf[..n])) => r?,
            _ = shutdown.requested() => return Err(SendError::Shutdown),
        }
        sent += n as u64;
        progress.set_bytes(sent);
    }
    with_stall(stall, tls.flush()).await
}
