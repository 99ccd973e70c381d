//! TFTP: the packet decoder (with option negotiation and netascii), and the transfer state
//! machines fed arbitrary datagram sequences.

use std::io::{Cursor, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Script;
use crate::tftp::netascii::{NetasciiDecoder, NetasciiEncoder};
use crate::tftp::packet::{
    ErrorCode, MAX_BLKSIZE, MAX_OPTIONS, MAX_REQUEST_LEN, MIN_BLKSIZE, Mode, Packet, Request,
    error_packet,
};
use crate::tftp::session::{
    Failure, Limits, Negotiated, Outcome, Receiver, RequestedOptions, Sender, Transfer, negotiate,
};

pub(super) const TOKENS: &[&[u8]] = &[
    b"\x00\x01",
    b"\x00\x02",
    b"\x00\x03",
    b"\x00\x04",
    b"\x00\x05",
    b"\x00\x06",
    b"octet\x00",
    b"netascii\x00",
    b"blksize\x00",
    b"windowsize\x00",
    b"timeout\x00",
    b"tsize\x00",
    b"1468\x00",
    b"65464\x00",
    b"0\x00",
    b"\x00",
    b"../",
];

/// Decode a datagram. A packet re-encodes to bytes that decode to the same packet (the
/// encoding is canonical: lower-case mode and option names, no padding), and bounds hold:
/// requests within RFC 2347's 512 bytes and [`MAX_OPTIONS`], no duplicate options, no NUL in
/// an error message. Every request's negotiation stays within the server's limits, and
/// netascii conversion of the bytes round-trips.
pub fn tftp_packet(data: &[u8]) {
    match Packet::decode(data) {
        Ok(p) => {
            let encoded = p.to_vec();
            let again = Packet::decode(&encoded)
                .unwrap_or_else(|e| panic!("{p} re-encodes to undecodable bytes: {e}"));
            assert_eq!(again, p, "decode(encode(p)) != p");
            assert_eq!(again.to_vec(), encoded, "encoding is not canonical");
            let _ = p.to_string();
            match &p {
                Packet::Rrq(r) | Packet::Wrq(r) => {
                    assert!(data.len() <= MAX_REQUEST_LEN, "request above 512 bytes");
                    check_request(r);
                    for limits in [limits_default(), limits_tight()] {
                        check_negotiation(r, matches!(p, Packet::Wrq(_)), &limits);
                    }
                }
                Packet::Data { data: payload, .. } => {
                    assert_eq!(payload.len(), data.len() - 4, "DATA payload length");
                }
                Packet::Error { message, .. } => {
                    assert!(!message.contains('\0'), "NUL inside an error message");
                }
                Packet::Oack { options } => check_options(options),
                Packet::Ack { .. } => {}
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty(), "empty decode error");
            if data.len() >= 4 {
                let opcode = u16::from_be_bytes([data[0], data[1]]);
                assert!(
                    !(3..=5).contains(&opcode),
                    "DATA/ACK/ERROR of {} bytes refused: {e}",
                    data.len()
                );
            }
        }
    }
    // An error packet built from any text decodes to that text, less its NULs.
    let text = String::from_utf8_lossy(data);
    match Packet::decode(&error_packet(ErrorCode::AccessViolation, &text)) {
        Ok(Packet::Error { code: 2, message }) => assert_eq!(message, text.replace('\0', " ")),
        other => panic!("error_packet does not decode to itself: {other:?}"),
    }
    check_netascii(data);
}

fn check_request(r: &Request) {
    assert!(!r.filename.is_empty(), "empty file name accepted");
    check_options(&r.options);
}

fn check_options(options: &[(String, String)]) {
    assert!(
        options.len() <= MAX_OPTIONS,
        "more than MAX_OPTIONS options"
    );
    for (i, (name, _)) in options.iter().enumerate() {
        assert_eq!(
            *name,
            name.to_ascii_lowercase(),
            "option name not lower-cased"
        );
        assert!(
            !options[..i].iter().any(|(n, _)| n == name),
            "duplicate option {name}"
        );
    }
}

fn limits_default() -> Limits {
    Limits {
        max_blksize: MAX_BLKSIZE,
        max_windowsize: 64,
        max_window_bytes: 65536,
        timeout: Duration::from_secs(1),
        retries: 5,
        max_stall: Duration::from_secs(30),
    }
}

fn limits_tight() -> Limits {
    Limits {
        max_blksize: 512,
        max_windowsize: 4,
        max_window_bytes: 1024,
        timeout: Duration::from_millis(500),
        retries: 2,
        max_stall: Duration::from_secs(3),
    }
}

/// What the server grants stays within its limits and within what was asked; the OACK names
/// only requested options, each once, with the granted values.
fn check_negotiation(req: &Request, write: bool, limits: &Limits) -> Negotiated {
    let file_size = Some(123_456);
    let n = negotiate(req, write, file_size, limits);
    let p = n.params;
    assert!(p.blksize >= MIN_BLKSIZE, "blksize {} below 8", p.blksize);
    assert!(p.windowsize >= 1, "windowsize 0");
    assert!(
        p.windowsize <= limits.max_windowsize.max(1),
        "windowsize {} above the limit",
        p.windowsize
    );
    assert!(
        p.windowsize == 1
            || usize::from(p.windowsize) * usize::from(p.blksize) <= limits.max_window_bytes,
        "window of {} x {} bytes above max_window_bytes",
        p.windowsize,
        p.blksize
    );
    assert!(
        p.timeout == limits.timeout || (1..=255).contains(&p.timeout.as_secs()),
        "timeout {:?} out of range",
        p.timeout
    );
    assert_eq!(
        p.max_stall,
        Some(limits.max_stall),
        "stall limit not applied"
    );
    if let Some(oack) = &n.oack {
        assert!(!oack.is_empty(), "empty OACK");
        check_options(oack);
        for (name, value) in oack {
            assert!(
                req.options.iter().any(|(n, _)| n == name),
                "OACK names {name}, which was not asked for"
            );
            let v: u64 = value
                .parse()
                .unwrap_or_else(|_| panic!("OACK value {value:?} is not a number"));
            match name.as_str() {
                "blksize" => {
                    assert_eq!(v, u64::from(p.blksize));
                    assert!(v <= u64::from(limits.max_blksize.max(MIN_BLKSIZE)));
                }
                "windowsize" => assert_eq!(v, u64::from(p.windowsize)),
                "timeout" => assert_eq!(v, p.timeout.as_secs()),
                "tsize" if !write => assert_eq!(Some(v), file_size),
                "tsize" => assert_eq!(Some(v), n.announced_size),
                other => panic!("OACK acknowledges unknown option {other}"),
            }
        }
        let encoded = Packet::Oack {
            options: oack.clone(),
        }
        .to_vec();
        assert!(encoded.len() <= MAX_REQUEST_LEN, "OACK above 512 bytes");
    } else {
        assert_eq!(p.blksize, 512, "blksize changed without an OACK");
        assert_eq!(p.windowsize, 1, "windowsize changed without an OACK");
    }
    if !write {
        assert_eq!(n.announced_size, None, "a read request announced a size");
    }
    n
}

fn check_netascii(data: &[u8]) {
    let mut wire = Vec::new();
    NetasciiEncoder::new(data)
        .read_to_end(&mut wire)
        .expect("reading from a slice");
    assert!(
        !wire
            .windows(2)
            .any(|w| w[0] == b'\r' && w[1] != b'\n' && w[1] != 0),
        "netascii: CR followed by neither LF nor NUL"
    );
    let split = if wire.is_empty() {
        0
    } else {
        usize::from(data[0]) % wire.len()
    };
    let mut dec = NetasciiDecoder::default();
    let mut back = Vec::new();
    dec.decode(&wire[..split], &mut back);
    dec.decode(&wire[split..], &mut back);
    dec.finish(&mut back);
    assert_eq!(back, data, "netascii does not round-trip");
}

const CLIENT: &str = "192.0.2.10:40000";
const STRAY: &str = "192.0.2.66:40001";
const SERVER: &str = "192.0.2.1:69";
const SERVER_TID: &str = "192.0.2.1:50000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("constant address")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The server side of a read request: a [`Sender`].
    ServeRead,
    /// The server side of a write request: a [`Receiver`] that holds the final ACK.
    ServeWrite,
    /// A client download: a [`Receiver`] that sent an RRQ.
    Download,
}

enum Machine {
    Sender(Sender<Cursor<Vec<u8>>>),
    Receiver(Receiver),
}

impl Machine {
    fn t(&mut self) -> &mut dyn Transfer {
        match self {
            Machine::Sender(s) => s,
            Machine::Receiver(r) => r,
        }
    }
}

/// Feed a transfer state machine an arbitrary sequence of datagrams, timeouts and driver
/// actions, as a hostile or broken peer would. The input is a script: a role, the server's
/// limits, the request, then events. Invariants:
///
/// - every datagram sent decodes, and goes to the peer (or, as "unknown transfer ID", to a
///   stray sender);
/// - a sender's DATA blocks carry exactly the file's bytes at their offsets, never more than
///   the block size, never before the OACK is acknowledged, and never in answer to an ACK that
///   acknowledges nothing new (the Sorcerer's Apprentice bug); it completes only once every
///   byte is acknowledged;
/// - an upload never exceeds its limit, hands over exactly the bytes it counted, and sends no
///   ACK while it waits for the file to be stored: the client's success is the stored file;
/// - a server transfer that hears nothing from its peer for `max_stall` has ended, whatever
///   timeout the client negotiated; a finished transfer has no timer left.
pub fn tftp_session(data: &[u8]) {
    let mut s = Script::new(data);
    let role = match s.byte() % 3 {
        0 => Role::ServeRead,
        1 => Role::ServeWrite,
        _ => Role::Download,
    };
    let limits = Limits {
        max_blksize: MIN_BLKSIZE + s.u16() % 2048,
        max_windowsize: 1 + u16::from(s.byte() % 16),
        max_window_bytes: 64 + usize::from(s.u16() % 8192),
        timeout: Duration::from_millis(100 + 100 * u64::from(s.byte() % 20)),
        retries: 1 + u32::from(s.byte() % 6),
        max_stall: Duration::from_secs(1 + u64::from(s.byte() % 60)),
    };
    let start = Instant::now();
    let mut now = start;
    let peer = match role {
        Role::Download => addr(SERVER_TID),
        _ => addr(CLIENT),
    };
    let request = s.chunk();
    let req = match Packet::decode(request) {
        Ok(Packet::Rrq(r) | Packet::Wrq(r)) => r,
        _ => Request {
            filename: "f.bin".into(),
            mode: Mode::Octet,
            options: Vec::new(),
        },
    };
    let content_len = usize::from(s.u16());
    let mut content = Vec::new();
    let blksize;
    let mut oack_pending = false;
    let mut upload_limit = None;
    let mut machine = match role {
        Role::ServeRead => {
            content = crate::images::pseudo_random_bytes(content_len, content_len as u64);
            let n = check_negotiation(&req, false, &limits);
            blksize = usize::from(n.params.blksize);
            oack_pending = n.oack.is_some();
            Machine::Sender(Sender::new(
                now,
                addr(CLIENT),
                Cursor::new(content.clone()),
                n.params,
                n.oack,
            ))
        }
        Role::ServeWrite => {
            let n = check_negotiation(&req, true, &limits);
            blksize = usize::from(n.params.blksize);
            upload_limit = Some(content_len as u64);
            Machine::Receiver(Receiver::upload(
                now,
                addr(CLIENT),
                n.params,
                n.oack,
                upload_limit,
            ))
        }
        Role::Download => {
            let b = s.u16();
            let w = s.byte();
            let requested = RequestedOptions {
                blksize: (b != 0).then_some(b.max(MIN_BLKSIZE)),
                windowsize: (w != 0).then_some(u16::from(w)),
                tsize: s.byte() % 2 == 1,
            };
            blksize = usize::from(requested.blksize.unwrap_or(512)).max(512);
            Machine::Receiver(Receiver::download(
                now,
                addr(SERVER),
                "f.bin",
                requested,
                limits.timeout,
                limits.retries,
            ))
        }
    };
    let mut out = Vec::new();
    // The peer's last word: the stall limit counts from here.
    let mut quiet_since = now;
    let mut taken: u64 = 0;
    let mut drained = drain(&mut machine, &mut out, peer);
    check_first(role, &decoded(&drained));
    for _ in 0..4096 {
        if s.is_empty() {
            break;
        }
        let awaiting_store = matches!(&machine, Machine::Receiver(r) if r.awaiting_store());
        let oack_was_pending = oack_pending;
        let acked_before = match &machine {
            Machine::Sender(s) => s.bytes_acked(),
            Machine::Receiver(_) => 0,
        };
        let mut ack_event = false;
        let mut stored_now = false;
        let mut timeout_event = false;
        match s.byte() % 8 {
            0 => {
                now = machine
                    .t()
                    .poll_timeout()
                    .unwrap_or(now + Duration::from_secs(1));
                machine.t().handle_timeout(now);
                timeout_event = true;
            }
            1 => {
                now += Duration::from_millis(100 * u64::from(s.byte()));
                machine.t().handle_timeout(now);
                timeout_event = true;
            }
            2..=4 => {
                let d = s.long_chunk();
                if let Ok(Packet::Ack { .. }) = Packet::decode(d) {
                    ack_event = true;
                }
                if oack_pending && matches!(Packet::decode(d), Ok(Packet::Ack { block: 0 })) {
                    oack_pending = false;
                }
                quiet_since = now;
                machine.t().handle(now, peer, d);
            }
            5 => {
                let d = structured(&mut s, blksize, &decoded(&drained));
                if let Ok(Packet::Ack { .. }) = Packet::decode(&d) {
                    ack_event = true;
                }
                if oack_pending && matches!(Packet::decode(&d), Ok(Packet::Ack { block: 0 })) {
                    oack_pending = false;
                }
                quiet_since = now;
                machine.t().handle(now, peer, &d);
            }
            6 => {
                let d = s.chunk();
                machine.t().handle(now, addr(STRAY), d);
            }
            _ => match &mut machine {
                Machine::Receiver(r) if r.awaiting_store() => {
                    if s.byte().is_multiple_of(4) {
                        r.store_failed(ErrorCode::DiskFull, "disk full");
                    } else {
                        r.stored(now);
                        stored_now = true;
                        quiet_since = now;
                    }
                }
                m => {
                    if s.byte() == 0xff {
                        m.t().abort(ErrorCode::NotDefined, "shutting down");
                    }
                }
            },
        }
        drained = drain(&mut machine, &mut out, peer);
        let packets = decoded(&drained);
        let datas = packets
            .iter()
            .filter(|p| matches!(p, Packet::Data { .. }))
            .count();
        let acks = packets
            .iter()
            .filter(|p| matches!(p, Packet::Ack { .. }))
            .count();
        if let Machine::Receiver(r) = &mut machine {
            // The driver takes the data out after each event, as the server does.
            taken += r.data().len() as u64;
            r.clear_data();
            assert_eq!(taken, r.received(), "data handed over != bytes received");
            if let Some(limit) = upload_limit {
                assert!(r.received() <= limit, "upload above its limit");
            }
            if awaiting_store && !stored_now {
                assert_eq!(acks, 0, "ACK sent before the upload was stored");
            }
            if r.awaiting_store() {
                assert!(
                    r.outcome().is_none(),
                    "upload complete before it was stored"
                );
            }
        }
        if let Machine::Sender(snd) = &machine {
            if ack_event && snd.bytes_acked() == acked_before && !oack_was_pending {
                assert_eq!(
                    datas, 0,
                    "DATA sent in answer to an ACK that acknowledged nothing"
                );
            }
            if let Some(Outcome::Complete { bytes }) = snd.outcome() {
                assert_eq!(*bytes, content.len() as u64, "complete before every byte");
            }
        }
        for p in &packets {
            if let Packet::Data { block, data } = p {
                assert!(data.len() <= blksize, "DATA above the block size");
                if role == Role::ServeRead {
                    assert!(!oack_pending, "DATA before the OACK was acknowledged");
                    let at = (usize::from(*block).max(1) - 1) * blksize;
                    assert!(at <= content.len(), "DATA block {block} beyond the file");
                    let end = (at + blksize).min(content.len());
                    assert_eq!(*data, &content[at..end], "DATA {block} carries other bytes");
                }
            }
        }
        assert!(
            drained.len() <= usize::from(limits.max_windowsize) + 4,
            "{} datagrams in answer to one event",
            drained.len()
        );
        let t = machine.t();
        if t.is_finished() {
            assert_eq!(
                t.poll_timeout(),
                None,
                "a finished transfer still has a timer"
            );
        }
        if timeout_event
            && role != Role::Download
            && t.outcome().is_none()
            && !awaiting_store
            && !stored_now
            && now >= quiet_since + limits.max_stall
        {
            panic!(
                "transfer alive {:?} after the peer's last word (max_stall {:?})",
                now - quiet_since,
                limits.max_stall
            );
        }
        if let Some(Outcome::Failed(Failure::Store(_))) = t.outcome() {
            assert!(!matches!(role, Role::ServeRead | Role::Download));
        }
    }
}

/// The datagrams the machine wants to send now, decoded and checked for their destination.
fn drain(machine: &mut Machine, buf: &mut Vec<u8>, peer: SocketAddr) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    while let Some(dst) = machine.t().poll_transmit(buf) {
        let p = Packet::decode(buf)
            .unwrap_or_else(|e| panic!("sent an undecodable datagram: {e}: {buf:?}"));
        if dst != peer && !(matches!(machine, Machine::Receiver(_)) && dst == addr(SERVER)) {
            assert_eq!(dst, addr(STRAY), "datagram to an address nobody used");
            assert!(
                matches!(p, Packet::Error { code: 5, .. }),
                "a stray sender got {p} instead of 'unknown transfer ID'"
            );
        }
        sent.push(buf.clone());
        assert!(sent.len() < 10_000, "poll_transmit never ends");
    }
    sent
}

/// Datagrams [`drain`] already checked to decode.
fn decoded(sent: &[Vec<u8>]) -> Vec<Packet<'_>> {
    sent.iter().filter_map(|d| Packet::decode(d).ok()).collect()
}

fn check_first(role: Role, first: &[Packet<'_>]) {
    match role {
        Role::Download => assert!(matches!(first, [Packet::Rrq(_)]), "{first:?}"),
        Role::ServeWrite => assert!(
            matches!(first, [Packet::Oack { .. }] | [Packet::Ack { block: 0 }]),
            "{first:?}"
        ),
        Role::ServeRead => assert!(
            matches!(
                first,
                [Packet::Oack { .. }] | [Packet::Data { block: 1, .. }, ..]
            ),
            "{first:?}"
        ),
    }
}

/// A well-formed packet near what the machine expects: an ACK or DATA for a block close to
/// the last one it sent, an ERROR, or an OACK.
fn structured(s: &mut Script<'_>, blksize: usize, last: &[Packet<'_>]) -> Vec<u8> {
    let near = last
        .iter()
        .rev()
        .find_map(|p| match p {
            Packet::Data { block, .. } | Packet::Ack { block } => Some(*block),
            _ => None,
        })
        .unwrap_or(0);
    let block = near.wrapping_add(u16::from(s.byte() % 8)).wrapping_sub(3);
    match s.byte() % 6 {
        0 | 1 => Packet::Ack { block }.to_vec(),
        2 | 3 => {
            let len = match s.byte() % 4 {
                0 => blksize,
                1 => blksize + 1,
                _ => usize::from(s.byte()).min(blksize),
            };
            let payload = vec![0x5a; len];
            Packet::Data {
                block: block.wrapping_add(1),
                data: &payload,
            }
            .to_vec()
        }
        4 => Packet::Error {
            code: u16::from(s.byte() % 9),
            message: "peer error".into(),
        }
        .to_vec(),
        _ => {
            let mut options = Vec::new();
            for (name, value) in [
                ("blksize", s.u16()),
                ("windowsize", u16::from(s.byte())),
                ("tsize", s.u16()),
            ] {
                if value % 3 != 0 {
                    options.push((name.to_string(), value.to_string()));
                }
            }
            Packet::Oack { options }.to_vec()
        }
    }
}
