//! NX-OS: `install all nxos`, `install all kickstart K system S` (Nexus 5000/7000), `boot nxos`,
//! `show file … md5sum`, `terminal dont-ask` questions.

use super::*;

async fn md5_of(path: &std::path::Path) -> Option<String> {
    let mut f = tokio::fs::File::open(path).await.ok()?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Some(hex::encode(hasher.finalize()))
}

impl<O: Output> Cli<O> {
    /// NX-OS asks `(y/n)?  [n]` questions unless `terminal dont-ask` is on.
    pub(super) async fn nxos_yes(&mut self, question: &str) -> Result<bool, ()> {
        if self.dont_ask {
            return Ok(true);
        }
        self.write(question).await?;
        let a = self
            .read_text(true)
            .await
            .ok_or(())?
            .trim()
            .to_ascii_lowercase();
        Ok(a == "y" || a == "yes")
    }

    pub(super) async fn show_file_md5(&mut self, path: &str) -> Result<(), ()> {
        let fs = self.dev.persona.filesystem.clone();
        let Some(name) = self.flash_name(path) else {
            return self
                .write(&format!("/{fs}/{path}: No such file or directory\r\n"))
                .await;
        };
        match md5_of(&self.dev.flash_path(&name)).await {
            Some(d) => self.write(&format!("{d}\r\n")).await,
            None => {
                self.write(&format!("/{fs}/{name}: No such file or directory\r\n"))
                    .await
            }
        }
    }

    /// `boot nxos [bootflash:][/]FILE`: NX-OS checks the image first and refuses a file that
    /// is not there; the variable reads back as `bootflash:/FILE` (a Nexus 9000v 7.0(3)I6(1)
    /// transcript, tests/fixtures/cisco/blog_heathdbrown_n9kv_boot_nxos_show_boot.txt).
    pub(super) async fn boot_nxos(&mut self, path: &str) -> Result<(), ()> {
        let fs = self.dev.persona.filesystem.clone();
        let spelled = if path.contains(':') {
            path.to_string()
        } else {
            format!("{fs}:{path}")
        };
        self.write("Performing image verification and compatibility check, please wait....\r\n")
            .await?;
        let present = self
            .flash_name(&spelled)
            .filter(|n| self.dev.flash().files.iter().any(|f| &f.name == n));
        match present {
            Some(name) => {
                let entry = format!("{fs}:/{name}");
                self.dev.update(|s| s.running.boot_system = vec![entry]);
                Ok(())
            }
            // Wording not taken from a capture (none public was found); see docs/lab.md.
            None => {
                let (device, file) = spelled.split_once(':').unwrap_or((&fs, &spelled));
                let file = file.trim_start_matches('/');
                self.write(&format!("Image {device}:/{file} does not exist\r\n"))
                    .await
            }
        }
    }

    /// `boot kickstart FILE` / `boot system FILE` in configuration mode on a Nexus with separate
    /// images: the variable of the running configuration that `copy running-config
    /// startup-config` saves and the next reload boots. `boot system` checks the image first,
    /// with the line `boot nxos` prints; `boot kickstart` answers nothing. A file that is not
    /// there is refused, with `boot nxos`'s wording (no public Nexus 7000 transcript of these
    /// lines was found; see docs/lab.md).
    pub(super) async fn boot_kickstart_or_system(
        &mut self,
        path: &str,
        kickstart: bool,
    ) -> Result<(), ()> {
        let fs = self.dev.persona.filesystem.clone();
        let spelled = if path.contains(':') {
            path.to_string()
        } else {
            format!("{fs}:{path}")
        };
        if !kickstart {
            self.write(
                "Performing image verification and compatibility check, please wait....\r\n",
            )
            .await?;
        }
        let present = self
            .flash_name(&spelled)
            .filter(|n| self.dev.flash().files.iter().any(|f| &f.name == n));
        let Some(name) = present else {
            let (device, file) = spelled.split_once(':').unwrap_or((&fs, &spelled));
            let file = file.trim_start_matches('/');
            return self
                .write(&format!("Image {device}:/{file} does not exist\r\n"))
                .await;
        };
        let entry = format!("{fs}:/{name}");
        self.dev.update(|s| {
            if kickstart {
                s.running.boot_kickstart = Some(entry);
            } else {
                s.running.boot_system = vec![entry];
            }
        });
        Ok(())
    }

    /// `install all kickstart K system S` on a Nexus with separate images, as the Nexus 7000
    /// transcript of salt tests/unit/modules/nxos/nxos_n7k.py prints it.
    pub(super) async fn install_all_kickstart(
        &mut self,
        kickstart: &str,
        system: &str,
    ) -> Result<Flow, ()> {
        let fs = self.dev.persona.filesystem.clone();
        let step = |what: &str| format!("{what}\r\n[####################] 100% -- SUCCESS\r\n\r\n");
        let fail = |what: &str, code: &str| {
            format!("{what}\r\n[####################] 100% -- FAIL.\r\nReturn code {code}.\r\n")
        };
        let s = self.dev.state();
        let mut text =
            String::from("Installer will perform compatibility check first. Please wait.\r\n\r\n");
        let mut checked = Vec::new();
        for (path, variable) in [(kickstart, "kickstart"), (system, "system")] {
            let what = format!("Verifying image {path} for boot variable \"{variable}\".");
            let name = self
                .flash_name(path)
                .filter(|n| self.dev.flash().files.iter().any(|f| &f.name == n));
            let Some(name) = name else {
                text.push_str(&fail(&what, "0x4045001D (Image does not exist)"));
                return self.write(&text).await.map(|()| Flow::Continue);
            };
            let version = crate::images::guess_version(&name).filter(|_| {
                crate::images::guess_platform(&name) == Some(crate::inventory::Platform::Nxos)
                    && !s.corrupt_files.contains(&name)
                    && name.contains("kickstart") == (variable == "kickstart")
            });
            let Some(version) = version else {
                text.push_str(&fail(&what, "0x4045001F (image MD5 checksum error)"));
                return self.write(&text).await.map(|()| Flow::Continue);
            };
            text.push_str(&step(&what));
            checked.push((name, version));
        }
        let [(k_name, k_version), (s_name, s_version)] = [checked[0].clone(), checked[1].clone()];
        text.push_str(&step("Performing module support checks."));
        text.push_str(&step("Verifying image type."));
        text.push_str(&step(&format!(
            "Extracting \"system\" version from image {fs}:/{s_name}."
        )));
        text.push_str(&step(&format!(
            "Extracting \"kickstart\" version from image {fs}:/{k_name}."
        )));
        text.push_str(&step(&format!(
            "Extracting \"bios\" version from image {fs}:/{s_name}."
        )));
        text.push_str(&step("Notifying services about system upgrade."));
        let required = if s_version == s.version { "no" } else { "yes" };
        text.push_str(&format!(
            "\r\n\r\nCompatibility check is done:\r\nModule  bootable          Impact  Install-type  Reason\r\n------  --------  --------------  ------------  ------\r\n     1       yes      disruptive         reset  Reset due to single supervisor\r\n\r\n\r\n\r\nImages will be upgraded according to following table:\r\nModule       Image                  Running-Version(pri:alt)           New-Version  Upg-Required\r\n------  ----------  ----------------------------------------  --------------------  ------------\r\n     1      system  {:>40}  {:>20}  {:>12}\r\n     1   kickstart  {:>40}  {:>20}  {:>12}\r\n     1        bios   v2.12.0(05/29/2013):v2.12.0(05/29/2013)   v2.13.0(10/23/2018)           yes\r\n\r\n\r\n",
            s.version, s_version, required, s.version, k_version, required
        ));
        self.write(&text).await?;
        if !self
            .nxos_yes("Switch will be reloaded for disruptive upgrade.\r\nDo you want to continue with the installation (y/n)?  [n] ")
            .await?
        {
            self.write("Install is aborted\r\n").await?;
            return Ok(Flow::Continue);
        }
        let mut text = String::from("\r\nInstall is in progress, please wait.\r\n\r\n");
        text.push_str(&step("Performing runtime checks."));
        text.push_str(&step("Setting boot variables."));
        text.push_str(&step("Performing configuration copy."));
        text.push_str("Module 1:  Upgrading bios/loader/bootrom.\r\nWarning: please do not remove or power off the module at this time.\r\n[####################] 100% -- SUCCESS\r\n\r\n");
        text.push_str("Finishing the upgrade, switch will reboot in 10 seconds.\r\n");
        let system_entry = format!("{fs}:/{s_name}");
        let kickstart_entry = format!("{fs}:/{k_name}");
        self.dev.update(|s| {
            s.running.boot_system = vec![system_entry.clone()];
            s.running.boot_kickstart = Some(kickstart_entry);
            s.startup = s.running.clone();
            s.boot_variable = vec![system_entry];
            s.reload_count += 1;
            s.last_upgrade_issu = false;
        });
        self.write(&text).await?;
        self.dev.request_reload().await;
        Ok(Flow::Drop)
    }

    /// The compatibility check that `install all nxos FILE [non-disruptive]` and `show install
    /// all impact nxos FILE [non-disruptive]` both print after `head`: the image's checks, the
    /// `Compatibility check is done:` table and the upgrade table, with the image's name and
    /// whether the upgrade resets the switch; or, as the error, the failed check.
    pub(super) fn nxos_compat_check(
        &self,
        head: &str,
        path: &str,
        non_disruptive: bool,
    ) -> Result<(String, String, bool), String> {
        let fs = &self.dev.persona.filesystem;
        let step = |what: &str| format!("{what}\r\n[####################] 100% -- SUCCESS\r\n\r\n");
        let s = self.dev.state();
        let name = self.flash_name(path);
        let present = name
            .as_ref()
            .is_some_and(|n| self.dev.flash().files.iter().any(|f| &f.name == n));
        let (Some(name), true) = (name, present) else {
            return Err(format!(
                "{head}\r\nVerifying image {path} for boot variable \"nxos\".\r\n[####################] 100% -- FAIL.\r\nReturn code 0x4045001D (Image does not exist).\r\n"
            ));
        };
        let version = match crate::images::guess_version(&name) {
            Some(v)
                if crate::images::guess_platform(&name)
                    == Some(crate::inventory::Platform::Nxos)
                    && !s.corrupt_files.contains(&name) =>
            {
                v
            }
            _ => {
                return Err(format!(
                    "{head}\r\nVerifying image {fs}:/{name} for boot variable \"nxos\".\r\n[####################] 100% -- FAIL.\r\nReturn code 0x4045001F (image MD5 checksum error).\r\n"
                ));
            }
        };
        let mut text = format!("{head}\r\n");
        text.push_str(&step(&format!(
            "Verifying image {fs}:/{name} for boot variable \"nxos\"."
        )));
        text.push_str(&step("Verifying image type."));
        text.push_str(&step(&format!(
            "Preparing \"nxos\" version info using image {fs}:/{name}."
        )));
        text.push_str(&step(&format!(
            "Preparing \"bios\" version info using image {fs}:/{name}."
        )));
        text.push_str(&step("Performing module support checks."));
        text.push_str(&step("Notifying services about system upgrade."));
        let required = if version == s.version { "no" } else { "yes" };
        let (rows, disruptive) = self.nxos_impact_rows(non_disruptive);
        text.push_str(&format!(
            "\r\n\r\nCompatibility check is done:\r\nModule  bootable          Impact  Install-type  Reason\r\n------  --------  --------------  ------------  ------\r\n{rows}\r\n\r\n\r\nImages will be upgraded according to following table:\r\nModule       Image                  Running-Version(pri:alt)           New-Version  Upg-Required\r\n------  ----------  ----------------------------------------  --------------------  ------------\r\n     1        nxos  {:>40}  {:>20}  {:>12}\r\n     1        bios     v07.68(05/26/2020):v07.64(05/16/2018)    v07.68(05/26/2020)            no\r\n\r\n",
            s.version, version, required
        ));
        Ok((text, name, disruptive))
    }

    /// The rows of the `Compatibility check is done:` table, one per supervisor on a chassis
    /// with two (module 1 otherwise), and whether any is disruptive. Without `non-disruptive`
    /// NX-OS upgrades disruptively (`default upgrade is not hitless`, salt nxos_n93k.py); with
    /// it a chassis whose standby is hot upgrades in service (`non-disruptive none`, salt
    /// nxos_n95k.py, a Nexus 9508), unless the image pair is not ISSU-compatible
    /// (`issu-incompatible`: `Incompatible image for ISSU`, the cisco.nxos nxos_install_os
    /// docstring). A single supervisor is reset either way.
    fn nxos_impact_rows(&self, non_disruptive: bool) -> (String, bool) {
        let sups: Vec<u32> = match &self.dev.persona.members {
            Some(m) if m.kind == crate::sim::persona::MembersKind::Supervisors => m.slots.clone(),
            _ => vec![1],
        };
        let standby_hot = sups.len() > 1
            && self
                .dev
                .state()
                .members
                .iter()
                .all(|m| m.condition == crate::sim::device::Condition::Ready);
        let reason = if !non_disruptive || sups.len() < 2 {
            Some("default upgrade is not hitless")
        } else if !standby_hot {
            Some("Standby supervisor is not ready")
        } else if self.dev.has_fault(crate::sim::Fault::IssuIncompatible) {
            Some("Incompatible image for ISSU")
        } else {
            None
        };
        let rows: Vec<String> = sups
            .iter()
            .map(|n| match reason {
                Some(why) => format!("{n:>6}       yes      disruptive         reset  {why}\r\n"),
                None => format!("{n:>6}       yes  non-disruptive          none\r\n"),
            })
            .collect();
        (rows.concat(), reason.is_some())
    }

    /// `install all nxos FILE [non-disruptive]`. With `non-disruptive` on a chassis whose
    /// compatibility check says the upgrade would be disruptive, nothing is installed and
    /// nothing reloads (the refusal's wording is the lab's own: no public capture of it was
    /// found); otherwise the upgrade runs as the salt captures print it and the device reloads
    /// (the switchover of a real ISSU also ends every session).
    pub(super) async fn install_all(
        &mut self,
        path: &str,
        non_disruptive: bool,
    ) -> Result<Flow, ()> {
        let fs = self.dev.persona.filesystem.clone();
        let step = |what: &str| format!("{what}\r\n[####################] 100% -- SUCCESS\r\n\r\n");
        let head = if non_disruptive {
            "Installer will perform compatibility check first. Please wait.\r\n"
        } else {
            "Installer will perform compatibility check first. Please wait.\r\nInstaller is forced disruptive\r\n"
        };
        let (name, disruptive) = match self.nxos_compat_check(head, path, non_disruptive) {
            Ok((text, name, disruptive)) => {
                self.write(&format!("{text}\r\n")).await?;
                (name, disruptive)
            }
            Err(failed) => return self.write(&failed).await.map(|()| Flow::Continue),
        };
        let issu = non_disruptive && !disruptive;
        if non_disruptive && disruptive {
            self.write("Non-disruptive upgrade is not supported: the compatibility check found a module to reset.\r\nInstall has been aborted.\r\n")
                .await?;
            return Ok(Flow::Continue);
        }
        let question = if issu {
            "Do you want to continue with the installation (y/n)?  [n] "
        } else {
            "Switch will be reloaded for disruptive upgrade.\r\nDo you want to continue with the installation (y/n)?  [n] "
        };
        if !self.nxos_yes(question).await? {
            self.write("Install is aborted\r\n").await?;
            return Ok(Flow::Continue);
        }
        let mut text = String::from("\r\nInstall is in progress, please wait.\r\n\r\n");
        text.push_str(&step("Performing runtime checks."));
        text.push_str(&step("Setting boot variables."));
        text.push_str(&step("Performing configuration copy."));
        text.push_str("Module 1: Refreshing compact flash and upgrading bios/loader/bootrom.\r\nWarning: please do not remove or power off the module at this time.\r\n[####################] 100% -- SUCCESS\r\n\r\n");
        if issu {
            // salt nxos_n95k.py install_all_non_disruptive_success ends so.
            text.push_str("\r\nInstall has been successful.\r\n");
        } else {
            text.push_str(&step("Converting startup config."));
            text.push_str("Finishing the upgrade, switch will reboot in 10 seconds.\r\n");
        }
        let entry = format!("{fs}:/{name}");
        self.dev.update(|s| {
            s.running.boot_system = vec![entry.clone()];
            s.startup = s.running.clone();
            s.boot_variable = vec![entry];
            s.reload_count += 1;
            s.last_upgrade_issu = issu;
        });
        self.write(&text).await?;
        self.dev.request_reload().await;
        Ok(Flow::Drop)
    }
}
