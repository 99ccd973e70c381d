//! Helpers shared by the TFTP tests.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;

pub use fleetup::images::pseudo_random_bytes;

pub fn write_file(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap();
}

pub use crate::support::random_loopback;

/// A UDP port that was free a moment ago on `ip`, for third-party servers that cannot be
/// told to use port 0.
pub fn free_udp_port(ip: Ipv4Addr) -> u16 {
    let s = UdpSocket::bind(SocketAddr::from((ip, 0))).unwrap();
    s.local_addr().unwrap().port()
}

use std::net::IpAddr;
use std::time::Duration;

use fleetup::shutdown::Shutdown;
use fleetup::tftp::{self, TftpConfig, TftpError};
use fleetup::transfers::{TransferInfo, TransferState, Transfers};

/// fleetup's TFTP server on port 0 of a random loopback address, over a fresh image store.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub transfers: Transfers,
    pub shutdown: Shutdown,
    pub task: tokio::task::JoinHandle<Result<(), TftpError>>,
}

impl TestServer {
    pub async fn start(config: TftpConfig) -> Self {
        Self::start_on(IpAddr::V4(random_loopback()), config).await
    }

    pub async fn start_on(ip: IpAddr, config: TftpConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, ip, config).await
    }

    pub async fn start_in(dir: tempfile::TempDir, ip: IpAddr, config: TftpConfig) -> Self {
        // Bound before the task starts: requests sent from now on are queued by the kernel.
        let socket = tftp::bind(SocketAddr::new(ip, 0)).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let transfers = Transfers::new();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(tftp::run(
            socket,
            dir.path().to_path_buf(),
            config,
            transfers.clone(),
            shutdown.clone(),
        ));
        TestServer {
            addr,
            dir,
            transfers,
            shutdown,
            task,
        }
    }

    pub fn put(&self, name: &str, data: &[u8]) {
        write_file(self.dir.path(), name, data);
    }

    pub fn url(&self, name: &str) -> String {
        format!("tftp://{}/{name}", self.addr)
    }

    /// Wait until no transfer is active (the server side finished too), then return the
    /// registry's view. Bounded, so a stuck transfer fails the test instead of hanging it.
    pub async fn settled(&self) -> Vec<TransferInfo> {
        for _ in 0..3000 {
            if self.transfers.active_count() == 0 {
                return self.transfers.snapshot();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("transfers still active: {:?}", self.transfers.snapshot());
    }

    pub async fn stop(self) {
        self.shutdown.shutdown_and_wait().await;
        self.task.await.unwrap().unwrap();
    }
}

pub fn completed(info: &[TransferInfo]) -> Vec<&TransferInfo> {
    info.iter()
        .filter(|t| t.state == TransferState::Completed)
        .collect()
}

/// Run a command; panic with its output unless it succeeds.
pub async fn run_ok(cmd: &mut tokio::process::Command) -> std::process::Output {
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn config_for_tests() -> TftpConfig {
    TftpConfig {
        max_per_client: 200,
        ..TftpConfig::default()
    }
}

/// A bare UDP socket for speaking TFTP by hand.
pub async fn raw_socket(ip: IpAddr) -> tokio::net::UdpSocket {
    tokio::net::UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .unwrap()
}

/// Receive one datagram (bounded wait, so a missing answer fails instead of hanging).
pub async fn recv(sock: &tokio::net::UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 70_000];
    let (n, from) = tokio::time::timeout(Duration::from_secs(20), sock.recv_from(&mut buf))
        .await
        .expect("no answer from the server")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

/// Send a request and expect an ERROR packet; returns its code and message.
pub async fn expect_error(server: SocketAddr, datagram: &[u8]) -> (u16, String) {
    let sock = raw_socket(server.ip()).await;
    sock.send_to(datagram, server).await.unwrap();
    let (pkt, from) = recv(&sock).await;
    assert_eq!(from.ip(), server.ip());
    match fleetup::tftp::packet::Packet::decode(&pkt).unwrap() {
        fleetup::tftp::packet::Packet::Error { code, message } => (code, message),
        other => panic!("expected an ERROR, got {other}"),
    }
}

pub fn rrq(name: &str, options: &[(&str, &str)]) -> Vec<u8> {
    use fleetup::tftp::packet::{Mode, Packet, Request};
    Packet::Rrq(Request {
        filename: name.to_string(),
        mode: Mode::Octet,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
    .to_vec()
}
