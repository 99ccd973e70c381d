//! How each platform spells a step: pure command builders, no I/O.

use super::parse::ShowVersion;
use crate::inventory::Platform;

/// How a platform spells each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Classic IOS and IOS-XE booted from a `.bin` (bundle mode): `boot system flash:X`.
    IosBundle,
    /// IOS-XE booted from `packages.conf`: `install add file flash:X`, `install activate
    /// auto-abort-timer N`, and `install commit` once the device passed its checks.
    IosXeInstall,
    /// NX-OS: `install all nxos bootflash:X`.
    Nxos,
}

impl Driver {
    /// The driver for a platform, refined by what the device runs: an IOS-XE box booted from a
    /// `.bin` is in bundle mode and upgrades like classic IOS.
    pub(crate) fn for_device(platform: Platform, running: Option<&ShowVersion>) -> Driver {
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
    pub(crate) fn filesystem(self) -> &'static str {
        match self {
            Driver::IosBundle | Driver::IosXeInstall => "flash:",
            Driver::Nxos => "bootflash:",
        }
    }

    pub(crate) fn path(self, file: &str) -> String {
        format!("{}{}", self.filesystem(), file)
    }

    pub(crate) fn md5_command(self, file: &str) -> String {
        match self {
            Driver::Nxos => format!("show file {} md5sum", self.path(file)),
            _ => format!("verify /md5 {}", self.path(file)),
        }
    }

    pub(crate) fn copy_command(self, url: &str, file: &str) -> String {
        format!("copy {url} {}", self.path(file))
    }

    pub(crate) fn delete_command(self, file: &str) -> String {
        match self {
            Driver::Nxos => format!("delete {} no-prompt", self.path(file)),
            _ => format!("delete /force {}", self.path(file)),
        }
    }

    /// Configuration lines that make `entries` the boot variable, in order. `one_line` is the
    /// Catalyst form (`boot system a;b`), where each `boot system` replaces the list.
    pub(crate) fn boot_lines(self, entries: &[String], one_line: bool) -> Vec<String> {
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

    /// [`Driver::boot_lines`] for every member of a classic IOS stack (`boot system switch all
    /// …`): without it the boot variable changes on the active member only.
    pub(crate) fn boot_lines_all_members(self, entries: &[String], one_line: bool) -> Vec<String> {
        self.boot_lines(entries, one_line)
            .into_iter()
            .map(|l| match l.strip_prefix("boot system ") {
                Some(rest) => format!("boot system switch all {rest}"),
                None => l,
            })
            .collect()
    }

    pub(crate) fn save_command(self) -> &'static str {
        match self {
            Driver::Nxos => "copy running-config startup-config",
            _ => "write memory",
        }
    }

    /// The command that installs and activates the image and reloads (install-mode drivers).
    /// `kickstart`: NX-OS with separate kickstart and system images (`file` is the system).
    pub(crate) fn install_command(self, file: &str, kickstart: Option<&str>) -> Option<String> {
        match (self, kickstart) {
            (Driver::IosBundle, _) => None,
            // Added, then activated under the auto-abort timer (see `Session::install`);
            // committed only once the post-checks pass.
            (Driver::IosXeInstall, _) => Some(format!("install add file {}", self.path(file))),
            (Driver::Nxos, None) => Some(format!("install all nxos {}", self.path(file))),
            (Driver::Nxos, Some(k)) => Some(format!(
                "install all kickstart {} system {}",
                self.path(k),
                self.path(file)
            )),
        }
    }
}

/// `flash:/x.bin`, `flash:x.bin` and `x.bin` name the same file.
pub fn file_name(path: &str) -> &str {
    let after_fs = path.rsplit_once(':').map(|(_, p)| p).unwrap_or(path);
    after_fs.rsplit('/').next().unwrap_or(after_fs)
}

pub(crate) fn same_file(a: &str, b: &str) -> bool {
    file_name(a) == file_name(b)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            ios.boot_lines_all_members(&two, true),
            [
                "no boot system",
                "boot system switch all flash:new.bin;flash:old.bin"
            ]
        );
        assert_eq!(ios.install_command("a.bin", None), None);
        assert_eq!(
            Driver::IosXeInstall
                .install_command("cat9k.bin", None)
                .as_deref(),
            Some("install add file flash:cat9k.bin")
        );
        assert_eq!(
            Driver::Nxos.install_command("nxos.bin", None).as_deref(),
            Some("install all nxos bootflash:nxos.bin")
        );
        // The order of the real Nexus 7000 transcript (salt tests/unit/modules/nxos/nxos_n7k.py).
        assert_eq!(
            Driver::Nxos
                .install_command(
                    "n7000-s2-dk9.8.4.3.bin",
                    Some("n7000-s2-kickstart.8.4.3.bin")
                )
                .as_deref(),
            Some(
                "install all kickstart bootflash:n7000-s2-kickstart.8.4.3.bin system bootflash:n7000-s2-dk9.8.4.3.bin"
            )
        );
        assert_eq!(
            Driver::Nxos.md5_command("nxos.bin"),
            "show file bootflash:nxos.bin md5sum"
        );
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
}
