//! Pre/post state comparison (`checks.compare`): what a device showed before the first change
//! must hold once it is back. Pure: the commands to run, the parsers of their outputs (tested
//! on real captures in `tests/fixtures/cisco/`), and the comparison of two parsed states.
//!
//! Parsers read by meaning, not by fixed columns where real outputs break them: a status with
//! a space in it (`administratively down`), a port name that contains `connected`, a device ID
//! too long for its column (printed on a line of its own, the rest on the next line), a
//! device ID with spaces, blank capability fields, and columns that drift by a character.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::inventory::Platform;

/// One comparison of the playbook's `checks.compare`.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// The interfaces up before must be up after.
    UpInterfaces { source: InterfaceSource },
    /// The CDP or LLDP neighbours (device ID and local port) before must all be back.
    Neighbors { protocol: NeighborProtocol },
    /// The route count after is within `tolerance` of the count before.
    Routes { tolerance: Tolerance },
}

/// Which command lists the interfaces and their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceSource {
    /// IOS/IOS-XE `show ip interface brief`, NX-OS `show interface brief`.
    Default,
    /// `show ip interface brief` on every platform (NX-OS lists layer-3 interfaces only).
    IpInterfaceBrief,
    /// Catalyst `show interfaces status` (NX-OS `show interface status`): `connected` ports.
    InterfacesStatus,
    /// NX-OS `show interface brief`.
    InterfaceBrief,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighborProtocol {
    Cdp,
    Lldp,
}

impl NeighborProtocol {
    fn label(self) -> &'static str {
        match self {
            NeighborProtocol::Cdp => "CDP",
            NeighborProtocol::Lldp => "LLDP",
        }
    }
}

/// How far the route count may move: a share of the count before, or a number of routes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    Percent(f64),
    Routes(u64),
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tolerance::Percent(p) => write!(f, "{p}%"),
            Tolerance::Routes(n) => write!(f, "{n} routes"),
        }
    }
}

/// The route tolerance when the playbook gives none: routes a reload may reasonably move
/// (host routes, a BGP session still converging) without hiding a lost neighbour's routes.
pub const DEFAULT_ROUTE_TOLERANCE: Tolerance = Tolerance::Percent(5.0);

/// The names `checks.compare` accepts, for the error that lists them.
pub const COMPARISON_NAMES: &[&str] = &["up_interfaces", "neighbors", "routes"];

impl Comparison {
    /// The comparison a show command stands for, when `checks.compare` names a command
    /// instead of a comparison (`- show cdp neighbors`).
    pub fn for_command(command: &str) -> Option<Comparison> {
        let c: Vec<String> = command
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        let c: Vec<&str> = c.iter().map(String::as_str).collect();
        Some(match c.as_slice() {
            ["show", "ip", "interface", "brief"] => Comparison::UpInterfaces {
                source: InterfaceSource::IpInterfaceBrief,
            },
            ["show", "interfaces" | "interface", "status"] => Comparison::UpInterfaces {
                source: InterfaceSource::InterfacesStatus,
            },
            ["show", "interface", "brief"] => Comparison::UpInterfaces {
                source: InterfaceSource::InterfaceBrief,
            },
            ["show", "cdp", "neighbors"] => Comparison::Neighbors {
                protocol: NeighborProtocol::Cdp,
            },
            ["show", "lldp", "neighbors"] => Comparison::Neighbors {
                protocol: NeighborProtocol::Lldp,
            },
            ["show", "ip", "route", "summary"] => Comparison::Routes {
                tolerance: DEFAULT_ROUTE_TOLERANCE,
            },
            _ => return None,
        })
    }

    /// The name as the playbook writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Comparison::UpInterfaces { .. } => "up_interfaces",
            Comparison::Neighbors { .. } => "neighbors",
            Comparison::Routes { .. } => "routes",
        }
    }

    /// The show command this comparison runs on a device of `platform`.
    pub fn command(&self, platform: Platform) -> &'static str {
        let nxos = platform == Platform::Nxos;
        match self {
            Comparison::UpInterfaces { source } => match (source, nxos) {
                (InterfaceSource::Default, true) | (InterfaceSource::InterfaceBrief, _) => {
                    "show interface brief"
                }
                (InterfaceSource::Default, false) | (InterfaceSource::IpInterfaceBrief, _) => {
                    "show ip interface brief"
                }
                (InterfaceSource::InterfacesStatus, true) => "show interface status",
                (InterfaceSource::InterfacesStatus, false) => "show interfaces status",
            },
            Comparison::Neighbors {
                protocol: NeighborProtocol::Cdp,
            } => "show cdp neighbors",
            Comparison::Neighbors {
                protocol: NeighborProtocol::Lldp,
            } => "show lldp neighbors",
            Comparison::Routes { .. } => "show ip route summary",
        }
    }

    /// Parse this comparison's command output.
    pub fn parse(&self, platform: Platform, output: &str) -> Result<Observed, String> {
        let command = self.command(platform);
        let parsed = match self {
            Comparison::UpInterfaces { .. } => match command {
                "show ip interface brief" => parse_ip_interface_brief(output),
                "show interface brief" => parse_nxos_interface_brief(output),
                _ => parse_interfaces_status(output),
            }
            .map(Observed::Interfaces),
            Comparison::Neighbors { .. } => parse_neighbors(output).map(Observed::Neighbors),
            Comparison::Routes { .. } => parse_route_summary(output).map(Observed::Routes),
        };
        parsed.map_err(|why| format!("`{command}`: {why}"))
    }

    /// What one observation amounts to: `up interfaces 24`, `CDP neighbours 3`, `routes 812`.
    pub fn describe(&self, seen: &Observed) -> String {
        match (self, seen) {
            (_, Observed::Interfaces(m)) => {
                format!("up interfaces {}", m.values().filter(|s| s.up).count())
            }
            (Comparison::Neighbors { protocol }, Observed::Neighbors(n)) => {
                format!("{} neighbours {}", protocol.label(), n.len())
            }
            (_, Observed::Neighbors(n)) => format!("neighbours {}", n.len()),
            (_, Observed::Routes(r)) => format!("routes {r}"),
        }
    }

    /// Compare what was seen before and after: `Ok` with the one-line summary for the report,
    /// or `Err` with that summary and every difference that fails the device.
    pub fn compare(&self, before: &Observed, after: &Observed) -> Compared {
        let mut differences = Vec::new();
        let summary = match (self, before, after) {
            (Comparison::UpInterfaces { .. }, Observed::Interfaces(b), Observed::Interfaces(a)) => {
                let up_before: Vec<&String> =
                    b.iter().filter(|(_, s)| s.up).map(|(n, _)| n).collect();
                let mut lost = Vec::new();
                for name in &up_before {
                    match a.get(*name) {
                        Some(s) if s.up => {}
                        Some(s) => {
                            lost.push(format!("{name} {}", s.status));
                            differences.push(format!(
                                "{name} was up before the upgrade and is {} now",
                                s.status
                            ));
                        }
                        None => {
                            lost.push(format!("{name} gone"));
                            differences.push(format!(
                                "{name} was up before the upgrade and is not listed now"
                            ));
                        }
                    }
                }
                let up_after = a.values().filter(|s| s.up).count();
                let mut line = format!("up interfaces {} → {up_after}", up_before.len());
                if !lost.is_empty() {
                    line.push_str(&format!(" ({})", lost.join(", ")));
                }
                line
            }
            (
                Comparison::Neighbors { protocol },
                Observed::Neighbors(b),
                Observed::Neighbors(a),
            ) => {
                let label = protocol.label();
                let mut lost = Vec::new();
                for n in b {
                    if !a.contains(n) {
                        let id = if n.device_id.is_empty() {
                            "(no device ID)"
                        } else {
                            n.device_id.as_str()
                        };
                        lost.push(format!("{id} on {}", n.local_port));
                        differences.push(format!(
                            "{label} neighbour {id} on {} is missing",
                            n.local_port
                        ));
                    }
                }
                let mut line = format!("{label} neighbours {} → {}", b.len(), a.len());
                if !lost.is_empty() {
                    line.push_str(&format!(" ({} missing)", lost.join(", ")));
                }
                line
            }
            (Comparison::Routes { tolerance }, Observed::Routes(b), Observed::Routes(a)) => {
                let (b, a) = (*b, *a);
                let change = a as i128 - b as i128;
                let percent = if b == 0 {
                    if a == 0 { 0.0 } else { 100.0 }
                } else {
                    change as f64 * 100.0 / b as f64
                };
                let within = match tolerance {
                    Tolerance::Percent(p) => percent.abs() <= *p + 1e-9,
                    Tolerance::Routes(n) => change.unsigned_abs() <= u128::from(*n),
                };
                let shown = format!(
                    "{}{:.0}%",
                    if change < 0 { "−" } else { "+" },
                    percent.abs()
                );
                if !within {
                    differences.push(format!(
                        "routes: {b} before, {a} after ({shown}, tolerance {tolerance})"
                    ));
                }
                format!("routes {b} → {a} ({shown}, tolerance {tolerance})")
            }
            _ => {
                differences.push(format!(
                    "{}: the states before and after are of different kinds",
                    self.name()
                ));
                format!("{}: not comparable", self.name())
            }
        };
        Compared {
            summary,
            differences,
        }
    }
}

/// The outcome of one comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    /// `up interfaces 24 → 23 (GigabitEthernet1/0/3 down)`.
    pub summary: String,
    /// Empty when the state held.
    pub differences: Vec<String>,
}

/// An interface's state as its command shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InterfaceState {
    /// As the device prints it: `down`, `administratively down`, `notconnect`,
    /// `protocol-down/link-down/admin-up`.
    pub status: String,
    pub up: bool,
}

/// A neighbour, identified by its device ID and the local port it is seen on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Neighbor {
    pub device_id: String,
    /// As printed, spaces removed (`Fas 0/5` → `Fas0/5`).
    pub local_port: String,
}

/// What one comparison's command showed. Kept as JSON between the state before and after
/// (`rollout_devices.compare_baseline`), so that a restarted fleetup still compares.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Observed {
    Interfaces(BTreeMap<String, InterfaceState>),
    Neighbors(BTreeSet<Neighbor>),
    /// The number of routes in the routing table.
    Routes(u64),
}

/// Lines of an output, without the command echo a capture may start with.
fn lines(output: &str) -> impl Iterator<Item = &str> {
    output.lines().map(|l| l.trim_end_matches('\r'))
}

/// IOS/IOS-XE `show ip interface brief` (`Status` may be two words, `Protocol` is the last
/// one) and NX-OS `show ip interface brief` (`protocol-up/link-up/admin-up`, with an
/// unnumbered interface's `(loopback0)` on a line of its own).
pub fn parse_ip_interface_brief(output: &str) -> Result<BTreeMap<String, InterfaceState>, String> {
    let mut out = BTreeMap::new();
    let mut header = false;
    for line in lines(output) {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.first() == Some(&"Interface") {
            header = true;
            continue;
        }
        if !header || t.is_empty() {
            continue;
        }
        if t.len() >= 3 && t[t.len() - 1].starts_with("protocol-") {
            // NX-OS: Interface, IP Address, Interface Status.
            let status = t[t.len() - 1];
            let parts: Vec<&str> = status.split('/').collect();
            let up = parts.contains(&"protocol-up") && parts.contains(&"link-up");
            out.insert(
                t[0].to_string(),
                InterfaceState {
                    status: status.to_string(),
                    up,
                },
            );
        } else if t.len() >= 6 {
            // IOS: Interface, IP-Address, OK?, Method, Status (1-2 words), Protocol.
            let protocol = t[t.len() - 1];
            let status = t[4..t.len() - 1].join(" ");
            let up = status == "up" && protocol == "up";
            // `up/down`: the line is up, the protocol is not.
            let shown = if status == "up" && protocol != "up" {
                format!("{status}/{protocol}")
            } else {
                status.clone()
            };
            out.insert(t[0].to_string(), InterfaceState { status: shown, up });
        }
    }
    if !header {
        return Err("no `Interface … Status` table in the output".into());
    }
    Ok(out)
}

/// The word of `line` under the column that starts at `col` in the header: the token that
/// covers that position, else the first one after it.
fn word_at(line: &str, col: usize) -> Option<&str> {
    let mut start = None;
    for (i, ch) in line.char_indices() {
        let space = ch.is_whitespace();
        match (start, space) {
            (None, false) => start = Some(i),
            (Some(s), true) => {
                if i > col {
                    return Some(&line[s..i]);
                }
                start = None;
            }
            _ => {}
        }
    }
    start.map(|s| &line[s..])
}

/// Catalyst `show interfaces status` and NX-OS `show interface status`: a port is up when its
/// `Status` is `connected`. The `Name` column may hold any text (even `connected`), so the
/// status is read under the header's `Status` column; lines of other layouts (Fibre Channel
/// `fc2/1 is up`) are skipped.
pub fn parse_interfaces_status(output: &str) -> Result<BTreeMap<String, InterfaceState>, String> {
    let mut out = BTreeMap::new();
    let mut col = None;
    for line in lines(output) {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.first() == Some(&"Port") && t.contains(&"Status") {
            col = line.find("Status");
            continue;
        }
        let Some(c) = col else { continue };
        if t.len() < 2 || t[0].starts_with('-') || t.get(1) == Some(&"is") {
            continue;
        }
        let Some(status) = word_at(line, c) else {
            continue;
        };
        out.insert(
            t[0].to_string(),
            InterfaceState {
                status: status.to_string(),
                up: status == "connected",
            },
        );
    }
    if col.is_none() {
        return Err("no `Port … Status` table in the output".into());
    }
    Ok(out)
}

/// NX-OS `show interface brief`: several tables (mgmt, Ethernet, Port-channel, loopbacks,
/// VLANs), each with its own `Status` column; up is `up`.
pub fn parse_nxos_interface_brief(
    output: &str,
) -> Result<BTreeMap<String, InterfaceState>, String> {
    let mut out = BTreeMap::new();
    let mut col = None;
    let mut any = false;
    for line in lines(output) {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.is_empty() || t[0].starts_with("---") {
            continue;
        }
        if t.contains(&"Status") && !t.iter().any(|w| w.contains('/')) {
            col = line.find("Status");
            any = true;
            continue;
        }
        // The second line of a two-line header (`Interface … Ch #`).
        if t[0] == "Interface" {
            continue;
        }
        let Some(c) = col else { continue };
        let Some(status) = word_at(line, c) else {
            continue;
        };
        out.insert(
            t[0].to_string(),
            InterfaceState {
                status: status.to_string(),
                up: status == "up",
            },
        );
    }
    if !any {
        return Err("no interface table with a `Status` column in the output".into());
    }
    Ok(out)
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `Gi1/0/1`, `Ethernet2/3`, `mgmt0`, `Eth0`: letters, then a digit somewhere.
fn is_port(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic()) && s.bytes().any(|b| b.is_ascii_digit())
}

/// The numbered part of an abbreviated port written with a space (`Fas 0/5`, `Eth 0`).
fn is_port_number(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'/' || b == b'.' || b == b':')
}

/// One neighbour line: the device ID tokens and the local port. The anchor is the hold time,
/// the first number that follows a port: everything before that port is the device ID (which
/// may have spaces), so a misaligned or collapsed line reads the same as an aligned one.
fn neighbor_line(t: &[&str]) -> Option<(String, String)> {
    for j in 1..t.len() {
        if !is_number(t[j]) {
            continue;
        }
        if is_port(t[j - 1]) {
            return Some((t[..j - 1].join(" "), t[j - 1].to_string()));
        }
        if j >= 2 && is_port_number(t[j - 1]) && t[j - 2].bytes().all(|b| b.is_ascii_alphabetic()) {
            return Some((t[..j - 2].join(" "), format!("{}{}", t[j - 2], t[j - 1])));
        }
    }
    None
}

/// `show cdp neighbors` (IOS, IOS-XE, NX-OS) and `show lldp neighbors` (IOS, NX-OS). A device
/// ID too long for its column stands alone on its line and the rest of the entry follows on
/// the next one; a line without a device ID keeps it empty.
pub fn parse_neighbors(output: &str) -> Result<BTreeSet<Neighbor>, String> {
    let mut out = BTreeSet::new();
    let mut header = false;
    let mut pending: Option<String> = None;
    for line in lines(output) {
        if !header {
            // IOS prints `Device ID`, NX-OS `Device-ID`.
            header = (line.contains("Device ID") || line.contains("Device-ID"))
                && line.contains("Local");
            continue;
        }
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.is_empty() {
            pending = None;
            continue;
        }
        if t[0] == "Total" {
            break;
        }
        // A continuation line has no device ID: its port comes first.
        match neighbor_line(&t) {
            Some((id, port)) => {
                let id = match (id.is_empty(), pending.take()) {
                    (true, Some(p)) => p,
                    _ => id,
                };
                out.insert(Neighbor {
                    device_id: id,
                    local_port: port,
                });
            }
            None => pending = Some(line.trim().to_string()),
        }
    }
    if !header {
        return Err("no neighbour table (`Device ID … Local Intrfce …`) in the output; is the protocol enabled?".into());
    }
    Ok(out)
}

/// `show ip route summary`: IOS/IOS-XE `Total` row (networks + subnets), NX-OS `Total
/// number of routes: N`.
pub fn parse_route_summary(output: &str) -> Result<u64, String> {
    for line in lines(output) {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("Total number of routes:") {
            return rest
                .trim()
                .parse()
                .map_err(|_| format!("unreadable route count in {l:?}"));
        }
        let t: Vec<&str> = l.split_whitespace().collect();
        if t.first() == Some(&"Total") && t.len() >= 3 && is_number(t[1]) && is_number(t[2]) {
            let networks: u64 = t[1].parse().map_err(|_| format!("unreadable {l:?}"))?;
            let subnets: u64 = t[2].parse().map_err(|_| format!("unreadable {l:?}"))?;
            return Ok(networks + subnets);
        }
    }
    Err("no `Total` route count in the output".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/cisco/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn up(m: &BTreeMap<String, InterfaceState>) -> Vec<&str> {
        m.iter()
            .filter(|(_, s)| s.up)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    #[test]
    fn ip_interface_brief_on_real_captures() {
        let m = parse_ip_interface_brief(&fixture("ntc_cisco_ios_show_ip_interface_brief.raw"))
            .unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(
            up(&m),
            ["Ethernet0/0", "Ethernet0/0.11", "Ethernet0/1", "Loopback0"]
        );
        assert_eq!(m["Ethernet0/2"].status, "administratively down");

        // Columns drift by a character on some lines; the status is still two words.
        let m = parse_ip_interface_brief(&fixture("iosxe_ShowIpInterfaceBrief_golden_output.txt"))
            .unwrap();
        assert_eq!(m.len(), 21);
        assert_eq!(up(&m).len(), 18);
        assert!(!m["Te0/0/5"].up);
        assert!(!m["ucse1/0/0"].up);
        assert!(m["Tunnel2000000002"].up);
        assert!(m["VirtualPortGroup4"].up);

        // NX-OS: one status word; the `(loopback0)` line of an unnumbered tunnel is no row.
        let m = parse_ip_interface_brief(&fixture("nxos_ShowIpInterfaceBrief_golden_output_1.txt"))
            .unwrap();
        assert_eq!(m.len(), 26);
        assert_eq!(up(&m).len(), 18);
        assert!(!m["Eth5/48.100"].up);
        assert_eq!(m["Eth5/48.100"].status, "protocol-down/link-down/admin-up");
        assert!(m["tunnel-te12"].up);
        assert!(!m.contains_key("(loopback0)"));
    }

    #[test]
    fn interfaces_status_reads_the_status_column_whatever_the_name() {
        let m = parse_interfaces_status(&fixture(
            "ntc_cisco_ios_show_interfaces_status_with_keywords_in_name.raw",
        ))
        .unwrap();
        // A description `*** connected to U` does not make Fa0/1 connected.
        assert_eq!(m["Fa0/1"].status, "notconnect");
        assert!(up(&m).is_empty());
        assert_eq!(m["Fa0/4"].status, "disabled");

        let m =
            parse_interfaces_status(&fixture("ntc_cisco_ios_show_interfaces_status2.raw")).unwrap();
        assert_eq!(m.len(), 10, "the fc lines are another layout: {m:?}");
        assert_eq!(up(&m).len(), 10);
        assert!(m["Eth1/10"].up);
    }

    #[test]
    fn nxos_interface_brief_reads_every_table() {
        let m = parse_nxos_interface_brief(&fixture("ntc_cisco_nxos_show_interface_brief.raw"))
            .unwrap();
        assert_eq!(m.len(), 56);
        assert_eq!(
            up(&m),
            ["Eth1/1", "Eth1/2", "Eth1/3", "Eth1/49", "Lo0", "mgmt0"]
        );
        assert_eq!(m["Eth1/5"].status, "down");
    }

    fn ids(s: &BTreeSet<Neighbor>) -> Vec<(String, String)> {
        s.iter()
            .map(|n| (n.device_id.clone(), n.local_port.clone()))
            .collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = v
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn cdp_neighbors_on_real_captures() {
        let n = parse_neighbors(&fixture("iosxe_ShowCdpNeighbors_device_output_2.txt")).unwrap();
        // `Eth 0` is one port; all three neighbours on it.
        assert_eq!(
            ids(&n),
            pairs(&[
                ("device2", "Eth0"),
                ("device3", "Eth0"),
                ("device4", "Eth0")
            ])
        );

        // Wrapped device IDs, lines without one, and a last ID with nothing after it.
        let n = parse_neighbors(&fixture("iosxe_ShowCdpNeighbors_device_output_7.txt")).unwrap();
        assert_eq!(
            ids(&n),
            pairs(&[
                ("", "Fas0/5"),
                ("", "Fas0/1"),
                ("xxx012", "Fas0/2"),
                ("xxx006.xx.xxx.xxx", "Fas0/3"),
                ("xxx001.xx.xxx.xxx", "Gig0/1"),
            ])
        );

        let n = parse_neighbors(&fixture("nxos_ShowCdpNeighbors_golden_output_1.txt")).unwrap();
        assert_eq!(
            ids(&n),
            pairs(&[("switchB", "Ethernet2/3"), ("switchA", "Ethernet1/4")])
        );
        // Columns collapsed to single spaces.
        let n = parse_neighbors(&fixture("nxos_ShowCdpNeighbors_golden_output_2.txt")).unwrap();
        assert_eq!(
            ids(&n),
            pairs(&[("Switch", "mgmt0"), ("swordfish-6k-2", "Eth3/2")])
        );
    }

    #[test]
    fn nxos_cdp_neighbors_with_wrapped_device_and_port_ids() {
        // `Device-ID` header; long IDs (with the serial in brackets) on a line of their own;
        // a port ID too long for its column on the next line.
        let n = parse_neighbors(&fixture("nxos_ShowCdpNeighbors_golden_output_4.txt")).unwrap();
        assert_eq!(
            ids(&n),
            pairs(&[
                ("CISCONXOS1.ctr.globedev.aac", "mgmt0"),
                (
                    "CISCONXOS101-CISCOXR202.ctr.globeint.aac(ABCD1234567)",
                    "Eth1/1"
                ),
                ("llxde101.ctr.globeint.aac", "Eth1/5"),
                ("llxde102.ctr.globeint.aac", "Eth1/7"),
                ("1111-2222-3333", "Eth1/3"),
                ("4444-5555-6666", "Eth1/5"),
                ("shkothap-lnx", "Eth1/1/1"),
                ("shkothap-lnx.cisco.com", "Eth1/1/2"),
            ])
        );
        let n = parse_neighbors(&fixture("nxos_ShowCdpNeighbors_golden_output_5.txt")).unwrap();
        assert_eq!(n.len(), 12);
        assert!(n.contains(&Neighbor {
            device_id: "bkcmnasa3a2d(SSI173500V1)".into(),
            local_port: "Eth1/32".into()
        }));
        assert!(n.contains(&Neighbor {
            device_id: "kanntp02-02".into(),
            local_port: "Eth100/1/10".into()
        }));
    }

    #[test]
    fn lldp_neighbors_on_real_captures() {
        let n = parse_neighbors(&fixture("ntc_cisco_ios_show_lldp_neighbors3.raw")).unwrap();
        // The three ABC-Ultra lines are one neighbour on one port (seen by three of its ports).
        assert_eq!(n.len(), 5);
        assert!(n.contains(&Neighbor {
            device_id: "tg-DT-argh-25".into(),
            local_port: "Gi5/0/44".into()
        }));

        let n =
            parse_neighbors(&fixture("ntc_cisco_nxos_show_lldp_neighbors_multiline.raw")).unwrap();
        assert_eq!(n.len(), 15);
        assert!(n.contains(&Neighbor {
            device_id: "dcx3.org.local".into(),
            local_port: "mgmt0".into()
        }));
        assert!(n.contains(&Neighbor {
            device_id: "fw2-clinical-partner".into(),
            local_port: "Eth1/8".into()
        }));
        // A device ID that overflows its column without wrapping.
        assert!(n.contains(&Neighbor {
            device_id: "cr-ebc.org.local".into(),
            local_port: "Eth3/1".into()
        }));

        let n = parse_neighbors(&fixture(
            "ntc_cisco_nxos_show_lldp_neighbors_name_with_space.raw",
        ))
        .unwrap();
        assert_eq!(
            ids(&n),
            pairs(&[
                ("Office Access Point", "Eth1/5"),
                ("nx-osv9000-2", "Eth1/3")
            ])
        );
    }

    #[test]
    fn neighbors_without_a_table_is_an_error() {
        assert!(parse_neighbors("% CDP is not enabled\n").is_err());
    }

    #[test]
    fn route_summary_on_real_captures() {
        for (file, routes) in [
            ("iosxe_ShowIpRouteSummary_golden_output_2.txt", 4),
            ("iosxe_ShowIpRouteSummary_golden_output_4.txt", 42),
            ("iosxe_ShowIpRouteSummary_golden_output_5.txt", 527),
            ("nxos_ShowIpRouteSummary_golden_output_2.txt", 308),
        ] {
            assert_eq!(parse_route_summary(&fixture(file)), Ok(routes), "{file}");
        }
        assert!(parse_route_summary("% Invalid input detected at '^' marker.\n").is_err());
    }

    fn ifs(v: &[(&str, &str)]) -> Observed {
        Observed::Interfaces(
            v.iter()
                .map(|(n, s)| {
                    (
                        n.to_string(),
                        InterfaceState {
                            status: s.to_string(),
                            up: *s == "up",
                        },
                    )
                })
                .collect(),
        )
    }

    fn nbrs(v: &[(&str, &str)]) -> Observed {
        Observed::Neighbors(
            v.iter()
                .map(|(d, p)| Neighbor {
                    device_id: d.to_string(),
                    local_port: p.to_string(),
                })
                .collect(),
        )
    }

    #[test]
    fn comparisons_table() {
        let ups = Comparison::UpInterfaces {
            source: InterfaceSource::Default,
        };
        let cdp = Comparison::Neighbors {
            protocol: NeighborProtocol::Cdp,
        };
        let routes = |t| Comparison::Routes { tolerance: t };
        let cases: Vec<(Comparison, Observed, Observed, &str, Vec<&str>)> = vec![
            (
                ups.clone(),
                ifs(&[("Gi1/0/1", "up"), ("Gi1/0/3", "up")]),
                ifs(&[("Gi1/0/1", "up"), ("Gi1/0/3", "up"), ("Gi1/0/4", "up")]),
                "up interfaces 2 → 3",
                vec![],
            ),
            (
                ups.clone(),
                ifs(&[("GigabitEthernet1/0/3", "up"), ("Gi1/0/9", "down")]),
                ifs(&[("GigabitEthernet1/0/3", "down"), ("Gi1/0/9", "down")]),
                "up interfaces 1 → 0 (GigabitEthernet1/0/3 down)",
                vec!["GigabitEthernet1/0/3 was up before the upgrade and is down now"],
            ),
            (
                ups.clone(),
                ifs(&[("Vlan10", "up")]),
                ifs(&[]),
                "up interfaces 1 → 0 (Vlan10 gone)",
                vec!["Vlan10 was up before the upgrade and is not listed now"],
            ),
            (
                cdp.clone(),
                nbrs(&[("core-sw1", "Te1/1/1"), ("core-sw2", "Te1/1/2")]),
                nbrs(&[("core-sw2", "Te1/1/2")]),
                "CDP neighbours 2 → 1 (core-sw1 on Te1/1/1 missing)",
                vec!["CDP neighbour core-sw1 on Te1/1/1 is missing"],
            ),
            (
                cdp.clone(),
                nbrs(&[("core-sw1", "Te1/1/1")]),
                nbrs(&[("core-sw1", "Te1/1/1"), ("phone", "Gi1/0/5")]),
                "CDP neighbours 1 → 2",
                vec![],
            ),
            (
                routes(Tolerance::Percent(5.0)),
                Observed::Routes(812),
                Observed::Routes(640),
                "routes 812 → 640 (−21%, tolerance 5%)",
                vec!["routes: 812 before, 640 after (−21%, tolerance 5%)"],
            ),
            (
                routes(Tolerance::Percent(5.0)),
                Observed::Routes(812),
                Observed::Routes(800),
                "routes 812 → 800 (−1%, tolerance 5%)",
                vec![],
            ),
            (
                routes(Tolerance::Routes(10)),
                Observed::Routes(100),
                Observed::Routes(111),
                "routes 100 → 111 (+11%, tolerance 10 routes)",
                vec!["routes: 100 before, 111 after (+11%, tolerance 10 routes)"],
            ),
            (
                routes(Tolerance::Percent(0.0)),
                Observed::Routes(0),
                Observed::Routes(0),
                "routes 0 → 0 (+0%, tolerance 0%)",
                vec![],
            ),
        ];
        for (c, before, after, summary, differences) in cases {
            let got = c.compare(&before, &after);
            assert_eq!(got.summary, summary);
            assert_eq!(got.differences, differences, "{summary}");
        }
    }

    #[test]
    fn commands_per_platform_and_by_name() {
        let ups = Comparison::UpInterfaces {
            source: InterfaceSource::Default,
        };
        assert_eq!(ups.command(Platform::Ios), "show ip interface brief");
        assert_eq!(ups.command(Platform::Nxos), "show interface brief");
        assert_eq!(
            Comparison::for_command("show  interfaces STATUS").map(|c| c.command(Platform::Iosxe)),
            Some("show interfaces status")
        );
        assert_eq!(
            Comparison::for_command("show lldp neighbors"),
            Some(Comparison::Neighbors {
                protocol: NeighborProtocol::Lldp
            })
        );
        assert_eq!(Comparison::for_command("show run"), None);
    }
}
