//! What a stack or a chassis with two supervisors prints about its parts, built from the
//! device's state: `show switch`, the member rows and sections of `show version`, per-member
//! `show boot`, IOS-XE `show redundancy` and `show module`, NX-OS `show module` and `show
//! system redundancy status`. Each layout follows a real capture in `tests/fixtures/cisco/`
//! (named at each function); fleetup's own parsers (`device::members`) read them back in the
//! tests below.

use super::device::{Device, MemberState, Persisted};
use super::install::plain_version;
use super::persona::MembersKind;

/// Commands answered from the members' state, for personas with `members:`.
pub(super) const COMMANDS: &[&str] = &[
    "show switch",
    "show redundancy",
    "show module",
    "show system redundancy status",
    "show redundancy status",
];

/// The output of one of [`COMMANDS`], when this device has it.
pub(super) fn command(dev: &Device, key: &str) -> Option<String> {
    let spec = dev.persona.members.as_ref()?;
    let s = dev.state();
    let members = dev.member_states(&s);
    let nxos = dev.persona.platform == crate::inventory::Platform::Nxos;
    match (key, spec.kind, nxos) {
        ("show switch", MembersKind::Stack, _) => Some(show_switch(dev, &members)),
        // A Catalyst 9300 stack: the standby switch is the peer processor.
        ("show redundancy", MembersKind::Stack, false) if dev.persona.install_mode => {
            let pair: Vec<MemberState> = members
                .iter()
                .filter(|m| m.role == "Active" || m.role == "Standby")
                .map(|m| MemberState {
                    state: match m.role.as_str() {
                        "Active" => "ACTIVE".into(),
                        _ => "STANDBY HOT".into(),
                    },
                    ..m.clone()
                })
                .collect();
            Some(show_redundancy(&s, &pair))
        }
        ("show module", MembersKind::Stack, false) if dev.persona.install_mode => {
            Some(show_module_stack(dev, &members))
        }
        ("show redundancy", MembersKind::Supervisors, false) => Some(show_redundancy(&s, &members)),
        ("show module", MembersKind::Supervisors, false) => Some(show_module_iosxe(dev, &members)),
        ("show module", MembersKind::Supervisors, true) => Some(show_module_nxos(dev, &members)),
        (
            "show system redundancy status" | "show redundancy status",
            MembersKind::Supervisors,
            true,
        ) => Some(show_system_redundancy_status(&s, &members)),
        _ => None,
    }
}

/// A member's base MAC address in table form: the stack's own for the active member.
fn member_mac(dev: &Device, n: u32) -> String {
    let o = dev.ip.octets();
    if Some(n) == dev.active_slot() {
        format!("cc46.d6{:02x}.{:02x}{:02x}", o[1], o[2], o[3])
    } else {
        format!("cc46.{n:02x}{:02x}.{:02x}{:02x}", o[1], o[2], o[3])
    }
}

fn member_serial(dev: &Device, n: u32) -> String {
    if Some(n) == dev.active_slot() {
        return super::device::serial(&dev.name);
    }
    super::device::serial(&format!("{}/{n}", dev.name))
}

/// `show switch`: genieparser iosxe/ShowSwitch golden_output_1 (a Catalyst 9300 stack) and
/// golden_output_c3850 (four members, one `V-Mismatch`); ntc-templates cisco_ios
/// show_switch_detail 01 (a two-member stack).
fn show_switch(dev: &Device, members: &[MemberState]) -> String {
    let ios15 = dev.persona.platform == crate::inventory::Platform::Ios;
    // IOS 15 (2960-X FlexStack-Plus) prints its own header and `Master` for the active, as
    // the c2960x persona's `show switch` does.
    let mut t = if ios15 {
        format!(
            "Switch/Stack Mac Address : {}\n                                           H/W   Current\nSwitch#  Role   Mac Address     Priority Version  State \n----------------------------------------------------------\n",
            member_mac(dev, members[0].number)
        )
    } else {
        format!(
            "Switch/Stack Mac Address : {} - Local Mac Address\nMac persistency wait time: Indefinite\n                                             H/W   Current\nSwitch#   Role    Mac Address     Priority Version  State \n-------------------------------------------------------------------------------------\n",
            member_mac(dev, members[0].number)
        )
    };
    for (i, m) in members.iter().enumerate() {
        let star = if i == 0 { '*' } else { ' ' };
        // Priorities as a stack is usually set up: the active highest.
        let priority = 15u32.saturating_sub(i as u32);
        let mac = member_mac(dev, m.number);
        if ios15 {
            let hw = if m.state == "V-Mismatch" { "0" } else { "4" };
            t.push_str(&format!(
                "{star}{:<8}{:<7}{mac}     {priority:<7}{hw:<8}{}\n",
                m.number, m.role, m.state
            ));
        } else {
            let hw = if m.state == "V-Mismatch" { "0" } else { "V02" };
            t.push_str(&format!(
                "{star}{:<8}{:<9}{mac}     {priority:<7}{hw:<8}{}\n",
                m.number, m.role, m.state
            ));
        }
    }
    t
}

/// The member rows of `show version`'s `Switch Ports Model SW Version SW Image` table, the
/// active (`*`) first, members that are not in the stack left out. IOS-XE: genieparser
/// iosxe/ShowVersion golden_output_c3850 (five members) and golden_output_c9300 (the `Mode`
/// column); classic IOS: golden_output_4 (a two-member 2960-X stack).
pub(super) fn version_table(dev: &Device, s: &Persisted) -> String {
    let Some(spec) = &dev.persona.members else {
        return String::new();
    };
    let model = &dev.persona.model;
    let ports = spec.ports;
    let mut t = String::new();
    for (i, m) in dev.member_states(s).iter().enumerate() {
        if m.state == "Removed" {
            continue;
        }
        let star = if i == 0 { '*' } else { ' ' };
        let n = m.number;
        let row = if dev.persona.install_mode {
            format!(
                "{star}{n:>5} {ports:<5} {model:<18} {:<17} CAT9K_IOSXE           INSTALL",
                m.version
            )
        } else {
            let image = m
                .running_image
                .rsplit(['/', ':'])
                .next()
                .unwrap_or_default()
                .to_string();
            format!(
                "{star}{n:>5} {ports:<5} {model:<25} {:<21} {}",
                m.version,
                super::device::image_upper(&image)
            )
        };
        t.push_str(row.trim_end());
        t.push('\n');
    }
    t.trim_end_matches('\n').to_string()
}

/// The `Switch 0N` sections of `show version`, one per member besides the active one.
/// IOS-XE: genieparser iosxe/ShowVersion golden_output_c3850; classic IOS: golden_output_4.
pub(super) fn version_sections(dev: &Device, s: &Persisted) -> String {
    let model = &dev.persona.model;
    let up = super::device::uptime((super::device::now_unix() - s.booted_at).max(0));
    let mut t = String::new();
    for m in dev.member_states(s).iter().skip(1) {
        if m.state == "Removed" {
            continue;
        }
        let n = m.number;
        let mac = member_mac(dev, n).replace('.', "");
        let mac: String = mac
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let serial = member_serial(dev, n);
        if dev.persona.install_mode {
            t.push_str(&format!(
                "\nSwitch {n:02}\n---------\nSwitch uptime                      : {up}\n\nBase Ethernet MAC Address          : {mac}\nMotherboard Assembly Number        : 73-18271-03\nMotherboard Serial Number          : {serial}\nModel Revision Number              : A0\nMotherboard Revision Number        : A0\nModel Number                       : {model}\nSystem Serial Number               : {serial}\n"
            ));
        } else {
            t.push_str(&format!(
                "\nSwitch {n:02}\n---------\nSwitch Uptime                   : {up}\nBase ethernet MAC Address       : {mac}\nMotherboard assembly number     : 73-14597-06\nMotherboard serial number       : {serial}\nModel revision number           : F0\nMotherboard revision number     : C0\nModel number                    : {model}\nSystem serial number            : {serial}\nVersion ID                      : V04\n"
            ));
        }
    }
    t
}

/// Per-member `show boot` sections. Classic IOS: the `Switch N` sections that follow the
/// active member's lines (genieparser iosxe/ShowBoot golden_output_2900, a 2960-X stack);
/// IOS-XE: one section per member, the active first (golden_output_cat9300).
pub(super) fn boot_sections(dev: &Device, s: &Persisted) -> String {
    let mut t = String::new();
    let members = dev.member_states(s);
    if dev.persona.install_mode {
        for m in &members {
            if m.state == "Removed" {
                continue;
            }
            let boot = m.boot_variable.join(";");
            t.push_str(&format!(
                "---------------------------\nSwitch {}\n---------------------------\nCurrent Boot Variables:\nBOOT variable = {boot};\n\nBoot Variables on next reload:\nBOOT variable = {boot};\nManual Boot = no\nEnable Break = yes\nBoot Mode = DEVICE\niPXE Timeout = 0\n",
                m.number
            ));
        }
        return t;
    }
    for m in members.iter().skip(1) {
        if m.state == "Removed" {
            continue;
        }
        t.push_str(&format!(
            "-------------------\nSwitch {}\n-------------------\nBOOT path-list      : {}\nConfig file         : flash:/config.text\nPrivate Config file : flash:/private-config.text\nEnable Break        : yes\nManual Boot         : no\nAllow Dev Key         : yes\nHELPER path-list    : \nAuto upgrade        : no\nAuto upgrade path   : \n",
            m.number,
            m.boot_variable.join(";")
        ));
    }
    t
}

/// IOS-XE `show module` of a stack, one row per member in the stack: genieparser
/// iosxe/ShowModule golden_output_c3850.
fn show_module_stack(dev: &Device, members: &[MemberState]) -> String {
    let ports = dev.persona.members.as_ref().map_or(0, |m| m.ports);
    let mut t = String::from(
        "Switch  Ports    Model                Serial No.   MAC address     Hw Ver.       Sw Ver. \n------  -----   ---------             -----------  --------------  -------       --------\n",
    );
    for m in members.iter().filter(|m| m.state != "Removed") {
        t.push_str(&format!(
            " {:<7} {ports:<6} {:<20} {:<12} {}  V02           {}\n",
            m.number,
            dev.persona.model,
            member_serial(dev, m.number),
            member_mac(dev, m.number),
            plain_version(&m.version)
        ));
    }
    t
}

/// The `Image Version` line of a Catalyst 9000 at `version`.
fn image_version(version: &str) -> String {
    format!(
        "Cisco IOS Software [{}], Catalyst L3 Switch Software (CAT9K_IOSXE), Version {}, RELEASE SOFTWARE (fc5)\nCopyright (c) 1986-2023 by Cisco Systems, Inc.\nCompiled Thu 12-Oct-23 09:13 by mcpre",
        super::install::train(version),
        plain_version(version)
    )
}

/// IOS-XE `show redundancy` of a chassis with two supervisors: genieparser
/// iosxe/ShowRedundancy golden_output_c9400 (its blank lines between lines are the capture's
/// line ends, left out here).
fn show_redundancy(s: &Persisted, members: &[MemberState]) -> String {
    let up = super::device::uptime((super::device::now_unix() - s.booted_at).max(0));
    let standby = members.get(1);
    let hot = standby.is_some_and(|m| m.state == "STANDBY HOT");
    let mut t = format!(
        "Redundant System Information :\n------------------------------\n       Available system uptime = {up}\nSwitchovers system experienced = 0\n              Standby failures = 0\n        Last switchover reason = none\n\n                 Hardware Mode = Duplex\n    Configured Redundancy Mode = sso\n     Operating Redundancy Mode = {}\n              Maintenance Mode = Disabled\n                Communications = {}\n\n",
        if hot { "sso" } else { "rpr" },
        if hot {
            "Up"
        } else {
            "Down      Reason: Failure"
        }
    );
    let register = &s.config_register_now;
    for (i, m) in members.iter().enumerate() {
        // A stack's processors are its switches; a chassis' are its supervisor slots.
        let (title, location) = if i == 0 {
            (
                "Current Processor Information :\n-------------------------------",
                "Active Location",
            )
        } else {
            (
                "Peer Processor Information :\n----------------------------",
                "Standby Location",
            )
        };
        t.push_str(&format!(
            "{title}\n{location:>30} = slot {}\n        Current Software state = {}\n       Uptime in current state = {up}\n                 Image Version = {}\n                          BOOT = {};\n                   CONFIG_FILE = \n        Configuration register = {register}\n\n",
            m.number,
            m.state,
            image_version(&m.version),
            m.boot_variable.join(";"),
        ));
    }
    t
}

/// IOS-XE `show module` of a Catalyst 9400 chassis: genieparser iosxe/ShowModule
/// golden_output_C9407R (its cards, MAC and redundancy tables) and golden_output_1.
fn show_module_iosxe(dev: &Device, members: &[MemberState]) -> String {
    let sup = dev
        .persona
        .members
        .as_ref()
        .and_then(|m| m.model.clone())
        .unwrap_or_else(|| "C9400-SUP-1".into());
    let o = dev.ip.octets();
    let active_version = plain_version(&members[0].version);
    let mut t = format!(
        "Chassis Type: {}\n\nMod Ports Card Type                                   Model          Serial No.\n---+-----+--------------------------------------+--------------+--------------\n1   48   48-Port UPOE 10/100/1000 (RJ-45)            C9400-LC-48U     {}\n",
        dev.persona.model,
        super::device::serial(&format!("{}/lc1", dev.name)).replace("FOC", "JAE")
    );
    let mut slots: Vec<&MemberState> = members.iter().collect();
    slots.sort_by_key(|m| m.number);
    for m in &slots {
        t.push_str(&format!(
            "{:<4}{:<5}{:<44}{:<17}{}\n",
            m.number,
            10,
            "Supervisor 1 Module",
            sup,
            member_serial(dev, m.number).replace("FOC", "JAE")
        ));
    }
    t.push_str("\nMod MAC addresses                    Hw   Fw           Sw                 Status\n---+--------------------------------+----+------------+------------------+--------\n");
    t.push_str(&format!(
        "1   E4AA.5D{:02X}.{:02X}7C to E4AA.5D{:02X}.{:02X}AB 1.0  17.3.1r      {active_version:<18} ok\n",
        o[2], o[3], o[2], o[3]
    ));
    for m in &slots {
        let status = if m.state == "STANDBY COLD" {
            "standby"
        } else {
            "ok"
        };
        t.push_str(&format!(
            "{:<4}380E.4D{:02X}.{:02X}{:02X} to 380E.4D{:02X}.{:02X}{:02X} 0.3  17.3.1r      {:<18} {status}\n",
            m.number,
            o[3],
            m.number,
            0x36,
            o[3],
            m.number,
            0x3F,
            plain_version(&m.version)
        ));
    }
    t.push_str("\nMod Redundancy Role     Operating Mode  Configured Mode  Redundancy Status\n---+-------------------+---------------+---------------+------------------\n");
    for m in &slots {
        let (role, status) = match m.state.as_str() {
            "ACTIVE" => ("Active", "Active"),
            "STANDBY HOT" => ("Standby", "Standby Hot"),
            _ => ("Standby", "Standby Cold"),
        };
        let mode = if status == "Standby Cold" {
            "rpr"
        } else {
            "sso"
        };
        t.push_str(&format!(
            "{:<4}{role:<20}{mode:<16}{:<17}{status}\n",
            m.number, "sso"
        ));
    }
    t.push_str(&format!(
        "\nChassis MAC address range: 44 addresses from 380e.4d{:02x}.{:02x}40 to 380e.4d{:02x}.{:02x}6b\n",
        o[2], o[3], o[2], o[3]
    ));
    t
}

/// NX-OS `show module` of a Nexus 9500: genieparser nxos `test_show_platform.py`
/// test_show_module.output (a Nexus 9504 with two N9K-SUP-A, `active *` / `ha-standby`).
fn show_module_nxos(dev: &Device, members: &[MemberState]) -> String {
    let sup = dev
        .persona
        .members
        .as_ref()
        .and_then(|m| m.model.clone())
        .unwrap_or_else(|| "N9K-SUP-A".into());
    let v = &members[0].version;
    let mut slots: Vec<&MemberState> = members.iter().collect();
    slots.sort_by_key(|m| m.number);
    let mut t = String::from(
        "Mod Ports             Module-Type                       Model           Status\n--- ----- ------------------------------------- --------------------- ---------\n1    36   36x40/100G Ethernet Module            N9K-X9736C-FX         ok\n22   0    8-slot (100G) Fabric Module           N9K-C9508-FM-E        ok\n",
    );
    for m in &slots {
        let status = if m.role == "Active" {
            "active *".to_string()
        } else {
            m.state.clone()
        };
        t.push_str(&format!(
            "{:<5}0    {:<38}{sup:<22}{status}\n",
            m.number, "Supervisor Module"
        ));
    }
    t.push_str("29   0    System Controller                     N9K-SC-A              active\n30   0    System Controller                     N9K-SC-A              standby\n\nMod  Sw                Hw     Slot\n---  ----------------  ------ ----\n");
    t.push_str(&format!(
        "1    {v:<17} 1.3    LC1\n22   {v:<17} 1.1    FM2\n"
    ));
    for (i, m) in slots.iter().enumerate() {
        t.push_str(&format!(
            "{:<5}{:<17} 1.4    SUP{}\n",
            m.number,
            m.version,
            i + 1
        ));
    }
    t.push_str(&format!(
        "29   {v:<17} 1.4    SC1\n30   {v:<17} 1.4    SC2\n\n\nMod  MAC-Address(es)                         Serial-Num\n---  --------------------------------------  ----------\n"
    ));
    let o = dev.ip.octets();
    t.push_str(&format!(
        "1    88-1d-fc-{:02x}-{:02x}-ec to 88-1d-fc-{:02x}-{:02x}-2f  {}\n22   NA                                      {}\n",
        o[2],
        o[3],
        o[2],
        o[3],
        member_serial(dev, 1001).replace("FOC", "SAL"),
        member_serial(dev, 1022).replace("FOC", "SAL")
    ));
    for m in &slots {
        t.push_str(&format!(
            "{:<5}e4-c7-22-{:02x}-{:02x}-0c to e4-c7-22-{:02x}-{:02x}-1d  {}\n",
            m.number,
            o[3],
            m.number,
            o[3],
            m.number,
            member_serial(dev, m.number).replace("FOC", "SAL")
        ));
    }
    t.push_str("\nMod  Online Diag Status\n---  ------------------\n1    Pass\n22   Pass\n");
    for m in &slots {
        t.push_str(&format!("{:<5}Pass\n", m.number));
    }
    t.push_str("\n* this terminal session\n");
    t
}

/// NX-OS `show system redundancy status`: genieparser nxos `test_show_platform.py`
/// test_show_redundancy_status.golden_output (`This supervisor (sup-1)`, `Other supervisor
/// (sup-2)`).
fn show_system_redundancy_status(s: &Persisted, members: &[MemberState]) -> String {
    let hot = members.get(1).is_some_and(|m| m.state == "ha-standby");
    let up = (super::device::now_unix() - s.booted_at).max(0);
    let nx_up = format!(
        "{} days, {} hours, {} minutes, {} seconds",
        up / 86_400,
        up % 86_400 / 3_600,
        up % 3_600 / 60,
        up % 60
    );
    let started = jiff::Timestamp::from_second(s.booted_at)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .strftime("%a %b %d %H:%M:%S %Y")
        .to_string();
    let (operational, internal, other_sup, other_internal) = if hot {
        ("HA", "Active with HA standby", "HA standby", "HA standby")
    } else {
        ("None", "Active with no standby", "Powered-up", "Powered-up")
    };
    format!(
        "Redundancy mode\n---------------\n      administrative:   HA\n         operational:   {operational}\n\nThis supervisor (sup-1)\n-----------------------\n    Redundancy state:   Active\n    Supervisor state:   Active\n      Internal state:   {internal}\n\nOther supervisor (sup-2)\n------------------------\n    Redundancy state:   Standby\n\n    Supervisor state:   {other_sup}\n      Internal state:   {other_internal}\n\nSystem start time:          {started}\n\nSystem uptime:              {nx_up}\nKernel uptime:              {nx_up}\nActive supervisor uptime:   {nx_up}\n"
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::device::members as parse;
    use crate::sim::Fault;
    use crate::sim::persona::Persona;

    fn device(persona: &str) -> (tempfile::TempDir, Device) {
        let dir = tempfile::tempdir().unwrap();
        let p = Arc::new(Persona::load(persona).unwrap());
        let dev = Device::open(
            "lab-sw-001",
            Ipv4Addr::new(127, 0, 10, 1),
            p,
            dir.path(),
            Duration::ZERO,
        )
        .unwrap();
        (dir, dev)
    }

    /// Install mode: make `bin` at `version` the package set the next boot reads.
    fn activate(dev: &Device, bin: &str, version: &str) {
        crate::sim::install::expand(&dev.flash_dir, bin, version, 1000).unwrap();
        crate::sim::install::write_packages_conf(&dev.flash_dir, bin, version).unwrap();
    }

    fn rows(members: &[parse::StackMember]) -> Vec<(u32, &str, &str)> {
        members
            .iter()
            .map(|m| (m.number, m.role.as_str(), m.state.as_str()))
            .collect()
    }

    #[test]
    fn stack_of_three_reads_as_three_ready_members_then_each_fault() {
        let (_d, dev) = device("c9300-stack");
        let out = command(&dev, "show switch").unwrap();
        let members = parse::show_switch(&out).unwrap();
        assert_eq!(
            rows(&members),
            [
                (1, "Active", "Ready"),
                (2, "Standby", "Ready"),
                (3, "Member", "Ready")
            ]
        );
        assert!(members[0].this_member);
        let v =
            crate::device::parse::show_version(&dev.render(&dev.persona.templates.show_version))
                .unwrap();
        assert_eq!(v.model.as_deref(), Some("C9300-24P"));
        assert_eq!(v.version, "17.06.05");

        // A clean install: every member on the new version.
        activate(&dev, "cat9k_iosxe.17.09.04a.SPA.bin", "17.09.04a");
        dev.boot();
        let states = dev.member_states(&dev.state());
        assert!(
            states
                .iter()
                .all(|m| m.version == "17.09.04a" && m.state == "Ready")
        );
        let table = version_table(&dev, &dev.state());
        assert_eq!(table.matches("17.09.04a").count(), 3, "{table}");

        dev.set_fault(Fault::StackMemberVersionMismatch);
        activate(&dev, "cat9k_iosxe.17.12.03.SPA.bin", "17.12.03");
        dev.boot();
        let members = parse::show_switch(&command(&dev, "show switch").unwrap()).unwrap();
        assert_eq!(
            rows(&members),
            [
                (1, "Active", "Ready"),
                (2, "Standby", "Ready"),
                (3, "Member", "V-Mismatch")
            ]
        );
        let states = dev.member_states(&dev.state());
        assert_eq!(states[2].version, "17.09.04a");
        assert_eq!(states[1].version, "17.12.03");

        dev.clear_faults();
        dev.set_fault(Fault::StackMemberLost);
        dev.boot();
        let out = command(&dev, "show switch").unwrap();
        let members = parse::show_switch(&out).unwrap();
        assert_eq!(members[2].state, "Removed", "{out}");
        assert!(!version_table(&dev, &dev.state()).contains("    3 "));
    }

    #[test]
    fn classic_stack_members_boot_from_their_own_flash() {
        let (_d, dev) = device("c2960x-stack");
        let out = command(&dev, "show switch").unwrap();
        // IOS 15 names the active member `Master`; fleetup reads it as the active one.
        assert!(out.contains("*1       Master "), "{out}");
        let members = parse::show_switch(&out).unwrap();
        assert_eq!(
            rows(&members),
            [(1, "Active", "Ready"), (2, "Member", "Ready")]
        );

        // The new image on member 1 only, the BOOT variable on both: member 2 cannot boot it.
        let new = "c2960x-universalk9-mz.152-7.E8.bin";
        std::fs::write(dev.flash_path(new), b"image").unwrap();
        dev.update(|s| {
            s.boot_variable = vec![format!("flash:/{new}")];
            for m in &mut s.members {
                m.boot_variable = vec![format!("flash:/{new}")];
            }
        });
        dev.boot();
        let states = dev.member_states(&dev.state());
        assert_eq!(states[0].version, "15.2(7)E8");
        assert_eq!(states[1].version, "15.2(4)E10");
        assert_eq!(states[1].state, "V-Mismatch");
        // With the image on member 2's flash too, both run it.
        std::fs::write(dev.path_of(Some(2), new), b"image").unwrap();
        dev.boot();
        let states = dev.member_states(&dev.state());
        assert!(
            states
                .iter()
                .all(|m| m.version == "15.2(7)E8" && m.state == "Ready")
        );
        let boot = dev.render(&dev.persona.templates.show_boot);
        assert!(boot.contains("Switch 2\n-------------------\nBOOT path-list      : flash:/c2960x-universalk9-mz.152-7.E8.bin"), "{boot}");
    }

    #[test]
    fn catalyst_9400_supervisors_read_as_active_and_hot_standby() {
        let (_d, dev) = device("c9400-dual-sup");
        let red = parse::show_redundancy(&command(&dev, "show redundancy").unwrap()).unwrap();
        assert_eq!(red.operating_mode.as_deref(), Some("sso"));
        let active = red.active().unwrap();
        let standby = red.standby().unwrap();
        assert_eq!(active.location.as_deref(), Some("slot 3"));
        assert_eq!(standby.location.as_deref(), Some("slot 4"));
        assert!(standby.is_hot_standby());
        assert_eq!(standby.version.as_deref(), Some("17.6.5"));
        assert_eq!(standby.boot, ["bootflash:packages.conf"]);
        let modules = parse::show_module(&command(&dev, "show module").unwrap()).unwrap();
        let sups: Vec<_> = modules.iter().filter(|m| m.is_supervisor()).collect();
        assert_eq!(sups.len(), 2);
        assert_eq!(sups[1].redundancy_status.as_deref(), Some("Standby Hot"));
        assert_eq!(sups[1].software.as_deref(), Some("17.6.5"));

        activate(&dev, "cat9k_iosxe.17.09.04a.SPA.bin", "17.09.04a");
        dev.set_fault(Fault::StandbyNotHot);
        dev.boot();
        let red = parse::show_redundancy(&command(&dev, "show redundancy").unwrap()).unwrap();
        let standby = red.standby().unwrap();
        assert!(!standby.is_hot_standby());
        assert_eq!(standby.state.as_deref(), Some("STANDBY COLD"));
        assert_eq!(red.active().unwrap().version.as_deref(), Some("17.9.4a"));
        let modules = parse::show_module(&command(&dev, "show module").unwrap()).unwrap();
        let sup4 = modules.iter().find(|m| m.slot == 4).unwrap();
        assert_eq!(sup4.redundancy_status.as_deref(), Some("Standby Cold"));
    }

    #[test]
    fn a_bundle_mode_standby_supervisor_boots_from_its_own_flash() {
        let (_d, dev) = device("c9400-dual-sup-bundle");
        assert!(!dev.persona.install_mode);
        let old = "cat9k_iosxe.17.06.05.SPA.bin";
        // The standby's flash is its own, with the image the chassis shipped with.
        assert_eq!(
            dev.resolve_fs("stby-bootflash:x.bin").map(|(m, _, _)| m),
            Some(Some(4))
        );
        assert!(dev.path_of(Some(4), old).exists());
        let red = parse::show_redundancy(&command(&dev, "show redundancy").unwrap()).unwrap();
        assert!(red.standby().unwrap().is_hot_standby());
        assert_eq!(red.standby().unwrap().boot, [format!("bootflash:/{old}")]);

        // The new image on the active supervisor's flash only: the standby boots its old one
        // and falls out of SSO.
        let new = "cat9k_iosxe.17.09.04a.SPA.bin";
        std::fs::write(dev.flash_path(new), b"image").unwrap();
        dev.update(|s| s.boot_variable = vec![format!("flash:{new}")]);
        dev.boot();
        let red = parse::show_redundancy(&command(&dev, "show redundancy").unwrap()).unwrap();
        let standby = red.standby().unwrap();
        assert_eq!(red.active().unwrap().version.as_deref(), Some("17.9.4a"));
        assert_eq!(standby.version.as_deref(), Some("17.6.5"));
        assert_eq!(standby.state.as_deref(), Some("STANDBY COLD"));
        // The BOOT variable is the chassis's: the standby shows the active one's.
        assert_eq!(standby.boot, [format!("flash:{new}")]);

        // With the image on stby-bootflash: too, both run it, in SSO.
        std::fs::write(dev.path_of(Some(4), new), b"image").unwrap();
        dev.boot();
        let red = parse::show_redundancy(&command(&dev, "show redundancy").unwrap()).unwrap();
        let standby = red.standby().unwrap();
        assert!(standby.is_hot_standby());
        assert_eq!(standby.version.as_deref(), Some("17.9.4a"));
    }

    #[test]
    fn nexus_9500_supervisors_read_as_active_and_ha_standby() {
        let (_d, dev) = device("n9k-dual-sup");
        let modules = parse::show_module(&command(&dev, "show module").unwrap()).unwrap();
        let sups: Vec<_> = modules.iter().filter(|m| m.is_supervisor()).collect();
        assert_eq!(sups.len(), 2);
        assert_eq!(
            (sups[0].slot, sups[0].status.as_deref()),
            (27, Some("active"))
        );
        assert!(sups[0].this_session);
        assert_eq!(
            (sups[1].slot, sups[1].status.as_deref()),
            (28, Some("ha-standby"))
        );
        assert_eq!(sups[1].software.as_deref(), Some("9.3(8)"));
        let red = parse::show_redundancy(&command(&dev, "show system redundancy status").unwrap())
            .unwrap();
        assert_eq!(red.operating_mode.as_deref(), Some("HA"));
        assert!(red.standby().unwrap().is_hot_standby());
        assert_eq!(red.active().unwrap().location.as_deref(), Some("sup-1"));
        let v =
            crate::device::parse::show_version(&dev.render(&dev.persona.templates.show_version))
                .unwrap();
        assert_eq!(v.model.as_deref(), Some("N9K-C9508"));

        dev.set_fault(Fault::StandbyNotHot);
        dev.boot();
        let modules = parse::show_module(&command(&dev, "show module").unwrap()).unwrap();
        let sup = modules.iter().find(|m| m.slot == 28).unwrap();
        assert_eq!(sup.status.as_deref(), Some("powered-up"));
        let red = parse::show_redundancy(&command(&dev, "show system redundancy status").unwrap())
            .unwrap();
        assert!(!red.standby().unwrap().is_hot_standby());
    }
}
