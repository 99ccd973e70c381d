//! The tokio side of the TFTP server: one socket takes requests; each accepted transfer gets
//! its own task and its own socket (its TID), bound to the local address the request was sent
//! to. The protocol itself lives in [`super::session`].

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::net::UdpSocket as StdUdpSocket;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::TftpConfig;
use super::netascii::{NetasciiDecoder, NetasciiEncoder};
use super::packet::{ErrorCode, MAX_BLKSIZE, Mode, Packet, Request, error_packet};
use super::session::{Limits, Outcome, Receiver, Sender, Transfer, negotiate};
use super::sockopt;
use crate::images::{ResolveError, resolve_in};
use crate::shutdown::Shutdown;
use crate::transfers::{Protocol, TransferHandle, Transfers};

/// How often a waiting transfer looks at its timer and at shutdown.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    #[error("TFTP write directory {path}: {source} (create it, or drop --tftp-write-dir)")]
    WriteDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TFTP request socket failed: {0}")]
    Socket(#[source] std::io::Error),
}

/// Transfers in progress, for the global and per-client caps.
#[derive(Default)]
struct Slots {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
    /// Client TIDs with a transfer in progress: a retransmitted request must not start a
    /// second transfer.
    peers: HashSet<SocketAddr>,
}

/// Frees a transfer's slot when the transfer task ends, however it ends.
struct SlotGuard {
    slots: Arc<Mutex<Slots>>,
    peer: SocketAddr,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut s = lock(&self.slots);
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_client.get_mut(&self.peer.ip()) {
            *n -= 1;
            if *n == 0 {
                s.per_client.remove(&self.peer.ip());
            }
        }
        s.peers.remove(&self.peer);
    }
}

fn lock(m: &Mutex<Slots>) -> std::sync::MutexGuard<'_, Slots> {
    // Counters stay meaningful even if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A refusal: the error packet to send and the reason to log.
struct Refusal {
    code: ErrorCode,
    message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

pub(super) struct Server {
    root: PathBuf,
    config: TftpConfig,
    transfers: Transfers,
    shutdown: Shutdown,
    slots: Arc<Mutex<Slots>>,
    /// CPUs this process may use: busy polling needs one to spare.
    cpus: usize,
}

impl Server {
    pub(super) fn new(
        root: PathBuf,
        config: TftpConfig,
        transfers: Transfers,
        shutdown: Shutdown,
    ) -> Result<Self, TftpError> {
        if let Some(dir) = &config.write_dir {
            let meta = std::fs::metadata(dir).map_err(|source| TftpError::WriteDir {
                path: dir.clone(),
                source,
            })?;
            if !meta.is_dir() {
                return Err(TftpError::WriteDir {
                    path: dir.clone(),
                    source: std::io::Error::other("not a directory"),
                });
            }
        }
        Ok(Self {
            root,
            config,
            transfers,
            shutdown,
            slots: Arc::default(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    pub(super) async fn serve(self, socket: UdpSocket) -> Result<(), TftpError> {
        let local = socket.local_addr().map_err(TftpError::Socket)?;
        // A burst of requests (a wave of devices, or a flood) must wait in the kernel rather
        // than be dropped: the default buffer (about 200 KB) holds a few hundred requests.
        let sock = socket2::SockRef::from(&socket);
        if let Err(e) = sock.set_recv_buffer_size(self.config.request_buffer) {
            tracing::warn!(error = %e, asked = self.config.request_buffer, "TFTP: cannot enlarge the request socket's receive buffer");
        }
        // Linux reports twice the usable size and caps the request at net.core.rmem_max.
        let granted = sock.recv_buffer_size().unwrap_or(0);
        tracing::info!(%local, root = %self.root.display(), receive_buffer = granted,
            asked = self.config.request_buffer, "TFTP server listening");
        if granted < self.config.request_buffer {
            tracing::warn!(
                granted,
                asked = self.config.request_buffer,
                "TFTP: the kernel granted a smaller request buffer; raise net.core.rmem_max to absorb bursts of requests"
            );
        }
        let mut buf = vec![0u8; 65536];
        let token = self.shutdown.token.clone();
        loop {
            let received = tokio::select! {
                _ = token.cancelled() => break,
                r = sockopt::recv_with_dst(&socket, &mut buf) => r,
            };
            match received {
                Ok((n, from, dst)) => {
                    let local_ip = dst.unwrap_or(local.ip());
                    self.on_request(&buf[..n], from, local_ip);
                }
                // A UDP receive error concerns one datagram (or a stale ICMP report), never
                // the socket as a whole: keep serving.
                Err(e) => tracing::debug!(error = %e, "TFTP receive error"),
            }
        }
        tracing::info!(%local, "TFTP server stopped accepting requests");
        Ok(())
    }

    fn on_request(&self, datagram: &[u8], from: SocketAddr, local_ip: IpAddr) {
        let packet = match Packet::decode(datagram) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(client = %from, error = %e, "malformed TFTP request");
                let r = Refusal::new(
                    ErrorCode::IllegalOperation,
                    format!("malformed request: {e}"),
                );
                return self.refuse(from, local_ip, r);
            }
        };
        let (req, write) = match packet {
            Packet::Rrq(r) => (r, false),
            Packet::Wrq(r) => (r, true),
            // Never answer an ERROR: two confused peers would bounce errors forever.
            Packet::Error { .. } => return,
            other => {
                tracing::warn!(client = %from, packet = %other, "TFTP packet on the request port");
                let r = Refusal::new(
                    ErrorCode::UnknownTid,
                    format!("{other} sent to the request port; transfers use their own port"),
                );
                return self.refuse(from, local_ip, r);
            }
        };
        let guard = match self.take_slot(from, &req.filename) {
            Ok(Some(g)) => g,
            // The client repeated its request before our first answer reached it.
            Ok(None) => return,
            Err(r) => return self.refuse(from, local_ip, r),
        };
        let prepared = if write {
            self.prepare_write(&req)
        } else {
            self.prepare_read(&req)
        };
        let job = match prepared {
            Ok(job) => job,
            Err(r) => {
                tracing::warn!(client = %from, file = %req.filename, reason = %r.message,
                    "TFTP {} refused", if write { "write" } else { "read" });
                drop(guard);
                return self.refuse(from, local_ip, r);
            }
        };
        let socket = match bind_transfer_socket(local_ip, from) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(client = %from, local = %local_ip, error = %e, "cannot open a TFTP transfer socket");
                return;
            }
        };
        let ctx = TransferCtx {
            socket,
            peer: from,
            token: self.shutdown.token.clone(),
            transfers: self.transfers.clone(),
            limits: self.limits(),
            max_upload: self.config.max_upload,
            busy_poll: self.config.busy_poll,
            cpus: self.cpus,
            slot: guard,
        };
        // Each transfer runs on its own thread with a blocking socket: a lock-step transfer
        // is one round trip per block, and a thread blocked in recv is woken straight by the
        // kernel, without the extra hop through an event loop; file reads that miss the page
        // cache block only this transfer. The tracker's token, held by the thread, lets
        // shutdown wait for it.
        let tracked = self.shutdown.tasks.token();
        let spawned = std::thread::Builder::new()
            .name("tftp-transfer".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let _tracked = tracked;
                match job {
                    Job::Read { file, size, path } => ctx.run_read(req, file, size, path),
                    Job::Write { temp, dest } => ctx.run_write(req, temp, dest),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(client = %from, error = %e, "cannot start a TFTP transfer thread")
        }
    }

    /// Reserve a transfer slot for `from`, or say why not.
    fn take_slot(&self, from: SocketAddr, file: &str) -> Result<Option<SlotGuard>, Refusal> {
        let mut s = lock(&self.slots);
        if s.peers.contains(&from) {
            return Ok(None);
        }
        if s.total >= self.config.max_transfers {
            tracing::warn!(client = %from, file, limit = self.config.max_transfers,
                "TFTP request refused: server busy");
            return Err(Refusal::new(
                ErrorCode::NotDefined,
                format!(
                    "server busy: the limit of {} concurrent transfers is reached; try again later",
                    self.config.max_transfers
                ),
            ));
        }
        let per_client = s.per_client.get(&from.ip()).copied().unwrap_or(0);
        if per_client >= self.config.max_per_client {
            tracing::warn!(client = %from, file, limit = self.config.max_per_client,
                "TFTP request refused: too many transfers from this client");
            return Err(Refusal::new(
                ErrorCode::NotDefined,
                format!(
                    "too many transfers from {} (limit {}); try again when one has finished",
                    from.ip(),
                    self.config.max_per_client
                ),
            ));
        }
        s.total += 1;
        *s.per_client.entry(from.ip()).or_insert(0) += 1;
        s.peers.insert(from);
        Ok(Some(SlotGuard {
            slots: self.slots.clone(),
            peer: from,
        }))
    }

    fn limits(&self) -> Limits {
        Limits {
            max_blksize: self.config.max_blksize,
            max_windowsize: self.config.max_windowsize,
            max_window_bytes: self.config.max_window_bytes,
            timeout: self.config.timeout,
            retries: self.config.retries,
            max_stall: self.config.max_stall,
        }
    }

    fn prepare_read(&self, req: &Request) -> Result<Job, Refusal> {
        let path = self.resolve(&req.filename)?;
        let file = File::open(&path).map_err(|e| {
            Refusal::new(
                ErrorCode::AccessViolation,
                format!("cannot open {}: {e}", req.filename),
            )
        })?;
        let size = file
            .metadata()
            .map_err(|e| {
                Refusal::new(
                    ErrorCode::NotDefined,
                    format!("cannot read {}: {e}", req.filename),
                )
            })?
            .len();
        sockopt::advise_sequential(&file);
        Ok(Job::Read { file, size, path })
    }

    /// The image store first, then each extra root. A name refused by the path rules is
    /// refused everywhere.
    fn resolve(&self, name: &str) -> Result<PathBuf, Refusal> {
        for root in std::iter::once(&self.root).chain(&self.config.extra_roots) {
            match resolve_in(root, name) {
                Ok(p) => return Ok(p),
                Err(ResolveError::NotFound) => continue,
                Err(ResolveError::Forbidden(why)) => {
                    return Err(Refusal::new(
                        ErrorCode::AccessViolation,
                        format!("access violation: {why}"),
                    ));
                }
            }
        }
        Err(Refusal::new(
            ErrorCode::FileNotFound,
            format!("file not found: {name}"),
        ))
    }

    fn prepare_write(&self, req: &Request) -> Result<Job, Refusal> {
        let Some(dir) = &self.config.write_dir else {
            return Err(Refusal::new(
                ErrorCode::AccessViolation,
                "uploads are disabled: this TFTP server is read-only (fleetup serve --tftp-write-dir DIR accepts them)",
            ));
        };
        match resolve_in(dir, &req.filename) {
            Ok(_) => {
                return Err(Refusal::new(
                    ErrorCode::FileExists,
                    format!(
                        "file already exists: {}; upload under another name",
                        req.filename
                    ),
                ));
            }
            Err(ResolveError::Forbidden(why)) => {
                return Err(Refusal::new(
                    ErrorCode::AccessViolation,
                    format!("access violation: {why}"),
                ));
            }
            Err(ResolveError::NotFound) => {}
        }
        let name = req.filename.strip_prefix('/').unwrap_or(&req.filename);
        let dest = dir.join(name);
        if std::fs::symlink_metadata(&dest).is_ok() {
            // A directory, a dangling link or something else that is not a file to serve.
            return Err(Refusal::new(
                ErrorCode::FileExists,
                format!("{} already exists and is not a regular file", req.filename),
            ));
        }
        let temp = tempfile::Builder::new()
            .prefix(".tftp-upload-")
            .suffix(".part")
            .tempfile_in(dir)
            .map_err(|e| {
                Refusal::new(
                    ErrorCode::DiskFull,
                    format!("cannot create the upload file: {e}"),
                )
            })?;
        Ok(Job::Write { temp, dest })
    }

    /// Answer a refused request with an error packet from the address it was sent to.
    fn refuse(&self, to: SocketAddr, local_ip: IpAddr, r: Refusal) {
        let pkt = error_packet(r.code, &r.message);
        match bind_transfer_socket(local_ip, to) {
            Ok(s) => {
                if let Err(e) = s.send_to(&pkt, to) {
                    tracing::debug!(client = %to, error = %e, "cannot send TFTP error");
                }
            }
            Err(e) => {
                tracing::debug!(client = %to, error = %e, "cannot open a socket for a TFTP error")
            }
        }
    }
}

enum Job {
    Read {
        file: File,
        size: u64,
        path: PathBuf,
    },
    Write {
        temp: tempfile::NamedTempFile,
        dest: PathBuf,
    },
}

fn bind_transfer_socket(local_ip: IpAddr, peer: SocketAddr) -> std::io::Result<StdUdpSocket> {
    let ip = match (local_ip, peer) {
        (IpAddr::V4(_), SocketAddr::V4(_)) | (IpAddr::V6(_), SocketAddr::V6(_)) => local_ip,
        (_, SocketAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (_, SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    StdUdpSocket::bind(SocketAddr::new(ip, 0))
}

/// Everything one transfer task owns.
struct TransferCtx {
    socket: StdUdpSocket,
    peer: SocketAddr,
    token: CancellationToken,
    transfers: Transfers,
    limits: Limits,
    max_upload: u64,
    busy_poll: Duration,
    cpus: usize,
    /// Frees the transfer's slot when the transfer ends; also tells how many transfers run.
    slot: SlotGuard,
}

impl TransferCtx {
    fn poller(&self) -> Poller {
        Poller::new(self.busy_poll, self.slot.slots.clone(), self.cpus)
    }

    fn run_read(self, req: Request, file: File, size: u64, path: PathBuf) {
        let octet = req.mode == Mode::Octet;
        let n = negotiate(&req, false, octet.then_some(size), &self.limits);
        let total = octet.then_some(size);
        let handle =
            self.transfers
                .start(Protocol::Tftp, self.peer, &req.filename, "download", total);
        handle.set_block_size(n.params.blksize);
        tracing::info!(client = %self.peer, file = %req.filename, path = %path.display(), size,
            blksize = n.params.blksize, windowsize = n.params.windowsize, mode = req.mode.as_str(),
            "TFTP download started");
        let source: Box<dyn Read + Send> = if octet {
            Box::new(file)
        } else {
            Box::new(NetasciiEncoder::new(file))
        };
        let mut sender = Sender::new(Instant::now(), self.peer, source, n.params, n.oack);
        let mut poller = self.poller();
        let result = drive(&self.socket, &mut sender, &self.token, &mut poller, |s| {
            handle.set_bytes(s.bytes_acked());
            Ok(())
        });
        handle.set_bytes(sender.bytes_acked());
        finish(handle, &req.filename, self.peer, sender.outcome(), result);
    }

    fn run_write(self, req: Request, temp: tempfile::NamedTempFile, dest: PathBuf) {
        let n = negotiate(&req, true, None, &self.limits);
        let handle = self.transfers.start(
            Protocol::Tftp,
            self.peer,
            &req.filename,
            "upload",
            n.announced_size,
        );
        handle.set_block_size(n.params.blksize);
        if let Some(size) = n.announced_size.filter(|&s| s > self.max_upload) {
            let msg = format!(
                "upload of {size} bytes exceeds the limit of {} bytes",
                self.max_upload
            );
            let _ = self
                .socket
                .send_to(&error_packet(ErrorCode::DiskFull, &msg), self.peer);
            tracing::warn!(client = %self.peer, file = %req.filename, "TFTP upload refused: {msg}");
            handle.fail(msg);
            return;
        }
        tracing::info!(client = %self.peer, file = %req.filename, "TFTP upload started");
        let mut receiver = Receiver::upload(
            Instant::now(),
            self.peer,
            n.params,
            n.oack,
            Some(self.max_upload),
        );
        let netascii = req.mode == Mode::Netascii;
        let mut decoder = NetasciiDecoder::default();
        let mut decoded = Vec::new();
        let mut temp = Some(temp);
        let mut poller = self.poller();
        let result = drive(&self.socket, &mut receiver, &self.token, &mut poller, |r| {
            let Some(file) = temp.as_mut() else {
                return Ok(());
            };
            if !r.data().is_empty() {
                let data = if netascii {
                    decoded.clear();
                    decoder.decode(r.data(), &mut decoded);
                    &decoded[..]
                } else {
                    r.data()
                };
                file.write_all(data)?;
                handle.set_bytes(r.received());
                r.clear_data();
            }
            // The final ACK tells the client its file is stored: store it first.
            if r.awaiting_store() {
                if netascii {
                    decoded.clear();
                    decoder.finish(&mut decoded);
                    file.write_all(&decoded)?;
                }
                if let Some(t) = temp.take() {
                    match persist(t, &dest) {
                        Ok(()) => r.stored(Instant::now()),
                        Err((code, e)) => r.store_failed(code, &e),
                    }
                }
            }
            Ok(())
        });
        finish(handle, &req.filename, self.peer, receiver.outcome(), result);
    }
}

/// Flush the upload and move it to its name, refusing to replace a file that appeared
/// meanwhile; on failure, the TFTP error code and the message for the client.
fn persist(temp: tempfile::NamedTempFile, dest: &Path) -> Result<(), (ErrorCode, String)> {
    let name = dest.file_name().map_or_else(
        || dest.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    temp.as_file()
        .sync_all()
        .map_err(|e| (ErrorCode::DiskFull, format!("cannot write {name}: {e}")))?;
    temp.persist_noclobber(dest).map(|_| ()).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            (
                ErrorCode::FileExists,
                format!("{name} appeared meanwhile; upload under another name"),
            )
        } else {
            (
                ErrorCode::NotDefined,
                format!("cannot store {name}: {}", e.error),
            )
        }
    })
}

fn finish(
    handle: TransferHandle,
    file: &str,
    peer: SocketAddr,
    outcome: Option<&Outcome>,
    io: std::io::Result<()>,
) {
    match (outcome, io) {
        (Some(Outcome::Complete { bytes }), Ok(())) => {
            tracing::info!(client = %peer, file, bytes, "TFTP transfer complete");
            handle.complete();
        }
        (Some(Outcome::Failed(f)), _) => {
            tracing::warn!(client = %peer, file, reason = %f, "TFTP transfer failed");
            handle.fail(f.to_string());
        }
        (_, Err(e)) => {
            tracing::warn!(client = %peer, file, error = %e, "TFTP transfer failed");
            handle.fail(format!("socket or file error: {e}"));
        }
        (None, Ok(())) => handle.fail("transfer ended without an outcome"),
    }
}

/// Drive one transfer: send what the machine has, wait for a datagram or its timer, repeat.
/// `after` runs after every step (progress, writing received data).
fn drive<T: Transfer>(
    socket: &StdUdpSocket,
    t: &mut T,
    token: &CancellationToken,
    poller: &mut Poller,
    mut after: impl FnMut(&mut T) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut batch = Batch::default();
    let mut inbuf = vec![0u8; usize::from(MAX_BLKSIZE) + 4];
    // recv wakes at least this often to look at timers and shutdown; a timer fires at most
    // this late. Setting the timeout once avoids a system call per packet.
    socket.set_read_timeout(Some(POLL_INTERVAL))?;
    let mut aborted = false;
    loop {
        if batch.send_all(socket, t)? > 0 {
            poller.sent(Instant::now());
        }
        if let Err(e) = after(t) {
            t.abort(ErrorCode::DiskFull, "server could not store the file");
            let _ = batch.send_all(socket, t);
            return Err(e);
        }
        if t.is_finished() {
            return Ok(());
        }
        if !aborted && token.is_cancelled() {
            aborted = true;
            t.abort(ErrorCode::NotDefined, "server shutting down");
            continue;
        }
        if t.poll_timeout().is_some_and(|d| Instant::now() >= d) {
            t.handle_timeout(Instant::now());
            continue;
        }
        let received = match poller.poll(socket, &mut inbuf) {
            Some(r) => Ok(r),
            None => socket.recv_from(&mut inbuf),
        };
        match received {
            Ok((n, from)) => {
                let now = Instant::now();
                poller.received(now);
                t.handle(now, from, &inbuf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Datagrams to send together: a window leaves in one system call.
#[derive(Default)]
struct Batch {
    datagrams: Vec<Vec<u8>>,
    dsts: Vec<SocketAddr>,
}

impl Batch {
    /// Most datagrams per system call; a larger window goes out in several calls.
    const MAX: usize = 64;

    /// Send everything the transfer has to send; returns how many datagrams left.
    fn send_all<T: Transfer>(
        &mut self,
        socket: &StdUdpSocket,
        t: &mut T,
    ) -> std::io::Result<usize> {
        let mut total = 0;
        loop {
            let mut n = 0;
            while n < Self::MAX {
                if self.datagrams.len() == n {
                    // Grows to the block size on first use, then keeps its capacity.
                    self.datagrams.push(Vec::new());
                    self.dsts.push(SocketAddr::from(([0, 0, 0, 0], 0)));
                }
                let Some(dst) = t.poll_transmit(&mut self.datagrams[n]) else {
                    break;
                };
                self.dsts[n] = dst;
                n += 1;
            }
            if n == 0 {
                return Ok(total);
            }
            sockopt::send_batch(socket, &self.datagrams[..n], &self.dsts[..n])?;
            total += n;
            if n < Self::MAX {
                return Ok(total);
            }
        }
    }
}

/// Polls a transfer's socket for a fast client's answer before the thread goes to sleep.
///
/// A lock-step transfer is one round trip per block. For a client on the same host (the lab)
/// or rack, most of a round trip is the kernel waking the sleeping thread on another CPU, an
/// inter-processor interrupt that is costly in a virtual machine: on loopback, curl at blksize
/// 512 ran 2.6 times faster with polling. Polling is used only while it pays and costs nobody:
/// when the client's recent answers came within the budget (a smoothed round trip, like TCP's
/// SRTT) and fewer transfers run than CPUs. Devices answering in milliseconds are never polled
/// for; a poll that fails costs at most the budget and raises the smoothed round trip.
struct Poller {
    budget: Duration,
    slots: Arc<Mutex<Slots>>,
    cpus: usize,
    /// Smoothed time from our last datagram to the client's answer.
    srtt: Option<Duration>,
    sent_at: Option<Instant>,
}

impl Poller {
    fn new(budget: Duration, slots: Arc<Mutex<Slots>>, cpus: usize) -> Self {
        Self {
            budget,
            slots,
            cpus,
            srtt: None,
            sent_at: None,
        }
    }

    fn sent(&mut self, now: Instant) {
        self.sent_at = Some(now);
    }

    fn received(&mut self, now: Instant) {
        let Some(sent) = self.sent_at.take() else {
            return;
        };
        let sample = now.saturating_duration_since(sent);
        self.srtt = Some(match self.srtt {
            Some(srtt) => (srtt * 7 + sample) / 8,
            None => sample,
        });
    }

    fn worth_it(&self) -> bool {
        self.sent_at.is_some()
            && self.srtt.is_some_and(|srtt| srtt < self.budget)
            && lock(&self.slots).total < self.cpus
    }

    /// Poll for the next datagram for up to the budget; `None` when none came (or on an
    /// error, which the blocking receive that follows then reports).
    fn poll(&self, socket: &StdUdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        if !self.worth_it() {
            return None;
        }
        let until = Instant::now() + self.budget;
        loop {
            match sockopt::try_recv(socket, buf) {
                Ok(Some(r)) => return Some(r),
                Ok(None) if Instant::now() < until => std::hint::spin_loop(),
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poller(budget: Duration, running: usize, cpus: usize) -> (Poller, Arc<Mutex<Slots>>) {
        let slots = Arc::new(Mutex::new(Slots::default()));
        lock(&slots).total = running;
        (Poller::new(budget, slots.clone(), cpus), slots)
    }

    fn round_trip(p: &mut Poller, at: Instant, took: Duration) {
        p.sent(at);
        p.received(at + took);
    }

    #[test]
    fn polls_only_for_fast_clients_while_cpus_are_spare() {
        let t0 = Instant::now();
        let (mut p, slots) = poller(Duration::from_micros(100), 1, 2);
        p.sent(t0);
        assert!(!p.worth_it(), "no round trip measured yet");
        round_trip(&mut p, t0, Duration::from_micros(30));
        p.sent(t0);
        assert!(p.worth_it(), "a 30 µs client with a CPU to spare");
        lock(&slots).total = 2;
        assert!(!p.worth_it(), "as many transfers as CPUs");
        lock(&slots).total = 1;
        for _ in 0..10 {
            round_trip(&mut p, t0, Duration::from_millis(2));
        }
        p.sent(t0);
        assert!(!p.worth_it(), "a client answering in milliseconds");

        let (mut off, _slots) = poller(Duration::ZERO, 1, 2);
        round_trip(&mut off, t0, Duration::from_micros(1));
        off.sent(t0);
        assert!(!off.worth_it(), "--tftp-busy-poll 0 never polls");

        let (mut single, _slots) = poller(Duration::from_micros(100), 1, 1);
        round_trip(&mut single, t0, Duration::from_micros(1));
        single.sent(t0);
        assert!(
            !single.worth_it(),
            "one CPU: polling would starve the client"
        );
    }

    #[test]
    fn poll_takes_a_waiting_datagram_and_gives_up_after_the_budget() {
        let server = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let client = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let (mut p, _slots) = poller(Duration::from_micros(500), 1, 2);
        let t0 = Instant::now();
        round_trip(&mut p, t0, Duration::from_micros(10));
        p.sent(t0);
        let mut buf = [0u8; 64];
        assert_eq!(p.poll(&server, &mut buf), None, "nothing was sent");
        client
            .send_to(b"\0\x04\0\x01", server.local_addr().unwrap())
            .unwrap();
        // Loopback delivers within the send call, so the datagram is already queued.
        let got = p.poll(&server, &mut buf);
        assert_eq!(got, Some((4, client.local_addr().unwrap())));
        assert_eq!(&buf[..4], b"\0\x04\0\x01");
    }
}
