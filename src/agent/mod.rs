//! `fleetup agent`: a site's file server near its devices.
//!
//! An agent runs at one site. It fetches each image the site's devices still have to copy
//! from the service once, by SHA-256 (`GET /api/v1/blobs/sha256/…`), so a 1 GB image crosses
//! the WAN once per site rather than once per switch, keeps it in a bounded cache
//! ([`crate::images::cache`]), and serves it to the site's devices over TFTP on their LAN.
//!
//! It talks to the service only through its API, with a token of the service (an agent token
//! of its site is the least it needs, `crate::access`): every heartbeat
//! (`POST /api/v1/agents/heartbeat`) says which images it holds checked, where its file
//! server listens and what it is transferring, and the answer lists the images its site
//! needs. The node that drives a device of the site tells it to copy from the agent once the
//! agent reports the image (`crate::rollout::job`); sites without a live agent copy from the
//! serve nodes.
//!
//! With `--drive` (the default) and an agent token of its site (or an admin token), the agent
//! also drives the site's devices:
//! the node that leads a rollout hands it the jobs of the site's devices, and it runs them here,
//! recording every step through the API ([`jobs`]).
//!
//! An image is served only under its own name and only once its SHA-256 matched: a fetch
//! takes the name only after the check, and every second the agent looks at each file's size,
//! modification time and inode, takes a changed file out of service at once, checks it again,
//! and fetches it anew when it no longer matches.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) mod jobs;

use crate::config::Listen;
use crate::images::ImageRecord;
use crate::images::cache::{Cache, Source, Wanted};
use crate::shutdown::Shutdown;
use crate::transfers::{TransferInfo, Transfers};

/// One transfer of an agent's file server, as its heartbeat reports it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentTransfer {
    /// `tftp`.
    pub protocol: String,
    /// The device's address as the agent saw it.
    pub client: String,
    pub file: String,
    /// `active`, `completed` or `failed`.
    pub state: String,
    #[serde(deserialize_with = "whole")]
    pub bytes: u64,
    #[serde(default, deserialize_with = "optional_whole")]
    pub total: Option<u64>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

impl From<&TransferInfo> for AgentTransfer {
    fn from(t: &TransferInfo) -> Self {
        AgentTransfer {
            protocol: t.protocol.as_str().to_string(),
            client: t.client.to_string(),
            file: t.file.clone(),
            state: serde_json::to_value(&t.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            bytes: t.bytes,
            total: t.total,
            started_at: t.started_at.to_string(),
            finished_at: t.finished_at.map(|f| f.to_string()),
            error: t.error.clone(),
        }
    }
}

/// `fleetup agent` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The site whose devices this agent serves: the inventory's `site` of those devices.
    #[arg(long, env = "FLEETUP_AGENT_SITE", value_name = "NAME")]
    pub site: String,
    /// The fleetup service's API, any serve node (e.g. `https://fleetup.example.net`).
    #[arg(long, env = "FLEETUP_SERVER", value_name = "URL")]
    pub server: String,
    /// A token of the service: an agent token of this site (`fleetup token create --role agent
    /// --site SITE --name NAME`), which makes this site's agent calls and nothing else; an
    /// admin token works too, an operator token only serves files.
    #[arg(
        long,
        env = "FLEETUP_AGENT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        required_unless_present = "token_file",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// The token, read from this file instead (a Docker or systemd secret, a file of mode
    /// 0600): surrounding white space is dropped. It never shows in the process list.
    #[arg(long, env = "FLEETUP_AGENT_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// This agent's name, as the dashboard and `GET /api/v1/agents` show it (default: the host
    /// name and the site, `HOST@SITE`).
    #[arg(long, env = "FLEETUP_AGENT_NAME", value_name = "NAME")]
    pub name: Option<String>,
    /// Where the image cache (images/) and the lock live.
    #[arg(
        long,
        env = "FLEETUP_DATA_DIR",
        default_value = "./fleetup-agent",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// Address of the agent's TFTP server, or `off`.
    #[arg(
        long,
        env = "FLEETUP_TFTP",
        default_value = "0.0.0.0:69",
        value_name = "ADDR|off"
    )]
    pub tftp: Listen,
    #[command(flatten)]
    pub tftp_options: crate::tftp::TftpArgs,
    /// Address of the agent's FTP server, or `off` (the jobs it drives get one-time accounts).
    #[arg(
        long,
        env = "FLEETUP_FTP",
        default_value = "off",
        value_name = "ADDR|off"
    )]
    pub ftp: Listen,
    #[command(flatten)]
    pub ftp_options: crate::ftp::FtpArgs,
    /// Address of the agent's HTTP image server, or `off` (the jobs it drives get path tokens).
    #[arg(
        long,
        env = "FLEETUP_IMAGE_HTTP",
        default_value = "off",
        value_name = "ADDR|off"
    )]
    pub image_http: Listen,
    /// Address of the agent's HTTPS image server, or `off`.
    #[arg(
        long,
        env = "FLEETUP_IMAGE_HTTPS",
        default_value = "off",
        value_name = "ADDR|off"
    )]
    pub image_https: Listen,
    #[command(flatten)]
    pub image_http_options: crate::image_http::ImageHttpArgs,
    /// Address of the agent's SCP/SFTP image server, or `off` (the jobs it drives get one-time
    /// accounts).
    #[arg(
        long,
        env = "FLEETUP_IMAGE_SCP",
        default_value = "off",
        value_name = "ADDR|off"
    )]
    pub image_scp: Listen,
    #[command(flatten)]
    pub image_scp_options: crate::image_ssh::ImageSshArgs,
    /// The address the site's devices reach this agent's file servers at (default: the
    /// address the first of them listens on, when it names one).
    #[arg(long, env = "FLEETUP_AGENT_ADDRESS", value_name = "IP")]
    pub address: Option<IpAddr>,
    /// Largest total size of the cached images; the least recently used go first.
    #[arg(long, env = "FLEETUP_IMAGE_CACHE_MAX", default_value = "20GiB", value_parser = crate::config::parse_size, value_name = "SIZE")]
    pub image_cache_max: u64,
    /// Drive the site's devices: claim their jobs from the service and run them here (needs an
    /// agent token of the site or an admin token, since a job carries the device's
    /// credentials; with an operator token the agent only serves files).
    #[arg(long, env = "FLEETUP_AGENT_DRIVE", default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    pub drive: bool,
    /// Device jobs this agent runs at once, at most.
    #[arg(long, env = "FLEETUP_AGENT_MAX_JOBS", default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_jobs: u32,
    /// Seconds between heartbeats (the service counts an agent as gone after three missed).
    #[arg(long, env = "FLEETUP_AGENT_HEARTBEAT", default_value_t = 5, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=300))]
    pub heartbeat: u64,
}

/// What an agent says with each heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentBeat {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(min_length = 1, max_length = 200)]
    pub site: String,
    pub version: String,
    /// Random per process: tells a restart from the same process beating.
    pub instance: String,
    pub started_at: String,
    /// Seconds between its heartbeats.
    #[serde(deserialize_with = "whole")]
    pub heartbeat_seconds: u64,
    /// Where the site's devices reach its TFTP server (`IP:PORT`), when it runs one.
    pub tftp: Option<String>,
    /// The SHA-256 of every image it holds checked, ready to serve.
    pub images: Vec<String>,
    /// Its file server's transfers (the last ones, active first).
    pub transfers: Vec<AgentTransfer>,
    /// It asks to drive its site's devices (`--drive`).
    #[serde(default)]
    pub drive: bool,
    /// The device jobs it holds: their leases are renewed with the heartbeat.
    #[serde(default)]
    pub jobs: Vec<crate::store::runners::HeldJob>,
    /// Where the site's devices reach each of its file servers, by protocol (`tftp`, `ftp`,
    /// `http`, `https`, `scp`, `sftp`).
    #[serde(default)]
    pub servers: std::collections::BTreeMap<String, String>,
}

/// A count as JSON Schema's `integer` means it (`12` or `12.0`), from 0 to `i64::MAX` (the
/// schema's `int64`).
pub(crate) fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..9.0e18).contains(f))
                .map(|f| f as u64)
        })
        .filter(|v| i64::try_from(*v).is_ok())
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a count (0 to 2^63-1)")))
}

/// A signed whole number as JSON Schema's `integer` means it (`-12` or `-12.0`), within `i64`.
pub(crate) fn signed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (-9.2e18..9.2e18).contains(f))
                .map(|f| f as i64)
        })
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number")))
}

fn optional_whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "whole")] u64);
    Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(v)| v))
}

/// The service's answer to a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentOrders {
    /// The images the site's devices still have to copy: the agent fetches those it lacks.
    pub images: Vec<ImageRecord>,
    /// Whether the service hands it the site's jobs (it asked to drive, with an agent token of
    /// its site or an admin token).
    #[serde(default)]
    pub drive: bool,
    /// Why not, when it asked.
    #[serde(default)]
    pub drive_refused: Option<String>,
    /// Jobs it said it holds that it no longer does (taken back, or claimed by another agent
    /// after its lease lapsed): it stops them.
    #[serde(default)]
    pub lost: Vec<crate::store::runners::HeldJob>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] crate::serve::DataDirError),
    #[error(transparent)]
    FileServer(#[from] crate::serve::ServeError),
}

/// The agent's token: `--token`'s, or the content of `--token-file`, trimmed; never empty.
fn token_of(args: &AgentArgs) -> Result<String, AgentError> {
    let token = match (&args.token, &args.token_file) {
        (_, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                AgentError::Usage(format!(
                    "--token-file {}: cannot read the token: {e}",
                    path.display()
                ))
            })?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(AgentError::Usage(format!(
                    "--token-file {} is empty: it must hold a token of the service (an agent \
                     token of this site)",
                    path.display()
                )));
            }
            token
        }
        (Some(token), None) => token.trim().to_string(),
        (None, None) => String::new(),
    };
    if token.is_empty() {
        return Err(AgentError::Usage(
            "--token must be a token of the service (an agent token of this site)".into(),
        ));
    }
    Ok(token)
}

/// At most this many transfers go with a heartbeat.
const TRANSFERS_REPORTED: usize = 50;

/// A running agent.
pub struct Agent {
    pub name: String,
    pub tftp_addr: Option<SocketAddr>,
    /// Its other file servers: FTP, HTTP, HTTPS, SCP/SFTP.
    pub ftp_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub scp_addr: Option<SocketAddr>,
    shutdown: Shutdown,
    _lock: crate::serve::DataDirLock,
}

impl Agent {
    /// Check the flags, take the data directory, start the file server and the heartbeat.
    pub async fn start(args: &AgentArgs) -> Result<Agent, AgentError> {
        let site = args.site.trim();
        if site.is_empty() {
            return Err(AgentError::Usage(
                "--site must name the agent's site".into(),
            ));
        }
        let server = reqwest::Url::parse(&args.server)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                AgentError::Usage(format!(
                    "--server {:?} is not an http:// or https:// URL of the fleetup service",
                    args.server
                ))
            })?;
        let token = token_of(args)?;
        let name = args
            .name
            .clone()
            .unwrap_or_else(|| format!("{}@{site}", crate::serve::host_name()));
        let dir_err = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| AgentError::DataDir { path, source }
        };
        std::fs::create_dir_all(&args.data_dir).map_err(dir_err(&args.data_dir))?;
        let lock = crate::serve::DataDirLock::acquire(&args.data_dir)?;
        let images = args.data_dir.join("images");
        let incoming = images.join(".incoming");
        if incoming.exists() {
            std::fs::remove_dir_all(&incoming).map_err(dir_err(&incoming))?;
        }
        std::fs::create_dir_all(&incoming).map_err(dir_err(&incoming))?;
        let cache = Arc::new(Cache::open(images.clone(), args.image_cache_max));
        // Nothing is served before it is checked: what a previous run fetched is checked
        // against its SHA-256 now, and anything else is removed.
        let kept = cache
            .adopt_fetched()
            .await
            .map_err(|e| AgentError::DataDir {
                path: images.clone(),
                source: std::io::Error::other(e),
            })?;
        if kept > 0 {
            tracing::info!(images = kept, "cached images checked");
        }
        let shutdown = Shutdown::new();
        let transfers = Transfers::new();

        let servers = crate::serve::start_file_servers(
            &crate::serve::FileServerPlan {
                tftp: args.tftp,
                tftp_options: &args.tftp_options,
                ftp: args.ftp,
                ftp_options: &args.ftp_options,
                image_http: args.image_http,
                image_https: args.image_https,
                image_http_options: &args.image_http_options,
                image_scp: args.image_scp,
                image_scp_options: &args.image_scp_options,
                data_dir: &args.data_dir,
            },
            &images,
            &transfers,
            &shutdown,
        )
        .await?;
        let tftp_addr = servers.tftp;
        let listening: Vec<(&str, SocketAddr)> = [
            ("tftp", servers.tftp),
            ("ftp", servers.ftp),
            ("http", servers.http),
            ("https", servers.https),
            ("scp", servers.scp),
            ("sftp", servers.scp),
        ]
        .into_iter()
        .filter_map(|(p, a)| Some((p, a?)))
        .collect();
        let reach_ip = match args.address {
            Some(ip) => Some(ip),
            None => match listening.first() {
                Some((_, a)) if !a.ip().is_unspecified() => Some(a.ip()),
                Some(_) => {
                    return Err(AgentError::Usage(
                        "the file servers listen on every address: say with --address at which address the site's devices reach this agent".into(),
                    ));
                }
                None => None,
            },
        };
        let reach = tftp_addr
            .zip(reach_ip)
            .map(|(a, ip)| SocketAddr::new(ip, a.port()));
        // Where the site's devices reach each file server, by protocol.
        let offered: std::collections::BTreeMap<String, String> = reach_ip
            .map(|ip| {
                listening
                    .iter()
                    .map(|(p, a)| (p.to_string(), SocketAddr::new(ip, a.port()).to_string()))
                    .collect()
            })
            .unwrap_or_default();

        // Take a changed file out of service at once; check it again.
        let watched = cache.clone();
        let s = shutdown.clone();
        shutdown.tasks.spawn(async move {
            loop {
                watched.recheck().await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = s.requested() => return,
                }
            }
        });

        let held = jobs::Held::default();
        let (allowed_tx, allowed) = tokio::sync::watch::channel(false);
        let drive = match reach_ip {
            Some(ip) if args.drive => Some(ip),
            None if args.drive => {
                tracing::warn!(
                    "--drive needs a file server of the agent's own (--tftp, --ftp, --image-http, --image-https or --image-scp): it drives nothing"
                );
                None
            }
            _ => None,
        };
        let beat = Beat {
            service: jobs::Service {
                client: crate::http_client::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap_or_else(|_| crate::http_client::client()),
                server,
                token,
            },
            cache,
            transfers,
            fetching: Arc::default(),
            held: held.clone(),
            allowed: allowed_tx,
            me: AgentBeat {
                name: name.clone(),
                site: site.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                instance: format!("{:016x}", rand::random::<u64>()),
                started_at: crate::store::now_text(),
                heartbeat_seconds: args.heartbeat,
                tftp: reach.map(|a| a.to_string()),
                images: Vec::new(),
                transfers: Vec::new(),
                drive: drive.is_some(),
                jobs: Vec::new(),
                servers: offered,
            },
        };
        if let Some(ip) = drive {
            let driver = Arc::new(jobs::Driver {
                service: beat.service.clone(),
                name: name.clone(),
                site: site.to_string(),
                max_jobs: args.max_jobs as usize,
                heartbeat_seconds: args.heartbeat,
                cache: beat.cache.clone(),
                images_dir: images.clone(),
                reach: ip,
                servers: servers.clone(),
                transfers: beat.transfers.clone(),
                held,
                views: jobs::Views::default(),
                images: jobs::ImageRecords::default(),
                shutdown: shutdown.clone(),
            });
            shutdown.tasks.spawn(driver.run(allowed));
        }
        let every = Duration::from_secs(args.heartbeat);
        let s = shutdown.clone();
        shutdown.tasks.spawn(async move {
            let mut failing = false;
            let mut refused_said = false;
            loop {
                match beat.send().await {
                    Ok(orders) => {
                        if failing {
                            tracing::info!(server = %beat.service.server, "the service answers again");
                            failing = false;
                        }
                        beat.held.lose(&orders.lost);
                        match &orders.drive_refused {
                            Some(why) if !refused_said => {
                                tracing::warn!(%why, "the service hands this agent no device jobs; it serves files only");
                                refused_said = true;
                            }
                            Some(_) => {}
                            None => refused_said = false,
                        }
                        beat.allowed.send_replace(orders.drive);
                        beat.fetch(orders.images);
                    }
                    Err(e) if !failing => {
                        tracing::warn!(server = %beat.service.server, error = %e, "heartbeat refused or unanswered; serving what is cached and trying again");
                        failing = true;
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = s.requested() => return,
                }
            }
        });
        Ok(Agent {
            name,
            tftp_addr,
            ftp_addr: servers.ftp,
            http_addr: servers.http,
            https_addr: servers.https,
            scp_addr: servers.scp,
            shutdown,
            _lock: lock,
        })
    }

    /// Stop the file server and the heartbeat, and wait for them.
    pub async fn stop(self) {
        self.shutdown.shutdown_and_wait().await;
    }
}

struct Beat {
    service: jobs::Service,
    cache: Arc<Cache>,
    transfers: Transfers,
    /// Images being fetched now.
    fetching: Arc<std::sync::Mutex<HashSet<String>>>,
    /// The device jobs it runs.
    held: jobs::Held,
    /// Whether the service hands it jobs, as its last answer said.
    allowed: tokio::sync::watch::Sender<bool>,
    me: AgentBeat,
}

impl Beat {
    async fn send(&self) -> Result<AgentOrders, String> {
        let transfers = self
            .transfers
            .snapshot()
            .iter()
            .take(TRANSFERS_REPORTED)
            .map(AgentTransfer::from)
            .collect();
        let me = AgentBeat {
            images: self.cache.checked(),
            transfers,
            jobs: self.held.list(),
            ..self.me.clone()
        };
        self.service.post("/api/v1/agents/heartbeat", &me).await
    }

    /// Fetch, in the background, each ordered image not being fetched already.
    fn fetch(&self, images: Vec<ImageRecord>) {
        for img in images {
            let fresh = self
                .fetching
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(img.sha256.clone());
            if !fresh {
                continue;
            }
            let (cache, fetching) = (self.cache.clone(), self.fetching.clone());
            let source = Source {
                url: crate::images::blob_url(self.service.server.as_str(), &img.sha256),
                token: Some(self.service.token.clone()),
            };
            let me = self.me.name.clone();
            tokio::spawn(async move {
                let want = Wanted {
                    file_name: img.file_name.to_string(),
                    sha256: img.sha256.clone(),
                    size: img.size,
                };
                if let Err(e) = cache.ensure(&want, &[source], &me).await {
                    tracing::warn!(image = %img.file_name, error = %e, "cannot fetch an image the site needs");
                }
                fetching
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&img.sha256);
            });
        }
    }
}

/// `fleetup agent`: run until SIGINT or SIGTERM.
pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    let agent = Agent::start(&args).await?;
    eprintln!("fleetup {} agent {}", env!("CARGO_PKG_VERSION"), agent.name);
    eprintln!("  site: {}   service: {}", args.site.trim(), args.server);
    let shown = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
    eprintln!("  TFTP: {}", shown(agent.tftp_addr));
    eprintln!(
        "  FTP: {}   HTTP: {}   HTTPS: {}   SCP/SFTP: {}",
        shown(agent.ftp_addr),
        shown(agent.http_addr),
        shown(agent.https_addr),
        shown(agent.scp_addr)
    );
    eprintln!("  data: {}", args.data_dir.display());
    Shutdown::signal().await;
    tracing::info!("shutdown requested; stopping");
    agent.stop().await;
    Ok(())
}
