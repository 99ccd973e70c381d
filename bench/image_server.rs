//! fleetup's HTTP image server (and, once built in, its SCP/SFTP one) with one fixed grant,
//! for `bench/wan.sh`.
//!
//! `fleetup serve` issues a path token only to a running device job and ends it with the job;
//! the benchmark has no device, so this holds one grant for the given files for as long as it
//! runs, with the servers' default settings except the connection caps (every benchmark
//! client comes from one address).
//!
//! Usage: image-bench-server [--http ADDR] ROOT FILE...
//! Prints `http-token TOKEN`, then `ready` once every listener is bound.

use std::net::SocketAddr;
use std::path::PathBuf;

use fleetup::grants::Grants;
use fleetup::image_http::{self, ImageHttpConfig, ImageServer};
use fleetup::shutdown::Shutdown;
use fleetup::transfers::Transfers;

const USAGE: &str = "usage: image-bench-server [--http ADDR] ROOT FILE...";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut http: Option<SocketAddr> = None;
    let mut rest = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--http" => http = Some(args.next().ok_or(USAGE)?.parse()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => rest.push(a),
        }
    }
    let (root, files) = rest.split_first().ok_or(USAGE)?;
    if files.is_empty() {
        return Err(USAGE.into());
    }
    let root = PathBuf::from(root);
    let grants = Grants::new();
    let transfers = Transfers::new();
    let shutdown = Shutdown::new();

    // Held until the end: dropping a guard ends its grant.
    let mut guards = Vec::new();
    if let Some(addr) = http {
        let config = ImageHttpConfig {
            max_connections: 10_000,
            max_per_client: 10_000,
            ..ImageHttpConfig::default()
        };
        let server = ImageServer::new(root.clone(), config, grants.clone(), transfers.clone())?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let token = grants.issue_token(files.to_vec());
        println!("http-token {}", token.name());
        guards.push(token);
        let s = shutdown.clone();
        shutdown.tasks.spawn(async move {
            if let Err(e) = image_http::run(listener, server, false, s).await {
                eprintln!("image-bench-server: HTTP: {e}");
            }
        });
    }
    println!("ready");
    Shutdown::signal().await;
    shutdown.shutdown_and_wait().await;
    drop(guards);
    Ok(())
}
