//! Server behaviour over real sockets: addressing, TIDs, caps, uploads, timeouts, shutdown.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use fleetup::tftp::TftpConfig;
use fleetup::tftp::client::{DownloadOptions, download_from};
use fleetup::tftp::packet::{Mode, Packet, Request};
use fleetup::transfers::TransferState;

use super::support::*;

#[tokio::test]
async fn server_on_unspecified_address_answers_from_the_address_asked() {
    let server = TestServer::start_on(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config_for_tests()).await;
    let data = pseudo_random_bytes(100_000, 20);
    server.put("ios.bin", &data);
    let port = server.addr.port();
    let a = random_loopback();
    let mut b = random_loopback();
    while b == a {
        b = random_loopback();
    }
    for ip in [a, b] {
        let target = SocketAddr::from((ip, port));
        // By hand: the first answer comes from the address the request went to.
        let sock = raw_socket(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
        sock.send_to(&rrq("ios.bin", &[]), target).await.unwrap();
        let (pkt, from) = recv(&sock).await;
        assert_eq!(from.ip(), IpAddr::V4(ip), "answer must come from {ip}");
        assert_ne!(from.port(), port, "the transfer uses its own port");
        assert!(matches!(
            Packet::decode(&pkt),
            Ok(Packet::Data { block: 1, .. })
        ));
        sock.send_to(
            &Packet::Error {
                code: 0,
                message: "done".into(),
            }
            .to_vec(),
            from,
        )
        .await
        .unwrap();
        // And a full download through that address, as a device would do it.
        let mut sink = Vec::new();
        let client_ip = random_loopback();
        download_from(
            IpAddr::V4(client_ip),
            target,
            "ios.bin",
            &DownloadOptions::default(),
            &mut sink,
            &mut |_, _| {},
        )
        .await
        .unwrap();
        assert!(sink == data);
    }
    let info = server.settled().await;
    assert_eq!(completed(&info).len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn wrong_tid_gets_error_5_and_transfer_continues() {
    let server = TestServer::start(config_for_tests()).await;
    let data = pseudo_random_bytes(512 * 3 + 10, 21);
    server.put("ios.bin", &data);
    let sock = raw_socket(server.addr.ip()).await;
    sock.send_to(&rrq("ios.bin", &[]), server.addr)
        .await
        .unwrap();
    let (pkt, tid) = recv(&sock).await;
    let mut got = match Packet::decode(&pkt).unwrap() {
        Packet::Data { block: 1, data } => data.to_vec(),
        other => panic!("{other}"),
    };
    // An intruder on another port.
    let intruder = raw_socket(server.addr.ip()).await;
    intruder
        .send_to(&Packet::Ack { block: 1 }.to_vec(), tid)
        .await
        .unwrap();
    let (pkt, from) = recv(&intruder).await;
    assert_eq!(from, tid);
    assert!(matches!(
        Packet::decode(&pkt),
        Ok(Packet::Error { code: 5, .. })
    ));
    // The real client carries on.
    let mut block = 1u16;
    loop {
        sock.send_to(&Packet::Ack { block }.to_vec(), tid)
            .await
            .unwrap();
        let (pkt, from) = recv(&sock).await;
        assert_eq!(from, tid);
        let Packet::Data { block: b, data: d } = Packet::decode(&pkt).unwrap() else {
            panic!("expected DATA");
        };
        assert_eq!(b, block + 1);
        block = b;
        got.extend_from_slice(d);
        if d.len() < 512 {
            sock.send_to(&Packet::Ack { block }.to_vec(), tid)
                .await
                .unwrap();
            break;
        }
    }
    assert!(got == data);
    let info = server.settled().await;
    assert_eq!(completed(&info).len(), 1);
    server.stop().await;
}

/// Start a transfer by hand and leave it waiting (the server keeps it until it times out).
async fn hold_transfer(server: &TestServer, from_ip: IpAddr) -> tokio::net::UdpSocket {
    let sock = raw_socket(from_ip).await;
    sock.send_to(&rrq("ios.bin", &[]), server.addr)
        .await
        .unwrap();
    let (pkt, _) = recv(&sock).await;
    assert!(matches!(
        Packet::decode(&pkt),
        Ok(Packet::Data { block: 1, .. })
    ));
    sock
}

#[tokio::test]
async fn global_and_per_client_caps_answer_with_an_error() {
    let config = TftpConfig {
        max_transfers: 3,
        max_per_client: 2,
        ..TftpConfig::default()
    };
    let server = TestServer::start(config).await;
    server.put("ios.bin", &pseudo_random_bytes(100_000, 22));
    let client_a = IpAddr::V4(random_loopback());
    let _h1 = hold_transfer(&server, client_a).await;
    let _h2 = hold_transfer(&server, client_a).await;
    let sock = raw_socket(client_a).await;
    sock.send_to(&rrq("ios.bin", &[]), server.addr)
        .await
        .unwrap();
    let (pkt, _) = recv(&sock).await;
    match Packet::decode(&pkt).unwrap() {
        Packet::Error { code: 0, message } => {
            assert!(message.contains("too many transfers from"), "{message}")
        }
        other => panic!("{other}"),
    }
    let mut client_b = random_loopback();
    while IpAddr::V4(client_b) == client_a {
        client_b = random_loopback();
    }
    let _h3 = hold_transfer(&server, IpAddr::V4(client_b)).await;
    let sock = raw_socket(IpAddr::V4(client_b)).await;
    sock.send_to(&rrq("ios.bin", &[]), server.addr)
        .await
        .unwrap();
    let (pkt, _) = recv(&sock).await;
    match Packet::decode(&pkt).unwrap() {
        Packet::Error { code: 0, message } => assert!(message.contains("server busy"), "{message}"),
        other => panic!("{other}"),
    }
    assert_eq!(server.transfers.active_count(), 3);
    server.stop().await;
}

#[tokio::test]
async fn dead_client_frees_its_slot_after_timeout_times_retries() {
    let config = TftpConfig {
        max_transfers: 1,
        timeout: Duration::from_millis(100),
        retries: 3,
        ..TftpConfig::default()
    };
    let server = TestServer::start(config).await;
    let data = pseudo_random_bytes(50_000, 23);
    server.put("ios.bin", &data);
    let sock = hold_transfer(&server, server.addr.ip()).await;
    // The server retransmits block 1 and then gives up.
    let mut repeats = 0;
    while repeats < 2 {
        let (pkt, _) = recv(&sock).await;
        assert!(matches!(
            Packet::decode(&pkt),
            Ok(Packet::Data { block: 1, .. })
        ));
        repeats += 1;
    }
    let info = server.settled().await;
    assert_eq!(info[0].state, TransferState::Failed);
    assert!(
        info[0].error.as_deref().unwrap_or("").contains("no answer"),
        "{info:?}"
    );
    let mut sink = Vec::new();
    download_from(
        server.addr.ip(),
        server.addr,
        "ios.bin",
        &DownloadOptions::default(),
        &mut sink,
        &mut |_, _| {},
    )
    .await
    .unwrap();
    assert!(sink == data);
    server.stop().await;
}

#[tokio::test]
async fn client_error_mid_transfer_ends_it_at_once() {
    let server = TestServer::start(config_for_tests()).await;
    server.put("ios.bin", &pseudo_random_bytes(100_000, 24));
    let sock = hold_transfer(&server, server.addr.ip()).await;
    let info = server.transfers.snapshot();
    assert_eq!(info[0].state, TransferState::Active);
    // Reply to the TID with an ERROR, as IOS does when flash fills up.
    sock.send_to(&rrq("x", &[]), server.addr).await.unwrap();
    let (pkt, tid) = recv(&sock).await;
    let _ = pkt;
    sock.send_to(
        &Packet::Error {
            code: 3,
            message: "flash full".into(),
        }
        .to_vec(),
        tid,
    )
    .await
    .unwrap();
    let info = server.settled().await;
    let failed: Vec<_> = info
        .iter()
        .filter(|t| t.state == TransferState::Failed)
        .collect();
    assert!(
        failed
            .iter()
            .any(|t| t.error.as_deref().unwrap_or("").contains("flash full")),
        "{info:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn uploads_land_only_when_complete_and_never_overwrite() {
    let write_dir = tempfile::tempdir().unwrap();
    let config = TftpConfig {
        write_dir: Some(write_dir.path().to_path_buf()),
        ..config_for_tests()
    };
    let server = TestServer::start(config).await;
    let src = tempfile::tempdir().unwrap();
    let cfg = b"hostname sw1\n!\ninterface Gi0/1\n description uplink\n!\nend\n".repeat(300);
    write_file(src.path(), "sw1-confg", &cfg);
    let host = server.addr.ip().to_string();
    let port = server.addr.port().to_string();
    run_ok(
        tokio::process::Command::new("tftp")
            .current_dir(src.path())
            .args([&host, &port, "-m", "binary", "-c", "put", "sw1-confg"]),
    )
    .await;
    let info = server.settled().await;
    assert_eq!(completed(&info).len(), 1);
    assert_eq!(info[0].direction, "upload");
    assert_eq!(
        std::fs::read(write_dir.path().join("sw1-confg")).unwrap(),
        cfg
    );
    // Uploading the same name again is refused and the first copy stays intact.
    write_file(src.path(), "sw1-confg", b"other");
    let wrq = Packet::Wrq(Request {
        filename: "sw1-confg".into(),
        mode: Mode::Octet,
        options: vec![],
    })
    .to_vec();
    let (code, msg) = expect_error(server.addr, &wrq).await;
    assert_eq!(code, 6, "{msg}");
    assert_eq!(
        std::fs::read(write_dir.path().join("sw1-confg")).unwrap(),
        cfg
    );
    // An upload abandoned halfway leaves nothing behind.
    let sock = raw_socket(server.addr.ip()).await;
    let wrq = Packet::Wrq(Request {
        filename: "half.cfg".into(),
        mode: Mode::Octet,
        options: vec![],
    })
    .to_vec();
    sock.send_to(&wrq, server.addr).await.unwrap();
    let (pkt, tid) = recv(&sock).await;
    assert_eq!(Packet::decode(&pkt).unwrap(), Packet::Ack { block: 0 });
    sock.send_to(
        &Packet::Data {
            block: 1,
            data: &[b'x'; 512],
        }
        .to_vec(),
        tid,
    )
    .await
    .unwrap();
    let (pkt, _) = recv(&sock).await;
    assert_eq!(Packet::decode(&pkt).unwrap(), Packet::Ack { block: 1 });
    sock.send_to(
        &Packet::Error {
            code: 0,
            message: "cancelled".into(),
        }
        .to_vec(),
        tid,
    )
    .await
    .unwrap();
    let info = server.settled().await;
    assert!(
        info.iter()
            .any(|t| t.file == "half.cfg" && t.state == TransferState::Failed)
    );
    let names: Vec<String> = std::fs::read_dir(write_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["sw1-confg".to_string()]);
    // Uploads are not served as images.
    let (code, _) = expect_error(server.addr, &rrq("sw1-confg", &[])).await;
    assert_eq!(code, 1);
    server.stop().await;
}

#[tokio::test]
async fn extra_roots_are_served_after_the_image_store() {
    let extra = tempfile::tempdir().unwrap();
    write_file(extra.path(), "boot.cfg", b"extra");
    let config = TftpConfig {
        extra_roots: vec![extra.path().to_path_buf()],
        ..config_for_tests()
    };
    let server = TestServer::start(config).await;
    let mut sink = Vec::new();
    download_from(
        server.addr.ip(),
        server.addr,
        "boot.cfg",
        &DownloadOptions::default(),
        &mut sink,
        &mut |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(sink, b"extra");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_transfers_with_an_error_packet() {
    let server = TestServer::start(config_for_tests()).await;
    server.put("ios.bin", &pseudo_random_bytes(100_000, 25));
    let sock = hold_transfer(&server, server.addr.ip()).await;
    let transfers = server.transfers.clone();
    server.shutdown.token.cancel();
    loop {
        let (pkt, _) = recv(&sock).await;
        match Packet::decode(&pkt).unwrap() {
            Packet::Error { message, .. } => {
                assert!(message.contains("shutting down"), "{message}");
                break;
            }
            // A retransmission may cross the shutdown.
            Packet::Data { .. } => continue,
            other => panic!("{other}"),
        }
    }
    server.stop().await;
    assert_eq!(transfers.active_count(), 0);
}

#[tokio::test]
async fn ipv6_loopback_works() {
    let server = TestServer::start_on(
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        config_for_tests(),
    )
    .await;
    let data = pseudo_random_bytes(70_000, 26);
    server.put("ios.bin", &data);
    let mut sink = Vec::new();
    let opts = DownloadOptions {
        blksize: Some(1468),
        ..DownloadOptions::default()
    };
    fleetup::tftp::client::download(server.addr, "ios.bin", &opts, &mut sink, &mut |_, _| {})
        .await
        .unwrap();
    assert!(sink == data);
    server.stop().await;
}

/// 2,000 read requests from 2,000 sockets at once, with room for 5 transfers: every request
/// is answered, with its transfer's first block or with "server busy", none lost in the
/// request socket's buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_requests_is_answered_in_full() {
    let config = TftpConfig {
        max_transfers: 5,
        max_per_client: 10_000,
        ..TftpConfig::default()
    };
    let server = TestServer::start(config).await;
    server.put(
        "ios.bin",
        &fleetup::images::pseudo_random_bytes(100_000, 31),
    );
    let mut clients = Vec::new();
    for _ in 0..2000 {
        clients.push(raw_socket(server.addr.ip()).await);
    }
    let request = rrq("ios.bin", &[]);
    for c in &clients {
        c.send_to(&request, server.addr).await.unwrap();
    }
    let (mut data, mut busy, mut missing) = (0, 0, 0);
    // One bound for all the answers, so that lost ones fail the test without a wait each.
    let guard = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 70_000];
    for c in &clients {
        match tokio::time::timeout_at(guard, c.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => match Packet::decode(&buf[..n]).unwrap() {
                Packet::Data { block: 1, .. } => data += 1,
                Packet::Error { code: 0, message } if message.contains("server busy") => busy += 1,
                other => panic!("unexpected answer {other}"),
            },
            _ => missing += 1,
        }
    }
    assert_eq!(
        missing, 0,
        "requests left unanswered ({data} served, {busy} busy)"
    );
    assert_eq!(data, 5);
    assert_eq!(busy, 1995);
    server.stop().await;
}

/// The final ACK of an upload means "stored": when the name was taken while the upload ran,
/// the client gets error 6 instead, the file that appeared is left alone, and the registry
/// names the failed step.
#[tokio::test]
async fn an_upload_that_cannot_be_stored_is_not_acknowledged() {
    let write_dir = tempfile::tempdir().unwrap();
    let config = TftpConfig {
        write_dir: Some(write_dir.path().to_path_buf()),
        ..config_for_tests()
    };
    let server = TestServer::start(config).await;
    let sock = raw_socket(server.addr.ip()).await;
    let wrq = Packet::Wrq(Request {
        filename: "late.cfg".into(),
        mode: Mode::Octet,
        options: vec![],
    })
    .to_vec();
    sock.send_to(&wrq, server.addr).await.unwrap();
    let (pkt, tid) = recv(&sock).await;
    assert_eq!(Packet::decode(&pkt).unwrap(), Packet::Ack { block: 0 });
    std::fs::write(write_dir.path().join("late.cfg"), b"first").unwrap();
    sock.send_to(
        &Packet::Data {
            block: 1,
            data: b"hostname sw1\n",
        }
        .to_vec(),
        tid,
    )
    .await
    .unwrap();
    let (pkt, _) = recv(&sock).await;
    match Packet::decode(&pkt).unwrap() {
        Packet::Error { code: 6, message } => assert!(message.contains("late.cfg"), "{message}"),
        other => panic!("expected error 6, got {other}"),
    }
    assert_eq!(
        std::fs::read(write_dir.path().join("late.cfg")).unwrap(),
        b"first"
    );
    let info = server.settled().await;
    let t = info.iter().find(|t| t.file == "late.cfg").unwrap();
    assert_eq!(t.state, TransferState::Failed);
    let why = t.error.as_deref().unwrap_or_default();
    assert!(why.contains("storing the upload failed"), "{why}");
    server.stop().await;
}

#[tokio::test]
async fn upload_names_with_control_characters_are_refused() {
    let write_dir = tempfile::tempdir().unwrap();
    let config = TftpConfig {
        write_dir: Some(write_dir.path().to_path_buf()),
        ..config_for_tests()
    };
    let server = TestServer::start(config).await;
    for name in ["sw1\u{1b}[2J-confg", "sw1\r\nFAKE LOG LINE", "tab\there"] {
        let wrq = Packet::Wrq(Request {
            filename: name.into(),
            mode: Mode::Octet,
            options: vec![],
        })
        .to_vec();
        let (code, msg) = expect_error(server.addr, &wrq).await;
        assert_eq!(code, 2, "{name:?}: {msg}");
        assert!(msg.contains("control character"), "{msg}");
    }
    assert_eq!(std::fs::read_dir(write_dir.path()).unwrap().count(), 0);
    server.stop().await;
}
