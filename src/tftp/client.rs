//! A TFTP client over the same state machine as the server: what the device simulator uses to
//! pull an image, the way `copy tftp://SERVER/FILE flash:` does on IOS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::packet::{ErrorCode, MAX_BLKSIZE};
use super::session::{Failure, Outcome, Receiver, RequestedOptions, Transfer};

/// What the client asks the server for.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// `blksize` to ask for; `None` sends no such option (512-byte blocks, like IOS without
    /// `ip tftp blocksize`).
    pub blksize: Option<u16>,
    /// `windowsize` to ask for (RFC 7440); `None` for lock-step transfers.
    pub windowsize: Option<u16>,
    /// Time to wait for the next packet before repeating the last one.
    pub timeout: Duration,
    /// Consecutive timeouts before giving up.
    pub retries: u32,
    /// Ask for the file size (`tsize`), so progress can show a total.
    pub request_tsize: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            blksize: None,
            windowsize: None,
            timeout: Duration::from_secs(1),
            retries: 5,
            request_tsize: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("timed out")]
    Timeout,
    #[error("no such file or directory")]
    NotFound,
    #[error("access violation: {0}")]
    AccessViolation(String),
    #[error("server error {code}: {message}")]
    Server { code: u16, message: String },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl From<Failure> for ClientError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::TimedOut(_) => ClientError::Timeout,
            Failure::Peer { code: 1, .. } => ClientError::NotFound,
            Failure::Peer { code: 2, message } => ClientError::AccessViolation(message),
            Failure::Peer { code, message } => ClientError::Server { code, message },
            Failure::Io(m) => ClientError::Io(std::io::Error::other(m)),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

/// Download `file` from the TFTP server at `server` into `sink`; returns the bytes written.
/// `progress` is called with the bytes received so far and the size the server announced.
pub async fn download<W: AsyncWrite + Unpin>(
    server: SocketAddr,
    file: &str,
    opts: &DownloadOptions,
    sink: &mut W,
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> Result<u64, ClientError> {
    let local = match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    download_from(local, server, file, opts, sink, progress).await
}

/// As [`download`], from a socket bound to `local_ip` (each simulated device has its own
/// loopback address, and the server should see that address).
pub async fn download_from<W: AsyncWrite + Unpin>(
    local_ip: IpAddr,
    server: SocketAddr,
    file: &str,
    opts: &DownloadOptions,
    sink: &mut W,
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> Result<u64, ClientError> {
    let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    let requested = RequestedOptions {
        blksize: opts.blksize.map(|b| b.clamp(8, MAX_BLKSIZE)),
        windowsize: opts.windowsize.map(|w| w.max(1)),
        tsize: opts.request_tsize,
    };
    let mut session = Receiver::download(
        Instant::now().into_std(),
        server,
        file,
        requested,
        opts.timeout,
        opts.retries,
    );
    let mut out = Vec::with_capacity(1024);
    let mut inbuf = vec![0u8; usize::from(MAX_BLKSIZE) + 4];
    let sleep = tokio::time::sleep(opts.timeout);
    tokio::pin!(sleep);
    loop {
        while let Some(dst) = session.poll_transmit(&mut out) {
            socket.send_to(&out, dst).await?;
        }
        if !session.data().is_empty() {
            if let Err(e) = sink.write_all(session.data()).await {
                session.abort(ErrorCode::DiskFull, "client could not store the file");
                while let Some(dst) = session.poll_transmit(&mut out) {
                    let _ = socket.send_to(&out, dst).await;
                }
                return Err(ClientError::Io(e));
            }
            session.clear_data();
            progress(session.received(), session.tsize());
        }
        match session.outcome() {
            Some(Outcome::Complete { bytes }) => {
                let bytes = *bytes;
                sink.flush().await?;
                // Stay around briefly to re-acknowledge the last block should our ACK have
                // been lost, so the server records a completed transfer, not a timeout.
                tokio::spawn(dally(socket, session));
                return Ok(bytes);
            }
            Some(Outcome::Failed(f)) => return Err(f.clone().into()),
            None => {}
        }
        if let Some(deadline) = session.poll_timeout() {
            let deadline = Instant::from_std(deadline);
            // Deadlines mostly move forward with every packet; re-arming the timer only when
            // it fires or the deadline moves earlier keeps timer churn off the hot path.
            if deadline < sleep.deadline() {
                sleep.as_mut().reset(deadline);
            }
        }
        tokio::select! {
            r = socket.recv_from(&mut inbuf) => {
                let (n, from) = r?;
                session.handle(Instant::now().into_std(), from, &inbuf[..n]);
            }
            _ = &mut sleep => {
                session.handle_timeout(Instant::now().into_std());
                let next = session
                    .poll_timeout()
                    .map(Instant::from_std)
                    .unwrap_or_else(|| Instant::now() + opts.timeout);
                sleep.as_mut().reset(next);
            }
        }
    }
}

async fn dally(socket: UdpSocket, mut session: Receiver) {
    let mut out = Vec::with_capacity(16);
    let mut inbuf = vec![0u8; usize::from(MAX_BLKSIZE) + 4];
    while !session.is_finished() {
        while let Some(dst) = session.poll_transmit(&mut out) {
            if socket.send_to(&out, dst).await.is_err() {
                return;
            }
        }
        let Some(deadline) = session.poll_timeout() else {
            return;
        };
        tokio::select! {
            r = socket.recv_from(&mut inbuf) => match r {
                Ok((n, from)) => session.handle(Instant::now().into_std(), from, &inbuf[..n]),
                Err(_) => return,
            },
            _ = tokio::time::sleep_until(Instant::from_std(deadline)) => {
                session.handle_timeout(Instant::now().into_std());
            }
        }
    }
}
