//! Who may do what through the API: API tokens with a role, pure.
//!
//! - `viewer` reads (every `GET`, but not the configuration backups, which hold secrets);
//! - `operator` also changes: inventory, images, rollouts (submit, steer, approve);
//! - `admin` also manages the tokens.
//!
//! A token is shown once, when it is created; the service keeps only its SHA-256 (a token is 32
//! random bytes, so a plain hash cannot be reversed by guessing).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made a request: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// The name the service's first token (`FLEETUP_API_TOKEN` or `DATA_DIR/api-token`) goes by.
pub const BOOTSTRAP_NAME: &str = "admin";

/// Prefix of the tokens `fleetup token create` makes, so that secret scanners know them.
pub const TOKEN_PREFIX: &str = "fleetup_";

/// A new token's secret: the prefix and 32 random bytes in hex.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// What is kept of a token: its SHA-256, hex.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether a token name is acceptable: 1 to 64 of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "token name {name:?}: 1 to 64 letters, digits, '.', '_', '-' or '@'"
        ))
    }
}

/// What a request is, as far as access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A read of anything but the below.
    Read,
    /// A read of a configuration backup (`/devices/{name}/configs…`): secrets.
    ReadSecret,
    /// A change of the inventory, images or rollouts.
    Change,
    /// Tokens: list, create, revoke.
    ManageTokens,
    /// A site agent's device jobs (`/agents/jobs…`): claiming one hands over the device's
    /// credentials, and running it changes the device.
    DriveDevices,
}

impl Action {
    /// The action of a request to `path` (under `/api/v1`) with a method that reads or not.
    pub fn of(is_read: bool, path: &str) -> Action {
        let path = path.strip_prefix("/api/v1").unwrap_or(path);
        if path == "/tokens" || path.starts_with("/tokens/") {
            Action::ManageTokens
        } else if path == "/agents/jobs" || path.starts_with("/agents/jobs/") {
            Action::DriveDevices
        } else if is_secret_read(path) {
            if is_read {
                Action::ReadSecret
            } else {
                Action::Change
            }
        } else if is_read {
            Action::Read
        } else {
            Action::Change
        }
    }
}

/// A configuration backup route (`/devices/{name}/configs`, `…/configs/{id}`, `…/diff`),
/// under `/api/v1` or not.
pub fn is_secret_read(path: &str) -> bool {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let mut parts = path.trim_start_matches('/').split('/');
    parts.next() == Some("devices") && parts.nth(1) == Some("configs")
}

/// Whether `role` may do `action`, or why not (for the 403's message).
pub fn allowed(role: Role, action: Action) -> Result<(), String> {
    let (needed, what, who) = match action {
        Action::Read => (Role::Viewer, "read", "any token"),
        Action::ReadSecret => (
            Role::Operator,
            "read configuration backups",
            "an operator or admin token",
        ),
        Action::Change => (
            Role::Operator,
            "change anything",
            "an operator or admin token",
        ),
        Action::ManageTokens => (Role::Admin, "manage tokens", "an admin token"),
        Action::DriveDevices => (
            Role::Admin,
            "drive devices as a site agent",
            "an admin token",
        ),
    };
    if role >= needed {
        return Ok(());
    }
    let article = if role == Role::Viewer { "a" } else { "an" };
    Err(format!(
        "{article} {role} token may not {what}: that needs {who}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_may_do_what_the_docs_say() {
        use Action::*;
        let table = [
            (Role::Viewer, [true, false, false, false, false]),
            (Role::Operator, [true, true, true, false, false]),
            (Role::Admin, [true, true, true, true, true]),
        ];
        for (role, wanted) in table {
            for (action, want) in [Read, ReadSecret, Change, ManageTokens, DriveDevices]
                .into_iter()
                .zip(wanted)
            {
                assert_eq!(allowed(role, action).is_ok(), want, "{role} {action:?}");
            }
        }
        let why = allowed(Role::Viewer, Change).unwrap_err();
        assert_eq!(
            why,
            "a viewer token may not change anything: that needs an operator or admin token"
        );
        let why = allowed(Role::Operator, ManageTokens).unwrap_err();
        assert_eq!(
            why,
            "an operator token may not manage tokens: that needs an admin token"
        );
    }

    #[test]
    fn requests_are_sorted_by_path_and_method() {
        assert_eq!(Action::of(true, "/api/v1/devices"), Action::Read);
        assert_eq!(
            Action::of(false, "/api/v1/agents/jobs/claim"),
            Action::DriveDevices
        );
        assert_eq!(
            Action::of(false, "/api/v1/agents/heartbeat"),
            Action::Change
        );
        assert_eq!(Action::of(false, "/api/v1/devices"), Action::Change);
        assert_eq!(Action::of(true, "/api/v1/tokens"), Action::ManageTokens);
        assert_eq!(Action::of(false, "/api/v1/tokens/ci"), Action::ManageTokens);
        assert_eq!(
            Action::of(true, "/api/v1/devices/sw1/configs"),
            Action::ReadSecret
        );
        assert_eq!(
            Action::of(true, "/api/v1/devices/sw1/configs/3/diff"),
            Action::ReadSecret
        );
        assert_eq!(
            Action::of(true, "/api/v1/devices/sw1/history"),
            Action::Read
        );
        assert_eq!(Action::of(true, "/api/v1/devices/configs"), Action::Read);
        assert!(is_secret_read("/devices/sw1/configs/diff/r-1"));
        assert!(!is_secret_read("/devices/sw1/history"));
        assert!(!is_secret_read("/devices"));
    }

    #[test]
    fn secrets_are_kept_as_their_hash_only() {
        let s = new_secret();
        assert!(s.starts_with(TOKEN_PREFIX) && s.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(new_secret(), s);
        let h = hash(&s);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&s[TOKEN_PREFIX.len()..]));
        assert_eq!(hash(&s), h);
        assert!(check_name("ci-pipeline").is_ok());
        assert!(check_name("").is_err() && check_name("a b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }
}
