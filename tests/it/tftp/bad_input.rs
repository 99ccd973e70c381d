//! Bad requests get a clear error packet, are logged, and leave the server serving.

use fleetup::tftp::client::{DownloadOptions, download};
use fleetup::tftp::packet::{MAX_OPTIONS, Mode, Packet, Request};

use super::support::*;

async fn still_serves(server: &TestServer, data: &[u8]) {
    let mut sink = Vec::new();
    download(
        server.addr,
        "ios.bin",
        &DownloadOptions::default(),
        &mut sink,
        &mut |_, _| {},
    )
    .await
    .unwrap();
    assert!(sink == data);
}

#[tokio::test]
async fn malformed_packets_get_error_4() {
    let server = TestServer::start(config_for_tests()).await;
    let data = pseudo_random_bytes(10_000, 7);
    server.put("ios.bin", &data);
    for (bad, what) in [
        (&b"\x00"[..], "truncated"),
        (b"\x00\x01ios.bin", "unterminated name"),
        (b"\x00\x01ios.bin\x00octet", "unterminated mode"),
        (b"\x00\x01ios.bin\x00mail\x00", "unknown mode"),
        (b"\x00\x07ios.bin\x00octet\x00", "unknown opcode"),
        (b"\xff\xffhello", "unknown opcode"),
    ] {
        let (code, msg) = expect_error(server.addr, bad).await;
        assert_eq!(code, 4, "{what}: {msg}");
        assert!(msg.starts_with("malformed request"), "{what}: {msg}");
    }
    // DATA or ACK on the request port: not a transfer of this port.
    let (code, _) = expect_error(server.addr, &Packet::Ack { block: 1 }.to_vec()).await;
    assert_eq!(code, 5);
    still_serves(&server, &data).await;
    server.stop().await;
}

#[tokio::test]
async fn oversized_option_lists_are_refused() {
    let server = TestServer::start(config_for_tests()).await;
    let data = pseudo_random_bytes(1000, 8);
    server.put("ios.bin", &data);
    let many: Vec<(String, String)> = (0..=MAX_OPTIONS)
        .map(|i| (format!("opt{i}"), "1".into()))
        .collect();
    let pkt = Packet::Rrq(Request {
        filename: "ios.bin".into(),
        mode: Mode::Octet,
        options: many,
    })
    .to_vec();
    let (code, msg) = expect_error(server.addr, &pkt).await;
    assert_eq!(code, 4);
    assert!(msg.contains("more than"), "{msg}");
    let long = rrq("ios.bin", &[("x-pad", &"a".repeat(600))]);
    let (code, msg) = expect_error(server.addr, &long).await;
    assert_eq!(code, 4);
    assert!(msg.contains("512-byte limit"), "{msg}");
    still_serves(&server, &data).await;
    server.stop().await;
}

#[tokio::test]
async fn traversal_and_escaping_names_get_access_violation() {
    let server = TestServer::start(config_for_tests()).await;
    let data = pseudo_random_bytes(1000, 9);
    server.put("ios.bin", &data);
    let outside = tempfile::tempdir().unwrap();
    write_file(outside.path(), "secret.txt", b"secret");
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        server.dir.path().join("link.bin"),
    )
    .unwrap();
    for name in [
        "../etc/passwd",
        "..",
        "/etc/passwd",
        "a/../../etc/passwd",
        "..\\..\\boot.ini",
        ".hidden",
        "link.bin",
    ] {
        let (code, msg) = expect_error(server.addr, &rrq(name, &[])).await;
        assert_eq!(code, 2, "{name:?}: {msg}");
        assert!(msg.starts_with("access violation"), "{name:?}: {msg}");
    }
    // A NUL in the name ends the name early: what follows is not a valid mode.
    let (code, _) = expect_error(server.addr, b"\x00\x01ios\x00.bin\x00octet\x00").await;
    assert_eq!(code, 4);
    still_serves(&server, &data).await;
    server.stop().await;
}

#[tokio::test]
async fn missing_file_gets_error_1() {
    let server = TestServer::start(config_for_tests()).await;
    let (code, msg) = expect_error(server.addr, &rrq("nope.bin", &[])).await;
    assert_eq!(code, 1);
    assert!(msg.contains("nope.bin"), "{msg}");
    server.stop().await;
}

#[tokio::test]
async fn write_request_on_read_only_server_gets_error_2() {
    let server = TestServer::start(config_for_tests()).await;
    let wrq = Packet::Wrq(Request {
        filename: "backup.cfg".into(),
        mode: Mode::Octet,
        options: vec![],
    })
    .to_vec();
    let (code, msg) = expect_error(server.addr, &wrq).await;
    assert_eq!(code, 2);
    assert!(
        msg.contains("read-only") && msg.contains("--tftp-write-dir"),
        "{msg}"
    );
    assert!(!server.dir.path().join("backup.cfg").exists());
    // tftp-hpa reports the refusal too.
    let src = tempfile::tempdir().unwrap();
    write_file(src.path(), "backup.cfg", b"hostname sw1\n");
    let out = tokio::process::Command::new("tftp")
        .current_dir(src.path())
        .args([
            &server.addr.ip().to_string(),
            &server.addr.port().to_string(),
        ])
        .args(["-m", "binary", "-c", "put", "backup.cfg"])
        .output()
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("read-only"), "tftp-hpa output: {text}");
    assert!(!server.dir.path().join("backup.cfg").exists());
    server.stop().await;
}
