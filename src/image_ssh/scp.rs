//! SCP source mode (`scp -f FILE`) over one exec channel: the rcp exchange of
//! [`crate::rcp`], the file read in chunks that wait for the client's window, so a channel
//! holds one chunk at a time whatever the file's size. `scp -t` (an upload) is refused.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use tokio::io::AsyncReadExt as _;

use super::Shared;
use super::files;
use crate::rcp::{self, Reply};
use crate::transfers::Protocol;

/// Bytes read from the file and handed to the channel at a time.
const CHUNK: usize = 256 * 1024;

/// The message an upload gets, on the rcp channel and on stderr.
pub(super) const READ_ONLY: &str = "fleetup's image server is read-only: uploads are refused";

/// Why a transfer stopped.
#[derive(Debug)]
enum Stop {
    /// The client went away or closed the channel.
    Gone,
    /// The client answered with an error.
    Refused(String),
    /// Reading the image failed.
    Io(std::io::Error),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Gone => f.write_str("the client closed the channel"),
            Stop::Refused(m) => write!(f, "the client answered: {m}"),
            Stop::Io(e) => write!(f, "reading the image: {e}"),
        }
    }
}

/// The channel and what came in on it that was not used yet.
struct Rcp {
    channel: Channel<Msg>,
    inbox: Vec<u8>,
}

impl Rcp {
    async fn reply(&mut self) -> Result<Reply, Stop> {
        loop {
            if let Some(r) = rcp::take_reply(&mut self.inbox) {
                return Ok(r);
            }
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => self.inbox.extend_from_slice(&data),
                Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => return Err(Stop::Gone),
                Some(_) => {}
            }
        }
    }

    async fn expect_ok(&mut self) -> Result<(), Stop> {
        match self.reply().await? {
            Reply::Ok => Ok(()),
            Reply::Error(m) => Err(Stop::Refused(m)),
        }
    }

    async fn send(&self, data: impl Into<bytes::Bytes>) -> Result<(), Stop> {
        self.channel.data_bytes(data).await.map_err(|_| Stop::Gone)
    }

    /// End the exec request with its exit status, as `scp` on a host does.
    async fn finish(self, status: u32, stderr: Option<&str>) {
        if let Some(text) = stderr {
            let _ = self
                .channel
                .extended_data_bytes(1, format!("{text}\n").into_bytes())
                .await;
        }
        let _ = self.channel.exit_status(status).await;
        let _ = self.channel.eof().await;
        let _ = self.channel.close().await;
    }
}

/// Refuse an upload (`scp -t`): an rcp error the client prints, and exit status 1.
pub(super) async fn refuse_upload(channel: Channel<Msg>, peer: SocketAddr, user: &str) {
    tracing::info!(%peer, user, "image SSH: refused an upload (scp -t)");
    let rcp = Rcp {
        channel,
        inbox: Vec::new(),
    };
    let _ = rcp.send(rcp::error_reply(READ_ONLY, false)).await;
    rcp.finish(1, Some(READ_ONLY)).await;
}

/// Refuse any other exec request.
pub(super) async fn refuse_command(channel: Channel<Msg>, message: &str) {
    let rcp = Rcp {
        channel,
        inbox: Vec::new(),
    };
    rcp.finish(1, Some(message)).await;
}

/// Send `requested` to the client of an `scp -f` request, if `user`'s grant allows it.
pub(super) async fn send_file(
    shared: Arc<Shared>,
    channel: Channel<Msg>,
    requested: String,
    preserve: bool,
    peer: SocketAddr,
    user: String,
) {
    let mut rcp = Rcp {
        channel,
        inbox: Vec::new(),
    };
    // The sink speaks first: one `\0` when it is ready.
    if rcp.expect_ok().await.is_err() {
        return rcp.finish(1, None).await;
    }
    let Some(mut served) = files::open(&shared.root, &shared.grants, &user, &requested, peer).await
    else {
        let message = format!("scp: {requested}: No such file or directory");
        let _ = rcp.send(rcp::error_reply(&message, false)).await;
        return rcp.finish(1, None).await;
    };
    let transfer = shared.transfers.start_as(
        Protocol::Scp,
        peer,
        Some(&user),
        &served.name,
        "download",
        Some(served.size),
    );
    let result = async {
        if preserve {
            rcp.send(rcp::times_line(served.mtime).into_bytes()).await?;
            rcp.expect_ok().await?;
        }
        rcp.send(rcp::file_header(served.size, &served.name).into_bytes())
            .await?;
        rcp.expect_ok().await?;
        let mut sent = 0u64;
        while sent < served.size {
            let want = (served.size - sent).min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; want];
            served.file.read_exact(&mut buf).await.map_err(Stop::Io)?;
            rcp.send(buf).await?;
            sent += want as u64;
            transfer.set_bytes(sent);
        }
        rcp.send(vec![0u8]).await?;
        rcp.expect_ok().await
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(%peer, user, file = %served.name, bytes = served.size, "image SSH: scp download complete");
            transfer.complete();
            rcp.finish(0, None).await;
        }
        Err(stop) => {
            tracing::info!(%peer, user, file = %served.name, reason = %stop, "image SSH: scp download failed");
            transfer.fail(stop.to_string());
            rcp.finish(1, None).await;
        }
    }
}
