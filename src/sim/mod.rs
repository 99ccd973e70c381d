//! `fleetup lab`: a simulated fleet of Cisco devices that behave like the real thing from the
//! outside. Each device is an SSH server on its own loopback address with an IOS command line,
//! pulls images for real from a TFTP or FTP server into a flash directory on disk, drops its
//! sessions on reload and comes back later running the image its boot variable names.
//!
//! Layers: `line` (terminal line discipline) and `parser` (IOS abbreviations and error texts)
//! are pure; `cli` runs the dialogs; `copy` downloads; `device` holds state and flash; `ssh` is
//! the russh server and the reload supervisor; `admin` is the JSON admin API.

mod admin;
mod cli;
mod copy;
mod copy_http;
mod copy_ssh;
mod device;
mod install;
mod line;
mod members;
mod parser;
mod persona;
mod scp_sink;
mod show;
mod ssh;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use device::{DeviceState, MemberState, Power};
pub(crate) use persona::{Persona, PersonaError};

use crate::shutdown::Shutdown;

/// The names of the personas built into the binary (`--persona NAME`), in the order they
/// are listed.
pub fn built_in_personas() -> Vec<&'static str> {
    persona::built_in_names()
}

/// A fault injected into one device.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// `copy` waits, then `%Error opening tftp://… (Timed out)`; no packet reaches the server.
    TftpTimeout,
    /// Copies run at the lab's `--slow-rate`.
    SlowTransfer,
    /// The download completes but one byte is flipped: `verify /md5` disagrees, the boot
    /// loader refuses the file.
    CorruptDownload,
    /// Flash reports barely more than what is used: `Not enough space on device`.
    FlashTooSmall,
    /// SSH password login is refused.
    WrongCredentials,
    /// The SSH session is cut as soon as a download starts.
    DropMidCopy,
    /// After a reload the device stays dark (until the fault is cleared).
    ReloadNeverReturns,
    /// After a reload the device runs the image it ran before.
    ReloadOldImage,
    /// After a reload, the persona's first connected port (the uplink, with a neighbor) stays
    /// down: `notconnect`, `down down`, and its CDP/LLDP neighbor is gone.
    LinkDownAfterReload,
    /// Stacks: after the next reload the highest-numbered member that is not the active one
    /// does not rejoin; `show switch` shows it `Removed`.
    StackMemberLost,
    /// Stacks: after the next reload the highest-numbered member that is not the active one
    /// still runs the version it ran before; `show switch` shows it `V-Mismatch`.
    StackMemberVersionMismatch,
    /// Dual supervisors: after the next reload the standby does not reach hot standby
    /// (IOS-XE `STANDBY COLD`, NX-OS module status `powered-up`).
    StandbyNotHot,
    /// IOS-XE install mode: after `install activate auto-abort-timer N` the device stays
    /// silent until the timer expires, then rolls back to the version it ran before.
    NoReturnUntilAbort,
    /// ISSU: the new image cannot be installed in service. NX-OS's compatibility check marks
    /// every module `disruptive` (`Incompatible image for ISSU`) and `install all nxos ...
    /// non-disruptive` installs nothing; IOS-XE refuses `install activate issu` with a
    /// `FAILED:` line and activates nothing.
    IssuIncompatible,
}

impl Fault {
    pub(crate) const ALL: [Fault; 14] = [
        Fault::TftpTimeout,
        Fault::SlowTransfer,
        Fault::CorruptDownload,
        Fault::FlashTooSmall,
        Fault::WrongCredentials,
        Fault::DropMidCopy,
        Fault::ReloadNeverReturns,
        Fault::ReloadOldImage,
        Fault::LinkDownAfterReload,
        Fault::StackMemberLost,
        Fault::StackMemberVersionMismatch,
        Fault::StandbyNotHot,
        Fault::NoReturnUntilAbort,
        Fault::IssuIncompatible,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Fault::TftpTimeout => "tftp-timeout",
            Fault::SlowTransfer => "slow-transfer",
            Fault::CorruptDownload => "corrupt-download",
            Fault::FlashTooSmall => "flash-too-small",
            Fault::WrongCredentials => "wrong-credentials",
            Fault::DropMidCopy => "drop-mid-copy",
            Fault::ReloadNeverReturns => "reload-never-returns",
            Fault::ReloadOldImage => "reload-old-image",
            Fault::LinkDownAfterReload => "link-down-after-reload",
            Fault::StackMemberLost => "stack-member-lost",
            Fault::StackMemberVersionMismatch => "stack-member-version-mismatch",
            Fault::StandbyNotHot => "standby-not-hot",
            Fault::NoReturnUntilAbort => "no-return-until-abort",
            Fault::IssuIncompatible => "issu-incompatible",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        // The name issue #18 gives the same fault: a port that was up stays down.
        if norm == "interface-down-after-reload" {
            return Ok(Fault::LinkDownAfterReload);
        }
        Fault::ALL
            .into_iter()
            .find(|f| f.as_str() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|f| f.as_str()).collect();
                format!("unknown fault {s:?} (expected one of {})", names.join(", "))
            })
    }
}

/// `--fault DEVICE=KIND[,KIND]`: DEVICE is a name, a number (1-based) or `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    pub device: String,
    pub faults: Vec<Fault>,
}

impl FromStr for FaultSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (device, kinds) = s.split_once('=').ok_or_else(|| {
            format!("fault {s:?} must look like DEVICE=KIND (e.g. lab-sw-002=tftp-timeout)")
        })?;
        if device.trim().is_empty() {
            return Err(format!("fault {s:?} names no device"));
        }
        let faults = kinds
            .split(',')
            .map(Fault::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FaultSpec {
            device: device.trim().to_string(),
            faults,
        })
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct LabArgs {
    /// Number of simulated devices.
    #[arg(long, default_value_t = 3, env = "FLEETUP_LAB_DEVICES")]
    pub devices: usize,
    /// Address of the first device; device k listens on this address + k-1.
    #[arg(long, default_value = "127.0.10.1", env = "FLEETUP_LAB_BASE_IP")]
    pub base_ip: Ipv4Addr,
    /// SSH port of every device (0: a free port per device).
    #[arg(long, default_value_t = 22, env = "FLEETUP_LAB_SSH_PORT")]
    pub ssh_port: u16,
    /// Device login user.
    #[arg(long, default_value = "admin", env = "FLEETUP_LAB_USERNAME")]
    pub username: String,
    /// Device login password.
    #[arg(long, default_value = "cisco", env = "FLEETUP_LAB_PASSWORD")]
    pub password: String,
    /// `enable` secret.
    #[arg(long, default_value = "cisco", env = "FLEETUP_LAB_ENABLE_SECRET")]
    pub enable_secret: String,
    /// Persona: a built-in name (c2960x, c9300, n9k) or a persona YAML file. Repeat or give a comma list
    /// for a mixed fleet; devices take them in turn.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "c2960x",
        env = "FLEETUP_LAB_PERSONA"
    )]
    pub persona: Vec<String>,
    /// Where flash contents, host keys and device state are kept across lab restarts.
    #[arg(long, default_value = "./fleetup-lab", env = "FLEETUP_LAB_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Address of the JSON admin API (device states, faults); off when not given.
    #[arg(long, env = "FLEETUP_LAB_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// TFTP port devices use when a copy URL names none.
    #[arg(long, default_value_t = 69, env = "FLEETUP_LAB_TFTP_PORT")]
    pub tftp_port: u16,
    /// FTP port devices use when a copy URL names none.
    #[arg(long, default_value_t = 21, env = "FLEETUP_LAB_FTP_PORT")]
    pub ftp_port: u16,
    /// SSH port devices use for `copy scp:` and `copy sftp:` when the URL names none.
    #[arg(long, default_value_t = 22, env = "FLEETUP_LAB_SCP_PORT")]
    pub scp_port: u16,
    /// Write a fleetup inventory of the lab to this file.
    #[arg(long)]
    pub write_inventory: Option<PathBuf>,
    /// Seconds a reload keeps a device away (fractions allowed).
    #[arg(long, default_value_t = 5.0, env = "FLEETUP_LAB_BOOT_TIME")]
    pub boot_time: f64,
    /// Seconds each new device has already been up when the lab first starts, as `show
    /// version` reports it (`uptime is 3 weeks, ...`); a reload starts it from zero.
    #[arg(long, default_value_t = 0, env = "FLEETUP_LAB_UPTIME",
          value_parser = clap::value_parser!(u64).range(0..=device::MAX_UPTIME_SECS))]
    pub uptime: u64,
    /// Copy speed limit in bytes per second, so a demo can be watched.
    #[arg(long, env = "FLEETUP_LAB_RATE")]
    pub rate: Option<u64>,
    /// Copy speed under the slow-transfer fault, bytes per second.
    #[arg(long, default_value_t = 20_000)]
    pub slow_rate: u64,
    /// Inject a fault: DEVICE=KIND[,KIND] (DEVICE: name, number or `all`). Kinds: tftp-timeout,
    /// slow-transfer, corrupt-download, flash-too-small, wrong-credentials, drop-mid-copy,
    /// reload-never-returns, reload-old-image, link-down-after-reload (alias
    /// interface-down-after-reload), stack-member-lost, stack-member-version-mismatch,
    /// standby-not-hot, no-return-until-abort, issu-incompatible.
    #[arg(long = "fault")]
    pub faults: Vec<FaultSpec>,
    /// Device name prefix (names are PREFIX001, PREFIX002, …).
    #[arg(long, default_value = "lab-sw-")]
    pub name_prefix: String,
    /// OpenSSH authorized_keys file: devices also accept public-key login with these keys.
    #[arg(long, value_name = "FILE")]
    pub authorized_keys: Option<PathBuf>,
    /// Devices offer keyboard-interactive login (a `Password:` prompt, as many IOS AAA setups
    /// do) instead of the password method.
    #[arg(long)]
    pub keyboard_interactive: bool,
    /// Real seconds one minute of `install activate auto-abort-timer N` lasts in the lab, so a
    /// rollback by the timer can be rehearsed quickly (fractions allowed).
    #[arg(long, default_value_t = 60.0, env = "FLEETUP_LAB_ABORT_TIMER_MINUTE")]
    pub abort_timer_minute: f64,
    /// What a reloading device does with new SSH connections: `silent` (as a real device: the
    /// connection attempt gets no answer and times out) or `refuse` (a reset at once).
    #[arg(long, value_enum, default_value_t = WhileReloading::Silent,
          env = "FLEETUP_LAB_WHILE_RELOADING")]
    pub while_reloading: WhileReloading,
}

/// What a reloading device does with new SSH connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WhileReloading {
    /// No answer: a connection attempt times out, as with a real device that is booting.
    #[default]
    Silent,
    /// A TCP reset at once (connection refused).
    Refuse,
}

/// Everything a lab needs to start; `Default` suits tests (random nothing: pick your base IP).
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub devices: usize,
    pub base_ip: Ipv4Addr,
    pub ssh_port: u16,
    pub username: String,
    pub password: String,
    pub enable_secret: String,
    pub personas: Vec<String>,
    pub state_dir: PathBuf,
    pub admin: Option<SocketAddr>,
    pub tftp_port: u16,
    pub ftp_port: u16,
    /// SSH port of `copy scp:`/`copy sftp:` when the URL names none.
    pub scp_port: u16,
    pub boot_time: Duration,
    /// How long each new device has been up when the lab first starts.
    pub uptime: Duration,
    pub rate: Option<u64>,
    pub slow_rate: u64,
    /// How long the TFTP client waits for a packet before it retransmits.
    pub tftp_timeout: Duration,
    /// How long a `tftp-timeout` fault lets `copy` hang before it fails.
    pub fault_delay: Duration,
    pub faults: Vec<FaultSpec>,
    pub name_prefix: String,
    /// Public keys (OpenSSH one-line format) accepted for public-key login.
    pub authorized_keys: Vec<String>,
    /// Offer keyboard-interactive instead of password login.
    pub keyboard_interactive: bool,
    /// What a reloading device does with new SSH connections.
    pub while_reloading: WhileReloading,
    /// How long one minute of `install activate auto-abort-timer N` lasts.
    pub abort_timer_minute: Duration,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            devices: 1,
            base_ip: Ipv4Addr::new(127, 0, 10, 1),
            ssh_port: 0,
            username: "admin".into(),
            password: "cisco".into(),
            enable_secret: "cisco".into(),
            personas: vec!["c2960x".into()],
            state_dir: PathBuf::from("./fleetup-lab"),
            admin: None,
            tftp_port: 69,
            ftp_port: 21,
            scp_port: 22,
            boot_time: Duration::from_millis(200),
            uptime: Duration::ZERO,
            rate: None,
            slow_rate: 20_000,
            tftp_timeout: Duration::from_secs(2),
            fault_delay: Duration::from_millis(200),
            faults: Vec::new(),
            name_prefix: "lab-sw-".into(),
            authorized_keys: Vec::new(),
            keyboard_interactive: false,
            while_reloading: WhileReloading::Silent,
            abort_timer_minute: Duration::from_secs(60),
        }
    }
}

impl LabConfig {
    pub(crate) fn from_args(args: &LabArgs) -> Result<LabConfig, LabError> {
        if !(args.boot_time.is_finite() && (0.0..=3600.0).contains(&args.boot_time)) {
            return Err(LabError::Config(format!(
                "--boot-time {} must be between 0 and 3600 seconds",
                args.boot_time
            )));
        }
        if !(args.abort_timer_minute.is_finite()
            && (0.0..=3600.0).contains(&args.abort_timer_minute))
        {
            return Err(LabError::Config(format!(
                "--abort-timer-minute {} must be between 0 and 3600 seconds",
                args.abort_timer_minute
            )));
        }
        Ok(LabConfig {
            abort_timer_minute: Duration::from_secs_f64(args.abort_timer_minute),
            devices: args.devices,
            base_ip: args.base_ip,
            ssh_port: args.ssh_port,
            username: args.username.clone(),
            password: args.password.clone(),
            enable_secret: args.enable_secret.clone(),
            personas: args.persona.clone(),
            state_dir: args.state_dir.clone(),
            admin: args.admin,
            tftp_port: args.tftp_port,
            ftp_port: args.ftp_port,
            scp_port: args.scp_port,
            boot_time: Duration::from_secs_f64(args.boot_time),
            uptime: Duration::from_secs(args.uptime),
            rate: args.rate,
            slow_rate: args.slow_rate,
            faults: args.faults.clone(),
            name_prefix: args.name_prefix.clone(),
            authorized_keys: match &args.authorized_keys {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| {
                        LabError::Config(format!("--authorized-keys {}: {e}", path.display()))
                    })?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string)
                    .collect(),
                None => Vec::new(),
            },
            keyboard_interactive: args.keyboard_interactive,
            while_reloading: args.while_reloading,
            ..LabConfig::default()
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Persona(#[from] PersonaError),
    #[error(transparent)]
    Device(#[from] device::DeviceError),
    #[error("device {device}: host key {path}: {message}")]
    HostKey {
        device: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "device {device}: cannot listen for SSH on {addr}: {source}; ports below 1024 need root (or pass --ssh-port 2222, or 0 for a free port per device)"
    )]
    Bind {
        device: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("admin API: cannot listen on {addr}: {source}; pick another --admin address")]
    AdminBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the lab inventory to {path}: {source}")]
    Inventory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Settings every session of every device reads.
#[derive(Debug)]
pub(crate) struct LabShared {
    pub username: String,
    pub password: String,
    pub enable_secret: String,
    pub rate: Option<u64>,
    pub slow_rate: u64,
    pub tftp_port: u16,
    pub ftp_port: u16,
    pub scp_port: u16,
    pub tftp_timeout: Duration,
    pub fault_delay: Duration,
    pub boot_time: Duration,
    pub authorized_keys: Vec<russh::keys::PublicKey>,
    pub keyboard_interactive: bool,
    pub while_reloading: WhileReloading,
    pub abort_timer_minute: Duration,
}

impl LabShared {
    /// The login methods the devices offer.
    pub(crate) fn methods(&self) -> russh::MethodSet {
        let mut m = vec![if self.keyboard_interactive {
            russh::MethodKind::KeyboardInteractive
        } else {
            russh::MethodKind::Password
        }];
        if !self.authorized_keys.is_empty() {
            m.push(russh::MethodKind::PublicKey);
        }
        russh::MethodSet::from(&m[..])
    }
}

/// A lab device as the caller sees it.
#[derive(Debug, Clone, Serialize)]
pub struct LabDeviceInfo {
    pub name: String,
    pub ssh: SocketAddr,
    pub persona: String,
    pub platform: crate::inventory::Platform,
    pub model: String,
}

/// A running lab.
pub struct Lab {
    devices: Vec<Arc<device::Device>>,
    shared: Arc<LabShared>,
    admin: Option<SocketAddr>,
}

impl Lab {
    /// Open every device's state, bind every SSH listener (errors come out here, not later),
    /// and start serving. Tasks stop when `shutdown` is triggered.
    pub async fn start(config: LabConfig, shutdown: Shutdown) -> Result<Lab, LabError> {
        if config.devices == 0 || config.devices > 4096 {
            return Err(LabError::Config(format!(
                "--devices {} must be between 1 and 4096",
                config.devices
            )));
        }
        if config.personas.is_empty() {
            return Err(LabError::Config("at least one --persona is needed".into()));
        }
        let base = u32::from(config.base_ip);
        let last = base
            .checked_add(config.devices as u32 - 1)
            .map(Ipv4Addr::from);
        match last {
            Some(ip) if ip.octets()[0] == config.base_ip.octets()[0] => {}
            _ => {
                return Err(LabError::Config(format!(
                    "--base-ip {} leaves no room for {} devices",
                    config.base_ip, config.devices
                )));
            }
        }
        let mut personas: BTreeMap<String, Arc<Persona>> = BTreeMap::new();
        for spec in &config.personas {
            if !personas.contains_key(spec) {
                personas.insert(spec.clone(), Arc::new(Persona::load(spec)?));
            }
        }
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            LabError::Config(format!(
                "cannot create --state-dir {}: {e}",
                config.state_dir.display()
            ))
        })?;
        let shared = Arc::new(LabShared {
            username: config.username.clone(),
            password: config.password.clone(),
            enable_secret: config.enable_secret.clone(),
            rate: config.rate,
            slow_rate: config.slow_rate.max(1),
            tftp_port: config.tftp_port,
            ftp_port: config.ftp_port,
            scp_port: config.scp_port,
            tftp_timeout: config.tftp_timeout,
            fault_delay: config.fault_delay,
            boot_time: config.boot_time,
            authorized_keys: config
                .authorized_keys
                .iter()
                .map(|line| {
                    russh::keys::PublicKey::from_openssh(line).map_err(|e| {
                        LabError::Config(format!("authorized key {line:?} does not parse: {e}"))
                    })
                })
                .collect::<Result<_, _>>()?,
            keyboard_interactive: config.keyboard_interactive,
            while_reloading: config.while_reloading,
            abort_timer_minute: config.abort_timer_minute,
        });
        let mut devices = Vec::new();
        let mut started = Vec::new();
        for k in 0..config.devices {
            let name = format!("{}{:03}", config.name_prefix, k + 1);
            let ip = Ipv4Addr::from(base + k as u32);
            let spec = &config.personas[k % config.personas.len()];
            let persona = personas[spec].clone();
            let dev = Arc::new(device::Device::open(
                &name,
                ip,
                persona,
                &config.state_dir,
                config.uptime,
            )?);
            let key = ssh::host_key(&name, &dev.dir)?;
            let listener = bind_ssh(&name, ip, config.ssh_port, &dev.dir).await?;
            let addr = listener.local_addr().map_err(|source| LabError::Bind {
                device: name.clone(),
                addr: SocketAddr::from((ip, config.ssh_port)),
                source,
            })?;
            dev.set_ssh_addr(addr);
            if config.ssh_port == 0 {
                // Remembered, so that a restarted lab answers where the inventory says.
                let _ = std::fs::write(dev.dir.join(SSH_PORT_FILE), format!("{}\n", addr.port()));
            }
            started.push((dev.clone(), key, listener));
            devices.push(dev);
        }
        let lab = Lab {
            devices,
            shared: shared.clone(),
            admin: None,
        };
        for spec in &config.faults {
            let targets = lab.resolve(&spec.device);
            if targets.is_empty() {
                return Err(LabError::Config(format!(
                    "--fault {}: no such device (use a name like {}001, a number, or all)",
                    spec.device, config.name_prefix
                )));
            }
            for d in targets {
                for f in &spec.faults {
                    d.set_fault(*f);
                }
            }
        }
        let admin = match config.admin {
            Some(addr) => Some(admin::start(addr, lab.devices.clone(), shutdown.clone()).await?),
            None => None,
        };
        for (dev, key, listener) in started {
            let cfg = Arc::new(ssh::server_config(key, shared.methods()));
            shutdown.tasks.spawn(ssh::supervise(
                dev,
                shared.clone(),
                cfg,
                listener,
                shutdown.clone(),
            ));
        }
        Ok(Lab { admin, ..lab })
    }

    fn resolve(&self, which: &str) -> Vec<Arc<device::Device>> {
        if which.eq_ignore_ascii_case("all") {
            return self.devices.clone();
        }
        if let Ok(n) = which.parse::<usize>() {
            return self
                .devices
                .get(n.wrapping_sub(1))
                .cloned()
                .into_iter()
                .collect();
        }
        self.devices
            .iter()
            .filter(|d| d.name == which)
            .cloned()
            .collect()
    }

    fn device(&self, name: &str) -> Option<&Arc<device::Device>> {
        self.devices.iter().find(|d| d.name == name)
    }

    pub fn devices(&self) -> Vec<LabDeviceInfo> {
        self.devices
            .iter()
            .map(|d| LabDeviceInfo {
                name: d.name.clone(),
                ssh: d.ssh_addr(),
                persona: d.persona.name.clone(),
                platform: d.persona.platform,
                model: d.persona.model.clone(),
            })
            .collect()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    pub(crate) fn username(&self) -> &str {
        &self.shared.username
    }

    /// A fleetup inventory of the lab: every device in group `lab` and site `lab`.
    pub fn inventory_yaml(&self) -> String {
        let q = yaml_scalar;
        let mut y = String::new();
        y.push_str("# Written by `fleetup lab --write-inventory`.\n");
        y.push_str("defaults:\n");
        y.push_str(&format!("  username: {}\n", q(&self.shared.username)));
        y.push_str(&format!("  password: {}\n", q(&self.shared.password)));
        y.push_str(&format!(
            "  enable_secret: {}\n",
            q(&self.shared.enable_secret)
        ));
        y.push_str("groups:\n  lab:\n    site: lab\ndevices:\n");
        for d in self.devices() {
            y.push_str(&format!("  - name: {}\n", q(&d.name)));
            y.push_str(&format!("    host: {}\n", d.ssh.ip()));
            y.push_str(&format!("    port: {}\n", d.ssh.port()));
            y.push_str(&format!("    platform: {}\n", d.platform));
            y.push_str(&format!("    model: {}\n", q(&d.model)));
            y.push_str("    site: lab\n    groups: [lab]\n");
        }
        y
    }

    pub fn set_fault(&self, device: &str, fault: Fault) -> bool {
        match self.device(device) {
            Some(d) => {
                d.set_fault(fault);
                true
            }
            None => false,
        }
    }

    pub fn clear_faults(&self, device: &str) -> bool {
        match self.device(device) {
            Some(d) => {
                d.clear_faults();
                true
            }
            None => false,
        }
    }

    /// Wait until the device answers SSH again (at once when it is up); false for an unknown
    /// device or when the lab stops first.
    pub async fn wait_until_up(&self, device: &str) -> bool {
        let Some(d) = self.device(device) else {
            return false;
        };
        let mut rx = d.power.subscribe();
        rx.wait_for(|p| *p == Power::Up).await.is_ok()
    }

    pub fn state(&self, device: &str) -> Option<DeviceState> {
        self.device(device).map(|d| d.snapshot())
    }
}

/// A YAML scalar: plain when safe, else double-quoted (JSON strings are valid YAML).
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !s.starts_with(['-', '.'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// `fleetup lab`: start, print where everything is, run until shutdown.
/// Where a device with `--ssh-port 0` keeps the port it was given.
const SSH_PORT_FILE: &str = "ssh-port";

/// The device's SSH listener: on `port`, or with port 0 on the port it had before (kept in its
/// state directory), or a free one when it had none or that one is taken now.
async fn bind_ssh(
    name: &str,
    ip: Ipv4Addr,
    port: u16,
    dir: &std::path::Path,
) -> Result<tokio::net::TcpListener, LabError> {
    if port == 0
        && let Some(before) = std::fs::read_to_string(dir.join(SSH_PORT_FILE))
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
    {
        match ssh::bind(name, SocketAddr::from((ip, before))).await {
            Ok(l) => return Ok(l),
            Err(e) => tracing::warn!(device = name, port = before, error = %e,
                "the port this device had is taken; it gets a new one (re-import the inventory)"),
        }
    }
    ssh::bind(name, SocketAddr::from((ip, port))).await
}

pub async fn run_lab(args: LabArgs, shutdown: Shutdown) -> Result<(), LabError> {
    let config = LabConfig::from_args(&args)?;
    let lab = Lab::start(config, shutdown.clone()).await?;
    if let Some(path) = &args.write_inventory {
        std::fs::write(path, lab.inventory_yaml()).map_err(|source| LabError::Inventory {
            path: path.clone(),
            source,
        })?;
        println!("inventory written to {}", path.display());
    }
    for d in lab.devices() {
        println!(
            "{}  ssh {}@{} -p {}  ({}, {})",
            d.name,
            lab.username(),
            d.ssh.ip(),
            d.ssh.port(),
            d.persona,
            d.model
        );
    }
    if let Some(a) = lab.admin_addr() {
        println!("admin API: http://{a}/api/devices");
    }
    shutdown.requested().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs() {
        let f: FaultSpec = "lab-sw-002=tftp-timeout,reload_old_image".parse().unwrap();
        assert_eq!(f.device, "lab-sw-002");
        assert_eq!(f.faults, vec![Fault::TftpTimeout, Fault::ReloadOldImage]);
        assert!(
            "lab-sw-002"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("DEVICE=KIND")
        );
        assert!(
            "x=boom"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("tftp-timeout")
        );
        assert!("=tftp-timeout".parse::<FaultSpec>().is_err());
    }

    #[test]
    fn yaml_scalars() {
        assert_eq!(yaml_scalar("lab-sw-001"), "lab-sw-001");
        assert_eq!(yaml_scalar("yes"), "\"yes\"");
        assert_eq!(yaml_scalar("p@ss: word"), "\"p@ss: word\"");
        assert_eq!(yaml_scalar("1234"), "\"1234\"");
        assert_eq!(yaml_scalar(""), "\"\"");
    }
}
