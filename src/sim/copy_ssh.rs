//! `copy scp://…` and `copy sftp://…` on a lab device: a russh client from the device's own
//! address (as `ip ssh source-interface` makes a real device do) that logs in with the
//! URL's (or the prompted) password and fetches the file into the copy's [`FlashSink`]:
//! over the rcp protocol (`scp -f PATH`) or the SFTP subsystem.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use super::copy::{FetchError, FetchOptions, FlashSink};
use crate::rcp::{self, Header, Reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Scp,
    Sftp,
}

pub(super) struct Login {
    pub user: String,
    pub password: String,
}

/// A device trusts the server's host key, as IOS does unless told otherwise.
struct AnyHostKey;

impl client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

fn other(e: impl std::fmt::Display) -> FetchError {
    FetchError::Other(e.to_string())
}

/// Fetch `path` from `server` into `sink`; `announce` hears the file's size as soon as the
/// server tells it (the ` Sending file modes:` line). Returns the bytes written.
pub(super) async fn fetch(
    kind: Kind,
    server: SocketAddr,
    login: &Login,
    path: &str,
    opts: &FetchOptions,
    sink: &mut FlashSink,
    announce: Option<&mpsc::UnboundedSender<u64>>,
) -> Result<u64, FetchError> {
    let handle = connect(server, login, opts).await?;
    let result = match kind {
        Kind::Scp => scp(&handle, path, sink, announce).await,
        Kind::Sftp => sftp(&handle, path, sink, announce).await,
    };
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    result
}

async fn connect(
    server: SocketAddr,
    login: &Login,
    opts: &FetchOptions,
) -> Result<Handle<AnyHostKey>, FetchError> {
    let local = opts.local_ip;
    let tcp = async {
        let socket = match local {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }?;
        socket.bind(SocketAddr::new(local, 0))?;
        socket.connect(server).await
    };
    let stream = match tokio::time::timeout(opts.tftp_timeout * 3, tcp).await {
        Err(_) => return Err(FetchError::Timeout),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(FetchError::Refused);
        }
        Ok(Err(e)) => return Err(other(e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let config = Arc::new(client::Config::default());
    let mut handle = tokio::time::timeout(
        opts.tftp_timeout * 3,
        client::connect_stream(config, stream, AnyHostKey),
    )
    .await
    .map_err(|_| FetchError::Timeout)?
    .map_err(other)?;
    let auth = handle
        .authenticate_password(login.user.clone(), login.password.clone())
        .await
        .map_err(other)?;
    if !auth.success() {
        return Err(FetchError::Permission);
    }
    Ok(handle)
}

async fn scp(
    handle: &Handle<AnyHostKey>,
    path: &str,
    sink: &mut FlashSink,
    announce: Option<&mpsc::UnboundedSender<u64>>,
) -> Result<u64, FetchError> {
    let mut channel = handle.channel_open_session().await.map_err(other)?;
    channel
        .exec(true, format!("scp -f {path}").into_bytes())
        .await
        .map_err(other)?;
    let mut inbox = Vec::new();
    let mut ended = false;
    // Next data from the server; false once the channel ended.
    macro_rules! fill {
        () => {{
            let mut got = false;
            while !ended && !got {
                match channel.wait().await {
                    Some(ChannelMsg::Data { data }) => {
                        inbox.extend_from_slice(&data);
                        got = true;
                    }
                    Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => ended = true,
                    Some(_) => {}
                }
            }
            got
        }};
    }
    channel.data_bytes(vec![0u8]).await.map_err(other)?;
    let size = loop {
        let header = loop {
            if let Some(h) = rcp::take_header(&mut inbox) {
                break h;
            }
            if !fill!() {
                return Err(other("the server closed the connection"));
            }
        };
        match header.map_err(other)? {
            Header::File { size, .. } => break size,
            Header::Times => channel.data_bytes(vec![0u8]).await.map_err(other)?,
            Header::Error(m) if m.contains("No such file") => return Err(FetchError::NotFound),
            Header::Error(m) if m.to_ascii_lowercase().contains("denied") => {
                return Err(FetchError::Permission);
            }
            Header::Error(m) => return Err(other(m)),
            Header::Directory => return Err(other("is a directory")),
        }
    };
    if let Some(a) = announce {
        let _ = a.send(size);
    }
    channel.data_bytes(vec![0u8]).await.map_err(other)?;
    let mut left = size;
    while left > 0 {
        if inbox.is_empty() && !fill!() {
            return Err(other("the server closed the connection"));
        }
        let n = (inbox.len() as u64).min(left) as usize;
        let chunk: Vec<u8> = inbox.drain(..n).collect();
        sink.write_all(&chunk)
            .await
            .map_err(|e| sink_error(sink, &e))?;
        left -= n as u64;
    }
    let reply = loop {
        if let Some(r) = rcp::take_reply(&mut inbox) {
            break r;
        }
        if !fill!() {
            return Err(other("the server closed the connection"));
        }
    };
    if let Reply::Error(m) = reply {
        return Err(other(m));
    }
    channel.data_bytes(vec![0u8]).await.map_err(other)?;
    let _ = channel.eof().await;
    // As OpenSSH's scp does: the server ends the exchange (its exit status, then close), so
    // it has seen the last acknowledgement before the connection goes.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while fill!() {
            inbox.clear();
        }
    })
    .await;
    Ok(size)
}

async fn sftp(
    handle: &Handle<AnyHostKey>,
    path: &str,
    sink: &mut FlashSink,
    announce: Option<&mpsc::UnboundedSender<u64>>,
) -> Result<u64, FetchError> {
    use russh_sftp::client::SftpSession;
    use russh_sftp::client::error::Error as SftpError;
    use russh_sftp::protocol::StatusCode;

    let channel = handle.channel_open_session().await.map_err(other)?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(other)?;
    let map = |e: SftpError| match e {
        SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile => FetchError::NotFound,
        SftpError::Status(s) if s.status_code == StatusCode::PermissionDenied => {
            FetchError::Permission
        }
        other => FetchError::Other(other.to_string()),
    };
    let session = SftpSession::new(channel.into_stream()).await.map_err(map)?;
    let mut file = session.open(path).await.map_err(map)?;
    if let Some(a) = announce
        && let Ok(meta) = file.metadata().await
        && let Some(size) = meta.size
    {
        let _ = a.send(size);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).await.map_err(other)?;
        if n == 0 {
            break;
        }
        sink.write_all(&buf[..n])
            .await
            .map_err(|e| sink_error(sink, &e))?;
        total += n as u64;
    }
    // Close the handle and wait for the answer, so the server counts the file as fetched.
    let _ = file.shutdown().await;
    let _ = session.close().await;
    Ok(total)
}

fn sink_error(sink: &FlashSink, e: &std::io::Error) -> FetchError {
    if sink.dropped {
        FetchError::Dropped
    } else if sink.no_space {
        FetchError::NoSpace
    } else {
        other(e)
    }
}
