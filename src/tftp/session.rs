//! The TFTP transfer state machines, sans IO.
//!
//! [`Sender`] pushes a file (the server side of a read request), [`Receiver`] takes one in (the
//! client side of a download, or the server side of a write request). Neither touches a socket
//! or the clock: datagrams come in through [`Transfer::handle`] with the time they arrived,
//! outgoing datagrams are pulled with [`Transfer::poll_transmit`], and the driver sleeps until
//! [`Transfer::poll_timeout`] and then calls [`Transfer::handle_timeout`].
//!
//! Block numbers are 16 bits on the wire and wrap from 65535 to 0; internally every block has a
//! 64-bit index, so files of any size work and the wire number is just the low 16 bits.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::packet::{
    DEFAULT_BLKSIZE, ErrorCode, MAX_BLKSIZE, MIN_BLKSIZE, Mode, Packet, Request, error_packet,
    put_data_header,
};

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every block was delivered; `bytes` counts payload bytes (after netascii encoding).
    Complete {
        bytes: u64,
    },
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Failure {
    #[error("no answer from the peer after {0} timeouts")]
    TimedOut(u32),
    #[error("peer sent error {code}: {message}")]
    Peer { code: u16, message: String },
    #[error("peer refused the negotiated options (error 8)")]
    OptionsRefused,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("reading the file failed: {0}")]
    Io(String),
    #[error("upload exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("aborted: {0}")]
    Aborted(String),
    /// The server's limit on time without progress, whatever timeout the client negotiated.
    #[error("no progress for {0} s (the server's limit; --tftp-max-stall)")]
    Stalled(u64),
    /// The upload arrived whole but could not be stored under its name.
    #[error("storing the upload failed: {0}")]
    Store(String),
}

/// Parameters of one transfer after option negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TransferParams {
    pub blksize: u16,
    pub windowsize: u16,
    /// Time without progress before the last packet (or window) is sent again.
    pub timeout: Duration,
    /// Consecutive timeouts after which the transfer is given up.
    pub retries: u32,
    /// Longest time without progress before the transfer is given up, whatever `timeout` and
    /// `retries` allow: a client's `timeout 255` would otherwise hold a slot for 21 minutes.
    pub max_stall: Option<Duration>,
}

impl Default for TransferParams {
    fn default() -> Self {
        Self {
            blksize: DEFAULT_BLKSIZE,
            windowsize: 1,
            timeout: Duration::from_secs(1),
            retries: 5,
            max_stall: None,
        }
    }
}

/// What the server allows a client to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub max_blksize: u16,
    pub max_windowsize: u16,
    /// Largest window in bytes (windowsize × blksize). A window is sent as one burst, and a
    /// burst larger than the client's socket receive buffer (about 200 KB by default on
    /// Linux, less in practice for large datagrams) loses its tail every time, costing a
    /// timeout per window: atftpd collapses that way at blksize 8192, windowsize 16.
    pub max_window_bytes: usize,
    pub timeout: Duration,
    pub retries: u32,
    /// Longest time a transfer may go without progress, whatever the client negotiates.
    pub max_stall: Duration,
}

/// Result of negotiating a request's options (RFC 2347).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Negotiated {
    pub params: TransferParams,
    /// Options to acknowledge; `None` when the client asked for none we honour, in which case
    /// the transfer starts without an OACK (RFC 2347 requires the OACK to hold only options
    /// the client asked for).
    pub oack: Option<Vec<(String, String)>>,
    /// For a write request: the size the client announced with `tsize`.
    pub announced_size: Option<u64>,
}

/// Negotiate the options of a request. `file_size` is the size to announce for `tsize` in a
/// read request (only known in octet mode, since netascii changes the length).
pub(crate) fn negotiate(
    req: &Request,
    write: bool,
    file_size: Option<u64>,
    limits: &Limits,
) -> Negotiated {
    let mut params = TransferParams {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: limits.timeout,
        retries: limits.retries,
        max_stall: Some(limits.max_stall),
    };
    let mut oack = Vec::new();
    let mut announced_size = None;
    for (name, value) in &req.options {
        // Values that do not parse or are out of range are ignored, not refused: the transfer
        // then proceeds with the default, which every client must handle.
        let Ok(n) = value.trim().parse::<u64>() else {
            continue;
        };
        match name.as_str() {
            "blksize" if n >= u64::from(MIN_BLKSIZE) => {
                let b = n
                    .min(u64::from(MAX_BLKSIZE))
                    .min(u64::from(limits.max_blksize.max(MIN_BLKSIZE)))
                    as u16;
                params.blksize = b;
                oack.push((name.clone(), b.to_string()));
            }
            "windowsize" if (1..=65535).contains(&n) => {
                let w = n.min(u64::from(limits.max_windowsize.max(1))) as u16;
                params.windowsize = w;
                oack.push((name.clone(), w.to_string()));
            }
            "timeout" if (1..=255).contains(&n) => {
                params.timeout = Duration::from_secs(n);
                oack.push((name.clone(), n.to_string()));
            }
            "tsize" => {
                if write {
                    announced_size = Some(n);
                    oack.push((name.clone(), n.to_string()));
                } else if let Some(size) = file_size {
                    oack.push((name.clone(), size.to_string()));
                }
            }
            _ => {}
        }
    }
    let by_bytes = (limits.max_window_bytes / usize::from(params.blksize)).clamp(1, 65535) as u16;
    if params.windowsize > by_bytes {
        params.windowsize = by_bytes;
        for (name, value) in oack.iter_mut() {
            if name == "windowsize" {
                *value = by_bytes.to_string();
            }
        }
    }
    Negotiated {
        params,
        oack: (!oack.is_empty()).then_some(oack),
        announced_size,
    }
}

/// The interface the tokio drivers use; both state machines implement it.
pub(crate) trait Transfer {
    /// A datagram arrived from `from` at time `now`.
    fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]);
    /// Call when [`Transfer::poll_timeout`] has passed.
    fn handle_timeout(&mut self, now: Instant);
    /// Write the next datagram to send into `buf` (cleared first) and return its destination.
    fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr>;
    /// When [`Transfer::handle_timeout`] must be called next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Set once the transfer has succeeded or failed; it may still have packets to send or
    /// (a receiver) dally to answer a retransmitted last block.
    fn outcome(&self) -> Option<&Outcome>;
    /// Nothing more to send and nothing more to wait for.
    fn is_finished(&self) -> bool;
    /// End the transfer now, telling the peer why.
    fn abort(&mut self, code: ErrorCode, message: &str);
}

/// The shortest time a sender waits before it retransmits, however short the measured round
/// trip: TCP's minimum (RFC 6298 allows 1 s; Linux uses 200 ms). A device busy writing its
/// flash answers late, and a retransmission it did not need costs one datagram each way.
pub(crate) const MIN_RTO: Duration = Duration::from_millis(200);

/// RFC 6298's clock granularity term: the variance part of the timer is never below it.
const RTO_GRANULARITY: Duration = Duration::from_millis(10);

/// The round trip as a sender has measured it (RFC 6298: smoothed mean and variation, each
/// sample from a block sent once, as Karn's rule wants).
#[derive(Debug, Clone, Copy)]
struct RttEstimate {
    srtt: Duration,
    rttvar: Duration,
}

impl RttEstimate {
    fn first(sample: Duration) -> Self {
        Self {
            srtt: sample,
            rttvar: sample / 2,
        }
    }

    fn update(&mut self, sample: Duration) {
        let diff = self.srtt.abs_diff(sample);
        self.rttvar = (self.rttvar * 3 + diff) / 4;
        self.srtt = (self.srtt * 7 + sample) / 8;
    }

    fn rto(&self) -> Duration {
        self.srtt + (self.rttvar * 4).max(RTO_GRANULARITY)
    }
}

/// Retransmission timer and the queue of control packets, common to both machines.
///
/// The timer is the negotiated `timeout` until the sender has measured the round trip. After
/// that it is RFC 6298's `SRTT + 4 × RTTVAR`, at least [`MIN_RTO`] and never more than
/// `timeout`, doubled on each timeout in a row up to `timeout`: a lost datagram on a 20 ms
/// WAN link costs a fraction of a second, not the 5 s a client's `timeout 5` would. Only
/// timeouts at the full `timeout` count against `retries`, so a peer that went silent is
/// given up no sooner than before.
#[derive(Debug)]
struct Link {
    peer: SocketAddr,
    timeout: Duration,
    retries: u32,
    /// Timeouts still allowed before giving up; reset on progress.
    retries_left: u32,
    /// The measured round trip (a sender only), once there is a sample.
    rtt: Option<RttEstimate>,
    /// Timeouts in a row since the last progress: each doubles the timer, up to `timeout`.
    backoff: u32,
    /// Give up this long after the last progress, whatever the retries allow.
    max_stall: Option<Duration>,
    last_progress: Instant,
    deadline: Option<Instant>,
    control: VecDeque<(SocketAddr, Vec<u8>)>,
    outcome: Option<Outcome>,
}

impl Link {
    fn new(
        now: Instant,
        peer: SocketAddr,
        timeout: Duration,
        retries: u32,
        max_stall: Option<Duration>,
    ) -> Self {
        let retries = retries.max(1);
        let mut link = Self {
            peer,
            timeout,
            retries,
            retries_left: retries,
            rtt: None,
            backoff: 0,
            max_stall,
            last_progress: now,
            deadline: None,
            control: VecDeque::new(),
            outcome: None,
        };
        link.deadline = Some(link.next_deadline(now));
        link
    }

    /// The time to wait for an answer before sending again.
    fn rto(&self) -> Duration {
        let Some(rtt) = self.rtt else {
            return self.timeout;
        };
        let base = rtt.rto().clamp(MIN_RTO.min(self.timeout), self.timeout);
        base.saturating_mul(1 << self.backoff.min(16))
            .min(self.timeout)
    }

    /// Take a round-trip sample (from a packet sent once and answered).
    fn sample(&mut self, rtt: Duration) {
        match &mut self.rtt {
            Some(est) => est.update(rtt),
            None => self.rtt = Some(RttEstimate::first(rtt)),
        }
    }

    /// The next retransmission, or the end of the stall allowance if that comes first.
    fn next_deadline(&self, now: Instant) -> Instant {
        let retransmit = now + self.rto();
        match self.max_stall {
            Some(stall) => retransmit.min(self.last_progress + stall),
            None => retransmit,
        }
    }

    fn progress(&mut self, now: Instant) {
        self.retries_left = self.retries;
        self.backoff = 0;
        self.last_progress = now;
        self.deadline = Some(self.next_deadline(now));
    }

    /// Count a timeout; false when the retry budget or the stall allowance is spent (and the
    /// transfer has failed).
    fn timed_out(&mut self, now: Instant) -> bool {
        if let Some(stall) = self.max_stall
            && now >= self.last_progress + stall
        {
            let msg = format!("no progress for {} s; transfer abandoned", stall.as_secs());
            self.fail_with_error(
                ErrorCode::NotDefined,
                &msg,
                Failure::Stalled(stall.as_secs()),
            );
            return false;
        }
        // A timer shorter than `timeout` came from the measured round trip: back off, and
        // keep the retries for the full timeouts.
        let early = self.rto() < self.timeout;
        self.backoff = self.backoff.saturating_add(1);
        if early {
            self.deadline = Some(self.next_deadline(now));
            return true;
        }
        self.retries_left = self.retries_left.saturating_sub(1);
        if self.retries_left == 0 {
            self.fail(Failure::TimedOut(self.retries));
            return false;
        }
        self.deadline = Some(self.next_deadline(now));
        true
    }

    fn fail(&mut self, failure: Failure) {
        if self.outcome.is_none() {
            self.outcome = Some(Outcome::Failed(failure));
        }
        self.deadline = None;
    }

    /// Fail and tell the peer.
    fn fail_with_error(&mut self, code: ErrorCode, message: &str, failure: Failure) {
        if self.outcome.is_none() {
            self.control
                .push_back((self.peer, error_packet(code, message)));
        }
        self.fail(failure);
    }

    fn wrong_tid(&mut self, from: SocketAddr) {
        // A stray packet must not disturb the transfer; the sender learns it has the wrong
        // port (RFC 1350 section 4).
        self.control.push_back((
            from,
            error_packet(ErrorCode::UnknownTid, "unknown transfer ID"),
        ));
    }

    fn pop_control(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (dst, pkt) = self.control.pop_front()?;
        buf.extend_from_slice(&pkt);
        Some(dst)
    }
}

/// File data a sender reads ahead in one call when the window is smaller: a lock-step transfer
/// of 512-byte blocks then costs one read per 128 blocks instead of one per block.
pub(crate) const READ_AHEAD: usize = 64 * 1024;

/// Sends a file: the server side of a read request.
///
/// Holds at most `max(windowsize × blksize, READ_AHEAD)` bytes of the file in a ring: the
/// blocks sent and not yet acknowledged, which are what a retransmission needs, and the blocks
/// read ahead. The source is read strictly sequentially.
pub(crate) struct Sender<R> {
    source: R,
    link: Link,
    blksize: usize,
    window: u64,
    /// Blocks the ring holds: the window, or more to read ahead.
    capacity: u64,
    /// The encoded OACK while it waits for ACK 0.
    oack: Option<Vec<u8>>,
    /// First block not yet acknowledged.
    base: u64,
    /// Next block to put on the wire.
    next: u64,
    /// One past the highest block ever sent: ACKs beyond it are bogus.
    high: u64,
    /// One past the highest block read from the source.
    filled: u64,
    /// The last block (shorter than `blksize`, possibly empty), once read.
    last: Option<u64>,
    ring: Vec<u8>,
    lens: Vec<usize>,
    bytes_acked: u64,
    /// The packet being timed for a round-trip sample: a block sent for the first time (0: the
    /// OACK), with when it went out. Cleared when anything is sent again (Karn's rule).
    timing: Option<(u64, Instant)>,
    /// The latest time the driver gave (what `poll_transmit` stamps a send with).
    clock: Instant,
}

impl<R: Read> Sender<R> {
    /// Start sending to `peer`. With `oack` set, the OACK goes out first and the data waits for
    /// ACK 0; otherwise block 1 goes out at once.
    pub(crate) fn new(
        now: Instant,
        peer: SocketAddr,
        source: R,
        params: TransferParams,
        oack: Option<Vec<(String, String)>>,
    ) -> Self {
        let mut link = Link::new(now, peer, params.timeout, params.retries, params.max_stall);
        let oack = oack.map(|options| Packet::Oack { options }.to_vec());
        let oack_timing = oack.as_ref().map(|_| (0, now));
        if let Some(pkt) = &oack {
            link.control.push_back((peer, pkt.clone()));
        }
        let window = u64::from(params.windowsize.max(1));
        let blksize = usize::from(params.blksize.max(MIN_BLKSIZE));
        let capacity = window.max((READ_AHEAD / blksize) as u64);
        Self {
            source,
            link,
            blksize,
            window,
            capacity,
            oack,
            base: 1,
            next: 1,
            high: 1,
            filled: 1,
            last: None,
            ring: Vec::new(),
            lens: vec![0; capacity as usize],
            bytes_acked: 0,
            timing: oack_timing,
            clock: now,
        }
    }

    /// Payload bytes the client has acknowledged.
    pub(crate) fn bytes_acked(&self) -> u64 {
        self.bytes_acked
    }

    fn slot(&self, block: u64) -> usize {
        (block % self.capacity) as usize
    }

    /// Read the next blocks from the source into their ring slots: as many as are free and
    /// contiguous in the ring, in one read, so a window (or a read-ahead) costs one read call,
    /// not one per block.
    fn fill(&mut self) -> std::io::Result<()> {
        if self.ring.is_empty() {
            self.ring = vec![0; self.blksize * self.capacity as usize];
        }
        // poll_transmit only fills when `filled < base + window`, so at least one slot is free.
        let free = self.capacity - (self.filled - self.base);
        let slot = self.slot(self.filled);
        let count = free.min(self.capacity - slot as u64) as usize;
        let start = slot * self.blksize;
        let want = count * self.blksize;
        let buf = &mut self.ring[start..start + want];
        let mut n = 0;
        while n < want {
            match self.source.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let full = n / self.blksize;
        for len in &mut self.lens[slot..slot + full] {
            *len = self.blksize;
        }
        self.filled += full as u64;
        if n < want {
            // End of file: the last block is the partial one (empty when the file ends on a
            // block boundary).
            self.lens[slot + full] = n % self.blksize;
            self.last = Some(self.filled);
            self.filled += 1;
        }
        Ok(())
    }

    /// Take the round-trip sample when the timed packet (block `upto` or before) is answered.
    fn sample_upto(&mut self, now: Instant, upto: u64) {
        if let Some((timed, sent)) = self.timing
            && timed <= upto
        {
            self.timing = None;
            self.link.sample(now.saturating_duration_since(sent));
        }
    }

    fn on_ack(&mut self, now: Instant, block: u16) {
        if self.oack.is_some() {
            if block == 0 {
                self.oack = None;
                self.sample_upto(now, 0);
                self.link.progress(now);
            }
            return;
        }
        let acked_before = self.base - 1;
        let k = u64::from(block.wrapping_sub(acked_before as u16));
        if k == 0 || acked_before + k >= self.high {
            // A duplicate ACK, or one for a block never sent. Answering a duplicate with data
            // is the Sorcerer's Apprentice bug: every block would then travel twice, and the
            // duplicates multiply. Only a timeout resends.
            return;
        }
        let acked = acked_before + k;
        for b in self.base..=acked {
            self.bytes_acked += self.lens[self.slot(b)] as u64;
        }
        self.base = acked + 1;
        self.sample_upto(now, acked);
        self.link.progress(now);
        if self.last == Some(acked) {
            self.link.outcome = Some(Outcome::Complete {
                bytes: self.bytes_acked,
            });
            self.link.deadline = None;
            return;
        }
        if self.base < self.next {
            // The client acknowledged part of the window: it missed block `base` (RFC 7440
            // makes it ACK the last block received in order). Resend from there; the blocks
            // are still in the ring.
            self.next = self.base;
            if self.timing.is_some_and(|(timed, _)| timed >= self.base) {
                self.timing = None;
            }
        }
    }
}

impl<R: Read> Transfer for Sender<R> {
    fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.clock = self.clock.max(now);
        if from != self.link.peer {
            self.link.wrong_tid(from);
            return;
        }
        if self.link.outcome.is_some() {
            return;
        }
        match Packet::decode(datagram) {
            Ok(Packet::Ack { block }) => self.on_ack(now, block),
            Ok(Packet::Error { code, message }) => {
                let failure = if code == ErrorCode::OptionRefused.code() && self.oack.is_some() {
                    Failure::OptionsRefused
                } else {
                    Failure::Peer { code, message }
                };
                self.link.fail(failure);
            }
            Ok(other) => {
                let msg = format!("unexpected {other} during a read transfer");
                self.link.fail_with_error(
                    ErrorCode::IllegalOperation,
                    &msg,
                    Failure::Protocol(msg.clone()),
                );
            }
            Err(e) => {
                let msg = format!("malformed packet: {e}");
                self.link.fail_with_error(
                    ErrorCode::IllegalOperation,
                    &msg,
                    Failure::Protocol(msg.clone()),
                );
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self.link.deadline {
            Some(d) if now >= d && self.link.outcome.is_none() => {}
            _ => return,
        }
        self.clock = self.clock.max(now);
        if !self.link.timed_out(now) {
            return;
        }
        // Everything outstanding goes again: no answer to it can be timed (Karn's rule).
        self.timing = None;
        if let Some(pkt) = &self.oack {
            self.link.control.push_back((self.link.peer, pkt.clone()));
        } else {
            self.next = self.base;
        }
    }

    fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        buf.clear();
        if let Some(dst) = self.link.pop_control(buf) {
            return Some(dst);
        }
        if self.link.outcome.is_some() || self.oack.is_some() {
            return None;
        }
        if self.next >= self.base + self.window || self.last.is_some_and(|l| self.next > l) {
            return None;
        }
        if self.next == self.filled
            && let Err(e) = self.fill()
        {
            self.link.fail_with_error(
                ErrorCode::NotDefined,
                "server failed to read the file",
                Failure::Io(e.to_string()),
            );
            return self.link.pop_control(buf);
        }
        let slot = self.slot(self.next);
        let start = slot * self.blksize;
        put_data_header(buf, self.next as u16);
        buf.extend_from_slice(&self.ring[start..start + self.lens[slot]]);
        if self.next >= self.high && self.timing.is_none() {
            self.timing = Some((self.next, self.clock));
        }
        self.next += 1;
        self.high = self.high.max(self.next);
        Some(self.link.peer)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.link.deadline
    }

    fn outcome(&self) -> Option<&Outcome> {
        self.link.outcome.as_ref()
    }

    fn is_finished(&self) -> bool {
        self.link.outcome.is_some() && self.link.control.is_empty()
    }

    fn abort(&mut self, code: ErrorCode, message: &str) {
        self.link
            .fail_with_error(code, message, Failure::Aborted(message.to_string()));
    }
}

/// Options a client asks for in its read request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RequestedOptions {
    pub blksize: Option<u16>,
    pub windowsize: Option<u16>,
    pub tsize: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Client: the request is out, waiting for the server's first answer.
    Requesting,
    Receiving,
    /// Server side of an upload: the last block is in and its ACK waits until the driver has
    /// stored the file ([`Receiver::stored`] or [`Receiver::store_failed`]).
    Storing,
    /// The last block is in; re-acknowledge it if the peer resends it (its ACK was lost).
    Dallying,
    Done,
}

/// Receives a file: the client side of a download or the server side of a write request.
///
/// In-order payload accumulates in [`Receiver::data`]; the driver writes it out and calls
/// [`Receiver::clear_data`].
pub(crate) struct Receiver {
    link: Link,
    phase: Phase,
    blksize: usize,
    window: u64,
    requested: Option<RequestedOptions>,
    /// The packet repeated on a timeout: the request, the OACK, or the last ACK.
    last_sent: Vec<u8>,
    /// Next block expected.
    expected: u64,
    /// Blocks received in order since the last ACK.
    in_window: u64,
    /// Already answered the current run of duplicate or out-of-order blocks.
    dup_acked: bool,
    data: Vec<u8>,
    received: u64,
    limit: Option<u64>,
    tsize: Option<u64>,
    /// Server side of an upload: the final ACK tells the client its file is stored, so it
    /// waits for the driver (phase `Storing`).
    hold_final_ack: bool,
}

impl Receiver {
    /// Client side: ask `server` for `filename`. The server answers from a new port, which
    /// becomes the peer.
    pub(crate) fn download(
        now: Instant,
        server: SocketAddr,
        filename: &str,
        requested: RequestedOptions,
        timeout: Duration,
        retries: u32,
    ) -> Self {
        let mut options = Vec::new();
        if let Some(b) = requested.blksize {
            options.push(("blksize".to_string(), b.to_string()));
        }
        if let Some(w) = requested.windowsize {
            options.push(("windowsize".to_string(), w.to_string()));
        }
        if requested.tsize {
            options.push(("tsize".to_string(), "0".to_string()));
        }
        let rrq = Packet::Rrq(Request {
            filename: filename.to_string(),
            mode: Mode::Octet,
            options,
        })
        .to_vec();
        let mut link = Link::new(now, server, timeout, retries, None);
        link.control.push_back((server, rrq.clone()));
        Self {
            link,
            phase: Phase::Requesting,
            blksize: usize::from(DEFAULT_BLKSIZE),
            window: 1,
            requested: Some(requested),
            last_sent: rrq,
            expected: 1,
            in_window: 0,
            dup_acked: false,
            data: Vec::new(),
            received: 0,
            limit: None,
            tsize: None,
            hold_final_ack: false,
        }
    }

    /// Server side of a write request: acknowledge with the OACK, or ACK 0 without options.
    /// `limit` caps the upload size.
    pub(crate) fn upload(
        now: Instant,
        peer: SocketAddr,
        params: TransferParams,
        oack: Option<Vec<(String, String)>>,
        limit: Option<u64>,
    ) -> Self {
        let first = match oack {
            Some(options) => Packet::Oack { options }.to_vec(),
            None => Packet::Ack { block: 0 }.to_vec(),
        };
        let mut link = Link::new(now, peer, params.timeout, params.retries, params.max_stall);
        link.control.push_back((peer, first.clone()));
        Self {
            link,
            phase: Phase::Receiving,
            blksize: usize::from(params.blksize.max(MIN_BLKSIZE)),
            window: u64::from(params.windowsize.max(1)),
            requested: None,
            last_sent: first,
            expected: 1,
            in_window: 0,
            dup_acked: false,
            data: Vec::new(),
            received: 0,
            limit,
            tsize: None,
            hold_final_ack: true,
        }
    }

    /// Server side of an upload: every block is in and the driver must store the file, then
    /// call [`Receiver::stored`] or [`Receiver::store_failed`].
    pub fn awaiting_store(&self) -> bool {
        self.phase == Phase::Storing
    }

    /// The upload is stored under its name: send the final ACK (the client's success).
    pub fn stored(&mut self, now: Instant) {
        if self.phase != Phase::Storing {
            return;
        }
        self.send_ack(self.expected - 1);
        self.link.outcome = Some(Outcome::Complete {
            bytes: self.received,
        });
        self.phase = Phase::Dallying;
        self.link.deadline = Some(now + self.link.timeout);
    }

    /// The upload could not be stored: the client gets an ERROR instead of the final ACK.
    pub fn store_failed(&mut self, code: ErrorCode, message: &str) {
        if self.phase != Phase::Storing {
            return;
        }
        self.link
            .fail_with_error(code, message, Failure::Store(message.to_string()));
        self.phase = Phase::Done;
    }

    /// Payload received in order and not yet taken by the driver.
    pub(crate) fn data(&self) -> &[u8] {
        &self.data
    }

    pub(crate) fn clear_data(&mut self) {
        self.data.clear();
    }

    /// Payload bytes received so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// The size the server announced (client side, `tsize` option).
    pub(crate) fn tsize(&self) -> Option<u64> {
        self.tsize
    }

    /// The negotiated block size and window size.
    #[cfg(test)]
    pub(crate) fn params(&self) -> (u16, u16) {
        (self.blksize as u16, self.window as u16)
    }

    fn send_ack(&mut self, block: u64) {
        self.last_sent = Packet::Ack {
            block: block as u16,
        }
        .to_vec();
        self.link
            .control
            .push_back((self.link.peer, self.last_sent.clone()));
    }

    fn protocol_error(&mut self, msg: String) {
        self.link.fail_with_error(
            ErrorCode::IllegalOperation,
            &msg,
            Failure::Protocol(msg.clone()),
        );
        self.phase = Phase::Done;
    }

    fn peer_error(&mut self, code: u16, message: String) {
        let failure = if code == ErrorCode::OptionRefused.code() && self.requested.is_none() {
            Failure::OptionsRefused
        } else {
            Failure::Peer { code, message }
        };
        self.link.fail(failure);
        self.phase = Phase::Done;
    }

    /// Check the server's OACK against what was asked (RFC 2347: a server may only lower
    /// values, and may only acknowledge options that were requested).
    fn accept_oack(&mut self, options: &[(String, String)]) -> Result<(), String> {
        let req = self.requested.unwrap_or_default();
        for (name, value) in options {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("option {name} has a non-numeric value {value:?}"))?;
            match name.as_str() {
                "blksize" => match req.blksize {
                    Some(max) if n >= u64::from(MIN_BLKSIZE) && n <= u64::from(max) => {
                        self.blksize = n as usize
                    }
                    _ => {
                        return Err(format!(
                            "server acknowledged blksize {n}, which was not asked for"
                        ));
                    }
                },
                "windowsize" => match req.windowsize {
                    Some(max) if n >= 1 && n <= u64::from(max) => self.window = n,
                    _ => {
                        return Err(format!(
                            "server acknowledged windowsize {n}, which was not asked for"
                        ));
                    }
                },
                "tsize" if req.tsize => self.tsize = Some(n),
                _ => {
                    return Err(format!(
                        "server acknowledged option {name}, which was not asked for"
                    ));
                }
            }
        }
        Ok(())
    }

    fn on_data(&mut self, now: Instant, block: u16, payload: &[u8]) {
        if payload.len() > self.blksize {
            self.protocol_error(format!(
                "DATA block of {} bytes exceeds the block size {}",
                payload.len(),
                self.blksize
            ));
            return;
        }
        if block == self.expected as u16 {
            // A block that would pass the limit is refused whole and not counted: `received`
            // is what was kept.
            let received = self.received + payload.len() as u64;
            if let Some(limit) = self.limit.filter(|&l| received > l) {
                self.link.fail_with_error(
                    ErrorCode::DiskFull,
                    &format!("upload exceeds the limit of {limit} bytes"),
                    Failure::TooLarge(limit),
                );
                self.phase = Phase::Done;
                return;
            }
            self.received = received;
            self.data.extend_from_slice(payload);
            self.expected += 1;
            self.in_window += 1;
            self.dup_acked = false;
            self.link.progress(now);
            if payload.len() < self.blksize && self.hold_final_ack {
                self.phase = Phase::Storing;
                self.link.deadline = None;
            } else if payload.len() < self.blksize {
                self.send_ack(self.expected - 1);
                self.link.outcome = Some(Outcome::Complete {
                    bytes: self.received,
                });
                self.phase = Phase::Dallying;
                self.link.deadline = Some(now + self.link.timeout);
            } else if self.in_window >= self.window {
                self.in_window = 0;
                self.send_ack(self.expected - 1);
            }
            return;
        }
        // A block already received (our ACK was lost, or the sender restarted its window) or
        // one past a gap. Acknowledge the last block received in order once per run, so the
        // sender resumes from there; acknowledging every stray block would flood it.
        if !self.dup_acked {
            self.dup_acked = true;
            self.in_window = 0;
            self.send_ack(self.expected - 1);
        }
    }
}

impl Transfer for Receiver {
    fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if self.phase == Phase::Requesting {
            // The server answers from a new port on the address the request went to.
            if from.ip() != self.link.peer.ip() {
                self.link.wrong_tid(from);
                return;
            }
            self.link.peer = from;
            match Packet::decode(datagram) {
                Ok(Packet::Oack { options }) => match self.accept_oack(&options) {
                    Ok(()) => {
                        self.phase = Phase::Receiving;
                        self.link.progress(now);
                        self.send_ack(0);
                    }
                    Err(msg) => {
                        self.link.fail_with_error(
                            ErrorCode::OptionRefused,
                            &msg,
                            Failure::Protocol(msg.clone()),
                        );
                        self.phase = Phase::Done;
                    }
                },
                Ok(Packet::Data { block, data }) => {
                    // No OACK: the server ignored the options, so RFC 1350 defaults apply.
                    self.phase = Phase::Receiving;
                    self.on_data(now, block, data);
                }
                Ok(Packet::Error { code, message }) => self.peer_error(code, message),
                Ok(other) => {
                    self.protocol_error(format!("unexpected {other} in answer to a read request"))
                }
                Err(e) => self.protocol_error(format!("malformed packet: {e}")),
            }
            return;
        }
        if from != self.link.peer {
            self.link.wrong_tid(from);
            return;
        }
        match (self.phase, Packet::decode(datagram)) {
            (Phase::Receiving, Ok(Packet::Data { block, data })) => self.on_data(now, block, data),
            (Phase::Receiving, Ok(Packet::Oack { .. }))
                if self.expected == 1 && self.requested.is_some() =>
            {
                // Our ACK 0 was lost and the server repeated its OACK after a timeout.
                self.send_ack(0);
            }
            (Phase::Receiving, Ok(Packet::Error { code, message })) => {
                self.peer_error(code, message)
            }
            (Phase::Receiving, Ok(other)) => {
                self.protocol_error(format!("unexpected {other} during a transfer"))
            }
            (Phase::Receiving, Err(e)) => self.protocol_error(format!("malformed packet: {e}")),
            (Phase::Dallying, Ok(Packet::Data { block, .. }))
                if block == (self.expected - 1) as u16 =>
            {
                self.link
                    .control
                    .push_back((self.link.peer, self.last_sent.clone()));
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self.link.deadline {
            Some(d) if now >= d => {}
            _ => return,
        }
        if self.phase == Phase::Dallying {
            self.phase = Phase::Done;
            self.link.deadline = None;
            return;
        }
        if self.link.outcome.is_some() || !self.link.timed_out(now) {
            self.phase = Phase::Done;
            return;
        }
        // RFC 7440: on a timeout the receiver acknowledges the last block received in order,
        // which restarts the sender's window from there.
        self.in_window = 0;
        self.dup_acked = false;
        self.link
            .control
            .push_back((self.link.peer, self.last_sent.clone()));
    }

    fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        buf.clear();
        self.link.pop_control(buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.link.deadline
    }

    fn outcome(&self) -> Option<&Outcome> {
        self.link.outcome.as_ref()
    }

    fn is_finished(&self) -> bool {
        self.phase == Phase::Done && self.link.control.is_empty()
    }

    fn abort(&mut self, code: ErrorCode, message: &str) {
        if self.link.outcome.is_none() {
            self.link
                .fail_with_error(code, message, Failure::Aborted(message.to_string()));
        }
        self.phase = Phase::Done;
        self.link.deadline = None;
    }
}

#[cfg(test)]
mod tests;
