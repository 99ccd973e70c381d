//! Live view of file transfers served by the built-in TFTP, FTP, HTTP(S) and SCP/SFTP servers.
//!
//! A server calls [`Transfers::start`] when a device begins to pull a file and updates the
//! returned [`TransferHandle`] as bytes go out. The API (`GET /api/v1/transfers`), the metrics
//! and the rollout engine (per-device copy progress) read [`Transfers::snapshot`].
//!
//! Progress updates are a relaxed atomic store, so a server may report after every block
//! without taking a lock.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// How many finished transfers are kept for the "recent" part of the view.
const RECENT: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tftp,
    Ftp,
    Http,
    Https,
    Scp,
    Sftp,
}

impl Protocol {
    /// Every protocol, in the order of the metrics.
    pub(crate) const ALL: [Protocol; 6] = [
        Protocol::Tftp,
        Protocol::Ftp,
        Protocol::Http,
        Protocol::Https,
        Protocol::Scp,
        Protocol::Sftp,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Tftp => "tftp",
            Protocol::Ftp => "ftp",
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Scp => "scp",
            Protocol::Sftp => "sftp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransferState {
    Active,
    Completed,
    Failed,
}

/// One transfer as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransferInfo {
    pub id: u64,
    pub protocol: Protocol,
    /// Address of the device (the client) as seen by the server.
    #[schema(value_type = String)]
    pub client: SocketAddr,
    pub file: String,
    /// Direction: `download` (device pulls), `upload` (device pushes, e.g. a config backup) or
    /// `push` (fleetup pushes the image into the device over SCP, `scp-push`).
    #[schema(value_type = String)]
    pub direction: Cow<'static, str>,
    pub bytes: u64,
    pub total: Option<u64>,
    pub state: TransferState,
    pub error: Option<String>,
    #[schema(value_type = String)]
    pub started_at: jiff::Timestamp,
    #[schema(value_type = Option<String>)]
    pub finished_at: Option<jiff::Timestamp>,
    /// Average rate since the start, bytes per second.
    pub rate_bps: u64,
    /// TFTP: the block size negotiated (RFC 2348); 512 when the client asked for none, as
    /// IOS does unless `ip tftp blocksize` is set.
    pub block_size: Option<u16>,
    /// The device job that started this transfer, when one claimed it.
    pub(crate) job: Option<JobRef>,
}

/// A device job of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct JobRef {
    pub rollout: crate::rollout::model::RolloutId,
    pub device: String,
}

/// How a job will recognise its transfer when the device starts it. Never by address alone:
/// FTP, SCP and SFTP by the job's one-time account, HTTP(S) by the job's one-time path token
/// (the server passes it as the `user`); TFTP, which has neither, by the device's address,
/// the file, and a start after the job sent its copy command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recognise {
    Account(String),
    TftpClient(IpAddr),
}

/// A job's claim on the transfer its copy command will start.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    pub job: JobRef,
    pub protocol: Protocol,
    /// The image, and on NX-OS with separate images its kickstart too.
    pub files: Vec<String>,
    pub by: Recognise,
    /// Transfers that started before this are not the job's.
    pub since: jiff::Timestamp,
}

impl Claim {
    fn matches(
        &self,
        protocol: Protocol,
        client: SocketAddr,
        user: Option<&str>,
        file: &str,
        at: jiff::Timestamp,
    ) -> bool {
        if self.protocol != protocol || !self.files.iter().any(|f| f == file) || at < self.since {
            return false;
        }
        match &self.by {
            Recognise::Account(u) => user == Some(u.as_str()),
            Recognise::TftpClient(ip) => client.ip() == *ip,
        }
    }
}

struct Live {
    id: u64,
    protocol: Protocol,
    client: SocketAddr,
    file: String,
    direction: &'static str,
    total: Option<u64>,
    started_at: jiff::Timestamp,
    started: Instant,
    bytes: Arc<AtomicU64>,
    block_size: Option<u16>,
    job: Option<JobRef>,
}

impl Live {
    fn info(&self, state: TransferState, error: Option<String>, finished: bool) -> TransferInfo {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        TransferInfo {
            id: self.id,
            protocol: self.protocol,
            client: self.client,
            file: self.file.clone(),
            direction: Cow::Borrowed(self.direction),
            bytes,
            total: self.total,
            state,
            error,
            started_at: self.started_at,
            finished_at: finished.then(jiff::Timestamp::now),
            rate_bps: if secs > 0.0 {
                (bytes as f64 / secs) as u64
            } else {
                0
            },
            block_size: self.block_size,
            job: self.job.clone(),
        }
    }
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    active: HashMap<u64, Live>,
    recent: VecDeque<TransferInfo>,
    /// Open claims by id; a claim lives as long as its [`ClaimGuard`].
    claims: HashMap<u64, Claim>,
}

/// Totals for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TransferCounters {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    pub bytes: u64,
}

const PROTOCOLS: usize = Protocol::ALL.len();

#[derive(Default)]
struct Counters {
    started: [AtomicU64; PROTOCOLS],
    completed: [AtomicU64; PROTOCOLS],
    failed: [AtomicU64; PROTOCOLS],
    bytes: [AtomicU64; PROTOCOLS],
}

/// Registry of live and recent transfers; cheap to clone.
#[derive(Clone, Default)]
pub struct Transfers {
    inner: Arc<Mutex<Inner>>,
    counters: Arc<Counters>,
}

fn idx(p: Protocol) -> usize {
    p as usize
}

impl Transfers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a transfer that is starting. `total` is the file size when known.
    pub(crate) fn start(
        &self,
        protocol: Protocol,
        client: SocketAddr,
        file: &str,
        direction: &'static str,
        total: Option<u64>,
    ) -> TransferHandle {
        self.start_as(protocol, client, None, file, direction, total)
    }

    /// A push of `file` into the device at `device` (`scp-push`): fleetup is the client, and
    /// the transfer is its job's from the start.
    pub(crate) fn start_push(
        &self,
        device: SocketAddr,
        file: &str,
        total: Option<u64>,
        job: JobRef,
    ) -> TransferHandle {
        let handle = self.start_as(Protocol::Scp, device, None, file, "push", total);
        if let Some(live) = self.lock().active.get_mut(&handle.id) {
            live.job = Some(job);
        }
        handle
    }

    /// [`Transfers::start`] for a client logged in as `user` (FTP, SCP, SFTP) or presenting a
    /// job's path token (HTTP).
    pub(crate) fn start_as(
        &self,
        protocol: Protocol,
        client: SocketAddr,
        user: Option<&str>,
        file: &str,
        direction: &'static str,
        total: Option<u64>,
    ) -> TransferHandle {
        let bytes = Arc::new(AtomicU64::new(0));
        let now = jiff::Timestamp::now();
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        // The newest matching claim: a retried job's claim replaces its earlier one.
        let job = (direction == "download")
            .then(|| {
                inner
                    .claims
                    .iter()
                    .filter(|(_, c)| c.matches(protocol, client, user, file, now))
                    .max_by_key(|(id, _)| **id)
                    .map(|(_, c)| c.job.clone())
            })
            .flatten();
        inner.active.insert(
            id,
            Live {
                id,
                protocol,
                client,
                file: file.to_string(),
                direction,
                total,
                started_at: now,
                started: Instant::now(),
                bytes: bytes.clone(),
                block_size: None,
                job,
            },
        );
        drop(inner);
        self.counters.started[idx(protocol)].fetch_add(1, Ordering::Relaxed);
        TransferHandle {
            registry: self.clone(),
            id,
            bytes,
            done: false,
        }
    }

    /// Active transfers first (oldest first), then recent finished ones (newest first).
    pub fn snapshot(&self) -> Vec<TransferInfo> {
        let inner = self.lock();
        let mut out: Vec<TransferInfo> = inner
            .active
            .values()
            .map(|l| l.info(TransferState::Active, None, false))
            .collect();
        out.sort_by_key(|t| t.id);
        out.extend(inner.recent.iter().rev().cloned());
        out
    }

    /// Claim the transfer a job's copy command is about to start; the claim ends with the
    /// guard. Transfers it matched keep their job.
    pub(crate) fn claim(&self, claim: Claim) -> ClaimGuard {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.claims.insert(id, claim);
        ClaimGuard {
            registry: self.clone(),
            id,
        }
    }

    /// The transfer of one job: its live one, else its newest finished one.
    pub(crate) fn of_job(&self, rollout: &str, device: &str) -> Option<TransferInfo> {
        self.of_rollout(rollout).remove(device)
    }

    /// The transfer of each job of a rollout, by device, chosen as [`Self::of_job`] does;
    /// one pass over the registry for the whole rollout.
    pub(crate) fn of_rollout(&self, rollout: &str) -> HashMap<String, TransferInfo> {
        let mut out: HashMap<String, TransferInfo> = HashMap::new();
        for t in self.snapshot() {
            let Some(device) = t
                .job
                .as_ref()
                .filter(|j| j.rollout == rollout)
                .map(|j| j.device.clone())
            else {
                continue;
            };
            let rank =
                |t: &TransferInfo| (t.state != TransferState::Active, std::cmp::Reverse(t.id));
            match out.get(&device) {
                Some(held) if rank(held) <= rank(&t) => {}
                _ => {
                    out.insert(device, t);
                }
            }
        }
        out
    }

    pub fn active_count(&self) -> usize {
        self.lock().active.len()
    }

    pub fn counters(&self, protocol: Protocol) -> TransferCounters {
        let i = idx(protocol);
        let c = &self.counters;
        TransferCounters {
            started: c.started[i].load(Ordering::Relaxed),
            completed: c.completed[i].load(Ordering::Relaxed),
            failed: c.failed[i].load(Ordering::Relaxed),
            bytes: c.bytes[i].load(Ordering::Relaxed),
        }
    }

    fn finish(&self, id: u64, error: Option<String>) {
        let mut inner = self.lock();
        let Some(live) = inner.active.remove(&id) else {
            return;
        };
        let state = if error.is_some() {
            TransferState::Failed
        } else {
            TransferState::Completed
        };
        let info = live.info(state, error, true);
        let i = idx(live.protocol);
        self.counters.bytes[i].fetch_add(info.bytes, Ordering::Relaxed);
        if info.error.is_some() {
            self.counters.failed[i].fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.completed[i].fetch_add(1, Ordering::Relaxed);
        }
        if inner.recent.len() == RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(info);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent in a way that
        // matters for a progress view, so keep serving after a poisoned lock.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps a job's [`Claim`] open; dropped when the job ends.
pub(crate) struct ClaimGuard {
    registry: Transfers,
    id: u64,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.registry.lock().claims.remove(&self.id);
    }
}

/// Held by the server for the life of one transfer. Dropping it without calling
/// [`TransferHandle::complete`] or [`TransferHandle::fail`] records the transfer as failed.
pub(crate) struct TransferHandle {
    registry: Transfers,
    id: u64,
    bytes: Arc<AtomicU64>,
    done: bool,
}

impl TransferHandle {
    #[cfg(test)]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The block size the transfer negotiated (TFTP).
    pub(crate) fn set_block_size(&self, size: u16) {
        if let Some(live) = self.registry.lock().active.get_mut(&self.id) {
            live.block_size = Some(size);
        }
    }

    /// Total bytes transferred so far (not a delta).
    pub(crate) fn set_bytes(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn complete(mut self) {
        self.done = true;
        self.registry.finish(self.id, None);
    }

    pub(crate) fn fail(mut self, reason: impl Into<String>) {
        self.done = true;
        self.registry.finish(self.id, Some(reason.into()));
    }
}

impl Drop for TransferHandle {
    fn drop(&mut self) {
        if !self.done {
            self.registry
                .finish(self.id, Some("transfer ended unexpectedly".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_moves_transfer_from_active_to_recent() {
        let t = Transfers::new();
        let client: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let h = t.start(Protocol::Tftp, client, "ios.bin", "download", Some(100));
        h.set_bytes(40);
        let snap = t.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].state, TransferState::Active);
        assert_eq!(snap[0].bytes, 40);
        h.set_bytes(100);
        h.complete();
        let snap = t.snapshot();
        assert_eq!(snap[0].state, TransferState::Completed);
        assert_eq!(t.active_count(), 0);
        assert_eq!(t.counters(Protocol::Tftp).completed, 1);
        assert_eq!(t.counters(Protocol::Tftp).bytes, 100);
    }

    #[test]
    fn transfers_belong_to_the_job_that_claimed_them_never_to_an_address_alone() {
        let t = Transfers::new();
        let ts = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let sw1: SocketAddr = "10.0.0.1:50000".parse().unwrap();
        let sw2: SocketAddr = "10.0.0.2:50000".parse().unwrap();
        let job = |d: &str| JobRef {
            rollout: crate::rollout::model::RolloutId::new("r-1"),
            device: d.into(),
        };
        // Before any claim: a transfer from sw1 belongs to nobody.
        t.start(Protocol::Tftp, sw1, "ios.bin", "download", None)
            .complete();
        assert!(t.of_job("r-1", "sw1").is_none());
        let _tftp = t.claim(Claim {
            job: job("sw1"),
            protocol: Protocol::Tftp,
            files: vec!["ios.bin".into()],
            by: Recognise::TftpClient(sw1.ip()),
            since: ts("2000-01-01T00:00:00Z"),
        });
        let _ftp = t.claim(Claim {
            job: job("sw2"),
            protocol: Protocol::Ftp,
            files: vec!["ios.bin".into()],
            by: Recognise::Account("fu0001".into()),
            since: ts("2000-01-01T00:00:00Z"),
        });
        // Another file from the same address, the same file from another address, or FTP
        // under another account: not the job's.
        t.start(Protocol::Tftp, sw1, "other.bin", "download", None)
            .complete();
        t.start(Protocol::Tftp, sw2, "ios.bin", "download", None)
            .complete();
        t.start_as(
            Protocol::Ftp,
            sw2,
            Some("anonymous"),
            "ios.bin",
            "download",
            None,
        )
        .complete();
        assert!(t.of_job("r-1", "sw1").is_none());
        assert!(t.of_job("r-1", "sw2").is_none());
        let a = t.start(Protocol::Tftp, sw1, "ios.bin", "download", Some(9));
        let b = t.start_as(
            Protocol::Ftp,
            sw1,
            Some("fu0001"),
            "ios.bin",
            "download",
            None,
        );
        assert_eq!(t.of_job("r-1", "sw1").map(|i| i.id), Some(a.id()));
        assert_eq!(t.of_job("r-1", "sw2").map(|i| i.id), Some(b.id()));
        a.complete();
        b.complete();
        // Finished, still the job's.
        assert!(t.of_job("r-1", "sw1").is_some());
        // A claim that starts later does not take transfers that started before it.
        let later = t.claim(Claim {
            job: job("sw1-again"),
            protocol: Protocol::Tftp,
            files: vec!["ios.bin".into()],
            by: Recognise::TftpClient(sw1.ip()),
            since: ts("2999-01-01T00:00:00Z"),
        });
        t.start(Protocol::Tftp, sw1, "ios.bin", "download", None)
            .complete();
        assert!(t.of_job("r-1", "sw1-again").is_none());
        drop(later);
        assert_eq!(t.lock().claims.len(), 2);
    }

    #[test]
    fn dropped_handle_counts_as_failed() {
        let t = Transfers::new();
        let client: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        drop(t.start(Protocol::Ftp, client, "x.bin", "download", None));
        let snap = t.snapshot();
        assert_eq!(snap[0].state, TransferState::Failed);
        assert_eq!(t.counters(Protocol::Ftp).failed, 1);
    }
}
