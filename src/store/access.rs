//! API tokens (their hashes and roles) and the audit log of the API's mutating calls.

use sqlx::Row;

use super::{Db, StoreError, now_text};
use crate::access::Role;

/// A token as kept: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    pub hash: String,
    /// The service's first token (`FLEETUP_API_TOKEN` or `DATA_DIR/api-token`).
    pub bootstrap: bool,
    pub created_at: String,
    pub created_by: Option<String>,
    pub revoked_at: Option<String>,
    /// The site an `agent` token is bound to.
    pub site: Option<String>,
}

/// One audited call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: String,
    pub token: String,
    pub role: String,
    pub method: String,
    pub path: String,
    pub status: u16,
}

fn row_to_token(r: &sqlx::any::AnyRow) -> Result<TokenRecord, StoreError> {
    let role: String = r.try_get("role")?;
    Ok(TokenRecord {
        name: r.try_get("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Database(sqlx::Error::Decode("token role".into())))?,
        hash: r.try_get("hash")?,
        bootstrap: r.try_get::<i64, _>("bootstrap")? != 0,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        revoked_at: r.try_get("revoked_at")?,
        site: r.try_get("site")?,
    })
}

impl Db {
    /// Every token, revoked ones included, by name.
    pub(crate) async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, role, hash, bootstrap, created_at, created_by, revoked_at, site \
             FROM api_tokens ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_token).collect()
    }

    /// Keep a new token; `Conflict` when the name is taken (revoked names stay taken, so the
    /// audit log never mixes two tokens under one name).
    /// `site` is an agent token's (and only theirs).
    pub(crate) async fn insert_token(
        &self,
        name: &str,
        role: Role,
        site: Option<&str>,
        hash: &str,
        created_by: Option<&str>,
    ) -> Result<TokenRecord, StoreError> {
        let now = now_text();
        let done = sqlx::query(
            "INSERT INTO api_tokens (name, role, hash, created_at, created_by, site) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(hash)
        .bind(&now)
        .bind(created_by)
        .bind(site)
        .execute(&self.pool)
        .await
        .map_err(|e| self.failed(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "a token named {name:?} exists (or existed: names of revoked tokens stay taken)"
            )));
        }
        Ok(TokenRecord {
            name: name.to_string(),
            role,
            hash: hash.to_string(),
            bootstrap: false,
            created_at: now,
            created_by: created_by.map(str::to_string),
            revoked_at: None,
            site: site.map(str::to_string),
        })
    }

    /// Revoke a token by name; `NotFound` if there is none, `Conflict` if already revoked.
    pub(crate) async fn revoke_token(&self, name: &str) -> Result<TokenRecord, StoreError> {
        let now = now_text();
        let row = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL \
             RETURNING name, role, hash, bootstrap, created_at, created_by, revoked_at, site",
        )
        .bind(&now)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.failed(e))?;
        match row {
            Some(r) => row_to_token(&r),
            None if self.tokens().await?.iter().any(|t| t.name == name) => Err(
                StoreError::Conflict(format!("the token {name:?} is already revoked")),
            ),
            None => Err(StoreError::NotFound),
        }
    }

    /// The service's first token, as it starts: recorded as the admin token `name` the first
    /// time; its hash follows the token if it was changed (a new `FLEETUP_API_TOKEN`); once
    /// revoked it stays revoked. The record as it is now.
    pub(crate) async fn ensure_bootstrap_token(
        &self,
        name: &str,
        hash: &str,
    ) -> Result<TokenRecord, StoreError> {
        let now = now_text();
        sqlx::query(
            "INSERT INTO api_tokens (name, role, hash, bootstrap, created_at) VALUES ($1, 'admin', $2, 1, $3) \
             ON CONFLICT (name) DO UPDATE SET hash = excluded.hash \
             WHERE api_tokens.bootstrap = 1 AND api_tokens.revoked_at IS NULL",
        )
        .bind(name)
        .bind(hash)
        .bind(&now)
        .execute(&self.pool)
        .await
        .map_err(|e| self.failed(e))?;
        let row = sqlx::query(
            "SELECT name, role, hash, bootstrap, created_at, created_by, revoked_at, site \
             FROM api_tokens WHERE name = $1",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        row_to_token(&row)
    }

    /// Record an audited call; its id.
    pub(crate) async fn insert_audit(
        &self,
        token: &str,
        role: Role,
        method: &str,
        path: &str,
        status: u16,
    ) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO audit_log (at, token, role, method, path, status) VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING id",
        )
        .bind(now_text())
        .bind(token)
        .bind(role.as_str())
        .bind(method)
        .bind(path)
        .bind(i64::from(status))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.failed(e))?;
        Ok(id)
    }

    /// Audited calls, newest first: at most `limit`, older than `before` (an id) when given,
    /// by one token when given.
    pub(crate) async fn audit(
        &self,
        token: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, token, role, method, path, status FROM audit_log \
             WHERE ($1 IS NULL OR token = $2) AND ($3 IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5",
        )
        .bind(token)
        .bind(token)
        .bind(before)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    token: r.try_get("token")?,
                    role: r.try_get("role")?,
                    method: r.try_get("method")?,
                    path: r.try_get("path")?,
                    status: u16::try_from(r.try_get::<i64, _>("status")?).unwrap_or(0),
                })
            })
            .collect()
    }
}
