//! One simulated device: its persisted state (`STATE_DIR/<device>/state.json`), its flash (a real
//! directory, `STATE_DIR/<device>/flash/`, of finite size), its faults, and what a reload does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::persona::{self, MembersKind, Persona};
use super::{Fault, install};

/// How many commands the admin API shows per device.
const LAST_COMMANDS: usize = 50;

/// The longest uptime a lab device can be given (`fleetup lab --uptime`): ten years.
pub(super) const MAX_UPTIME_SECS: u64 = 315_360_000;

/// The configuration lines the simulator understands; everything else of a config is fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ConfigBits {
    pub hostname: String,
    /// `boot system` entries as typed (`flash:x.bin`, `flash:/x.bin`).
    pub boot_system: Vec<String>,
    pub config_register: String,
    pub tftp_blocksize: Option<u16>,
    pub ftp_username: Option<String>,
    pub ftp_password: Option<String>,
    pub ftp_passive: bool,
    /// `file prompt alert|noisy|quiet`.
    pub file_prompt: String,
    /// `interface X` settings, by the persona's full interface name.
    #[serde(default)]
    pub interfaces: BTreeMap<String, InterfaceConfig>,
    /// Other global lines kept as typed (`logging …`, `ip tftp source-interface …`), in order.
    #[serde(default)]
    pub lines: Vec<String>,
    /// NX-OS with a kickstart image: the kickstart boot variable (`bootflash:/K`).
    #[serde(default)]
    pub boot_kickstart: Option<String>,
}

/// What `interface X` submode lines changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct InterfaceConfig {
    /// `description …`; `None` keeps the persona's.
    pub description: Option<String>,
    /// `shutdown`.
    pub shutdown: bool,
}

/// Everything that survives a lab restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Persisted {
    pub running: ConfigBits,
    pub startup: ConfigBits,
    /// The boot loader's BOOT variable (switches set it as soon as `boot system` is typed).
    pub boot_variable: Vec<String>,
    /// The configuration register in effect since the last boot.
    pub config_register_now: String,
    /// What the device booted, as `show version` prints it (`flash:/x.bin`).
    pub booted_image: String,
    /// The kickstart it booted (NX-OS with separate images).
    #[serde(default)]
    pub booted_kickstart: Option<String>,
    pub version: String,
    /// Unix seconds of the last boot.
    pub booted_at: i64,
    pub reload_count: u64,
    pub last_reload_reason: Option<String>,
    /// Files a faulty transfer damaged: the boot loader refuses them.
    #[serde(default)]
    pub corrupt_files: BTreeSet<String>,
    /// Ports whose link did not come back after the last boot (`link-down-after-reload`).
    #[serde(default)]
    pub links_down: BTreeSet<String>,
    /// Stack members or the standby supervisor, all but the active unit (whose state is the
    /// device's own), in the persona's order.
    #[serde(default)]
    pub members: Vec<MemberBits>,
    /// IOS-XE install mode: what was added, activated and not yet committed.
    #[serde(default)]
    pub install: InstallBits,
    /// The last upgrade was in service (IOS-XE `install activate issu`, NX-OS `install all
    /// ... non-disruptive`); any other upgrade or reload clears it.
    #[serde(default)]
    pub last_upgrade_issu: bool,
}

/// A stack member or a standby supervisor, as it booted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MemberBits {
    /// The stack member number or the supervisor's slot.
    pub number: u32,
    pub version: String,
    pub booted_image: String,
    /// Its own BOOT variable: a classic IOS stack member has one each (`boot system switch
    /// all|N`); members sharing the active's flash follow the active's.
    pub boot_variable: Vec<String>,
    pub condition: Condition,
}

/// How a member or standby came back from the last boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Condition {
    /// In the stack, on the stack's version; a standby supervisor in hot standby.
    Ready,
    /// Was in the stack and did not rejoin (`stack-member-lost`).
    Removed,
    /// Joined on another version than the active's.
    VersionMismatch,
    /// A standby supervisor that did not reach hot standby (`standby-not-hot`).
    NotHot,
}

/// IOS-XE install mode state between `install add`, `install activate` and `install commit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct InstallBits {
    /// `install add file X` without `activate`: the image file and its version.
    #[serde(default)]
    pub added: Option<(String, String)>,
    /// Activated and not committed: the `packages.conf` to go back to and its version.
    #[serde(default)]
    pub rollback: Option<(String, String)>,
    /// When the auto-abort timer expires (Unix milliseconds), while it runs.
    #[serde(default)]
    pub abort_at_ms: Option<i64>,
}

/// Whether the device answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Power {
    Up,
    Reloading,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlashFile {
    pub name: String,
    pub size: u64,
    #[serde(skip)]
    pub inode: u64,
    #[serde(skip)]
    pub modified: Option<SystemTime>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlashInfo {
    pub filesystem: String,
    pub size: u64,
    pub free: u64,
    pub files: Vec<FlashFile>,
}

/// A stack member or supervisor as the admin API and tests see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberState {
    /// Stack member number or supervisor slot.
    pub number: u32,
    /// `Active`, `Standby`, `Member`.
    pub role: String,
    /// As the device prints it: `Ready`, `Removed`, `V-Mismatch` (`show switch`); `ACTIVE`,
    /// `STANDBY HOT`, `STANDBY COLD` (IOS-XE `show redundancy`); `active`, `ha-standby`,
    /// `powered-up` (NX-OS `show module`).
    pub state: String,
    pub version: String,
    pub running_image: String,
    /// The BOOT variable this member boots from next.
    pub boot_variable: Vec<String>,
}

/// A device's state as the admin API and tests see it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceState {
    pub name: String,
    pub persona: String,
    pub model: String,
    /// The serial number `show version` and `show inventory` print.
    pub serial: String,
    pub ssh: SocketAddr,
    pub power: Power,
    pub version: String,
    pub running_image: String,
    /// NX-OS with separate images: the kickstart it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_kickstart: Option<String>,
    pub boot_variable: Vec<String>,
    /// NX-OS with separate images: the kickstart boot variable of the saved configuration,
    /// the kickstart the next reload boots (`bootflash:/K`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_kickstart: Option<String>,
    /// The `boot system` lines of the saved (startup) configuration.
    pub startup_boot_system: Vec<String>,
    pub config_register: String,
    pub unsaved_changes: bool,
    pub reload_count: u64,
    pub flash: FlashInfo,
    pub faults: Vec<Fault>,
    /// Ports left down by the `link-down-after-reload` fault since the last boot.
    pub links_down: Vec<String>,
    pub last_commands: Vec<String>,
    /// When the device last began to answer SSH again (RFC 3339, UTC): its start, or the end
    /// of its last reload. `bench/rollout.sh` measures how long fleetup takes to notice.
    pub up_since: Option<String>,
    /// Stack members or supervisors, the active first; empty on a single unit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberState>,
    /// IOS-XE install mode: an activation not yet committed (`install commit` or `install
    /// abort` ends it).
    pub install_uncommitted: bool,
    /// The `install activate auto-abort-timer` timer runs.
    pub abort_timer_running: bool,
    /// The last upgrade was in service (`install activate issu`, `install all ...
    /// non-disruptive`).
    pub last_upgrade_issu: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device {device}: cannot use state directory {path}: {source}")]
    Io {
        device: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "device {device}: state file {path} is damaged ({message}); delete it to start the device afresh"
    )]
    BadState {
        device: String,
        path: PathBuf,
        message: String,
    },
}

pub(super) struct Device {
    pub name: String,
    pub ip: Ipv4Addr,
    pub persona: Arc<Persona>,
    pub dir: PathBuf,
    pub flash_dir: PathBuf,
    inner: Mutex<Inner>,
    /// Wakes the device's supervisor: a reload was confirmed.
    pub reload_requested: Notify,
    /// Wakes a device that waits for a fault to be cleared.
    pub faults_changed: Notify,
    /// Wakes the auto-abort timer: an activation, commit or abort changed it.
    pub install_changed: Notify,
    pub power: watch::Sender<Power>,
    /// When the device last began to answer SSH (lab start or the end of a reload).
    up_since: Mutex<Option<jiff::Timestamp>>,
}

struct Inner {
    state: Persisted,
    faults: BTreeSet<Fault>,
    last_commands: VecDeque<String>,
    ssh: SocketAddr,
}

fn io_err(device: &str, path: &Path) -> impl FnOnce(std::io::Error) -> DeviceError {
    let device = device.to_string();
    let path = path.to_path_buf();
    move |source| DeviceError::Io {
        device,
        path,
        source,
    }
}

pub(super) fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl Device {
    /// Open (or create on first start) the device's state directory. A new device has been up
    /// for `uptime` already.
    pub(super) fn open(
        name: &str,
        ip: Ipv4Addr,
        persona: Arc<Persona>,
        state_dir: &Path,
        uptime: Duration,
    ) -> Result<Device, DeviceError> {
        let dir = state_dir.join(name);
        let flash_dir = dir.join("flash");
        std::fs::create_dir_all(&flash_dir).map_err(io_err(name, &flash_dir))?;
        let state_path = dir.join("state.json");
        let state = if state_path.exists() {
            let text = std::fs::read_to_string(&state_path).map_err(io_err(name, &state_path))?;
            serde_json::from_str::<Persisted>(&text).map_err(|e| DeviceError::BadState {
                device: name.to_string(),
                path: state_path.clone(),
                message: e.to_string(),
            })?
        } else {
            let image = &persona.initial_image;
            let mut files = Vec::new();
            if !persona.install_mode {
                files.push((image.clone(), persona.initial_image_size));
            }
            if let Some(k) = &persona.kickstart_image {
                files.push((k.clone(), persona.kickstart_image_size));
            }
            files.extend(
                persona
                    .initial_files
                    .iter()
                    .map(|f| (f.name.clone(), f.size)),
            );
            for (file, size) in files {
                let path = flash_dir.join(&file);
                if !path.exists() {
                    // Sparse: a realistic size without the disk use.
                    let f = std::fs::File::create(&path).map_err(io_err(name, &path))?;
                    f.set_len(size).map_err(io_err(name, &path))?;
                }
            }
            let fs = &persona.filesystem;
            let version = crate::images::guess_version(image).unwrap_or_else(|| "15.2".into());
            let boot_path = if persona.install_mode {
                install::expand(&flash_dir, image, &version, persona.initial_image_size)
                    .map_err(io_err(name, &flash_dir))?;
                install::write_packages_conf(&flash_dir, image, &version)
                    .map_err(io_err(name, &flash_dir))?;
                format!("{fs}:packages.conf")
            } else {
                format!("{fs}:/{image}")
            };
            let kickstart = persona
                .kickstart_image
                .as_ref()
                .map(|k| format!("{fs}:/{k}"));
            let config = ConfigBits {
                hostname: name.to_string(),
                boot_system: vec![boot_path.clone()],
                config_register: persona.config_register.clone(),
                tftp_blocksize: None,
                ftp_username: None,
                ftp_password: None,
                ftp_passive: true,
                file_prompt: "alert".to_string(),
                interfaces: BTreeMap::new(),
                lines: Vec::new(),
                boot_kickstart: kickstart.clone(),
            };
            Persisted {
                running: config.clone(),
                startup: config.clone(),
                boot_variable: config.boot_system.clone(),
                config_register_now: persona.config_register.clone(),
                booted_image: boot_path,
                booted_kickstart: kickstart,
                version,
                booted_at: now_unix() - uptime.as_secs().min(MAX_UPTIME_SECS) as i64,
                reload_count: 0,
                last_reload_reason: None,
                corrupt_files: BTreeSet::new(),
                links_down: BTreeSet::new(),
                members: Vec::new(),
                install: InstallBits::default(),
                last_upgrade_issu: false,
            }
        };
        let mut state = state;
        if let Some(spec) = &persona.members
            && state.members.is_empty()
        {
            let separate = persona.separate_flash();
            for &n in &spec.slots[1..] {
                if separate {
                    // A classic IOS stack member, or a standby supervisor in bundle mode, has
                    // its own flash with the same image.
                    let dir = dir.join(format!("flash{n}"));
                    std::fs::create_dir_all(&dir).map_err(io_err(name, &dir))?;
                    let image = &persona.initial_image;
                    let path = dir.join(image);
                    if !path.exists() {
                        let f = std::fs::File::create(&path).map_err(io_err(name, &path))?;
                        f.set_len(persona.initial_image_size)
                            .map_err(io_err(name, &path))?;
                    }
                }
                state.members.push(MemberBits {
                    number: n,
                    version: state.version.clone(),
                    booted_image: state.booted_image.clone(),
                    boot_variable: state.boot_variable.clone(),
                    condition: Condition::Ready,
                });
            }
        }
        let (power, _) = watch::channel(Power::Up);
        let device = Device {
            name: name.to_string(),
            ip,
            persona,
            dir,
            flash_dir,
            inner: Mutex::new(Inner {
                state,
                faults: BTreeSet::new(),
                last_commands: VecDeque::new(),
                ssh: SocketAddr::from((ip, 0)),
            }),
            reload_requested: Notify::new(),
            faults_changed: Notify::new(),
            install_changed: Notify::new(),
            power,
            up_since: Mutex::new(Some(jiff::Timestamp::now())),
        };
        device.save()?;
        Ok(device)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Read the persisted state.
    pub(super) fn state(&self) -> Persisted {
        self.lock().state.clone()
    }

    /// Change the persisted state and write it to disk.
    pub(super) fn update<R>(&self, f: impl FnOnce(&mut Persisted) -> R) -> R {
        let r = f(&mut self.lock().state);
        if let Err(e) = self.save() {
            tracing::warn!(device = %self.name, error = %e, "cannot save lab device state");
        }
        r
    }

    pub(super) fn save(&self) -> Result<(), DeviceError> {
        let text = {
            let inner = self.lock();
            serde_json::to_string_pretty(&inner.state).unwrap_or_default()
        };
        let path = self.dir.join("state.json");
        let tmp = self.dir.join("state.json.tmp");
        std::fs::write(&tmp, text).map_err(io_err(&self.name, &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&self.name, &path))
    }

    pub(super) fn set_ssh_addr(&self, addr: SocketAddr) {
        self.lock().ssh = addr;
    }

    pub(super) fn ssh_addr(&self) -> SocketAddr {
        self.lock().ssh
    }

    pub(super) fn has_fault(&self, f: Fault) -> bool {
        self.lock().faults.contains(&f)
    }

    pub(super) fn set_fault(&self, f: Fault) {
        self.lock().faults.insert(f);
        self.faults_changed.notify_waiters();
    }

    pub(super) fn clear_faults(&self) {
        self.lock().faults.clear();
        self.faults_changed.notify_waiters();
    }

    pub(super) fn clear_fault(&self, f: Fault) {
        self.lock().faults.remove(&f);
        self.faults_changed.notify_waiters();
    }

    pub(super) fn record_command(&self, line: &str) {
        let mut inner = self.lock();
        if inner.last_commands.len() == LAST_COMMANDS {
            inner.last_commands.pop_front();
        }
        inner.last_commands.push_back(line.to_string());
    }

    /// The BOOT variable the boot loader will use.
    pub(super) fn boot_list(&self, s: &Persisted) -> Vec<String> {
        if self.persona.boot_system_immediate {
            s.boot_variable.clone()
        } else {
            s.startup.boot_system.clone()
        }
    }

    /// Each member or supervisor has a flash of its own: a classic IOS stack (`flash1:`,
    /// `flash2:`) and a dual-supervisor chassis in bundle mode (`stby-bootflash:`). Install
    /// mode and NX-OS keep them in step by themselves.
    pub(super) fn separate_flash(&self) -> bool {
        self.persona.separate_flash()
    }

    /// Each member keeps a BOOT variable of its own (a classic stack: `boot system switch N`);
    /// a standby supervisor takes the active one's with the configuration.
    fn own_boot_variable(&self) -> bool {
        self.separate_flash()
            && self
                .persona
                .members
                .as_ref()
                .is_some_and(|m| m.kind == MembersKind::Stack)
    }

    /// The active member's number or slot, on a stack or dual-supervisor device.
    pub(super) fn active_slot(&self) -> Option<u32> {
        self.persona
            .members
            .as_ref()
            .and_then(|m| m.slots.first().copied())
    }

    /// The file system a path names: `None` for the device's own flash (also `flash1:` or
    /// `flash-1:` of the active member, `flash-N:` of an install-mode stack member, and
    /// `stby-bootflash:`, which hold the same files), `Some(N)` for member N's own flash on a
    /// classic IOS stack. With the name as typed and the rest of the path.
    pub(super) fn resolve_fs<'a>(&self, path: &'a str) -> Option<(Option<u32>, String, &'a str)> {
        let (fs, rest) = path.split_once(':')?;
        let own = &self.persona.filesystem;
        if fs.eq_ignore_ascii_case(own) || self.flash_alias(fs) {
            return Some((None, own.clone(), rest));
        }
        let spec = self.persona.members.as_ref()?;
        let lower = fs.to_ascii_lowercase();
        match spec.kind {
            MembersKind::Stack => {
                let num = if self.persona.install_mode {
                    lower.strip_prefix(&format!("{own}-"))
                } else {
                    lower.strip_prefix(own.as_str())
                }?;
                let n: u32 = num.parse().ok()?;
                if !spec.slots.contains(&n) {
                    return None;
                }
                let member = (self.separate_flash() && Some(n) != self.active_slot()).then_some(n);
                Some((member, fs.to_string(), rest))
            }
            MembersKind::Supervisors => {
                let standby = self.separate_flash().then(|| spec.slots.get(1).copied());
                (lower == format!("stby-{own}")).then(|| (standby.flatten(), fs.to_string(), rest))
            }
        }
    }

    /// Another name of the device's own flash, as its `show file systems` lists it on the same
    /// row (a Catalyst 9400's `bootflash: flash:`).
    fn flash_alias(&self, fs: &str) -> bool {
        self.persona
            .templates
            .show_file_systems
            .lines()
            .find(|l| l.contains("{flash_free"))
            .is_some_and(|row| {
                row.split_whitespace()
                    .filter_map(|w| w.strip_suffix(':'))
                    .any(|prefix| prefix.eq_ignore_ascii_case(fs))
            })
    }

    /// The directory of a member's own flash (`None`: the device's).
    pub(super) fn member_dir(&self, member: Option<u32>) -> PathBuf {
        match member {
            Some(n) => self.dir.join(format!("flash{n}")),
            None => self.flash_dir.clone(),
        }
    }

    /// A file of a file system `resolve_fs` named.
    pub(super) fn path_of(&self, member: Option<u32>, file: &str) -> PathBuf {
        self.member_dir(member).join(file)
    }

    /// Map `flash:x`, `flash:/x` to a file name in the flash directory.
    pub(super) fn flash_file_name<'a>(&self, path: &'a str) -> Option<&'a str> {
        let (fs, rest) = path.split_once(':')?;
        if fs != self.persona.filesystem && !self.flash_alias(fs) {
            return None;
        }
        let rest = rest.trim_start_matches('/');
        if crate::images::validate_file_name(rest).is_ok() {
            Some(rest)
        } else {
            None
        }
    }

    pub(super) fn flash_path(&self, file: &str) -> PathBuf {
        self.flash_dir.join(file)
    }

    /// The flash directory as the device sees it (a handful of files: read synchronously).
    pub(super) fn flash(&self) -> FlashInfo {
        self.flash_of(None)
    }

    /// A member's flash (`None`: the device's own).
    pub(super) fn flash_of(&self, member: Option<u32>) -> FlashInfo {
        use std::os::unix::fs::MetadataExt;
        let mut files = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.member_dir(member)) {
            for entry in rd.flatten() {
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                // Partial downloads live under a hidden name until complete.
                if name.starts_with('.') {
                    continue;
                }
                files.push(FlashFile {
                    name,
                    size: meta.len(),
                    inode: meta.ino() % 1_000_000,
                    modified: meta.modified().ok(),
                });
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let used: u64 = files.iter().map(|f| f.size).sum();
        let size = self.flash_size(used);
        FlashInfo {
            filesystem: match member {
                Some(n) => format!("{}{n}", self.persona.filesystem),
                None => self.persona.filesystem.clone(),
            },
            size,
            free: size.saturating_sub(used),
            files,
        }
    }

    /// The flash size the device reports: the persona's, or barely more than what is used when
    /// the `flash-too-small` fault is on.
    fn flash_size(&self, used: u64) -> u64 {
        if self.has_fault(Fault::FlashTooSmall) {
            (used + 64 * 1024).min(self.persona.flash_size.max(used))
        } else {
            self.persona.flash_size
        }
    }

    pub(super) fn mark_corrupt(&self, file: &str, corrupt: bool) {
        self.update(|s| {
            if corrupt {
                s.corrupt_files.insert(file.to_string());
            } else {
                s.corrupt_files.remove(file);
            }
        });
    }

    /// Boot: the first valid `boot system` entry, else the first image in flash (what the IOS
    /// boot loader does), unless a fault keeps the old image.
    pub(super) fn boot(&self) {
        let flash = self.flash();
        let s = self.state();
        let present: BTreeMap<&str, &FlashFile> =
            flash.files.iter().map(|f| (f.name.as_str(), f)).collect();
        let version_of = |name: &str| -> Option<String> {
            if present.get(name).is_none_or(|f| f.size == 0) || s.corrupt_files.contains(name) {
                return None;
            }
            if name.ends_with(".conf") {
                install::conf_version(&self.flash_dir, name, &s.corrupt_files)
            } else {
                crate::images::guess_version(name)
            }
        };
        let bootable = |name: &str| version_of(name).is_some();
        let fs = &self.persona.filesystem;
        let mut choice: Option<(String, String)> = None;
        if self.has_fault(Fault::ReloadOldImage)
            && let Some(name) = self.flash_file_name(&s.booted_image)
            && present.contains_key(name)
        {
            choice = Some((s.booted_image.clone(), name.to_string()));
        }
        if choice.is_none() {
            for entry in self.boot_list(&s) {
                if let Some(name) = self.flash_file_name(&entry)
                    && bootable(name)
                {
                    choice = Some((entry.clone(), name.to_string()));
                    break;
                }
            }
        }
        if choice.is_none() {
            choice = flash
                .files
                .iter()
                .find(|f| bootable(&f.name))
                .map(|f| (format!("{fs}:/{}", f.name), f.name.clone()));
        }
        // The first port that is up with a neighbor on it stays dark under the fault.
        let link_down: BTreeSet<String> = if self.has_fault(Fault::LinkDownAfterReload) {
            self.persona
                .interfaces
                .iter()
                .find(|i| i.connected && i.neighbor.is_some())
                .or_else(|| self.persona.interfaces.iter().find(|i| i.connected))
                .map(|i| i.name.clone())
                .into_iter()
                .collect()
        } else {
            BTreeSet::new()
        };
        // A kickstart that is there and intact is booted; else the one booted last time.
        let kickstart = s.startup.boot_kickstart.clone().filter(|k| {
            !self.has_fault(Fault::ReloadOldImage)
                && self.flash_file_name(k).is_some_and(|n| {
                    present.get(n).is_some_and(|f| f.size > 0) && !s.corrupt_files.contains(n)
                })
        });
        let (new_version, new_image) = match &choice {
            Some((path, name)) => (version_of(name).unwrap_or_default(), path.clone()),
            None => (s.version.clone(), s.booted_image.clone()),
        };
        let members = self.boot_members(&s, &new_version, &new_image);
        self.update(|st| {
            st.links_down = link_down;
            st.members = members;
            if let Some((path, name)) = choice {
                st.version = version_of(&name).unwrap_or_default();
                st.booted_image = path;
            }
            if kickstart.is_some() {
                st.booted_kickstart = kickstart;
            }
            st.running = st.startup.clone();
            // Switches keep their BOOT variable; only the running config is lost.
            st.running.boot_system = if self.persona.boot_system_immediate {
                st.boot_variable.clone()
            } else {
                st.startup.boot_system.clone()
            };
            st.config_register_now = st.running.config_register.clone();
            st.booted_at = now_unix();
            st.last_reload_reason = Some("Reload command".to_string());
        });
    }

    /// How each member or standby comes back from a boot in which the active unit came up on
    /// `version` from `image`.
    fn boot_members(&self, s: &Persisted, version: &str, image: &str) -> Vec<MemberBits> {
        let Some(spec) = &self.persona.members else {
            return Vec::new();
        };
        let separate = self.separate_flash();
        // The faults take the highest-numbered member that is not the active one.
        let target = spec.slots[1..].iter().max().copied();
        spec.slots[1..]
            .iter()
            .map(|&n| {
                let before = s.members.iter().find(|m| m.number == n);
                let old_version = before.map_or(s.version.clone(), |m| m.version.clone());
                let old_image = before.map_or(s.booted_image.clone(), |m| m.booted_image.clone());
                let boot_variable = if self.own_boot_variable() {
                    before.map_or(s.boot_variable.clone(), |m| m.boot_variable.clone())
                } else {
                    self.boot_list(s)
                };
                let (mut v, mut img) = if separate {
                    self.member_boot(n, &boot_variable)
                        .unwrap_or((old_version.clone(), old_image.clone()))
                } else {
                    (version.to_string(), image.to_string())
                };
                let stack = spec.kind == MembersKind::Stack;
                let condition =
                    if stack && Some(n) == target && self.has_fault(Fault::StackMemberLost) {
                        v = old_version;
                        img = old_image;
                        Condition::Removed
                    } else if stack
                        && Some(n) == target
                        && self.has_fault(Fault::StackMemberVersionMismatch)
                    {
                        v = old_version;
                        img = old_image;
                        Condition::VersionMismatch
                    } else if !stack && self.has_fault(Fault::StandbyNotHot) {
                        Condition::NotHot
                    } else if v != version {
                        Condition::VersionMismatch
                    } else {
                        Condition::Ready
                    };
                MemberBits {
                    number: n,
                    version: v,
                    booted_image: img,
                    boot_variable,
                    condition,
                }
            })
            .collect()
    }

    /// What a classic IOS stack member's own boot loader boots: the first entry of its BOOT
    /// variable found whole in its own flash, else the first image there. (version, path)
    fn member_boot(&self, n: u32, boot_variable: &[String]) -> Option<(String, String)> {
        let flash = self.flash_of(Some(n));
        let ok = |name: &str| flash.files.iter().any(|f| f.name == name && f.size > 0);
        let fs = &self.persona.filesystem;
        for entry in boot_variable {
            if let Some(name) = self.flash_file_name(entry)
                && ok(name)
                && let Some(v) = crate::images::guess_version(name)
            {
                return Some((v, entry.clone()));
            }
        }
        flash.files.iter().find_map(|f| {
            let v = crate::images::guess_version(&f.name).filter(|_| f.size > 0)?;
            f.name
                .ends_with(".bin")
                .then(|| (v, format!("{fs}:/{}", f.name)))
        })
    }

    /// Time left on the auto-abort timer (zero once expired); `None` when it does not run.
    pub(super) fn abort_left(&self) -> Option<Duration> {
        let at = self.lock().state.install.abort_at_ms?;
        let now = jiff::Timestamp::now().as_millisecond();
        Some(Duration::from_millis((at - now).max(0) as u64))
    }

    /// Change the install state (and wake the auto-abort timer).
    pub(super) fn update_install(&self, f: impl FnOnce(&mut InstallBits)) {
        self.update(|s| f(&mut s.install));
        self.install_changed.notify_waiters();
    }

    /// `install abort` or the expired auto-abort timer: the package set active before the
    /// activation becomes the one the next boot reads; the activation is forgotten. False
    /// when there was nothing to go back to.
    pub(super) fn roll_back_install(&self) -> bool {
        let Some((conf, _version)) = self.state().install.rollback else {
            // A timer without an activation to undo stops (so it never fires again).
            self.update_install(|i| i.abort_at_ms = None);
            return false;
        };
        if let Err(e) = std::fs::write(self.flash_dir.join("packages.conf"), conf) {
            tracing::warn!(device = %self.name, error = %e, "cannot write packages.conf");
            return false;
        }
        self.update_install(|i| {
            i.rollback = None;
            i.abort_at_ms = None;
        });
        true
    }

    /// Wait until the auto-abort timer expires (forever while none runs).
    pub(super) async fn abort_timer_expired(&self) {
        loop {
            let changed = self.install_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.abort_left() {
                Some(left) if left.is_zero() => return,
                Some(left) => {
                    tokio::select! {
                        _ = tokio::time::sleep(left) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Every member or supervisor, the active first, as the admin API shows them.
    pub(super) fn member_states(&self, s: &Persisted) -> Vec<MemberState> {
        let Some(spec) = &self.persona.members else {
            return Vec::new();
        };
        let nxos = self.persona.platform == crate::inventory::Platform::Nxos;
        // IOS 15 stacks call the active member the master.
        let ios15 = self.persona.platform == crate::inventory::Platform::Ios;
        let mut out = vec![MemberState {
            number: spec.slots[0],
            role: if ios15 { "Master" } else { "Active" }.into(),
            state: match (spec.kind, nxos) {
                (MembersKind::Stack, _) => "Ready",
                (MembersKind::Supervisors, false) => "ACTIVE",
                (MembersKind::Supervisors, true) => "active",
            }
            .into(),
            version: s.version.clone(),
            running_image: s.booted_image.clone(),
            boot_variable: self.boot_list(s),
        }];
        for (i, m) in s.members.iter().enumerate() {
            let role = match (spec.kind, i, m.condition) {
                (MembersKind::Stack, _, _) if ios15 => "Member",
                (MembersKind::Stack, _, Condition::Removed) => "Member",
                (MembersKind::Stack, 0, _) | (MembersKind::Supervisors, _, _) => "Standby",
                _ => "Member",
            };
            let state = match (spec.kind, nxos, m.condition) {
                (MembersKind::Stack, _, Condition::Ready) => "Ready",
                (MembersKind::Stack, _, Condition::Removed) => "Removed",
                (MembersKind::Stack, _, _) => "V-Mismatch",
                // A standby on another version than the active one falls out of SSO.
                (
                    MembersKind::Supervisors,
                    false,
                    Condition::NotHot | Condition::VersionMismatch,
                ) => "STANDBY COLD",
                (MembersKind::Supervisors, false, _) => "STANDBY HOT",
                (MembersKind::Supervisors, true, Condition::NotHot) => "powered-up",
                (MembersKind::Supervisors, true, _) => "ha-standby",
            };
            out.push(MemberState {
                number: m.number,
                role: role.into(),
                state: state.into(),
                version: m.version.clone(),
                running_image: m.booted_image.clone(),
                boot_variable: if self.own_boot_variable() {
                    m.boot_variable.clone()
                } else {
                    self.boot_list(s)
                },
            });
        }
        out
    }

    pub(super) fn snapshot(&self) -> DeviceState {
        let flash = self.flash();
        let inner = self.lock();
        let s = &inner.state;
        DeviceState {
            name: self.name.clone(),
            persona: self.persona.name.clone(),
            model: self.persona.model.clone(),
            serial: serial(&self.name),
            ssh: inner.ssh,
            power: *self.power.borrow(),
            version: s.version.clone(),
            running_image: s.booted_image.clone(),
            running_kickstart: s.booted_kickstart.clone(),
            boot_variable: self.boot_list(s),
            boot_kickstart: s.startup.boot_kickstart.clone(),
            startup_boot_system: s.startup.boot_system.clone(),
            config_register: s.config_register_now.clone(),
            unsaved_changes: s.running != s.startup,
            reload_count: s.reload_count,
            flash,
            faults: inner.faults.iter().copied().collect(),
            links_down: s.links_down.iter().cloned().collect(),
            last_commands: inner.last_commands.iter().cloned().collect(),
            members: self.member_states(s),
            install_uncommitted: s.install.rollback.is_some(),
            abort_timer_running: s.install.abort_at_ms.is_some(),
            last_upgrade_issu: s.last_upgrade_issu,
            up_since: self
                .up_since
                .lock()
                .ok()
                .and_then(|t| t.map(|t| t.to_string())),
        }
    }

    /// Start the reload that the CLI just confirmed, and return once the device has stopped
    /// answering: its SSH port is silent or closed, and sessions are being dropped. A session
    /// that closes after this finds the device already away, as on a real one.
    pub(super) async fn request_reload(&self) {
        let mut power = self.power.subscribe();
        self.reload_requested.notify_one();
        // Bounded: the lab may be shutting down and its supervisor gone.
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            power.wait_for(|p| *p == Power::Reloading),
        )
        .await;
    }

    /// The device answers SSH (again) from now on.
    pub(super) fn power_up(&self) {
        if let Ok(mut t) = self.up_since.lock() {
            *t = Some(jiff::Timestamp::now());
        }
        self.power.send_replace(Power::Up);
    }

    /// Values for the persona's templates.
    pub(super) fn template_vars(&self) -> BTreeMap<&'static str, String> {
        let flash = self.flash();
        let s = self.state();
        let p = &self.persona;
        let image = s
            .booted_image
            .rsplit(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_string();
        let mut v = BTreeMap::new();
        v.insert("hostname", s.running.hostname.clone());
        v.insert("model", p.model.clone());
        v.insert("version", s.version.clone());
        v.insert("image_upper", image_upper(&image));
        v.insert(
            "platform_upper",
            image
                .split('-')
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase(),
        );
        v.insert("image", image);
        v.insert("image_path", s.booted_image.clone());
        let kickstart = s.booted_kickstart.clone().unwrap_or_default();
        v.insert(
            "kickstart_image",
            kickstart
                .rsplit(['/', ':'])
                .next()
                .unwrap_or_default()
                .to_string(),
        );
        // Each image carries its own version: a kickstart and a system of different releases
        // print different `kickstart:` and `system:` versions.
        v.insert(
            "kickstart_version",
            crate::images::guess_version(v["kickstart_image"].as_str())
                .unwrap_or_else(|| s.version.clone()),
        );
        v.insert("kickstart_path", kickstart);
        // NX-OS prints its boot variables as `bootflash:/FILE`, however they were typed, and
        // both the current and the next-reload ones follow the running configuration.
        let nx_path = |entry: &str| {
            let file = entry.rsplit(['/', ':']).next().unwrap_or(entry);
            format!("{}:/{file}", p.filesystem)
        };
        v.insert(
            "boot_running",
            s.running
                .boot_system
                .first()
                .map(|b| nx_path(b))
                .unwrap_or_default(),
        );
        v.insert(
            "kickstart_running",
            s.running
                .boot_kickstart
                .as_deref()
                .map(nx_path)
                .unwrap_or_default(),
        );
        let up = (now_unix() - s.booted_at).max(0);
        v.insert("uptime", uptime(up));
        v.insert(
            "uptime_nxos",
            format!(
                "{} day(s), {} hour(s), {} minute(s), {} second(s)",
                up / 86_400,
                up % 86_400 / 3_600,
                up % 3_600 / 60,
                up % 60
            ),
        );
        v.insert("restarted_at", clock_at(s.booted_at, false));
        let (returned, reason) = match &s.last_reload_reason {
            Some(r) => ("Reload Command".to_string(), r.clone()),
            None => ("power-on".to_string(), "power-on".to_string()),
        };
        v.insert("returned_by", returned);
        v.insert("reload_reason", reason);
        v.insert("serial", serial(&self.name));
        v.insert("mac", mac(self.ip));
        v.insert("mac_dotted", mac_dotted(self.ip));
        let reg = if s.running.config_register != s.config_register_now {
            format!(
                "{} (will be {} at next reload)",
                s.config_register_now, s.running.config_register
            )
        } else {
            s.config_register_now.clone()
        };
        v.insert("config_register", reg);
        let boot = self.boot_list(&s);
        v.insert("boot_path_list", boot.join(";"));
        v.insert(
            "boot_variable",
            boot.iter().map(|b| format!("{b},1;")).collect::<String>(),
        );
        v.insert("flash_size", flash.size.to_string());
        v.insert("flash_free", flash.free.to_string());
        v.insert("clock", clock_at(now_unix(), true));
        v.insert("version_plain", install::plain_version(&s.version));
        v.insert("train", install::train(&s.version).to_string());
        v.insert("members_table", super::members::version_table(self, &s));
        v.insert(
            "members_sections",
            super::members::version_sections(self, &s),
        );
        v.insert("members_boot", super::members::boot_sections(self, &s));
        v
    }

    pub(super) fn render(&self, template: &str) -> String {
        let vars = self.template_vars();
        persona::render(template, &vars)
    }
}

/// `c2960x-universalk9-mz.152-7.E8.bin` -> `C2960X-UNIVERSALK9-M`.
pub(super) fn image_upper(image: &str) -> String {
    let stem = image
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    match stem.strip_suffix("-MZ") {
        Some(s) => format!("{s}-M"),
        None => stem,
    }
}

/// IOS uptime: `1 year, 3 weeks, 2 days, 4 hours, 5 minutes`, zero parts left out except the
/// minutes.
pub(super) fn uptime(secs: i64) -> String {
    let mins = secs / 60;
    let in_year = mins % 525_600;
    let parts = [
        (mins / 525_600, "year"),
        (in_year / 10_080, "week"),
        (in_year % 10_080 / 1_440, "day"),
        (in_year % 1_440 / 60, "hour"),
    ];
    let mut out: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    let m = mins % 60;
    out.push(format!("{m} minute{}", if m == 1 { "" } else { "s" }));
    out.join(", ")
}

/// `12:22:21 UTC Mon Sep 10 2018`, or with milliseconds as `show clock` prints it.
fn clock_at(unix: i64, millis: bool) -> String {
    let ts = jiff::Timestamp::from_second(unix).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let t = ts.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    if millis {
        t.strftime("%H:%M:%S.000 UTC %a %b %-d %Y").to_string()
    } else {
        t.strftime("%H:%M:%S UTC %a %b %-d %Y").to_string()
    }
}

/// A stable serial number per device name (`FOC` + 8 characters).
pub(super) fn serial(name: &str) -> String {
    use md5::{Digest as _, Md5};
    let digest = Md5::digest(name.as_bytes());
    let alphabet = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";
    let tail: String = digest
        .iter()
        .take(8)
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect();
    format!("FOC{tail}")
}

fn mac(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("CC:46:D6:{:02X}:{:02X}:{:02X}", o[1], o[2], o[3])
}

/// The base MAC address as IOS prints it in tables (`cc46.d60a.0001`).
fn mac_dotted(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("cc46.d6{:02x}.{:02x}{:02x}", o[1], o[2], o[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_like_ios() {
        assert_eq!(uptime(30), "0 minutes");
        assert_eq!(uptime(61), "1 minute");
        assert_eq!(uptime(3600 + 120), "1 hour, 2 minutes");
        assert_eq!(
            uptime(27 * 604_800 + 4 * 86_400 + 16 * 60),
            "27 weeks, 4 days, 16 minutes"
        );
        assert_eq!(uptime(366 * 86_400), "1 year, 1 day, 0 minutes");
    }

    #[test]
    fn image_names_to_feature_sets() {
        assert_eq!(
            image_upper("c2960x-universalk9-mz.152-7.E8.bin"),
            "C2960X-UNIVERSALK9-M"
        );
    }
}
