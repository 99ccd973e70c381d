//! State-machine tests: a client [`Receiver`] and a server [`Sender`] wired through in-memory
//! queues, with a fake clock and a filter that drops, duplicates or injects packets.

use std::collections::VecDeque;
use std::io::Cursor;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

const CLIENT: &str = "127.0.0.2:40000";
const SERVER: &str = "127.0.0.1:69";
const SERVER_TID: &str = "127.0.0.1:50000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn limits() -> Limits {
    Limits {
        max_blksize: MAX_BLKSIZE,
        max_windowsize: 64,
        max_window_bytes: 1 << 20,
        timeout: Duration::from_secs(1),
        retries: 5,
        max_stall: Duration::from_secs(30),
    }
}

fn file(len: usize) -> Vec<u8> {
    crate::images::pseudo_random_bytes(len, len as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

/// What the filter decides for one datagram.
enum Fate {
    Deliver,
    Drop,
    Duplicate,
}

struct Pair {
    now: Instant,
    start: Instant,
    client: Receiver,
    server: Option<Sender<Cursor<Vec<u8>>>>,
    content: Vec<u8>,
    limits: Limits,
    got: Vec<u8>,
    in_flight: VecDeque<(Dir, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Every DATA block number the server put on the wire, in order.
    data_sent: Vec<u16>,
    /// Length of each DATA payload sent, parallel to `data_sent`.
    data_lens: Vec<usize>,
    acks_sent: Vec<u16>,
    /// Datagrams the server sent to addresses other than the client.
    strays: Vec<(SocketAddr, Vec<u8>)>,
    oack_seen: Option<Vec<(String, String)>>,
    /// When the client had the whole file.
    done_at: Option<Instant>,
}

impl Pair {
    fn new(content: Vec<u8>, requested: RequestedOptions, limits: Limits) -> Self {
        let now = Instant::now();
        Pair {
            now,
            start: now,
            client: Receiver::download(
                now,
                addr(SERVER),
                "image.bin",
                requested,
                Duration::from_secs(1),
                5,
            ),
            server: None,
            content,
            limits,
            got: Vec::new(),
            in_flight: VecDeque::new(),
            data_sent: Vec::new(),
            data_lens: Vec::new(),
            acks_sent: Vec::new(),
            strays: Vec::new(),
            oack_seen: None,
            done_at: None,
        }
    }

    fn server(&mut self) -> &mut Sender<Cursor<Vec<u8>>> {
        self.server.as_mut().unwrap()
    }

    fn collect(&mut self) {
        let mut buf = Vec::new();
        while let Some(dst) = self.client.poll_transmit(&mut buf) {
            if let Ok(Packet::Ack { block }) = Packet::decode(&buf) {
                self.acks_sent.push(block);
            }
            self.in_flight
                .push_back((Dir::ToServer, addr(CLIENT), dst, buf.clone()));
        }
        if self.done_at.is_none() && self.client.outcome().is_some() {
            self.done_at = Some(self.now);
        }
        self.got.extend_from_slice(self.client.data());
        self.client.clear_data();
        if let Some(server) = self.server.as_mut() {
            while let Some(dst) = server.poll_transmit(&mut buf) {
                if dst != addr(CLIENT) {
                    self.strays.push((dst, buf.clone()));
                    continue;
                }
                match Packet::decode(&buf) {
                    Ok(Packet::Data { block, data }) => {
                        self.data_sent.push(block);
                        self.data_lens.push(data.len());
                    }
                    Ok(Packet::Oack { options }) => self.oack_seen = Some(options),
                    _ => {}
                }
                self.in_flight
                    .push_back((Dir::ToClient, addr(SERVER_TID), dst, buf.clone()));
            }
        }
    }

    fn deliver(&mut self, dir: Dir, from: SocketAddr, dst: SocketAddr, pkt: &[u8]) {
        match dir {
            Dir::ToClient => self.client.handle(self.now, from, pkt),
            Dir::ToServer if dst == addr(SERVER) => {
                // The request reaches the server's well-known port: start the transfer.
                let Ok(Packet::Rrq(req)) = Packet::decode(pkt) else {
                    panic!("expected a read request on the server port");
                };
                if self.server.is_some() {
                    return;
                }
                let n = negotiate(&req, false, Some(self.content.len() as u64), &self.limits);
                self.server = Some(Sender::new(
                    self.now,
                    from,
                    Cursor::new(self.content.clone()),
                    n.params,
                    n.oack,
                ));
            }
            Dir::ToServer => {
                let now = self.now;
                self.server().handle(now, from, pkt)
            }
        }
    }

    /// Run until both ends are finished; `filter` sees every datagram.
    fn run(&mut self, mut filter: impl FnMut(Dir, &Packet<'_>) -> Fate) {
        for _ in 0..10_000_000 {
            self.collect();
            if let Some((dir, from, dst, pkt)) = self.in_flight.pop_front() {
                let decoded = Packet::decode(&pkt).unwrap();
                match filter(dir, &decoded) {
                    Fate::Deliver => self.deliver(dir, from, dst, &pkt),
                    Fate::Drop => {}
                    Fate::Duplicate => {
                        self.deliver(dir, from, dst, &pkt);
                        self.deliver(dir, from, dst, &pkt);
                    }
                }
                continue;
            }
            let client_done = self.client.is_finished();
            let server_done = self.server.as_ref().is_none_or(|s| s.is_finished());
            if client_done && server_done {
                return;
            }
            // Nothing in flight: jump the clock to the next timer.
            let next = [
                self.client.poll_timeout(),
                self.server.as_ref().and_then(|s| s.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { return };
            self.now = self.now.max(next);
            let now = self.now;
            self.client.handle_timeout(now);
            if let Some(s) = self.server.as_mut() {
                s.handle_timeout(now);
            }
        }
        panic!("transfer did not settle");
    }

    fn assert_complete(&self) {
        assert_eq!(
            self.client.outcome(),
            Some(&Outcome::Complete {
                bytes: self.content.len() as u64
            })
        );
        let server = self.server.as_ref().unwrap();
        assert_eq!(
            server.outcome(),
            Some(&Outcome::Complete {
                bytes: self.content.len() as u64
            })
        );
        assert_eq!(server.bytes_acked(), self.content.len() as u64);
        assert!(
            self.got == self.content,
            "received bytes differ from the file"
        );
    }

    /// Run with the first DATA of `block` lost on its way to the client.
    fn run_losing_data_once(&mut self, block: u16) {
        let mut dropped = false;
        self.run(|dir, pkt| match (dir, pkt) {
            (Dir::ToClient, Packet::Data { block: b, .. }) if *b == block && !dropped => {
                dropped = true;
                Fate::Drop
            }
            _ => Fate::Deliver,
        });
    }

    fn sends_of(&self, block: u16) -> usize {
        self.data_sent.iter().filter(|&&b| b == block).count()
    }
}

fn plain() -> RequestedOptions {
    RequestedOptions::default()
}

#[test]
fn plain_transfer_without_options() {
    let mut p = Pair::new(file(5000), plain(), limits());
    p.run(|_, _| Fate::Deliver);
    p.assert_complete();
    assert_eq!(p.oack_seen, None, "no OACK when no option was asked");
    assert_eq!(p.data_sent, (1..=10).collect::<Vec<u16>>());
    assert_eq!(p.data_lens.last(), Some(&(5000 - 9 * 512)));
}

#[test]
fn last_block_exactly_blksize_ends_with_empty_data() {
    let mut p = Pair::new(file(3 * 512), plain(), limits());
    p.run(|_, _| Fate::Deliver);
    p.assert_complete();
    assert_eq!(p.data_sent, vec![1, 2, 3, 4]);
    assert_eq!(p.data_lens, vec![512, 512, 512, 0]);
}

#[test]
fn empty_file_is_one_empty_block() {
    let mut p = Pair::new(Vec::new(), plain(), limits());
    p.run(|_, _| Fate::Deliver);
    p.assert_complete();
    assert_eq!(p.data_lens, vec![0]);
}

#[test]
fn lost_data_is_resent_after_timeout() {
    let mut p = Pair::new(file(512 * 6 + 10), plain(), limits());
    p.run_losing_data_once(3);
    p.assert_complete();
    assert_eq!(p.sends_of(3), 2);
    assert_eq!(p.data_sent.len(), 8, "only the lost block travels twice");
}

#[test]
fn lost_ack_is_recovered_by_retransmission() {
    let mut p = Pair::new(file(512 * 6 + 10), plain(), limits());
    let mut dropped = false;
    p.run(|dir, pkt| match (dir, pkt) {
        (Dir::ToServer, Packet::Ack { block: 2 }) if !dropped => {
            dropped = true;
            Fate::Drop
        }
        _ => Fate::Deliver,
    });
    p.assert_complete();
    assert_eq!(p.sends_of(2), 2);
    assert_eq!(p.sends_of(3), 1);
}

#[test]
fn duplicate_acks_never_trigger_data_sorcerers_apprentice() {
    let mut p = Pair::new(file(512 * 40 + 1), plain(), limits());
    p.run(|dir, _| match dir {
        Dir::ToServer => Fate::Duplicate,
        Dir::ToClient => Fate::Deliver,
    });
    p.assert_complete();
    assert_eq!(
        p.data_sent,
        (1..=41).collect::<Vec<u16>>(),
        "every block exactly once"
    );
}

#[test]
fn duplicated_data_is_acknowledged_once_per_run() {
    let mut p = Pair::new(file(512 * 10 + 3), plain(), limits());
    p.run(|dir, _| match dir {
        Dir::ToClient => Fate::Duplicate,
        Dir::ToServer => Fate::Deliver,
    });
    p.assert_complete();
    assert_eq!(
        p.data_sent.len(),
        11,
        "duplicated DATA must not make the server resend"
    );
}

#[test]
fn out_of_order_ack_in_window_restarts_from_the_gap() {
    let req = RequestedOptions {
        blksize: Some(512),
        windowsize: Some(4),
        tsize: false,
    };
    let mut p = Pair::new(file(512 * 20 + 7), req, limits());
    let mut dropped = false;
    p.run(|dir, pkt| match (dir, pkt) {
        (Dir::ToClient, Packet::Data { block: 6, .. }) if !dropped => {
            dropped = true;
            Fate::Drop
        }
        _ => Fate::Deliver,
    });
    p.assert_complete();
    // Window 5..8 loses 6; the client acknowledges 5 at once, the server resends from 6
    // without waiting for a timeout.
    assert!(p.acks_sent.contains(&5));
    assert_eq!(p.sends_of(6), 2);
    assert_eq!(p.done_at, Some(p.start), "no timeout was needed");
    assert!(
        p.data_sent.len() <= 21 + 4,
        "at most one window resent, got {}",
        p.data_sent.len()
    );
}

#[test]
fn partial_ack_resends_from_the_first_unacknowledged_block() {
    let now = Instant::now();
    let params = TransferParams {
        blksize: 8,
        windowsize: 4,
        ..TransferParams::default()
    };
    let mut s = Sender::new(now, addr(CLIENT), Cursor::new(file(100)), params, None);
    let mut buf = Vec::new();
    let mut sent = Vec::new();
    while s.poll_transmit(&mut buf).is_some() {
        if let Ok(Packet::Data { block, .. }) = Packet::decode(&buf) {
            sent.push(block);
        }
    }
    assert_eq!(sent, vec![1, 2, 3, 4]);
    s.handle(now, addr(CLIENT), &Packet::Ack { block: 2 }.to_vec());
    sent.clear();
    while s.poll_transmit(&mut buf).is_some() {
        if let Ok(Packet::Data { block, .. }) = Packet::decode(&buf) {
            sent.push(block);
        }
    }
    assert_eq!(sent, vec![3, 4, 5, 6]);
    // The same ACK again (the client saw more out-of-order blocks) changes nothing.
    s.handle(now, addr(CLIENT), &Packet::Ack { block: 2 }.to_vec());
    assert!(s.poll_transmit(&mut buf).is_none());
    assert_eq!(s.bytes_acked(), 16);
}

#[test]
fn window_survives_heavy_loss() {
    let req = RequestedOptions {
        blksize: Some(1024),
        windowsize: Some(16),
        tsize: true,
    };
    let mut p = Pair::new(file(1024 * 300 + 5), req, limits());
    let mut n = 0u32;
    // Drop every 7th DATA and every 5th ACK.
    let mut acks = 0u32;
    p.run(|dir, pkt| match (dir, pkt) {
        (Dir::ToClient, Packet::Data { .. }) => {
            n += 1;
            if n.is_multiple_of(7) {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        }
        (Dir::ToServer, Packet::Ack { .. }) => {
            acks += 1;
            if acks.is_multiple_of(5) {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        }
        _ => Fate::Deliver,
    });
    p.assert_complete();
}

fn rollover(windowsize: Option<u16>) {
    // 70000 blocks of 8 bytes: block numbers pass 65535 and wrap to 0.
    let req = RequestedOptions {
        blksize: Some(8),
        windowsize,
        tsize: false,
    };
    let mut p = Pair::new(file(8 * 70_000 + 3), req, limits());
    p.run(|_, _| Fate::Deliver);
    p.assert_complete();
    let pos = p.data_sent.iter().position(|&b| b == 65535).unwrap();
    assert_eq!(p.data_sent[pos + 1], 0, "block after 65535 is 0");
    assert_eq!(p.data_sent[pos + 2], 1);
    assert_eq!(p.data_sent.len(), 70_001);
}

#[test]
fn block_number_rollover_lockstep() {
    rollover(None);
}

#[test]
fn block_number_rollover_windowed() {
    rollover(Some(16));
}

#[test]
fn loss_across_rollover_is_recovered() {
    let req = RequestedOptions {
        blksize: Some(8),
        windowsize: Some(8),
        tsize: false,
    };
    let mut p = Pair::new(file(8 * 66_000), req, limits());
    let mut dropped = 0;
    p.run(|dir, pkt| match (dir, pkt) {
        (
            Dir::ToClient,
            Packet::Data {
                block: 0 | 65535, ..
            },
        ) if dropped < 2 => {
            dropped += 1;
            Fate::Drop
        }
        _ => Fate::Deliver,
    });
    p.assert_complete();
}

#[test]
fn client_error_mid_transfer_ends_server_at_once() {
    let mut p2 = Pair::new(file(512 * 10), plain(), limits());
    p2.collect();
    let (_, from, dst, rrq) = p2.in_flight.pop_front().unwrap();
    p2.deliver(Dir::ToServer, from, dst, &rrq);
    p2.collect();
    p2.in_flight.clear();
    let now = p2.now;
    p2.server().handle(
        now,
        addr(CLIENT),
        &Packet::Error {
            code: 0,
            message: "flash full".into(),
        }
        .to_vec(),
    );
    assert_eq!(
        p2.server().outcome(),
        Some(&Outcome::Failed(Failure::Peer {
            code: 0,
            message: "flash full".into()
        }))
    );
    assert!(p2.server().is_finished());
    assert_eq!(
        p2.server().poll_timeout(),
        None,
        "no retransmission after an ERROR"
    );
    let mut buf = Vec::new();
    assert!(p2.server().poll_transmit(&mut buf).is_none());
}

#[test]
fn wrong_tid_gets_error_5_and_does_not_disturb() {
    let mut p = Pair::new(file(512 * 5 + 1), plain(), limits());
    let mut injected = false;
    let intruder = addr("127.0.0.9:4444");
    // Deliver normally, but after block 2 feed a stray ACK from another port.
    p.collect();
    let (_, from, dst, rrq) = p.in_flight.pop_front().unwrap();
    p.deliver(Dir::ToServer, from, dst, &rrq);
    p.run(|dir, pkt| {
        if let (Dir::ToServer, Packet::Ack { block: 2 }) = (dir, pkt) {
            injected = true;
        }
        Fate::Deliver
    });
    assert!(injected);
    let now = p.now;
    // The stray packet after completion: still answered with error 5, outcome unchanged.
    p.server()
        .handle(now, intruder, &Packet::Ack { block: 3 }.to_vec());
    p.collect();
    p.assert_complete();
    assert_eq!(p.strays.len(), 1);
    assert_eq!(p.strays[0].0, intruder);
    assert!(matches!(
        Packet::decode(&p.strays[0].1),
        Ok(Packet::Error { code: 5, .. })
    ));

    // Mid-transfer: the stray ACK is answered and the transfer goes on unchanged.
    let mut q = Pair::new(file(512 * 5 + 1), plain(), limits());
    q.collect();
    let (_, from, dst, rrq) = q.in_flight.pop_front().unwrap();
    q.deliver(Dir::ToServer, from, dst, &rrq);
    let now = q.now;
    q.server()
        .handle(now, intruder, &Packet::Ack { block: 1 }.to_vec());
    q.server().handle(now, intruder, b"\x00\x09garbage");
    q.run(|_, _| Fate::Deliver);
    q.assert_complete();
    assert_eq!(q.strays.len(), 2);
    assert_eq!(q.data_sent, (1..=6).collect::<Vec<u16>>());
}

#[test]
fn option_negotiation_caps_blksize_and_reports_tsize() {
    let req = RequestedOptions {
        blksize: Some(1468),
        windowsize: Some(8),
        tsize: true,
    };
    let mut lim = limits();
    lim.max_blksize = 1024;
    lim.max_windowsize = 4;
    let content = file(50_000);
    let mut p = Pair::new(content.clone(), req, lim);
    p.run(|_, _| Fate::Deliver);
    p.assert_complete();
    let oack = p.oack_seen.clone().unwrap();
    assert_eq!(
        oack,
        vec![
            ("blksize".to_string(), "1024".to_string()),
            ("windowsize".to_string(), "4".to_string()),
            ("tsize".to_string(), content.len().to_string()),
        ]
    );
    assert_eq!(p.client.tsize(), Some(content.len() as u64));
    assert_eq!(p.client.params(), (1024, 4));
    assert!(p.data_lens.iter().all(|&l| l <= 1024));
}

#[test]
fn window_is_capped_in_bytes() {
    let req = Request {
        filename: "f".into(),
        mode: Mode::Octet,
        // windowsize before blksize: the cap must hold whatever the order.
        options: vec![
            ("windowsize".into(), "16".into()),
            ("blksize".into(), "8192".into()),
        ],
    };
    let lim = Limits {
        max_window_bytes: 65536,
        ..limits()
    };
    let n = negotiate(&req, false, None, &lim);
    assert_eq!(n.params.windowsize, 8);
    assert_eq!(
        n.oack,
        Some(vec![
            ("windowsize".to_string(), "8".to_string()),
            ("blksize".to_string(), "8192".to_string())
        ])
    );
}

#[test]
fn oack_only_for_options_asked() {
    let req = Request {
        filename: "f".into(),
        mode: Mode::Octet,
        options: vec![
            ("tsize".into(), "0".into()),
            ("x-vendor".into(), "1".into()),
        ],
    };
    let n = negotiate(&req, false, Some(77), &limits());
    assert_eq!(n.oack, Some(vec![("tsize".to_string(), "77".to_string())]));
    let req = Request {
        options: vec![
            ("blksize".into(), "4".into()),
            ("windowsize".into(), "0".into()),
        ],
        ..req
    };
    let n = negotiate(&req, false, Some(77), &limits());
    assert_eq!(n.oack, None, "invalid values are ignored, not acknowledged");
    assert_eq!(n.params.blksize, 512);
}

#[test]
fn client_refusing_oack_with_error_8_ends_cleanly() {
    let now = Instant::now();
    let params = TransferParams {
        blksize: 1024,
        ..TransferParams::default()
    };
    let oack = vec![("blksize".to_string(), "1024".to_string())];
    let mut s = Sender::new(
        now,
        addr(CLIENT),
        Cursor::new(file(10_000)),
        params,
        Some(oack),
    );
    let mut buf = Vec::new();
    assert_eq!(s.poll_transmit(&mut buf), Some(addr(CLIENT)));
    assert!(matches!(Packet::decode(&buf), Ok(Packet::Oack { .. })));
    assert!(s.poll_transmit(&mut buf).is_none(), "no data before ACK 0");
    s.handle(
        now,
        addr(CLIENT),
        &error_packet(ErrorCode::OptionRefused, "blksize not acceptable"),
    );
    assert_eq!(s.outcome(), Some(&Outcome::Failed(Failure::OptionsRefused)));
    assert!(s.is_finished());
    assert!(s.poll_transmit(&mut buf).is_none());
}

#[test]
fn client_refuses_oack_with_unrequested_option() {
    let now = Instant::now();
    let mut c = Receiver::download(now, addr(SERVER), "f", plain(), Duration::from_secs(1), 3);
    let mut buf = Vec::new();
    c.poll_transmit(&mut buf);
    let oack = Packet::Oack {
        options: vec![("blksize".into(), "1024".into())],
    };
    c.handle(now, addr(SERVER_TID), &oack.to_vec());
    assert_eq!(c.poll_transmit(&mut buf), Some(addr(SERVER_TID)));
    assert!(matches!(
        Packet::decode(&buf),
        Ok(Packet::Error { code: 8, .. })
    ));
    assert!(matches!(
        c.outcome(),
        Some(Outcome::Failed(Failure::Protocol(_)))
    ));
    assert!(c.is_finished());
}

#[test]
fn lost_oack_and_lost_ack_zero_are_recovered() {
    let req = RequestedOptions {
        blksize: Some(1024),
        windowsize: None,
        tsize: true,
    };
    let mut p = Pair::new(file(4000), req, limits());
    let (mut oacks, mut ack0) = (0, 0);
    p.run(|dir, pkt| match (dir, pkt) {
        (Dir::ToClient, Packet::Oack { .. }) => {
            oacks += 1;
            if oacks == 1 {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        }
        (Dir::ToServer, Packet::Ack { block: 0 }) => {
            ack0 += 1;
            if ack0 == 1 { Fate::Drop } else { Fate::Deliver }
        }
        _ => Fate::Deliver,
    });
    p.assert_complete();
    assert_eq!(oacks, 3);
}

#[test]
fn dead_client_frees_transfer_within_timeout_times_retries() {
    let start = Instant::now();
    let params = TransferParams {
        timeout: Duration::from_secs(2),
        retries: 4,
        ..TransferParams::default()
    };
    let mut s = Sender::new(start, addr(CLIENT), Cursor::new(file(5000)), params, None);
    let mut buf = Vec::new();
    let mut sends = 0;
    let mut now = start;
    while !s.is_finished() {
        while s.poll_transmit(&mut buf).is_some() {
            sends += 1;
        }
        let Some(t) = s.poll_timeout() else { break };
        now = t;
        s.handle_timeout(now);
    }
    assert_eq!(s.outcome(), Some(&Outcome::Failed(Failure::TimedOut(4))));
    assert!(now.duration_since(start) <= Duration::from_secs(2 * 4));
    assert_eq!(sends, 4, "the first send and three retransmissions");
}

#[test]
fn upload_receiver_writes_blocks_and_enforces_limit() {
    let now = Instant::now();
    let mut r = Receiver::upload(
        now,
        addr(CLIENT),
        TransferParams::default(),
        None,
        Some(1000),
    );
    let mut buf = Vec::new();
    assert_eq!(r.poll_transmit(&mut buf), Some(addr(CLIENT)));
    assert_eq!(Packet::decode(&buf), Ok(Packet::Ack { block: 0 }));
    let block = [1u8; 512];
    r.handle(
        now,
        addr(CLIENT),
        &Packet::Data {
            block: 1,
            data: &block,
        }
        .to_vec(),
    );
    assert_eq!(r.data().len(), 512);
    r.clear_data();
    r.handle(
        now,
        addr(CLIENT),
        &Packet::Data {
            block: 2,
            data: &block,
        }
        .to_vec(),
    );
    assert!(matches!(
        r.outcome(),
        Some(Outcome::Failed(Failure::TooLarge(1000)))
    ));
    // The refused block is not counted (found by the tftp_session fuzz target).
    assert_eq!(r.received(), 512, "bytes received counts a refused block");
    assert!(r.data().is_empty());
    r.poll_transmit(&mut buf);
    assert_eq!(r.poll_transmit(&mut buf), Some(addr(CLIENT)));
    assert!(matches!(
        Packet::decode(&buf),
        Ok(Packet::Error { code: 3, .. })
    ));
}

#[test]
fn truncated_and_unknown_packets_from_peer_end_transfer_with_error_4() {
    for bad in [
        &b"\x00\x04\x00"[..],
        b"\x00\x0a\x00\x01",
        b"\x00\x03\x00\x01data",
    ] {
        let now = Instant::now();
        let mut s = Sender::new(
            now,
            addr(CLIENT),
            Cursor::new(file(2000)),
            TransferParams::default(),
            None,
        );
        let mut buf = Vec::new();
        while s.poll_transmit(&mut buf).is_some() {}
        s.handle(now, addr(CLIENT), bad);
        assert!(
            matches!(s.outcome(), Some(Outcome::Failed(Failure::Protocol(_)))),
            "{bad:?}"
        );
        assert_eq!(s.poll_transmit(&mut buf), Some(addr(CLIENT)));
        assert!(matches!(
            Packet::decode(&buf),
            Ok(Packet::Error { code: 4, .. })
        ));
    }
}

/// Counts what the sender reads, to check it never reads ahead of its window.
struct CountingReader {
    inner: Cursor<Vec<u8>>,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

#[test]
fn sender_holds_at_most_one_window_or_the_read_ahead_of_file_data() {
    // (blksize, windowsize): a small window reads ahead READ_AHEAD bytes at a time; a large
    // one holds exactly the window.
    for (blksize, windowsize) in [(512u16, 1u16), (1024, 8), (8192, 16)] {
        let bound = (usize::from(blksize) * usize::from(windowsize)).max(READ_AHEAD) as u64;
        let size = 1024 * 1024 + 1;
        let now = Instant::now();
        let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let params = TransferParams {
            blksize,
            windowsize,
            ..TransferParams::default()
        };
        let source = CountingReader {
            inner: Cursor::new(file(size)),
            read: read.clone(),
        };
        let mut s = Sender::new(now, addr(CLIENT), source, params, None);
        let mut buf = Vec::new();
        let mut last = 0u16;
        let mut reads_ahead_max = 0;
        while s.outcome().is_none() {
            while s.poll_transmit(&mut buf).is_some() {
                if let Ok(Packet::Data { block, .. }) = Packet::decode(&buf) {
                    last = block;
                }
            }
            let ahead = read.load(std::sync::atomic::Ordering::Relaxed) - s.bytes_acked();
            reads_ahead_max = reads_ahead_max.max(ahead);
            assert!(
                ahead <= bound,
                "{blksize}/{windowsize}: {ahead} bytes read beyond the acknowledged data"
            );
            s.handle(now, addr(CLIENT), &Packet::Ack { block: last }.to_vec());
        }
        assert_eq!(s.outcome(), Some(&Outcome::Complete { bytes: size as u64 }));
        let window_bytes = u64::from(blksize) * u64::from(windowsize);
        if window_bytes < READ_AHEAD as u64 {
            assert!(
                reads_ahead_max > window_bytes,
                "{blksize}/{windowsize}: the sender never read ahead of the window"
            );
        }
    }
}

/// A client that negotiated `timeout 255` and then went silent: the server gives up after its
/// own stall limit (30 s here), not after 255 s × retries, and tells the client why.
#[test]
fn a_client_chosen_timeout_cannot_hold_a_transfer_beyond_the_stall_limit() {
    let req = Request {
        filename: "f".into(),
        mode: Mode::Octet,
        options: vec![("timeout".into(), "255".into())],
    };
    let n = negotiate(&req, false, Some(100_000), &limits());
    assert_eq!(n.params.timeout, Duration::from_secs(255));
    assert_eq!(n.params.max_stall, Some(Duration::from_secs(30)));
    let start = Instant::now();
    let mut s = Sender::new(
        start,
        addr(CLIENT),
        Cursor::new(file(100_000)),
        n.params,
        n.oack,
    );
    let mut buf = Vec::new();
    while s.poll_transmit(&mut buf).is_some() {}
    let mut now = start;
    let mut sent = Vec::new();
    while s.outcome().is_none() {
        now = s.poll_timeout().expect("a pending transfer has a timer");
        s.handle_timeout(now);
        while s.poll_transmit(&mut buf).is_some() {
            sent = buf.clone();
        }
    }
    assert_eq!(now - start, Duration::from_secs(30));
    assert_eq!(s.outcome(), Some(&Outcome::Failed(Failure::Stalled(30))));
    // The last datagram was the ERROR telling the client.
    match Packet::decode(&sent) {
        Ok(Packet::Error { code: 0, message }) => {
            assert!(message.contains("no progress for 30 s"), "{message}")
        }
        other => panic!("expected an ERROR, got {other:?}"),
    }
    assert!(s.is_finished());
}

/// The stall limit counts time without progress, not the length of a transfer: a slow client
/// that acknowledges a block every 20 s (within its 255 s timeout) runs to the end.
#[test]
fn a_slow_but_progressing_transfer_is_not_cut_by_the_stall_limit() {
    let params = TransferParams {
        blksize: 512,
        timeout: Duration::from_secs(255),
        max_stall: Some(Duration::from_secs(30)),
        ..TransferParams::default()
    };
    let start = Instant::now();
    let mut s = Sender::new(
        start,
        addr(CLIENT),
        Cursor::new(file(512 * 10 + 1)),
        params,
        None,
    );
    let mut buf = Vec::new();
    let mut now = start;
    let mut last = 0;
    while s.outcome().is_none() {
        while s.poll_transmit(&mut buf).is_some() {
            if let Ok(Packet::Data { block, .. }) = Packet::decode(&buf) {
                last = block;
            }
        }
        now += Duration::from_secs(20);
        assert!(s.poll_timeout().is_some_and(|d| d > now));
        s.handle(now, addr(CLIENT), &Packet::Ack { block: last }.to_vec());
    }
    assert_eq!(
        s.outcome(),
        Some(&Outcome::Complete {
            bytes: 512 * 10 + 1
        })
    );
    assert_eq!(now - start, Duration::from_secs(20 * 11));
}

/// Server side of an upload: the final ACK is what tells the client its file is stored, so
/// it waits for the driver; a failure to store becomes an ERROR instead.
#[test]
fn an_upload_is_acknowledged_only_once_stored() {
    let now = Instant::now();
    let mut buf = Vec::new();
    let start = |now| {
        let mut r = Receiver::upload(now, addr(CLIENT), TransferParams::default(), None, None);
        let mut buf = Vec::new();
        assert!(r.poll_transmit(&mut buf).is_some());
        assert_eq!(Packet::decode(&buf), Ok(Packet::Ack { block: 0 }));
        r.handle(
            now,
            addr(CLIENT),
            &Packet::Data {
                block: 1,
                data: b"hostname sw1",
            }
            .to_vec(),
        );
        r
    };
    let mut r = start(now);
    assert!(r.awaiting_store());
    assert!(r.poll_transmit(&mut buf).is_none(), "no ACK before storing");
    assert_eq!(r.outcome(), None);
    assert!(!r.is_finished());
    r.stored(now);
    assert!(r.poll_transmit(&mut buf).is_some());
    assert_eq!(Packet::decode(&buf), Ok(Packet::Ack { block: 1 }));
    assert_eq!(r.outcome(), Some(&Outcome::Complete { bytes: 12 }));

    let mut r = start(now);
    r.store_failed(ErrorCode::FileExists, "sw1-confg appeared meanwhile");
    assert!(r.poll_transmit(&mut buf).is_some());
    assert_eq!(
        Packet::decode(&buf),
        Ok(Packet::Error {
            code: 6,
            message: "sw1-confg appeared meanwhile".into()
        })
    );
    assert!(r.poll_transmit(&mut buf).is_none(), "never an ACK 1");
    assert_eq!(
        r.outcome(),
        Some(&Outcome::Failed(Failure::Store(
            "sw1-confg appeared meanwhile".into()
        )))
    );
    assert!(r.is_finished());
}

/// Sends what the sender has, returning the DATA block numbers.
fn drain(s: &mut Sender<Cursor<Vec<u8>>>) -> Vec<u16> {
    let mut buf = Vec::new();
    let mut blocks = Vec::new();
    while s.poll_transmit(&mut buf).is_some() {
        if let Ok(Packet::Data { block, .. }) = Packet::decode(&buf) {
            blocks.push(block);
        }
    }
    blocks
}

/// A lock-step sender of a 5,000-byte file in 512-byte blocks, started at `start`, with no OACK.
fn lockstep(start: Instant, timeout: Duration, retries: u32) -> Sender<Cursor<Vec<u8>>> {
    let params = TransferParams {
        blksize: 512,
        timeout,
        retries,
        ..TransferParams::default()
    };
    Sender::new(start, addr(CLIENT), Cursor::new(file(5000)), params, None)
}

/// Until the sender has timed an answer, it waits the whole negotiated timeout.
#[test]
fn before_any_round_trip_is_measured_the_timer_is_the_negotiated_timeout() {
    let start = Instant::now();
    let mut s = lockstep(start, Duration::from_secs(5), 5);
    assert_eq!(drain(&mut s), vec![1]);
    assert_eq!(s.poll_timeout(), Some(start + Duration::from_secs(5)));
}

/// A client that negotiated `timeout 5` on a 20 ms link: once the sender has measured the round
/// trip, a lost block is sent again after MIN_RTO, not after 5 s.
#[test]
fn a_lost_block_costs_the_measured_round_trip_not_the_negotiated_timeout() {
    let mut limits = limits();
    limits.timeout = Duration::from_secs(5);
    let mut p = Pair::new(file(512 * 6 + 10), plain(), limits);
    p.run_losing_data_once(3);
    p.assert_complete();
    assert_eq!(p.sends_of(3), 2);
    // The in-memory link answers at once, so the round trip measured is zero and the timer is
    // its floor.
    assert_eq!(p.done_at.map(|d| d - p.start), Some(MIN_RTO));
}

/// A silent peer after a measured round trip: the timer doubles from MIN_RTO up to the
/// negotiated timeout, and only the full timeouts count against the retries, so the transfer
/// is given up no sooner than with a fixed timer.
#[test]
fn the_timer_backs_off_to_the_timeout_and_only_full_timeouts_spend_retries() {
    let start = Instant::now();
    let mut s = lockstep(start, Duration::from_secs(2), 3);
    assert_eq!(drain(&mut s), vec![1]);
    let acked = start + Duration::from_millis(20);
    s.handle(acked, addr(CLIENT), &Packet::Ack { block: 1 }.to_vec());
    assert_eq!(drain(&mut s), vec![2]);
    let mut now = acked;
    let mut waits = Vec::new();
    while s.outcome().is_none() {
        let next = s.poll_timeout().expect("a pending transfer has a timer");
        waits.push(next - now);
        now = next;
        s.handle_timeout(now);
        if s.outcome().is_none() {
            assert_eq!(drain(&mut s), vec![2], "a timeout resends the block");
        }
    }
    let ms = Duration::from_millis;
    assert_eq!(
        waits,
        vec![
            ms(200),
            ms(400),
            ms(800),
            ms(1600),
            ms(2000),
            ms(2000),
            ms(2000)
        ]
    );
    assert_eq!(s.outcome(), Some(&Outcome::Failed(Failure::TimedOut(3))));
}

/// Karn's rule: the answer to a block sent twice is not a round-trip sample, since it cannot
/// say which send it answers; the timer keeps its measured value.
#[test]
fn an_answer_to_a_resent_block_is_not_timed() {
    let start = Instant::now();
    let mut s = lockstep(start, Duration::from_secs(5), 5);
    drain(&mut s);
    let t1 = start + Duration::from_millis(20);
    s.handle(t1, addr(CLIENT), &Packet::Ack { block: 1 }.to_vec());
    assert_eq!(drain(&mut s), vec![2]);
    assert_eq!(s.poll_timeout(), Some(t1 + MIN_RTO));
    // Block 2 is lost; the resend is answered 3 s after the first send.
    s.handle_timeout(t1 + MIN_RTO);
    assert_eq!(drain(&mut s), vec![2]);
    let t2 = t1 + Duration::from_secs(3);
    s.handle(t2, addr(CLIENT), &Packet::Ack { block: 2 }.to_vec());
    assert_eq!(drain(&mut s), vec![3]);
    assert_eq!(
        s.poll_timeout(),
        Some(t2 + MIN_RTO),
        "the 3 s did not become a sample, and progress ended the back-off"
    );
    // A block sent once is timed again: a slow answer raises the timer above its floor.
    let t3 = t2 + Duration::from_millis(900);
    s.handle(t3, addr(CLIENT), &Packet::Ack { block: 3 }.to_vec());
    assert_eq!(drain(&mut s), vec![4]);
    let rto = s.poll_timeout().map(|d| d - t3);
    assert!(rto > Some(MIN_RTO), "{rto:?}");
    assert!(rto <= Some(Duration::from_secs(5)), "{rto:?}");
}
