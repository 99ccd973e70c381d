//! The SCP server of a lab device (`ip scp server enable`): an exec `scp -t flash:FILE` (or
//! `scp -t FILE`) receives one file into flash through the same [`FlashSink`] as a copy
//! (free space, rate, faults), so fleetup's SCP push meets what `copy tftp:` meets. Without
//! `ip scp server enable` the device closes the channel at once, giving the client nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use tokio::sync::mpsc;

use super::copy::FlashSink;
use super::device::Device;
use super::{Fault, LabShared};
use crate::rcp::{self, Header, Reply};

/// The configuration line that turns the server on.
pub(super) const ENABLE_LINE: &str = "ip scp server enable";

/// Whether the device's running configuration has `ip scp server enable`.
pub(super) fn enabled(dev: &Device) -> bool {
    dev.state()
        .running
        .lines
        .iter()
        .any(|l| l.eq_ignore_ascii_case(ENABLE_LINE))
}

/// A received file's temporary name in flash, removed unless renamed into place.
struct Partial(std::path::PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Peer {
    channel: Channel<Msg>,
    inbox: Vec<u8>,
    ended: bool,
}

impl Peer {
    /// More data from the client; false once the channel ended.
    async fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        loop {
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    self.inbox.extend_from_slice(&data);
                    return true;
                }
                Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                    self.ended = true;
                    return false;
                }
                Some(_) => {}
            }
        }
    }

    async fn send(&self, data: Vec<u8>) -> bool {
        self.channel.data_bytes(data).await.is_ok()
    }

    async fn finish(self, status: u32) {
        let _ = self.channel.exit_status(status).await;
        let _ = self.channel.eof().await;
        let _ = self.channel.close().await;
    }
}

/// Serve one `scp -t TARGET` request on `channel`.
pub(super) async fn receive(
    dev: Arc<Device>,
    lab: Arc<LabShared>,
    channel: Channel<Msg>,
    target: String,
    peer_addr: SocketAddr,
) {
    let mut peer = Peer {
        channel,
        inbox: Vec::new(),
        ended: false,
    };
    if !enabled(&dev) {
        tracing::info!(device = %dev.name, peer = %peer_addr, "scp push refused: no `ip scp server enable`");
        let _ = peer.channel.close().await;
        return;
    }
    let fs = dev.persona.filesystem.clone();
    let fixed_name = match target_name(&target, &fs) {
        Ok(n) => n,
        Err(message) => {
            peer.send(rcp::error_reply(&message, true)).await;
            return peer.finish(1).await;
        }
    };
    if !peer.send(vec![0]).await {
        return;
    }
    let mut status = 0;
    loop {
        let header = loop {
            if let Some(h) = rcp::take_header(&mut peer.inbox) {
                break Some(h);
            }
            if !peer.fill().await {
                break None;
            }
        };
        match header {
            None => break,
            Some(Ok(Header::Times)) => {
                if !peer.send(vec![0]).await {
                    return;
                }
            }
            Some(Ok(Header::File { size, name, .. })) => {
                let name = fixed_name.clone().unwrap_or(name);
                match receive_file(&dev, &lab, &mut peer, &fs, &name, size).await {
                    Ok(()) => {}
                    Err(Some(message)) => {
                        tracing::info!(device = %dev.name, file = %name, %message, "scp push failed");
                        peer.send(rcp::error_reply(&message, true)).await;
                        status = 1;
                        break;
                    }
                    // The client went away.
                    Err(None) => return,
                }
            }
            Some(Ok(Header::Directory)) => {
                peer.send(rcp::error_reply("scp: directories are not supported", true))
                    .await;
                status = 1;
                break;
            }
            Some(Ok(Header::Error(_))) | Some(Err(_)) => {
                status = 1;
                break;
            }
        }
    }
    peer.finish(status).await;
}

/// The destination name a `scp -t` target fixes: `flash:x.bin`, `flash:/x.bin`, `x.bin`;
/// `None` for the file system itself (`flash:`), where the header names the file.
fn target_name(target: &str, fs: &str) -> Result<Option<String>, String> {
    let rest = match target.split_once(':') {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case(fs) => rest,
        Some((prefix, _)) => {
            return Err(format!("scp: {prefix}: Invalid file system"));
        }
        None => target,
    };
    let name = rest.trim_start_matches('/');
    if name.is_empty() {
        return Ok(None);
    }
    Ok(Some(name.to_string()))
}

/// Receive one announced file into flash. `Err(Some(message))` is the device's refusal.
async fn receive_file(
    dev: &Arc<Device>,
    lab: &LabShared,
    peer: &mut Peer,
    fs: &str,
    name: &str,
    size: u64,
) -> Result<(), Option<String>> {
    if crate::images::validate_file_name(name).is_err() {
        return Err(Some(format!("scp: {fs}:{name}: Invalid argument")));
    }
    let flash = dev.flash();
    let existing = flash
        .files
        .iter()
        .find(|f| f.name == name)
        .map_or(0, |f| f.size);
    let limit = flash.free + existing;
    if size > limit {
        return Err(Some(format!(
            "scp: {fs}:{name}: Not enough space on device"
        )));
    }
    let partial =
        Partial(dev.flash_path(&format!(".{name}.{:08x}.partial", rand::random::<u32>())));
    let file = tokio::fs::File::create(&partial.0)
        .await
        .map_err(|e| Some(format!("scp: {fs}:{name}: {e}")))?;
    let rate = if dev.has_fault(Fault::SlowTransfer) {
        Some(lab.slow_rate)
    } else {
        lab.rate
    };
    // Progress is not shown for a push; the sink's reports go nowhere.
    let (ptx, _) = mpsc::unbounded_channel();
    let mut sink = FlashSink::new(file, limit, rate, ptx);
    if dev.has_fault(Fault::CorruptDownload) {
        sink = sink.corrupt();
    }
    if dev.has_fault(Fault::DropMidCopy) {
        sink = sink.drop_after(1);
    }
    if !peer.send(vec![0]).await {
        return Err(None);
    }
    let mut left = size;
    while left > 0 {
        if peer.inbox.is_empty() && !peer.fill().await {
            return Err(None);
        }
        let n = (peer.inbox.len() as u64).min(left) as usize;
        let chunk: Vec<u8> = peer.inbox.drain(..n).collect();
        if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut sink, &chunk).await {
            if sink.dropped {
                return Err(None);
            }
            let why = if sink.no_space {
                "Not enough space on device".to_string()
            } else {
                e.to_string()
            };
            return Err(Some(format!("scp: {fs}:{name}: {why}")));
        }
        left -= n as u64;
    }
    // The source's own `\0` after the data.
    let reply = loop {
        if let Some(r) = rcp::take_reply(&mut peer.inbox) {
            break r;
        }
        if !peer.fill().await {
            return Err(None);
        }
    };
    if let Reply::Error(_) = reply {
        return Err(Some(format!("scp: {fs}:{name}: the sender gave up")));
    }
    sink.finish()
        .await
        .map_err(|e| Some(format!("scp: {fs}:{name}: {e}")))?;
    tokio::fs::rename(&partial.0, dev.flash_path(name))
        .await
        .map_err(|e| Some(format!("scp: {fs}:{name}: {e}")))?;
    dev.mark_corrupt(name, dev.has_fault(Fault::CorruptDownload));
    tracing::info!(device = %dev.name, file = %name, bytes = size, "scp push received");
    if !peer.send(vec![0]).await {
        return Err(None);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_the_file_or_leave_it_to_the_header() {
        assert_eq!(
            target_name("flash:x.bin", "flash"),
            Ok(Some("x.bin".into()))
        );
        assert_eq!(
            target_name("flash:/x.bin", "flash"),
            Ok(Some("x.bin".into()))
        );
        assert_eq!(target_name("x.bin", "flash"), Ok(Some("x.bin".into())));
        assert_eq!(target_name("flash:", "flash"), Ok(None));
        assert!(target_name("nvram:x", "flash").is_err());
    }
}
