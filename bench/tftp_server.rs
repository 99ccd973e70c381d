//! fleetup's TFTP server on its own, for `bench/tftp.sh` (the service wires the same
//! `tftp::run` into `fleetup serve`).
//!
//! Usage: tftp-bench-server LISTEN_ADDR ROOT_DIR

use std::net::SocketAddr;
use std::path::PathBuf;

use fleetup::shutdown::Shutdown;
use fleetup::tftp::{self, TftpConfig};
use fleetup::transfers::Transfers;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: tftp-bench-server LISTEN_ADDR ROOT_DIR";
    let addr: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let root = PathBuf::from(args.next().ok_or(usage)?);
    let config = TftpConfig {
        // The benchmark runs every client from 127.0.0.1.
        max_per_client: 10_000,
        ..TftpConfig::default()
    };
    let socket = tftp::bind(addr).await?;
    println!("listening on {}", socket.local_addr()?);
    let shutdown = Shutdown::new();
    let server = tokio::spawn(tftp::run(
        socket,
        root,
        config,
        Transfers::new(),
        shutdown.clone(),
    ));
    Shutdown::signal().await;
    shutdown.shutdown_and_wait().await;
    server.await??;
    Ok(())
}
