//! fleetup's HTTP and SCP/SFTP image servers with one fixed grant each, for `bench/wan.sh`.
//!
//! `fleetup serve` issues a path token or an account only to a running device job and ends it
//! with the job;
//! the benchmark has no device, so this holds one grant for the given files for as long as it
//! runs, with the servers' default settings except the connection caps (every benchmark
//! client comes from one address).
//!
//! Usage: image-bench-server [--http ADDR] [--scp ADDR] ROOT FILE...
//! Prints `http-token TOKEN` and `scp-account USER PASSWORD`, then `ready` once every listener
//! is bound. The SCP server's host key is kept in ROOT's parent directory, as serve keeps it in
//! its data directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use fleetup::grants::Grants;
use fleetup::image_http::{self, ImageHttpConfig, ImageServer};
use fleetup::image_ssh::{self, ImageSshArgs};
use fleetup::shutdown::Shutdown;
use fleetup::transfers::Transfers;

const USAGE: &str = "usage: image-bench-server [--http ADDR] [--scp ADDR] ROOT FILE...";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut http: Option<SocketAddr> = None;
    let mut scp: Option<SocketAddr> = None;
    let mut rest = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--http" => http = Some(args.next().ok_or(USAGE)?.parse()?),
            "--scp" => scp = Some(args.next().ok_or(USAGE)?.parse()?),
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
    if let Some(addr) = scp {
        // serve's defaults (`fleetup serve --help`), the caps raised.
        let args = ImageSshArgs {
            max_sessions: 10_000,
            max_per_client: 10_000,
            auth_timeout: 30,
            idle_timeout: 300,
            lockout_after: 5,
            lockout_seconds: 300,
        };
        let data_dir = root.parent().unwrap_or(&root).to_path_buf();
        let config = args.to_config(&data_dir)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let account = grants.issue_account(files.to_vec());
        println!(
            "scp-account {} {}",
            account.name(),
            account.secret().unwrap_or_default()
        );
        guards.push(account);
        let (root, grants, transfers, s) = (
            root.clone(),
            grants.clone(),
            transfers.clone(),
            shutdown.clone(),
        );
        shutdown.tasks.spawn(async move {
            if let Err(e) = image_ssh::run(listener, root, config, grants, transfers, s).await {
                eprintln!("image-bench-server: SCP: {e}");
            }
        });
    }
    println!("ready");
    Shutdown::signal().await;
    shutdown.shutdown_and_wait().await;
    drop(guards);
    Ok(())
}
