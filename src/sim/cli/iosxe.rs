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
        let st = self.dev.state();
        let uncommitted = st.install.rollback.clone();
        let mut rows = Vec::new();
        for f in &flash.files {
            if f.name.ends_with(".conf")
                && f.name != "packages.conf"
                && let Some(v) = crate::sim::install::conf_version(dir, &f.name, &none)
                && Some(&v) != active.as_ref()
                && inactive_too
            {
                // The set an uncommitted activation replaced is `D` until commit or abort.
                let st = if uncommitted.as_ref().is_some_and(|(_, old)| *old == v) {
                    "D"
                } else {
                    "I"
                };
                rows.push(format!("IMG   {st}    {v}.0.1\n"));
            }
        }
        if let Some(v) = &active {
            let st = if uncommitted.is_some() { "U" } else { "C" };
            rows.push(format!("IMG   {st}    {v}.0.1\n"));
        }
        let line = "-".repeat(80);
        // genieparser iosxe/ShowInstallSummary golden_output: `Auto abort timer: active on
        // install_activate, time before rollback - 01:49:42`, in the device's minutes.
        let timer = match self.dev.abort_left() {
            Some(left) => {
                let minute = self.lab.abort_timer_minute.as_secs_f64().max(1e-6);
                let secs = (left.as_secs_f64() / minute * 60.0).round() as u64;
                format!(
                    "active on install_activate, time before rollback - {:02}:{:02}:{:02}",
                    secs / 3600,
                    secs % 3600 / 60,
                    secs % 60
                )
            }
            None => "inactive".to_string(),
        };
        format!(
            "[ {} ] {what} Package(s) Information:\nState (St): I - Inactive, U - Activated & Uncommitted,\n            C - Activated & Committed, D - Deactivated & Uncommitted\n{line}\nType  St   Filename/Version\n{line}\n{}\n{line}\nAuto abort timer: {timer}\n{line}\n",
            self.install_units(),
            rows.concat()
        )
    }

    /// The units an install runs on, as the summary's header names them: `Switch 1 2 3` on a
    /// stack, `R0 R1` with two route processors, `Switch 1` alone.
    fn install_units(&self) -> String {
        match &self.dev.persona.members {
            Some(m) if m.kind == crate::sim::persona::MembersKind::Supervisors => "R0 R1".into(),
            Some(m) => format!(
                "Switch {}",
                m.slots
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            None => "Switch 1".into(),
        }
    }

    /// `Performing X on all members` and its lines per member, as a Catalyst 9000 prints them
    /// (`[1] Add package(s) on switch 1`; `[R0]` on a chassis with route processors).
    fn install_step(&self, verb: &str, what: &str, done: &str) -> String {
        let units: Vec<(String, String)> = match &self.dev.persona.members {
            Some(m) if m.kind == crate::sim::persona::MembersKind::Supervisors => {
                vec![("R0".into(), "R0".into()), ("R1".into(), "R1".into())]
            }
            Some(m) => m
                .slots
                .iter()
                .map(|n| (n.to_string(), format!("switch {n}")))
                .collect(),
            None => vec![("1".into(), "switch 1".into())],
        };
        let mut t = format!("--- Starting {verb} ---\r\nPerforming {verb} on all members\r\n");
        for (tag, on) in &units {
            t.push_str(&format!(
                "  [{tag}] {verb} {what} on {on}\r\n  [{tag}] Finished {verb} on {on}\r\n"
            ));
        }
        let tags: Vec<&str> = units.iter().map(|(t, _)| t.as_str()).collect();
        let tags = tags.join(" ");
        t.push_str(&format!(
            "Checking status of {verb} on [{tags}]\r\n{verb}: Passed on [{tags}]\r\n{done}\r\n\r\n"
        ));
        t
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
        let to = match &self.dev.persona.members {
            Some(m) if m.kind == crate::sim::persona::MembersKind::Stack => m
                .slots
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            _ => "1".to_string(),
        };
        let add = self.install_step(
            "Add",
            "package(s)",
            &format!("Image added. Version: {version}.0.1\r\n\r\nFinished Add"),
        );
        self.write(&format!(
            "--- Starting initial file syncing ---\r\nCopying {fs}:{name} from switch 1 to switch {to}\r\nInfo: Finished copying to the selected Switch\r\nFinished initial file syncing\r\n\r\n{add}"
        ))
        .await?;
        if !activate {
            let added = (name.clone(), version.clone());
            self.dev.update_install(|i| i.added = Some(added));
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
        if !quiet && !self.proceed("This operation may require a reload of the system. Do you want to proceed? [y/n]").await? {
            return self
                .install_failed("install_activate", "Operation aborted by user")
                .await;
        }
        let mut text = self.install_step("Activate", "package(s)", "Finished Activate");
        if commit {
            text.push_str(&self.install_step("Commit", "package(s)", "Finished Commit operation"));
        }
        text.push_str(&format!("SUCCESS: {op} {}\r\n", install_date()));
        self.activate_and_reload(&name, &version, &text, commit, None, false)
            .await
    }

    /// Make `name` the active package set, remember what it replaces unless committed, start
    /// the auto-abort timer when asked, print `text` and reload (`issu`: an in-service
    /// activation, recorded for the admin API).
    async fn activate_and_reload(
        &mut self,
        name: &str,
        version: &str,
        text: &str,
        commit: bool,
        abort_minutes: Option<u32>,
        issu: bool,
    ) -> Result<Flow, ()> {
        let flash_dir = self.dev.flash_dir.clone();
        let before = std::fs::read_to_string(flash_dir.join("packages.conf")).unwrap_or_default();
        let old_version = self.dev.state().version;
        if let Err(e) = crate::sim::install::write_packages_conf(&flash_dir, name, version) {
            return self
                .install_failed(
                    "install_activate",
                    &format!("cannot write packages.conf: {e}"),
                )
                .await;
        }
        let minute = self.lab.abort_timer_minute;
        self.dev.update_install(|i| {
            i.added = None;
            // A second activation before a commit still goes back to the committed set.
            if !commit && i.rollback.is_none() {
                i.rollback = Some((before, old_version));
            } else if commit {
                i.rollback = None;
            }
            i.abort_at_ms = abort_minutes.map(|m| {
                jiff::Timestamp::now().as_millisecond()
                    + (minute.as_secs_f64() * f64::from(m) * 1000.0) as i64
            });
        });
        self.write(text).await?;
        self.write("\r\nChassis 1 reloading, reason - Reload command\r\n")
            .await?;
        self.dev.update(|s| {
            s.reload_count += 1;
            s.last_upgrade_issu = issu;
        });
        self.dev.request_reload().await;
        Ok(Flow::Drop)
    }

    /// `install activate [auto-abort-timer N] [prompt-level none]`: the image `install add
    /// file` added becomes active, uncommitted; with the timer, not committed within N
    /// minutes it rolls back by itself.
    pub(super) async fn install_activate(&mut self, rest: &[String]) -> Result<Flow, ()> {
        let op = "install_activate";
        let mut abort = None;
        let mut quiet = false;
        let mut issu = false;
        let mut words = rest.iter().map(|w| w.to_ascii_lowercase());
        while let Some(w) = words.next() {
            match w.as_str() {
                "issu" if abort.is_none() => issu = true,
                "auto-abort-timer" => match words.next().and_then(|n| n.parse::<u32>().ok()) {
                    Some(n) if (30..=1200).contains(&n) => abort = Some(n),
                    _ => {
                        self.write("% Invalid input: auto-abort-timer takes <30-1200> minutes\r\n")
                            .await?;
                        return Ok(Flow::Continue);
                    }
                },
                "prompt-level" if words.next().as_deref() == Some("none") => quiet = true,
                _ => {
                    self.write(&format!("% Invalid input detected at '{w}'\r\n"))
                        .await?;
                    return Ok(Flow::Continue);
                }
            }
        }
        let s = self.dev.state();
        let Some((name, version)) = s.install.added.clone() else {
            self.write(&format!("{op}: START {}\r\n", install_date()))
                .await?;
            return self
                .install_failed(
                    op,
                    "No added package to activate; run install add file first",
                )
                .await;
        };
        if s.running != s.startup && quiet {
            self.write("FAILED: System configuration has been modified. Please save configuration and resubmit command.\r\n").await?;
            return Ok(Flow::Continue);
        }
        if issu {
            // As a C9400 prints `install_add_activate_commit: Adding ISSU` (genielibs
            // c9400 execute_install_one_shot); the refusal's wording is the lab's own.
            self.write(&format!(
                "{op}: START {}\r\n{op}: Activating ISSU\r\n",
                install_date()
            ))
            .await?;
            if let Some(why) = self.issu_refusal(&version) {
                return self.install_failed(op, &why).await;
            }
        }
        let fs = self.dev.persona.filesystem.clone();
        let mut text = if issu {
            "Following packages shall be activated:\r\n".to_string()
        } else {
            format!(
                "{op}: START {}\r\n{op}: Activating IMG\r\nFollowing packages shall be activated:\r\n",
                install_date()
            )
        };
        let dir = self.dev.flash_dir.clone();
        let pkgs = std::fs::read_to_string(dir.join(crate::sim::install::set_name(&name)))
            .unwrap_or_default();
        for p in pkgs
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().last())
        {
            text.push_str(&format!("/{fs}/{p}\r\n"));
        }
        text.push_str("\r\n");
        self.write(&text).await?;
        if !quiet && !self.proceed("This operation may require a reload of the system. Do you want to proceed? [y/n]").await? {
            return self.install_failed(op, "Operation aborted by user").await;
        }
        let mut text = if issu {
            // The standby is upgraded first, then takes over; the old active follows.
            let mut t = self.install_step(
                "Activate",
                "package(s) on standby",
                "Finished Activate on standby",
            );
            t.push_str("Switching over to standby\r\n");
            t
        } else {
            self.install_step("Activate", "package(s)", "Finished Activate")
        };
        text.push_str(&format!("SUCCESS: {op} {}\r\n", install_date()));
        self.activate_and_reload(&name, &version, &text, false, abort, issu)
            .await
    }

    /// Why this device cannot activate `version` in service, if it cannot: the system checks
    /// `show issu state detail` prints, then the image pair (`issu-incompatible`).
    fn issu_refusal(&self, version: &str) -> Option<String> {
        let failed: Vec<String> = self
            .issu_checks()
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(name, _)| format!("{name} No"))
            .collect();
        if !failed.is_empty() {
            return Some(format!("ISSU pre-check failed: {}", failed.join(", ")));
        }
        if self.dev.has_fault(crate::sim::Fault::IssuIncompatible) {
            let running = self.dev.state().version;
            return Some(format!(
                "ISSU is not supported from {running} to {version}; use install activate (with a reload)"
            ));
        }
        None
    }

    /// The `System Check` rows of `show issu state detail`: only a chassis with two
    /// supervisors (the standby hot) booted in install mode passes them all.
    fn issu_checks(&self) -> Vec<(&'static str, bool)> {
        let sups = matches!(
            &self.dev.persona.members,
            Some(m) if m.kind == crate::sim::persona::MembersKind::Supervisors
        );
        let standby = sups
            && self
                .dev
                .state()
                .members
                .iter()
                .all(|m| m.condition == crate::sim::device::Condition::Ready);
        vec![
            ("Platform ISSU Support", sups),
            ("Standby Online", standby),
            ("Autoboot Enabled", true),
            ("SSO Mode", standby),
            ("Install Boot", self.dev.persona.install_mode),
            ("Valid Boot Media", true),
        ]
    }

    /// `show issu state detail`, in the layout of genieparser iosxe/c9500 ShowIssuStateDetail
    /// golden_output (tests/fixtures/cisco/iosxe_c9500_ShowIssuStateDetail_golden_output.txt).
    pub(super) fn issu_state_detail(&self) -> String {
        let rule = "=".repeat(55);
        let dash = "-".repeat(55);
        let mut t = format!(
            "--- Starting local lock acquisition on R0 ---\n\nFinished local lock acquisition on R0\n\n\n\nCurrent ISSU Status: Enabled\n\nPrevious ISSU Operation: N/A\n\n{rule}\n\nSystem Check                        Status\n\n{dash}\n\n"
        );
        for (name, ok) in self.issu_checks() {
            t.push_str(&format!("{name:<36}{}\n\n", if ok { "Yes" } else { "No" }));
        }
        t.push_str(&format!("{rule}\n\nNo ISSU operation is in progress\n"));
        t
    }

    /// `install commit`: the active set stays for good; the auto-abort timer stops.
    pub(super) async fn install_commit(&mut self) -> Result<(), ()> {
        let op = "install_commit";
        self.write(&format!("{op}: START {}\r\n", install_date()))
            .await?;
        if self.dev.state().install.rollback.is_none() {
            self.install_failed(op, "No uncommitted activation to commit")
                .await?;
            return Ok(());
        }
        self.dev.update_install(|i| {
            i.rollback = None;
            i.abort_at_ms = None;
        });
        let text = self.install_step("Commit", "package(s)", "Finished Commit operation");
        self.write(&format!(
            "{op}: Committing PACKAGE\r\n{text}SUCCESS: {op} {}\r\n",
            install_date()
        ))
        .await
    }

    /// `install abort [prompt-level none]`: back to the committed set, by a reload.
    pub(super) async fn install_abort(&mut self, rest: &[String]) -> Result<Flow, ()> {
        let op = "install_abort";
        let quiet = rest.windows(2).any(|w| {
            w[0].eq_ignore_ascii_case("prompt-level") && w[1].eq_ignore_ascii_case("none")
        });
        self.write(&format!("{op}: START {}\r\n", install_date()))
            .await?;
        let s = self.dev.state();
        if s.install.rollback.is_none() {
            return self
                .install_failed(op, "No uncommitted activation to abort")
                .await;
        }
        if s.running != s.startup {
            // genielibs install mock data: `FAILED: install_abort : System configuration has
            // been modified. Please save configuration and resubmit command.`
            return self
                .install_failed(
                    op,
                    "System configuration has been modified. Please save configuration and resubmit command.",
                )
                .await;
        }
        if !quiet
            && !self
                .proceed("This install abort would require a reload. Do you want to proceed? [y/n]")
                .await?
        {
            return self.install_failed(op, "Operation aborted by user").await;
        }
        let text = self.install_step("Abort", "package(s)", "Finished Abort");
        if !self.dev.roll_back_install() {
            return self
                .install_failed(op, "cannot restore packages.conf")
                .await;
        }
        self.write(&format!(
            "{op}: Abort type PACKAGE subtype NONE smu_type NONE\r\n{text}SUCCESS: {op} {}\r\n\r\nChassis 1 reloading, reason - Reload command\r\n",
            install_date()
        ))
        .await?;
        self.dev.update(|s| {
            s.reload_count += 1;
            s.last_upgrade_issu = false;
        });
        self.dev.request_reload().await;
        Ok(Flow::Drop)
    }

    /// Ask `question`; whether the answer was yes.
    async fn proceed(&mut self, question: &str) -> Result<bool, ()> {
        self.write(question).await?;
        let a = self
            .read_text(true)
            .await
            .ok_or(())?
            .trim()
            .to_ascii_lowercase();
        Ok(a == "y" || a == "yes")
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
