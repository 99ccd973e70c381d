//! `/devices/{name}/configs`: the configuration backups a rollout kept of a device (before its
//! first change, and once it was back), their text, and the diff of the running configuration
//! before and after. A configuration holds secrets: these routes always need the token, even
//! with `--read-open` ([`crate::access::is_secret_read`]), and no other route serves a configuration's text.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{BadPath, Internal};
use super::schema::DeviceNameParam;
use super::{ApiError, ApiResult, AppState, ErrorBody};
use crate::configs::{self, BackupRecord, ConfigError, ConfigKind, Moment};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_configs))
        .routes(routes!(config_diff))
        .routes(routes!(config_text))
}

/// One kept configuration (its text: `GET /devices/{name}/configs/{id}`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigBackupView {
    pub id: i64,
    pub rollout_id: String,
    pub kind: ConfigKind,
    /// `before`: read before the first change; `after`: once the device was back.
    pub moment: Moment,
    /// When it was read (RFC 3339).
    pub taken_at: String,
    /// Bytes.
    pub size: u64,
    pub sha256: String,
}

impl From<&BackupRecord> for ConfigBackupView {
    fn from(r: &BackupRecord) -> Self {
        ConfigBackupView {
            id: r.id,
            rollout_id: r.rollout_id.clone(),
            kind: r.kind,
            moment: r.moment,
            taken_at: r.taken_at.clone(),
            size: r.size,
            sha256: r.sha256.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigList {
    pub device: String,
    /// Oldest first.
    pub backups: Vec<ConfigBackupView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigText {
    #[serde(flatten)]
    pub backup: ConfigBackupView,
    /// The configuration as the device printed it.
    pub text: String,
}

/// The running configuration before the upgrade against the one after, volatile lines
/// (`! Last configuration change at …`, `Current configuration : N bytes`) left out.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigDiffView {
    pub rollout_id: String,
    /// The backups compared.
    pub before: ConfigBackupView,
    pub after: ConfigBackupView,
    pub added: usize,
    pub removed: usize,
    /// More lines differ than the diff follows: compare the two backups instead.
    pub too_different: bool,
    /// The diff was cut.
    pub truncated: bool,
    /// Unified-diff lines (`@@`, ` `, `-`, `+`), two lines of context; empty when unchanged.
    pub diff: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RolloutQuery {
    /// Only this rollout's backups.
    rollout: Option<String>,
}

fn config_error(e: ConfigError) -> ApiError {
    match e {
        ConfigError::Store(e) => e.into(),
        e => ApiError::internal("reading a configuration backup", &e),
    }
}

/// The configuration backups kept of a device, oldest first: rollout, kind (`running`,
/// `startup`), moment (`before`, `after`), time, size and SHA-256. Always needs the token.
#[utoipa::path(get, path = "/devices/{name}/configs", tag = "inventory",
    params(("name" = inline(DeviceNameParam), Path, description = "device name"), RolloutQuery),
    responses((status = 200, body = ConfigList), BadPath,
              (status = 404, body = ErrorBody, description = "`not_found`: no backup of this device and no device of that name in the inventory"),
              Internal))]
async fn list_configs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RolloutQuery>,
) -> ApiResult<Json<ConfigList>> {
    let backups = state.db.config_backups(&name, q.rollout.as_deref()).await?;
    // A device removed from the inventory keeps its backups.
    if backups.is_empty() {
        match state.db.device_by_name(&name).await {
            Ok(_) => {}
            Err(crate::store::StoreError::NotFound) => {
                return Err(ApiError::not_found(format!(
                    "no device named {name:?} in the inventory and no configuration backup of it"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(ConfigList {
        device: name,
        backups: backups.iter().map(ConfigBackupView::from).collect(),
    }))
}

/// One kept configuration with its text. Always needs the token.
#[utoipa::path(get, path = "/devices/{name}/configs/{id}", tag = "inventory",
    params(("name" = inline(DeviceNameParam), Path, description = "device name"),
           ("id" = i64, Path, description = "backup id (from the listing)")),
    responses((status = 200, body = ConfigText),
              (status = 400, body = ErrorBody, description = "`bad_request`: the id is not a number, or a path that is not UTF-8"),
              (status = 404, body = ErrorBody, description = "`not_found`: no backup of that id for this device"),
              Internal))]
async fn config_text(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<ConfigText>> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("backup id {id:?} is not a number")))?;
    let record = state
        .db
        .config_backup(&name, id)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => {
                ApiError::not_found(format!("no configuration backup {id} of device {name:?}"))
            }
            e => e.into(),
        })?;
    let text = configs::read(&state.db, &record)
        .await
        .map_err(config_error)?;
    Ok(Json(ConfigText {
        backup: ConfigBackupView::from(&record),
        text,
    }))
}

/// The running configuration before a rollout's first change against the one once the device
/// was back. Always needs the token.
#[utoipa::path(get, path = "/devices/{name}/configs/diff/{rollout}", tag = "inventory",
    params(("name" = inline(DeviceNameParam), Path, description = "device name"),
           ("rollout" = String, Path, description = "the rollout whose before and after are compared")),
    responses((status = 200, body = ConfigDiffView), BadPath,
              (status = 404, body = ErrorBody, description = "`not_found`: the rollout did not keep both configurations of this device (not upgraded yet, or it failed before it was back)"),
              Internal))]
async fn config_diff(
    State(state): State<AppState>,
    Path((name, rollout)): Path<(String, String)>,
) -> ApiResult<Json<ConfigDiffView>> {
    let found = configs::rollout_diff(&state.db, &name, &rollout)
        .await
        .map_err(config_error)?;
    let Some((before, after, d)) = found else {
        return Err(ApiError::not_found(format!(
            "rollout {rollout} kept no running configuration of {name:?} both before and after"
        )));
    };
    Ok(Json(ConfigDiffView {
        rollout_id: rollout,
        before: ConfigBackupView::from(&before),
        after: ConfigBackupView::from(&after),
        added: d.added,
        removed: d.removed,
        too_different: d.too_different,
        truncated: d.truncated,
        diff: d.to_text(),
    }))
}
