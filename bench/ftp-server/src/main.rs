//! `fleetup-ftp-bench ROOT ADDR USER PASSWORD [LOW-HIGH]`: serve ROOT over FTP on ADDR and print
//! `listening on <addr>` once bound, so the bench script can wait for that line.

use fleetup::ftp::{FtpConfig, FtpCredentials};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    let [_, root, addr, user, password, rest @ ..] = &args[..] else {
        return Err("usage: fleetup-ftp-bench ROOT ADDR USER PASSWORD [LOW-HIGH]".into());
    };
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
    println!("listening on {}", listener.local_addr()?);
    let config = FtpConfig {
        credentials: FtpCredentials::new(user, password),
        passive_ports: rest.first().map(|r| r.parse()).transpose()?,
        max_per_client: 100,
        ..FtpConfig::default()
    };
    let shutdown = fleetup::shutdown::Shutdown::new();
    let sd = shutdown.clone();
    tokio::spawn(async move {
        fleetup::shutdown::Shutdown::signal().await;
        sd.token.cancel();
    });
    let transfers = fleetup::transfers::Transfers::new();
    fleetup::ftp::run(listener, root.into(), config, transfers, shutdown).await?;
    Ok(())
}
