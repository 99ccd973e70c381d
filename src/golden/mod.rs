//! Golden images and compliance, pure: which golden entry applies to a device (`resolve`) and
//! how the device stands against it (`status`). The store keeps the entries, the API and
//! `image: golden` ask these functions; nothing here touches a socket, the database or the
//! clock (`now` comes in).
//!
//! Precedence (docs/golden.md): an entry applies when every field it names matches the device;
//! among those, the most specific wins, compared field by field in this order: model, then
//! platform, then site, then role. So `model` beats `platform` whatever else is set, a `site`
//! entry beats the global one, and `site+model` > `model` > `site+platform` > `platform` >
//! `site` > `role` > global. Two role entries of the same rank both matching (a device in two
//! groups) are decided by the role's name, the smaller first.

pub mod refresh;

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::inventory::Platform;

/// Facts older than this make a device's status `unknown`.
pub const DEFAULT_MAX_FACTS_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// Where a golden entry applies; every field given must match the device. All empty is the
/// global entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The model as the inventory gives it, else as `show version` reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// A group or a tag of the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl Scope {
    /// The rank of an entry: greater is more specific (model, platform, site, role).
    fn rank(&self) -> (bool, bool, bool, bool) {
        (
            self.model.is_some(),
            self.platform.is_some(),
            self.site.is_some(),
            self.role.is_some(),
        )
    }

    fn applies_to(&self, d: &DeviceKey<'_>) -> bool {
        self.platform.is_none_or(|p| p == d.platform)
            && self.model.as_deref().is_none_or(|m| d.model == Some(m))
            && self.site.as_deref().is_none_or(|s| d.site == Some(s))
            && self.role.as_deref().is_none_or(|r| d.roles.contains(&r))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(m) = &self.model {
            parts.push(format!("model={m}"));
        }
        if let Some(p) = self.platform {
            parts.push(format!("platform={p}"));
        }
        if let Some(s) = &self.site {
            parts.push(format!("site={s}"));
        }
        if let Some(r) = &self.role {
            parts.push(format!("role={r}"));
        }
        if parts.is_empty() {
            f.write_str("global")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// A golden image: the image (a file name of the image store) devices in `scope` should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenEntry {
    pub scope: Scope,
    pub image: String,
    /// The version the image's name carries, when it says one.
    pub version: Option<String>,
    pub updated_at: String,
}

/// What of a device decides which golden entry applies.
#[derive(Debug, Clone)]
pub struct DeviceKey<'a> {
    pub platform: Platform,
    pub model: Option<&'a str>,
    pub site: Option<&'a str>,
    /// Its groups and tags.
    pub roles: Vec<&'a str>,
}

impl<'a> DeviceKey<'a> {
    pub(crate) fn of(d: &'a crate::inventory::Device) -> Self {
        DeviceKey {
            platform: d.spec.platform,
            model: d.spec.model.as_deref().or(d.facts.model.as_deref()),
            site: d.spec.site.as_deref(),
            roles: d
                .spec
                .groups
                .iter()
                .chain(d.spec.tags.iter())
                .map(String::as_str)
                .collect(),
        }
    }
}

fn more_specific(a: &Scope, b: &Scope) -> Ordering {
    a.rank()
        .cmp(&b.rank())
        // Same rank: the smaller role name wins, so it orders as the greater.
        .then_with(|| b.role.cmp(&a.role))
}

/// The golden entry that applies to the device: the most specific of those that match.
pub fn resolve<'e>(entries: &'e [GoldenEntry], device: &DeviceKey<'_>) -> Option<&'e GoldenEntry> {
    entries
        .iter()
        .filter(|e| e.scope.applies_to(device))
        .max_by(|a, b| more_specific(&a.scope, &b.scope))
}

/// A device's standing against its golden image.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Runs the golden image's version.
    Compliant,
    /// Runs an earlier version.
    Outdated,
    /// Runs a later version.
    Ahead,
    /// No golden image applies, its version is not known, the facts are missing or older than
    /// the maximum age, or the versions cannot be ordered.
    Unknown,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Compliant,
        Status::Outdated,
        Status::Ahead,
        Status::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Compliant => "compliant",
            Status::Outdated => "outdated",
            Status::Ahead => "ahead",
            Status::Unknown => "unknown",
        }
    }
}

/// Why a status is what it is, in words for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub reason: String,
}

/// The device's status: its running version (`running`, read at `last_seen`) against the
/// golden version. Facts older than `max_age` at `now` are not trusted.
pub fn status(
    running: Option<&str>,
    last_seen: Option<&str>,
    golden_version: Option<&str>,
    golden: bool,
    now: jiff::Timestamp,
    max_age: std::time::Duration,
) -> Verdict {
    let unknown = |reason: String| Verdict {
        status: Status::Unknown,
        reason,
    };
    if !golden {
        return unknown("no golden image applies".into());
    }
    let Some(target) = golden_version else {
        return unknown("the golden image's version is not known from its name".into());
    };
    let (Some(running), Some(seen)) = (running, last_seen) else {
        return unknown("no facts read yet".into());
    };
    let Ok(seen) = seen.parse::<jiff::Timestamp>() else {
        return unknown("the facts' time cannot be read".into());
    };
    let age = now.duration_since(seen);
    // A clock that went back makes the facts recent, not stale.
    if !age.is_negative() && age.unsigned_abs() > max_age {
        return unknown(format!(
            "facts older than {}s (read {seen})",
            max_age.as_secs()
        ));
    }
    let order = crate::device::version::compare(running, target).or_else(|| {
        let norm = |s: &str| s.trim().to_ascii_lowercase().replace(' ', "");
        (norm(running) == norm(target)).then_some(Ordering::Equal)
    });
    match order {
        Some(Ordering::Equal) => Verdict {
            status: Status::Compliant,
            reason: format!("runs {running}"),
        },
        Some(Ordering::Less) => Verdict {
            status: Status::Outdated,
            reason: format!("runs {running}, golden {target}"),
        },
        Some(Ordering::Greater) => Verdict {
            status: Status::Ahead,
            reason: format!("runs {running}, golden {target}"),
        },
        None => unknown(format!("{running} and {target} cannot be ordered")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(scope: &str, image: &str) -> GoldenEntry {
        let mut s = Scope::default();
        for part in scope.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap();
            match k {
                "platform" => s.platform = Platform::parse(v),
                "model" => s.model = Some(v.into()),
                "site" => s.site = Some(v.into()),
                "role" => s.role = Some(v.into()),
                _ => panic!("{k}"),
            }
        }
        GoldenEntry {
            scope: s,
            image: image.into(),
            version: None,
            updated_at: String::new(),
        }
    }

    #[test]
    fn the_most_specific_entry_wins() {
        let all = [
            entry("", "global"),
            entry("role=core", "role-core"),
            entry("role=access", "role-access"),
            entry("site=fra", "site"),
            entry("platform=ios", "platform"),
            entry("platform=ios,site=fra", "site+platform"),
            entry("model=WS-C2960X", "model"),
            entry("model=WS-C2960X,site=fra", "site+model"),
            entry("platform=nxos", "nxos"),
        ];
        let key = |platform, model, site, roles: &'static [&'static str]| DeviceKey {
            platform,
            model,
            site,
            roles: roles.to_vec(),
        };
        #[rustfmt::skip]
        let cases: &[(DeviceKey, &[usize], Option<&str>)] = &[
            // (device, entries present, winner)
            (key(Platform::Ios, Some("WS-C2960X"), Some("fra"), &["core"]), &[0, 1, 3, 4, 5, 6, 7], Some("site+model")),
            (key(Platform::Ios, Some("WS-C2960X"), Some("fra"), &["core"]), &[0, 1, 3, 4, 5, 6], Some("model")),
            (key(Platform::Ios, Some("WS-C2960X"), Some("fra"), &["core"]), &[0, 1, 3, 4, 5], Some("site+platform")),
            (key(Platform::Ios, Some("WS-C2960X"), Some("fra"), &["core"]), &[0, 1, 3, 4], Some("platform")),
            (key(Platform::Ios, Some("WS-C2960X"), Some("fra"), &["core"]), &[0, 1, 3], Some("site")),
            (key(Platform::Ios, Some("WS-C2960X"), Some("fra"), &["core"]), &[0, 1], Some("role-core")),
            (key(Platform::Ios, Some("WS-C2960X"), Some("fra"), &["core"]), &[0], Some("global")),
            (key(Platform::Ios, Some("WS-C2960X"), Some("fra"), &["core"]), &[], None),
            // Model over platform, site over global.
            (key(Platform::Ios, Some("WS-C2960X"), None, &[]), &[4, 6], Some("model")),
            (key(Platform::Ios, None, Some("fra"), &[]), &[0, 3], Some("site")),
            // What does not match is left out.
            (key(Platform::Ios, Some("C9300"), Some("ber"), &[]), &[3, 5, 6, 7, 8], None),
            (key(Platform::Nxos, None, Some("ber"), &[]), &[0, 4, 8], Some("nxos")),
            // Two roles of one rank: the smaller name.
            (key(Platform::Ios, None, None, &["core", "access"]), &[1, 2], Some("role-access")),
            (key(Platform::Ios, None, None, &["core", "access"]), &[2, 1], Some("role-access")),
        ];
        for (device, present, want) in cases {
            let entries: Vec<GoldenEntry> = present.iter().map(|&i| all[i].clone()).collect();
            let got = resolve(&entries, device).map(|e| e.image.as_str());
            assert_eq!(got, *want, "{device:?} with {present:?}");
        }
    }

    #[test]
    fn statuses() {
        let now: jiff::Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let fresh = Some("2026-12-05T11:00:00Z");
        let old = Some("2026-11-20T11:00:00Z");
        let day = std::time::Duration::from_secs(86_400);
        #[rustfmt::skip]
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, bool, Status);
        let cases: &[Case] = &[
            (
                Some("15.2(7)E8"),
                fresh,
                Some("15.2(7)E8"),
                true,
                Status::Compliant,
            ),
            (
                Some("15.2(7)e8"),
                fresh,
                Some("15.2(7)E8"),
                true,
                Status::Compliant,
            ),
            (
                Some("17.09.04"),
                fresh,
                Some("17.9.4"),
                true,
                Status::Compliant,
            ),
            (
                Some("15.2(4)E10"),
                fresh,
                Some("15.2(7)E8"),
                true,
                Status::Outdated,
            ),
            (Some("17.12.1"), fresh, Some("17.9.4"), true, Status::Ahead),
            (
                Some("15.2(7)E8"),
                fresh,
                Some("15.2(7)E8"),
                false,
                Status::Unknown,
            ),
            (Some("15.2(7)E8"), fresh, None, true, Status::Unknown),
            (None, fresh, Some("15.2(7)E8"), true, Status::Unknown),
            (
                Some("15.2(7)E8"),
                None,
                Some("15.2(7)E8"),
                true,
                Status::Unknown,
            ),
            (
                Some("15.2(7)E8"),
                old,
                Some("15.2(7)E8"),
                true,
                Status::Unknown,
            ),
            (
                Some("15.2(7)E8"),
                Some("not a time"),
                Some("15.2(7)E8"),
                true,
                Status::Unknown,
            ),
            (
                Some("15.2(7)E8"),
                Some("2026-12-06T11:00:00Z"),
                Some("15.2(7)E8"),
                true,
                Status::Compliant,
            ),
        ];
        for &(running, seen, target, golden, want) in cases {
            let got = status(running, seen, target, golden, now, 7 * day);
            assert_eq!(
                got.status, want,
                "{running:?} {seen:?} {target:?}: {}",
                got.reason
            );
        }
        // The age is configurable: the same facts are too old for a one-day limit.
        let got = status(
            Some("15.2(7)E8"),
            Some("2026-12-03T11:00:00Z"),
            Some("15.2(7)E8"),
            true,
            now,
            day,
        );
        assert_eq!(got.status, Status::Unknown);
    }

    #[test]
    fn a_stack_with_a_member_behind_is_outdated() {
        let spec = crate::inventory::DeviceInput {
            name: "stack-1".into(),
            host: "10.0.0.1".into(),
            platform: "ios".into(),
            site: Some("fra".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let member = |version: &str| crate::inventory::Member {
            number: 1,
            version: Some(version.into()),
            ..Default::default()
        };
        let mut device = crate::inventory::Device {
            id: 1,
            spec,
            host_key: None,
            facts: crate::inventory::Facts {
                version: Some("15.2(7)E8".into()),
                last_seen: Some("2026-12-05T11:00:00Z".into()),
                members: vec![member("15.2(7)E8"), member("15.2(7)E8")],
                ..Default::default()
            },
            created_at: String::new(),
            updated_at: String::new(),
            source: None,
        };
        let mut golden = entry("site=fra", "c2960x-universalk9-mz.152-7.E8.bin");
        golden.version = Some("15.2(7)E8".into());
        let now: jiff::Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let run = |d: &crate::inventory::Device| {
            compliance(
                std::slice::from_ref(d),
                std::slice::from_ref(&golden),
                now,
                DEFAULT_MAX_FACTS_AGE,
            )
            .remove(0)
        };
        assert_eq!(run(&device).verdict.status, Status::Compliant);
        device.facts.members[1] = member("15.2(4)E10");
        let row = run(&device);
        assert_eq!(
            row.verdict.status,
            Status::Outdated,
            "{}",
            row.verdict.reason
        );
        let rows = [row];
        let sites = roll_up(&rows, |r| r.site.as_deref());
        assert_eq!(sites["fra"].outdated, 1);
        assert_eq!(sites["fra"].total(), 1);
    }

    #[test]
    fn scopes_print_in_precedence_order() {
        assert_eq!(entry("", "x").scope.to_string(), "global");
        assert_eq!(
            entry("site=fra,model=M,role=r,platform=ios", "x")
                .scope
                .to_string(),
            "model=M,platform=ios,site=fra,role=r"
        );
    }
}

/// One device's compliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCompliance {
    pub device: String,
    pub site: Option<String>,
    pub platform: Platform,
    pub model: Option<String>,
    pub version: Option<String>,
    pub last_seen: Option<String>,
    /// The golden entry that applies, if one does.
    pub golden: Option<GoldenEntry>,
    pub verdict: Verdict,
}

/// Every device's status against its golden image, in the order given.
pub fn compliance(
    devices: &[crate::inventory::Device],
    entries: &[GoldenEntry],
    now: jiff::Timestamp,
    max_age: std::time::Duration,
) -> Vec<DeviceCompliance> {
    devices
        .iter()
        .map(|d| {
            let key = DeviceKey::of(d);
            let golden = resolve(entries, &key).cloned();
            let target = golden.as_ref().and_then(|g| g.version.as_deref());
            let mut verdict = status(
                d.facts.version.as_deref(),
                d.facts.last_seen.as_deref(),
                target,
                golden.is_some(),
                now,
                max_age,
            );
            // A stack with a member behind is not compliant, as it is not current for
            // `skip_if_current`.
            if verdict.status == Status::Compliant
                && let Some(target) = target
                && !d.facts.members_run(target)
            {
                verdict = Verdict {
                    status: Status::Outdated,
                    reason: format!("a stack member does not run {target}"),
                };
            }
            DeviceCompliance {
                device: d.name().to_string(),
                site: d.spec.site.clone(),
                platform: d.spec.platform,
                model: key.model.map(str::to_string),
                version: d.facts.version.clone(),
                last_seen: d.facts.last_seen.clone(),
                golden,
                verdict,
            }
        })
        .collect()
}

/// Devices per status of one group (a site, a model).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub compliant: u64,
    pub outdated: u64,
    pub ahead: u64,
    pub unknown: u64,
}

impl Counts {
    pub fn add(&mut self, s: Status) {
        match s {
            Status::Compliant => self.compliant += 1,
            Status::Outdated => self.outdated += 1,
            Status::Ahead => self.ahead += 1,
            Status::Unknown => self.unknown += 1,
        }
    }

    pub fn get(&self, s: Status) -> u64 {
        match s {
            Status::Compliant => self.compliant,
            Status::Outdated => self.outdated,
            Status::Ahead => self.ahead,
            Status::Unknown => self.unknown,
        }
    }

    pub fn total(&self) -> u64 {
        self.compliant + self.outdated + self.ahead + self.unknown
    }
}

/// Counts per key (`""` for devices without one), ordered by key.
pub fn roll_up<'a>(
    rows: &'a [DeviceCompliance],
    key: impl Fn(&'a DeviceCompliance) -> Option<&'a str>,
) -> std::collections::BTreeMap<String, Counts> {
    let mut out = std::collections::BTreeMap::<String, Counts>::new();
    for r in rows {
        out.entry(key(r).unwrap_or("").to_string())
            .or_default()
            .add(r.verdict.status);
    }
    out
}
