//! Which file an account may fetch: the grant names it, and the store's path rules
//! ([`crate::images::resolve_in`]: no traversal, no hidden or partial files, no links out)
//! find it. Every refusal looks the same to the client ("No such file") and is logged.

use std::net::SocketAddr;
use std::path::Path;

use crate::grants::Grants;
use crate::images::resolve_in;

/// A granted image, open for reading.
pub(super) struct Served {
    /// The image's name in the store (and in the grant).
    pub name: String,
    pub file: tokio::fs::File,
    pub size: u64,
    /// Modification time, Unix seconds (for `scp -p` and SFTP attributes).
    pub mtime: u64,
}

/// The store name a client's path stands for: `IMAGE`, `/IMAGE` and `./IMAGE` alike.
pub(super) fn store_name(requested: &str) -> &str {
    let name = requested.strip_prefix("./").unwrap_or(requested);
    name.strip_prefix('/').unwrap_or(name)
}

/// Whether `user`'s grant names `requested` and the store has it as a plain served file.
/// Refusals are logged here, with the reason the client is not told.
pub(super) fn check(
    root: &Path,
    grants: &Grants,
    user: &str,
    requested: &str,
    peer: SocketAddr,
) -> Option<(String, std::path::PathBuf)> {
    let name = store_name(requested);
    if !grants.account_allows(user, name) {
        tracing::info!(%peer, user, requested = ?requested, "image SSH: refused a file the account's grant does not name (or the grant ended)");
        return None;
    }
    match resolve_in(root, name) {
        Ok(path) => Some((name.to_string(), path)),
        Err(e) => {
            tracing::warn!(%peer, user, requested = ?requested, reason = %e, "image SSH: refused a granted name the store does not serve");
            None
        }
    }
}

/// [`check`], then open the file.
pub(super) async fn open(
    root: &Path,
    grants: &Grants,
    user: &str,
    requested: &str,
    peer: SocketAddr,
) -> Option<Served> {
    let (name, path) = check(root, grants, user, requested, peer)?;
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(%peer, user, file = %name, error = %e, "image SSH: cannot open a granted image");
            return None;
        }
    };
    let meta = file.metadata().await.ok()?;
    if !meta.is_file() {
        return None;
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Some(Served {
        name,
        file,
        size: meta.len(),
        mtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_plain_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), b"a").unwrap();
        std::fs::write(dir.path().join("b.bin"), b"b").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"h").unwrap();
        let grants = Grants::new();
        let g = grants.issue_account(vec!["a.bin".into(), ".hidden".into(), "../x".into()]);
        let peer: SocketAddr = "192.0.2.1:2000".parse().unwrap();
        let ok = |p: &str| check(dir.path(), &grants, g.name(), p, peer).is_some();
        assert!(ok("a.bin"));
        assert!(ok("/a.bin"));
        assert!(ok("./a.bin"));
        assert!(!ok("b.bin"), "not granted");
        assert!(!ok(".hidden"), "granted but hidden");
        assert!(!ok("../x"), "granted but traversal");
        assert!(!ok("//a.bin"));
        assert!(check(dir.path(), &grants, "nobody", "a.bin", peer).is_none());
        let user = g.name().to_string();
        drop(g);
        assert!(check(dir.path(), &grants, &user, "a.bin", peer).is_none());
    }
}
