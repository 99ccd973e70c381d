//! `fleetup demo`: the whole product on loopback in one command — the service, a simulated
//! fleet of mixed Cisco devices, demo images and a rollout from `playbooks/demo.yml`, with one
//! faulty device so that a failure is visible too.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Listen;
use crate::images::{ImageMeta, pseudo_random_bytes};
use crate::rollout::model::EventKind;
use crate::serve::{ServeArgs, Service};
use crate::shutdown::Shutdown;
use crate::sim::{Fault, Lab, LabConfig};

/// The playbook the demo runs (also in the repository as `playbooks/demo.yml`).
pub(crate) const PLAYBOOK: &str = include_str!("../playbooks/demo.yml");

/// Images the demo generates: one per persona of the lab, named as Cisco names them.
const IMAGES: [(&str, &str); 3] = [
    ("c2960x-universalk9-mz.152-7.E8.bin", "ios"),
    ("cat9k_iosxe.17.09.04a.SPA.bin", "iosxe"),
    ("nxos64-cs.10.2.5.M.bin", "nxos"),
];

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Address of the dashboard and API.
    #[arg(
        long,
        env = "FLEETUP_HTTP",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub http: SocketAddr,
    /// Simulated devices (c2960x, c9300 and n9k in turn).
    #[arg(long, default_value_t = 12)]
    pub devices: usize,
    /// First loopback address of the simulated fleet.
    #[arg(long, default_value = "127.0.10.1")]
    pub base_ip: Ipv4Addr,
    /// Fast settings (small images, no copy rate limit, short boots): for tests and a quick look.
    #[arg(long)]
    pub fast: bool,
    /// Keep the demo's data here instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Stop by itself once the rollout has ended (instead of waiting for Ctrl-C).
    #[arg(long)]
    pub exit_when_done: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot prepare the demo's data directory: {0}")]
    Dir(std::io::Error),
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    #[error("cannot start the simulated fleet: {0}")]
    Lab(#[from] crate::sim::LabError),
    #[error("cannot import the lab's inventory: {0}")]
    Inventory(String),
    #[error("cannot create the demo images: {0}")]
    Images(String),
    #[error("the demo playbook was refused: {0}")]
    Rollout(#[from] crate::rollout::RolloutError),
}

fn is_root() -> bool {
    // Root can bind 22 and 69 on every loopback address; others get free ports instead.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

pub async fn run(args: DemoArgs, shutdown: Shutdown) -> Result<(), DemoError> {
    let root = is_root();
    let temp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("fleetup-demo-")
                .tempdir()
                .map_err(DemoError::Dir)?;
            temp.path().to_path_buf()
        }
    };
    let token = crate::api::random_secret();
    let tftp_port = if root { 69 } else { 0 };
    let mut serve_args = ServeArgs {
        data_dir: data_dir.join("service"),
        http: args.http,
        tftp: Listen::On(SocketAddr::from(([127, 0, 0, 1], tftp_port))),
        ftp: Listen::On(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..ServeArgs::default()
    };
    let service = match Service::start(&serve_args, Some(token.clone())).await {
        Ok(s) => s,
        Err(e) if tftp_port == 69 => {
            tracing::warn!(error = %e, "port 69 is taken; the demo uses a free port for TFTP");
            serve_args.tftp = Listen::On(SocketAddr::from(([127, 0, 0, 1], 0)));
            Service::start(&serve_args, Some(token.clone())).await?
        }
        Err(e) => return Err(e.into()),
    };
    println!();
    println!("  fleetup demo");
    println!("  dashboard:  {}/", service.base_url());
    println!("  API token:  {token}");
    println!("  (sign in to the dashboard with the token; Ctrl-C stops everything)");
    println!();

    let lab_shutdown = Shutdown::new();
    let lab = Lab::start(
        LabConfig {
            devices: args.devices.max(1),
            base_ip: args.base_ip,
            ssh_port: if root { 22 } else { 0 },
            personas: vec!["c2960x".into(), "c9300".into(), "n9k".into()],
            state_dir: data_dir.join("lab"),
            boot_time: if args.fast {
                Duration::from_millis(300)
            } else {
                Duration::from_secs(4)
            },
            rate: if args.fast { None } else { Some(600 * 1024) },
            tftp_port: service.tftp_addr.map(|a| a.port()).unwrap_or(69),
            ftp_port: service.ftp_addr.map(|a| a.port()).unwrap_or(21),
            scp_port: service.scp_addr.map(|a| a.port()).unwrap_or(22),
            ..LabConfig::default()
        },
        lab_shutdown.clone(),
    )
    .await?;
    let devices = lab.devices();
    // One device fails its copy verification, so the dashboard shows a failure and its reason.
    if let Some(faulty) = devices.get(devices.len().saturating_sub(2)) {
        lab.set_fault(&faulty.name, Fault::CorruptDownload);
        println!(
            "  {} has an injected fault (corrupted download): it will fail verify /md5",
            faulty.name
        );
    }

    let specs = crate::inventory::yaml::parse(&lab.inventory_yaml())
        .map_err(|e| DemoError::Inventory(e.to_string()))?;
    service
        .state
        .db
        .upsert_devices(&specs)
        .await
        .map_err(|e| DemoError::Inventory(e.to_string()))?;
    let size = if args.fast {
        1024 * 1024
    } else {
        12 * 1024 * 1024
    };
    for (i, (name, platform)) in IMAGES.iter().enumerate() {
        let images = &service.state.images;
        let stored = async {
            let mut upload = images.begin_upload().await?;
            upload
                .write(&pseudo_random_bytes(size + i * 4099, 7 + i as u64))
                .await?;
            upload
                .finish(ImageMeta {
                    file_name: name.to_string(),
                    platform: Some(platform.to_string()),
                    version: None,
                })
                .await
        };
        stored.await.map_err(|e| DemoError::Images(e.to_string()))?;
    }
    let rollout = service
        .state
        .engine
        .submit(PLAYBOOK, Some(crate::access::BOOTSTRAP_NAME))
        .await?;
    println!(
        "  {} simulated devices on {}…, rollout {} started from playbooks/demo.yml",
        devices.len(),
        args.base_ip,
        rollout.id
    );
    println!(
        "  follow it in the dashboard, or: fleetup follow {} --server {} --token …",
        rollout.id,
        service.base_url()
    );
    println!();

    let mut events = service.state.engine.subscribe();
    let id = rollout.id.clone();
    let done = async {
        loop {
            match events.recv().await {
                Ok(ev)
                    if ev.rollout_id == id
                        && matches!(
                            ev.kind,
                            EventKind::Completed
                                | EventKind::CompletedWithFailures
                                | EventKind::Halted
                                | EventKind::Aborted
                        ) =>
                {
                    println!("  rollout {}: {}", ev.kind, ev.message);
                    if args.exit_when_done {
                        return;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await
                }
            }
        }
    };
    tokio::select! {
        _ = shutdown.requested() => {}
        _ = done => {}
    }
    println!("  stopping the demo…");
    service.stop().await;
    lab_shutdown.shutdown_and_wait().await;
    Ok(())
}
