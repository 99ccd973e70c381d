//! The upgrade's pure rules: which reason an operator reads for a driver error, whether an
//! image goes back to an older release, and whether the device now runs the plan's image.

use super::parse::{CopyError, Md5Error, ShowVersion};
use super::upgrade::{FailureReason, KickstartImage, Step, UpgradePlan};
use super::{DeviceError, DeviceFacts, Driver, file_name};

/// Map a driver error to the reason an operator reads.
pub(crate) fn reason_for(step: Step, e: &DeviceError) -> FailureReason {
    match e {
        DeviceError::AuthFailed { .. }
        | DeviceError::EnableFailed { .. }
        | DeviceError::PrivateKey { .. } => FailureReason::AuthFailed,
        DeviceError::HostKeyChanged { .. } => FailureReason::HostKeyChanged,
        DeviceError::Connect { .. } | DeviceError::ConnectTimeout { .. } => {
            FailureReason::Unreachable
        }
        DeviceError::CommandTimeout { .. } | DeviceError::AuthTimeout { .. } => {
            FailureReason::Timeout
        }
        DeviceError::ConnectionLost { .. } if step == Step::Copy => {
            FailureReason::ConnectionLostMidCopy
        }
        DeviceError::ConnectionLost { .. } | DeviceError::Ssh { .. } => {
            FailureReason::ConnectionLost
        }
        DeviceError::Copy { source, .. } => match source {
            CopyError::Timeout(_) => FailureReason::Timeout,
            CopyError::FlashFull(_) => FailureReason::FlashFull,
            CopyError::SourceNotFound(_) | CopyError::Refused(_) | CopyError::Unreachable(_) => {
                FailureReason::TransferFailed
            }
            _ => FailureReason::DeviceRejected,
        },
        DeviceError::Md5 {
            source: Md5Error::Mismatch { .. } | Md5Error::NotFound(_),
            ..
        } => FailureReason::CorruptImage,
        DeviceError::NeverCameBack { .. } => FailureReason::NeverCameBack,
        DeviceError::Cancelled { .. } => FailureReason::Cancelled,
        _ => FailureReason::DeviceRejected,
    }
}

/// The version the plan installs: the image's known version, else the one its file name
/// carries.
pub(crate) fn target_version(plan: &UpgradePlan) -> Option<String> {
    plan.expected_version
        .clone()
        .or_else(|| crate::images::guess_version(&plan.image))
}

/// Whether installing the plan's image on a device running `running` goes back to an older
/// release. `Err` says why that cannot be told (an unknown or engineering version, or two
/// trains that do not compare); the caller does not refuse then.
pub(crate) fn is_downgrade(plan: &UpgradePlan, running: &str) -> Result<bool, String> {
    let Some(target) = target_version(plan) else {
        return Err(format!(
            "the version of {} is not known, so whether it is older than {running} cannot be told",
            plan.image
        ));
    };
    match super::version::compare(running, &target) {
        Some(order) => Ok(order == std::cmp::Ordering::Greater),
        None => Err(format!(
            "{running} and {target} cannot be ordered (unknown format or different trains)"
        )),
    }
}

/// The kickstart to install with the image: the plan's, on an NX-OS device that boots a
/// kickstart and a system image. A device that boots one image takes none, whatever the plan
/// says. A device with a kickstart and a plan without one is refused before any change, unless
/// the image is a unified `nxos.*` image (the Nexus 3000 move from 6.0(2) to 7.0(3), which
/// `install all nxos` does).
pub(crate) fn kickstart_to_install<'a>(
    plan: &'a UpgradePlan,
    running: &ShowVersion,
    driver: Driver,
) -> Result<Option<&'a KickstartImage>, String> {
    let runs_kickstart = running
        .kickstart
        .as_deref()
        // ACI prints its one image as the kickstart too.
        .is_some_and(|k| {
            running
                .image
                .as_deref()
                .is_none_or(|i| file_name(i) != file_name(k))
        });
    if driver != Driver::Nxos || !runs_kickstart {
        return Ok(None);
    }
    match &plan.kickstart {
        Some(k) => Ok(Some(k)),
        None if plan.image.as_str().to_ascii_lowercase().starts_with("nxos") => Ok(None),
        None => Err(format!(
            "the device boots a kickstart ({}) and a system image: name its kickstart image under kickstart_image in the playbook, so that `install all kickstart K system {}` installs both",
            running.kickstart.as_deref().unwrap_or("?"),
            plan.image
        )),
    }
}

/// Whether the device now runs the plan's image.
pub(crate) fn post_check(plan: &UpgradePlan, facts: &DeviceFacts) -> Result<(), String> {
    let v = &facts.version;
    let image_ok = v
        .image
        .as_deref()
        .is_some_and(|i| file_name(i) == plan.image);
    // Install mode boots `packages.conf`: only the version tells.
    let expected = target_version(plan);
    let version_ok = expected
        .as_deref()
        .is_some_and(|want| v.version == want || v.ios_version.as_deref() == Some(want));
    // A device that runs a kickstart must run the plan's one too.
    if let (Some(running), Some(want)) = (v.kickstart.as_deref(), &plan.kickstart)
        && v.image
            .as_deref()
            .is_none_or(|i| file_name(i) != file_name(running))
        && file_name(running) != want.image.as_str()
    {
        return Err(format!(
            "the device runs kickstart {running}, not {}",
            want.image
        ));
    }
    if image_ok || version_ok {
        Ok(())
    } else {
        Err(format!(
            "the device runs {} from {:?}, not {}",
            v.version,
            v.image.as_deref().unwrap_or("an unknown image"),
            expected.as_deref().unwrap_or(&plan.image)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::parse::BootVariable;
    use crate::device::{CopySource, Timeouts, Transfer, UpgradeOptions};

    fn plan() -> UpgradePlan {
        UpgradePlan {
            image: "c2960x-universalk9-mz.152-7.E8.bin".into(),
            md5: crate::images::ImageMd5::parse(&"0".repeat(32)).unwrap(),
            size: 1,
            kickstart: None,
            source: CopySource::new(Transfer::Tftp, "10.0.0.5"),
            fallback: Vec::new(),
            previous_image: None,
            previous_version: None,
            committed: false,
            expected_version: None,
            options: UpgradeOptions::default(),
            timeouts: Timeouts::default(),
        }
    }

    fn facts(version: &str, image: &str) -> DeviceFacts {
        DeviceFacts {
            version: ShowVersion {
                version: version.into(),
                image: Some(image.into()),
                ..Default::default()
            },
            boot: BootVariable::default(),
            members: Vec::new(),
            stack: Vec::new(),
            serials: Vec::new(),
        }
    }

    #[test]
    fn post_check_compares_the_running_image_or_version() {
        let p = plan();
        assert!(
            post_check(
                &p,
                &facts("15.2(7)E8", "flash:/c2960x-universalk9-mz.152-7.E8.bin")
            )
            .is_ok()
        );
        let err = post_check(
            &p,
            &facts("15.2(7)E3", "flash:c2960x-universalk9-mz.152-7.E3.bin"),
        )
        .unwrap_err();
        assert!(err.contains("15.2(7)E3"), "{err}");
        let mut p = plan();
        p.expected_version = Some("17.09.04a".into());
        assert!(post_check(&p, &facts("17.09.04a", "bootflash:packages.conf")).is_ok());
        // No version in the plan: the one in the image name is expected.
        let mut p = plan();
        p.image = "cat9k_iosxe.17.09.04a.SPA.bin".into();
        assert!(post_check(&p, &facts("17.09.04a", "flash:packages.conf")).is_ok());
        assert!(post_check(&p, &facts("17.06.05", "flash:packages.conf")).is_err());
    }

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/cisco/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn nexus_plan(image: &str, kickstart: Option<&str>) -> UpgradePlan {
        let mut p = plan();
        p.image = image.into();
        p.kickstart = kickstart.map(|k| KickstartImage {
            image: k.into(),
            md5: crate::images::ImageMd5::parse(&"1".repeat(32)).unwrap(),
            size: 1,
        });
        p
    }

    #[test]
    fn a_kickstart_is_installed_only_where_the_device_runs_one() {
        let show = |f: &str| crate::device::parse::show_version(&fixture(f)).unwrap();
        let n5k = show("ntc_cisco_nxos_show_version2.raw");
        let n7k = show("nxos_show_platform_ShowVersion_n7k_c7009.txt");
        let n9k = show("ntc_cisco_nxos_show_version4.raw");
        let aci = show("ntc_cisco_nxos_show_version_aci.raw");
        let with = nexus_plan(
            "n5000-uk9.7.3.8.N1.1.bin",
            Some("n5000-uk9-kickstart.7.3.8.N1.1.bin"),
        );
        let chosen = |p: &UpgradePlan, v: &ShowVersion| {
            kickstart_to_install(p, v, Driver::Nxos).map(|k| k.map(|k| k.image.to_string()))
        };
        let k = Some("n5000-uk9-kickstart.7.3.8.N1.1.bin".to_string());
        assert_eq!(chosen(&with, &n5k), Ok(k.clone()));
        assert_eq!(chosen(&with, &n7k), Ok(k));
        // One image: the kickstart is not used; ACI prints its one image as the kickstart.
        assert_eq!(chosen(&with, &n9k), Ok(None));
        assert_eq!(chosen(&with, &aci), Ok(None));
        // A device with a kickstart and none in the plan is refused before any change...
        let without = nexus_plan("n5000-uk9.7.3.8.N1.1.bin", None);
        let err = chosen(&without, &n5k).unwrap_err();
        assert!(err.contains("kickstart_image"), "{err}");
        // ...unless the image is a unified one (Nexus 3000 from 6.0(2) to 7.0(3)).
        let unified = nexus_plan("nxos.7.0.3.I7.9.bin", None);
        assert_eq!(
            chosen(&unified, &show("nxos_ShowVersion_golden_output.txt")),
            Ok(None)
        );
        assert_eq!(
            kickstart_to_install(&with, &n5k, Driver::IosBundle).map(|k| k.is_some()),
            Ok(false)
        );
    }

    #[test]
    fn post_check_wants_the_new_kickstart_too() {
        let p = nexus_plan(
            "n7000-s2-dk9.8.4.3.bin",
            Some("n7000-s2-kickstart.8.4.3.bin"),
        );
        let mut f = facts("8.4(3)", "bootflash:///n7000-s2-dk9.8.4.3.bin");
        f.version.kickstart = Some("bootflash:///n7000-s2-kickstart.8.4.3.bin".into());
        assert!(post_check(&p, &f).is_ok());
        f.version.kickstart = Some("bootflash:///n7000-s2-kickstart.8.2.2.bin".into());
        let err = post_check(&p, &f).unwrap_err();
        assert!(err.contains("kickstart"), "{err}");
        // A device without a kickstart is checked on its image alone.
        f.version.kickstart = None;
        assert!(post_check(&p, &f).is_ok());
    }

    #[test]
    fn reasons_for_errors() {
        let d = || "sw1".to_string();
        assert_eq!(
            reason_for(
                Step::Copy,
                &DeviceError::ConnectionLost {
                    device: d(),
                    command: None
                }
            ),
            FailureReason::ConnectionLostMidCopy
        );
        assert_eq!(
            reason_for(
                Step::Save,
                &DeviceError::ConnectionLost {
                    device: d(),
                    command: None
                }
            ),
            FailureReason::ConnectionLost
        );
        assert_eq!(
            reason_for(
                Step::Copy,
                &DeviceError::Copy {
                    device: d(),
                    source: CopyError::Timeout("x".into())
                }
            ),
            FailureReason::Timeout
        );
        assert_eq!(
            reason_for(
                Step::Copy,
                &DeviceError::Copy {
                    device: d(),
                    source: CopyError::FlashFull("x".into())
                }
            ),
            FailureReason::FlashFull
        );
        let mismatch = Md5Error::Mismatch {
            file: "f".into(),
            computed: "a".into(),
            expected: "b".into(),
        };
        assert_eq!(
            reason_for(
                Step::VerifyMd5,
                &DeviceError::Md5 {
                    device: d(),
                    source: mismatch
                }
            ),
            FailureReason::CorruptImage
        );
        assert_eq!(
            reason_for(
                Step::Connect,
                &DeviceError::AuthFailed {
                    device: d(),
                    user: "u".into(),
                    detail: "x".into()
                }
            ),
            FailureReason::AuthFailed
        );
        assert_eq!(
            reason_for(
                Step::WaitBack,
                &DeviceError::NeverCameBack {
                    device: d(),
                    secs: 1,
                    detail: "x".into()
                }
            ),
            FailureReason::NeverCameBack
        );
    }
}
