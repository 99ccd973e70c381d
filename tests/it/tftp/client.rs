//! fleetup's TFTP client (used by the device simulator).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use fleetup::tftp::client::{ClientError, DownloadOptions, download, download_from};

use super::support::*;

/// atftpd, run on a free port of a random loopback address. Killed on drop.
struct Atftpd {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Atftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn atftpd(files: &[(&str, &[u8])]) -> Option<Atftpd> {
    let bin = ["/usr/sbin/atftpd", "/usr/bin/atftpd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let dir = tempfile::tempdir().unwrap();
    // atftpd drops to user nobody: the directory and files must be world-readable.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, data) in files {
        write_file(dir.path(), name, data);
        std::fs::set_permissions(
            dir.path().join(name),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let ip = random_loopback();
    let port = free_udp_port(ip);
    let child = std::process::Command::new(bin)
        .args([
            "--daemon",
            "--no-fork",
            "--logfile",
            "/dev/null",
            "--no-multicast",
        ])
        .args([
            "--bind-address",
            &ip.to_string(),
            "--port",
            &port.to_string(),
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Atftpd {
        child,
        addr: SocketAddr::from((ip, port)),
        _dir: dir,
    })
}

#[tokio::test]
async fn client_downloads_from_atftpd_byte_exact() {
    let data = pseudo_random_bytes(3 * 1024 * 1024 + 17, 11);
    let server = atftpd(&[("ios.bin", &data)])
        .expect("this test needs atftpd (Debian package atftpd; scripts/test installs it)");
    // atftpd needs a moment to bind; the client's retransmissions cover that.
    let opts_list = [
        DownloadOptions {
            timeout: Duration::from_millis(300),
            retries: 20,
            ..DownloadOptions::default()
        },
        DownloadOptions {
            blksize: Some(1468),
            windowsize: Some(8),
            timeout: Duration::from_millis(300),
            retries: 20,
            ..DownloadOptions::default()
        },
    ];
    for opts in opts_list {
        let mut sink = Vec::new();
        let mut last = (0, None);
        let n = download(server.addr, "ios.bin", &opts, &mut sink, &mut |b, t| {
            last = (b, t)
        })
        .await
        .unwrap();
        assert_eq!(n, data.len() as u64);
        assert!(sink == data, "download differs from the file ({opts:?})");
        assert_eq!(last, (data.len() as u64, Some(data.len() as u64)));
    }
    let mut sink = Vec::new();
    let err = download_from(
        std::net::IpAddr::V4(random_loopback()),
        server.addr,
        "missing.bin",
        &DownloadOptions {
            timeout: Duration::from_millis(300),
            retries: 20,
            ..DownloadOptions::default()
        },
        &mut sink,
        &mut |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::NotFound), "{err:?}");
}

#[tokio::test]
async fn client_against_fleetup_server_with_options_and_progress() {
    let server = TestServer::start(config_for_tests()).await;
    let data = pseudo_random_bytes(2 * 1024 * 1024 + 3, 12);
    server.put("ios.bin", &data);
    let device_ip = random_loopback();
    for opts in [
        DownloadOptions::default(),
        DownloadOptions {
            blksize: Some(1468),
            windowsize: Some(16),
            ..DownloadOptions::default()
        },
        DownloadOptions {
            blksize: Some(8192),
            request_tsize: false,
            ..DownloadOptions::default()
        },
    ] {
        let mut sink = Vec::new();
        let mut calls = 0u64;
        let mut last = (0, None);
        let n = download_from(
            std::net::IpAddr::V4(device_ip),
            server.addr,
            "ios.bin",
            &opts,
            &mut sink,
            &mut |b, t| {
                calls += 1;
                last = (b, t);
            },
        )
        .await
        .unwrap();
        assert_eq!(n, data.len() as u64);
        assert!(sink == data, "{opts:?}");
        assert!(calls > 1);
        let tsize = opts.request_tsize.then_some(data.len() as u64);
        assert_eq!(last, (data.len() as u64, tsize));
    }
    let info = server.settled().await;
    assert_eq!(completed(&info).len(), 3);
    assert!(
        info.iter()
            .all(|t| t.client.ip() == std::net::IpAddr::V4(device_ip))
    );
    let mut sink = Vec::new();
    let err = download(
        server.addr,
        "../etc/passwd",
        &DownloadOptions::default(),
        &mut sink,
        &mut |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::AccessViolation(_)), "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn client_times_out_when_nobody_answers() {
    // A bound socket that never answers.
    let silent = tokio::net::UdpSocket::bind((random_loopback(), 0))
        .await
        .unwrap();
    let opts = DownloadOptions {
        timeout: Duration::from_millis(50),
        retries: 3,
        ..DownloadOptions::default()
    };
    let mut sink = Vec::new();
    let err = download(
        silent.local_addr().unwrap(),
        "ios.bin",
        &opts,
        &mut sink,
        &mut |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
}
