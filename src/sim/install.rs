//! IOS-XE install mode on flash: an image `X.bin` is expanded into `.pkg` files and a package
//! set `X.conf`; `packages.conf` names the active set and is what the boot loader reads.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

/// Packages a Catalyst 9000 image expands into, with their share of the image size (percent).
const PACKAGES: &[(&str, &str, u64)] = &[
    ("rp_boot", "rpboot", 5),
    ("rp_base", "rpbase", 40),
    ("rp_webui", "webui", 3),
    ("srdriver", "srdriver", 2),
    ("cc_srdriver", "cc_srdriver", 1),
    ("cc", "sipbase", 10),
    ("cc_spa", "sipspa", 4),
    ("fp", "espbase", 25),
    ("guestshell", "guestshell", 5),
    ("rp_wlc", "wlc", 5),
];

/// `cat9k_iosxe.17.09.04a.SPA.bin` -> `cat9k`.
fn family(bin: &str) -> &str {
    bin.split(['_', '.']).next().unwrap_or(bin)
}

fn pkg_name(bin: &str, pkg: &str, version: &str) -> String {
    format!("{}-{pkg}.{version}.SPA.pkg", family(bin))
}

/// The package set file of an image: `X.bin` -> `X.conf`.
pub(super) fn set_name(bin: &str) -> String {
    match bin.strip_suffix(".bin") {
        Some(stem) => format!("{stem}.conf"),
        None => format!("{bin}.conf"),
    }
}

/// Create the package files (sparse, sizes adding up to the image's) and the package set.
pub(super) fn expand(flash: &Path, bin: &str, version: &str, size: u64) -> io::Result<Vec<String>> {
    let mut made = Vec::new();
    let mut left = size;
    for (i, (_, pkg, share)) in PACKAGES.iter().enumerate() {
        let len = if i + 1 == PACKAGES.len() {
            left
        } else {
            (size * share / 100).min(left)
        };
        left -= len;
        let name = pkg_name(bin, pkg, version);
        let f = std::fs::File::create(flash.join(&name))?;
        f.set_len(len)?;
        made.push(name);
    }
    std::fs::write(flash.join(set_name(bin)), conf_text(bin, version))?;
    Ok(made)
}

fn conf_text(bin: &str, version: &str) -> String {
    let mut t = String::from("#! /usr/binos/bin/packages_conf.sh\n#\n");
    t.push_str("# pkginfo: Name: rp_super\n");
    t.push_str(&format!("# pkginfo: PackageName: {}\n", family(bin)));
    t.push_str(&format!("# pkginfo: Build: {version}\n#\n"));
    for (role, pkg, _) in PACKAGES {
        let slot = if role.starts_with("cc") {
            "cc"
        } else if *role == "fp" {
            "fp"
        } else {
            "rp"
        };
        t.push_str(&format!(
            "{slot} 0 0 {role} {}\n",
            pkg_name(bin, pkg, version)
        ));
    }
    t
}

/// Make `bin`'s package set the one the boot loader reads.
pub(super) fn write_packages_conf(flash: &Path, bin: &str, version: &str) -> io::Result<()> {
    std::fs::write(flash.join("packages.conf"), conf_text(bin, version))
}

/// The version a package set boots, if every package it names is present and intact.
pub(super) fn conf_version(flash: &Path, conf: &str, corrupt: &BTreeSet<String>) -> Option<String> {
    let text = std::fs::read_to_string(flash.join(conf)).ok()?;
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("# pkginfo: Build: "))?
        .trim()
        .to_string();
    for pkg in referenced(&text) {
        let ok = std::fs::metadata(flash.join(&pkg)).is_ok_and(|m| m.len() > 0);
        if !ok || corrupt.contains(&pkg) {
            return None;
        }
    }
    Some(version)
}

fn referenced(conf_text: &str) -> Vec<String> {
    conf_text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().last())
        .filter(|f| f.ends_with(".pkg"))
        .map(String::from)
        .collect()
}

/// Files `install remove inactive` deletes: packages and package sets not in use by
/// `packages.conf`, and image bundles already expanded or superseded.
pub(super) fn inactive_files(flash: &Path, files: &[String]) -> Vec<String> {
    let active = std::fs::read_to_string(flash.join("packages.conf")).unwrap_or_default();
    let in_use: BTreeSet<String> = referenced(&active).into_iter().collect();
    let active_build = active
        .lines()
        .find_map(|l| l.strip_prefix("# pkginfo: Build: "))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    files
        .iter()
        .filter(|f| {
            if f.ends_with(".pkg") {
                !in_use.contains(*f)
            } else if *f == "packages.conf" {
                false
            } else if f.ends_with(".conf") {
                let text = std::fs::read_to_string(flash.join(f)).unwrap_or_default();
                text.contains("# pkginfo: Build: ")
                    && !text.contains(&format!("# pkginfo: Build: {active_build}\n"))
            } else {
                f.ends_with(".bin")
                    && crate::images::guess_platform(f) == Some(crate::inventory::Platform::Iosxe)
            }
        })
        .cloned()
        .collect()
}

/// `17.09.04a` -> `17.9.4a`, as the second line of an IOS-XE `show version` prints it.
pub(super) fn plain_version(v: &str) -> String {
    if v.contains('(') {
        return v.to_string();
    }
    v.split('.')
        .map(|part| {
            let trimmed = part.trim_start_matches('0');
            if trimmed.is_empty() || !trimmed.starts_with(|c: char| c.is_ascii_digit()) {
                if part.starts_with('0') {
                    format!("0{trimmed}")
                } else {
                    trimmed.to_string()
                }
            } else {
                trimmed.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The release train name IOS-XE prints in brackets.
pub(super) fn train(v: &str) -> &'static str {
    let mut parts = v.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    });
    match (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) {
        (16, 1..=3) => "Denali",
        (16, 4..=6) => "Everest",
        (16, 7..=9) => "Fuji",
        (16, _) => "Gibraltar",
        (17, 1..=3) => "Amsterdam",
        (17, 4..=6) => "Bengaluru",
        (17, 7..=9) => "Cupertino",
        (17, 10..=12) => "Dublin",
        _ => "IOSXE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_ios_xe_prints_them() {
        assert_eq!(plain_version("17.09.04a"), "17.9.4a");
        assert_eq!(plain_version("17.06.05"), "17.6.5");
        assert_eq!(plain_version("16.12.04"), "16.12.4");
        assert_eq!(plain_version("15.2(7)E8"), "15.2(7)E8");
        assert_eq!(train("17.09.04a"), "Cupertino");
        assert_eq!(train("17.06.05"), "Bengaluru");
    }

    #[test]
    fn expand_boot_and_clean() {
        let dir = tempfile::tempdir().unwrap();
        let old = "cat9k_iosxe.17.06.05.SPA.bin";
        let new = "cat9k_iosxe.17.09.04a.SPA.bin";
        let pkgs = expand(dir.path(), old, "17.06.05", 1000).unwrap();
        let total: u64 = pkgs
            .iter()
            .map(|p| std::fs::metadata(dir.path().join(p)).unwrap().len())
            .sum();
        assert_eq!(total, 1000);
        write_packages_conf(dir.path(), old, "17.06.05").unwrap();
        let none = BTreeSet::new();
        assert_eq!(
            conf_version(dir.path(), "packages.conf", &none).as_deref(),
            Some("17.06.05")
        );
        std::fs::write(dir.path().join(new), b"x").unwrap();
        let pkgs2 = expand(dir.path(), new, "17.09.04a", 2000).unwrap();
        write_packages_conf(dir.path(), new, "17.09.04a").unwrap();
        let corrupt: BTreeSet<String> = [pkgs2[1].clone()].into();
        assert_eq!(conf_version(dir.path(), "packages.conf", &corrupt), None);
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let gone = inactive_files(dir.path(), &files);
        assert!(gone.contains(&new.to_string()));
        assert!(gone.contains(&set_name(old)));
        assert!(gone.iter().all(|f| !pkgs2.contains(f)));
        assert!(pkgs.iter().all(|p| gone.contains(p)));
        assert!(!gone.contains(&"packages.conf".to_string()));
        assert!(!gone.contains(&set_name(new)));
    }
}
