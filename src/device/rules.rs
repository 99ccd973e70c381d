//! The upgrade's pure rules: which reason an operator reads for a driver error, whether an
//! image goes back to an older release, and whether the device now runs the plan's image.

use super::parse::{CopyError, Md5Error};
use super::upgrade::{FailureReason, Step, UpgradePlan};
use super::{DeviceError, DeviceFacts, file_name};

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
    use crate::device::parse::{BootVariable, ShowVersion};
    use crate::device::{CopySource, Timeouts, Transfer, UpgradeOptions};

    fn plan() -> UpgradePlan {
        UpgradePlan {
            image: "c2960x-universalk9-mz.152-7.E8.bin".into(),
            md5: crate::images::ImageMd5::parse(&"0".repeat(32)).unwrap(),
            size: 1,
            source: CopySource {
                transfer: Transfer::Tftp,
                server: "10.0.0.5".into(),
                port: None,
                directory: String::new(),
            },
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
