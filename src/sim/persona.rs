//! A persona: what kind of device a lab device pretends to be. It is data (YAML), so a user can
//! record the outputs of a real device and replay them with `--persona FILE`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::inventory::Platform;
use crate::yaml::YamlError;

/// Personas shipped inside the binary, by name.
const BUILT_IN: &[(&str, &str)] = &[
    ("c2960x", include_str!("../../personas/c2960x.yaml")),
    ("c9300", include_str!("../../personas/c9300.yaml")),
    ("n9k", include_str!("../../personas/n9k.yaml")),
    ("n7k", include_str!("../../personas/n7k.yaml")),
    (
        "c9300-stack",
        include_str!("../../personas/c9300-stack.yaml"),
    ),
    (
        "c2960x-stack",
        include_str!("../../personas/c2960x-stack.yaml"),
    ),
    (
        "c9400-dual-sup",
        include_str!("../../personas/c9400-dual-sup.yaml"),
    ),
    (
        "n9k-dual-sup",
        include_str!("../../personas/n9k-dual-sup.yaml"),
    ),
    (
        "c9400-dual-sup-bundle",
        include_str!("../../personas/c9400-dual-sup-bundle.yaml"),
    ),
];

/// A persona written as another one with a few fields changed (`extends: c9400-dual-sup`):
/// the same device booted another way.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Variant {
    extends: String,
    name: String,
    /// IOS-XE booted from `packages.conf` (install mode) or from the `.bin` (bundle mode).
    #[serde(default)]
    install_mode: Option<bool>,
}

/// Just enough of a persona document to tell a variant from a whole persona.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    extends: Option<String>,
}

/// Placeholders a template may use; anything else is refused when the persona is loaded, so a
/// typo shows up at start and not in the middle of a rehearsal.
pub(super) const PLACEHOLDERS: &[&str] = &[
    "hostname",
    "model",
    "version",
    "image",
    "image_path",
    "image_upper",
    "platform_upper",
    "uptime",
    "restarted_at",
    "returned_by",
    "reload_reason",
    "serial",
    "mac",
    "config_register",
    "boot_path_list",
    "boot_variable",
    "flash_size",
    "flash_free",
    "clock",
    "version_plain",
    "train",
    "uptime_nxos",
    "mac_dotted",
    "kickstart_image",
    "kickstart_path",
    "kickstart_version",
    "boot_running",
    "kickstart_running",
    "members_table",
    "members_sections",
    "members_boot",
];

#[derive(Debug, thiserror::Error)]
pub enum PersonaError {
    #[error("unknown persona {0:?}: use one of {list} or the path of a persona YAML file", list = built_in_names().join(", "))]
    Unknown(String),
    #[error("cannot read persona file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("persona {name}: {source}")]
    Yaml {
        name: String,
        #[source]
        source: YamlError,
    },
    #[error("persona {name}: {message}")]
    Invalid { name: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InitialFile {
    pub name: String,
    pub size: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Templates {
    pub show_version: String,
    pub show_boot: String,
    #[serde(default)]
    pub show_bootvar: Option<String>,
    pub show_file_systems: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Persona {
    pub name: String,
    pub platform: Platform,
    pub model: String,
    /// The flash file system's name as the CLI shows it (`flash`, `bootflash`).
    pub filesystem: String,
    pub flash_size: u64,
    #[serde(default = "default_nvram")]
    pub nvram_size: u64,
    /// Shown in `Loading X from H (via IFACE)`.
    pub mgmt_interface: String,
    /// The VRF the management port is in (`Mgmt-vrf` on a Catalyst 9000, `management` on a
    /// Nexus): a copy reaches a server only when it names this VRF or, on IOS and IOS-XE,
    /// its protocol's client leaves from `mgmt_interface` (`ip tftp source-interface …`).
    /// Unset, every copy reaches its server.
    #[serde(default)]
    pub mgmt_vrf: Option<String>,
    /// Catalyst switches set the boot loader's BOOT variable as soon as `boot system` is typed,
    /// and one `boot system` line replaces the list; routers append and apply from startup-config.
    #[serde(default)]
    pub boot_system_immediate: bool,
    pub initial_image: String,
    pub initial_image_size: u64,
    /// NX-OS with separate kickstart and system images (Nexus 5000/7000): the kickstart the
    /// device boots first; `initial_image` is then the system image, and the device upgrades
    /// with `install all kickstart K system S`.
    #[serde(default)]
    pub kickstart_image: Option<String>,
    #[serde(default)]
    pub kickstart_image_size: u64,
    /// The configuration register of the capture the persona follows (`0x102` on the Catalyst
    /// 9300's, `0xF` on the 2960-X's); NX-OS prints none.
    #[serde(default = "default_config_register")]
    pub config_register: String,
    /// IOS-XE install mode: images are expanded into `.pkg` files and booted through
    /// `packages.conf` (`install add file … activate commit`).
    #[serde(default)]
    pub install_mode: bool,
    /// The attribute column of `dir` (`-rwx` on Catalyst IOS, `-rw-` on IOS-XE).
    #[serde(default = "default_dir_attributes")]
    pub dir_attributes: String,
    #[serde(default)]
    pub initial_files: Vec<InitialFile>,
    pub templates: Templates,
    /// Extra commands answered with a fixed (templated) output.
    #[serde(default)]
    pub commands: BTreeMap<String, String>,
    /// The front-panel ports that `show ip interface brief`, `show interfaces status`, CDP and
    /// LLDP report (the management interface is added by itself).
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// A stack of switches or a chassis with two supervisors (`src/sim/members.rs`).
    #[serde(default)]
    pub members: Option<MembersSpec>,
}

/// What the device is made of besides its active unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MembersKind {
    /// StackWise / FlexStack members: `show switch`, one flash per member.
    Stack,
    /// Two supervisors (route processors) in one chassis: `show redundancy`, `show module`.
    Supervisors,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MembersSpec {
    pub kind: MembersKind,
    /// Stack member numbers, or supervisor slots; the first is the active one.
    pub slots: Vec<u32>,
    /// The supervisor's model (`C9400-SUP-1`, `N9K-SUP-A`).
    #[serde(default)]
    pub model: Option<String>,
    /// Front-panel ports per stack member (`show version`'s `Ports` column).
    #[serde(default)]
    pub ports: u32,
}

/// One port of the persona, as its captures show it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Interface {
    /// Full name (`GigabitEthernet1/0/1`, `Ethernet1/49`).
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Whether a cable is in: `connected`, else `notconnect`.
    #[serde(default)]
    pub connected: bool,
    /// `show interfaces status` columns.
    #[serde(default = "default_vlan")]
    pub vlan: String,
    #[serde(default = "default_auto")]
    pub duplex: String,
    #[serde(default = "default_auto")]
    pub speed: String,
    #[serde(default)]
    pub r#type: String,
    /// A routed port's address (`show ip interface brief`); none: `unassigned`.
    #[serde(default)]
    pub ip: Option<String>,
    /// What CDP and LLDP see on the port while it is up.
    #[serde(default)]
    pub neighbor: Option<Neighbor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Neighbor {
    pub device: String,
    pub platform: String,
    /// The neighbor's port, full name.
    pub port: String,
    pub ip: String,
    /// CDP capability letters (`R S I`).
    pub capability: String,
    /// The first line of the neighbor's `show version`, as CDP detail shows it.
    #[serde(default)]
    pub version: String,
}

fn default_vlan() -> String {
    "1".to_string()
}

fn default_auto() -> String {
    "auto".to_string()
}

fn default_dir_attributes() -> String {
    "-rwx".to_string()
}

fn default_config_register() -> String {
    "0xF".to_string()
}

fn default_nvram() -> u64 {
    524288
}

pub(super) fn built_in_names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|(n, _)| *n).collect()
}

impl Persona {
    /// A built-in persona by name, or a YAML file when `spec` names one.
    pub(crate) fn load(spec: &str) -> Result<Persona, PersonaError> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == spec) {
            return Persona::parse(spec, text);
        }
        let path = Path::new(spec);
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") || path.exists() {
            let text = std::fs::read_to_string(path).map_err(|source| PersonaError::Read {
                path: spec.to_string(),
                source,
            })?;
            return Persona::parse(spec, &text);
        }
        Err(PersonaError::Unknown(spec.to_string()))
    }

    pub(crate) fn parse(name: &str, text: &str) -> Result<Persona, PersonaError> {
        let yaml_error = |source| PersonaError::Yaml {
            name: name.to_string(),
            source,
        };
        let probe: Probe = crate::yaml::from_str(text).map_err(yaml_error)?;
        if probe.extends.is_some() {
            let variant: Variant = crate::yaml::from_str(text).map_err(yaml_error)?;
            // Only a built-in persona can be extended: a file naming a file could loop.
            let Some((_, base_text)) = BUILT_IN.iter().find(|(n, _)| *n == variant.extends) else {
                return Err(PersonaError::Invalid {
                    name: name.to_string(),
                    message: format!(
                        "extends: {:?} is not a built-in persona (known: {})",
                        variant.extends,
                        built_in_names().join(", ")
                    ),
                });
            };
            let mut persona = Persona::parse(&variant.extends, base_text)?;
            persona.name = variant.name;
            if let Some(install_mode) = variant.install_mode {
                persona.install_mode = install_mode;
            }
            persona.validate()?;
            return Ok(persona);
        }
        let persona: Persona =
            crate::yaml::from_str(text).map_err(|source| PersonaError::Yaml {
                name: name.to_string(),
                source,
            })?;
        persona.validate()?;
        Ok(persona)
    }

    /// Each member or supervisor boots from a flash of its own: a classic IOS stack, and two
    /// IOS or IOS-XE supervisors in bundle mode. Install mode and NX-OS copy to every member
    /// and supervisor by themselves.
    pub(super) fn separate_flash(&self) -> bool {
        self.members.is_some() && !self.install_mode && self.platform != Platform::Nxos
    }

    fn validate(&self) -> Result<(), PersonaError> {
        let bad = |message: String| {
            Err(PersonaError::Invalid {
                name: self.name.clone(),
                message,
            })
        };
        if self.install_mode && self.platform != Platform::Iosxe {
            return bad("install_mode needs platform iosxe".to_string());
        }
        if crate::images::validate_file_name(&self.initial_image).is_err() {
            return bad(format!(
                "initial_image {:?} is not a valid file name",
                self.initial_image
            ));
        }
        if let Some(k) = &self.kickstart_image {
            if self.platform != Platform::Nxos {
                return bad("kickstart_image needs platform nxos".to_string());
            }
            if crate::images::validate_file_name(k).is_err() {
                return bad(format!("kickstart_image {k:?} is not a valid file name"));
            }
        }
        if let Some(m) = &self.members {
            let mut seen = std::collections::BTreeSet::new();
            if m.slots.len() < 2 || m.slots.len() > 9 {
                return bad("members.slots must list 2 to 9 members".to_string());
            }
            if m.slots
                .iter()
                .any(|s| *s == 0 || *s > 64 || !seen.insert(*s))
            {
                return bad("members.slots must be distinct numbers from 1 to 64".to_string());
            }
            if m.kind == MembersKind::Supervisors && m.slots.len() != 2 {
                return bad("members of kind supervisors must list 2 slots".to_string());
            }
        }
        let reg = self.config_register.to_ascii_lowercase();
        let hex = reg.strip_prefix("0x");
        if hex.is_none_or(|h| u16::from_str_radix(h, 16).is_err()) {
            return bad(format!(
                "config_register {:?} is not a hex value like 0x2102",
                self.config_register
            ));
        }
        for f in &self.initial_files {
            if crate::images::validate_file_name(&f.name).is_err() {
                return bad(format!(
                    "initial file {:?} is not a valid file name",
                    f.name
                ));
            }
        }
        let used: u64 = self.initial_image_size
            + self.kickstart_image_size
            + self.initial_files.iter().map(|f| f.size).sum::<u64>();
        if used > self.flash_size {
            return bad(format!(
                "initial files ({used} bytes) do not fit in flash_size ({} bytes)",
                self.flash_size
            ));
        }
        if self.filesystem.is_empty() || !self.filesystem.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return bad(format!(
                "filesystem {:?} must be a plain name like flash",
                self.filesystem
            ));
        }
        let mut all: Vec<(&str, &str)> = vec![
            ("show_version", &self.templates.show_version),
            ("show_boot", &self.templates.show_boot),
            ("show_file_systems", &self.templates.show_file_systems),
        ];
        if let Some(t) = &self.templates.show_bootvar {
            all.push(("show_bootvar", t));
        }
        for (k, v) in &self.commands {
            if k.split_whitespace().next().is_none() {
                return bad("a command key is empty".to_string());
            }
            all.push((k, v));
        }
        for (what, template) in all {
            if let Err(message) = check_template(template) {
                return bad(format!("template {what}: {message}"));
            }
        }
        Ok(())
    }
}

/// One `{name}` / `{name:>N}` / `{name:<N}` placeholder.
struct Placeholder<'a> {
    name: &'a str,
    align: Option<(char, usize)>,
}

fn parse_placeholder(inner: &str) -> Result<Placeholder<'_>, String> {
    let (name, spec) = match inner.split_once(':') {
        Some((n, s)) => (n, Some(s)),
        None => (inner, None),
    };
    if !PLACEHOLDERS.contains(&name) {
        return Err(format!(
            "unknown placeholder {{{name}}} (known: {})",
            PLACEHOLDERS.join(", ")
        ));
    }
    let align = match spec {
        None => None,
        Some(s) => {
            let mut chars = s.chars();
            let dir = chars.next().filter(|c| *c == '<' || *c == '>');
            let width = chars.as_str().parse::<usize>().ok().filter(|w| *w <= 200);
            match (dir, width) {
                (Some(d), Some(w)) => Some((d, w)),
                _ => {
                    return Err(format!(
                        "bad alignment {{{inner}}}: use {{{name}:<N}} or {{{name}:>N}}"
                    ));
                }
            }
        }
    };
    Ok(Placeholder { name, align })
}

fn check_template(t: &str) -> Result<(), String> {
    render_with(t, |_| Some(String::new())).map(|_| ())
}

/// Substitute placeholders. `{{` and `}}` stand for literal braces.
pub(super) fn render(template: &str, vars: &BTreeMap<&str, String>) -> String {
    render_with(template, |name| vars.get(name).cloned()).unwrap_or_else(|e| e)
}

fn render_with(t: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(t.len() + 256);
    let mut rest = t;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        if after.as_bytes().first() == Some(&c) {
            out.push(c as char);
            rest = &after[1..];
            continue;
        }
        if c == b'}' {
            return Err("unmatched } (write }} for a literal brace)".to_string());
        }
        let Some(end) = after.find('}') else {
            return Err("unclosed { (write {{ for a literal brace)".to_string());
        };
        let p = parse_placeholder(&after[..end])?;
        let value = lookup(p.name).unwrap_or_default();
        match p.align {
            Some(('<', w)) => out.push_str(&format!("{value:<w$}")),
            Some((_, w)) => out.push_str(&format!("{value:>w$}")),
            None => out.push_str(&value),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_load() {
        for name in built_in_names() {
            let p = Persona::load(name).unwrap();
            assert_eq!(p.name, name);
        }
    }

    #[test]
    fn a_variant_changes_only_what_it_names_and_must_extend_a_built_in() {
        let p = Persona::parse(
            "v.yaml",
            "extends: c9400-dual-sup\nname: my-9400\ninstall_mode: false\n",
        )
        .unwrap();
        let base = Persona::load("c9400-dual-sup").unwrap();
        assert_eq!(p.name, "my-9400");
        assert!(!p.install_mode && base.install_mode);
        assert_eq!(p.model, base.model);
        assert_eq!(p.templates.show_version, base.templates.show_version);
        assert!(p.separate_flash() && !base.separate_flash());

        let e = Persona::parse("v.yaml", "extends: c9999\nname: x\n").unwrap_err();
        assert!(e.to_string().contains("not a built-in persona"), "{e}");
        let e = Persona::parse("v.yaml", "extends: c9300\nname: x\nmodel: y\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
    }

    #[test]
    fn fleetup_reads_each_persona_as_the_persona_says() {
        for name in built_in_names() {
            let p = Persona::load(name).unwrap();
            let mut vars: BTreeMap<&str, String> =
                PLACEHOLDERS.iter().map(|k| (*k, "1".to_string())).collect();
            vars.insert("model", p.model.clone());
            vars.insert("serial", "FOC1234X0YZ".into());
            vars.insert("image", p.initial_image.clone());
            let out = render(&p.templates.show_version, &vars);
            let v =
                crate::device::parse::show_version(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(v.model.as_deref(), Some(p.model.as_str()), "{name}");
            assert_eq!(v.serial.as_deref(), Some("FOC1234X0YZ"), "{name}");
            if p.kickstart_image.is_some() {
                assert!(v.kickstart.is_some(), "{name}: the kickstart line");
            }
        }
    }

    #[test]
    fn placeholders_render_with_alignment() {
        let mut vars = BTreeMap::new();
        vars.insert("model", "WS-C2960X".to_string());
        vars.insert("version", "15.2(7)E8".to_string());
        assert_eq!(
            render("[{model:<12}][{version:>10}] {{x}}", &vars),
            "[WS-C2960X   ][ 15.2(7)E8] {x}"
        );
    }

    #[test]
    fn unknown_placeholder_is_refused_at_load() {
        let text = include_str!("../../personas/c2960x.yaml").replace("{uptime}", "{uptyme}");
        let err = Persona::parse("bad", &text).unwrap_err().to_string();
        assert!(err.contains("unknown placeholder {uptyme}"), "{err}");
    }

    #[test]
    fn bad_yaml_is_located() {
        let text =
            include_str!("../../personas/c2960x.yaml").replace("flash_size: ", "flash_sise: ");
        let err = Persona::parse("bad", &text).unwrap_err().to_string();
        assert!(err.contains("line"), "{err}");
        assert!(err.contains("flash_sise"), "{err}");
    }

    #[test]
    fn unknown_name_lists_built_ins() {
        let err = Persona::load("c7200").unwrap_err().to_string();
        assert!(err.contains("c2960x"), "{err}");
    }

    #[test]
    fn oversized_initial_files_are_refused() {
        let text = include_str!("../../personas/c2960x.yaml")
            .replace("flash_size: 122185728", "flash_size: 1000");
        let err = Persona::parse("small", &text).unwrap_err().to_string();
        assert!(err.contains("do not fit"), "{err}");
    }
}
