//! Pure parsers for the Cisco outputs an upgrade depends on.
//!
//! Every parser takes the text a command printed (echo and prompt may still be around it, as in
//! the public captures) and returns a typed value or a [`ParseError`] that quotes what was
//! missing. Nothing here touches a socket; the unit tests run on real captured outputs
//! (`tests/fixtures/cisco/`).

use std::sync::LazyLock;

use regex::Regex;

/// Why an output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "`{command}` output has no {what}; is this the right platform? first line: {first_line:?}"
    )]
    Missing {
        command: &'static str,
        what: &'static str,
        first_line: String,
    },
}

pub(super) fn missing(command: &'static str, what: &'static str, text: &str) -> ParseError {
    ParseError::Missing {
        command,
        what,
        first_line: text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .chars()
            .take(120)
            .collect(),
    }
}

pub(super) fn re(pattern: &str) -> Regex {
    // The patterns are literals of this file, covered by the unit tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("bad built-in regex {pattern:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// show version
// ---------------------------------------------------------------------------------------------

/// What `show version` says about the running software and the box.
///
/// A field that cannot be read is `None`, never a guess.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShowVersion {
    /// The release an engineer names: IOS-XE `17.05.01a` when the XE line is there (`IOS XE
    /// Version: 03.09.01.S` on the 3.x routers), else the IOS or NX-OS version (`15.2(7)E8`,
    /// `9.3(6)`).
    pub version: String,
    /// The IOS line's version even on IOS-XE (`17.5.1a`), when printed.
    pub ios_version: Option<String>,
    /// The file the box booted from (`flash:c2960x-...bin`, `bootflash:packages.conf`; NX-OS
    /// with two images: the system image; ACI: its one image).
    pub image: Option<String>,
    /// NX-OS with separate kickstart and system images (Nexus 3000/5000/6000/7000 before
    /// 7.0(3), ACI): the kickstart image, as printed.
    pub kickstart: Option<String>,
    /// The product ID where the hardware line gives it (`WS-C3750X-24P`, `ISR4451-X/K9`,
    /// `C9300-24P`, `N9K-C9372PX`), else the chassis as NX-OS names it (`Nexus 3048`). See
    /// [`model`].
    pub model: Option<String>,
    pub serial: Option<String>,
    pub hostname: Option<String>,
    pub uptime: Option<String>,
    pub config_register: Option<String>,
    /// When the box last started, as it prints it (`System restarted at 17:23:53 UTC Mon Apr
    /// 10 2017`; NX-OS `Last reset at ... usecs after Mon Nov 24 ...`): a different text after
    /// a reload proves the restart, to the second.
    pub restarted_at: Option<String>,
}

impl ShowVersion {
    /// Uptime in seconds, when the uptime text could be read.
    pub(crate) fn uptime_seconds(&self) -> Option<u64> {
        self.uptime.as_deref().and_then(uptime_seconds)
    }

    pub(crate) fn into_facts(self) -> crate::inventory::Facts {
        crate::inventory::Facts {
            version: Some(self.version),
            image: self.image,
            model: self.model,
            serial: self.serial,
            uptime: self.uptime,
            config_register: self.config_register,
            last_seen: None,
            members: Vec::new(),
        }
    }
}

static XE_VERSION: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?m)^\s*(?:Cisco IOS XE Software, Version|IOS XE Version:)[ \t]+([^,\s]+)")
});
static IOS_VERSION: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?m)^.*(?:IOS Software|IOS \(tm\)).*?,[ \t]*(?:Experimental )?Version[ \t]+([^,\s]+)")
});
static NXOS_VERSION: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*(?:NXOS|system):[ \t]+version[ \t]+(\S+)"));
static IMAGE: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?m)^\s*(?:System|NXOS|system) image file is:?[ \t]+"?([^"\s]+)"?"#));
static KICKSTART: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*kickstart image file is:?[ \t]+(\S+)"));
static UPTIME: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*(\S+) uptime is (.+?)\s*$"));
// The IOS hardware line: VENDOR MODEL [(CPU)] processor ... with N bytes of memory. The vendor
// word is `cisco` or `Cisco`, or an OEM's (`Allen-Bradley 1783-CMS20DP (ARM) processor`).
static HARDWARE_PROCESSOR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?m)^[ \t]*\S+[ \t]+(\S+)[ \t]+(?:\([^)\n]*\)[ \t]+)?processor\b[^\n]*?\bwith\b[^\n]*?\bbytes of (?:physical )?memory",
    )
});
// Routers without a CPU in the line: `Cisco CISCO2911/K9 (revision 1.0) with ...`,
// `Cisco IOSv (revision 1.0) with  with 460033K/62464K bytes of memory.`
static HARDWARE_REVISION: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?m)^[ \t]*\S+[ \t]+(\S+)[ \t]+\(revision [^)\n]*\)[ \t]+with\b[^\n]*?\bbytes of memory")
});
// NX-OS: `cisco Nexus9000 C9372PX chassis`, `cisco Nexus 3048 Chassis ("48x1GE ...")`,
// `cisco Nexus7000 C7010 (10 Slot) Chassis ("Supervisor module-1X")`.
static NX_CHASSIS: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?mi)^[ \t]*cisco[ \t]+(\S.*?)(?:[ \t]+\(\d+ Slot\))?[ \t]+chassis\b"));
// ACI mode: `cisco N9K-C9396PX ("supervisor")`.
static ACI_CHASSIS: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?m)^[ \t]*cisco[ \t]+(\S+)[ \t]+\("[^"\n]*"\)[ \t]*\r?$"#));
// Catalyst switches also print `Model Number : WS-C3850-48U` (the first is the active one).
static MODEL_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*Model [Nn]umber[ \t]*:[ \t]*(\S+)"));
static SERIAL: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*Processor [Bb]oard ID[ \t]+([^\s,]+)"));
static SYSTEM_SERIAL: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*System [Ss]erial [Nn]umber[ \t]*:[ \t]*(\S+)"));
static CONFREG: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*Configuration [Rr]egister is (\S+)"));
static DEVICE_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*Device name:[ \t]+(\S+)"));
static RESTARTED: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?m)^\s*(?:System restarted at|Last reset at \d+ usecs after)[ \t]+(.+?)\s*$")
});

/// The model `show version` names, in the form inventories and `show inventory` use (the
/// product ID), where the output gives it without guessing:
/// - IOS, IOS-XE: the hardware line (`cisco WS-C3750X-48P (PowerPC405) processor`, `Cisco
///   CISCO2911/K9 (revision 1.0) with`, an OEM's `Allen-Bradley 1783-CMS20DP (ARM) processor`),
///   else the `Model Number :` line;
/// - NX-OS: `cisco Nexus9000 C9372PX chassis` is `N9K-C9372PX` (every Nexus 9000 product ID is
///   `N9K-` and the chassis name, and ACI mode prints exactly that: `cisco N9K-C9372PX
///   ("supervisor")`), likewise `Nexus7000 C7010` is `N7K-C7010` and `Nexus7700 C7706` is
///   `N77-C7706`. Other families' product IDs carry suffixes the chassis line lacks
///   (`N3K-C3064PQ-10GX`), so their chassis name stays as printed, as Genie's `chassis` has it
///   (`Nexus 3048`, `Nexus5548`, `Nexus3000 C3232C`). ntc-templates reports the bare `C9372PX`.
pub(crate) fn model(text: &str) -> Option<String> {
    let cap1 = |r: &Regex| r.captures(text).map(|c| c[1].trim().to_string());
    if let Some(m) = cap1(&HARDWARE_PROCESSOR).or_else(|| cap1(&HARDWARE_REVISION)) {
        return Some(m);
    }
    if let Some(chassis) = cap1(&NX_CHASSIS) {
        let mut words = chassis.split_whitespace();
        let pid = match (words.next(), words.next(), words.next()) {
            (Some(family), Some(code), None) if code.starts_with('C') => match family {
                "Nexus9000" => Some(format!("N9K-{code}")),
                "Nexus7000" => Some(format!("N7K-{code}")),
                "Nexus7700" => Some(format!("N77-{code}")),
                _ => None,
            },
            _ => None,
        };
        return Some(pid.unwrap_or(chassis));
    }
    cap1(&ACI_CHASSIS).or_else(|| cap1(&MODEL_NUMBER))
}

/// Parse `show version` of IOS, IOS-XE or NX-OS.
pub(crate) fn show_version(text: &str) -> Result<ShowVersion, ParseError> {
    let cap1 = |r: &Regex| r.captures(text).map(|c| c[1].to_string());
    let ios_version = cap1(&IOS_VERSION);
    let version = cap1(&XE_VERSION)
        .or_else(|| ios_version.clone())
        .or_else(|| cap1(&NXOS_VERSION))
        .ok_or_else(|| missing("show version", "software version line", text))?;
    let (uptime_host, uptime) = match UPTIME.captures(text) {
        // NX-OS says "Kernel uptime is ..."; the hostname is on "Device name:".
        Some(c) if &c[1] != "Kernel" => (Some(c[1].to_string()), Some(c[2].to_string())),
        Some(c) => (None, Some(c[2].to_string())),
        None => (None, None),
    };
    let kickstart = cap1(&KICKSTART);
    // ACI boots one image, printed as the kickstart; `auto-s` is what it unpacked from it.
    let image = match cap1(&IMAGE) {
        Some(i) if i.ends_with("/auto-s") && kickstart.is_some() => kickstart.clone(),
        other => other,
    };
    Ok(ShowVersion {
        version,
        ios_version,
        image,
        kickstart,
        model: model(text),
        serial: cap1(&SERIAL).or_else(|| cap1(&SYSTEM_SERIAL)),
        hostname: uptime_host.or_else(|| cap1(&DEVICE_NAME)),
        uptime,
        config_register: cap1(&CONFREG),
        restarted_at: cap1(&RESTARTED),
    })
}

/// Sum an IOS or NX-OS uptime text ("1 year, 51 weeks, 2 days, 41 minutes",
/// "796 day(s), 15 hour(s), 58 minute(s), 29 second(s)") into seconds.
pub(crate) fn uptime_seconds(text: &str) -> Option<u64> {
    static PART: LazyLock<Regex> =
        LazyLock::new(|| re(r"(\d+)\s+(year|week|day|hour|minute|second)"));
    let mut total = 0u64;
    let mut any = false;
    for c in PART.captures_iter(text) {
        let n: u64 = c[1].parse().ok()?;
        let unit = match &c[2] {
            "year" => 365 * 86_400,
            "week" => 7 * 86_400,
            "day" => 86_400,
            "hour" => 3_600,
            "minute" => 60,
            _ => 1,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        any = true;
    }
    any.then_some(total)
}

// ---------------------------------------------------------------------------------------------
// dir / show flash:
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirEntry {
    pub name: String,
    pub size: u64,
    pub is_dir: bool,
}

/// A directory listing with the file system's totals (when printed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DirListing {
    /// `flash:/`, `bootflash:/` when the listing names it.
    pub directory: Option<String>,
    pub entries: Vec<DirEntry>,
    pub bytes_total: Option<u64>,
    pub bytes_free: Option<u64>,
}

impl DirListing {
    pub(crate) fn file(&self, name: &str) -> Option<&DirEntry> {
        let name = name.trim_start_matches('/');
        self.entries.iter().find(|e| !e.is_dir && e.name == name)
    }
}

/// Why `dir` listed nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DirError {
    #[error("no such file or directory: {0}")]
    NotFound(String),
    #[error("the device refused `dir`: {0}")]
    Device(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

static DIR_OF: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*Directory of (\S+)"));
// IOS: "  267  -rw-   147988420  Mar 29 2017 00:00:00 +00:00  vios-adventerprisek9-m";
// the attribute column is sometimes split ("-rw  -") and the date may be "<no date>".
static IOS_ENTRY: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*\d+\s+([-dlrwx][-dlrwx ]*?)\s+(\d+)\s+(.+?)\s+(\S+)\s*$"));
// NX-OS: "   4073830    Apr 20 10:19:08 2017  n7000-s2-debug-sh.10.81.0.125.gbin".
static NXOS_ENTRY: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\s*(\d+)\s+[A-Z][a-z]{2}\s+\d{1,2}\s+\d{2}:\d{2}:\d{2}\s+\d{4}\s+(\S+)\s*$")
});
// Some IOS-XE file systems (drec0:): "-rwxrwxrwx   490586943   cat9k_lite_iosxe.17.09.01.SPA.bin".
static ATTR_ENTRY: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*([-d][-rwx]{9})\s+(\d+)\s+(\S+)\s*$"));
static IOS_TOTALS: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\d+) bytes total \((\d+) bytes free\)"));
static NX_FREE: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*(\d+) bytes free\s*$"));
static NX_TOTAL: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*(\d+) bytes total\s*$"));
static ERROR_PAREN: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*%\s?Error \w+ (\S+) \((.+?)\)"));

/// Parse `dir FS:` / `show flash:` of IOS, IOS-XE or NX-OS.
pub(crate) fn dir(text: &str) -> Result<DirListing, DirError> {
    if let Some(c) = ERROR_PAREN.captures(text) {
        let reason = &c[2];
        if reason.contains("No such file") || reason.contains("does not exist") {
            return Err(DirError::NotFound(c[1].to_string()));
        }
        return Err(DirError::Device(c[0].trim().to_string()));
    }
    if text.contains("Path does not exist") {
        return Err(DirError::NotFound(text.trim().to_string()));
    }
    let mut listing = DirListing {
        directory: DIR_OF.captures(text).map(|c| c[1].to_string()),
        ..Default::default()
    };
    for line in text.lines() {
        if let Some(c) = IOS_ENTRY.captures(line) {
            let attrs = &c[1];
            listing.entries.push(DirEntry {
                name: c[4].to_string(),
                size: c[2].parse().unwrap_or(0),
                is_dir: attrs.starts_with('d'),
            });
        } else if let Some(c) = NXOS_ENTRY.captures(line) {
            let name = &c[2];
            listing.entries.push(DirEntry {
                name: name.trim_end_matches('/').to_string(),
                size: c[1].parse().unwrap_or(0),
                is_dir: name.ends_with('/'),
            });
        } else if let Some(c) = ATTR_ENTRY.captures(line) {
            listing.entries.push(DirEntry {
                name: c[3].to_string(),
                size: c[2].parse().unwrap_or(0),
                is_dir: c[1].starts_with('d'),
            });
        }
    }
    if let Some(c) = IOS_TOTALS.captures(text) {
        listing.bytes_total = c[1].parse().ok();
        listing.bytes_free = c[2].parse().ok();
    } else {
        listing.bytes_free = NX_FREE.captures(text).and_then(|c| c[1].parse().ok());
        listing.bytes_total = NX_TOTAL.captures(text).and_then(|c| c[1].parse().ok());
    }
    let empty_dir = text.contains("No files in directory");
    if listing.entries.is_empty() && listing.bytes_free.is_none() && !empty_dir {
        return Err(missing("dir", "file lines or free-space line", text).into());
    }
    Ok(listing)
}

// ---------------------------------------------------------------------------------------------
// show boot / show bootvar
// ---------------------------------------------------------------------------------------------

/// The boot variable in effect for the next reload, in boot order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BootVariable {
    /// `flash:c2960x-...bin`, `bootflash:packages.conf`; the `,12` boot-sequence suffix of
    /// IOS-XE is removed.
    pub entries: Vec<String>,
    /// NX-OS kickstart image (older Nexus), when printed.
    pub kickstart: Option<String>,
    /// A chassis with two supervisors (Catalyst 9400/9500/9600, ASR 1000): the standby's
    /// `Standby BOOT variable =` entries.
    pub standby_entries: Vec<String>,
    pub config_register: Option<String>,
    /// Catalyst switches (`BOOT path-list`, `Manual Boot`): each `boot system` line replaces
    /// the whole list, so several entries go on one line separated by `;`. Routers append one
    /// entry per `boot system` line.
    pub one_line_list: bool,
}

static BOOT_PATH_LIST: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*BOOT path-list[ \t]*:[ \t]*(.*?)[ \t]*$"));
static BOOT_VARIABLE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*BOOT variable (?:= ?(.*?)|does not exist)\s*$"));
static STANDBY_BOOT_VARIABLE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*Standby BOOT variable = ?(.*?)\s*$"));
static NX_BOOT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?mi)^\s*(?:nxos|system) variable = (\S+)"));
static NX_KICKSTART: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*kickstart variable = (\S+)"));

pub(crate) fn split_boot_list(list: &str) -> Vec<String> {
    static SEQ: LazyLock<Regex> = LazyLock::new(|| re(r",\d+$"));
    list.split(';')
        .map(|e| SEQ.replace(e.trim(), "").trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

static TFTP_BLOCKSIZE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*ip tftp blocksize (\d+)\s*$"));

/// The `ip tftp blocksize N` line of a running configuration (or of `show running-config |
/// include ip tftp blocksize`), if there is one.
/// The line of a `show running-config | include ^HEAD` output that sets `head`, as the device
/// printed it.
pub(crate) fn global_line(text: &str, head: &str) -> Option<String> {
    let head = head.to_ascii_lowercase();
    text.lines()
        .map(str::trim_end)
        .find(|l| {
            let lower = l.to_ascii_lowercase();
            lower.starts_with(&head) && lower[head.len()..].starts_with(' ')
        })
        .map(str::to_string)
}

pub(crate) fn tftp_blocksize(text: &str) -> Option<u16> {
    TFTP_BLOCKSIZE
        .captures(text)
        .and_then(|c| c[1].parse().ok())
}

/// Parse `show boot` (classic `BOOT path-list :`, IOS-XE `BOOT variable =`, Cat9k sections,
/// NX-OS `nxos variable =`) or `show bootvar`.
pub(crate) fn show_boot(text: &str) -> Result<BootVariable, ParseError> {
    // Cat9k and NX-OS print the current and the next-reload variables; the next reload is
    // what an upgrade changes.
    let relevant = match text.find("Boot Variables on next reload") {
        Some(i) => &text[i..],
        None => text,
    };
    let config_register = CONFREG.captures(text).map(|c| c[1].to_string());
    let one_line_list = text.contains("BOOT path-list") || text.contains("Manual Boot");
    let standby_entries = STANDBY_BOOT_VARIABLE
        .captures(relevant)
        .map(|c| split_boot_list(&c[1]))
        .unwrap_or_default();
    if let Some(c) = BOOT_PATH_LIST.captures(relevant) {
        return Ok(BootVariable {
            entries: split_boot_list(&c[1]),
            kickstart: None,
            standby_entries,
            config_register,
            one_line_list,
        });
    }
    if let Some(c) = BOOT_VARIABLE.captures(relevant) {
        return Ok(BootVariable {
            entries: c
                .get(1)
                .map(|m| split_boot_list(m.as_str()))
                .unwrap_or_default(),
            kickstart: None,
            standby_entries,
            config_register,
            one_line_list,
        });
    }
    if let Some(c) = NX_BOOT.captures(relevant) {
        return Ok(BootVariable {
            entries: vec![c[1].to_string()],
            kickstart: NX_KICKSTART.captures(relevant).map(|c| c[1].to_string()),
            standby_entries: Vec::new(),
            config_register,
            one_line_list: false,
        });
    }
    if relevant.contains("No module boot variable set") || relevant.contains("Boot POAP") {
        return Ok(BootVariable {
            config_register,
            ..Default::default()
        });
    }
    Err(missing("show boot", "BOOT variable or path-list", text))
}

// ---------------------------------------------------------------------------------------------
// verify /md5
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Md5Report {
    pub file: String,
    /// Lower-case hex digest computed by the device.
    pub md5: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Md5Error {
    #[error("file not found on the device: {0}")]
    NotFound(String),
    #[error("the device computed {computed} for {file}, expected {expected}")]
    Mismatch {
        file: String,
        computed: String,
        expected: String,
    },
    #[error("the device refused `verify /md5`: {0}")]
    Device(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

static MD5_LINE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?m)^\s*(?:verify /md5|Verified) \(([^)]+)\)\s*=\s*([0-9a-fA-F]{32})\s*$")
});
static MD5_COMPUTED: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)Computed signature\s*=\s*([0-9a-fA-F]{32})"));

/// Parse `verify /md5 FILE` (or `verify /md5 FILE HASH`) and compare with `expected`.
pub(crate) fn verify_md5(text: &str, expected: &str) -> Result<Md5Report, Md5Error> {
    let expected = expected.trim().to_ascii_lowercase();
    if let Some(c) = MD5_LINE.captures(text) {
        let report = Md5Report {
            file: c[1].to_string(),
            md5: c[2].to_ascii_lowercase(),
        };
        if report.md5 != expected {
            return Err(Md5Error::Mismatch {
                file: report.file,
                computed: report.md5,
                expected,
            });
        }
        return Ok(report);
    }
    if let Some(c) = ERROR_PAREN.captures(text) {
        if c[2].contains("No such file") {
            return Err(Md5Error::NotFound(c[1].to_string()));
        }
        return Err(Md5Error::Device(c[0].trim().to_string()));
    }
    if let Some(line) = text
        .lines()
        .find(|l| l.trim_start().starts_with("%Error verifying"))
    {
        let computed = MD5_COMPUTED
            .captures(text)
            .map(|c| c[1].to_ascii_lowercase())
            .unwrap_or_else(|| "a different digest".into());
        return Err(Md5Error::Mismatch {
            file: line.trim().to_string(),
            computed,
            expected,
        });
    }
    if let Some(line) = text.lines().find(|l| l.trim_start().starts_with('%')) {
        return Err(Md5Error::Device(line.trim().to_string()));
    }
    Err(missing("verify /md5", "`verify /md5 (FILE) = HASH` line", text).into())
}

// ---------------------------------------------------------------------------------------------
// copy
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyReport {
    /// Bytes copied, when the device says (IOS does; NX-OS only says `Copy complete.`).
    pub bytes: Option<u64>,
}

/// Why a `copy URL flash:` failed, as the device said it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    #[error("the device timed out reaching the file server: {0}")]
    Timeout(String),
    #[error("the file server does not have the file: {0}")]
    SourceNotFound(String),
    #[error("not enough space on the device: {0}")]
    FlashFull(String),
    #[error("the file server refused the login or the file: {0}")]
    Refused(String),
    #[error("the device could not reach the file server: {0}")]
    Unreachable(String),
    #[error("the device could not write the file: {0}")]
    WriteFailed(String),
    #[error("copy failed: {0}")]
    Other(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

static COPY_OK: LazyLock<Regex> = LazyLock::new(|| re(r"\[OK - (\d+)(?:/\d+)? bytes\]"));
static COPIED: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^\s*(\d+) bytes copied in "));
static NX_COPIED: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?m)^\s*(?:Copy complete\.\s*$|(?:TFTP|FTP|SFTP|SCP|HTTP) get operation was successful)")
});
// IOS `%Error opening tftp://... (Timed out)`; NX-OS `TFTP get operation failed:...`.
static COPY_FAILED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?m)^\s*(?:%\s?Error.*|(?:TFTP|FTP|SFTP|SCP|HTTP) get operation failed.*|Transfer of file aborted.*)$",
    )
});

/// Parse the outcome of `copy URL FS:` on IOS, IOS-XE or NX-OS.
///
/// A success line wins over error lines: an unrelated autoinstall message
/// (`%Error opening tftp://255.255.255.255/network-confg (Timed out)`) can land in the middle of
/// the `!!!!` progress of a copy that then completes.
pub(crate) fn copy_result(text: &str) -> Result<CopyReport, CopyError> {
    if let Some(c) = COPIED.captures(text).or_else(|| COPY_OK.captures(text)) {
        return Ok(CopyReport {
            bytes: c[1].parse().ok(),
        });
    }
    if NX_COPIED.is_match(text) {
        return Ok(CopyReport { bytes: None });
    }
    if let Some(m) = COPY_FAILED.find(text) {
        let line = m.as_str().trim().trim_end_matches('!').to_string();
        let lower = line.to_ascii_lowercase();
        let err = if lower.contains("timed out") || lower.contains("timeout") {
            CopyError::Timeout(line)
        } else if lower.contains("not enough space")
            || lower.contains("no space left")
            || lower.contains("device full")
        {
            CopyError::FlashFull(line)
        } else if lower.contains("no such file") || lower.contains("file not found") {
            CopyError::SourceNotFound(line)
        } else if lower.contains("permission denied")
            || lower.contains("login")
            || lower.contains("access violation")
        {
            CopyError::Refused(line)
        } else if lower.contains("socket error")
            || lower.contains("connection refused")
            || lower.contains("invalid ip address")
            || lower.contains("unreachable")
        {
            CopyError::Unreachable(line)
        } else if lower.contains("error writing") || lower.contains("write error") {
            CopyError::WriteFailed(line)
        } else {
            CopyError::Other(line)
        };
        return Err(err);
    }
    Err(missing(
        "copy",
        "`[OK - N bytes]`, `Copy complete.` or error line",
        text,
    )
    .into())
}

// ---------------------------------------------------------------------------------------------
// IOS-XE install mode
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PackageState {
    Inactive,
    ActivatedUncommitted,
    ActivatedCommitted,
    DeactivatedUncommitted,
}

#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstalledPackage {
    /// `IMG`, `SMU`, ...
    pub kind: String,
    pub state: PackageState,
    /// A version for `IMG`, a file for `SMU`.
    pub name: String,
    /// Where, from the section header: `R0`, `R0 R1`, `Switch 1 2`.
    pub location: Option<String>,
}

#[cfg(test)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct InstallSummary {
    pub packages: Vec<InstalledPackage>,
    /// `inactive` or the text after `active on` when a rollback timer runs.
    pub auto_abort_timer: Option<String>,
}

#[cfg(test)]
impl InstallSummary {
    /// The committed image version, the one the box runs and keeps across reloads.
    pub(crate) fn committed_image(&self) -> Option<&str> {
        self.packages
            .iter()
            .find(|p| p.kind == "IMG" && p.state == PackageState::ActivatedCommitted)
            .map(|p| p.name.as_str())
    }

    pub(crate) fn has_uncommitted(&self) -> bool {
        self.packages
            .iter()
            .any(|p| p.state == PackageState::ActivatedUncommitted)
    }
}

#[cfg(test)]
static PKG_LINE: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*([A-Z]{2,4})\s+([IUCD])\s+(\S+)\s*$"));
#[cfg(test)]
static INSTALL_SECTION: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*\[\s*(.+?)\s*\]\s*Installed Package"));
#[cfg(test)]
static ABORT_TIMER: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*Auto abort timer:[ \t]*(.+?)\s*$"));

/// Parse IOS-XE `show install summary`.
#[cfg(test)]
pub(crate) fn install_summary(text: &str) -> Result<InstallSummary, ParseError> {
    let mut summary = InstallSummary {
        auto_abort_timer: ABORT_TIMER.captures(text).map(|c| c[1].to_string()),
        ..Default::default()
    };
    let mut location = None;
    for line in text.lines() {
        if let Some(c) = INSTALL_SECTION.captures(line) {
            location = Some(c[1].to_string());
        }
        if let Some(c) = PKG_LINE.captures(line) {
            let state = match &c[2] {
                "I" => PackageState::Inactive,
                "U" => PackageState::ActivatedUncommitted,
                "C" => PackageState::ActivatedCommitted,
                _ => PackageState::DeactivatedUncommitted,
            };
            summary.packages.push(InstalledPackage {
                kind: c[1].to_string(),
                state,
                name: c[3].to_string(),
                location: location.clone(),
            });
        }
    }
    if summary.packages.is_empty() && !text.contains("Installed Package(s) Information") {
        return Err(missing("show install summary", "package table", text));
    }
    Ok(summary)
}

/// Outcome of an IOS-XE `install ...` operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InstallOutcome {
    Success,
    /// `Same Image File-No Change`: the image is already installed.
    AlreadyInstalled,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InstallError {
    #[error("not enough space for the install: {0}")]
    FlashFull(String),
    #[error("the install refused to run because the configuration is not saved: {0}")]
    ConfigNotSaved(String),
    #[error("install failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

static INSTALL_FAILED: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^.*FAILED:?[ \t]*(.*?)[ \t]*$"));

/// Parse the output of `install add file ... activate commit` or `install remove inactive`.
pub(crate) fn install_result(text: &str) -> Result<InstallOutcome, InstallError> {
    if text.contains("Same Image File-No Change") {
        return Ok(InstallOutcome::AlreadyInstalled);
    }
    if let Some(c) = INSTALL_FAILED.captures(text) {
        let line = c[0].trim().to_string();
        if line.contains("free space") {
            return Err(InstallError::FlashFull(line));
        }
        if line.contains("configuration has been modified") {
            return Err(InstallError::ConfigNotSaved(line));
        }
        return Err(InstallError::Failed(line));
    }
    if text
        .lines()
        .any(|l| l.trim_start().starts_with("SUCCESS: install_"))
    {
        return Ok(InstallOutcome::Success);
    }
    Err(missing("install", "`SUCCESS: install_...` or `FAILED:` line", text).into())
}

// ---------------------------------------------------------------------------------------------
// NX-OS install all
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstallStep {
    pub description: String,
    pub success: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct InstallAllStatus {
    pub steps: Vec<InstallStep>,
    /// The installer printed its success line (`Finishing the upgrade`,
    /// `Install has been successful`).
    pub finished: bool,
    /// The impact table said the upgrade reloads the switch.
    pub disruptive: bool,
}

impl InstallAllStatus {
    pub(crate) fn failed_step(&self) -> Option<&InstallStep> {
        self.steps.iter().find(|s| !s.success)
    }
}

/// Parse NX-OS `show install all status` or the output of `install all nxos ...`.
pub(crate) fn install_all_status(text: &str) -> Result<InstallAllStatus, ParseError> {
    static RESULT: LazyLock<Regex> =
        LazyLock::new(|| re(r"(?:\[#+\s*\]\s*100%\s*)?--\s*(SUCCESS|FAIL\w*)"));
    let mut status = InstallAllStatus::default();
    let mut last_description: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(c) = RESULT.captures(t) {
            let description = last_description.take().unwrap_or_default();
            status.steps.push(InstallStep {
                description,
                success: &c[1] == "SUCCESS",
            });
        } else if !t.is_empty()
            && !t.starts_with('<')
            && !t.starts_with("Warning:")
            && (t.ends_with('.') || t.ends_with("\"."))
        {
            let t = t
                .strip_prefix("Module ")
                .and_then(|r| r.split_once(':').map(|(_, d)| d.trim()))
                .unwrap_or(t);
            last_description = Some(t.to_string());
        }
        if t.contains("Finishing the upgrade") || t.contains("Install has been successful") {
            status.finished = true;
        }
        let impact_row = t.starts_with(char::is_numeric) && t.contains(" disruptive ");
        if impact_row || t.contains("reloaded for disruptive upgrade") {
            status.disruptive = true;
        }
    }
    if status.steps.is_empty() && !status.finished {
        return Err(missing("install all", "step results (`-- SUCCESS`)", text));
    }
    Ok(status)
}

/// The first line of a command's output that is a Cisco CLI error (`% Invalid input ...`).
pub(crate) fn cli_error(output: &str) -> Option<&str> {
    output.lines().map(str::trim).find(|l| {
        l.starts_with("% Invalid")
            || l.starts_with("% Incomplete")
            || l.starts_with("% Ambiguous")
            || l.starts_with("% Unknown command")
            || l.starts_with("% Bad secret")
            || l.starts_with("% Access denied")
            || l.starts_with("Command authorization failed")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/cisco/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Every capture whose name (lower case, `_` removed) contains one of `kinds` is in `tested`.
    fn assert_covers(tested: &[&str], kinds: &[&str]) {
        let dir = format!("{}/tests/fixtures/cisco", env!("CARGO_MANIFEST_DIR"));
        let mut untested: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                let key = n.to_ascii_lowercase().replace('_', "");
                kinds.iter().any(|k| key.contains(&k.replace('_', "")))
            })
            .filter(|n| !tested.contains(&n.as_str()))
            .collect();
        untested.sort();
        assert!(untested.is_empty(), "captures no test reads: {untested:?}");
    }

    struct V {
        file: &'static str,
        version: &'static str,
        image: &'static str,
        model: &'static str,
        serial: &'static str,
        hostname: &'static str,
        uptime: &'static str,
        confreg: Option<&'static str>,
    }

    #[rustfmt::skip]
    const VERSIONS: &[V] = &[
        V { file: "ios_ShowVersion_device_output.txt", version: "15.0(1)M7", image: "flash0:c3900-universalk9-mz.SPA.150-1.M7.bin", model: "CISCO3945-CHASSIS", serial: "FGL161010K8", hostname: "best-c3945-IOS3", uptime: "1 hour, 20 minutes", confreg: Some("0x2102") },
        V { file: "ios_ShowVersion_golden_output_ios.txt", version: "12.2(55)SE8", image: "flash:c3750e-universalk9-mz", model: "WS-C3750X-24P", serial: "FDO2028F1WK", hostname: "R5", uptime: "9 weeks, 4 days, 2 hours, 3 minutes", confreg: Some("0xF") },
        V { file: "ios_ShowVersion_golden_output_ios_1.txt", version: "15.2(2)E8", image: "flash:c3750e-universalk9-mz.152-2.E8.bin", model: "WS-C3750X-24S", serial: "FDO1633Q14S", hostname: "sample_switch", uptime: "8 weeks, 3 days, 10 hours, 27 minutes", confreg: Some("0xF") },
        V { file: "ios_ShowVersion_golden_output_ios_c1900.txt", version: "15.1(4)M8", image: "flash0:c1900-universalk9-mz.SPA.151-4.M8.bin", model: "CISCO1941/K9", serial: "YYY6666Y6R6", hostname: "C1900", uptime: "2 weeks, 2 days, 18 hours, 23 minutes", confreg: Some("0x2102") },
        V { file: "napalm_show_version_normal.txt", version: "15.0(2)SE4", image: "flash:/c2960-lanbasek9-mz.150-2.SE4.bin", model: "WS-C2960G-8TC-L", serial: "FOC1308V5NB", hostname: "NS2903-ASW-01", uptime: "27 weeks, 4 days, 16 minutes", confreg: Some("0xF") },
        V { file: "napalm_show_version_empty_show_hosts.txt", version: "15.0(2)SE4", image: "flash:/c2960-lanbasek9-mz.150-2.SE4.bin", model: "WS-C2960G-8TC-L", serial: "FOC1308V5NB", hostname: "NS2903-ASW-01", uptime: "27 weeks, 4 days, 16 minutes", confreg: Some("0xF") },
        V { file: "napalm_show_version_old-2950.txt", version: "12.1(22)EA13", image: "flash:/c2950-i6k2l2q4-mz.121-22.EA13.bin", model: "WS-C2950T-48-SI", serial: "FHK0922W0JC", hostname: "c2950", uptime: "33 weeks, 4 days, 7 hours, 49 minutes", confreg: Some("0xF") },
        V { file: "iosxe_ShowVersion_golden_output_3.txt", version: "03.06.07E", image: "flash:packages.conf", model: "WS-C3650-48PD", serial: "FDO0000E1C8", hostname: "testhost", uptime: "1 year, 51 weeks, 2 days, 41 minutes", confreg: Some("0x102") },
        V { file: "iosxe_ShowVersion_golden_output_4.txt", version: "15.2(2)E7", image: "flash:c2960x-universalk9-mz.152-2.E7/c2960x-universalk9-mz.152-2.E7.bin", model: "WS-C2960X-48FPD-L", serial: "FOC1913S46M", hostname: "testname", uptime: "25 weeks, 5 days, 15 hours, 45 minutes", confreg: Some("0xF") },
        V { file: "iosxe_ShowVersion_golden_output_6.txt", version: "17.05.01a", image: "bootflash:packages.conf", model: "ASR1001-X", serial: "FXS2412Q36T", hostname: "COL-B-ASR1001-X-1", uptime: "4 weeks, 14 hours, 49 minutes", confreg: Some("0x2102") },
        V { file: "iosxe_ShowVersion_golden_output_9.txt", version: "03.06.06.E", image: "bootflash:cat4500es8-universalk9.SPA.03.06.06.E.152-2.E6.bin", model: "WS-C4507R+E", serial: "FXS1736Q1AS", hostname: "sample_4507r_e", uptime: "2 years, 39 weeks, 1 day, 22 hours, 42 minutes", confreg: Some("0x2102") },
        V { file: "iosxe_ShowVersion_golden_output_c3850.txt", version: "16.4.20170410:165034", image: "tftp://10.1.6.241//auto/tftp-ssr/Edison/cat3k_caa-universalk9.BLD_V164_THROTTLE_LATEST_20170410_174845.SSA.bin", model: "WS-C3850-24P", serial: "FCW1932D0LB", hostname: "R1", uptime: "1 hour, 24 minutes", confreg: Some("0x102") },
        V { file: "iosxe_ShowVersion_golden_output_c8000v.txt", version: "BLD_POLARIS_DEV_LATEST_20240326_003112", image: "bootflash:packages.conf", model: "C8000V", serial: "9E42BIFKVLR", hostname: "ott-mdt-vm7", uptime: "0 minutes", confreg: Some("0x2102") },
        V { file: "iosxe_ShowVersion_golden_output_c9300.txt", version: "BLD_POLARIS_DEV_LATEST_20210302_012043", image: "flash:cat9k_iosxe.BLD_POLARIS_DEV_LATEST_20210302_012043.SSA.bin", model: "C9300-24P", serial: "FCW2223G0B9", hostname: "ssr-cat9300", uptime: "19 minutes", confreg: Some("0x102") },
        V { file: "iosxe_ShowVersion_golden_output_c9800.txt", version: "17.07.01prd16", image: "bootflash:C9800-CL-universalk9.17.07.01prd16.SPA.bin", model: "C9800-CL", serial: "9SV9FR9MWP9", hostname: "vidya-ewlc-5", uptime: "4 weeks, 6 days, 21 hours, 48 minutes", confreg: Some("0x102") },
        V { file: "iosxe_ShowVersion_golden_output_isr4k.txt", version: "16.06.05", image: "bootflash:isr4400-universalk10.115.6.5.SPA.bin", model: "ISR4451-X/K9", serial: "FGL273610NK", hostname: "isr4k", uptime: "2 days, 3 hours, 18 minutes", confreg: Some("0x2102") },
        V { file: "iosxe_ShowVersion_golden_output_standby.txt", version: "17.18.01prd21", image: "bootflash:packages.conf", model: "C9606R", serial: "FXS2319Q0C3", hostname: "switch_1", uptime: "2 days, 22 minutes", confreg: None },
        V { file: "nxos_ShowVersion_golden_output.txt", version: "6.0(2)U6(10)", image: "bootflash:///n3000-uk10.225.0.2.U6.10.bin", model: "Nexus 3048", serial: "FOC19243WQN", hostname: "n3k", uptime: "796 day(s), 15 hour(s), 58 minute(s), 29 second(s)", confreg: None },
        V { file: "nxos_ShowVersion_golden_output_1.txt", version: "9.3(6uu)I9(1uu)", image: "bootflash:///nxos.9.3.6.bin.upg", model: "N9K-C9396PX", serial: "SAL18432P5N", hostname: "N9K-ACC-2", uptime: "0 day(s), 0 hour(s), 1 minute(s), 33 second(s)", confreg: None },
    ];

    #[test]
    fn show_version_reads_the_restart_time() {
        for (file, want) in [
            (
                "ios_ShowVersion_golden_output_ios.txt",
                Some("12:22:21 PDT Mon Sep 10 2018"),
            ),
            (
                "iosxe_ShowVersion_golden_output_c3850.txt",
                Some("17:23:53 UTC Mon Apr 10 2017"),
            ),
            (
                "nxos_ShowVersion_golden_output.txt",
                Some("Thu Jan 18 21:17:51 2018"),
            ),
            (
                "nxos_ShowVersion_golden_output_1.txt",
                Some("Thu Mar 18 16:34:13 2021"),
            ),
            // Catalyst 9000 prints none: the uptime and the version have to do.
            ("iosxe_ShowVersion_golden_output_c9300.txt", None),
        ] {
            let v = show_version(&fixture(file)).unwrap();
            assert_eq!(v.restarted_at.as_deref(), want, "{file}");
        }
    }

    #[test]
    fn tftp_blocksize_line() {
        assert_eq!(tftp_blocksize("ip tftp blocksize 8192\r\n"), Some(8192));
        assert_eq!(
            tftp_blocksize(
                "show running-config | include ip tftp blocksize\nip tftp blocksize 1024\n"
            ),
            Some(1024)
        );
        assert_eq!(tftp_blocksize("ip tftp source-interface Vlan10\n"), None);
        assert_eq!(tftp_blocksize(""), None);
    }

    #[test]
    fn show_version_reads_every_sample() {
        for v in VERSIONS {
            let got = show_version(&fixture(v.file)).unwrap_or_else(|e| panic!("{}: {e}", v.file));
            assert_eq!(got.version, v.version, "{}", v.file);
            assert_eq!(got.image.as_deref(), Some(v.image), "{}", v.file);
            assert_eq!(got.model.as_deref(), Some(v.model), "{}", v.file);
            assert_eq!(got.serial.as_deref(), Some(v.serial), "{}", v.file);
            assert_eq!(got.hostname.as_deref(), Some(v.hostname), "{}", v.file);
            assert_eq!(got.uptime.as_deref(), Some(v.uptime), "{}", v.file);
            assert_eq!(got.config_register.as_deref(), v.confreg, "{}", v.file);
        }
    }

    /// Every `show version` capture and what it must give: `show_version_expected.tsv`.
    #[test]
    fn show_version_table() {
        let dir = format!("{}/tests/fixtures/cisco", env!("CARGO_MANIFEST_DIR"));
        let table = fixture("show_version_expected.tsv");
        let none = |v: &str| (v != "-").then(|| v.to_string());
        let mut rows = std::collections::BTreeSet::new();
        for line in table.lines().filter(|l| !l.starts_with('#')).skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 6, "row {line:?}");
            let file = cols[0];
            assert!(rows.insert(file.to_string()), "{file} has two rows");
            let got = show_version(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let want = (
                cols[1].to_string(),
                none(cols[2]),
                none(cols[3]),
                none(cols[4]),
                none(cols[5]),
            );
            let got = (got.version, got.image, got.kickstart, got.model, got.serial);
            assert_eq!(
                got, want,
                "{file}: (version, image, kickstart, model, serial)"
            );
        }
        let mut captures: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                let n = n.to_ascii_lowercase().replace('_', "");
                n.contains("showversion") && !n.ends_with(".tsv")
            })
            .collect();
        captures.sort();
        let missing: Vec<&String> = captures.iter().filter(|c| !rows.contains(*c)).collect();
        assert!(
            missing.is_empty(),
            "show version captures without a row in show_version_expected.tsv: {missing:?}"
        );
        assert!(captures.len() >= 40, "{} captures", captures.len());
    }

    #[test]
    fn show_version_fields_that_are_not_printed_are_none() {
        let v = show_version(
            "Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M), Version 15.2(7)E8, RELEASE SOFTWARE (fc1)\n",
        )
        .unwrap();
        assert_eq!(v.version, "15.2(7)E8");
        assert_eq!(
            (
                v.image,
                v.kickstart,
                v.model,
                v.serial,
                v.hostname,
                v.uptime
            ),
            (None, None, None, None, None, None)
        );
        // The serial stops at the comma; the hardware line names the model.
        let v = show_version(
            "Cisco IOS Software, C3750E Software (C3750E-UNIVERSALK9-M), Version 15.0(2)SE11, RELEASE SOFTWARE (fc3)\ncisco WS-C3750X-48P (PowerPC405) processor (revision W0) with 262144K bytes of memory.\nProcessor board ID FHK1234ABCD, with hardware revision 0000\n",
        )
        .unwrap();
        assert_eq!(v.serial.as_deref(), Some("FHK1234ABCD"));
        assert_eq!(v.model.as_deref(), Some("WS-C3750X-48P"));
    }

    #[test]
    fn hardware_lines_of_each_family() {
        for (line, want) in [
            (
                "Cisco CISCO2911/K9 (revision 1.0) with 483328K/40960K bytes of memory.",
                Some("CISCO2911/K9"),
            ),
            (
                "cisco WS-C3750X-48P (PowerPC405) processor (revision W0) with 262144K bytes of memory.",
                Some("WS-C3750X-48P"),
            ),
            (
                "cisco ISR4451-X/K9 (2RU) processor with 1795979K/6147K bytes of memory.",
                Some("ISR4451-X/K9"),
            ),
            (
                "cisco C9300-48P (X86) processor with 1419044K/6147K bytes of memory.",
                Some("C9300-48P"),
            ),
            (
                "cisco IE-4000-8GT4G4E (APM86XXX) processor (revision V02) with 786432K bytes of memory.",
                Some("IE-4000-8GT4G4E"),
            ),
            (
                "Cisco IOSv (revision 1.0) with  with 460033K/62464K bytes of memory.",
                Some("IOSv"),
            ),
            (
                "cisco ASR1006 (RP2) processor (revision RP2) with 4138965K/6147K bytes of memory.",
                Some("ASR1006"),
            ),
            (
                "cisco WS-C4507R+E (MPC8572) processor (revision 10) with 2097152K/20480K bytes of memory.",
                Some("WS-C4507R+E"),
            ),
            (
                "cisco WS-C6509-E (R7000) processor (revision 1.4) with 983008K/65536K bytes of memory.",
                Some("WS-C6509-E"),
            ),
            (
                "Allen-Bradley 1783-CMS20DP (ARM) processor (revision V02) with 638793K/6147K bytes of memory.",
                Some("1783-CMS20DP"),
            ),
            ("  cisco Nexus9000 C9372PX chassis ", Some("N9K-C9372PX")),
            (
                "  cisco Nexus9000 C93180YC-EX Chassis\r",
                Some("N9K-C93180YC-EX"),
            ),
            (
                "  cisco Nexus7000 C7010 (10 Slot) Chassis (\"Supervisor module-1X\")",
                Some("N7K-C7010"),
            ),
            (
                "  cisco Nexus7700 C7706 (6 Slot) Chassis (\"Supervisor Module-2\")",
                Some("N77-C7706"),
            ),
            (
                "  cisco Nexus 3048 Chassis (\"48x1GE + 4x10G Supervisor\")",
                Some("Nexus 3048"),
            ),
            ("  cisco N9K-C9396PX (\"supervisor\")", Some("N9K-C9396PX")),
            (
                "  Intel(R) Xeon(R) CPU  @ 1.80GHz with 24567076 kB of memory.",
                None,
            ),
            ("2048K bytes of non-volatile configuration memory.", None),
        ] {
            assert_eq!(model(line).as_deref(), want, "{line:?}");
        }
    }

    #[test]
    fn nxos_kickstart_and_system_images() {
        let v = show_version(&fixture("ntc_cisco_nxos_show_version2.raw")).unwrap();
        assert_eq!(
            v.kickstart.as_deref(),
            Some("bootflash:///n5000-uk9-kickstart.7.1.4.N1.1.bin")
        );
        assert_eq!(
            v.image.as_deref(),
            Some("bootflash:///n5000-uk9.7.1.4.N1.1.bin")
        );
        let one = show_version(&fixture("ntc_cisco_nxos_show_version4.raw")).unwrap();
        assert_eq!(one.kickstart, None);
    }

    #[test]
    fn show_version_keeps_the_ios_line_version_on_xe() {
        let v = show_version(&fixture("iosxe_ShowVersion_golden_output_6.txt")).unwrap();
        assert_eq!(v.ios_version.as_deref(), Some("17.5.1a"));
        assert_eq!(
            v.uptime_seconds(),
            Some(4 * 7 * 86_400 + 14 * 3_600 + 49 * 60)
        );
        let n = show_version(&fixture("nxos_ShowVersion_golden_output_1.txt")).unwrap();
        assert_eq!(n.uptime_seconds(), Some(93));
        let facts = v.into_facts();
        assert_eq!(facts.version.as_deref(), Some("17.05.01a"));
        assert_eq!(facts.serial.as_deref(), Some("FXS2412Q36T"));
    }

    #[test]
    fn show_version_refuses_other_text() {
        let err = show_version("% Invalid input detected at '^' marker.\n").unwrap_err();
        assert!(err.to_string().contains("software version line"), "{err}");
    }

    /// file, entries, a file name, its size, bytes total, bytes free
    type DirCase = (
        &'static str,
        usize,
        &'static str,
        u64,
        Option<u64>,
        Option<u64>,
    );

    #[test]
    fn dir_reads_every_sample() {
        #[rustfmt::skip]
        let cases: &[DirCase] = &[
            ("ios_Dir_golden_output_iosv.txt", 5, "vios-adventerprisek9-m", 147988420, Some(2142715904), Some(1989595136)),
            ("iosxe_Dir_golden_output_asr1k.txt", 22, "testimage", 794609595, Some(1940303872), Some(1036210176)),
            ("iosxe_Dir_golden_output_asr1k_2.txt", 22, "crashinfo_RP_00_00_20170203-155749-PDT", 177449, Some(1940303872), Some(1036210176)),
            ("iosxe_Dir_golden_output_c3850.txt", 18, "ISSUCleanGolden", 630812001, Some(1598627840), Some(880939008)),
            ("iosxe_Dir_golden_output_c9200.txt", 1, "cat9k_lite_iosxe.17.09.01.SPA.bin", 490586943, None, None),
            ("ntc_cisco_ios_dir.raw", 12, "packages.conf", 5681, Some(7835619328), Some(6612774912)),
            ("nxos_Dir_golden_output.txt", 11, "n7000-s2-debug-sh.10.81.0.125.gbin", 4073830, Some(1782931456), Some(1674481664)),
            ("ntc_cisco_nxos_dir_01.raw", 12, "aci-n9000-dk9.13.1.2p.bin", 1410981963, None, None),
            ("ntc_cisco_nxos_dir_02.raw", 17, "n7700-s2-dk9.8.4.3.bin", 538255348, Some(3697471488), Some(2166267904)),
        ];
        let mut files: Vec<&str> = cases.iter().map(|c| c.0).collect();
        files.push("ntc_cisco_ios_dir_no_files.raw");
        assert_covers(&files, &["_dir_", "_dir."]);
        for &(file, count, name, size, total, free) in cases {
            let d = dir(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(d.entries.len(), count, "{file}");
            assert_eq!(d.file(name).map(|e| e.size), Some(size), "{file}");
            assert_eq!(d.bytes_total, total, "{file}");
            assert_eq!(d.bytes_free, free, "{file}");
        }
        let d = dir(&fixture("iosxe_Dir_golden_output_c3850.txt")).unwrap();
        assert!(d.entries.iter().any(|e| e.name == "core" && e.is_dir));
        assert!(d.file("core").is_none(), "a directory is not a file");
        let n = dir(&fixture("nxos_Dir_golden_output.txt")).unwrap();
        assert!(n.entries.iter().any(|e| e.name == "lost+found" && e.is_dir));
    }

    #[test]
    fn dir_of_an_empty_file_system() {
        let d = dir(&fixture("ntc_cisco_ios_dir_no_files.raw")).unwrap();
        assert!(d.entries.is_empty());
        assert_eq!(d.bytes_free, Some(16626160));
        assert_eq!(d.directory.as_deref(), Some("bootflash:/"));
    }

    #[test]
    fn dir_errors_are_typed() {
        assert_eq!(
            dir("%Error opening flash:/te-apps (No such file or directory)\n"),
            Err(DirError::NotFound("flash:/te-apps".into()))
        );
        assert!(matches!(
            dir("%Error opening flash:/x (Permission denied)"),
            Err(DirError::Device(_))
        ));
        assert!(matches!(
            dir("something else entirely"),
            Err(DirError::Parse(_))
        ));
    }

    #[test]
    fn show_boot_reads_every_sample() {
        #[rustfmt::skip]
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            ("ios_ShowBoot_golden_output_iosv.txt", &["flash:c3560cx-universalk9-mz.152-7.E1.bin"], None),
            ("ios_ShowBootvar_golden_output_iosv.txt", &["disk0:s72033-adventerprisek9-mz.122-33.SRE0a-ssr-nxos-76k-1"], Some("0x2012")),
            ("iosxe_ShowBoot_golden_output_2900.txt", &["flash:/c2960x-universalk9-mz.152-4.E8.bin"], None),
            ("iosxe_ShowBoot_golden_output_asr1k.txt", &["bootflash:/asr1000rpx.bin"], Some("0x2002")),
            ("iosxe_ShowBoot_golden_output_c3850.txt", &["flash:ISSUCleanGolden"], None),
            ("iosxe_ShowBoot_golden_output_cat9300.txt", &["flash:packages.conf"], None),
            ("iosxe_ShowBoot_golden_output_cat9k_1.txt", &["tftp://192.168.121.25//auto/tftptest-blr/latest//cat9k_iosxe.BLD_V173_THROTTLE_LATEST_20200428_021754.SSA.bin", "bootflash:/cat9k_iosxe.BLD_POLARIS_DEV_LATEST_20200429_051305.SSA_starfleet-1.bin"], Some("0x102")),
            ("iosxe_ShowBootvar_golden_output1.txt", &["harddisk:/ISSUCleanGolden", "bootflash:12351822-iedge-asr-uut"], Some("0x2")),
            ("iosxe_ShowBootvar_golden_output_asr1k.txt", &["tftp:/auto/tftp-best/genie_images/genie_clean/asr1000-genie-image 255.255.255.255"], Some("0x2142")),
            ("ntc_cisco_ios_show_boot.raw", &["flash:c3750e-ipbasek9-mz.150-2.SE11.bin"], None),
            ("ntc_cisco_ios_show_boot2.raw", &["flash:c2960l-universalk9-mz.152-7.E2/c2960l-universalk9-mz.152-7.E2.bin"], None),
            ("ntc_cisco_ios_show_boot_gibraltar.raw", &["flash:packages.conf"], None),
            ("ntc_cisco_ios_show_boot_optimization.raw", &["flash:/c3560cx-universalk9-mz.152-7.E4/c3560cx-universalk9-mz.152-7.E4.bin"], None),
            ("nxos_ShowBoot_golden_output.txt", &["slot0:/n7000-s2-dk10.34.3.0.CV.0.658.gbin"], None),
            ("nxos_show_platform_ShowBoot_n7k_dual_sup.txt", &["slot0:/n7000-s2-dk10.34.3.0.CV.0.658.gbin"], None),
            ("nxos_show_platform_ShowBoot_n6k_without_sup.txt", &["bootflash:/n6000-uk10.1.3.2.N1.0.420.bin"], None),
            ("blog_heathdbrown_n9kv_boot_nxos_show_boot.txt", &["bootflash:/nxos.7.0.3.I6.1.bin"], None),
            ("iosxe_ShowBoot_golden_output1_ie4000.txt", &[], None),
            ("iosxe_ShowBoot_golden_output2_ie4000.txt", &["flash:/ie4000-universalk9-mz.152-4.EA5"], None),
            ("iosxe_ShowBoot_golden_output_cat9400.txt", &["bootflash:packages.conf"], None),
            ("iosxe_ShowBoot_golden_output_cat9500.txt", &["bootflash:packages.conf"], None),
            ("iosxe_ShowBoot_golden_output_cat9k_2.txt", &["tftp://10.1.0.41/cat9k_iosxe.16.12.03a.SPA.bin"], Some("0x102")),
            ("iosxe_ShowBoot_golden_output_cat9k_3.txt", &["bootflash:cat9k_iosxe.BLD_V173_THROTTLE_LATEST_20200421_032634.SSA.bin"], Some("0x102")),
            ("iosxe_ShowBoot_golden_output_cat9k_4.txt", &["tftp://10.1.144.25//auto/tftptest-blr/latest//cat9k_iosxe.BLD_V173_THROTTLE_LATEST_20200427_012602.SSA.bin"], Some("0x102")),
        ];
        for &(file, entries, confreg) in cases {
            let b = show_boot(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(b.entries, entries, "{file}");
            assert_eq!(b.config_register.as_deref(), confreg, "{file}");
        }
        let files: Vec<&str> = cases.iter().map(|c| c.0).collect();
        assert_covers(&files, &["showboot", "show_boot"]);
        // Two supervisors: the standby's variable too; one supervisor: none.
        for (file, standby) in [
            (
                "iosxe_ShowBoot_golden_output_cat9400.txt",
                &["bootflash:packages.conf"][..],
            ),
            (
                "iosxe_ShowBoot_golden_output_cat9500.txt",
                &["bootflash:packages.conf"][..],
            ),
            ("iosxe_ShowBoot_golden_output_cat9k_3.txt", &[][..]),
        ] {
            assert_eq!(
                show_boot(&fixture(file)).unwrap().standby_entries,
                standby,
                "{file}"
            );
        }
        assert!(
            show_boot(&fixture("iosxe_ShowBoot_golden_output1_ie4000.txt"))
                .unwrap()
                .one_line_list
        );
        for (file, kickstart) in [
            (
                "nxos_show_platform_ShowBoot_n7k_dual_sup.txt",
                Some("slot0:/n7000-s2-kickstart.8.3.0.CV.0.658.gbin"),
            ),
            (
                "nxos_show_platform_ShowBoot_n6k_without_sup.txt",
                Some("bootflash:/n6000-uk9-kickstart.7.3.2.N1.0.420.bin"),
            ),
            ("blog_heathdbrown_n9kv_boot_nxos_show_boot.txt", None),
        ] {
            assert_eq!(
                show_boot(&fixture(file)).unwrap().kickstart.as_deref(),
                kickstart,
                "{file}"
            );
        }
        assert!(
            show_boot(&fixture("ntc_cisco_ios_show_boot.raw"))
                .unwrap()
                .one_line_list
        );
        assert!(
            show_boot(&fixture("iosxe_ShowBoot_golden_output_cat9300.txt"))
                .unwrap()
                .one_line_list
        );
        assert!(
            !show_boot(&fixture("iosxe_ShowBootvar_golden_output1.txt"))
                .unwrap()
                .one_line_list
        );
        let nx = show_boot(&fixture("nxos_ShowBoot_golden_output.txt")).unwrap();
        assert_eq!(
            nx.kickstart.as_deref(),
            Some("slot0:/n7000-s2-kickstart.8.3.0.CV.0.658.gbin")
        );
    }

    /// A field printed empty is `None` (or empty), never the first word of the next line.
    #[test]
    fn an_empty_field_does_not_take_the_next_line() {
        let b = show_boot("BOOT path-list      : \nConfig file         : flash:/config.text\n")
            .unwrap();
        assert!(b.entries.is_empty(), "{:?}", b.entries);
        let v = show_version(
            "Cisco IOS Software, C3750E Software (C3750E-UNIVERSALK9-M), Version 15.0(2)SE11, RELEASE SOFTWARE (fc3)\nSystem image file is \nProcessor board ID \nModel Number                    : \nSystem Serial Number            : \nConfiguration register is 0xF\n",
        )
        .unwrap();
        assert_eq!((v.image, v.serial, v.model), (None, None, None));
        let n = show_version("Software\n  NXOS: version \n  NXOS image file is: \n  system:    version 9.3(8)\n  Device name: \n  bootflash:   53298520 kB\n").unwrap();
        assert_eq!(n.version, "9.3(8)");
        assert_eq!((n.image, n.hostname), (None, None));
    }

    #[test]
    fn show_boot_with_two_entries_and_none() {
        let b = show_boot(
            "BOOT path-list      : flash:new.bin;flash:old.bin\nConfig file : flash:/config.text\n",
        )
        .unwrap();
        assert_eq!(b.entries, ["flash:new.bin", "flash:old.bin"]);
        let empty = show_boot("BOOT variable does not exist\nCONFIG_FILE variable =\n").unwrap();
        assert!(empty.entries.is_empty());
        assert!(show_boot("% Invalid input detected at '^' marker.").is_err());
    }

    #[test]
    fn verify_md5_matches_and_mismatches() {
        // Shapes from netmiko's process_md5 docstring and genielibs get_md5_hash_of_file.
        let out = ".MD5 of flash:file_name Done!\nverify /md5 (flash:file_name) = 410db2a7015eaa42b1fe71f1bf3d59a2\n";
        let r = verify_md5(out, "410DB2A7015EAA42B1FE71F1BF3D59A2").unwrap();
        assert_eq!(r.file, "flash:file_name");
        let out = "....................................Done!\nverify /md5 (bootflash:test1.bin) = 2c9bf2c64bee6fb22277fc89bd1c8ff0\n";
        assert_eq!(
            verify_md5(out, "00000000000000000000000000000000"),
            Err(Md5Error::Mismatch {
                file: "bootflash:test1.bin".into(),
                computed: "2c9bf2c64bee6fb22277fc89bd1c8ff0".into(),
                expected: "00000000000000000000000000000000".into()
            })
        );
        // The recorded Ansible run of `verify /md5 FILE HASH`.
        let out = "Done!\nVerified (flash:c2960x-universalk9-tar152-7E13tar) = 56604f86ee9b096b3deb622b52062f6b\n";
        assert!(verify_md5(out, "56604f86ee9b096b3deb622b52062f6b").is_ok());
        assert_eq!(
            verify_md5(
                "%Error opening flash:/x.bin (No such file or directory)",
                "56604f86ee9b096b3deb622b52062f6b"
            ),
            Err(Md5Error::NotFound("flash:/x.bin".into()))
        );
        assert!(matches!(
            verify_md5(
                "%Error verifying flash:x.bin\nComputed signature = 56604f86ee9b096b3deb622b52062f6b\nSubmitted signature = 00000000000000000000000000000000",
                "0"
            ),
            Err(Md5Error::Mismatch { .. })
        ));
        assert!(matches!(verify_md5("", "0"), Err(Md5Error::Parse(_))));
    }

    #[test]
    fn copy_scp_results_from_real_ios_xe_transcripts() {
        assert_eq!(
            copy_result(&fixture("genielibs_iosxe_copy_scp_url.txt")),
            Ok(CopyReport { bytes: Some(3698) })
        );
        assert_eq!(
            copy_result(&fixture("blog_cat9k_copy_scp_interactive.txt")),
            Ok(CopyReport {
                bytes: Some(372416000)
            })
        );
    }

    #[test]
    fn copy_results_from_real_transcripts() {
        let blog = fixture("blog_chrisjhart_transcripts.txt");
        let start = blog.find("BASE-CONFIG#copy").unwrap();
        let end = start + blog[start..].find("---").unwrap();
        assert_eq!(
            copy_result(&blog[start..end]),
            Ok(CopyReport { bytes: Some(3134) })
        );
        let start = blog.find("Router#copy tftp").unwrap();
        let end = start + blog[start..].find("Router#\n").unwrap();
        assert_eq!(
            copy_result(&blog[start..end]),
            Ok(CopyReport {
                bytes: Some(1230723713)
            })
        );
        let timed_out = "%Error opening tftp://255.255.255.255/network-confg (Timed out)\n";
        assert!(blog.contains(timed_out.trim()));
        assert!(matches!(copy_result(timed_out), Err(CopyError::Timeout(_))));
    }

    #[test]
    fn copy_success_wins_over_an_interleaved_autoinstall_error() {
        // genielibs filetransferutils test raw8.
        let out = "Loading /auto/x/meraki.bin from 172.19.1.250 (via GigabitEthernet0/0): !!!!\n%Error opening tftp://255.255.255.255/network-confg (Timed out)!!!!!!\n[OK - 1269880464 bytes]\n\n1269880464 bytes copied in 103.256 secs (12298370 bytes/sec)\n";
        assert_eq!(
            copy_result(out),
            Ok(CopyReport {
                bytes: Some(1269880464)
            })
        );
        // The FTP form with a block size.
        assert_eq!(
            copy_result("Accessing ftp://20.1.1.1//a.bin...!!!!\n[OK - 989519758/4096 bytes]\n"),
            Ok(CopyReport {
                bytes: Some(989519758)
            })
        );
    }

    #[test]
    fn copy_errors_are_typed() {
        // Texts from the Cisco CSM plugin comments quoted in CLI-REFERENCE.md.
        assert!(matches!(
            copy_result(
                "%Error opening ftp://*:*@172.27.148.198//tftpboot/jawei (No such file or directory)"
            ),
            Err(CopyError::SourceNotFound(_))
        ));
        assert!(matches!(
            copy_result(
                "%Error copying ftp://*:*@172.27.148.198//tftpboot/testme.bin (Not enough space on device)"
            ),
            Err(CopyError::FlashFull(_))
        ));
        assert!(matches!(
            copy_result(
                "%Error opening scp://*:*@172.27.148.198;Mgmt-intf//tftpboot/testme.bin (Invalid IP address or hostname)"
            ),
            Err(CopyError::Unreachable(_))
        ));
        assert!(matches!(
            copy_result("%Error opening bootflash:running-config (Permission denied)"),
            Err(CopyError::Refused(_))
        ));
        assert!(matches!(
            copy_result("%Error opening tftp://10.0.0.1/x (Socket error)"),
            Err(CopyError::Unreachable(_))
        ));
        assert!(matches!(
            copy_result("%Error something new (Odd)"),
            Err(CopyError::Other(_))
        ));
        assert!(matches!(
            copy_result("Accessing tftp://10.0.0.1/x..."),
            Err(CopyError::Parse(_))
        ));
    }

    #[test]
    fn nxos_copy_results() {
        let ok = "Trying to connect to tftp server......\nConnection to Server Established.\nTFTP get operation was successful\nCopy complete, now saving to disk (please wait)...\nCopy complete.\n";
        assert_eq!(copy_result(ok), Ok(CopyReport { bytes: None }));
        assert!(matches!(
            copy_result(
                "Trying to connect to tftp server......\nTFTP get operation failed:Timed out\n"
            ),
            Err(CopyError::Timeout(_))
        ));
        assert!(matches!(
            copy_result("FTP get operation failed:No space left on device\n"),
            Err(CopyError::FlashFull(_))
        ));
    }

    #[test]
    fn install_summary_samples() {
        let s = install_summary(&fixture("iosxe_ShowInstallSummary_golden_output.txt")).unwrap();
        assert_eq!(s.packages.len(), 2);
        assert_eq!(s.packages[0].kind, "SMU");
        assert_eq!(s.packages[0].state, PackageState::ActivatedUncommitted);
        assert_eq!(s.packages[0].name, "bootflash:utah.bm.smu.may15.bin");
        assert_eq!(s.committed_image(), Some("10.69.1.0.66982"));
        assert!(s.has_uncommitted());
        assert_eq!(
            s.auto_abort_timer.as_deref(),
            Some("active on install_activate, time before rollback - 01:49:42")
        );
        let s = install_summary(&fixture("iosxe_ShowInstallSummary_golden_output_2.txt")).unwrap();
        assert_eq!(s.packages[0].state, PackageState::Inactive);
        assert_eq!(s.committed_image(), Some("10.106.1.0.277"));
        assert!(!s.has_uncommitted());
        assert_eq!(s.auto_abort_timer.as_deref(), Some("inactive"));
        assert!(install_summary("% Invalid input").is_err());
        // Two route processors; a stack member of its own (CRLF line ends, trailing blanks).
        let s = install_summary(&fixture("iosxe_ShowInstallSummary_golden_output_3.txt")).unwrap();
        assert_eq!(s.committed_image(), Some("17.17.01.0.207190"));
        assert_eq!(s.packages[0].location.as_deref(), Some("R0 R1"));
        let s = install_summary(&fixture("iosxe_ShowInstallSummary_golden_output_4.txt")).unwrap();
        assert_eq!(s.committed_image(), Some("16.6.6.0"));
        assert_eq!(s.packages[0].location.as_deref(), Some("Switch 1"));
        assert_eq!(s.auto_abort_timer, None);
        // A stack whose third member has the image activated but not committed.
        let s = install_summary(&fixture("iosxe_ShowInstallSummary_golden_output_5.txt")).unwrap();
        let rows: Vec<(Option<&str>, PackageState)> = s
            .packages
            .iter()
            .map(|p| (p.location.as_deref(), p.state))
            .collect();
        assert_eq!(
            rows,
            [
                (Some("Switch 1 2"), PackageState::ActivatedCommitted),
                (Some("Switch 3"), PackageState::ActivatedUncommitted),
            ]
        );
        assert!(s.has_uncommitted());
        assert_covers(
            &[
                "iosxe_ShowInstallSummary_golden_output.txt",
                "iosxe_ShowInstallSummary_golden_output_2.txt",
                "iosxe_ShowInstallSummary_golden_output_3.txt",
                "iosxe_ShowInstallSummary_golden_output_4.txt",
                "iosxe_ShowInstallSummary_golden_output_5.txt",
            ],
            &["showinstallsummary"],
        );
    }

    #[test]
    fn install_results() {
        assert_eq!(
            install_result(&fixture("genielibs_c9500x_install_add_activate_commit.txt")),
            Ok(InstallOutcome::Success)
        );
        assert_eq!(
            install_result(&fixture("genielibs_install_remove_inactive.txt")),
            Ok(InstallOutcome::Success)
        );
        assert!(matches!(
            install_result(&fixture(
                "genielibs_install_add_failed_config_not_saved.txt"
            )),
            Err(InstallError::ConfigNotSaved(_))
        ));
        assert_eq!(
            install_result(" [1]  R0 Add succeed with reason: Same Image File-No Change  \r\n"),
            Ok(InstallOutcome::AlreadyInstalled)
        );
        assert!(matches!(
            install_result("FAILED: /bootflash requires 1048576 KB of free space"),
            Err(InstallError::FlashFull(_))
        ));
        assert!(matches!(
            install_result("install_add: START"),
            Err(InstallError::Parse(_))
        ));
    }

    #[test]
    fn nxos_install_all() {
        let s =
            install_all_status(&fixture("nxos_ShowInstallAllStatus_golden_output.txt")).unwrap();
        assert_eq!(s.steps.len(), 6);
        assert_eq!(
            s.steps[0].description,
            "Verifying image bootflash:/nxos.9.3.7.bin for boot variable \"nxos\"."
        );
        assert!(s.failed_step().is_none());
        assert!(s.disruptive);
        assert!(!s.finished);
        let s =
            install_all_status(&fixture("nxos_ShowInstallAllStatus_golden_output1.txt")).unwrap();
        assert_eq!(s.steps.len(), 5);
        assert_eq!(
            s.steps[4].description,
            "Refreshing compact flash and upgrading bios/loader/bootrom."
        );
        assert!(s.disruptive);
        let s = install_all_status(&fixture("salt_nxos_n7k_install_all_kickstart_captured.txt"))
            .unwrap();
        assert_eq!(s.steps.len(), 12);
        assert_eq!(
            s.steps[0].description,
            "Verifying image bootflash:/$KIMAGE for boot variable \"kickstart\"."
        );
        assert_eq!(
            s.steps[1].description,
            "Verifying image bootflash:/$IMAGE for boot variable \"system\"."
        );
        assert!(s.finished && s.disruptive && s.failed_step().is_none());
        let s = install_all_status(&fixture("salt_nxos_n93k_install_all_captured.txt")).unwrap();
        assert!(s.finished);
        assert!(s.failed_step().is_none());
        let s =
            install_all_status(&fixture("ansible_nxos_install_os_impact_docstring.txt")).unwrap();
        assert_eq!(s.steps.len(), 6);
        assert!(!s.finished);
        let failed =
            install_all_status("Verifying image type.\n[#######             ]  30% -- FAIL.\n")
                .unwrap();
        assert_eq!(
            failed.failed_step().map(|s| s.description.as_str()),
            Some("Verifying image type.")
        );
    }

    #[test]
    fn cli_errors_are_found() {
        assert_eq!(
            cli_error("foo\n% Invalid input detected at '^' marker.\n"),
            Some("% Invalid input detected at '^' marker.")
        );
        assert_eq!(cli_error("all good"), None);
    }
}
