//! Parsers for what a stack or a chassis with two supervisors says about its parts: `show
//! switch` (stack members), `show redundancy` (IOS-XE) and `show redundancy status` (NX-OS),
//! `show module`. An upgrade of a stack or of a dual-supervisor chassis reads from them which
//! members there are, their roles, states and versions.
//!
//! Like [`super::parse`], they read real captured outputs (`tests/fixtures/cisco/`), and a field
//! the output does not give is `None`, never a guess.

use std::sync::LazyLock;

use regex::Regex;

use super::parse::{ParseError, missing, re};

// ---------------------------------------------------------------------------------------------
// show switch
// ---------------------------------------------------------------------------------------------

/// One row of `show switch` on a Catalyst stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StackMember {
    pub number: u32,
    /// `Active`, `Standby` or `Member` (IOS 15's `Master` reads as `Active`).
    pub role: String,
    pub mac: String,
    pub priority: u32,
    /// The hardware version (`V04`); a provisioned slot that never joined prints none.
    pub hw_version: Option<String>,
    /// `Ready`, `Provisioned`, `V-Mismatch`, `Progressing`, ... as printed.
    pub state: String,
    /// The `*` row: the member this session is on.
    pub this_member: bool,
}

impl StackMember {
    /// Joined and running the stack's software.
    pub(crate) fn is_ready(&self) -> bool {
        self.state == "Ready"
    }
}

// `*1       Active   689c.e2ff.b9d9     3      V04     Ready`; the H/W version is `V04` or a
// bare number (`0` on a member in version mismatch), and absent on a provisioned slot.
static SWITCH_ROW: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\s*(\*)?\s*(\d+)\s+(Active|Standby|Member|Master)\s+([0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4})\s+(\d+)\s+(?:(V\d+|\d+)\s+)?(\S.*?)\s*$",
    )
});

/// Parse `show switch` of a Catalyst 3650/3750/3850/9200/9300 stack.
pub(crate) fn show_switch(text: &str) -> Result<Vec<StackMember>, ParseError> {
    let members: Vec<StackMember> = text
        .lines()
        .filter_map(|line| SWITCH_ROW.captures(line))
        .filter_map(|c| {
            Some(StackMember {
                number: c[2].parse().ok()?,
                role: match &c[3] {
                    "Master" => "Active".to_string(),
                    other => other.to_string(),
                },
                mac: c[4].to_string(),
                priority: c[5].parse().ok()?,
                hw_version: c.get(6).map(|m| m.as_str().to_string()),
                state: c[7].to_string(),
                this_member: c.get(1).is_some(),
            })
        })
        .collect();
    if members.is_empty() {
        return Err(missing("show switch", "member rows", text));
    }
    Ok(members)
}

// ---------------------------------------------------------------------------------------------
// show version's member table, and what a stack must look like before and after
// ---------------------------------------------------------------------------------------------

/// A row of the member table at the end of `show version` on a Catalyst stack (also printed by
/// a lone switch, with one row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberVersion {
    pub number: u32,
    pub model: String,
    /// `17.06.01`, `15.2(2)E7`, `03.06.07E`.
    pub version: String,
    /// `CAT9K_IOSXE`, `C2960X-UNIVERSALK9-M`.
    pub image: String,
    /// `INSTALL` or `BUNDLE` where printed (IOS-XE).
    pub mode: Option<String>,
    /// The `*` row: the member this session is on.
    pub this_member: bool,
}

// `*    1 52    C9300-48P          17.03.04          CAT9K_IOSXE           INSTALL`
static MEMBER_VERSION_ROW: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\s*(\*)?\s*(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(INSTALL|BUNDLE))?\s*$")
});

/// The member table of `show version` (`Switch Ports Model SW Version SW Image [Mode]`);
/// empty when the output has none (routers, NX-OS).
pub(crate) fn show_version_members(text: &str) -> Vec<MemberVersion> {
    let mut lines = text.lines();
    if !lines.any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.starts_with(&["Switch", "Ports", "Model", "SW", "Version"])
    }) {
        return Vec::new();
    }
    lines
        .skip_while(|l| l.trim().starts_with("------"))
        .map_while(|l| MEMBER_VERSION_ROW.captures(l))
        .filter_map(|c| {
            Some(MemberVersion {
                number: c[2].parse().ok()?,
                model: c[4].to_string(),
                version: c[5].to_string(),
                image: c[6].to_string(),
                mode: c.get(7).map(|m| m.as_str().to_string()),
                this_member: c.get(1).is_some(),
            })
        })
        .collect()
}

/// The serial number of each member's `Switch 0N` section of `show version` (the active
/// member's is the one at the top, [`super::parse::ShowVersion::serial`]).
pub(crate) fn show_version_serials(text: &str) -> Vec<(u32, String)> {
    static SERIAL: LazyLock<Regex> =
        LazyLock::new(|| re(r"(?i)^\s*System serial number\s*:\s*(\S+)\s*$"));
    let mut out = Vec::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(c) = SWITCH_HEADING.captures(line) {
            current = c[1].parse::<u32>().ok();
        } else if let (Some(n), Some(c)) = (current, SERIAL.captures(line)) {
            out.push((n, c[1].to_string()));
            current = None;
        }
    }
    out
}

/// Whether two versions are one: `17.9.4` and `17.09.04` are.
pub(crate) fn same_version(a: &str, b: &str) -> bool {
    a == b || super::version::compare(a, b) == Some(std::cmp::Ordering::Equal)
}

/// `Switch 2` / `Switch 02`: the heading of a member's section in `show boot` and `show version`.
static SWITCH_HEADING: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*Switch (\d+)\s*$"));

/// The BOOT variable of each stack member that `show boot` prints a section for (`Switch N`):
/// a classic IOS stack prints the active member's lines first without a heading, then one
/// section per other member (genieparser iosxe/ShowBoot golden_output_2900); IOS-XE prints one
/// section per member, with the variables of the next reload last (golden_output_cat9300).
pub(crate) fn show_boot_members(text: &str) -> Vec<(u32, Vec<String>)> {
    static BOOT: LazyLock<Regex> =
        LazyLock::new(|| re(r"^\s*(?:BOOT path-list\s*:|BOOT variable\s*=)[ \t]*(.*?)[ \t]*$"));
    let mut out: Vec<(u32, Vec<String>)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if let Some(c) = SWITCH_HEADING.captures(line) {
            current = c[1].parse().ok().map(|n| {
                out.push((n, Vec::new()));
                out.len() - 1
            });
            continue;
        }
        if let (Some(i), Some(c)) = (current, BOOT.captures(line)) {
            // The later line of a section is the next reload's.
            out[i].1 = super::parse::split_boot_list(&c[1]);
        }
    }
    out
}

/// A stack may be changed only when every member is Ready and all run one version.
pub(crate) fn stack_ready(
    members: &[StackMember],
    versions: &[MemberVersion],
) -> Result<(), String> {
    let not_ready: Vec<String> = members
        .iter()
        .filter(|m| !m.is_ready())
        .map(|m| format!("member {} is {}", m.number, m.state))
        .collect();
    if !not_ready.is_empty() {
        return Err(format!(
            "the stack is not whole: {}; every member must be Ready before an upgrade",
            not_ready.join(", ")
        ));
    }
    if let Some(first) = versions.first() {
        let odd: Vec<String> = versions
            .iter()
            .filter(|v| !same_version(&v.version, &first.version))
            .map(|v| format!("member {} runs {}", v.number, v.version))
            .collect();
        if !odd.is_empty() {
            return Err(format!(
                "the stack's members run different versions ({}; member {} runs {}): bring them to one version first",
                odd.join(", "),
                first.number,
                first.version
            ));
        }
    }
    Ok(())
}

/// After the reload: the members that were there before are back, every one Ready and on
/// `target`. The message names each member that is not.
pub(crate) fn stack_back(
    before: &[u32],
    members: &[StackMember],
    versions: &[MemberVersion],
    target: &str,
) -> Result<(), String> {
    let mut wrong = Vec::new();
    for n in before {
        match members.iter().find(|m| m.number == *n) {
            None => wrong.push(format!("member {n} did not rejoin the stack")),
            Some(m) if !m.is_ready() => wrong.push(format!("member {n} is {}", m.state)),
            Some(_) => {}
        }
        match versions.iter().find(|v| v.number == *n) {
            Some(v) if !same_version(&v.version, target) => {
                wrong.push(format!("member {n} runs {}, not {target}", v.version))
            }
            _ => {}
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

// ---------------------------------------------------------------------------------------------
// show redundancy (IOS-XE), show redundancy status (NX-OS)
// ---------------------------------------------------------------------------------------------

/// A supervisor's (route processor's) role, as its state says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Active,
    Standby,
}

/// One supervisor of `show redundancy` (IOS-XE) or `show redundancy status` (NX-OS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Supervisor {
    /// `slot 5`, `slot 2/1` (IOS-XE); `sup-1` (NX-OS).
    pub location: Option<String>,
    /// IOS-XE `Current Software state` (`ACTIVE`, `STANDBY HOT`); NX-OS `Redundancy state`
    /// (`Active`, `Standby`).
    pub state: Option<String>,
    /// NX-OS `Supervisor state` (`Active`, `HA standby`).
    pub supervisor_state: Option<String>,
    /// The version of the `Image Version` line (IOS-XE only).
    pub version: Option<String>,
    /// The `BOOT =` entries, `,12` sequence numbers removed (IOS-XE only).
    pub boot: Vec<String>,
    /// The section this came from: the supervisor this session is on.
    pub this_supervisor: bool,
}

impl Supervisor {
    pub(crate) fn role(&self) -> Option<Role> {
        let state = self.state.as_deref()?.to_ascii_lowercase();
        if state.starts_with("active") {
            Some(Role::Active)
        } else if state.starts_with("standby") {
            Some(Role::Standby)
        } else {
            None
        }
    }

    /// Ready to take over without a reload: IOS-XE `STANDBY HOT`, NX-OS `HA standby`.
    pub(crate) fn is_hot_standby(&self) -> bool {
        let hot = |s: &Option<String>| {
            s.as_deref().is_some_and(|s| {
                let s = s.to_ascii_lowercase();
                s == "standby hot" || s == "ha standby"
            })
        };
        hot(&self.state) || hot(&self.supervisor_state)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Redundancy {
    /// IOS-XE `Operating Redundancy Mode` (`sso`, `Stateful Switchover`); NX-OS `operational`
    /// (`HA`, `None`).
    pub operating_mode: Option<String>,
    pub supervisors: Vec<Supervisor>,
}

impl Redundancy {
    pub(crate) fn active(&self) -> Option<&Supervisor> {
        self.supervisors
            .iter()
            .find(|s| s.role() == Some(Role::Active))
    }

    pub(crate) fn standby(&self) -> Option<&Supervisor> {
        self.supervisors
            .iter()
            .find(|s| s.role() == Some(Role::Standby))
    }

    /// A second supervisor or route processor is there (in any state but `Not present`): the
    /// chassis has two, and both must be ready before and after an upgrade. A lone supervisor
    /// prints one section (IOS-XE, `Hardware Mode = Simplex`) or an other supervisor `Not
    /// present` (NX-OS).
    pub(crate) fn has_peer(&self) -> bool {
        self.supervisors.iter().any(|s| {
            !s.this_supervisor
                && s.state
                    .as_deref()
                    .or(s.supervisor_state.as_deref())
                    .is_some_and(|st| !st.eq_ignore_ascii_case("not present"))
        })
    }
}

// `Current Processor Information :`, `Peer Processor Information :`; NX-OS `This supervisor
// (sup-1)`, `Other supervisor (sup-2)`.
static SUP_SECTION: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\s*(?:(Current|Peer) Processor Information\s*:|(This|Other) supervisor \(([^)]+)\))\s*$")
});
// `key = value` (IOS-XE) or `key:   value` (NX-OS).
static KEY_VALUE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*([A-Za-z][A-Za-z /-]*?)\s*(?:=|:)\s*(.*?)\s*$"));
static IMAGE_VERSION: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:,|\))\s*(?:Experimental )?Version\s+([^,\s]+)"));

/// Parse IOS-XE `show redundancy` or NX-OS `show redundancy status` / `show system redundancy
/// status`.
pub(crate) fn show_redundancy(text: &str) -> Result<Redundancy, ParseError> {
    let mut out = Redundancy::default();
    let mut current: Option<Supervisor> = None;
    for line in text.lines() {
        if let Some(c) = SUP_SECTION.captures(line) {
            out.supervisors.extend(current.take());
            let this = matches!(
                c.get(1).or(c.get(2)).map(|m| m.as_str()),
                Some("Current" | "This")
            );
            current = Some(Supervisor {
                location: c.get(3).map(|m| m.as_str().to_string()),
                this_supervisor: this,
                ..Default::default()
            });
            continue;
        }
        let Some(kv) = KEY_VALUE.captures(line) else {
            continue;
        };
        let (key, value) = (kv[1].trim(), kv[2].trim());
        let value = (!value.is_empty()).then(|| value.to_string());
        match (key, current.as_mut()) {
            ("Operating Redundancy Mode" | "operational", _) => out.operating_mode = value,
            // The system uptime and start time after the NX-OS sections end the last one.
            (k, Some(_)) if k.starts_with("System ") || k.ends_with(" uptime") => {
                out.supervisors.extend(current.take());
            }
            ("Active Location" | "Standby Location", Some(s)) => s.location = value,
            ("Current Software state" | "Redundancy state", Some(s)) => s.state = value,
            ("Supervisor state", Some(s)) => s.supervisor_state = value,
            ("Image Version", Some(s)) => {
                s.version = IMAGE_VERSION.captures(&kv[2]).map(|c| c[1].to_string());
            }
            ("BOOT", Some(s)) => {
                s.boot = kv[2]
                    .split(';')
                    .map(|e| e.trim())
                    .filter(|e| !e.is_empty())
                    .map(|e| match e.rsplit_once(',') {
                        Some((path, seq)) if seq.chars().all(|c| c.is_ascii_digit()) => {
                            path.to_string()
                        }
                        _ => e.to_string(),
                    })
                    .collect();
            }
            _ => {}
        }
    }
    out.supervisors.extend(current);
    if out.supervisors.is_empty() {
        return Err(missing(
            "show redundancy",
            "processor or supervisor sections",
            text,
        ));
    }
    Ok(out)
}

/// A chassis with two supervisors may be changed, and counts as done afterwards, only with an
/// active one and a standby ready to take over (`STANDBY HOT`, NX-OS `HA standby`), on
/// `version` when one is given (the standby's, where the output tells it).
pub(crate) fn supervisors_ready(red: &Redundancy, version: Option<&str>) -> Result<(), String> {
    if red.active().is_none() {
        return Err("no supervisor is ACTIVE".into());
    }
    let Some(standby) = red.standby() else {
        return Err("the standby supervisor is missing".into());
    };
    if !standby.is_hot_standby() {
        return Err(format!(
            "the standby supervisor{} is {}, not STANDBY HOT",
            standby
                .location
                .as_deref()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default(),
            standby
                .supervisor_state
                .as_deref()
                .or(standby.state.as_deref())
                .unwrap_or("in an unknown state")
        ));
    }
    if let (Some(want), Some(runs)) = (version, standby.version.as_deref())
        && !runs.contains(want)
        && !same_version(runs, want)
    {
        return Err(format!("the standby supervisor runs {runs}, not {want}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// show module
// ---------------------------------------------------------------------------------------------

/// One module (line card, supervisor, or a stack member on a Catalyst 3850) of `show module`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Module {
    /// The chassis of a StackWise Virtual pair (`Switch Number 2`), when printed.
    pub chassis: Option<u32>,
    pub slot: u32,
    /// `Supervisor Module-2`, `48-Port UPOE 10/100/1000 (RJ-45)`.
    pub card: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub software: Option<String>,
    /// `ok`, `active`, `ha-standby`, `power-deny`, ... as printed.
    pub status: Option<String>,
    /// IOS-XE supervisors: `Active`, `Standby`.
    pub redundancy_role: Option<String>,
    /// IOS-XE supervisors: `Standby Hot`, `Active`.
    pub redundancy_status: Option<String>,
    /// NX-OS `*`: the supervisor this session is on.
    pub this_session: bool,
}

impl Module {
    pub(crate) fn is_supervisor(&self) -> bool {
        self.card
            .as_deref()
            .is_some_and(|c| c.to_ascii_lowercase().contains("supervisor"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Cards,
    Software,
    Serials,
    Redundancy,
    Other,
}

// NX-OS `1    0      Supervisor Module-2     N7K-SUP2    active` (the `*` taken off first);
// IOS-XE `4   10   Supervisor 2XL Module    C9400X-SUP-2XL   JAE2432006A`.
static CARD_ROW: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(\d+)\s+(\d+)\s+(.*\S)\s+(\S+)\s+(\S+)\s*$"));
// NX-OS `1    8.3(0)CV(0.658)  1.0  [LC1]`.
static NX_SW_ROW: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(\d+)\s+(\S+)\s+(\S+)(?:\s+\S+)?\s*$"));
// NX-OS `1    84-78-ac-0f-c4-cd to 84-78-ac-0f-c4-df  JAF1708AGTH`, `22   NA   SAL18401T5J`.
static NX_SERIAL_ROW: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(\d+)\s+(?:\S+ to \S+|NA)\s+(\S+)\s*$"));
// IOS-XE `1   341B.2DA3.C160 to 341B.2DA3.C177 0.2  17.8.0.15     S2C    ok`.
static XE_SW_ROW: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(\d+)\s+\S+ to \S+\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$"));
// IOS-XE `4   Standby             sso             sso              Standby Hot`.
static XE_REDUNDANCY_ROW: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(\d+)\s+(Active|Standby)\s+(\S+)\s+(\S+)(?:\s+(\S.*?))?\s*$"));
// Catalyst 3850: `1       56     WS-C3850-48P-E   FOC1902X062  689c.e2ff.b9d9  V04   16.9.1`.
static STACK_ROW: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\s*(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\s+\S+\s+(\S+)\s*$",
    )
});
static SWITCH_NUMBER: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*Switch Number (\d+)\s*$"));

/// Parse `show module` of NX-OS (Nexus 7000/9000) or IOS-XE (Catalyst 9400/9600 chassis,
/// Catalyst 3850 stack).
pub(crate) fn show_module(text: &str) -> Result<Vec<Module>, ParseError> {
    let mut modules: Vec<Module> = Vec::new();
    let mut table = Table::Other;
    let mut chassis = None;
    for raw in text.lines() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if let Some(c) = SWITCH_NUMBER.captures(line) {
            chassis = c[1].parse().ok();
            continue;
        }
        if trimmed.starts_with("Mod ") || trimmed.starts_with("Xbar ") {
            table = if trimmed.starts_with("Xbar ") {
                Table::Other
            } else if trimmed.contains("Module-Type") || trimmed.contains("Card Type") {
                Table::Cards
            } else if trimmed.contains("Redundancy Role") {
                Table::Redundancy
            } else if trimmed.contains("Serial-Num") {
                Table::Serials
            } else if trimmed.contains(" Sw") {
                Table::Software
            } else {
                Table::Other
            };
            continue;
        }
        if let Some(c) = STACK_ROW.captures(line) {
            modules.push(Module {
                slot: c[1].parse().unwrap_or(0),
                model: Some(c[3].to_string()),
                serial: Some(c[4].to_string()),
                software: Some(c[5].to_string()),
                ..Default::default()
            });
            continue;
        }
        let slot_of = |s: &str| s.parse::<u32>().ok();
        match table {
            Table::Cards => {
                let (row, this) = match line.strip_suffix('*') {
                    Some(rest) => (rest.trim_end(), true),
                    None => (line, false),
                };
                let Some(c) = CARD_ROW.captures(row) else {
                    continue;
                };
                let Some(slot) = slot_of(&c[1]) else { continue };
                // NX-OS's table ends with the status, IOS-XE's with the serial number.
                let nxos = nxos_table(text);
                let last = c[5].to_string();
                modules.push(Module {
                    chassis,
                    slot,
                    card: Some(c[3].trim().to_string()),
                    model: Some(c[4].to_string()),
                    serial: (!nxos).then(|| last.clone()),
                    status: nxos.then_some(last),
                    this_session: this,
                    ..Default::default()
                });
            }
            Table::Software => {
                if let Some(c) = XE_SW_ROW.captures(line) {
                    if let Some(m) =
                        slot_of(&c[1]).and_then(|s| module_at(&mut modules, s, chassis))
                    {
                        m.software = Some(c[4].to_string());
                        m.status = Some(c[5].to_string());
                    }
                } else if let Some(c) = NX_SW_ROW.captures(line)
                    && let Some(m) =
                        slot_of(&c[1]).and_then(|s| module_at(&mut modules, s, chassis))
                {
                    m.software = Some(c[2].to_string());
                }
            }
            Table::Serials => {
                if let Some(c) = NX_SERIAL_ROW.captures(line)
                    && let Some(m) =
                        slot_of(&c[1]).and_then(|s| module_at(&mut modules, s, chassis))
                {
                    m.serial = Some(c[2].to_string());
                }
            }
            Table::Redundancy => {
                if let Some(c) = XE_REDUNDANCY_ROW.captures(line)
                    && let Some(m) =
                        slot_of(&c[1]).and_then(|s| module_at(&mut modules, s, chassis))
                {
                    m.redundancy_role = Some(c[2].to_string());
                    m.redundancy_status = c.get(5).map(|s| s.as_str().to_string());
                }
            }
            Table::Other => {}
        }
    }
    if modules.is_empty() {
        return Err(missing("show module", "module rows", text));
    }
    Ok(modules)
}

/// NX-OS names the card column `Module-Type`, IOS-XE `Card Type`.
fn nxos_table(text: &str) -> bool {
    text.contains("Module-Type")
}

fn module_at(modules: &mut [Module], slot: u32, chassis: Option<u32>) -> Option<&mut Module> {
    modules
        .iter_mut()
        .rev()
        .find(|m| m.slot == slot && m.chassis == chassis)
}

#[cfg(test)]
mod stack_tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cisco")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn each_members_serial_in_real_captures() {
        let serials = show_version_serials(&fixture("iosxe_ShowVersion_golden_output_c3850.txt"));
        assert_eq!(serials.len(), 4, "{serials:?}");
        assert!(serials.iter().all(|(n, s)| *n > 1 && !s.is_empty()));
        let two = show_version_serials(&fixture("iosxe_ShowVersion_golden_output_4.txt"));
        assert_eq!(two.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn each_members_boot_variable_in_real_captures() {
        let e = |s: &str| vec![s.to_string()];
        assert_eq!(
            show_boot_members(&fixture("iosxe_ShowBoot_golden_output_2900.txt")),
            vec![
                (2, e("flash:/c2960x-universalk9-mz.152-4.E8.bin")),
                (3, e("flash:/c2960x-universalk9-mz.152-4.E8.bin"))
            ]
        );
        let cat9300 = show_boot_members(&fixture("iosxe_ShowBoot_golden_output_cat9300.txt"));
        assert!(!cat9300.is_empty());
        assert!(cat9300.iter().all(|(_, b)| !b.is_empty()), "{cat9300:?}");
        assert!(show_boot_members(&fixture("ios_ShowBoot_golden_output_iosv.txt")).is_empty());
    }

    #[test]
    fn a_peer_supervisor_is_told_from_a_lone_one() {
        for f in [
            "iosxe_ShowRedundancy_golden_output_c9400.txt",
            "iosxe_ShowRedundancy_golden_output_asr1k.txt",
            "ntc_cisco_ios_show_redundancy5.raw",
            "nxos_show_platform_ShowRedundancyStatus_n7k.txt",
        ] {
            let red = show_redundancy(&fixture(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(red.has_peer(), "{f}: {red:?}");
        }
        let lone = "Redundancy mode\n---------------\n      administrative:   HA\n         operational:   None\n\nThis supervisor (sup-1)\n-----------------------\n    Redundancy state:   Active\n    Supervisor state:   Active\n      Internal state:   Active with no standby\n\nOther supervisor (sup-2)\n------------------------\n    Redundancy state:   Not present\n";
        let red = show_redundancy(lone).expect("parses");
        assert!(!red.has_peer(), "{red:?}");
    }

    #[test]
    fn the_member_table_of_show_version_in_real_captures() {
        let rows = |f: &str| {
            show_version_members(&fixture(f))
                .into_iter()
                .map(|m| (m.number, m.version, m.this_member))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rows("iosxe_ShowVersion_golden_output_c9300.txt"),
            vec![(1, "17.06.01".to_string(), true)]
        );
        assert_eq!(
            rows("iosxe_ShowVersion_golden_output_4.txt"),
            vec![
                (1, "15.2(2)E7".to_string(), false),
                (2, "15.2(2)E7".to_string(), true)
            ]
        );
        assert_eq!(rows("iosxe_ShowVersion_golden_output_c3850.txt").len(), 5);
        assert_eq!(
            rows("iosxe_ShowVersion_golden_output_3.txt"),
            vec![
                (1, "03.06.07E".to_string(), false),
                (2, "03.06.07E".to_string(), true)
            ]
        );
        let svl = show_version_members(&fixture("ntc_cisco_ios_show_version4.raw"));
        assert_eq!(svl.len(), 2);
        assert_eq!(svl[1].model, "C9500-40X");
        assert_eq!(svl[1].mode.as_deref(), Some("INSTALL"));
        let c2960g = show_version_members(&fixture("napalm_show_version_normal.txt"));
        assert_eq!(c2960g.len(), 1);
        assert_eq!(c2960g[0].image, "C2960-LANBASEK9-M");
        // A router prints no member table.
        assert!(
            show_version_members(&fixture("iosxe_ShowVersion_golden_output_isr4k.txt")).is_empty()
        );
    }

    fn member(number: u32, state: &str) -> StackMember {
        StackMember {
            number,
            role: if number == 1 { "Active" } else { "Member" }.into(),
            mac: "0000.0000.0000".into(),
            priority: 1,
            hw_version: Some("V01".into()),
            state: state.into(),
            this_member: number == 1,
        }
    }

    fn version(number: u32, v: &str) -> MemberVersion {
        MemberVersion {
            number,
            model: "C9300-48P".into(),
            version: v.into(),
            image: "CAT9K_IOSXE".into(),
            mode: Some("INSTALL".into()),
            this_member: number == 1,
        }
    }

    #[test]
    fn a_stack_is_changed_only_whole_and_on_one_version_and_must_come_back_so() {
        let ready = [member(1, "Ready"), member(2, "Ready"), member(3, "Ready")];
        let on = |v: &str| [version(1, v), version(2, v), version(3, v)];
        assert!(stack_ready(&ready, &on("17.06.01")).is_ok());
        let e = stack_ready(
            &[member(1, "Ready"), member(2, "Provisioned")],
            &on("17.06.01"),
        )
        .unwrap_err();
        assert!(e.contains("member 2 is Provisioned"), "{e}");
        let e = stack_ready(
            &ready,
            &[
                version(1, "17.06.01"),
                version(2, "17.06.01"),
                version(3, "17.03.04"),
            ],
        )
        .unwrap_err();
        assert!(e.contains("member 3 runs 17.03.04"), "{e}");
        // 17.9.4 and 17.09.04 are one version.
        assert!(stack_ready(&ready, &[version(1, "17.9.4"), version(2, "17.09.04")]).is_ok());

        let before = [1, 2, 3];
        assert!(stack_back(&before, &ready, &on("17.09.04"), "17.9.4").is_ok());
        let e = stack_back(&before, &ready[..2], &on("17.09.04")[..2], "17.09.04").unwrap_err();
        assert_eq!(e, "member 3 did not rejoin the stack");
        let e = stack_back(
            &before,
            &[
                member(1, "Ready"),
                member(2, "Ready"),
                member(3, "V-Mismatch"),
            ],
            &[
                version(1, "17.09.04"),
                version(2, "17.09.04"),
                version(3, "17.06.01"),
            ],
            "17.09.04",
        )
        .unwrap_err();
        assert_eq!(
            e,
            "member 3 is V-Mismatch; member 3 runs 17.06.01, not 17.09.04"
        );
    }
}

#[cfg(test)]
mod supervisor_tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cisco")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn dual_supervisors_in_real_captures_are_ready_or_say_why_not() {
        for f in [
            "iosxe_ShowRedundancy_golden_output_c9400.txt",
            "iosxe_ShowRedundancy_golden_output_asr1k.txt",
            "nxos_show_platform_ShowRedundancyStatus_n7k.txt",
        ] {
            let red = show_redundancy(&fixture(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            let r = supervisors_ready(&red, None);
            assert!(r.is_ok(), "{f}: {r:?} {red:#?}");
        }
        let mut red =
            show_redundancy(&fixture("iosxe_ShowRedundancy_golden_output_c9400.txt")).unwrap();
        let standby = red
            .supervisors
            .iter_mut()
            .find(|s| s.role() == Some(Role::Standby))
            .unwrap();
        standby.state = Some("STANDBY COLD".into());
        let e = supervisors_ready(&red, None).unwrap_err();
        assert!(
            e.contains("STANDBY COLD") && e.contains("not STANDBY HOT"),
            "{e}"
        );
        red.supervisors.retain(|s| s.role() != Some(Role::Standby));
        assert_eq!(
            supervisors_ready(&red, None).unwrap_err(),
            "the standby supervisor is missing"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/cisco/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// (number, role, hw version, state, this member) of every row.
    type Row<'a> = (u32, &'a str, Option<&'a str>, &'a str, bool);

    #[test]
    fn show_switch_reads_every_sample() {
        #[rustfmt::skip]
        let cases: &[(&str, &[Row])] = &[
            ("iosxe_ShowSwitch_golden_output_c3850.txt", &[
                (1, "Active", Some("V04"), "Ready", true),
                (2, "Standby", Some("V05"), "Ready", false),
                (3, "Member", Some("V05"), "Ready", false),
                (4, "Member", Some("0"), "V-Mismatch", false),
            ]),
            ("iosxe_ShowSwitch_golden_output_1.txt", &[
                (1, "Active", Some("V02"), "Ready", true),
                (2, "Member", None, "Provisioned", false),
                (3, "Member", None, "Provisioned", false),
            ]),
            ("ntc_cisco_ios_show_switch_01.raw", &[
                (1, "Active", Some("V02"), "Ready", true),
                (2, "Standby", Some("V02"), "Ready", false),
            ]),
        ];
        for &(file, want) in cases {
            let got = show_switch(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let got: Vec<Row> = got
                .iter()
                .map(|m| {
                    (
                        m.number,
                        m.role.as_str(),
                        m.hw_version.as_deref(),
                        m.state.as_str(),
                        m.this_member,
                    )
                })
                .collect();
            assert_eq!(got, want, "{file}");
        }
        let c3850 = show_switch(&fixture("iosxe_ShowSwitch_golden_output_c3850.txt")).unwrap();
        assert_eq!(c3850[3].mac, "00cc.fc7f.fb80");
        assert_eq!(c3850[3].priority, 15);
        assert_eq!(c3850.iter().filter(|m| m.is_ready()).count(), 3);
        assert!(show_switch("% Invalid input detected at '^' marker.").is_err());
    }

    #[test]
    fn show_redundancy_of_ios_xe() {
        for (file, mode, active, standby, version, boot) in [
            (
                "iosxe_ShowRedundancy_golden_output_c9400.txt",
                "sso",
                "slot 5",
                "slot 6",
                "17.5.20201011:122025",
                "bootflash:packages.conf",
            ),
            (
                "iosxe_ShowRedundancy_golden_output_asr1k.txt",
                "sso",
                "slot 6",
                "slot 7",
                "16.4.20170425:070036",
                "harddisk:test-image-PE1-13116843",
            ),
            (
                "iosxe_ShowRedundancy_golden_output_cat4500.txt",
                "Stateful Switchover",
                "slot 1/1",
                "slot 2/1",
                "03.06.01.E",
                "bootflash:cat4500e-universalk9.SPA.03.06.01.E.152-2.E1.bin",
            ),
            (
                "ntc_cisco_ios_show_redundancy4.raw",
                "sso",
                "slot 1",
                "slot 5",
                "17.9.5",
                "flash:packages.conf",
            ),
            // StackWise Virtual: the two supervisors are two switches.
            (
                "ntc_cisco_ios_show_redundancy5.raw",
                "sso",
                "Switch 1",
                "Switch 2",
                "17.14.1",
                "bootflash:packages.conf",
            ),
        ] {
            let r = show_redundancy(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(r.operating_mode.as_deref(), Some(mode), "{file}");
            assert_eq!(r.supervisors.len(), 2, "{file}");
            let a = r.active().unwrap();
            let s = r.standby().unwrap();
            assert_eq!(a.location.as_deref(), Some(active), "{file}");
            assert_eq!(s.location.as_deref(), Some(standby), "{file}");
            assert!(a.this_supervisor && !s.this_supervisor, "{file}");
            assert!(s.is_hot_standby() && !a.is_hot_standby(), "{file}");
            for sup in [a, s] {
                assert_eq!(sup.version.as_deref(), Some(version), "{file}");
                assert_eq!(sup.boot, [boot], "{file}");
                assert_eq!(sup.supervisor_state, None, "{file}");
            }
        }
    }

    /// Classic IOS wraps the image line at 80 columns (`Version 12.2(20)EWA(3` / `.92)`): no
    /// version rather than a cut one.
    #[test]
    fn a_wrapped_image_version_is_not_cut() {
        let r = show_redundancy(&fixture("ntc_cisco_ios_show_redundancy.raw")).unwrap();
        assert_eq!(r.operating_mode.as_deref(), Some("Stateful Switchover"));
        let a = r.active().unwrap();
        assert_eq!(a.location.as_deref(), Some("slot 1"));
        assert_eq!(a.version, None);
        assert_eq!(a.boot, ["bootflash:cat4000-i5s-mz.122_20_EWA_392"]);
        assert!(r.standby().unwrap().is_hot_standby());
    }

    /// Every capture of these commands is read by a test here.
    #[test]
    fn every_capture_is_read() {
        let dir = format!("{}/tests/fixtures/cisco", env!("CARGO_MANIFEST_DIR"));
        let tested = [
            "iosxe_ShowSwitch_golden_output_c3850.txt",
            "iosxe_ShowSwitch_golden_output_1.txt",
            "ntc_cisco_ios_show_switch_01.raw",
            "iosxe_ShowRedundancy_golden_output_c9400.txt",
            "iosxe_ShowRedundancy_golden_output_asr1k.txt",
            "iosxe_ShowRedundancy_golden_output_cat4500.txt",
            "ntc_cisco_ios_show_redundancy.raw",
            "ntc_cisco_ios_show_redundancy4.raw",
            "ntc_cisco_ios_show_redundancy5.raw",
            "nxos_show_platform_ShowRedundancyStatus_n7k.txt",
            "nxos_show_platform_ShowModule_n7k.txt",
            "nxos_show_platform_ShowModule_n9k_c9504.txt",
            "iosxe_ShowModule_golden_output_C9407R.txt",
            "iosxe_ShowModule_golden_output_1.txt",
            "iosxe_ShowModule_golden_output_c3850.txt",
        ];
        let untested: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                let key = n.to_ascii_lowercase().replace('_', "");
                ["showswitch", "showredundancy", "showmodule"]
                    .iter()
                    .any(|k| key.contains(k))
            })
            .filter(|n| !tested.contains(&n.as_str()))
            .collect();
        assert!(untested.is_empty(), "captures no test reads: {untested:?}");
    }

    #[test]
    fn show_redundancy_status_of_nx_os() {
        let r =
            show_redundancy(&fixture("nxos_show_platform_ShowRedundancyStatus_n7k.txt")).unwrap();
        assert_eq!(r.operating_mode.as_deref(), Some("HA"));
        assert_eq!(r.supervisors.len(), 2);
        let a = r.active().unwrap();
        assert_eq!(a.location.as_deref(), Some("sup-1"));
        assert!(a.this_supervisor);
        assert_eq!(a.supervisor_state.as_deref(), Some("Active"));
        let s = r.standby().unwrap();
        assert_eq!(s.location.as_deref(), Some("sup-2"));
        assert!(s.is_hot_standby());
        // NX-OS prints no version and no boot variable here: `show module` and `show boot` do.
        assert_eq!((a.version.as_deref(), a.boot.len()), (None, 0));
        assert!(show_redundancy("Redundancy mode\n").is_err());
    }

    /// (slot, card, model, serial, software, status)
    type ModuleRow<'a> = (
        u32,
        Option<&'a str>,
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
    );

    fn rows(modules: &[Module]) -> Vec<ModuleRow<'_>> {
        modules
            .iter()
            .map(|m| {
                (
                    m.slot,
                    m.card.as_deref(),
                    m.model.as_deref().unwrap_or("?"),
                    m.serial.as_deref().unwrap_or("?"),
                    m.software.as_deref(),
                    m.status.as_deref(),
                )
            })
            .collect()
    }

    #[test]
    fn show_module_of_nexus_chassis() {
        let n7k = show_module(&fixture("nxos_show_platform_ShowModule_n7k.txt")).unwrap();
        // The fabric (Xbar) tables are not modules an upgrade names.
        assert_eq!(n7k.len(), 7);
        #[rustfmt::skip]
        assert_eq!(rows(&n7k)[..2], [
            (1, Some("Supervisor Module-2"), "N7K-SUP2", "JAF1708AGTH", Some("8.3(0)CV(0.658)"), Some("active")),
            (2, Some("Supervisor Module-2"), "N7K-SUP2", "JAF1708AGQH", Some("8.3(0)CV(0.658)"), Some("ha-standby")),
        ]);
        assert_eq!(
            rows(&n7k)[6],
            (
                8,
                Some("10/100/1000 Mbps Ethernet XL Module"),
                "N7K-M148GT-11L",
                "JAF1717BEAT",
                Some("8.3(0)CV(0.658)"),
                Some("ok")
            )
        );
        assert!(n7k[0].this_session && !n7k[1].this_session);
        assert_eq!(n7k.iter().filter(|m| m.is_supervisor()).count(), 2);

        let n9k = show_module(&fixture("nxos_show_platform_ShowModule_n9k_c9504.txt")).unwrap();
        assert_eq!(n9k.len(), 8);
        let sups: Vec<&Module> = n9k.iter().filter(|m| m.is_supervisor()).collect();
        assert_eq!(
            sups.iter()
                .map(|m| (
                    m.slot,
                    m.status.as_deref(),
                    m.serial.as_deref(),
                    m.this_session
                ))
                .collect::<Vec<_>>(),
            [
                (27, Some("ha-standby"), Some("SAL18422LG1"), false),
                (28, Some("active"), Some("SAL18412064"), true),
            ]
        );
        assert_eq!(sups[0].software.as_deref(), Some("7.0(3)I5(0.125)"));
        assert_eq!(
            n9k[0].card.as_deref(),
            Some("48x1/10G SFP+ 4x40G Ethernet Module")
        );
    }

    #[test]
    fn show_module_of_catalyst_chassis_and_stack() {
        let svl = show_module(&fixture("iosxe_ShowModule_golden_output_C9407R.txt")).unwrap();
        assert_eq!(svl.len(), 12);
        let sups: Vec<&Module> = svl.iter().filter(|m| m.is_supervisor()).collect();
        assert_eq!(
            sups.iter()
                .map(|m| (
                    m.chassis,
                    m.slot,
                    m.model.as_deref(),
                    m.serial.as_deref(),
                    m.redundancy_role.as_deref(),
                    m.redundancy_status.as_deref()
                ))
                .collect::<Vec<_>>(),
            [
                (
                    Some(1),
                    4,
                    Some("C9400X-SUP-2XL"),
                    Some("JAE2432006A"),
                    Some("Standby"),
                    Some("Standby Hot")
                ),
                (
                    Some(2),
                    4,
                    Some("C9400X-SUP-2"),
                    Some("JAE252803WV"),
                    Some("Active"),
                    Some("Active")
                ),
            ]
        );
        assert_eq!(sups[0].status.as_deref(), Some("ok"));
        assert_eq!(sups[0].software.as_deref(), Some("S2C"));

        let c9606 = show_module(&fixture("iosxe_ShowModule_golden_output_1.txt")).unwrap();
        #[rustfmt::skip]
        assert_eq!(rows(&c9606), [
            (1, Some("48-Port 10GE / 25GE"), "C9600-LC-48YL", "CAT2431L0MD", Some("S2C"), Some("power-deny")),
            (3, Some("Supervisor 1 Module"), "C9600-SUP-1", "FDO24261BQN", Some("S2C"), Some("ok")),
        ]);
        // A single supervisor: a role, no redundancy status column.
        assert_eq!(c9606[1].redundancy_role.as_deref(), Some("Active"));
        assert_eq!(c9606[1].redundancy_status, None);
        assert_eq!(c9606[1].chassis, None);

        let stack = show_module(&fixture("iosxe_ShowModule_golden_output_c3850.txt")).unwrap();
        #[rustfmt::skip]
        assert_eq!(rows(&stack), [
            (1, None, "WS-C3850-48P-E", "FOC1902X062", Some("16.9.1"), None),
            (2, None, "WS-C3850-24P-E", "FCW1909C0N2", Some("16.9.1"), None),
            (3, None, "WS-C3850-24P-E", "FCW1909D0JC", Some("16.9.1"), None),
        ]);
        assert!(show_module("% Invalid input detected at '^' marker.").is_err());
    }
}
