//! The inventory: devices, their groups and tags, credentials and discovered facts.
//!
//! Types here are parsed at the edge (API, YAML import) so the rest of fleetup never sees a
//! raw, unchecked device description.

pub mod yaml;

use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// The operating system family, which selects the driver.
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
pub enum Platform {
    /// Classic IOS, bundle mode (`boot system flash:IMAGE.bin`).
    Ios,
    /// IOS-XE, install mode (`install add file … activate commit`).
    Iosxe,
    /// NX-OS (`install all nxos bootflash:…`).
    Nxos,
}

impl Platform {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Iosxe => "iosxe",
            Platform::Nxos => "nxos",
        }
    }

    /// Every platform, in the order the docs list them.
    pub(crate) const ALL: [Platform; 3] = [Platform::Ios, Platform::Iosxe, Platform::Nxos];

    /// Exactly one of the names [`Platform::as_str`] gives (the enum of the OpenAPI document).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a device description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub(crate) struct InvalidDevice {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidDevice {
    InvalidDevice {
        field,
        message: message.into(),
    }
}

// The rules of a device description, each stated once: the validators below match these
// expressions, and the OpenAPI document publishes the same ones as `pattern`s.

/// A device name: 1 to 128 letters, digits and `. - _ : / @`.
pub const NAME_PATTERN: &str = r"^[A-Za-z0-9._:/@-]{1,128}$";

/// A host: a DNS name (dot-separated labels of letters, digits and inner hyphens, at most 63
/// characters each; an IPv4 address has this shape too), or an IPv6 address in any of its text
/// forms (`::1`, `2001:db8::7`, `::ffff:192.0.2.1`), without a zone. At most [`HOST_MAX_LEN`].
pub const HOST_PATTERN: &str = concat!(
    r"^(?:",
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*",
    r"|(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}",
    r"|(?:[0-9A-Fa-f]{1,4}:){1,7}:",
    r"|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}",
    r"|(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}",
    r"|(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}",
    r"|(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}",
    r"|(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}",
    r"|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}",
    r"|:(?::[0-9A-Fa-f]{1,4}){1,7}",
    r"|::",
    r"|::[Ff]{4}:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}",
    r")$"
);

/// The longest host, in characters (the DNS limit).
pub const HOST_MAX_LEN: usize = 253;

/// A group, tag or site: 1 to 64 letters, digits and `. - _ / :`.
pub const LABEL_PATTERN: &str = r"^[A-Za-z0-9._/:-]{1,64}$";

/// The name of an environment variable holding a secret.
pub const ENV_NAME_PATTERN: &str = r"^[A-Za-z0-9_]+$";

fn compile(pattern: &str) -> regex::Regex {
    regex::Regex::new(pattern).expect("static regex")
}

static IS_NAME: LazyLock<regex::Regex> = LazyLock::new(|| compile(NAME_PATTERN));
static IS_HOST: LazyLock<regex::Regex> = LazyLock::new(|| compile(HOST_PATTERN));
static IS_LABEL: LazyLock<regex::Regex> = LazyLock::new(|| compile(LABEL_PATTERN));
static IS_ENV_NAME: LazyLock<regex::Regex> = LazyLock::new(|| compile(ENV_NAME_PATTERN));

/// A device name: what the engineer calls the box (usually its hostname).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub(crate) struct DeviceName(String);

impl DeviceName {
    pub(crate) fn parse(s: &str) -> Result<Self, InvalidDevice> {
        if !IS_NAME.is_match(s) {
            return Err(invalid(
                "name",
                format!("{s:?} must be 1 to 128 letters, digits and . - _ : / @"),
            ));
        }
        Ok(Self(s.to_string()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated description of a device as an operator gives it (API or YAML).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub(crate) name: DeviceName,
    pub host: String,
    pub port: u16,
    pub platform: Platform,
    pub site: Option<String>,
    pub model: Option<String>,
    pub groups: Vec<String>,
    pub tags: Vec<String>,
    pub credentials: CredentialSpec,
}

/// Login credentials. A secret is given inline or as the name of an environment variable of
/// the service, so that inventories in git need not hold passwords.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialSpec {
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub enable_secret: Option<String>,
    pub enable_secret_env: Option<String>,
}

impl CredentialSpec {
    pub(crate) fn has_password(&self) -> bool {
        self.password.is_some() || self.password_env.is_some()
    }

    pub(crate) fn has_enable_secret(&self) -> bool {
        self.enable_secret.is_some() || self.enable_secret_env.is_some()
    }

    /// Secrets this description leaves out keep their stored value, as a re-import of an
    /// export without secrets (which leaves them out) or a `PUT` (they are never shown) expects.
    pub fn keep_secrets_from(&mut self, stored: &CredentialSpec) {
        if !self.has_password() {
            self.password = stored.password.clone();
            self.password_env = stored.password_env.clone();
        }
        if !self.has_enable_secret() {
            self.enable_secret = stored.enable_secret.clone();
            self.enable_secret_env = stored.enable_secret_env.clone();
        }
    }
}

/// Facts read from the device itself (`show version`, `show boot`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Facts {
    pub version: Option<String>,
    pub image: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub uptime: Option<String>,
    pub config_register: Option<String>,
    /// RFC 3339 time of the last successful contact.
    pub last_seen: Option<String>,
    /// A stack's members as `show switch` and `show version` list them; empty on a single
    /// unit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
}

/// One member of a stack, as the device last reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    /// The stack member number.
    pub number: u32,
    /// `Active`, `Standby` or `Member`.
    pub role: Option<String>,
    /// `Ready`, `V-Mismatch`, `Removed`, `Provisioned`, ... as `show switch` prints it.
    pub state: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub version: Option<String>,
}

impl Facts {
    /// Every member of a stack runs `version` (true on a single unit): a stack with one member
    /// behind is not current.
    pub(crate) fn members_run(&self, version: &str) -> bool {
        self.members.iter().all(|m| {
            m.version
                .as_deref()
                .is_none_or(|v| crate::device::members::same_version(v, version))
        })
    }
}

/// The facts read from a device at one time (its facts history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FactsSnapshot {
    pub version: Option<String>,
    pub image: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub uptime: Option<String>,
    /// RFC 3339 time the facts were read.
    pub at: String,
}

/// A device as stored, secrets included. Never serialised: the API shows [`DeviceView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: i64,
    pub spec: DeviceSpec,
    pub host_key: Option<String>,
    pub facts: Facts,
    pub created_at: String,
    pub updated_at: String,
    /// The source of truth that keeps the device, if one does (`fleetup inventory sync`).
    pub source: Option<SourceLink>,
}

/// Where a device kept by a source of truth comes from (docs/sync.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceLink {
    /// The sync scope that keeps it: kind, URL and filter (`nautobot https://nb.example.com site=dc1`).
    pub scope: String,
    /// Its id in the source (Nautobot's UUID, NetBox's number).
    pub id: String,
    /// When a sync of that scope stopped finding it (RFC 3339). An absent device keeps its
    /// history but is never targeted by a rollout.
    pub absent_since: Option<String>,
}

impl Device {
    /// Gone from the source of truth that kept it: kept, never targeted.
    pub(crate) fn absent(&self) -> Option<&str> {
        self.source.as_ref().and_then(|s| s.absent_since.as_deref())
    }
}

/// A resolved secret, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Credentials resolved for a login attempt.
#[derive(Debug, Clone)]
pub struct Login {
    pub username: String,
    pub password: Option<Secret>,
    pub enable_secret: Option<Secret>,
}

impl Device {
    pub(crate) fn name(&self) -> &str {
        self.spec.name.as_str()
    }

    /// Resolve inline or environment-variable credentials for a login.
    pub(crate) fn login(&self) -> Result<Login, String> {
        let c = &self.spec.credentials;
        let username = c
            .username
            .clone()
            .ok_or_else(|| format!("device {}: no username in the inventory", self.name()))?;
        let resolve = |inline: &Option<String>, env: &Option<String>, what: &str| {
            if let Some(v) = inline {
                return Ok(Some(Secret(v.clone())));
            }
            if let Some(var) = env {
                return std::env::var(var).map(|v| Some(Secret(v))).map_err(|_| {
                    format!(
                        "device {}: {what} comes from environment variable {var}, which is not set for the service",
                        self.name()
                    )
                });
            }
            Ok(None)
        };
        Ok(Login {
            username,
            password: resolve(&c.password, &c.password_env, "password")?,
            enable_secret: resolve(&c.enable_secret, &c.enable_secret_env, "enable secret")?,
        })
    }
}

/// What the API shows of a device: everything but secrets.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub platform: Platform,
    pub site: Option<String>,
    pub model: Option<String>,
    pub groups: Vec<String>,
    pub tags: Vec<String>,
    pub username: Option<String>,
    /// Whether a password (inline or by environment variable) is configured.
    pub has_password: bool,
    /// The environment variable the password is read from, if any (a name, not a secret).
    pub password_env: Option<String>,
    pub has_enable_secret: bool,
    pub enable_secret_env: Option<String>,
    /// SSH host key pinned at first contact (OpenSSH format).
    pub host_key: Option<String>,
    pub facts: Facts,
    pub created_at: String,
    pub updated_at: String,
    /// The source of truth that keeps the device (absent from it: `absent_since` is set).
    pub source: Option<SourceLink>,
}

impl From<&Device> for DeviceView {
    fn from(d: &Device) -> Self {
        let s = &d.spec;
        DeviceView {
            id: d.id,
            name: s.name.to_string(),
            host: s.host.clone(),
            port: s.port,
            platform: s.platform,
            site: s.site.clone(),
            model: s.model.clone().or_else(|| d.facts.model.clone()),
            groups: s.groups.clone(),
            tags: s.tags.clone(),
            username: s.credentials.username.clone(),
            has_password: s.credentials.has_password(),
            password_env: s.credentials.password_env.clone(),
            has_enable_secret: s.credentials.has_enable_secret(),
            enable_secret_env: s.credentials.enable_secret_env.clone(),
            host_key: d.host_key.clone(),
            facts: d.facts.clone(),
            created_at: d.created_at.clone(),
            updated_at: d.updated_at.clone(),
            source: d.source.clone(),
        }
    }
}

/// Validate a host: an IP address or a DNS name ([`HOST_PATTERN`], [`HOST_MAX_LEN`]).
pub(crate) fn parse_host(s: &str) -> Result<String, InvalidDevice> {
    if s.len() <= HOST_MAX_LEN && IS_HOST.is_match(s) {
        Ok(s.to_string())
    } else {
        Err(invalid(
            "host",
            format!("{s:?} is neither an IP address nor a host name"),
        ))
    }
}

/// Validate a group, tag or site label ([`LABEL_PATTERN`]).
pub(crate) fn parse_label(field: &'static str, s: &str) -> Result<String, InvalidDevice> {
    if !IS_LABEL.is_match(s) {
        return Err(invalid(
            field,
            format!("{s:?} must be 1 to 64 letters, digits and . - _ / :"),
        ));
    }
    Ok(s.to_string())
}

/// A port number as JSON Schema's `integer` means it: `22` or `22.0`, or null.
pub(crate) fn optional_port<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u16>, D::Error> {
    struct Port;
    impl<'de> serde::de::Visitor<'de> for Port {
        type Value = Option<u16>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a port number (an integer up to 65535)")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            u16::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u16::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.fract() == 0.0 && (0.0..=65535.0).contains(&v) {
                Ok(Some(v as u16))
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
            }
        }
    }
    d.deserialize_option(Port)
}

/// Input shape shared by the API and the YAML import, before validation (its OpenAPI schema,
/// with the patterns above, is written out in `api::schema`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceInput {
    pub name: String,
    pub host: String,
    #[serde(default, deserialize_with = "optional_port")]
    pub port: Option<u16>,
    pub platform: String,
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub enable_secret: Option<String>,
    #[serde(default)]
    pub enable_secret_env: Option<String>,
}

impl DeviceInput {
    pub(crate) fn validate(&self) -> Result<DeviceSpec, InvalidDevice> {
        let name = DeviceName::parse(&self.name)?;
        let host = parse_host(&self.host)?;
        let port = self.port.unwrap_or(22);
        if port == 0 {
            return Err(invalid("port", "must be 1 to 65535"));
        }
        let platform = Platform::parse(&self.platform).ok_or_else(|| {
            invalid(
                "platform",
                format!("{:?} is not one of ios, iosxe, nxos", self.platform),
            )
        })?;
        let site = self
            .site
            .as_deref()
            .map(|s| parse_label("site", s))
            .transpose()?;
        let mut groups = self
            .groups
            .iter()
            .map(|g| parse_label("groups", g))
            .collect::<Result<Vec<_>, _>>()?;
        groups.sort();
        groups.dedup();
        let mut tags = self
            .tags
            .iter()
            .map(|g| parse_label("tags", g))
            .collect::<Result<Vec<_>, _>>()?;
        tags.sort();
        tags.dedup();
        if self.password.is_some() && self.password_env.is_some() {
            return Err(invalid(
                "password_env",
                "give either password or password_env, not both",
            ));
        }
        if self.enable_secret.is_some() && self.enable_secret_env.is_some() {
            return Err(invalid(
                "enable_secret_env",
                "give either enable_secret or enable_secret_env, not both",
            ));
        }
        for (field, v) in [
            ("password_env", &self.password_env),
            ("enable_secret_env", &self.enable_secret_env),
        ] {
            if let Some(v) = v
                && !IS_ENV_NAME.is_match(v)
            {
                return Err(invalid(
                    field,
                    format!("{v:?} is not an environment variable name"),
                ));
            }
        }
        Ok(DeviceSpec {
            name,
            host,
            port,
            platform,
            site,
            model: self.model.clone().filter(|m| !m.trim().is_empty()),
            groups,
            tags,
            credentials: CredentialSpec {
                username: self.username.clone().filter(|u| !u.is_empty()),
                password: self.password.clone(),
                password_env: self.password_env.clone(),
                enable_secret: self.enable_secret.clone(),
                enable_secret_env: self.enable_secret_env.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> DeviceInput {
        DeviceInput {
            name: "core-sw.1-a".into(),
            host: "10.0.0.1".into(),
            platform: "ios".into(),
            ..Default::default()
        }
    }

    #[test]
    fn valid_device_gets_defaults() {
        let spec = input().validate().unwrap();
        assert_eq!(spec.port, 22);
        assert_eq!(spec.platform, Platform::Ios);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut i = input();
        i.platform = "junos".into();
        assert_eq!(i.validate().unwrap_err().field, "platform");
        let mut i = input();
        i.host = "bad host!".into();
        assert_eq!(i.validate().unwrap_err().field, "host");
        let mut i = input();
        i.name = "a b".into();
        assert_eq!(i.validate().unwrap_err().field, "name");
    }

    #[test]
    fn hosts_are_dns_names_or_ip_addresses() {
        for ok in [
            "10.0.0.1",
            "sw1",
            "core-sw.example.net",
            "a1-b.c",
            "::1",
            "::",
            "2001:db8::7",
            "fe80::1:2:3:4",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "1::8",
            "::ffff:192.0.2.1",
        ] {
            assert!(parse_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " 10.0.0.1",
            "10.0.0.1 ",
            "-sw",
            "sw-",
            "a..b",
            "a.",
            "bad host!",
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "fe80::1%eth0",
            "::ffff:256.0.0.1",
            &"a".repeat(64),
            &["a"; 128].join("."),
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
        // Every IPv6 form the pattern takes is one the socket layer reads as an address.
        for v6 in [
            "::1",
            "::",
            "2001:db8::7",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1::8",
            "::ffff:192.0.2.1",
        ] {
            assert!(v6.parse::<std::net::Ipv6Addr>().is_ok(), "{v6}");
        }
    }

    #[test]
    fn names_labels_and_platforms_are_exact() {
        for bad in [" sw1", "sw1 ", "a b", "", &"n".repeat(129)] {
            assert!(DeviceName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(DeviceName::parse(&"n".repeat(128)).is_ok());
        assert!(DeviceName::parse("rtr-1.ber/ge0:1@lab").is_ok());
        assert!(parse_label("site", " berlin").is_err());
        assert!(parse_label("site", &"s".repeat(65)).is_err());
        assert!(parse_label("site", "eu/berlin:1").is_ok());
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.as_str()), Some(p));
        }
        for bad in ["IOS", "ios-xe", "nx-os", " ios", ""] {
            assert_eq!(Platform::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn secret_debug_is_masked() {
        assert_eq!(format!("{:?}", Secret("cisco".into())), "Secret(***)");
    }
}
