//! The `fleetup` command: argument parsing only; the work is done in the library.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::Value;

use fleetup::api::{DeviceList, DryRun, NOTHING_TO_DO};
use fleetup::client::follow::{self, Outcome};
use fleetup::client::rollout::{self as rollouts, Action};
use fleetup::client::{Client, ClientArgs, ClientError, Rollout, Rollouts, exit, segment};
use fleetup::config::{self, LogFormat};
use fleetup::inventory::DeviceView;
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
    Serve(Box<ServeArgs>),
    /// A site agent: caches the images its site's devices need, fetched once from the service
    /// by SHA-256, and serves them to those devices over TFTP.
    Agent(Box<fleetup::agent::AgentArgs>),
    /// A simulated fleet of Cisco devices (SSH, IOS CLI, real TFTP/FTP downloads, reloads).
    Lab(fleetup::sim::LabArgs),
    /// The whole product on loopback: service, simulated fleet, demo images and a rollout.
    Demo(fleetup::demo::DemoArgs),
    /// The database itself: move a store from SQLite to PostgreSQL (or back).
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
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
    /// Exit code 0 if every targeted device ended upgraded or already current (also when
    /// there is nothing to do), 1 if not, 2 if the playbook or the request was refused, 130
    /// after Ctrl-C (the rollout goes on).
    Run {
        #[command(flatten)]
        client: ClientArgs,
        /// The playbook (YAML or JSON).
        playbook: PathBuf,
        /// Validate and print the plan (waves, devices, what is skipped and why); touch nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON event per line instead of the progress display.
        #[arg(long)]
        json: bool,
        /// Submit and return at once, printing the rollout id.
        #[arg(long)]
        detach: bool,
        /// Print the service's event stream above the progress display.
        #[arg(long)]
        verbose: bool,
    },
    /// Follow an existing rollout until it ends; exit codes as for `run`.
    Follow {
        #[command(flatten)]
        client: ClientArgs,
        /// Rollout id.
        id: String,
        /// One JSON event per line instead of the progress display.
        #[arg(long)]
        json: bool,
        /// Print the service's event stream above the progress display.
        #[arg(long)]
        verbose: bool,
    },
    /// List, show, pause, resume, abort or retry rollouts, and print their reports.
    Rollout {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: RolloutAction,
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
        /// One JSON event per line instead of the progress display.
        #[arg(long)]
        json: bool,
        /// Print the service's event stream above the progress display.
        #[arg(long)]
        verbose: bool,
    },
    /// Look at and manage single devices of a running service.
    Device {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: DeviceAction,
    },
    /// Golden images of a running service: the image each platform, model, site or role
    /// should run (docs/golden.md).
    Golden {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: GoldenAction,
    },
    /// Each device's status against its golden image (compliant, outdated, ahead, unknown),
    /// with roll-ups per site and model.
    Compliance {
        #[command(flatten)]
        client: ClientArgs,
        /// Only devices of this site.
        #[arg(long)]
        site: Option<String>,
        /// One CSV row per device instead of the table.
        #[arg(long)]
        csv: bool,
    },
    /// Webhook notifications of a running service.
    Notify {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: NotifyAction,
    },
    /// API tokens of a running service, each with a role (admin token needed).
    Token {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: TokenAction,
    },
    /// The audit log of a running service: every mutating API call, newest first.
    Audit {
        #[command(flatten)]
        client: ClientArgs,
        /// Only the calls of the token of this name.
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// How many entries (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Subcommand, Debug)]
enum DbAction {
    /// Copy everything (devices, image records, rollouts with their jobs, events and
    /// transcripts, tokens, audit, webhook deliveries, golden images) into a database that holds
    /// none yet; its schema is made first. Reads one snapshot of the source; stop `serve` first
    /// so that nothing written later is left behind. The image files and secrets stay in the
    /// data directory.
    Migrate {
        /// The store now, e.g. sqlite:///var/lib/fleetup/fleetup.db.
        #[arg(long, value_name = "URL")]
        from: fleetup::store::DatabaseUrl,
        /// The new store, e.g. postgres://fleetup:PASSWORD@db.example.net:5432/fleetup.
        #[arg(long, value_name = "URL")]
        to: fleetup::store::DatabaseUrl,
        /// Print the rows copied per table as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum TokenAction {
    /// Make a token; its secret is printed once (the service keeps only its hash).
    Create {
        /// viewer (reads), operator (also changes and approves), admin (also tokens), agent
        /// (a site agent's calls for the site given with --site, and nothing else).
        #[arg(long, value_enum)]
        role: fleetup::access::Role,
        /// A unique name (letters, digits, '.', '_', '-', '@'): who the audit log names.
        #[arg(long)]
        name: String,
        /// The site an agent token is bound to (required with --role agent, refused without).
        #[arg(long, value_name = "SITE")]
        site: Option<String>,
        /// Print the secret alone, on one line (for a script that stores it, e.g. in the file
        /// an agent's --token-file reads).
        #[arg(long)]
        secret_only: bool,
    },
    /// Every token: name, role, created, revoked; never a secret.
    List,
    /// Refuse a token from now on; its name and audit entries stay.
    Revoke { name: String },
}

/// Where a golden image applies; left out, a field matches any device (none at all: global).
#[derive(clap::Args, Debug)]
struct GoldenScope {
    /// ios, iosxe or nxos.
    #[arg(long)]
    platform: Option<String>,
    /// The model as the inventory (else `show version`) gives it.
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    site: Option<String>,
    /// A group or tag of the inventory.
    #[arg(long)]
    role: Option<String>,
}

impl GoldenScope {
    fn args(self) -> fleetup::client::golden::ScopeArgs {
        fleetup::client::golden::ScopeArgs {
            platform: self.platform,
            model: self.model,
            site: self.site,
            role: self.role,
        }
    }
}

#[derive(Subcommand, Debug)]
enum GoldenAction {
    /// Set the golden image (a file name of the image store) of a scope.
    Set {
        image: String,
        #[command(flatten)]
        scope: GoldenScope,
    },
    /// The golden images, with their scopes and versions.
    List,
    /// Forget the golden image of exactly this scope.
    Unset {
        #[command(flatten)]
        scope: GoldenScope,
    },
}

#[derive(Subcommand, Debug)]
enum NotifyAction {
    /// The webhook deliveries, newest first: target, kind, state, attempts, last status.
    Deliveries {
        /// Only this rollout's deliveries.
        #[arg(long)]
        rollout: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum RolloutAction {
    /// Rollouts, newest first: id, name, state, devices done/failed/total, start.
    List,
    /// State, waves and every device's state, step and error.
    Show { id: String },
    /// No new step starts; running steps finish.
    Pause { id: String },
    /// Go on after a pause.
    Resume { id: String },
    /// Every device stops at its next safe point (never inside a reload).
    Abort { id: String },
    /// Put the failed devices back in line; a halted rollout goes on.
    Retry { id: String },
    /// Approve a rollout waiting in awaiting_approval, and start it; the token must be
    /// another operator's or admin's than the submitter's.
    Approve { id: String },
    /// Per device: wave, result, old and new version, duration, attempts, error.
    Report {
        id: String,
        /// The report as CSV (the service's columns), for spreadsheets and change tickets.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// The report as the service's JSON.
        #[arg(long)]
        json: bool,
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
    /// Take the devices a source of truth (Nautobot or NetBox) holds: add and change them, and
    /// mark those it no longer holds absent (kept, never targeted). docs/sync.md.
    Sync {
        /// The source of truth.
        #[arg(long = "from", value_enum)]
        from: fleetup::sync::SourceKind,
        /// Its base URL, e.g. https://nautobot.example.com.
        #[arg(long)]
        url: String,
        /// The environment variable holding its API token (the token itself never goes on
        /// the command line).
        #[arg(long, value_name = "VAR")]
        token_env: String,
        /// Only these devices: site=S (Nautobot's location), role=R, tag=T, status=S, comma
        /// separated; a key given twice takes either value.
        #[arg(long)]
        filter: Option<String>,
        /// Print what would be added, changed and gone; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Map source platforms (network driver, slug or name) to ios, iosxe or nxos, before
        /// the defaults: `cisco-ios-xe-17=iosxe,c-ios=ios`.
        #[arg(long, value_name = "NAME=PLATFORM,…")]
        platform_map: Option<String>,
        /// SSH port of the devices the sync adds (22).
        #[arg(long)]
        port: Option<u16>,
        /// Username of the devices the sync adds (or that have none).
        #[arg(long)]
        username: Option<String>,
        /// Environment variable of the service holding their password.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
        /// Environment variable of the service holding their enable secret.
        #[arg(long, value_name = "VAR")]
        enable_secret_env: Option<String>,
        /// Print the service's JSON report.
        #[arg(long)]
        json: bool,
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
    /// The configuration backups kept of the device (always needs the token).
    Configs {
        name: String,
        /// Only this rollout's backups (with --diff: its before and after).
        #[arg(long)]
        rollout: Option<String>,
        /// Print the text of this backup (an id from the listing).
        #[arg(long, value_name = "ID", conflicts_with = "diff")]
        show: Option<i64>,
        /// The running configuration's diff before and after the rollout (default: the latest).
        #[arg(long)]
        diff: bool,
    },
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

async fn follow_to_exit(c: &Client, id: &str, opts: follow::Options) -> anyhow::Result<ExitCode> {
    let r = match follow::follow(c, id, opts).await? {
        Outcome::Detached => {
            eprint!("{}", follow::detach_text(id));
            return Ok(ExitCode::from(exit::DETACHED));
        }
        Outcome::Stopped(r) => r,
    };
    let all_upgraded = rollouts::all_upgraded(&r);
    if opts.json {
        println!(
            "{}",
            serde_json::json!({"rollout": id, "state": r.rollout.state, "all_upgraded": all_upgraded})
        );
    } else {
        print_summary(&r);
    }
    Ok(ExitCode::from(if all_upgraded {
        exit::OK
    } else {
        exit::NOT_ALL_UPGRADED
    }))
}

fn print_plan(dry: &DryRun) {
    println!("plan for {}", dry.name);
    let p = &dry.plan;
    let canary = p.waves.first().is_some_and(|w| w.name == "canary");
    for w in &p.waves {
        println!(
            "  {}: {} device(s)",
            rollouts::wave_label(w.index, canary),
            w.devices.len()
        );
        for d in &w.devices {
            println!(
                "    {} ({} -> {}){}",
                d.device,
                d.current_version.as_deref().unwrap_or("?"),
                d.target_version.as_deref().unwrap_or(&d.image),
                if d.downgrade {
                    " DOWNGRADE: refused unless options.allow_downgrade: true"
                } else {
                    ""
                }
            );
        }
    }
    if !dry.windows.is_empty() {
        println!(
            "  maintenance windows: images are copied and verified at once; the boot change, save and reload wait for a window"
        );
        for w in &dry.windows {
            let when = match (&w.opens, w.open) {
                (_, true) => "open now".to_string(),
                (Some(opens), false) => format!("opens {opens}"),
                (None, false) => "does not open in the next two weeks".to_string(),
            };
            println!("    {}: {when}", w.window);
        }
    }
    for t in &dry.transfer {
        let mut line = format!(
            "  transfer{}: {}",
            t.site
                .as_deref()
                .map(|s| format!(" (site {s})"))
                .unwrap_or_default(),
            t.protocols.join(", then ")
        );
        if let Some(s) = &t.server {
            line.push_str(&format!(" from {s}"));
        }
        if let Some(v) = &t.vrf {
            line.push_str(&format!(", vrf {v}"));
        }
        if let Some(i) = &t.source_interface {
            line.push_str(&format!(", source interface {i}"));
        }
        if !t.unavailable.is_empty() {
            line.push_str(&format!(
                "; {} off in this service: left out",
                t.unavailable.join(", ")
            ));
        }
        println!("{line}");
    }
    if !p.skipped.is_empty() {
        println!("  skipped: {}", p.skipped.len());
        for s in &p.skipped {
            println!("    {}: {}", s.device, s.reason);
        }
    }
    println!(
        "  {} device(s) to upgrade; the rollout halts at {} failure(s)",
        p.total, p.halt_after_failures
    );
}

fn print_summary(r: &Rollout) {
    let rec = &r.rollout;
    let outcome = match (&rec.halt_reason, rollouts::all_upgraded(r)) {
        (Some(reason), _) => reason.clone(),
        (None, true) => "every targeted device upgraded or already current".to_string(),
        (None, false) => "not every targeted device was upgraded".to_string(),
    };
    println!("rollout {} {}: {outcome}", rec.id, rec.state);
    print!("{}", rollouts::waves_text(r));
    print!("{}", rollouts::next_steps(r));
}

/// `run` when the service has nothing to do: fine when every target already runs the image.
async fn nothing_to_do(c: &Client, text: String, err: ClientError) -> anyhow::Result<ExitCode> {
    let dry: DryRun = c.post_yaml("/rollouts?dry_run=true", text).await?;
    let skipped = &dry.plan.skipped;
    if !skipped.is_empty() && skipped.iter().all(|s| s.current) {
        println!(
            "nothing to do: every targeted device ({}) already runs the target version",
            skipped.len()
        );
        return Ok(ExitCode::from(exit::OK));
    }
    Err(err.into())
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
            // A client command that could not be done has its own code (docs/cli.md).
            if e.downcast_ref::<ClientError>().is_some() {
                ExitCode::from(exit::ERROR)
            } else {
                ExitCode::FAILURE
            }
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
        Command::Serve(mut args) => {
            serve::init_logging(cli.log_format);
            if let Some(path) = &args.config {
                args.notify = fleetup::config::read_notify_targets(path)?;
                args.sync = fleetup::config::read_sync_entries(path)?;
            }
            let token = std::env::var("FLEETUP_API_TOKEN").ok();
            serve::run(*args, token).await?;
        }
        Command::Agent(args) => {
            serve::init_logging(cli.log_format);
            fleetup::agent::run(*args).await?;
        }
        Command::Db { action } => match action {
            DbAction::Migrate { from, to, json } => {
                // A SQLite store is copied only while no service runs on its directory (the
                // target's too, when a service has used it: it holds the lock file).
                let mut dirs: Vec<std::path::PathBuf> = Vec::new();
                for (url, always) in [(&from, true), (&to, false)] {
                    if let fleetup::store::DatabaseUrl::Sqlite(path) = url
                        && let Some(dir) = path.parent().filter(|d| d.is_dir())
                        && (always || dir.join("lock").exists())
                        && let Ok(dir) = dir.canonicalize()
                        && !dirs.contains(&dir)
                    {
                        dirs.push(dir);
                    }
                }
                let mut _locks = Vec::new();
                for dir in &dirs {
                    match serve::DataDirLock::acquire(dir) {
                        Ok(lock) => _locks.push(lock),
                        Err(serve::DataDirError::InUse { dir, holder }) => anyhow::bail!(
                            "the store in {} is in use by a running fleetup service ({holder}): stop it first, so that nothing it writes after the copy is left behind",
                            dir.display()
                        ),
                        Err(e) => return Err(e.into()),
                    }
                }
                let report = fleetup::store::migrate_database(&from, &to).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", report.render());
                    eprintln!("copied {from} into {to}");
                }
            }
        },
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
                    let r = c
                        .import_inventory(&file)
                        .await
                        .map_err(|e| e.in_file(&file))?;
                    println!(
                        "imported {}: {} created, {} updated, {} unchanged",
                        file.display(),
                        r.created,
                        r.updated,
                        r.unchanged
                    );
                }
                InventoryAction::Export { with_secrets } => {
                    let path = if with_secrets {
                        "/inventory/export?with_secrets=true"
                    } else {
                        "/inventory/export"
                    };
                    print!("{}", c.get_text(path).await?);
                    if !with_secrets {
                        eprintln!(
                            "fleetup: inline passwords and enable secrets were left out (importing this file keeps the stored ones); --with-secrets includes them"
                        );
                    }
                }
                InventoryAction::Sync {
                    from,
                    url,
                    token_env,
                    filter,
                    dry_run,
                    platform_map,
                    port,
                    username,
                    password_env,
                    enable_secret_env,
                    json,
                } => {
                    use fleetup::sync::{Filter, PlatformMap, SyncDefaults, source};
                    let usage = |m: String| anyhow::anyhow!(m);
                    let url = source::parse_url(&url).map_err(|m| usage(format!("--url {m}")))?;
                    let filter = Filter::parse(filter.as_deref().unwrap_or_default())
                        .map_err(|m| usage(format!("--filter: {m}")))?;
                    let platforms = PlatformMap::parse(platform_map.as_deref().unwrap_or_default())
                        .map_err(|m| usage(format!("--platform-map: {m}")))?;
                    let token = std::env::var(&token_env)
                        .ok()
                        .filter(|t| !t.trim().is_empty())
                        .ok_or_else(|| {
                            usage(format!(
                                "--token-env {token_env}: that environment variable is not set (or empty) here"
                            ))
                        })?;
                    let src = source::Source {
                        kind: from,
                        url,
                        token: token.trim().to_string(),
                        filter,
                        platforms,
                    };
                    let defaults = SyncDefaults {
                        port,
                        username,
                        password_env,
                        enable_secret_env,
                    };
                    let report = fleetup::client::sync::sync(&c, &src, defaults, dry_run).await?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&report)?);
                    } else {
                        print!("{}", report.render());
                    }
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
                        r.file_name,
                        r.size,
                        r.md5,
                        r.sha256,
                        r.platform.as_deref().unwrap_or("-"),
                        r.version.as_deref().unwrap_or("-"),
                    );
                }
                ImageAction::List => {
                    let r: fleetup::api::ImageList = c.get_json("/images").await?;
                    println!(
                        "{:<48} {:>12} {:<8} {:<14} MD5",
                        "FILE", "SIZE", "PLATFORM", "VERSION"
                    );
                    for i in &r.images {
                        println!(
                            "{:<48} {:>12} {:<8} {:<14} {}",
                            i.file_name,
                            i.size,
                            i.platform.as_deref().unwrap_or("-"),
                            i.version.as_deref().unwrap_or("-"),
                            i.md5,
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
            verbose,
        } => {
            let c = Client::from_args(&client);
            let text = std::fs::read_to_string(&playbook).map_err(|source| ClientError::File {
                path: playbook.display().to_string(),
                source,
            })?;
            if dry_run {
                let plan: DryRun = c
                    .post_yaml("/rollouts?dry_run=true", text)
                    .await
                    .map_err(|e| e.in_file(&playbook))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&plan)?);
                } else {
                    print_plan(&plan);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let created: Rollout = match c.post_yaml("/rollouts", text.clone()).await {
                Ok(r) => r,
                Err(e) if e.code() == Some(NOTHING_TO_DO) => {
                    return nothing_to_do(&c, text, e).await;
                }
                Err(e) => return Err(e.in_file(&playbook).into()),
            };
            let id = created.rollout.id;
            if detach {
                println!("{id}");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "rollout {id} submitted ({} device(s)); Ctrl-C detaches, the rollout goes on",
                created.progress.total
            );
            return follow_to_exit(&c, &id, follow::Options { json, verbose }).await;
        }
        Command::Follow {
            client,
            id,
            json,
            verbose,
        } => {
            let c = Client::from_args(&client);
            return follow_to_exit(&c, &id, follow::Options { json, verbose }).await;
        }
        Command::Rollout { client, action } => {
            let c = Client::from_args(&client);
            match action {
                RolloutAction::List => {
                    let list: Rollouts = c.get_json("/rollouts").await?;
                    print!("{}", rollouts::list_text(&list));
                }
                RolloutAction::Show { id } => {
                    print!("{}", rollouts::show_text(&c.rollout(&id).await?));
                }
                RolloutAction::Pause { id } => {
                    println!("{}", rollouts::act(&c, &id, Action::Pause).await?);
                }
                RolloutAction::Resume { id } => {
                    println!("{}", rollouts::act(&c, &id, Action::Resume).await?);
                }
                RolloutAction::Approve { id } => {
                    println!("{}", rollouts::act(&c, &id, Action::Approve).await?);
                }
                RolloutAction::Abort { id } => {
                    println!("{}", rollouts::act(&c, &id, Action::Abort).await?);
                }
                RolloutAction::Retry { id } => {
                    println!("{}", rollouts::act(&c, &id, Action::Retry).await?);
                }
                RolloutAction::Report { id, csv, json } => {
                    let path = format!("/rollouts/{}/report", segment(&id));
                    if csv {
                        print!("{}", c.get_text(&format!("{path}?format=csv")).await?);
                    } else if json {
                        let report: Value = c.get_json(&path).await?;
                        println!("{}", serde_json::to_string_pretty(&report)?);
                    } else {
                        let report: fleetup::rollout::report::Report = c.get_json(&path).await?;
                        let canary = rollouts::has_canary(&c.rollout(&id).await?.waves);
                        print!("{}", rollouts::report_text(&report, canary));
                        print!("{}", rollouts::config_changes_text(&c, &report).await);
                    }
                }
            }
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
            verbose,
        } => {
            let c = Client::from_args(&client);
            let device: DeviceView = c.get_json(&format!("/devices/{}", segment(&name))).await?;
            let platform = device.platform.to_string();
            let mut pb = serde_json::json!({
                "name": format!("upgrade {name} to {image}"),
                "targets": {"names": [name]},
                "image": {platform.as_str(): image},
                "transfer": {"protocol": protocol},
                "strategy": {"canary": 0, "timeouts": {"poll": poll}},
                "options": {"stage_only": stage_only},
            });
            if let Some(via) = via {
                pb["transfer"]["server"] = Value::String(via);
            }
            let created: Rollout = c.post_json("/rollouts", &pb).await?;
            let id = created.rollout.id;
            eprintln!("rollout {id}: upgrading {name}; Ctrl-C detaches, the upgrade goes on");
            return follow_to_exit(&c, &id, follow::Options { json, verbose }).await;
        }
        Command::Token { client, action } => {
            let c = Client::from_args(&client);
            let out = match action {
                TokenAction::Create {
                    role,
                    name,
                    site,
                    secret_only,
                } => {
                    fleetup::client::access::create_token(
                        &c,
                        &name,
                        role,
                        site.as_deref(),
                        secret_only,
                    )
                    .await?
                }
                TokenAction::List => fleetup::client::access::tokens(&c).await?,
                TokenAction::Revoke { name } => {
                    fleetup::client::access::revoke_token(&c, &name).await?
                }
            };
            print!("{out}");
        }
        Command::Audit { client, by, limit } => {
            let c = Client::from_args(&client);
            print!(
                "{}",
                fleetup::client::access::audit(&c, by.as_deref(), limit).await?
            );
        }
        Command::Golden { client, action } => {
            let c = Client::from_args(&client);
            use fleetup::client::golden;
            let out = match action {
                GoldenAction::Set { image, scope } => {
                    golden::set(&c, &image, &scope.args()).await?
                }
                GoldenAction::List => golden::list(&c).await?,
                GoldenAction::Unset { scope } => golden::unset(&c, &scope.args()).await?,
            };
            print!("{out}");
        }
        Command::Compliance { client, site, csv } => {
            let c = Client::from_args(&client);
            print!(
                "{}",
                fleetup::client::golden::compliance(&c, site.as_deref(), csv).await?
            );
        }
        Command::Notify { client, action } => {
            let c = Client::from_args(&client);
            match action {
                NotifyAction::Deliveries { rollout } => {
                    print!(
                        "{}",
                        fleetup::client::notify::deliveries(&c, rollout.as_deref()).await?
                    );
                }
            }
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
                    let r: DeviceList = c.get_json(&format!("/devices?{}", q.join("&"))).await?;
                    println!(
                        "{:<24} {:<18} {:<6} {:<12} {:<16} LAST SEEN",
                        "NAME", "HOST", "OS", "SITE", "VERSION"
                    );
                    for d in &r.devices {
                        println!(
                            "{:<24} {:<18} {:<6} {:<12} {:<16} {}",
                            d.name,
                            d.host,
                            d.platform.to_string(),
                            d.site.as_deref().unwrap_or("-"),
                            d.facts.version.as_deref().unwrap_or("-"),
                            d.facts.last_seen.as_deref().unwrap_or("never"),
                        );
                    }
                    println!("{} device(s)", r.total);
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
                    let d: DeviceView = c
                        .post_json(&format!("/devices/{}/facts", segment(&name)), &Value::Null)
                        .await?;
                    let f = &d.facts;
                    println!("{name}");
                    for (label, value) in [
                        ("version", &f.version),
                        ("image", &f.image),
                        ("model", &f.model),
                        ("serial", &f.serial),
                        ("uptime", &f.uptime),
                        ("config register", &f.config_register),
                        ("last seen", &f.last_seen),
                    ] {
                        println!("  {label:<16} {}", value.as_deref().unwrap_or("-"));
                    }
                    for m in &f.members {
                        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                        println!(
                            "  member {:<9} {} {} {} serial {} version {}",
                            m.number,
                            or(&m.role),
                            or(&m.state),
                            or(&m.model),
                            or(&m.serial),
                            or(&m.version)
                        );
                    }
                }
                DeviceAction::Configs {
                    name,
                    rollout,
                    show,
                    diff,
                } => {
                    let req = fleetup::client::configs::ConfigsRequest {
                        device: name,
                        rollout,
                        show,
                        diff,
                    };
                    print!(
                        "{}",
                        fleetup::client::configs::device_configs(&c, &req).await?
                    );
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
