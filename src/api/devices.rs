//! `/devices` and `/inventory`: the inventory over HTTP.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{BadPath, Internal, StorageFull};
use super::schema::{DeviceNameParam, InventoryFile};
use super::{ApiError, ApiResult, AppState, ErrorBody, rejection};
use crate::inventory::{DeviceInput, DeviceView, Platform};
use crate::store::DeviceFilter;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, create_device))
        .routes(routes!(get_device, update_device, delete_device))
        .routes(routes!(forget_host_key))
        .routes(routes!(refresh_facts))
        .routes(routes!(import_inventory))
        .routes(routes!(export_inventory))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeviceQuery {
    /// Only devices in this group.
    group: Option<String>,
    /// Only devices with this tag.
    tag: Option<String>,
    site: Option<String>,
    /// ios, iosxe or nxos.
    #[param(value_type = Option<Platform>)]
    platform: Option<String>,
    /// Only devices running this version (as `show version` reports it).
    version: Option<String>,
    /// Substring of the name or host.
    q: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceView>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// List devices, filtered and paginated.
#[utoipa::path(get, path = "/devices", tag = "inventory", params(DeviceQuery),
    responses((status = 200, body = DeviceList),
              (status = 400, body = ErrorBody, description = "`bad_request`: a query parameter out of range or of the wrong type"),
              Internal))]
async fn list_devices(
    State(state): State<AppState>,
    Query(q): Query<DeviceQuery>,
) -> ApiResult<Json<DeviceList>> {
    let platform = match q.platform.as_deref() {
        Some(p) => Some(Platform::parse(p).ok_or_else(|| {
            ApiError::bad_request(format!("platform {p:?} is not one of ios, iosxe, nxos"))
        })?),
        None => None,
    };
    let limit = i64::from(super::page_limit(q.limit)?);
    let offset = q.offset.unwrap_or(0).max(0);
    let page = state
        .db
        .list_devices(&DeviceFilter {
            group: q.group,
            tag: q.tag,
            site: q.site,
            platform,
            version: q.version,
            search: q.q.filter(|s| !s.is_empty()),
            limit,
            offset,
        })
        .await?;
    Ok(Json(DeviceList {
        devices: page.devices.iter().map(DeviceView::from).collect(),
        total: page.total,
        limit,
        offset,
    }))
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    body.map(|Json(v)| v)
        .map_err(|r| rejection(r.status(), r.body_text()))
}

/// Add a device. Secrets are accepted but never returned.
#[utoipa::path(post, path = "/devices", tag = "inventory", request_body = DeviceInput,
    responses((status = 201, body = DeviceView,
               headers(("Location" = String, description = "the new device's URL"))),
              (status = 400, body = ErrorBody, description = "`bad_request`: the body is not JSON"),
              (status = 409, body = ErrorBody, description = "`conflict`: a device of that name exists"),
              (status = 413, body = ErrorBody, description = "`too_large`: a body over 4 MiB"),
              (status = 415, body = ErrorBody, description = "`unsupported_media_type`: not `Content-Type: application/json`"),
              (status = 422, body = ErrorBody, description = "`invalid`: a field of the wrong type, or a value the inventory refuses"),
              Internal, StorageFull))]
async fn create_device(
    State(state): State<AppState>,
    body: Result<Json<DeviceInput>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let input = json_body(body)?;
    let spec = input
        .validate()
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let device = state.db.create_device(&spec).await?;
    tracing::info!(device = %device.name(), "device added");
    // A name's `/` would end the path segment; its other characters may stand in a path.
    let location = format!("/api/v1/devices/{}", device.name().replace('/', "%2F"));
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(DeviceView::from(&device)),
    ))
}

/// One device.
#[utoipa::path(get, path = "/devices/{name}", tag = "inventory",
    params(("name" = inline(DeviceNameParam), Path, description = "device name")),
    responses((status = 200, body = DeviceView), BadPath, (status = 404, body = ErrorBody, description = "`not_found`: no device of that name"), Internal))]
async fn get_device(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<DeviceView>> {
    let device = state
        .db
        .device_by_name(&name)
        .await
        .map_err(|e| not_found_device(e, &name))?;
    Ok(Json(DeviceView::from(&device)))
}

fn not_found_device(e: crate::store::StoreError, name: &str) -> ApiError {
    match e {
        crate::store::StoreError::NotFound => {
            ApiError::not_found(format!("no device named {name:?} in the inventory"))
        }
        e => e.into(),
    }
}

/// Replace a device's description. Omitted secrets keep their stored value (they are never
/// shown, so a client cannot send them back); facts and the pinned host key are kept.
#[utoipa::path(put, path = "/devices/{name}", tag = "inventory", request_body = DeviceInput,
    params(("name" = inline(DeviceNameParam), Path, description = "device name")),
    responses((status = 200, body = DeviceView),
              (status = 400, body = ErrorBody, description = "`bad_request`: the body is not JSON, or the path is not UTF-8"),
              (status = 404, body = ErrorBody, description = "`not_found`: no device of that name"),
              (status = 409, body = ErrorBody, description = "`conflict`: renamed to the name of another device"),
              (status = 413, body = ErrorBody, description = "`too_large`: a body over 4 MiB"),
              (status = 415, body = ErrorBody, description = "`unsupported_media_type`: not `Content-Type: application/json`"),
              (status = 422, body = ErrorBody, description = "`invalid`: a field of the wrong type, or a value the inventory refuses"),
              Internal, StorageFull))]
async fn update_device(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<DeviceInput>, JsonRejection>,
) -> ApiResult<Json<DeviceView>> {
    let input = json_body(body)?;
    let current = state
        .db
        .device_by_name(&name)
        .await
        .map_err(|e| not_found_device(e, &name))?;
    let mut spec = input
        .validate()
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    spec.credentials
        .keep_secrets_from(&current.spec.credentials);
    let device = state.db.update_device(&name, &spec).await?;
    Ok(Json(DeviceView::from(&device)))
}

/// Remove a device from the inventory.
#[utoipa::path(delete, path = "/devices/{name}", tag = "inventory",
    params(("name" = inline(DeviceNameParam), Path, description = "device name")),
    responses((status = 204, description = "removed"), BadPath, (status = 404, body = ErrorBody, description = "`not_found`: no device of that name"), Internal, StorageFull))]
async fn delete_device(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .db
        .delete_device(&name)
        .await
        .map_err(|e| not_found_device(e, &name))?;
    tracing::info!(device = %name, "device removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Forget the pinned SSH host key, so that the next connection trusts the key it is shown
/// (after a supervisor swap or a re-keyed device).
#[utoipa::path(delete, path = "/devices/{name}/host-key", tag = "inventory",
    params(("name" = inline(DeviceNameParam), Path, description = "device name")),
    responses((status = 204, description = "forgotten"), BadPath, (status = 404, body = ErrorBody, description = "`not_found`: no device of that name"), Internal, StorageFull))]
async fn forget_host_key(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .db
        .set_host_key(&name, None)
        .await
        .map_err(|e| not_found_device(e, &name))?;
    tracing::warn!(device = %name, "pinned host key forgotten; the next key seen will be trusted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// Import a YAML inventory (body: the file). All or nothing: one bad entry and nothing is
/// written; the error names its line and column.
#[utoipa::path(post, path = "/inventory/import", tag = "inventory",
    request_body(content = InventoryFile, content_type = "application/yaml",
                 description = "The inventory file (YAML; JSON is YAML too). Required: an empty body is a 400."),
    responses((status = 200, body = ImportResult),
              (status = 400, body = ErrorBody, description = "`bad_request`: no body, or a body that is not UTF-8"),
              (status = 413, body = ErrorBody, description = "`too_large`: a body over 4 MiB"),
              (status = 422, body = ErrorBody, description = "`invalid_yaml`: the file does not parse or a value is refused (with `line` and `column`); nothing was written"),
              Internal, StorageFull))]
async fn import_inventory(
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<Json<ImportResult>> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request has no body: send the inventory as YAML",
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("inventory is not UTF-8 text: {e}")))?;
    let specs = crate::inventory::yaml::parse(text)?;
    let results = state.db.upsert_devices(&specs).await?;
    use crate::store::Upserted as U;
    let count = |k: U| results.iter().filter(|r| **r == k).count();
    let out = ImportResult {
        created: count(U::Created),
        updated: count(U::Updated),
        unchanged: count(U::Unchanged),
    };
    tracing::info!(
        created = out.created,
        updated = out.updated,
        unchanged = out.unchanged,
        "inventory imported"
    );
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ExportQuery {
    /// Include inline passwords and enable secrets (default false).
    #[serde(default)]
    with_secrets: bool,
}

/// Export the inventory as YAML that `import` reads back.
#[utoipa::path(get, path = "/inventory/export", tag = "inventory", params(ExportQuery),
    responses((status = 200, content_type = "application/yaml", body = InventoryFile,
               description = "the inventory as YAML that `import` reads back"),
              (status = 400, body = ErrorBody, description = "`bad_request`: `with_secrets` is not `true` or `false`"),
              Internal))]
async fn export_inventory(
    State(state): State<AppState>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<impl IntoResponse> {
    let devices = state.db.all_devices().await?;
    let text = crate::inventory::yaml::export(&devices, q.with_secrets)
        .map_err(|e| ApiError::internal("inventory export", &e))?;
    if q.with_secrets {
        tracing::warn!("inventory exported with secrets");
    }
    Ok(([(header::CONTENT_TYPE, "application/yaml")], text))
}

/// Log in to the device, read `show version` and `show boot`, and record the facts (and, on
/// first contact, the SSH host key) in the inventory.
#[utoipa::path(post, path = "/devices/{name}/facts", tag = "inventory",
    params(("name" = inline(DeviceNameParam), Path, description = "device name")),
    responses((status = 200, body = DeviceView), BadPath, (status = 404, body = ErrorBody, description = "`not_found`: no device of that name"),
              (status = 409, body = ErrorBody, description = "`conflict`: the device's SSH host key changed, or its entry lacks what a login needs (a username, a set environment variable)"),
              Internal,
              (status = 502, body = ErrorBody, description = "`device_error`: the device could not be reached, logged in to or read"),
              StorageFull))]
async fn refresh_facts(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<DeviceView>> {
    use crate::device::{DeviceError, Target, Timeouts};
    let device = state
        .db
        .device_by_name(&name)
        .await
        .map_err(|e| not_found_device(e, &name))?;
    // The request is fine; the stored entry is what cannot be used for a login.
    let target = Target::from_device(&device).map_err(ApiError::conflict)?;
    let (facts, new_key) = crate::device::facts(&target, &Timeouts::default())
        .await
        .map_err(|e| match e {
            DeviceError::HostKeyChanged { .. } => ApiError::conflict(e.to_string()),
            e => ApiError::new(StatusCode::BAD_GATEWAY, "device_error", e.to_string()),
        })?;
    state.db.set_facts(&name, &facts).await?;
    if let Some(key) = new_key {
        state.db.set_host_key(&name, Some(&key)).await?;
        tracing::info!(device = %name, "host key pinned on first contact");
    }
    let device = state.db.device_by_name(&name).await?;
    Ok(Json(DeviceView::from(&device)))
}
