//! Who may do what through the API: API tokens with a role, pure.
//!
//! - `viewer` reads (every `GET`, but not the configuration backups, which hold secrets);
//! - `operator` also changes: inventory, images, rollouts (submit, steer, approve);
//! - `admin` also manages the tokens;
//! - `agent` is a site agent's (`fleetup agent`), bound to one site: it makes the agent's calls
//!   (heartbeat, claims and calls of its device jobs, image downloads) for that site only, and
//!   nothing else, not even reads.
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
    /// A site agent's token, bound to its site (a token of this role has one, others none).
    Agent,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Admin, Role::Agent];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    /// Where the role stands among those that include each other (each may do all the one
    /// before it may): `None` for `agent`, which is outside them.
    fn rank(self) -> Option<u8> {
        match self {
            Role::Viewer => Some(1),
            Role::Operator => Some(2),
            Role::Admin => Some(3),
            Role::Agent => None,
        }
    }

    /// `a` or `an`, as the role's name wants.
    pub fn article(self) -> &'static str {
        match self {
            Role::Viewer => "a",
            Role::Operator | Role::Admin | Role::Agent => "an",
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

/// Who made a request: the token's name and role, and an agent token's site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// The site an `agent` token is bound to; `None` for the other roles.
    pub site: Option<String>,
}

impl Principal {
    /// Whether this token may act as a site agent of `site`: an admin token for any site, an
    /// agent token for its own; otherwise why not (for the 403's message).
    pub fn may_act_for_site(&self, site: &str) -> Result<(), String> {
        match (self.role, self.site.as_deref()) {
            (Role::Admin, _) => Ok(()),
            (Role::Agent, Some(own)) if own == site => Ok(()),
            (Role::Agent, own) => Err(format!(
                "token {} is an agent token of site {}: it may not act for site {site}",
                self.name,
                own.unwrap_or("(none)")
            )),
            (role, _) => Err(format!(
                "token {} is {} {role} token: only an admin token, or an agent token of site \
                 {site}, acts as that site's agent",
                self.name,
                role.article()
            )),
        }
    }
}

/// Whether a site name is acceptable for an agent token: 1 to 200 characters, as an agent's
/// heartbeat takes it.
pub fn check_site(site: &str) -> Result<(), String> {
    if (1..=200).contains(&site.chars().count()) && !site.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(format!(
            "site {site:?}: 1 to 200 characters, none of them a control character"
        ))
    }
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
    /// A site agent's heartbeat (`POST /agents/heartbeat`).
    AgentBeat,
    /// An image's bytes by checksum (`GET /blobs/…`): what agents and nodes fetch to cache.
    ReadBlob,
}

impl Action {
    /// The action of a request to `path` (under `/api/v1`) with a method that reads or not.
    pub fn of(is_read: bool, path: &str) -> Action {
        let path = path.strip_prefix("/api/v1").unwrap_or(path);
        if path == "/tokens" || path.starts_with("/tokens/") {
            Action::ManageTokens
        } else if path == "/agents/jobs" || path.starts_with("/agents/jobs/") {
            Action::DriveDevices
        } else if path == "/agents/heartbeat" && !is_read {
            Action::AgentBeat
        } else if is_read && path.starts_with("/blobs/") {
            Action::ReadBlob
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

/// Whether `role` may do `action`, or why not (for the 403's message). An agent token's site
/// is checked by the agent routes themselves.
pub fn allowed(role: Role, action: Action) -> Result<(), String> {
    let (needed, what, who) = match action {
        Action::Read => (Role::Viewer, "read", "a viewer, operator or admin token"),
        Action::ReadBlob => (
            Role::Viewer,
            "read",
            "a viewer, operator, admin or agent token",
        ),
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
        Action::AgentBeat => (
            Role::Operator,
            "change anything",
            "an operator, admin or agent token",
        ),
        Action::ManageTokens => (Role::Admin, "manage tokens", "an admin token"),
        Action::DriveDevices => (
            Role::Admin,
            "drive devices as a site agent",
            "an admin token, or an agent token of the site",
        ),
    };
    let agent_call = matches!(
        action,
        Action::AgentBeat | Action::DriveDevices | Action::ReadBlob
    );
    let ok = match role.rank() {
        Some(rank) => needed.rank().is_some_and(|n| rank >= n),
        None => agent_call,
    };
    if ok {
        return Ok(());
    }
    if role == Role::Agent {
        return Err(format!(
            "an agent token may only make a site agent's calls (heartbeat, device jobs, image \
             downloads) and may not {what}: that needs {who}"
        ));
    }
    Err(format!(
        "{} {role} token may not {what}: that needs {who}",
        role.article()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_may_do_what_the_docs_say() {
        use Action::*;
        // Read, ReadSecret, Change, ManageTokens, DriveDevices, AgentBeat, ReadBlob.
        let table = [
            (
                Role::Viewer,
                [true, false, false, false, false, false, true],
            ),
            (Role::Operator, [true, true, true, false, false, true, true]),
            (Role::Admin, [true, true, true, true, true, true, true]),
            (Role::Agent, [false, false, false, false, true, true, true]),
        ];
        for (role, wanted) in table {
            for (action, want) in [
                Read,
                ReadSecret,
                Change,
                ManageTokens,
                DriveDevices,
                AgentBeat,
                ReadBlob,
            ]
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
        let why = allowed(Role::Agent, Read).unwrap_err();
        assert_eq!(
            why,
            "an agent token may only make a site agent's calls (heartbeat, device jobs, image \
             downloads) and may not read: that needs a viewer, operator or admin token"
        );
        let why = allowed(Role::Operator, ManageTokens).unwrap_err();
        assert_eq!(
            why,
            "an operator token may not manage tokens: that needs an admin token"
        );
    }

    #[test]
    fn an_agent_token_acts_for_its_own_site_only() {
        let who = |role, site: Option<&str>| Principal {
            name: "t".into(),
            role,
            site: site.map(str::to_string),
        };
        assert!(who(Role::Admin, None).may_act_for_site("any").is_ok());
        assert!(
            who(Role::Agent, Some("site-a"))
                .may_act_for_site("site-a")
                .is_ok()
        );
        assert_eq!(
            who(Role::Agent, Some("site-a"))
                .may_act_for_site("site-b")
                .unwrap_err(),
            "token t is an agent token of site site-a: it may not act for site site-b"
        );
        assert!(
            who(Role::Operator, None)
                .may_act_for_site("site-a")
                .unwrap_err()
                .starts_with("token t is an operator token")
        );
        assert!(check_site("site-a").is_ok());
        assert!(check_site("").is_err() && check_site("a\nb").is_err());
        assert!(check_site(&"s".repeat(201)).is_err());
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
            Action::AgentBeat
        );
        assert_eq!(Action::of(true, "/api/v1/agents"), Action::Read);
        assert_eq!(
            Action::of(true, "/api/v1/blobs/sha256/ab"),
            Action::ReadBlob
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
