//! Source-of-truth sync (`fleetup inventory sync`, `sync:` in the config file): the devices
//! that Nautobot or NetBox keep become fleetup's, and devices they drop become `absent`.
//!
//! This module is pure: it reads one device record of either source's REST API into a
//! [`SyncRecord`] and decides nothing about the database. `source` fetches the pages over HTTP
//! (and writes the running version back), `store::sync` applies the records in one
//! transaction, `schedule` runs syncs from `serve`. docs/sync.md is the user's side.
//!
//! The two sources differ in a few names, all handled here:
//! - Nautobot 2.x: `location` (a tree; no `site`), `role.name`, `status.name` (`Active`),
//!   `platform.network_driver` (`cisco_ios`, `cisco_xe`, `cisco_nxos`), no slugs;
//!   nested objects carry their names only with `?depth=1`.
//! - NetBox 3.6 and later: `site.slug`, `role.slug` (`device_role` before 3.6),
//!   `status.value` (`active`), `platform.slug`.

pub mod schedule;
pub mod source;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::inventory::Platform;

/// Which source of truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Nautobot,
    Netbox,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Nautobot => "nautobot",
            SourceKind::Netbox => "netbox",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key of `--filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FilterKey {
    /// Nautobot's location (with the locations below it), NetBox's site.
    Site,
    Role,
    Tag,
    Status,
}

impl FilterKey {
    fn parse(s: &str) -> Option<FilterKey> {
        match s {
            "site" | "location" => Some(FilterKey::Site),
            "role" => Some(FilterKey::Role),
            "tag" => Some(FilterKey::Tag),
            "status" => Some(FilterKey::Status),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            FilterKey::Site => "site",
            FilterKey::Role => "role",
            FilterKey::Tag => "tag",
            FilterKey::Status => "status",
        }
    }

    /// The query parameter of the source's device list.
    fn param(self, kind: SourceKind) -> &'static str {
        match (self, kind) {
            (FilterKey::Site, SourceKind::Nautobot) => "location",
            (FilterKey::Site, SourceKind::Netbox) => "site",
            (FilterKey::Role, _) => "role",
            // Nautobot answers `tag` with 400 "Unknown filter field".
            (FilterKey::Tag, SourceKind::Nautobot) => "tags",
            (FilterKey::Tag, SourceKind::Netbox) => "tag",
            (FilterKey::Status, _) => "status",
        }
    }
}

/// `--filter site=dc1,role=access,tag=canary,status=active`: every key must match; a key given
/// twice matches either value. Sent to the source as query parameters, and checked again on
/// each record where the record can tell (role, tag, status), so that a filter the source
/// ignored never widens a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter(Vec<(FilterKey, String)>);

impl Filter {
    pub fn parse(s: &str) -> Result<Filter, String> {
        let mut pairs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!(
                    "filter {part:?} is not KEY=VALUE (keys: site, role, tag, status)"
                ));
            };
            let key = FilterKey::parse(k.trim()).ok_or_else(|| {
                format!(
                    "unknown filter key {:?}; the keys are site (Nautobot's location), role, tag and status",
                    k.trim()
                )
            })?;
            let v = v.trim();
            if v.is_empty() || v.len() > 100 || v.chars().any(char::is_control) {
                return Err(format!(
                    "filter {part:?}: the value must be 1 to 100 printable characters"
                ));
            }
            pairs.push((key, v.to_string()));
        }
        pairs.sort();
        pairs.dedup();
        Ok(Filter(pairs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The query parameters for the source's device list.
    pub(crate) fn query(&self, kind: SourceKind) -> Vec<(&'static str, String)> {
        self.0
            .iter()
            .map(|(k, v)| (k.param(kind), v.clone()))
            .collect()
    }

    /// Whether a record the source returned matches what the filter can check itself.
    fn admits(&self, d: &Value) -> bool {
        let keys = [FilterKey::Role, FilterKey::Tag, FilterKey::Status];
        keys.into_iter().all(|key| {
            let wanted: Vec<&str> = self
                .0
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
                .collect();
            if wanted.is_empty() {
                return true;
            }
            let have: Vec<&str> = match key {
                FilterKey::Role => ["role", "device_role"]
                    .iter()
                    .flat_map(|f| names_of(&d[*f]))
                    .collect(),
                FilterKey::Tag => d["tags"]
                    .as_array()
                    .map(|tags| tags.iter().flat_map(names_of).collect())
                    .unwrap_or_default(),
                FilterKey::Status => names_of(&d["status"]),
                FilterKey::Site => Vec::new(),
            };
            wanted
                .iter()
                .any(|w| have.iter().any(|h| h.eq_ignore_ascii_case(w)))
        })
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{}={v}", k.as_str()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The names an object of either source goes by: slug, name, value, label, network driver,
/// id. A bare string is its own name.
fn names_of(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Object(o) => ["slug", "name", "value", "label", "network_driver", "model"]
            .iter()
            .filter_map(|k| o.get(*k).and_then(Value::as_str))
            .collect(),
        _ => Vec::new(),
    }
}

/// The scope a sync keeps: source kind, URL and filter. Devices of one scope that a later sync
/// of the same scope no longer finds become absent; other scopes' devices are left alone.
pub fn scope(kind: SourceKind, url: &reqwest::Url, filter: &Filter) -> String {
    let url = url.as_str().trim_end_matches('/');
    if filter.is_empty() {
        format!("{kind} {url}")
    } else {
        format!("{kind} {url} {filter}")
    }
}

/// `--platform-map`: the source's platform (network driver, slug or name, any case) to a
/// fleetup platform, tried before the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformMap(BTreeMap<String, Platform>);

impl PlatformMap {
    /// `cisco-ios-xe-17=iosxe,ios-classic=ios`.
    pub fn parse(s: &str) -> Result<PlatformMap, String> {
        let mut map = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("platform map entry {part:?} is not SOURCE=PLATFORM"))?;
            let platform = Platform::parse(v.trim()).ok_or_else(|| {
                format!(
                    "platform map entry {part:?}: {:?} is none of ios, iosxe, nxos",
                    v.trim()
                )
            })?;
            map.insert(normalise(k), platform);
        }
        Ok(PlatformMap(map))
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Platform)>) -> PlatformMap {
        PlatformMap(pairs.into_iter().map(|(k, v)| (normalise(&k), v)).collect())
    }

    /// The platform of a source platform object: the map first, then the defaults, each over
    /// the network driver, then the slug, then the name.
    pub(crate) fn resolve(&self, platform: &Value) -> Option<Platform> {
        let names: Vec<&str> = ["network_driver", "slug", "name"]
            .iter()
            .filter_map(|k| platform.get(*k).and_then(Value::as_str))
            .collect();
        names
            .iter()
            .find_map(|n| self.0.get(&normalise(n)).copied())
            .or_else(|| names.iter().find_map(|n| default_platform(n)))
    }
}

/// Lower case, letters and digits only: `Cisco IOS-XE`, `cisco_xe` and `cisco-ios-xe` compare
/// as `ciscoiosxe`, `ciscoxe`, `ciscoiosxe`.
fn normalise(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The common names of Cisco platforms: Netmiko/Nautobot network drivers (`cisco_ios`,
/// `cisco_xe`, `cisco_nxos`), NetBox slugs (`cisco-ios`, `cisco-ios-xe`, `cisco-nx-os`) and
/// plain names (`IOS-XE`, `NX-OS`).
pub fn default_platform(name: &str) -> Option<Platform> {
    match normalise(name).as_str() {
        "ios" | "ciscoios" | "iosclassic" => Some(Platform::Ios),
        "iosxe" | "ciscoiosxe" | "ciscoxe" | "xe" | "catalystiosxe" => Some(Platform::Iosxe),
        "nxos" | "cisconxos" | "cisconxosssh" | "nexus" | "cisconexus" | "nxosssh" => {
            Some(Platform::Nxos)
        }
        _ => None,
    }
}

/// A label from a source name: kept when fleetup's label rule takes it, else lower-cased with
/// every other character run made one `-` (`New York DC1` → `new-york-dc1`).
pub fn label(s: &str) -> Option<String> {
    let s = s.trim();
    if crate::inventory::parse_label("label", s).is_ok() {
        return Some(s.to_string());
    }
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ':') {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(64).collect();
    let out = out.trim_end_matches('-').to_string();
    crate::inventory::parse_label("label", &out)
        .ok()
        .map(|_| out)
}

/// One device as a source of truth gives it, mapped to fleetup's names. This is what
/// `POST /api/v1/inventory/sync` takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRecord {
    /// The device's id in the source (Nautobot's UUID, NetBox's number).
    pub id: String,
    pub name: String,
    /// The primary IP address, without its prefix length.
    pub host: String,
    pub platform: Platform,
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// The role, as a group.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A source device that could not become a fleetup device, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncSkip {
    /// The device's id in the source.
    pub id: String,
    /// The device's name in the source, or `id ID` when it has none.
    pub name: String,
    pub reason: String,
}

/// What reading one source record gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    Device(SyncRecord),
    /// Not fleetup's: it cannot be driven (no address, unknown platform, bad name).
    Skip(SyncSkip),
    /// The source returned it, but the filter excludes it.
    Filtered,
}

/// Read one device of a source's `/api/dcim/devices/` list (Nautobot at `depth=1`).
pub fn map_device(d: &Value, platforms: &PlatformMap, filter: &Filter) -> Mapped {
    let id = match &d["id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let raw_name = d["name"].as_str().map(str::trim).unwrap_or_default();
    let skip = |reason: String| {
        Mapped::Skip(SyncSkip {
            id: id.clone(),
            name: if raw_name.is_empty() {
                format!("id {id}")
            } else {
                raw_name.to_string()
            },
            reason,
        })
    };
    if id.is_empty() {
        return skip("it has no id".into());
    }
    if !filter.admits(d) {
        return Mapped::Filtered;
    }
    if raw_name.is_empty() {
        return skip("it has no name".into());
    }
    if let Err(e) = crate::inventory::DeviceName::parse(raw_name) {
        return skip(format!("its name is not a fleetup device name ({e})"));
    }
    let address = ["primary_ip4", "primary_ip6", "primary_ip"]
        .iter()
        .find_map(|f| d[*f]["address"].as_str().or_else(|| d[*f]["host"].as_str()));
    let Some(address) = address else {
        return skip("it has no primary IP address".into());
    };
    let host = address.split('/').next().unwrap_or_default().trim();
    let host = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => return skip(format!("its primary IP {address:?} is not an address")),
    };
    let platform_obj = &d["platform"];
    if platform_obj.is_null() {
        return skip("it has no platform".into());
    }
    let Some(platform) = platforms.resolve(platform_obj) else {
        let names = names_of(platform_obj).join(" / ");
        return skip(format!(
            "its platform {names} is none of ios, iosxe, nxos; map it with --platform-map NAME=ios|iosxe|nxos"
        ));
    };
    let site = ["location", "site"]
        .iter()
        .find_map(|f| {
            let o = &d[*f];
            o["slug"].as_str().or_else(|| o["name"].as_str())
        })
        .and_then(label);
    let role = ["role", "device_role"]
        .iter()
        .find_map(|f| {
            let o = &d[*f];
            o["slug"].as_str().or_else(|| o["name"].as_str())
        })
        .and_then(label);
    let mut tags: Vec<String> = d["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .filter_map(|t| {
                    t["slug"]
                        .as_str()
                        .or_else(|| t["name"].as_str())
                        .or_else(|| t.as_str())
                })
                .filter_map(label)
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    tags.dedup();
    let model = d["device_type"]["model"]
        .as_str()
        .map(str::trim)
        .filter(|m| !m.is_empty() && m.len() <= 64)
        .map(str::to_string);
    Mapped::Device(SyncRecord {
        id,
        name: raw_name.to_string(),
        host,
        platform,
        site,
        model,
        groups: role.into_iter().collect(),
        tags,
    })
}

/// Credentials and port for the devices a sync creates, by reference: environment variable
/// names of the service, never secrets copied from the source of truth. They fill what a
/// device lacks and never overwrite what an operator set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncDefaults {
    /// SSH port of new devices (22 when not given); `22.0` is 22, as JSON Schema's integer.
    #[serde(default, deserialize_with = "crate::inventory::optional_port")]
    pub port: Option<u16>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub enable_secret_env: Option<String>,
}

/// `POST /api/v1/inventory/sync`: the devices one scope of a source holds now (its OpenAPI
/// schema, with the rules [`validate`] applies, is written out in `api::schema`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// The scope: `KIND URL [FILTER]` ([`scope`]); devices it kept before and that are not in
    /// `devices` become absent.
    pub scope: String,
    /// Report the difference and change nothing.
    #[serde(default)]
    pub dry_run: bool,
    pub devices: Vec<SyncRecord>,
    /// Devices the source holds that could not be taken: reported, and never marked absent.
    #[serde(default)]
    pub skipped: Vec<SyncSkip>,
    /// An object, or null for none (serde would also read a struct from an array).
    #[serde(default, deserialize_with = "object_or_null")]
    pub defaults: SyncDefaults,
}

fn object_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SyncDefaults, D::Error> {
    use serde::de::Error;
    match Value::deserialize(d)? {
        Value::Null => Ok(SyncDefaults::default()),
        v @ Value::Object(_) => serde_json::from_value(v).map_err(D::Error::custom),
        other => Err(D::Error::custom(format!(
            "defaults: an object, not {other}"
        ))),
    }
}

/// The longest scope a request may name, in characters.
pub const MAX_SCOPE_LEN: usize = 1024;
/// A scope: printable (no control character), and not only spaces.
pub const SCOPE_PATTERN: &str =
    r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
/// A device's id in its source: 1 to 64 printable characters.
pub const SOURCE_ID_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]{1,64}$";

/// What [`validate`] accepts: the records as device descriptions with their id in the source,
/// and the request's skipped devices with those it skipped itself.
#[derive(Debug)]
pub(crate) struct Checked {
    pub records: Vec<(String, crate::inventory::DeviceSpec)>,
    pub skipped: Vec<SyncSkip>,
}

/// Check a request whole, before anything is written: the scope, and each record as a device
/// description (with the defaults' port and credentials). Errors name the record by its
/// index. A name or id that comes again is skipped with the reason (the first one is taken).
pub(crate) fn validate(req: &SyncRequest) -> Result<Checked, String> {
    let printable = |s: &str| !s.chars().any(char::is_control);
    if req.scope.chars().count() > MAX_SCOPE_LEN
        || !printable(&req.scope)
        || !req.scope.chars().any(|c| c > ' ' && !c.is_control())
    {
        return Err(format!(
            "scope: 1 to {MAX_SCOPE_LEN} printable characters, not only spaces (`KIND URL [FILTER]`)"
        ));
    }
    // The defaults are checked even when no record needs them.
    crate::inventory::DeviceInput {
        name: "defaults".into(),
        host: "127.0.0.1".into(),
        port: req.defaults.port,
        platform: Platform::Ios.as_str().into(),
        username: req.defaults.username.clone(),
        password_env: req.defaults.password_env.clone(),
        enable_secret_env: req.defaults.enable_secret_env.clone(),
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("defaults.{e}"))?;
    let mut names = std::collections::BTreeSet::new();
    let mut ids = std::collections::BTreeSet::new();
    let mut out = Checked {
        records: Vec::with_capacity(req.devices.len()),
        skipped: req.skipped.clone(),
    };
    for (i, r) in req.devices.iter().enumerate() {
        if r.id.is_empty() || r.id.chars().count() > 64 || !printable(&r.id) {
            return Err(format!("devices[{i}].id: 1 to 64 printable characters"));
        }
        let input = crate::inventory::DeviceInput {
            name: r.name.clone(),
            host: r.host.clone(),
            port: req.defaults.port,
            platform: r.platform.as_str().to_string(),
            site: r.site.clone(),
            model: r.model.clone(),
            groups: r.groups.clone(),
            tags: r.tags.clone(),
            username: req.defaults.username.clone(),
            password: None,
            password_env: req.defaults.password_env.clone(),
            enable_secret: None,
            enable_secret_env: req.defaults.enable_secret_env.clone(),
        };
        let spec = input
            .validate()
            .map_err(|e| format!("devices[{i}] ({}): {e}", r.name))?;
        let twice = if !ids.insert(r.id.as_str()) {
            Some(format!(
                "its id {} comes twice in the sync; the first is taken",
                r.id
            ))
        } else if !names.insert(r.name.as_str()) {
            Some("its name comes twice in the sync; the first is taken".to_string())
        } else {
            None
        };
        match twice {
            Some(reason) => out.skipped.push(SyncSkip {
                id: r.id.clone(),
                name: r.name.clone(),
                reason,
            }),
            None => out.records.push((r.id.clone(), spec)),
        }
    }
    Ok(out)
}

/// One field a sync changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldChange {
    pub field: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Changed {
    pub name: String,
    pub fields: Vec<FieldChange>,
}

/// The difference a sync made (or, dry, would make).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncReport {
    pub scope: String,
    pub dry_run: bool,
    /// New devices.
    pub added: Vec<String>,
    /// Devices whose address, platform, site, model, role, tags, name or scope changed.
    pub changed: Vec<Changed>,
    /// Devices of the scope the source no longer holds: now absent, never targeted.
    pub gone: Vec<String>,
    /// Absent devices the source holds again.
    pub returned: Vec<String>,
    pub unchanged: usize,
    /// Source devices fleetup cannot take, and why (nothing is changed for them).
    pub skipped: Vec<SyncSkip>,
}

impl SyncReport {
    /// One log line with the counts.
    pub(crate) fn log(&self) {
        tracing::info!(
            scope = %self.scope,
            added = self.added.len(),
            changed = self.changed.len(),
            gone = self.gone.len(),
            returned = self.returned.len(),
            skipped = self.skipped.len(),
            dry_run = self.dry_run,
            "inventory synced"
        );
    }

    /// The human summary the CLI and the log print.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for n in &self.added {
            out.push_str(&format!("+ {n}\n"));
        }
        for c in &self.changed {
            let fields: Vec<String> = c
                .fields
                .iter()
                .map(|f| format!("{} {} → {}", f.field, shown(&f.from), shown(&f.to)))
                .collect();
            out.push_str(&format!("~ {}: {}\n", c.name, fields.join("; ")));
        }
        for n in &self.returned {
            out.push_str(&format!("↺ {n}: back in the source\n"));
        }
        for n in &self.gone {
            out.push_str(&format!("- {n}: gone from the source, now absent\n"));
        }
        for s in &self.skipped {
            out.push_str(&format!("! {}: skipped, {}\n", s.name, s.reason));
        }
        out.push_str(&format!(
            "{}{}: {} added, {} changed, {} gone, {} returned, {} unchanged, {} skipped\n",
            if self.dry_run {
                "dry run, nothing changed: "
            } else {
                ""
            },
            self.scope,
            self.added.len(),
            self.changed.len(),
            self.gone.len(),
            self.returned.len(),
            self.unchanged,
            self.skipped.len()
        ));
        out
    }
}

fn shown(s: &str) -> &str {
    if s.is_empty() { "(none)" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_parse_and_name_their_keys() {
        let f = Filter::parse("site=dc1, role=access,tag=canary,status=active").unwrap();
        assert_eq!(
            f.to_string(),
            "site=dc1,role=access,tag=canary,status=active"
        );
        assert_eq!(
            f.query(SourceKind::Nautobot)[0],
            ("location", "dc1".to_string())
        );
        assert_eq!(f.query(SourceKind::Netbox)[0], ("site", "dc1".to_string()));
        assert_eq!(
            f.query(SourceKind::Nautobot)[2],
            ("tags", "canary".to_string())
        );
        assert_eq!(
            f.query(SourceKind::Netbox)[2],
            ("tag", "canary".to_string())
        );
        let e = Filter::parse("rack=r1").unwrap_err();
        assert!(e.contains("unknown filter key \"rack\""), "{e}");
        assert!(Filter::parse("site").unwrap_err().contains("KEY=VALUE"));
        assert!(Filter::parse("site=").is_err());
    }

    #[test]
    fn default_platforms_cover_drivers_slugs_and_names() {
        for (name, p) in [
            ("cisco_ios", Platform::Ios),
            ("cisco-ios", Platform::Ios),
            ("Cisco IOS", Platform::Ios),
            ("cisco_xe", Platform::Iosxe),
            ("cisco-ios-xe", Platform::Iosxe),
            ("IOS-XE", Platform::Iosxe),
            ("cisco_nxos", Platform::Nxos),
            ("cisco-nx-os", Platform::Nxos),
            ("NX-OS", Platform::Nxos),
        ] {
            assert_eq!(default_platform(name), Some(p), "{name}");
        }
        assert_eq!(default_platform("juniper_junos"), None);
        assert_eq!(default_platform("cisco_iosxr"), None);
    }

    #[test]
    fn the_platform_map_wins_over_the_defaults() {
        let map = PlatformMap::parse("Cisco IOS=iosxe, junos-lab=nxos").unwrap();
        assert_eq!(
            map.resolve(&json!({"name": "Cisco IOS", "network_driver": "cisco_ios"})),
            // `cisco_ios` and `Cisco IOS` compare alike, and the map wins over every default.
            Some(Platform::Iosxe)
        );
        assert!(
            PlatformMap::parse("x=junos")
                .unwrap_err()
                .contains("none of")
        );
    }

    #[test]
    fn labels_keep_good_names_and_slug_the_rest() {
        assert_eq!(label("dc1").as_deref(), Some("dc1"));
        assert_eq!(label("New York DC1").as_deref(), Some("new-york-dc1"));
        assert_eq!(label("  Core / Dist  ").as_deref(), Some("core-/-dist"));
        assert_eq!(label("!!!"), None);
    }

    #[test]
    fn a_device_without_what_fleetup_needs_is_skipped_with_the_reason() {
        let base = json!({
            "id": 7, "name": "sw1",
            "primary_ip4": {"address": "10.0.0.1/24"},
            "platform": {"slug": "cisco-ios", "name": "Cisco IOS"},
        });
        assert!(matches!(
            map_device(&base, &PlatformMap::default(), &Filter::default()),
            Mapped::Device(r) if r.host == "10.0.0.1" && r.id == "7"
        ));
        let mut no_ip = base.clone();
        no_ip["primary_ip4"] = Value::Null;
        let mut junos = base.clone();
        junos["platform"] = json!({"slug": "juniper-junos", "name": "Junos"});
        let mut spaced = base.clone();
        spaced["name"] = json!("sw 1");
        for (d, why) in [
            (no_ip, "no primary IP"),
            (junos, "juniper-junos / Junos is none of"),
            (spaced, "not a fleetup device name"),
        ] {
            match map_device(&d, &PlatformMap::default(), &Filter::default()) {
                Mapped::Skip(s) => assert!(s.reason.contains(why), "{s:?}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_filter_is_checked_on_each_record_where_it_can_be() {
        let d = json!({
            "id": "u1", "name": "sw1",
            "primary_ip4": {"address": "10.0.0.1/32"},
            "platform": {"network_driver": "cisco_xe"},
            "role": {"name": "access"},
            "status": {"name": "Active"},
            "tags": [{"name": "canary"}],
        });
        let map = PlatformMap::default();
        for (f, admitted) in [
            ("role=access,status=active", true),
            ("tag=canary,tag=other", true),
            ("role=core", false),
            ("status=planned", false),
            ("tag=other", false),
            // The site is the source's to check (Nautobot's locations nest).
            ("site=elsewhere", true),
        ] {
            let got = map_device(&d, &map, &Filter::parse(f).unwrap());
            assert_eq!(matches!(got, Mapped::Device(_)), admitted, "{f}: {got:?}");
        }
    }
}
