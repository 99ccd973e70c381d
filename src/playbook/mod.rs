//! Playbooks: what a rollout does, as the engineer writes it in YAML.
//!
//! [`parse`] turns text into a validated [`Playbook`] or a [`YamlError`] with line and column
//! (unknown fields included). [`plan`] turns a playbook and the inventory into waves of
//! devices, with the reason for every device left out. Neither touches a device.

mod plan;
mod window;

pub(crate) use plan::{Plan, Skipped, plan, selected};
pub(crate) use window::{Opening, Window, any_contains};

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::inventory::Platform;
use crate::yaml::YamlError;

/// A count of devices or a share of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Share {
    Count(usize),
    /// 0 < p <= 100.
    Percent(f64),
}

impl Share {
    /// How many of `total` devices this share is (percentages round up, so "1%" of 10 is 1).
    pub(crate) fn of(self, total: usize) -> usize {
        match self {
            Share::Count(n) => n.min(total),
            Share::Percent(p) => ((p / 100.0) * total as f64).ceil() as usize,
        }
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Share::Count(n) => write!(f, "{n}"),
            Share::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Share;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a device count (e.g. 5) or a percentage (e.g. \"25%\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Share, E> {
                usize::try_from(v)
                    .map(Share::Count)
                    .map_err(|_| E::custom("count too large"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Share, E> {
                if v < 0 {
                    return Err(E::custom("a device count cannot be negative"));
                }
                self.visit_u64(v as u64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Share, E> {
                let t = v.trim();
                if let Some(p) = t.strip_suffix('%') {
                    let p: f64 = p.trim().parse().map_err(|_| {
                        E::custom(format!("{v:?} is not a percentage like \"25%\""))
                    })?;
                    if !(p > 0.0 && p <= 100.0) {
                        return Err(E::custom(format!(
                            "{v:?}: a percentage must be above 0% and at most 100%"
                        )));
                    }
                    return Ok(Share::Percent(p));
                }
                t.parse::<usize>().map(Share::Count).map_err(|_| {
                    E::custom(format!(
                        "{v:?} is not a device count or a percentage like \"25%\""
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written as seconds (`90`) or with units (`"30s"`, `"20m"`, `"2h"`, `"1h 30m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Seconds(pub u64);

impl Seconds {
    pub(crate) fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 90, \"30s\", \"20m\" or \"2h\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map(Seconds)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                parse_duration(v).map(Seconds).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

pub(crate) fn parse_duration(v: &str) -> Result<u64, String> {
    let mut total: u64 = 0;
    let mut any = false;
    for part in v.split_whitespace() {
        let split = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        let (n, unit) = part.split_at(split);
        let n: u64 = n
            .parse()
            .map_err(|_| format!("{v:?} is not a duration such as \"30s\", \"20m\" or \"2h\""))?;
        let mult = match unit {
            "" | "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hr" | "hrs" => 3600,
            "d" => 86400,
            _ => return Err(format!("{v:?}: unknown unit {unit:?} (use s, m, h or d)")),
        };
        total = total.saturating_add(n.saturating_mul(mult));
        any = true;
    }
    if !any {
        return Err("empty duration".into());
    }
    Ok(total)
}

/// How a device gets the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum TransferProtocol {
    #[default]
    Tftp,
    Ftp,
    Http,
    Https,
    Scp,
    Sftp,
    /// fleetup pushes the image over SSH into the device's SCP server.
    ScpPush,
}

impl TransferProtocol {
    pub(crate) const ALL: [TransferProtocol; 7] = [
        TransferProtocol::Tftp,
        TransferProtocol::Ftp,
        TransferProtocol::Http,
        TransferProtocol::Https,
        TransferProtocol::Scp,
        TransferProtocol::Sftp,
        TransferProtocol::ScpPush,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TransferProtocol::Tftp => "tftp",
            TransferProtocol::Ftp => "ftp",
            TransferProtocol::Http => "http",
            TransferProtocol::Https => "https",
            TransferProtocol::Scp => "scp",
            TransferProtocol::Sftp => "sftp",
            TransferProtocol::ScpPush => "scp-push",
        }
    }

    fn parse(v: &str) -> Result<TransferProtocol, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == v)
            .ok_or_else(|| {
                format!(
                    "unknown protocol {v:?}: use one of {}",
                    Self::ALL.map(|p| p.as_str()).join(", ")
                )
            })
    }
}

impl<'de> Deserialize<'de> for TransferProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TransferProtocol::parse(&s).map_err(de::Error::custom)
    }
}

/// One protocol, or a list tried in order when a copy fails for a transport reason
/// (`[https, ftp, tftp]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(crate) struct Protocols(pub Vec<TransferProtocol>);

impl Default for Protocols {
    fn default() -> Self {
        Protocols(vec![TransferProtocol::Tftp])
    }
}

impl Protocols {
    pub(crate) fn contains(&self, p: TransferProtocol) -> bool {
        self.0.contains(&p)
    }

    fn check(&self, field: &str) -> Result<(), String> {
        if self.0.is_empty() {
            return Err(format!(
                "{field}: an empty list; name at least one protocol"
            ));
        }
        for (i, p) in self.0.iter().enumerate() {
            if self.0[..i].contains(p) {
                return Err(format!("{field}: {} is listed twice", p.as_str()));
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Protocols {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Protocols;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a protocol (tftp, ftp, http, https, scp, sftp, scp-push) or a list of them tried in order")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Protocols, E> {
                TransferProtocol::parse(v)
                    .map(|p| Protocols(vec![p]))
                    .map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Protocols, A::Error> {
                let mut v = Vec::new();
                while let Some(p) = seq.next_element::<TransferProtocol>()? {
                    v.push(p);
                }
                Ok(Protocols(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Which devices a rollout targets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Targets {
    /// Every device of the inventory.
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub sites: Vec<String>,
    #[serde(default)]
    pub platforms: Vec<Platform>,
    #[serde(default)]
    pub names: Vec<String>,
    /// Device names left out even when selected otherwise.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// Image file names: per platform (`ios: …`), and per model under `models:`; or `golden`:
/// each device its golden image (`crate::golden`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ImageChoice {
    pub ios: Option<Spanned<String>>,
    pub iosxe: Option<Spanned<String>>,
    pub nxos: Option<Spanned<String>>,
    /// Model (as in the inventory or `show version`) to image; wins over the platform's image.
    pub models: BTreeMap<String, Spanned<String>>,
    /// `image: golden`: the image of each device is its golden image, resolved at planning.
    pub golden: bool,
}

/// `image:` as a map, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ios: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iosxe: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nxos: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    models: BTreeMap<String, Spanned<String>>,
}

/// The one word `image:` takes instead of a map.
pub(crate) const GOLDEN: &str = "golden";

impl Serialize for ImageChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.golden {
            return s.serialize_str(GOLDEN);
        }
        ImageMap {
            ios: self.ios.clone(),
            iosxe: self.iosxe.clone(),
            nxos: self.nxos.clone(),
            models: self.models.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ImageChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ImageChoice;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`golden`, or a map of platform (ios, iosxe, nxos) or `models:` to image file names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ImageChoice, E> {
                if v == GOLDEN {
                    Ok(ImageChoice {
                        golden: true,
                        ..ImageChoice::default()
                    })
                } else {
                    Err(E::custom(format!(
                        "{v:?}: the one word image: takes is `golden`; else give a map of platform (ios, iosxe, nxos) or `models:` to image file names"
                    )))
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ImageChoice, A::Error> {
                let m = ImageMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ImageChoice {
                    ios: m.ios,
                    iosxe: m.iosxe,
                    nxos: m.nxos,
                    models: m.models,
                    golden: false,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl ImageChoice {
    pub(crate) fn for_platform(&self, p: Platform) -> Option<&str> {
        match p {
            Platform::Ios => self.ios.as_ref(),
            Platform::Iosxe => self.iosxe.as_ref(),
            Platform::Nxos => self.nxos.as_ref(),
        }
        .map(|s| s.value.as_str())
    }

    /// Every image file name the playbook names, with where it is written.
    pub(crate) fn all(&self) -> Vec<&Spanned<String>> {
        let mut v: Vec<&Spanned<String>> = [&self.ios, &self.iosxe, &self.nxos]
            .into_iter()
            .flatten()
            .collect();
        v.extend(self.models.values());
        v
    }
}

/// Kickstart image file names for NX-OS devices that boot a kickstart and a system image
/// (Nexus 3000 before 7.0(3), 5000, 6000, 7000): `nxos: …`, and per model under `models:`.
/// Such a device is upgraded with `install all kickstart K system S`, S being its `image:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KickstartChoice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nxos: Option<Spanned<String>>,
    /// Model to kickstart image; wins over `nxos`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, Spanned<String>>,
}

impl KickstartChoice {
    /// Every kickstart file name the playbook names, with where it is written.
    pub(crate) fn all(&self) -> Vec<&Spanned<String>> {
        self.nxos.iter().chain(self.models.values()).collect()
    }

    fn is_empty(&self) -> bool {
        self.nxos.is_none() && self.models.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Transfer {
    /// One protocol, or a list tried in order.
    #[serde(default)]
    pub protocol: Protocols,
    /// Address (IP or name) at which devices reach fleetup's file server.
    #[serde(default)]
    pub server: Option<String>,
    /// The VRF devices reach fleetup in: NX-OS copies name it (`vrf NAME`, `management`
    /// unless set), IOS-XE copies name it when no source interface is set.
    #[serde(default)]
    pub vrf: Option<String>,
    /// IOS and IOS-XE: the interface the copy leaves from (`ip tftp source-interface X`,
    /// `ip http client source-interface X`, …), set for the copy and put back after it.
    #[serde(default)]
    pub source_interface: Option<String>,
    /// Per-site settings, for sites that reach fleetup another way (NAT, another VRF): an
    /// address, or `{server, protocol, vrf, source_interface}`.
    #[serde(default)]
    pub sites: BTreeMap<String, SiteTransfer>,
    /// `ip tftp blocksize` (512-8192) set on IOS and IOS-XE devices for the copy and put back
    /// right after it: IOS asks for 512-byte blocks otherwise.
    #[serde(default)]
    pub tftp_blocksize: Option<Spanned<u16>>,
}

/// A site's transfer settings; each one left out is the playbook's.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct SiteTransfer {
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub protocol: Option<Protocols>,
    #[serde(default)]
    pub vrf: Option<String>,
    #[serde(default)]
    pub source_interface: Option<String>,
}

/// The transfer settings of one device: the playbook's, with its site's over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceTransfer {
    pub server: Option<String>,
    pub protocols: Vec<TransferProtocol>,
    pub vrf: Option<String>,
    pub source_interface: Option<String>,
}

impl Transfer {
    pub(crate) fn for_site(&self, site: Option<&str>) -> DeviceTransfer {
        let over = site.and_then(|s| self.sites.get(s));
        DeviceTransfer {
            server: over
                .and_then(|o| o.server.clone())
                .or_else(|| self.server.clone()),
            protocols: over
                .and_then(|o| o.protocol.clone())
                .unwrap_or_else(|| self.protocol.clone())
                .0,
            vrf: over
                .and_then(|o| o.vrf.clone())
                .or_else(|| self.vrf.clone()),
            source_interface: over
                .and_then(|o| o.source_interface.clone())
                .or_else(|| self.source_interface.clone()),
        }
    }

    /// Whether any device of the playbook may copy by `p`.
    pub(crate) fn may_use(&self, p: TransferProtocol) -> bool {
        self.protocol.contains(p)
            || self
                .sites
                .values()
                .any(|s| s.protocol.as_ref().is_some_and(|l| l.contains(p)))
    }

    fn check(&self) -> Result<(), String> {
        self.protocol.check("transfer.protocol")?;
        check_word("transfer.server", self.server.as_deref(), SERVER_CHARS)?;
        check_word("transfer.vrf", self.vrf.as_deref(), NAME_CHARS)?;
        check_word(
            "transfer.source_interface",
            self.source_interface.as_deref(),
            NAME_CHARS,
        )?;
        for (name, site) in &self.sites {
            let field = |f: &str| format!("transfer.sites.{name}.{f}");
            if let Some(p) = &site.protocol {
                p.check(&field("protocol"))?;
            }
            check_word(&field("server"), site.server.as_deref(), SERVER_CHARS)?;
            check_word(&field("vrf"), site.vrf.as_deref(), NAME_CHARS)?;
            check_word(
                &field("source_interface"),
                site.source_interface.as_deref(),
                NAME_CHARS,
            )?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for SiteTransfer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SiteTransfer;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the address devices of the site reach fleetup at, or {server, protocol, vrf, source_interface}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SiteTransfer, E> {
                Ok(SiteTransfer {
                    server: Some(v.to_string()),
                    ..SiteTransfer::default()
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<SiteTransfer, A::Error> {
                SiteSettings::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(SiteSettings::into_site)
            }
        }
        d.deserialize_any(V)
    }
}

/// [`SiteTransfer`] as written in its long form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteSettings {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    protocol: Option<Protocols>,
    #[serde(default)]
    vrf: Option<String>,
    #[serde(default)]
    source_interface: Option<String>,
}

impl SiteSettings {
    fn into_site(self) -> SiteTransfer {
        SiteTransfer {
            server: self.server,
            protocol: self.protocol,
            vrf: self.vrf,
            source_interface: self.source_interface,
        }
    }
}

/// Characters of a server address (a name, IPv4 or IPv6 address).
const SERVER_CHARS: &str = ".-:[]_";
/// Characters of a VRF or interface name besides letters and digits.
const NAME_CHARS: &str = "-_./:";

/// A word that goes into a CLI line: letters, digits and `extra`, so it can neither end the
/// line nor add a command.
fn check_word(field: &str, value: Option<&str>, extra: &str) -> Result<(), String> {
    let Some(v) = value else {
        return Ok(());
    };
    // A DNS name may be 253 characters long; VRF and interface names are short.
    let max = if extra == SERVER_CHARS { 253 } else { 64 };
    let ok = !v.is_empty()
        && v.chars().count() <= max
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: {v:?} must be 1-{max} letters, digits or any of {extra:?} (it goes into the device's CLI)"
        ))
    }
}

/// Per-step time limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Timeouts {
    /// SSH connect and login.
    #[serde(default = "default_connect")]
    pub connect: Seconds,
    /// Any ordinary CLI command.
    #[serde(default = "default_command")]
    pub command: Seconds,
    /// The image copy (a 1 GB image over TFTP takes many minutes).
    #[serde(default = "default_copy")]
    pub copy: Seconds,
    /// From `reload` until the device answers on SSH again.
    #[serde(default = "default_reload")]
    pub reload: Seconds,
    /// Pause between reachability probes while a device boots.
    #[serde(default = "default_poll")]
    pub poll: Seconds,
    /// IOS-XE install mode: the auto-abort timer of `install activate` (30 minutes to 20
    /// hours): the device must pass its checks and be committed within it, or it rolls back.
    #[serde(default = "default_commit")]
    pub commit: Seconds,
    /// Stacks and dual supervisors: after the device is back on the new version, how long
    /// every stack member and the standby supervisor may take to be Ready (HOT) on it.
    #[serde(default = "default_members")]
    pub members: Seconds,
}

// One set of defaults: the driver's.
fn driver() -> crate::device::Timeouts {
    crate::device::Timeouts::default()
}
fn default_connect() -> Seconds {
    Seconds(driver().connect.as_secs())
}
fn default_command() -> Seconds {
    Seconds(driver().command.as_secs())
}
fn default_copy() -> Seconds {
    Seconds(driver().copy.as_secs())
}
fn default_reload() -> Seconds {
    Seconds(driver().reload.as_secs())
}
fn default_commit() -> Seconds {
    Seconds(driver().commit.as_secs())
}
fn default_members() -> Seconds {
    Seconds(driver().members.as_secs())
}
fn default_poll() -> Seconds {
    Seconds(driver().poll_interval.as_secs())
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: default_connect(),
            command: default_command(),
            copy: default_copy(),
            reload: default_reload(),
            poll: default_poll(),
            commit: default_commit(),
            members: default_members(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Strategy {
    /// Devices upgraded alone first; the rollout goes on only if they all succeed.
    #[serde(default = "one")]
    pub canary: usize,
    /// Cumulative shares of the devices after the canary; the last wave takes all that is left.
    #[serde(default = "all_in_one_wave")]
    pub waves: Vec<Spanned<Share>>,
    /// Devices worked on at the same time within a wave.
    #[serde(default = "ten")]
    pub concurrency: usize,
    /// Failures tolerated; one more halts the rollout.
    #[serde(default = "zero_failures")]
    pub max_failures: Share,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// In-service upgrades (dual supervisors): `never`, `preferred` (a normal reload when the
    /// device says the upgrade would be disruptive, recorded in the events) or `required` (such
    /// a device fails before any change).
    #[serde(default)]
    pub issu: crate::device::Issu,
}

fn one() -> usize {
    1
}
fn ten() -> usize {
    10
}
fn zero_failures() -> Share {
    Share::Count(0)
}
fn all_in_one_wave() -> Vec<Spanned<Share>> {
    Vec::new()
}

impl Default for Strategy {
    fn default() -> Self {
        Self {
            canary: 1,
            waves: Vec::new(),
            concurrency: 10,
            max_failures: Share::Count(0),
            timeouts: Timeouts::default(),
            issu: crate::device::Issu::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Schedule {
    /// Nothing starts before this time (RFC 3339, e.g. 2026-11-25T01:00:00Z).
    #[serde(default)]
    pub start_at: Option<jiff::Timestamp>,
    /// Reloads happen only inside one of these; copies may run before (staged).
    #[serde(default)]
    pub windows: Vec<Spanned<WindowText>>,
}

impl Schedule {
    pub(crate) fn windows(&self) -> Vec<Window> {
        self.windows.iter().map(|w| w.value.0.clone()).collect()
    }
}

/// A window as written, checked while the YAML is read so errors carry the location.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WindowText(pub Window);

impl Serialize for WindowText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for WindowText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Window::parse(&s).map(WindowText).map_err(de::Error::custom)
    }
}

/// A show command whose output must (or must not) contain a text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandCheck {
    pub run: String,
    #[serde(default)]
    pub must_contain: Option<String>,
    #[serde(default)]
    pub must_not_contain: Option<String>,
}

impl CommandCheck {
    /// The driver's own form of this check.
    pub(crate) fn to_check(&self) -> crate::device::Check {
        crate::device::Check {
            command: self.run.clone(),
            must_contain: self.must_contain.clone(),
            must_not_contain: self.must_not_contain.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreChecks {
    /// Free flash needed beyond the image size, e.g. "10%" of the image (default 5%).
    #[serde(default = "default_margin")]
    pub free_space_margin: Share,
    #[serde(default)]
    pub commands: Vec<CommandCheck>,
    /// When the running configuration differs from the startup one before the first change:
    /// `fail` the device, `warn` and go on (the default), or `save` first.
    #[serde(default)]
    pub unsaved_config: crate::device::UnsavedConfig,
}

fn default_margin() -> Share {
    Share::Percent(5.0)
}
fn yes() -> bool {
    true
}

impl Default for PreChecks {
    fn default() -> Self {
        Self {
            free_space_margin: default_margin(),
            commands: Vec::new(),
            unsaved_config: crate::device::UnsavedConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostChecks {
    /// Always checked: the running version is the target. These come on top.
    #[serde(default)]
    pub commands: Vec<CommandCheck>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Checks {
    #[serde(default)]
    pub pre: PreChecks,
    #[serde(default)]
    pub post: PostChecks,
    /// State taken before any change that must hold once the device is back: parsed by
    /// fleetup (`device::state`), not matched as text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compare: Vec<CompareEntry>,
}

/// One entry of `checks.compare`: a comparison's name (`up_interfaces`), the name with its
/// options (`routes: {tolerance: 5%}`), or the show command it stands for
/// (`show cdp neighbors`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompareEntry(pub crate::device::state::Comparison);

impl Serialize for CompareEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use crate::device::state::{Comparison, InterfaceSource, NeighborProtocol, Tolerance};
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match &self.0 {
            Comparison::UpInterfaces { source } => {
                let command = match source {
                    InterfaceSource::Default => None,
                    InterfaceSource::IpInterfaceBrief => Some("show ip interface brief"),
                    InterfaceSource::InterfacesStatus => Some("show interfaces status"),
                    InterfaceSource::InterfaceBrief => Some("show interface brief"),
                };
                let opts: BTreeMap<&str, &str> =
                    command.map(|c| ("command", c)).into_iter().collect();
                m.serialize_entry("up_interfaces", &opts)?;
            }
            Comparison::Neighbors { protocol } => {
                let p = match protocol {
                    NeighborProtocol::Cdp => "cdp",
                    NeighborProtocol::Lldp => "lldp",
                };
                m.serialize_entry("neighbors", &BTreeMap::from([("protocol", p)]))?;
            }
            Comparison::Routes { tolerance } => {
                let t = match tolerance {
                    Tolerance::Percent(p) => format!("{p}%"),
                    Tolerance::Routes(n) => n.to_string(),
                };
                m.serialize_entry("routes", &BTreeMap::from([("tolerance", t)]))?;
            }
        }
        m.end()
    }
}

fn unknown_comparison(name: &str) -> String {
    format!(
        "checks.compare: unknown comparison {name:?}; known: {}, or one of the commands show ip interface brief, show interfaces status, show interface brief, show cdp neighbors, show lldp neighbors, show ip route summary",
        crate::device::state::COMPARISON_NAMES.join(", ")
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpInterfacesOptions {
    /// `show ip interface brief`, `show interfaces status` or (NX-OS) `show interface brief`.
    #[serde(default)]
    command: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NeighborsOptions {
    #[serde(default = "cdp")]
    protocol: NeighborProtocolText,
}

fn cdp() -> NeighborProtocolText {
    NeighborProtocolText(crate::device::state::NeighborProtocol::Cdp)
}

struct NeighborProtocolText(crate::device::state::NeighborProtocol);

impl<'de> Deserialize<'de> for NeighborProtocolText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::device::state::NeighborProtocol;
        let s = String::deserialize(d)?;
        match s.trim().to_ascii_lowercase().as_str() {
            "cdp" => Ok(NeighborProtocolText(NeighborProtocol::Cdp)),
            "lldp" => Ok(NeighborProtocolText(NeighborProtocol::Lldp)),
            _ => Err(de::Error::custom(format!(
                "checks.compare.neighbors.protocol: {s:?} is neither cdp nor lldp"
            ))),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesOptions {
    #[serde(default)]
    tolerance: Option<ToleranceText>,
}

/// `5%` of the routes before, or a number of routes (`20`).
struct ToleranceText(crate::device::state::Tolerance);

impl<'de> Deserialize<'de> for ToleranceText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::device::state::Tolerance;
        struct V;
        impl Visitor<'_> for V {
            type Value = ToleranceText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a route tolerance: a percentage (\"5%\") or a number of routes (20)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ToleranceText, E> {
                Ok(ToleranceText(Tolerance::Routes(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ToleranceText, E> {
                u64::try_from(v)
                    .map(|v| ToleranceText(Tolerance::Routes(v)))
                    .map_err(|_| E::custom("checks.compare.routes.tolerance: cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ToleranceText, E> {
                let t = v.trim();
                if let Some(p) = t.strip_suffix('%') {
                    return match p.trim().parse::<f64>() {
                        Ok(p) if (0.0..=100.0).contains(&p) => {
                            Ok(ToleranceText(Tolerance::Percent(p)))
                        }
                        _ => Err(E::custom(format!(
                            "checks.compare.routes.tolerance: {v:?} is not a percentage from 0% to 100%"
                        ))),
                    };
                }
                t.parse::<u64>()
                    .map(|n| ToleranceText(Tolerance::Routes(n)))
                    .map_err(|_| {
                        E::custom(format!(
                            "checks.compare.routes.tolerance: {v:?} is neither a percentage like \"5%\" nor a number of routes"
                        ))
                    })
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for CompareEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::device::state::{
            Comparison, DEFAULT_ROUTE_TOLERANCE, InterfaceSource, NeighborProtocol,
        };
        fn up_interfaces<E: de::Error>(o: Option<UpInterfacesOptions>) -> Result<Comparison, E> {
            let source = match o.and_then(|o| o.command) {
                None => InterfaceSource::Default,
                Some(c) => match Comparison::for_command(&c) {
                    Some(Comparison::UpInterfaces { source }) => source,
                    _ => {
                        return Err(E::custom(format!(
                            "checks.compare.up_interfaces.command: {c:?} is not one of show ip interface brief, show interfaces status, show interface brief"
                        )));
                    }
                },
            };
            Ok(Comparison::UpInterfaces { source })
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CompareEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a comparison: up_interfaces, neighbors: {protocol: cdp}, routes: {tolerance: 5%}, or a show command")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CompareEntry, E> {
                let c = match v.trim() {
                    "up_interfaces" => up_interfaces(None)?,
                    "neighbors" => Comparison::Neighbors {
                        protocol: NeighborProtocol::Cdp,
                    },
                    "routes" => Comparison::Routes {
                        tolerance: DEFAULT_ROUTE_TOLERANCE,
                    },
                    other => Comparison::for_command(other)
                        .ok_or_else(|| E::custom(unknown_comparison(other)))?,
                };
                Ok(CompareEntry(c))
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<CompareEntry, A::Error> {
                let Some(name) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "checks.compare: an empty entry; name a comparison",
                    ));
                };
                let c = match name.as_str() {
                    "up_interfaces" => {
                        up_interfaces(map.next_value::<Option<UpInterfacesOptions>>()?)?
                    }
                    "neighbors" => Comparison::Neighbors {
                        protocol: map
                            .next_value::<Option<NeighborsOptions>>()?
                            .map_or(NeighborProtocol::Cdp, |o| o.protocol.0),
                    },
                    "routes" => Comparison::Routes {
                        tolerance: map
                            .next_value::<Option<RoutesOptions>>()?
                            .and_then(|o| o.tolerance)
                            .map_or(DEFAULT_ROUTE_TOLERANCE, |t| t.0),
                    },
                    other => return Err(de::Error::custom(unknown_comparison(other))),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "checks.compare: one comparison per entry; start {extra:?} on its own line with `- `"
                    )));
                }
                Ok(CompareEntry(c))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    /// Leave out devices already running the target version (default true).
    #[serde(default = "yes")]
    pub skip_if_current: bool,
    /// Copy and verify only: no boot change, no reload.
    #[serde(default)]
    pub stage_only: bool,
    /// Delete the previous image from flash once the device runs the new one.
    #[serde(default)]
    pub delete_old_image: bool,
    /// Install the image even on a device that runs a later version (default false: such a
    /// device fails with reason `downgrade`, untouched).
    #[serde(default)]
    pub allow_downgrade: bool,
    /// What to do with a device whose post-checks fail on the new image.
    #[serde(default)]
    pub rollback: Rollback,
}

/// `options.rollback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Rollback {
    /// Leave it on the new image, failed.
    #[default]
    Never,
    /// Put it back on the image it ran before (IOS bundle mode and NX-OS: boot variable, save,
    /// one more reload), and report it `rolled_back`.
    OnFailure,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            skip_if_current: true,
            stage_only: false,
            delete_old_image: false,
            allow_downgrade: false,
            rollback: Rollback::Never,
        }
    }
}

/// A playbook as read and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: String,
    pub(crate) targets: Targets,
    pub(crate) image: Spanned<ImageChoice>,
    #[serde(default, skip_serializing_if = "KickstartChoice::is_empty")]
    pub(crate) kickstart_image: KickstartChoice,
    #[serde(default)]
    pub(crate) transfer: Transfer,
    #[serde(default)]
    pub(crate) strategy: Strategy,
    #[serde(default)]
    pub(crate) schedule: Schedule,
    #[serde(default)]
    pub(crate) checks: Checks,
    #[serde(default)]
    pub(crate) options: Options,
    /// Webhooks told about this rollout, besides the service's own (`crate::notify`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) notify: Vec<crate::notify::Target>,
    /// `required`: the rollout waits in `awaiting_approval` until another operator or admin
    /// token approves it; `none`: it starts at once. Unset, the service's `--approval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) approval: Option<Approval>,
}

/// Whether a rollout needs a second person's approval before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// It starts when submitted.
    #[default]
    None,
    /// It waits until a token other than the submitter's (operator or admin) approves it.
    Required,
}

impl Playbook {
    pub(crate) fn wave_shares(&self) -> Vec<Share> {
        self.strategy.waves.iter().map(|s| s.value).collect()
    }

    /// The image for a device of this platform and model: the model's, else the platform's.
    pub(crate) fn image_for(&self, platform: Platform, model: Option<&str>) -> Option<String> {
        model
            .and_then(|m| self.image.value.models.get(m))
            .map(|s| s.value.clone())
            .or_else(|| self.image.value.for_platform(platform).map(str::to_string))
    }

    /// The kickstart image for an NX-OS device of this model, if the playbook names one.
    pub(crate) fn kickstart_for(&self, platform: Platform, model: Option<&str>) -> Option<String> {
        if platform != Platform::Nxos {
            return None;
        }
        model
            .and_then(|m| self.kickstart_image.models.get(m))
            .or(self.kickstart_image.nxos.as_ref())
            .map(|s| s.value.clone())
    }
}

fn located(at: serde_saphyr::Location, message: impl Into<String>) -> YamlError {
    YamlError::new(at.line(), at.column(), message)
}

/// Parse and validate a playbook.
pub fn parse(text: &str) -> Result<Playbook, YamlError> {
    let pb: Playbook = crate::yaml::from_str(text)?;
    if pb.name.trim().is_empty() {
        return Err(YamlError::new(1, 1, "name: a playbook needs a name"));
    }
    let t = &pb.targets;
    if !t.all
        && t.groups.is_empty()
        && t.tags.is_empty()
        && t.sites.is_empty()
        && t.platforms.is_empty()
        && t.names.is_empty()
    {
        return Err(YamlError::new(
            0,
            0,
            "targets: selects no device; give `all: true` or at least one of groups, tags, sites, platforms, names",
        ));
    }
    if !pb.image.value.golden && pb.image.value.all().is_empty() {
        return Err(YamlError::new(
            0,
            0,
            "image: names no image; give one per platform (ios, iosxe, nxos) or per model under models",
        ));
    }
    for img in pb.image.value.all() {
        if let Err(e) = crate::images::validate_file_name(&img.value) {
            return Err(located(img.referenced, format!("image: {e}")));
        }
    }
    for img in pb.kickstart_image.all() {
        if let Err(e) = crate::images::validate_file_name(&img.value) {
            return Err(located(img.referenced, format!("kickstart_image: {e}")));
        }
    }
    if let Some(b) = &pb.transfer.tftp_blocksize {
        if !(512..=8192).contains(&b.value) {
            return Err(located(
                b.referenced,
                format!(
                    "transfer.tftp_blocksize: {} is outside 512-8192, the range of IOS's `ip tftp blocksize`",
                    b.value
                ),
            ));
        }
        if !pb.transfer.may_use(TransferProtocol::Tftp) {
            return Err(located(
                b.referenced,
                "transfer.tftp_blocksize: applies to protocol tftp only",
            ));
        }
    }
    if let Err(message) = pb.transfer.check() {
        return Err(YamlError::new(0, 0, message));
    }
    if pb.strategy.concurrency == 0 {
        return Err(YamlError::new(
            0,
            0,
            "strategy.concurrency: must be at least 1",
        ));
    }
    let mut last: Option<&Spanned<Share>> = None;
    for w in &pb.strategy.waves {
        if let Some(prev) = last {
            let grows = match (prev.value, w.value) {
                (Share::Count(a), Share::Count(b)) => b > a,
                (Share::Percent(a), Share::Percent(b)) => b > a,
                _ => {
                    return Err(located(
                        w.referenced,
                        "strategy.waves: use either counts or percentages, not both",
                    ));
                }
            };
            if !grows {
                return Err(located(
                    w.referenced,
                    format!(
                        "strategy.waves: waves are cumulative, so {} must be larger than the wave before ({})",
                        w.value, prev.value
                    ),
                ));
            }
        }
        if w.value == Share::Count(0) {
            return Err(located(w.referenced, "strategy.waves: a wave of 0 devices"));
        }
        last = Some(w);
    }
    for (kind, checks) in [
        ("pre", &pb.checks.pre.commands),
        ("post", &pb.checks.post.commands),
    ] {
        for c in checks {
            if c.run.trim().is_empty() {
                return Err(YamlError::new(
                    0,
                    0,
                    format!("checks.{kind}.commands: empty command"),
                ));
            }
            let first = c
                .run
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            if !"show".starts_with(&first) || first.len() < 2 {
                return Err(YamlError::new(
                    0,
                    0,
                    format!(
                        "checks.{kind}.commands: {:?} is not a show command; checks may only read",
                        c.run
                    ),
                ));
            }
        }
    }
    Ok(pb)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const FULL: &str = r#"name: access-switches-to-15.2(7)E8
targets:
  groups: [access]
  exclude: [sw-lab-99]
image:
  ios: c2960x-universalk9-mz.152-7.E8.bin
transfer:
  protocol: tftp
  server: 10.0.0.5
strategy:
  canary: 1
  waves: ["25%", "100%"]
  concurrency: 20
  max_failures: 2
schedule:
  start_at: 2026-11-25T01:00:00Z
  windows: ["Mon-Fri 01:00-05:00 Europe/Berlin"]
checks:
  pre:
    free_space_margin: 10%
  post:
    commands:
      - run: show interfaces status | include connected
        must_contain: connected
options:
  skip_if_current: true
  stage_only: false
  delete_old_image: true
"#;

    #[test]
    fn design_example_parses() {
        let pb = parse(FULL).unwrap();
        assert_eq!(pb.strategy.canary, 1);
        assert_eq!(
            pb.wave_shares(),
            vec![Share::Percent(25.0), Share::Percent(100.0)]
        );
        assert_eq!(pb.strategy.max_failures, Share::Count(2));
        assert_eq!(pb.checks.pre.free_space_margin, Share::Percent(10.0));
        assert_eq!(pb.schedule.windows().len(), 1);
        assert_eq!(
            pb.image.value.for_platform(Platform::Ios),
            Some("c2960x-universalk9-mz.152-7.E8.bin")
        );
        assert!(pb.options.delete_old_image);
        assert!(
            !pb.options.allow_downgrade,
            "downgrades are refused by default"
        );
    }

    #[test]
    fn allow_downgrade_is_read_and_its_errors_located() {
        let with = |value: &str| {
            FULL.replace(
                "  delete_old_image: true",
                &format!("  delete_old_image: true\n  allow_downgrade: {value}"),
            )
        };
        assert!(parse(&with("true")).unwrap().options.allow_downgrade);
        assert!(!parse(&with("false")).unwrap().options.allow_downgrade);
        let e = err(&with("perhaps"));
        assert_eq!(e.line, 29, "{e}");
        let e = err(&FULL.replace("  delete_old_image: true", "  allow_downgrades: true"));
        assert_eq!(e.line, 28, "{e}");
        assert!(e.message.contains("allow_downgrades"), "{e}");
    }

    fn err(text: &str) -> YamlError {
        parse(text).unwrap_err()
    }

    #[test]
    fn kickstart_images_per_platform_and_model() {
        let pb = parse(&FULL.replace(
            "image:\n  ios: c2960x-universalk9-mz.152-7.E8.bin\n",
            "image:\n  nxos: n7000-s2-dk9.8.4.3.bin\nkickstart_image:\n  nxos: n7000-s2-kickstart.8.4.3.bin\n  models:\n    N5K-C5596UP: n5000-uk9-kickstart.7.3.8.N1.1.bin\n",
        ))
        .unwrap();
        let k = |p, m| pb.kickstart_for(p, m);
        assert_eq!(
            k(Platform::Nxos, Some("N7K-C7009")).as_deref(),
            Some("n7000-s2-kickstart.8.4.3.bin")
        );
        assert_eq!(
            k(Platform::Nxos, Some("N5K-C5596UP")).as_deref(),
            Some("n5000-uk9-kickstart.7.3.8.N1.1.bin")
        );
        assert_eq!(k(Platform::Ios, None), None);
        assert_eq!(
            pb.image_for(Platform::Nxos, None).as_deref(),
            Some("n7000-s2-dk9.8.4.3.bin")
        );
        let e = err(&FULL.replace(
            "image:\n  ios: c2960x-universalk9-mz.152-7.E8.bin\n",
            "image:\n  ios: c2960x-universalk9-mz.152-7.E8.bin\nkickstart_image:\n  nxos: a/b.bin\n",
        ));
        assert!(e.to_string().contains("kickstart_image:"), "{e}");
        let e = err(&FULL.replace(
            "image:\n  ios: c2960x-universalk9-mz.152-7.E8.bin\n",
            "image:\n  ios: c2960x-universalk9-mz.152-7.E8.bin\nkickstart_image:\n  ios: k.bin\n",
        ));
        assert!(e.to_string().contains("ios"), "{e}");
    }

    #[test]
    fn image_golden_is_one_word() {
        let pb = parse(&FULL.replace(
            "image:\n  ios: c2960x-universalk9-mz.152-7.E8.bin\n",
            "image: golden\n",
        ))
        .unwrap();
        assert!(pb.image.value.golden);
        assert!(pb.image.value.all().is_empty());
        assert_eq!(pb.image.referenced.line(), 5);
        // Written back as it was read.
        assert_eq!(
            serde_json::to_value(&pb.image.value).unwrap(),
            serde_json::json!("golden")
        );
        let e = err(&FULL.replace(
            "image:\n  ios: c2960x-universalk9-mz.152-7.E8.bin\n",
            "image: latest\n",
        ));
        assert!(e.message.contains("golden"), "{e}");
        assert_eq!(e.line, 5, "{e}");
        let pb = parse(FULL).unwrap();
        assert!(!pb.image.value.golden);
    }

    #[test]
    fn notify_targets_are_read_and_a_bad_url_is_located() {
        let text = format!(
            "{FULL}notify:\n  - url: https://hooks.slack.com/services/T/B/X\n    format: slack\n    events: [halted, finished]\n"
        );
        let pb = parse(&text).unwrap();
        assert_eq!(pb.notify.len(), 1);
        assert_eq!(pb.notify[0].format, crate::notify::Format::Slack);
        let lines = FULL.lines().count() as u64;
        let e = err(&format!(
            "{FULL}notify:\n  - url: ftp://hooks.example.com/x\n"
        ));
        assert_eq!(e.line, lines + 2, "{e}");
        assert!(e.column > 1, "{e}");
        assert!(e.message.contains("http:// or https://"), "{e}");
        let e = err(&format!(
            "{FULL}notify:\n  - url: https://x.example.com/h\n    events: [coffee]\n"
        ));
        assert_eq!(e.line, lines + 3, "{e}");
    }

    #[test]
    fn errors_are_located() {
        let e = err(&FULL.replace("  concurrency: 20", "  concurency: 20"));
        assert_eq!(e.line, 13, "{e}");
        assert!(e.message.contains("concurency"), "{e}");

        let e = err(&FULL.replace(r#"["25%", "100%"]"#, r#"["25%", "10%"]"#));
        assert_eq!(e.line, 12, "{e}");
        assert!(e.message.contains("cumulative"), "{e}");

        let e = err(&FULL.replace("Mon-Fri 01:00-05:00", "Mon-Fry 01:00-05:00"));
        assert_eq!(e.line, 17, "{e}");
        assert!(e.message.contains("weekday"), "{e}");

        let e = err(&FULL.replace("max_failures: 2", "max_failures: lots"));
        assert_eq!(e.line, 14, "{e}");

        let e = err(&FULL.replace("protocol: tftp", "protocol: rcp"));
        assert_eq!(e.line, 8, "{e}");
        assert!(e.message.contains("scp-push"), "{e}");

        let e = err(&FULL.replace("2026-11-25T01:00:00Z", "tomorrow"));
        assert_eq!(e.line, 16, "{e}");

        let e = err(&FULL.replace("c2960x-universalk9-mz.152-7.E8.bin", "../etc/passwd"));
        assert_eq!(e.line, 6, "{e}");

        let e = err(&FULL.replace("show interfaces", "reload in"));
        assert!(e.message.contains("not a show command"), "{e}");
    }

    #[test]
    fn compare_entries_by_name_with_options_or_by_command() {
        use crate::device::state::{Comparison, InterfaceSource, NeighborProtocol, Tolerance};
        let with =
            |entries: &str| FULL.replace("checks:\n", &format!("checks:\n  compare:\n{entries}"));
        let pb = parse(&with(
            "    - up_interfaces\n    - neighbors: {protocol: lldp}\n    - routes: {tolerance: 5%}\n    - show cdp neighbors\n    - up_interfaces: {command: show interfaces status}\n    - routes: {tolerance: 20}\n    - routes\n",
        ))
        .unwrap();
        let got: Vec<Comparison> = pb.checks.compare.iter().map(|c| c.0.clone()).collect();
        assert_eq!(
            got,
            [
                Comparison::UpInterfaces {
                    source: InterfaceSource::Default
                },
                Comparison::Neighbors {
                    protocol: NeighborProtocol::Lldp
                },
                Comparison::Routes {
                    tolerance: Tolerance::Percent(5.0)
                },
                Comparison::Neighbors {
                    protocol: NeighborProtocol::Cdp
                },
                Comparison::UpInterfaces {
                    source: InterfaceSource::InterfacesStatus
                },
                Comparison::Routes {
                    tolerance: Tolerance::Routes(20)
                },
                Comparison::Routes {
                    tolerance: Tolerance::Percent(5.0)
                },
            ]
        );
        // What is written back reads the same.
        let again: Vec<CompareEntry> =
            crate::yaml::from_str(&crate::yaml::to_string(&pb.checks.compare).unwrap()).unwrap();
        assert_eq!(again, pb.checks.compare);

        // `checks:` is on line 18: the entries start on line 20.
        let e = err(&with("    - up_interfaces\n    - uptime\n"));
        assert_eq!(e.line, 21, "{e}");
        assert!(e.message.contains("unknown comparison \"uptime\""), "{e}");
        assert!(
            e.message.contains("up_interfaces, neighbors, routes"),
            "{e}"
        );
        let e = err(&with("    - neighbors: {protocol: ospf}\n"));
        assert_eq!(e.line, 20, "{e}");
        assert!(e.message.contains("neither cdp nor lldp"), "{e}");
        let e = err(&with("    - routes: {tolerance: 150%}\n"));
        assert_eq!(e.line, 20, "{e}");
        assert!(e.message.contains("0% to 100%"), "{e}");
        let e = err(&with("    - routes: {tolerence: 5%}\n"));
        assert_eq!(e.line, 20, "{e}");
        assert!(e.message.contains("tolerence"), "{e}");
        let e = err(&with("    - up_interfaces: {command: show version}\n"));
        assert_eq!(e.line, 20, "{e}");
    }

    #[test]
    fn tftp_blocksize_is_checked_where_it_is_written() {
        let with = |block: &str| {
            FULL.replace(
                "  server: 10.0.0.5",
                &format!("  server: 10.0.0.5\n  tftp_blocksize: {block}"),
            )
        };
        let pb = parse(&with("8192")).unwrap();
        assert_eq!(pb.transfer.tftp_blocksize.map(|b| b.value), Some(8192));
        let e = err(&with("65464"));
        assert_eq!((e.line, e.column), (10, 19), "{e}");
        assert!(e.message.contains("512-8192"), "{e}");
        let e = err(&with("100"));
        assert_eq!(e.line, 10, "{e}");
        let e = err(&with("8192").replace("protocol: tftp", "protocol: ftp"));
        assert_eq!(e.line, 10, "{e}");
        assert!(e.message.contains("tftp only"), "{e}");
    }

    #[test]
    fn protocol_lists_sites_vrfs_and_source_interfaces() {
        use TransferProtocol::*;
        let pb = parse(&FULL.replace(
            "  protocol: tftp\n  server: 10.0.0.5\n",
            "  protocol: [https, ftp, tftp]\n  server: 10.0.0.5\n  vrf: Mgmt-vrf\n  sites:\n    branch-7: 192.0.2.9\n    dc-1:\n      protocol: scp-push\n      source_interface: GigabitEthernet0/0\n    nx:\n      vrf: management\n      protocol: sftp\n",
        ))
        .unwrap();
        let t = &pb.transfer;
        assert_eq!(t.protocol.0, vec![Https, Ftp, Tftp]);
        let all = t.for_site(None);
        assert_eq!(
            all,
            DeviceTransfer {
                server: Some("10.0.0.5".into()),
                protocols: vec![Https, Ftp, Tftp],
                vrf: Some("Mgmt-vrf".into()),
                source_interface: None,
            }
        );
        // A site given as an address keeps everything else.
        let branch = t.for_site(Some("branch-7"));
        assert_eq!(branch.server.as_deref(), Some("192.0.2.9"));
        assert_eq!(branch.protocols, vec![Https, Ftp, Tftp]);
        let dc = t.for_site(Some("dc-1"));
        assert_eq!(dc.protocols, vec![ScpPush]);
        assert_eq!(dc.server.as_deref(), Some("10.0.0.5"));
        assert_eq!(dc.source_interface.as_deref(), Some("GigabitEthernet0/0"));
        assert_eq!(dc.vrf.as_deref(), Some("Mgmt-vrf"));
        let nx = t.for_site(Some("nx"));
        assert_eq!(
            (nx.protocols, nx.vrf.as_deref()),
            (vec![Sftp], Some("management"))
        );
        assert_eq!(t.for_site(Some("elsewhere")), all);
        assert!(t.may_use(ScpPush) && t.may_use(Tftp) && !t.may_use(Scp));

        // Each setting is checked, and named when it is wrong.
        let bad = |from: &str, to: &str| err(&FULL.replace(from, to)).message;
        let m = bad("protocol: tftp", "protocol: [https, https]");
        assert!(m.contains("https is listed twice"), "{m}");
        let m = bad("protocol: tftp", "protocol: []");
        assert!(m.contains("empty list"), "{m}");
        let m = bad("protocol: tftp", "protocol: [https, gopher]");
        assert!(m.contains("gopher"), "{m}");
        let m = bad(
            "  server: 10.0.0.5",
            "  server: 10.0.0.5\n  vrf: \"Mgmt vrf\\nreload\"",
        );
        assert!(m.contains("transfer.vrf"), "{m}");
        let m = bad(
            "  server: 10.0.0.5",
            "  server: 10.0.0.5\n  sites:\n    b:\n      source_interface: \"Gi0/0 ; reload\"",
        );
        assert!(m.contains("transfer.sites.b.source_interface"), "{m}");
        let m = bad(
            "  server: 10.0.0.5",
            "  server: 10.0.0.5\n  sites:\n    b:\n      servr: 10.0.0.6",
        );
        assert!(m.contains("servr"), "{m}");
        // tftp_blocksize needs TFTP somewhere in the lists.
        let with_block = FULL.replace(
            "  server: 10.0.0.5",
            "  server: 10.0.0.5\n  tftp_blocksize: 8192",
        );
        assert!(parse(&with_block.replace("protocol: tftp", "protocol: [https, tftp]")).is_ok());
        let m = err(&with_block.replace("protocol: tftp", "protocol: [https, ftp]")).message;
        assert!(m.contains("tftp only"), "{m}");
    }

    #[test]
    fn shares_and_durations() {
        assert_eq!(Share::Percent(25.0).of(8), 2);
        assert_eq!(Share::Percent(1.0).of(10), 1);
        assert_eq!(Share::Count(5).of(3), 3);
        assert_eq!(parse_duration("1h 30m").unwrap(), 5400);
        assert_eq!(parse_duration("45").unwrap(), 45);
        assert!(parse_duration("3 fortnights").is_err());
    }
}
