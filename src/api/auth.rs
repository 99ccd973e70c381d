//! Bearer-token authentication for the API.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use std::collections::HashMap;

use super::{ApiError, AppState};
use crate::access::{Action, Principal, Role};

/// The API token: from `FLEETUP_API_TOKEN`, else kept in `DATA_DIR/api-token` (created with
/// mode 0600 at first start).
#[derive(Clone)]
pub(crate) struct ApiToken(String);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

/// Where the token came from, for the start-up message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenSource {
    Environment,
    File {
        path: std::path::PathBuf,
        created: bool,
    },
}

impl ApiToken {
    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The secret itself: what this node presents to the other nodes it fetches images from.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }

    /// What the store keeps of it.
    pub(crate) fn hash(&self) -> String {
        crate::access::hash(&self.0)
    }

    pub(crate) fn load_or_create(
        data_dir: &Path,
        from_env: Option<String>,
    ) -> std::io::Result<(Self, TokenSource)> {
        if let Some(t) = from_env.filter(|t| !t.trim().is_empty()) {
            return Ok((Self(t.trim().to_string()), TokenSource::Environment));
        }
        let path = data_dir.join("api-token");
        let (token, created) = load_or_create_secret(&path)?;
        Ok((Self(token), TokenSource::File { path, created }))
    }
}

/// Read a secret file, or create it with a random value and mode 0600.
pub(crate) fn load_or_create_secret(path: &Path) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok((s.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = random_secret();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(path)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok((secret, true))
}

/// 32 random bytes, hex encoded.
pub(crate) fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// The tokens the API accepts, by hash: the store's, not revoked, kept in memory so that a
/// request costs no database read; changed with the store by the token routes.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    by_hash: std::sync::RwLock<HashMap<String, Principal>>,
    /// Moves on with every change made here, so that a re-read that began before one does
    /// not undo it.
    changes: std::sync::atomic::AtomicU64,
}

impl Tokens {
    /// Every token of the store that is not revoked.
    pub(crate) async fn load(db: &crate::store::Db) -> Result<Tokens, crate::store::StoreError> {
        let tokens = Tokens::default();
        for t in db.tokens().await? {
            if t.revoked_at.is_none() {
                tokens.insert(&t.hash, &t.name, t.role, t.site.as_deref());
            }
        }
        Ok(tokens)
    }

    /// Replace the accepted tokens with the store's own (those not revoked): what another
    /// node sharing the database made or revoked takes effect here.
    pub(crate) async fn reload(
        &self,
        db: &crate::store::Db,
    ) -> Result<(), crate::store::StoreError> {
        use std::sync::atomic::Ordering;
        let before = self.changes.load(Ordering::SeqCst);
        let fresh = Tokens::load(db).await?;
        let map = std::mem::take(&mut *fresh.write());
        let mut current = self.write();
        // A token made or revoked here meanwhile: the next re-read brings both.
        if self.changes.load(Ordering::SeqCst) == before {
            *current = map;
        }
        Ok(())
    }

    pub(crate) fn insert(&self, hash: &str, name: &str, role: Role, site: Option<&str>) {
        let principal = Principal {
            name: name.to_string(),
            role,
            site: site.map(str::to_string),
        };
        let mut map = self.write();
        map.insert(hash.to_string(), principal);
        // Under the lock: a re-read swapping the map in sees it.
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn remove(&self, name: &str) {
        let mut map = self.write();
        map.retain(|_, p| p.name != name);
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Who a presented token is, if it is one.
    pub(crate) fn lookup(&self, secret: &str) -> Option<Principal> {
        // By the hash of what was presented: no comparison of secrets to time.
        let hash = crate::access::hash(secret);
        self.by_hash
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&hash)
            .cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Principal>> {
        self.by_hash
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The token a request presents: `Authorization: Bearer …`, or on reads `?token=` (a
/// browser's event stream cannot set headers).
fn presented(req: &Request, is_read: bool) -> Option<String> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    header.or_else(|| {
        is_read
            .then(|| {
                req.uri().query().and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("token="))
                        .map(str::to_string)
                })
            })
            .flatten()
    })
}

/// Every call needs a token whose role allows it; reads need none with `--read-open`, except
/// the reads of configuration backups. The token's name and role go with the request (an
/// `Extension<Principal>` for the handlers), and every mutating call a token made, allowed or
/// refused by its role, is written to the audit log.
pub(super) async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let is_read = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let path = req.uri().path().to_string();
    let principal = presented(&req, is_read).and_then(|t| state.tokens.lookup(&t));
    let Some(principal) = principal else {
        if is_read && state.read_open && !crate::access::is_secret_read(&path) {
            return next.run(req).await;
        }
        return ApiError::unauthorized().into_response();
    };
    let shown_path = shown(&path, req.uri().query());
    if let Err(why) = crate::access::allowed(principal.role, Action::of(is_read, &path)) {
        if !is_read {
            audit(&state, &principal, &method, &shown_path, 403).await;
        }
        return ApiError::forbidden(why).into_response();
    }
    req.extensions_mut().insert(principal.clone());
    let response = next.run(req).await;
    // An agent's routine call is kept when refused: by its role above, or here by its site.
    let refused = response.status() == axum::http::StatusCode::FORBIDDEN;
    if is_read || (routine_agent_call(&path) && !refused) {
        tracing::debug!(token = %principal.name, %method, path = %shown_path, "api read");
    } else {
        audit(
            &state,
            &principal,
            &method,
            &shown_path,
            response.status().as_u16(),
        )
        .await;
    }
    response
}

/// A site agent's heartbeat, claim or call of a job it runs: they come every second or few,
/// and the service records what they do (the agent's state; a claim and the job's steps as
/// the job's events, naming the agent and its token), so the audit log keeps them only when
/// refused.
fn routine_agent_call(path: &str) -> bool {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    path == "/agents/heartbeat" || path.starts_with("/agents/jobs/")
}

/// The path as the audit log shows it: under `/api/v1`, with its query but never a token.
fn shown(path: &str, query: Option<&str>) -> String {
    let mut shown = format!("/api/v1{path}");
    let kept: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|kv| !kv.is_empty() && !kv.starts_with("token="))
        .collect();
    if !kept.is_empty() {
        shown.push('?');
        shown.push_str(&kept.join("&"));
    }
    shown
}

async fn audit(state: &AppState, who: &Principal, method: &Method, path: &str, status: u16) {
    tracing::info!(token = %who.name, role = %who.role, %method, %path, status, "api change");
    if let Err(e) = state
        .db
        .insert_audit(&who.name, who.role, method.as_str(), path, status)
        .await
    {
        tracing::error!(error = %e, token = %who.name, %method, %path, "cannot write the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (t1, s1) = ApiToken::load_or_create(dir.path(), None).unwrap();
        assert!(matches!(s1, TokenSource::File { created: true, .. }));
        let (t2, s2) = ApiToken::load_or_create(dir.path(), None).unwrap();
        assert!(matches!(s2, TokenSource::File { created: false, .. }));
        assert_eq!(t1.as_str(), t2.as_str());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("api-token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(t1.hash(), crate::access::hash(t2.as_str()));
    }

    #[test]
    fn env_token_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (t, s) = ApiToken::load_or_create(dir.path(), Some("abc".into())).unwrap();
        assert_eq!(t.as_str(), "abc");
        assert_eq!(s, TokenSource::Environment);
        assert!(!dir.path().join("api-token").exists());
    }
}
