//! `/tokens` (admin only: list, create, revoke API tokens) and `/audit` (the log of every
//! mutating call). A token's secret is in the answer to its creation only; the store keeps its
//! SHA-256.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::Internal;
use super::{ApiError, ApiResult, AppState, ErrorBody};
use crate::access::{Principal, Role};
use crate::store::{AuditRecord, TokenRecord};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_audit))
}

/// An API token as kept: its name, role and life, never its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub name: String,
    pub role: Role,
    /// The service's first token (`FLEETUP_API_TOKEN` or `DATA_DIR/api-token`).
    pub bootstrap: bool,
    pub created_at: String,
    /// The token that created it (none for the first one).
    pub created_by: Option<String>,
    /// When it was revoked; a revoked token is refused with 401.
    pub revoked_at: Option<String>,
    /// The site an `agent` token is bound to (absent for the other roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> Self {
        TokenView {
            name: t.name,
            role: t.role,
            bootstrap: t.bootstrap,
            created_at: t.created_at,
            created_by: t.created_by,
            revoked_at: t.revoked_at,
            site: t.site,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// By name, revoked ones included.
    pub tokens: Vec<TokenView>,
}

/// A token to make: `{"name","role"}`, and an agent token's `site` (its OpenAPI schema is
/// [`NewTokenSchema`]'s).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    /// Kept as sent, so that a `site` given to a role without one is refused even as `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<serde_json::Value>,
}

/// The body of `POST /tokens`, as the OpenAPI document gives it: a person's token, or an
/// agent token with its site.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum NewTokenSchema {
    Person(NewPersonToken),
    Agent(NewAgentToken),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct NewPersonToken {
    /// 1 to 64 letters, digits, `.`, `_`, `-`, `@`; unique, also among revoked tokens.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$", min_length = 1, max_length = 64)]
    name: String,
    role: PersonRole,
}

/// The roles of people's (and pipelines') tokens.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum PersonRole {
    Viewer,
    Operator,
    Admin,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct NewAgentToken {
    /// 1 to 64 letters, digits, `.`, `_`, `-`, `@`; unique, also among revoked tokens.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$", min_length = 1, max_length = 64)]
    name: String,
    role: AgentRole,
    /// The site the token acts for: its agent's heartbeat, claims and job calls must be for
    /// this site. 1 to 200 characters, no control character.
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        min_length = 1,
        max_length = 200
    )]
    site: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum AgentRole {
    Agent,
}

/// A token just made: the only answer that holds its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenView,
    /// Send it as `Authorization: Bearer <secret>`. Shown this once: fleetup keeps only its
    /// SHA-256.
    pub secret: String,
}

/// The API tokens (admin only), revoked ones included; never their secrets.
#[utoipa::path(get, path = "/tokens", tag = "access",
    responses((status = 200, body = TokenList),
              (status = 403, body = ErrorBody, description = "`forbidden`: not an admin token"),
              Internal))]
async fn list_tokens(State(state): State<AppState>) -> ApiResult<Json<TokenList>> {
    let tokens = state.db.tokens().await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(TokenView::from).collect(),
    }))
}

/// Create a token with a role (admin only). The answer holds its secret, once.
#[utoipa::path(post, path = "/tokens", tag = "access", request_body = NewTokenSchema,
    responses((status = 201, body = CreatedToken),
              (status = 400, body = ErrorBody, description = "`bad_request`: the body is not JSON"),
              (status = 403, body = ErrorBody, description = "`forbidden`: not an admin token"),
              (status = 413, body = ErrorBody, description = "`too_large`: a body over 4 MiB"),
              (status = 415, body = ErrorBody, description = "`unsupported_media_type`: not `Content-Type: application/json`"),
              (status = 409, body = ErrorBody, description = "`conflict`: the name is taken"),
              (status = 422, body = ErrorBody, description = "`invalid`: a bad name, an unknown role or field, an agent token without a site or another role's with one"),
              Internal))]
async fn create_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(new): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    crate::access::check_name(&new.name).map_err(ApiError::unprocessable)?;
    let site = match (new.role, new.site) {
        (Role::Agent, Some(serde_json::Value::String(site))) => {
            crate::access::check_site(&site).map_err(ApiError::unprocessable)?;
            Some(site)
        }
        (Role::Agent, Some(_)) => {
            return Err(ApiError::unprocessable(
                "an agent token's `site` is a string",
            ));
        }
        (Role::Agent, None) => {
            return Err(ApiError::unprocessable(
                "an agent token is bound to a site: give its `site`",
            ));
        }
        (role, Some(_)) => {
            return Err(ApiError::unprocessable(format!(
                "only an agent token has a site, not {} {role} token",
                role.article()
            )));
        }
        (_, None) => None,
    };
    let secret = crate::access::new_secret();
    let hash = crate::access::hash(&secret);
    let record = state
        .db
        .insert_token(&new.name, new.role, site.as_deref(), &hash, Some(&who.name))
        .await?;
    state
        .tokens
        .insert(&hash, &record.name, record.role, record.site.as_deref());
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: record.into(),
            secret,
        }),
    ))
}

/// Revoke a token (admin only): refused from then on. Its name stays taken, and its rows in
/// the audit log stay.
#[utoipa::path(delete, path = "/tokens/{name}", tag = "access",
    params(("name" = String, Path, description = "the token's name")),
    responses((status = 200, body = TokenView),
              (status = 403, body = ErrorBody, description = "`forbidden`: not an admin token"),
              (status = 404, body = ErrorBody, description = "`not_found`: no such token"),
              (status = 409, body = ErrorBody, description = "`conflict`: already revoked, or the token making the call"),
              Internal))]
async fn revoke_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Json<TokenView>> {
    if name == who.name {
        // The last admin could lock everyone out; another admin can revoke this one.
        return Err(ApiError::conflict(format!(
            "the token {name:?} makes this call: revoke it with another admin token"
        )));
    }
    let record = state.db.revoke_token(&name).await.map_err(|e| match e {
        crate::store::StoreError::NotFound => ApiError::not_found(format!("no token {name:?}")),
        other => other.into(),
    })?;
    state.tokens.remove(&name);
    Ok(Json(record.into()))
}

/// One mutating API call: who (the token's name and role), what (method and path, with its
/// query), when, and the answer's status (403 for one the role refused).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: String,
    pub token: String,
    pub role: String,
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl From<AuditRecord> for AuditView {
    fn from(r: AuditRecord) -> Self {
        AuditView {
            id: r.id,
            at: r.at,
            token: r.token,
            role: r.role,
            method: r.method,
            path: r.path,
            status: r.status,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    /// Newest first.
    pub entries: Vec<AuditView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Only the calls of the token of this name (not `token`: that is the query's own
    /// credential on reads).
    by: Option<String>,
    /// Only entries older than this id (the next page: the last id seen).
    before: Option<i64>,
    /// How many, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// The audit log, newest first: every mutating API call, who made it and its answer.
#[utoipa::path(get, path = "/audit", tag = "access", params(AuditQuery),
    responses((status = 200, body = AuditList),
              (status = 400, body = ErrorBody, description = "`bad_request`: a query parameter out of range or of the wrong type"),
              Internal))]
async fn list_audit(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    let limit = super::page_limit(q.limit)?;
    let entries = state.db.audit(q.by.as_deref(), q.before, limit).await?;
    Ok(Json(AuditList {
        entries: entries.into_iter().map(AuditView::from).collect(),
    }))
}
