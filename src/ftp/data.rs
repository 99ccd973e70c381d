//! Data connections: passive listeners from the port pool, active connections back to the
//! client, and sending a file or a listing over either.

use crate::images::sendfile::send_chunk;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::config::PortRange;
use crate::transfers::TransferHandle;

/// Same address, comparing IPv4-mapped IPv6 and IPv4 as equal (a dual-stack listener sees
/// IPv4 clients as `::ffff:a.b.c.d`).
pub(super) fn same_host(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// The passive port range, shared by all sessions. The operating system is the authority on
/// which ports are free; the pool only spreads successive PASVs over the range, so a port is
/// not reused at once while the previous data connection on it is still closing.
#[derive(Debug)]
pub(super) struct PassivePorts {
    range: Option<PortRange>,
    cursor: AtomicUsize,
}

impl PassivePorts {
    pub(super) fn new(range: Option<PortRange>) -> Self {
        Self {
            range,
            cursor: AtomicUsize::new(rand::random::<u16>() as usize),
        }
    }

    /// Bind a listener on `ip` at a free port of the range (any free port without a range).
    pub(super) fn bind(&self, ip: IpAddr) -> Result<TcpListener, PassiveError> {
        let Some(range) = self.range else {
            return bind_listener(SocketAddr::new(ip, 0)).map_err(PassiveError::Bind);
        };
        let n = range.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let port = range.low + ((start + i) % n) as u16;
            match bind_listener(SocketAddr::new(ip, port)) {
                Ok(l) => return Ok(l),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(PassiveError::Bind(e)),
            }
        }
        Err(PassiveError::Exhausted(range))
    }
}

fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8)
}

#[derive(Debug, thiserror::Error)]
pub(super) enum PassiveError {
    #[error("no free passive port in {0}; widen --ftp-passive-ports")]
    Exhausted(PortRange),
    #[error("cannot open a passive port: {0}")]
    Bind(io::Error),
}

/// Wait for the client's data connection. Connections from any other address are dropped:
/// only the host on the control connection may use the port it was given.
pub(super) async fn accept_from(
    listener: &TcpListener,
    client: IpAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let wait = async {
        loop {
            let (stream, peer) = listener.accept().await?;
            if same_host(peer.ip(), client) {
                return Ok(stream);
            }
            tracing::warn!(%peer, expected = %client, "FTP: dropped data connection from a foreign address");
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no data connection within {} s", timeout.as_secs()),
        )),
    }
}

/// Connect to the client for active mode, from port 20 like a classic FTP server when that
/// port can be bound (root, or CAP_NET_BIND_SERVICE), else from any port.
pub(super) async fn connect_active(
    local: IpAddr,
    target: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let attempt = |port: u16| async move {
        let socket = match local {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::new(local, port))?;
        socket.connect(target).await
    };
    let connect = async {
        match attempt(20).await {
            Ok(s) => Ok(s),
            // Port 20 is privileged or its 4-tuple to this client is still in TIME_WAIT.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::PermissionDenied
                        | io::ErrorKind::AddrInUse
                        | io::ErrorKind::AddrNotAvailable
                ) =>
            {
                attempt(0).await
            }
            Err(e) => Err(e),
        }
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "connecting to {target} took longer than {} s",
                timeout.as_secs()
            ),
        )),
    }
}

/// An established data connection.
pub(super) enum DataConn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Most bytes per sendfile call: bounds how long a page-cache miss can hold a runtime worker,
/// and sets the granularity of progress reports.
const SENDFILE_CHUNK: u64 = 1 << 20;
/// Read size for the TLS path, where bytes pass through user space anyway.
const TLS_CHUNK: usize = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    #[error("transfer aborted")]
    Aborted,
    #[error("no progress for {0} s")]
    Stalled(u64),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl DataConn {
    /// Send `len` bytes of `file` from `offset`, updating `progress` as they go. Plain
    /// connections use the kernel's file-to-socket copy (sendfile), as vsftpd does.
    pub(super) async fn send_file(
        self,
        file: std::fs::File,
        offset: u64,
        len: u64,
        progress: &TransferHandle,
        cancel: &CancellationToken,
        stall: Duration,
    ) -> Result<u64, SendError> {
        match self {
            DataConn::Plain(tcp) => {
                send_plain(tcp, file, offset, len, progress, cancel, stall).await
            }
            DataConn::Tls(mut tls) => {
                let n = send_tls(&mut tls, file, offset, len, progress, cancel, stall).await?;
                finish_tls(&mut tls, stall).await?;
                Ok(n)
            }
        }
    }

    /// Send a listing and close the connection.
    pub(super) async fn send_bytes(self, bytes: &[u8], stall: Duration) -> Result<(), SendError> {
        match self {
            DataConn::Plain(mut tcp) => {
                with_stall(stall, tcp.write_all(bytes)).await?;
                with_stall(stall, tcp.shutdown()).await?;
                Ok(())
            }
            DataConn::Tls(mut tls) => {
                with_stall(stall, tls.write_all(bytes)).await?;
                finish_tls(&mut tls, stall).await
            }
        }
    }
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

/// Send close_notify, so the client can tell a complete transfer from a cut one.
async fn finish_tls(tls: &mut TlsStream<TcpStream>, stall: Duration) -> Result<(), SendError> {
    with_stall(stall, tls.shutdown()).await
}

/// Event-driven like nginx: sendfile on the non-blocking socket whenever it is writable, so
/// concurrent downloads need no thread each. A page-cache miss makes sendfile wait for the disk
/// inside the call; images are read sequentially, so readahead keeps that short.
async fn send_plain(
    mut tcp: TcpStream,
    file: std::fs::File,
    offset: u64,
    len: u64,
    progress: &TransferHandle,
    cancel: &CancellationToken,
    stall: Duration,
) -> Result<u64, SendError> {
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
                _ = cancel.cancelled() => return Err(SendError::Aborted),
            }
            match tcp.try_io(Interest::WRITABLE, || {
                send_chunk(&tcp, &file, &mut pos, step)
            }) {
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
    with_stall(stall, tcp.shutdown()).await?;
    Ok(sent)
}

async fn send_tls(
    tls: &mut TlsStream<TcpStream>,
    file: std::fs::File,
    offset: u64,
    len: u64,
    progress: &TransferHandle,
    cancel: &CancellationToken,
    stall: Duration,
) -> Result<u64, SendError> {
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
            _ = cancel.cancelled() => return Err(SendError::Aborted),
        }
        sent += n as u64;
        progress.set_bytes(sent);
    }
    with_stall(stall, tls.flush()).await?;
    Ok(sent)
}
