//! IOS-XE install mode: `install add file … activate commit`, `show install summary`,
//! `install remove inactive`.

use super::*;

/// The date in `install_*: START …` lines.
fn install_date() -> String {
    jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .strftime("%a %b %d %H:%M:%S UTC %Y")
        .to_string()
}

impl<O: Output> Cli<O> {
    pub(super) fn install_summary(&self) -> String {
        self.install_table("Installed", true)
    }

    /// `show install summary` (every package set), `active` and `committed` (the booted one:
    /// activation is always committed here).
    pub(super) fn install_table(&self, what: &str, inactive_too: bool) -> String {
        let flash = self.dev.flash();
        let dir = &self.dev.flash_dir;
        let none = Default::default();
        let active = crate::sim::install::conf_version(dir, "packages.conf", &none);
        let mut rows = Vec::new();
        for f in &flash.files {
            if f.name.ends_with(".conf")
                && f.name != "packages.conf"
                && let Some(v) = crate::sim::install::conf_version(dir, &f.name, &none)
                && Some(&v) != active.as_ref()
                && inactive_too
            {
                rows.push(format!("IMG   I    {v}.0.1\n"));
            }
        }
        if let Some(v) = &active {
            rows.push(format!("IMG   C    {v}.0.1\n"));
        }
        let line = "-".repeat(80);
        format!(
            "[ Switch 1 ] {what} Package(s) Information:\nState (St): I - Inactive, U - Activated & Uncommitted,\n            C - Activated & Committed, D - Deactivated & Uncommitted\n{line}\nType  St   Filename/Version\n{line}\n{}\n{line}\nAuto abort timer: inactive\n{line}\n",
            rows.concat()
        )
    }

    pub(super) async fn install_add(&mut self, path: &str, rest: &[String]) -> Result<Flow, ()> {
        let activate = rest.iter().any(|w| w == "activate");
        let commit = rest.iter().any(|w| w == "commit");
        let quiet = rest
            .windows(2)
            .any(|w| w[0] == "prompt-level" && w[1] == "none");
        let op = match (activate, commit) {
            (true, true) => "install_add_activate_commit",
            (true, false) => "install_add_activate",
            _ => "install_add",
        };
        let fs = self.dev.persona.filesystem.clone();
        let s = self.dev.state();
        if activate && s.running != s.startup {
            if quiet {
                self.write("FAILED: System configuration has been modified. Please save configuration and resubmit command.\r\n").await?;
                return Ok(Flow::Continue);
            }
            self.write("\r\nSystem configuration has been modified.\r\nPress Yes(y) to save the configuration and proceed.\r\nPress No(n) for proceeding without saving the configuration.\r\nPress Quit(q) to exit, you may save configuration and re-enter the command. [y/n/q]").await?;
            let a = self
                .read_text(true)
                .await
                .ok_or(())?
                .trim()
                .to_ascii_lowercase();
            match a.as_str() {
                "y" | "yes" => {
                    self.save_config().await?;
                    self.write("[OK]\r\n").await?;
                }
                "n" | "no" => {}
                _ => return Ok(Flow::Continue),
            }
        }
        self.write(&format!(
            "{op}: START {d}\r\ninstall_add: START {d}\r\ninstall_add: Adding IMG\r\n",
            d = install_date()
        ))
        .await?;
        let flash = self.dev.flash();
        let found = self
            .flash_name(path)
            .and_then(|n| flash.files.iter().find(|f| f.name == n).cloned());
        let Some(file) = found else {
            return self
                .install_failed(op, &format!("{path}: No such file or directory"))
                .await;
        };
        let name = file.name.clone();
        let version = match crate::images::guess_version(&name) {
            Some(v)
                if crate::images::guess_platform(&name)
                    == Some(crate::inventory::Platform::Iosxe) =>
            {
                v
            }
            _ => {
                return self
                    .install_failed(op, &format!("{path} is not a valid IOS-XE image"))
                    .await;
            }
        };
        if s.corrupt_files.contains(&name) {
            return self
                .install_failed(op, &format!("Image verification failed for {path}"))
                .await;
        }
        let flash_dir = self.dev.flash_dir.clone();
        let active =
            crate::sim::install::conf_version(&flash_dir, "packages.conf", &s.corrupt_files);
        if active.as_deref() == Some(version.as_str()) {
            self.write(&format!(
                "[1]  R0 Add succeed with reason: Same Image File-No Change\r\nSUCCESS: {op} {}\r\n",
                install_date()
            ))
            .await?;
            return Ok(Flow::Continue);
        }
        if flash.free < file.size {
            self.write(&format!(
                "FAILED: /{fs} requires {} KB of free space\r\nFAILED: {op} {}\r\n",
                file.size.div_ceil(1024),
                install_date()
            ))
            .await?;
            return Ok(Flow::Continue);
        }
        let pkgs = match crate::sim::install::expand(&flash_dir, &name, &version, file.size) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .install_failed(op, &format!("cannot expand {path}: {e}"))
                    .await;
            }
        };
        self.write(&format!(
            "--- Starting initial file syncing ---\r\nCopying {fs}:{name} from switch 1 to switch 1\r\nInfo: Finished copying to the selected Switch\r\nFinished initial file syncing\r\n\r\n--- Starting Add ---\r\nPerforming Add on all members\r\n  [1] Add package(s) on switch 1\r\n  [1] Finished Add on switch 1\r\nChecking status of Add on [1]\r\nAdd: Passed on [1]\r\nImage added. Version: {version}.0.1\r\n\r\nFinished Add\r\n\r\n"
        ))
        .await?;
        if !activate {
            self.write(&format!("SUCCESS: {op} {}\r\n", install_date()))
                .await?;
            return Ok(Flow::Continue);
        }
        let mut text = format!(
            "install_activate: START {}\r\ninstall_activate: Activating IMG\r\nFollowing packages shall be activated:\r\n",
            install_date()
        );
        for p in &pkgs {
            text.push_str(&format!("/{fs}/{p}\r\n"));
        }
        text.push_str("\r\n");
        self.write(&text).await?;
        if !quiet {
            self.write(
                "This operation may require a reload of the system. Do you want to proceed? [y/n]",
            )
            .await?;
            let a = self
                .read_text(true)
                .await
                .ok_or(())?
                .trim()
                .to_ascii_lowercase();
            if a != "y" && a != "yes" {
                return self
                    .install_failed("install_activate", "Operation aborted by user")
                    .await;
            }
        }
        let mut text = String::from(
            "--- Starting Activate ---\r\nPerforming Activate on all members\r\n  [1] Activate package(s) on switch 1\r\n  [1] Finished Activate on switch 1\r\nChecking status of Activate on [1]\r\nActivate: Passed on [1]\r\nFinished Activate\r\n\r\n",
        );
        if commit {
            text.push_str("--- Starting Commit ---\r\nPerforming Commit on all members\r\n  [1] Commit package(s) on switch 1\r\n  [1] Finished Commit on switch 1\r\nChecking status of Commit on [1]\r\nCommit: Passed on [1]\r\nFinished Commit operation\r\n\r\n");
        }
        text.push_str(&format!("SUCCESS: {op} {}\r\n", install_date()));
        if let Err(e) = crate::sim::install::write_packages_conf(&flash_dir, &name, &version) {
            return self
                .install_failed(op, &format!("cannot write packages.conf: {e}"))
                .await;
        }
        self.write(&text).await?;
        self.write("\r\nChassis 1 reloading, reason - Reload command\r\n")
            .await?;
        self.dev.update(|s| s.reload_count += 1);
        self.dev.request_reload().await;
        Ok(Flow::Drop)
    }

    pub(super) async fn install_failed(&mut self, op: &str, why: &str) -> Result<Flow, ()> {
        self.write(&format!(
            "FAILED: {op} : {why}\r\nFAILED: {op} {}\r\n",
            install_date()
        ))
        .await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn install_remove_inactive(&mut self) -> Result<(), ()> {
        let fs = self.dev.persona.filesystem.clone();
        let flash = self.dev.flash();
        let names: Vec<String> = flash.files.iter().map(|f| f.name.clone()).collect();
        let gone = crate::sim::install::inactive_files(&self.dev.flash_dir, &names);
        let mut text = format!(
            "install_remove: START {}\r\ninstall_remove: Removing IMG\r\nCleaning up unnecessary package files\r\nNo path specified, will use booted path /{fs}/packages.conf\r\nCleaning /{fs}\r\n  Scanning boot directory for packages ... done.\r\n  Preparing packages list to delete ...\r\n    [R0]: /{fs}/packages.conf File is in use, will not delete.\r\n",
            install_date()
        );
        if gone.is_empty() {
            text.push_str(&format!(
                "SUCCESS: No extra package or provisioning files found on media. Nothing to clean.\r\nSUCCESS: install_remove {}\r\n",
                install_date()
            ));
            return self.write(&text).await;
        }
        text.push_str("The following files will be deleted:\r\n");
        for f in &gone {
            text.push_str(&format!("    [R0]: /{fs}/{f}\r\n"));
        }
        text.push_str("Do you want to remove the above files? [y/n]");
        self.write(&text).await?;
        let a = self
            .read_text(true)
            .await
            .ok_or(())?
            .trim()
            .to_ascii_lowercase();
        if a != "y" && a != "yes" {
            return self
                .write(&format!(
                    "[1]  R0 Add succeed with reason: User Rejected Deletion\r\nSUCCESS: install_remove {}\r\n",
                    install_date()
                ))
                .await;
        }
        let mut text = String::new();
        for f in &gone {
            let _ = tokio::fs::remove_file(self.dev.flash_path(f)).await;
            self.dev.mark_corrupt(f, false);
            text.push_str(&format!("Deleting file /{fs}/{f} ... done.\r\n"));
        }
        text.push_str(&format!("SUCCESS: Files deleted.\r\n--- Starting Post_Remove_Cleanup ---\r\nPerforming REMOVE_POSTCHECK on all members\r\nFinished Post_Remove_Cleanup\r\nSUCCESS: install_remove {}\r\n", install_date()));
        self.write(&text).await
    }
}
