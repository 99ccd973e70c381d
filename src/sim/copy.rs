//! `copy tftp://…`, `copy ftp://…` and `copy http(s)://…` (in `copy_http`): a real download from the URL's server into the device's
//! flash directory, through a sink that enforces the flash size and the lab's rate limit and
//! injects the transfer faults.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;

/// A copy source the simulator can fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    Tftp {
        host: IpAddr,
        port: Option<u16>,
        path: String,
    },
    Ftp {
        user: Option<String>,
        password: Option<String>,
        host: IpAddr,
        port: Option<u16>,
        path: String,
    },
    /// `http://` or `https://` (`tls`).
    Http {
        tls: bool,
        host: IpAddr,
        port: Option<u16>,
        path: String,
    },
    /// `scp://[USER[:PASS]@]HOST[:PORT]/PATH`; without a password the CLI asks for it.
    Scp {
        user: Option<String>,
        password: Option<String>,
        host: IpAddr,
        port: Option<u16>,
        path: String,
    },
    /// `sftp://…`, as `Scp`.
    Sftp {
        user: Option<String>,
        password: Option<String>,
        host: IpAddr,
        port: Option<u16>,
        path: String,
    },
}

impl Source {
    /// The name IOS offers as the destination (`Destination filename [x.bin]?`).
    pub(super) fn file_name(&self) -> &str {
        let path = match self {
            Source::Tftp { path, .. }
            | Source::Ftp { path, .. }
            | Source::Http { path, .. }
            | Source::Scp { path, .. }
            | Source::Sftp { path, .. } => path,
        };
        path.rsplit('/').next().unwrap_or(path)
    }

    pub(super) fn host(&self) -> IpAddr {
        match self {
            Source::Tftp { host, .. }
            | Source::Ftp { host, .. }
            | Source::Http { host, .. }
            | Source::Scp { host, .. }
            | Source::Sftp { host, .. } => *host,
        }
    }

    pub(super) fn path(&self) -> &str {
        match self {
            Source::Tftp { path, .. }
            | Source::Ftp { path, .. }
            | Source::Http { path, .. }
            | Source::Scp { path, .. }
            | Source::Sftp { path, .. } => path,
        }
    }

    /// The protocol as IOS names it in messages (`TFTP`, `FTP`, `HTTP`, `SCP`).
    pub(super) fn protocol(&self) -> &'static str {
        match self {
            Source::Tftp { .. } => "TFTP",
            Source::Ftp { .. } => "FTP",
            Source::Http { tls: false, .. } => "HTTP",
            Source::Http { tls: true, .. } => "HTTPS",
            Source::Scp { .. } => "SCP",
            Source::Sftp { .. } => "SFTP",
        }
    }

    /// The global line whose interface this protocol's client leaves from.
    pub(super) fn source_interface_command(&self) -> &'static str {
        match self {
            Source::Tftp { .. } => "ip tftp source-interface",
            Source::Ftp { .. } => "ip ftp source-interface",
            Source::Http { .. } => "ip http client source-interface",
            Source::Scp { .. } | Source::Sftp { .. } => "ip ssh source-interface",
        }
    }

    /// The URL as IOS echoes it: FTP credentials are masked (`ftp://*:*@host/file`).
    pub(super) fn display(&self) -> String {
        match self {
            Source::Tftp { host, port, path } => {
                format!("tftp://{}/{path}", host_port(*host, *port))
            }
            Source::Ftp {
                user,
                host,
                port,
                path,
                ..
            } => {
                let creds = if user.is_some() { "*:*@" } else { "" };
                format!("ftp://{creds}{}/{path}", host_port(*host, *port))
            }
            Source::Http {
                tls,
                host,
                port,
                path,
            } => {
                let scheme = if *tls { "https" } else { "http" };
                format!("{scheme}://{}/{path}", host_port(*host, *port))
            }
            Source::Scp {
                host, port, path, ..
            } => format!("scp://*:*@{}/{path}", host_port(*host, *port)),
            Source::Sftp {
                host, port, path, ..
            } => format!("sftp://*:*@{}/{path}", host_port(*host, *port)),
        }
    }
}

fn host_port(host: IpAddr, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum UrlError {
    #[error("Invalid IP address or hostname")]
    BadHost,
    #[error("Invalid argument")]
    Malformed,
}

/// Parse `tftp://HOST[:PORT]/PATH`, `ftp://[USER[:PASS]@]HOST[:PORT]/PATH` or
/// `http[s]://HOST[:PORT]/PATH`.
pub(super) fn parse_url(url: &str) -> Result<Source, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::Malformed)?;
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = rest.split_once('/').ok_or(UrlError::Malformed)?;
    if path.is_empty() || path.ends_with('/') {
        return Err(UrlError::Malformed);
    }
    let (creds, hostport) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            (h, Some(p.parse::<u16>().map_err(|_| UrlError::BadHost)?))
        }
        _ => (hostport, None),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map_err(|_| UrlError::BadHost)?;
    match scheme.as_str() {
        "http" | "https" if creds.is_none() => Ok(Source::Http {
            tls: scheme == "https",
            host,
            port,
            path: path.to_string(),
        }),
        "tftp" if creds.is_none() => Ok(Source::Tftp {
            host,
            port,
            path: path.to_string(),
        }),
        "scp" | "sftp" => {
            let (user, password) = match creds {
                Some(c) => match c.split_once(':') {
                    Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                    None => (Some(c.to_string()), None),
                },
                None => (None, None),
            };
            let path = path.to_string();
            Ok(if scheme == "scp" {
                Source::Scp {
                    user,
                    password,
                    host,
                    port,
                    path,
                }
            } else {
                Source::Sftp {
                    user,
                    password,
                    host,
                    port,
                    path,
                }
            })
        }
        "ftp" => {
            let (user, password) = match creds {
                Some(c) => match c.split_once(':') {
                    Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                    None => (Some(c.to_string()), None),
                },
                None => (None, None),
            };
            Ok(Source::Ftp {
                user,
                password,
                host,
                port,
                path: path.to_string(),
            })
        }
        _ => Err(UrlError::Malformed),
    }
}

/// Why a fetch failed, in the words IOS puts in parentheses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FetchError {
    #[error("Timed out")]
    Timeout,
    #[error("No such file or directory")]
    NotFound,
    #[error("Permission denied")]
    Permission,
    #[error("Not enough space on device")]
    NoSpace,
    #[error("Connection refused by remote host")]
    Refused,
    /// The SSH session was cut on purpose (fault); nothing is printed.
    #[error("session dropped")]
    Dropped,
    #[error("{0}")]
    Other(String),
}

impl FetchError {
    /// IOS says `%Error opening` when the transfer never started and `%Error copying` after.
    pub(super) fn verb(&self, started: bool) -> &'static str {
        match self {
            FetchError::NoSpace => "copying",
            _ if started => "reading",
            _ => "opening",
        }
    }
}

/// How to fetch: the device's own address and its `ip tftp`/`ip ftp` settings.
#[derive(Debug, Clone)]
pub(super) struct FetchOptions {
    pub local_ip: IpAddr,
    pub tftp_port: u16,
    pub ftp_port: u16,
    /// SSH port of `copy scp:`/`copy sftp:` when the URL names none.
    pub scp_port: u16,
    pub tftp_blocksize: Option<u16>,
    pub tftp_timeout: Duration,
    pub ftp_passive: bool,
    pub ftp_username: Option<String>,
    pub ftp_password: Option<String>,
}

/// Writes the download into flash: enforces free space, paces to the rate limit, reports
/// progress and injects faults.
pub(super) struct FlashSink {
    file: tokio::fs::File,
    pub written: u64,
    limit: u64,
    rate: Option<u64>,
    started: Instant,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    progress: mpsc::UnboundedSender<u64>,
    corrupt: bool,
    drop_after: Option<u64>,
    pub dropped: bool,
    pub no_space: bool,
}

impl FlashSink {
    pub(super) fn new(
        file: tokio::fs::File,
        limit: u64,
        rate: Option<u64>,
        progress: mpsc::UnboundedSender<u64>,
    ) -> Self {
        Self {
            file,
            written: 0,
            limit,
            rate,
            started: Instant::now(),
            pause: None,
            progress,
            corrupt: false,
            drop_after: None,
            dropped: false,
            no_space: false,
        }
    }

    /// Flip one byte of the first block written, as a bad link would.
    pub(super) fn corrupt(mut self) -> Self {
        self.corrupt = true;
        self
    }

    /// Fail the write (and so the transfer) once this many bytes are in.
    pub(super) fn drop_after(mut self, bytes: u64) -> Self {
        self.drop_after = Some(bytes);
        self
    }

    pub(super) async fn finish(mut self) -> io::Result<u64> {
        use tokio::io::AsyncWriteExt;
        self.file.flush().await?;
        self.file.sync_all().await?;
        Ok(self.written)
    }
}

impl AsyncWrite for FlashSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(p) = this.pause.as_mut() {
            if p.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        if let Some(rate) = this.rate.filter(|r| *r > 0) {
            // Where the transfer should be by now at the configured rate; wait if ahead.
            let due = Duration::from_secs_f64(this.written as f64 / rate as f64);
            let elapsed = this.started.elapsed();
            if due > elapsed + Duration::from_millis(2) {
                let mut sleep = Box::pin(tokio::time::sleep(due - elapsed));
                if sleep.as_mut().poll(cx).is_pending() {
                    this.pause = Some(sleep);
                    return Poll::Pending;
                }
            }
        }
        if let Some(limit) = this.drop_after
            && this.written >= limit
        {
            this.dropped = true;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "session dropped by fault",
            )));
        }
        if this.written + buf.len() as u64 > this.limit {
            this.no_space = true;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "Not enough space on device",
            )));
        }
        let mut owned;
        let data = if this.corrupt && this.written == 0 && !buf.is_empty() {
            owned = buf.to_vec();
            let mid = owned.len() / 2;
            owned[mid] ^= 0x5a;
            &owned[..]
        } else {
            buf
        };
        match Pin::new(&mut this.file).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                this.written += n as u64;
                let _ = this.progress.send(this.written);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

pub(super) fn sink_error(sink: &FlashSink, e: &io::Error) -> FetchError {
    if sink.dropped {
        FetchError::Dropped
    } else if sink.no_space {
        FetchError::NoSpace
    } else {
        FetchError::Other(e.to_string())
    }
}

/// Fetch `source` into `sink`; returns the number of bytes written.
pub(super) async fn fetch(
    source: &Source,
    opts: &FetchOptions,
    sink: &mut FlashSink,
) -> Result<u64, FetchError> {
    match source {
        Source::Tftp { host, port, path } => {
            let server = SocketAddr::new(*host, port.unwrap_or(opts.tftp_port));
            tftp::fetch(server, path, opts, sink).await
        }
        Source::Ftp {
            user,
            password,
            host,
            port,
            path,
        } => {
            let server = SocketAddr::new(*host, port.unwrap_or(opts.ftp_port));
            let user = user
                .clone()
                .or_else(|| opts.ftp_username.clone())
                .unwrap_or_else(|| "anonymous".to_string());
            let password = password
                .clone()
                .or_else(|| opts.ftp_password.clone())
                .unwrap_or_else(|| "ios-user@".to_string());
            ftp_fetch(server, &user, &password, path, opts, sink).await
        }
        Source::Http {
            tls,
            host,
            port,
            path,
        } => {
            let server = SocketAddr::new(*host, port.unwrap_or(if *tls { 443 } else { 80 }));
            super::copy_http::fetch(*tls, server, path, opts, sink).await
        }
        Source::Scp {
            user,
            password,
            host,
            port,
            path,
        }
        | Source::Sftp {
            user,
            password,
            host,
            port,
            path,
        } => {
            let server = SocketAddr::new(*host, port.unwrap_or(opts.scp_port));
            let kind = if matches!(source, Source::Scp { .. }) {
                super::copy_ssh::Kind::Scp
            } else {
                super::copy_ssh::Kind::Sftp
            };
            let login = super::copy_ssh::Login {
                user: user.clone().unwrap_or_else(|| "admin".to_string()),
                password: password.clone().unwrap_or_default(),
            };
            super::copy_ssh::fetch(kind, server, &login, path, opts, sink, None).await
        }
    }
}

mod tftp {
    use super::*;
    use crate::tftp::client::{ClientError, DownloadOptions, download_from};

    pub(super) async fn fetch(
        server: SocketAddr,
        file: &str,
        opts: &FetchOptions,
        sink: &mut FlashSink,
    ) -> Result<u64, FetchError> {
        let options = DownloadOptions {
            blksize: opts.tftp_blocksize,
            windowsize: None,
            timeout: opts.tftp_timeout,
            retries: 5,
            request_tsize: true,
        };
        // The sink reports progress itself, for FTP and TFTP alike.
        let mut progress = |_: u64, _: Option<u64>| {};
        match download_from(opts.local_ip, server, file, &options, sink, &mut progress).await {
            Ok(n) => Ok(n),
            Err(ClientError::Timeout) => Err(FetchError::Timeout),
            Err(ClientError::NotFound) => Err(FetchError::NotFound),
            Err(ClientError::AccessViolation(_)) => Err(FetchError::Permission),
            Err(ClientError::Io(e)) => Err(sink_error(sink, &e)),
            Err(ClientError::Server { message, .. }) => Err(FetchError::Other(message)),
            Err(ClientError::Protocol(m)) => Err(FetchError::Other(m)),
        }
    }
}

async fn ftp_fetch(
    server: SocketAddr,
    user: &str,
    password: &str,
    path: &str,
    opts: &FetchOptions,
    sink: &mut FlashSink,
) -> Result<u64, FetchError> {
    use suppaftp::tokio::AsyncFtpStream;
    use suppaftp::{FtpError, Status};

    let map = |e: FtpError| match e {
        FtpError::ConnectionError(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
            FetchError::Refused
        }
        FtpError::ConnectionError(io) if io.kind() == io::ErrorKind::TimedOut => {
            FetchError::Timeout
        }
        FtpError::UnexpectedResponse(r) if r.status == Status::NotLoggedIn => {
            FetchError::Permission
        }
        FtpError::UnexpectedResponse(r) if r.status == Status::FileUnavailable => {
            FetchError::NotFound
        }
        other => FetchError::Other(other.to_string()),
    };
    let local = opts.local_ip;
    let connect = async {
        let socket = match local {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(FtpError::ConnectionError)?;
        socket
            .bind(SocketAddr::new(local, 0))
            .map_err(FtpError::ConnectionError)?;
        socket
            .connect(server)
            .await
            .map_err(FtpError::ConnectionError)
    };
    let stream = tokio::time::timeout(opts.tftp_timeout * 3, connect)
        .await
        .map_err(|_| FetchError::Timeout)?
        .map_err(map)?;
    let mut ftp = AsyncFtpStream::connect_with_stream(stream)
        .await
        .map_err(map)?;
    if opts.ftp_passive {
        // Data connections leave from the device's own address, like the control connection.
        ftp = ftp.passive_stream_builder(move |addr| {
            Box::pin(async move {
                let socket = match local {
                    IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                    IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
                }
                .map_err(FtpError::ConnectionError)?;
                socket
                    .bind(SocketAddr::new(local, 0))
                    .map_err(FtpError::ConnectionError)?;
                socket
                    .connect(addr)
                    .await
                    .map_err(FtpError::ConnectionError)
            })
        });
    } else {
        ftp = ftp.active_mode(opts.tftp_timeout * 6);
    }
    ftp.login(user, password).await.map_err(map)?;
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .await
        .map_err(map)?;
    let mut data = ftp.retr_as_stream(path).await.map_err(map)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = data
            .read(&mut buf)
            .await
            .map_err(|e| FetchError::Other(e.to_string()))?;
        if n == 0 {
            break;
        }
        if let Err(e) = tokio::io::AsyncWriteExt::write_all(sink, &buf[..n]).await {
            return Err(sink_error(sink, &e));
        }
        total += n as u64;
    }
    data.finish().await.map_err(map)?;
    let _ = ftp.quit().await;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tftp_urls() {
        assert_eq!(
            parse_url("tftp://10.0.0.5/c2960x-universalk9-mz.152-7.E8.bin").unwrap(),
            Source::Tftp {
                host: "10.0.0.5".parse().unwrap(),
                port: None,
                path: "c2960x-universalk9-mz.152-7.E8.bin".into()
            }
        );
        let s = parse_url("tftp://127.0.0.1:6969/images/a.bin").unwrap();
        assert_eq!(s.file_name(), "a.bin");
        assert_eq!(s.display(), "tftp://127.0.0.1:6969/images/a.bin");
    }

    #[test]
    fn ftp_urls_with_and_without_credentials() {
        let s = parse_url("ftp://fleet:s3cr:et@10.0.0.5/a.bin").unwrap();
        assert_eq!(
            s,
            Source::Ftp {
                user: Some("fleet".into()),
                password: Some("s3cr:et".into()),
                host: "10.0.0.5".parse().unwrap(),
                port: None,
                path: "a.bin".into()
            }
        );
        assert_eq!(s.display(), "ftp://*:*@10.0.0.5/a.bin");
        let s = parse_url("ftp://10.0.0.5:2121/dir/a.bin").unwrap();
        assert!(matches!(
            s,
            Source::Ftp {
                user: None,
                port: Some(2121),
                ..
            }
        ));
    }

    #[test]
    fn scp_and_sftp_urls_with_and_without_a_password() {
        let s = parse_url("scp://ab12:pw34@10.0.0.5/a.bin").unwrap();
        assert_eq!(
            s,
            Source::Scp {
                user: Some("ab12".into()),
                password: Some("pw34".into()),
                host: "10.0.0.5".parse().unwrap(),
                port: None,
                path: "a.bin".into()
            }
        );
        assert_eq!(s.display(), "scp://*:*@10.0.0.5/a.bin");
        let s = parse_url("sftp://ab12@10.0.0.5:2222/a.bin").unwrap();
        assert!(matches!(
            s,
            Source::Sftp {
                password: None,
                port: Some(2222),
                ..
            }
        ));
        assert_eq!(s.file_name(), "a.bin");
    }

    #[test]
    fn bad_urls() {
        assert_eq!(
            parse_url("tftp://server.example/a.bin"),
            Err(UrlError::BadHost)
        );
        assert_eq!(parse_url("tftp://10.0.0.5"), Err(UrlError::Malformed));
        assert_eq!(parse_url("tftp://10.0.0.5/"), Err(UrlError::Malformed));
        assert_eq!(parse_url("gopher://10.0.0.5/a"), Err(UrlError::Malformed));
        assert_eq!(parse_url("http://u:p@10.0.0.5/a"), Err(UrlError::Malformed));
        assert_eq!(
            parse_url("https://10.0.0.5:8443/j/tok/a.bin"),
            Ok(Source::Http {
                tls: true,
                host: "10.0.0.5".parse().unwrap(),
                port: Some(8443),
                path: "j/tok/a.bin".into(),
            })
        );
        assert_eq!(parse_url("tftp://u:p@10.0.0.5/a"), Err(UrlError::Malformed));
        assert_eq!(parse_url("tftp://10.0.0.5:99999/a"), Err(UrlError::BadHost));
    }
}
