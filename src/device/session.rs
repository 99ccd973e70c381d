//! A logged-in CLI session on one device and the steps of an upgrade it can run; the only
//! part of the drivers above [`super::ssh`] that sends commands.

use std::time::Duration;

use super::cli::{Dialog, Mode};
use super::copy::CopySource;
use super::driver::same_file;
use super::issu::{self, IssuActivation, IssuCheck};
use super::parse::{self, BootVariable, DirListing, Md5Error, ParseError, ShowVersion};
use super::ssh::Connection;
use super::{DeviceError, Driver, Target, Timeouts};
use crate::inventory::{Facts, Platform};

/// What `show version` and `show boot` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    pub version: ShowVersion,
    pub(crate) boot: BootVariable,
    /// The member table at the end of `show version` (Catalyst switches; one row on a lone
    /// switch, none on routers and NX-OS).
    pub(crate) members: Vec<super::members::MemberVersion>,
    /// A stack's `show switch` (read when the member table has two rows or more).
    pub(crate) stack: Vec<super::members::StackMember>,
    /// Each other stack member's serial number, from its `Switch 0N` section of `show version`.
    pub(crate) serials: Vec<(u32, String)>,
}

impl DeviceFacts {
    pub(crate) fn to_facts(&self) -> Facts {
        let mut facts = self.version.clone().into_facts();
        if self.members.len() > 1 {
            facts.members = self
                .members
                .iter()
                .map(|m| {
                    let row = self.stack.iter().find(|s| s.number == m.number);
                    crate::inventory::Member {
                        number: m.number,
                        role: row.map(|r| r.role.clone()),
                        state: row.map(|r| r.state.clone()),
                        model: Some(m.model.clone()),
                        serial: if m.this_member {
                            self.version.serial.clone()
                        } else {
                            self.serials
                                .iter()
                                .find(|(n, _)| *n == m.number)
                                .map(|(_, s)| s.clone())
                        },
                        version: Some(m.version.clone()),
                    }
                })
                .collect();
            // Members `show switch` lists that print no row in `show version` (removed,
            // provisioned, still booting).
            for row in &self.stack {
                if !facts.members.iter().any(|m| m.number == row.number) {
                    facts.members.push(crate::inventory::Member {
                        number: row.number,
                        role: Some(row.role.clone()),
                        state: Some(row.state.clone()),
                        ..Default::default()
                    });
                }
            }
        }
        facts
    }
}

/// Whether an image is already on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FilePresence {
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
    /// For the extra sessions of a step (an SCP push).
    target: Target,
    timeouts: Timeouts,
    /// Whether `show boot` looked like a Catalyst switch's (see [`BootVariable::one_line_list`]).
    one_line_boot: bool,
    /// A classic IOS stack (bundle mode, two or more members in `show version`): every member
    /// boots from its own flash, so `boot system` names `switch all` and each member's boot
    /// variable is read back.
    stack: bool,
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
            target: target.clone(),
            timeouts: timeouts.clone(),
            one_line_boot: false,
            stack: false,
        };
        session.run("terminal length 0").await?;
        // Some platforms refuse 511; a narrower terminal only wraps long lines.
        let _ = session.run("terminal width 511").await;
        Ok(session)
    }

    pub(crate) fn host_key(&self) -> &str {
        self.conn.host_key()
    }

    pub(crate) fn device(&self) -> &str {
        self.conn.device()
    }

    /// Run a command with the ordinary timeout; a CLI error (`% Invalid input`) is an error.
    pub(crate) async fn run(&mut self, command: &str) -> Result<String, DeviceError> {
        let timeout = self.timeouts.command;
        self.run_with(command, Dialog::confirm(), timeout).await
    }

    pub(crate) async fn run_with(
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
        let out_version = self.run("show version").await?;
        let version =
            parse::show_version(&out_version).map_err(|e| self.parse_error("show version", e))?;
        let out = self.run("show boot").await?;
        let boot = parse::show_boot(&out).map_err(|e| self.parse_error("show boot", e))?;
        self.driver = Driver::for_device(self.platform, Some(&version));
        self.one_line_boot = boot.one_line_list;
        let members = super::members::show_version_members(&out_version);
        self.stack = self.driver == Driver::IosBundle && members.len() > 1;
        let stack = if members.len() > 1 {
            match self.run("show switch").await {
                Ok(out) => super::members::show_switch(&out).unwrap_or_default(),
                Err(_) => Vec::new(),
            }
        } else {
            Vec::new()
        };
        Ok(DeviceFacts {
            version,
            boot,
            serials: super::members::show_version_serials(&out_version),
            members,
            stack,
        })
    }

    /// `dir flash:`: files, bytes total and free.
    pub(crate) async fn free_space(&mut self) -> Result<DirListing, DeviceError> {
        let fs = self.driver.filesystem();
        self.dir(fs).await
    }

    /// `dir FS` of any file system (`flash2:`, `flash-3:`): files, bytes total and free.
    pub(crate) async fn dir(&mut self, fs: &str) -> Result<DirListing, DeviceError> {
        let command = format!("dir {fs}");
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
    pub(crate) async fn file_present(
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

    /// `copy URL flash:FILE`, answering the destination and overwrite questions, and on
    /// NX-OS the password and VRF questions.
    pub(crate) async fn copy(
        &mut self,
        source: &CopySource,
        file: &str,
    ) -> Result<parse::CopyReport, DeviceError> {
        let Some(command) = source.command(self.driver, self.platform, file) else {
            return Err(DeviceError::Session {
                device: self.device().to_string(),
                message: "a push sends no copy command".into(),
            });
        };
        let timeout = self.timeouts.copy;
        let secret = source.transfer.password().cloned();
        if let Some(secret) = &secret {
            self.conn.keep_secret(&secret.0);
        }
        let vrf = source.copy_vrf(self.platform).map(str::to_string);
        let dialog = Dialog::copy_from(secret.clone(), vrf);
        let result = match self.conn.run(&command, dialog, timeout).await {
            Ok((output, _)) => parse::copy_result(&output).map_err(|source| DeviceError::Copy {
                device: self.device().to_string(),
                source,
            }),
            Err(e) => Err(e),
        };
        // The password is in the command, its echo and maybe the device's messages; errors
        // end up in the database and the API.
        result.map_err(|e| match &secret {
            Some(secret) => e.redact(&secret.0),
            None => e,
        })
    }

    /// Push `local` into the device's flash as `file` over SCP, on a session of its own
    /// (the device's `ip scp server enable` must be on).
    pub(crate) async fn push(
        &mut self,
        local: &std::path::Path,
        file: &str,
        size: u64,
        progress: Option<&super::PushProgress>,
    ) -> Result<parse::CopyReport, DeviceError> {
        let remote = self.driver.path(file);
        let tell = |n: u64| {
            if let Some(p) = progress {
                (p.0)(file, n, size);
            }
        };
        let bytes =
            super::scp_push::push(&self.target, local, &remote, size, tell, &self.timeouts).await?;
        Ok(parse::CopyReport { bytes: Some(bytes) })
    }

    /// The platform the session was opened for.
    pub(crate) fn platform(&self) -> Platform {
        self.platform
    }

    /// The global configuration line that starts with `head` (`ip tftp source-interface`),
    /// if the running configuration has one.
    pub(crate) async fn global_line(&mut self, head: &str) -> Result<Option<String>, DeviceError> {
        let out = self
            .run(&format!("show running-config | include ^{head}"))
            .await?;
        Ok(parse::global_line(&out, head))
    }

    /// `show running-config` or `show startup-config`, as the device prints it. The output
    /// holds secrets: the transcript keeps only its size, and an error never carries its text.
    pub(crate) async fn show_config(
        &mut self,
        kind: crate::configs::ConfigKind,
    ) -> Result<String, DeviceError> {
        let command = match kind {
            crate::configs::ConfigKind::Running => "show running-config",
            crate::configs::ConfigKind::Startup => "show startup-config",
        };
        // A large configuration takes a while to print on a busy device.
        let timeout = self.timeouts.command * 4;
        let device = self.device().to_string();
        let output = match self
            .conn
            .run_private(command, Dialog::none(), timeout)
            .await
        {
            Ok((output, _)) => output,
            Err(DeviceError::CommandTimeout {
                device, command, ..
            }) => {
                return Err(DeviceError::CommandTimeout {
                    device,
                    command,
                    tail: "(not shown: configuration text)".into(),
                });
            }
            Err(e) => return Err(e),
        };
        // A refusal is a short `% ...` answer; a configuration (even one whose banner holds a
        // `% ` line) is not shown in an error.
        if output.len() < 400
            && let Some(message) = parse::cli_error(&output)
        {
            return Err(DeviceError::Rejected {
                device,
                command: command.to_string(),
                message: message.to_string(),
            });
        }
        Ok(output)
    }

    /// `verify /md5 flash:FILE` (NX-OS: `show file ... md5sum`) compared with `md5`.
    pub(crate) async fn verify_md5(&mut self, file: &str, md5: &str) -> Result<(), DeviceError> {
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

    /// `verify /md5 PATH` of a file on any file system (a stack member's `flash2:X`).
    pub(crate) async fn verify_md5_at(&mut self, path: &str, md5: &str) -> Result<(), DeviceError> {
        let command = format!("verify /md5 {path}");
        let timeout = self.timeouts.verify;
        let (output, _) = self.conn.run(&command, Dialog::none(), timeout).await?;
        parse::verify_md5(&output, md5)
            .map(|_| ())
            .map_err(|source| DeviceError::Md5 {
                device: self.device().to_string(),
                source,
            })
    }

    /// `copy FROM TO` between the device's own file systems (the active stack member's flash
    /// to another member's), answering the destination and overwrite questions.
    pub(crate) async fn copy_local(
        &mut self,
        from: &str,
        to: &str,
    ) -> Result<parse::CopyReport, DeviceError> {
        let command = format!("copy {from} {to}");
        let timeout = self.timeouts.copy;
        let (output, _) = self.conn.run(&command, Dialog::copy(), timeout).await?;
        parse::copy_result(&output).map_err(|source| DeviceError::Copy {
            device: self.device().to_string(),
            source,
        })
    }

    /// `delete /force PATH` of a file on any file system.
    pub(crate) async fn delete_at(&mut self, path: &str) -> Result<(), DeviceError> {
        self.run_delete(format!("delete /force {path}")).await
    }

    /// Set the boot variable to `entries` (in order) and read it back. When the read-back
    /// shows the other `boot system` semantics (one line replacing the list, or one line per
    /// entry), the other form is tried once.
    pub(crate) async fn set_boot(&mut self, entries: &[String]) -> Result<(), DeviceError> {
        let mut actual = Vec::new();
        let same = |actual: &[String]| {
            actual.len() == entries.len()
                && actual.iter().zip(entries).all(|(a, w)| same_file(a, w))
        };
        for one_line in [self.one_line_boot, !self.one_line_boot] {
            let lines = if self.stack {
                self.driver.boot_lines_all_members(entries, one_line)
            } else {
                self.driver.boot_lines(entries, one_line)
            };
            self.configure(&lines).await?;
            let out = self.run("show boot").await?;
            let boot = parse::show_boot(&out).map_err(|e| self.parse_error("show boot", e))?;
            actual = boot.entries;
            if same(&actual) {
                self.one_line_boot = one_line;
                if self.stack {
                    // Each member boots from its own flash with its own BOOT variable.
                    let odd: Vec<String> = super::members::show_boot_members(&out)
                        .into_iter()
                        .filter(|(_, e)| !same(e))
                        .map(|(n, e)| format!("member {n}: {e:?}"))
                        .collect();
                    if !odd.is_empty() {
                        return Err(DeviceError::Session {
                            device: self.device().to_string(),
                            message: format!(
                                "boot system switch all did not reach every stack member: {} (wanted {entries:?})",
                                odd.join(", ")
                            ),
                        });
                    }
                }
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
    pub(crate) async fn configure(&mut self, lines: &[String]) -> Result<(), DeviceError> {
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
    pub(crate) async fn tftp_blocksize(&mut self) -> Result<Option<u16>, DeviceError> {
        let out = self
            .run("show running-config | include ip tftp blocksize")
            .await?;
        Ok(parse::tftp_blocksize(&out))
    }

    /// `write memory` (NX-OS: `copy running-config startup-config`).
    pub(crate) async fn save(&mut self) -> Result<(), DeviceError> {
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
    pub(crate) async fn delete(&mut self, file: &str) -> Result<(), DeviceError> {
        self.run_delete(self.driver.delete_command(file)).await
    }

    /// A delete command: any `%Error` line is the device refusing it.
    async fn run_delete(&mut self, command: String) -> Result<(), DeviceError> {
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

    /// Install-mode upgrade (IOS-XE `install add ... activate commit`, NX-OS `install all nxos`
    /// or `install all kickstart K system S`):
    /// answers the proceed questions; the device reloads by itself, so the session ends with it.
    pub(crate) async fn install(
        mut self,
        file: &str,
        kickstart: Option<&str>,
    ) -> Result<(), DeviceError> {
        let Some(command) = self.driver.install_command(file, kickstart) else {
            return Err(DeviceError::Session {
                device: self.device_name_owned(),
                message: "bundle-mode devices upgrade with set_boot and reload".into(),
            });
        };
        // IOS-XE: the image is added first; the activation under the auto-abort timer
        // reloads, and only `install commit` after the checks makes it stay.
        let command = if self.driver == Driver::IosXeInstall {
            self.install_add(file).await?;
            format!(
                "install activate auto-abort-timer {}",
                self.timeouts.commit_minutes()
            )
        } else {
            command
        };
        self.run_installer(command).await
    }

    /// IOS-XE `install add file flash:FILE`: the image expanded into its packages, nothing
    /// activated yet.
    async fn install_add(&mut self, file: &str) -> Result<(), DeviceError> {
        let command = format!("install add file {}", self.driver.path(file));
        let timeout = self.timeouts.install;
        let output = self.run_with(&command, Dialog::install(), timeout).await?;
        parse::install_result(&output)
            .map(|_| ())
            .map_err(|e| DeviceError::Rejected {
                device: self.device_name_owned(),
                command,
                message: e.to_string(),
            })
    }

    /// IOS-XE, the image added already (by an `install activate issu` the device refused):
    /// `install activate auto-abort-timer N` only. The device reloads; the session ends.
    pub(crate) async fn install_activate(self) -> Result<(), DeviceError> {
        let command = format!(
            "install activate auto-abort-timer {}",
            self.timeouts.commit_minutes()
        );
        self.run_installer(command).await
    }

    /// Run the installer command that reloads the device: the session ends with it.
    async fn run_installer(mut self, command: String) -> Result<(), DeviceError> {
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

    /// IOS-XE `install commit`: the activated image stays, the auto-abort timer stops. A device
    /// with nothing left to commit (committed before a restart of fleetup) counts as done.
    pub(crate) async fn install_commit(&mut self) -> Result<(), DeviceError> {
        let timeout = self.timeouts.install;
        let output = self
            .run_with("install commit", Dialog::install(), timeout)
            .await?;
        match parse::install_result(&output) {
            Ok(_) => Ok(()),
            Err(_) if output.contains("No uncommitted") => Ok(()),
            Err(e) => Err(DeviceError::Rejected {
                device: self.device().to_string(),
                command: "install commit".into(),
                message: e.to_string(),
            }),
        }
    }

    /// IOS-XE `install abort`: back to the committed image, by a reload (the session ends
    /// with it).
    pub(crate) async fn install_abort(mut self) -> Result<(), DeviceError> {
        let timeout = self.timeouts.install;
        match self
            .conn
            .run("install abort", Dialog::install(), timeout)
            .await
        {
            Err(DeviceError::ConnectionLost { .. }) => Ok(()),
            Err(e) => Err(e),
            Ok((output, _)) => {
                let device = self.device_name_owned();
                self.conn.close().await;
                Err(DeviceError::Rejected {
                    device,
                    command: "install abort".into(),
                    message: parse::install_result(&output)
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or(output),
                })
            }
        }
    }

    /// IOS-XE `install remove inactive`: frees flash of the packages no longer booted.
    pub(crate) async fn remove_inactive(&mut self) -> Result<(), DeviceError> {
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

    /// ISSU pre-check for upgrading to `file`, before any change. NX-OS runs `show install all
    /// impact nxos bootflash:FILE non-disruptive` (with the install timeout: it unpacks the
    /// image) and reads its compatibility table; IOS-XE in install mode runs `show issu state
    /// detail`: with every system check `Yes` the answer is [`IssuCheck::DecidedByActivation`],
    /// since IOS-XE has no dry run of the image pair (only `install activate issu` checks it).
    /// Bundle-mode devices and NX-OS with a separate kickstart get a disruptive answer.
    pub async fn issu_check(
        &mut self,
        file: &str,
        kickstart: Option<&str>,
    ) -> Result<IssuCheck, DeviceError> {
        match (self.driver, kickstart) {
            (Driver::Nxos, None) => {
                let command = format!(
                    "show install all impact nxos {} non-disruptive",
                    self.driver.path(file)
                );
                let timeout = self.timeouts.install;
                let output = self.run_with(&command, Dialog::install(), timeout).await?;
                issu::nxos_impact(&output)
                    .map(|i| i.check())
                    .map_err(|e| self.parse_error("show install all impact", e))
            }
            (Driver::Nxos, Some(_)) => Ok(IssuCheck::Disruptive {
                reason: "fleetup runs ISSU on NX-OS only with a combined image (`install all \
                         nxos`); this device boots a separate kickstart"
                    .into(),
            }),
            (Driver::IosXeInstall, _) => {
                let output = self.run("show issu state detail").await?;
                issu::iosxe_issu_state(&output)
                    .map(|s| s.check())
                    .map_err(|e| self.parse_error("show issu state detail", e))
            }
            (Driver::IosBundle, _) => Ok(IssuCheck::Disruptive {
                reason: "ISSU needs install mode; a bundle-mode device upgrades by a reload".into(),
            }),
        }
    }

    /// IOS-XE ISSU: `install add file FLASH:FILE`, then `install activate issu` (instead of
    /// `install activate auto-abort-timer N`), answering its questions. `Ok` once the
    /// activation went ahead: the standby takes over and the session ends with the switchover
    /// (it is unusable afterwards); `install commit` follows on a new session, as after
    /// [`Session::install`]. A refusal (`FAILED: ...`, e.g. an image pair that is not
    /// ISSU-compatible) is [`DeviceError::Rejected`] with the device's line; nothing was
    /// activated and the session stays usable, so the caller may fall back to a normal install.
    pub async fn install_activate_issu(&mut self, file: &str) -> Result<(), DeviceError> {
        if self.driver != Driver::IosXeInstall {
            return Err(DeviceError::Session {
                device: self.device_name_owned(),
                message: "`install activate issu` is for IOS-XE in install mode".into(),
            });
        }
        self.install_add(file).await?;
        let timeout = self.timeouts.install;
        let command = "install activate issu";
        let output = match self.conn.run(command, Dialog::install(), timeout).await {
            Err(DeviceError::ConnectionLost { .. }) => return Ok(()),
            Err(e) => return Err(e),
            Ok((output, _)) => output,
        };
        let rejected = |message: String| DeviceError::Rejected {
            device: self.device_name_owned(),
            command: command.into(),
            message,
        };
        if let Some(message) = parse::cli_error(&output) {
            return Err(rejected(message.to_string()));
        }
        match issu::iosxe_issu_activation(&output) {
            Ok(IssuActivation::Refused { reason }) => Err(rejected(reason)),
            // The prompt came back after a success: the switchover has not ended the session.
            Ok(IssuActivation::Proceeding) => Ok(()),
            Err(e) => Err(rejected(e.to_string())),
        }
    }

    /// NX-OS ISSU: `install all nxos bootflash:FILE non-disruptive`, answering its question.
    /// `Ok` once the install went ahead (the supervisors switch over and the session ends; it
    /// is unusable afterwards). When the device's compatibility check finds the upgrade
    /// disruptive it installs nothing and reloads nothing: [`DeviceError::Rejected`] with the
    /// device's reason (`module 27: Incompatible image for ISSU`), and the session stays usable.
    pub async fn install_all_non_disruptive(&mut self, file: &str) -> Result<(), DeviceError> {
        if self.driver != Driver::Nxos {
            return Err(DeviceError::Session {
                device: self.device_name_owned(),
                message: "`install all nxos ... non-disruptive` is for NX-OS".into(),
            });
        }
        let command = format!("install all nxos {} non-disruptive", self.driver.path(file));
        let timeout = self.timeouts.install;
        let output = match self.conn.run(&command, Dialog::install(), timeout).await {
            Err(DeviceError::ConnectionLost { .. }) => return Ok(()),
            Err(e) => return Err(e),
            Ok((output, _)) => output,
        };
        let message = if let Some(m) = parse::cli_error(&output) {
            m.to_string()
        } else if let Some(reason) = issu::nxos_non_disruptive_refused(&output) {
            reason
        } else {
            match parse::install_all_status(&output) {
                // Finished with the prompt back: the switchover is still to come.
                Ok(s) if s.finished && s.failed_step().is_none() => return Ok(()),
                Ok(s) => s
                    .failed_step()
                    .map(|f| f.description.clone())
                    .unwrap_or_else(|| "the installer stopped before switching over".into()),
                Err(e) => e.to_string(),
            }
        };
        Err(DeviceError::Rejected {
            device: self.device_name_owned(),
            command,
            message,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

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
