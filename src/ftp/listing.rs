//! The view of the image store that LIST, NLST, MLSD, MLST, SIZE and MDTM show.
//!
//! The store is flat: one directory, `/`, holding the image files. Whatever
//! [`crate::images::resolve_in`] would refuse to serve (hidden names, subdirectories, links
//! leading out) is not listed either. Formatting is pure; `now` is passed in.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use jiff::Timestamp;

use crate::images::{ResolveError, resolve_in};

/// One served file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub modified: Timestamp,
}

/// What a path argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Root,
    File(String),
}

/// Interpret a path argument. Only the root has a name of its own; everything else must be a
/// file name that `resolve_in` accepts.
pub(crate) fn target(arg: &str) -> Target {
    // Slashes only (`/`, `//`) trim to "".
    match arg.trim_end_matches('/') {
        "" | "." | "/." => Target::Root,
        _ => Target::File(arg.to_string()),
    }
}

/// Strip `ls`-style options (`-la`) that clients put in front of a LIST path.
pub(crate) fn strip_list_options(arg: Option<&str>) -> &str {
    let mut rest = arg.unwrap_or("").trim_start();
    while rest.starts_with('-') {
        rest = match rest.split_once(' ') {
            Some((_, r)) => r.trim_start(),
            None => "",
        };
    }
    rest
}

fn timestamp(t: std::io::Result<SystemTime>) -> Timestamp {
    t.ok()
        .and_then(|t| Timestamp::try_from(t).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Look up one file by the name a client sent.
pub(crate) fn entry(root: &Path, requested: &str) -> Result<Entry, ResolveError> {
    let path = resolve_in(root, requested)?;
    let meta = std::fs::metadata(&path).map_err(|_| ResolveError::NotFound)?;
    let name = requested.strip_prefix('/').unwrap_or(requested).to_string();
    Ok(Entry {
        name,
        path,
        size: meta.len(),
        modified: timestamp(meta.modified()),
    })
}

/// Every servable file in the root, sorted by name.
pub(crate) fn entries(root: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(root)? {
        let item = item?;
        let Ok(name) = item.file_name().into_string() else {
            continue;
        };
        if let Ok(e) = entry(root, &name) {
            out.push(e);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `ls -l` style, as most clients (and IOS `dir ftp:`) parse it: recent files show the time,
/// older or future ones the year.
pub(crate) fn list_line(e: &Entry, now: Timestamp) -> String {
    let age = now.as_second() - e.modified.as_second();
    let half_year = 183 * 24 * 3600;
    let when = if (0..half_year).contains(&age) {
        e.modified.strftime("%b %e %H:%M").to_string()
    } else {
        e.modified.strftime("%b %e  %Y").to_string()
    };
    format!(
        "-r--r--r--    1 ftp      ftp      {:>12} {} {}\r\n",
        e.size, when, e.name
    )
}

/// RFC 3659 facts for MLSD/MLST.
pub(crate) fn mlsx_facts(e: &Entry) -> String {
    format!(
        "type=file;size={};modify={};perm=r; {}",
        e.size,
        mdtm(e.modified),
        e.name
    )
}

/// `YYYYMMDDHHMMSS` in UTC, as MDTM and the `modify` fact want it.
pub(crate) fn mdtm(t: Timestamp) -> String {
    t.strftime("%Y%m%d%H%M%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, modified: &str) -> Entry {
        Entry {
            name: name.into(),
            path: PathBuf::from(name),
            size: 1234,
            modified: modified.parse().unwrap(),
        }
    }

    #[test]
    fn list_line_shows_time_for_recent_and_year_for_old_files() {
        let now: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        assert_eq!(
            list_line(&e("ios.bin", "2026-11-02T08:05:00Z"), now),
            "-r--r--r--    1 ftp      ftp              1234 Nov  2 08:05 ios.bin\r\n"
        );
        assert_eq!(
            list_line(&e("old.bin", "2024-03-15T08:05:00Z"), now),
            "-r--r--r--    1 ftp      ftp              1234 Mar 15  2024 old.bin\r\n"
        );
    }

    #[test]
    fn facts_and_mdtm() {
        let x = e("c2960x.bin", "2026-01-02T03:04:05Z");
        assert_eq!(mdtm(x.modified), "20260102030405");
        assert_eq!(
            mlsx_facts(&x),
            "type=file;size=1234;modify=20260102030405;perm=r; c2960x.bin"
        );
    }

    #[test]
    fn targets_and_options() {
        assert_eq!(target("/"), Target::Root);
        assert_eq!(target("."), Target::Root);
        assert_eq!(target("//"), Target::Root);
        assert_eq!(target("ios.bin"), Target::File("ios.bin".into()));
        assert_eq!(target("../.."), Target::File("../..".into()));
        assert_eq!(strip_list_options(Some("-la")), "");
        assert_eq!(strip_list_options(Some("-l -a ios.bin")), "ios.bin");
        assert_eq!(strip_list_options(None), "");
    }

    #[test]
    fn entries_skip_hidden_dirs_and_escaping_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.bin"), b"bb").unwrap();
        std::fs::write(dir.path().join("a.bin"), b"a").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"h").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("evil.bin")).unwrap();
        let names: Vec<_> = entries(dir.path())
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.size))
            .collect();
        assert_eq!(
            names,
            vec![("a.bin".to_string(), 1), ("b.bin".to_string(), 2)]
        );
        assert_eq!(entry(dir.path(), "/b.bin").unwrap().name, "b.bin");
        assert!(matches!(
            entry(dir.path(), "../x"),
            Err(ResolveError::Forbidden(_))
        ));
    }
}
