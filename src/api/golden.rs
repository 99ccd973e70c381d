//! `/golden` (golden images per scope) and `/compliance` (each device against its golden
//! image, with roll-ups per site and per model). The decisions are `crate::golden`'s.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{Internal, StorageFull};
use super::{ApiError, ApiResult, AppState, ErrorBody, rejection};
use crate::golden::{Counts, DEFAULT_MAX_FACTS_AGE, GoldenEntry, Scope, Status};
use crate::inventory::Platform;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_golden, set_golden, unset_golden))
        .routes(routes!(compliance))
}

/// A golden image and where it applies.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GoldenView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// A group or tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The scope in words, most specific field first: `model=C9300,site=fra`, or `global`.
    pub scope: String,
    /// A file name of the image store.
    pub image: String,
    /// The version the image installs, from the image store (its name).
    pub version: Option<String>,
    pub updated_at: String,
}

impl From<&GoldenEntry> for GoldenView {
    fn from(e: &GoldenEntry) -> Self {
        GoldenView {
            platform: e.scope.platform,
            model: e.scope.model.clone(),
            site: e.scope.site.clone(),
            role: e.scope.role.clone(),
            scope: e.scope.to_string(),
            image: e.image.clone(),
            version: e.version.clone(),
            updated_at: e.updated_at.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GoldenList {
    /// Least specific last is not promised: ordered by platform, model, site, role.
    pub golden: Vec<GoldenView>,
}

/// The golden image to set, and its scope; a field left out matches any device.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GoldenInput {
    /// A file name of the image store.
    pub image: String,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9._/:-]{1,64}$")]
    pub model: Option<String>,
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9._/:-]{1,64}$")]
    pub site: Option<String>,
    /// A group or tag of the inventory.
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9._/:-]{1,64}$")]
    pub role: Option<String>,
}

/// The scope to unset; a parameter left out is "any" (all left out: the global entry).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ScopeQuery {
    #[param(value_type = Option<Platform>)]
    platform: Option<String>,
    #[param(pattern = r"^[A-Za-z0-9._/:-]{1,64}$")]
    model: Option<String>,
    #[param(pattern = r"^[A-Za-z0-9._/:-]{1,64}$")]
    site: Option<String>,
    /// A group or tag.
    #[param(pattern = r"^[A-Za-z0-9._/:-]{1,64}$")]
    role: Option<String>,
}

fn label(field: &str, v: Option<String>) -> ApiResult<Option<String>> {
    let Some(v) = v else { return Ok(None) };
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/:-".contains(&b));
    if ok {
        Ok(Some(v))
    } else {
        Err(ApiError::unprocessable(format!(
            "{field}: {v:?} must be 1 to 64 letters, digits and . _ / : -"
        )))
    }
}

/// Golden images, each with its scope and version.
#[utoipa::path(get, path = "/golden", tag = "golden",
    responses((status = 200, body = GoldenList), Internal))]
async fn list_golden(State(state): State<AppState>) -> ApiResult<Json<GoldenList>> {
    let entries = state.db.golden_images().await?;
    Ok(Json(GoldenList {
        golden: entries.iter().map(GoldenView::from).collect(),
    }))
}

/// Set the golden image of a scope (replacing the one it had). The most specific entry that
/// matches a device applies to it: model, then platform, then site, then role decide.
#[utoipa::path(put, path = "/golden", tag = "golden", request_body = GoldenInput,
    responses((status = 200, body = GoldenView),
              (status = 400, body = ErrorBody, description = "`bad_request`: the body is not JSON"),
              (status = 413, body = ErrorBody, description = "`too_large`: a body over 4 MiB"),
              (status = 415, body = ErrorBody, description = "`unsupported_media_type`: not `Content-Type: application/json`"),
              (status = 409, body = ErrorBody, description = "`conflict`: the image is not in the image store"),
              (status = 422, body = ErrorBody, description = "`invalid`: a field of the wrong type, or a bad label"),
              Internal, StorageFull))]
async fn set_golden(
    State(state): State<AppState>,
    body: Result<Json<GoldenInput>, JsonRejection>,
) -> ApiResult<Json<GoldenView>> {
    let input = body
        .map(|Json(v)| v)
        .map_err(|r| rejection(r.status(), r.body_text()))?;
    let scope = Scope {
        platform: input.platform,
        model: label("model", input.model)?,
        site: label("site", input.site)?,
        role: label("role", input.role)?,
    };
    let images = state.images.list().await?;
    if !images.iter().any(|i| i.file_name == input.image) {
        // The request is well formed; the store lacks what it refers to.
        return Err(ApiError::conflict(format!(
            "image: {:?} is not in the image store; add it with `fleetup image add` first",
            input.image
        )));
    }
    state.db.set_golden_image(&scope, &input.image).await?;
    tracing::info!(scope = %scope, image = %input.image, "golden image set");
    let entries = state.db.golden_images().await?;
    let entry = entries
        .iter()
        .find(|e| e.scope == scope)
        .ok_or_else(|| ApiError::internal("reading the golden image back", &"not found"))?;
    Ok(Json(GoldenView::from(entry)))
}

/// Forget the golden image of exactly this scope.
#[utoipa::path(delete, path = "/golden", tag = "golden", params(ScopeQuery),
    responses((status = 204, description = "removed"),
              (status = 400, body = ErrorBody, description = "`bad_request`: a query parameter given twice or of the wrong type"),
              (status = 404, body = ErrorBody, description = "`not_found`: no golden image for exactly this scope"),
              (status = 422, body = ErrorBody, description = "`invalid`: an unknown platform or a bad label"),
              Internal, StorageFull))]
async fn unset_golden(
    State(state): State<AppState>,
    Query(q): Query<ScopeQuery>,
) -> ApiResult<StatusCode> {
    let platform = match q.platform.as_deref() {
        None | Some("") => None,
        Some(p) => Some(Platform::parse(p).ok_or_else(|| {
            ApiError::unprocessable(format!("platform: {p:?} is not one of ios, iosxe, nxos"))
        })?),
    };
    let scope = Scope {
        platform,
        model: label("model", q.model.filter(|s| !s.is_empty()))?,
        site: label("site", q.site.filter(|s| !s.is_empty()))?,
        role: label("role", q.role.filter(|s| !s.is_empty()))?,
    };
    match state.db.unset_golden_image(&scope).await {
        Ok(()) => {
            tracing::info!(scope = %scope, "golden image unset");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(crate::store::StoreError::NotFound) => Err(ApiError::not_found(format!(
            "no golden image for exactly {scope}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// One device against its golden image.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceComplianceView {
    pub device: String,
    pub site: Option<String>,
    pub platform: Platform,
    /// The inventory's model, else the one `show version` reported.
    pub model: Option<String>,
    /// The running version, as last read.
    pub version: Option<String>,
    /// When the facts were last read.
    pub last_seen: Option<String>,
    pub golden_image: Option<String>,
    pub golden_version: Option<String>,
    /// The scope of the golden entry that applies.
    pub golden_scope: Option<String>,
    pub status: Status,
    /// Why, in words.
    pub reason: String,
}

/// Devices per status in one site or model.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ComplianceCounts {
    /// The site or model (empty for devices without one).
    pub name: String,
    pub compliant: u64,
    pub outdated: u64,
    pub ahead: u64,
    pub unknown: u64,
    pub total: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ComplianceReport {
    /// Facts older than this many seconds make a device `unknown`.
    pub max_facts_age_seconds: u64,
    /// By name.
    pub devices: Vec<DeviceComplianceView>,
    /// By site name.
    pub sites: Vec<ComplianceCounts>,
    /// By model name.
    pub models: Vec<ComplianceCounts>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ComplianceQuery {
    /// Only devices of this site.
    site: Option<String>,
}

fn counts(map: std::collections::BTreeMap<String, Counts>) -> Vec<ComplianceCounts> {
    map.into_iter()
        .map(|(name, c)| ComplianceCounts {
            name,
            compliant: c.compliant,
            outdated: c.outdated,
            ahead: c.ahead,
            unknown: c.unknown,
            total: c.total(),
        })
        .collect()
}

/// The compliance of every device, and of the fleet per site and model, computed now.
pub(super) async fn report(state: &AppState, site: Option<&str>) -> ApiResult<ComplianceReport> {
    let mut devices = state.db.all_devices().await?;
    // Devices gone from their source of truth are no longer part of the fleet.
    devices.retain(|d| d.absent().is_none());
    if let Some(site) = site {
        devices.retain(|d| d.spec.site.as_deref() == Some(site));
    }
    let entries = state.db.golden_images().await?;
    let rows = crate::golden::compliance(
        &devices,
        &entries,
        jiff::Timestamp::now(),
        DEFAULT_MAX_FACTS_AGE,
    );
    let sites = counts(crate::golden::roll_up(&rows, |r| r.site.as_deref()));
    let models = counts(crate::golden::roll_up(&rows, |r| r.model.as_deref()));
    Ok(ComplianceReport {
        max_facts_age_seconds: DEFAULT_MAX_FACTS_AGE.as_secs(),
        devices: rows
            .into_iter()
            .map(|r| DeviceComplianceView {
                golden_image: r.golden.as_ref().map(|g| g.image.clone()),
                golden_version: r.golden.as_ref().and_then(|g| g.version.clone()),
                golden_scope: r.golden.as_ref().map(|g| g.scope.to_string()),
                device: r.device,
                site: r.site,
                platform: r.platform,
                model: r.model,
                version: r.version,
                last_seen: r.last_seen,
                status: r.verdict.status,
                reason: r.verdict.reason,
            })
            .collect(),
        sites,
        models,
    })
}

/// Each device's status against its golden image (`compliant`, `outdated`, `ahead`,
/// `unknown`: no golden image applies, or facts missing or older than
/// `max_facts_age_seconds`), with roll-ups per site and per model.
#[utoipa::path(get, path = "/compliance", tag = "golden", params(ComplianceQuery),
    responses((status = 200, body = ComplianceReport),
              (status = 400, body = ErrorBody, description = "`bad_request`: a query parameter of the wrong type"),
              Internal))]
async fn compliance(
    State(state): State<AppState>,
    Query(q): Query<ComplianceQuery>,
) -> ApiResult<Json<ComplianceReport>> {
    Ok(Json(report(&state, q.site.as_deref()).await?))
}
