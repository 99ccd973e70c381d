//! Line diff of two configurations, pure: the volatile lines a device rewrites by itself
//! (`! Last configuration change at …`, `Current configuration : N bytes`, …) are left out
//! first, then Myers' O(ND) algorithm finds the shortest edit script. Bounded: beyond
//! [`MAX_EDITS`] differences the diff gives up and says so, and at most [`MAX_LINES`] lines
//! are given.

/// Edits searched for before the diff gives up (time and memory grow with their square).
pub(crate) const MAX_EDITS: usize = 1000;
/// Lines of diff output kept (context lines included).
pub(crate) const MAX_LINES: usize = 2000;
/// Unchanged lines shown around each change.
const CONTEXT: usize = 2;

/// Whether a configuration line changes by itself, without anyone changing the configuration:
/// left out of the comparison (running against startup, before against after).
pub(crate) fn is_volatile(line: &str) -> bool {
    let l = line.trim();
    l.is_empty()
        || l.starts_with("! Last configuration change at")
        || l.starts_with("! NVRAM config last updated at")
        || l.starts_with("! No configuration change since last restart")
        || l.starts_with("!Time:")
        || l.starts_with("!Startup config saved at:")
        || l.starts_with("!Running configuration last done at")
        || l.starts_with("!Command: show")
        || l.starts_with("!No configuration change since last restart")
        || l.starts_with("Current configuration :")
        || l.starts_with("Building configuration")
        || l.starts_with("Using ") && l.contains(" out of ") && l.ends_with(" bytes")
        || l.starts_with("ntp clock-period")
        // The startup header of `show startup-config` on IOS-XE.
        || l.starts_with("Startup config is not present")
}

/// The lines compared: the configuration without its volatile lines, each without trailing
/// white space (and `\r`).
pub(crate) fn significant_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !is_volatile(l))
        .collect()
}

/// Whether two configurations say the same once the volatile lines are left out.
pub(crate) fn same_config(a: &str, b: &str) -> bool {
    significant_lines(a) == significant_lines(b)
}

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DiffLine {
    Same(String),
    Removed(String),
    Added(String),
    /// `@@ -a,b +c,d @@`, before each group of changes.
    Hunk(String),
}

/// A diff: its lines (changes with context) and counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ConfigDiff {
    pub lines: Vec<DiffLine>,
    pub added: usize,
    pub removed: usize,
    /// The configurations differ in more than [`MAX_EDITS`] lines: counts and lines are
    /// not given.
    pub too_different: bool,
    /// Lines were left out beyond [`MAX_LINES`].
    pub truncated: bool,
}

impl ConfigDiff {
    /// Unified-diff text: `@@` hunks, ` `, `-`, `+` lines.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            let (mark, text) = match l {
                DiffLine::Same(t) => (" ", t),
                DiffLine::Removed(t) => ("-", t),
                DiffLine::Added(t) => ("+", t),
                DiffLine::Hunk(t) => ("", t),
            };
            out.push_str(mark);
            out.push_str(text);
            out.push('\n');
        }
        if self.too_different {
            out.push_str(&format!(
                "(the configurations differ in more than {MAX_EDITS} lines: compare the two backups)\n"
            ));
        }
        if self.truncated {
            out.push_str(&format!("(diff cut after {MAX_LINES} lines)\n"));
        }
        out
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Ins,
}

/// The line diff from `before` to `after`, volatile lines left out.
pub(crate) fn diff(before: &str, after: &str) -> ConfigDiff {
    let a = significant_lines(before);
    let b = significant_lines(after);
    let Some(ops) = myers(&a, &b, MAX_EDITS) else {
        return ConfigDiff {
            too_different: true,
            ..ConfigDiff::default()
        };
    };
    let added = ops.iter().filter(|o| **o == Op::Ins).count();
    let removed = ops.iter().filter(|o| **o == Op::Del).count();
    let mut out = ConfigDiff {
        added,
        removed,
        ..ConfigDiff::default()
    };
    // Positions in a and b of each op, then the hunks: changes with CONTEXT lines around.
    let mut pos = Vec::with_capacity(ops.len());
    let (mut i, mut j) = (0usize, 0usize);
    for op in &ops {
        pos.push((i, j));
        match op {
            Op::Same => {
                i += 1;
                j += 1;
            }
            Op::Del => i += 1,
            Op::Ins => j += 1,
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k] != Op::Same).collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k + 1 < changed.len() && changed[k + 1] <= end + 2 * CONTEXT + 1 {
            k += 1;
            end = changed[k];
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let (ai, bj) = pos[start];
        let a_len = (start..end).filter(|&x| ops[x] != Op::Ins).count();
        let b_len = (start..end).filter(|&x| ops[x] != Op::Del).count();
        out.lines.push(DiffLine::Hunk(format!(
            "@@ -{},{a_len} +{},{b_len} @@",
            ai + 1,
            bj + 1
        )));
        for (x, op) in ops.iter().enumerate().take(end).skip(start) {
            let (ai, bj) = pos[x];
            out.lines.push(match op {
                Op::Same => DiffLine::Same(a[ai].to_string()),
                Op::Del => DiffLine::Removed(a[ai].to_string()),
                Op::Ins => DiffLine::Added(b[bj].to_string()),
            });
        }
        if out.lines.len() > MAX_LINES {
            out.lines.truncate(MAX_LINES);
            out.truncated = true;
            break;
        }
        k += 1;
    }
    out
}

/// Myers' shortest edit script from `a` to `b`, or `None` beyond `max` edits. Keeps one
/// frontier per edit count (`2d+1` entries), so memory is O(D²) on top of the inputs.
fn myers(a: &[&str], b: &[&str], max: usize) -> Option<Vec<Op>> {
    let n = a.len() as isize;
    let m = b.len() as isize;
    let limit = (max as isize).min(n + m);
    let mut trace: Vec<Vec<isize>> = Vec::new();
    // v[k + d]: the furthest x on diagonal k after d edits.
    let mut prev: Vec<isize> = vec![0; 1];
    let mut found = None;
    for d in 0..=limit {
        let mut v = vec![0isize; (2 * d + 1) as usize];
        let at = |vec: &Vec<isize>, dd: isize, k: isize| -> isize {
            // vec covers diagonals -dd..=dd.
            vec[(k + dd) as usize]
        };
        let mut k = -d;
        while k <= d {
            let mut x = if d == 0 {
                0
            } else if k == -d || (k != d && at(&prev, d - 1, k - 1) < at(&prev, d - 1, k + 1)) {
                at(&prev, d - 1, k + 1)
            } else {
                at(&prev, d - 1, k - 1) + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[(k + d) as usize] = x;
            if x >= n && y >= m {
                found = Some(d);
                break;
            }
            k += 2;
        }
        trace.push(v.clone());
        prev = v;
        if found.is_some() {
            break;
        }
    }
    let d_end = found?;
    // Walk back through the frontiers.
    let mut ops = Vec::new();
    let (mut x, mut y) = (n, m);
    for d in (1..=d_end).rev() {
        let prev = &trace[(d - 1) as usize];
        let k = x - y;
        let at = |k: isize| prev[(k + d - 1) as usize];
        let down = k == -d || (k != d && at(k - 1) < at(k + 1));
        let prev_k = if down { k + 1 } else { k - 1 };
        let prev_x = at(prev_k);
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            ops.push(Op::Same);
            x -= 1;
            y -= 1;
        }
        ops.push(if down { Op::Ins } else { Op::Del });
        x = prev_x;
        y = prev_y;
    }
    while x > 0 && y > 0 {
        ops.push(Op::Same);
        x -= 1;
        y -= 1;
    }
    ops.reverse();
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "Building configuration...\n\nCurrent configuration : 120 bytes\n!\n! Last configuration change at 10:00:01 UTC Mon Dec 1 2026\n!\nversion 15.2\nhostname sw1\n!\nlogging host 10.0.0.1\nsnmp-server community old RO\n!\ninterface Gi1/0/1\n description uplink\n!\nend\n";

    #[test]
    fn volatile_lines_do_not_count() {
        let after = BEFORE
            .replace("Current configuration : 120", "Current configuration : 121")
            .replace("10:00:01", "11:11:11");
        assert!(same_config(BEFORE, &after));
        let d = diff(BEFORE, &after);
        assert_eq!((d.added, d.removed), (0, 0));
        assert!(d.lines.is_empty());
        assert_eq!(d.to_text(), "");
    }

    #[test]
    fn changes_are_found_with_context() {
        let after = BEFORE
            .replace("snmp-server community old RO\n", "")
            .replace(" description uplink\n", " description uplink to core\n")
            + "banner motd ^hi^\n";
        assert!(!same_config(BEFORE, &after));
        let d = diff(BEFORE, &after);
        assert_eq!((d.added, d.removed), (2, 2), "{}", d.to_text());
        let text = d.to_text();
        assert!(text.contains("-snmp-server community old RO\n"), "{text}");
        assert!(text.contains("+ description uplink to core\n"), "{text}");
        assert!(text.contains("- description uplink\n"), "{text}");
        assert!(text.contains("+banner motd ^hi^\n"), "{text}");
        assert!(text.starts_with("@@ -"), "{text}");
        // Context lines are unchanged lines.
        assert!(text.contains(" logging host 10.0.0.1\n"), "{text}");
    }

    #[test]
    fn edits_of_every_shape() {
        let cases = [
            ("", "a\nb\n"),
            ("a\nb\n", ""),
            ("a\nb\nc\n", "a\nc\n"),
            ("a\nb\nc\n", "x\na\nb\nc\ny\n"),
            ("a\nb\nc\nd\n", "d\nc\nb\na\n"),
        ];
        for (a, b) in cases {
            let d = diff(a, b);
            // Applying the diff to a gives b.
            let al = significant_lines(a);
            let bl = significant_lines(b);
            let kept_a: usize = d
                .lines
                .iter()
                .filter(|l| matches!(l, DiffLine::Removed(_)))
                .count();
            assert_eq!(kept_a, d.removed);
            assert_eq!(al.len() - d.removed + d.added, bl.len(), "{a:?} -> {b:?}");
        }
        // The reversal of four lines takes 3 deletions and 3 insertions at best.
        let d = diff("a\nb\nc\nd\n", "d\nc\nb\na\n");
        assert_eq!((d.removed, d.added), (3, 3));
    }

    #[test]
    fn large_configs_are_bounded() {
        let a: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        let mut b = a.replace("line 10\n", "line ten\n");
        b.push_str("line last\n");
        let d = diff(&a, &b);
        assert_eq!((d.removed, d.added), (1, 2));
        let c: String = (0..10_000).map(|i| format!("other {i}\n")).collect();
        let d = diff(&a, &c);
        assert!(d.too_different);
        assert!(d.lines.is_empty());
    }
}
