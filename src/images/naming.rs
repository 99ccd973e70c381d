//! What a Cisco image file name says about the image.

use std::sync::LazyLock;

use regex::Regex;

use super::ImageError;
use crate::inventory::Platform;

/// A file name a device can copy to flash: 1 to 200 letters, digits and `. - _ +`, not
/// starting with a dot (no directories, no hidden names). Stated once: [`validate_file_name`]
/// matches it, and the OpenAPI document publishes it.
pub const FILE_NAME_PATTERN: &str = r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,199}$";

static FILE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(FILE_NAME_PATTERN).expect("static regex"));

pub(crate) fn validate_file_name(name: &str) -> Result<(), ImageError> {
    if FILE_NAME.is_match(name) {
        return Ok(());
    }
    let reason = if name.is_empty() || name.len() > 200 {
        "must be 1 to 200 characters"
    } else if name.starts_with('.') {
        "must not start with a dot"
    } else {
        "may contain only letters, digits and . - _ +"
    };
    Err(ImageError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

// c2960x-universalk9-mz.152-7.E8.bin, c2900-universalk9-mz.SPA.157-3.M8.bin, c3560-ipbase-mz.122-55.SE12.bin
static IOS_CLASSIC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\.(\d{2})(\d)-(\d+)\.([A-Z]{1,4}\d*[a-z]?)\.bin$").expect("static regex")
});
// cat9k_iosxe.17.09.04a.SPA.bin, isr4400-universalk9.16.09.05.SPA.bin
static IOS_XE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\.(\d{2}\.\d{2}\.\d{2}[a-z]?)\.(?:SPA\.)?(?:bin|pkg)$").expect("static regex")
});
// nxos.9.3.8.bin, nxos64-cs.10.2.5.M.bin, n9000-dk9.7.0.3.I7.9.bin; with kickstart and system
// images: n7000-s2-dk9.8.4.3.bin and n7000-s2-kickstart.8.4.3.bin, n5000-uk9.7.1.4.N1.1.bin and
// n5000-uk9-kickstart.7.1.4.N1.1.bin.
static NX_OS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:nxos|n\d{4}-(?:s\d-)?(?:dk9|uk9|kickstart))[\w-]*\.(\d+\.\d+)\.(\d+[a-z]?)(?:\.([A-Z]))?(?:\.([A-Z]\d+\.\d+))?\.bin$")
        .expect("static regex")
});

/// The version string the device will print in `show version`, guessed from the file name.
pub(crate) fn guess_version(file_name: &str) -> Option<String> {
    if let Some(c) = NX_OS.captures(file_name) {
        let mut v = format!("{}({})", &c[1], &c[2]);
        if let Some(extra) = c.get(4) {
            v.push_str(extra.as_str());
        } else if let Some(train) = c.get(3) {
            v.push_str(train.as_str());
        }
        return Some(v);
    }
    if let Some(c) = IOS_XE.captures(file_name) {
        return Some(c[1].to_string());
    }
    if let Some(c) = IOS_CLASSIC.captures(file_name) {
        return Some(format!("{}.{}({}){}", &c[1], &c[2], &c[3], &c[4]));
    }
    None
}

pub(crate) fn guess_platform(file_name: &str) -> Option<Platform> {
    let lower = file_name.to_ascii_lowercase();
    if NX_OS.is_match(file_name) || lower.starts_with("nxos") {
        Some(Platform::Nxos)
    } else if IOS_XE.is_match(file_name) || lower.contains("iosxe") {
        Some(Platform::Iosxe)
    } else if IOS_CLASSIC.is_match(file_name) || lower.contains("-mz.") {
        Some(Platform::Ios)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_real_file_names() {
        let cases = [
            (
                "c2960x-universalk9-mz.152-7.E8.bin",
                "15.2(7)E8",
                Platform::Ios,
            ),
            (
                "c2900-universalk9-mz.SPA.157-3.M8.bin",
                "15.7(3)M8",
                Platform::Ios,
            ),
            (
                "c3560-ipbase-mz.122-55.SE12.bin",
                "12.2(55)SE12",
                Platform::Ios,
            ),
            (
                "c1841-adventerprisek9-mz.124-24.T.bin",
                "12.4(24)T",
                Platform::Ios,
            ),
            (
                "cat9k_iosxe.17.09.04a.SPA.bin",
                "17.09.04a",
                Platform::Iosxe,
            ),
            (
                "isr4400-universalk9.16.09.05.SPA.bin",
                "16.09.05",
                Platform::Iosxe,
            ),
            (
                "asr1000rpx86-universalk9.17.06.04.SPA.bin",
                "17.06.04",
                Platform::Iosxe,
            ),
            ("nxos.9.3.8.bin", "9.3(8)", Platform::Nxos),
            ("nxos64-cs.10.2.5.M.bin", "10.2(5)M", Platform::Nxos),
            ("n9000-dk9.7.0.3.I7.9.bin", "7.0(3)I7.9", Platform::Nxos),
            ("n7000-s2-dk9.8.4.3.bin", "8.4(3)", Platform::Nxos),
            ("n7000-s2-kickstart.8.4.3.bin", "8.4(3)", Platform::Nxos),
            ("n7700-s2-dk9.8.4.3.bin", "8.4(3)", Platform::Nxos),
            ("n5000-uk9.7.1.4.N1.1.bin", "7.1(4)N1.1", Platform::Nxos),
            (
                "n5000-uk9-kickstart.7.1.4.N1.1.bin",
                "7.1(4)N1.1",
                Platform::Nxos,
            ),
        ];
        for (name, version, platform) in cases {
            assert_eq!(guess_version(name).as_deref(), Some(version), "{name}");
            assert_eq!(guess_platform(name), Some(platform), "{name}");
        }
        assert_eq!(guess_version("firmware.bin"), None);
    }

    #[test]
    fn file_names_are_checked() {
        assert!(validate_file_name("c2960x-universalk9-mz.152-7.E8.bin").is_ok());
        for bad in ["", ".hidden", "a/b.bin", "a b.bin", "..", "x\0"] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
