//! API errors: one JSON shape, `{"error": {"code": "...", "message": "..."}}`, with a fitting
//! HTTP status. Internal details (database messages, paths) are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::images::ImageError;
use crate::store::StoreError;
use crate::yaml::YamlError;

#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Location of a problem in a YAML or JSON document the client sent.
    pub location: Option<(u64, u64)>,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            location: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API token: send `Authorization: Bearer <token>` (see DATA_DIR/api-token or FLEETUP_API_TOKEN)",
        )
    }

    /// A failure whose details belong in the log, not in the response.
    pub(crate) fn internal(context: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!(%err, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context} failed; the service log has the details"),
        )
    }
}

impl From<YamlError> for ApiError {
    fn from(e: YamlError) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_yaml",
            message: e.to_string(),
            location: Some((e.line, e.column)),
        }
    }
}

/// Every error answer of the API in the one JSON shape, including the plain-text rejections
/// of axum's extractors (a bad query string, a body over the limit, a wrong content type):
/// their text becomes the message, their status picks the code (as for the rejections the
/// handlers map themselves, through [`super::rejection`]).
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    // The headers that go with a status (`Allow` on a 405) stay; the body's own go.
    let mut headers = res.headers().clone();
    headers.remove(axum::http::header::CONTENT_TYPE);
    headers.remove(axum::http::header::CONTENT_LENGTH);
    let is_json = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    // Rejection texts are short; a larger body is not buffered: the status's reason stands in.
    let bytes = axum::body::to_bytes(res.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    let mut out = super::rejection(status, message).into_response();
    for (name, value) in headers.iter() {
        out.headers_mut().insert(name.clone(), value.clone());
    }
    out
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("not found"),
            StoreError::Conflict(m) => ApiError::conflict(m),
            e @ StoreError::Leased(_) => ApiError::conflict(e.to_string()),
            StoreError::Fenced(m) => ApiError::new(StatusCode::CONFLICT, "fenced", m),
            StoreError::Storage(why) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_full",
                format!(
                    "{why}: the change was not saved; free space in the data directory and send it again"
                ),
            ),
            e => ApiError::internal("database access", &e),
        }
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        let e = match e {
            // A database failure maps as everywhere else (a full disk is `storage_full`).
            ImageError::Store(s) => return s.into(),
            e => e,
        };
        match &e {
            ImageError::InvalidName { .. } | ImageError::BadPlatform(_) => {
                ApiError::unprocessable(e.to_string())
            }
            ImageError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            ImageError::NameTaken(_)
            | ImageError::DuplicateContent(_)
            | ImageError::InUse { .. } => ApiError::conflict(e.to_string()),
            ImageError::NotFound(_) => ApiError::not_found(e.to_string()),
            // A full disk is `storage_full` like a database write that did not commit.
            ImageError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::StorageFull
                    || source.kind() == std::io::ErrorKind::QuotaExceeded =>
            {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_full",
                    "the data directory is full: the image was not stored; free space and send it again",
                )
            }
            ImageError::Cache(crate::images::cache::CacheError::Unavailable { .. }) => {
                ApiError::not_found(e.to_string())
            }
            ImageError::Io { .. } | ImageError::Store(_) | ImageError::Cache(_) => {
                ApiError::internal("image store I/O", &e)
            }
        }
    }
}

/// `400 bad_request` for a path parameter that is not UTF-8 once percent-decoded.
#[allow(dead_code)] // named only in OpenAPI attributes
#[derive(utoipa::IntoResponses)]
#[response(
    status = 400,
    description = "`bad_request`: a path parameter that is not UTF-8 once percent-decoded"
)]
pub(crate) struct BadPath(#[to_schema] ErrorBody);

/// `500 internal`, in the OpenAPI document of every route that reads the database or disk.
#[allow(dead_code)] // named only in OpenAPI attributes
#[derive(utoipa::IntoResponses)]
#[response(
    status = 500,
    description = "`internal`: a database or disk failure; the service log has the details"
)]
pub(crate) struct Internal(#[to_schema] ErrorBody);

/// `503 storage_full`, in the OpenAPI document of every route that writes.
#[allow(dead_code)] // named only in OpenAPI attributes
#[derive(utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "`storage_full`: the change could not be saved (the data directory is full or failing); nothing was changed"
)]
pub(crate) struct StorageFull(#[to_schema] ErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                line: self.location.map(|l| l.0),
                column: self.location.map(|l| l.1),
            },
        };
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: a 401 names the scheme the client should use.
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
