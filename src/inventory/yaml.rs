//! YAML inventory files, in the spirit of Ansible inventories:
//!
//! ```yaml
//! defaults:            # apply to every device
//!   platform: ios
//!   username: admin
//!   password_env: FLEETUP_DEVICE_PASSWORD
//! groups:
//!   access:            # apply to members of the group (device values win)
//!     site: berlin
//! devices:
//!   - name: sw-1
//!     host: 10.0.0.11
//!     groups: [access]
//! ```
//!
//! Precedence: the device's own value, then its groups in the order listed, then `defaults`.
//! Import is all-or-nothing: every entry is validated before anything is written.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::{Device, DeviceInput, DeviceSpec};
use crate::yaml::YamlError;

/// Values a device can inherit from `defaults` or a group.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Inherited {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::optional_port"
    )]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_secret_env: Option<String>,
}

/// One device entry as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceEntry {
    name: Spanned<String>,
    host: Spanned<String>,
    #[serde(default, deserialize_with = "super::optional_port")]
    port: Option<u16>,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    enable_secret: Option<String>,
    #[serde(default)]
    enable_secret_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    #[serde(default)]
    defaults: Option<Spanned<Inherited>>,
    #[serde(default)]
    groups: BTreeMap<String, Spanned<Inherited>>,
    #[serde(default)]
    devices: Vec<DeviceEntry>,
}

impl Inherited {
    /// The same rules as a device's own values, checked whether or not a device inherits them,
    /// so that a typo in a group nobody uses yet is caught at import, not at its first use.
    fn check(&self) -> Result<(), super::InvalidDevice> {
        let as_device = DeviceInput {
            name: "inherited".into(),
            host: "inherited".into(),
            port: self.port,
            platform: self.platform.clone().unwrap_or_else(|| "ios".into()),
            site: self.site.clone(),
            tags: self.tags.clone(),
            password: self.password.clone(),
            password_env: self.password_env.clone(),
            enable_secret: self.enable_secret.clone(),
            enable_secret_env: self.enable_secret_env.clone(),
            ..Default::default()
        };
        as_device.validate().map(|_| ())
    }
}

/// Parse and validate a whole inventory file. Returns every device, or the first problem
/// with its line and column.
pub fn parse(text: &str) -> Result<Vec<DeviceSpec>, YamlError> {
    let file: InventoryFile = crate::yaml::from_str(text)?;
    let defaults = file.defaults.as_ref().map(|d| &d.value);
    let layers = file
        .groups
        .iter()
        .map(|(name, g)| (format!("groups.{name}"), Some(name), g))
        .chain(
            file.defaults
                .iter()
                .map(|d| ("defaults".to_string(), None, d)),
        );
    for (path, group, layer) in layers {
        let at = layer.referenced;
        let located = |message: String| YamlError::new(at.line(), at.column(), message);
        if let Some(name) = group {
            super::parse_label("groups", name)
                .map_err(|e| located(format!("{path}: {}", e.message)))?;
        }
        layer
            .value
            .check()
            .map_err(|e| located(format!("{path}.{}: {}", e.field, e.message)))?;
    }
    let mut seen: HashMap<String, (u64, u64)> = HashMap::new();
    let mut out = Vec::with_capacity(file.devices.len());
    for entry in &file.devices {
        let at = entry.name.referenced;
        let (line, column) = (at.line(), at.column());
        let name = entry.name.value.clone();
        if let Some((l, c)) = seen.get(&name) {
            return Err(YamlError::new(
                line,
                column,
                format!(
                    "devices.name: duplicate device name {name:?} (first defined at line {l}, column {c})"
                ),
            ));
        }
        seen.insert(name.clone(), (line, column));
        // Groups need not be declared: an undeclared group simply carries no values.
        let layers: Vec<&Inherited> = entry
            .groups
            .iter()
            .filter_map(|g| file.groups.get(g).map(|s| &s.value))
            .chain(defaults)
            .collect();
        let pick = |own: &Option<String>, get: fn(&Inherited) -> &Option<String>| {
            own.clone()
                .or_else(|| layers.iter().find_map(|l| get(l).clone()))
        };
        let mut tags = entry.tags.clone();
        for l in &layers {
            tags.extend(l.tags.iter().cloned());
        }
        let input = DeviceInput {
            name,
            host: entry.host.value.clone(),
            port: entry.port.or_else(|| layers.iter().find_map(|l| l.port)),
            platform: pick(&entry.platform, |l| &l.platform).unwrap_or_default(),
            site: pick(&entry.site, |l| &l.site),
            model: pick(&entry.model, |l| &l.model),
            groups: entry.groups.clone(),
            tags,
            username: pick(&entry.username, |l| &l.username),
            password: pick(&entry.password, |l| &l.password),
            password_env: if entry.password.is_some() {
                entry.password_env.clone()
            } else {
                pick(&entry.password_env, |l| &l.password_env)
            },
            enable_secret: pick(&entry.enable_secret, |l| &l.enable_secret),
            enable_secret_env: if entry.enable_secret.is_some() {
                entry.enable_secret_env.clone()
            } else {
                pick(&entry.enable_secret_env, |l| &l.enable_secret_env)
            },
        };
        let spec = input.validate().map_err(|e| {
            let loc = if e.field == "host" {
                entry.host.referenced
            } else {
                entry.name.referenced
            };
            let message = if e.field == "platform" && input.platform.is_empty() {
                format!(
                    "devices.platform: device {:?} has no platform (set it on the device, a group or defaults)",
                    input.name
                )
            } else {
                format!("devices.{}: {}", e.field, e.message)
            };
            YamlError::new(loc.line(), loc.column(), message)
        })?;
        out.push(spec);
    }
    Ok(out)
}

/// Device entry as exported (flat: every value explicit, so the file stands on its own).
#[derive(Debug, Serialize)]
struct ExportEntry<'a> {
    name: &'a str,
    host: &'a str,
    port: u16,
    platform: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_env: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_secret_env: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct ExportFile<'a> {
    devices: Vec<ExportEntry<'a>>,
}

/// Write the inventory as YAML that [`parse`] reads back to the same devices. Inline secrets
/// are left out unless `with_secrets`; environment-variable names are always kept.
pub(crate) fn export(devices: &[Device], with_secrets: bool) -> Result<String, String> {
    let entries = devices
        .iter()
        .map(|d| {
            let s = &d.spec;
            let c = &s.credentials;
            ExportEntry {
                name: s.name.as_str(),
                host: &s.host,
                port: s.port,
                platform: s.platform.as_str(),
                site: s.site.as_deref(),
                model: s.model.as_deref(),
                groups: &s.groups,
                tags: &s.tags,
                username: c.username.as_deref(),
                password: c.password.as_deref().filter(|_| with_secrets),
                password_env: c.password_env.as_deref(),
                enable_secret: c.enable_secret.as_deref().filter(|_| with_secrets),
                enable_secret_env: c.enable_secret_env.as_deref(),
            }
        })
        .collect();
    let header = if with_secrets {
        "# fleetup inventory export, WITH inline secrets: keep this file private.\n"
    } else {
        "# fleetup inventory export. Inline passwords and enable secrets were LEFT OUT: importing\n# this file keeps the stored ones. Use *_env names, or export --with-secrets to include them.\n"
    };
    crate::yaml::to_string(&ExportFile { devices: entries }).map(|y| format!("{header}{y}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Platform;

    const SAMPLE: &str = "\
defaults:
  platform: ios
  username: admin
  password_env: FLEETUP_PW
groups:
  access:
    site: berlin
    tags: [poe]
  core:
    platform: iosxe
devices:
  - name: sw-1
    host: 10.0.0.11
    groups: [access]
  - name: core-1
    host: 10.0.0.1
    groups: [core]
    site: frankfurt
    password: secret
";

    #[test]
    fn inherits_from_groups_then_defaults() {
        let specs = parse(SAMPLE).unwrap();
        assert_eq!(specs.len(), 2);
        let sw = &specs[0];
        assert_eq!(sw.platform, Platform::Ios);
        assert_eq!(sw.site.as_deref(), Some("berlin"));
        assert_eq!(sw.tags, vec!["poe".to_string()]);
        assert_eq!(sw.credentials.password_env.as_deref(), Some("FLEETUP_PW"));
        let core = &specs[1];
        assert_eq!(core.platform, Platform::Iosxe);
        assert_eq!(core.site.as_deref(), Some("frankfurt"));
        assert_eq!(core.credentials.password.as_deref(), Some("secret"));
        assert_eq!(
            core.credentials.password_env, None,
            "inline password wins over inherited env"
        );
    }

    #[test]
    fn duplicate_names_are_located() {
        let text = "devices:\n  - name: a\n    host: 10.0.0.1\n    platform: ios\n  - name: a\n    host: 10.0.0.2\n    platform: ios\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.line, 5, "{err}");
        assert!(err.message.contains("duplicate"), "{err}");
    }

    #[test]
    fn bad_host_is_located_on_host() {
        let text = "devices:\n  - name: a\n    host: 'not a host'\n    platform: ios\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.message.contains("host"), "{err}");
    }

    #[test]
    fn defaults_and_groups_are_checked_even_when_unused() {
        for (text, line, field) in [
            (
                "groups:\n  spare:\n    platform: junos\n",
                3,
                "groups.spare.platform",
            ),
            (
                "defaults:\n  password_env: 'not a name'\n",
                2,
                "defaults.password_env",
            ),
            ("groups:\n  'a b':\n    site: x\n", 3, "groups.a b"),
            ("defaults:\n  port: 0\n", 2, "defaults.port"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{err}");
            assert!(err.message.starts_with(field), "{err}");
        }
    }

    #[test]
    fn export_round_trips() {
        let specs = parse(SAMPLE).unwrap();
        let devices: Vec<Device> = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| Device {
                id: i as i64,
                spec,
                host_key: None,
                facts: Default::default(),
                created_at: String::new(),
                updated_at: String::new(),
                source: None,
            })
            .collect();
        let text = export(&devices, true).unwrap();
        let again = parse(&text).unwrap();
        assert_eq!(
            again,
            devices.iter().map(|d| d.spec.clone()).collect::<Vec<_>>()
        );
        let redacted = export(&devices, false).unwrap();
        assert!(!redacted.contains("password: secret"), "{redacted}");
        assert!(redacted.contains("password_env: FLEETUP_PW"), "{redacted}");
    }
}
