//! The paths by which a name sent by a client reaches a file: the file servers' lookup in the
//! image directory, the HTTP upload's choice of a destination, and the dashboard's URL paths.

use std::path::{Component, Path};

use super::{Fixture, HIDDEN_SIZE, IMAGE_SIZE, SECRET_SIZE};
use crate::images::{
    ResolveError, destination, guess_platform, guess_version, resolve_in, upload_name,
};

pub(super) const TOKENS: &[&[u8]] = &[
    b"..",
    b"/",
    b"\\",
    b".incoming",
    b".part",
    b"escape.bin",
    b"partial.bin",
    b"hidden-link.bin",
    b"sub/",
    b"%2e%2e",
    b"\x00",
    b"c2960x-universalk9-mz.152-7.E8.bin",
    b"nxos.9.3.8.bin",
    b"index.html",
    b"./",
];

/// The first byte chooses how the rest is sent: as a TFTP/FTP file name, as an HTTP upload's
/// `file_name` field, as the file name of the upload's file part, or as a dashboard URL path.
///
/// - A name the file servers resolve is a regular file directly under the image directory, by
///   a path that stays under it once links are followed, and neither hidden nor a partial
///   upload (checked by content: only the image has its size).
/// - An upload's destination is directly in the image directory, under a name that is not
///   hidden and that the file servers would serve.
/// - A dashboard path names one of the embedded files or nothing: never a file outside `web/`.
pub fn image_path(fixture: &Fixture, data: &[u8]) {
    let Some((&how, rest)) = data.split_first() else {
        return;
    };
    let name = String::from_utf8_lossy(rest);
    match how % 4 {
        0 => check_resolve(fixture, &name),
        1 => check_upload(fixture, &upload_name(&name, Some("ignored.bin"))),
        2 => check_upload(fixture, &upload_name("", Some(&name))),
        _ => check_asset(&name),
    }
}

fn check_resolve(fixture: &Fixture, name: &str) {
    let root = &fixture.root;
    match resolve_in(root, name) {
        Ok(path) => {
            let real = std::fs::canonicalize(&path)
                .unwrap_or_else(|e| panic!("{name:?} resolved to {path:?}, which is gone: {e}"));
            let real_root = std::fs::canonicalize(root).expect("fixture root");
            let rel = real
                .strip_prefix(&real_root)
                .unwrap_or_else(|_| panic!("{name:?} resolved outside the root: {real:?}"));
            let parts: Vec<Component<'_>> = rel.components().collect();
            assert_eq!(
                parts.len(),
                1,
                "{name:?} resolved into a subdirectory: {rel:?}"
            );
            let file = rel.to_string_lossy();
            assert!(
                !file.starts_with('.'),
                "{name:?} resolved to hidden {file:?}"
            );
            let meta = std::fs::metadata(&real).expect("resolved file");
            assert!(meta.is_file(), "{name:?} resolved to a non-file");
            assert_ne!(
                meta.len(),
                SECRET_SIZE,
                "{name:?} resolved to the secret outside"
            );
            assert_ne!(
                meta.len(),
                HIDDEN_SIZE,
                "{name:?} resolved to a hidden or partial file"
            );
            assert_eq!(
                meta.len(),
                IMAGE_SIZE,
                "{name:?} resolved to an unknown file"
            );
        }
        Err(ResolveError::NotFound) => {
            let bare = name.strip_prefix('/').unwrap_or(name);
            assert!(
                !bare.is_empty() && !bare.contains(['/', '\\', '\0']) && !bare.starts_with('.'),
                "{name:?} is not refused but merely not found"
            );
        }
        Err(ResolveError::Forbidden(why)) => assert!(!why.is_empty()),
    }
}

fn check_upload(fixture: &Fixture, name: &str) {
    let root = &fixture.root;
    match destination(root, name) {
        Ok(dest) => {
            assert_eq!(
                dest.parent(),
                Some(root.as_path()),
                "{name:?} leaves the image directory"
            );
            assert_eq!(
                dest.file_name().map(|f| f.to_string_lossy()),
                Some(name.into()),
                "{name:?} is stored under another name"
            );
            assert!(!name.starts_with('.'), "upload stored as hidden {name:?}");
            assert!(
                !name.chars().any(char::is_control),
                "control character in {name:?}"
            );
            assert!(Path::new(name).components().count() == 1);
            assert!(
                !matches!(
                    resolve_in(&fixture.empty, name),
                    Err(ResolveError::Forbidden(_))
                ),
                "upload {name:?} accepted over HTTP would be refused by the file servers"
            );
            if let Some(v) = guess_version(name) {
                assert!(!v.is_empty());
            }
            let _ = guess_platform(name);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn check_asset(path: &str) {
    let path = path.trim_start_matches('/');
    if let Some(file) = crate::api::web::asset(path) {
        // The embedded files answer to spellings such as `./index.html` too: what matters is
        // that the bytes are one of the dashboard's files, never another file on disk.
        assert!(
            crate::api::web::asset_names()
                .any(|n| crate::api::web::asset(&n).is_some_and(|a| a.data == file.data)),
            "dashboard path {path:?} served a file that is not a dashboard asset ({} bytes)",
            file.data.len()
        );
    }
}
