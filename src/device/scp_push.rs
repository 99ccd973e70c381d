//! SCP push: fleetup copies an image *to* a device over its own SSH session, for devices
//! that cannot reach fleetup's file servers (NAT, one-way ACLs). The device's SCP server
//! must be on (`ip scp server enable` on IOS and IOS-XE); the caller turns it on for the
//! copy and restores it, as it does `ip tftp blocksize`.
//!
//! The exchange is the rcp source side of [`crate::rcp`]: exec `scp -t flash:FILE`, wait for
//! the device's `\0`, send `C0644 SIZE NAME`, the bytes (in chunks that wait for the
//! device's window, so memory stays one chunk whatever the image's size), `\0`, and read the
//! device's last answer. A `\x01`/`\x02` line from the device becomes a [`DeviceError`]
//! naming the device's own message.

use std::path::Path;

use russh::ChannelMsg;
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

use super::parse::CopyError;
use super::{DeviceError, Target, Timeouts};
use crate::rcp::{self, Reply};

/// Bytes read from the image and handed to the channel at a time.
const CHUNK: usize = 256 * 1024;
/// Most of the device's stderr and stray output kept for an error message.
const KEEP_TEXT: usize = 4096;

/// Copy `local` (`size` bytes) to `remote_file` on the device (`flash:NAME`, or `NAME` for
/// the device's default file system) over SCP. `progress` is called with the bytes sent so
/// far after each chunk. The whole exchange may take `timeouts.copy` after the login
/// (`timeouts.connect` and `timeouts.auth`). Returns the bytes copied.
///
/// Errors: the login's own ([`DeviceError::Connect`], [`DeviceError::AuthFailed`], …);
/// [`DeviceError::Copy`] with the device's message when it refuses (`FlashFull` for a full
/// file system, `Refused` when its SCP server is off or refuses the file, `Timeout`,
/// `Other`); [`DeviceError::ConnectionLost`] when the session drops.
pub async fn push(
    target: &Target,
    local: &Path,
    remote_file: &str,
    size: u64,
    mut progress: impl FnMut(u64),
    timeouts: &Timeouts,
) -> Result<u64, DeviceError> {
    let device = target.name.clone();
    let session = |message: String| DeviceError::Session {
        device: device.clone(),
        message,
    };
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(|e| session(format!("cannot read {}: {e}", local.display())))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| session(format!("cannot read {}: {e}", local.display())))?
        .len();
    if len != size {
        return Err(session(format!(
            "{} is {len} bytes, not the {size} expected",
            local.display()
        )));
    }
    let name = remote_name(remote_file);
    if name.is_empty() || name.contains(['\n', '\r', '\0']) {
        return Err(session(format!("{remote_file:?} names no file")));
    }

    let (handle, _) = super::ssh::connect(target, timeouts).await?;
    let command = format!("scp -t {remote_file}");
    let work = async {
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| DeviceError::ssh(&device, "opening a channel for SCP", e))?;
        channel
            .exec(true, command.as_bytes())
            .await
            .map_err(|e| DeviceError::ssh(&device, "starting `scp -t`", e))?;
        let (mut read, write) = channel.split();
        // The device's messages, read while the image goes out: a refusal in the middle
        // (a full flash) is seen at once.
        let (tx, rx) = mpsc::channel(64);
        let reader = tokio::spawn(async move {
            while let Some(msg) = read.wait().await {
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let mut sink = Sink {
            device: device.clone(),
            command: command.clone(),
            rx,
            inbox: Vec::new(),
            text: String::new(),
        };
        let result = async {
            sink.expect_ok("before the file").await?;
            let header = rcp::file_header(size, name);
            write
                .data_bytes(header.into_bytes())
                .await
                .map_err(|_| sink.lost())?;
            sink.expect_ok("to the file header").await?;
            let mut sent = 0u64;
            while sent < size {
                let want = (size - sent).min(CHUNK as u64) as usize;
                let mut buf = vec![0u8; want];
                file.read_exact(&mut buf)
                    .await
                    .map_err(|e| session(format!("reading {}: {e}", local.display())))?;
                write.data_bytes(buf).await.map_err(|_| sink.lost())?;
                sent += want as u64;
                progress(sent);
                sink.check_early()?;
            }
            write.data_bytes(vec![0u8]).await.map_err(|_| sink.lost())?;
            sink.expect_ok("after the data").await?;
            let _ = write.eof().await;
            Ok::<u64, DeviceError>(sent)
        }
        .await;
        reader.abort();
        result
    };
    let result = match tokio::time::timeout(timeouts.copy, work).await {
        Ok(r) => r,
        Err(_) => Err(DeviceError::Copy {
            device: device.clone(),
            source: CopyError::Timeout(format!(
                "SCP push of {remote_file} did not finish within {} s",
                timeouts.copy.as_secs()
            )),
        }),
    };
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    if let Ok(bytes) = &result {
        tracing::info!(device = %device, file = remote_file, bytes, "SCP push complete");
    }
    result
}

/// The file name the header carries: `flash:/dir/x.bin` → `x.bin`.
fn remote_name(remote: &str) -> &str {
    let path = remote.split_once(':').map_or(remote, |(_, p)| p);
    path.rsplit('/').next().unwrap_or(path)
}

/// The device's side of the channel, as the push reads it.
struct Sink {
    device: String,
    command: String,
    rx: mpsc::Receiver<ChannelMsg>,
    /// Channel data not yet taken as replies.
    inbox: Vec<u8>,
    /// The device's stderr and anything else it printed, for the error message.
    text: String,
}

impl Sink {
    fn keep(&mut self, data: &[u8]) {
        if self.text.len() < KEEP_TEXT {
            self.text.push_str(&String::from_utf8_lossy(data));
            self.text.truncate(KEEP_TEXT);
        }
    }

    fn take(&mut self, msg: ChannelMsg) -> Option<Result<(), DeviceError>> {
        match msg {
            ChannelMsg::Data { data } => self.inbox.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, .. } => self.keep(&data),
            ChannelMsg::Failure => {
                return Some(Err(
                    self.refused("the device refused the `scp -t` request".into())
                ));
            }
            ChannelMsg::ExitStatus { exit_status } if exit_status != 0 => {
                let text = format!("`scp -t` exited with status {exit_status}");
                return Some(Err(self.refused(text)));
            }
            ChannelMsg::Eof | ChannelMsg::Close => return Some(Err(self.closed())),
            _ => {}
        }
        None
    }

    /// The next reply of the device, `what` saying where in the exchange.
    async fn expect_ok(&mut self, what: &str) -> Result<(), DeviceError> {
        loop {
            match rcp::take_reply(&mut self.inbox) {
                Some(Reply::Ok) => return Ok(()),
                Some(Reply::Error(m)) => {
                    self.keep(m.as_bytes());
                    return Err(self.refused(format!("the device answered {what}")));
                }
                None => {}
            }
            match self.rx.recv().await {
                Some(msg) => {
                    if let Some(Err(e)) = self.take(msg) {
                        // Data that came before the end may still hold the reply.
                        return match rcp::take_reply(&mut self.inbox) {
                            Some(Reply::Ok) => Ok(()),
                            Some(Reply::Error(m)) => {
                                self.keep(m.as_bytes());
                                Err(self.refused(format!("the device answered {what}")))
                            }
                            None => Err(e),
                        };
                    }
                }
                None => return Err(self.closed()),
            }
        }
    }

    /// Between chunks: an error the device sent while the data was going out.
    fn check_early(&mut self) -> Result<(), DeviceError> {
        while let Ok(msg) = self.rx.try_recv() {
            if let Some(Err(e)) = self.take(msg) {
                return Err(e);
            }
        }
        match rcp::take_reply(&mut self.inbox) {
            Some(Reply::Error(m)) => {
                self.keep(m.as_bytes());
                Err(self.refused("the device answered during the data".into()))
            }
            Some(Reply::Ok) | None => Ok(()),
        }
    }

    fn lost(&self) -> DeviceError {
        DeviceError::ConnectionLost {
            device: self.device.clone(),
            command: Some(self.command.clone()),
        }
    }

    fn closed(&mut self) -> DeviceError {
        self.refused("the device closed the SCP channel".into())
    }

    /// A refusal, named by what the device said; a full flash is told apart, because it is
    /// no transport failure.
    fn refused(&mut self, context: String) -> DeviceError {
        let said = self.text.trim();
        let message = if said.is_empty() {
            format!("{context} without a message; is the SCP server on (`ip scp server enable`)?")
        } else {
            format!("{context}: {said}")
        };
        let lower = said.to_ascii_lowercase();
        let source = if lower.contains("space") || lower.contains("full") {
            CopyError::FlashFull(message)
        } else if said.is_empty()
            || lower.contains("denied")
            || lower.contains("refused")
            || lower.contains("scp server")
        {
            CopyError::Refused(message)
        } else {
            CopyError::Other(message)
        };
        DeviceError::Copy {
            device: self.device.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_names_the_file_alone() {
        assert_eq!(remote_name("flash:x.bin"), "x.bin");
        assert_eq!(remote_name("bootflash:/images/x.bin"), "x.bin");
        assert_eq!(remote_name("x.bin"), "x.bin");
    }
}
