//! Cisco software versions as `show version` prints them, and their order.
//!
//! Two spellings exist, and they do not compare with each other:
//! - **release** (IOS and NX-OS): `MAJOR.MINOR(RELEASE)TRAIN[N][rebuild]`, e.g. `15.2(7)E8`,
//!   `12.2(55)SE12`, `15.2(4)M6a`, `9.3(8)`, `10.2(5)M`, `7.0(3)I7(9)`, ACI `14.2(7f)`.
//! - **dotted** (IOS-XE): `03.06.07E` (the 3.x numbering, with its train letter), `16.12.04`,
//!   `17.09.04a`. Leading zeros do not count (`17.9.4` = `17.09.04`) and IOS-XE 3.x sorts
//!   before 16.x simply because 3 < 16.
//!
//! Order, as Cisco numbers its releases:
//! - the main numbers first (`MAJOR.MINOR(RELEASE)`, or all the dotted numbers): a later main
//!   release is later whatever the trains (`15.2(7)E` > `15.2(4)M`, `9.3(8)` < `10.2(5)M`);
//! - with the same main numbers, only the same train compares (`15.2(4)M` vs `15.2(4)E` is
//!   `None`: they are different software, neither is an upgrade of the other); inside one
//!   train the numbers after the letters compare numerically (`E8` < `E10`, `SY` < `SY1`,
//!   `I7(9)` < `I7(10)`);
//! - a lower-case letter at the end is a rebuild of the same release, so it is later
//!   (`15.2(4)M6a` > `15.2(4)M6`, `17.09.04a` > `17.9.4`; `b` > `a`).
//!
//! Engineering and development builds (`17.07.01prd16`, `16.4.20170410:165034`,
//! `BLD_POLARIS_DEV_LATEST_...`, `9.3(6uu)I9(1uu)`) do not parse: nothing can be said about
//! their order, so the callers treat them as unknown.

use std::cmp::Ordering;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// A parsed Cisco version. Equality and order follow [`compare`]; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct CiscoVersion {
    text: String,
    scheme: Scheme,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    /// `MAJOR.MINOR(RELEASE[letters])TRAIN...`
    Release {
        main: [u32; 3],
        /// Letters inside the parentheses: `12.2(18a)`, ACI `14.2(7f)`.
        main_rebuild: Rebuild,
        train: Train,
    },
    /// IOS-XE: `17.09.04a`, `03.06.07E`, trailing zero components removed.
    Dotted { numbers: Vec<u32>, train: Train },
}

/// What follows the main numbers: the train letters (upper case), its numbers, and a rebuild
/// letter: `SE12` = ("SE", [12], ""), `I7(9)` = ("I", [7, 9], ""), `M6a` = ("M", [6], "a").
#[derive(Debug, Clone, PartialEq, Eq)]
struct Train {
    letters: String,
    numbers: Vec<u32>,
    rebuild: Rebuild,
}

/// Rebuild letters: none < `a` < `b` < ... < `z` < `aa`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rebuild(String);

impl Ord for Rebuild {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.0.len(), &self.0).cmp(&(other.0.len(), &other.0))
    }
}

impl PartialOrd for Rebuild {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Train {
    /// `None` when the trains differ: neither is a later build of the other.
    fn partial_cmp(&self, other: &Train) -> Option<Ordering> {
        if self.letters != other.letters {
            return None;
        }
        Some(
            self.numbers
                .cmp(&other.numbers)
                .then_with(|| self.rebuild.cmp(&other.rebuild)),
        )
    }
}

fn re(pattern: &str) -> Regex {
    // The patterns are literals of this file, covered by the unit tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("bad built-in regex {pattern:?}: {e}"))
}

// `15.2(7)E8`, `7.0(3)I7(9)`, `14.2(7f)`; the tail after `)` is read by `train`.
static RELEASE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(\d{1,3})\.(\d{1,3})\((\d{1,4})([a-z]*)\)(.*)$"));
// `17.09.04a`, `03.06.07E`, `03.06.06.E`, `16.3.1`: three or four numbers, then the tail.
static DOTTED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\.(\d{1,3}))?\.?(.*)$"));
// Train letters, up to two numbers (`7(9)`, `6(10)`), and a rebuild letter.
static TRAIN: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([A-Z]{0,4})(?:(\d{1,4})(?:\((\d{1,4})\))?)?([a-z]{0,2})$"));

fn number(s: &str) -> Option<u32> {
    s.parse().ok()
}

fn train(tail: &str) -> Option<Train> {
    let c = TRAIN.captures(tail)?;
    let mut numbers = Vec::new();
    for i in [2, 3] {
        if let Some(m) = c.get(i) {
            numbers.push(number(m.as_str())?);
        }
    }
    Some(Train {
        letters: c[1].to_string(),
        numbers,
        rebuild: Rebuild(c[4].to_string()),
    })
}

impl CiscoVersion {
    /// Parse a version as `show version` prints it; `None` for anything else (engineering
    /// builds included).
    pub(crate) fn parse(text: &str) -> Option<CiscoVersion> {
        let t = text.trim();
        let scheme = if let Some(c) = RELEASE.captures(t) {
            Scheme::Release {
                main: [number(&c[1])?, number(&c[2])?, number(&c[3])?],
                main_rebuild: Rebuild(c[4].to_string()),
                train: train(&normalise_tail(&c[5], true))?,
            }
        } else if let Some(c) = DOTTED.captures(t) {
            let mut numbers = vec![number(&c[1])?, number(&c[2])?, number(&c[3])?];
            if let Some(m) = c.get(4) {
                numbers.push(number(m.as_str())?);
            }
            // IOS-XE 3.x carries a train letter (`03.06.07E`); 16 and later only rebuilds.
            let train = train(&normalise_tail(&c[5], numbers[0] < 16))?;
            while numbers.last() == Some(&0) {
                numbers.pop();
            }
            // Dotted versions carry no numbers after their train (`prd16`, `:165034`).
            if !train.numbers.is_empty() {
                return None;
            }
            Scheme::Dotted { numbers, train }
        } else {
            return None;
        };
        Some(CiscoVersion {
            text: t.to_string(),
            scheme,
        })
    }

    /// The text it was parsed from.
    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

/// Upper-case the train letters and lower-case a trailing rebuild letter, whatever case they
/// were written in (hand-written inventories say `15.2(7)e8`, `17.9.4A`): `e8` → `E8`,
/// `M6A` → `M6a`. A tail of letters only is a train when `letters_are_train` (`15.1(2)SY`,
/// IOS-XE 3.x `E`), else a rebuild (IOS-XE 16 and later have no trains: `17.09.04a`).
fn normalise_tail(tail: &str, letters_are_train: bool) -> String {
    match tail.find(|c: char| c.is_ascii_digit()) {
        Some(i) => {
            let end = tail
                .rfind(|c: char| c.is_ascii_digit() || c == ')')
                .map_or(tail.len(), |j| j + 1);
            format!(
                "{}{}{}",
                tail[..i].to_ascii_uppercase(),
                &tail[i..end],
                tail[end..].to_ascii_lowercase()
            )
        }
        None if letters_are_train => tail.to_ascii_uppercase(),
        None => tail.to_ascii_lowercase(),
    }
}

impl PartialEq for CiscoVersion {
    fn eq(&self, other: &Self) -> bool {
        self.partial_cmp(other) == Some(Ordering::Equal)
    }
}

impl PartialOrd for CiscoVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (&self.scheme, &other.scheme) {
            (
                Scheme::Release {
                    main: a,
                    main_rebuild: ar,
                    train: at,
                },
                Scheme::Release {
                    main: b,
                    main_rebuild: br,
                    train: bt,
                },
            ) => match a.cmp(b).then_with(|| ar.cmp(br)) {
                Ordering::Equal => at.partial_cmp(bt),
                unequal => Some(unequal),
            },
            (
                Scheme::Dotted {
                    numbers: a,
                    train: at,
                },
                Scheme::Dotted {
                    numbers: b,
                    train: bt,
                },
            ) => match a.cmp(b) {
                Ordering::Equal => at.partial_cmp(bt),
                unequal => Some(unequal),
            },
            // An IOS release and an IOS-XE dotted version name different software lines.
            _ => None,
        }
    }
}

impl fmt::Display for CiscoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Compare two versions as printed by `show version`; `None` when either cannot be parsed or
/// they cannot be ordered (different trains of the same release, IOS against IOS-XE).
pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    CiscoVersion::parse(a)?.partial_cmp(&CiscoVersion::parse(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn cisco_orders() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, Option<Ordering>)] = &[
            // IOS: the number after the train letters is a number, not text.
            ("15.2(7)E8", "15.2(7)E10", Some(Less)),
            ("15.2(7)E10", "15.2(7)E8", Some(Greater)),
            ("15.2(7)E8", "15.2(7)E8", Some(Equal)),
            ("15.2(7)e8", "15.2(7)E8", Some(Equal)),
            ("12.2(55)SE12", "15.0(2)SE", Some(Less)),
            ("12.2(55)SE8", "12.2(55)SE12", Some(Less)),
            ("15.0(2)SE11", "15.2(2)E", Some(Less)),
            ("15.1(2)SY", "15.1(2)SY1", Some(Less)),
            ("15.2(4)M", "15.2(4)M1", Some(Less)),
            ("15.2(4)M6a", "15.2(4)M6", Some(Greater)),
            ("15.2(4)M6b", "15.2(4)M6a", Some(Greater)),
            ("15.2(4)M6A", "15.2(4)M6a", Some(Equal)),
            ("15.2(4)M7", "15.2(4)M6a", Some(Greater)),
            ("12.4(24)T", "12.4(24)T4c", Some(Less)),
            ("12.2(33)SRE0a", "12.2(33)SRE1", Some(Less)),
            ("12.1(22)EA13", "12.1(22)EA14", Some(Less)),
            ("12.2(18a)", "12.2(18)", Some(Greater)),
            // Different trains: the main numbers decide, else no order.
            ("15.2(7)E", "15.2(4)M", Some(Greater)),
            ("15.2(4)M10", "15.2(7)E1", Some(Less)),
            ("15.2(4)M", "15.2(4)E", None),
            ("12.4(24)", "12.4(24)T", None),
            // IOS-XE dotted: leading zeros do not count, a letter is a later rebuild.
            ("17.09.04a", "17.9.4", Some(Greater)),
            ("17.9.4", "17.09.04", Some(Equal)),
            ("17.9.4", "17.9.4.0", Some(Equal)),
            ("17.09.04a", "17.09.04b", Some(Less)),
            ("17.9.4A", "17.9.4a", Some(Equal)),
            ("16.12.04", "17.3.1", Some(Less)),
            ("16.9.8", "16.12.1", Some(Less)),
            ("17.05.01a", "17.5.1a", Some(Equal)),
            // IOS-XE 3.x is older than 16.x; its train letter must match to compare.
            ("03.06.07E", "16.3.1", Some(Less)),
            ("03.06.06.E", "03.06.07E", Some(Less)),
            ("03.06.07E", "03.06.07.E", Some(Equal)),
            ("3.7.4E", "03.06.08E", Some(Greater)),
            ("03.16.05.S", "03.16.05.E", None),
            // NX-OS.
            ("9.3(8)", "10.2(5)M", Some(Less)),
            ("10.2(5)M", "10.2(6)M", Some(Less)),
            ("9.3(8)", "9.3(10)", Some(Less)),
            ("7.0(3)I7(9)", "9.3(10)", Some(Less)),
            ("7.0(3)I7(9)", "7.0(3)I7(10)", Some(Less)),
            ("7.0(3)I7(9)", "7.0(3)I7", Some(Greater)),
            ("6.0(2)U6(10)", "6.0(2)U6(9)", Some(Greater)),
            ("6.2(16)", "8.4(3)", Some(Less)),
            // ACI: the letter inside the parentheses is the rebuild.
            ("14.2(7f)", "14.2(7e)", Some(Greater)),
            ("13.1(2p)", "14.2(7f)", Some(Less)),
            // IOS against IOS-XE: different software lines.
            ("15.2(2)E7", "03.06.07E", None),
            // Engineering and development builds, and what is not a version at all.
            ("17.07.01prd16", "17.07.01", None),
            ("16.4.20170410:165034", "16.4.1", None),
            ("BLD_POLARIS_DEV_LATEST_20210302_012043", "17.5.1", None),
            ("9.3(6uu)I9(1uu)", "9.3(6)", None),
            ("", "15.2(7)E8", None),
            ("15.2", "15.2(7)E8", None),
            ("15.2(7)E8, RELEASE SOFTWARE", "15.2(7)E8", None),
        ];
        for &(a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(
                compare(b, a),
                want.map(Ordering::reverse),
                "{b} vs {a} (reversed)"
            );
        }
    }

    #[test]
    fn versions_of_the_fixtures_and_images_parse() {
        for v in [
            "15.0(1)M7",
            "12.2(55)SE8",
            "15.2(2)E8",
            "15.1(4)M8",
            "15.0(2)SE4",
            "12.1(22)EA13",
            "03.06.07E",
            "15.2(2)E7",
            "17.05.01a",
            "03.06.06.E",
            "16.06.05",
            "6.0(2)U6(10)",
            "9.3(8)",
            "15.2(4)E10",
            "15.2(7)E8",
            "17.9.4a",
        ] {
            let parsed = CiscoVersion::parse(v).unwrap_or_else(|| panic!("{v}"));
            assert_eq!(parsed.as_str(), v);
            assert_eq!(parsed, parsed.clone());
        }
    }

    #[test]
    fn image_file_names_agree_with_show_version() {
        // The version a file name carries (images::guess_version) compares with the one the
        // device then prints.
        for (file, printed) in [
            ("c2960x-universalk9-mz.152-7.E8.bin", "15.2(7)E8"),
            ("cat9k_iosxe.17.09.04a.SPA.bin", "17.09.04a"),
            ("c3560-ipbase-mz.122-55.SE12.bin", "12.2(55)SE12"),
        ] {
            let guessed = crate::images::guess_version(file).unwrap_or_default();
            assert_eq!(compare(&guessed, printed), Some(Equal), "{file}: {guessed}");
        }
    }
}
