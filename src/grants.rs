//! One-time permissions to fetch given image files: the path tokens of the HTTP(S) server
//! (`/j/TOKEN/IMAGE`) and the accounts of the SCP/SFTP server.
//!
//! A device job is issued a grant for the files it copies and holds the [`GrantGuard`] for as
//! long as it runs; when the job ends the guard is dropped and the grant with it, so a URL or
//! an account seen in a device's history stops working. A grant allows its own files only:
//! it never lists the store and never reaches another image.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// Length of a grant's name: 12 characters of 36 give 62 bits, short enough for IOS-XE's
/// 253-character command line with a long image name.
const NAME_LEN: usize = 12;
/// Length of an account's password.
const SECRET_LEN: usize = 20;
/// Letters and digits only: IOS parses `:` `@` `/` in URL credentials itself, and some
/// releases take upper case in a URL's user part as a different user.
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random_string(len: usize) -> String {
    (0..len)
        .map(|_| char::from(ALPHABET[(rand::random::<u32>() as usize) % ALPHABET.len()]))
        .collect()
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

struct Grant {
    /// The password's digest, for accounts; `None` for path tokens.
    secret: Option<[u8; 32]>,
    files: Vec<String>,
}

/// The live grants of one server (or of several: a token is unique across them); cheap to
/// clone, shared between the rollout engine that issues grants and the server that checks
/// them.
#[derive(Clone, Default)]
pub struct Grants {
    inner: Arc<Mutex<HashMap<String, Grant>>>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("live", &self.lock().len())
            .finish()
    }
}

impl Grants {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Grant>> {
        // A panic while holding the lock cannot leave the map half-written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A path token for `files` (HTTP, HTTPS).
    pub fn issue_token(&self, files: Vec<String>) -> GrantGuard {
        self.issue(files, false)
    }

    /// A one-time account for `files` (SCP, SFTP): the guard holds its user and password.
    pub fn issue_account(&self, files: Vec<String>) -> GrantGuard {
        self.issue(files, true)
    }

    fn issue(&self, files: Vec<String>, with_secret: bool) -> GrantGuard {
        let secret = with_secret.then(|| random_string(SECRET_LEN));
        let mut map = self.lock();
        let name = loop {
            let n = random_string(NAME_LEN);
            if !map.contains_key(&n) {
                break n;
            }
        };
        map.insert(
            name.clone(),
            Grant {
                secret: secret.as_deref().map(digest),
                files,
            },
        );
        GrantGuard {
            grants: self.clone(),
            name,
            secret,
        }
    }

    /// Whether a path token is live and allows `file`.
    pub fn token_allows(&self, token: &str, file: &str) -> bool {
        matches!(self.lock().get(token), Some(g) if g.secret.is_none() && g.files.iter().any(|f| f == file))
    }

    /// Whether `user` and `password` are a live account (compared in constant time).
    pub fn login(&self, user: &str, password: &str) -> bool {
        let given = digest(password);
        match self.lock().get(user) {
            Some(Grant {
                secret: Some(want), ..
            }) => bool::from(want.ct_eq(&given)),
            _ => false,
        }
    }

    /// Whether the live account `user` may fetch `file`; false once the grant ended.
    pub fn account_allows(&self, user: &str, file: &str) -> bool {
        matches!(self.lock().get(user), Some(g) if g.secret.is_some() && g.files.iter().any(|f| f == file))
    }

    /// The files a live grant allows (empty once it ended).
    pub fn files(&self, name: &str) -> Vec<String> {
        self.lock()
            .get(name)
            .map(|g| g.files.clone())
            .unwrap_or_default()
    }

    /// How many grants are live.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A live grant; dropping it ends the grant.
pub struct GrantGuard {
    grants: Grants,
    name: String,
    secret: Option<String>,
}

impl std::fmt::Debug for GrantGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantGuard")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl GrantGuard {
    /// The path token, or the account's user name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The account's password; `None` for a path token.
    pub fn secret(&self) -> Option<&str> {
        self.secret.as_deref()
    }
}

impl Drop for GrantGuard {
    fn drop(&mut self) {
        self.grants.lock().remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_allows_its_own_files_until_dropped() {
        let g = Grants::new();
        let t = g.issue_token(vec!["a.bin".into(), "k.bin".into()]);
        assert_eq!(t.name().len(), NAME_LEN);
        assert!(t.name().bytes().all(|b| ALPHABET.contains(&b)));
        assert!(t.secret().is_none());
        assert!(g.token_allows(t.name(), "a.bin"));
        assert!(g.token_allows(t.name(), "k.bin"));
        assert!(!g.token_allows(t.name(), "other.bin"));
        assert!(!g.token_allows("guessed00000", "a.bin"));
        // A token is no account.
        assert!(!g.login(t.name(), ""));
        let name = t.name().to_string();
        drop(t);
        assert!(!g.token_allows(&name, "a.bin"));
        assert!(g.is_empty());
    }

    #[test]
    fn an_account_logs_in_with_its_password_only_and_ends_with_its_guard() {
        let g = Grants::new();
        let a = g.issue_account(vec!["a.bin".into()]);
        let (user, pass) = (a.name().to_string(), a.secret().unwrap_or("").to_string());
        assert_eq!(pass.len(), SECRET_LEN);
        assert!(g.login(&user, &pass));
        assert!(!g.login(&user, "wrong"));
        assert!(!g.login(&user, ""));
        assert!(g.account_allows(&user, "a.bin"));
        assert!(!g.account_allows(&user, "b.bin"));
        // An account is no path token.
        assert!(!g.token_allows(&user, "a.bin"));
        let other = g.issue_account(vec!["b.bin".into()]);
        assert_ne!(other.name(), user);
        drop(a);
        assert!(!g.login(&user, &pass));
        assert!(!g.account_allows(&user, "a.bin"));
        assert_eq!(g.len(), 1);
        assert_eq!(g.files(other.name()), vec!["b.bin".to_string()]);
    }
}
