//! Device drivers: log in to one device over SSH and run one upgrade step at a time.
//!
//! - [`parse`]: pure parsers of the outputs (tested on real captures);
//! - [`cli`]: the pure prompt/dialog state machine;
//! - [`ssh`]: the only I/O, a russh client feeding the state machine;
//! - this file: [`Driver`] (how each platform spells a step) and [`Session`] (the steps);
//! - [`upgrade`]: the single-device procedure with its safety rules;
//! - [`version`]: Cisco version order (`15.2(7)E8` < `15.2(7)E10`), for the downgrade guard.
//!
//! Drivers know nothing of waves, retries or the database: the caller persists host keys and
//! facts, and decides what to do with a failure.

pub mod cli;
pub mod parse;
pub mod ssh;
pub mod transcript;
pub mod upgrade;
pub mod version;

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::inventory::{Facts, Login, Platform};
use cli::{Dialog, Mode};
use parse::{BootVariable, CopyError, DirListing, Md5Error, ParseError, ShowVersion};
pub use ssh::Connection;
pub use transcript::{EntryKind, Transcript, TranscriptEntry, TranscriptLimits};
pub use upgrade::{
    Check, CopySource, FailureReason, Resumed, Step, StepEvent, StepGate, StepStatus, Stop,
    Transfer, UpgradeFailure, UpgradeOptions, UpgradeOutcome, UpgradePlan, UpgradeResult,
    resume_after_reload, upgrade, upgrade_gated,
};

/// One device as the driver needs it.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub platform: Platform,
    pub login: Login,
    /// A private key file for public-key login, tried before the password.
    pub private_key: Option<PathBuf>,
    /// The pinned host key (`ssh-ed25519 AAAA...`); `None` trusts the key seen on first use.
    pub known_host_key: Option<String>,
    /// Where every session with this device records what was sent and answered; `None`
    /// keeps nothing.
    pub transcript: Option<Transcript>,
}

impl Target {
    /// The driver's view of an inventory device: address, platform, resolved credentials and
    /// the pinned host key.
    pub fn from_device(device: &crate::inventory::Device) -> Result<Target, String> {
        Ok(Target {
            name: device.name().to_string(),
            host: device.spec.host.clone(),
            port: device.spec.port,
            platform: device.spec.platform,
            login: device.login()?,
            private_key: None,
            known_host_key: device.host_key.clone(),
            transcript: None,
        })
    }
}

/// How long each kind of wait may take.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// TCP connect plus SSH key exchange.
    pub connect: Duration,
    pub auth: Duration,
    /// An ordinary command (`show version`, `dir`, `write memory`).
    pub command: Duration,
    /// `copy URL flash:` (a 1 GB image over TFTP takes many minutes).
    pub copy: Duration,
    /// `verify /md5` of a large image.
    pub verify: Duration,
    /// IOS-XE `install add ... activate commit`, NX-OS `install all` up to the reload.
    pub install: Duration,
    /// From the reload to the device answering `show version` again.
    pub reload: Duration,
    /// Pause between reachability probes while the device boots.
    pub poll_interval: Duration,
    /// SSH keepalive interval while a long command prints nothing.
    pub keepalive: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            auth: Duration::from_secs(30),
            command: Duration::from_secs(120),
            copy: Duration::from_secs(3 * 3600),
            verify: Duration::from_secs(900),
            install: Duration::from_secs(3600),
            reload: Duration::from_secs(1800),
            poll_interval: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
        }
    }
}

/// What went wrong talking to a device. Messages name the device and say what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "{device}: cannot connect to {addr}: {reason}; check the address, the port and that SSH is enabled"
    )]
    Connect {
        device: String,
        addr: String,
        reason: String,
    },
    #[error(
        "{device}: no SSH answer from {addr} within {secs} s; check that the device is up and reachable"
    )]
    ConnectTimeout {
        device: String,
        addr: String,
        secs: u64,
    },
    #[error(
        "{device}: the SSH host key changed: the inventory pins `{pinned}`, the device presents `{seen}`; if the device was replaced on purpose, re-trust it with `fleetup device trust {device}`"
    )]
    HostKeyChanged {
        device: String,
        pinned: String,
        seen: String,
    },
    #[error(
        "{device}: login refused for user {user:?} ({detail}); check the credentials in the inventory"
    )]
    AuthFailed {
        device: String,
        user: String,
        detail: String,
    },
    #[error("{device}: login did not complete within {secs} s")]
    AuthTimeout { device: String, secs: u64 },
    #[error("{device}: cannot read private key {path}: {reason}")]
    PrivateKey {
        device: String,
        path: String,
        reason: String,
    },
    #[error(
        "{device}: `enable` did not reach privileged mode ({output}); check the enable secret in the inventory"
    )]
    EnableFailed { device: String, output: String },
    #[error("{device}: `{command}` did not finish in time; last output: {tail:?}")]
    CommandTimeout {
        device: String,
        command: String,
        tail: String,
    },
    #[error("{device}: connection lost{}", match command { Some(c) => format!(" during `{c}`"), None => String::new() })]
    ConnectionLost {
        device: String,
        command: Option<String>,
    },
    #[error("{device}: `{command}` was refused: {message}")]
    Rejected {
        device: String,
        command: String,
        message: String,
    },
    #[error("{device}: cannot read the output of `{command}`: {source}")]
    Parse {
        device: String,
        command: String,
        source: ParseError,
    },
    #[error("{device}: copy failed: {source}")]
    Copy { device: String, source: CopyError },
    #[error("{device}: {source}")]
    Md5 { device: String, source: Md5Error },
    #[error("{device}: the boot variable reads {actual:?} after setting {wanted:?}")]
    BootNotSet {
        device: String,
        wanted: Vec<String>,
        actual: Vec<String>,
    },
    #[error("{device}: saving the configuration failed: {output:?}")]
    SaveFailed { device: String, output: String },
    #[error("{device}: the reload was refused: {output:?}")]
    ReloadRefused { device: String, output: String },
    #[error("{device}: did not come back within {secs} s after the reload ({detail})")]
    NeverCameBack {
        device: String,
        secs: u64,
        detail: String,
    },
    #[error("{device}: ssh error while {what}: {reason}")]
    Ssh {
        device: String,
        what: &'static str,
        reason: String,
    },
    #[error("{device}: {message}")]
    Session { device: String, message: String },
    #[error("{device}: cancelled")]
    Cancelled { device: String },
}

impl DeviceError {
    /// The same error with `secret` replaced by `***` in every text it carries.
    pub fn redact(self, secret: &str) -> DeviceError {
        if secret.is_empty() {
            return self;
        }
        let r = |s: String| transcript::redact(&s, [secret]);
        match self {
            DeviceError::CommandTimeout {
                device,
                command,
                tail,
            } => DeviceError::CommandTimeout {
                device,
                command: r(command),
                tail: r(tail),
            },
            DeviceError::ConnectionLost { device, command } => DeviceError::ConnectionLost {
                device,
                command: command.map(r),
            },
            DeviceError::Rejected {
                device,
                command,
                message,
            } => DeviceError::Rejected {
                device,
                command: r(command),
                message: r(message),
            },
            DeviceError::Copy { device, source } => {
                let source = match source {
                    CopyError::Timeout(m) => CopyError::Timeout(r(m)),
                    CopyError::SourceNotFound(m) => CopyError::SourceNotFound(r(m)),
                    CopyError::FlashFull(m) => CopyError::FlashFull(r(m)),
                    CopyError::Refused(m) => CopyError::Refused(r(m)),
                    CopyError::Unreachable(m) => CopyError::Unreachable(r(m)),
                    CopyError::WriteFailed(m) => CopyError::WriteFailed(r(m)),
                    CopyError::Other(m) => CopyError::Other(r(m)),
                    CopyError::Parse(ParseError::Missing {
                        command,
                        what,
                        first_line,
                    }) => CopyError::Parse(ParseError::Missing {
                        command,
                        what,
                        first_line: r(first_line),
                    }),
                };
                DeviceError::Copy { device, source }
            }
            DeviceError::Session { device, message } => DeviceError::Session {
                device,
                message: r(message),
            },
            other => other,
        }
    }

    pub(crate) fn ssh(device: &str, what: &'static str, e: russh::Error) -> Self {
        DeviceError::Ssh {
            device: device.to_string(),
            what,
            reason: e.to_string(),
        }
    }
}

/// How a platform spells each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Classic IOS and IOS-XE booted from a `.bin` (bundle mode): `boot system flash:X`.
    IosBundle,
    /// IOS-XE booted from `packages.conf`: `install add file flash:X activate commit`.
    IosXeInstall,
    /// NX-OS: `install all nxos bootflash:X`.
    Nxos,
}

impl Driver {
    /// The driver for a platform, refined by what the device runs: an IOS-XE box booted from a
    /// `.bin` is in bundle mode and upgrades like classic IOS.
    pub fn for_device(platform: Platform, running: Option<&ShowVersion>) -> Driver {
        match platform {
            Platform::Ios => Driver::IosBundle,
            Platform::Nxos => Driver::Nxos,
            Platform::Iosxe => {
                let image = running.and_then(|v| v.image.as_deref()).unwrap_or("");
                if image.ends_with(".bin") {
                    Driver::IosBundle
                } else {
                    Driver::IosXeInstall
                }
            }
        }
    }

    /// Where images live.
    pub fn filesystem(self) -> &'static str {
        match self {
            Driver::IosBundle | Driver::IosXeInstall => "flash:",
            Driver::Nxos => "bootflash:",
        }
    }

    pub fn path(self, file: &str) -> String {
        format!("{}{}", self.filesystem(), file)
    }

    pub fn md5_command(self, file: &str) -> String {
        match self {
            Driver::Nxos => format!("show file {} md5sum", self.path(file)),
            _ => format!("verify /md5 {}", self.path(file)),
        }
    }

    pub fn copy_command(self, url: &str, file: &str) -> String {
        format!("copy {url} {}", self.path(file))
    }

    pub fn delete_command(self, file: &str) -> String {
        match self {
            Driver::Nxos => format!("delete {} no-prompt", self.path(file)),
            _ => format!("delete /force {}", self.path(file)),
        }
    }

    /// Configuration lines that make `entries` the boot variable, in order. `one_line` is the
    /// Catalyst form (`boot system a;b`), where each `boot system` replaces the list.
    pub fn boot_lines(self, entries: &[String], one_line: bool) -> Vec<String> {
        match self {
            Driver::Nxos => entries.iter().map(|e| format!("boot nxos {e}")).collect(),
            _ if one_line && !entries.is_empty() => {
                vec![
                    "no boot system".to_string(),
                    format!("boot system {}", entries.join(";")),
                ]
            }
            _ => std::iter::once("no boot system".to_string())
                .chain(entries.iter().map(|e| format!("boot system {e}")))
                .collect(),
        }
    }

    pub fn save_command(self) -> &'static str {
        match self {
            Driver::Nxos => "copy running-config startup-config",
            _ => "write memory",
        }
    }

    /// The command that installs and activates the image and reloads (install-mode drivers).
    pub fn install_command(self, file: &str) -> Option<String> {
        match self {
            Driver::IosBundle => None,
            Driver::IosXeInstall => Some(format!(
                "install add file {} activate commit",
                self.path(file)
            )),
            Driver::Nxos => Some(format!("install all nxos {}", self.path(file))),
        }
    }
}

/// `flash:/x.bin`, `flash:x.bin` and `x.bin` name the same file.
pub fn file_name(path: &str) -> &str {
    let after_fs = path.rsplit_once(':').map(|(_, p)| p).unwrap_or(path);
    after_fs.rsplit('/').next().unwrap_or(after_fs)
}

fn same_file(a: &str, b: &str) -> bool {
    file_name(a) == file_name(b)
}

/// What `show version` and `show boot` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    pub version: ShowVersion,
    pub boot: BootVariable,
}

impl DeviceFacts {
    pub fn to_facts(&self) -> Facts {
        self.version.clone().into_facts()
    }
}

/// Whether an image is already on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilePresence {
    Absent,
    /// Present and its MD5 is the expected one.
    Verified {
        size: u64,
    },
    /// Present with another MD5 (a broken earlier copy).
    Corrupt {
        computed: String,
    },
}

/// A logged-in, privileged CLI session on one device, with the steps of an upgrade.
#[derive(Debug)]
pub struct Session {
    conn: Connection,
    pub driver: Driver,
    platform: Platform,
    timeouts: Timeouts,
    /// Whether `show boot` looked like a Catalyst switch's (see [`BootVariable::one_line_list`]).
    one_line_boot: bool,
}

impl Session {
    /// Log in, enter privileged mode, and prepare the terminal (`terminal length 0`,
    /// `terminal width 511`).
    pub async fn open(target: &Target, timeouts: &Timeouts) -> Result<Session, DeviceError> {
        let mut conn = Connection::open(target, timeouts).await?;
        if conn.mode() == Some(Mode::Exec) {
            let secret = target.login.enable_secret.clone();
            let (output, prompt) = conn
                .run("enable", Dialog::enable(secret), timeouts.command)
                .await?;
            if prompt.mode != Mode::Privileged {
                return Err(DeviceError::EnableFailed {
                    device: target.name.clone(),
                    output: output.trim().to_string(),
                });
            }
        }
        let mut session = Session {
            conn,
            driver: Driver::for_device(target.platform, None),
            platform: target.platform,
            timeouts: timeouts.clone(),
            one_line_boot: false,
        };
        session.run("terminal length 0").await?;
        // Some platforms refuse 511; a narrower terminal only wraps long lines.
        let _ = session.run("terminal width 511").await;
        Ok(session)
    }

    pub fn host_key(&self) -> &str {
        self.conn.host_key()
    }

    pub fn device(&self) -> &str {
        self.conn.device()
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Run a command with the ordinary timeout; a CLI error (`% Invalid input`) is an error.
    pub async fn run(&mut self, command: &str) -> Result<String, DeviceError> {
        let timeout = self.timeouts.command;
        self.run_with(command, Dialog::confirm(), timeout).await
    }

    pub async fn run_with(
        &mut self,
        command: &str,
        dialog: Dialog,
        timeout: Duration,
    ) -> Result<String, DeviceError> {
        let (output, _) = self.conn.run(command, dialog, timeout).await?;
        if let Some(message) = parse::cli_error(&output) {
            return Err(DeviceError::Rejected {
                device: self.device().to_string(),
                command: command.to_string(),
                message: message.to_string(),
            });
        }
        Ok(output)
    }

    fn parse_error(&self, command: &str, source: ParseError) -> DeviceError {
        DeviceError::Parse {
            device: self.device().to_string(),
            command: command.to_string(),
            source,
        }
    }

    /// `show version` and `show boot`; also picks the driver (bundle or install mode).
    pub async fn facts(&mut self) -> Result<DeviceFacts, DeviceError> {
        let out = self.run("show version").await?;
        let version = parse::show_version(&out).map_err(|e| self.parse_error("show version", e))?;
        let out = self.run("show boot").await?;
        let boot = parse::show_boot(&out).map_err(|e| self.parse_error("show boot", e))?;
        self.driver = Driver::for_device(self.platform, Some(&version));
        self.one_line_boot = boot.one_line_list;
        Ok(DeviceFacts { version, boot })
    }

    /// `dir flash:`: files, bytes total and free.
    pub async fn free_space(&mut self) -> Result<DirListing, DeviceError> {
        let command = format!("dir {}", self.driver.filesystem());
        let out = self.run(&command).await?;
        parse::dir(&out).map_err(|e| match e {
            parse::DirError::Parse(p) => self.parse_error(&command, p),
            other => DeviceError::Rejected {
                device: self.device().to_string(),
                command: command.clone(),
                message: other.to_string(),
            },
        })
    }

    /// Whether `file` is on the device with the expected MD5.
    pub async fn file_present(
        &mut self,
        file: &str,
        md5: &str,
    ) -> Result<FilePresence, DeviceError> {
        let listing = self.free_space().await?;
        let Some(entry) = listing.file(file) else {
            return Ok(FilePresence::Absent);
        };
        let size = entry.size;
        match self.verify_md5(file, md5).await {
            Ok(()) => Ok(FilePresence::Verified { size }),
            Err(DeviceError::Md5 {
                source: Md5Error::Mismatch { computed, .. },
                ..
            }) => Ok(FilePresence::Corrupt { computed }),
            Err(DeviceError::Md5 {
                source: Md5Error::NotFound(_),
                ..
            }) => Ok(FilePresence::Absent),
            Err(e) => Err(e),
        }
    }

    /// `copy URL flash:FILE`, answering the destination and overwrite questions.
    pub async fn copy(
        &mut self,
        source: &CopySource,
        file: &str,
    ) -> Result<parse::CopyReport, DeviceError> {
        let command = self.driver.copy_command(&source.url(file), file);
        let timeout = self.timeouts.copy;
        let secret = match &source.transfer {
            Transfer::Ftp { password, .. } => Some(password.0.clone()),
            Transfer::Tftp => None,
        };
        if let Some(secret) = &secret {
            self.conn.keep_secret(secret);
        }
        let result = match self.conn.run(&command, Dialog::copy(), timeout).await {
            Ok((output, _)) => parse::copy_result(&output).map_err(|source| DeviceError::Copy {
                device: self.device().to_string(),
                source,
            }),
            Err(e) => Err(e),
        };
        // The FTP password is in the command, its echo and maybe the device's messages; errors
        // end up in the database and the API.
        result.map_err(|e| match &secret {
            Some(secret) => e.redact(secret),
            None => e,
        })
    }

    /// `verify /md5 flash:FILE` (NX-OS: `show file ... md5sum`) compared with `md5`.
    pub async fn verify_md5(&mut self, file: &str, md5: &str) -> Result<(), DeviceError> {
        let command = self.driver.md5_command(file);
        let timeout = self.timeouts.verify;
        let (output, _) = self.conn.run(&command, Dialog::none(), timeout).await?;
        let result = match self.driver {
            Driver::Nxos => nxos_md5(&output, file, md5),
            _ => parse::verify_md5(&output, md5).map(|_| ()),
        };
        result.map_err(|source| DeviceError::Md5 {
            device: self.device().to_string(),
            source,
        })
    }

    /// Set the boot variable to `entries` (in order) and read it back. When the read-back
    /// shows the other `boot system` semantics (one line replacing the list, or one line per
    /// entry), the other form is tried once.
    pub async fn set_boot(&mut self, entries: &[String]) -> Result<(), DeviceError> {
        let mut actual = Vec::new();
        for one_line in [self.one_line_boot, !self.one_line_boot] {
            self.configure(&self.driver.boot_lines(entries, one_line))
                .await?;
            let out = self.run("show boot").await?;
            let boot = parse::show_boot(&out).map_err(|e| self.parse_error("show boot", e))?;
            actual = boot.entries;
            let matches = actual.len() == entries.len()
                && actual.iter().zip(entries).all(|(a, w)| same_file(a, w));
            if matches {
                self.one_line_boot = one_line;
                return Ok(());
            }
            if entries.len() < 2 || self.driver == Driver::Nxos {
                break;
            }
        }
        Err(DeviceError::BootNotSet {
            device: self.device().to_string(),
            wanted: entries.to_vec(),
            actual,
        })
    }

    /// Enter config mode, apply `lines`, leave config mode; any refused line is an error
    /// (config mode is left first).
    pub async fn configure(&mut self, lines: &[String]) -> Result<(), DeviceError> {
        self.run("configure terminal").await?;
        let mut failure = None;
        for line in lines {
            if let Err(e) = self.run(line).await {
                failure = Some(e);
                break;
            }
        }
        self.run("end").await?;
        failure.map_or(Ok(()), Err)
    }

    /// The `ip tftp blocksize` of the running configuration (IOS, IOS-XE), if set.
    pub async fn tftp_blocksize(&mut self) -> Result<Option<u16>, DeviceError> {
        let out = self
            .run("show running-config | include ip tftp blocksize")
            .await?;
        Ok(parse::tftp_blocksize(&out))
    }

    /// `write memory` (NX-OS: `copy running-config startup-config`).
    pub async fn save(&mut self) -> Result<(), DeviceError> {
        let command = self.driver.save_command();
        let output = self.run(command).await?;
        let ok = output.contains("[OK]") || output.contains("Copy complete");
        if !ok {
            return Err(DeviceError::SaveFailed {
                device: self.device().to_string(),
                output,
            });
        }
        Ok(())
    }

    /// Delete a file without questions.
    pub async fn delete(&mut self, file: &str) -> Result<(), DeviceError> {
        let command = self.driver.delete_command(file);
        let output = self.run(&command).await?;
        if let Some(line) = output
            .lines()
            .find(|l| l.trim_start().starts_with("%Error"))
        {
            return Err(DeviceError::Rejected {
                device: self.device().to_string(),
                command,
                message: line.trim().to_string(),
            });
        }
        Ok(())
    }

    /// `reload`, answering the save and confirm questions. The session ends with it.
    pub async fn reload(mut self) -> Result<(), DeviceError> {
        let timeout = self.timeouts.command;
        match self.conn.run("reload", Dialog::reload(), timeout).await {
            Err(DeviceError::ConnectionLost { .. }) => Ok(()),
            // Some boxes keep the session open for a while after confirming; the reload was
            // sent, and wait_back tells whether the box really went down.
            Err(DeviceError::CommandTimeout { tail, .. }) if tail.contains("[confirm]") => Ok(()),
            Err(e) => Err(e),
            Ok((output, _)) => {
                let device = self.device_name_owned();
                self.conn.close().await;
                Err(DeviceError::ReloadRefused { device, output })
            }
        }
    }

    fn device_name_owned(&self) -> String {
        self.conn.device().to_string()
    }

    /// Install-mode upgrade (IOS-XE `install add ... activate commit`, NX-OS `install all`):
    /// answers the proceed questions; the device reloads by itself, so the session ends with it.
    pub async fn install(mut self, file: &str) -> Result<(), DeviceError> {
        let Some(command) = self.driver.install_command(file) else {
            return Err(DeviceError::Session {
                device: self.device_name_owned(),
                message: "bundle-mode devices upgrade with set_boot and reload".into(),
            });
        };
        let timeout = self.timeouts.install;
        match self.conn.run(&command, Dialog::install(), timeout).await {
            Err(DeviceError::ConnectionLost { .. }) => Ok(()),
            Err(e) => Err(e),
            Ok((output, _)) => {
                let device = self.device_name_owned();
                self.conn.close().await;
                let failed = match self.driver {
                    Driver::Nxos => match parse::install_all_status(&output) {
                        Ok(s) if s.failed_step().is_none() && s.finished => None,
                        Ok(s) => Some(
                            s.failed_step()
                                .map(|f| f.description.clone())
                                .unwrap_or_else(|| "the installer stopped before reloading".into()),
                        ),
                        Err(e) => Some(e.to_string()),
                    },
                    _ => match parse::install_result(&output) {
                        Ok(_) => Some("the install finished without reloading the device".into()),
                        Err(e) => Some(e.to_string()),
                    },
                };
                Err(DeviceError::Rejected {
                    device,
                    command,
                    message: failed.unwrap_or_else(|| output.clone()),
                })
            }
        }
    }

    /// IOS-XE `install remove inactive`: frees flash of the packages no longer booted.
    pub async fn remove_inactive(&mut self) -> Result<(), DeviceError> {
        let timeout = self.timeouts.install;
        let output = self
            .run_with("install remove inactive", Dialog::install(), timeout)
            .await?;
        parse::install_result(&output)
            .map(|_| ())
            .map_err(|e| DeviceError::Rejected {
                device: self.device().to_string(),
                command: "install remove inactive".into(),
                message: e.to_string(),
            })
    }

    pub async fn close(self) {
        self.conn.close().await;
    }
}

fn nxos_md5(output: &str, file: &str, expected: &str) -> Result<(), Md5Error> {
    let computed = output
        .split_whitespace()
        .find(|w| w.len() == 32 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase);
    match computed {
        Some(c) if c == expected.trim().to_ascii_lowercase() => Ok(()),
        Some(c) => Err(Md5Error::Mismatch {
            file: file.to_string(),
            computed: c,
            expected: expected.to_string(),
        }),
        None if output.contains("No such file") => Err(Md5Error::NotFound(file.to_string())),
        None => Err(Md5Error::Device(output.trim().to_string())),
    }
}

/// Log in and read the facts. The host key is returned when the target had none pinned, so
/// the caller can store it (trust on first use).
pub async fn facts(
    target: &Target,
    timeouts: &Timeouts,
) -> Result<(Facts, Option<String>), DeviceError> {
    let (facts, key) = read_facts(target, timeouts).await?;
    let new_key = target.known_host_key.is_none().then_some(key);
    Ok((facts.to_facts(), new_key))
}

/// Log in, read the facts and log out (also when reading failed); with the host key seen.
pub async fn read_facts(
    target: &Target,
    timeouts: &Timeouts,
) -> Result<(DeviceFacts, String), DeviceError> {
    let mut session = Session::open(target, timeouts).await?;
    let facts = session.facts().await;
    let key = session.host_key().to_string();
    session.close().await;
    Ok((facts?, key))
}

/// What tells that a device has restarted since its reload.
#[derive(Debug, Clone)]
pub enum RestartEvidence {
    /// `show version` just before the reload: a different `System restarted at` time, another
    /// running version or image, or a smaller uptime proves the restart.
    Since(Box<ShowVersion>),
    /// Only a bound: the device has restarted when its uptime is below this many seconds.
    /// Uptime counts whole minutes, so it alone cannot tell for a box up less than a minute.
    /// `None`: any answering device counts as restarted.
    UptimeBelow(Option<u64>),
}

impl RestartEvidence {
    /// Since the reload of a device that printed `before` just ahead of it.
    pub fn since(before: &ShowVersion) -> RestartEvidence {
        RestartEvidence::Since(Box::new(before.clone()))
    }

    /// Whether a device that now prints `now` has restarted. Without a restart time, a
    /// version or an uptime to compare, any answering device counts as restarted.
    pub fn restarted(&self, now: &ShowVersion) -> bool {
        let uptime_below = |bound: Option<u64>| match (bound, now.uptime_seconds()) {
            (Some(bound), Some(up)) => up < bound,
            _ => true,
        };
        match self {
            RestartEvidence::Since(before) => {
                if let (Some(b), Some(n)) = (&before.restarted_at, &now.restarted_at) {
                    return b != n;
                }
                before.version != now.version
                    || before.image != now.image
                    || uptime_below(before.uptime_seconds())
            }
            RestartEvidence::UptimeBelow(bound) => uptime_below(*bound),
        }
    }
}

/// After a reload: wait for the session to be gone, the device to be unreachable, then
/// reachable again, and read its facts. `evidence` guards against talking to the
/// not-yet-reloaded box: a device that shows no sign of a restart has not reloaded yet.
pub async fn wait_back(
    target: &Target,
    timeouts: &Timeouts,
    evidence: &RestartEvidence,
    cancel: &CancellationToken,
) -> Result<(Session, DeviceFacts), DeviceError> {
    let started = tokio::time::Instant::now();
    let deadline = started + timeouts.reload;
    let addr = format!("{}:{}", target.host, target.port);
    let mut saw_down = false;
    let mut last_problem = "no answer yet".to_string();
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(DeviceError::NeverCameBack {
                device: target.name.clone(),
                secs: timeouts.reload.as_secs(),
                detail: format!(
                    "{}; last problem: {last_problem}",
                    if saw_down {
                        "it went down"
                    } else {
                        "it was never seen down"
                    }
                ),
            });
        }
        let probe = tokio::time::timeout(timeouts.connect, tokio::net::TcpStream::connect(&addr));
        let reachable = tokio::select! {
            r = probe => matches!(r, Ok(Ok(_))),
            _ = cancel.cancelled() => return Err(DeviceError::Cancelled { device: target.name.clone() }),
        };
        if !reachable {
            saw_down = true;
            last_problem = format!("{addr} does not accept connections");
        } else {
            match login_and_facts(target, timeouts).await {
                Ok((session, facts)) => {
                    if saw_down || evidence.restarted(&facts.version) {
                        return Ok((session, facts));
                    }
                    session.close().await;
                    last_problem = "the device still runs since before the reload".into();
                }
                Err(e @ (DeviceError::HostKeyChanged { .. } | DeviceError::AuthFailed { .. })) => {
                    return Err(e);
                }
                Err(e) => {
                    // A box that accepts TCP but cannot give a shell is going down or booting.
                    saw_down = true;
                    last_problem = e.to_string();
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(timeouts.poll_interval) => {}
            _ = cancel.cancelled() => return Err(DeviceError::Cancelled { device: target.name.clone() }),
        }
    }
}

async fn login_and_facts(
    target: &Target,
    timeouts: &Timeouts,
) -> Result<(Session, DeviceFacts), DeviceError> {
    let mut session = Session::open(target, timeouts).await?;
    let facts = session.facts().await?;
    Ok((session, facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_the_ftp_password_everywhere() {
        let e = DeviceError::CommandTimeout {
            device: "sw1".into(),
            command: "copy ftp://u:s3cret@10.0.0.5/a.bin flash:a.bin".into(),
            tail: "copy ftp://u:s3cret@10.0.0.5/a.bin flash:a.bin\nLoading !!!".into(),
        }
        .redact("s3cret");
        let text = e.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("ftp://u:***@10.0.0.5/a.bin"), "{text}");
        let e = DeviceError::Copy {
            device: "sw1".into(),
            source: CopyError::Refused(
                "%Error opening ftp://u:s3cret@h/a (Permission denied)".into(),
            ),
        }
        .redact("s3cret");
        assert!(!e.to_string().contains("s3cret"));
    }

    #[test]
    fn file_names_compare_across_spellings() {
        assert_eq!(file_name("flash:/c2960x.bin"), "c2960x.bin");
        assert_eq!(file_name("flash:c2960x.bin"), "c2960x.bin");
        assert_eq!(file_name("bootflash:///nxos.9.3.6.bin"), "nxos.9.3.6.bin");
        assert_eq!(file_name("x.bin"), "x.bin");
        assert!(same_file("flash:/a.bin", "flash:a.bin"));
        assert!(!same_file("flash:a.bin", "flash:b.bin"));
    }

    #[test]
    fn commands_per_platform() {
        let ios = Driver::IosBundle;
        assert_eq!(
            ios.copy_command("tftp://10.0.0.5/a.bin", "a.bin"),
            "copy tftp://10.0.0.5/a.bin flash:a.bin"
        );
        assert_eq!(ios.md5_command("a.bin"), "verify /md5 flash:a.bin");
        assert_eq!(ios.delete_command("old.bin"), "delete /force flash:old.bin");
        let two = ["flash:new.bin".to_string(), "flash:old.bin".to_string()];
        assert_eq!(
            ios.boot_lines(&two, false),
            [
                "no boot system",
                "boot system flash:new.bin",
                "boot system flash:old.bin"
            ]
        );
        assert_eq!(
            ios.boot_lines(&two, true),
            ["no boot system", "boot system flash:new.bin;flash:old.bin"]
        );
        assert_eq!(ios.install_command("a.bin"), None);
        assert_eq!(
            Driver::IosXeInstall.install_command("cat9k.bin").as_deref(),
            Some("install add file flash:cat9k.bin activate commit")
        );
        assert_eq!(
            Driver::Nxos.install_command("nxos.bin").as_deref(),
            Some("install all nxos bootflash:nxos.bin")
        );
        assert_eq!(
            Driver::Nxos.md5_command("nxos.bin"),
            "show file bootflash:nxos.bin md5sum"
        );
    }

    #[test]
    fn restart_evidence() {
        let v = |version: &str, uptime: &str, restarted: Option<&str>| ShowVersion {
            version: version.into(),
            image: Some("flash:x.bin".into()),
            uptime: Some(uptime.into()),
            restarted_at: restarted.map(Into::into),
            ..Default::default()
        };
        // Up less than a minute before the reload: the uptime cannot tell, the restart time can.
        let before = v(
            "15.2(7)E3",
            "0 minutes",
            Some("15:47:00 UTC Tue Nov 24 2026"),
        );
        let e = RestartEvidence::since(&before);
        assert!(!e.restarted(&before));
        assert!(e.restarted(&v(
            "15.2(7)E3",
            "0 minutes",
            Some("15:48:27 UTC Tue Nov 24 2026")
        )));
        // No restart time printed (Catalyst 9000): another version proves it...
        let before = v("17.06.05", "0 minutes", None);
        let e = RestartEvidence::since(&before);
        assert!(!e.restarted(&before));
        assert!(e.restarted(&v("17.09.04a", "0 minutes", None)));
        // ...and so does a smaller uptime.
        let before = v("17.06.05", "3 weeks, 2 days, 5 minutes", None);
        let e = RestartEvidence::since(&before);
        assert!(!e.restarted(&v("17.06.05", "3 weeks, 2 days, 6 minutes", None)));
        assert!(e.restarted(&v("17.06.05", "1 minute", None)));
        // A resumed wait knows only a bound.
        let e = RestartEvidence::UptimeBelow(Some(600));
        assert!(e.restarted(&v("x", "9 minutes", None)));
        assert!(!e.restarted(&v("x", "3 days, 1 minute", None)));
        assert!(RestartEvidence::UptimeBelow(None).restarted(&v("x", "3 days", None)));
    }

    #[test]
    fn iosxe_mode_follows_the_running_image() {
        let mut v = ShowVersion {
            image: Some("bootflash:packages.conf".into()),
            ..Default::default()
        };
        assert_eq!(
            Driver::for_device(Platform::Iosxe, Some(&v)),
            Driver::IosXeInstall
        );
        v.image = Some("flash:cat9k_iosxe.17.09.04a.SPA.bin".into());
        assert_eq!(
            Driver::for_device(Platform::Iosxe, Some(&v)),
            Driver::IosBundle
        );
        assert_eq!(Driver::for_device(Platform::Ios, None), Driver::IosBundle);
    }

    #[test]
    fn nxos_md5sum_output() {
        assert!(
            nxos_md5(
                "b5dc9ca2b4a4d06e4a6b6e8b0c6a8a91\n",
                "n.bin",
                "B5DC9CA2B4A4D06E4A6B6E8B0C6A8A91"
            )
            .is_ok()
        );
        assert!(matches!(
            nxos_md5("b5dc9ca2b4a4d06e4a6b6e8b0c6a8a91", "n.bin", "00"),
            Err(Md5Error::Mismatch { .. })
        ));
        assert!(matches!(
            nxos_md5("No such file or directory", "n.bin", "00"),
            Err(Md5Error::NotFound(_))
        ));
    }
}
