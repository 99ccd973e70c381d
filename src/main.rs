//! The `fleetup` command: argument parsing only; the work is done in the library.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::Value;

use fleetup::client::{Client, ClientArgs, segment};
use fleetup::config::{self, LogFormat};
use fleetup::serve::{self, ServeArgs};
use fleetup::shutdown::Shutdown;

/// Upgrade the OS of a fleet of network devices: inventory, built-in TFTP/FTP image servers,
/// SSH drivers and YAML rollouts.
#[derive(Parser, Debug)]
#[command(name = "fleetup", version, about)]
struct Cli {
    /// Log format of the service's structured logs.
    #[arg(long, global = true, env = "FLEETUP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service: HTTP API and dashboard, TFTP, FTP, rollout engine.
    Serve(ServeArgs),
    /// A simulated fleet of Cisco devices (SSH, IOS CLI, real TFTP/FTP downloads, reloads).
    Lab(fleetup::sim::LabArgs),
    /// The whole product on loopback: service, simulated fleet, demo images and a rollout.
    Demo(fleetup::demo::DemoArgs),
    /// Manage the device inventory of a running service.
    Inventory {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: InventoryAction,
    },
    /// Manage the image store of a running service.
    Image {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: ImageAction,
    },
    /// Submit a playbook to a running service and follow the rollout until it ends.
    /// Exit code 0 only if every targeted device ended upgraded (or already current).
    Run {
        #[command(flatten)]
        client: ClientArgs,
        /// The playbook (YAML or JSON).
        playbook: PathBuf,
        /// Validate and print the plan (waves, devices, what is skipped and why); touch nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON event per line instead of progress bars.
        #[arg(long)]
        json: bool,
        /// Submit and return at once, printing the rollout id.
        #[arg(long)]
        detach: bool,
    },
    /// Follow an existing rollout.
    Follow {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Upgrade one device end to end (a one-device rollout) and follow it.
    Upgrade {
        #[command(flatten)]
        client: ClientArgs,
        /// Device name in the inventory.
        name: String,
        /// Image file name in the image store.
        #[arg(long)]
        image: String,
        /// tftp or ftp.
        #[arg(long, default_value = "tftp")]
        protocol: String,
        /// Address at which the device reaches fleetup's file server.
        #[arg(long, value_name = "ADDR")]
        via: Option<String>,
        /// Copy and verify only; no boot change, no reload.
        #[arg(long)]
        stage_only: bool,
        /// Pause between reachability probes while the device reboots.
        #[arg(long, default_value_t = 10, value_name = "SECONDS")]
        poll: u64,
        /// One JSON event per line instead of progress bars.
        #[arg(long)]
        json: bool,
    },
    /// Look at and manage single devices of a running service.
    Device {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: DeviceAction,
    },
}

#[derive(Subcommand, Debug)]
enum InventoryAction {
    /// Import (create or update) devices from a YAML inventory; all or nothing.
    Import { file: PathBuf },
    /// Print the inventory as YAML.
    Export {
        /// Include inline passwords and enable secrets.
        #[arg(long)]
        with_secrets: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ImageAction {
    /// Upload an image file to the store (MD5 and SHA-256 are computed by the service).
    Add {
        file: PathBuf,
        /// ios, iosxe or nxos (guessed from the file name when absent).
        #[arg(long)]
        platform: Option<String>,
        /// Version as `show version` prints it, e.g. 15.2(7)E8 (guessed when absent).
        #[arg(long)]
        version: Option<String>,
    },
    /// List stored images.
    List,
    /// Delete an image (refused while a rollout uses it).
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
enum DeviceAction {
    /// List devices (optionally filtered).
    List {
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        platform: Option<String>,
    },
    /// Show one device as the service knows it.
    Show { name: String },
    /// Remove a device from the inventory.
    Delete { name: String },
    /// Forget the device's pinned SSH host key; the next key seen is trusted.
    Trust { name: String },
    /// Log in to the device, read `show version`, and record the facts in the inventory.
    Facts { name: String },
}

/// A shutdown requested by SIGINT or SIGTERM.
fn shutdown_on_signal() -> Shutdown {
    let shutdown = Shutdown::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        Shutdown::signal().await;
        signal.token.cancel();
    });
    shutdown
}

async fn follow_to_exit(c: &Client, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let end = fleetup::client::follow::follow(c, id, json).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"rollout": id, "state": end.state, "all_upgraded": end.all_upgraded})
        );
    } else {
        print_summary(&end.detail);
    }
    Ok(if end.all_upgraded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_plan(plan: &Value) {
    println!("plan for {}", plan["name"].as_str().unwrap_or("?"));
    let p = &plan["plan"];
    for w in p["waves"].as_array().into_iter().flatten() {
        let devices: Vec<String> = w["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                format!(
                    "{} ({} -> {}){}",
                    d["device"].as_str().unwrap_or("?"),
                    d["current_version"].as_str().unwrap_or("?"),
                    d["target_version"]
                        .as_str()
                        .unwrap_or(d["image"].as_str().unwrap_or("?")),
                    if d["downgrade"] == true {
                        " DOWNGRADE: refused unless options.allow_downgrade: true"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        println!(
            "  {}: {} device(s)",
            w["name"].as_str().unwrap_or("?"),
            devices.len()
        );
        for d in devices {
            println!("    {d}");
        }
    }
    let skipped = p["skipped"].as_array().cloned().unwrap_or_default();
    if !skipped.is_empty() {
        println!("  skipped: {}", skipped.len());
        for s in skipped {
            println!(
                "    {}: {}",
                s["device"].as_str().unwrap_or("?"),
                s["reason"].as_str().unwrap_or("?")
            );
        }
    }
    println!(
        "  {} device(s) to upgrade; the rollout halts at {} failure(s)",
        p["total"], p["halt_after_failures"]
    );
}

fn print_summary(detail: &Value) {
    println!(
        "rollout {} {}: {}",
        detail["id"].as_str().unwrap_or("?"),
        detail["state"].as_str().unwrap_or("?"),
        detail["halt_reason"].as_str().unwrap_or("")
    );
    for w in detail["waves"].as_array().into_iter().flatten() {
        for d in w["devices"].as_array().into_iter().flatten() {
            println!(
                "  {:<24} {:<10} {} -> {}  {}",
                d["device"].as_str().unwrap_or("?"),
                d["state"].as_str().unwrap_or("?"),
                d["old_version"].as_str().unwrap_or("?"),
                d["new_version"].as_str().unwrap_or("-"),
                d["error"].as_str().unwrap_or("")
            );
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = apply_config_file(&args) {
        eprintln!("fleetup: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetup: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fleetup: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Export the config file's settings as `FLEETUP_*` variables (flags and real variables win).
fn apply_config_file(args: &[String]) -> anyhow::Result<()> {
    let is_serve = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_some_and(|a| a == "serve");
    if !is_serve {
        return Ok(());
    }
    let Some(path) = config::config_file_from_args(args) else {
        return Ok(());
    };
    let cmd = Cli::command();
    let known: BTreeSet<String> = cmd
        .find_subcommand("serve")
        .map(|s| {
            s.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for (var, value) in config::read_config_file(&path, &known)? {
        if std::env::var_os(&var).is_none() {
            // SAFETY: single-threaded at this point: the runtime has not been started.
            unsafe { std::env::set_var(var, value) };
        }
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            serve::init_logging(cli.log_format);
            let token = std::env::var("FLEETUP_API_TOKEN").ok();
            serve::run(args, token).await?;
        }
        Command::Demo(args) => {
            serve::init_logging(cli.log_format);
            fleetup::demo::run(args, shutdown_on_signal()).await?;
        }
        Command::Lab(args) => {
            serve::init_logging(cli.log_format);
            let shutdown = shutdown_on_signal();
            let result = fleetup::sim::run_lab(args, shutdown.clone()).await;
            shutdown.shutdown_and_wait().await;
            result?;
        }
        Command::Inventory { client, action } => {
            let c = Client::from_args(&client);
            match action {
                InventoryAction::Import { file } => {
                    let r = c.import_inventory(&file).await?;
                    println!(
                        "imported {}: {} created, {} updated, {} unchanged",
                        file.display(),
                        r["created"],
                        r["updated"],
                        r["unchanged"]
                    );
                }
                InventoryAction::Export { with_secrets } => {
                    let path = if with_secrets {
                        "/inventory/export?with_secrets=true"
                    } else {
                        "/inventory/export"
                    };
                    print!("{}", c.get_text(path).await?);
                }
            }
        }
        Command::Image { client, action } => {
            let c = Client::from_args(&client);
            match action {
                ImageAction::Add {
                    file,
                    platform,
                    version,
                } => {
                    let r = c
                        .upload_image(&file, platform.as_deref(), version.as_deref())
                        .await?;
                    println!(
                        "stored {} ({} bytes)\n  md5    {}\n  sha256 {}\n  platform {}  version {}",
                        r["file_name"].as_str().unwrap_or("?"),
                        r["size"],
                        r["md5"].as_str().unwrap_or("?"),
                        r["sha256"].as_str().unwrap_or("?"),
                        r["platform"].as_str().unwrap_or("-"),
                        r["version"].as_str().unwrap_or("-"),
                    );
                }
                ImageAction::List => {
                    let r: Value = c.get_json("/images").await?;
                    println!(
                        "{:<48} {:>12} {:<8} {:<14} MD5",
                        "FILE", "SIZE", "PLATFORM", "VERSION"
                    );
                    for i in r["images"].as_array().into_iter().flatten() {
                        println!(
                            "{:<48} {:>12} {:<8} {:<14} {}",
                            i["file_name"].as_str().unwrap_or("?"),
                            i["size"],
                            i["platform"].as_str().unwrap_or("-"),
                            i["version"].as_str().unwrap_or("-"),
                            i["md5"].as_str().unwrap_or("?"),
                        );
                    }
                }
                ImageAction::Delete { name } => {
                    c.delete(&format!("/images/{}", segment(&name))).await?;
                    println!("deleted {name}");
                }
            }
        }
        Command::Run {
            client,
            playbook,
            dry_run,
            json,
            detach,
        } => {
            let c = Client::from_args(&client);
            let text = std::fs::read_to_string(&playbook)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", playbook.display()))?;
            if dry_run {
                let plan: Value = c.post_yaml("/rollouts?dry_run=true", text).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&plan)?);
                } else {
                    print_plan(&plan);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let created: Value = c.post_yaml("/rollouts", text).await?;
            let id = created["id"].as_str().unwrap_or_default().to_string();
            if detach {
                println!("{id}");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "rollout {id} submitted ({} device(s))",
                created["progress"]["total"]
            );
            return follow_to_exit(&c, &id, json).await;
        }
        Command::Follow { client, id, json } => {
            let c = Client::from_args(&client);
            return follow_to_exit(&c, &id, json).await;
        }
        Command::Upgrade {
            client,
            name,
            image,
            protocol,
            via,
            stage_only,
            poll,
            json,
        } => {
            let c = Client::from_args(&client);
            let device: Value = c.get_json(&format!("/devices/{}", segment(&name))).await?;
            let platform = device["platform"].as_str().unwrap_or("ios");
            let mut pb = serde_json::json!({
                "name": format!("upgrade {name} to {image}"),
                "targets": {"names": [name]},
                "image": {platform: image},
                "transfer": {"protocol": protocol},
                "strategy": {"canary": 0, "timeouts": {"poll": poll}},
                "options": {"stage_only": stage_only},
            });
            if let Some(via) = via {
                pb["transfer"]["server"] = Value::String(via);
            }
            let created: Value = c.post_json("/rollouts", &pb).await?;
            let id = created["id"].as_str().unwrap_or_default().to_string();
            eprintln!("rollout {id}: upgrading {name}");
            return follow_to_exit(&c, &id, json).await;
        }
        Command::Device { client, action } => {
            let c = Client::from_args(&client);
            match action {
                DeviceAction::List {
                    group,
                    site,
                    platform,
                } => {
                    let mut q = vec!["limit=1000".to_string()];
                    for (k, v) in [("group", group), ("site", site), ("platform", platform)] {
                        if let Some(v) = v {
                            q.push(format!("{k}={}", segment(&v)));
                        }
                    }
                    let r: Value = c.get_json(&format!("/devices?{}", q.join("&"))).await?;
                    println!(
                        "{:<24} {:<18} {:<6} {:<12} {:<16} LAST SEEN",
                        "NAME", "HOST", "OS", "SITE", "VERSION"
                    );
                    for d in r["devices"].as_array().into_iter().flatten() {
                        println!(
                            "{:<24} {:<18} {:<6} {:<12} {:<16} {}",
                            d["name"].as_str().unwrap_or("?"),
                            d["host"].as_str().unwrap_or("?"),
                            d["platform"].as_str().unwrap_or("?"),
                            d["site"].as_str().unwrap_or("-"),
                            d["facts"]["version"].as_str().unwrap_or("-"),
                            d["facts"]["last_seen"].as_str().unwrap_or("never"),
                        );
                    }
                    println!("{} device(s)", r["total"]);
                }
                DeviceAction::Show { name } => {
                    let r: Value = c.get_json(&format!("/devices/{}", segment(&name))).await?;
                    println!("{}", serde_json::to_string_pretty(&r)?);
                }
                DeviceAction::Delete { name } => {
                    c.delete(&format!("/devices/{}", segment(&name))).await?;
                    println!("removed {name}");
                }
                DeviceAction::Facts { name } => {
                    let r: Value = c
                        .post_json(&format!("/devices/{}/facts", segment(&name)), &Value::Null)
                        .await?;
                    let f = &r["facts"];
                    println!("{name}");
                    for (k, label) in [
                        ("version", "version"),
                        ("image", "image"),
                        ("model", "model"),
                        ("serial", "serial"),
                        ("uptime", "uptime"),
                        ("config_register", "config register"),
                        ("last_seen", "last seen"),
                    ] {
                        println!("  {label:<16} {}", f[k].as_str().unwrap_or("-"));
                    }
                }
                DeviceAction::Trust { name } => {
                    c.delete(&format!("/devices/{}/host-key", segment(&name)))
                        .await?;
                    println!(
                        "{name}: pinned host key forgotten; the next key it shows will be trusted"
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
