//! `POST /inventory/sync`: apply what a source of truth holds (docs/sync.md). The CLI reads
//! Nautobot or NetBox and sends the mapped devices here; `serve`'s own syncs call the same
//! store function.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{Internal, StorageFull};
use super::{ApiError, ApiResult, AppState, ErrorBody, rejection};
use crate::sync::{SyncReport, SyncRequest};

/// A sync names every device of its scope: room for a few hundred thousand.
pub(crate) const SYNC_BODY_LIMIT: usize = 64 * 1024 * 1024;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sync_inventory))
        .layer(DefaultBodyLimit::max(SYNC_BODY_LIMIT))
}

/// Apply the devices one scope of a source of truth holds now: new ones are added, changed
/// ones updated, the scope's devices not named become absent (kept, never targeted), absent
/// ones named again come back. One transaction; `dry_run` reports and changes nothing.
#[utoipa::path(post, path = "/inventory/sync", tag = "inventory", request_body = SyncRequest,
    responses((status = 200, body = SyncReport),
              (status = 400, body = ErrorBody, description = "`bad_request`: the body is not JSON"),
              (status = 413, body = ErrorBody, description = "`too_large`: a body over 64 MiB"),
              (status = 415, body = ErrorBody, description = "`unsupported_media_type`: not `Content-Type: application/json`"),
              (status = 422, body = ErrorBody, description = "`invalid`: a field of the wrong type, or a device the inventory refuses (named by its index); nothing was written"),
              Internal, StorageFull))]
async fn sync_inventory(
    State(state): State<AppState>,
    body: Result<Json<SyncRequest>, JsonRejection>,
) -> ApiResult<Json<SyncReport>> {
    let req = body
        .map(|Json(v)| v)
        .map_err(|r| rejection(r.status(), r.body_text()))?;
    let checked = crate::sync::validate(&req).map_err(ApiError::unprocessable)?;
    let report = state
        .db
        .sync_devices(&req.scope, &checked.records, &checked.skipped, req.dry_run)
        .await?;
    report.log();
    Ok(Json(report))
}
