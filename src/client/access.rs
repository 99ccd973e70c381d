//! `fleetup token create|list|revoke` and `fleetup audit`.

use serde_json::json;

use super::{Client, ClientError, segment};
use crate::access::Role;
use crate::api::{AuditList, CreatedToken, TokenList, TokenView};

/// Make a token: its name, role (and an agent token's site) and the secret, which the service
/// shows this once; with `secret_only`, the secret alone on its line.
pub async fn create_token(
    c: &Client,
    name: &str,
    role: Role,
    site: Option<&str>,
    secret_only: bool,
) -> Result<String, ClientError> {
    let mut body = json!({"name": name, "role": role});
    if let Some(site) = site {
        body["site"] = json!(site);
    }
    let t: CreatedToken = c.post_json("/tokens", &body).await?;
    if secret_only {
        return Ok(format!("{}\n", t.secret));
    }
    let of_site = t
        .token
        .site
        .as_deref()
        .map(|s| format!(" of site {s}"))
        .unwrap_or_default();
    Ok(format!(
        "token {} ({}{of_site}) created. Its secret, shown this once (fleetup keeps only its hash):\n{}\n",
        t.token.name, t.token.role, t.secret
    ))
}

/// The tokens, by name.
pub async fn tokens(c: &Client) -> Result<String, ClientError> {
    let list: TokenList = c.get_json("/tokens").await?;
    let mut out = format!(
        "{:<24} {:<9} {:<16} {:<26} {:<16} REVOKED\n",
        "NAME", "ROLE", "SITE", "CREATED", "BY"
    );
    for t in &list.tokens {
        out.push_str(&row(t));
    }
    out.push_str(&format!("{} token(s)\n", list.tokens.len()));
    Ok(out)
}

fn row(t: &TokenView) -> String {
    let by = match (&t.created_by, t.bootstrap) {
        (Some(by), _) => by.clone(),
        (None, true) => "(first token)".into(),
        (None, false) => "-".into(),
    };
    format!(
        "{:<24} {:<9} {:<16} {:<26} {:<16} {}\n",
        t.name,
        t.role.as_str(),
        t.site.as_deref().unwrap_or("-"),
        t.created_at,
        by,
        t.revoked_at.as_deref().unwrap_or("-")
    )
}

/// Revoke a token by name.
pub async fn revoke_token(c: &Client, name: &str) -> Result<String, ClientError> {
    let t: TokenView = c.delete_json(&format!("/tokens/{}", segment(name))).await?;
    Ok(format!(
        "token {} ({}) revoked at {}\n",
        t.name,
        t.role,
        t.revoked_at.as_deref().unwrap_or("?")
    ))
}

/// The audit log, newest first.
pub async fn audit(c: &Client, token: Option<&str>, limit: u32) -> Result<String, ClientError> {
    let mut path = format!("/audit?limit={limit}");
    if let Some(t) = token {
        path.push_str(&format!("&by={}", segment(t)));
    }
    let list: AuditList = c.get_json(&path).await?;
    let mut out = format!(
        "{:<7} {:<26} {:<20} {:<9} {:<6} {:<6} PATH\n",
        "ID", "AT", "TOKEN", "ROLE", "METHOD", "STATUS"
    );
    for e in &list.entries {
        out.push_str(&format!(
            "{:<7} {:<26} {:<20} {:<9} {:<6} {:<6} {}\n",
            e.id, e.at, e.token, e.role, e.method, e.status, e.path
        ));
    }
    out.push_str(&format!("{} entr(ies)\n", list.entries.len()));
    Ok(out)
}
