//! fleetup's built-in TFTP server, which devices pull images from with
//! `copy tftp://SERVER/FILE flash:`, and the client the device simulator uses.
//!
//! - `packet`: the wire format.
//! - `session`: the transfer state machines, sans IO (no socket, no clock).
//! - `server`: the tokio driver: one socket for requests, one task and socket per transfer.
//! - `client`: the tokio driver of a download.
//! - `netascii`: line-ending conversion for `netascii` mode.
//!
//! Memory per transfer is bounded by `windowsize × blksize` (the blocks in flight); file data
//! comes from sequential reads through the kernel page cache, so any number of transfers of
//! one image share a single cached copy of it.

pub mod client;
pub(crate) mod netascii;
pub mod packet;
pub(crate) mod server;
pub(crate) mod session;
mod sockopt;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use server::TftpError;

/// `fleetup serve` flags of the TFTP server (the listen address itself is `--tftp`).
#[derive(clap::Args, Debug, Clone)]
pub struct TftpArgs {
    /// Largest block size (RFC 2348) granted to a client; larger requests are lowered to it.
    #[arg(id = "tftp-max-blksize", long = "tftp-max-blksize", env = "FLEETUP_TFTP_MAX_BLKSIZE", default_value_t = packet::MAX_BLKSIZE,
          value_parser = clap::value_parser!(u16).range(8..=65464))]
    pub max_blksize: u16,

    /// Largest window (RFC 7440 windowsize, in blocks) granted to a client.
    #[arg(id = "tftp-max-windowsize", long = "tftp-max-windowsize", env = "FLEETUP_TFTP_MAX_WINDOWSIZE", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_windowsize: u16,

    /// Largest window in bytes (windowsize × blksize) granted to a client: a window travels
    /// as one burst and must fit the client's socket receive buffer, or its tail is lost on
    /// every window.
    #[arg(
        long = "tftp-max-window-bytes",
        env = "FLEETUP_TFTP_MAX_WINDOW_BYTES",
        default_value_t = 65536
    )]
    pub max_window_bytes: usize,

    /// Transfers served at once; further requests get an error packet ("server busy").
    #[arg(
        id = "tftp-max-transfers",
        long = "tftp-max-transfers",
        env = "FLEETUP_TFTP_MAX_TRANSFERS",
        default_value_t = 1000
    )]
    pub max_transfers: usize,

    /// Transfers served at once to one client address.
    #[arg(
        id = "tftp-max-per-client",
        long = "tftp-max-per-client",
        env = "FLEETUP_TFTP_MAX_PER_CLIENT",
        default_value_t = 4
    )]
    pub max_per_client: usize,

    /// The longest wait for an answer before a packet is sent again, unless the client
    /// negotiates its own `timeout` (fractions allowed, e.g. 0.5). Once a transfer has timed an
    /// answer, the server resends sooner: RFC 6298's timer over the measured round trip, at
    /// least 200 ms.
    #[arg(id = "tftp-timeout", long = "tftp-timeout", env = "FLEETUP_TFTP_TIMEOUT", default_value = "1", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Consecutive full timeouts after which a transfer is abandoned: a dead client frees its
    /// slot within timeout × retries (plus the quicker resends before, less than 2 × timeout).
    #[arg(id = "tftp-retries", long = "tftp-retries", env = "FLEETUP_TFTP_RETRIES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub retries: u32,

    /// Seconds a transfer may go without progress before it is abandoned, whatever `timeout`
    /// the client negotiates (up to 255 s, which with the retries would hold a slot for
    /// over 20 minutes).
    #[arg(id = "tftp-max-stall", long = "tftp-max-stall", env = "FLEETUP_TFTP_MAX_STALL", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600), value_name = "SECONDS")]
    pub max_stall: u64,

    /// Bytes asked for the request socket's receive buffer (SO_RCVBUF), so a burst of requests
    /// waits in the kernel instead of being dropped; the log says what the kernel granted.
    #[arg(id = "tftp-request-buffer", long = "tftp-request-buffer", env = "FLEETUP_TFTP_REQUEST_BUFFER",
          default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub request_buffer: usize,

    /// Microseconds a transfer polls its socket for the client's answer before it sleeps,
    /// when the client has been answering that fast and fewer transfers run than CPUs; 0
    /// turns polling off. Waking a sleeping thread costs tens of microseconds (more in a
    /// virtual machine), a large part of each round trip to a client on the same host or
    /// rack; devices that answer in milliseconds are never polled for.
    #[arg(id = "tftp-busy-poll", long = "tftp-busy-poll", env = "FLEETUP_TFTP_BUSY_POLL", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub busy_poll_us: u64,

    /// Accept uploads (write requests) into this directory, e.g. for configuration backups.
    /// Without it the server is read-only. An upload is written to a temporary file and
    /// renamed only once complete; existing files are never overwritten.
    #[arg(
        id = "tftp-write-dir",
        long = "tftp-write-dir",
        env = "FLEETUP_TFTP_WRITE_DIR"
    )]
    pub write_dir: Option<PathBuf>,

    /// Largest upload accepted, in bytes.
    #[arg(id = "tftp-max-upload", long = "tftp-max-upload", env = "FLEETUP_TFTP_MAX_UPLOAD", default_value_t = 64 * 1024 * 1024)]
    pub max_upload: u64,

    /// Further directories served read-only after the image store (repeat the flag, or
    /// separate with `:` in the environment variable).
    #[arg(
        id = "tftp-extra-root",
        long = "tftp-extra-root",
        env = "FLEETUP_TFTP_EXTRA_ROOT",
        value_delimiter = ':'
    )]
    pub extra_roots: Vec<PathBuf>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.01..=255.0).contains(&secs) {
        return Err(format!("timeout {secs} s is outside 0.01..=255 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runtime settings of the TFTP server.
#[derive(Debug, Clone, PartialEq)]
pub struct TftpConfig {
    pub max_blksize: u16,
    pub max_windowsize: u16,
    pub max_window_bytes: usize,
    pub max_transfers: usize,
    pub max_per_client: usize,
    pub timeout: Duration,
    pub retries: u32,
    /// Longest time a transfer may go without progress, whatever the client negotiates.
    pub max_stall: Duration,
    /// SO_RCVBUF asked for the request socket.
    pub request_buffer: usize,
    /// How long a transfer polls for a fast client's answer before sleeping (zero: never).
    pub busy_poll: Duration,
    pub write_dir: Option<PathBuf>,
    pub max_upload: u64,
    pub extra_roots: Vec<PathBuf>,
}

impl Default for TftpConfig {
    fn default() -> Self {
        Self {
            max_blksize: packet::MAX_BLKSIZE,
            max_windowsize: 64,
            max_window_bytes: 65536,
            max_transfers: 1000,
            max_per_client: 4,
            timeout: Duration::from_secs(1),
            retries: 5,
            max_stall: Duration::from_secs(30),
            request_buffer: 4 * 1024 * 1024,
            busy_poll: Duration::from_micros(100),
            write_dir: None,
            max_upload: 64 * 1024 * 1024,
            extra_roots: Vec::new(),
        }
    }
}

impl TftpArgs {
    pub(crate) fn to_config(&self) -> TftpConfig {
        TftpConfig {
            max_blksize: self.max_blksize,
            max_windowsize: self.max_windowsize,
            max_window_bytes: self.max_window_bytes,
            max_transfers: self.max_transfers,
            max_per_client: self.max_per_client,
            timeout: self.timeout,
            retries: self.retries,
            max_stall: Duration::from_secs(self.max_stall),
            request_buffer: self.request_buffer,
            busy_poll: Duration::from_micros(self.busy_poll_us),
            write_dir: self.write_dir.clone(),
            max_upload: self.max_upload,
            extra_roots: self.extra_roots.clone(),
        }
    }
}

/// Bind the TFTP request socket. Works with port 0; with an unspecified address (`0.0.0.0`,
/// `::`) each transfer still answers from the address its request was sent to.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = tokio::net::UdpSocket::bind(addr).await.map_err(|e| {
        let hint = if addr.port() < 1024 && e.kind() == std::io::ErrorKind::PermissionDenied {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; choose another with --tftp)"
        } else {
            ""
        };
        std::io::Error::new(
            e.kind(),
            format!("cannot bind the TFTP server to {addr}: {e}{hint}"),
        )
    })?;
    sockopt::enable_pktinfo(&socket)?;
    Ok(socket)
}

/// Serve TFTP on `socket` (from [`bind`]) until `shutdown` is requested. Files come from
/// `root` (the image store directory) and the configured extra roots. Every transfer is
/// registered in `transfers`; transfer tasks are tracked by `shutdown.tasks`.
pub async fn run(
    socket: tokio::net::UdpSocket,
    root: PathBuf,
    config: TftpConfig,
    transfers: crate::transfers::Transfers,
    shutdown: crate::shutdown::Shutdown,
) -> Result<(), TftpError> {
    server::Server::new(root, config, transfers, shutdown)?
        .serve(socket)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tftp: TftpArgs,
    }

    #[test]
    fn flag_defaults_match_config_defaults() {
        let cli = Cli::try_parse_from(["fleetup"]).unwrap();
        assert_eq!(cli.tftp.to_config(), TftpConfig::default());
    }

    #[test]
    fn flags_parse_into_config() {
        let cli = Cli::try_parse_from([
            "fleetup",
            "--tftp-max-blksize",
            "1468",
            "--tftp-timeout",
            "0.5",
            "--tftp-write-dir",
            "/srv/backups",
            "--tftp-extra-root",
            "/srv/a",
            "--tftp-extra-root",
            "/srv/b",
            "--tftp-max-per-client",
            "2",
        ])
        .unwrap();
        let c = cli.tftp.to_config();
        assert_eq!(c.max_blksize, 1468);
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(c.write_dir, Some(PathBuf::from("/srv/backups")));
        assert_eq!(
            c.extra_roots,
            vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]
        );
        assert_eq!(c.max_per_client, 2);
    }

    #[test]
    fn bad_flag_values_are_refused_with_a_reason() {
        for args in [
            ["fleetup", "--tftp-max-blksize", "4"],
            ["fleetup", "--tftp-max-blksize", "70000"],
            ["fleetup", "--tftp-timeout", "0"],
            ["fleetup", "--tftp-timeout", "soon"],
            ["fleetup", "--tftp-retries", "0"],
            ["fleetup", "--tftp-max-windowsize", "0"],
        ] {
            let err = Cli::try_parse_from(args).err().map(|e| e.to_string());
            assert!(
                err.is_some_and(|e| e.contains(args[1])),
                "{args:?} must be refused"
            );
        }
    }
}
