//! The `fleetup` command: parses the command line and hands off to the library.

use clap::{Parser, Subcommand};
use fleetup::shutdown::Shutdown;

#[derive(Parser, Debug)]
#[command(
    name = "fleetup",
    version,
    about = "Network fleet firmware upgrade orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A simulated fleet of Cisco devices (SSH, IOS CLI, real TFTP/FTP downloads, reloads).
    Lab(fleetup::sim::LabArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let shutdown = Shutdown::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            Shutdown::signal().await;
            signal.token.cancel();
        });
        let result = match cli.command {
            Command::Lab(args) => fleetup::sim::run_lab(args, shutdown.clone()).await,
        };
        shutdown.shutdown_and_wait().await;
        result.map_err(anyhow::Error::from)
    })
}
