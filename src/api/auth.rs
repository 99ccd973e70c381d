//! Bearer-token authentication for the API.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

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

    /// Compare in constant time, so response timing does not reveal a prefix of the token.
    pub(crate) fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
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

/// Every mutating call needs the token; reads too unless the service runs with `--read-open`,
/// except the reads of configuration backups, which always do.
pub(super) async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let is_read = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if is_read && state.read_open && !super::configs::is_secret_read(req.uri().path()) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    // Server-sent events from a browser cannot set headers: accept `?token=` on reads only.
    let query_token = if is_read {
        req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(str::to_string)
        })
    } else {
        None
    };
    let ok = presented.is_some_and(|t| state.token.matches(t))
        || query_token.is_some_and(|t| state.token.matches(&t));
    if ok {
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
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
        assert!(t1.matches(t2.as_str()));
        assert!(!t1.matches("wrong"));
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
