//! In-service software upgrade (ISSU): pure readers of what the devices say about it.
//!
//! - NX-OS decides before anything changes: `show install all impact nxos bootflash:F
//!   non-disruptive` prints the `Compatibility check is done:` table, one row per module with
//!   its `Impact` (`non-disruptive` or `disruptive`) and the `Reason`; `install all nxos
//!   bootflash:F non-disruptive` prints the same table first and does not install when a module
//!   would be reset.
//! - IOS-XE has no dry run of the image pair: `show issu state detail` tells whether the box can
//!   do ISSU at all (platform support, a standby online, SSO, install-mode boot); whether the
//!   new image is ISSU-compatible with the running one only `install activate issu` says, by
//!   going on or by a `FAILED:` line.
//!
//! Every parser takes the text a command printed and is tested on real captures
//! (`tests/fixtures/cisco/`, origins in its SOURCES.txt) and on the lab's outputs.

use std::sync::LazyLock;

use regex::Regex;

use super::parse::{self, InstallError, ParseError, missing, re};

/// What the device said, before any change, about upgrading to an image without a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuCheck {
    /// NX-OS: every module of the compatibility check is `non-disruptive`.
    NonDisruptive,
    /// The upgrade would reset the device (or ISSU is impossible on it), with the device's
    /// own reason (`module 1: Incompatible image for ISSU`, `Standby Online: No`).
    Disruptive { reason: String },
    /// IOS-XE: the box is ready for ISSU (`show issu state detail`: every system check `Yes`),
    /// but IOS-XE has no dry run of the image pair: whether this image can be activated
    /// in service is decided by `install activate issu` itself.
    DecidedByActivation,
}

// ---------------------------------------------------------------------------------------------
// NX-OS: the compatibility check of `show install all impact` and `install all`
// ---------------------------------------------------------------------------------------------

/// One row of NX-OS's `Compatibility check is done:` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleImpact {
    pub module: u32,
    pub bootable: bool,
    pub disruptive: bool,
    /// `none`, `reset`, `rolling`, `copy-only`...
    pub install_type: String,
    /// Empty when the module's upgrade is non-disruptive.
    pub reason: String,
}

/// What NX-OS's compatibility check said about an upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impact {
    pub modules: Vec<ModuleImpact>,
    /// The check itself failed before the table (`-- FAIL.` and its `Return code` line,
    /// `Pre-upgrade check failed`, `Another install procedure may be in progress`).
    pub failure: Option<String>,
}

impl Impact {
    /// Whether the upgrade would reset a module; a failed check counts as disruptive, since
    /// nothing says it is not.
    pub fn disruptive(&self) -> bool {
        self.failure.is_some() || self.modules.iter().any(|m| m.disruptive || !m.bootable)
    }

    /// Why it is disruptive: each disruptive module with its reason (`module 8:
    /// Incompatible image for ISSU; module 21: ...`), else the installer's failure line.
    pub fn reason(&self) -> Option<String> {
        let reasons: Vec<String> = self
            .modules
            .iter()
            .filter(|m| m.disruptive || !m.bootable)
            .map(|m| {
                let why = if !m.bootable {
                    "not bootable with the new image"
                } else if m.reason.is_empty() {
                    "disruptive"
                } else {
                    m.reason.as_str()
                };
                format!("module {}: {why}", m.module)
            })
            .collect();
        if reasons.is_empty() {
            self.failure.clone()
        } else {
            Some(reasons.join("; "))
        }
    }

    pub fn check(&self) -> IssuCheck {
        match self.reason() {
            Some(reason) => IssuCheck::Disruptive { reason },
            None => IssuCheck::NonDisruptive,
        }
    }
}

static IMPACT_ROW: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(\d+)\s+(yes|no)\s+(non-disruptive|disruptive)\s+(\S+)(?:\s+(.*?))?\s*$")
});

/// The lines by which NX-OS's installer says it stopped.
fn installer_failure(text: &str) -> Option<String> {
    static RETURN_CODE: LazyLock<Regex> = LazyLock::new(|| re(r"^Return code 0x[0-9A-Fa-f]+"));
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("Pre-upgrade check failed")
            || l.contains("Another install procedure may be in progress")
            || l.starts_with("Install has been aborted")
            || l.starts_with("Non-disruptive upgrade is not supported")
        {
            return Some(l.to_string());
        }
        if RETURN_CODE.is_match(l) {
            // `Verifying image ...` / `[###] 100% -- FAIL.` / `Return code 0x... (why).`
            let what = lines[..i]
                .iter()
                .rev()
                .find(|p| !p.is_empty() && !p.starts_with('['))
                .copied()
                .unwrap_or("");
            return Some(format!("{what} {l}").trim().to_string());
        }
    }
    None
}

/// Parse NX-OS `show install all impact nxos ... [non-disruptive]`, or the compatibility check
/// that `install all nxos ...` prints before it installs.
pub fn nxos_impact(text: &str) -> Result<Impact, ParseError> {
    let mut modules = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Compatibility check is done") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if t.starts_with("Images will be upgraded") {
            break;
        }
        if let Some(c) = IMPACT_ROW.captures(t) {
            let Ok(module) = c[1].parse::<u32>() else {
                continue;
            };
            modules.push(ModuleImpact {
                module,
                bootable: &c[2] == "yes",
                disruptive: &c[3] == "disruptive",
                install_type: c[4].to_string(),
                reason: c.get(5).map(|m| m.as_str().to_string()).unwrap_or_default(),
            });
        }
    }
    let failure = installer_failure(text);
    if modules.is_empty() && failure.is_none() {
        return Err(missing(
            "show install all impact",
            "`Compatibility check is done:` table",
            text,
        ));
    }
    Ok(Impact { modules, failure })
}

/// The device's reason when `install all nxos ... non-disruptive` did not install: its
/// compatibility check found a disruptive module (or failed) and the installer never started
/// (`Install is in progress` missing). `None` when the install went ahead.
pub fn nxos_non_disruptive_refused(text: &str) -> Option<String> {
    if text.contains("Install is in progress") {
        return None;
    }
    match nxos_impact(text) {
        Ok(impact) if impact.disruptive() => impact.reason(),
        Ok(_) => None,
        Err(_) => Some(
            text.lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("the installer printed nothing")
                .to_string(),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// IOS-XE: show issu state detail, install activate issu
// ---------------------------------------------------------------------------------------------

/// What IOS-XE `show issu state detail` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuState {
    /// The `System Check` table: (`Platform ISSU Support`, true), (`Standby Online`, false)...
    pub checks: Vec<(String, bool)>,
    /// An ISSU operation runs (no `No ISSU operation is in progress` line).
    pub in_progress: bool,
}

impl IssuState {
    /// Every system check passed and no ISSU runs.
    pub fn ready(&self) -> bool {
        self.reason().is_none()
    }

    /// The failed checks (`Platform ISSU Support: No; Standby Online: No`), or the ISSU
    /// under way.
    pub fn reason(&self) -> Option<String> {
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(name, _)| format!("{name}: No"))
            .collect();
        if !failed.is_empty() {
            return Some(failed.join("; "));
        }
        self.in_progress
            .then(|| "an ISSU operation is already in progress".to_string())
    }

    pub fn check(&self) -> IssuCheck {
        match self.reason() {
            Some(reason) => IssuCheck::Disruptive { reason },
            None => IssuCheck::DecidedByActivation,
        }
    }
}

/// Parse IOS-XE `show issu state detail`.
pub fn iosxe_issu_state(text: &str) -> Result<IssuState, ParseError> {
    static CHECK: LazyLock<Regex> = LazyLock::new(|| re(r"^(\S.*?)\s{2,}(Yes|No)$"));
    let mut checks = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("System Check") {
            in_table = true;
            continue;
        }
        if in_table && t.starts_with("====") {
            break;
        }
        if in_table && let Some(c) = CHECK.captures(t) {
            checks.push((c[1].to_string(), &c[2] == "Yes"));
        }
    }
    if checks.is_empty() {
        return Err(missing(
            "show issu state detail",
            "`System Check` table",
            text,
        ));
    }
    Ok(IssuState {
        checks,
        in_progress: !text.contains("No ISSU operation is in progress"),
    })
}

/// What IOS-XE answered to `install activate issu` (or `install add file ... activate issu`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuActivation {
    /// The activation went ahead (a `SUCCESS:` line, or the ISSU started and the session
    /// ended with the switchover).
    Proceeding,
    /// The device refused, changing nothing: its `FAILED:` line.
    Refused { reason: String },
}

/// Read the output of `install activate issu`.
pub fn iosxe_issu_activation(text: &str) -> Result<IssuActivation, ParseError> {
    match parse::install_result(text) {
        Ok(_) => Ok(IssuActivation::Proceeding),
        Err(
            InstallError::Failed(line)
            | InstallError::ConfigNotSaved(line)
            | InstallError::FlashFull(line),
        ) => Ok(IssuActivation::Refused { reason: line }),
        Err(InstallError::Parse(e)) => {
            // The activation started and the standby took over before a result line.
            let started = text.lines().map(str::trim).any(|l| {
                l.ends_with(": Activating ISSU")
                    || l.ends_with(": Adding ISSU")
                    || l.starts_with("--- Starting Activate")
            });
            if started {
                Ok(IssuActivation::Proceeding)
            } else {
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/cisco/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn nxos_non_disruptive_impact_of_a_nexus_9508() {
        let i = nxos_impact(&fixture("salt_nxos_n95k_impact_non_disruptive.txt")).unwrap();
        let mods: Vec<u32> = i.modules.iter().map(|m| m.module).collect();
        assert_eq!(mods, [1, 22, 24, 26, 28, 29, 30]);
        assert!(i.modules.iter().all(|m| m.bootable && !m.disruptive));
        assert_eq!(i.modules[0].install_type, "none");
        assert_eq!(i.modules[0].reason, "");
        assert!(!i.disruptive());
        assert_eq!(i.reason(), None);
        assert_eq!(i.check(), IssuCheck::NonDisruptive);
    }

    #[test]
    fn nxos_disruptive_impacts_name_their_reason() {
        let i = nxos_impact(&fixture("ansible_nxos_install_os_impact_docstring.txt")).unwrap();
        assert!(i.disruptive());
        assert_eq!(
            i.reason().as_deref(),
            Some("module 8: Incompatible image for ISSU; module 21: Incompatible image for ISSU")
        );
        assert_eq!(i.modules[0].install_type, "reset");
        let i = nxos_impact(&fixture("salt_nxos_n93k_install_all_captured.txt")).unwrap();
        assert!(i.disruptive());
        assert!(
            i.reason()
                .is_some_and(|r| r.starts_with("module 1: default upgrade is not hitless"))
        );
    }

    #[test]
    fn nxos_failed_check_is_disruptive_with_its_return_code() {
        let text = "Installer will perform impact only check. Please wait.\r\nVerifying image bootflash:/nxos.10.2.5.M.bin for boot variable \"nxos\".\r\n[####################] 100% -- FAIL.\r\nReturn code 0x4045001D (Image does not exist).\r\n";
        let i = nxos_impact(text).unwrap();
        assert!(i.disruptive());
        assert_eq!(
            i.reason().as_deref(),
            Some(
                "Verifying image bootflash:/nxos.10.2.5.M.bin for boot variable \"nxos\". Return code 0x4045001D (Image does not exist)."
            )
        );
        let busy = "Installer will perform impact only check. Please wait.\n    Another install procedure may be in progress. (0x401E0007)\n";
        assert!(nxos_impact(busy).unwrap().disruptive());
        assert!(nxos_impact("% Invalid command at '^' marker.").is_err());
    }

    #[test]
    fn nxos_install_all_non_disruptive_went_ahead() {
        let text = fixture("salt_nxos_n95k_install_all_non_disruptive.txt");
        assert_eq!(nxos_non_disruptive_refused(&text), None);
        let status = parse::install_all_status(&text).unwrap();
        assert!(status.finished && !status.disruptive);
    }

    #[test]
    fn nxos_install_all_refused_when_the_table_is_disruptive() {
        // The compatibility check of a real disruptive impact, without the installer starting.
        let text = fixture("ansible_nxos_install_os_impact_docstring.txt");
        assert_eq!(
            nxos_non_disruptive_refused(&text).as_deref(),
            Some("module 8: Incompatible image for ISSU; module 21: Incompatible image for ISSU")
        );
    }

    #[test]
    fn iosxe_issu_state_of_a_box_that_cannot() {
        let s = iosxe_issu_state(&fixture(
            "iosxe_c9500_ShowIssuStateDetail_golden_output.txt",
        ))
        .unwrap();
        assert_eq!(s.checks.len(), 6);
        assert!(!s.in_progress);
        assert!(!s.ready());
        assert_eq!(
            s.reason().as_deref(),
            Some("Platform ISSU Support: No; Standby Online: No; SSO Mode: No; Install Boot: No")
        );
        assert!(matches!(s.check(), IssuCheck::Disruptive { .. }));
    }

    #[test]
    fn iosxe_issu_state_of_a_dual_supervisor_box() {
        let s =
            iosxe_issu_state(&fixture("genielibs_iosxe_show_issu_state_detail_ha.txt")).unwrap();
        // `Operational Mode  HA-STANDALONE` is not a yes/no check.
        assert_eq!(s.checks.len(), 6);
        assert!(s.ready());
        assert_eq!(s.check(), IssuCheck::DecidedByActivation);
        assert!(iosxe_issu_state("% Invalid input detected at '^' marker.").is_err());
    }

    #[test]
    fn iosxe_issu_activation_outcomes() {
        assert_eq!(
            iosxe_issu_activation(&fixture(
                "genielibs_c9400_install_add_activate_issu_commit.txt"
            )),
            Ok(IssuActivation::Proceeding)
        );
        assert!(matches!(
            iosxe_issu_activation(&fixture("genielibs_install_add_failed_config_not_saved.txt")),
            Ok(IssuActivation::Refused { reason }) if reason.contains("configuration has been modified")
        ));
        assert_eq!(
            iosxe_issu_activation(
                "install_activate: START Mon Jun 02 10:00:00 UTC 2025\r\ninstall_activate: Activating ISSU\r\n"
            ),
            Ok(IssuActivation::Proceeding)
        );
        assert!(iosxe_issu_activation("% Invalid input detected at '^' marker.").is_err());
    }
}
