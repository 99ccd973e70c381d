//! From a playbook and the inventory to waves of devices.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::Playbook;
use crate::inventory::{Device, Platform};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlannedDevice {
    pub device: String,
    pub platform: Platform,
    pub site: Option<String>,
    pub image: String,
    /// NX-OS devices that boot a kickstart and a system image: the playbook's
    /// `kickstart_image` for this device, used when the device runs a kickstart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kickstart: Option<String>,
    pub current_version: Option<String>,
    pub target_version: Option<String>,
    /// The last known version is later than the target: without `options.allow_downgrade`
    /// the device will fail with reason `downgrade`, untouched.
    #[serde(default)]
    pub downgrade: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlannedWave {
    /// 0 is the canary wave when there is one.
    pub index: usize,
    /// Waves are named one way everywhere: `canary`, `wave 1`, `wave 2`…
    pub name: String,
    /// The playbook's share that sized this wave (`25%`, `10`), when one did.
    #[serde(default)]
    pub share: Option<String>,
    pub devices: Vec<PlannedDevice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Skipped {
    pub device: String,
    pub reason: String,
    /// Skipped because it already runs the target version (nothing to do, nothing wrong).
    #[serde(default)]
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    pub waves: Vec<PlannedWave>,
    /// Selected devices that will not be touched, with the reason.
    pub skipped: Vec<Skipped>,
    /// Devices that will be upgraded.
    pub total: usize,
    /// The failure count that halts the rollout (one more than tolerated).
    pub halt_after_failures: usize,
}

impl Plan {
    pub(crate) fn devices(&self) -> impl Iterator<Item = &PlannedDevice> {
        self.waves.iter().flat_map(|w| w.devices.iter())
    }
}

/// Whether the playbook's targets select the device.
pub(crate) fn selected(pb: &Playbook, d: &Device) -> bool {
    let t = &pb.targets;
    let s = &d.spec;
    if t.exclude.iter().any(|n| n == s.name.as_str()) {
        return false;
    }
    t.all
        || t.names.iter().any(|n| n == s.name.as_str())
        || t.groups.iter().any(|g| s.groups.contains(g))
        || t.tags.iter().any(|g| s.tags.contains(g))
        || t.sites
            .iter()
            .any(|x| s.site.as_deref() == Some(x.as_str()))
        || t.platforms.contains(&s.platform)
}

/// Versions are the same when Cisco's order says so (`17.9.4` = `17.09.04`, `15.2(7)E8` =
/// `15.2(7)e8`), or, for what does not parse, when they match after normalising case and
/// spacing.
pub(super) fn same_version(a: &str, b: &str) -> bool {
    match crate::device::version::compare(a, b) {
        Some(order) => order == Ordering::Equal,
        None => {
            let norm = |s: &str| s.trim().to_ascii_lowercase().replace(' ', "");
            norm(a) == norm(b)
        }
    }
}

/// The name of the next wave after `waves`: `wave 1` is the first after the canary.
fn wave_number(waves: &[PlannedWave]) -> String {
    let numbered = waves.iter().filter(|w| w.name != "canary").count();
    format!("wave {}", numbered + 1)
}

/// Build the plan. `image_version` maps an image file name to the version it installs (from
/// the image store), or None when the store does not know it; `golden` are the golden images
/// an `image: golden` playbook takes each device's image from.
pub(crate) fn plan(
    pb: &Playbook,
    devices: &[Device],
    image_version: &dyn Fn(&str) -> Option<String>,
    golden: &[crate::golden::GoldenEntry],
) -> Plan {
    let mut chosen = Vec::new();
    let mut skipped = Vec::new();
    let mut sorted: Vec<&Device> = devices.iter().filter(|d| selected(pb, d)).collect();
    // Group by site so that a wave finishes sites rather than scattering across them.
    sorted.sort_by(|a, b| (&a.spec.site, a.name()).cmp(&(&b.spec.site, b.name())));
    for d in sorted {
        if let (Some(since), Some(link)) = (d.absent(), &d.source) {
            skipped.push(Skipped {
                device: d.name().to_string(),
                reason: format!(
                    "absent from its source of truth ({}) since {since}",
                    link.scope
                ),
                current: false,
            });
            continue;
        }
        let model = d.spec.model.as_deref().or(d.facts.model.as_deref());
        let image = if pb.image.value.golden {
            crate::golden::resolve(golden, &crate::golden::DeviceKey::of(d))
                .map(|e| e.image.clone())
        } else {
            pb.image_for(d.spec.platform, model)
        };
        let Some(image) = image else {
            skipped.push(Skipped {
                device: d.name().to_string(),
                reason: format!(
                    "{} platform {}{}",
                    if pb.image.value.golden {
                        "no golden image applies to"
                    } else {
                        "the playbook names no image for"
                    },
                    d.spec.platform,
                    model.map(|m| format!(" or model {m}")).unwrap_or_default()
                ),
                current: false,
            });
            continue;
        };
        let target_version = image_version(&image);
        if pb.options.skip_if_current
            && let (Some(cur), Some(target)) = (&d.facts.version, &target_version)
            && same_version(cur, target)
            && d.facts.members_run(target)
        {
            skipped.push(Skipped {
                device: d.name().to_string(),
                reason: format!("already runs {cur}"),
                current: true,
            });
            continue;
        }
        let downgrade = match (&d.facts.version, &target_version) {
            (Some(cur), Some(target)) => {
                crate::device::version::compare(cur, target) == Some(Ordering::Greater)
            }
            _ => false,
        };
        chosen.push(PlannedDevice {
            device: d.name().to_string(),
            platform: d.spec.platform,
            site: d.spec.site.clone(),
            kickstart: pb.kickstart_for(d.spec.platform, model),
            image,
            current_version: d.facts.version.clone(),
            target_version,
            downgrade,
        });
    }

    let total = chosen.len();
    let mut waves = Vec::new();
    let canary = pb.strategy.canary.min(total);
    let mut rest = chosen.into_iter();
    if canary > 0 {
        waves.push(PlannedWave {
            index: 0,
            name: "canary".into(),
            share: Some(canary.to_string()),
            devices: rest.by_ref().take(canary).collect(),
        });
    }
    let after_canary = total - canary;
    let mut placed = 0;
    let shares = pb.wave_shares();
    let n = shares.len();
    for (i, share) in shares.into_iter().enumerate() {
        let cumulative = if i + 1 == n {
            after_canary
        } else {
            share.of(after_canary)
        };
        let take = cumulative.saturating_sub(placed);
        if take == 0 {
            continue;
        }
        placed += take;
        waves.push(PlannedWave {
            index: waves.len(),
            name: wave_number(&waves),
            share: Some(share.to_string()),
            devices: rest.by_ref().take(take).collect(),
        });
    }
    let left: Vec<PlannedDevice> = rest.collect();
    if !left.is_empty() {
        waves.push(PlannedWave {
            index: waves.len(),
            name: wave_number(&waves),
            share: (n > 0).then(|| "the rest".to_string()),
            devices: left,
        });
    }
    let tolerated = pb.strategy.max_failures.of(total);
    Plan {
        waves,
        skipped,
        total,
        halt_after_failures: tolerated + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{DeviceInput, Facts};

    fn dev(i: usize, site: &str, version: &str) -> Device {
        let spec = DeviceInput {
            name: format!("sw-{i:02}"),
            host: format!("10.0.0.{i}"),
            platform: "ios".into(),
            site: Some(site.into()),
            groups: vec!["access".into()],
            ..Default::default()
        }
        .validate()
        .unwrap();
        Device {
            id: i as i64,
            spec,
            host_key: None,
            facts: Facts {
                version: Some(version.into()),
                ..Default::default()
            },
            created_at: String::new(),
            updated_at: String::new(),
            source: None,
        }
    }

    fn version(_: &str) -> Option<String> {
        Some("15.2(7)E8".into())
    }

    #[test]
    fn image_golden_takes_each_device_its_golden_image() {
        let pb = super::super::parse(&super::super::tests::FULL.replace(
            "image:\n  ios: c2960x-universalk9-mz.152-7.E8.bin\n",
            "image: golden\n",
        ))
        .unwrap();
        let devices = vec![dev(1, "berlin", "15.2(7)E3"), dev(2, "paris", "15.2(7)E3")];
        let entry = |site: Option<&str>, image: &str| crate::golden::GoldenEntry {
            scope: crate::golden::Scope {
                site: site.map(str::to_string),
                ..Default::default()
            },
            image: image.into(),
            version: None,
            updated_at: String::new(),
        };
        let golden = [entry(None, "global.bin"), entry(Some("paris"), "paris.bin")];
        let p = plan(&pb, &devices, &version, &golden);
        let images: Vec<(&str, &str)> = p
            .devices()
            .map(|d| (d.device.as_str(), d.image.as_str()))
            .collect();
        assert_eq!(images, [("sw-01", "global.bin"), ("sw-02", "paris.bin")]);
        // Without any: each device skipped with the reason (the engine refuses such a
        // playbook before planning).
        let p = plan(&pb, &devices, &version, &[]);
        assert_eq!(p.total, 0);
        assert!(
            p.skipped[0].reason.contains("no golden image applies"),
            "{:?}",
            p.skipped
        );
    }

    #[test]
    fn canary_then_cumulative_waves() {
        let pb = super::super::parse(super::super::tests::FULL).unwrap();
        let devices: Vec<Device> = (1..=21).map(|i| dev(i, "berlin", "15.2(7)E3")).collect();
        let p = plan(&pb, &devices, &version, &[]);
        let sizes: Vec<usize> = p.waves.iter().map(|w| w.devices.len()).collect();
        assert_eq!(
            sizes,
            vec![1, 5, 15],
            "canary 1, then 25% of 20 = 5, then the rest"
        );
        assert_eq!(p.total, 21);
        assert_eq!(p.halt_after_failures, 3, "max_failures 2");
        let mut names: Vec<&str> = p.devices().map(|d| d.device.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 21, "every device exactly once");
    }

    #[test]
    fn current_and_excluded_devices_are_skipped_with_reasons() {
        let mut pb = super::super::parse(super::super::tests::FULL).unwrap();
        pb.targets.exclude = vec!["sw-03".into()];
        let devices = vec![
            dev(1, "a", "15.2(7)E3"),
            dev(2, "a", "15.2(7)e8"),
            dev(3, "a", "15.2(7)E3"),
        ];
        let p = plan(&pb, &devices, &version, &[]);
        assert_eq!(p.total, 1);
        assert_eq!(
            p.skipped,
            vec![Skipped {
                device: "sw-02".into(),
                reason: "already runs 15.2(7)e8".into(),
                current: true,
            }]
        );
        assert!(p.devices().all(|d| d.device != "sw-03"));
    }

    #[test]
    fn versions_compare_as_cisco_numbers_them() {
        let pb = super::super::parse(super::super::tests::FULL).unwrap();
        let devices = vec![
            dev(1, "a", "15.2(7)E10"),
            dev(2, "a", "15.2(7)E3"),
            dev(3, "a", "15.2(7)E08"),
            dev(4, "a", "an engineering build"),
        ];
        let p = plan(&pb, &devices, &version, &[]);
        // `E08` is `E8`: already current.
        assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
        assert_eq!(p.skipped[0].device, "sw-03");
        let flagged: Vec<(&str, bool)> = p
            .devices()
            .map(|d| (d.device.as_str(), d.downgrade))
            .collect();
        assert_eq!(
            flagged,
            [("sw-01", true), ("sw-02", false), ("sw-04", false)],
            "15.2(7)E10 -> 15.2(7)E8 is a downgrade; an unknown version is not flagged"
        );
    }

    #[test]
    fn no_waves_means_one_wave_after_the_canary() {
        let mut pb = super::super::parse(super::super::tests::FULL).unwrap();
        pb.strategy.waves.clear();
        pb.strategy.canary = 2;
        let devices: Vec<Device> = (1..=5).map(|i| dev(i, "a", "x")).collect();
        let p = plan(&pb, &devices, &version, &[]);
        let sizes: Vec<usize> = p.waves.iter().map(|w| w.devices.len()).collect();
        assert_eq!(sizes, vec![2, 3]);
    }
}
