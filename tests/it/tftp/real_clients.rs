//! fleetup's server against the clients devices and people really use. Every download is
//! compared byte for byte with the file served.

use std::path::Path;

use fleetup::tftp::TftpConfig;
use md5::{Digest, Md5};
use tokio::process::Command;

use super::support::*;

fn assert_same_file(path: &Path, expected: &[u8]) {
    let got = std::fs::read(path).unwrap();
    assert_eq!(got.len(), expected.len(), "size of {}", path.display());
    assert!(
        got == expected,
        "{} differs from the served file",
        path.display()
    );
}

async fn curl_get(server: &TestServer, name: &str, extra: &[&str], data: &[u8]) {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join(name);
    run_ok(
        Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "300"])
            .args(extra)
            .arg("-o")
            .arg(&dest)
            .arg(server.url(name)),
    )
    .await;
    assert_same_file(&dest, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_blksize_512_on_40mb_rolls_block_numbers_over() {
    // 40 MB at 512-byte blocks is 81 920 blocks: the block number wraps past 65535.
    let server = TestServer::start(config_for_tests()).await;
    let data = pseudo_random_bytes(40 * 1024 * 1024 + 123, 1);
    server.put("c2960x-universalk9-mz.152-7.E8.bin", &data);
    curl_get(
        &server,
        "c2960x-universalk9-mz.152-7.E8.bin",
        &["--tftp-blksize", "512"],
        &data,
    )
    .await;
    let info = server.settled().await;
    let done = completed(&info);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].bytes, data.len() as u64);
    assert_eq!(done[0].total, Some(data.len() as u64));
    assert_eq!(done[0].file, "c2960x-universalk9-mz.152-7.E8.bin");
    server.stop().await;
}

#[tokio::test]
async fn curl_download_with_busy_polling_off() {
    // `--tftp-busy-poll 0`: every wait for an ACK sleeps in the kernel.
    let server = TestServer::start(TftpConfig {
        busy_poll: std::time::Duration::ZERO,
        ..config_for_tests()
    })
    .await;
    let data = pseudo_random_bytes(3 * 1024 * 1024 + 7, 5);
    server.put("c9300.bin", &data);
    curl_get(&server, "c9300.bin", &["--tftp-blksize", "512"], &data).await;
    let info = server.settled().await;
    assert_eq!(completed(&info).len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn curl_blksize_1468_65464_and_no_options() {
    let server = TestServer::start(config_for_tests()).await;
    let data = pseudo_random_bytes(3 * 1024 * 1024 + 7, 2);
    server.put("ios.bin", &data);
    curl_get(&server, "ios.bin", &["--tftp-blksize", "1468"], &data).await;
    curl_get(&server, "ios.bin", &["--tftp-blksize", "65464"], &data).await;
    curl_get(&server, "ios.bin", &["--tftp-no-options"], &data).await;
    // A file that ends exactly on a block boundary needs an empty final block.
    let exact = pseudo_random_bytes(512 * 300, 3);
    server.put("exact.bin", &exact);
    curl_get(&server, "exact.bin", &["--tftp-no-options"], &exact).await;
    let info = server.settled().await;
    assert_eq!(completed(&info).len(), 4);
    server.stop().await;
}

#[tokio::test]
async fn tftp_hpa_plain_download_and_netascii() {
    let server = TestServer::start(config_for_tests()).await;
    let data = pseudo_random_bytes(2 * 1024 * 1024 + 99, 4);
    server.put("ios.bin", &data);
    let text = b"hostname sw1\r\ninterface Gi0/1\n description uplink\n!\nend\n".repeat(500);
    server.put("config.txt", &text);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("ios.bin");
    let port = server.addr.port().to_string();
    let host = server.addr.ip().to_string();
    run_ok(
        Command::new("tftp")
            .args(["-m", "binary", &host, &port, "-c", "get", "ios.bin"])
            .arg(&dest),
    )
    .await;
    assert_same_file(&dest, &data);
    // netascii: the server converts to CR LF on the wire, tftp-hpa converts back.
    let dest_txt = out.path().join("config.txt");
    run_ok(
        Command::new("tftp")
            .args(["-m", "netascii", &host, &port, "-c", "get", "config.txt"])
            .arg(&dest_txt),
    )
    .await;
    assert_same_file(&dest_txt, &text);
    let info = server.settled().await;
    assert_eq!(completed(&info).len(), 2);
    server.stop().await;
}

async fn atftp_get(server: &TestServer, name: &str, options: &[&str], data: &[u8]) {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join(name);
    let mut cmd = Command::new("atftp");
    for o in options {
        cmd.args(["--option", o]);
    }
    run_ok(
        cmd.args(["-g", "-r", name, "-l"])
            .arg(&dest)
            .arg(server.addr.ip().to_string())
            .arg(server.addr.port().to_string()),
    )
    .await;
    assert_same_file(&dest, data);
}

#[tokio::test]
async fn atftp_windowsize_and_tsize() {
    let server = TestServer::start(config_for_tests()).await;
    let data = pseudo_random_bytes(5 * 1024 * 1024 + 5, 5);
    server.put("ios.bin", &data);
    atftp_get(
        &server,
        "ios.bin",
        &["blksize 1468", "windowsize 16"],
        &data,
    )
    .await;
    atftp_get(
        &server,
        "ios.bin",
        &["blksize 8192", "windowsize 16"],
        &data,
    )
    .await;
    atftp_get(&server, "ios.bin", &["tsize 0"], &data).await;
    atftp_get(
        &server,
        "ios.bin",
        &["tsize 0", "blksize 1468", "windowsize 4"],
        &data,
    )
    .await;
    let info = server.settled().await;
    let done = completed(&info);
    assert_eq!(done.len(), 4);
    assert!(done.iter().all(|t| t.bytes == data.len() as u64));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_real_clients_get_identical_copies() {
    let server = TestServer::start(config_for_tests()).await;
    let data = pseudo_random_bytes(20 * 1024 * 1024, 6);
    server.put("c9300-universalk9.17.09.05.SPA.bin", &data);
    let want = hex::encode(Md5::digest(&data));
    let url = server.url("c9300-universalk9.17.09.05.SPA.bin");
    let host = server.addr.ip().to_string();
    let port = server.addr.port().to_string();
    // Output goes through md5sum, not to disk: 100 copies of 20 MB are not written anywhere.
    let mut jobs = Vec::new();
    for i in 0..100 {
        let script = match i % 3 {
            0 => format!("curl -sS --fail --max-time 600 --tftp-blksize 8192 -o - {url} | md5sum"),
            1 => format!("curl -sS --fail --max-time 600 --tftp-blksize 65464 -o - {url} | md5sum"),
            _ => format!(
                "atftp --option 'blksize 8192' --option 'windowsize 8' -g \
                 -r c9300-universalk9.17.09.05.SPA.bin -l /dev/stdout {host} {port} | md5sum"
            ),
        };
        jobs.push(tokio::spawn(async move {
            let out = run_ok(Command::new("bash").args(["-o", "pipefail", "-c", &script])).await;
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        }));
    }
    for (i, job) in jobs.into_iter().enumerate() {
        assert_eq!(job.await.unwrap(), want, "client {i} got different bytes");
    }
    let info = server.settled().await;
    assert_eq!(completed(&info).len(), 100);
    server.stop().await;
}
