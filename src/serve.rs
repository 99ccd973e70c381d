//! `fleetup serve`: the database, the image store, the HTTP API and the file servers in one
//! process, stopped together by one [`Shutdown`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{self, ApiToken, AppState, ServiceInfo, TokenSource};
use crate::config::{Listen, LogFormat, parse_size};
use crate::images::ImageStore;
use crate::rollout::{Clock, Engine, EngineSettings, FileServers};
use crate::shutdown::Shutdown;
use crate::store::{DatabaseUrl, Db};
use crate::transfers::Transfers;

/// Flags of `fleetup serve`; each also comes from `FLEETUP_*` or the config file.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// YAML file with settings named like the long flags (e.g. `data-dir: /var/lib/fleetup`).
    #[arg(long, env = "FLEETUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the database (fleetup.db), images/ and generated secrets live.
    #[arg(
        long,
        env = "FLEETUP_DATA_DIR",
        default_value = "./fleetup-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// The database: `sqlite://PATH` (the default: fleetup.db in the data directory) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`.
    #[arg(long, env = "FLEETUP_DATABASE_URL", value_name = "URL")]
    pub database: Option<DatabaseUrl>,
    /// This node's name, shown in the rollout leases it holds and in `GET /api/v1/nodes`
    /// (default: the host name). Nodes that share a database need names of their own.
    #[arg(long, env = "FLEETUP_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// How long a rollout stays this node's without a renewal, in seconds (at least 2): on a
    /// shared database another node takes it over once its holder has not renewed it that long.
    #[arg(long, env = "FLEETUP_LEASE", default_value_t = 15, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease: u64,
    /// The URL other nodes reach this node's API at, to fetch images it has and they lack
    /// (default: `http://` and the `--http` address, with the host name for an unspecified
    /// address).
    #[arg(long, env = "FLEETUP_ADVERTISE_URL", value_name = "URL")]
    pub advertise_url: Option<String>,
    /// Largest total size of the images this node fetched from other nodes (by SHA-256); the
    /// least recently used go first (e.g. 20GiB).
    #[arg(long, env = "FLEETUP_IMAGE_CACHE_MAX", default_value = "20GiB", value_parser = parse_size, value_name = "SIZE")]
    pub image_cache_max: u64,
    /// Address of the HTTP API and dashboard.
    #[arg(
        long,
        env = "FLEETUP_HTTP",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub http: SocketAddr,
    /// Address of the TFTP server, or `off`.
    #[arg(
        long,
        env = "FLEETUP_TFTP",
        default_value = "0.0.0.0:69",
        value_name = "ADDR|off"
    )]
    pub tftp: Listen,
    /// Address of the FTP server, or `off`.
    #[arg(
        long,
        env = "FLEETUP_FTP",
        default_value = "0.0.0.0:21",
        value_name = "ADDR|off"
    )]
    pub ftp: Listen,
    /// Address of the HTTP image server (devices `copy http://…/j/TOKEN/IMAGE`), or `off`.
    #[arg(
        long,
        env = "FLEETUP_IMAGE_HTTP",
        default_value = "0.0.0.0:80",
        value_name = "ADDR|off"
    )]
    pub image_http: Listen,
    /// Address of the HTTPS image server, or `off`; needs --image-https-cert and
    /// --image-https-key.
    #[arg(
        long,
        env = "FLEETUP_IMAGE_HTTPS",
        default_value = "off",
        value_name = "ADDR|off"
    )]
    pub image_https: Listen,
    /// Address of the SCP/SFTP image server, or `off`. IOS's `copy scp:` always connects to
    /// port 22, which usually belongs to the host's own sshd: give this server an address of
    /// its own (e.g. `10.0.0.5:22`).
    #[arg(
        long,
        env = "FLEETUP_IMAGE_SCP",
        default_value = "off",
        value_name = "ADDR|off"
    )]
    pub image_scp: Listen,
    /// Allow read-only API calls (GET) without a token.
    #[arg(long, env = "FLEETUP_READ_OPEN")]
    pub read_open: bool,
    /// Largest image accepted by upload (e.g. 4GiB, 500M).
    #[arg(long, env = "FLEETUP_MAX_IMAGE_SIZE", default_value = "4GiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_image_size: u64,
    /// Devices worked on at the same time across all rollouts.
    #[arg(
        long,
        env = "FLEETUP_MAX_CONCURRENT_DEVICES",
        default_value = "100",
        value_name = "N"
    )]
    pub max_concurrent_devices: usize,
    /// How long in-flight HTTP requests may finish after a shutdown signal.
    #[arg(
        long,
        env = "FLEETUP_SHUTDOWN_GRACE",
        default_value = "5",
        value_name = "SECONDS"
    )]
    pub shutdown_grace: u64,
    /// HTTP connections served at once (event streams included); beyond it new connections
    /// wait in the kernel's accept queue.
    #[arg(
        long,
        env = "FLEETUP_HTTP_MAX_CONNECTIONS",
        default_value = "512",
        value_name = "N"
    )]
    pub http_max_connections: usize,
    /// Seconds a client may take to send a request's line and headers (also the idle time
    /// allowed between requests on a kept-alive connection) before it is closed.
    #[arg(
        long,
        env = "FLEETUP_HTTP_HEADER_TIMEOUT",
        default_value = "15",
        value_name = "SECONDS"
    )]
    pub http_header_timeout: u64,
    /// Attempts per webhook delivery (the first included) before it is given up.
    #[arg(
        long,
        env = "FLEETUP_NOTIFY_ATTEMPTS",
        default_value = "5",
        value_name = "N"
    )]
    pub notify_attempts: u32,
    /// Milliseconds before a webhook delivery's first retry; each next delay doubles (up to
    /// five minutes).
    #[arg(
        long,
        env = "FLEETUP_NOTIFY_RETRY_MS",
        default_value = "1000",
        value_name = "MS"
    )]
    pub notify_retry_ms: u64,
    /// Seconds one webhook attempt may take (connecting and the answer) before it is retried.
    #[arg(
        long,
        env = "FLEETUP_NOTIFY_TIMEOUT",
        default_value = "10",
        value_name = "SECONDS"
    )]
    pub notify_timeout: u64,
    /// Whether a rollout whose playbook does not say needs a second person's approval before
    /// it starts (a playbook's `approval:` wins).
    #[arg(
        long,
        env = "FLEETUP_APPROVAL",
        value_enum,
        default_value = "none",
        value_name = "none|required"
    )]
    pub approval: crate::playbook::Approval,
    /// PEM file of extra certificate authorities trusted for https webhooks (an internal
    /// CA), besides the system's.
    #[arg(long, env = "FLEETUP_NOTIFY_CA", value_name = "FILE")]
    pub notify_ca: Option<PathBuf>,
    /// Re-read every device's facts in the background this often (`24h`, `30m`, `90s`), a few
    /// at a time and never on a device a rollout works on, so that compliance stays true
    /// (docs/golden.md); `off` (the default) reads facts only when asked or upgrading.
    #[arg(
        long,
        env = "FLEETUP_FACTS_REFRESH",
        default_value = "off",
        value_name = "DURATION",
        value_parser = crate::golden::refresh::parse_interval
    )]
    pub facts_refresh: crate::golden::refresh::Interval,
    /// Service-wide webhook targets: the config file's `notify:` list (no flag of its own).
    #[arg(skip)]
    pub notify: Vec<crate::notify::Target>,
    /// Source-of-truth syncs: the config file's `sync:` list (no flag of its own; docs/sync.md).
    #[arg(skip)]
    pub sync: Vec<crate::sync::schedule::Scheduled>,
    #[command(flatten)]
    pub tftp_options: crate::tftp::TftpArgs,
    #[command(flatten)]
    pub ftp_options: crate::ftp::FtpArgs,
    #[command(flatten)]
    pub image_http_options: crate::image_http::ImageHttpArgs,
    #[command(flatten)]
    pub image_scp_options: crate::image_ssh::ImageSshArgs,
}

/// Parses an empty command line, to get every flag's default.
#[derive(clap::Parser)]
struct Defaults {
    #[command(flatten)]
    serve: ServeArgs,
}

impl Default for ServeArgs {
    /// The flags' defaults, with the file servers off (they bind privileged ports).
    fn default() -> Self {
        use clap::Parser;
        let mut args = Defaults::try_parse_from(["fleetup"])
            .map(|d| d.serve)
            .unwrap_or_else(|e| panic!("the defaults of `serve` do not parse: {e}"));
        args.tftp = Listen::Off;
        args.ftp = Listen::Off;
        args.image_http = Listen::Off;
        args.image_https = Listen::Off;
        args.image_scp = Listen::Off;
        args
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Database {
        path: DatabaseUrl,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("cannot open the image store: {0}")]
    Images(#[from] crate::images::ImageError),
    #[error("cannot read or create the API token in {path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Bind(String),
    #[error("{0}")]
    Ftp(#[from] crate::ftp::FtpError),
    #[error("{0}")]
    ImageHttp(#[from] crate::image_http::ImageHttpError),
    #[error("{0}")]
    ImageSsh(#[from] crate::image_ssh::ImageSshError),
    #[error("cannot start the rollout engine: {0}")]
    Engine(crate::rollout::RolloutError),
    #[error("{0}")]
    Locked(#[from] DataDirError),
    #[error("--notify-ca {path}: {why}")]
    NotifyCa { path: PathBuf, why: String },
}

/// Why the data directory could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "data directory {dir} is in use by another fleetup service ({holder}); two services on one data directory could reload a device twice: stop the other one, or give this one another --data-dir"
    )]
    InUse { dir: PathBuf, holder: String },
    #[error("cannot lock the data directory through {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive lock on a data directory (`flock` on `DATA_DIR/lock`), held for the life of
/// one service; the kernel releases it when the process ends, however it ends.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    /// Take the lock or say who holds it. The file holds the holder's PID, for that message.
    pub fn acquire(dir: &std::path::Path) -> Result<DataDirLock, DataDirError> {
        use std::io::{Read, Seek, Write};
        let path = dir.join("lock");
        let io = |source| DataDirError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The holder wrote its PID; an unreadable or empty file still means "locked".
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("PID {pid}"),
                    Err(_) => "PID unknown".to_string(),
                };
                return Err(DataDirError::InUse {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// Explain a failed bind in one line that names the flag to change.
pub(crate) fn bind_error(
    what: &str,
    flag: &str,
    addr: SocketAddr,
    err: &std::io::Error,
) -> ServeError {
    let hint = match err.kind() {
        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            "ports below 1024 need root or CAP_NET_BIND_SERVICE; choose another with {flag} (e.g. {flag} {}:{}) or disable it with {flag} off",
            addr.ip(),
            addr.port() as u32 + 6900
        ),
        std::io::ErrorKind::AddrInUse => {
            format!(
                "another program already uses it; stop it or choose another address with {flag}"
            )
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!("this machine has no such address; choose one of its own with {flag}")
        }
        _ => format!("choose another address with {flag}"),
    };
    ServeError::Bind(format!("cannot listen for {what} on {addr}: {err}; {hint}"))
}

/// A running service, as tests, `demo` and `serve` use it.
pub struct Service {
    pub http_addr: SocketAddr,
    pub tftp_addr: Option<SocketAddr>,
    pub ftp_addr: Option<SocketAddr>,
    /// The HTTP and HTTPS image servers, when on.
    pub http_image_addr: Option<SocketAddr>,
    pub https_image_addr: Option<SocketAddr>,
    /// The SCP/SFTP image server (`--image-scp`).
    pub scp_addr: Option<SocketAddr>,
    /// The one-time grants (path tokens, accounts) the rollout engine issues and the image
    /// servers check (tests may issue their own).
    pub grants: crate::grants::Grants,
    pub(crate) token_source: TokenSource,
    pub state: AppState,
    pub shutdown: Shutdown,
    grace: Duration,
    /// Released when the service is dropped or stopped.
    _lock: DataDirLock,
}

impl Service {
    /// Open the data directory, bind every listener, then start serving.
    pub async fn start(
        args: &ServeArgs,
        token_from_env: Option<String>,
    ) -> Result<Service, ServeError> {
        Self::start_with_clock(args, token_from_env, Clock::System).await
    }

    /// Like [`Service::start`], with the rollout engine on the given clock (tests).
    pub async fn start_with_clock(
        args: &ServeArgs,
        token_from_env: Option<String>,
        clock: Clock,
    ) -> Result<Service, ServeError> {
        raise_open_files_limit();
        // Read before anything starts: a bad file is said at start, not at the first delivery.
        let notify_roots = match &args.notify_ca {
            Some(path) => {
                crate::notify::read_ca_file(path).map_err(|why| ServeError::NotifyCa {
                    path: path.clone(),
                    why,
                })?
            }
            None => Vec::new(),
        };
        let data_dir = args.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| ServeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        // Before the database is opened: a second service must not even run its migrations.
        let lock = DataDirLock::acquire(&data_dir)?;
        let db_path = args
            .database
            .clone()
            .unwrap_or_else(|| DatabaseUrl::in_data_dir(&data_dir));
        let db = Db::connect(&db_path, &data_dir)
            .await
            .map_err(|source| ServeError::Database {
                path: db_path.clone(),
                source,
            })?;
        let mut images =
            ImageStore::open(data_dir.join("images"), db.clone(), args.max_image_size).await?;
        let (token, token_source) =
            ApiToken::load_or_create(&data_dir, token_from_env).map_err(|source| {
                ServeError::Token {
                    path: data_dir.join("api-token"),
                    source,
                }
            })?;
        // The first token is the first admin token; the others are the store's.
        let bootstrap = db
            .ensure_bootstrap_token(crate::access::BOOTSTRAP_NAME, &token.hash())
            .await
            .map_err(|source| ServeError::Database {
                path: db_path.clone(),
                source,
            })?;
        if bootstrap.revoked_at.is_some() {
            tracing::warn!(
                "the service's first token ({}) was revoked: only the tokens made with `fleetup token create` are accepted",
                crate::access::BOOTSTRAP_NAME
            );
        }
        let tokens =
            crate::api::Tokens::load(&db)
                .await
                .map_err(|source| ServeError::Database {
                    path: db_path.clone(),
                    source,
                })?;

        let http = tokio::net::TcpListener::bind(args.http)
            .await
            .map_err(|e| bind_error("HTTP", "--http", args.http, &e))?;
        let http_addr = http
            .local_addr()
            .map_err(|e| bind_error("HTTP", "--http", args.http, &e))?;
        let node_name = args.node_name.clone().unwrap_or_else(host_name);
        let advertise = args
            .advertise_url
            .clone()
            .unwrap_or_else(|| advertised(http_addr));
        images.configure_fetch(
            &node_name,
            Some(token.secret().to_string()),
            args.image_cache_max,
        );

        let shutdown = Shutdown::new();
        let transfers = Transfers::new();
        let servers = start_file_servers(
            &FileServerPlan {
                tftp: args.tftp,
                tftp_options: &args.tftp_options,
                ftp: args.ftp,
                ftp_options: &args.ftp_options,
                image_http: args.image_http,
                image_https: args.image_https,
                image_http_options: &args.image_http_options,
                image_scp: args.image_scp,
                image_scp_options: &args.image_scp_options,
                data_dir: &data_dir,
            },
            images.dir(),
            &transfers,
            &shutdown,
        )
        .await?;

        let info = ServiceInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            http: Some(http_addr.to_string()),
            tftp: servers.tftp.map(|a| a.to_string()),
            ftp: servers.ftp.map(|a| a.to_string()),
            image_http: servers.http.map(|a| a.to_string()),
            image_https: servers.https.map(|a| a.to_string()),
            scp: servers.scp.map(|a| a.to_string()),
        };
        let (tftp_addr, ftp_addr, scp_addr) = (servers.tftp, servers.ftp, servers.scp);
        let (http_image_addr, https_image_addr) = (servers.http, servers.https);
        let grants = servers.grants.clone();
        let engine = Engine::start(
            db.clone(),
            images.clone(),
            transfers.clone(),
            clock,
            servers,
            EngineSettings {
                max_concurrent_devices: args.max_concurrent_devices,
                approval: args.approval,
                node: node_name.clone(),
                url: Some(advertise),
                lease: Duration::from_secs(args.lease),
            },
            shutdown.clone(),
        )
        .await
        .map_err(ServeError::Engine)?;
        let notify = crate::notify::start(
            db.clone(),
            engine.subscribe(),
            crate::notify::NotifySettings {
                targets: args.notify.clone(),
                attempts: args.notify_attempts.max(1),
                first_retry: Duration::from_millis(args.notify_retry_ms),
                timeout: Duration::from_secs(args.notify_timeout.max(1)),
                extra_roots: notify_roots,
                ..Default::default()
            },
            shutdown.clone(),
        );
        if !args.sync.is_empty() {
            crate::sync::schedule::start(
                db.clone(),
                args.sync.clone(),
                engine.subscribe(),
                shutdown.clone(),
            );
        }
        if let Some(interval) = args.facts_refresh.0 {
            crate::golden::refresh::start(db.clone(), interval, shutdown.clone());
        }
        let tokens = Arc::new(tokens);
        if db.backend() == crate::store::Backend::Postgres {
            // Tokens made or revoked through another node take effect here too.
            let (t, d, s) = (tokens.clone(), db.clone(), shutdown.clone());
            shutdown.tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(TOKEN_REFRESH) => {}
                        _ = s.requested() => return,
                    }
                    if let Err(e) = t.reload(&d).await {
                        tracing::warn!(error = %e, "cannot re-read the API tokens");
                    }
                }
            });
        }
        let state = AppState {
            db: db.clone(),
            images,
            transfers,
            engine,
            tokens,
            read_open: args.read_open,
            started: Instant::now(),
            info: Arc::new(info),
            views: Arc::default(),
            notify,
            job_calls: Arc::default(),
            site_images: Arc::default(),
        };

        let app = api::app(state.clone());
        let limits = api::listen::HttpLimits {
            max_connections: args.http_max_connections,
            header_timeout: Duration::from_secs(args.http_header_timeout.max(1)),
        };
        shutdown
            .tasks
            .spawn(api::listen::serve(http, app, limits, shutdown.clone()));

        Ok(Service {
            http_addr,
            tftp_addr,
            ftp_addr,
            http_image_addr,
            https_image_addr,
            scp_addr,
            grants,
            token_source,
            state,
            shutdown,
            grace: Duration::from_secs(args.shutdown_grace),
            _lock: lock,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Stop every part; in-flight requests get the grace period, then are cut off.
    pub async fn stop(self) {
        self.shutdown.token.cancel();
        self.shutdown.tasks.close();
        if tokio::time::timeout(self.grace, self.shutdown.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_seconds = self.grace.as_secs(),
                "requests still running after the grace period were cut off"
            );
        }
        self.state.db.close().await;
    }
}

/// The file servers a process runs over its image directory (`serve`, and a site agent), and
/// how.
pub(crate) struct FileServerPlan<'a> {
    pub tftp: Listen,
    pub tftp_options: &'a crate::tftp::TftpArgs,
    pub ftp: Listen,
    pub ftp_options: &'a crate::ftp::FtpArgs,
    pub image_http: Listen,
    pub image_https: Listen,
    pub image_http_options: &'a crate::image_http::ImageHttpArgs,
    pub image_scp: Listen,
    pub image_scp_options: &'a crate::image_ssh::ImageSshArgs,
    /// Where the FTP and SCP/SFTP servers keep what they generate (host key, certificates).
    pub data_dir: &'a Path,
}

/// Bind and start the file servers that are on, serving the files under `root`, under one
/// `Shutdown`; where each listens, with the FTP accounts and the grants (HTTP path tokens,
/// SCP/SFTP accounts) that device jobs issue.
pub(crate) async fn start_file_servers(
    plan: &FileServerPlan<'_>,
    root: &Path,
    transfers: &Transfers,
    shutdown: &Shutdown,
) -> Result<FileServers, ServeError> {
    let mut servers = FileServers::default();
    if let Listen::On(addr) = plan.tftp {
        let socket = crate::tftp::bind(addr)
            .await
            .map_err(|e| bind_error("TFTP", "--tftp", addr, &e))?;
        let local = socket
            .local_addr()
            .map_err(|e| bind_error("TFTP", "--tftp", addr, &e))?;
        servers.tftp = Some(local);
        let root = root.to_path_buf();
        let config = plan.tftp_options.to_config();
        let (t, s) = (transfers.clone(), shutdown.clone());
        shutdown.tasks.spawn(async move {
            if let Err(e) = crate::tftp::run(socket, root, config, t, s).await {
                tracing::error!(error = %e, "TFTP server stopped");
            }
        });
    }

    if let Listen::On(addr) = plan.ftp {
        let config = plan.ftp_options.to_config(plan.data_dir)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| bind_error("FTP", "--ftp", addr, &e))?;
        let local = listener
            .local_addr()
            .map_err(|e| bind_error("FTP", "--ftp", addr, &e))?;
        servers.ftp = Some(local);
        servers.ftp_credentials = Some(config.credentials.clone());
        let root = root.to_path_buf();
        let (t, s) = (transfers.clone(), shutdown.clone());
        shutdown.tasks.spawn(async move {
            if let Err(e) = crate::ftp::run(listener, root, config, t, s).await {
                tracing::error!(error = %e, "FTP server stopped");
            }
        });
    }

    start_image_http(plan, root, transfers, shutdown, &mut servers).await?;
    if let Listen::On(addr) = plan.image_scp {
        let config = plan.image_scp_options.to_config(plan.data_dir)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| bind_error("SCP/SFTP", "--image-scp", addr, &e))?;
        let local = listener
            .local_addr()
            .map_err(|e| bind_error("SCP/SFTP", "--image-scp", addr, &e))?;
        servers.scp = Some(local);
        let root = root.to_path_buf();
        let (g, t, s) = (servers.grants.clone(), transfers.clone(), shutdown.clone());
        shutdown.tasks.spawn(async move {
            if let Err(e) = crate::image_ssh::run(listener, root, config, g, t, s).await {
                tracing::error!(error = %e, "SCP/SFTP image server stopped");
            }
        });
    }
    Ok(servers)
}

/// Bind and start the HTTP and HTTPS image servers that are on, sharing one server (its
/// connection limits) and `servers.grants`, into which the device jobs issue tokens.
async fn start_image_http(
    plan: &FileServerPlan<'_>,
    root: &Path,
    transfers: &Transfers,
    shutdown: &Shutdown,
    servers: &mut FileServers,
) -> Result<(), ServeError> {
    let listeners = [
        (plan.image_http, false, "image HTTP", "--image-http"),
        (plan.image_https, true, "image HTTPS", "--image-https"),
    ];
    if listeners.iter().all(|(l, ..)| *l == Listen::Off) {
        return Ok(());
    }
    let config = plan
        .image_http_options
        .to_config(plan.image_https != Listen::Off)?;
    let server = crate::image_http::ImageServer::new(
        root.to_path_buf(),
        config,
        servers.grants.clone(),
        transfers.clone(),
    )?;
    for (listen, https, what, flag) in listeners {
        let Listen::On(addr) = listen else { continue };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| bind_error(what, flag, addr, &e))?;
        let local = listener
            .local_addr()
            .map_err(|e| bind_error(what, flag, addr, &e))?;
        if https {
            servers.https = Some(local);
        } else {
            servers.http = Some(local);
        }
        let (server, s) = (server.clone(), shutdown.clone());
        shutdown.tasks.spawn(async move {
            if let Err(e) = crate::image_http::run(listener, server, https, s).await {
                tracing::error!(error = %e, "{what} server stopped");
            }
        });
    }
    Ok(())
}

/// Raise the soft limit on open files to the hard limit, once per process: every HTTP and FTP
/// connection and every TFTP transfer holds a descriptor, and the usual soft limit of 1024 is
/// reached by a thousand idle clients. The caps (`--http-max-connections`,
/// `--ftp-max-sessions`, `--tftp-max-transfers`, `--image-http-max-connections`) keep the
/// total below it.
fn raise_open_files_limit() {
    #[cfg(target_os = "linux")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            use rustix::process::{Resource, getrlimit, setrlimit};
            let limit = getrlimit(Resource::Nofile);
            if limit.current.is_some() && limit.current != limit.maximum {
                let raised = rustix::process::Rlimit {
                    current: limit.maximum,
                    maximum: limit.maximum,
                };
                match setrlimit(Resource::Nofile, raised) {
                    Ok(()) => tracing::info!(
                        from = limit.current,
                        to = limit.maximum,
                        "open files limit raised to the hard limit"
                    ),
                    Err(e) => tracing::warn!(
                        current = limit.current,
                        error = %e,
                        "cannot raise the open files limit"
                    ),
                }
            }
        });
    }
}

/// `fleetup serve` until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs, token_from_env: Option<String>) -> Result<(), ServeError> {
    let service = Service::start(&args, token_from_env).await?;
    print_banner(&service, &args);
    Shutdown::signal().await;
    tracing::info!("shutdown requested; stopping");
    service.stop().await;
    tracing::info!("stopped");
    Ok(())
}

fn print_banner(service: &Service, args: &ServeArgs) {
    let token_line = match &service.token_source {
        TokenSource::Environment => "API token: from FLEETUP_API_TOKEN".to_string(),
        TokenSource::File {
            path,
            created: true,
        } => {
            format!(
                "API token: generated and saved in {} (mode 0600)",
                path.display()
            )
        }
        TokenSource::File {
            path,
            created: false,
        } => format!("API token: in {}", path.display()),
    };
    let listen = |l: Option<SocketAddr>| l.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
    eprintln!("fleetup {} serving", env!("CARGO_PKG_VERSION"));
    eprintln!("  dashboard and API: {}/", service.base_url());
    eprintln!(
        "  TFTP: {}   FTP: {}   HTTP: {}   HTTPS: {}   SCP/SFTP: {}",
        listen(service.tftp_addr),
        listen(service.ftp_addr),
        listen(service.http_image_addr),
        listen(service.https_image_addr),
        listen(service.scp_addr)
    );
    eprintln!("  data: {}", args.data_dir.display());
    if let Some(db) = &args.database {
        eprintln!("  database: {db}");
    }
    eprintln!("  {token_line}");
}

/// Install the tracing subscriber for the service's structured logs.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("FLEETUP_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,russh=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The host's name, the default node name.
/// How often a node on a shared database re-reads the API tokens (made or revoked elsewhere).
const TOKEN_REFRESH: Duration = Duration::from_secs(2);

/// The URL other nodes reach an API listening on `addr` at, when `--advertise-url` is not given.
fn advertised(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://{}:{}", host_name(), addr.port())
    } else {
        format!("http://{addr}")
    }
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "fleetup".to_string())
}
